/**
 * GPT-Live usage in the record (issue 20): audio seconds billed by time
 * (Usage.activeAudioSeconds) add up in a call's total, survive a round trip
 * through both stores, are priced per active minute, and show in
 * `calls show`; rows written before (token usage only) read as they were.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { formatRecord } from '../src/cli/calls.js';
import { silentLogger } from '../src/log.js';
import type { Usage } from '../src/records.js';
import { estimateCostUsd } from '../src/store/cost.js';
import { PostgresCallStore } from '../src/store/postgres.js';
import { LIVE_MODEL_PRICES, modelPrices, REFERENCE_ACTIVE_AUDIO_PER_MIN, type Prices } from '../src/store/prices.js';
import { streamRecorder } from '../src/store/recorder.js';
import { sumUsage } from '../src/store/rows.js';
import { SqliteCallStore } from '../src/store/sqlite.js';
import type { CallStore } from '../src/store/types.js';
import { adminSql, dropSchema, freshSchema, PG_URL, postgresAvailable } from './helpers/postgres.js';
import { endInfo, prices, SID } from './helpers/store.js';

const pgOk = await postgresAvailable();

const TOKENS_ONLY: Usage = { inputTextTokens: 10, inputAudioTokens: 20, inputCachedTokens: 0, outputTextTokens: 30, outputAudioTokens: 40 };
const live = (activeAudioSeconds: number): Usage => ({ inputTextTokens: 0, inputAudioTokens: 0, inputCachedTokens: 0, outputTextTokens: 0, outputAudioTokens: 0, activeAudioSeconds });
/** The store's prices for a gpt-live-1.1 line, as config.ts would build them (telephony from the shared fixture). */
const livePrices: Prices = { ...modelPrices('gpt-live-1.1')!, telephonyPerMin: prices.telephonyPerMin };

describe('Live prices', () => {
  it('gpt-live-1.1 bills $0.05 per active minute and no tokens, with its date and source', () => {
    expect(LIVE_MODEL_PRICES['gpt-live-1.1']).toMatchObject({ activeAudioPerMin: 0.05, asOf: '2026-11' });
    expect(LIVE_MODEL_PRICES['gpt-live-1.1']!.source).toMatch(/gpt-live-1\.1/);
    const p = modelPrices('gpt-live-1.1')!;
    expect(p.activeAudioPerMin).toBe(0.05);
    expect([p.textInPerMTok, p.textOutPerMTok, p.audioInPerMTok, p.audioOutPerMTok, p.textCachedInPerMTok, p.audioCachedInPerMTok]).toEqual([0, 0, 0, 0, 0, 0]);
    expect(modelPrices('gpt-live-1.1-2026-11-20')).toEqual(p);
  });

  it('an unlisted model is unknown (the caller falls back), and token models carry no per-minute price', () => {
    expect(modelPrices('gpt-live-1')).toBeUndefined();
    expect(modelPrices('gpt-live-9')).toBeUndefined();
    expect(modelPrices('constructor')).toBeUndefined();
    expect(modelPrices('gpt-realtime-2')!.activeAudioPerMin).toBeUndefined();
  });
});

describe('estimateCostUsd with active audio', () => {
  it('active minutes pro rata at the per-minute price, plus telephony per started minute', () => {
    // 90 s active = 1.5 min × $0.05 = $0.075; 61 s of call = 2 started minutes × $0.0125.
    expect(estimateCostUsd(live(90), 61_000, livePrices)).toBeCloseTo(0.075 + 0.025, 9);
    // A PRICE_* override of the per-minute price is used as given.
    expect(estimateCostUsd(live(90), 61_000, { ...livePrices, activeAudioPerMin: 0.2 })).toBeCloseTo(0.3 + 0.025, 9);
  });

  it('prices naming no per-minute price (an unknown model) take the reference Live price, as unknown token models take gpt-realtime', () => {
    expect(REFERENCE_ACTIVE_AUDIO_PER_MIN).toBe(0.05);
    expect(prices.activeAudioPerMin).toBeUndefined();
    expect(estimateCostUsd(live(120), 0, prices)).toBeCloseTo(0.1, 9);
  });

  it('a token-only usage costs what it did', () => {
    const before = (10 * 4 + 20 * 32 + 30 * 16 + 40 * 64) / 1e6 + 0.0125;
    expect(estimateCostUsd(TOKENS_ONLY, 1_000, prices)).toBeCloseTo(before, 9);
    expect(estimateCostUsd(TOKENS_ONLY, 1_000, livePrices)).toBeCloseTo(0.0125, 9);
  });
});

describe('sumUsage', () => {
  it('adds active seconds as increments and leaves a token-only total without them', () => {
    expect(sumUsage(TOKENS_ONLY, TOKENS_ONLY)).not.toHaveProperty('activeAudioSeconds');
    expect(sumUsage(TOKENS_ONLY, live(12.5)).activeAudioSeconds).toBe(12.5);
    expect(sumUsage(live(12.5), live(30)).activeAudioSeconds).toBe(42.5);
    expect(sumUsage(live(12.5), TOKENS_ONLY)).toMatchObject({ activeAudioSeconds: 12.5, outputAudioTokens: 40 });
  });
});

