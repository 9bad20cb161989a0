// Attention with a flash-style online softmax: one pass over the keys in blocks of 64, running max m,
// running denominator l and an unnormalised accumulator per query row; up to 4 query rows that share a
// kv head are processed together so every key and value vector is loaded once for the 4 rows.
// Modes (same inner loop, different key sets):
//   0 dense: keys 0..nk-1, causal when qpos0 ≥ 0 (query i sees keys ≤ qpos0 + i)
//   1 gathered (squeezed attention): per kv head, an explicit list of key positions (no causal mask)
//   2 block-sparse (sparse prefill): per (query head, query block of BQ rows), a list of key ranges
//     [start, end) (disjoint), causal as in mode 0; a full range list reproduces dense attention;
//     optionally also gathered columns per (head, query block): positions outside its ranges (args 21/22)
//   3 grouped ranges (squeezed attention's step): per kv head, one list of key ranges [start, end) for
//     its whole query group (rows grouped as in modes 0/1, so each key is loaded once for the group),
//     causal as in mode 0
// Optionally writes lse = m + log(l) per (query row, head) so partial results merge by log-sum-exp.
import { argF, argI, argP, exp4, hsum4, madd, negInf4 } from './simd';

const BK: i32 = 64; // keys per block
// per-thread scratch layout (bytes)
const ACC: usize = 0; // [4][d ≤ 256] f32 accumulators
const SC: usize = 4096; // [BK][4 rows] f32 scores / probabilities
const VP: usize = 5120; // [BK] u32 value-row pointers
const ST: usize = 5376; // m: f32x4, l: f32x4
const PF: usize = 5408; // sink of the early loads that warm the next key range (mode 3)
const NO_LIMIT: i32 = 0x7fffffff;

// args: 0 q, 1 k, 2 v, 3 out, 4 lse (0 = none; [nq][H]), 5 nq, 6 H, 7 Hkv, 8 d, 9 scale (f32),
// 10 row stride of q/out (floats), 11 kv head stride (floats), 12 kv position stride (floats),
// 13 qpos0 (-1 = not causal), 14 nk, 15 scratch, 16 scratch bytes/thread, 17 mode, 18 idx, 19 offs, 20 BQ,
// 21 column positions (mode 2; 0 = none), 22 column offsets [H·nQB + 1] into arg 21.
// q, out: [nq][H][d] (row stride arg 10); k, v: [kv_head][pos][d] via strides 11/12.
export function attention(a: usize, part: i32, parts: i32, slot: i32): void {
  const H = argI(a, 6);
  const Hkv = argI(a, 7);
  const nq = argI(a, 5);
  const mode = argI(a, 17);
  const G = H / Hkv;
  const S = argP(a, 15) + <usize>slot * argP(a, 16);
  if (mode == 2) {
    const BQ = argI(a, 20);
    const nQB = (nq + BQ - 1) / BQ;
    const U = H * nQB;
    for (let u = part; u < U; u += parts) {
      const h = u / nQB;
      const qb = u % nQB;
      const i1 = min<i32>(nq, (qb + 1) * BQ);
      for (let i = qb * BQ; i < i1; i += 4) {
        const nr = min<i32>(4, i1 - i);
        runUnit(a, S, h / G, nr, i, h, 0, 1, u);
      }
    }
  } else {
    const per = nq * G;
    const unitsPerG = (per + 3) >> 2;
    const U = Hkv * unitsPerG;
    for (let u = part; u < U; u += parts) {
      const g = u / unitsPerG;
      const r0 = (u % unitsPerG) << 2;
      const nr = min<i32>(4, per - r0);
      // row r (0..per) of kv head g is query r / G of head g·G + r % G
      runUnit(a, S, g, nr, r0 / G, g * G + (r0 % G), G, 0, u);
    }
  }
}

/**
 * Rows t = 0..nr-1 of one unit: when `grouped` (G > 0) row t is flat index r0 + t over (query, head in
 * group), starting at query i0 and head h0; otherwise rows are queries i0 + t of head h0.
 */
