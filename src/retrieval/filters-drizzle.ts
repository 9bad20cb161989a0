// Attribute filters as a drizzle `SQL` chunk, for queries built with drizzle's sql template
// (db.execute(sql`… WHERE ${filterSql(f)}`)): the compiled fragment's $n placeholders become drizzle
// parameters, so values stay bound and the driver numbers them within the whole query.
import { type SQL, sql } from 'drizzle-orm';
import { type AttributeFilter, type CompileOptions, compileFilter, type SqlFragment } from './filters.ts';

/** Re-expresses a compiled fragment (placeholders from `startIndex`) as drizzle SQL. */
export function fragmentToDrizzle(f: SqlFragment, startIndex = 1): SQL {
  const parts: SQL[] = [];
  let last = 0;
  for (const m of f.sql.matchAll(/\$(\d+)/g)) {
    const i = Number(m[1]) - startIndex;
    if (i < 0 || i >= f.params.length)
      throw new Error(`fragmentToDrizzle: placeholder ${m[0]} has no parameter`);
    parts.push(sql.raw(f.sql.slice(last, m.index)), sql`${f.params[i]}`);
    last = m.index + m[0].length;
  }
  parts.push(sql.raw(f.sql.slice(last)));
  return sql.join(parts);
}

/** compileFilter straight to drizzle SQL (column default `attributes`). */
export function filterSql(filter: AttributeFilter, opts: Pick<CompileOptions, 'column'> = {}): SQL {
  return fragmentToDrizzle(compileFilter(filter, { column: opts.column, startIndex: 1 }), 1);
}
