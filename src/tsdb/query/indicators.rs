//! The technical-analysis transformations of InfluxQL 1.6:
//! `exponential_moving_average`, `double_…`, `triple_exponential_moving_average`,
//! `relative_strength_index`, `triple_exponential_derivative`,
//! `kaufmans_efficiency_ratio`, `kaufmans_adaptive_moving_average` and
//! `chande_momentum_oscillator`. Each reads a column (raw points or the
//! buckets of an aggregate) in time order and answers one value per point
//! once its hold period has passed (by default, until it is warmed up),
//! computed in the order influxd computes it so that the floats are the
//! same.

/// Which indicator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IndicatorKind {
    /// `exponential_moving_average`
    Ema,
    /// `double_exponential_moving_average`
    Dema,
    /// `triple_exponential_moving_average`
    Tema,
    /// `relative_strength_index`
    Rsi,
    /// `triple_exponential_derivative`
    Trix,
    /// `kaufmans_efficiency_ratio`
    Ker,
    /// `kaufmans_adaptive_moving_average`
    Kama,
    /// `chande_momentum_oscillator`
    Cmo,
}

/// How an indicator's averages start before `period` points were seen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Warmup {
    /// `'exponential'` (the default): an exponential average whose weight
    /// follows the points seen so far.
    Exponential,
    /// `'simple'`: the plain mean of the points seen so far.
    Simple,
    /// `'none'` (`chande_momentum_oscillator` only): sums over a window.
    None,
}

/// One indicator call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Indicator {
    /// Which.
    pub kind: IndicatorKind,
    /// Its period (≥ 1).
    pub period: i64,
    /// Points answered nothing at the start (-1: until warmed up).
    pub hold: i64,
    /// How its averages warm up.
    pub warmup: Warmup,
}

impl IndicatorKind {
    /// The indicator of a function name.
    pub fn from_name(name: &str) -> Option<IndicatorKind> {
        Some(match name {
            "exponential_moving_average" => IndicatorKind::Ema,
            "double_exponential_moving_average" => IndicatorKind::Dema,
            "triple_exponential_moving_average" => IndicatorKind::Tema,
            "relative_strength_index" => IndicatorKind::Rsi,
            "triple_exponential_derivative" => IndicatorKind::Trix,
            "kaufmans_efficiency_ratio" => IndicatorKind::Ker,
            "kaufmans_adaptive_moving_average" => IndicatorKind::Kama,
            "chande_momentum_oscillator" => IndicatorKind::Cmo,
            _ => return None,
        })
    }

    /// Its function name.
    pub fn name(&self) -> &'static str {
        match self {
            IndicatorKind::Ema => "exponential_moving_average",
            IndicatorKind::Dema => "double_exponential_moving_average",
            IndicatorKind::Tema => "triple_exponential_moving_average",
            IndicatorKind::Rsi => "relative_strength_index",
            IndicatorKind::Trix => "triple_exponential_derivative",
            IndicatorKind::Ker => "kaufmans_efficiency_ratio",
            IndicatorKind::Kama => "kaufmans_adaptive_moving_average",
            IndicatorKind::Cmo => "chande_momentum_oscillator",
        }
    }

    /// The arguments it takes at most (the column, the period, then the
    /// hold period and the warm-up type if it has one).
    pub fn max_args(&self) -> usize {
        match self {
            IndicatorKind::Ker | IndicatorKind::Kama => 3,
            _ => 4,
        }
    }
}

/// `ind` over `values` (time order): (time, value) per point past the
/// hold period (an infinite derivative or ratio is left out, as influxd
/// leaves it out).
pub(super) fn indicator(ind: Indicator, values: &[(i64, f64)]) -> Vec<(i64, f64)> {
    let period = usize::try_from(ind.period).unwrap_or(1).max(1);
    let mut alg = Alg::new(ind.kind, period, ind.warmup);
    let hold = if ind.hold == -1 {
        alg.warm_count()
    } else {
        usize::try_from(ind.hold).unwrap_or(0)
    };
    let skip_inf = matches!(
        ind.kind,
        IndicatorKind::Trix | IndicatorKind::Ker | IndicatorKind::Kama
    );
    let mut out = Vec::new();
    for (count, (t, v)) in values.iter().enumerate() {
        let x = alg.add(*v);
        if count < hold || (skip_inf && x.is_infinite()) {
            continue;
        }
        out.push((*t, x));
    }
    out
}

/// An exponential moving average.
#[derive(Debug, Clone)]
struct Ema {
    period: usize,
    last: f64,
    count: usize,
    alpha: f64,
    warmup: Warmup,
}

impl Ema {
    fn new(period: usize, warmup: Warmup) -> Ema {
        Ema {
            period,
            last: 0.0,
            count: 0,
            alpha: 2.0 / (period + 1) as f64,
            warmup,
        }
    }

    fn warm_count(&self) -> usize {
        self.period - 1
    }

    fn warmed(&self) -> bool {
        self.count == self.period
    }

