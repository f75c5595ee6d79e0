/**
 * Every port of the call layer, on one page: what it offers the network edge
 * (the first half) and what a call needs from outside (the second half).
 *
 * The edge (src/server/, the only module that knows uWebSockets.js or
 * node:http) turns HTTP requests and WebSocket frames into VoiceApp calls,
 * with webhook bodies already checked (signature) and parsed
 * (twilio/webhooks.ts) into typed values; the call layer never sees a server
 * object or a raw form. Tests implement TwilioSocket with a plain fake.
 *
 * A call needs from outside: a transcoder (src/dsp), metrics
 * (src/server/metrics), timers, a pacing clock (./clock.ts), a model session
 * and a call recorder handed over at admission (CallAdmission), and the tool
 * registry (src/tools/registry.ts). This file imports no call module, so the
 * call's own modules (session, inbound, outbound, relay) all import from here
 * and none from each other for these types.
 */
import type { CallRecorder, RecordingInfo, TransferDecision, Usage } from '../records.js';
import type { AmdCallback, ConnectActionWebhook, DialActionWebhook, StatusCallback, VoiceWebhook } from '../twilio/webhooks.js';
import type { ModelSession } from './voice-model.js';
import type { CallRecordingTap } from '../recording/types.js';
import type { CallAgent } from './agent.js';

// ── What the call layer offers the edge ──────────────────────────────────

/** One Twilio Media Stream websocket, as the call sees it. */
export interface TwilioSocket {
  /**
   * Send one JSON text frame. Returns false when the socket is under
   * backpressure: the sender should hold further frames until `onDrain`. The
   * frame itself is queued, unless the send buffer is already past the edge's
   * hard limit (MAX_BACKPRESSURE_BYTES), where it is dropped; false after close.
   */
  send(text: string): boolean;
  /** Bytes queued in the socket and not yet written. */
  bufferedAmount(): number;
  /** Batch several sends made from an async callback into one syscall. */
  cork(fn: () => void): void;
  /** Close the stream (1000 normal; 1008 policy; 1011 internal error). */
  close(code?: number, reason?: string): void;
}

/** What the call layer does with one stream's traffic. Handlers never throw. */
export interface StreamHandler {
  /** A text frame, already decoded (copied out of the edge's memory). */
  onText(text: string): void;
  /** A binary frame: a protocol error on Twilio's stream. */
  onBinary(byteLength: number): void;
  /** The socket's send buffer drained below the limit. */
  onDrain(): void;
  /** The socket closed (by either side). Called exactly once. */
  onClose(code: number, reason: string): void;
}

export interface StreamInfo {
  remoteAddress: string;
  /** Header values copied out in `upgrade`. */
  headers: Record<string, string>;
}

/**
 * Where Twilio reaches this instance, as the edge derives them (PUBLIC_URL or
 * the request's origin): the stream's wss URL and the https URLs of the
 * webhooks a call's TwiML names.
 */
export interface CallUrls {
  streamUrl: string;
  /** `<Connect action>`: POST /voice/action. */
  actionUrl: string;
  /** `<Dial action>`: POST /voice/dial-action. */
  dialActionUrl: string;
  /** `<Number url>` / `<Sip url>`: POST /voice/whisper (with `?target=&agent=`). */
  whisperUrl: string;
}

/**
 * Where a call's transfer decision is kept (the call store implements it):
 * saved at once, so the `<Connect action>` webhook finds it on any instance.
 * `saveTransfer` resolves once it is durable and rejects when it cannot be.
 */
export interface TransferStore {
  saveTransfer(callSid: string, decision: TransferDecision): Promise<void>;
  transfer(callSid: string): Promise<TransferDecision | undefined>;
}

/**
 * Outbound pacing across every instance sharing the store (the call store
 * implements it): reserve the next free slot, at most one call per
 * `intervalMs` (1000 / OUTBOUND_CPS). Resolves to the epoch ms at which this
 * call may be placed (now or later); rejects when the store cannot answer.
 */
export interface OutboundPacer {
  reserveOutboundSlot(intervalMs: number): Promise<number>;
}

/**
 * Outbound calls as the edge serves them (call/outbound-calls.ts implements
 * it; absent = the routes answer 404): POST /calls places a call, POST
 * /voice/amd takes answering-machine detection's result, and an outbound
 * call's /voice/incoming carries a sealed token (query `o`, signed by Twilio
 * with the URL) naming its agent and context.
 */
