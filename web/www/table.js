// A sortable, filterable data table. Columns: {key, label, type: 'text'|'money'|'count'|'share'}.
// Money cells show the formatted amount and carry the exact decimal string in
// data-value; sorting money compares exact decimals.

import { formatMoney, formatCount, sortByDecimal } from './decimal.js';

const MAX_ROWS = 1000;

export class DataTable {
  constructor({ columns, rows, currency, caption, sortKey, sortDir = 'desc', id }) {
    this.columns = columns;
    this.rows = rows;
    this.currency = currency;
    this.caption = caption;
    this.sortKey = sortKey ?? columns.find((c) => c.type === 'money')?.key ?? columns[0].key;
    this.sortDir = sortDir;
    this.filter = '';
    this.id = id;
    this.table = document.createElement('table');
    this.table.className = 'data';
    if (id) this.table.id = id;
  }

  setFilter(text) {
    this.filter = text.trim().toLowerCase();
  }

  visibleRows() {
    const f = this.filter;
    let rows = this.rows;
    if (f) {
      rows = rows.filter((r) => this.columns.some((c) => String(r[c.key] ?? '').toLowerCase().includes(f)));
    }
    const col = this.columns.find((c) => c.key === this.sortKey) ?? this.columns[0];
    const dir = this.sortDir === 'asc' ? 1 : -1;
    const first = this.columns[0].key;
    const byName = [...rows].sort((a, b) => String(a[first] ?? '').localeCompare(String(b[first] ?? '')));
    if (col.type === 'money' || col.type === 'count' || col.type === 'share') return sortByDecimal(byName, col.key, dir);
    return byName.sort((a, b) => dir * String(a[col.key] ?? '').localeCompare(String(b[col.key] ?? '')));
  }

  cell(col, row) {
    const td = document.createElement(col === this.columns[0] ? 'th' : 'td');
    if (col === this.columns[0]) td.scope = 'row';
    const v = row[col.key];
    if (col.type === 'money') {
      td.className = 'num';
      td.dataset.value = v ?? '';
      td.textContent = v === undefined || v === null || v === '' ? '' : formatMoney(v, row.currency ?? this.currency);
    } else if (col.type === 'count') {
      td.className = 'num';
      td.dataset.value = v ?? '';
      td.textContent = v === undefined || v === null || v === '' ? '' : formatCount(v);
    } else if (col.type === 'share') {
      td.className = 'num';
      td.dataset.value = v ?? '';
      const n = Number(v);
      td.textContent = Number.isFinite(n) ? `${(n * 100).toFixed(2)} %` : '';
    } else {
      td.textContent = v ?? '';
    }
    if (col.key) td.dataset.col = col.key;
    return td;
  }

  render() {
    const rows = this.visibleRows();
    const t = this.table;
    t.replaceChildren();
    if (this.caption) {
      const cap = document.createElement('caption');
      cap.textContent = this.caption;
      t.append(cap);
    }
    const thead = document.createElement('thead');
    const hr = document.createElement('tr');
    for (const col of this.columns) {
      const th = document.createElement('th');
      th.scope = 'col';
      if (col.type !== 'text' && col.type !== undefined) th.className = 'num';
      const active = col.key === this.sortKey;
      th.setAttribute('aria-sort', active ? (this.sortDir === 'asc' ? 'ascending' : 'descending') : 'none');
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'sort';
      b.textContent = col.label + (active ? (this.sortDir === 'asc' ? ' ▲' : ' ▼') : '');
      b.setAttribute('aria-label', `${col.label}: sort ${active && this.sortDir === 'desc' ? 'ascending' : 'descending'}`);
      b.addEventListener('click', () => {
        if (this.sortKey === col.key) this.sortDir = this.sortDir === 'asc' ? 'desc' : 'asc';
        else {
          this.sortKey = col.key;
          this.sortDir = col.type === 'text' || col.type === undefined ? 'asc' : 'desc';
        }
        this.render();
        this.table.querySelector(`th[aria-sort]:not([aria-sort="none"]) button`)?.focus();
      });
      th.append(b);
      hr.append(th);
    }
    thead.append(hr);
    const tbody = document.createElement('tbody');
    const frag = document.createDocumentFragment();
    for (const row of rows.slice(0, MAX_ROWS)) {
      const tr = document.createElement('tr');
      if (row.className) tr.className = row.className;
      for (const col of this.columns) tr.append(this.cell(col, row));
      frag.append(tr);
    }
    tbody.append(frag);
    t.append(thead, tbody);
    if (this.footer) {
      const tfoot = document.createElement('tfoot');
      const tr = document.createElement('tr');
      for (const col of this.columns) tr.append(this.cell(col, this.footer));
      tfoot.append(tr);
      t.append(tfoot);
    }
    this.shown = Math.min(rows.length, MAX_ROWS);
    this.matching = rows.length;
    return t;
  }
}
