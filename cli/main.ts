// Entry of the `kvrag` CLI: dispatches to one file per command under ./commands.
import { ConfigError } from '../src/config.ts';
import { UsageError } from './args.ts';
import type { Command } from './command.ts';

/** Loaded lazily so `kvrag migrate` does not pay for the engine and vice versa. */
const COMMANDS: Record<string, () => Promise<{ command: Command }>> = {
  serve: () => import('./commands/serve.ts'),
  migrate: () => import('./commands/migrate.ts'),
  bench: () => import('./commands/bench.ts'),
  generate: () => import('./commands/generate.ts'),
  chunk: () => import('./commands/chunk.ts'),
  workers: () => import('./commands/workers.ts'),
  ingest: () => import('./commands/ingest.ts'),
  relay: () => import('./commands/relay.ts'),
  runner: () => import('./commands/runner.ts'),
  query: () => import('./commands/query.ts'),
  eval: () => import('./commands/eval.ts'),
  'sparse-search': () => import('./commands/sparse-search.ts'),
};

function help(): string {
  return [
    'usage: kvrag <command> [options]',
    '',
    'commands:',
    ...Object.keys(COMMANDS).map((n) => `  ${n}`),
    '',
    'Run `kvrag <command> --help` for the options of one command. Settings come from KVRAG_* variables (README).',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(help());
    return name ? 0 : 1;
  }
  const load = COMMANDS[name];
  if (!load) {
    console.error(`kvrag: unknown command "${name}"\n\n${help()}`);
    return 2;
  }
  const { command } = await load();
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(`${command.summary}\n\nusage: ${command.usage}`);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    if (err instanceof ConfigError || err instanceof UsageError) {
      console.error(`kvrag ${name}: ${err.message}`);
      return 2;
    }
    throw err;
  }
}
