// y = x · wᵀ (+ bias). x: [M][K] f32, w: [N][K] f32 or f16 (Hugging Face linear layout), y: [M][N].
// Each thread owns a range of output columns (w rows), so its weight panels stay in its own cache.
// M ≥ 4: K-blocked panels (NB w rows × KB) with a 2×4 register-blocked micro-kernel (8 f32x4
// accumulators along K, reduced by a transpose-add); f16 panels are widened into per-thread scratch once
// per panel and reused by every row of x. M < 4 (decode): matrix-vector, 4 w rows per pass, f16
// widened in registers (memory-bound: bytes of w per token are the cost).
import { argF, argI, argP, halfMask, halfScale, halfToF32s, halvesHi, halvesLo, hsum, hsum4, madd, setHalfScale } from './simd';

const KB: i32 = 256; // K block (floats): 1 KiB per row
const NB: i32 = 64; // w rows per panel: 64 KiB of f32 per panel
const PACK_M: i32 = 8; // from this many rows of x, f32 panels are packed (copy cost ≪ M·panel FMAs)

// args: 0 x, 1 w, 2 bias (0 = none), 3 y, 4 M, 5 N, 6 K, 7 w is f16, 8 scratch, 9 scratch bytes/thread,
// 10 f16 exponent multiplier (f32: 2^112 for IEEE halves, 2^102 for the backend's pre-scaled halves)
export function matmul(a: usize, part: i32, parts: i32, slot: i32): void {
  const x = argP(a, 0);
  const w = argP(a, 1);
  const bias = argP(a, 2);
  const y = argP(a, 3);
  const M = argI(a, 4);
  const N = argI(a, 5);
  const K = argI(a, 6);
  const f16 = argI(a, 7);
  if (f16) setHalfScale(argF(a, 10));
  const scratch = argP(a, 8) + <usize>slot * argP(a, 9);
  const n4 = (N + 3) >> 2;
  const j0 = min<i32>(N, <i32>((<i64>n4 * part) / parts) << 2);
  const j1 = min<i32>(N, <i32>((<i64>n4 * (part + 1)) / parts) << 2);
  if (j0 >= j1) return;
  if (M < 4) {
    for (let i = 0; i < M; i++) {
      const xi = x + ((<usize>i * K) << 2);
      const yi = y + ((<usize>i * N) << 2);
      if (f16) matvecF16(xi, w, yi, K, j0, j1);
      else matvecF32(xi, w, yi, K, j0, j1);
    }
  } else {
    for (let jb = j0; jb < j1; jb += NB) {
      const jn = min<i32>(NB, j1 - jb);
      for (let kb = 0; kb < K; kb += KB) {
        const kn = min<i32>(KB, K - kb);
        let wp: usize;
        let ldw: i32;
        if (f16) {
          widenPanel(w + ((<usize>jb * K + kb) << 1), K, scratch, jn, kn);
          wp = scratch;
          ldw = KB;
        } else if (M >= PACK_M) {
          packPanel(w + ((<usize>jb * K + kb) << 2), K, scratch, jn, kn);
          wp = scratch;
          ldw = KB;
        } else {
          wp = w + ((<usize>jb * K + kb) << 2);
          ldw = K;
        }
        panel(x + (<usize>kb << 2), K, wp, ldw, y + (<usize>jb << 2), N, M, jn, kn, kb == 0);
      }
    }
  }
  if (bias) {
    for (let i = 0; i < M; i++) {
      const yi = y + ((<usize>i * N) << 2);
      for (let j = j0; j < j1; j++) {
        const p = yi + (<usize>j << 2);
        store<f32>(p, load<f32>(p) + load<f32>(bias + (<usize>j << 2)));
      }
    }
  }
}

/** f32 rows [jn][kn] (row stride ldw) → contiguous scratch [jn][KB]: w rows are K apart in memory, often a
 * multiple of 4 KiB, so a panel read in place maps its rows onto few cache sets. */
function packPanel(w: usize, ldw: i32, out: usize, jn: i32, kn: i32): void {
  for (let r = 0; r < jn; r++) memory.copy(out + ((<usize>r * KB) << 2), w + ((<usize>r * ldw) << 2), <usize>kn << 2);
}

