// Browser benchmark of tally's page, next to DuckDB-WASM, in one headless Chromium.
//
// 1. Writes a synthetic Confluent cost-allocation export (default 5,000,000 rows,
//    about 550 MB) and its crosswalk to OUT/ (streaming writer; kept between runs).
// 2. Serves dist/web (the product page) and OUT/www (bench only: the DuckDB page,
//    DuckDB-WASM's eh build and Arrow copied from node_modules) on 127.0.0.1.
// 3. tally: picks both files in the page, times pick → team totals shown, and
//    records the wasm heap (linear memory, from the worker), the renderer
//    processes' peak RSS, long tasks on the main thread (PerformanceObserver
//    'longtask') and the intervals between progress updates.
// 4. DuckDB-WASM: the same team totals (SUM of DECIMAL(18,6) per team through the
//    crosswalk) on the same files, timed the same way, totals compared exactly.
//
// Usage: node bench.mjs [--rows N] [--out DIR] [--json FILE]
//   (from the repository root or anywhere; needs scripts/build's dist/web)
import { createServer } from 'node:http';
import { readFileSync, existsSync, mkdirSync, cpSync, statSync, readdirSync, writeFileSync } from 'node:fs';
import { join, dirname, extname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { loadavg, cpus } from 'node:os';
import { launch } from './lib.mjs';
import { generate } from './gen-confluent.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '../..');
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const ROWS = Number(opt('--rows', '5000000'));
const OUT = resolve(opt('--out', join(ROOT, 'target/bench')));
const JSON_OUT = opt('--json', join(OUT, 'page-bench.json'));
const DIST = join(ROOT, 'dist/web');
if (!existsSync(join(DIST, 'pkg/tally_web_bg.wasm'))) {
  console.error(`${DIST} has no pkg/tally_web_bg.wasm: run scripts/build first`);
  process.exit(1);
}
mkdirSync(OUT, { recursive: true });

// ------------------------------------------------------------------ data
const csv = join(OUT, `confluent_export_${ROWS}.csv`);
const crosswalk = join(OUT, `crosswalk_${ROWS}.csv`);
let t = Date.now();
const gen = generate({ csv, crosswalk, rows: ROWS });
console.error(`data: ${gen.rows} rows, ${(gen.bytes / 2 ** 20).toFixed(0)} MiB ${gen.cached ? '(cached)' : `written in ${((Date.now() - t) / 1000).toFixed(1)} s`}`);

// ------------------------------------------------------------------ the same .wasm alone, in Node (no page, no worker)
// Separates the core's speed from the page's overhead (reading File slices,
// messages, rendering).
async function coreAlone() {
  const glue = await import(join(DIST, 'pkg/tally_web.js'));
  glue.initSync({ module: readFileSync(join(DIST, 'pkg/tally_web_bg.wasm')) });
  const { openSync, readSync, closeSync } = await import('node:fs');
  const t0 = performance.now();
  const s = new glue.WebSession('{"precision":6}');
  const buf = Buffer.alloc(1 << 20);
  for (const [path, name] of [[csv, 'export.csv'], [crosswalk, 'crosswalk.csv']]) {
    const id = s.begin_file(name, '');
    const fd = openSync(path, 'r');
    let n;
    while ((n = readSync(fd, buf, 0, buf.length, null)) > 0) s.feed(id, buf.subarray(0, n));
    closeSync(fd);
    s.end_file(id);
  }
  const t1 = performance.now();
  s.allocate();
  const t2 = performance.now();
  return { readMs: t1 - t0, allocateMs: t2 - t1, totalMs: t2 - t0, wasmHeap: glue.wasm_memory_bytes() };
}
const core = await coreAlone();
console.error(`core alone (Node, same .wasm): ${(core.totalMs / 1000).toFixed(2)} s (read ${(core.readMs / 1000).toFixed(2)} s, allocate ${(core.allocateMs / 1000).toFixed(2)} s)`);

// ------------------------------------------------------------------ bench-only static files
const WWW = join(OUT, 'www');
const NM = join(HERE, 'node_modules');
mkdirSync(join(WWW, 'duckdb'), { recursive: true });
for (const f of ['duckdb-browser.mjs', 'duckdb-browser-eh.worker.js', 'duckdb-eh.wasm']) {
  cpSync(join(NM, '@duckdb/duckdb-wasm/dist', f), join(WWW, 'duckdb', f));
}
for (const pkg of ['apache-arrow', 'flatbuffers', 'tslib']) {
  cpSync(join(NM, pkg), join(WWW, 'nm', pkg), {
    recursive: true,
    filter: (src) => statSync(src).isDirectory() || /\.(mjs|js|json)$/.test(src),
  });
}
cpSync(join(HERE, 'bench-duckdb.html'), join(WWW, 'duckdb.html'));
cpSync(join(HERE, 'bench-duckdb.mjs'), join(WWW, 'bench-duckdb.mjs'));

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css', '.json': 'application/json' };
const served = [];
const server = createServer((req, res) => {
  const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  served.push(`${req.method} ${path}`);
  const [root, rest] = path.startsWith('/bench/') ? [WWW, path.slice(7)] : [DIST, path.slice(1) || 'index.html'];
  const file = resolve(root, rest);
  if (!file.startsWith(root) || !existsSync(file) || statSync(file).isDirectory()) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream', 'Cache-Control': 'no-store' });
  res.end(readFileSync(file));
});
await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
const base = `http://127.0.0.1:${server.address().port}`;

// ------------------------------------------------------------------ renderer memory (RSS of the browser's renderers)
function procs() {
  const out = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
      out.push({ pid: Number(pid), ppid, cmd, rss });
    } catch {
      /* gone */
    }
  }
  return out;
}
function rendererRss(userDataDir) {
  const all = procs();
  const root = all.find((p) => p.cmd.includes(`--user-data-dir=${userDataDir}`) && !p.cmd.includes('--type='));
  if (!root) return 0;
  const tree = new Set([root.pid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const p of all) if (!tree.has(p.pid) && tree.has(p.ppid)) { tree.add(p.pid); grew = true; }
  }
  return all.filter((p) => tree.has(p.pid) && p.cmd.includes('--type=renderer')).reduce((s, p) => s + p.rss, 0);
}
function sampler(userDataDir) {
  let peak = 0;
  const timer = setInterval(() => { peak = Math.max(peak, rendererRss(userDataDir)); }, 100);
  return () => { clearInterval(timer); return Math.max(peak, rendererRss(userDataDir)); };
}

