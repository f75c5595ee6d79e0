/**
 * Turns: who asks the model to speak next, and when. Pure (no timers, no
 * sockets): the call feeds it what happened and it calls `createResponse`.
 *
 * A *demand* is a reason to ask for a response: the greeting, DTMF digits
 * sent as text, a finished tool round, the "still checking" filler, a
 * silence reprompt ("are you still there?"), the maximum-duration warning, or
 * a retry after a failed response. Contract:
 *
 * - At most one response is in progress or asked for at any time: nothing
 *   is sent while a response is active, while a `response.create` awaits its
 *   `response.created`, or while the caller is speaking.
 * - A tool round (the calls one response issued) is *ready* only when that
 *   response is done **and** every call it issued has its output; it is
 *   then answered by exactly one `response.create` (or by a response the
 *   server starts on its own after it became ready). Several ready demands
 *   without instructions travel in one `response.create`. A round whose
 *   outputs all say "no answer" (`toolOutput(id, false)`: the call is
 *   ending or being transferred) asks for nothing.
 * - Caller speech drops the waiting greeting, filler, reprompt and retry
 *   (moot once the caller speaks); DTMF, tool rounds and the warning wait
 *   for the caller's turn to end.
 * - A demand is satisfied by the response created for it; it never outlives
 *   that response, so a stale request cannot fire a second answer.
 * - The filler never overlaps a tool round: it is dropped once the round is
 *   ready or any response starts, and a ready round waits for a filler
 *   response already in progress to finish.
 * - When the caller stops speaking the server's VAD creates the response
 *   itself (`create_response: true`): that expected response answers every
 *   ready demand without instructions, so a tool round that finished while
 *   the caller spoke is not answered twice.
 * - A response that ends `failed`, or `incomplete` for a reason other than
 *   the caller barging in, leaves the turn unanswered: `responseDone` says
 *   so, and the call asks again (`retry`) after a back-off of its choosing,
 *   or gives up with a recorded apology.
 */

export type DemandKind = 'greeting' | 'dtmf' | 'tool_round' | 'filler' | 'reprompt' | 'warning' | 'retry';

interface Demand {
  kind: DemandKind;
  /** One-off instructions for the response; such a demand travels alone. */
  instructions?: string;
}

/** A tool call of a round: output not sent yet, sent and wanting an answer, or sent wanting none. */
type CallState = 'pending' | 'answer' | 'quiet';

interface Round {
  /** call_id → its state. */
  calls: Map<string, CallState>;
  responseDone: boolean;
}

export interface TurnsSink {
  createResponse(instructions?: string): void;
}

/** Why a response ended, as far as turns care. */
export interface ResponseEnd {
  status: 'completed' | 'cancelled' | 'failed' | 'incomplete';
  /** `incomplete` reason (e.g. `turn_detected`, `max_output_tokens`) or the failure's error code. */
  reason?: string;
}

/** What the call should do after a response ended. */
export type AfterResponse =
  | { action: 'none' }
  /** The turn is unanswered: call `retry()` after a back-off. `attempt` counts from 1. */
  | { action: 'retry'; attempt: number }
  /** Retries are used up: play the apology and wait for the caller. */
  | { action: 'apologize' };

/** Reasons an incomplete response was cut short on purpose: nothing to retry. */
const INTENDED_STOPS = new Set(['turn_detected', 'client_cancelled']);

export class Turns {
  private active: string | undefined;
  /** Demands of a `response.create` sent and not yet acknowledged; [] = a response the server will create. */
  private inFlight: Demand[] | undefined;
  private ready: Demand[] = [];
  private readonly rounds = new Map<string, Round>();
  /** Demands each live response was created for (to know what a failure leaves unanswered). */
  private readonly answering = new Map<string, Demand[]>();
  private callerSpeaking = false;
  private failures = 0;
  /** response.create events sent (for the record and tests). */
  created = 0;

  constructor(
    private readonly sink: TurnsSink,
    /** Retries of an unanswered turn before the apology. */
    private readonly maxRetries = 2,
  ) {}

  /** A response is in progress or asked for. */
  get busy(): boolean {
    return this.active !== undefined || this.inFlight !== undefined;
  }

  /** Tool calls issued and not yet answered by a response. */
  get toolRoundPending(): boolean {
    return this.rounds.size > 0 || this.ready.some((d) => d.kind === 'tool_round');
  }

  /** Ask for a response for `kind` (greeting, dtmf, filler, reprompt, warning); sent as soon as nothing else is. */
  request(kind: Exclude<DemandKind, 'tool_round' | 'retry'>, instructions?: string): void {
    if (kind === 'filler' && (this.busy || this.hasPlainDemand())) return; // something is already coming
    if (kind !== 'dtmf' && this.pendingKind(kind)) return;
    this.ready.push({ kind, instructions });
    this.flush();
  }

  /** The back-off after a failed response is over: ask again. */
  retry(instructions?: string): void {
    this.ready.push({ kind: 'retry', instructions });
    this.flush();
  }

  responseCreated(responseId: string): void {
    this.active = responseId;
    // Ours, or the one the server's VAD was expected to start (with what was ready when the caller stopped).
    // One nobody expected answers nothing: what waits is asked for after it, never left unanswered.
    const demands = this.inFlight ?? [];
    this.inFlight = undefined;
    this.serverExpected = false;
    this.ready = this.ready.filter((d) => d.kind !== 'filler');
    this.answering.set(responseId, demands);
  }

