/**
 * `callbridge demo`: the whole product on loopback with no credentials.
 * Starts the model stand-in (src/sim), starts the real relay through the
 * same composition root as `serve` (real uWS server, real wasm transcoder,
 * real SQLite store, real eligibility tool on its mock back end, the agent
 * of agents/demo.yaml), places simulated Twilio calls that speak the Media
 * Streams protocol, and prints each call's transcript, latencies and record.
 * Beside the eligibility calls, two follow Twilio's whole call flow
 * (sim/twilio-call.ts): one asks for a person and is transferred (the
 * `<Connect action>` answered with a `<Dial>` to member services, whose
 * whisper is shown), one says goodbye and the agent hangs up.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadConfig, type Config } from '../config.js';
import { createLogger, type Logger } from '../log.js';
import { startCallbridge, type Callbridge } from '../main.js';
import { startLiveStandIn } from '../sim/live-server.js';
import { startPipelineStandIns } from '../sim/pipeline-standins.js';
import { pipelinePrices } from '../store/prices.js';
import { pipelineStageCostsUsd } from '../store/cost.js';
import type { PipelineUsage } from '../records.js';
import { placeCall, type CallResult } from '../sim/caller.js';
import { startModelStandIn, type ModelStandIn } from '../sim/model-server.js';
import { eligibilityScenario, hangUpScenario, parallelEligibilityScenario, transferScenario, type Scenario } from '../sim/scenarios.js';
import { simulateCall, type SimulatedCall } from '../sim/twilio-call.js';
import type { CallRecord } from '../store/types.js';
import { formatRecord } from './calls.js';
import type { CliIO } from './io.js';

const USAGE = 'usage: callbridge demo [--calls N] [--mode transcode|passthrough] [--drop-model] [--realtime-only] [--quiet]\n';

export async function run(args: string[], io: CliIO): Promise<number> {
  let calls = 2;
  let mode: string | undefined;
  let quiet = false;
  let dropModel = false;
  let realtimeOnly = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--calls') calls = Number(args[++i]);
    else if (a === '--mode') mode = args[++i];
    else if (a === '--quiet') quiet = true;
    else if (a === '--drop-model') dropModel = true;
    else if (a === '--realtime-only') realtimeOnly = true;
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

  const agentFile = demoAgentFile();
  if (!agentFile) {
    io.stderr.write('callbridge demo: agents/demo.yaml not found beside the package\n');
    return 2;
  }
  // Model sessions by the order calls connect: call 1 speaks like a 2026 model (a preamble, then two parallel
  // check_eligibility calls); then the transfer, then the agent's hang-up; the other calls like the first GA model.
  const sessionScenarios: Scenario[] = [parallelEligibilityScenario, transferScenario, hangUpScenario];
  const standIn = await startModelStandIn({ scenarioFor: (i) => sessionScenarios[i] ?? eligibilityScenario });
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
      AGENT_FILE: agentFile,
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
  out('…and two more through Twilio\'s call flow: one asks for a person and is transferred to member services, one says goodbye and the agent hangs up\n');
  if (!realtimeOnly) out('…then call 1\'s script once more on GPT-Live (PROVIDER=live) and on the STT → LLM → TTS pipeline (PROVIDER=pipeline), on their stand-ins, and all three side by side\n');
  if (dropModel) out('--drop-model: the model connection of call 2 is dropped while the assistant speaks; the call holds, reconnects and carries on\n');
  out('\n');

  let failed = 0;
  let realtimeCall: { result: CallResult; record: CallRecord | undefined } | undefined;
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
    const flow = (from: string, utteranceMs: number, dial?: Parameters<typeof simulateCall>[0]['dial']) =>
      simulateCall({
        baseUrl,
        publicUrl,
        authToken,
        from,
        to: '+15550100999',
        // The caller waits for the greeting, says one thing, and stays on the line: the agent ends this stream.
        legs: [{ utterances: [{ durationMs: utteranceMs }], hangupAfterMs: 10_000 }],
        dial,
      });
    // One call at a time until each has its model session, so each gets its scenario (sessionScenarios); the rest together.
    const first = place(0);
    first.catch(() => undefined); // settled below; a failure while the others are placed must not go unhandled
    await until(() => standIn.sessions.length >= 1, 10_000);
    const transferred = flow('+15550109001', 1600, () => ({ status: 'completed', durationS: 95 }));
    await until(() => standIn.sessions.length >= 2, 10_000);
    const hungUp = flow('+15550109002', 1100);
    await until(() => standIn.sessions.length >= 3, 10_000);
    const rest = Array.from({ length: calls - 1 }, (_, i) => place(i + 1));
    if (dropModel && calls >= 2) void dropWhileSpeaking(standIn, 3);
    const results = await Promise.allSettled([first, ...rest]);
    const flows = await Promise.all([transferred, hungUp]);
    await app.store.flush();
    for (const [i, r] of results.entries()) {
      if (r.status === 'rejected') {
        failed++;
        out(`call failed: ${r.reason instanceof Error ? r.reason.message : String(r.reason)}\n\n`);
        continue;
      }
      const record = await app.store.get(r.value.callSid);
      if (i === 0) realtimeCall = { result: r.value, record };
      out(describeCall(r.value, record, quiet));
    }
    for (const [i, f] of flows.entries()) {
      if (f.ended === 'error' || f.ended === 'caller-hangup') failed++;
      out(describeFlow(f, await app.store.get(f.callSid), quiet, i === 0 ? 'asks for a person' : 'says goodbye'));
    }
  } finally {
    await app.close();
    await standIn.close();
  }
  // The same first call once more on each other provider: GPT-Live, then the pipeline, against their stand-ins.
  const others: [name: string, call: ProviderCall][] = [];
  for (const provider of realtimeOnly ? [] : (['live', 'pipeline'] as const)) {
    const name = provider === 'live' ? 'GPT-Live' : 'STT → LLM → TTS';
    const c = await runOtherProviderCall(provider, config, io.env, agentFile, authToken, publicUrl, mode, log);
    if (!c.ok) failed++;
    out(c.ok ? describeCall(c.result, c.record, quiet).replace(/─ call (\S+) /, `─ call $1 (${name}) `) : `${name} call failed: ${c.error}\n\n`);
    if (c.ok) others.push([name, c]);
  }
  if (realtimeCall && others.length) out(compareProviders([['OpenAI Realtime', realtimeCall], ...others]));
  out(`records are in ${config.dbPath}: \`npx callbridge calls list\` with CALLBRIDGE_DB=${config.dbPath}\n`);
  return failed === 0 ? 0 : 1;
}

/** A pipeline call's stages priced apart (the stand-ins play nova-3 and eleven_flash_v2_5; the LLM is the record's model). */
function stageCosts(p: PipelineUsage, llm: string | undefined): string {
  const c = pipelineStageCostsUsd(p, pipelinePrices({ stt: 'nova-3', llm, tts: 'eleven_flash_v2_5' }));
  return `STT $${c.stt.toFixed(4)} + LLM $${c.llm.toFixed(4)} + TTS $${c.tts.toFixed(4)}`;
}

