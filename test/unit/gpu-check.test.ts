// bench/gpu-check.sh, the one-shot GPU check, dry-run on Mesa llvmpipe so it cannot rot: the same steps
// as on a GPU (setup, adapter, parity suites, kernels/engine/TTFT benchmarks, the llama.cpp peer) at tiny
// shapes, with llama.cpp's CPU build standing in for the GPU builds, which are reported as not run. The
// report is one JSON object with every step's status and result, kept beside a log of everything printed.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { peerAvailability } from '../../bench/gpu-check/peers.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function gpuCheck(
  ...args: (string | Record<string, string>)[]
): Promise<{ code: number; out: string; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'kvrag-gpu-check-test-'));
  dirs.push(dir);
  const env = { ...process.env, ...(args.find((a) => typeof a === 'object') ?? {}) };
  const argv = args.filter((a): a is string => typeof a === 'string');
  return new Promise((resolve) => {
    execFile(
      'bash',
      ['bench/gpu-check.sh', ...argv, dir],
      { maxBuffer: 64 << 20, env },
      (err, stdout, stderr) => {
        const code = err ? Number((err as { code?: number }).code ?? 1) : 0;
        resolve({ code, out: stdout + stderr, dir });
      },
    );
  });
}

type Step = { id: string; part: number; status: string; reason?: string; result?: Record<string, unknown> };
const report = (dir: string) => JSON.parse(readFileSync(join(dir, 'gpu-check.json'), 'utf8'));

describe('bench/gpu-check.sh --dry-run', () => {
  it('runs every step at tiny shapes on llvmpipe and reports each in one JSON object', {
    timeout: 240_000,
  }, async () => {
    // KVRAG_WEBGPU_ADAPTER empty: the script's own choice (opengl for a dry run)
    const { code, out, dir } = await gpuCheck('--dry-run', { KVRAG_WEBGPU_ADAPTER: '' });
    expect(code, out.slice(-4000)).toBe(0);
    const r = report(dir);
    expect(r).toMatchObject({ kind: 'kvrag-gpu-check', dryRun: true, adapterMode: 'opengl' });
    const steps = r.steps as Step[];
    const status = Object.fromEntries(steps.map((s) => [s.id, s.status]));
    expect(status).toEqual({
      setup: 'passed',
      adapter: 'passed',
      parity: 'passed',
      'model:tiny': 'passed',
      kernels: 'passed',
      'engine:tiny': 'passed',
      'peer:cuda:tiny': 'not-run',
      'peer:vulkan:tiny': 'not-run',
      'peer:none:tiny': 'passed',
      ttft: 'passed',
    });
    const by = (id: string) => steps.find((s) => s.id === id)!;
    expect(by('peer:cuda:tiny').reason).toMatch(/dry run/);
    // step 1's facts: where node and node_modules came from, the Vulkan loader, the ICD search
    expect(by('setup').result).toMatchObject({
      node_source: expect.any(String),
      node_modules: expect.any(String),
    });
    // step 2: the adapter and the backend's view of it — llvmpipe, flagged as software
    expect(by('adapter').result).toMatchObject({
      mode: 'opengl',
      adapter: { featureLevel: 'compatibility', features: expect.any(Array), limits: expect.any(Object) },
      backend: { software: true, subgroupMatrix: 'unavailable' },
    });
    // step 3: vitest ran the parity file on this adapter and every test passed
    const parity = by('parity').result as { total: number; passed: number; failed: number; files: string[] };
    expect(parity.total).toBeGreaterThan(0);
    expect(parity).toMatchObject({
      passed: parity.total,
      failed: 0,
      files: ['test/unit/webgpu/kv-f16.test.ts'],
    });
    expect(existsSync(join(dir, 'parity.json'))).toBe(true);
    // step 4: kernels on every projection of the shape at one prefill size and at decode; engine; TTFT
    const kernels = by('kernels').result as { weights: string; matmul: { M: number; tiledGflops: number }[] };
    expect(kernels.weights).toBe('f16');
    expect(kernels.matmul.map((m) => m.M)).toEqual([16, 1, 16, 1, 16, 1, 16, 1, 16, 1, 16, 1]);
    for (const m of kernels.matmul) expect(m.tiledGflops).toBeGreaterThan(0);
    const engine = by('engine:tiny').result as {
      weights: string;
      results: { backend: string; device: object }[];
    };
    expect(engine.weights).toBe('f16');
    expect(engine.results.map((e) => e.backend)).toEqual(['webgpu']);
    const ttft = by('ttft').result as {
      backend: string;
      weights: string;
      rows: { context: number; mode: string }[];
    };
    expect(ttft).toMatchObject({ backend: 'webgpu', weights: 'f16' });
    expect(ttft.rows.map((x) => `${x.context} ${x.mode}`)).toEqual(['128 full', '128 independent']);
    // step 5: the same F16 GGUF through kvrag on webgpu and llama.cpp (CPU build in the dry run)
    const peer = by('peer:none:tiny').result as {
      kvrag: { backend: string; weights: string };
      llamacpp: { gpu: boolean };
      formats: { format: string; kvrag: { tokens: number[] }; llamacpp: { tokens: number[] } }[];
    };
    expect(peer.kvrag).toMatchObject({ backend: 'webgpu', weights: 'f16' });
    expect(peer.llamacpp.gpu).toBe(false);
    expect(peer.formats.map((f) => f.format)).toEqual(['F16']);
    expect(peer.formats[0].kvrag.tokens).toHaveLength(4);
    expect(peer.formats[0].llamacpp.tokens).toHaveLength(4);
    // the summary reads the same results
    expect(r.summary).toMatchObject({
      ok: true,
      parity: { failed: 0 },
      adapter: { software: true },
      peers: [{ shape: 'tiny', build: 'cpu', targets: null }],
    });
    expect(r.summary.engine).toHaveLength(1);
    const log = readFileSync(join(dir, 'gpu-check.log'), 'utf8');
    for (const part of [1, 2, 3, 4, 5]) expect(log).toContain(`=== [gpu-check] step ${part}`);
  });

  it('skips what the time budget leaves no room for, and says so', { timeout: 60_000 }, async () => {
    const { code, dir } = await gpuCheck('--dry-run', '--budget-s', '0');
    expect(code).toBe(1);
    const steps = report(dir).steps as Step[];
    expect(steps[0]).toMatchObject({ id: 'setup', status: 'passed' });
    for (const s of steps.slice(1).filter((x) => x.status !== 'not-run')) {
      expect(s.status).toBe('skipped');
      expect(s.reason).toMatch(/time budget|did not pass/);
    }
  });

  it('refuses a missing output folder and a malformed budget', async () => {
    const exec = (args: string[]) =>
      new Promise<number>((resolve) =>
        execFile('bash', ['bench/gpu-check.sh', ...args], (err) =>
          resolve(err ? Number((err as { code?: number }).code) : 0),
        ),
      );
    expect(await exec(['--dry-run'])).toBe(2);
    expect(await exec(['--budget-s', 'ten', '/tmp/x'])).toBe(2);
    expect(await exec(['--frobnicate', '/tmp/x'])).toBe(2);
  });
});

