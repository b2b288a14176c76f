//! A SELECT run: series chosen, grouped, and turned into rows.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::aggregate::aggregate_rows;
use super::ast::*;
use super::filter::{Filter, Keys};
use super::raw::raw_rows;
use super::select::{aggs_only, check, with_aux};
use super::values::{TaggedSeries, TimeFmt, with_typed_floats};
use crate::tsdb::fsm::TsdbView;
use crate::tsdb::line_protocol::{FieldValue, Precision};

/// influxd's limits on what one SELECT may read (0: no limit), and when
/// to stop reading.
#[derive(Debug, Clone, Default)]
pub struct SelectLimits {
    /// `max-select-point`: points read.
    pub max_select_point: u64,
    /// `max-select-series`: series read.
    pub max_select_series: u64,
    /// `max-select-buckets`: `GROUP BY time` buckets.
    pub max_select_buckets: u64,
    /// Set once the query is interrupted (killed, timed out, or its client
    /// gone): the reads stop.
    pub interrupt: Interrupt,
    /// Only the points in this range are read (the names still come from
    /// the statement's whole range): one page of a streamed answer.
    pub(crate) window: Option<(i64, i64)>,
}

/// A check a running read makes now and then: true once its query is
/// interrupted (it then stops with influxd's `query interrupted`).
#[derive(Clone, Default)]
pub struct Interrupt(Option<std::sync::Arc<dyn Fn() -> bool + Send + Sync>>);

impl Interrupt {
    /// An interrupt that `check` says is set.
    pub fn new(check: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        Self(Some(std::sync::Arc::new(check)))
    }

    /// Whether the query is interrupted.
    pub fn is_set(&self) -> bool {
        self.0.as_ref().is_some_and(|c| c())
    }
}

impl std::fmt::Debug for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Interrupt(set)"
        } else {
            "Interrupt(none)"
        })
    }
}

pub(super) fn select_exec(
    t: &TsdbView,
    db: &str,
    s: &Select,
    epoch: Option<Precision>,
    limits: SelectLimits,
) -> Result<Value, String> {
    if super::zip::zipped(s) {
        return super::zip::zip_projections(s, epoch, |one| {
            select_exec(t, db, one, Some(Precision::Nanoseconds), limits.clone())
        });
    }
    let db = checked_db(t, db, s)?;
    if s.sources.is_empty() {
        return measurement_exec(t, db, s, epoch, &limits, None);
    }
    // Several measurements: each answered as its own SELECT, their series
    // in measurement order.
    let (ordered, union) = measurements_of(t, db, s)?;
    let mut series = Vec::new();
    for (m, reads) in ordered {
        let mut one = s.clone();
        one.measurement = m;
        one.sources = Vec::new();
        one.reads = reads;
        let v = measurement_exec(t, db, &one, epoch, &limits, union.as_ref())?;
        if let Some(Value::Array(s)) = v.get("series") {
            series.extend(s.iter().cloned());
        }
    }
    if series.is_empty() {
        return Ok(json!({}));
    }
    // GROUP BY * groups by the tag keys of every measurement read.
    if s.group_tags == GroupTags::All {
        let keys: std::collections::BTreeSet<String> = series
            .iter()
            .filter_map(|one| one.get("tags").and_then(Value::as_object))
            .flat_map(|t| t.keys().cloned())
            .collect();
        for one in &mut series {
            if let Some(Value::Object(tags)) = one.get_mut("tags") {
                for k in &keys {
                    tags.entry(k.clone()).or_insert_with(|| json!(""));
                }
            }
        }
    }
    Ok(json!({ "series": series }))
}

/// The database a SELECT reads (its own, else the request's), once the
/// statement passes influxd's checks and the database exists.
pub(super) fn checked_db<'a>(t: &TsdbView, db: &'a str, s: &'a Select) -> Result<&'a str, String> {
    check(s)?;
    let db = s.db.as_deref().unwrap_or(db);
    if db.is_empty() {
        return Err("database name required".into());
    }
    if !t.meta().databases.contains_key(db) {
        return Err(format!("database not found: {db}"));
    }
    Ok(db)
}

/// The field names and tag keys of every measurement a raw `*` reads.
pub(super) type Union = (BTreeSet<String>, BTreeSet<String>);

/// A measurement read, and how many times `FROM` names it.
pub(super) type Reads = (String, usize);

