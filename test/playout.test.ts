import { describe, expect, it } from 'vitest';
import { Playout, type ChunkInfo } from '../src/call/playout.js';
import { Outbound } from '../src/call/outbound.js';

interface Sent {
  kind: 'frame' | 'clear';
  bytes?: Buffer;
  mark?: string;
}

function harness(leadMs = 100, chunkMs = 20) {
  const sent: Sent[] = [];
  const frames: ChunkInfo[] = [];
  let accept = true;
  const p = new Playout(
    {
      sendChunk: (buf, start, end, mark) => {
        sent.push({ kind: 'frame', bytes: Buffer.from(buf.subarray(start, end)), mark });
        return accept;
      },
      sendClear: () => sent.push({ kind: 'clear' }),
    },
    leadMs,
    (info) => frames.push(info),
    chunkMs,
  );
  return { p, sent, frames, setAccept: (v: boolean) => (accept = v) };
}

const bytes = (n: number, fill = 1) => new Uint8Array(n).fill(fill);

describe('Playout framing', () => {
  it('sends only whole 160-byte frames and pads an item tail with µ-law silence', () => {
    const { p, sent } = harness(1000);
    p.enqueue('r1', 'i1', bytes(250, 7));
    p.pump(0);
    expect(sent).toHaveLength(1); // 90 bytes wait for more audio
    p.finishItem('i1');
    p.pump(0);
    expect(sent).toHaveLength(2);
    const tail = sent[1]!.bytes!;
    expect([...tail.subarray(0, 90)].every((b) => b === 7)).toBe(true);
    expect([...tail.subarray(90)].every((b) => b === 0xff)).toBe(true);
  });

  it('never lets a frame span two items', () => {
    const { p, frames } = harness(10_000);
    p.enqueue('r1', 'a', bytes(100, 1));
    p.enqueue('r1', 'b', bytes(160, 2));
    p.pump(0);
    expect(frames.map((f) => f.itemId)).toEqual(['a', 'b']);
  });

  it('keeps byte order across ring growth and wrap-around', () => {
    const { p, sent } = harness(1e9);
    const src = new Uint8Array(160 * 450);
    for (let i = 0; i < src.length; i++) src[i] = (i * 7) & 0xff;
    // irregular chunk sizes, pumping in between, so reads and writes interleave and wrap
    let off = 0;
    let t = 0;
    while (off < src.length) {
      const n = Math.min(src.length - off, 37 + ((off * 13) % 901));
      p.enqueue('r', 'i', src.subarray(off, off + n));
      off += n;
      if (off % 3 === 0) p.pump((t += 20));
    }
    p.pump(1e12);
    const out = Buffer.concat(sent.map((s) => s.bytes!));
    expect(out.length).toBe(src.length);
    expect(Buffer.compare(out, Buffer.from(src))).toBe(0);
  });
});

