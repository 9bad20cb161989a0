// k-means assignment: each point goes to the centroid minimising ‖x − c‖² = ‖x‖² − 2x·c + ‖c‖², i.e.
// argmin(‖c‖² − 2x·c) (for unit-norm centroids this is the max dot product). Points split over threads;
// centroids scored 4 at a time.
import { argI, argP, hsum, hsum4, madd, share } from './simd';

// args: 0 points [n][d], 1 centroids [c][d], 2 cnorm ([c] = ‖c‖²), 3 assign (i32 [n]), 4 dist ([n] = ‖x − c‖²;
// 0 = none), 5 n, 6 d, 7 c
export function kmeans_assign(a: usize, part: i32, parts: i32, slot: i32): void {
  const X = argP(a, 0);
  const C = argP(a, 1);
  const cn = argP(a, 2);
  const out = argP(a, 3);
  const dist = argP(a, 4);
  const n = argI(a, 5);
  const d = argI(a, 6);
  const c = argI(a, 7);
  const db = <usize>d << 2;
  const d4 = <usize>(d & ~3) << 2;
  for (let i = share(n, part, parts); i < share(n, part + 1, parts); i++) {
    const x = X + <usize>i * db;
    let best: f32 = Infinity;
    let bi = 0;
    let j = 0;
    for (; j + 4 <= c; j += 4) {
      const c0 = C + <usize>j * db;
      const c1 = c0 + db;
      const c2 = c1 + db;
      const c3 = c2 + db;
      let s0 = f32x4.splat(0), s1 = f32x4.splat(0), s2 = f32x4.splat(0), s3 = f32x4.splat(0);
      for (let o: usize = 0; o < d4; o += 16) {
        const xv = v128.load(x + o);
        s0 = madd(xv, v128.load(c0 + o), s0);
        s1 = madd(xv, v128.load(c1 + o), s1);
        s2 = madd(xv, v128.load(c2 + o), s2);
        s3 = madd(xv, v128.load(c3 + o), s3);
      }
      let dots = hsum4(s0, s1, s2, s3);
      for (let o = d4; o < db; o += 4) {
        const xs = load<f32>(x + o);
        dots = f32x4.add(dots, f32x4.mul(f32x4.splat(xs), f32x4(load<f32>(c0 + o), load<f32>(c1 + o), load<f32>(c2 + o), load<f32>(c3 + o))));
      }
      const sc = f32x4.sub(v128.load(cn + (<usize>j << 2)), f32x4.add(dots, dots));
      const e0 = f32x4.extract_lane(sc, 0);
      const e1 = f32x4.extract_lane(sc, 1);
      const e2 = f32x4.extract_lane(sc, 2);
      const e3 = f32x4.extract_lane(sc, 3);
      if (e0 < best) { best = e0; bi = j; }
      if (e1 < best) { best = e1; bi = j + 1; }
      if (e2 < best) { best = e2; bi = j + 2; }
      if (e3 < best) { best = e3; bi = j + 3; }
    }
    for (; j < c; j++) {
      const cj = C + <usize>j * db;
      let s = f32x4.splat(0);
      for (let o: usize = 0; o < d4; o += 16) s = madd(v128.load(x + o), v128.load(cj + o), s);
      let dt = hsum(s);
      for (let o = d4; o < db; o += 4) dt += load<f32>(x + o) * load<f32>(cj + o);
      const e = load<f32>(cn + (<usize>j << 2)) - 2 * dt;
      if (e < best) { best = e; bi = j; }
    }
    store<i32>(out + (<usize>i << 2), bi);
    if (dist) {
      let s = f32x4.splat(0);
      for (let o: usize = 0; o < d4; o += 16) {
        const xv = v128.load(x + o);
        s = madd(xv, xv, s);
      }
      let xx = hsum(s);
      for (let o = d4; o < db; o += 4) xx += load<f32>(x + o) * load<f32>(x + o);
      store<f32>(dist + (<usize>i << 2), max<f32>(0, xx + best));
    }
  }
}
