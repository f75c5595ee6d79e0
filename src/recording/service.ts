/**
 * The process's recordings: opens each recorded call's tap (./call-recording.ts)
 * over the configured storage, sealing with RECORDING_KEY (./container.ts),
 * and keeps track of the recordings still finishing so a shutdown waits for
 * them before the store closes (their outcome goes into the call's record).
 *
 * - A recording whose storage does not answer within `finishTimeoutMs` of
 *   the call's end is given up: the record says `incomplete` with the reason
 *   (what reached storage may or may not be complete; it is not relied on).
 * - `open` throws when there is no key to seal with (the caller then serves
 *   the call unrecorded and says so).
 */
import type { Logger } from '../log.js';
import type { OpenRecording } from '../call/ports.js';
import { createCallRecording } from './call-recording.js';
import { createRecordingWriter } from './container.js';
import type { CallRecordingTap, Keyring, RecordingInfo, RecordingStorage } from './types.js';

/** How long a recording may take to finish after its call ended, by default (ms). */
export const FINISH_TIMEOUT_MS = 30_000;

export interface Recordings {
  open: OpenRecording;
  /** Recordings of ended calls still being written. */
  readonly finishing: number;
  /** Resolves once every recording of an ended call has finished (or given up). */
  settled(): Promise<void>;
}

export function createRecordings(opts: { storage: RecordingStorage; keys: Keyring; log: Logger; finishTimeoutMs?: number }): Recordings {
  const finishing = new Set<Promise<RecordingInfo>>();
  const timeoutMs = opts.finishTimeoutMs ?? FINISH_TIMEOUT_MS;
  const open: OpenRecording = (call) => {
    const key = opts.keys.current;
    if (!key) throw new Error('RECORDING_KEY is not set: recordings are only written sealed');
    const tap = createCallRecording({
      callSid: call.callSid,
      leg: call.leg,
      startedAt: call.startedAt,
      storage: { kind: opts.storage.kind },
      keyId: key.kid,
      openWriter: async (name) => createRecordingWriter(await opts.storage.create(name), key, { callSid: call.callSid }),
      now: call.now,
      log: opts.log,
    });
    const wrapped: CallRecordingTap = {
      caller: (ulaw, atMs) => tap.caller(ulaw, atMs),
      heard: (buf, start, end, playAtMs) => tap.heard(buf, start, end, playAtMs),
      cleared: (atMs) => tap.cleared(atMs),
      optOut: () => tap.optOut(),
      finish(atMs) {
        let timer: NodeJS.Timeout | undefined;
        const gaveUp = new Promise<RecordingInfo>((resolve) => {
          timer = setTimeout(() => {
            opts.log.warn({ storage: opts.storage.where, timeoutMs }, 'a call recording did not finish in time: given up');
            resolve({ status: 'incomplete', object: null, storage: opts.storage.kind, keyId: null, durationMs: 0, bytes: 0, reason: `storage did not answer within ${Math.round(timeoutMs / 1000)} s of the call's end` });
          }, timeoutMs);
          timer.unref?.();
        });
        const done = Promise.race([tap.finish(atMs), gaveUp]).finally(() => {
          clearTimeout(timer);
          finishing.delete(done);
        });
        finishing.add(done);
        return done;
      },
    };
    return wrapped;
  };
  return {
    open,
    get finishing() {
      return finishing.size;
    },
    async settled() {
      while (finishing.size > 0) await Promise.allSettled([...finishing]);
    },
  };
}
