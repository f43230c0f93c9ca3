// tally's page worker: owns the wasm session, reads files in chunks, allocates.
//
// Every byte of input goes through here; the main thread only renders. Files are
// read with File.slice() in CHUNK-sized pieces (the next READ_AHEAD pieces are
// read while the current one is parsed), so neither the whole file as a string nor the whole
// file in wasm memory ever exists. Progress is posted after every chunk (a chunk
// is parsed in a few tens of milliseconds). A `cancel` message is seen between
// chunks.
//
// Protocol (main → worker):
//   {type:'add', files:[{key, file, name, orgId}], settings}   read and feed new files, allocate
//   {type:'rebuild', settings}                                  new session from all kept files
//   {type:'remove', key, settings}                              forget one file, rebuild
//   {type:'clear'}                                              forget everything
//   {type:'output', id, kind}                                   one of the writers' outputs (string)
//   {type:'cancel'}
// settings = {options, rulesToml, crosswalkCsv}
// (worker → main): ready, progress, file, job-done, report, output, error, cancelled

import init, { WebSession, version, default_rules_toml, wasm_memory_bytes } from './pkg/tally_web.js';
import { viewOf } from './view.js';

const CHUNK = 4 * 1024 * 1024; // read from the File at a time
const READ_AHEAD = 4; // slices in flight (JS memory, not wasm heap: READ_AHEAD × CHUNK)
const FEED = 512 * 1024; // handed to wasm at a time (progress is posted in between)
const PROGRESS_EVERY_MS = 100;
const INLINE_CROSSWALK = 'crosswalk (edited on page).csv';

/** Files that loaded (kept as File handles: re-read on rebuild, never copied). */
let kept = [];
let session = null;
let settings = null;
let cancelRequested = false;
let busy = false;
const queue = [];
let peakHeap = 0;

function heap() {
  const bytes = wasm_memory_bytes();
  if (bytes > peakHeap) peakHeap = bytes;
  return bytes;
}

class Cancelled extends Error {}

function errorText(e) {
  if (e instanceof Error) return e.message;
  return String(e);
}

function newSession() {
  // The new session first: options or rules the core refuses (a minimum total
  // that is not a number) leave the current one, and the results shown, as they were.
  const s = new WebSession(JSON.stringify(settings.options ?? {}));
  try {
    if (settings.rulesToml) s.set_rules(settings.rulesToml);
    if (settings.invoice) s.set_invoice_subtotal(settings.invoice);
  } catch (e) {
    s.free();
    throw e;
  }
  if (session) {
    session.free();
    session = null;
  }
  return s;
}

/** Reads one Blob into the session; returns the file summary (parsed JSON). */
async function feedBlob(s, blob, name, orgId, progress) {
  const id = s.begin_file(name, orgId || '');
  // Several slices are requested ahead: once parsing is fast, waiting for one
  // blob read at a time is what the page spends its time on.
  const pending = [];
  let requested = 0;
  const readAhead = () => {
    while (pending.length < READ_AHEAD && requested < blob.size) {
      const end = Math.min(requested + CHUNK, blob.size);
      pending.push(blob.slice(requested, end).arrayBuffer());
      requested = end;
    }
  };
  readAhead();
  let offset = 0;
  while (pending.length > 0) {
    const buffer = await pending.shift();
    if (cancelRequested) throw new Cancelled();
    readAhead();
    const bytes = new Uint8Array(buffer);
    for (let at = 0; at < bytes.length; at += FEED) {
      const piece = bytes.subarray(at, Math.min(at + FEED, bytes.length));
      s.feed(id, piece);
      progress(offset + at + piece.length);
      if (cancelRequested) throw new Cancelled();
    }
    offset += bytes.length;
  }
  return JSON.parse(s.end_file(id));
}

/** Feeds a list of inputs; reports each file's outcome. Returns the ones that loaded. */
async function feedAll(s, inputs, jobLabel) {
  const total = inputs.reduce((n, f) => n + f.file.size, 0);
  let before = 0;
  let last = 0;
  const started = performance.now();
  const loaded = [];
  for (let i = 0; i < inputs.length; i++) {
    const input = inputs[i];
    const report = (done, force) => {
      const now = performance.now();
      if (!force && now - last < PROGRESS_EVERY_MS) return;
      last = now;
      postMessage({
        type: 'progress', job: jobLabel, key: input.key, name: input.name, index: i, count: inputs.length,
        done: before + done, total, elapsedMs: now - started, heap: heap(),
      });
    };
    report(0, true);
    let summary = null;
    let error = null;
    try {
      summary = await feedBlob(s, input.file, input.name, input.orgId, report);
    } catch (e) {
      if (e instanceof Cancelled) throw e;
      error = errorText(e);
    }
    before += input.file.size;
    report(0, true);
    if (!input.hidden) {
      postMessage({ type: 'file', key: input.key, name: input.name, size: input.file.size, summary, error });
    }
    if (!error) loaded.push(input);
  }
  return loaded;
}

