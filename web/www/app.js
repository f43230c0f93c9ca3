// tally's page: the main thread only renders. All reading, parsing and allocating
// happens in worker.js (a module worker owning the wasm session). The main
// thread also loads the wasm module for cheap synchronous helpers (version, the
// default rules, rules TOML ⇄ JSON).

import init, { version, default_rules_toml, rules_toml_to_json } from './pkg/tally_web.js';
import { formatMoney, formatBytes, formatCount, subDecimal, isZeroDecimal, sumDecimals, sortByDecimal } from './decimal.js';
import { DataTable } from './table.js';
import { stackedColumns, horizontalBars, PALETTE, OTHER_COLOR, UNALLOCATED_COLOR } from './charts.js';
import { RulesEditor, rulesToToml } from './rules-editor.js';

const $ = (id) => document.getElementById(id);

const state = {
  files: new Map(), // key → {name, size, orgId, summary, error, status}
  nextKey: 1,
  report: null,
  view: null,
  rulesToml: '',
  defaultRules: '',
  crosswalk: [], // [{org_id, owner_id, team}]
  busy: false,
  tab: 'team',
  tables: {},
  outputs: new Map(),
  lastProgress: null,
  stats: { progressIntervals: [], lastProgressAt: 0, jobs: [] },
};
// For tests and benchmarks: what the page knows, read-only.
window.tally = state;

// ---------------------------------------------------------------- worker
let worker;
let nextOutputId = 1;
const outputWaiters = new Map();

function startWorker() {
  worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  worker.onmessage = (e) => onWorkerMessage(e.data);
  worker.onerror = (e) => showError(`The worker failed: ${e.message ?? 'unknown error'}`);
}

function settings() {
  return {
    options: options(),
    rulesToml: state.rulesToml,
    crosswalkCsv: crosswalkCsv(),
    invoice: $('invoice').value.trim(),
  };
}

function options() {
  const precision = Number.parseInt($('opt-precision').value, 10);
  return {
    granularity: $('opt-granularity').value,
    entity_level: $('opt-entity').value,
    unallocated_policy: $('opt-unallocated').value,
    focus_cost: $('opt-focus-cost').value,
    precision: Number.isFinite(precision) ? precision : 2,
    filters: entityFilters(),
    ...rangeAndCostCenter(),
  };
}

/**
 * The command line's --range and --shared-cost-center, as typed: the core
 * reads and checks them as it does the flags (a range needs both ends). Left
 * empty, the core's defaults (no range; `shared`).
 */
function rangeAndCostCenter() {
  const options = {};
  const from = $('opt-range-from').value.trim();
  const to = $('opt-range-to').value.trim();
  if (from || to) options.range = [from, to];
  const team = $('opt-shared-cost-center').value.trim();
  if (team) options.shared_cost_center = team;
  return options;
}

/**
 * The entity view's filters, which the WarpStream download takes too: the
 * command line's --entity-kind, --min-total and --max-entities-per-cluster.
 * What was typed goes to the core as typed (a limit of digits as a number),
 * and the core reads and checks it as it does the flags; left empty, the
 * core's defaults (every kind, no minimum, 500 per cluster).
 */
function entityFilters() {
  const filters = {};
  const kind = $('opt-entity-kind').value;
  if (kind) filters.entity_kind = kind;
  const minTotal = $('opt-min-total').value.trim();
  if (minTotal) filters.min_total = minTotal;
  const max = $('opt-max-per-cluster').value.trim();
  if (max) filters.max_entities_per_cluster = /^[0-9]+$/.test(max) ? Number(max) : max;
  return filters;
}

function send(msg) {
  state.busy = true;
  setBusy(true);
  worker.postMessage(msg);
}

function onWorkerMessage(msg) {
  switch (msg.type) {
    case 'ready':
      $('version').textContent = msg.version;
      break;
    case 'fatal':
      showError(msg.message);
      break;
    case 'progress':
      onProgress(msg);
      break;
    case 'file':
      onFile(msg);
      break;
    case 'report':
      mark('report received');
      state.view = msg.view;
      state.heap = msg.heap;
      state.peakHeap = msg.peakHeap;
      state.timing = msg.timing;
      if (msg.view?.files) takeFileSummaries(msg.view.files);
      renderResults();
      mark('results rendered');
      break;
    case 'report-part':
      state.view?.[msg.key]?.push(...msg.rows);
      break;
    case 'report-done':
      if (state.view) renderDetails(state.view);
      break;
    case 'output': {
      const w = outputWaiters.get(msg.id);
      outputWaiters.delete(msg.id);
      w?.resolve(msg.text);
      break;
    }
    case 'error': {
      const w = outputWaiters.get(msg.id);
      if (w) {
        outputWaiters.delete(msg.id);
        w.reject(new Error(msg.message));
      }
      showError(msg.message);
      break;
    }
    case 'cancelled': {
      state.stats.cancelled = (state.stats.cancelled ?? 0) + 1;
      const dropped = [];
      for (const f of state.files.values()) {
        if (f.status === 'queued' || f.status === 'reading') {
          f.status = 'cancelled';
          dropped.push(f.name);
        }
      }
      state.cancelNote = msg.cleared
        ? 'Cancelled; the results were cleared.'
        : `Cancelled: ${dropped.join(', ') || 'the reading'} not loaded; the results are those of the other files.`;
      setStatus(msg.cleared ? state.cancelNote : 'Cancelled. Restoring the files that had loaded…');
      renderFiles();
      break;
    }
    case 'job-done':
      state.stats.jobs.push({ of: msg.of, at: performance.now(), peakHeap: msg.peakHeap });
      state.peakHeap = msg.peakHeap;
      state.busy = false;
      setBusy(false);
      if (!msg.failed && msg.of !== 'output') setStatus(doneText());
      break;
    default:
  }
}

