// Nodes and edges of a RAG in an ROI, optionally at a merge threshold — the same read as
// lsdgraph.open_rag(...).read_arrays(roi, max_score, edges=policy).
//   mongosh "$URI" --quiet --eval 'var roi = {offset: [0,0,0], shape: [4000,4000,4000]}, maxScore = 0.5' --file roi.js
// Parameters: roi (required), maxScore, edges (collection; default: the only edges_* one, else
//             edges_hist_quant_75), policy ("u": edges whose u is inside (daisy's rule), "both",
//             "either"), pretty, explain (true: the output also lists each find's collection and
//             filter, as lsdgraph's Rag.explain does).
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

// the block predicate (sharded layout) when the collections carry block keys, as Rag._block_filter
const nodeBlocks = hasBlocks(nodesColl, 'rag_nodes', BLOCKS.shard_keys.rag_nodes, BLOCKS.nodes, NODE_POS);
const edgeBlocks = hasBlocks(edgesColl, 'rag_edges', BLOCKS.shard_keys.rag_edges, BLOCKS.edges.u, EDGE_POS.u);
const blocksOf = (has, field) => (has ? blockFilter(R, field) : {});

const queries = [];
const find = (coll, kind, use, filter, proj) => {
  queries.push({ collection: coll.getName(), filter });
  return coll.find(filter, proj).hint(indexName(kind, use)).toArray();
};
const nodes = find(nodesColl, 'rag_nodes', 'roi', Object.assign(roiFilter(R, NODE_POS), blocksOf(nodeBlocks, BLOCKS.nodes)), nodeProjection());
const proj = edgeProjection();
// keep the position fields needed to apply the policy, then drop them from the output
const keepPos = (end) => { const p = Object.assign({}, proj); EDGE_POS[end].forEach((f) => delete p[f]); return p; };
let edges = [];
const first = find(edgesColl, 'rag_edges', 'roi_u', Object.assign(roiFilter(R, EDGE_POS.u), blocksOf(edgeBlocks, BLOCKS.edges.u), score),
  policy === 'both' ? keepPos('v') : proj);
edges = policy === 'both' ? first.filter((e) => inRoi(R, e, EDGE_POS.v)) : first;
if (policy === 'either') {
  const second = find(edgesColl, 'rag_edges', 'roi_v', Object.assign(roiFilter(R, EDGE_POS.v), blocksOf(edgeBlocks, BLOCKS.edges.v), score),
    keepPos('u'));
  edges = edges.concat(second.filter((e) => !inRoi(R, e, EDGE_POS.u)));
}
if (!nodes.length) note(whyNoNodes(R, nodesColl));
else if (!edges.length) {
  const t = param('maxScore');
  note(`${nodes.length} nodes in roi ${showRoi(R)} but no edge of ${edgesColl.getName()} with ${policy === 'u' ? 'its u end' : policy === 'both' ? 'both ends' : 'an end'} there${t === undefined || t === null ? '' : ` and merge_score <= ${t}`}`);
}
const strip = (e) => { EDGE_POS.u.concat(EDGE_POS.v).forEach((f) => delete e[f]); return e; };
const out = { roi: R, policy, edges_collection: edgesColl.getName(), nodes, edges: edges.map(strip) };
if (param('explain', false)) out.queries = queries;
emit(out);
