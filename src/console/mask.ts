/**
 * Phone numbers as a console viewer may see them (api.ts ShownNumber): in
 * full for the `admin` role, else masked. A masked E.164 number keeps its
 * country code, the next three digits (at most: fewer on a short number, so
 * that at least four digits are always hidden) and its last two digits:
 * `+15550100123` → `+1 555 ••• ••23`, `+442079460958` → `+44 207 ••• ••58`.
 * Anything that is not a number is shown only when it is one of a few
 * values that carry nothing personal (`anonymous`, `(encrypted)`, …); any
 * other text (a SIP address, a client name) becomes `•••`.
 * Pure functions: no I/O.
 */
import type { Role, ShownNumber } from './api.js';

const DOT = '•';

/**
 * E.164 country codes of one and two digits (ITU-T list); every other code
 * has three. 1 (NANP) and 7 are the one-digit codes.
 */
const TWO_DIGIT_CODES = new Set([
  '20', '27', '30', '31', '32', '33', '34', '36', '39', '40', '41', '43', '44', '45', '46', '47', '48', '49',
  '51', '52', '53', '54', '55', '56', '57', '58', '60', '61', '62', '63', '64', '65', '66',
  '81', '82', '84', '86', '90', '91', '92', '93', '94', '95', '98',
]);

/** Values Twilio (or the store) puts where a number would be that say nothing about the caller. */
const NOT_PERSONAL = new Set(['anonymous', 'restricted', 'unknown', 'private', 'unavailable', '(encrypted)']);

function countryCodeLength(digits: string): number {
  if (digits[0] === '1' || digits[0] === '7') return 1;
  return TWO_DIGIT_CODES.has(digits.slice(0, 2)) ? 2 : 3;
}

/** The masked form of one number (see the module doc). */
export function maskNumber(value: string): string {
  const trimmed = value.trim();
  if (NOT_PERSONAL.has(trimmed.toLowerCase())) return trimmed;
  const m = /^\+?(\d{6,15})$/.exec(trimmed.replace(/[\s().-]/g, ''));
  if (!m) return DOT.repeat(3);
  const digits = m[1]!;
  const cc = countryCodeLength(digits);
  const national = digits.slice(cc);
  const tail = 2;
  const head = Math.max(0, Math.min(3, national.length - tail - 4));
  const hidden = national.length - head - tail;
  const groups: string[] = [];
  for (let left = hidden; left > 0; left -= 3) groups.push(DOT.repeat(Math.min(3, left)));
  const shownHead = head > 0 ? ` ${national.slice(0, head)}` : '';
  // The last group of dots and the last two digits are written together: `••23`.
  return `+${digits.slice(0, cc)}${shownHead} ${groups.join(' ')}${national.slice(-tail)}`;
}

/** A number as `role` may see it: in full for admin, masked for read; null stays null. */
export function showNumber(value: string | null | undefined, role: Role): ShownNumber {
  if (value === null || value === undefined) return null;
  return role === 'admin' ? value : maskNumber(value);
}
