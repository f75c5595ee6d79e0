/**
 * The three stand-ins a pipeline line needs (PROVIDER=pipeline), started
 * together so the demo, the tests and the bench run one without credentials:
 * Deepgram (deepgram-server.ts) hears the scenario's caller turns in order,
 * the Chat Completions stand-in (llm-server.ts) answers them from the same
 * scenario, and ElevenLabs (elevenlabs-server.ts) speaks the answers (or,
 * with `tts: 'openai'`, OpenAI TTS: openai-tts-server.ts, PCM 24 kHz that
 * the pipeline resamples to the phone's µ-law).
 * `env` is what callbridge's config needs to use them. Timings default to
 * the vendors' published first-byte times (each stand-in's own defaults),
 * any of them overridable.
 */

import { startDeepgramStandIn, type DeepgramStandIn, type DeepgramStandInOptions } from './deepgram-server.js';
import { startElevenLabsStandIn, type ElevenStandIn, type ElevenStandInOptions } from './elevenlabs-server.js';
import { startLlmStandIn, type LlmStandIn, type LlmStandInOptions } from './llm-server.js';
import { startOpenAiTtsStandIn, type OpenAiTtsStandIn, type OpenAiTtsStandInOptions } from './openai-tts-server.js';
import { eligibilityScenario, type Scenario } from './scenarios.js';

/** The key every pipeline stand-in accepts. */
export const PIPELINE_STAND_IN_KEY = 'test-key';

export interface PipelineStandInOptions {
  scenario?: Scenario;
  deepgram?: Omit<DeepgramStandInOptions, 'texts' | 'apiKey'>;
  llm?: Omit<LlmStandInOptions, 'scenario' | 'apiKey'>;
  eleven?: Omit<ElevenStandInOptions, 'apiKey'>;
  /** Which TTS speaks (default ElevenLabs). */
  tts?: 'elevenlabs' | 'openai';
  openaiTts?: Omit<OpenAiTtsStandInOptions, 'apiKey'>;
}

export interface PipelineStandIns {
  deepgram: DeepgramStandIn;
  llm: LlmStandIn;
  eleven: ElevenStandIn;
  /** With `tts: 'openai'`. */
  openaiTts?: OpenAiTtsStandIn;
  /** The LLM stand-in's base URL (what a test harness reports as the model endpoint). */
  baseUrl: string;
  /** Settings for callbridge: PROVIDER=pipeline with every stage on its stand-in. */
  env: Record<string, string>;
  close(): Promise<void>;
}

export async function startPipelineStandIns(opts: PipelineStandInOptions = {}): Promise<PipelineStandIns> {
  const scenario = opts.scenario ?? eligibilityScenario;
  const started: { close(): Promise<void> }[] = [];
  try {
    const deepgram = await startDeepgramStandIn({ ...opts.deepgram, apiKey: PIPELINE_STAND_IN_KEY, texts: scenario.turns.map((t) => t.callerTranscript) });
    started.push(deepgram);
    const llm = await startLlmStandIn({ ...opts.llm, apiKey: PIPELINE_STAND_IN_KEY, scenario });
    started.push(llm);
    const eleven = await startElevenLabsStandIn({ ...opts.eleven, apiKey: PIPELINE_STAND_IN_KEY });
    started.push(eleven);
    const openaiTts = opts.tts === 'openai' ? await startOpenAiTtsStandIn({ ...opts.openaiTts, apiKey: PIPELINE_STAND_IN_KEY }) : undefined;
    if (openaiTts) started.push(openaiTts);
    return {
      deepgram,
      llm,
      eleven,
      ...(openaiTts ? { openaiTts } : {}),
      baseUrl: llm.url,
      env: {
        PROVIDER: 'pipeline',
        OPENAI_MODEL: 'gpt-4o-mini',
        DEEPGRAM_URL: deepgram.url,
        DEEPGRAM_API_KEY: PIPELINE_STAND_IN_KEY,
        PIPELINE_LLM_BASE_URL: llm.url,
        PIPELINE_LLM_API_KEY: PIPELINE_STAND_IN_KEY,
        ELEVENLABS_URL: eleven.url,
        ELEVENLABS_API_KEY: PIPELINE_STAND_IN_KEY,
        ...(openaiTts ? { PIPELINE_TTS: 'openai', OPENAI_TTS_BASE_URL: openaiTts.baseURL } : { PIPELINE_TTS: 'elevenlabs' }),
      },
      close: async () => {
        await Promise.all(started.map((s) => s.close()));
      },
    };
  } catch (err) {
    await Promise.all(started.map((s) => s.close()));
    throw err;
  }
}
