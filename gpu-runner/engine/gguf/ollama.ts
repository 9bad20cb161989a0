// Resolves `ollama:NAME[:TAG]` to the GGUF blob in ollama's model store ($OLLAMA_MODELS or
// ~/.ollama/models): manifests/<registry>/<namespace>/<model>/<tag> is JSON whose layer with media type
// application/vnd.ollama.image.model names the weights blob by digest (sha256:<hex> → blobs/sha256-<hex>).
// NAME is `model`, `namespace/model` or `registry/namespace/model` (defaults registry.ollama.ai, library);
// TAG defaults to "latest".
import { existsSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { ModelLoadError } from '../errors.ts';

export const OLLAMA_PREFIX = 'ollama:';
const MODEL_MEDIA_TYPE = 'application/vnd.ollama.image.model';
const PART = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

const manifestSchema = z.object({
  layers: z.array(
    z.object({
      mediaType: z.string(),
      digest: z.string().regex(/^sha256:[0-9a-f]{64}$/),
      size: z.number().int().nonnegative().optional(),
    }),
  ),
});

export function ollamaModelsDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.OLLAMA_MODELS && env.OLLAMA_MODELS.length > 0
    ? env.OLLAMA_MODELS
    : join(homedir(), '.ollama', 'models');
}

/** The manifest path parts of a reference (without the prefix): [registry, namespace, model, tag]. */
export function parseOllamaRef(ref: string): [string, string, string, string] {
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  const [name, tag] = colon > slash ? [ref.slice(0, colon), ref.slice(colon + 1)] : [ref, 'latest'];
  const parts = name.split('/');
  const full =
    parts.length === 1
      ? ['registry.ollama.ai', 'library', parts[0]]
      : parts.length === 2
        ? ['registry.ollama.ai', parts[0], parts[1]]
        : parts;
  if (full.length !== 3 || ![...full, tag].every((p) => PART.test(p) && !p.includes('..')))
    throw new ModelLoadError(`${OLLAMA_PREFIX}${ref}`, 'not a valid ollama model reference (NAME[:TAG])');
  return [full[0], full[1], full[2], tag];
}

/** The path of the GGUF blob an `ollama:` reference names. */
export function resolveOllamaModel(ref: string, env: NodeJS.ProcessEnv = process.env): string {
  const label = `${OLLAMA_PREFIX}${ref}`;
  const root = ollamaModelsDir(env);
  const manifestPath = join(root, 'manifests', ...parseOllamaRef(ref));
  if (!existsSync(manifestPath))
    throw new ModelLoadError(
      label,
      `no ollama manifest at ${manifestPath} (is the model pulled? OLLAMA_MODELS=${root})`,
    );
  let manifest: z.infer<typeof manifestSchema>;
  try {
    manifest = manifestSchema.parse(JSON.parse(readFileSync(manifestPath, 'utf8')));
  } catch (err) {
    throw new ModelLoadError(
      manifestPath,
      `not an ollama manifest: ${(err as Error).message.split('\n')[0]}`,
    );
  }
  const layers = manifest.layers.filter((l) => l.mediaType === MODEL_MEDIA_TYPE);
  if (layers.length !== 1)
    throw new ModelLoadError(manifestPath, `expected one ${MODEL_MEDIA_TYPE} layer, found ${layers.length}`);
  const blob = join(root, 'blobs', layers[0].digest.replace(':', '-'));
  if (!existsSync(blob)) throw new ModelLoadError(label, `the manifest names blob ${blob}, which is missing`);
  const size = statSync(blob).size;
  if (layers[0].size !== undefined && layers[0].size !== size)
    throw new ModelLoadError(blob, `${size} bytes, the manifest says ${layers[0].size}`);
  return blob;
}
