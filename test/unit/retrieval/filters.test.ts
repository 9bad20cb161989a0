import { describe, expect, it } from 'vitest';
import { AppError } from '../../../contracts/errors.ts';
import {
  type AttributeFilter,
  compileFilter,
  FILTER_MAX_DEPTH,
  FILTER_MAX_NODES,
  parseAttributeFilter,
} from '../../../src/retrieval/filters.ts';

function rejection(input: unknown): string {
  try {
    parseAttributeFilter(input);
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    expect((e as AppError).code).toBe('bad_request');
    return (e as AppError).message;
  }
  throw new Error(`accepted ${JSON.stringify(input)}`);
}

const nest = (levels: number): unknown => {
  let f: unknown = { type: 'eq', key: 'k', value: 1 };
  for (let i = 1; i < levels; i++) f = { type: 'and', filters: [f] };
  return f;
};

describe('attribute filter schema', () => {
  it('accepts the OpenAI shapes', () => {
    const f = {
      type: 'and',
      filters: [
        { type: 'eq', key: 'author', value: 'Ada' },
        { type: 'gte', key: 'year', value: 2020 },
        {
          type: 'or',
          filters: [
            { type: 'in', key: 'lang', value: ['en', 'de', 3] },
            { type: 'ne', key: 'draft', value: true },
          ],
        },
      ],
    };
    expect(parseAttributeFilter(f)).toEqual(f);
  });

  it('rejects bad keys, values, types and extra fields', () => {
    expect(rejection({ type: 'eq', key: "a'; DROP TABLE chunks; --", value: 1 })).toContain('key');
    expect(rejection({ type: 'eq', key: 'a b', value: 1 })).toContain('key');
    expect(rejection({ type: 'eq', key: '', value: 1 })).toContain('key');
    expect(rejection({ type: 'eq', key: 'k'.repeat(65), value: 1 })).toContain('key');
    expect(rejection({ type: 'eq', key: '-x', value: 1 })).toContain('key');
    expect(rejection({ type: 'eq', key: 'k', value: 'v'.repeat(513) })).toContain('value');
    expect(rejection({ type: 'eq', key: 'k', value: null })).toContain('invalid');
    expect(rejection({ type: 'gt', key: 'k', value: true })).toContain('invalid');
    expect(rejection({ type: 'in', key: 'k', value: [] })).toContain('invalid');
    expect(rejection({ type: 'in', key: 'k', value: 'a' })).toContain('invalid');
    expect(rejection({ type: 'in', key: 'k', value: Array.from({ length: 101 }, (_, i) => i) })).toContain(
      'invalid',
    );
    expect(rejection({ type: 'like', key: 'k', value: '%' })).toContain('invalid');
    expect(rejection({ type: 'eq', key: 'k', value: 1, sql: 'x' })).toContain('invalid');
    expect(rejection({ type: 'and', filters: [] })).toContain('invalid');
    expect(rejection('eq')).toContain('invalid');
  });

  it(`bounds nesting at ${FILTER_MAX_DEPTH} levels and size at ${FILTER_MAX_NODES} nodes, even for hostile depths`, () => {
    expect(() => parseAttributeFilter(nest(FILTER_MAX_DEPTH))).not.toThrow();
    expect(rejection(nest(FILTER_MAX_DEPTH + 1))).toContain('nest');
    expect(rejection(nest(200_000))).toContain('nest'); // no stack overflow
    const wide = {
      type: 'or',
      filters: Array.from({ length: FILTER_MAX_NODES }, () => ({ type: 'eq', key: 'k', value: 1 })),
    };
    expect(rejection(wide)).toContain('at most');
  });
});

describe('filter compiler', () => {
  it('numbers placeholders from the start index and binds keys and values, never inlines them', () => {
    const f: AttributeFilter = {
      type: 'or',
      filters: [
        { type: 'eq', key: 'author', value: 'O\'Brien"; DROP TABLE x; --' },
        { type: 'lt', key: 'year', value: 1999.5 },
        { type: 'nin', key: 'tag', value: ['a', 2] },
      ],
    };
    const out = compileFilter(f, { column: 'c.attributes', startIndex: 4 });
    expect(out.params).toEqual(['author', 'O\'Brien"; DROP TABLE x; --', 'year', '1999.5', 'tag', '["a",2]']);
    expect(out.nextIndex).toBe(10);
    const placeholders = [...out.sql.matchAll(/\$(\d+)/g)].map((m) => Number(m[1]));
    expect(new Set(placeholders)).toEqual(new Set([4, 5, 6, 7, 8, 9]));
    expect(out.sql).not.toContain('author');
    expect(out.sql).not.toContain('Brien');
    expect(out.sql).not.toContain("'a'");
    expect(out.sql).toContain('c.attributes');
  });

  it('binds even unvalidated keys as parameters (defence in depth)', () => {
    const evil = { type: 'eq', key: "x') OR true --", value: 1 } as AttributeFilter;
    const out = compileFilter(evil);
    expect(out.sql).not.toContain('OR true');
    expect(out.params[0]).toBe("x') OR true --");
  });

  it('refuses a column name that is not a plain identifier', () => {
    expect(() => compileFilter({ type: 'eq', key: 'k', value: 1 }, { column: 'attributes; DROP' })).toThrow();
    expect(() => compileFilter({ type: 'eq', key: 'k', value: 1 }, { startIndex: 0 })).toThrow();
  });
});
