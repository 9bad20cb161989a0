// OpenAI-style attribute filters over a chunk's jsonb `attributes` column:
//   {type: eq|ne|gt|gte|lt|lte|in|nin, key, value}   and   {type: and|or, filters: [...]}
// validated with zod (key charset, value sizes, nesting depth and node count bounded) and compiled to a
// parameterised SQL fragment. Keys and values only ever travel as bound parameters ($n), so neither can
// inject SQL. Types are strict: a number matches only numbers (compared numerically), a string only
// strings (compared as text, byte order), a boolean only booleans. `ne` and `nin` are the exact
// complements of `eq` and `in`: a chunk without the key matches them.
import { z } from 'zod';
import { AppError } from '../../contracts/errors.ts';

export const FILTER_MAX_DEPTH = 5;
export const FILTER_MAX_NODES = 64;
export const FILTER_MAX_IN_VALUES = 100;
export const ATTRIBUTE_KEY_MAX = 64;
export const ATTRIBUTE_STRING_MAX = 512;

/** Attribute keys: 1–64 of letters, digits, `_ . : -`, not starting with punctuation other than `_`. */
export const ATTRIBUTE_KEY = /^[A-Za-z0-9_][A-Za-z0-9_.:-]*$/;

export type EqualityFilter = { type: 'eq' | 'ne'; key: string; value: string | number | boolean };
export type RangeFilter = { type: 'gt' | 'gte' | 'lt' | 'lte'; key: string; value: string | number };
export type MembershipFilter = { type: 'in' | 'nin'; key: string; value: (string | number)[] };
export type ComparisonFilter = EqualityFilter | RangeFilter | MembershipFilter;
export type CompoundFilter = { type: 'and' | 'or'; filters: AttributeFilter[] };
export type AttributeFilter = ComparisonFilter | CompoundFilter;

const key = z
  .string()
  .min(1)
  .max(ATTRIBUTE_KEY_MAX)
  .regex(ATTRIBUTE_KEY, 'keys may hold only letters, digits, "_", ".", ":" and "-"');
const str = z.string().max(ATTRIBUTE_STRING_MAX);
const num = z.number().refine(Number.isFinite, 'must be a finite number');

const equality = z.strictObject({ type: z.enum(['eq', 'ne']), key, value: z.union([str, num, z.boolean()]) });
const range = z.strictObject({ type: z.enum(['gt', 'gte', 'lt', 'lte']), key, value: z.union([str, num]) });
const membership = z.strictObject({
  type: z.enum(['in', 'nin']),
  key,
  value: z
    .array(z.union([str, num]))
    .min(1)
    .max(FILTER_MAX_IN_VALUES),
});

export const attributeFilterSchema: z.ZodType<AttributeFilter> = z.lazy(() =>
  z.union([
    equality,
    range,
    membership,
    z.strictObject({
      type: z.enum(['and', 'or']),
      filters: z.array(attributeFilterSchema).min(1).max(FILTER_MAX_NODES),
    }),
  ]),
);

/**
 * Depth (compound levels, a bare comparison is 1) and node count of raw input, walked iteratively so a
 * hostile, deeply nested body cannot overflow the stack before validation rejects it.
 */
function measure(input: unknown, maxNodes: number): { depth: number; nodes: number } {
  let depth = 0;
  let nodes = 0;
  const stack: [unknown, number][] = [[input, 1]];
  while (stack.length > 0 && nodes <= maxNodes) {
    const [node, d] = stack.pop()!;
    nodes++;
    depth = Math.max(depth, d);
    const children = (node as { filters?: unknown } | null)?.filters;
    if (Array.isArray(children)) for (const c of children) stack.push([c, d + 1]);
  }
  return { depth, nodes };
}

