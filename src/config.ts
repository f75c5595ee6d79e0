/**
 * One typed configuration, read once from the environment at start-up.
 *
 * Contract: `loadConfig(env)` either returns a complete Config (every default
 * filled in) or a ConfigError whose message lists *every* problem, one per
 * line — start-up stops once with the whole list, never one problem at a time.
 * Times are in ms unless the name says otherwise; prices in USD.
 *
 * Only main.ts (and what stands above it: the CLI, the fuzzer, the bench)
 * reads a Config; it fills in each module's own settings from it. Files the
 * environment names are read by main.ts (the recorded prompts), except
 * INSTRUCTIONS_FILE and the agent files (AGENT_FILE, src/agent/load.ts),
 * whose problems belong in the same start-up list.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { z } from 'zod';
import { loadAgentFile, missingHeaderEnv, shippedAgentPath } from './agent/load.js';
import type { Agent } from './agent/types.js';
import { defaultPromptPath } from './call/prompts.js';
import { DSP_SLOTS } from './dsp/index.js';
import { REASONING_EFFORTS, type ReasoningEffort } from './realtime/protocol.js';
import { TTS_FORMATS, type TtsFormat } from './pipeline/tts.js';
import { modelPrices, MODEL_PRICES, pipelinePrices, pipelinePricesListed, REFERENCE_LIVE_MODEL, type ModelPrices, type Prices } from './store/prices.js';
import { streamUrlTemplateProblems } from './twilio/twiml.js';

/** The agent inbound calls get when AGENT_FILE is unset: today's eligibility line, shipped with the package. */
export const DEFAULT_AGENT_FILE = shippedAgentPath('eligibility');
/** The demo's agent (`callbridge demo`, the end-to-end tests): today's line plus a transfer target and end_call. */
export const DEMO_AGENT_FILE = shippedAgentPath('demo');
/** The Realtime model when neither OPENAI_MODEL nor the default agent names one. */
export const DEFAULT_MODEL = 'gpt-realtime';
/** The voice-model providers (call/voice-model.ts): OpenAI Realtime, OpenAI's GPT-Live (src/live/), or the STT → LLM → TTS pipeline (src/pipeline/). */
export const PROVIDERS = ['realtime', 'live', 'pipeline'] as const;
export type ProviderName = (typeof PROVIDERS)[number];
/** The GPT-Live model when neither OPENAI_MODEL nor the default agent names one. */
export const DEFAULT_LIVE_MODEL = 'gpt-live-1.1';
/** The pipeline's LLM when neither OPENAI_MODEL nor the default agent names one. */
export const DEFAULT_PIPELINE_MODEL = 'gpt-4o-mini';
/** The pipeline's text-to-speech vendors (src/pipeline/tts-*.ts). */
export const PIPELINE_TTS_VENDORS = ['elevenlabs', 'openai'] as const;
/** The Responses model a GPT-Live session delegates tool work to, unless LIVE_BACKEND_MODEL says. */
export const DEFAULT_LIVE_BACKEND_MODEL = 'gpt-5-mini';
/** A pipeline's speech-model token prices: none (its stages are priced in Prices.pipeline). */
const NO_SPEECH_TOKENS: ModelPrices = { textInPerMTok: 0, textCachedInPerMTok: 0, textOutPerMTok: 0, audioInPerMTok: 0, audioCachedInPerMTok: 0, audioOutPerMTok: 0 };
const DEFAULT_VAD = { threshold: 0.5, prefixPaddingMs: 300, silenceDurationMs: 500 };

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no', 'on', 'off'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes' || v === 'on');

const intIn = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const httpUrl = z.url({ protocol: /^https?$/ });

