/**
 * The lean write path to the model: one `input_audio_buffer.append` = one
 * frame built by AppendFrameWriter = one `socket.write` on the socket under
 * a `ws` client, instead of `ws.send` (UTF-8 copy of the text, a header
 * buffer, an options object, cork + two writes + uncork = a writev).
 * `ws` keeps the handshake, reading, control frames and every other event.
 *
 * When a raw frame is safe (checked against ws 8.x `lib/websocket.js` and
 * `lib/sender.js` before every write; any unexpected shape means "not safe"):
 * - `readyState` is OPEN: no close frame has been sent or received;
 * - permessage-deflate was not negotiated (`_extensions` has no
 *   'permessage-deflate': the only extension ws implements);
 * - the Sender has nothing queued or in progress: `_state` 0 (DEFAULT, not
 *   DEFLATING or GET_BLOB_DATA), `_queue` empty, `_bufferedBytes` 0, and it
 *   is not inside a fragmented message (`_firstFragment` true). In that state
 *   `ws.send` itself would write its frame to the socket synchronously, so a
 *   raw write keeps the order of every frame on the wire;
 * - the socket is writable (not ended, not destroyed).
 * Otherwise `writeAppend` returns false and the caller sends through `ws`.
 *
 * Memory: frames are built in one scratch buffer shared by every session
 * (writes are synchronous, one at a time). If the socket did not finish the
 * write at once (it holds the buffer until the kernel takes it; over TLS
 * every write completes later), the next frame goes into fresh, right-sized
 * memory from Node's buffer pool: the one allocation the socket needs.
 */
import type { Socket } from 'node:net';
import type WebSocket from 'ws';
import { AppendFrameWriter } from './ws-frame.js';

interface SenderInternals {
  _state?: unknown;
  _queue?: unknown;
  _bufferedBytes?: unknown;
  _firstFragment?: unknown;
}

interface WsInternals {
  _socket?: Socket | null;
  _sender?: SenderInternals | null;
  _extensions?: Record<string, unknown> | null;
}

const OPEN = 1;

/** The socket under `ws` if a raw frame written to it now is safe (see the file comment), else undefined. */
export function idleSocketOf(ws: WebSocket): Socket | undefined {
  if (ws.readyState !== OPEN) return undefined;
  const w = ws as unknown as WsInternals;
  const sender = w._sender;
  const sock = w._socket;
  const ext = w._extensions;
  if (!sender || !sock || !ext) return undefined;
  if (sender._state !== 0 || sender._bufferedBytes !== 0 || sender._firstFragment !== true) return undefined;
  const q = sender._queue;
  if (!Array.isArray(q) || q.length !== 0) return undefined;
  if (ext['permessage-deflate'] !== undefined) return undefined; // the only extension ws negotiates
  if (!sock.writable || sock.destroyed) return undefined;
  return sock;
}

const writer = new AppendFrameWriter();

/**
 * Write `{"type":"input_audio_buffer.append","audio":b64}` as one raw frame.
 * `b64` MUST be base64 (see AppendFrameWriter). Returns false, having written
 * nothing, when a raw frame is not safe now; the caller then uses `ws.send`.
 */
export function writeAppend(ws: WebSocket, b64: string): boolean {
  const sock = idleSocketOf(ws);
  if (!sock) return false;
  sock.write(writer.frameBase64(b64));
  // Anything still queued means the socket (or the stream above it) holds our buffer.
  if (sock.writableLength !== 0) writer.release();
  return true;
}

/** Frames whose memory a socket kept (each cost one fresh scratch buffer). For tests and diagnostics. */
export function leanWriteStats(): { released: number } {
  return { released: writer.released };
}
