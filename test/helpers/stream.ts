/**
 * A raw Media Stream as Twilio opens one, for admission tests: a signed
 * upgrade, `connected`, then `start` presenting a per-call token, then 20 ms
 * of µ-law silence every 20 ms until closed.
 */
import WebSocket from 'ws';

export interface PresentedStream {
  /** The close code, when the server (or close()) closes the socket. */
  closed: Promise<number>;
  /** Resolves when the first `media` message arrives from the server. */
  firstMedia: Promise<void>;
  /** The close code, or null while the socket is open. */
  code(): number | null;
  close(): void;
}

/** Opens `url` with `headers` (the signature, a Host) and presents `token` for `callSid`. */
export function presentToken(url: string, headers: Record<string, string>, callSid: string, token: string): PresentedStream {
  const streamSid = `MZ${callSid.slice(2)}`;
  const ws = new WebSocket(url, { headers });
  let code: number | null = null;
  let media: NodeJS.Timeout | undefined;
  const closed = new Promise<number>((resolve) =>
    ws.once('close', (c) => {
      code = c;
      clearInterval(media);
      resolve(c);
    }),
  );
  const firstMedia = new Promise<void>((resolve) => ws.on('message', (d) => JSON.parse(String(d)).event === 'media' && resolve()));
  ws.on('error', () => {});
  ws.once('open', () => {
    ws.send(JSON.stringify({ event: 'connected', protocol: 'Call', version: '1.0.0' }));
    const start = { accountSid: `AC${'3'.repeat(32)}`, streamSid, callSid, tracks: ['inbound'], customParameters: { token }, mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 } };
    ws.send(JSON.stringify({ event: 'start', sequenceNumber: '1', streamSid, start }));
    let seq = 1;
    const silence = Buffer.alloc(160, 0xff).toString('base64');
    media = setInterval(() => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ event: 'media', sequenceNumber: String(++seq), streamSid, media: { track: 'inbound', chunk: String(seq), timestamp: String(seq * 20), payload: silence } }));
    }, 20);
  });
  return { closed, firstMedia, code: () => code, close: () => ws.close(1000) };
}
