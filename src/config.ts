// Every setting of kvrag, in one zod schema. Nothing else reads the environment: entries call
// loadConfig(process.env) (Node) or loadConfig(env) (Workers bindings) once and pass the result down.
import { z } from 'zod';
import { ARTIFACT_DTYPES } from '../contracts/artifacts.ts';

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const port = z.coerce.number().int().min(0).max(65535);
const bytes = z.coerce.number().int().positive();
const optionalUrl = (protocols: string[]) =>
  z
    .string()
    .trim()
    .refine(
      (v) => {
        try {
          return protocols.includes(new URL(v).protocol);
        } catch {
          return false;
        }
      },
      `must be a URL with scheme ${protocols.join(' or ')}`,
    )
    .optional();

const csvUrls = z
  .string()
  .trim()
  .transform((v) => (v === '' ? [] : v.split(',').map((s) => s.trim())))
  .pipe(z.array(z.url({ protocol: /^https?$/ })));

/** A shared secret: long enough that guessing is hopeless, and printable (it travels in a header). */
const secret = z
  .string()
  .trim()
  .regex(
    /^[\x21-\x7e]{32,512}$/,
    'must be 32-512 printable characters without spaces (openssl rand -hex 32)',
  );

/** `scheme://host[:port]` patterns, `*` matching a run of host characters (`http://10.0.*:8081`). */
const csvOrigins = z
  .string()
  .trim()
  .transform((v) => (v === '' ? [] : v.split(',').map((s) => s.trim())))
  .pipe(
    z.array(
      z
        .string()
        .regex(/^https?:\/\/[A-Za-z0-9.*[\]:-]+$/, 'must be scheme://host[:port], * allowed in the host'),
    ),
  );

/** `fs:<dir>` for the filesystem store, `s3` for an S3-compatible store configured by the S3 settings. */
const blobStore = z
  .string()
  .trim()
  .refine((v) => v === 's3' || (v.startsWith('fs:') && v.length > 3), 'must be "fs:<dir>" or "s3"');

