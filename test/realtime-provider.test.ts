/**
 * OpenAIRealtimeProvider against a small GA Realtime stand-in written here:
 * a real `ws` WebSocketServer on 127.0.0.1, scripted per test.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createNetServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { ModelConnectError, type ModelAudioFormat, type ModelEvent, type ModelSession } from '../src/call/voice-model.js';
import { silentLogger } from '../src/log.js';
import {
  OpenAIRealtimeProvider,
  isRetryableClose,
  type OpenAIRealtimeProviderOptions,
  type SessionCounters,
} from '../src/realtime/openai-provider.js';
import { ReachabilityTracker } from '../src/call/reachability.js';
import { RealtimeEventMapper } from '../src/realtime/events.js';
import {
  appendAudioEvent,
  buildSessionUpdate,
  functionCallOutputEvent,
  parseServerEvent,
  responseCancelEvent,
  responseCreateEvent,
  truncateEvent,
  userTextEvent,
  type SessionSettings,
} from '../src/realtime/protocol.js';
import { leanWriteStats } from '../src/realtime/ws-lean.js';
import { startModelStandIn } from '../src/sim/model-server.js';
import { makeSelfSignedCert } from '../src/sim/tls.js';
import { speechLike, ulawEncode } from '../src/sim/audio.js';
import { decodeFrames, type DecodedFrame } from './helpers/ws-decode.js';
import { listeningPort } from './helpers/sockets.js';
import { until } from './helpers/until.js';

const fixture = readFileSync(new URL('./fixtures/realtime/server-events.jsonl', import.meta.url), 'utf8')
  .split('\n')
  .filter((l) => l.length > 0);

const SESSION_OPTS = {
  instructions: 'Be brief.',
  voice: 'marin',
  tools: [{ name: 'check_eligibility', description: 'Check coverage', parameters: { type: 'object' } }],
};

interface Script {
  /** Send session.created on connection (default true). */
  created?: boolean;
  /** Reply to session.update with this (default: session.updated). null = never reply. */
  onSessionUpdate?: ((ws: WebSocket) => void) | null;
  /** Refuse the upgrade with this HTTP status. */
  refuseStatus?: number;
  /** Called once the handshake reply went out. */
  afterHandshake?: (ws: WebSocket) => void;
}

class FakeModel {
  readonly wss: WebSocketServer;
  readonly received: any[] = [];
  /** Time each message arrived, relative to the connection. */
  readonly receivedAtMs: number[] = [];
  requests: IncomingMessage[] = [];
  sockets: WebSocket[] = [];
  port = 0;

  constructor(private readonly script: Script = {}) {
    this.wss = new WebSocketServer({
      host: '127.0.0.1',
      port: 0,
      verifyClient: (info, cb) => {
        this.requests.push(info.req);
        if (script.refuseStatus !== undefined) cb(false, script.refuseStatus, 'refused');
        else cb(true);
      },
    });
    this.wss.on('connection', (ws) => this.onConnection(ws));
  }

