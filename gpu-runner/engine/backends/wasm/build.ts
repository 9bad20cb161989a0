// Builds the kernel module (kernels/*.as, AssemblyScript) to WebAssembly with `asc` from npm.
// Two variants: `fma` (relaxed SIMD: f32x4.relaxed_madd, one fused multiply-add on CPUs with FMA) and
// `simd` (plain SIMD128: mul + add). Output goes to ./dist (gitignored), keyed by a hash of the sources,
// the compiler version and the options, so a stale build is rebuilt on first use.
// CLI: `node gpu-runner/engine/backends/wasm/build.ts` builds both variants.
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type KernelVariant = 'fma' | 'simd';

const here = fileURLToPath(new URL('.', import.meta.url));
const kernelDir = join(here, 'kernels');
export const distDir = join(here, 'dist');

const FMA_SOURCE: Record<KernelVariant, string> = {
  fma: '@inline export function fma(a: v128, b: v128, c: v128): v128 {\n  return f32x4.relaxed_madd(a, b, c);\n}\n',
  simd: '@inline export function fma(a: v128, b: v128, c: v128): v128 {\n  return f32x4.add(f32x4.mul(a, b), c);\n}\n',
};

// int8 dot products for kernels/quant.as, i32x4 partial sums of 4-element groups (only the lanes' total is
// used). fma: relaxed SIMD's i8×i7 dot (one pmaddubsw-based sequence on x86); the i7 operand must be in
// [0, 127], so Q8_0 multiplies |w| by x with w's sign moved onto x (w = −128, which ggml's quantizer never
// writes, is exact only where the runtime treats the 0x80 byte as unsigned, as x86 does). simd: both
// operands widened to i16 and multiplied-added exactly (i32x4.dot_i16x8_s).
const IDOT_SOURCE: Record<KernelVariant, string> = {
  fma: `@inline export function dotS8(acc: v128, w: v128, x: v128): v128 {
  const neg = i8x16.lt_s(w, i8x16.splat(0));
  return i32x4.relaxed_dot_i8x16_i7x16_add_s(i8x16.sub(v128.xor(x, neg), neg), i8x16.abs(w), acc);
}
@inline export function dotU4(acc: v128, w: v128, x: v128): v128 {
  return i32x4.relaxed_dot_i8x16_i7x16_add_s(x, w, acc);
}
`,
  simd: `@inline export function dotS8(acc: v128, w: v128, x: v128): v128 {
  const lo = i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(w), i16x8.extend_low_i8x16_s(x));
  const hi = i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(w), i16x8.extend_high_i8x16_s(x));
  return i32x4.add(acc, i32x4.add(lo, hi));
}
@inline export function dotU4(acc: v128, w: v128, x: v128): v128 {
  return dotS8(acc, w, x);
}
`,
};

// 16 pages initial; maximum 4 GiB (wasm32): a shared memory must declare one, it only reserves address space.
// The module's own data (math tables of sinf/cosf/logf) sits below 64 KiB; the host allocates above it.
const FLAGS = [
  '-O3',
  '--runtime',
  'stub',
  '--noAssert',
  '--importMemory',
  '--sharedMemory',
  '--initialMemory',
  '16',
  '--maximumMemory',
  '65536',
  '--noExportMemory',
];

function ascVersion(): string {
  const require = createRequire(import.meta.url);
  const pkg = require('assemblyscript/package.json') as { version: string };
  return pkg.version;
}

/** Sources keyed by the module names asc resolves (`./simd` → `simd.ts`). */
function sources(variant: KernelVariant): Record<string, string> {
  const out: Record<string, string> = { 'fma.ts': FMA_SOURCE[variant], 'idot.ts': IDOT_SOURCE[variant] };
  for (const f of readdirSync(kernelDir).sort()) {
    if (f.endsWith('.as')) out[`${f.slice(0, -3)}.ts`] = readFileSync(join(kernelDir, f), 'utf8');
  }
  return out;
}

function enabled(variant: KernelVariant): string[] {
  return variant === 'fma' ? ['simd', 'threads', 'relaxed-simd'] : ['simd', 'threads'];
}

/** Hash of everything that determines the binary. */
export function sourceHash(variant: KernelVariant): string {
  const h = createHash('sha256');
  h.update(`asc ${ascVersion()}\n${FLAGS.join(' ')}\n${enabled(variant).join(',')}\n`);
  for (const [name, text] of Object.entries(sources(variant))) h.update(`${name}\n${text}\n`);
  return h.digest('hex');
}

export function wasmPath(variant: KernelVariant): string {
  return join(distDir, `kernels-${variant}.wasm`);
}

/** Compiles one variant (entry index.ts; only its exports are exported); throws with diagnostics. */
export async function compileKernels(variant: KernelVariant): Promise<Uint8Array<ArrayBuffer>> {
  const asc = await import('assemblyscript/asc');
  const src = sources(variant);
  let binary: Uint8Array | null = null;
  const result = await asc.main(
    ['index.ts', '-o', 'kernels.wasm', ...FLAGS, '--enable', enabled(variant).join(',')],
    {
      readFile: (name) => src[name] ?? null,
      writeFile: (name, contents) => {
        if (name === 'kernels.wasm' && typeof contents !== 'string') binary = contents;
      },
      listFiles: () => [],
    },
  );
  if (result.error || !binary) {
    throw new Error(
      `asc failed for kernels (${variant}): ${result.error?.message}\n${result.stderr.toString()}`,
    );
  }
  return new Uint8Array(binary as Uint8Array);
}

/** Returns the built binary for `variant`, building it first when missing or stale. */
export async function ensureKernels(variant: KernelVariant): Promise<Uint8Array<ArrayBuffer>> {
  const hash = sourceHash(variant);
  const path = wasmPath(variant);
  const stamp = `${path}.sha256`;
  try {
    if (readFileSync(stamp, 'utf8').trim() === hash) return new Uint8Array(readFileSync(path));
  } catch {
    // not built yet
  }
  const binary = await compileKernels(variant);
  try {
    mkdirSync(distDir, { recursive: true });
    // write-then-rename so concurrent builders (parallel test workers) never see a partial file
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, binary);
    renameSync(tmp, path);
    writeFileSync(`${stamp}.${process.pid}.tmp`, hash);
    renameSync(`${stamp}.${process.pid}.tmp`, stamp);
  } catch {
    // read-only install: use the freshly compiled binary without caching it
  }
  return binary;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  for (const v of ['fma', 'simd'] as const) {
    const t0 = performance.now();
    const bin = await ensureKernels(v);
    console.log(`${wasmPath(v)}: ${bin.length} bytes in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
}
