/**
 * The eligibility tool: normalisation, the mock back end, PII-free logs,
 * the default tool set, and the HTTP back end against a local API (retries,
 * Retry-After, timeouts, cancellation, the circuit breaker); the registry's
 * outcome observer, the circuit breaker alone, and an agent's tool set built
 * from its file's tool list.
 */
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger, silentLogger } from '../src/log.js';
import { HttpEligibilityBackend, MOCK_MEMBERS, MockEligibilityBackend, retryAfterMs } from '../src/tools/backends.js';
import { createDefaultTools, createEligibilityTool } from '../src/tools/eligibility.js';
import { normalizeDate, normalizeMemberId } from '../src/tools/normalize.js';
import { CircuitBreaker } from '../src/tools/breaker.js';
import { createAgentTools } from '../src/tools/build.js';
import { TOOL_TROUBLE, ToolRegistry, UNKNOWN_TOOL, outcomeKind, type Tool, type ToolOutcomeKind } from '../src/tools/registry.js';
import type { HttpToolDef } from '../src/tools/spec.js';

const ctx = () => ({ callSid: 'CA1', signal: new AbortController().signal });

describe('normalizeMemberId', () => {
  it.each([
    ['M B 1 2 3 4 5 6', 'MB123456'],
    ['mb-123456', 'MB123456'],
    ['MB123456', 'MB123456'],
    ['m b one two three four five six', 'MB123456'],
    ['M as in Mary B as in boy 1 2 3 4 5 6', 'MB123456'],
    ['k t six five four three two one', 'KT654321'],
    ['A Z zero zero zero one one one', 'AZ000111'],
    ['q r double seven eight eight nine nine', 'QR778899'],
    ['m as in mary b 123456', 'MB123456'],
    ['MB 123 456', 'MB123456'],
    ['my member ID is MB-123456', 'MB123456'],
    ["It's M B 1 2 3 4 5 6", 'MB123456'],
    ['em bee one two three four five six', 'MB123456'],
    ['M B for five six seven eight nine', 'MB456789'], // "four" transcribed as "for"
    ['o h one two three four five six', 'OH123456'],
  ])('%s → %s', (spoken, id) => {
    expect(normalizeMemberId(spoken)).toEqual({ ok: true, value: id });
  });

  it.each([[''], ['12345678'], ['MB12345'], ['MBC123456'], [42], [undefined]])('rejects %s with a reason the model can relay', (bad) => {
    const r = normalizeMemberId(bad);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.problem).toMatch(/member ID/);
  });
});

describe('normalizeDate', () => {
  const today = new Date('2026-11-25T00:00:00Z');
  it.each([
    ['1980-03-05', '1980-03-05'],
    ['03/05/1980', '1980-03-05'],
    ['March 5th 1980', '1980-03-05'],
    ['March 5, 1980', '1980-03-05'],
    ['5 March 1980', '1980-03-05'],
    ['the fifth of March 1980', '1980-03-05'],
    ['march fifth nineteen eighty', '1980-03-05'],
    ['March fifth, 1980.', '1980-03-05'],
    ['november twenty second nineteen seventy five', '1975-11-22'],
    ['Sept 9 2001', '2001-09-09'],
    ['july fourteenth two thousand three', '2003-07-14'],
    ['March twenty-first, nineteen eighty-five', '1985-03-21'],
    ['1980/03/05', '1980-03-05'],
    ['03-05-1980', '1980-03-05'],
    ['February 29 2000', '2000-02-29'],
  ])('%s → %s', (spoken, iso) => {
    expect(normalizeDate(spoken, today)).toEqual({ ok: true, value: iso });
  });

  it.each([['February 30 1980'], ['February 29 1900'], ['13/01/1980'], ['2030-01-01'], ['yesterday'], [''], ['1850-01-01']])('rejects %s', (bad) => {
    expect(normalizeDate(bad, today).ok).toBe(false);
  });

  it.each([['3/5/80'], ['March 5 80'], ['march 21st, 85']])('asks for four digits of the year in %s instead of guessing the century', (bad) => {
    const r = normalizeDate(bad, today);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.problem).toMatch(/all four digits/);
  });
});

