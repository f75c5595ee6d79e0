/**
 * `callbridge agent check FILE [--json]`: check one agent file and print what
 * the model will be given — name, model, voice, greeting, the full
 * instructions, every tool with its JSON Schema (HTTP tools: also url,
 * timeout, idempotent; header NAMES and where their values come from, never
 * a value), the control tools callbridge adds (transfer_call, end_call),
 * the transfer targets and the call policies.
 *
 * Exit 0: the file is good (tool headers naming env variables that are not
 * set are printed as warnings: `serve` would refuse to start without them).
 * Exit 1: the file is broken, every problem on its own line (stderr).
 * Exit 2: usage.
 */
import { loadAgentFile, missingHeaderEnv } from '../agent/load.js';
import type { Agent } from '../agent/types.js';
import { controlToolSpecs, type CallPolicies } from '../call/agent.js';
import { DEFAULT_MODEL } from '../config.js';
import { MockEligibilityBackend } from '../tools/backends.js';
import { createEligibilityTool } from '../tools/eligibility.js';
import type { HeaderSource, ToolDef, ToolSpec } from '../tools/spec.js';
import type { CliIO } from './io.js';

const USAGE = 'usage: callbridge agent check <agent file (.yaml, .yml, .json)> [--json]\n';

export async function run(args: string[], io: CliIO): Promise<number> {
  const [sub, ...rest] = args;
  const fail = (code: number, msg: string) => {
    io.stderr.write(`callbridge agent: ${msg}\n`);
    return code;
  };
  if (sub !== 'check') return fail(2, `expected check\n${USAGE}`);
  let json = false;
  const files: string[] = [];
  for (const a of rest) {
    if (a === '--json') json = true;
    else if (a.startsWith('--')) return fail(2, `unknown option ${a}\n${USAGE}`);
    else files.push(a);
  }
  if (files.length !== 1) return fail(2, `check takes one file\n${USAGE}`);
  const file = files[0]!;

  const r = loadAgentFile(file);
  if (!r.ok) {
    if (json) io.stdout.write(`${JSON.stringify({ ok: false, file, problems: r.problems }, null, 2)}\n`);
    io.stderr.write(`${file}: ${r.problems.length} problem${r.problems.length === 1 ? '' : 's'}\n${r.problems.map((p) => `${p}\n`).join('')}`);
    return 1;
  }
  const agent = r.agent;
  const warnings = missingHeaderEnv(agent, io.env).map((w) => `${w} (serve refuses to start without it)`);
  const model = agent.model ?? (io.env.OPENAI_MODEL || DEFAULT_MODEL);
  const tools = agent.tools.map(toolView);
  const control = controlToolSpecs(agent.policies);
  if (json) {
    io.stdout.write(
      `${JSON.stringify(
        {
          ok: true,
          file: agent.file,
          name: agent.name,
          model,
          reasoningEffort: agent.reasoningEffort ?? null,
          voice: agent.voice,
          greeting: agent.greeting,
          instructions: agent.instructions,
          vad: agent.vad,
          tools,
          controlTools: control,
          policies: { ...agent.policies, recording: recordingSummary(agent.policies.recording) },
          outbound: agent.outbound,
          warnings,
        },
        null,
        2,
      )}\n`,
    );
  } else {
    io.stdout.write(formatAgent(agent, model, tools, control));
  }
  if (warnings.length > 0) io.stderr.write(`warnings:\n${warnings.map((w) => `  ${w}\n`).join('')}`);
  return 0;
}

/** A tool as the check shows it: its spec (what the model sees) and, for HTTP tools, where it goes — never a header's value. */
interface ToolView extends ToolSpec {
  kind: ToolDef['kind'];
  http?: {
    url: string;
    timeoutMs: number;
    idempotent: boolean;
    retries: number;
    headers: Record<string, { env: string; prefix?: string } | 'set in the file'>;
    filler: string | undefined;
    recordFields: string[];
    sendCallerNumber: boolean;
  };
}

function toolView(t: ToolDef): ToolView {
  if (t.kind === 'builtin') {
    // The built-in's spec is what the model sees; the back end (ELIGIBILITY_*) is not needed to show it.
    const spec = createEligibilityTool(new MockEligibilityBackend());
    return { kind: 'builtin', name: spec.name, description: spec.description, parameters: spec.parameters };
  }
  const headers: Record<string, { env: string; prefix?: string } | 'set in the file'> = {};
  for (const [name, source] of Object.entries(t.headers)) headers[name] = headerView(source);
  return {
    kind: 'http',
    name: t.name,
    description: t.description,
    parameters: t.parameters,
    http: {
      url: t.url,
      timeoutMs: t.timeoutMs,
      idempotent: t.idempotent,
      retries: t.idempotent ? t.retries : 0,
      headers,
      filler: t.filler,
      recordFields: t.recordFields,
      sendCallerNumber: t.sendCallerNumber,
    },
  };
}

const headerView = (s: HeaderSource) => ('env' in s ? (s.prefix !== undefined ? { env: s.env, prefix: s.prefix } : { env: s.env }) : ('set in the file' as const));

const indent = (text: string, by = '    ') => text.split('\n').map((l) => `${by}${l}`).join('\n');
const ms = (n: number | undefined) => (n === undefined ? 'default' : `${n} ms`);

