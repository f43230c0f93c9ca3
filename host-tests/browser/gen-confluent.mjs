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

export const OWNERS = 2000;
export const TEAMS = 40;
export const RESOURCES = 40;
export const HOURS = 720; // April 2026, hourly buckets
const LINES = [
  ['kafka', 'KafkaNetworkWrite', 'GB'],
  ['kafka', 'KafkaNetworkRead', 'GB'],
  ['kafka', 'KafkaNumCKUs', 'CKU-hour'],
  ['kafka', 'KafkaStorage', 'GB-hour'],
  ['kafka', 'KafkaPartition', 'Partition-hour'],
  ['connect', 'ConnectNumTasks', 'Task-hour'],
];
const VERSION = 3; // bump when the generated content changes

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
  // Every hour of April: one `unallocated` credit row, then for each line type and
  // cluster the owners of that cluster active in the hour (each owner uses one
  // cluster: owner i is on cluster i mod RESOURCES), like a real hourly export.
  const perCluster = OWNERS / RESOURCES;
  const perHour = Math.ceil(rows / HOURS);
  const activePercent = Math.min(100, Math.ceil((perHour / (LINES.length * OWNERS)) * 100));
  for (let hour = 0; hour < HOURS && written < rows; hour++) {
    const ts = `2026-04-${pad(1 + Math.floor(hour / 24), 2)}T${pad(hour % 24, 2)}:00:00Z`;
    const credit = `-${micro(10_000 + (next() % 50_000))}`;
    block += `${ts},unallocated,,,credit,PromoCredit,USD,${credit},${credit},0\n`;
    written++;
    for (const [product, line, unit] of LINES) {
      for (let r = 0; r < RESOURCES && written < rows; r++) {
        const owners = [];
        for (let k = 0; k < perCluster; k++) if (next() % 100 < activePercent) owners.push(r + k * RESOURCES);
        if (!owners.length) continue;
        const costs = owners.map(() => 1 + (next() % 2_000_000)); // up to $2 per owner-hour
        const total = costs.reduce((a, c) => a + c, 0);
        const env = `env-${pad(r, 5)}`;
        const res = `lkc-${pad(r, 5)}`;
        const orig = micro(total);
        owners.forEach((o, j) => {
          block += `${ts},${ownerId(o)},${env},${res},${product},${line},${unit},${micro(costs[j])},${orig},${(costs[j] / total).toFixed(6)}\n`;
        });
        written += owners.length;
        if (block.length > 4_000_000) flush();
      }
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
