// The one list of backends and how to pick one. `auto` takes the available backend of highest priority
// above 0 (native where the addon loads, else wasm, else reference); a backend of priority 0 is used only
// when named (webgpu: without a GPU it would run on a CPU rasteriser). Each backend's code is imported only when it is checked for or created, so the reference
// path never loads the wasm runtime or Dawn.
import { BackendUnavailableError } from '../errors.ts';
import type { Backend, KVCacheDType } from './types.ts';
import type { WebGPUOptions } from './webgpu/memory.ts';

export interface BackendOptions {
  /** CPU backends: threads including the calling one (default: available cores). */
  threads?: number;
  /** native: the KV caches' element type (default f32; webgpu takes its own in `webgpu`). */
  kvDType?: KVCacheDType;
  /** native: back the memory with transparent huge pages (default true; native/backend.ts). */
  hugePages?: boolean;
  /** webgpu: adapter mode, KV dtype, … */
  webgpu?: WebGPUOptions;
}

export interface BackendEntry {
  readonly name: string;
  /** 'auto' prefers higher; 0 = only when asked for by name. */
  readonly priority: number;
  /** Whether it can run on this machine (webgpu opens and closes a device to know). */
  available(): boolean | Promise<boolean>;
  /** Throws BackendUnavailableError (saying what is missing) when it cannot run here. */
  create(opts: BackendOptions): Promise<Backend>;
}

export const BACKENDS = [
  {
    name: 'reference',
    priority: 1,
    available: () => true,
    async create() {
      const { createReferenceBackend } = await import('./reference/index.ts');
      return createReferenceBackend();
    },
  },
  {
    name: 'wasm',
    priority: 2,
    async available() {
      const { wasmBackendAvailable } = await import('./wasm/runtime.ts');
      return wasmBackendAvailable();
    },
    async create(opts: BackendOptions) {
      const { createWasmBackend, wasmBackendAvailable } = await import('./wasm/index.ts');
      if (!wasmBackendAvailable())
        throw new BackendUnavailableError('the wasm backend needs WebAssembly SIMD and SharedArrayBuffer');
      return createWasmBackend(opts.threads ? { threads: opts.threads } : {});
    },
  },
  {
    // the wasm backend with matmul and dense attention in the N-API addon (native/backend.ts)
    name: 'native',
    priority: 3,
    async available() {
      const { nativeBackendAvailable } = await import('./native/backend.ts');
      return nativeBackendAvailable();
    },
    async create(opts: BackendOptions) {
      const { createNativeBackend } = await import('./native/backend.ts');
      return createNativeBackend({
        ...(opts.threads ? { threads: opts.threads } : {}),
        ...(opts.kvDType ? { kvDType: opts.kvDType } : {}),
        ...(opts.hugePages === undefined ? {} : { hugePages: opts.hugePages }),
      });
    },
  },
  {
    name: 'webgpu',
    priority: 0,
    async available() {
      try {
        (await this.create({})).dispose();
        return true;
      } catch {
        return false;
      }
    },
    async create(opts: BackendOptions) {
      const { createWebGPUBackend } = await import('./webgpu/index.ts');
      return createWebGPUBackend(opts.webgpu ?? {});
    },
  },
] as const satisfies readonly BackendEntry[];

export type BackendName = (typeof BACKENDS)[number]['name'];
/** A backend by name, or 'auto'. */
export type BackendChoice = 'auto' | BackendName;
export const BACKEND_CHOICES = ['auto', ...BACKENDS.map((b) => b.name)] as BackendChoice[];

function entry(name: string): BackendEntry {
  const e = (BACKENDS as readonly BackendEntry[]).find((b) => b.name === name);
  if (!e) throw new Error(`unknown backend "${name}" (${BACKEND_CHOICES.join(', ')})`);
  return e;
}

/** The backend 'auto' stands for on this machine (or `choice` itself when it names one). */
export async function resolveBackendName(choice: BackendChoice): Promise<BackendName> {
  if (choice !== 'auto') return entry(choice).name as BackendName;
  const ranked = [...BACKENDS].filter((b) => b.priority > 0).sort((a, b) => b.priority - a.priority);
  for (const b of ranked) if (await b.available()) return b.name;
  throw new BackendUnavailableError('no backend can run here');
}

export async function createBackend(choice: BackendChoice, opts: BackendOptions = {}): Promise<Backend> {
  return entry(await resolveBackendName(choice)).create(opts);
}
