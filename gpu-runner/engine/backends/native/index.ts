// Loads the native kernel addon, building it first when missing or stale (as the wasm kernels are), and
// says why when it cannot: the caller then uses the wasm kernels. Never throws.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { addonPath, buildAddon, cannotBuild, isFresh, readStatus } from './build.ts';
import { type NativeAddon, NativeKernels } from './kernels.ts';

export type {
  IsaLevel,
  NativeAttentionArgs,
  NativeAttentionSpan,
  NativeAttentionSpansArgs,
  NativeKVWriteSpan,
  NativeMatmulArgs,
  QuantType,
} from './kernels.ts';
export { NativeKernels } from './kernels.ts';

export type NativeLoad = { ok: true; kernels: NativeKernels } | { ok: false; reason: string };

let loaded: Promise<NativeLoad> | null = null;

/** The process's native kernels (loaded once), or why there are none. */
export function loadNativeKernels(): Promise<NativeLoad> {
  loaded ??= load();
  return loaded;
}

async function load(): Promise<NativeLoad> {
  try {
    const why = cannotBuild();
    if (why) return { ok: false, reason: why };
    if (!isFresh()) {
      const s = await buildAddon();
      if (!s.ok) return { ok: false, reason: s.reason ?? 'build failed' };
    }
    const require = createRequire(import.meta.url);
    const addon = require(addonPath) as NativeAddon;
    return { ok: true, kernels: new NativeKernels(addon) };
  } catch (err) {
    const status = readStatus();
    return {
      ok: false,
      reason: `loading ${addonPath} failed: ${(err as Error).message}${status?.reason ? ` (build: ${status.reason})` : ''}`,
    };
  }
}

/**
 * Null when this machine should have the native kernels (x86-64 Linux/macOS, a C++ compiler, N-API
 * headers, a CPU with AVX2 + FMA + F16C); otherwise why not. Tests use it to fail, not skip, when the
 * addon should be there and is not.
 */
export function nativeNotExpected(): string | null {
  const why = cannotBuild();
  if (why) return why;
  try {
    const flags =
      readFileSync('/proc/cpuinfo', 'utf8')
        .match(/^flags\s*:(.*)$/m)?.[1]
        .split(/\s+/) ?? [];
    for (const f of ['avx2', 'fma', 'f16c']) if (!flags.includes(f)) return `this CPU lacks ${f}`;
  } catch {
    // no /proc/cpuinfo (macOS): the addon's own cpuid check decides
  }
  return null;
}
