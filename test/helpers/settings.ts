/**
 * Settings for the modules that take their own (EdgeSettings, RelaySettings),
 * so their tests need no loadConfig. The defaults are loadConfig({})'s as
 * main.ts maps them (test/config.test.ts checks that they stay so); a test
 * overrides what it is about.
 */
import { randomBytes } from 'node:crypto';
import { defaultPromptPath, loadPrompt, type PromptName } from '../../src/call/prompts.js';
import type { RelaySettings } from '../../src/call/relay.js';
import { loadAgentFile } from '../../src/agent/load.js';
import { DEFAULT_AGENT_FILE } from '../../src/config.js';
import type { EdgeSettings } from '../../src/server/app.js';

/** The shipped line (DEFAULT_AGENT_FILE): its instructions and greeting are the relay settings' defaults. */
const shipped = loadAgentFile(DEFAULT_AGENT_FILE);
if (!shipped.ok) throw new Error(`the shipped agent file does not load:\n${shipped.problems.join('\n')}`);
const DEFAULT_INSTRUCTIONS = shipped.agent.instructions;
const DEFAULT_GREETING = shipped.agent.greeting;

export function edgeSettings(over: Partial<EdgeSettings> = {}): EdgeSettings {
  return {
    host: '0.0.0.0',
    port: 5002,
    publicUrl: undefined,
    twilioAuthToken: undefined,
    serveMetrics: true,
    adminToken: undefined,
    streamUrlTemplate: undefined,
    instanceId: undefined,
    trustProxy: [],
    rateLimit: { burst: 500, perSecond: 200 },
    unsignedLimit: { burst: 5, perMinute: 10 },
    callerLimit: { burst: 5, perMinute: 10 },
    signedLimit: { burst: 1000, perSecond: 100 },
    maxStreamsAwaitingStart: 200,
    ...over,
  };
}

/** The committed prompts (assets/prompts), as main.ts loads them by default. */
export function committedPrompts(): RelaySettings['prompts'] {
  const load = (name: PromptName) => {
    const r = loadPrompt(defaultPromptPath(name));
    if (!r.ok) throw new Error(r.error);
    return r.prompt.ulaw;
  };
  return { repeat: load('repeat'), hold: load('hold'), apology: load('apology'), goodbye: load('goodbye') };
}

/** A fresh random admission secret each time (as loadConfig makes without ADMISSION_SECRET). */
export function relaySettings(over: Partial<RelaySettings> = {}): RelaySettings {
  return {
    maxConcurrentCalls: 1000,
    maxPendingCalls: 200,
    prewarmTtlMs: 30_000,
    startTimeoutMs: 5000,
    admissionSecret: randomBytes(32),
    signed: false,
    instructions: DEFAULT_INSTRUCTIONS,
    voice: 'marin',
    audioMode: 'transcode',
    model: 'gpt-realtime',
    playoutLeadMs: 100,
    playoutLeadMaxMs: 500,
    outboundChunkMs: 100,
    inboundBatchMs: 20,
    vadSilenceMs: 500,
    silenceTimeoutMs: 300_000,
    maxCallMs: 3_600_000,
    greeting: DEFAULT_GREETING,
    responseRetryMs: [250, 1000],
    prompts: committedPrompts(),
    ...over,
  };
}