// ------------------------------------------------------------------ runs
const { context, page, requests, consoleLines, userDataDir: udd } = await launch();
const result = { rows: gen.rows, bytes: gen.bytes, command: `node host-tests/browser/bench.mjs --rows ${ROWS}`, core, cpus: cpus().length, loadBefore: loadavg()[0] };
try {
  // tally
  await page.addInitScript(() => {
    window.__longtasks = [];
    new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__longtasks.push({ start: e.startTime, duration: e.duration }); })
      .observe({ type: 'longtask', buffered: true });
  });
  await page.goto(`${base}/`);
  await page.waitForFunction(() => (document.getElementById('version')?.textContent ?? '').startsWith('tally '));
  await page.fill('#opt-precision', '6');
  await page.evaluate(() => { window.__longtasks.length = 0; });
  const baselineRss = rendererRss(udd);
  const stopRss = sampler(udd);
  await page.setInputFiles('#file-input', [csv, crosswalk]);
  await page.waitForFunction(() => !window.tally.busy && window.tally.stats.jobs.length > 0 && !!document.querySelector('#team-table tbody tr'),
    null, { timeout: 600000, polling: 100 });
  const peakRss = stopRss();
  const tally = await page.evaluate(() => {
    const s = window.tally.stats;
    const done = s.jobs[s.jobs.length - 1].at;
    const iv = [...s.progressIntervals].sort((a, b) => a - b);
    const teams = {};
    for (const tr of document.querySelectorAll('#team-table tbody tr')) {
      teams[tr.querySelector('th').textContent.trim()] = tr.querySelector('td[data-col="total"]').dataset.value;
    }
    return {
      ms: done - s.lastAddAt,
      timing: window.tally.timing,
      wasmHeapPeak: window.tally.peakHeap,
      longTasks: window.__longtasks.length,
      longestTaskMs: Math.max(0, ...window.__longtasks.map((t) => t.duration)),
      longTaskDetail: window.__longtasks.map((t) => ({ at: t.start - s.lastAddAt, ms: t.duration })),
      marks: s.marks?.map(([what, at]) => [what, at - s.lastAddAt]),
      progressUpdates: iv.length + 1,
      progressMaxIntervalMs: iv.length ? iv[iv.length - 1] : 0,
      progressP95IntervalMs: iv.length ? iv[Math.floor(iv.length * 0.95)] : 0,
      errors: [...document.querySelectorAll('#errors p')].map((p) => p.textContent),
      files: [...document.querySelectorAll('#files tbody tr')].map((tr) => [...tr.children].map((c) => c.textContent)),
      teams,
    };
  });
  tally.peakRendererRss = peakRss;
  tally.baselineRendererRss = baselineRss;
  result.tally = tally;
  console.error(`tally: ${(tally.ms / 1000).toFixed(2)} s, wasm heap ${(tally.wasmHeapPeak / 2 ** 20).toFixed(0)} MiB, renderer RSS ${(peakRss / 2 ** 20).toFixed(0)} MiB, ${tally.longTasks} long tasks (max ${tally.longestTaskMs.toFixed(0)} ms), progress every ≤ ${tally.progressMaxIntervalMs.toFixed(0)} ms`);

  // DuckDB-WASM, same browser, a fresh page
  await page.goto('about:blank');
  const duckPage = await context.newPage();
  const duckConsole = [];
  duckPage.on('console', (m) => duckConsole.push(`${m.type()}: ${m.text()}`));
  duckPage.on('pageerror', (e) => duckConsole.push(`pageerror: ${e.message}`));
  duckPage.on('crash', () => duckConsole.push('the tab crashed'));
  await duckPage.goto(`${base}/bench/duckdb.html`);
  await duckPage.waitForFunction(() => window.duckReady === true, null, { timeout: 30000 })
    .catch((e) => { throw new Error(`the DuckDB bench page did not load: ${duckConsole.join(' | ')} ${e.message}`); });
  await duckPage.setInputFiles('#f', [csv, crosswalk]);
  const stopDuckRss = sampler(udd);
  let duck;
  try {
    duck = await duckPage.evaluate(() => window.runDuck());
  } catch (e) {
    duck = { error: `${e.message ?? e} ${duckConsole.join(' | ')}` };
  }
  duck.peakRendererRss = stopDuckRss();
  result.duckdb = duck;
  console.error(duck.error ? `duckdb: ${duck.error}` : `duckdb: ${(duck.totalMs / 1000).toFixed(2)} s (init ${(duck.initMs / 1000).toFixed(2)} s, query ${(duck.queryMs / 1000).toFixed(2)} s), renderer RSS ${(duck.peakRendererRss / 2 ** 20).toFixed(0)} MiB`);
} finally {
  await context.close();
  server.close();
}

