//! `SLIMIT` and `SOFFSET` as influxd applies them: in each shard on its
//! own, to the groups of the series that shard holds (whether or not they
//! have the fields read, whether or not they have points in the range),
//! in the order of influxd's tag set keys. A group is then read only from
//! the shards that kept it, so over several shard groups a statement can
//! answer more groups than its `SLIMIT`, each from part of the range;
//! and `SOFFSET` without `SLIMIT` answers nothing.

use std::collections::{BTreeMap, BTreeSet};

use super::ast::Select;
use super::filter::{Filter, Keys};
use super::values::{group_of, series_tags};

/// The groups each shard of a read keeps under `SLIMIT`/`SOFFSET`.
pub(super) struct Kept {
    /// Per shard, the groups kept (values of `grouped`; "" for a missing
    /// tag).
    per_shard: Vec<BTreeSet<Vec<String>>>,
    /// The tag keys grouped by, sorted.
    grouped: Vec<String>,
}

impl Kept {
    /// What the shards keep of `s`'s measurement under its `SLIMIT` and
    /// `SOFFSET` (`per_shard`: the keys of each shard's series of it that
    /// the condition's tag equalities name; `tags`: the measurement's tag
    /// keys, which `GROUP BY *` groups by).
    pub(super) fn new(
        per_shard: &[Vec<String>],
        s: &Select,
        filter: &Filter,
        keys: &Keys,
        tags: &BTreeSet<String>,
    ) -> Kept {
        let grouped = s
            .slimit_by
            .as_ref()
            .unwrap_or(&s.group_tags)
            .keys()
            .unwrap_or_else(|| tags.iter().cloned().collect());
        let per_shard = per_shard
            .iter()
            .map(|series| groups_kept(series, s, filter, keys, &grouped))
            .collect();
        Kept { per_shard, grouped }
    }

    /// The group of a series with these tags.
    pub(super) fn group(&self, tags: &[(String, String)]) -> Vec<String> {
        group_of(tags, &self.grouped)
    }

    /// Whether shard `i` keeps `group`.
    pub(super) fn keeps(&self, i: usize, group: &[String]) -> bool {
        self.per_shard.get(i).is_some_and(|g| g.contains(group))
    }
}

/// The groups (values of `grouped`, sorted tag keys; "" for a missing
/// tag) that a shard holding `series` (keys of `s`'s measurement) keeps
/// under `s`'s `SLIMIT`/`SOFFSET`: of the groups of those the condition's
/// tags let through, ordered by influxd's tag set key, those after the
/// first `SOFFSET`, at most `SLIMIT`.
/// `SOFFSET` without `SLIMIT` keeps none, as influxd's `LimitTagSets`
/// (its limit 0 is taken as a count once an offset is set).
fn groups_kept(
    series: &[String],
    s: &Select,
    filter: &Filter,
    keys: &Keys,
    grouped: &[String],
) -> BTreeSet<Vec<String>> {
    let mut sets: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for key in series {
        let tags = series_tags(key);
        if filter.series(&tags, keys) == Some(false) {
            continue;
        }
        let values = group_of(&tags, grouped);
        sets.entry(tag_set_key(grouped, &values)).or_insert(values);
    }
    sets.into_values().skip(s.soffset).take(s.slimit).collect()
}

/// influxd's key of a tag set: the grouped keys the series has, then
/// their values, joined by `|` (sorted as bytes, so a series lacking a
/// grouped tag sorts by the keys it has).
fn tag_set_key(grouped: &[String], values: &[String]) -> String {
    let present: Vec<(&String, &String)> = grouped
        .iter()
        .zip(values)
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let mut out: Vec<&str> = present.iter().map(|(k, _)| k.as_str()).collect();
    out.extend(present.iter().map(|(_, v)| v.as_str()));
    out.join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_set_keys_sort_by_the_keys_a_series_has_first() {
        let grouped = ["h".to_string(), "k".to_string()];
        let key = |h: &str, k: &str| tag_set_key(&grouped, &[h.to_string(), k.to_string()]);
        assert_eq!(key("a", ""), "h|a");
        assert_eq!(key("a", "x"), "h|k|a|x");
        assert_eq!(key("", "x"), "k|x");
        assert_eq!(key("", ""), "");
        // As influxd orders them: h=a, h=d, then h=a,k=x, then k=x.
        let mut keys = [key("a", "x"), key("d", ""), key("", "x"), key("a", "")];
        keys.sort();
        assert_eq!(keys, ["h|a", "h|d", "h|k|a|x", "k|x"]);
    }
}
