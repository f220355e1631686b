// Nodes and edges of a RAG in an ROI, optionally at a merge threshold — the same read as
// lsdgraph.open_rag(...).read_arrays(roi, max_score, edges=policy).
//   mongosh "$URI" --quiet --eval 'var roi = {offset: [0,0,0], shape: [4000,4000,4000]}, maxScore = 0.5' --file roi.js
// Parameters: roi (required), maxScore, edges (collection; default: the only edges_* one, else
//             edges_hist_quant_75), policy ("u": edges whose u is inside (daisy's rule), "both",
//             "either"), pretty.
// No node in the ROI prints the result and a note on stderr why (an ROI beside the data: its bounding box).
load(require('path').join(__dirname, 'lib.js'));

const R = parseRoi(param('roi'));
if (!R) fail('set roi = {offset: [z,y,x], shape: [dz,dy,dx]} (nm)');
const policy = param('policy', SCHEMA.roi.default_edge_policy);
if (!Object.keys(SCHEMA.roi.edge_policies).includes(policy)) fail(`policy ${policy}: use one of ${Object.keys(SCHEMA.roi.edge_policies).join(', ')}`);
const nodesColl = requireCollection('nodes', 'rag_nodes');
const edgesColl = edgesCollection(param('edges'));
const score = checkedThreshold(edgesColl, param('maxScore'));
if (!edgesColl.findOne({ [EDGE_POS.u[0]]: { $exists: true } }, { _id: 1 })) {
  fail(`${edgesColl.getName()} has no endpoint positions; run \`lsdgraph index --name ${db.getName()}\` once`);
}

const nodes = nodesColl.find(roiFilter(R, NODE_POS), { _id: 0 }).hint(indexName('rag_nodes', 'roi')).toArray();
const proj = edgeProjection();
// keep the position fields needed to apply the policy, then drop them from the output
const keepPos = (end) => { const p = Object.assign({}, proj); EDGE_POS[end].forEach((f) => delete p[f]); return p; };
let edges = [];
const first = edgesColl.find(Object.assign(roiFilter(R, EDGE_POS.u), score), policy === 'both' ? keepPos('v') : proj)
  .hint(indexName('rag_edges', 'roi_u')).toArray();
edges = policy === 'both' ? first.filter((e) => inRoi(R, e, EDGE_POS.v)) : first;
if (policy === 'either') {
  const second = edgesColl.find(Object.assign(roiFilter(R, EDGE_POS.v), score), keepPos('u')).hint(indexName('rag_edges', 'roi_v')).toArray();
  edges = edges.concat(second.filter((e) => !inRoi(R, e, EDGE_POS.u)));
}
if (!nodes.length) note(whyNoNodes(R, nodesColl));
else if (!edges.length) {
  const t = param('maxScore');
  note(`${nodes.length} nodes in roi ${showRoi(R)} but no edge of ${edgesColl.getName()} with ${policy === 'u' ? 'its u end' : policy === 'both' ? 'both ends' : 'an end'} there${t === undefined || t === null ? '' : ` and merge_score <= ${t}`}`);
}
const strip = (e) => { EDGE_POS.u.concat(EDGE_POS.v).forEach((f) => delete e[f]); return e; };
emit({ roi: R, policy, edges_collection: edgesColl.getName(), nodes, edges: edges.map(strip) });
