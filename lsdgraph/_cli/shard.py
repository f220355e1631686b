"""``lsdgraph shard-plan``: the mongosh commands that shard a MongoDB database on its block key."""
from __future__ import annotations

import sys

from lsdgraph._cli.common import add_command, db_args
from lsdgraph._core.errors import LsdgraphError

SUMMARY = "print the mongosh commands that shard a MongoDB database on its spatial block key"
DESCRIPTION = """
    For a database lsdgraph loaded (or `lsdgraph index` completed): prints, never runs, the mongosh
    commands that shard it on a sharded cluster: sh.enableSharding, sh.shardCollection with the
    shard keys {blk: 1, id: 1} (nodes) and {blk_u: 1, u: 1, v: 1} (each edges collection), the
    unique indexes MongoDB refuses on a sharded collection (they do not start with the shard key)
    built again without `unique`, and sh.splitAt at K-1 points taken from a $sample of each
    collection, so the K ranges hold equal numbers of documents. blk is the Morton code of the
    4096 nm block holding the node (blk_u: the edge's u end); ROI reads say which blocks they
    need, so mongos sends them only to the shards owning those blocks."""
EXAMPLES = """
    lsdgraph shard-plan --db mongodb://localhost:27017 --name hemi_roi1 --shards 4
    lsdgraph shard-plan --db mongodb://localhost:27017 --name hemi_roi1 --shards 8 --sample 200000 --out plan.js
    mongosh "mongodb://MONGOS:27017" --file plan.js"""


def _whole(text: str, param: str) -> int:
    try:
        return int(str(text).replace("_", ""))
    except ValueError:
        raise LsdgraphError(f"{param}={text!r}: not a whole number; use 1 or more") from None


def cmd_shard_plan(a) -> int:
    from lsdgraph._core.paths import output_file
    from lsdgraph._jobs.shard_plan import shard_plan

    out = output_file(a.out) if a.out else None
    plan = shard_plan(a.db, a.name, shards=_whole(a.shards, "shards"), sample=_whole(a.sample, "sample"))
    text = plan.script()
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
        print(f"wrote the plan for {plan.database} on {plan.shards} shard(s) to {out}; run it with "
              f"mongosh \"mongodb://MONGOS:27017\" --file {out}", file=sys.stderr)
    return 0


def register(sub) -> None:
    s = add_command(sub, "shard-plan", SUMMARY, DESCRIPTION, EXAMPLES, cmd_shard_plan)
    db_args(s, name_required=True)
    s.add_argument("--shards", required=True, metavar="K", help="number of shards (1 or more)")
    s.add_argument("--sample", default="100000", metavar="N",
                   help="documents sampled per collection for the split points (default: 100000)")
    s.add_argument("--out", default=None, metavar="FILE", help="write the commands to FILE (default: stdout)")
