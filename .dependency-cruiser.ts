// The layer rule (DESIGN.md §2), checked by `npm run deps` (part of `npm run check`, so of `npm test`) over
// contracts/ src/ gpu-runner/ workers/ cli/ bin/. Imports point one way:
//
//   cli/ (and bin/, bench/, test/)  may import everything; nothing below imports cli/
//   workers/                        src/ (never src/routes/ or src/app.ts), gpu-runner/engine/, contracts/
//   src/                            contracts/ only; inside src/ only app.ts imports routes/
//   src/console/                    the browser console, a client of the HTTP API: the API's shapes as
//                                   types only (routes' response schemas included); nothing imports it
//   gpu-runner/                     contracts/ only; inside it engine/ ← server/ ← eval/ ← tools/
//   contracts/                      nothing of the project (zod only, and no Node built-ins: the Workers
//                                   build reaches it)
//
// Type-only imports count (tsPreCompilationDeps): a type is a dependency too. There are no exceptions;
// test/unit/layer-rule.test.ts builds a wrong import for every rule and shows the check fails on it.
import type { IConfiguration, IForbiddenRuleType } from 'dependency-cruiser';

/** The project's own top-level folders (anything else resolved is a package or a Node built-in). */
const PROJECT = '^(contracts|src|gpu-runner|workers|cli|bin|bench|test)/';

export const forbidden: IForbiddenRuleType[] = [
  {
    name: 'contracts-imports-nothing',
    comment: 'contracts/ is the floor: it imports only itself and zod (no project file, no Node built-in)',
    severity: 'error',
    from: { path: '^contracts/' },
    to: { pathNot: '^contracts/|(^|/)node_modules/zod/' },
  },
  {
    name: 'src-imports-only-contracts',
    comment:
      'the edge API never pulls in the engine, the workers or the cli; what it needs crosses contracts/',
    severity: 'error',
    from: { path: '^src/' },
    to: { path: PROJECT, pathNot: '^(src|contracts)/' },
  },
  {
    name: 'gpu-runner-imports-only-contracts',
    comment: 'the engine and the runner never see the API, Postgres or the queue code',
    severity: 'error',
    from: { path: '^gpu-runner/' },
    to: { path: PROJECT, pathNot: '^(gpu-runner|contracts)/' },
  },
  {
    name: 'engine-below-runner',
    comment: 'gpu-runner/engine/ is below the runner service, the eval harness and the tools',
    severity: 'error',
    from: { path: '^gpu-runner/engine/' },
    to: { path: '^gpu-runner/(server|eval|tools)/' },
  },
  {
    name: 'server-below-eval',
    comment: 'the runner service does not import the eval harness or the tools built on it',
    severity: 'error',
    from: { path: '^gpu-runner/server/' },
    to: { path: '^gpu-runner/(eval|tools)/' },
  },
  {
    name: 'workers-import-domain-engine-contracts',
    comment: 'workers/ build on src/ (the domain), gpu-runner/engine/ (the tokenizer) and contracts/',
    severity: 'error',
    from: { path: '^workers/' },
    to: { path: PROJECT, pathNot: '^(workers|src|gpu-runner/engine|contracts)/' },
  },
  {
    name: 'workers-not-routes',
    comment: 'workers/ never import the HTTP layer of src/',
    severity: 'error',
    from: { path: '^workers/' },
    to: { path: '^src/(routes/|app\\.ts$)' },
  },
  {
    name: 'domain-not-routes',
    comment: 'inside src/, routes are the top: only app.ts wires them; use cases never import a route',
    severity: 'error',
    from: { path: '^src/', pathNot: '^src/(routes/|app\\.ts$|console/)' },
    to: { path: '^src/routes/' },
  },
  {
    name: 'console-takes-types-only',
    comment:
      'the console runs in the browser and talks HTTP: it takes the API shapes as types, never its code',
    severity: 'error',
    from: { path: '^src/console/' },
    to: { path: PROJECT, pathNot: '^src/console/', dependencyTypesNot: ['type-only'] },
  },
  {
    name: 'nothing-imports-console',
    comment: 'the console is built by Vite into static files; no server code imports its sources',
    severity: 'error',
    from: { pathNot: '^(src/console|test)/' },
    to: { path: '^src/console/' },
  },
  {
    name: 'only-entries-import-cli',
    comment: 'cli/ wires processes together; only bin/, bench/ and tests import it',
    severity: 'error',
    from: { pathNot: '^(cli|bin|bench|test)/' },
    to: { path: '^cli/' },
  },
  {
    name: 'no-unresolvable',
    comment: 'an import that does not resolve cannot be checked',
    severity: 'error',
    from: {},
    to: { couldNotResolve: true },
  },
];

const config: IConfiguration = {
  forbidden,
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)(node_modules|dist)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    // resolve as Node and TypeScript do: package.json exports (hono/streaming), types-only packages
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      mainFields: ['module', 'main', 'types', 'typings'],
    },
  },
};
export default config;