  async listening(): Promise<this> {
    this.port = await listeningPort(this.wss);
    return this;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}/v1/realtime`;
  }

  private onConnection(ws: WebSocket): void {
    this.sockets.push(ws);
    const t0 = Date.now();
    ws.on('message', (data) => {
      const ev = JSON.parse(data.toString());
      this.received.push(ev);
      this.receivedAtMs.push(Date.now() - t0);
      if (ev.type !== 'session.update') return;
      const reply = this.script.onSessionUpdate;
      if (reply === null) return;
      if (reply) reply(ws);
      else ws.send(JSON.stringify({ type: 'session.updated', event_id: 'e2', session: ev.session }));
      this.script.afterHandshake?.(ws);
    });
    if (this.script.created !== false) {
      ws.send(JSON.stringify({ type: 'session.created', event_id: 'e1', session: { type: 'realtime', id: 'sess_1' } }));
    }
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.terminate();
    await new Promise<void>((r) => this.wss.close(() => r()));
  }
}

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function fake(script?: Script): Promise<FakeModel> {
  const f = await new FakeModel(script).listening();
  cleanups.push(() => f.close());
  return f;
}

function provider(url: string, over: Partial<OpenAIRealtimeProviderOptions> = {}): OpenAIRealtimeProvider {
  return new OpenAIRealtimeProvider({
    url,
    model: 'gpt-realtime',
    apiKey: 'sk-test-123',
    connectTimeoutMs: 2000,
    format: 'pcm24k',
    transcriptionModel: 'gpt-4o-transcribe',
    vad: { threshold: 0.5, prefixPaddingMs: 300, silenceDurationMs: 500 },
    log: silentLogger,
    ...over,
  });
}

/** The session settings `provider()` builds its session.update from, for SESSION_OPTS. */
function sessionSettings(format: ModelAudioFormat): SessionSettings {
  return {
    model: 'gpt-realtime',
    instructions: SESSION_OPTS.instructions,
    voice: SESSION_OPTS.voice,
    format,
    transcriptionModel: 'gpt-4o-transcribe',
    vad: { threshold: 0.5, prefixPaddingMs: 300, silenceDurationMs: 500 },
    tools: SESSION_OPTS.tools,
  };
}

async function connect(p: OpenAIRealtimeProvider, signal?: AbortSignal): Promise<ModelSession> {
  const s = await p.connect(SESSION_OPTS, signal);
  cleanups.push(() => s.close());
  return s;
}

function collect(s: ModelSession): ModelEvent[] {
  const out: ModelEvent[] = [];
  s.onEvent((e) => out.push(e));
  return out;
}

/** The waits here keep their 2 s bound. */
const WITHIN = { timeoutMs: 2000 };

async function connectError(p: Promise<unknown>): Promise<ModelConnectError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(ModelConnectError);
    return e as ModelConnectError;
  }
  throw new Error('connect should have failed');
}

describe('handshake', () => {
  it('dials ?model= with a Bearer key and no OpenAI-Beta header, sends session.update after session.created, resolves on session.updated', async () => {
    const f = await fake();
    const p = provider(f.url);
    const s = await connect(p);
    const req = f.requests[0]!;
    expect(req.url).toBe('/v1/realtime?model=gpt-realtime');
    expect(req.headers.authorization).toBe('Bearer sk-test-123');
    expect(req.headers['openai-beta']).toBe(undefined);
    expect(Object.keys(req.headers).some((h) => h.toLowerCase().startsWith('openai-beta'))).toBe(false);
    expect(f.received).toHaveLength(1);
    // Exactly the session.update of the provider's options (realtime-protocol.test.ts holds its GA shape literally).
    expect(f.received[0]).toEqual(JSON.parse(buildSessionUpdate(sessionSettings('pcm24k'))));
    expect(s.format).toBe('pcm24k');
    expect(p.reachability.snapshot()).toMatchObject({ reachable: true, lastError: null, consecutiveFailures: 0 });
    expect(Date.now() - Date.parse(p.reachability.snapshot().lastOkAt!)).toBeLessThan(5000);
  });

  it('ulaw8k: the session takes the format and asks for it (audio/pcmu both ways)', async () => {
    const f = await fake();
    const s = await connect(provider(f.url, { format: 'ulaw8k' }));
    expect(s.format).toBe('ulaw8k');
    expect(f.received[0]).toEqual(JSON.parse(buildSessionUpdate(sessionSettings('ulaw8k'))));
  });

  it('waits for session.created before sending session.update, and for session.updated before resolving', async () => {
    let server: WebSocket | undefined;
    const f = await fake({ created: false, onSessionUpdate: null });
    f.wss.on('connection', (ws) => (server = ws));
    let resolved = false;
    const pending = provider(f.url).connect(SESSION_OPTS).then((s) => {
      resolved = true;
      cleanups.push(() => s.close());
      return s;
    });
    await until(() => server !== undefined, WITHIN);
    await new Promise((r) => setTimeout(r, 100));
    expect(f.received).toHaveLength(0);
    server!.send(JSON.stringify({ type: 'session.created', session: {} }));
    await until(() => f.received.length === 1, WITHIN);
    await new Promise((r) => setTimeout(r, 50));
    expect(resolved).toBe(false);
    server!.send(JSON.stringify({ type: 'session.updated' })); // no session object: only the arrival counts
    const s = await pending;
    expect(resolved).toBe(true);
    expect(collect(s)[0]).toEqual({ type: 'ready' });
  });

  it('times out (retryable) when the server never finishes the handshake', async () => {
    const f = await fake({ onSessionUpdate: null });
    const p = provider(f.url, { connectTimeoutMs: 200 });
    const t0 = Date.now();
    const err = await connectError(p.connect(SESSION_OPTS));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(err.retryable).toBe(true);
    expect(err.message).toMatch(/timed out/);
    expect(p.reachability.snapshot()).toMatchObject({ reachable: false, consecutiveFailures: 1 });
    await until(() => f.sockets[0]!.readyState === f.sockets[0]!.CLOSED, WITHIN);
  });

  it.each([
    [401, false],
    [403, false],
    [400, false],
    [429, true],
    [503, true],
  ])('a refused upgrade with HTTP %i: retryable %s', async (status, retryable) => {
    const f = await fake({ refuseStatus: status });
    const err = await connectError(provider(f.url).connect(SESSION_OPTS));
    expect(err.retryable).toBe(retryable);
    expect(err.message).toMatch(new RegExp(`HTTP ${status}`));
  });

  it('a refused TCP connection is retryable and marks the endpoint unreachable', async () => {
    const srv = createNetServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const port = (srv.address() as { port: number }).port;
    await new Promise<void>((r) => srv.close(() => r()));
    const tracker = new ReachabilityTracker(() => 1234);
    const p = provider(`ws://127.0.0.1:${port}/v1/realtime`, { reachability: tracker });
    const err = await connectError(p.connect(SESSION_OPTS));
    expect(err.retryable).toBe(true);
    expect(err.message).toMatch(/ECONNREFUSED/);
    expect(tracker.snapshot()).toEqual({
      reachable: false,
      lastOkAt: null,
      lastFailAt: new Date(1234).toISOString(),
      lastError: err.message,
      checkedAt: new Date(1234).toISOString(),
      consecutiveFailures: 1,
      stale: false,
    });
  });

  it('a session.update the server rejects fails the connect, not retryable; the endpoint counts as reachable', async () => {
    const f = await fake({
      onSessionUpdate: (ws) =>
        ws.send(JSON.stringify({ type: 'error', error: { type: 'invalid_request_error', code: 'beta_api_shape_disabled', message: 'no' } })),
    });
    const p = provider(f.url);
    const err = await connectError(p.connect(SESSION_OPTS));
    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(/beta_api_shape_disabled/);
    expect(p.reachability.snapshot().reachable).toBe(true);
  });

  it('the server closing during the handshake fails the connect', async () => {
    const f = await fake({ onSessionUpdate: (ws) => ws.close(1011, 'boom') });
    const err = await connectError(provider(f.url).connect(SESSION_OPTS));
    expect(err.retryable).toBe(true);
    expect(err.message).toMatch(/1011/);
  });

  it('an abort signal stops the connect', async () => {
    const f = await fake({ onSessionUpdate: null });
    const ac = new AbortController();
    const pending = provider(f.url).connect(SESSION_OPTS, ac.signal);
    setTimeout(() => ac.abort(), 50);
    const err = await connectError(pending);
    expect(err.message).toMatch(/aborted/);
    const pre = new AbortController();
    pre.abort();
    await connectError(provider(f.url).connect(SESSION_OPTS, pre.signal));
  });

  it('rejects non-websocket URLs at construction', () => {
    expect(() => provider('https://api.openai.com/v1/realtime')).toThrow(/ws:\/\/ or wss:\/\//);
  });
});