/** Raw environment schema: names are the environment variable names. */
const EnvSchema = z.object({
  PORT: intIn(0, 65535).default(5002),
  HOST: z.string().min(1).default('0.0.0.0'),
  PUBLIC_URL: httpUrl.optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),

  OPENAI_API_KEY: z.string().min(1).optional(),
  OPENAI_BASE_URL: z.url({ protocol: /^(https?|wss?)$/ }).default('https://api.openai.com/v1'),
  /**
   * The voice-model provider: `realtime` (OpenAI Realtime) or `live` (OpenAI GPT-Live). Unset: the default agent's
   * `provider`, else realtime. One process serves one provider and model.
   */
  PROVIDER: z.enum(PROVIDERS).optional(),
  /**
   * Realtime: gpt-realtime (2025-08), gpt-realtime-1.5, gpt-realtime-2 (2026-05), gpt-realtime-2.1 / -2.1-mini
   * (2026-07), or a dated snapshot. GPT-Live: gpt-live-1, gpt-live-1.1 (2026-11-20).
   */
  OPENAI_MODEL: z.string().min(1).optional(),
  /** GPT-Live: the Responses model its delegated tool work runs on. */
  LIVE_BACKEND_MODEL: z.string().min(1).default(DEFAULT_LIVE_BACKEND_MODEL),

  // The STT → LLM → TTS pipeline (PROVIDER=pipeline). Its LLM is OPENAI_MODEL / the agent's `model`.
  /** Deepgram streaming endpoint (ws:// for a local stand-in). */
  DEEPGRAM_URL: z.url({ protocol: /^wss?$/ }).default('wss://api.deepgram.com/v1/listen'),
  DEEPGRAM_API_KEY: z.string().min(1).optional(),
  DEEPGRAM_MODEL: z.string().min(1).default('nova-3'),
  /** Deepgram's endpointing: silence (ms) that ends a turn on its side (the local VAD usually ends it first). */
  DEEPGRAM_ENDPOINTING_MS: intIn(10, 5000).default(300),
  /** Any OpenAI-compatible Chat Completions base URL; unset: OPENAI_BASE_URL. */
  PIPELINE_LLM_BASE_URL: httpUrl.optional(),
  /** The LLM endpoint's key; unset: OPENAI_API_KEY. */
  PIPELINE_LLM_API_KEY: z.string().min(1).optional(),
  PIPELINE_TTS: z.enum(PIPELINE_TTS_VENDORS).default('elevenlabs'),
  /** ElevenLabs API origin (ws:// for a local stand-in). */
  ELEVENLABS_URL: z.url({ protocol: /^wss?$/ }).default('wss://api.elevenlabs.io'),
  ELEVENLABS_API_KEY: z.string().min(1).optional(),
  ELEVENLABS_MODEL: z.string().min(1).default('eleven_flash_v2_5'),
  /** ElevenLabs voice id (PIPELINE_TTS=elevenlabs); OpenAI TTS takes the agent's `voice`. */
  ELEVENLABS_VOICE_ID: z.string().min(1).default('21m00Tcm4TlvDq8ikWAM'),
  /** OpenAI TTS model (PIPELINE_TTS=openai); its key is the LLM's. */
  OPENAI_TTS_MODEL: z.string().min(1).default('gpt-4o-mini-tts'),
  /** OpenAI TTS base URL; unset: the LLM's (PIPELINE_LLM_BASE_URL, else OPENAI_BASE_URL). */
  OPENAI_TTS_BASE_URL: httpUrl.optional(),
  /** What the TTS is asked for; OpenAI TTS gives pcm_24000 only. */
  PIPELINE_TTS_FORMAT: z.enum(TTS_FORMATS).optional(),
  /** The local VAD that decides barge-in and ends turns: the audio core's, or Silero (needs onnxruntime-node installed). */
  PIPELINE_VAD: z.enum(['core', 'silero']).default('core'),
  /** session.reasoning.effort for reasoning models (gpt-realtime-2 and later); unset = the model's default. */
  REASONING_EFFORT: z.enum(REASONING_EFFORTS).optional(),
  /** Extra CA certificate (PEM file) to trust for the model endpoint, e.g. a local stand-in's self-signed one. */
  OPENAI_CA_FILE: z.string().min(1).optional(),
  /**
   * The agent files (comma-separated): the first is the default agent, inbound calls get it. Unset: the shipped
   * agents/eligibility.yaml. VOICE, INSTRUCTIONS(_FILE), GREETING, OPENAI_MODEL, REASONING_EFFORT, VAD_*,
   * SILENCE_TIMEOUT_MS and MAX_CALL_MS, when set, override the default agent's (only its) values.
   */
  AGENT_FILE: z.string().min(1).optional(),
  VOICE: z.string().min(1).optional(),
  INSTRUCTIONS: z.string().min(1).optional(),
  INSTRUCTIONS_FILE: z.string().min(1).optional(),
  GREETING: z.string().optional(),
  /** Unset: transcode, or passthrough for PROVIDER=pipeline (its audio is µ-law 8 kHz end to end). */
  AUDIO_MODE: z.enum(['transcode', 'passthrough']).optional(),
  TRANSCRIPTION_MODEL: z.string().default('gpt-4o-transcribe'),
  VAD_THRESHOLD: z.coerce.number().min(0).max(1).optional(),
  VAD_PREFIX_PADDING_MS: intIn(0, 5000).optional(),
  VAD_SILENCE_DURATION_MS: intIn(0, 5000).optional(),

  TWILIO_AUTH_TOKEN: z.string().min(1).optional(),
  /** Serving without TWILIO_AUTH_TOKEN (no signature checks) must be asked for; startCallbridge refuses otherwise. */
  ALLOW_UNSIGNED: bool.default(false),

  /** Outbound playout lead: how far ahead of real time audio is sent to Twilio. */
  PLAYOUT_LEAD_MS: intIn(20, 2000).default(100),
  /**
   * The playout lead grows up to this while the event loop is late (a starved loop would otherwise leave the caller
   * a gap), and shrinks back to PLAYOUT_LEAD_MS when calm; = PLAYOUT_LEAD_MS keeps it fixed.
   */
  PLAYOUT_LEAD_MAX_MS: intIn(20, 5000).default(500),
  /** Largest media message to Twilio (whole 20 ms frames; one mark each): fewer messages per call-second. */
  OUTBOUND_CHUNK_MS: intIn(20, 200).default(100),
  /** Caller audio per append to the model (20 = one per Twilio frame). Larger batches cost less; speech onset and offset flush at once. */
  INBOUND_BATCH_MS: intIn(20, 100).default(20),
  SILENCE_TIMEOUT_MS: intIn(1000, 86_400_000).optional(),
  MAX_CALL_MS: intIn(1000, 86_400_000).optional(),
  MAX_CONCURRENT_CALLS: intIn(1, 100_000).default(1000),
  /** Per-IP token bucket for HTTP requests and stream upgrades. Twilio's traffic comes from few IPs: size it for peak call setup. */
  RATE_LIMIT_BURST: intIn(1, 1_000_000).default(500),
  RATE_LIMIT_PER_SECOND: z.coerce.number().positive().max(1_000_000).default(200),
  PREWARM_TTL_MS: intIn(1000, 600_000).default(30_000),
  /** Pre-warmed model sessions waiting for their stream, at most (over it the webhook gets the busy TwiML). */
  MAX_PENDING_CALLS: intIn(1, 100_000).default(200),
  /** A stream must send a valid `start` within this, or it is closed (1008) and frees its slot. */
  START_TIMEOUT_MS: intIn(100, 60_000).default(5000),
  /** On SIGTERM/SIGINT, calls in progress may go on this long; then each hears the goodbye and ends. */
  DRAIN_TIMEOUT_MS: intIn(0, 86_400_000).default(300_000),
  /** Proxies whose X-Forwarded-For is believed: comma-separated CIDRs (IPv4 and IPv6), e.g. 10.0.0.0/8,fd00::/8. */
  TRUST_PROXY: z.string().optional(),
  /** Requests failing the Twilio signature, per client address: burst, then this many a minute. */
  RATE_LIMIT_UNSIGNED_BURST: intIn(1, 1_000_000).default(5),
  RATE_LIMIT_UNSIGNED_PER_MIN: z.coerce.number().positive().max(1_000_000).default(10),
  /** Signed call set-ups per calling number (From): burst, then this many a minute. */
  RATE_LIMIT_CALLER_BURST: intIn(1, 1_000_000).default(5),
  RATE_LIMIT_CALLER_PER_MIN: z.coerce.number().positive().max(1_000_000).default(10),
  /** Validly signed stream upgrades and status callbacks per client address (signatures can be replayed): burst, then this many a second. */
  RATE_LIMIT_SIGNED_BURST: intIn(1, 1_000_000).default(1000),
  RATE_LIMIT_SIGNED_PER_SECOND: z.coerce.number().positive().max(1_000_000).default(100),
  /**
   * Media streams open without a valid `start` yet, at most; past it the oldest such stream is closed (1013).
   * Genuine ones are calls answered here whose stream is arriving, so keep it >= MAX_PENDING_CALLS.
   */
  MAX_STREAMS_AWAITING_START: intIn(1, 100_000).default(200),
  MODEL_CONNECT_TIMEOUT_MS: intIn(100, 60_000).default(10_000),

  CALLBRIDGE_DB: z.string().min(1).default('./data/callbridge.db'),
  /** postgres://… selects the PostgreSQL call store (several instances share it); unset = SQLite at CALLBRIDGE_DB. */
  DATABASE_URL: z.string().regex(/^postgres(ql)?:\/\//i, 'must be a postgres:// or postgresql:// URL').optional(),
  /** This instance's name in call rows and leases (PostgreSQL); default hostname-pid. */
  INSTANCE_ID: z.string().regex(/^[A-Za-z0-9._:-]{1,64}$/, 'letters, digits and . _ : - (up to 64)').optional(),
  /** A dead instance's in-progress calls are marked interrupted within this (PostgreSQL). */
  INSTANCE_LEASE_MS: intIn(300, 600_000).default(30_000),
  /** HMAC key of the per-call stream token; every instance behind one balancer must share it (required with DATABASE_URL). */
  ADMISSION_SECRET: z.string().min(32, 'must be at least 32 characters (e.g. openssl rand -hex 32)').optional(),
  /**
   * The <Stream url> in the TwiML: `{instance}` is INSTANCE_ID, `{publicUrl}` the wss:// form of PUBLIC_URL
   * (or of the request's origin), e.g. wss://{instance}.calls.example.com/voice/stream or
   * {publicUrl}/i/{instance}/voice/stream. Unset: {publicUrl}/voice/stream.
   */
  STREAM_URL_TEMPLATE: z.string().min(1).optional(),
  TRANSCRIPT_KEY: z
    .string()
    .regex(/^[0-9a-fA-F]{64}$/, 'must be 64 hex characters (a 256-bit AES key)')
    .optional(),
  ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  /**
   * More console sign-in tokens besides ADMIN_TOKEN (role admin): `name:role:token`, comma-separated, role `admin`
   * or `read` (a read-only viewer: calls and figures, caller numbers masked, no deletes).
   */
  CONSOLE_TOKENS: z
    .string()
    .regex(/^[a-z0-9_-]{1,32}:(admin|read):[^,:\s]{16,}(\s*,\s*[a-z0-9_-]{1,32}:(admin|read):[^,:\s]{16,})*$/, 'must be name:role:token entries, comma-separated (role admin or read; tokens of 16 characters or more)')
    .optional(),
  /** How long a console sign-in lasts. */
  CONSOLE_SESSION_HOURS: z.coerce.number().positive().max(168).default(8),
  /** Keys TRANSCRIPT_KEY replaced (comma-separated, 64 hex each): what they sealed is still read; nothing new is sealed with them. */
  TRANSCRIPT_KEY_OLD: z
    .string()
    .regex(/^[0-9a-fA-F]{64}(\s*,\s*[0-9a-fA-F]{64})*$/, 'must be one or more comma-separated keys of 64 hex characters')
    .optional(),

  /** Record calls (stereo µ-law: caller | heard), sealed with RECORDING_KEY; an agent file's `recording.enabled` overrides it for its calls. */
  RECORDING: z.enum(['on', 'off']).default('off'),
  /** AES-256 key of new recordings (64 hex); required with RECORDING=on or any agent recording. */
  RECORDING_KEY: z
    .string()
    .regex(/^[0-9a-fA-F]{64}$/, 'must be 64 hex characters (a 256-bit AES key)')
    .optional(),
  /** Keys RECORDING_KEY replaced (comma-separated, 64 hex each): recordings they sealed still play; nothing new is sealed with them. */
  RECORDING_KEY_OLD: z
    .string()
    .regex(/^[0-9a-fA-F]{64}(\s*,\s*[0-9a-fA-F]{64})*$/, 'must be one or more comma-separated keys of 64 hex characters')
    .optional(),
  /** Where recordings are written (a directory) unless RECORDING_S3_URL is set. */
  RECORDING_DIR: z.string().min(1).default('./data/recordings'),
  /**
   * S3-compatible storage: s3://bucket[/prefix], or http(s)://endpoint/bucket[/prefix] for a non-AWS server
   * (path-style). Credentials and region from the AWS SDK's usual environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION).
   */
  RECORDING_S3_URL: z.string().regex(/^(s3|https?):\/\/[^\s]+$/i, 'must be s3://bucket[/prefix] or http(s)://endpoint/bucket[/prefix]').optional(),
  /** Call records, transcripts, tool data and recordings older than this many days are deleted (0 = kept for ever). */
  RETENTION_DAYS: intIn(0, 36_500).default(90),
  /** How often an instance tries to purge (one purger at a time across instances, through the store). */
  RETENTION_INTERVAL_MS: intIn(1_000, 86_400_000).default(3_600_000),

  ELIGIBILITY_API_URL: httpUrl.optional(),
  ELIGIBILITY_API_KEY: z.string().min(1).optional(),
  ELIGIBILITY_TIMEOUT_MS: intIn(50, 60_000).default(3000),
  ELIGIBILITY_RETRIES: intIn(0, 10).default(2),

  /**
   * USD per 1M tokens: by default the OPENAI_MODEL's list prices (src/store/prices.ts);
   * each one set here overrides that table. Telephony: Twilio US inbound voice + stream, per minute.
   */
  PRICE_AUDIO_IN_PER_MTOK: z.coerce.number().min(0).optional(),
  PRICE_AUDIO_OUT_PER_MTOK: z.coerce.number().min(0).optional(),
  PRICE_TEXT_IN_PER_MTOK: z.coerce.number().min(0).optional(),
  PRICE_TEXT_OUT_PER_MTOK: z.coerce.number().min(0).optional(),
  PRICE_CACHED_IN_PER_MTOK: z.coerce.number().min(0).optional(),
  PRICE_CACHED_AUDIO_IN_PER_MTOK: z.coerce.number().min(0).optional(),
  /** GPT-Live: USD per active minute of audio (default: the model's list price, src/store/prices.ts). */
  PRICE_ACTIVE_AUDIO_PER_MIN: z.coerce.number().min(0).optional(),
  // The pipeline's stages (PROVIDER=pipeline): each replaces one price looked up for the stage's model.
  PRICE_STT_PER_MIN: z.coerce.number().min(0).optional(),
  PRICE_LLM_INPUT_PER_MTOK: z.coerce.number().min(0).optional(),
  PRICE_LLM_CACHED_INPUT_PER_MTOK: z.coerce.number().min(0).optional(),
  PRICE_LLM_OUTPUT_PER_MTOK: z.coerce.number().min(0).optional(),
  PRICE_TTS_PER_1K_CHARS: z.coerce.number().min(0).optional(),
  PRICE_TELEPHONY_PER_MIN: z.coerce.number().min(0).default(0.0085 + 0.004),

  /** Back-off before asking the model again after a failed response, one value per retry (ms, comma-separated). */
  RESPONSE_RETRY_MS: z
    .string()
    .regex(/^\d{1,5}(,\d{1,5}){0,4}$/, 'must be 1 to 5 comma-separated whole numbers of ms, e.g. 250,1000')
    .default('250,1000'),
  /** Recorded prompts (raw µ-law 8 kHz .ulaw, or a µ-law/PCM16 8 kHz mono WAV); defaults are in assets/prompts/. */
  HOLD_AUDIO: z.string().min(1).optional(),
  APOLOGY_AUDIO: z.string().min(1).optional(),
  GOODBYE_AUDIO: z.string().min(1).optional(),
  REPEAT_AUDIO: z.string().min(1).optional(),

  /** The model connection: reconnect back-off (full jitter from BASE, doubling, capped at MAX) for a total of BUDGET. */
  MODEL_RECONNECT_BUDGET_MS: intIn(0, 600_000).default(45_000),
  MODEL_BACKOFF_BASE_MS: intIn(1, 60_000).default(1000),
  MODEL_BACKOFF_MAX_MS: intIn(1, 120_000).default(8000),
  /** Caller audio from the gap sent to the new session (the most recent this many ms). */
  MODEL_GAP_AUDIO_MS: intIn(0, 5000).default(500),

  METRICS: bool.default(true),

  /** While the last model connect failed, probe the endpoint this often until one succeeds; 0 = never. */
  MODEL_PROBE_INTERVAL_MS: intIn(0, 600_000).default(5000),
  /** A failed model connect stops counting as the model's state (health: reachable null, stale) after this. */
  MODEL_FAILURE_TTL_MS: intIn(1000, 86_400_000).default(60_000),
  /** After SIGTERM, new calls are still taken this long while health already says draining (the balancer's check notices). */
  DRAIN_GRACE_MS: intIn(0, 600_000).default(10_000),

  /** Outbound calls (POST /calls, `callbridge call`): Twilio's REST API, with an API key (or the auth token). Unset = no outbound calls. */
  TWILIO_ACCOUNT_SID: z.string().regex(/^AC[0-9a-fA-F]{32}$/, 'expected AC and 32 hex digits').optional(),
  TWILIO_API_KEY_SID: z.string().regex(/^SK[0-9a-fA-F]{32}$/, 'expected SK and 32 hex digits').optional(),
  TWILIO_API_KEY_SECRET: z.string().min(1).optional(),
  /** Replaces https://api.twilio.com (a local stand-in in tests and the demo). */
  TWILIO_API_BASE: httpUrl.optional(),
  /** The `From` of outbound calls whose agent file names no caller_id (E.164). */
  OUTBOUND_FROM: z.string().regex(/^\+[1-9]\d{6,14}$/, 'expected an E.164 number, e.g. +15550001111').optional(),
  /** New outbound calls per second, at most, across every instance sharing the store. */
  OUTBOUND_CPS: z.coerce.number().positive().max(100).default(1),
});

