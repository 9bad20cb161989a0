import { execFileSync, spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

const kvrag = (args: string[]) =>
  spawnSync(process.execPath, ['bin/kvrag.js', ...args], { encoding: 'utf8' });

describe('kvrag chunk', () => {
  it('prints a PDF fixture as JSON chunks with pages, in byte-tokenizer tokens', () => {
    const out = execFileSync(
      process.execPath,
      [
        'bin/kvrag.js',
        'chunk',
        'test/fixtures/docs/two-pages.pdf',
        '--size',
        '64',
        '--overlap',
        '16',
        '--json',
      ],
      { encoding: 'utf8' },
    );
    const doc = JSON.parse(out) as {
      format: string;
      chars: number;
      chunks: { text: string; tokenCount: number; startChar: number; endChar: number; pages: number[] }[];
    };
    expect(doc.format).toBe('pdf');
    expect(doc.chunks.length).toBeGreaterThan(1);
    expect(doc.chunks[0].startChar).toBe(0);
    expect(doc.chunks.at(-1)?.endChar).toBe(doc.chars);
    for (const c of doc.chunks) {
      expect(c.tokenCount).toBe(new TextEncoder().encode(c.text).length);
      expect(c.tokenCount).toBeLessThanOrEqual(64);
    }
    expect(doc.chunks[0].pages).toEqual([1]);
    expect(doc.chunks.at(-1)?.pages).toEqual([2]);
  });

  it('exits 1 with the reason for unsupported files, 2 for usage errors', () => {
    const unsupported = kvrag(['chunk', 'test/fixtures/docs/two-pages.pdf', '--content-type', 'image/png']);
    expect(unsupported.status).toBe(1);
    expect(unsupported.stderr).toContain('cannot ingest content type image/png');
    const missing = kvrag(['chunk', 'no/such/file.txt']);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain('cannot read no/such/file.txt');
  });
});
