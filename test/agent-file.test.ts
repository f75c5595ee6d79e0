/**
 * The agent file (issue 16): loading YAML and JSON, every problem listed at
 * once with its path, the shipped default reproducing today's line, the
 * environment's overrides (default agent only), AGENT_FILE's list, and
 * `callbridge agent check`.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadAgentFile, missingHeaderEnv } from '../src/agent/load.js';
import { main } from '../src/cli/main.js';
import { ConfigError, DEFAULT_AGENT_FILE, DEMO_AGENT_FILE, loadConfig } from '../src/config.js';
import { memoryIO } from './helpers/cli-io.js';

const FIX = resolve('test/fixtures/agents');
const fixture = (name: string) => join(FIX, name);

/** Today's line, written out here so the shipped file cannot drift from it unnoticed. */
const TODAY_INSTRUCTIONS = [
  'You are the voice assistant of an insurance eligibility line, speaking with a caller on the phone.',
  'Keep every answer short and natural: one or two sentences, no lists, no markdown.',
  'To check coverage you need the member ID and the date of birth. Ask for whichever is missing, one at a time',
  '("Can I get the Member ID?" ... "And the date of birth?"), read the ID back if unsure, then call check_eligibility.',
  'If a tool reports trouble accessing the system, apologise briefly and offer to try again or take a message.',
  'Never invent coverage details; only speak what the tool returned.',
].join(' ');
const TODAY_GREETING = 'Greet the caller: "Thanks for calling the eligibility line. How can I help you today?"';