  /** The server refused our `response.create` (one was already active): its demands wait again. */
  createRejected(): void {
    if (this.inFlight === undefined || this.serverExpected) return;
    this.ready.unshift(...this.inFlight);
    this.inFlight = undefined;
  }

  /** A function call's arguments are complete: the call belongs to `responseId`'s round. */
  toolCall(responseId: string, callId: string): void {
    let round = this.rounds.get(responseId);
    if (!round) {
      round = { calls: new Map(), responseDone: false };
      this.rounds.set(responseId, round);
    }
    round.calls.set(callId, 'pending');
  }

  /**
   * The call's output was sent to the model. `respond` false: this output needs
   * no answer (the round is answered only if another of its outputs does).
   * Unknown call ids are ignored.
   */
  toolOutput(callId: string, respond = true): void {
    for (const [responseId, round] of this.rounds) {
      if (!round.calls.has(callId)) continue;
      round.calls.set(callId, respond ? 'answer' : 'quiet');
      this.checkRound(responseId, round);
      break;
    }
    this.flush();
  }

  responseDone(responseId: string, end: ResponseEnd): AfterResponse {
    const demands = this.answering.get(responseId) ?? [];
    this.answering.delete(responseId);
    if (this.active === responseId) this.active = undefined;
    const round = this.rounds.get(responseId);
    if (round) {
      round.responseDone = true;
      this.checkRound(responseId, round);
    }
    let after: AfterResponse = { action: 'none' };
    const unanswered = end.status === 'failed' || (end.status === 'incomplete' && !INTENDED_STOPS.has(end.reason ?? ''));
    const onlyFiller = demands.length > 0 && demands.every((d) => d.kind === 'filler');
    if (unanswered && !round && !onlyFiller && !this.callerSpeaking) {
      this.failures++;
      this.lastFailedInstructions = demands.find((d) => d.instructions !== undefined && d.kind !== 'filler')?.instructions;
      after = this.failures <= this.maxRetries ? { action: 'retry', attempt: this.failures } : { action: 'apologize' };
      if (after.action === 'apologize') this.failures = 0;
    } else if (end.status === 'completed') {
      this.failures = 0;
    }
    this.flush();
    return after;
  }

  /** Instructions of the last failed response (a greeting asks again with its own). */
  lastFailedInstructions: string | undefined;

  /** Caller started speaking: hold everything; fillers, greetings and retries are moot. */
  callerStarted(): void {
    this.callerSpeaking = true;
    this.failures = 0;
    this.ready = this.ready.filter((d) => d.kind === 'tool_round' || d.kind === 'dtmf' || d.kind === 'warning');
  }

  /**
   * Caller stopped speaking. With `serverResponds` (server VAD creates the
   * response) the next `response.created` is the server's and answers
   * every ready demand without instructions.
   */
  callerStopped(serverResponds: boolean): void {
    this.callerSpeaking = false;
    if (serverResponds && this.inFlight === undefined && this.active === undefined) {
      // The server answers the turn, with every tool output and text item it already has.
      this.inFlight = this.ready.filter((d) => d.instructions === undefined);
      this.ready = this.ready.filter((d) => d.instructions !== undefined);
      this.serverExpected = true;
    }
    this.flush();
  }

  /** The server's expected response did not come (its VAD heard no turn): ask for what it would have answered. */
  serverResponseOverdue(): void {
    if (this.serverExpected && this.inFlight !== undefined) {
      this.ready.unshift(...this.inFlight);
      this.inFlight = undefined;
    }
    this.serverExpected = false;
    this.flush();
  }

  /** `inFlight` stands for the response the server's VAD will start, not for a create we sent. */
  private serverExpected = false;

  /** The model session was replaced (reconnect): nothing in progress survives it. */
  reset(): void {
    this.active = undefined;
    this.inFlight = undefined;
    this.serverExpected = false;
    this.answering.clear();
    this.ready = this.ready.filter((d) => d.kind !== 'filler');
  }

  private checkRound(responseId: string, round: Round): void {
    if (!round.responseDone) return;
    let answer = false;
    for (const state of round.calls.values()) {
      if (state === 'pending') return;
      if (state === 'answer') answer = true;
    }
    this.rounds.delete(responseId);
    if (!answer) return;
    this.ready = this.ready.filter((d) => d.kind !== 'filler');
    this.ready.push({ kind: 'tool_round' });
  }

  /** A demand of this kind is waiting, asked for, or being answered. */
  private pendingKind(kind: DemandKind): boolean {
    const has = (list: Demand[] | undefined) => list?.some((d) => d.kind === kind) ?? false;
    if (has(this.ready) || has(this.inFlight)) return true;
    for (const list of this.answering.values()) if (has(list)) return true;
    return false;
  }

  private hasPlainDemand(): boolean {
    return this.ready.some((d) => d.instructions === undefined);
  }

  private flush(): void {
    if (this.busy || this.callerSpeaking || this.ready.length === 0) return;
    const head = this.ready[0]!;
    let bundle: Demand[];
    if (head.instructions !== undefined) {
      bundle = [head];
      this.ready.shift();
    } else {
      bundle = this.ready.filter((d) => d.instructions === undefined);
      this.ready = this.ready.filter((d) => d.instructions !== undefined);
    }
    // A filler with a real answer on its way says nothing useful.
    if (bundle.length === 1 && bundle[0]!.kind === 'filler' && this.toolRoundReady()) return this.flush();
    this.inFlight = bundle;
    this.created++;
    this.sink.createResponse(bundle.length === 1 ? bundle[0]!.instructions : undefined);
  }

  private toolRoundReady(): boolean {
    return this.ready.some((d) => d.kind === 'tool_round');
  }
}
