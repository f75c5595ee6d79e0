/**
 * The `since` of a call listing, as operators write it: an age (30m, 2h,
 * 7d — minutes, hours, days before `now`) or an ISO 8601 time starting
 * yyyy-mm-dd. Anything else is undefined (a usage error for the reader).
 */
const UNIT_MS = { m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

export function parseSince(s: string, now = Date.now()): Date | undefined {
  const age = /^(\d+)\s*(m|h|d)$/.exec(s.trim());
  if (age) return new Date(now - Number(age[1]) * UNIT_MS[age[2] as keyof typeof UNIT_MS]);
  if (!/^\d{4}-\d{2}-\d{2}/.test(s)) return undefined;
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? undefined : d;
}
