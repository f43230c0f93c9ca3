// The rules editor: the rules file (TOML) shown as a table of rules, each a
// product / line-type match and a fallback chain of methods with their weights.
// TOML → JSON is done by the core (the same parser the allocation uses); the
// table writes TOML back in the default file's style, and the core validates it.

export const METHODS = [
  ['usage_ratio', 'usage ratio', 'metrics, comma-separated'],
  ['weighted', 'weighted mix', 'metric+metric=weight; even=weight (weights sum to 1)'],
  ['fixed', 'fixed percentages', 'owner=percent; owner=percent (total 100)'],
  ['even_active', 'even over active', ''],
  ['even_period', 'even over the period', ''],
  ['lifetime', 'by lifetime', 'lifetime metric'],
  ['storage', 'storage (write × retention)', 'write metric, retention metric'],
  ['owner_of_record', 'owner of record', ''],
  ['environment', 'environment', ''],
  ['resource_owner', 'resource owner', ''],
  ['allocated_last', 'allocated last', ''],
  ['unallocated', 'unallocated', ''],
];
const METHOD_HINT = Object.fromEntries(METHODS.map(([m, , h]) => [m, h]));

/** A step's parameters as the one-line text the editor shows. */
export function stepParams(step) {
  switch (step.method) {
    case 'usage_ratio':
      return (step.metrics ?? []).join(', ');
    case 'weighted':
      return (step.components ?? [])
        .map((c) => `${c.even ? 'even' : (c.metrics ?? []).join('+')}=${c.weight}`)
        .join('; ');
    case 'fixed':
      return Object.entries(step.shares ?? {}).map(([k, v]) => `${k}=${v}`).join('; ');
    case 'lifetime':
      return step.metric ?? '';
    case 'storage':
      return [step.write_metric ?? '', step.retention_metric ?? ''].join(', ');
    default:
      return '';
  }
}

const list = (text) => text.split(',').map((s) => s.trim()).filter(Boolean);

/** The step a method plus its parameter text describe (throws with a reason). */
export function parseStep(method, text) {
  const t = text.trim();
  switch (method) {
    case 'usage_ratio':
      return { method, metrics: list(t) };
    case 'weighted':
      return {
        method,
        components: t.split(';').map((s) => s.trim()).filter(Boolean).map((part) => {
          const eq = part.lastIndexOf('=');
          if (eq < 0) throw new Error(`weighted: “${part}” needs =weight`);
          const lhs = part.slice(0, eq).trim();
          const weight = part.slice(eq + 1).trim();
          return lhs === 'even'
            ? { metrics: [], even: true, weight }
            : { metrics: lhs.split('+').map((s) => s.trim()).filter(Boolean), even: false, weight };
        }),
      };
    case 'fixed':
      return {
        method,
        shares: Object.fromEntries(t.split(';').map((s) => s.trim()).filter(Boolean).map((part) => {
          const eq = part.lastIndexOf('=');
          if (eq < 0) throw new Error(`fixed: “${part}” needs =percent`);
          return [part.slice(0, eq).trim(), part.slice(eq + 1).trim()];
        })),
      };
    case 'lifetime':
      return t ? { method, metric: t } : { method };
    case 'storage': {
      const [w, r] = list(t);
      const step = { method };
      if (w) step.write_metric = w;
      if (r) step.retention_metric = r;
      return step;
    }
    default:
      return { method };
  }
}

const q = (s) => JSON.stringify(String(s)); // TOML basic strings accept JSON's escapes
const arr = (xs) => `[${xs.map(q).join(', ')}]`;
const bareKey = (k) => (/^[A-Za-z0-9_-]+$/.test(k) ? k : q(k));

function inlineStep(step) {
  const parts = [`method = ${q(step.method)}`];
  switch (step.method) {
    case 'usage_ratio':
      parts.push(`metrics = ${arr(step.metrics ?? [])}`);
      break;
    case 'weighted':
      parts.push(`components = [\n${(step.components ?? []).map((c) => (c.even
        ? `      { even = true, weight = ${q(c.weight)} }`
        : `      { metrics = ${arr(c.metrics ?? [])}, weight = ${q(c.weight)} }`)).join(',\n')},\n  ]`);
      break;
    case 'fixed':
      parts.push(`shares = { ${Object.entries(step.shares ?? {}).map(([k, v]) => `${bareKey(k)} = ${q(v)}`).join(', ')} }`);
      break;
    case 'lifetime':
      if (step.metric) parts.push(`metric = ${q(step.metric)}`);
      break;
    case 'storage':
      if (step.write_metric) parts.push(`write_metric = ${q(step.write_metric)}`);
      if (step.retention_metric) parts.push(`retention_metric = ${q(step.retention_metric)}`);
      break;
    default:
  }
  return `{ ${parts.join(', ')} }`;
}

