/**
 * The server on loopback with a fake VoiceApp, once per edge that loads on
 * this Node (native uWebSockets.js and node:http + ws on Node 20/22; only
 * node:http + ws where no native build loads): real HTTP (fetch), real
 * websockets (ws client), the real twilio signature and webhook parsing code.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import type { AdminReader, OutboundApp, StreamHandler, TwilioSocket, VoiceApp } from '../src/call/ports.js';
import { silentLogger } from '../src/log.js';
import { availableEdges, EdgeError, startServer, type EdgeKind, type EdgeSettings, type RunningServer } from '../src/server/app.js';
import { resolveEdge } from '../src/server/edge.js';
import { signTwilioRequest } from '../src/twilio/signature.js';
import type { StatusCallback, VoiceWebhook } from '../src/twilio/webhooks.js';
import { edgeSettings } from './helpers/settings.js';
import { until } from './helpers/until.js';

const TOKEN = 'test-auth-token';
const PUBLIC = 'https://relay.example.test';

interface Recorded {
  texts: string[];
  binaries: number[];
  drains: number;
  closes: [number, string][];
  socket: TwilioSocket;
}

function fakeApp(opts: { refuse?: boolean; throwOnText?: boolean; closeInOpen?: boolean } = {}) {
  const streams: Recorded[] = [];
  const statuses: StatusCallback[] = [];
  const incoming: { call: VoiceWebhook; streamUrl: string }[] = [];
  const app: VoiceApp = {
    incoming(call, urls) {
      incoming.push({ call, streamUrl: urls.streamUrl });
      return { ok: true, twiml: '<Response/>' };
    },
    status(callback) {
      statuses.push(callback);
    },
    openStream(socket) {
      if (opts.refuse) return null;
      const rec: Recorded = { texts: [], binaries: [], drains: 0, closes: [], socket };
      streams.push(rec);
      if (opts.closeInOpen) socket.close(1008, 'no token');
      const h: StreamHandler = {
        onText: (t) => {
          if (opts.throwOnText && t === 'boom') throw new Error('handler bug');
          rec.texts.push(t);
        },
        onBinary: (n) => rec.binaries.push(n),
        onDrain: () => rec.drains++,
        onClose: (code, reason) => rec.closes.push([code, reason]),
      };
      return h;
    },
    health: () => ({ status: 'ok', version: '1', uptimeSeconds: 0, activeCalls: streams.length, model: { reachable: null, lastOkAt: null, lastError: null } }),
  };
  return { app, streams, statuses, incoming };
}

const echoAdmin: AdminReader = async (req) => ({ status: 200, body: { path: req.path, limit: req.query.get('limit'), auth: req.headers.authorization ?? null } });

const servers: RunningServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function start(
  edge: EdgeKind,
  app: VoiceApp,
  over: Partial<EdgeSettings> = {},
  opts: { admin?: AdminReader; outbound?: OutboundApp } = {},
) {
  const settings = edgeSettings({ port: 0, host: '127.0.0.1', publicUrl: PUBLIC, twilioAuthToken: TOKEN, ...over });
  const s = await startServer({ settings, app, log: silentLogger, edge, ...opts });
  servers.push(s);
  expect(s.edge.kind).toBe(edge);
  return { s, base: `http://127.0.0.1:${s.port}`, ws: `ws://127.0.0.1:${s.port}/voice/stream` };
}

function post(base: string, path: string, form: Record<string, string>, signature?: string) {
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  if (signature !== undefined) headers['x-twilio-signature'] = signature;
  return fetch(base + path, { method: 'POST', headers, body: new URLSearchParams(form).toString() });
}

function openWs(url: string, signed = true): Promise<WebSocket> {
  const headers: Record<string, string> = {};
  if (signed) headers['x-twilio-signature'] = signTwilioRequest(TOKEN, `${PUBLIC.replace('https', 'wss')}/voice/stream`, {});
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

const closed = (ws: WebSocket) => new Promise<[number, string]>((r) => ws.once('close', (c, m) => r([c, m.toString()])));
/** How long a wait on the edge may take in these tests (the bound they had). */
const WAIT = { timeoutMs: 3000 };

