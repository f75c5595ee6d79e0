/**
 * The shipped monitoring (deploy/prometheus, deploy/grafana) against the code:
 * - promtool accepts the alert rules, the Prometheus config, and every query
 *   of the dashboard (written out as recording rules), and the alerts' unit
 *   tests (alerts.test.yaml) pass;
 * - every alert is tested both ways (fires, stays quiet) and carries a
 *   severity, summary, description and a runbook section that exists;
 * - every callbridge_* metric the alerts, their tests and the dashboard name
 *   is in a real registry's output (or registered by the server edge,
 *   src/server/core.ts), so renaming a metric fails here;
 * - the dashboard has what Grafana needs to load it.
 * Without promtool the promtool checks are skipped, saying why, unless
 * CALLBRIDGE_REQUIRE_PROMTOOL=1 (CI), where a missing promtool is a failure.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { LatencyHistogram } from '../src/call/stats.js';
import { createMetrics } from '../src/server/metrics.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const PROM = join(ROOT, 'deploy/prometheus');
const ALERTS = join(PROM, 'alerts.yaml');
const ALERT_TESTS = join(PROM, 'alerts.test.yaml');
const PROM_CONFIG = join(PROM, 'prometheus.yaml');
const DASHBOARD = join(ROOT, 'deploy/grafana/dashboards/callbridge.json');
const DATASOURCE = join(ROOT, 'deploy/grafana/provisioning/datasources/prometheus.yaml');
const OPERATIONS = join(ROOT, 'docs/operations.md');

interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface Target {
  refId: string;
  expr: string;
  datasource?: { type: string; uid: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { h: number; w: number; x: number; y: number };
  datasource?: { type: string; uid: string };
  targets?: Target[];
}

const alertRules: AlertRule[] = (parse(readFileSync(ALERTS, 'utf8')) as { groups: { rules: AlertRule[] }[] }).groups.flatMap((g) => g.rules);
const alertTests = parse(readFileSync(ALERT_TESTS, 'utf8')) as {
  tests: { input_series: { series: string }[]; alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }[];
};
const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating?: { list: { name: string }[] };
};
const queryPanels = dashboard.panels.filter((p) => p.type !== 'row');

/** Grafana's dashboard variables, replaced by a value that keeps the query valid PromQL (`$instance` = all). */
const DASHBOARD_VARIABLES: Record<string, string> = { instance: '.*' };
function promqlOf(expr: string): string {
  return expr.replace(/\$(\w+)|\$\{(\w+)\}/g, (whole, a: string | undefined, b: string | undefined) => {
    const value = DASHBOARD_VARIABLES[(a ?? b)!];
    if (value === undefined) throw new Error(`dashboard query uses ${whole}, which this test does not know: add it to DASHBOARD_VARIABLES`);
    return value;
  });
}

// ── promtool ─────────────────────────────────────────────────────────────

const promtool = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
const havePromtool = promtool.status === 0;
const requirePromtool = process.env.CALLBRIDGE_REQUIRE_PROMTOOL === '1';
if (!havePromtool && !requirePromtool) {
  console.warn("alert and dashboard checks with promtool skipped: promtool is not installed (Debian: apt-get install prometheus); set CALLBRIDGE_REQUIRE_PROMTOOL=1 to make this a failure");
}

