/**
 * Recordings end to end (issue 17): a call through the real relay (both edges,
 * both audio modes) with RECORDING=on leaves a sealed file in RECORDING_DIR;
 * `callbridge calls audio` turns it into a stereo WAV whose caller channel is
 * what the simulated caller sent and whose other channel is what it heard —
 * each found by cross-correlation at the same offset within one frame —
 * including a barge-in: nothing the caller did not hear after the clear is in
 * the file. GET /calls/:sid/recording serves the same bytes, ranges too; a
 * tampered file is refused by both, never played half-right.
 */
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { main } from '../src/cli/main.js';
import { availableEdges, type EdgeKind } from '../src/server/app.js';
import { placeCall, type CallResult } from '../src/sim/caller.js';
import { ulawDecode } from '../src/sim/audio.js';
import type { Scenario } from '../src/sim/scenarios.js';
import { memoryIO } from './helpers/cli-io.js';
import { useCallbridge } from './helpers/e2e.js';
import { until } from './helpers/until.js';

const AUTH = 'e2e-twilio-auth-token';
const PUBLIC = 'https://recording.e2e.invalid';
const KEY = '5a'.repeat(32);
const ADMIN = 'recording-admin-token-0123456789';
const callbridge = useCallbridge('recording');

const SCENARIO: Scenario = {
  greeting: 'Hello.',
  turns: [
    { callerTranscript: 'tell me everything', reply: 'This is a long answer that goes on and on for several seconds so that the caller has time to interrupt it in the middle.' },
    { callerTranscript: 'stop', reply: 'Okay.' },
  ],
};

let edge: EdgeKind = 'node';

/** Every file under `dir` (recursive), relative names. */
function filesUnder(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(dir, prefix))) {
    const rel = prefix ? `${prefix}/${name}` : name;
    if (statSync(join(dir, rel)).isDirectory()) out.push(...filesUnder(dir, rel));
    else out.push(rel);
  }
  return out;
}

/** The data of a WAV as its two channels (µ-law bytes), after checking the header says stereo µ-law 8 kHz. */
function stereoUlaw(wav: Uint8Array): { left: Uint8Array; right: Uint8Array } {
  const b = Buffer.from(wav);
  expect(b.toString('ascii', 0, 4)).toBe('RIFF');
  expect(b.toString('ascii', 8, 12)).toBe('WAVE');
  let at = 12;
  let fmt: { tag: number; channels: number; rate: number; bits: number } | undefined;
  while (at + 8 <= b.length) {
    const id = b.toString('ascii', at, at + 4);
    const size = b.readUInt32LE(at + 4);
    if (id === 'fmt ') fmt = { tag: b.readUInt16LE(at + 8), channels: b.readUInt16LE(at + 10), rate: b.readUInt32LE(at + 12), bits: b.readUInt16LE(at + 22) };
    if (id === 'data') {
      expect(fmt).toEqual({ tag: 7, channels: 2, rate: 8000, bits: 8 });
      const data = b.subarray(at + 8, at + 8 + size);
      const n = data.length >> 1;
      const left = new Uint8Array(n);
      const right = new Uint8Array(n);
      for (let i = 0; i < n; i++) {
        left[i] = data[2 * i]!;
        right[i] = data[2 * i + 1]!;
      }
      return { left, right };
    }
    at += 8 + size + (size & 1);
  }
  throw new Error('no data chunk');
}

/**
 * What the simulated caller sent or heard, as one µ-law track on the stream's
 * clock (8 samples a ms), silence elsewhere. Frames in a run (each within
 * `runGapMs` of the one before) follow one another sample for sample from the
 * run's first frame: the simulated phone plays on a 20 ms timer whose
 * firings jitter by a few ms, while a real phone plays its buffer
 * continuously (as the recording's heard channel does).
 */
function track(frames: { atMs: number; bytes: Uint8Array }[], samples: number, runGapMs = 0): Uint8Array {
  const out = new Uint8Array(samples).fill(0xff);
  let runAt = -1;
  let lastMs = -Infinity;
  for (const f of frames) {
    if (runGapMs > 0 && runAt >= 0 && f.atMs - lastMs <= runGapMs) {
      // continues the run: right after the frame before
    } else runAt = Math.round(f.atMs * 8);
    lastMs = f.atMs;
    const at = runAt;
    runAt += f.bytes.length;
    if (at >= samples) continue;
    out.set(f.bytes.subarray(0, Math.min(f.bytes.length, samples - at)), at);
  }
  return out;
}

