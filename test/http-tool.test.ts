/**
 * HTTP tools from the agent file (src/tools/http-tool.ts) against a real
 * node:http server on 127.0.0.1: argument checks before any request, the
 * request's body and headers, secrets kept out of logs and records, the
 * timeout, garbage answers, retries (idempotent only, Retry-After), the
 * circuit breaker on an injected clock, record fields, and the per-tool
 * metrics a registry reports into.
 */
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger, silentLogger } from '../src/log.js';
import { createMetrics } from '../src/server/metrics.js';
import { MAX_OUTPUT_CHARS, compileArguments, createHttpTool, type HttpToolDeps } from '../src/tools/http-tool.js';
import { TOOL_TROUBLE, ToolRegistry, type ToolContext } from '../src/tools/registry.js';
import type { HttpToolDef } from '../src/tools/spec.js';

const TROUBLE = JSON.stringify({ error: TOOL_TROUBLE });
const SECRET = 'sk-live-7f3a9c1e55d04b2a';

let servers: Server[] = [];
afterEach(async () => {
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
  servers = [];
});

interface Seen {
  headers: IncomingHttpHeaders;
  body: any;
  atMs: number;
}

/** A local back end: `answer(res, n)` answers the n-th request (from 0); `seen` holds each request. */
async function serve(answer: (res: ServerResponse, n: number) => void) {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    let raw = '';
    req.on('data', (d) => (raw += d));
    req.on('end', () => {
      seen.push({ headers: req.headers, body: raw ? JSON.parse(raw) : undefined, atMs: Date.now() });
      answer(res, seen.length - 1);
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/tool`, seen };
}

const send = (res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}) => {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(body);
};

const PARAMS = {
  type: 'object',
  properties: {
    order_id: { type: 'string', pattern: '^[0-9]{6}$', description: 'Six digits' },
    quantity: { type: 'integer', minimum: 1 },
    ship_by: { type: 'string', format: 'date' },
  },
  required: ['order_id'],
  additionalProperties: false,
};

function def(url: string, over: Partial<HttpToolDef> = {}): HttpToolDef {
  return {
    kind: 'http',
    name: 'order_status',
    description: 'Look up an order',
    parameters: PARAMS,
    url,
    headers: {},
    timeoutMs: 2000,
    idempotent: false,
    retries: 0,
    filler: undefined,
    recordFields: ['*'],
    sendCallerNumber: false,
    ...over,
  };
}

const deps = (over: Partial<HttpToolDeps> = {}): HttpToolDeps => ({ env: {}, log: silentLogger, ...over });
const ctx = (over: Partial<ToolContext> = {}): ToolContext => ({ callSid: 'CA123', signal: new AbortController().signal, from: '+15550001111', ...over });

function capturedLogger() {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _e, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  return { log: createLogger('debug', sink), lines };
}

describe('arguments', () => {
  it('bad arguments are never sent and are answered with every reason', async () => {
    const api = await serve((res) => send(res, 200, '{}'));
    const tool = createHttpTool(def(api.url), deps());
    const out = await tool.run({ order_id: '12ab', quantity: 0, ship_by: '2026-02-30', colour: 'red' }, ctx());
    expect(out.ok).toBe(false);
    const body = JSON.parse(out.output);
    expect(body.error).toBe('invalid_arguments');
    expect(body.ask_again).toContain('order_id: must match pattern "^[0-9]{6}$" (Six digits)');
    expect(body.ask_again).not.toContain('12ab'); // never the value itself
    expect(body.ask_again).toContain('quantity: must be >= 1');
    expect(body.ask_again).toContain('ship_by: must match format "date"');
    expect(body.ask_again).toContain('unexpected field colour');
    expect(out.record).toMatchObject({ error: 'invalid_arguments' });
    expect((out.record as { problems: string[] }).problems).toHaveLength(4);

    const missing = await tool.run({}, ctx());
    expect(JSON.parse(missing.output).ask_again).toBe('order_id is missing (Six digits)');
    expect(api.seen).toHaveLength(0);

    expect((await tool.run({ order_id: '123456', ship_by: '2026-02-28' }, ctx())).ok).toBe(true);
    expect(api.seen).toHaveLength(1);
  });

  it('a schema that does not compile is a value from compileArguments, and createHttpTool refuses it', () => {
    const bad = { type: 'object', properties: { a: { type: 'strin' } } };
    const r = compileArguments(bad);
    expect(r.ok).toBe(false);
    expect(() => createHttpTool(def('http://127.0.0.1:1/x', { parameters: bad }), deps())).toThrow(/order_status/);
    expect(compileArguments({ type: 'object', properties: { s: { type: 'string', format: 'no-such-format' } } }).ok).toBe(false);
  });
});

describe('the request', () => {
  it('POSTs JSON with call_sid and arguments; the caller number only when the file asks', async () => {
    const api = await serve((res) => send(res, 200, '{"state":"shipped"}'));
    const out = await createHttpTool(def(api.url), deps()).run({ order_id: '123456' }, ctx());
    expect(out).toMatchObject({ ok: true, output: '{"state":"shipped"}' });
    expect(api.seen[0]!.body).toEqual({ call_sid: 'CA123', arguments: { order_id: '123456' } });
    expect(api.seen[0]!.headers['content-type']).toBe('application/json');

    await createHttpTool(def(api.url, { sendCallerNumber: true }), deps()).run({ order_id: '654321' }, ctx());
    expect(api.seen[1]!.body).toEqual({ call_sid: 'CA123', caller: '+15550001111', arguments: { order_id: '654321' } });
  });

  it('a secret header reaches the server, and never a log line or the record', async () => {
    const api = await serve((res, n) => (n === 0 ? send(res, 200, '{"state":"open"}') : send(res, 500, 'oops')));
    const { log, lines } = capturedLogger();
    const tool = createHttpTool(
      def(api.url, { headers: { authorization: { env: 'ORDERS_KEY', prefix: 'Bearer ' }, 'x-team': { value: 'billing' } } }),
      deps({ env: { ORDERS_KEY: SECRET }, log }),
    );
    const ok = await tool.run({ order_id: '123456' }, ctx());
    const failed = await tool.run({ order_id: '123456' }, ctx());
    expect(api.seen.map((s) => s.headers.authorization)).toEqual([`Bearer ${SECRET}`, `Bearer ${SECRET}`]);
    expect(api.seen[0]!.headers['x-team']).toBe('billing');
    expect(failed).toMatchObject({ ok: false, output: TROUBLE, record: { error: 'http_500', status: 500, attempts: 1 } });
    expect(lines.length).toBeGreaterThan(0); // the failure was logged…
    for (const text of [...lines, JSON.stringify(ok.record), JSON.stringify(failed.record)]) expect(text).not.toContain(SECRET); // …without the secret
  });

  it('a header variable that is not set: the model gets the trouble line, nothing is sent, the log names the variable once', async () => {
    const api = await serve((res) => send(res, 200, '{}'));
    const { log, lines } = capturedLogger();
    const tool = createHttpTool(def(api.url, { headers: { authorization: { env: 'ORDERS_KEY' } } }), deps({ env: {}, log }));
    for (let i = 0; i < 3; i++) expect(await tool.run({ order_id: '123456' }, ctx())).toMatchObject({ ok: false, output: TROUBLE, record: { error: 'missing_secret' } });
    expect(api.seen).toHaveLength(0);
    expect(lines.filter((l) => l.includes('ORDERS_KEY'))).toHaveLength(1);
  });
});

describe('bad answers', () => {
  it('a back end slower than timeoutMs answers TOOL_TROUBLE with a timeout record', async () => {
    const api = await serve((res) => setTimeout(() => send(res, 200, '{}'), 1500));
    const out = await createHttpTool(def(api.url, { timeoutMs: 100, idempotent: true, retries: 3 }), deps()).run({ order_id: '123456' }, ctx());
    expect(out).toMatchObject({ ok: false, output: TROUBLE, record: { error: 'timeout', attempts: 1 } });
    expect(api.seen).toHaveLength(1); // a timeout is not retried: the budget is spent
  });

  it('a body that stalls past the timeout is a timeout too', async () => {
    const api = await serve((res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"state":');
    });
    const out = await createHttpTool(def(api.url, { timeoutMs: 150 }), deps()).run({ order_id: '123456' }, ctx());
    expect(out).toMatchObject({ ok: false, output: TROUBLE, record: { error: 'timeout' } });
  });

  it.each([
    ['an HTML page', 200, '<html><body>Service Unavailable</body></html>', 'bad_json'],
    ['invalid JSON', 200, '{"state": shipped', 'bad_json'],
    ['an empty body', 200, '', 'bad_json'],
    ['a 500', 500, '{"error":"boom"}', 'http_500'],
    ['a 404', 404, '{"error":"no such order"}', 'http_404'],
    ['a redirect (not followed)', 302, '', 'http_302'],
  ])('%s answers TOOL_TROUBLE', async (_what, status, body, error) => {
    const api = await serve((res) => send(res, status, body, status === 302 ? { location: 'http://127.0.0.1:1/elsewhere' } : {}));
    const out = await createHttpTool(def(api.url), deps()).run({ order_id: '123456' }, ctx());
    expect(out).toMatchObject({ ok: false, output: TROUBLE, record: { error } });
    expect(api.seen).toHaveLength(1);
  });

  it('a body over 64 KiB is an error; a big JSON under it reaches the model cut to MAX_OUTPUT_CHARS', async () => {
    const huge = JSON.stringify({ items: 'x'.repeat(70 * 1024) });
    const big = JSON.stringify({ items: Array.from({ length: 400 }, (_, i) => ({ id: i, note: 'a "quoted" note' })) });
    const api = await serve((res, n) => send(res, 200, n === 0 ? huge : big));
    const tool = createHttpTool(def(api.url), deps());
    expect(await tool.run({ order_id: '123456' }, ctx())).toMatchObject({ ok: false, output: TROUBLE, record: { error: 'too_large' } });
    const out = await tool.run({ order_id: '123456' }, ctx());
    expect(out.ok).toBe(true);
    expect(big.length).toBeGreaterThan(MAX_OUTPUT_CHARS);
    expect(out.output.length).toBeLessThanOrEqual(MAX_OUTPUT_CHARS);
    const cut = JSON.parse(out.output);
    expect(cut.truncated).toBe(true);
    expect(big.startsWith(cut.partial)).toBe(true);
  });

  it("the call's own signal cancels the call: an 'aborted' record, and the breaker does not count it", async () => {
    const ac = new AbortController();
    let healthy = false;
    const api = await serve((res) => (healthy ? send(res, 200, '{}') : ac.abort()));
    let now = 0;
    const tool = createHttpTool(def(api.url, { timeoutMs: 5000 }), deps({ now: () => now }));
    for (let i = 0; i < 6; i++) {
      const c = new AbortController();
      const r = tool.run({ order_id: '123456' }, ctx({ signal: c.signal }));
      await new Promise((res) => setTimeout(res, 20));
      c.abort();
      expect(await r).toMatchObject({ ok: false, output: TROUBLE, record: { error: 'aborted' } });
    }
    healthy = true;
    expect((await tool.run({ order_id: '123456' }, ctx())).ok).toBe(true); // not circuit_open
    expect(ac.signal.aborted).toBe(true);
  });
});

describe('retries', () => {
  it('503 with Retry-After: 0 is retried for an idempotent tool, never for a non-idempotent one', async () => {
    const api = await serve((res, n) => (n % 2 === 0 ? send(res, 503, '', { 'retry-after': '0' }) : send(res, 200, '{"state":"open"}')));
    const out = await createHttpTool(def(api.url, { idempotent: true, retries: 2 }), deps()).run({ order_id: '123456' }, ctx());
    expect(out).toMatchObject({ ok: true, record: { status: 200, attempts: 2 } });
    expect(api.seen).toHaveLength(2);

    const once = await createHttpTool(def(api.url, { idempotent: false, retries: 2 }), deps()).run({ order_id: '123456' }, ctx());
    expect(once).toMatchObject({ ok: false, output: TROUBLE, record: { error: 'http_503', attempts: 1 } });
    expect(api.seen).toHaveLength(3);
  });

  it('a 429 is retried after its Retry-After (seconds or an HTTP date)', async () => {
    const api = await serve((res, n) =>
      n === 0 ? send(res, 429, '{}', { 'retry-after': '1' })
      : n === 2 ? send(res, 429, '{}', { 'retry-after': new Date(Date.now() + 2000).toUTCString() })
      : send(res, 200, '{"state":"open"}'),
    );
    const tool = createHttpTool(def(api.url, { idempotent: true, retries: 1, timeoutMs: 4000 }), deps());
    expect(await tool.run({ order_id: '123456' }, ctx())).toMatchObject({ ok: true, record: { attempts: 2 } });
    expect(api.seen[1]!.atMs - api.seen[0]!.atMs).toBeGreaterThanOrEqual(950);
    expect(await tool.run({ order_id: '123456' }, ctx())).toMatchObject({ ok: true, record: { attempts: 2 } });
    expect(api.seen[3]!.atMs - api.seen[2]!.atMs).toBeGreaterThanOrEqual(950); // the date has second precision
  });

  it('a Retry-After past the time budget gives up at once instead of waiting', async () => {
    const api = await serve((res) => send(res, 429, '{}', { 'retry-after': '30' }));
    const out = await createHttpTool(def(api.url, { idempotent: true, retries: 3, timeoutMs: 1000 }), deps()).run({ order_id: '123456' }, ctx());
    expect(out).toMatchObject({ ok: false, output: TROUBLE, record: { error: 'http_429', status: 429, attempts: 1 } });
    expect(api.seen).toHaveLength(1);
  });

  it('at most `retries` further attempts; other statuses are not retried', async () => {
    const api = await serve((res) => send(res, 503, ''));
    const out = await createHttpTool(def(api.url, { idempotent: true, retries: 2 }), deps()).run({ order_id: '123456' }, ctx());
    expect(out).toMatchObject({ ok: false, record: { error: 'http_503', attempts: 3 } });
    expect(api.seen).toHaveLength(3);

    const b = await serve((res) => send(res, 500, ''));
    await createHttpTool(def(b.url, { idempotent: true, retries: 2 }), deps()).run({ order_id: '123456' }, ctx());
    expect(b.seen).toHaveLength(1);
  });

  it('a network error (connection dropped) is retried for an idempotent tool only', async () => {
    const api = await serve((res, n) => (n === 0 || n === 2 ? res.socket?.destroy() : send(res, 200, '{"state":"open"}')));
    const out = await createHttpTool(def(api.url, { idempotent: true, retries: 1 }), deps()).run({ order_id: '123456' }, ctx());
    expect(out).toMatchObject({ ok: true, record: { attempts: 2 } });
    const once = await createHttpTool(def(api.url, { retries: 1 }), deps()).run({ order_id: '123456' }, ctx());
    expect(once).toMatchObject({ ok: false, output: TROUBLE, record: { error: 'network', attempts: 1 } });
    expect(api.seen).toHaveLength(3);
  });
});

describe('circuit breaker', () => {
  it('opens after 5 failures (nothing sent while open) and a successful trial after the cool-down closes it', async () => {
    let healthy = false;
    const api = await serve((res) => (healthy ? send(res, 200, '{"state":"open"}') : send(res, 500, '{}')));
    let now = 1_000_000;
    const tool = createHttpTool(def(api.url), deps({ now: () => now }));
    for (let i = 0; i < 5; i++) expect((await tool.run({ order_id: '123456' }, ctx())).record).toMatchObject({ error: 'http_500' });
    healthy = true;
    for (let i = 0; i < 3; i++) expect(await tool.run({ order_id: '123456' }, ctx())).toMatchObject({ ok: false, output: TROUBLE, record: { error: 'circuit_open' } });
    expect(api.seen).toHaveLength(5);
    now += 29_999;
    expect((await tool.run({ order_id: '123456' }, ctx())).record).toMatchObject({ error: 'circuit_open' });
    expect(api.seen).toHaveLength(5);
    now += 1;
    expect(await tool.run({ order_id: '123456' }, ctx())).toMatchObject({ ok: true }); // the trial
    expect(api.seen).toHaveLength(6);
    expect((await tool.run({ order_id: '123456' }, ctx())).ok).toBe(true); // closed again
    expect(api.seen).toHaveLength(7);
  });

  it('a failed trial opens it for another cool-down; concurrent calls wait out the trial', async () => {
    let mode: 'fail' | 'slow' = 'fail';
    const api = await serve((res) => (mode === 'fail' ? send(res, 503, '{}') : setTimeout(() => send(res, 200, '{}'), 100)));
    let now = 0;
    const tool = createHttpTool(def(api.url), deps({ now: () => now }));
    for (let i = 0; i < 5; i++) await tool.run({ order_id: '123456' }, ctx());
    now += 30_000;
    expect((await tool.run({ order_id: '123456' }, ctx())).record).toMatchObject({ error: 'http_503' }); // failed trial
    expect(api.seen).toHaveLength(6);
    expect((await tool.run({ order_id: '123456' }, ctx())).record).toMatchObject({ error: 'circuit_open' });
    now += 30_000;
    mode = 'slow';
    const trial = tool.run({ order_id: '123456' }, ctx());
    expect((await tool.run({ order_id: '123456' }, ctx())).record).toMatchObject({ error: 'circuit_open' });
    expect((await trial).ok).toBe(true);
    expect(api.seen).toHaveLength(7);
  });

  it('a 4xx answer is an error for the model but not a sign the back end is down', async () => {
    const api = await serve((res) => send(res, 404, '{"error":"no such order"}'));
    const tool = createHttpTool(def(api.url), deps({ now: () => 0 }));
    for (let i = 0; i < 8; i++) expect((await tool.run({ order_id: '123456' }, ctx())).record).toMatchObject({ error: 'http_404' });
    expect(api.seen).toHaveLength(8);
  });

  it('timeouts and garbage count towards opening it', async () => {
    const api = await serve((res, n) => (n % 2 === 0 ? send(res, 200, '<html>') : setTimeout(() => send(res, 200, '{}'), 500)));
    const tool = createHttpTool(def(api.url, { timeoutMs: 60 }), deps({ now: () => 0 }));
    for (let i = 0; i < 5; i++) await tool.run({ order_id: '123456' }, ctx());
    expect((await tool.run({ order_id: '123456' }, ctx())).record).toMatchObject({ error: 'circuit_open' });
    expect(api.seen).toHaveLength(5);
  });

  it('invalid arguments do not count as failures', async () => {
    const api = await serve((res) => send(res, 200, '{}'));
    const tool = createHttpTool(def(api.url), deps({ now: () => 0 }));
    for (let i = 0; i < 10; i++) await tool.run({ order_id: 'nope' }, ctx());
    expect((await tool.run({ order_id: '123456' }, ctx())).ok).toBe(true);
  });
});

describe('the record', () => {
  const answer = JSON.stringify({ state: 'shipped', eta: '2026-12-10', internal_note: 'vip', status: 'A1' });
  it.each([
    [['*'], { state: 'shipped', eta: '2026-12-10', internal_note: 'vip', status: 'A1' }],
    [['state', 'eta', 'absent'], { state: 'shipped', eta: '2026-12-10' }],
    [[], {}],
  ])('record_fields %j keeps %j beside the HTTP status and attempts', async (fields, kept) => {
    const api = await serve((res) => send(res, 200, answer));
    const out = await createHttpTool(def(api.url, { recordFields: fields }), deps()).run({ order_id: '123456' }, ctx());
    expect(out.record).toEqual({ status: 200, attempts: 1, result: kept });
    expect(JSON.parse(out.output)).toEqual(JSON.parse(answer)); // the model always gets the whole answer
  });
});

describe('metrics', () => {
  const value = async (metrics: ReturnType<typeof createMetrics>, name: string, labels: Record<string, string>) => {
    const m = await metrics.registry.getSingleMetric(name)!.get();
    return m.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value;
  };

  it('callbridge_tool_calls_total counts each call by tool and outcome; the duration histogram sees each', async () => {
    let healthy = true;
    const api = await serve((res) => (healthy ? send(res, 200, '{}') : setTimeout(() => send(res, 500, '{}'), 5)));
    const metrics = createMetrics({ processMetrics: false });
    const tool = createHttpTool(def(api.url, { timeoutMs: 3000 }), deps({ now: () => 0 }));
    const reg = new ToolRegistry([tool], { onOutcome: metrics.toolOutcome });
    const call = (args: unknown) => reg.call('order_status', JSON.stringify(args), ctx());
    await call({ order_id: '123456' });
    await call({ order_id: '123456' });
    await call({ order_id: 'bad' });
    await reg.call('order_status', '{not json', ctx());
    healthy = false;
    for (let i = 0; i < 5; i++) await call({ order_id: '123456' });
    await call({ order_id: '123456' }); // open now
    await reg.call('made_up_tool', '{}', ctx());

    const calls = (tool: string, outcome: string) => value(metrics, 'callbridge_tool_calls_total', { tool, outcome });
    expect(await calls('order_status', 'ok')).toBe(2);
    expect(await calls('order_status', 'invalid_arguments')).toBe(2);
    expect(await calls('order_status', 'error')).toBe(5);
    expect(await calls('order_status', 'circuit_open')).toBe(1);
    expect(await calls('order_status', 'timeout')).toBe(0); // a series from the first call
    expect(await calls('_unknown', 'error')).toBe(1);
    expect(await value(metrics, 'callbridge_tool_duration_seconds', { tool: 'order_status', le: '+Inf' })).toBe(10);
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/callbridge_tool_duration_seconds_count\{tool="order_status"\} 10/);
  });

  it('seedTools makes every outcome of a tool a series at 0 before its first call', async () => {
    const metrics = createMetrics({ processMetrics: false });
    metrics.seedTools(['order_status', 'check_eligibility']);
    for (const outcome of ['ok', 'error', 'timeout', 'invalid_arguments', 'circuit_open']) {
      expect(await value(metrics, 'callbridge_tool_calls_total', { tool: 'check_eligibility', outcome })).toBe(0);
    }
    metrics.toolOutcome('order_status', 'ok', 12);
    expect(await value(metrics, 'callbridge_tool_calls_total', { tool: 'order_status', outcome: 'ok' })).toBe(1);
  });

  it('a timeout is counted as timeout', async () => {
    const api = await serve((res) => setTimeout(() => send(res, 200, '{}'), 1000));
    const metrics = createMetrics({ processMetrics: false });
    const reg = new ToolRegistry([createHttpTool(def(api.url, { timeoutMs: 50 }), deps())], { onOutcome: metrics.toolOutcome });
    await reg.call('order_status', '{"order_id":"123456"}', ctx());
    expect(await value(metrics, 'callbridge_tool_calls_total', { tool: 'order_status', outcome: 'timeout' })).toBe(1);
  });
});
