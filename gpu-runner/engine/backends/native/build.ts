// Builds the native kernel addon (src/*.cc) with the machine's C++ compiler into
// build/kvrag_kernels.node, keyed like the wasm kernels by a sha256 of the sources, flags and compiler
// version (stamp beside it), so a stale build is rebuilt on first use. N-API headers come from the
// `node-api-headers` package (offline; no node-gyp download), else from the running Node's include dir.
// The ISA translation units are compiled once per level with their own -m flags and their inline/template
// copies made local (objcopy --localize-hidden), so code for one level never stands in for another's.
// `npm install` runs this (package.json postinstall: `node …/build.ts --install`), which never fails the
// install: it records why the addon could not be built in build/status.json and exits 0.
// CLI: `node gpu-runner/engine/backends/native/build.ts [--install]`.
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, availableParallelism, platform } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

const here = fileURLToPath(new URL('.', import.meta.url));
const srcDir = join(here, 'src');
export const buildDir = join(here, 'build');
export const addonPath = join(buildDir, 'kvrag_kernels.node');
const statusPath = join(buildDir, 'status.json');

const AVX2 = ['-mavx2', '-mfma', '-mf16c'];
const AVX512 = [...AVX2, '-mavx512f', '-mavx512bw', '-mavx512vl', '-mavx512dq'];
const COMMON = [
  '-O3',
  '-std=c++20',
  '-fPIC',
  '-fvisibility=hidden',
  '-fvisibility-inlines-hidden',
  '-pthread',
  '-Wall',
];

interface Unit {
  src: string;
  obj: string;
  flags: string[];
  /** ISA code: local copies of inline/template functions */
  isa: boolean;
}

const UNITS: Unit[] = [
  { src: 'f32.cc', obj: 'f32-avx2.o', flags: [...AVX2, '-DKV_LEVEL=256', '-DKV_NS=avx2'], isa: true },
  { src: 'f32.cc', obj: 'f32-avx512.o', flags: [...AVX512, '-DKV_LEVEL=512', '-DKV_NS=avx512'], isa: true },
  {
    src: 'attention.cc',
    obj: 'attention-avx2.o',
    flags: [...AVX2, '-DKV_LEVEL=256', '-DKV_NS=avx2'],
    isa: true,
  },
  {
    src: 'attention.cc',
    obj: 'attention-avx512.o',
    flags: [...AVX512, '-DKV_LEVEL=512', '-DKV_NS=avx512'],
    isa: true,
  },
  {
    src: 'elementwise.cc',
    obj: 'elementwise-avx2.o',
    flags: [...AVX2, '-DKV_LEVEL=256', '-DKV_NS=avx2'],
    isa: true,
  },
  {
    src: 'elementwise.cc',
    obj: 'elementwise-avx512.o',
    flags: [...AVX512, '-DKV_LEVEL=512', '-DKV_NS=avx512'],
    isa: true,
  },
  { src: 'quant.cc', obj: 'quant-avx2.o', flags: [...AVX2, '-DKV_VNNI=0', '-DKV_NS=avx2'], isa: true },
  {
    src: 'quant.cc',
    obj: 'quant-vnni.o',
    flags: [...AVX512, '-mavx512vnni', '-DKV_VNNI=1', '-DKV_NS=vnni'],
    isa: true,
  },
  { src: 'squeezed.cc', obj: 'squeezed-avx2.o', flags: [...AVX2, '-DKV_VNNI=0', '-DKV_NS=avx2'], isa: true },
  {
    src: 'squeezed.cc',
    obj: 'squeezed-vnni.o',
    flags: [...AVX512, '-mavx512vnni', '-DKV_VNNI=1', '-DKV_NS=vnni'],
    isa: true,
  },
  {
    src: 'squeezed-attend.cc',
    obj: 'squeezed-attend-avx2.o',
    flags: [...AVX2, '-DKV_LEVEL=256', '-DKV_NS=avx2'],
    isa: true,
  },
  {
    src: 'squeezed-attend.cc',
    obj: 'squeezed-attend-avx512.o',
    flags: [...AVX512, '-DKV_LEVEL=512', '-DKV_NS=avx512'],
    isa: true,
  },
  {
    src: 'kvunpack.cc',
    obj: 'kvunpack-avx2.o',
    flags: [...AVX2, '-DKV_LEVEL=256', '-DKV_NS=avx2'],
    isa: true,
  },
  {
    src: 'kvunpack.cc',
    obj: 'kvunpack-avx512.o',
    flags: [...AVX512, '-DKV_LEVEL=512', '-DKV_NS=avx512'],
    isa: true,
  },
  { src: 'kv-half.cc', obj: 'kv-half.o', flags: AVX2, isa: true },
  ...[
    'addon.cc',
    'attention-driver.cc',
    'cpu.cc',
    'pack.cc',
    'pool.cc',
    'squeezed-driver.cc',
    'kvunpack-driver.cc',
    'light-driver.cc',
  ].map((src) => ({
    src,
    obj: src.replace('.cc', '.o'),
    flags: [],
    isa: false,
  })),
];

export interface BuildStatus {
  ok: boolean;
  /** why the addon is not there (ok = false) */
  reason?: string;
  compiler?: string;
  hash?: string;
  seconds?: number;
}

