// Which segment holds a fragment at a merge threshold, from the LUTs `lsdgraph segment` wrote into
// lsdgraph_lut.<edges> (a fragment without a document there is its own segment) — and, with
// members = true, every fragment of that segment.
//   mongosh "$URI/hemi_roi1" --quiet --eval 'var fragment = 77322656253, threshold = 0.46' --file queries/segment_of.js
// Parameters: fragment (id or list; a decimal string for ids above 2**53), threshold, edges (default: the only edges_* collection), members.
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
const rows = frags.map((f) => {
  const d = luts.find({ threshold: t, fragment: f }, { _id: 0, segment: 1 }).hint(indexName('lut', 'fragment')).limit(1).toArray()[0];
  const segment = d ? d.segment : f;
  const out = { fragment: f, segment };
  if (param('members', false)) {
    const others = luts.find({ threshold: t, segment }, { _id: 0, fragment: 1 }).hint(indexName('lut', 'segment')).toArray().map((x) => x.fragment);
    out.members = [segment].concat(others.filter((x) => String(x) !== String(segment)));
  }
  return out;
});
emit({ lut: lutName, threshold: t, segments: rows });
