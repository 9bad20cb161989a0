// `kvrag query TEXT --collection ID --key KEY`: asks a running kvrag API (POST /v1/query, SSE) and prints
// the answer as it streams, then its sources ([n] filename #chunk score) and one line of usage and timings
// (cached tokens = prompt tokens reused from stored KV artifacts); with --iterative, the retrieval steps and
// why they stopped. --json prints the final `done` event and the citations as one JSON object instead.
// Exit 0 on an answer, 1 when the API or a runner failed.
import { loadConfig } from '../../src/config.ts';
import { readSse } from '../../src/routing/runner-client.ts';
import { numberOption, parseOptions, UsageError } from '../args.ts';
import type { Command } from '../command.ts';

interface Citation {
  n: number;
  chunk_id: string;
  filename: string;
  score: number;
  ordinal: number;
}
interface Done {
  cited: number[];
  usage: { prompt_tokens: number; completion_tokens: number; cached_tokens: number };
  timings: { retrieval_ms: number; ttft_ms: number; total_ms: number };
  plan: {
    generation: { reuse: { mode: string } };
    retrieval: {
      mode: string;
      steps: { step: number; collection: string; query: string; k: number; found?: number }[];
      stop?: string;
      missingTerms?: string[];
    };
  };
  runner: { id: string } | null;
  cached: boolean;
}

export const command: Command = {
  summary: 'Ask a running kvrag API a question over collections; streams the answer and its sources.',
  usage:
    'kvrag query TEXT --collection ID [--collection ID…] --key API_KEY [--url URL] [--max-tokens N] [--quality fast|balanced|exact] [--reuse MODE] [--k N] [--iterative MAX_STEPS] [--json]',
  async run(args) {
    const { values, positionals } = parseOptions(
      args,
      {
        collection: { type: 'string', multiple: true },
        key: { type: 'string' },
        url: { type: 'string' },
        api: { type: 'string' },
        'max-tokens': { type: 'string' },
        quality: { type: 'string' },
        reuse: { type: 'string' },
        k: { type: 'string' },
        iterative: { type: 'string' },
        json: { type: 'boolean' },
      },
      true,
    );
    const question = positionals.join(' ').trim();
    if (!question) throw new UsageError('give the question as TEXT');
    if (!values.collection?.length) throw new UsageError('--collection is required');
    if (!values.key) throw new UsageError('--key is required (a tenant API key)');
    let base = values.url ?? values.api;
    if (!base) {
      const config = loadConfig(process.env);
      base = `http://${config.host}:${config.port}`;
    }
    const body = {
      question,
      collection_ids: values.collection,
      stream: true,
      ...(values['max-tokens'] ? { max_tokens: numberOption('max-tokens', values['max-tokens'], 256) } : {}),
      ...(values.quality ? { quality: values.quality } : {}),
      ...(values.reuse ? { reuse: values.reuse } : {}),
      ...(values.k ? { k: numberOption('k', values.k, 1) } : {}),
      ...(values.iterative
        ? { iterative: { max_steps: numberOption('iterative', values.iterative, 3) } }
        : {}),
    };
    const res = await fetch(`${base.replace(/\/+$/, '')}/v1/query`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${values.key}`,
        'content-type': 'application/json',
        accept: 'text/event-stream',
      },
      body: JSON.stringify(body),
    });
    if (!res.ok || !res.body) {
      const text = await res.text();
      let msg = text;
      try {
        const e = (JSON.parse(text) as { error: { code: string; message: string } }).error;
        msg = `${e.code}: ${e.message}`;
      } catch {}
      process.stderr.write(`kvrag query: HTTP ${res.status} ${msg}\n`);
      return 1;
    }
    const out = (s: string) => process.stdout.write(s);
    let citations: Citation[] = [];
    for await (const m of readSse(res.body)) {
      const data = JSON.parse(m.data) as unknown;
      if (m.event === 'citations') citations = data as Citation[];
      else if (m.event === 'token' && !values.json) out((data as { text: string }).text);
      else if (m.event === 'error') {
        const e = data as { code: string; message: string };
        process.stderr.write(`\nkvrag query: ${e.code}: ${e.message}\n`);
        return 1;
      } else if (m.event === 'done') {
        const d = data as Done;
        if (values.json) {
          out(`${JSON.stringify({ ...d, citations })}\n`);
          return 0;
        }
        out('\n\nSources:\n');
        for (const c of citations) {
          const mark = d.cited.includes(c.n) ? '*' : ' ';
          out(
            `${mark}[${c.n}] ${c.filename} #${c.ordinal}  score ${c.score.toFixed(3)}  chunk ${c.chunk_id}\n`,
          );
        }
        const r = d.plan.retrieval;
        if (r.mode === 'iterative') {
          out('\nRetrieval steps:\n');
          for (const s of r.steps)
            out(`  ${s.step}. ${JSON.stringify(s.query)} (k ${s.k}) → ${s.found ?? 0} new chunks\n`);
          out(
            `  stopped: ${r.stop}${r.missingTerms?.length ? ` (not found: ${r.missingTerms.join(', ')})` : ''}\n`,
          );
        }
        const u = d.usage;
        const t = d.timings;
        out(
          `\nprompt ${u.prompt_tokens} tokens (cached ${u.cached_tokens}), completion ${u.completion_tokens}; ` +
            `reuse ${d.plan.generation.reuse.mode}; retrieval ${t.retrieval_ms} ms, first token ${t.ttft_ms} ms, ` +
            `total ${t.total_ms} ms${d.cached ? ' (answer cache)' : d.runner ? ` on ${d.runner.id}` : ''}\n`,
        );
        return 0;
      }
    }
    process.stderr.write('\nkvrag query: the stream ended without an answer\n');
    return 1;
  },
};
