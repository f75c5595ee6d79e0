/**
 * Issue 22's edge items on loopback, once per edge that loads here (real
 * uWS and node:http + ws, real sockets, the real twilio signature code, a
 * fake VoiceApp): work done before the limiter (body and field caps, the
 * failed-signature budget looked at first), replayable signed requests
 * (signed limit, streams awaiting `start`, the template's Host pattern),
 * client addresses (every X-Forwarded-For line, IPv6 by /64) and the health
 * report's error text.
 */
import { afterEach, describe, expect, it } from 'vitest';
import net from 'node:net';
import WebSocket from 'ws';
import type { HealthReport, StreamHandler, VoiceApp } from '../src/call/ports.js';
import { silentLogger } from '../src/log.js';
import { availableEdges, startServer, type EdgeKind, type EdgeSettings, type RunningServer } from '../src/server/app.js';
import { instanceHostPattern, withoutErrorText } from '../src/server/core.js';
import { signTwilioRequest } from '../src/twilio/signature.js';
import { edgeSettings } from './helpers/settings.js';

const TOKEN = 'test-auth-token';
const PUBLIC = 'https://relay.example.test';
const WSS = PUBLIC.replace('https', 'wss');
const ADMIN = 'admin-token-0123456789';

function fakeApp(health?: () => HealthReport) {
  const incoming: string[] = [];
  const statuses: string[] = [];
  const streams: { texts: string[]; closes: number[] }[] = [];
  const app: VoiceApp = {
    incoming(call) {
      incoming.push(call.callSid);
      return { ok: true, twiml: '<Response/>' };
    },
    status(cb) {
      statuses.push(cb.callSid);
    },
    openStream() {
      const rec = { texts: [] as string[], closes: [] as number[] };
      streams.push(rec);
      const h: StreamHandler = { onText: (t) => rec.texts.push(t), onBinary: () => {}, onDrain: () => {}, onClose: (c) => rec.closes.push(c) };
      return h;
    },
    health: health ?? (() => ({ status: 'ok', version: '1', uptimeSeconds: 0, activeCalls: 0, model: { reachable: true, lastOkAt: null, lastError: null } })),
  };
  return { app, incoming, statuses, streams };
}

const servers: RunningServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function start(edge: EdgeKind, app: VoiceApp, over: Partial<EdgeSettings> = {}) {
  const settings = edgeSettings({ port: 0, host: '127.0.0.1', publicUrl: PUBLIC, twilioAuthToken: TOKEN, ...over });
  const s = await startServer({ settings, app, log: silentLogger, edge });
  servers.push(s);
  return { s, base: `http://127.0.0.1:${s.port}`, ws: `ws://127.0.0.1:${s.port}/voice/stream` };
}

const callForm = (i: number) => ({
  CallSid: `CA${i.toString(16).padStart(32, '0')}`, AccountSid: `AC${'2'.repeat(32)}`, From: `+1555040${String(i).padStart(4, '0')}`, To: '+15550002222', CallStatus: 'ringing',
});

function post(base: string, path: string, form: Record<string, string>, signature: string, headers: Record<string, string> = {}) {
  return fetch(base + path, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signature, ...headers },
    body: new URLSearchParams(form).toString(),
  });
}

/** Opens a websocket: 'open' (with the socket) or the HTTP status of the refusal. */
function upgrade(url: string, headers: Record<string, string>): Promise<{ status: number; ws?: WebSocket }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers });
    ws.once('open', () => resolve({ status: 101, ws }));
    ws.once('unexpected-response', (_req, res) => resolve({ status: res.statusCode ?? 0 }));
    ws.on('error', () => {});
  });
}

const streamSig = (url = `${WSS}/voice/stream`) => ({ 'x-twilio-signature': signTwilioRequest(TOKEN, url, {}) });
const closed = (ws: WebSocket) => new Promise<number>((r) => (ws.readyState === WebSocket.CLOSED ? r(-1) : ws.once('close', (c) => r(c))));

function startMessage(i: number): string {
  const callSid = `CA${i.toString(16).padStart(32, '0')}`;
  const streamSid = `MZ${callSid.slice(2)}`;
  const start = { accountSid: `AC${'3'.repeat(32)}`, streamSid, callSid, tracks: ['inbound'], customParameters: {}, mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 } };
  return JSON.stringify({ event: 'start', sequenceNumber: '1', streamSid, start });
}