export interface OutboundApp {
  /** POST /calls: JSON body (≤ 8 KiB, read by the edge); the handler checks `Authorization` (ADMIN_TOKEN) itself. */
  placeCall(req: { authorization: string | undefined; body: string }): Promise<{ status: number; body: unknown }>;
  /** POST /voice/amd, signed and parsed at the edge, with the call's opened `o` token (its agent) when the URL carries one. Never rejects. */
  amd(callback: AmdCallback, opts?: IncomingOptions | null): Promise<void>;
  /** The `o` token of an outbound call's /voice/incoming: its agent and context, or null when it does not open (forged, expired). */
  openCallToken(token: string): IncomingOptions | null;
}

/** What an outbound call's webhook brings besides the call (opened from its sealed token by the edge). */
export interface IncomingOptions {
  /** The agent's name (one the process loaded); undefined = the default agent. */
  agent?: string;
  /** Per-call context for the model's instructions (e.g. member ID, reason for calling). */
  context?: Record<string, string>;
}

/** Result of the voice webhook: TwiML to answer, or a refusal. */
export type IncomingResult =
  | { ok: true; twiml: string }
  | { ok: false; status: number; message: string };

/**
 * Whether the realtime model endpoint answers, as /voice/health reports it. Times are ISO 8601.
 * Reported only: the model is shared by every instance, so its state never takes one out of rotation.
 */
export interface ModelHealth {
  /**
   * true: the latest connect or probe reached the endpoint; false: it failed, less than
   * MODEL_FAILURE_TTL_MS ago; null: nothing tried yet, or the failure is older than that (`stale`).
   */
  reachable: boolean | null;
  lastOkAt: string | null;
  lastError: string | null;
  lastFailAt?: string | null;
  /** When the endpoint was last tried (a call's connect, a reconnect or a probe). */
  checkedAt?: string | null;
  consecutiveFailures?: number;
  /** The last try failed longer than MODEL_FAILURE_TTL_MS ago: `reachable` is null (unknown). */
  stale?: boolean;
  /** The last try failed: a background probe is scheduled or running (every MODEL_PROBE_INTERVAL_MS) until one succeeds. */
  probing?: boolean;
}

export interface HealthReport {
  /**
   * `ok` → 200; `draining` (shutting down: calls finish, none start once DRAIN_GRACE_MS has passed) → 503.
   * The model's state (`model`) and the store's (`store`) do not change it: both are shared by every
   * instance, so taking this one out of rotation for them would only stop the calls that could still work.
   */
  status: 'ok' | 'draining';
  version: string;
  uptimeSeconds: number;
  activeCalls: number;
  model: ModelHealth;
  /** false: TWILIO_AUTH_TOKEN is not set and requests are taken unsigned (ALLOW_UNSIGNED=true). */
  signed?: boolean;
  /** This instance's name (INSTANCE_ID, or the store's default): what STREAM_URL_TEMPLATE routes on and call rows carry. */
  instanceId?: string;
  /** Calls answered here whose stream has not started yet (each holds a pre-warmed model session). */
  pendingCalls?: number;
  /** The call store as this instance sees it. A database that cannot be written does not change the status: calls go on and their records wait in memory. */
  store?: StoreHealth;
}

/** The call store's state for /voice/health. */
export type StoreHealth =
  | { kind: 'sqlite' }
  | {
      kind: 'postgres';
      /** false after a failed write or heartbeat, until one succeeds. */
      reachable: boolean;
      /** Entries and status callbacks waiting to be written. */
      queued: number;
      /** Entries and status callbacks refused because the queue was full, since start. */
      dropped: number;
      lastError: string | null;
    };

/** Why openStream refused a stream: `capacity` closes it with 1013 (try again later), `draining` with 1001 (going away). */
export interface StreamRefusal {
  refused: 'capacity' | 'draining';
}

/** HTTP-shaped request for the JSON admin API (GET /calls…), already copied out of the edge. */
export interface AdminRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: Record<string, string>;
}

export interface AdminResponse {
  status: number;
  body: unknown;
}

/** The JSON admin API (GET /calls, GET /calls/:sid, DELETE /calls/:sid), served by the edge beside the VoiceApp. */
export type AdminReader = (req: AdminRequest) => Promise<AdminResponse>;

/** A reply with a body of its own type (audio, a byte range of it), and its headers (lower-case names). */
export interface BinaryResponse {
  status: number;
  headers: Record<string, string>;
  type: string;
  body: string | Uint8Array;
}

