/**
 * /voice/health after a model outage (issue 22 item 1): the model's state is
 * reported in the body and never takes the instance out of rotation (200
 * unless draining); once a connect fails, background probes find the model
 * back without a call being placed. The unit (ReachabilityTracker's TTL,
 * ReachabilityProber's schedule) with an injected clock; the whole on the
 * real server, the real OpenAI provider client and the model stand-in going
 * away and coming back on the same port.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, onTestFailed } from 'vitest';
import type { HealthReport } from '../src/call/ports.js';
import { loadConfig } from '../src/config.js';
import { silentLogger } from '../src/log.js';
import { startCallbridge, type Callbridge } from '../src/main.js';
import { ReachabilityProber, ReachabilityTracker, type ProbeTimers } from '../src/call/reachability.js';
import { startModelStandIn, type ModelStandIn } from '../src/sim/model-server.js';
import { postIncoming } from './helpers/webhooks.js';

/** Timers on a clock the test moves. */
function manualTimers() {
  let now = 0;
  const due = new Map<number, { at: number; fn: () => void }>();
  let next = 0;
  const timers: ProbeTimers = {
    set: (fn, ms) => {
      due.set(++next, { at: now + ms, fn });
      return next;
    },
    clear: (h) => void due.delete(h as number),
  };
  return {
    timers,
    now: () => now,
    pending: () => [...due.values()].map((d) => d.at - now),
    /** Move the clock by `ms`, running what falls due in order. */
    advance(ms: number) {
      const end = now + ms;
      for (;;) {
        const first = [...due.entries()].filter(([, d]) => d.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
        if (!first) break;
        due.delete(first[0]);
        now = first[1].at;
        first[1].fn();
      }
      now = end;
    },
  };
}

const flush = () => new Promise((r) => setImmediate(r));

describe('ReachabilityTracker', () => {
  it('a failure counts as the state for failureTtlMs, then reachable is null (stale); a success clears it', () => {
    let t = 1_000_000;
    const tracker = new ReachabilityTracker(() => t, 60_000);
    expect(tracker.snapshot()).toMatchObject({ reachable: null, checkedAt: null, stale: false });
    tracker.fail(new Error('ECONNREFUSED'));
    expect(tracker.snapshot()).toMatchObject({ reachable: false, stale: false, lastError: 'ECONNREFUSED', checkedAt: new Date(t).toISOString() });
    expect(tracker.inDoubt).toBe(true);
    t += 60_001;
    expect(tracker.snapshot()).toMatchObject({ reachable: null, stale: true, lastError: 'ECONNREFUSED', consecutiveFailures: 1 });
    expect(tracker.inDoubt).toBe(true); // stale is not the same as known good: probing goes on
    tracker.ok();
    expect(tracker.snapshot()).toMatchObject({ reachable: true, stale: false, consecutiveFailures: 0, checkedAt: new Date(t).toISOString() });
    expect(tracker.inDoubt).toBe(false);
  });
});

describe('ReachabilityProber', () => {
  function setup(intervalMs = 5000) {
    const clock = manualTimers();
    const tracker = new ReachabilityTracker(clock.now);
    const probes: { signal: AbortSignal; settle: (ok: boolean) => void }[] = [];
    const prober = new ReachabilityProber({
      tracker,
      intervalMs,
      timers: clock.timers,
      // Like the provider's connect: the outcome goes to the tracker.
      probe: (signal) =>
        new Promise<void>((resolve, reject) => {
          probes.push({
            signal,
            settle: (ok) => {
              if (ok) {
                tracker.ok();
                resolve();
              } else {
                const err = new Error('refused');
                tracker.fail(err);
                reject(err);
              }
            },
          });
        }),
    });
    return { clock, tracker, prober, probes };
  }

  it('idle while nothing failed; after a failure probes every interval (one at a time) until one succeeds', async () => {
    const { clock, tracker, prober, probes } = setup();
    prober.start();
    clock.advance(60_000);
    expect(probes).toHaveLength(0);
    expect(prober.probing).toBe(false);

    tracker.fail(new Error('a call could not connect'));
    expect(prober.probing).toBe(true);
    expect(clock.pending()).toEqual([5000]);
    clock.advance(4999);
    expect(probes).toHaveLength(0);
    clock.advance(1);
    expect(probes).toHaveLength(1);
    clock.advance(30_000); // a slow probe: no second one meanwhile
    expect(probes).toHaveLength(1);
    probes[0]!.settle(false);
    await flush();
    expect(clock.pending()).toEqual([5000]); // the next one an interval after this one ended
    clock.advance(5000);
    expect(probes).toHaveLength(2);
    probes[1]!.settle(true);
    await flush();
    expect(prober.probing).toBe(false);
    expect(clock.pending()).toEqual([]);
    clock.advance(60_000);
    expect(probes).toHaveLength(2);
    expect(tracker.snapshot().reachable).toBe(true);
  });

  it('a call connecting again cancels the scheduled probe; stop() clears the timer and aborts a probe in flight', async () => {
    const { clock, tracker, prober, probes } = setup();
    prober.start();
    tracker.fail(new Error('x'));
    tracker.ok(); // a call got through before the probe was due
    expect(clock.pending()).toEqual([]);
    expect(prober.probing).toBe(false);

    tracker.fail(new Error('y'));
    clock.advance(5000);
    expect(probes).toHaveLength(1);
    prober.stop();
    expect(probes[0]!.signal.aborted).toBe(true);
    expect(prober.probing).toBe(false);
    tracker.fail(new Error('z')); // no longer watched
    expect(clock.pending()).toEqual([]);
  });

  it('a failure before start is probed once started; interval 0 never probes', () => {
    const a = setup();
    a.tracker.fail(new Error('x'));
    a.prober.start();
    expect(a.clock.pending()).toEqual([5000]);
    a.prober.stop();

    const b = setup(0);
    b.prober.start();
    b.tracker.fail(new Error('x'));
    expect(b.clock.pending()).toEqual([]);
    expect(b.prober.probing).toBe(false);
  });
});

describe('after a model outage, on the real server', () => {
  const dir = mkdtempSync(join(tmpdir(), 'callbridge-health-'));
  const open: { app?: Callbridge; models: ModelStandIn[] }[] = [];
  afterEach(async () => {
    for (const o of open.splice(0)) {
      await o.app?.close();
      for (const m of o.models) await m.close();
    }
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const TOKEN = 'health-test-auth-token';
  const ADMIN = 'health-test-admin-token';
  const PUBLIC = 'https://health.example.test';
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('a pre-warm fails while the model is away: health stays 200 and says unreachable; the model back on its port → reachable again by a probe, no call placed', async () => {
    const first = await startModelStandIn();
    const o: (typeof open)[number] = { models: [first] };
    open.push(o);
    const config = loadConfig({
      PORT: '0',
      HOST: '127.0.0.1',
      OPENAI_BASE_URL: first.baseUrl,
      OPENAI_API_KEY: 'test-key',
      CALLBRIDGE_DB: join(dir, 'health.db'),
      PUBLIC_URL: PUBLIC,
      TWILIO_AUTH_TOKEN: TOKEN,
      MODEL_CONNECT_TIMEOUT_MS: '300', // the pre-warm gives up after this
      MODEL_BACKOFF_BASE_MS: '50',
      MODEL_RECONNECT_BUDGET_MS: '300',
      MODEL_PROBE_INTERVAL_MS: '400',
      ADMIN_TOKEN: ADMIN, // error text is shown to the admin only
    });
    const app = await startCallbridge(config, silentLogger);
    o.app = app;
    const base = `http://127.0.0.1:${app.port}`;
    const statuses: number[] = [];
    const health = async (): Promise<HealthReport> => {
      const res = await fetch(`${base}/voice/health`, { headers: { authorization: `Bearer ${ADMIN}` } });
      statuses.push(res.status);
      return (await res.json()) as HealthReport;
    };
    let polling = true;
    const poller = (async () => {
      while (polling) {
        await health();
        await sleep(50);
      }
    })();
    // A failed assertion must not leave it polling the server that afterEach closes.
    onTestFailed(() => {
      polling = false;
      poller.catch(() => {});
    });

    expect((await health()).model.reachable).toBe(null); // nothing tried yet
    const port = first.port;
    await first.close(); // the model goes away: connects are refused
    o.models = [];
    const webhook = await postIncoming(base, { publicUrl: PUBLIC, authToken: TOKEN }, `CA${'a'.repeat(32)}`);
    expect(webhook.status).toBe(200); // the call is answered; its pre-warm fails
    let h = await health();
    for (let i = 0; i < 200 && h.model.reachable !== false; i++) {
      await sleep(20);
      h = await health();
    }
    expect(h).toMatchObject({ status: 'ok', model: { reachable: false, probing: true, stale: false } });
    expect(h.model.lastError).toMatch(/ECONNREFUSED/);
    await sleep(1000); // the pre-warm has given up; only probes try now (and fail)
    expect((await health()).model).toMatchObject({ reachable: false, probing: true });

    const back = await startModelStandIn({ port }); // the model is back, same address
    o.models = [back];
    for (let i = 0; i < 500 && (await health()).model.reachable !== true; i++) await sleep(20);
    polling = false;
    await poller;
    h = await health();
    expect(h).toMatchObject({ status: 'ok', activeCalls: 0, model: { reachable: true, probing: false, lastError: expect.stringMatching(/ECONNREFUSED/) } });
    // A probe did it, not a call: every session the model saw was opened and closed at once.
    expect(back.sessions.length).toBeGreaterThanOrEqual(1);
    for (let i = 0; i < 100 && !back.sessions.every((s) => s.closed); i++) await sleep(20);
    expect(back.sessions.every((s) => s.closed)).toBe(true);
    expect(new Set(statuses)).toEqual(new Set([200])); // in rotation throughout
    expect(statuses.length).toBeGreaterThan(10);
  }, 60_000);
});
