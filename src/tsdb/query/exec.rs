//! Read statements run against a node's local state.

use serde_json::{Value, json};

use super::ast::*;
use super::select_exec::{SelectLimits, select_exec};
use super::show::{listing, show_schema};
use crate::tsdb::fsm::TsdbView;
use crate::tsdb::line_protocol::Precision;
use crate::tsdb::timefmt::go_duration;
use crate::tsdb::users::{Privilege, User};

/// Runs a read statement against local state; the InfluxDB result object
/// (without `statement_id`). `db` is the request's `db` parameter.
pub fn execute_read(t: &TsdbView, db: &str, stmt: &Statement, epoch: Option<Precision>) -> Value {
    execute_read_as(t, db, stmt, epoch, None, SelectLimits::default())
}

/// [`execute_read`] for a user (authentication on): `SHOW DATABASES` lists
/// only the databases the user may read or write, as influxd's.
pub fn execute_read_as(
    t: &TsdbView,
    db: &str,
    stmt: &Statement,
    epoch: Option<Precision>,
    user: Option<&User>,
    limits: SelectLimits,
) -> Value {
    let err = |e: String| json!({ "error": e });
    match stmt {
        Statement::ShowDatabases => {
            let vals: Vec<Value> = t
                .meta()
                .databases
                .keys()
                .filter(|d| {
                    user.is_none_or(|u| u.may(Privilege::Read, d) || u.may(Privilege::Write, d))
                })
                .map(|d| json!([d]))
                .collect();
            json!({"series": [{"name": "databases", "columns": ["name"], "values": vals}]})
        }
        Statement::ShowTagKeys(_)
        | Statement::ShowTagValues { .. }
        | Statement::ShowFieldKeys(_)
        | Statement::ShowSeries { .. } => match show_schema(t, db, stmt) {
            Ok(v) => v,
            Err(e) => err(e),
        },
        Statement::ShowContinuousQueries => {
            // Every database, in creation order, with its queries.
            let series: Vec<Value> = t
                .meta()
                .databases
                .values()
                .map(|d| {
                    let mut one = json!({"name": d.name, "columns": ["name", "query"]});
                    if !d.cqs.is_empty() {
                        one["values"] =
                            json!(d.cqs.iter().map(|(n, q)| json!([n, q])).collect::<Vec<_>>());
                    }
                    one
                })
                .collect();
            if series.is_empty() {
                return json!({});
            }
            json!({ "series": series })
        }
        Statement::ShowShards | Statement::ShowShardGroups => show_shards(t, stmt),
        Statement::Explain {
            analyze: true,
            select,
        } => {
            let run = || select_exec(t, db, select, epoch, limits);
            match super::explain_analyze::explain_analyze(t, db, select, run) {
                Ok(v) => v,
                Err(e) => err(e),
            }
        }
        Statement::Explain { select, .. } => match super::explain::explain(t, db, select) {
            Ok(v) => v,
            Err(e) => err(e),
        },
        // No subscription is kept: writes are not forwarded anywhere.
        Statement::ShowSubscriptions => {
            // Each database with subscriptions: its retention policies'
            // subscriptions, in order.
            let series: Vec<Value> = t
                .meta()
                .databases
                .values()
                .filter_map(|d| {
                    let vals: Vec<Value> = d
                        .rps
                        .values()
                        .flat_map(|p| {
                            p.subscriptions
                                .iter()
                                .map(|s| json!([p.name, s.name, s.mode, s.destinations]))
                        })
                        .collect();
                    (!vals.is_empty()).then(|| {
                        json!({
                            "name": d.name,
                            "columns": ["retention_policy", "name", "mode", "destinations"],
                            "values": vals,
                        })
                    })
                })
                .collect();
            if series.is_empty() {
                json!({})
            } else {
                json!({ "series": series })
            }
        }
        Statement::ShowUsers => {
            let vals: Vec<Value> = t
                .meta()
                .users
                .iter()
                .map(|u| json!([u.name, u.admin]))
                .collect();
            listing(json!(["user", "admin"]), vals)
        }
        Statement::ShowGrants(name) => {
            let Some(u) = t.meta().user(name) else {
                return err(crate::tsdb::meta::MetaError::UserNotFound.to_string());
            };
            let vals: Vec<Value> = u
                .privileges
                .iter()
                .map(|(d, p)| json!([d, p.as_str()]))
                .collect();
            listing(json!(["database", "privilege"]), vals)
        }
        Statement::ShowRetentionPolicies(on) => {
            let name = on.as_deref().unwrap_or(db);
            if name.is_empty() {
                return err("database name required".into());
            }
            let Some(d) = t.meta().databases.get(name) else {
                return err(format!("database not found: {name}"));
            };
            let vals: Vec<Value> = d
                .rps
                .values()
                .map(|r| {
                    json!([
                        r.name,
                        go_duration(r.duration),
                        go_duration(r.shard_group_duration),
                        r.replica_n,
                        r.name == d.default_rp
                    ])
                })
                .collect();
            json!({"series": [{"columns": ["name", "duration", "shardGroupDuration", "replicaN", "default"], "values": vals}]})
        }
        Statement::ShowMeasurements {
            on,
            with,
            limit,
            offset,
        } => {
            let name = on.as_deref().unwrap_or(db);
            if name.is_empty() {
                return err("database name required".into());
            }
            let re = match with {
                Some(KeyMatch::Regex(r, _)) => match regex::Regex::new(r) {
                    Ok(r) => Some(r),
                    Err(e) => return err(e.to_string()),
                },
                _ => None,
            };
            let ms: Vec<String> = t
                .measurements(name)
                .into_iter()
                .filter(|m| match with {
                    None => true,
                    Some(KeyMatch::Eq(x)) => x == m,
                    Some(KeyMatch::In(xs)) => xs.contains(m),
                    Some(KeyMatch::Regex(_, pos)) => {
                        re.as_ref().is_some_and(|r| r.is_match(m)) == *pos
                    }
                })
                .skip(*offset)
                .take(if *limit == 0 { usize::MAX } else { *limit })
                .collect();
            if ms.is_empty() {
                return json!({});
            }
            let vals: Vec<Value> = ms.iter().map(|m| json!([m])).collect();
            json!({"series": [{"name": "measurements", "columns": ["name"], "values": vals}]})
        }
        Statement::ShowCardinality { exact, on, of } => {
            let db = on.as_deref().unwrap_or(db);
            let listed = || execute_read_as(t, db, of, epoch, user, limits);
            match cardinality(t, db, listed, *exact, of) {
                Ok(v) => v,
                Err(e) => err(e),
            }
        }
        Statement::Select(s) => match select_exec(t, db, s, epoch, limits) {
            Ok(v) => v,
            Err(e) => err(e),
        },
        _ => err("not a read statement".into()),
    }
}

