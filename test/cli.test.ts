/** The CLI entry point: usage, unknown commands, and `serve` refusing to start without what it needs. */
import { memoryIO } from './helpers/cli-io.js';
import { describe, expect, it } from 'vitest';
import { main } from '../src/cli/main.js';

const io = memoryIO;

describe('callbridge', () => {
  it('prints usage with --help, and usage with exit 2 when no command is given', async () => {
    const a = io();
    expect(await main(['--help'], a.io)).toBe(0);
    expect(a.out()).toMatch(/callbridge <command>/);
    const b = io();
    expect(await main([], b.io)).toBe(2);
    expect(b.err()).toMatch(/usage/);
  });

  it('names an unknown command', async () => {
    const t = io();
    expect(await main(['dance'], t.io)).toBe(2);
    expect(t.err()).toMatch(/unknown command 'dance'/);
  });

  it('serve without OPENAI_API_KEY says so and points to the demo', async () => {
    const t = io({});
    expect(await main(['serve'], t.io)).toBe(2);
    expect(t.err()).toMatch(/OPENAI_API_KEY is not set/);
    expect(t.err()).toMatch(/npm run demo/);
  });

  it('serve with a bad configuration lists every problem and does not start', async () => {
    const t = io({ PORT: 'x', AUDIO_MODE: 'stereo', OPENAI_API_KEY: 'k' });
    expect(await main(['serve'], t.io)).toBe(2);
    expect(t.err()).toMatch(/PORT/);
    expect(t.err()).toMatch(/AUDIO_MODE/);
  });

  it('demo rejects bad options before starting anything', async () => {
    const t = io();
    expect(await main(['demo', '--calls', '0'], t.io)).toBe(2);
    expect(await main(['demo', '--mode', 'loud'], t.io)).toBe(2);
    expect(t.err()).toMatch(/--calls takes/);
    expect(t.err()).toMatch(/--mode is transcode or passthrough/);
  });
});
