/**
 * Tools the model may call. A tool validates its own arguments and never
 * throws to the caller of `run`: every outcome, including bad arguments and
 * back-end failures, is a ToolOutcome the model can speak about.
 *
 * The registry reports every call it dispatches to an optional observer
 * (`onOutcome`: per-tool metrics), exactly once: the tool's outcome, or the
 * runner's backstop timeout (`reportTimeout`) when the runner gave up first.
 * Durations in ms.
 */
import type { ToolSpec } from './spec.js';

export interface ToolContext {
  callSid: string;
  signal: AbortSignal;
  /** The caller's number (E.164; personal data): only tools that are asked to send it may use it. */
  from?: string;
}

export interface ToolOutcome {
  ok: boolean;
  /** Compact text for the model to speak from (sent as the function_call_output). */
  output: string;
  /** Structured result kept in the call record (may hold personal data: never logged). */
  record: unknown;
  /**
   * What the call record keeps of `output`, when not all of it: an HTTP tool
   * keeps only its file's record_fields of the answer (the model still gets it whole).
   */
  recordOutput?: string;
}

export interface Tool extends ToolSpec {
  /** Instructions for what the caller hears while it runs; undefined = the runner's default filler. */
  filler?: string;
  /** The tool answers within this by itself (ms, retries included); the runner's backstop then waits a little longer than this instead of its default. */
  timeoutMs?: number;
  run(args: unknown, ctx: ToolContext): Promise<ToolOutcome>;
}

export const TOOL_TROUBLE = "I'm having trouble accessing the system right now.";

/** How a tool call ended, as metrics count it. */
export type ToolOutcomeKind = 'ok' | 'error' | 'timeout' | 'invalid_arguments' | 'circuit_open';

/** Sees every tool call once: the tool's name (UNKNOWN_TOOL for a name no tool has), how it ended, and how long it took (ms). */
export type ToolOutcomeObserver = (name: string, outcome: ToolOutcomeKind, durationMs: number) => void;

/** The name unknown tools are reported under, so a model's invented names cannot grow the metric labels. */
export const UNKNOWN_TOOL = '_unknown';

/**
 * The kind of an outcome, read from its record's `error` code: `timeout`,
 * `invalid_arguments`, `circuit_open` and `breaker_open` (the eligibility
 * back end's breaker); any other failure is `error` — `bad_json` too, an HTTP
 * tool's back end answering garbage (the registry counts unparseable
 * arguments, which it records as `bad_json` as well, itself).
 */
export function outcomeKind(outcome: ToolOutcome): ToolOutcomeKind {
  if (outcome.ok) return 'ok';
  const code = (outcome.record as { error?: unknown } | null | undefined)?.error;
  switch (code) {
    case 'timeout':
      return 'timeout';
    case 'invalid_arguments':
      return 'invalid_arguments';
    case 'circuit_open':
    case 'breaker_open':
      return 'circuit_open';
    default:
      return 'error';
  }
}

export interface ToolRegistryOptions {
  onOutcome?: ToolOutcomeObserver;
  /** Monotonic clock, ms (default performance.now). */
  now?: () => number;
}

export class ToolRegistry {
  private readonly tools = new Map<string, Tool>();
  private readonly onOutcome: ToolOutcomeObserver | undefined;
  private readonly now: () => number;

  constructor(tools: Tool[] = [], opts: ToolRegistryOptions = {}) {
    this.onOutcome = opts.onOutcome;
    this.now = opts.now ?? (() => performance.now());
    for (const t of tools) this.register(t);
  }

  register(tool: Tool): void {
    if (this.tools.has(tool.name)) throw new Error(`tool ${tool.name} registered twice`);
    this.tools.set(tool.name, tool);
  }

  get(name: string): Tool | undefined {
    return this.tools.get(name);
  }

  specs(): ToolSpec[] {
    return [...this.tools.values()].map(({ name, description, parameters }) => ({ name, description, parameters }));
  }

  /**
   * Run a tool by name with raw JSON arguments. Unknown tools, unparseable
   * arguments, thrown errors and timeouts all come back as ok:false outcomes.
   * An outcome that arrives after `ctx.signal` was aborted is not reported to
   * the observer: whoever aborted it reports it (the runner: `reportTimeout`).
   */
  async call(name: string, rawArgs: string, ctx: ToolContext): Promise<ToolOutcome> {
    const t0 = this.now();
    const tool = this.tools.get(name);
    if (!tool) {
      return this.report(UNKNOWN_TOOL, t0, ctx, {
        ok: false,
        output: JSON.stringify({ error: `unknown tool ${name}` }),
        record: { error: 'unknown_tool' },
      });
    }
    let args: unknown;
    try {
      args = rawArgs.trim() === '' ? {} : JSON.parse(rawArgs);
    } catch {
      return this.report(name, t0, ctx, { ok: false, output: JSON.stringify({ error: 'arguments were not valid JSON' }), record: { error: 'bad_json' } }, 'invalid_arguments');
    }
    let outcome: ToolOutcome;
    try {
      outcome = await tool.run(args, ctx);
    } catch (err) {
      outcome = {
        ok: false,
        output: JSON.stringify({ error: TOOL_TROUBLE }),
        record: { error: 'tool_failed', message: err instanceof Error ? err.message : String(err) },
      };
    }
    return this.report(name, t0, ctx, outcome);
  }

  /** The runner gave up on a call to `name` after `durationMs` (its backstop timeout) and aborted it. */
  reportTimeout(name: string, durationMs: number): void {
    this.observe(this.tools.has(name) ? name : UNKNOWN_TOOL, 'timeout', durationMs);
  }

  private report(name: string, t0: number, ctx: ToolContext, outcome: ToolOutcome, kind: ToolOutcomeKind = outcomeKind(outcome)): ToolOutcome {
    if (!ctx.signal.aborted) this.observe(name, kind, this.now() - t0);
    return outcome;
  }

  private observe(name: string, kind: ToolOutcomeKind, durationMs: number): void {
    if (!this.onOutcome) return;
    try {
      this.onOutcome(name, kind, Math.max(0, durationMs));
    } catch {
      // An observer's failure (metrics) never changes a call's outcome.
    }
  }
}
