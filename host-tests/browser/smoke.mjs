// Opens the built page and waits for the wasm module to answer.
// Usage: node smoke.mjs URL OUTDIR   — prints one JSON line {version, requests}.
import { launch, fail } from './lib.mjs';

const [url, outdir] = process.argv.slice(2);
const { context, page, requests, consoleLines } = await launch();
try {
  await page.goto(url);
  const version = await page.waitForFunction(() => {
    const text = document.getElementById('version')?.textContent ?? '';
    return text.startsWith('tally ') ? text : null;
  }, null, { timeout: 15000 }).then((h) => h.jsonValue()).catch(() => null);
  if (!version) fail('the page never showed the module version', consoleLines);
  await page.screenshot({ path: `${outdir}/smoke.png` });
  console.log(JSON.stringify({ version, requests }));
} finally {
  await context.close();
}
