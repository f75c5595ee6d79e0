import { parseStatusCallback, type StatusCallback } from '../../src/twilio/webhooks.js';

/** A call status callback as the edge hands it on (parsed from Twilio's form fields); throws on a form the edge would refuse. */
export function statusCallback(form: Record<string, string>): StatusCallback {
  const r = parseStatusCallback(form);
  if (!r.ok) throw new Error(`not a valid status callback: ${r.error}`);
  return r.value;
}
