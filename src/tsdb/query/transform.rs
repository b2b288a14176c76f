//! Transformations over a column of buckets.

use serde_json::{Value, json};

use super::ast::Transform;
use super::values::float_json;

/// `outer` over the non-null values of one column of buckets (time,
/// value): the rows it produces. `unit`: a derivative's unit, a moving
/// average's window, or (Holt-Winters) the buckets' interval.
pub(super) fn transform(
    outer: Transform,
    unit: i64,
    col: &[(i64, Value)],
    desc: bool,
) -> Vec<(i64, Value)> {
    let mut out = Vec::new();
    let mut prev: Option<(i64, &Value)> = None;
    let mut sum: Option<Value> = None;
    // `ORDER BY time DESC` reads the values newest first (influxd's
    // iterators run in the statement's order).
    let ordered: Vec<&(i64, Value)> = if desc {
        col.iter().rev().collect()
    } else {
        col.iter().collect()
    };
    let values: Vec<(i64, &Value)> = ordered
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(t, v)| (*t, v))
        .collect();
    if let Transform::Indicator(ind) = outer {
        let points: Vec<(i64, f64)> = values
            .iter()
            .filter_map(|(t, v)| v.as_f64().map(|x| (*t, x)))
            .collect();
        return super::indicators::indicator(ind, &points)
            .into_iter()
            .map(|(t, v)| (t, float_json(v)))
            .collect();
    }
    if let Transform::HoltWinters { h, m, fit } = outer {
        let points: Vec<(i64, f64)> = values
            .iter()
            .filter_map(|(t, v)| v.as_f64().map(|x| (*t, x)))
            .collect();
        let (h, m) = (
            usize::try_from(h).unwrap_or(0),
            usize::try_from(m).unwrap_or(0),
        );
        return super::holt_winters::holt_winters(&points, unit, h, m, fit)
            .into_iter()
            .map(|(t, v)| (t, float_json(v)))
            .collect();
    }
    if outer == Transform::MovingAverage {
        let n = usize::try_from(unit).unwrap_or(1).max(1);
        for w in values.windows(n) {
            let sum: f64 = w.iter().map(|(_, v)| v.as_f64().unwrap_or(0.0)).sum();
            out.push((w[n - 1].0, float_json(sum / n as f64)));
        }
        return out;
    }
    if outer == Transform::Elapsed {
        for w in values.windows(2) {
            out.push((w[1].0, json!((w[1].0 - w[0].0) / unit.max(1))));
        }
        return out;
    }
    for &(t, v) in &values {
        let t = &t;
        match outer {
            Transform::CumulativeSum => {
                let next = match (&sum, v) {
                    (Some(Value::Number(a)), Value::Number(b)) if a.is_i64() && b.is_i64() => {
                        json!(
                            a.as_i64()
                                .unwrap_or(0)
                                .wrapping_add(b.as_i64().unwrap_or(0))
                        )
                    }
                    (Some(a), b) => {
                        float_json(a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0))
                    }
                    (None, b) => b.clone(),
                };
                sum = Some(next.clone());
                out.push((*t, next));
            }
            _ => {
                // A point at the time of the one before (another series')
                // is passed over, as influxd's reducers keep the first.
                if prev.is_some_and(|(t0, _)| t0 == *t) {
                    continue;
                }
                if let Some((t0, v0)) = prev {
                    let r = match outer {
                        Transform::Difference | Transform::NonNegativeDifference => match (v0, v) {
                            (Value::Number(a), Value::Number(b)) if a.is_i64() && b.is_i64() => {
                                json!(
                                    b.as_i64()
                                        .unwrap_or(0)
                                        .wrapping_sub(a.as_i64().unwrap_or(0))
                                )
                            }
                            _ => float_json(v.as_f64().unwrap_or(0.0) - v0.as_f64().unwrap_or(0.0)),
                        },
                        _ => {
                            // Newest first, the time between is counted
                            // forward all the same (influxd's rule).
                            let elapsed = if desc { t0 - *t } else { *t - t0 };
                            let dt = elapsed as f64 / unit as f64;
                            float_json(
                                (v.as_f64().unwrap_or(0.0) - v0.as_f64().unwrap_or(0.0)) / dt,
                            )
                        }
                    };
                    let negative = r.as_f64().is_some_and(|x| x < 0.0);
                    let non_negative = matches!(
                        outer,
                        Transform::NonNegativeDerivative | Transform::NonNegativeDifference
                    );
                    if !(non_negative && negative) {
                        out.push((*t, r));
                    }
                }
                prev = Some((*t, v));
            }
        }
    }
    out
}
