// How `kvrag eval` results are shown: a plain-text table (terminal), results.md (tables per suite, the
// command, model and date) and a hand-written SVG plot: exact match by variant (grouped by context) and
// exact match vs squeezed budget. Everything is computed from an EvalResult, so a saved --json result
// renders the same way.
import type { EvalCell, EvalResult } from './run.ts';

const pct = (x: number) => `${(100 * x).toFixed(0)}`;

interface Agg {
  correct: number;
  n: number;
}

/** Cells of the given suites merged per (variant, context). */
function aggregate(r: EvalResult, suites: readonly string[]): Map<string, Agg> {
  const m = new Map<string, Agg>();
  for (const c of r.cells) {
    if (!suites.includes(c.suite)) continue;
    const k = `${c.variant}@${c.context}`;
    const a = m.get(k) ?? { correct: 0, n: 0 };
    a.correct += c.correct;
    a.n += c.n;
    m.set(k, a);
  }
  return m;
}

/** Markdown table: one row per variant, one column per context; exact match over the given suites. */
export function tableFor(r: EvalResult, suites: readonly string[]): string[] {
  const m = aggregate(r, suites);
  const head = `| variant | ${r.contexts.map((c) => `${c} tokens`).join(' | ')} |`;
  const rule = `|---|${r.contexts.map(() => '---:').join('|')}|`;
  const rows = r.variants.map((v) => {
    const cells = r.contexts.map((c) => {
      const a = m.get(`${v}@${c}`);
      return a && a.n > 0 ? `${pct(a.correct / a.n)}% (${a.correct}/${a.n})` : '—';
    });
    return `| ${v} | ${cells.join(' | ')} |`;
  });
  return [head, rule, ...rows];
}

const SINGLE_FACT = ['passkey', 'kv'];

/** Points of `variant` minus points of `full` per context, over the given suites (null where absent). */
export function deltaVsFull(r: EvalResult, variant: string, suites: readonly string[]): (number | null)[] {
  const m = aggregate(r, suites);
  return r.contexts.map((c) => {
    const a = m.get(`${variant}@${c}`);
    const f = m.get(`full@${c}`);
    return a && f && a.n > 0 && f.n > 0 ? 100 * (a.correct / a.n - f.correct / f.n) : null;
  });
}

/** "20", or "7–8 of 20" for a run stopped early. */
export function episodesPer(r: EvalResult): string {
  return r.stopped ? `${r.stopped.rounds}–${r.stopped.rounds + 1} of ${r.n}` : String(r.n);
}

export function stoppedLine(r: EvalResult): string {
  const s = r.stopped!;
  return `Stopped early (${s.reason}) after ${s.rounds} of ${s.of} episodes of every suite and context (episodes run round-robin; some cells have one more): each cell shows its own count.`;
}

export function unavailableLines(r: EvalResult): string[] {
  const out: string[] = [];
  if (r.unavailable.squeezed)
    out.push(`Squeezed-attention budgets: not measured — ${r.unavailable.squeezed}.`);
  if (r.unavailable.sparse) out.push(`Sparse-prefill patterns: not measured — ${r.unavailable.sparse}.`);
  return out;
}

