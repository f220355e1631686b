// Shared by lsdgraph's mongosh scripts. Collection names, index names, fields, ROI and threshold rules
// come from ../_core/schema.json (next to this folder inside the lsdgraph package): the same file the
// Python package reads, so both agree. `lsdgraph scripts` prints this folder; the scripts run from any cwd.
// Loaded by each script with: load(require('path').join(__dirname, 'lib.js'));
// Output: canonical Extended JSON (64-bit ids exact); --eval 'var pretty = true' prints indented plain JSON.
/* global db, print, EJSON, Long */
const lsdFs = require('fs');
const lsdPath = require('path');
const SCHEMA = readSchema();
const KIND = {};
for (const k of Object.keys(SCHEMA.kinds)) KIND[k] = SCHEMA.kinds[k];
const NODE_POS = SCHEMA.kinds.rag_nodes.position;
const SKEL_POS = SCHEMA.kinds.skeleton_nodes.position;
const EDGE_POS = SCHEMA.edge_positions;
const SCORE = SCHEMA.threshold.field;
const OWN_PREFIX = SCHEMA.collections.own_prefix;
const SKEL_ENDS = SCHEMA.kinds.skeleton_edges.integers;
const SKEL_ALT_ENDS = SCHEMA.kinds.skeleton_edges.alternative_integers;

// the name of the index a read of `kind` uses for `use` (roi, threshold...): schema.json names them
function indexName(kind, use) {
  const spec = (SCHEMA.indexes[kind] || []).find((s) => s.use === use);
  if (!spec) fail(`schema.json: no ${use} index for ${kind}`);
  return spec.name;
}

// schema.json of the package this folder belongs to; the real folder, so a symlink to it (the
// checkout's queries/) works too
function readSchema() {
  const file = lsdPath.join(lsdFs.realpathSync(__dirname), '..', '_core', 'schema.json');
  if (!lsdFs.existsSync(file)) {
    throw new Error(`${file} not found: run the scripts from lsdgraph's package folder (\`lsdgraph scripts\` prints it)`);
  }
  return JSON.parse(lsdFs.readFileSync(file, 'utf8'));
}

function fail(msg) {
  // one line on stderr and a non-zero exit, like the Python CLI
  throw new Error(msg);
}

// one line on stderr that is not an error (exit 0): why a valid result is empty
function note(msg) {
  lsdFs.writeSync(2, `note: ${msg}\n`);
}

function param(name, fallback) {
  // parameters arrive as globals: mongosh "$URI" --eval 'var roi = ..., maxScore = 0.5' --file x.js
  return typeof globalThis[name] === 'undefined' ? fallback : globalThis[name];
}

// three numbers; null (funlib's "unbounded") becomes nullAs; an empty string is not a number
function triple(v, what, nullAs) {
  if (!Array.isArray(v) || v.length !== 3) fail(`${what} ${JSON.stringify(v)}: give three numbers (z, y, x) in nm`);
  return v.map((x) => {
    const n = (x === null) ? nullAs : (typeof x === 'string' && x.trim() === '') ? NaN : Number(x);
    if (Number.isNaN(n)) fail(`${what} ${JSON.stringify(v)}: not numbers`);
    return n;
  });
}

// roi: {offset: [z, y, x], shape: [dz, dy, dx]} or {begin: [...], end: [...]} or "z0,y0,x0:z1,y1,x1" (nm);
// null on an axis leaves it unbounded, as lsdgraph.roi.make_roi does for funlib's None
function parseRoi(roi) {
  if (roi === undefined || roi === null) return null;
  let begin, end;
  if (typeof roi === 'string') {
    const parts = roi.split(':');
    if (parts.length !== 2) fail(`roi ${roi}: write it as z0,y0,x0:z1,y1,x1 (nm)`);
    begin = triple(parts[0].split(','), 'roi begin', NaN);
    end = triple(parts[1].split(','), 'roi end', NaN);
  } else if (roi.offset !== undefined && roi.shape !== undefined) {
    const offset = triple(roi.offset, 'roi offset', -Infinity);
    const shape = triple(roi.shape, 'roi shape', Infinity);
    if (shape.some((s) => s < 0)) fail(`roi shape ${JSON.stringify(roi.shape)} is negative on an axis`);
    const unbounded = offset.map((o, i) => !Number.isFinite(o) || !Number.isFinite(shape[i]));
    begin = offset.map((o, i) => (unbounded[i] ? -Infinity : o));
    end = offset.map((o, i) => (unbounded[i] ? Infinity : o + shape[i]));
  } else if (roi.begin !== undefined && roi.end !== undefined) {
    begin = triple(roi.begin, 'roi begin', -Infinity);
    end = triple(roi.end, 'roi end', Infinity);
  } else {
    fail(`roi ${JSON.stringify(roi)}: give {offset: [z,y,x], shape: [dz,dy,dx]} in nm`);
  }
  if (end.some((e, i) => e < begin[i])) fail(`roi ${JSON.stringify(roi)}: end before begin on an axis`);
  return { begin, end };
}

