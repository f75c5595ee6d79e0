/**
 * The network edge, one server on one port, whichever edge runs:
 *
 *   POST /voice/incoming   Twilio voice webhook → TwiML (signature-checked)
 *   POST /voice/status     call status callbacks (signature-checked)
 *   POST /voice/action     <Connect action>: the stream of leg N ended → <Dial> or <Hangup/> (signed)
 *   POST /voice/dial-action <Dial action>: the transfer's dial ended (signed)
 *   POST /voice/whisper    what the transfer's target hears first (signed)
 *   POST /voice/amd        answering-machine detection of an outbound call (signed; OutboundApp)
 *   POST /calls            place an outbound call (JSON; ADMIN_TOKEN; OutboundApp)
 *   GET  /voice/health     JSON health
 *   GET  /metrics          Prometheus text
 *   GET  /calls[/:sid]     call records (admin reader; bearer token)
 *   WS   /voice/stream     Twilio Media Stream (signature-checked upgrade)
 *   *    /console[/…]      the console (ConsoleApp): page, assets, JSON API, event streams
 *
 * `startServer` resolves the edge (edge.ts: native uWebSockets.js where a
 * build loads for this Node, else node:http + ws; EDGE forces one) and starts
 * it. Both edges keep one contract (core.ts): webhook bodies reach the
 * VoiceApp parsed and typed; the same limits, close codes, backpressure and
 * guarded handlers. Nothing outside src/server knows which edge runs; the
 * RunningServer names it for the start-up line.
 */
import type { Logger } from '../log.js';
import type { AdminReader, ConsoleApp, OutboundApp, RecordingReader, VoiceApp } from '../call/ports.js';
import { EdgeCore, type EdgeSettings } from './core.js';
import { parseEdgeChoice, resolveEdge, type EdgeChoice, type EdgeKind } from './edge.js';
import { createMetrics, type Metrics } from './metrics.js';
import { startNodeEdge } from './node-edge.js';

export { type EdgeSettings, type TrustedSubnet, MAX_BACKPRESSURE_BYTES, MAX_BODY_BYTES, MAX_WS_MESSAGE_BYTES, WS_IDLE_TIMEOUT_S } from './core.js';
export { EdgeError, availableEdges, type EdgeChoice, type EdgeKind } from './edge.js';

export interface ServerOptions {
  settings: EdgeSettings;
  app: VoiceApp;
  log: Logger;
  /** GET /calls, GET /calls/:sid, DELETE /calls/:sid (absent → 404). */
  admin?: AdminReader;
  /** GET /calls/:sid/recording (absent → 404). */
  recording?: RecordingReader;
  /** POST /calls, POST /voice/amd, /voice/incoming's `o` token (absent → 404, 404, 403). */
  outbound?: OutboundApp;
  /** Everything under /console: the page, its assets, its JSON API and its event streams (absent → 404). */
  console?: ConsoleApp;
  metrics?: Metrics;
  /** Which edge: default from the EDGE environment variable (uws | node | auto). */
  edge?: EdgeChoice;
  /** Where EDGE and CALLBRIDGE_UWS_MODULE are read (default process.env). */
  env?: NodeJS.ProcessEnv;
}

export interface RunningServer {
  port: number;
  metrics: Metrics;
  edge: {
    kind: EdgeKind;
    /** One line for the log and the console, e.g. "uWebSockets.js v20.51 native (@based/uws)". */
    description: string;
  };
  /** Stop listening, end every console event stream (its stop function called), close every media stream (1001), wait for their handlers' onClose. */
  close(): Promise<void>;
}

/** Resolve the edge and start it. Throws EdgeError when the edge asked for cannot run here. */
export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const env = opts.env ?? process.env;
  const resolved = resolveEdge(env, opts.edge ?? parseEdgeChoice(env.EDGE));
  const metrics = opts.metrics ?? createMetrics();
  const core = new EdgeCore({ settings: opts.settings, app: opts.app, log: opts.log, metrics, admin: opts.admin, recording: opts.recording, outbound: opts.outbound, console: opts.console });
  const server =
    resolved.kind === 'uws'
      ? await (await import('./uws-edge.js')).startUwsEdge(resolved.uws, core)
      : await startNodeEdge(core);
  return { port: server.port, metrics, edge: { kind: resolved.kind, description: resolved.description }, close: () => server.close() };
}
