// Row-wise and elementwise kernels: RMSNorm, RoPE (rotate-half; deltas re-rotate), SwiGLU, softmax,
// add, argmax, row gather (f32/f16 tables). Rows (or 4-aligned element ranges) are split over threads.
import { argF, argI, argP, exp4, halfToF32s, hmax, hsum, loadHalf4, madd, negInf4, one4, setHalfScale, share } from './simd';

// args: 0 x, 1 w, 2 y, 3 M, 4 D, 5 eps (f32). x, y: [M][D]; w: [D]
export function rmsnorm(a: usize, part: i32, parts: i32, slot: i32): void {
  const x = argP(a, 0);
  const w = argP(a, 1);
  const y = argP(a, 2);
  const M = argI(a, 3);
  const D = argI(a, 4);
  const eps = argF(a, 5);
  const d4 = D & ~3;
  for (let i = share(M, part, parts); i < share(M, part + 1, parts); i++) {
    const xi = x + ((<usize>i * D) << 2);
    const yi = y + ((<usize>i * D) << 2);
    let acc = f32x4.splat(0);
    let k = 0;
    for (; k < d4; k += 4) {
      const v = v128.load(xi + (<usize>k << 2));
      acc = madd(v, v, acc);
    }
    let ss = hsum(acc);
    for (; k < D; k++) {
      const v = load<f32>(xi + (<usize>k << 2));
      ss += v * v;
    }
    const inv: f32 = 1.0 / Mathf.sqrt(ss / <f32>D + eps);
    const iv = f32x4.splat(inv);
    k = 0;
    for (; k < d4; k += 4) {
      const o = <usize>k << 2;
      v128.store(yi + o, f32x4.mul(f32x4.mul(v128.load(xi + o), iv), v128.load(w + o)));
    }
    for (; k < D; k++) {
      const o = <usize>k << 2;
      store<f32>(yi + o, load<f32>(xi + o) * inv * load<f32>(w + o));
    }
  }
}

// args: 0 x, 1 y, 2 positions (i32 [M]), 3 invFreq ([hd/2]), 4 M, 5 width, 6 headDim, 7 scratch,
// 8 scratch bytes/thread. Angle a = f32(pos · invFreq[i]); pairs (x_i, x_{i+hd/2}) of every head.
export function rope(a: usize, part: i32, parts: i32, slot: i32): void {
  const x = argP(a, 0);
  const y = argP(a, 1);
  const pos = argP(a, 2);
  const freq = argP(a, 3);
  const M = argI(a, 4);
  const width = argI(a, 5);
  const hd = argI(a, 6);
  const cs = argP(a, 7) + <usize>slot * argP(a, 8); // cos[half] then sin[half]
  const half = hd >> 1;
  const half4 = half & ~3;
  const sn = cs + (<usize>half << 2);
  const heads = width / hd;
  for (let r = share(M, part, parts); r < share(M, part + 1, parts); r++) {
    const p = <f32>load<i32>(pos + (<usize>r << 2));
    for (let i = 0; i < half; i++) {
      const ang = p * load<f32>(freq + (<usize>i << 2));
      store<f32>(cs + (<usize>i << 2), Mathf.cos(ang));
      store<f32>(sn + (<usize>i << 2), Mathf.sin(ang));
    }
    for (let h = 0; h < heads; h++) {
      const base = (<usize>r * width + <usize>h * hd) << 2;
      const xa = x + base;
      const xb = xa + (<usize>half << 2);
      const ya = y + base;
      const yb = ya + (<usize>half << 2);
      let i = 0;
      for (; i < half4; i += 4) {
        const o = <usize>i << 2;
        const u = v128.load(xa + o);
        const v = v128.load(xb + o);
        const c = v128.load(cs + o);
        const s = v128.load(sn + o);
        v128.store(ya + o, f32x4.sub(f32x4.mul(u, c), f32x4.mul(v, s)));
        v128.store(yb + o, f32x4.add(f32x4.mul(v, c), f32x4.mul(u, s)));
      }
      for (; i < half; i++) {
        const o = <usize>i << 2;
        const u = load<f32>(xa + o);
        const v = load<f32>(xb + o);
        const c = load<f32>(cs + o);
        const s = load<f32>(sn + o);
        store<f32>(ya + o, u * c - v * s);
        store<f32>(yb + o, v * c + u * s);
      }
    }
  }
}

