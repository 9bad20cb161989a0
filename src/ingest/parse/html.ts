// HTML → plain text without a DOM (runs on Workers): scripts, styles, head, comments and other non-text
// elements are dropped, block elements become line or paragraph breaks, table cells become `a | b`,
// <pre> keeps its whitespace, images keep their alt text, entities are decoded, <title> becomes the
// title. A single left-to-right scan with indexOf, linear in the input whatever it holds (regex
// tokenisers go quadratic on crafted input such as thousands of unclosed <script> or <!--). Known
// simplification: a `>` inside a quoted attribute value ends the tag early.
import { decodeHTML } from 'entities';
import { normalizeText } from './text.ts';

/** Elements whose content is never document text (an unclosed one swallows the rest, as in browsers). */
const DROPPED = new Set([
  'script',
  'style',
  'noscript',
  'template',
  'svg',
  'math',
  'head',
  'iframe',
  'object',
  'canvas',
  'select',
  'textarea',
]);
/** Elements that start and end a paragraph. */
const PARAGRAPH = new Set([
  'p',
  'h1',
  'h2',
  'h3',
  'h4',
  'h5',
  'h6',
  'blockquote',
  'table',
  'section',
  'article',
  'ul',
  'ol',
  'dl',
  'figure',
  'hr',
  'header',
  'footer',
  'nav',
  'aside',
  'main',
  'form',
  'fieldset',
  'address',
  'details',
  'pre',
]);
/** Elements that start and end a line. */
const LINE = new Set([
  'br',
  'li',
  'tr',
  'div',
  'dt',
  'dd',
  'figcaption',
  'caption',
  'summary',
  'legend',
  'thead',
  'tbody',
  'tfoot',
  'body',
  'html',
  'center',
  'option',
  'label',
  'button',
]);
/** Table cells, joined by ` | ` on their row's line. */
const CELL = new Set(['td', 'th']);

const CELL_MARK = '\ue002';
/** Spaces inside <pre>, protected from trimming and collapsing. */
const PRE_SPACE = '\ue003';

const TAG_START = /<(\/?)([A-Za-z][A-Za-z0-9:-]*)/y;
const ALT = /\balt\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))/i;

export interface HtmlResult {
  text: string;
  title?: string;
}

const collapse = (s: string) => s.replace(/[ \t\n\r\f]+/g, ' ');

export function parseHtml(source: string): HtmlResult {
  // ASCII-only lowercasing keeps offsets aligned with `source` for case-insensitive closing-tag search
  const lower = source.replace(/[A-Z]+/g, (s) => s.toLowerCase());
  const n = source.length;
  const out: string[] = [];
  let title: string | undefined;
  // breaks from adjacent block tags merge (</li><li> is one line break, </p><p> one blank line)
  let pending = 0;
  let pre = 0;
  const emit = (t: string) => {
    if (pending > 0) {
      if (t.trim() === '' && !t.includes(PRE_SPACE)) return;
      out.push('\n'.repeat(pending));
      pending = 0;
    }
    out.push(t);
  };
  const text = (raw: string) =>
    emit(pre ? decodeHTML(raw).replace(/[ \t]/g, PRE_SPACE) : decodeHTML(collapse(raw)));
  /** Index just past `</name …>` at or after `from`, and where that closing tag starts; n if absent. */
  const skipPastClose = (name: string, from: number): [number, number] => {
    const close = lower.indexOf(`</${name}`, from);
    if (close < 0) return [n, n];
    const gt = source.indexOf('>', close);
    return [close, gt < 0 ? n : gt + 1];
  };

  // <title> lives in <head>, which the scan drops whole: read it first
  const titleAt = lower.indexOf('<title');
  if (titleAt >= 0) {
    const open = source.indexOf('>', titleAt);
    const close = open < 0 ? -1 : lower.indexOf('</title', open);
    if (close >= 0) title = collapse(decodeHTML(source.slice(open + 1, close))).trim() || undefined;
  }

  let i = 0;
  while (i < n) {
    const lt = source.indexOf('<', i);
    if (lt < 0) {
      text(source.slice(i));
      break;
    }
    if (lt > i) text(source.slice(i, lt));
    if (source.startsWith('<!--', lt)) {
      const end = source.indexOf('-->', lt + 4);
      i = end < 0 ? n : end + 3;
      continue;
    }
    if (source.startsWith('<![CDATA[', lt)) {
      const end = source.indexOf(']]>', lt + 9);
      text(source.slice(lt + 9, end < 0 ? n : end));
      i = end < 0 ? n : end + 3;
      continue;
    }
    if (source[lt + 1] === '!' || source[lt + 1] === '?') {
      // doctype, processing instruction
      const gt = source.indexOf('>', lt);
      i = gt < 0 ? n : gt + 1;
      continue;
    }
    TAG_START.lastIndex = lt;
    const m = TAG_START.exec(source);
    if (!m) {
      text('<');
      i = lt + 1;
      continue;
    }
    const gt = source.indexOf('>', TAG_START.lastIndex);
    if (gt < 0) break; // a tag cut off at the end of the input
    const attrs = source.slice(TAG_START.lastIndex, gt);
    i = gt + 1;
    const name = m[2].toLowerCase();
    const closing = m[1] === '/';
    const selfClosing = attrs.endsWith('/');
    if (!closing && !selfClosing && name === 'title') {
      const [close, after] = skipPastClose('title', i);
      title ??= collapse(decodeHTML(source.slice(i, close))).trim() || undefined;
      i = after;
      continue;
    }
    if (!closing && !selfClosing && DROPPED.has(name)) {
      i = skipPastClose(name, i)[1];
      emit(' ');
      continue;
    }
    if (name === 'pre') pre = Math.max(0, pre + (closing ? -1 : 1));
    if (PARAGRAPH.has(name)) pending = Math.max(pending, 2);
    else if (LINE.has(name)) pending = Math.max(pending, 1);
    else if (CELL.has(name) && !closing) emit(CELL_MARK);
    else if (name === 'img' && !closing) {
      const alt = ALT.exec(attrs);
      const t = alt ? (alt[1] ?? alt[2] ?? alt[3] ?? '').trim() : '';
      if (t) emit(` ${decodeHTML(t)} `);
    }
  }

  const body = out
    .join('')
    .replace(/\u00a0/g, ' ')
    .split('\n')
    .map((line) =>
      line
        .replace(/^[ \t]+/, '')
        .replace(new RegExp(`^(?:${CELL_MARK}[ \\t]*)+`), '')
        .replace(new RegExp(`[ \\t]*${CELL_MARK}[ \\t]*`, 'g'), ' | ')
        .replace(/ {2,}/g, ' ')
        .replaceAll(PRE_SPACE, ' '),
    )
    .join('\n');
  return { text: normalizeText(body), title };
}