// half-open [begin, end) on each axis; ±Infinity for unbounded axes still excludes missing fields
function roiFilter(roi, fields) {
  const f = {};
  if (!roi) return f;
  fields.forEach((name, i) => { f[name] = { $gte: roi.begin[i], $lt: roi.end[i] }; });
  return f;
}

// the block key of the sharded layout (schema.json blocks; lsdgraph/_core/blocks.py): a block's
// stored index per axis is floor(x / size_nm) + offset_blocks, clamped to [0, 2**bits_per_axis); the
// key interleaves the three indices z, y, x from the most significant bit (BigInt: keys pass 2**53)
const BLOCKS = SCHEMA.blocks;
function blockIndex(x) {
  const i = Math.floor(x / BLOCKS.size_nm) + BLOCKS.offset_blocks;
  return Math.min(Math.max(i, 0), 2 ** BLOCKS.bits_per_axis - 1);
}

function mortonCode(idx) {
  let c = 0n;
  for (let bit = BLOCKS.bits_per_axis - 1; bit >= 0; bit--) {
    for (const i of idx) c = (c << 1n) | BigInt((i >> bit) & 1);
  }
  return c;
}

// {field: {$in: [keys]}} for every block the ROI touches (from the block of begin to the block of the
// largest double below end, per axis), as blocks.in_filter: {} above max_cover blocks (an unbounded or
// whole-volume read goes to every shard anyway)
function blockFilter(roi, field) {
  if (!roi) return {};
  const lo = roi.begin.map(blockIndex);
  const hi = roi.end.map((e, i) => (e > roi.begin[i] ? blockIndex(-nextUp(-e)) : lo[i] - 1));  // empty: none
  const count = lo.reduce((n, l, i) => n * Math.max(0, hi[i] - l + 1), 1);
  if (count > BLOCKS.max_cover) return {};
  const codes = [];
  for (let z = lo[0]; z <= hi[0]; z++) {
    for (let y = lo[1]; y <= hi[1]; y++) {
      for (let x = lo[2]; x <= hi[2]; x++) codes.push(mortonCode([z, y, x]));
    }
  }
  codes.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return { [field]: { $in: codes.map((c) => Long.fromString(c.toString())) } };
}

// whether coll carries block keys at this block size (Rag.has_blocks): the block index is there and
// the first keyed document's key is its position's
function hasBlocks(coll, kind, use, field, posFields) {
  const name = indexName(kind, use);
  if (!coll.getIndexes().some((i) => i.name === name)) return false;
  const proj = { _id: 0, [field]: 1 };
  posFields.forEach((f) => { proj[f] = 1; });
  const doc = coll.find({ [field]: { $gte: 0 } }, proj).hint(name).limit(1).toArray()[0];
  if (!doc || posFields.some((f) => doc[f] === undefined || doc[f] === null)) return false;
  return mortonCode(posFields.map((f) => blockIndex(num(doc[f])))).toString() === doc[field].toString();
}

function num(v) {
  // int64 values arrive as Long objects
  return (typeof v === 'number') ? v : (v !== null && v !== undefined && typeof v.toNumber === 'function') ? v.toNumber() : NaN;
}

function inRoi(roi, doc, fields) {
  return fields.every((name, i) => num(doc[name]) >= roi.begin[i] && num(doc[name]) < roi.end[i]);
}

