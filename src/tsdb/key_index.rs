//! The series index of one immutable piece of a shard (a TSM file, or a
//! frozen cache segment), as influxd's in-memory index: measurement → its
//! keys, field names and tag keys, and tag key → tag value → keys. Keys are
//! named by their ordinal in the piece's sorted key list, so the index
//! holds each tag value once and no key twice. It is built once per piece,
//! when a query first reads it.

use std::collections::{BTreeMap, HashMap};

use super::query::series_tags;
use super::shard::measurement_of;

/// A series key, its measurement and its tags.
type ParsedSeries<'a> = (&'a str, String, Vec<(String, String)>);

/// The index of a piece's sorted keys.
#[derive(Debug, Default)]
pub struct KeyIndex {
    measurements: HashMap<String, MeasurementKeys>,
}

/// One measurement's keys in a piece.
#[derive(Debug, Default)]
pub struct MeasurementKeys {
    /// Ordinals of every key, ascending.
    keys: Vec<u32>,
    /// Field names, each with the name of its type (`float`, …).
    fields: BTreeMap<String, &'static str>,
    /// Tag key → tag value → ordinals of the keys whose series has it,
    /// ascending.
    tags: HashMap<String, HashMap<String, Vec<u32>>>,
}

impl KeyIndex {
    /// Indexes `keys` (`series#!~#field`, in ascending order, each with
    /// its type's name; a piece holds fewer than 2³² keys).
    pub fn build<'a>(keys: impl Iterator<Item = (&'a str, &'static str)>) -> Self {
        let mut measurements: HashMap<String, MeasurementKeys> = HashMap::new();
        // Keys of one series are adjacent: its tags are parsed once.
        let mut last: Option<ParsedSeries> = None;
        for (i, (key, type_name)) in keys.enumerate() {
            let Ok(ord) = u32::try_from(i) else { break };
            let (series, field) = super::tsm::split_key(key);
            if last.as_ref().is_none_or(|(s, ..)| *s != series) {
                last = Some((series, measurement_of(series), series_tags(series)));
            }
            let Some((_, m, tags)) = &last else { continue };
            let mk = measurements.entry(m.clone()).or_default();
            mk.keys.push(ord);
            if !mk.fields.contains_key(field) {
                mk.fields.insert(field.to_string(), type_name);
            }
            for (k, v) in tags {
                let values = mk.tags.entry(k.clone()).or_default();
                match values.get_mut(v) {
                    Some(ords) => ords.push(ord),
                    None => {
                        values.insert(v.clone(), vec![ord]);
                    }
                }
            }
        }
        Self { measurements }
    }

    /// The keys of measurement `m`, if the piece has any.
    pub fn measurement(&self, m: &str) -> Option<&MeasurementKeys> {
        self.measurements.get(m)
    }

    /// Every measurement of the piece.
    pub fn measurements(&self) -> impl Iterator<Item = &str> {
        self.measurements.keys().map(String::as_str)
    }
}

impl MeasurementKeys {
    /// Field names, each with its type's name.
    pub fn fields(&self) -> &BTreeMap<String, &'static str> {
        &self.fields
    }

    /// The values tag `key` takes.
    pub fn tag_values(&self, key: &str) -> impl Iterator<Item = &str> {
        self.tags
            .get(key)
            .into_iter()
            .flat_map(|values| values.keys().map(String::as_str))
    }

    /// Tag keys.
    pub fn tag_keys(&self) -> impl Iterator<Item = &str> {
        self.tags.keys().map(String::as_str)
    }

    /// Ordinals of the keys whose series has every `(tag, value)` of `eq`
    /// (every key when `eq` is empty), ascending.
    pub fn matching(&self, eq: &[(&str, &str)]) -> Vec<u32> {
        let mut lists: Vec<&[u32]> = Vec::with_capacity(eq.len());
        for (k, v) in eq {
            match self.tags.get(*k).and_then(|vals| vals.get(*v)) {
                Some(ords) => lists.push(ords),
                None => return Vec::new(),
            }
        }
        lists.sort_by_key(|l| l.len());
        let Some((first, rest)) = lists.split_first() else {
            return self.keys.clone();
        };
        first
            .iter()
            .copied()
            .filter(|o| rest.iter().all(|l| l.binary_search(o).is_ok()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(keys: &[&str]) -> KeyIndex {
        let mut sorted = keys.to_vec();
        sorted.sort_unstable();
        KeyIndex::build(sorted.into_iter().map(|k| (k, "float")))
    }

    #[test]
    fn measurements_fields_and_tags_are_indexed() {
        let ix = index(&[
            "cpu,host=a,region=x#!~#v",
            "cpu,host=a,region=x#!~#w",
            "cpu,host=b,region=x#!~#v",
            "cpu2,host=a#!~#v",
            "mem#!~#free",
        ]);
        let cpu = ix.measurement("cpu").expect("cpu");
        assert_eq!(cpu.fields().keys().collect::<Vec<_>>(), ["v", "w"]);
        let mut hosts: Vec<&str> = cpu.tag_values("host").collect();
        hosts.sort_unstable();
        assert_eq!(hosts, ["a", "b"]);
        assert_eq!(cpu.tag_values("dc").count(), 0);
        let mut tags: Vec<&str> = cpu.tag_keys().collect();
        tags.sort_unstable();
        assert_eq!(tags, ["host", "region"]);
        assert_eq!(cpu.matching(&[]), [0, 1, 2]);
        assert_eq!(cpu.matching(&[("host", "a")]), [0, 1]);
        assert_eq!(cpu.matching(&[("host", "b"), ("region", "x")]), [2]);
        assert!(cpu.matching(&[("host", "c")]).is_empty());
        assert!(cpu.matching(&[("dc", "a")]).is_empty());
        assert_eq!(ix.measurement("cpu2").expect("cpu2").matching(&[]), [3]);
        let mem = ix.measurement("mem").expect("mem");
        assert_eq!(mem.matching(&[]), [4]);
        assert_eq!(mem.tag_keys().count(), 0);
        assert!(ix.measurement("disk").is_none());
    }

    #[test]
    fn escaped_names_are_read_back() {
        // Field names are stored raw in keys; the series part is escaped.
        let ix = index(&[r"we\ ather,loc\,x=a\ b#!~#t emp"]);
        let m = ix.measurement("we ather").expect("measurement unescaped");
        assert_eq!(m.matching(&[("loc,x", "a b")]), [0]);
        assert_eq!(m.fields().keys().collect::<Vec<_>>(), ["t emp"]);
    }
}
