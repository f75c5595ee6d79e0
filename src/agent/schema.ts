/**
 * The agent file's shape, as written (snake_case keys): zod schemas, strict
 * (an unknown key is a problem, not silently ignored), defaults filled in.
 * Checks that span fields (unique names, the default target among the
 * targets, exactly one of instructions / instructions_file) live in load.ts,
 * so they run even where another part of the file is broken: the loader
 * reports every problem at once. Times in ms unless the name says otherwise.
 */
import { z } from 'zod';
import { REASONING_EFFORTS } from '../realtime/protocol.js';

/** Agent and transfer target names: what the model, the records and `POST /calls` name them by. */
export const NAME_RE = /^[a-z0-9_-]{1,40}$/;
/** Tool names as the Realtime API accepts them. */
export const TOOL_NAME_RE = /^[a-zA-Z0-9_-]{1,64}$/;
/** A full E.164 number: +, country code, up to 15 digits. */
export const E164_RE = /^\+[1-9]\d{6,14}$/;
/** An E.164 prefix for allow/deny lists ('+1', '+1900'). */
export const E164_PREFIX_RE = /^\+\d{1,15}$/;
/** A SIP URI `<Dial><Sip>` accepts: sip:user@host or sips:user@host (parameters allowed). */
export const SIP_RE = /^sips?:[^\s@]+@[^\s@]+$/;
/** An HTTP header name (RFC 9110 token). */
const HEADER_NAME_RE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
export const KEYPAD_DIGITS = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#'] as const;

export const DEFAULT_VOICE = 'marin';
export const DEFAULT_REPROMPT = 'Ask briefly whether the caller is still on the line.';
export const DEFAULT_WARNING = 'Tell the caller politely the call must end in about a minute.';
/** SILENCE_TIMEOUT_MS's and MAX_CALL_MS's defaults: an agent file that says nothing keeps today's timeouts. */
export const DEFAULT_SILENCE_TIMEOUT_MS = 300_000;
export const DEFAULT_MAX_CALL_MS = 3_600_000;

const int = (min: number, max: number) => z.number().int().min(min).max(max);
const text = z.string().trim().min(1, 'must not be empty');

/** A phone number YAML read as a number (unquoted +1555…) is named as such, so the fix is obvious. */
const e164 = z.unknown().transform((v, ctx) => {
  if (typeof v === 'number') {
    ctx.addIssue({ code: 'custom', message: `write it in quotes ("+${v}"): unquoted, YAML reads a phone number as a number` });
    return z.NEVER;
  }
  if (typeof v !== 'string' || !E164_RE.test(v)) {
    ctx.addIssue({ code: 'custom', message: `${JSON.stringify(v)} is not an E.164 number (e.g. "+15551230000")` });
    return z.NEVER;
  }
  return v;
});

const e164Prefix = z.unknown().transform((v, ctx) => {
  if (typeof v !== 'string' || !E164_PREFIX_RE.test(v)) {
    ctx.addIssue({ code: 'custom', message: `${JSON.stringify(v)} is not an E.164 prefix in quotes (e.g. "+1", "+1900")` });
    return z.NEVER;
  }
  return v;
});

/** https anywhere; plain http only to this machine (a local stand-in or sidecar). */
export function toolUrlProblem(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `${JSON.stringify(url)} is not a URL`;
  }
  if (u.protocol === 'https:') return undefined;
  if (u.protocol === 'http:' && ['localhost', '127.0.0.1', '[::1]'].includes(u.hostname)) return undefined;
  return `${JSON.stringify(url)} is not an https URL (plain http only to localhost, 127.0.0.1 or [::1])`;
}

const toolUrl = z.string().superRefine((v, ctx) => {
  const p = toolUrlProblem(v);
  if (p) ctx.addIssue({ code: 'custom', message: p });
});

const HeaderSourceSchema = z.union(
  [
    z.strictObject({ value: z.string() }),
    z.strictObject({ env: z.string().regex(ENV_NAME_RE, 'must be an environment variable name'), prefix: z.string().optional() }),
  ],
  { error: 'must be { value: "…" } or { env: NAME, prefix: "…" } (secrets from the environment)' },
);

export const HttpToolSchema = z.strictObject({
  name: z.string().regex(TOOL_NAME_RE, 'must be 1–64 letters, digits, _ or -'),
  description: text,
  /** JSON Schema 2020-12, compiled in load.ts. */
  parameters: z.record(z.string(), z.unknown()).default({ type: 'object', properties: {}, additionalProperties: false }),
  url: toolUrl,
  headers: z
    .record(z.string().regex(HEADER_NAME_RE, 'is not an HTTP header name'), HeaderSourceSchema)
    .default({}),
  timeout_ms: int(50, 60_000).default(3000),
  idempotent: z.boolean().default(false),
  retries: int(0, 5).default(2),
  filler: text.optional(),
  record_fields: z
    .array(text)
    .default([])
    .refine((f) => !f.includes('*') || f.length === 1, "'*' (all fields) stands alone"),
  send_caller_number: z.boolean().default(false),
});

export const BuiltinToolSchema = z.strictObject({
  builtin: z.enum(['check_eligibility'], { error: (i) => `${JSON.stringify(i.input)} is not a built-in tool (check_eligibility)` }),
});

export const TargetSchema = z.strictObject({
  name: z.string().regex(NAME_RE, 'must be 1–40 of a-z, 0-9, _ or -'),
  description: text,
  number: e164.optional(),
  sip: z.string().regex(SIP_RE, 'must be a SIP URI like sip:billing@pbx.example.com').optional(),
  whisper: text.optional(),
});

