//! Which series each database holds, and which values each tag key of a
//! measurement has, for influxd's cardinality limits
//! (`max-series-per-database`, `max-values-per-tag`).
//!
//! Kept by the state machine as writes apply (so every replica has it),
//! rebuilt from the shards' keys when a snapshot loads, dropped with its
//! database. It stores 64-bit hashes, not names: one million series cost
//! about 16 MiB, not the keys' size. (Two series whose hashes collide
//! count as one: the limits may then let one series more in, never fewer.)
//!
//! The limits themselves are checked by the node that receives a write,
//! before it proposes ([`WriteCheck`]): nodes may be configured with
//! different limits, and every replica must apply what was proposed. Two
//! writes racing through different nodes may pass the limit by what they
//! add together, as a guard against runaway cardinality that is fine.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};

use super::line_protocol::Point;

/// influxd's default `max-series-per-database`.
pub const DEFAULT_MAX_SERIES_PER_DATABASE: u64 = 1_000_000;
/// influxd's default `max-values-per-tag`.
pub const DEFAULT_MAX_VALUES_PER_TAG: u64 = 100_000;

type Fx = rustc_hash::FxBuildHasher;

fn hash(parts: &[&str]) -> u64 {
    let mut h = Fx::default().build_hasher();
    for p in parts {
        p.hash(&mut h);
    }
    h.finish()
}

/// A series' hash, from its unescaped measurement and sorted tags (no key
/// is built).
fn series_hash(measurement: &str, tags: &[(String, String)]) -> u64 {
    let mut h = Fx::default().build_hasher();
    measurement.hash(&mut h);
    for (k, v) in tags {
        k.hash(&mut h);
        v.hash(&mut h);
    }
    h.finish()
}

#[derive(Debug, Default, Clone)]
struct DbSeries {
    series: HashSet<u64, Fx>,
    /// (measurement, tag key) → its values.
    tag_values: HashMap<u64, HashSet<u64, Fx>, Fx>,
}

/// Series and tag values per database.
#[derive(Debug, Default, Clone)]
pub struct SeriesIndex {
    dbs: HashMap<String, DbSeries>,
}

impl SeriesIndex {
    /// Records the series of `measurement` and sorted, unescaped `tags` in
    /// `db`.
    pub fn add(&mut self, db: &str, measurement: &str, tags: &[(String, String)]) {
        let d = match self.dbs.get_mut(db) {
            Some(d) => d,
            None => self.dbs.entry(db.to_string()).or_default(),
        };
        if !d.series.insert(series_hash(measurement, tags)) {
            return;
        }
        for (k, v) in tags {
            d.tag_values
                .entry(hash(&[measurement, k]))
                .or_default()
                .insert(hash(&[v]));
        }
    }

    /// Records every series of the TSM keys `keys` (`series#!~#field`).
    pub fn add_keys<'a>(&mut self, db: &str, keys: impl IntoIterator<Item = &'a str>) {
        let mut last = "";
        for k in keys {
            let series = k
                .split_once(super::tsm::KEY_FIELD_SEPARATOR)
                .map_or(k, |(s, _)| s);
            if series == last {
                continue;
            }
            last = series;
            let m = super::shard::measurement_of(series);
            let mut tags = super::query::series_tags(series);
            tags.sort();
            self.add(db, &m, &tags);
        }
    }

    /// Puts `fresh`'s record of `db` in place of this one's (a rebuild
    /// after deletes).
    pub fn replace_database(&mut self, db: &str, mut fresh: SeriesIndex) {
        match fresh.dbs.remove(db) {
            Some(d) => {
                self.dbs.insert(db.to_string(), d);
            }
            None => {
                self.dbs.remove(db);
            }
        }
    }

    /// Forgets `db`.
    pub fn drop_database(&mut self, db: &str) {
        self.dbs.remove(db);
    }

    /// Series in `db`.
    pub fn series_count(&self, db: &str) -> u64 {
        self.dbs.get(db).map_or(0, |d| d.series.len() as u64)
    }
}

