/**
 * Any OpenAI-compatible Chat Completions endpoint behind the LLM stage
 * (docs/llm-protocol.md), through the `openai` package:
 * `chat.completions.create({stream: true, stream_options: {include_usage:
 * true}, tools})`. It keeps the LlmStream contract of ./llm.ts; in particular:
 *
 * - Text deltas are emitted as they arrive. Tool-call deltas are gathered by
 *   their `index` (id and name from the first delta that has them, arguments
 *   concatenated) and emitted whole, in index order, once the stream ends,
 *   just before `done`.
 * - `done` needs a `finish_reason`: a stream that ends without one is a
 *   retryable `bad_response`. A failure after the finish_reason (the usage
 *   chunk lost) still ends in `done`, with `usage.reported: false`.
 * - Errors: 429 (except `insufficient_quota`, a billing stop), 5xx, network
 *   failures, a stream cut short and the timeout are retryable; other 4xx are
 *   not. `retry-after-ms`, else `retry-after` (seconds or an HTTP date), gives
 *   `retryAfterMs`.
 * - `timeoutMs` (default 10 000) bounds the wait for the first chunk and
 *   every gap between chunks; it aborts the request with a retryable
 *   `timeout`. The package's own retries are off (`maxRetries: 0`): the
 *   pipeline session decides, since a retry costs latency the caller hears.
 * - `cancel()` aborts the request silently; the caller's `signal` aborting
 *   ends the stream with a non-retryable `aborted` error.
 */
import OpenAI, { APIConnectionError, APIError, APIUserAbortError } from 'openai';
import type {
  ChatCompletionChunk,
  ChatCompletionCreateParamsStreaming,
  ChatCompletionMessageParam,
  ChatCompletionTool,
} from 'openai/resources/chat/completions';
import type { CompletionUsage } from 'openai/resources/completions';
import type { ToolSpec } from '../tools/spec.js';
import {
  LlmError,
  type LanguageModel,
  type LlmEvent,
  type LlmFinishReason,
  type LlmMessage,
  type LlmRequest,
  type LlmStream,
  type LlmToolCall,
  type LlmUsage,
} from './llm.js';

export const LLM_DEFAULT_TIMEOUT_MS = 10_000;

export interface OpenAiChatLlmOptions {
  /** Default the package's (https://api.openai.com/v1); the stand-in's `http://127.0.0.1:PORT/v1` in tests. */
  baseUrl?: string;
  apiKey: string;
  model: string;
  /** Longest wait for the first chunk, and between chunks (ms, default 10 000). */
  timeoutMs?: number;
  /** The package's retries per request (default 0). */
  maxRetries?: number;
  organization?: string;
}

export class OpenAiChatLlm implements LanguageModel {
  readonly name = 'openai-chat';
  readonly model: string;
  private readonly client: OpenAI;
  private readonly timeoutMs: number;

  constructor(opts: OpenAiChatLlmOptions) {
    this.model = opts.model;
    this.timeoutMs = opts.timeoutMs ?? LLM_DEFAULT_TIMEOUT_MS;
    this.client = new OpenAI({
      apiKey: opts.apiKey,
      maxRetries: opts.maxRetries ?? 0,
      organization: opts.organization ?? null,
      project: null,
      ...(opts.baseUrl ? { baseURL: opts.baseUrl } : {}),
    });
  }

  stream(req: LlmRequest, signal?: AbortSignal): LlmStream {
    const s = new ChatStream(this.timeoutMs);
    s.start(this.client, chatParams(this.model, req), signal);
    return s;
  }
}

/** The request body (docs/llm-protocol.md, "Request"). */
export function chatParams(model: string, req: LlmRequest): ChatCompletionCreateParamsStreaming {
  return {
    model,
    messages: req.messages.map(toChatMessage),
    stream: true,
    stream_options: { include_usage: true },
    // The API rejects an empty `tools` array: leave it out.
    ...(req.tools.length > 0 ? { tools: req.tools.map(toChatTool) } : {}),
    ...(req.maxOutputTokens !== undefined ? { max_completion_tokens: req.maxOutputTokens } : {}),
    ...(req.temperature !== undefined ? { temperature: req.temperature } : {}),
  };
}