describe('Playout pacing', () => {
  it('keeps between lead and lead + one frame of audio ahead of the wall clock', () => {
    const { p, sent } = harness(100);
    p.enqueue('r', 'i', bytes(160 * 100)); // 2 s arrives at once
    p.pump(0);
    expect(sent).toHaveLength(5); // 100 ms ahead
    p.pump(10); // 90 ms ahead < lead: one more
    expect(sent).toHaveLength(6);
    p.pump(20); // 100 ms ahead: nothing
    expect(sent).toHaveLength(6);
    for (let t = 30; t <= 600; t += 10) {
      p.pump(t);
      const aheadMs = sent.length * 20 - t;
      expect(aheadMs).toBeGreaterThanOrEqual(100);
      expect(aheadMs).toBeLessThanOrEqual(120);
    }
  });

  it('does not burst after a stalled clock: the missed time is not sent at once', () => {
    const { p, sent } = harness(100);
    p.enqueue('r', 'i', bytes(160 * 100));
    p.pump(0);
    p.pump(1000); // the caller ran dry at 100 ms; refill only the lead
    expect(sent).toHaveLength(10);
  });

  it('reads a varying lead (PlayoutLead) at each pump', () => {
    let leadMs = 100;
    const sent: number[] = [];
    const p = new Playout({ sendChunk: (_b, s, e) => (sent.push(e - s), true), sendClear: () => {} }, { leadMs: () => leadMs }, () => {}, 20);
    p.enqueue('r', 'i', bytes(160 * 100));
    p.pump(0);
    expect(sent).toHaveLength(5);
    leadMs = 300; // the loop ran late: send further ahead
    p.pump(0);
    expect(sent).toHaveLength(15);
    leadMs = 100; // calm again: nothing until less than 100 ms is ahead
    p.pump(150);
    expect(sent).toHaveLength(15);
    p.pump(210);
    expect(sent).toHaveLength(16);
  });

  it('stops on backpressure and resumes after unblock', () => {
    const h = harness(1000);
    h.p.enqueue('r', 'i', bytes(160 * 10));
    h.setAccept(false);
    h.p.pump(0);
    expect(h.sent).toHaveLength(1);
    h.setAccept(true);
    h.p.pump(0);
    expect(h.sent).toHaveLength(1);
    h.p.unblock();
    h.p.pump(0);
    expect(h.sent).toHaveLength(10);
  });
});

describe('Playout barge-in', () => {
  it('truncates at the last acknowledged mark, ignores marks echoed after clear', () => {
    const { p, sent } = harness(1000);
    p.enqueue('r', 'item', bytes(160 * 20));
    p.pump(0);
    const marks = sent.map((s) => s.mark!);
    expect(marks).toHaveLength(20);
    expect(p.onMark(marks[6]!, 140)).toBe(true); // 7 frames = 140 ms played, echoed at t = 140
    const cut = p.interrupt(170); // 30 ms more have played since
    expect(cut).toEqual({ itemId: 'item', responseId: 'r', audioEndMs: 170, sentMs: 400 });
    expect(sent.at(-1)!.kind).toBe('clear');
    // Twilio echoes the pending marks on clear: they prove nothing
    for (const m of marks.slice(7)) expect(p.onMark(m, 180)).toBe(false);
    expect(p.item('item')!.heardMs).toBe(170);
    expect(p.speaking).toBe(false);
  });

  it('reports nothing to truncate when nothing is playing', () => {
    const { p, sent } = harness();
    expect(p.interrupt(0)).toBeNull();
    p.enqueue('r', 'i', bytes(160));
    p.pump(0);
    p.onMark(sent[0]!.mark!, 20);
    expect(p.speaking).toBe(false);
    expect(p.interrupt(100)).toBeNull();
    expect(sent.filter((s) => s.kind === 'clear')).toHaveLength(0);
  });

  it('truncates at 0 ms when the caller barges in before any mark came back', () => {
    const { p } = harness();
    p.enqueue('r', 'i', bytes(480));
    p.pump(0);
    expect(p.interrupt(5)).toMatchObject({ itemId: 'i', audioEndMs: 0, sentMs: 60 });
  });

  it('starts fresh after a clear: the next item plays at once', () => {
    const { p, sent } = harness(100);
    p.enqueue('r1', 'a', bytes(160 * 50));
    p.pump(0);
    p.interrupt(10);
    p.enqueue('r2', 'b', bytes(160 * 3));
    p.pump(10);
    const after = sent.slice(sent.findIndex((s) => s.kind === 'clear') + 1);
    expect(after).toHaveLength(3);
  });
});