const keypadDigit = z
  .union([z.string(), z.number().int()])
  .transform(String)
  .pipe(z.enum(KEYPAD_DIGITS, { error: 'must be one of 0-9, * or # (quote * and #)' }));

const messageObject = z.strictObject({ message: text });

export const TransferSchema = z.strictObject({
  targets: z.array(TargetSchema).min(1, 'needs at least one target'),
  default: z.string().optional(),
  keypad_digit: keypadDigit.optional(),
  dial_timeout_s: int(5, 600).default(20),
  on_failure: z.union([z.literal('agent'), messageObject], { error: 'must be agent or { message: "…" }' }).default('agent'),
  handoff_wait_ms: int(0, 60_000).default(8000),
});

export const AgentFileSchema = z.strictObject({
  name: z.string().regex(NAME_RE, 'must be 1–40 of a-z, 0-9, _ or -'),
  instructions: text.optional(),
  instructions_file: text.optional(),
  greeting: z.string().default(''),
  voice: text.default(DEFAULT_VOICE),
  /** realtime (OpenAI Realtime), live (OpenAI GPT-Live) or pipeline (STT → LLM → TTS); unset: PROVIDER, else realtime. */
  provider: z.enum(['realtime', 'live', 'pipeline']).optional(),
  model: text.optional(),
  reasoning_effort: z.enum(REASONING_EFFORTS).optional(),
  turn: z
    .strictObject({
      vad_threshold: z.number().min(0).max(1).optional(),
      prefix_padding_ms: int(0, 5000).optional(),
      silence_duration_ms: int(0, 5000).optional(),
    })
    .default({}),
  /** Each entry is checked by load.ts against HttpToolSchema or BuiltinToolSchema (whichever its keys ask for). */
  tools: z.array(z.unknown()).default([]),
  transfer: TransferSchema.optional(),
  end_call: z
    .strictObject({ enabled: z.boolean().default(false), goodbye_wait_ms: int(0, 60_000).default(5000) })
    .default({ enabled: false, goodbye_wait_ms: 5000 }),
  silence: z
    .strictObject({
      reprompt_after_ms: int(1000, 86_400_000).optional(),
      reprompt: text.default(DEFAULT_REPROMPT),
      max_reprompts: int(0, 10).default(1),
      timeout_ms: int(1000, 86_400_000).default(DEFAULT_SILENCE_TIMEOUT_MS),
    })
    .default({ reprompt: DEFAULT_REPROMPT, max_reprompts: 1, timeout_ms: DEFAULT_SILENCE_TIMEOUT_MS }),
  max_duration: z
    .strictObject({
      max_call_ms: int(1000, 86_400_000).default(DEFAULT_MAX_CALL_MS),
      warn_before_ms: int(1000, 86_400_000).optional(),
      warning: text.default(DEFAULT_WARNING),
    })
    .default({ max_call_ms: DEFAULT_MAX_CALL_MS, warning: DEFAULT_WARNING }),
  recording: z
    .strictObject({
      /** Unset: as RECORDING says. */
      enabled: z.boolean().optional(),
      /** A WAV (8 kHz µ-law or 16-bit PCM, mono) or raw .ulaw file, relative to the agent file: played before the greeting of a recorded call. */
      disclosure_file: text.optional(),
      opt_out_digit: keypadDigit.optional(),
    })
    .default({}),
  outbound: z
    .strictObject({
      caller_id: e164.optional(),
      voicemail: z.union([z.literal('hangup'), messageObject], { error: 'must be hangup or { message: "…" }' }).default('hangup'),
      allow: z.array(e164Prefix).default([]),
      deny: z.array(e164Prefix).default([]),
    })
    .default({ voicemail: 'hangup', allow: [], deny: [] }),
});

export type AgentFile = z.output<typeof AgentFileSchema>;
export type HttpToolFile = z.output<typeof HttpToolSchema>;
export type TargetFile = z.output<typeof TargetSchema>;

/** `tools[1].headers.Authorization` from zod's path. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out ? `.${String(p)}` : String(p);
  }
  return out;
}

/** Every issue of a failed parse as `path: message`; an unknown key is one problem of its own, at its own path. */
export function issueProblems(issues: readonly z.core.$ZodIssue[], prefix: readonly PropertyKey[] = []): string[] {
  const out: string[] = [];
  for (const issue of issues) {
    const path = [...prefix, ...issue.path];
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) out.push(`${formatPath([...path, key])}: unknown key`);
      continue;
    }
    out.push(`${formatPath(path) || '(file)'}: ${plainMessage(issue)}`);
  }
  return out;
}

/** zod's default wording, said the way a person editing the file needs it; custom messages pass through. */
function plainMessage(issue: z.core.$ZodIssue): string {
  const m = issue.message;
  if (issue.code === 'invalid_type') {
    const received = /received (\w+)$/.exec(m)?.[1];
    if (received === 'undefined') return 'required';
    return `must be ${/^[aeiou]/.test(issue.expected) ? 'an' : 'a'} ${issue.expected}${received ? ` (found ${received})` : ''}`;
  }
  if (issue.code === 'too_small' && m.startsWith('Too small') && issue.origin === 'number') return `must be at least ${issue.minimum}`;
  if (issue.code === 'too_big' && m.startsWith('Too big') && issue.origin === 'number') return `must be at most ${issue.maximum}`;
  return m.replace(/^Invalid input: /, '');
}
