/**
 * Where recording files are kept: one behaviour suite run against the
 * directory storage and against the S3 storage talking to a real S3 server
 * (s3rver, started here in a child process on a random port over a temp
 * directory). s3rver pages ListObjectsV2 with a DES continuation token,
 * which OpenSSL 3 only offers from its legacy provider, so the child runs
 * with --openssl-legacy-provider; where that cannot run, the S3 half skips
 * and says why in its name.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRecordingWriter, openRecording } from '../src/recording/container.js';
import { createDirStorage } from '../src/recording/dir-storage.js';
import { openRecordingStorage } from '../src/recording/open-storage.js';
import { createS3Storage, parseS3Url } from '../src/recording/s3-storage.js';
import { RecordingNotFound, type RecordingStorage } from '../src/recording/types.js';
import { keyring } from '../src/store/crypto.js';
import { prng as rng } from './helpers/prng.js';

const MiB = 1024 * 1024;
const s3rverPath = createRequire(import.meta.url).resolve('s3rver');
const LAUNCH = `
const S3rver = require(process.env.S3RVER_PATH);
new S3rver({ port: 0, address: '127.0.0.1', directory: process.env.S3RVER_DIR, silent: true })
  .run()
  .then((a) => process.stdout.write(JSON.stringify({ port: a.port }) + '\\n'), (e) => { console.error(e); process.exit(1); });
`;

/** Whether s3rver can run here as the test runs it: its module loads and DES (its list tokens) works under the legacy provider. */
function probeS3rver(): { ok: true } | { ok: false; reason: string } {
  const r = spawnSync(
    process.execPath,
    ['--openssl-legacy-provider', '-e', `require(process.env.S3RVER_PATH); require('node:crypto').createCipheriv('des', Buffer.alloc(8), Buffer.alloc(8));`],
    { env: { ...process.env, S3RVER_PATH: s3rverPath }, encoding: 'utf8', timeout: 20_000 },
  );
  if (r.status === 0) return { ok: true };
  const why = (r.stderr || r.error?.message || `exit ${r.status}`).split('\n').find((l) => /error/i.test(l)) ?? `exit ${r.status}`;
  return { ok: false, reason: `s3rver does not run on Node ${process.versions.node}: ${why.trim().slice(0, 160)}` };
}

async function collect(it: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const n of it) out.push(n);
  return out.sort();
}

async function put(storage: RecordingStorage, name: string, bytes: Uint8Array): Promise<void> {
  const up = await storage.create(name);
  await up.append(bytes);
  await up.complete();
}


