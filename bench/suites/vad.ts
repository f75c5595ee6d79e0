/**
 * VAD suite (issue 19): the audio core's detector against Silero VAD on the
 * labelled set of scripts/make-vad-set.sh (espeak-ng speech in 5 voices x 3
 * rates, backchannels, silence, line noise, the assistant's voice leaking
 * back at -20…-35 dB after 20–60 ms), both behind the VadStage interface,
 * fed 20 ms µ-law frames with the far end as reference.
 *
 * Figures per VAD: CPU per call-second (process CPU time, user + system,
 * over the whole set ÷ the set's audio seconds; medianNs = ns of CPU per
 * call-second), and in `extra` the set's scores (see scoreVad): recall and
 * false-positive rate on speech onsets, onset decision latency p50 / p95.
 *
 * The set is built once per process into a temp dir (about a minute), or
 * taken from VAD_SET_DIR. Without espeak-ng or sox, or without Silero's
 * optional packages, the rows that cannot be measured are left out with a
 * line on stderr.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openCoreVad, type VadEvent, type VadStage, type VadStageOptions } from '../../src/pipeline/vad.js';
import { openSileroVad } from '../../src/pipeline/vad-silero.js';
import type { Result, RunOptions, Suite } from '../types.js';

export const FRAME = 160;

export interface VadClip {
  name: string;
  /** speech | backchannel (positives) or silence | noise | echo (negatives). */
  kind: string;
  /** Caller speech starts here (ms from the clip start); null for negatives. */
  onsetMs: number | null;
  background: string;
  caller: Uint8Array;
  /** The far end as played (echo backgrounds), aligned with caller. */
  reference: Uint8Array | null;
}

/** Why the set cannot be built here, or undefined when it can. */
export function vadSetMissing(): string | undefined {
  for (const tool of ['espeak-ng', 'sox']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      return `${tool} not installed (Debian: apt-get install espeak-ng sox)`;
    }
  }
  return undefined;
}

let built: string | undefined;

/** Builds the set (once per process) or takes VAD_SET_DIR; returns its directory. */
export function buildVadSet(): string {
  const given = process.env.VAD_SET_DIR;
  if (given && existsSync(join(given, 'labels.tsv'))) return given;
  if (built) return built;
  const dir = mkdtempSync(join(tmpdir(), 'callbridge-vad-'));
  const script = fileURLToPath(new URL('../../scripts/make-vad-set.sh', import.meta.url).href.replace('/build/scripts/', '/scripts/'));
  execFileSync('bash', [existsSync(script) ? script : join(process.cwd(), 'scripts', 'make-vad-set.sh'), dir], { stdio: ['ignore', 'ignore', 'ignore'] });
  built = dir;
  return dir;
}

export function readVadSet(dir: string): VadClip[] {
  const lines = readFileSync(join(dir, 'labels.tsv'), 'utf8').split('\n').filter((l) => l.trim() !== '');
  return lines.map((line) => {
    const [name, kind, onset, background, reference] = line.split('\t');
    if (!name || !kind || !onset || !background || !reference) throw new Error(`labels.tsv: bad line '${line}'`);
    return {
      name, kind, background,
      onsetMs: onset === '-' ? null : Number(onset),
      caller: new Uint8Array(readFileSync(join(dir, `${name}.ul`))),
      reference: reference === '-' ? null : new Uint8Array(readFileSync(join(dir, reference))),
    };
  });
}

export type OpenVad = (options: VadStageOptions) => Promise<VadStage>;

export interface ClipOutcome {
  clip: VadClip;
  onsets: number[];
  /** An onset decided while the caller was not speaking (before onsetMs, or in a negative clip). */
  falsePositive: boolean;
  /** Positives: an onset decided in [onsetMs, onsetMs + DETECT_WINDOW_MS]; its latency. */
  latencyMs: number | null;
}

/** An onset later than this after the speech start does not count as detecting it. */
export const DETECT_WINDOW_MS = 500;

/**
 * Runs one clip through a fresh stage: per 20 ms, the reference frame (if any)
 * then the caller frame, waiting for the stage to be idle after each (as if
 * frames came in real time, without the waiting: no backlog builds up).
 */
export async function runClip(open: OpenVad, clip: VadClip): Promise<ClipOutcome> {
  const onsets: number[] = [];
  const errors: VadEvent[] = [];
  const vad = await open({
    onEvent: (e) => {
      if (e.type === 'onset') onsets.push(e.atMs);
      else if (e.type === 'error') errors.push(e);
    },
  });
  try {
    for (let at = 0; at + FRAME <= clip.caller.length; at += FRAME) {
      if (clip.reference) vad.played(clip.reference.subarray(at, at + FRAME));
      vad.push(clip.caller.subarray(at, at + FRAME));
      await vad.idle();
    }
    await vad.idle();
  } finally {
    vad.close();
  }
  if (errors.length) throw new Error(`${clip.name}: VAD error ${JSON.stringify(errors[0])}`);
  const t0 = clip.onsetMs;
  const falsePositive = onsets.some((t) => t0 === null || t < t0);
  const hit = t0 === null ? undefined : onsets.find((t) => t >= t0 && t <= t0 + DETECT_WINDOW_MS);
  return { clip, onsets, falsePositive, latencyMs: hit === undefined || t0 === null ? null : hit - t0 };
}