export type AudioMode = 'transcode' | 'passthrough';



export interface PipelineConfig {
  stt: { url: string; apiKey: string | undefined; model: string; endpointingMs: number };
  llm: { baseUrl: string; apiKey: string | undefined };
  tts: { vendor: (typeof PIPELINE_TTS_VENDORS)[number]; url: string; apiKey: string | undefined; model: string; voiceId: string; format: TtsFormat };
  vad: 'core' | 'silero';
}

export interface Config {
  port: number;
  host: string;
  /** https origin Twilio reaches, without a trailing slash; undefined = derive from the request's Host header. */
  publicUrl: string | undefined;
  logLevel: string;
  openai: {
    apiKey: string | undefined;
    /** Which voice model serves the calls (every agent of this process). */
    provider: ProviderName;
    /** Realtime websocket URL without query, e.g. wss://api.openai.com/v1/realtime (ws:// for an http base). */
    realtimeUrl: string;
    /** GPT-Live websocket URL, e.g. wss://api.openai.com/v1/live/sessions (a ws(s) base is taken as it is). */
    liveUrl: string;
    /** GPT-Live: the Responses model delegated tool work runs on. */
    liveBackendModel: string;
    model: string;
    reasoningEffort: ReasoningEffort | undefined;
    caFile: string | undefined;
    voice: string;
    instructions: string;
    greeting: string;
    transcriptionModel: string;
    vad: { threshold: number; prefixPaddingMs: number; silenceDurationMs: number };
    connectTimeoutMs: number;
  };
  /** The STT → LLM → TTS pipeline's stages (used when openai.provider is `pipeline`; openai.model is its LLM). */
  pipeline: PipelineConfig;
  audioMode: AudioMode;
  twilioAuthToken: string | undefined;
  allowUnsigned: boolean;
  playoutLeadMs: number;
  /** PLAYOUT_LEAD_MAX_MS, never below playoutLeadMs. */
  playoutLeadMaxMs: number;
  outboundChunkMs: number;
  inboundBatchMs: number;
  silenceTimeoutMs: number;
  maxCallMs: number;
  maxConcurrentCalls: number;
  rateLimit: { burst: number; perSecond: number };
  prewarmTtlMs: number;
  maxPendingCalls: number;
  startTimeoutMs: number;
  drainTimeoutMs: number;
  /** TRUST_PROXY, parsed: each entry an address and prefix length. */
  trustProxy: { address: string; prefix: number; family: 'ipv4' | 'ipv6' }[];
  /** Failed signatures per client address, and signed call set-ups per calling number (per minute). */
  unsignedLimit: { burst: number; perMinute: number };
  callerLimit: { burst: number; perMinute: number };
  /** Validly signed upgrades and status callbacks per client address; streams open without a `start`, at most. */
  signedLimit: { burst: number; perSecond: number };
  maxStreamsAwaitingStart: number;
  dbPath: string;
  databaseUrl: string | undefined;
  instanceId: string | undefined;
  instanceLeaseMs: number;
  /** ADMISSION_SECRET's bytes (UTF-8), or 32 random bytes made at start-up when unset and no DATABASE_URL (one instance). */
  admissionSecret: Buffer;
  /** True when admissionSecret was made here (it then differs per process). */
  admissionSecretGenerated: boolean;
  /** STREAM_URL_TEMPLATE (see twilio/twiml.ts streamUrlFromTemplate); undefined = the default stream URL. */
  streamUrlTemplate: string | undefined;
  transcriptKey: Buffer | undefined;
  adminToken: string | undefined;
  /** TRANSCRIPT_KEY_OLD's keys, for reading only; empty when unset. */
  transcriptKeysOld: Buffer[];
  eligibility: { apiUrl: string | undefined; apiKey: string | undefined; timeoutMs: number; retries: number };
  /**
   * Recordings: `enabled` = RECORDING (agents may override); `key` seals new ones (undefined = none can be made);
   * `keysOld` only open; storage is `s3Url` when set, else `dir`.
   */
  recording: { enabled: boolean; key: Buffer | undefined; keysOld: Buffer[]; dir: string; s3Url: string | undefined };
  /** Console sign-in: ADMIN_TOKEN (name `admin`, role admin) and CONSOLE_TOKENS; empty = the console answers 404. */
  console: { tokens: { name: string; role: 'admin' | 'read'; token: string }[]; sessionMs: number };
  /** RETENTION_DAYS (0 = keep for ever) and RETENTION_INTERVAL_MS. */
  retention: { days: number; intervalMs: number };
  /** Prices of `openai.model` (with PRICE_* overrides); `pricesKnown` = the model is in the price table. */
  prices: Prices;
  pricesKnown: boolean;
  responseRetryMs: number[];
  /** The recorded prompts' files (REPEAT_AUDIO, …; default: the committed ones). main.ts reads them, not loadConfig. */
  promptFiles: { repeat: string; hold: string; apology: string; goodbye: string };
  reconnect: { budgetMs: number; backoffBaseMs: number; backoffMaxMs: number; gapAudioKeepMs: number };
  metrics: boolean;
  /** Background probes of the model endpoint while a failed connect puts it in doubt, and how long a failure counts. */
  modelProbe: { intervalMs: number; failureTtlMs: number };
  /** After the first SIGTERM, how long new calls are still taken (health already says draining). */
  drainGraceMs: number;
  /** Outbound calls through Twilio's REST API; undefined = not configured (POST /calls answers 404). */
  outbound: { accountSid: string; apiKeySid: string | undefined; apiKeySecret: string | undefined; apiBase: string | undefined; from: string | undefined; cps: number } | undefined;
  /**
   * The agents (AGENT_FILE), the first the default one (inbound calls), with the environment's overrides applied
   * to it; `openai.instructions`, `voice`, `greeting`, `model`, `reasoningEffort`, `vad`, `silenceTimeoutMs` and
   * `maxCallMs` above are its values too. Names are unique; every agent's model is `openai.model`.
   */
  agents: Agent[];
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** http(s)://host/v1 → ws(s)://host/v1/realtime; ws(s) URLs are taken as the realtime endpoint itself. */
export function realtimeUrlFromBase(base: string): string {
  const u = new URL(base);
  if (u.protocol === 'ws:' || u.protocol === 'wss:') return u.toString().replace(/\/$/, '');
  u.protocol = u.protocol === 'http:' ? 'ws:' : 'wss:';
  u.pathname = `${u.pathname.replace(/\/$/, '')}/realtime`;
  u.search = '';
  return u.toString();
}

/** The GPT-Live endpoint for OPENAI_BASE_URL: an http(s) base gets /live/sessions; a ws(s) URL is the endpoint itself. */
export function liveUrlFromBase(base: string): string {
  const u = new URL(base);
  if (u.protocol === 'ws:' || u.protocol === 'wss:') return u.toString().replace(/\/$/, '');
  u.protocol = u.protocol === 'http:' ? 'ws:' : 'wss:';
  u.pathname = `${u.pathname.replace(/\/$/, '')}/live/sessions`;
  u.search = '';
  return u.toString();
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // Empty strings count as unset: `FOO= npm start` should mean the default.
  const cleaned: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && v !== '') cleaned[k] = v;

