/**
 * An agent file, loaded and checked (src/agent/load.ts reads YAML or JSON
 * into this; env variables that exist today override it in config.ts).
 * Everything a line needs that is not infrastructure: what the agent says,
 * its tools, its call-control policies, and how it places outbound calls.
 */
import type { CallPolicies } from '../call/agent.js';
import type { ReasoningEffort } from '../realtime/protocol.js';
import type { ToolDef } from '../tools/spec.js';

export interface OutboundPolicy {
  /** The `From` of calls this agent places (E.164); undefined = OUTBOUND_FROM. */
  callerId: string | undefined;
  /** When answering-machine detection hears a machine: leave `message` after the beep, or hang up. */
  voicemail: { action: 'message'; message: string } | { action: 'hangup' };
  /** Numbers this agent may call: E.164 prefixes ('+1', '+4420'); empty = any. */
  allow: string[];
  /** Numbers this agent never calls, whatever asks: E.164 prefixes ('+1900'). Checked after `allow`. */
  deny: string[];
}

export interface Agent {
  /** [a-z0-9_-], 1–40 chars: the name outbound calls and records use. */
  name: string;
  /** The absolute path of the file it came from (instructions_file is read relative to it). */
  file: string;
  instructions: string;
  /** Instructions for the first response; '' = wait for the caller. */
  greeting: string;
  voice: string;
  /** The voice-model provider; undefined = PROVIDER's, else realtime. */
  provider: 'realtime' | 'live' | 'pipeline' | undefined;
  /** The model and reasoning effort; undefined = OPENAI_MODEL / REASONING_EFFORT's default. */
  model: string | undefined;
  reasoningEffort: ReasoningEffort | undefined;
  /** Turn detection (server VAD); undefined fields = VAD_* defaults. */
  vad: { threshold: number | undefined; prefixPaddingMs: number | undefined; silenceDurationMs: number | undefined };
  tools: ToolDef[];
  policies: CallPolicies;
  outbound: OutboundPolicy;
}
