/**
 * `callbridge serve`: the production relay. Reads the whole configuration
 * from the environment (every problem reported at once), refuses to start
 * without a model key unless OPENAI_BASE_URL points elsewhere (a stand-in),
 * prints which edge serves (native uWebSockets.js or node:http + ws) and
 * why. EDGE=uws where no native build loads is a start-up error (exit 2),
 * like any configuration problem; so is a missing TWILIO_AUTH_TOKEN without
 * ALLOW_UNSIGNED=true (signed by default).
 *
 * Shutdown: the first SIGTERM or SIGINT drains (health 503 `draining` at
 * once; new calls still taken for DRAIN_GRACE_MS, until the balancer's health
 * check has noticed, then refused; calls in progress go on up to
 * DRAIN_TIMEOUT_MS from the signal, then hear the goodbye); a second one ends
 * every call at once. Either way the records are flushed and the exit code is 0.
 * An uncaught exception or unhandled rejection is logged and starts the same
 * drain (cli/last-resort.ts); the exit code is then 1.
 */
import { ConfigError, loadConfig } from '../config.js';
import { createLogger } from '../log.js';
import { signingProblem, startCallbridge } from '../main.js';
import { EdgeError } from '../server/app.js';
import type { CliIO } from './io.js';
import { installLastResort } from './last-resort.js';

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
      // Every problem at once: the signing one too, judged on the raw values.
      const unsigned = signingProblem({ twilioAuthToken: io.env.TWILIO_AUTH_TOKEN || undefined, allowUnsigned: /^(true|1|yes|on)$/.test(io.env.ALLOW_UNSIGNED ?? '') });
      io.stderr.write(`callbridge serve: ${(unsigned ? new ConfigError([...err.problems, unsigned]) : err).message}\n`);
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
  const unsigned = signingProblem(config);
  if (unsigned) {
    io.stderr.write(`callbridge serve: ${unsigned}\n`);
    return 2;
  }
  if (!config.twilioAuthToken) {
    io.stderr.write('callbridge serve: warning: running UNSIGNED (ALLOW_UNSIGNED=true): Twilio signatures are NOT checked\n');
  }
  const log = createLogger(config.logLevel);
  let app;
  try {
    app = await startCallbridge(config, log, { env: io.env });
  } catch (err) {
    if (err instanceof EdgeError || err instanceof ConfigError) {
      io.stderr.write(`callbridge serve: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  io.stdout.write(`edge: ${app.edge}\n`);
  io.stdout.write(`listening on ${config.host}:${app.port}${config.twilioAuthToken ? '' : ' (UNSIGNED)'}\n`);
  let signals = 0;
  let signalled!: () => void;
  const firstSignal = new Promise<void>((resolve) => (signalled = resolve));
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      log.info({ signal, activeCalls: app.relay.activeCalls, drainTimeoutMs: config.drainTimeoutMs, drainGraceMs: config.drainGraceMs }, 'draining');
      const grace = Math.min(config.drainGraceMs, config.drainTimeoutMs);
      io.stdout.write(
        `${signal}: draining (${app.relay.activeCalls} calls in progress, up to ${config.drainTimeoutMs} ms${grace > 0 ? `; new calls still taken for ${grace} ms` : ''}); send it again to end them now\n`,
      );
      signalled();
    } else if (signals === 2) {
      log.warn({ signal, activeCalls: app.relay.activeCalls }, 'second signal: ending every call now');
      io.stdout.write(`${signal}: ending every call now\n`);
      app.relay.shutdown();
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const lastResort = installLastResort(process, log, () => signals === 0 && onSignal('SIGTERM'));
  try {
    // Resolves once every call has ended and the server and the store are closed.
    await firstSignal;
    await app.drain();
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    lastResort.uninstall();
  }
  return lastResort.faults > 0 ? 1 : 0;
}
