/**
 * A call that cannot get a DSP channel (issue 22, item 8), on the real relay
 * on loopback: the real wasm transcoder with every slot of this thread taken,
 * the real OpenAI provider against the model stand-in (which records whether
 * each session was closed), a simulated Twilio caller, the real SQLite store.
 */
import { afterEach, expect, it } from 'vitest';
import { DSP_SLOTS, loadDsp, Transcoder } from '../src/dsp/index.js';
import { placeCall } from '../src/sim/caller.js';
import { useCallbridge } from './helpers/e2e.js';
import { sleep, until } from './helpers/until.js';

const AUTH = 'faults-twilio-auth-token';
const PUBLIC = 'https://faults.e2e.invalid';
const callbridge = useCallbridge('faults');

const held: Transcoder[] = [];
afterEach(() => {
  for (const t of held.splice(0)) t.close();
});

it('DSP_SLOTS is the wasm build\'s slot count', () => {
  expect(loadDsp().maxSlots).toBe(DSP_SLOTS);
});

it('no DSP slot left when the stream starts: the call ends `error` (recorded), the pre-warmed model session is closed, the slot count is unchanged', async () => {
  const { app, model, baseUrl } = await callbridge({ env: { PUBLIC_URL: PUBLIC, TWILIO_AUTH_TOKEN: AUTH, AUDIO_MODE: 'transcode' } });
  // callbridge runs in this thread: take every slot its calls would use.
  for (;;) {
    try {
      held.push(Transcoder.open());
    } catch {
      break;
    }
  }
  expect(held).toHaveLength(DSP_SLOTS);
  const result = await placeCall({ baseUrl, publicUrl: PUBLIC, authToken: AUTH, utterances: [{ durationMs: 200 }], maxCallMs: 20_000 });
  expect(result.closeCode).toBe(1011);
  expect(result.framesReceived).toBe(0);
  await until(() => model.sessions.length === 1 && model.sessions[0]!.closed, { timeoutMs: 10_000, what: 'the pre-warmed model session to be closed' });
  expect(app.relay.activeCalls).toBe(0);
  await app.store.flush();
  const record = (await app.store.get(result.callSid))!;
  expect(record).toMatchObject({ state: 'completed', endReason: 'error' });
  expect(record.events).toContainEqual(expect.objectContaining({ type: 'error', detail: expect.stringContaining('DSP channel slots') }));
  expect(loadDsp().exports.openSlots()).toBe(DSP_SLOTS); // only ours: the failed call holds none
  // The pre-warmed session stays closed: nothing reconnects it.
  await sleep(300);
  expect(model.sessions).toHaveLength(1);
}, 60_000);