function doneText() {
  if (state.cancelNote) {
    const note = state.cancelNote;
    state.cancelNote = null;
    return note;
  }
  const n = [...state.files.values()].filter((f) => f.status === 'loaded').length;
  const t = state.timing ? ` in ${(state.timing.totalMs / 1000).toFixed(2)} s` : '';
  return state.view ? `Allocated ${n} file${n === 1 ? '' : 's'}${t}.` : 'Ready.';
}

/** Timestamps of milestones (benchmarks read them). */
function mark(what) {
  (state.stats.marks ??= []).push([what, performance.now()]);
  if (state.stats.marks.length > 200) state.stats.marks.shift();
}

// ---------------------------------------------------------------- status, progress, errors
function setStatus(text) {
  $('status').textContent = text;
}

function showError(text) {
  const p = document.createElement('p');
  p.textContent = text;
  $('other-errors').append(p);
}

function clearErrors() {
  $('other-errors').replaceChildren();
}

/** The files that could not be read, named with the reason (kept until removed). */
function renderFileErrors() {
  const box = $('file-errors');
  box.replaceChildren();
  for (const f of state.files.values()) {
    if (!f.error) continue;
    const p = document.createElement('p');
    p.textContent = f.error.startsWith(f.name) ? f.error : `${f.name}: ${f.error}`;
    box.append(p);
  }
}

function setBusy(busy) {
  $('progress-box').hidden = !busy;
  $('btn-cancel').disabled = !busy;
  for (const id of ['btn-apply', 'btn-rules-apply', 'btn-cw-apply', 'btn-clear', 'btn-demo']) $(id).disabled = busy;
  if (busy) {
    $('progress').value = 0;
    $('progress-label').textContent = 'Starting…';
  }
}

function onProgress(msg) {
  const now = performance.now();
  const s = state.stats;
  if (s.lastProgressAt) s.progressIntervals.push(now - s.lastProgressAt);
  s.lastProgressAt = now;
  state.lastProgress = msg;
  const frac = msg.total > 0 ? msg.done / msg.total : 1;
  $('progress').value = frac;
  const rate = msg.elapsedMs > 0 ? msg.done / (msg.elapsedMs / 1000) : 0;
  const label = msg.job === 'restore' ? 'Restoring' : msg.job === 'rebuild' ? 'Recomputing' : 'Reading';
  $('progress-label').textContent = `${label} ${msg.name} (${msg.index + 1} of ${msg.count}): `
    + `${formatBytes(msg.done)} of ${formatBytes(msg.total)}`
    + (rate > 0 ? `, ${formatBytes(rate)}/s` : '');
  const f = state.files.get(msg.key);
  if (f && f.status === 'queued') f.status = 'reading';
}

function onFile(msg) {
  let f = state.files.get(msg.key);
  if (!f) return;
  f.summary = msg.summary;
  f.error = msg.error;
  f.status = msg.error ? 'failed' : 'loaded';
  renderFiles();
}

// ---------------------------------------------------------------- files
const FORMAT_NAMES = {
  confluent_export: 'Confluent cost-allocation export',
  confluent_costs_csv: 'Confluent billing costs (CSV)',
  confluent_costs_json: 'Confluent billing costs (JSON)',
  usage_csv: 'tally usage CSV',
  crosswalk: 'crosswalk (owner → team)',
  warpstream_chargebacks: 'WarpStream chargebacks (JSON)',
  prometheus_query_range: 'Prometheus query_range (usage)',
  focus: 'FOCUS cost and usage (CSV)',
};
function addFiles(fileList) {
  const files = [...fileList];
  if (!files.length) return;
  state.stats.lastAddAt = performance.now();
  state.stats.marks = [];
  clearErrors();
  const orgId = $('opt-org').value.trim();
  const items = files.map((file) => {
    const key = `f${state.nextKey++}`;
    state.files.set(key, { key, name: file.name, size: file.size, orgId, status: 'queued' });
    return { key, file, name: file.name, orgId };
  });
  renderFiles();
  setStatus(`Reading ${files.length} file${files.length === 1 ? '' : 's'}…`);
  send({ type: 'add', files: items, settings: settings() });
}

