// The Run page (#/runs/<id>): facts, parameters, state history, task graph, timeline, logs, environment
// and storage, cancel and run-again. While the run is not finished, everything updates every 2 s.

import { ApiError, api, canWrite } from '../api.js';
import { drawDag } from '../dag.js';
import {
  FINISHED, duration, errorNotice, fmtTime, h, hasPage, labels, parseTime, poll, replaceKeepingFocus, shortId,
  stateBadge,
} from '../util.js';

const POLL_MS = 2000;
const LEVELS = ['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'];
const MAX_LOGS = 20000;
const MAX_GANTT_ROWS = 400;

let poller = null;
let active = null;

export function stop() {
  active = null;
  if (poller) poller.stop();
  poller = null;
}

function section(title, ...children) {
  return h('section', { class: 'panel' }, h('h2', {}, title), ...children);
}

function json(value) {
  return JSON.stringify(value, null, 2);
}

function typeOf(value) {
  if (value === null || value === undefined) return null;
  if (Array.isArray(value)) return 'list';
  if (typeof value === 'object') return 'object';
  return typeof value; // number, string, boolean
}

const TYPE_WORD = { number: 'a number', string: 'a string', boolean: 'true or false', list: 'a list', object: 'an object' };

/**
 * A parameter field's value: JSON, or the plain text when the parameter's default is a string.
 * Returns {value} or {error}; `expected` is the JSON type of the default (null: any).
 */
export function parseField(text, expected, required) {
  const raw = text.trim();
  if (raw === '') return required ? { error: 'required: this flow has no default for it' } : { omit: true };
  let value;
  try {
    value = JSON.parse(raw);
  } catch {
    if (expected === 'string' || expected === null) return { value: text };
    return { error: `expects ${TYPE_WORD[expected]}; "${short(raw)}" is not` };
  }
  const got = typeOf(value);
  if (expected && got !== expected && got !== null) {
    if (expected === 'string') return { value: text };
    return { error: `expects ${TYPE_WORD[expected]}, not ${TYPE_WORD[got]} (${short(raw)})` };
  }
  return { value };
}

function short(text) {
  return text.length > 40 ? `${text.slice(0, 39)}…` : text;
}

