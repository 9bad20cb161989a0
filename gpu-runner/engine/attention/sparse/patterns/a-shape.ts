// A-shape (StreamingLLM-style, MInference's "A-shape" head): every query keeps the first `sink`
// positions and a local window — `local` keys before its query block plus the block itself.
import { blockPositions, mergeRanges, queryBlocks } from '../ranges.ts';
import { type HeadSelection, PLAN_BLOCK, type SpanGeom } from '../types.ts';

export function aShapeSelection(g: SpanGeom, sink: number, local: number): HeadSelection {
  const ranges: Int32Array[] = [];
  const columns: Int32Array[] = [];
  for (let b = 0; b < queryBlocks(g.count, PLAN_BLOCK); b++) {
    const [p0, p1] = blockPositions(g, PLAN_BLOCK, b);
    ranges.push(mergeRanges([0, sink, p0 - local, p1], p1));
    columns.push(new Int32Array(0));
  }
  return { ranges, columns, used: 'a-shape' };
}