describe('the GPU run’s setup and peers', () => {
  it('finds the NVIDIA driver in its folder, writes the Vulkan ICD for it and says what is missing', {
    timeout: 60_000,
  }, async () => {
    const fake = mkdtempSync(join(tmpdir(), 'kvrag-gpu-check-driver-'));
    const carry = mkdtempSync(join(tmpdir(), 'kvrag-gpu-check-carry-'));
    dirs.push(fake, carry);
    const lib = join(fake, 'usr/local/nvidia/lib64');
    mkdirSync(lib, { recursive: true });
    for (const n of ['libGLX_nvidia.so.0', 'libcuda.so.1']) writeFileSync(join(lib, n), '');
    // a GPU run (no --dry-run) with no time left: step 1 only, every later step skipped
    const { code, dir } = await gpuCheck('--budget-s', '0', {
      KVRAG_GPU_CHECK_SYSROOT: fake,
      KVRAG_GPU_CARRY: carry,
      VK_DRIVER_FILES: '',
      VK_ICD_FILENAMES: '',
      KVRAG_WEBGPU_ADAPTER: '',
    });
    expect(code).toBe(1);
    const r = report(dir);
    expect(r).toMatchObject({ dryRun: false, adapterMode: 'native' });
    const setup = (r.steps as Step[])[0].result as Record<string, string | string[]>;
    expect(setup['driver_libGLX_nvidia.so.0']).toBe(join(lib, 'libGLX_nvidia.so.0'));
    expect(setup['driver_libcuda.so.1']).toBe(join(lib, 'libcuda.so.1'));
    expect(setup.icd_source).toBe(`written for ${join(lib, 'libGLX_nvidia.so.0')}`);
    expect(setup.icd_library).toBe(join(lib, 'libGLX_nvidia.so.0'));
    expect(String(setup.ld_library_path).split(':')).toContain(lib);
    // the Vulkan loader: the system's, else (no carry here) a problem that names it
    if (setup.vulkan_loader !== 'system') expect(String(setup.problem)).toMatch(/no libvulkan\.so\.1/);
    for (const s of (r.steps as Step[]).slice(1)) expect(['skipped', 'not-run']).toContain(s.status);
  });

  it('step 2 of a GPU run refuses a CPU rasteriser: no GPU would be measured', {
    timeout: 60_000,
  }, async () => {
    const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>(
      (resolve) =>
        execFile(
          process.execPath,
          ['bench/gpu-check/adapter.ts', '--hardware'],
          { env: { ...process.env, KVRAG_WEBGPU_ADAPTER: 'opengl' } },
          (err, stdout, stderr) =>
            resolve({ code: err ? Number((err as { code?: number }).code) : 0, stdout, stderr }),
        ),
    );
    expect(code).toBe(1);
    expect(JSON.parse(stdout.trim().split('\n').at(-1)!)).toMatchObject({ backend: { software: true } });
    expect(stderr).toMatch(/Dawn picked a CPU rasteriser \(.*llvmpipe.*\), not a GPU/);
  });

  it('reports a llama.cpp GPU build that is not there as not run, with the carry manifest’s reason', () => {
    const root = mkdtempSync(join(tmpdir(), 'kvrag-gpu-check-peers-'));
    dirs.push(root);
    const manifest = join(root, 'MANIFEST.json');
    writeFileSync(
      manifest,
      JSON.stringify({
        excluded: [{ package: '@node-llama-cpp/linux-x64-cuda', reason: 'left out: too big' }],
      }),
    );
    expect(peerAvailability(false, manifest, true, root)).toEqual([
      { gpu: 'cuda', missing: '@node-llama-cpp/linux-x64-cuda is not in node_modules (left out: too big)' },
      { gpu: 'vulkan', missing: '@node-llama-cpp/linux-x64-vulkan is not in node_modules' },
    ]);
    expect(peerAvailability(true, null, false, root).map((p) => [p.gpu, p.missing === null])).toEqual([
      ['cuda', false],
      ['vulkan', false],
      ['none', true],
    ]);
  });
});