/// The cardinality limits (0 = none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesLimits {
    /// Series per database.
    pub max_series_per_database: u64,
    /// Values per tag key of a measurement.
    pub max_values_per_tag: u64,
}

impl Default for SeriesLimits {
    fn default() -> Self {
        Self {
            max_series_per_database: DEFAULT_MAX_SERIES_PER_DATABASE,
            max_values_per_tag: DEFAULT_MAX_VALUES_PER_TAG,
        }
    }
}

/// What [`WriteCheck::filter`] decided: which points to drop and why.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Per point: dropped.
    pub drop: Vec<bool>,
    /// Points dropped.
    pub dropped: u64,
    /// influxd's message for the first reason (without `dropped=`).
    pub reason: Option<String>,
}

/// A write's check against the limits, as influxd's in-memory index
/// decides it: a point of a new series is dropped when one of its tags
/// would get a value past `max-values-per-tag`; and per shard group, when
/// the database's series plus the group's new ones would pass
/// `max-series-per-database`, every point of the group's new series is
/// dropped. Made chunk by chunk so that a large body never has to be held
/// as points. First [`WriteCheck::count`] sees every chunk (the new series per
/// shard group), then [`WriteCheck::filter`] says which points of each
/// chunk to drop. Between the two the index may grow (the accepted chunks
/// are applied one by one): a value a chunk adds counts for the next.
#[derive(Debug)]
pub struct WriteCheck {
    limits: SeriesLimits,
    /// New series per shard group, in order of first appearance: their
    /// hashes (deduplicated when the list grows past 1.125 times the room
    /// left, so it never holds much more than the limit's worth), and
    /// whether the group alone is past the room left (then it stops
    /// collecting).
    groups: Vec<(i64, Vec<u32>, bool)>,
    existing: u64,
    refused: HashSet<i64, Fx>,
    /// Points the write holds at most (a group's list is sized once).
    points: u64,
}

impl WriteCheck {
    /// A check of a write of at most `points` points into `db`.
    pub fn new(index: &SeriesIndex, db: &str, limits: SeriesLimits, points: u64) -> Self {
        Self {
            limits,
            groups: Vec::new(),
            existing: index.series_count(db),
            refused: HashSet::default(),
            points,
        }
    }

    /// Whether a write of at most `points` points into `db` could pass a
    /// limit at all (if not, no check is needed).
    pub fn needed(index: &SeriesIndex, db: &str, limits: SeriesLimits, points: u64) -> bool {
        let series = limits.max_series_per_database > 0
            && index.series_count(db) + points > limits.max_series_per_database;
        let values = limits.max_values_per_tag > 0
            && index.dbs.get(db).is_some_and(|d| {
                d.tag_values
                    .values()
                    .any(|v| v.len() as u64 + points > limits.max_values_per_tag)
            });
        series || values
    }

    /// Why the new series of `p` is refused by `max-values-per-tag`, if it
    /// is (a tag whose key already has the limit's number of values, and a
    /// new one).
    fn values_refusal(&self, d: &DbSeries, p: &Point) -> Option<String> {
        let max = self.limits.max_values_per_tag;
        if max == 0 {
            return None;
        }
        p.tags.iter().find_map(|(k, val)| {
            let values = d.tag_values.get(&hash(&[&p.measurement, k]))?;
            let n = values.len() as u64;
            (n >= max && !values.contains(&hash(&[val]))).then(|| {
                format!(
                    "max-values-per-tag limit exceeded ({n}/{max}): measurement={:?} tag={k:?} value={val:?}",
                    p.measurement
                )
            })
        })
    }

