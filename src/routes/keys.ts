// Tenant API keys: `kvrag_` + 43 base64url characters (32 random bytes). Only sha256(key) is stored, with
// the key's first 14 characters as a visible prefix: the prefix (48 random bits) finds the candidate rows
// through an index, then the hashes are compared in constant time. The full key is shown once, on create.
// Web Crypto only (runs on Workers).

export const KEY_PREFIX = 'kvrag_';
/** Characters of the key kept in clear (KEY_PREFIX + 8 random characters). */
export const VISIBLE_PREFIX_LENGTH = KEY_PREFIX.length + 8;
const KEY_PATTERN = /^kvrag_[A-Za-z0-9_-]{43}$/;

const encoder = new TextEncoder();

function base64url(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** A fresh random key with its stored forms. */
export async function generateApiKey(): Promise<{ key: string; prefix: string; hash: string }> {
  const key = KEY_PREFIX + base64url(crypto.getRandomValues(new Uint8Array(32)));
  return { key, prefix: visiblePrefix(key), hash: await sha256Hex(key) };
}

/** Whether a presented token has the shape of a tenant key (cheap rejection before any lookup). */
export function looksLikeApiKey(token: string): boolean {
  return KEY_PATTERN.test(token);
}

export function visiblePrefix(key: string): string {
  return key.slice(0, VISIBLE_PREFIX_LENGTH);
}

export async function sha256Hex(data: string | Uint8Array): Promise<string> {
  const bytes = typeof data === 'string' ? encoder.encode(data) : data;
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
  let hex = '';
  for (const b of digest) hex += b.toString(16).padStart(2, '0');
  return hex;
}

/** Equality of two strings in time that depends only on their lengths (hashes: always 64). */
export function constantTimeEqual(a: string, b: string): boolean {
  let diff = a.length ^ b.length;
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) diff |= (a.charCodeAt(i) | 0) ^ (b.charCodeAt(i) | 0);
  return diff === 0;
}
