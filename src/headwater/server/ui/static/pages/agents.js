// The Agents page (#/agents): every agent with its kind, labels, when it was last seen, its health
// and the runs it holds. Health is the server's: an agent is healthy when it was seen within the
// server's agent_seen_window setting (the `live` field of GET /agents), stale otherwise (docs/ui.md).

import { api } from '../api.js';
import { fmtTime, h, labels, poll, replaceKeepingFocus, shortId, stateBadge } from '../util.js';
import { useCss } from './flows.js';

const HELD = ['Submitted', 'Running', 'Cancelling'];
let poller = null;

export function stop() {
  if (poller) poller.stop();
  poller = null;
}

function ago(value) {
  const seconds = Math.max(0, (Date.now() - Date.parse(value)) / 1000);
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}

export async function render(root) {
  useCss('more');
  document.title = 'Agents · headwater';
  const body = h('tbody');
  const count = h('span', { class: 'muted small' });
  root.replaceChildren(
    h('h1', {}, 'Agents', count),
    h('section', { class: 'panel', 'data-page': 'agents' },
      h('table', { class: 'agents' },
        h('thead', {}, h('tr', {}, ['Agent', 'Kind', 'Labels', 'Last seen', 'Health', 'Runs it holds']
          .map((t) => h('th', { scope: 'col' }, t)))),
        body),
      h('p', { class: 'muted small' }, 'Healthy: seen by the server within its agent window '
        + '(setting server.agent_seen_window). An agent is seen when it registers, claims or sends its heartbeat.')));

  async function refresh() {
    const agents = await api('/agents');
    const held = await Promise.all(agents.map((a) => api('/runs', {
      query: { agent_id: a.id, state: HELD, limit: 20 } })));
    const rows = agents.map((a, i) => h('tr', { 'data-agent': a.name },
      h('td', {}, h('strong', {}, a.name), h('div', { class: 'muted small mono' }, shortId(a.id))),
      h('td', {}, a.kind),
      h('td', {}, a.labels.length ? labels(a.labels) : h('span', { class: 'muted' }, 'none (takes unlabelled runs)')),
      h('td', { title: fmtTime(a.last_seen) }, ago(a.last_seen), h('div', { class: 'muted small' }, fmtTime(a.last_seen))),
      h('td', {}, h('span', { class: `health health-${a.live ? 'healthy' : 'stale'}` }, a.live ? 'healthy' : 'stale')),
      h('td', {}, held[i].flow_runs.length
        ? h('ul', { class: 'held' }, held[i].flow_runs.map((r) => h('li', {}, stateBadge(r.state), ' ',
          h('a', { href: `#/runs/${r.id}` }, r.run_name), h('span', { class: 'muted small' }, ` (${r.flow_name})`))),
        held[i].total > held[i].flow_runs.length ? h('li', { class: 'muted' }, `… ${held[i].total}${held[i].total_exact === false ? '+' : ''} in all`) : null)
        : h('span', { class: 'muted' }, 'none'))));
    if (!rows.length) {
      rows.push(h('tr', {}, h('td', { colspan: 6, class: 'muted empty' },
        'No agent has registered. Start one with `headwater agent local start -l LABEL`.')));
    }
    replaceKeepingFocus(body, ...rows);
    count.textContent = `${agents.length} agent(s), ${agents.filter((a) => a.live).length} healthy`;
  }
  await refresh();
  poller = poll(refresh, 5000, false);
}
