// Who the router believes (KVRAG_RUNNER_TOKEN[_PREVIOUS], KVRAG_RUNNER_URL_ALLOWLIST): a heartbeat from the
// registry is used only when it is signed with an accepted runner credential (contracts/heartbeat.ts),
// fresh, and — when an allow-list is set — its URL's origin matches one of the patterns. Anyone able to
// write the registry (Redis) without the credential can therefore neither add a runner nor point an
// existing one's id at another URL (SSRF, prompts sent to an attacker).
import { heartbeatSignedWith, type RunnerHeartbeat } from '../../contracts/heartbeat.ts';

export interface HeartbeatTrust {
  /** Accepted runner credentials (current first); a heartbeat must be signed with one of them. */
  tokens: readonly string[];
  /** Origin patterns (`scheme://host[:port]`, `*` = one DNS label or IPv4 octet); empty: any URL. */
  allow?: readonly string[];
  /** Oldest `sentAt` accepted, ms before now (and as far after, for clock skew). Default 60 s. */
  maxAgeMs?: number;
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
    // every accepted token is tried (no early exit)
    for (const token of trust.tokens) if (await heartbeatSignedWith(hb, token)) ok = true;
    if (checked) {
      if (checked.size >= 4096) checked.clear();
      checked.set(hb.sig, ok);
    }
  }
  return ok ? null : 'signature does not match an accepted runner credential';
}