function toChatMessage(m: LlmMessage): ChatCompletionMessageParam {
  switch (m.role) {
    case 'system':
    case 'user':
      return { role: m.role, content: m.content };
    case 'assistant':
      if (!m.toolCalls?.length) return { role: 'assistant', content: m.content };
      return {
        role: 'assistant',
        content: m.content === '' ? null : m.content,
        tool_calls: m.toolCalls.map((c) => ({ id: c.callId, type: 'function' as const, function: { name: c.name, arguments: c.arguments } })),
      };
    case 'tool':
      return { role: 'tool', tool_call_id: m.callId, content: m.content };
  }
}

function toChatTool(t: ToolSpec): ChatCompletionTool {
  return { type: 'function', function: { name: t.name, description: t.description, parameters: t.parameters } };
}

const FINISH: Readonly<Record<string, LlmFinishReason>> = {
  stop: 'stop',
  length: 'length',
  tool_calls: 'tool_calls',
  function_call: 'tool_calls',
  content_filter: 'content_filter',
};

const NO_USAGE: LlmUsage = { inputTokens: 0, cachedInputTokens: 0, outputTokens: 0, reported: false };

function toUsage(u: CompletionUsage): LlmUsage {
  return {
    inputTokens: u.prompt_tokens ?? 0,
    cachedInputTokens: u.prompt_tokens_details?.cached_tokens ?? 0,
    outputTokens: u.completion_tokens ?? 0,
    reported: true,
  };
}

interface PartialCall {
  callId: string;
  name: string;
  args: string[];
}

class ChatStream implements LlmStream {
  private readonly listeners = new Set<(ev: LlmEvent) => void>();
  /** Events emitted before the first listener. */
  private readonly queued: LlmEvent[] = [];
  private closed = false;
  private readonly abort = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private timedOut = false;
  private readonly calls = new Map<number, PartialCall>();
  private finish: LlmFinishReason | undefined;
  private usage: LlmUsage = NO_USAGE;
  private unlinkSignal: () => void = () => {};

  constructor(private readonly timeoutMs: number) {}

  onEvent(listener: (ev: LlmEvent) => void): () => void {
    this.listeners.add(listener);
    if (this.listeners.size === 1) for (const ev of this.queued.splice(0)) listener(ev);
    return () => this.listeners.delete(listener);
  }

  cancel(): void {
    if (this.closed) return;
    this.closed = true;
    this.queued.length = 0;
    this.stop();
  }

  start(client: OpenAI, params: ChatCompletionCreateParamsStreaming, signal: AbortSignal | undefined): void {
    if (signal?.aborted) return this.fail(new LlmError('llm request aborted', false, 'aborted'));
    if (signal) {
      const onAbort = (): void => this.fail(new LlmError('llm request aborted', false, 'aborted'));
      signal.addEventListener('abort', onAbort, { once: true });
      this.unlinkSignal = () => signal.removeEventListener('abort', onAbort);
    }
    this.arm();
    void this.run(client, params);
  }

  private async run(client: OpenAI, params: ChatCompletionCreateParamsStreaming): Promise<void> {
    try {
      const chunks = await client.chat.completions.create(params, { signal: this.abort.signal });
      for await (const chunk of chunks) {
        if (this.closed) return;
        this.arm();
        this.onChunk(chunk);
      }
    } catch (e) {
      return this.end(e);
    }
    this.end(undefined);
  }

  /** The request is over: `e` is what it failed with (undefined when the stream ended). */
  private end(e: unknown): void {
    if (this.closed) return;
    if (this.finish !== undefined) return this.complete(this.finish);
    // The package ends the iteration quietly when its request is aborted: a timeout shows only here.
    if (this.timedOut) return this.fail(new LlmError(`llm: no chunk for ${this.timeoutMs} ms`, true, 'timeout', undefined, { cause: e }));
    if (e !== undefined) return this.fail(toLlmError(e));
    this.fail(new LlmError('llm stream ended without a finish_reason', true, 'bad_response'));
  }

