/**
 * The one polling wait of the tests: resolves once `cond` holds, checking
 * every `everyMs`; throws (naming `what`) once `timeoutMs` has passed
 * without it. `cond` may be async.
 */
export async function until(
  cond: () => boolean | Promise<boolean>,
  { timeoutMs = 5000, what = 'condition', everyMs = 5 }: { timeoutMs?: number; what?: string; everyMs?: number } = {},
): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
