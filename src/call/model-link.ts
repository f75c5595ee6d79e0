/**
 * ModelLink: the model connection of one call, as one ModelSession that
 * never silently dies. It wraps a ModelProvider; when the provider session is
 * lost it dials a fresh one with the same session options and the
 * conversation so far (ModelSessionOptions.history) and carries on. Provider-neutral: it sees only
 * ModelEvents and port calls, never a socket.
 *
 * Contract:
 * - Loss = a `closed` event from the provider session, for any reason (close
 *   code, socket error, missed pong). The link then reports `link_lost` at
 *   once and never reports `closed` itself.
 * - Reconnect: dialled under the back-off rule of call/dial.ts (attempt 1 at
 *   once, then full jitter under min(backoffMaxMs, backoffBaseMs · 2^(k−2))
 *   ms), until `reconnectBudgetMs` after the loss; an attempt still in flight
 *   at the budget is aborted. A connect error that is not retryable (401, a
 *   rejected session.update) ends the attempts at once. Giving up reports
 *   `link_failed` (terminal: later port calls are ignored).
 * - Replay: the link keeps the conversation from the events and calls that
 *   pass through it (call/history.ts: what is kept, in which order, what
 *   cannot be replayed). Each reconnect dials with it as the new session's
 *   history; a conversation that changed while dialling (a tool result, a
 *   cut) is dialled again. Then `link_restored`.
 * - Caller audio during the gap (loss → new session configured): dropped,
 *   except the most recent `gapAudioKeepMs` (rounded up to whole appends),
 *   which go to the new session right after the replayed items. From the
 *   moment the new session is configured, every `appendAudio` reaches it.
 * - Other calls during the gap: user texts and tool results are kept and
 *   replayed; `createResponse`, `cancelResponse` and `truncate` are not sent
 *   (a requested response shows as `unansweredTurn`). `truncate` is only
 *   forwarded for items of the current session: replayed items are text.
 * - Events of a lost session never reach the call. After `close()` nothing
 *   is reported, no timer or connect attempt is left (connects are aborted
 *   through their AbortSignal).
 * - `ModelLink.open` may be called at webhook time (pre-warm): events queue
 *   until `onEvent` is set, and a session lost before that takes the same path.
 */
import type { Logger } from '../log.js';
import { base64Bytes, bytesPerMs } from '../dsp/format.js';
import { DialGaveUp, dial, errText } from './dial.js';
import { EventOutlet } from './event-outlet.js';
import { ConversationHistory } from './history.js';
import {
  ModelConnectError,
  type ConversationItem,
  type ModelAudioFormat,
  type ModelEvent,
  type ModelProvider,
  type ModelSession,
  type ModelSessionOptions,
} from './voice-model.js';

/** Process-wide counters for /metrics; share one object between links. */
export interface LinkStats {
  /** Provider sessions lost mid-call (or while pre-warmed). */
  drops: number;
  /** Losses repaired (a new session configured and replayed). */
  reconnects: number;
  /** Links that gave up. */
  giveUps: number;
}

export function newLinkStats(): LinkStats {
  return { drops: 0, reconnects: 0, giveUps: 0 };
}

export interface ModelLinkOptions {
  log: Logger;
  /** Backoff cap of attempt 2 (ms); doubles per attempt. Default 1000. */
  backoffBaseMs?: number;
  /** Largest backoff cap (ms). Default 8000. */
  backoffMaxMs?: number;
  /** Give up this long after a loss (ms). Default 45000. */
  reconnectBudgetMs?: number;
  /** Budget of the first connect, retried the same way (ms). Default 10000. */
  openBudgetMs?: number;
  /** Caller audio kept from the gap and sent to the new session (ms). Default 500. */
  gapAudioKeepMs?: number;
  stats?: LinkStats;
  /** Uniform [0, 1); for tests. */
  random?: () => number;
  /** Milliseconds clock; for tests. */
  now?: () => number;
}

export const LINK_DEFAULTS = {
  backoffBaseMs: 1000,
  backoffMaxMs: 8000,
  reconnectBudgetMs: 45_000,
  openBudgetMs: 10_000,
  gapAudioKeepMs: 500,
} as const;

// ---------------------------------------------------------------------------
// Caller audio kept from the gap

/** The most recent `keepMs` of appended audio (whole appends; the oldest that still overlaps the window is kept). */
class GapAudio {
  private chunks: { b64: string; ms: number }[] = [];
  private totalMs = 0;

  constructor(
    private readonly keepMs: number,
    private readonly bytesPerMs: number,
  ) {}

  push(b64: string): void {
    if (this.keepMs <= 0) return;
    const ms = base64Bytes(b64) / this.bytesPerMs;
    this.chunks.push({ b64, ms });
    this.totalMs += ms;
    while (this.chunks.length > 1 && this.totalMs - this.chunks[0]!.ms >= this.keepMs) {
      this.totalMs -= this.chunks.shift()!.ms;
    }
  }

  drain(): string[] {
    const out = this.chunks.map((c) => c.b64);
    this.clear();
    return out;
  }