/// A `SHOW … CARDINALITY` answer from the listing it counts, as influxd
/// gives it: measurements and (without FROM or WHERE) series as one total
/// (an "estimation" unless EXACT, exact here); the rest per measurement,
/// series counted once in each shard that holds them.
fn cardinality(
    t: &TsdbView,
    db: &str,
    listed: impl FnOnce() -> Value,
    exact: bool,
    of: &Statement,
) -> Result<Value, String> {
    // Series counted per shard need no listing (it would be read twice).
    if let Statement::ShowSeries { from, cond } = of
        && (exact || from.is_some() || cond.is_some())
    {
        if db.is_empty() {
            return Err("database name required".into());
        }
        return series_per_shard(t, db, from.as_deref(), cond.as_ref());
    }
    let listed = listed();
    if listed.get("error").is_some() {
        return Ok(listed);
    }
    let series = listed["series"].as_array().cloned().unwrap_or_default();
    let rows = |s: &Value| s["values"].as_array().map_or(0, Vec::len);
    let total_column = if exact {
        "count"
    } else {
        "cardinality estimation"
    };
    let total = |n: usize| json!({"series": [{"columns": [total_column], "values": [[n]]}]});
    Ok(match of {
        Statement::ShowMeasurements { .. } => total(series.iter().map(rows).sum()),
        Statement::ShowSeries { .. } => total(series.iter().map(rows).sum()),
        _ => counted(
            series
                .iter()
                .map(|s| (s["name"].as_str().unwrap_or_default().to_string(), rows(s))),
        ),
    })
}

