/**
 * A new user's own line, end to end, without touching src/: an agent file in
 * a temporary folder (its own name, instructions, greeting, two HTTP tools
 * with JSON-Schema parameters, a secret header from the environment,
 * record_fields), the tools served by a node:http server on loopback, and
 * callbridge started with AGENT_FILE on the real edge. A simulated caller
 * talks to it; the model stand-in plays a scenario that calls both tools.
 *
 * Proven here:
 * - the tool server gets each request with the call's SID, the arguments and
 *   the secret header; the model gets the tools' JSON back and the caller
 *   hears the reply built from it; the call record keeps both calls with only
 *   the record_fields; /metrics counts both tools; the session.update carries
 *   the file's instructions and exactly its two tools' schemas;
 * - back ends that time out or answer garbage (HTML, 500) give the model
 *   TOOL_TROUBLE, which the caller hears (audio after the tool call, never
 *   silence); arguments failing the schema never reach the tool server;
 * - `callbridge agent check` lists both tools; a broken copy lists its three
 *   problems with their paths.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { main } from '../src/cli/main.js';
import { availableEdges, type EdgeKind } from '../src/server/app.js';
import { placeCall } from '../src/sim/caller.js';
import type { Scenario } from '../src/sim/scenarios.js';
import { TOOL_TROUBLE } from '../src/tools/registry.js';
import { memoryIO } from './helpers/cli-io.js';
import { useCallbridge } from './helpers/e2e.js';

const callbridge = useCallbridge('agentline');
const dir = mkdtempSync(join(tmpdir(), 'callbridge-agentline-files-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const ADMIN_TOKEN = 'agent-line-admin-token-0001';
const SECRET_ENV = 'RAVENWOOD_SHOP_KEY';
const SECRET = 'rw-secret-7f3a91c2';
const INSTRUCTIONS = 'You are the order line of Ravenwood Books.\nHelp callers find their orders and reserve books. Be brief.';
const GREETING = 'Say: "Ravenwood Books, how can I help?"';

const ORDER_PARAMS = {
  type: 'object',
  properties: { order_number: { type: 'string', pattern: '^RW[0-9]{4}$', description: 'RW and four digits, e.g. RW1234' } },
  required: ['order_number'],
  additionalProperties: false,
};
const RESERVE_PARAMS = {
  type: 'object',
  properties: {
    isbn: { type: 'string', minLength: 10, maxLength: 17 },
    copies: { type: 'integer', minimum: 1, maximum: 3 },
  },
  required: ['isbn', 'copies'],
  additionalProperties: false,
};

/** What the tool server answers (with fields the record must not keep). */
const ORDER_ANSWER = { status: 'shipped', carrier: 'Parcelwing', customer_name: 'Ada Quill', internal_note: 'VIP' };
const RESERVE_ANSWER = { reservation_id: 'RES-4411', shelf: 'B3', customer_email: 'ada@example.com' };

// ── The tool back end ────────────────────────────────────────────────

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: { call_sid?: string; caller?: unknown; arguments?: unknown };
}

interface ToolServer {
  base: string;
  received: Received[];
  on(path: string): Received[];
}

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0).reverse()) {
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
});

/**
 * Loopback tool back end: /orders and /reserve answer JSON; /slow never
 * answers; /html500 answers an HTML 500 page; /html200 answers HTML with 200.
 */
async function toolServer(): Promise<ToolServer> {
  const received: Received[] = [];
  const routes: Record<string, (res: ServerResponse) => void> = {
    '/orders': (res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(ORDER_ANSWER)),
    '/reserve': (res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(RESERVE_ANSWER)),
    '/slow': () => undefined, // held open until the test's server closes
    '/html500': (res) => res.writeHead(500, { 'content-type': 'text/html' }).end('<html><body><h1>Internal Server Error</h1></body></html>'),
    '/html200': (res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><html><body>Maintenance</body></html>'),
  };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body: Received['body'] = {};
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Received['body'];
      } catch {
        /* recorded as {} */
      }
      const path = req.url ?? '';
      received.push({ path, headers: req.headers, body });
      (routes[path] ?? ((r: ServerResponse) => r.writeHead(404).end()))(res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  servers.push(server);
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    on: (path) => received.filter((r) => r.path === path),
  };
}

