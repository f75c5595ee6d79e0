/**
 * A tool served over HTTP, as the agent file declares it (HttpToolDef).
 *
 * Contract:
 * - The model's arguments are checked against `parameters` (JSON Schema
 *   draft 2020-12, compiled once at creation, every problem listed). Invalid
 *   arguments are answered to the model with what is wrong, so it can ask the
 *   caller again; nothing is sent.
 * - One call = `POST url` with `{"call_sid", "caller" (only with
 *   sendCallerNumber), "arguments"}` as JSON, the file's headers (secrets read
 *   from the environment once, at creation), redirects not followed. The
 *   whole call, retries and waits included, fits in `timeoutMs`.
 * - The answer must be 2xx with a JSON body of at most MAX_RESPONSE_BYTES;
 *   the model gets that JSON (at most MAX_OUTPUT_CHARS of it). Anything else
 *   — another status, not JSON, too big, unreachable, too slow, the breaker
 *   open, a header variable missing — answers `{"error": TOOL_TROUBLE}`, the
 *   line the caller hears instead of silence.
 * - Only an idempotent tool is tried again: after 429/503 (waiting its
 *   Retry-After, seconds or an HTTP date; a short backoff without one) or a
 *   network error, at most `retries` more times, and only when the wait ends
 *   inside the time budget (otherwise it gives up at once). A timeout is not
 *   retried: the budget is spent.
 * - A circuit breaker per tool (breaker.ts, on `now`): DEFAULT_BREAKER_THRESHOLD
 *   calls in a row that found the back end down (timeout, network error,
 *   5xx, 429, a 2xx that is not JSON or too big) open it for
 *   DEFAULT_BREAKER_COOLDOWN_MS; while open the tool answers `circuit_open`
 *   at once and sends nothing. A 3xx/4xx answer is a failure for the model
 *   but proves the back end up; invalid arguments and calls cancelled by the
 *   caller do not count.
 * - The record holds `{ status, attempts }` and, under `result`, the
 *   response's top-level fields named in `recordFields` (['*'] = all); the
 *   output the call record keeps is those fields too (the model gets it all); on a
 *   failure `{ error, status?, attempts }` with error one of timeout,
 *   http_<status>, bad_json, too_large, network, circuit_open,
 *   invalid_arguments, missing_secret, aborted. Header values never reach a
 *   log line or the record; logs name the tool, the call and the error code.
 */
import { Ajv2020, type ErrorObject } from 'ajv/dist/2020.js';
import type { Logger } from '../log.js';
import { retryAfterMs } from './backends.js';
import { CircuitBreaker, DEFAULT_BREAKER_COOLDOWN_MS, DEFAULT_BREAKER_THRESHOLD } from './breaker.js';
import { TOOL_TROUBLE, type Tool, type ToolContext, type ToolOutcome } from './registry.js';
import type { HttpToolDef } from './spec.js';

/** The most of a response body read, bytes; a bigger one is an error. */
export const MAX_RESPONSE_BYTES = 64 * 1024;
/** The most of a response the model is given, characters of JSON. */
export const MAX_OUTPUT_CHARS = 4096;
/** First backoff before a retry without Retry-After, ms (doubles each retry, jittered). */
const BACKOFF_MS = 100;

export interface HttpToolDeps {
  env: Record<string, string | undefined>;
  log: Logger;
  /** The breaker's clock, ms (default Date.now). */
  now?: () => number;
  fetch?: typeof fetch;
  /** Breaker settings (defaults DEFAULT_BREAKER_THRESHOLD, DEFAULT_BREAKER_COOLDOWN_MS). */
  breaker?: { threshold: number; cooldownMs: number };
}

export type ArgumentCheck = (args: unknown) => string[];

/**
 * Compile a tool's parameters (JSON Schema draft 2020-12) into a check that
 * lists every problem with an argument, as sentences the model can relay.
 * A schema that does not compile (bad keyword, unknown format) is a value,
 * for the agent file's checker to report.
 */
