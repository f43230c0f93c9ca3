// Bench-only page script (never part of the product page): the same team totals
// as tally's page, computed by DuckDB-WASM on the same files in the same browser.
// Files: #f holds [export.csv, crosswalk.csv]. window.runDuck() → timings + totals.
import * as duckdb from './duckdb/duckdb-browser.mjs';

const COLUMNS = `{'timestamp': 'VARCHAR', 'owner_id': 'VARCHAR', 'environment_id': 'VARCHAR',
  'resource_id': 'VARCHAR', 'product': 'VARCHAR', 'line_type': 'VARCHAR', 'unit': 'VARCHAR',
  'chargeback_cost': 'DECIMAL(18,6)', 'original_amount': 'DECIMAL(18,6)', 'usage_share': 'DOUBLE'}`;

window.runDuck = async () => {
  const [exportFile, crosswalkFile] = document.getElementById('f').files;
  const t0 = performance.now();
  const worker = new Worker(new URL('./duckdb/duckdb-browser-eh.worker.js', location.href));
  const db = new duckdb.AsyncDuckDB(new duckdb.VoidLogger(), worker);
  await db.instantiate(new URL('./duckdb/duckdb-eh.wasm', location.href).href);
  const t1 = performance.now();
  await db.registerFileHandle('export.csv', exportFile, duckdb.DuckDBDataProtocol.BROWSER_FILEREADER, true);
  await db.registerFileHandle('crosswalk.csv', crosswalkFile, duckdb.DuckDBDataProtocol.BROWSER_FILEREADER, true);
  const conn = await db.connect();
  // Unallocated rows go to the shared cost center, unmatched owners to "(unmatched)", as tally does.
  const result = await conn.query(`
    SELECT CASE WHEN e.owner_id = 'unallocated' THEN 'shared' ELSE coalesce(c.team, '(unmatched)') END AS team,
           CAST(sum(e.chargeback_cost) AS VARCHAR) AS total
    FROM read_csv('export.csv', header = true, columns = ${COLUMNS}) e
    LEFT JOIN read_csv('crosswalk.csv', header = true, columns = {'owner_id': 'VARCHAR', 'team': 'VARCHAR'}) c
      ON e.owner_id = c.owner_id
    GROUP BY 1 ORDER BY 1`);
  const t2 = performance.now();
  const teams = {};
  for (const row of result.toArray()) teams[row.team] = String(row.total);
  await conn.close();
  await db.terminate();
  return { initMs: t1 - t0, queryMs: t2 - t1, totalMs: t2 - t0, teams };
};
window.duckReady = true;
