// Shared by lsdgraph's mongosh scripts. Collection names, index names, fields, ROI and threshold rules
// come from ../lsdgraph/schema.json: the same file the Python package reads, so both agree.
// Loaded by each script with: load(require('path').join(__dirname, 'lib.js'));
/* global db, print, EJSON, quit */
const lsdFs = require('fs');
const lsdPath = require('path');
const SCHEMA = JSON.parse(lsdFs.readFileSync(lsdPath.join(__dirname, '..', 'lsdgraph', 'schema.json'), 'utf8'));
const KIND = {};
for (const k of Object.keys(SCHEMA.kinds)) KIND[k] = SCHEMA.kinds[k];
const NODE_POS = SCHEMA.kinds.rag_nodes.position;
const SKEL_POS = SCHEMA.kinds.skeleton_nodes.position;
const EDGE_POS = SCHEMA.edge_positions;
const SCORE = SCHEMA.threshold.field;

function fail(msg) {
  // one line on stderr and a non-zero exit, like the Python CLI
  throw new Error(msg);
}

function param(name, fallback) {
  // parameters arrive as globals: mongosh "$URI/db" --eval 'var roi = ..., maxScore = 0.5' --file x.js
  return typeof globalThis[name] === 'undefined' ? fallback : globalThis[name];
}

function triple(v, what) {
  if (!Array.isArray(v) || v.length !== 3) fail(`${what} ${JSON.stringify(v)}: give three numbers (z, y, x) in nm`);
  return v.map((x) => {
    const n = (x === null) ? Infinity : Number(x);
    if (Number.isNaN(n)) fail(`${what} ${JSON.stringify(v)}: not numbers`);
    return n;
  });
}

// roi: {offset: [z, y, x], shape: [dz, dy, dx]} or {begin: [...], end: [...]} or "z0,y0,x0:z1,y1,x1" (nm)
function parseRoi(roi) {
  if (roi === undefined || roi === null) return null;
  let begin, end;
  if (typeof roi === 'string') {
    const parts = roi.split(':');
    if (parts.length !== 2) fail(`roi ${roi}: write it as z0,y0,x0:z1,y1,x1 (nm)`);
    begin = triple(parts[0].split(','), 'roi begin');
    end = triple(parts[1].split(','), 'roi end');
  } else if (roi.offset !== undefined && roi.shape !== undefined) {
    begin = triple(roi.offset, 'roi offset');
    const shape = triple(roi.shape, 'roi shape');
    if (shape.some((s) => s < 0)) fail(`roi shape ${JSON.stringify(roi.shape)} is negative on an axis`);
    end = begin.map((b, i) => b + shape[i]);
  } else if (roi.begin !== undefined && roi.end !== undefined) {
    begin = triple(roi.begin, 'roi begin');
    end = triple(roi.end, 'roi end');
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

function inRoi(roi, doc, fields) {
  return fields.every((name, i) => typeof doc[name] === 'number' && doc[name] >= roi.begin[i] && doc[name] < roi.end[i]);
}

function thresholdFilter(maxScore) {
  if (maxScore === undefined || maxScore === null) return {};
  if (typeof maxScore !== 'number' || Number.isNaN(maxScore)) fail(`maxScore ${maxScore}: give a number`);
  const f = {};
  f[SCORE] = { $lte: maxScore };
  return f;
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
  if (name.startsWith('lsdgraph_')) return 'other';  // lsdgraph's own collections
  for (const k of Object.keys(SCHEMA.kinds)) {
    const m = SCHEMA.kinds[k].match;
    if (m && new RegExp(m).test(name)) return k;
  }
  return 'other';
}

function edgesCollection(name) {
  if (name) return requireCollection(name, 'rag_edges');
  const all = collectionNames().filter((n) => kindOf(n) === 'rag_edges');
  if (all.length !== 1) fail(`database ${db.getName()} has ${all.length} edges collections (${all.join(', ') || 'none'}); set edges = "..."`);
  return db.getCollection(all[0]);
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
