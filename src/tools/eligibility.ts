/**
 * check_eligibility: the built-in tool of the seed system. Arguments are
 * validated and normalised before any lookup (normalize.ts); invalid ones go
 * back to the model saying exactly what to ask for again. Any back-end
 * failure becomes the "trouble accessing the system" outcome, never silence
 * and never a throw. Member IDs and dates of birth never reach a log message.
 */
import { silentLogger, type Logger } from '../log.js';
import { HttpEligibilityBackend, MockEligibilityBackend, type Coverage, type EligibilityBackend, EligibilityError } from './backends.js';
import { normalizeDate, normalizeMemberId } from './normalize.js';
import { TOOL_TROUBLE, ToolRegistry, type Tool, type ToolOutcome } from './registry.js';

export const ELIGIBILITY_TOOL = 'check_eligibility';

const PARAMETERS = {
  type: 'object',
  properties: {
    member_id: {
      type: 'string',
      description:
        "The caller's insurance member ID: two letters then six digits (e.g. MB123456), as the caller said it. " +
        'If you do not have it yet, ask: "Can I get the Member ID?"',
    },
    date_of_birth: {
      type: 'string',
      description: 'The member\'s date of birth as the caller said it (e.g. "March 5th 1980"). If you do not have it yet, ask: "And the date of birth?"',
    },
  },
  required: ['member_id', 'date_of_birth'],
  additionalProperties: false,
} as const;

const usd = (n: number) => `$${n.toLocaleString('en-US')}`;

/** The compact summary the model speaks from. */
export function summarize(c: Coverage): Record<string, string> {
  const out: Record<string, string> = { status: c.status };
  if (c.status === 'not_found') out.note = 'No member matches that ID. Ask the caller to check the ID.';
  if (c.status === 'dob_mismatch') out.note = 'The date of birth does not match the member ID. Ask the caller to confirm both.';
  if (c.plan) out.plan = c.plan;
  if (c.coverageStart && c.coverageEnd) out.coverage = `${c.coverageStart} to ${c.coverageEnd}`;
  if (c.deductible !== undefined) out.deductible = `${usd(c.deductible)}, ${usd(c.deductibleMet ?? 0)} met`;
  if (c.copays) out.copays = Object.entries(c.copays).map(([k, v]) => `${k} ${usd(v)}`).join(', ');
  return out;
}

export function createEligibilityTool(backend: EligibilityBackend, log: Logger = silentLogger): Tool {
  return {
    name: ELIGIBILITY_TOOL,
    description:
      "Check a caller's insurance eligibility and benefits. Call it only once you have both the member ID and the date of birth.",
    parameters: PARAMETERS as unknown as Record<string, unknown>,
    async run(args: unknown, ctx): Promise<ToolOutcome> {
      const a = (args ?? {}) as Record<string, unknown>;
      const id = normalizeMemberId(a.member_id);
      const dob = normalizeDate(a.date_of_birth);
      const problems = [id, dob].filter((r) => !r.ok).map((r) => (r as { problem: string }).problem);
      if (!id.ok || !dob.ok) {
        return { ok: false, output: JSON.stringify({ error: 'invalid_arguments', ask_again: problems.join('; ') }), record: { error: 'invalid_arguments', problems } };
      }
      try {
        const coverage = await backend.lookup(id.value, dob.value, ctx.signal);
        log.info({ backend: backend.name, status: coverage.status, callSid: ctx.callSid }, 'eligibility checked');
        return { ok: true, output: JSON.stringify(summarize(coverage)), record: { memberId: id.value, dateOfBirth: dob.value, ...coverage } };
      } catch (err) {
        const code = err instanceof EligibilityError ? err.code : 'failed';
        log.warn({ backend: backend.name, code, callSid: ctx.callSid }, 'eligibility lookup failed');
        return { ok: false, output: JSON.stringify({ error: TOOL_TROUBLE }), record: { error: code } };
      }
    },
  };
}

/** What the default tools need (main.ts fills it in from ELIGIBILITY_*). */
export interface EligibilitySettings {
  /** The eligibility API; undefined = the mock back end. */
  apiUrl: string | undefined;
  apiKey: string | undefined;
  timeoutMs: number;
  /** Further attempts after a failed lookup. */
  retries: number;
}

export function createDefaultTools(e: EligibilitySettings, log: Logger): ToolRegistry {
  const backend: EligibilityBackend = e.apiUrl
    ? new HttpEligibilityBackend({ url: e.apiUrl, apiKey: e.apiKey, timeoutMs: e.timeoutMs, retries: e.retries })
    : new MockEligibilityBackend();
  return new ToolRegistry([createEligibilityTool(backend, log)]);
}
