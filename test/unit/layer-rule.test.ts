// The layer rule of `npm run deps` (.dependency-cruiser.ts, DESIGN.md §2): run exactly as package.json runs
// it, it fails on a tree built with one wrong import per rule — naming each of them, and nothing the layers
// allow — and passes on the repository's own tree.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const run = promisify(execFile);

/** `npm run deps` as package.json spells it, the config made absolute so it can run in another tree. */
function depsCommand(): { bin: string; args: string[] } {
  const script = (
    JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
  ).scripts.deps;
  const [cmd, ...args] = script.split(/\s+/);
  expect(cmd).toBe('depcruise');
  const config = args.indexOf('--config');
  expect(config).toBeGreaterThanOrEqual(0);
  args[config + 1] = join(ROOT, args[config + 1]);
  return { bin: join(ROOT, 'node_modules/.bin/depcruise'), args };
}

interface Violation {
  rule: string;
  from: string;
  to: string;
}

/** Runs the check in `cwd`; its violations as "rule: from → to" lines, sorted. */
async function violations(cwd: string): Promise<string[]> {
  const { bin, args } = depsCommand();
  const { stdout } = await run(bin, [...args, '--output-type', 'json'], {
    cwd,
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, PATH: `${join(ROOT, 'node_modules/.bin')}:${process.env.PATH}` },
  });
  const result = JSON.parse(stdout) as {
    summary: { violations: { from: string; to: string; rule: { name: string } }[] };
  };
  return result.summary.violations
    .map((v): Violation => ({ rule: v.rule.name, from: v.from, to: v.to }))
    .map((v) => `${v.rule}: ${v.from} → ${v.to}`)
    .sort();
}

/** A tree with the project's layout. Every import here is allowed… */
const ALLOWED: Record<string, string> = {
  'contracts/log.ts': 'export type Log = (msg: string) => void;\n',
  'contracts/errors.ts':
    "import { z } from 'zod';\nimport type { Log } from './log.ts';\nexport const code = z.string();\nexport type L = Log;\n",
  'src/domain.ts':
    "import type { Log } from '../contracts/log.ts';\nexport const domain = (l: Log) => l('x');\n",
  'src/routes/thing.ts': "import { domain } from '../domain.ts';\nexport const route = domain;\n",
  'src/app.ts': "import { route } from './routes/thing.ts';\nexport const app = route;\n",
  // the browser console takes the API's shapes as types, the routes' included
  'src/console/api.ts': [
    "import type { Log } from '../../contracts/log.ts';",
    "import type { route } from '../routes/thing.ts';",
    "import { helper } from './helper.ts';",
    'export type Shapes = [Log, typeof route, typeof helper];',
    '',
  ].join('\n'),
  'src/console/helper.ts': 'export const helper = 1;\n',
  'gpu-runner/engine/tokenizer.ts':
    "import { code } from '../../contracts/errors.ts';\nexport const tok = code;\n",
  'gpu-runner/server/app.ts': "import { tok } from '../engine/tokenizer.ts';\nexport const server = tok;\n",
  'gpu-runner/eval/run.ts': "import { server } from '../server/app.ts';\nexport const evalRun = server;\n",
  'workers/ingest.ts': [
    "import { code } from '../contracts/errors.ts';",
    "import { tok } from '../gpu-runner/engine/tokenizer.ts';",
    "import { domain } from '../src/domain.ts';",
    'export const ingest = [code, tok, domain];',
    '',
  ].join('\n'),
  'cli/main.ts': [
    "import { evalRun } from '../gpu-runner/eval/run.ts';",
    "import { app } from '../src/app.ts';",
    "import { ingest } from '../workers/ingest.ts';",
    'export const main = [evalRun, app, ingest];',
    '',
  ].join('\n'),
  'bin/kvrag.js': "export const { main } = await import('../cli/main.ts');\n",
};

