// Create lsdgraph's indexes on every collection of a database, by its kind. Idempotent; e.g. on a
// database restored with mongorestore or written by daisy. The indexes: ../_core/schema.json.
//   mongosh "$URI" --quiet --file create_indexes.js
// Parameters: pretty.
// Edges also need their endpoint positions for indexed ROI reads: `lsdgraph index --name DB` adds them.
load(require('path').join(__dirname, 'lib.js'));

const made = [];
collectionNames().forEach((name) => {
  const kind = kindOf(name);
  const specs = SCHEMA.indexes[kind] || [];
  specs.forEach((spec) => {
    const key = {};
    spec.key.forEach(([f, d]) => { key[f] = d; });
    db.getCollection(name).createIndex(key, { name: spec.name, unique: !!spec.unique });
    made.push({ collection: name, index: spec.name });
  });
});
emit({ database: db.getName(), indexes: made });