describe('Playout in chunks', () => {
  it('sends 100 ms chunks with one mark each, never spanning two items, short only at an item end', () => {
    const { p, sent, frames } = harness(100, 100);
    p.enqueue('r', 'a', bytes(160 * 12, 1)); // 240 ms
    p.finishItem('a');
    p.enqueue('r', 'b', bytes(160 * 5, 2)); // 100 ms
    for (let t = 0; t <= 1000; t += 10) p.pump(t);
    expect(sent.map((s) => s.bytes!.length)).toEqual([800, 800, 320, 800]);
    expect(new Set(sent.map((s) => s.mark)).size).toBe(4);
    expect(frames.map((f) => [f.itemId, f.itemEndMs])).toEqual([['a', 100], ['a', 200], ['a', 240], ['b', 100]]);
    expect([...sent[3]!.bytes!].every((b) => b === 2)).toBe(true);
  });

  it('sends what it has at once when nothing is playing (the first audio is never held back)', () => {
    const { p, sent } = harness(100, 100);
    p.enqueue('r', 'a', bytes(160 * 2));
    p.pump(0);
    expect(sent.map((s) => s.bytes!.length)).toEqual([320]);
    p.enqueue('r', 'a', bytes(160 * 2));
    p.pump(5); // 35 ms still to play: wait for a fuller chunk
    expect(sent).toHaveLength(1);
    p.pump(25); // 15 ms left: less than a frame, send what there is rather than leave a gap
    expect(sent.map((s) => s.bytes!.length)).toEqual([320, 320]);
  });

  it('keeps chunk bytes in order across the ring end', () => {
    const { p, sent } = harness(1e9, 100);
    const src = new Uint8Array(160 * 333);
    for (let i = 0; i < src.length; i++) src[i] = (i * 11) & 0xff;
    for (let off = 0; off < src.length; off += 4000) {
      p.enqueue('r', 'i', src.subarray(off, Math.min(src.length, off + 4000)));
      p.pump(0);
    }
    p.finishItem('i');
    p.pump(0);
    expect(Buffer.compare(Buffer.concat(sent.map((s) => s.bytes!)), Buffer.from(src))).toBe(0);
  });

  it('heard position: the last echoed mark plus the time since, along the send schedule, capped at what was sent', () => {
    const { p, sent } = harness(100, 100);
    p.enqueue('r', 'i', bytes(160 * 10)); // two 100 ms chunks
    p.finishItem('i');
    p.pump(0); // chunk 1, plays 0–100
    p.pump(1); // chunk 2 (ahead 99 < 100), plays 100–200
    expect(sent).toHaveLength(2);
    p.onMark(sent[0]!.mark!, 100);
    expect(p.interrupt(130)).toMatchObject({ itemId: 'i', audioEndMs: 130, sentMs: 200 });
  });

  it('a gap in sending is a gap in playing: time before the next chunk was sent is not counted', () => {
    const { p, sent } = harness(100, 100);
    p.enqueue('r', 'a', bytes(160 * 5));
    p.finishItem('a');
    p.pump(0);
    p.onMark(sent[0]!.mark!, 100); // a played 0–100, then silence
    p.enqueue('r', 'b', bytes(160 * 5));
    p.pump(500); // b sent at 500
    expect(p.interrupt(540)).toMatchObject({ itemId: 'b', audioEndMs: 40 });
  });

  it('heard never exceeds what was sent, and nothing counts before the first echo', () => {
    const { p, sent } = harness(100, 100);
    p.enqueue('r', 'a', bytes(160 * 5));
    p.finishItem('a');
    p.pump(0);
    expect(p.interrupt(90)).toMatchObject({ audioEndMs: 0 }); // no echo yet
    p.enqueue('r', 'b', bytes(160 * 5));
    p.finishItem('b');
    p.pump(100);
    p.onMark(sent.at(-1)!.mark!, 150);
    p.enqueue('r', 'b', bytes(0));
    expect(p.item('b')!.heardMs).toBe(100);
  });
});

