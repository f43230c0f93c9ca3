// Writes a synthetic Confluent Cloud cost-allocation export (and its crosswalk)
// with a streaming writer: blocks of rows are formatted and written with
// writeSync, so memory stays small whatever the row count.
//
// The data is self-consistent like the real export: per (bucket, resource,
// line type) the rows' chargeback_cost add up exactly to original_amount, and
// every bucket has one `unallocated` row (a negative credit).
//
// Usage: node gen-confluent.mjs OUT.csv CROSSWALK.csv [ROWS]   (default 5,000,000)
// As a module: generate({csv, crosswalk, rows}) → {rows, bytes, owners, teams}.
import { openSync, writeSync, closeSync, statSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const OWNERS = 4000;
export const TEAMS = 40;
export const RESOURCES = 40;
export const DAYS = 30;
const LINES = [
  ['kafka', 'KafkaNetworkWrite', 'GB'],
  ['kafka', 'KafkaNetworkRead', 'GB'],
  ['kafka', 'KafkaNumCKUs', 'CKU-hour'],
  ['kafka', 'KafkaStorage', 'GB-hour'],
  ['kafka', 'KafkaPartition', 'Partition-hour'],
  ['connect', 'ConnectNumTasks', 'Task-hour'],
];
const VERSION = 2; // bump when the generated content changes

// A small deterministic PRNG (xorshift32), so every run writes the same file.
function rng(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

const pad = (n, w) => String(n).padStart(w, '0');
const micro = (units) => {
  // integer millionths of a dollar → "12.345678"
  const neg = units < 0;
  const a = Math.abs(units);
  return `${neg ? '-' : ''}${Math.floor(a / 1e6)}.${pad(a % 1e6, 6)}`;
};

export const ownerId = (i) => `sa-${pad(i, 6)}`;
export const teamOf = (i) => `team-${pad(i % TEAMS, 2)}`;

export function generate({ csv, crosswalk, rows = 5_000_000 }) {
  const stamp = `${csv}.stamp`;
  const want = JSON.stringify({ VERSION, rows });
  if (existsSync(csv) && existsSync(crosswalk) && existsSync(stamp) && readFileSync(stamp, 'utf8') === want) {
    return { rows, bytes: statSync(csv).size, owners: OWNERS, teams: TEAMS, cached: true };
  }
  const next = rng(20260401);
  const fd = openSync(csv, 'w');
  let written = 0;
  let block = 'timestamp,owner_id,environment_id,resource_id,product,line_type,unit,chargeback_cost,original_amount,usage_share\n';
  const flush = () => {
    writeSync(fd, block);
    block = '';
  };
  // Rows per bucket (day); each bucket: groups of up to 50 owners per (resource, line) + 1 unallocated row.
  const perDay = Math.ceil(rows / DAYS);
  let ownerCursor = 0;
  for (let day = 0; day < DAYS && written < rows; day++) {
    const ts = `2026-04-${pad(day + 1, 2)}T00:00:00Z`;
    let dayRows = Math.min(perDay, rows - written);
    const credit = `-${micro(1_000_000 + (next() % 5_000_000))}`;
    block += `${ts},unallocated,,,credit,PromoCredit,USD,${credit},${credit},0\n`;
    written++;
    dayRows--;
    while (dayRows > 0) {
      const r = next() % RESOURCES;
      const [product, line, unit] = LINES[next() % LINES.length];
      const k = Math.min(dayRows, 10 + (next() % 41));
      const costs = [];
      let total = 0;
      for (let j = 0; j < k; j++) {
        const c = 1 + (next() % 20_000_000); // up to $20
        costs.push(c);
        total += c;
      }
      const env = `env-${pad(r, 5)}`;
      const res = `lkc-${pad(r, 5)}`;
      const orig = micro(total);
      for (let j = 0; j < k; j++) {
        const owner = ownerId(ownerCursor);
        ownerCursor = (ownerCursor + 1 + (next() % 7)) % OWNERS;
        const share = (costs[j] / total).toFixed(6);
        block += `${ts},${owner},${env},${res},${product},${line},${unit},${micro(costs[j])},${orig},${share}\n`;
      }
      written += k;
      dayRows -= k;
      if (block.length > 4_000_000) flush();
    }
  }
  flush();
  closeSync(fd);
  let cw = 'owner_id,team\n';
  for (let i = 0; i < OWNERS; i++) cw += `${ownerId(i)},${teamOf(i)}\n`;
  writeFileSync(crosswalk, cw);
  writeFileSync(stamp, want);
  return { rows: written, bytes: statSync(csv).size, owners: OWNERS, teams: TEAMS, cached: false };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [csv, crosswalk, rows] = process.argv.slice(2);
  const t = Date.now();
  const r = generate({ csv, crosswalk, rows: rows ? Number(rows) : undefined });
  console.log(JSON.stringify({ ...r, seconds: (Date.now() - t) / 1000 }));
}
