/**
 * Tools the model may call. A tool validates its own arguments and never
 * throws to the caller of `run`: every outcome, including bad arguments and
 * back-end failures, is a ToolOutcome the model can speak about.
 */
import type { ToolSpec } from './spec.js';

export interface ToolContext {
  callSid: string;
  signal: AbortSignal;
}

export interface ToolOutcome {
  ok: boolean;
  /** Compact text for the model to speak from (sent as the function_call_output). */
  output: string;
  /** Structured result kept in the call record (may hold personal data: never logged). */
  record: unknown;
}

export interface Tool extends ToolSpec {
  run(args: unknown, ctx: ToolContext): Promise<ToolOutcome>;
}

export const TOOL_TROUBLE = "I'm having trouble accessing the system right now.";

export class ToolRegistry {
  private readonly tools = new Map<string, Tool>();

  constructor(tools: Tool[] = []) {
    for (const t of tools) this.register(t);
  }

  register(tool: Tool): void {
    if (this.tools.has(tool.name)) throw new Error(`tool ${tool.name} registered twice`);
    this.tools.set(tool.name, tool);
  }

  specs(): ToolSpec[] {
    return [...this.tools.values()].map(({ name, description, parameters }) => ({ name, description, parameters }));
  }

  /**
   * Run a tool by name with raw JSON arguments. Unknown tools, unparseable
   * arguments, thrown errors and timeouts all come back as ok:false outcomes.
   */
  async call(name: string, rawArgs: string, ctx: ToolContext): Promise<ToolOutcome> {
    const tool = this.tools.get(name);
    if (!tool) return { ok: false, output: JSON.stringify({ error: `unknown tool ${name}` }), record: { error: 'unknown_tool' } };
    let args: unknown;
    try {
      args = rawArgs.trim() === '' ? {} : JSON.parse(rawArgs);
    } catch {
      return { ok: false, output: JSON.stringify({ error: 'arguments were not valid JSON' }), record: { error: 'bad_json' } };
    }
    try {
      return await tool.run(args, ctx);
    } catch (err) {
      return {
        ok: false,
        output: JSON.stringify({ error: TOOL_TROUBLE }),
        record: { error: 'tool_failed', message: err instanceof Error ? err.message : String(err) },
      };
    }
  }
}
