/**
 * What the model stand-in (model-server.ts) says: scripted conversations.
 * A scenario is a greeting and one turn per caller utterance: the caller's
 * transcript, then spoken replies, function calls and their follow-ups, or
 * scripted failures. The stand-in plays them in order; nothing here does
 * I/O. The eligibility scenarios are the demo's, and the stand-in's default;
 * the call-control ones (transfer to a person, the agent's hang-up, the call
 * back from a failed dial) speak to agents/demo.yaml's `member_services`.
 */
/** One scripted function call: arguments are sent JSON-encoded, streamed in several deltas. */
export interface ScenarioCall {
  name: string;
  arguments: Record<string, unknown>;
}

/**
 * The first `times` responses to a turn end without answering it; the next
 * response the client asks for (`response.create`) gets the normal answer.
 */
export interface ScenarioFailure {
  times: number;
  status: 'failed' | 'incomplete';
  /** For `failed`: `status_details.error`. `code` defaults to `type`, `message` to a stock text. */
  error?: { type: string; code?: string | null; message?: string };
  /** For `incomplete`: `status_details.reason` (default `max_output_tokens`). */
  reason?: 'max_output_tokens' | 'content_filter';
  /** Audio of the answer (ms) spoken before the response ends; default 0 (no output item at all). */
  partialAudioMs?: number;
  /**
   * Seconds the rate limit stays exhausted after this failure: the
   * `rate_limits.updated` that follows reports `requests` remaining 0 with
   * this `reset_seconds`, and any response started before the reset fails
   * again with `rate_limit_exceeded` (not counted in `times`).
   */
  resetSeconds?: number;
}

export interface ScenarioTurn {
  callerTranscript: string;
  /** One spoken reply. */
  reply?: string;
  /** Several spoken message items in one response, played one after another (after `preamble`). */
  replies?: string[];
  /** A short spoken message item at output_index 0, before the replies or calls. */
  preamble?: string;
  /** One function call; the follow-up is `tool.reply(output)` (unless `followUp` is given). */
  tool?: { name: string; arguments: Record<string, unknown>; reply: (output: string) => string };
  /** Several function calls in one response (after `tool`, if both are given). */
  tools?: ScenarioCall[];
  /** Between one call's `response.output_item.done` and the next call's first arguments delta (ms, default 150). */
  gapMs?: number;
  /**
   * The response to the `response.create` that follows the outputs of every
   * call of this turn, built from the outputs in call order. An array is
   * spoken as several message items.
   */
  followUp?: (outputs: string[]) => string | string[];
  /** The turn's own response fails as scripted before it is answered. */
  fail?: ScenarioFailure;
  /** The follow-up to this turn's tool round fails as scripted before it is spoken (the outputs stay in). */
  followUpFail?: ScenarioFailure;
}

export interface Scenario {
  greeting: string;
  /** Said first by a session given the conversation so far (replayed messages), in place of the stock "Okay." (a call back from a failed transfer). */
  resume?: string;
  turns: ScenarioTurn[];
  onUserText?(text: string): string;
}

/** A spoken sentence about one check_eligibility output (JSON or plain text). */
export function describeEligibility(output: string): string {
  let o: Record<string, unknown> = {};
  try {
    o = JSON.parse(output) as Record<string, unknown>;
  } catch {
    /* plain text output */
  }
  if (o.error || /trouble/i.test(output)) return "I'm sorry, I'm having trouble accessing the system right now.";
  const status = typeof o.status === 'string' ? o.status : 'checked';
  const plan = typeof o.plan === 'string' ? ` on the ${o.plan} plan` : '';
  return `You are ${status}${plan}.`;
}

export const eligibilityScenario: Scenario = {
  greeting: 'Thanks for calling the eligibility line. How can I help you today?',
  turns: [
    { callerTranscript: "Hi, I'd like to check my coverage.", reply: 'Sure. Can I get the Member ID?' },
    { callerTranscript: 'It is M B 1 2 3 4 5 6.', reply: 'Thank you. And the date of birth?' },
    {
      callerTranscript: 'March fifth, 1980.',
      tool: {
        name: 'check_eligibility',
        arguments: { member_id: 'M B 1 2 3 4 5 6', date_of_birth: 'March fifth, 1980' },
        reply: (output) => {
          const said = describeEligibility(output);
          return said.startsWith("I'm sorry") ? said : `${said} Is there anything else I can help with?`;
        },
      },
    },
    { callerTranscript: "No, that's all, thanks.", reply: 'Goodbye!' },
  ],
  onUserText: (text) => `You pressed ${text.replace(/[^0-9*#]/g, '')}.`,
};

