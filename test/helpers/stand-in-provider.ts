/**
 * The real OpenAI Realtime provider pointed at a local model stand-in
 * (src/sim/model-server.ts), as the relay-level tests wire it without
 * startCallbridge: the stand-in's ws URL, a dummy key, default VAD.
 */
import { ReachabilityTracker } from '../../src/call/reachability.js';
import { silentLogger } from '../../src/log.js';
import { OpenAIRealtimeProvider } from '../../src/realtime/openai-provider.js';

export function standInProvider(baseUrl: string, format: 'pcm24k' | 'ulaw8k' = 'pcm24k'): OpenAIRealtimeProvider {
  return new OpenAIRealtimeProvider({
    url: `${baseUrl.replace(/^http/, 'ws')}/realtime`,
    model: 'gpt-realtime',
    apiKey: 'k',
    connectTimeoutMs: 10_000,
    format,
    transcriptionModel: 'gpt-4o-transcribe',
    vad: { threshold: 0.5, prefixPaddingMs: 300, silenceDurationMs: 500 },
    log: silentLogger,
    reachability: new ReachabilityTracker(),
  });
}
