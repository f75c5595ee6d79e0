/**
 * The recording file (src/recording/container.ts) through the directory
 * storage in a temp folder: round trips of every size class, range reads
 * against readAll, the WAV it serves, and every way a file can be damaged
 * (tampered, truncated, reordered, spliced, wrong or missing key), which must
 * come back as RecordingCorrupt, never as audio.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readWav } from '../src/dsp/wav.js';
import {
  CHUNK_OVERHEAD_BYTES,
  CHUNK_PLAIN_BYTES,
  HEADER_BYTES,
  createRecordingWriter,
  openRecording,
  recordingFileBytes,
  type RecordingReader,
} from '../src/recording/container.js';
import { createDirStorage } from '../src/recording/dir-storage.js';
import { RecordingCorrupt, RecordingNotFound, type ObjectUpload, type RecordingStorage } from '../src/recording/types.js';
import { keyId, keyring, type Keyring } from '../src/store/crypto.js';
import { prng as rng } from './helpers/prng.js';

const C = CHUNK_PLAIN_BYTES;
const SEALED = C + CHUNK_OVERHEAD_BYTES;
const WAV_HEADER = 58;

let dir = '';
let storage: RecordingStorage;
const keyA = randomBytes(32);
const keyB = randomBytes(32);
const ringA = keyring(keyA);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cb-recfile-'));
  storage = createDirStorage(dir);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});


/** Write `plain` as recording `name` under `ring`'s current key, in writes of uneven sizes. */
async function record(name: string, plain: Uint8Array, ring: Keyring = ringA, seed = 1): Promise<number> {
  const w = createRecordingWriter(await storage.create(name), ring.current!, { callSid: 'CAtest' });
  const next = rng(seed);
  let at = 0;
  while (at < plain.length) {
    const n = Math.min(plain.length - at, 1 + Math.floor(next() * 3000));
    await w.write(plain.subarray(at, at + n));
    at += n;
  }
  const { bytes } = await w.finish();
  return bytes;
}

const fileOf = (name: string): string => join(dir, ...name.split('/'));

async function corrupt(name: string): Promise<RecordingCorrupt> {
  const e = await openRecording(storage, name, ringA).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(RecordingCorrupt);
  return e as RecordingCorrupt;
}

describe('round trip', () => {
  const sizes: [string, number][] = [
    ['empty', 0],
    ['less than a chunk', 1234],
    ['exactly one chunk', C],
    ['many chunks and a tail', 5 * C + 777],
    ['an odd number of bytes', 2 * C + 1],
  ];
  for (const [label, size] of sizes) {
    it(`${label} (${size} bytes)`, async () => {
      const plain = randomBytes(size);
      const name = `rt/${size}.cbrec`;
      const bytes = await record(name, plain, ringA, size);
      expect(bytes).toBe(recordingFileBytes(size));
      expect((await readFile(fileOf(name))).length).toBe(bytes);
      const r = await openRecording(storage, name, ringA);
      expect(r.keyId).toBe(keyId(keyA));
      expect(r.audioBytes).toBe(size);
      expect(r.durationMs).toBe(Math.round(size / 16));
      expect(r.wavBytes).toBe(WAV_HEADER + size + (size & 1));
      const all = Buffer.from(await r.readAll());
      expect(all.length).toBe(r.wavBytes);
      expect(all.subarray(WAV_HEADER, WAV_HEADER + size).equals(plain)).toBe(true);
      if (size & 1) expect(all[all.length - 1]).toBe(0);
      const wav = readWav(all);
      expect(wav.ok).toBe(true);
      if (wav.ok) {
        expect(wav.fmt).toEqual({ tag: 7, channels: 2, rateHz: 8000, bits: 8 });
        expect(Buffer.from(wav.data).equals(plain)).toBe(true);
      }
      // The other fields readWav does not return.
      expect(all.readUInt32LE(4)).toBe(all.length - 8);
      expect(all.readUInt32LE(16)).toBe(18); // fmt size
      expect(all.readUInt32LE(28)).toBe(16000); // bytes a second
      expect(all.readUInt16LE(32)).toBe(2); // block align
      expect(all.toString('latin1', 38, 42)).toBe('fact');
      expect(all.readUInt32LE(46)).toBe(Math.floor(size / 2));
    });
  }

  it('range reads equal slices of readAll (chunk boundaries, inside the WAV header, clipped)', async () => {
    const plain = randomBytes(4 * C + 999);
    await record('ranges/r.cbrec', plain);
    const r = await openRecording(storage, 'ranges/r.cbrec', ringA);
    const all = Buffer.from(await r.readAll());
    const check = async (a: number, b: number): Promise<void> => {
      const got = Buffer.from(await r.read(a, b));
      expect(got.equals(all.subarray(Math.max(0, a), Math.max(0, Math.min(b, all.length)))), `[${a},${b})`).toBe(true);
    };
    const next = rng(99);
    for (let i = 0; i < 150; i++) {
      const a = Math.floor(next() * (all.length + 10));
      const b = a + Math.floor(next() * (next() < 0.5 ? 200 : 3 * C));
      await check(a, b);
    }
    for (let k = 1; k <= 4; k++) {
      const boundary = WAV_HEADER + k * C;
      await check(boundary - 1, boundary + 1);
      await check(boundary, boundary + C);
      await check(boundary - C, boundary);
    }
    await check(0, 10);
    await check(5, WAV_HEADER + 5);
    await check(57, 59);
    await check(all.length - 3, all.length + 100);
    await check(all.length, all.length + 5);
    await check(10, 10);
  });
});