// ── The agent file ───────────────────────────────────────────────────

let fileNo = 0;
/** The user's agent file (YAML), with the two tools at `orderUrl` and `reserveUrl`. */
function writeAgent(orderUrl: string, reserveUrl: string, opts: { orderTimeoutMs?: number; reserveTimeoutMs?: number } = {}): string {
  const file = join(dir, `ravenwood-${++fileNo}.yaml`);
  writeFileSync(
    file,
    `# Ravenwood Books: my own line
name: ravenwood
instructions: |
${INSTRUCTIONS.split('\n').map((l) => `  ${l}`).join('\n')}
greeting: '${GREETING}'
tools:
  - name: find_order
    description: Find an order by its order number.
    parameters:
      type: object
      properties:
        order_number: { type: string, pattern: "^RW[0-9]{4}$", description: "RW and four digits, e.g. RW1234" }
      required: [order_number]
      additionalProperties: false
    url: ${orderUrl}
    headers:
      X-Shop-Key: { env: ${SECRET_ENV}, prefix: "Key " }
    timeout_ms: ${opts.orderTimeoutMs ?? 3000}
    idempotent: true
    retries: 1
    record_fields: [status, carrier]
  - name: reserve_book
    description: Reserve copies of a book for pick-up, by ISBN.
    parameters:
      type: object
      properties:
        isbn: { type: string, minLength: 10, maxLength: 17 }
        copies: { type: integer, minimum: 1, maximum: 3 }
      required: [isbn, copies]
      additionalProperties: false
    url: ${reserveUrl}
    timeout_ms: ${opts.reserveTimeoutMs ?? 3000}
    idempotent: false
    record_fields: [reservation_id]
`,
  );
  return file;
}

const ORDER_ARGS = { order_number: 'RW1234' };
const RESERVE_ARGS = { isbn: '9780141439518', copies: 2 };

/** The model's reply to one tool output: its trouble line as is, a schema problem asked again, or the answer spoken. */
function speak(output: string): string {
  const o = JSON.parse(output) as Record<string, unknown>;
  if (o.error === 'invalid_arguments') return `Sorry, ${String(o.ask_again)}.`;
  if (typeof o.error === 'string') return o.error;
  if (typeof o.status === 'string') return `Your order has ${o.status} with ${String(o.carrier)}.`;
  if (typeof o.reservation_id === 'string') return `Reserved as ${o.reservation_id} on shelf ${String(o.shelf)}.`;
  return 'Done.';
}

/** One caller turn: the model calls both tools in one response, then speaks from both outputs. */
const bothToolsScenario: Scenario = {
  greeting: 'Ravenwood Books, how can I help?',
  turns: [
    {
      callerTranscript: 'Where is order R W 1 2 3 4, and can you hold two copies of Pride and Prejudice?',
      preamble: 'Let me look.',
      tools: [
        { name: 'find_order', arguments: ORDER_ARGS },
        { name: 'reserve_book', arguments: RESERVE_ARGS },
      ],
      followUp: (outputs) => outputs.map(speak).join(' '),
    },
  ],
};

async function start(edge: EdgeKind | undefined, audioMode: 'transcode' | 'passthrough', agentFile: string, scenario: Scenario) {
  const started = await callbridge({
    edge,
    model: { scenario, transcriptDelayMs: 50 },
    env: { ALLOW_UNSIGNED: 'true', PUBLIC_URL: 'https://rw.invalid', AGENT_FILE: agentFile, AUDIO_MODE: audioMode, ADMIN_TOKEN, [SECRET_ENV]: SECRET },
  });
  if (edge) expect(started.app.server.edge.kind).toBe(edge);
  return started;
}

/** Audio the caller heard after `atMs` (ms since stream start), summed over the playback runs. */
function heardAfter(playback: { startMs: number; endMs: number }[], atMs: number): number {
  return playback.reduce((sum, p) => sum + Math.max(0, p.endMs - Math.max(p.startMs, atMs)), 0);
}

