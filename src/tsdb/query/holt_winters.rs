//! `holt_winters(agg(field), N, S)` and `holt_winters_with_fit(…)`: the
//! damped Holt-Winters method over the buckets of an aggregate, fitted by
//! a Nelder-Mead search from a grid of starting guesses, forecasting N
//! buckets past the last (with the fitted values before them for
//! `_with_fit`). The arithmetic follows influxd's step for step, so the
//! forecasts are the same floats: the same starting values and grid, the
//! same simplex moves and stopping rule, parameters clamped (and the
//! seasonal ones updated) in place while the error is computed, and
//! powers taken as Go's `math.Pow` takes them.

/// Starting level and trend weight.
const WEIGHT: f64 = 0.5;
/// The optimizer stops once the spread of its errors is below this.
const EPSILON: f64 = 1.0e-4;
/// The grid of starting guesses for alpha, beta, gamma and phi: from
/// `GUESS_LOWER` below `GUESS_UPPER` by `GUESS_STEP`.
const GUESS_LOWER: f64 = 0.3;
const GUESS_UPPER: f64 = 1.0;
const GUESS_STEP: f64 = 0.4;
/// Most iterations of one Nelder-Mead search.
const MAX_ITERATIONS: usize = 1000;

/// The forecast of `points` (bucket start, value; in time order, empty
/// buckets left out) spaced `interval` ns apart: `h` buckets past the last
/// point, after the fitted values from the first point if `fit`; `m`
/// buckets make a season (below 2: none).
pub(super) fn holt_winters(
    points: &[(i64, f64)],
    interval: i64,
    h: usize,
    m: usize,
    fit: bool,
) -> Vec<(i64, f64)> {
    let seasonal = m >= 2;
    let interval = interval.max(1);
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Vec::new();
    };
    if points.len() < 2 || (seasonal && points.len() < m) || h == 0 {
        return Vec::new();
    }
    let round = |t: i64| {
        // Go's `%` and `/` truncate toward zero.
        let r = t % interval;
        if r > interval / 2 {
            (t / interval + 1) * interval
        } else {
            (t / interval) * interval
        }
    };
    let (start, stop) = (round(first.0), round(last.0));
    if (stop - start) / interval <= 0 {
        return Vec::new();
    }
    // One value per interval from the first point; NaN where none.
    let mut y = vec![first.1];
    let mut t = start;
    for p in &points[1..] {
        let rounded = round(p.0);
        if rounded <= t {
            continue;
        }
        t += interval;
        while rounded != t {
            y.push(f64::NAN);
            t += interval;
        }
        y.push(p.1);
    }
    let model = Model { y, seasonal };
    let params = model.best_params(m);
    let forecast = model.forecast(h, &mut params.clone());
    if fit {
        forecast
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.is_nan())
            .map(|(i, v)| (first.0 + interval * i as i64, *v))
            .collect()
    } else {
        forecast[model.y.len()..]
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.is_nan())
            .map(|(i, v)| (last.0 + interval * (i as i64 + 1), *v))
            .collect()
    }
}

/// The observed values (NaN: a missing bucket) and whether they have a
/// season.
struct Model {
    y: Vec<f64>,
    seasonal: bool,
}

impl Model {
    /// The parameters (alpha, beta, gamma, phi, level, trend, seasonal
    /// factors) of the least squared error over the grid of guesses.
    fn best_params(&self, m: usize) -> Vec<f64> {
        let y = &self.y;
        let mut l0 = 0.0;
        if self.seasonal {
            for v in y.iter().take(m).filter(|v| !v.is_nan()) {
                l0 += (1.0 / m as f64) * v;
            }
        } else {
            l0 += WEIGHT * y[0];
        }
        let mut b0 = 0.0;
        if self.seasonal {
            for i in 0..m {
                if m + i >= y.len() {
                    break;
                }
                if !y[i].is_nan() && !y[m + i].is_nan() {
                    b0 += 1.0 / (m * m) as f64 * (y[m + i] - y[i]);
                }
            }
        } else if !y[1].is_nan() {
            b0 = WEIGHT * (y[1] - y[0]);
        }
        let mut start = vec![0.0; 6];
        start[4] = l0;
        start[5] = b0;
        if self.seasonal {
            start.extend(
                y.iter()
                    .take(m)
                    .map(|v| if v.is_nan() { 0.0 } else { v / l0 }),
            );
        }
        let mut best: Option<(f64, Vec<f64>)> = None;
        let mut alpha = GUESS_LOWER;
        while alpha < GUESS_UPPER {
            let mut beta = GUESS_LOWER;
            while beta < GUESS_UPPER {
                let mut gamma = GUESS_LOWER;
                while gamma < GUESS_UPPER {
                    let mut phi = GUESS_LOWER;
                    while phi < GUESS_UPPER {
                        start[..4].copy_from_slice(&[alpha, beta, gamma, phi]);
                        let (sse, params) = nelder_mead(|p| self.sse(p), &start);
                        if best.as_ref().is_none_or(|(min, _)| sse < *min) {
                            best = Some((sse, params));
                        }
                        phi += GUESS_STEP;
                    }
                    gamma += GUESS_STEP;
                }
                beta += GUESS_STEP;
            }
            alpha += GUESS_STEP;
        }
        best.map_or(start, |(_, p)| p)
    }

