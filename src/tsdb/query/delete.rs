//! DELETE, DROP SERIES and DROP MEASUREMENT: the raft command each becomes,
//! and which series that command reaches when a replica applies it.

use super::ast::{Cond, Source, Statement};
use super::filter::{Filter, Keys};
use super::values::series_tags;
use crate::proto::tsdb as pb;
use crate::tsdb::shard::measurement_of;

/// The command of a delete statement on `db` (the request's database);
/// `None` for other statements; `Some(Err)` for a delete influxd refuses
/// when it runs.
pub(super) fn delete_command(
    stmt: &Statement,
    db: &str,
) -> Option<Result<pb::DeleteSeries, String>> {
    let (from, cond, min, max) = match stmt {
        Statement::Delete {
            from,
            cond,
            min,
            max,
        } => (from.clone(), cond.as_ref(), *min, *max),
        Statement::DropSeries { timed: true, .. } => {
            return Some(Err(
                "DROP SERIES doesn't support time in WHERE clause".into()
            ));
        }
        Statement::DropSeries { from, cond, .. } => {
            (from.clone(), cond.as_ref(), i64::MIN, i64::MAX)
        }
        Statement::DropMeasurement(m) => (vec![Source::Name(m.clone())], None, i64::MIN, i64::MAX),
        _ => return None,
    };
    if db.is_empty() {
        // influxd looks the database up by its empty name.
        return Some(Err("database not found: ".into()));
    }
    let mut c = pb::DeleteSeries {
        db: db.to_string(),
        condition: cond.map(super::text::cond_text).unwrap_or_default(),
        min_time: min,
        max_time: max,
        ..Default::default()
    };
    for s in from {
        match s {
            Source::Name(n) => c.measurements.push(n),
            Source::Regex(r) => c.measurement_regexes.push(r),
        }
    }
    Some(Ok(c))
}

/// Which series a delete command reaches: by measurement (names or
/// regular expressions; none named: all) and by its condition on tags.
pub struct SeriesMatch {
    names: Vec<String>,
    regexes: Vec<regex::Regex>,
    filter: Filter,
}

impl SeriesMatch {
    /// The matcher of a command (its condition parsed back; a condition on
    /// fields is refused, as influxd's).
    pub fn new(c: &pb::DeleteSeries) -> Result<Self, String> {
        let cond = super::cond::parse_condition(&c.condition)?;
        if let Some(cond) = &cond
            && !tags_only(cond)
        {
            return Err("fields not supported in WHERE clause during deletion".into());
        }
        let regexes = c
            .measurement_regexes
            .iter()
            .map(|r| {
                regex::Regex::new(r).map_err(|e| format!("invalid regular expression /{r}/: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            names: c.measurements.clone(),
            regexes,
            filter: Filter::new(cond.as_ref())?,
        })
    }

    /// Whether the series `key` (`m,tag=v,…`) is reached.
    pub fn matches(&self, key: &str) -> bool {
        let m = measurement_of(key);
        let named = (self.names.is_empty() && self.regexes.is_empty())
            || self.names.contains(&m)
            || self.regexes.iter().any(|r| r.is_match(&m));
        named && self.filter.series(&series_tags(key), &Keys::AllTags) == Some(true)
    }
}

/// Whether a condition compares only tags (strings and regular
/// expressions: a number or boolean is a field's).
fn tags_only(c: &Cond) -> bool {
    match c {
        Cond::And(a, b) | Cond::Or(a, b) => tags_only(a) && tags_only(b),
        Cond::Expr { .. } => false,
        Cond::Cmp { value, .. } => {
            matches!(value, super::ast::Lit::Str(_) | super::ast::Lit::Regex(_))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::query::parse;

    fn command(q: &str) -> pb::DeleteSeries {
        let s = parse(q, 0).unwrap().remove(0);
        delete_command(&s, "db").unwrap().unwrap()
    }

    #[test]
    fn a_delete_reaches_the_series_its_statement_names() {
        let c = command(
            "DELETE FROM cpu, /^me/ WHERE (host = 'a' OR host =~ /^b/) AND dc != 'x' AND time < 10",
        );
        assert_eq!((c.min_time, c.max_time), (i64::MIN, 9));
        let m = SeriesMatch::new(&c).unwrap();
        assert!(m.matches("cpu,host=a"));
        assert!(m.matches("mem,host=bb,dc=y"));
        assert!(!m.matches("mem,host=bb,dc=x"));
        assert!(!m.matches("disk,host=a"));
        assert!(!m.matches("cpu,host=c"));
        let m = SeriesMatch::new(&command("DROP MEASUREMENT \"we ird\"")).unwrap();
        assert!(m.matches("we\\ ird,a=1") && !m.matches("cpu,host=a"));
        let m = SeriesMatch::new(&command(
            "DROP SERIES WHERE \"k'\" = 'it\\'s' OR x =~ /a\\/b/",
        ))
        .unwrap();
        assert!(!m.matches("cpu,host=a"));
        assert!(m.matches("cpu,k'=it's"));
        assert!(m.matches("cpu,x=za/b"));
        let s = parse("DROP SERIES FROM m WHERE time > 0", 0)
            .unwrap()
            .remove(0);
        assert!(delete_command(&s, "db").unwrap().is_err());
        for q in [
            "DELETE FROM m WHERE v * 2 > 1",
            "DELETE FROM m WHERE (v + 1) * 2 > a - 1",
        ] {
            let Err(e) = SeriesMatch::new(&command(q)) else {
                panic!("{q}: a condition on fields was taken")
            };
            assert!(e.contains("fields not supported"), "{q}: {e}");
        }
        let fields = command("DELETE FROM m WHERE v > 1");
        let Err(e) = SeriesMatch::new(&fields) else {
            panic!("a condition on a field was taken")
        };
        assert!(e.contains("fields not supported"), "{e}");
    }
}