export async function render(root, params) {
  const id = params.id;
  const mine = {};
  active = mine;
  let run = await api(`/runs/${encodeURIComponent(id)}`);
  const [flow, writable] = await Promise.all([
    api(`/flows/${encodeURIComponent(run.flow_id)}`).catch(() => null),
    canWrite(),
  ]);
  if (active !== mine) return;
  document.title = `${run.run_name || shortId(run.id)} · headwater`;
  const meta = flow ? flow.metadata : null;
  const agents = new Map();

  // -- header and facts --------------------------------------------------------------
  const badge = h('span', { id: 'run-state' });
  const actions = h('span', { class: 'row' });
  const facts = h('dl', { class: 'facts' });
  const messageLine = h('p', { class: 'muted', id: 'state-message' });
  const actionError = h('p', { class: 'field-error', role: 'alert' });
  const explainBox = h('div', { id: 'explain' });

  // -- sections filled by refresh -----------------------------------------------------
  const history = h('tbody');
  const historyNote = h('p', { class: 'muted small' });
  const dagBox = h('div', { class: 'dag-wrap', id: 'dag' });
  const dagNote = h('p', { class: 'muted small' });
  const gantt = h('div', { class: 'gantt', id: 'gantt' });
  const logBox = h('div', { class: 'logs', id: 'logs', role: 'log', tabindex: 0, 'aria-label': 'Run logs' });
  const levelSelect = h('select', { id: 'log-level' }, LEVELS.map((l) => h('option', { value: l, selected: l === 'INFO' }, `${l} and up`)));
  const taskSelect = h('select', { id: 'log-task' }, h('option', { value: '' }, 'all tasks'),
    h('option', { value: '-' }, 'the flow only'),
    (meta ? meta.tasks : []).map((t) => h('option', { value: t.slug }, t.name === t.slug ? t.slug : `${t.name} (${t.slug})`)));
  const logCount = h('span', { class: 'muted small' });
  let dag = null;
  if (meta && meta.tasks.length) {
    const started = performance.now();
    dag = drawDag(meta.tasks, meta.edges || []);
    dagBox.append(dag.svg);
    dagBox.dataset.drawMs = String(Math.round(performance.now() - started));
  } else {
    dagBox.append(h('p', { class: 'muted', style: 'padding: 8px' }, meta ? 'This flow has no tasks.' : 'The flow version of this run is gone.'));
  }

  root.replaceChildren(
    h('p', { class: 'small' }, h('a', { href: '#/runs' }, '← Runs')),
    h('h1', { 'data-page': 'run' }, h('span', { id: 'run-name' }, run.run_name || shortId(run.id)), badge, actions),
    messageLine, actionError, explainBox,
    h('div', { class: 'grid2' },
      section('Run', facts),
      section('Parameters', paramsView(run.parameters))),
    h('div', { class: 'stack' },
      section('State history', h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'State'), h('th', {}, 'When'),
        h('th', {}, 'Message'), h('th', {}, 'Agent'))), history), historyNote),
      section('Task graph', dagBox, dagNote),
      section('Timeline', gantt),
      section('Logs', h('div', { class: 'row', style: 'margin-bottom:8px' },
        h('label', { for: 'log-level' }, 'Level'), levelSelect, h('label', { for: 'log-task' }, 'Task'), taskSelect,
        logCount), logBox),
      h('div', { class: 'grid2' },
        section('Environment', specView(meta && meta.environment, 'No environment: the default LocalEnvironment.'),
          meta && meta.executor ? h('p', {}, 'Executor: ', h('code', {}, meta.executor.kind || json(meta.executor))) : null),
        section('Storage', specView(meta && meta.storage, 'No storage recorded.'))),
      writable ? rerunForm() : null));

  // -- the facts, re-drawn on each refresh --------------------------------------------
  async function agentName(agentId) {
    if (!agentId) return null;
    if (!agents.has(agentId)) {
      try { for (const a of await api('/agents')) agents.set(a.id, a.name); } catch { /* shown by id */ }
    }
    return agents.get(agentId) || agentId;
  }

  async function drawFacts() {
    badge.replaceChildren(stateBadge(run.state));
    messageLine.textContent = run.state_message || '';
    const agent = await agentName(run.agent_id);
    const rows = [
      ['Flow', h('span', {}, h('a', { href: `#/flows/${run.flow_id}` }, run.flow_name),
        flow ? ` v${flow.version}` : '', ' in ', run.project_name)],
      ['Run id', h('code', {}, run.id)],
      ['Labels', run.labels.length ? labels(run.labels) : h('span', { class: 'muted' }, 'none')],
      ['Agent', agent ? h('span', { id: 'run-agent' }, agent) : h('span', { class: 'muted' }, 'none yet')],
      ['Scheduled for', fmtTime(run.scheduled_start_time)],
      ['Submitted', fmtTime(run.submitted_at)],
      ['Started', fmtTime(run.start_time)],
      ['Ended', fmtTime(run.end_time)],
      ['Duration', h('span', { id: 'run-duration' }, run.start_time ? duration(run.start_time, run.end_time) : '—')],
      ['Claims', `${run.attempt}${run.reschedule_count ? ` (rescheduled ${run.reschedule_count}×)` : ''}`],
    ];
    replaceKeepingFocus(facts, ...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    const buttons = [];
    if (writable && !FINISHED.has(run.state) && run.state !== 'Cancelling') {
      buttons.push(h('button', { type: 'button', class: 'danger', id: 'cancel', onclick: cancel }, 'Cancel run'));
    }
    if (run.state === 'Scheduled') buttons.push(h('a', { class: 'button', href: `#/runs/${run.id}/explain` }, 'Why is it waiting?'));
    replaceKeepingFocus(actions, ...buttons);
  }

  async function cancel(event) {
    event.target.disabled = true;
    actionError.textContent = '';
    try {
      run = await api(`/runs/${run.id}/cancel`, { method: 'POST' });
      await drawFacts();
      if (poller) poller.now();
    } catch (error) {
      actionError.textContent = `Could not cancel: ${error.message}`;
      event.target.disabled = false;
    }
  }

  // -- state history ---------------------------------------------------------------------
  let statesRoute = true;
  async function drawHistory() {
    let entries = null;
    if (statesRoute) {
      try {
        entries = await api(`/runs/${run.id}/states`);
      } catch (error) {
        if (!(error instanceof ApiError) || error.status !== 404) throw error;
        statesRoute = false; // this server has no state history: what the run itself says
      }
    }
    if (!entries) {
      entries = [{ state: 'Scheduled', timestamp: run.created }];
      if (run.submitted_at) entries.push({ state: 'Submitted', timestamp: run.submitted_at, agent_id: run.agent_id });
      if (run.start_time) entries.push({ state: 'Running', timestamp: run.start_time, agent_id: run.agent_id });
      if (!['Scheduled', 'Submitted', 'Running'].includes(run.state)) {
        entries.push({ state: run.state, timestamp: run.end_time || run.updated, message: run.state_message });
      }
      historyNote.textContent = 'From the run\u2019s own times: this server keeps no state history.';
    }
    const rows = [];
    for (const e of entries) {
      rows.push(h('tr', { class: 'history-row' }, h('td', {}, stateBadge(e.state)), h('td', {}, fmtTime(e.timestamp)),
        h('td', {}, e.message || ''), h('td', {}, (await agentName(e.agent_id)) || '')));
    }
    history.replaceChildren(...rows);
  }

  // -- task runs: graph colours and timeline ----------------------------------------------
  async function drawTasks() {
    const taskRuns = await api(`/runs/${run.id}/task_runs`);
    const states = new Map(taskRuns.map((t) => [t.task_slug, t.state]));
    if (dag) dag.setStates(states);
    const counts = {};
    for (const t of taskRuns) counts[t.state] = (counts[t.state] || 0) + 1;
    dagNote.textContent = meta ? `${meta.tasks.length} tasks; ` + (Object.entries(counts).map(([s, n]) => `${n} ${s}`).join(', ') || 'none started yet') : '';
    drawGantt(taskRuns);
  }

  function drawGantt(taskRuns) {
    const timed = taskRuns.filter((t) => parseTime(t.start_time) !== null)
      .sort((a, b) => parseTime(a.start_time) - parseTime(b.start_time));
    if (!timed.length) {
      gantt.replaceChildren(h('p', { class: 'muted' }, 'No task has started yet.'));
      return;
    }
    const now = Date.now();
    const start = parseTime(timed[0].start_time);
    const end = Math.max(...timed.map((t) => parseTime(t.end_time) ?? now), start + 1);
    const span = end - start;
    const names = new Map((meta ? meta.tasks : []).map((t) => [t.slug, t.name]));
    const rows = timed.slice(0, MAX_GANTT_ROWS).map((t) => {
      const s = parseTime(t.start_time);
      const e = parseTime(t.end_time) ?? now;
      const tries = t.attempts > 1 ? ` · ${t.attempts} attempts (${t.attempts - 1} ${t.attempts === 2 ? 'retry' : 'retries'})` : '';
      const label = `${names.get(t.task_slug) || t.task_slug}: ${t.state}, ${duration(t.start_time, t.end_time)}${tries}`;
      return h('div', { class: 'gantt-row', 'data-slug': t.task_slug },
        h('span', { class: 'gantt-name', title: label }, names.get(t.task_slug) || t.task_slug, t.attempts > 1 ? ` ×${t.attempts}` : ''),
        h('span', { class: 'gantt-track' }, h('span', {
          class: `gantt-bar state-${t.state}`, title: label, role: 'img', 'aria-label': label,
          style: `left:${((s - start) / span) * 100}%;width:${Math.max(0.3, ((e - s) / span) * 100)}%`,
        })));
    });
    gantt.replaceChildren(...[h('div', { class: 'gantt-axis' }, h('span', {}, fmtTime(new Date(start).toISOString())),
      h('span', {}, `${duration(new Date(start).toISOString(), new Date(end).toISOString())}`)), ...rows,
    timed.length > MAX_GANTT_ROWS ? h('p', { class: 'muted small' }, `and ${timed.length - MAX_GANTT_ROWS} more task runs`) : null,
    ].filter(Boolean));
  }

  // -- logs ----------------------------------------------------------------------------------
  const records = [];
  let logOffset = 0;
  async function readLogs() {
    for (;;) {
      const page = await api(`/runs/${run.id}/logs`, { query: { offset: logOffset, limit: 1000 } });
      if (!page.records.length) break;
      records.push(...page.records);
      if (records.length > MAX_LOGS) records.splice(0, records.length - MAX_LOGS);
      logOffset = page.next_offset;
      if (page.records.length < 1000) break;
    }
    drawLogs();
  }

  function drawLogs() {
    const min = LEVELS.indexOf(levelSelect.value);
    const task = taskSelect.value;
    const atBottom = logBox.scrollHeight - logBox.scrollTop - logBox.clientHeight < 30;
    const shown = records.filter((r) => LEVELS.indexOf(r.level) >= min
      && (task === '' || (task === '-' ? !r.task_slug : r.task_slug === task)));
    logBox.replaceChildren(...(shown.length ? shown.map((r) => h('div', { class: `log-line log-${r.level}` },
      h('span', { class: 'ts' }, fmtTime(r.timestamp).slice(11), ' '), h('span', { class: 'lvl' }, r.level),
      r.task_slug ? h('span', { class: 'task' }, `[${r.task_slug}] `) : '', r.message))
      : [h('div', { class: 'muted' }, records.length ? 'No log records match the filter.' : 'No log records yet.')]));
    logCount.textContent = `${shown.length} of ${records.length} records`;
    if (atBottom) logBox.scrollTop = logBox.scrollHeight;
  }
  levelSelect.addEventListener('change', drawLogs);
  taskSelect.addEventListener('change', drawLogs);

  // -- run again -------------------------------------------------------------------------------
  function rerunForm() {
    const declared = meta ? meta.parameters : Object.keys(run.parameters).map((name) => ({ name, default: null, required: false }));
    const fields = [];
    const formError = h('p', { class: 'field-error', role: 'alert', id: 'rerun-error' });
    const form = h('form', { id: 'rerun', novalidate: true });
    for (const p of declared) {
      const current = p.name in run.parameters ? run.parameters[p.name] : p.default;
      const expected = typeOf(p.default) ?? typeOf(current);
      const text = current === null || current === undefined ? '' : (expected === 'string' ? String(current) : JSON.stringify(current));
      const inputId = `param-${p.name}`;
      const error = h('span', { class: 'field-error', id: `${inputId}-error`, 'data-param': p.name });
      const input = h('input', { id: inputId, name: p.name, value: text, 'aria-describedby': `${inputId}-error`, size: 40 });
      fields.push({ p, expected, input, error });
      form.append(h('div', { class: 'field' },
        h('label', { for: inputId }, p.name, p.required ? ' (required)' : '',
          expected ? h('span', { class: 'muted' }, ` — ${TYPE_WORD[expected]}`) : ''),
        input, ' ', error));
    }
    if (!declared.length) form.append(h('p', { class: 'muted' }, 'This flow has no parameters.'));
    const submit = h('button', { type: 'submit', class: 'primary' }, 'Start a new run');
    form.append(h('div', { class: 'row' }, submit, h('span', { class: 'muted small' }, `of ${run.flow_name}${flow ? ` v${flow.version}` : ''}, same flow version`)), formError);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      formError.textContent = '';
      const parameters = {};
      let bad = false;
      for (const f of fields) {
        const parsed = parseField(f.input.value, f.expected, f.p.required);
        f.error.textContent = parsed.error ? `${f.p.name} ${parsed.error}` : '';
        f.input.setAttribute('aria-invalid', parsed.error ? 'true' : 'false');
        if (parsed.error) bad = true;
        else if (!parsed.omit) parameters[f.p.name] = parsed.value;
      }
      if (bad) return;
      submit.disabled = true;
      try {
        const created = await api('/runs', { method: 'POST', body: { flow_id: run.flow_id, parameters } });
        location.hash = `#/runs/${created.id}`;
      } catch (error) {
        // the server names the parameter it refuses ('name'): put its message next to that field
        const named = fields.filter((f) => error.message.includes(`'${f.p.name}'`));
        for (const f of named) { f.error.textContent = error.message; f.input.setAttribute('aria-invalid', 'true'); }
        if (!named.length) formError.textContent = error.message;
      } finally {
        submit.disabled = false;
      }
    });
    return section('Run again', h('p', { class: 'muted small' }, 'Values are JSON (text is taken as is where the default is text).'), form);
  }

  // -- live updates ------------------------------------------------------------------------------
  let last = '';
  async function refresh(first) {
    if (!first) run = await api(`/runs/${run.id}`);
    if (active !== mine) return;
    const stamp = `${run.state}|${run.updated}`;
    await Promise.all([drawFacts(), drawTasks(), readLogs(), stamp !== last || first ? drawHistory() : null]);
    last = stamp;
    if (first && run.state === 'Scheduled' && (await hasPage('explain.js'))) {
      try {
        const explain = await import('./explain.js');
        if (typeof explain.renderExplain === 'function') await explain.renderExplain(explainBox, run.id);
      } catch (error) {
        console.warn('explain', error);
      }
    }
    if (FINISHED.has(run.state) && poller) { poller.stop(); poller = null; }
  }

  await refresh(true);
  if (active === mine && !FINISHED.has(run.state)) poller = poll(() => refresh(false), POLL_MS, false);
}

function paramsView(parameters) {
  const entries = Object.entries(parameters || {});
  if (!entries.length) return h('p', { class: 'muted' }, 'No parameters given (defaults apply).');
  return h('table', { id: 'parameters' }, h('tbody', {}, entries.map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k),
    h('td', {}, h('code', {}, JSON.stringify(v)))))));
}

function specView(spec, empty) {
  if (!spec) return h('p', { class: 'muted' }, empty);
  const { kind, ...rest } = spec;
  const simple = Object.entries(rest).filter(([, v]) => v === null || typeof v !== 'object' || (Array.isArray(v) && v.every((x) => typeof x !== 'object')));
  const nested = Object.entries(rest).filter(([k]) => !simple.some(([s]) => s === k));
  return h('div', {},
    h('dl', { class: 'facts' }, h('dt', {}, 'Kind'), h('dd', {}, h('strong', {}, kind || '?')),
      simple.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, h('code', {}, Array.isArray(v) ? v.join(', ') : String(v)))])),
    nested.length ? h('details', {}, h('summary', {}, 'More'), h('pre', {}, json(Object.fromEntries(nested)))) : null);
}