function runUnit(a: usize, S: usize, g: i32, nr: i32, i0: i32, h0: i32, G: i32, sparse: i32, u: i32): void {
  const q = argP(a, 0);
  const k = argP(a, 1);
  const v = argP(a, 2);
  const out = argP(a, 3);
  const lse = argP(a, 4);
  const H = argI(a, 6);
  const d = argI(a, 8);
  const scale = argF(a, 9);
  const qs = <usize>argI(a, 10);
  const skH = <usize>argI(a, 11);
  const skT = <usize>argI(a, 12) << 2;
  const qpos0 = argI(a, 13);
  const nk = argI(a, 14);
  const mode = argI(a, 17);
  // row pointers and per-row key limits (keys at positions ≥ limit are masked)
  let qp0: usize = 0, qp1: usize = 0, qp2: usize = 0, qp3: usize = 0;
  let l0 = 0, l1 = 0, l2 = 0, l3 = 0;
  let klim = 0;
  for (let t = 0; t < 4; t++) {
    let i = i0 + t;
    let h = h0;
    if (G > 0) {
      const r = i0 * G + (h0 - g * G) + t;
      i = r / G;
      h = g * G + (r % G);
    }
    const valid = t < nr;
    const qp = valid ? q + ((<usize>i * qs + <usize>h * d) << 2) : q;
    let lim = valid ? (mode == 1 ? NO_LIMIT : qpos0 >= 0 ? min<i32>(nk, qpos0 + i + 1) : nk) : 0;
    if (lim > klim) klim = lim;
    if (t == 0) { qp0 = qp; l0 = lim; }
    else if (t == 1) { qp1 = qp; l1 = lim; }
    else if (t == 2) { qp2 = qp; l2 = lim; }
    else { qp3 = qp; l3 = lim; }
  }
  const lim = i32x4(l0, l1, l2, l3);
  const kb = k + ((<usize>g * skH) << 2);
  const vb = v + ((<usize>g * skH) << 2);
  // init state
  memory.fill(S + ACC, 0, (<usize>d << 4));
  v128.store(S + ST, f32x4.splat(-1e30));
  v128.store(S + ST + 16, f32x4.splat(0));
  if (mode == 0) {
    attendKeys(qp0, qp1, qp2, qp3, lim, kb, vb, skT, d, scale, 0, 0, klim, S);
  } else if (mode == 1) {
    const offs = argP(a, 19);
    const o0 = load<i32>(offs + (<usize>g << 2));
    const o1 = load<i32>(offs + (<usize>(g + 1) << 2));
    const idx = argP(a, 18) + (<usize>o0 << 2);
    attendKeys(qp0, qp1, qp2, qp3, lim, kb, vb, skT, d, scale, 0, idx, o1 - o0, S);
  } else {
    const offs = argP(a, 19);
    const ranges = argP(a, 18);
    const w = mode == 3 ? g : u; // mode 3: one range list per kv head
    const o0 = load<i32>(offs + (<usize>w << 2));
    const o1 = load<i32>(offs + (<usize>(w + 1) << 2));
    for (let p = o0; p < o1; p++) {
      const s = load<i32>(ranges + (<usize>p << 3));
      const e = min<i32>(load<i32>(ranges + (<usize>p << 3) + 4), klim);
      // short scattered ranges (squeezed attention's clusters) stall on each range's first keys: load the
      // next range's first keys now, so they arrive while this range is computed
      if (mode == 3 && p + 1 < o1) {
        const s1 = load<i32>(ranges + (<usize>(p + 1) << 3));
        const e1 = min<i32>(load<i32>(ranges + (<usize>(p + 1) << 3) + 4), klim);
        touchKeys(kb, vb, skT, d, s1, min<i32>(e1 - s1, 64), S);
      }
      if (e > s) attendKeys(qp0, qp1, qp2, qp3, lim, kb, vb, skT, d, scale, s, 0, e - s, S);
    }
    const coffs = argP(a, 22);
    if (coffs) {
      const c0 = load<i32>(coffs + (<usize>u << 2));
      const c1 = load<i32>(coffs + (<usize>(u + 1) << 2));
      const cidx = argP(a, 21) + (<usize>c0 << 2);
      if (c1 > c0) attendKeys(qp0, qp1, qp2, qp3, lim, kb, vb, skT, d, scale, 0, cidx, c1 - c0, S);
    }
  }
  // finalize: out = acc / l; lse = m + log l (rows with no keys: zeros and -inf)
  const m = v128.load(S + ST);
  const l = v128.load(S + ST + 16);
  for (let t = 0; t < nr; t++) {
    let i = i0 + t;
    let h = h0;
    if (G > 0) {
      const r = i0 * G + (h0 - g * G) + t;
      i = r / G;
      h = g * G + (r % G);
    }
    let lt: f32, mt: f32;
    if (t == 0) { lt = f32x4.extract_lane(l, 0); mt = f32x4.extract_lane(m, 0); }
    else if (t == 1) { lt = f32x4.extract_lane(l, 1); mt = f32x4.extract_lane(m, 1); }
    else if (t == 2) { lt = f32x4.extract_lane(l, 2); mt = f32x4.extract_lane(m, 2); }
    else { lt = f32x4.extract_lane(l, 3); mt = f32x4.extract_lane(m, 3); }
    const op = out + ((<usize>i * qs + <usize>h * d) << 2);
    const ap = S + ACC + ((<usize>t * d) << 2);
    const inv = f32x4.splat(lt > 0 ? <f32>1.0 / lt : 0);
    for (let o: usize = 0; o < (<usize>d << 2); o += 16) v128.store(op + o, f32x4.mul(v128.load(ap + o), inv));
    if (lse) store<f32>(lse + ((<usize>i * H + h) << 2), lt > 0 ? mt + Mathf.log(lt) : -Infinity);
  }
}