/** The heard frames as runs of playback (each frame within `gapMs` of the one before): where each began (ms) and its audio. */
function runs(frames: { atMs: number; bytes: Uint8Array }[], gapMs: number): { atMs: number; audio: Uint8Array }[] {
  const out: { atMs: number; parts: Uint8Array[]; lastMs: number }[] = [];
  for (const f of frames) {
    const run = out[out.length - 1];
    if (run && f.atMs - run.lastMs <= gapMs) run.parts.push(f.bytes);
    else out.push({ atMs: f.atMs, parts: [f.bytes], lastMs: f.atMs });
    out[out.length - 1]!.lastMs = f.atMs;
  }
  return out.map((r) => ({ atMs: r.atMs, audio: Buffer.concat(r.parts) }));
}

/** Where `segment` best matches `recorded` around sample `at` (±maxLag): the lag and the normalised correlation there. */
function segmentLag(segment: Uint8Array, recorded: Uint8Array, at: number, maxLag: number): { lag: number; corr: number } {
  const a = ulawDecode(segment);
  const b = ulawDecode(recorded);
  let best = { lag: 0, corr: -Infinity };
  for (let lag = -maxLag; lag <= maxLag; lag++) {
    let dot = 0;
    let ea = 0;
    let eb = 0;
    for (let i = 0; i < a.length; i++) {
      const j = at + lag + i;
      const y = j >= 0 && j < b.length ? b[j]! : 0;
      const x = a[i]!;
      dot += x * y;
      ea += x * x;
      eb += y * y;
    }
    const corr = ea > 0 && eb > 0 ? dot / Math.sqrt(ea * eb) : 0;
    if (corr > best.corr) best = { lag, corr };
  }
  return best;
}

/** RMS of decoded µ-law samples [from, to). */
function rms(ulaw: Uint8Array, from: number, to: number): number {
  const pcm = ulawDecode(ulaw.subarray(Math.max(0, from), Math.min(ulaw.length, to)));
  let e = 0;
  for (const x of pcm) e += x * x;
  return pcm.length ? Math.sqrt(e / pcm.length) : 0;
}