/** The compiler: $CXX, else c++ / g++ / clang++ on PATH; null when none answers --version. */
export function findCompiler(): { cmd: string; version: string } | null {
  const candidates = [process.env.CXX, 'c++', 'g++', 'clang++'].filter((c): c is string => !!c);
  for (const cmd of candidates) {
    try {
      const version = execFileSync(cmd, ['--version'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      })
        .split('\n')[0]
        .trim();
      return { cmd, version };
    } catch {
      // not this one
    }
  }
  return null;
}

/** Directory holding node_api.h, or null. */
export function napiIncludeDir(): string | null {
  try {
    const require = createRequire(import.meta.url);
    const dir = join(dirname(require.resolve('node-api-headers/package.json')), 'include');
    if (existsSync(join(dir, 'node_api.h'))) return dir;
  } catch {
    // package missing: try the running Node's headers
  }
  const dir = join(dirname(process.execPath), '..', 'include', 'node');
  return existsSync(join(dir, 'node_api.h')) ? dir : null;
}

/** Why this machine cannot build the addon at all (platform, compiler, headers), or null. */
export function cannotBuild(): string | null {
  if (arch() !== 'x64') return `the native kernels are x86-64 only (this is ${arch()})`;
  if (platform() !== 'linux' && platform() !== 'darwin') return `no native build for ${platform()}`;
  if (!findCompiler()) return 'no C++ compiler found ($CXX, c++, g++ or clang++)';
  if (!napiIncludeDir()) return 'no N-API headers (node-api-headers package or Node include dir)';
  return null;
}

export function sourceHash(compilerVersion: string): string {
  const h = createHash('sha256');
  h.update(`${compilerVersion}\n${COMMON.join(' ')}\n`);
  for (const u of UNITS) h.update(`${u.src} ${u.obj} ${u.flags.join(' ')}\n`);
  for (const f of readdirSync(srcDir).sort()) h.update(`${f}\n${readFileSync(join(srcDir, f), 'utf8')}\n`);
  return h.digest('hex');
}

export function readStatus(): BuildStatus | null {
  try {
    return JSON.parse(readFileSync(statusPath, 'utf8')) as BuildStatus;
  } catch {
    return null;
  }
}

function writeStatus(s: BuildStatus): void {
  mkdirSync(buildDir, { recursive: true });
  const tmp = `${statusPath}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(s, null, 2)}\n`);
  renameSync(tmp, statusPath);
}

/** True when the built addon matches the current sources and compiler. */
export function isFresh(): boolean {
  const c = findCompiler();
  const s = readStatus();
  return !!c && !!s?.ok && s.hash === sourceHash(c.version) && existsSync(addonPath);
}

/**
 * Compiles (availableParallelism() units at a time) and links the addon; objects go to a per-process
 * temp folder and the .node is renamed into place, so concurrent builders never see a partial file.
 * Returns the status it also writes to build/status.json.
 */
export async function buildAddon(): Promise<BuildStatus> {
  const t0 = performance.now();
  const why = cannotBuild();
  if (why) {
    const s = { ok: false, reason: why };
    writeStatus(s);
    return s;
  }
  const cxx = findCompiler()!;
  const inc = napiIncludeDir()!;
  const hash = sourceHash(cxx.version);
  const tmp = join(buildDir, `tmp-${process.pid}`);
  mkdirSync(tmp, { recursive: true });
  try {
    const queue = [...UNITS];
    const compileNext = async (): Promise<void> => {
      for (let u = queue.shift(); u; u = queue.shift()) {
        const obj = join(tmp, u.obj);
        await run(cxx.cmd, [...COMMON, ...u.flags, `-I${inc}`, '-c', join(srcDir, u.src), '-o', obj]);
        if (u.isa) await run('objcopy', ['--localize-hidden', obj]);
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, availableParallelism()) }, compileNext));
    const out = join(tmp, 'kvrag_kernels.node');
    const link = platform() === 'darwin' ? ['-bundle', '-undefined', 'dynamic_lookup'] : ['-shared'];
    await run(cxx.cmd, [...link, '-pthread', '-o', out, ...UNITS.map((u) => join(tmp, u.obj))]);
    renameSync(out, addonPath);
    const s: BuildStatus = {
      ok: true,
      compiler: cxx.version,
      hash,
      seconds: Math.round((performance.now() - t0) / 100) / 10,
    };
    writeStatus(s);
    return s;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    const detail = e.stderr?.trim().split('\n').slice(-20).join('\n') || e.message;
    const s = {
      ok: false,
      reason: `compiling the addon failed (${cxx.version}):\n${detail}`,
      compiler: cxx.version,
    };
    writeStatus(s);
    return s;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const install = process.argv.includes('--install');
  try {
    const s = isFresh() ? { ...readStatus()!, seconds: 0 } : await buildAddon();
    if (s.ok) console.log(`kvrag native kernels: ${addonPath} (${s.seconds} s)`);
    else console.log(`kvrag native kernels not built, the wasm kernels will be used: ${s.reason}`);
    if (!s.ok && !install) process.exitCode = 1;
  } catch (err) {
    console.log(`kvrag native kernels not built: ${(err as Error).message}`);
    if (!install) process.exitCode = 1;
  }
}
