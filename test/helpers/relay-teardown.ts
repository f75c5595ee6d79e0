import { afterEach } from 'vitest';
import type { Relay } from '../../src/call/relay.js';
import type { RunningServer } from '../../src/server/app.js';
import type { ModelStandIn } from '../../src/sim/model-server.js';

/** A relay a test started on loopback, with its edge and its model stand-in. */
export interface RunningRelay {
  server: RunningServer;
  relay: Relay;
  model: ModelStandIn;
}

/**
 * The list a test file pushes what it started onto; after each test, each is
 * stopped in order: the relay (its calls ended and settled), then its edge,
 * then the stand-in.
 */
export function stopRelaysAfterEach(): RunningRelay[] {
  const running: RunningRelay[] = [];
  afterEach(async () => {
    for (const r of running.splice(0)) {
      r.relay.shutdown();
      await r.relay.settled();
      await r.server.close();
      await r.model.close();
    }
  });
  return running;
}
