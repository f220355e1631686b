// Merge-score statistics of an edges collection: histogram, nulls, and edges with merge_score <= t —
// the same numbers as lsdgraph.open_rag(...).threshold_stats(thresholds, bins).
//   mongosh "$URI" --quiet --eval 'var thresholds = [0.1, 0.5, 0.9], bins = 20' --file thresholds.js
// Parameters: thresholds (list), bins (default 20), edges (collection; default: the only edges_* one, else
// edges_hist_quant_75), pretty.
load(require('path').join(__dirname, 'lib.js'));

const coll = edgesCollection(param('edges'));
let bins = param('bins', 20);
if (!Number.isInteger(bins) || bins < 1) fail(`bins ${bins}: give a whole number >= 1`);
const scored = { [SCORE]: { $gte: -Infinity } };
const range = scoreRange(coll);
const total = coll.estimatedDocumentCount();
const out = { edges_collection: coll.getName(), edges: total };
if (!range) {
  note(total ? `every merge score of ${coll.getName()} is null (${total} edges): no histogram` : `${coll.getName()} holds no edges`);
  Object.assign(out, { scored: 0, nulls: total, histogram: [], counts: [] });
} else {
  const [min, max] = range;
  const unit = min >= 0 && max <= 1;
  const from = unit ? 0 : min;
  const to = unit ? 1 : max;
  if (to <= from) bins = 1;  // one score value outside [0, 1]: one bin holds it
  const width = to > from ? (to - from) / bins : 1;
  const bounds = [];
  for (let i = 0; i < bins; i++) bounds.push(from + i * width);
  bounds.push(nextUp(to));
  const rows = coll.aggregate([{ $match: scored },
    { $bucket: { groupBy: `$${SCORE}`, boundaries: bounds, output: { n: { $sum: 1 } } } }], { hint: indexName('rag_edges', 'threshold') }).toArray();
  const byStart = {};
  rows.forEach((r) => { byStart[r._id] = r.n; });
  const histogram = bounds.slice(0, -1).map((b, i) => ({ from: b, to: bounds[i + 1], edges: byStart[b] || 0 }));
  const nScored = histogram.reduce((a, h) => a + h.edges, 0);
  const counts = (param('thresholds', [])).map((t) => ({ threshold: t, edges: coll.countDocuments({ [SCORE]: { $lte: t } }, { hint: indexName('rag_edges', 'threshold') }) }));
  Object.assign(out, { scored: nScored, nulls: total - nScored, min, max, histogram, counts });
}
emit(out);
