/**
 * The fuzzer (src/sim/fuzz.ts), short and seeded: hostile Twilio streams and
 * mutated model events against the real server on loopback, beside one real
 * call, once per edge that loads here (alternating the audio mode). Plus the
 * mutator itself: deterministic per seed, and its labels agree with the
 * parsers wherever a mutation decides the outcome.
 */
import { describe, expect, it } from 'vitest';
import { availableEdges } from '../src/server/app.js';
import {
  classifyModel,
  classifyTwilio,
  loadServerEventFixtures,
  mutateModelEvent,
  mutateTwilio,
  Rng,
  runFuzz,
  sid,
  type StreamIds,
} from '../src/sim/fuzz.js';

const ids = (rng: Rng): StreamIds => ({ streamSid: sid(rng, 'MZ'), callSid: sid(rng, 'CA'), accountSid: sid(rng, 'AC') });

describe('fuzz mutators', () => {
  it('the same seed gives the same frames; another seed gives others', () => {
    const run = (seed: number) => {
      const rng = new Rng(seed);
      const i = ids(rng);
      return Array.from({ length: 300 }, (_, n) => {
        const f = mutateTwilio(rng, i, n, true);
        return `${f.kind}|${Buffer.from(f.data).toString('base64')}`;
      });
    };
    expect(run(7)).toEqual(run(7));
    expect(run(8)).not.toEqual(run(7));
  });

  it('Twilio frames: the parser agrees with every label a mutation decides, and the injection payload is refused', () => {
    const rng = new Rng(42);
    const kinds = new Set<string>();
    let injections = 0;
    for (let n = 0; n < 20_000; n++) {
      const own = ids(rng);
      const f = mutateTwilio(rng, own, n, true);
      kinds.add(f.kind.split(':').at(-1)!);
      const c = classifyTwilio(f, { admitted: n % 2 === 0, streamSid: own.streamSid });
      expect(c.disagreement).toBeUndefined();
      if (f.kind === 'media:injection') {
        injections++;
        expect(c.verdict).toBe('counted');
      }
    }
    expect(injections).toBeGreaterThan(100);
    for (const k of ['drop', 'retype', 'truncate', 'bad_base64', 'bad_sid', 'other_sid', 'binary', 'huge_frame', 'invalid_utf8', 'oversize_payload', 'reorder']) {
      expect(kinds).toContain(k);
    }
  });

  it('model events: every certainly-malformed mutation is refused by the provider parser', () => {
    const rng = new Rng(43);
    const bases = loadServerEventFixtures();
    let rejected = 0;
    for (let n = 0; n < 5_000; n++) {
      const k = classifyModel(mutateModelEvent(rng, bases));
      expect(k.disagreement).toBeUndefined();
      if (k.rejected) rejected++;
    }
    expect(rejected).toBeGreaterThan(500);
  });
});

describe.each(availableEdges().map((edge, i) => [edge, i % 2 === 0 ? 'transcode' : 'passthrough'] as const))(
  'a short seeded fuzz run (%s edge, %s)',
  (edge, mode) => {
    it('nothing crashes, the real call is intact, RSS stays flat, every rejected message is counted', { timeout: 120_000 }, async () => {
      const r = await runFuzz({ seed: 1234, messages: 3000, mode, edge, spreadMs: 12_000, maxSeconds: 100 });
      expect(r.failures).toEqual([]);
      expect(r.ok).toBe(true);
      expect(r.crashes).toEqual([]);
      expect(r.handlerErrors).toBe(0);
      // Every message sent; the counters match the accounting rule exactly.
      expect(r.twilio.sent + r.model.injected).toBe(3000);
      expect(r.twilio.uncertain).toBe(0);
      expect(r.twilio.counted).toBe(r.twilio.expectedCounted);
      expect(r.twilio.expectedCounted).toBeGreaterThan(r.twilio.sent / 2);
      expect(r.twilio.refusedStarts).toBeGreaterThan(0);
      expect(r.model.rule).toBe('exact');
      expect(r.model.counted).toBe(r.model.expectedRejected);
      expect(r.model.expectedRejected).toBeGreaterThan(50);
      // The real call beside it.
      expect(r.realCall).not.toBeNull();
      expect(r.realCall!.turnsAnswered).toBe(r.realCall!.turns);
      expect(r.realCall!.framesLost).toBe(0);
      expect(r.realCall!.heardMs).toBeGreaterThan(5000);
      expect(r.realCall!.protocolViolations).toEqual([]);
      expect(r.realCall!.recordProtocolErrors).toBe(0);
      expect(r.rss.growthMiB).toBeLessThanOrEqual(64);
    });
  },
);
