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
