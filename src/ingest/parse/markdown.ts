// Markdown → plain text: headings stay as their own paragraphs (text kept, `#` dropped), code blocks keep
// their code, links and images keep their text, emphasis/code/strike markers and HTML tags go, tables
// become `cell | cell` lines, reference definitions and front matter are dropped, entities decoded.
import { decodeHTML } from 'entities';
import { normalizeText } from './text.ts';

/** Private-use marks around protected spans (code, escapes) while inline markup is rewritten. */
const OPEN = '\ue000';
const CLOSE = '\ue001';

/**
 * The inline rewrites below backtrack over a whole line when markers are unbalanced (quadratic in the
 * line), so long lines are processed in pieces cut at spaces; spans longer than a piece are rare.
 */
const INLINE_PIECE = 2000;

function inline(s: string): string {
  if (s.length <= INLINE_PIECE) return inlinePiece(s);
  const parts: string[] = [];
  let at = 0;
  while (at < s.length) {
    let cut = Math.min(s.length, at + INLINE_PIECE);
    if (cut < s.length) {
      const space = s.lastIndexOf(' ', cut);
      if (space > at) cut = space;
    }
    parts.push(inlinePiece(s.slice(at, cut)));
    at = cut;
  }
  return parts.join('');
}

/** Removes complete HTML comments with indexOf (a lazy regex is quadratic on many unclosed `<!--`). */
function stripComments(s: string): string {
  const out: string[] = [];
  let at = 0;
  for (;;) {
    const open = s.indexOf('<!--', at);
    const close = open < 0 ? -1 : s.indexOf('-->', open + 4);
    if (close < 0) break;
    out.push(s.slice(at, open));
    at = close + 3;
  }
  out.push(s.slice(at));
  return out.join('');
}

