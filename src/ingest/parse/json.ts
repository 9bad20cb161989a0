// JSON and JSON Lines → text: one line per scalar, `key.path[2].name: value`, so retrieval sees both the
// field and its value. Strings, numbers and booleans are kept; null and empty strings are not. Records
// (elements of a top-level array, lines of JSONL) are separated by a blank line so chunks prefer to end
// between records. Walked iteratively: nesting depth cannot overflow the stack. Paths repeat on every
// value, so the text can be far longer than the JSON (42 KB nested → 60 M characters): the walk counts
// what it writes against the budget and stops at the cap, before the text exists.
import { AppError } from '../../../contracts/errors.ts';
import { TextBudget } from '../limits.ts';
import { normalizeText } from './text.ts';

const IDENT = /^[A-Za-z_$][\w$-]*$/;

const keyPath = (path: string, key: string) =>
  IDENT.test(key) ? (path ? `${path}.${key}` : key) : `${path}[${JSON.stringify(key)}]`;

const unlimited = () => new TextBudget(Number.POSITIVE_INFINITY);

/** Lines `path: value` of one JSON value, in document order; `budget` counts their characters. */
export function flattenJson(value: unknown, rootPath = '', budget = unlimited()): string[] {
  const lines: string[] = [];
  const stack: [unknown, string][] = [[value, rootPath]];
  while (stack.length > 0) {
    const [v, path] = stack.pop()!;
    if (v === null || v === undefined) continue;
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') {
      const s = String(v);
      if (s.trim() === '') continue;
      // path strings are ropes: their length is known without building the line
      budget.take(path.length + s.length + 3);
      lines.push(path ? `${path}: ${s}` : s);
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], `${path}[${i}]`]);
    } else if (typeof v === 'object') {
      const entries = Object.entries(v as Record<string, unknown>);
      for (let i = entries.length - 1; i >= 0; i--) stack.push([entries[i][1], keyPath(path, entries[i][0])]);
    }
  }
  return lines;
}

function parseOrReject(text: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new AppError('bad_request', `invalid JSON${where}: ${(err as Error).message}`);
  }
}

export function parseJson(source: string, budget = unlimited()): string {
  const value = parseOrReject(source, '');
  const records = Array.isArray(value)
    ? value.map((v, i) => flattenJson(v, `[${i}]`, budget))
    : [flattenJson(value, '', budget)];
  return normalizeText(records.map((r) => r.join('\n')).join('\n\n'));
}

export function parseJsonLines(source: string, budget = unlimited()): string {
  const records: string[] = [];
  source.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === '') return;
    const value = parseOrReject(line, ` on line ${i + 1}`);
    records.push(flattenJson(value, `[${records.length}]`, budget).join('\n'));
  });
  return normalizeText(records.join('\n\n'));
}