    /// Pass 1: counts the new series of a chunk per shard group (a series
    /// refused for a tag value does not count, as influxd's).
    pub fn count(
        &mut self,
        index: &SeriesIndex,
        db: &str,
        points: &[Point],
        group_of: impl Fn(i64) -> i64,
    ) {
        if self.limits.max_series_per_database == 0 {
            return;
        }
        let room = self
            .limits
            .max_series_per_database
            .saturating_sub(self.existing);
        let compact_at = usize::try_from(room + room / 8)
            .unwrap_or(usize::MAX)
            .max(1024);
        let size = compact_at.min(usize::try_from(self.points).unwrap_or(usize::MAX));
        let empty = DbSeries::default();
        let d = index.dbs.get(db).unwrap_or(&empty);
        for p in points {
            let h = series_hash(&p.measurement, &p.tags);
            if d.series.contains(&h) || self.values_refusal(d, p).is_some() {
                continue;
            }
            let g = group_of(p.timestamp);
            let at = match self.groups.iter().position(|(x, ..)| *x == g) {
                Some(at) => at,
                None => {
                    self.groups.push((g, Vec::with_capacity(size), false));
                    self.groups.len() - 1
                }
            };
            let (_, list, over) = &mut self.groups[at];
            if *over {
                continue;
            }
            if list.len() >= compact_at {
                list.sort_unstable();
                list.dedup();
                // Past the room left even alone: no need to count on.
                *over = list.len() as u64 > room;
                if *over {
                    *list = Vec::new();
                    continue;
                }
                list.reserve_exact(compact_at.saturating_sub(list.len()));
            }
            // Half the hash: counting needs no more (a collision in a
            // million lets one series more in), and the list is half the size.
            list.push((h >> 32) as u32 ^ h as u32);
        }
    }

    /// Between the passes: decides which groups' new series are refused
    /// (the groups in order, each against the count the ones before
    /// left).
    pub fn decide(&mut self) {
        let mut count = self.existing;
        for (g, list, over) in &mut self.groups {
            list.sort_unstable();
            list.dedup();
            if *over || count + list.len() as u64 > self.limits.max_series_per_database {
                self.refused.insert(*g);
            } else {
                count += list.len() as u64;
            }
        }
        self.groups.clear();
    }