    /// The fitted values and `h` more; clamps `params` and updates its
    /// seasonal factors as it goes (the optimizer sees both).
    fn forecast(&self, h: usize, params: &mut [f64]) -> Vec<f64> {
        for p in params.iter_mut().take(4) {
            *p = p.clamp(0.0, 1.0);
        }
        let (alpha, beta, gamma, phi) = (params[0], params[1], params[2], params[3]);
        let mut y_t = self.y[0];
        let mut phi_h = phi;
        let (mut l_t, mut b_t) = (params[4], params[5]);
        let seasonals = &mut params[6..];
        let m = seasonals.len();
        let mut so = 0;
        if self.seasonal {
            if m == 1 {
                seasonals[0] = 1.0;
            }
            so = m - 1;
        }
        let n = self.y.len();
        let mut out = vec![0.0; n + h];
        out[0] = y_t;
        let (mut s_tm, mut s_tmh) = (1.0, 1.0);
        for t in 1..n + h {
            if self.seasonal {
                let hm = t % m;
                s_tm = seasonals[(t + so - m) % m];
                s_tmh = seasonals[(t + hm + so - m) % m];
            }
            let l_prev = l_t;
            l_t = alpha * (y_t / s_tm) + (1.0 - alpha) * (l_prev + phi * b_t);
            let b_next = beta * (l_t - l_prev) + (1.0 - beta) * phi * b_t;
            let s_t = gamma * (y_t / (l_prev + phi * b_t)) + (1.0 - gamma) * s_tm;
            b_t = b_next;
            y_t = (l_t + phi_h * b_t) * s_tmh;
            phi_h += go_pow_int(phi, t as i64);
            if self.seasonal {
                seasonals[(t + so) % m] = s_t;
                so += 1;
            }
            out[t] = y_t;
        }
        out
    }

    /// The sum of squared errors of the fit (infinite if it is NaN where
    /// a value was observed).
    fn sse(&self, params: &mut [f64]) -> f64 {
        let mut sse = 0.0;
        for (f, y) in self.forecast(0, params).iter().zip(&self.y) {
            if y.is_nan() {
                continue;
            }
            if f.is_nan() {
                return f64::INFINITY;
            }
            let d = f - y;
            sse += d * d;
        }
        sse
    }
}

