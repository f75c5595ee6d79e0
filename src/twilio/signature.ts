/**
 * Twilio webhook security: `X-Twilio-Signature` checks and signing (the
 * twilio package's own code). Pure: no I/O. Webhook bodies are parsed in
 * webhooks.ts.
 *
 * Contract: `verifyTwilioSignature` returns false (never throws) for a
 * missing, malformed or wrong signature. The URL must be the full URL Twilio
 * requested (scheme, host, path and query), as Twilio signs that; for the
 * WebSocket upgrade it is the `wss://` URL with empty params.
 */
import twilio from 'twilio';
import type { FormParams } from './webhooks.js';

/** Check `X-Twilio-Signature` for a form POST (or a WS upgrade with `params = {}`). */
export function verifyTwilioSignature(
  authToken: string,
  signature: string | undefined,
  url: string,
  params: FormParams,
): boolean {
  if (!signature || !authToken) return false;
  try {
    return twilio.validateRequest(authToken, signature, url, params);
  } catch {
    return false;
  }
}

/** Check a request whose body is not a form (JSON), signed with `bodySHA256` in the URL's query. */
export function verifyTwilioSignatureWithBody(
  authToken: string,
  signature: string | undefined,
  url: string,
  body: string,
): boolean {
  if (!signature || !authToken) return false;
  try {
    return twilio.validateRequestWithBody(authToken, signature, url, body);
  } catch {
    return false;
  }
}

/** The signature Twilio would send for this request (for the simulator and tests). */
export function signTwilioRequest(authToken: string, url: string, params: FormParams): string {
  return twilio.getExpectedTwilioSignature(authToken, url, params);
}
