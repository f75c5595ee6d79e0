// @ts-check
/**
 * The page's only door to the server: same-origin fetches of /console/api/*
 * (src/console/api.ts is the contract). Keeps the signed-in Me in memory only
 * (never in storage) and sends its csrf in `x-console-csrf` on every POST and
 * DELETE. Failures come back as ApiError with the HTTP status (0: the network
 * failed) and, for 429, the wait in seconds; a 401 on any route but sign-in
 * calls the handler set with onSignedOut (the session ended).
 */

/** @typedef {{ user: string, role: 'admin' | 'read', csrf: string, expiresAt: string }} Me */

export const API = '/console/api';

export class ApiError extends Error {
  /** @param {number} status @param {string} message @param {number | null} [retryAfterS] */
  constructor(status, message, retryAfterS = null) {
    super(message);
    this.status = status;
    this.retryAfterS = retryAfterS;
  }
}

/** @type {Me | null} */
let me = null;
/** @type {() => void} */
let signedOutHandler = () => {};

export function currentMe() {
  return me;
}

/** @param {() => void} fn */
export function onSignedOut(fn) {
  signedOutHandler = fn;
}

/**
 * @param {string} path under /console/api, with its query
 * @param {{ method?: 'GET' | 'POST' | 'DELETE', body?: unknown, signal?: AbortSignal }} [opts]
 * @returns {Promise<Response>}
 */
async function request(path, opts = {}) {
  const method = opts.method ?? 'GET';
  /** @type {Record<string, string>} */
  const headers = { accept: 'application/json' };
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && me) headers['x-console-csrf'] = me.csrf;
  let res;
  try {
    res = await fetch(API + path, {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      credentials: 'same-origin',
      cache: 'no-store',
      signal: opts.signal,
    });
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err;
    throw new ApiError(0, 'The console server could not be reached. Check the connection and try again.');
  }
  if (res.ok) return res;
  if (res.status === 401 && path !== '/session') {
    me = null;
    signedOutHandler();
    throw new ApiError(401, 'Your session has ended. Sign in again.');
  }
  if (res.status === 429) {
    const wait = Number(res.headers.get('retry-after'));
    const s = Number.isFinite(wait) && wait > 0 ? Math.ceil(wait) : null;
    throw new ApiError(429, s ? `Too many attempts. Try again in ${s} s.` : 'Too many attempts. Try again later.', s);
  }
  if (res.status === 401) throw new ApiError(401, 'That token is not valid.');
  if (res.status === 403) throw new ApiError(403, 'The server refused this request (403). Reload the page and try again.');
  if (res.status === 404) throw new ApiError(404, 'Not found.');
  let detail = '';
  try {
    const body = await res.json();
    if (body && typeof body.error === 'string') detail = `: ${body.error}`;
  } catch {
    /* not JSON: the status says enough */
  }
  throw new ApiError(res.status, `The server answered ${res.status}${detail}.`);
}

/**
 * GET a JSON answer.
 * @template T
 * @param {string} path
 * @param {AbortSignal} [signal]
 * @returns {Promise<T>}
 */
export async function getJson(path, signal) {
  const res = await request(path, { signal });
  return /** @type {Promise<T>} */ (res.json());
}

/** The current session, or null when there is none. @returns {Promise<Me | null>} */
export async function loadMe() {
  try {
    me = await getJson('/me');
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return null;
    throw err;
  }
  return me;
}

/** @param {string} token @returns {Promise<Me>} */
export async function signIn(token) {
  const res = await request('/session', { method: 'POST', body: { token } });
  me = /** @type {Me} */ (await res.json());
  return me;
}

export async function signOut() {
  try {
    await request('/session', { method: 'DELETE' });
  } finally {
    me = null;
  }
}

/** The recording's WAV bytes. @param {string} callSid @param {AbortSignal} [signal] */
export async function fetchRecording(callSid, signal) {
  const res = await request(`/calls/${encodeURIComponent(callSid)}/recording`, { signal });
  return res.arrayBuffer();
}