/** Validates a filter from a request; AppError('bad_request') with the reason otherwise. */
export function parseAttributeFilter(input: unknown): AttributeFilter {
  const { depth, nodes } = measure(input, FILTER_MAX_NODES);
  if (depth > FILTER_MAX_DEPTH) {
    throw new AppError('bad_request', `filters may nest at most ${FILTER_MAX_DEPTH} levels deep`);
  }
  if (nodes > FILTER_MAX_NODES) {
    throw new AppError('bad_request', `filters may hold at most ${FILTER_MAX_NODES} conditions`);
  }
  const r = attributeFilterSchema.safeParse(input);
  if (!r.success) {
    const msg = r.error.issues.map((i) => `${i.path.join('.') || 'filters'}: ${i.message}`).join('; ');
    throw new AppError('bad_request', `invalid filters: ${msg}`, { issues: r.error.issues });
  }
  return r.data;
}

export interface SqlFragment {
  /** A boolean SQL expression with $n placeholders. */
  sql: string;
  /** Values for the placeholders, in order: keys and strings as text, numbers and booleans as their text form. */
  params: string[];
  /** The next free placeholder index after this fragment. */
  nextIndex: number;
}

export interface CompileOptions {
  /** The jsonb column (optionally table-qualified), trusted code, never user input. Default `attributes`. */
  column?: string;
  /** Number of the first placeholder ($1 by default), to append to a query that already has parameters. */
  startIndex?: number;
}

const COLUMN = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$/;

/** Compiles a validated filter to a parameterised boolean SQL expression over a jsonb column. */
export function compileFilter(filter: AttributeFilter, opts: CompileOptions = {}): SqlFragment {
  const col = opts.column ?? 'attributes';
  if (!COLUMN.test(col)) throw new Error(`compileFilter: bad column name ${JSON.stringify(col)}`);
  const params: string[] = [];
  const start = opts.startIndex ?? 1;
  if (!Number.isInteger(start) || start < 1) throw new Error(`compileFilter: bad start index ${start}`);
  const bind = (v: string) => {
    params.push(v);
    return `$${start + params.length - 1}`;
  };

  const node = (f: AttributeFilter): string => {
    if ('filters' in f) {
      return `(${f.filters.map(node).join(f.type === 'and' ? ' AND ' : ' OR ')})`;
    }
    const k = `${bind(f.key)}::text`;
    switch (f.type) {
      case 'eq':
      case 'ne': {
        const v = typed(f.value, bind);
        // containment is indexable (GIN on attributes) and compares jsonb numbers numerically
        const eq = `${col} @> jsonb_build_object(${k}, ${v})`;
        return f.type === 'eq' ? `coalesce(${eq}, false)` : `(NOT coalesce(${eq}, false))`;
      }
      case 'gt':
      case 'gte':
      case 'lt':
      case 'lte': {
        const op = { gt: '>', gte: '>=', lt: '<', lte: '<=' }[f.type];
        if (typeof f.value === 'number') {
          // jsonb-to-jsonb comparison of two numbers is numeric; the type test keeps strings out
          return `coalesce(jsonb_typeof(${col} -> ${k}) = 'number' AND (${col} -> ${k}) ${op} to_jsonb(${bind(String(f.value))}::text::numeric), false)`;
        }
        return `coalesce(jsonb_typeof(${col} -> ${k}) = 'string' AND (${col} ->> ${k}) COLLATE "C" ${op} ${bind(f.value)}::text, false)`;
      }
      case 'in':
      case 'nin': {
        // the value list as one jsonb array parameter; membership = the array contains [the attribute]
        const isIn = `coalesce(${bind(JSON.stringify(f.value))}::text::jsonb @> jsonb_build_array(${col} -> ${k}), false)`;
        return f.type === 'in' ? isIn : `(NOT ${isIn})`;
      }
    }
  };

  const sql = node(filter);
  return { sql, params, nextIndex: start + params.length };
}

/**
 * A scalar as a typed SQL parameter expression. Every placeholder is declared text and cast in SQL, so
 * drivers send the strings untouched: postgres.js re-serialises values it sees typed jsonb (JSON.stringify
 * of a string gives a jsonb string) or boolean (anything but `true` becomes 'f').
 */
function typed(v: string | number | boolean, bind: (v: string) => string): string {
  if (typeof v === 'number') return `${bind(String(v))}::text::numeric`;
  if (typeof v === 'boolean') return `${bind(String(v))}::text::boolean`;
  return `${bind(v)}::text`;
}
