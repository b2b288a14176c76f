//! What a SELECT reads of one measurement, planned on the series index of
//! the shards its time range meets (as influxd's): the measurement's field
//! names and tag keys, the series the condition's tag equalities name (the
//! whole condition then tested on each one's tags), only the fields the
//! statement uses, and at most `LIMIT + OFFSET` points of each when the
//! rows are the points themselves.

use std::collections::{BTreeMap, BTreeSet};

use super::ast::*;
use super::filter::{Filter, Keys};
use super::select_exec::{SelectLimits, Union};
use super::values::Points;
use super::values::{TaggedSeries, group_of, series_tags};
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
    /// read (see [`scan`]'s `groups`; `data` then holds one entry per
    /// group), or pruned or sampled for a selector (one entry per series
    /// with points left): the conditions are then already applied, and these
    /// are the series and points read, for influxd's limits.
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
    /// Under `SLIMIT`/`SOFFSET`: the groups each shard keeps.
    kept: Option<super::slimit::Kept>,
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
        // Under SLIMIT/SOFFSET, each shard's series on their own too.
        let limited = s.slimit > 0 || s.soffset > 0;
        let mut per_shard: Vec<Vec<String>> = Vec::new();
        for shard in &shards {
            if !limited {
                shard.series(&s.measurement, &eq, &mut candidates);
                continue;
            }
            let mut own = BTreeMap::new();
            shard.series(&s.measurement, &eq, &mut own);
            per_shard.push(own.keys().cloned().collect());
            for (series, fields) in own {
                candidates.entry(series).or_default().extend(fields);
            }
        }
        let wanted = used_fields(s, &filter, &keys);
        let kept = limited.then(|| super::slimit::Kept::new(&per_shard, s, &filter, &keys, &tags));
        Ok(Plan {
            starts,
            shards,
            fields,
            types,
            tags,
            filter,
            candidates,
            wanted,
            kept,
        })
    }

    /// The shards a series with these tags is read from: every one, but
    /// under `SLIMIT`/`SOFFSET` only those that kept its group.
    fn shards_of(
        &self,
        tags: &[(String, String)],
    ) -> std::borrow::Cow<'_, [&'v crate::tsdb::shard::ShardView]> {
        match &self.kept {
            None => std::borrow::Cow::Borrowed(&self.shards),
            Some(kept) => {
                let group = kept.group(tags);
                let shards = self.shards.iter().enumerate();
                std::borrow::Cow::Owned(
                    shards
                        .filter(|(i, _)| kept.keeps(*i, &group))
                        .map(|(_, shard)| *shard)
                        .collect(),
                )
            }
        }
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
/// How [`scan`] hands over what it read.
#[derive(Default)]
pub(super) struct Reading<'a> {
    /// The tag keys an aggregate groups by: each series is tested against
    /// the whole condition and merged into its group's entry as it is
    /// read (fields appended in series order, as the aggregates
    /// concatenate them), so memory follows the points read, not the
    /// series.
    pub groups: Option<&'a [String]>,
    /// With `groups`, the groups' accumulators: a series' points are
    /// folded into them and not kept, so memory follows the groups and
    /// buckets.
    pub fold: Option<&'a mut super::fold::Folder>,
    /// The field names and tag keys of all the measurements a SELECT of
    /// several reads (its columns name them all).
    pub union: Option<&'a Union>,
    /// Without `groups`: each series is tested against the whole
    /// condition as it is read and keeps only the points `top()` or
    /// `bottom()` can pick.
    pub prune: Option<&'a super::selector_prune::SelectorPrune<'a>>,
    /// Without `groups`: each series is tested against the whole
    /// condition as it is read and fed to `sample()`'s reservoirs; the
    /// points they keep are the data.
    pub sample: Option<&'a mut super::sampler::Sampler>,
}