  const parsed = EnvSchema.safeParse(cleaned);
  const problems: string[] = [];
  if (!parsed.success) {
    for (const issue of parsed.error.issues) problems.push(`${issue.path.join('.') || '(env)'}: ${issue.message}`);
  }
  const loaded = loadAgents(cleaned.AGENT_FILE ?? DEFAULT_AGENT_FILE, cleaned, problems);
  let instructions: string | undefined;
  if (cleaned.INSTRUCTIONS && cleaned.INSTRUCTIONS_FILE) {
    problems.push('INSTRUCTIONS and INSTRUCTIONS_FILE: set one, not both');
  } else if (cleaned.INSTRUCTIONS_FILE) {
    try {
      instructions = readFileSync(cleaned.INSTRUCTIONS_FILE, 'utf8').trim();
      if (!instructions) problems.push(`INSTRUCTIONS_FILE: ${cleaned.INSTRUCTIONS_FILE} is empty`);
    } catch (err) {
      problems.push(`INSTRUCTIONS_FILE: cannot read ${cleaned.INSTRUCTIONS_FILE} (${(err as NodeJS.ErrnoException).code ?? err})`);
    }
  } else if (cleaned.INSTRUCTIONS) {
    instructions = cleaned.INSTRUCTIONS;
  }
  if (cleaned.ELIGIBILITY_API_KEY && !cleaned.ELIGIBILITY_API_URL) {
    problems.push('ELIGIBILITY_API_KEY: set without ELIGIBILITY_API_URL');
  }
  const trustProxy = parseCidrs(cleaned.TRUST_PROXY ?? '', problems);
  if (cleaned.DATABASE_URL && !cleaned.ADMISSION_SECRET) {
    problems.push('ADMISSION_SECRET: required with DATABASE_URL (instances sharing a database check each other\'s stream tokens); set the same value of 32+ characters on every instance, e.g. `openssl rand -hex 32`');
  }
  if (cleaned.STREAM_URL_TEMPLATE) {
    problems.push(...streamUrlTemplateProblems(cleaned.STREAM_URL_TEMPLATE).map((p) => `STREAM_URL_TEMPLATE: ${p}`));
    if (cleaned.STREAM_URL_TEMPLATE.includes('{instance}') && !cleaned.INSTANCE_ID) {
      problems.push('STREAM_URL_TEMPLATE: names {instance}, so INSTANCE_ID must be set (the name the load balancer routes on)');
    }
  }
  if (cleaned.TWILIO_ACCOUNT_SID) {
    if (!cleaned.PUBLIC_URL) problems.push('PUBLIC_URL: required with TWILIO_ACCOUNT_SID (outbound calls give Twilio their webhook URLs)');
    if (!cleaned.TWILIO_API_KEY_SID && !cleaned.TWILIO_AUTH_TOKEN) problems.push('TWILIO_API_KEY_SID + TWILIO_API_KEY_SECRET (or TWILIO_AUTH_TOKEN): required with TWILIO_ACCOUNT_SID');
  }
  if (Boolean(cleaned.TWILIO_API_KEY_SID) !== Boolean(cleaned.TWILIO_API_KEY_SECRET)) problems.push('TWILIO_API_KEY_SID and TWILIO_API_KEY_SECRET: set both or neither');
  if (cleaned.RECORDING === 'on' && !cleaned.RECORDING_KEY) {
    problems.push('RECORDING_KEY: required with RECORDING=on (recordings are always encrypted; make one with openssl rand -hex 32)');
  }
  if (cleaned.RECORDING_KEY_OLD && !cleaned.RECORDING_KEY) {
    problems.push('RECORDING_KEY_OLD: set without RECORDING_KEY; set the new key as RECORDING_KEY');
  }
  if (cleaned.TRANSCRIPT_KEY_OLD && !cleaned.TRANSCRIPT_KEY) {
    problems.push('TRANSCRIPT_KEY_OLD: set without TRANSCRIPT_KEY (new records would be stored unencrypted); set the new key as TRANSCRIPT_KEY');
  }
  if (parsed.success && (parsed.data.AUDIO_MODE ?? 'transcode') === 'transcode' && parsed.data.PROVIDER !== 'pipeline' && parsed.data.MAX_CONCURRENT_CALLS > DSP_SLOTS) {
    // Each transcoded call holds one DSP channel slot: a call admitted past them could not be served.
    problems.push(`MAX_CONCURRENT_CALLS: ${parsed.data.MAX_CONCURRENT_CALLS} is more than the ${DSP_SLOTS} calls one process can transcode (DSP channel slots); set it to ${DSP_SLOTS} or less, or run more instances`);
  }
  // With a broken environment the agents are still checked against each other (no overrides but the model), so all is listed at once.
  const overrides: Overrides = parsed.success ? parsed.data : { OPENAI_MODEL: cleaned.OPENAI_MODEL };
  const overridden = loaded ? withOverrides(loaded.agents, loaded.files, overrides, instructions, problems) : undefined;
  const agents = overridden && withRecording(overridden, cleaned, problems);
  if (problems.length > 0 || !parsed.success || !agents) throw new ConfigError(problems);
  const e = parsed.data;
  const first = agents[0]!;
  if (first.provider === 'pipeline' && e.AUDIO_MODE === 'transcode') {
    // The STT takes the phone's µ-law as it is and the TTS output is made µ-law in the audio core: no PCM crosses the port.
    throw new ConfigError(["AUDIO_MODE: transcode does not apply to PROVIDER=pipeline (its audio is µ-law 8 kHz end to end: the STT hears the phone's audio, the TTS's is resampled in the pipeline); unset AUDIO_MODE or set passthrough"]);
  }
  const model = first.model!;
  const vad = {
    threshold: first.vad.threshold ?? DEFAULT_VAD.threshold,
    prefixPaddingMs: first.vad.prefixPaddingMs ?? DEFAULT_VAD.prefixPaddingMs,
    silenceDurationMs: first.vad.silenceDurationMs ?? DEFAULT_VAD.silenceDurationMs,
  };
  const piped = first.provider === 'pipeline';
  const ttsModel = e.PIPELINE_TTS === 'openai' ? e.OPENAI_TTS_MODEL : e.ELEVENLABS_MODEL;
  // A pipeline is priced by its stages (each unlisted model at its stage's reference); it bills no speech tokens.
  const listed = piped ? (pipelinePricesListed({ stt: e.DEEPGRAM_MODEL, llm: model, tts: ttsModel }) ? NO_SPEECH_TOKENS : undefined) : modelPrices(model);
  // An unlisted model is priced as its protocol's reference model: gpt-realtime's tokens, or gpt-live-1.1's minutes.
  const base = listed ?? (piped ? NO_SPEECH_TOKENS : first.provider === 'live' ? modelPrices(REFERENCE_LIVE_MODEL)! : MODEL_PRICES['gpt-realtime']!);
  const stages = piped ? pipelinePrices({ stt: e.DEEPGRAM_MODEL, llm: model, tts: ttsModel }) : undefined;
  return {
    port: e.PORT,
    host: e.HOST,
    publicUrl: e.PUBLIC_URL?.replace(/\/$/, ''),
    logLevel: e.LOG_LEVEL,
    openai: {
      apiKey: e.OPENAI_API_KEY,
      provider: first.provider ?? 'realtime',
      realtimeUrl: realtimeUrlFromBase(e.OPENAI_BASE_URL),
      liveUrl: liveUrlFromBase(e.OPENAI_BASE_URL),
      liveBackendModel: e.LIVE_BACKEND_MODEL,
      model,
      reasoningEffort: first.reasoningEffort,
      caFile: e.OPENAI_CA_FILE,
      voice: first.voice,
      instructions: first.instructions,
      greeting: first.greeting,
      transcriptionModel: e.TRANSCRIPTION_MODEL,
      vad,
      connectTimeoutMs: e.MODEL_CONNECT_TIMEOUT_MS,
    },
    pipeline: {
      stt: { url: e.DEEPGRAM_URL, apiKey: e.DEEPGRAM_API_KEY, model: e.DEEPGRAM_MODEL, endpointingMs: e.DEEPGRAM_ENDPOINTING_MS },
      llm: { baseUrl: e.PIPELINE_LLM_BASE_URL ?? e.OPENAI_BASE_URL, apiKey: e.PIPELINE_LLM_API_KEY ?? e.OPENAI_API_KEY },
      tts:
        e.PIPELINE_TTS === 'openai'
          ? { vendor: 'openai', url: e.OPENAI_TTS_BASE_URL ?? e.PIPELINE_LLM_BASE_URL ?? e.OPENAI_BASE_URL, apiKey: e.PIPELINE_LLM_API_KEY ?? e.OPENAI_API_KEY, model: e.OPENAI_TTS_MODEL, voiceId: first.voice, format: 'pcm_24000' }
          : { vendor: 'elevenlabs', url: e.ELEVENLABS_URL, apiKey: e.ELEVENLABS_API_KEY, model: e.ELEVENLABS_MODEL, voiceId: e.ELEVENLABS_VOICE_ID, format: e.PIPELINE_TTS_FORMAT ?? 'ulaw_8000' },
      vad: e.PIPELINE_VAD,
    },
    audioMode: e.AUDIO_MODE ?? (first.provider === 'pipeline' ? 'passthrough' : 'transcode'),
    twilioAuthToken: e.TWILIO_AUTH_TOKEN,
    allowUnsigned: e.ALLOW_UNSIGNED,
    playoutLeadMs: e.PLAYOUT_LEAD_MS,
    playoutLeadMaxMs: Math.max(e.PLAYOUT_LEAD_MS, e.PLAYOUT_LEAD_MAX_MS),
    outboundChunkMs: Math.floor(e.OUTBOUND_CHUNK_MS / 20) * 20,
    inboundBatchMs: Math.floor(e.INBOUND_BATCH_MS / 20) * 20,
    silenceTimeoutMs: first.policies.silence.timeoutMs,
    maxCallMs: first.policies.maxDuration.maxCallMs,
    maxConcurrentCalls: e.MAX_CONCURRENT_CALLS,
    rateLimit: { burst: e.RATE_LIMIT_BURST, perSecond: e.RATE_LIMIT_PER_SECOND },
    prewarmTtlMs: e.PREWARM_TTL_MS,
    maxPendingCalls: e.MAX_PENDING_CALLS,
    startTimeoutMs: e.START_TIMEOUT_MS,
    drainTimeoutMs: e.DRAIN_TIMEOUT_MS,
    trustProxy,
    unsignedLimit: { burst: e.RATE_LIMIT_UNSIGNED_BURST, perMinute: e.RATE_LIMIT_UNSIGNED_PER_MIN },
    callerLimit: { burst: e.RATE_LIMIT_CALLER_BURST, perMinute: e.RATE_LIMIT_CALLER_PER_MIN },
    signedLimit: { burst: e.RATE_LIMIT_SIGNED_BURST, perSecond: e.RATE_LIMIT_SIGNED_PER_SECOND },
    maxStreamsAwaitingStart: e.MAX_STREAMS_AWAITING_START,
    dbPath: e.CALLBRIDGE_DB,
    databaseUrl: e.DATABASE_URL,
    instanceId: e.INSTANCE_ID,
    instanceLeaseMs: e.INSTANCE_LEASE_MS,
    admissionSecret: e.ADMISSION_SECRET ? Buffer.from(e.ADMISSION_SECRET, 'utf8') : randomBytes(32),
    admissionSecretGenerated: !e.ADMISSION_SECRET,
    streamUrlTemplate: e.STREAM_URL_TEMPLATE,
    transcriptKey: e.TRANSCRIPT_KEY ? Buffer.from(e.TRANSCRIPT_KEY, 'hex') : undefined,
    adminToken: e.ADMIN_TOKEN,
    transcriptKeysOld: (e.TRANSCRIPT_KEY_OLD ?? '').split(',').map((k) => k.trim()).filter(Boolean).map((k) => Buffer.from(k, 'hex')),
    recording: {
      enabled: e.RECORDING === 'on',
      key: e.RECORDING_KEY ? Buffer.from(e.RECORDING_KEY, 'hex') : undefined,
      keysOld: (e.RECORDING_KEY_OLD ?? '').split(',').map((k) => k.trim()).filter(Boolean).map((k) => Buffer.from(k, 'hex')),
      dir: e.RECORDING_DIR,
      s3Url: e.RECORDING_S3_URL,
    },
    retention: { days: e.RETENTION_DAYS, intervalMs: e.RETENTION_INTERVAL_MS },
    console: {
      tokens: [
        ...(e.ADMIN_TOKEN ? [{ name: 'admin', role: 'admin' as const, token: e.ADMIN_TOKEN }] : []),
        ...(e.CONSOLE_TOKENS ?? '')
          .split(',')
          .map((t) => t.trim())
          .filter(Boolean)
          .map((t) => {
            const [name, role, ...rest] = t.split(':');
            return { name: name!, role: role as 'admin' | 'read', token: rest.join(':') };
          }),
      ],
      sessionMs: Math.round(e.CONSOLE_SESSION_HOURS * 3_600_000),
    },
    eligibility: {
      apiUrl: e.ELIGIBILITY_API_URL,
      apiKey: e.ELIGIBILITY_API_KEY,
      timeoutMs: e.ELIGIBILITY_TIMEOUT_MS,
      retries: e.ELIGIBILITY_RETRIES,
    },
    prices: {
      audioInPerMTok: e.PRICE_AUDIO_IN_PER_MTOK ?? base.audioInPerMTok,
      audioOutPerMTok: e.PRICE_AUDIO_OUT_PER_MTOK ?? base.audioOutPerMTok,
      textInPerMTok: e.PRICE_TEXT_IN_PER_MTOK ?? base.textInPerMTok,
      textOutPerMTok: e.PRICE_TEXT_OUT_PER_MTOK ?? base.textOutPerMTok,
      textCachedInPerMTok: e.PRICE_CACHED_IN_PER_MTOK ?? base.textCachedInPerMTok,
      audioCachedInPerMTok: e.PRICE_CACHED_AUDIO_IN_PER_MTOK ?? base.audioCachedInPerMTok,
      activeAudioPerMin: e.PRICE_ACTIVE_AUDIO_PER_MIN ?? base.activeAudioPerMin,
      telephonyPerMin: e.PRICE_TELEPHONY_PER_MIN,
      ...(stages
        ? {
            pipeline: {
              sttPerMin: e.PRICE_STT_PER_MIN ?? stages.sttPerMin,
              llmInPerMTok: e.PRICE_LLM_INPUT_PER_MTOK ?? stages.llmInPerMTok,
              llmCachedInPerMTok: e.PRICE_LLM_CACHED_INPUT_PER_MTOK ?? stages.llmCachedInPerMTok,
              llmOutPerMTok: e.PRICE_LLM_OUTPUT_PER_MTOK ?? stages.llmOutPerMTok,
              ttsPer1kChars: e.PRICE_TTS_PER_1K_CHARS ?? stages.ttsPer1kChars,
            },
          }
        : {}),
    },
    pricesKnown: listed !== undefined,
    responseRetryMs: e.RESPONSE_RETRY_MS.split(',').map(Number),
    promptFiles: {
      repeat: e.REPEAT_AUDIO ?? defaultPromptPath('repeat'),
      hold: e.HOLD_AUDIO ?? defaultPromptPath('hold'),
      apology: e.APOLOGY_AUDIO ?? defaultPromptPath('apology'),
      goodbye: e.GOODBYE_AUDIO ?? defaultPromptPath('goodbye'),
    },
    reconnect: {
      budgetMs: e.MODEL_RECONNECT_BUDGET_MS,
      backoffBaseMs: e.MODEL_BACKOFF_BASE_MS,
      backoffMaxMs: e.MODEL_BACKOFF_MAX_MS,
      gapAudioKeepMs: e.MODEL_GAP_AUDIO_MS,
    },
    metrics: e.METRICS,
    modelProbe: { intervalMs: e.MODEL_PROBE_INTERVAL_MS, failureTtlMs: e.MODEL_FAILURE_TTL_MS },
    drainGraceMs: e.DRAIN_GRACE_MS,
    outbound: e.TWILIO_ACCOUNT_SID
      ? { accountSid: e.TWILIO_ACCOUNT_SID, apiKeySid: e.TWILIO_API_KEY_SID, apiKeySecret: e.TWILIO_API_KEY_SECRET, apiBase: e.TWILIO_API_BASE, from: e.OUTBOUND_FROM, cps: e.OUTBOUND_CPS }
      : undefined,
    agents,
  };
}

