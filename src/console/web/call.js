// @ts-check
/**
 * One call (GET /console/api/calls/:sid → CallView): its particulars, a
 * timeline on the call's clock (transcript lines as bars from their atMs to
 * the next line, interrupted assistant lines marked as barge-ins, tool calls
 * with duration and result, call events, DTMF), each turn's latency split
 * into its parts against the budget, cost and usage, relay figures, and —
 * when the call has a recording — the two-channel player (player.js).
 * Clicking a transcript line seeks the player there; the playhead follows.
 */
import { getJson } from './api.js';
import { h, replace } from './dom.js';
import { clock, duration, millis, money, text, timeEl } from './format.js';
import { createPlayer } from './player.js';

/**
 * @param {HTMLElement} main
 * @param {string} callSid
 * @param {(message: string) => void} showError
 * @returns {() => void}
 */
export function showCall(main, callSid, showError) {
  const aborter = new AbortController();
  /** @type {(() => void) | null} */
  let stopPlayer = null;
  replace(main, h('h1', null, 'Call ', h('code', null, callSid)), h('p', { class: 'muted' }, 'Loading…'));
  getJson(`/calls/${encodeURIComponent(callSid)}`, aborter.signal).then((/** @type {any} */ view) => {
    stopPlayer = render(main, view, aborter.signal, showError);
  }, (err) => {
    if (aborter.signal.aborted) return;
    replace(main, h('h1', null, 'Call ', h('code', null, callSid)),
      h('p', null, err?.status === 404 ? 'There is no such call.' : 'The call could not be loaded.'),
      h('p', null, h('a', { href: '#/calls' }, 'Back to the calls')));
    if (err?.status !== 404) showError(err instanceof Error ? err.message : 'The call could not be loaded.');
  });
  return () => {
    aborter.abort();
    if (stopPlayer) stopPlayer();
  };
}

/**
 * @param {HTMLElement} main
 * @param {any} view CallView
 * @param {AbortSignal} signal
 * @param {(message: string) => void} showError
 * @returns {() => void}
 */
