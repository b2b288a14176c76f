//! The rows of a SELECT of raw points.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::aggregate::Rows;
use super::ast::*;
use super::math::eval;
use super::values::{ColName, TaggedSeries, TimeFmt, columns_named, time_value, to_json};
use crate::tsdb::line_protocol::FieldValue;

/// What orders rows at the same time, as influxd's merge compares them:
/// the row's value of each name the columns read (in name order), when it
/// is a string (a tag, or a string field); None otherwise.
type AuxKey = Vec<Option<String>>;

/// A series' rows (time, the columns' values), each with its [`AuxKey`].
type SeriesRows = Keyed<Vec<Value>>;

/// A series' items in the merge: (time, what the item carries) with the
/// [`AuxKey`] that orders it among items of the same time.
type Keyed<T> = Vec<Item<T>>;

/// An item of the merge: (time, what it carries), and its [`AuxKey`].
type Item<T> = ((i64, T), AuxKey);

/// A heap entry: an item and the series it is the next of.
type Entry<T> = (Item<T>, usize);

/// A column of raw rows (or beside a selector, of the point it picked).
pub(super) enum Col<'a> {
    /// A field or tag by name.
    Name(String),
    /// A field, where a tag has its name too (`*` shows both).
    Field(String),
    /// A tag, where a field has its name too.
    Tag(String),
    /// Arithmetic over fields.
    Math(&'a Expr),
}

/// The raw rows of one group: one per (time, series) where a field the
/// projections read has a value; columns in InfluxDB's order (the grouped
/// tags are the series' tags, not columns).
pub(super) fn raw_rows(
    s: &Select,
    members: &[&TaggedSeries],
    (field_names, tag_names): (&BTreeSet<String>, &BTreeSet<String>),
    grouped: &[String],
    shard_starts: &[i64],
    epoch: TimeFmt,
) -> Rows {
    let cols = columns(s, field_names, tag_names, grouped);
    let read = names_read(&cols);
    // Per series: its rows, each with what orders it among rows at the
    // same time.
    let mut per_series: Vec<SeriesRows> = Vec::new();
    for (tags, fields) in members {
        let mut times: BTreeMap<i64, Vec<Option<Value>>> = BTreeMap::new();
        for (ri, f) in read.iter().enumerate() {
            for (ts, v) in fields.get(*f).into_iter().flatten() {
                times.entry(*ts).or_insert_with(|| vec![None; read.len()])[ri] = Some(to_json(v));
            }
        }
        let tag = |n: &str| tags.iter().find(|(k, _)| k == n).map(|(_, v)| json!(v));
        let mut rows = Vec::with_capacity(times.len());
        for (ts, row) in times {
            let at = |n: &str| read.binary_search(&n).ok().and_then(|i| row[i].clone());
            let aux: AuxKey = read
                .iter()
                .map(|n| match at(n).or_else(|| tag(n)) {
                    Some(Value::String(s)) => Some(s),
                    _ => None,
                })
                .collect();
            let vals = cols.iter().map(|(c, _)| c.value(&at, &tag)).collect();
            rows.push(((ts, vals), aux));
        }
        if s.desc {
            rows.reverse();
        }
        if !rows.is_empty() {
            per_series.push(rows);
        }
    }
    // Only the rows the page shows are merged out.
    let wanted = match s.limit {
        0 => usize::MAX,
        n => s.offset.saturating_add(n),
    };
    let mut rows = merge_by_shard(per_series, shard_starts, s.desc, wanted);
    rows.drain(..s.offset.min(rows.len()));
    if s.limit > 0 {
        rows.truncate(s.limit);
    }
    if rows.is_empty() {
        return None;
    }
    let columns = columns_named(cols.iter().map(|(_, c)| c));
    let values = rows
        .into_iter()
        .map(|(ts, vals)| {
            let mut r = vec![time_value(ts, epoch)];
            r.extend(vals);
            Value::Array(r)
        })
        .collect();
    Some((columns, values))
}

/// The columns of a SELECT of raw points: `*` stands for its columns
/// where it is written, beside the others.
pub(super) fn columns<'a>(
    s: &'a Select,
    field_names: &BTreeSet<String>,
    tag_names: &BTreeSet<String>,
    grouped: &[String],
) -> Vec<(Col<'a>, ColName)> {
    let mut cols: Vec<(Col, ColName)> = Vec::new();
    for (p, alias) in s.fields.iter().zip(&s.aliases) {
        if *p == Projection::All {
            cols.extend(star_columns(field_names, tag_names, grouped));
        } else {
            cols.extend(column(p, alias.as_ref()));
        }
    }
    cols
}