  clear(): void {
    this.chunks = [];
    this.totalMs = 0;
  }
}

// ---------------------------------------------------------------------------
// The link

/** `closing`: inside close(), while the session closes (its last usage still passes). */
type LinkState = 'live' | 'reconnecting' | 'failed' | 'closing' | 'closed';

interface Settings {
  backoffBaseMs: number;
  backoffMaxMs: number;
  reconnectBudgetMs: number;
  openBudgetMs: number;
  gapAudioKeepMs: number;
}

export class ModelLink implements ModelSession {
  readonly format: ModelAudioFormat;
  private state: LinkState = 'live';
  private session: ModelSession | undefined;
  /** Generation of the current provider session; events of older ones are ignored. */
  private gen = 0;
  private readonly outlet: EventOutlet;
  private readonly history: ConversationHistory;
  private readonly gap: GapAudio;
  /** Assistant item ids produced by the current session (truncate targets). */
  private readonly liveItems = new Set<string>();
  private reconnect: AbortController | undefined;
  private readonly stats: LinkStats;
  private readonly random: () => number;
  private readonly now: () => number;

  /**
   * Open the first provider session (retried under the backoff rule for
   * `openBudgetMs`) and wrap it. Rejects with ModelConnectError when no
   * session could be opened or `signal` aborted.
   */
  static async open(
    provider: ModelProvider,
    session: ModelSessionOptions,
    opts: ModelLinkOptions,
    signal?: AbortSignal,
  ): Promise<ModelLink> {
    const s = settings(opts);
    if (signal?.aborted) throw new ModelConnectError('model connect aborted', false);
    try {
      const { session: first } = await dial({
        provider,
        session,
        budgetMs: s.openBudgetMs,
        baseMs: s.backoffBaseMs,
        maxMs: s.backoffMaxMs,
        random: opts.random ?? Math.random,
        now: opts.now ?? Date.now,
        signal: signal ?? new AbortController().signal,
        log: opts.log,
      });
      return new ModelLink(provider, session, opts, s, first);
    } catch (err) {
      if (err instanceof DialGaveUp) {
        throw new ModelConnectError(`model unavailable after ${err.attempts} attempt(s): ${err.reason}`, err.retryable, { cause: err });
      }
      throw err;
    }
  }

  private constructor(
    private readonly provider: ModelProvider,
    private readonly sessionOptions: ModelSessionOptions,
    private readonly opts: ModelLinkOptions,
    private readonly s: Settings,
    first: ModelSession,
  ) {
    this.format = first.format;
    this.outlet = new EventOutlet(opts.log);
    this.stats = opts.stats ?? newLinkStats();
    this.random = opts.random ?? Math.random;
    this.now = opts.now ?? Date.now;
    this.history = new ConversationHistory(bytesPerMs(first.format));
    if (sessionOptions.history) this.history.add(sessionOptions.history); // `first` was opened with it
    this.gap = new GapAudio(s.gapAudioKeepMs, bytesPerMs(first.format));
    this.attach(first);
  }

  private attach(session: ModelSession): void {
    const gen = ++this.gen;
    this.session = session;
    this.liveItems.clear();
    session.onEvent((ev) => this.onProviderEvent(gen, ev));
  }

  // -- provider → call ---------------------------------------------------------

  private onProviderEvent(gen: number, ev: ModelEvent): void {
    if (gen !== this.gen) return;
    // Closing, a session may still report what it billed last (the pipeline's STT tail): only that passes.
    if (this.state === 'closing') {
      if (ev.type === 'usage') this.emit(ev);
      return;
    }
    if (this.state !== 'live') return;
    switch (ev.type) {
      case 'closed':
        return this.lose(ev.reason);
      case 'ready':
        if (gen > 1) return; // a restored session reports link_restored instead
        break;
      case 'audio':
      case 'assistant_transcript_delta':
      case 'assistant_transcript':
        this.liveItems.add(ev.itemId);
        break;
      default:
        break;
    }
    this.history.observe(ev);
    this.emit(ev);
  }

  private lose(cause: string): void {
    const old = this.session;
    this.session = undefined;
    this.gen++;
    this.state = 'reconnecting';
    old?.close();
    this.liveItems.clear();
    this.gap.clear();
    this.history.sessionLost();
    this.stats.drops++;
    const lostAt = this.now();
    this.opts.log.warn({ cause }, 'model link lost: reconnecting');
    this.emit({ type: 'link_lost', cause });
    if (this.state !== 'reconnecting') return; // the call closed the link from its link_lost handler
    this.redial(lostAt);
  }

  /** Dial a new session that starts with the conversation so far; restore the link with it. */
  private redial(lostAt: number): void {
    const abort = new AbortController();
    this.reconnect = abort;
    const revision = this.history.revision;
    dial({
      provider: this.provider,
      session: { ...this.sessionOptions, history: this.history.items() },
      budgetMs: this.s.reconnectBudgetMs,
      baseMs: this.s.backoffBaseMs,
      maxMs: this.s.backoffMaxMs,
      random: this.random,
      now: this.now,
      signal: abort.signal,
      log: this.opts.log,
    })
      .then(
        ({ session, attempts }) => this.restore(session, attempts, lostAt, revision),
        (err: unknown) => this.fail(err),
      )
      .catch((err: unknown) => this.opts.log.error({ err: errText(err) }, 'model link: reconnect bookkeeping failed'));
  }

