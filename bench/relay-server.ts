/**
 * The relay under test for the relay bench suite, in its own process so
 * process.cpuUsage() measures the server alone (not the simulated callers
 * or the model stand-in). Configured from the environment like `serve`.
 * IPC: sends {type:'ready', port}; on {type:'stop'} sends {type:'stats', …}
 * (CPU since ready, relay-added latency over all ended calls) and exits.
 */
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { startCallbridge } from '../src/main.js';

const config = loadConfig(process.env);
const app = await startCallbridge(config, createLogger('error'));
const cpu0 = process.cpuUsage();
const wall0 = performance.now();
process.send!({ type: 'ready', port: app.port });

process.on('message', async (msg: { type: string }) => {
  if (msg.type !== 'stop') return;
  const cpu = process.cpuUsage(cpu0);
  const wallMs = performance.now() - wall0;
  const relay = app.relay;
  const stats = {
    type: 'stats',
    cpuUs: cpu.user + cpu.system,
    wallMs,
    callsEnded: relay.callsEnded,
    inbound: relay.relayIn.summary(),
    outbound: relay.relayOut.summary(),
    turn: relay.turnLatency.summary(),
  };
  await app.close();
  process.send!(stats, () => process.exit(0));
});