/** "; <what> run on `mode` (<why>)" for the variants of a kind, or "" when there are none. */
function modeNote(r: EvalResult, kind: 'squeezed' | 'sparse', what: string, why: string): string {
  const modes = [...new Set(r.cells.filter((c) => c.kind === kind).map((c) => c.mode))];
  return modes.length ? `; ${what} run on ${modes.map((m) => `\`${m}\``).join(', ')} (${why})` : '';
}

/** A table of a per-cell runner statistic (mean over suites) for the variants of one kind. */
function statTable(
  r: EvalResult,
  kind: EvalCell['kind'],
  stat: (c: EvalCell) => number | null,
  title: string,
  what: string,
): string[] {
  const vs = r.variants.filter((v) => r.cells.some((c) => c.variant === v && c.kind === kind));
  if (vs.length === 0) return [];
  const lines = [
    `## ${title}`,
    '',
    `(${what})`,
    '',
    `| variant | ${r.contexts.map((c) => `${c} tokens`).join(' | ')} |`,
    `|---|${r.contexts.map(() => '---:').join('|')}|`,
  ];
  for (const v of vs) {
    const cells = r.contexts.map((ctx) => {
      const xs = r.cells
        .filter((c) => c.variant === v && c.context === ctx)
        .map(stat)
        .filter((x): x is number => x !== null);
      return xs.length ? `${(100 * (xs.reduce((a, b) => a + b, 0) / xs.length)).toFixed(1)}%` : '—';
    });
    lines.push(`| ${v} | ${cells.join(' | ')} |`);
  }
  return [...lines, ''];
}

/** results.md: the command, the setup, one table per suite group. */
export function resultsMarkdown(r: EvalResult, command: string, svgName: string | null): string {
  const groups: { title: string; suites: string[] }[] = [];
  const single = SINGLE_FACT.filter((s) => r.suites.includes(s as never));
  if (single.length > 1)
    groups.push({ title: `Single-fact retrieval (${single.join(' + ')})`, suites: single });
  for (const s of r.suites) groups.push({ title: `Suite \`${s}\``, suites: [s] });
  const lines = [
    '# kvrag eval: held-out retrieval exact match',
    '',
    `Regenerate: \`${command}\``,
    '',
    `- model: \`${r.model}\` (fingerprint \`${r.fingerprint.slice(0, 16)}…\`), ${r.backend} backend, ${r.weights} weights, ${r.kvCache ?? 'f32'} KV cache`,
    `- episodes: gpu-runner/tools/train/EPISODES.md held-out sets, seed ${r.seed} (\`heldout-${r.seed}-{suite}-full-{context}${r.filler === 'lexicon' ? '' : `-${r.filler}`}\`; training never used it), ${episodesPer(r)} per suite and context, the same episodes for every variant`,
    `- filler: ${fillerNote(r)}`,
    `- settings: blend ratio ${r.blendRatio ?? 'the runner default (0.15)'}, link tokens ${r.linkTokens ?? 'the runner default (16)'}${modeNote(r, 'squeezed', 'squeezed budgets', 'the fixed context from artifacts')}${modeNote(r, 'sparse', 'sparse-prefill patterns', 'the prompt prefilled live')}`,
    '- exact match: the greedy answer equals the gold answer byte for byte and the next token is `<|end|>`',
    '- every request went through the runner API (POST /v1/generate in process: scheduler, reuse assembly, decoding)',
    `- run: ${r.date}, ${(r.wallS / 60).toFixed(1)} min wall`,
    '',
  ];
  for (const g of groups) lines.push(`## ${g.title}`, '', ...tableFor(r, g.suites), '');
  if (r.variants.includes('full') && r.variants.includes('independent')) {
    const suites = single.length > 0 ? single : r.suites;
    const d = deltaVsFull(r, 'independent', suites);
    lines.push(
      `\`independent\` − \`full\` (${suites.join(' + ')}), points: ${r.contexts
        .map((c, i) => `${c}: ${d[i] === null ? '—' : `${d[i]! >= 0 ? '+' : ''}${d[i]!.toFixed(1)}`}`)
        .join(', ')}`,
      '',
    );
  }
  lines.push(
    ...statTable(
      r,
      'squeezed',
      (c) => c.squeezedKeysFraction,
      'Squeezed attention: fraction of fixed-context keys attended',
      "mean over requests of the runner's `squeezed.fraction`: fixed-context keys attended ÷ all of them, over the question prefill and every decode step, layer and kv head",
    ),
    ...statTable(
      r,
      'sparse',
      (c) => c.sparseDensity,
      'Sparse prefill: density',
      "mean over requests of the runner's `sparse.density`: attended ÷ dense causal (query, key) pairs of the live prefill, over layers and kv heads",
    ),
  );
  const notes = [...new Set(r.cells.flatMap((c) => c.notes.map((n) => `${c.variant}: ${n}`)))];
  if (notes.length) lines.push('Runner notes:', '', ...notes.map((n) => `- ${n}`), '');
  const un = unavailableLines(r);
  if (un.length) lines.push(...un.map((l) => `- ${l}`), '');
  if (r.stopped) lines.push(`- ${stoppedLine(r)}`, '');
  if (svgName) lines.push(`![exact match by variant and squeezed budget](${svgName})`, '');
  const misses = r.cells.filter((c) => c.misses.length > 0 && c.variant === 'full');
  if (misses.length) {
    lines.push('<details><summary>Examples of misses (full)</summary>', '');
    for (const c of misses)
      for (const m of c.misses.slice(0, 1))
        lines.push(
          `- ${c.suite} @${c.context}: ${m.question} gold \`${m.gold}\`, answered \`${m.predicted}\` (stop: ${m.stop})`,
        );
    lines.push('', '</details>', '');
  }
  return `${lines.join('\n')}`;
}

