/** EventOutlet (call/event-outlet.ts), pure: queueing, delivery order, a throwing listener, clear/replace mid-queue. */
import { describe, expect, it } from 'vitest';
import { EventOutlet } from '../src/call/event-outlet.js';
import type { ModelEvent } from '../src/call/voice-model.js';
import { createLogger, silentLogger } from '../src/log.js';

describe('EventOutlet (pure)', () => {
  const ev = (cause: string): ModelEvent => ({ type: 'link_lost', cause });
  const causes = (evs: ModelEvent[]) => evs.map((e) => (e.type === 'link_lost' ? e.cause : e.type));

  it('queues until a listener is set, delivers the queue in order, then each event at once', () => {
    const out = new EventOutlet(silentLogger);
    out.emit(ev('a'));
    out.emit(ev('b'));
    const got: ModelEvent[] = [];
    out.listen((e) => got.push(e));
    expect(causes(got)).toEqual(['a', 'b']);
    out.emit(ev('c'));
    expect(causes(got)).toEqual(['a', 'b', 'c']);
  });

  it('a throwing listener is logged and delivery goes on', () => {
    const errors: any[] = [];
    const out = new EventOutlet(createLogger('error', { write: (line: string) => errors.push(JSON.parse(line)) }));
    out.emit(ev('a'));
    out.emit(ev('b'));
    const got: ModelEvent[] = [];
    out.listen((e) => {
      got.push(e);
      throw new Error('handler bug');
    });
    out.emit(ev('c'));
    expect(causes(got)).toEqual(['a', 'b', 'c']);
    expect(errors).toHaveLength(3);
    expect(errors[0]).toMatchObject({ eventType: 'link_lost', msg: 'model event listener threw' });
  });

  it('cleared by a handler mid-queue: the rest is dropped; replaced mid-queue: the new listener gets the rest', () => {
    const a = new EventOutlet(silentLogger);
    for (const c of ['a', 'b', 'c']) a.emit(ev(c));
    const gotA: ModelEvent[] = [];
    a.listen((e) => {
      gotA.push(e);
      a.clear();
    });
    expect(causes(gotA)).toEqual(['a']);

    const b = new EventOutlet(silentLogger);
    for (const c of ['a', 'b', 'c']) b.emit(ev(c));
    const first: ModelEvent[] = [];
    const second: ModelEvent[] = [];
    b.listen((e) => {
      first.push(e);
      b.listen((e2) => second.push(e2));
    });
    expect(causes(first)).toEqual(['a']);
    expect(causes(second)).toEqual(['b', 'c']);
  });
});
