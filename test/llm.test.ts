// The LLM stage: OpenAiChatLlm (the real `openai` package) against the Chat Completions stand-in over loopback.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { LlmError, type LlmEvent, type LlmMessage, type LlmStream, type LlmToolCall } from '../src/pipeline/llm.js';
import { OpenAiChatLlm, type OpenAiChatLlmOptions } from '../src/pipeline/llm-openai.js';
import { ONE_OFF_REPLY, startLlmStandIn, type LlmStandIn, type LlmStandInOptions } from '../src/sim/llm-server.js';
import { eligibilityScenario, parallelEligibilityScenario } from '../src/sim/scenarios.js';
import type { ToolSpec } from '../src/tools/spec.js';
import { sleep, until } from './helpers/until.js';

const KEY = 'sk-test';
const SYSTEM: LlmMessage = { role: 'system', content: 'You answer the eligibility line.' };
const TOOLS: ToolSpec[] = [
  {
    name: 'check_eligibility',
    description: "Checks a member's coverage.",
    parameters: { type: 'object', properties: { member_id: { type: 'string' }, date_of_birth: { type: 'string' } }, required: ['member_id', 'date_of_birth'] },
  },
];

interface Collected {
  events: LlmEvent[];
  end: Promise<LlmEvent>;
}

function collect(s: LlmStream): Collected {
  const events: LlmEvent[] = [];
  let onEnd!: (e: LlmEvent) => void;
  const end = new Promise<LlmEvent>((r) => (onEnd = r));
  s.onEvent((ev) => {
    events.push(ev);
    if (ev.type === 'done' || ev.type === 'error') onEnd(ev);
  });
  return { events, end };
}