/**
 * AGENT_FILE's files, each loaded and checked; their problems (and tool headers naming env variables `env`
 * lacks, and a name two files share) go to `problems`, prefixed `AGENT_FILE (<path>): `. Undefined when any failed.
 */
function loadAgents(list: string, env: Record<string, string>, problems: string[]): { agents: Agent[]; files: string[] } | undefined {
  const files = list.split(',').map((f) => f.trim()).filter(Boolean);
  if (files.length === 0) {
    problems.push('AGENT_FILE: names no file (comma-separated paths of agent files, .yaml or .json)');
    return undefined;
  }
  const agents: Agent[] = [];
  const byName = new Map<string, string>();
  let ok = true;
  for (const file of files) {
    const r = loadAgentFile(file);
    const at = (p: string) => `AGENT_FILE (${file}): ${p}`;
    if (!r.ok) {
      problems.push(...r.problems.map(at));
      ok = false;
      continue;
    }
    const missing = missingHeaderEnv(r.agent, env);
    problems.push(...missing.map(at));
    const other = byName.get(r.agent.name);
    if (other !== undefined) problems.push(at(`name: ${JSON.stringify(r.agent.name)} is already the name of the agent in ${other}; agent names must be unique`));
    else byName.set(r.agent.name, file);
    if (missing.length > 0 || other !== undefined) ok = false;
    agents.push(r.agent);
  }
  return ok ? { agents, files } : undefined;
}

