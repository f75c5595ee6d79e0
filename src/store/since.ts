/**
 * The `since` of a call listing, as operators write it: an age (30m, 2h,
 * 7d — minutes, hours, days before `now`) or an ISO 8601 time starting
 * yyyy-mm-dd. Anything else is undefined (a usage error for the reader),
 * and so is a time outside years 0001–9999 (e.g. an age of a million years):
 * both stores can compare and keep those.
 */
const UNIT_MS = { m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z, ms since the epoch. */
const MIN_MS = Date.parse('0001-01-01T00:00:00.000Z');
const MAX_MS = Date.parse('9999-12-31T23:59:59.999Z');

export function parseSince(s: string, now = Date.now()): Date | undefined {
  const age = /^(\d+)\s*(m|h|d)$/.exec(s.trim());
  const d = age ? new Date(now - Number(age[1]) * UNIT_MS[age[2] as keyof typeof UNIT_MS]) : /^\d{4}-\d{2}-\d{2}/.test(s) ? new Date(s) : undefined;
  if (!d) return undefined;
  const t = d.getTime();
  return Number.isFinite(t) && t >= MIN_MS && t <= MAX_MS ? d : undefined;
}
