// Drives tally's page like a person would: picks files, waits for the worker to
// finish, reads what the page shows, downloads the outputs, takes a screenshot.
// The assertions live in the Rust test (host-tests/tests/browser.rs); this
// script reports what it saw as one JSON line on stdout.
//
// Usage: node page.mjs URL OUTDIR SCENARIO_JSON
//   SCENARIO_JSON: {"steps": [{"files": [paths], "org": "org-a"}, ...],
//                   "invoice": "33.00", "downloads": ["confluent_csv", ...],
//                   "screenshot": "results.png", "crosswalk": [{"owner_id":..,"team":..}],
//                   "options": {"opt-focus-cost": "effective"},   (set before any file)
//                   "refusedDownloads": ["warpstream_json"]}   (clicked after the downloads:
//                   each must show an error, reported as seen.refused[kind])
//   or {"rounds": [{"name": "seed33", ...a scenario...}, ...]}: each round on a freshly
//   loaded page in the same browser, its downloads under OUTDIR/<name>/; the
//   JSON line then has {"rounds": {"seed33": seen, ...}, "requests": [...]}.
import { launch, fail } from './lib.mjs';
import { join } from 'node:path';
import { mkdirSync, readFileSync } from 'node:fs';

const [url, outdir, scenarioArg] = process.argv.slice(2);
const scenario = JSON.parse(scenarioArg.startsWith('{') ? scenarioArg : readFileSync(scenarioArg, 'utf8'));
const { context, page, requests, consoleLines } = await launch({ downloads: true });

async function waitIdle(jobsBefore, timeout = 60000) {
  await page.waitForFunction((n) => window.tally && !window.tally.busy && window.tally.stats.jobs.length > n,
    jobsBefore, { timeout, polling: 50 });
}

const jobs = () => page.evaluate(() => window.tally.stats.jobs.length);

