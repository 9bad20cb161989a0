// Small SVG pictures with their numbers beside them: a stacked bar (parts of a whole, e.g. where the time
// to first token went) and a set of bars on one scale (bytes per KV tier, TTFT with and without reuse).
// Each picture is an img with a text alternative; the legend carries the same numbers as text.

export interface Part {
  key: string;
  label: string;
  value: number;
  /** The value as people read it ("12 ms"). */
  text: string;
  /** A palette slot (CSS class `c<N>`), so colours stay the same across pictures. */
  color: number;
}

export function StackedBar(props: { parts: Part[]; label: string; id: string }) {
  const total = props.parts.reduce((s, p) => s + Math.max(0, p.value), 0);
  let x = 0;
  const W = 600;
  return (
    <figure class="picture" aria-labelledby={`${props.id}-cap`}>
      <figcaption id={`${props.id}-cap`}>{props.label}</figcaption>
      <svg
        viewBox={`0 0 ${W} 28`}
        preserveAspectRatio="none"
        class="stacked"
        role="img"
        aria-label={`${props.label}: ${props.parts.map((p) => `${p.label} ${p.text}`).join(', ')}`}
      >
        {props.parts.map((p) => {
          const w = total > 0 ? (Math.max(0, p.value) / total) * W : 0;
          const r = (
            <rect key={p.key} x={x} y={0} width={w} height={28} class={`c${p.color}`} data-part={p.key}>
              <title>
                {p.label}: {p.text}
              </title>
            </rect>
          );
          x += w;
          return r;
        })}
      </svg>
      <ul class="legend">
        {props.parts.map((p) => (
          <li key={p.key} data-part={p.key}>
            <span class={`swatch c${p.color}`} aria-hidden="true" />
            <span class="legend-label">{p.label}</span> <span class="legend-value">{p.text}</span>
            {total > 0 && (
              <span class="legend-share"> ({Math.round((Math.max(0, p.value) / total) * 100)}%)</span>
            )}
          </li>
        ))}
      </ul>
    </figure>
  );
}

export function Bars(props: { parts: Part[]; label: string; id: string }) {
  const max = Math.max(0, ...props.parts.map((p) => p.value));
  return (
    <figure class="picture" aria-labelledby={`${props.id}-cap`}>
      <figcaption id={`${props.id}-cap`}>{props.label}</figcaption>
      <ul class="bars">
        {props.parts.map((p) => (
          <li key={p.key} data-part={p.key}>
            <span class="bar-label">{p.label}</span>
            <svg
              viewBox="0 0 300 16"
              preserveAspectRatio="none"
              class="bar"
              role="img"
              aria-label={`${p.label}: ${p.text}`}
            >
              <rect x={0} y={0} width={300} height={16} class="track" />
              <rect
                x={0}
                y={0}
                width={max > 0 ? (p.value / max) * 300 : 0}
                height={16}
                class={`c${p.color}`}
              />
            </svg>
            <span class="bar-value">{p.text}</span>
          </li>
        ))}
      </ul>
    </figure>
  );
}