/** The behaviour every RecordingStorage has. `leftovers` lists what the backend holds besides finished objects (part files, pending uploads). */
function behaves(
  label: string,
  setup: {
    storage: () => RecordingStorage;
    leftovers: () => Promise<string[]>;
    multipartSeen?: () => Promise<boolean>;
    /** Set when the server does not implement AbortMultipartUpload: what it answers instead. */
    noMultipartAbort?: { answer: RegExp; why: string };
  },
): void {
  describe(label, () => {
    it('an object is invisible until complete, then whole', async () => {
      const s = setup.storage();
      const bytes = randomBytes(100_000);
      const up = await s.create('2026/09/14/CAinvisible.cbrec');
      await up.append(bytes.subarray(0, 40_000));
      await up.append(bytes.subarray(40_000));
      expect(await s.size('2026/09/14/CAinvisible.cbrec')).toBeUndefined();
      await expect(s.read('2026/09/14/CAinvisible.cbrec', 0, 10)).rejects.toBeInstanceOf(RecordingNotFound);
      expect(await collect(s.list('2026/09/14/'))).not.toContain('2026/09/14/CAinvisible.cbrec');
      await up.complete();
      expect(await s.size('2026/09/14/CAinvisible.cbrec')).toBe(bytes.length);
      expect(Buffer.from(await s.read('2026/09/14/CAinvisible.cbrec', 0, bytes.length))).toEqual(bytes);
      await expect(up.append(new Uint8Array(1))).rejects.toThrow(/after it was completed/);
      await s.delete('2026/09/14/CAinvisible.cbrec');
    });

    it('abort leaves nothing behind', async () => {
      const s = setup.storage();
      const up = await s.create('2026/09/15/CAaborted.cbrec');
      await up.append(randomBytes(70_000));
      await up.abort();
      await up.abort(); // twice is fine
      expect(await s.size('2026/09/15/CAaborted.cbrec')).toBeUndefined();
      expect(await collect(s.list(''))).not.toContain('2026/09/15/CAaborted.cbrec');
      expect(await setup.leftovers()).toEqual([]);
    });

    it('reads ranges, clips the end, and knows what is missing', async () => {
      const s = setup.storage();
      const bytes = randomBytes(50_001);
      await put(s, 'ranges/CAr.cbrec', bytes);
      const next = rng(7);
      for (let i = 0; i < 40; i++) {
        const a = Math.floor(next() * bytes.length);
        const b = a + Math.floor(next() * (bytes.length - a + 1));
        expect(Buffer.from(await s.read('ranges/CAr.cbrec', a, b)), `[${a},${b})`).toEqual(bytes.subarray(a, b));
      }
      expect(Buffer.from(await s.read('ranges/CAr.cbrec', 50_000, 60_000))).toEqual(bytes.subarray(50_000));
      expect((await s.read('ranges/CAr.cbrec', 60_000, 70_000)).length).toBe(0);
      expect((await s.read('ranges/CAr.cbrec', 10, 10)).length).toBe(0);
      expect(await s.size('ranges/CAr.cbrec')).toBe(50_001);
      expect(await s.size('ranges/none.cbrec')).toBeUndefined();
      await expect(s.read('ranges/none.cbrec', 0, 10)).rejects.toBeInstanceOf(RecordingNotFound);
      await expect(s.read('ranges/none.cbrec', 5, 5)).rejects.toBeInstanceOf(RecordingNotFound);
      await s.delete('ranges/CAr.cbrec');
      await s.delete('ranges/CAr.cbrec'); // missing: fine
      expect(await s.size('ranges/CAr.cbrec')).toBeUndefined();
    });

    it('lists by prefix, over many pages', async () => {
      const s = setup.storage();
      const names: string[] = [];
      for (let day = 1; day <= 3; day++) for (let i = 0; i < 9; i++) names.push(`2025/0${day === 3 ? 8 : 7}/0${day}/CA${day}x${i}.cbrec`);
      names.push('2025/07/10/CAlater.cbrec');
      await Promise.all(names.map((n) => put(s, n, Buffer.from(n))));
      const pending = await s.create('2025/07/01/CAunfinished.cbrec');
      await pending.append(Buffer.from('not yet'));
      expect(await collect(s.list('2025/07/'))).toEqual(names.filter((n) => n.startsWith('2025/07/')).sort());
      expect(await collect(s.list('2025/07/0'))).toEqual(names.filter((n) => n.startsWith('2025/07/0')).sort());
      expect(await collect(s.list('2025/08/03/CA3x1'))).toEqual(['2025/08/03/CA3x1.cbrec']);
      expect(await collect(s.list('2025/'))).toEqual([...names].sort());
      expect(await collect(s.list('2024/'))).toEqual([]);
      await pending.abort();
      await Promise.all(names.map((n) => s.delete(n)));
      expect(await collect(s.list('2025/'))).toEqual([]);
    });

    it('refuses names that could leave the storage', async () => {
      const s = setup.storage();
      for (const bad of ['../x.cbrec', '/abs.cbrec', 'a\\b.cbrec', 'a//b.cbrec', '', 'a/./b', 'a/../../b']) {
        await expect(s.create(bad), JSON.stringify(bad)).rejects.toThrow(/object name/);
        await expect(s.read(bad, 0, 1), JSON.stringify(bad)).rejects.toThrow(/object name/);
      }
      await expect(collect(s.list('../'))).rejects.toThrow(/object prefix/);
    });

    it('takes a 6 MiB object in 64 KiB appends (the multipart path in S3)', async () => {
      const s = setup.storage();
      const bytes = randomBytes(6 * MiB);
      const up = await s.create('big/CAbig.cbrec');
      for (let at = 0; at < bytes.length; at += 64 * 1024) await up.append(bytes.subarray(at, at + 64 * 1024));
      if (setup.multipartSeen) expect(await setup.multipartSeen()).toBe(true);
      expect(await s.size('big/CAbig.cbrec')).toBeUndefined();
      await up.complete();
      expect(await s.size('big/CAbig.cbrec')).toBe(bytes.length);
      for (const [a, b] of [[0, 100], [5 * MiB - 10, 5 * MiB + 10], [6 * MiB - 5, 6 * MiB + 5]] as const) {
        expect(Buffer.from(await s.read('big/CAbig.cbrec', a, b))).toEqual(bytes.subarray(a, b));
      }
      expect(Buffer.from(await s.read('big/CAbig.cbrec', 0, bytes.length)).equals(bytes)).toBe(true);
      await s.delete('big/CAbig.cbrec');
      expect(await setup.leftovers()).toEqual([]);
    });

    const noAbort = setup.noMultipartAbort;
    it(`a 6 MiB upload aborted part-way leaves nothing${noAbort ? ` (here: abort says what the server answered, as ${noAbort.why})` : ''}`, async () => {
      const s = setup.storage();
      const up = await s.create('big/CAbigabort.cbrec');
      for (let i = 0; i < 96; i++) await up.append(randomBytes(64 * 1024));
      if (noAbort) await expect(up.abort()).rejects.toThrow(noAbort.answer);
      else await up.abort();
      expect(await s.size('big/CAbigabort.cbrec')).toBeUndefined();
      expect(await collect(s.list('big/'))).toEqual([]);
      if (!noAbort) expect(await setup.leftovers()).toEqual([]);
    });

    it('holds a sealed recording that opens again', async () => {
      const s = setup.storage();
      const key = randomBytes(32);
      const ring = keyring(key);
      const plain = randomBytes(200_000);
      const w = createRecordingWriter(await s.create('rt/CArt.cbrec'), ring.current!, { callSid: 'CArt' });
      await w.write(plain);
      const { bytes } = await w.finish();
      expect(await s.size('rt/CArt.cbrec')).toBe(bytes);
      const r = await openRecording(s, 'rt/CArt.cbrec', ring);
      expect(r.audioBytes).toBe(plain.length);
      expect(Buffer.from(await r.read(58, 58 + plain.length)).equals(plain)).toBe(true);
      await s.delete('rt/CArt.cbrec');
    });
  });
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) out.push(join(e.parentPath, e.name));
  return out;
}

