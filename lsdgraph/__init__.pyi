# The public API of lsdgraph: every name users call, and nothing else. lsdgraph/__init__.py reads
# this file to import each name on first use (so `import lsdgraph` stays cheap); IDEs and type
# checkers read it as the package's interface.

__version__: str

# opening stores, RAGs and skeletons; ROI reads
# agglomeration: the merge tree, thresholds and LUT files
from lsdgraph._algorithms.merge_tree import MergeTree as MergeTree
from lsdgraph._algorithms.merge_tree import build_merge_tree as build_merge_tree
from lsdgraph._algorithms.merge_tree import parse_thresholds as parse_thresholds
from lsdgraph._algorithms.merge_tree import read_lut as read_lut
from lsdgraph._algorithms.merge_tree import write_lut as write_lut

# evaluation against skeletons
from lsdgraph._algorithms.metrics import ERLResult as ERLResult
from lsdgraph._algorithms.metrics import Skeletons as Skeletons
from lsdgraph._algorithms.metrics import best_threshold as best_threshold
from lsdgraph._algorithms.metrics import evaluate_thresholds as evaluate_thresholds
from lsdgraph._algorithms.metrics import expected_run_length as expected_run_length
from lsdgraph._algorithms.metrics import max_erl as max_erl
from lsdgraph._algorithms.metrics import skeleton_scores as skeleton_scores
from lsdgraph._algorithms.metrics import split_merge_counts as split_merge_counts
from lsdgraph._algorithms.metrics import (
    variation_of_information as variation_of_information,
)

# errors
from lsdgraph._core.errors import LsdgraphError as LsdgraphError
from lsdgraph._core.errors import ServerLost as ServerLost
from lsdgraph._core.roi import Roi as Roi

# ingest
from lsdgraph._ingest import IngestReport as IngestReport
from lsdgraph._ingest import ingest as ingest
from lsdgraph._ingest import reindex as reindex
from lsdgraph._io.listing import listing as listing
from lsdgraph._io.sources import SourceChanged as SourceChanged

# synthetic data in the real format, and the whole pipeline
from lsdgraph._jobs.demo import demo as demo
from lsdgraph._jobs.evaluate import EvaluationResult as EvaluationResult
from lsdgraph._jobs.evaluate import evaluate as evaluate
from lsdgraph._jobs.info import describe as describe
from lsdgraph._jobs.relabel import relabel as relabel
from lsdgraph._jobs.segment import SegmentResult as SegmentResult
from lsdgraph._jobs.segment import segment as segment
from lsdgraph._jobs.view import view as view
from lsdgraph._query.rag import Rag as Rag
from lsdgraph._query.rag import SkeletonSet as SkeletonSet
from lsdgraph._query.rag import open_rag as open_rag
from lsdgraph._query.rag import open_skeletons as open_skeletons
from lsdgraph._query.rag import to_networkx as to_networkx
from lsdgraph._stores.api import Backend as Backend
from lsdgraph._stores.api import connect as connect
from lsdgraph._stores.local_db import LocalBackend as LocalBackend
from lsdgraph._stores.mongo import Store as Store
from lsdgraph._synth import SynthResult as SynthResult
from lsdgraph._synth import synth as synth
