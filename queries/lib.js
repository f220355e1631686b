// Shared by lsdgraph's mongosh scripts. Collection names, index names, fields, ROI and threshold rules
// come from ../lsdgraph/_core/schema.json: the same file the Python package reads, so both agree.
// Loaded by each script with: load(require('path').join(__dirname, 'lib.js'));
/* global db, print, EJSON, Long */
const lsdFs = require('fs');
const lsdPath = require('path');
const SCHEMA = JSON.parse(lsdFs.readFileSync(lsdPath.join(__dirname, '..', 'lsdgraph', '_core', 'schema.json'), 'utf8'));
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

function fail(msg) {
  // one line on stderr and a non-zero exit, like the Python CLI
  throw new Error(msg);
}

function param(name, fallback) {
  // parameters arrive as globals: mongosh "$URI/db" --eval 'var roi = ..., maxScore = 0.5' --file x.js
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
  EDGE_POS.u.concat(EDGE_POS.v).forEach((f) => { p[f] = 0; });
  return p;
}

function emit(obj) {
  // canonical Extended JSON keeps 64-bit ids exact
  print(EJSON.stringify(obj, { relaxed: false }));
}