// args: 0 gate, 1 up, 2 y, 3 n. y = gate · sigmoid(gate) · up
export function swiglu(a: usize, part: i32, parts: i32, slot: i32): void {
  const g = argP(a, 0);
  const u = argP(a, 1);
  const y = argP(a, 2);
  const n = argI(a, 3);
  const q = (n + 3) >> 2;
  const i0 = share(q, part, parts) << 2;
  const i1 = min<i32>(n, share(q, part + 1, parts) << 2);
  const one = one4();
  let i = i0;
  for (; i + 4 <= i1; i += 4) {
    const o = <usize>i << 2;
    const gv = v128.load(g + o);
    const sig = f32x4.div(one, f32x4.add(one, exp4(f32x4.neg(gv))));
    v128.store(y + o, f32x4.mul(f32x4.mul(gv, sig), v128.load(u + o)));
  }
  for (; i < i1; i++) {
    const o = <usize>i << 2;
    const gv = load<f32>(g + o);
    store<f32>(y + o, (gv / (1 + Mathf.exp(-gv))) * load<f32>(u + o));
  }
}

// args: 0 a, 1 b, 2 y, 3 n. y = a + b
export function add(a: usize, part: i32, parts: i32, slot: i32): void {
  const x = argP(a, 0);
  const z = argP(a, 1);
  const y = argP(a, 2);
  const n = argI(a, 3);
  const q = (n + 3) >> 2;
  const i0 = share(q, part, parts) << 2;
  const i1 = min<i32>(n, share(q, part + 1, parts) << 2);
  let i = i0;
  for (; i + 4 <= i1; i += 4) {
    const o = <usize>i << 2;
    v128.store(y + o, f32x4.add(v128.load(x + o), v128.load(z + o)));
  }
  for (; i < i1; i++) {
    const o = <usize>i << 2;
    store<f32>(y + o, load<f32>(x + o) + load<f32>(z + o));
  }
}

// args: 0 x, 1 y, 2 M, 3 N. Row-wise softmax, max-subtracted.
export function softmax(a: usize, part: i32, parts: i32, slot: i32): void {
  const x = argP(a, 0);
  const y = argP(a, 1);
  const M = argI(a, 2);
  const N = argI(a, 3);
  for (let r = share(M, part, parts); r < share(M, part + 1, parts); r++) softmaxRow(x + ((<usize>r * N) << 2), y + ((<usize>r * N) << 2), N);
}

export function softmaxRow(x: usize, y: usize, n: i32): void {
  const n4 = n & ~3;
  let mv = negInf4();
  let k = 0;
  for (; k < n4; k += 4) mv = f32x4.max(mv, v128.load(x + (<usize>k << 2)));
  let m = hmax(mv);
  for (; k < n; k++) m = max<f32>(m, load<f32>(x + (<usize>k << 2)));
  const ms = f32x4.splat(m);
  let sv = f32x4.splat(0);
  k = 0;
  for (; k < n4; k += 4) {
    const o = <usize>k << 2;
    const e = exp4(f32x4.sub(v128.load(x + o), ms));
    v128.store(y + o, e);
    sv = f32x4.add(sv, e);
  }
  let s = hsum(sv);
  for (; k < n; k++) {
    const o = <usize>k << 2;
    const e = Mathf.exp(load<f32>(x + o) - m);
    store<f32>(y + o, e);
    s += e;
  }
  const inv = f32x4.splat(1.0 / s);
  k = 0;
  for (; k < n4; k += 4) {
    const o = <usize>k << 2;
    v128.store(y + o, f32x4.mul(v128.load(y + o), inv));
  }
  for (; k < n; k++) {
    const o = <usize>k << 2;
    store<f32>(y + o, load<f32>(y + o) / s);
  }
}

