//! Values as influxd's JSON writes them, and series keys read back.

use serde_json::{Value, json};

use crate::tsdb::line_protocol::{FieldValue, Precision};
use crate::tsdb::timefmt::{rfc3339_nano, rfc3339_nano_at};

/// How an answer writes its times: integers of `epoch` units, or RFC3339
/// in the zone of `tz()` (UTC: `Z`), as influxd's.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct TimeFmt {
    /// The `epoch` of the request, if given.
    pub(super) epoch: Option<Precision>,
    /// The statement's `tz()`, if given.
    pub(super) tz: Option<chrono_tz::Tz>,
}

pub(super) fn time_value(ns: i64, f: TimeFmt) -> Value {
    match (f.epoch, f.tz) {
        (Some(p), _) => json!(ns.div_euclid(p.nanos())),
        (None, None) => json!(rfc3339_nano(ns)),
        (None, Some(tz)) => {
            let offset = super::window::zone_offset(tz, ns);
            json!(rfc3339_nano_at(ns, offset / 1_000_000_000))
        }
    }
}

thread_local! {
    /// Set while a SELECT runs for `INTO`: floats stay floats in the JSON
    /// rows, so that they are written back as floats.
    static TYPED_FLOATS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` (on this thread) with whole floats kept as floats in the rows
/// it produces: the rows an `INTO` writes keep their fields' types.
pub fn with_typed_floats<R>(f: impl FnOnce() -> R) -> R {
    let before = TYPED_FLOATS.with(|t| t.replace(true));
    let r = f();
    TYPED_FLOATS.with(|t| t.set(before));
    r
}

/// A float as influxd's JSON writes it (Go's encoding/json): a whole
/// value without a fraction (`17835`, not `17835.0`).
pub(super) fn float_json(f: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if TYPED_FLOATS.with(|t| t.get()) {
        return serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number);
    }
    // −0 keeps its sign, as influxd prints it.
    if f.fract() == 0.0 && f.abs() <= EXACT && !(f == 0.0 && f.is_sign_negative()) {
        json!(f as i64)
    } else {
        json!(f)
    }
}

pub(super) fn to_json(v: &FieldValue) -> Value {
    match v {
        FieldValue::Float(f) => float_json(*f),
        FieldValue::Integer(i) => json!(i),
        FieldValue::Unsigned(u) => json!(u),
        FieldValue::String(s) => json!(s),
        FieldValue::Boolean(b) => json!(b),
    }
}

pub(super) fn num(v: &FieldValue) -> Option<f64> {
    match v {
        FieldValue::Float(f) => Some(*f),
        FieldValue::Integer(i) => Some(*i as f64),
        FieldValue::Unsigned(u) => Some(*u as f64),
        _ => None,
    }
}

/// A series' points by field.
pub(super) type Points = std::collections::BTreeMap<String, Vec<(i64, FieldValue)>>;

/// A series' tags and its points by field.
pub(super) type TaggedSeries = (Vec<(String, String)>, Points);

/// The selector of several points in a SELECT (`top`, `bottom`,
/// `sample`), if any: its position among the projections, which points
/// it picks, its field, its tag argument, and N (1 when missing or out
/// of range; the statement's checks refuse those first).
pub(super) fn selector_of(
    s: &super::ast::Select,
) -> Option<(usize, super::ast::Pick, &str, Option<&str>, usize)> {
    s.fields.iter().enumerate().find_map(|(i, f)| match f {
        super::ast::Projection::Selector {
            pick,
            field,
            tag,
            n,
        } => Some((
            i,
            *pick,
            field.as_str(),
            tag.as_deref(),
            usize::try_from(n.unwrap_or(1)).unwrap_or(1).max(1),
        )),
        _ => None,
    })
}

/// A series' values of the tag keys `keys` ("" for a tag it lacks): the
/// group it falls in.
pub(super) fn group_of(tags: &[(String, String)], keys: &[String]) -> Vec<String> {
    keys.iter()
        .map(|k| {
            tags.iter()
                .find(|(tk, _)| tk == k)
                .map_or(String::new(), |(_, v)| v.clone())
        })
        .collect()
}

/// Tags of a series key (`m,a=1,b=2`), unescaped.
pub(crate) fn series_tags(series: &str) -> Vec<(String, String)> {
    if !series.contains('\\') {
        return series
            .split(',')
            .skip(1)
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = series.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push('\\');
                    cur.push(n);
                }
            }
            ',' => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    let unescape = |s: &str| {
        s.replace("\\,", ",")
            .replace("\\=", "=")
            .replace("\\ ", " ")
    };
    parts
        .iter()
        .skip(1)
        .filter_map(|kv| {
            let mut split = None;
            let b = kv.as_bytes();
            for i in 0..b.len() {
                if b[i] == b'=' && (i == 0 || b[i - 1] != b'\\') {
                    split = Some(i);
                    break;
                }
            }
            split.map(|i| (unescape(&kv[..i]), unescape(&kv[i + 1..])))
        })
        .collect()
}

/// A column's name as a statement gives it: the alias it was given, or
/// one made from what it reads (a field, a function, arithmetic). influxd
/// keeps aliases as they are and numbers made names that meet another.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum ColName {
    Alias(String),
    Made(String),
}

impl ColName {
    /// `alias` if there is one, else the name `made` makes.
    pub(super) fn of(alias: Option<String>, made: impl FnOnce() -> String) -> ColName {
        match alias {
            Some(a) => ColName::Alias(a),
            None => ColName::Made(made()),
        }
    }

    pub(super) fn as_str(&self) -> &str {
        match self {
            ColName::Alias(s) | ColName::Made(s) => s,
        }
    }
}

/// A result's columns: `time`, then `names` as influxql's `ColumnNames`
/// resolves them: aliases first, as given (two equal aliases stay
/// equal); then each made name, with `_1`, `_2`, … when it meets a name
/// already taken.
pub(super) fn columns_named<'a>(names: impl Iterator<Item = &'a ColName>) -> Vec<String> {
    let names: Vec<&ColName> = names.collect();
    // How often each name is taken (what influxql's map counts).
    let mut taken: std::collections::HashMap<String, usize> = names
        .iter()
        .filter_map(|n| match n {
            ColName::Alias(a) => Some((a.clone(), 1)),
            ColName::Made(_) => None,
        })
        .collect();
    let mut columns = Vec::with_capacity(names.len() + 1);
    columns.push("time".to_string());
    for n in names {
        let ColName::Made(base) = n else {
            columns.push(n.as_str().to_string());
            continue;
        };
        let mut name = base.clone();
        if let Some(&first) = taken.get(base) {
            let mut count = first;
            loop {
                let candidate = format!("{base}_{count}");
                if !taken.contains_key(&candidate) {
                    taken.insert(base.clone(), count + 1);
                    name = candidate;
                    break;
                }
                count += 1;
            }
        }
        *taken.entry(name.clone()).or_insert(0) += 1;
        columns.push(name);
    }
    columns
}
