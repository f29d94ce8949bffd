// Why a run waits (#/runs/<id>/explain, and a panel of the Run page through renderExplain):
// GET /runs/{id}/explain read plainly — which agents exist, their labels, which of the run's labels
// each lacks, when each was last seen. Explain lists the live agents (seen within the server's
// agent window); the agents not seen lately are added from GET /agents, marked stale, their missing
// labels worked out with the same rule (a run's labels must all be the agent's; an unlabelled
// run only goes to an agent without labels).

import { api } from '../api.js';
import { fmtTime, h, labels, shortId, stateBadge } from '../util.js';
import { useCss } from './flows.js';

/** The label rule of the server (server/models/flow_runs.can_take), for agents explain leaves out. */
export function verdict(runLabels, agentLabels) {
  const missing = runLabels.filter((l) => !agentLabels.includes(l)).sort();
  if (missing.length) return { can: false, missing, reason: `the agent lacks label(s) ${missing.join(', ')}` };
  if (!runLabels.length && agentLabels.length) {
    return { can: false, missing: [], reason: 'the run has no labels, and an agent with labels only takes '
      + 'labelled runs' };
  }
  return { can: true, missing: [], reason: 'can take it' };
}

/** The explain panel for run `runId` into `root` (a section of the Run page, or the whole page). */
export async function renderExplain(root, runId) {
  useCss('more');
  const [why, agents] = await Promise.all([api(`/runs/${encodeURIComponent(runId)}/explain`), api('/agents')]);
  const live = new Set(why.agents.map((a) => a.id));
  const rows = why.agents.map((a) => ({ ...a, live: true, missing: a.missing_labels, can: a.can_run }));
  for (const a of agents) {
    if (live.has(a.id)) continue;
    const v = verdict(why.labels, a.labels);
    rows.push({ ...a, live: false, missing: v.missing, can: false,
      reason: `not seen lately (stale), so it takes nothing now${v.can ? '' : `; and ${v.reason}`}` });
  }
  const waiting = why.state === 'Scheduled';
  root.replaceChildren(h('section', { class: 'panel', 'data-panel': 'explain' },
    h('h2', {}, waiting ? 'Why is this run waiting?' : 'Which agents could take this run'),
    h('p', { class: `explain-message ${why.matched ? '' : 'error'}`, 'data-matched': String(why.matched) },
      why.message),
    h('p', {}, 'The run\'s labels: ', why.labels.length ? labels(why.labels)
      : h('span', { class: 'muted' }, 'none (only an agent without labels takes it)')),
    h('table', { class: 'explain' },
      h('thead', {}, h('tr', {}, ['Agent', 'Kind', 'Its labels', 'Missing', 'Last seen', 'Can take it?']
        .map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows.length ? rows.map((a) => h('tr', { 'data-agent': a.name },
        h('td', {}, a.name),
        h('td', {}, a.kind),
        h('td', {}, a.labels.length ? labels(a.labels) : h('span', { class: 'muted' }, 'none')),
        h('td', {}, a.missing.length ? a.missing.map((l) => h('span', { class: 'label missing' }, l)) : '—'),
        h('td', {}, fmtTime(a.last_seen), a.live ? '' : h('span', { class: 'health health-stale' }, ' stale')),
        h('td', {}, h('span', { class: a.can ? 'verdict-yes' : 'verdict-no' }, a.can ? 'yes' : 'no'),
          h('div', { class: 'muted small' }, a.reason))))
        : [h('tr', {}, h('td', { colspan: 6, class: 'muted' },
          'No agent has ever registered with this server. Start one whose labels include the run\'s: '
          + `headwater agent local start ${why.labels.map((l) => `-l ${l}`).join(' ')}`.trim()))]))));
}

export async function render(root, params) {
  useCss('more');
  const run = await api(`/runs/${encodeURIComponent(params.id)}`);
  document.title = `Why ${run.run_name} waits · headwater`;
  const panel = h('div');
  root.replaceChildren(
    h('p', { class: 'small' }, h('a', { href: `#/runs/${run.id}` }, `← Run ${run.run_name}`)),
    h('h1', {}, run.run_name, stateBadge(run.state), h('span', { class: 'muted small mono' }, shortId(run.id))),
    panel);
  await renderExplain(panel, run.id);
}
