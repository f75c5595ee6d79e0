// The append frame writer (src/realtime/ws-frame.ts) judged by an independent
// decoder (test/helpers/ws-decode.ts) and by ws's own Receiver.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import * as ws from 'ws';

/** ws's frame parser: exported by the package at run time, absent from its type definitions. */
type WsReceiver = import('node:stream').Writable & {
  on(event: 'message', fn: (data: Buffer, isBinary: boolean) => void): WsReceiver;
  on(event: 'error', fn: (e: Error) => void): WsReceiver;
};
const { Receiver } = ws as unknown as { Receiver: new (opts: { isServer: boolean; maxPayload: number }) => WsReceiver };
import { AppendFrameWriter, maskedHeaderLength } from '../src/realtime/ws-frame.js';
import { decodeFrames } from './helpers/ws-decode.js';

/** Base64 text of exactly `chars` characters (a multiple of 4). */
const b64OfLength = (chars: number): string => randomBytes((chars / 4) * 3).toString('base64');
const json = (b64: string): string => `{"type":"input_audio_buffer.append","audio":"${b64}"}`;

describe('AppendFrameWriter', () => {
  it.each([
    ['empty audio', 0, 7],
    ['largest 7-bit payload', 76, 7], // 47 + 76 = 123
    ['smallest 16-bit payload', 80, 16], // 127
    ['µ-law 20 ms (160 B)', 216, 16],
    ['PCM16 24 kHz 20 ms (960 B)', 1280, 16],
    ['largest 16-bit payload', 65488, 16], // 65535
    ['smallest 64-bit payload', 65492, 64], // 65539
    ['1 MiB of base64', 1 << 20, 64],
  ])('%s: one masked FIN text frame whose payload is the append JSON', (_name, chars, bits) => {
    const w = new AppendFrameWriter();
    const b64 = b64OfLength(chars);
    const frame = Buffer.from(w.frameBase64(b64));
    const { frames, rest } = decodeFrames(frame);
    expect(rest.length).toBe(0);
    expect(frames).toHaveLength(1);
    const f = frames[0]!;
    expect({ fin: f.fin, rsv: f.rsv, opcode: f.opcode, masked: f.masked, lengthBits: f.lengthBits }).toEqual({
      fin: true, rsv: 0, opcode: 1, masked: true, lengthBits: bits,
    });
    expect(frame.length).toBe(maskedHeaderLength(f.payload.length) + f.payload.length);
    expect(f.payload.toString('latin1')).toBe(json(b64));
    expect(JSON.parse(f.payload.toString('utf8'))).toEqual({ type: 'input_audio_buffer.append', audio: b64 });
  });

  it('ws Receiver (server side, masks required) reads a stream of frames back to the same messages', async () => {
    const w = new AppendFrameWriter();
    const sent = Array.from({ length: 300 }, (_, i) => b64OfLength(4 * (i % 7 === 0 ? 20_000 : 1 + (i * 37) % 400)));
    const got: string[] = [];
    const receiver = new Receiver({ isServer: true, maxPayload: 1 << 24 });
    receiver.on('message', (data: Buffer, isBinary: boolean) => {
      expect(isBinary).toBe(false);
      got.push(data.toString('utf8'));
    });
    const errors: Error[] = [];
    receiver.on('error', (e: Error) => errors.push(e));
    // Copies (the frame is a view of scratch memory), delivered in odd-sized pieces as a socket would.
    const stream = Buffer.concat(sent.map((b) => Buffer.from(w.frameBase64(b))));
    for (let at = 0; at < stream.length; at += 1009) {
      await new Promise<void>((r) => receiver.write(stream.subarray(at, at + 1009), () => r()));
    }
    expect(errors).toEqual([]);
    expect(got).toEqual(sent.map(json));
  });

  it('draws a fresh masking key for every frame, across pool refills', () => {
    const w = new AppendFrameWriter();
    const b64 = b64OfLength(216);
    const keys: string[] = [];
    for (let i = 0; i < 5000; i++) {
      const f = decodeFrames(Buffer.from(w.frameBase64(b64))).frames[0]!;
      keys.push(f.mask!.toString('hex'));
      expect(f.payload.toString('latin1')).toBe(json(b64));
    }
    for (let i = 1; i < keys.length; i++) expect(keys[i]).not.toBe(keys[i - 1]);
    // 32-bit random keys: among 5000, a handful of repeats at most (birthday bound ~0.003).
    expect(new Set(keys).size).toBeGreaterThan(4990);
    // Not masked with zeros or a constant: the masked bytes differ from the plain text.
    const raw = w.frameBase64(b64);
    expect(raw.subarray(raw.length - 216 - 2).toString('latin1')).not.toBe(`${b64}"}`);
  });

  it('reuses its memory until release(); after release the previous frame stays intact', () => {
    const w = new AppendFrameWriter();
    const a = w.frameBase64(b64OfLength(216));
    const aCopy = Buffer.from(a);
    w.frameBase64(b64OfLength(216));
    const c = w.frameBase64(b64OfLength(216));
    expect([c.buffer, c.byteOffset]).toEqual([a.buffer, a.byteOffset]);
    expect(Buffer.compare(a, aCopy)).not.toBe(0); // overwritten: the contract says "valid until the next frame"
    const kept = w.frameBase64(b64OfLength(1280));
    const keptCopy = Buffer.from(kept);
    w.release();
    const next = w.frameBase64(b64OfLength(1280));
    const overlaps = next.buffer === kept.buffer && next.byteOffset < kept.byteOffset + kept.length && kept.byteOffset < next.byteOffset + next.length;
    expect(overlaps).toBe(false);
    expect(Buffer.compare(kept, keptCopy)).toBe(0);
    expect(w.released).toBe(1);
  });
});
