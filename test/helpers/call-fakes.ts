/**
 * Fakes of what a CallSession talks to, for the unit tests that drive one
 * (test/session.test.ts, test/control.test.ts): a Twilio socket that keeps
 * what was sent, a model session that keeps what it was asked, a manual
 * pacing clock, and a recorder in memory. No I/O, no real time.
 */
import type { Pumpable, PumpScheduler } from '../../src/call/clock.js';
import type { TwilioSocket } from '../../src/call/ports.js';
import type { ModelEvent, ModelSession } from '../../src/call/voice-model.js';
import type { CallEvent, CallRecorder, RecordingInfo, ToolCallRecord, TranscriptLine, TurnLatency } from '../../src/records.js';

export class FakeSocket implements TwilioSocket {
  sent: Record<string, any>[] = [];
  closed: { code?: number; reason?: string } | undefined;
  send(text: string): boolean {
    this.sent.push(JSON.parse(text));
    return true;
  }
  bufferedAmount(): number {
    return 0;
  }
  cork(fn: () => void): void {
    fn();
  }
  close(code?: number, reason?: string): void {
    this.closed = { code, reason };
  }
  of(event: string) {
    return this.sent.filter((m) => m.event === event);
  }
}

export class FakeModel implements ModelSession {
  readonly calls: [string, ...unknown[]][] = [];
  private listener: ((ev: ModelEvent) => void) | undefined;
  constructor(readonly format: 'pcm24k' | 'ulaw8k') {}
  onEvent(l: (ev: ModelEvent) => void) {
    this.listener = l;
  }
  emit(ev: ModelEvent) {
    this.listener!(ev);
  }
  appendAudio(b64: string) {
    this.calls.push(['append', b64]);
  }
  sendUserText(text: string) {
    this.calls.push(['userText', text]);
  }
  createResponse(instructions?: string) {
    this.calls.push(['createResponse', instructions]);
  }
  cancelResponse() {
    this.calls.push(['cancel']);
  }
  truncate(itemId: string, ms: number) {
    this.calls.push(['truncate', itemId, ms]);
  }
  sendToolResult(callId: string, output: string, respond: boolean) {
    this.calls.push(['toolResult', callId, output, respond]);
  }
  replay(items: readonly unknown[]) {
    this.calls.push(['replay', items]);
  }
  close() {
    this.calls.push(['close']);
  }
  named(name: string) {
    return this.calls.filter((c) => c[0] === name);
  }
}

export class ManualClock implements PumpScheduler {
  members = new Set<Pumpable>();
  add(p: Pumpable) {
    this.members.add(p);
  }
  delete(p: Pumpable) {
    this.members.delete(p);
  }
  tick(now: number) {
    for (const p of this.members) if (!p.pump(now)) this.members.delete(p);
  }
}

export class MemoryRecorder implements CallRecorder {
  lines: TranscriptLine[] = [];
  tools: ToolCallRecord[] = [];
  turns: TurnLatency[] = [];
  endedWith: string | undefined;
  started() {}
  transcript(l: TranscriptLine) {
    this.lines.push(l);
  }
  toolCall(t: ToolCallRecord) {
    this.tools.push(t);
  }
  turnLatency(t: TurnLatency) {
    this.turns.push(t);
  }
  events: CallEvent[] = [];
  usage() {}
  event(e: CallEvent) {
    this.events.push(e);
  }
  ended(i: { reason: string }) {
    this.endedWith = i.reason;
  }
  recordings: RecordingInfo[] = [];
  recording(i: RecordingInfo) {
    this.recordings.push(i);
  }
}

