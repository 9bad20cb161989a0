/// <reference types="@webgpu/types" />
// Adapter and device: Dawn through the `webgpu` npm package (Node) or navigator.gpu (browsers).
// On a real GPU Dawn picks Vulkan (Linux, NVIDIA/AMD in containers), Metal (macOS) or D3D12 (Windows) at
// featureLevel 'core'. Without one, `opengl` forces Dawn's OpenGL ES backend at featureLevel
// 'compatibility', which runs on Mesa llvmpipe (CPU): correct, not fast — what CI uses.
import { createRequire } from 'node:module';
import { BackendUnavailableError } from '../../errors.ts';

export type WebGPUMode = 'auto' | 'native' | 'opengl';

export class WebGPUUnavailableError extends BackendUnavailableError {
  constructor(message: string) {
    super(message);
    this.name = 'WebGPUUnavailableError';
  }
}

/** What the backend learnt about the device it runs on. */
export interface DeviceInfo {
  /** 'vulkan' | 'metal' | 'd3d12' | 'opengles' | … as Dawn reports it, plus vendor/architecture/device. */
  description: string;
  featureLevel: 'core' | 'compatibility';
  /** shader-f16: f16 arithmetic in shaders (used by the subgroup-matrix matmul). */
  f16: boolean;
  subgroups: boolean;
  /** Subgroup-matrix configurations with f16 inputs and f32 results (tensor cores), if any. */
  subgroupMatrix: { M: number; N: number; K: number; subgroupSize: number } | null;
  /** True when Dawn runs on a CPU rasteriser (llvmpipe, SwiftShader): numbers are not GPU numbers. */
  software: boolean;
}

export interface OpenedDevice {
  device: GPUDevice;
  info: DeviceInfo;
}

let gpuByMode: Map<string, GPU> | null = null;

/** The GPU entry point: navigator.gpu in a browser, else Dawn from the `webgpu` package. */
function gpuFor(mode: WebGPUMode): GPU {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu && typeof process === 'undefined') return nav.gpu;
  gpuByMode ??= new Map();
  const key = mode === 'opengl' ? 'opengl' : 'native';
  const hit = gpuByMode.get(key);
  if (hit) return hit;
  // llvmpipe through EGL needs a display-less platform when no X/Wayland display exists
  if (mode === 'opengl' && !process.env.EGL_PLATFORM) process.env.EGL_PLATFORM = 'surfaceless';
  let dawn: { create(opts: string[]): GPU; globals: object };
  try {
    dawn = createRequire(import.meta.url)('webgpu') as typeof dawn;
  } catch (err) {
    throw new WebGPUUnavailableError(
      `the webgpu backend needs the 'webgpu' npm package (Dawn): ${(err as Error).message}`,
    );
  }
  // GPUBufferUsage and friends are globals in browsers; Dawn hands them over separately
  for (const [k, v] of Object.entries(dawn.globals)) {
    if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
  }
  // allow_unsafe_apis exposes experimental features (subgroup matrices) to request; none is used unless
  // the adapter lists it and openDevice asks for it
  const gpu = dawn.create(key === 'opengl' ? ['backend=opengl'] : ['enable-dawn-features=allow_unsafe_apis']);
  gpuByMode.set(key, gpu);
  return gpu;
}

async function adapterFor(
  mode: WebGPUMode,
): Promise<{ adapter: GPUAdapter; level: 'core' | 'compatibility' }> {
  const tries: { mode: WebGPUMode; level: 'core' | 'compatibility' }[] =
    mode === 'opengl'
      ? [{ mode: 'opengl', level: 'compatibility' }]
      : mode === 'native'
        ? [{ mode: 'native', level: 'core' }]
        : [
            { mode: 'native', level: 'core' },
            { mode: 'opengl', level: 'compatibility' },
          ];
  const tried: string[] = [];
  for (const t of tries) {
    const adapter = await gpuFor(t.mode).requestAdapter({
      featureLevel: t.level,
      powerPreference: 'high-performance',
    } as GPURequestAdapterOptions);
    if (adapter) return { adapter, level: t.level };
    tried.push(`${t.mode === 'opengl' ? 'OpenGL ES' : 'Vulkan/Metal/D3D12'} (featureLevel ${t.level})`);
  }
  throw new WebGPUUnavailableError(
    `no WebGPU adapter: tried ${tried.join(', ')}. On Linux a GPU needs its Vulkan driver (libvulkan1 and ` +
      'the vendor ICD; in containers the NVIDIA runtime with the graphics capability); the CPU fallback needs ' +
      'Mesa (apt-get install libegl1 libegl-mesa0 libgles2 libgl1-mesa-dri) and KVRAG_WEBGPU_ADAPTER=opengl.',
  );
}