function render(main, view, signal, showError) {
  const c = view.call;
  const transcript = /** @type {any[]} */ (c.transcript ?? []);
  const tools = /** @type {any[]} */ (c.toolCalls ?? []);
  const events = /** @type {any[]} */ (c.events ?? []);
  const turns = /** @type {any[]} */ (c.turnLatencies ?? []);
  const endMs = Math.max(1,
    c.durationMs ?? 0,
    c.recording?.durationMs ?? 0,
    ...transcript.map((l) => l.atMs + 1000),
    ...tools.map((t) => t.startedAtMs + t.durationMs),
    ...events.map((e) => e.atMs + 500));

  /** @type {((ms: number) => void) | null} */
  let seek = null;
  const playheads = /** @type {HTMLElement[]} */ ([]);
  /** @param {number} ms */
  const setPlayhead = (ms) => {
    for (const p of playheads) p.style.left = `${Math.min(100, (ms / endMs) * 100)}%`;
  };

  // ── particulars ──
  const facts = h('dl', { class: 'facts' },
    fact('From', text(c.from)), fact('To', text(c.to)),
    fact('Started', timeEl(c.startedAt)), fact('Ended', timeEl(c.endedAt)),
    fact('Duration', duration(c.durationMs)),
    fact('State', `${text(c.state)}${c.status ? ` (${c.status})` : ''}`),
    fact('Outcome', text(c.outcome)), fact('End reason', text(c.endReason)),
    fact('Agent', text(c.agent)), fact('Direction', text(c.direction)),
    fact('Model', text(c.model)), fact('Audio', text(c.audioMode)),
    c.transfer ? fact('Transfer', `${c.transfer.target} (asked by ${c.transfer.requestedBy})`) : null);

  // ── timeline ──
  /** @param {number} fromMs @param {number} toMs @param {string} cls @param {string} label @param {Record<string, unknown>} [attrs] */
  const bar = (fromMs, toMs, cls, label, attrs = {}) => {
    const el = h(attrs.onclick ? 'button' : 'span', { class: `bar ${cls}`, title: label, 'aria-label': label, type: attrs.onclick ? 'button' : null, ...attrs });
    el.style.left = `${(fromMs / endMs) * 100}%`;
    el.style.width = `max(0.35rem, ${Math.max(0, ((toMs - fromMs) / endMs) * 100)}%)`;
    return el;
  };
  /** @param {number} ms */
  const seekTo = (ms) => () => { if (seek) seek(ms); };
  const nextAt = (/** @type {number} */ i) => (i + 1 < transcript.length ? transcript[i + 1].atMs : endMs);
  /** @param {string} name @param {HTMLElement[]} items */
  const lane = (name, items) => {
    const track = h('div', { class: 'track' }, items);
    const head = h('span', { class: 'playhead', 'aria-hidden': 'true' });
    playheads.push(head);
    track.append(head);
    return h('div', { class: 'lane' }, h('span', { class: 'lane-name' }, name), track);
  };
  const lineBars = (/** @type {string} */ speaker) => transcript.flatMap((l, i) => l.speaker !== speaker ? [] : [
    bar(l.atMs, nextAt(i), `bar-${speaker}${l.interrupted ? ' barge' : ''}`,
      `${clock(l.atMs)} ${speaker}${l.interrupted ? ' (interrupted)' : ''}: ${l.text}`, { onclick: seekTo(l.atMs) })]);
  const timeline = h('div', { class: 'timeline' },
    h('div', { class: 'scale', 'aria-hidden': 'true' }, h('span', null, '0:00.0'), h('span', null, clock(endMs))),
    lane('Caller', lineBars('caller')),
    lane('Assistant', lineBars('assistant')),
    lane('Tools', tools.map((t) => bar(t.startedAtMs, t.startedAtMs + t.durationMs, t.ok ? 'bar-tool' : 'bar-tool failed',
      `${clock(t.startedAtMs)} ${t.name}, ${millis(t.durationMs)}, ${t.ok ? 'ok' : 'failed'}`))),
    lane('Events', [
      ...events.map((e) => bar(e.atMs, e.atMs, 'bar-event', `${clock(e.atMs)} ${e.type}${e.detail ? `: ${e.detail}` : ''}`)),
      ...transcript.filter((l) => l.speaker === 'dtmf').map((l) => bar(l.atMs, l.atMs, 'bar-dtmf', `${clock(l.atMs)} keypad: ${l.text}`)),
    ]));

  const lines = h('ol', { class: 'transcript' }, transcript.map((l) => h('li', { class: `line line-${l.speaker}${l.interrupted ? ' barge' : ''}` },
    h('button', { type: 'button', class: 'at', onclick: seekTo(l.atMs), 'aria-label': `Play from ${clock(l.atMs)}` }, clock(l.atMs)),
    h('span', { class: 'speaker' }, l.speaker === 'dtmf' ? 'keypad' : l.speaker),
    h('span', { class: 'words' }, l.text),
    l.interrupted ? h('span', { class: 'tag' }, 'barge-in') : null)));

  const toolTable = tools.length === 0 ? h('p', { class: 'muted' }, 'No tool calls.') : h('div', { class: 'table-wrap' }, h('table', { class: 'data tools' },
    h('thead', null, h('tr', null, ['At', 'Tool', 'Duration', 'Result', 'Arguments', 'Output'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', null, tools.map((t) => h('tr', { class: t.ok ? '' : 'failed' },
      h('td', null, clock(t.startedAtMs)), h('td', null, t.name), h('td', { class: 'num' }, millis(t.durationMs)),
      h('td', null, t.ok ? 'ok' : 'failed'), h('td', null, h('code', { class: 'wrap' }, t.args)), h('td', null, h('code', { class: 'wrap' }, t.output)))))));

  const eventList = events.length === 0 ? h('p', { class: 'muted' }, 'No call events.') : h('ul', { class: 'events' },
    events.map((e) => h('li', null, h('span', { class: 'at' }, clock(e.atMs)), ' ', h('strong', null, e.type), e.detail ? ` — ${e.detail}` : '')));

  // ── player ──
  const playerBox = h('section', { class: 'player-box', 'aria-labelledby': 'rec-h' }, h('h2', { id: 'rec-h' }, 'Recording'));
  /** @type {(() => void) | null} */
  let stopPlayer = null;
  if (view.recording) {
    const player = createPlayer(playerBox, c.callSid, signal, setPlayhead, showError);
    seek = player.seek;
    stopPlayer = player.stop;
  } else {
    playerBox.append(h('p', { class: 'muted' }, c.recording?.status ? `No recording to play (${c.recording.status}${c.recording.reason ? `: ${c.recording.reason}` : ''}).` : 'This call was not recorded.'));
  }

  replace(main,
    h('p', null, h('a', { href: '#/calls' }, '← Calls')),
    h('h1', null, 'Call ', h('code', null, c.callSid)),
    facts,
    playerBox,
    h('section', { 'aria-labelledby': 'tl-h' }, h('h2', { id: 'tl-h' }, 'Timeline'), timeline),
    h('section', { 'aria-labelledby': 'lat-h' }, h('h2', { id: 'lat-h' }, 'Turn latency'), latency(turns, view.budgetMs)),
    h('section', { 'aria-labelledby': 'tr-h' }, h('h2', { id: 'tr-h' }, 'Transcript'), transcript.length ? lines : h('p', { class: 'muted' }, 'No transcript.')),
    h('section', { 'aria-labelledby': 'tools-h' }, h('h2', { id: 'tools-h' }, 'Tool calls'), toolTable),
    h('section', { 'aria-labelledby': 'ev-h' }, h('h2', { id: 'ev-h' }, 'Events'), eventList),
    h('section', { 'aria-labelledby': 'cost-h' }, h('h2', { id: 'cost-h' }, 'Cost and usage'), usage(c)),
    h('section', { 'aria-labelledby': 'relay-h' }, h('h2', { id: 'relay-h' }, 'Relay'), relay(c)));
  setPlayhead(0);
  return () => { if (stopPlayer) stopPlayer(); };
}