/** The environment variable behind each setting; the README configuration table mirrors this. */
export const ENV = {
  host: 'KVRAG_HOST',
  port: 'KVRAG_PORT',
  runnerPort: 'KVRAG_RUNNER_PORT',
  metricsPort: 'KVRAG_METRICS_PORT',
  dataDir: 'KVRAG_DATA_DIR',
  databaseUrl: 'KVRAG_DATABASE_URL',
  redisUrl: 'KVRAG_REDIS_URL',
  blobStore: 'KVRAG_BLOB_STORE',
  s3Endpoint: 'KVRAG_S3_ENDPOINT',
  s3Bucket: 'KVRAG_S3_BUCKET',
  s3Region: 'KVRAG_S3_REGION',
  s3AccessKeyId: 'KVRAG_S3_ACCESS_KEY_ID',
  s3SecretAccessKey: 'KVRAG_S3_SECRET_ACCESS_KEY',
  s3ForcePathStyle: 'KVRAG_S3_FORCE_PATH_STYLE',
  runnerUrls: 'KVRAG_RUNNER_URLS',
  runnerToken: 'KVRAG_RUNNER_TOKEN',
  runnerTokenPrevious: 'KVRAG_RUNNER_TOKEN_PREVIOUS',
  runnerHost: 'KVRAG_RUNNER_HOST',
  runnerUrlAllowlist: 'KVRAG_RUNNER_URL_ALLOWLIST',
  runnerMaxTokens: 'KVRAG_RUNNER_MAX_TOKENS',
  runnerMaxDeadlineMs: 'KVRAG_RUNNER_MAX_DEADLINE_MS',
  runnerMaxBodyBytes: 'KVRAG_RUNNER_MAX_BODY_BYTES',
  runnerPrecomputeBatch: 'KVRAG_RUNNER_PRECOMPUTE_BATCH',
  modelDir: 'KVRAG_MODEL_DIR',
  engineBackend: 'KVRAG_ENGINE_BACKEND',
  webgpuAdapter: 'KVRAG_WEBGPU_ADAPTER',
  webgpuKvDType: 'KVRAG_WEBGPU_KV_DTYPE',
  nativeKvDType: 'KVRAG_NATIVE_KV_DTYPE',
  weightDType: 'KVRAG_WEIGHT_DTYPE',
  engineThreads: 'KVRAG_ENGINE_THREADS',
  maxContext: 'KVRAG_MAX_CONTEXT',
  adminKey: 'KVRAG_ADMIN_KEY',
  authFailureLimit: 'KVRAG_AUTH_FAILURE_LIMIT',
  authFailureWindowS: 'KVRAG_AUTH_FAILURE_WINDOW_S',
  trustProxy: 'KVRAG_TRUST_PROXY',
  maxBodyBytes: 'KVRAG_MAX_BODY_BYTES',
  maxUploadBytes: 'KVRAG_MAX_UPLOAD_BYTES',
  maxConcurrentJobs: 'KVRAG_MAX_CONCURRENT_JOBS',
  kvDType: 'KVRAG_KV_DTYPE',
  maxDocumentChars: 'KVRAG_MAX_DOCUMENT_CHARS',
  maxDocumentChunks: 'KVRAG_MAX_DOCUMENT_CHUNKS',
  maxPdfPages: 'KVRAG_MAX_PDF_PAGES',
  parseTimeoutS: 'KVRAG_PARSE_TIMEOUT_S',
  parseMemoryMb: 'KVRAG_PARSE_MEMORY_MB',
  reconcileAfterS: 'KVRAG_RECONCILE_AFTER_S',
  reconcileAttempts: 'KVRAG_RECONCILE_ATTEMPTS',
  outboxRetentionS: 'KVRAG_OUTBOX_RETENTION_S',
  dbStatementTimeoutMs: 'KVRAG_DB_STATEMENT_TIMEOUT_MS',
  kvHostBytes: 'KVRAG_KV_HOST_BYTES',
  kvDiskBytes: 'KVRAG_KV_DISK_BYTES',
  logLevel: 'KVRAG_LOG_LEVEL',
} as const;

export type ConfigKey = keyof typeof ENV;

