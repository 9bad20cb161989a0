import { describe, expect, it } from 'vitest';
import { parseHtml } from '../../../src/ingest/parse/html.ts';
import { flattenJson, parseJson, parseJsonLines } from '../../../src/ingest/parse/json.ts';
import { parseMarkdown } from '../../../src/ingest/parse/markdown.ts';
import { normalizeText } from '../../../src/ingest/parse/text.ts';

describe('markdown', () => {
  it('keeps headings as their own paragraphs and strips inline markup', () => {
    const md = [
      '---',
      'title: front matter is dropped',
      '---',
      '# KV *Reuse* Guide #',
      'Intro with **bold**, _emphasis_, ~~old~~ and `inline code`; snake_case_name stays.',
      'A [link](https://example.com/a_(b)) and ![diagram alt](img.png "t") and <https://x.io>.',
      '',
      'Setext Heading',
      '--------------',
      '> quoted **text**',
      '',
      '- item one',
      '* [x] done item',
      '2. numbered',
      '',
      '***',
      '[ref]: https://example.com/ref',
      'Escaped \\*stars\\* and &amp; entity &copy; <span class="x">inline html</span>.',
    ].join('\n');
    const { text, title } = parseMarkdown(md);
    expect(title).toBe('KV Reuse Guide');
    expect(text).toBe(
      [
        'KV Reuse Guide',
        '',
        'Intro with bold, emphasis, old and inline code; snake_case_name stays.',
        'A link and diagram alt and https://x.io.',
        '',
        'Setext Heading',
        '',
        'quoted text',
        '',
        'item one',
        'done item',
        'numbered',
        '',
        'Escaped *stars* and & entity © inline html.',
      ].join('\n'),
    );
  });

  it('keeps fenced code verbatim (markup inside is not touched) and tables as cells', () => {
    const md = [
      'Before.',
      '```ts',
      'const a = b * c * d; // **not bold**',
      '  indented();',
      '```',
      '| name | dims |',
      '|:-----|-----:|',
      '| bge \\| base | 768 |',
      '| *hash* | 384 |',
      '',
      '~~~',
      '# not a heading',
      '~~~',
    ].join('\n');
    expect(parseMarkdown(md).text).toBe(
      [
        'Before.',
        '',
        'const a = b * c * d; // **not bold**',
        '  indented();',
        '',
        'name | dims',
        'bge | base | 768',
        'hash | 384',
        '',
        '# not a heading',
      ].join('\n'),
    );
  });

  it('drops raw <script> and <style> blocks with their content, but not code samples', () => {
    const md = [
      'Intro.',
      '<script>',
      'alert("x");',
      '</script>',
      '<STYLE>p { color: red }</STYLE>',
      'Outro <b>bold</b>.',
      '```html',
      '<script>kept("in code samples")</script>',
      '```',
    ].join('\n');
    expect(parseMarkdown(md).text).toBe('Intro.\n\nOutro bold.\n\n<script>kept("in code samples")</script>');
  });
});

describe('html', () => {
  it('drops scripts, styles, head and comments; blocks become line breaks; entities decoded', () => {
    const html = `<!DOCTYPE html><html><head><title>The &amp; Title</title><style>p{color:red}</style>
      <script>var x = "<p>not text</p>";</script></head>
      <body><h1>Heading   One</h1><!-- a comment <p>hidden</p> -->
      <p>First&nbsp;paragraph with <b>bold</b>, <a href="#">a link</a>, &lt;tag&gt;, &eacute;t&eacute; &#x1F600; &#169;</p>
      <div>Line one<br>Line two</div>
      <ul><li>alpha</li><li>beta</li></ul>
      <table><tr><th>k</th><th>v</th></tr><tr><td>dim</td><td>768</td></tr></table>
      <pre>  code   keeps
    its  spacing</pre>
      <p>Image: <img src="x.png" alt="a diagram"> end.</p>
      <noscript>enable js</noscript><svg><text>svg text</text></svg>
      </body></html>`;
    const { text, title } = parseHtml(html);
    expect(title).toBe('The & Title');
    expect(text).toBe(
      [
        'Heading One',
        '',
        'First paragraph with bold, a link, <tag>, été 😀 ©',
        '',
        'Line one',
        'Line two',
        '',
        'alpha',
        'beta',
        '',
        'k | v',
        'dim | 768',
        '',
        '  code   keeps',
        '    its  spacing',
        '',
        'Image: a diagram end.',
      ].join('\n'),
    );
  });

  it('survives malformed markup', () => {
    expect(parseHtml('<p>unclosed <b>bold <i>and a < sign & stray</p><div').text).toBe(
      'unclosed bold and a < sign & stray',
    );
  });
});

