// @ts-check
/**
 * The live view: the calls in progress from the SSE feed /console/api/live
 * (event `live`, a LiveView each second; EventSource reconnects by itself),
 * their durations ticking between events, the counts, and the last hour's
 * chart from /console/api/stats, refreshed every 30 s.
 */
import { API, ApiError, getJson, loadMe } from './api.js';
import { h, replace } from './dom.js';
import { duration, millis, text, timeEl } from './format.js';
import { statsChart } from './chart.js';

const STATS_REFRESH_MS = 30_000;
const TICK_MS = 1_000;

/**
 * @param {HTMLElement} main
 * @param {(message: string) => void} showError
 * @returns {() => void} stops the view
 */
export function showLive(main, showError) {
  const counts = h('p', { class: 'counts', 'aria-live': 'polite' }, 'Connecting to the live feed…');
  const feedState = h('p', { class: 'muted feed-state' });
  const tbody = h('tbody');
  const table = h('table', { class: 'data live-calls' },
    h('caption', null, 'Calls in progress'),
    h('thead', null, h('tr', null,
      ['Call', 'Caller', 'Agent', 'Started', 'Duration', 'Speaking', 'Last turn', 'Model', 'Instance'].map((t) => h('th', { scope: 'col' }, t)))),
    tbody);
  const chartBox = h('div', { class: 'chart', role: 'img', 'aria-label': 'Calls started and failed, and turn latency p50 and p95, over the last hour' });
  const statsNote = h('p', { class: 'muted' });
  replace(main,
    h('h1', null, 'Live'),
    counts, feedState,
    h('div', { class: 'table-wrap' }, table),
    h('section', { 'aria-labelledby': 'hour-h' }, h('h2', { id: 'hour-h' }, 'The last hour'), statsNote, chartBox));

  /** @type {{ el: HTMLElement, durationMs: number, receivedAt: number }[]} */
  let ticking = [];

  /** @param {any} view LiveView */
  function render(view) {
    const now = performance.now();
    ticking = [];
    const rows = view.calls.map((/** @type {any} */ c) => {
      const dur = h('td', { class: 'num' }, duration(c.durationMs));
      ticking.push({ el: dur, durationMs: c.durationMs, receivedAt: now });
      return h('tr', { 'data-call': c.callSid },
        h('td', null, h('a', { href: `#/calls/${encodeURIComponent(c.callSid)}` }, c.callSid)),
        h('td', null, text(c.from)),
        h('td', null, text(c.agent)),
        h('td', null, timeEl(c.startedAt, 'time')),
        dur,
        h('td', null, c.local ? speaking(c.speaking) : h('span', { class: 'muted' }, 'unknown')),
        h('td', { class: 'num' }, millis(c.lastTurnMs)),
        h('td', null, c.local ? h('span', { class: `model model-${c.model}` }, c.model) : h('span', { class: 'muted' }, 'unknown')),
        h('td', null, c.instance, c.local ? null : h('span', { class: 'muted' }, ' (other)')));
    });
    if (rows.length === 0) rows.push(h('tr', null, h('td', { colspan: '9', class: 'muted' }, 'No calls in progress.')));
    replace(tbody, rows);
    const n = view.calls.length;
    const model = view.model?.reachable === false
      ? `model unreachable${view.model.lastError ? ` (${view.model.lastError})` : ''}`
      : view.model?.reachable === true ? 'model reachable' : 'model not checked yet';
    replace(counts, `${n} call${n === 1 ? '' : 's'} in progress on ${view.instance} — ${model}. Updated `, timeEl(view.at, 'full'), '.');
    counts.classList.toggle('warn', view.model?.reachable === false);
  }

  const source = new EventSource(`${API}/live`);
  let stopped = false;
  source.addEventListener('live', (ev) => {
    feedState.textContent = '';
    try {
      render(JSON.parse(/** @type {MessageEvent} */ (ev).data));
    } catch {
      feedState.textContent = 'The live feed sent something this page cannot read.';
    }
  });
  source.addEventListener('error', () => {
    if (stopped) return;
    if (source.readyState === EventSource.CLOSED) {
      feedState.textContent = 'The live feed closed.';
      // A closed feed is often an ended session: asking shows the sign-in form if so (api.js onSignedOut).
      loadMe().catch(() => {});
    } else {
      feedState.textContent = 'The live feed was interrupted; reconnecting…';
    }
  });

  const tick = setInterval(() => {
    const now = performance.now();
    for (const t of ticking) t.el.textContent = duration(t.durationMs + (now - t.receivedAt));
  }, TICK_MS);

  const chart = statsChart(chartBox);
  const aborter = new AbortController();
  async function refreshStats() {
    try {
      const stats = /** @type {any} */ (await getJson('/stats', aborter.signal));
      const started = stats.buckets.reduce((/** @type {number} */ a, /** @type {any} */ b) => a + b.started, 0);
      const failed = stats.buckets.reduce((/** @type {number} */ a, /** @type {any} */ b) => a + b.failed, 0);
      statsNote.textContent = `${started} started, ${failed} failed, ${stats.inProgress} in progress (buckets of ${Math.round(stats.bucketMs / 60000)} min).`;
      chart.update(stats);
    } catch (err) {
      if (aborter.signal.aborted) return;
      if (!(err instanceof ApiError && err.status === 401)) showError(err instanceof Error ? `The hour's figures could not be loaded. ${err.message}` : 'The hour\'s figures could not be loaded.');
    }
  }
  refreshStats();
  const statsTimer = setInterval(refreshStats, STATS_REFRESH_MS);

  return () => {
    stopped = true;
    source.close();
    aborter.abort();
    clearInterval(tick);
    clearInterval(statsTimer);
    chart.destroy();
  };
}

/** @param {string} who */
function speaking(who) {
  return h('span', { class: `speaking speaking-${who}` }, who === 'none' ? '—' : who);
}
