/**
 * /console through both edges, on loopback with a fake ConsoleApp (and a
 * minimal VoiceApp): replies with their bytes and headers (one Set-Cookie
 * stays one cookie), POST bodies and the 413 past MAX_BODY_BYTES, query,
 * headers and client address copied into the ConsoleRequest, Server-Sent
 * Events (order, the client leaving, the app ending, the server closing,
 * backpressure), 404 without a ConsoleApp, 500 JSON when the app fails, and
 * the per-client rate limit. Once per edge that loads on this Node.
 */
import { afterEach, describe, expect, it } from 'vitest';
import net from 'node:net';
import type { ConsoleApp, ConsoleReply, ConsoleRequest, VoiceApp } from '../src/call/ports.js';
import { silentLogger } from '../src/log.js';
import { availableEdges, MAX_BODY_BYTES, startServer, type EdgeKind, type EdgeSettings, type RunningServer } from '../src/server/app.js';
import { edgeSettings } from './helpers/settings.js';
import { until } from './helpers/until.js';

const voiceApp: VoiceApp = {
  incoming: () => ({ ok: false, status: 503, message: 'not in this test' }),
  status() {},
  openStream: () => null,
  health: () => ({ status: 'ok', version: '1', uptimeSeconds: 0, activeCalls: 0, model: { reachable: null, lastOkAt: null, lastError: null } }),
};

/** A ConsoleApp that records every request and answers with `answer`. */
function fakeConsole(answer: (req: ConsoleRequest) => ConsoleReply | Promise<ConsoleReply>) {
  const requests: ConsoleRequest[] = [];
  const app: ConsoleApp = {
    async handle(req) {
      requests.push(req);
      return answer(req);
    },
  };
  return { app, requests };
}

/** An event stream the test drives: what `open` got, and how often its stop function ran. */
function sseProbe(onOpen: (send: (chunk: string) => boolean, end: () => void) => void = () => {}) {
  const probe = {
    opens: 0,
    stops: 0,
    send: null as ((chunk: string) => boolean) | null,
    end: null as (() => void) | null,
    reply: null as unknown as ConsoleReply,
  };
  probe.reply = {
    status: 200,
    headers: { 'x-console': 'live', 'content-type': 'text/plain' },
    stream: {
      open(send, end) {
        probe.opens++;
        probe.send = send;
        probe.end = end;
        onOpen(send, end);
        return () => void probe.stops++;
      },
    },
  };
  return probe;
}

const servers: RunningServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function start(edge: EdgeKind, consoleApp: ConsoleApp | undefined, over: Partial<EdgeSettings> = {}) {
  const settings = edgeSettings({ port: 0, host: '127.0.0.1', ...over });
  const s = await startServer({ settings, app: voiceApp, log: silentLogger, edge, console: consoleApp });
  servers.push(s);
  expect(s.edge.kind).toBe(edge);
  return { s, base: `http://127.0.0.1:${s.port}` };
}

