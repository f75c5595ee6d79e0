/**
 * Message counts at the simulated ends of a relay bench run, so every relay
 * is counted the same way whatever it does inside: the simulated callers
 * (`ws` client sockets in the bench process, src/sim/caller.ts) and the
 * model stand-in (`ws` server-side sockets, src/sim/model-server.ts).
 *
 * Counting is done by wrapping `ws`'s WebSocket.prototype.send and its
 * 'message' emit once, in the bench process only (the relays run in their
 * own processes and are never patched). A socket is the stand-in's when ws
 * created it server-side (`_isServer`, ws's own flag), else a caller's.
 * Units: WebSocket messages (one JSON text frame = one message).
 */
import WebSocket from 'ws';

export interface WireCounts {
  /** Sent by the simulated callers (→ relay), all events. */
  callerSent: number;
  /** Of callerSent: `media` frames (one 20 ms frame each). */
  callerMediaSent: number;
  /** Received by the simulated callers (relay → caller). */
  callerReceived: number;
  /** Sent by the model stand-in (→ relay). */
  modelSent: number;
  /** Received by the model stand-in (relay → model). */
  modelReceived: number;
}

const counts: WireCounts = { callerSent: 0, callerMediaSent: 0, callerReceived: 0, modelSent: 0, modelReceived: 0 };
let installed = false;

const MEDIA_PREFIX = '{"event":"media"';

/** Idempotent. Call before any socket of the run is created. */
export function installWireCounter(): void {
  if (installed) return;
  installed = true;
  const proto = WebSocket.prototype as unknown as {
    send: (this: { _isServer?: boolean }, data: unknown, ...rest: unknown[]) => void;
    emit: (this: { _isServer?: boolean }, event: string | symbol, ...args: unknown[]) => boolean;
  };
  const send = proto.send;
  proto.send = function (data, ...rest) {
    if (this._isServer) counts.modelSent++;
    else {
      counts.callerSent++;
      if (typeof data === 'string' && data.startsWith(MEDIA_PREFIX)) counts.callerMediaSent++;
    }
    return send.call(this, data, ...rest);
  };
  const emit = proto.emit;
  proto.emit = function (event, ...args) {
    if (event === 'message') {
      if (this._isServer) counts.modelReceived++;
      else counts.callerReceived++;
    }
    return emit.call(this, event, ...args);
  };
}

export function resetWireCounts(): void {
  for (const k of Object.keys(counts) as (keyof WireCounts)[]) counts[k] = 0;
}

export function wireCounts(): WireCounts {
  return { ...counts };
}
