/**
 * The composition root: builds one callbridge process from a Config —
 * the model provider, tools, call store, relay and server — and tears it
 * down again. `callbridge serve`, `callbridge demo` and the integration
 * tests all start the product through here, so they test the same wiring.
 *
 * Signed by default: startCallbridge refuses a Config without
 * TWILIO_AUTH_TOKEN unless ALLOW_UNSIGNED=true (a ConfigError, before
 * anything opens). The check lives here, not in loadConfig, so that every
 * process that serves calls (serve, demo, bench, end-to-end tests) passes it,
 * while loadConfig stays a plain parser that unit tests call with `{}`. The
 * recorded prompts' files are read here for the same reason (loadPromptAudio),
 * their problems listed with the signing one, before anything opens.
 *
 * Settings: this file is the one below the CLI that reads a Config; it fills
 * in each module's own settings type (EdgeSettings, RelaySettings,
 * EligibilitySettings) with the `…FromConfig` functions.
 *
 * Model health: the realtime provider records every connect in a
 * ReachabilityTracker (failures count for MODEL_FAILURE_TTL_MS); once one
 * fails, a ReachabilityProber re-tries the provider's connect every
 * MODEL_PROBE_INTERVAL_MS until one succeeds, so /voice/health reports the
 * model back without waiting for a call. Stopped on close.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { createAdminHandler } from './admin/calls-api.js';
import { createRecordingApi } from './admin/recording-api.js';
import { consoleWebRoot } from './console/static.js';
import { createConsole } from './console/routes.js';
import { ConfigError, type Config } from './config.js';
import { loadPrompt } from './call/prompts.js';
import { Relay, type RelaySettings } from './call/relay.js';
import { createStoreRecorder, streamRecorder } from './store/recorder.js';
import { Transcoder } from './dsp/index.js';
import type { Logger } from './log.js';
import { OpenAIRealtimeProvider } from './realtime/openai-provider.js';
import { LiveProvider } from './live/live-provider.js';
import { PipelineProvider } from './pipeline/pipeline-provider.js';
import { DeepgramStt } from './pipeline/stt-deepgram.js';
import { OpenAiChatLlm } from './pipeline/llm-openai.js';
import { ElevenLabsTts } from './pipeline/tts-elevenlabs.js';
import { OpenAiTts } from './pipeline/tts-openai.js';
import type { TextToSpeech } from './pipeline/tts.js';
import { ReachabilityProber, ReachabilityTracker } from './call/reachability.js';
import { linkedProvider } from './call/model-link.js';
import { createMetrics } from './server/metrics.js';
import { startServer, type EdgeChoice, type EdgeSettings, type RunningServer } from './server/app.js';
import { openCallStore } from './store/open.js';
import type { CallStore } from './store/types.js';
import type { EligibilitySettings } from './tools/eligibility.js';
import type { ModelProvider } from './call/voice-model.js';
import { controlToolSpecs, type CallAgent } from './call/agent.js';
import { transcriptToConversation } from './call/history.js';
import { OutboundCalls } from './call/outbound-calls.js';
import { createAgentTools } from './tools/build.js';
import { createTwilioRest } from './twilio/rest.js';
import { openRecordingStorage } from './recording/open-storage.js';
import { createRecordings } from './recording/service.js';
import { keyring } from './store/crypto.js';
import { createRetention } from './store/retention.js';
import type { StoreHealth } from './call/ports.js';

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
  /**
   * Drain: health says `draining` at once; new calls are still taken for
   * DRAIN_GRACE_MS, then refused; calls in progress go on up to
   * DRAIN_TIMEOUT_MS and then hear the goodbye; then `close()` (records
   * flushed). A second call returns the same promise.
   */
  drain(): Promise<void>;
  /** End every call at once (records written), stop the server, close the store. */
  close(): Promise<void>;
}

/** The refusal to serve unsigned without ALLOW_UNSIGNED=true; null when the Config may serve. */
export function signingProblem(config: Pick<Config, 'twilioAuthToken' | 'allowUnsigned'>): string | null {
  if (config.twilioAuthToken || config.allowUnsigned) return null;
  return 'TWILIO_AUTH_TOKEN: not set, so Twilio signatures could not be checked; set it (Twilio console → Account → Auth Token), or set ALLOW_UNSIGNED=true to accept unsigned requests (local testing only)';
}

