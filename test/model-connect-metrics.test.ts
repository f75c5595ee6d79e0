/**
 * A call's model session connect, as the relay reports it: time to a ready
 * session in `callbridge_model_connect_seconds`, a connect that failed for
 * good in `callbridge_model_connect_failures_total` (the dashboard's
 * "connect failures" panel), and both in the relay's own histogram
 * (Relay.modelConnect, which the calls-per-core bench reads). The real relay
 * and edge, the real OpenAI provider client against the model stand-in, a
 * signed webhook on loopback (the relay dials the model at the webhook).
 */
import { describe, expect, it } from 'vitest';
import { Relay } from '../src/call/relay.js';
import { linkedProvider } from '../src/call/model-link.js';
import { Transcoder } from '../src/dsp/index.js';
import { silentLogger } from '../src/log.js';
import { startServer } from '../src/server/app.js';
import { createMetrics, type Metrics } from '../src/server/metrics.js';
import { startModelStandIn, type ModelStandIn } from '../src/sim/model-server.js';
import { standInProvider } from './helpers/stand-in-provider.js';
import { edgeSettings, relaySettings } from './helpers/settings.js';
import { postIncoming } from './helpers/webhooks.js';
import { until } from './helpers/until.js';
import { stopRelaysAfterEach } from './helpers/relay-teardown.js';

const TOKEN = 'connect-metrics-auth-token';
const PUBLIC = 'https://connect.example.test';
const sid = (i: number) => `CA${i.toString(16).padStart(32, '0')}`;

const running = stopRelaysAfterEach();

async function start(model: ModelStandIn) {
  const metrics = createMetrics({ processMetrics: false });
  const relay = new Relay({
    settings: relaySettings({ signed: true }),
    log: silentLogger,
    provider: linkedProvider(standInProvider(model.baseUrl, 'pcm24k'), { log: silentLogger }),
    openTranscoder: () => Transcoder.open(),
    metrics: metrics.call,
  });
  const server = await startServer({ settings: edgeSettings({ port: 0, host: '127.0.0.1', publicUrl: PUBLIC, twilioAuthToken: TOKEN }), app: relay, log: silentLogger, metrics, edge: 'node' });
  running.push({ server, relay, model });
  return { base: `http://127.0.0.1:${server.port}`, relay, metrics };
}

const sample = async (metrics: Metrics, series: string): Promise<number | undefined> => {
  const line = (await metrics.registry.metrics()).split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

describe('model session connects in /metrics', () => {
  it('a session that connects: its time in callbridge_model_connect_seconds, no failure', async () => {
    const model = await startModelStandIn({ responseDelayMs: 50 });
    const t = await start(model);
    expect(await sample(t.metrics, 'callbridge_model_connect_failures_total')).toBe(0);
    const res = await postIncoming(t.base, { publicUrl: PUBLIC, authToken: TOKEN }, sid(1));
    expect(res.status).toBe(200);
    await until(() => t.relay.modelConnect.count === 1, { what: 'the pre-warmed session connected' });
    expect(await sample(t.metrics, 'callbridge_model_connect_seconds_count')).toBe(1);
    const seconds = (await sample(t.metrics, 'callbridge_model_connect_seconds_sum'))!;
    expect(seconds).toBeGreaterThan(0);
    expect(seconds).toBeCloseTo(t.relay.modelConnect.sumMs / 1000, 6);
    expect(await sample(t.metrics, 'callbridge_model_connect_failures_total')).toBe(0);
  });

  it('a session the model refuses for good (401): counted as a connect failure, not as a connect time', async () => {
    const model = await startModelStandIn();
    model.refuseAll(true, 401);
    const t = await start(model);
    const res = await postIncoming(t.base, { publicUrl: PUBLIC, authToken: TOKEN }, sid(2));
    expect(res.status).toBe(200);
    await until(() => t.relay.modelConnect.count === 1, { what: 'the refused connect answered' });
    expect(model.refused.length).toBeGreaterThan(0);
    expect(await sample(t.metrics, 'callbridge_model_connect_failures_total')).toBe(1);
    expect(await sample(t.metrics, 'callbridge_model_connect_seconds_count')).toBe(0);
  });
});
