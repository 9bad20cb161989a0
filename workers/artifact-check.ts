// What a `precompute-done` claims is checked before it is believed (issue 19 §4). The queue is shared
// storage, not an authority: anyone able to write it could otherwise point any chunk hash at any object
// (another tenant's answers poisoned with chosen K/V, and gc deleting that object later). A claimed
// artifact is accepted only when
//   1. its model is the one this deployment serves (the only tokenizer the worker has to check with);
//   2. a chunk with that hash exists, and the hash is the sha256 of that chunk's text;
//   3. the object key is the canonical key of that chunk for that model: kv/<fp>/<hh>/<key>.kv with key =
//      artifactKey(fp, dtype, the serving tokenizer's ids of the chunk's text), for a stored dtype;
//   4. the object holds an artifact whose header (checksummed) carries that key, that model and exactly
//      those token ids — so the artifact's token ids hash to the chunk hash.
// Only the preamble and header are read (two range reads), never the K/V sections.
import { createHash } from 'node:crypto';
import { inArray } from 'drizzle-orm';
import { artifactObjectKey } from '../contracts/artifacts.ts';
import { ArtifactError, artifactKey, type KVDType } from '../gpu-runner/engine/kv/artifact-format.ts';
import { ObjectTier } from '../gpu-runner/engine/kv/object-tier.ts';
import { chunks } from '../src/db/schema.ts';
import type { PrecomputeDoneJob } from '../contracts/jobs.ts';
import { errorText, type WorkerDeps } from './deps.ts';

type Claim = PrecomputeDoneJob['artifacts'][number];

export interface CheckedClaims {
  /** Claims that hold, with the size read from the artifact itself. */
  accepted: Claim[];
  refused: { chunkHash: string; objectKey: string; reason: string }[];
}

const DTYPES: readonly KVDType[] = ['f16', 'f32'];
const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

export async function checkArtifactClaims(
  deps: WorkerDeps,
  fingerprint: string,
  claims: readonly Claim[],
): Promise<CheckedClaims> {
  const out: CheckedClaims = { accepted: [], refused: [] };
  const refuse = (c: Claim, reason: string) =>
    out.refused.push({ chunkHash: c.chunkHash, objectKey: c.objectKey, reason });
  if (claims.length === 0) return out;
  if (fingerprint !== deps.model.fingerprint) {
    for (const c of claims) refuse(c, `model ${fingerprint} is not the one this deployment serves`);
    return out;
  }
  const texts = new Map<string, string>();
  const hashes = [...new Set(claims.map((c) => c.chunkHash))];
  for (let i = 0; i < hashes.length; i += 500) {
    const rows = await deps.db
      .selectDistinctOn([chunks.contentHash], { h: chunks.contentHash, text: chunks.text })
      .from(chunks)
      .where(inArray(chunks.contentHash, hashes.slice(i, i + 500)));
    for (const r of rows) texts.set(r.h, r.text);
  }
  const objects = new ObjectTier(deps.blobs, fingerprint);
  for (const c of claims) {
    const text = texts.get(c.chunkHash);
    if (text === undefined) {
      refuse(c, 'no chunk has this hash');
      continue;
    }
    if (sha256(text) !== c.chunkHash) {
      refuse(c, 'the chunk stored under this hash does not hash to it');
      continue;
    }
    const tokenIds = deps.model.tokenizer.encode(text);
    const key = DTYPES.map((dtype) => artifactKey({ fingerprint, dtype, tokenIds })).find(
      (k) => artifactObjectKey(fingerprint, k) === c.objectKey,
    );
    if (!key) {
      refuse(c, 'the object key is not the canonical key of this chunk for this model');
      continue;
    }
    try {
      const header = await objects.readHeader(key);
      if (!header) {
        refuse(c, 'no artifact at the object key');
        continue;
      }
      if (header.tokenIds.length !== tokenIds.length || header.tokenIds.some((t, i) => t !== tokenIds[i])) {
        refuse(c, "the artifact's token ids are not the chunk's");
        continue;
      }
      out.accepted.push({ ...c, bytes: header.totalBytes, formatVersion: header.v });
    } catch (err) {
      // a corrupt or foreign object; anything else (the store away) is for the queue to retry
      if (!(err instanceof ArtifactError)) throw err;
      refuse(c, errorText(err));
    }
  }
  return out;
}