export interface VadScore {
  clips: number;
  positives: number;
  /** Positives detected ÷ positives. */
  recall: number;
  /** Clips with a false onset ÷ all clips. */
  fpRate: number;
  onsetP50Ms: number;
  onsetP95Ms: number;
  /** Recall per positive kind, FP rate per background. */
  byKind: Record<string, number>;
  /** Clip names missed / with a false onset (for reading). */
  missed: string[];
  falseOnsets: string[];
}

function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

export function scoreVad(outcomes: ClipOutcome[]): VadScore {
  const pos = outcomes.filter((o) => o.clip.onsetMs !== null);
  const hits = pos.filter((o) => o.latencyMs !== null);
  const lat = hits.map((o) => o.latencyMs!).sort((a, b) => a - b);
  const byKind: Record<string, number> = {};
  for (const kind of new Set(pos.map((o) => o.clip.kind))) {
    const of = pos.filter((o) => o.clip.kind === kind);
    byKind[`recall.${kind}`] = of.filter((o) => o.latencyMs !== null).length / of.length;
  }
  for (const bg of new Set(outcomes.map((o) => o.clip.background))) {
    const of = outcomes.filter((o) => o.clip.background === bg);
    byKind[`fp.${bg}`] = of.filter((o) => o.falsePositive).length / of.length;
  }
  return {
    clips: outcomes.length,
    positives: pos.length,
    recall: hits.length / pos.length,
    fpRate: outcomes.filter((o) => o.falsePositive).length / outcomes.length,
    onsetP50Ms: percentile(lat, 50),
    onsetP95Ms: percentile(lat, 95),
    byKind,
    missed: pos.filter((o) => o.latencyMs === null).map((o) => o.clip.name),
    falseOnsets: outcomes.filter((o) => o.falsePositive).map((o) => o.clip.name),
  };
}

/** Runs the whole set; CPU = process user + system time over it. */
export async function evaluateVad(open: OpenVad, clips: VadClip[]): Promise<{ score: VadScore; cpuNsPerCallSecond: number }> {
  const outcomes: ClipOutcome[] = [];
  const cpu0 = process.cpuUsage();
  for (const clip of clips) outcomes.push(await runClip(open, clip));
  const cpu = process.cpuUsage(cpu0);
  const seconds = clips.reduce((s, c) => s + c.caller.length / 8000, 0);
  return { score: scoreVad(outcomes), cpuNsPerCallSecond: ((cpu.user + cpu.system) * 1000) / seconds };
}

export const VADS: Record<'core' | 'silero', OpenVad> = { core: openCoreVad, silero: openSileroVad };

async function run(opts: RunOptions): Promise<Result[]> {
  const missing = vadSetMissing();
  if (missing) {
    opts.log(`vad: skipped: ${missing}`);
    return [];
  }
  if (!process.env.VAD_SET_DIR) opts.log('vad: building the labelled set (espeak-ng + sox, about a minute; VAD_SET_DIR=dir reuses one)…');
  const clips = readVadSet(buildVadSet());
  const results: Result[] = [];
  for (const kind of ['core', 'silero'] as const) {
    try {
      // Warm-up (model load, JIT) on a few clips, then the set.
      await evaluateVad(VADS[kind], clips.slice(0, 5));
      const { score, cpuNsPerCallSecond } = await evaluateVad(VADS[kind], clips);
      results.push({
        id: `vad.${kind}`,
        suite: 'vad',
        name: kind === 'core' ? 'core VAD (wasm)' : 'Silero VAD v5 (onnxruntime-node)',
        group: 'VAD CPU per call-second',
        per: 'call-second',
        medianNs: cpuNsPerCallSecond,
        samples: clips.length,
        ours: kind === 'core',
        peer: kind === 'core' ? 'vad.silero' : undefined,
        extra: {
          recall: score.recall, fpRate: score.fpRate, onsetP50Ms: score.onsetP50Ms, onsetP95Ms: score.onsetP95Ms,
          ...score.byKind,
        },
      });
    } catch (err) {
      opts.log(`vad: ${kind} not measured: ${(err as Error).message}`);
    }
  }
  return results;
}

export const vadSuite: Suite = {
  name: 'vad',
  description: 'VAD: core (wasm) vs Silero on the espeak-ng labelled set: recall, FP, onset latency, CPU per call-second',
  run,
  conclusions(results: Result[]): string[] {
    return results.filter((r) => r.suite === 'vad').map((r) => {
      const x = r.extra ?? {};
      const pc = (v: unknown): string => `${(Number(v) * 100).toFixed(1)} %`;
      return `vad: ${r.name}: recall ${pc(x.recall)}, FP ${pc(x.fpRate)}, onset p50 ${String(x.onsetP50Ms)} ms p95 ${String(x.onsetP95Ms)} ms, CPU ${(r.medianNs / 1e6).toFixed(2)} ms per call-second`;
    });
  },
};