describe.each(availableEdges())('a recorded call (%s edge)', (e) => {
  beforeAll(() => void (edge = e));

  it.each(['passthrough', 'transcode'] as const)('in %s mode: the WAV holds what the caller said and heard, aligned, cut at the barge-in; HTTP serves it with ranges; tampering is refused', async (mode) => {
    const dir = mkdtempSync(join(tmpdir(), 'callbridge-recordings-'));
    const env = { PUBLIC_URL: PUBLIC, TWILIO_AUTH_TOKEN: AUTH, AUDIO_MODE: mode, RECORDING: 'on', RECORDING_KEY: KEY, RECORDING_DIR: dir, ADMIN_TOKEN: ADMIN, PLAYOUT_LEAD_MS: '200' };
    const { app, config, baseUrl } = await callbridge({ edge, model: { scenario: SCENARIO }, env });
    const result: CallResult = await placeCall({
      baseUrl,
      publicUrl: PUBLIC,
      authToken: AUTH,
      utterances: [{ durationMs: 900 }, { durationMs: 900, bargeInAfterMs: 1200 }],
      hangupAfterMs: 800,
      recordSent: true,
      recordHeard: true,
    });
    expect(result.clears.length).toBeGreaterThanOrEqual(1);
    await until(async () => (await app.store.get(result.callSid))?.recording != null, { what: 'the recording outcome in the record' });
    const record = (await app.store.get(result.callSid))!;
    expect(record.recording).toMatchObject({ status: 'complete', storage: 'dir' });
    expect(filesUnder(dir)).toEqual([record.recording!.object]);
    expect(record.recording!.object).toMatch(new RegExp(`^\\d{4}/\\d{2}/\\d{2}/${result.callSid}\\.cbrec$`));
    // Sealed at rest: none of the audio the caller sent is in the file as it is.
    const stored = readFileSync(join(dir, record.recording!.object!));
    expect(stored.includes(Buffer.from(result.sent![60]!.bytes))).toBe(false);

    const cliEnv = { CALLBRIDGE_DB: config.dbPath, RECORDING_DIR: dir, RECORDING_KEY: KEY };
    const wavPath = join(dir, 'call.wav');
    const cli = memoryIO(cliEnv);
    expect(await main(['calls', 'audio', result.callSid, '-o', wavPath], cli.io)).toBe(0);
    expect(cli.err()).toContain('stereo µ-law 8 kHz');
    const wav = readFileSync(wavPath);
    const { left, right } = stereoUlaw(wav);
    expect(Math.abs(left.length / 8 - record.recording!.durationMs)).toBeLessThanOrEqual(1);

    // The caller channel against what the simulated caller sent (its frames carry their media timestamps): one offset, within a frame.
    const sent = track(result.sent!, left.length);
    const c = segmentLag(sent, left, 0, 800);
    expect(c.corr).toBeGreaterThan(0.95);
    expect(Math.abs(c.lag)).toBeLessThanOrEqual(160);
    // The heard channel, run of playback by run (greeting, the reply cut by the barge-in, the last answer): each is
    // in the file where the caller heard it, within one frame, and sample for sample what it heard.
    // Heard frames on the stream's clock as a phone plays them (continuously from arrival), not on the simulator's 20 ms tick.
    const played = runs(result.heard!.map((f) => ({ atMs: f.continuousAtMs, bytes: f.bytes })), 30).filter((r) => r.audio.length >= 800);
    expect(played.length).toBeGreaterThanOrEqual(3);
    const lags = played.map((r) => segmentLag(r.audio, right, Math.round(r.atMs * 8), 800));
    for (const l of lags) {
      expect(l.corr).toBeGreaterThan(0.95);
      // One frame (160 samples), plus one sample: both lags are read at positions rounded to the sample grid (Math.round(atMs × 8)).
      expect(Math.abs(l.lag - c.lag)).toBeLessThanOrEqual(160 + 1);
    }

    // The barge-in: right after the clear the caller heard nothing, and neither does the file (what was sent ahead is cut).
    const clearMs = result.clears[0]!.atMs;
    const cutRun = played.findLastIndex((r) => r.atMs < clearMs);
    const clearAt = Math.round(clearMs * 8) + lags[cutRun]!.lag;
    expect(rms(right, clearAt - 1600, clearAt - 160)).toBeGreaterThan(500); // the reply was playing
    expect(rms(right, clearAt + 160, clearAt + 1600)).toBeLessThan(50);

    // The same file over HTTP: whole, and a range across the header into the audio.
    const url = `${baseUrl}/calls/${result.callSid}/recording`;
    const auth = { authorization: `Bearer ${ADMIN}` };
    expect((await fetch(url)).status).toBe(401);
    const whole = await fetch(url, { headers: auth });
    expect(whole.status).toBe(200);
    expect(whole.headers.get('content-type')).toBe('audio/wav');
    expect(whole.headers.get('cache-control')).toBe('no-store');
    expect(Buffer.from(await whole.arrayBuffer()).equals(wav)).toBe(true);
    const part = await fetch(url, { headers: { ...auth, range: 'bytes=40-70039' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 40-70039/${wav.length}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(wav.subarray(40, 70040))).toBe(true);
    expect((await fetch(url, { headers: { ...auth, range: `bytes=${wav.length}-` } })).status).toBe(416);

    // One byte changed in the middle of the sealed file: refused whole, never played half-right.
    const mid = Math.floor(stored.length / 2);
    stored[mid] = stored[mid]! ^ 0x01;
    writeFileSync(join(dir, record.recording!.object!), stored);
    const bad = await fetch(url, { headers: auth });
    expect(bad.status).toBe(500);
    expect(((await bad.json()) as { error: string }).error).toMatch(/tamper|authentic|corrupt|does not open/i);
    const again = memoryIO(cliEnv);
    expect(await main(['calls', 'audio', result.callSid, '-o', join(dir, 'bad.wav')], again.io)).toBe(1);
    expect(again.err()).toMatch(/tamper|authentic|corrupt|does not open/i);
  });
});

describe('a recording that cannot be written', () => {
  it('the call goes on to its end; the record says incomplete with the reason, /metrics counts it, nothing is left behind', async () => {
    // A file where the recordings directory should be: every write fails (ENOTDIR), as on a full or broken disk.
    const parent = mkdtempSync(join(tmpdir(), 'callbridge-recordings-'));
    writeFileSync(join(parent, 'not-a-dir'), 'x');
    const env = { PUBLIC_URL: PUBLIC, TWILIO_AUTH_TOKEN: AUTH, RECORDING: 'on', RECORDING_KEY: KEY, RECORDING_DIR: join(parent, 'not-a-dir'), ADMIN_TOKEN: ADMIN };
    const { app, baseUrl } = await callbridge({ model: { scenario: SCENARIO }, env });
    const result = await placeCall({ baseUrl, publicUrl: PUBLIC, authToken: AUTH, utterances: [{ durationMs: 900 }], hangupAfterMs: 500 });
    expect(result.endedBy).toBe('caller');
    expect(result.heardMs).toBeGreaterThan(300);
    await until(async () => (await app.store.get(result.callSid))?.recording != null, { what: 'the recording outcome in the record' });
    const record = (await app.store.get(result.callSid))!;
    expect(record.endReason).toBe('caller_hangup');
    expect(record.recording).toMatchObject({ status: 'incomplete', object: null });
    expect(record.recording!.reason).toMatch(/^write failed: .*ENOTDIR/);
    const metrics = await (await fetch(`${baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/^callbridge_recordings_total\{status="incomplete"\} 1$/m);
    const r = await fetch(`${baseUrl}/calls/${result.callSid}/recording`, { headers: { authorization: `Bearer ${ADMIN}` } });
    expect(r.status).toBe(404);
    expect(((await r.json()) as { error: string }).error).toMatch(/not stored \(write failed/);
    expect(readdirSync(parent)).toEqual(['not-a-dir']);
  });
});
