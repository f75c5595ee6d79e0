import { describe, expect, it } from 'vitest';
import { countingFromNow, plan, type StandInReader } from '../bench/suites/relay.js';
import { installWireCounter, resetWireCounts, wireCounts } from '../bench/wire-count.js';
import { WebSocket, WebSocketServer } from 'ws';

/** A stand-in reader over figures the test moves by hand. */
function fakeReader() {
  const f = { events: 0, audio: 0, completed: 0, cancelled: 0, yields: [] as number[], sent: 0, received: 0, refreshed: 0, open: false, closed: false };
  const r: StandInReader = {
    baseUrl: 'http://127.0.0.1:1',
    anyOpen: () => f.open,
    eventsRecorded: () => f.events,
    audioMsReceived: () => f.audio,
    completedAudioMs: () => f.completed,
    cancelled: () => f.cancelled,
    yieldsMs: () => [...f.yields],
    refresh: async () => {
      f.refreshed++;
    },
    get counts() {
      return { modelSent: f.sent, modelReceived: f.received };
    },
    close: async () => {
      f.closed = true;
    },
  };
  return { f, r };
}

describe('relay bench warm-up (RunSpec.warmupCalls)', () => {
  it('reads every stand-in figure from the moment it is taken, and passes the rest through', async () => {
    const { f, r } = fakeReader();
    Object.assign(f, { events: 120, audio: 9000, completed: 4000, cancelled: 1, yields: [80, 90], sent: 50, received: 120 });
    const fromNow = await countingFromNow(r);
    expect(f.refreshed).toBe(1); // a stand-in in another process is brought up to date before the baseline
    expect([fromNow.eventsRecorded(), fromNow.audioMsReceived(), fromNow.completedAudioMs(), fromNow.cancelled()]).toEqual([0, 0, 0, 0]);
    expect(fromNow.yieldsMs!()).toEqual([]);
    expect(fromNow.counts).toEqual({ modelSent: 0, modelReceived: 0 });

    Object.assign(f, { events: 170, audio: 10_000, completed: 4600, cancelled: 3, yields: [80, 90, 75], sent: 61, received: 170, open: true });
    expect([fromNow.eventsRecorded(), fromNow.audioMsReceived(), fromNow.completedAudioMs(), fromNow.cancelled()]).toEqual([50, 1000, 600, 2]);
    expect(fromNow.yieldsMs!()).toEqual([75]);
    expect(fromNow.counts).toEqual({ modelSent: 11, modelReceived: 50 }); // read live, not once
    expect(fromNow.anyOpen()).toBe(true);
    await fromNow.refresh!();
    expect(f.refreshed).toBe(2);
    await fromNow.close();
    expect(f.closed).toBe(true);
  });

  it('leaves out what the reader does not have (a stand-in in this process has no counts or yields)', async () => {
    const { r } = fakeReader();
    const bare: StandInReader = { ...r, yieldsMs: undefined, refresh: undefined, counts: undefined };
    const fromNow = await countingFromNow(bare);
    expect(fromNow.yieldsMs).toBeUndefined();
    expect(fromNow.refresh).toBeUndefined();
    expect(fromNow.counts).toBeUndefined();
  });

  it("starts this process's wire counts again, so the warm-up's messages are not the run's", async () => {
    installWireCounter();
    resetWireCounts();
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
    const got = new Promise<void>((resolve) => wss.on('connection', (s) => s.on('message', () => resolve())));
    const ws = new WebSocket(`ws://127.0.0.1:${(wss.address() as { port: number }).port}`);
    await new Promise<void>((resolve) => ws.once('open', () => resolve()));
    ws.send('{"event":"media","media":{"payload":"AAAA"}}');
    await got;
    const before = wireCounts();
    expect(Object.values(before).some((n) => n > 0)).toBe(true);
    await countingFromNow(fakeReader().r);
    expect(Object.values(wireCounts()).every((n) => n === 0)).toBe(true);
    ws.close();
    await new Promise<void>((resolve) => wss.close(() => resolve()));
  });

  it('warms up every CPU run, quick and full', () => {
    expect(plan(true).warmupCalls).toBeGreaterThan(0);
    expect(plan(false).warmupCalls).toBeGreaterThanOrEqual(plan(true).warmupCalls);
  });
});
