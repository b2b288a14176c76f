//! `fill(…)` of empty `GROUP BY time` buckets.

use serde_json::Value;

use super::ast::Fill;
use super::values::float_json;

/// Applies `fill` to the empty buckets of `rows`.
pub(super) fn fill(rows: &mut Vec<(i64, Vec<(Value, bool)>)>, how: &Fill) {
    let cols = rows.first().map_or(0, |r| r.1.len());
    match how {
        Fill::Null => {}
        Fill::None => rows.retain(|r| r.1.iter().any(|c| !c.1)),
        Fill::Value(x) => {
            for r in rows.iter_mut() {
                for c in r.1.iter_mut().filter(|c| c.1) {
                    c.0 = float_json(*x);
                }
            }
        }
        Fill::Previous => {
            for c in 0..cols {
                let mut last = Value::Null;
                for r in rows.iter_mut() {
                    if r.1[c].1 {
                        r.1[c].0 = last.clone();
                    } else {
                        last = r.1[c].0.clone();
                    }
                }
            }
        }
        Fill::Linear => {
            for c in 0..cols {
                let known: Vec<(usize, f64)> = rows
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| !r.1[c].1)
                    .filter_map(|(i, r)| r.1[c].0.as_f64().map(|v| (i, v)))
                    .collect();
                for w in known.windows(2) {
                    let ((i0, v0), (i1, v1)) = (w[0], w[1]);
                    for (i, r) in rows.iter_mut().enumerate().take(i1).skip(i0 + 1) {
                        // Only empty cells: a selector's auxiliary cells
                        // between two known ones keep their values.
                        if r.1[c].1 {
                            let v = v0 + (v1 - v0) * (i - i0) as f64 / (i1 - i0) as f64;
                            r.1[c].0 = float_json(v);
                        }
                    }
                }
            }
        }
    }
}
