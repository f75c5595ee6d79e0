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
