//! What a SELECT reads of one measurement, planned on the series index of
//! the shards its time range meets (as influxd's): the measurement's field
//! names and tag keys, the series the condition's tag equalities name (the
//! whole condition then tested on each one's tags), only the fields the
//! statement uses, and at most `LIMIT + OFFSET` points of each when the
//! rows are the points themselves.

use std::collections::{BTreeMap, BTreeSet};

use super::ast::*;
use super::filter::{Filter, Keys};
use super::select_exec::SelectLimits;
use super::values::{TaggedSeries, series_tags};
use crate::tsdb::fsm::TsdbView;
use crate::tsdb::tsm::KEY_FIELD_SEPARATOR;

/// The series read, and the measurement's names in the shards read.
pub(super) struct Scanned {
    /// Every series the condition's tags let through (some without points
    /// in the range), with the points of the fields read.
    pub data: Vec<TaggedSeries>,
    /// Field names.
    pub fields: BTreeSet<String>,
    /// Each field's type name.
    pub types: BTreeMap<String, &'static str>,
    /// Tag keys.
    pub tags: BTreeSet<String>,
    /// The times where a shard after the first starts (influxd merges the
    /// series of each shard on its own).
    pub shard_starts: Vec<i64>,
    /// Set when the series were merged into their groups as they were
    /// read (see [`scan`]'s `groups`): `data` then holds one entry per
    /// group, its conditions already applied, and these are the series
    /// and points read, for influxd's limits.
    pub merged: Option<(u64, u64)>,
}

/// What a scan of one measurement reads from: the shards its range meets,
/// the measurement's names there, the condition, and the series the
/// condition's tag equalities name.
struct Plan<'v> {
    starts: Vec<i64>,
    shards: Vec<&'v crate::tsdb::shard::ShardView>,
    fields: BTreeSet<String>,
    types: BTreeMap<String, &'static str>,
    tags: BTreeSet<String>,
    filter: Filter,
    /// Series key → the fields it has in some shard of the range.
    candidates: BTreeMap<String, BTreeSet<String>>,
    /// The fields read (None: every field).
    wanted: Option<BTreeSet<String>>,
}

impl<'v> Plan<'v> {
    fn new(t: &'v TsdbView, db: &str, s: &Select, (from, to): (i64, i64)) -> Result<Self, String> {
        let (starts, shards): (Vec<i64>, Vec<_>) = t
            .shards_in(db, s.rp.as_deref().unwrap_or(""), from, to)
            .map_err(|e| e.to_string())?
            .into_iter()
            .unzip();
        let (mut tags, mut types) = (BTreeSet::new(), BTreeMap::new());
        for shard in &shards {
            shard.tag_keys(&s.measurement, &mut tags);
            shard.field_types(&s.measurement, &mut types);
        }
        let fields: BTreeSet<String> = types.keys().cloned().collect();
        let filter = Filter::new(s.cond.as_ref())?;
        let keys = Keys::Known {
            tags: &tags,
            fields: &fields,
        };
        let mut eq = Vec::new();
        if let Some(c) = &s.cond {
            tag_equalities(c, &keys, &mut eq);
        }
        let mut candidates: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for shard in &shards {
            shard.series(&s.measurement, &eq, &mut candidates);
        }
        let wanted = used_fields(s, &filter, &keys);
        Ok(Plan {
            starts,
            shards,
            fields,
            types,
            tags,
            filter,
            candidates,
            wanted,
        })
    }

    fn keys(&self) -> Keys<'_> {
        Keys::Known {
            tags: &self.tags,
            fields: &self.fields,
        }
    }

    /// The candidates whose tags may satisfy the condition, each with its
    /// tags, the condition's verdict on them (None: it reads fields too),
    /// and the fields read of it.
    fn series(&self) -> impl Iterator<Item = (&str, TagList, Option<bool>, Vec<&str>)> + '_ {
        let keys = self.keys();
        self.candidates.iter().filter_map(move |(series, have)| {
            let series_tags = series_tags(series);
            let on_tags = self.filter.series(&series_tags, &keys);
            if on_tags == Some(false) {
                return None;
            }
            let read = have
                .iter()
                .filter(|f| self.wanted.as_ref().is_none_or(|w| w.contains(*f)))
                .map(String::as_str)
                .collect();
            Some((series.as_str(), series_tags, on_tags, read))
        })
    }
}

/// A series' tags.
type TagList = Vec<(String, String)>;