function renderFiles() {
  renderFileErrors();
  const table = $('files');
  const tbody = table.tBodies[0];
  tbody.replaceChildren();
  table.hidden = state.files.size === 0;
  const rejections = [];
  for (const f of state.files.values()) {
    const tr = tbody.insertRow();
    tr.dataset.file = f.name;
    tr.className = `file-${f.status}`;
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = f.name;
    tr.append(th);
    const s = f.summary ?? {};
    const cells = [
      f.orgId || '—',
      formatBytes(f.size),
      s.format_name ?? s.format ?? (f.error ? 'not recognised' : '…'),
      s.rows_read ?? '',
      s.rows_accepted ?? '',
      s.rows_rejected ?? '',
    ];
    cells.forEach((v, i) => {
      const td = tr.insertCell();
      td.textContent = typeof v === 'number' ? formatCount(v) : String(v);
      if (i >= 3) td.className = 'num';
      if (i === 1) td.className = 'nowrap';
      if (i === 2) {
        td.dataset.col = 'format';
        td.dataset.format = s.format ?? '';
        if (FORMAT_NAMES[s.format]) td.textContent = FORMAT_NAMES[s.format];
      }
    });
    const st = tr.insertCell();
    st.dataset.col = 'status';
    st.textContent = f.error ? 'not loaded (see the message above)' : f.status;
    if (f.error) st.title = f.error;
    const ops = tr.insertCell();
    if (f.status === 'loaded' || f.status === 'failed') {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'small';
      b.textContent = 'Remove';
      b.setAttribute('aria-label', `Remove ${f.name}`);
      b.addEventListener('click', () => removeFile(f.key));
      ops.append(b);
    }
    for (const r of s.rejections ?? []) rejections.push(r);
  }
  const box = $('rejections-box');
  box.hidden = rejections.length === 0;
  $('rejections-count').textContent = String(rejections.length);
  const rb = $('rejections').tBodies[0];
  rb.replaceChildren();
  for (const r of rejections.slice(0, 2000)) {
    const tr = rb.insertRow();
    for (const v of [r.file, r.line, r.column, r.reason]) tr.insertCell().textContent = String(v ?? '');
    tr.cells[1].className = 'num';
  }
  if (rejections.length) box.open = true;
}

/**
 * Takes the report's file summaries in place of those the reading gave: rows
 * the allocation refused afterwards (crosswalk rows in conflict with others)
 * are counted and listed there. The session reads the loaded files in the
 * table's order, so equal names pair up in order.
 */
function takeFileSummaries(summaries) {
  const loaded = [...state.files.values()].filter((f) => f.status === 'loaded');
  for (const s of summaries) {
    const at = loaded.findIndex((f) => f.name === s.name);
    if (at < 0) continue;
    const [f] = loaded.splice(at, 1);
    f.summary = { ...f.summary, ...s };
  }
  renderFiles();
}

function removeFile(key) {
  const f = state.files.get(key);
  state.files.delete(key);
  renderFiles();
  if (f?.status === 'loaded') send({ type: 'remove', key, settings: settings() });
}

// ---------------------------------------------------------------- drop zone, pickers
function setupInputs() {
  const drop = $('drop');
  const input = $('file-input');
  input.addEventListener('change', () => {
    addFiles(input.files);
    input.value = '';
  });
  drop.addEventListener('click', (e) => {
    if (e.target.tagName !== 'LABEL' && e.target !== input) input.click();
  });
  drop.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      input.click();
    }
  });
  for (const ev of ['dragenter', 'dragover']) {
    drop.addEventListener(ev, (e) => {
      e.preventDefault();
      drop.classList.add('over');
    });
  }
  for (const ev of ['dragleave', 'drop']) drop.addEventListener(ev, () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    if (e.dataTransfer?.files?.length) addFiles(e.dataTransfer.files);
  });
  // Dropping outside the zone must not navigate away from the page.
  window.addEventListener('dragover', (e) => e.preventDefault());
  window.addEventListener('drop', (e) => e.preventDefault());

  $('btn-cancel').addEventListener('click', cancel);
  $('btn-clear').addEventListener('click', () => {
    state.files.clear();
    clearErrors();
    renderFiles();
    send({ type: 'clear' });
  });
  $('btn-apply').addEventListener('click', () => recompute());
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && state.busy) cancel();
  });
}

let cancelWatchdog = null;
function cancel() {
  if (!state.busy) return;
  setStatus('Cancelling…');
  worker.postMessage({ type: 'cancel' });
  clearTimeout(cancelWatchdog);
  cancelWatchdog = setTimeout(() => {
    if (!state.busy || state.lastProgress?.job === 'restore') return;
    // The worker did not come back between chunks: stop it and start a clean one.
    worker.terminate();
    startWorker();
    state.files.clear();
    state.view = null;
    renderFiles();
    renderResults();
    state.busy = false;
    setBusy(false);
    setStatus('Cancelled; the worker was restarted and the files must be loaded again.');
  }, 5000);
}

