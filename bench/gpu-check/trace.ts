// Records every file under a node_modules folder that a process resolves (import or require), one URL a
// line, appended to $KVRAG_TRACE_OUT. bench/gpu-carry.sh runs the GPU check's dry run and the parity
// suites with `NODE_OPTIONS=--import=./bench/gpu-check/trace.ts` (children inherit it) to learn which
// packages the check loads: those are the ones carried to the GPU machine.
import { appendFileSync } from 'node:fs';
import { registerHooks } from 'node:module';

const out = process.env.KVRAG_TRACE_OUT;
const seen = new Set<string>();
if (out) {
  registerHooks({
    resolve(specifier, context, next) {
      const r = next(specifier, context);
      if (r.url.includes('/node_modules/') && !seen.has(r.url)) {
        seen.add(r.url);
        appendFileSync(out, `${r.url}\n`);
      }
      return r;
    },
  });
}