function tmpFile(name: string, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'agent-file-'));
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('loadAgentFile', () => {
  it('lists every problem of a broken file at once, each at its path', () => {
    const r = loadAgentFile(fixture('broken.yaml'));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const expected = [
      'name: must be 1–40 of a-z, 0-9, _ or -',
      'voise: unknown key',
      'tools[1].url: "http://claims.example.com/lookup" is not an https URL (plain http only to localhost, 127.0.0.1 or [::1])',
      'tools[1].timeout_ms: must be at least 50',
      'tools[1].parameters.properties.id.type: not valid JSON Schema 2020-12: must be equal to one of the allowed values (array, boolean, integer, null, number, object, string)',
      'tools[2].name: "lookup_claim" is already the name of tools[1]',
      'tools[3].name: transfer_call is a control tool callbridge adds itself (use transfer: or end_call: instead)',
      'tools[3].headers.Authorization: must be { value: "…" } or { env: NAME, prefix: "…" } (secrets from the environment)',
      'transfer.targets[0].number: write it in quotes ("+15551230000"): unquoted, YAML reads a phone number as a number',
      'transfer.targets[1]: set exactly one of number or sip',
      'transfer.default: "sales" is not one of the targets (billing, claims)',
      'transfer.keypad_digit: must be one of 0-9, * or # (quote * and #)',
      'end_call.enabled: must be a boolean (found string)',
    ];
    expect([...r.problems].sort()).toEqual([...expected].sort());
  });

  it('the shipped default agent is today\'s eligibility line, exactly', () => {
    const r = loadAgentFile(DEFAULT_AGENT_FILE);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.agent).toEqual({
      name: 'eligibility',
      file: DEFAULT_AGENT_FILE,
      instructions: TODAY_INSTRUCTIONS,
      greeting: TODAY_GREETING,
      voice: 'marin',
      model: undefined,
      reasoningEffort: undefined,
      vad: { threshold: undefined, prefixPaddingMs: undefined, silenceDurationMs: undefined },
      tools: [{ kind: 'builtin', name: 'check_eligibility' }],
      policies: {
        transfer: undefined,
        endCall: { enabled: false, goodbyeWaitMs: 5000 },
        silence: { repromptAfterMs: undefined, reprompt: 'Ask briefly whether the caller is still on the line.', maxReprompts: 1, timeoutMs: 300_000 },
        maxDuration: { maxCallMs: 3_600_000, warnBeforeMs: undefined, warning: 'Tell the caller politely the call must end in about a minute.' },
        recording: { enabled: undefined, disclosure: undefined, optOutDigit: undefined },
      },
      outbound: { callerId: undefined, voicemail: { action: 'hangup' }, allow: [], deny: [] },
    });
    // And loadConfig({}) serves it as before: the same instructions, greeting, voice, model, VAD and timeouts.
    const c = loadConfig({});
    expect(c.openai).toMatchObject({
      instructions: TODAY_INSTRUCTIONS,
      greeting: TODAY_GREETING,
      voice: 'marin',
      model: 'gpt-realtime',
      reasoningEffort: undefined,
      vad: { threshold: 0.5, prefixPaddingMs: 300, silenceDurationMs: 500 },
    });
    expect([c.silenceTimeoutMs, c.maxCallMs]).toEqual([300_000, 3_600_000]);
    expect(c.agents.map((a) => a.name)).toEqual(['eligibility']);
  });

  it('the demo agent adds member_services (keypad 0, whisper) and end_call', () => {
    const r = loadAgentFile(DEMO_AGENT_FILE);
    expect(DEMO_AGENT_FILE).toBe(resolve('agents/demo.yaml'));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.agent.policies.transfer).toEqual({
      targets: [{ name: 'member_services', description: expect.any(String), to: { number: '+15550100200' }, whisper: 'Eligibility line caller.' }],
      defaultTarget: 'member_services',
      keypadDigit: '0',
      dialTimeoutS: 20,
      onFailure: { action: 'agent' },
      handoffWaitMs: 8000,
    });
    expect(r.agent.policies.endCall).toEqual({ enabled: true, goodbyeWaitMs: 5000 });
    expect(r.agent.greeting).toBe(TODAY_GREETING);
    expect(r.agent.instructions.startsWith(TODAY_INSTRUCTIONS)).toBe(true);
  });

  it('reads instructions_file relative to the agent file, not the working directory', () => {
    const r = loadAgentFile(fixture('with-file.yaml'));
    expect(r).toMatchObject({ ok: true, agent: { name: 'with_file', instructions: 'You answer questions about opening hours.\nKeep it short.', greeting: '', voice: 'marin' } });
    const missing = tmpFile('a.yaml', 'name: a\ninstructions_file: prompts/short.md\n');
    const m = loadAgentFile(missing);
    expect(m.ok).toBe(false);
    expect(!m.ok && m.problems).toEqual([expect.stringMatching(/^instructions_file: cannot read .*prompts\/short\.md \(ENOENT\)$/)]);
    const both = loadAgentFile(tmpFile('b.yaml', 'name: b\ninstructions: x\ninstructions_file: y.md\n'));
    expect(!both.ok && both.problems).toEqual(['instructions_file: set instructions or instructions_file, not both']);
    const neither = loadAgentFile(tmpFile('c.yaml', 'name: c\n'));
    expect(!neither.ok && neither.problems).toEqual([expect.stringMatching(/^instructions: required/)]);
  });

  it('reads JSON as well as YAML, HTTP tools with their defaults filled in', () => {
    const r = loadAgentFile(fixture('second.json'));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.agent).toMatchObject({ name: 'second', voice: 'cedar', greeting: '' });
    expect(r.agent.tools).toEqual([
      {
        kind: 'http',
        name: 'hours',
        description: 'Opening hours of a branch.',
        parameters: { type: 'object', properties: { branch: { type: 'string' } }, required: ['branch'] },
        url: 'http://127.0.0.1:9/hours',
        headers: { 'X-Api-Key': { env: 'HOURS_API_KEY' } },
        timeoutMs: 3000,
        idempotent: true,
        retries: 2,
        filler: undefined,
        recordFields: [],
        sendCallerNumber: false,
      },
    ]);
    expect(r.agent.policies.silence.repromptAfterMs).toBe(15_000);
    expect(r.agent.policies.maxDuration).toMatchObject({ maxCallMs: 600_000, warnBeforeMs: 60_000 });
    expect(missingHeaderEnv(r.agent, {})).toEqual(['tools[0].headers.X-Api-Key.env: HOURS_API_KEY is not set']);
    expect(missingHeaderEnv(r.agent, { HOURS_API_KEY: 'k' })).toEqual([]);
  });

  it('a file that cannot be read or parsed is one problem, with its line', () => {
    const y = loadAgentFile(fixture('bad-syntax.yaml'));
    expect(!y.ok && y.problems).toEqual([expect.stringMatching(/^\(file\): not valid YAML: .* at line 4, column 1$/)]);
    const j = loadAgentFile(fixture('bad-syntax.json'));
    expect(!j.ok && j.problems).toEqual([expect.stringMatching(/^\(file\): not valid JSON: .*line 4/)]);
    const none = loadAgentFile(fixture('does-not-exist.yaml'));
    expect(!none.ok && none.problems).toEqual([expect.stringMatching(/^\(file\): cannot read .*does-not-exist\.yaml \(ENOENT\)$/)]);
    const ext = loadAgentFile(tmpFile('agent.toml', 'name = "x"'));
    expect(!ext.ok && ext.problems).toEqual([expect.stringMatching(/must end in \.yaml, \.yml or \.json$/)]);
    const list = loadAgentFile(tmpFile('list.yaml', '- name: x\n'));
    expect(!list.ok && list.problems).toEqual(['(file): expected a mapping of keys (name, instructions, …), found a list']);
  });

  it('unknown keys are problems at every depth', () => {
    const r = loadAgentFile(
      tmpFile(
        'keys.yaml',
        [
          'name: k',
          'instructions: x',
          'turn: { vad_threshold: 0.4, silence_ms: 300 }',
          'tools:',
          '  - builtin: check_eligibility',
          '    timeout_ms: 100',
          '  - { name: t, description: d, url: "https://t.example.com/", retry: 3 }',
          '  - check_eligibility',
          'transfer: { targets: [{ name: a, description: A, number: "+15551230000", phone: "+1555" }] }',
          'outbound: { voicemail: leave_message }',
        ].join('\n'),
      ),
    );
    expect(!r.ok && [...r.problems].sort()).toEqual(
      [
        'turn.silence_ms: unknown key',
        'tools[0].timeout_ms: unknown key',
        'tools[1].retry: unknown key',
        'transfer.targets[0].phone: unknown key',
        'outbound.voicemail: must be hangup or { message: "…" }',
        'tools[2]: a tool is a mapping: `- builtin: check_eligibility` for a built-in, or an HTTP tool (name, description, url, …)',
      ].sort(),
    );
  });

  it('limits that only mean something together, and SIP targets', () => {
    const r = loadAgentFile(
      tmpFile(
        'limits.yaml',
        [
          'name: l',
          'instructions: x',
          'silence: { reprompt_after_ms: 400000 }',
          'max_duration: { max_call_ms: 60000, warn_before_ms: 60000 }',
          'transfer: { targets: [{ name: pbx, description: PBX, sip: "sip:desk@pbx.example.com" }], keypad_digit: 0, on_failure: { message: Bye. } }',
        ].join('\n'),
      ),
    );
    expect(!r.ok && r.problems).toEqual([
      'silence.reprompt_after_ms: 400000 is not less than silence.timeout_ms (300000): the call would end first',
      'max_duration.warn_before_ms: 60000 is not less than max_duration.max_call_ms (60000)',
    ]);
    const ok = loadAgentFile(tmpFile('sip.yaml', 'name: s\ninstructions: x\ntransfer: { targets: [{ name: pbx, description: PBX, sip: "sip:desk@pbx.example.com" }], keypad_digit: 0, on_failure: { message: Bye. } }\n'));
    expect(ok.ok && ok.agent.policies.transfer).toMatchObject({ targets: [{ to: { sip: 'sip:desk@pbx.example.com' } }], keypadDigit: '0', onFailure: { action: 'message', message: 'Bye.' } });
  });
});

