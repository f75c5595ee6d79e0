/**
 * EventOutlet: where a ModelSession's events leave it, for the one listener the
 * port allows (`ModelSession.onEvent`). Shared by the provider session and the
 * reconnecting link so both deliver the same way.
 *
 * Contract:
 * - Before a listener is set, events queue; `listen` delivers the queue in
 *   order, then every `emit` reaches the listener at once (synchronously).
 * - A listener that throws is logged (`eventType` only, never the event's
 *   content); delivery goes on with the next event.
 * - If a handler clears the outlet or sets another listener while the queue
 *   is being delivered, the earlier listener gets no more of it: `clear`
 *   drops the rest, a new listener receives it.
 * - After `clear` the outlet has no listener and an empty queue; owners stop
 *   emitting once they are closed.
 */
import type { Logger } from '../log.js';
import type { ModelEvent } from './voice-model.js';

export type ModelEventListener = (ev: ModelEvent) => void;

export class EventOutlet {
  private listener: ModelEventListener | undefined;
  private queue: ModelEvent[] = [];

  constructor(private readonly log: Logger) {}

  emit(ev: ModelEvent): void {
    const l = this.listener;
    if (!l) {
      this.queue.push(ev);
      return;
    }
    this.deliver(l, ev);
  }

  /** Set the listener and deliver what queued before it, in order. */
  listen(listener: ModelEventListener): void {
    this.listener = listener;
    // Stops when a handler clears the outlet or sets another listener (whose own listen() takes the rest).
    while (this.listener === listener && this.queue.length > 0) this.deliver(listener, this.queue.shift()!);
  }

  /** Forget the listener and anything queued. */
  clear(): void {
    this.listener = undefined;
    this.queue = [];
  }

  private deliver(l: ModelEventListener, ev: ModelEvent): void {
    try {
      l(ev);
    } catch (err) {
      this.log.error({ err, eventType: ev.type }, 'model event listener threw');
    }
  }
}
