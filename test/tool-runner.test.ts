/**
 * Tool calls off the audio path (src/call/tool-runner.ts), on manual timers:
 * one outcome per call, recorded and delivered; a timeout aborts the tool and
 * answers TOOL_TROUBLE; a slow tool asks for a filler once.
 */
import { describe, expect, it } from 'vitest';
import { TOOL_BACKSTOP_GRACE_MS, TOOL_FILLER_INSTRUCTIONS, ToolRunner } from '../src/call/tool-runner.js';
import { silentLogger } from '../src/log.js';
import { nullRecorder, type ToolCallRecord, type TranscriptLine } from '../src/records.js';
import { TOOL_TROUBLE, ToolRegistry, type Tool, type ToolOutcomeKind } from '../src/tools/registry.js';
import { ManualTimers, flush } from './helpers/manual-timers.js';

function setup(tools: Tool[], opts: { timeoutMs?: number; fillerMs?: number; from?: string } = {}) {
  const timers = new ManualTimers();
  const outcomes: [string, ToolOutcomeKind][] = [];
  const lines: TranscriptLine[] = [];
  const records: ToolCallRecord[] = [];
  const fills: string[] = [];
  const delivered: [string, string][] = [];
  const guarded: Promise<unknown>[] = [];
  const runner = new ToolRunner({
    tools: new ToolRegistry(tools, { onOutcome: (name, outcome) => void outcomes.push([name, outcome]) }),
    timers,
    now: () => 0,
    sinceStart: () => 1234,
    log: silentLogger,
    recorder: { ...nullRecorder, transcript: (l) => void lines.push(l), toolCall: (r) => void records.push(r) },
    callSid: 'CA1',
    from: opts.from,
    timeoutMs: opts.timeoutMs ?? 1000,
    fillerMs: opts.fillerMs ?? 500,
    fill: (instructions) => void fills.push(instructions),
    deliver: (id, output) => void delivered.push([id, output]),
    guard: (chain) => void guarded.push(chain),
  });
  return { runner, timers, lines, records, fills, delivered, guarded, outcomes };
}

