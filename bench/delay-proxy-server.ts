/**
 * The delay proxy (bench/delay-proxy.ts) as a process of its own, so its
 * timers do not share an event loop with the callers, the stand-in or the
 * relay it measures (bench/suites/latency.ts forks it).
 *
 * IPC: on {type:'start', legs: {name, targetPort, delayMs, jitterMs, seed}[]}
 * it sends {type:'ready', ports: {name: port}} (or {type:'error', message});
 * on {type:'stats'} it sends {type:'stats', legs: {name: ProxyTimingStats}};
 * on {type:'stop'} it closes every leg and exits.
 */
import { startDelayProxy, type DelayProxy } from './delay-proxy.js';

interface LegSpec {
  name: string;
  targetPort: number;
  delayMs: number;
  jitterMs: number;
  seed: number;
}

const legs = new Map<string, DelayProxy>();

process.on('message', (msg: { type: string; legs?: LegSpec[] }) => {
  void handle(msg).catch((err: unknown) => process.send!({ type: 'error', message: err instanceof Error ? err.message : String(err) }));
});

async function handle(msg: { type: string; legs?: LegSpec[] }): Promise<void> {
  switch (msg.type) {
    case 'start': {
      const ports: Record<string, number> = {};
      for (const leg of msg.legs ?? []) {
        const proxy = await startDelayProxy({ targetPort: leg.targetPort, delayMs: leg.delayMs, jitterMs: leg.jitterMs, seed: leg.seed });
        legs.set(leg.name, proxy);
        ports[leg.name] = proxy.port;
      }
      process.send!({ type: 'ready', ports });
      return;
    }
    case 'stats': {
      const out: Record<string, ReturnType<DelayProxy['stats']>> = {};
      for (const [name, proxy] of legs) out[name] = proxy.stats();
      process.send!({ type: 'stats', legs: out });
      return;
    }
    case 'stop': {
      await Promise.all([...legs.values()].map((p) => p.close()));
      process.exit(0);
    }
  }
}
// Orphaned (the bench died): leave rather than hold the ports.
process.on('disconnect', () => process.exit(0));
