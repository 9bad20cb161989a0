// `kvrag eval` end to end on a generated tiny model: held-out episodes through the in-process runner's
// POST /v1/generate, scored by exact match. The model is random, so it answers wrongly; what is pinned is
// that every mode really ran through the engine (full's answers are the engine's own greedy output,
// independent's context came from chunk artifacts) and the shape of the table, JSON and files.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadEngine } from '../../gpu-runner/engine/engine.ts';
import { episodePrompt, heldoutEpisodes, promptTokens } from '../../gpu-runner/eval/episodes.ts';
import { parseHeader } from '../../gpu-runner/engine/kv/artifact-format.ts';
import { loadEvalProse } from '../../gpu-runner/eval/prose.ts';
import { type EvalResult, runEval, runnerAccepts } from '../../gpu-runner/eval/run.ts';
import { scoreAnswer } from '../../gpu-runner/eval/score.ts';
import { command } from '../../cli/commands/eval.ts';
import { callRunner } from '../../src/routing/runner-client.ts';
import { MemoryBlobStore } from '../../src/storage/memory.ts';
import { captureStdout } from '../helpers/capture-stdout.ts';
import { type TinyModels, tinyModels } from '../helpers/tiny-model.ts';

let models: TinyModels;
let out: string;
let dir: string;
let result: EvalResult;
let table: string;

const SEED = 314159;
const CONTEXT = 160;
const N = 2;
const base = [
  '--suite',
  'kv,passkey',
  '--context',
  String(CONTEXT),
  '--n',
  String(N),
  '--seed',
  String(SEED),
];

beforeAll(async () => {
  models = tinyModels();
  dir = models.make('eval', { seed: 5 });
  out = mkdtempSync(join(tmpdir(), 'kvrag-eval-out-'));
  const args = [...base, '--modes', 'full,independent,blend', '--budgets', '1/2', '--patterns', 'a-shape'];
  const common = ['--model', dir, '--backend', 'reference'];
  const json = await captureStdout(() => command.run([...args, ...common, '--json', '--out', out]));
  expect(json.code).toBe(0);
  const lines = json.out.trim().split('\n');
  expect(lines).toHaveLength(1); // exactly one JSON object
  result = JSON.parse(lines[0]);
  const text = await captureStdout(() =>
    command.run([...base, '--modes', 'full', ...common, '--budgets', 'none', '--patterns', 'none']),
  );
  expect(text.code).toBe(0);
  table = text.out;
});

afterAll(() => {
  models?.cleanup();
  if (out) rmSync(out, { recursive: true, force: true });
});

