import { twilioSignature } from '../../src/sim/caller.js';
import { parseStatusCallback, type StatusCallback } from '../../src/twilio/webhooks.js';

/** A call status callback as the edge hands it on (parsed from Twilio's form fields); throws on a form the edge would refuse. */
export function statusCallback(form: Record<string, string>): StatusCallback {
  const r = parseStatusCallback(form);
  if (!r.ok) throw new Error(`not a valid status callback: ${r.error}`);
  return r.value;
}

/** How a server under test checks signatures: the public URL Twilio signs and the auth token it signs with. */
export interface Signing {
  publicUrl: string;
  authToken: string;
}

/**
 * POST a signed voice webhook for `callSid` to `base` (a loopback address), as
 * Twilio does when a call rings; `fields` go over the defaults (an inbound,
 * ringing call from +15550107777 to +15550100999).
 */
export function postIncoming(base: string, signing: Signing, callSid: string, fields: Record<string, string> = {}): Promise<Response> {
  const form = { CallSid: callSid, AccountSid: `AC${'3'.repeat(32)}`, From: '+15550107777', To: '+15550100999', CallStatus: 'ringing', Direction: 'inbound', ...fields };
  return fetch(`${base}/voice/incoming`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': twilioSignature(signing.authToken, `${signing.publicUrl}/voice/incoming`, form) },
    body: new URLSearchParams(form).toString(),
  });
}