    fn add(&mut self, v: f64) -> f64 {
        let avg = if self.count == 0 {
            v
        } else if !self.warmed() {
            if self.warmup == Warmup::Simple {
                (self.last * self.count as f64 + v) / (self.count + 1) as f64
            } else {
                let alpha = 2.0 / (self.count + 2) as f64;
                (v - self.last) * alpha + self.last
            }
        } else {
            (v - self.last) * self.alpha + self.last
        };
        self.last = avg;
        if self.count < self.period {
            self.count += 1;
        }
        avg
    }

    /// Whether the next average in a chain takes this one's value (once
    /// warmed, or from the start with the exponential warm-up).
    fn feeds(&self) -> bool {
        self.warmed() || self.warmup == Warmup::Exponential
    }
}

/// One indicator's running state.
enum Alg {
    Ema(Ema),
    Dema(Ema, Ema),
    Tema(Ema, Ema, Ema),
    /// Averages of rises and of falls, and the last value.
    Rsi(Ema, Ema, f64),
    /// Three averages, the last, and how often the third was warm.
    Trix(Ema, Ema, Ema, f64, usize),
    Ker(Ker),
    /// The efficiency ratio and the last average.
    Kama(Ker, f64),
    Cmo(Cmo),
    /// The smoothed oscillator: averages of rises and falls, last value.
    Cmos(Ema, Ema, f64),
}

impl Alg {
    fn new(kind: IndicatorKind, period: usize, warmup: Warmup) -> Alg {
        let ema = || Ema::new(period, warmup);
        // Rises and falls: averages of period + 1 weighted 1/period.
        let wilder = || {
            let mut e = Ema::new(period + 1, warmup);
            e.alpha = 1.0 / period as f64;
            e
        };
        match kind {
            IndicatorKind::Ema => Alg::Ema(ema()),
            IndicatorKind::Dema => Alg::Dema(ema(), ema()),
            IndicatorKind::Tema => Alg::Tema(ema(), ema(), ema()),
            IndicatorKind::Rsi => Alg::Rsi(wilder(), wilder(), 0.0),
            IndicatorKind::Trix => Alg::Trix(ema(), ema(), ema(), 0.0, 0),
            IndicatorKind::Ker => Alg::Ker(Ker::new(period)),
            IndicatorKind::Kama => Alg::Kama(Ker::new(period), 0.0),
            IndicatorKind::Cmo if warmup == Warmup::None => Alg::Cmo(Cmo::new(period - 1)),
            IndicatorKind::Cmo => Alg::Cmos(wilder(), wilder(), 0.0),
        }
    }

    /// Points before it is warmed up (the default hold period).
    fn warm_count(&self) -> usize {
        match self {
            Alg::Ema(e) => e.warm_count(),
            Alg::Dema(a, b) if a.warmup == Warmup::Simple => a.warm_count() + b.warm_count(),
            Alg::Dema(a, _) => a.warm_count(),
            Alg::Tema(a, b, c) if a.warmup == Warmup::Simple => {
                a.warm_count() + b.warm_count() + c.warm_count()
            }
            Alg::Tema(a, ..) => a.warm_count(),
            Alg::Rsi(up, ..) | Alg::Cmos(up, ..) => up.warm_count(),
            Alg::Trix(a, ..) if a.warmup == Warmup::Simple => a.warm_count() * 3 + 1,
            Alg::Trix(a, ..) => a.warm_count() + 1,
            Alg::Ker(k) | Alg::Kama(k, _) => k.points.len(),
            Alg::Cmo(c) => c.points.len(),
        }
    }

    fn add(&mut self, v: f64) -> f64 {
        match self {
            Alg::Ema(e) => e.add(v),
            Alg::Dema(a, b) => {
                let avg1 = a.add(v);
                let avg2 = if a.feeds() { b.add(avg1) } else { avg1 };
                2.0 * avg1 - avg2
            }
            Alg::Tema(a, b, c) => {
                let avg1 = a.add(v);
                let avg2 = if a.feeds() { b.add(avg1) } else { avg1 };
                let avg3 = if b.feeds() { c.add(avg2) } else { avg2 };
                3.0 * avg1 - 3.0 * avg2 + avg3
            }
            Alg::Rsi(up, down, last) => {
                rise_and_fall(up, down, last, v);
                100.0 - (100.0 / (1.0 + up.last / down.last))
            }
            Alg::Cmos(up, down, last) => {
                rise_and_fall(up, down, last, v);
                100.0 * ((up.last - down.last) / (up.last + down.last))
            }
            Alg::Trix(a, b, c, last, count) => {
                let mut cur = a.add(v);
                if a.feeds() {
                    cur = b.add(cur);
                    if b.feeds() {
                        cur = c.add(cur);
                    }
                }
                let rate = ((cur / *last) - 1.0) * 100.0;
                *last = cur;
                if *count != 2 && c.warmed() {
                    *count += 1;
                }
                rate
            }
            Alg::Ker(k) => k.add(v),
            Alg::Kama(k, last) => {
                if !k.warmed() {
                    *last = k.points.get(k.idx).map_or(0.0, |p| p.0);
                }
                let er = k.add(v);
                // (2/3 − 2/31) is folded exactly by Go's compiler: 56/93.
                let x = er * (56.0 / 93.0) + 2.0 / 31.0;
                let sc = x * x;
                *last += sc * (v - *last);
                *last
            }
            Alg::Cmo(c) => c.add(v),
        }
    }
}

