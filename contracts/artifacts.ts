// Chunk KV artifact keys (DESIGN.md §4.1). An artifact key is the sha256 hex of (model fingerprint, format
// version, dtype, token ids), computed by the engine (gpu-runner/engine/kv/artifact-format.ts); its object
// in the store lives at kv/<fingerprint>/<first two hex digits>/<key>.kv. The API reads the key back out of
// kv_artifacts.object_key, the runner writes it, gc deletes it: one format, here.
import { z } from 'zod';

const ARTIFACT_KEY = /^[0-9a-f]{64}$/;

/**
 * How an artifact stores K and V: f32, f16, or quantized int8 / int4 (KIVI-style: keys per channel, values
 * per token; gpu-runner/engine/kv/kv-codec.ts). A runner stores and reads one of them; the dtype is part
 * of the key.
 */
export const ARTIFACT_DTYPES = ['f32', 'f16', 'int8', 'int4'] as const;
export type ArtifactDType = (typeof ARTIFACT_DTYPES)[number];

export const artifactKeySchema = z
  .string()
  .regex(ARTIFACT_KEY, 'must be a 64-character lowercase hex artifact key');

export function isArtifactKey(key: string): boolean {
  return ARTIFACT_KEY.test(key);
}

/** Object-store key of an artifact: kv/<fingerprint>/<hh>/<key>.kv */
export function artifactObjectKey(fingerprint: string, key: string): string {
  return `kv/${fingerprint}/${key.slice(0, 2)}/${key}.kv`;
}

/** Whether `objectKey` has the shape artifactObjectKey gives (what gc may delete as an artifact). */
export function isArtifactObjectKey(objectKey: string): boolean {
  const m = /^kv\/[A-Za-z0-9._-]{8,128}\/([0-9a-f]{2})\/([0-9a-f]{64})\.kv$/.exec(objectKey);
  return m?.[2].startsWith(m[1]) ?? false;
}

/** The artifact key inside an object key written by artifactObjectKey; null for anything else. */
export function artifactKeyOf(objectKey: string): string | null {
  const m = /\/([0-9a-f]{64})\.kv$/.exec(objectKey);
  return m ? m[1] : null;
}