/** What the episodes' filler text was. */
export function fillerNote(r: EvalResult): string {
  return r.filler === 'prose'
    ? '`prose` — lines of the committed evaluation prose (gpu-runner/eval/prose: MIT-licensed READMEs that training excludes)'
    : "`lexicon` — the trainer's generated sentences (`The {adj} {noun} {verb} the {adj} {noun}…`)";
}

/** The terminal table: every variant × context per suite, accuracy in %. */
export function evalTable(r: EvalResult): string {
  const lines = [
    `kvrag eval — ${r.model} on ${r.backend} (${r.weights} weights, ${r.kvCache ?? 'f32'} KV cache), seed ${r.seed}, ${r.filler} filler, ${episodesPer(r)} episodes per suite and context, ${(r.wallS / 60).toFixed(1)} min`,
  ];
  for (const s of r.suites) lines.push('', `suite ${s}`, ...tableFor(r, [s]));
  lines.push(...unavailableLines(r).map((l) => `\n${l}`));
  if (r.stopped) lines.push(`\n${stoppedLine(r)}`);
  return lines.join('\n');
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b'];

/**
 * Two panels: (a) exact match per variant (reuse modes, sparse patterns), one bar per context;
 * (b) exact match vs squeezed budget (log x), one line per context, with the dense reuse mode at budget 1.
 * Accuracy is over all suites of the run.
 */
export function resultsSvg(r: EvalResult): string {
  const m = aggregate(r, r.suites);
  const acc = (v: string, c: number) => {
    const a = m.get(`${v}@${c}`);
    return a && a.n > 0 ? a.correct / a.n : null;
  };
  const W = 980;
  const H = 440;
  const top = 50;
  const plotH = 250;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<title>kvrag eval: exact match by reuse mode, sparse-prefill pattern and squeezed budget</title>`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">kvrag eval: exact match, ${esc(r.suites.join(' + '))} (${r.filler} filler), ${episodesPer(r)} episodes per suite and context (${esc(r.date.slice(0, 10))})</text>`,
  ];
  const yAxis = (x0: number, x1: number) => {
    for (let t = 0; t <= 100; t += 25) {
      const y = top + plotH - (t / 100) * plotH;
      out.push(`<line x1="${x0}" x2="${x1}" y1="${y}" y2="${y}" stroke="#ddd"/>`);
      out.push(`<text x="${x0 - 6}" y="${y + 4}" text-anchor="end">${t}%</text>`);
    }
  };
  // (a) bars per variant
  const barVariants = r.cells.length
    ? r.variants.filter((v) => r.cells.find((c) => c.variant === v)?.kind !== 'squeezed')
    : [];
  const ax0 = 60;
  const ax1 = 560;
  yAxis(ax0, ax1);
  out.push(
    `<text x="${(ax0 + ax1) / 2}" y="${top - 12}" text-anchor="middle">(a) by reuse mode / sparse-prefill pattern</text>`,
  );
  const gw = (ax1 - ax0) / Math.max(1, barVariants.length);
  const bw = (gw * 0.8) / Math.max(1, r.contexts.length);
  for (const [i, v] of barVariants.entries()) {
    const gx = ax0 + i * gw + gw * 0.1;
    for (const [j, c] of r.contexts.entries()) {
      const a = acc(v, c);
      if (a === null) continue;
      const h = a * plotH;
      out.push(
        `<rect x="${(gx + j * bw).toFixed(1)}" y="${(top + plotH - h).toFixed(1)}" width="${(bw - 1).toFixed(1)}" height="${h.toFixed(1)}" fill="${COLORS[j % COLORS.length]}"><title>${esc(v)} @${c}: ${pct(a)}%</title></rect>`,
      );
    }
    const lx = gx + (gw * 0.8) / 2;
    out.push(
      `<text x="${lx.toFixed(1)}" y="${top + plotH + 14}" text-anchor="end" transform="rotate(-30 ${lx.toFixed(1)} ${top + plotH + 14})">${esc(v.replace(' (full)', ''))}</text>`,
    );
  }
  // (b) squeezed budgets
  const bx0 = 660;
  const bx1 = 930;
  yAxis(bx0, bx1);
  out.push(
    `<text x="${(bx0 + bx1) / 2}" y="${top - 12}" text-anchor="middle">(b) vs squeezed-attention budget</text>`,
  );
  const sq = r.cells.filter((c) => c.kind === 'squeezed');
  if (sq.length === 0) {
    out.push(
      `<text x="${(bx0 + bx1) / 2}" y="${top + plotH / 2}" text-anchor="middle" fill="#a00">not measured:</text>`,
      `<text x="${(bx0 + bx1) / 2}" y="${top + plotH / 2 + 16}" text-anchor="middle" fill="#a00">${esc(r.unavailable.squeezed ? 'runner has no squeezed budgets' : 'no budgets asked for')}</text>`,
    );
  } else {
    const budgets = [...new Set(sq.map((c) => c.budget!))].sort((a, b) => a - b);
    const lo = Math.log2(Math.min(...budgets));
    const span = Math.max(1e-9, 0 - lo);
    const xOf = (b: number) => bx0 + 10 + ((Math.log2(b) - lo) / span) * (bx1 - bx0 - 20);
    for (const b of budgets) {
      const label = sq.find((c) => c.budget === b)!.variant.split(' ')[1];
      out.push(
        `<text x="${xOf(b).toFixed(1)}" y="${top + plotH + 16}" text-anchor="middle">${esc(label)}</text>`,
      );
    }
    out.push(
      `<text x="${(bx0 + bx1) / 2}" y="${top + plotH + 34}" text-anchor="middle">budget: fraction of fixed-context keys (${esc(sq[0].mode)})</text>`,
    );
    for (const [j, c] of r.contexts.entries()) {
      const pts = budgets
        .map((b) => {
          const v = sq.find((x) => x.budget === b)!.variant;
          const a = acc(v, c);
          return a === null ? null : `${xOf(b).toFixed(1)},${(top + plotH - a * plotH).toFixed(1)}`;
        })
        .filter((p): p is string => p !== null);
      const col = COLORS[j % COLORS.length];
      out.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${col}" stroke-width="2"/>`);
      for (const p of pts) {
        const [x, y] = p.split(',');
        out.push(`<circle cx="${x}" cy="${y}" r="3" fill="${col}"/>`);
      }
    }
  }
  // legend: contexts
  for (const [j, c] of r.contexts.entries()) {
    const x = 60 + j * 130;
    out.push(
      `<rect x="${x}" y="${H - 22}" width="12" height="12" fill="${COLORS[j % COLORS.length]}"/>`,
      `<text x="${x + 16}" y="${H - 12}">${c} tokens</text>`,
    );
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