describe('server events reach the call', () => {
  it('delivers the recorded call as events.ts maps it, skipping unknown and malformed events; queues until a listener is set', async () => {
    const f = await fake({
      afterHandshake: (ws) => {
        for (const line of fixture.slice(2)) {
          ws.send(line);
          if (line.includes('"event_4"')) {
            ws.send('not json');
            ws.send('{"type":"input_audio_buffer.speech_started"}');
            ws.send(Buffer.from([1, 2, 3]), { binary: true });
            ws.send('{"type":"some.future_event","x":1}');
          }
        }
        ws.send('{"type":"done.marker.test"}');
      },
    });
    const s = await connect(provider(f.url));
    // Everything above was sent before we listen: it must have been queued.
    await new Promise((r) => setTimeout(r, 150));
    const events = collect(s);
    // What the socket delivers is what realtime/events.ts maps (realtime-events.test.ts holds the literal list).
    const mapper = new RealtimeEventMapper();
    const expected = fixture.slice(2).flatMap((line): ModelEvent[] => {
      const r = parseServerEvent(line);
      if (!r.ok) throw new Error(r.error);
      const m = mapper.map(r.event);
      return m.kind === 'events' ? m.events : m.kind === 'server_error' ? [m.event] : [];
    });
    expect(expected).toHaveLength(13);
    expect(events).toEqual([{ type: 'ready' }, ...expected]);
    // Events after the listener is set are delivered directly.
    f.sockets[0]!.send('{"type":"input_audio_buffer.speech_started","item_id":"i9","audio_start_ms":5}');
    await until(() => events.length === 15, WITHIN);
    expect(events[14]).toEqual({ type: 'speech_started', itemId: 'i9', audioStartMs: 5 });
  });

  it('a listener that throws does not break the session', async () => {
    const f = await fake();
    const s = await connect(provider(f.url));
    const seen: string[] = [];
    s.onEvent((e) => {
      seen.push(e.type);
      throw new Error('listener bug');
    });
    f.sockets[0]!.send('{"type":"input_audio_buffer.speech_started","item_id":"i","audio_start_ms":1}');
    f.sockets[0]!.send('{"type":"input_audio_buffer.speech_stopped","item_id":"i","audio_end_ms":2}');
    await until(() => seen.length === 3, WITHIN);
    expect(seen).toEqual(['ready', 'speech_started', 'speech_stopped']);
  });
});