/** GET /calls/:sid/recording (admin/recording-api.ts): the call's recording as a WAV, ranges too. */
export type RecordingReader = (req: AdminRequest) => Promise<BinaryResponse>;

/**
 * Everything the edge needs from the call layer. The edge checks Twilio
 * signatures itself (it knows the URL and raw form) and parses the bodies;
 * these are called only for requests that passed both (a body that does not
 * parse is answered 400 by the edge).
 */
export interface VoiceApp {
  /** POST /voice/incoming. `urls`: where this instance is reached; `opts`: an outbound call's agent and context (from its sealed token). */
  incoming(call: VoiceWebhook, urls: CallUrls, opts?: IncomingOptions): IncomingResult;
  /** POST /voice/status (call status callback). */
  status(callback: StatusCallback): void;
  /** WS /voice/stream opened: a handler for its frames, or a refusal (null = at capacity, close 1013). */
  openStream(socket: TwilioSocket, info: StreamInfo): StreamHandler | StreamRefusal | null;
  health(): HealthReport;
  /**
   * POST /voice/action?leg=N: the stream of leg N (1..MAX_LEG) closed and Twilio
   * asks what comes next: `<Dial>` when the call's saved transfer decision says
   * so, else `<Hangup/>`. Each leg's action is answered once across instances
   * (a replay → `{ok: false, status: 403}`). Never rejects. Absent = 404.
   */
  connectEnded?(call: ConnectActionWebhook, urls: CallUrls, leg: number): Promise<IncomingResult>;
  /**
   * POST /voice/dial-action?leg=N: the transfer's `<Dial>` of leg N ended:
   * `<Hangup/>` once the person was reached; else the agent's on-failure
   * (a message then `<Hangup/>`, or back to the agent on leg N+1 with the
   * conversation so far). Never rejects. Absent = 404.
   */
  dialEnded?(call: DialActionWebhook, urls: CallUrls, leg: number): Promise<IncomingResult>;
  /** The calls in progress on this instance, for the console's live view. */
  liveCalls?(): LiveCall[];
  /**
   * POST /voice/whisper?target=&agent=: what the person answering a transfer
   * hears before the caller is connected (`<Say>`; an empty `<Response/>` when
   * the target has none). Absent = 404.
   */
  whisper?(target: string, agent: string): IncomingResult;
}

/** A call in progress on this instance, as the console's live view shows it (VoiceApp.liveCalls). */
export interface LiveCall {
  callSid: string;
  /** The caller's number in full (the console masks it unless the viewer's role may see it), or null. */
  from: string | null;
  agent: string;
  /** When its stream started (ISO 8601) and how long it has lasted, ms. */
  startedAt: string;
  durationMs: number;
  /** Who is speaking now: the caller (between speech_started and speech_stopped), the assistant (audio playing), or no one. */
  speaking: 'caller' | 'assistant' | 'none';
  turns: number;
  /** The last turn's latency (speech_stopped → first frame out), ms; null before the first answer. */
  lastTurnMs: number | null;
  /** The model link: up, or being restored (the caller hears the hold prompt). */
  model: 'up' | 'reconnecting' | 'connecting';
  audioMode: string;
}

/** One /console request, copied out of the edge (body read for POST/DELETE, ≤ MAX_BODY_BYTES; null otherwise or when over). */
export interface ConsoleRequest {
  method: string;
  /** Path without the query, e.g. `/console/api/calls`. */
  path: string;
  query: URLSearchParams;
  /** Lower-case names. */
  headers: Record<string, string>;
  body: Buffer | null;
  /** The client's address as the edge sees it (TRUST_PROXY applied). */
  client: string;
}

/**
 * A Server-Sent Events stream: the edge calls `open` once the response head is
 * written, with `send` (writes one chunk; false = the client is slow, the
 * stream should skip a beat) and `end` (the app closes it). `open` returns
 * the function the edge calls when the client goes away (or the server
 * closes): the app stops its timers there. Never throws.
 */
export interface EventStream {
  open(send: (chunk: string) => boolean, end: () => void): () => void;
}

export type ConsoleReply = BinaryResponse | { status: 200; headers: Record<string, string>; stream: EventStream };

/** Everything under /console (src/console/): the page, its assets, its JSON API and its live stream. */
export interface ConsoleApp {
  handle(req: ConsoleRequest): Promise<ConsoleReply>;
}

