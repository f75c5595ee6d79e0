/**
 * CallSession: one phone call, from the stream's `start` to its end.
 *
 *   Twilio stream ──media──▶ (transcode) ──▶ ModelSession.appendAudio
 *   ModelSession ──audio──▶ (transcode) ──▶ Playout ──paced 20 ms frames──▶ Twilio
 *
 * It owns the call's lifecycle, barge-in (through Playout), tool calls (never
 * awaited on the audio path: ./tool-runner.ts), DTMF, timers, per-turn latency and the
 * transcript. The agent's call control (transfer_call, end_call, the keypad
 * escape, silence reprompts, the maximum-duration warning) is ./control.ts,
 * which sees every control tool call and keypad digit before anything else.
 * Handlers never throw: a bad message is counted and logged, and only this
 * call is affected. Every promise chain it starts ends in `guard`
 * (a throw there ends this call `error`, logged). The model session admission
 * hands over is closed when the call ends, attached or not (a transcoder that
 * cannot be opened ends the call `error` before it is). Time comes in through
 * `now` and `timers` (CallTimers, ./ports.ts): Node's unless the caller passes others.
 *
 * Per-turn figures: a caller turn (speech_stopped) is answered by the first
 * frame sent of any response started after it; `latencyMs` is speech_stopped →
 * that frame. Its record's `parts` (ms since the stream's start) are the VAD's
 * end of speech (audio_end_ms placed on the call's clock; left out when that
 * cannot be placed: see `modelAudioOriginMs`), speech_stopped's arrival, the
 * answer's first audio delta, its first frame sent, and that frame heard (its
 * mark echoed); for a pipeline provider also the answering response's stages
 * (`turn_stages`: final transcript, first LLM token, first TTS audio), its ms
 * after speech_stopped placed on the call's clock from speech_stopped's
 * arrival. The record is written when heard, or without `heardMs` at the
 * caller's next speech_started or speech_stopped or at the call's end,
 * whichever comes first. The audio path tests one boolean for it per delta.
 */
import { randomUUID } from 'node:crypto';
import { ULAW_BYTES_PER_MS } from '../dsp/format.js';
import type { Logger } from '../log.js';
import { parseTwilioMessage } from '../twilio/media-stream.js';
import type { CallAgent } from './agent.js';
import type { PumpScheduler } from './clock.js';
import { CallControl } from './control.js';
import { Inbound } from './inbound.js';
import { Outbound } from './outbound.js';
import type { ChunkInfo } from './playout.js';
import {
  nodeTimers,
  type AudioTranscoder,
  type CallAdmission,
  type CallMetrics,
  type CallTimers,
  type OpenRecording,
  type StreamHandler,
  type TimerHandle,
  type TransferStore,
  type TwilioSocket,
} from './ports.js';
import { sumPipelineUsage, type CallRecorder, type TurnLatency, type TurnStages } from '../records.js';
import type { CallRecordingTap } from '../recording/types.js';
import { LatencyHistogram } from './stats.js';
import { ToolRunner } from './tool-runner.js';
import { Turns } from './turns.js';
import type { ModelEvent, ModelSession, ResponseStatus, Usage } from './voice-model.js';

export type EndReason =
  | 'caller_hangup'
  | 'stream_closed'
  | 'model_disconnected'
  | 'model_unavailable'
  | 'silence_timeout'
  | 'max_duration'
  | 'unauthorized'
  | 'shutdown'
  | 'error'
  /** The transfer decision was saved and the stream closed: Twilio's `<Connect action>` dials the target. */
  | 'transferred'
  /** The agent said goodbye (end_call) and it was heard. */
  | 'agent_hangup';

export interface CallOptions {
  audioMode: 'transcode' | 'passthrough';
  /** The model serving calls (for the record and its cost). */
  model?: string;
  playoutLeadMs: number;
  /** The lead may grow to this while the event loop is late (adaptive playout); undefined = fixed at playoutLeadMs. */
  playoutLeadMaxMs?: number;
  /** Largest media message to Twilio, ms (whole 20 ms frames); one mark each. */
  outboundChunkMs: number;
  /** Caller audio per append to the model, ms (20 = one per Twilio frame; more = capacity mode). */
  inboundBatchMs: number;
  /** The model's VAD silence duration: how long the end of a caller turn goes out frame by frame in capacity mode. */
  vadSilenceMs: number;
  toolTimeoutMs: number;
  /** A tool still running after this long gets a short spoken "still checking". */
  toolFillerMs: number;
  dtmfGapMs: number;
  /** Back-off before asking again after a failed response, per attempt (ms); its length is the number of retries. */
  responseRetryMs: number[];
  /**
   * Recorded prompts, µ-law 8 kHz: `repeat` when retries of a failed response are used up, `hold`
   * while the model connection is being restored, `apology` when it cannot be, `goodbye` at a drain's end.
   */
  prompts: { repeat: Uint8Array; hold: Uint8Array; apology: Uint8Array; goodbye: Uint8Array };
}

export interface CallDeps {
  socket: TwilioSocket;
  options: CallOptions;
  log: Logger;
  /** The agent serving the call: greeting, tools (run through ToolRunner), and the call-control policies. */
  agent: CallAgent;
  /** Where a transfer decision is saved before the stream is closed for it. */
  transfers: TransferStore;
  /** Which stream of this call this is (1, the default, = the first; a failed transfer back to the agent opens the next). */
  leg?: number;
  /** The caller's number, for tools that are given it. */
  from?: string;
  clock: PumpScheduler;
  metrics: CallMetrics;
  /** Checks the `start` message (per-call token) and hands over the prewarmed model session, or refuses. */
  admit(callSid: string, customParameters: Record<string, string>): CallAdmission | { refused: string };
  openTranscoder(): AudioTranscoder;
  /** Opens the call's recording when its agent records (policies.recording); absent = this relay cannot record (the call goes on unrecorded, logged). */
  openRecording?: OpenRecording;
  onEnded(session: CallSession): void;
  now?: () => number;
  /** Node's timers unless given (tests pass a manual one, like `now`). */
  timers?: CallTimers;
}