/** f16 rows [jn][kn] (row stride ldw halves) → f32 scratch [jn][KB]. */
function widenPanel(w: usize, ldw: i32, out: usize, jn: i32, kn: i32): void {
  const kn8 = kn & ~7;
  const mk = halfMask();
  const sc = halfScale();
  for (let r = 0; r < jn; r++) {
    const src = w + ((<usize>r * ldw) << 1);
    const dst = out + ((<usize>r * KB) << 2);
    let k = 0;
    for (; k < kn8; k += 8) {
      const h = v128.load(src + (<usize>k << 1));
      v128.store(dst + (<usize>k << 2), halvesLo(h, mk, sc));
      v128.store(dst + (<usize>k << 2), halvesHi(h, mk, sc), 16);
    }
    for (; k < kn; k++) store<f32>(dst + (<usize>k << 2), halfToF32s(load<u16>(src + (<usize>k << 1))));
  }
}

/** y[M][jn] (+)= x[M][kn] · w[jn][kn]ᵀ; `first` stores instead of accumulating (first K block). */
function panel(x: usize, ldx: i32, w: usize, ldw: i32, y: usize, ldy: i32, M: i32, jn: i32, kn: i32, first: bool): void {
  const jn4 = jn & ~3;
  let i = 0;
  for (; i + 2 <= M; i += 2) {
    const x0 = x + ((<usize>i * ldx) << 2);
    const x1 = x0 + (<usize>ldx << 2);
    const y0 = y + ((<usize>i * ldy) << 2);
    const y1 = y0 + (<usize>ldy << 2);
    let j = 0;
    for (; j < jn4; j += 4) micro2x4(x0, x1, w + ((<usize>j * ldw) << 2), ldw, y0 + (<usize>j << 2), y1 + (<usize>j << 2), kn, first);
    for (; j < jn; j++) {
      const wj = w + ((<usize>j * ldw) << 2);
      put(y0 + (<usize>j << 2), dot(x0, wj, kn), first);
      put(y1 + (<usize>j << 2), dot(x1, wj, kn), first);
    }
  }
  for (; i < M; i++) {
    const x0 = x + ((<usize>i * ldx) << 2);
    const y0 = y + ((<usize>i * ldy) << 2);
    for (let j = 0; j < jn; j++) put(y0 + (<usize>j << 2), dot(x0, w + ((<usize>j * ldw) << 2), kn), first);
  }
}

@inline function put(p: usize, v: f32, first: bool): void {
  store<f32>(p, first ? v : load<f32>(p) + v);
}

function dot(x: usize, w: usize, n: i32): f32 {
  const n4 = n & ~3;
  let acc = f32x4.splat(0);
  let k = 0;
  for (; k < n4; k += 4) acc = madd(v128.load(x + (<usize>k << 2)), v128.load(w + (<usize>k << 2)), acc);
  let s = hsum(acc);
  for (; k < n; k++) s += load<f32>(x + (<usize>k << 2)) * load<f32>(w + (<usize>k << 2));
  return s;
}

/** 2 rows of x × 4 rows of w over kn: eight f32x4 accumulators. */
function micro2x4(x0: usize, x1: usize, w: usize, ldw: i32, y0: usize, y1: usize, kn: i32, first: bool): void {
  const st = <usize>ldw << 2;
  const w0 = w;
  const w1 = w + st;
  const w2 = w1 + st;
  const w3 = w2 + st;
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c02 = f32x4.splat(0), c03 = f32x4.splat(0);
  let c10 = f32x4.splat(0), c11 = f32x4.splat(0), c12 = f32x4.splat(0), c13 = f32x4.splat(0);
  const kn4 = <usize>(kn & ~3) << 2;
  for (let o: usize = 0; o < kn4; o += 16) {
    const a0 = v128.load(x0 + o);
    const a1 = v128.load(x1 + o);
    const b0 = v128.load(w0 + o);
    c00 = madd(a0, b0, c00);
    c10 = madd(a1, b0, c10);
    const b1 = v128.load(w1 + o);
    c01 = madd(a0, b1, c01);
    c11 = madd(a1, b1, c11);
    const b2 = v128.load(w2 + o);
    c02 = madd(a0, b2, c02);
    c12 = madd(a1, b2, c12);
    const b3 = v128.load(w3 + o);
    c03 = madd(a0, b3, c03);
    c13 = madd(a1, b3, c13);
  }
  let s0 = hsum4(c00, c01, c02, c03);
  let s1 = hsum4(c10, c11, c12, c13);
  for (let o = kn4; o < (<usize>kn << 2); o += 4) {
    const b = f32x4.replace_lane(
      f32x4.replace_lane(f32x4.replace_lane(f32x4.splat(load<f32>(w0 + o)), 1, load<f32>(w1 + o)), 2, load<f32>(w2 + o)),
      3,
      load<f32>(w3 + o),
    );
    s0 = madd(v128.load32_splat(x0 + o), b, s0);
    s1 = madd(v128.load32_splat(x1 + o), b, s1);
  }
  if (!first) {
    s0 = f32x4.add(s0, v128.load(y0));
    s1 = f32x4.add(s1, v128.load(y1));
  }
  v128.store(y0, s0);
  v128.store(y1, s1);
}

