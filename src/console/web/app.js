// @ts-check
/**
 * The console page: signs in, then routes on the URL hash —
 *   #/live              live calls and the last hour's figures (default)
 *   #/calls?<filters>   the call list (filters, sort, dir, page in the hash so a link can be shared)
 *   #/calls/<CallSid>   one call
 * Each view renders into <main> and returns a function that stops it (timers,
 * the live feed, fetches). Nothing of a call goes to the URL (beyond the
 * CallSid and filters), to storage or to the console.
 */
import { ApiError, currentMe, loadMe, onSignedOut, signIn, signOut } from './api.js';
import { h, replace } from './dom.js';
import { showLive } from './live.js';
import { showCalls } from './calls.js';
import { showCall } from './call.js';

const main = /** @type {HTMLElement} */ (document.getElementById('main'));
const top = /** @type {HTMLElement} */ (document.getElementById('top'));
const alertBox = /** @type {HTMLElement} */ (document.getElementById('alert'));

/** @type {() => void} */
let stopView = () => {};

/** Show a problem to the viewer (never to the console). @param {string} message */
export function showError(message) {
  replace(alertBox, message ? h('p', null, message) : null);
}

function renderHeader() {
  const me = currentMe();
  if (!me) {
    top.hidden = true;
    top.replaceChildren();
    return;
  }
  const route = location.hash.startsWith('#/calls') ? 'calls' : 'live';
  top.hidden = false;
  replace(top,
    h('span', { class: 'brand' }, 'callbridge'),
    h('nav', { 'aria-label': 'Sections' },
      h('a', { href: '#/live', 'aria-current': route === 'live' ? 'page' : null }, 'Live'),
      h('a', { href: '#/calls', 'aria-current': route === 'calls' ? 'page' : null }, 'Calls')),
    h('span', { class: 'who' },
      h('span', { class: 'user' }, me.user), ' ',
      h('span', { class: `role role-${me.role}` }, me.role)),
    h('button', { type: 'button', class: 'signout', onclick: doSignOut }, 'Sign out'));
}

async function doSignOut() {
  try {
    await signOut();
  } catch (err) {
    showError(err instanceof Error ? err.message : 'Signing out failed.');
    return;
  }
  showSignIn();
}

function showSignIn() {
  stopView();
  stopView = () => {};
  renderHeader();
  const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'current-password', required: true, spellcheck: 'false' });
  const message = h('p', { class: 'form-error', id: 'signin-error', role: 'alert' });
  const button = h('button', { type: 'submit' }, 'Sign in');
  const form = h('form', { class: 'signin', 'aria-describedby': 'signin-error' },
    h('h1', null, 'callbridge console'),
    h('label', { for: 'token' }, 'Access token'),
    input, button, message);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const token = /** @type {HTMLInputElement} */ (input).value.trim();
    if (!token) return;
    button.setAttribute('disabled', '');
    message.textContent = '';
    try {
      await signIn(token);
      /** @type {HTMLInputElement} */ (input).value = '';
      route();
    } catch (err) {
      message.textContent = err instanceof ApiError ? (err.status === 401 ? 'Wrong token.' : err.message) : 'Signing in failed.';
      const wait = err instanceof ApiError && err.status === 429 ? err.retryAfterS : null;
      if (wait) setTimeout(() => button.removeAttribute('disabled'), wait * 1000);
      else button.removeAttribute('disabled');
      /** @type {HTMLInputElement} */ (input).focus();
    }
  });
  replace(main, form);
  /** @type {HTMLInputElement} */ (input).focus();
}

function route() {
  stopView();
  stopView = () => {};
  showError('');
  if (!currentMe()) {
    showSignIn();
    return;
  }
  renderHeader();
  const hash = location.hash || '#/live';
  const one = /^#\/calls\/([A-Za-z0-9]+)$/.exec(hash);
  if (one) stopView = showCall(main, one[1], showError);
  else if (hash === '#/calls' || hash.startsWith('#/calls?')) stopView = showCalls(main, new URLSearchParams(hash.slice('#/calls?'.length)), showError);
  else stopView = showLive(main, showError);
}

onSignedOut(() => showSignIn());
window.addEventListener('hashchange', () => {
  if (currentMe()) route();
});

loadMe().then(route, (err) => {
  replace(main, h('p', null, err instanceof Error ? err.message : 'The console could not start.'));
});
