/**
 * Normalising what callers say into what the eligibility API takes.
 * Member IDs are two letters and six digits (e.g. MB123456); callers spell
 * them out ("M B 1 2 3 4 5 6", "mb-123456", "m as in mary b one two three…").
 * Dates come in the forms people say them and become ISO yyyy-mm-dd.
 */

export const MEMBER_ID_RE = /^[A-Z]{2}\d{6}$/;

const DIGIT_WORDS: Record<string, string> = {
  zero: '0', oh: '0', o: '0', one: '1', two: '2', to: '2', too: '2', three: '3', four: '4', for: '4', five: '5',
  six: '6', seven: '7', eight: '8', ate: '8', nine: '9',
};

export type Normalized<T> = { ok: true; value: T } | { ok: false; problem: string };

/** Spoken names of letters ("em bee …"), read only where the ID's two letters go. */
const LETTER_NAMES: Record<string, string> = {
  ay: 'a', bee: 'b', be: 'b', see: 'c', cee: 'c', sea: 'c', dee: 'd', ee: 'e', eff: 'f', ef: 'f', gee: 'g', aitch: 'h',
  eye: 'i', jay: 'j', kay: 'k', el: 'l', ell: 'l', em: 'm', en: 'n', oh: 'o', pee: 'p', cue: 'q', queue: 'q', ar: 'r',
  are: 'r', ess: 's', es: 's', tee: 't', tea: 't', you: 'u', vee: 'v', ex: 'x', why: 'y', zee: 'z', zed: 'z',
};

/** Words around an ID that are not part of it ("my member ID is …"). */
const FILLER = new Set(['my', 'member', 'members', 'membership', 'id', 'number', 'is', 'it', 'its', 'the', 'uh', 'um', 'er', 'so', 'okay', 'ok', 'yes', 'sure']);

