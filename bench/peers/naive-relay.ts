/**
 * The naive relay: the common single-file Twilio ⇄ OpenAI Realtime bridge,
 * the baseline callbridge's relay is measured against (issue 8, item 7).
 *
 * What it is, on purpose: one `ws` WebSocketServer on a plain `http` server
 * for Twilio's stream, `JSON.parse` / `JSON.stringify` of every message, one
 * `ws` client per call to the model, model audio deltas forwarded to Twilio
 * the moment they arrive (no pacing, no marks, no records, no signature
 * checks), a greeting (`response.create`) once the session is set up,
 * `clear` to Twilio on `speech_started`. Two audio modes:
 * - passthrough: µ-law both ways (`audio/pcmu`); payloads are forwarded as
 *   the same base64 strings;
 * - transcode: µ-law 8 kHz ⇄ PCM16 24 kHz with the npm packages a naive
 *   implementer reaches for: `alawmulaw` (mulaw.decode / mulaw.encode) and
 *   `speex-resampler` (quality 3, one resampler per direction per call).
 *
 * The only additions are what the bench needs and a correct relay cannot
 * skip: inbound frames are queued until the model socket is open (otherwise
 * they are lost, and frame loss is a reported figure), an odd trailing byte
 * of a PCM16 delta is carried to the next delta, and relay-added latency is
 * recorded per audio message exactly where callbridge records it (message
 * handler entry → after the outgoing send), with the same histogram.
 */
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import alawmulaw from 'alawmulaw';
import WebSocket, { WebSocketServer } from 'ws';
import { LatencyHistogram } from '../../src/call/stats.js';
import { peerSessionUpdate, type PeerRelay } from './peer-relay.js';

const require = createRequire(import.meta.url);
interface SpeexResampler {
  processChunk(chunk: Buffer): Buffer;
}
interface SpeexClass {
  new (channels: number, inRate: number, outRate: number, quality?: number): SpeexResampler;
  initPromise: Promise<unknown>;
}
const Speex = (require('speex-resampler') as { default: SpeexClass }).default;

export type NaiveMode = 'passthrough' | 'transcode';

export interface NaiveRelayOptions {
  /** The model's base URL as callbridge takes it (OPENAI_BASE_URL), e.g. http://127.0.0.1:PORT/v1. */
  modelBaseUrl: string;
  apiKey: string;
  mode: NaiveMode;
  port?: number;
  host?: string;
}

export type NaiveRelay = PeerRelay;

/** Which resampler and codec the transcode mode uses (printed by the bench). */
export const NAIVE_TRANSCODE = 'alawmulaw mulaw.decode/encode + speex-resampler q3';

export async function startNaiveRelay(opts: NaiveRelayOptions): Promise<NaiveRelay> {
  if (opts.mode === 'transcode') await Speex.initPromise;
  const modelUrl = `${opts.modelBaseUrl.replace(/^http/, 'ws').replace(/\/$/, '')}/realtime?model=gpt-realtime`;
  const relayIn = new LatencyHistogram();
  const relayOut = new LatencyHistogram();
  let callsEnded = 0;

  const http: Server = createServer((req, res) => {
    if (req.method === 'POST' && req.url === '/voice/incoming') {
      req.resume();
      const host = req.headers.host ?? 'localhost';
      res.writeHead(200, { 'content-type': 'text/xml' });
      res.end(`<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://${host}/media-stream"/></Connect></Response>`);
      return;
    }
    res.writeHead(404).end();
  });
  const wss = new WebSocketServer({ server: http, path: '/media-stream' });

  wss.on('connection', (twilioWs) => {
    let streamSid: string | undefined;
    const pending: string[] = [];
    const upsampler = opts.mode === 'transcode' ? new Speex(1, 8000, 24000, 3) : undefined;
    const downsampler = opts.mode === 'transcode' ? new Speex(1, 24000, 8000, 3) : undefined;
    let oddByte: number | undefined;
    const openAiWs = new WebSocket(modelUrl, { headers: { Authorization: `Bearer ${opts.apiKey}` } });
    openAiWs.on('open', () => {
      openAiWs.send(peerSessionUpdate(opts.mode === 'transcode'));
      // "Have the AI speak first": the greeting, as callbridge does.
      openAiWs.send(JSON.stringify({ type: 'response.create' }));
      for (const msg of pending.splice(0)) openAiWs.send(msg);
    });

    openAiWs.on('message', (data) => {
      const t0 = performance.now();
      let ev: any;
      try {
        ev = JSON.parse(data.toString());
      } catch {
        return;
      }
      if (ev.type === 'response.output_audio.delta' && streamSid) {
        let payload: string = ev.delta;
        if (downsampler) {
          let pcm = Buffer.from(ev.delta, 'base64');
          if (oddByte !== undefined) pcm = Buffer.concat([Buffer.from([oddByte]), pcm]);
          oddByte = pcm.length % 2 ? pcm[pcm.length - 1] : undefined;
          const even = pcm.subarray(0, pcm.length & ~1);
          const down = downsampler.processChunk(even);
          const ulaw = alawmulaw.mulaw.encode(new Int16Array(down.buffer, down.byteOffset, down.length >> 1));
          payload = Buffer.from(ulaw).toString('base64');
        }
        twilioWs.send(JSON.stringify({ event: 'media', streamSid, media: { payload } }));
        relayOut.record(performance.now() - t0);
      } else if (ev.type === 'input_audio_buffer.speech_started' && streamSid) {
        twilioWs.send(JSON.stringify({ event: 'clear', streamSid }));
      }
    });
    openAiWs.on('error', () => twilioWs.close());
    openAiWs.on('close', () => twilioWs.close());

    twilioWs.on('message', (data) => {
      const t0 = performance.now();
      let msg: any;
      try {
        msg = JSON.parse(data.toString());
      } catch {
        return;
      }
      switch (msg.event) {
        case 'start':
          streamSid = msg.start.streamSid;
          break;
        case 'media': {
          let audio: string = msg.media.payload;
          if (upsampler) {
            const pcm8 = alawmulaw.mulaw.decode(Buffer.from(audio, 'base64'));
            const up = upsampler.processChunk(Buffer.from(pcm8.buffer, pcm8.byteOffset, pcm8.byteLength));
            audio = up.toString('base64');
          }
          const out = JSON.stringify({ type: 'input_audio_buffer.append', audio });
          if (openAiWs.readyState === WebSocket.OPEN) openAiWs.send(out);
          else pending.push(out);
          relayIn.record(performance.now() - t0);
          break;
        }
        case 'stop':
          openAiWs.close();
          break;
      }
    });
    twilioWs.on('error', () => {});
    twilioWs.on('close', () => {
      callsEnded++;
      if (openAiWs.readyState === WebSocket.OPEN || openAiWs.readyState === WebSocket.CONNECTING) openAiWs.close();
    });
  });

  await new Promise<void>((resolve) => http.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', resolve));
  return {
    port: (http.address() as AddressInfo).port,
    get callsEnded() {
      return callsEnded;
    },
    relayIn,
    relayOut,
    async close() {
      for (const ws of wss.clients) ws.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}