/** The variables that override the default agent (all optional: only a set one overrides). */
type Overrides = Pick<
  z.output<typeof EnvSchema>,
  'PROVIDER' | 'OPENAI_MODEL' | 'GREETING' | 'VOICE' | 'REASONING_EFFORT' | 'VAD_THRESHOLD' | 'VAD_PREFIX_PADDING_MS' | 'VAD_SILENCE_DURATION_MS' | 'SILENCE_TIMEOUT_MS' | 'MAX_CALL_MS'
>;

/**
 * The environment's overrides applied to the default (first) agent only, each only when set; the model every
 * agent runs on resolved (OPENAI_MODEL, else the default agent's, else DEFAULT_MODEL) and filled into each:
 * one process serves one model, so an agent file naming another is a problem.
 */
function withOverrides(agents: Agent[], files: string[], e: Overrides, instructions: string | undefined, problems: string[]): Agent[] | undefined {
  const [head, ...rest] = agents as [Agent, ...Agent[]];
  const provider: ProviderName = e.PROVIDER ?? head.provider ?? 'realtime';
  const model = e.OPENAI_MODEL ?? head.model ?? (provider === 'live' ? DEFAULT_LIVE_MODEL : provider === 'pipeline' ? DEFAULT_PIPELINE_MODEL : DEFAULT_MODEL);
  const from = (what: 'provider' | 'model') =>
    (what === 'provider' ? e.PROVIDER : e.OPENAI_MODEL) ? (what === 'provider' ? 'PROVIDER' : 'OPENAI_MODEL') : head[what] ? 'the default agent' : 'the default';
  // GPT-Live, Realtime and a chat model are different protocols: a model of one cannot be served by another.
  const kind = model.startsWith('gpt-live') ? 'live' : /^gpt-(4o-|4o-mini-)?realtime/.test(model) ? 'realtime' : 'chat';
  if (provider === 'pipeline' ? kind !== 'chat' : provider === 'live' ? kind !== 'live' : kind === 'live') {
    const want = provider === 'pipeline' ? 'a chat (LLM) model for the pipeline' : `a ${provider === 'live' ? 'GPT-Live' : 'Realtime'} model`;
    problems.push(`OPENAI_MODEL: ${JSON.stringify(model)} (from ${from('model')}) is not ${want}, and the provider is ${provider} (from ${from('provider')})`);
  }
  const first: Agent = {
    ...head,
    provider,
    instructions: instructions ?? head.instructions,
    greeting: e.GREETING ?? head.greeting,
    voice: e.VOICE ?? head.voice,
    model,
    reasoningEffort: e.REASONING_EFFORT ?? head.reasoningEffort,
    vad: {
      threshold: e.VAD_THRESHOLD ?? head.vad.threshold,
      prefixPaddingMs: e.VAD_PREFIX_PADDING_MS ?? head.vad.prefixPaddingMs,
      silenceDurationMs: e.VAD_SILENCE_DURATION_MS ?? head.vad.silenceDurationMs,
    },
    policies: {
      ...head.policies,
      silence: { ...head.policies.silence, timeoutMs: e.SILENCE_TIMEOUT_MS ?? head.policies.silence.timeoutMs },
      maxDuration: { ...head.policies.maxDuration, maxCallMs: e.MAX_CALL_MS ?? head.policies.maxDuration.maxCallMs },
    },
  };
  const md = first.policies.maxDuration;
  if (e.MAX_CALL_MS !== undefined && md.warnBeforeMs !== undefined && md.warnBeforeMs >= md.maxCallMs) {
    problems.push(`MAX_CALL_MS: ${md.maxCallMs} is not more than the default agent's max_duration.warn_before_ms (${md.warnBeforeMs})`);
  }
  let ok = true;
  const others = rest.map((a, i) => {
    if (a.provider !== undefined && a.provider !== provider) {
      problems.push(`AGENT_FILE (${files[i + 1]}): provider: ${JSON.stringify(a.provider)} is not the provider this process serves (${JSON.stringify(provider)}, from ${from('provider')}); run agents on another provider in another process`);
      ok = false;
    }
    if (a.model !== undefined && a.model !== model) {
      problems.push(`AGENT_FILE (${files[i + 1]}): model: ${JSON.stringify(a.model)} is not the model this process serves (${JSON.stringify(model)}, from ${e.OPENAI_MODEL ? 'OPENAI_MODEL' : head.model ? 'the default agent' : 'the default'}); run agents on another model in another process`);
      ok = false;
    }
    return { ...a, provider, model };
  });
  return ok ? [first, ...others] : undefined;
}