/** Loads every cache line of the K and V rows of keys start..start+cnt-1 (kept live through a sink). */
function touchKeys(kb: usize, vb: usize, skT: usize, d: i32, start: i32, cnt: i32, S: usize): void {
  let x = v128.load(S + PF);
  const db = <usize>d << 2;
  for (let t = 0; t < cnt; t++) {
    const kp = kb + <usize>(start + t) * skT;
    const vp = vb + <usize>(start + t) * skT;
    for (let o: usize = 0; o < db; o += 64) x = v128.or(x, v128.or(v128.load(kp + o), v128.load(vp + o)));
  }
  v128.store(S + PF, x);
}

/** Online-softmax update over `cnt` keys: positions start.. (idx = 0) or idx[0..cnt). */
function attendKeys(
  q0: usize, q1: usize, q2: usize, q3: usize, lim: v128, kb: usize, vb: usize, skT: usize,
  d: i32, scale: f32, start: i32, idx: usize, cnt: i32, S: usize,
): void {
  const db = <usize>d << 2;
  const sv = f32x4.splat(scale);
  const ninf = negInf4();
  for (let j0 = 0; j0 < cnt; j0 += BK) {
    const n = min<i32>(BK, cnt - j0);
    let mx = ninf;
    // scores, two keys at a time: 8 accumulators (4 rows × 2 keys), each q vector loaded once per pair
    let j = 0;
    for (; j + 2 <= n; j += 2) {
      const pa = idx ? load<i32>(idx + (<usize>(j0 + j) << 2)) : start + j0 + j;
      const pb = idx ? load<i32>(idx + (<usize>(j0 + j + 1) << 2)) : pa + 1;
      const ka = kb + <usize>pa * skT;
      const kbp = kb + <usize>pb * skT;
      store<u32>(S + VP + (<usize>j << 2), <u32>(vb + <usize>pa * skT));
      store<u32>(S + VP + (<usize>(j + 1) << 2), <u32>(vb + <usize>pb * skT));
      let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0);
      let e0 = f32x4.splat(0), e1 = f32x4.splat(0), e2 = f32x4.splat(0), e3 = f32x4.splat(0);
      for (let o: usize = 0; o < db; o += 16) {
        const kv = v128.load(ka + o);
        const kw = v128.load(kbp + o);
        let qv = v128.load(q0 + o);
        c0 = madd(qv, kv, c0);
        e0 = madd(qv, kw, e0);
        qv = v128.load(q1 + o);
        c1 = madd(qv, kv, c1);
        e1 = madd(qv, kw, e1);
        qv = v128.load(q2 + o);
        c2 = madd(qv, kv, c2);
        e2 = madd(qv, kw, e2);
        qv = v128.load(q3 + o);
        c3 = madd(qv, kv, c3);
        e3 = madd(qv, kw, e3);
      }
      let s = f32x4.mul(hsum4(c0, c1, c2, c3), sv);
      s = v128.bitselect(s, ninf, i32x4.lt_s(i32x4.splat(pa), lim));
      v128.store(S + SC + (<usize>j << 4), s);
      let t = f32x4.mul(hsum4(e0, e1, e2, e3), sv);
      t = v128.bitselect(t, ninf, i32x4.lt_s(i32x4.splat(pb), lim));
      v128.store(S + SC + (<usize>(j + 1) << 4), t);
      mx = f32x4.max(mx, f32x4.max(s, t));
    }
    for (; j < n; j++) {
      const pos = idx ? load<i32>(idx + (<usize>(j0 + j) << 2)) : start + j0 + j;
      const kp = kb + <usize>pos * skT;
      store<u32>(S + VP + (<usize>j << 2), <u32>(vb + <usize>pos * skT));
      let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0);
      for (let o: usize = 0; o < db; o += 16) {
        const kv = v128.load(kp + o);
        c0 = madd(v128.load(q0 + o), kv, c0);
        c1 = madd(v128.load(q1 + o), kv, c1);
        c2 = madd(v128.load(q2 + o), kv, c2);
        c3 = madd(v128.load(q3 + o), kv, c3);
      }
      let s = f32x4.mul(hsum4(c0, c1, c2, c3), sv);
      s = v128.bitselect(s, ninf, i32x4.lt_s(i32x4.splat(pos), lim));
      v128.store(S + SC + (<usize>j << 4), s);
      mx = f32x4.max(mx, s);
    }
    const m = v128.load(S + ST);
    const mnew = f32x4.max(m, mx);
    const corr = exp4(f32x4.sub(m, mnew));
    let lsum = f32x4.splat(0);
    for (let j = 0; j < n; j++) {
      const p = exp4(f32x4.sub(v128.load(S + SC + (<usize>j << 4)), mnew));
      v128.store(S + SC + (<usize>j << 4), p);
      lsum = f32x4.add(lsum, p);
    }
    v128.store(S + ST, mnew);
    v128.store(S + ST + 16, madd(v128.load(S + ST + 16), corr, lsum));
    const cr0 = v128.shuffle<f32>(corr, corr, 0, 0, 0, 0);
    const cr1 = v128.shuffle<f32>(corr, corr, 1, 1, 1, 1);
    const cr2 = v128.shuffle<f32>(corr, corr, 2, 2, 2, 2);
    const cr3 = v128.shuffle<f32>(corr, corr, 3, 3, 3, 3);
    const a0p = S + ACC;
    const a1p = a0p + db;
    const a2p = a1p + db;
    const a3p = a2p + db;
    // P·V, 8 output columns at a time: 8 accumulators, each probability broadcast once per key
    let o: usize = 0;
    for (; o + 32 <= db; o += 32) {
      let a0 = f32x4.mul(v128.load(a0p + o), cr0);
      let a1 = f32x4.mul(v128.load(a1p + o), cr1);
      let a2 = f32x4.mul(v128.load(a2p + o), cr2);
      let a3 = f32x4.mul(v128.load(a3p + o), cr3);
      let b0 = f32x4.mul(v128.load(a0p + o, 16), cr0);
      let b1 = f32x4.mul(v128.load(a1p + o, 16), cr1);
      let b2 = f32x4.mul(v128.load(a2p + o, 16), cr2);
      let b3 = f32x4.mul(v128.load(a3p + o, 16), cr3);
      for (let j = 0; j < n; j++) {
        const vp = <usize>load<u32>(S + VP + (<usize>j << 2)) + o;
        const vv = v128.load(vp);
        const vw = v128.load(vp, 16);
        const pp = S + SC + (<usize>j << 4);
        let p = v128.load32_splat(pp);
        a0 = madd(p, vv, a0);
        b0 = madd(p, vw, b0);
        p = v128.load32_splat(pp, 4);
        a1 = madd(p, vv, a1);
        b1 = madd(p, vw, b1);
        p = v128.load32_splat(pp, 8);
        a2 = madd(p, vv, a2);
        b2 = madd(p, vw, b2);
        p = v128.load32_splat(pp, 12);
        a3 = madd(p, vv, a3);
        b3 = madd(p, vw, b3);
      }
      v128.store(a0p + o, a0);
      v128.store(a1p + o, a1);
      v128.store(a2p + o, a2);
      v128.store(a3p + o, a3);
      v128.store(a0p + o, b0, 16);
      v128.store(a1p + o, b1, 16);
      v128.store(a2p + o, b2, 16);
      v128.store(a3p + o, b3, 16);
    }
    for (; o < db; o += 16) {
      let a0 = f32x4.mul(v128.load(a0p + o), cr0);
      let a1 = f32x4.mul(v128.load(a1p + o), cr1);
      let a2 = f32x4.mul(v128.load(a2p + o), cr2);
      let a3 = f32x4.mul(v128.load(a3p + o), cr3);
      for (let j = 0; j < n; j++) {
        const vv = v128.load(<usize>load<u32>(S + VP + (<usize>j << 2)) + o);
        const pp = S + SC + (<usize>j << 4);
        a0 = madd(v128.load32_splat(pp), vv, a0);
        a1 = madd(v128.load32_splat(pp, 4), vv, a1);
        a2 = madd(v128.load32_splat(pp, 8), vv, a2);
        a3 = madd(v128.load32_splat(pp, 12), vv, a3);
      }
      v128.store(a0p + o, a0);
      v128.store(a1p + o, a1);
      v128.store(a2p + o, a2);
      v128.store(a3p + o, a3);
    }
  }
}

