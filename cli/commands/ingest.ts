// `kvrag ingest PATH…`: uploads files (directories are walked) to a running kvrag API, one progress line
// per file, then follows each document's status until it is `ready` or `failed` (or, with
// --until indexed, searchable: chunks stored, KV precompute possibly still running), printing every
// status change, and ends with a summary. Exit 0 when every file got there, 1 otherwise.
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { loadConfig } from '../../src/config.ts';
import { parseOptions, UsageError } from '../args.ts';
import type { Command } from '../command.ts';

interface DocumentView {
  id: string;
  status: string;
  last_error: { message: string } | null;
}

const DONE = new Set(['ready', 'failed']);
const INDEXED = new Set(['precomputing', 'ready', 'failed']);

/** Files under each path, directories walked in name order (dot files skipped). */
async function expand(paths: string[]): Promise<string[]> {
  const out: string[] = [];
  const walk = async (p: string): Promise<void> => {
    const s = await stat(p).catch(() => null);
    if (!s) throw new UsageError(`no such file or directory: ${p}`);
    if (s.isFile()) {
      out.push(p);
      return;
    }
    if (!s.isDirectory()) return;
    const entries = (await readdir(p)).filter((e) => !e.startsWith('.')).sort();
    for (const e of entries) await walk(join(p, e));
  };
  for (const p of paths) await walk(p);
  return out;
}

export const command: Command = {
  summary: 'Upload files to a running kvrag API and follow them until they are ready (or failed).',
  usage:
    'kvrag ingest --collection ID --key API_KEY [--url URL] [--until ready|indexed] [--no-wait] [--timeout SECONDS] [--attributes JSON] PATH…',
  async run(args) {
    const { values, positionals } = parseOptions(
      args,
      {
        collection: { type: 'string' },
        key: { type: 'string' },
        url: { type: 'string' },
        until: { type: 'string' },
        'no-wait': { type: 'boolean' },
        timeout: { type: 'string' },
        attributes: { type: 'string' },
      },
      true,
    );
    if (!values.collection) throw new UsageError('--collection is required');
    if (!values.key) throw new UsageError('--key is required (a tenant API key)');
    if (positionals.length === 0) throw new UsageError('name at least one file or directory');
    const until = values.until ?? 'ready';
    if (until !== 'ready' && until !== 'indexed') throw new UsageError('--until must be ready or indexed');
    const timeoutMs = Number(values.timeout ?? 600) * 1000;
    if (!(timeoutMs > 0)) throw new UsageError('--timeout must be a positive number of seconds');
    if (values.attributes !== undefined) {
      try {
        JSON.parse(values.attributes);
      } catch {
        throw new UsageError('--attributes must be a JSON object');
      }
    }
    let base = values.url;
    if (!base) {
      const config = loadConfig(process.env);
      base = `http://${config.host}:${config.port}`;
    }
    base = base.replace(/\/+$/, '');
    const docsUrl = `${base}/v1/collections/${encodeURIComponent(values.collection)}/documents`;
    const auth = { authorization: `Bearer ${values.key}` };

    const files = await expand(positionals);
    const uploaded: { path: string; doc: DocumentView }[] = [];
    let refused = 0;
    for (const [i, path] of files.entries()) {
      const form = new FormData();
      form.set('file', new Blob([await readFile(path)]), basename(path));
      if (values.attributes !== undefined) form.set('attributes', values.attributes);
      const res = await fetch(docsUrl, { method: 'POST', headers: auth, body: form });
      const body = (await res.json().catch(() => null)) as
        | (DocumentView & { error?: { code: string; message: string } })
        | null;
      const tag = `[${i + 1}/${files.length}] ${path}`;
      if (!res.ok || !body?.id) {
        refused++;
        const e = body?.error;
        console.log(`${tag}: refused (${res.status}${e ? ` ${e.code}: ${e.message}` : ''})`);
        continue;
      }
      uploaded.push({ path, doc: body });
      console.log(
        `${tag}: ${res.status === 200 ? 'already uploaded as' : 'uploaded as'} ${body.id} (${body.status})`,
      );
    }

    const target = until === 'ready' ? DONE : INDEXED;
    if (!values['no-wait']) {
      const deadline = Date.now() + timeoutMs;
      let pending = uploaded.filter((u) => !target.has(u.doc.status));
      while (pending.length > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 500));
        for (const u of pending) {
          const res = await fetch(`${docsUrl}/${u.doc.id}`, { headers: auth });
          if (res.status === 404) {
            u.doc = { ...u.doc, status: 'deleted' };
            console.log(`${u.path}: deleted`);
            continue;
          }
          if (!res.ok) continue; // transient: ask again next round
          const now = (await res.json()) as DocumentView;
          if (now.status !== u.doc.status) {
            console.log(
              `${u.path}: ${now.status}${now.status === 'failed' && now.last_error ? ` (${now.last_error.message})` : ''}`,
            );
          }
          u.doc = now;
        }
        pending = pending.filter((u) => !target.has(u.doc.status) && u.doc.status !== 'deleted');
      }
    }

    const counts = new Map<string, number>();
    for (const u of uploaded) counts.set(u.doc.status, (counts.get(u.doc.status) ?? 0) + 1);
    if (refused) counts.set('refused', refused);
    const summary = [...counts].map(([s, n]) => `${s} ${n}`).join(', ');
    console.log(`${files.length} file(s): ${summary || 'nothing uploaded'}`);
    if (refused > 0) return 1;
    if (values['no-wait']) return 0;
    return uploaded.every((u) => u.doc.status !== 'failed' && target.has(u.doc.status)) ? 0 : 1;
  },
};
