/**
 * One call's recording tap (src/recording/call-recording.ts), driven by a
 * manual clock and a manual `schedule`, writing to an in-memory
 * RecordingWriter that keeps the plaintext. Positions are checked sample by
 * sample in the de-interleaved channels (caller = even bytes, heard = odd).
 */
import { describe, expect, it } from 'vitest';
import {
  createCallRecording,
  recordingObjectName,
  RECORDING_EXT,
  type CallRecordingOptions,
} from '../src/recording/call-recording.js';
import type { RecordingWriter } from '../src/recording/types.js';

const SID = 'CA0123456789abcdef0123456789abcdef';
const STARTED = new Date(Date.UTC(2026, 8, 3, 23, 59, 30));
const OBJECT = `2026/09/03/${SID}.cbrec`;
const S = 0xff; // µ-law silence
const PER_MS = 8;

/** An in-memory file: keeps what was written, in order; write/open can be made to fail or wait. */
class FakeWriter implements RecordingWriter {
  readonly writes: Uint8Array[] = [];
  finished = false;
  aborted = false;
  /** When set, each write waits for release(). */
  hold = false;
  failWriteAt = -1;
  private waiting: (() => void)[] = [];

  constructor(readonly name: string) {}

  async write(plain: Uint8Array): Promise<void> {
    if (this.finished || this.aborted) throw new Error('write after the end');
    if (this.writes.length === this.failWriteAt) throw new Error('disk full');
    this.writes.push(Uint8Array.from(plain));
    if (this.hold) await new Promise<void>((r) => this.waiting.push(r));
  }

  async finish(): Promise<{ bytes: number }> {
    if (this.aborted) throw new Error('finish after abort');
    this.finished = true;
    return { bytes: this.plain().length + 100 }; // sealing adds a header and tags
  }

  async abort(): Promise<void> {
    this.aborted = true;
  }

  release(): void {
    this.hold = false;
    for (const r of this.waiting.splice(0)) r();
  }

  get waitingWrites(): number {
    return this.waiting.length;
  }

  plain(): Uint8Array {
    return Buffer.concat(this.writes);
  }

