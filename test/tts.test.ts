// The TTS stage: the chunker's properties, and both providers against their stand-ins over loopback.
import { afterEach, describe, expect, it } from 'vitest';
import { speechLike } from '../src/sim/audio.js';
import { ElevenLabsTts, parseElevenLabsMessage } from '../src/pipeline/tts-elevenlabs.js';
import { OpenAiTts } from '../src/pipeline/tts-openai.js';
import { TTS_FORMAT_INFO, TextChunker, TtsError, type TtsEvent, type TtsFormat, type TtsStream } from '../src/pipeline/tts.js';
import { startElevenLabsStandIn, type ElevenStandIn, type ElevenStandInOptions } from '../src/sim/elevenlabs-server.js';
import { startOpenAiTtsStandIn, type OpenAiTtsStandIn, type OpenAiTtsStandInOptions } from '../src/sim/openai-tts-server.js';

// ---------------------------------------------------------------------------
// Chunker

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

const WORDS = ['hello', 'member', 'ID', 'is', 'Dr.', 'Smith', '3.5', 'okay', 'a', 'eligibility', 'check', 'you', 'the', 'date', '"quoted."', '(aside)', 'birth'];
const PUNCT = ['', '', '', ',', '.', '?', '!', ';', ':', ' —', '\n'];

function randomText(r: () => number, words: number): string {
  let t = '';
  for (let i = 0; i < words; i++) {
    t += WORDS[Math.floor(r() * WORDS.length)]! + PUNCT[Math.floor(r() * PUNCT.length)]!;
    t += r() < 0.1 ? '  ' : ' ';
  }
  return t.trimEnd();
}

function chunkAll(text: string, r: () => number, opts: ConstructorParameters<typeof TextChunker>[0]): { chunks: string[]; flushed: string[] } {
  const c = new TextChunker(opts);
  const chunks: string[] = [];
  for (let i = 0; i < text.length; ) {
    const n = 1 + Math.floor(r() * 12);
    chunks.push(...c.push(text.slice(i, i + n)));
    i += n;
  }
  const flushed = c.flush();
  return { chunks, flushed };
}

describe('TextChunker', () => {
  it('loses nothing, never cuts inside a word, keeps chunks within maxChars, and does not depend on how deltas are split', () => {
    const r = rng(7);
    for (let trial = 0; trial < 300; trial++) {
      const text = randomText(r, 5 + Math.floor(r() * 80));
      const maxChars = 30 + Math.floor(r() * 100);
      const opts = { maxChars, minClauseChars: 25, firstMinClauseChars: 12 };
      const a = chunkAll(text, rng(trial + 1), opts);
      const b = chunkAll(text, rng(trial + 1000), opts);
      const all = [...a.chunks, ...a.flushed];
      expect(all.join('')).toBe(text);
      expect([...b.chunks, ...b.flushed]).toEqual(all);
      // Every cut made while streaming is right after whitespace.
      for (const ch of a.chunks) expect(ch).toMatch(/\s$/);
      for (const ch of all) {
        if (ch.length > maxChars) expect(ch.trim()).not.toMatch(/\s/); // only a single overlong word may exceed
      }
    }
  });

  it('cuts at sentence ends as soon as the next character shows the sentence is over', () => {
    const c = new TextChunker();
    expect(c.push('Hello there.')).toEqual([]);
    expect(c.push(' How')).toEqual(['Hello there. ']);
    expect(c.push(' are you?')).toEqual([]);
    expect(c.flush()).toEqual(['How are you?']);
  });

  it('does not cut after abbreviations, initials or decimals', () => {
    const c = new TextChunker();
    const out = c.push('Dr. Smith at 3.5 Main St. sees J. Doe on Monday. Then ');
    expect(out).toEqual(['Dr. Smith at 3.5 Main St. sees J. Doe on Monday. ']);
  });

  it('cuts at a clause once the chunk is long enough, earlier for the first chunk', () => {
    const c = new TextChunker({ minClauseChars: 40, firstMinClauseChars: 20 });
    expect(c.push('Yes, ')).toEqual([]); // too short for a clause cut
    expect(c.push('I can check that for you, ')).toEqual(['Yes, I can check that for you, ']);
    expect(c.push('give me a moment, ')).toEqual([]); // 18 < 40 for later chunks
    expect(c.push('and I will look up your plan, ')).toEqual(['give me a moment, and I will look up your plan, ']);
  });

  it('cuts a long run without punctuation at the last space within maxChars', () => {
    const c = new TextChunker({ maxChars: 20 });
    const out = c.push('one two three four five six seven eight');
    expect(out[0]).toBe('one two three four ');
    expect(out.every((x) => x.length <= 20)).toBe(true);
    expect([...out, ...c.flush()].join('')).toBe('one two three four five six seven eight');
  });

  it('closing quotes and brackets stay with their sentence', () => {
    const c = new TextChunker();
    expect(c.push('He said "done." Next')).toEqual(['He said "done." ']);
  });
});

