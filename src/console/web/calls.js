// @ts-check
/**
 * The call list: filters (time range, outcome, end reason, agent, tool,
 * latency above N ms), sortable headers and pages, all kept in the URL hash
 * (#/calls?since=24h&sort=duration&dir=asc&page=2) so a link can be shared;
 * the same query goes to GET /console/api/calls. Rows link to the call.
 */
import { getJson } from './api.js';
import { h, replace } from './dom.js';
import { duration, money, text, timeEl } from './format.js';

/** The query fields the page keeps (CallListQuery in src/console/api.ts). */
const FILTERS = ['since', 'until', 'outcome', 'endReason', 'agent', 'tool', 'minLatencyMs'];
const SINCE_CHOICES = [['', 'Any time'], ['1h', 'Last hour'], ['24h', 'Last 24 hours'], ['7d', 'Last 7 days'], ['30d', 'Last 30 days']];

/**
 * @param {URLSearchParams} params
 * @returns {string} the hash for these params (empty values dropped)
 */
function hashFor(params) {
  const clean = new URLSearchParams();
  for (const [k, v] of params) if (v !== '') clean.set(k, v);
  const q = clean.toString();
  return q ? `#/calls?${q}` : '#/calls';
}

/**
 * @param {HTMLElement} main
 * @param {URLSearchParams} params from the hash
 * @param {(message: string) => void} showError
 * @returns {() => void}
 */
export function showCalls(main, params, showError) {
  const aborter = new AbortController();
  const sort = params.get('sort') ?? 'started';
  const dir = params.get('dir') ?? 'desc';
  const page = Math.max(1, Number(params.get('page') ?? '1') || 1);

  /** @param {string} name @param {string} label @param {Record<string, unknown>} [extra] */
  const field = (name, label, extra = {}) => h('div', { class: 'field' },
    h('label', { for: `f-${name}` }, label),
    h('input', { id: `f-${name}`, name, value: params.get(name) ?? '', ...extra }));

  const sinceSelect = h('select', { id: 'f-since', name: 'since' },
    SINCE_CHOICES.map(([v, l]) => h('option', { value: v, selected: (params.get('since') ?? '') === v }, l)));
  const since = params.get('since') ?? '';
  if (since && !SINCE_CHOICES.some(([v]) => v === since)) sinceSelect.append(h('option', { value: since, selected: true }, since));

  const form = h('form', { class: 'filters', 'aria-label': 'Filters' },
    h('div', { class: 'field' }, h('label', { for: 'f-since' }, 'Since'), sinceSelect),
    field('until', 'Until (ISO, UTC)', { placeholder: '2026-01-31T23:59:59Z', inputmode: 'text' }),
    field('outcome', 'Outcome'),
    field('endReason', 'End reason'),
    field('agent', 'Agent'),
    field('tool', 'Tool used'),
    field('minLatencyMs', 'Turn latency above (ms)', { type: 'number', min: '0', step: '50' }),
    h('div', { class: 'actions' },
      h('button', { type: 'submit' }, 'Apply'),
      h('a', { href: '#/calls', class: 'button-link' }, 'Clear')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const next = new URLSearchParams();
    const fd = new FormData(/** @type {HTMLFormElement} */ (form));
    for (const k of FILTERS) next.set(k, String(fd.get(k) ?? '').trim());
    if (params.get('sort')) next.set('sort', sort);
    if (params.get('dir')) next.set('dir', dir);
    location.hash = hashFor(next); // page back to 1
  });

  /** @param {'started' | 'duration' | 'cost'} key @param {string} label */
  function sortHeader(key, label) {
    const active = sort === key;
    const nextDir = active && dir === 'desc' ? 'asc' : 'desc';
    const next = new URLSearchParams(params);
    next.set('sort', key);
    next.set('dir', nextDir);
    next.delete('page');
    return h('th', { scope: 'col', 'aria-sort': active ? (dir === 'asc' ? 'ascending' : 'descending') : null },
      h('a', { href: hashFor(next), class: 'sort' }, label, active ? (dir === 'asc' ? ' ▲' : ' ▼') : ''));
  }

  const tbody = h('tbody', null, h('tr', null, h('td', { colspan: '9', class: 'muted' }, 'Loading…')));
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  replace(main,
    h('h1', null, 'Calls'),
    form,
    h('div', { class: 'table-wrap' }, h('table', { class: 'data calls' },
      h('caption', null, `Calls, page ${page}`),
      h('thead', null, h('tr', null,
        h('th', { scope: 'col' }, 'Call'),
        sortHeader('started', 'Started'),
        sortHeader('duration', 'Duration'),
        h('th', { scope: 'col' }, 'From'),
        h('th', { scope: 'col' }, 'Agent'),
        h('th', { scope: 'col' }, 'State'),
        h('th', { scope: 'col' }, 'Outcome'),
        h('th', { scope: 'col' }, 'End reason'),
        sortHeader('cost', 'Cost'))),
      tbody)),
    pager);

  const query = new URLSearchParams();
  for (const k of [...FILTERS, 'sort', 'dir', 'page', 'limit']) {
    const v = params.get(k);
    if (v) query.set(k, v);
  }
  getJson(`/calls${query.size ? `?${query}` : ''}`, aborter.signal).then((/** @type {any} */ list) => {
    const rows = list.calls.map((/** @type {any} */ c) => h('tr', null,
      h('td', null, h('a', { href: `#/calls/${encodeURIComponent(c.callSid)}` }, c.callSid)),
      h('td', null, timeEl(c.startedAt)),
      h('td', { class: 'num' }, duration(c.durationMs)),
      h('td', null, text(c.from)),
      h('td', null, text(c.agent)),
      h('td', null, text(c.state), c.status ? h('span', { class: 'muted' }, ` (${c.status})`) : null),
      h('td', null, text(c.outcome)),
      h('td', null, text(c.endReason)),
      h('td', { class: 'num' }, money(c.estimatedCostUsd))));
    if (rows.length === 0) rows.push(h('tr', null, h('td', { colspan: '9', class: 'muted' }, 'No calls match.')));
    replace(tbody, rows);
    /** @param {number} p */
    const pageHash = (p) => {
      const next = new URLSearchParams(params);
      if (p === 1) next.delete('page');
      else next.set('page', String(p));
      return hashFor(next);
    };
    replace(pager,
      list.page > 1 ? h('a', { href: pageHash(list.page - 1), rel: 'prev' }, '← Previous page') : null,
      h('span', null, `Page ${list.page}`),
      list.hasMore ? h('a', { href: pageHash(list.page + 1), rel: 'next' }, 'Next page →') : null);
  }, (err) => {
    if (aborter.signal.aborted) return;
    replace(tbody, h('tr', null, h('td', { colspan: '9' }, 'The calls could not be loaded.')));
    showError(err instanceof Error ? err.message : 'The calls could not be loaded.');
  });

  return () => aborter.abort();
}
