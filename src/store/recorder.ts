/**
 * The CallRecorder a call writes through: maps call events onto the
 * CallStore. Everything here is an in-memory update; the store writes in
 * the background (see src/store/record-buffer.ts).
 */
import type { CallRecorder } from '../records.js';
import type { CallStore } from './types.js';

/**
 * The recorder of a call answered here: its record starts now (`answered`), so even a call whose stream never
 * starts is recorded. `call`: the agent serving it and Twilio's `Direction` (inbound, outbound-api), when known.
 */
export function createStoreRecorder(
  store: CallStore,
  callSid: string,
  incoming: Record<string, string>,
  call: { agent?: string; direction?: string } = {},
): CallRecorder {
  store.answered(callSid, { from: incoming.From, to: incoming.To, agent: call.agent, direction: call.direction });
  return streamRecorder(store, callSid);
}

/** The recorder of a call whose webhook another instance answered: the same writes, without `answered` (that instance wrote it). */
export function streamRecorder(store: CallStore, callSid: string): CallRecorder {
  return {
    started: (info) => store.started(callSid, info),
    transcript: (line) => store.appendTranscript(callSid, line),
    toolCall: (rec) => store.appendToolCall(callSid, rec),
    turnLatency: (t) => store.appendTurnLatency(callSid, t),
    usage: (u) => store.addUsage(callSid, u),
    event: (e) => store.appendEvent(callSid, e),
    ended: (info) => store.ended(callSid, info),
    recording: (info) => store.setRecording(callSid, info),
  };
}
