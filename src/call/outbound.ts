/**
 * Model audio, model → Twilio: decode → transcode → chunk → paced playout,
 * with all of barge-in (marks, clear, truncate, late audio dropped) and the
 * assistant's transcript lines cut to what the caller heard.
 *
 * Contract:
 * - `audio()` never throws for audio reasons and never blocks: audio is
 *   queued in the Playout and leaves paced by the shared clock.
 * - After `cutPlayback()`, audio of the interrupted response is dropped, every
 *   item the caller did not hear in full is truncated at what was heard (0
 *   for one queued behind the item playing), and its transcript line is cut
 *   to the heard share of its words (no line when nothing was heard).
 * - Pacing: the Playout's lead is `leadMs`, or adaptive up to `leadMaxMs`
 *   following the clock's measured loop lateness (clock.ts, playout.ts).
 * - Recorded prompts (`playPrompt`) play through the same paced playout,
 *   under their own response id, so they are never truncated at the model.
 * - Each assistant line goes to `onLine` once, as soon as it is known: when
 *   the item's text is final, its audio is done and the caller has heard all
 *   of it (the mark of its last chunk echoed), whichever comes last; when
 *   a cut (`cutPlayback`) ends it, cut to what was heard (a text that arrives after the
 *   cut is written cut at once); at the call's end, whatever is left, cut to
 *   what was heard. A crash therefore loses only lines still being spoken.
 * - `whenHeard(cb)` calls `cb` once, as soon as nothing is queued, being
 *   sent or unacknowledged (every chunk's mark echoed, or a cut dropped
 *   them): at once when that is already so, else at the end of the `mark()`
 *   or `cutPlayback()` that makes it so (never from inside the playout, so a
 *   callback may end the call).
 * - `onHeard(mark, now)` is told each acknowledged mark (Playout's `ackedMark`:
 *   every chunk whose ChunkInfo `mark` is at most it has been heard), once per
 *   echo that counts, before the lines it settles are written.
 */
import { AdaptiveLead, type PumpScheduler } from './clock.js';
import { Playout, type ChunkInfo } from './playout.js';
import type { AudioTranscoder, TwilioSocket } from './ports.js';
import type { TimedText } from './voice-model.js';
import type { TranscriptLine } from '../records.js';
import { LatencyHistogram } from './stats.js';
import { cutTimed, cutWords } from './transcript.js';
import { clearMessage, markMessage, mediaMessage } from '../twilio/media-stream.js';

const MAX_CANCELLED_TRACKED = 16;
/** Items whose line is written (or will never be): a late transcript event for one of them writes nothing. */
const MAX_CONCLUDED_TRACKED = 64;
/** Response id under which recorded prompts play: never a model response. */
export const PROMPT_RESPONSE_ID = 'local_prompt';

interface AssistantItem {
  text: string;
  atMs: number | undefined;
  /** The text is final (assistant_transcript). */
  done: boolean;
  /** Where each piece of `text` is spoken, when the provider times it: a cut keeps exactly the pieces heard. */
  words?: readonly TimedText[];
  /** The model sent all of its audio (audio_done). */
  audioDone: boolean;
  /** A cut (cutPlayback) ended it before its text was final: what the caller heard of it, ms (the text is cut on arrival). */
  cut?: { heardMs: number; totalMs: number };
}

export interface OutboundDeps {
  socket: TwilioSocket;
  clock: PumpScheduler;
  /** The playout lead, ms (PLAYOUT_LEAD_MS). */
  leadMs: number;
  /**
   * The lead may grow to this while the clock's loop runs late (adaptive
   * playout, clock.ts AdaptiveLead); undefined, <= leadMs, or a clock that
   * does not measure lateness: fixed at leadMs.
   */
  leadMaxMs?: number;
  chunkMs: number;
  now: () => number;
  /** ms since the call started, for transcript lines. */
  sinceStart: (now?: number) => number;
  /** A chunk left for Twilio (per-turn latency, activity). */
  onChunk: (info: ChunkInfo, now: number) => void;
  /** Twilio acknowledged chunks up to `mark` (ChunkInfo.mark) at `now`: the caller has heard them (per-turn figures). */
  onHeard?: (mark: number, now: number) => void;
  /** An assistant line is final (once per item). */
  onLine: (line: TranscriptLine) => void;
  /** Cut an assistant item at the model to what the caller heard (ms). */
  truncate: (itemId: string, audioEndMs: number) => void;
  /** Each chunk sent to Twilio, µ-law bytes [start, end) of `buf` (valid during the call only), and when it starts playing (`now`'s clock): the recording's heard channel. */
  onAudioOut?: (buf: Uint8Array, start: number, end: number, playAtMs: number) => void;
  /** Twilio was told to `clear` at `nowMs`: nothing sent and not yet played will be heard. */
  onClear?: (nowMs: number) => void;
}

function newItem(): AssistantItem {
  return { text: '', atMs: undefined, done: false, audioDone: false };
}