describe('Outbound.whenHeard (the end of a goodbye or handoff sentence)', () => {
  function outbound() {
    const sent: Record<string, any>[] = [];
    let now = 0;
    const members = new Set<{ pump(n: number): boolean }>();
    const out = new Outbound({
      socket: { send: (t) => (sent.push(JSON.parse(t)), true), bufferedAmount: () => 0, cork: (fn) => fn(), close: () => {} },
      clock: { add: (p) => void members.add(p), delete: (p) => void members.delete(p) },
      leadMs: 100,
      chunkMs: 20,
      now: () => now,
      sinceStart: () => now,
      onChunk: () => {},
      onLine: () => {},
      truncate: () => {},
    });
    out.start('MZ1', undefined);
    out.setLive(true);
    const tick = (ms: number) => {
      now = ms;
      for (const p of members) if (!p.pump(ms)) members.delete(p);
    };
    const marks = () => sent.filter((m) => m.event === 'mark').map((m) => m.mark.name as string);
    return { out, sent, tick, marks, now: () => now };
  }

  it('fires at once when nothing is queued or unacknowledged', () => {
    const { out } = outbound();
    let fired = 0;
    out.whenHeard(() => fired++);
    expect(fired).toBe(1);
  });

  it('fires once, on the echo of the last chunk\'s mark, not before', () => {
    const { out, tick, marks, now } = outbound();
    out.audio('r1', 'i1', Buffer.alloc(160 * 10, 0x55).toString('base64'));
    out.audioDone('i1');
    let fired = 0;
    out.whenHeard(() => fired++);
    for (let ms = 0; ms <= 300; ms += 20) tick(ms);
    const names = marks();
    expect(names).toHaveLength(10);
    for (const n of names.slice(0, -1)) out.mark(n, now());
    expect(fired).toBe(0);
    out.mark(names.at(-1)!, now());
    expect(fired).toBe(1);
    out.mark(names.at(-1)!, now());
    expect(fired).toBe(1);
  });

  it('fires when a cut drops what was playing; a withdrawn callback never fires', () => {
    const { out, tick } = outbound();
    out.audio('r1', 'i1', Buffer.alloc(160 * 10, 0x55).toString('base64'));
    tick(0);
    let fired = 0;
    let withdrawn = 0;
    out.whenHeard(() => fired++);
    const withdraw = out.whenHeard(() => withdrawn++);
    withdraw();
    expect(out.cutPlayback(20)).toBe(true);
    expect(fired).toBe(1);
    expect(withdrawn).toBe(0);
  });
});

describe('acknowledged marks (per-turn heard time)', () => {
  it('ackedMark is the largest mark echoed, covers every chunk before it, and ignores marks echoed after a clear', () => {
    const { p, frames, sent } = harness(1000);
    p.enqueue('r1', 'i1', bytes(160 * 3));
    p.pump(0);
    expect(frames.map((f) => f.mark)).toEqual([1, 2, 3]);
    expect(sent.map((s) => s.mark)).toEqual(['1', '2', '3']); // the mark's name is its number
    expect(p.ackedMark).toBe(0);
    expect(p.onMark('2', 40)).toBe(true);
    expect(p.ackedMark).toBe(2); // chunks 1 and 2 heard
    p.interrupt(50);
    expect(p.onMark('3', 60)).toBe(false); // echoed because of the clear: proves nothing
    expect(p.ackedMark).toBe(2);
    p.enqueue('r2', 'i2', bytes(160));
    p.pump(70);
    expect(frames.at(-1)!.mark).toBe(4); // marks keep rising across a clear: an old echo never matches a new chunk
  });

  it('Outbound tells onHeard each echo that counts, with the acknowledged mark, and nothing for an unknown one', () => {
    const heard: [number, number][] = [];
    let now = 0;
    const out = new Outbound({
      socket: { send: () => true, bufferedAmount: () => 0, cork: (fn) => fn(), close: () => {} },
      clock: { add: () => {}, delete: () => {} },
      leadMs: 100,
      chunkMs: 20,
      now: () => now,
      sinceStart: () => now,
      onChunk: () => {},
      onHeard: (mark, at) => heard.push([mark, at]),
      onLine: () => {},
      truncate: () => {},
    });
    out.start('MZ1', undefined);
    out.setLive(true);
    out.audio('r1', 'i1', Buffer.alloc(160 * 2, 0x55).toString('base64'));
    now = 30;
    out.mark('1', now);
    out.mark('nope', now);
    now = 50;
    out.mark('2', now);
    expect(heard).toEqual([[1, 30], [2, 50]]);
  });
});