function recompute() {
  clearErrors();
  if (![...state.files.values()].some((f) => f.status === 'loaded')) {
    setStatus('Nothing to recompute: load files first.');
    return;
  }
  setStatus('Recomputing…');
  send({ type: 'rebuild', settings: settings() });
}

// ---------------------------------------------------------------- demo and ?load=
async function fetchAsFile(url) {
  const u = new URL(url, location.href);
  if (u.origin !== location.origin) throw new Error(`${url}: only files from this page's own origin can be loaded`);
  const r = await fetch(u, { credentials: 'same-origin' });
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  const blob = await r.blob();
  const name = decodeURIComponent(u.pathname.split('/').pop() || 'file');
  return new File([blob], name, { type: blob.type });
}

async function loadUrls(urls) {
  const files = [];
  const problems = [];
  for (const url of urls) {
    try {
      files.push(await fetchAsFile(url));
    } catch (e) {
      problems.push(e.message);
    }
  }
  addFiles(files);
  for (const p of problems) showError(p);
}

async function setupDemo() {
  const params = new URLSearchParams(location.search);
  const load = params.get('load');
  if (load) loadUrls(load.split(',').map((s) => s.trim()).filter(Boolean));
  let manifest;
  const manifestUrl = new URL('demo/manifest.json', location.href);
  try {
    const r = await fetch(manifestUrl);
    if (!r.ok) return;
    manifest = await r.json();
  } catch {
    return;
  }
  const entries = Array.isArray(manifest) ? manifest : manifest.files ?? [];
  const urls = entries.map((e) => (typeof e === 'string' ? e : e.url ?? e.path ?? e.name)).filter(Boolean)
    .map((u) => new URL(u, manifestUrl).href);
  if (!urls.length) return;
  const b = $('btn-demo');
  b.hidden = false;
  b.textContent = `Load demo files (${urls.length})`;
  b.title = urls.map((u) => u.split('/').pop()).join(', ');
  b.addEventListener('click', () => loadUrls(urls));
}

// ---------------------------------------------------------------- rules
let rulesEditor;

function setupRules() {
  rulesEditor = new RulesEditor($('rules'), () => {
    $('rules-status').textContent = 'Edited: choose “Apply rules” to recompute.';
    syncRulesText();
  });
  $('btn-rules-apply').addEventListener('click', applyRulesFromTable);
  $('btn-rules-reset').addEventListener('click', () => {
    loadRulesText(state.defaultRules, 'default rules');
    applyRules(state.defaultRules);
  });
  $('btn-rules-save').addEventListener('click', () => {
    try {
      download('tally-rules.toml', rulesToToml(rulesEditor.read()), 'text/plain');
    } catch (e) {
      $('rules-status').textContent = e.message;
    }
  });
  $('rules-input').addEventListener('change', async () => {
    const f = $('rules-input').files[0];
    $('rules-input').value = '';
    if (!f) return;
    const text = await f.text();
    if (loadRulesText(text, f.name)) applyRules(text);
  });
  $('btn-rules-from-text').addEventListener('click', () => {
    const text = $('rules-toml').value;
    if (loadRulesText(text, 'the text')) applyRules(text);
  });
  $('btn-rule-add').addEventListener('click', () => rulesEditor.addRule());
}

function syncRulesText() {
  try {
    $('rules-toml').value = rulesToToml(rulesEditor.read());
  } catch {
    /* keep the old text while a cell is invalid */
  }
}

/** Parses a rules file with the core and shows it in the table; false (and a message) if invalid. */
function loadRulesText(text, what) {
  try {
    const json = JSON.parse(rules_toml_to_json(text));
    rulesEditor.set(json);
    $('rules-toml').value = text;
    $('rules-status').textContent = `Loaded ${what}.`;
    return true;
  } catch (e) {
    $('rules-status').textContent = `${what}: ${e.message ?? e}`;
    return false;
  }
}

function applyRulesFromTable() {
  let text;
  try {
    text = rulesToToml(rulesEditor.read());
    JSON.parse(rules_toml_to_json(text)); // validate with the core
  } catch (e) {
    $('rules-status').textContent = `Not applied: ${e.message ?? e}`;
    return;
  }
  $('rules-toml').value = text;
  applyRules(text);
}

function applyRules(text) {
  state.rulesToml = text;
  $('rules-status').textContent = 'Rules applied.';
  if ([...state.files.values()].some((f) => f.status === 'loaded')) recompute();
}

