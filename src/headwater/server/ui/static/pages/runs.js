// The Runs page (#/runs): every flow run, newest first, paginated, filtered, updated live.
// Filters live in the hash (#/runs?state=Running&flow_name=etl&offset=50) so a view can be bookmarked.

import { api } from '../api.js';
import {
  FLOW_RUN_STATES, duration, fmtTime, h, labels, poll, replaceKeepingFocus, shortId, stateBadge, errorNotice,
} from '../util.js';

const PAGE = 25;
const POLL_MS = 2000;
const FILTERS = ['flow_name', 'project_name', 'state', 'label', 'since', 'until', 'flow_id'];

let poller = null;
let active = null; // the render that may still start polling

export function stop() {
  active = null;
  if (poller) poller.stop();
  poller = null;
}

/** The API query of the filters: labels comma-separated → repeated `label`; local times → UTC ISO. */
export function apiQuery(filters, offset) {
  const query = { offset, limit: PAGE };
  for (const key of ['flow_name', 'project_name', 'flow_id', 'state']) if (filters[key]) query[key] = filters[key];
  if (filters.label) query.label = filters.label.split(',').map((l) => l.trim()).filter(Boolean);
  for (const key of ['since', 'until']) {
    if (filters[key]) query[key] = new Date(filters[key]).toISOString();
  }
  return query;
}

