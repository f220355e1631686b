// What a database holds, as `lsdgraph info`: collections with kind, count, indexes and load status; RAG
// bounding box and merge-score range.
//   mongosh "$URI" --quiet --file summary.js
// Parameters: pretty.
load(require('path').join(__dirname, 'lib.js'));

const meta = db.getCollection(SCHEMA.collections.meta);
const collections = collectionNames().filter((n) => n !== SCHEMA.collections.meta).sort().map((name) => {
  const c = db.getCollection(name);
  const rec = meta.findOne({ _id: name }) || {};
  return { name, kind: kindOf(name), count: c.estimatedDocumentCount(), indexes: c.getIndexes().map((i) => i.name).sort(),
    status: rec.status || null, source: rec.source || null };
});
const loading = meta.find({ status: { $ne: 'complete' } }, { _id: 1, status: 1, error: 1, bytes_loaded: 1, size: 1 }).toArray();
const out = { database: db.getName(), collections, unfinished_loads: loading };
if (collectionNames().includes('nodes')) {
  const g = { _id: null };
  NODE_POS.forEach((f) => { g[`${f}_min`] = { $min: `$${f}` }; g[`${f}_max`] = { $max: `$${f}` }; });
  const r = db.nodes.aggregate([{ $group: g }]).toArray()[0];
  if (r) out.bbox = { begin: NODE_POS.map((f) => r[`${f}_min`]), end: NODE_POS.map((f) => r[`${f}_max`]) };
}
out.scores = collectionNames().filter((n) => kindOf(n) === 'rag_edges').map((name) => {
  const r = scoreRange(db.getCollection(name));
  return { edges_collection: name, min: r ? r[0] : null, max: r ? r[1] : null };
});
emit(out);