describe.each(availableEdges())('%s edge', (edge) => {
  describe('webhooks', () => {
    const form = { CallSid: 'CA' + '1'.repeat(32), From: '+15550001111', To: '+15550002222', AccountSid: 'AC' + '2'.repeat(32), CallStatus: 'ringing' };
    const typed: VoiceWebhook = { callSid: form.CallSid, accountSid: form.AccountSid, from: form.From, to: form.To, direction: 'inbound', callStatus: 'ringing' };

    it('answers /voice/incoming with TwiML when the signature is valid, and passes the wss stream URL', async () => {
      const f = fakeApp();
      const { base } = await start(edge, f.app);
      const sig = signTwilioRequest(TOKEN, `${PUBLIC}/voice/incoming`, form);
      const res = await post(base, '/voice/incoming', form, sig);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/xml');
      expect(await res.text()).toBe('<Response/>');
      expect(f.incoming[0]).toEqual({ call: typed, streamUrl: 'wss://relay.example.test/voice/stream' });
    });

    it('refuses a tampered parameter or a missing signature with 403 and never calls the app', async () => {
      const f = fakeApp();
      const { base, s } = await start(edge, f.app);
      const sig = signTwilioRequest(TOKEN, `${PUBLIC}/voice/incoming`, form);
      expect((await post(base, '/voice/incoming', { ...form, To: '+15559999999' }, sig)).status).toBe(403);
      expect((await post(base, '/voice/incoming', form)).status).toBe(403);
      expect((await post(base, '/voice/status', { CallSid: form.CallSid, CallStatus: 'completed' }, 'bogus')).status).toBe(403);
      expect(f.incoming).toHaveLength(0);
      expect(f.statuses).toHaveLength(0);
      expect(await s.metrics.registry.getSingleMetricAsString('callbridge_signature_rejections_total')).toContain('route="incoming"} 2');
    });

    it('skips signature checks when no auth token is configured', async () => {
      const f = fakeApp();
      const { base } = await start(edge, f.app, { twilioAuthToken: undefined });
      expect((await post(base, '/voice/incoming', form)).status).toBe(200);
    });

    it('takes signed status callbacks with 204', async () => {
      const f = fakeApp();
      const { base } = await start(edge, f.app);
      const status = { CallSid: form.CallSid, AccountSid: form.AccountSid, CallStatus: 'completed', CallDuration: '42', SequenceNumber: '3' };
      const res = await post(base, '/voice/status', status, signTwilioRequest(TOKEN, `${PUBLIC}/voice/status`, status));
      expect(res.status).toBe(204);
      expect(f.statuses).toHaveLength(1);
      expect(f.statuses[0]).toMatchObject({ callSid: form.CallSid, callStatus: 'completed', terminal: true, callDurationS: 42, sequenceNumber: 3 });
    });

    it('derives the signed URL and the stream URL from the Host header when PUBLIC_URL is unset', async () => {
      const f = fakeApp();
      const { base, s } = await start(edge, f.app, { publicUrl: undefined });
      const origin = `https://127.0.0.1:${s.port}`; // fetch sends Host: 127.0.0.1:<port>
      expect((await post(base, '/voice/incoming', form, signTwilioRequest(TOKEN, `${PUBLIC}/voice/incoming`, form))).status).toBe(403);
      const res = await post(base, '/voice/incoming', form, signTwilioRequest(TOKEN, `${origin}/voice/incoming`, form));
      expect(res.status).toBe(200);
      expect(f.incoming[0]!.streamUrl).toBe(`wss://127.0.0.1:${s.port}/voice/stream`);
    });

    it('answers with the status and message the app gives when it refuses a call', async () => {
      const f = fakeApp();
      f.app.incoming = () => ({ ok: false, status: 503, message: 'at capacity' });
      const { base } = await start(edge, f.app, { twilioAuthToken: undefined });
      const res = await post(base, '/voice/incoming', form);
      expect(res.status).toBe(503);
      expect(await res.text()).toBe('at capacity\n');
    });

    it('answers 500 when the app throws on a webhook, counts it, and keeps serving', async () => {
      const f = fakeApp();
      f.app.incoming = () => {
        throw new Error('bug');
      };
      f.app.status = () => {
        throw new Error('bug');
      };
      const { base, s } = await start(edge, f.app, { twilioAuthToken: undefined });
      expect((await post(base, '/voice/incoming', form)).status).toBe(500);
      expect((await post(base, '/voice/status', form)).status).toBe(500);
      expect((await fetch(`${base}/voice/health`)).status).toBe(200);
      const errors = await s.metrics.registry.getSingleMetricAsString('callbridge_handler_errors_total');
      expect(errors).toContain('handler="incoming"} 1');
      expect(errors).toContain('handler="status"} 1');
    });

    it('answers 400 to a signed webhook whose body does not parse, counts it, and never calls the app', async () => {
      const f = fakeApp();
      const { base, s } = await start(edge, f.app);
      const sign = (path: string, body: Record<string, string>) => signTwilioRequest(TOKEN, `${PUBLIC}${path}`, body);
      const shortSid = { ...form, CallSid: 'CA' + '1'.repeat(31) }; // one hex digit short
      const nonHex = { ...form, CallSid: 'CA' + 'z'.repeat(32) };
      const noAccount = { CallSid: form.CallSid, CallStatus: 'completed' };
      const badStatus = { ...form, CallStatus: 'dancing' };
      for (const body of [shortSid, nonHex]) {
        const res = await post(base, '/voice/incoming', body, sign('/voice/incoming', body));
        expect(res.status).toBe(400);
        expect(await res.text()).toMatch(/CallSid/);
      }
      expect((await post(base, '/voice/status', noAccount, sign('/voice/status', noAccount))).status).toBe(400);
      expect((await post(base, '/voice/status', badStatus, sign('/voice/status', badStatus))).status).toBe(400);
      // The signature is checked first: an unsigned bad body is a 403, not a 400.
      expect((await post(base, '/voice/incoming', shortSid, 'bogus')).status).toBe(403);
      expect(f.incoming).toHaveLength(0);
      expect(f.statuses).toHaveLength(0);
      expect(await s.metrics.registry.getSingleMetricAsString('callbridge_twilio_protocol_errors_total')).toContain('reason="bad_webhook"} 4');
    });

    it('refuses a chunked body that grows past the limit with 413 (no Content-Length to refuse early)', async () => {
      const f = fakeApp();
      const { s } = await start(edge, f.app, { twilioAuthToken: undefined });
      const sock = net.connect(s.port, '127.0.0.1');
      sock.on('error', () => {});
      let got = '';
      sock.on('data', (d) => (got += d.toString()));
      const chunk = 'x'.repeat(16 * 1024);
      sock.write('POST /voice/incoming HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n');
      for (let i = 0; i < 5; i++) sock.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
      sock.write('0\r\n\r\n');
      await until(() => got.includes('\r\n\r\n'), WAIT);
      expect(got).toMatch(/^HTTP\/1\.1 413 /);
      expect(f.incoming).toHaveLength(0);
      sock.destroy();
    });

    it('refuses an oversize body with 413', async () => {
      const f = fakeApp();
      const { base } = await start(edge, f.app);
      const res = await post(base, '/voice/incoming', { Big: 'x'.repeat(70 * 1024) }, 'x');
      expect(res.status).toBe(413);
    });
  });

  describe('call-control webhooks (/voice/action, /voice/dial-action, /voice/whisper, /voice/amd) and POST /calls', () => {
    const sid = `CA${'7'.repeat(32)}`;
    const acct = `AC${'3'.repeat(32)}`;
    const call = { CallSid: sid, AccountSid: acct, From: '+15550107777', To: '+15550100999', CallStatus: 'in-progress' };
    const routes: { path: string; body: Record<string, string>; status: number }[] = [
      { path: '/voice/action?leg=1', body: call, status: 200 },
      { path: '/voice/dial-action?leg=2', body: { ...call, DialCallStatus: 'busy' }, status: 200 },
      { path: '/voice/whisper?target=billing&agent=front', body: call, status: 200 },
      { path: '/voice/amd', body: { CallSid: sid, AccountSid: acct, AnsweredBy: 'human' }, status: 204 },
    ];
    function controlApp(over: Partial<VoiceApp> = {}) {
      const f = fakeApp();
      const seen: unknown[] = [];
      const app: VoiceApp = {
        ...f.app,
        connectEnded: async (c, urls, leg) => (seen.push(['action', c.callSid, leg, urls.dialActionUrl]), { ok: true, twiml: '<Response><Hangup/></Response>' }),
        dialEnded: async (c, _urls, leg) => (seen.push(['dial', c.dialCallStatus, leg]), { ok: true, twiml: '<Response/>' }),
        whisper: (target, agent) => (seen.push(['whisper', target, agent]), { ok: true, twiml: '<Response><Say>hi</Say></Response>' }),
        ...over,
      };
      return { app, seen };
    }
    const amds: unknown[] = [];
    const outbound: OutboundApp = {
      placeCall: async (req) => ({ status: 202, body: { got: req.body, auth: req.authorization ?? null } }),
      amd: async (cb) => void amds.push(cb),
      openCallToken: () => null,
    };

    it('signed like /voice/incoming: a valid signature reaches the app with the parsed body and the leg; unsigned, forged, oversize, too many fields, bad bodies are refused', async () => {
      const c = controlApp();
      amds.length = 0;
      const { base } = await start(edge, c.app, { unsignedLimit: { burst: 1000, perMinute: 1000 } }, { outbound });
      for (const r of routes) {
        const sign = signTwilioRequest(TOKEN, `${PUBLIC}${r.path}`, r.body);
        const ok = await post(base, r.path, r.body, sign);
        expect(ok.status, r.path).toBe(r.status);
        expect((await post(base, r.path, r.body)).status, r.path).toBe(403);
        expect((await post(base, r.path, r.body, 'forged')).status, r.path).toBe(403);
        expect((await post(base, r.path, { ...r.body, Big: 'x'.repeat(9000) }, sign)).status, r.path).toBe(413);
        const many: Record<string, string> = { ...r.body };
        for (let i = 0; i < 101; i++) many[`f${i}`] = '1';
        expect((await post(base, r.path, many, signTwilioRequest(TOKEN, `${PUBLIC}${r.path}`, many))).status, r.path).toBe(413);
        if (r.path !== '/voice/whisper?target=billing&agent=front') {
          const bad = { ...r.body, CallSid: 'CA123' };
          expect((await post(base, r.path, bad, signTwilioRequest(TOKEN, `${PUBLIC}${r.path}`, bad))).status, r.path).toBe(400);
        }
      }
      expect(c.seen).toEqual([
        ['action', sid, 1, `${PUBLIC}/voice/dial-action`],
        ['dial', 'busy', 2],
        ['whisper', 'billing', 'front'],
      ]);
      expect(amds).toEqual([expect.objectContaining({ callSid: sid, answeredBy: 'human' })]);
      // the leg is validated (1..20), the whisper needs target and agent
      for (const path of ['/voice/action', '/voice/action?leg=0', '/voice/action?leg=21', '/voice/dial-action?leg=one', '/voice/whisper?agent=front']) {
        const body = path.startsWith('/voice/dial') ? { ...call, DialCallStatus: 'busy' } : call;
        expect((await post(base, path, body, signTwilioRequest(TOKEN, `${PUBLIC}${path}`, body))).status, path).toBe(400);
      }
      expect(c.seen).toHaveLength(3);
    });

    it('/voice/amd hands the app the opened token of its URL (the placing agent), or null without one', async () => {
      const got: [unknown, unknown][] = [];
      const withToken: OutboundApp = {
        ...outbound,
        amd: async (cb, opts) => void got.push([cb.answeredBy, opts ?? null]),
        openCallToken: (o) => (o === 'sealed-1' ? { agent: 'collector' } : null),
      };
      const { base } = await start(edge, controlApp().app, {}, { outbound: withToken });
      const body = { CallSid: sid, AccountSid: acct, AnsweredBy: 'machine_end_beep' };
      for (const path of ['/voice/amd?o=sealed-1', '/voice/amd?o=forged', '/voice/amd']) {
        expect((await post(base, path, body, signTwilioRequest(TOKEN, `${PUBLIC}${path}`, body))).status, path).toBe(204);
      }
      expect(got).toEqual([['machine_end_beep', { agent: 'collector' }], ['machine_end_beep', null], ['machine_end_beep', null]]);
    });

    it('failed signatures on these routes count against the same per-address budget: 403 then 429', async () => {
      const c = controlApp();
      const { base } = await start(edge, c.app, { unsignedLimit: { burst: 3, perMinute: 10 } }, { outbound });
      const codes = [];
      for (const r of [...routes, routes[0]!]) codes.push((await post(base, r.path, r.body, 'forged')).status);
      expect(codes).toEqual([403, 403, 403, 429, 429]);
    });

    it('the app\'s refusal is its status; a rejection is a 500 and the server keeps serving; a missing handler or OutboundApp is a 404', async () => {
      const c = controlApp({
        connectEnded: async () => ({ ok: false, status: 403, message: 'already answered' }),
        dialEnded: async () => Promise.reject(new Error('bug')),
      });
      const { base } = await start(edge, c.app);
      const sign = (r: (typeof routes)[number]) => signTwilioRequest(TOKEN, `${PUBLIC}${r.path}`, r.body);
      let res = await post(base, routes[0]!.path, routes[0]!.body, sign(routes[0]!));
      expect([res.status, await res.text()]).toEqual([403, 'already answered\n']);
      res = await post(base, routes[1]!.path, routes[1]!.body, sign(routes[1]!));
      expect(res.status).toBe(500);
      res = await post(base, routes[2]!.path, routes[2]!.body, sign(routes[2]!));
      expect(res.status).toBe(200);
      // no OutboundApp: AMD and POST /calls are not served, and an outbound token cannot open
      expect((await post(base, routes[3]!.path, routes[3]!.body, sign(routes[3]!))).status).toBe(404);
      expect((await fetch(`${base}/calls`, { method: 'POST', body: '{}' })).status).toBe(404);
      const inc = { ...call, CallStatus: 'ringing' };
      expect((await post(base, '/voice/incoming?o=tok', inc, signTwilioRequest(TOKEN, `${PUBLIC}/voice/incoming?o=tok`, inc))).status).toBe(403);
      // an app without call control: 404 before the body is read
      const bare = fakeApp();
      const other = await start(edge, bare.app);
      expect((await post(other.base, routes[0]!.path, routes[0]!.body, sign(routes[0]!))).status).toBe(404);
    });

    it('calls we placed (their o token opens) are not limited per calling number; a bad token is refused before anything is counted', async () => {
      const f = fakeApp();
      const opened: string[] = [];
      const tokens: OutboundApp = { ...outbound, openCallToken: (t) => (t === 'ok' ? (opened.push(t), { agent: 'sales' }) : null) };
      const { base } = await start(edge, f.app, { callerLimit: { burst: 2, perMinute: 1 } }, { outbound: tokens });
      const placed = (i: number) => ({ ...call, CallSid: `CA${String(i).padStart(32, '0')}`, CallStatus: 'in-progress', Direction: 'outbound-api' });
      for (let i = 0; i < 5; i++) {
        const r = await post(base, '/voice/incoming?o=ok', placed(i), signTwilioRequest(TOKEN, `${PUBLIC}/voice/incoming?o=ok`, placed(i)));
        expect(await r.text()).toBe('<Response/>');
      }
      expect(opened).toHaveLength(5);
      // the same From without a token: the per-number limit applies
      const codes = [];
      for (let i = 5; i < 8; i++) {
        const r = await post(base, '/voice/incoming', placed(i), signTwilioRequest(TOKEN, `${PUBLIC}/voice/incoming`, placed(i)));
        codes.push(await r.text());
      }
      expect(codes.filter((t) => t.includes('Reject'))).toHaveLength(1);
      expect(f.incoming).toHaveLength(7);
    });

    it('POST /calls: the JSON body and Authorization reach the OutboundApp, the answer is JSON never cached; over 8 KiB → 413', async () => {
      const c = controlApp();
      const { base } = await start(edge, c.app, {}, { outbound });
      let res = await fetch(`${base}/calls`, { method: 'POST', body: '{"to":"+15550100888"}', headers: { 'content-type': 'application/json', authorization: 'Bearer t' } });
      expect(res.status).toBe(202);
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(res.headers.get('content-type')).toMatch(/application\/json/);
      expect(await res.json()).toEqual({ got: '{"to":"+15550100888"}', auth: 'Bearer t' });
      res = await fetch(`${base}/calls`, { method: 'POST', body: '{}' });
      expect(await res.json()).toEqual({ got: '{}', auth: null });
      res = await fetch(`${base}/calls`, { method: 'POST', body: 'x'.repeat(9000) });
      expect(res.status).toBe(413);
      // GET /calls is still the admin reader's (none here: 404)
      expect((await fetch(`${base}/calls`)).status).toBe(404);
    });
  });

  describe('health, metrics, admin, 404', () => {
    it('serves health JSON, Prometheus text, admin passthrough and 404s', async () => {
      const f = fakeApp();
      const { base } = await start(edge, f.app, {}, { admin: echoAdmin });
      const health = await fetch(`${base}/voice/health`);
      expect(health.status).toBe(200);
      expect(await health.json()).toMatchObject({ status: 'ok', version: '1', activeCalls: 0 });
      const metrics = await (await fetch(`${base}/metrics`)).text();
      for (const name of [
        'callbridge_relay_latency_seconds', 'callbridge_turn_latency_seconds', 'callbridge_active_streams',
        'callbridge_http_requests_total', 'callbridge_streams_opened_total', 'callbridge_streams_refused_total',
        'callbridge_twilio_protocol_errors_total', 'callbridge_ws_backpressure_total', 'callbridge_signature_rejections_total',
        'callbridge_rate_limited_total', 'callbridge_handler_errors_total', 'callbridge_model_connect_failures_total', 'callbridge_model_connect_seconds',
        'callbridge_process_cpu_seconds_total', 'callbridge_active_calls',
      ]) {
        expect(metrics).toContain(name);
      }
      expect(metrics).toMatch(/^callbridge_active_calls 0$/m);
      const admin = await fetch(`${base}/calls/CA123?limit=5`, { headers: { authorization: 'Bearer x' } });
      expect(admin.headers.get('cache-control')).toBe('no-store'); // call records are personal data
      expect(await admin.json()).toEqual({ path: '/calls/CA123', limit: '5', auth: 'Bearer x' });
      expect((await fetch(`${base}/calls`)).headers.get('cache-control')).toBe('no-store');
      expect((await fetch(`${base}/nope`)).status).toBe(404);
    });

    it('answers 500 (and keeps serving) when the admin reader throws or rejects', async () => {
      const f = fakeApp();
      let calls = 0;
      const admin = (() => {
        calls++;
        if (calls === 1) throw new Error('sync bug');
        if (calls === 2) return Promise.reject(new Error('async bug'));
        return Promise.resolve({ status: 200, body: { n: 1n } }); // BigInt: JSON.stringify throws
      }) as AdminReader;
      const { base, s } = await start(edge, f.app, {}, { admin });
      for (let i = 0; i < 3; i++) {
        const res = await fetch(`${base}/calls`);
        expect([res.status, res.headers.get('cache-control')]).toEqual([500, 'no-store']);
      }
      expect((await fetch(`${base}/voice/health`)).status).toBe(200);
      expect(await s.metrics.registry.getSingleMetricAsString('callbridge_handler_errors_total')).toContain('handler="admin"} 3');
    });

    it('does not serve /metrics when METRICS=false', async () => {
      const { base } = await start(edge, fakeApp().app, { serveMetrics: false });
      expect((await fetch(`${base}/metrics`)).status).toBe(404);
    });

    it('answers 404 on /calls when there is no admin reader', async () => {
      const { base } = await start(edge, fakeApp().app);
      expect((await fetch(`${base}/calls`)).status).toBe(404);
    });

    it('rate-limits per IP with 429', async () => {
      const { base } = await start(edge, fakeApp().app, { rateLimit: { burst: 3, perSecond: 0.001 } });
      const codes = [];
      for (let i = 0; i < 5; i++) codes.push((await fetch(`${base}/voice/health`)).status);
      expect(codes).toEqual([200, 200, 200, 429, 429]);
    });

    it('running unsigned, rate-limits websocket upgrades per IP with 429 before any stream opens', async () => {
      const f = fakeApp();
      const { ws: url, s } = await start(edge, f.app, { twilioAuthToken: undefined, rateLimit: { burst: 1, perSecond: 0.001 } });
      const first = await openWs(url, false);
      await expect(openWs(url, false)).rejects.toThrow('HTTP 429');
      expect(f.streams).toHaveLength(1);
      expect(await s.metrics.registry.getSingleMetricAsString('callbridge_streams_refused_total')).toContain('reason="rate_limited"} 1');
      first.close();
    });

    it('signed, never limits validly signed upgrades per IP; failed ones get 403, then 429 past RATE_LIMIT_UNSIGNED_BURST', async () => {
      const f = fakeApp();
      const { ws: url, s } = await start(edge, f.app, { unsignedLimit: { burst: 2, perMinute: 10 }, rateLimit: { burst: 1, perSecond: 0.001 } });
      const open = [];
      for (let i = 0; i < 5; i++) open.push(await openWs(url));
      const refusals = [];
      for (let i = 0; i < 4; i++) refusals.push(await openWs(url, false).then(() => 'open', (e: Error) => e.message));
      expect(refusals).toEqual(['HTTP 403', 'HTTP 403', 'HTTP 429', 'HTTP 429']);
      expect(await openWs(url).then(() => 'open')).toBe('open'); // a signed upgrade from the same address still gets through
      expect(f.streams).toHaveLength(6);
      const refused = await s.metrics.registry.getSingleMetricAsString('callbridge_streams_refused_total');
      expect(refused).toContain('reason="signature"} 2');
      expect(refused).toContain('reason="rate_limited"} 2');
      for (const ws of open) ws.close();
    });
  });

  describe('rate limits that fit telephony', () => {
    const from = (i: number) => `+1555030${String(i).padStart(4, '0')}`;
    const callForm = (i: number, caller = from(i)) => ({
      CallSid: `CA${i.toString(16).padStart(32, '0')}`, AccountSid: `AC${'2'.repeat(32)}`, From: caller, To: '+15550002222', CallStatus: 'ringing',
    });
    const signed = (f: Record<string, string>) => signTwilioRequest(TOKEN, `${PUBLIC}/voice/incoming`, f);

    it('lets one address set up 200 signed calls a minute with the defaults, even under a tight per-IP bucket', async () => {
      const f = fakeApp();
      const { base, s } = await start(edge, f.app, { rateLimit: { burst: 5, perSecond: 0.001 } });
      const codes = await Promise.all(Array.from({ length: 200 }, (_, i) => post(base, '/voice/incoming', callForm(i), signed(callForm(i))).then((r) => r.status)));
      expect(codes.filter((c) => c !== 200)).toEqual([]);
      expect(f.incoming).toHaveLength(200);
      // Within the same minute the per-IP bucket (burst 5) still guards everything else from that address.
      const health = [];
      for (let i = 0; i < 7; i++) health.push((await fetch(`${base}/voice/health`)).status);
      expect(health).toEqual([200, 200, 200, 200, 200, 429, 429]);
      expect(await s.metrics.registry.getSingleMetricAsString('callbridge_rate_limited_total')).not.toContain('kind="caller"');
    });

    it('with the default settings, one address sets up 200 signed calls a minute (distinct callers)', async () => {
      const f = fakeApp();
      const { base } = await start(edge, f.app);
      const codes = await Promise.all(Array.from({ length: 200 }, (_, i) => post(base, '/voice/incoming', callForm(i), signed(callForm(i))).then((r) => r.status)));
      expect(codes.filter((c) => c !== 200)).toEqual([]);
      expect(f.incoming).toHaveLength(200);
    });

    it('limits signed call set-ups per calling number: past the burst the call gets the busy TwiML', async () => {
      const f = fakeApp();
      const { base, s } = await start(edge, f.app, { callerLimit: { burst: 3, perMinute: 10 } });
      const bodies = [];
      for (let i = 0; i < 5; i++) {
        const res = await post(base, '/voice/incoming', callForm(i, '+15550009999'), signed(callForm(i, '+15550009999')));
        expect(res.status).toBe(200);
        bodies.push(await res.text());
      }
      expect(bodies.slice(0, 3)).toEqual(['<Response/>', '<Response/>', '<Response/>']);
      for (const b of bodies.slice(3)) expect(b).toContain('<Reject');
      expect(f.incoming).toHaveLength(3);
      // Another number is not affected.
      expect(await (await post(base, '/voice/incoming', callForm(9), signed(callForm(9)))).text()).toBe('<Response/>');
      expect(await s.metrics.registry.getSingleMetricAsString('callbridge_rate_limited_total')).toContain('kind="caller"} 2');
    });

    it('limits requests failing the signature per client address: 403 within RATE_LIMIT_UNSIGNED_BURST, then 429', async () => {
      const f = fakeApp();
      const { base, s } = await start(edge, f.app, { unsignedLimit: { burst: 3, perMinute: 10 } });
      const codes = [];
      for (let i = 0; i < 5; i++) codes.push((await post(base, '/voice/incoming', callForm(i), 'forged')).status);
      expect(codes).toEqual([403, 403, 403, 429, 429]);
      expect(await s.metrics.registry.getSingleMetricAsString('callbridge_rate_limited_total')).toContain('kind="unsigned"} 2');
    });

    it('an address past its budget of failed signatures gets 429 before its body is read, signed or not; Twilio from another address is not charged', async () => {
      const f = fakeApp();
      const { base, s } = await start(edge, f.app, { unsignedLimit: { burst: 2, perMinute: 10 }, trustProxy: [{ address: '127.0.0.0', prefix: 8, family: 'ipv4' }] });
      const from = (xff: string, form: Record<string, string>, sig: string) =>
        fetch(`${base}/voice/incoming`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': sig, 'x-forwarded-for': xff },
          body: new URLSearchParams(form).toString(),
        }).then((r) => r.status);
      const codes = [];
      for (let i = 0; i < 4; i++) codes.push(await from('198.51.100.7', callForm(i), 'forged'));
      expect(codes).toEqual([403, 403, 429, 429]);
      expect(await from('198.51.100.7', callForm(7), signed(callForm(7)))).toBe(429); // refused unread while the address is over
      for (let i = 0; i < 5; i++) expect(await from('203.0.113.5', callForm(10 + i), signed(callForm(10 + i)))).toBe(200);
      expect(f.incoming).toHaveLength(5);
      // Only the first two were parsed and checked: the rest were refused before their body was read.
      expect(await s.metrics.registry.getSingleMetricAsString('callbridge_signature_rejections_total')).toContain('route="incoming"} 2');
    });

    it('TRUST_PROXY: behind a trusted proxy the client is the right-most untrusted X-Forwarded-For address', async () => {
      const f = fakeApp();
      const { base } = await start(edge, f.app, { trustProxy: [{ address: '127.0.0.0', prefix: 8, family: 'ipv4' }, { address: '10.0.0.0', prefix: 8, family: 'ipv4' }, { address: 'fd00::', prefix: 8, family: 'ipv6' }], unsignedLimit: { burst: 2, perMinute: 10 } });
      const forged = (xff: string) =>
        fetch(`${base}/voice/incoming`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': 'forged', 'x-forwarded-for': xff },
          body: new URLSearchParams(callForm(1)).toString(),
        }).then((r) => r.status);
      // Client 198.51.100.7 (spoofed left-most entries and the trusted hops after it do not matter).
      const a = [];
      for (const xff of ['198.51.100.7', '203.0.113.99, 198.51.100.7', '1.2.3.4, 198.51.100.7, 10.1.2.3', '198.51.100.7:5555, fd00::1']) a.push(await forged(xff));
      expect(a).toEqual([403, 403, 429, 429]);
      // Other clients have their own budget; IPv6 clients too, written either way.
      expect([await forged('2001:db8::7'), await forged('[2001:db8:0:0::7]:443'), await forged('2001:0db8::0007')]).toEqual([403, 403, 429]);
      expect(await forged('192.0.2.1, 10.0.0.1')).toBe(403);
    });

    it('without TRUST_PROXY, X-Forwarded-For is ignored: every request counts against the peer', async () => {
      const f = fakeApp();
      const { base } = await start(edge, f.app, { unsignedLimit: { burst: 2, perMinute: 10 } });
      const codes = [];
      for (let i = 0; i < 3; i++) {
        const res = await fetch(`${base}/voice/incoming`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': 'forged', 'x-forwarded-for': `198.51.100.${i}` },
          body: new URLSearchParams(callForm(1)).toString(),
        });
        codes.push(res.status);
      }
      expect(codes).toEqual([403, 403, 429]);
    });
  });

  describe('media stream websocket', () => {
    it('delivers text frames intact (multi-byte UTF-8) and binary frames as errors', async () => {
      const f = fakeApp();
      const { ws: url } = await start(edge, f.app);
      const ws = await openWs(url);
      ws.send('{"event":"connected","note":"héllo ☎ 电话"}');
      ws.send(Buffer.from([1, 2, 3]));
      await until(() => f.streams[0]?.texts.length === 1 && f.streams[0].binaries.length === 1, WAIT);
      expect(f.streams[0]!.texts[0]).toBe('{"event":"connected","note":"héllo ☎ 电话"}');
      expect(f.streams[0]!.binaries).toEqual([3]);
      ws.close();
    });

    it('refuses an upgrade without a valid signature (403)', async () => {
      const f = fakeApp();
      const { ws: url } = await start(edge, f.app);
      await expect(openWs(url, false)).rejects.toThrow('HTTP 403');
      expect(f.streams).toHaveLength(0);
    });

    it('serves the stream under /i/<instance>/voice/stream too (a balancer that routes on the prefix and keeps it), signature over that URL', async () => {
      const f = fakeApp();
      const { ws: url } = await start(edge, f.app);
      const prefixed = url.replace('/voice/stream', '/i/inst-a/voice/stream');
      await expect(openWs(prefixed)).rejects.toThrow('HTTP 403'); // signed over /voice/stream, not this URL
      const sig = signTwilioRequest(TOKEN, `${PUBLIC.replace('https', 'wss')}/i/inst-a/voice/stream`, {});
      const ws = await new Promise<WebSocket>((resolve, reject) => {
        const w = new WebSocket(prefixed, { headers: { 'x-twilio-signature': sig } });
        w.once('open', () => resolve(w));
        w.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
        w.once('error', reject);
      });
      await until(() => f.streams.length === 1, WAIT);
      ws.close();
      const other = url.replace('/voice/stream', '/x/voice/stream');
      await expect(openWs(other)).rejects.toThrow('HTTP 404');
    });

    it('closes with 1001 when the app refuses the stream because it is draining, and health answers 503', async () => {
      const f = fakeApp();
      f.app.openStream = () => ({ refused: 'draining' });
      f.app.health = () => ({ status: 'draining', version: '1', uptimeSeconds: 0, activeCalls: 2, model: { reachable: true, lastOkAt: null, lastError: null }, signed: true });
      const { ws: url, base, s } = await start(edge, f.app);
      const ws = await openWs(url);
      expect(await closed(ws)).toEqual([1001, 'server shutting down']);
      expect(await s.metrics.registry.getSingleMetricAsString('callbridge_streams_refused_total')).toContain('reason="draining"} 1');
      const health = await fetch(`${base}/voice/health`);
      expect(health.status).toBe(503);
      expect(await health.json()).toMatchObject({ status: 'draining', signed: true });
    });

    it('closes with 1013 when the app refuses the stream (at capacity)', async () => {
      const { ws: url } = await start(edge, fakeApp({ refuse: true }).app);
      const ws = await openWs(url);
      expect((await closed(ws))[0]).toBe(1013);
    });

    it('closes an oversize frame\'s socket, counts it, and keeps serving others', async () => {
      const f = fakeApp();
      const { ws: url, s } = await start(edge, f.app);
      const bad = await openWs(url);
      const badClosed = closed(bad);
      bad.send('x'.repeat(100 * 1024));
      await badClosed;
      await until(() => f.streams[0]?.closes.length === 1, WAIT);
      expect(f.streams[0]!.texts).toHaveLength(0);
      expect(await s.metrics.registry.getSingleMetricAsString('callbridge_twilio_protocol_errors_total')).toContain('reason="oversize_frame"} 1');
      const good = await openWs(url);
      good.send('{"event":"connected"}');
      await until(() => f.streams[1]?.texts.length === 1, WAIT);
      good.close();
    });

    it('closes a socket that sends invalid UTF-8 in a text frame, counts it, and keeps serving others', async () => {
      const f = fakeApp();
      const { ws: url, s } = await start(edge, f.app);
      const bad = await openWs(url);
      const badClosed = closed(bad);
      // A text frame (FIN + opcode 1), masked with a zero key, whose payload is not UTF-8; written raw so the client cannot refuse it.
      const raw = (bad as unknown as { _socket: net.Socket })._socket;
      raw.write(Buffer.from([0x81, 0x82, 0, 0, 0, 0, 0xc3, 0x28]));
      await badClosed;
      await until(() => f.streams[0]?.closes.length === 1, WAIT);
      expect(f.streams[0]!.texts).toHaveLength(0);
      expect(await s.metrics.registry.getSingleMetricAsString('callbridge_twilio_protocol_errors_total')).toContain('reason="ws_protocol"} 1');
      const good = await openWs(url);
      good.send('{"event":"connected"}');
      await until(() => f.streams[1]?.texts.length === 1, WAIT);
      good.close();
    });

    it('a throwing onClose is counted and never crashes the server', async () => {
      const f = fakeApp();
      const open = f.app.openStream.bind(f.app);
      f.app.openStream = (socket, info) => {
        const h = open(socket, info)!;
        return { ...h, onClose: () => { throw new Error('close bug'); } };
      };
      const { ws: url, s, base } = await start(edge, f.app);
      const ws = await openWs(url);
      await until(() => f.streams.length === 1, WAIT);
      ws.close(1000);
      await until(async () => (await s.metrics.registry.getSingleMetricAsString('callbridge_handler_errors_total')).includes('handler="close"} 1'), WAIT);
      expect((await fetch(`${base}/voice/health`)).status).toBe(200);
    });

    it('an abrupt client disconnect calls onClose once and is not counted as malformed', async () => {
      const f = fakeApp();
      const { ws: url, s } = await start(edge, f.app);
      const ws = await openWs(url);
      await until(() => f.streams.length === 1, WAIT);
      ws.terminate();
      await until(() => f.streams[0]!.closes.length === 1, WAIT);
      await new Promise((r) => setTimeout(r, 20));
      expect(f.streams[0]!.closes).toHaveLength(1);
      expect(await s.metrics.registry.getSingleMetricAsString('callbridge_twilio_protocol_errors_total')).not.toContain('oversize_frame');
    });

    it('a handler that throws is logged and counted, and the socket keeps working', async () => {
      const f = fakeApp({ throwOnText: true });
      const { ws: url, s } = await start(edge, f.app);
      const ws = await openWs(url);
      ws.send('boom');
      ws.send('after');
      await until(() => f.streams[0]?.texts.length === 1, WAIT);
      expect(f.streams[0]!.texts).toEqual(['after']);
      expect(await s.metrics.registry.getSingleMetricAsString('callbridge_handler_errors_total')).toContain('handler="message"} 1');
      ws.close();
    });

    it('closes with 1011 when openStream throws', async () => {
      const f = fakeApp();
      f.app.openStream = () => {
        throw new Error('bug');
      };
      const { ws: url } = await start(edge, f.app);
      const ws = await openWs(url);
      expect((await closed(ws))[0]).toBe(1011);
    });

    it('reports onClose once even when openStream closes the socket before returning', async () => {
      const f = fakeApp({ closeInOpen: true });
      const { ws: url } = await start(edge, f.app);
      const ws = await openWs(url);
      expect(await closed(ws)).toEqual([1008, 'no token']);
      await until(() => f.streams[0]?.closes.length === 1, WAIT);
      expect(f.streams[0]!.closes).toEqual([[1008, 'no token']]);
      expect(f.streams[0]!.socket.send('{}')).toBe(false);
    });

    it('cork() runs its callback at once and delivers the frames sent inside it, in order', async () => {
      const f = fakeApp();
      const { ws: url } = await start(edge, f.app);
      const ws = await openWs(url);
      await until(() => f.streams.length === 1, WAIT);
      const texts: string[] = [];
      ws.on('message', (m) => texts.push(m.toString()));
      let ran = false;
      f.streams[0]!.socket.cork(() => {
        ran = true;
        expect(f.streams[0]!.socket.send('{"event":"media","n":1}')).toBe(true);
        expect(f.streams[0]!.socket.send('{"event":"mark","n":2}')).toBe(true);
      });
      expect(ran).toBe(true); // synchronously: the call layer relies on it
      await until(() => texts.length === 2, WAIT);
      expect(texts).toEqual(['{"event":"media","n":1}', '{"event":"mark","n":2}']);
      ws.close();
    });

    it('reports backpressure from send() and calls onDrain once the client reads again', async () => {
      const f = fakeApp();
      const { ws: url } = await start(edge, f.app);
      const ws = await openWs(url);
      await until(() => f.streams.length === 1, WAIT);
      const raw = (ws as unknown as { _socket: import('node:net').Socket })._socket;
      raw.pause();
      const frame = JSON.stringify({ event: 'media', media: { payload: 'A'.repeat(4000) } });
      let sent = 0;
      while (f.streams[0]!.socket.send(frame) && sent < 100_000) sent++;
      expect(sent).toBeLessThan(100_000);
      expect(f.streams[0]!.socket.bufferedAmount()).toBeGreaterThan(0);
      raw.resume();
      await until(() => f.streams[0]!.drains > 0, { timeoutMs: 10_000 });
      ws.close();
    });

    it('calls onClose exactly once whether the client or the server closes, and sends after close are no-ops', async () => {
      const f = fakeApp();
      const { ws: url } = await start(edge, f.app);
      const a = await openWs(url);
      await until(() => f.streams.length === 1, WAIT);
      a.close(1000, 'bye');
      await until(() => f.streams[0]!.closes.length === 1, WAIT);
      expect(f.streams[0]!.closes[0]).toEqual([1000, 'bye']);
      expect(f.streams[0]!.socket.send('{}')).toBe(false);
      f.streams[0]!.socket.close();

      const c = await openWs(url);
      await until(() => f.streams.length === 2, WAIT);
      const cClosed = closed(c);
      f.streams[1]!.socket.close(1008, 'é'.repeat(100)); // 200 bytes: cut to 61 whole characters (122 bytes)
      expect(await cClosed).toEqual([1008, 'é'.repeat(61)]);

      const b = await openWs(url);
      await until(() => f.streams.length === 3, WAIT);
      const bClosed = closed(b);
      f.streams[2]!.socket.close(1000, 'done');
      expect(await bClosed).toEqual([1000, 'done']);
      await until(() => f.streams[2]!.closes.length === 1, WAIT);
      await new Promise((r) => setTimeout(r, 20));
      expect(f.streams[2]!.closes).toHaveLength(1);
    });

    it('close() ends open streams with 1001 and stops accepting', async () => {
      const f = fakeApp();
      const { ws: url, s, base } = await start(edge, f.app);
      const ws = await openWs(url);
      const wsClosed = closed(ws);
      await s.close();
      expect((await wsClosed)[0]).toBe(1001);
      expect(f.streams[0]!.closes).toHaveLength(1);
      await expect(fetch(`${base}/voice/health`)).rejects.toThrow();
    });

    it('close() also drops idle keep-alive HTTP connections instead of serving on (they would hold the process open)', async () => {
      const { s } = await start(edge, fakeApp().app);
      const sock = net.connect(s.port, '127.0.0.1');
      sock.on('error', () => {}); // EPIPE/ECONNRESET once the server has dropped it
      let isClosed = false;
      sock.once('close', () => (isClosed = true));
      let got = '';
      sock.on('data', (d) => (got += d.toString()));
      const request = 'GET /voice/health HTTP/1.1\r\nHost: x\r\n\r\n';
      sock.write(request);
      await until(() => got.includes('"status":"ok"'), WAIT);
      await s.close();
      // Ask again on the same connection: a server that kept it would answer a second time.
      const outcome = await new Promise<'closed' | 'answered'>((resolve) => {
        const check = () => {
          if (got.split('HTTP/1.1 200').length > 2) resolve('answered');
          else if (isClosed) resolve('closed');
        };
        sock.on('data', check);
        sock.once('close', check);
        if (!sock.destroyed) sock.write(request);
        check();
      });
      expect(outcome).toBe('closed');
    });
  });
});

