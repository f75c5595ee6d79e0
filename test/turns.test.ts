/**
 * The turn state machine on its own: every ordering of a tool round's events
 * for one to three parallel calls, the filler, DTMF, the greeting, server-VAD
 * responses and failed responses. A fake "server" acknowledges each
 * response.create with response.created, as the real one does.
 */
import { describe, expect, it } from 'vitest';
import { Turns } from '../src/call/turns.js';

type Ev = { kind: 'args'; i: number } | { kind: 'tool'; i: number } | { kind: 'done' };

/** All orderings of args_i, tool_i (after args_i) and done (after every args), with args in order. */
function orderings(n: number): Ev[][] {
  const out: Ev[][] = [];
  const walk = (seq: Ev[], argsNext: number, toolsDone: Set<number>, done: boolean) => {
    if (argsNext === n && toolsDone.size === n && done) return void out.push(seq);
    if (argsNext < n) walk([...seq, { kind: 'args', i: argsNext }], argsNext + 1, toolsDone, done);
    for (let i = 0; i < argsNext; i++) {
      if (!toolsDone.has(i)) walk([...seq, { kind: 'tool', i }], argsNext, new Set([...toolsDone, i]), done);
    }
    if (argsNext === n && !done) walk([...seq, { kind: 'done' }], argsNext, toolsDone, true);
  };
  walk([], 0, new Set(), false);
  return out;
}

function harness() {
  const creates: (string | undefined)[] = [];
  const turns = new Turns({ createResponse: (instructions) => creates.push(instructions) });
  return { turns, creates };
}

describe('Turns: a tool round is answered exactly once', () => {
  for (const n of [1, 2, 3]) {
    const all = orderings(n);
    it(`${n} parallel call(s): every one of the ${all.length} orderings sends one response.create, after the response is done and every output is in`, () => {
      expect(all.length).toBeGreaterThan(0);
      for (const order of all) {
        const { turns, creates } = harness();
        turns.responseCreated('r1'); // the server's response to the caller's turn
        let doneSeen = false;
        const outputs = new Set<number>();
        for (const ev of order) {
          if (ev.kind === 'args') turns.toolCall('r1', `call_${ev.i}`);
          else if (ev.kind === 'tool') {
            turns.toolOutput(`call_${ev.i}`);
            outputs.add(ev.i);
          } else {
            turns.responseDone('r1', { status: 'completed' });
            doneSeen = true;
          }
          const ready = doneSeen && outputs.size === n;
          expect(creates.length, `after ${JSON.stringify(ev)} in ${JSON.stringify(order)}`).toBe(ready ? 1 : 0);
        }
        // The follow-up speaks and ends: nothing stale fires another one.
        turns.responseCreated('r2');
        turns.responseDone('r2', { status: 'completed' });
        expect(creates, JSON.stringify(order)).toEqual([undefined]);
        expect(turns.busy).toBe(false);
        expect(turns.toolRoundPending).toBe(false);
      }
    });
  }

  it('the case from the issue: preamble, call 1 finishes while call 2 streams, then done → one create', () => {
    const { turns, creates } = harness();
    turns.responseCreated('r1');
    turns.toolCall('r1', 'a');
    turns.toolOutput('a'); // fast tool, response still in progress
    turns.toolCall('r1', 'b');
    turns.toolOutput('b');
    expect(creates).toHaveLength(0);
    turns.responseDone('r1', { status: 'completed' });
    expect(creates).toHaveLength(1);
    turns.responseCreated('r2');
    turns.responseDone('r2', { status: 'completed' });
    expect(creates).toHaveLength(1);
  });

  it('an unknown call id changes nothing', () => {
    const { turns, creates } = harness();
    turns.responseCreated('r1');
    turns.toolCall('r1', 'a');
    turns.toolOutput('zzz');
    turns.responseDone('r1', { status: 'completed' });
    expect(creates).toHaveLength(0);
    expect(turns.toolRoundPending).toBe(true);
  });
});