describe('client events and closing', () => {
  it('sends each call as its client event (protocol.ts builders), in order; a tool result that asks for a response is followed by response.create', async () => {
    const f = await fake();
    const s = await connect(provider(f.url));
    s.appendAudio('AAEC');
    s.sendUserText('The caller pressed 1');
    s.createResponse('Say hello.');
    s.cancelResponse();
    s.truncate('item_out1', 840);
    s.sendToolResult('call_abc', '{"ok":true}', true);
    s.sendToolResult('call_def', '{"ok":false}', false);
    await until(() => f.received.length === 9, WITHIN);
    // The exact shapes are realtime-protocol.test.ts's 'client event builders'.
    expect(f.received.slice(1)).toEqual(
      [
        appendAudioEvent('AAEC'),
        userTextEvent('The caller pressed 1'),
        responseCreateEvent('Say hello.'),
        responseCancelEvent(),
        truncateEvent('item_out1', 840),
        functionCallOutputEvent('call_abc', '{"ok":true}'),
        responseCreateEvent(),
        functionCallOutputEvent('call_def', '{"ok":false}'),
      ].map((e) => JSON.parse(e)),
    );
  });

  it.each([
    [1011, true],
    [1001, true],
    [1008, false],
    [4401, false],
  ])('the server closing with %i reports closed (retryable %s) once', async (code, retryable) => {
    const f = await fake();
    const s = await connect(provider(f.url));
    const events = collect(s);
    f.sockets[0]!.close(code, 'bye');
    await until(() => events.some((e) => e.type === 'closed'), WITHIN);
    await new Promise((r) => setTimeout(r, 50));
    const closed = events.filter((e) => e.type === 'closed');
    expect(closed).toHaveLength(1);
    expect(closed[0]).toMatchObject({ type: 'closed', retryable });
    expect(closed[0]!.type === 'closed' && closed[0].reason).toContain(String(code));
  });

  it('a dropped TCP connection reports closed, retryable', async () => {
    const f = await fake();
    const s = await connect(provider(f.url));
    const events = collect(s);
    f.sockets[0]!.terminate();
    await until(() => events.some((e) => e.type === 'closed'), WITHIN);
    expect(events.find((e) => e.type === 'closed')).toMatchObject({ retryable: true });
  });

  it('a socket error followed by the close still reports closed once', async () => {
    const f = await fake();
    const s = await connect(provider(f.url, { maxPayloadBytes: 1024 }));
    const events = collect(s);
    f.sockets[0]!.send(JSON.stringify({ type: 'rate_limits.updated', pad: 'x'.repeat(2000) }));
    await until(() => events.some((e) => e.type === 'closed'), WITHIN);
    await new Promise((r) => setTimeout(r, 100));
    expect(events.filter((e) => e.type === 'closed')).toHaveLength(1);
  });

  it('sends after the socket closed are dropped silently and counted', async () => {
    const f = await fake();
    const s = await connect(provider(f.url));
    const events = collect(s);
    f.sockets[0]!.close(1011, 'gone');
    await until(() => events.some((e) => e.type === 'closed'), WITHIN);
    const counters = (s as unknown as { counters: { dropped: number; sent: number } }).counters;
    const before = counters.dropped;
    expect(() => {
      s.appendAudio('AAAA');
      s.createResponse();
      s.truncate('x', 1);
    }).not.toThrow();
    expect(counters.dropped).toBe(before + 3);
  });

  it('drops caller audio, not control events, when the model socket stops draining', async () => {
    const f = await fake({ afterHandshake: (ws) => (ws as unknown as { _socket: { pause(): void } })._socket.pause() });
    const s = await connect(provider(f.url));
    const counters = (s as unknown as { counters: { audioDroppedForBackpressure: number; sent: number } }).counters;
    const chunk = 'A'.repeat(256 * 1024);
    for (let i = 0; i < 200; i++) s.appendAudio(chunk); // 50 MB, far beyond socket buffers
    expect(counters.audioDroppedForBackpressure).toBeGreaterThan(100);
    const sentBefore = counters.sent;
    s.cancelResponse();
    expect(counters.sent).toBe(sentBefore + 1);
  });

  it('close() closes the socket with 1000 and reports nothing more', async () => {
    const f = await fake();
    const s = await connect(provider(f.url));
    const events = collect(s);
    const serverClosed = new Promise<number>((r) => f.sockets[0]!.once('close', (code) => r(code)));
    s.close();
    expect(await serverClosed).toBe(1000);
    await new Promise((r) => setTimeout(r, 50));
    expect(events.filter((e) => e.type === 'closed')).toHaveLength(0);
    s.appendAudio('AAAA'); // no throw after close
  });

  it('after close() the events the socket still reads while closing are not reported', async () => {
    const f = await fake();
    const s = await connect(provider(f.url));
    const events = collect(s);
    const ws = (s as unknown as { ws: WebSocket }).ws;
    const delta = (text: string) => Buffer.from(JSON.stringify({ type: 'response.output_audio_transcript.delta', event_id: 'e1', response_id: 'r1', item_id: 'i1', output_index: 0, content_index: 0, delta: text }));
    ws.emit('message', delta('before'), false); // what the socket hands over: reported
    expect(events.at(-1)?.type).toBe('assistant_transcript_delta');
    const reported = events.length;
    s.close();
    ws.emit('message', delta('after'), false); // read during the closing handshake: not reported
    expect(events).toHaveLength(reported);
  });
});

