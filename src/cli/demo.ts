/**
 * `callbridge demo`: the whole product on loopback with no credentials.
 * Starts the model stand-in (src/sim), starts the real relay through the
 * same composition root as `serve` (real uWS server, real wasm transcoder,
 * real SQLite store, real eligibility tool on its mock back end), places
 * simulated Twilio calls that speak the Media Streams protocol, and prints
 * each call's transcript, latencies and record.
 */
import { randomBytes } from 'node:crypto';
import { ConfigError, loadConfig } from '../config.js';
import { createLogger } from '../log.js';
import { startCallbridge } from '../main.js';
import { placeCall, type CallResult } from '../sim/caller.js';
import { startModelStandIn, type ModelStandIn } from '../sim/model-server.js';
import { eligibilityScenario, parallelEligibilityScenario } from '../sim/scenarios.js';
import type { CallRecord } from '../store/types.js';
import { formatRecord } from './calls.js';
import type { CliIO } from './io.js';

const USAGE = 'usage: callbridge demo [--calls N] [--mode transcode|passthrough] [--drop-model] [--quiet]\n';

export async function run(args: string[], io: CliIO): Promise<number> {
  let calls = 2;
  let mode: string | undefined;
  let quiet = false;
  let dropModel = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--calls') calls = Number(args[++i]);
    else if (a === '--mode') mode = args[++i];
    else if (a === '--quiet') quiet = true;
    else if (a === '--drop-model') dropModel = true;
    else {
      io.stderr.write(`callbridge demo: unknown option ${a}\n${USAGE}`);
      return 2;
    }
  }
  if (!Number.isInteger(calls) || calls < 1 || calls > 200) {
    io.stderr.write(`callbridge demo: --calls takes a whole number from 1 to 200\n`);
    return 2;
  }
  if (mode !== undefined && mode !== 'transcode' && mode !== 'passthrough') {
    io.stderr.write(`callbridge demo: --mode is transcode or passthrough\n`);
    return 2;
  }
  const out = (s: string) => io.stdout.write(s);

  // Call 1 speaks like a 2026 model (a preamble, then two parallel check_eligibility calls); the others like the first GA model.
  const standIn = await startModelStandIn({ scenarioFor: (i) => (i === 0 ? parallelEligibilityScenario : eligibilityScenario) });
  const authToken = randomBytes(16).toString('hex');
  const publicUrl = 'https://callbridge.demo.invalid';
  let config;
  try {
    config = loadConfig({
      LOG_LEVEL: 'warn',
      CALLBRIDGE_DB: './data/demo.db',
      ...io.env,
      // The demo always talks to its own stand-in and its own callers:
      PORT: '0',
      HOST: '127.0.0.1',
      PUBLIC_URL: publicUrl,
      OPENAI_BASE_URL: standIn.baseUrl,
      OPENAI_API_KEY: 'demo-key',
      TWILIO_AUTH_TOKEN: authToken,
      ...(mode ? { AUDIO_MODE: mode } : {}),
    });
  } catch (err) {
    await standIn.close();
    if (err instanceof ConfigError) {
      io.stderr.write(`callbridge demo: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const log = createLogger(config.logLevel);
  const app = await startCallbridge(config, log);
  const baseUrl = `http://127.0.0.1:${app.port}`;
  out(`callbridge demo: relay on ${baseUrl} (audio mode ${config.audioMode}), model stand-in on ${standIn.url}\n`);
  out(`edge: ${app.edge}\n`);
  out(`placing ${calls} simulated call${calls > 1 ? 's' : ''} (eligibility scenario, real-time audio: about 25 s each; call 1 with a preamble and two parallel tool calls)…\n`);
  if (dropModel) out('--drop-model: the model connection of call 2 is dropped while the assistant speaks; the call holds, reconnects and carries on\n');
  out('\n');

  let failed = 0;
  try {
    const place = (i: number) =>
      placeCall({
        baseUrl,
        publicUrl,
        authToken,
        from: `+1555010${String(i).padStart(4, '0')}`,
        to: '+15550100999',
        // Call 1 asks for two members at once, then says goodbye; the others go one question at a time.
        utterances: i === 0 ? [{ durationMs: 2400 }, { durationMs: 1100 }] : [{ durationMs: 1400 }, { durationMs: 1200 }, { durationMs: 1500 }, { durationMs: 1100 }],
      });
    // Call 1 first, so it gets stand-in session 0 (the 2026 shapes); the rest once it is connected.
    const first = place(0);
    await until(() => standIn.sessions.length >= 1 || calls === 0, 10_000);
    const rest = Array.from({ length: calls - 1 }, (_, i) => place(i + 1));
    if (dropModel && calls >= 2) void dropWhileSpeaking(standIn, 1);
    const results = await Promise.allSettled([first, ...rest]);
    await app.store.flush();
    for (const r of results) {
      if (r.status === 'rejected') {
        failed++;
        out(`call failed: ${r.reason instanceof Error ? r.reason.message : String(r.reason)}\n\n`);
        continue;
      }
      const record = await app.store.get(r.value.callSid);
      out(describeCall(r.value, record, quiet));
    }
  } finally {
    await app.close();
    await standIn.close();
  }
  out(`records are in ${config.dbPath}: \`npx callbridge calls list\` with CALLBRIDGE_DB=${config.dbPath}\n`);
  return failed === 0 ? 0 : 1;
}

async function until(ok: () => boolean, timeoutMs: number): Promise<void> {
  const t0 = Date.now();
  while (!ok() && Date.now() - t0 < timeoutMs) await new Promise((r) => setTimeout(r, 20));
}

/** Drop stand-in session `index`'s socket (close 1011) in the middle of its second spoken response. */
async function dropWhileSpeaking(standIn: ModelStandIn, index: number): Promise<void> {
  await until(() => {
    const r = standIn.sessions[index]?.responses[1];
    return r !== undefined && r.status === 'in_progress' && r.audioMsSent > 400;
  }, 30_000);
  standIn.sessions[index]?.dropSocket(1011);
}

/** The call's record as `callbridge calls show` prints it, then what only the simulated caller knows. */
function describeCall(result: CallResult, record: CallRecord | undefined, quiet: boolean): string {
  const lines: string[] = [`── call ${result.callSid} ─────────────────────────────`];
  if (!record) lines.push('  (no record found)');
  else for (const line of formatRecord(record, { transcript: !quiet }).trimEnd().split('\n')) lines.push(line ? `  ${line}` : '');
  const relayTurns = record?.turnLatencies.map((t) => `${t.latencyMs}`).join(', ');
  const callerTurns = result.turnLatenciesMs.map((t) => `${Math.round(t)}`).join(', ');
  lines.push(`  per-turn latency, ms: relay view (speech_stopped → first frame out) ${relayTurns || '-'}; caller view (end of speech → first audio heard) ${callerTurns || '-'}`);
  lines.push(`  caller heard ${(result.heardMs / 1000).toFixed(1)} s of audio in ${result.framesReceived} frames; max buffered ${result.maxBufferedMs} ms; protocol violations: ${result.protocolViolations.length}`);
  return `${lines.join('\n')}\n\n`;
}