/// `SHOW SERIES EXACT CARDINALITY` (or with FROM or WHERE): per
/// measurement, each series counted once in every shard that holds it, as
/// influxd counts them.
fn series_per_shard(
    t: &TsdbView,
    db: &str,
    from: Option<&str>,
    cond: Option<&Cond>,
) -> Result<Value, String> {
    let filter = super::filter::Filter::new(cond)?;
    let mut per: std::collections::BTreeMap<String, usize> = Default::default();
    for shard in t.shards_of(db) {
        for m in shard.measurements() {
            if from.is_some_and(|f| f != m) {
                continue;
            }
            let mut keys = std::collections::BTreeMap::new();
            shard.series(&m, &[], &mut keys);
            let n = keys
                .keys()
                .filter(|k| {
                    let tags = super::values::series_tags(k);
                    filter.series(&tags, &super::filter::Keys::AllTags) == Some(true)
                })
                .count();
            if n > 0 {
                *per.entry(m).or_default() += n;
            }
        }
    }
    Ok(counted(per.into_iter()))
}

/// One `count` series per measurement.
fn counted(per: impl Iterator<Item = (String, usize)>) -> Value {
    let series: Vec<Value> = per
        .map(|(m, n)| json!({"name": m, "columns": ["count"], "values": [[n]]}))
        .collect();
    if series.is_empty() {
        return json!({});
    }
    json!({ "series": series })
}

/// `SHOW SHARDS` (a series per database, a row per shard) and `SHOW SHARD
/// GROUPS` (one series), as influxd lists them: live groups, in database,
/// retention policy and group order; a group expires at its end plus its
/// policy's duration.
fn show_shards(t: &TsdbView, stmt: &Statement) -> Value {
    let time = |ns: i64| json!(crate::tsdb::timefmt::rfc3339_nano(ns));
    let mut per_db = Vec::new();
    let mut groups = Vec::new();
    for d in t.meta().databases.values() {
        let mut rows = Vec::new();
        for p in d.rps.values() {
            for g in p.shard_groups.iter().filter(|g| g.deleted_at == 0) {
                let expiry = time(g.end.saturating_add(p.duration));
                groups.push(json!([
                    g.id,
                    d.name,
                    p.name,
                    time(g.start),
                    time(g.end),
                    expiry
                ]));
                for s in &g.shards {
                    rows.push(json!([
                        s,
                        d.name,
                        p.name,
                        g.id,
                        time(g.start),
                        time(g.end),
                        expiry,
                        ""
                    ]));
                }
            }
        }
        let mut one = json!({"name": d.name, "columns": ["id", "database", "retention_policy", "shard_group", "start_time", "end_time", "expiry_time", "owners"]});
        if !rows.is_empty() {
            one["values"] = json!(rows);
        }
        per_db.push(one);
    }
    if let Statement::ShowShardGroups = stmt {
        let mut one = json!({"name": "shard groups", "columns": ["id", "database", "retention_policy", "start_time", "end_time", "expiry_time"]});
        if !groups.is_empty() {
            one["values"] = json!(groups);
        }
        return json!({ "series": [one] });
    }
    if per_db.is_empty() {
        return json!({});
    }
    json!({ "series": per_db })
}
