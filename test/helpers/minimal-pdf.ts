// Writes small, valid PDFs by hand (catalog, page tree, Helvetica, one content stream per page, exact
// xref offsets) for parser tests; test/fixtures/docs/two-pages.pdf was written by it. With `deflate`,
// content streams are FlateDecode-compressed, padded with spaces (PDF whitespace) to `padTo` bytes first:
// a small file whose streams inflate to any size (a decompression bomb).
import { deflateSync } from 'node:zlib';

/** Escapes a string for a PDF literal string (ASCII text only). */
const literal = (s: string) => `(${s.replace(/[\\()]/g, (c) => `\\${c}`)})`;

export interface PdfOptions {
  deflate?: boolean;
  /** With deflate: each content stream is padded to this many bytes before compression. */
  padTo?: number;
}

/** A PDF whose page i shows pages[i] (lines top to bottom). Latin-1 text only (Helvetica, WinAnsi). */
export function minimalPdf(pages: string[][], opts: PdfOptions = {}): Uint8Array {
  const objects: string[] = [];
  const font = 3 + pages.length * 2;
  const kids = pages.map((_, i) => `${3 + i * 2} 0 R`).join(' ');
  objects.push('<< /Type /Catalog /Pages 2 0 R >>');
  objects.push(`<< /Type /Pages /Kids [${kids}] /Count ${pages.length} >>`);
  pages.forEach((lines, i) => {
    const stream = [
      'BT',
      '/F1 12 Tf',
      '16 TL',
      '72 720 Td',
      ...lines.map((l) => `${literal(l)} Tj T*`),
      'ET',
    ].join('\n');
    objects.push(
      `<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 ${font} 0 R >> >> /Contents ${4 + i * 2} 0 R >>`,
    );
    if (opts.deflate) {
      const raw = Buffer.from(stream.padEnd(opts.padTo ?? 0, ' '), 'latin1');
      const body = deflateSync(raw, { level: 9 }).toString('latin1');
      objects.push(`<< /Length ${body.length} /Filter /FlateDecode >>\nstream\n${body}\nendstream`);
    } else {
      objects.push(`<< /Length ${Buffer.byteLength(stream, 'latin1')} >>\nstream\n${stream}\nendstream`);
    }
  });
  objects.push('<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>');

  let out = '%PDF-1.4\n%\u00e2\u00e3\u00cf\u00d3\n';
  const offsets: number[] = [];
  objects.forEach((body, i) => {
    offsets.push(Buffer.byteLength(out, 'latin1'));
    out += `${i + 1} 0 obj\n${body}\nendobj\n`;
  });
  const xref = Buffer.byteLength(out, 'latin1');
  out += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const o of offsets) out += `${String(o).padStart(10, '0')} 00000 n \n`;
  out += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return new Uint8Array(Buffer.from(out, 'latin1'));
}