export function normalizeMemberId(raw: unknown): Normalized<string> {
  if (typeof raw !== 'string' || raw.trim() === '') return { ok: false, problem: 'the member ID is missing' };
  let s = raw.toLowerCase().replace(/['’]s\b/g, '');
  // "m as in mary" → "m"
  s = s.replace(/\b([a-z])\s+(?:as in|like)\s+[a-z]+/g, '$1');
  const tokens = s.split(/[^a-z0-9]+/).filter(Boolean);
  // As said first; then without filler words, for "my member ID is MB123456".
  const out = spell(tokens) ?? spell(tokens.filter((t) => !FILLER.has(t)));
  if (!out) {
    return { ok: false, problem: `"${raw.slice(0, 40)}" is not a member ID: it should be two letters followed by six digits, like MB123456` };
  }
  return { ok: true, value: out };
}

function spell(tokens: string[]): string | undefined {
  let out = '';
  for (const t of tokens) {
    if (out.length < 2 && LETTER_NAMES[t] !== undefined) out += LETTER_NAMES[t];
    else if (DIGIT_WORDS[t] !== undefined && (t.length > 1 || out.length >= 2)) out += DIGIT_WORDS[t];
    else if (/^(double|triple)$/.test(t)) out += `<${t}>`;
    else out += t;
  }
  out = out.replace(/<double>(\w)/g, '$1$1').replace(/<triple>(\w)/g, '$1$1$1').toUpperCase();
  return MEMBER_ID_RE.test(out) ? out : undefined;
}

const MONTHS = ['january', 'february', 'march', 'april', 'may', 'june', 'july', 'august', 'september', 'october', 'november', 'december'];
const ORDINALS: Record<string, number> = {
  first: 1, second: 2, third: 3, fourth: 4, fifth: 5, sixth: 6, seventh: 7, eighth: 8, ninth: 9, tenth: 10,
  eleventh: 11, twelfth: 12, thirteenth: 13, fourteenth: 14, fifteenth: 15, sixteenth: 16, seventeenth: 17,
  eighteenth: 18, nineteenth: 19, twentieth: 20, thirtieth: 30,
};
const UNITS: Record<string, number> = {
  one: 1, two: 2, three: 3, four: 4, five: 5, six: 6, seven: 7, eight: 8, nine: 9, ten: 10, eleven: 11, twelve: 12,
  thirteen: 13, fourteen: 14, fifteen: 15, sixteen: 16, seventeen: 17, eighteen: 18, nineteen: 19,
};
const TENS: Record<string, number> = { twenty: 20, thirty: 30, forty: 40, fifty: 50, sixty: 60, seventy: 70, eighty: 80, ninety: 90 };

function monthOf(word: string): number | undefined {
  const i = MONTHS.findIndex((m) => m === word || (word.length >= 3 && m.startsWith(word)));
  return i >= 0 ? i + 1 : undefined;
}

/** "fifth" → 5, "twenty first" → 21, "5th" → 5, "5" → 5. */
function dayOf(words: string[]): number | undefined {
  const joined = words.join(' ');
  const num = /^(\d{1,2})(st|nd|rd|th)?$/.exec(joined);
  if (num) return Number(num[1]);
  if (words.length === 1) return ORDINALS[words[0]!] ?? UNITS[words[0]!];
  if (words.length === 2 && TENS[words[0]!] !== undefined) {
    const unit = ORDINALS[words[1]!] ?? UNITS[words[1]!];
    if (unit !== undefined && unit < 10) return TENS[words[0]!]! + unit;
  }
  return undefined;
}

/** "1980", "nineteen eighty", "nineteen eighty five", "two thousand three". */
function yearOf(words: string[]): number | undefined {
  const joined = words.join(' ');
  if (/^\d{4}$/.test(joined)) return Number(joined);
  const pair = (ws: string[]): number | undefined => {
    if (ws.length === 1) return UNITS[ws[0]!] ?? TENS[ws[0]!];
    if (ws.length === 2 && TENS[ws[0]!] !== undefined && UNITS[ws[1]!] !== undefined && UNITS[ws[1]!]! < 10) return TENS[ws[0]!]! + UNITS[ws[1]!]!;
    if (ws.length === 2 && ws[0] === 'oh' && UNITS[ws[1]!] !== undefined) return UNITS[ws[1]!];
    return undefined;
  };
  if (words[0] === 'two' && words[1] === 'thousand') {
    const rest = words.slice(2).filter((w) => w !== 'and');
    const r = rest.length ? pair(rest) : 0;
    return r === undefined ? undefined : 2000 + r;
  }
  for (let split = 1; split < words.length; split++) {
    const hi = pair(words.slice(0, split));
    const lo = pair(words.slice(split));
    if (hi !== undefined && lo !== undefined && hi >= 10 && hi <= 20) return hi * 100 + lo;
  }
  return undefined;
}

export function normalizeDate(raw: unknown, today = new Date()): Normalized<string> {
  if (typeof raw !== 'string' || raw.trim() === '') return { ok: false, problem: 'the date of birth is missing' };
  // Sentence punctuation is not part of a date ("March fifth, 1980."); dots between digits are (03.05.1980).
  const s = raw.toLowerCase().replace(/,/g, ' ').replace(/[.!?;:]+(?=\s|$)/g, ' ').replace(/\s+/g, ' ').trim();
  let y: number | undefined;
  let m: number | undefined;
  let d: number | undefined;
  let match: RegExpExecArray | null;
  if ((match = /^(\d{4})[/.-](\d{1,2})[/.-](\d{1,2})$/.exec(s))) [y, m, d] = [Number(match[1]), Number(match[2]), Number(match[3])];
  else if ((match = /^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})$/.exec(s))) [m, d, y] = [Number(match[1]), Number(match[2]), Number(match[3])]; // US: month first
  else {
    // "twenty-first", "eighty-five": hyphens between words are spaces.
    const words = s.replace(/([a-z])-(?=[a-z])/g, '$1 ').replace(/\bthe\b|\bof\b/g, ' ').split(' ').filter(Boolean);
    const mi = words.findIndex((w) => monthOf(w) !== undefined);
    if (mi >= 0) {
      m = monthOf(words[mi]!);
      const before = words.slice(0, mi);
      const after = words.slice(mi + 1);
      if (before.length > 0) {
        d = dayOf(before); // "5 March 1980"
        y = yearOf(after);
      } else {
        // "March 5th 1980", "march fifth nineteen eighty", "march twenty first 1980"
        for (let k = Math.min(2, after.length - 1); k >= 1; k--) {
          const dd = dayOf(after.slice(0, k));
          const yy = yearOf(after.slice(k));
          if (dd !== undefined && yy !== undefined) {
            d = dd;
            y = yy;
            break;
          }
        }
      }
    }
  }
  if (y === undefined || m === undefined || d === undefined) {
    // "3/5/80", "March 5 80": the century is a guess we will not make for an identity check.
    if (/(^|[^\d])\d{2}$/.test(s) && !/\d{4}/.test(s)) {
      return { ok: false, problem: `"${raw.slice(0, 40)}" has a two-digit year: ask for the year of birth with all four digits` };
    }
    return { ok: false, problem: `"${raw.slice(0, 40)}" is not a date I can read: ask for the date of birth as month, day and year` };
  }
  const date = new Date(Date.UTC(y, m - 1, d));
  if (date.getUTCFullYear() !== y || date.getUTCMonth() !== m - 1 || date.getUTCDate() !== d) {
    return { ok: false, problem: `${raw.slice(0, 40)} is not a real date: ask for the date of birth again` };
  }
  if (date.getTime() > today.getTime()) return { ok: false, problem: 'that date of birth is in the future: ask for it again' };
  if (y < 1900) return { ok: false, problem: 'that date of birth is before 1900: ask for it again' };
  return { ok: true, value: date.toISOString().slice(0, 10) };
}