/// The names (fields and tags) the columns read, sorted, each once: the
/// order of the [`AuxKey`] that orders rows at the same time.
pub(super) fn names_read<'n>(cols: &'n [(Col, ColName)]) -> Vec<&'n str> {
    let mut read: Vec<&str> = Vec::new();
    for (c, _) in cols {
        c.reads(&mut read);
    }
    read.sort_unstable();
    read.dedup();
    read
}

impl Col<'_> {
    /// The column's value in a row whose fields `field` gives, of a series
    /// whose tags `tag` gives.
    pub(super) fn value(
        &self,
        field: &dyn Fn(&str) -> Option<Value>,
        tag: &dyn Fn(&str) -> Option<Value>,
    ) -> Value {
        match self {
            Col::Name(n) => field(n).or_else(|| tag(n)).unwrap_or(Value::Null),
            Col::Field(n) => field(n).unwrap_or(Value::Null),
            Col::Tag(n) => tag(n).unwrap_or(Value::Null),
            Col::Math(e) => eval(e, &mut |l| match l {
                Expr::Field(f) => field(f).unwrap_or(Value::Null),
                _ => Value::Null,
            }),
        }
    }

    /// The fields the column reads.
    pub(super) fn reads<'n>(&'n self, out: &mut Vec<&'n str>) {
        match self {
            Col::Name(n) | Col::Field(n) | Col::Tag(n) => out.push(n),
            Col::Math(e) => {
                let mut leaves = Vec::new();
                e.leaves(&mut leaves);
                out.extend(leaves.into_iter().filter_map(|l| match l {
                    Expr::Field(f) => Some(f.as_str()),
                    _ => None,
                }));
            }
        }
    }
}

/// `*`'s columns: every field and tag but the grouped tags, by name, a
/// field before a tag of the same name (both shown, the second named
/// `name_1`, as influxd's).
pub(super) fn star_columns<'a>(
    field_names: &BTreeSet<String>,
    tag_names: &BTreeSet<String>,
    grouped: &[String],
) -> Vec<(Col<'a>, ColName)> {
    let mut v: Vec<(&String, bool)> = field_names
        .iter()
        .map(|f| (f, false))
        .chain(
            tag_names
                .iter()
                .filter(|t| !grouped.contains(t))
                .map(|t| (t, true)),
        )
        .collect();
    v.sort();
    v.into_iter()
        .map(|(n, is_tag)| {
            let both = field_names.contains(n) && tag_names.contains(n);
            let col = match (both, is_tag) {
                (false, _) => Col::Name(n.clone()),
                (true, false) => Col::Field(n.clone()),
                (true, true) => Col::Tag(n.clone()),
            };
            (col, ColName::Made(n.clone()))
        })
        .collect()
}

/// The column of a projection of a field, a tag or arithmetic over fields
/// (None for others), named by its alias or itself.
pub(super) fn column<'a>(p: &'a Projection, alias: Option<&String>) -> Option<(Col<'a>, ColName)> {
    match p {
        Projection::Field(f) => Some((
            Col::Name(f.clone()),
            ColName::of(alias.cloned(), || f.clone()),
        )),
        Projection::Math(e) if !e.has_call() => Some((
            Col::Math(e),
            ColName::of(alias.cloned(), || e.column_name()),
        )),
        _ => None,
    }
}

/// The points of `field` of several series as influxd's merge hands them
/// to a function: by time, ties in its heap's order (nothing else orders
/// them), shard by shard; newest first for `desc`, then reversed, so
/// oldest first either way.
pub(super) fn merged_points(
    members: &[&TaggedSeries],
    field: &str,
    shard_starts: &[i64],
    desc: bool,
) -> Vec<(i64, Value)> {
    merged_order(members, field, shard_starts, desc)
        .into_iter()
        .map(|(t, v)| (t, to_json(v)))
        .collect()
}

/// [`merged_points`], the points as stored.
pub(super) fn merged_order<'m>(
    members: &[&'m TaggedSeries],
    field: &str,
    shard_starts: &[i64],
    desc: bool,
) -> Vec<(i64, &'m FieldValue)> {
    // Each point stands in the merge as its value (nothing but the time
    // orders points here).
    let series: Vec<Keyed<&FieldValue>> = members
        .iter()
        .filter_map(|(_, fields)| fields.get(field))
        .map(|pts| {
            let mut rows: Keyed<&FieldValue> =
                pts.iter().map(|(t, v)| ((*t, v), Vec::new())).collect();
            if desc {
                rows.reverse();
            }
            rows
        })
        .collect();
    let mut out = merge_by_shard(series, shard_starts, desc, usize::MAX);
    if desc {
        out.reverse();
    }
    out
}

