/**
 * Read one agent file (YAML: .yaml/.yml, JSON: .json) into an Agent.
 *
 * Contract: `loadAgentFile(path)` never throws. It returns the Agent, every
 * default filled in, or EVERY problem of the file at once, each prefixed
 * with its path in the file (`tools[1].url: not an https URL …`). A file
 * that cannot be read or parsed is one problem, with the line where the
 * parser gives one. `instructions_file` and `recording.disclosure_file` are
 * read relative to the agent file.
 * Environment variables named by tool headers are not read here (the file is
 * checked alone); `missingHeaderEnv` lists those a given environment lacks.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { compileArguments } from '../tools/http-tool.js';
import { parseDocument } from 'yaml';
import { CONTROL_TOOLS, type CallPolicies, type TransferPolicy } from '../call/agent.js';
import { loadPrompt } from '../call/prompts.js';
import type { ToolDef } from '../tools/spec.js';
import {
  AgentFileSchema,
  BuiltinToolSchema,
  HttpToolSchema,
  formatPath,
  issueProblems,
  type AgentFile,
} from './schema.js';
import type { Agent, OutboundPolicy } from './types.js';

export type AgentLoadResult = { ok: true; agent: Agent } | { ok: false; problems: string[] };

/** agents/NAME.yaml under the nearest ancestor holding package.json: the same from src/ (vitest) and build/src/ (built). */
export function shippedAgentPath(name: string): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'agents', `${name}.yaml`);
    const parent = dirname(dir);
    if (parent === dir) return resolve('agents', `${name}.yaml`);
    dir = parent;
  }
}

export function loadAgentFile(path: string): AgentLoadResult {
  const file = resolve(path);
  const raw = readStructured(file);
  if (!raw.ok) return raw;
  return agentFromData(raw.data, file);
}

/** Check parsed file content (already read from `file`, which instructions_file is relative to). */
export function agentFromData(data: unknown, file: string): AgentLoadResult {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    return { ok: false, problems: [`(file): expected a mapping of keys (name, instructions, …), found ${data === null ? 'nothing' : Array.isArray(data) ? 'a list' : typeof data}`] };
  }
  const problems: string[] = [];
  const parsed = AgentFileSchema.safeParse(data);
  if (!parsed.success) problems.push(...issueProblems(parsed.error.issues));

  // Cross-field checks read the raw data defensively, so they run even where the schema failed elsewhere.
  const obj = data as Record<string, unknown>;
  const instructions = readInstructions(obj, file, problems);
  const tools = checkTools(obj.tools, problems);
  checkTransfer(obj.transfer, problems);
  checkLimits(obj, problems);
  const disclosure = readDisclosure(obj.recording, file, problems);
  checkKeys(obj, problems);

  if (problems.length > 0 || !parsed.success || instructions === undefined || tools === undefined) {
    return { ok: false, problems: problems.length > 0 ? problems : ['(file): invalid'] };
  }
  return { ok: true, agent: toAgent(parsed.data, file, instructions, tools, disclosure) };
}

/** The environment variables the agent's tool headers name that `env` does not set (or sets empty), as problems with their paths. */
export function missingHeaderEnv(agent: Agent, env: NodeJS.ProcessEnv): string[] {
  const out: string[] = [];
  agent.tools.forEach((t, i) => {
    if (t.kind !== 'http') return;
    for (const [header, source] of Object.entries(t.headers)) {
      if ('env' in source && !env[source.env]) out.push(`tools[${i}].headers.${header}.env: ${source.env} is not set`);
    }
  });
  return out;
}

type Structured = { ok: true; data: unknown } | { ok: false; problems: string[] };