describe('json', () => {
  it('flattens scalars with their key paths, in document order', () => {
    const doc = {
      title: 'KV caches',
      meta: { year: 2024, draft: false, 'odd key': 'v', empty: '', none: null },
      tags: ['a', { name: 'b' }],
    };
    expect(flattenJson(doc)).toEqual([
      'title: KV caches',
      'meta.year: 2024',
      'meta.draft: false',
      'meta["odd key"]: v',
      'tags[0]: a',
      'tags[1].name: b',
    ]);
  });

  it('separates top-level array records and JSON Lines records by blank lines', () => {
    expect(parseJson('[{"q":"one"},{"q":"two"}]')).toBe('[0].q: one\n\n[1].q: two');
    expect(parseJson('"just a string"')).toBe('just a string');
    expect(parseJsonLines('{"a":1}\n\n{"a":"x","b":[true]}\n')).toBe('[0].a: 1\n\n[1].a: x\n[1].b[0]: true');
  });

  it('rejects invalid JSON with bad_request (and the line for JSONL)', () => {
    expect(() => parseJson('{"a":')).toThrow(expect.objectContaining({ code: 'bad_request' }));
    expect(() => parseJsonLines('{"a":1}\n{oops}')).toThrow(/line 2/);
  });

  it('handles very deep nesting without recursion', () => {
    const depth = 20_000;
    const deep = `${'['.repeat(depth)}"bottom"${']'.repeat(depth)}`;
    const [line] = flattenJson(JSON.parse(deep));
    expect(line.endsWith('[0]: bottom')).toBe(true);
  });
});

describe('normalizeText', () => {
  it('unifies newlines, drops control characters, collapses blank lines, trims', () => {
    expect(normalizeText('  a \r\nb\r\rc\f\u0007d\u2028e\n\n\n\nf\t \n')).toBe('a\nb\n\nc\n\nd\ne\n\nf');
    expect(() => normalizeText('bin\u0000ary')).toThrow(expect.objectContaining({ code: 'bad_request' }));
  });
});

describe('hostile input', () => {
  // regex tokenisers take minutes on these (quadratic); the parsers must stay near-linear
  const inputs: [string, () => unknown][] = [
    ['html: unclosed <script>', () => parseHtml('<script>'.repeat(60_000))],
    ['html: unclosed comments', () => parseHtml('<!--'.repeat(125_000))],
    ['html: unbalanced quotes', () => parseHtml(`${"<a '".repeat(125_000)}>`)],
    ['md: unbalanced emphasis', () => parseMarkdown('**a '.repeat(125_000))],
    ['md: unclosed links', () => parseMarkdown('[x]('.repeat(125_000))],
    ['md: unclosed comments', () => parseMarkdown('<!--'.repeat(125_000))],
  ];
  for (const [name, run] of inputs) {
    it(`${name} (0.5 MB) parses in seconds`, () => {
      const t0 = performance.now();
      run();
      expect(performance.now() - t0).toBeLessThan(10_000);
    });
  }

  it('an unclosed <script> swallows the rest, as in browsers; text before it stays', () => {
    expect(parseHtml('<p>kept</p><script>if (a < b) { x = "</p>" }').text).toBe('kept');
    expect(parseHtml('<p>a</p><SCRIPT type="x">bad()</Script ><p>b</p>').text).toBe('a\n\nb');
  });
});
