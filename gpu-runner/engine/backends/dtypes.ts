// Device dtypes and how a host tensor of each is laid out — the one table the checking layer sizes
// uploads and weight shapes by. Element types: f32, f16 (IEEE half bits), i32. Block types hold weight
// matrices as ggml stores them, row by row: every run of `block` values of a row is one block of
// `blockBytes` bytes (q8_0: an f16 scale d and 32 int8 q, value = d·q; q4_0: an f16 scale d and 16 bytes
// of 4-bit q, low nibbles first, value = d·(q − 8)). A backend takes a block type once it lists it in
// caps.weightDTypes (kernels.ts); until then uploading one is refused with the backend's name. The block
// sizes are ggml's, from the quant codecs' table (quant/blocks.ts).
import { BLOCK_LAYOUTS, type QuantType } from '../quant/blocks.ts';

export type ElementDType = 'f32' | 'f16' | 'i32';
export type BlockDType = 'q8_0' | 'q4_0';
export type DType = ElementDType | BlockDType;

/** Host-side tensor data to upload. f16 data is IEEE half bits; block types are ggml block bytes. */
export type HostTensor =
  | { dtype: 'f32'; shape: readonly number[]; data: Float32Array }
  | { dtype: 'f16'; shape: readonly number[]; data: Uint16Array }
  | { dtype: 'i32'; shape: readonly number[]; data: Int32Array }
  | { dtype: BlockDType; shape: readonly number[]; data: Uint8Array };

interface DTypeInfo {
  /** values per block (1 for element types) */
  block: number;
  /** host array entries per block: elements for element types, bytes for block types */
  entries: number;
}

export const DTYPES: Record<DType, DTypeInfo> = {
  f32: { block: 1, entries: 1 },
  f16: { block: 1, entries: 1 },
  i32: { block: 1, entries: 1 },
  q8_0: { block: BLOCK_LAYOUTS.Q8_0.blockSize, entries: BLOCK_LAYOUTS.Q8_0.blockBytes },
  q4_0: { block: BLOCK_LAYOUTS.Q4_0.blockSize, entries: BLOCK_LAYOUTS.Q4_0.blockBytes },
};

/** The quant codecs' name of each block dtype (quant/blocks.ts, quant/codecs.ts). */
export const BLOCK_QUANT = { q8_0: 'Q8_0', q4_0: 'Q4_0' } as const satisfies Record<BlockDType, QuantType>;

export function isBlockDType(x: string): x is BlockDType {
  return Object.hasOwn(BLOCK_QUANT, x);
}

export function isDType(x: string): x is DType {
  return Object.hasOwn(DTYPES, x);
}

export function elements(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Entries of the host array a tensor of `shape` holds, or a reason it cannot exist: block types need the
 * last dimension (a row) to be a whole number of blocks.
 */
export function hostEntries(dtype: DType, shape: readonly number[]): number | string {
  const info = DTYPES[dtype];
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) return `shape [${shape}] is not a list of sizes`;
  if (info.block === 1) return elements(shape);
  const row = shape[shape.length - 1] ?? 0;
  if (shape.length !== 2 || row % info.block !== 0)
    return `a ${dtype} tensor is a 2-D matrix whose rows hold whole blocks of ${info.block}, got [${shape}]`;
  return (elements(shape) / info.block) * info.entries;
}