// args: 0 x, 1 out (i32 [M]), 2 M, 3 N. First index of the row maximum.
export function argmax(a: usize, part: i32, parts: i32, slot: i32): void {
  const x = argP(a, 0);
  const out = argP(a, 1);
  const M = argI(a, 2);
  const N = argI(a, 3);
  const n4 = N & ~3;
  for (let r = share(M, part, parts); r < share(M, part + 1, parts); r++) {
    const xr = x + ((<usize>r * N) << 2);
    // per lane: best value and its index (strict > keeps the first occurrence within a lane)
    let bv = f32x4.splat(-Infinity);
    let bi = i32x4.splat(0);
    let idx = i32x4(0, 1, 2, 3);
    const four = i32x4.splat(4);
    for (let k = 0; k < n4; k += 4) {
      const v = v128.load(xr + (<usize>k << 2));
      const gt = f32x4.gt(v, bv);
      bv = v128.bitselect(v, bv, gt);
      bi = v128.bitselect(idx, bi, gt);
      idx = i32x4.add(idx, four);
    }
    let best: f32 = -Infinity;
    let bestI: i32 = 0;
    for (let l = 0; l < 4; l++) {
      let v: f32;
      let j: i32;
      if (l == 0) { v = f32x4.extract_lane(bv, 0); j = i32x4.extract_lane(bi, 0); }
      else if (l == 1) { v = f32x4.extract_lane(bv, 1); j = i32x4.extract_lane(bi, 1); }
      else if (l == 2) { v = f32x4.extract_lane(bv, 2); j = i32x4.extract_lane(bi, 2); }
      else { v = f32x4.extract_lane(bv, 3); j = i32x4.extract_lane(bi, 3); }
      if (v > best || (v == best && j < bestI)) { best = v; bestI = j; }
    }
    if (n4 == 0) best = load<f32>(xr);
    for (let k = n4; k < N; k++) {
      const v = load<f32>(xr + (<usize>k << 2));
      if (v > best) { best = v; bestI = k; }
    }
    store<i32>(out + (<usize>r << 2), bestI);
  }
}

// args: 0 table, 1 ids (i32 [M]), 2 y, 3 M, 4 D, 5 table is f16, 6 f16 multiplier (see matmul).
// y[r] = table[ids[r]] as f32.
// ids are checked by the host.
export function gather(a: usize, part: i32, parts: i32, slot: i32): void {
  const t = argP(a, 0);
  const ids = argP(a, 1);
  const y = argP(a, 2);
  const M = argI(a, 3);
  const D = argI(a, 4);
  const f16 = argI(a, 5);
  if (f16) setHalfScale(argF(a, 6));
  const d4 = D & ~3;
  for (let r = share(M, part, parts); r < share(M, part + 1, parts); r++) {
    const row = <usize>load<i32>(ids + (<usize>r << 2));
    const yr = y + ((<usize>r * D) << 2);
    if (f16) {
      const src = t + ((row * D) << 1);
      let k = 0;
      for (; k < d4; k += 4) v128.store(yr + (<usize>k << 2), loadHalf4(src + (<usize>k << 1)));
      for (; k < D; k++) store<f32>(yr + (<usize>k << 2), halfToF32s(load<u16>(src + (<usize>k << 1))));
    } else {
      memory.copy(yr, t + ((row * D) << 2), <usize>D << 2);
    }
  }
}

// args: 0 src, 1 dst, 2 bytes. Non-overlapping copy, split over threads in 64-byte aligned shares
// (measures the machine's copy bandwidth with the same threads as the kernels).
export function copy(a: usize, part: i32, parts: i32, slot: i32): void {
  const src = argP(a, 0);
  const dst = argP(a, 1);
  const n = argI(a, 2);
  const q = (n + 63) >> 6;
  const b0 = min<i32>(n, share(q, part, parts) << 6);
  const b1 = min<i32>(n, share(q, part + 1, parts) << 6);
  if (b1 > b0) memory.copy(dst + <usize>b0, src + <usize>b0, <usize>(b1 - b0));
}