const chainToml = (chain) => `[\n${chain.map((s) => `  ${inlineStep(s)},`).join('\n')}\n]`;

/** The rules (the core's JSON shape) as a rules file. */
export function rulesToToml(rules) {
  const out = [
    '# tally allocation rules (written by the tally page).',
    '# Rules are tried in order; the first whose products and line_types match a line applies.',
    '# Every chain implicitly ends with `unallocated`.',
    '',
    `credits_unallocated = ${rules.credits_unallocated !== false}`,
    '',
    `default_chain = ${chainToml(rules.default_chain ?? [])}`,
    '',
    '[resource_owners]',
    ...Object.entries(rules.resource_owners ?? {}).map(([k, v]) => `${q(k)} = ${q(v)}`),
  ];
  for (const rule of rules.rule ?? []) {
    out.push('', '[[rule]]');
    out.push(`products = ${arr(rule.products ?? [])}`);
    if ((rule.line_types ?? []).length) out.push(`line_types = ${arr(rule.line_types)}`);
    if (rule.level) out.push(`level = ${q(rule.level)}`);
    out.push(`chain = ${chainToml(rule.chain ?? [])}`);
  }
  return `${out.join('\n')}\n`;
}

function methodSelect(value, label) {
  const sel = document.createElement('select');
  sel.setAttribute('aria-label', label);
  for (const [m, text] of METHODS) {
    const o = document.createElement('option');
    o.value = m;
    o.textContent = text;
    sel.append(o);
  }
  sel.value = value;
  return sel;
}

function textInput(value, label, placeholder = '') {
  const i = document.createElement('input');
  i.type = 'text';
  i.value = value;
  i.spellcheck = false;
  i.autocomplete = 'off';
  i.placeholder = placeholder;
  i.setAttribute('aria-label', label);
  return i;
}

function smallButton(text, label, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'small';
  b.textContent = text;
  b.setAttribute('aria-label', label);
  b.addEventListener('click', onClick);
  return b;
}

/** Renders and edits the rules in a <table>; `read()` returns the edited rules. */
export class RulesEditor {
  constructor(table, onChange) {
    this.table = table;
    this.onChange = onChange;
    this.rules = null;
  }

  set(rules) {
    this.rules = structuredClone(rules);
    this.render();
  }

  /** The rules as edited (throws naming the rule when a parameter is unreadable). */
  read() {
    return structuredClone(this.rules);
  }

  changed() {
    this.onChange?.();
  }

  chainEditor(chain, ruleLabel) {
    const box = document.createElement('ol');
    box.className = 'chain';
    chain.forEach((step, i) => {
      const li = document.createElement('li');
      const label = `${ruleLabel}, step ${i + 1}`;
      const sel = methodSelect(step.method, `${label}: method`);
      const params = textInput(stepParams(step), `${label}: weights / parameters`, METHOD_HINT[step.method] ?? '');
      params.hidden = !METHOD_HINT[step.method];
      const update = () => {
        try {
          chain[i] = parseStep(sel.value, params.value);
          params.removeAttribute('aria-invalid');
          params.title = '';
        } catch (e) {
          params.setAttribute('aria-invalid', 'true');
          params.title = e.message;
        }
        this.changed();
      };
      sel.addEventListener('change', () => {
        params.hidden = !METHOD_HINT[sel.value];
        params.placeholder = METHOD_HINT[sel.value] ?? '';
        if (sel.value !== step.method) params.value = '';
        update();
      });
      params.addEventListener('change', update);
      li.append(sel, params, smallButton('✕', `${label}: remove step`, () => {
        chain.splice(i, 1);
        this.render();
        this.changed();
      }));
      box.append(li);
    });
    const add = smallButton('+ step', `${ruleLabel}: add a fallback step`, () => {
      chain.push({ method: 'resource_owner' });
      this.render();
      this.changed();
    });
    const wrap = document.createElement('div');
    wrap.append(box, add);
    return wrap;
  }

