/**
 * The call's own control, applying the agent's CallPolicies (./agent.ts):
 * `transfer_call`, `end_call`, the keypad escape to a person, silence
 * reprompts and the maximum-duration warning. The session (./session.ts)
 * feeds it what happened and gives it a small port to act through; it holds
 * no socket and no model. Times in ms.
 *
 * Contract:
 * - Only a target named in the policy is ever saved as a transfer: the model's
 *   argument is looked up by name, an unknown one is answered with an error
 *   naming the valid targets (the model is asked to respond) and nothing is saved.
 * - A transfer's decision is saved (`TransferStore.saveTransfer`) before the
 *   call ends `transferred`; a save that rejects leaves the call going on (the
 *   model is told and answers; event `transfer_failed`).
 * - After `end_call` (event `agent_hangup_requested`) or a saved model transfer
 *   (event `transfer_requested`), the call ends once the response that asked
 *   is done and everything queued for the caller has been heard (its last mark
 *   echoed), or when the policy's bound (goodbyeWaitMs from the tool call,
 *   handoffWaitMs from the saved decision) runs out, whichever comes first.
 * - Caller speech before that calls a hang-up off (event `hangup_called_off`);
 *   it never calls a transfer off: the session cuts playback as for any
 *   barge-in and the transfer goes ahead at once.
 * - The keypad digit transfers to the default target without the model:
 *   playback and the active response are cut first. A digit pressed while
 *   other digits are still being collected is part of that entry, not an escape.
 * - Silence reprompts: after `repromptAfterMs` of silence on both sides with
 *   nothing playing or asked for, at most `maxReprompts` until the caller
 *   speaks or presses a key again (event `silence_reprompt`). The warning is
 *   asked for once, `warnBeforeMs` before the maximum duration (event
 *   `max_duration_warning`). Neither is asked for once the call is ending.
 * - Nothing here throws into the caller: async work ends in the port's `guard`,
 *   and nothing acts once `stop()` has been called (the call ended).
 */
import type { Logger } from '../log.js';
import type { ToolCallRecord, TransferDecision } from '../records.js';
import { END_CALL_TOOL, TRANSFER_TOOL, type CallPolicies, type TransferPolicy } from './agent.js';
import type { CallTimers, TimerHandle, TransferStore } from './ports.js';

/** What the model is told when a transfer cannot be saved. */
export const TRANSFER_UNAVAILABLE = 'transfer is not available right now';
/** What the model is told (as caller text) when the keypad escape cannot be saved. */
export const KEYPAD_TRANSFER_UNAVAILABLE =
  'The caller pressed the keypad key for a person, but a transfer is not available right now. Apologise briefly and offer to keep helping.';

export interface ControlPort {
  callSid: string;
  /** The agent serving the call (its file's name). */
  agent: string;
  /** Which stream of the call this is (1 = the first). */
  leg: number;
  policies: CallPolicies;
  transfers: TransferStore;
  timers: CallTimers;
  log: Logger;
  /** ms since the call started, for the record. */
  sinceStart(): number;
  event(type: string, detail?: string): void;
  /** A control tool was called (its `<name> called` line in the transcript, as for any tool). */
  toolStarted(name: string): void;
  recordTool(rec: ToolCallRecord): void;
  /** Send a control tool's output to the model; `respond`: the model is asked to answer it (with the rest of its round). */
  toolResult(callId: string, output: string, respond: boolean): void;
  /** Ask the model to speak with these instructions (after whatever is playing). */
  request(kind: 'reprompt' | 'warning', instructions: string): void;
  /** Add a caller-side text to the conversation and ask the model to answer it. */
  tell(text: string): void;
  /** The response is still being generated. */
  responseActive(responseId: string): boolean;
  /** Call `cb` once everything queued for the caller has been heard; returns a withdraw function. */
  whenHeard(cb: () => void): () => void;
  /** Cut what the caller hears and the response being generated (keypad escape). */
  stopSpeaking(): void;
  end(reason: 'transferred' | 'agent_hangup'): void;
  guard(chain: Promise<unknown>): void;
}

interface Ending {
  kind: 'hangup' | 'transfer';
  /** The response that asked: the call ends only after it is done (undefined = nothing to wait for). */
  responseId: string | undefined;
  /** Waiting for the save (transfer): not yet ending. */
  saving: boolean;
  bound: TimerHandle | undefined;
  withdraw: (() => void) | undefined;
}

export class CallControl {
  private ending: Ending | undefined;
  private stopped = false;
  private reprompts = 0;
  /** When the last reprompt was asked for (the port's clock), so a reprompt that says nothing does not repeat at once. */
  private lastRepromptAtMs: number | undefined;
  private warningTimer: TimerHandle | undefined;

  constructor(private readonly port: ControlPort) {}

  /** The call is ending (hang-up or transfer under way): no fillers, reprompts or warnings. */
  get closing(): boolean {
    return this.ending !== undefined;
  }

