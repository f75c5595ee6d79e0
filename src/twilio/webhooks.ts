/**
 * Twilio webhook bodies: form parsing and typed parsers (zod) for the voice
 * webhook, the call status callback and the stream status callback. The edge
 * (src/server) parses every webhook here, so the call layer only ever sees
 * these typed values. Pure: no I/O.
 *
 * Contract:
 * - The parse functions never throw; they return `{ ok: false, error }`
 *   naming every bad field (names and rules only, never the values).
 * - SIDs follow Twilio's shape: a two-letter prefix and 32 hex digits
 *   (CallSid CA…, AccountSid AC…, StreamSid MZ…).
 * - Caller numbers (`from`, `to`) are personal data: log them only as
 *   structured fields (they are in log.ts REDACT).
 */
import { z } from 'zod';

/** Body of a Twilio form POST, or query params: names to values. */
export type FormParams = Record<string, string>;

export type ParseResult<T> = { ok: true; value: T } | { ok: false; error: string };

/**
 * Parse an application/x-www-form-urlencoded body. Never throws; malformed
 * escapes are kept as literal text; a repeated name keeps its last value.
 */
export function parseForm(body: string | Buffer): FormParams {
  const text = typeof body === 'string' ? body : body.toString('utf8');
  const out: FormParams = Object.create(null) as FormParams;
  for (const [k, v] of new URLSearchParams(text)) out[k] = v;
  return out;
}

/**
 * How many fields a form body holds at most: its `&`-separated pieces (empty
 * ones included, so never fewer than parseForm finds). Counted on the bytes,
 * without decoding, so a body can be refused for its field count cheaply.
 */
export function countFormFields(body: Buffer): number {
  let n = 1;
  for (let i = body.indexOf(0x26); i !== -1; i = body.indexOf(0x26, i + 1)) n++;
  return n;
}

// ---------------------------------------------------------------------------
// Webhook bodies

/** Twilio SIDs: prefix + 32 hex digits (Twilio writes them in lower case; either case is accepted). */
const sid = (prefix: 'CA' | 'AC' | 'MZ') => z.string().regex(new RegExp(`^${prefix}[0-9a-fA-F]{32}$`), `expected ${prefix} and 32 hex digits`);
const wireInt = z.string().regex(/^\d{1,15}$/, 'expected a non-negative integer').transform(Number);

export const CALL_STATUSES = [
  'queued', 'initiated', 'ringing', 'in-progress', 'completed', 'busy', 'failed', 'no-answer', 'canceled',
] as const;
export type CallStatus = (typeof CALL_STATUSES)[number];
/** Statuses after which the call is over. */
export const TERMINAL_CALL_STATUSES: ReadonlySet<CallStatus> = new Set<CallStatus>([
  'completed', 'busy', 'failed', 'no-answer', 'canceled',
]);

/** The call fields Twilio sends with every voice webhook and call status callback. */
const CallParamsSchema = z.object({
  CallSid: sid('CA'),
  AccountSid: sid('AC'),
  From: z.string().default(''),
  To: z.string().default(''),
  Direction: z.string().default(''),
  CallStatus: z.enum(CALL_STATUSES),
});

const callFields = (v: z.output<typeof CallParamsSchema>) => ({
  callSid: v.CallSid,
  accountSid: v.AccountSid,
  from: v.From,
  to: v.To,
  direction: v.Direction,
  callStatus: v.CallStatus,
});

/** POST /voice/incoming (Twilio's voice webhook). */
export const VoiceWebhookSchema = CallParamsSchema.extend({
  Direction: z.string().default('inbound'),
  ApiVersion: z.string().optional(),
}).transform(callFields);
export type VoiceWebhook = z.output<typeof VoiceWebhookSchema>;

/** POST /voice/status (call status callback). SequenceNumber starts at 0; callbacks may arrive out of order. */
export const StatusCallbackSchema = CallParamsSchema.extend({
  /** Seconds; present on terminal statuses. */
  CallDuration: wireInt.optional(),
  /** RFC 2822 date, e.g. "Wed, 25 Nov 2026 07:46:45 +0000". */
  Timestamp: z.string().optional(),
  SequenceNumber: wireInt.optional(),
}).transform((v) => ({
  ...callFields(v),
  terminal: TERMINAL_CALL_STATUSES.has(v.CallStatus),
  callDurationS: v.CallDuration,
  timestamp: v.Timestamp,
  /** ms since epoch, when Timestamp parses. */
  timestampMs: v.Timestamp !== undefined && !Number.isNaN(Date.parse(v.Timestamp)) ? Date.parse(v.Timestamp) : undefined,
  sequenceNumber: v.SequenceNumber,
}));
export type StatusCallback = z.output<typeof StatusCallbackSchema>;

