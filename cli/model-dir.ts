// Where the served model lives: the cli hands it to the runner and the workers (the API never reads it; it
// plans from the profile the runners publish).
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Config } from '../src/config.ts';

/** The bundled model, trained by gpu-runner/tools/train and shipped in the package. */
export const BUNDLED_MODEL_DIR = fileURLToPath(new URL('../models/kvrag-tiny', import.meta.url));

/**
 * KVRAG_MODEL_DIR (a model directory or a GGUF file, relative to the working directory; or an ollama
 * store reference `ollama:NAME[:TAG]`, passed on as is) or the bundled model.
 */
export function servingModelDir(config: Config): string {
  if (!config.modelDir) return BUNDLED_MODEL_DIR;
  return config.modelDir.startsWith('ollama:') ? config.modelDir : resolve(config.modelDir);
}
