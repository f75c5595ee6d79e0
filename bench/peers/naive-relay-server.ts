/**
 * The naive relay (bench/peers/naive-relay.ts) as a bench peer process, with
 * the same environment and IPC as bench/relay-server.ts: PORT, HOST,
 * OPENAI_BASE_URL, OPENAI_API_KEY, AUDIO_MODE (passthrough|transcode);
 * {type:'ready', port, node, config} then, on {type:'stop'},
 * {type:'stats', callsEnded, inbound, outbound}.
 */
import { NAIVE_TRANSCODE, startNaiveRelay } from './naive-relay.js';

const mode = process.env.AUDIO_MODE === 'passthrough' ? 'passthrough' : 'transcode';
const relay = await startNaiveRelay({
  modelBaseUrl: process.env.OPENAI_BASE_URL ?? 'http://127.0.0.1:1/v1',
  apiKey: process.env.OPENAI_API_KEY ?? 'bench',
  mode,
  port: Number(process.env.PORT ?? 0),
  host: process.env.HOST ?? '127.0.0.1',
});
process.send!({ type: 'ready', port: relay.port, node: process.version, config: { mode, transcoder: mode === 'transcode' ? NAIVE_TRANSCODE : 'none' } });

process.on('message', async (msg: { type: string }) => {
  if (msg.type !== 'stop') return;
  const stats = { type: 'stats', callsEnded: relay.callsEnded, inbound: relay.relayIn.summary(), outbound: relay.relayOut.summary() };
  await relay.close();
  process.send!(stats, () => process.exit(0));
});