describe('Turns: the filler never overlaps a tool round', () => {
  const FILL = 'still checking';

  it('a filler asked for while the tool runs plays, and the round waits for it to finish', () => {
    const { turns, creates } = harness();
    turns.responseCreated('r1');
    turns.toolCall('r1', 'a');
    turns.responseDone('r1', { status: 'completed' });
    turns.request('filler', FILL);
    expect(creates).toEqual([FILL]);
    turns.responseCreated('f1');
    turns.toolOutput('a'); // round ready while the filler speaks
    expect(creates).toEqual([FILL]);
    turns.responseDone('f1', { status: 'completed' });
    expect(creates).toEqual([FILL, undefined]);
    turns.responseCreated('r2');
    turns.responseDone('r2', { status: 'completed' });
    expect(creates).toEqual([FILL, undefined]);
  });

  it('a round that becomes ready while the filler create is in flight still waits for that response', () => {
    const { turns, creates } = harness();
    turns.responseCreated('r1');
    turns.toolCall('r1', 'a');
    turns.responseDone('r1', { status: 'completed' });
    turns.request('filler', FILL);
    turns.toolOutput('a');
    expect(creates).toEqual([FILL]);
    turns.responseCreated('f1'); // this is the filler, not the answer
    turns.responseDone('f1', { status: 'completed' });
    expect(creates).toEqual([FILL, undefined]);
  });

  it('no filler while a response is active, or once the answer is on its way', () => {
    const { turns, creates } = harness();
    turns.responseCreated('r1');
    turns.toolCall('r1', 'a');
    turns.request('filler', FILL); // r1 still active: dropped
    turns.toolOutput('a');
    turns.responseDone('r1', { status: 'completed' });
    expect(creates).toEqual([undefined]);
    turns.request('filler', FILL); // the answer is in flight: dropped
    turns.responseCreated('r2');
    turns.responseDone('r2', { status: 'completed' });
    expect(creates).toEqual([undefined]);
  });
});

describe('Turns: greeting, DTMF and the caller', () => {
  it('the greeting is one create with its instructions; DTMF during it waits and is then one create', () => {
    const { turns, creates } = harness();
    turns.request('greeting', 'Say hello');
    turns.request('greeting', 'Say hello'); // asked twice: still one
    expect(creates).toEqual(['Say hello']);
    turns.responseCreated('g');
    turns.request('dtmf');
    turns.request('dtmf');
    expect(creates).toHaveLength(1);
    turns.responseDone('g', { status: 'completed' });
    expect(creates).toEqual(['Say hello', undefined]);
    turns.responseCreated('d');
    turns.responseDone('d', { status: 'completed' });
    expect(creates).toHaveLength(2);
  });

  it('nothing is asked for while the caller speaks; the response the server starts after the turn answers a ready round', () => {
    const { turns, creates } = harness();
    turns.responseCreated('r1');
    turns.toolCall('r1', 'a');
    turns.responseDone('r1', { status: 'completed' });
    turns.callerStarted();
    turns.toolOutput('a'); // ready, but the caller is talking
    expect(creates).toHaveLength(0);
    turns.callerStopped(true); // server VAD will respond
    expect(creates).toHaveLength(0);
    turns.responseCreated('vad1'); // it sees the tool output in the conversation
    turns.responseDone('vad1', { status: 'completed' });
    expect(creates).toHaveLength(0);
    expect(turns.toolRoundPending).toBe(false);
  });

  it('if the server does not respond after the caller stops, the held demand goes out', () => {
    const { turns, creates } = harness();
    turns.callerStarted();
    turns.request('dtmf');
    turns.callerStopped(true);
    expect(creates).toHaveLength(0);
    turns.serverResponseOverdue();
    expect(creates).toEqual([undefined]);
  });

  it('a greeting or filler is dropped when the caller starts speaking', () => {
    const { turns, creates } = harness();
    turns.responseCreated('x');
    turns.request('greeting', 'hi');
    turns.callerStarted();
    turns.responseDone('x', { status: 'cancelled', reason: 'turn_detected' });
    turns.callerStopped(false);
    expect(creates).toHaveLength(0);
  });

  it('a create refused because the server started its own response is asked again after it: never left unanswered', () => {
    const { turns, creates } = harness();
    turns.request('dtmf');
    expect(creates).toHaveLength(1);
    turns.createRejected();
    expect(turns.busy).toBe(false);
    turns.responseCreated('vad'); // the server's own: it may not have seen the digits
    expect(creates).toHaveLength(1);
    turns.responseDone('vad', { status: 'completed' });
    expect(creates).toHaveLength(2);
  });

  it('DTMF sent after the caller stopped speaking is not taken as answered by the response the server was already starting', () => {
    const { turns, creates } = harness();
    turns.callerStarted();
    turns.callerStopped(true);
    turns.request('dtmf'); // after speech_stopped, before the server's response.created
    turns.responseCreated('vad');
    turns.responseDone('vad', { status: 'completed' });
    expect(creates).toEqual([undefined]);
    turns.responseCreated('d');
    turns.responseDone('d', { status: 'completed' });
    expect(creates).toHaveLength(1);
  });

  it('a create refused with nothing else coming is sent again once the way is clear', () => {
    const { turns, creates } = harness();
    turns.responseCreated('r0');
    turns.request('greeting', 'hi'); // waits for r0
    turns.responseDone('r0', { status: 'completed' });
    expect(creates).toEqual(['hi']);
    turns.createRejected(); // instructions travel alone and are not answered by a server response
    turns.responseCreated('vad');
    turns.responseDone('vad', { status: 'completed' });
    expect(creates).toEqual(['hi', 'hi']);
  });
});

