/**
 * POST /calls — place an outbound call, for operators and their systems.
 * Disabled (404) unless ADMIN_TOKEN is set; then it needs
 * `Authorization: Bearer <ADMIN_TOKEN>` (401 otherwise).
 *
 * Body (JSON): `{"to": "+15551234567", "agent"?: "name", "context"?: {"k": "v"}}`.
 * Answers:
 * - 201 `{callSid, status}`: Twilio took the call (status `queued` as a rule);
 * - 400 `{error: 'invalid request', problems: [...]}`: every problem, by path
 *   (never quoting a value: they may be personal data); also an unknown agent;
 * - 403 `{error: 'number_not_allowed'}`: the agent's allow/deny lists refuse
 *   the number (it was not dialled);
 * - 502 `{error: 'twilio', message, status, code, retryable}`: Twilio refused
 *   or was not reached;
 * - 503 `{error: 'pacer_unavailable', retryable: true}`: the shared store that
 *   paces calls across instances did not answer (nothing was dialled).
 * The handler never rejects.
 */
import { z } from 'zod';
import { AGENT_NAME, contextProblems } from '../call/outbound-token.js';
import type { TwilioRestError } from '../twilio/rest.js';
import { bearerCheck } from './bearer.js';

/** E.164: '+', a country code that does not start with 0, 7–15 digits in all. */
export const E164 = /^\+[1-9]\d{6,14}$/;

export interface PlaceRequest {
  to: string;
  agent?: string;
  context?: Record<string, string>;
}

export type PlaceOutcome =
  | { ok: true; callSid: string; status: string }
  | { ok: false; error: 'invalid'; problems: string[] }
  | { ok: false; error: 'number_not_allowed' }
  | { ok: false; error: 'pacer_unavailable' }
  | { ok: false; error: 'twilio'; rest: TwilioRestError };

const PlaceRequestSchema = z
  .object({
    to: z.string().regex(E164, 'expected an E.164 number (+ and 7-15 digits)'),
    agent: z.string().regex(AGENT_NAME, 'expected an agent name ([a-z0-9_-], 1-40 characters)').optional(),
    context: z.record(z.string(), z.string({ error: 'expected a string' })).optional(),
  })
  .strict();

/** Check a request body (already JSON-parsed): the request, or every problem with it. */
export function checkPlaceRequest(input: unknown): { ok: true; value: PlaceRequest } | { ok: false; problems: string[] } {
  const r = PlaceRequestSchema.safeParse(input);
  if (!r.success) return { ok: false, problems: r.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`) };
  const problems = r.data.context ? contextProblems(r.data.context) : [];
  if (problems.length) return { ok: false, problems };
  return { ok: true, value: r.data };
}

/** The POST /calls handler over `place` (OutboundCalls.place). */
export function createPlaceCallHandler(
  adminToken: string | undefined,
  place: (req: PlaceRequest) => Promise<PlaceOutcome>,
): (req: { authorization: string | undefined; body: string }) => Promise<{ status: number; body: unknown }> {
  const authorized = bearerCheck(adminToken);
  return async (req) => {
    if (!authorized) return { status: 404, body: { error: 'not found' } };
    if (!authorized(req.authorization)) return { status: 401, body: { error: 'unauthorized' } };
    let json: unknown;
    try {
      json = JSON.parse(req.body);
    } catch {
      return { status: 400, body: { error: 'invalid request', problems: ['(body): expected JSON'] } };
    }
    const checked = checkPlaceRequest(json);
    if (!checked.ok) return { status: 400, body: { error: 'invalid request', problems: checked.problems } };
    let outcome: PlaceOutcome;
    try {
      outcome = await place(checked.value);
    } catch (err) {
      // place() answers with values; a throw is a bug, reported without its text (it may hold the number).
      return { status: 500, body: { error: 'internal error', detail: err instanceof Error ? err.name : 'unknown' } };
    }
    if (outcome.ok) return { status: 201, body: { callSid: outcome.callSid, status: outcome.status } };
    switch (outcome.error) {
      case 'invalid':
        return { status: 400, body: { error: 'invalid request', problems: outcome.problems } };
      case 'number_not_allowed':
        return { status: 403, body: { error: 'number_not_allowed' } };
      case 'pacer_unavailable':
        return { status: 503, body: { error: 'pacer_unavailable', retryable: true } };
      case 'twilio':
        return { status: 502, body: { error: 'twilio', ...outcome.rest.toJSON() } };
    }
  };
}
