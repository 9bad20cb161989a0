// HTML → plain text without a DOM (runs on Workers): scripts, styles, head, comments and other non-text
// elements are dropped, block elements become line or paragraph breaks, table cells become `a | b`,
// <pre> keeps its whitespace, images keep their alt text, entities are decoded. <title> becomes the title.
import { decodeHTML } from 'entities';
import { normalizeText } from './text.ts';

/** Elements whose content is never document text. */
const DROPPED = [
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
];
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

const TOKEN =
  /<!--[\s\S]*?(?:-->|$)|<!\[CDATA\[([\s\S]*?)\]\]>|<[!?][^>]*>|<(\/?)([A-Za-z][A-Za-z0-9:-]*)((?:[^>"']|"[^"]*"|'[^']*')*)>|<[A-Za-z/!?][^>]*$|[^<]+|</g;
const ALT = /\balt\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))/i;

export interface HtmlResult {
  text: string;
  title?: string;
}

const collapse = (s: string) => s.replace(/[ \t\n\r\f]+/g, ' ');

export function parseHtml(source: string): HtmlResult {
  let html = source.replace(/<!--[\s\S]*?-->/g, '');
  const titleMatch = /<title\b[^>]*>([\s\S]*?)<\/title\s*>/i.exec(html);
  const title = titleMatch ? collapse(decodeHTML(titleMatch[1])).trim() || undefined : undefined;
  html = html.replace(/<title\b[^>]*>[\s\S]*?<\/title\s*>/gi, '');
  for (const tag of DROPPED) {
    html = html.replace(new RegExp(`<${tag}\\b[^>]*>[\\s\\S]*?<\\/${tag}\\s*>`, 'gi'), ' ');
    html = html.replace(new RegExp(`<${tag}\\b[^>]*\\/>`, 'gi'), ' ');
  }

  const out: string[] = [];
  // breaks from adjacent block tags merge (</li><li> is one line break, </p><p> one blank line)
  let pending = 0;
  const emit = (t: string) => {
    if (pending > 0) {
      if (t.trim() === '' && !t.includes(PRE_SPACE)) return;
      out.push('\n'.repeat(pending));
      pending = 0;
    }
    out.push(t);
  };
  const brk = (n: number) => {
    pending = Math.max(pending, n);
  };
  let pre = 0;
  for (const m of html.matchAll(TOKEN)) {
    const [tok, cdata, slash, rawName, attrs] = m;
    if (cdata !== undefined) {
      emit(pre ? cdata : collapse(cdata));
    } else if (rawName !== undefined) {
      const name = rawName.toLowerCase();
      const closing = slash === '/';
      if (name === 'pre') pre = Math.max(0, pre + (closing ? -1 : 1));
      if (PARAGRAPH.has(name)) brk(2);
      else if (LINE.has(name)) brk(1);
      else if (CELL.has(name) && !closing) emit(CELL_MARK);
      else if (name === 'img' && !closing) {
        const alt = ALT.exec(attrs ?? '');
        const text = alt ? (alt[1] ?? alt[2] ?? alt[3] ?? '').trim() : '';
        if (text) emit(` ${decodeHTML(text)} `);
      }
    } else if (tok.startsWith('<!') || tok.startsWith('<?') || /^<[A-Za-z/]/.test(tok)) {
      // doctype, processing instruction, comment, or a tag cut off at the end of the input
    } else if (pre) {
      emit(decodeHTML(tok).replace(/[ \t]/g, PRE_SPACE));
    } else {
      emit(decodeHTML(collapse(tok)));
    }
  }

  const text = out
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
  return { text: normalizeText(text), title };
}
