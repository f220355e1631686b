"""Secrets never shown: any URI password (spaces, ``@``, ``:``, ``/``, ``#``, percent-escapes,
passwords that look like hosts, secrets in query strings) is hidden by :func:`redact_uri`, in
:class:`LsdgraphError` messages, in records written to MongoDB, and in what the CLI prints."""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import unquote, unquote_plus

import pytest

from lsdgraph._core import errors
from lsdgraph._core.errors import LsdgraphError, redact, redact_record, redact_uri

from conftest import run_cli, subprocess_env
from servers import free_port

HOST, HOST2, SRV = "db.example.org:28018", "db2.example.org:28019", "cluster0.example.net"


@dataclass(frozen=True)
class Case:
    id: str
    uri: str
    user: str | None
    secrets: tuple[str, ...]   # as typed in the URI
    hosts: tuple[str, ...]
    cli_issue: str = ""        # why the CLI does not yet fail in exactly one line (store.connect)

    def __str__(self) -> str:
        return self.id


CASES = [
    Case("space-at-slash", f"mongodb://bob:p@ss w/rd:x@{HOST}/db?authSource=admin", "bob", ("p@ss w/rd:x",), (HOST,)),
    Case("percent-escaped", f"mongodb://bob:p%40ss%2Fw0rd@{HOST}", "bob", ("p%40ss%2Fw0rd",), (HOST,)),
    Case("srv", f"mongodb+srv://srvuser:SrvPass123@{SRV}/?retryWrites=true", "srvuser", ("SrvPass123",), (SRV,)),
    Case("replica-set", f"mongodb://rsuser:Repl1caPw!@{HOST},{HOST2}/?replicaSet=rs0", "rsuser", ("Repl1caPw!",),
         (HOST, HOST2)),
    Case("looks-like-a-host", f"mongodb://u:db.internal.example:40404@{HOST}/lsd", "u",
         ("db.internal.example:40404",), (HOST,)),
    Case("colons", f"mongodb://admin:a:b:c:Dd9e@{HOST}", "admin", ("a:b:c:Dd9e",), (HOST,)),
    Case("hash", f"mongodb://u:pa#ss99word@{HOST}/db", "u", ("pa#ss99word",), (HOST,)),
    Case("question-mark", f"mongodb://u:qu?estion=Mark1@{HOST}/db", "u", ("qu?estion=Mark1",), (HOST,)),
    Case("slashes", f"mongodb://u:sl/ash/Pw55@{HOST}/db", "u", ("sl/ash/Pw55",), (HOST,)),
    Case("query-password", f"mongodb://qp@{HOST}/lsd?authSource=admin&password=QueryPw77", "qp", ("QueryPw77",),
         (HOST,)),
    Case("aws-session-token", f"mongodb://AKIAEXAMPLE:awsSecretKey99@{HOST}/?authMechanism=MONGODB-AWS"
         "&authMechanismProperties=AWS_SESSION_TOKEN:FwoGZXIvYXdzEJr%2Ftok3n", "AKIAEXAMPLE",
         ("awsSecretKey99", "FwoGZXIvYXdzEJr%2Ftok3n"), (HOST,)),
    Case("s3", "s3://AKIAS3USER:s3Secret/Key+9@lsd-bucket/funke/fragments.zarr", "AKIAS3USER",
         ("s3Secret/Key+9",), ("lsd-bucket",)),
    Case("http-endpoint", "http://minio:MinioSecret123@127.0.0.1:9000/lsd", "minio", ("MinioSecret123",),
         ("127.0.0.1:9000",)),
    Case("https-presigned", "https://reader:ht%3Atps%20pw@endpoint.example.com/b/k?X-Amz-Security-Token=SessTok999"
         "&X-Amz-Signature=abcdef0123", "reader", ("ht%3Atps%20pw", "SessTok999", "abcdef0123"),
         ("endpoint.example.com",)),
    Case("unicode", f"mongodb://jo:pässwörd€42@{HOST}", "jo", ("pässwörd€42",), (HOST,)),
    Case("escaped-user", f"mongodb://u%40corp:p%3Aw%2Fd%20x9@{HOST}", "u%40corp", ("p%3Aw%2Fd%20x9",), (HOST,)),
    Case("leading-at", f"mongodb://u:@@lead1ng@{HOST}", "u", ("@@lead1ng",), (HOST,)),
    Case("plus", f"mongodb://u:plus+sign+pw1@{HOST}", "u", ("plus+sign+pw1",), (HOST,)),
    Case("commas", f"mongodb://u:co,mma,Pw88@{HOST}", "u", ("co,mma,Pw88",), (HOST,)),
    Case("tls-key-password", f"mongodb://tlsuser@{HOST}/?tls=true&tlsCertificateKeyFilePassword=CertPw55",
         "tlsuser", ("CertPw55",), (HOST,)),
    Case("two-spaces", f"mongodb://u:two  spaces@{HOST}", "u", ("two  spaces",), (HOST,)),
]


def pieces(secret: str, whitespace: bool = True) -> set[str]:
    """The secret as typed and decoded, and every piece of it (split at URI delimiters, and
    at whitespace too with ``whitespace``) long enough to give it away."""
    forms = {secret, unquote(secret), unquote_plus(secret)}
    out = set(forms)
    for form in forms:
        for sep in (r"[@/:?#,;&=]+", r"[@/:?#,;&=\s]+")[:2 if whitespace else 1]:
            out |= {p for p in re.split(sep, form) if len(p) >= 4}
    return out