/// Reads what `s` needs of its measurement in `[from, to]` (its points
/// only within `limits.window`, when set: the names still come from the
/// whole range). Stops with influxd's `query interrupted` once the
/// interrupt is set.
///
/// With `groups` (the tag keys an aggregate groups by), each series is
/// tested against the whole condition and merged into its group's entry
/// as it is read (fields appended in series order, as the aggregates
/// concatenate them), so memory follows the points read, not the series;
/// with `fold` too, its points are folded into the group's accumulators
/// and not kept, so memory follows the groups and buckets.
pub(super) fn scan(
    t: &TsdbView,
    db: &str,
    s: &Select,
    (from, to): (i64, i64),
    limits: &SelectLimits,
    groups: Option<&[String]>,
    mut fold: Option<&mut super::fold::Folder>,
) -> Result<Scanned, String> {
    let plan = Plan::new(t, db, s, (from, to))?;
    let keys = plan.keys();
    let filter = &plan.filter;
    let per_field = points_per_field(s, filter, &keys);
    let (read_from, read_to) = match limits.window {
        Some((a, b)) => (from.max(a), to.min(b)),
        None => (from, to),
    };
    let mut data = Vec::new();
    // Merged: group tag values → entry in `data`; series and points read.
    let mut group_at: BTreeMap<Vec<String>, usize> = BTreeMap::new();
    let (mut series_read, mut points_read) = (0u64, 0u64);
    for (i, (series, series_tags, on_tags, read)) in plan.series().enumerate() {
        if i % 256 == 0 && limits.interrupt.is_set() {
            return Err("query interrupted".into());
        }
        let mut points = BTreeMap::new();
        for field in read {
            let key = format!("{series}{KEY_FIELD_SEPARATOR}{field}");
            let mut pts = Vec::new();
            for shard in &plan.shards {
                let read = match per_field {
                    Some(n) => shard.read_n(&key, read_from, read_to, n, s.desc),
                    None => shard.read(&key, read_from, read_to),
                };
                pts.extend(read.map_err(|e| e.to_string())?);
            }
            if let Some(n) = per_field {
                // Shards are in time order: keep the first (last) n overall.
                let skip = if s.desc {
                    pts.len().saturating_sub(n)
                } else {
                    0
                };
                pts = pts.into_iter().skip(skip).take(n).collect();
            }
            if !pts.is_empty() {
                points.insert(field.to_string(), pts);
            }
        }
        let Some(group_keys) = groups else {
            data.push((series_tags, points));
            continue;
        };
        series_read += 1;
        points_read += points.values().map(|p| p.len() as u64).sum::<u64>();
        if on_tags.is_none() {
            points = super::select_exec::keep_rows(&series_tags, points, filter, &keys);
        }
        if points.is_empty() {
            continue;
        }
        let value = |k: &String| {
            series_tags
                .iter()
                .find(|(tk, _)| tk == k)
                .map_or(String::new(), |(_, v)| v.clone())
        };
        let values: Vec<String> = group_keys.iter().map(value).collect();
        let at = *group_at.entry(values.clone()).or_insert_with(|| {
            let tags = group_keys
                .iter()
                .zip(values)
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.clone(), v))
                .collect();
            data.push((tags, BTreeMap::new()));
            data.len() - 1
        });
        for (field, pts) in points {
            match fold.as_deref_mut() {
                // Folded into the group's accumulators: nothing kept.
                Some(f) => f.add(at, &field, &pts),
                None => data[at].1.entry(field).or_default().extend(pts),
            }
        }
    }
    let Plan {
        starts,
        fields,
        types,
        tags,
        ..
    } = plan;
    Ok(Scanned {
        data,
        fields,
        types,
        tags,
        shard_starts: starts.into_iter().skip(1).collect(),
        merged: groups.map(|_| (series_read, points_read)),
    })
}

/// The `tag = 'value'` terms every series passing `c` must satisfy (those
/// joined by AND at its top; a missing tag is "", so an empty value is
/// left to the full test).
fn tag_equalities<'a>(c: &'a Cond, keys: &Keys, out: &mut Vec<(&'a str, &'a str)>) {
    match c {
        Cond::And(a, b) => {
            tag_equalities(a, keys, out);
            tag_equalities(b, keys, out);
        }
        Cond::Cmp {
            key,
            op: CmpOp::Eq,
            value: value @ Lit::Str(v),
        } if !v.is_empty() && keys.is_tag(key, value) => out.push((key, v)),
        _ => {}
    }
}

/// The fields `s` reads (None: every field).
fn used_fields(s: &Select, filter: &Filter, keys: &Keys) -> Option<BTreeSet<String>> {
    let mut out: BTreeSet<String> = filter
        .fields(keys)
        .into_iter()
        .map(str::to_string)
        .collect();
    let expr = |e: &Expr, out: &mut BTreeSet<String>| {
        let mut leaves = Vec::new();
        e.leaves(&mut leaves);
        for l in leaves {
            match l {
                Expr::Field(f) | Expr::Call(_, f) => {
                    out.insert(f.clone());
                }
                _ => {}
            }
        }
    };
    for p in &s.fields {
        match p {
            Projection::All => return None,
            Projection::Field(f) | Projection::Agg(_, f) => {
                if f == "*" {
                    return None;
                }
                out.insert(f.clone());
            }
            Projection::Nested { field, .. } | Projection::Selector { field, .. } => {
                if field == "*" {
                    return None;
                }
                out.insert(field.clone());
            }
            Projection::Math(e) => expr(e, &mut out),
            Projection::Invalid(_) => {}
        }
    }
    Some(out)
}