/** …and each of these files makes exactly the violations listed with it. */
const WRONG: { file: string; source: string; expected: string[] }[] = [
  {
    file: 'contracts/bad-project.ts',
    source: "import { domain } from '../src/domain.ts';\nexport const x = domain;\n",
    expected: ['contracts-imports-nothing: contracts/bad-project.ts → src/domain.ts'],
  },
  {
    file: 'contracts/bad-node.ts',
    source: "import { readFileSync } from 'node:fs';\nexport const x = readFileSync;\n",
    // a Node built-in resolves to its bare name
    expected: ['contracts-imports-nothing: contracts/bad-node.ts → fs'],
  },
  {
    file: 'src/bad-engine-type.ts',
    source: "import type { tok } from '../gpu-runner/engine/tokenizer.ts';\nexport type X = typeof tok;\n",
    expected: ['src-imports-only-contracts: src/bad-engine-type.ts → gpu-runner/engine/tokenizer.ts'],
  },
  {
    file: 'src/bad-dynamic.ts',
    source: "export const load = () => import('../workers/ingest.ts');\n",
    expected: ['src-imports-only-contracts: src/bad-dynamic.ts → workers/ingest.ts'],
  },
  {
    file: 'src/bad-route-user.ts',
    source: "import { route } from './routes/thing.ts';\nexport const x = route;\n",
    expected: ['domain-not-routes: src/bad-route-user.ts → src/routes/thing.ts'],
  },
  {
    file: 'src/console/bad-runtime.ts',
    source: "import { domain } from '../domain.ts';\nexport const x = domain;\n",
    expected: ['console-takes-types-only: src/console/bad-runtime.ts → src/domain.ts'],
  },
  {
    file: 'src/bad-console-user.ts',
    source: "import { helper } from './console/helper.ts';\nexport const x = helper;\n",
    expected: ['nothing-imports-console: src/bad-console-user.ts → src/console/helper.ts'],
  },
  {
    file: 'gpu-runner/engine/bad-src.ts',
    source: "import { domain } from '../../src/domain.ts';\nexport const x = domain;\n",
    expected: ['gpu-runner-imports-only-contracts: gpu-runner/engine/bad-src.ts → src/domain.ts'],
  },
  {
    file: 'gpu-runner/engine/bad-server.ts',
    source: "import { server } from '../server/app.ts';\nexport const x = server;\n",
    expected: ['engine-below-runner: gpu-runner/engine/bad-server.ts → gpu-runner/server/app.ts'],
  },
  {
    file: 'gpu-runner/server/bad-eval.ts',
    source: "import { evalRun } from '../eval/run.ts';\nexport const x = evalRun;\n",
    expected: ['server-below-eval: gpu-runner/server/bad-eval.ts → gpu-runner/eval/run.ts'],
  },
  {
    file: 'workers/bad-server.ts',
    source: "import { server } from '../gpu-runner/server/app.ts';\nexport const x = server;\n",
    expected: ['workers-import-domain-engine-contracts: workers/bad-server.ts → gpu-runner/server/app.ts'],
  },
  {
    file: 'workers/bad-routes.ts',
    source: "import { route } from '../src/routes/thing.ts';\nexport const x = route;\n",
    expected: ['workers-not-routes: workers/bad-routes.ts → src/routes/thing.ts'],
  },
  {
    file: 'workers/bad-cli.ts',
    source: "import { main } from '../cli/main.ts';\nexport const x = main;\n",
    expected: [
      'only-entries-import-cli: workers/bad-cli.ts → cli/main.ts',
      'workers-import-domain-engine-contracts: workers/bad-cli.ts → cli/main.ts',
    ],
  },
  {
    file: 'src/bad-missing.ts',
    source: "import { gone } from './gone.ts';\nexport const x = gone;\n",
    expected: ['no-unresolvable: src/bad-missing.ts → ./gone.ts'],
  },
];

describe('layer rule (npm run deps)', () => {
  let tree: string;

  beforeAll(() => {
    tree = mkdtempSync(join(tmpdir(), 'kvrag-layers-'));
    const write = (file: string, text: string) => {
      mkdirSync(dirname(join(tree, file)), { recursive: true });
      writeFileSync(join(tree, file), text);
    };
    for (const [file, text] of Object.entries(ALLOWED)) write(file, text);
    for (const w of WRONG) write(w.file, w.source);
    write(
      'tsconfig.json',
      JSON.stringify({
        compilerOptions: {
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          allowImportingTsExtensions: true,
        },
      }),
    );
    // zod resolves from the tree as it does from the repository
    symlinkSync(join(ROOT, 'node_modules'), join(tree, 'node_modules'), 'dir');
  });
  afterAll(() => rmSync(tree, { recursive: true, force: true }));

  it('names every wrong import, by the rule it breaks, and nothing the layers allow', async () => {
    const expected = WRONG.flatMap((w) => w.expected).sort();
    expect(await violations(tree)).toEqual(expected);
  }, 120_000);

  it('finds nothing wrong in the repository', async () => {
    expect(await violations(ROOT)).toEqual([]);
  }, 120_000);
});