export function compileArguments(schema: Record<string, unknown>): { ok: true; check: ArgumentCheck } | { ok: false; problem: string } {
  const ajv = new Ajv2020({ allErrors: true, verbose: true, strictTypes: false, strictTuples: false, logger: false });
  for (const [name, test] of Object.entries(FORMATS)) ajv.addFormat(name, test);
  try {
    const validate = ajv.compile(schema);
    return { ok: true, check: (args) => (validate(args) ? [] : (validate.errors ?? []).map(describeError)) };
  } catch (err) {
    return { ok: false, problem: err instanceof Error ? err.message : String(err) };
  }
}

/** Formats the agent files may use (ajv knows none by itself); any other format is a schema problem. */
const FORMATS: Record<string, (s: string) => boolean> = {
  date: (s) => {
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s);
    if (!m) return false;
    const d = new Date(Date.UTC(+m[1], +m[2] - 1, +m[3]));
    return d.getUTCFullYear() === +m[1] && d.getUTCMonth() === +m[2] - 1 && d.getUTCDate() === +m[3];
  },
  time: (s) => /^([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?(z|[+-]([01]\d|2[0-3]):[0-5]\d)?$/i.test(s),
  'date-time': (s) => /^\d{4}-\d{2}-\d{2}t\d{2}:\d{2}:\d{2}(\.\d+)?(z|[+-]\d{2}:\d{2})$/i.test(s) && !Number.isNaN(Date.parse(s)),
  email: (s) => /^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(s),
  uuid: (s) => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s),
  uri: (s) => URL.canParse(s) && /^[a-z][a-z0-9+.-]*:/i.test(s),
};

/**
 * One problem as the model can relay it: where (a dotted path), what is
 * wrong, and the field's own description when the schema has one. Never the
 * value itself (it may be personal data, and the record keeps these).
 */
