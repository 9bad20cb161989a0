// `kvrag eval`: exact-match quality of the served model on held-out retrieval episodes, by context
// length, for each reuse mode, squeezed budget and sparse-prefill pattern the runner offers
// (gpu-runner/eval). Prints a table (or one JSON object with --json); --out DIR writes results.md and
// results.svg. Progress goes to stderr.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join, relative } from 'node:path';
import { REUSE_MODES, type ReuseMode } from '../../contracts/reuse.ts';
import type { FetchFn, GenerateRequest, RunnerUsage } from '../../contracts/runner-api.ts';
import { SPARSE_PATTERNS, type SparsePattern } from '../../contracts/sparse.ts';
import { BACKEND_CHOICES } from '../../gpu-runner/engine/backends/registry.ts';
import { KV_CACHE_DTYPES } from '../../gpu-runner/engine/backends/types.ts';
import { KV_DTYPES, type KVDType } from '../../gpu-runner/engine/kv/artifact-format.ts';
import { WEIGHT_DTYPES } from '../../gpu-runner/engine/weights.ts';
import { FACT_TYPES, type FactType, FILLERS, type Filler } from '../../gpu-runner/eval/episodes.ts';
import { evalTable, resultsMarkdown, resultsSvg } from '../../gpu-runner/eval/report.ts';
import { runEval } from '../../gpu-runner/eval/run.ts';
import { callRunner } from '../../src/routing/runner-client.ts';
import { FsBlobStore } from '../../src/storage/fs.ts';
import { numberOption, parseOptions, UsageError } from '../args.ts';
import { BUNDLED_MODEL_DIR } from '../model-dir.ts';
import type { Command } from '../command.ts';

/** Held-out seed of the eval; the trainer seeds with --seed (20261122 by default), never this. */
export const EVAL_SEED = 314159;
const DEFAULTS = {
  suite: 'all',
  context: '512,2048,4096',
  n: 10,
  budgets: '1,1/3,1/8,1/16',
  patterns: SPARSE_PATTERNS.join(','),
};

const list = (v: string) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);

function oneOf<T extends string>(flag: string, values: string[], allowed: readonly T[]): T[] {
  for (const v of values)
    if (!(allowed as readonly string[]).includes(v))
      throw new UsageError(`--${flag}: unknown "${v}" (${allowed.join(', ')})`);
  return [...new Set(values)] as T[];
}

/** "1/8" or "0.125" → {value, label}. */
export function parseBudget(s: string): { value: number; label: string } {
  const m = /^(\d+(?:\.\d+)?)(?:\/(\d+(?:\.\d+)?))?$/.exec(s);
  const value = m ? Number(m[1]) / (m[2] === undefined ? 1 : Number(m[2])) : Number.NaN;
  if (!(value > 0 && value <= 1)) throw new UsageError(`--budgets: "${s}" is not a fraction in (0, 1]`);
  return { value, label: s };
}

/** One request through the API's runner client (the SSE client production uses); the `done` usage. */
async function generate(fetch: FetchFn, body: GenerateRequest): Promise<RunnerUsage> {
  for await (const ev of callRunner({ id: 'eval', url: 'http://eval.runner', fetch }, body))
    if (ev.type === 'done') return ev.usage;
  throw new Error('runner stream ended without a done event');
}

/** The training seed the model card names ("seed N"), when there is one. */
function trainingSeed(modelDir: string): number | null {
  const card = join(modelDir, 'README.md');
  if (!existsSync(card)) return null;
  const m = /\bseed (\d+)/.exec(readFileSync(card, 'utf8'));
  return m ? Number(m[1]) : null;
}