/// Reads what `s` needs of its measurement in `[from, to]` (its points
/// only within `limits.window`, when set: the names still come from the
/// whole range). Stops with influxd's `query interrupted` once the
/// interrupt is set.
pub(super) fn scan(
    t: &TsdbView,
    db: &str,
    s: &Select,
    (from, to): (i64, i64),
    limits: &SelectLimits,
    reading: Reading,
) -> Result<Scanned, String> {
    let Reading {
        groups,
        mut fold,
        union,
        prune,
        mut sample,
    } = reading;
    let plan = Plan::new(t, db, s, (from, to))?;
    let keys = plan.keys();
    let filter = &plan.filter;
    let per_field = points_per_field(s, filter, &keys);
    let range = match limits.window {
        Some((a, b)) => (from.max(a), to.min(b)),
        None => (from, to),
    };
    // Under LIMIT, only the series whose points can come first.
    let plain = prune.is_none() && sample.is_none();
    // A measurement `FROM` names twice is read twice, as influxd's.
    let reads = s.reads.max(1);
    let nearest = match (per_field, groups) {
        (Some(n), None) if plain && reads == 1 => {
            nearest_series(&plan, s, n, range, limits, union)?
        }
        _ => None,
    };
    // Each series read: its tags, the condition's verdict on them, its
    // points.
    let series: Box<dyn Iterator<Item = Result<_, String>>> = match nearest {
        Some(kept) => Box::new(kept.into_values().map(Ok)),
        None => Box::new(plan.series().map(|(series, tags, on_tags, read)| {
            let shards = plan.shards_of(&tags);
            let points = read_points(&shards, series, &read, range, per_field, s.desc)?;
            Ok((tags, on_tags, points))
        })),
    };
    let mut data = Vec::new();
    // Merged: group tag values → entry in `data`; series and points read.
    let mut group_at: BTreeMap<Vec<String>, usize> = BTreeMap::new();
    let (mut series_read, mut points_read) = (0u64, 0u64);
    for (i, one) in series.enumerate() {
        if i % 256 == 0 && limits.interrupt.is_set() {
            return Err("query interrupted".into());
        }
        let (series_tags, on_tags, mut points) = one?;
        if groups.is_none() && plain {
            data.push((series_tags, points));
            continue;
        }
        series_read += 1;
        points_read += points.values().map(|p| p.len() as u64).sum::<u64>();
        if on_tags.is_none() {
            points = super::select_exec::keep_rows(&series_tags, points, filter, &keys);
        }
        let Some(group_keys) = groups else {
            if let Some(sm) = sample.as_deref_mut() {
                for _ in 1..reads {
                    sm.add(series_tags.clone(), &points);
                }
                sm.add(series_tags, &points);
                continue;
            }
            if let Some(p) = prune {
                points = p.prune(points);
            }
            if !points.is_empty() {
                data.push((series_tags, points));
            }
            continue;
        };
        if points.is_empty() {
            continue;
        }
        let values = group_of(&series_tags, group_keys);
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
            for _ in 0..reads {
                match fold.as_deref_mut() {
                    // Folded into the group's accumulators: nothing kept.
                    Some(f) => f.add(at, &field, &pts),
                    None => data[at]
                        .1
                        .entry(field.clone())
                        .or_default()
                        .extend_from_slice(&pts),
                }
            }
        }
    }
    if groups.is_none() && sample.is_none() && reads > 1 {
        let once = data.clone();
        for _ in 1..reads {
            data.extend(once.iter().cloned());
        }
    }
    let reads = reads as u64;
    let (series_read, points_read) = (series_read * reads, points_read * reads);
    if let Some(sm) = sample {
        data.extend(sm.finish());
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
        merged: (groups.is_some() || !plain).then_some((series_read, points_read)),
    })
}

/// A series read: its tags, the condition's verdict on them (None: it
/// reads fields too), its points.
type SeriesRead = (TagList, Option<bool>, Points);

/// The points of `series`' fields `read` in `range`: with `per_field`,
/// only the first (or with `desc` the last) that many of each.
fn read_points(
    shards: &[&crate::tsdb::shard::ShardView],
    series: &str,
    read: &[&str],
    (from, to): (i64, i64),
    per_field: Option<usize>,
    desc: bool,
) -> Result<Points, String> {
    let mut points = BTreeMap::new();
    for field in read {
        let key = format!("{series}{KEY_FIELD_SEPARATOR}{field}");
        let mut pts = Vec::new();
        for shard in shards {
            let read = match per_field {
                Some(n) => shard.read_n(&key, from, to, n, desc),
                None => shard.read(&key, from, to),
            };
            pts.extend(read.map_err(|e| e.to_string())?);
        }
        if let Some(n) = per_field {
            // Shards are in time order: keep the first (last) n overall.
            let skip = if desc { pts.len().saturating_sub(n) } else { 0 };
            pts = pts.into_iter().skip(skip).take(n).collect();
        }
        if !pts.is_empty() {
            points.insert(field.to_string(), pts);
        }
    }
    Ok(points)
}