interface Kind {
  name: string;
  setup(): void;
  teardown(): Promise<void>;
  open(p: Prices): Promise<CallStore>;
  /** One statement on the storage, as an older callbridge would have written it. */
  raw(text: string): Promise<void>;
}

function sqliteKind(): Kind {
  let dir = '';
  return {
    name: 'sqlite',
    setup() {
      dir = mkdtempSync(join(tmpdir(), 'callbridge-live-usage-'));
    },
    async teardown() {
      rmSync(dir, { recursive: true, force: true });
    },
    async open(p) {
      return new SqliteCallStore({ path: join(dir, 'calls.db'), prices: p, log: silentLogger });
    },
    async raw(text) {
      const { openSqlite } = await import('../src/store/sqlite-driver.js');
      const db = openSqlite(join(dir, 'calls.db'));
      try {
        db.prepare(text).run();
      } finally {
        db.close();
      }
    },
  };
}

function postgresKind(): Kind {
  let schema = '';
  let n = 0;
  return {
    name: 'postgres',
    setup() {
      schema = freshSchema();
    },
    async teardown() {
      await dropSchema(schema);
    },
    async open(p) {
      return PostgresCallStore.open({ url: PG_URL, schema, prices: p, log: silentLogger, instanceId: `live-usage-${++n}` });
    },
    async raw(text) {
      const sql = adminSql(`${PG_URL}?search_path=${schema}`);
      try {
        await sql.unsafe(text);
      } finally {
        await sql.end({ timeout: 2 });
      }
    },
  };
}

const kinds = [sqliteKind(), ...(pgOk ? [postgresKind()] : [])];

describe.each(kinds)('$name store: active audio seconds in the record', (kind) => {
  const opened: CallStore[] = [];
  const open = async (p: Prices) => {
    const s = await kind.open(p);
    opened.push(s);
    return s;
  };
  beforeEach(() => kind.setup());
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
    await kind.teardown();
  });

  it('usage events add up, survive a reopen, and are priced per active minute', async () => {
    const store = await open(livePrices);
    const rec = streamRecorder(store, SID);
    const t0 = new Date(Date.now() - 61_000);
    rec.started({ callSid: SID, streamSid: 'MZ1', audioMode: 'passthrough', startedAt: t0, model: 'gpt-live-1.1' });
    rec.usage(live(30));
    rec.usage(live(45.5));
    rec.usage({ ...TOKENS_ONLY });
    rec.ended(endInfo(new Date(t0.getTime() + 61_000)));
    await store.flush();
    await store.close();
    opened.length = 0;

    const reader = await open(livePrices);
    const r = (await reader.get(SID))!;
    expect(r.usage.activeAudioSeconds).toBe(75.5);
    expect(r.usage.outputAudioTokens).toBe(40);
    // 75.5 s = 1.2583 min × $0.05 + 2 started minutes × $0.0125; Live tokens are priced at 0.
    expect(r.estimatedCostUsd).toBeCloseTo((75.5 / 60) * 0.05 + 0.025, 6);
    expect((await reader.list()).find((c) => c.callSid === SID)!.estimatedCostUsd).toBeCloseTo(r.estimatedCostUsd, 9);
    const shown = formatRecord(r);
    expect(shown).toContain('active audio: 1.26 min (75.5 s), billed per active minute');
  });

  it('a row written before (token usage only) reads as it was beside a Live call', async () => {
    // Create the schema, then put a row in as a callbridge before issue 20 wrote it: usage JSON without active seconds.
    await (await open(prices)).close();
    opened.length = 0;
    const OLD = 'CA00000000000000000000000000000009';
    const at = "'2026-11-01T10:00:00.000Z'";
    await kind.raw(
      `INSERT INTO calls (call_sid, stream_sid, started_at, ended_at, duration_ms, state, usage, cost_usd, model, created_at, updated_at)
       VALUES ('${OLD}', 'MZ0', ${at}, '2026-11-01T10:01:05.000Z', 65000, 'completed', '${JSON.stringify(TOKENS_ONLY)}', 0.123456, 'gpt-realtime', ${at}, ${at})`,
    );

    const store = await open(livePrices);
    const rec = streamRecorder(store, SID);
    rec.started({ callSid: SID, streamSid: 'MZ1', audioMode: 'passthrough', startedAt: new Date(Date.now() - 10_000), model: 'gpt-live-1.1' });
    rec.usage(live(6));
    rec.ended(endInfo(new Date()));
    await store.flush();

    const old = (await store.get(OLD))!;
    expect(old.usage).toEqual({ ...TOKENS_ONLY });
    expect(old.usage).not.toHaveProperty('activeAudioSeconds');
    expect(old.estimatedCostUsd).toBe(0.123456);
    expect(formatRecord(old)).not.toContain('active audio');
    expect((await store.get(SID))!.usage.activeAudioSeconds).toBe(6);
  });
});