describe('loadConfig and AGENT_FILE', () => {
  it('environment overrides apply to the first (default) agent only, and only when set', () => {
    const c = loadConfig({
      AGENT_FILE: `${fixture('with-file.yaml')}, ${fixture('second.json')}`,
      HOURS_API_KEY: 'k',
      INSTRUCTIONS: 'Overridden.',
      VOICE: 'alloy',
      GREETING: 'Say hi.',
      REASONING_EFFORT: 'low',
      VAD_THRESHOLD: '0.7',
      SILENCE_TIMEOUT_MS: '20000',
      MAX_CALL_MS: '120000',
    });
    expect(c.agents.map((a) => a.name)).toEqual(['with_file', 'second']);
    const [first, second] = c.agents;
    expect(first).toMatchObject({ instructions: 'Overridden.', voice: 'alloy', greeting: 'Say hi.', reasoningEffort: 'low', model: 'gpt-realtime' });
    expect(first!.vad).toEqual({ threshold: 0.7, prefixPaddingMs: undefined, silenceDurationMs: undefined });
    expect(first!.policies.silence.timeoutMs).toBe(20_000);
    expect(first!.policies.maxDuration.maxCallMs).toBe(120_000);
    expect(second).toMatchObject({ instructions: 'You are the second line.', voice: 'cedar', greeting: '', reasoningEffort: undefined, model: 'gpt-realtime' });
    expect(second!.policies.silence.timeoutMs).toBe(300_000);
    expect(second!.policies.maxDuration.maxCallMs).toBe(600_000);
    // The existing Config fields are the default agent's.
    expect(c.openai).toMatchObject({ instructions: 'Overridden.', voice: 'alloy', greeting: 'Say hi.', reasoningEffort: 'low', vad: { threshold: 0.7, prefixPaddingMs: 300, silenceDurationMs: 500 } });
    expect([c.silenceTimeoutMs, c.maxCallMs]).toEqual([20_000, 120_000]);
    // Unset (or empty) variables leave the file's values alone.
    const plain = loadConfig({ AGENT_FILE: fixture('second.json'), HOURS_API_KEY: 'k', VOICE: '' });
    expect(plain.openai).toMatchObject({ voice: 'cedar', greeting: '', instructions: 'You are the second line.' });
    expect(plain.maxCallMs).toBe(600_000);
  });

  it('lists the problems of every file in the one ConfigError, with the env ones, prefixed with the file', () => {
    const problems = problemsOf({ AGENT_FILE: `${fixture('broken.yaml')},${fixture('second.json')}`, PORT: 'eighty' });
    expect(problems.filter((p) => p.startsWith('PORT: '))).toHaveLength(1);
    expect(problems.filter((p) => p.startsWith(`AGENT_FILE (${fixture('broken.yaml')}): `))).toHaveLength(13);
    expect(problems).toContain(`AGENT_FILE (${fixture('second.json')}): tools[0].headers.X-Api-Key.env: HOURS_API_KEY is not set`);
    expect(problems).toContain(`AGENT_FILE (${fixture('broken.yaml')}): transfer.default: "sales" is not one of the targets (billing, claims)`);
  });

  it('agent names must be unique across AGENT_FILE', () => {
    const problems = problemsOf({ AGENT_FILE: `${DEFAULT_AGENT_FILE},${fixture('same-name.yaml')}` });
    expect(problems).toEqual([
      `AGENT_FILE (${fixture('same-name.yaml')}): name: "eligibility" is already the name of the agent in ${DEFAULT_AGENT_FILE}; agent names must be unique`,
    ]);
    expect(problemsOf({ AGENT_FILE: ' , ' })).toEqual([expect.stringMatching(/^AGENT_FILE: names no file/)]);
  });

  it('one model per process: OPENAI_MODEL, else the default agent\'s; another agent naming a different one is a problem', () => {
    const a = tmpFile('a.yaml', 'name: a\ninstructions: x\nmodel: gpt-realtime-2\n');
    const b = tmpFile('b.yaml', 'name: b\ninstructions: y\nmodel: gpt-realtime\n');
    const c = tmpFile('c.yaml', 'name: c\ninstructions: z\n');
    const fromFile = loadConfig({ AGENT_FILE: `${a},${c}` });
    expect(fromFile.openai.model).toBe('gpt-realtime-2');
    expect(fromFile.agents.map((x) => x.model)).toEqual(['gpt-realtime-2', 'gpt-realtime-2']);
    expect(problemsOf({ AGENT_FILE: `${a},${b}`, PORT: 'eighty' })).toEqual([expect.stringMatching(/^PORT: /), expect.stringMatching(/model: "gpt-realtime" is not the model/)]);
    expect(problemsOf({ AGENT_FILE: `${a},${b}` })).toEqual([expect.stringMatching(new RegExp(`^AGENT_FILE \\(${b.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\): model: "gpt-realtime" is not the model this process serves \\("gpt-realtime-2", from the default agent\\)`))]);
    // OPENAI_MODEL overrides the default agent's model; then b agrees and a is overridden.
    expect(loadConfig({ AGENT_FILE: `${a},${b}`, OPENAI_MODEL: 'gpt-realtime' }).openai.model).toBe('gpt-realtime');
  });

  it('a header naming an unset variable stops start-up; set, it does not', () => {
    expect(problemsOf({ AGENT_FILE: fixture('second.json') })).toEqual([
      `AGENT_FILE (${fixture('second.json')}): tools[0].headers.X-Api-Key.env: HOURS_API_KEY is not set`,
    ]);
    expect(problemsOf({ AGENT_FILE: fixture('second.json'), HOURS_API_KEY: 'secret' })).toEqual([]);
  });
});