type State = 'awaiting_start' | 'connecting' | 'live' | 'ended';

/** After speech_stopped, how long to wait for the server's own response before asking ourselves. */
const SERVER_RESPONSE_WAIT_MS = 2000;
/** Longest wait before a retry, whatever the rate limit says: past it the caller hears the apology path instead. */
const MAX_RETRY_WAIT_MS = 5000;
/** Keypad digits held before they go to the model (sent on '#' or after a pause). */
const MAX_PENDING_DTMF = 32;
/** While the model connection is down, the hold prompt is played again after this long (if nothing else plays). */
const HOLD_REPEAT_MS = 4000;

export class CallSession implements StreamHandler {
  readonly id = randomUUID();
  state: State = 'awaiting_start';
  callSid = '';
  streamSid = '';
  endReason: EndReason | undefined;
  readonly relayIn = new LatencyHistogram();
  readonly turnLatency = new LatencyHistogram();
  protocolErrors = 0;
  /** Responses asked for, failed, retried, and apologies played. */
  readonly responses = { created: 0, failed: 0, retried: 0, apologies: 0 };

  private readonly now: () => number;
  private readonly timer: CallTimers;
  private readonly opts: CallOptions;
  private log: Logger;
  private model: ModelSession | undefined;
  private recorder: CallRecorder | undefined;
  /** The model session admission handed over, until it is attached (`model`): end() closes it either way. */
  private admittedModel: Promise<ModelSession> | undefined;
  private transcoder: AudioTranscoder | undefined;
  private inbound: Inbound | undefined;
  private readonly outbound: Outbound;
  private startedAtMs = 0;
  private startedAtDate = new Date();
  private lastActivityMs = 0;
  private lifeTimers: TimerHandle[] = [];
  private stopReceived = false;

  // Turns: `turns` decides when to ask for a response; the rest tracks what is playing and the turn's latency.
  private readonly turns: Turns;
  private activeResponseId: string | undefined;
  private retryTimer: TimerHandle | undefined;
  private serverResponseTimer: TimerHandle | undefined;
  /** Until when (this.now() ms) the provider says a new response would be rate limited. */
  private rateLimitedUntilMs = 0;
  private turn = 0;
  private turnStartedMs: number | undefined;
  /** Responses started since the caller stopped speaking: the first chunk of any of them answers the turn. */
  private readonly turnResponses = new Set<string>();
  // The turn's parts (TurnLatency.parts), on the call's clock (ms since the stream's start).
  private turnSpeechStoppedMs = 0;
  private turnCallerEndMs: number | undefined;
  private turnFirstDeltaMs: number | undefined;
  /** Pipeline stage times of the turn's responses (turn_stages, on the call's clock), by response: the answering one's go in its record. */
  private readonly turnStages = new Map<string, TurnStages>();
  /** Between speech_stopped and the answer's first audio delta: the only test the audio path makes for it. */
  private awaitingDelta = false;
  /** An answered turn waiting for its first chunk's mark (`unheardMark`) to be echoed before it is written. */
  private unheard: TurnLatency | undefined;
  private unheardMark = 0;
  private lastTurnMs: number | null = null;
  /**
   * Where the model's input audio position 0 is on the call's clock (ms), to place the VAD's audio_end_ms:
   * 0 while the first model session hears the call from its first frame; undefined (the caller's end
   * of speech is left out) when held audio was dropped before it attached, or after a reconnect (the new
   * session starts from the gap audio the link kept, which the call does not see).
   */
  private modelAudioOriginMs: number | undefined = 0;
  /** Between the model's speech_started and speech_stopped (the live view). */
  private callerSpeaking = false;
  private readonly callerItemAtMs = new Map<string, number>();
  /** Tool calls, once the stream has started. */
  private toolRunner: ToolRunner | undefined;
  /** Transfer, hang-up, keypad escape, reprompts, warning: once the stream has started. */
  private control: CallControl | undefined;
  private dtmfDigits = '';
  private dtmfTimer: TimerHandle | undefined;
  // The model connection, while it is being restored.
  private holding = false;
  private holdTimer: TimerHandle | undefined;
  private linkLost: { atMs: number; cause: string } | undefined;
  /** The call's recording (caller | heard), while it is recorded; see ../recording/. */
  private tap: CallRecordingTap | undefined;
  private tapScratch: Buffer | undefined;
  /** Token usage summed over the call, for the call metrics. */
  private readonly usageTotal: Usage = { inputTextTokens: 0, inputAudioTokens: 0, inputCachedTokens: 0, inputCachedAudioTokens: 0, outputTextTokens: 0, outputAudioTokens: 0 };

  constructor(private readonly deps: CallDeps) {
    this.now = deps.now ?? (() => performance.now());
    this.timer = deps.timers ?? nodeTimers;
    this.opts = deps.options;
    this.log = deps.log;
    this.turns = new Turns(
      {
        createResponse: (instructions) => {
          this.responses.created++;
          this.inbound?.flush(); // the model answers what it has heard
          this.model?.createResponse(instructions);
        },
      },
      this.opts.responseRetryMs.length,
    );
    this.outbound = new Outbound({
      socket: deps.socket,
      clock: deps.clock,
      leadMs: this.opts.playoutLeadMs,
      leadMaxMs: this.opts.playoutLeadMaxMs,
      chunkMs: this.opts.outboundChunkMs,
      now: this.now,
      sinceStart: (now) => this.sinceStart(now),
      onChunk: (info, now) => this.onChunkSent(info, now),
      onHeard: (mark, now) => this.onChunkHeard(mark, now),
      onLine: (line) => this.recorder?.transcript(line),
      truncate: (itemId, ms) => this.model?.truncate(itemId, ms),
      onAudioOut: (buf, start, end, playAtMs) => this.tap?.heard(buf, start, end, playAtMs - this.startedAtMs),
      onClear: (now) => this.tap?.cleared(now - this.startedAtMs),
    });
  }