/** `<Stream statusCallback>` POST. */
export const StreamStatusCallbackSchema = z
  .object({
    AccountSid: sid('AC'),
    CallSid: sid('CA'),
    StreamSid: sid('MZ'),
    StreamName: z.string().optional(),
    StreamEvent: z.enum(['stream-started', 'stream-stopped', 'stream-error']),
    StreamError: z.string().optional(),
    Timestamp: z.string().optional(),
  })
  .transform((v) => ({
    accountSid: v.AccountSid,
    callSid: v.CallSid,
    streamSid: v.StreamSid,
    streamName: v.StreamName,
    streamEvent: v.StreamEvent,
    streamError: v.StreamError,
    timestamp: v.Timestamp,
  }));
export type StreamStatusCallback = z.output<typeof StreamStatusCallbackSchema>;

/** POST /voice/action: Twilio asks what comes next once a `<Connect>` ended (the stream closed). The call's fields only. */
export const ConnectActionWebhookSchema = CallParamsSchema.transform(callFields);
export type ConnectActionWebhook = z.output<typeof ConnectActionWebhookSchema>;

export const DIAL_CALL_STATUSES = ['completed', 'answered', 'busy', 'no-answer', 'failed', 'canceled'] as const;
export type DialCallStatus = (typeof DIAL_CALL_STATUSES)[number];

/** POST /voice/dial-action: a `<Dial>` ended; DialCallStatus says how (completed/answered = the person was reached). */
export const DialActionWebhookSchema = CallParamsSchema.extend({
  DialCallStatus: z.enum(DIAL_CALL_STATUSES),
  DialCallSid: sid('CA').optional(),
  /** Seconds the dialled leg lasted. */
  DialCallDuration: wireInt.optional(),
}).transform((v) => ({
  ...callFields(v),
  dialCallStatus: v.DialCallStatus,
  dialCallSid: v.DialCallSid,
  dialCallDurationS: v.DialCallDuration,
  /** The person was reached (the dial connected). */
  reached: v.DialCallStatus === 'completed' || v.DialCallStatus === 'answered',
}));
export type DialActionWebhook = z.output<typeof DialActionWebhookSchema>;

export const ANSWERED_BY = ['human', 'machine_start', 'machine_end_beep', 'machine_end_silence', 'machine_end_other', 'fax', 'unknown'] as const;
export type AnsweredBy = (typeof ANSWERED_BY)[number];

/** POST /voice/amd: asynchronous answering-machine detection's result (MachineDetection=DetectMessageEnd, AsyncAmd=true). */
export const AmdCallbackSchema = z
  .object({
    CallSid: sid('CA'),
    AccountSid: sid('AC'),
    AnsweredBy: z.enum(ANSWERED_BY),
    /** ms AMD took. */
    MachineDetectionDuration: wireInt.optional(),
  })
  .transform((v) => ({
    callSid: v.CallSid,
    accountSid: v.AccountSid,
    answeredBy: v.AnsweredBy,
    detectionMs: v.MachineDetectionDuration,
    /** A machine's greeting has ended (the beep, or silence after it): the moment to leave a message. */
    messageEnded: v.AnsweredBy === 'machine_end_beep' || v.AnsweredBy === 'machine_end_silence' || v.AnsweredBy === 'machine_end_other',
  }));
export type AmdCallback = z.output<typeof AmdCallbackSchema>;

function parseWith<T>(schema: z.ZodType<T, FormParams>, params: FormParams): ParseResult<T> {
  const r = schema.safeParse(params);
  if (r.success) return { ok: true, value: r.data };
  return { ok: false, error: r.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; ') };
}

export function parseVoiceWebhook(params: FormParams): ParseResult<VoiceWebhook> {
  return parseWith(VoiceWebhookSchema, params);
}

export function parseStatusCallback(params: FormParams): ParseResult<StatusCallback> {
  return parseWith(StatusCallbackSchema, params);
}

export function parseStreamStatusCallback(params: FormParams): ParseResult<StreamStatusCallback> {
  return parseWith(StreamStatusCallbackSchema, params);
}

export function parseConnectAction(params: FormParams): ParseResult<ConnectActionWebhook> {
  return parseWith(ConnectActionWebhookSchema, params);
}

export function parseDialAction(params: FormParams): ParseResult<DialActionWebhook> {
  return parseWith(DialActionWebhookSchema, params);
}

export function parseAmdCallback(params: FormParams): ParseResult<AmdCallback> {
  return parseWith(AmdCallbackSchema, params);
}
