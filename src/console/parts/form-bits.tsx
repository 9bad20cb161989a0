// Small pieces every console form and list repeats: an error line read out at once, a labelled field,
// and the small red button that opens a confirmation.
import type { ComponentChildren } from 'preact';

/** The error line (role=alert, so screen readers announce it); nothing when there is no error. */
export function ErrorLine(props: { error?: string | null; full?: boolean; id?: string }) {
  if (!props.error) return null;
  return (
    <p id={props.id} class={props.full ? 'error full' : 'error'} role="alert">
      {props.error}
    </p>
  );
}

/** A label and its control (`id` must be the control's); `class` adds wide / end / full / inline. */
export function Field(props: {
  id: string;
  label: ComponentChildren;
  class?: string;
  children: ComponentChildren;
}) {
  return (
    <div class={props.class ? `field ${props.class}` : 'field'}>
      <label for={props.id}>{props.label}</label>
      {props.children}
    </div>
  );
}

/** A small danger button; `label` is its accessible name (what it acts on), the text says the act. */
export function DangerButton(props: { label: string; onClick: () => void; children?: ComponentChildren }) {
  return (
    <button type="button" class="danger small" onClick={props.onClick} aria-label={props.label}>
      {props.children ?? 'Delete'}
    </button>
  );
}

/** A select over `options` (shown as `text(o)`, else as they are); `onChange` gets the option itself. */
export function Select<T extends string | number>(props: {
  id: string;
  value: T;
  options: readonly T[];
  onChange: (value: T) => void;
  text?: (option: T) => string;
}) {
  return (
    <select
      id={props.id}
      value={String(props.value)}
      onChange={(e) => {
        const raw = e.currentTarget.value;
        const picked = props.options.find((o) => String(o) === raw);
        if (picked !== undefined) props.onChange(picked);
      }}
    >
      {props.options.map((o) => (
        <option key={String(o)} value={String(o)}>
          {props.text ? props.text(o) : String(o)}
        </option>
      ))}
    </select>
  );
}
