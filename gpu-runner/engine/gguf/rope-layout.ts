// q/k row order. llama.cpp's llama architecture applies RoPE to adjacent pairs (x_2i, x_2i+1) of each
// head; Hugging Face Llama applies it to (x_i, x_i+d/2) ("rotate half"). convert_hf_to_gguf therefore
// stores q_proj/k_proj (and their biases) with each head's rows interleaved:
//   GGUF row h·d + 2i + j  =  HF row h·d + j·d/2 + i      (i < d/2, j ∈ {0, 1})
// so that the interleaved rotation of the GGUF rows is the rotate-half rotation of the HF rows.
// Qwen2 in llama.cpp uses the rotate-half ("neox") RoPE and is stored unpermuted.
// Rows are moved whole, as bytes, so the same code moves f32, f16 and quantized block rows.

/** HF row held by GGUF row r (heads of headDim rows each). */
function hfRowOf(r: number, headDim: number): number {
  const h = Math.floor(r / headDim);
  const k = r % headDim;
  return h * headDim + (k % 2) * (headDim / 2) + (k >> 1);
}

function moveRows(src: Uint8Array, rows: number, headDim: number, toHf: boolean): Uint8Array {
  if (rows % headDim !== 0 || headDim % 2 !== 0)
    throw new Error(`q/k permutation: ${rows} rows is not a whole number of heads of ${headDim}`);
  const rowBytes = src.length / rows;
  if (!Number.isInteger(rowBytes)) throw new Error(`q/k permutation: ${src.length} bytes in ${rows} rows`);
  const out = new Uint8Array(src.length);
  for (let r = 0; r < rows; r++) {
    const hf = hfRowOf(r, headDim);
    const [from, to] = toHf ? [r, hf] : [hf, r];
    out.set(src.subarray(from * rowBytes, (from + 1) * rowBytes), to * rowBytes);
  }
  return out;
}

/** GGUF (interleaved) → HF (rotate-half) row order of a q/k weight or bias stored as `rows` rows. */
export function ggufToHfRows(src: Uint8Array, rows: number, headDim: number): Uint8Array {
  return moveRows(src, rows, headDim, true);
}

/** HF (rotate-half) → GGUF (interleaved) row order, as convert_hf_to_gguf writes llama q/k. */
export function hfToGgufRows(src: Uint8Array, rows: number, headDim: number): Uint8Array {
  return moveRows(src, rows, headDim, false);
}