export class Outbound {
  readonly latency = new LatencyHistogram();
  private streamSid = '';
  private transcoder: AudioTranscoder | undefined;
  private live = false;
  private readonly playout: Playout;
  private readonly cancelled = new Set<string>();
  private readonly items = new Map<string, AssistantItem>();
  private readonly concluded = new Set<string>();
  private scratch = Buffer.alloc(8192);
  private promptSeq = 0;
  private readonly heardWaiters = new Set<() => void>();

  constructor(private readonly deps: OutboundDeps) {
    this.playout = new Playout(
      {
        sendChunk: (buf, start, end, mark, playAtMs) => this.sendChunk(buf, start, end, mark, playAtMs),
        sendClear: () => {
          this.deps.socket.send(clearMessage(this.streamSid));
          this.deps.onClear?.(this.deps.now());
        },
      },
      deps.leadMaxMs !== undefined && deps.leadMaxMs > deps.leadMs && deps.clock.lateness
        ? new AdaptiveLead(deps.leadMs, deps.leadMaxMs, deps.clock.lateness)
        : deps.leadMs,
      (info, now) => this.chunkSent(info, now),
      deps.chunkMs,
    );
  }

  /** True while the caller is hearing, or about to hear, our audio. */
  get speaking(): boolean {
    return this.playout.speaking;
  }

  get chunksSent(): number {
    return this.playout.chunksSent;
  }

  /** The stream started: where audio goes, and the call's transcoder (none in passthrough). */
  start(streamSid: string, transcoder: AudioTranscoder | undefined): void {
    this.streamSid = streamSid;
    this.transcoder = transcoder;
  }

  /** Audio may flow (the call is live); `false` stops pumping for good. */
  setLive(live: boolean): void {
    this.live = live;
    if (!live) this.deps.clock.delete(this.playout);
  }

  /** A piece of the assistant's voice, base64 in the model's format. */
  audio(responseId: string, itemId: string, b64: string): void {
    if (this.cancelled.has(responseId)) return; // late audio of an interrupted response
    const t0 = this.deps.now();
    const need = Math.ceil((b64.length * 3) / 4);
    if (need > this.scratch.length) this.scratch = Buffer.alloc(Math.max(need, this.scratch.length * 2));
    const n = this.scratch.write(b64, 'base64');
    let ulaw: Uint8Array = this.scratch.subarray(0, n);
    if (this.transcoder) ulaw = this.transcoder.outbound(ulaw);
    if (!this.items.has(itemId) && !this.concluded.has(itemId)) this.items.set(itemId, newItem());
    if (this.playout.enqueue(responseId, itemId, ulaw)) this.pump(t0);
    this.latency.record(this.deps.now() - t0);
  }

  audioDone(itemId: string): void {
    const item = this.items.get(itemId);
    if (item) item.audioDone = true;
    this.playout.finishItem(itemId);
    this.pump(this.deps.now());
    this.settle(itemId);
  }

  /** The assistant's words for an item (final text of that item). */
  transcript(itemId: string, text: string, words?: readonly TimedText[]): void {
    if (this.concluded.has(itemId)) return; // cut to nothing heard, or written already
    const item = this.items.get(itemId) ?? newItem();
    item.text = text;
    if (words?.length) item.words = words;
    item.done = true;
    this.items.set(itemId, item);
    if (item.cut) this.finishItem(itemId, item.cut.heardMs, item.cut.totalMs);
    else this.settle(itemId);
  }

  /** Twilio echoed a mark. */
  mark(name: string, now: number): void {
    if (!this.playout.onMark(name, now)) return;
    this.deps.onHeard?.(this.playout.ackedMark, now);
    for (const id of this.items.keys()) this.settle(id);
    this.checkHeard();
  }

  /**
   * Call `cb` once the caller has heard everything queued so far and anything
   * queued before then (see the file comment). Returns a function that
   * withdraws `cb` if it has not been called.
   */
  whenHeard(cb: () => void): () => void {
    if (!this.playout.speaking) {
      cb();
      return () => {};
    }
    this.heardWaiters.add(cb);
    return () => void this.heardWaiters.delete(cb);
  }

  private checkHeard(): void {
    if (this.playout.speaking || this.heardWaiters.size === 0) return;
    const waiters = [...this.heardWaiters];
    this.heardWaiters.clear();
    for (const cb of waiters) cb();
  }

  /** The socket drained. */
  drain(): void {
    this.playout.unblock();
    this.pump(this.deps.now());
  }

  /** Audio of this response is not wanted any more (cancelled by the caller's speech). */
  cancel(responseId: string): void {
    this.cancelled.add(responseId);
    if (this.cancelled.size > MAX_CANCELLED_TRACKED) this.cancelled.delete(this.cancelled.values().next().value!);
  }

