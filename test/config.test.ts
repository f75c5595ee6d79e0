import { describe, expect, it } from 'vitest';
import { defaultPromptPath } from '../src/call/prompts.js';
import { ConfigError, DEFAULT_AGENT_FILE, liveUrlFromBase, loadConfig, realtimeUrlFromBase } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { edgeSettingsFromConfig, eligibilitySettingsFromConfig, loadPromptAudio, relaySettingsFromConfig, startCallbridge } from '../src/main.js';
import { committedPrompts, edgeSettings, relaySettings } from './helpers/settings.js';

describe('loadConfig', () => {
  it('fills every default from an empty environment', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ port: 5002, audioMode: 'transcode', dbPath: './data/callbridge.db', publicUrl: undefined });
    expect(c.openai).toMatchObject({ realtimeUrl: 'wss://api.openai.com/v1/realtime', model: 'gpt-realtime', voice: 'marin' });
    // The default agent is the shipped agents/eligibility.yaml (test/agent-file.test.ts checks it is today's line).
    expect(c.agents.map((a) => [a.name, a.file])).toEqual([['eligibility', DEFAULT_AGENT_FILE]]);
  });

  it('reports every problem at once', () => {
    let err: unknown;
    try {
      loadConfig({ PORT: 'eighty', AUDIO_MODE: 'loud', TRANSCRIPT_KEY: 'abc', PUBLIC_URL: 'ftp://x', ELIGIBILITY_API_KEY: 'k' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems.join('\n');
    for (const name of ['PORT', 'AUDIO_MODE', 'TRANSCRIPT_KEY', 'PUBLIC_URL', 'ELIGIBILITY_API_KEY']) expect(problems).toContain(name);
    expect((err as ConfigError).problems).toHaveLength(5);
  });

  it('treats empty values as unset and maps base URLs to the realtime socket', () => {
    expect(loadConfig({ PORT: '' }).port).toBe(5002);
    expect(realtimeUrlFromBase('http://127.0.0.1:9000/v1')).toBe('ws://127.0.0.1:9000/v1/realtime');
    expect(realtimeUrlFromBase('https://example.com/v1/')).toBe('wss://example.com/v1/realtime');
    expect(realtimeUrlFromBase('wss://gw.example.com/realtime')).toBe('wss://gw.example.com/realtime');
  });

  it('reads instructions from a file, and says when it cannot', () => {
    expect(() => loadConfig({ INSTRUCTIONS_FILE: '/nonexistent/prompt.txt' })).toThrow(/INSTRUCTIONS_FILE: cannot read/);
    expect(() => loadConfig({ INSTRUCTIONS: 'a', INSTRUCTIONS_FILE: 'b' })).toThrow(/set one, not both/);
  });

  it('TRANSCRIPT_KEY_OLD: comma-separated 64-hex keys, read only, only beside a TRANSCRIPT_KEY', () => {
    const [k1, k2, k3] = ['a1', 'b2', 'c3'].map((b) => b.repeat(32));
    expect(loadConfig({}).transcriptKeysOld).toEqual([]);
    const c = loadConfig({ TRANSCRIPT_KEY: k1, TRANSCRIPT_KEY_OLD: `${k2}, ${k3}` });
    expect(c.transcriptKeysOld.map((k) => k.toString('hex'))).toEqual([k2, k3]);
    expect(() => loadConfig({ TRANSCRIPT_KEY: k1, TRANSCRIPT_KEY_OLD: 'abcd' })).toThrow(/TRANSCRIPT_KEY_OLD: must be one or more comma-separated keys of 64 hex/);
    expect(() => loadConfig({ TRANSCRIPT_KEY: k1, TRANSCRIPT_KEY_OLD: `${k2},` })).toThrow(/TRANSCRIPT_KEY_OLD/);
    expect(() => loadConfig({ TRANSCRIPT_KEY_OLD: k2 })).toThrow(/TRANSCRIPT_KEY_OLD: set without TRANSCRIPT_KEY/);
  });
});

describe('loadConfig: the provider (PROVIDER, an agent file\'s provider)', () => {
  it('realtime by default; PROVIDER=live takes gpt-live-1.1 and the Live endpoint of OPENAI_BASE_URL', () => {
    expect(loadConfig({}).openai).toMatchObject({ provider: 'realtime', model: 'gpt-realtime' });
    const live = loadConfig({ PROVIDER: 'live' }).openai;
    expect(live).toMatchObject({ provider: 'live', model: 'gpt-live-1.1', liveUrl: 'wss://api.openai.com/v1/live/sessions', liveBackendModel: 'gpt-5-mini' });
    expect(liveUrlFromBase('http://127.0.0.1:9/v1')).toBe('ws://127.0.0.1:9/v1/live/sessions');
    expect(liveUrlFromBase('ws://127.0.0.1:9/live')).toBe('ws://127.0.0.1:9/live');
    expect(loadConfig({ PROVIDER: 'live', OPENAI_MODEL: 'gpt-live-1', LIVE_BACKEND_MODEL: 'gpt-5' }).openai).toMatchObject({ model: 'gpt-live-1', liveBackendModel: 'gpt-5' });
  });
  it('refuses a model of the other protocol and an unknown provider, naming where each came from', () => {
    expect(() => loadConfig({ PROVIDER: 'live', OPENAI_MODEL: 'gpt-realtime-2' })).toThrow(/OPENAI_MODEL: "gpt-realtime-2" \(from OPENAI_MODEL\) is not a GPT-Live model, and the provider is live \(from PROVIDER\)/);
    expect(() => loadConfig({ OPENAI_MODEL: 'gpt-live-1.1' })).toThrow(/is not a Realtime model, and the provider is realtime \(from the default\)/);
    expect(() => loadConfig({ PROVIDER: 'stt-llm' })).toThrow(/PROVIDER/);
    expect(() => loadConfig({ PROVIDER: 'pipeline', OPENAI_MODEL: 'gpt-realtime-2' })).toThrow(/"gpt-realtime-2" \(from OPENAI_MODEL\) is not a chat \(LLM\) model for the pipeline/);
    expect(() => loadConfig({ PROVIDER: 'pipeline', OPENAI_MODEL: 'gpt-live-1.1' })).toThrow(/not a chat \(LLM\) model/);
  });
  it('PROVIDER=pipeline: gpt-4o-mini on OPENAI_BASE_URL, Deepgram and ElevenLabs µ-law by default, passthrough audio; transcode refused', () => {
    const c = loadConfig({ PROVIDER: 'pipeline', OPENAI_API_KEY: 'sk-a', DEEPGRAM_API_KEY: 'dg', ELEVENLABS_API_KEY: 'el' });
    expect(c.openai).toMatchObject({ provider: 'pipeline', model: 'gpt-4o-mini' });
    expect(c.audioMode).toBe('passthrough');
    expect(c.pipeline).toEqual({
      stt: { url: 'wss://api.deepgram.com/v1/listen', apiKey: 'dg', model: 'nova-3', endpointingMs: 300 },
      llm: { baseUrl: 'https://api.openai.com/v1', apiKey: 'sk-a' },
      tts: { vendor: 'elevenlabs', url: 'wss://api.elevenlabs.io', apiKey: 'el', model: 'eleven_flash_v2_5', voiceId: '21m00Tcm4TlvDq8ikWAM', format: 'ulaw_8000' },
      vad: 'core',
    });
    const o = loadConfig({ PROVIDER: 'pipeline', OPENAI_MODEL: 'gpt-4.1-mini', PIPELINE_TTS: 'openai', PIPELINE_LLM_BASE_URL: 'http://127.0.0.1:9/v1', PIPELINE_LLM_API_KEY: 'k2', VOICE: 'marin', PIPELINE_VAD: 'silero' });
    expect(o.pipeline.tts).toEqual({ vendor: 'openai', url: 'http://127.0.0.1:9/v1', apiKey: 'k2', model: 'gpt-4o-mini-tts', voiceId: 'marin', format: 'pcm_24000' });
    expect(o.pipeline.vad).toBe('silero');
    expect(loadConfig({}).audioMode).toBe('transcode');
    expect(() => loadConfig({ PROVIDER: 'pipeline', AUDIO_MODE: 'transcode' })).toThrow(/AUDIO_MODE: transcode does not apply to PROVIDER=pipeline/);
  });
  it('prices a pipeline call by its stages (each overridable), with no speech tokens; an unlisted stage model at its reference', () => {
    const c = loadConfig({ PROVIDER: 'pipeline' });
    expect(c.pricesKnown).toBe(true);
    expect(c.prices).toMatchObject({ audioInPerMTok: 0, textOutPerMTok: 0 });
    expect(c.prices.pipeline!.llmInPerMTok).toBe(0.15);
    expect(c.prices.pipeline!.sttPerMin).toBeGreaterThan(0);
    expect(c.prices.pipeline!.ttsPer1kChars).toBeGreaterThan(0);
    const o = loadConfig({ PROVIDER: 'pipeline', PRICE_STT_PER_MIN: '0.01', PRICE_LLM_INPUT_PER_MTOK: '1', PRICE_LLM_CACHED_INPUT_PER_MTOK: '0.5', PRICE_LLM_OUTPUT_PER_MTOK: '2', PRICE_TTS_PER_1K_CHARS: '0.1' });
    expect(o.prices.pipeline).toEqual({ sttPerMin: 0.01, llmInPerMTok: 1, llmCachedInPerMTok: 0.5, llmOutPerMTok: 2, ttsPer1kChars: 0.1 });
    expect(loadConfig({ PROVIDER: 'pipeline', OPENAI_MODEL: 'my-local-llama' }).pricesKnown).toBe(false);
    expect(loadConfig({}).prices.pipeline).toBeUndefined();
  });
  it('prices a Live call per active minute: the list price, PRICE_ACTIVE_AUDIO_PER_MIN over it; an unlisted Live model at gpt-live-1.1\'s', () => {
    expect(loadConfig({ PROVIDER: 'live' })).toMatchObject({ pricesKnown: true, prices: { activeAudioPerMin: 0.05, audioInPerMTok: 0 } });
    expect(loadConfig({ PROVIDER: 'live', PRICE_ACTIVE_AUDIO_PER_MIN: '0.04' }).prices.activeAudioPerMin).toBe(0.04);
    expect(loadConfig({ PROVIDER: 'live', OPENAI_MODEL: 'gpt-live-1' })).toMatchObject({ pricesKnown: false, prices: { activeAudioPerMin: 0.05, audioInPerMTok: 0 } });
  });
});

describe('loadConfig: model health', () => {
  it('defaults MODEL_PROBE_INTERVAL_MS 5 s, MODEL_FAILURE_TTL_MS 60 s; reads them; refuses bad values, all at once', () => {
    expect(loadConfig({})).toMatchObject({ modelProbe: { intervalMs: 5000, failureTtlMs: 60_000 } });
    expect(loadConfig({ MODEL_PROBE_INTERVAL_MS: '0', MODEL_FAILURE_TTL_MS: '1000' })).toMatchObject({ modelProbe: { intervalMs: 0, failureTtlMs: 1000 } });
    let err: unknown;
    try {
      loadConfig({ MODEL_PROBE_INTERVAL_MS: 'often', MODEL_FAILURE_TTL_MS: '999' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems;
    expect(problems).toHaveLength(2);
    for (const name of ['MODEL_PROBE_INTERVAL_MS', 'MODEL_FAILURE_TTL_MS']) expect(problems.join('\n')).toContain(name);
  });
});

describe('loadConfig: drain grace', () => {
  it('defaults DRAIN_GRACE_MS to 10 s (two of the shipped Caddyfile\'s 5 s health intervals); 0 allowed; refuses a negative or non-number', () => {
    expect(loadConfig({}).drainGraceMs).toBe(10_000);
    expect(loadConfig({ DRAIN_GRACE_MS: '0' }).drainGraceMs).toBe(0);
    expect(() => loadConfig({ DRAIN_GRACE_MS: '-1' })).toThrow(/DRAIN_GRACE_MS/);
    expect(() => loadConfig({ DRAIN_GRACE_MS: 'soon' })).toThrow(/DRAIN_GRACE_MS/);
  });
});

describe('MAX_CONCURRENT_CALLS and the DSP slots (issue 22, item 8)', () => {
  it('over the DSP slot count is a start-up error naming the limit (transcode); passthrough uses no slot', async () => {
    const { DSP_SLOTS } = await import('../src/dsp/index.js');
    expect(loadConfig({ MAX_CONCURRENT_CALLS: String(DSP_SLOTS) }).maxConcurrentCalls).toBe(DSP_SLOTS);
    expect(() => loadConfig({ MAX_CONCURRENT_CALLS: String(DSP_SLOTS + 1) })).toThrow(
      new RegExp(`MAX_CONCURRENT_CALLS: ${DSP_SLOTS + 1} is more than the ${DSP_SLOTS} calls`),
    );
    expect(loadConfig({ MAX_CONCURRENT_CALLS: '10000', AUDIO_MODE: 'passthrough' }).maxConcurrentCalls).toBe(10_000);
  });
});

describe('loadConfig: signed-request limits', () => {
  it('reads the signed-request limit and the cap on streams awaiting start (issue 22), and lists bad values', () => {
    expect(loadConfig({})).toMatchObject({ signedLimit: { burst: 1000, perSecond: 100 }, maxStreamsAwaitingStart: 200 });
    expect(loadConfig({ RATE_LIMIT_SIGNED_BURST: '50', RATE_LIMIT_SIGNED_PER_SECOND: '2.5', MAX_STREAMS_AWAITING_START: '7' })).toMatchObject({
      signedLimit: { burst: 50, perSecond: 2.5 },
      maxStreamsAwaitingStart: 7,
    });
    let err: unknown;
    try {
      loadConfig({ RATE_LIMIT_SIGNED_BURST: '0', RATE_LIMIT_SIGNED_PER_SECOND: '-1', MAX_STREAMS_AWAITING_START: 'many' });
    } catch (e) {
      err = e;
    }
    const problems = (err as ConfigError).problems.join('\n');
    for (const name of ['RATE_LIMIT_SIGNED_BURST', 'RATE_LIMIT_SIGNED_PER_SECOND', 'MAX_STREAMS_AWAITING_START']) expect(problems).toContain(name);
  });
});

describe('settings only at the root: main.ts maps the Config to each module', () => {
  it('loadConfig names the prompt files and does not read them; startCallbridge lists their problems with the signing one, before anything opens', async () => {
    const c = loadConfig({ HOLD_AUDIO: '/nonexistent/hold.ulaw', GOODBYE_AUDIO: '/nonexistent/bye.wav' });
    expect(c.promptFiles).toMatchObject({ hold: '/nonexistent/hold.ulaw', goodbye: '/nonexistent/bye.wav' });
    expect(c.promptFiles.repeat).toBe(defaultPromptPath('repeat'));
    const err = await startCallbridge({ ...c, dbPath: '/nonexistent/dir/never-opened.db' }, createLogger('silent')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems).toEqual([
      expect.stringMatching(/^HOLD_AUDIO: prompt \/nonexistent\/hold\.ulaw: cannot read/),
      expect.stringMatching(/^GOODBYE_AUDIO: prompt \/nonexistent\/bye\.wav: cannot read/),
      expect.stringMatching(/^TWILIO_AUTH_TOKEN: not set/),
    ]);
    const ok = loadPromptAudio(loadConfig({}).promptFiles);
    expect(ok.ok && ok.prompts.hold.length).toBeGreaterThan(0);
  });

  it("the tests' settings (test/helpers/settings.ts) are loadConfig({})'s as main.ts maps them", () => {
    const c = loadConfig({});
    expect(edgeSettingsFromConfig(c)).toEqual(edgeSettings());
    const prompts = committedPrompts();
    const { admissionSecret, ...relay } = relaySettingsFromConfig(c, prompts);
    const { admissionSecret: helperSecret, ...helper } = relaySettings({ prompts });
    expect(relay).toEqual(helper);
    expect([admissionSecret.length, helperSecret.length]).toEqual([32, 32]);
    expect(eligibilitySettingsFromConfig(c)).toEqual({ apiUrl: undefined, apiKey: undefined, timeoutMs: 3000, retries: 2 });
  });
});

describe('loadConfig: outbound calls (issue 16)', () => {
  const AC = `AC${'a'.repeat(32)}`;
  const SK = `SK${'b'.repeat(32)}`;
  it('is off without TWILIO_ACCOUNT_SID; with it, needs PUBLIC_URL and a key (or the auth token), all problems at once', () => {
    expect(loadConfig({}).outbound).toBeUndefined();
    let err: unknown;
    try {
      loadConfig({ TWILIO_ACCOUNT_SID: AC, TWILIO_API_KEY_SID: SK, OUTBOUND_CPS: '0', OUTBOUND_FROM: '5550001111' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems.join('\n');
    expect(problems).toMatch(/PUBLIC_URL: required with TWILIO_ACCOUNT_SID/);
    expect(problems).toMatch(/TWILIO_API_KEY_SID and TWILIO_API_KEY_SECRET: set both or neither/);
    expect(problems).toMatch(/OUTBOUND_CPS/);
    expect(problems).toMatch(/OUTBOUND_FROM/);
    const c = loadConfig({
      TWILIO_ACCOUNT_SID: AC, TWILIO_API_KEY_SID: SK, TWILIO_API_KEY_SECRET: 'secret', PUBLIC_URL: 'https://calls.example.com',
      TWILIO_API_BASE: 'http://127.0.0.1:4010', OUTBOUND_FROM: '+15550001111', OUTBOUND_CPS: '2.5',
    });
    expect(c.outbound).toEqual({ accountSid: AC, apiKeySid: SK, apiKeySecret: 'secret', apiBase: 'http://127.0.0.1:4010', from: '+15550001111', cps: 2.5 });
    expect(loadConfig({ TWILIO_ACCOUNT_SID: AC, TWILIO_AUTH_TOKEN: 'tok', PUBLIC_URL: 'https://calls.example.com' }).outbound?.cps).toBe(1);
  });
});
