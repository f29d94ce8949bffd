// The Flows pages: #/flows lists every flow with its versions; #/flows/<id> shows one version
// (labels, storage, environment, parameters, tasks) and a "run now" form built from its parameters.
//
// Parameter types: flow metadata declares each parameter's name, default and whether it is
// required, not a type. The form takes the default's JSON type as the parameter's type and
// checks it before sending (docs/ui.md, "Run now"); the server's own 422 shows next to the field it names.

import { api, canWrite } from '../api.js';
import { errorNotice, fmtTime, h, labels } from '../util.js';

export function useCss(name) {
  const href = `/ui/pages/${name}.css`;
  if (!document.querySelector(`link[href="${href}"]`)) {
    document.head.append(h('link', { rel: 'stylesheet', href }));
  }
}

export async function render(root, params) {
  useCss('more');
  if (params.id) return renderFlow(root, params.id);
  return renderList(root);
}

// -- the list -------------------------------------------------------------------------

async function renderList(root) {
  document.title = 'Flows · headwater';
  const versions = await api('/flows', { query: { include_archived: true } });
  const groups = new Map(); // "project\0name" → versions, newest first
  for (const v of versions) {
    const key = `${v.project_name}\u0000${v.name}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(v);
  }
  const rows = [];
  for (const list of [...groups.values()].sort((a, b) => (a[0].project_name + a[0].name).localeCompare(
    b[0].project_name + b[0].name))) {
    list.sort((a, b) => b.version - a.version);
    const latest = list.find((v) => !v.archived) || list[0];
    rows.push(h('tr', { 'data-flow': latest.name },
      h('td', {}, h('a', { href: `#/flows/${latest.id}` }, latest.name)),
      h('td', {}, latest.project_name),
      h('td', { class: 'versions' }, list.map((v) => h('a', {
        href: `#/flows/${v.id}`, class: v.archived ? 'archived' : '', title: v.archived ? 'archived' : null,
      }, `v${v.version}`))),
      h('td', {}, labels(latest.labels)),
      h('td', {}, latest.parameters.length ? latest.parameters.map((p) => p.name).join(', ') : '—'),
      h('td', {}, fmtTime(latest.created))));
  }
  if (!rows.length) {
    rows.push(h('tr', {}, h('td', { colspan: 6, class: 'muted empty' },
      'No flows yet. Register one with flow.register("project") or `headwater register`.')));
  }
  root.replaceChildren(
    h('h1', {}, 'Flows', h('span', { class: 'muted small' }, `${groups.size} flow(s), ${versions.length} version(s)`)),
    h('section', { class: 'panel', 'data-page': 'flows' },
      h('table', { class: 'flows' },
        h('thead', {}, h('tr', {}, ['Flow', 'Project', 'Versions', 'Labels (latest)', 'Parameters', 'Registered']
          .map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, rows))));
}

// -- one version ----------------------------------------------------------------------

