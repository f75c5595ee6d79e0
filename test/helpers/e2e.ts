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
import { startLiveStandIn, type LiveStandIn, type LiveStandInOptions } from '../../src/sim/live-server.js';
import { startPipelineStandIns, type PipelineStandInOptions, type PipelineStandIns } from '../../src/sim/pipeline-standins.js';

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
  const start = useWith<ModelStandIn>(name);
  return async (opts) => {
    const model = await startModelStandIn({ audioSpeedup: 8, responseDelayMs: 50, transcriptDelayMs: 100, ...opts.model });
    const { app, config, baseUrl } = await start(model, opts.env, opts.edge);
    return { app, model, config, baseUrl };
  };
}

export interface StartLiveCallbridge {
  /** GPT-Live stand-in options over its defaults (audio 4× real time). */
  live?: LiveStandInOptions;
  /** Environment as for useCallbridge; PROVIDER=live and the stand-in's endpoint are set. */
  env: Record<string, string>;
  edge?: StartOptions['edge'];
}

export interface StartedLive {
  app: Callbridge;
  live: LiveStandIn;
  config: Config;
  baseUrl: string;
}

/** useCallbridge for PROVIDER=live: callbridge against the GPT-Live stand-in (src/sim/live-server.ts). */
export function useLiveCallbridge(name: string): (opts: StartLiveCallbridge) => Promise<StartedLive> {
  const start = useWith<LiveStandIn>(name);
  return async (opts) => {
    const live = await startLiveStandIn({ audioSpeedup: 8, responseDelayMs: 50, ...opts.live });
    const { app, config, baseUrl } = await start(live, { PROVIDER: 'live', OPENAI_BASE_URL: live.url, ...opts.env }, opts.edge);
    return { app, live, config, baseUrl };
  };
}

export interface StartPipelineCallbridge {
  /** The three stand-ins' options (scenario, timings, faults) over their defaults. */
  stages?: PipelineStandInOptions;
  /** Environment as for useCallbridge; PROVIDER=pipeline and the stand-ins' endpoints are set. */
  env: Record<string, string>;
  edge?: StartOptions['edge'];
}

export interface StartedPipeline {
  app: Callbridge;
  stages: PipelineStandIns;
  config: Config;
  baseUrl: string;
}

/** useCallbridge for PROVIDER=pipeline: callbridge against the Deepgram, Chat Completions and ElevenLabs stand-ins. */
export function usePipelineCallbridge(name: string): (opts: StartPipelineCallbridge) => Promise<StartedPipeline> {
  const start = useWith<PipelineStandIns>(name);
  return async (opts) => {
    const stages = await startPipelineStandIns(opts.stages);
    const { app, config, baseUrl } = await start(stages, { ...stages.env, ...opts.env }, opts.edge);
    return { app, stages, config, baseUrl };
  };
}

function useWith<Peer extends { baseUrl: string; close(): Promise<void> }>(name: string) {
  const dir = mkdtempSync(join(tmpdir(), `callbridge-${name}-`));
  const running: { app: Callbridge; peer: Peer }[] = [];
  afterEach(async () => {
    for (const r of running.splice(0).reverse()) {
      await r.app.close();
      await r.peer.close();
    }
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  let n = 0;
  return async (peer: Peer, env: Record<string, string>, edge: StartOptions['edge']) => {
    let app: Callbridge;
    let config: Config;
    try {
      config = loadConfig({
        PORT: '0',
        HOST: '127.0.0.1',
        OPENAI_BASE_URL: peer.baseUrl,
        OPENAI_API_KEY: 'test-key',
        CALLBRIDGE_DB: join(dir, `calls-${++n}.db`),
        VAD_SILENCE_DURATION_MS: '300',
        ...env,
      });
      // The process environment as the test gives it: what loadConfig checked is what the tools read (header secrets).
      app = await startCallbridge(config, silentLogger, { edge, env: { ...process.env, ...env } });
    } catch (err) {
      await peer.close();
      throw err;
    }
    running.push({ app, peer });
    return { app, config, baseUrl: `http://127.0.0.1:${app.port}` };
  };
}