export const command: Command = {
  summary:
    'Exact-match accuracy on held-out retrieval episodes by context length, for each reuse mode, squeezed budget and sparse-prefill pattern.',
  usage: [
    'kvrag eval [--suite passkey,kv,twohop,field,setting,table|all] [--filler lexicon|prose] [--context 512,2048,4096]',
    '           [--n 10] [--seed 314159]',
    '           [--modes full,prefix,independent,blend,link] [--budgets 1,1/3,1/8,1/16|none] [--squeezed-mode independent]',
    '           [--patterns a-shape,vertical-slash,block-sparse,flexprefill|none] [--blend-ratio R] [--link-tokens K]',
    '           [--artifact-dtype f16,int8,int4] (each artifact variant once per chunk KV artifact dtype)',
    '           [--model DIR] [--backend auto|native|wasm|reference] [--weights f32|f16|q8_0|q4_0] [--threads N]',
    "           [--kv-cache f32|f16|int8] (the native backend's KV cache; default f32)",
    '           [--max-minutes M] [--json] [--out DIR]',
  ].join('\n'),
  async run(args) {
    const { values } = parseOptions(args, {
      suite: { type: 'string', default: DEFAULTS.suite },
      filler: { type: 'string', default: 'lexicon' },
      context: { type: 'string', default: DEFAULTS.context },
      n: { type: 'string' },
      seed: { type: 'string' },
      modes: { type: 'string', default: REUSE_MODES.join(',') },
      budgets: { type: 'string', default: DEFAULTS.budgets },
      'squeezed-mode': { type: 'string', default: 'independent' },
      patterns: { type: 'string', default: DEFAULTS.patterns },
      'blend-ratio': { type: 'string' },
      'link-tokens': { type: 'string' },
      'artifact-dtype': { type: 'string' },
      model: { type: 'string' },
      backend: { type: 'string', default: 'auto' },
      weights: { type: 'string' },
      'kv-cache': { type: 'string' },
      threads: { type: 'string' },
      json: { type: 'boolean', default: false },
      out: { type: 'string' },
      'max-minutes': { type: 'string' },
    });
    const suites: FactType[] =
      values.suite === 'all' ? [...FACT_TYPES] : oneOf('suite', list(values.suite!), FACT_TYPES);
    const [filler] = oneOf<Filler>('filler', [values.filler!], FILLERS);
    const contexts = list(values.context!).map((c) => numberOption('context', c, 0));
    for (const c of contexts)
      if (!Number.isInteger(c) || c < 64 || c > 131072)
        throw new UsageError(`--context: ${c} is not a whole number of tokens in 64..131072`);
    const n = numberOption('n', values.n, DEFAULTS.n);
    if (!Number.isInteger(n) || n < 1) throw new UsageError('--n must be a positive integer');
    const seed = numberOption('seed', values.seed, EVAL_SEED);
    if (!Number.isInteger(seed) || seed < 0) throw new UsageError('--seed must be a non-negative integer');
    const modes = oneOf<ReuseMode>('modes', list(values.modes!), REUSE_MODES);
    const budgets = values.budgets === 'none' ? [] : list(values.budgets!).map(parseBudget);
    const patterns =
      values.patterns === 'none'
        ? []
        : oneOf<SparsePattern>('patterns', list(values.patterns!), SPARSE_PATTERNS);
    const artifactDTypes =
      values['artifact-dtype'] === undefined
        ? undefined
        : oneOf<KVDType>('artifact-dtype', list(values['artifact-dtype']), KV_DTYPES);
    const [squeezedMode] = oneOf<ReuseMode>('squeezed-mode', [values['squeezed-mode']!], REUSE_MODES);
    const cpu = BACKEND_CHOICES.filter((b) => b !== 'webgpu');
    const [backend] = oneOf('backend', [values.backend!], cpu);
    const weightDType =
      values.weights === undefined ? undefined : oneOf('weights', [values.weights], WEIGHT_DTYPES)[0];
    const threads = values.threads === undefined ? undefined : numberOption('threads', values.threads, 0);
    const kvCacheDType =
      values['kv-cache'] === undefined
        ? undefined
        : oneOf('kv-cache', [values['kv-cache']], KV_CACHE_DTYPES)[0];
    if (kvCacheDType && kvCacheDType !== 'f32' && backend !== 'native')
      throw new UsageError(
        `--kv-cache ${kvCacheDType}: only the native backend (--backend native) keeps one`,
      );
    if (kvCacheDType === 'int8' && budgets.length > 0)
      throw new UsageError(
        '--kv-cache int8: squeezed attention reads f16/f32 caches; give --budgets none to compare int8 caches',
      );
    // the bundled model by its repository path (results.md names it), when run from inside the repository
    const rel = relative(process.cwd(), BUNDLED_MODEL_DIR);
    const modelDir = values.model ?? (rel.startsWith('..') || isAbsolute(rel) ? BUNDLED_MODEL_DIR : rel);
    if (!existsSync(join(modelDir, 'config.json')))
      throw new UsageError(`--model: ${modelDir} is not a model directory`);
    const trained = trainingSeed(modelDir);
    if (trained === seed)
      throw new UsageError(
        `--seed ${seed} is the seed ${modelDir} was trained with; held-out episodes need another`,
      );

    // --max-minutes or Ctrl-C: finish the running episode, then report what ran (a second Ctrl-C exits)
    const stop = new AbortController();
    const maxMinutes =
      values['max-minutes'] === undefined ? undefined : numberOption('max-minutes', values['max-minutes'], 0);
    if (maxMinutes !== undefined && !(maxMinutes > 0)) throw new UsageError('--max-minutes must be positive');
    const timer =
      maxMinutes === undefined
        ? null
        : setTimeout(() => stop.abort(`--max-minutes ${maxMinutes} reached`), maxMinutes * 60_000);
    const onSigint = () => {
      process.stderr.write('eval: stopping after the running episode (Ctrl-C again to exit now)\n');
      stop.abort('interrupted');
      process.once('SIGINT', () => process.exit(130));
    };
    process.once('SIGINT', onSigint);
    const tmp = mkdtempSync(join(tmpdir(), 'kvrag-eval-'));
    const result = await runEval({
      blobs: new FsBlobStore(join(tmp, 'objects')),
      generate,
      signal: stop.signal,
      modelDir,
      backend,
      threads,
      weightDType,
      kvCacheDType,
      seed,
      suites,
      filler,
      contexts,
      n,
      modes,
      budgets,
      squeezedMode,
      patterns,
      artifactDTypes,
      blendRatio:
        values['blend-ratio'] === undefined
          ? undefined
          : numberOption('blend-ratio', values['blend-ratio'], 0),
      linkTokens:
        values['link-tokens'] === undefined
          ? undefined
          : numberOption('link-tokens', values['link-tokens'], 0),
      progress: (line) => process.stderr.write(`${line}\n`),
    }).finally(() => {
      if (timer) clearTimeout(timer);
      process.off('SIGINT', onSigint);
      rmSync(tmp, { recursive: true, force: true });
    });
    if (values.out) {
      mkdirSync(values.out, { recursive: true });
      const cmd = `npm run kvrag -- eval ${args.filter((a) => a !== '--json').join(' ')}`.trim();
      writeFileSync(join(values.out, 'results.md'), resultsMarkdown(result, cmd, 'results.svg'));
      writeFileSync(join(values.out, 'results.svg'), resultsSvg(result));
      writeFileSync(join(values.out, 'results.json'), `${JSON.stringify(result, null, 1)}\n`);
      process.stderr.write(`eval: wrote ${join(values.out, 'results.md')}, results.svg and results.json\n`);
    }
    if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
    else process.stdout.write(`${evalTable(result)}\n`);
    return 0;
  },
};
