/**
 * The last resort of the `serve` process: an exception nothing caught, or a
 * promise rejection nothing handled, anywhere in the process.
 *
 * Node's default kills the process at once: every call cut off mid-sentence,
 * no record ended, the reason only on stderr. Instead each fault is logged at
 * error level with its stack (`err`), and the first one starts `drain()` —
 * the same drain as SIGTERM (health 503, no new calls, the calls in progress
 * go on up to DRAIN_TIMEOUT_MS, then hear the goodbye), so the process ends
 * cleanly and its supervisor starts a fresh one. Later faults are logged
 * (the first LOGGED_FAULTS, then every 100th, with their count) and change
 * nothing. `faults` tells the caller whether to exit non-zero.
 */
import type { Logger } from '../log.js';

/** The part of `process` this needs (tests pass an EventEmitter). */
export interface FaultSource {
  on(event: 'uncaughtException' | 'unhandledRejection', listener: (fault: unknown) => void): unknown;
  off(event: 'uncaughtException' | 'unhandledRejection', listener: (fault: unknown) => void): unknown;
}

export interface LastResort {
  /** Faults seen so far. */
  readonly faults: number;
  /** Remove the handlers (Node's defaults apply again). */
  uninstall(): void;
}

/** Faults logged in full before only every 100th is. */
const LOGGED_FAULTS = 10;

export function installLastResort(source: FaultSource, log: Logger, drain: () => void): LastResort {
  let faults = 0;
  const handle = (kind: 'uncaught exception' | 'unhandled rejection') => (fault: unknown) => {
    faults++;
    try {
      if (faults <= LOGGED_FAULTS || faults % 100 === 0) {
        // An Error goes under `err` (pino logs its type, message and stack); anything else is described.
        const fields = fault instanceof Error ? { err: fault } : { reason: describe(fault), reasonType: typeof fault };
        log.error({ ...fields, faults, kind }, faults === 1 ? `${kind}: draining (as on SIGTERM)` : `${kind} (already draining)`);
      }
    } catch {
      // The logger itself failed: nothing else can be told.
    }
    if (faults !== 1) return;
    try {
      drain();
    } catch (err) {
      try {
        log.error({ err }, 'starting the drain after a fault failed');
      } catch {
        // as above
      }
    }
  };
  const onException = handle('uncaught exception');
  const onRejection = handle('unhandled rejection');
  source.on('uncaughtException', onException);
  source.on('unhandledRejection', onRejection);
  return {
    get faults() {
      return faults;
    },
    uninstall() {
      source.off('uncaughtException', onException);
      source.off('unhandledRejection', onRejection);
    },
  };
}

function describe(value: unknown): string {
  try {
    return String(value).slice(0, 200);
  } catch {
    return Object.prototype.toString.call(value);
  }
}
