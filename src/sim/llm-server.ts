/**
 * A local stand-in for an OpenAI-compatible Chat Completions endpoint
 * (docs/llm-protocol.md), for tests, the demo and the bench; written from the
 * protocol, no code shared with src/pipeline.
 *
 * - `POST /v1/chat/completions`, `Authorization: Bearer <key>` (401 with the
 *   OpenAI error body when missing, or wrong when `apiKey` is set), a JSON
 *   body of at most `maxBodyBytes` (413 beyond). Validated as the API does
 *   (400 `{error:{message,type,param,code}}`): `model`, non-empty
 *   `messages` with string content, every `tool` message answering a call of
 *   the assistant message before it and every call answered, `tools` not
 *   empty. Only `stream: true` is served here.
 * - The answer is an SSE stream (`data: {chunk}\n\n` … `data: [DONE]\n\n`) of
 *   `chat.completion.chunk`s: a role chunk, text a word or punctuation mark
 *   per chunk, each tool call as a first delta (index, id, name) and its JSON
 *   arguments in several deltas, a chunk with `finish_reason`, and with
 *   `stream_options.include_usage` a last chunk with `choices: []` and the
 *   usage (every other chunk then has `usage: null`).
 * - Timing: the first chunk `firstTokenMs` (+ U(0, jitterMs), seeded) after
 *   the request, then one chunk every `tokenMs` (each due at a fixed time from
 *   the request: timer lateness does not add up); each write's time is recorded.
 * - What it says is the `scenario`'s (default eligibilityScenario), chosen
 *   from the messages alone (see `scenarioAnswer`).
 * - Usage: prompt tokens ⌈chars/4⌉ of the messages' text, completion tokens
 *   ⌈chars/4⌉ of the answer (text, call names, arguments). Cached tokens as
 *   OpenAI's prompt cache counts them: the longest run of leading messages
 *   this stand-in saw in an earlier request, in tokens, when it is at least
 *   1024, rounded down to a multiple of 128; else 0.
 * - Faults by request index (absent: every request): `429` (retry-after,
 *   retry-after-ms headers; `rate_limit_exceeded` or another code such as
 *   `insufficient_quota`), `500`, `drop_mid_stream` (socket destroyed after
 *   N chunks), `slow` (headers at once, the first chunk after `delayMs`).
 *
 * Every request is recorded: arrival time, body, status, the answer given,
 * whether the client went away before the stream ended.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { eligibilityScenario, type Scenario, type ScenarioCall } from './scenarios.js';

/** How callbridge words keypad input as a user message (as the Realtime stand-in reads it): not a spoken caller turn. */
export const KEYPAD_TEXT = 'The caller pressed these keys';
/** The answer to a one-off instruction (a system message after the conversation has a caller turn). */
export const ONE_OFF_REPLY = 'One moment, please.';
/** The answer when the scenario has nothing for the request (turns used up, or the assistant spoke last). */
export const STOCK_REPLY = 'Okay.';

const CHARS_PER_TOKEN = 4;
const CACHE_MIN_TOKENS = 1024;
const CACHE_STEP_TOKENS = 128;
/** Deltas one call's arguments are streamed in (at least). */
const ARGS_DELTAS = 3;

export type LlmFault =
  | { kind: '429'; request?: number; retryAfterMs?: number; code?: string }
  | { kind: '500'; request?: number }
  | { kind: 'drop_mid_stream'; request?: number; afterChunks?: number }
  | { kind: 'slow'; request?: number; delayMs?: number };

export interface LlmStandInOptions {
  port?: number;
  host?: string;
  /** When set, the bearer key must equal it. */
  apiKey?: string;
  scenario?: Scenario;
  /** Request to first chunk (ms, default 350: about gpt-4o-mini's published time to first token). */
  firstTokenMs?: number;
  /** Between chunks (ms, default 10). */
  tokenMs?: number;
  /** Added to firstTokenMs, uniform 0…jitterMs (default 0). */
  jitterMs?: number;
  seed?: number;
  faults?: LlmFault[];
  /** Largest request body (bytes, default 1 MiB). */
  maxBodyBytes?: number;
}