/** Summarises two check_eligibility outputs: "The first member: … The second member: …". */
function summariseTwo(outputs: string[]): string {
  const [a = '', b = ''] = outputs;
  const person = (s: string) => describeEligibility(s).replace(/^You are /, 'is ').replace(/^I'm sorry, /, 'could not be checked: ');
  return `The first member ${person(a)} The second member ${person(b)} Anything else?`;
}

/**
 * The 2026 shape of the eligibility call: the caller asks about two members
 * at once; the model speaks a preamble, then issues two check_eligibility
 * calls whose arguments stream 150 ms apart, and after both outputs (and
 * the client's response.create) summarises both.
 */
export const parallelEligibilityScenario: Scenario = {
  greeting: 'Thanks for calling the eligibility line. How can I help you today?',
  turns: [
    {
      callerTranscript: 'Can you check M B 1 2 3 4 5 6, born March fifth 1980, and K T 6 5 4 3 2 1, born November twenty-second 1975?',
      preamble: 'Let me check both of those for you.',
      tools: [
        { name: 'check_eligibility', arguments: { member_id: 'M B 1 2 3 4 5 6', date_of_birth: 'March fifth, 1980' } },
        { name: 'check_eligibility', arguments: { member_id: 'K T 6 5 4 3 2 1', date_of_birth: 'November twenty-second, 1975' } },
      ],
      gapMs: 150,
      followUp: summariseTwo,
    },
    { callerTranscript: "No, that's all, thanks.", reply: 'Goodbye!' },
  ],
  onUserText: (text) => `You pressed ${text.replace(/[^0-9*#]/g, '')}.`,
};

/** A greeting then one turn per entry: small scenarios for tests. */
export function scenarioOf(turns: ScenarioTurn[], greeting = 'Hello.'): Scenario {
  return { greeting, turns };
}

/** A turn that speaks `preamble` and then issues `calls` (arguments `gapMs` apart), answered by `followUp`. */
export function parallelToolsTurn(
  calls: ScenarioCall[],
  followUp: (outputs: string[]) => string | string[],
  opts: { preamble?: string; gapMs?: number; callerTranscript?: string } = {},
): ScenarioTurn {
  return {
    callerTranscript: opts.callerTranscript ?? 'Please check these.',
    preamble: opts.preamble,
    tools: calls,
    gapMs: opts.gapMs,
    followUp,
  };
}

/** A spoken turn whose first `times` responses fail with `error` (default server_error). */
export function failingTurn(reply: string, times = 1, fail: Partial<ScenarioFailure> = {}): ScenarioTurn {
  return { callerTranscript: 'Can you hear me?', reply, fail: { times, status: 'failed', error: { type: 'server_error' }, ...fail } };
}

// ── Call control: transfer to a person, the agent's hang-up ─────────────

/** The transfer target of agents/demo.yaml (member services, +15550100200, keypad 0). */
export const DEMO_TRANSFER_TARGET = 'member_services';
export const HANDOFF_SENTENCE = 'Let me connect you to member services.';
export const TRANSFER_FAILED_REPLY = "I'm sorry, I couldn't connect you right now. Is there anything else I can help with?";

/**
 * What the model says once a `transfer_call` comes back to it: an output
 * naming a failure (error, failed, busy, no answer, unavailable) gets an
 * apology; anything else a short confirmation.
 */
export function afterTransfer(output: string): string {
  return /error|fail|busy|no.answer|unavailable|not (?:possible|allowed|available)|cannot|can't/i.test(output) ? TRANSFER_FAILED_REPLY : 'Connecting you now.';
}

/**
 * The caller asks for a person; in the same response the model speaks the
 * handoff sentence (a preamble at output_index 0) and then calls
 * `transfer_call {target: 'member_services'}`. The relay plays the sentence
 * out, closes the stream, and answers Twilio's `<Connect action>` with a
 * `<Dial>`. A second turn answers anything the caller says if the call stays
 * with the agent.
 */
export const transferScenario: Scenario = {
  greeting: eligibilityScenario.greeting,
  turns: [
    {
      callerTranscript: 'Can I speak to a person, please?',
      preamble: HANDOFF_SENTENCE,
      tool: { name: 'transfer_call', arguments: { target: DEMO_TRANSFER_TARGET }, reply: afterTransfer },
    },
    { callerTranscript: "No, that's all, thanks.", reply: 'Goodbye!' },
  ],
  onUserText: eligibilityScenario.onUserText,
};

/**
 * The agent hangs up: the caller says they are done; in the same response
 * the model says "Goodbye!" and then calls `end_call {}`. The relay waits
 * for the goodbye's last mark, closes the stream and answers the
 * `<Connect action>` with `<Hangup/>`. If the caller speaks over the goodbye
 * (the hang-up is called off), the second turn carries on the conversation;
 * a `function_call_output` followed by `response.create` gets a short "what
 * else?" (the call goes on).
 */
export const hangUpScenario: Scenario = {
  greeting: eligibilityScenario.greeting,
  turns: [
    {
      callerTranscript: "That's all, thanks.",
      preamble: 'Goodbye!',
      tool: { name: 'end_call', arguments: {}, reply: () => 'Of course. What else can I help with?' },
    },
    { callerTranscript: 'Wait, one more thing.', reply: 'Of course. What else can I help with?' },
    { callerTranscript: "No, that's really all. Bye.", preamble: 'Goodbye!', tool: { name: 'end_call', arguments: {}, reply: () => 'Goodbye!' } },
  ],
  onUserText: eligibilityScenario.onUserText,
};

/**
 * The agent's side of a call back from a failed dial (the second stream
 * leg, a new model session given the conversation so far): it tells the
 * caller the transfer did not go through; the caller says they are done; the
 * agent says goodbye and hangs up.
 *
 * How the stand-in plays it: the replayed caller request uses up turn 0 (as
 * every replayed caller turn does), so a replay that ends with that request
 * is answered with the apology; the caller's next utterance gets turn 1. A
 * session that is not given the conversation greets with the apology.
 * After a replay that ends with the assistant's handoff sentence, the
 * stand-in answers the relay's first `response.create` with `resume` (the
 * apology) instead of its stock "Okay.".
 */
export const transferFailedScenario: Scenario = {
  greeting: TRANSFER_FAILED_REPLY,
  resume: TRANSFER_FAILED_REPLY,
  turns: [
    { callerTranscript: transferScenario.turns[0]!.callerTranscript, reply: TRANSFER_FAILED_REPLY },
    { callerTranscript: "No, that's all, thanks.", preamble: 'Goodbye!', tool: { name: 'end_call', arguments: {}, reply: () => 'Goodbye!' } },
  ],
  onUserText: eligibilityScenario.onUserText,
};
