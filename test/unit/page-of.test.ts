// pageOf: OpenAI's cursor rules (limit, order, after / before, has_more) over a list held in memory.
import { describe, expect, it } from 'vitest';
import { AppError } from '../../contracts/errors.ts';
import { listQuerySchema, pageOf } from '../../src/routes/pagination.ts';

const items = ['a', 'b', 'c', 'd', 'e'].map((id) => ({ id }));
const ids = (q: Record<string, unknown>) => {
  const p = pageOf(items, listQuerySchema.parse(q));
  return { ids: p.data.map((x) => x.id).join(''), more: p.has_more, first: p.first_id, last: p.last_id };
};

describe('pageOf', () => {
  it('pages forward in either order, has_more until the end', () => {
    expect(ids({ limit: 2, order: 'asc' })).toEqual({ ids: 'ab', more: true, first: 'a', last: 'b' });
    expect(ids({ limit: 2, order: 'asc', after: 'b' })).toMatchObject({ ids: 'cd', more: true });
    expect(ids({ limit: 2, order: 'asc', after: 'd' })).toMatchObject({ ids: 'e', more: false });
    expect(ids({ limit: 2 })).toMatchObject({ ids: 'ed', more: true });
    expect(ids({ limit: 2, after: 'b' })).toEqual({ ids: 'a', more: false, first: 'a', last: 'a' });
  });

  it('`before` gives the items just before the cursor, in the page’s order', () => {
    expect(ids({ limit: 2, order: 'asc', before: 'e' })).toMatchObject({ ids: 'cd', more: true });
    expect(ids({ limit: 2, order: 'asc', before: 'b' })).toMatchObject({ ids: 'a', more: false });
    expect(ids({ limit: 10, before: 'b' })).toMatchObject({ ids: 'edc', more: false });
  });

  it('an empty list is an empty page; an unknown cursor or both cursors are a 400', () => {
    expect(pageOf([], listQuerySchema.parse({}))).toEqual({
      object: 'list',
      data: [],
      first_id: null,
      last_id: null,
      has_more: false,
    });
    expect(() => pageOf(items, listQuerySchema.parse({ after: 'zz' }))).toThrow(AppError);
    expect(() => pageOf(items, listQuerySchema.parse({ after: 'a', before: 'c' }))).toThrow(/either/);
  });
});
