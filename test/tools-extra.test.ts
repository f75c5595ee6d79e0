/** Eligibility tool cases beyond test/tools.test.ts: PII-free logs, defaults, network errors, cancellation, Retry-After cap, half-open single trial. */
import { createServer, type ServerResponse, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { HttpEligibilityBackend, MockEligibilityBackend, retryAfterMs } from '../src/tools/backends.js';
import { createDefaultTools, createEligibilityTool } from '../src/tools/eligibility.js';
import { TOOL_TROUBLE } from '../src/tools/registry.js';

const ctx = () => ({ callSid: 'CAtest', signal: new AbortController().signal });
const OK_BODY = JSON.stringify({ status: 'eligible', plan: 'Gold PPO' });
const json = (res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}) => {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(body);
};
const opts = { timeoutMs: 2000, retries: 2, backoffMs: 10, maxBackoffMs: 50 };

let server: Server | undefined;
async function serve(handler: (res: ServerResponse, n: number) => void): Promise<{ url: string; hits: () => number }> {
  let n = 0;
  server = createServer((req, res) => {
    req.resume();
    req.on('end', () => handler(res, n++));
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, hits: () => n };
}
afterEach(async () => {
  if (server) {
    server.closeAllConnections();
    await new Promise((r) => server!.close(r));
    server = undefined;
  }
});

describe('check_eligibility extras', () => {
  it('member IDs and dates of birth never appear in log lines (success and failure)', async () => {
    const lines: string[] = [];
    const sink = new Writable({ write(chunk, _e, cb) { lines.push(String(chunk)); cb(); } });
    const log = createLogger('debug', sink);
    const failing = createEligibilityTool(new MockEligibilityBackend({ failing: true, delayMs: 5 }), log);
    const out = await failing.run({ member_id: 'MB123456', date_of_birth: '1980-03-05' }, ctx());
    expect(out.ok).toBe(false);
    expect(out.output).toContain(TOOL_TROUBLE);
    await createEligibilityTool(new MockEligibilityBackend(), log).run({ member_id: 'MB123456', date_of_birth: '1980-03-05' }, ctx());
    expect(lines.length).toBeGreaterThanOrEqual(2);
    for (const l of lines) {
      expect(l).not.toContain('MB123456');
      expect(l).not.toContain('1980-03-05');
    }
  });

  it('createDefaultTools: mock back end by default, through the registry', async () => {
    const reg = createDefaultTools(loadConfig({}), createLogger('silent'));
    expect(reg.specs().map((s) => s.name)).toEqual(['check_eligibility']);
    const out = await reg.call('check_eligibility', JSON.stringify({ member_id: 'mb-123456', date_of_birth: '03/05/1980' }), ctx());
    expect(out.ok).toBe(true);
    expect(JSON.parse(out.output).status).toBe('eligible');
  });

  it('createDefaultTools: HTTP back end when ELIGIBILITY_API_URL is set', async () => {
    const s = await serve((res) => json(res, 200, JSON.stringify({ status: 'inactive', plan: 'X' })));
    const reg = createDefaultTools(loadConfig({ ELIGIBILITY_API_URL: s.url, ELIGIBILITY_RETRIES: '0' }), createLogger('silent'));
    const out = await reg.call('check_eligibility', JSON.stringify({ member_id: 'MB123456', date_of_birth: '1980-03-05' }), ctx());
    expect(JSON.parse(out.output).status).toBe('inactive');
    expect(s.hits()).toBe(1);
  });
});

describe('HttpEligibilityBackend extras', () => {
  it('network error (nothing listening) is retried, then a network error', async () => {
    const s = await serve((res) => json(res, 200, OK_BODY));
    server!.closeAllConnections();
    await new Promise((r) => server!.close(r));
    server = undefined;
    const b = new HttpEligibilityBackend({ url: s.url, ...opts, retries: 1 });
    await expect(b.lookup('MB123456', '1980-03-05', ctx().signal)).rejects.toMatchObject({ code: 'network' });
    expect(b.attempts).toBe(2);
  });

  it("the call's signal cancels a lookup, without retries", async () => {
    const s = await serve((res) => setTimeout(() => json(res, 200, OK_BODY), 1000));
    const b = new HttpEligibilityBackend({ url: s.url, ...opts });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    await expect(b.lookup('MB123456', '1980-03-05', ac.signal)).rejects.toMatchObject({ code: 'aborted' });
    expect(b.attempts).toBe(1);
    expect(s.hits()).toBe(1);
  });

  it('a huge Retry-After is capped at maxBackoffMs', async () => {
    const s = await serve((res, n) => (n === 0 ? json(res, 429, '{}', { 'retry-after': '3600' }) : json(res, 200, OK_BODY)));
    const b = new HttpEligibilityBackend({ url: s.url, ...opts, maxBackoffMs: 50 });
    const t0 = Date.now();
    expect((await b.lookup('MB123456', '1980-03-05', ctx().signal)).status).toBe('eligible');
    expect(b.attempts).toBe(2);
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('half-open lets exactly one trial through; concurrent lookups are refused meanwhile', async () => {
    let healthy = false;
    const s = await serve((res) => (healthy ? setTimeout(() => json(res, 200, OK_BODY), 100) : json(res, 500, '{}')));
    const b = new HttpEligibilityBackend({ url: s.url, ...opts, retries: 0, breakerThreshold: 1, breakerCooldownMs: 100 });
    await expect(b.lookup('MB123456', '1980-03-05', ctx().signal)).rejects.toMatchObject({ code: 'http_500' });
    await expect(b.lookup('MB123456', '1980-03-05', ctx().signal)).rejects.toMatchObject({ code: 'breaker_open' });
    await new Promise((r) => setTimeout(r, 150));
    healthy = true;
    const trial = b.lookup('MB123456', '1980-03-05', ctx().signal);
    await expect(b.lookup('MB123456', '1980-03-05', ctx().signal)).rejects.toMatchObject({ code: 'breaker_open' });
    expect((await trial).status).toBe('eligible');
    expect(s.hits()).toBe(2);
    expect((await b.lookup('MB123456', '1980-03-05', ctx().signal)).status).toBe('eligible');
  });

  it('Retry-After as seconds or an HTTP date', () => {
    const now = Date.parse('2026-11-25T08:00:00Z');
    expect(retryAfterMs('2', now)).toBe(2000);
    expect(retryAfterMs('Wed, 25 Nov 2026 08:00:03 GMT', now)).toBe(3000);
    expect(retryAfterMs('Wed, 25 Nov 2026 07:00:00 GMT', now)).toBe(0);
    expect(retryAfterMs('soon', now)).toBeUndefined();
    expect(retryAfterMs(null, now)).toBeUndefined();
  });

  it('a 429 with an HTTP-date Retry-After waits, then succeeds', async () => {
    const api = await serve((res, n) =>
      n === 0 ? json(res, 429, '{}', { 'retry-after': new Date(Date.now() + 1000).toUTCString() }) : json(res, 200, OK_BODY),
    );
    const b = new HttpEligibilityBackend({ url: api.url, ...opts, maxBackoffMs: 5000 });
    expect((await b.lookup('MB123456', '1980-03-05', ctx().signal)).status).toBe('eligible');
    expect(api.hits()).toBe(2);
  });

  it('a body that stalls past the timeout is a timeout (retried), not malformed JSON', async () => {
    const api = await serve((res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"status":'); // …and nothing more
    });
    const b = new HttpEligibilityBackend({ url: api.url, ...opts, timeoutMs: 100, retries: 1 });
    await expect(b.lookup('MB123456', '1980-03-05', ctx().signal)).rejects.toMatchObject({ code: 'timeout' });
    expect(b.attempts).toBe(2);
  });
});