/// Feeds the rise (or fall) from `last` to `v` into the two averages.
fn rise_and_fall(up: &mut Ema, down: &mut Ema, last: &mut f64, v: f64) {
    let (mut rise, mut fall) = (0.0, 0.0);
    if v > *last {
        rise = v - *last;
    } else if v < *last {
        fall = *last - v;
    }
    up.add(rise);
    down.add(fall);
    *last = v;
}

/// Kaufman's efficiency ratio: the net change over `period` points ÷ the
/// sum of the point-to-point changes (a ring of (price, change)).
struct Ker {
    points: Vec<(f64, f64)>,
    noise: f64,
    count: usize,
    idx: usize,
}

impl Ker {
    fn new(period: usize) -> Ker {
        Ker {
            points: vec![(0.0, 0.0); period],
            noise: 0.0,
            count: 0,
            idx: 0,
        }
    }

    fn warmed(&self) -> bool {
        self.count == self.points.len() + 1
    }

    fn add(&mut self, v: f64) -> f64 {
        let n = self.points.len();
        if n == 0 {
            return 0.0;
        }
        let oldest = if self.idx + 1 >= n { 0 } else { self.idx + 1 };
        let signal = (v - self.points[oldest].0).abs();
        let change = (v - self.points[self.idx].0).abs();
        self.noise -= self.points[oldest].1;
        self.noise += change;
        let noise = self.noise;
        self.idx = oldest;
        self.points[oldest] = (v, change);
        if !self.warmed() {
            self.count += 1;
        }
        if signal == 0.0 || noise == 0.0 {
            0.0
        } else {
            signal / noise
        }
    }
}

/// Chande's momentum oscillator without warm-up: sums of the rises and
/// falls over a ring of (price, change).
struct Cmo {
    points: Vec<(f64, f64)>,
    up: f64,
    down: f64,
    count: usize,
    idx: usize,
}

impl Cmo {
    fn new(len: usize) -> Cmo {
        Cmo {
            points: vec![(0.0, 0.0); len],
            up: 0.0,
            down: 0.0,
            count: 0,
            idx: 0,
        }
    }

    fn add(&mut self, v: f64) -> f64 {
        let n = self.points.len();
        if n == 0 {
            return 0.0;
        }
        let oldest = if self.idx + 1 == n { 0 } else { self.idx + 1 };
        let mut change = 0.0;
        if self.count != 0 {
            change = v - self.points[self.idx].0;
            if change > 0.0 {
                self.up += change;
            } else if change < 0.0 {
                self.down -= change;
            }
        }
        let mut out = 0.0;
        if self.up != 0.0 || self.down != 0.0 {
            out = 100.0 * ((self.up - self.down) / (self.up + self.down));
        }
        let gone = self.points[oldest].1;
        if gone > 0.0 {
            self.up -= gone;
        } else if gone < 0.0 {
            self.down += gone;
        }
        self.points[oldest] = (v, change);
        self.idx = oldest;
        if self.count != n + 2 {
            self.count += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ind(kind: IndicatorKind, period: i64, hold: i64) -> Indicator {
        Indicator {
            kind,
            period,
            hold,
            warmup: Warmup::Exponential,
        }
    }

    #[test]
    fn an_ema_weights_the_newest_point_by_two_over_period_plus_one() {
        let pts: Vec<(i64, f64)> = [6.5, 6.0, 7.5, 8.5]
            .iter()
            .copied()
            .enumerate()
            .map(|(i, v)| (i as i64, v))
            .collect();
        let out = indicator(ind(IndicatorKind::Ema, 2, -1), &pts);
        // Held for one point, then 6.5 + (6 − 6.5)·2/3.
        assert_eq!(out.len(), 3);
        assert!((out[0].1 - 6.166_666_666_666_667).abs() < 1e-12);
        assert_eq!(indicator(ind(IndicatorKind::Ema, 2, 0), &pts).len(), 4);
    }

    #[test]
    fn a_constant_series_has_no_momentum_and_no_efficiency() {
        let pts: Vec<(i64, f64)> = (0..10).map(|i| (i, 5.0)).collect();
        for (t, v) in indicator(ind(IndicatorKind::Ker, 3, -1), &pts) {
            assert_eq!(v, 0.0, "at {t}");
        }
        let cmo = Indicator {
            warmup: Warmup::None,
            ..ind(IndicatorKind::Cmo, 3, -1)
        };
        assert!(indicator(cmo, &pts).iter().skip(1).all(|(_, v)| *v == 0.0));
    }
}