/** Loads the page afresh, plays `scenario` on it, saves its downloads in `dir`; returns what the page showed. */
async function play(scenario, dir) {
  await page.goto(url);
  await page.waitForFunction(() => (document.getElementById('version')?.textContent ?? '').startsWith('tally '),
    null, { timeout: 15000 });
  if (scenario.rules_toml) {
    await page.locator('#rules-section details summary').click();
    await page.fill('#rules-toml', scenario.rules_toml);
    await page.click('#btn-rules-from-text');
  }
  for (const [id, value] of Object.entries(scenario.options ?? {})) {
    const field = page.locator(`#${id}`);
    if (await field.evaluate((e) => e.tagName) === 'SELECT') await field.selectOption(value);
    else await field.fill(value);
  }
  for (const row of scenario.crosswalk ?? []) {
    await page.click('#btn-cw-add');
    const inputs = page.locator('#crosswalk tbody tr:last-child input');
    await inputs.nth(0).fill(row.org_id ?? '');
    await inputs.nth(1).fill(row.owner_id);
    await inputs.nth(2).fill(row.team);
  }
  if (scenario.clickDemo) {
    await page.waitForSelector('#btn-demo:not([hidden])', { timeout: 15000 });
    const before = await jobs();
    await page.click('#btn-demo');
    await waitIdle(before);
  }
  if (scenario.waitLoad) {
    // ?load= starts by itself once the page is up.
    await waitIdle(0);
  }
  for (const step of scenario.steps ?? []) {
    await page.fill('#opt-org', step.org ?? '');
    const before = await jobs();
    await page.setInputFiles('#file-input', step.files);
    if (step.cancel) {
      // Cancel once the big file is being read; the page restores the files that had loaded.
      await page.waitForFunction(() => window.tally.busy && (window.tally.lastProgress?.done ?? 0) > 0, null, { polling: 20 });
      await page.click('#btn-cancel');
    }
    await waitIdle(before, step.timeout ?? 60000);
  }
  if (scenario.applyRulesFromTable) {
    // The rules table → TOML (written by the page) → the core's parser → a recompute.
    const before = await jobs();
    await page.click('#btn-rules-apply');
    await waitIdle(before);
  }
  if (scenario.invoice) {
    const before = await jobs();
    await page.fill('#invoice', scenario.invoice);
    await page.click('#btn-invoice');
    await waitIdle(before);
  }
  const seen = await page.evaluate(() => {
    const text = (sel) => [...document.querySelectorAll(sel)].map((e) => e.textContent.trim());
    const table = (id) => {
      const t = document.getElementById(id);
      if (!t) return null;
      return [...t.querySelectorAll('tbody tr')].map((tr) => Object.fromEntries(
        [...tr.children].map((c, i) => [c.dataset.col ?? String(i), { text: c.textContent.trim(), value: c.dataset.value ?? null }]),
      ));
    };
    const teams = {};
    for (const tr of document.querySelectorAll('#team-table tbody tr')) {
      const name = tr.querySelector('th').textContent.trim();
      const total = tr.querySelector('td[data-col="total"]');
      teams[name] = { value: total?.dataset.value ?? null, text: total?.textContent.trim() ?? null };
    }
    const files = [...document.querySelectorAll('#files tbody tr')].map((tr) => ({
      name: tr.dataset.file,
      format: tr.querySelector('[data-col="format"]')?.dataset.format || tr.querySelector('[data-col="format"]')?.textContent.trim(),
      formatShown: tr.querySelector('[data-col="format"]')?.textContent.trim(),
      status: tr.querySelector('[data-col="status"]')?.textContent.trim(),
      cells: [...tr.children].map((c) => c.textContent.trim()),
    }));
    return {
      version: document.getElementById('version').textContent,
      status: document.getElementById('status').textContent,
      errors: text('#errors p'),
      files,
      rejections: table('rejections'),
      teams,
      cards: text('.card').map((s) => s.replace(/\s+/g, ' ')),
      reconciliation: text('#recon dt, #recon dd'),
      explain: text('#recon-explain p'),
      unmatched: text('#unmatched li span'),
      progressIntervals: window.tally.stats.progressIntervals,
      cancelled: window.tally.stats.cancelled ?? 0,
      rulesStatus: document.getElementById('rules-status').textContent,
      orgs: window.tally.view?.orgs ?? [],
      rulesToml: document.getElementById('rules-toml').value,
      progressSeen: window.tally.lastProgress,
      entityNotes: text('#entity-notes p'),
      principals: window.tally.view?.principals ?? [],
      chart: (() => {
        // The columns over time: each segment's tooltip and whether it is drawn below zero.
        const svg = document.querySelector('#chart-time svg');
        if (!svg) return null;
        const zeroY = Number(svg.querySelector('line.zero')?.getAttribute('y1'));
        return {
          segments: [...svg.querySelectorAll('rect.segment')].map((r) => ({
            title: r.querySelector('title').textContent,
            below: Number(r.getAttribute('y')) >= zeroY - 0.01,
          })),
          nets: [...svg.querySelectorAll('line.net title')].map((t) => t.textContent),
        };
      })(),
    };
  });
  seen.downloads = {};
  for (const kind of scenario.downloads ?? []) {
    const [download] = await Promise.all([
      page.waitForEvent('download', { timeout: 20000 }),
      page.click(`#downloads button[data-output="${kind}"]`),
    ]);
    const path = join(dir, download.suggestedFilename());
    await download.saveAs(path);
    seen.downloads[kind] = path;
  }
  // Downloads the page must refuse: what each click adds to the alert region.
  seen.refused = {};
  for (const kind of scenario.refusedDownloads ?? []) {
    const before = await page.locator('#errors p').count();
    await page.click(`#downloads button[data-output="${kind}"]`);
    await page.waitForFunction((n) => document.querySelectorAll('#errors p').length > n, before,
      { timeout: 20000, polling: 50 });
    seen.refused[kind] = (await page.locator('#errors p').last().textContent()).trim();
  }
  if (scenario.screenshot) {
    await page.locator('#results').screenshot({ path: join(dir, scenario.screenshot) });
  }
  return seen;
}

try {
  let seen;
  if (scenario.rounds) {
    seen = { rounds: {} };
    for (const round of scenario.rounds) {
      const dir = join(outdir, round.name);
      mkdirSync(dir, { recursive: true });
      seen.rounds[round.name] = await play(round, dir);
    }
  } else {
    seen = await play(scenario, outdir);
  }
  seen.requests = requests;
  seen.console = consoleLines;
  console.log(JSON.stringify(seen));
} catch (e) {
  await page.screenshot({ path: join(outdir, 'failure.png'), fullPage: true }).catch(() => {});
  const errors = await page.evaluate(() => [...document.querySelectorAll('#errors p, #status')].map((p) => p.textContent))
    .catch(() => []);
  await context.close();
  fail(`${e.message}\npage said: ${errors.join(' | ')}`, consoleLines);
}
await context.close();