/// Under `LIMIT`, the series a SELECT of raw points needs (`n`: the
/// LIMIT + OFFSET rows it shows of each group) with their points, by
/// position in [`Plan::series`]. In each group the series are read in
/// the order of when their first point in the range can be (their last
/// for `ORDER BY time DESC`), as the file indexes and the cache tell
/// ([`crate::tsdb::shard::ShardView::time_bound`]), until the next one
/// cannot start before the `n` rows already read end: its rows would all
/// come after them.
///
/// Each kept series comes with its tags and the condition's verdict on
/// them (true).
///
/// None when every series must be read: when influxd's limits on series
/// and points count them all, under `GROUP BY *` (each series is a
/// group), under a condition that reads more than tags, or when rows of
/// two series at one time may compare equal: influxd's merge then orders
/// them by the shape of a heap of every series (see
/// [`super::raw::raw_rows`]), so each series must be there. Rows at one
/// time are ordered by the string values of the names the columns read,
/// in name order, up to the first that is not a string: those must
/// include every tag that is not grouped, and every series must have
/// them.
fn nearest_series(
    plan: &Plan,
    s: &Select,
    n: usize,
    (from, to): (i64, i64),
    limits: &SelectLimits,
    union: Option<&Union>,
) -> Result<Option<BTreeMap<usize, SeriesRead>>, String> {
    if limits.max_select_point > 0 || plan.kept.is_some() || limits.max_select_series > 0 {
        return Ok(None);
    }
    let Some(grouped) = s.group_tags.keys() else {
        return Ok(None);
    };
    let (fields, tags) = union.map_or((&plan.fields, &plan.tags), |(f, t)| (f, t));
    let cols = super::raw::columns(s, fields, tags, &grouped);
    let ordering: Vec<&str> = super::raw::names_read(&cols)
        .into_iter()
        .take_while(|n| plan.tags.contains(*n) && !plan.fields.contains(*n))
        .collect();
    let distinct = plan
        .tags
        .iter()
        .filter(|k| !grouped.contains(k))
        .all(|k| ordering.contains(&k.as_str()));
    if !distinct {
        return Ok(None);
    }
    // How near the range's start (its end for DESC) a time is: lower is
    // nearer.
    let near = |t: i64| {
        if s.desc {
            -i128::from(t)
        } else {
            i128::from(t)
        }
    };
    // Each group's series that have something in the range: (how near
    // their first point can be, position, key, tags, fields read).
    type Candidate<'p> = (i128, usize, &'p str, TagList, Vec<&'p str>);
    let mut groups: BTreeMap<Vec<String>, Vec<Candidate>> = BTreeMap::new();
    for (i, (series, series_tags, on_tags, read)) in plan.series().enumerate() {
        if i % 256 == 0 && limits.interrupt.is_set() {
            return Err("query interrupted".into());
        }
        let has = |k: &str| series_tags.iter().any(|(tk, _)| tk == k);
        if on_tags != Some(true) || !ordering.iter().all(|k| has(k)) {
            return Ok(None);
        }
        let mut bound: Option<i128> = None;
        for field in &read {
            let key = format!("{series}{KEY_FIELD_SEPARATOR}{field}");
            for shard in &plan.shards {
                if let Some(t) = shard.time_bound(&key, from, to, s.desc) {
                    bound = Some(bound.map_or(near(t), |b| b.min(near(t))));
                }
            }
        }
        let Some(bound) = bound else {
            continue;
        };
        let values = group_of(&series_tags, &grouped);
        groups
            .entry(values)
            .or_default()
            .push((bound, i, series, series_tags, read));
    }
    let mut kept = BTreeMap::new();
    for (_, mut candidates) in groups {
        candidates.sort_unstable_by_key(|c| (c.0, c.1));
        // The nearest rows read so far, the farthest on top.
        let mut rows: std::collections::BinaryHeap<i128> = std::collections::BinaryHeap::new();
        for (bound, i, series, tags, read) in candidates {
            if rows.len() >= n && rows.peek().is_some_and(|far| bound > *far) {
                break;
            }
            if limits.interrupt.is_set() {
                return Err("query interrupted".into());
            }
            let points = read_points(&plan.shards, series, &read, (from, to), Some(n), s.desc)?;
            let times: BTreeSet<i64> = points.values().flatten().map(|p| p.0).collect();
            for t in times {
                rows.push(near(t));
                if rows.len() > n {
                    rows.pop();
                }
            }
            kept.insert(i, (tags, Some(true), points));
        }
    }
    Ok(Some(kept))
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
        out.insert(group_of(&tags, &keys));
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

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::super::select_exec::select_exec;
    use super::*;
    use crate::proto::tsdb::{self as pb, command::Cmd};
    use crate::tsdb::fsm::Tsdb;
    use crate::tsdb::line_protocol::{self, Precision};
    use proptest::prelude::*;
    use serde_json::{Value, json};

    const HOUR: i64 = 3_600_000_000_000;

    fn run(t: &mut Tsdb, cmd: Cmd) {
        t.execute(pb::Command { cmd: Some(cmd) }).unwrap();
    }

    /// A store of database `db` with `batches` of line protocol written
    /// (the shards flushed to files after those marked so), then the
    /// `statements` (deletes) applied.
    fn store(dir: &std::path::Path, batches: &[(String, bool)], statements: &[String]) -> Tsdb {
        let mut t = Tsdb::open(dir.join("tsdb")).unwrap();
        run(
            &mut t,
            Cmd::CreateDatabase(pb::CreateDatabase { name: "db".into() }),
        );
        for (text, flush) in batches {
            let (points, errs) = line_protocol::parse(text, Precision::Nanoseconds, 0);
            assert!(errs.is_empty(), "{errs:?}");
            run(
                &mut t,
                crate::tsdb::write_batch::write_command("db", "", points),
            );
            if *flush {
                t.flush_all().unwrap();
            }
        }
        for q in statements {
            let cmd = parse(q, 0).unwrap()[0].command("db").unwrap().unwrap();
            run(&mut t, cmd);
        }
        t
    }

    use super::super::tests::select_of as statement;

    /// `q`'s answer as it is read (under LIMIT, only the series whose rows
    /// can come first), and with every series read: a point limit no
    /// statement here reaches turns the choice off and changes nothing
    /// else.
    fn chosen_and_all(v: &TsdbView, q: &str) -> (Value, Value) {
        let s = statement(q);
        let answer = |limits| select_exec(v, "db", &s, None, limits).unwrap_or_else(|e| json!(e));
        let every = SelectLimits {
            max_select_point: u64::MAX,
            ..SelectLimits::default()
        };
        (answer(SelectLimits::default()), answer(every))
    }

    /// How many series [`nearest_series`] reads for `q` (None: all).
    fn series_chosen(v: &TsdbView, q: &str) -> Option<usize> {
        let s = statement(q);
        let range = super::super::select_exec::scan_range(&s);
        let plan = Plan::new(v, "db", &s, range).unwrap();
        let n = s.limit + s.offset;
        let limits = SelectLimits::default();
        nearest_series(&plan, &s, n, range, &limits, None)
            .unwrap()
            .map(|kept| kept.len())
    }

    #[test]
    fn under_limit_only_the_series_that_come_first_are_read() {
        let d = tempfile::tempdir().unwrap();
        // 200 series, a point each, an hour apart (series i at hour
        // 199 - i), half of them flushed to files.
        let line = |i: i64| {
            format!(
                "m,host=h{},id={i} v={i},s=\"x\" {}\n",
                i % 7,
                (199 - i) * HOUR
            )
        };
        let first: String = (0..100).map(line).collect();
        let second: String = (100..200).map(line).collect();
        let mut t = store(d.path(), &[(first, true), (second, false)], &[]);
        let v = t.view();
        for (q, read) in [
            ("SELECT * FROM m LIMIT 3", Some(3)),
            ("SELECT * FROM m LIMIT 3 OFFSET 2", Some(5)),
            ("SELECT * FROM m ORDER BY time DESC LIMIT 1", Some(1)),
            ("SELECT host, id, v FROM m LIMIT 2", Some(2)),
            // Two per host.
            ("SELECT * FROM m GROUP BY host LIMIT 2", Some(14)),
            ("SELECT * FROM m WHERE host = 'h3' LIMIT 1", Some(1)),
            // `v` orders rows of one time before the tags: every series.
            ("SELECT v FROM m LIMIT 1", None),
            ("SELECT * FROM m GROUP BY * LIMIT 1", None),
        ] {
            assert_eq!(series_chosen(&v, q), read, "{q}");
            let (chosen, all) = chosen_and_all(&v, q);
            assert_eq!(chosen, all, "{q}");
        }
        let (chosen, _) = chosen_and_all(&v, "SELECT * FROM m LIMIT 2");
        assert_eq!(
            chosen["series"][0]["values"],
            json!([
                ["1970-01-01T00:00:00Z", "h3", "199", "x", 199],
                ["1970-01-01T01:00:00Z", "h2", "198", "x", 198]
            ])
        );
        // A point deleted since its block was written: the index still
        // names its time, so the series is read (its next point is far),
        // and the next one too.
        let statements = ["DELETE FROM m WHERE id = '199' AND time < 1h".to_string()];
        let mut first: String = (0..200).map(line).collect();
        first.push_str(&format!("m,host=h3,id=199 v=0,s=\"x\" {}\n", 50 * HOUR));
        let mut t = store(d.path().join("2").as_path(), &[(first, true)], &statements);
        let v = t.view();
        assert_eq!(series_chosen(&v, "SELECT * FROM m LIMIT 1"), Some(2));
        let (chosen, all) = chosen_and_all(&v, "SELECT * FROM m LIMIT 1");
        assert_eq!(chosen, all);
        assert_eq!(chosen["series"][0]["values"][0][2], json!("198"));
    }

    /// Series of measurement `m` (tags `host`, `id`, either missing at
    /// times) and `n`.
    /// A series: its `host` and `id` tags, whether it is of `n`; its
    /// points as (hour, value).
    type Series = ((Option<u8>, Option<u8>, bool), Vec<(i64, i64)>);

    fn data() -> impl Strategy<Value = Vec<Series>> {
        let tags = (
            proptest::option::weighted(0.9, 0u8..4),
            proptest::option::weighted(0.9, 0u8..6),
            proptest::bool::weighted(0.2),
        );
        // Hours over a month (shard groups of a week), most in its first
        // day: many rows at equal times.
        let hour = prop_oneof![3 => 0i64..24, 1 => 0i64..720];
        let points = proptest::collection::vec((hour, -5i64..5), 0..6);
        proptest::collection::vec((tags, points), 1..40)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Whatever the data (series without a tag, points at equal times,
        /// several shard groups, files and cache, deleted points), reading
        /// only the chosen series answers as reading all of them.
        #[test]
        fn the_series_chosen_under_limit_answer_as_all(
            series in data(),
            flush_at in 0usize..40,
            deleted in proptest::option::of(0i64..30),
            limit in 1usize..6,
            offset in 0usize..4,
        ) {
            let mut batches = vec![(String::new(), true), (String::new(), false)];
            for (i, ((host, id, other), points)) in series.iter().enumerate() {
                let mut key = if *other { "n".to_string() } else { "m".to_string() };
                if let Some(h) = host {
                    key.push_str(&format!(",host=h{h}"));
                }
                if let Some(id) = id {
                    key.push_str(&format!(",id={id}"));
                }
                for (hour, v) in points {
                    let field = if *other { "a" } else { "v" };
                    let line = format!("{key} {field}={v},w=\"s{i}\" {}\n", hour * HOUR);
                    batches[usize::from(i >= flush_at)].0.push_str(&line);
                }
            }
            let statements: Vec<String> = deleted
                .map(|h| format!("DELETE FROM m WHERE host = 'h1' AND time < {}", h * HOUR))
                .into_iter()
                .collect();
            let d = tempfile::tempdir().unwrap();
            let mut t = store(d.path(), &batches, &statements);
            let v = t.view();
            let page = format!("LIMIT {limit} OFFSET {offset}");
            for q in [
                "SELECT * FROM m",
                "SELECT * FROM m ORDER BY time DESC",
                "SELECT * FROM m GROUP BY host",
                "SELECT * FROM m GROUP BY id ORDER BY time DESC",
                "SELECT host, id, w FROM m",
                "SELECT id, v, host FROM m WHERE host = 'h2' OR host = 'h0'",
                "SELECT * FROM m WHERE time >= 5h AND time < 400h",
                "SELECT * FROM m, n",
                "SELECT * FROM /./ GROUP BY host",
                "SELECT v FROM m",
                "SELECT * FROM m WHERE v > 0",
            ] {
                let q = format!("{q} {page}");
                let (chosen, all) = chosen_and_all(&v, &q);
                prop_assert_eq!(chosen, all, "{}", q);
            }
        }
    }
}