async function renderFlow(root, id) {
  const flow = await api(`/flows/${encodeURIComponent(id)}`);
  document.title = `${flow.name} v${flow.version} · headwater`;
  const md = flow.metadata;
  const siblings = await api('/flows', { query: { project_name: flow.project_name, name: flow.name,
    include_archived: true } });
  siblings.sort((a, b) => b.version - a.version);
  const writable = await canWrite();

  root.replaceChildren(
    h('p', { class: 'small' }, h('a', { href: '#/flows' }, '← All flows')),
    h('h1', {}, flow.name, h('span', { class: 'muted' }, `v${flow.version}`),
      flow.archived ? h('span', { class: 'label archived' }, 'archived') : null),
    h('div', { class: 'grid2' },
      h('section', { class: 'panel', 'data-page': 'flow' },
        h('h2', {}, 'This version'),
        h('dl', { class: 'facts' },
          h('dt', {}, 'Project'), h('dd', {}, flow.project_name),
          h('dt', {}, 'Id'), h('dd', { class: 'mono' }, flow.id),
          h('dt', {}, 'Registered'), h('dd', {}, fmtTime(flow.created)),
          h('dt', {}, 'Labels'), h('dd', {}, flow.labels.length ? labels(flow.labels)
            : h('span', { class: 'muted' }, 'none (only an agent without labels takes its runs)')),
          h('dt', {}, 'Tasks'), h('dd', {}, `${md.tasks.length} task(s), ${md.edges.length} edge(s)`),
          h('dt', {}, 'Runs'), h('dd', {}, h('a', { href: `#/runs?flow_id=${flow.id}` }, 'Runs of this version'))),
        h('h2', { class: 'spaced' }, 'Versions'),
        h('ul', { class: 'versions-list' }, siblings.map((v) => h('li', {},
          v.id === flow.id ? h('strong', {}, `v${v.version}`) : h('a', { href: `#/flows/${v.id}` }, `v${v.version}`),
          ` · ${fmtTime(v.created)} `, labels(v.labels), v.archived ? h('span', { class: 'muted' }, ' (archived)')
            : null)))),
      runForm(flow, writable)),
    h('div', { class: 'grid2 spaced' },
      specPanel('Storage', md.storage, 'No storage in the metadata: the server\'s default storage keeps it.'),
      specPanel('Environment', md.environment, 'No environment: the flow-run process runs it in a '
        + 'LocalEnvironment.')),
    h('section', { class: 'panel spaced' }, h('h2', {}, 'Tasks'),
      h('table', { class: 'tasks' },
        h('thead', {}, h('tr', {}, ['Task', 'Slug', 'Upstream'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, tasksRows(md)))));
}

function specPanel(title, spec, none) {
  return h('section', { class: 'panel', 'data-spec': title.toLowerCase() },
    h('h2', {}, title, spec && spec.kind ? h('span', { class: 'label' }, spec.kind) : null),
    spec ? h('pre', { class: 'spec' }, JSON.stringify(spec, null, 2)) : h('p', { class: 'muted' }, none));
}

function tasksRows(md) {
  const ups = new Map();
  for (const e of md.edges) {
    if (!ups.has(e.downstream)) ups.set(e.downstream, []);
    ups.get(e.downstream).push(e.upstream);
  }
  const shown = md.tasks.slice(0, 200);
  const rows = shown.map((t) => h('tr', {}, h('td', {}, t.name), h('td', { class: 'mono' }, t.slug),
    h('td', { class: 'mono small' }, (ups.get(t.slug) || []).join(', ') || '—')));
  if (md.tasks.length > shown.length) {
    rows.push(h('tr', {}, h('td', { colspan: 3, class: 'muted' }, `… and ${md.tasks.length - shown.length} more`)));
  }
  return rows;
}

// -- run now --------------------------------------------------------------------------

/** The JSON type a parameter takes: its default's ('integer', 'number', 'string', 'boolean', 'array', 'object'), or 'any'. */
export function paramType(param) {
  const d = param.default;
  if (d === null || d === undefined) return 'any';
  if (typeof d === 'number') return Number.isInteger(d) ? 'integer' : 'number';
  if (Array.isArray(d)) return 'array';
  return typeof d; // string, boolean, object
}

/**
 * The value of one field as its type wants it: {value} or {error}. Strings are taken as typed;
 * the other types are JSON ("3", "[1, 2]", "{"a": 1}", "null"). An empty field of an optional
 * parameter is left out (the flow's default applies).
 */
export function parseField(param, text) {
  const type = paramType(param);
  if (text.trim() === '') {
    if (param.required) return { error: `${param.name} is required (it has no default)` };
    return { omit: true };
  }
  if (type === 'string') return { value: text };
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    const hint = type === 'any' ? 'a JSON value, e.g. 3, "text", [1, 2] or {"a": 1}' : `a${type === 'integer'
      || type === 'array' || type === 'object' ? 'n' : ''} ${type}`;
    return { error: `${param.name} must be ${hint}; "${text}" is not` };
  }
  const ok = {
    any: () => true,
    integer: (v) => typeof v === 'number' && Number.isInteger(v),
    number: (v) => typeof v === 'number',
    boolean: (v) => typeof v === 'boolean',
    array: (v) => Array.isArray(v),
    object: (v) => v !== null && typeof v === 'object' && !Array.isArray(v),
  }[type];
  if (!ok(value)) {
    return { error: `${param.name} must be a${type === 'integer' || type === 'array' || type === 'object' ? 'n' : ''} `
      + `${type} (like its default, ${JSON.stringify(param.default)}); "${text}" is not` };
  }
  return { value };
}

function runForm(flow, writable) {
  const panel = h('section', { class: 'panel', 'data-panel': 'run-now' }, h('h2', {}, 'Run now'));
  if (flow.archived) {
    panel.append(h('p', { class: 'muted' }, 'This version is archived; register the flow again to run it.'));
    return panel;
  }
  if (!writable) {
    panel.append(h('p', { class: 'muted' }, 'Your token may read, not start runs (a user or admin token may).'));
    return panel;
  }
  const params = flow.metadata.parameters;
  const fields = new Map(); // name → {input, error}
  const formError = h('p', { class: 'field-error', role: 'alert' });
  const form = h('form', { class: 'run-now', novalidate: true });
  for (const p of params) {
    const type = paramType(p);
    const id = `param-${p.name}`;
    const error = h('p', { class: 'field-error', id: `${id}-error`, role: 'alert' });
    const initial = p.default === null || p.default === undefined ? ''
      : (type === 'string' ? p.default : JSON.stringify(p.default));
    const input = h('input', { id, name: p.name, value: initial, 'aria-describedby': `${id}-error`,
      'data-type': type, size: 30 });
    fields.set(p.name, { input, error, param: p });
    form.append(h('div', { class: 'field' },
      h('label', { for: id }, p.name, ' ', h('span', { class: 'muted small' },
        `${type === 'any' ? 'JSON' : type}${p.required ? ', required' : ''}`)),
      input, error));
  }
  if (!params.length) form.append(h('p', { class: 'muted' }, 'This flow has no parameters.'));
  const labelsInput = h('input', { id: 'run-labels', name: 'labels', placeholder: flow.labels.join(', ') || 'none',
    size: 30 });
  const nameInput = h('input', { id: 'run-name', name: 'run_name', placeholder: `${flow.name}-…`, size: 30 });
  form.append(
    h('details', {}, h('summary', {}, 'More options'),
      h('div', { class: 'field' }, h('label', { for: 'run-name' }, 'Run name'), nameInput),
      h('div', { class: 'field' }, h('label', { for: 'run-labels' }, 'Labels (comma-separated; empty: the flow\'s)'),
        labelsInput)),
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, 'Run now')),
    formError);

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    formError.textContent = '';
    const parameters = {};
    let bad = null;
    for (const { input, error, param } of fields.values()) {
      const parsed = parseField(param, input.value);
      error.textContent = parsed.error || '';
      input.setAttribute('aria-invalid', parsed.error ? 'true' : 'false');
      if (parsed.error && !bad) bad = input;
      if (!parsed.error && !parsed.omit) parameters[param.name] = parsed.value;
    }
    if (bad) { bad.focus(); return; }
    const body = { flow_id: flow.id, parameters };
    const labelText = labelsInput.value.trim();
    if (labelText) body.labels = labelText.split(',').map((l) => l.trim()).filter(Boolean);
    if (nameInput.value.trim()) body.run_name = nameInput.value.trim();
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      const run = await api('/runs', { method: 'POST', body });
      location.hash = `#/runs/${run.id}`;
    } catch (error) {
      showServerError(error, fields, formError);
    } finally {
      button.disabled = false;
    }
  });
  panel.append(form);
  return panel;
}

/** The server's refusal next to the field it names (a parameter 'x', or a 422's loc), else under the form. */
function showServerError(error, fields, formError) {
  const message = error.message || String(error);
  let placed = false;
  const locs = Array.isArray(error.detail) ? error.detail.map((e) => (e.loc || []).slice(-1)[0]) : [];
  for (const [name, { input, error: slot }] of fields) {
    if (locs.includes(name) || message.includes(`'${name}'`)) {
      slot.textContent = message;
      input.setAttribute('aria-invalid', 'true');
      placed = true;
    }
  }
  if (!placed) formError.replaceChildren(errorNotice(message));
}

export function stop() {}
