/**
 * The seam between the network server (src/server/, the only module that
 * knows uWebSockets.js) and the call layer. The server turns HTTP requests and
 * WebSocket frames into these calls; the call layer never sees a uWS object.
 * Tests implement TwilioSocket with a plain fake.
 */

/** One Twilio Media Stream websocket, as the call sees it. */
export interface TwilioSocket {
  /**
   * Send one JSON text frame. Returns false when the socket's send buffer is
   * over its limit (the frame is still queued, but the sender should hold
   * further frames until `onDrain`).
   */
  send(text: string): boolean;
  /** Bytes queued in the socket and not yet written. */
  bufferedAmount(): number;
  /** Batch several sends made from an async callback into one syscall. */
  cork(fn: () => void): void;
  /** Close the stream (1000 normal; 1008 policy; 1011 internal error). */
  close(code?: number, reason?: string): void;
}

/** What the call layer does with one stream's traffic. Handlers never throw. */
export interface StreamHandler {
  /** A text frame, already copied out of uWS memory. */
  onText(text: string): void;
  /** A binary frame: a protocol error on Twilio's stream. */
  onBinary(byteLength: number): void;
  /** The socket's send buffer drained below the limit. */
  onDrain(): void;
  /** The socket closed (by either side). Called exactly once. */
  onClose(code: number, reason: string): void;
}

export interface StreamInfo {
  remoteAddress: string;
  /** Header values copied out in `upgrade`. */
  headers: Record<string, string>;
}

/** Result of the voice webhook: TwiML to answer, or a refusal. */
export type IncomingResult =
  | { ok: true; twiml: string }
  | { ok: false; status: number; message: string };

export interface HealthReport {
  status: 'ok' | 'degraded';
  version: string;
  uptimeSeconds: number;
  activeCalls: number;
  model: { reachable: boolean | null; lastOkAt: string | null; lastError: string | null };
}

/** HTTP-shaped request for the JSON admin API (GET /calls…), already copied out of uWS. */
export interface AdminRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: Record<string, string>;
}

export interface AdminResponse {
  status: number;
  body: unknown;
}

/**
 * Everything the server needs from the rest of callbridge. The server checks
 * Twilio signatures itself (it knows the URL and raw form); these are called
 * only for requests that passed.
 */
export interface VoiceApp {
  /** POST /voice/incoming, form fields decoded. `streamUrl` is the wss URL of /voice/stream. */
  incoming(form: Record<string, string>, streamUrl: string): IncomingResult;
  /** POST /voice/status (call status callback), form fields decoded. */
  status(form: Record<string, string>): void;
  /** WS /voice/stream opened: a handler for its frames, or null to refuse (close 1013: at capacity). */
  openStream(socket: TwilioSocket, info: StreamInfo): StreamHandler | null;
  health(): HealthReport;
  /** GET /calls, GET /calls/:sid. Absent → 404. */
  admin?(req: AdminRequest): Promise<AdminResponse>;
}