describe('wss:// with an extra CA (a self-signed stand-in)', () => {
  function selfSigned(): { key: string; cert: string } {
    const dir = mkdtempSync(join(tmpdir(), 'callbridge-tls-'));
    try {
      execFileSync('openssl', [
        'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
        '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
      ], { stdio: 'ignore' });
      return { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8') };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it('connects when the CA is given and fails, not retryable, when it is not', async () => {
    const { key, cert } = selfSigned();
    const https = createHttpsServer({ key, cert });
    const wss = new WebSocketServer({ server: https });
    let auth: string | undefined;
    wss.on('connection', (ws, req) => {
      auth = req.headers.authorization;
      ws.on('message', (d) => {
        if (JSON.parse(d.toString()).type === 'session.update') ws.send('{"type":"session.updated","session":{}}');
      });
      ws.send('{"type":"session.created","session":{}}');
    });
    await new Promise<void>((r) => https.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => new Promise<void>((r) => {
      for (const c of wss.clients) c.terminate();
      wss.close();
      https.close(() => r());
    }));
    const url = `wss://127.0.0.1:${(https.address() as { port: number }).port}/v1/realtime`;
    const s = await connect(provider(url, { ca: cert }));
    expect(collect(s)[0]).toEqual({ type: 'ready' });
    expect(auth).toBe('Bearer sk-test-123');
    const err = await connectError(provider(url).connect(SESSION_OPTS));
    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(/SELF_SIGNED|CERT|certificate/i);
  });
});

describe('isRetryableClose', () => {
  it('classifies close codes', () => {
    expect([1000, 1001, 1006, 1011, 1012, 1013, 4000].map(isRetryableClose)).toEqual([true, true, true, true, true, true, true]);
    expect([1002, 1003, 1007, 1008, 4001, 4003, 4400, 4499].map(isRetryableClose)).toEqual(Array(8).fill(false));
  });
});

describe('lean append path (one raw frame per input_audio_buffer.append)', () => {
  const countersOf = (s: ModelSession): SessionCounters => (s as unknown as { counters: SessionCounters }).counters;
  const wsOf = (s: ModelSession): WebSocket => (s as unknown as { ws: WebSocket }).ws;
  const randomB64 = (bytes: number, seed: number): string => {
    const b = Buffer.alloc(bytes);
    let x = seed * 2654435761;
    for (let i = 0; i < bytes; i++) b[i] = (x = (Math.imul(x, 1664525) + 1013904223) >>> 0) >>> 24;
    return b.toString('base64');
  };

  /** Raw frames as they arrived on the server's TCP socket, decoded independently of ws. */
  function tapFrames(server: WebSocket): DecodedFrame[] {
    const out: DecodedFrame[] = [];
    let pending = Buffer.alloc(0);
    // Ahead of ws's own listener: ws unmasks payloads in place in the chunk it is given.
    (server as unknown as { _socket: { prependListener(ev: 'data', f: (b: Buffer) => void): void } })._socket.prependListener('data', (chunk) => {
      const { frames, rest } = decodeFrames(Buffer.concat([pending, chunk]));
      out.push(...frames);
      pending = Buffer.from(rest);
    });
    return out;
  }

  it.each([
    ['pcm24k', 960],
    ['ulaw8k', 160],
  ] as const)('%s: 500 appends arrive intact and in order among control events, each a fresh-masked frame', async (format, frameBytes) => {
    const f = await fake();
    const s = await connect(provider(f.url, { format }));
    const raw = tapFrames(f.sockets[0]!);
    const sentAudio: string[] = [];
    for (let i = 0; i < 500; i++) {
      const b64 = randomB64(frameBytes, i + 1);
      sentAudio.push(b64);
      s.appendAudio(b64);
      if (i % 100 === 50) s.sendUserText(`pressed ${i}`);
    }
    s.createResponse();
    await until(() => f.received.length === 1 + 500 + 5 + 1, WITHIN);
    const events = f.received.slice(1);
    expect(events.filter((e) => e.type === 'input_audio_buffer.append').map((e) => e.audio)).toEqual(sentAudio);
    expect(events.map((e) => e.type).indexOf('conversation.item.create')).toBe(51);
    expect(events.at(-1)).toEqual({ type: 'response.create' });
    const c = countersOf(s);
    expect(c.appendsLean).toBe(500);
    expect(c.sent).toBe(1 + 500 + 5 + 1);
    await until(() => raw.length >= 506, WITHIN);
    const appends = raw.filter((fr) => fr.payload.toString('latin1').startsWith('{"type":"input_audio_buffer.append"'));
    expect(appends).toHaveLength(500);
    for (const fr of appends) expect([fr.fin, fr.opcode, fr.masked, fr.rsv]).toEqual([true, 1, true, 0]);
    const masks = appends.map((fr) => fr.mask!.toString('hex'));
    for (let i = 1; i < masks.length; i++) expect(masks[i]).not.toBe(masks[i - 1]);
    expect(new Set(masks).size).toBeGreaterThan(495);
  });

  it('a big append (64-bit length) and one over 64 KiB arrive intact', async () => {
    const f = await fake();
    const s = await connect(provider(f.url));
    const raw = tapFrames(f.sockets[0]!);
    const big = randomB64(3 * 100_000, 7); // 400,000 base64 chars
    const mid = randomB64(3 * 16_000, 8); // 64,000 chars: 16-bit length
    s.appendAudio(big);
    s.appendAudio(mid);
    await until(() => f.received.length === 3, WITHIN);
    expect(f.received[1]).toEqual({ type: 'input_audio_buffer.append', audio: big });
    expect(f.received[2]).toEqual({ type: 'input_audio_buffer.append', audio: mid });
    await until(() => raw.length === 2, WITHIN);
    expect(raw.map((fr) => fr.lengthBits)).toEqual([64, 16]);
    expect(countersOf(s).appendsLean).toBe(2);
  });

  it('falls back to ws.send while ws has a frame in flight, keeping the order', async () => {
    const f = await fake();
    const s = await connect(provider(f.url));
    const ws = wsOf(s);
    // A Blob makes ws's Sender read it asynchronously (state GET_BLOB_DATA): anything sent meanwhile is queued behind it.
    ws.send(new Blob(['{"type":"test.blob_first"}']));
    s.appendAudio('AAAA');
    s.appendAudio('BBBB');
    await until(() => f.received.length === 4, WITHIN);
    expect(f.received.slice(1).map((e) => e.type === 'input_audio_buffer.append' ? e.audio : e.type)).toEqual(['test.blob_first', 'AAAA', 'BBBB']);
    expect(countersOf(s).appendsLean).toBe(0);
    // Once ws is idle again, appends take the lean path.
    s.appendAudio('CCCC');
    await until(() => f.received.length === 5, WITHIN);
    expect(f.received[4].audio).toBe('CCCC');
    expect(countersOf(s).appendsLean).toBe(1);
  });

  it('does not write raw frames once the socket is closing', async () => {
    const f = await fake();
    const s = await connect(provider(f.url));
    const ws = wsOf(s);
    const raw = tapFrames(f.sockets[0]!);
    ws.close(1000, 'bye');
    s.appendAudio('AAAA');
    expect(countersOf(s).appendsLean).toBe(0);
    await until(() => raw.some((fr) => fr.opcode === 8), WITHIN);
    await new Promise((r) => setTimeout(r, 50));
    expect(raw.map((fr) => fr.opcode)).toEqual([8]); // only the close frame went out
  });

  it('under backpressure the socket keeps the frame memory: later frames go to fresh memory and arrive intact', async () => {
    let serverSocket: { pause(): void; resume(): void } | undefined;
    const f = await fake({ afterHandshake: (ws) => { serverSocket = (ws as unknown as { _socket: { pause(): void; resume(): void } })._socket; serverSocket.pause(); } });
    const s = await connect(provider(f.url));
    const before = leanWriteStats().released;
    const sent: string[] = [];
    for (let i = 0; i < 400; i++) {
      const b64 = randomB64(30_000, i + 100);
      sent.push(b64);
      s.appendAudio(b64); // 16 MB in all: well past the kernel's buffers, under the 8 MB drop cap until near the end
    }
    const c = countersOf(s);
    expect(leanWriteStats().released - before).toBeGreaterThan(0);
    const delivered = c.appendsLean;
    expect(delivered).toBeGreaterThan(0);
    serverSocket!.resume();
    await until(() => f.received.length === 1 + delivered + (c.sent - 1 - delivered), { timeoutMs: 10_000 });
    const got = f.received.slice(1).map((e) => e.audio);
    // What went out is a prefix of what was appended, byte for byte (the rest was dropped for backpressure).
    expect(got).toEqual(sent.slice(0, got.length));
    expect(got.length + c.audioDroppedForBackpressure).toBe(400);
  });

  it('over wss:// (TLS socket under ws) appends arrive intact through the lean path', async () => {
    const tls = makeSelfSignedCert();
    const standIn = await startModelStandIn({ tls });
    cleanups.push(() => standIn.close());
    const s = await connect(provider(standIn.url, { ca: tls.cert, format: 'ulaw8k' }));
    const audio = Buffer.from(ulawEncode(speechLike(1000, 8000, 5)));
    for (let at = 0; at < audio.length; at += 160) s.appendAudio(audio.subarray(at, at + 160).toString('base64'));
    const rec = standIn.sessions[0]!;
    await until(() => rec.appendTimes.length === 50, WITHIN);
    expect(rec.audioMsReceived).toBeCloseTo(1000, 6);
    expect(rec.errorsSent).toEqual([]);
    expect(countersOf(s).appendsLean).toBe(50);
  });

  it.each(['pcm24k', 'ulaw8k'] as const)('the Realtime stand-in (src/sim/model-server.ts) receives every %s append intact', async (format) => {
    const standIn = await startModelStandIn();
    cleanups.push(() => standIn.close());
    const s = await connect(provider(standIn.url, { format }));
    const rate = format === 'pcm24k' ? 24000 : 8000;
    const pcm = speechLike(2000, rate, 3);
    const bytes = format === 'pcm24k' ? Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength) : Buffer.from(ulawEncode(pcm));
    const frameBytes = format === 'pcm24k' ? 960 : 160;
    for (let at = 0; at < bytes.length; at += frameBytes) s.appendAudio(bytes.subarray(at, at + frameBytes).toString('base64'));
    const rec = standIn.sessions[0]!;
    await until(() => rec.appendTimes.length === 100, WITHIN);
    expect(rec.format).toBe(format);
    expect(rec.audioMsReceived).toBeCloseTo(2000, 6);
    expect(rec.errorsSent).toEqual([]);
    expect(countersOf(s).appendsLean).toBe(100);
  });
});