describe('writing', () => {
  it('appends each chunk as soon as it fills, the header with the first', async () => {
    const appended: number[] = [];
    let completed = false;
    const upload: ObjectUpload = {
      append: async (b) => void appended.push(b.length),
      complete: async () => void (completed = true),
      abort: async () => undefined,
    };
    const w = createRecordingWriter(upload, ringA.current!, { callSid: 'CAw' });
    await w.write(new Uint8Array(C - 1));
    expect(appended).toEqual([]);
    await w.write(new Uint8Array(1));
    expect(appended).toEqual([HEADER_BYTES + SEALED]);
    await w.write(new Uint8Array(2 * C + 5));
    expect(appended).toEqual([HEADER_BYTES + SEALED, SEALED, SEALED]);
    expect(await w.finish()).toEqual({ bytes: HEADER_BYTES + 3 * SEALED + 5 + CHUNK_OVERHEAD_BYTES });
    expect(completed).toBe(true);
    await expect(w.write(new Uint8Array(1))).rejects.toThrow(/after the writer was finished/);
  });

  it('abort leaves nothing in the storage', async () => {
    const w = createRecordingWriter(await storage.create('aborted/a.cbrec'), ringA.current!, { callSid: 'CAa' });
    await w.write(randomBytes(3 * C));
    await w.abort();
    expect(await storage.size('aborted/a.cbrec')).toBeUndefined();
    const left = await readdir(dir, { recursive: true });
    expect(left.filter((f) => f.startsWith('aborted') && f !== 'aborted')).toEqual([]);
  });

  it('a failed append breaks the writer: later calls reject with that failure', async () => {
    const upload: ObjectUpload = {
      append: async () => {
        throw new Error('disk full (ENOSPC)');
      },
      complete: async () => undefined,
      abort: async () => undefined,
    };
    const w = createRecordingWriter(upload, ringA.current!, { callSid: 'CAf' });
    await expect(w.write(new Uint8Array(C))).rejects.toThrow(/ENOSPC/);
    await expect(w.write(new Uint8Array(1))).rejects.toThrow(/ENOSPC/);
    await expect(w.finish()).rejects.toThrow(/ENOSPC/);
  });

  it('two files of the same audio differ (fresh file id and nonces), and the header holds no CallSid', async () => {
    const plain = randomBytes(1000);
    await record('same/1.cbrec', plain);
    await record('same/2.cbrec', plain);
    const a = await readFile(fileOf('same/1.cbrec'));
    const b = await readFile(fileOf('same/2.cbrec'));
    expect(a.subarray(0, 24)).toEqual(b.subarray(0, 24)); // magic, version, format, chunk size, key id
    expect(a.subarray(24, HEADER_BYTES).equals(b.subarray(24, HEADER_BYTES))).toBe(false);
    expect(a.includes(Buffer.from('CAtest'))).toBe(false);
    expect(a.includes(plain.subarray(0, 16))).toBe(false);
  });
});