/// The measurements a SELECT of several (`FROM a, /re/`) reads, in the
/// order their series are answered (reversed by `ORDER BY time DESC`),
/// each with how many times `FROM` names it, and for `*` of raw points the
/// names of all of them, as influxd expands it (only that reads the
/// union).
pub(super) fn measurements_of(
    t: &TsdbView,
    db: &str,
    s: &Select,
) -> Result<(Vec<Reads>, Option<Union>), String> {
    let counts = source_counts(t, db, s)?;
    let mut union = None;
    if s.fields.contains(&Projection::All) && !aggs_only(&s.fields) {
        let (mut types, mut tags) = (BTreeMap::new(), BTreeSet::new());
        let (from, to) = scan_range(s);
        for (_, shard) in t
            .shards_in(db, s.rp.as_deref().unwrap_or(""), from, to)
            .map_err(|e| e.to_string())?
        {
            for m in counts.keys() {
                shard.field_types(m, &mut types);
                shard.tag_keys(m, &mut tags);
            }
        }
        union = Some((types.into_keys().collect(), tags));
    }
    let ordered: Vec<Reads> = if s.desc {
        counts.into_iter().rev().collect()
    } else {
        counts.into_iter().collect()
    };
    Ok((ordered, union))
}

/// The measurements a SELECT reads, by name: its measurement, or those
/// its sources name (a regular expression matched against `db`'s).
pub(super) fn source_names(t: &TsdbView, db: &str, s: &Select) -> Result<BTreeSet<String>, String> {
    Ok(source_counts(t, db, s)?.into_keys().collect())
}

/// [`source_names`], each with how many of the sources name it.
fn source_counts(t: &TsdbView, db: &str, s: &Select) -> Result<BTreeMap<String, usize>, String> {
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    if s.sources.is_empty() {
        names.insert(s.measurement.clone(), s.reads.max(1));
        return Ok(names);
    }
    let all = t.measurements(db);
    for src in &s.sources {
        match src {
            Source::Name(n) => *names.entry(n.clone()).or_default() += 1,
            Source::Regex(r) => {
                let re = regex::Regex::new(r).map_err(|e| e.to_string())?;
                for m in all.iter().filter(|m| re.is_match(m)) {
                    *names.entry(m.clone()).or_default() += 1;
                }
            }
        }
    }
    Ok(names)
}

