// The evaluation prose: a small committed set of MIT-licensed READMEs (./prose/heldout.jsonl, licenses in
// ./prose/LICENSES.md), normalized into lines by gpu-runner/tools/train/prose.py, which also keeps every
// file sharing lines with it out of the training prose — so `kvrag eval --filler prose` measures the
// bundled model on text it never trained on, reproducibly.
import { readFileSync } from 'node:fs';
import { z } from 'zod';

export const EVAL_PROSE_PATH = new URL('./prose/heldout.jsonl', import.meta.url);

const docSchema = z.object({ source: z.string(), license: z.string(), lines: z.array(z.string()).min(1) });
export type ProseDoc = z.infer<typeof docSchema>;

/** Every document of the evaluation prose, in file order (the episode generator indexes them). */
export function loadEvalProse(path: URL | string = EVAL_PROSE_PATH): ProseDoc[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l, i) => {
      const r = docSchema.safeParse(JSON.parse(l));
      if (!r.success) throw new Error(`${String(path)} line ${i + 1}: ${r.error.issues[0].message}`);
      return r.data;
    });
}
