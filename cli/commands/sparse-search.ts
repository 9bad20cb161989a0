// `kvrag sparse-search --model DIR [--context N] [--target R] [--break-even N,N…] [--threads T] [--dry-run]`:
// the offline per-head sparse-prefill pattern search (DESIGN.md §4.3) on the wasm backend; writes
// sparse.json beside the model (per layer and kv head: pattern + parameters, and the measured
// break-even length below which `auto` stays dense).
import { numberOption, parseOptions, UsageError } from '../args.ts';
import type { Command } from '../command.ts';

export const command: Command = {
  summary: 'Search per-head sparse prefill patterns for a model and write sparse.json beside it.',
  usage:
    'kvrag sparse-search --model DIR [--context N] [--target R] [--break-even N,N...] [--threads T] [--dry-run]',
  async run(args) {
    const { values } = parseOptions(args, {
      model: { type: 'string' },
      context: { type: 'string' },
      target: { type: 'string' },
      'break-even': { type: 'string' },
      threads: { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
    });
    if (!values.model) throw new UsageError('--model DIR is required');
    const context = numberOption('context', values.context, 8192);
    const target = numberOption('target', values.target, 0.95);
    if (!Number.isInteger(context) || context < 512)
      throw new UsageError('--context must be an integer ≥ 512');
    if (!(target > 0 && target <= 1)) throw new UsageError('--target must be in (0, 1]');
    const lengths = (values['break-even'] ?? '2048,4096,8192,16384')
      .split(',')
      .map((s) => numberOption('break-even', s, 0));
    if (lengths.some((n) => !Number.isInteger(n) || n < 256))
      throw new UsageError('--break-even lengths ≥ 256');
    const threads = values.threads ? numberOption('threads', values.threads, 1) : undefined;
    const { createWasmBackend } = await import('../../gpu-runner/engine/backends/wasm/index.ts');
    const { loadEngine } = await import('../../gpu-runner/engine/engine.ts');
    const { searchPatterns } = await import('../../gpu-runner/engine/attention/sparse/search.ts');
    const { writeSparseConfig } = await import('../../gpu-runner/engine/attention/sparse/config.ts');
    const backend = await createWasmBackend(threads ? { threads } : {});
    const engine = await loadEngine(values.model, { backend });
    try {
      const config = await searchPatterns(engine, {
        context,
        targetRecall: target,
        breakEvenLengths: lengths,
        log: (line) => process.stderr.write(`${line}\n`),
      });
      if (values['dry-run']) process.stdout.write(`${JSON.stringify(config, null, 1)}\n`);
      else
        process.stdout.write(
          `wrote ${writeSparseConfig(values.model, config)} (break-even ${config.breakEven})\n`,
        );
      return 0;
    } finally {
      engine.dispose();
    }
  },
};
