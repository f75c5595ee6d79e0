// The Deepgram STT stage (src/pipeline/stt-deepgram.ts) against its stand-in (src/sim/deepgram-server.ts) on loopback.
import { afterEach, describe, expect, it } from 'vitest';
import { DeepgramStream, DeepgramStt, closeError, listenUrl, parseDeepgramMessage, type DeepgramSttOptions } from '../src/pipeline/stt-deepgram.js';
import { SttError, type SttEvent, type SttStream } from '../src/pipeline/stt.js';
import { startDeepgramStandIn, type DeepgramStandIn, type DeepgramStandInOptions } from '../src/sim/deepgram-server.js';
import { speechLike, ulawEncode } from '../src/sim/audio.js';
import { sleep, until } from './helpers/until.js';

const FRAME_BYTES = 160; // 20 ms of µ-law 8 kHz

let standIn: DeepgramStandIn | undefined;
const streams: SttStream[] = [];

afterEach(async () => {
  for (const s of streams.splice(0)) await s.close();
  await standIn?.close();
  standIn = undefined;
});

async function setup(sim: DeepgramStandInOptions = {}, client: Partial<DeepgramSttOptions> = {}) {
  standIn = await startDeepgramStandIn({ firstResultMs: 60, interimEveryMs: 80, finalDelayMs: 10, ...sim });
  const stt = new DeepgramStt({ apiKey: 'test-key', url: standIn.url, ...client });
  return { sim: standIn, stt };
}

async function open(stt: DeepgramStt): Promise<{ stream: SttStream; events: SttEvent[] }> {
  const stream = await stt.connect({});
  streams.push(stream);
  const events: SttEvent[] = [];
  stream.onEvent((ev) => events.push(ev));
  return { stream, events };
}

const speech = (ms: number, seed = 1): Uint8Array => ulawEncode(speechLike(ms, 8000, seed));
const silence = (ms: number): Uint8Array => ulawEncode(new Int16Array(ms * 8));

/** Sends `audio` in 20 ms frames, one every `paceMs` (20 = real time). */
async function pump(stream: SttStream, audio: Uint8Array, paceMs = 20): Promise<void> {
  for (let off = 0; off < audio.length; off += FRAME_BYTES) {
    stream.send(audio.subarray(off, off + FRAME_BYTES));
    await sleep(paceMs);
  }
}

const ofType = <T extends SttEvent['type']>(events: SttEvent[], type: T) => events.filter((e): e is Extract<SttEvent, { type: T }> => e.type === type);

describe('Deepgram wire (pure)', () => {
  it('builds the listen URL with the parameters the stage relies on', () => {
    const u = new URL(
      listenUrl('wss://api.deepgram.com/v1/listen', {
        model: 'nova-3',
        endpointingMs: 300,
        utteranceEndMs: 1000,
        interimResults: true,
        vadEvents: true,
        smartFormat: false,
        keyterms: ['eligibility', 'member ID'],
      }),
    );
    expect(Object.fromEntries(u.searchParams)).toMatchObject({
      model: 'nova-3',
      encoding: 'mulaw',
      sample_rate: '8000',
      channels: '1',
      interim_results: 'true',
      endpointing: '300',
      utterance_end_ms: '1000',
      vad_events: 'true',
    });
    expect(u.searchParams.getAll('keyterm')).toEqual(['eligibility', 'member ID']);
  });

  it('parses Results, UtteranceEnd, SpeechStarted; bad input is a value, not a throw', () => {
    const r = parseDeepgramMessage(
      JSON.stringify({
        type: 'Results',
        start: 0.5,
        duration: 1.2,
        is_final: true,
        speech_final: true,
        channel: { alternatives: [{ transcript: 'hi there', confidence: 0.9, words: [{ word: 'hi', start: 0.5, end: 0.7, confidence: 0.95, punctuated_word: 'Hi' }] }] },
      }),
    );
    expect(r).toEqual({
      ok: true,
      message: {
        type: 'Results',
        isFinal: true,
        speechFinal: true,
        fromFinalize: false,
        startS: 0.5,
        durationS: 1.2,
        text: 'hi there',
        confidence: 0.9,
        words: [{ word: 'hi', startS: 0.5, endS: 0.7, confidence: 0.95, punctuated: 'Hi' }],
      },
    });
    expect(parseDeepgramMessage('{"type":"UtteranceEnd","channel":[0,1],"last_word_end":2.5}')).toEqual({ ok: true, message: { type: 'UtteranceEnd', lastWordEndS: 2.5 } });
    expect(parseDeepgramMessage('{"type":"SpeechStarted","channel":[0],"timestamp":0.3}')).toEqual({ ok: true, message: { type: 'SpeechStarted', atS: 0.3 } });
    expect(parseDeepgramMessage('{"type":"Whatever"}')).toEqual({ ok: true, message: { type: 'unhandled', originalType: 'Whatever' } });
    expect(parseDeepgramMessage('not json').ok).toBe(false);
    expect(parseDeepgramMessage('{"type":"Results","channel":{}}').ok).toBe(false);
    expect(parseDeepgramMessage('{"type":"UtteranceEnd"}').ok).toBe(false);
  });

  it('maps close codes: 1002 DATA fatal, 1011 NET retryable, 1000 after CloseStream clean', () => {
    const data = closeError(1002, 'DATA-0000', false)!;
    expect([data.retryable, data.code, data.providerCode]).toEqual([false, 1002, 'DATA-0000']);
    const net = closeError(1011, 'NET-0001', false)!;
    expect([net.retryable, net.code, net.providerCode]).toEqual([true, 1011, 'NET-0001']);
    expect(closeError(1000, '', true)).toBeUndefined();
    expect(closeError(1006, '', false)!.retryable).toBe(true);
  });
});