    /// Pass 2: which points of a chunk to drop.
    pub fn filter(
        &self,
        index: &SeriesIndex,
        db: &str,
        points: &[Point],
        group_of: impl Fn(i64) -> i64,
    ) -> Verdict {
        let mut v = Verdict {
            drop: vec![false; points.len()],
            ..Default::default()
        };
        let empty = DbSeries::default();
        let d = index.dbs.get(db).unwrap_or(&empty);
        for (i, p) in points.iter().enumerate() {
            if d.series.contains(&series_hash(&p.measurement, &p.tags)) {
                continue;
            }
            let reason = if self.refused.contains(&group_of(p.timestamp)) {
                Some(format!(
                    "max-series-per-database limit exceeded: ({})",
                    self.limits.max_series_per_database
                ))
            } else {
                self.values_refusal(d, p)
            };
            if let Some(r) = reason {
                v.drop[i] = true;
                v.dropped += 1;
                v.reason.get_or_insert(r);
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::line_protocol::{Precision, parse};

    /// Checks a write of `points` into `db` against `limits`, as influxd does
    /// (its in-memory index): a point of a new series is dropped when one of
    /// its tags would get a value past `max-values-per-tag`; and per shard
    /// group (`group_of` maps a time to its group), when the database's
    /// series plus the group's new ones would pass `max-series-per-database`,
    /// every point of the group's new series is dropped.
    fn check_write(
        index: &SeriesIndex,
        db: &str,
        points: &[Point],
        limits: SeriesLimits,
        group_of: impl Fn(i64) -> i64 + Copy,
    ) -> Verdict {
        let mut c = WriteCheck::new(index, db, limits, points.len() as u64);
        c.count(index, db, points, group_of);
        c.decide();
        c.filter(index, db, points, group_of)
    }

    fn pts(body: &str) -> Vec<Point> {
        parse(body, Precision::Nanoseconds, 0).0
    }

    fn apply(ix: &mut SeriesIndex, db: &str, points: &[Point], v: &Verdict) {
        for (p, d) in points.iter().zip(&v.drop) {
            if !d {
                ix.add(db, &p.measurement, &p.tags);
            }
        }
    }

    /// The influxd 1.6.7 answers these mirror (limits 5 series, 3 values).
    #[test]
    fn limits_drop_what_influxd_drops() {
        let limits = SeriesLimits {
            max_series_per_database: 5,
            max_values_per_tag: 3,
        };
        let one_group = |_| 0;
        let mut ix = SeriesIndex::default();
        let w = pts("m,a=1 v=1 1\nm,a=2 v=1 1\nm,a=3 v=1 1\nm,a=4 v=1 1\nn,b=1 v=1 1");
        let v = check_write(&ix, "x", &w, limits, one_group);
        assert_eq!(
            v.dropped, 0,
            "values are checked against what was there before"
        );
        apply(&mut ix, "x", &w, &v);
        let w = pts("m,a=1 v=2 2\nn,b=2 v=1 1\nn,b=3 v=1 1\nn,b=4 v=1 1\no v=1 1");
        let v = check_write(&ix, "x", &w, limits, one_group);
        assert_eq!(v.dropped, 4);
        assert_eq!(
            v.reason.as_deref(),
            Some("max-series-per-database limit exceeded: (5)")
        );
        assert!(!v.drop[0], "an existing series is written");

        let mut ix = SeriesIndex::default();
        let w = pts("m,a=1 v=1 1\nm,a=2 v=1 1\nm,a=3 v=1 1");
        let v = check_write(&ix, "y", &w, limits, one_group);
        apply(&mut ix, "y", &w, &v);
        let w = pts("m,a=4 v=1 1\nm,a=5,b=1 v=1 1\nm,a=1,b=2 v=1 1");
        let v = check_write(&ix, "y", &w, limits, one_group);
        assert_eq!(v.dropped, 2);
        assert_eq!(
            v.reason.as_deref(),
            Some(r#"max-values-per-tag limit exceeded (3/3): measurement="m" tag="a" value="4""#)
        );
        assert!(v.drop[0] && v.drop[1] && !v.drop[2]);

        // Per shard group: the group that fits is written.
        let mut ix = SeriesIndex::default();
        let w = pts("a v=1 1\nb v=1 1\nc v=1 1\nd v=1 9\ne v=1 9\nf v=1 9");
        let v = check_write(&ix, "w", &w, limits, |t| i64::from(t > 5));
        assert_eq!(v.dropped, 3);
        assert_eq!(v.drop, [false, false, false, true, true, true]);
        apply(&mut ix, "w", &w, &v);
        assert_eq!(ix.series_count("w"), 3);
        ix.drop_database("w");
        assert_eq!(ix.series_count("w"), 0);
    }

    #[test]
    fn the_index_rebuilds_from_tsm_keys() {
        let mut a = SeriesIndex::default();
        let w = pts("m\\,x,a=1\\ 2 v=1 1\nm\\,x,a=2 v=1,w=2 1");
        for p in &w {
            a.add("d", &p.measurement, &p.tags);
        }
        let keys: Vec<String> = w
            .iter()
            .flat_map(|p| {
                p.fields
                    .iter()
                    .map(|(f, _)| {
                        format!(
                            "{}{}{f}",
                            p.series_key(),
                            crate::tsdb::tsm::KEY_FIELD_SEPARATOR
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut b = SeriesIndex::default();
        b.add_keys("d", keys.iter().map(String::as_str));
        assert_eq!(a.dbs["d"].series, b.dbs["d"].series);
        assert_eq!(a.dbs["d"].tag_values, b.dbs["d"].tag_values);
    }
}
