//! A SELECT of raw points answered a page at a time, for `chunked=true`:
//! memory follows a page, not the answer.
//!
//! Each group (`GROUP BY` tags) is read on its own, in the order its
//! series are answered, a time window at a time ([`super::scan::Pager`]):
//! a window of one series ends where one of its fields reaches its share
//! of the page's rows (found by reading only its first points), one of
//! several series where a shard group ends (influxd's merge orders their
//! rows of one time by what it merged before them in the shard). Each is
//! answered by the same code as the whole statement, restricted to
//! the window's points. Windows meet at time boundaries, so the rows of a
//! time are never split between pages and come in the whole answer's
//! order; `LIMIT`/`OFFSET` are counted across the pages.

use serde_json::Value;

use super::ast::*;
use super::scan::{Pager, group_values};
use super::select_exec::{SelectLimits, checked_db, measurement_exec, measurements_of, scan_range};
use crate::tsdb::fsm::TsdbView;
use crate::tsdb::line_protocol::Precision;

/// Whether a statement is answered a page at a time under `limits`: a
/// SELECT of raw points (fields, tags, `*`, arithmetic without calls),
/// without `GROUP BY time`, `INTO` or a subquery, and not `GROUP BY *`
/// over several measurements (whose tags are known only at the end), and
/// not under `SLIMIT`/`SOFFSET` (a group is then read from only some
/// shard groups, see [`super::slimit`]). The point and series limits
/// count a whole statement, so with either set the answer is built whole.
pub fn streamable(stmt: &Statement, limits: &SelectLimits) -> bool {
    let Statement::Select(s) = stmt else {
        return false;
    };
    let raw = !s.fields.is_empty()
        && s.fields.iter().all(|p| match p {
            Projection::All | Projection::Field(_) => true,
            Projection::Math(e) => !e.has_call(),
            _ => false,
        });
    raw && s.group_time.is_none()
        && s.into.is_none()
        && s.subquery.is_none()
        && !(s.sources.len() > 1 && s.group_tags == GroupTags::All)
        && s.slimit == 0
        && s.soffset == 0
        && limits.max_select_point == 0
        && limits.max_select_series == 0
}