  render() {
    const t = this.table;
    const thead = t.tHead ?? t.createTHead();
    thead.replaceChildren();
    const hr = thead.insertRow();
    for (const h of ['#', 'Products', 'Line types', 'Level', 'Method → fallbacks (weights)', '']) {
      const th = document.createElement('th');
      th.scope = 'col';
      th.textContent = h;
      hr.append(th);
    }
    const tbody = t.tBodies[0] ?? t.createTBody();
    tbody.replaceChildren();
    const rules = this.rules?.rule ?? [];
    rules.forEach((rule, i) => {
      const tr = tbody.insertRow();
      const label = `rule ${i + 1}`;
      const n = document.createElement('th');
      n.scope = 'row';
      n.textContent = String(i + 1);
      tr.append(n);
      const products = textInput((rule.products ?? []).join(', '), `${label}: products`, 'any');
      products.addEventListener('change', () => {
        rule.products = list(products.value);
        this.changed();
      });
      const lines = textInput((rule.line_types ?? []).join(', '), `${label}: line types`, 'any');
      lines.addEventListener('change', () => {
        rule.line_types = list(lines.value);
        this.changed();
      });
      const level = document.createElement('select');
      level.setAttribute('aria-label', `${label}: entity level`);
      for (const [v, text] of [['', 'session'], ['principal', 'principal'], ['topic', 'topic']]) {
        const o = document.createElement('option');
        o.value = v;
        o.textContent = text;
        level.append(o);
      }
      level.value = rule.level ?? '';
      level.addEventListener('change', () => {
        rule.level = level.value || null;
        this.changed();
      });
      const cells = [products, lines, level, this.chainEditor(rule.chain ??= [], label)];
      for (const c of cells) tr.insertCell().append(c);
      const ops = tr.insertCell();
      ops.className = 'ops';
      ops.append(
        smallButton('↑', `${label}: move up`, () => this.move(i, -1)),
        smallButton('↓', `${label}: move down`, () => this.move(i, 1)),
        smallButton('✕', `${label}: remove`, () => {
          rules.splice(i, 1);
          this.render();
          this.changed();
        }),
      );
    });
    // The default chain and the global settings.
    const tr = tbody.insertRow();
    tr.className = 'default-rule';
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = '*';
    tr.append(th);
    const c1 = tr.insertCell();
    c1.colSpan = 3;
    c1.textContent = 'Lines no rule matches';
    const credits = document.createElement('label');
    const cb = document.createElement('input');
    cb.type = 'checkbox';
    cb.checked = this.rules?.credits_unallocated !== false;
    cb.addEventListener('change', () => {
      this.rules.credits_unallocated = cb.checked;
      this.changed();
    });
    credits.append(cb, ' credits and refunds (negative lines) stay unallocated');
    const owners = textInput(
      Object.entries(this.rules?.resource_owners ?? {}).map(([k, v]) => `${k}=${v}`).join('; '),
      'resource owners: resource=owner; resource=owner', 'resource owners, e.g. lcc-456=lkc-123',
    );
    owners.addEventListener('change', () => {
      this.rules.resource_owners = Object.fromEntries(owners.value.split(';').map((s) => s.trim()).filter(Boolean)
        .map((p) => p.split('=').map((x) => x.trim())).filter((p) => p.length === 2 && p[0]));
      this.changed();
    });
    const extra = document.createElement('div');
    extra.className = 'default-extra';
    extra.append(credits, owners);
    c1.append(extra);
    tr.insertCell().append(this.chainEditor(this.rules.default_chain ??= [], 'default chain'));
    tr.insertCell();
  }

  move(i, d) {
    const rules = this.rules.rule;
    const j = i + d;
    if (j < 0 || j >= rules.length) return;
    [rules[i], rules[j]] = [rules[j], rules[i]];
    this.render();
    this.changed();
    this.table.querySelectorAll('tbody tr')[j]?.querySelector(`button[aria-label="rule ${j + 1}: move ${d < 0 ? 'up' : 'down'}"]`)?.focus();
  }

  addRule() {
    (this.rules.rule ??= []).push({ products: [], line_types: [], level: null, chain: [{ method: 'even_active' }, { method: 'resource_owner' }] });
    this.render();
    this.changed();
  }
}
