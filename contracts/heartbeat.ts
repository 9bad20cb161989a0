// The runner heartbeat: plain, versioned data a runner writes to the registry every few seconds with a
// TTL, signed with the runner credential (signHeartbeat); the router reads it and uses it only when the
// signature checks (src/routing/heartbeat-trust.ts). Resident artifacts travel as a Bloom filter over
// artifact keys. The registry
// itself is an interface here: runners publish to it, the API lists it; its implementations (Redis,
// in-memory) live in src/routing/ and the cli hands one to each side.
import { z } from 'zod';
import type { BloomJson } from './bloom.ts';
import { modelProfileSchema } from './model-profile.ts';

const count = z.number().int().min(0);

export const bloomSchema = z.object({
  m: z
    .number()
    .int()
    .positive()
    .multipleOf(8)
    .max(1 << 24),
  k: z.number().int().min(1).max(16),
  n: count,
  bits: z.string().max(1 << 22),
}) satisfies z.ZodType<BloomJson>;

export const runnerHeartbeatSchema = z.object({
  v: z.literal(1),
  id: z.string().min(1).max(128),
  url: z.url({ protocol: /^https?$/ }),
  /** Fingerprints of the models this runner serves (DESIGN.md §4.1). */
  models: z.array(z.string().min(1)).min(1),
  load: z.object({ running: count, waiting: count, maxRunning: z.number().int().positive() }),
  kvFreeBytes: count,
  artifacts: bloomSchema,
  /** ms since the epoch, set by the runner. */
  sentAt: z.number().int().positive(),
  /** What the runner serves, as the planner needs it (absent from runners older than this field). */
  model: modelProfileSchema.optional(),
  /** HMAC-SHA256 over the rest with the runner credential (signHeartbeat); routers refuse it unsigned. */
  sig: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
});

export type RunnerHeartbeat = z.infer<typeof runnerHeartbeatSchema>;

/** The signed text: every field but `sig`, as JSON with object keys sorted at every level. */
export function heartbeatSigningText(hb: RunnerHeartbeat): string {
  const canonical = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(canonical);
    if (v === null || typeof v !== 'object') return v;
    return Object.fromEntries(
      Object.keys(v)
        .filter((k) => v[k as keyof typeof v] !== undefined)
        .sort()
        .map((k) => [k, canonical(v[k as keyof typeof v])]),
    );
  };
  const { sig: _, ...rest } = hb;
  return JSON.stringify(canonical(rest));
}

const hmacKey = (token: string, use: 'sign' | 'verify') =>
  crypto.subtle.importKey('raw', new TextEncoder().encode(token), { name: 'HMAC', hash: 'SHA-256' }, false, [
    use,
  ]);

const hex = (b: ArrayBuffer) => [...new Uint8Array(b)].map((x) => x.toString(16).padStart(2, '0')).join('');

/** The heartbeat with `sig` = HMAC-SHA256(token, heartbeatSigningText) in hex (Web Crypto: Node and Workers). */
export async function signHeartbeat(hb: RunnerHeartbeat, token: string): Promise<RunnerHeartbeat> {
  const mac = await crypto.subtle.sign(
    'HMAC',
    await hmacKey(token, 'sign'),
    new TextEncoder().encode(heartbeatSigningText(hb)),
  );
  return { ...hb, sig: hex(mac) };
}

/** Whether `hb.sig` is its HMAC under `token` (crypto.subtle.verify compares in constant time). */
export async function heartbeatSignedWith(hb: RunnerHeartbeat, token: string): Promise<boolean> {
  if (!hb.sig) return false;
  const mac = new Uint8Array((hb.sig.match(/../g) ?? []).map((h) => Number.parseInt(h, 16)));
  const text = new TextEncoder().encode(heartbeatSigningText(hb));
  return crypto.subtle.verify('HMAC', await hmacKey(token, 'verify'), mac, text);
}

/**
 * The runner registry: runners publish heartbeats with a TTL; routers list the live ones. A runner that
 * stops heartbeating disappears when its TTL runs out, so a dead runner is never chosen after that.
 */
export interface RunnerRegistry {
  publish(hb: RunnerHeartbeat, ttlMs: number): Promise<void>;
  /** Deregisters at once (graceful shutdown). */
  remove(id: string): Promise<void>;
  /** Heartbeats of every runner whose TTL has not run out. */
  list(): Promise<RunnerHeartbeat[]>;
  close(): Promise<void>;
}

/** Parses a stored heartbeat; null for anything malformed (never trust the registry's contents). */
export function parseHeartbeat(raw: string | null): RunnerHeartbeat | null {
  if (!raw) return null;
  try {
    const r = runnerHeartbeatSchema.safeParse(JSON.parse(raw));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}