  /** Relay-added latency of model audio (delta in → queued for Twilio), per message. */
  get relayOut(): LatencyHistogram {
    return this.outbound.latency;
  }

  // ── The live view (Relay.liveCalls): each read is a field or two, nothing on the audio path ──

  /** The caller's number, when this instance answered the call. */
  get from(): string | undefined {
    return this.deps.from;
  }

  /** The agent serving the call (its file's name). */
  get agentName(): string {
    return this.deps.agent.name;
  }

  get audioMode(): string {
    return this.opts.audioMode;
  }

  /** When the stream started (its `start` message). */
  get startedAt(): Date {
    return this.startedAtDate;
  }

  /** ms since the stream started. */
  get durationMs(): number {
    return this.sinceStart();
  }

  /** The caller between the model's speech_started and speech_stopped; else the assistant while its audio plays; else no one. */
  get speaking(): 'caller' | 'assistant' | 'none' {
    if (this.callerSpeaking) return 'caller';
    return this.outbound.speaking ? 'assistant' : 'none';
  }

  /** Caller turns so far (speech_stopped events). */
  get turnCount(): number {
    return this.turn;
  }

  /** The last answered turn's latency (speech_stopped → first frame out), ms; null before the first. */
  get lastTurnLatencyMs(): number | null {
    return this.lastTurnMs;
  }

  /** The model: not attached yet, being restored (the caller is on hold), or up. */
  get modelState(): 'connecting' | 'reconnecting' | 'up' {
    if (this.state === 'awaiting_start' || this.state === 'connecting') return 'connecting';
    return this.linkLost !== undefined || this.holding ? 'reconnecting' : 'up';
  }

  /** Messages that left for Twilio with audio, and appends sent to the model (bench, tests). */
  get counts(): { chunksOut: number; appendsIn: number; framesIn: number } {
    return { chunksOut: this.outbound.chunksSent, appendsIn: this.inbound?.appends ?? 0, framesIn: this.inbound?.frames ?? 0 };
  }

  // ── StreamHandler: Twilio → call ──────────────────────────────────────

  onText(text: string): void {
    const t0 = this.now();
    const parsed = parseTwilioMessage(text, this.streamSid); // '' before `start`
    if (!parsed.ok) return this.protocolError('malformed', parsed.error);
    const msg = parsed.msg;
    try {
      switch (msg.event) {
        case 'connected':
          return;
        case 'start':
          return this.handleStart(msg.streamSid, msg.start.callSid, msg.start.customParameters, msg.start.mediaFormat);
        case 'media':
          if (!this.checkStream(msg.streamSid)) return;
          return this.handleMedia(msg.media.payload, msg.media.timestamp, t0);
        case 'mark':
          if (!this.checkStream(msg.streamSid)) return;
          return this.outbound.mark(msg.mark.name, t0);
        case 'dtmf':
          if (!this.checkStream(msg.streamSid)) return;
          return this.handleDtmf(msg.dtmf.digit);
        case 'stop':
          if (!this.checkStream(msg.streamSid)) return;
          this.stopReceived = true;
          return this.end('caller_hangup');
        default: {
          const never: never = msg;
          return this.protocolError('unknown_event', String((never as { event?: unknown }).event));
        }
      }
    } catch (err) {
      this.log.error({ err }, 'call handler failed');
      this.end('error');
    }
  }

  onBinary(byteLength: number): void {
    this.protocolError('binary_frame', `${byteLength} bytes`);
  }

  onDrain(): void {
    this.outbound.drain();
  }

  onClose(code: number, reason: string): void {
    this.log.debug({ code, reason }, 'stream closed');
    this.end(this.stopReceived ? 'caller_hangup' : 'stream_closed', false);
  }

  // ── Twilio message handlers ───────────────────────────────────────────