export interface LlmAnswer {
  text: string;
  calls: { name: string; arguments: string }[];
}

export interface LlmStandInRequest {
  index: number;
  /** Arrival, ms since the stand-in started. */
  atMs: number;
  body: Record<string, unknown>;
  status: number;
  answer?: LlmAnswer;
  /** Chunks written (the usage chunk included, [DONE] not). */
  chunksSent: number;
  /** When each write of chunks went out, ms since the stand-in started (the first carries the role chunk too). */
  sentAtMs: number[];
  /** The client went away before the stream ended. */
  aborted: boolean;
}

export interface LlmStandIn {
  /** `http://127.0.0.1:PORT/v1`: the `openai` package's baseURL. */
  readonly url: string;
  readonly port: number;
  readonly requests: LlmStandInRequest[];
  /** performance.now() when the stand-in started: the origin of the requests' atMs and sentAtMs. */
  readonly startedAt: number;
  close(): Promise<void>;
}

interface WireCall {
  id: string;
  type: string;
  function: { name: string; arguments: string };
}

interface WireMessage {
  role: string;
  content: string | null;
  tool_calls?: WireCall[];
  tool_call_id?: string;
}

// ---------------------------------------------------------------------------
// What the scenario says

/**
 * The answer to a conversation, from its messages alone (the wire carries the
 * whole conversation each time). Caller turns are user messages other than
 * keypad text; turn N (from 0) is answered after the (N+1)-th of them.
 * 1. Last message a tool output: the follow-up of the current turn, built
 *    from the outputs of the last assistant message's calls in call order
 *    (`followUp(outputs)`, else `tool.reply(outputs[0])`).
 * 2. Last message keypad text: `scenario.onUserText`.
 * 3. Last message the assistant's: `scenario.resume`, else "Okay.".
 * 4. No caller turn yet: the greeting (whatever system messages come last).
 * 5. Last message a system message: a one-off instruction, "One moment, please.".
 * 6. Last message a caller turn: preamble, reply and replies as text, and
 *    `tool`/`tools` as tool calls ("Okay." past the last turn).
 */
export function scenarioAnswer(scenario: Scenario, messages: readonly WireMessage[]): LlmAnswer {
  const last = messages[messages.length - 1]!;
  const turnIndex = messages.filter((m) => m.role === 'user' && !isKeypad(m)).length - 1;
  const turn = turnIndex >= 0 ? scenario.turns[turnIndex] : undefined;
  const say = (text: string): LlmAnswer => ({ text, calls: [] });
  if (last.role === 'tool') {
    const outputs = toolOutputs(messages);
    const said = turn?.followUp ? turn.followUp(outputs) : turn?.tool ? turn.tool.reply(outputs[0] ?? '') : STOCK_REPLY;
    return say(Array.isArray(said) ? said.join(' ') : said);
  }
  if (last.role === 'user' && isKeypad(last)) {
    const text = last.content ?? '';
    return say(scenario.onUserText?.(text) ?? `You pressed ${text.replace(/[^0-9*#]/g, '')}.`);
  }
  if (last.role === 'assistant') return say(scenario.resume ?? STOCK_REPLY);
  if (turnIndex < 0) return say(scenario.greeting);
  if (last.role !== 'user') return say(ONE_OFF_REPLY);
  if (!turn) return say(STOCK_REPLY);
  const text = [turn.preamble, turn.reply, ...(turn.replies ?? [])].filter((t): t is string => !!t).join(' ');
  const calls: ScenarioCall[] = [...(turn.tool ? [turn.tool] : []), ...(turn.tools ?? [])];
  return { text, calls: calls.map((c) => ({ name: c.name, arguments: JSON.stringify(c.arguments) })) };
}

function isKeypad(m: WireMessage): boolean {
  return (m.content ?? '').startsWith(KEYPAD_TEXT);
}

/** The outputs of the last assistant message's calls, in call order. */
function toolOutputs(messages: readonly WireMessage[]): string[] {
  let a = messages.length - 1;
  while (a >= 0 && messages[a]!.role === 'tool') a--;
  const byId = new Map(messages.slice(a + 1).map((m) => [m.tool_call_id, m.content ?? '']));
  return (messages[a]?.tool_calls ?? []).map((c) => byId.get(c.id) ?? '');
}