function thresholdFilter(maxScore) {
  if (maxScore === undefined || maxScore === null) return {};
  if (typeof maxScore !== 'number' || Number.isNaN(maxScore)) fail(`maxScore ${maxScore}: give a number`);
  const f = {};
  f[SCORE] = { $lte: maxScore };
  return f;
}

// [min, max] stored merge score from the merge_score index, or null when every score is null
function scoreRange(coll) {
  const q = { [SCORE]: { $gte: -Infinity } };
  const end = (dir) => coll.find(q, { [SCORE]: 1 }).sort({ [SCORE]: dir }).hint(indexName('rag_edges', 'threshold')).limit(1).toArray();
  const lo = end(1);
  return lo.length ? [lo[0][SCORE], end(-1)[0][SCORE]] : null;
}

// the threshold filter, after the checks of lsdgraph's Rag.check_threshold (scores within [0, 1]
// admit any threshold in [0, 1])
function checkedThreshold(coll, maxScore) {
  const f = thresholdFilter(maxScore);
  if (!Object.keys(f).length) return f;
  const r = scoreRange(coll);
  if (!r) fail(`${coll.getName()} has no merge scores at all (every score is null), so no edge passes a threshold; leave maxScore unset`);
  const lo = r[0] >= 0 ? 0 : r[0];
  const hi = r[1] <= 1 ? 1 : r[1];
  if (maxScore < lo || maxScore > hi) {
    fail(`maxScore ${maxScore} is outside the stored range of ${coll.getName()} (scores ${r[0]} .. ${r[1]}); pick a threshold in [${lo}, ${hi}]`);
  }
  return f;
}

// the next double above x (Python's math.nextafter(x, inf)): the histogram's last bound
function nextUp(x) {
  if (!Number.isFinite(x)) return x;
  if (x === 0) return Number.MIN_VALUE;
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  view.setBigUint64(0, view.getBigUint64(0) + (x > 0 ? 1n : -1n));
  return view.getFloat64(0);
}

// an integer parameter (number, decimal string or Long) as a Long, so ids above 2**53 stay exact
function asLong(x, what) {
  if (x !== null && typeof x === 'object' && typeof x.toNumber === 'function') return x;
  if ((typeof x === 'number' && Number.isSafeInteger(x)) || (typeof x === 'string' && /^-?[0-9]+$/.test(x))) {
    return Long.fromString(String(x));
  }
  fail(`${what} ${JSON.stringify(x)}: give an integer (a decimal string for ids above 2**53)`);
}

function collectionNames() {
  return db.getCollectionNames().filter((n) => !n.startsWith(SCHEMA.collections.staging_prefix));
}

function requireCollection(name, kindName) {
  const names = collectionNames();
  if (!names.includes(name)) {
    const same = names.filter((n) => kindOf(n) === kindName);
    fail(`no collection ${name} in database ${db.getName()}; it has: ${same.join(', ') || 'none'}`);
  }
  return db.getCollection(name);
}

function kindOf(name) {
  if (name.startsWith(OWN_PREFIX)) return 'other';  // lsdgraph's own collections
  for (const k of Object.keys(SCHEMA.kinds)) {
    const m = SCHEMA.kinds[k].match;
    if (m && new RegExp(m).test(name)) return k;
  }
  return 'other';
}

// the one rule of lsdgraph's schema.choose_edges: the named one, else the only one, else the default
function edgesCollection(name) {
  if (name) return requireCollection(name, 'rag_edges');
  const all = collectionNames().filter((n) => kindOf(n) === 'rag_edges').sort();
  if (all.length === 1) return db.getCollection(all[0]);
  if (all.includes(SCHEMA.default_edges.name)) return db.getCollection(SCHEMA.default_edges.name);
  fail(`database ${db.getName()} has ${all.length} edges collections (${all.join(', ') || 'none'}) and none is ${SCHEMA.default_edges.name}; set edges = "..."`);
}

// fields lsdgraph adds to edges for indexed ROI reads: not part of the user's data
function edgeProjection() {
  const p = { _id: 0 };
  EDGE_POS.u.concat(EDGE_POS.v, Object.values(BLOCKS.edges)).forEach((f) => { p[f] = 0; });
  return p;
}

