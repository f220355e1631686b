// One or more ground-truth skeletons by neuron id: nodes (id, neuron_id, z, y, x) and the edges between
// them — the same read as lsdgraph.open_skeletons(...).arrays(neuron_ids=...).
//   mongosh "$URI" --quiet --eval 'var neuronId = 12' --file skeleton.js
// Parameters: neuronId (number or list), prefix (collections <prefix>.nodes/.edges; default: the only set), pretty.
// A neuron id without a node is an error that names the ids there are.
load(require('path').join(__dirname, 'lib.js'));

let prefix = param('prefix');
const sets = collectionNames().filter((n) => kindOf(n) === 'skeleton_nodes').map((n) => n.slice(0, -'.nodes'.length));
if (!prefix) {
  if (sets.length !== 1) fail(`database ${db.getName()} holds ${sets.length} skeleton sets (${sets.join(', ') || 'none'}); set prefix = "..."`);
  prefix = sets[0];
}
const nodesColl = requireCollection(`${prefix}.nodes`, 'skeleton_nodes');
const edgesColl = requireCollection(`${prefix}.edges`, 'skeleton_edges');
let ids = param('neuronId');
if (ids === undefined) fail('set neuronId = <id> (or a list)');
ids = (Array.isArray(ids) ? ids : [ids]).map((i) => asLong(i, 'neuronId'));
const nodes = nodesColl.find({ neuron_id: { $in: ids } }, { _id: 0 }).hint(indexName('skeleton_nodes', 'neuron')).toArray();
const found = new Set(nodes.map((n) => String(n.neuron_id)));
const unknown = ids.filter((i) => !found.has(String(i)));
if (unknown.length) {
  const has = idSummary(nodesColl, 'neuron_id', 'skeleton_nodes', 'neuron', 'nodes');
  fail(`no neuron ${unknown.join(', ')} in ${db.getName()}.${nodesColl.getName()} (${has})`);
}
// as lsdgraph's SkeletonSet: endpoint names from the load record (else what the documents use), and
// one indexed read when ingest copied each edge's neuron_id onto it (else every edge, filtered here)
const meta = db.getCollection(SCHEMA.collections.meta).findOne({ _id: edgesColl.getName() }) || {};
const sample = edgesColl.findOne({}) || {};
const [a, b] = meta.endpoints || ((!(SKEL_ENDS[0] in sample) && SKEL_ALT_ENDS[0] in sample) ? SKEL_ALT_ENDS : SKEL_ENDS);
const joined = (meta.positions !== undefined && meta.positions !== null) ? !!meta.positions
  : edgesColl.findOne({ neuron_id: { $exists: true } }) !== null;
const edgeCursor = edgesColl.find(joined ? { neuron_id: { $in: ids } } : {}, { _id: 0, [a]: 1, [b]: 1 });
const have = new Set(nodes.map((n) => String(n.id)));
const edges = (joined ? edgeCursor.hint(indexName('skeleton_edges', 'neuron')) : edgeCursor).toArray()
  .filter((e) => have.has(String(e[a])) && have.has(String(e[b])))
  .map((e) => ({ u: e[a], v: e[b] }));
emit({ prefix, neuron_ids: ids, nodes, edges });