/// A SELECT of one measurement (`union`: for `*` of raw points over
/// several measurements, the field names and tag keys of all of them).
pub(super) fn measurement_exec(
    t: &TsdbView,
    db: &str,
    s: &Select,
    epoch: Option<Precision>,
    limits: &SelectLimits,
    union: Option<&Union>,
) -> Result<Value, String> {
    let (data, outer, mut field_names, tag_names, shard_starts);
    let mut by_series = false;
    // Counted while scanning, when the series were merged into groups.
    let mut merged = None;
    // The groups' accumulators, when the aggregates were folded as read.
    let mut folder: Option<super::fold::Folder> = None;
    let s = match &s.subquery {
        None => {
            // An aggregate's series are merged into their groups as they
            // are read (not for top/bottom, which reads each series' tags,
            // nor for integral, percentile and transformations of raw
            // points, which read the series' points merged as influxd
            // merges them, nor GROUP BY *, whose groups are the series).
            let per_series = !aggs_only(&s.fields)
                || s.fields.iter().any(|p| {
                    matches!(p, Projection::Selector { .. })
                        || functions(p).iter().any(|(f, _)| {
                            matches!(f, Func::Raw | Func::Integral(_) | Func::Percentile(_))
                        })
                });
            let group_keys = if per_series {
                None
            } else {
                s.group_tags.keys()
            };
            folder = group_keys
                .as_ref()
                .and_then(|_| super::fold::Folder::new(s));
            let prune = group_keys
                .is_none()
                .then(|| super::selector_prune::SelectorPrune::of(s))
                .flatten();
            let mut sampler = group_keys
                .is_none()
                .then(|| super::sampler::Sampler::of(s))
                .flatten();
            let scanned = super::scan::scan(
                t,
                db,
                s,
                scan_range(s),
                limits,
                super::scan::Reading {
                    groups: group_keys.as_deref(),
                    fold: folder.as_mut(),
                    union,
                    prune: prune.as_ref(),
                    sample: sampler.as_mut(),
                },
            )?;
            merged = scanned.merged;
            // Arithmetic is type-checked first, as influxd checks it before
            // it builds its iterators.
            let type_of = |n: &str| {
                scanned
                    .types
                    .get(n)
                    .copied()
                    .or_else(|| scanned.tags.contains(n).then_some("tag"))
            };
            for p in &s.fields {
                if let Projection::Math(e) = p {
                    super::math::check_types(e, &type_of)?;
                }
            }
            // Functions that need numbers refuse other fields, as influxd's
            // iterators do (min and max take booleans too).
            let type_of = |f: &str| scanned.types.get(f).copied();
            for (func, field) in s.fields.iter().flat_map(functions) {
                let ty = type_of(field);
                let refused = match ty {
                    Some("string") => func.numeric(),
                    Some("boolean") => func.numeric() && !matches!(func, Func::Min | Func::Max),
                    _ => false,
                };
                if let (true, Some(ty)) = (refused, ty) {
                    return Err(format!(
                        "unsupported {} iterator type: *query.{ty}InterruptIterator",
                        func.name()
                    ));
                }
            }
            (data, field_names, tag_names) = match union {
                Some((f, t)) => (scanned.data, f.clone(), t.clone()),
                _ => (scanned.data, scanned.fields, scanned.tags),
            };
            shard_starts = scanned.shard_starts;
            s
        }
        Some(inner) => {
            // The subquery runs first (over the outer time range if it has
            // none), its series read as the outer query's.
            let mut inner = (**inner).clone();
            // SLIMIT and SOFFSET reach the subquery's reads, added to its
            // own, counting the outer query's groups, as influxd's (only
            // reads from shards apply them).
            inner.slimit = inner.slimit.saturating_add(s.slimit);
            inner.soffset = inner.soffset.saturating_add(s.soffset);
            inner.slimit_by = Some(s.slimit_by.clone().unwrap_or_else(|| s.group_tags.clone()));
            // The outer query's tags reach the subquery's groups, as
            // influxd passes its dimensions down: its series carry them.
            // (`GROUP BY *` outside groups by the subquery's own tags.)
            inner.group_tags = match (&inner.group_tags, &s.group_tags) {
                (GroupTags::All, _) => GroupTags::All,
                (own, GroupTags::None | GroupTags::All) => own.clone(),
                (GroupTags::None, outer) => outer.clone(),
                (GroupTags::Keys(own), GroupTags::Keys(outer)) => {
                    let mut keys = own.clone();
                    keys.extend(outer.iter().filter(|k| !own.contains(k)).cloned());
                    GroupTags::Keys(keys)
                }
            };
            if inner.min == i64::MIN && inner.max == i64::MAX {
                (inner.min, inner.max, inner.has_min) = (s.min, s.max, s.has_min);
            }
            let v = with_typed_floats(|| {
                select_exec(t, db, &inner, Some(Precision::Nanoseconds), limits.clone())
            })?;
            // Rows of a subquery of aggregates come ordered by their
            // series' tags, then time, as influxd reads them.
            by_series = aggs_only(&inner.fields) || with_aux(&inner.fields);
            let (name, rows) = subquery_series(&v);
            (field_names, tag_names) = names(&rows);
            // A selector's tag column (`top(v, host, 3)`) can be read by
            // name but is not among the fields `*` stands for.
            for p in &inner.fields {
                if let Projection::Selector { tag: Some(t), .. } = p {
                    field_names.remove(t);
                }
            }
            shard_starts = Vec::new();
            data = rows;
            let mut o = s.clone();
            o.measurement = name;
            o.subquery = None;
            outer = o;
            &outer
        }
    };
    // Keep series whose tags satisfy the condition, and the points whose
    // fields do.
    let filter = Filter::new(s.cond.as_ref())?;
    let keys = Keys::Known {
        tags: &tag_names,
        fields: &field_names,
    };
    // influxd's limits: series the condition on tags leaves, points read.
    let limit = |what: &str, n: u64, max: u64, verb: &str| {
        if max > 0 && n > max {
            Err(format!("max-select-{what} limit {verb}: ({n}/{max})"))
        } else {
            Ok(())
        }
    };
    let (series, points) = merged.unwrap_or_else(|| {
        let series = data
            .iter()
            .filter(|(tags, _)| filter.series(tags, &keys) != Some(false))
            .count() as u64;
        let points: u64 = data
            .iter()
            .flat_map(|(_, f)| f.values())
            .map(|v| v.len() as u64)
            .sum();
        (series, points)
    });
    limit("series", series, limits.max_select_series, "exceeded")?;
    // influxd spells this one so.
    limit("point", points, limits.max_select_point, "exceeed")?;
    let data: Vec<TaggedSeries> = if merged.is_some() {
        // The conditions were applied as the series were read.
        data
    } else {
        data.into_iter()
            .filter_map(|(tags, fields)| match filter.series(&tags, &keys) {
                Some(true) => Some((tags, fields)),
                Some(false) => None,
                None => {
                    let fields = keep_rows(&tags, fields, &filter, &keys);
                    Some((tags, fields))
                }
            })
            .filter(|(_, fields)| !fields.is_empty())
            .collect()
    };
    if data.is_empty() {
        return Ok(json!({}));
    }
    // The groups: series by the values of the grouped tags (a missing tag
    // is ""), in order of those values.
    let keys: Vec<String> = s
        .group_tags
        .keys()
        .unwrap_or_else(|| tag_names.iter().cloned().collect());
    let mut groups: std::collections::BTreeMap<Vec<String>, Vec<&TaggedSeries>> =
        std::collections::BTreeMap::new();
    // Folded: each entry of `data` is a group; its index is its folder's.
    let mut folded_at: std::collections::BTreeMap<Vec<String>, usize> =
        std::collections::BTreeMap::new();
    for (i, d) in data.iter().enumerate() {
        let vals = super::values::group_of(&d.0, &keys);
        folded_at.insert(vals.clone(), i);
        groups.entry(vals).or_default().push(d);
    }
    let grouped = !matches!(s.group_tags, GroupTags::None);
    let mut out = Vec::new();
    // `ORDER BY time DESC` reverses the series too, as influxd's. (SLIMIT
    // and SOFFSET were applied by each shard as it was read.)
    let ordered: Vec<(&Vec<String>, &Vec<&TaggedSeries>)> = if s.desc {
        groups.iter().rev().collect()
    } else {
        groups.iter().collect()
    };
    let times = TimeFmt { epoch, tz: s.tz };
    // Fields and tags beside a selector.
    let aux = super::aux::Aux::of(s, &field_names, &tag_names, &keys);
    for (vals, members) in ordered {
        let body = if aggs_only(&s.fields) || with_aux(&s.fields) {
            let acc = match (&mut folder, folded_at.get(vals)) {
                (Some(f), Some(i)) => Some(f.take(*i)),
                _ => None,
            };
            aggregate_rows(
                s,
                (&members[..], &shard_starts),
                acc.as_ref(),
                &field_names,
                times,
                limits.max_select_buckets,
                aux.as_ref(),
            )?
        } else if by_series {
            raw_rows_by_series(s, &members[..], (&field_names, &tag_names), &keys, times)
        } else {
            raw_rows(
                s,
                &members[..],
                (&field_names, &tag_names),
                &keys,
                &shard_starts,
                times,
            )
        };
        let Some((columns, values)) = body else {
            continue;
        };
        let mut one = json!({"name": s.measurement, "columns": columns, "values": values});
        if grouped && !keys.is_empty() {
            let tags: serde_json::Map<String, Value> = keys
                .iter()
                .zip(vals)
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            one["tags"] = Value::Object(tags);
        }
        out.push(one);
    }
    if out.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({ "series": out }))
}