// nodes as the user's data: without lsdgraph's block key
function nodeProjection() {
  return { _id: 0, [BLOCKS.nodes]: 0 };
}

// [lowest, highest] value of an indexed field (null when the collection holds none)
function fieldRange(coll, field, kind, use) {
  const q = { [field]: { $exists: true } };
  const end = (dir) => coll.find(q, { _id: 0, [field]: 1 }).sort({ [field]: dir }).hint(indexName(kind, use)).limit(1).toArray();
  const lo = end(1);
  return lo.length ? [lo[0][field], end(-1)[0][field]] : null;
}

// what a collection holds, for a message: "N <docs>, <field>s A .. B"
function idSummary(coll, field, kind, use, docs) {
  const r = fieldRange(coll, field, kind, use);
  return r ? `${coll.estimatedDocumentCount()} ${docs}, ${field}s ${r[0]} .. ${r[1]}` : `no ${docs}`;
}

// {begin, end} of the node centres (the ingest record's when the load completed, else the data), or null
function nodeBbox(nodesColl) {
  const rec = db.getCollection(SCHEMA.collections.meta).findOne({ _id: nodesColl.getName() }) || {};
  const box = rec.status === 'complete' && rec.stats ? rec.stats.bbox : null;
  if (box) return { begin: box.min.map(num), end: box.max.map(num) };
  const g = { _id: null };
  NODE_POS.forEach((f) => { g[`${f}_min`] = { $min: `$${f}` }; g[`${f}_max`] = { $max: `$${f}` }; });
  const r = nodesColl.aggregate([{ $group: g }]).toArray()[0];
  if (!r || r[`${NODE_POS[0]}_min`] === null) return null;
  return { begin: NODE_POS.map((f) => num(r[`${f}_min`])), end: NODE_POS.map((f) => num(r[`${f}_max`])) };
}

function showRoi(R) {
  return `[${R.begin.join(', ')}] .. [${R.end.join(', ')})`;
}

// why a read of roi found no node: an empty collection, an ROI beside the data, or a gap in it
function whyNoNodes(R, nodesColl) {
  const box = nodeBbox(nodesColl);
  const where = `${db.getName()}.${nodesColl.getName()}`;
  if (!box) return `${where} holds no nodes`;
  const shown = `[${box.begin.join(', ')}] .. [${box.end.join(', ')}]`;
  if (R.begin.some((b, i) => b > box.end[i]) || R.end.some((e, i) => e <= box.begin[i])) {
    return `roi ${showRoi(R)} lies outside the nodes' bounding box ${shown} (nm, zyx: the lowest and highest centres)`;
  }
  return `no node centre of ${where} lies in roi ${showRoi(R)} (the nodes span ${shown} nm, zyx)`;
}

// a Long as a plain number; one a double cannot hold as a placeholder for its digits (see humanJson)
const INT64_MARK = '$lsdgraph.int64:';
function plain(v) {
  if (v !== null && typeof v === 'object') {
    if (v._bsontype === 'Long') {
      const n = v.toNumber();
      return Number.isSafeInteger(n) ? n : INT64_MARK + v.toString();
    }
    if (Array.isArray(v)) return v.map(plain);
    // documents (the shell's own document class, not Object); BSON values other than Long, dates and
    // regular expressions stay as they are for EJSON
    if (v._bsontype === undefined && !(v instanceof Date) && !(v instanceof RegExp)) {
      const out = {};
      for (const k of Object.keys(v)) out[k] = plain(v[k]);
      return out;
    }
  }
  return v;
}

// relaxed Extended JSON, indented: plain numbers (every digit of ids above 2**53 kept), {"$date": ...}
// and the like only where JSON has no plain form (±Infinity, dates, ObjectIds)
function humanJson(obj) {
  return EJSON.stringify(plain(obj), null, 2, { relaxed: true }).replace(/"\$lsdgraph\.int64:(-?[0-9]+)"/g, '$1');
}

function emit(obj) {
  // canonical Extended JSON keeps 64-bit ids exact; pretty = true: indented, plain numbers
  print(param('pretty', false) ? humanJson(obj) : EJSON.stringify(obj, { relaxed: false }));
}