/**
 * Each agent's `recording.enabled` settled: the file's when it says, else RECORDING's. A recorded agent needs
 * RECORDING_KEY (recordings are only ever written sealed).
 */
function withRecording(agents: Agent[], env: Record<string, string>, problems: string[]): Agent[] {
  const byDefault = env.RECORDING === 'on';
  return agents.map((a) => {
    const enabled = a.policies.recording.enabled ?? byDefault;
    if (enabled && !env.RECORDING_KEY && a.policies.recording.enabled) {
      problems.push(`RECORDING_KEY: required: agent ${JSON.stringify(a.name)} records its calls (recording.enabled); make one with openssl rand -hex 32`);
    }
    return { ...a, policies: { ...a.policies, recording: { ...a.policies.recording, enabled } } };
  });
}

/** TRUST_PROXY: "10.0.0.0/8, 2001:db8::/32, 192.0.2.7" (a bare address is /32 or /128). Problems are added to `problems`. */
export function parseCidrs(value: string, problems: string[]): Config['trustProxy'] {
  const out: Config['trustProxy'] = [];
  for (const raw of value.split(',').map((s) => s.trim()).filter(Boolean)) {
    const [address = '', bits, extra] = raw.split('/');
    const v = isIP(address);
    const max = v === 4 ? 32 : 128;
    const prefix = bits === undefined ? max : /^\d{1,3}$/.test(bits) ? Number(bits) : NaN;
    if (v === 0 || extra !== undefined || !(prefix >= 0 && prefix <= max)) {
      problems.push(`TRUST_PROXY: '${raw}' is not an IPv4 or IPv6 address or CIDR (e.g. 10.0.0.0/8, fd00::/8)`);
      continue;
    }
    out.push({ address, prefix, family: v === 4 ? 'ipv4' : 'ipv6' });
  }
  return out;
}