// args: 0 o1, 1 lse1, 2 o2, 3 lse2, 4 out, 5 outLse (0 = none), 6 rows, 7 H, 8 d.
// Merges two partial attentions over disjoint key sets: out = (e^lse1·o1 + e^lse2·o2) / (e^lse1 + e^lse2).
// o*: [rows][H][d]; lse*: [rows][H].
export function attention_merge(a: usize, part: i32, parts: i32, slot: i32): void {
  const o1 = argP(a, 0);
  const s1 = argP(a, 1);
  const o2 = argP(a, 2);
  const s2 = argP(a, 3);
  const out = argP(a, 4);
  const so = argP(a, 5);
  const R = argI(a, 6) * argI(a, 7);
  const d = argI(a, 8);
  const db = <usize>d << 2;
  for (let r = <i32>((<i64>R * part) / parts); r < <i32>((<i64>R * (part + 1)) / parts); r++) {
    const la = load<f32>(s1 + (<usize>r << 2));
    const lb = load<f32>(s2 + (<usize>r << 2));
    const m = max<f32>(la, lb);
    let wa: f32 = 0, wb: f32 = 0;
    if (m > -Infinity) {
      wa = Mathf.exp(la - m);
      wb = Mathf.exp(lb - m);
    }
    const den = wa + wb;
    const fa = f32x4.splat(den > 0 ? wa / den : 0);
    const fb = f32x4.splat(den > 0 ? wb / den : 0);
    const base = <usize>r * db;
    for (let o: usize = 0; o < db; o += 16) {
      v128.store(out + base + o, madd(v128.load(o1 + base + o), fa, f32x4.mul(v128.load(o2 + base + o), fb)));
    }
    if (so) store<f32>(so + (<usize>r << 2), den > 0 ? m + Mathf.log(den) : -Infinity);
  }
}
