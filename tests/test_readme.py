"""Every command of the README runs as written. The ``sh`` blocks are one session, run in order
by bash (``set -euo pipefail``) in an empty folder, on synthetic data in the bucket's exact layout
(the README makes it with ``lsdgraph synth``), with three edges collections per RAG. ``bash``
blocks (installing, starting a server) are not run.

What a test machine has instead of the user's: ``mongodb://localhost:27017`` is SecantusDB (the
URI is replaced in the script's text), ``s3://open-neurodata`` is moto's S3 server
(``$AWS_ENDPOINT_URL``) holding the synthetic data, and ``mongosh`` is the npm package's."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import subprocess_env
from servers import REPO

pytestmark = [pytest.mark.server, pytest.mark.s3, pytest.mark.mongosh, pytest.mark.slow]

README = REPO / "README.md"
SERVER = "mongodb://localhost:27017"
BUCKET = "open-neurodata"
_FENCE = re.compile(r"^```(\w*)\s*$")


def blocks(text: str, lang: str) -> list[str]:
    """The fenced blocks of ``lang``, in order."""
    out, current, inside = [], [], None
    for line in text.splitlines():
        m = _FENCE.match(line)
        if m and inside is None:
            inside, current = m.group(1), []
        elif line.startswith("```") and inside is not None:
            if inside == lang:
                out.append("\n".join(current))
            inside = None
        elif inside is not None:
            current.append(line)
    return out


def test_the_readme_has_its_blocks():
    text = README.read_text()
    run = blocks(text, "sh")
    assert len(run) >= 10 and not blocks(text, "")  # every block says whether it runs
    commands = [c.split()[1] for b in run for c in b.splitlines() if c.startswith("lsdgraph ")]
    assert {"synth", "ls", "ingest", "info", "query", "export", "segment", "relabel", "evaluate", "index",
            "view", "scripts"} <= set(commands)
    for b in run:
        assert "…" not in b and "..." not in b and "[--" not in b, f"a placeholder in a block that runs:\n{b}"


@pytest.fixture
def bucket(s3_server):
    """``s3://open-neurodata``, listable and readable anonymously, as the real bucket is."""
    admin = s3_server.admin
    if BUCKET not in [b["Name"] for b in admin.list_buckets()["Buckets"]]:
        admin.create_bucket(Bucket=BUCKET)
        admin.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": ["s3:ListBucket"], "Resource": f"arn:aws:s3:::{BUCKET}"},
            {"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"],
             "Resource": f"arn:aws:s3:::{BUCKET}/*"}]}))
    return s3_server


def test_every_readme_command_runs_as_written(tmp_path, secantus, bucket, mongosh, synthetic):
    src = synthetic("hemi", "tiny", seed=0)  # the README's data, also in the bucket
    for p in sorted(Path(src.out, "funke").rglob("*")):
        if p.is_file():
            bucket.admin.put_object(Bucket=BUCKET, Key=p.relative_to(src.out).as_posix(), Body=p.read_bytes())
    script = "\n\n".join(blocks(README.read_text(), "sh")).replace(SERVER, secantus.uri)
    (tmp_path / "readme.sh").write_text("set -euo pipefail\ntrap 'echo \"README command failed: $BASH_COMMAND\" >&2' "
                                        "ERR\n" + script + "\n")
    env = subprocess_env(AWS_ENDPOINT_URL=bucket.endpoint, LSDGRAPH_MONGO_URI=secantus.uri,
                         PATH=os.pathsep.join([str(Path(sys.executable).parent), str(Path(mongosh).parent),
                                               os.environ.get("PATH", "")]))
    try:
        p = subprocess.run(["bash", str(tmp_path / "readme.sh")], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=900)
    finally:
        import pymongo

        with pymongo.MongoClient(secantus.uri) as c:
            for name in set(re.findall(r"--name (\w+)", script)) | set(re.findall(r"\$URI/(\w+)", script)):
                c.drop_database(name)
    assert p.returncode == 0, f"{p.stderr[-3000:]}\n--- stdout ---\n{p.stdout[-2000:]}"
    assert "internal error" not in p.stderr and "Traceback" not in p.stderr, p.stderr[-3000:]