  /** The stream started: arm the maximum-duration warning. */
  start(): void {
    const d = this.port.policies.maxDuration;
    if (d.warnBeforeMs === undefined || d.warnBeforeMs <= 0 || d.warnBeforeMs >= d.maxCallMs) return;
    this.warningTimer = this.port.timers.setTimeout(() => {
      this.warningTimer = undefined;
      if (this.stopped || this.ending) return;
      this.port.event('max_duration_warning', `${Math.round(d.warnBeforeMs! / 1000)} s left`);
      this.port.request('warning', d.warning);
    }, d.maxCallMs - d.warnBeforeMs);
  }

  /** The call ended: nothing more is done. */
  stop(): void {
    this.stopped = true;
    this.port.timers.clear(this.warningTimer);
    if (this.ending) this.clearEnding(this.ending);
  }

  /**
   * A tool call from the model: true if it is a control tool and taken here
   * (the session has already counted it in its response's round).
   */
  toolCall(responseId: string, callId: string, name: string, args: string): boolean {
    if (name === END_CALL_TOOL && this.port.policies.endCall.enabled) {
      this.port.toolStarted(name);
      this.endCall(responseId, callId, args);
      return true;
    }
    const transfer = this.port.policies.transfer;
    if (name === TRANSFER_TOOL && transfer) {
      this.port.toolStarted(name);
      this.transferCall(transfer, responseId, callId, args);
      return true;
    }
    return false;
  }

  /** A response ended: the wait for the one that asked may move on. */
  responseDone(responseId: string): void {
    const e = this.ending;
    if (!e || e.saving || e.responseId !== responseId) return;
    e.responseId = undefined;
    this.awaitHeard(e);
  }

  /** The caller started speaking (before the session cuts playback). */
  callerStarted(): void {
    this.reprompts = 0;
    this.lastRepromptAtMs = undefined;
    const e = this.ending;
    if (!e) return;
    if (e.kind === 'hangup') {
      this.clearEnding(e);
      this.ending = undefined;
      this.port.event('hangup_called_off', 'the caller spoke over the goodbye');
      this.port.log.info('agent hang-up called off: the caller spoke');
      return;
    }
    // A transfer goes ahead: its response is being cut with the playback, so only that is left to wait for.
    if (!e.saving && e.responseId !== undefined) {
      e.responseId = undefined;
      this.awaitHeard(e);
    }
  }

  /** The caller pressed a key. */
  callerKey(): void {
    this.reprompts = 0;
    this.lastRepromptAtMs = undefined;
  }

  /**
   * A keypad digit: true if it is the escape to a person and taken here (the
   * model never sees it). `entryPending`: other digits are being collected.
   */
  keypad(digit: string, entryPending: boolean): boolean {
    const t = this.port.policies.transfer;
    if (!t || t.keypadDigit === undefined || digit !== t.keypadDigit || entryPending) return false;
    if (this.ending?.kind === 'transfer') return true; // pressed again: one transfer is under way
    if (this.ending) {
      this.clearEnding(this.ending); // a person was asked for over the goodbye: the transfer wins
      this.ending = undefined;
    }
    this.port.stopSpeaking();
    if (!t.targets.some((x) => x.name === t.defaultTarget)) {
      // The agent loader checks this; never dial a name the policy does not hold.
      this.port.log.error({ target: t.defaultTarget }, 'keypad transfer: the default target is not a target of this agent');
      this.port.event('transfer_failed', `keypad: unknown default target ${t.defaultTarget}`);
      this.port.tell(KEYPAD_TRANSFER_UNAVAILABLE);
      return true;
    }
    const e: Ending = { kind: 'transfer', responseId: undefined, saving: true, bound: undefined, withdraw: undefined };
    this.ending = e;
    this.port.event('transfer_requested', `${t.defaultTarget} by keypad`);
    this.port.guard(
      this.save(t.defaultTarget, 'keypad').then((err) => {
        if (this.stopped || this.ending !== e) return;
        if (err === null) return this.port.end('transferred');
        this.ending = undefined;
        this.port.tell(KEYPAD_TRANSFER_UNAVAILABLE);
      }),
    );
    return true;
  }

  /**
   * The session's silence check, while nothing plays and no response is
   * active or asked for: `idleMs` since the last sound on either side.
   */
  silence(nowMs: number, lastActivityMs: number): void {
    const s = this.port.policies.silence;
    if (this.stopped || this.ending || s.repromptAfterMs === undefined || this.reprompts >= s.maxReprompts) return;
    const since = Math.max(lastActivityMs, this.lastRepromptAtMs ?? -Infinity);
    if (nowMs - since < s.repromptAfterMs) return;
    this.reprompts++;
    this.lastRepromptAtMs = nowMs;
    this.port.event('silence_reprompt', `${this.reprompts} of ${s.maxReprompts}`);
    this.port.request('reprompt', s.reprompt);
  }

  // ── The tools ──────────────────────────────────────────────────────────

