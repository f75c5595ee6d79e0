/** What the bench reads from a peer relay it runs in-process or as a child (the naive and floor relays). */
import type { LatencyHistogram } from '../../src/call/stats.js';

export interface PeerRelay {
  port: number;
  /** Calls whose Twilio socket has closed. */
  readonly callsEnded: number;
  /** Relay-added latency per audio message, ms: Twilio media → append sent (or held), delta → media sent. */
  readonly relayIn: LatencyHistogram;
  readonly relayOut: LatencyHistogram;
  close(): Promise<void>;
}
