/**
 * The console's JSON API, as the page (src/console/web/) and the server
 * (src/console/routes.ts) both read it: every route under /console/api/,
 * its request and its answer. Times are ISO 8601 (UTC) unless the name
 * says ms; `atMs` fields are ms since the call's stream started.
 *
 * Session (cookie `cb_console`: HttpOnly, Secure, SameSite=Strict, Path=/console):
 *   POST   /console/api/session   {token}            → 200 Me (+ Set-Cookie) | 401 | 429 (Retry-After)
 *   DELETE /console/api/session                      → 204 (cookie cleared)
 *   GET    /console/api/me                           → 200 Me | 401
 * Every other route answers 401 without a session. Every state change (POST,
 * DELETE) needs the `x-console-csrf` header equal to Me.csrf and a same-origin
 * request (Origin, or Sec-Fetch-Site: same-origin); else 403. Sign-in is the
 * one POST without a session: it needs the same-origin check only.
 *
 *   GET /console/api/live          text/event-stream: event `live`, data LiveView, every second (and at once)
 *   GET /console/api/stats         → StatsView (the last hour, 5-minute buckets)
 *   GET /console/api/calls?…       → CallListView   (query: CallListQuery)
 *   GET /console/api/calls/:sid    → CallView | 404
 *   GET /console/api/calls/:sid/recording → audio/wav (PCM16 stereo 8 kHz, Range supported) | 404
 */

export type Role = 'admin' | 'read';

export interface Me {
  /** The token's name (`admin` for ADMIN_TOKEN). */
  user: string;
  role: Role;
  /** Echo in `x-console-csrf` on every POST/DELETE. */
  csrf: string;
  /** When the session ends (ISO). */
  expiresAt: string;
}

/** A caller's number as the viewer may see it: in full for `admin`, else masked (`+1 555 ••• ••23`). */
export type ShownNumber = string | null;

export interface LiveCallView {
  callSid: string;
  from: ShownNumber;
  agent: string;
  startedAt: string;
  durationMs: number;
  speaking: 'caller' | 'assistant' | 'none';
  turns: number;
  lastTurnMs: number | null;
  model: 'up' | 'reconnecting' | 'connecting';
  audioMode: string;
  /** The instance serving it (INSTANCE_ID); calls other instances serve (PostgreSQL) carry only what the store knows. */
  instance: string;
  /** false: a call another instance serves, known from the store only (speaking, turns, model unknown). */
  local: boolean;
}

export interface LiveView {
  at: string;
  instance: string;
  calls: LiveCallView[];
  /** This instance's model reachability (as /voice/health says it). */
  model: { reachable: boolean | null; lastError: string | null };
}

export interface StatsView {
  bucketMs: number;
  buckets: { t: string; started: number; ended: number; failed: number; turnP50Ms: number | null; turnP95Ms: number | null }[];
  inProgress: number;
}

/** GET /console/api/calls query: every field optional. */
export interface CallListQuery {
  since?: string; // ISO or age (30m, 2h, 7d)
  until?: string; // ISO
  outcome?: string;
  endReason?: string;
  agent?: string;
  tool?: string;
  minLatencyMs?: string;
  sort?: 'started' | 'duration' | 'cost';
  dir?: 'asc' | 'desc';
  page?: string; // 1-based
  limit?: string; // 1-200, default 50
}

export interface CallSummaryView {
  callSid: string;
  from: ShownNumber;
  to: ShownNumber;
  startedAt: string | null;
  durationMs: number | null;
  state: string;
  status: string | null;
  outcome: string | null;
  endReason: string | null;
  agent: string | null;
  direction: string | null;
  estimatedCostUsd: number;
}

export interface CallListView {
  calls: CallSummaryView[];
  page: number;
  limit: number;
  hasMore: boolean;
}

export interface CallView {
  /** The record (src/store/types.ts CallRecord) with `from`/`to` shown as the role allows. */
  call: Record<string, unknown> & { callSid: string; from: ShownNumber; to: ShownNumber };
  /** The seed's voice-to-voice budget, ms (1200). */
  budgetMs: number;
  /** A recording can be played (GET …/recording answers 200). */
  recording: boolean;
}
