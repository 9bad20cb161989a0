// Backend.attentionRanges on the wasm runtime (squeezed attention's step, DESIGN.md §4.2): per span, the
// attention kernel's mode 3 — one list of key ranges per kv head for its whole query group (each K/V row
// loaded once for the group's rows), causal — or mode 0 (dense causal) for spans without a list.
import type { SeqSpan, Tensor } from '../types.ts';
import type { WasmRuntime } from './runtime.ts';
import { allocTensor, asTensor, rows2, spanAttentionArgs, type WasmTensor } from './tensors.ts';

/** out: [M, heads·headDim] (see Backend.attentionRanges). */
export function attentionRangesWasm(
  rt: WasmRuntime,
  q: Tensor,
  layer: number,
  spans: readonly SeqSpan[],
  keys: readonly (readonly Int32Array[] | null)[],
  heads: number,
  scale: number,
): WasmTensor {
  const [M, width] = rows2(q, 'attentionRanges');
  const qt = asTensor(q, 'attentionRanges q', 'f32');
  const y = allocTensor(rt.mem, [M, width], 'f32');
  rt.mem.u8.fill(0, y.off, y.off + M * width * 4); // rows outside every span are zero
  const scratch: WasmTensor[] = [];
  try {
    spans.forEach((s, si) => {
      const { c, args } = spanAttentionArgs(qt, width, s, layer, heads, scale, 'attentionRanges');
      const { kvHeads, capacity } = c.spec;
      const lists = keys[si];
      const common = { ...args, out: y.off + s.row * width * 4 };
      if (!lists) {
        rt.attention(common);
        return;
      }
      if (lists.length !== kvHeads)
        throw new Error(`attentionRanges: ${lists.length} lists for ${kvHeads} kv heads`);
      const offs = new Int32Array(kvHeads + 1);
      let total = 0;
      lists.forEach((r, g) => {
        if (r.length % 2 !== 0) throw new Error('attentionRanges: a range list of odd length');
        for (let t = 0; t < r.length; t += 2) {
          if (r[t] < 0 || r[t + 1] > capacity || r[t] > r[t + 1])
            throw new Error(`attentionRanges: bad range [${r[t]}, ${r[t + 1]})`);
          total += r[t + 1] - r[t];
        }
        offs[g + 1] = offs[g] + r.length / 2;
      });
      const flat = allocTensor(rt.mem, [Math.max(1, offs[kvHeads] * 2)], 'i32');
      const off = allocTensor(rt.mem, [kvHeads + 1], 'i32');
      scratch.push(flat, off);
      lists.forEach((r, g) => {
        rt.mem.i32.set(r, (flat.off >> 2) + offs[g] * 2);
      });
      rt.mem.i32.set(offs, off.off >> 2);
      rt.attention({
        ...common,
        mode: 3,
        idx: flat.off,
        offs: off.off,
        work: Math.max(1, Math.ceil(total / kvHeads)),
      });
    });
  } finally {
    for (const t of scratch) rt.mem.release(t.off);
  }
  return y;
}
