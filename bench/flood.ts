/**
 * A bounded flood of forged Twilio webhooks on loopback, run as its own
 * process by the relay suite's flood run (bench/suites/relay.ts), so its CPU
 * and sockets are not the load generator's or the relay's.
 *
 * What it sends: POST /voice/incoming with a voice-webhook body padded to what
 * an attacker would pick, the most work the edge accepts to read (just under
 * 8000 bytes and 99 fields, under callbridge's 8 KiB and 100-field caps;
 * Content-Length set), and a well-formed but wrong X-Twilio-Signature (28
 * base64 characters), at `ratePerS`, from
 * `localAddress` (127.0.0.2 by default: another client address than the
 * simulated Twilio's 127.0.0.1, as an attacker's would be). Keep-alive
 * connections, reopened when the server closes them.
 *
 * Bounds: it stops at `maxMs` or on {type:'stop'}, whichever is first, and
 * never has more than MAX_IN_FLIGHT requests open (a request that would pass
 * it is counted as skipped, not queued), so it can neither run on nor grow.
 *
 * IPC: parent → {type:'start', port, ratePerS, maxMs, localAddress?}; child →
 * {type:'started'}, then {type:'done', sent, answered, statuses, errors,
 * skipped, elapsedMs} once stopped, and exits.
 */
import http from 'node:http';

const MAX_IN_FLIGHT = 256;
const TICK_MS = 5;

interface Start {
  type: 'start';
  port: number;
  ratePerS: number;
  maxMs: number;
  localAddress?: string;
}

const fields: Record<string, string> = {
  AccountSid: `AC${'7'.repeat(32)}`,
  ApiVersion: '2010-04-01',
  CallSid: `CA${'9'.repeat(32)}`,
  CallStatus: 'ringing',
  Called: '+15550002222',
  CalledCountry: 'US',
  CalledState: 'CA',
  Caller: '+15550001111',
  CallerCountry: 'US',
  CallerState: 'NY',
  Direction: 'inbound',
  From: '+15550001111',
  FromCountry: 'US',
  FromState: 'NY',
  To: '+15550002222',
  ToCountry: 'US',
  ToState: 'CA',
};
for (let i = 0; Object.keys(fields).length < 99; i++) fields[`Pad${i}`] = 'x'.repeat(80);
const body = new URLSearchParams(fields).toString().slice(0, 8000);

function run(opts: Start): void {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64, localAddress: opts.localAddress ?? '127.0.0.2' });
  const statuses: Record<string, number> = {};
  let sent = 0;
  let answered = 0;
  let errors = 0;
  let skipped = 0;
  let inFlight = 0;
  let lastError = '';
  const t0 = performance.now();
  const maxCount = Math.ceil((opts.ratePerS * opts.maxMs) / 1000);

  const one = () => {
    sent++;
    inFlight++;
    const req = http.request(
      {
        agent,
        host: '127.0.0.1',
        port: opts.port,
        method: 'POST',
        path: '/voice/incoming',
        headers: {
          host: 'relay.bench.invalid',
          'content-type': 'application/x-www-form-urlencoded',
          'content-length': Buffer.byteLength(body),
          'x-twilio-signature': 'AAAAAAAAAAAAAAAAAAAAAAAAAAA=',
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => {
          inFlight--;
          answered++;
          const k = String(res.statusCode);
          statuses[k] = (statuses[k] ?? 0) + 1;
        });
      },
    );
    req.on('error', (err: NodeJS.ErrnoException) => {
      inFlight--;
      errors++;
      lastError = err.code ?? err.message;
    });
    req.end(body);
  };

  const timer = setInterval(() => {
    const elapsed = performance.now() - t0;
    if (elapsed >= opts.maxMs || sent + skipped >= maxCount) return stop();
    const due = Math.min(maxCount, Math.floor((elapsed * opts.ratePerS) / 1000)) - sent - skipped;
    for (let i = 0; i < due; i++) {
      if (inFlight >= MAX_IN_FLIGHT) skipped++;
      else one();
    }
  }, TICK_MS);

  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    clearInterval(timer);
    const elapsedMs = performance.now() - t0;
    agent.destroy();
    process.send!({ type: 'done', sent, answered, statuses, errors, lastError, skipped, elapsedMs }, () => process.exit(0));
  };
  process.on('message', (m: { type: string }) => m.type === 'stop' && stop());
  process.send!({ type: 'started' });
}

process.once('message', (m: Start) => {
  if (m.type === 'start') run(m);
});
process.on('disconnect', () => process.exit(0));