describe('damage is RecordingCorrupt, never audio', () => {
  const plain = randomBytes(3 * C + 500);
  let original: Buffer;
  beforeAll(async () => {
    await record('dmg/orig.cbrec', plain);
    original = await readFile(fileOf('dmg/orig.cbrec'));
  });
  const variant = async (name: string, bytes: Uint8Array): Promise<string> => {
    await writeFile(fileOf(`dmg/${name}.cbrec`), bytes);
    return `dmg/${name}.cbrec`;
  };
  const flip = (at: number): Buffer => {
    const b = Buffer.from(original);
    b[at]! ^= 0x01;
    return b;
  };

  it('a flipped ciphertext byte in a middle chunk: opens, but reading that chunk rejects; other chunks still read', async () => {
    const name = await variant('ct', flip(HEADER_BYTES + SEALED + 12 + 100));
    const r = await openRecording(storage, name, ringA);
    await expect(r.read(WAV_HEADER + C + 50, WAV_HEADER + C + 60)).rejects.toThrow(RecordingCorrupt);
    await expect(r.read(WAV_HEADER + C - 10, WAV_HEADER + C + 10)).rejects.toThrow(/does not authenticate at chunk 1/);
    await expect(r.readAll()).rejects.toThrow(RecordingCorrupt);
    expect(Buffer.from(await r.read(WAV_HEADER, WAV_HEADER + C)).equals(plain.subarray(0, C))).toBe(true);
  });

  it('a flipped tag byte', async () => {
    const name = await variant('tag', flip(HEADER_BYTES + SEALED - 1));
    const r = await openRecording(storage, name, ringA);
    await expect(r.read(WAV_HEADER, WAV_HEADER + 1)).rejects.toThrow(/does not authenticate at chunk 0/);
  });

  it('a flipped nonce byte', async () => {
    const name = await variant('nonce', flip(HEADER_BYTES + 2 * SEALED + 3));
    const r = await openRecording(storage, name, ringA);
    await expect(r.read(WAV_HEADER + 2 * C, WAV_HEADER + 2 * C + 1)).rejects.toThrow(RecordingCorrupt);
  });

  it('a tampered last chunk fails at open', async () => {
    const e = await corrupt(await variant('last', flip(original.length - 20)));
    expect(e.message).toMatch(/truncated or altered/);
  });

  it('a flipped byte in the header: file id, chunk size, format, version, magic', async () => {
    expect((await corrupt(await variant('fileid', flip(30)))).message).toMatch(/truncated or altered/);
    expect((await corrupt(await variant('chunksize', flip(14)))).message).toMatch(/truncated or altered|truncated|damaged/);
    expect((await corrupt(await variant('format', flip(11)))).message).toMatch(/audio format/);
    expect((await corrupt(await variant('version', flip(9)))).message).toMatch(/format version 0, which this callbridge does not know/);
    expect((await corrupt(await variant('magic', flip(0)))).message).toMatch(/not a callbridge recording file/);
    const otherKid = Buffer.from(original);
    otherKid.write(keyId(keyA) === 'ab12cd34' ? 'ab12cd35' : 'ab12cd34', 16, 'latin1');
    expect((await corrupt(await variant('kid', otherKid))).message).toMatch(/sealed with key ab12cd3[45], which is neither RECORDING_KEY nor a RECORDING_KEY_OLD/);
    const junkKid = Buffer.from(original);
    junkKid.write('zz\n\0zzzz', 16, 'latin1');
    expect((await corrupt(await variant('kid-junk', junkKid))).message).toMatch(/sealed with key \(damaged\), which is neither/);
  });

  it('a file that is not a recording at all', async () => {
    expect((await corrupt(await variant('wav', Buffer.from('RIFF....WAVEfmt ')))).message).toMatch(/not a callbridge recording file/);
    expect((await corrupt(await variant('empty', new Uint8Array(0)))).message).toMatch(/not a callbridge recording file/);
    expect((await corrupt(await variant('shorthead', original.subarray(0, 20)))).message).toMatch(/truncated: its header is cut short/);
  });

  it('truncated at a chunk boundary (the final chunk dropped) fails at open', async () => {
    const e = await corrupt(await variant('cut-boundary', original.subarray(0, HEADER_BYTES + 3 * SEALED)));
    expect(e.message).toMatch(/truncated: it ends at a chunk boundary without its final chunk/);
    const e2 = await corrupt(await variant('cut-boundary2', original.subarray(0, HEADER_BYTES + SEALED)));
    expect(e2.message).toMatch(/truncated/);
  });

  it('truncated mid-chunk fails at open', async () => {
    expect((await corrupt(await variant('cut-mid', original.subarray(0, HEADER_BYTES + SEALED + 5000)))).message).toMatch(/truncated or altered/);
    expect((await corrupt(await variant('cut-tiny', original.subarray(0, HEADER_BYTES + SEALED + 10)))).message).toMatch(/truncated: its last chunk is cut short/);
    expect((await corrupt(await variant('cut-last', original.subarray(0, original.length - 1)))).message).toMatch(/truncated or altered/);
    // Cut in place, as a crash would leave it.
    await variant('cut-inplace', original);
    await truncate(fileOf('dmg/cut-inplace.cbrec'), original.length - 100);
    await corrupt('dmg/cut-inplace.cbrec');
  });

  it('two full chunks swapped: reading them rejects', async () => {
    const b = Buffer.from(original);
    original.copy(b, HEADER_BYTES, HEADER_BYTES + SEALED, HEADER_BYTES + 2 * SEALED);
    original.copy(b, HEADER_BYTES + SEALED, HEADER_BYTES, HEADER_BYTES + SEALED);
    const r = await openRecording(storage, await variant('swap', b), ringA);
    await expect(r.read(WAV_HEADER, WAV_HEADER + 10)).rejects.toThrow(/chunks reordered/);
    await expect(r.read(WAV_HEADER + C, WAV_HEADER + C + 10)).rejects.toThrow(RecordingCorrupt);
    expect(Buffer.from(await r.read(WAV_HEADER + 2 * C, WAV_HEADER + 3 * C)).equals(plain.subarray(2 * C, 3 * C))).toBe(true);
  });

  it('a chunk spliced from another file under the same key rejects', async () => {
    await record('dmg/other.cbrec', randomBytes(3 * C + 500));
    const other = await readFile(fileOf('dmg/other.cbrec'));
    const b = Buffer.from(original);
    other.copy(b, HEADER_BYTES + SEALED, HEADER_BYTES + SEALED, HEADER_BYTES + 2 * SEALED); // same place, other file
    const r = await openRecording(storage, await variant('splice', b), ringA);
    await expect(r.read(WAV_HEADER + C, WAV_HEADER + C + 1)).rejects.toThrow(RecordingCorrupt);
    // The other file's final chunk in place of ours.
    const c = Buffer.concat([original.subarray(0, HEADER_BYTES + 3 * SEALED), other.subarray(HEADER_BYTES + 3 * SEALED)]);
    await corrupt(await variant('splice-last', c));
    // Our final chunk moved to an earlier place (dropping chunks between): it is not chunk 1.
    const d = Buffer.concat([original.subarray(0, HEADER_BYTES + SEALED), original.subarray(HEADER_BYTES + 3 * SEALED)]);
    await corrupt(await variant('drop-middle', d));
  });
});

