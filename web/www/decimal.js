// Exact decimal strings: comparison, sums and differences with BigInt, formatting
// with Intl.NumberFormat's exact string input. Amounts from the core are never
// turned into floats for display or arithmetic (floats are used for chart
// geometry only).

const DECIMAL = /^\s*([+-]?)(\d*)(?:\.(\d*))?\s*$/;

/** Parses "−12.340" into {units: BigInt, scale}; null if not a plain decimal. */
export function parseDecimal(text) {
  const m = DECIMAL.exec(String(text ?? ''));
  if (!m || (m[2] === '' && (m[3] ?? '') === '')) return null;
  const frac = m[3] ?? '';
  let units = BigInt((m[2] || '0') + frac);
  if (m[1] === '-') units = -units;
  return { units, scale: frac.length };
}

function align(a, b) {
  const scale = Math.max(a.scale, b.scale);
  return [a.units * 10n ** BigInt(scale - a.scale), b.units * 10n ** BigInt(scale - b.scale), scale];
}

function toText(units, scale) {
  const neg = units < 0n;
  let digits = (neg ? -units : units).toString();
  if (scale > 0) {
    digits = digits.padStart(scale + 1, '0');
    digits = `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  }
  return (neg ? '-' : '') + digits;
}

/** a + b, exactly (strings in, string out). */
export function addDecimal(a, b) {
  const x = parseDecimal(a);
  const y = parseDecimal(b);
  if (!x || !y) return null;
  const [p, q, scale] = align(x, y);
  return toText(p + q, scale);
}

/** a − b, exactly. */
export function subDecimal(a, b) {
  const y = parseDecimal(b);
  if (!y) return null;
  return addDecimal(a, toText(-y.units, y.scale));
}

/** Sum of decimal strings. */
export function sumDecimals(values) {
  return values.reduce((acc, v) => (acc === null ? null : addDecimal(acc, v ?? '0')), '0');
}

export function isZeroDecimal(a) {
  const x = parseDecimal(a);
  return x !== null && x.units === 0n;
}

const formatters = new Map();

/** Money with its currency, keeping every digit the core wrote (never re-rounded). */
export function formatMoney(text, currency = 'USD') {
  const s = String(text ?? '');
  const parsed = parseDecimal(s);
  if (!parsed) return s;
  let base;
  try {
    base = currencyDigits(currency);
  } catch {
    return `${s} ${currency}`;
  }
  const digits = Math.min(Math.max(parsed.scale, base), 20);
  const key = `${currency}/${digits}`;
  let f = formatters.get(key);
  if (!f) {
    f = new Intl.NumberFormat(undefined, {
      style: 'currency', currency, minimumFractionDigits: digits, maximumFractionDigits: digits,
    });
    formatters.set(key, f);
  }
  // Intl.NumberFormat formats a decimal *string* exactly (no conversion to a double).
  return f.format(s.trim());
}

const digitCache = new Map();
function currencyDigits(currency) {
  if (!digitCache.has(currency)) {
    const o = new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions();
    digitCache.set(currency, o.minimumFractionDigits);
  }
  return digitCache.get(currency);
}

/** A plain number with grouping (counts, quantities), exact for strings too. */
export function formatCount(value) {
  return new Intl.NumberFormat(undefined, { maximumFractionDigits: 20 }).format(
    typeof value === 'string' ? value.trim() : value,
  );
}

/** Bytes as KiB / MiB / GiB. */
export function formatBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** A decimal string as BigInt units at `scale` decimals (extra digits truncated; for
 *  the core's amounts, which have at most the report's precision). */
export function toUnits(text, scale) {
  const s = String(text);
  const neg = s.startsWith('-');
  const body = neg ? s.slice(1) : s;
  const dot = body.indexOf('.');
  const int = dot < 0 ? body : body.slice(0, dot);
  const frac = dot < 0 ? '' : body.slice(dot + 1);
  const digits = int + (frac.length >= scale ? frac.slice(0, scale) : frac.padEnd(scale, '0'));
  const units = BigInt(digits || '0');
  return neg ? -units : units;
}

/** BigInt units at `scale` decimals back to a decimal string. */
export function fromUnits(units, scale) {
  const neg = units < 0n;
  let digits = (neg ? -units : units).toString();
  if (scale > 0) {
    digits = digits.padStart(scale + 1, '0');
    digits = `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  }
  return (neg ? '-' : '') + digits;
}

/** Rows sorted by a decimal-string field (each value parsed once). */
export function sortByDecimal(rows, key, dir = -1) {
  const scale = rows.reduce((m, r) => {
    const v = String(r[key] ?? '');
    const dot = v.indexOf('.');
    return Math.max(m, dot < 0 ? 0 : v.length - dot - 1);
  }, 0);
  return rows
    .map((r) => [parseDecimal(r[key]) ? toUnits(r[key], scale) : null, r])
    .sort((a, b) => {
      if (a[0] === null || b[0] === null) return (a[0] === null ? 0 : 1) - (b[0] === null ? 0 : 1);
      return dir * (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);
    })
    .map(([, r]) => r);
}
