import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, realtimeUrlFromBase } from '../src/config.js';

describe('loadConfig', () => {
  it('fills every default from an empty environment', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ port: 5002, audioMode: 'transcode', dbPath: './data/callbridge.db', publicUrl: undefined });
    expect(c.openai).toMatchObject({ realtimeUrl: 'wss://api.openai.com/v1/realtime', model: 'gpt-realtime', voice: 'marin' });
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