/** y[j0..j1) = x · w[j]ᵀ for one row x, f32 weights, 4 rows of w per pass. */
function matvecF32(x: usize, w: usize, y: usize, K: i32, j0: i32, j1: i32): void {
  const st = <usize>K << 2;
  const k4 = <usize>(K & ~3) << 2;
  let j = j0;
  for (; j + 4 <= j1; j += 4) {
    const w0 = w + <usize>j * st;
    const w1 = w0 + st;
    const w2 = w1 + st;
    const w3 = w2 + st;
    let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0);
    for (let o: usize = 0; o < k4; o += 16) {
      const xv = v128.load(x + o);
      c0 = madd(xv, v128.load(w0 + o), c0);
      c1 = madd(xv, v128.load(w1 + o), c1);
      c2 = madd(xv, v128.load(w2 + o), c2);
      c3 = madd(xv, v128.load(w3 + o), c3);
    }
    let s = hsum4(c0, c1, c2, c3);
    for (let o = k4; o < st; o += 4) {
      const xs = load<f32>(x + o);
      s = f32x4.add(
        s,
        f32x4.mul(
          f32x4.splat(xs),
          f32x4.replace_lane(
            f32x4.replace_lane(f32x4.replace_lane(f32x4.splat(load<f32>(w0 + o)), 1, load<f32>(w1 + o)), 2, load<f32>(w2 + o)),
            3,
            load<f32>(w3 + o),
          ),
        ),
      );
    }
    v128.store(y + (<usize>j << 2), s);
  }
  for (; j < j1; j++) store<f32>(y + (<usize>j << 2), dot(x, w + <usize>j * st, K));
}

/** f16 weights: halves widened in registers, 8 per row per step. */
function matvecF16(x: usize, w: usize, y: usize, K: i32, j0: i32, j1: i32): void {
  const st = <usize>K << 1;
  const k8 = K & ~7;
  const mk = halfMask();
  const sc = halfScale();
  let j = j0;
  for (; j + 4 <= j1; j += 4) {
    const w0 = w + <usize>j * st;
    const w1 = w0 + st;
    const w2 = w1 + st;
    const w3 = w2 + st;
    let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0);
    for (let k = 0; k < k8; k += 8) {
      const xo = x + (<usize>k << 2);
      const ho = <usize>k << 1;
      const xa = v128.load(xo);
      const xb = v128.load(xo, 16);
      const h0 = v128.load(w0 + ho);
      c0 = madd(xa, halvesLo(h0, mk, sc), c0);
      c0 = madd(xb, halvesHi(h0, mk, sc), c0);
      const h1 = v128.load(w1 + ho);
      c1 = madd(xa, halvesLo(h1, mk, sc), c1);
      c1 = madd(xb, halvesHi(h1, mk, sc), c1);
      const h2 = v128.load(w2 + ho);
      c2 = madd(xa, halvesLo(h2, mk, sc), c2);
      c2 = madd(xb, halvesHi(h2, mk, sc), c2);
      const h3 = v128.load(w3 + ho);
      c3 = madd(xa, halvesLo(h3, mk, sc), c3);
      c3 = madd(xb, halvesHi(h3, mk, sc), c3);
    }
    v128.store(y + (<usize>j << 2), hsum4(c0, c1, c2, c3));
    for (let k = k8; k < K; k++) {
      const xs = load<f32>(x + (<usize>k << 2));
      const ho = <usize>k << 1;
      for (let r = 0; r < 4; r++) {
        const p = y + (<usize>(j + r) << 2);
        store<f32>(p, load<f32>(p) + xs * halfToF32s(load<u16>(w0 + <usize>r * st + ho)));
      }
    }
  }
  for (; j < j1; j++) {
    const wj = w + <usize>j * st;
    let s: f32 = 0;
    for (let k = 0; k < K; k++) s += load<f32>(x + (<usize>k << 2)) * halfToF32s(load<u16>(wj + (<usize>k << 1)));
    store<f32>(y + (<usize>j << 2), s);
  }
}
