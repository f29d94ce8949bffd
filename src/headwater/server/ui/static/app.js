// The app shell: a hash router over page modules, the nav bar, the token line.
// A page is an ES module in pages/ exporting render(root, params) and, for live updates, stop().

import { ApiError, canWrite, setToken, watchServer, whoami } from './api.js';
import { errorNotice, h, hasPage, renderNotFound } from './util.js';

/**
 * Routes, first match wins: a path pattern (hash without '#'), the page module, the nav item it lights.
 * Captured groups become params.id. Add a page with one line here.
 */
export const ROUTES = [
  { path: /^\/runs$/, page: './pages/runs.js', nav: 'runs' },
  { path: /^\/runs\/([^/]+)\/explain$/, page: './pages/explain.js', nav: 'runs' },
  { path: /^\/runs\/([^/]+)$/, page: './pages/run.js', nav: 'runs' },
  { path: /^\/flows$/, page: './pages/flows.js', nav: 'flows' },
  { path: /^\/flows\/([^/]+)$/, page: './pages/flows.js', nav: 'flows' },
  { path: /^\/agents$/, page: './pages/agents.js', nav: 'agents' },
  { path: /^\/projects$/, page: './pages/projects.js', nav: 'projects' },
];

const root = () => document.getElementById('main');
let current = null; // the page module shown, for stop()
let generation = 0; // a newer navigation makes an older render's result void

/** The route of a hash like "#/runs/abc?state=Running": {route, params} or null. */
export function match(hash) {
  const [rawPath, search = ''] = (hash || '').replace(/^#/, '').split('?');
  let path;
  try { path = decodeURIComponent(rawPath) || '/runs'; } catch { path = rawPath; }
  const clean = path.length > 1 ? path.replace(/\/+$/, '') : path;
  for (const route of ROUTES) {
    const m = route.path.exec(clean);
    if (m) return { route, params: { id: m[1], query: new URLSearchParams(search), path: clean } };
  }
  return null;
}

function lightNav(nav) {
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
}

async function navigate(focus) {
  const mine = ++generation;
  if (current && typeof current.stop === 'function') {
    try { current.stop(); } catch (error) { console.warn(error); }
  }
  current = null;
  const el = root();
  if (!location.hash || location.hash === '#' || location.hash === '#/') {
    history.replaceState(null, '', '#/runs');
  }
  const found = match(location.hash);
  if (!found) {
    lightNav(null);
    renderNotFound(el, `There is no page at ${location.hash}.`);
    return;
  }
  lightNav(found.route.nav);
  let page;
  try {
    if (!(await hasPage(found.route.page.replace('./pages/', '')))) throw new Error('no such page module');
    page = await import(found.route.page);
  } catch (error) {
    if (mine !== generation) return;
    document.title = 'Not available · headwater';
    el.replaceChildren(h('section', { class: 'panel', 'data-page': 'unavailable' },
      h('h1', {}, 'This page is not available yet'),
      h('p', { class: 'muted' }, `${location.hash} needs ${found.route.page.replace('./', '')}, which this `
        + 'server does not have. The runs page and the CLI show the same data.'),
      h('p', {}, h('a', { href: '#/runs' }, 'Go to the runs'))));
    return;
  }
  if (mine !== generation) return;
  current = page;
  el.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  try {
    await page.render(el, found.params);
  } catch (error) {
    if (mine !== generation) return;
    if (error instanceof ApiError && error.status === 404) {
      renderNotFound(el, error.message);
    } else if (error instanceof ApiError) {
      el.replaceChildren(errorNotice(error.status === 0 ? 'The server is not answering; this page loads when '
        + 'it answers again.' : error.message));
      if (error.status === 0) window.addEventListener('hw:reconnected', () => navigate(false), { once: true });
    } else {
      console.error(error);
      el.replaceChildren(errorNotice(`This page failed: ${error}`));
    }
  }
  if (focus && mine === generation) el.focus({ preventScroll: true });
}

async function showWho() {
  const el = document.getElementById('whoami');
  try {
    const me = await whoami();
    if (!me.auth) { el.replaceChildren(); return; }
    const name = me.token ? `${me.token.name} (${me.token.scope})` : 'token';
    el.replaceChildren(`Signed in with ${name}`, (await canWrite()) ? '' : ' · read-only',
      h('button', { type: 'button', onclick: () => setToken('') }, 'Forget token'));
  } catch {
    el.replaceChildren();
  }
}

// "Skip to content" links to #main, which the router would take for a route: it moves the focus instead.
document.querySelector('a.skip').addEventListener('click', (event) => { event.preventDefault(); root().focus(); });
window.addEventListener('hashchange', () => navigate(true));
window.addEventListener('hw:token', () => { showWho(); navigate(false); });
watchServer();
navigate(false);
showWho();
