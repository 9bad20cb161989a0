// The worker thread of ParsePool (./parse-pool.ts): loads the serving model's tokenizer, then parses and
// chunks one document per message, posting `chunking` when the parse is done and the chunks (with the
// token ids of each distinct chunk) or the error at the end. The pool enforces the time limit by
// terminating this thread.
import { parentPort, workerData } from 'node:worker_threads';
import { chunkTokenIds, parseAndChunk } from '../src/ingest/prepare.ts';
import type { ThreadMessage, ThreadTask } from './parse-pool.ts';
import { loadTokenizer } from './serving-model.ts';

const port = parentPort;
if (!port) throw new Error('parse-thread.ts runs as a worker thread of ParsePool');
const post = (m: ThreadMessage) => port.postMessage(m);
const asError = (err: unknown) => {
  const e = err instanceof Error ? err : new Error(String(err));
  const code = (e as { code?: unknown }).code;
  return { name: e.name, message: e.message, ...(typeof code === 'string' ? { code } : {}) };
};

try {
  const tokenizer = loadTokenizer((workerData as { modelDir: string }).modelDir);
  port.on('message', async (task: ThreadTask) => {
    try {
      const { chunks } = await parseAndChunk(task.input, {
        tokenizer,
        chunking: task.chunking,
        limits: task.limits,
        onChunking: () => post({ type: 'chunking' }),
      });
      post({ type: 'done', chunks, tokenIds: chunkTokenIds(chunks, tokenizer) });
    } catch (err) {
      post({ type: 'error', error: asError(err) });
    }
  });
  post({ type: 'ready' });
} catch (err) {
  post({ type: 'error', error: asError(err) });
}