describe('directory storage', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cb-rec-dir-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  behaves('behaviour', {
    storage: () => createDirStorage(dir),
    leftovers: async () => (await walk(dir)).filter((f) => /\.part-/.test(f)),
  });

  it('keeps no part file and no empty folders once an object is deleted', async () => {
    const s = createDirStorage(dir);
    await put(s, 'clean/2026/01/02/CAc.cbrec', Buffer.from('x'));
    expect((await stat(join(dir, 'clean/2026/01/02/CAc.cbrec'))).size).toBe(1);
    await s.delete('clean/2026/01/02/CAc.cbrec');
    await expect(stat(join(dir, 'clean'))).rejects.toThrow(/ENOENT/);
    expect(s.kind).toBe('dir');
    expect(s.where).toBe(dir);
  });

  it('says which errno a failure was', async () => {
    const file = join(dir, 'a-file');
    await writeFile(file, 'x');
    const s = createDirStorage(file); // a file where the folder should be
    await expect(s.create('2026/x.cbrec')).rejects.toThrow(/cannot create 2026\/x\.cbrec: (ENOTDIR|EEXIST)/);
    await expect(s.size('x.cbrec')).resolves.toBeUndefined();
  });

  it.skipIf(process.getuid?.() === 0)('says EACCES for a folder it may not write (skipped as root, who may write anywhere)', async () => {
    const locked = join(dir, 'locked');
    const s = createDirStorage(locked);
    await put(s, 'ok.cbrec', Buffer.from('x'));
    await chmod(locked, 0o500);
    try {
      await expect(s.create('no.cbrec')).rejects.toThrow(/EACCES \(permission denied\)/);
    } finally {
      await chmod(locked, 0o700);
    }
  });

  it('openRecordingStorage picks the directory without an S3 URL', () => {
    const s = openRecordingStorage({ dir, s3Url: undefined }, {});
    expect(s.kind).toBe('dir');
  });
});