  private onChunk(chunk: ChatCompletionChunk): void {
    if (chunk.usage) this.usage = toUsage(chunk.usage);
    const choice = chunk.choices?.[0];
    if (!choice) return;
    const delta = choice.delta;
    if (delta?.content) this.emit({ type: 'text_delta', delta: delta.content });
    for (const tc of delta?.tool_calls ?? []) {
      let call = this.calls.get(tc.index);
      if (!call) this.calls.set(tc.index, (call = { callId: '', name: '', args: [] }));
      if (tc.id && !call.callId) call.callId = tc.id;
      if (tc.function?.name && !call.name) call.name = tc.function.name;
      if (tc.function?.arguments) call.args.push(tc.function.arguments);
    }
    if (choice.finish_reason) this.finish = FINISH[choice.finish_reason] ?? 'stop';
  }

  private complete(finishReason: LlmFinishReason): void {
    const ordered = [...this.calls.entries()].sort((a, b) => a[0] - b[0]);
    for (const [, c] of ordered) {
      const call: LlmToolCall = { callId: c.callId, name: c.name, arguments: c.args.join('') };
      this.emit({ type: 'tool_call', call });
    }
    this.emit({ type: 'done', finishReason, usage: this.usage });
  }

  private fail(error: LlmError): void {
    this.emit({ type: 'error', error });
  }

  /** (Re)starts the chunk timeout. */
  private arm(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.abort.abort();
    }, this.timeoutMs);
  }

  private emit(ev: LlmEvent): void {
    if (this.closed) return;
    const terminal = ev.type === 'done' || ev.type === 'error';
    if (terminal) {
      this.closed = true;
      this.stop();
    }
    if (this.listeners.size === 0) this.queued.push(ev);
    else for (const l of [...this.listeners]) l(ev);
  }

  /** Clears the timer, unhooks the caller's signal and aborts the request (a no-op once it has ended). */
  private stop(): void {
    clearTimeout(this.timer);
    this.unlinkSignal();
    this.abort.abort();
  }
}

function toLlmError(e: unknown): LlmError {
  if (e instanceof LlmError) return e;
  if (e instanceof APIUserAbortError) return new LlmError('llm request aborted', false, 'aborted', undefined, { cause: e });
  if (e instanceof APIConnectionError) return new LlmError(`llm connection failed: ${e.message}`, true, 'network', undefined, { cause: e });
  if (e instanceof APIError) {
    if (e.status === undefined) {
      // An error object sent inside the event stream.
      return new LlmError(`llm stream error: ${e.message}`, true, 'bad_response', undefined, { cause: e });
    }
    const billing = e.status === 429 && e.code === 'insufficient_quota';
    const retryable = (e.status === 429 && !billing) || e.status >= 500;
    return new LlmError(`llm HTTP ${e.status}: ${e.message}`, retryable, e.status, retryAfterMs(e.headers), { cause: e });
  }
  if (e instanceof SyntaxError) return new LlmError(`llm sent a chunk that is not JSON: ${e.message}`, true, 'bad_response', undefined, { cause: e });
  const msg = e instanceof Error ? e.message : String(e);
  // A body cut mid-stream (socket dropped) surfaces as a plain error from the reader.
  return new LlmError(`llm stream failed: ${msg}`, true, 'network', undefined, { cause: e });
}

/** `retry-after-ms` (ms), else `retry-after` (seconds, or an HTTP date); undefined when neither parses. */
export function retryAfterMs(headers: Headers | undefined): number | undefined {
  const ms = Number.parseFloat(headers?.get('retry-after-ms') ?? '');
  if (Number.isFinite(ms) && ms >= 0) return ms;
  const ra = headers?.get('retry-after');
  if (!ra) return undefined;
  const s = Number(ra);
  if (Number.isFinite(s) && s >= 0) return s * 1000;
  const at = Date.parse(ra);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}
