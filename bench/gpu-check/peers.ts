// Step 5 of the GPU check: which of node-llama-cpp's prebuilt GPU builds can run here. A build runs when
// its package is in node_modules (carried to the GPU machine, nothing downloaded there) and its library
// loads (ldd finds every dependency: the CUDA runtime and cuBLAS for CUDA, libvulkan for Vulkan); else
// the step is reported as not run, with the reason — for a build left out of the carry, the carry's
// manifest says why (bench/gpu-carry.sh).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import type { PeerAvailability } from './plan.ts';

const BUILDS = {
  cuda: { pkg: '@node-llama-cpp/linux-x64-cuda', lib: 'bins/linux-x64-cuda/libggml-cuda.so' },
  vulkan: { pkg: '@node-llama-cpp/linux-x64-vulkan', lib: 'bins/linux-x64-vulkan/libggml-vulkan.so' },
} as const;

/** The part of .gpu-carry/MANIFEST.json read here: what the carry left out, and why. */
const manifestSchema = z.object({
  excluded: z.array(z.object({ package: z.string(), reason: z.string() })).default([]),
});

export function peerAvailability(
  dryRun: boolean,
  manifestPath: string | null,
  hasVulkanIcd: boolean,
  /** the folder holding node_modules (the repository root) */
  root = '.',
): PeerAvailability[] {
  if (dryRun) {
    const why = "dry run: no GPU build is run; llama.cpp's CPU build stands in";
    return [
      { gpu: 'cuda', missing: why },
      { gpu: 'vulkan', missing: why },
      { gpu: 'none', missing: null },
    ];
  }
  const excluded = manifestPath
    ? manifestSchema.parse(JSON.parse(readFileSync(manifestPath, 'utf8'))).excluded
    : [];
  return (['cuda', 'vulkan'] as const).map((gpu) => {
    const b = BUILDS[gpu];
    const lib = join(root, 'node_modules', b.pkg, b.lib);
    if (!existsSync(lib)) {
      const left = excluded.find((e) => e.package === b.pkg);
      return { gpu, missing: `${b.pkg} is not in node_modules${left ? ` (${left.reason})` : ''}` };
    }
    const ldd = spawnSync('ldd', [lib], { encoding: 'utf8' });
    const notFound = [...(ldd.stdout ?? '').matchAll(/^\s*(\S+) => not found/gm)].map((m) => m[1]);
    if (notFound.length) return { gpu, missing: `${lib} cannot load: ${notFound.join(', ')} not found` };
    if (gpu === 'vulkan' && !hasVulkanIcd) return { gpu, missing: 'no Vulkan ICD was found (step 1)' };
    return { gpu, missing: null };
  });
}