function describeError(e: ErrorObject): string {
  const path = e.instancePath
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .join('.');
  const at = path || 'arguments';
  const params = e.params as Record<string, unknown>;
  const parent = (e.parentSchema ?? {}) as { description?: unknown; properties?: Record<string, { description?: unknown }> };
  const hint = (d: unknown) => (typeof d === 'string' && d.trim() !== '' ? ` (${d.trim()})` : '');
  switch (e.keyword) {
    case 'required': {
      const missing = String(params.missingProperty);
      return `${path ? `${path}.` : ''}${missing} is missing${hint(parent.properties?.[missing]?.description)}`;
    }
    case 'additionalProperties':
      return `${at}: unexpected field ${String(params.additionalProperty)}`;
    case 'enum':
      return `${at}: must be one of ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    default:
      return `${at}: ${e.message ?? e.keyword}${path ? hint(parent.description) : ''}`;
  }
}

/** How one call went, before it becomes an outcome. */
type Result =
  | { kind: 'ok'; status: number; json: unknown; attempts: number }
  | { kind: 'failed'; error: string; status?: number; attempts: number }
  | { kind: 'aborted'; attempts: number };

/** How one attempt went. */
type Attempt =
  | { kind: 'ok'; status: number; json: unknown }
  | { kind: 'http'; status: number; retryAfterMs: number | undefined }
  | { kind: 'bad_json' | 'too_large'; status: number }
  | { kind: 'network' }
  | { kind: 'cut' }; // the deadline or the caller's signal

export function createHttpTool(def: HttpToolDef, deps: HttpToolDeps): Tool {
  const compiled = compileArguments(def.parameters);
  if (!compiled.ok) throw new Error(`tool ${def.name}: parameters is not a usable JSON Schema: ${compiled.problem}`);
  const check = compiled.check;
  const log = deps.log.child({ tool: def.name });
  const doFetch = deps.fetch ?? fetch;
  const breaker = new CircuitBreaker({
    threshold: deps.breaker?.threshold ?? DEFAULT_BREAKER_THRESHOLD,
    cooldownMs: deps.breaker?.cooldownMs ?? DEFAULT_BREAKER_COOLDOWN_MS,
    now: deps.now ?? Date.now,
  });

  // Headers are resolved once; a problem is logged once, by header or variable NAME (never a value).
  let headerProblem: string | undefined;
  const resolved: Record<string, string> = {};
  for (const [name, source] of Object.entries(def.headers)) {
    if ('value' in source) {
      resolved[name] = source.value;
      continue;
    }
    const v = deps.env[source.env];
    if (v === undefined || v === '') {
      headerProblem ??= 'missing_secret';
      log.warn({ header: name, env: source.env }, 'http tool: header variable is not set; the tool answers with an error');
      continue;
    }
    resolved[name] = (source.prefix ?? '') + v;
  }
  let headers: Headers | undefined;
  try {
    headers = new Headers({ accept: 'application/json', ...resolved, 'content-type': 'application/json' });
  } catch {
    headerProblem ??= 'bad_header';
    log.warn({ headers: Object.keys(def.headers) }, 'http tool: a header value is not valid in HTTP; the tool answers with an error');
  }

  const trouble = (record: Record<string, unknown>): ToolOutcome => ({ ok: false, output: JSON.stringify({ error: TOOL_TROUBLE }), record });

  /** One request; `cut` when the signal ended it. */
  async function attempt(body: string, signal: AbortSignal): Promise<Attempt> {
    let res: Response;
    try {
      res = await doFetch(def.url, { method: 'POST', headers, body, signal, redirect: 'manual' });
    } catch {
      return signal.aborted ? { kind: 'cut' } : { kind: 'network' };
    }
    if (res.status < 200 || res.status > 299) {
      await res.body?.cancel().catch(() => undefined);
      return { kind: 'http', status: res.status, retryAfterMs: retryAfterMs(res.headers.get('retry-after')) };
    }
    let bytes: Uint8Array;
    try {
      const read = await readCapped(res, MAX_RESPONSE_BYTES);
      if (read === undefined) return { kind: 'too_large', status: res.status };
      bytes = read;
    } catch {
      return signal.aborted ? { kind: 'cut' } : { kind: 'network' };
    }
    try {
      return { kind: 'ok', status: res.status, json: JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)) };
    } catch {
      return { kind: 'bad_json', status: res.status };
    }
  }

  async function send(args: unknown, ctx: ToolContext): Promise<Result> {
    const body = JSON.stringify(
      def.sendCallerNumber ? { call_sid: ctx.callSid, caller: ctx.from ?? null, arguments: args } : { call_sid: ctx.callSid, arguments: args },
    );
    const startedMs = performance.now();
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), def.timeoutMs);
    const signal = AbortSignal.any([ctx.signal, deadline.signal]);
    const cut = (attempts: number): Result => (ctx.signal.aborted ? { kind: 'aborted', attempts } : { kind: 'failed', error: 'timeout', attempts });
    try {
      for (let attempts = 1; ; attempts++) {
        const a = await attempt(body, signal);
        if (a.kind === 'cut') return cut(attempts);
        if (a.kind === 'ok') return { kind: 'ok', status: a.status, json: a.json, attempts };
        const failed: Result =
          a.kind === 'network' ? { kind: 'failed', error: 'network', attempts }
          : a.kind === 'http' ? { kind: 'failed', error: `http_${a.status}`, status: a.status, attempts }
          : { kind: 'failed', error: a.kind, status: a.status, attempts };
        const retryable = a.kind === 'network' || (a.kind === 'http' && (a.status === 429 || a.status === 503));
        if (!def.idempotent || !retryable || attempts > def.retries) return failed;
        const waitMs = (a.kind === 'http' ? a.retryAfterMs : undefined) ?? BACKOFF_MS * 2 ** (attempts - 1) * (0.5 + Math.random());
        // The answer would come after the budget: give up now rather than keep the caller waiting for a timeout.
        if (waitMs >= def.timeoutMs - (performance.now() - startedMs)) return failed;
        if (!(await sleep(waitMs, signal))) return cut(attempts);
      }
    } finally {
      clearTimeout(timer);
    }
  }

  return {
    name: def.name,
    description: def.description,
    parameters: def.parameters,
    filler: def.filler,
    timeoutMs: def.timeoutMs,
    async run(args: unknown, ctx: ToolContext): Promise<ToolOutcome> {
      const problems = check(args);
      if (problems.length > 0) {
        return { ok: false, output: JSON.stringify({ error: 'invalid_arguments', ask_again: problems.join('; ') }), record: { error: 'invalid_arguments', problems } };
      }
      if (headerProblem) return trouble({ error: headerProblem, attempts: 0 });
      if (!breaker.admit()) {
        log.debug({ callSid: ctx.callSid }, 'http tool: circuit open, not called');
        return trouble({ error: 'circuit_open', attempts: 0 });
      }
      const r = await send(args, ctx);
      if (r.kind === 'aborted') {
        breaker.release();
        return trouble({ error: 'aborted', attempts: r.attempts });
      }
      if (r.kind === 'failed') {
        log.warn({ callSid: ctx.callSid, error: r.error, status: r.status, attempts: r.attempts }, 'http tool failed');
        if (!backEndDown(r)) breaker.success(); // it answered, and at once: up, if unhelpful
        else {
          const before = breaker.state;
          breaker.failure();
          const after: string = breaker.state;
          if (before !== 'open' && after === 'open') log.warn({ callSid: ctx.callSid }, 'http tool: circuit opened after repeated failures');
        }
        return trouble({ error: r.error, ...(r.status !== undefined ? { status: r.status } : {}), attempts: r.attempts });
      }
      breaker.success();
      const kept = pick(r.json, def.recordFields);
      return { ok: true, output: capOutput(r.json), record: { status: r.status, attempts: r.attempts, result: kept }, recordOutput: JSON.stringify(kept) };
    },
  };
}

/** Does a failure count against the breaker? Not a 3xx/4xx (other than 429): the back end answered, promptly. */
function backEndDown(r: { error: string; status?: number }): boolean {
  if (r.status === undefined || r.error === 'bad_json' || r.error === 'too_large') return true;
  return r.status === 429 || r.status >= 500;
}

/** The body, or undefined when it is longer than `maxBytes` (the rest is not read). Throws when the read fails or is aborted. */
async function readCapped(res: Response, maxBytes: number): Promise<Uint8Array | undefined> {
  if (!res.body) return new Uint8Array(0);
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel().catch(() => undefined);
      return undefined;
    }
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** The JSON for the model; past MAX_OUTPUT_CHARS, a prefix of it, marked as cut. */
function capOutput(json: unknown): string {
  const s = JSON.stringify(json);
  if (s.length <= MAX_OUTPUT_CHARS) return s;
  let keep = MAX_OUTPUT_CHARS - 64;
  for (;;) {
    const out = JSON.stringify({ truncated: true, partial: s.slice(0, keep) });
    if (out.length <= MAX_OUTPUT_CHARS || keep <= 0) return out;
    keep -= out.length - MAX_OUTPUT_CHARS;
  }
}

/** The response's top-level fields kept in the record. */
function pick(json: unknown, fields: string[]): Record<string, unknown> {
  if (fields.length === 0 || json === null || typeof json !== 'object' || Array.isArray(json)) return {};
  const obj = json as Record<string, unknown>;
  if (fields.includes('*')) return { ...obj };
  const out: Record<string, unknown> = {};
  for (const f of fields) if (Object.hasOwn(obj, f)) out[f] = obj[f];
  return out;
}

/** Wait `ms`; false when the signal ended the wait. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(false);
    const onAbort = () => {
      clearTimeout(t);
      resolve(false);
    };
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