function inlineCrosswalk() {
  const csv = settings?.crosswalkCsv;
  if (!csv) return [];
  return [{ key: '__inline_crosswalk', name: INLINE_CROSSWALK, orgId: '', hidden: true, file: new Blob([csv]) }];
}

/** Allocates and posts what the page shows (the view is built here, off the main thread). */
function allocateAndPost(started) {
  if (!kept.length) {
    postMessage({ type: 'report', view: null, heap: heap(), peakHeap });
    return;
  }
  const t0 = performance.now();
  const json = session.allocate();
  heap();
  const t1 = performance.now();
  const view = viewOf(JSON.parse(json));
  const t2 = performance.now();
  // The totals first, the long lists after in slices: each message is a short task
  // for the main thread to receive.
  const { principals, topics, entities, lines, ...head } = view;
  postMessage({
    type: 'report',
    view: {
      ...head, principals: [], topics: [], entities: [], lines: [],
      counts: { principals: principals.length, topics: topics.length, entities: entities.length, lines: lines.length },
    },
    heap: heap(), peakHeap,
    timing: { readMs: t0 - started, allocateMs: t1 - t0, viewMs: t2 - t1, totalMs: t2 - started },
  });
  for (const [key, list] of [['principals', principals], ['topics', topics], ['entities', entities], ['lines', lines]]) {
    for (let i = 0; i < list.length; i += 500) postMessage({ type: 'report-part', key, rows: list.slice(i, i + 500) });
  }
  postMessage({ type: 'report-done' });
}

async function rebuild(label) {
  const started = performance.now();
  session = newSession();
  const inputs = [...kept, ...inlineCrosswalk()];
  const loaded = await feedAll(session, inputs, label);
  kept = loaded.filter((f) => !f.hidden);
  allocateAndPost(started);
}

async function handle(msg) {
  switch (msg.type) {
    case 'add': {
      settings = msg.settings ?? settings;
      const started = performance.now();
      if (!session) {
        session = newSession();
        await feedAll(session, inlineCrosswalk(), 'crosswalk');
      }
      const loaded = await feedAll(session, msg.files, 'add');
      kept.push(...loaded);
      // A file refused after some of its rows leaves them in this session:
      // the kept files are read again, without it.
      if (session.partly_read()) {
        await rebuild('rebuild');
        break;
      }
      allocateAndPost(started);
      break;
    }
    case 'rebuild':
      settings = msg.settings ?? settings;
      await rebuild('rebuild');
      break;
    case 'remove':
      settings = msg.settings ?? settings;
      kept = kept.filter((f) => f.key !== msg.key);
      await rebuild('rebuild');
      break;
    case 'invoice':
      // Only the report changes: the files are not read again.
      settings = msg.settings ?? settings;
      if (session) {
        session.set_invoice_subtotal(settings.invoice ?? '');
        allocateAndPost(performance.now());
      }
      break;
    case 'clear':
      kept = [];
      if (session) session.free();
      session = null;
      postMessage({ type: 'report', view: null, heap: heap(), peakHeap });
      break;
    case 'output': {
      if (!session) throw new Error('nothing allocated yet');
      const text = session.output(msg.kind);
      postMessage({ type: 'output', id: msg.id, kind: msg.kind, text });
      break;
    }
    default:
      throw new Error(`unknown message ${msg.type}`);
  }
}

async function pump() {
  if (busy) return;
  busy = true;
  await ready;
  while (queue.length) {
    const msg = queue.shift();
    cancelRequested = false;
    try {
      await handle(msg);
      postMessage({ type: 'job-done', of: msg.type, heap: heap(), peakHeap });
    } catch (e) {
      if (e instanceof Cancelled) {
        // The session holds part of a file: start again from the files that loaded.
        queue.length = 0;
        cancelRequested = false;
        postMessage({ type: 'cancelled' });
        try {
          await rebuild('restore');
          postMessage({ type: 'job-done', of: 'restore', heap: heap(), peakHeap });
        } catch (e2) {
          if (session) session.free();
          session = null;
          kept = [];
          postMessage({ type: 'cancelled', cleared: true });
          postMessage({ type: 'report', view: null, heap: heap(), peakHeap });
        }
      } else {
        postMessage({ type: 'error', of: msg.type, id: msg.id, message: errorText(e) });
        postMessage({ type: 'job-done', of: msg.type, failed: true, heap: heap(), peakHeap });
      }
    }
  }
  busy = false;
}

self.onmessage = (event) => {
  const msg = event.data;
  if (msg.type === 'cancel') {
    if (busy) cancelRequested = true;
    return;
  }
  queue.push(msg);
  pump();
};

const ready = init().then(
  () => postMessage({ type: 'ready', version: version(), defaultRules: default_rules_toml(), heap: heap() }),
  (e) => postMessage({ type: 'fatal', message: `the wasm module did not load: ${errorText(e)}` }),
);