type ProviderCall = { result: CallResult; record: CallRecord | undefined };

/** One call on PROVIDER=live or pipeline (their stand-ins), the script of call 1, in a relay of its own on the same database. */
async function runOtherProviderCall(
  provider: 'live' | 'pipeline',
  realtime: Config,
  env: Record<string, string | undefined>,
  agentFile: string,
  authToken: string,
  publicUrl: string,
  mode: string | undefined,
  log: Logger,
): Promise<({ ok: true } & ProviderCall) | { ok: false; error: string }> {
  const standIn =
    provider === 'live'
      ? await startLiveStandIn({ scenario: parallelEligibilityScenario }).then((s) => ({ env: { PROVIDER: 'live', OPENAI_MODEL: 'gpt-live-1.1', OPENAI_BASE_URL: s.url, OPENAI_API_KEY: 'demo-key' }, close: () => s.close() }))
      : await startPipelineStandIns({ scenario: parallelEligibilityScenario });
  let app: Callbridge | undefined;
  try {
    const config = loadConfig({
      LOG_LEVEL: 'warn',
      ...env,
      CALLBRIDGE_DB: realtime.dbPath,
      PORT: '0',
      HOST: '127.0.0.1',
      PUBLIC_URL: publicUrl,
      ...standIn.env,
      TWILIO_AUTH_TOKEN: authToken,
      AGENT_FILE: agentFile,
      // The pipeline is µ-law end to end (config.ts refuses transcode for it).
      ...(provider === 'pipeline' ? { AUDIO_MODE: 'passthrough' } : mode ? { AUDIO_MODE: mode } : {}),
    });
    app = await startCallbridge(config, log);
    const result = await placeCall({
      baseUrl: `http://127.0.0.1:${app.port}`,
      publicUrl,
      authToken,
      from: provider === 'live' ? '+15550109100' : '+15550109200',
      to: '+15550100999',
      utterances: [{ durationMs: 2400 }, { durationMs: 1100 }],
    });
    await app.store.flush();
    return { ok: true, result, record: await app.store.get(result.callSid) };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  } finally {
    await app?.close();
    await standIn.close();
  }
}

