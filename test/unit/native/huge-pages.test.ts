// The native backend advises its wasm memory onto transparent huge pages (native/backend.ts): the whole
// reservation — the memory's declared maximum from its start, so what it grows into later is covered —
// and nothing when asked not to. Checked in the process's own mappings: the advised ranges carry the
// `hg` VmFlag in /proc/self/smaps (Linux with transparent huge pages; elsewhere the OS has no such advice and
// the backend says so).
// Test files run in processes of their own (vitest pool 'forks'), so no other file's backend advises here.
import { existsSync, readFileSync } from 'node:fs';
import { platform } from 'node:os';
import { describe, expect, it } from 'vitest';
import { createNativeBackend } from '../../../gpu-runner/engine/backends/native/backend.ts';
import { MAX_MEMORY_BYTES } from '../../../gpu-runner/engine/backends/wasm/memory.ts';
import { expectNativeWhereExpected, native } from '../../helpers/native.ts';

/** Bytes of this process's mappings that carry the huge-page advice (VmFlags `hg`). */
function advisedBytes(): number {
  let total = 0;
  let size = 0;
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const range = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (range) size = Number(BigInt(`0x${range[2]}`) - BigInt(`0x${range[1]}`));
    else if (line.startsWith('VmFlags:') && line.split(/\s+/).includes('hg')) total += size;
  }
  return total;
}

describe('native backend memory on huge pages', () => {
  it('has the addon where this machine can build it', () => {
    expectNativeWhereExpected();
  });
  if (!native.ok) return;

  it('advises its whole reservation, or nothing when hugePages is false', async () => {
    const linux = platform() === 'linux';
    const before = linux ? advisedBytes() : 0;
    const off = await createNativeBackend({ threads: 1, hugePages: false });
    try {
      expect(off.kernels.hugePages).toBe(false);
      if (linux) expect(advisedBytes()).toBe(before);
    } finally {
      off.dispose();
    }
    const on = await createNativeBackend({ threads: 1 });
    try {
      // a Linux kernel built without transparent huge pages refuses the advice (EINVAL): the backend says so
      const thp = linux && existsSync('/sys/kernel/mm/transparent_hugepage/enabled');
      expect(on.kernels.hugePages).toBe(thp);
      if (!thp) return;
      // the advice is 2 MiB-aligned inside [start, start + maximum): at most 2 MiB short of the maximum
      const added = advisedBytes() - before;
      expect(added).toBeGreaterThanOrEqual(MAX_MEMORY_BYTES - 2 * 1024 * 1024);
      expect(added).toBeLessThanOrEqual(MAX_MEMORY_BYTES);
      // the memory still works as memory: a tensor written and read back across pages it grew into
      const data = new Float32Array(3 << 20);
      for (let i = 0; i < data.length; i++) data[i] = i % 1000;
      const t = on.upload({ dtype: 'f32', shape: [data.length], data });
      const back = await on.read(t);
      on.free(t);
      let wrong = 0;
      for (let i = 0; i < data.length; i++) if (back[i] !== data[i]) wrong++;
      expect(back.length).toBe(data.length);
      expect(wrong).toBe(0);
    } finally {
      on.dispose();
    }
  });
});