// ---------------------------------------------------------------- crosswalk
function crosswalkCsv() {
  const rows = state.crosswalk.filter((r) => r.owner_id.trim() && r.team.trim());
  if (!rows.length) return '';
  const esc = (v) => (/[",\n\r]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v);
  return `org_id,owner_id,team\n${rows.map((r) => [r.org_id, r.owner_id, r.team].map((v) => esc(v.trim())).join(',')).join('\n')}\n`;
}

function renderCrosswalk() {
  const tbody = $('crosswalk').tBodies[0];
  tbody.replaceChildren();
  state.crosswalk.forEach((row, i) => {
    const tr = tbody.insertRow();
    for (const [key, label] of [['org_id', 'organization'], ['owner_id', 'owner id'], ['team', 'team']]) {
      const input = document.createElement('input');
      input.type = 'text';
      input.value = row[key];
      input.spellcheck = false;
      input.autocomplete = 'off';
      input.setAttribute('aria-label', `crosswalk row ${i + 1}: ${label}`);
      input.addEventListener('change', () => {
        row[key] = input.value;
      });
      tr.insertCell().append(input);
    }
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'small';
    b.textContent = '✕';
    b.setAttribute('aria-label', `remove crosswalk row ${i + 1}`);
    b.addEventListener('click', () => {
      state.crosswalk.splice(i, 1);
      renderCrosswalk();
    });
    tr.insertCell().append(b);
  });
}

function setupCrosswalk() {
  $('btn-cw-add').addEventListener('click', () => {
    state.crosswalk.push({ org_id: '', owner_id: '', team: '' });
    renderCrosswalk();
    $('crosswalk').tBodies[0].lastElementChild?.querySelector('input')?.focus();
  });
  $('btn-cw-apply').addEventListener('click', recompute);
  $('btn-cw-save').addEventListener('click', () => download('tally-crosswalk.csv', crosswalkCsv() || 'org_id,owner_id,team\n', 'text/csv'));
}

function renderUnmatched(owners) {
  const box = $('unmatched-box');
  box.hidden = owners.length === 0;
  $('unmatched-count').textContent = String(owners.length);
  const ul = $('unmatched');
  ul.replaceChildren();
  for (const o of owners.slice(0, 500)) {
    const li = document.createElement('li');
    const span = document.createElement('span');
    span.textContent = o.org_id ? `${o.owner_id} (${o.org_id})` : o.owner_id;
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'small';
    b.textContent = 'Assign';
    b.setAttribute('aria-label', `Assign ${o.owner_id} to a team`);
    b.addEventListener('click', () => {
      state.crosswalk.push({ org_id: o.org_id ?? '', owner_id: o.owner_id, team: '' });
      renderCrosswalk();
      const inputs = $('crosswalk').tBodies[0].lastElementChild?.querySelectorAll('input');
      inputs?.[2]?.focus();
    });
    li.append(span, ' ', b);
    ul.append(li);
  }
}

// ---------------------------------------------------------------- results
const TABS = [
  ['team', 'Teams'],
  ['principal', 'Principals'],
  ['topic', 'Topics'],
  ['entity', 'Entity view'],
  ['org', 'Organizations'],
  ['bucket', 'Buckets'],
  ['line', 'Cost lines'],
];

function setupResults() {
  const tabs = $('tabs');
  TABS.forEach(([key, label], i) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.role = 'tab';
    b.id = `tab-${key}`;
    b.textContent = label;
    b.setAttribute('aria-controls', 'tabpanel');
    b.addEventListener('click', () => selectTab(key));
    b.addEventListener('keydown', (e) => {
      const d = e.key === 'ArrowRight' ? 1 : e.key === 'ArrowLeft' ? -1 : 0;
      if (!d) return;
      const visible = TABS.filter(([k]) => !$(`tab-${k}`).hidden);
      const at = visible.findIndex(([k]) => k === state.tab);
      const next = visible[(at + d + visible.length) % visible.length][0];
      selectTab(next);
      $(`tab-${next}`).focus();
    });
    tabs.append(b);
    if (i === 0) b.setAttribute('aria-selected', 'true');
  });
  $('filter').addEventListener('input', () => renderTab());
  // The core reconciles the invoice (as --invoice-subtotal): its report changes, not the files read.
  const reconcileInvoice = () => send({ type: 'invoice', settings: settings() });
  $('btn-invoice').addEventListener('click', reconcileInvoice);
  $('invoice').addEventListener('keydown', (e) => {
    if (e.key === 'Enter') reconcileInvoice();
  });
  for (const b of $('downloads').querySelectorAll('button[data-output]')) {
    b.addEventListener('click', () => downloadOutput(b.dataset.output));
  }
}

function selectTab(key) {
  state.tab = key;
  for (const [k] of TABS) {
    const b = $(`tab-${k}`);
    b.setAttribute('aria-selected', String(k === key));
    b.tabIndex = k === key ? 0 : -1;
  }
  $('tabpanel').setAttribute('aria-labelledby', `tab-${key}`);
  renderTab();
}

function renderTab() {
  const t = state.tables[state.tab];
  const panel = $('tabpanel');
  if (!t) {
    panel.replaceChildren();
    return;
  }
  t.setFilter($('filter').value);
  panel.replaceChildren(t.render());
  $('filter-count').textContent = t.matching === t.rows.length
    ? `${formatCount(t.rows.length)} rows`
    : `${formatCount(t.matching)} of ${formatCount(t.rows.length)} rows`
      + (t.shown < t.matching ? ` (first ${formatCount(t.shown)} shown)` : '');
}

function card(label, value, extra, id) {
  const div = document.createElement('div');
  div.className = 'card';
  if (id) div.id = id;
  const l = document.createElement('div');
  l.className = 'card-label';
  l.textContent = label;
  const v = document.createElement('div');
  v.className = 'card-value';
  v.textContent = value;
  div.append(l, v);
  if (extra) {
    const e = document.createElement('div');
    e.className = 'card-extra';
    e.textContent = extra;
    div.append(e);
  }
  return div;
}

function renderResults() {
  const v = state.view;
  $('results-empty').hidden = !!v;
  $('results-body').hidden = !v;
  state.outputs.clear();
  if (!v) {
    state.tables = {};
    renderUnmatched([]);
    return;
  }
  const cur = v.currency;
  const money = (x) => formatMoney(x, cur);
  $('cards').replaceChildren(
    card('Bill total', money(v.billTotal), v.period, 'card-bill'),
    card('Allocated to owners', money(v.allocatedToOwners), `${formatCount(v.counts?.principals ?? v.principals.length)} principals, ${formatCount(v.counts?.topics ?? v.topics.length)} topics`, 'card-allocated'),
    card('Unallocated', money(v.unallocated.total), 'credits, refunds, products without per-principal usage', 'card-unallocated'),
    card('Teams', formatCount(v.teams.length), v.unmatched.length ? `${formatCount(v.unmatched.length)} owners with no team` : 'every owner has a team', 'card-teams'),
  );
  const teamCols = [
    { key: 'team', label: 'Team', type: 'text' },
    { key: 'direct', label: 'Direct', type: 'money' },
    { key: 'shared', label: 'Shared received', type: 'money' },
    { key: 'unallocated', label: 'Unallocated received', type: 'money' },
    { key: 'total', label: 'Total', type: 'money' },
  ].filter((c) => c.key === 'team' || c.key === 'total' || v.teams.some((r) => r[c.key] !== undefined));
  state.tables = {
    team: new DataTable({ id: 'team-table', columns: teamCols, rows: v.teams, currency: cur, caption: 'Totals per team', sortKey: 'total' }),
    principal: new DataTable({
      id: 'principal-table',
      columns: [
        { key: 'owner_id', label: 'Principal / owner', type: 'text' },
        { key: 'team', label: 'Team', type: 'text' },
        { key: 'org_id', label: 'Organization', type: 'text' },
        { key: 'total', label: 'Total', type: 'money' },
      ],
      rows: v.principals, currency: cur, caption: 'Totals per principal',
    }),
    topic: new DataTable({
      id: 'topic-table',
      columns: [
        { key: 'topic', label: 'Topic', type: 'text' },
        { key: 'team', label: 'Team', type: 'text' },
        { key: 'total', label: 'Total', type: 'money' },
      ],
      rows: v.topics, currency: cur, caption: 'Totals per topic',
    }),
    entity: new DataTable({
      id: 'entity-table',
      columns: [
        { key: 'cluster', label: 'Cluster', type: 'text' },
        { key: 'org_id', label: 'Organization', type: 'text' },
        { key: 'name', label: 'Entity', type: 'text' },
        { key: 'kind', label: 'Kind', type: 'text' },
        { key: 'team', label: 'Team', type: 'text' },
        { key: 'total', label: 'Total', type: 'money' },
      ].filter((c) => c.key !== 'org_id' || v.multiOrg),
      rows: v.entities, currency: cur,
      caption: 'Entities per cluster, filtered as the WarpStream download (entity kind, minimum total, at most so many per cluster)',
    }),
    org: new DataTable({
      id: 'org-table',
      columns: [
        { key: 'org_id', label: 'Organization', type: 'text' },
        { key: 'total', label: 'Total', type: 'money' },
      ],
      rows: v.orgs, currency: cur, caption: 'Totals per organization',
    }),
    bucket: new DataTable({
      id: 'bucket-table',
      columns: [
        { key: 'bucket', label: 'Bucket (UTC)', type: 'text' },
        { key: 'partial', label: 'Partial', type: 'text' },
        { key: 'bill', label: 'Bill', type: 'money' },
        { key: 'allocated', label: 'Allocated', type: 'money' },
        { key: 'unallocated', label: 'Unallocated', type: 'money' },
      ].filter((c) => c.key === 'bucket' || v.buckets.some((r) => r[c.key] !== undefined)),
      rows: v.buckets, currency: cur, caption: 'Totals per bucket', sortKey: 'bucket', sortDir: 'asc',
    }),
    line: new DataTable({
      id: 'line-table',
      columns: [
        { key: 'bucket', label: 'Bucket', type: 'text' },
        { key: 'owner_id', label: 'Owner', type: 'text' },
        { key: 'team', label: 'Team', type: 'text' },
        { key: 'product', label: 'Product', type: 'text' },
        { key: 'line_type', label: 'Line type', type: 'text' },
        { key: 'resource_id', label: 'Resource', type: 'text' },
        { key: 'method', label: 'Method', type: 'text' },
        { key: 'reason', label: 'Why', type: 'text' },
        { key: 'usage_share', label: 'Share', type: 'share' },
        { key: 'chargeback_cost', label: 'Cost', type: 'money' },
      ],
      rows: v.lines, currency: cur,
      caption: v.linesTotal > (v.counts?.lines ?? v.lines.length)
        ? `The ${formatCount(v.counts?.lines ?? v.lines.length)} largest of ${formatCount(v.linesTotal)} allocated cost lines (all are in the Confluent-format CSV)`
        : 'Allocated cost lines (why each owner was charged)',
    }),
  };
  showTabs();
  renderEntityNotes(v.entityNotes);
  renderReconciliation();
}

/** The clusters the entity view's filters cut (WarpStream's `truncated`) or thinned. */
function renderEntityNotes(notes) {
  const SHOWN = 20;
  const box = $('entity-notes');
  box.replaceChildren();
  const lines = notes.slice(0, SHOWN).map((n) => `Entity view, cluster ${n}.`);
  if (notes.length > SHOWN) lines.push(`Entity view: ${formatCount(notes.length - SHOWN)} more clusters cut or thinned by the filters.`);
  for (const l of lines) {
    const p = document.createElement('p');
    p.textContent = l;
    box.append(p);
  }
}

function showTabs() {
  const counts = state.view?.counts ?? {};
  for (const [key] of TABS) {
    const t = state.tables[key];
    const known = { principal: counts.principals, topic: counts.topics, entity: counts.entities, line: counts.lines }[key];
    $(`tab-${key}`).hidden = !t || (key !== 'team' && (known ?? t.rows.length) === 0);
  }
  if ($(`tab-${state.tab}`).hidden) state.tab = 'team';
  selectTab(state.tab);
}

/** Once the long lists have arrived: their tables, charts, the unallocated panel. */
function renderDetails(v) {
  // The rest in separate tasks, so that no single task holds the main thread long.
  const token = (state.renderToken = (state.renderToken ?? 0) + 1);
  const later = (f) => setTimeout(() => {
    if (state.renderToken === token) f();
  }, 0);
  later(() => {
    const lists = { principal: v.principals, topic: v.topics, entity: v.entities, line: v.lines };
    for (const [key, rows] of Object.entries(lists)) state.tables[key].rows = rows;
    if (state.tab in lists) renderTab();
  });
  later(() => renderUnallocated(v));
  later(() => renderCharts(v));
  later(() => renderUnmatched(v.unmatched));
}

function renderUnallocated(v) {
  const box = $('unallocated');
  box.replaceChildren();
  const u = v.unallocated;
  const p = document.createElement('p');
  p.textContent = `${formatMoney(u.total, v.currency)} could not be attributed to an owner (credits, refunds, products without per-principal usage). `
    + u.policyText;
  box.append(p);
  if (u.rows.length) {
    const t = new DataTable({
      id: 'unallocated-table',
      columns: [
        { key: 'bucket', label: 'Bucket', type: 'text' },
        { key: 'product', label: 'Product', type: 'text' },
        { key: 'line_type', label: 'Line type', type: 'text' },
        { key: 'reason', label: 'Why', type: 'text' },
        { key: 'amount', label: 'Amount', type: 'money' },
      ],
      rows: u.rows, currency: v.currency, caption: 'Unallocated rows', sortKey: 'bucket', sortDir: 'asc',
    });
    box.append(t.render());
  }
  if (u.distribution.length) {
    const t = new DataTable({
      id: 'unallocated-distribution',
      columns: [
        { key: 'team', label: 'Team', type: 'text' },
        { key: 'amount', label: 'Unallocated received', type: 'money' },
      ],
      rows: u.distribution, currency: v.currency, caption: 'How the unallocated total was distributed',
    });
    box.append(t.render());
  }
}

function renderReconciliation() {
  const v = state.view;
  if (!v) return;
  const dl = $('recon');
  dl.replaceChildren();
  const cur = v.currency;
  const add = (term, value, id) => {
    const dt = document.createElement('dt');
    dt.textContent = term;
    const dd = document.createElement('dd');
    dd.textContent = value;
    if (id) dd.id = id;
    dl.append(dt, dd);
  };
  add('Bill total (usage charges)', formatMoney(v.billTotal, cur), 'recon-bill');
  add('Allocated to owners', formatMoney(v.allocatedToOwners, cur), 'recon-owners');
  add('Unallocated (credits included)', formatMoney(v.unallocated.total, cur), 'recon-unallocated');
  add('Sum of chargeback_cost', formatMoney(v.allocated, cur), 'recon-allocated');
  const d1 = subDecimal(v.allocated, v.billTotal);
  add('Sum − bill', formatMoney(d1 ?? '?', cur), 'recon-diff-bill');
  const explain = $('recon-explain');
  explain.replaceChildren();
  const lines = [...(v.reconciliationNotes ?? [])];
  if (d1 !== null && isZeroDecimal(d1)) {
    lines.unshift('Balanced: the sum of chargeback_cost over every row, the unallocated row included, equals the bill total; every line\'s parts add up to the line.');
  }
  // The core's figures: the difference, when not zero, is explained in its notes above.
  const rec = v.reconciliation;
  if (rec.invoice_subtotal != null) {
    add('Invoice usage subtotal', formatMoney(rec.invoice_subtotal, cur), 'recon-invoice');
    add('Invoice − bill', formatMoney(rec.difference, cur), 'recon-diff-invoice');
    if (isZeroDecimal(rec.difference)) lines.push('The bill files reconcile with the invoice subtotal exactly.');
  }
  for (const l of lines) {
    const p = document.createElement('p');
    p.textContent = l;
    explain.append(p);
  }
}

function renderCharts(v) {
  const num = (s) => Number(s) || 0;
  const topTeams = sortByDecimal(v.teams, 'total');
  const shown = topTeams.slice(0, 9).map((t) => t.team);
  const rest = topTeams.slice(9).map((t) => t.team);
  // One exact amount per bucket: drawn from its number, labelled with its text.
  const seriesOf = (name, color, amounts) => ({
    name, color, values: amounts.map(num), labels: amounts.map((s) => formatMoney(s, v.currency)),
  });
  const amountsOf = (team) => v.bucketLabels.map((b) => v.teamByBucket[team]?.[b] ?? '0');
  const series = shown.map((team, i) => seriesOf(team, PALETTE[i % PALETTE.length], amountsOf(team)));
  if (rest.length) {
    const restAmounts = rest.map(amountsOf);
    const sums = v.bucketLabels.map((_, k) => sumDecimals(restAmounts.map((a) => a[k])));
    series.push(seriesOf(`${rest.length} other teams`, OTHER_COLOR, sums));
  }
  if (v.unallocatedSeries) {
    series.push(seriesOf(v.unallocatedSeries, UNALLOCATED_COLOR, amountsOf(v.unallocatedSeries)));
  }
  const nets = v.bucketNets.map((s) => formatMoney(s, v.currency));
  stackedColumns($('chart-time'), { buckets: v.bucketLabels, series, netLabels: nets, currency: v.currency });
  const top = (rows, key) => sortByDecimal(rows, 'total').slice(0, 10)
    .map((r, i) => ({ name: r[key], value: num(r.total), label: formatMoney(r.total, v.currency), color: PALETTE[i % PALETTE.length] }));
  horizontalBars($('chart-principals'), { items: top(v.principals, 'owner_id'), emptyText: 'No principals' });
  horizontalBars($('chart-topics'), { items: top(v.topics, 'topic'), emptyText: 'No per-topic costs: set Entities to topics (and load per-topic usage) to allocate to topics' });
}

// ---------------------------------------------------------------- downloads
function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

const OUTPUTS = {
  confluent_csv: ['tally-cost-allocation.csv', 'text/csv'],
  focus_csv: ['tally-focus.csv', 'text/csv'],
  warpstream_json: ['tally-chargebacks.json', 'application/json'],
  team_summary_csv: ['tally-team-summary.csv', 'text/csv'],
  report_json: ['tally-report.json', 'application/json'],
};

async function downloadOutput(kind) {
  if (!state.view) return;
  const [name, type] = OUTPUTS[kind];
  try {
    let text = state.outputs.get(kind);
    if (text === undefined) {
      const id = nextOutputId++;
      text = await new Promise((resolve, reject) => {
        outputWaiters.set(id, { resolve, reject });
        worker.postMessage({ type: 'output', id, kind });
      });
      state.outputs.set(kind, text);
    }
    download(name, text, type);
    setStatus(`Downloaded ${name}.`);
  } catch (e) {
    showError(`${name}: ${e.message}`);
  }
}

// ---------------------------------------------------------------- start
setupInputs();
setupRules();
setupCrosswalk();
setupResults();
renderCrosswalk();
startWorker();
try {
  await init();
  $('version').textContent = version();
  state.defaultRules = default_rules_toml();
  state.rulesToml = state.defaultRules;
  loadRulesText(state.defaultRules, 'default rules');
  $('rules-status').textContent = '';
} catch (e) {
  showError(`The wasm module did not load: ${e.message ?? e}`);
}
setupDemo();