/// Nelder-Mead minimisation of `f` from `start` (reflection 1, contraction
/// 0.5, expansion 2, a regular simplex of scale 1): the least value found
/// and where. `f` may change the point it is given.
fn nelder_mead(mut f: impl FnMut(&mut [f64]) -> f64, start: &[f64]) -> (f64, Vec<f64>) {
    let n = start.len();
    let nf = n as f64;
    let pn = ((nf + 1.0).sqrt() - 1.0 + nf) / (nf * 2f64.sqrt());
    let qn = ((nf + 1.0).sqrt() - 1.0) / (nf * 2f64.sqrt());
    let mut v: Vec<Vec<f64>> = vec![start.to_vec(); n + 1];
    for (i, row) in v.iter_mut().enumerate().skip(1) {
        for (j, x) in row.iter_mut().enumerate() {
            *x = start[j] + if i - 1 == j { pn } else { qn };
        }
    }
    let mut fv: Vec<f64> = v.iter_mut().map(|row| f(row)).collect();
    let (mut vr, mut ve, mut vc, mut vm) = (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    for _ in 0..MAX_ITERATIONS {
        // The worst, the best, and the worst but one.
        let (mut vg, mut vs) = (0, 0);
        for i in 0..=n {
            if fv[i] > fv[vg] {
                vg = i;
            }
            if fv[i] < fv[vs] {
                vs = i;
            }
        }
        let mut vh = vs;
        for i in 0..=n {
            if fv[i] > fv[vh] && fv[i] < fv[vg] {
                vh = i;
            }
        }
        // The centroid of all but the worst.
        for (i, c) in vm.iter_mut().enumerate() {
            let mut sum = 0.0;
            for (k, row) in v.iter().enumerate() {
                if k != vg {
                    sum += row[i];
                }
            }
            *c = sum / nf;
        }
        for i in 0..n {
            vr[i] = vm[i] + (vm[i] - v[vg][i]);
        }
        let fr = f(&mut vr);
        if fr < fv[vh] && fr >= fv[vs] {
            v[vg].copy_from_slice(&vr);
            fv[vg] = fr;
        }
        if fr < fv[vs] {
            for i in 0..n {
                ve[i] = vm[i] + 2.0 * (vr[i] - vm[i]);
            }
            let fe = f(&mut ve);
            if fe < fr {
                v[vg].copy_from_slice(&ve);
                fv[vg] = fe;
            } else {
                v[vg].copy_from_slice(&vr);
                fv[vg] = fr;
            }
        }
        if fr >= fv[vh] {
            if fr < fv[vg] && fr >= fv[vh] {
                for i in 0..n {
                    vc[i] = vm[i] + 0.5 * (vr[i] - vm[i]);
                }
            } else {
                for i in 0..n {
                    vc[i] = vm[i] - 0.5 * (vm[i] - v[vg][i]);
                }
            }
            let fc = f(&mut vc);
            if fc < fv[vg] {
                v[vg].copy_from_slice(&vc);
                fv[vg] = fc;
            } else {
                // Shrink toward the best; only the worst two are
                // evaluated again (as influxd's optimizer does).
                let best = v[vs].clone();
                for (row, r) in v.iter_mut().enumerate() {
                    if row != vs {
                        for (x, b) in r.iter_mut().zip(&best) {
                            *x = b + (*x - b) / 2.0;
                        }
                    }
                }
                fv[vg] = f(&mut v[vg]);
                fv[vh] = f(&mut v[vh]);
            }
        }
        let avg = fv.iter().sum::<f64>() / (nf + 1.0);
        let mut spread = 0.0;
        for x in &fv {
            spread += (x - avg) * (x - avg) / nf;
        }
        if spread.sqrt() < EPSILON {
            break;
        }
    }
    let mut vs = 0;
    for i in 0..=n {
        if fv[i] < fv[vs] {
            vs = i;
        }
    }
    let mut best = v[vs].clone();
    let min = f(&mut best);
    (min, v[vs].clone())
}

/// `x` to the power `n` (n ≥ 0) as Go's `math.Pow` computes it for an
/// integer power: the mantissa squared and multiplied in by the bits of
/// `n`, the exponent kept apart, scaled once at the end.
fn go_pow_int(x: f64, n: i64) -> f64 {
    if n == 0 || x == 1.0 {
        return 1.0;
    }
    if n == 1 {
        return x;
    }
    if x.is_nan() {
        return f64::NAN;
    }
    if x == 0.0 {
        return if x.is_sign_negative() && n % 2 == 1 {
            x
        } else {
            0.0
        };
    }
    if x.is_infinite() {
        return if x < 0.0 && n % 2 == 1 {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
    }
    let (mut x1, mut xe) = frexp(x);
    let (mut a1, mut ae) = (1.0f64, 0i64);
    let mut i = n;
    while i != 0 {
        if !(-(1 << 12)..=(1 << 12)).contains(&xe) {
            ae += xe;
            break;
        }
        if i & 1 == 1 {
            a1 *= x1;
            ae += xe;
        }
        x1 *= x1;
        xe <<= 1;
        if x1 < 0.5 {
            x1 += x1;
            xe -= 1;
        }
        i >>= 1;
    }
    ldexp(a1, ae)
}

/// `x` as a mantissa in [0.5, 1) and a power of two (x finite, non-zero).
fn frexp(x: f64) -> (f64, i64) {
    let (mut x, mut bias) = (x, 0);
    if x.abs() < f64::MIN_POSITIVE {
        x *= (1u64 << 52) as f64;
        bias = -52;
    }
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64 - 1022;
    let mantissa = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (mantissa, exp + bias)
}

/// `frac` × 2^`exp`, rounded once.
fn ldexp(frac: f64, exp: i64) -> f64 {
    let mut x = frac;
    let mut e = exp;
    // Steps that stay exact while the result is normal.
    while e > 1000 {
        x *= 2f64.powi(1000);
        e -= 1000;
    }
    while e < -1000 {
        if x == 0.0 || !x.is_finite() {
            return x;
        }
        x *= 2f64.powi(-1000);
        e += 1000;
    }
    x * 2f64.powi(i32::try_from(e).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_powers_match_repeated_squaring() {
        assert_eq!(go_pow_int(0.5, 3), 0.125);
        assert_eq!(go_pow_int(2.0, 10), 1024.0);
        assert_eq!(go_pow_int(0.7, 0), 1.0);
        assert!((go_pow_int(0.3, 7) - 0.3f64.powi(7)).abs() < 1e-15);
        assert_eq!(frexp(8.0), (0.5, 4));
        assert_eq!(ldexp(0.5, 4), 8.0);
    }

    #[test]
    fn a_straight_line_is_continued() {
        let pts: Vec<(i64, f64)> = (0..10).map(|i| (i * 10, 2.0 * i as f64)).collect();
        let out = holt_winters(&pts, 10, 3, 0, false);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].0, 100);
        for (k, (_, v)) in out.iter().enumerate() {
            let want = 2.0 * (10 + k) as f64;
            assert!((v - want).abs() < 1.0, "{v} vs {want}");
        }
        // With the fit: one value per bucket from the first, then three.
        assert_eq!(holt_winters(&pts, 10, 3, 0, true).len(), 13);
        // Too few points: nothing.
        assert!(holt_winters(&pts[..1], 10, 3, 0, false).is_empty());
    }
}
