/**
 * callbridge's relay as a bench peer process (bench/suites/relay.ts forks
 * it), so the relay's CPU, syscalls and threads are its own. Configured from
 * the environment exactly like `serve` (the suite sets PORT=0, AUDIO_MODE,
 * OPENAI_BASE_URL = the stand-in, and INBOUND_BATCH_MS for capacity mode).
 *
 * IPC: sends {type:'ready', port, node, config} once listening; on
 * {type:'stop'} sends {type:'stats', callsEnded, inbound, outbound, turn,
 * modelConnect} (relay-added latency over all ended calls, turn latency and
 * model session connect time, ms) and exits. It prints
 * `edge: <description>` on stdout when the app names its WebSocket edge
 * (as `callbridge serve` does); the suite reads that line.
 */
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { startCallbridge } from '../src/main.js';

const config = loadConfig(process.env);
const app = await startCallbridge(config, createLogger('error'));
// Builds whose app names its WebSocket edge (a string, as `serve` prints it) say which one is measured.
const edge = (app as { edge?: unknown }).edge;
if (typeof edge === 'string') process.stdout.write(`edge: ${edge}\n`);

/**
 * Settings the bench varies, as the loaded config holds them, so the suite
 * can tell when an env var was not taken up (e.g. INBOUND_BATCH_MS before
 * the build knows it): any config key whose name mentions batch or mode.
 */
const seen: Record<string, string> = {};
for (const [k, v] of Object.entries(config as unknown as Record<string, unknown>)) {
  if (/batch|mode|edge/i.test(k) && (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean')) seen[k] = String(v);
}
process.send!({ type: 'ready', port: app.port, node: process.version, config: seen });

process.on('message', async (msg: { type: string }) => {
  if (msg.type !== 'stop') return;
  const relay = app.relay;
  const stats = {
    type: 'stats',
    callsEnded: relay.callsEnded,
    inbound: relay.relayIn.summary(),
    outbound: relay.relayOut.summary(),
    turn: relay.turnLatency.summary(),
    modelConnect: relay.modelConnect.summary(),
  };
  await app.close();
  process.send!(stats, () => process.exit(0));
});
