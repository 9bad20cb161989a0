// The runner heartbeat: plain, versioned data a runner writes to the registry every few seconds with a
// TTL, signed with the runner credential; the router reads it and uses it only when the signature checks
// (and its URL is allowed). Resident artifacts travel as a Bloom filter over artifact keys.
import { z } from 'zod';
import type { BloomJson } from './bloom.ts';

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
  /** HMAC-SHA256 over the rest with the runner credential (signHeartbeat); routers refuse it unsigned. */
  sig: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
});

export type RunnerHeartbeat = z.infer<typeof runnerHeartbeatSchema>;

/**
 * Who the router believes (KVRAG_RUNNER_TOKEN[_PREVIOUS], KVRAG_RUNNER_URL_ALLOWLIST): a heartbeat is used
 * only when it is signed with an accepted runner credential, fresh, and — when an allow-list is set — its
 * URL's origin matches one of the patterns. Anyone able to write the registry (Redis) without the
 * credential can therefore neither add a runner nor point an existing one's id at another URL (SSRF,
 * prompts sent to an attacker).
 */
export interface HeartbeatTrust {
  /** Accepted runner credentials (current first); a heartbeat must be signed with one of them. */
  tokens: readonly string[];
  /** Origin patterns (`scheme://host[:port]`, `*` = one DNS label or IPv4 octet); empty: any URL. */
  allow?: readonly string[];
  /** Oldest `sentAt` accepted, ms before now (and as far after, for clock skew). Default 60 s. */
  maxAgeMs?: number;
}

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

/**
 * Whether the URL's origin matches a pattern. `*` stands for one DNS label, or one octet where the
 * pattern's host is an IPv4 pattern (digits and `*` only: `10.0.*.*` must not match `10.0.evil.com`).
 */
export function urlAllowed(url: string, patterns: readonly string[]): boolean {
  let origin: string;
  try {
    origin = new URL(url).origin;
  } catch {
    return false;
  }
  return patterns.some((p) => {
    const pattern = p.replace(/\/+$/, '');
    const host = /^[a-z]+:\/\/([^:/]+)/i.exec(pattern)?.[1] ?? '';
    const wildcard = /^[\d*]+(\.[\d*]+){3}$/.test(host) ? '\\d{1,3}' : '[A-Za-z0-9-]+';
    const re = pattern
      .split('*')
      .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
      .join(wildcard);
    return new RegExp(`^${re}$`, 'i').test(origin);
  });
}

/** Why a heartbeat is not used (null: it is), checked in time independent of the signature's bytes. */
export async function heartbeatRefusal(
  hb: RunnerHeartbeat,
  trust: HeartbeatTrust,
  now = Date.now(),
  /** Signatures already checked (sig → valid), so a heartbeat listed again is not verified again. */
  checked?: Map<string, boolean>,
): Promise<string | null> {
  if (trust.allow && trust.allow.length > 0 && !urlAllowed(hb.url, trust.allow))
    return `url ${hb.url} is not in the runner URL allow-list`;
  const maxAge = trust.maxAgeMs ?? 60_000;
  if (Math.abs(now - hb.sentAt) > maxAge) return `stale heartbeat (sent ${now - hb.sentAt} ms ago)`;
  if (!hb.sig) return 'unsigned heartbeat';
  let ok = checked?.get(hb.sig);
  if (ok === undefined) {
    ok = false;
    const mac = new Uint8Array((hb.sig.match(/../g) ?? []).map((h) => Number.parseInt(h, 16)));
    const text = new TextEncoder().encode(heartbeatSigningText(hb));
    for (const token of trust.tokens) {
      // crypto.subtle.verify compares in constant time
      if (await crypto.subtle.verify('HMAC', await hmacKey(token, 'verify'), mac, text)) ok = true;
    }
    if (checked) {
      if (checked.size >= 4096) checked.clear();
      checked.set(hb.sig, ok);
    }
  }
  return ok ? null : 'signature does not match an accepted runner credential';
}
