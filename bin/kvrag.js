#!/usr/bin/env node
// The kvrag CLI. Sources are TypeScript run through Node's type stripping (Node >= 22.18 / 24).
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
  console.error(
    `kvrag needs Node >= 22.18 (found ${process.versions.node}). Run it through npm (npm start, npm run kvrag -- ...) ` +
      'so the Node from the `node` devDependency is used, or put node_modules/.bin first on PATH.',
  );
  process.exit(1);
}
const { main } = await import('../cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
