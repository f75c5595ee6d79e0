/**
 * `callbridge serve`: the production relay. Reads the whole configuration
 * from the environment (every problem reported at once), refuses to start
 * without a model key unless OPENAI_BASE_URL points elsewhere (a stand-in),
 * prints which edge serves (native uWebSockets.js or node:http + ws) and
 * why, and shuts down cleanly on SIGINT/SIGTERM. EDGE=uws where no native
 * build loads is a start-up error (exit 2), like any configuration problem.
 */
import { ConfigError, loadConfig } from '../config.js';
import { createLogger } from '../log.js';
import { startCallbridge } from '../main.js';
import { EdgeError } from '../server/app.js';
import type { CliIO } from './io.js';

export async function run(args: string[], io: CliIO): Promise<number> {
  if (args.length > 0) {
    io.stderr.write(`callbridge serve: takes no arguments (configure it with environment variables; see README)\n`);
    return 2;
  }
  let config;
  try {
    config = loadConfig(io.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      io.stderr.write(`callbridge serve: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const usingOpenAI = new URL(config.openai.realtimeUrl).hostname === 'api.openai.com';
  if (!config.openai.apiKey && usingOpenAI) {
    io.stderr.write(
      'callbridge serve: OPENAI_API_KEY is not set.\n' +
        '  Set it to relay real calls to OpenAI Realtime, or run `npm run demo` to try callbridge\n' +
        '  end to end with the built-in model stand-in and simulated callers (no credentials needed).\n',
    );
    return 2;
  }
  if (!config.twilioAuthToken) {
    io.stderr.write('callbridge serve: warning: TWILIO_AUTH_TOKEN is not set, so Twilio signatures are NOT checked\n');
  }
  const log = createLogger(config.logLevel);
  let app;
  try {
    app = await startCallbridge(config, log, { env: io.env });
  } catch (err) {
    if (err instanceof EdgeError) {
      io.stderr.write(`callbridge serve: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  io.stdout.write(`edge: ${app.edge}\n`);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'shutting down');
      resolve();
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  await app.close();
  return 0;
}