describe('Deepgram STT stage against the stand-in', () => {
  it('a spoken utterance gives speech_started → interims → final (speech_final) → utterance_end; usage = audio sent', async () => {
    const { sim, stt } = await setup({ texts: ['My member ID is 12345.', 'Yes, that is right.'] }, { endpointingMs: 300, utteranceEndMs: 1000 });
    const { stream, events } = await open(stt);

    await pump(stream, speech(1200));
    stream.send(new Uint8Array(0)); // must never reach the wire
    await pump(stream, silence(1400), 5);
    await until(() => ofType(events, 'utterance_end').length === 1, { what: 'UtteranceEnd' });

    const s = sim.sessions[0]!;
    expect(s.query).toMatchObject({
      model: 'nova-3',
      encoding: 'mulaw',
      sample_rate: '8000',
      channels: '1',
      interim_results: 'true',
      endpointing: '300',
      utterance_end_ms: '1000',
      vad_events: 'true',
    });
    expect(s.authorization).toBe('Token test-key');

    const kinds = events.map((e) => e.type);
    const iStart = kinds.indexOf('speech_started');
    const iInterim = kinds.indexOf('interim');
    const iFinal = kinds.indexOf('final');
    const iEnd = kinds.indexOf('utterance_end');
    expect(iStart).toBe(0);
    expect(iInterim).toBeGreaterThan(iStart);
    expect(iFinal).toBeGreaterThan(iInterim);
    expect(iEnd).toBeGreaterThan(iFinal);

    const interims = ofType(events, 'interim');
    expect(interims.every((e) => e.text.length > 0 && !e.isFinal)).toBe(true);
    expect('My member ID is 12345.'.startsWith(interims[0]!.text)).toBe(true);
    const finals = ofType(events, 'final');
    expect(finals).toHaveLength(1);
    const f = finals[0]!;
    expect(f).toMatchObject({ isFinal: true, speechFinal: true, fromFinalize: false, text: 'My member ID is 12345.' });
    expect(f.words.map((w) => w.word)).toEqual(['my', 'member', 'id', 'is', '12345']);
    for (const w of f.words) {
      expect(w.endS).toBeGreaterThan(w.startS);
      expect(w.startS).toBeGreaterThanOrEqual(0);
      expect(w.endS).toBeLessThanOrEqual(1.2 + 0.02);
      expect(w.confidence).toBeGreaterThan(0);
    }
    const started = ofType(events, 'speech_started')[0]!;
    expect(started.atS).toBeLessThan(0.2);
    expect(ofType(events, 'utterance_end')[0]!.lastWordEndS).toBeCloseTo(f.words.at(-1)!.endS, 6);

    // A second utterance takes the next text.
    await pump(stream, speech(800, 2), 5);
    await pump(stream, silence(500), 5);
    await until(() => ofType(events, 'final').length === 2, { what: 'second final' });
    expect(ofType(events, 'final')[1]!.text).toBe('Yes, that is right.');

    // Usage: audio seconds sent, as the stand-in counted them; no empty frame ever sent.
    const u = stream.usage();
    expect(u.bytesSent).toBe((1200 + 1400 + 800 + 500) * 8);
    expect(u.audioSeconds).toBeCloseTo(3.9, 9);
    await until(() => s.audioBytes === u.bytesSent, { what: 'audio at the stand-in' });
    expect(s.binaryFrames).toBe(u.framesSent);
    expect(s.emptyFrames).toBe(0);
    expect(u.droppedBytes).toBe(0);
  });

  it('KeepAlive keeps an idle stream open past the idle close; without it the stream closes retryable (1011 NET-0001)', async () => {
    const { sim, stt } = await setup({ idleTimeoutMs: 400 }, { keepAliveMs: 120 });
    const { stream, events } = await open(stt);
    await pump(stream, speech(100), 5);
    await sleep(1300); // > 3 idle windows
    expect(ofType(events, 'closed')).toHaveLength(0);
    const kept = sim.sessions[0]!;
    expect(kept.closedWith).toBeUndefined();
    expect(kept.keepAlives).toBeGreaterThanOrEqual(3);
    expect(stream.usage().keepAlivesSent).toBe(kept.keepAlives);
    expect(kept.texts.every((t) => typeof t.message === 'object')).toBe(true); // text frames, JSON

    const quiet = new DeepgramStt({ apiKey: 'test-key', url: sim.url, keepAliveMs: 0 });
    const { events: ev2 } = await open(quiet);
    await until(() => ofType(ev2, 'closed').length === 1, { what: 'idle close' });
    const closed = ofType(ev2, 'closed')[0]!;
    expect(closed.retryable).toBe(true);
    expect(closed.error).toBeInstanceOf(SttError);
    expect([closed.error!.code, closed.error!.providerCode]).toEqual([1011, 'NET-0001']);
    expect(sim.sessions[1]!.keepAlives).toBe(0);
  });

  it('keeps sending no KeepAlive while audio flows', async () => {
    const { sim, stt } = await setup({}, { keepAliveMs: 400 });
    const { stream } = await open(stt);
    expect((stream as DeepgramStream).timersPending).toBe(1); // the KeepAlive timer
    await pump(stream, silence(800), 20);
    expect(sim.sessions[0]!.keepAlives).toBe(0);
    expect(stream.usage().keepAlivesSent).toBe(0);
  });

  it('Finalize flushes the utterance in progress as a final with from_finalize, before any endpoint', async () => {
    const { sim, stt } = await setup({ texts: ['Check my eligibility please.'] }, { endpointingMs: 3000, utteranceEndMs: 0 });
    const { stream, events } = await open(stt);
    await pump(stream, speech(800), 10);
    await pump(stream, silence(200), 5);
    await sleep(150);
    expect(ofType(events, 'final')).toHaveLength(0); // no endpoint within 3 s of silence audio
    stream.finalize();
    await until(() => ofType(events, 'final').length === 1, { what: 'flushed final' });
    expect(ofType(events, 'final')[0]).toMatchObject({ fromFinalize: true, speechFinal: false, text: 'Check my eligibility please.' });
    expect(sim.sessions[0]!.finalizes).toBe(1);
    expect(sim.sessions[0]!.query.utterance_end_ms).toBeUndefined();
  });

  it('close() sends CloseStream, gets the pending final and Metadata, and ends clean (not retryable)', async () => {
    const { sim, stt } = await setup({ texts: ['Goodbye.'] }, { endpointingMs: 3000, keepAliveMs: 50 });
    const { stream, events } = await open(stt);
    await pump(stream, speech(600), 5);
    await stream.close();
    const closed = ofType(events, 'closed');
    expect(closed).toHaveLength(1);
    expect(closed[0]).toMatchObject({ retryable: false });
    expect(closed[0]!.error).toBeUndefined();
    expect(ofType(events, 'final')[0]?.text).toBe('Goodbye.');
    expect(events.at(-1)!.type).toBe('closed');
    const s = sim.sessions[0]!;
    expect(s.closeStreams).toBe(1);
    expect(s.closedWith).toBe(1000);
    expect(s.sent.at(-1)!.message).toMatchObject({ type: 'Metadata', duration: 0.6 });
    // After close: audio is dropped and counted, never sent; close() again is a no-op.
    stream.send(speech(20));
    expect(stream.usage().droppedBytes).toBe(160);
    await stream.close();
    expect(s.binaryFrames).toBe(30);
    // No timer of the stream (KeepAlive, close budget) outlives it.
    expect((stream as DeepgramStream).timersPending).toBe(0);
    const kept = stream.usage().keepAlivesSent;
    await sleep(200);
    expect(stream.usage().keepAlivesSent).toBe(kept);
  });

  it('a refused key is not retryable; a 503 at the upgrade is; an aborted connect rejects at once', async () => {
    const { sim } = await setup();
    const bad = new DeepgramStt({ apiKey: 'wrong', url: sim.url });
    const err = await bad.connect({}).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SttError);
    expect([(err as SttError).retryable, (err as SttError).code]).toEqual([false, 401]);
    expect(sim.refused).toEqual([{ status: 401, why: 'Invalid credentials.' }]);
    expect(sim.sessions).toHaveLength(0);

    const busy = await startDeepgramStandIn({ refuseStatus: 503 });
    try {
      const e503 = await new DeepgramStt({ apiKey: 'test-key', url: busy.url }).connect({}).catch((e: SttError) => e);
      expect([(e503 as SttError).retryable, (e503 as SttError).code]).toEqual([true, 503]);
    } finally {
      await busy.close();
    }

    const ac = new AbortController();
    ac.abort();
    const aborted = await new DeepgramStt({ apiKey: 'test-key', url: sim.url }).connect({}, ac.signal).catch((e: SttError) => e);
    expect([(aborted as SttError).retryable, (aborted as SttError).code]).toEqual([false, 'aborted']);
  });

  it('a dropped socket ends the stream with closed {retryable: true}', async () => {
    const { stt } = await setup({ faults: [{ afterAudioMs: 200, kind: 'drop' }] });
    const { stream, events } = await open(stt);
    await pump(stream, speech(400), 5);
    await until(() => ofType(events, 'closed').length === 1, { what: 'closed' });
    const c = ofType(events, 'closed')[0]!;
    expect(c.retryable).toBe(true);
    expect(c.error?.code).toBe(1006);
    expect(events.at(-1)!.type).toBe('closed');
    expect((stream as DeepgramStream).timersPending).toBe(0);
  });

  it('close 1002 DATA-0000 is fatal, 1011 NET-0000 retryable; a garbage frame is a non-fatal error', async () => {
    const { stt } = await setup({
      faults: [
        { afterAudioMs: 100, kind: 'garbage', session: 0 },
        { afterAudioMs: 200, kind: 'data_error', session: 0 },
        { afterAudioMs: 100, kind: 'net_error', session: 1 },
      ],
    });
    const a = await open(stt);
    await pump(a.stream, speech(400), 5);
    await until(() => ofType(a.events, 'closed').length === 1, { what: 'closed 1002' });
    expect(ofType(a.events, 'error')).toHaveLength(1);
    expect(ofType(a.events, 'error')[0]!.error.retryable).toBe(false);
    const ca = ofType(a.events, 'closed')[0]!;
    expect([ca.retryable, ca.error?.code, ca.error?.providerCode]).toEqual([false, 1002, 'DATA-0000']);

    const b = await open(stt);
    await pump(b.stream, speech(300), 5);
    await until(() => ofType(b.events, 'closed').length === 1, { what: 'closed 1011' });
    const cb = ofType(b.events, 'closed')[0]!;
    expect([cb.retryable, cb.error?.code, cb.error?.providerCode]).toEqual([true, 1011, 'NET-0000']);
  });
});
