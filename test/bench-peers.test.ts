// The bench's plain-JS µ-law peers must do the same work as the wasm codec:
// bit-exact with it (and so with ITU-T G.191) on every input, or the speed
// comparison in `npm run bench` would compare different things.
import { describe, expect, it, vi } from 'vitest';
import { jsUlawDecode, jsUlawEncodeG191, jsUlawEncodeTable } from '../bench/peers/g711.js';
import { startFloorRelay } from '../bench/peers/floor-relay.js';
import { startNaiveRelay } from '../bench/peers/naive-relay.js';
import type { PeerRelay } from '../bench/peers/peer-relay.js';
import { loadConfig } from '../src/config.js';
import { silentLogger } from '../src/log.js';
import { pcm16ToUlaw, ulawToPcm16 } from '../src/dsp/index.js';
import { placeCall, type CallResult } from '../src/sim/caller.js';
import { startModelStandIn, type ModelStandIn } from '../src/sim/model-server.js';
import type { Scenario } from '../src/sim/scenarios.js';

describe('bench µ-law peers', () => {
  it('decode all 256 codes exactly like the wasm codec', () => {
    const codes = Uint8Array.from({ length: 256 }, (_, i) => i);
    expect(Array.from(jsUlawDecode(codes, new Int16Array(256)))).toEqual(Array.from(ulawToPcm16(codes)));
  });

  it('encode all 65,536 inputs exactly like the wasm codec (table and arithmetic)', () => {
    const pcm = Int16Array.from({ length: 65536 }, (_, i) => i - 32768);
    const wasm = pcm16ToUlaw(pcm);
    const table = jsUlawEncodeTable(pcm, new Uint8Array(pcm.length));
    const arith = jsUlawEncodeG191(pcm, new Uint8Array(pcm.length));
    const firstDiff = (a: Uint8Array): number => a.findIndex((v, i) => v !== wasm[i]);
    expect(firstDiff(table)).toBe(-1);
    expect(firstDiff(arith)).toBe(-1);
  });
});

/** The call went through both ways: every caller frame reached the model, the turn was answered, all reply audio reached the caller. */
async function expectRelayedBothWays(
  call: CallResult,
  model: ModelStandIn,
  relay: PeerRelay,
  mode: 'passthrough' | 'transcode',
): Promise<void> {
  await vi.waitFor(() => expect(model.sessions[0]?.closed).toBe(true), { timeout: 5000 });
  const s = model.sessions[0]!;
  expect(call.protocolViolations).toEqual([]);
  expect(s.format).toBe(mode === 'passthrough' ? 'ulaw8k' : 'pcm24k');
  // Caller → model: every 20 ms frame the caller sent arrived (transcode: less the resampler's few-ms delay line).
  const sentMs = Math.floor(call.durationMs / 20) * 20;
  expect(s.audioMsReceived).toBeGreaterThan(sentMs - 100);
  expect(s.audioMsReceived).toBeLessThanOrEqual(sentMs + 40);
  // The stand-in heard the utterance (VAD turn) and answered it: greeting + reply.
  expect(s.responses.map((r) => r.status)).toEqual(['completed', 'completed']);
  // Model → caller: all the reply audio arrived as µ-law, and the reply was heard after the caller spoke.
  const sentOutMs = s.responses.reduce((a, r) => a + r.audioMsSent, 0);
  const gotBytes = Object.entries(call.frameSizes).reduce((a, [size, n]) => a + Number(size) * n, 0);
  expect(gotBytes / 8).toBeGreaterThan(sentOutMs - 20);
  expect(gotBytes / 8).toBeLessThanOrEqual(sentOutMs + 1);
  expect(call.turnLatenciesMs).toHaveLength(1);
  expect(relay.relayIn.count).toBeGreaterThan(0);
  expect(relay.relayOut.count).toBeGreaterThan(0);
  await vi.waitFor(() => expect(relay.callsEnded).toBe(1));
}

// The naive relay (bench/peers/naive-relay.ts) is the baseline of the relay
// bench: it must really relay, both ways, in both audio modes, or the CPU
// ratio would compare callbridge with a relay that does less.
describe('bench naive relay', () => {
  const scenario: Scenario = { greeting: 'Hello there.', turns: [{ callerTranscript: 'hi', reply: 'Hi, how can I help?' }] };

  for (const mode of ['passthrough', 'transcode'] as const) {
    it(`relays a call both ways in ${mode} (simulated caller ⇄ naive relay ⇄ model stand-in)`, async () => {
      const model = await startModelStandIn({ scenario });
      const relay = await startNaiveRelay({ modelBaseUrl: model.baseUrl, apiKey: 'test', mode });
      try {
        const call = await placeCall({ baseUrl: `http://127.0.0.1:${relay.port}`, utterances: [{ durationMs: 600 }], hangupAfterMs: 200, maxCallMs: 20_000 });
        await expectRelayedBothWays(call, model, relay, mode);
      } finally {
        await relay.close();
        await model.close();
      }
    }, 30_000);
  }
});

// The floor relay (bench/peers/floor-relay.ts) is the bench's lower bound: the
// same edge and model writer as callbridge, no call logic. It too must really
// relay, or the floor would be lower than any relay could go.
describe('bench floor relay', () => {
  const scenario: Scenario = { greeting: 'Hello there.', turns: [{ callerTranscript: 'hi', reply: 'Hi, how can I help?' }] };
  const AUTH = 'floor-test-auth';
  const PUBLIC = 'https://relay.floor.invalid';

  for (const [mode, batchMs, startAfterMs] of [['passthrough', 20, 0], ['transcode', 100, 0], ['transcode', 20, 400]] as const) {
    const late = startAfterMs ? `, Twilio's start ${startAfterMs} ms late (the greeting arrives first and is held)` : '';
    it(`relays a call both ways in ${mode}, ${batchMs} ms appends (signed, through callbridge's edge)${late}`, async () => {
      const model = await startModelStandIn({ scenario });
      const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', PUBLIC_URL: PUBLIC, TWILIO_AUTH_TOKEN: AUTH, OPENAI_API_KEY: 'test', AUDIO_MODE: mode });
      const relay = await startFloorRelay({ config, log: silentLogger, modelBaseUrl: model.baseUrl, apiKey: 'test', mode, batchMs });
      try {
        const call = await placeCall({
          baseUrl: `http://127.0.0.1:${relay.port}`,
          publicUrl: PUBLIC,
          authToken: AUTH,
          utterances: [{ durationMs: 600 }],
          hangupAfterMs: 200,
          maxCallMs: 20_000,
          startAfterMs,
        });
        if (startAfterMs) expect(model.sessions[0]!.responses[0]!.audioMsSent).toBeGreaterThan(0);
        await expectRelayedBothWays(call, model, relay, mode);
        // Its one model socket's connect was timed (the calls-per-core verdict reads it, as callbridge's).
        expect(relay.modelConnect.count).toBe(1);
        expect(relay.modelConnect.maxMs).toBeGreaterThan(0);
        // Batched: about one append per 100 ms.
        if (batchMs > 20) expect(model.sessions[0]!.appendTimes.length).toBeLessThan(call.durationMs / 20 / 3);
      } finally {
        await relay.close();
        await model.close();
      }
    }, 30_000);
  }
});
