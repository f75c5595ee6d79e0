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
import { createStoreRecorder } from './call/store-recorder.js';
import { Transcoder } from './dsp/index.js';
import type { Logger } from './log.js';
import { OpenAIRealtimeProvider, ReachabilityTracker } from './realtime/openai-provider.js';
import { linkedProvider } from './call/model-link.js';
import { createMetrics } from './server/metrics.js';
import { startServer, type RunningServer } from './server/app.js';
import { SqliteCallStore } from './store/sqlite.js';
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
  relay: Relay;
  store: SqliteCallStore;
  server: RunningServer;
  close(): Promise<void>;
}

export interface StartOptions {
  /** Replace the model provider (tests); default: OpenAI Realtime from config. */
  provider?: ModelProvider;
}

export async function startCallbridge(config: Config, log: Logger, opts: StartOptions = {}): Promise<Callbridge> {
  const store = new SqliteCallStore({ path: config.dbPath, transcriptKey: config.transcriptKey, prices: config.prices, log });
  const interrupted = store.markInterrupted();
  if (interrupted > 0) log.warn({ count: interrupted }, 'calls left in progress by a previous process marked interrupted');

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
    recorderFor: (callSid, form) => createStoreRecorder(store, callSid, form),
    onStatus: (form) => store.recordStatus(form),
    admin: createAdminHandler(store, config.adminToken),
    modelHealth: () => reachability.snapshot(),
    metrics: metrics.call,
    version: VERSION,
  });
  metrics.setRelayLatencySource(() => relay.relayLatency());
  const server = await startServer({ config, app: relay, log, metrics, rateLimit: config.rateLimit });
  log.info({ port: server.port, audioMode: config.audioMode, model: config.openai.model }, 'callbridge listening');

  let closed = false;
  return {
    port: server.port,
    relay,
    store,
    server,
    async close() {
      if (closed) return;
      closed = true;
      relay.shutdown();
      await server.close();
      store.close();
    },
  };
}