const shape = {
  host: z.string().trim().min(1).default('127.0.0.1'),
  port: port.default(8080),
  runnerPort: port.default(8081),
  /** Port of the /metrics and /healthz listener of `kvrag workers`; unset: no listener. */
  metricsPort: port.optional(),
  /** Embedded mode's home: PGlite data, filesystem blobs and the local KV disk tier live under it. */
  dataDir: z.string().trim().min(1).default('.kvrag'),
  /** Postgres (with pgvector) URL; when absent, embedded PGlite under dataDir/pg. */
  databaseUrl: optionalUrl(['postgres:', 'postgresql:']),
  /** Redis URL for BullMQ and the runner registry; when absent, the in-process queue. */
  redisUrl: optionalUrl(['redis:', 'rediss:']),
  /** Default: `fs:<dataDir>/blobs`. */
  blobStore: blobStore.optional(),
  s3Endpoint: optionalUrl(['http:', 'https:']),
  s3Bucket: z.string().trim().min(3).max(63).optional(),
  s3Region: z.string().trim().min(1).default('us-east-1'),
  s3AccessKeyId: z.string().trim().min(1).optional(),
  s3SecretAccessKey: z.string().trim().min(1).optional(),
  s3ForcePathStyle: bool.default(false),
  /** Remote runners; when empty, the runner runs in-process (embedded mode). */
  runnerUrls: csvUrls.default([]),
  /**
   * The runner credential: `kvrag runner` requires it on every route but /healthz and signs its registry
   * heartbeats with it; the API sends it to runners and accepts only heartbeats signed with it.
   */
  runnerToken: secret.optional(),
  /** The credential before the last rotation, still accepted (runners) and verified (heartbeats). */
  runnerTokenPrevious: secret.optional(),
  /** Address `kvrag runner` listens on (0.0.0.0 only where a network policy keeps others out). */
  runnerHost: z.string().trim().min(1).default('127.0.0.1'),
  /** Origins heartbeat URLs must match (`*` = any run of host characters); empty = any signed URL. */
  runnerUrlAllowlist: csvOrigins.default([]),
  /** Caps a runner puts on every request (the runner's own defaults when unset: 4096, 10 min, 16 MiB, 16). */
  runnerMaxTokens: z.coerce.number().int().min(1).max(131072).optional(),
  runnerMaxDeadlineMs: z.coerce.number().int().min(1000).max(86_400_000).optional(),
  runnerMaxBodyBytes: bytes.optional(),
  runnerPrecomputeBatch: z.coerce.number().int().min(1).max(1024).optional(),
  /** Hugging Face model directory; default: the bundled model, models/kvrag-tiny in the kvrag package. */
  modelDir: z.string().trim().min(1).optional(),
  engineBackend: z.enum(['auto', 'reference', 'wasm', 'native', 'webgpu']).default('auto'),
  /** webgpu backend's adapter: auto (a GPU, else OpenGL ES on Mesa llvmpipe), native (GPU only), opengl. */
  webgpuAdapter: z.enum(['auto', 'native', 'opengl']).default('auto'),
  /** webgpu backend's KV cache: f32 (exact), or f16 (half the memory; keys/values rounded to f16). */
  webgpuKvDType: z.enum(['f32', 'f16']).default('f32'),
  /**
   * native backend's KV cache in the runner: int8 (a byte per value and an f32 scale per head_dim-value row:
   * 68 of f32's 256 bytes a row at head_dim 64; the bundled model's eval within 1 point of f16; the fused
   * squeezed step reads its rows too), f16 (half the bytes; keys and values
   * rounded to f16), or f32 (exact).
   */
  nativeKvDType: z.enum(['f32', 'f16', 'int8']).default('int8'),
  /**
   * Device dtype of the weight matrices: f32 (exact to the checkpoint), f16 (half the bytes), q8_0 / q4_0
   * (ggml blocks: ~1/4 and ~1/7 of f32, multiplied by integer kernels; quantized at load unless a GGUF
   * file holds them). Unset: as stored (GGUF Q8_0/Q4_0 kept, Q4_K/Q6_K as q8_0, floats f32).
   */
  weightDType: z.enum(['f32', 'f16', 'q8_0', 'q4_0']).optional(),
  /** Threads of the wasm backend; default: one per core. */
  engineThreads: z.coerce.number().int().min(1).max(256).optional(),
  /** Longest sequence (prompt + answer) the engine allocates for; default: the model's own limit. */
  maxContext: z.coerce.number().int().min(16).optional(),
  adminKey: z.string().min(16, 'must be at least 16 characters').optional(),
  /** Failed authentications per client address (and per key prefix) in a window before 429; 0: off. */
  authFailureLimit: z.coerce.number().int().min(0).default(20),
  authFailureWindowS: z.coerce.number().int().min(1).max(86_400).default(60),
  /**
   * Proxies in front of the API that append to X-Forwarded-For: the client address is the entry that many
   * hops from the right (what the outermost trusted proxy saw). `false`/`0`: none (the socket peer);
   * `true` = 1.
   */
  trustProxy: z
    .enum(['true', 'false', 'yes', 'no'])
    .transform((v) => (v === 'true' || v === 'yes' ? 1 : 0))
    .or(z.coerce.number().int().min(0).max(16))
    .default(0),
  maxBodyBytes: bytes.default(1024 * 1024),
  maxUploadBytes: bytes.default(20 * 1024 * 1024),
  maxConcurrentJobs: z.coerce.number().int().min(1).max(256).default(2),
  /**
   * Chunk KV artifact dtype runners store and read: f16, f32, or int8 / int4 (a half / a quarter of f16's
   * bytes); default: the model's reuse.json `artifactDType`, else f16.
   */
  kvDType: z.enum(ARTIFACT_DTYPES).optional(),
  // Ingestion caps (src/ingest/limits.ts): a document over one ends `failed` naming it.
  /** Characters of extracted text per document; default 4 × maxUploadBytes. */
  maxDocumentChars: z.coerce.number().int().positive().optional(),
  maxDocumentChunks: z.coerce.number().int().positive().default(10_000),
  maxPdfPages: z.coerce.number().int().positive().default(2000),
  /** Wall time of one document's parse + chunking, in a worker thread killed when over. */
  parseTimeoutS: z.coerce.number().positive().max(3600).default(120),
  /** Heap of that thread, and what a PDF's compressed streams may inflate to. */
  parseMemoryMb: z.coerce.number().int().min(64).max(16_384).default(1024),
  /** A document in queued…precomputing this long without progress is re-driven (workers/reconciler.ts). */
  reconcileAfterS: z.coerce.number().positive().default(600),
  /** Re-drives of one document before it is marked failed. */
  reconcileAttempts: z.coerce.number().int().min(1).max(100).default(5),
  /** Delivered outbox rows are deleted after this many seconds (their payloads go with them); 0 = kept. */
  outboxRetentionS: z.coerce.number().int().min(0).default(86_400),
  /** Postgres statement_timeout of every connection (ms; 0 = none): no query holds a connection forever. */
  dbStatementTimeoutMs: z.coerce.number().int().min(0).default(30_000),
  kvHostBytes: bytes.default(512 * 1024 * 1024),
  kvDiskBytes: bytes.default(4 * 1024 * 1024 * 1024),
  logLevel: z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('info'),
};