function subgroupMatrixConfig(adapter: GPUAdapter): DeviceInfo['subgroupMatrix'] {
  const info = adapter.info as unknown as {
    subgroupMatrixConfigs?: Record<string, unknown>[];
    subgroupMaxSize?: number;
  };
  const subgroupSize = Number(info.subgroupMaxSize ?? 0);
  if (!subgroupSize) return null;
  for (const c of info.subgroupMatrixConfigs ?? []) {
    if (c.componentType === 'f16' && c.resultComponentType === 'f32')
      return { M: Number(c.M), N: Number(c.N), K: Number(c.K), subgroupSize };
  }
  return null;
}

/** What an adapter offers, as plain data (the GPU check prints it: bench/gpu-check). */
export interface AdapterReport {
  featureLevel: 'core' | 'compatibility';
  /** GPUAdapterInfo's fields (vendor, architecture, device, description, subgroup sizes, Dawn's extras) */
  info: Record<string, unknown>;
  features: string[];
  limits: Record<string, number>;
}

const INFO_FIELDS = [
  'vendor',
  'architecture',
  'device',
  'description',
  'subgroupMinSize',
  'subgroupMaxSize',
  'isFallbackAdapter',
  'subgroupMatrixConfigs',
];

/** The adapter `mode` selects, described field by field (Dawn's objects do not serialise themselves). */
export async function probeAdapter(mode: WebGPUMode): Promise<AdapterReport> {
  const { adapter, level } = await adapterFor(mode);
  const info: Record<string, unknown> = {};
  const src = adapter.info as unknown as Record<string, unknown>;
  for (const k of INFO_FIELDS) {
    const v = src[k];
    // subgroupMatrixConfigs: an array of Dawn objects; copy their fields
    info[k] = Array.isArray(v) ? v.map((c) => ({ ...fieldsOf(c) })) : v;
  }
  const limits: Record<string, number> = {};
  const lim = adapter.limits as unknown as Record<string, number>;
  for (const k of Object.keys(fieldsOf(lim))) limits[k] = Number(lim[k]);
  return { featureLevel: level, info, features: [...adapter.features].map(String).sort(), limits };
}

/** Own and inherited enumerable fields of a Dawn object (WebIDL attributes live on the prototype). */
function fieldsOf(o: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k in o as object) {
    const v = (o as Record<string, unknown>)[k];
    if (typeof v !== 'function') out[k] = v;
  }
  return out;
}

const LIMITS = [
  'maxStorageBuffersPerShaderStage',
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
] as const;

/** Opens a device with the adapter's own limits and the features the kernels can use. */
export async function openDevice(mode: WebGPUMode): Promise<OpenedDevice> {
  const { adapter, level } = await adapterFor(mode);
  const features: GPUFeatureName[] = [];
  const has = (f: string) => adapter.features.has(f);
  if (has('shader-f16')) features.push('shader-f16');
  if (has('subgroups')) features.push('subgroups' as GPUFeatureName);
  let sgm = subgroupMatrixConfig(adapter);
  // subgroup matrices are an unsafe (experimental) API in Dawn: opt in only where the adapter lists them
  if (sgm && has('chromium-experimental-subgroup-matrix') && has('shader-f16') && has('subgroups'))
    features.push('chromium-experimental-subgroup-matrix' as GPUFeatureName);
  else sgm = null;
  const requiredLimits: Record<string, number> = {};
  for (const k of LIMITS) requiredLimits[k] = adapter.limits[k];
  const device = await adapter.requestDevice({ requiredFeatures: features, requiredLimits });
  const ai = adapter.info;
  const description =
    [ai.vendor, ai.architecture, ai.device, ai.description].filter(Boolean).join(' ') || 'unknown';
  return {
    device,
    info: {
      description,
      featureLevel: level,
      f16: features.includes('shader-f16'),
      subgroups: features.includes('subgroups' as GPUFeatureName),
      subgroupMatrix: sgm,
      software: /llvmpipe|swiftshader|lavapipe|software/i.test(description),
    },
  };
}