/** Resolves `p` or fails the test after `ms` (a hang guard, not a speed assertion). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, rej) => (t = setTimeout(() => rej(new Error(`timed out waiting for ${what}`)), ms)))]).finally(() =>
    clearTimeout(t),
  );
}

const text = (evs: LlmEvent[]): string => evs.map((e) => (e.type === 'text_delta' ? e.delta : '')).join('');
const calls = (evs: LlmEvent[]): LlmToolCall[] => evs.flatMap((e) => (e.type === 'tool_call' ? [e.call] : []));

function errorOf(ev: LlmEvent): LlmError {
  if (ev.type !== 'error') throw new Error(`expected an error, got ${ev.type}`);
  return ev.error;
}

describe('OpenAiChatLlm against the Chat Completions stand-in', () => {
  let sim: LlmStandIn | undefined;
  afterEach(async () => {
    await sim?.close();
    sim = undefined;
  });
  const start = async (o: LlmStandInOptions = {}, c: Partial<OpenAiChatLlmOptions> = {}) => {
    sim = await startLlmStandIn({ apiKey: KEY, firstTokenMs: 5, tokenMs: 1, ...o });
    return new OpenAiChatLlm({ baseUrl: sim.url, apiKey: KEY, model: 'gpt-4o-mini', ...c });
  };
  const run = async (llm: OpenAiChatLlm, messages: LlmMessage[], tools = TOOLS): Promise<Collected> => {
    const c = collect(llm.stream({ messages, tools }));
    await within(c.end, 5000, 'the terminal event');
    return c;
  };

  it('streams the text in order, in several deltas, then done with stop; the request is the protocol’s', async () => {
    const llm = await start();
    const c = await run(llm, [SYSTEM]);
    const deltas = c.events.filter((e) => e.type === 'text_delta');
    expect(deltas.length).toBeGreaterThan(3);
    expect(text(c.events)).toBe(eligibilityScenario.greeting);
    expect(c.events.at(-1)).toMatchObject({ type: 'done', finishReason: 'stop' });
    expect(c.events.filter((e) => e.type === 'done' || e.type === 'error')).toHaveLength(1);
    const body = sim!.requests[0]!.body;
    expect(body).toMatchObject({ model: 'gpt-4o-mini', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'system', content: SYSTEM.content }] });
    expect(body.tools).toEqual([{ type: 'function', function: TOOLS[0] }]);
  });

  it('leaves out an empty tools list and passes max_completion_tokens and temperature', async () => {
    const llm = await start();
    const c = collect(llm.stream({ messages: [SYSTEM], tools: [], maxOutputTokens: 200, temperature: 0.3 }));
    expect((await within(c.end, 5000, 'done')).type).toBe('done');
    const body = sim!.requests[0]!.body;
    expect(body).not.toHaveProperty('tools');
    expect(body).toMatchObject({ max_completion_tokens: 200, temperature: 0.3 });
  });

  it('assembles one tool call whole from argument deltas, after the text and before done', async () => {
    const llm = await start();
    const msgs: LlmMessage[] = [SYSTEM, { role: 'user', content: 'a' }, { role: 'assistant', content: 'x' }, { role: 'user', content: 'b' }];
    msgs.push({ role: 'assistant', content: 'y' }, { role: 'user', content: 'March fifth, 1980.' });
    const c = await run(llm, msgs);
    const [call, ...rest] = calls(c.events);
    expect(rest).toEqual([]);
    expect(call!.name).toBe('check_eligibility');
    expect(call!.callId).toMatch(/^call_/);
    expect(JSON.parse(call!.arguments)).toEqual(eligibilityScenario.turns[2]!.tool!.arguments);
    expect(c.events.map((e) => e.type)).toEqual(['tool_call', 'done']);
    expect(c.events.at(-1)).toMatchObject({ type: 'done', finishReason: 'tool_calls' });
  });

  it('assembles two tool calls by index, in order, after the preamble text', async () => {
    const llm = await start({ scenario: parallelEligibilityScenario });
    const c = await run(llm, [SYSTEM, { role: 'user', content: parallelEligibilityScenario.turns[0]!.callerTranscript }]);
    expect(text(c.events)).toBe('Let me check both of those for you.');
    const got = calls(c.events);
    expect(got.map((x) => JSON.parse(x.arguments))).toEqual(parallelEligibilityScenario.turns[0]!.tools!.map((t) => t.arguments));
    expect(new Set(got.map((x) => x.callId)).size).toBe(2);
    const types = c.events.map((e) => e.type);
    expect(types.slice(-3)).toEqual(['tool_call', 'tool_call', 'done']);
    expect(types.lastIndexOf('text_delta')).toBeLessThan(types.indexOf('tool_call'));
  });

  it('maps usage, cached tokens included', async () => {
    const llm = await start();
    const long: LlmMessage = { role: 'system', content: 'Rules of the line. '.repeat(300) }; // 5700 chars ≈ 1425 tokens
    const first = await run(llm, [long]);
    const u1 = (first.events.at(-1) as Extract<LlmEvent, { type: 'done' }>).usage;
    expect(u1).toEqual({ inputTokens: Math.ceil(long.content.length / 4), cachedInputTokens: 0, outputTokens: Math.ceil(eligibilityScenario.greeting.length / 4), reported: true });
    const second = await run(llm, [long, { role: 'assistant', content: eligibilityScenario.greeting }, { role: 'user', content: 'Hi' }]);
    const u2 = (second.events.at(-1) as Extract<LlmEvent, { type: 'done' }>).usage;
    expect(u2.cachedInputTokens).toBe(1408); // 1425 shared tokens, in 128-token steps
    expect(u2.inputTokens).toBeGreaterThan(u1.inputTokens);
  });

  it('429: a retryable error with the server’s retry-after-ms', async () => {
    const llm = await start({ faults: [{ kind: '429', request: 0, retryAfterMs: 1500 }] });
    const c = await run(llm, [SYSTEM]);
    const e = errorOf(c.events.at(-1)!);
    expect(e).toBeInstanceOf(LlmError);
    expect(e).toMatchObject({ retryable: true, code: 429, retryAfterMs: 1500 });
    expect(c.events).toHaveLength(1);
    // The next request is answered.
    expect((await run(llm, [SYSTEM])).events.at(-1)!.type).toBe('done');
  });

  it('429 insufficient_quota is a billing stop, not retryable', async () => {
    const llm = await start({ faults: [{ kind: '429', code: 'insufficient_quota' }] });
    expect(errorOf((await run(llm, [SYSTEM])).events.at(-1)!)).toMatchObject({ retryable: false, code: 429 });
  });

  it('500 is retryable', async () => {
    const llm = await start({ faults: [{ kind: '500', request: 0 }] });
    expect(errorOf((await run(llm, [SYSTEM])).events.at(-1)!)).toMatchObject({ retryable: true, code: 500 });
  });

  it('401 (wrong key) is not retryable', async () => {
    const llm = await start({}, { apiKey: 'sk-wrong' });
    const e = errorOf((await run(llm, [SYSTEM])).events.at(-1)!);
    expect(e).toMatchObject({ retryable: false, code: 401 });
    expect(sim!.requests).toHaveLength(0);
  });

  it('a stream dropped mid-way: the text so far stays delivered, then a retryable error', async () => {
    const llm = await start({ faults: [{ kind: 'drop_mid_stream', request: 0, afterChunks: 4 }] });
    const c = await run(llm, [SYSTEM]);
    const said = text(c.events);
    expect(said.length).toBeGreaterThan(0);
    expect(eligibilityScenario.greeting.startsWith(said)).toBe(true);
    expect(said).not.toBe(eligibilityScenario.greeting);
    expect(c.events.slice(0, -1).every((e) => e.type === 'text_delta')).toBe(true);
    expect(errorOf(c.events.at(-1)!).retryable).toBe(true);
  });

  it('no chunk within timeoutMs: a retryable timeout, and the request is aborted', async () => {
    const llm = await start({ faults: [{ kind: 'slow', request: 0, delayMs: 10_000 }] }, { timeoutMs: 150 });
    const c = await run(llm, [SYSTEM]);
    expect(errorOf(c.events.at(-1)!)).toMatchObject({ retryable: true, code: 'timeout' });
    await until(() => sim!.requests[0]?.aborted === true, { what: 'the stand-in to see the abort' });
  });

  it('a stream that ends without a finish_reason is a retryable bad_response', async () => {
    const http = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const chunk = { id: 'c1', object: 'chat.completion.chunk', created: 0, model: 'm', choices: [{ index: 0, delta: { content: 'Hel' }, finish_reason: null }] };
      res.end(`data: ${JSON.stringify(chunk)}\n\ndata: [DONE]\n\n`);
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    try {
      const llm = new OpenAiChatLlm({ baseUrl: `http://127.0.0.1:${(http.address() as AddressInfo).port}/v1`, apiKey: KEY, model: 'm' });
      const c = await run(llm, [SYSTEM]);
      expect(text(c.events)).toBe('Hel');
      expect(errorOf(c.events.at(-1)!)).toMatchObject({ retryable: true, code: 'bad_response' });
    } finally {
      await new Promise((r) => http.close(r));
    }
  });

  it('cancel() stops the events at once and the stand-in sees the request aborted', async () => {
    const llm = await start({ tokenMs: 20 });
    const s = llm.stream({ messages: [SYSTEM], tools: TOOLS });
    const events: LlmEvent[] = [];
    let first!: () => void;
    const gotFirst = new Promise<void>((r) => (first = r));
    s.onEvent((ev) => {
      events.push(ev);
      first();
    });
    await within(gotFirst, 5000, 'the first delta');
    s.cancel();
    const seen = events.length;
    await until(() => sim!.requests[0]!.aborted, { what: 'the stand-in to see the abort' });
    await sleep(60);
    expect(events.length).toBe(seen);
    expect(events.every((e) => e.type === 'text_delta')).toBe(true);
    expect(sim!.requests[0]!.chunksSent).toBeLessThan(10);
  });

  it('the caller’s signal aborting ends the stream with a non-retryable aborted error', async () => {
    const llm = await start({ firstTokenMs: 2000 });
    const ac = new AbortController();
    const c = collect(llm.stream({ messages: [SYSTEM], tools: TOOLS }, ac.signal));
    await until(() => sim!.requests.length === 1, { what: 'the request' });
    ac.abort();
    expect(errorOf(await within(c.end, 5000, 'the error'))).toMatchObject({ retryable: false, code: 'aborted' });
    await until(() => sim!.requests[0]!.aborted, { what: 'the stand-in to see the abort' });
  });

  it('queues events that come before the first listener', async () => {
    const llm = await start();
    const s = llm.stream({ messages: [SYSTEM], tools: TOOLS });
    await until(() => sim!.requests[0]?.chunksSent !== undefined && sim!.requests[0].chunksSent > 0 && !sim!.requests[0].aborted, { what: 'the stream' });
    await sleep(100);
    const c = collect(s);
    expect((await within(c.end, 5000, 'done')).type).toBe('done');
    expect(text(c.events)).toBe(eligibilityScenario.greeting);
  });

  it('plays the eligibility scenario across turns, the tool round’s follow-up built from the tool output', async () => {
    const llm = await start();
    const convo: LlmMessage[] = [SYSTEM];
    const answer = async (): Promise<Collected> => {
      const c = await run(llm, convo);
      expect(c.events.at(-1)!.type).toBe('done');
      const said = text(c.events);
      const toolCalls = calls(c.events);
      convo.push(toolCalls.length > 0 ? { role: 'assistant', content: said, toolCalls } : { role: 'assistant', content: said });
      return c;
    };
    const said: string[] = [text((await answer()).events)];
    for (const turn of eligibilityScenario.turns) {
      convo.push({ role: 'user', content: turn.callerTranscript });
      const c = await answer();
      const toolCalls = calls(c.events);
      if (toolCalls.length === 0) {
        said.push(text(c.events));
        continue;
      }
      expect(toolCalls.map((x) => x.name)).toEqual(['check_eligibility']);
      convo.push({ role: 'tool', callId: toolCalls[0]!.callId, content: JSON.stringify({ status: 'active', plan: 'Gold' }) });
      said.push(text((await answer()).events));
    }
    expect(said).toEqual([
      eligibilityScenario.greeting,
      'Sure. Can I get the Member ID?',
      'Thank you. And the date of birth?',
      'You are active on the Gold plan. Is there anything else I can help with?',
      'Goodbye!',
    ]);
    // The tool round went over the wire as Chat Completions messages.
    const followUp = sim!.requests[4]!.body.messages as Record<string, unknown>[];
    expect(followUp.at(-2)).toMatchObject({ role: 'assistant', content: null, tool_calls: [{ type: 'function', function: { name: 'check_eligibility' } }] });
    expect(followUp.at(-1)).toMatchObject({ role: 'tool', tool_call_id: (followUp.at(-2) as { tool_calls: { id: string }[] }).tool_calls[0]!.id });
  });
});

describe('the stand-in on its own', () => {
  let sim: LlmStandIn | undefined;
  afterEach(async () => {
    await sim?.close();
    sim = undefined;
  });
  const post = (body: string, key = KEY) =>
    fetch(`${sim!.url}/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body });

  it('answers bad JSON 400, a missing key 401, an oversized body 413, an unknown path 404, with the OpenAI error body', async () => {
    sim = await startLlmStandIn({ apiKey: KEY, maxBodyBytes: 4096 });
    const bad = await post('{nope');
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { type: string } }).error.type).toBe('invalid_request_error');
    const noKey = await fetch(`${sim.url}/chat/completions`, { method: 'POST', body: '{}' });
    expect(noKey.status).toBe(401);
    expect(await noKey.json()).toMatchObject({ error: { type: 'invalid_request_error', code: null } });
    expect((await post('x'.repeat(10_000))).status).toBe(413);
    expect((await fetch(`${sim.url}/models`)).status).toBe(404);
  });

  it('rejects a tool message that answers no call, a call left unanswered, and an empty tools list', async () => {
    sim = await startLlmStandIn({ apiKey: KEY, firstTokenMs: 1, tokenMs: 1 });
    const req = (messages: unknown[], extra: Record<string, unknown> = {}) => post(JSON.stringify({ model: 'm', stream: true, messages, ...extra }));
    const orphan = await req([{ role: 'user', content: 'hi' }, { role: 'tool', tool_call_id: 'call_1', content: 'x' }]);
    expect(orphan.status).toBe(400);
    expect(((await orphan.json()) as { error: { message: string } }).error.message).toMatch(/role 'tool' must be a response/);
    const call = { id: 'call_1', type: 'function', function: { name: 'f', arguments: '{}' } };
    const open = await req([{ role: 'user', content: 'hi' }, { role: 'assistant', content: null, tool_calls: [call] }, { role: 'user', content: 'again' }]);
    expect(open.status).toBe(400);
    expect(((await open.json()) as { error: { message: string } }).error.message).toMatch(/call_1/);
    expect((await req([{ role: 'user', content: 'hi' }], { tools: [] })).status).toBe(400);
    expect(sim.requests.map((r) => r.status)).toEqual([400, 400, 400]);
  });

  it('greets when there is no caller turn yet and answers a one-off instruction after one; ends with [DONE]', async () => {
    sim = await startLlmStandIn({ apiKey: KEY, firstTokenMs: 1, tokenMs: 1 });
    const sse = async (messages: unknown[]): Promise<string> => (await post(JSON.stringify({ model: 'm', stream: true, messages }))).text();
    const content = (raw: string): string =>
      raw
        .split('\n\n')
        .filter((l) => l.startsWith('data: {'))
        .map((l) => (JSON.parse(l.slice(6)) as { choices: { delta: { content?: string } }[] }).choices[0]?.delta.content ?? '')
        .join('');
    const greet = await sse([{ role: 'system', content: 'Be brief.' }, { role: 'system', content: 'Greet the caller.' }]);
    expect(content(greet)).toBe(eligibilityScenario.greeting);
    expect(greet.trimEnd().endsWith('data: [DONE]')).toBe(true);
    expect(greet).not.toMatch(/"usage"/); // no include_usage: no usage field at all
    const oneOff = await sse([
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: 'Sure.' },
      { role: 'system', content: 'Tell the caller you are still checking.' },
    ]);
    expect(content(oneOff)).toBe(ONE_OFF_REPLY);
  });
});