describe('check_eligibility with the mock back end', () => {
  const tool = createEligibilityTool(new MockEligibilityBackend(), silentLogger);

  it('answers an eligible member with a speakable summary and keeps the structured result', async () => {
    const out = await tool.run({ member_id: 'M B 1 2 3 4 5 6', date_of_birth: 'March fifth nineteen eighty' }, ctx());
    expect(out.ok).toBe(true);
    expect(JSON.parse(out.output)).toEqual({
      status: 'eligible',
      plan: 'Gold PPO',
      coverage: '2026-01-01 to 2026-12-31',
      deductible: '$1,500, $420 met',
      copays: 'primary care $25, specialist $50, emergency room $250',
    });
    expect(out.record).toMatchObject({ memberId: 'MB123456', dateOfBirth: '1980-03-05', status: 'eligible' });
  });

  it.each(MOCK_MEMBERS.map((m) => [m.memberId, m.dateOfBirth, m.coverage.status] as const))('member %s (%s) is %s', async (id, dob, status) => {
    const out = await tool.run({ member_id: id, date_of_birth: dob }, ctx());
    expect(JSON.parse(out.output).status).toBe(status);
  });

  it('tells the model a member is unknown, or the date of birth does not match', async () => {
    expect(JSON.parse((await tool.run({ member_id: 'ZZ999999', date_of_birth: '1980-03-05' }, ctx())).output).status).toBe('not_found');
    expect(JSON.parse((await tool.run({ member_id: 'MB123456', date_of_birth: '1981-03-05' }, ctx())).output).status).toBe('dob_mismatch');
  });

  it('sends invalid or missing arguments back with what to ask again, without a lookup', async () => {
    const out = await tool.run({ member_id: 'twelve', date_of_birth: '' }, ctx());
    expect(out.ok).toBe(false);
    const body = JSON.parse(out.output);
    expect(body.error).toBe('invalid_arguments');
    expect(body.ask_again).toMatch(/member ID/);
    expect(body.ask_again).toMatch(/date of birth is missing/);
  });

  it('an outage becomes the trouble outcome, never a throw', async () => {
    const down = createEligibilityTool(new MockEligibilityBackend({ failing: true }), silentLogger);
    const out = await down.run({ member_id: 'MB123456', date_of_birth: '1980-03-05' }, ctx());
    expect(out).toMatchObject({ ok: false, output: JSON.stringify({ error: TOOL_TROUBLE }) });
  });

  it('the registry turns unknown tools and bad JSON into outcomes too', async () => {
    const reg = new ToolRegistry([tool]);
    expect(reg.specs()[0]!.name).toBe('check_eligibility');
    expect((await reg.call('nope', '{}', ctx())).ok).toBe(false);
    expect((await reg.call('check_eligibility', '{bad', ctx())).record).toEqual({ error: 'bad_json' });
  });

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
    const reg = createDefaultTools({ apiUrl: undefined, apiKey: undefined, timeoutMs: 3000, retries: 2 }, createLogger('silent'));
    expect(reg.specs().map((spec) => spec.name)).toEqual(['check_eligibility']);
    const out = await reg.call('check_eligibility', JSON.stringify({ member_id: 'mb-123456', date_of_birth: '03/05/1980' }), ctx());
    expect(out.ok).toBe(true);
    expect(JSON.parse(out.output).status).toBe('eligible');
  });
});

