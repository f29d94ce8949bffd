// The API client of the web UI: fetch over /api/v1, the token, the "server is not answering" banner.
// Pages import `api` (and `canWrite` before showing a button that writes); nothing else talks to the server.

export const API = '/api/v1';
const TOKEN_KEY = 'headwater.token';
const PROBE_MS = 1000;

/** An answer other than 2xx: `status` (0 when the server did not answer) and the server's `detail` as text. */
export class ApiError extends Error {
  constructor(status, message, detail = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.detail = detail;
  }
}

export function getToken() {
  try { return localStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}

export function setToken(token) {
  if (token) localStorage.setItem(TOKEN_KEY, token); else localStorage.removeItem(TOKEN_KEY);
  selfPromise = null;
  window.dispatchEvent(new CustomEvent('hw:token'));
}

/** The server's `detail` as one readable line (a 422's list of field errors joined). */
export function detailText(detail) {
  if (detail == null) return '';
  if (typeof detail === 'string') return detail;
  if (Array.isArray(detail)) {
    return detail.map((e) => {
      const loc = (e.loc || []).filter((p) => p !== 'body' && p !== 'query').join('.');
      return loc ? `${loc}: ${e.msg}` : e.msg;
    }).join('; ');
  }
  return JSON.stringify(detail);
}

function url(path, query) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query || {})) {
    const values = Array.isArray(value) ? value : [value];
    for (const v of values) if (v !== undefined && v !== null && v !== '') params.append(key, String(v));
  }
  const qs = params.toString();
  return API + path + (qs ? `?${qs}` : '');
}

let lastAnswer = Date.now();

/**
 * Call the API. Returns the parsed JSON (null for 204). Throws ApiError: status 0 when the
 * server did not answer (the banner then shows until it answers again), 401 after asking
 * for a token, else the server's status with its `detail` as the message.
 */
export async function api(path, { method = 'GET', query, body, signal } = {}) {
  const headers = { Accept: 'application/json' };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(url(path, query), {
      method, headers, signal, cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    if (error && error.name === 'AbortError') throw error;
    serverDown();
    throw new ApiError(0, 'the server is not answering');
  }
  // a proxy in front of a stopped server answers 502/504: that is the server not answering too
  if (response.status === 502 || response.status === 504) {
    serverDown();
    throw new ApiError(0, 'the server is not answering');
  }
  serverUp();
  if (response.status === 204) return null;
  let payload = null;
  try { payload = await response.json(); } catch { payload = null; }
  if (response.ok) return payload;
  const detail = payload && 'detail' in payload ? payload.detail : null;
  const text = detailText(detail) || `${response.status} ${response.statusText}`;
  if (response.status === 401) askForToken(text);
  throw new ApiError(response.status, text, detail);
}

// -- what the token may do ------------------------------------------------------------

let selfPromise = null;

/** `GET /whoami`, cached until the token changes: {auth, token, can_write}. */
export function whoami() {
  if (!selfPromise) {
    selfPromise = api('/whoami').catch((error) => { selfPromise = null; throw error; });
  }
  return selfPromise;
}

/** Whether the caller may write (create, cancel runs); false when that can't be known. */
export async function canWrite() {
  try { return Boolean((await whoami()).can_write); } catch { return false; }
}

// -- the token prompt -----------------------------------------------------------------

let asking = false;

function askForToken(reason) {
  const dialog = document.getElementById('token-dialog');
  if (!dialog || asking) return;
  asking = true;
  document.getElementById('token-reason').textContent = reason;
  const input = document.getElementById('token-input');
  input.value = '';
  dialog.addEventListener('close', () => {
    asking = false;
    const value = input.value.trim();
    if (value) setToken(value);
  }, { once: true });
  if (typeof dialog.showModal === 'function') dialog.showModal(); else dialog.setAttribute('open', '');
  input.focus();
}

// -- the connection banner ------------------------------------------------------------

let probing = null;

function banner() { return document.getElementById('banner'); }

function serverDown() {
  const el = banner();
  if (el) {
    el.textContent = 'The server is not answering — retrying…';
    el.hidden = false;
  }
  if (probing) return;
  probing = setInterval(async () => {
    try {
      const answer = await fetch(`${API}/health`, { cache: 'no-store' });
      if (answer.status < 500 || answer.status === 503) serverUp();
    } catch { /* still down */ }
  }, PROBE_MS);
}

function serverUp() {
  lastAnswer = Date.now();
  if (!probing) return;
  clearInterval(probing);
  probing = null;
  const el = banner();
  if (el) el.hidden = true;
  window.dispatchEvent(new CustomEvent('hw:reconnected'));
}

/** Check the server now and then when no page has asked it anything lately (pages without live updates). */
export function watchServer(everyMs = 5000) {
  setInterval(() => {
    if (probing || Date.now() - lastAnswer < everyMs) return;
    api('/health').catch(() => {});
  }, everyMs);
}