/** One raw HTTP/1.1 exchange: what the server wrote until it closed or `until` matched. */
function raw(port: number, request: string, until: (got: string) => boolean, parts: string[] = []): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let got = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer in time; got ${JSON.stringify(got.slice(0, 200))}`));
    }, 5000);
    const finish = () => {
      clearTimeout(timer);
      sock.destroy();
      resolve(got);
    };
    sock.on('error', () => {});
    sock.on('data', (d) => {
      got += d.toString();
      if (until(got)) finish();
    });
    sock.on('close', finish);
    sock.write(request);
    for (const p of parts) sock.write(p);
  });
}

describe.each(availableEdges())('%s edge', (edge) => {
  describe('work before the limiter (item 3)', () => {
    it('refuses a body over 8 KiB with 413 from its Content-Length, before any signature work', async () => {
      const f = fakeApp();
      const { base, s } = await start(edge, f.app);
      const form = { ...callForm(1), Pad: 'x'.repeat(9 * 1024) };
      const res = await post(base, '/voice/incoming', form, signTwilioRequest(TOKEN, `${PUBLIC}/voice/incoming`, form));
      expect(res.status).toBe(413);
      expect(f.incoming).toHaveLength(0);
      expect(await s.metrics.registry.getSingleMetricAsString('callbridge_signature_rejections_total')).not.toContain('route="incoming"');
    });

    it('answers 413 as soon as a streamed (chunked) body passes 8 KiB, without waiting for the rest', async () => {
      const f = fakeApp();
      const { s } = await start(edge, f.app);
      const chunk = 'x'.repeat(4096);
      // Three 4 KiB chunks (12 KiB) and no terminating chunk: the answer must come anyway.
      const got = await raw(
        s.port,
        'POST /voice/incoming HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: forged\r\nTransfer-Encoding: chunked\r\n\r\n',
        (g) => g.includes('\r\n\r\n'),
        [0, 1, 2].map(() => `1000\r\n${chunk}\r\n`),
      );
      expect(got).toMatch(/^HTTP\/1\.1 413 /);
      expect(f.incoming).toHaveLength(0);
    });

    it('refuses a webhook of more than 100 form fields with 413 before checking its signature, even a valid one', async () => {
      const f = fakeApp();
      const { base, s } = await start(edge, f.app);
      const form: Record<string, string> = { ...callForm(2) };
      for (let i = 0; i < 120; i++) form[`F${i}`] = '';
      expect(new URLSearchParams(form).toString().length).toBeLessThan(8 * 1024);
      const res = await post(base, '/voice/incoming', form, signTwilioRequest(TOKEN, `${PUBLIC}/voice/incoming`, form));
      expect(res.status).toBe(413);
      expect(await res.text()).toBe('too many form fields\n');
      expect(f.incoming).toHaveLength(0);
      expect(await s.metrics.registry.getSingleMetricAsString('callbridge_signature_rejections_total')).not.toContain('route="incoming"');
      // 100 fields exactly still pass.
      const ok: Record<string, string> = { ...callForm(3) };
      for (let i = 0; Object.keys(ok).length < 100; i++) ok[`F${i}`] = '';
      expect((await post(base, '/voice/incoming', ok, signTwilioRequest(TOKEN, `${PUBLIC}/voice/incoming`, ok))).status).toBe(200);
    });

    it('a webhook from an address past its budget of failed signatures is refused 429 before its body is parsed or checked', async () => {
      const f = fakeApp();
      const { s } = await start(edge, f.app, { unsignedLimit: { burst: 1, perMinute: 10 } });
      const body = new URLSearchParams(callForm(4)).toString();
      const head = 'POST /voice/incoming HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: forged\r\n';
      const request = `${head}Content-Length: ${body.length}\r\n\r\n${body}`;
      expect(await raw(s.port, request, (g) => g.includes('forbidden'))).toMatch(/^HTTP\/1\.1 403 /);
      // A small declared body is skipped, not read into a form: the connection goes on serving (two answers on one).
      const two = await raw(s.port, request + request, (g) => g.split('too many requests').length === 3);
      expect(two.match(/HTTP\/1\.1 429 /g)).toHaveLength(2);
      expect(two.toLowerCase()).not.toContain('connection: close');
      // A body of unknown length is not waited for: 429 from the headers alone, and the connection closed.
      const chunked = await raw(s.port, `${head}Transfer-Encoding: chunked\r\n\r\n`, () => false);
      expect(chunked).toMatch(/^HTTP\/1\.1 429 /);
      expect(chunked.toLowerCase()).toContain('connection: close');
      expect(await s.metrics.registry.getSingleMetricAsString('callbridge_signature_rejections_total')).toContain('route="incoming"} 1');
      expect(await s.metrics.registry.getSingleMetricAsString('callbridge_rate_limited_total')).toContain('kind="unsigned"} 3');
    });
    it('call-control webhooks too: past the failed-signature budget, /voice/action and /voice/whisper get 429 before their body is read', async () => {
      const f = fakeApp();
      let calls = 0;
      const app: VoiceApp = { ...f.app, connectEnded: async () => (calls++, { ok: true, twiml: '<Response/>' }), whisper: () => (calls++, { ok: true, twiml: '<Response/>' }) };
      const { s } = await start(edge, app, { unsignedLimit: { burst: 1, perMinute: 10 } });
      const body = new URLSearchParams({ ...callForm(7), CallStatus: 'in-progress' }).toString();
      const req = (path: string) => `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: forged\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
      expect(await raw(s.port, req('/voice/action?leg=1'), (g) => g.includes('forbidden'))).toMatch(/^HTTP\/1\.1 403 /);
      expect(await raw(s.port, req('/voice/whisper?target=a&agent=b'), (g) => g.includes('too many'))).toMatch(/^HTTP\/1\.1 429 /);
      const chunked = await raw(s.port, 'POST /voice/action?leg=1 HTTP/1.1\r\nHost: x\r\nX-Twilio-Signature: forged\r\nTransfer-Encoding: chunked\r\n\r\n', () => false);
      expect(chunked).toMatch(/^HTTP\/1\.1 429 /);
      expect(calls).toBe(0);
      expect(await s.metrics.registry.getSingleMetricAsString('callbridge_signature_rejections_total')).toContain('route="action"} 1');
    });
  });

  describe('replayable signed requests (item 4)', () => {
    it('limits validly signed upgrades and status callbacks per address (RATE_LIMIT_SIGNED_*), one budget for both', async () => {
      const f = fakeApp();
      const { base, ws: url, s } = await start(edge, f.app, { signedLimit: { burst: 3, perSecond: 0.001 } });
      const open: WebSocket[] = [];
      for (let i = 0; i < 2; i++) {
        const r = await upgrade(url, streamSig());
        expect(r.status).toBe(101);
        open.push(r.ws!);
      }
      const status = { ...callForm(5), CallStatus: 'completed' };
      const sig = signTwilioRequest(TOKEN, `${PUBLIC}/voice/status`, status);
      expect((await post(base, '/voice/status', status, sig)).status).toBe(204);
      expect((await post(base, '/voice/status', status, sig)).status).toBe(429); // the same callback replayed
      expect((await upgrade(url, streamSig())).status).toBe(429);
      expect(f.statuses).toHaveLength(1);
      // Call set-ups are limited per calling number instead, not here.
      expect((await post(base, '/voice/incoming', callForm(6), signTwilioRequest(TOKEN, `${PUBLIC}/voice/incoming`, callForm(6)))).status).toBe(200);
      expect(await s.metrics.registry.getSingleMetricAsString('callbridge_rate_limited_total')).toContain('kind="signed"} 2');
      for (const ws of open) ws.close();
    });

    it('signed call-control webhooks share the signed budget with status callbacks and upgrades: a replayed dial action past it gets 429', async () => {
      const f = fakeApp();
      let dials = 0;
      const app: VoiceApp = { ...f.app, dialEnded: async () => (dials++, { ok: true, twiml: '<Response/>' }) };
      const { base } = await start(edge, app, { signedLimit: { burst: 2, perSecond: 0.001 } });
      const dial = { ...callForm(8), CallStatus: 'in-progress', DialCallStatus: 'busy' };
      const sig = signTwilioRequest(TOKEN, `${PUBLIC}/voice/dial-action?leg=1`, dial);
      const codes = [];
      for (let i = 0; i < 3; i++) codes.push((await post(base, '/voice/dial-action?leg=1', dial, sig)).status);
      expect(codes).toEqual([200, 200, 429]);
      expect(dials).toBe(2);
    });

    it('with the defaults, one address sends 200 signed status callbacks at once', async () => {
      const f = fakeApp();
      const { base } = await start(edge, f.app);
      const codes = await Promise.all(
        Array.from({ length: 200 }, (_, i) => {
          const status = { ...callForm(100 + i), CallStatus: 'completed' };
          return post(base, '/voice/status', status, signTwilioRequest(TOKEN, `${PUBLIC}/voice/status`, status)).then((r) => r.status);
        }),
      );
      expect(codes.filter((c) => c !== 204)).toEqual([]);
    });

    it('past MAX_STREAMS_AWAITING_START, the oldest stream that has not sent a valid start is closed with 1013; started ones stay', async () => {
      const f = fakeApp();
      const { ws: url, s } = await start(edge, f.app, { maxStreamsAwaitingStart: 2 });
      const a = (await upgrade(url, streamSig())).ws!;
      const b = (await upgrade(url, streamSig())).ws!;
      const aClosed = closed(a);
      b.send(JSON.stringify({ event: 'connected', protocol: 'Call', version: '1.0.0' }));
      b.send('{"event":"start","streamSid":"not a start"}'); // does not parse as a start: still waiting
      const c = (await upgrade(url, streamSig())).ws!; // a third waiting: the oldest (a) goes
      expect(await aClosed).toBe(1013);
      const bClosed = closed(b);
      c.send(startMessage(1)); // c has started: it no longer counts
      await new Promise<void>((r) => {
        const check = () => (f.streams[2]!.texts.length === 1 ? r() : setTimeout(check, 5));
        check();
      });
      const d = (await upgrade(url, streamSig())).ws!;
      const e = (await upgrade(url, streamSig())).ws!; // waiting: b, d, e → b goes
      expect(await bClosed).toBe(1013);
      expect([c.readyState, d.readyState, e.readyState]).toEqual([WebSocket.OPEN, WebSocket.OPEN, WebSocket.OPEN]);
      expect(f.streams[0]!.closes).toEqual([1013]); // the app saw the close of the stream it had been given
      expect(await s.metrics.registry.getSingleMetricAsString('callbridge_streams_refused_total')).toContain('reason="awaiting_start"} 2');
      for (const ws of [c, d, e]) ws.close();
    });

    it('host-per-instance template with PUBLIC_URL: a signature over wss://<Host> counts only for a Host the template can produce', async () => {
      const f = fakeApp();
      const { ws: url } = await start(edge, f.app, { streamUrlTemplate: 'wss://{instance}.calls.example.test/voice/stream', instanceId: 'inst-a' });
      const via = (host: string) => upgrade(url, { host, ...streamSig(`wss://${host}/voice/stream`) });
      // Another instance's URL (it failed over here): accepted.
      const other = await via('inst-b.calls.example.test');
      expect(other.status).toBe(101);
      other.ws!.close();
      // A signature Twilio made for some other URL of the account, replayed with that Host: refused.
      expect((await via('evil.example.test')).status).toBe(403);
      expect((await via('x.inst-b.calls.example.test')).status).toBe(403); // {instance} is one DNS label
      expect((await via('inst-b.calls.example.test.evil.test')).status).toBe(403);
      // This instance's own templated URL and PUBLIC_URL's still work whatever the Host.
      const own = await upgrade(url, { host: 'balancer.internal', ...streamSig('wss://inst-a.calls.example.test/voice/stream') });
      expect(own.status).toBe(101);
      own.ws!.close();
    });

    it('a path-prefix template with PUBLIC_URL never takes a URL derived from the Host', async () => {
      const f = fakeApp();
      const { ws: url } = await start(edge, f.app, { streamUrlTemplate: '{publicUrl}/i/{instance}/voice/stream', instanceId: 'inst-a' });
      expect((await upgrade(url, { host: 'evil.example.test', ...streamSig('wss://evil.example.test/voice/stream') })).status).toBe(403);
      const own = await upgrade(url, streamSig(`${WSS}/i/inst-a/voice/stream`));
      expect(own.status).toBe(101);
      own.ws!.close();
    });
  });

  describe('client addresses (item 9)', () => {
    it('behind a trusted proxy, reads every X-Forwarded-For line: the client cannot choose its address with a line of its own', async () => {
      const f = fakeApp();
      const { s } = await start(edge, f.app, { trustProxy: [{ address: '127.0.0.0', prefix: 8, family: 'ipv4' }], unsignedLimit: { burst: 1, perMinute: 10 } });
      const body = new URLSearchParams(callForm(7)).toString();
      // The client wrote the first line; the proxy appended the second (the real client address).
      const forged = (spoofed: string) =>
        raw(
          s.port,
          'POST /voice/incoming HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: forged\r\n' +
            `X-Forwarded-For: ${spoofed}\r\nX-Forwarded-For: 203.0.113.9\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
          () => false,
        ).then((g) => Number(g.slice(9, 12)));
      expect(await forged('198.51.100.1')).toBe(403);
      expect(await forged('198.51.100.2')).toBe(429); // the same client (203.0.113.9), whatever it wrote
    });

    it('keys IPv6 clients by their /64', async () => {
      const f = fakeApp();
      const { base } = await start(edge, f.app, { trustProxy: [{ address: '127.0.0.0', prefix: 8, family: 'ipv4' }], unsignedLimit: { burst: 1, perMinute: 10 } });
      const from = (ip: string) => post(base, '/voice/incoming', callForm(8), 'forged', { 'x-forwarded-for': ip }).then((r) => r.status);
      expect(await from('2001:db8:1:2::7')).toBe(403);
      expect(await from('2001:db8:1:2:ffff::8')).toBe(429); // same /64
      expect(await from('2001:db8:1:3::7')).toBe(403); // another /64
    });
  });

  describe('health details (item 11)', () => {
    const report = (): HealthReport => ({
      status: 'draining', version: '1.2.3', uptimeSeconds: 5, activeCalls: 2, pendingCalls: 1,
      model: { reachable: false, lastOkAt: '2026-01-01T00:00:00.000Z', lastError: 'connect ECONNREFUSED 10.1.2.3:443' },
      store: { kind: 'postgres', reachable: false, queued: 4, dropped: 0, lastError: 'password authentication failed for user "cb"' },
    });

    it('without the admin token, shows status, counts and reachability but no error text; with it, the whole report', async () => {
      const f = fakeApp(report);
      const { base } = await start(edge, f.app, { adminToken: ADMIN });
      const anon = await fetch(`${base}/voice/health`);
      expect(anon.status).toBe(503);
      const text = await anon.text();
      expect(text).not.toMatch(/ECONNREFUSED|password|10\.1\.2\.3/);
      expect(JSON.parse(text)).toEqual({
        status: 'draining', version: '1.2.3', uptimeSeconds: 5, activeCalls: 2, pendingCalls: 1,
        model: { reachable: false, lastOkAt: '2026-01-01T00:00:00.000Z' },
        store: { kind: 'postgres', reachable: false, queued: 4, dropped: 0 },
      });
      const wrong = await fetch(`${base}/voice/health`, { headers: { authorization: 'Bearer not-the-admin-token' } });
      expect(await wrong.text()).not.toContain('ECONNREFUSED');
      const admin = await fetch(`${base}/voice/health`, { headers: { authorization: `bearer ${ADMIN}` } });
      expect(admin.status).toBe(503);
      expect(admin.headers.get('cache-control')).toBe('no-store');
      expect(await admin.json()).toEqual(report());
    });

    it('without ADMIN_TOKEN set, nobody gets the error text', async () => {
      const { base } = await start(edge, fakeApp(report).app);
      const res = await fetch(`${base}/voice/health`, { headers: { authorization: 'Bearer ' } });
      expect(await res.text()).not.toContain('ECONNREFUSED');
    });
  });
});

describe('pure helpers', () => {
  it('withoutErrorText drops error text at any depth, whatever the report grows', () => {
    expect(
      withoutErrorText({
        status: 'ok', errors: 3, model: { reachable: false, lastError: 'x', lastErrorAt: '2026', errorMessage: { code: 1 }, ok: true },
        list: [{ detail: 'y', n: 1 }], reason: 'z', failed: false,
      }),
    ).toEqual({ status: 'ok', errors: 3, model: { reachable: false, ok: true }, list: [{ n: 1 }], failed: false });
  });

  it('instanceHostPattern: the template host with {instance} as one DNS label; none for a {publicUrl} template', () => {
    const p = instanceHostPattern('wss://{instance}.calls.example.com:8443/voice/stream')!;
    expect(['a.calls.example.com:8443', 'A-1.CALLS.example.com:8443'].map((h) => p.test(h))).toEqual([true, true]);
    expect(['a.calls.example.com', 'a.b.calls.example.com:8443', '-a.calls.example.com:8443', 'axcalls.example.com:8443'].map((h) => p.test(h))).toEqual([false, false, false, false]);
    expect(instanceHostPattern('{publicUrl}/i/{instance}/voice/stream')).toBeUndefined();
    expect(instanceHostPattern('wss://calls.example.com/i/{instance}/voice/stream')).toBeUndefined();
    expect(instanceHostPattern(undefined)).toBeUndefined();
  });
});
