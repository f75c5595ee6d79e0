/**
 * A local stand-in for OpenAI's speech endpoint (docs/openai-tts-protocol.md),
 * for tests, the demo and the bench; no code shared with src/pipeline.
 *
 * - `POST /v1/audio/speech`, `Authorization: Bearer <key>` (checked when
 *   `apiKey` is set: 401 otherwise), JSON body `{model, input, voice,
 *   response_format?, speed?, instructions?, stream_format?}`.
 * - Validation as the API does it: `input` 1…4096 characters, `model` and
 *   `voice` present, `speed` 0.25…4; 400 with the OpenAI error shape
 *   `{error:{message,type,param,code}}` otherwise. The stand-in speaks
 *   `response_format: "pcm"` only (and `stream_format` "audio" only); other
 *   formats get 400 here.
 * - The answer: 200, `Content-Type: audio/pcm`, chunked body of PCM16 LE
 *   24 kHz mono, `msPerChar` × characters long (speech-like signal from
 *   audio.ts), the first bytes `firstAudioDelayMs` (+ jitter) after the
 *   request, then a `frameMs` frame every `frameGapMs`.
 * - Faults by request index (0, 1, …): an HTTP status (429, 500, …) with an
 *   error body, or the socket destroyed after N frames of the body.
 *
 * Every request is recorded (body, whether it was aborted by the client).
 */
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Socket } from 'node:net';
import { speechLike } from './audio.js';

export const OPENAI_TTS_RATE_HZ = 24000;

export interface OpenAiTtsFault {
  /** Request index (arrival order, from 0). */
  request: number;
  /** An HTTP error status instead of audio. */
  status?: number;
  /** Destroy the socket after this many body frames. */
  dropAfterFrames?: number;
}

export interface OpenAiTtsStandInOptions {
  port?: number;
  host?: string;
  apiKey?: string;
  /** Audio per character (ms, default 60). */
  msPerChar?: number;
  /** Audio per body write (ms, default 100). */
  frameMs?: number;
  /** From the request to the first body bytes (ms, default 200). */
  firstAudioDelayMs?: number;
  jitterMs?: number;
  /** Between body writes (ms, default 5). */
  frameGapMs?: number;
  faults?: OpenAiTtsFault[];
  seed?: number;
}

export interface OpenAiTtsRequest {
  body: Record<string, unknown>;
  status: number;
  bytesSent: number;
  /** The client went away before the body was complete. */
  aborted: boolean;
}

export interface OpenAiTtsStandIn {
  /** `http://127.0.0.1:PORT/v1`: the `openai` package's baseURL. */
  readonly baseURL: string;
  readonly port: number;
  readonly requests: OpenAiTtsRequest[];
  close(): Promise<void>;
}

/** Bytes the stand-in sends for `chars` characters (PCM16 24 kHz). */
export function openAiTtsBytes(chars: number, msPerChar = 60): number {
  return Math.round((chars * msPerChar * OPENAI_TTS_RATE_HZ) / 1000) * 2;
}

function apiError(res: ServerResponse, status: number, message: string, type: string, code: string | null, param: string | null = null): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: { message, type, param, code } }));
}

export async function startOpenAiTtsStandIn(opts: OpenAiTtsStandInOptions = {}): Promise<OpenAiTtsStandIn> {
  const msPerChar = opts.msPerChar ?? 60;
  const frameBytes = Math.round(((opts.frameMs ?? 100) * OPENAI_TTS_RATE_HZ) / 1000) * 2;
  const frameGap = opts.frameGapMs ?? 5;
  let rnd = (opts.seed ?? 1) >>> 0 || 1;
  const random = (): number => (rnd = (Math.imul(rnd, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  const requests: OpenAiTtsRequest[] = [];
  const sockets = new Set<Socket>();

  const http = createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    if (req.method !== 'POST' || u.pathname !== '/v1/audio/speech') return apiError(res, 404, 'Not found', 'invalid_request_error', null);
    if (opts.apiKey !== undefined && req.headers.authorization !== `Bearer ${opts.apiKey}`) {
      return apiError(res, 401, 'Incorrect API key provided.', 'invalid_request_error', 'invalid_api_key');
    }
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      let body: Record<string, unknown>;
      try {
        body = JSON.parse(Buffer.concat(parts).toString('utf8')) as Record<string, unknown>;
      } catch {
        return apiError(res, 400, 'We could not parse the JSON body of your request.', 'invalid_request_error', null);
      }
      const index = requests.length;
      const rec: OpenAiTtsRequest = { body, status: 200, bytesSent: 0, aborted: false };
      requests.push(rec);
      const bad = (message: string, param: string): void => {
        rec.status = 400;
        apiError(res, 400, message, 'invalid_request_error', null, param);
      };
      const input = body.input;
      if (typeof input !== 'string' || input.length === 0) return bad('input is required', 'input');
      if (input.length > 4096) return bad('input is longer than 4096 characters', 'input');
      if (typeof body.model !== 'string') return bad('model is required', 'model');
      if (body.voice === undefined) return bad('voice is required', 'voice');
      if (body.speed !== undefined && (typeof body.speed !== 'number' || body.speed < 0.25 || body.speed > 4)) return bad('speed must be 0.25…4', 'speed');
      if ((body.response_format ?? 'mp3') !== 'pcm') return bad('the stand-in produces response_format "pcm" only', 'response_format');
      if (body.stream_format !== undefined && body.stream_format !== 'audio') return bad('the stand-in streams stream_format "audio" only', 'stream_format');
      const fault = (opts.faults ?? []).find((f) => f.request === index);
      if (fault?.status) {
        rec.status = fault.status;
        return fault.status === 429
          ? apiError(res, 429, 'Rate limit reached for requests', 'requests', 'rate_limit_exceeded')
          : apiError(res, fault.status, 'The server had an error while processing your request.', 'server_error', null);
      }

      const pcm = speechLike(input.length * msPerChar, OPENAI_TTS_RATE_HZ, index + 1);
      const audio = Buffer.alloc(pcm.length * 2);
      for (let i = 0; i < pcm.length; i++) audio.writeInt16LE(pcm[i]!, 2 * i);
      let offset = 0;
      let frames = 0;
      let timer: NodeJS.Timeout | undefined;
      res.on('close', () => {
        if (timer) clearTimeout(timer);
        if (offset < audio.length) rec.aborted = true;
      });
      const send = (): void => {
        timer = undefined;
        if (res.destroyed) return;
        if (offset === 0) res.writeHead(200, { 'content-type': 'audio/pcm', 'transfer-encoding': 'chunked' });
        const frame = audio.subarray(offset, offset + frameBytes);
        offset += frame.length;
        rec.bytesSent += frame.length;
        frames++;
        if (offset >= audio.length) return void res.end(frame);
        res.write(frame);
        if (fault?.dropAfterFrames !== undefined && frames >= fault.dropAfterFrames) {
          res.socket?.destroy();
          return;
        }
        timer = setTimeout(send, frameGap);
      };
      timer = setTimeout(send, (opts.firstAudioDelayMs ?? 200) + random() * (opts.jitterMs ?? 0));
    });
  });
  http.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => http.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', resolve));
  const port = (http.address() as AddressInfo).port;
  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        http.close(() => resolve());
      }),
  };
}
