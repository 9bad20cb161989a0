// `kvrag generate --model DIR --prompt TEXT`: loads a model directory and streams a completion to
// stdout (the prompt goes through the model's chat template as a user message unless --raw).
import { ModelLoadError } from '../../gpu-runner/engine/errors.ts';
import { numberOption, parseOptions, UsageError } from '../args.ts';
import type { Command } from '../command.ts';

export const command: Command = {
  summary:
    'Generate text from a Hugging Face model directory on a CPU backend (wasm where available), streaming to stdout.',
  usage:
    'kvrag generate --model DIR --prompt TEXT [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--stop STR]... [--raw] [--system TEXT] [--backend auto|reference|wasm]',
  async run(args) {
    const { values } = parseOptions(args, {
      model: { type: 'string' },
      prompt: { type: 'string' },
      system: { type: 'string' },
      'max-tokens': { type: 'string' },
      temperature: { type: 'string' },
      'top-k': { type: 'string' },
      'top-p': { type: 'string' },
      seed: { type: 'string' },
      stop: { type: 'string', multiple: true },
      raw: { type: 'boolean', default: false },
      backend: { type: 'string', default: 'auto' },
    });
    const backend = values.backend as 'auto' | 'reference' | 'wasm';
    if (!['auto', 'reference', 'wasm'].includes(backend))
      throw new UsageError('--backend must be auto, reference or wasm');
    if (!values.model) throw new UsageError('--model DIR is required');
    if (values.prompt === undefined) throw new UsageError('--prompt TEXT is required');
    const maxTokens = numberOption('max-tokens', values['max-tokens'], 128);
    if (!Number.isInteger(maxTokens) || maxTokens < 1)
      throw new UsageError('--max-tokens must be a positive integer');
    const seed = values.seed === undefined ? undefined : numberOption('seed', values.seed, 0);
    const sampling = {
      temperature: numberOption('temperature', values.temperature, 0),
      topK: numberOption('top-k', values['top-k'], 0),
      topP: numberOption('top-p', values['top-p'], 1),
      seed,
    };
    const { loadEngine } = await import('../../gpu-runner/engine/engine.ts');
    const { samplingSchema } = await import('../../contracts/runner-api.ts');
    const parsed = samplingSchema.safeParse(sampling);
    if (!parsed.success) throw new UsageError(`invalid sampling option: ${parsed.error.issues[0].message}`);

    let engine: Awaited<ReturnType<typeof loadEngine>>;
    try {
      engine = await loadEngine(values.model, { backend });
    } catch (err) {
      if (err instanceof ModelLoadError) {
        console.error(`kvrag generate: cannot load model: ${err.message}`);
        return 1;
      }
      throw err;
    }
    try {
      const messages = [
        ...(values.system ? [{ role: 'system', content: values.system }] : []),
        { role: 'user', content: values.prompt },
      ];
      // --raw: the operator's own prompt, special-token strings included; otherwise the prompt is text
      const prompt = values.raw
        ? engine.tokenizer.encodeWithSpecials(values.prompt)
        : engine.chatTemplate
          ? engine.encodeChat(messages)
          : engine.encode(values.prompt);
      if (prompt.length >= engine.maxContext) {
        console.error(
          `kvrag generate: the prompt (${prompt.length} tokens) fills the model context (${engine.maxContext})`,
        );
        return 1;
      }
      const ac = new AbortController();
      const onSigint = () => ac.abort();
      process.once('SIGINT', onSigint);
      const [r] = await engine.generate([
        {
          prompt,
          maxTokens: Math.min(maxTokens, engine.maxContext - prompt.length),
          sampling: parsed.data,
          stopStrings: values.stop ?? [],
          onText: (d) => process.stdout.write(d),
          signal: ac.signal,
        },
      ]);
      process.off('SIGINT', onSigint);
      process.stdout.write('\n');
      const decodeS = (r.totalMs - r.ttftMs) / 1000;
      console.error(
        `[${r.finishReason}] prompt ${r.promptTokens} tokens, generated ${r.tokens.length}; ` +
          `ttft ${r.ttftMs.toFixed(0)} ms, decode ${r.tokens.length > 1 ? ((r.tokens.length - 1) / decodeS).toFixed(1) : '—'} tok/s`,
      );
      return 0;
    } finally {
      engine.dispose();
    }
  },
};