  /**
   * Stop what the caller hears, now: clear the caller's playback at once and
   * cut every item at what was heard. Serves barge-in (the caller started
   * speaking), a lost model link, the end of a hold prompt and the goodbye.
   * Returns true if something was playing.
   */
  cutPlayback(now: number): boolean {
    const cut = this.playout.interrupt(now);
    this.deps.clock.delete(this.playout);
    this.transcoder?.resetOutbound();
    if (cut && cut.responseId !== PROMPT_RESPONSE_ID) {
      this.deps.truncate(cut.itemId, Math.floor(cut.audioEndMs));
      this.conclude(cut.itemId, cut.audioEndMs, this.playout.item(cut.itemId)?.queuedMs ?? cut.sentMs);
    }
    // Other items (a preamble before the one playing, a second message after it) are final now:
    // whole if the caller heard all of it, cut to what was heard otherwise (nothing heard: no line).
    for (const [id, item] of this.items) {
      if (item.cut) continue; // cut already (just now, or at an earlier cut): its text is still to come
      const fig = this.playout.item(id);
      if (fig && fig.heardMs < fig.queuedMs) {
        this.deps.truncate(id, Math.floor(fig.heardMs));
        if (fig.heardMs > 0) this.conclude(id, fig.heardMs, fig.queuedMs);
        else this.concludeSilently(id); // queued behind the item playing: the caller heard none of it
      } else if (item.done) {
        this.finishItem(id);
      } else if (fig) {
        this.conclude(id, fig.heardMs, fig.queuedMs); // heard in full; its text is still to come
      }
    }
    this.checkHeard();
    return cut !== null;
  }

  /** Play a recorded prompt (µ-law 8 kHz) like model audio. */
  playPrompt(ulaw: Uint8Array): void {
    if (ulaw.length === 0) return;
    const itemId = `prompt_${++this.promptSeq}`;
    this.playout.enqueue(PROMPT_RESPONSE_ID, itemId, ulaw);
    this.playout.finishItem(itemId);
    this.pump(this.deps.now());
  }

  /** The call is over: every item still open becomes a line, cut to what was heard. */
  finishAll(): void {
    this.heardWaiters.clear();
    for (const [id, item] of this.items) {
      if (item.cut) continue; // its text never came
      const fig = this.playout.item(id);
      this.finishItem(id, fig?.heardMs, fig?.queuedMs);
    }
    this.setLive(false);
  }

  private pump(now: number): void {
    if (!this.live) return;
    if (this.playout.pump(now)) this.deps.clock.add(this.playout);
  }

  private sendChunk(buf: Buffer, start: number, end: number, mark: string, playAtMs: number): boolean {
    this.deps.onAudioOut?.(buf, start, end, playAtMs);
    const socket = this.deps.socket;
    let ok = true;
    socket.cork(() => {
      ok = socket.send(mediaMessage(this.streamSid, buf.toString('base64', start, end)));
      ok = socket.send(markMessage(this.streamSid, mark)) && ok;
    });
    return ok;
  }

  private chunkSent(info: ChunkInfo, now: number): void {
    const item = this.items.get(info.itemId);
    if (item && item.atMs === undefined) item.atMs = this.deps.sinceStart(now);
    this.deps.onChunk(info, now);
  }

  /**
   * Write the line of an item the caller has heard in full: its text final, its
   * audio done and the mark of its last chunk echoed. An item with no audio
   * here waits for a cut or the call's end.
   */
  private settle(itemId: string): void {
    const item = this.items.get(itemId);
    if (!item || !item.done || !item.audioDone || item.cut) return;
    const fig = this.playout.item(itemId);
    if (fig && fig.heardMs >= fig.queuedMs) this.finishItem(itemId);
  }

  /** A cut decided what was heard of an item: its line now, or as soon as its text arrives. */
  private conclude(itemId: string, heardMs: number, totalMs: number): void {
    const item = this.items.get(itemId);
    if (!item) return;
    if (item.done) this.finishItem(itemId, heardMs, totalMs);
    else item.cut = { heardMs, totalMs };
  }

  /** The item gets no line, whatever text comes for it later. */
  private concludeSilently(itemId: string): void {
    this.items.delete(itemId);
    this.concluded.add(itemId);
    if (this.concluded.size > MAX_CONCLUDED_TRACKED) this.concluded.delete(this.concluded.values().next().value!);
  }

  /** Write an assistant line. With `heardMs` the caller was cut off: keep the heard share of the words. */
  private finishItem(itemId: string, heardMs?: number, totalMs?: number): void {
    const item = this.items.get(itemId);
    this.concludeSilently(itemId);
    if (!item || !item.text) return;
    const line: TranscriptLine = { atMs: item.atMs ?? this.deps.sinceStart(), speaker: 'assistant', text: item.text };
    if (heardMs !== undefined && totalMs && heardMs < totalMs) {
      line.text = item.words ? cutTimed(item.words, heardMs) : cutWords(item.text, heardMs / totalMs);
      line.interrupted = true;
    }
    this.deps.onLine(line);
  }
}