/** The OpenAI Realtime provider as the settings describe it (also what the fuzzer wraps). */
export function openAIProviderFromConfig(config: Config, log: Logger, reachability: ReachabilityTracker): OpenAIRealtimeProvider {
  return new OpenAIRealtimeProvider({
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
}

/** The GPT-Live provider as the settings describe it (PROVIDER=live). */
export function liveProviderFromConfig(config: Config, log: Logger, reachability: ReachabilityTracker): LiveProvider {
  return new LiveProvider({
    url: config.openai.liveUrl,
    model: config.openai.model,
    backendModel: config.openai.liveBackendModel,
    apiKey: config.openai.apiKey ?? '',
    ca: config.openai.caFile ? readFileSync(config.openai.caFile) : undefined,
    connectTimeoutMs: config.openai.connectTimeoutMs,
    // Passthrough: the phone's µ-law straight through (audio/pcmu); transcode: PCM16 24 kHz through the audio core.
    format: config.audioMode === 'transcode' ? 'pcm24k' : 'ulaw8k',
    log,
    reachability,
  });
}

/**
 * The STT → LLM → TTS pipeline as the settings describe it (PROVIDER=pipeline): Deepgram, the agent's model on an
 * OpenAI-compatible Chat Completions endpoint, ElevenLabs or OpenAI TTS, and the local VAD. Its audio is µ-law 8 kHz
 * end to end (config.ts runs it in passthrough): the STT takes the phone's audio as it is, and the TTS output is made
 * µ-law in the audio core.
 */
export function pipelineProviderFromConfig(config: Config, log: Logger, reachability: ReachabilityTracker): PipelineProvider {
  const p = config.pipeline;
  const ca = config.openai.caFile ? readFileSync(config.openai.caFile) : undefined;
  const tts: TextToSpeech =
    p.tts.vendor === 'openai'
      ? new OpenAiTts({ apiKey: p.tts.apiKey ?? '', baseURL: p.tts.url, model: p.tts.model, voice: p.tts.voiceId })
      : new ElevenLabsTts({ apiKey: p.tts.apiKey ?? '', baseUrl: p.tts.url, modelId: p.tts.model, voiceId: p.tts.voiceId, ...(ca ? { ca } : {}) });
  return new PipelineProvider({
    stt: new DeepgramStt({
      apiKey: p.stt.apiKey ?? '',
      url: p.stt.url,
      model: p.stt.model,
      endpointingMs: p.stt.endpointingMs,
      connectTimeoutMs: config.openai.connectTimeoutMs,
      ...(ca ? { ca } : {}),
      log: (fields, msg) => log.debug(fields, msg),
    }),
    llm: new OpenAiChatLlm({ baseUrl: p.llm.baseUrl, apiKey: p.llm.apiKey ?? '', model: config.openai.model }),
    tts,
    ttsFormat: p.tts.format,
    ...(p.vad === 'silero' ? { openVad: async (o) => (await import('./pipeline/vad-silero.js')).openSileroVad(o) } : {}),
    reachability,
  });
}

/** The voice-model provider PROVIDER names (call/voice-model.ts): every call of this process uses it. */
export function providerFromConfig(config: Config, log: Logger, reachability: ReachabilityTracker): ModelProvider {
  switch (config.openai.provider) {
    case 'live':
      return liveProviderFromConfig(config, log, reachability);
    case 'pipeline':
      return pipelineProviderFromConfig(config, log, reachability);
    case 'realtime':
      return openAIProviderFromConfig(config, log, reachability);
  }
}

/*
 * The settings of each module below, from the Config. Only this file (and
 * what stands above it: the CLI, the fuzzer, the bench) reads a Config; the
 * modules take their own small settings types.
 */

/** The edge's settings (server/core.ts EdgeSettings). */
export function edgeSettingsFromConfig(config: Config): EdgeSettings {
  return {
    host: config.host,
    port: config.port,
    publicUrl: config.publicUrl,
    twilioAuthToken: config.twilioAuthToken,
    serveMetrics: config.metrics,
    adminToken: config.adminToken,
    streamUrlTemplate: config.streamUrlTemplate,
    instanceId: config.instanceId,
    trustProxy: config.trustProxy,
    rateLimit: config.rateLimit,
    unsignedLimit: config.unsignedLimit,
    callerLimit: config.callerLimit,
    signedLimit: config.signedLimit,
    maxStreamsAwaitingStart: config.maxStreamsAwaitingStart,
  };
}

/** The relay's settings (call/relay.ts RelaySettings), with the recorded prompts `loadPromptAudio` read. */
export function relaySettingsFromConfig(config: Config, prompts: RelaySettings['prompts']): RelaySettings {
  return {
    maxConcurrentCalls: config.maxConcurrentCalls,
    maxPendingCalls: config.maxPendingCalls,
    prewarmTtlMs: config.prewarmTtlMs,
    startTimeoutMs: config.startTimeoutMs,
    admissionSecret: config.admissionSecret,
    signed: config.twilioAuthToken !== undefined,
    instructions: config.openai.instructions,
    voice: config.openai.voice,
    audioMode: config.audioMode,
    model: config.openai.model,
    playoutLeadMs: config.playoutLeadMs,
    playoutLeadMaxMs: config.playoutLeadMaxMs,
    outboundChunkMs: config.outboundChunkMs,
    inboundBatchMs: config.inboundBatchMs,
    vadSilenceMs: config.openai.vad.silenceDurationMs,
    silenceTimeoutMs: config.silenceTimeoutMs,
    maxCallMs: config.maxCallMs,
    greeting: config.openai.greeting,
    responseRetryMs: config.responseRetryMs,
    prompts,
  };
}

/** The eligibility tool's settings (tools/eligibility.ts EligibilitySettings). */
export function eligibilitySettingsFromConfig(config: Config): EligibilitySettings {
  const e = config.eligibility;
  return { apiUrl: e.apiUrl, apiKey: e.apiKey, timeoutMs: e.timeoutMs, retries: e.retries };
}

/**
 * Read the four recorded prompts (REPEAT_AUDIO, HOLD_AUDIO, APOLOGY_AUDIO,
 * GOODBYE_AUDIO, or the committed ones): the µ-law audio, or every problem,
 * one per file, named by its variable.
 */
export function loadPromptAudio(files: Config['promptFiles']): { ok: true; prompts: RelaySettings['prompts'] } | { ok: false; problems: string[] } {
  const prompts: RelaySettings['prompts'] = { repeat: new Uint8Array(0), hold: new Uint8Array(0), apology: new Uint8Array(0), goodbye: new Uint8Array(0) };
  const problems: string[] = [];
  for (const name of ['repeat', 'hold', 'apology', 'goodbye'] as const) {
    const r = loadPrompt(files[name]);
    if (r.ok) prompts[name] = r.prompt.ulaw;
    else problems.push(`${name.toUpperCase()}_AUDIO: ${r.error}`);
  }
  return problems.length > 0 ? { ok: false, problems } : { ok: true, prompts };
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
  // Both before anything opens, every problem at once.
  const unsigned = signingProblem(config);
  const prompts = loadPromptAudio(config.promptFiles);
  const problems = [...(prompts.ok ? [] : prompts.problems), ...(unsigned ? [unsigned] : [])];
  if (!prompts.ok || unsigned) throw new ConfigError(problems);
  const opened = await openCallStore({
    databaseUrl: config.databaseUrl,
    dbPath: config.dbPath,
    transcriptKey: config.transcriptKey,
    transcriptKeysOld: config.transcriptKeysOld,
    prices: config.prices,
    log,
    instanceId: config.instanceId,
    leaseMs: config.instanceLeaseMs,
  });
  const store: CallStore = opened.store;
  const interrupted = await store.markInterrupted();
  if (interrupted > 0) log.warn({ count: interrupted }, 'calls left in progress by a previous process (or a dead instance) marked interrupted');

  const reachability = new ReachabilityTracker(Date.now, config.modelProbe.failureTtlMs);
  const realtime = opts.provider ?? providerFromConfig(config, log, reachability);
  // Every call's model session is a ModelLink: a lost connection is redialled and the conversation replayed.
  const provider = linkedProvider(realtime, {
    log,
    backoffBaseMs: config.reconnect.backoffBaseMs,
    backoffMaxMs: config.reconnect.backoffMaxMs,
    reconnectBudgetMs: config.reconnect.budgetMs,
    openBudgetMs: config.openai.connectTimeoutMs,
    gapAudioKeepMs: config.reconnect.gapAudioKeepMs,
  });
  // One process serves one model (config.ts), so every call is priced at config.prices, as its record is.
  const metrics = createMetrics({ prices: () => config.prices });
  const storeHealth = (): StoreHealth => {
    if (opened.kind === 'sqlite') return { kind: 'sqlite' };
    const s = opened.store.stats();
    return { kind: 'postgres', reachable: s.reachable, queued: s.queued, dropped: s.dropped, lastError: s.lastError };
  };
  metrics.setStoreSource(storeHealth);
  let drainStartedAt: number | null = null;
  metrics.setDrainSource(() => drainStartedAt);
  // Recordings: made only with RECORDING_KEY; the storage is opened either way (retention and DELETE remove old ones).
  const recordingStorage = openRecordingStorage({ dir: config.recording.dir, s3Url: config.recording.s3Url }, opts.env ?? process.env);
  const recordingKeys = keyring(config.recording.key, config.recording.keysOld);
  const recordings = config.recording.key ? createRecordings({ storage: recordingStorage, keys: recordingKeys, log }) : undefined;
  // One CallAgent per agent file (config.agents, the first the default): its tools built once, reporting per-tool metrics.
  const agents = new Map<string, CallAgent>(
    config.agents.map((a) => [
      a.name,
      {
        name: a.name,
        instructions: a.instructions,
        greeting: a.greeting,
        voice: a.voice,
        tools: createAgentTools(a.tools, { eligibility: eligibilitySettingsFromConfig(config), env: opts.env ?? process.env, log, onOutcome: metrics.toolOutcome }),
        policies: a.policies,
      },
    ]),
  );
  metrics.seedTools(config.agents.flatMap((a) => a.tools.map((t) => t.name)));
  const defaultAgent = agents.get(config.agents[0]!.name)!;
  // A probe opens a session as the default agent's calls do.
  const sessionOptions = () => ({
    instructions: defaultAgent.instructions,
    voice: defaultAgent.voice,
    tools: [...defaultAgent.tools.specs(), ...controlToolSpecs(defaultAgent.policies)],
  });
  // A probe is a call's connect (TCP, TLS, upgrade with the key, session set-up), closed once open; the provider records it.
  const prober = new ReachabilityProber({
    tracker: reachability,
    intervalMs: config.modelProbe.intervalMs,
    log,
    probe: (signal) => realtime.connect(sessionOptions(), signal).then((m) => m.close()),
  });
  // The name in call rows, leases, claims and STREAM_URL_TEMPLATE.
  const instanceId = opened.kind === 'postgres' ? opened.store.instanceId : (config.instanceId ?? `${hostname()}-${process.pid}`);
  if (config.admissionSecretGenerated) log.info('ADMISSION_SECRET not set: stream tokens are signed with a key made for this process (one instance only)');
  const relay = new Relay({
    settings: relaySettingsFromConfig(config, prompts.prompts),
    log,
    provider,
    agents,
    defaultAgent: defaultAgent.name,
    transfers: store,
    history: async (callSid) => transcriptToConversation((await store.get(callSid))?.transcript ?? []),
    openTranscoder: () => Transcoder.open(),
    openRecording: recordings?.open,
    recorderFor: (call, info) => createStoreRecorder(store, call.callSid, { From: call.from, To: call.to }, { agent: info.agent, direction: call.direction }),
    recorderForStream: (callSid) => streamRecorder(store, callSid),
    claim: (callSid) => store.claim(callSid, instanceId),
    prewarm: (result) => metrics.prewarm.inc({ result }),
    admittedWithoutStore: () => metrics.admissionsWithoutStore.inc(),
    storeHealth,
    instanceId,
    onStatus: (callback) => store.recordStatus(callback),
    modelHealth: () => ({ ...reachability.snapshot(), probing: prober.probing }),
    metrics: metrics.call,
    version: VERSION,
  });
  metrics.setRelayLatencySource(() => relay.relayLatency());
  // The admin reader goes to the edge directly: reading records is not the call layer's business.
  const admin = createAdminHandler(store, config.adminToken, { recordings: recordingStorage });
  const recordingApi = createRecordingApi({ store, storage: recordingStorage, keys: recordingKeys, adminToken: config.adminToken });
  // The console (/console): only with a sign-in token (ADMIN_TOKEN or CONSOLE_TOKENS); its page is src/console/web as it is.
  const consoleApp =
    config.console.tokens.length > 0
      ? createConsole({
          store,
          live: () => relay.liveCalls(),
          modelHealth: () => {
            const h = reachability.snapshot();
            return { reachable: h.reachable, lastError: h.lastError };
          },
          instanceId,
          tokens: config.console.tokens,
          sessionMs: config.console.sessionMs,
          secret: config.admissionSecret,
          recordings: config.recording.key || config.recording.keysOld.length ? { storage: recordingStorage, keys: recordingKeys } : undefined,
          webRoot: consoleWebRoot(),
          log,
        })
      : undefined;
  // Retention: one purger at a time across instances (the store's lease), in batches that never stall calls.
  const retention = config.retention.days > 0 ? createRetention({ store, recordings: recordingStorage, days: config.retention.days, holder: instanceId, log }) : undefined;
  let server: RunningServer;
  try {
    // Outbound calls (POST /calls, /voice/amd, the `o` token) only when TWILIO_ACCOUNT_SID is configured.
    const o = config.outbound;
    const outbound = o
      ? new OutboundCalls({
          rest: createTwilioRest({ accountSid: o.accountSid, apiKeySid: o.apiKeySid, apiKeySecret: o.apiKeySecret, authToken: config.twilioAuthToken, apiBase: o.apiBase }),
          agents: new Map(config.agents.map((a) => [a.name, { name: a.name, outbound: a.outbound }])),
          defaultAgent: config.agents[0]!.name,
          publicUrl: config.publicUrl!,
          from: o.from,
          pacer: store,
          records: store,
          secret: config.admissionSecret,
          adminToken: config.adminToken,
          cps: o.cps,
          log,
        })
      : undefined;
    server = await startServer({ settings: edgeSettingsFromConfig(config), app: relay, admin, recording: recordingApi, outbound, console: consoleApp, log, metrics, edge: opts.edge, env: opts.env });
  } catch (err) {
    relay.shutdown();
    await store.close();
    throw err;
  }
  prober.start();
  retention?.start(config.retention.intervalMs);
  log.info(
    { port: server.port, edge: server.edge.description, instanceId, store: opened.kind, audioMode: config.audioMode, model: config.openai.model, signed: config.twilioAuthToken !== undefined },
    'callbridge listening',
  );
  if (!config.twilioAuthToken) log.warn('UNSIGNED: TWILIO_AUTH_TOKEN is not set (ALLOW_UNSIGNED=true); Twilio signatures are NOT checked');

  let closing: Promise<void> | undefined;
  let draining: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      prober.stop();
      await retention?.stop();
      relay.shutdown();
      await relay.settled();
      // The recordings of the calls just ended finish writing (their outcome goes into the records) before the store closes.
      await recordings?.settled();
      await server.close();
      await store.close();
    })());
  return {
    port: server.port,
    edge: server.edge.description,
    relay,
    store,
    storeKind: opened.kind,
    server,
    drain() {
      drainStartedAt ??= Date.now();
      draining ??= relay.drain(config.drainTimeoutMs, config.drainGraceMs).then(close);
      return draining;
    },
    close,
  };
}