// ── What a call needs from outside ───────────────────────────────────────

/** The DSP's per-call Transcoder, as far as the call needs it (src/dsp implements it). */
export interface AudioTranscoder {
  inbound(ulaw: Uint8Array): Uint8Array;
  outbound(pcm24: Uint8Array): Uint8Array;
  resetOutbound(): void;
  close(): void;
}

/** What a call reports to process-wide metrics (src/server/metrics implements it). */
export interface CallMetrics {
  turnLatency(ms: number): void;
  protocolError(reason: string): void;
  bargeIn(): void;
  /** The call ended: its reason, and (when it had a stream) how long it lasted and what it used. */
  callEnded(reason: string, figures?: CallEndFigures): void;
  /** What became of a call's recording (`status`), with the reason an incomplete one stopped, in a few words. */
  recording(info: Pick<RecordingInfo, 'status' | 'reason'>): void;
  /** A response ended failed/incomplete with the caller's turn unanswered; `action` is what the call did about it. */
  responseFailed(status: string, action: 'retry' | 'apologize'): void;
  /** The model connection was lost, restored, or given up on. */
  modelLink(what: 'drop' | 'reconnect' | 'give_up'): void;
  /** A stream closed 1008 without being admitted (call/relay.ts): see StartRefusal. */
  streamStartRefused(reason: StartRefusal): void;
  /**
   * A call's model session connect was answered after `ms` (dial to ready, back-off retries
   * included): `ok` false when it failed for good (refused, timed out, unreachable). Not called for
   * a connect the call itself gave up on (the caller went away first).
   */
  modelConnect(ms: number, ok: boolean): void;
}

/** What a call used, for the call metrics (duration, cost). */
export interface CallEndFigures {
  /** From the stream's `start` to the end, ms. */
  durationMs: number;
  /** The model that served it (its prices make the cost). */
  model?: string;
  /** Token usage summed over the call. */
  usage: Usage;
}

/**
 * Why a stream was not admitted: `token` (malformed, or not signed for this CallSid), `expired`
 * (genuine but past its expiry), `replayed` (the call was already taken by a stream),
 * `timeout` (no valid `start` within START_TIMEOUT_MS).
 */
export type StartRefusal = 'token' | 'expired' | 'replayed' | 'timeout';

export const noMetrics: CallMetrics = {
  turnLatency() {},
  protocolError() {},
  bargeIn() {},
  callEnded() {},
  recording() {},
  responseFailed() {},
  modelLink() {},
  streamStartRefused() {},
  modelConnect() {},
};

/** Resolved on the stream's `start`: the model session and who this call is. */
export interface CallAdmission {
  model: Promise<ModelSession>;
  recorder: CallRecorder;
  /**
   * When admission needs an answer that is not there yet (the call claimed in
   * a shared database): resolves null once this stream has the call, or the
   * reason it is refused (the stream is then closed 1008 and the call ends
   * `unauthorized`). The model is not used before it resolves null; audio
   * meanwhile is held as before a model is attached. Never rejects.
   */
  claimed?: Promise<string | null>;
  /** The agent serving this call and which of its streams this is (1 = the first), as the token admitted it. */
  agent?: CallAgent;
  leg?: number;
}
/**
 * Opens one call's recording tap (recording/call-recording.ts over the
 * configured storage and RECORDING_KEY; main.ts builds it). `now`: ms since
 * the stream's start, the clock the tap's times are on. Absent from a
 * relay = recordings cannot be made there (no key).
 */
export type OpenRecording = (call: { callSid: string; leg: number; startedAt: Date; now: () => number }) => CallRecordingTap;

/** An opaque handle from CallTimers (a Node Timeout by default). */
export type TimerHandle = object;

/**
 * The timers a call sets: silence check, maximum duration, DTMF gap, response
 * retries, hold repeats, tool timeouts and fillers. Node's timers by default;
 * tests pass a manual one so that no test waits on real time. Times in ms.
 */
export interface CallTimers {
  /** Call `fn` once, `ms` from now. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  /** Call `fn` every `ms` until cleared. */
  setInterval(fn: () => void, ms: number): TimerHandle;
  /** Cancel a timer of either kind; undefined or one already fired is ignored. */
  clear(handle: TimerHandle | undefined): void;
}

export const nodeTimers: CallTimers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clear: (handle) => clearTimeout(handle as NodeJS.Timeout | undefined),
};
