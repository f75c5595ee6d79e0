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

/**
 * The `session.update` both peer relays send when their model socket opens:
 * GA shape, server VAD, µ-law (passthrough) or PCM16 24 kHz (transcode) both ways.
 */
export function peerSessionUpdate(transcode: boolean): string {
  const format = transcode ? { type: 'audio/pcm', rate: 24000 } : { type: 'audio/pcmu' };
  return JSON.stringify({
    type: 'session.update',
    session: {
      type: 'realtime',
      model: 'gpt-realtime',
      instructions: 'You are a helpful assistant.',
      output_modalities: ['audio'],
      audio: {
        input: { format, turn_detection: { type: 'server_vad', threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 500 } },
        output: { format, voice: 'marin' },
      },
    },
  });
}
