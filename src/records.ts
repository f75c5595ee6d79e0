/**
 * What a call leaves in its record: transcript lines, tool calls, turn
 * latencies, call events, usage, start and end, and the CallRecorder a call
 * writes them through. A leaf module: call/ writes these, store/ keeps them
 * (store/recorder.ts implements CallRecorder over the CallStore), and
 * neither imports the other for them. Every CallRecorder method is
 * fire-and-forget and must not block audio.
 * Times: `atMs` is ms since the call started (stream `start`).
 */
import type { RecordingInfo } from './recording/types.js';

export type { RecordingInfo };

/** Token usage of one response (from the provider's usage report). */
export interface Usage {
  inputTextTokens: number;
  inputAudioTokens: number;
  inputCachedTokens: number;
  /** Of `inputCachedTokens`, how many were audio (priced apart from cached text). */
  inputCachedAudioTokens?: number;
  outputTextTokens: number;
  outputAudioTokens: number;
  /**
   * Audio seconds billed by time, not tokens (GPT-Live: per active minute). Reported as
   * increments like the token counts; absent for token-billed models.
   */
  activeAudioSeconds?: number;
  /**
   * The STT → LLM → TTS pipeline's stages (PROVIDER=pipeline), as increments: audio seconds sent to
   * the STT, the LLM's tokens, characters sent to the TTS. Absent for speech-to-speech models.
   */
  pipeline?: PipelineUsage;
}

export interface PipelineUsage {
  sttAudioSeconds: number;
  llmInputTokens: number;
  llmCachedInputTokens: number;
  llmOutputTokens: number;
  ttsCharacters: number;
}

export const ZERO_PIPELINE_USAGE: Readonly<PipelineUsage> = { sttAudioSeconds: 0, llmInputTokens: 0, llmCachedInputTokens: 0, llmOutputTokens: 0, ttsCharacters: 0 };

/** Two pipeline usages added, stage by stage (the call's running total, a record's sum). */
export function sumPipelineUsage(a: PipelineUsage, b: PipelineUsage): PipelineUsage {
  return {
    sttAudioSeconds: a.sttAudioSeconds + b.sttAudioSeconds,
    llmInputTokens: a.llmInputTokens + b.llmInputTokens,
    llmCachedInputTokens: a.llmCachedInputTokens + b.llmCachedInputTokens,
    llmOutputTokens: a.llmOutputTokens + b.llmOutputTokens,
    ttsCharacters: a.ttsCharacters + b.ttsCharacters,
  };
}

export type Speaker = 'caller' | 'assistant' | 'dtmf' | 'tool';

export interface TranscriptLine {
  atMs: number;
  speaker: Speaker;
  text: string;
  /** Assistant speech cut short by the caller: `text` is what was heard. */
  interrupted?: boolean;
}

export interface ToolCallRecord {
  callId: string;
  name: string;
  args: string;
  ok: boolean;
  output: string;
  record: unknown;
  startedAtMs: number;
  durationMs: number;
}

export interface TurnLatency {
  turn: number;
  /** speech_stopped received → first audio frame of the answer sent to Twilio, ms. */
  latencyMs: number;
  /**
   * The turn's parts on the call's clock (ms since the stream's start), where known: the caller's end of
   * speech (the model VAD's audio_end_ms), speech_stopped received, the answer's first audio delta received,
   * its first frame sent to Twilio, and that frame heard (its mark echoed). Older records have none.
   */
  parts?: { callerEndMs?: number; speechStoppedMs: number; firstDeltaMs?: number; firstFrameMs: number; heardMs?: number; stages?: TurnStages };
}

/**
 * A pipeline turn's stages on the call's clock (ms since the stream's start): the STT's final
 * transcript, the LLM's first token, the TTS's first audio (end of speech → … → first frame out).
 */
export interface TurnStages {
  finalTranscriptMs?: number;
  firstTokenMs?: number;
  firstTtsAudioMs?: number;
}

/** Something that happened to the call itself (a failed response, a reconnect, …), kept in its record. */
export interface CallEvent {
  atMs: number;
  /** e.g. `response_failed`, `model_reconnected`. */
  type: string;
  /** Human-readable particulars; no personal data. */
  detail?: string;
}

export interface CallStartInfo {
  callSid: string;
  streamSid: string;
  audioMode: string;
  startedAt: Date;
  /** The model that served the call. */
  model?: string;
}

export interface CallEndInfo {
  endedAt: Date;
  reason: string;
  /** Relay-added latency per frame, both directions (ms). */
  relay: { inbound: { p50Ms: number; p99Ms: number }; outbound: { p50Ms: number; p99Ms: number } };
  protocolErrors: number;
}


export interface CallRecorder {
  started(info: CallStartInfo): void;
  transcript(line: TranscriptLine): void;
  toolCall(rec: ToolCallRecord): void;
  turnLatency(t: TurnLatency): void;
  usage(u: Usage): void;
  event(e: CallEvent): void;
  ended(info: CallEndInfo): void;
  /** What became of the call's recording (recording/types.ts), once it is settled; a call not recorded never calls it. */
  recording(info: RecordingInfo): void;
}

/**
 * A call's hand-over to a person, kept in the store at once (not batched) so
 * that the `<Connect action>` webhook finds it on whichever instance Twilio
 * calls: the stream is closed only after it is saved.
 */
export interface TransferDecision {
  /** The agent serving the call (its file's `name`): the instance answering the action looks the target up in it. */
  agent: string;
  /** The target's name in the agent file (never a number the model gave). */
  target: string;
  requestedBy: 'model' | 'keypad';
  /** Which stream of the call asked (1 = the first; a failed dial back to the agent opens the next). */
  leg: number;
  /** ISO 8601. */
  at: string;
}

/** A recorder that keeps nothing (tests, or a relay run without a store). */
export const nullRecorder: CallRecorder = {
  started() {},
  transcript() {},
  toolCall() {},
  turnLatency() {},
  usage() {},
  event() {},
  ended() {},
  recording() {},
};