function readStructured(file: string): Structured {
  const ext = extname(file).toLowerCase();
  if (!['.yaml', '.yml', '.json'].includes(ext)) {
    return { ok: false, problems: [`(file): ${file} must end in .yaml, .yml or .json`] };
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return { ok: false, problems: [`(file): cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`] };
  }
  if (ext === '.json') {
    try {
      return { ok: true, data: JSON.parse(text) as unknown };
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      const pos = /at position (\d+)/.exec(msg);
      const line = pos && !/line \d+/.test(msg) ? ` (line ${text.slice(0, Number(pos[1])).split('\n').length})` : '';
      return { ok: false, problems: [`(file): not valid JSON: ${msg}${line}`] };
    }
  }
  // prettyErrors: the message names the line and column ("… at line 3, column 1:").
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  const err = doc.errors[0];
  if (err) return { ok: false, problems: [`(file): not valid YAML: ${err.message.split('\n')[0]!.replace(/:$/, '')}`] };
  try {
    return { ok: true, data: doc.toJS({ maxAliasCount: 100 }) as unknown };
  } catch (e) {
    return { ok: false, problems: [`(file): not valid YAML: ${e instanceof Error ? e.message : String(e)}`] };
  }
}

function readInstructions(obj: Record<string, unknown>, file: string, problems: string[]): string | undefined {
  const inline = obj.instructions;
  const ref = obj.instructions_file;
  if (inline !== undefined && ref !== undefined) {
    problems.push('instructions_file: set instructions or instructions_file, not both');
    return undefined;
  }
  if (inline === undefined && ref === undefined) {
    problems.push('instructions: required (or instructions_file: a file of instructions, relative to this one)');
    return undefined;
  }
  if (typeof inline === 'string') return inline.trim() || undefined; // emptiness is the schema's problem
  if (typeof ref !== 'string' || !ref.trim()) return undefined;
  const path = resolve(dirname(file), ref.trim());
  try {
    const text = readFileSync(path, 'utf8').trim();
    if (!text) problems.push(`instructions_file: ${path} is empty`);
    return text || undefined;
  } catch (err) {
    problems.push(`instructions_file: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    return undefined;
  }
}

/** recording.disclosure_file, read relative to the agent file and checked as a prompt (call/prompts.ts). */
function readDisclosure(value: unknown, file: string, problems: string[]): Uint8Array | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const ref = (value as Record<string, unknown>).disclosure_file;
  if (typeof ref !== 'string' || !ref.trim()) return undefined;
  const r = loadPrompt(resolve(dirname(file), ref.trim()));
  if (!r.ok) {
    problems.push(`recording.disclosure_file: ${r.error}`);
    return undefined;
  }
  return r.prompt.ulaw;
}

/** One keypad digit, one meaning: the transfer escape and the recording opt-out may not share a digit. */
function checkKeys(obj: Record<string, unknown>, problems: string[]): void {
  const key = (o: unknown, k: string) => {
    const v = typeof o === 'object' && o !== null ? (o as Record<string, unknown>)[k] : undefined;
    return typeof v === 'string' || typeof v === 'number' ? String(v) : undefined;
  };
  const transferKey = key(obj.transfer, 'keypad_digit');
  const optOut = key(obj.recording, 'opt_out_digit');
  if (transferKey !== undefined && transferKey === optOut) {
    problems.push(`recording.opt_out_digit: ${JSON.stringify(optOut)} is already transfer.keypad_digit (one digit, one meaning)`);
  }
}

const ajv = new Ajv2020({ strict: false, allErrors: true, validateSchema: true });

/** A JSON Schema draft 2020-12 object schema the tool's arguments are checked against; its problems at their paths. */
function schemaProblems(schema: unknown, at: string): string[] {
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) return []; // the shape check says so
  const s = schema as Record<string, unknown>;
  const out: string[] = [];
  if (s.type !== 'object') out.push(`${at}.type: must be object (a tool's arguments are an object)`);
  if (!ajv.validateSchema(s)) {
    const seen = new Set<string>();
    for (const e of ajv.errors ?? []) {
      const path = `${at}${e.instancePath.split('/').slice(1).map((k) => (/^\d+$/.test(k) ? `[${k}]` : `.${k}`)).join('')}`;
      if (seen.has(path)) continue; // anyOf alternatives repeat the same place; the first says it
      seen.add(path);
      const allowed = (e.params as { allowedValues?: unknown[] }).allowedValues;
      out.push(`${path}: not valid JSON Schema 2020-12: ${e.message ?? 'invalid'}${allowed ? ` (${allowed.join(', ')})` : ''}`);
    }
    return out;
  }
  // Compiled exactly as the tool will compile it at start-up (its formats, its strictness): a file that passes here starts.
  const compiled = compileArguments(s);
  if (!compiled.ok) out.push(`${at}: does not compile as JSON Schema 2020-12: ${compiled.problem}`);
  return out;
}

/** Each tool against the schema its keys ask for (`builtin:` or an HTTP tool), plus names: valid, unique, not a control tool's. */
function checkTools(value: unknown, problems: string[]): ToolDef[] | undefined {
  if (value === undefined) return [];
  if (!Array.isArray(value)) return undefined; // the shape check says so
  const tools: ToolDef[] = [];
  const firstAt = new Map<string, number>();
  let ok = true;
  value.forEach((entry, i) => {
    if (typeof entry === 'string') {
      problems.push(`tools[${i}]: a tool is a mapping: \`- builtin: ${entry}\` for a built-in, or an HTTP tool (name, description, url, …)`);
      ok = false;
      return;
    }
    const isBuiltin = typeof entry === 'object' && entry !== null && 'builtin' in entry;
    let name: string | undefined;
    if (isBuiltin) {
      const r = BuiltinToolSchema.safeParse(entry);
      if (!r.success) {
        problems.push(...issueProblems(r.error.issues, ['tools', i]));
        ok = false;
        return;
      }
      name = r.data.builtin;
      tools.push({ kind: 'builtin', name: r.data.builtin });
    } else {
      const r = HttpToolSchema.safeParse(entry);
      const raw = (typeof entry === 'object' && entry !== null ? entry : {}) as Record<string, unknown>;
      const sp = schemaProblems(raw.parameters, `tools[${i}].parameters`);
      problems.push(...sp);
      if (typeof raw.name === 'string') name = raw.name;
      if (!r.success) {
        problems.push(...issueProblems(r.error.issues, ['tools', i]));
        ok = false;
      } else if (sp.length === 0) {
        const t = r.data;
        tools.push({
          kind: 'http',
          name: t.name,
          description: t.description,
          parameters: t.parameters,
          url: t.url,
          headers: t.headers,
          timeoutMs: t.timeout_ms,
          idempotent: t.idempotent,
          retries: t.retries,
          filler: t.filler,
          recordFields: t.record_fields,
          sendCallerNumber: t.send_caller_number,
        });
      } else {
        ok = false;
      }
    }
    if (name === undefined) return;
    const where = formatPath(['tools', i, isBuiltin ? 'builtin' : 'name']);
    if (CONTROL_TOOLS.includes(name)) {
      problems.push(`${where}: ${name} is a control tool callbridge adds itself (use transfer: or end_call: instead)`);
      ok = false;
    }
    const first = firstAt.get(name);
    if (first !== undefined) {
      problems.push(`${where}: ${JSON.stringify(name)} is already the name of tools[${first}]`);
      ok = false;
    } else firstAt.set(name, i);
  });
  return ok ? tools : undefined;
}

function checkTransfer(value: unknown, problems: string[]): void {
  if (typeof value !== 'object' || value === null) return;
  const t = value as Record<string, unknown>;
  if (!Array.isArray(t.targets)) return;
  const names: string[] = [];
  const firstAt = new Map<string, number>();
  t.targets.forEach((target, i) => {
    if (typeof target !== 'object' || target === null) return;
    const x = target as Record<string, unknown>;
    const hasNumber = x.number !== undefined;
    const hasSip = x.sip !== undefined;
    if (hasNumber === hasSip) problems.push(`transfer.targets[${i}]: set exactly one of number or sip`);
    if (typeof x.name !== 'string') return;
    names.push(x.name);
    const first = firstAt.get(x.name);
    if (first !== undefined) problems.push(`transfer.targets[${i}].name: ${JSON.stringify(x.name)} is already the name of transfer.targets[${first}]`);
    else firstAt.set(x.name, i);
  });
  if (typeof t.default === 'string' && !names.includes(t.default)) {
    problems.push(`transfer.default: ${JSON.stringify(t.default)} is not one of the targets (${names.join(', ')})`);
  }
}

/** Limits that only mean something together. */
function checkLimits(obj: Record<string, unknown>, problems: string[]): void {
  const num = (o: unknown, k: string) =>
    typeof o === 'object' && o !== null && typeof (o as Record<string, unknown>)[k] === 'number' ? ((o as Record<string, unknown>)[k] as number) : undefined;
  const repromptAfter = num(obj.silence, 'reprompt_after_ms');
  const silenceTimeout = num(obj.silence, 'timeout_ms') ?? 300_000;
  if (repromptAfter !== undefined && repromptAfter >= silenceTimeout) {
    problems.push(`silence.reprompt_after_ms: ${repromptAfter} is not less than silence.timeout_ms (${silenceTimeout}): the call would end first`);
  }
  const warnBefore = num(obj.max_duration, 'warn_before_ms');
  const maxCall = num(obj.max_duration, 'max_call_ms') ?? 3_600_000;
  if (warnBefore !== undefined && warnBefore >= maxCall) {
    problems.push(`max_duration.warn_before_ms: ${warnBefore} is not less than max_duration.max_call_ms (${maxCall})`);
  }
}

function toAgent(f: AgentFile, file: string, instructions: string, tools: ToolDef[], disclosure: Uint8Array | undefined): Agent {
  let transfer: TransferPolicy | undefined;
  if (f.transfer) {
    const t = f.transfer;
    transfer = {
      targets: t.targets.map((x) => ({
        name: x.name,
        description: x.description,
        to: x.number !== undefined ? { number: x.number } : { sip: x.sip! },
        whisper: x.whisper,
      })),
      defaultTarget: t.default ?? t.targets[0]!.name,
      keypadDigit: t.keypad_digit,
      dialTimeoutS: t.dial_timeout_s,
      onFailure: t.on_failure === 'agent' ? { action: 'agent' } : { action: 'message', message: t.on_failure.message },
      handoffWaitMs: t.handoff_wait_ms,
    };
  }
  const policies: CallPolicies = {
    transfer,
    endCall: { enabled: f.end_call.enabled, goodbyeWaitMs: f.end_call.goodbye_wait_ms },
    silence: {
      repromptAfterMs: f.silence.reprompt_after_ms,
      reprompt: f.silence.reprompt,
      maxReprompts: f.silence.max_reprompts,
      timeoutMs: f.silence.timeout_ms,
    },
    maxDuration: {
      maxCallMs: f.max_duration.max_call_ms,
      warnBeforeMs: f.max_duration.warn_before_ms,
      warning: f.max_duration.warning,
    },
    recording: { enabled: f.recording.enabled, disclosure, optOutDigit: f.recording.opt_out_digit },
  };
  const o = f.outbound;
  const outbound: OutboundPolicy = {
    callerId: o.caller_id,
    voicemail: o.voicemail === 'hangup' ? { action: 'hangup' } : { action: 'message', message: o.voicemail.message },
    allow: o.allow,
    deny: o.deny,
  };
  return {
    name: f.name,
    file,
    instructions,
    greeting: f.greeting,
    voice: f.voice,
    provider: f.provider,
    model: f.model,
    reasoningEffort: f.reasoning_effort,
    vad: { threshold: f.turn.vad_threshold, prefixPaddingMs: f.turn.prefix_padding_ms, silenceDurationMs: f.turn.silence_duration_ms },
    tools,
    policies,
    outbound,
  };
}