  private handleStart(
    streamSid: string,
    callSid: string,
    params: Record<string, string>,
    format: { encoding: string; sampleRate: number; channels: number },
  ): void {
    if (this.state !== 'awaiting_start') return this.protocolError('duplicate_start', streamSid);
    if (format.encoding !== 'audio/x-mulaw' || format.sampleRate !== 8000 || format.channels !== 1) {
      this.protocolError('media_format', `${format.encoding}/${format.sampleRate}/${format.channels}`);
      this.state = 'ended';
      this.endReason = 'error';
      this.deps.socket.close(1003, 'unsupported media format');
      this.deps.onEnded(this);
      return;
    }
    this.streamSid = streamSid;
    this.callSid = callSid;
    this.log = this.log.child({ callSid, streamSid });
    const admission = this.deps.admit(callSid, params);
    if ('refused' in admission) {
      this.log.warn({ reason: admission.refused }, 'stream refused');
      this.state = 'ended';
      this.endReason = 'unauthorized';
      this.deps.socket.close(1008, 'unauthorized');
      this.deps.onEnded(this);
      return;
    }
    this.state = 'connecting';
    this.recorder = admission.recorder;
    this.admittedModel = admission.model;
    this.startedAtMs = this.now();
    this.startedAtDate = new Date();
    this.lastActivityMs = this.startedAtMs;
    this.recorder.started({ callSid, streamSid, audioMode: this.opts.audioMode, startedAt: this.startedAtDate, model: this.opts.model });
    this.control = this.newControl(callSid);
    this.toolRunner = new ToolRunner({
      tools: this.deps.agent.tools,
      from: this.deps.from,
      timers: this.timer,
      now: this.now,
      sinceStart: () => this.sinceStart(),
      log: this.log,
      recorder: this.recorder,
      callSid,
      timeoutMs: this.opts.toolTimeoutMs,
      fillerMs: this.opts.toolFillerMs,
      fill: (instructions) => {
        if (this.state === 'live' && !this.outbound.speaking && !this.control?.closing) this.turns.request('filler', instructions);
      },
      deliver: (id, output) => {
        if (this.state !== 'live' || !this.model) return;
        this.model.sendToolResult(id, output, false);
        this.turns.toolOutput(id);
      },
      guard: (chain) => this.guard(chain),
    });
    if (this.opts.audioMode === 'transcode') {
      try {
        this.transcoder = this.deps.openTranscoder();
      } catch (err) {
        // No DSP channel (all slots in use): the call cannot be served. end() closes the admitted model session.
        this.log.error({ err }, 'cannot open a transcoder for this call: ending it');
        this.recorder.event({ atMs: this.sinceStart(), type: 'error', detail: `transcoder: ${err instanceof Error ? err.message : String(err)}` });
        return this.end('error');
      }
    }
    this.inbound = new Inbound({ transcoder: this.transcoder, batchMs: this.opts.inboundBatchMs, vadSilenceMs: this.opts.vadSilenceMs });
    this.outbound.start(streamSid, this.transcoder);
    this.startRecording(callSid);
    const { silence, maxDuration } = this.deps.agent.policies;
    this.lifeTimers.push(this.timer.setTimeout(() => this.end('max_duration'), maxDuration.maxCallMs));
    this.lifeTimers.push(this.timer.setInterval(() => this.checkSilence(), Math.min(1000, silence.timeoutMs, silence.repromptAfterMs ?? Infinity)));
    this.control.start();
    const useModel = () =>
      admission.model.then(
        (model) => this.onModelReady(model),
        (err: unknown) => {
          this.log.error({ err: err instanceof Error ? err.message : String(err) }, 'model session unavailable');
          this.end('model_unavailable');
        },
      );
    if (!admission.claimed) return this.guard(useModel());
    this.guard(
      admission.claimed.then((refused) => {
        if (refused === null) return useModel();
        if (this.state === 'ended') return;
        this.log.warn({ reason: refused }, 'stream refused');
        this.end('unauthorized', false);
        this.deps.socket.close(1008, 'unauthorized');
      }),
    );
  }

  /**
   * The last word on a promise chain of this call: a throw in it (a bug) ends
   * this call as `error`, logged, and never reaches the process.
   */
  private guard(chain: Promise<unknown>): void {
    chain.catch((err: unknown) => {
      try {
        this.log.error({ err }, 'call handler failed');
        this.end('error');
      } catch (again) {
        try {
          this.log.error({ err: again }, 'ending the call after a failure failed too');
        } catch {
          // nothing left to tell
        }
      }
    });
  }

  private onModelReady(model: ModelSession): void {
    if (this.state !== 'connecting') return; // ended meanwhile: end() closes it
    this.model = model;
    this.state = 'live';
    this.outbound.setLive(true);
    model.onEvent((ev) => this.onModelEvent(ev));
    const dropped = this.inbound!.earlyDropped;
    this.modelAudioOriginMs = dropped > 0 ? undefined : 0;
    this.inbound!.attach((b64) => model.appendAudio(b64));
    if (dropped > 0) this.log.warn({ dropped }, 'caller audio held while the model connected went over its bound: the oldest was dropped');
    if (this.deps.agent.greeting) this.turns.request('greeting', this.deps.agent.greeting);
  }

  private handleMedia(payload: string, timestampMs: number, t0: number): void {
    if (this.state !== 'live' && this.state !== 'connecting') {
      return this.protocolError('media_before_start', this.state);
    }
    this.inbound!.frame(payload);
    this.relayIn.record(this.now() - t0);
    if (this.tap) {
      // After the relay's own work: the recording copies the frame and writes it later, off the audio path.
      const need = (payload.length * 3) >> 2;
      if (!this.tapScratch || this.tapScratch.length < need) this.tapScratch = Buffer.alloc(Math.max(need, 320));
      const n = this.tapScratch.write(payload, 'base64');
      this.tap.caller(this.tapScratch.subarray(0, n), timestampMs);
    }
  }

  /**
   * A recorded agent's call: open its recording and play the disclosure (before
   * the greeting: the playout is first in, first out). No recorder here (no
   * RECORDING_KEY on this instance) = the call goes on unrecorded, said in the
   * log and the record.
   */
  private startRecording(callSid: string): void {
    const policy = this.deps.agent.policies.recording;
    if (!policy?.enabled) return;
    if (!this.deps.openRecording) {
      this.log.warn('the agent records its calls but this instance cannot record (RECORDING_KEY is not set): the call is not recorded');
      this.recorder?.event({ atMs: this.sinceStart(), type: 'recording_unavailable', detail: 'RECORDING_KEY is not set on the instance that took the stream' });
      return;
    }
    try {
      this.tap = this.deps.openRecording({ callSid, leg: this.deps.leg ?? 1, startedAt: this.startedAtDate, now: () => this.now() - this.startedAtMs });
    } catch (err) {
      this.log.error({ err }, 'cannot open the call recording: the call is not recorded');
      this.recorder?.event({ atMs: this.sinceStart(), type: 'recording_unavailable', detail: err instanceof Error ? err.message : String(err) });
      return;
    }
    if (policy.disclosure) this.outbound.playPrompt(policy.disclosure);
  }