// ---------------------------------------------------------------------------
// Validation (the API's 400s)

interface Bad {
  message: string;
  param: string | null;
  code: string | null;
}

function validate(body: Record<string, unknown>): Bad | WireMessage[] {
  if (typeof body.model !== 'string' || body.model === '') return { message: "Missing required parameter: 'model'.", param: 'model', code: 'missing_required_parameter' };
  const msgs = body.messages;
  if (!Array.isArray(msgs)) return { message: "Missing required parameter: 'messages'.", param: 'messages', code: 'missing_required_parameter' };
  if (msgs.length === 0) {
    return { message: "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.", param: 'messages', code: 'empty_array' };
  }
  if (body.tools !== undefined && (!Array.isArray(body.tools) || body.tools.length === 0)) {
    return { message: "Invalid 'tools': empty array. Expected an array with minimum length 1, but got an empty array instead.", param: 'tools', code: 'empty_array' };
  }
  if (body.stream !== true) return { message: 'The stand-in serves stream: true only.', param: 'stream', code: null };
  const out: WireMessage[] = [];
  let open: Set<string> | null = null;
  let openAt = 0;
  for (let i = 0; i < msgs.length; i++) {
    const m = msgs[i] as WireMessage;
    const role = m?.role;
    if (!['system', 'developer', 'user', 'assistant', 'tool'].includes(role)) {
      return { message: `Invalid value: '${String(role).slice(0, 40)}'. Supported values are: 'system', 'assistant', 'user', 'tool', 'function' and 'developer'.`, param: `messages[${i}].role`, code: 'invalid_value' };
    }
    const calls = role === 'assistant' && Array.isArray(m.tool_calls) && m.tool_calls.length > 0 ? m.tool_calls : undefined;
    if (typeof m.content !== 'string' && !(calls && m.content == null)) {
      return { message: `Invalid 'messages[${i}].content': the stand-in takes string content only.`, param: `messages[${i}].content`, code: 'invalid_type' };
    }
    if (role === 'tool') {
      if (!open || !open.delete(String(m.tool_call_id))) {
        return { message: "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.", param: `messages.[${i}].role`, code: null };
      }
    } else if (open && open.size > 0) {
      return unanswered(open, openAt);
    } else open = null;
    if (calls) {
      for (const c of calls) {
        if (c?.type !== 'function' || typeof c.id !== 'string' || typeof c.function?.name !== 'string' || typeof c.function?.arguments !== 'string') {
          return { message: `Invalid 'messages[${i}].tool_calls': each needs id, type "function" and function {name, arguments}.`, param: `messages[${i}].tool_calls`, code: 'invalid_type' };
        }
      }
      open = new Set(calls.map((c) => c.id));
      openAt = i;
    }
    out.push(m);
  }
  if (open && open.size > 0) return unanswered(open, openAt);
  return out;
}

function unanswered(open: Set<string>, at: number): Bad {
  return {
    message: `An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: ${[...open].join(', ')}`,
    param: `messages.[${at}].role`,
    code: null,
  };
}

// ---------------------------------------------------------------------------
// The stream