  private restore(session: ModelSession, attempts: number, lostAt: number, revision: number): void {
    if (this.state !== 'reconnecting') {
      session.close();
      return;
    }
    if (this.history.revision !== revision) {
      // The conversation moved on while dialling (a tool result, a cut): the new session lacks it. Dial again with it.
      session.close();
      this.redial(lostAt);
      return;
    }
    this.reconnect = undefined;
    this.state = 'live';
    const gen = ++this.gen;
    this.session = session;
    this.liveItems.clear();
    // The kept gap audio goes out before events are taken from the new session (which holds the
    // conversation from its start), so link_restored always follows link_lost and precedes anything it says.
    for (const b64 of this.gap.drain()) session.appendAudio(b64);
    this.stats.reconnects++;
    const gapMs = this.now() - lostAt;
    const unansweredTurn = this.history.owesAnswer();
    this.opts.log.info({ attempts, gapMs, unansweredTurn }, 'model link restored');
    this.emit({ type: 'link_restored', attempts, gapMs, unansweredTurn });
    // Unless the call closed the link from its link_restored handler (close() closes `session` too):
    if (this.gen === gen) session.onEvent((ev) => this.onProviderEvent(gen, ev));
  }

  private fail(err: unknown): void {
    if (this.state !== 'reconnecting') return;
    this.reconnect = undefined;
    this.state = 'failed';
    this.gap.clear();
    this.stats.giveUps++;
    const attempts = err instanceof DialGaveUp ? err.attempts : 0;
    const reason = errText(err);
    this.opts.log.error({ attempts, reason }, 'model link failed: giving up');
    this.emit({ type: 'link_failed', attempts, reason });
  }

  private emit(ev: ModelEvent): void {
    this.outlet.emit(ev);
  }

  // -- call → provider ---------------------------------------------------------

  onEvent(listener: (ev: ModelEvent) => void): void {
    if (this.state !== 'closed') this.outlet.listen(listener);
  }

  appendAudio(base64: string): void {
    if (this.state === 'live') this.session?.appendAudio(base64);
    else if (this.state === 'reconnecting') this.gap.push(base64);
  }

  sendUserText(text: string): void {
    if (this.state === 'failed' || this.state === 'closed') return;
    this.history.userText(text);
    if (this.state === 'live') this.session?.sendUserText(text);
  }

  createResponse(instructions?: string): void {
    if (this.state === 'failed' || this.state === 'closed') return;
    this.history.responseRequested();
    if (this.state === 'live') this.session?.createResponse(instructions);
  }

  cancelResponse(): void {
    if (this.state === 'live') this.session?.cancelResponse();
  }

  truncate(itemId: string, audioEndMs: number): void {
    this.history.truncate(itemId, audioEndMs);
    if (this.state === 'live' && this.liveItems.has(itemId)) this.session?.truncate(itemId, audioEndMs);
  }

  sendToolResult(callId: string, output: string, respond: boolean): void {
    if (this.state === 'failed' || this.state === 'closed') return;
    this.history.toolResult(callId, output, respond);
    if (this.state === 'live') this.session?.sendToolResult(callId, output, respond);
  }

  /** Conversation the link would replay now (for records and tests). */
  conversation(): ConversationItem[] {
    return this.history.items();
  }

  close(): void {
    if (this.state === 'closed' || this.state === 'closing') return;
    this.reconnect?.abort();
    this.reconnect = undefined;
    this.gap.clear();
    const s = this.session;
    this.session = undefined;
    this.state = 'closing';
    s?.close();
    this.state = 'closed';
    this.gen++;
    this.outlet.clear();
  }
}

function settings(o: ModelLinkOptions): Settings {
  return {
    backoffBaseMs: o.backoffBaseMs ?? LINK_DEFAULTS.backoffBaseMs,
    backoffMaxMs: o.backoffMaxMs ?? LINK_DEFAULTS.backoffMaxMs,
    reconnectBudgetMs: o.reconnectBudgetMs ?? LINK_DEFAULTS.reconnectBudgetMs,
    openBudgetMs: o.openBudgetMs ?? LINK_DEFAULTS.openBudgetMs,
    gapAudioKeepMs: o.gapAudioKeepMs ?? LINK_DEFAULTS.gapAudioKeepMs,
  };
}

/** A ModelProvider whose sessions are ModelLinks over `inner`: the relay can pre-warm links unchanged. */
export function linkedProvider(inner: ModelProvider, opts: ModelLinkOptions): ModelProvider {
  return {
    name: inner.name,
    connect: (session, signal) => ModelLink.open(inner, session, opts, signal),
  };
}
