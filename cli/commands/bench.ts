// `kvrag bench <name> [options]`: runs bench/<name>.ts. Each benchmark prints a table, or one JSON
// object with --json, and exports `run(args: string[]): Promise<number>`.
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../args.ts';
import type { Command } from '../command.ts';

const benchDir = fileURLToPath(new URL('../../bench/', import.meta.url));

function available(): string[] {
  return readdirSync(benchDir)
    .filter((f) => f.endsWith('.ts') && !f.startsWith('_'))
    .map((f) => f.slice(0, -3))
    .sort();
}

export const command: Command = {
  summary: 'Run a benchmark from bench/ (prints a table; --json prints one JSON object).',
  usage: 'kvrag bench <name> [--json] [benchmark options]',
  async run(args) {
    const [name, ...rest] = args;
    const names = available();
    if (!name || !names.includes(name)) {
      throw new UsageError(
        `${name ? `unknown benchmark "${name}"` : 'missing benchmark name'}; available: ${names.join(', ')}`,
      );
    }
    const mod = (await import(`${benchDir}${name}.ts`)) as { run(args: string[]): Promise<number> };
    return mod.run(rest);
  },
};
