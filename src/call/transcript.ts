/** Transcript helpers: pure text functions used when a call writes its record. */

/**
 * The first `share` (0..1) of the words of `text`, with an ellipsis when cut.
 * Used for assistant speech the caller interrupted: the model's transcript
 * covers the whole generated item, the caller heard only `share` of its audio.
 * Word rate is assumed even across the item: accurate to a word or two.
 */
export function cutWords(text: string, share: number): string {
  const words = text.split(/\s+/).filter(Boolean);
  const keep = Math.max(0, Math.min(words.length, Math.round(words.length * share)));
  if (keep >= words.length) return text;
  return keep === 0 ? '…' : `${words.slice(0, keep).join(' ')}…`;
}

/**
 * The pieces of a timed text the caller heard in full: those that end within the first
 * `heardMs` of the item's audio (spans in ms from its start), joined, with an ellipsis when cut.
 * Used when the provider times its words (GPT-Live's output transcript deltas).
 */
export function cutTimed(words: readonly { text: string; endMs: number }[], heardMs: number): string {
  let kept = 0;
  while (kept < words.length && words[kept]!.endMs <= heardMs) kept++;
  const text = words.map((w) => w.text).join('');
  if (kept >= words.length) return text.trim();
  const heard = words.slice(0, kept).map((w) => w.text).join('').trim();
  return heard ? `${heard}…` : '…';
}