  channel(c: 0 | 1): Uint8Array {
    const p = this.plain();
    const out = new Uint8Array(p.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = p[2 * i + c]!;
    return out;
  }
}

/** Lets every pending promise callback run (no timers). */
const settle = () => new Promise<void>((r) => setImmediate(r));

function harness(over: Partial<CallRecordingOptions> & { writer?: (name: string) => Promise<FakeWriter> } = {}) {
  let nowMs = 0;
  const tasks: (() => void)[] = [];
  const writers: FakeWriter[] = [];
  const opened: string[] = [];
  const rec = createCallRecording({
    callSid: SID,
    startedAt: STARTED,
    storage: { kind: 'dir' },
    keyId: 'k1',
    openWriter: async (name) => {
      opened.push(name);
      const w = over.writer ? await over.writer(name) : new FakeWriter(name);
      writers.push(w);
      return w;
    },
    now: () => nowMs,
    schedule: (fn) => tasks.push(fn),
    ...over,
  });
  /** Run scheduled flushes and let the writer catch up. */
  const run = async () => {
    while (tasks.length > 0) tasks.shift()!();
    await settle();
  };
  return {
    rec,
    writers,
    opened,
    tasks,
    run,
    get now() {
      return nowMs;
    },
    set now(ms: number) {
      nowMs = ms;
    },
  };
}

/** A 20 ms caller frame whose bytes name it: frame k (at k*20 ms) is filled with 1 + k % 200. */
const callerFrame = (atMs: number) => new Uint8Array(160).fill(1 + ((atMs / 20) % 200));
const callerByte = (sample: number) => 1 + (Math.floor(sample / 160) % 200);
/** Heard audio: the byte at position p ms of the whole reply is 0x80 + (p / 20) % 100. */
const heardByte = (ms: number) => 0x80 + (Math.floor(ms / 20) % 100);

/** Caller frames for [fromMs, toMs), each arriving 20 ms after its timestamp; runs flushes as it goes. */
async function callerFrames(h: ReturnType<typeof harness>, fromMs: number, toMs: number) {
  for (let t = fromMs; t < toMs; t += 20) {
    h.now = t + 20;
    h.rec.caller(callerFrame(t), t);
    await h.run();
  }
}

/** Indices in [from, to) where ch differs from want(i); empty when all match. */
function mismatches(ch: Uint8Array, from: number, to: number, want: (i: number) => number): number[] {
  const bad: number[] = [];
  for (let i = from; i < to && bad.length < 5; i++) if (ch[i] !== want(i)) bad.push(i);
  return bad;
}

describe('object names', () => {
  it('YYYY/MM/DD/<CallSid>[-<leg>].cbrec, the UTC day of the stream start', () => {
    expect(RECORDING_EXT).toBe('.cbrec');
    expect(recordingObjectName(SID, 1, STARTED)).toBe(OBJECT);
    expect(recordingObjectName(SID, 2, STARTED)).toBe(`2026/09/03/${SID}-2.cbrec`);
    expect(recordingObjectName(SID, 1, new Date(Date.UTC(2027, 0, 1, 0, 0, 0)))).toBe(`2027/01/01/${SID}.cbrec`);
  });

  it('a name never escapes its folder; a bad leg or date still names something', () => {
    expect(recordingObjectName('../../etc/passwd', 1, STARTED)).toBe('2026/09/03/______etc_passwd.cbrec');
    expect(recordingObjectName('', 1, STARTED)).toBe('2026/09/03/_.cbrec');
    expect(recordingObjectName(SID, 0, STARTED)).toBe(OBJECT);
    expect(recordingObjectName(SID, 2.5, STARTED)).toBe(OBJECT);
    expect(recordingObjectName(SID, 1, new Date(Number.NaN))).toBe(`1970/01/01/${SID}.cbrec`);
  });
});

describe('the timeline', () => {
  it('places caller frames at atMs and heard audio at playAtMs; gaps are silence; blocks of blockMs go out during the call', async () => {
    const h = harness();
    // Nothing is opened before the first flush.
    h.now = 20;
    h.rec.caller(callerFrame(0), 0);
    await h.run();
    expect(h.opened).toEqual([]);

    // The reply [500, 2500) ms is sent in 100 ms chunks, each up to 1 s ahead of the clock.
    let sentToMs = 500;
    for (let t = 20; t < 3000; t += 20) {
      h.now = t + 20;
      h.rec.caller(callerFrame(t), t);
      while (sentToMs < 2500 && sentToMs < h.now + 1000) {
        const chunk = new Uint8Array(100 * PER_MS + 16);
        for (let i = 0; i < 800; i++) chunk[8 + i] = heardByte(sentToMs + i / PER_MS);
        h.rec.heard(chunk, 8, 808, sentToMs);
        sentToMs += 100;
      }
      await h.run();
    }
    expect(h.opened).toEqual([OBJECT]);
    const w = h.writers[0]!;
    expect(w.writes.length).toBeGreaterThan(0);
    for (const block of w.writes) expect(block.length).toBe(16_000); // 1 s of stereo µ-law

    const info = await h.rec.finish(3000);
    expect(info).toEqual({ status: 'complete', object: OBJECT, storage: 'dir', keyId: 'k1', durationMs: 3000, bytes: 3000 * 16 + 100 });
    expect(w.finished).toBe(true);
    const caller = w.channel(0);
    const heard = w.channel(1);
    expect(caller.length).toBe(3000 * PER_MS);
    expect(mismatches(caller, 0, 24_000, callerByte)).toEqual([]);
    expect(mismatches(heard, 0, 500 * PER_MS, () => S)).toEqual([]);
    expect(mismatches(heard, 500 * PER_MS, 2500 * PER_MS, (i) => heardByte(i / PER_MS))).toEqual([]);
    expect(mismatches(heard, 2500 * PER_MS, 3000 * PER_MS, () => S)).toEqual([]);
  });

  it('a clear erases exactly the heard audio at and after its time, keeps what played before, and places speech sent after it', async () => {
    const h = harness();
    await callerFrames(h, 0, 1000);
    // At 1000 ms the relay sends 1 s of reply, 1000..2000, ahead of time.
    h.rec.heard(new Uint8Array(8000).fill(0xa0), 0, 8000, 1000);
    await callerFrames(h, 1000, 1400);
    h.rec.cleared(1400); // the caller barged in at 1400 ms: 1400..2000 never played
    await callerFrames(h, 1400, 1600);
    h.rec.heard(new Uint8Array(1600).fill(0xb0), 0, 1600, 1600); // the next reply, 1600..1800
    await callerFrames(h, 1600, 4000);
    const info = await h.rec.finish(4000);
    expect(info.status).toBe('complete');
    const heard = h.writers[0]!.channel(1);
    expect(mismatches(heard, 0, 1000 * PER_MS, () => S)).toEqual([]);
    expect(mismatches(heard, 1000 * PER_MS, 1400 * PER_MS, () => 0xa0)).toEqual([]);
    expect(heard[1400 * PER_MS - 1]).toBe(0xa0);
    expect(heard[1400 * PER_MS]).toBe(S);
    expect(mismatches(heard, 1400 * PER_MS, 1600 * PER_MS, () => S)).toEqual([]);
    expect(mismatches(heard, 1600 * PER_MS, 1800 * PER_MS, () => 0xb0)).toEqual([]);
    expect(mismatches(heard, 1800 * PER_MS, 4000 * PER_MS, () => S)).toEqual([]);
    // The caller channel is untouched by the clear.
    expect(mismatches(h.writers[0]!.channel(0), 0, 4000 * PER_MS, callerByte)).toEqual([]);
  });

  it('places late and out-of-order caller frames while they are held; a frame older than what was written is dropped and counted', async () => {
    const h = harness();
    await callerFrames(h, 0, 1000);
    // 1000 and 1020 arrive swapped; 1040 arrives 600 ms late (still held).
    h.now = 1040;
    h.rec.caller(callerFrame(1020), 1020);
    h.rec.caller(callerFrame(1000), 1000);
    await h.run();
    for (let t = 1060; t < 1700; t += 20) {
      h.now = t + 20;
      h.rec.caller(callerFrame(t), t);
      await h.run();
    }
    h.rec.caller(callerFrame(1040), 1040); // at now = 1700: 660 ms late, inside the 1 s hold
    await callerFrames(h, 1700, 3200);
    // By now everything before 2000 ms is written: a frame for 1500 is too late.
    expect(h.writers[0]!.plain().length).toBeGreaterThanOrEqual(2000 * 16);
    h.rec.caller(new Uint8Array(160).fill(0x11), 1500);
    expect(h.rec.stats().droppedCallerSamples).toBe(160);
    const info = await h.rec.finish(3200);
    expect(info.status).toBe('complete');
    expect(mismatches(h.writers[0]!.channel(0), 0, 3200 * PER_MS, callerByte)).toEqual([]);
  });

  it('a frame straddling the written point keeps its held part', async () => {
    const h = harness({ blockMs: 100, holdMs: 200 });
    await callerFrames(h, 0, 600); // final up to 400 ms; written up to 400 ms
    expect(h.writers[0]!.plain().length).toBe(400 * 16);
    h.rec.caller(new Uint8Array(160).fill(0x22), 390); // 390..400 is written, 400..410 is held
    expect(h.rec.stats().droppedCallerSamples).toBe(80);
    await h.rec.finish(600);
    const caller = h.writers[0]!.channel(0);
    expect(caller[390 * PER_MS]).toBe(callerByte(390 * PER_MS));
    expect(mismatches(caller, 400 * PER_MS, 410 * PER_MS, () => 0x22)).toEqual([]);
  });

  it('a gap in the caller frames is silence, and a long one (a minute) neither stops the recording nor grows memory', async () => {
    const h = harness();
    await callerFrames(h, 0, 1000);
    await callerFrames(h, 3000, 4000); // nothing for 1000..3000
    const ringBefore = h.rec.stats().ringSamples;
    await callerFrames(h, 64_000, 65_000); // nothing for a minute
    expect(h.rec.stats().ringSamples).toBe(ringBefore);
    const info = await h.rec.finish(65_000);
    expect(info.status).toBe('complete');
    expect(info.durationMs).toBe(65_000);
    const caller = h.writers[0]!.channel(0);
    expect(caller.length).toBe(65_000 * PER_MS);
    expect(mismatches(caller, 0, 1000 * PER_MS, callerByte)).toEqual([]);
    expect(mismatches(caller, 1000 * PER_MS, 3000 * PER_MS, () => S)).toEqual([]);
    expect(mismatches(caller, 3000 * PER_MS, 4000 * PER_MS, callerByte)).toEqual([]);
    expect(mismatches(caller, 4000 * PER_MS, 64_000 * PER_MS, () => S)).toEqual([]);
    expect(mismatches(caller, 64_000 * PER_MS, 65_000 * PER_MS, callerByte)).toEqual([]);
    expect(h.rec.stats().droppedCallerSamples).toBe(0);
  });

  it('the rings do not grow over a long call with audio sent a second ahead', async () => {
    const h = harness();
    let sentToMs = 0;
    let ring = 0;
    for (let t = 0; t < 120_000; t += 20) {
      h.now = t + 20;
      h.rec.caller(callerFrame(t), t);
      while (sentToMs < h.now + 1000) {
        h.rec.heard(new Uint8Array(160).fill(0x90), 0, 160, sentToMs);
        sentToMs += 20;
      }
      await h.run();
      if (t === 10_000) ring = h.rec.stats().ringSamples;
    }
    expect(h.rec.stats().ringSamples).toBe(ring);
    expect(h.rec.stats().pendingBytes).toBe(0);
    const info = await h.rec.finish(120_000);
    // The last second of the reply was sent ahead of the hang-up: the file runs to the end of the last audio.
    expect(info.durationMs).toBe(sentToMs);
  });
});

describe('finish', () => {
  it('a call with no audio still leaves a short file', async () => {
    const h = harness();
    h.now = 300;
    const info = await h.rec.finish(300);
    expect(info).toEqual({ status: 'complete', object: OBJECT, storage: 'dir', keyId: 'k1', durationMs: 300, bytes: 300 * 16 + 100 });
    expect(h.writers[0]!.finished).toBe(true);
    expect(mismatches(h.writers[0]!.plain(), 0, 300 * 16, () => S)).toEqual([]);

    const empty = harness({ storage: { kind: 's3' } });
    const none = await empty.rec.finish(0);
    expect(none).toEqual({ status: 'complete', object: OBJECT, storage: 's3', keyId: 'k1', durationMs: 0, bytes: 100 });
  });

  it('writes up to atMs or the last audio, whichever is later; later calls are ignored and finish again returns the same outcome', async () => {
    const h = harness({ leg: 2 });
    await callerFrames(h, 0, 2000);
    h.rec.heard(new Uint8Array(4000).fill(0x90), 0, 4000, 2000); // 2000..2500, sent ahead
    const first = h.rec.finish(2000);
    h.rec.caller(callerFrame(2000), 2000);
    h.rec.heard(new Uint8Array(160), 0, 160, 2500);
    h.rec.cleared(2100);
    h.rec.optOut();
    const again = h.rec.finish(9000);
    const info = await first;
    expect(await again).toBe(info);
    expect(info).toMatchObject({ status: 'complete', object: `2026/09/03/${SID}-2.cbrec`, durationMs: 2500 });
    const w = h.writers[0]!;
    expect(w.aborted).toBe(false);
    expect(w.plain().length).toBe(2500 * 16);
    expect(mismatches(w.channel(1), 2000 * PER_MS, 2500 * PER_MS, () => 0x90)).toEqual([]);
    expect(mismatches(w.channel(0), 2000 * PER_MS, 2500 * PER_MS, () => S)).toEqual([]);
  });

  it('works with the default schedule (setImmediate)', async () => {
    let now = 0;
    const writers: FakeWriter[] = [];
    const rec = createCallRecording({
      callSid: SID,
      startedAt: STARTED,
      storage: { kind: 'dir' },
      keyId: 'k1',
      openWriter: async (name) => {
        const w = new FakeWriter(name);
        writers.push(w);
        return w;
      },
      now: () => now,
    });
    for (let t = 0; t < 3000; t += 20) {
      now = t + 20;
      rec.caller(callerFrame(t), t);
      await settle();
    }
    expect(writers[0]!.writes.length).toBeGreaterThan(0); // written during the call
    const info = await rec.finish(3000);
    expect(info.status).toBe('complete');
    expect(mismatches(writers[0]!.channel(0), 0, 3000 * PER_MS, callerByte)).toEqual([]);
  });
});

describe('opt-out', () => {
  it('aborts the open upload, keeps nothing, and takes nothing more', async () => {
    const h = harness();
    await callerFrames(h, 0, 3000);
    const w = h.writers[0]!;
    expect(w.writes.length).toBeGreaterThan(0);
    h.rec.optOut();
    await settle();
    expect(w.aborted).toBe(true);
    expect(w.finished).toBe(false);
    const writes = w.writes.length;
    await callerFrames(h, 3000, 5000);
    h.rec.heard(new Uint8Array(160), 0, 160, 5000);
    h.rec.cleared(5000);
    const info = await h.rec.finish(5000);
    expect(info).toEqual({ status: 'opted_out', object: null, storage: 'dir', keyId: null, bytes: 0, durationMs: 0 });
    expect(w.writes.length).toBe(writes);
    expect(h.opened).toEqual([OBJECT]);
  });

  it('before anything was written: nothing is ever opened', async () => {
    const h = harness();
    h.now = 500;
    h.rec.caller(callerFrame(480), 480);
    h.rec.optOut();
    await callerFrames(h, 500, 3000);
    const info = await h.rec.finish(3000);
    expect(info.status).toBe('opted_out');
    expect(h.opened).toEqual([]);
  });

  it('while the writer is being opened: the upload is aborted once it opens', async () => {
    let openIt!: () => void;
    const h = harness({
      writer: async (name) => {
        await new Promise<void>((r) => (openIt = r));
        return new FakeWriter(name);
      },
    });
    await callerFrames(h, 0, 2100);
    expect(h.opened).toEqual([OBJECT]);
    h.rec.optOut();
    openIt();
    await settle();
    const w = h.writers[0]!;
    expect(w.aborted).toBe(true);
    expect(w.writes).toEqual([]);
    expect((await h.rec.finish(2100)).status).toBe('opted_out');
  });
});

describe('a failing writer', () => {
  it('open rejects: incomplete, no object, and the tap keeps working', async () => {
    const h = harness({ writer: async () => Promise.reject(new Error('permission denied')) });
    await callerFrames(h, 0, 3000);
    h.rec.heard(new Uint8Array(160), 0, 160, 3000);
    h.rec.cleared(3000);
    const info = await h.rec.finish(3000);
    expect(info).toEqual({
      status: 'incomplete',
      object: null,
      storage: 'dir',
      keyId: null,
      durationMs: 0,
      bytes: 0,
      reason: 'write failed: permission denied',
    });
    expect(h.opened).toEqual([OBJECT]); // tried once, not again
  });

  it('a write rejects mid-call: the upload is aborted, nothing more is written, incomplete with no object', async () => {
    const h = harness({
      writer: async (name) => {
        const w = new FakeWriter(name);
        w.failWriteAt = 2;
        return w;
      },
    });
    await callerFrames(h, 0, 4000);
    const w = h.writers[0]!;
    expect(w.aborted).toBe(true);
    expect(w.writes.length).toBe(2);
    await callerFrames(h, 4000, 8000);
    expect(w.writes.length).toBe(2);
    expect(h.rec.stats().pendingBytes).toBe(0);
    const info = await h.rec.finish(8000);
    expect(info).toMatchObject({ status: 'incomplete', object: null, keyId: null, bytes: 0, reason: 'write failed: disk full' });
    expect(w.finished).toBe(false);
  });

  it('finishing rejects: incomplete with no object', async () => {
    const h = harness({
      writer: async (name) => {
        const w = new FakeWriter(name);
        w.finish = () => Promise.reject(new Error('upload lost'));
        return w;
      },
    });
    await callerFrames(h, 0, 2000);
    const info = await h.rec.finish(2000);
    expect(info).toMatchObject({ status: 'incomplete', object: null, reason: 'write failed: upload lost' });
    expect(h.writers[0]!.aborted).toBe(true);
  });
});

describe('slow storage', () => {
  it('stops taking audio past maxPendingBytes, keeps memory bounded, and finishes the file with what was taken', async () => {
    const block = 16_000;
    const max = 5 * block;
    const h = harness({ maxPendingBytes: max, writer: async (name) => Object.assign(new FakeWriter(name), { hold: true }) });
    let highest = 0;
    for (let t = 0; t < 20_000; t += 20) {
      h.now = t + 20;
      h.rec.caller(callerFrame(t), t);
      await h.run();
      highest = Math.max(highest, h.rec.stats().pendingBytes);
    }
    expect(highest).toBeGreaterThan(max);
    expect(highest).toBeLessThanOrEqual(max + block);
    const w = h.writers[0]!;
    expect(w.writes.length).toBe(1); // the first write never returned
    // The tap still takes calls without complaint.
    h.rec.heard(new Uint8Array(160), 0, 160, 20_000);
    h.rec.cleared(20_000);
    const done = h.rec.finish(20_000);
    w.release();
    await settle();
    const info = await done;
    // Six blocks were taken when the sixth pushed the pending plaintext past five.
    expect(info).toEqual({
      status: 'incomplete',
      object: OBJECT,
      storage: 'dir',
      keyId: 'k1',
      durationMs: 6000,
      bytes: 6000 * 16 + 100,
      reason: 'storage too slow: stopped at 6 s',
    });
    expect(w.finished).toBe(true);
    expect(w.aborted).toBe(false);
    expect(mismatches(w.channel(0), 0, 6000 * PER_MS, callerByte)).toEqual([]);
  });

  it('an opt-out after the stop still removes the file', async () => {
    const h = harness({ maxPendingBytes: 16_000, writer: async (name) => Object.assign(new FakeWriter(name), { hold: true }) });
    await callerFrames(h, 0, 6000);
    const w = h.writers[0]!;
    h.rec.optOut();
    w.release();
    await settle();
    expect(w.aborted).toBe(true);
    expect((await h.rec.finish(6000)).status).toBe('opted_out');
  });
});

describe('garbage input', () => {
  it('never throws: empty frames, NaN, infinite and negative times, bad ranges, a broken clock', async () => {
    let broken = false;
    let now = 0;
    const tasks: (() => void)[] = [];
    const writers: FakeWriter[] = [];
    const rec = createCallRecording({
      callSid: SID,
      startedAt: STARTED,
      storage: { kind: 'dir' },
      keyId: 'k1',
      openWriter: async (name) => {
        const w = new FakeWriter(name);
        writers.push(w);
        return w;
      },
      now: () => (broken ? Number.NaN : now),
      schedule: (fn) => tasks.push(fn),
      holdMs: Number.NaN,
      blockMs: -5,
      maxPendingBytes: Number.POSITIVE_INFINITY,
    });
    const frame = new Uint8Array(160).fill(0x33);
    now = 100;
    expect(() => {
      rec.caller(new Uint8Array(0), 50);
      rec.caller(frame, Number.NaN);
      rec.caller(frame, Number.POSITIVE_INFINITY);
      rec.caller(frame, 1e15);
      rec.caller(null as unknown as Uint8Array, 20);
      rec.caller(frame, -10); // half of it lands at 0..10 ms
      rec.heard(frame, Number.NaN, 160, 20);
      rec.heard(frame, 100, 50, 20);
      rec.heard(frame, -50, 10_000, Number.NaN);
      rec.heard(frame, 0, 160, -1e9);
      rec.heard(undefined as unknown as Uint8Array, 0, 160, 20);
      rec.cleared(Number.NaN);
      rec.cleared(-5);
      broken = true;
      rec.caller(frame, 40);
    }).not.toThrow();
    broken = false;
    now = 2000;
    while (tasks.length > 0) tasks.shift()!();
    await settle();
    const stats = rec.stats();
    expect(stats.droppedCallerSamples).toBe(160 * 3 + 80);
    expect(stats.droppedHeardSamples).toBe(160 + 160);
    const info = await rec.finish(Number.NaN); // NaN: ends now
    expect(info).toMatchObject({ status: 'complete', durationMs: 2000 });
    const caller = writers[0]!.channel(0);
    expect(mismatches(caller, 0, 10 * PER_MS, () => 0x33)).toEqual([]);
    expect(mismatches(caller, 10 * PER_MS, 40 * PER_MS, () => S)).toEqual([]);
    expect(mismatches(caller, 40 * PER_MS, 60 * PER_MS, () => 0x33)).toEqual([]);
    expect(mismatches(writers[0]!.channel(1), 0, 2000 * PER_MS, () => S)).toEqual([]);
  });

  it('a finish time far beyond the clock is held to it', async () => {
    const h = harness();
    h.now = 1000;
    const info = await h.rec.finish(1e12);
    expect(info.durationMs).toBeLessThanOrEqual(1000 + 1000 + 5000);
    expect(h.writers[0]!.plain().length).toBe(info.durationMs * 16);
  });
});
