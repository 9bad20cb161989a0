// Text with the query's terms marked (<mark>), matched whole-word and case-insensitively.
const STOP = new Set([
  'a',
  'an',
  'and',
  'are',
  'as',
  'at',
  'be',
  'by',
  'for',
  'from',
  'in',
  'is',
  'it',
  'of',
  'on',
  'or',
  'the',
  'to',
  'was',
  'what',
  'which',
  'who',
  'with',
]);

/** The terms of a query worth marking: words of 2+ characters that are not stop words. */
export function queryTerms(query: string): string[] {
  const words = query.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
  return [...new Set(words.filter((w) => w.length >= 2 && !STOP.has(w)))];
}

export function Highlight(props: { text: string; terms: string[] }) {
  if (props.terms.length === 0) return <>{props.text}</>;
  const escaped = props.terms.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  const re = new RegExp(`(?<![\\p{L}\\p{N}])(${escaped.join('|')})(?![\\p{L}\\p{N}])`, 'giu');
  const parts = props.text.split(re);
  // split with one capture group: odd indexes are the matches
  return <>{parts.map((p, i) => (i % 2 === 1 ? <mark key={i}>{p}</mark> : p))}</>;
}
