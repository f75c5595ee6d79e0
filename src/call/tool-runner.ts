/**
 * One call's tool calls, off the audio path.
 *
 * Contract:
 * - `run()` returns at once: the tool runs in the background and nothing on
 *   the audio path waits for it. Its chain ends in the call's `guard`.
 * - Every call gets exactly one outcome, recorded (`toolCall`) and handed to
 *   `deliver` (the call decides whether it can still take it): the tool's
 *   own, or after the backstop a TOOL_TROUBLE error (the tool's signal is
 *   aborted), or TOOL_TROUBLE if dispatch itself failed (a bug: logged).
 * - A tool still running after `fillerMs` asks for a short spoken "still
 *   checking" (`fill`, with the tool's own `filler` instructions, else
 *   TOOL_FILLER_INSTRUCTIONS); the call decides whether the caller would hear it.
 * - The tool sees the caller's number (`from`) in its context; only tools
 *   told to send it on do.
 * - A backstop timeout is reported to the registry's observer (the tool's
 *   own late outcome is not), so metrics count every call once.
 * - The record's line (`<name> called`) is written when the call starts,
 *   the tool call record when it ends, both at ms since the call started.
 */
import type { Logger } from '../log.js';
import type { CallRecorder } from '../records.js';
import { TOOL_TROUBLE, type ToolRegistry } from '../tools/registry.js';
import type { CallTimers, TimerHandle } from './ports.js';

/** What the model is asked to say while a slow tool runs. */
export const TOOL_FILLER_INSTRUCTIONS = 'In a few words, tell the caller you are still checking. Do not guess any result.';

/**
 * The backstop for a tool that bounds its own time (`Tool.timeoutMs`, e.g. an
 * HTTP tool from the agent file): its own bound plus this, so the tool's own
 * timeout answers first and the backstop only catches a tool that overran it.
 */
export const TOOL_BACKSTOP_GRACE_MS = 500;

interface Outcome {
  ok: boolean;
  output: string;
  record: unknown;
  /** What the call record keeps of `output` (default: all of it). */
  recordOutput?: string;
}

export interface ToolRunnerDeps {
  tools: ToolRegistry;
  timers: CallTimers;
  now: () => number;
  /** ms since the call started, for the record. */
  sinceStart: () => number;
  log: Logger;
  recorder: CallRecorder | undefined;
  callSid: string;
  /** The caller's number, for tools that are told to send it. */
  from?: string;
  /** The backstop for a tool with no bound of its own (`Tool.timeoutMs` undefined), ms. */
  timeoutMs: number;
  fillerMs: number;
  /** A tool has run `fillerMs`: ask for a spoken filler with these instructions, if the caller would hear it. */
  fill: (instructions: string) => void;
  /** The outcome's output for the model. */
  deliver: (callId: string, output: string) => void;
  /** The call's last word on a promise chain. */
  guard: (chain: Promise<unknown>) => void;
}

export class ToolRunner {
  /** Tool calls started and not yet finished. */
  running = 0;

  constructor(private readonly deps: ToolRunnerDeps) {}

  run(callId: string, name: string, args: string): void {
    const d = this.deps;
    this.running++;
    const startedAtMs = d.sinceStart();
    const t0 = d.now();
    const ac = new AbortController();
    d.recorder?.transcript({ atMs: startedAtMs, speaker: 'tool', text: `${name} called` });
    const tool = d.tools.get(name);
    const instructions = tool?.filler ?? TOOL_FILLER_INSTRUCTIONS;
    const backstopMs = tool?.timeoutMs !== undefined ? tool.timeoutMs + TOOL_BACKSTOP_GRACE_MS : d.timeoutMs;
    let timeout: TimerHandle | undefined;
    const timedOut = new Promise<Outcome>((resolve) => {
      timeout = d.timers.setTimeout(() => {
        ac.abort();
        d.tools.reportTimeout(name, d.now() - t0);
        resolve({ ok: false, output: JSON.stringify({ error: TOOL_TROUBLE }), record: { error: 'timeout' } });
      }, backstopMs);
    });
    const filler = d.timers.setTimeout(() => d.fill(instructions), d.fillerMs);
    const finish = (outcome: Outcome) => {
      d.timers.clear(timeout);
      d.timers.clear(filler);
      this.running--;
      const durationMs = Math.round(d.now() - t0);
      d.recorder?.toolCall({ callId, name, args, ok: outcome.ok, output: outcome.recordOutput ?? outcome.output, record: outcome.record, startedAtMs, durationMs });
      d.log.info({ tool: name, ok: outcome.ok, durationMs }, 'tool call finished');
      d.deliver(callId, outcome.output);
    };
    d.guard(
      Promise.race([d.tools.call(name, args, { callSid: d.callSid, signal: ac.signal, from: d.from }), timedOut]).then(finish, (err: unknown) => {
        // The registry turns tool errors into outcomes; reaching here is a bug, but the model still gets an answer.
        d.log.error({ err }, 'tool dispatch failed');
        finish({ ok: false, output: JSON.stringify({ error: TOOL_TROUBLE }), record: { error: 'dispatch_failed' } });
      }),
    );
  }
}