/** Call 1 on each provider, side by side: what the caller waited, and what the call cost (the price table's list prices). */
function compareProviders(calls: [name: string, call: ProviderCall][]): string {
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length ? Math.round(s[Math.floor((s.length - 1) / 2)]!) : undefined;
  };
  const row = (name: string, c: { result: CallResult; record: CallRecord | undefined }) => {
    const minutes = (c.record?.durationMs ?? c.result.durationMs) / 60_000;
    const cost = c.record?.estimatedCostUsd;
    const perMin = cost !== undefined && minutes > 0 ? `$${(cost / minutes).toFixed(3)}/min` : '-';
    const u = c.record?.usage;
    const billed = u?.activeAudioSeconds !== undefined ? `, ${(u.activeAudioSeconds / 60).toFixed(2)} active min` : u?.pipeline ? `, ${stageCosts(u.pipeline, c.record?.model ?? undefined)}` : '';
    return `  ${name.padEnd(16)} turn latency (caller view) p50 ${median(c.result.turnLatenciesMs) ?? '-'} ms; cost $${cost?.toFixed(4) ?? '-'} (${perMin}${billed})`;
  };
  return `── call 1 on each provider (stand-ins; list prices) ─────────────\n${calls.map(([name, c]) => row(name, c)).join('\n')}\n\n`;
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

/** agents/demo.yaml beside the package: two folders up from src/cli (tsx, vitest), three from build/src/cli. */
function demoAgentFile(): string | undefined {
  for (const rel of ['../../agents/demo.yaml', '../../../agents/demo.yaml']) {
    const path = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(path)) return path;
  }
  return undefined;
}

/** A call that followed Twilio's call flow: its record, then what Twilio's side saw (verbs, dials, whispers, webhooks). */
function describeFlow(call: SimulatedCall, record: CallRecord | undefined, quiet: boolean, what: string): string {
  const leg = call.legs[0];
  const lines: string[] = leg ? describeCall(leg, record, quiet).trimEnd().split('\n') : [`── call ${call.callSid} ─────────────────────────────`, '  (no stream was opened)'];
  lines[0] = `${lines[0]} (${what})`;
  lines.push(`  Twilio's side: ${call.steps.map((s) => s.verb).join(' → ') || '-'}; call ended: ${call.ended}${call.error ? ` (${call.error})` : ''}`);
  for (const d of call.dials) {
    const name = d.target.url ? new URL(d.target.url).searchParams.get('target') : null;
    lines.push(`  dialled ${name ?? d.target.kind} at ${d.target.address}: ${d.status}${d.durationS !== undefined ? `, ${d.durationS} s` : ''}`);
    for (const w of d.whisper) lines.push(`  whisper to the person who answered: "${w}"`);
  }
  for (const s of call.said) lines.push(`  Twilio said to the caller: "${s}"`);
  lines.push(`  webhooks: ${call.webhooks.map((w) => `${w.kind} ${w.status}`).join(', ')}`);
  return `${lines.join('\n')}\n\n`;
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
