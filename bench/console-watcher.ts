/**
 * An operator with the console's live view open, for the relay bench
 * (issue 18): signs in to /console with a token and reads the live stream
 * (`/console/api/live`, Server-Sent Events, one `live` event a second with
 * every call in progress) for as long as the run lasts. It runs in the load
 * generator's process, so what the relay spends on it shows in the relay's
 * own CPU and relay-added latency, read against the same load without it.
 */
export interface ConsoleWatch {
  /** Stop reading; resolves with what arrived. */
  stop(): Promise<{ events: number; bytes: number; lastCalls: number }>;
}

export async function watchConsole(port: number, token: string): Promise<ConsoleWatch> {
  const base = `http://127.0.0.1:${port}`;
  const signIn = await fetch(`${base}/console/api/session`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', origin: base, 'sec-fetch-site': 'same-origin' },
    body: JSON.stringify({ token }),
  });
  if (signIn.status !== 200) throw new Error(`console sign-in answered ${signIn.status}`);
  const cookie = (signIn.headers.get('set-cookie') ?? '').split(';')[0]!;
  const abort = new AbortController();
  const res = await fetch(`${base}/console/api/live`, { headers: { cookie }, signal: abort.signal });
  if (res.status !== 200 || !res.body) throw new Error(`console live stream answered ${res.status}`);
  let events = 0;
  let bytes = 0;
  let lastCalls = 0;
  let pending = '';
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  const reading = (async () => {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        bytes += value.length;
        pending += decoder.decode(value, { stream: true });
        let end: number;
        while ((end = pending.indexOf('\n\n')) >= 0) {
          const block = pending.slice(0, end);
          pending = pending.slice(end + 2);
          const data = block.split('\n').find((l) => l.startsWith('data:'));
          if (!data) continue;
          events++;
          lastCalls = (JSON.parse(data.slice(5)) as { calls: unknown[] }).calls.length;
        }
      }
    } catch {
      // aborted by stop()
    }
  })();
  return {
    async stop() {
      abort.abort();
      await reading;
      return { events, bytes, lastCalls };
    },
  };
}