describe('callbridge agent check', () => {
  it('prints what the model is given: instructions, tool schemas, transfer_call with its enum; header names, never values', async () => {
    const m = memoryIO({});
    expect(await main(['agent', 'check', 'agents/example.yaml'], m.io)).toBe(0);
    const out = m.out();
    expect(out).toContain('agent claims');
    expect(out).toContain('To look a claim up you need its claim number');
    expect(out).toContain('lookup_claim   HTTP POST https://claims.example.com/v1/lookup');
    expect(out).toContain('timeout 3000 ms, idempotent (2 retries), headers: Authorization (env CLAIMS_API_TOKEN)');
    expect(out).toContain('"pattern": "^[A-Z]{2}[0-9]{6}$"');
    expect(out).toContain('"member_id"');
    expect(out).toMatch(/transfer_call\n[^\n]*\n\s+parameters:\n[\s\S]*"enum": \[\n\s+"adjusters"\n\s+\]/);
    expect(out).toContain('  end_call\n');
    expect(out).toContain('adjusters → +15550100300 (default, keypad 0)');
    expect(out).not.toContain('callbridge"'); // X-Client's value stays out
    expect(out).toContain('X-Client (set in the file)');
    expect(m.err()).toContain('tools[1].headers.Authorization.env: CLAIMS_API_TOKEN is not set');
  });

  it('--json: the same as data; set header variables leave no warnings', async () => {
    const m = memoryIO({ CLAIMS_API_TOKEN: 'tok-123' });
    expect(await main(['agent', 'check', 'agents/example.yaml', '--json'], m.io)).toBe(0);
    const j = JSON.parse(m.out()) as Record<string, unknown> & { tools: { name: string; parameters: unknown; http?: { headers: unknown } }[]; controlTools: { name: string; parameters: { properties: { target?: { enum: string[] } } } }[]; warnings: string[] };
    expect(j).toMatchObject({ ok: true, name: 'claims', model: 'gpt-realtime', voice: 'marin' });
    expect(j.tools.map((t) => t.name)).toEqual(['check_eligibility', 'lookup_claim', 'book_callback']);
    expect(j.tools[2]!.http!.headers).toEqual({ Authorization: { env: 'CLAIMS_API_TOKEN', prefix: 'Bearer ' }, 'X-Client': 'set in the file' });
    expect(j.controlTools.map((t) => t.name)).toEqual(['transfer_call', 'end_call']);
    expect(j.controlTools[0]!.parameters.properties.target!.enum).toEqual(['adjusters']);
    expect(j.warnings).toEqual([]);
    expect(m.out()).not.toContain('tok-123');
    expect(m.err()).toBe('');
  });

  it('the shipped default has no control tools; a broken file exits 1 with every problem on its own line; usage exits 2', async () => {
    const d = memoryIO({});
    expect(await main(['agent', 'check', DEFAULT_AGENT_FILE], d.io)).toBe(0);
    expect(d.out()).toContain('control tools (0):');
    expect(d.out()).toContain('transfer: none');

    const b = memoryIO({});
    expect(await main(['agent', 'check', fixture('broken.yaml')], b.io)).toBe(1);
    const lines = b.err().trim().split('\n');
    expect(lines[0]).toBe(`${fixture('broken.yaml')}: 13 problems`);
    expect(lines).toHaveLength(14);
    expect(lines).toContain('transfer.default: "sales" is not one of the targets (billing, claims)');
    expect(lines).toContain('voise: unknown key');
    expect(b.out()).toBe('');

    const u = memoryIO({});
    expect(await main(['agent', 'check'], u.io)).toBe(2);
    expect(await main(['agent', 'lint', 'x.yaml'], u.io)).toBe(2);
    const help = memoryIO({});
    expect(await main(['--help'], help.io)).toBe(0);
    expect(help.out()).toContain('agent check FILE [--json]');
  });
});