// ------------------------------------------------------------------ compare, sizes, print
const norm = (v) => {
  let s = String(v);
  if (s.includes('.')) s = s.replace(/0+$/, '').replace(/\.$/, '');
  return s === '-0' ? '0' : s;
};
if (result.duckdb.teams) {
  const a = Object.fromEntries(Object.entries(result.tally.teams).map(([k, v]) => [k, norm(v)]));
  const b = Object.fromEntries(Object.entries(result.duckdb.teams).map(([k, v]) => [k, norm(v)]));
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  result.mismatches = keys.filter((k) => a[k] !== b[k]).map((k) => ({ team: k, tally: a[k], duckdb: b[k] }));
  result.sameTotals = result.mismatches.length === 0;
}
const size = (f) => ({ bytes: statSync(f).size, gzip: gzipSync(readFileSync(f), { level: 9 }).length });
result.wasm = {
  tally_web_bg: size(join(DIST, 'pkg/tally_web_bg.wasm')),
  duckdb_eh: size(join(WWW, 'duckdb/duckdb-eh.wasm')),
};
const mib = result.bytes / 2 ** 20;
const sec = result.tally.ms / 1000;
result.tally.rowsPerSec = result.rows / sec;
result.tally.mibPerSec = mib / sec;
if (result.duckdb.totalMs) {
  result.duckdb.rowsPerSec = result.rows / (result.duckdb.totalMs / 1000);
  result.duckdb.mibPerSec = mib / (result.duckdb.totalMs / 1000);
  result.speedupVsDuckdb = result.duckdb.totalMs / result.tally.ms;
}
result.loadAfter = loadavg()[0];
result.offline = requests.every((u) => u.startsWith(base) || u.startsWith('about:') || u.startsWith('blob:'));
result.console = consoleLines.slice(-20);
writeFileSync(JSON_OUT, JSON.stringify(result, null, 2));

