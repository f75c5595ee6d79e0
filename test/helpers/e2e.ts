/**
 * callbridge in the test's own process against the model stand-in, for end-to-end
 * tests on loopback: `useCallbridge(name)` at the top of a test file gives a
 * `start` that opens a stand-in and a callbridge (port 0, its own SQLite file
 * in a temporary folder of the file's), and closes both after each test.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach } from 'vitest';
import { loadConfig, type Config } from '../../src/config.js';
import { silentLogger } from '../../src/log.js';
import { startCallbridge, type Callbridge, type StartOptions } from '../../src/main.js';
import { startModelStandIn, type ModelStandIn, type ModelStandInOptions } from '../../src/sim/model-server.js';

export interface StartCallbridge {
  /** Stand-in options over fast defaults (audio 8× real time, responses after 50 ms, transcripts after 100 ms). */
  model?: ModelStandInOptions;
  /**
   * Environment over a loopback base (PORT 0, HOST 127.0.0.1, the stand-in as
   * OPENAI_BASE_URL, a fresh CALLBRIDGE_DB, VAD_SILENCE_DURATION_MS 300). It
   * names PUBLIC_URL and how requests are signed (TWILIO_AUTH_TOKEN, or ALLOW_UNSIGNED).
   */
  env: Record<string, string>;
  edge?: StartOptions['edge'];
}

export interface Started {
  app: Callbridge;
  model: ModelStandIn;
  config: Config;
  /** http://127.0.0.1:<port> */
  baseUrl: string;
}

/** Registers this file's clean-up (vitest hooks): call once, at the top level of a test file. */
export function useCallbridge(name: string): (opts: StartCallbridge) => Promise<Started> {
  const dir = mkdtempSync(join(tmpdir(), `callbridge-${name}-`));
  const running: Started[] = [];
  afterEach(async () => {
    for (const r of running.splice(0).reverse()) {
      await r.app.close();
      await r.model.close();
    }
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  let n = 0;
  return async (opts) => {
    const model = await startModelStandIn({ audioSpeedup: 8, responseDelayMs: 50, transcriptDelayMs: 100, ...opts.model });
    let app: Callbridge;
    let config: Config;
    try {
      config = loadConfig({
        PORT: '0',
        HOST: '127.0.0.1',
        OPENAI_BASE_URL: model.baseUrl,
        OPENAI_API_KEY: 'test-key',
        CALLBRIDGE_DB: join(dir, `calls-${++n}.db`),
        VAD_SILENCE_DURATION_MS: '300',
        ...opts.env,
      });
      // The process environment as the test gives it: what loadConfig checked is what the tools read (header secrets).
      app = await startCallbridge(config, silentLogger, { edge: opts.edge, env: { ...process.env, ...opts.env } });
    } catch (err) {
      await model.close();
      throw err;
    }
    const started = { app, model, config, baseUrl: `http://127.0.0.1:${app.port}` };
    running.push(started);
    return started;
  };
}