  /** The caller pressed the opt-out digit: the recording is dropped for good (nothing of this call is kept). */
  private optOutOfRecording(digit: string): void {
    this.tap?.optOut();
    this.recorder?.transcript({ atMs: this.sinceStart(), speaker: 'dtmf', text: digit });
    this.recorder?.event({ atMs: this.sinceStart(), type: 'recording_opted_out', detail: 'the caller pressed the opt-out key: nothing of the recording is kept' });
    this.log.info('the caller opted out of the recording');
  }

  /** The call is over: the recording writes what is left; its outcome goes to the record and the metrics when settled. */
  private finishRecording(): void {
    const tap = this.tap;
    if (!tap) return;
    this.tap = undefined;
    const endMs = this.now() - this.startedAtMs;
    tap.cleared(endMs); // audio sent ahead and not yet played when the call ended was never heard
    void tap.finish(endMs).then((info) => {
      try {
        this.recorder?.recording(info);
        this.deps.metrics.recording(info);
        if (info.status === 'incomplete') this.log.warn({ reason: info.reason, stored: info.object !== null }, 'the call recording is incomplete');
      } catch (err) {
        this.log.error({ err }, 'keeping the recording outcome failed');
      }
    });
  }

  private handleDtmf(digit: string): void {
    if (this.state !== 'live') return;
    this.lastActivityMs = this.now();
    this.control?.callerKey();
    if (this.tap && digit === this.deps.agent.policies.recording?.optOutDigit) return this.optOutOfRecording(digit);
    if (this.control?.keypad(digit, this.dtmfDigits.length > 0)) {
      this.recorder?.transcript({ atMs: this.sinceStart(), speaker: 'dtmf', text: digit });
      return;
    }
    // A stuck key. The digits may be a member ID: the log gets their count only.
    if (this.dtmfDigits.length >= MAX_PENDING_DTMF) return this.protocolError('dtmf_overflow', `${this.dtmfDigits.length} digits pending`);
    this.dtmfDigits += digit;
    this.recorder?.transcript({ atMs: this.sinceStart(), speaker: 'dtmf', text: digit });
    if (this.dtmfTimer) this.timer.clear(this.dtmfTimer);
    const flush = () => {
      this.dtmfTimer = undefined;
      const digits = this.dtmfDigits;
      this.dtmfDigits = '';
      if (!digits || !this.model || this.state !== 'live') return;
      this.model.sendUserText(`The caller pressed these keys on the phone keypad: ${digits}`);
      this.turns.request('dtmf');
    };
    if (digit === '#') flush();
    else this.dtmfTimer = this.timer.setTimeout(flush, this.opts.dtmfGapMs);
  }

  // ── Model → call ──────────────────────────────────────────────────────

  private onModelEvent(ev: ModelEvent): void {
    // Ending, only what the model billed last still counts (a provider reports it as it closes, before the record ends).
    if (this.state === 'ended' && ev.type !== 'usage') return;
    try {
      switch (ev.type) {
        case 'ready':
          return;
        case 'speech_started':
          return this.handleSpeechStarted(ev.itemId);
        case 'speech_stopped':
          return this.handleSpeechStopped(ev.audioEndMs);
        case 'response_started':
          return this.handleResponseStarted(ev.responseId);
        case 'audio':
          if (this.holding) this.stopHold();
          if (this.awaitingDelta && this.turnResponses.has(ev.responseId)) {
            this.awaitingDelta = false;
            this.turnFirstDeltaMs = this.sinceStart();
          }
          return this.outbound.audio(ev.responseId, ev.itemId, ev.audio);
        case 'audio_done':
          return this.outbound.audioDone(ev.itemId);
        case 'assistant_transcript_delta':
          return; // the record takes the final text (assistant_transcript); the link keeps the text so far for a replay
        case 'assistant_transcript':
          return this.outbound.transcript(ev.itemId, ev.text, ev.words);
        case 'caller_transcript':
          return this.handleCallerTranscript(ev.itemId, ev.text);
        case 'tool_call':
          return this.handleToolCall(ev.responseId, ev.callId, ev.name, ev.arguments);
        case 'response_done':
          return this.handleResponseDone(ev.responseId, ev.status, ev.reason, ev.usage);
        case 'usage':
          return this.addUsage(ev.usage);
        case 'turn_stages':
          return this.handleTurnStages(ev.responseId, ev.finalTranscriptMs, ev.firstTokenMs, ev.firstTtsAudioMs);
        case 'rate_limits':
          return this.handleRateLimits(ev.limits);
        case 'error':
          return this.handleModelError(ev.code, ev.message);
        case 'link_lost':
          return this.handleLinkLost(ev.cause);
        case 'link_restored':
          return this.handleLinkRestored(ev.attempts, ev.gapMs, ev.unansweredTurn);
        case 'link_failed':
          return this.handleLinkFailed(ev.attempts, ev.reason);
        case 'closed':
          this.log.warn({ reason: ev.reason, retryable: ev.retryable }, 'model session closed');
          return this.end('model_disconnected');
        default: {
          const never: never = ev;
          this.log.debug({ ev: never }, 'unhandled model event');
        }
      }
    } catch (err) {
      this.log.error({ err }, 'model event handler failed');
    }
  }

  private handleSpeechStarted(itemId: string): void {
    const now = this.now();
    this.lastActivityMs = now;
    this.callerItemAtMs.set(itemId, this.sinceStart(now));
    this.callerSpeaking = true;
    this.writeUnheard(); // the cut below drops its chunk's mark if it is still unheard: it never will be
    this.control?.callerStarted(); // before the cut: a hang-up is called off, not completed by it
    this.turns.callerStarted();
    this.clearRetry();
    if (this.activeResponseId) {
      this.outbound.cancel(this.activeResponseId);
      this.activeResponseId = undefined;
    }
    if (this.outbound.cutPlayback(now)) {
      this.deps.metrics.bargeIn();
      this.log.debug('barge-in');
    }
  }

