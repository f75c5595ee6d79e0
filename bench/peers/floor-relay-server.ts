/**
 * The floor relay (bench/peers/floor-relay.ts) as a bench peer process, with
 * the same environment and IPC as bench/relay-server.ts: the edge is
 * configured from the environment exactly like `serve` (loadConfig: PORT,
 * HOST, PUBLIC_URL, TWILIO_AUTH_TOKEN, rate limits), the audio mode from
 * AUDIO_MODE and the batch from INBOUND_BATCH_MS, the model from
 * OPENAI_BASE_URL / OPENAI_API_KEY. Prints `edge: <description>` on stdout;
 * sends {type:'ready', port, node, config} then, on {type:'stop'},
 * {type:'stats', callsEnded, inbound, outbound, modelConnect} and exits.
 */
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { FLOOR_TRANSCODE, startFloorRelay } from './floor-relay.js';

const config = loadConfig(process.env);
const mode = config.audioMode;
const relay = await startFloorRelay({
  config,
  log: createLogger('error'),
  modelBaseUrl: process.env.OPENAI_BASE_URL ?? 'http://127.0.0.1:1/v1',
  apiKey: process.env.OPENAI_API_KEY ?? 'bench',
  mode,
  batchMs: config.inboundBatchMs,
});
process.stdout.write(`edge: ${relay.edge}\n`);
process.send!({
  type: 'ready',
  port: relay.port,
  node: process.version,
  config: { mode, inboundBatchMs: String(config.inboundBatchMs), transcoder: mode === 'transcode' ? FLOOR_TRANSCODE : 'none' },
});

process.on('message', async (msg: { type: string }) => {
  if (msg.type !== 'stop') return;
  const stats = { type: 'stats', callsEnded: relay.callsEnded, inbound: relay.relayIn.summary(), outbound: relay.relayOut.summary(), modelConnect: relay.modelConnect.summary() };
  await relay.close();
  process.send!(stats, () => process.exit(0));
});