describe('edge resolver', () => {
  const dir = mkdtempSync(join(tmpdir(), 'callbridge-edge-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('EDGE=node gives node:http + ws, and an unknown EDGE value is an error', () => {
    expect(resolveEdge({ EDGE: 'node' })).toMatchObject({ kind: 'node', description: 'node:http + ws (EDGE=node)' });
    expect(() => resolveEdge({ EDGE: 'fastest' })).toThrow(EdgeError);
  });

  it('a CALLBRIDGE_UWS_MODULE that does not load is a start-up error naming it, never a silent fallback', () => {
    expect(() => resolveEdge({ CALLBRIDGE_UWS_MODULE: 'callbridge-no-such-uws-build' })).toThrow(/callbridge-no-such-uws-build: not installed/);
    expect(() => resolveEdge({ EDGE: 'uws', CALLBRIDGE_UWS_MODULE: 'callbridge-no-such-uws-build' })).toThrow(EdgeError);
  });

  it('refuses a JavaScript imitation of uWebSockets.js (what some builds fall back to on an unsupported Node)', () => {
    const fake = join(dir, 'fake-uws.cjs');
    writeFileSync(fake, 'module.exports = { App() { throw new Error("Not implemented"); }, us_listen_socket_close() {} };\n');
    expect(() => resolveEdge({ CALLBRIDGE_UWS_MODULE: fake })).toThrow(/JavaScript imitation/);
  });

  it('loads native uWebSockets.js on Node 20 and 22 (linux x64, glibc), where @based/uws ships a binary', () => {
    const abi = process.versions.modules;
    const covered = process.platform === 'linux' && process.arch === 'x64' && (abi === '115' || abi === '127');
    const r = resolveEdge({});
    if (covered) {
      expect(r.kind).toBe('uws');
      expect(r.description).toMatch(/^uWebSockets\.js v20\.\d+ native \(/);
      expect(availableEdges({})).toEqual(['uws', 'node']);
    } else if (r.kind === 'node') {
      expect(r.description).toMatch(new RegExp(`^node:http \\+ ws \\(no native uWebSockets\\.js for Node ${process.versions.node.split('.')[0]}`));
      expect(availableEdges({})).toEqual(['node']);
      expect(() => resolveEdge({ EDGE: 'uws' })).toThrow(/EDGE=uws, but no native uWebSockets\.js loads on Node/);
    }
  });

  it('startServer refuses to start when EDGE=uws cannot be had', async () => {
    const settings = edgeSettings({ port: 0, host: '127.0.0.1' });
    await expect(startServer({ settings, app: fakeApp().app, log: silentLogger, edge: 'uws', env: { CALLBRIDGE_UWS_MODULE: 'callbridge-no-such-uws-build' } })).rejects.toThrow(EdgeError);
  });
});