  private handleSpeechStopped(audioEndMs: number): void {
    this.writeUnheard();
    this.callerSpeaking = false;
    this.turn++;
    const now = this.now();
    this.turnStartedMs = now;
    this.turnResponses.clear();
    this.turnSpeechStoppedMs = this.sinceStart(now);
    this.turnFirstDeltaMs = undefined;
    this.turnStages.clear();
    this.awaitingDelta = true;
    // The VAD's end of speech on the call's clock; a value after speech_stopped's arrival means the origin is off: left out.
    const callerEndMs = this.modelAudioOriginMs === undefined ? undefined : Math.round(this.modelAudioOriginMs + audioEndMs);
    this.turnCallerEndMs = callerEndMs !== undefined && callerEndMs >= 0 && callerEndMs <= this.turnSpeechStoppedMs ? callerEndMs : undefined;
    // Server VAD answers the turn itself (create_response); if it does not (it heard no turn), stop waiting for it.
    this.turns.callerStopped(true);
    if (this.serverResponseTimer) this.timer.clear(this.serverResponseTimer);
    this.serverResponseTimer = this.timer.setTimeout(() => {
      this.serverResponseTimer = undefined;
      if (this.state === 'live') this.turns.serverResponseOverdue();
    }, SERVER_RESPONSE_WAIT_MS);
  }

  private handleResponseStarted(responseId: string): void {
    this.activeResponseId = responseId;
    if (this.serverResponseTimer) this.timer.clear(this.serverResponseTimer);
    this.serverResponseTimer = undefined;
    this.turns.responseCreated(responseId);
    if (this.turnStartedMs !== undefined) this.turnResponses.add(responseId);
  }

  private handleCallerTranscript(itemId: string, text: string): void {
    const atMs = this.callerItemAtMs.get(itemId) ?? this.sinceStart();
    this.callerItemAtMs.delete(itemId);
    if (text.trim()) this.recorder?.transcript({ atMs, speaker: 'caller', text: text.trim() });
  }

  private handleResponseDone(responseId: string, status: ResponseStatus, reason: string | undefined, usage: Usage | undefined): void {
    if (usage) this.addUsage(usage);
    if (this.activeResponseId === responseId) this.activeResponseId = undefined;
    const after = this.turns.responseDone(responseId, { status, reason });
    this.control?.responseDone(responseId);
    if (after.action === 'none' || this.state !== 'live') return;
    this.responses.failed++;
    this.deps.metrics.responseFailed(status, after.action);
    this.recorder?.event({ atMs: this.sinceStart(), type: 'response_failed', detail: `${status}${reason ? ` (${reason})` : ''} → ${after.action}` });
    this.log.warn({ responseId, status, reason, action: after.action }, 'response failed: the caller is still waiting for an answer');
    if (after.action === 'retry') {
      const backoffMs = this.opts.responseRetryMs[after.attempt - 1] ?? 1000;
      const delayMs = Math.max(backoffMs, this.rateLimitedUntilMs - this.now());
      const instructions = this.turns.lastFailedInstructions;
      this.clearRetry();
      this.retryTimer = this.timer.setTimeout(() => {
        this.retryTimer = undefined;
        if (this.state !== 'live') return;
        this.responses.retried++;
        this.turns.retry(instructions);
      }, Math.min(delayMs, MAX_RETRY_WAIT_MS));
    } else {
      this.responses.apologies++;
      this.outbound.playPrompt(this.opts.prompts.repeat);
    }
  }

  private addUsage(usage: Usage): void {
    this.recorder?.usage(usage);
    const t = this.usageTotal;
    t.inputTextTokens += usage.inputTextTokens;
    t.inputAudioTokens += usage.inputAudioTokens;
    t.inputCachedTokens += usage.inputCachedTokens;
    t.inputCachedAudioTokens = (t.inputCachedAudioTokens ?? 0) + (usage.inputCachedAudioTokens ?? 0);
    t.outputTextTokens += usage.outputTextTokens;
    t.outputAudioTokens += usage.outputAudioTokens;
    if (usage.activeAudioSeconds !== undefined) t.activeAudioSeconds = (t.activeAudioSeconds ?? 0) + usage.activeAudioSeconds;
    if (usage.pipeline) t.pipeline = t.pipeline ? sumPipelineUsage(t.pipeline, usage.pipeline) : { ...usage.pipeline };
  }

  /**
   * A pipeline response's stage times, ms after the turn's speech_stopped: kept on the call's clock until the
   * turn is answered, and put in its record if this response answers it. None while no turn waits for an answer.
   */
  private handleTurnStages(responseId: string, finalTranscriptMs?: number, firstTokenMs?: number, firstTtsAudioMs?: number): void {
    if (this.turnStartedMs === undefined) return;
    const at = (ms: number | undefined) => (ms === undefined || !Number.isFinite(ms) ? undefined : Math.max(0, Math.round(this.turnSpeechStoppedMs + ms)));
    const stages: TurnStages = {};
    const transcript = at(finalTranscriptMs);
    const token = at(firstTokenMs);
    const audio = at(firstTtsAudioMs);
    if (transcript !== undefined) stages.finalTranscriptMs = transcript;
    if (token !== undefined) stages.firstTokenMs = token;
    if (audio !== undefined) stages.firstTtsAudioMs = audio;
    if (Object.keys(stages).length > 0) this.turnStages.set(responseId, stages);
  }

  private handleRateLimits(limits: { name: string; remaining: number; resetMs: number }[]): void {
    let until = 0;
    for (const l of limits) if (l.remaining <= 0) until = Math.max(until, this.now() + l.resetMs);
    this.rateLimitedUntilMs = until;
  }

