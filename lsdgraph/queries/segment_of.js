// Which segment holds a fragment at a merge threshold; with members = true, every fragment of that
// segment. From the LUTs `lsdgraph segment --db-luts` wrote into lsdgraph_lut.<edges> (a fragment of the
// RAG without a document there is its own segment).
//   mongosh "$URI" --quiet --eval 'var fragment = 77322656253, threshold = 0.46' --file segment_of.js
// Parameters: fragment (id or list; a decimal string for ids above 2**53), threshold, edges (default: the only
// edges_* collection, else edges_hist_quant_75), members, pretty. A fragment the RAG's nodes do not hold is an
// error that names the ids there are.
load(require('path').join(__dirname, 'lib.js'));

const edgesName = edgesCollection(param('edges')).getName();
const lutName = SCHEMA.collections.lut_prefix + edgesName;
const luts = requireCollection(lutName, 'other');
const t = param('threshold');
if (typeof t !== 'number') fail('set threshold = <number> (one of the thresholds `lsdgraph segment` wrote)');
const rec = db.getCollection(SCHEMA.collections.meta).findOne({ _id: lutName }) || {};
if (rec.thresholds && !rec.thresholds.includes(t)) fail(`no LUT at threshold ${t} in ${lutName}; it has: ${rec.thresholds.join(', ')}`);
let frags = param('fragment');
if (frags === undefined) fail('set fragment = <fragment id> (or a list)');
frags = (Array.isArray(frags) ? frags : [frags]).map((f) => asLong(f, 'fragment'));
const found = frags.map((f) => luts.find({ threshold: t, fragment: f }, { _id: 0, segment: 1 })
  .hint(indexName('lut', 'fragment')).limit(1).toArray()[0]);
checkFragments(frags.filter((f, i) => !found[i]));
const rows = frags.map((f, i) => {
  const d = found[i];
  const segment = d ? d.segment : f;
  const out = { fragment: f, segment };
  if (param('members', false)) {
    const others = luts.find({ threshold: t, segment }, { _id: 0, fragment: 1 }).hint(indexName('lut', 'segment')).toArray().map((x) => x.fragment);
    out.members = [segment].concat(others.filter((x) => String(x) !== String(segment)));
  }
  return out;
});
// a fragment the LUTs do not name is its own segment — if it is a fragment of the RAG at all
function checkFragments(rest) {
  if (!rest.length || !collectionNames().includes('nodes')) return;
  const nodesColl = db.getCollection('nodes');
  const have = new Set(nodesColl.find({ id: { $in: rest } }, { _id: 0, id: 1 }).hint(indexName('rag_nodes', 'id')).toArray()
    .map((n) => String(n.id)));
  const unknown = rest.filter((f) => !have.has(String(f)));
  if (unknown.length) {
    fail(`no fragment ${unknown.join(', ')} in ${db.getName()}.nodes (${idSummary(nodesColl, 'id', 'rag_nodes', 'id', 'fragments')})`);
  }
}

emit({ lut: lutName, threshold: t, segments: rows });