function runPromtool(...args: string[]): { ok: boolean; output: string } {
  const r = spawnSync('promtool', args, { encoding: 'utf8', cwd: ROOT });
  return { ok: r.status === 0, output: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

describe('promtool', () => {
  it.runIf(requirePromtool && !havePromtool)('is installed (CALLBRIDGE_REQUIRE_PROMTOOL=1)', () => {
    expect.fail(`promtool is not installed (${promtool.error?.message ?? promtool.stderr}): install Debian's prometheus package (apt-get install prometheus)`);
  });

  describe.runIf(havePromtool)('checks', () => {
    const temp = mkdtempSync(join(tmpdir(), 'callbridge-alerts-'));
    afterAll(() => rmSync(temp, { recursive: true, force: true }));

    it('accepts the alert rules', () => {
      const r = runPromtool('check', 'rules', ALERTS);
      expect(r.ok, r.output).toBe(true);
    });

    it("passes the alerts' unit tests", () => {
      const r = runPromtool('test', 'rules', ALERT_TESTS);
      expect(r.ok, r.output).toBe(true);
    });

    it('accepts the Prometheus config (and the rule file it loads)', () => {
      const r = runPromtool('check', 'config', PROM_CONFIG);
      expect(r.ok, r.output).toBe(true);
      expect(r.output).toMatch(/alerts\.yaml/);
    });

    it("accepts every query of the dashboard (as recording rules)", () => {
      const rules = queryPanels.flatMap((p) =>
        (p.targets ?? []).map((t) => `      - record: dashboard:panel_${p.id}_${t.refId}\n        expr: ${JSON.stringify(promqlOf(t.expr))}\n`),
      );
      expect(rules.length).toBeGreaterThan(0);
      const file = join(temp, 'dashboard-queries.yaml');
      writeFileSync(file, `groups:\n  - name: dashboard\n    rules:\n${rules.join('')}`);
      const r = runPromtool('check', 'rules', file);
      expect(r.ok, r.output).toBe(true);
      expect(r.output).toMatch(new RegExp(`SUCCESS: ${rules.length} rules found`));
    });
  });
});

// ── The alerts themselves ────────────────────────────────────────────────

/** GitHub's anchor of a Markdown heading. */
const anchorOf = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');

describe('alerts', () => {
  const headings = new Set(readFileSync(OPERATIONS, 'utf8').split('\n').flatMap((l) => (/^#{1,6}\s/.test(l) ? [anchorOf(l.replace(/^#+\s*/, ''))] : [])));

  it('every alert has a unique name, a severity, a summary, a description and a runbook section in docs/operations.md', () => {
    expect(alertRules.length).toBeGreaterThanOrEqual(10);
    expect(new Set(alertRules.map((r) => r.alert)).size).toBe(alertRules.length);
    for (const rule of alertRules) {
      expect(['critical', 'warning', 'info'], rule.alert).toContain(rule.labels?.severity);
      expect(rule.annotations?.summary, rule.alert).toBeTruthy();
      expect(rule.annotations?.description, rule.alert).toBeTruthy();
      const runbook = rule.annotations?.runbook ?? '';
      expect(runbook, rule.alert).toMatch(/^docs\/operations\.md#/);
      expect(headings.has(runbook.split('#')[1]!), `${rule.alert}: no heading for ${runbook} in docs/operations.md`).toBe(true);
    }
  });

  it('every alert is unit-tested firing and staying quiet', () => {
    const checks = alertTests.tests.flatMap((t) => t.alert_rule_test);
    for (const rule of alertRules) {
      const own = checks.filter((c) => c.alertname === rule.alert);
      expect(own.some((c) => c.exp_alerts.length > 0), `${rule.alert} is never expected to fire`).toBe(true);
      expect(own.some((c) => c.exp_alerts.length === 0), `${rule.alert} is never expected to stay quiet`).toBe(true);
    }
    for (const c of checks) expect(alertRules.map((r) => r.alert), `a test names ${c.alertname}`).toContain(c.alertname);
  });
});

// ── Metric names against a real registry ─────────────────────────────────

/** Every series name a registry exposes, after exercising what is exported only once used. */
async function exposedSeries(): Promise<Set<string>> {
  const metrics = createMetrics();
  metrics.call.callEnded('caller_hangup', {
    durationMs: 61_000,
    model: 'gpt-realtime',
    usage: { inputTextTokens: 10, inputAudioTokens: 100, inputCachedTokens: 0, outputTextTokens: 10, outputAudioTokens: 100 },
  });
  metrics.call.recording({ status: 'complete' });
  metrics.call.turnLatency(800);
  metrics.call.modelLink('drop');
  metrics.toolOutcome('check_eligibility', 'ok', 120);
  const relay = { inbound: new LatencyHistogram(), outbound: new LatencyHistogram() };
  metrics.setRelayLatencySource(() => relay);
  metrics.setStoreSource(() => ({ kind: 'postgres', reachable: true, queued: 0, dropped: 0, lastError: null }));
  metrics.setDrainSource(() => null);
  const text = await metrics.registry.metrics();
  const names = new Set(text.split('\n').flatMap((l) => (l === '' || l.startsWith('#') ? [] : [l.split(/[{ ]/, 1)[0]!])));
  // The server edge adds its own gauges to the same registry when it starts (core.ts): read from its source.
  for (const m of readFileSync(join(ROOT, 'src/server/core.ts'), 'utf8').matchAll(/name: '(callbridge_[a-z0-9_]+)'/g)) names.add(m[1]!);
  return names;
}

const namesIn = (text: string) => new Set(text.match(/\bcallbridge_[a-z0-9_]+/g) ?? []);

describe('metric names', () => {
  it('every callbridge_* series the alerts, their tests and the dashboard use is exported', async () => {
    const exposed = await exposedSeries();
    const used = new Map<string, Set<string>>([
      ['deploy/prometheus/alerts.yaml', namesIn(alertRules.map((r) => r.expr).join('\n'))],
      ['deploy/prometheus/alerts.test.yaml', namesIn(alertTests.tests.flatMap((t) => t.input_series.map((s) => s.series)).join('\n'))],
      ['deploy/grafana/dashboards/callbridge.json', namesIn(queryPanels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)).join('\n'))],
    ]);
    for (const [file, names] of used) {
      expect(names.size, file).toBeGreaterThan(0);
      for (const name of names) expect(exposed.has(name), `${file} uses ${name}, which the registry does not export`).toBe(true);
    }
  });

  it('the check can fail: a made-up name is not exported', async () => {
    expect((await exposedSeries()).has('callbridge_calls_failed_total')).toBe(false);
  });
});

// ── The dashboard ────────────────────────────────────────────────────────

describe('Grafana dashboard', () => {
  it('has a uid, a title, a schema version and unique panel ids', () => {
    expect(dashboard.uid).toMatch(/^[a-zA-Z0-9_-]{1,40}$/);
    expect(dashboard.title).toBeTruthy();
    expect(Number.isInteger(dashboard.schemaVersion) && dashboard.schemaVersion >= 30).toBe(true);
    const ids = dashboard.panels.map((p) => p.id);
    expect(ids.every((id) => Number.isInteger(id) && id > 0)).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('places every panel on the 24-column grid without overlaps', () => {
    const taken = new Map<string, string>();
    for (const p of dashboard.panels) {
      const g = p.gridPos;
      expect([g.h, g.w, g.x, g.y].every((n) => Number.isInteger(n) && n >= 0), p.title).toBe(true);
      expect(g.w > 0 && g.h > 0 && g.x + g.w <= 24, p.title).toBe(true);
      for (let x = g.x; x < g.x + g.w; x++) {
        for (let y = g.y; y < g.y + g.h; y++) {
          const cell = `${x},${y}`;
          expect(taken.get(cell), `${p.title} overlaps ${taken.get(cell)}`).toBeUndefined();
          taken.set(cell, p.title);
        }
      }
    }
  });

  it('every query panel reads the provisioned Prometheus datasource and has targets with unique refIds', () => {
    const uid = (parse(readFileSync(DATASOURCE, 'utf8')) as { datasources: { uid: string; type: string }[] }).datasources[0]!;
    expect(uid.type).toBe('prometheus');
    expect(queryPanels.length).toBeGreaterThanOrEqual(10);
    for (const p of queryPanels) {
      expect(p.datasource, p.title).toEqual({ type: 'prometheus', uid: uid.uid });
      const targets = p.targets ?? [];
      expect(targets.length, p.title).toBeGreaterThan(0);
      expect(new Set(targets.map((t) => t.refId)).size, p.title).toBe(targets.length);
      for (const t of targets) {
        expect(t.expr.trim(), p.title).not.toBe('');
        expect(() => promqlOf(t.expr), p.title).not.toThrow();
      }
    }
    for (const name of Object.keys(DASHBOARD_VARIABLES)) expect(dashboard.templating?.list.map((v) => v.name)).toContain(name);
  });
});
