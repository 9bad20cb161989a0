// ggml's block-quantized tensor types: the byte layouts are the contract between the GGUF reader/writer,
// the codecs here and the backends' integer kernels. A quantized matrix [rows, K] is stored row-major,
// each row as K / blockSize consecutive blocks (K must be a multiple of the block size).
//   Q8_0 (34 B / 32): f16 scale d, 32 × int8 q;                      x = q·d
//   Q4_0 (18 B / 32): f16 scale d, 16 bytes of nibbles: element i < 16 is the low nibble of byte i,
//                     element i ≥ 16 the high nibble of byte i − 16;  x = (q − 8)·d
//   Q4_K (144 B / 256): f16 d, f16 dmin, 12 bytes of 6-bit (scale, min) pairs for 8 sub-blocks of 32,
//                     128 bytes of nibbles (per 64 elements: 32 bytes, low nibbles first then high);
//                     x = d·scale_j·q − dmin·min_j
//   Q6_K (210 B / 256): 128 bytes low 4 bits, 64 bytes high 2 bits, 16 × int8 sub-block scales (16
//                     elements each), f16 d;  x = d·scale_j·(q − 32)

export type QuantType = 'Q8_0' | 'Q4_0' | 'Q4_K' | 'Q6_K';

export interface BlockLayout {
  /** elements per block */
  blockSize: number;
  /** bytes per block */
  blockBytes: number;
}

export const BLOCK_LAYOUTS: Record<QuantType, BlockLayout> = {
  Q8_0: { blockSize: 32, blockBytes: 34 },
  Q4_0: { blockSize: 32, blockBytes: 18 },
  Q4_K: { blockSize: 256, blockBytes: 144 },
  Q6_K: { blockSize: 256, blockBytes: 210 },
};

/** Bytes of `n` elements of a quantized type (n a multiple of the block size). */
export function quantBytes(type: QuantType, n: number): number {
  const { blockSize, blockBytes } = BLOCK_LAYOUTS[type];
  if (n % blockSize !== 0) throw new Error(`${type}: ${n} elements is not a multiple of ${blockSize}`);
  return (n / blockSize) * blockBytes;
}