describe('kvrag eval', () => {
  it('reports one cell per suite, context and variant, over the same episodes', () => {
    expect(result.variants).toEqual([
      'full',
      'independent',
      'blend',
      'squeezed 1/2 (independent)',
      'sparse a-shape (full)',
    ]);
    expect(result.seed).toBe(SEED);
    expect(result.cells).toHaveLength(2 * 5);
    for (const c of result.cells) {
      expect(c.context).toBe(CONTEXT);
      expect(c.n).toBe(N);
      expect(c.correct).toBeGreaterThanOrEqual(0);
      expect(c.accuracy).toBeCloseTo(c.correct / N);
      expect(c.misses.length).toBe(N - c.correct);
    }
  });

  it('full answers are the engine’s own greedy output for the episode prompt', async () => {
    const engine = await loadEngine(dir, { backend: 'reference' });
    try {
      for (const suite of ['kv', 'passkey'] as const) {
        const cell = result.cells.find((c) => c.suite === suite && c.variant === 'full')!;
        const eps = heldoutEpisodes(SEED, suite, CONTEXT, N);
        const scored = [];
        for (const ep of eps) {
          const p = episodePrompt(ep);
          const [g] = await engine.generate([
            {
              prompt: [...p.system, ...p.chunks.flat(), ...p.question],
              maxTokens: p.answer.length + 1,
              stopTokenIds: [],
            },
          ]);
          scored.push({ q: ep.qas[0].question, s: scoreAnswer(g.tokens, p.answer) });
        }
        expect(cell.correct).toBe(scored.filter((x) => x.s.exact).length);
        for (const m of cell.misses) expect(m.predicted).toBe(scored[m.episode].s.predicted);
      }
    } finally {
      engine.dispose();
    }
  });

  it('full prefills everything live; independent takes the whole context from chunk artifacts; blend recomputes some', () => {
    for (const suite of ['kv', 'passkey'] as const) {
      const context =
        heldoutEpisodes(SEED, suite, CONTEXT, N)
          .map((ep) => {
            const p = episodePrompt(ep);
            return promptTokens(p) - p.question.length;
          })
          .reduce((s, x) => s + x, 0) / N;
      const cell = (v: string) => result.cells.find((c) => c.suite === suite && c.variant === v)!;
      expect(cell('full').meanCachedTokens).toBe(0);
      expect(cell('independent').meanCachedTokens).toBeCloseTo(context, 6);
      expect(cell('blend').meanCachedTokens).toBeLessThan(context);
      expect(cell('full').meanPromptTokens).toBeCloseTo(cell('independent').meanPromptTokens, 6);
    }
  });

  it('squeezed budgets run on independent and attend only part of the fixed context (runner stats)', () => {
    for (const suite of ['kv', 'passkey'] as const) {
      const sq = result.cells.find((c) => c.suite === suite && c.kind === 'squeezed')!;
      const ind = result.cells.find((c) => c.suite === suite && c.variant === 'independent')!;
      expect(sq).toMatchObject({ mode: 'independent', budget: 0.5, notes: [] });
      expect(sq.meanCachedTokens).toBe(ind.meanCachedTokens);
      expect(sq.squeezedKeysFraction).toBeGreaterThan(0);
      expect(sq.squeezedKeysFraction).toBeLessThan(1);
      expect(ind.squeezedKeysFraction).toBeNull();
    }
  });

  it('sparse patterns prefill the whole prompt live with the runner’s sparse attention; a full mask answers as dense', () => {
    for (const suite of ['kv', 'passkey'] as const) {
      const sp = result.cells.find((c) => c.suite === suite && c.kind === 'sparse')!;
      const full = result.cells.find((c) => c.suite === suite && c.variant === 'full')!;
      expect(sp).toMatchObject({ mode: 'full', pattern: 'a-shape', meanCachedTokens: 0 });
      expect(sp.sparseDensity).toBeGreaterThan(0);
      expect(sp.sparseDensity).toBeLessThanOrEqual(1);
      expect(full.sparseDensity).toBeNull();
      if (sp.sparseDensity === 1) expect(sp.misses).toEqual(full.misses);
    }
  });

  it('names squeezed budgets and sparse patterns unavailable exactly when the runner refuses them', () => {
    // this run asked for none, so nothing is unavailable
    expect(result.unavailable).toEqual({ squeezed: null, sparse: null });
    expect(runnerAccepts({ squeezed: { mode: 'bogus' } })).toBe(false);
  });

  it('writes results.md (tables, command), results.svg and results.json; prints a table without --json', () => {
    const md = readFileSync(join(out, 'results.md'), 'utf8');
    expect(md).toContain('npm run kvrag -- eval --suite kv,passkey');
    expect(md).toMatch(/\| variant \| 160 tokens \|/);
    expect(md).toMatch(/\| independent \| \d+% \(\d\/4\) \|/); // single-fact table: kv + passkey
    const svg = readFileSync(join(out, 'results.svg'), 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('independent');
    expect(JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')).cells).toHaveLength(10);
    expect(md).toMatch(/\| squeezed 1\/2 \(independent\) \| \d+\.\d% \|/); // keys-attended table
    expect(table).toMatch(/suite kv\n\| variant \| 160 tokens \|/);
    expect(table).toMatch(/\| full \| \d+% \(\d\/2\) \|/);
  });

  it('--max-minutes stops before the next episode and says where', async () => {
    const r = await captureStdout(() =>
      command.run([
        ...base,
        ...['--modes', 'full', '--budgets', 'none', '--patterns', 'none'],
        ...['--model', dir, '--backend', 'reference', '--max-minutes', '0.00001', '--json'],
      ]),
    );
    const res = JSON.parse(r.out) as EvalResult;
    expect(res.stopped).toMatchObject({ reason: '--max-minutes 0.00001 reached', of: N });
    const ran = res.stopped!.rounds;
    expect(ran).toBeLessThan(N);
    // every cell holds the episodes that ran: `ran` rounds, or one more where the next round had begun
    for (const c of res.cells) expect([ran, ran + 1]).toContain(c.n);
    if (ran > 0) expect(res.cells.map((c) => c.suite).sort()).toEqual(['kv', 'passkey']);
    expect(result.stopped).toBeNull();
  });

  it('--artifact-dtype runs each artifact variant once per dtype, from artifacts of that dtype', async () => {
    const blobs = new MemoryBlobStore();
    const r = await runEval({
      modelDir: dir,
      backend: 'reference',
      seed: SEED,
      suites: ['kv'],
      contexts: [CONTEXT],
      n: 1,
      modes: ['full', 'independent'],
      budgets: [],
      patterns: [],
      artifactDTypes: ['f16', 'int4'],
      blobs,
      generate: async (fetch, body) => {
        for await (const ev of callRunner({ id: 'eval', url: 'http://eval.runner', fetch }, body))
          if (ev.type === 'done') return ev.usage;
        throw new Error('no done event');
      },
    });
    expect(r.variants).toEqual(['full', 'independent f16', 'independent int4']);
    expect(r.cells.map((c) => [c.variant, c.dtype])).toEqual([
      ['full', null],
      ['independent f16', 'f16'],
      ['independent int4', 'int4'],
    ]);
    const context =
      r.cells[0].meanPromptTokens - episodePrompt(heldoutEpisodes(SEED, 'kv', CONTEXT, 1)[0]).question.length;
    for (const c of r.cells.slice(1)) expect(c.meanCachedTokens).toBeCloseTo(context, 6);
    // the store holds every block once per dtype
    const dtypes: string[] = [];
    for await (const b of blobs.list('kv/')) {
      const bytes = await blobs.get(b.key);
      if (bytes) dtypes.push(parseHeader(bytes).dtype);
    }
    expect(dtypes.filter((d) => d === 'int4').length).toBe(dtypes.filter((d) => d === 'f16').length);
    expect(dtypes.length).toBeGreaterThan(0);
    await expect(command.run(['--artifact-dtype', 'int3'])).rejects.toThrow(
      /--artifact-dtype: unknown "int3"/,
    );
  });

  it('--filler prose: the episodes are built on the committed evaluation prose, and the result says so', async () => {
    const r = await captureStdout(() =>
      command.run([
        ...['--suite', 'setting,table', '--filler', 'prose', '--context', String(CONTEXT), '--n', '1'],
        ...['--modes', 'full', '--budgets', 'none', '--patterns', 'none'],
        ...['--model', dir, '--backend', 'reference', '--json'],
      ]),
    );
    const res = JSON.parse(r.out) as EvalResult;
    expect(res.filler).toBe('prose');
    expect(result.filler).toBe('lexicon');
    expect(res.cells.map((c) => c.suite)).toEqual(['setting', 'table']);
    // the prompt the runner saw is the prose episode's (its token count), not the lexicon one's
    const prose = loadEvalProse().map((d) => d.lines);
    for (const c of res.cells) {
      const [ep] = heldoutEpisodes(SEED, c.suite, CONTEXT, 1, 'prose', prose);
      const [lex] = heldoutEpisodes(SEED, c.suite, CONTEXT, 1);
      expect(c.meanPromptTokens).toBe(promptTokens(episodePrompt(ep)));
      expect(c.meanPromptTokens).not.toBe(promptTokens(episodePrompt(lex)));
    }
  });

  it('refuses the model’s own training seed and unknown options', async () => {
    await expect(command.run(['--suite', 'nope'])).rejects.toThrow(/--suite: unknown "nope"/);
    await expect(command.run(['--filler', 'poetry'])).rejects.toThrow(/--filler: unknown "poetry"/);
    await expect(command.run(['--budgets', '2'])).rejects.toThrow(/not a fraction/);
    await expect(command.run(['--seed', '20261122'])).rejects.toThrow(/trained with/);
  });
});