export async function render(root, params) {
  document.title = 'Runs · headwater';
  const mine = {};
  active = mine;
  const filters = Object.fromEntries(FILTERS.map((k) => [k, params.query.get(k) || '']));
  let offset = Math.max(0, parseInt(params.query.get('offset') || '0', 10) || 0);
  const agents = new Map();
  let agentsRead = 0;

  const status = h('span', { class: 'muted small', 'aria-live': 'off' });
  const formError = h('p', { class: 'field-error', role: 'alert' });
  const body = h('tbody');
  const summary = h('span', { class: 'muted' });
  const prev = h('button', { type: 'button', onclick: () => { offset = Math.max(0, offset - PAGE); changed(); } },
    '← Newer');
  const next = h('button', { type: 'button', onclick: () => { offset += PAGE; changed(); } }, 'Older →');
  const problem = h('div');

  const input = (name, label, attrs = {}) => h('div', {},
    h('label', { for: `f-${name}` }, label),
    h('input', { id: `f-${name}`, name, value: filters[name], ...attrs }));
  const stateSelect = h('select', { id: 'f-state', name: 'state' },
    h('option', { value: '' }, 'any state'),
    FLOW_RUN_STATES.map((s) => h('option', { value: s, selected: s === filters.state }, s)));
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter runs' },
    input('flow_name', 'Flow', { placeholder: 'flow name', size: 14 }),
    input('project_name', 'Project', { placeholder: 'project', size: 12 }),
    h('div', {}, h('label', { for: 'f-state' }, 'State'), stateSelect),
    input('label', 'Labels', { placeholder: 'dev, gpu', size: 12 }),
    input('since', 'Since', { type: 'datetime-local', step: 1 }),
    input('until', 'Until', { type: 'datetime-local', step: 1 }),
    h('div', { class: 'row' },
      h('button', { type: 'submit', class: 'primary' }, 'Filter'),
      h('button', { type: 'button', onclick: clear }, 'Clear')));
  form.addEventListener('submit', (event) => { event.preventDefault(); readForm(); offset = 0; changed(); });
  stateSelect.addEventListener('change', () => { readForm(); offset = 0; changed(); });

  const flowNote = filters.flow_id
    ? h('p', { class: 'notice' }, 'Runs of flow version ', h('a', { href: `#/flows/${filters.flow_id}` },
      shortId(filters.flow_id)), ' only. ', h('a', { href: '#/runs', onclick: () => { filters.flow_id = ''; } },
      'Show all runs'))
    : null;

  root.replaceChildren(...[
    h('h1', {}, 'Flow runs', status),
    h('section', { class: 'panel' }, form, formError),
    flowNote,
    problem,
    h('section', { class: 'panel', 'data-page': 'runs' },
      h('table', { class: 'runs' },
        h('caption', { class: 'muted small', style: 'text-align:left' }, 'Newest first'),
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col' }, 'State'), h('th', { scope: 'col' }, 'Run'), h('th', { scope: 'col' }, 'Flow'),
          h('th', { scope: 'col', class: 'wide' }, 'Project'), h('th', { scope: 'col', class: 'wide' }, 'Agent'),
          h('th', { scope: 'col', class: 'wide' }, 'Labels'), h('th', { scope: 'col', class: 'wide' }, 'Started'),
          h('th', { scope: 'col' }, 'Duration'))),
        body),
      h('div', { class: 'pager' }, prev, summary, next)),
  ].filter(Boolean));

  function readForm() {
    const data = new FormData(form);
    for (const key of FILTERS) if (key !== 'flow_id') filters[key] = String(data.get(key) || '').trim();
  }

  function clear() {
    for (const key of FILTERS) filters[key] = '';
    form.reset();
    for (const el of form.querySelectorAll('input')) el.value = '';
    offset = 0;
    changed();
  }

  function changed() {
    const q = new URLSearchParams();
    for (const key of FILTERS) if (filters[key]) q.set(key, filters[key]);
    if (offset) q.set('offset', String(offset));
    const qs = q.toString();
    history.replaceState(null, '', `#/runs${qs ? `?${qs}` : ''}`);
    if (poller) poller.now();
  }

  async function agentName(id) {
    if (!id) return '—';
    if (!agents.has(id) && Date.now() - agentsRead > 5000) {
      agentsRead = Date.now();
      for (const a of await api('/agents')) agents.set(a.id, a.name);
    }
    return agents.get(id) || shortId(id);
  }

  function checkForm() {
    if (filters.since && filters.until && new Date(filters.since) > new Date(filters.until)) {
      return 'Since is after Until: no run can match; swap them or clear one.';
    }
    return '';
  }

  async function refresh() {
    const wrong = checkForm();
    formError.textContent = wrong;
    if (wrong) return;
    let page;
    try {
      page = await api('/runs', { query: apiQuery(filters, offset) });
    } catch (error) {
      if (error.status && error.status !== 0) problem.replaceChildren(errorNotice(error.message));
      throw error;
    }
    problem.replaceChildren();
    if (page.total && offset >= page.total) { offset = Math.max(0, Math.floor((page.total - 1) / PAGE) * PAGE); }
    const rows = [];
    for (const run of page.flow_runs) {
      rows.push(h('tr', { 'data-run': run.id, class: `run-row run-${run.state}` },
        h('td', {}, stateBadge(run.state)),
        h('td', {}, h('a', { href: `#/runs/${run.id}` }, run.run_name || shortId(run.id))),
        h('td', {}, run.flow_name),
        h('td', { class: 'wide' }, run.project_name),
        h('td', { class: 'wide agent' }, await agentName(run.agent_id)),
        h('td', { class: 'wide' }, labels(run.labels)),
        h('td', { class: 'wide' }, fmtTime(run.start_time || run.scheduled_start_time)),
        h('td', { class: 'duration' }, run.start_time ? duration(run.start_time, run.end_time) : '—')));
    }
    if (!rows.length) {
      rows.push(h('tr', {}, h('td', { colspan: 8, class: 'muted empty' },
        page.total ? 'No runs on this page.' : 'No runs match. Start one with `headwater run` or from a flow.')));
    }
    replaceKeepingFocus(body, ...rows);
    const last = Math.min(offset + page.flow_runs.length, page.total);
    // a long history is counted only up to 100 past the page (total_exact false): "of 300+"
    summary.textContent = page.total ? `${offset + 1}–${last} of ${page.total}${page.total_exact === false ? '+' : ''}` : '0 runs';
    prev.disabled = offset === 0;
    next.disabled = offset + PAGE >= page.total;
    status.textContent = `updated ${fmtTime(new Date().toISOString()).slice(11)}`;
  }

  await refresh();
  if (active === mine) poller = poll(refresh, POLL_MS, false);
}