describe('ToolRunner', () => {
  it('runs a tool in the background: line at start, record and delivery at the end, no filler when fast', async () => {
    const seen: unknown[] = [];
    const tool: Tool = { name: 'lookup', description: 't', parameters: {}, run: async (args, ctx) => (seen.push(args, ctx.callSid), { ok: true, output: '{"ok":1}', record: { r: 1 } }) };
    const h = setup([tool]);
    h.runner.run('c1', 'lookup', '{"x":1}');
    expect(h.runner.running).toBe(1);
    expect(h.lines).toEqual([{ atMs: 1234, speaker: 'tool', text: 'lookup called' }]);
    expect(h.delivered).toEqual([]); // nothing awaited on the caller's path
    await flush();
    expect(seen).toEqual([{ x: 1 }, 'CA1']);
    expect(h.delivered).toEqual([['c1', '{"ok":1}']]);
    expect(h.records).toEqual([{ callId: 'c1', name: 'lookup', args: '{"x":1}', ok: true, output: '{"ok":1}', record: { r: 1 }, startedAtMs: 1234, durationMs: 0 }]);
    expect(h.runner.running).toBe(0);
    await h.timers.advance(10_000);
    expect(h.fills).toEqual([]);
    expect(h.guarded).toHaveLength(1);
  });

  it('a tool past its timeout is aborted and answers TOOL_TROUBLE; past fillerMs it asks for a filler once', async () => {
    let aborted = false;
    const tool: Tool = { name: 'stuck', description: 't', parameters: {}, run: (_args, ctx) => new Promise(() => ctx.signal?.addEventListener('abort', () => (aborted = true))) };
    const h = setup([tool], { timeoutMs: 300, fillerMs: 100 });
    h.runner.run('c2', 'stuck', '{}');
    await h.timers.advance(99);
    expect(h.fills).toEqual([]);
    await h.timers.advance(1);
    expect(h.fills).toEqual([TOOL_FILLER_INSTRUCTIONS]);
    await h.timers.advance(199);
    expect(h.delivered).toEqual([]);
    await h.timers.advance(1);
    expect(aborted).toBe(true);
    expect(h.delivered).toEqual([['c2', JSON.stringify({ error: TOOL_TROUBLE })]]);
    expect(h.records[0]).toMatchObject({ ok: false, record: { error: 'timeout' } });
    await h.timers.advance(10_000);
    expect(h.fills).toHaveLength(1);
    expect(h.delivered).toHaveLength(1);
  });

  it("a tool's own filler instructions are asked for instead of the default", async () => {
    const tool: Tool = { name: 'slow', description: 't', parameters: {}, filler: 'Say you are looking up the order.', run: () => new Promise(() => {}) };
    const h = setup([tool], { timeoutMs: 300, fillerMs: 100 });
    h.runner.run('c3', 'slow', '{}');
    await h.timers.advance(100);
    expect(h.fills).toEqual(['Say you are looking up the order.']);
  });

  it("the caller's number reaches the tool's context", async () => {
    const froms: (string | undefined)[] = [];
    const tool: Tool = { name: 'who', description: 't', parameters: {}, run: async (_a, ctx) => (froms.push(ctx.from), { ok: true, output: '{}', record: {} }) };
    const h = setup([tool], { from: '+15550002222' });
    h.runner.run('c4', 'who', '{}');
    await flush();
    expect(froms).toEqual(['+15550002222']);
  });

  it("the observer sees each call once: the tool's outcome, or the backstop timeout and not the late outcome", async () => {
    let finishLate: (() => void) | undefined;
    const fast: Tool = { name: 'fast', description: 't', parameters: {}, run: async () => ({ ok: true, output: '{}', record: {} }) };
    const late: Tool = {
      name: 'late',
      description: 't',
      parameters: {},
      run: () => new Promise((resolve) => (finishLate = () => resolve({ ok: true, output: '{}', record: {} }))),
    };
    const h = setup([fast, late], { timeoutMs: 300 });
    h.runner.run('c5', 'fast', '{}');
    h.runner.run('c6', 'late', '{}');
    await flush();
    expect(h.outcomes).toEqual([['fast', 'ok']]);
    await h.timers.advance(300);
    expect(h.outcomes).toEqual([['fast', 'ok'], ['late', 'timeout']]);
    finishLate!();
    await flush();
    expect(h.outcomes).toHaveLength(2);
    expect(h.delivered).toHaveLength(2);
  });

  it('a tool that bounds its own time gets its own bound plus a grace as the backstop, longer or shorter than the default', async () => {
    const stuck = (name: string, timeoutMs: number): Tool => ({ name, description: 't', parameters: {}, timeoutMs, run: () => new Promise(() => {}) });
    const h = setup([stuck('long', 5000), stuck('short', 100)], { timeoutMs: 1000, fillerMs: 10_000 });
    h.runner.run('c7', 'long', '{}');
    h.runner.run('c8', 'short', '{}');
    await h.timers.advance(100 + TOOL_BACKSTOP_GRACE_MS - 1);
    expect(h.delivered).toEqual([]);
    await h.timers.advance(1);
    expect(h.delivered.map(([id]) => id)).toEqual(['c8']);
    await h.timers.advance(5000 + TOOL_BACKSTOP_GRACE_MS - 1 - (100 + TOOL_BACKSTOP_GRACE_MS));
    expect(h.delivered).toHaveLength(1); // not cut at the default 1000 ms
    await h.timers.advance(1);
    expect(h.delivered.map(([id]) => id)).toEqual(['c8', 'c7']);
    expect(h.outcomes).toEqual([['short', 'timeout'], ['long', 'timeout']]);
  });
});