// ---------------------------------------------------------------------------
// Loopback helpers

interface Collected {
  events: TtsEvent[];
  audioBytes: number;
  firstAudio: Promise<void>;
  finished: Promise<TtsEvent>;
}

function collect(s: TtsStream): Collected {
  const c: Collected = { events: [], audioBytes: 0, firstAudio: undefined as never, finished: undefined as never };
  let onAudio!: () => void;
  let onEnd!: (e: TtsEvent) => void;
  c.firstAudio = new Promise((r) => (onAudio = r));
  c.finished = new Promise((r) => (onEnd = r));
  s.onEvent((ev) => {
    c.events.push(ev);
    switch (ev.type) {
      case 'audio':
        c.audioBytes += ev.audio.length;
        onAudio();
        return;
      case 'alignment':
        return;
      case 'done':
      case 'error':
        onEnd(ev);
        return;
    }
  });
  return c;
}

/** Resolves `p` or fails the test after `ms` (a hang guard, not a speed assertion). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, rej) => (t = setTimeout(() => rej(new Error(`timed out waiting for ${what}`)), ms)))]).finally(() =>
    clearTimeout(t),
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const REPLY = 'Thanks for calling. I can check your eligibility, and it takes only a moment. What is your member ID?';

// ---------------------------------------------------------------------------
// ElevenLabs

describe('ElevenLabsTts against its stand-in', () => {
  let sim: ElevenStandIn | undefined;
  afterEach(async () => {
    await sim?.close();
    sim = undefined;
  });
  const start = async (o: ElevenStandInOptions = {}) => {
    sim = await startElevenLabsStandIn({ apiKey: 'xi-test', firstAudioDelayMs: 20, frameGapMs: 2, ...o });
    return new ElevenLabsTts({ apiKey: 'xi-test', voiceId: 'voice1', baseUrl: sim.url, voiceSettings: { stability: 0.5, similarity_boost: 0.8 } });
  };

  it('sends the init message and query the protocol asks for', async () => {
    const tts = await start();
    const s = await tts.open({ format: 'ulaw_8000' });
    const c = collect(s);
    s.push('Hi there. ');
    s.end();
    expect((await within(c.finished, 5000, 'done')).type).toBe('done');
    const ses = sim!.sessions[0]!;
    expect(ses.voiceId).toBe('voice1');
    expect(ses.query).toMatchObject({ model_id: 'eleven_flash_v2_5', output_format: 'ulaw_8000', auto_mode: 'true' });
    expect(ses.init).toMatchObject({ text: ' ', xi_api_key: 'xi-test', voice_settings: { stability: 0.5, similarity_boost: 0.8 } });
    expect(ses.messages.at(-1)).toMatchObject({ text: '' });
  });

  it('plays the first audio before end() when text arrives in deltas', async () => {
    const tts = await start();
    const s = await tts.open({ format: 'ulaw_8000' });
    const c = collect(s);
    const deltas = REPLY.match(/.{1,7}/g)!;
    let ended = false;
    let audioBeforeEnd = false;
    void c.firstAudio.then(() => (audioBeforeEnd = !ended));
    // The first sentence, then wait for its audio while the "LLM" still has text to give.
    let i = 0;
    for (; i < deltas.length && !deltas.slice(0, i).join('').includes('calling. '); i++) s.push(deltas[i]!);
    await within(c.firstAudio, 5000, 'first audio');
    for (; i < deltas.length; i++) s.push(deltas[i]!);
    ended = true;
    s.end();
    expect((await within(c.finished, 5000, 'done')).type).toBe('done');
    expect(audioBeforeEnd).toBe(true);
    const ses = sim!.sessions[0]!;
    expect(ses.generations.length).toBeGreaterThanOrEqual(2);
    expect(ses.generations[0]!.text).toBe('Thanks for calling. ');
    // Alignment arrives with the audio and covers what was generated.
    const al = c.events.filter((e) => e.type === 'alignment');
    expect(al.length).toBe(ses.generations.length);
  });

  it.each<[TtsFormat]>([['ulaw_8000'], ['pcm_16000'], ['pcm_22050'], ['pcm_44100']])('%s gives the right byte count', async (format) => {
    const tts = await start({ msPerChar: 60 });
    const s = await tts.open({ format });
    const c = collect(s);
    s.push(REPLY);
    s.end();
    expect((await within(c.finished, 5000, 'done')).type).toBe('done');
    const { rateHz, bytesPerSample } = TTS_FORMAT_INFO[format];
    const gens = sim!.sessions[0]!.generations;
    expect(gens.map((g) => g.text).join('').trim()).toBe(REPLY);
    const expected = gens.reduce((n, g) => n + Math.round((g.text.length * 60 * rateHz) / 1000) * bytesPerSample, 0);
    expect(c.audioBytes).toBe(expected);
    for (const ev of c.events) if (ev.type === 'audio' && bytesPerSample === 2) expect(ev.audio.length % 2).toBe(0);
  });

  it('counts the characters sent as usage', async () => {
    const tts = await start();
    const s = await tts.open({ format: 'pcm_24000' });
    const c = collect(s);
    for (const d of REPLY.match(/.{1,5}/g)!) s.push(d);
    s.end();
    const done = await within(c.finished, 5000, 'done');
    expect(done).toEqual({ type: 'done', usage: { characters: REPLY.length } });
    expect(s.usage.characters).toBe(REPLY.length);
  });

  it('cancel stops audio at once and nothing arrives after it', async () => {
    const tts = await start({ frameGapMs: 20, frameMs: 40 });
    const s = await tts.open({ format: 'pcm_16000' });
    const c = collect(s);
    s.push(REPLY);
    s.end();
    await within(c.firstAudio, 5000, 'first audio');
    s.cancel();
    const n = c.events.length;
    await sleep(300);
    expect(c.events.length).toBe(n);
    const ses = sim!.sessions[0]!;
    expect(ses.closedBy).toBe('client');
    expect(ses.framesDroppedAfterClose).toBeGreaterThan(0);
    expect(c.events.some((e) => e.type === 'done' || e.type === 'error')).toBe(false);
  });

  it('surfaces the idle timeout as a retryable error', async () => {
    const tts = await start({ idleTimeoutMs: 150 });
    const s = await tts.open({ format: 'ulaw_8000' });
    const c = collect(s);
    s.push('Hello. ');
    const ev = await within(c.finished, 5000, 'error');
    expect(ev.type).toBe('error');
    if (ev.type !== 'error') return;
    expect(ev.error).toBeInstanceOf(TtsError);
    expect(ev.error.code).toBe('input_timeout_exceeded');
    expect(ev.error.retryable).toBe(true);
    expect(sim!.sessions[0]!.closeCode).toBe(1008);
    expect(c.audioBytes).toBeGreaterThan(0);
  });

  it('a wrong key is an error that a retry will not fix', async () => {
    sim = await startElevenLabsStandIn({ apiKey: 'right' });
    const tts = new ElevenLabsTts({ apiKey: 'wrong', voiceId: 'v', baseUrl: sim.url });
    const s = await tts.open({ format: 'ulaw_8000' });
    const c = collect(s);
    const ev = await within(c.finished, 5000, 'error');
    expect(ev.type === 'error' && ev.error.code).toBe('invalid_api_key');
    expect(ev.type === 'error' && ev.error.retryable).toBe(false);
  });

  it('a server error mid-stream and a dropped socket are retryable errors', async () => {
    for (const kind of ['error', 'drop'] as const) {
      const tts = await start({ faults: [{ kind, afterFrames: 2 }] });
      const s = await tts.open({ format: 'ulaw_8000' });
      const c = collect(s);
      s.push(REPLY);
      s.end();
      const ev = await within(c.finished, 5000, 'error');
      expect(ev.type).toBe('error');
      expect(ev.type === 'error' && ev.error.retryable).toBe(true);
      await sim!.close();
      sim = undefined;
    }
  });

  it('an aborted open rejects and leaves no socket', async () => {
    const tts = await start();
    const ac = new AbortController();
    ac.abort();
    await expect(tts.open({ format: 'ulaw_8000' }, ac.signal)).rejects.toMatchObject({ code: 'aborted', retryable: false });
  });

  it('parses the server frames into a union and reports bad ones as values', () => {
    expect(parseElevenLabsMessage('{"isFinal":true}')).toEqual({ ok: true, msg: { type: 'audio', audioB64: null, isFinal: true, alignment: null } });
    expect(parseElevenLabsMessage('{"error":"input_timeout_exceeded","message":"idle","code":1008}')).toEqual({
      ok: true,
      msg: { type: 'error', code: 'input_timeout_exceeded', message: 'idle' },
    });
    expect(parseElevenLabsMessage('nope').ok).toBe(false);
    expect(parseElevenLabsMessage('{"audio":5}').ok).toBe(false);
  });
});

// ---------------------------------------------------------------------------
// OpenAI TTS

describe('OpenAiTts against its stand-in', () => {
  let sim: OpenAiTtsStandIn | undefined;
  afterEach(async () => {
    await sim?.close();
    sim = undefined;
  });
  const start = async (o: OpenAiTtsStandInOptions = {}) => {
    sim = await startOpenAiTtsStandIn({ apiKey: 'sk-test', firstAudioDelayMs: 20, frameGapMs: 2, ...o });
    return new OpenAiTts({ apiKey: 'sk-test', baseURL: sim.baseURL, model: 'gpt-4o-mini-tts', voice: 'marin' });
  };

  it('plays the first audio before end() and sends each chunk as a pcm request', async () => {
    const tts = await start();
    const s = await tts.open({ format: 'pcm_24000' });
    const c = collect(s);
    s.push('Thanks for calling. I can ');
    await within(c.firstAudio, 5000, 'first audio');
    s.push('check your eligibility, and it takes only a moment. What is your member ID?');
    s.end();
    const done = await within(c.finished, 5000, 'done');
    expect(done).toEqual({ type: 'done', usage: { characters: REPLY.length } });
    const reqs = sim!.requests;
    expect(reqs[0]!.body).toMatchObject({ model: 'gpt-4o-mini-tts', voice: 'marin', input: 'Thanks for calling. ', response_format: 'pcm' });
    expect(reqs.map((r) => r.body.input).join('')).toBe(REPLY);
    const expected = reqs.reduce((n, r) => n + Math.round(((r.body.input as string).length * 60 * 24000) / 1000) * 2, 0);
    expect(c.audioBytes).toBe(expected);
    for (const ev of c.events) if (ev.type === 'audio') expect(ev.audio.length % 2).toBe(0);
  });

  it('keeps audio in chunk order with two requests in flight', async () => {
    // The second request answers sooner than the first one finishes; order must still hold.
    const tts = await start({ frameGapMs: 10, frameMs: 20 });
    const s = await tts.open({ format: 'pcm_24000' });
    const c = collect(s);
    s.push('One two three four five six. Seven. ');
    s.end();
    await within(c.finished, 5000, 'done');
    const got = Buffer.concat(c.events.flatMap((e) => (e.type === 'audio' ? [e.audio] : [])));
    expect(sim!.requests.map((r) => r.body.input)).toEqual(['One two three four five six. ', 'Seven. ']);
    // The stand-in speaks request i with speechLike(seed i + 1): rebuild both and compare in order.
    const pcm = (chars: number, seed: number) => Buffer.from(speechLike(chars * 60, 24000, seed).buffer);
    expect(got.equals(Buffer.concat([pcm(29, 1), pcm(7, 2)]))).toBe(true);
  });

  it('cancel aborts the request and nothing arrives after it', async () => {
    const tts = await start({ frameGapMs: 20, frameMs: 40 });
    const s = await tts.open({ format: 'pcm_24000' });
    const c = collect(s);
    s.push(REPLY);
    await within(c.firstAudio, 5000, 'first audio');
    s.cancel();
    const n = c.events.length;
    await sleep(300);
    expect(c.events.length).toBe(n);
    expect(sim!.requests[0]!.aborted).toBe(true);
  });

  it('429 and a dropped body are retryable; a format it cannot give is refused at open', async () => {
    let tts = await start({ faults: [{ request: 0, status: 429 }] });
    let s = await tts.open({ format: 'pcm_24000' });
    let c = collect(s);
    s.push('Hello. ');
    s.end();
    let ev = await within(c.finished, 5000, 'error');
    expect(ev.type === 'error' && ev.error.retryable).toBe(true);
    expect(ev.type === 'error' && ev.error.code).toBe('rate_limit_exceeded');
    await sim!.close();

    tts = await start({ faults: [{ request: 0, dropAfterFrames: 1 }] });
    s = await tts.open({ format: 'pcm_24000' });
    c = collect(s);
    s.push(REPLY);
    s.end();
    ev = await within(c.finished, 5000, 'error');
    expect(ev.type === 'error' && ev.error.retryable).toBe(true);

    await expect(tts.open({ format: 'ulaw_8000' })).rejects.toMatchObject({ code: 'unsupported_format', retryable: false });
  });

  it('a wrong key is not retryable', async () => {
    sim = await startOpenAiTtsStandIn({ apiKey: 'right' });
    const tts = new OpenAiTts({ apiKey: 'wrong', baseURL: sim.baseURL });
    const s = await tts.open({ format: 'pcm_24000' });
    const c = collect(s);
    s.push('Hello. ');
    s.end();
    const ev = await within(c.finished, 5000, 'error');
    expect(ev.type === 'error' && ev.error.retryable).toBe(false);
  });
});
