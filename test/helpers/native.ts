// The native kernels for the tests, loaded once per test file (top-level await): the ISA levels and
// thread counts every parity suite runs over, and the check that fails (never skips) when this machine
// should have built the addon and did not.
import { expect } from 'vitest';
import {
  loadNativeKernels,
  type IsaLevel,
  type NativeKernels,
  nativeNotExpected,
} from '../../gpu-runner/engine/backends/native/index.ts';

export const native = await loadNativeKernels();

/** (level, threads) pairs to run: every level this CPU supports, on 1 and 2 threads. */
export const nativeCases: Array<[IsaLevel, number]> = native.ok
  ? native.kernels.info().levels.flatMap((l) => [[l, 1] as [IsaLevel, number], [l, 2] as [IsaLevel, number]])
  : [];

/** Fails with the loader's reason where the addon should be there; passes where it cannot be built. */
export function expectNativeWhereExpected(): void {
  const notExpected = nativeNotExpected();
  if (notExpected === null && !native.ok)
    expect.fail(`the native addon should have built here but did not: ${native.reason}`);
  if (notExpected !== null) expect(native.ok ? '' : native.reason).not.toBe('');
}

export function kernels(level: IsaLevel, threads: number): NativeKernels {
  if (!native.ok) throw new Error(native.reason);
  native.kernels.configure({ level, threads, spinUs: 50 });
  return native.kernels;
}
