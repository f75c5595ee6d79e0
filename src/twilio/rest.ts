/**
 * Twilio's REST API for outbound calls, through the `twilio` package's own
 * client (auth, form encoding, error parsing are the package's). Two calls:
 * place a call (Calls.json) and update a live one (new TwiML, or hang up).
 *
 * Contract:
 * - Auth: the account SID with an API key (TWILIO_API_KEY_SID + secret,
 *   preferred) or with the auth token. Missing settings are a configuration
 *   error: `createTwilioRest` throws once, listing every problem.
 * - `apiBase` (TWILIO_API_BASE, e.g. http://127.0.0.1:PORT) replaces
 *   https://api.twilio.com for the api domain, so tests and the demo reach a
 *   local stand-in (src/sim/twilio-rest.ts) with the real client.
 * - The functions never reject: a failure comes back as a value, typed
 *   (`TwilioRestError`) with Twilio's HTTP status and error code and whether
 *   a retry can help (`retryable`: 429, 5xx, or the network). Nothing is
 *   retried here: creating a call is not idempotent.
 * - Numbers are personal data: they are never put into error messages.
 */
import twilio from 'twilio';

/** The call events Twilio reports to `statusCallback` for an outbound call. */
export const OUTBOUND_STATUS_EVENTS = ['initiated', 'ringing', 'answered', 'completed'] as const;

export interface CreateCallRequest {
  /** E.164. */
  to: string;
  /** E.164: a number of the account (or a verified caller ID). */
  from: string;
  /** The voice webhook Twilio POSTs once the call is answered. */
  url: string;
  statusCallback: string;
  statusCallbackEvent?: readonly (typeof OUTBOUND_STATUS_EVENTS)[number][];
  /** Answering-machine detection that waits for the greeting's end (the moment to leave a message). */
  machineDetection?: 'DetectMessageEnd';
  /** AMD's result goes to `asyncAmdStatusCallback` while the call already runs its webhook. */
  asyncAmd?: boolean;
  asyncAmdStatusCallback?: string;
  /** Seconds of ringing before no-answer (Twilio's default 60). */
  timeoutS?: number;
}

export type CallUpdate = { twiml: string } | { status: 'completed' };

/** The call resource, as far as callbridge reads it. */
export interface CallResource {
  sid: string;
  /** queued, ringing, in-progress, completed, … */
  status: string;
}

/** A failed REST request. `status` 0 = no HTTP answer (network, timeout: retryable; or refused by the client before sending: not). */
export class TwilioRestError extends Error {
  override readonly name = 'TwilioRestError';
  constructor(
    message: string,
    /** HTTP status, 0 when the request got no answer. */
    readonly status: number,
    /** Twilio's error code (e.g. 21211 invalid To), when it gave one. */
    readonly code: number | undefined,
    /** A later retry can succeed (429, 5xx, network). */
    readonly retryable: boolean,
  ) {
    super(message);
  }

  toJSON(): { message: string; status: number; code: number | undefined; retryable: boolean } {
    return { message: this.message, status: this.status, code: this.code, retryable: this.retryable };
  }
}

export type RestResult<T> = { ok: true; value: T } | { ok: false; error: TwilioRestError };

export interface TwilioRest {
  createCall(req: CreateCallRequest): Promise<RestResult<CallResource>>;
  updateCall(sid: string, update: CallUpdate): Promise<RestResult<CallResource>>;
}

export interface TwilioRestSettings {
  accountSid: string | undefined;
  apiKeySid?: string | undefined;
  apiKeySecret?: string | undefined;
  authToken?: string | undefined;
  /** Replaces https://api.twilio.com (no trailing slash needed). */
  apiBase?: string | undefined;
  /** Per request, ms (default 15 000). */
  timeoutMs?: number;
}