def leaked(case: Case, text: str) -> list[str]:
    return sorted(p for s in case.secrets for p in pieces(s) if p in text)


@pytest.fixture
def no_registry(monkeypatch):
    """An empty secret registry: the URI patterns alone must hide the password."""
    monkeypatch.setattr(errors, "_secrets", set())


@pytest.mark.parametrize("case", CASES, ids=str)
def test_redact_uri_keeps_scheme_user_and_host(case, no_registry):
    shown = redact_uri(case.uri)
    assert not leaked(case, shown), shown
    scheme = case.uri.split("://", 1)[0] + "://"
    assert shown.startswith(scheme + (case.user or ""))
    assert all(h in shown for h in case.hosts), shown
    assert errors.MASK in shown


@pytest.mark.parametrize("case", CASES, ids=str)
def test_error_messages_hide_the_password(case, no_registry):
    msg = str(LsdgraphError(f"cannot reach MongoDB at {case.uri} (ServerSelectionTimeoutError); retry later"))
    assert not leaked(case, msg), msg
    assert msg.startswith("cannot reach MongoDB at ") and msg.endswith("; retry later")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_registered_password_is_hidden_where_a_driver_echoes_it(case, no_registry):
    redact_uri(case.uri)
    for secret in case.secrets:
        for p in pieces(secret, whitespace=False):
            # a URI parser split the unescaped password at a delimiter and quotes a piece as a host
            assert p not in redact(f"{p}:27017: [Errno -2] Name or service not known")


TEXTS = [
    "nothing to see here",
    "bob:secret@host is not a URI without a scheme",
    "mail admin@example.org: 3 files, ratio 1:2 at 10:30",
    "s3://bucket/key@v2 has no userinfo",
    "mongodb://localhost:27017/db?authSource=admin",
    "http://host:8080/path?page=2&sort=asc",
    "line one mongodb://h:1\nadmin@example.org: line two",
]


@pytest.mark.parametrize("text", TEXTS)
def test_text_without_a_password_is_unchanged(text, no_registry):
    assert redact(text) == text


def test_two_uris_on_one_line_are_each_redacted(no_registry):
    text = "copy mongodb://a:FirstPw1@h1:1/x to http://b:Second@Pw2@h2:2/y now"
    assert redact(text) == "copy mongodb://a:***@h1:1/x to http://b:***@h2:2/y now"


def test_punctuation_after_a_uri_survives(no_registry):
    assert redact("--db https://h/b?X-Amz-Signature=abc123: not a MongoDB URI") == \
        "--db https://h/b?X-Amz-Signature=***: not a MongoDB URI"
    assert redact("(mongodb://u:Pw0rd1@h/?tlsCertificateKeyFilePassword=Cert1), retry") == \
        "(mongodb://u:***@h/?tlsCertificateKeyFilePassword=***), retry"


def test_meta_records_are_redacted_recursively(no_registry):
    rec = {"_id": "nodes", "kind": "rag_nodes", "size": 1234, "finished": None, "positions": True,
           "source": "s3://KEYID:S3cretKey9@bucket/funke/nodes.bson",
           "error": "cannot reach MongoDB at mongodb://u:Mongo Pw@1@h:1 (AutoReconnect)",
           "stats": {"urls": ["http://a:NestedPw1@h/x", 3], "pair": ("https://b:TuplePw2@h", 1.5)}}
    out = redact_record(rec)
    text = repr(out)
    assert not any(s in text for s in ("S3cretKey9", "Mongo Pw@1", "NestedPw1", "TuplePw2"))
    assert out["source"] == "s3://KEYID:***@bucket/funke/nodes.bson"
    assert out["error"] == "cannot reach MongoDB at mongodb://u:***@h:1 (AutoReconnect)"
    assert out["stats"]["urls"][1] == 3 and isinstance(out["stats"]["pair"], tuple)
    assert {k: out[k] for k in ("_id", "kind", "size", "finished", "positions")} == \
        {k: rec[k] for k in ("_id", "kind", "size", "finished", "positions")}
    assert rec["source"].endswith("S3cretKey9@bucket/funke/nodes.bson")  # the input is left as it was


# ---------------------------------------------------------------------------------------------
# the CLI: nothing listens on the ports, so each run fails — in one line, without the password


def _local(uri: str, port: int, port2: int) -> str:
    # an IP is no valid mongodb+srv host: pymongo refuses it at once, with no DNS lookup
    return uri.replace(HOST, f"127.0.0.1:{port}").replace(HOST2, f"127.0.0.1:{port2}").replace(SRV, "127.0.0.1")


@pytest.fixture(scope="module")
def cli_runs() -> dict:
    """Every case through ``lsdgraph info --db URI``, run side by side (each takes a second)."""
    env = subprocess_env(LSDGRAPH_SERVER_TIMEOUT_MS="300")
    port, port2 = free_port(), free_port()
    with ThreadPoolExecutor(8) as pool:
        runs = {c.id: pool.submit(run_cli, "info", "--db", _local(c.uri, port, port2), "--name", "x", env=env)
                for c in CASES}
        return {k: f.result() for k, f in runs.items()}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_cli_prints_no_password(case, cli_runs):
    r = cli_runs[case.id]
    assert not leaked(case, r.stdout + r.stderr), r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    if case.cli_issue:
        pytest.xfail(f"{case.cli_issue}; store.connect must turn every driver complaint into one LsdgraphError")
    assert r.returncode == 1, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
