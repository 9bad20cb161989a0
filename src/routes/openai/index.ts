// The OpenAI platform routes under /v1 — Files, Vector Stores (files, file batches, search), Responses,
// Embeddings — for the official SDKs unchanged. app.ts guards their prefixes (errors.ts OPENAI_PREFIXES)
// with authentication and the body limit, and answers their errors in OpenAI's shape.
import { Hono } from 'hono';
import type { AppEnv } from '../../services.ts';
import { embeddingRoutes } from './embeddings.ts';
import { fileBatchRoutes } from './file-batches.ts';
import { fileRoutes } from './files.ts';
import { responseRoutes } from './responses.ts';
import { vectorStoreFileRoutes } from './vector-store-files.ts';
import { vectorStoreRoutes } from './vector-stores.ts';

export function openAiRoutes(): Hono<AppEnv> {
  const r = new Hono<AppEnv>();
  r.route('/files', fileRoutes());
  r.route('/vector_stores', vectorStoreRoutes());
  r.route('/vector_stores', vectorStoreFileRoutes());
  r.route('/vector_stores', fileBatchRoutes());
  r.route('/responses', responseRoutes());
  r.route('/embeddings', embeddingRoutes());
  return r;
}
