// The console's one table: a caption, column headers, one row per item whose first cell is the row's
// header (th scope=row), and an optional actions column headed for screen readers only. Wrapped so a
// narrow screen scrolls the table, not the page.
import type { ComponentChildren } from 'preact';

export interface Column<T> {
  head: string;
  /** Right-aligned numbers. */
  num?: boolean;
  cell: (row: T) => ComponentChildren;
}

export function DataTable<T>(props: {
  rows: readonly T[];
  rowKey: (row: T) => string;
  /** The first column: rendered as each row's header. */
  header: Column<T> & { class?: string };
  columns: Column<T>[];
  caption?: ComponentChildren;
  /** The caption for screen readers only. */
  hiddenCaption?: boolean;
  class?: string;
  /** Extra attributes of a row (data-*, aria-selected). */
  rowAttrs?: (row: T) => Record<`data-${string}` | `aria-${string}`, string | boolean>;
  actions?: (row: T) => ComponentChildren;
  actionsClass?: string;
  children?: ComponentChildren;
}) {
  const { header, columns, actions } = props;
  const numClass = (c: Column<T>) => (c.num ? 'num' : undefined);
  return (
    <div class="table-wrap">
      <table class={props.class}>
        {props.caption !== undefined && (
          <caption class={props.hiddenCaption ? 'sr-only' : undefined}>{props.caption}</caption>
        )}
        <thead>
          <tr>
            {[header, ...columns].map((c) => (
              <th key={c.head} scope="col" class={numClass(c)}>
                {c.head}
              </th>
            ))}
            {actions && (
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            )}
          </tr>
        </thead>
        <tbody>
          {props.rows.map((r) => (
            <tr key={props.rowKey(r)} {...props.rowAttrs?.(r)}>
              <th scope="row" class={header.class}>
                {header.cell(r)}
              </th>
              {columns.map((c) => (
                <td key={c.head} class={numClass(c)}>
                  {c.cell(r)}
                </td>
              ))}
              {actions && <td class={props.actionsClass}>{actions(r)}</td>}
            </tr>
          ))}
        </tbody>
      </table>
      {props.children}
    </div>
  );
}

/** A list that may still be loading (null) or be empty: a line for either, the table otherwise. */
export function Loaded<T>(props: {
  rows: readonly T[] | null;
  empty?: ComponentChildren;
  children: (rows: readonly T[]) => ComponentChildren;
}) {
  if (props.rows === null) return <p>Loading…</p>;
  if (props.rows.length === 0 && props.empty !== undefined) return <p>{props.empty}</p>;
  return <>{props.children(props.rows)}</>;
}