/// Raw rows over a subquery of aggregates: influxd reads the subquery's
/// rows ordered by their series' tags, then time, so each run of members
/// of one series (rows at one time of a series are members of their own,
/// see [`subquery_series`]) is merged by time on its own, the runs one
/// after another, and `OFFSET`/`LIMIT` count the whole.
fn raw_rows_by_series(
    s: &Select,
    members: &[&TaggedSeries],
    names: (&BTreeSet<String>, &BTreeSet<String>),
    keys: &[String],
    times: TimeFmt,
) -> super::aggregate::Rows {
    let mut each = s.clone();
    (each.limit, each.offset) = (0, 0);
    let (mut columns, mut values) = (Vec::new(), Vec::new());
    for run in members.chunk_by(|a, b| a.0 == b.0) {
        if let Some((c, v)) = raw_rows(&each, run, names, keys, &[], times) {
            columns = c;
            values.extend(v);
        }
    }
    values.drain(..s.offset.min(values.len()));
    if s.limit > 0 {
        values.truncate(s.limit);
    }
    (!values.is_empty()).then_some((columns, values))
}

/// The functions a projection calls, each with its field.
fn functions(p: &Projection) -> Vec<(Func, &str)> {
    match p {
        Projection::Agg(f, field) => vec![(*f, field.as_str())],
        Projection::Nested { inner, field, .. } => vec![(*inner, field.as_str())],
        Projection::Math(e) => {
            let mut leaves = Vec::new();
            e.leaves(&mut leaves);
            leaves
                .into_iter()
                .filter_map(|l| match l {
                    Expr::Call(f, field) => Some((*f, field.as_str())),
                    _ => None,
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

/// The field names and tag keys of a subquery's series (`*` is every field
/// and tag of what it answered, whatever the conditions keep).
fn names(data: &[TaggedSeries]) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut fields, mut tags) = (BTreeSet::new(), BTreeSet::new());
    for (t, f) in data {
        fields.extend(f.keys().cloned());
        tags.extend(t.iter().map(|(k, _)| k.clone()));
    }
    (fields, tags)
}

/// The points of a series' fields at the times where the condition
/// holds on the row of fields there.
pub(super) fn keep_rows(
    tags: &[(String, String)],
    mut fields: BTreeMap<String, Vec<(i64, FieldValue)>>,
    filter: &Filter,
    keys: &Keys,
) -> BTreeMap<String, Vec<(i64, FieldValue)>> {
    // Only times where a field the condition reads has a value can pass
    // (a missing field fails every comparison).
    let read: Vec<&str> = filter.fields(keys).into_iter().collect();
    // A condition that reads no field (`1 = 1`) is the same at every time.
    if read.is_empty() {
        return if filter.row(tags, keys, &|_| None) {
            fields
        } else {
            BTreeMap::new()
        };
    }
    let mut rows: BTreeMap<i64, Vec<Option<FieldValue>>> = BTreeMap::new();
    for (i, f) in read.iter().enumerate() {
        for (t, v) in fields.get(*f).into_iter().flatten() {
            rows.entry(*t).or_insert_with(|| vec![None; read.len()])[i] = Some(v.clone());
        }
    }
    let keep: BTreeSet<i64> = rows
        .into_iter()
        .filter(|(_, row)| {
            let lookup = |k: &str| {
                read.iter()
                    .position(|r| *r == k)
                    .and_then(|i| row[i].clone())
            };
            filter.row(tags, keys, &lookup)
        })
        .map(|(t, _)| t)
        .collect();
    for pts in fields.values_mut() {
        pts.retain(|(t, _)| keep.contains(t));
    }
    fields.retain(|_, pts| !pts.is_empty());
    fields
}

/// Whether a SELECT transforms aggregates (then its buckets start one
/// interval before the range, as influxd's, so that the first bucket of
/// the range has one before it; a forecast reads the range alone).
pub(super) fn transforms(s: &Select) -> bool {
    s.fields.iter().any(|f| {
        matches!(f, Projection::Nested { outer, .. }
            if !matches!(outer, Transform::HoltWinters { .. }))
    })
}

/// The times a SELECT reads: its range, with one more bucket where its
/// transformations start (before the range; after it for `ORDER BY time
/// DESC`, which transforms the buckets newest first).
pub(super) fn scan_range(s: &Select) -> (i64, i64) {
    match s.group_time {
        Some((iv, _)) if transforms(s) && s.desc && s.max != i64::MAX => {
            (s.min, s.max.saturating_add(iv))
        }
        Some((iv, _)) if transforms(s) && !s.desc && s.has_min => (s.min.saturating_sub(iv), s.max),
        _ => (s.min, s.max),
    }
}

/// A subquery's result as series: each series' GROUP BY tags, and its
/// columns but time as fields (nulls left out); the measurement named.
fn subquery_series(v: &Value) -> (String, Vec<TaggedSeries>) {
    let mut name = String::new();
    let mut out = Vec::new();
    for one in super::into::result_series(v) {
        if name.is_empty() {
            name = one["name"].as_str().unwrap_or_default().to_string();
        }
        let (tags, columns) = super::into::tags_and_columns(one);
        // Rows at the same time (of several series merged) go to lanes of
        // their own, so that none is lost: a series holds one point per
        // field and time.
        let mut lanes: Vec<BTreeMap<String, Vec<(i64, FieldValue)>>> = Vec::new();
        let (mut last, mut lane) = (None, 0);
        for row in one["values"].as_array().into_iter().flatten() {
            let Some(row) = row.as_array() else { continue };
            let Some(t) = row.first().and_then(Value::as_i64) else {
                continue;
            };
            lane = if last == Some(t) { lane + 1 } else { 0 };
            last = Some(t);
            if lanes.len() <= lane {
                lanes.push(BTreeMap::new());
            }
            for (c, v) in columns.iter().zip(row).skip(1) {
                if let Some(f) = super::into::field(v) {
                    lanes[lane].entry(c.to_string()).or_default().push((t, f));
                }
            }
        }
        out.extend(lanes.into_iter().map(|fields| (tags.clone(), fields)));
    }
    (name, out)
}