const f = (n, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
const M = (b) => `${f(b / 2 ** 20, 1)} MiB`;
console.log(`== browser bench: ${f(result.rows)} rows, ${M(result.bytes)} Confluent export + crosswalk, headless Chromium (${result.cpus} CPUs, load average ${f(result.loadBefore, 1)} → ${f(result.loadAfter, 1)})`);
console.log(`tally page   ${f(sec, 2)} s drop → team totals   ${f(result.tally.rowsPerSec)} rows/s   ${f(result.tally.mibPerSec, 1)} MiB/s`);
console.log(`             wasm heap peak ${M(result.tally.wasmHeapPeak)}   renderer RSS peak ${M(result.tally.peakRendererRss)} (${M(result.tally.baselineRendererRss)} before the drop)`);
console.log(`             main thread: ${result.tally.longTasks} long tasks (longest ${f(result.tally.longestTaskMs)} ms)   progress: ${result.tally.progressUpdates} updates, max gap ${f(result.tally.progressMaxIntervalMs)} ms`);
console.log(`core alone   ${f(result.core.totalMs / 1000, 2)} s in Node with the same .wasm (read ${f(result.core.readMs / 1000, 2)} s + allocate ${f(result.core.allocateMs / 1000, 2)} s)   ${f(result.rows / (result.core.totalMs / 1000))} rows/s   ${f(mib / (result.core.totalMs / 1000), 1)} MiB/s`);
if (result.duckdb.totalMs) {
  console.log(`DuckDB-WASM  ${f(result.duckdb.totalMs / 1000, 2)} s (init ${f(result.duckdb.initMs / 1000, 2)} s + query ${f(result.duckdb.queryMs / 1000, 2)} s)   ${f(result.duckdb.rowsPerSec)} rows/s   ${f(result.duckdb.mibPerSec, 1)} MiB/s   renderer RSS peak ${M(result.duckdb.peakRendererRss)}`);
  console.log(`ratio        tally is ${f(result.speedupVsDuckdb, 2)}× DuckDB-WASM's speed; same team totals: ${result.sameTotals ? 'yes' : `NO ${JSON.stringify(result.mismatches.slice(0, 3))}`}`);
} else {
  console.log(`DuckDB-WASM  failed: ${result.duckdb.error}`);
}
console.log(`.wasm        tally_web_bg.wasm ${f(result.wasm.tally_web_bg.bytes)} B (${f(result.wasm.tally_web_bg.gzip)} gzip)   duckdb-eh.wasm ${f(result.wasm.duckdb_eh.bytes)} B (${f(result.wasm.duckdb_eh.gzip)} gzip)`);
console.log(`results      ${JSON_OUT}`);
if (result.tally.errors.length) console.log(`page errors: ${result.tally.errors.join(' | ')}`);
process.exit(result.sameTotals === false ? 1 : 0);