function inlinePiece(s: string): string {
  const kept: string[] = [];
  const protect = (t: string) => `${OPEN}${kept.push(t) - 1}${CLOSE}`;
  s = s
    .replace(/\\([!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~])/g, (_, c: string) => protect(c))
    .replace(/(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)/g, (_, _f: string, code: string) => protect(code.trim()))
    .replace(/!\[([^\]]*)\]\((?:[^()]|\([^)]*\))*\)/g, '$1')
    .replace(/!\[([^\]]*)\]\[[^\]]*\]/g, '$1')
    .replace(/\[([^\]]+)\]\((?:[^()]|\([^)]*\))*\)/g, '$1')
    .replace(/\[([^\]]+)\]\[[^\]]*\]/g, '$1')
    .replace(/<((?:https?|ftp|mailto):[^\s>]+)>/gi, '$1')
    .replace(/<([^\s@<>]+@[^\s@<>]+\.[^\s@<>]+)>/g, '$1')
    .replace(/<br\s*\/?>/gi, ' ')
    .replace(/<\/?[A-Za-z][A-Za-z0-9-]*(?:\s(?:[^<>"']|"[^"]*"|'[^']*')*)?\/?>/g, '')
    .replace(/(\*\*|__)(?=\S)([\s\S]*?\S)\1/g, '$2')
    .replace(/(^|[^\w*])\*(?=[^\s*])([\s\S]*?[^\s*])\*(?![\w*])/g, '$1$2')
    .replace(/(^|[^\w])_(?=[^\s_])([\s\S]*?[^\s_])_(?!\w)/g, '$1$2')
    .replace(/~~(?=\S)([\s\S]*?\S)~~/g, '$1');
  s = decodeHTML(s);
  return s.replace(new RegExp(`${OPEN}(\\d+)${CLOSE}`, 'g'), (_, i: string) => kept[Number(i)]);
}

/** `| a | b |` → `a | b` (escaped pipes kept as text). */
function tableRow(line: string): string {
  const cells = line
    .trim()
    .replace(/^\|/, '')
    .replace(/(?<!\\)\|$/, '')
    .split(/(?<!\\)\|/)
    .map((c) => inline(c.trim().replace(/\\\|/g, '|')));
  return cells.join(' | ');
}

// Line patterns. Each is anchored and none lets two quantifiers compete for the same run of characters
// (a `[ \t]*` beside another `[ \t]*` or a lazy `.*?`), so a failing match gives up in one pass over the
// line. ATX headings and table separators are scanned by hand below: their regexes had such competing
// quantifiers and took seconds on a line with a long run of spaces.
const FENCE = /^ {0,3}(`{3,}|~{3,})/;
const SETEXT = /^ {0,3}(=+|-+)[ \t]*$/;
const HR = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const REF_DEF = /^ {0,3}\[[^\]]+\]:[ \t]*\S+/;
const LIST = /^[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]+(?:\[[ xX]\][ \t]+)?/;
const RAW_BLOCK = /^ {0,3}<(script|style|textarea)(?:\s|>|$)/i;

const isSpaceOrTab = (c: string | undefined) => c === ' ' || c === '\t';

/** End of `line` without its trailing spaces and tabs, at least `from`. */
function trimmedEnd(line: string, from: number): number {
  let end = line.length;
  while (end > from && isSpaceOrTab(line[end - 1])) end--;
  return end;
}

/** Index after up to three leading spaces. */
function indent(line: string): number {
  let i = 0;
  while (i < 3 && line[i] === ' ') i++;
  return i;
}

/** `### text ###` → level and text; null when the line is no ATX heading. */
export function atxHeading(line: string): { level: number; text: string } | null {
  let i = indent(line);
  const hashes = i;
  while (line[i] === '#') i++;
  const level = i - hashes;
  if (level < 1 || level > 6 || (i < line.length && !isSpaceOrTab(line[i]))) return null;
  let end = trimmedEnd(line, i);
  // an optional closing run of #, preceded by a space or tab (or making up the whole content)
  let close = end;
  while (close > i && line[close - 1] === '#') close--;
  if (close < end && (close === i || isSpaceOrTab(line[close - 1])))
    end = trimmedEnd(line.slice(0, close), i);
  while (i < end && isSpaceOrTab(line[i])) i++;
  return { level, text: line.slice(i, end) };
}

/** `| --- | :-: |`: cells of dashes with optional alignment colons, between optional outer pipes. */
export function isTableSeparator(line: string): boolean {
  let body = line.slice(indent(line), trimmedEnd(line, 0));
  if (body.startsWith('|')) body = body.slice(1);
  if (body.endsWith('|')) body = body.slice(0, -1);
  return body.split('|').every((cell) => {
    let a = 0;
    let b = cell.length;
    while (a < b && isSpaceOrTab(cell[a])) a++;
    while (b > a && isSpaceOrTab(cell[b - 1])) b--;
    if (cell[a] === ':') a++;
    if (b > a && cell[b - 1] === ':') b--;
    if (a >= b) return false;
    for (let k = a; k < b; k++) if (cell[k] !== '-') return false;
    return true;
  });
}

/** The line without its block-quote markers (`> > text` → `text`). */
function unquote(line: string): string {
  let at = 0;
  for (;;) {
    let i = at;
    while (i - at < 3 && line[i] === ' ') i++;
    if (line[i] !== '>') return line.slice(at);
    i++;
    if (isSpaceOrTab(line[i])) i++;
    at = i;
  }
}

/** `| a | b |` (after trimming): a table row outside a table. */
const isPipeRow = (line: string) => {
  const t = line.trim();
  return t.length >= 2 && t.startsWith('|') && t.endsWith('|');
};

export interface MarkdownResult {
  text: string;
  /** The first level-1 heading, if any. */
  title?: string;
}

export function parseMarkdown(source: string): MarkdownResult {
  let lines = stripComments(source.replace(/\r\n?/g, '\n')).split('\n');
  // YAML/TOML front matter
  if (/^(---|\+\+\+)\s*$/.test(lines[0] ?? '')) {
    const fence = lines[0].trim();
    const end = lines.findIndex(
      (l, i) => i > 0 && (l.trim() === fence || (fence === '---' && l.trim() === '...')),
    );
    if (end > 0) lines = lines.slice(end + 1);
  }

  const out: string[] = [];
  let title: string | undefined;
  let fence: string | null = null;
  let inTable = false;
  let prevRaw = '';
  // inside a raw <script>/<style> block (CommonMark HTML block type 1): the closing tag that ends it
  let rawBlockEnd: string | null = null;
  let heading: ReturnType<typeof atxHeading>;
  for (const raw of lines) {
    if (rawBlockEnd !== null) {
      if (raw.toLowerCase().includes(rawBlockEnd)) rawBlockEnd = null;
      continue;
    }
    if (fence === null) {
      const block = RAW_BLOCK.exec(raw);
      if (block) {
        const end = `</${block[1].toLowerCase()}>`;
        if (!raw.toLowerCase().includes(end)) rawBlockEnd = end;
        out.push('');
        continue;
      }
    }
    if (fence !== null) {
      const m = FENCE.exec(raw);
      if (m && m[1][0] === fence[0] && m[1].length >= fence.length && raw.trim() === m[1]) {
        fence = null;
        out.push('');
      } else out.push(raw);
      prevRaw = raw;
      continue;
    }
    const line = unquote(raw);
    const fm = FENCE.exec(line);
    if (fm) {
      fence = fm[1];
      out.push('');
    } else if (line.trim() === '') {
      inTable = false;
      out.push('');
    } else if (REF_DEF.test(line)) {
      // link reference definition: no text
    } else if (
      SETEXT.test(line) &&
      prevRaw.trim() !== '' &&
      !inTable &&
      out.length > 0 &&
      out.at(-1) !== ''
    ) {
      // the previous line was a setext heading: end its paragraph
      if (line.trim()[0] === '=' && title === undefined) title = out.at(-1);
      out.push('');
    } else if (HR.test(line)) {
      out.push('');
    } else if ((heading = atxHeading(line))) {
      const text = inline(heading.text);
      if (heading.level === 1 && title === undefined && text) title = text;
      out.push('', text, '');
    } else if ((line.includes('|') || inTable) && isTableSeparator(line)) {
      const header = out.at(-1);
      if (header !== undefined && prevRaw.includes('|')) out[out.length - 1] = tableRow(prevRaw);
      inTable = true;
    } else if (inTable || isPipeRow(line)) {
      out.push(tableRow(line));
    } else {
      out.push(inline(line.replace(LIST, '').trim()));
    }
    prevRaw = line;
  }
  return { text: normalizeText(out.join('\n')), title };
}