describe('the recording block (issue 17)', () => {
  const KEY = 'ab'.repeat(32);
  const PROMPT = resolve('assets/prompts/recording-notice.ulaw');

  it('reads the disclosure relative to the agent file as a prompt, and the opt-out digit', () => {
    const path = tmpFile('rec.yaml', `name: r\ninstructions: x\nrecording: { enabled: true, disclosure_file: ${JSON.stringify(PROMPT)}, opt_out_digit: 9 }\n`);
    const r = loadAgentFile(path);
    expect(r.ok).toBe(true);
    const rec = r.ok ? r.agent.policies.recording : undefined;
    expect(rec?.enabled).toBe(true);
    expect(rec?.optOutDigit).toBe('9');
    expect(rec?.disclosure?.length).toBe(39299); // assets/prompts/VERSIONS.txt
  });

  it('a disclosure that is not a prompt, a bad digit, and a digit the transfer escape already has are problems at their paths', () => {
    const bad = tmpFile('notice.wav', 'not a wav file at all');
    const path = tmpFile(
      'rec.yaml',
      `name: r\ninstructions: x\ntransfer: { targets: [{ name: desk, description: Desk, number: "+15550100200" }], keypad_digit: "0" }\nrecording: { disclosure_file: ${JSON.stringify(bad)}, opt_out_digit: "0" }\n`,
    );
    const r = loadAgentFile(path);
    expect(r.ok).toBe(false);
    const problems = r.ok ? [] : r.problems;
    expect(problems.some((p) => p.startsWith('recording.disclosure_file: ') && p.includes(bad))).toBe(true);
    expect(problems).toContain('recording.opt_out_digit: "0" is already transfer.keypad_digit (one digit, one meaning)');
    const digit = loadAgentFile(tmpFile('d.yaml', 'name: r\ninstructions: x\nrecording: { opt_out_digit: "x" }\n'));
    expect(digit.ok ? [] : digit.problems).toEqual(['recording.opt_out_digit: must be one of 0-9, * or # (quote * and #)']);
  });

  it('unset follows RECORDING for every agent; an agent that records needs RECORDING_KEY, and so does RECORDING=on', () => {
    const off = loadConfig({ AGENT_FILE: DEMO_AGENT_FILE });
    expect(off.agents[0]!.policies.recording.enabled).toBe(false);
    const on = loadConfig({ AGENT_FILE: `${DEMO_AGENT_FILE},${DEFAULT_AGENT_FILE}`, RECORDING: 'on', RECORDING_KEY: KEY });
    expect(on.agents.map((a) => a.policies.recording.enabled)).toEqual([true, true]);
    expect(on.recording.key?.toString('hex')).toBe(KEY);
    expect(on.retention).toEqual({ days: 90, intervalMs: 3_600_000 });
    expect(problemsOf({ RECORDING: 'on' })).toContain('RECORDING_KEY: required with RECORDING=on (recordings are always encrypted; make one with openssl rand -hex 32)');
    const own = tmpFile('own.yaml', 'name: own\ninstructions: x\nrecording: { enabled: true }\n');
    expect(problemsOf({ AGENT_FILE: own })).toContain('RECORDING_KEY: required: agent "own" records its calls (recording.enabled); make one with openssl rand -hex 32');
    const optedOff = tmpFile('quiet.yaml', 'name: quiet\ninstructions: x\nrecording: { enabled: false }\n');
    expect(loadConfig({ AGENT_FILE: optedOff, RECORDING: 'on', RECORDING_KEY: KEY }).agents[0]!.policies.recording.enabled).toBe(false);
    expect(problemsOf({ RECORDING_KEY_OLD: KEY })).toContain('RECORDING_KEY_OLD: set without RECORDING_KEY; set the new key as RECORDING_KEY');
  });
});