function formatAgent(a: Agent, model: string, tools: ToolView[], control: ToolSpec[]): string {
  const out: string[] = [];
  out.push(`agent ${a.name}   (${a.file})`);
  out.push(`model ${model}${a.model ? '' : ' (OPENAI_MODEL or its default)'}   reasoning effort ${a.reasoningEffort ?? "the model's default"}   voice ${a.voice}`);
  out.push(`turn detection: threshold ${a.vad.threshold ?? 'default'}, prefix padding ${ms(a.vad.prefixPaddingMs)}, silence ${ms(a.vad.silenceDurationMs)}`);
  out.push(`greeting: ${a.greeting || '(none: the agent waits for the caller)'}`);
  out.push('', 'instructions:', indent(a.instructions, '  '));
  out.push('', `tools (${tools.length}):`);
  for (const t of tools) {
    if (t.http) {
      const h = t.http;
      const headers = Object.entries(h.headers).map(([n, s]) => `${n} (${s === 'set in the file' ? s : `env ${s.env}`})`);
      out.push(`  ${t.name}   HTTP POST ${h.url}`);
      out.push(`    timeout ${h.timeoutMs} ms, ${h.idempotent ? `idempotent (${h.retries} retries)` : 'not idempotent (never retried)'}${headers.length ? `, headers: ${headers.join(', ')}` : ''}`);
      out.push(`    record fields: ${h.recordFields.length ? h.recordFields.join(', ') : 'none'}, caller number ${h.sendCallerNumber ? 'sent' : 'not sent'}${h.filler ? `, filler: ${h.filler}` : ''}`);
    } else {
      out.push(`  ${t.name}   built-in`);
    }
    out.push(`    ${t.description}`, '    parameters:', indent(JSON.stringify(t.parameters, null, 2), '      '));
  }
  out.push('', `control tools (${control.length}):`);
  if (control.length === 0) out.push('  none (no transfer targets; end_call not enabled)');
  for (const c of control) out.push(`  ${c.name}`, `    ${c.description}`, '    parameters:', indent(JSON.stringify(c.parameters, null, 2), '      '));
  out.push('', ...formatPolicies(a.policies), ...formatOutbound(a));
  return `${out.join('\n')}\n`;
}

function formatPolicies(p: CallPolicies): string[] {
  const out: string[] = [];
  const t = p.transfer;
  if (t) {
    out.push('transfer targets:');
    for (const x of t.targets) {
      const to = 'number' in x.to ? x.to.number : x.to.sip;
      const marks = [x.name === t.defaultTarget ? 'default' : '', x.name === t.defaultTarget && t.keypadDigit ? `keypad ${t.keypadDigit}` : ''].filter(Boolean);
      out.push(`  ${x.name} → ${to}${marks.length ? ` (${marks.join(', ')})` : ''}${x.whisper ? `   whisper: ${x.whisper}` : ''}`);
    }
    out.push(
      `  dial timeout ${t.dialTimeoutS} s; handoff wait ${t.handoffWaitMs} ms; on a failed dial: ${t.onFailure.action === 'agent' ? 'back to the agent' : `say "${t.onFailure.message}" and hang up`}`,
    );
  } else {
    out.push('transfer: none');
  }
  out.push(`end_call: ${p.endCall.enabled ? `enabled, goodbye wait ${p.endCall.goodbyeWaitMs} ms` : 'disabled'}`);
  const s = p.silence;
  out.push(
    `silence: ${s.repromptAfterMs === undefined ? 'no reprompt' : `reprompt after ${s.repromptAfterMs} ms, at most ${s.maxReprompts} ("${s.reprompt}")`}; the call ends after ${s.timeoutMs} ms`,
  );
  const m = p.maxDuration;
  out.push(`max duration: ${m.maxCallMs} ms${m.warnBeforeMs === undefined ? ', no warning' : `, warning ${m.warnBeforeMs} ms before ("${m.warning}")`}`);
  const r = recordingSummary(p.recording);
  out.push(
    `recording: ${r.enabled === null ? "as RECORDING says (off unless RECORDING=on)" : r.enabled ? 'on' : 'off'}; disclosure ${r.disclosureMs === null ? 'none' : `${r.disclosureMs} ms before the greeting`}; opt-out ${r.optOutDigit ? `key ${r.optOutDigit}` : 'none'}`,
  );
  return out;
}

/** The recording policy as `agent check` shows it (the disclosure by its length, not its bytes). */
function recordingSummary(r: Agent['policies']['recording']): { enabled: boolean | null; disclosureMs: number | null; optOutDigit: string | null } {
  return { enabled: r.enabled ?? null, disclosureMs: r.disclosure ? Math.round(r.disclosure.length / 8) : null, optOutDigit: r.optOutDigit ?? null };
}

function formatOutbound(a: Agent): string[] {
  const o = a.outbound;
  return [
    `outbound: caller id ${o.callerId ?? 'OUTBOUND_FROM'}; voicemail: ${o.voicemail.action === 'hangup' ? 'hang up' : `leave "${o.voicemail.message}"`}; allow ${o.allow.length ? o.allow.join(', ') : 'any'}; deny ${o.deny.length ? o.deny.join(', ') : 'none'}`,
  ];
}
