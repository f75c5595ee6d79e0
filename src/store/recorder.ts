/**
 * The CallRecorder a call writes through: maps call events onto the
 * CallStore. Everything here is an in-memory update; the store writes in
 * the background (see src/store/sqlite.ts).
 */
import type { CallRecorder } from '../records.js';
import type { CallStore } from './types.js';

export function createStoreRecorder(store: CallStore, callSid: string, incoming: Record<string, string>): CallRecorder {
  store.answered(callSid, { from: incoming.From, to: incoming.To });
  return {
    started: (info) => store.started(callSid, info),
    transcript: (line) => store.appendTranscript(callSid, line),
    toolCall: (rec) => store.appendToolCall(callSid, rec),
    turnLatency: (t) => store.appendTurnLatency(callSid, t),
    usage: (u) => store.addUsage(callSid, u),
    event: (e) => store.appendEvent(callSid, e),
    ended: (info) => store.ended(callSid, info),
  };
}