/** @param {string} name @param {import('./dom.js').Child} value */
function fact(name, value) {
  return h('div', null, h('dt', null, name), h('dd', null, value));
}

/** The parts of a turn, in order: [label, class, from key, to key]. */
const PARTS = /** @type {const} */ ([
  ['caller end → speech stopped', 'p-vad', 'callerEndMs', 'speechStoppedMs'],
  ['speech stopped → first delta', 'p-model', 'speechStoppedMs', 'firstDeltaMs'],
  ['first delta → first frame', 'p-relay', 'firstDeltaMs', 'firstFrameMs'],
  ['first frame → heard', 'p-heard', 'firstFrameMs', 'heardMs'],
]);

/**
 * Each turn as a stacked bar of its parts (or its total when the record has no parts) against the budget line.
 * @param {any[]} turns
 * @param {number} budgetMs
 */
function latency(turns, budgetMs) {
  if (turns.length === 0) return h('p', { class: 'muted' }, 'No turns measured.');
  /** @param {any} t */
  const segments = (t) => {
    const p = t.parts;
    if (!p) return [{ label: 'total (no parts recorded)', cls: 'p-total', ms: t.latencyMs }];
    /** @type {{ label: string, cls: string, ms: number }[]} */
    const out = [];
    for (const [label, cls, from, to] of PARTS) {
      // A missing mark joins its span to the next known one (e.g. no first delta: speech stopped → first frame).
      if (typeof p[from] !== 'number') continue;
      let end = p[to];
      let name = /** @type {string} */ (label);
      if (typeof end !== 'number') {
        if (to === 'firstDeltaMs') { end = p.firstFrameMs; name = 'speech stopped → first frame'; } else continue;
      }
      out.push({ label: name, cls, ms: Math.max(0, end - p[from]) });
    }
    return out;
  };
  const rows = turns.map((t) => ({ t, segs: segments(t) }));
  const scaleMs = Math.max(budgetMs * 1.25, ...rows.map((r) => r.segs.reduce((a, s) => a + s.ms, 0)));
  const budgetPct = `${(budgetMs / scaleMs) * 100}%`;
  const list = h('ol', { class: 'latency' }, rows.map(({ t, segs }) => {
    const total = segs.reduce((a, s) => a + s.ms, 0);
    const track = h('div', { class: 'stack' }, segs.map((s) => {
      const el = h('span', { class: `seg ${s.cls}`, title: `${s.label}: ${millis(s.ms)}` });
      el.style.width = `${(s.ms / scaleMs) * 100}%`;
      return el;
    }));
    const line = h('span', { class: 'budget', 'aria-hidden': 'true' });
    line.style.left = budgetPct;
    track.append(line);
    return h('li', { class: total > budgetMs ? 'over' : '' },
      h('span', { class: 'turn-name' }, `Turn ${t.turn}`),
      track,
      h('span', { class: 'turn-total' }, millis(total), total > budgetMs ? ' (over budget)' : ''),
      h('span', { class: 'sr-only' }, segs.map((s) => `${s.label} ${millis(s.ms)}`).join('; ')));
  }));
  const legend = h('ul', { class: 'legend' },
    [...PARTS.map(([label, cls]) => h('li', null, h('span', { class: `key ${cls}`, 'aria-hidden': 'true' }), label)),
      h('li', null, h('span', { class: 'key p-total', 'aria-hidden': 'true' }), 'total (older records)'),
      h('li', null, h('span', { class: 'key key-budget', 'aria-hidden': 'true' }), `budget ${millis(budgetMs)}`)]);
  return h('div', null, legend, list);
}

/** @param {any} c */
function usage(c) {
  const u = c.usage ?? {};
  return h('dl', { class: 'facts' },
    fact('Estimated cost', money(c.estimatedCostUsd)),
    fact('Input text tokens', text(u.inputTextTokens)),
    fact('Input audio tokens', text(u.inputAudioTokens)),
    fact('Cached input tokens', text(u.inputCachedTokens)),
    fact('Output text tokens', text(u.outputTextTokens)),
    fact('Output audio tokens', text(u.outputAudioTokens)));
}

/** @param {any} c */
function relay(c) {
  const r = c.relay;
  if (!r) return h('p', { class: 'muted' }, 'No relay figures (the call did not end normally).');
  return h('dl', { class: 'facts' },
    fact('Inbound p50 / p99', `${millis(r.inbound.p50Ms)} / ${millis(r.inbound.p99Ms)}`),
    fact('Outbound p50 / p99', `${millis(r.outbound.p50Ms)} / ${millis(r.outbound.p99Ms)}`),
    fact('Protocol errors', text(c.protocolErrors)));
}
