/**
 * The composition root: builds one callbridge process from a Config —
 * the model provider, tools, call store, relay and server — and tears it
 * down again. `callbridge serve`, `callbridge demo` and the integration
 * tests all start the product through here, so they test the same wiring.
 */
import { readFileSync } from 'node:fs';
import { createAdminHandler } from './admin/calls-api.js';
import type { Config } from './config.js';
import { Relay } from './call/relay.js';
import { createStoreRecorder } from './store/recorder.js';
import { Transcoder } from './dsp/index.js';
import type { Logger } from './log.js';
import { OpenAIRealtimeProvider, ReachabilityTracker } from './realtime/openai-provider.js';
import { linkedProvider } from './call/model-link.js';
import { createMetrics } from './server/metrics.js';
import { startServer, type EdgeChoice, type RunningServer } from './server/app.js';
import { openCallStore } from './store/open.js';
import type { CallStore } from './store/types.js';
import { createDefaultTools } from './tools/eligibility.js';
import type { ModelProvider } from './call/voice-model.js';

export const VERSION: string = (() => {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version as string;
  }
})();

export interface Callbridge {
  port: number;
  /** Which edge serves, one line: e.g. "uWebSockets.js v20.51 native (@based/uws)" or "node:http + ws (…)". */
  edge: string;
  relay: Relay;
  /** SQLite (one process) or PostgreSQL (DATABASE_URL, any number of instances). */
  store: CallStore;
  /** Which store: `sqlite` or `postgres`. */
  storeKind: 'sqlite' | 'postgres';
  server: RunningServer;
  close(): Promise<void>;
}

export interface StartOptions {
  /** Replace the model provider (tests); default: OpenAI Realtime from config. */
  provider?: ModelProvider;
  /** Force an edge (tests run each edge); default: EDGE from `env`, else the best that loads. */
  edge?: EdgeChoice;
  /** Where EDGE and CALLBRIDGE_UWS_MODULE are read (default process.env). */
  env?: NodeJS.ProcessEnv;
}

export async function startCallbridge(config: Config, log: Logger, opts: StartOptions = {}): Promise<Callbridge> {
  const opened = await openCallStore({
    databaseUrl: config.databaseUrl,
    dbPath: config.dbPath,
    transcriptKey: config.transcriptKey,
    prices: config.prices,
    log,
    instanceId: config.instanceId,
    leaseMs: config.instanceLeaseMs,
  });
  const store: CallStore = opened.store;
  const interrupted = await store.markInterrupted();
  if (interrupted > 0) log.warn({ count: interrupted }, 'calls left in progress by a previous process (or a dead instance) marked interrupted');

  const reachability = new ReachabilityTracker();
  const realtime =
    opts.provider ??
    new OpenAIRealtimeProvider({
      url: config.openai.realtimeUrl,
      model: config.openai.model,
      apiKey: config.openai.apiKey ?? '',
      ca: config.openai.caFile ? readFileSync(config.openai.caFile) : undefined,
      connectTimeoutMs: config.openai.connectTimeoutMs,
      format: config.audioMode === 'transcode' ? 'pcm24k' : 'ulaw8k',
      transcriptionModel: config.openai.transcriptionModel,
      vad: config.openai.vad,
      reasoningEffort: config.openai.reasoningEffort,
      log,
      reachability,
    });
  // Every call's model session is a ModelLink: a lost connection is redialled and the conversation replayed.
  const provider = linkedProvider(realtime, {
    log,
    backoffBaseMs: config.reconnect.backoffBaseMs,
    backoffMaxMs: config.reconnect.backoffMaxMs,
    reconnectBudgetMs: config.reconnect.budgetMs,
    openBudgetMs: config.openai.connectTimeoutMs,
    gapAudioKeepMs: config.reconnect.gapAudioKeepMs,
  });
  const metrics = createMetrics();
  const tools = createDefaultTools(config, log);
  const relay = new Relay({
    config,
    log,
    provider,
    tools,
    openTranscoder: () => Transcoder.open(),
    recorderFor: (call) => createStoreRecorder(store, call.callSid, { From: call.from, To: call.to }),
    onStatus: (callback) => store.recordStatus(callback),
    modelHealth: () => reachability.snapshot(),
    metrics: metrics.call,
    version: VERSION,
  });
  metrics.setRelayLatencySource(() => relay.relayLatency());
  // The admin reader goes to the edge directly: reading records is not the call layer's business.
  const admin = createAdminHandler(store, config.adminToken);
  let server: RunningServer;
  try {
    server = await startServer({ config, app: relay, admin, log, metrics, rateLimit: config.rateLimit, edge: opts.edge, env: opts.env });
  } catch (err) {
    relay.shutdown();
    await store.close();
    throw err;
  }
  log.info({ port: server.port, edge: server.edge.description, audioMode: config.audioMode, model: config.openai.model }, 'callbridge listening');

  let closed = false;
  return {
    port: server.port,
    edge: server.edge.description,
    relay,
    store,
    storeKind: opened.kind,
    server,
    async close() {
      if (closed) return;
      closed = true;
      relay.shutdown();
      await server.close();
      await store.close();
    },
  };
}