describe('Turns: a failed response is never silence', () => {
  it('failed → retry, retry, then apologize; a success resets the count', () => {
    const { turns, creates } = harness();
    turns.responseCreated('r1');
    expect(turns.responseDone('r1', { status: 'failed', reason: 'server_error' })).toEqual({ action: 'retry', attempt: 1 });
    turns.retry();
    expect(creates).toEqual([undefined]);
    turns.responseCreated('r2');
    expect(turns.responseDone('r2', { status: 'failed', reason: 'server_error' })).toEqual({ action: 'retry', attempt: 2 });
    turns.retry();
    turns.responseCreated('r3');
    expect(turns.responseDone('r3', { status: 'incomplete', reason: 'max_output_tokens' })).toEqual({ action: 'apologize' });
    turns.responseCreated('r4');
    expect(turns.responseDone('r4', { status: 'completed' })).toEqual({ action: 'none' });
    turns.responseCreated('r5');
    expect(turns.responseDone('r5', { status: 'failed' })).toEqual({ action: 'retry', attempt: 1 });
  });

  it('barge-in and cancellation are not failures', () => {
    const { turns } = harness();
    turns.responseCreated('r1');
    expect(turns.responseDone('r1', { status: 'incomplete', reason: 'turn_detected' })).toEqual({ action: 'none' });
    turns.responseCreated('r2');
    expect(turns.responseDone('r2', { status: 'cancelled', reason: 'turn_detected' })).toEqual({ action: 'none' });
    turns.responseCreated('r3');
    expect(turns.responseDone('r3', { status: 'incomplete', reason: 'client_cancelled' })).toEqual({ action: 'none' });
  });

  it('a failed greeting is asked again with its own instructions; a failed filler is not retried', () => {
    const { turns, creates } = harness();
    turns.request('greeting', 'Say hello');
    turns.responseCreated('g1');
    expect(turns.responseDone('g1', { status: 'failed' }).action).toBe('retry');
    turns.retry(turns.lastFailedInstructions);
    expect(creates).toEqual(['Say hello', 'Say hello']);
    turns.responseCreated('g2');
    turns.responseDone('g2', { status: 'completed' });
    turns.responseCreated('r1');
    turns.toolCall('r1', 'a');
    turns.responseDone('r1', { status: 'completed' });
    turns.request('filler', 'wait');
    turns.responseCreated('f');
    expect(turns.responseDone('f', { status: 'failed' })).toEqual({ action: 'none' });
  });

  it('a failed follow-up of a tool round is retried once, not answered twice', () => {
    const { turns, creates } = harness();
    turns.responseCreated('r1');
    turns.toolCall('r1', 'a');
    turns.toolOutput('a');
    turns.responseDone('r1', { status: 'completed' });
    turns.responseCreated('r2');
    expect(turns.responseDone('r2', { status: 'failed', reason: 'rate_limit_exceeded' }).action).toBe('retry');
    expect(creates).toHaveLength(1);
    turns.retry();
    expect(creates).toHaveLength(2);
    turns.responseCreated('r3');
    turns.responseDone('r3', { status: 'completed' });
    expect(creates).toHaveLength(2);
  });
});

describe('Turns: call control (issue 16)', () => {
  it('a round whose only output wants no answer (end_call, a saved transfer) asks for nothing', () => {
    const { turns, creates } = harness();
    turns.responseCreated('r1');
    turns.toolCall('r1', 'bye');
    turns.toolOutput('bye', false);
    turns.responseDone('r1', { status: 'completed' });
    expect(creates).toEqual([]);
    expect(turns.toolRoundPending).toBe(false);
    expect(turns.busy).toBe(false);
  });

  it('a round with one quiet output and one that wants an answer is answered once, after both', () => {
    const { turns, creates } = harness();
    turns.responseCreated('r1');
    turns.toolCall('r1', 'a');
    turns.toolCall('r1', 'b');
    turns.responseDone('r1', { status: 'completed' });
    turns.toolOutput('a', false);
    expect(creates).toEqual([]);
    turns.toolOutput('b');
    expect(creates).toEqual([undefined]);
  });

  it('a reprompt is dropped when the caller starts speaking; the warning waits for the turn and is then asked for', () => {
    const { turns, creates } = harness();
    turns.responseCreated('r1');
    turns.request('reprompt', 'still there?');
    turns.request('warning', 'the call ends soon');
    turns.callerStarted();
    turns.responseDone('r1', { status: 'cancelled' });
    expect(creates).toEqual([]);
    turns.callerStopped(false);
    expect(creates).toEqual(['the call ends soon']);
  });

  it('a second reprompt asked for while one is on its way is not sent twice', () => {
    const { turns, creates } = harness();
    turns.request('reprompt', 'still there?');
    turns.request('reprompt', 'still there?');
    expect(creates).toEqual(['still there?']);
    turns.responseCreated('p1');
    turns.request('reprompt', 'still there?');
    turns.responseDone('p1', { status: 'completed' });
    expect(creates).toEqual(['still there?']);
  });
});
