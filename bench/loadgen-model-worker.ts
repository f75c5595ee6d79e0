/**
 * The model stand-in's process (bench/loadgen-model.ts forks it): one
 * startModelStandIn with the run's scenario; on request, what measureRelay
 * reads of its sessions, its side of the wire counts and its own CPU.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { startModelStandIn, type ModelStandIn } from '../src/sim/model-server.js';
import { installWireCounter, wireCounts } from './wire-count.js';
import type { ModelWorkerReply, ModelWorkerRequest } from './loadgen-model.js';

// Before any socket exists: the counter patches ws's prototype.
installWireCounter();
let model: ModelStandIn | undefined;
let cpu0 = process.cpuUsage();
// How late this process's event loop ran (from 'start' on): a stand-in whose loop runs late sends
// audio late and accepts sessions late (Node accepts one connection per loop turn), whatever the
// relay does; at 800 calls on its shared core its accept queue was seen holding ~480 connections.
const LOOP_RESOLUTION_MS = 10;
const loopDelay = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });

const reply = (m: ModelWorkerReply): void => {
  process.send!(m);
};

process.on('message', (m: ModelWorkerRequest) => {
  switch (m.type) {
    case 'start':
      void startModelStandIn({ scenario: m.scenario }).then((s) => {
        model = s;
        cpu0 = process.cpuUsage();
        loopDelay.enable();
        reply({ type: 'started', baseUrl: s.baseUrl });
      });
      return;
    case 'figures': {
      const c = wireCounts();
      const cpu = process.cpuUsage(cpu0);
      reply({
        type: 'figures',
        sessions: (model?.sessions ?? []).map((s) => ({
          closed: s.closed,
          events: s.events.length,
          audioMsReceived: s.audioMsReceived,
          responses: s.responses.map((r) => ({ status: r.status, audioMsSent: r.audioMsSent })),
        })),
        modelSent: c.modelSent,
        modelReceived: c.modelReceived,
        cpuUs: cpu.user + cpu.system,
        // The histogram holds the sampling timer's own period besides the delay.
        loopDelayMs: {
          p99: Math.max(0, loopDelay.percentile(99) / 1e6 - LOOP_RESOLUTION_MS),
          max: Math.max(0, loopDelay.max / 1e6 - LOOP_RESOLUTION_MS),
        },
      });
      return;
    }
    case 'stop':
      void (model?.close() ?? Promise.resolve()).finally(() => process.exit(0));
      return;
  }
});
reply({ type: 'ready' });