/// How many points of each field a statement whose rows are its points can
/// use: `LIMIT + OFFSET` (per series, from the start, or the end for
/// `ORDER BY time DESC`), when no condition on fields drops rows.
fn points_per_field(s: &Select, filter: &Filter, keys: &Keys) -> Option<usize> {
    let raw = s.fields.iter().all(|p| match p {
        Projection::All | Projection::Field(_) => true,
        Projection::Math(e) => !e.has_call(),
        _ => false,
    });
    (raw && s.limit > 0 && s.group_time.is_none() && filter.fields(keys).is_empty())
        .then(|| s.limit.saturating_add(s.offset))
}

/// Grouped tag keys, and each group's values of them, in order.
pub(super) type Groups = (Vec<String>, BTreeSet<Vec<String>>);

/// The grouped tag keys of `s`'s series in `[from, to]` (`keys`, or
/// every tag key of the range when None), and the groups of the series
/// whose tags may satisfy its condition: each one's values of those keys,
/// "" where a series has no such tag. None when a grouped key also names
/// a field (a condition on it would not say which).
pub(super) fn group_values(
    t: &TsdbView,
    db: &str,
    s: &Select,
    range: (i64, i64),
    keys: Option<&[String]>,
) -> Result<Option<Groups>, String> {
    let plan = Plan::new(t, db, s, range)?;
    let keys: Vec<String> = match keys {
        Some(k) => k.to_vec(),
        None => plan.tags.iter().cloned().collect(),
    };
    if keys.iter().any(|k| plan.fields.contains(k)) {
        return Ok(None);
    }
    let mut out = BTreeSet::new();
    for (_, tags, _, _) in plan.series() {
        let value = |k: &String| {
            tags.iter()
                .find(|(tk, _)| tk == k)
                .map_or(String::new(), |(_, v)| v.clone())
        };
        out.insert(keys.iter().map(value).collect::<Vec<String>>());
    }
    Ok(Some((keys, out)))
}

/// How one group's statement is read a page at a time (see
/// [`Pager::end`]): its plan, made once for all its pages.
pub(super) struct Pager<'v> {
    plan: Plan<'v>,
    /// More than one series: a page is a shard group's.
    several: bool,
    /// Points of one field a page of one series may hold.
    per_key: usize,
    /// The statement's range.
    range: (i64, i64),
}

impl<'v> Pager<'v> {
    /// The pager of `s` over `range`, its pages about `page_rows` rows.
    pub(super) fn new(
        t: &'v TsdbView,
        db: &str,
        s: &Select,
        range: (i64, i64),
        page_rows: usize,
    ) -> Result<Self, String> {
        let plan = Plan::new(t, db, s, range)?;
        let several = plan.series().nth(1).is_some();
        let per_key = (page_rows / plan.candidates.len().max(1)).max(16);
        Ok(Pager {
            plan,
            several,
            per_key,
            range,
        })
    }

    /// Where a page of `s`'s points in its range that starts at
    /// `cursor` (and goes forward, or backward for `ORDER BY time DESC`)
    /// ends. Of one series: so that no field has more than its share of
    /// the page's rows, the first time at which one has its share (the
    /// last, going backward). Of several: where the shard group ends, as
    /// rows of several series at one time come in the order of influxd's
    /// merge heap, which depends on every row merged before them in the
    /// shard. None: the page runs to the range's end.
    pub(super) fn end(
        &self,
        s: &Select,
        cursor: i64,
        limits: &SelectLimits,
    ) -> Result<Option<i64>, String> {
        let (plan, per_key, (from, to)) = (&self.plan, self.per_key, self.range);
        if self.several {
            return Ok(if s.desc {
                plan.starts
                    .iter()
                    .rev()
                    .find(|st| **st <= cursor)
                    .filter(|st| **st > from)
                    .copied()
            } else {
                plan.starts.iter().find(|st| **st > cursor).map(|st| st - 1)
            });
        }
        let mut end: Option<i64> = None;
        for (i, (series, _, _, read)) in plan.series().enumerate() {
            if i % 256 == 0 && limits.interrupt.is_set() {
                return Err("query interrupted".into());
            }
            for field in read {
                let key = format!("{series}{KEY_FIELD_SEPARATOR}{field}");
                // Past the end found so far, nothing matters.
                let (a, b) = match (s.desc, end) {
                    (false, Some(e)) => (cursor, e),
                    (false, None) => (cursor, to),
                    (true, Some(e)) => (e, cursor),
                    (true, None) => (from, cursor),
                };
                let mut seen = 0usize;
                let ordered: Box<dyn Iterator<Item = _>> = if s.desc {
                    Box::new(plan.shards.iter().rev())
                } else {
                    Box::new(plan.shards.iter())
                };
                for shard in ordered {
                    let pts = shard
                        .read_n(&key, a, b, per_key - seen, s.desc)
                        .map_err(|e| e.to_string())?;
                    seen += pts.len();
                    if seen >= per_key {
                        // read_n answers in time order either way.
                        let at = if s.desc {
                            pts.first().map(|p| p.0)
                        } else {
                            pts.last().map(|p| p.0)
                        };
                        end = at.or(end);
                        break;
                    }
                }
            }
        }
        Ok(end)
    }
}
