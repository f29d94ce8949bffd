// Small helpers every page uses: building DOM, states, times, polling. No framework.

/**
 * An element: h('a', {href: '#/runs', class: 'x', onclick: fn}, 'text', child...).
 * Strings become text nodes (never HTML), null/false children are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** A state as colour and word: <span class="state state-Running">Running</span>. */
export function stateBadge(state) {
  return h('span', { class: `state state-${state}` }, state);
}

export const FLOW_RUN_STATES = ['Scheduled', 'Submitted', 'Running', 'Cancelling', 'Success', 'Failed', 'Cancelled'];
export const FINISHED = new Set(['Success', 'Failed', 'Cancelled']);

export function parseTime(value) {
  if (!value) return null;
  const t = Date.parse(value);
  return Number.isNaN(t) ? null : t;
}

/** A timestamp in the browser's time zone, e.g. 2026-03-01 14:02:09. */
export function fmtTime(value) {
  const t = parseTime(value);
  if (t === null) return '—';
  const d = new Date(t);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} `
    + `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Seconds as "850 ms", "12.3 s", "4 m 05 s", "2 h 03 m". */
export function fmtSeconds(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return '—';
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} m ${String(Math.floor(seconds % 60)).padStart(2, '0')} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} m`;
}

/** A run's or task run's duration: end − start, or now − start while it runs. */
export function duration(start, end) {
  const s = parseTime(start);
  if (s === null) return '—';
  const e = parseTime(end) ?? Date.now();
  return fmtSeconds(Math.max(0, (e - s) / 1000));
}

export function shortId(id) {
  return id ? String(id).slice(0, 8) : '';
}

export function labels(list) {
  return (list || []).map((l) => h('span', { class: 'label' }, l));
}

/**
 * Call `fn` now and every `ms` after each call finishes (so calls never overlap); `stop()` ends it.
 * A failed call is retried on the next tick (api.js shows the banner when the server is down).
 */
export function poll(fn, ms = 2000, now = true) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    try { await fn(); } catch (error) { if (error && error.name !== 'ApiError') console.warn(error); }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  if (now) tick(); else timer = setTimeout(tick, ms);
  const again = () => { if (!stopped) { clearTimeout(timer); tick(); } };
  window.addEventListener('hw:reconnected', again);
  return {
    stop() { stopped = true; clearTimeout(timer); window.removeEventListener('hw:reconnected', again); },
    now: again,
  };
}

/**
 * Replace a container's children, keeping the keyboard focus on the same control when a live
 * update redraws it: the new element with the focused one's id, or else its tag and href (a
 * link) or text (a button). Without this, a poll that redraws a table takes the focus away
 * from the link a keyboard user is on, every two seconds.
 */
export function replaceKeepingFocus(container, ...children) {
  const focused = document.activeElement;
  const inside = focused && focused !== container && container.contains(focused);
  const same = inside ? sameControl(focused) : null;
  container.replaceChildren(...children);
  if (!same) return;
  const again = [...container.querySelectorAll(focused.tagName)].find(same);
  if (again) again.focus({ preventScroll: true });
}

function sameControl(el) {
  if (el.id) return (other) => other.id === el.id;
  const href = el.getAttribute('href');
  if (href) return (other) => other.getAttribute('href') === href;
  const text = el.textContent;
  return (other) => other.textContent === text;
}

/** A real "not found" page: a heading, what was not found, and a way back. */
export function renderNotFound(root, what) {
  document.title = 'Not found · headwater';
  root.replaceChildren(h('section', { class: 'notfound', 'data-page': 'not-found' },
    h('div', { class: 'code' }, '404'),
    h('h1', { style: 'justify-content:center' }, 'Not found'),
    h('p', {}, what),
    h('p', {}, h('a', { href: '#/runs' }, 'Go to the runs'))));
}

/** An error notice with the server's message. */
let pageList = null;

/** Whether this server has the page module pages/<name> (e.g. 'explain.js'); asks the server once. */
export async function hasPage(name) {
  if (!pageList) {
    pageList = fetch('/ui/pages.json', { cache: 'no-store' }).then((r) => (r.ok ? r.json() : []))
      .catch(() => { pageList = null; return []; });
  }
  return (await pageList).includes(name);
}

export function errorNotice(message) {
  return h('p', { class: 'notice error', role: 'alert' }, message);
}