/// Answers `s` (see [`streamable`]) a page of about `page_rows` rows at a
/// time: each series' rows go to `out` as series objects (`name`, `tags`,
/// `columns`, `values`), the pieces of one series one after another, in
/// the order of the whole answer. `out` returns false to stop (its client
/// is gone). Errors are those of the whole statement; one met after some
/// pages is returned after them.
pub fn stream_select(
    t: &TsdbView,
    db: &str,
    s: &Select,
    epoch: Option<Precision>,
    limits: &SelectLimits,
    page_rows: usize,
    out: &mut dyn FnMut(Value) -> bool,
) -> Result<(), String> {
    let db = checked_db(t, db, s)?;
    let (names, union) = if s.sources.is_empty() {
        (vec![(s.measurement.clone(), s.reads)], None)
    } else {
        measurements_of(t, db, s)?
    };
    for (m, reads) in names {
        let mut one = s.clone();
        one.measurement = m;
        one.sources = Vec::new();
        one.reads = reads;
        let range = scan_range(&one);
        let keys = one.group_tags.keys();
        let groups = match &keys {
            // A measurement named twice is read twice, and under SLIMIT or
            // SOFFSET a group is read from only the shard groups that keep
            // it: answered whole.
            _ if reads > 1 || s.slimit > 0 || s.soffset > 0 => None,
            Some(k) if k.is_empty() => Some((Vec::new(), [Vec::new()].into())),
            _ => group_values(t, db, &one, range, keys.as_deref())?,
        };
        let Some((keys, groups)) = groups else {
            // Answered whole: a grouped tag key names a field too, or one
            // of the cases above.
            let v = measurement_exec(t, db, &one, epoch, limits, union.as_ref())?;
            for series in take_series(v) {
                if !out(series) {
                    return Ok(());
                }
            }
            continue;
        };
        let ordered: Box<dyn Iterator<Item = &Vec<String>>> = if s.desc {
            Box::new(groups.iter().rev())
        } else {
            Box::new(groups.iter())
        };
        for vals in ordered {
            let mut g = one.clone();
            (g.limit, g.offset) = (0, 0);
            for (k, v) in keys.iter().zip(vals) {
                let eq = Cond::Cmp {
                    key: k.clone(),
                    op: CmpOp::Eq,
                    value: Lit::Str(v.clone()),
                };
                g.cond = Some(match g.cond.take() {
                    Some(c) => Cond::And(Box::new(c), Box::new(eq)),
                    None => eq,
                });
            }
            let group = Group {
                t,
                db,
                s: &g,
                epoch,
                limits,
                union: union.as_ref(),
                range,
                page_rows,
            };
            if !group.pages(s.offset, s.limit, out)? {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// One group's statement (its tag values added to the condition) and how
/// it is paged.
struct Group<'a> {
    t: &'a TsdbView,
    db: &'a str,
    s: &'a Select,
    epoch: Option<Precision>,
    limits: &'a SelectLimits,
    union: Option<&'a super::select_exec::Union>,
    range: (i64, i64),
    page_rows: usize,
}

impl Group<'_> {
    /// Answers the group's pages, skipping `offset` rows and stopping
    /// after `limit` (0: none). False when `out` asked to stop.
    fn pages(
        &self,
        mut offset: usize,
        limit: usize,
        out: &mut dyn FnMut(Value) -> bool,
    ) -> Result<bool, String> {
        let (from, to) = self.range;
        let mut left = if limit == 0 { usize::MAX } else { limit };
        let mut cursor = if self.s.desc { to } else { from };
        let pager = Pager::new(self.t, self.db, self.s, self.range, self.page_rows)?;
        loop {
            if self.limits.interrupt.is_set() {
                return Err("query interrupted".into());
            }
            let end = pager.end(self.s, cursor, self.limits)?;
            let window = match (self.s.desc, end) {
                (false, e) => (cursor, e.unwrap_or(to)),
                (true, e) => (e.unwrap_or(from), cursor),
            };
            let page = SelectLimits {
                window: Some(window),
                ..self.limits.clone()
            };
            let v = measurement_exec(self.t, self.db, self.s, self.epoch, &page, self.union)?;
            for mut series in take_series(v) {
                if let Some(Value::Array(rows)) = series.get_mut("values") {
                    let skipped = offset.min(rows.len());
                    rows.drain(..skipped);
                    offset -= skipped;
                    rows.truncate(left);
                    left -= rows.len();
                    if rows.is_empty() {
                        continue;
                    }
                }
                if !out(series) {
                    return Ok(false);
                }
            }
            let next = match (self.s.desc, end) {
                (_, None) => None,
                (false, Some(e)) => e.checked_add(1).filter(|n| *n <= to),
                (true, Some(e)) => e.checked_sub(1).filter(|n| *n >= from),
            };
            match next {
                Some(n) if left > 0 => cursor = n,
                _ => return Ok(true),
            }
        }
    }
}

/// The series of a result, taken out of it.
fn take_series(v: Value) -> Vec<Value> {
    match v {
        Value::Object(mut m) => match m.remove("series") {
            Some(Value::Array(s)) => s,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{execute_read, parse};
    use super::*;
    use crate::proto::tsdb::{self as pb, command::Cmd};
    use crate::tsdb::fsm::Tsdb;
    use crate::tsdb::line_protocol::{self, Precision};
    use serde_json::json;

    /// A store of two measurements over four shard groups: series with and
    /// without tags, fields that come and go, rows of several series at
    /// the same times.
    fn store(dir: &std::path::Path) -> Tsdb {
        let mut t = Tsdb::open(dir.join("tsdb")).unwrap();
        let mut run = |cmd| {
            t.execute(pb::Command { cmd: Some(cmd) }).unwrap();
        };
        run(Cmd::CreateDatabase(pb::CreateDatabase {
            name: "db".into(),
        }));
        let mut text = String::new();
        let hour = 3_600_000_000_000i64;
        for i in 0..160i64 {
            let ts = i * 3 * hour;
            text.push_str(&format!("m,host=a,dc=x v={i}.5,w={i}i {ts}\n"));
            if i % 2 == 0 {
                text.push_str(&format!("m,host=b,dc=x v={} {ts}\n", -i));
            }
            if i % 3 == 0 {
                text.push_str(&format!("m,host=c s=\"s{i}\",w={}i {}\n", i * 2, ts + 1));
            }
            if i % 7 == 0 {
                text.push_str(&format!("m v={i} {ts}\n"));
                text.push_str(&format!("n,host=a u={i}i,v=1 {ts}\n"));
            }
        }
        let (points, errs) = line_protocol::parse(&text, Precision::Nanoseconds, 0);
        assert!(errs.is_empty());
        run(crate::tsdb::write_batch::write_command("db", "", points));
        t
    }

    /// The series of `q` answered a page at a time, pieces of one series
    /// joined, and how many pieces came.
    fn streamed(v: &TsdbView, q: &str, page_rows: usize) -> (Value, usize) {
        let stmt = &parse(q, 0).unwrap()[0];
        assert!(streamable(stmt, &SelectLimits::default()), "{q}");
        streamed_anyway(v, q, page_rows)
    }

    /// [`streamed`], for a statement [`streamable`] turns away too.
    fn streamed_anyway(v: &TsdbView, q: &str, page_rows: usize) -> (Value, usize) {
        let stmt = &parse(q, 0).unwrap()[0];
        let Statement::Select(s) = stmt else {
            panic!("{q}")
        };
        let mut series: Vec<Value> = Vec::new();
        let mut pieces = 0;
        let r = stream_select(
            v,
            "db",
            s,
            None,
            &SelectLimits::default(),
            page_rows,
            &mut |one| {
                pieces += 1;
                match series.last_mut() {
                    Some(last)
                        if ["name", "tags", "columns"]
                            .iter()
                            .all(|k| last.get(*k) == one.get(*k)) =>
                    {
                        let more = one["values"].as_array().unwrap().clone();
                        last["values"].as_array_mut().unwrap().extend(more);
                    }
                    _ => series.push(one),
                }
                true
            },
        );
        let answer = match r {
            Err(e) => json!({ "error": e }),
            Ok(()) if series.is_empty() => json!({}),
            Ok(()) => json!({ "series": series }),
        };
        (answer, pieces)
    }

    /// Where two answers first differ, briefly.
    fn first_difference(a: &Value, b: &Value) -> String {
        let (sa, sb) = (a["series"].as_array(), b["series"].as_array());
        let (Some(sa), Some(sb)) = (sa, sb) else {
            return format!("{a} / {b}");
        };
        if sa.len() != sb.len() {
            return format!("{} series / {}", sa.len(), sb.len());
        }
        for (x, y) in sa.iter().zip(sb) {
            if x["tags"] != y["tags"] || x["columns"] != y["columns"] {
                return format!(
                    "{} {} / {} {}",
                    x["tags"], x["columns"], y["tags"], y["columns"]
                );
            }
            let (rx, ry) = (
                x["values"].as_array().unwrap(),
                y["values"].as_array().unwrap(),
            );
            for (i, (p, q)) in rx.iter().zip(ry).enumerate() {
                if p != q {
                    return format!("{} row {i}: {p} / {q}", x["tags"]);
                }
            }
            if rx.len() != ry.len() {
                return format!("{} rows {} / {}", x["tags"], rx.len(), ry.len());
            }
        }
        String::new()
    }

    #[test]
    fn pages_join_into_the_whole_answer() {
        let d = tempfile::tempdir().unwrap();
        let mut t = store(d.path());
        let v = t.view();
        let queries = [
            "SELECT * FROM m",
            "SELECT * FROM m ORDER BY time DESC",
            "SELECT v, w FROM m GROUP BY host",
            "SELECT * FROM m GROUP BY *",
            "SELECT * FROM m GROUP BY * ORDER BY time DESC",
            "SELECT v FROM m GROUP BY dc, host ORDER BY time DESC",
            "SELECT v * 2 + w, host FROM m WHERE v > 10 OR s = 's9'",
            "SELECT * FROM m WHERE host = 'a' OR host = 'c'",
            "SELECT * FROM m WHERE host = '' GROUP BY host",
            "SELECT * FROM m WHERE host =~ /a|b/ AND v < 100 GROUP BY host",
            "SELECT * FROM m LIMIT 37 OFFSET 20",
            "SELECT * FROM m GROUP BY host LIMIT 25 OFFSET 3",
            "SELECT * FROM m GROUP BY host ORDER BY time DESC LIMIT 25 OFFSET 30",
            "SELECT v FROM m GROUP BY host OFFSET 1000",
            "SELECT * FROM m WHERE time >= 100h AND time < 300h",
            "SELECT * FROM m WHERE time > 1000h GROUP BY host ORDER BY time DESC",
            "SELECT * FROM m, n",
            "SELECT v FROM /./ GROUP BY host ORDER BY time DESC",
            "SELECT * FROM /./ LIMIT 5",
            "SELECT u, v FROM n",
            "SELECT s FROM m",
            "SELECT nope FROM m",
            "SELECT * FROM nope",
            "SELECT * FROM nope.autogen.m",
        ];
        for q in queries {
            let whole = execute_read(&v, "db", &parse(q, 0).unwrap()[0], None);
            for rows in [1, 7, 50, 100_000] {
                let (got, _) = streamed(&v, q, rows);
                if got != whole {
                    panic!("{q} by {rows}: {}", first_difference(&got, &whole));
                }
            }
        }
    }

    /// Statements `streamable` turns away still answer as whole if they
    /// reach `stream_select`: nothing of theirs is dropped there.
    #[test]
    fn statements_read_whole_answer_whole_when_streamed() {
        let d = tempfile::tempdir().unwrap();
        let mut t = store(d.path());
        let v = t.view();
        for q in [
            "SELECT * FROM m GROUP BY host SLIMIT 2 SOFFSET 1",
            "SELECT * FROM m GROUP BY host SLIMIT 1 SOFFSET 3",
            "SELECT v FROM m, m GROUP BY host LIMIT 5",
        ] {
            let whole = execute_read(&v, "db", &parse(q, 0).unwrap()[0], None);
            for rows in [1, 50] {
                let (got, _) = streamed_anyway(&v, q, rows);
                if got != whole {
                    panic!("{q} by {rows}: {}", first_difference(&got, &whole));
                }
            }
        }
    }

    #[test]
    fn pages_are_a_series_points_or_a_shard_group() {
        let d = tempfile::tempdir().unwrap();
        let mut t = store(d.path());
        let v = t.view();
        // Four groups of one series (23, 160, 80 and 54 points): pages
        // of 16.
        let (_, pieces) = streamed(&v, "SELECT v, w FROM m GROUP BY host", 1);
        assert_eq!(pieces, 2 + 10 + 5 + 4);
        let (_, pieces) = streamed(&v, "SELECT v, w FROM m GROUP BY host", 100_000);
        assert_eq!(pieces, 4);
        // Four series in one group over four weekly shard groups (from
        // Monday 1969-12-29; the points run to Thursday 1970-01-20).
        let (_, pieces) = streamed(&v, "SELECT * FROM m", 1);
        assert_eq!(pieces, 4);
    }

    #[test]
    fn statements_read_whole_are_not_streamed() {
        for q in [
            "SELECT count(v) FROM m",
            "SELECT max(v), host FROM m",
            "SELECT mean(v) FROM m WHERE time > 0 AND time < 10 GROUP BY time(1s)",
            "SELECT v INTO x FROM m",
            "SELECT v FROM (SELECT v FROM m)",
            "SELECT * FROM m, n GROUP BY *",
            "SELECT * FROM m GROUP BY host SLIMIT 2 SOFFSET 1",
            "SHOW DATABASES",
        ] {
            let stmt = &parse(q, 0).unwrap()[0];
            assert!(!streamable(stmt, &SelectLimits::default()), "{q}");
        }
        let limited = SelectLimits {
            max_select_point: 10,
            ..SelectLimits::default()
        };
        assert!(!streamable(
            &parse("SELECT * FROM m", 0).unwrap()[0],
            &limited
        ));
    }
}