function metricValue(text: string, tool: string, outcome: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`callbridge_tool_calls_total{`) && l.includes(`tool="${tool}"`) && l.includes(`outcome="${outcome}"`));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : NaN;
}

// ── (1) the user's own line ──────────────────────────────────────────

describe.each(availableEdges())('a line from the user\'s own agent file (%s edge)', (edge) => {
  it.each(['transcode', 'passthrough'] as const)('%s: both HTTP tools are called with the call SID, arguments and secret; the caller hears their answers; record, metrics and session.update match the file', async (audioMode) => {
    const tools = await toolServer();
    const file = writeAgent(`${tools.base}/orders`, `${tools.base}/reserve`);
    const { app, model, baseUrl } = await start(edge, audioMode, file, bothToolsScenario);

    const result = await placeCall({ baseUrl, publicUrl: 'https://rw.invalid', utterances: [{ durationMs: 900 }], hangupAfterMs: 800 });
    await app.store.flush();

    // The tool server: one request per tool, with the call SID, the arguments and (find_order only) the secret header.
    const orders = tools.on('/orders');
    const reserves = tools.on('/reserve');
    expect(orders).toHaveLength(1);
    expect(reserves).toHaveLength(1);
    expect(orders[0]!.body).toEqual({ call_sid: result.callSid, arguments: ORDER_ARGS });
    expect(reserves[0]!.body).toEqual({ call_sid: result.callSid, arguments: RESERVE_ARGS });
    expect(orders[0]!.headers['x-shop-key']).toBe(`Key ${SECRET}`);
    expect(reserves[0]!.headers['x-shop-key']).toBeUndefined();
    expect(orders[0]!.headers['content-type']).toMatch(/application\/json/);

    // The model got the tools' JSON back, whole.
    const session = model.sessions[0]!;
    const outputs = session.toolOutputs.map((o) => {
      const call = session.toolCalls.find((c) => c.call_id === o.call_id)!;
      return { name: call.name, output: JSON.parse(o.output) as unknown };
    });
    expect(outputs).toEqual(
      expect.arrayContaining([
        { name: 'find_order', output: ORDER_ANSWER },
        { name: 'reserve_book', output: RESERVE_ANSWER },
      ]),
    );
    expect(outputs).toHaveLength(2);

    // The caller heard the follow-up built from both outputs.
    const record = (await app.store.get(result.callSid))!;
    const said = record.transcript.filter((t) => t.speaker === 'assistant').map((t) => t.text);
    expect(said).toContain('Your order has shipped with Parcelwing. Reserved as RES-4411 on shelf B3.');
    const outputAt = Math.max(...session.toolOutputs.map((o) => o.at)) - result.startedAtPerfMs;
    expect(heardAfter(result.playback, outputAt)).toBeGreaterThanOrEqual(1500);

    // The record: both calls, ok, keeping only the record_fields of each answer.
    const byName = Object.fromEntries(record.toolCalls.map((t) => [t.name, t]));
    expect(record.toolCalls).toHaveLength(2);
    expect(byName.find_order).toMatchObject({ ok: true, record: { status: 200, attempts: 1, result: { status: 'shipped', carrier: 'Parcelwing' } } });
    expect((byName.find_order!.record as { result: unknown }).result).toEqual({ status: 'shipped', carrier: 'Parcelwing' });
    expect((byName.reserve_book!.record as { result: unknown }).result).toEqual({ reservation_id: 'RES-4411' });
    expect(byName.reserve_book).toMatchObject({ ok: true });
    // Nor does the output the record keeps hold the fields left out (the model got them; the record does not).
    expect(JSON.parse(byName.find_order!.output)).toEqual({ status: 'shipped', carrier: 'Parcelwing' });
    expect(JSON.parse(byName.reserve_book!.output)).toEqual({ reservation_id: 'RES-4411' });
    expect(JSON.stringify(record.toolCalls)).not.toMatch(/Ada Quill|ada@example\.com|VIP|B3/);
    // GET /calls/:sid serves the same tool calls.
    const res = await fetch(`${baseUrl}/calls/${result.callSid}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(res.status).toBe(200);
    const api = (await res.json()) as { toolCalls: { name: string; output: string; record: unknown }[] };
    expect(api.toolCalls.map((t) => [t.name, t.output, t.record])).toEqual(record.toolCalls.map((t) => [t.name, t.output, t.record]));

    // /metrics counts one ok call per tool.
    const metrics = await (await fetch(`${baseUrl}/metrics`)).text();
    expect(metricValue(metrics, 'find_order', 'ok')).toBe(1);
    expect(metricValue(metrics, 'reserve_book', 'ok')).toBe(1);

    // The session.update the model saw: the file's instructions and exactly its two tools.
    const s = session.sessionUpdate as { instructions: string; tools: unknown[]; tool_choice: unknown; audio: { output: { voice: string } } };
    expect(Object.keys(s).sort()).toEqual(['audio', 'instructions', 'model', 'output_modalities', 'tool_choice', 'tools', 'type']);
    expect(s.instructions).toBe(INSTRUCTIONS);
    expect(s.audio.output.voice).toBe('marin'); // the file names none: the default
    expect(s.tool_choice).toBe('auto');
    expect(s.tools).toEqual([
      { type: 'function', name: 'find_order', description: 'Find an order by its order number.', parameters: ORDER_PARAMS },
      { type: 'function', name: 'reserve_book', description: 'Reserve copies of a book for pick-up, by ISBN.', parameters: RESERVE_PARAMS },
    ]);
    expect(JSON.stringify(session.sessionUpdate)).not.toContain(SECRET);
  });
});

// ── (2) bad tool back ends ───────────────────────────────────────────

/**
 * Three caller turns: find_order (its back end times out), reserve_book
 * (its back end answers HTML with a 500 or a 200), then reserve_book with
 * arguments that fail the schema. The model speaks each output (its trouble
 * line as is, the schema problem asked again).
 */
const badBackEndsScenario: Scenario = {
  greeting: 'Ravenwood Books, how can I help?',
  turns: [
    { callerTranscript: 'Where is order R W 1 2 3 4?', tool: { name: 'find_order', arguments: ORDER_ARGS, reply: speak } },
    { callerTranscript: 'Hold two copies, please.', tool: { name: 'reserve_book', arguments: RESERVE_ARGS, reply: speak } },
    { callerTranscript: 'Make it nine copies.', tool: { name: 'reserve_book', arguments: { isbn: '9780141439518', copies: 9 }, reply: speak } },
  ],
};

describe.each(['transcode', 'passthrough'] as const)('bad tool back ends (node edge, %s)', (audioMode) => {
  it.each(['/html500', '/html200'])('a timeout and garbage (%s) give the model TOOL_TROUBLE, which the caller hears; arguments failing the schema are never sent', async (garbage) => {
    const tools = await toolServer();
    const file = writeAgent(`${tools.base}/slow`, `${tools.base}${garbage}`, { orderTimeoutMs: 300 });
    const { app, model, baseUrl } = await start('node', audioMode, file, badBackEndsScenario);

    const result = await placeCall({
      baseUrl,
      publicUrl: 'https://rw.invalid',
      utterances: [{ durationMs: 800 }, { durationMs: 800 }, { durationMs: 800 }],
      hangupAfterMs: 800,
    });
    await app.store.flush();
    const session = model.sessions[0]!;

    // Each back end was asked once; the call with nine copies never left callbridge.
    expect(tools.on('/slow')).toHaveLength(1);
    expect(tools.on(garbage)).toHaveLength(1);
    expect(tools.on(garbage)[0]!.body).toEqual({ call_sid: result.callSid, arguments: RESERVE_ARGS });
    expect(tools.received).toHaveLength(2);

    // The model got TOOL_TROUBLE for the first two, the schema's problem for the third.
    expect(session.toolCalls.map((c) => c.name)).toEqual(['find_order', 'reserve_book', 'reserve_book']);
    const outputOf = (i: number) => JSON.parse(session.toolOutputs.find((o) => o.call_id === session.toolCalls[i]!.call_id)!.output) as Record<string, unknown>;
    expect(outputOf(0)).toEqual({ error: TOOL_TROUBLE });
    expect(outputOf(1)).toEqual({ error: TOOL_TROUBLE });
    expect(outputOf(2)).toMatchObject({ error: 'invalid_arguments' });
    expect(String(outputOf(2).ask_again)).toMatch(/copies/);

    // The caller heard the trouble line after each failed call: audio, not silence.
    const record = (await app.store.get(result.callSid))!;
    const said = record.transcript.filter((t) => t.speaker === 'assistant').map((t) => t.text);
    expect(said.filter((t) => t === TOOL_TROUBLE)).toHaveLength(2);
    expect(said.some((t) => /^Sorry, .*copies/.test(t))).toBe(true);
    for (const i of [0, 1]) {
      const at = session.toolOutputs.find((o) => o.call_id === session.toolCalls[i]!.call_id)!.at - result.startedAtPerfMs;
      expect(heardAfter(result.playback, at)).toBeGreaterThan(0);
    }
    const lastOutputAt = Math.max(...session.toolOutputs.map((o) => o.at)) - result.startedAtPerfMs;
    expect(heardAfter(result.playback, lastOutputAt)).toBeGreaterThan(0);

    // The record and /metrics say how each ended.
    expect(record.toolCalls.map((t) => [t.name, t.ok, (t.record as { error?: string }).error])).toEqual([
      ['find_order', false, 'timeout'],
      ['reserve_book', false, garbage === '/html500' ? 'http_500' : 'bad_json'],
      ['reserve_book', false, 'invalid_arguments'],
    ]);
    const metrics = await (await fetch(`${baseUrl}/metrics`)).text();
    expect(metricValue(metrics, 'find_order', 'timeout')).toBe(1);
    expect(metricValue(metrics, 'reserve_book', 'error')).toBe(1);
    expect(metricValue(metrics, 'reserve_book', 'invalid_arguments')).toBe(1);
    expect(metricValue(metrics, 'reserve_book', 'ok')).toBe(0);
  });
});

// ── (3) callbridge agent check ───────────────────────────────────────

describe('callbridge agent check on the user\'s file', () => {
  it('lists both tools with their schemas; a broken copy lists its three problems, each with its path', async () => {
    const file = writeAgent('http://127.0.0.1:9/orders', 'https://shop.example.com/reserve');
    const good = memoryIO({ [SECRET_ENV]: SECRET });
    expect(await main(['agent', 'check', file], good.io)).toBe(0);
    const out = good.out();
    expect(out).toContain('agent ravenwood');
    expect(out).toMatch(/tools \(2\):/);
    expect(out).toContain('find_order   HTTP POST http://127.0.0.1:9/orders');
    expect(out).toContain('reserve_book   HTTP POST https://shop.example.com/reserve');
    expect(out).toContain(`X-Shop-Key (env ${SECRET_ENV})`);
    expect(out).toContain('"pattern": "^RW[0-9]{4}$"');
    expect(out).toContain('"maximum": 3');
    expect(out).not.toContain(SECRET);
    expect(good.err()).toBe('');

    // Three problems: a plain-http URL off this machine, a bad header source, a timeout below the minimum.
    const broken = join(dir, 'ravenwood-broken.yaml');
    const text = readFileSync(file, 'utf8');
    writeFileSync(
      broken,
      text
        .replace('url: http://127.0.0.1:9/orders', 'url: http://orders.example.com/orders')
        .replace(`X-Shop-Key: { env: ${SECRET_ENV}, prefix: "Key " }`, 'X-Shop-Key: { secret: hunter2 }')
        .replace(/(reserve_book[\s\S]*?)timeout_ms: 3000/, '$1timeout_ms: 5'),
    );
    const bad = memoryIO({});
    expect(await main(['agent', 'check', broken], bad.io)).toBe(1);
    const lines = bad.err().trim().split('\n');
    expect(lines[0]).toBe(`${broken}: 3 problems`);
    expect(lines.slice(1)).toHaveLength(3);
    expect(lines.slice(1).join('\n')).toMatch(/tools\[0\]\.url: .*not an https URL/);
    expect(lines.slice(1).join('\n')).toMatch(/tools\[0\]\.headers\.X-Shop-Key: /);
    expect(lines.slice(1).join('\n')).toMatch(/tools\[1\]\.timeout_ms: /);
  });
});