  private endCall(responseId: string, callId: string, args: string): void {
    const startedAtMs = this.port.sinceStart();
    if (this.ending) {
      return this.answer(callId, END_CALL_TOOL, args, startedAtMs, false, { error: 'the call is already ending' }, false);
    }
    this.answer(callId, END_CALL_TOOL, args, startedAtMs, true, { ok: true, note: 'The line closes once your goodbye has been heard. Say nothing more.' }, false);
    this.port.event('agent_hangup_requested');
    this.port.log.info('agent hang-up requested');
    const e: Ending = { kind: 'hangup', responseId, saving: false, bound: undefined, withdraw: undefined };
    this.ending = e;
    this.begin(e, this.port.policies.endCall.goodbyeWaitMs, 'agent_hangup');
  }

  private transferCall(policy: TransferPolicy, responseId: string, callId: string, args: string): void {
    const startedAtMs = this.port.sinceStart();
    const names = policy.targets.map((t) => t.name);
    const target = targetArg(args);
    if (target === undefined || !names.includes(target)) {
      const error = `unknown transfer target${target === undefined ? '' : ` "${target.slice(0, 40)}"`}; valid targets: ${names.join(', ')}`;
      return this.answer(callId, TRANSFER_TOOL, args, startedAtMs, false, { error }, true);
    }
    if (this.ending) {
      return this.answer(callId, TRANSFER_TOOL, args, startedAtMs, false, { error: 'the call is already ending' }, false);
    }
    const e: Ending = { kind: 'transfer', responseId, saving: true, bound: undefined, withdraw: undefined };
    this.ending = e;
    this.port.event('transfer_requested', `${target} by model`);
    this.port.guard(
      this.save(target, 'model').then((err) => {
        if (this.stopped || this.ending !== e) return;
        if (err !== null) {
          this.ending = undefined;
          return this.answer(callId, TRANSFER_TOOL, args, startedAtMs, false, { error: TRANSFER_UNAVAILABLE }, true);
        }
        this.answer(callId, TRANSFER_TOOL, args, startedAtMs, true, { ok: true, note: 'The caller is being connected. Say nothing more.' }, false);
        e.saving = false;
        if (e.responseId !== undefined && !this.port.responseActive(e.responseId)) e.responseId = undefined;
        this.begin(e, policy.handoffWaitMs, 'transferred');
      }),
    );
  }

  /** Save the decision: null once durable, else the reason (event `transfer_failed`, logged). */
  private async save(target: string, requestedBy: 'model' | 'keypad'): Promise<string | null> {
    const decision: TransferDecision = { agent: this.port.agent, target, requestedBy, leg: this.port.leg, at: new Date().toISOString() };
    try {
      await this.port.transfers.saveTransfer(this.port.callSid, decision);
      return null;
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      this.port.event('transfer_failed', `${target} by ${requestedBy}: not saved (${reason.slice(0, 120)})`);
      this.port.log.warn({ target, requestedBy, err: reason }, 'transfer decision could not be saved: the call goes on');
      return reason;
    }
  }

  /** Arm the bound and wait for the asking response (if still active), then for the caller to have heard it all. */
  private begin(e: Ending, boundMs: number, reason: 'transferred' | 'agent_hangup'): void {
    e.bound = this.port.timers.setTimeout(() => {
      e.bound = undefined;
      if (this.stopped || this.ending !== e) return;
      this.port.log.info({ boundMs, reason }, 'not all heard within the bound: ending the call anyway');
      this.finish(e);
    }, boundMs);
    if (e.responseId !== undefined && !this.port.responseActive(e.responseId)) e.responseId = undefined;
    if (e.responseId === undefined) this.awaitHeard(e);
  }

  private awaitHeard(e: Ending): void {
    if (e.withdraw) return;
    e.withdraw = () => {}; // set before the call: whenHeard may answer at once
    e.withdraw = this.port.whenHeard(() => {
      if (!this.stopped && this.ending === e) this.finish(e);
    });
  }

  private finish(e: Ending): void {
    this.clearEnding(e);
    this.port.end(e.kind === 'hangup' ? 'agent_hangup' : 'transferred');
  }

  private clearEnding(e: Ending): void {
    this.port.timers.clear(e.bound);
    e.bound = undefined;
    e.withdraw?.();
  }

  private answer(callId: string, name: string, args: string, startedAtMs: number, ok: boolean, out: object, respond: boolean): void {
    const output = JSON.stringify(out);
    this.port.recordTool({ callId, name, args, ok, output, record: out, startedAtMs, durationMs: Math.max(0, this.port.sinceStart() - startedAtMs) });
    this.port.toolResult(callId, output, respond);
  }
}

/** The `target` argument of transfer_call, or undefined when the arguments do not hold a string one. */
function targetArg(args: string): string | undefined {
  try {
    const v: unknown = JSON.parse(args);
    if (v && typeof v === 'object' && typeof (v as { target?: unknown }).target === 'string') return (v as { target: string }).target;
  } catch {
    // not JSON: no target
  }
  return undefined;
}