describe('keys', () => {
  let reader: RecordingReader | undefined;
  it('a file sealed under key A opens with RECORDING_KEY B and RECORDING_KEY_OLD A', async () => {
    const plain = randomBytes(C + 10);
    await record('keys/a.cbrec', plain, keyring(keyA));
    reader = await openRecording(storage, 'keys/a.cbrec', keyring(keyB, [keyA]));
    expect(reader.keyId).toBe(keyId(keyA));
    expect(Buffer.from(await reader.readAll()).subarray(WAV_HEADER).equals(plain)).toBe(true);
  });

  it('a wrong key says which key sealed it', async () => {
    const e = await openRecording(storage, 'keys/a.cbrec', keyring(keyB)).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(RecordingCorrupt);
    expect((e as Error).message).toBe(
      `recording keys/a.cbrec is sealed with key ${keyId(keyA)}, which is neither RECORDING_KEY nor a RECORDING_KEY_OLD: set the key it was written with (as RECORDING_KEY_OLD after a rotation)`,
    );
  });

  it('no key says to set RECORDING_KEY', async () => {
    await expect(openRecording(storage, 'keys/a.cbrec', keyring(undefined))).rejects.toThrow(/encrypted: set RECORDING_KEY to read it/);
  });

  it('a missing object is RecordingNotFound', async () => {
    await expect(openRecording(storage, 'keys/none.cbrec', ringA)).rejects.toBeInstanceOf(RecordingNotFound);
  });

  it('a key whose id collides but is not the key fails as altered, not as audio', async () => {
    // A ring entry claiming A's id with another key (as a 32-bit id collision would).
    const fake: Keyring = { current: { kid: keyId(keyA), key: keyB }, keys: [{ kid: keyId(keyA), key: keyB }] };
    await expect(openRecording(storage, 'keys/a.cbrec', fake)).rejects.toThrow(/does not authenticate/);
  });
});

it('decrypts a 10-minute recording (prints the time; no limit asserted)', async () => {
  const plain = randomBytes(10 * 60 * 16000);
  const t0 = performance.now();
  await record('perf/ten.cbrec', plain, ringA, 5);
  const t1 = performance.now();
  const r = await openRecording(storage, 'perf/ten.cbrec', ringA);
  const all = await r.readAll();
  const t2 = performance.now();
  expect(Buffer.from(all.subarray(WAV_HEADER)).equals(plain)).toBe(true);
  console.log(`recording file: sealed ${(plain.length / 1e6).toFixed(1)} MB in ${(t1 - t0).toFixed(0)} ms, opened and read in ${(t2 - t1).toFixed(0)} ms`);
});
