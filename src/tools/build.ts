/**
 * An agent's own tools, from the agent file's tool list: the built-in
 * `check_eligibility` (its back end from ELIGIBILITY_*: the mock, or the HTTP
 * API) and every HTTP tool (http-tool.ts), in the file's order, in one
 * registry that reports each call to `onOutcome` (per-tool metrics).
 * Start-up only: a tool that cannot be built (a schema that does not compile,
 * a name used twice) throws, for main.ts to report before serving a call.
 */
import type { Logger } from '../log.js';
import { HttpEligibilityBackend, MockEligibilityBackend, type EligibilityBackend } from './backends.js';
import { createEligibilityTool, type EligibilitySettings } from './eligibility.js';
import { createHttpTool } from './http-tool.js';
import { ToolRegistry, type Tool, type ToolOutcomeObserver } from './registry.js';
import type { ToolDef } from './spec.js';

export interface AgentToolDeps {
  eligibility: EligibilitySettings;
  /** Where header secrets are read from (process.env in main.ts). */
  env: Record<string, string | undefined>;
  log: Logger;
  onOutcome?: ToolOutcomeObserver;
  /** The HTTP tools' breaker clock, ms (default Date.now). */
  now?: () => number;
  fetch?: typeof fetch;
}

export function eligibilityBackend(e: EligibilitySettings): EligibilityBackend {
  return e.apiUrl
    ? new HttpEligibilityBackend({ url: e.apiUrl, apiKey: e.apiKey, timeoutMs: e.timeoutMs, retries: e.retries })
    : new MockEligibilityBackend();
}

export function createAgentTools(defs: ToolDef[], deps: AgentToolDeps): ToolRegistry {
  const tools: Tool[] = defs.map((def) =>
    def.kind === 'builtin'
      ? createEligibilityTool(eligibilityBackend(deps.eligibility), deps.log)
      : createHttpTool(def, { env: deps.env, log: deps.log, now: deps.now, fetch: deps.fetch }),
  );
  return new ToolRegistry(tools, { onOutcome: deps.onOutcome });
}