/** Read SSE events (`data:` lines of each block; comment lines skipped) from a fetch body until `n` have come. */
async function readEvents(body: ReadableStream<Uint8Array>, n: number): Promise<{ events: string[]; reader: ReadableStreamDefaultReader<Uint8Array> }> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const events: string[] = [];
  let buffered = '';
  while (events.length < n) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the stream ended after ${events.length} of ${n} events`);
    buffered += decoder.decode(value, { stream: true });
    let cut: number;
    while ((cut = buffered.indexOf('\n\n')) >= 0) {
      const block = buffered.slice(0, cut);
      buffered = buffered.slice(cut + 2);
      const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim());
      if (data.length > 0) events.push(data.join('\n'));
    }
  }
  return { events, reader };
}

/** Read to the end: 'done' when the response ended, 'error' when the connection was cut. */
async function drain(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<'done' | 'error'> {
  try {
    for (;;) if ((await reader.read()).done) return 'done';
  } catch {
    return 'error';
  }
}

const WAIT = { timeoutMs: 3000 };

describe.each(availableEdges())('%s edge: /console', (edge) => {
  it("writes a reply's bytes, its type and headers; a Set-Cookie with a comma in its date stays one cookie", async () => {
    const cookie = 'cb_session=abc123; Path=/console; HttpOnly; Secure; SameSite=Strict; Expires=Wed, 09 Jun 2027 10:18:14 GMT';
    const bytes = new Uint8Array([0, 1, 2, 127, 128, 254, 255, 10, 13]);
    const c = fakeConsole(() => ({ status: 200, type: 'image/png', headers: { 'Set-Cookie': cookie, 'x-frame-options': 'DENY', 'cache-control': 'private, max-age=60' }, body: bytes }));
    const { base } = await start(edge, c.app);
    const res = await fetch(`${base}/console/assets/logo.png`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/png');
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    expect(res.headers.get('cache-control')).toBe('private, max-age=60');
    expect(res.headers.getSetCookie()).toEqual([cookie]);
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(bytes);
  });

  it('writes a text reply with its status, and a 204 with its headers and no body', async () => {
    const c = fakeConsole((req) =>
      req.path === '/console/api/logout'
        ? { status: 204, type: 'text/plain', headers: { 'set-cookie': 'cb_session=; Max-Age=0; Path=/console' }, body: '' }
        : { status: 403, type: 'application/json', headers: {} as Record<string, string>, body: '{"error":"csrf"}' },
    );
    const { base } = await start(edge, c.app);
    const r1 = await fetch(`${base}/console`);
    expect(r1.status).toBe(403);
    expect(await r1.json()).toEqual({ error: 'csrf' });
    const r2 = await fetch(`${base}/console/api/logout`, { method: 'POST', body: '' });
    expect(r2.status).toBe(204);
    expect(r2.headers.getSetCookie()).toEqual(['cb_session=; Max-Age=0; Path=/console']);
    expect(await r2.text()).toBe('');
  });

  it('leaves out a reply header that is not valid HTTP and writes the rest', async () => {
    const c = fakeConsole(() => ({ status: 200, type: 'text/plain', headers: { 'x-bad': 'a\r\nx-injected: 1', 'x-good': 'yes' }, body: 'ok' }));
    const { base } = await start(edge, c.app);
    const res = await fetch(`${base}/console/x`);
    expect(res.status).toBe(200);
    expect(res.headers.get('x-good')).toBe('yes');
    expect(res.headers.get('x-bad')).toBeNull();
    expect(res.headers.get('x-injected')).toBeNull();
    expect(await res.text()).toBe('ok');
  });

  it('passes the method, path, query, lower-case headers and client address; a GET has no body', async () => {
    const c = fakeConsole(() => ({ status: 200, type: 'application/json', headers: {}, body: '{}' }));
    const { base } = await start(edge, c.app);
    const res = await fetch(`${base}/console/api/calls?from=%2B15550001111&limit=5`, { headers: { 'X-Console-Test': 'yes', Cookie: 'cb_session=s1' } });
    expect(res.status).toBe(200);
    const req = c.requests[0]!;
    expect(req.method).toBe('GET');
    expect(req.path).toBe('/console/api/calls');
    expect(req.query.get('from')).toBe('+15550001111');
    expect(req.query.get('limit')).toBe('5');
    expect(req.headers['x-console-test']).toBe('yes');
    expect(req.headers.cookie).toBe('cb_session=s1');
    expect(req.client).toBe('127.0.0.1');
    expect(req.body).toBeNull();
  });

  it('takes the client address from X-Forwarded-For when the peer is a trusted proxy', async () => {
    const c = fakeConsole(() => ({ status: 200, type: 'text/plain', headers: {}, body: '' }));
    const { base } = await start(edge, c.app, { trustProxy: [{ address: '127.0.0.1', prefix: 32, family: 'ipv4' }] });
    await fetch(`${base}/console`, { headers: { 'x-forwarded-for': '203.0.113.9' } });
    expect(c.requests[0]!.client).toBe('203.0.113.9');
  });

  it('reads POST, PUT and DELETE bodies; a body over MAX_BODY_BYTES gets 413 and never reaches the app', async () => {
    const c = fakeConsole(() => ({ status: 200, type: 'application/json', headers: {}, body: '{"ok":true}' }));
    const { base } = await start(edge, c.app);
    const json = JSON.stringify({ q: 'ünïcode', n: 1 });
    for (const method of ['POST', 'PUT', 'DELETE']) {
      const res = await fetch(`${base}/console/api/things`, { method, headers: { 'content-type': 'application/json' }, body: json });
      expect(res.status).toBe(200);
      await res.text();
    }
    expect(c.requests.map((r) => [r.method, r.body?.toString('utf8')])).toEqual([['POST', json], ['PUT', json], ['DELETE', json]]);

    const big = await fetch(`${base}/console/api/things`, { method: 'POST', body: 'x'.repeat(100_000) });
    expect(big.status).toBe(413);
    await big.text();
    expect(c.requests).toHaveLength(3);
  });

  it('refuses a chunked POST body as soon as it passes MAX_BODY_BYTES (no Content-Length)', async () => {
    const c = fakeConsole(() => ({ status: 200, type: 'text/plain', headers: {}, body: 'ok' }));
    const { s } = await start(edge, c.app);
    const status = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(s.port, '127.0.0.1', () => {
        sock.write('POST /console/api/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n');
        const chunk = 'y'.repeat(4096);
        for (let i = 0; i < 4; i++) sock.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
      });
      let got = '';
      sock.on('data', (d) => {
        got += d.toString('latin1');
        if (got.includes('\r\n')) {
          resolve(got.slice(0, got.indexOf('\r\n')));
          sock.destroy();
        }
      });
      sock.on('error', reject);
    });
    expect(status).toMatch(/^HTTP\/1\.1 413 /);
    expect(c.requests).toHaveLength(0);
    expect(4 * 4096).toBeGreaterThan(MAX_BODY_BYTES);
  });

  it('answers 404 on /console without a ConsoleApp', async () => {
    const { base } = await start(edge, undefined);
    for (const path of ['/console', '/console/api/me']) {
      const res = await fetch(base + path);
      expect(res.status).toBe(404);
      await res.text();
    }
  });

  it('routes only /console and /console/*: /consoles is not the console', async () => {
    const c = fakeConsole(() => ({ status: 200, type: 'text/plain', headers: {}, body: 'console' }));
    const { base } = await start(edge, c.app);
    const res = await fetch(`${base}/consoles`);
    expect(res.status).toBe(404);
    await res.text();
    expect(c.requests).toHaveLength(0);
  });

  it('answers 500 JSON when the app throws or rejects, and the server goes on', async () => {
    let n = 0;
    const app: ConsoleApp = {
      handle(): Promise<ConsoleReply> {
        n++;
        if (n === 1) throw new Error('bug in the console');
        if (n === 2) return Promise.reject(new Error('store down'));
        return Promise.resolve({ status: 200, type: 'text/plain', headers: {}, body: 'fine' });
      },
    };
    const { base } = await start(edge, app);
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${base}/console/api/calls`);
      expect(res.status).toBe(500);
      expect(res.headers.get('content-type')).toBe('application/json');
      expect(await res.json()).toEqual({ error: 'internal error' });
    }
    const ok = await fetch(`${base}/console`);
    expect(await ok.text()).toBe('fine');
  });

  it('applies the per-client rate limit: 429 past it', async () => {
    const c = fakeConsole(() => ({ status: 200, type: 'text/plain', headers: {}, body: 'ok' }));
    const { base } = await start(edge, c.app, { rateLimit: { burst: 2, perSecond: 0.001 } });
    const codes: number[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await fetch(`${base}/console`);
      codes.push(res.status);
      await res.text();
    }
    expect(codes).toEqual([200, 200, 429, 429]);
    expect(c.requests).toHaveLength(2);
  });

  describe('event streams', () => {
    it('writes the head, then three events in order (sent during open and later)', async () => {
      const probe = sseProbe((send) => {
        expect(send('event: live\ndata: 1\n\n')).toBe(true);
        setImmediate(() => {
          send('event: live\ndata: 2\n\n');
          setTimeout(() => send('event: live\ndata: 3\n\n'), 5);
        });
      });
      const c = fakeConsole(() => probe.reply);
      const { base } = await start(edge, c.app);
      const res = await fetch(`${base}/console/api/live`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(res.headers.get('x-accel-buffering')).toBe('no');
      expect(res.headers.get('x-console')).toBe('live');
      const { events, reader } = await readEvents(res.body!, 3);
      expect(events).toEqual(['1', '2', '3']);
      expect(probe.opens).toBe(1);
      await reader.cancel();
    });

    it('the client aborting calls the stop function once, and send is refused after it', async () => {
      const probe = sseProbe((send) => void send('data: hello\n\n'));
      const c = fakeConsole(() => probe.reply);
      const { base } = await start(edge, c.app);
      const abort = new AbortController();
      const res = await fetch(`${base}/console/api/live`, { signal: abort.signal });
      const { events } = await readEvents(res.body!, 1);
      expect(events).toEqual(['hello']);
      abort.abort();
      await until(() => probe.stops === 1, { ...WAIT, what: 'the stream stopped' });
      expect(probe.send!('data: after\n\n')).toBe(false);
      probe.end!(); // ending after the client left changes nothing
      // The edge has nothing more to report: a later request is served while the stop count stays one.
      const again = await fetch(`${base}/console/api/live`);
      await readEvents(again.body!, 1).then(({ reader }) => reader.cancel());
      await until(() => probe.stops === 2, { ...WAIT, what: 'the second stream stopped' });
      expect(probe.opens).toBe(2);
    });

    it("the app's end() ends the response and stops the stream once", async () => {
      const probe = sseProbe((send, end) => {
        send('data: only\n\n');
        setImmediate(end);
      });
      const c = fakeConsole(() => probe.reply);
      const { base } = await start(edge, c.app);
      const res = await fetch(`${base}/console/api/live`);
      const { events, reader } = await readEvents(res.body!, 1);
      expect(events).toEqual(['only']);
      expect(await drain(reader)).toBe('done');
      await until(() => probe.stops === 1, { ...WAIT, what: 'the stream stopped' });
      expect(probe.send!('data: late\n\n')).toBe(false);
    });

    it('an open that throws ends the response; the server goes on', async () => {
      let n = 0;
      const c = fakeConsole(() =>
        ++n === 1
          ? { status: 200, headers: {}, stream: { open: () => { throw new Error('bug in open'); } } }
          : { status: 200, type: 'text/plain', headers: {}, body: 'still here' },
      );
      const { base } = await start(edge, c.app);
      const res = await fetch(`${base}/console/api/live`);
      expect(res.status).toBe(200);
      expect(await drain(res.body!.getReader())).toBe('done');
      expect(await (await fetch(`${base}/console`)).text()).toBe('still here');
    });

    it('server.close() ends an open stream, calls its stop function once, and resolves', async () => {
      const probe = sseProbe((send) => void send('data: open\n\n'));
      const c = fakeConsole(() => probe.reply);
      const { s, base } = await start(edge, c.app);
      const res = await fetch(`${base}/console/api/live`);
      const { reader } = await readEvents(res.body!, 1);
      servers.splice(servers.indexOf(s), 1);
      await s.close();
      expect(probe.stops).toBe(1);
      expect(probe.send!('data: after close\n\n')).toBe(false);
      expect(await drain(reader)).toBe('done');
    });

    it('send returns false when the client does not read; past the limit chunks are dropped, not buffered; it recovers', async () => {
      const chunk = `data: ${'z'.repeat(16 * 1024)}\n\n`;
      const probe = sseProbe();
      const c = fakeConsole(() => probe.reply);
      const { s } = await start(edge, c.app);
      // A raw client that sends the request and reads nothing until told.
      let received = 0;
      let tail = '';
      const sock = net.connect(s.port, '127.0.0.1', () => sock.write('GET /console/api/live HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'));
      sock.pause();
      const finished = new Promise<void>((resolve) => {
        sock.on('data', (d: Buffer) => {
          received += d.length;
          tail = (tail + d.toString('latin1')).slice(-16);
          if (tail.endsWith('\r\n0\r\n\r\n')) resolve(); // the chunked body's end
        });
        sock.on('close', () => resolve());
      });
      await until(() => probe.opens === 1, { ...WAIT, what: 'the stream opened' });
      // 64 MiB offered at once: far more than the socket buffers and the edge's limit hold.
      const offered = 4096 * chunk.length;
      let refused = 0;
      for (let i = 0; i < 4096; i++) if (!probe.send!(chunk)) refused++;
      expect(refused).toBeGreaterThan(0);
      // Once the client reads again, sends go through again.
      sock.resume();
      await until(() => probe.send!('data: again\n\n'), { ...WAIT, what: 'a send accepted after the client read' });
      probe.end!();
      await finished;
      sock.destroy();
      // Everything queued arrives; what was dropped never does. Unbounded buffering would deliver all 64 MiB.
      expect(received).toBeGreaterThan(chunk.length);
      expect(received).toBeLessThan(offered / 2);
      expect(probe.stops).toBe(1);
    });
  });
});