  private handleModelError(code: string, message: string): void {
    // Our response.create raced one the server started itself: what we asked for waits for that one to end.
    if (code === 'conversation_already_has_active_response') this.turns.createRejected();
    this.log.warn({ code, message }, 'model error');
  }

  // ── The model connection (src/call/model-link.ts reconnects; the call keeps the caller company) ──

  private handleLinkLost(cause: string): void {
    this.linkLost = { atMs: this.sinceStart(), cause };
    this.callerSpeaking = false; // the session that would say speech_stopped is gone
    this.modelAudioOriginMs = undefined; // the next session's audio positions start where the call cannot see
    this.deps.metrics.modelLink('drop');
    this.log.warn({ cause }, 'model connection lost: holding the caller while it is restored');
    if (this.activeResponseId) this.outbound.cancel(this.activeResponseId);
    this.activeResponseId = undefined;
    this.turns.reset();
    this.clearRetry();
    // What the caller heard is what the new session is told was said: cut playback here, then hold.
    this.outbound.cutPlayback(this.now());
    this.holding = true;
    this.outbound.playPrompt(this.opts.prompts.hold);
    if (this.holdTimer) this.timer.clear(this.holdTimer);
    this.holdTimer = this.timer.setInterval(() => {
      if (this.state === 'live' && this.holding && !this.outbound.speaking) this.outbound.playPrompt(this.opts.prompts.hold);
    }, HOLD_REPEAT_MS);
  }

  private handleLinkRestored(attempts: number, gapMs: number, unansweredTurn: boolean): void {
    if (this.holdTimer) this.timer.clear(this.holdTimer);
    this.holdTimer = undefined;
    this.deps.metrics.modelLink('reconnect');
    const cause = this.linkLost?.cause ?? 'unknown';
    this.recorder?.event({ atMs: this.linkLost?.atMs ?? this.sinceStart(), type: 'model_reconnected', detail: `${cause}; ${attempts} attempt(s); gap ${Math.round(gapMs)} ms` });
    this.log.info({ cause, attempts, gapMs: Math.round(gapMs), unansweredTurn }, 'model connection restored');
    this.linkLost = undefined;
    // The hold prompt stops when the model speaks again (or plays out if it has nothing to say).
    if (unansweredTurn) this.turns.retry();
  }

  private handleLinkFailed(attempts: number, reason: string): void {
    if (this.holdTimer) this.timer.clear(this.holdTimer);
    this.holdTimer = undefined;
    this.deps.metrics.modelLink('give_up');
    this.recorder?.event({ atMs: this.sinceStart(), type: 'model_unavailable', detail: `${reason}; ${attempts} attempt(s)` });
    this.log.error({ attempts, reason }, 'model connection could not be restored: apologising and ending the call');
    this.outbound.cutPlayback(this.now()); // stop the hold prompt
    this.holding = false;
    const apology = this.opts.prompts.apology;
    this.outbound.playPrompt(apology);
    this.lifeTimers.push(this.timer.setTimeout(() => this.end('model_unavailable'), apology.length / ULAW_BYTES_PER_MS + this.opts.playoutLeadMs + 200));
  }

  private stopHold(): void {
    this.holding = false;
    this.outbound.cutPlayback(this.now()); // clears the prompt at Twilio; prompts are never truncated at the model
  }

  private clearRetry(): void {
    if (this.retryTimer) this.timer.clear(this.retryTimer);
    this.retryTimer = undefined;
  }

  private handleToolCall(responseId: string, callId: string, name: string, args: string): void {
    this.turns.toolCall(responseId, callId);
    if (this.control?.toolCall(responseId, callId, name, args)) return;
    this.toolRunner?.run(callId, name, args);
  }

  /** The call control's port: what it may see and do of this call. */
  private newControl(callSid: string): CallControl {
    return new CallControl({
      callSid,
      agent: this.deps.agent.name,
      leg: this.deps.leg ?? 1,
      policies: this.deps.agent.policies,
      transfers: this.deps.transfers,
      timers: this.timer,
      log: this.log,
      sinceStart: () => this.sinceStart(),
      event: (type, detail) => this.recorder?.event(detail === undefined ? { atMs: this.sinceStart(), type } : { atMs: this.sinceStart(), type, detail }),
      toolStarted: (name) => this.recorder?.transcript({ atMs: this.sinceStart(), speaker: 'tool', text: `${name} called` }),
      recordTool: (rec) => this.recorder?.toolCall(rec),
      toolResult: (callId, output, respond) => {
        if (this.state !== 'live' || !this.model) return;
        this.model.sendToolResult(callId, output, false); // the follow-up, if any, is asked for by turns (one per round)
        this.turns.toolOutput(callId, respond);
      },
      request: (kind, instructions) => {
        if (this.state === 'live') this.turns.request(kind, instructions);
      },
      tell: (text) => {
        if (this.state !== 'live' || !this.model) return;
        this.model.sendUserText(text);
        this.turns.request('dtmf');
      },
      responseActive: (responseId) => this.activeResponseId === responseId,
      whenHeard: (cb) => this.outbound.whenHeard(cb),
      stopSpeaking: () => {
        this.clearRetry();
        if (this.activeResponseId) {
          this.outbound.cancel(this.activeResponseId);
          this.model?.cancelResponse();
          this.activeResponseId = undefined;
        }
        this.outbound.cutPlayback(this.now());
      },
      end: (reason) => this.end(reason),
      guard: (chain) => this.guard(chain),
    });
  }

  // ── Outbound audio ─────────────────────────────────────────────────────

