/** What a tool is, as a model sees it: a leaf module that call/, realtime/ and tools/ all import. */

/** A function tool as the model sees it: name, description, JSON-schema parameters. */
export interface ToolSpec {
  name: string;
  description: string;
  parameters: Record<string, unknown>;
}

/** Where a header's value comes from: written in the agent file (`value`), or read from the environment (`env`, a secret). */
export type HeaderSource = { value: string } | { env: string; prefix?: string };

/**
 * A tool served over HTTP, as the agent file declares it (tools/http-tool.ts
 * runs it). `parameters` is a JSON Schema (draft 2020-12) object schema; the
 * model's arguments are checked against it before any request.
 */
export interface HttpToolDef extends ToolSpec {
  kind: 'http';
  /** POST here (https, or http to a loopback host). */
  url: string;
  /** Header name → where its value comes from; secrets come from the environment, never the file. */
  headers: Record<string, HeaderSource>;
  timeoutMs: number;
  /** Only an idempotent tool is tried again (after a 429/503 with Retry-After, or a network error). */
  idempotent: boolean;
  /** Further attempts for an idempotent tool. */
  retries: number;
  /** Instructions for what the caller hears while it runs (default: TOOL_FILLER_INSTRUCTIONS). */
  filler: string | undefined;
  /** Top-level fields of the response kept in the call record ([] = none, ['*'] = all). */
  recordFields: string[];
  /** Send the caller's number in the request (personal data: off unless the file says so). */
  sendCallerNumber: boolean;
}

/** A tool built into callbridge, named in the agent file (its settings come from the environment). */
export interface BuiltinToolDef {
  kind: 'builtin';
  name: 'check_eligibility';
}

export type ToolDef = HttpToolDef | BuiltinToolDef;