describe('HTTP back end against a local eligibility API', () => {
  let server: Server | undefined;
  afterEach(async () => {
    if (!server) return;
    server.closeAllConnections(); // a stalled response would keep close() waiting
    await new Promise((r) => server!.close(r));
    server = undefined;
  });

  const json = (res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(body);
  };

  /** A local API: `answer(res, n)` answers the n-th request (from 0); `seen` holds each request's auth header and JSON body. */
  async function serve(answer: (res: ServerResponse, n: number) => void) {
    const seen: { auth: string | undefined; body: unknown }[] = [];
    server = createServer((req, res) => {
      let raw = '';
      req.on('data', (d) => (raw += d));
      req.on('end', () => {
        seen.push({ auth: req.headers.authorization, body: JSON.parse(raw) });
        answer(res, seen.length - 1);
      });
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    return { url: `http://127.0.0.1:${(server!.address() as AddressInfo).port}/eligibility`, seen };
  }

  /** A local API whose answers follow `script` (one entry per request, the last repeats). */
  function api(script: Array<{ status: number; body?: string; delayMs?: number; headers?: Record<string, string> }>) {
    return serve((res, n) => {
      const step = script[Math.min(n, script.length - 1)]!;
      setTimeout(() => json(res, step.status, step.body ?? '', step.headers), step.delayMs ?? 0);
    });
  }

  const ok = JSON.stringify({ status: 'eligible', plan: 'Gold PPO', coverage_start: '2026-01-01', coverage_end: '2026-12-31', deductible: 1500, deductible_met: 20, copays: { 'primary care': 25 } });
  const base = { timeoutMs: 500, retries: 3, backoffMs: 5, maxBackoffMs: 20 };
  const lookup = (b: HttpEligibilityBackend, signal = ctx().signal) => b.lookup('MB123456', '1980-03-05', signal);

  it('posts the normalised arguments with the bearer key and maps the answer', async () => {
    const a = await api([{ status: 200, body: ok }]);
    const b = new HttpEligibilityBackend({ ...base, url: a.url, apiKey: 'secret' });
    const tool = createEligibilityTool(b, silentLogger);
    const out = await tool.run({ member_id: 'mb-123456', date_of_birth: '03/05/1980' }, ctx());
    expect(JSON.parse(out.output)).toMatchObject({ status: 'eligible', plan: 'Gold PPO', deductible: '$1,500, $20 met' });
    expect(a.seen).toEqual([{ auth: 'Bearer secret', body: { member_id: 'MB123456', date_of_birth: '1980-03-05' } }]);
  });

  it('createDefaultTools: HTTP back end when ELIGIBILITY_API_URL is set', async () => {
    const a = await api([{ status: 200, body: JSON.stringify({ status: 'inactive', plan: 'X' }) }]);
    const reg = createDefaultTools({ apiUrl: a.url, apiKey: undefined, timeoutMs: 3000, retries: 0 }, createLogger('silent'));
    const out = await reg.call('check_eligibility', JSON.stringify({ member_id: 'MB123456', date_of_birth: '1980-03-05' }), ctx());
    expect(JSON.parse(out.output).status).toBe('inactive');
    expect(a.seen).toHaveLength(1);
  });

  it('retries 500s and then succeeds', async () => {
    const a = await api([{ status: 500 }, { status: 503 }, { status: 200, body: ok }]);
    const b = new HttpEligibilityBackend({ ...base, url: a.url });
    expect((await lookup(b)).status).toBe('eligible');
    expect(b.attempts).toBe(3);
  });

  it('honours Retry-After on 429 and retries; a huge one is capped at maxBackoffMs', async () => {
    const a = await api([{ status: 429, headers: { 'retry-after': '0' } }, { status: 200, body: ok }]);
    expect((await lookup(new HttpEligibilityBackend({ ...base, url: a.url }))).status).toBe('eligible');
    expect(a.seen).toHaveLength(2);

    const huge = await api([{ status: 429, body: '{}', headers: { 'retry-after': '3600' } }, { status: 200, body: ok }]);
    const b = new HttpEligibilityBackend({ ...base, url: huge.url, maxBackoffMs: 50 });
    const t0 = Date.now();
    expect((await lookup(b)).status).toBe('eligible');
    expect(b.attempts).toBe(2);
    expect(Date.now() - t0).toBeLessThan(2000); // not the hour asked for
  });

  it('a 429 with an HTTP-date Retry-After waits, then succeeds', async () => {
    const a = await serve((res, n) =>
      n === 0 ? json(res, 429, '{}', { 'retry-after': new Date(Date.now() + 1000).toUTCString() }) : json(res, 200, ok),
    );
    const b = new HttpEligibilityBackend({ ...base, url: a.url, maxBackoffMs: 5000 });
    expect((await lookup(b)).status).toBe('eligible');
    expect(a.seen).toHaveLength(2);
  });

  it('Retry-After as seconds or an HTTP date', () => {
    const now = Date.parse('2026-11-25T08:00:00Z');
    expect(retryAfterMs('2', now)).toBe(2000);
    expect(retryAfterMs('Wed, 25 Nov 2026 08:00:03 GMT', now)).toBe(3000);
    expect(retryAfterMs('Wed, 25 Nov 2026 07:00:00 GMT', now)).toBe(0);
    expect(retryAfterMs('soon', now)).toBeUndefined();
    expect(retryAfterMs(null, now)).toBeUndefined();
  });

  it('gives up after the retries on persistent 500s: the tool speaks the trouble outcome', async () => {
    const a = await api([{ status: 500 }]);
    const tool = createEligibilityTool(new HttpEligibilityBackend({ ...base, url: a.url, retries: 2 }), silentLogger);
    const out = await tool.run({ member_id: 'MB123456', date_of_birth: '1980-03-05' }, ctx());
    expect(out.output).toContain('trouble accessing the system');
    expect(a.seen).toHaveLength(3);
  });

  it('does not retry a 400, and reads 404 as not found', async () => {
    const a = await api([{ status: 400 }]);
    const b = new HttpEligibilityBackend({ ...base, url: a.url });
    await expect(lookup(b)).rejects.toMatchObject({ code: 'http_400', retryable: false });
    expect(a.seen).toHaveLength(1);
    server!.close();
    const c = await api([{ status: 404 }]);
    expect((await lookup(new HttpEligibilityBackend({ ...base, url: c.url }))).status).toBe('not_found');
  });

  it('a network error (nothing listening) is retried, then a network error', async () => {
    const a = await api([{ status: 200, body: ok }]);
    server!.closeAllConnections();
    await new Promise((r) => server!.close(r));
    server = undefined;
    const b = new HttpEligibilityBackend({ ...base, url: a.url, retries: 1 });
    await expect(lookup(b)).rejects.toMatchObject({ code: 'network' });
    expect(b.attempts).toBe(2);
  });

  it('times out a slow API and retries, then reports the timeout', async () => {
    const a = await api([{ status: 200, body: ok, delayMs: 400 }]);
    const b = new HttpEligibilityBackend({ ...base, url: a.url, timeoutMs: 50, retries: 1 });
    await expect(lookup(b)).rejects.toMatchObject({ code: 'timeout' });
    expect(b.attempts).toBe(2);
  });

  it('a body that stalls past the timeout is a timeout (retried), not malformed JSON', async () => {
    const a = await serve((res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"status":'); // …and nothing more
    });
    const b = new HttpEligibilityBackend({ ...base, url: a.url, timeoutMs: 100, retries: 1 });
    await expect(lookup(b)).rejects.toMatchObject({ code: 'timeout' });
    expect(b.attempts).toBe(2);
  });

  it("the call's signal cancels a lookup, without retries", async () => {
    const ac = new AbortController();
    const a = await serve(() => ac.abort()); // the call ends while the API has the request and has not answered
    const b = new HttpEligibilityBackend({ ...base, url: a.url, timeoutMs: 2000 });
    await expect(lookup(b, ac.signal)).rejects.toMatchObject({ code: 'aborted' });
    expect(b.attempts).toBe(1);
    expect(a.seen).toHaveLength(1);
  });

  it('treats malformed JSON or a missing status as a bad response, without retrying', async () => {
    const a = await api([{ status: 200, body: '{not json' }]);
    const b = new HttpEligibilityBackend({ ...base, url: a.url });
    await expect(lookup(b)).rejects.toMatchObject({ code: 'bad_response' });
    expect(b.attempts).toBe(1);
  });

  it('the circuit breaker opens after repeated failures; after the cooldown exactly one trial goes through, concurrent lookups are refused meanwhile', async () => {
    let healthy = false;
    const a = await serve((res) => (healthy ? setTimeout(() => json(res, 200, ok), 100) : json(res, 500, '{}')));
    const b = new HttpEligibilityBackend({ ...base, url: a.url, retries: 0, breakerThreshold: 2, breakerCooldownMs: 100 });
    for (let i = 0; i < 2; i++) await expect(lookup(b)).rejects.toMatchObject({ code: 'http_500' });
    await expect(lookup(b)).rejects.toMatchObject({ code: 'breaker_open' });
    expect(a.seen).toHaveLength(2); // the open breaker sent nothing
    await new Promise((r) => setTimeout(r, 150));
    healthy = true;
    const trial = lookup(b);
    await expect(lookup(b)).rejects.toMatchObject({ code: 'breaker_open' });
    expect((await trial).status).toBe('eligible');
    expect(a.seen).toHaveLength(3);
    expect(b.breakerOpen).toBe(false);
    expect((await lookup(b)).status).toBe('eligible');
  });
});

describe('the registry reports every call to its observer', () => {
  const echo: Tool = { name: 'echo', description: 't', parameters: {}, run: async (args) => ({ ok: true, output: JSON.stringify(args), record: {} }) };
  const broken: Tool = { name: 'broken', description: 't', parameters: {}, run: async () => { throw new Error('bug'); } };

  it('ok, thrown errors, bad JSON and unknown names (under one label), each once', async () => {
    const seen: [string, ToolOutcomeKind][] = [];
    let t = 0;
    const reg = new ToolRegistry([echo, broken], { onOutcome: (name, outcome, ms) => void seen.push([name, outcome]), now: () => (t += 7) });
    expect((await reg.call('echo', '{"a":1}', ctx())).output).toBe('{"a":1}');
    expect(await reg.call('broken', '{}', ctx())).toMatchObject({ ok: false, output: JSON.stringify({ error: TOOL_TROUBLE }) });
    await reg.call('echo', '{bad', ctx());
    await reg.call('delete_everything', '{}', ctx());
    expect(seen).toEqual([['echo', 'ok'], ['broken', 'error'], ['echo', 'invalid_arguments'], [UNKNOWN_TOOL, 'error']]);
  });

  it('durations come from its clock; a throwing observer changes nothing; an aborted call is left to whoever aborted it', async () => {
    const ms: number[] = [];
    let t = 0;
    const reg = new ToolRegistry([echo], { onOutcome: (_n, _o, d) => void ms.push(d), now: () => (t += 40) });
    await reg.call('echo', '{}', ctx());
    expect(ms).toEqual([40]);
    const throwing = new ToolRegistry([echo], { onOutcome: () => { throw new Error('metrics down'); } });
    expect((await throwing.call('echo', '{}', ctx())).ok).toBe(true);
    const ac = new AbortController();
    ac.abort();
    await reg.call('echo', '{}', { callSid: 'CA1', signal: ac.signal });
    expect(ms).toHaveLength(1);
    reg.reportTimeout('echo', 300);
    expect(ms).toEqual([40, 300]);
  });

  it.each([
    [{ ok: true, output: '', record: { error: 'timeout' } }, 'ok'],
    [{ ok: false, output: '', record: { error: 'timeout' } }, 'timeout'],
    [{ ok: false, output: '', record: { error: 'invalid_arguments' } }, 'invalid_arguments'],
    [{ ok: false, output: '', record: { error: 'circuit_open' } }, 'circuit_open'],
    [{ ok: false, output: '', record: { error: 'breaker_open' } }, 'circuit_open'],
    [{ ok: false, output: '', record: { error: 'http_500' } }, 'error'],
    [{ ok: false, output: '', record: { error: 'bad_json', status: 200 } }, 'error'],
    [{ ok: false, output: '', record: null }, 'error'],
  ])('outcomeKind(%j) = %s', (outcome, kind) => {
    expect(outcomeKind(outcome)).toBe(kind);
  });
});

describe('CircuitBreaker', () => {
  it('closed → open after the threshold → one trial when the cool-down ends → closed on success', () => {
    let now = 0;
    const b = new CircuitBreaker({ threshold: 3, cooldownMs: 1000, now: () => now });
    for (let i = 0; i < 2; i++) (b.admit(), b.failure());
    expect(b.state).toBe('closed');
    b.success(); // a success resets the count
    for (let i = 0; i < 3; i++) (b.admit(), b.failure());
    expect(b.state).toBe('open');
    expect(b.admit()).toBe(false);
    now = 999;
    expect(b.admit()).toBe(false);
    now = 1000;
    expect(b.state).toBe('half_open');
    expect(b.admit()).toBe(true);
    expect(b.admit()).toBe(false); // one trial at a time
    b.release(); // the trial was cancelled: the slot is free again
    expect(b.admit()).toBe(true);
    b.failure();
    expect(b.state).toBe('open');
    now = 2000;
    expect(b.admit()).toBe(true);
    b.success();
    expect(b.state).toBe('closed');
    expect(b.admit() && b.admit()).toBe(true);
  });
});

describe("createAgentTools: an agent's tools from its file", () => {
  let server: Server | undefined;
  afterEach(async () => {
    if (!server) return;
    server.closeAllConnections();
    await new Promise((r) => server!.close(r));
    server = undefined;
  });

  it('the built-in check_eligibility beside HTTP tools, in the file order, reporting to onOutcome', async () => {
    const bodies: unknown[] = [];
    server = createServer((req, res) => {
      let raw = '';
      req.on('data', (d) => (raw += d));
      req.on('end', () => {
        bodies.push(JSON.parse(raw));
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ balance: 42 }));
      });
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/balance`;
    const http: HttpToolDef = {
      kind: 'http', name: 'account_balance', description: 'Balance', url, headers: { 'x-key': { env: 'BAL_KEY' } },
      parameters: { type: 'object', properties: { account: { type: 'string' } }, required: ['account'] },
      timeoutMs: 2000, idempotent: true, retries: 1, filler: 'Say you are fetching the balance.', recordFields: ['balance'], sendCallerNumber: false,
    };
    const seen: [string, ToolOutcomeKind][] = [];
    const reg = createAgentTools([{ kind: 'builtin', name: 'check_eligibility' }, http], {
      eligibility: { apiUrl: undefined, apiKey: undefined, timeoutMs: 3000, retries: 0 },
      env: { BAL_KEY: 'k' },
      log: silentLogger,
      onOutcome: (name, outcome) => void seen.push([name, outcome]),
    });
    expect(reg.specs().map((x) => x.name)).toEqual(['check_eligibility', 'account_balance']);
    expect(reg.get('account_balance')?.filler).toBe('Say you are fetching the balance.');
    expect(reg.get('check_eligibility')?.filler).toBeUndefined();
    const bal = await reg.call('account_balance', '{"account":"A-1"}', ctx());
    expect(bal).toMatchObject({ ok: true, output: '{"balance":42}', record: { status: 200, attempts: 1, result: { balance: 42 } } });
    expect(bodies).toEqual([{ call_sid: 'CA1', arguments: { account: 'A-1' } }]);
    const elig = await reg.call('check_eligibility', JSON.stringify({ member_id: 'MB123456', date_of_birth: '1980-03-05' }), ctx());
    expect(JSON.parse(elig.output).status).toBe('eligible');
    await reg.call('account_balance', '{}', ctx());
    expect(seen).toEqual([['account_balance', 'ok'], ['check_eligibility', 'ok'], ['account_balance', 'invalid_arguments']]);
  });

  it('an HTTP tool whose schema does not compile stops the build (a start-up problem)', () => {
    const bad = { kind: 'http', name: 't', description: 'd', url: 'http://127.0.0.1:1/', headers: {}, parameters: { type: 'objekt' },
      timeoutMs: 1000, idempotent: false, retries: 0, filler: undefined, recordFields: [], sendCallerNumber: false } satisfies HttpToolDef;
    expect(() => createAgentTools([bad], { eligibility: { apiUrl: undefined, apiKey: undefined, timeoutMs: 1, retries: 0 }, env: {}, log: silentLogger })).toThrow(/tool t/);
  });
});