  private onChunkSent(info: ChunkInfo, now: number): void {
    this.lastActivityMs = now;
    if (this.turnStartedMs !== undefined && this.turnResponses.has(info.responseId)) {
      const ms = now - this.turnStartedMs;
      this.turnStartedMs = undefined;
      this.turnResponses.clear();
      this.awaitingDelta = false;
      this.turnLatency.record(ms);
      this.deps.metrics.turnLatency(ms);
      this.lastTurnMs = Math.round(ms);
      this.writeUnheard();
      const parts: NonNullable<TurnLatency['parts']> = { speechStoppedMs: this.turnSpeechStoppedMs, firstFrameMs: this.sinceStart(now) };
      if (this.turnCallerEndMs !== undefined) parts.callerEndMs = this.turnCallerEndMs;
      if (this.turnFirstDeltaMs !== undefined) parts.firstDeltaMs = this.turnFirstDeltaMs;
      const stages = this.turnStages.get(info.responseId);
      if (stages) parts.stages = stages;
      this.turnStages.clear();
      // Written once its first chunk is heard (heardMs), or without heardMs at the next turn or the call's end.
      this.unheard = { turn: this.turn, latencyMs: this.lastTurnMs, parts };
      this.unheardMark = info.mark;
    }
  }

  /** Twilio acknowledged chunks up to `mark`: the answered turn waiting for its first chunk is written, heard. */
  private onChunkHeard(mark: number, now: number): void {
    if (!this.unheard || mark < this.unheardMark) return;
    this.unheard.parts!.heardMs = this.sinceStart(now);
    this.writeUnheard();
  }

  /** Write the answered turn still waiting for its heard mark (as it stands). */
  private writeUnheard(): void {
    const t = this.unheard;
    if (!t) return;
    this.unheard = undefined;
    this.recorder?.turnLatency(t);
  }

  // ── Helpers ────────────────────────────────────────────────────────────

  private checkStream(streamSid: string): boolean {
    if (this.state === 'awaiting_start') {
      this.protocolError('before_start', streamSid);
      return false;
    }
    if (streamSid !== this.streamSid) {
      this.protocolError('wrong_stream_sid', streamSid);
      return false;
    }
    return true;
  }

  private protocolError(reason: string, detail: string): void {
    this.protocolErrors++;
    this.deps.metrics.protocolError(reason);
    // Log the first few per call, then every 100th: a broken peer must not flood the log.
    if (this.protocolErrors <= 5 || this.protocolErrors % 100 === 0) {
      this.log.warn({ reason, detail: detail.slice(0, 120), count: this.protocolErrors }, 'twilio protocol error');
    }
  }

  private checkSilence(): void {
    const now = this.now();
    const idle = now - this.lastActivityMs;
    if (this.outbound.speaking || this.activeResponseId) return;
    if (idle >= this.deps.agent.policies.silence.timeoutMs) return this.end('silence_timeout');
    if (this.state === 'live' && !this.turns.busy) this.control?.silence(now, this.lastActivityMs);
  }

  private sinceStart(now = this.now()): number {
    return Math.max(0, Math.round(now - this.startedAtMs));
  }

  /**
   * A drain's deadline: stop what is playing, say the goodbye prompt, then end
   * the call as `shutdown`. A call not yet live ends at once.
   */
  goodbye(): void {
    if (this.state !== 'live') return this.end('shutdown');
    if (this.activeResponseId) this.outbound.cancel(this.activeResponseId);
    this.activeResponseId = undefined;
    this.clearRetry();
    if (this.holdTimer) this.timer.clear(this.holdTimer);
    this.holding = false;
    this.outbound.cutPlayback(this.now());
    const bye = this.opts.prompts.goodbye;
    this.outbound.playPrompt(bye);
    this.lifeTimers.push(this.timer.setTimeout(() => this.end('shutdown'), bye.length / ULAW_BYTES_PER_MS + this.opts.playoutLeadMs + 200));
  }

  /** End the call once: stop timers, close the model and the stream, write the record. */
  end(reason: EndReason, closeSocket = true): void {
    if (this.state === 'ended') return;
    const wasStarted = this.state !== 'awaiting_start';
    this.state = 'ended';
    this.endReason = reason;
    this.control?.stop();
    for (const t of this.lifeTimers) this.timer.clear(t);
    if (this.dtmfTimer) this.timer.clear(this.dtmfTimer);
    if (this.serverResponseTimer) this.timer.clear(this.serverResponseTimer);
    if (this.holdTimer) this.timer.clear(this.holdTimer);
    this.clearRetry();
    this.outbound.setLive(false);
    this.inbound?.flush(); // capacity mode: what is held still reaches the model (it has heard the whole call)
    if (this.model) this.model.close();
    else this.admittedModel?.then((m) => m.close(), () => {}); // never attached: not left open (a pre-warm reconnects for ever)
    this.transcoder?.close();
    if (wasStarted) {
      try {
        this.outbound.finishAll();
        this.writeUnheard();
        const inb = this.relayIn.summary();
        const out = this.relayOut.summary();
        this.recorder?.ended({
          endedAt: new Date(),
          reason,
          relay: { inbound: { p50Ms: inb.p50Ms, p99Ms: inb.p99Ms }, outbound: { p50Ms: out.p50Ms, p99Ms: out.p99Ms } },
          protocolErrors: this.protocolErrors,
        });
      } catch (err) {
        // The call still ends (stream closed, slot freed); the record shows it unfinished.
        this.log.error({ err }, 'writing the end of the call record failed');
      }
    }
    this.finishRecording();
    this.deps.metrics.callEnded(reason, wasStarted ? { durationMs: this.sinceStart(), model: this.opts.model, usage: this.usageTotal } : undefined);
    this.log.info({ reason, turns: this.turn, protocolErrors: this.protocolErrors }, 'call ended');
    if (closeSocket) this.deps.socket.close(reason === 'error' ? 1011 : 1000, reason);
    this.deps.onEnded(this);
  }
}
