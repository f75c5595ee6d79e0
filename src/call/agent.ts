/**
 * One agent as a call runs it: what it says, which tools it has, and the
 * call-control policies (transfer to a person, the agent's hang-up, silence
 * reprompts, the maximum duration warning). A leaf of the call layer: the
 * agent file (src/agent/) fills these in, main.ts builds a CallAgent per
 * agent, the relay picks one per call, and call/control.ts applies the
 * policies. Times in ms unless the name says otherwise.
 */
import type { ToolRegistry } from '../tools/registry.js';
import type { ToolSpec } from '../tools/spec.js';

/** A person (or queue) the agent may hand a call to. The model names it; it can never dial anything else. */
export interface TransferTarget {
  /** What the model calls it: [a-z0-9_-], 1–40 chars. */
  name: string;
  /** What the model is told about it (when to pick it). */
  description: string;
  /** Where `<Dial>` goes: an E.164 number or a SIP URI. */
  to: { number: string } | { sip: string };
  /** Said to the person who answers, before the caller is connected (`<Say>` through the dial's `url`). */
  whisper: string | undefined;
}

export interface TransferPolicy {
  targets: TransferTarget[];
  /** The target the keypad digit goes to (a name in `targets`). */
  defaultTarget: string;
  /** A keypad digit that transfers to `defaultTarget` without asking the model; undefined = none. */
  keypadDigit: string | undefined;
  /** `<Dial timeout>`, seconds of ringing before no-answer. */
  dialTimeoutS: number;
  /** A dial that fails (busy, no-answer, failed, canceled): back to the agent, or a spoken message and hang up. */
  onFailure: { action: 'agent' } | { action: 'message'; message: string };
  /** Longest wait for the handoff sentence to be heard before the stream is closed anyway. */
  handoffWaitMs: number;
}

export interface EndCallPolicy {
  /** The model is offered `end_call`. */
  enabled: boolean;
  /** Longest wait for the goodbye to be heard (its last mark) before the call ends anyway. */
  goodbyeWaitMs: number;
}

export interface SilencePolicy {
  /** Caller silence before the model is asked to check ("are you still there?"); undefined = never. */
  repromptAfterMs: number | undefined;
  /** Instructions for that reprompt. */
  reprompt: string;
  /** Reprompts at most, per silence (caller speech resets the count). */
  maxReprompts: number;
  /** Silence that ends the call (`silence_timeout`). */
  timeoutMs: number;
}

export interface MaxDurationPolicy {
  /** The call ends `max_duration` at this. */
  maxCallMs: number;
  /** Warn this long before `maxCallMs`; undefined = no warning. */
  warnBeforeMs: number | undefined;
  /** Instructions for the warning. */
  warning: string;
}

export interface RecordingPolicy {
  /** The call is recorded (stereo: caller | heard, sealed with RECORDING_KEY); undefined = as RECORDING says (config.ts settles it). */
  enabled: boolean | undefined;
  /** A recorded disclosure (µ-law 8 kHz), played before the greeting of a recorded call; undefined = none. */
  disclosure: Uint8Array | undefined;
  /** A keypad digit that stops the recording for good (nothing of the call is kept; the record says `opted_out`); undefined = none. */
  optOutDigit: string | undefined;
}

/** Not recorded, no disclosure, no opt-out digit. */
export const NO_RECORDING: RecordingPolicy = { enabled: false, disclosure: undefined, optOutDigit: undefined };

export interface CallPolicies {
  transfer: TransferPolicy | undefined;
  endCall: EndCallPolicy;
  silence: SilencePolicy;
  maxDuration: MaxDurationPolicy;
  recording: RecordingPolicy;
}

/** An agent, ready for calls: main.ts builds one per agent file. */
export interface CallAgent {
  name: string;
  instructions: string;
  /** Instructions for the first response; '' = wait for the caller. */
  greeting: string;
  voice: string;
  /** The agent's own tools (HTTP ones and built-ins); the control tools (transfer_call, end_call) are added by call/control.ts. */
  tools: ToolRegistry;
  policies: CallPolicies;
}

/** The control tools' names: an agent file's own tools may not take them. */
export const TRANSFER_TOOL = 'transfer_call';
export const END_CALL_TOOL = 'end_call';
export const CONTROL_TOOLS: readonly string[] = [TRANSFER_TOOL, END_CALL_TOOL];

/**
 * The control tools the model is offered besides the agent's own: `transfer_call`
 * (its `target` an enum of the file's target names, so the model can name no
 * other) when the agent has transfer targets, `end_call` when its policy enables it.
 */
export function controlToolSpecs(policies: CallPolicies): ToolSpec[] {
  const specs: ToolSpec[] = [];
  const t = policies.transfer;
  if (t) {
    specs.push({
      name: TRANSFER_TOOL,
      description:
        'Hand the call to a person. First say one short sentence to the caller (e.g. "Let me connect you to billing."), then call this. ' +
        `Targets: ${t.targets.map((x) => `${x.name} (${x.description})`).join('; ')}.`,
      parameters: {
        type: 'object',
        properties: { target: { type: 'string', enum: t.targets.map((x) => x.name), description: 'Who to hand the call to.' } },
        required: ['target'],
        additionalProperties: false,
      },
    });
  }
  if (policies.endCall.enabled) {
    specs.push({
      name: END_CALL_TOOL,
      description: 'End the call. Only once the caller has nothing more to ask: say goodbye first, then call this. The line closes once your goodbye has been heard.',
      parameters: { type: 'object', properties: {}, additionalProperties: false },
    });
  }
  return specs;
}
