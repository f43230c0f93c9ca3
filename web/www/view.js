// Turns the core's report (src/report: Report as JSON) into what the page shows.
// Amounts stay exact decimal strings; sums across rows are exact (BigInt).

import { addDecimal, sumDecimals, isZeroDecimal, toUnits, fromUnits } from './decimal.js';

const UNALLOCATED = 'unallocated';
/** The chart's column of unallocated amounts when no single team received them. */
export const UNALLOCATED_SERIES = 'unallocated (pro-rated in the team totals)';

function bucketLabel(start, end) {
  const s = String(start);
  const hours = (Date.parse(end) - Date.parse(start)) / 3.6e6;
  if (hours <= 1) return `${s.slice(0, 10)} ${s.slice(11, 16)}`;
  if (hours <= 24) return s.slice(0, 10);
  if (hours <= 24 * 7) return `week of ${s.slice(0, 10)}`;
  return s.slice(0, 7);
}

function addTo(map, key, amount) {
  map.set(key, map.has(key) ? addDecimal(map.get(key), amount) : String(amount));
}

export function viewOf(report) {
  const rows = report.rows ?? [];
  const scale = Math.max(0, ...rows.slice(0, 1000).map((r) => {
    const v = String(r.chargeback_cost ?? '');
    const dot = v.indexOf('.');
    return dot < 0 ? 0 : v.length - dot - 1;
  }), Number(report.precision) || 0);
  const currency = rows.find((r) => r.currency)?.currency || 'USD';
  const rec = report.reconciliation ?? {};
  const orgIds = new Set((report.organizations ?? []).map((o) => o.org_id));
  const multiOrg = orgIds.size > 1;

  // Owner → team, from the teams' owners (the core's crosswalk applied; the
  // entity view's filters leave owners out of it).
  const teamOf = new Map();
  for (const t of report.teams ?? []) {
    for (const owner of t.owner_ids ?? []) teamOf.set(`${t.org_id}\u0000${owner}`, t.team);
  }
  const ownerTeam = (org, owner) => teamOf.get(`${org}\u0000${owner}`) ?? '';

  // The entity view as the core filtered it (entity kind, minimum total, at
  // most so many per cluster), and what its filters left out of each cluster.
  const entities = [];
  const entityNotes = [];
  const count = (n) => `${n} entit${n === 1 ? 'y' : 'ies'}`;
  for (const c of report.clusters ?? []) {
    const cluster = c.cluster_id || '(organization)';
    const shown = c.entities ?? [];
    for (const e of shown) {
      entities.push({ cluster, org_id: c.org_id, name: e.name, kind: e.level, team: e.team, total: e.total });
    }
    const left = [];
    if (c.truncated) left.push(`truncated to its ${shown.length} largest entities by the per-cluster limit`);
    if (c.below_min_total) left.push(`${count(c.below_min_total)} below the minimum total left out`);
    if (left.length) entityNotes.push(`${cluster}${c.org_id ? ` (${c.org_id})` : ''}: ${left.join('; ')}`);
  }

  // Teams (summed over organizations; the organizations tab has them apart).
  const teamsByName = new Map();
  for (const t of report.teams ?? []) {
    const cur = teamsByName.get(t.team);
    if (!cur) {
      teamsByName.set(t.team, {
        team: t.team, cost_center: t.cost_center, direct: t.direct, shared: t.shared,
        unallocated: t.unallocated, total: t.total, owners: t.owners, orgs: [t.org_id],
      });
    } else {
      for (const k of ['direct', 'shared', 'unallocated', 'total']) cur[k] = addDecimal(cur[k], t[k]);
      cur.owners += t.owners;
      cur.orgs.push(t.org_id);
    }
  }
  const teams = [...teamsByName.values()];

  // Principals and topics: sums of rows per owner.
  const principals = new Map();
  const topics = new Map();
  const teamByBucket = {};
  const bucketSet = new Map();
  const unallocRows = [];
  const labels = new Map();
  const labelOf = (r) => {
    let l = labels.get(r.bucket_start);
    if (l === undefined) {
      l = bucketLabel(r.bucket_start, r.bucket_end);
      labels.set(r.bucket_start, l);
    }
    return l;
  };
  for (const r of rows) {
    const label = labelOf(r);
    bucketSet.set(r.bucket_start, label);
    if (r.owner_id === UNALLOCATED) {
      unallocRows.push({
        bucket: label, product: r.product, line_type: r.line_type, reason: r.reason,
        amount: r.chargeback_cost, org_id: r.org_id,
      });
      continue;
    }
    const target = r.level === 'topic' ? topics : principals;
    const key = `${r.org_id}\u0000${r.owner_id}`;
    let e = target.get(key);
    if (!e) {
      e = { org_id: r.org_id, units: 0n, team: ownerTeam(r.org_id, r.owner_id) };
      if (r.level === 'topic') e.topic = r.owner_id;
      else e.owner_id = r.owner_id;
      target.set(key, e);
    }
    const units = toUnits(r.chargeback_cost, scale);
    e.units += units;
    const team = e.team || '(unmatched)';
    const perBucket = (teamByBucket[team] ??= {});
    perBucket[label] = (perBucket[label] ?? 0n) + units;
  }
  for (const m of [principals, topics]) {
    for (const e of m.values()) {
      e.total = fromUnits(e.units, scale);
      delete e.units;
    }
  }
  // The unallocated rows per bucket, so that a bucket's column adds up to its
  // bill: in the shared cost center's column when one team received them all;
  // else in a column of their own, since pro-rated teams receive them over the
  // whole period, in proportion to their totals, not bucket by bucket.
  const receivers = teams.filter((t) => t.unallocated !== undefined && !isZeroDecimal(t.unallocated));
  const unallocatedSeries = unallocRows.length && receivers.length !== 1 ? UNALLOCATED_SERIES : null;
  const unallocatedTo = receivers.length === 1 ? receivers[0].team : unallocatedSeries;
  for (const r of unallocRows) {
    if (unallocatedTo === null) break;
    const perBucket = (teamByBucket[unallocatedTo] ??= {});
    perBucket[r.bucket] = (perBucket[r.bucket] ?? 0n) + toUnits(r.amount, scale);
  }
  const netUnits = {};
  for (const perBucket of Object.values(teamByBucket)) {
    for (const [label, units] of Object.entries(perBucket)) {
      netUnits[label] = (netUnits[label] ?? 0n) + units;
      perBucket[label] = fromUnits(units, scale);
    }
  }
  const bucketLabels = [...bucketSet.entries()].sort((a, b) => a[0].localeCompare(b[0])).map(([, l]) => l);

  // Buckets (summed over organizations).
  const buckets = new Map();
  for (const b of report.buckets ?? []) {
    const label = bucketLabel(b.bucket_start, b.bucket_end);
    const cur = buckets.get(label);
    if (!cur) {
      buckets.set(label, {
        bucket: label, start: b.bucket_start, partial: b.partial ? 'partial' : '',
        bill: b.bill_total, allocated: b.allocated, unallocated: b.unallocated,
      });
    } else {
      cur.bill = addDecimal(cur.bill, b.bill_total);
      cur.allocated = addDecimal(cur.allocated, b.allocated);
      cur.unallocated = addDecimal(cur.unallocated, b.unallocated);
      if (b.partial) cur.partial = 'partial';
    }
  }

  const orgs = (report.organizations ?? []).map((o) => ({
    org_id: o.org_id || '(none)', allocated: o.allocated, unallocated: o.unallocated, total: o.total,
  }));

  const distribution = receivers.map((t) => ({ team: t.team, amount: t.unallocated }));
  const policyText = distribution.length > 1
    ? 'It was pro-rated over the teams in proportion to their totals (see below).'
    : distribution.length === 1
      ? `It was charged to the shared cost center “${distribution[0].team}”.`
      : '';

  // The page lists the largest lines; every line is in the Confluent-format download.
  const MAX_LINES = 2000;
  const largest = rows.length <= MAX_LINES ? rows : rows
    .map((r) => [Math.abs(Number(r.chargeback_cost)), r]) // ordering only; shown amounts stay exact
    .sort((a, b) => b[0] - a[0])
    .slice(0, MAX_LINES)
    .map(([, r]) => r);
  const lines = largest.map((r) => ({
    bucket: labelOf(r),
    owner_id: r.owner_id,
    team: r.owner_id === UNALLOCATED ? '' : ownerTeam(r.org_id, r.owner_id),
    product: r.product,
    line_type: r.line_type,
    resource_id: r.resource_id,
    method: r.chain_step ? `${r.method} (fallback ${r.chain_step})` : r.method,
    reason: r.reason,
    usage_share: r.usage_share,
    chargeback_cost: r.chargeback_cost,
    className: r.owner_id === UNALLOCATED ? 'unallocated-row' : '',
  }));

  const first = bucketLabels[0];
  const last = bucketLabels[bucketLabels.length - 1];
  return {
    currency,
    multiOrg,
    billTotal: rec.bill_total ?? '0',
    allocatedToOwners: rec.allocated_total ?? '0',
    allocated: addDecimal(rec.allocated_total ?? '0', rec.unallocated_total ?? '0'),
    period: first ? (first === last ? first : `${first} – ${last}`) : '',
    reconciliation: rec,
    // The crosswalk's conflicts (rows it refused, disputed patterns) with them.
    reconciliationNotes: [...(rec.explanations ?? []), ...(report.crosswalk_notes ?? []).map((n) => `crosswalk: ${n}`)],
    teams,
    principals: [...principals.values()],
    topics: [...topics.values()],
    entities,
    entityNotes,
    orgs,
    buckets: [...buckets.values()],
    lines,
    linesTotal: rows.length,
    bucketLabels,
    teamByBucket,
    unallocatedSeries,
    bucketNets: bucketLabels.map((b) => fromUnits(netUnits[b] ?? 0n, scale)),
    unallocated: { total: rec.unallocated_total ?? sumDecimals(unallocRows.map((r) => r.amount)), rows: unallocRows, distribution, policyText },
    unmatched: (report.unmatched_owners ?? []).map((o) => ({ owner_id: o, org_id: '' })),
    // The files' summaries as the allocation left them: crosswalk rows it
    // refused (an owner given two teams) are rejected there, not while reading.
    files: report.files ?? [],
  };
}
