//! A statistic as influxd reports them (`SHOW STATS`, `/debug/vars`): a
//! module name, tags naming what it measures, and named values.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// One module's figures for one thing (a database, a shard, the node).
#[derive(Debug, Clone, PartialEq)]
pub struct Statistic {
    /// The module (`database`, `shard`, `queryExecutor`, …).
    pub name: String,
    /// What it measures (`database` = `db`, …); empty for the node.
    pub tags: BTreeMap<String, String>,
    /// Its values, by name.
    pub values: BTreeMap<String, Value>,
}

impl Statistic {
    /// A statistic of counters.
    pub fn new(name: &str, tags: &[(&str, &str)], values: &[(&str, u64)]) -> Statistic {
        Statistic {
            name: name.to_string(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect(),
        }
    }

    /// Its series in a `SHOW STATS` answer: its name, its tags if any, its
    /// values as one row (columns in name order).
    pub fn show_series(&self) -> Value {
        let mut one = json!({
            "name": self.name,
            "columns": self.values.keys().collect::<Vec<_>>(),
            "values": [self.values.values().collect::<Vec<_>>()],
        });
        if !self.tags.is_empty() {
            one["tags"] = json!(self.tags);
        }
        one
    }

    /// Its key in `/debug/vars`: the name, then the tags' values joined
    /// by `:` (`database:db0`), as influxd keys them.
    pub fn vars_key(&self) -> String {
        let mut key = self.name.clone();
        for v in self.tags.values() {
            key.push(':');
            key.push_str(v);
        }
        key
    }

    /// Its value in `/debug/vars`.
    pub fn vars_value(&self) -> Value {
        json!({"name": self.name, "tags": self.tags, "values": self.values})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statistic_is_a_series_of_one_row_and_a_vars_entry() {
        let s = Statistic::new(
            "database",
            &[("database", "db0")],
            &[("numSeries", 3), ("numMeasurements", 1)],
        );
        assert_eq!(
            s.show_series(),
            json!({"name": "database", "tags": {"database": "db0"}, "columns": ["numMeasurements", "numSeries"], "values": [[1, 3]]})
        );
        assert_eq!(s.vars_key(), "database:db0");
        assert_eq!(s.vars_value()["values"]["numSeries"], json!(3));
    }
}
