/**
 * `callbridge call <+E164> [--agent NAME|FILE] [--context JSON] [--server URL]`:
 * place an outbound call through a running server's POST /calls, with
 * `Authorization: Bearer $ADMIN_TOKEN`. Prints the CallSid on stdout (and
 * nothing else, for scripts); errors are one line on stderr, saying what to
 * do. Exit 0 placed, 1 refused or failed, 2 usage.
 *
 * The server defaults to http://127.0.0.1:$PORT (5002). `--agent` takes an
 * agent's name, or an agent file: the file is checked (src/agent/load.ts,
 * every problem listed) and its `name` sent; the server must have loaded
 * that agent (AGENT_FILE), since it is the server that runs the call.
 */
import { loadAgentFile } from '../agent/load.js';
import type { CliIO } from './io.js';

const USAGE = 'usage: callbridge call <+E164 number> [--agent NAME|FILE] [--context JSON object of strings] [--server URL]\n';
/** The server may wait for a pacing slot before it answers. */
const REQUEST_TIMEOUT_MS = 60_000;

export async function run(args: string[], io: CliIO): Promise<number> {
  const fail = (code: number, msg: string) => {
    io.stderr.write(`callbridge call: ${msg}\n`);
    return code;
  };
  let agent: string | undefined;
  let context: Record<string, string> | undefined;
  let server = `http://127.0.0.1:${io.env.PORT || '5002'}`;
  const positional: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--agent') {
      agent = args[++i];
      if (!agent) return fail(2, `--agent takes an agent name or file\n${USAGE}`);
      if (/[/\\]|\.(ya?ml|json)$/i.test(agent)) {
        const loaded = loadAgentFile(agent);
        if (!loaded.ok) return fail(2, `${agent}:\n${loaded.problems.map((p) => `  ${p}`).join('\n')}`);
        agent = loaded.agent.name;
      }
    } else if (a === '--context') {
      const raw = args[++i] ?? '';
      let parsed: unknown;
      try {
        parsed = JSON.parse(raw);
      } catch {
        return fail(2, '--context takes a JSON object, e.g. \'{"reason":"appointment reminder"}\'');
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || !Object.values(parsed).every((v) => typeof v === 'string')) {
        return fail(2, '--context takes a JSON object whose values are strings');
      }
      context = parsed as Record<string, string>;
    } else if (a === '--server') {
      server = args[++i] ?? '';
      if (!/^https?:\/\/[^/]/.test(server)) return fail(2, `--server takes the server's http(s) URL, e.g. http://127.0.0.1:5002`);
    } else if (a === '--help' || a === '-h') {
      io.stdout.write(USAGE);
      return 0;
    } else if (a.startsWith('--')) return fail(2, `unknown option ${a}\n${USAGE}`);
    else positional.push(a);
  }
  if (positional.length !== 1) return fail(2, `expected one number to call\n${USAGE}`);
  const to = positional[0]!;
  if (!/^\+[1-9]\d{6,14}$/.test(to)) return fail(2, 'the number must be E.164: + and 7-15 digits, e.g. +15551234567');
  const token = io.env.ADMIN_TOKEN;
  if (!token) return fail(2, 'set ADMIN_TOKEN to the server\'s admin token');

  const url = `${server.replace(/\/+$/, '')}/calls`;
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ to, ...(agent ? { agent } : {}), ...(context ? { context } : {}) }),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err instanceof Error ? err.name : String(err));
    return fail(1, `cannot reach the server at ${server} (${cause}): is \`callbridge serve\` running there? (--server URL)`);
  }
  let body: Record<string, unknown> = {};
  try {
    body = (await res.json()) as Record<string, unknown>;
  } catch {
    // Not JSON: reported by status below.
  }
  switch (res.status) {
    case 201:
      io.stdout.write(`${String(body.callSid)}\n`);
      return 0;
    case 400:
      return fail(1, `the server refused the request: ${Array.isArray(body.problems) ? body.problems.join('; ') : String(body.error ?? 'bad request')}`);
    case 401:
      return fail(1, 'the server refused the admin token (ADMIN_TOKEN must be the server\'s)');
    case 403:
      return fail(1, `number not allowed: the agent${agent ? ` '${agent}'` : ''}'s outbound allow/deny lists refuse it (it was not dialled)`);
    case 404:
      return fail(1, 'the server does not place calls: it needs ADMIN_TOKEN, PUBLIC_URL and the Twilio REST settings (TWILIO_ACCOUNT_SID and an API key)');
    case 502:
      return fail(1, `Twilio refused the call: ${String(body.message ?? 'no detail')}${body.retryable ? ' (temporary: try again)' : ''}`);
    case 503:
      return fail(1, 'the server cannot place calls right now (pacing store unavailable): try again');
    default:
      return fail(1, `unexpected answer from the server: HTTP ${res.status}`);
  }
}