/** A word with its leading space, or a run of punctuation: the stand-in's "tokens". */
function textPieces(text: string): string[] {
  return text.match(/\s*[\w'’]+|\s*[^\w\s]+|\s+/g) ?? [];
}

function argPieces(args: string): string[] {
  const size = Math.max(1, Math.ceil(args.length / ARGS_DELTAS));
  const out: string[] = [];
  for (let i = 0; i < args.length; i += size) out.push(args.slice(i, i + size));
  return out.length > 0 ? out : [''];
}

function tokens(chars: number): number {
  return Math.ceil(chars / CHARS_PER_TOKEN);
}

function messageChars(m: WireMessage): number {
  return (m.content ?? '').length + (m.tool_calls ?? []).reduce((n, c) => n + c.function.name.length + c.function.arguments.length, 0);
}

function apiError(res: ServerResponse, status: number, err: { message: string; type: string; param?: string | null; code: string | null }, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify({ error: { message: err.message, type: err.type, param: err.param ?? null, code: err.code } }));
}

export async function startLlmStandIn(opts: LlmStandInOptions = {}): Promise<LlmStandIn> {
  const scenario = opts.scenario ?? eligibilityScenario;
  const firstTokenMs = opts.firstTokenMs ?? 350;
  const tokenMs = opts.tokenMs ?? 10;
  const maxBody = opts.maxBodyBytes ?? 1 << 20;
  const t0 = performance.now();
  let rnd = (opts.seed ?? 1) >>> 0 || 1;
  const random = (): number => (rnd = (Math.imul(rnd, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  const randomId = (n: number): string => {
    const abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
    let s = '';
    for (let i = 0; i < n; i++) s += abc[Math.floor(random() * abc.length)];
    return s;
  };
  const requests: LlmStandInRequest[] = [];
  /** Messages (JSON) of earlier requests, for the prompt-cache count. */
  const seen: string[][] = [];
  const sockets = new Set<Socket>();

  const cachedTokens = (msgs: WireMessage[]): number => {
    const keys = msgs.map((m) => JSON.stringify(m));
    let best = 0;
    for (const prev of seen) {
      let n = 0;
      while (n < keys.length && n < prev.length && keys[n] === prev[n]) n++;
      best = Math.max(best, tokens(msgs.slice(0, n).reduce((c, m) => c + messageChars(m), 0)));
    }
    seen.push(keys);
    return best >= CACHE_MIN_TOKENS ? best - (best % CACHE_STEP_TOKENS) : 0;
  };

  const serve = (res: ServerResponse, rec: LlmStandInRequest, msgs: WireMessage[]): void => {
    const fault = (opts.faults ?? []).find((f) => f.request === undefined || f.request === rec.index);
    if (fault?.kind === '429') {
      rec.status = 429;
      const ms = fault.retryAfterMs ?? 1000;
      const quota = fault.code === 'insufficient_quota';
      return apiError(
        res,
        429,
        quota
          ? { message: 'You exceeded your current quota, please check your plan and billing details.', type: 'insufficient_quota', code: 'insufficient_quota' }
          : { message: `Rate limit reached for ${String(rec.body.model)} on requests per min (RPM). Please try again in ${ms}ms.`, type: 'requests', code: fault.code ?? 'rate_limit_exceeded' },
        { 'retry-after': String(Math.ceil(ms / 1000)), 'retry-after-ms': String(ms), 'x-request-id': `req_${randomId(24)}` },
      );
    }
    if (fault?.kind === '500') {
      rec.status = 500;
      return apiError(res, 500, { message: 'The server had an error while processing your request. Sorry about that!', type: 'server_error', code: null });
    }
    const answer = scenarioAnswer(scenario, msgs);
    rec.answer = answer;
    const frames = buildFrames(rec, msgs, answer);
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-request-id': `req_${randomId(24)}` });
    res.flushHeaders();
    let next = 0;
    let timer: NodeJS.Timeout | undefined;
    res.on('close', () => {
      clearTimeout(timer);
      if (!res.writableFinished) rec.aborted = true;
    });
    // Each write is due at a fixed time from the request (first, then every tokenMs), so timer lateness does not add up over a long answer.
    const first = fault?.kind === 'slow' ? (fault.delayMs ?? 60_000) : firstTokenMs + random() * (opts.jitterMs ?? 0);
    const startAt = performance.now();
    let writes = 0;
    const send = (): void => {
      if (res.destroyed) return;
      // The role chunk goes out with the first piece of the answer.
      const n = next === 0 ? Math.min(2, frames.length) : 1;
      for (let k = 0; k < n; k++) res.write(`data: ${JSON.stringify(frames[next++])}\n\n`);
      rec.chunksSent = next;
      rec.sentAtMs.push(performance.now() - t0);
      writes++;
      if (fault?.kind === 'drop_mid_stream' && next >= (fault.afterChunks ?? 3)) return void res.socket?.destroy();
      if (next >= frames.length) return void res.end('data: [DONE]\n\n');
      timer = setTimeout(send, Math.max(0, startAt + first + writes * tokenMs - performance.now()));
    };
    timer = setTimeout(send, first);
  };

  const buildFrames = (rec: LlmStandInRequest, msgs: WireMessage[], answer: LlmAnswer): unknown[] => {
    const withUsage = (rec.body.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true;
    const base = { id: `chatcmpl-${randomId(29)}`, object: 'chat.completion.chunk', created: Math.floor(Date.now() / 1000), model: rec.body.model, system_fingerprint: 'fp_standin' };
    const chunk = (delta: Record<string, unknown>, finish: string | null = null) => ({
      ...base,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
      ...(withUsage ? { usage: null } : {}),
    });
    const frames: unknown[] = [chunk({ role: 'assistant', content: answer.text ? '' : null, refusal: null })];
    for (const p of textPieces(answer.text)) frames.push(chunk({ content: p }));
    answer.calls.forEach((c, index) => {
      frames.push(chunk({ tool_calls: [{ index, id: `call_${randomId(24)}`, type: 'function', function: { name: c.name, arguments: '' } }] }));
      for (const p of argPieces(c.arguments)) frames.push(chunk({ tool_calls: [{ index, function: { arguments: p } }] }));
    });
    frames.push(chunk({}, answer.calls.length > 0 ? 'tool_calls' : 'stop'));
    if (withUsage) {
      const prompt = tokens(msgs.reduce((n, m) => n + messageChars(m), 0));
      const completion = tokens(answer.text.length + answer.calls.reduce((n, c) => n + c.name.length + c.arguments.length, 0));
      frames.push({
        ...base,
        choices: [],
        usage: {
          prompt_tokens: prompt,
          completion_tokens: completion,
          total_tokens: prompt + completion,
          prompt_tokens_details: { cached_tokens: cachedTokens(msgs), audio_tokens: 0 },
          completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
        },
      });
    } else cachedTokens(msgs);
    return frames;
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const atMs = performance.now() - t0;
    const u = new URL(req.url ?? '/', 'http://x');
    if (req.method !== 'POST' || u.pathname !== '/v1/chat/completions') {
      return apiError(res, 404, { message: `Invalid URL (${req.method} ${u.pathname})`, type: 'invalid_request_error', code: null });
    }
    const auth = req.headers.authorization;
    if (!auth?.startsWith('Bearer ') || auth.length === 'Bearer '.length) {
      return apiError(res, 401, { message: "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).", type: 'invalid_request_error', code: null });
    }
    if (opts.apiKey !== undefined && auth !== `Bearer ${opts.apiKey}`) {
      return apiError(res, 401, { message: 'Incorrect API key provided.', type: 'invalid_request_error', code: 'invalid_api_key' });
    }
    const parts: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > maxBody) {
        req.removeAllListeners('data');
        req.removeAllListeners('end');
        apiError(res, 413, { message: `Request body too large: more than ${maxBody} bytes.`, type: 'invalid_request_error', code: null }, { connection: 'close' });
        return;
      }
      parts.push(c);
    });
    req.on('end', () => {
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(parts).toString('utf8'));
      } catch {
        body = undefined;
      }
      const parsed = typeof body === 'object' && body !== null && !Array.isArray(body);
      const rec: LlmStandInRequest = { index: requests.length, atMs, body: parsed ? (body as Record<string, unknown>) : {}, status: 200, chunksSent: 0, sentAtMs: [], aborted: false };
      requests.push(rec);
      if (!parsed) {
        rec.status = 400;
        return apiError(res, 400, {
          message: "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
          type: 'invalid_request_error',
          code: null,
        });
      }
      const msgs = validate(rec.body);
      if (!Array.isArray(msgs)) {
        rec.status = 400;
        return apiError(res, 400, { ...msgs, type: 'invalid_request_error' });
      }
      serve(res, rec, msgs);
    });
  };

  const http = createServer(onRequest);
  http.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => http.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', resolve));
  const port = (http.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    port,
    requests,
    startedAt: t0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        http.close(() => resolve());
      }),
  };
}
