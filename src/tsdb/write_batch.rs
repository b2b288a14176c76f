//! The write command a node proposes for parsed points: grouped by series
//! ([`pb::WriteSeries`]), so that the grouping, the tag sorting and the
//! per-point names are handled once on the proposer rather than on every
//! replica. A write in which one field of one series carries values of two
//! types goes as plain points ([`pb::WritePoints`]), whose point-by-point
//! apply decides which type wins exactly as influxd does.

use std::collections::HashMap;

use super::fsm::point_into_pb;
use super::line_protocol::{FieldValue, Point};
use crate::proto::tsdb::{self as pb, command::Cmd};

/// A series by measurement and sorted tags, borrowed from its points.
type SeriesRef<'a> = (&'a str, &'a [(String, String)]);

fn same_type(a: &FieldValue, b: &FieldValue) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// The command writing `points` into `db`/`rp`.
pub fn write_command(db: &str, rp: &str, points: Vec<Point>) -> Cmd {
    // Pass 1 (borrowing): the series of each point, and whether any field
    // of a measurement has two types (a field has one type per measurement
    // in a shard, so the point whose type is claimed first decides: only
    // points in their order tell which).
    let mut index: HashMap<SeriesRef<'_>, usize> = HashMap::new();
    let mut series_of = Vec::with_capacity(points.len());
    let mut mixed = false;
    let mut field_types: HashMap<(&str, &str), &FieldValue> = HashMap::new();
    for p in &points {
        for (k, v) in &p.fields {
            match field_types.get(&(p.measurement.as_str(), k.as_str())) {
                Some(first) => mixed |= !same_type(first, v),
                None => {
                    field_types.insert((p.measurement.as_str(), k.as_str()), v);
                }
            }
        }
        let next = index.len();
        let s = *index
            .entry((p.measurement.as_str(), p.tags.as_slice()))
            .or_insert(next);
        series_of.push(s);
    }
    if mixed || u32::try_from(points.len()).is_err() {
        return Cmd::Write(pb::WritePoints {
            db: db.to_string(),
            rp: rp.to_string(),
            points: points.into_iter().map(point_into_pb).collect(),
        });
    }
    let n_series = index.len();
    drop(field_types);
    drop(index);
    // Pass 2 (moving): rows and columns.
    let mut series: Vec<Option<pb::SeriesRows>> = (0..n_series).map(|_| None).collect();
    for (order, (p, s)) in points.into_iter().zip(series_of).enumerate() {
        let sr = series[s].get_or_insert_with(|| pb::SeriesRows {
            measurement: p.measurement.clone(),
            tags: p
                .tags
                .iter()
                .map(|(key, value)| pb::Tag {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            ..Default::default()
        });
        let row = sr.timestamps.len() as u32;
        sr.timestamps.push(p.timestamp);
        sr.order.push(order as u32);
        for (k, v) in p.fields {
            let col = match sr.fields.iter().position(|c| c.key == k) {
                Some(i) => &mut sr.fields[i],
                None => {
                    sr.fields.push(pb::FieldColumn {
                        key: k,
                        ..Default::default()
                    });
                    let last = sr.fields.len() - 1;
                    &mut sr.fields[last]
                }
            };
            col.rows.push(row);
            match v {
                FieldValue::Float(x) => col.floats.push(x),
                FieldValue::Integer(x) => col.integers.push(x),
                FieldValue::Unsigned(x) => col.unsigneds.push(x),
                FieldValue::String(x) => col.strings.push(x),
                FieldValue::Boolean(x) => col.booleans.push(x),
            }
        }
    }
    Cmd::WriteSeries(pb::WriteSeries {
        db: db.to_string(),
        rp: rp.to_string(),
        series: series.into_iter().flatten().collect(),
    })
}

/// The values of a column as field values, or `None` if the column is
/// malformed (see [`typed_values`]).
pub(crate) fn column_values(c: &mut pb::FieldColumn) -> Option<Vec<FieldValue>> {
    use std::mem::take;
    typed_values(
        c.rows.len(),
        take(&mut c.floats),
        take(&mut c.integers),
        take(&mut c.unsigneds),
        take(&mut c.strings),
        take(&mut c.booleans),
    )
}

/// `n` values from the typed arrays a command carries them in (a column,
/// a shard upload's series): at most one array in use, of length `n`;
/// `None` otherwise.
pub(crate) fn typed_values(
    n: usize,
    floats: Vec<f64>,
    integers: Vec<i64>,
    unsigneds: Vec<u64>,
    strings: Vec<String>,
    booleans: Vec<bool>,
) -> Option<Vec<FieldValue>> {
    let lens = [
        floats.len(),
        integers.len(),
        unsigneds.len(),
        strings.len(),
        booleans.len(),
    ];
    if lens.iter().filter(|l| **l > 0).count() > 1 || lens.iter().sum::<usize>() != n {
        return None;
    }
    Some(if !floats.is_empty() {
        floats.into_iter().map(FieldValue::Float).collect()
    } else if !integers.is_empty() {
        integers.into_iter().map(FieldValue::Integer).collect()
    } else if !unsigneds.is_empty() {
        unsigneds.into_iter().map(FieldValue::Unsigned).collect()
    } else if !strings.is_empty() {
        strings.into_iter().map(FieldValue::String).collect()
    } else {
        booleans.into_iter().map(FieldValue::Boolean).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::tsdb::Command;
    use crate::tsdb::fsm::{SeriesPoints, Tsdb, command};
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = FieldValue> {
        prop_oneof![
            (-1e6f64..1e6).prop_map(FieldValue::Float),
            Just(FieldValue::Float(f64::NAN)),
            (-1000i64..1000).prop_map(FieldValue::Integer),
            (0u64..1000).prop_map(FieldValue::Unsigned),
            "[a-z]{0,4}".prop_map(FieldValue::String),
            any::<bool>().prop_map(FieldValue::Boolean),
        ]
    }

    fn point() -> impl Strategy<Value = Point> {
        let name = prop_oneof![
            4 => "[ab]".prop_map(String::from),
            1 => Just("time".to_string()),
            1 => Just(String::new()),
            1 => Just("k".repeat(70_000)),
        ];
        (
            prop_oneof![5 => "[mn]".prop_map(String::from), 1 => Just(String::new())],
            proptest::collection::vec(
                (prop_oneof![4 => "[hr]", 1 => "time"], "[xy ,=]{1,2}"),
                0..3,
            ),
            proptest::collection::vec((name, value()), 0..3),
            prop_oneof![
                8 => (0i64..4).prop_map(|d| d * 3_000_000_000_000_000),
                1 => Just(i64::MAX),
            ],
        )
            .prop_map(|(measurement, tags, fields, timestamp)| {
                let mut tags: Vec<(String, String)> = tags;
                tags.sort();
                tags.dedup_by(|a, b| a.0 == b.0);
                let mut fs: Vec<(String, FieldValue)> = Vec::new();
                for (k, v) in fields {
                    match fs.iter_mut().find(|(fk, _)| *fk == k) {
                        Some(f) => f.1 = v,
                        None => fs.push((k, v)),
                    }
                }
                Point {
                    measurement,
                    tags,
                    fields: fs,
                    timestamp,
                }
            })
    }

    fn state(t: &mut Tsdb) -> Vec<(String, SeriesPoints)> {
        let v = t.view();
        ["m", "n"]
            .iter()
            .map(|m| {
                let pts = v.scan("db", "", m, i64::MIN, i64::MAX).unwrap_or_default();
                (m.to_string(), pts)
            })
            .collect()
    }

    fn fresh(dir: &std::path::Path) -> Tsdb {
        let mut t = Tsdb::open(dir.to_path_buf()).unwrap();
        let r = t
            .execute(command(Cmd::CreateDatabase(pb::CreateDatabase {
                name: "db".into(),
            })))
            .unwrap();
        assert!(r.error.is_empty());
        t
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Grouped by series or point by point, two writes (the second
        /// meets the types the first claimed) leave the same answers and
        /// the same data.
        #[test]
        fn a_write_grouped_by_series_applies_as_the_same_points_do(
            first in proptest::collection::vec(point(), 0..12),
            second in proptest::collection::vec(point(), 0..12),
        ) {
            let d = tempfile::tempdir().unwrap();
            let mut a = fresh(&d.path().join("a"));
            let mut b = fresh(&d.path().join("b"));
            for pts in [first, second] {
                let plain = Cmd::Write(pb::WritePoints {
                    db: "db".into(),
                    rp: String::new(),
                    points: pts.iter().cloned().map(point_into_pb).collect(),
                });
                let grouped = write_command("db", "", pts);
                let ra = a.execute(Command { cmd: Some(plain) }).unwrap();
                let rb = b.execute(Command { cmd: Some(grouped) }).unwrap();
                prop_assert_eq!(ra, rb);
            }
            prop_assert_eq!(format!("{:?}", state(&mut a)), format!("{:?}", state(&mut b)));
        }
    }

    #[test]
    fn points_are_grouped_by_series_unless_a_field_has_two_types() {
        let p = |m: &str, h: &str, v: FieldValue, ts| Point {
            measurement: m.into(),
            tags: vec![("h".into(), h.into())],
            fields: vec![("v".into(), v)],
            timestamp: ts,
        };
        let cmd = write_command(
            "db",
            "",
            vec![
                p("m", "a", FieldValue::Float(1.0), 1),
                p("m", "b", FieldValue::Float(2.0), 1),
                p("m", "a", FieldValue::Float(3.0), 2),
            ],
        );
        let Cmd::WriteSeries(w) = cmd else {
            panic!("not grouped: {cmd:?}")
        };
        assert_eq!(w.series.len(), 2);
        assert_eq!(w.series[0].timestamps, vec![1, 2]);
        assert_eq!(w.series[0].order, vec![0, 2]);
        assert_eq!(w.series[0].fields[0].floats, vec![1.0, 3.0]);
        let cmd = write_command(
            "db",
            "",
            vec![
                p("m", "a", FieldValue::Float(1.0), 1),
                p("m", "a", FieldValue::Integer(3), 2),
            ],
        );
        assert!(matches!(cmd, Cmd::Write(_)), "{cmd:?}");
    }

    #[test]
    fn malformed_columns_drop_their_points_and_never_panic() {
        let d = tempfile::tempdir().unwrap();
        let mut t = fresh(&d.path().join("t"));
        let bad = pb::WriteSeries {
            db: "db".into(),
            rp: String::new(),
            series: vec![
                pb::SeriesRows {
                    measurement: "m".into(),
                    timestamps: vec![1, 2],
                    order: vec![0, 1],
                    fields: vec![pb::FieldColumn {
                        key: "v".into(),
                        rows: vec![0, 1],
                        floats: vec![1.0],
                        integers: vec![1],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                pb::SeriesRows {
                    measurement: "m".into(),
                    timestamps: vec![1],
                    order: vec![2, 3],
                    ..Default::default()
                },
                pb::SeriesRows {
                    measurement: "n".into(),
                    timestamps: vec![1],
                    order: vec![4],
                    fields: vec![pb::FieldColumn {
                        key: "v".into(),
                        rows: vec![7],
                        floats: vec![1.0],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ],
        };
        let r = t.execute(command(Cmd::WriteSeries(bad))).unwrap();
        assert_eq!((r.written, r.dropped), (0, 4), "{r:?}");
        assert!(r.error.starts_with("partial write"), "{r:?}");
    }
}
