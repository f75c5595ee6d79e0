// @ts-check
/**
 * How times, durations and money read on the page. Times show in the
 * viewer's zone with the UTC value in `title` (and `datetime`); durations are
 * m:ss (h:mm:ss past an hour); latencies are whole ms (tenths below 10 ms).
 */
import { h } from './dom.js';

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: 'short' });

/**
 * A <time> element: local text, UTC in title.
 * @param {string | null | undefined} iso
 * @param {'full' | 'time'} [style]
 */
export function timeEl(iso, style = 'full') {
  if (!iso) return h('span', { class: 'muted' }, '—');
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return h('span', null, iso);
  const utc = d.toISOString();
  return h('time', { datetime: utc, title: `${utc.replace('T', ' ').replace(/\.\d+Z$/, 'Z').replace('Z', ' UTC')}` },
    style === 'time' ? timeOnly.format(d) : dateTime.format(d));
}

/** @param {number | null | undefined} ms */
export function duration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  const s = Math.max(0, Math.floor(ms / 1000));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh > 0 ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

/** Whole ms, or tenths below 10 ms (relay figures are fractions of a ms). @param {number | null | undefined} ms */
export function millis(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  return Math.abs(ms) < 10 ? `${Number(ms.toFixed(1))} ms` : `${Math.round(ms)} ms`;
}

/** A position on the call's clock (ms since the stream started), as m:ss.t. @param {number} ms */
export function clock(ms) {
  const t = Math.max(0, ms) / 1000;
  const m = Math.floor(t / 60);
  return `${m}:${(t - m * 60).toFixed(1).padStart(4, '0')}`;
}

/** @param {number | null | undefined} usd */
export function money(usd) {
  return typeof usd === 'number' && Number.isFinite(usd) ? `$${usd.toFixed(usd < 1 ? 4 : 2)}` : '—';
}

/** @param {unknown} v */
export function text(v) {
  return v === null || v === undefined || v === '' ? '—' : String(v);
}
