/**
 * The fuzzer (src/sim/fuzz.ts), short and seeded: hostile Twilio streams and
 * mutated model events against the real server on loopback, beside one real
 * call, once per edge that loads here (alternating the audio mode), for the
 * Realtime provider and for GPT-Live (PROVIDER=live, the Live stand-in, Live
 * server events). Plus the mutators themselves: deterministic per seed, and
 * their labels agree with the parsers wherever a mutation decides the outcome.
 */
import { describe, expect, it } from 'vitest';
import { availableEdges } from '../src/server/app.js';
import { parseLiveServerEvent } from '../src/live/protocol.js';
import {
  classifyLiveEvent,
  classifyModel,
  classifyTwilio,
  fuzzCli,
  liveServerEventBases,
  loadServerEventFixtures,
  mutateLiveEvent,
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

  it('Live bases: one valid event of every server type the provider handles, nested Responses events of every kind it reads, and the rest well-formed', () => {
    const handled = new Set<string>();
    const nested = new Set<string>();
    for (const b of liveServerEventBases()) {
      const p = parseLiveServerEvent(JSON.stringify(b));
      if (!p.ok) throw new Error(`base ${String(b.type)} refused: ${p.error}`);
      handled.add(p.event.type);
      if (p.event.type === 'response.event') nested.add(p.event.event.kind);
    }
    for (const t of ['session.started', 'session.output_audio.delta', 'session.output_transcript.delta', 'session.input_transcript.delta', 'session.delegation.created', 'response.event', 'session.usage.updated', 'session.closed', 'error', 'unhandled']) {
      expect(handled).toContain(t);
    }
    expect([...nested].sort()).toEqual(['function_call', 'other', 'response_end']);
  });

  it('Live events: deterministic per seed; every certainly-malformed mutation is refused by parseLiveServerEvent; a well-formed session.closed is flagged', () => {
    const frames = (seed: number) => {
      const rng = new Rng(seed);
      const bases = liveServerEventBases();
      return Array.from({ length: 300 }, () => {
        const f = mutateLiveEvent(rng, bases);
        return `${f.kind}|${Buffer.from(f.data).toString('base64')}`;
      });
    };
    expect(frames(5)).toEqual(frames(5));
    expect(frames(6)).not.toEqual(frames(5));

    const rng = new Rng(44);
    const bases = liveServerEventBases();
    const kinds = new Set<string>();
    let rejected = 0;
    let unknown = 0;
    let closes = 0;
    let taken = 0;
    for (let n = 0; n < 5_000; n++) {
      const f = mutateLiveEvent(rng, bases);
      kinds.add(f.kind.startsWith('valid:') ? 'valid' : f.kind.split(':').at(-1)!);
      const k = classifyLiveEvent(f);
      expect(k.disagreement).toBeUndefined();
      if (f.certainlyMalformed) expect(k.rejected).toBe(true);
      if (k.rejected) rejected++;
      else if (k.unknown) unknown++;
      else taken++;
      if (k.closes) {
        closes++;
        const p = parseLiveServerEvent(f.data as string);
        expect(p.ok && p.event.type).toBe('session.closed');
      }
    }
    // Every way of breaking an event, and each outcome, is drawn.
    for (const k of ['binary', 'not_object', 'truncate', 'invalid_json', 'no_type', 'unknown_type', 'nested', 'valid', 'drop', 'retype', 'odd', 'huge_string', 'bad_audio']) {
      expect(kinds).toContain(k);
    }
    expect(rejected).toBeGreaterThan(1000);
    expect(unknown).toBeGreaterThan(200);
    expect(taken).toBeGreaterThan(1000);
    expect(closes).toBeGreaterThan(20);
  });

  it('the runner takes --provider live and refuses another provider', async () => {
    let out = '';
    expect(await fuzzCli(['--provider', 'pipeline'], (s) => (out += s))).toBe(2);
    expect(out).toContain('--provider is realtime or live');
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

// Live: the modes the other way round from the Realtime runs, so each edge sees both formats across the two providers.
describe.each(availableEdges().map((edge, i) => [edge, i % 2 === 0 ? 'passthrough' : 'transcode'] as const))(
  'a short seeded fuzz run on GPT-Live (%s edge, %s)',
  (edge, mode) => {
    it('nothing crashes, the real Live call is intact, RSS stays flat, every malformed Live event is counted', { timeout: 120_000 }, async () => {
      const r = await runFuzz({ provider: 'live', seed: 1234, messages: 3000, mode, edge, spreadMs: 12_000, maxSeconds: 100 });
      expect(r.failures).toEqual([]);
      expect(r.ok).toBe(true);
      expect(r.provider).toBe('live');
      expect(r.crashes).toEqual([]);
      expect(r.handlerErrors).toBe(0);
      expect(r.twilio.sent + r.model.injected).toBe(3000);
      expect(r.twilio.uncertain).toBe(0);
      expect(r.twilio.counted).toBe(r.twilio.expectedCounted);
      // The Live model side: every victim connection open to the end, the Live sessions' malformed counters exactly what was refused.
      expect(r.model.victimConnections).toBeGreaterThan(0);
      expect(r.model.closedEarly).toBe(0);
      expect(r.model.rule).toBe('exact');
      expect(r.model.counted).toBe(r.model.expectedRejected);
      expect(r.model.expectedRejected).toBeGreaterThan(50);
      expect(r.model.byKind.valid).toBeGreaterThan(0);
      expect(r.model.byKind.odd).toBeGreaterThan(0);
      // The real call beside it, on the Live stand-in: every utterance spoken whole, every frame heard.
      expect(r.realCall).not.toBeNull();
      expect(r.realCall!.turnsAnswered).toBe(r.realCall!.turns);
      expect(r.realCall!.responses.length).toBeGreaterThan(0);
      expect(r.realCall!.responses.every((s) => s === 'completed')).toBe(true);
      expect(r.realCall!.framesLost).toBe(0);
      expect(r.realCall!.heardMs).toBeGreaterThan(5000);
      expect(r.realCall!.protocolViolations).toEqual([]);
      expect(r.realCall!.recordProtocolErrors).toBe(0);
      expect(r.rss.growthMiB).toBeLessThanOrEqual(64);
    });
  },
);