const schema = z.object(shape).superRefine((c, ctx) => {
  if (c.runnerUrls.length > 0 && !c.runnerToken) {
    ctx.addIssue({
      code: 'custom',
      path: ['runnerToken'],
      message: 'is required when KVRAG_RUNNER_URLS names remote runners (they refuse calls without it)',
    });
  }
  if (c.blobStore === 's3') {
    for (const k of ['s3Bucket', 's3AccessKeyId', 's3SecretAccessKey'] as const) {
      if (!c[k]) ctx.addIssue({ code: 'custom', path: [k], message: 'is required when KVRAG_BLOB_STORE=s3' });
    }
  }
});

export type Config = z.infer<typeof schema>;

export class ConfigError extends Error {
  readonly issues: { setting: string; env: string; message: string }[];
  constructor(issues: { setting: string; env: string; message: string }[]) {
    super(`invalid configuration:\n${issues.map((i) => `  ${i.env}: ${i.message}`).join('\n')}`);
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

/**
 * Reads every setting from an environment-like record (process.env, Workers env) and validates it.
 * Empty strings count as unset. Throws ConfigError naming each bad setting by its variable.
 */
export function loadConfig(
  env: Record<string, unknown>,
  overrides: Partial<Record<ConfigKey, string>> = {},
): Config {
  const raw: Record<string, unknown> = {};
  for (const [key, name] of Object.entries(ENV)) {
    const v = overrides[key as ConfigKey] ?? env[name];
    if (typeof v === 'string' && v.trim() !== '') raw[key] = v;
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((i) => {
        const setting = String(i.path[0] ?? '');
        return { setting, env: ENV[setting as ConfigKey] ?? setting, message: i.message };
      }),
    );
  }
  return parsed.data;
}

/** The blob store location after defaults: `fs:<dataDir>/blobs` unless set. */
export function blobStoreSpec(c: Config): string {
  return c.blobStore ?? `fs:${c.dataDir.replace(/\/+$/, '')}/blobs`;
}