/// The first `wanted` rows of several series merged shard by shard, as
/// influxd merges each shard's series on its own (`shard_starts`: where
/// each shard after the first starts).
fn merge_by_shard<T: Clone>(
    series: Vec<Keyed<T>>,
    shard_starts: &[i64],
    desc: bool,
    wanted: usize,
) -> Vec<(i64, T)> {
    if shard_starts.is_empty() {
        return merge_as_influxd(series, desc, wanted);
    }
    // Each series' rows cut at the shards' starts, in the order read.
    let mut parts: Vec<Vec<Keyed<T>>> = vec![Vec::new(); shard_starts.len() + 1];
    for rows in series {
        let mut cut: Vec<Keyed<T>> = vec![Vec::new(); parts.len()];
        for r in rows {
            cut[shard_starts.partition_point(|s| *s <= r.0.0)].push(r);
        }
        for (i, rows) in cut.into_iter().enumerate() {
            if !rows.is_empty() {
                parts[i].push(rows);
            }
        }
    }
    if desc {
        parts.reverse();
    }
    let mut out = Vec::new();
    for p in parts {
        if out.len() >= wanted {
            break;
        }
        out.extend(merge_as_influxd(p, desc, wanted - out.len()));
    }
    out
}

/// The rows of several series (each in time order) merged into one
/// stream in the order influxd's sorted merge gives them: a binary heap
/// of the series' next rows, built and popped exactly as Go's
/// `container/heap` does, ordered by time, then by their [`AuxKey`]s
/// (both reversed for `ORDER BY time DESC`), where the first name whose
/// value is not a string in either row ends the comparison as equal; rows
/// equal in both come out in the heap's order, not the series' order
/// (which is reversed for `DESC`). Stops after `wanted` rows.
fn merge_as_influxd<T>(series: Vec<Keyed<T>>, desc: bool, wanted: usize) -> Vec<(i64, T)> {
    let total: usize = series.iter().map(Vec::len).sum();
    // influxd reads the series in reverse order for `ORDER BY time DESC`.
    let mut series = series;
    if desc {
        series.reverse();
    }
    let mut its: Vec<std::vec::IntoIter<Item<T>>> =
        series.into_iter().map(Vec::into_iter).collect();
    // (the series' next row and its key, which series)
    let mut heap: Vec<Entry<T>> = Vec::with_capacity(its.len());
    for (i, it) in its.iter_mut().enumerate() {
        if let Some(r) = it.next() {
            heap.push((r, i));
        }
    }
    let less = |h: &[Entry<T>], i: usize, j: usize| {
        let ((x, a), (y, b)) = (&h[i].0, &h[j].0);
        if x.0 != y.0 {
            return if desc { x.0 > y.0 } else { x.0 < y.0 };
        }
        for (a, b) in a.iter().zip(b) {
            let (Some(a), Some(b)) = (a, b) else {
                return false;
            };
            if a != b {
                return if desc { a > b } else { a < b };
            }
        }
        false
    };
    let down = |h: &mut Vec<Entry<T>>, i0: usize, n: usize| {
        let mut i = i0;
        loop {
            let j1 = 2 * i + 1;
            if j1 >= n {
                break;
            }
            let mut j = j1;
            if j1 + 1 < n && less(h, j1 + 1, j1) {
                j = j1 + 1;
            }
            if !less(h, j, i) {
                break;
            }
            h.swap(i, j);
            i = j;
        }
    };
    let n = heap.len();
    for i in (0..n / 2).rev() {
        down(&mut heap, i, n);
    }
    let mut out = Vec::with_capacity(total.min(wanted));
    while !heap.is_empty() && out.len() < wanted {
        let last = heap.len() - 1;
        heap.swap(0, last);
        down(&mut heap, 0, last);
        let Some(((row, _), i)) = heap.pop() else {
            break;
        };
        out.push(row);
        if let Some(next) = its[i].next() {
            heap.push((next, i));
            let mut j = heap.len() - 1;
            while j > 0 {
                let parent = (j - 1) / 2;
                if !less(&heap, j, parent) {
                    break;
                }
                heap.swap(parent, j);
                j = parent;
            }
        }
    }
    out
}