/** Every problem with the settings (empty = usable). */
export function twilioRestProblems(s: TwilioRestSettings): string[] {
  const problems: string[] = [];
  if (!s.accountSid) problems.push('TWILIO_ACCOUNT_SID: required to place calls');
  else if (!/^AC[0-9a-fA-F]{32}$/.test(s.accountSid)) problems.push('TWILIO_ACCOUNT_SID: expected AC and 32 hex digits');
  if (s.apiKeySid && !/^SK[0-9a-fA-F]{32}$/.test(s.apiKeySid)) problems.push('TWILIO_API_KEY_SID: expected SK and 32 hex digits');
  if (Boolean(s.apiKeySid) !== Boolean(s.apiKeySecret)) problems.push('TWILIO_API_KEY_SID and TWILIO_API_KEY_SECRET: set both or neither');
  if (!s.apiKeySid && !s.authToken) problems.push('TWILIO_API_KEY_SID + TWILIO_API_KEY_SECRET (or TWILIO_AUTH_TOKEN): required to place calls');
  if (s.apiBase !== undefined) {
    try {
      const u = new URL(s.apiBase);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') problems.push('TWILIO_API_BASE: expected an http(s) URL');
    } catch {
      problems.push('TWILIO_API_BASE: expected an http(s) URL');
    }
  }
  return problems;
}

/** A REST client over the `twilio` package. Throws (listing every problem) when the settings cannot work. */
export function createTwilioRest(s: TwilioRestSettings): TwilioRest {
  const problems = twilioRestProblems(s);
  if (problems.length) throw new Error(`Twilio REST settings:\n  ${problems.join('\n  ')}`);
  const accountSid = s.accountSid!;
  const client = s.apiKeySid
    ? twilio(s.apiKeySid, s.apiKeySecret, { accountSid, timeout: s.timeoutMs ?? 15_000 })
    : twilio(accountSid, s.authToken, { timeout: s.timeoutMs ?? 15_000 });
  // The api domain's base URL is a public property of the package's Domain: the one switch for a stand-in.
  if (s.apiBase) client.api.baseUrl = s.apiBase.replace(/\/+$/, '');

  return {
    async createCall(req) {
      try {
        const call = await client.calls.create({
          to: req.to,
          from: req.from,
          url: req.url,
          method: 'POST',
          statusCallback: req.statusCallback,
          statusCallbackMethod: 'POST',
          statusCallbackEvent: [...(req.statusCallbackEvent ?? OUTBOUND_STATUS_EVENTS)],
          ...(req.machineDetection ? { machineDetection: req.machineDetection } : {}),
          ...(req.asyncAmd ? { asyncAmd: 'true', asyncAmdStatusCallback: req.asyncAmdStatusCallback, asyncAmdStatusCallbackMethod: 'POST' } : {}),
          ...(req.timeoutS !== undefined ? { timeout: req.timeoutS } : {}),
        });
        return { ok: true, value: { sid: call.sid, status: String(call.status) } };
      } catch (err) {
        return { ok: false, error: restError(err, 'create call') };
      }
    },
    async updateCall(sid, update) {
      try {
        const call = await client.calls(sid).update('twiml' in update ? { twiml: update.twiml } : { status: 'completed' });
        return { ok: true, value: { sid: call.sid, status: String(call.status) } };
      } catch (err) {
        return { ok: false, error: restError(err, 'update call') };
      }
    },
  };
}

/** A status a retry can get past. */
export const retryableStatus = (status: number): boolean => status === 429 || status >= 500;

/** The package's RestException (status, code, message) or a network error, as a TwilioRestError. */
function restError(err: unknown, what: string): TwilioRestError {
  if (err instanceof TwilioRestError) return err;
  const e = err as { status?: unknown; code?: unknown; message?: unknown } | null;
  const status = typeof e?.status === 'number' ? e.status : 0;
  const code = typeof e?.code === 'number' ? e.code : undefined;
  // Twilio's messages may quote the number ("The 'To' number +1555… is not valid"): never carried on.
  const message = (typeof e?.message === 'string' ? e.message : String(err)).replace(/\+?\d[\d ()-]{5,}\d/g, '[number]');
  if (status > 0) return new TwilioRestError(`${what}: Twilio answered ${status}${code ? ` (error ${code})` : ''}: ${message}`, status, code, retryableStatus(status));
  // No HTTP answer: connection refused or reset, DNS, timeout. Axios marks these (isAxiosError) with a string code (ECONNREFUSED).
  if (typeof e?.code === 'string' || (e as { isAxiosError?: unknown } | null)?.isAxiosError === true) {
    return new TwilioRestError(`${what}: Twilio not reached${typeof e?.code === 'string' ? ` (${e.code})` : ''}: ${message}`, 0, undefined, true);
  }
  // The client refused the request before sending it (a missing parameter): the same request would fail again.
  return new TwilioRestError(`${what}: ${message}`, 0, undefined, false);
}