describe('S3 URLs', () => {
  it('parses AWS and endpoint forms, without credentials in where', () => {
    expect(parseS3Url('s3://recs')).toEqual({ endpoint: undefined, bucket: 'recs', prefix: '' });
    expect(parseS3Url('s3://recs/calls/eu/')).toEqual({ endpoint: undefined, bucket: 'recs', prefix: 'calls/eu' });
    expect(parseS3Url('http://minio:9000/recs/calls')).toEqual({ endpoint: 'http://minio:9000', bucket: 'recs', prefix: 'calls' });
    expect(parseS3Url('https://s3.example.com/recs')).toEqual({ endpoint: 'https://s3.example.com', bucket: 'recs', prefix: '' });
    expect(() => parseS3Url('http://minio:9000/')).toThrow(/names no bucket/);
    expect(() => parseS3Url('ftp://x/y')).toThrow(/not ftp:/);
    const s = openRecordingStorage({ dir: '/nowhere', s3Url: 'http://user:secret@minio:9000/recs/calls' }, { AWS_ACCESS_KEY_ID: 'AKIA', AWS_SECRET_ACCESS_KEY: 'shh' });
    expect(s.kind).toBe('s3');
    expect(s.where).toBe('s3://recs/calls');
  });
});

const probe = probeS3rver();

describe.skipIf(!probe.ok)(`S3 storage against s3rver${probe.ok ? '' : ` (skipped: ${probe.reason})`}`, () => {
  let dir = '';
  let child: ChildProcess | undefined;
  let endpoint = '';
  const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cb-rec-s3-'));
    const proc = spawn(process.execPath, ['--openssl-legacy-provider', '-e', LAUNCH], {
      env: { ...process.env, S3RVER_PATH: s3rverPath, S3RVER_DIR: dir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = proc;
    const port = await new Promise<number>((resolve, reject) => {
      let out = '';
      let err = '';
      proc.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const line = out.split('\n')[0];
        if (out.includes('\n')) resolve((JSON.parse(line!) as { port: number }).port);
      });
      proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      proc.on('exit', (code) => reject(new Error(`s3rver exited (${code}) before listening: ${err}`)));
    });
    endpoint = `http://127.0.0.1:${port}`;
    const client = new S3Client({ region: 'us-east-1', endpoint, forcePathStyle: true, credentials });
    await client.send(new CreateBucketCommand({ Bucket: 'recordings' }));
    client.destroy();
  });
  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  });

  /** s3rver keeps a multipart upload's parts in <dir>/<bucket>/._S3rver_uploads/<id>/<part number> until it completes. */
  const uploadFiles = async (): Promise<string[]> => (await walk(dir)).filter((f) => /\._S3rver_uploads[/\\]/.test(f));

  behaves('behaviour', {
    storage: () => createS3Storage({ url: `${endpoint}/recordings/calls/eu`, credentials, listPageSize: 4 }),
    leftovers: uploadFiles,
    noMultipartAbort: { answer: /cannot abort the upload of big\/CAbigabort\.cbrec: MethodNotAllowed, HTTP 405/, why: 's3rver 3.7 does not implement AbortMultipartUpload' },
    multipartSeen: async () => {
      const parts = await uploadFiles();
      for (const p of parts) if (/[/\\]1$/.test(p) && (await stat(p)).size >= 5 * MiB) return true;
      return false;
    },
  });

  it('stores under the URL prefix, and where names the bucket without the endpoint credentials', async () => {
    const s = createS3Storage({ url: `${endpoint}/recordings/calls/eu`, credentials });
    expect(s.where).toBe('s3://recordings/calls/eu');
    await put(s, 'p/CAp.cbrec', Buffer.from('hello'));
    const client = new S3Client({ region: 'us-east-1', endpoint, forcePathStyle: true, credentials });
    const head = await client.send(new HeadObjectCommand({ Bucket: 'recordings', Key: 'calls/eu/p/CAp.cbrec' }));
    expect(head.ContentLength).toBe(5);
    client.destroy();
    await s.delete('p/CAp.cbrec');
  });

  it('says what the server said when the bucket is missing', async () => {
    const s = createS3Storage({ url: `${endpoint}/no-such-bucket`, credentials });
    await expect(put(s, 'x.cbrec', Buffer.from('x'))).rejects.toThrow(/s3:\/\/no-such-bucket: cannot upload x\.cbrec: NoSuchBucket/);
  });
});
