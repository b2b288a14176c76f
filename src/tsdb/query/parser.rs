//! Statements from text: everything but the SELECT clause's details.

use super::ast::*;
use super::cond::{regex_literal, where_clause};
use super::lexer::{P, Tok, lex_marked};
use super::select::select;
use super::text::{canonical, user_statement_text};
use crate::tsdb::users::Privilege;

/// Parses `;`-separated statements. `now` (ns) resolves `now()`.
pub fn parse(q: &str, now: i64) -> Result<Vec<Statement>, String> {
    Ok(parse_with_text(q, now)?
        .into_iter()
        .map(|(s, _)| s)
        .collect())
}

/// Parses a query into statements, each with its text as influxd prints a
/// statement in its messages (keywords upper case, identifiers quoted only
/// where needed, passwords `[REDACTED]`).
pub fn parse_with_text(q: &str, now: i64) -> Result<Vec<(Statement, String)>, String> {
    parse_bound(q, now, None)
}

/// [`parse_with_text`] with bound parameters (the `params` of a request,
/// a JSON object): each `$name` becomes its value — a string, a number or
/// a boolean literal, as influxd binds them.
pub fn parse_bound(
    q: &str,
    now: i64,
    params: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<Vec<(Statement, String)>, String> {
    let (mut marked, starts) = lex_marked(q)?;
    for (t, quoted) in &mut marked {
        let Tok::Ident(name) = t else { continue };
        let Some(key) = name.strip_prefix('$').filter(|_| !*quoted) else {
            continue;
        };
        let value = params
            .and_then(|p| p.get(key))
            .ok_or_else(|| format!("missing parameter: {key}"))?;
        *t = match value {
            serde_json::Value::String(s) => Tok::Str(s.clone()),
            serde_json::Value::Number(n) => Tok::Num(n.to_string()),
            serde_json::Value::Bool(b) => Tok::Ident(b.to_string()),
            other => return Err(format!("unable to bind parameter {key} to {other}")),
        };
    }
    // Where the token an error stopped at starts (after the last line's
    // end for EOF), as influxd ends its messages.
    let at = |i: usize| {
        let (line, ch) = starts.get(i).copied().unwrap_or_else(|| {
            // EOF: influxd's scanner counts one character more after a
            // bare word or number than after a symbol or quote.
            let text = q.trim_end();
            let last = text.rsplit('\n').next().unwrap_or("");
            let word = matches!(marked.last(), Some((Tok::Ident(_) | Tok::Num(_), false)));
            (
                text.matches('\n').count() + 1,
                last.chars().count() + if word { 2 } else { 1 },
            )
        });
        format!(" at line {line}, char {ch}")
    };
    let mut p = P {
        t: marked.iter().map(|(t, _)| t.clone()).collect(),
        i: 0,
        tz: None,
    };
    let mut out = Vec::new();
    while p.peek().is_some() {
        if p.sym(";") {
            continue;
        }
        let from = p.i;
        // influxd places its "found …, expected …" errors.
        let stmt = statement(&mut p, now).map_err(|e| {
            if e.starts_with("found ") {
                e + &at(p.i)
            } else {
                e
            }
        })?;
        let mut stmt = stmt;
        let user_text = user_statement_text(&stmt);
        let text = match (&mut stmt, user_text) {
            (_, Some(t)) => t,
            (
                Statement::CreateContinuousQuery {
                    db, text, select, ..
                },
                None,
            ) => {
                *text = cq_text(&marked[from..p.i], from, db, select);
                text.clone()
            }
            _ => canonical(&marked[from..p.i]),
        };
        out.push((stmt, text));
        if p.peek().is_some() && !p.sym(";") {
            return Err(format!("found {}, expected ;{}", p.found(), at(p.i)));
        }
    }
    if out.is_empty() {
        return Err("empty query".into());
    }
    Ok(out)
}

pub(super) fn statement(p: &mut P, now: i64) -> Result<Statement, String> {
    if p.kw("GRANT") {
        return grant(p, false);
    }
    if p.kw("REVOKE") {
        return grant(p, true);
    }
    if p.kw("KILL") {
        p.expect_kw("QUERY")?;
        let id = match p.peek().cloned() {
            Some(Tok::Num(n)) if n.bytes().all(|b| b.is_ascii_digit()) => {
                p.i += 1;
                n.parse::<u64>()
                    .map_err(|_| format!("query id {n} is too large"))?
            }
            _ => return Err(format!("found {}, expected integer", p.found())),
        };
        // `ON "host"`: this node's queries are the only ones it can kill.
        if p.kw("ON") {
            match p.peek() {
                Some(Tok::Ident(_) | Tok::Str(_)) => p.i += 1,
                _ => return Err(format!("found {}, expected identifier", p.found())),
            }
        }
        return Ok(Statement::KillQuery(id));
    }
    if p.kw("SET") {
        p.expect_kw("PASSWORD")?;
        p.expect_kw("FOR")?;
        let name = p.ident()?;
        if !p.sym("=") {
            return Err(format!("expected =, found {}", p.found()));
        }
        let password = p.string()?;
        return Ok(Statement::SetPassword { name, password });
    }
    if p.kw("CREATE") {
        if p.kw("SUBSCRIPTION") {
            let (name, db, rp) = subscription_target(p)?;
            p.expect_kw("DESTINATIONS")?;
            let mode = if p.kw("ALL") {
                "ALL"
            } else if p.kw("ANY") {
                "ANY"
            } else {
                return Err(format!("found {}, expected ALL, ANY", p.found()));
            };
            let mut destinations = vec![p.string()?];
            while p.sym(",") {
                destinations.push(p.string()?);
            }
            return Ok(Statement::CreateSubscription {
                name,
                db,
                rp,
                mode: mode.into(),
                destinations,
            });
        }
        if p.kw("CONTINUOUS") {
            p.expect_kw("QUERY")?;
            let name = p.ident()?;
            p.expect_kw("ON")?;
            let db = p.ident()?;
            let (mut every, mut for_) = (None, None);
            if p.kw("RESAMPLE") {
                loop {
                    if p.kw("EVERY") {
                        every = Some(p.duration()?);
                    } else if p.kw("FOR") {
                        for_ = Some(p.duration()?);
                    } else {
                        break;
                    }
                }
            }
            p.expect_kw("BEGIN")?;
            p.expect_kw("SELECT")?;
            let select = select(p, now)?;
            p.expect_kw("END")?;
            return Ok(Statement::CreateContinuousQuery {
                name,
                db,
                text: String::new(),
                every,
                for_,
                select: Box::new(select),
            });
        }
        if p.kw("USER") {
            let name = p.ident()?;
            p.expect_kw("WITH")?;
            p.expect_kw("PASSWORD")?;
            let password = p.string()?;
            let admin = p.kw("WITH");
            if admin {
                p.expect_kw("ALL")?;
                p.expect_kw("PRIVILEGES")?;
            }
            return Ok(Statement::CreateUser {
                name,
                password,
                admin,
            });
        }
        if p.kw("DATABASE") {
            return Ok(Statement::CreateDatabase(p.ident()?));
        }
        let (name, db) = rp_target(p)?;
        let o = rp_options(p)?;
        return Ok(Statement::CreateRetentionPolicy {
            name,
            db,
            duration: o.duration.ok_or("CREATE RETENTION POLICY needs DURATION")?,
            replication: o
                .replication
                .ok_or("CREATE RETENTION POLICY needs REPLICATION")?,
            shard_duration: o.shard_duration.unwrap_or(0),
            default: o.default,
        });
    }
    if p.kw("ALTER") {
        let (name, db) = rp_target(p)?;
        let o = rp_options(p)?;
        return Ok(Statement::AlterRetentionPolicy {
            name,
            db,
            duration: o.duration,
            replication: o.replication,
            shard_duration: o.shard_duration,
            default: o.default,
        });
    }
    if p.kw("DELETE") {
        if !matches!(p.peek(), Some(Tok::Ident(k)) if k.eq_ignore_ascii_case("FROM") || k.eq_ignore_ascii_case("WHERE"))
        {
            return Err(format!("found {}, expected FROM, WHERE", p.found()));
        }
        let from = sources(p)?;
        let (cond, b) = where_clause(p, now)?;
        return Ok(Statement::Delete {
            from,
            cond,
            min: b.min,
            max: b.max,
        });
    }
    if p.kw("DROP") {
        if p.kw("SUBSCRIPTION") {
            let (name, db, rp) = subscription_target(p)?;
            return Ok(Statement::DropSubscription { name, db, rp });
        }
        if p.kw("CONTINUOUS") {
            p.expect_kw("QUERY")?;
            let name = p.ident()?;
            p.expect_kw("ON")?;
            let db = p.ident()?;
            return Ok(Statement::DropContinuousQuery { name, db });
        }
        if p.kw("SERIES") {
            if !matches!(p.peek(), Some(Tok::Ident(k)) if k.eq_ignore_ascii_case("FROM") || k.eq_ignore_ascii_case("WHERE"))
            {
                return Err(format!("found {}, expected FROM, WHERE", p.found()));
            }
            let from = sources(p)?;
            let (cond, b) = where_clause(p, now)?;
            let timed = b.min != i64::MIN || b.max != i64::MAX;
            return Ok(Statement::DropSeries { from, cond, timed });
        }
        if p.kw("MEASUREMENT") {
            return Ok(Statement::DropMeasurement(p.ident()?));
        }
        if p.kw("USER") {
            return Ok(Statement::DropUser(p.ident()?));
        }
        if p.kw("DATABASE") {
            return Ok(Statement::DropDatabase(p.ident()?));
        }
        if !matches!(p.peek(), Some(Tok::Ident(k)) if k.eq_ignore_ascii_case("RETENTION")) {
            return Err(format!(
                "found {}, expected CONTINUOUS, DATABASE, MEASUREMENT, RETENTION, SERIES, SHARD, SUBSCRIPTION, USER",
                p.found()
            ));
        }
        let (name, db) = rp_target(p)?;
        return Ok(Statement::DropRetentionPolicy(name, db));
    }
    if p.kw("SHOW") {
        if p.kw("USERS") {
            return Ok(Statement::ShowUsers);
        }
        if p.kw("CONTINUOUS") {
            p.expect_kw("QUERIES")?;
            return Ok(Statement::ShowContinuousQueries);
        }
        if p.kw("SHARDS") {
            return Ok(Statement::ShowShards);
        }
        if p.kw("SHARD") {
            p.expect_kw("GROUPS")?;
            return Ok(Statement::ShowShardGroups);
        }
        if p.kw("QUERIES") {
            return Ok(Statement::ShowQueries);
        }
        if p.kw("DIAGNOSTICS") {
            return Ok(Statement::ShowDiagnostics);
        }
        if p.kw("SUBSCRIPTIONS") {
            return Ok(Statement::ShowSubscriptions);
        }
        if p.kw("STATS") {
            if !p.kw("FOR") {
                return Ok(Statement::ShowStats(None));
            }
            return match p.peek().cloned() {
                Some(Tok::Str(m)) => {
                    p.i += 1;
                    Ok(Statement::ShowStats(Some(m)))
                }
                _ => Err(format!("found {}, expected string", p.found())),
            };
        }
        if let Some(c) = cardinality(p, now)? {
            return Ok(c);
        }
        if p.kw("TAG") {
            if p.kw("KEYS") {
                return Ok(Statement::ShowTagKeys(show_from(p)?));
            }
            p.expect_kw("VALUES")?;
            let from = show_from(p)?;
            if !p.kw("WITH") {
                return Err(format!("found {}, expected WITH", p.found()));
            }
            p.expect_kw("KEY")?;
            let keys = if p.kw("IN") {
                if !p.sym("(") {
                    return Err(format!("found {}, expected (", p.found()));
                }
                let mut k = vec![p.ident()?];
                while p.sym(",") {
                    k.push(p.ident()?);
                }
                if !p.sym(")") {
                    return Err(format!("found {}, expected )", p.found()));
                }
                KeyMatch::In(k)
            } else {
                name_match(p)?
            };
            let (cond, _) = where_clause(p, now)?;
            return Ok(Statement::ShowTagValues { from, keys, cond });
        }
        if p.kw("FIELD") {
            p.expect_kw("KEYS")?;
            return Ok(Statement::ShowFieldKeys(show_from(p)?));
        }
        if p.kw("SERIES") {
            let from = show_from(p)?;
            let (cond, _) = where_clause(p, now)?;
            return Ok(Statement::ShowSeries { from, cond });
        }
        if p.kw("GRANTS") {
            p.expect_kw("FOR")?;
            return Ok(Statement::ShowGrants(p.ident()?));
        }
        if p.kw("DATABASES") {
            return Ok(Statement::ShowDatabases);
        }
        if p.kw("RETENTION") {
            p.expect_kw("POLICIES")?;
            return Ok(Statement::ShowRetentionPolicies(if p.kw("ON") {
                Some(p.ident()?)
            } else {
                None
            }));
        }
        if p.kw("MEASUREMENTS") {
            let on = if p.kw("ON") { Some(p.ident()?) } else { None };
            let with = if p.kw("WITH") {
                p.expect_kw("MEASUREMENT")?;
                Some(name_match(p)?)
            } else {
                None
            };
            let mut limit = 0;
            let mut offset = 0;
            if p.kw("LIMIT") {
                limit = p.num()?.parse().map_err(|_| "invalid LIMIT".to_string())?;
            }
            if p.kw("OFFSET") {
                offset = p.num()?.parse().map_err(|_| "invalid OFFSET".to_string())?;
            }
            return Ok(Statement::ShowMeasurements {
                on,
                with,
                limit,
                offset,
            });
        }
        return Err(format!(
            "found {}, expected CONTINUOUS, DATABASES, DIAGNOSTICS, FIELD, GRANTS, MEASUREMENT, MEASUREMENTS, QUERIES, RETENTION, SERIES, SHARD, SHARDS, STATS, SUBSCRIPTIONS, TAG, USERS",
            p.found()
        ));
    }
    if p.kw("SELECT") {
        return select(p, now).map(|s| Statement::Select(Box::new(ends_now(s, now))));
    }
    if p.kw("EXPLAIN") {
        let analyze = p.kw("ANALYZE");
        p.expect_kw("SELECT")?;
        return select(p, now).map(|s| Statement::Explain {
            select: Box::new(ends_now(s, now)),
            analyze,
        });
    }
    Err(format!(
        "found {}, expected SELECT, DELETE, SHOW, CREATE, DROP, EXPLAIN, GRANT, REVOKE, ALTER, SET, KILL",
        p.found()
    ))
}

/// `SHOW … [EXACT] CARDINALITY [ON db] [FROM m] [WITH KEY …] [WHERE …]`
/// (after SHOW), if the statement is one; the tokens are left alone if
/// not.
fn cardinality(p: &mut P, now: i64) -> Result<Option<Statement>, String> {
    let start = p.i;
    let what: &[&str] = if p.kw("SERIES") {
        &["SERIES"]
    } else if p.kw("MEASUREMENT") {
        &["MEASUREMENT"]
    } else if p.kw("TAG") && (p.kw("KEY") || p.kw("VALUES")) {
        if matches!(&p.t[p.i - 1], Tok::Ident(k) if k.eq_ignore_ascii_case("KEY")) {
            &["TAG", "KEY"]
        } else {
            &["TAG", "VALUES"]
        }
    } else if p.kw("FIELD") && p.kw("KEY") {
        &["FIELD", "KEY"]
    } else {
        p.i = start;
        return Ok(None);
    };
    let exact = p.kw("EXACT");
    if !p.kw("CARDINALITY") {
        p.i = start;
        return Ok(None);
    }
    let on = if p.kw("ON") { Some(p.ident()?) } else { None };
    let from = show_from(p)?;
    let of = match what {
        ["SERIES"] => {
            let (cond, _) = where_clause(p, now)?;
            Statement::ShowSeries { from, cond }
        }
        ["MEASUREMENT"] => Statement::ShowMeasurements {
            on: on.clone(),
            with: None,
            limit: 0,
            offset: 0,
        },
        ["TAG", "KEY"] => Statement::ShowTagKeys(from),
        ["TAG", "VALUES"] => {
            if !p.kw("WITH") {
                return Err(format!("found {}, expected WITH", p.found()));
            }
            p.expect_kw("KEY")?;
            let keys = name_match(p)?;
            let (cond, _) = where_clause(p, now)?;
            Statement::ShowTagValues { from, keys, cond }
        }
        _ => Statement::ShowFieldKeys(from),
    };
    Ok(Some(Statement::ShowCardinality {
        exact,
        on,
        of: Box::new(of),
    }))
}

/// `GRANT|REVOKE READ|WRITE|ALL [PRIVILEGES] ON db TO|FROM user`, or
/// `… ALL [PRIVILEGES] TO|FROM user` (admin).
pub(super) fn grant(p: &mut P, revoke: bool) -> Result<Statement, String> {
    let privilege = if p.kw("READ") {
        Privilege::Read
    } else if p.kw("WRITE") {
        Privilege::Write
    } else if p.kw("ALL") {
        p.kw("PRIVILEGES");
        Privilege::All
    } else {
        return Err(format!(
            "expected READ, WRITE, ALL [PRIVILEGES], found {}",
            p.found()
        ));
    };
    let to = if revoke { "FROM" } else { "TO" };
    let on = if privilege == Privilege::All && p.kw(to) {
        None
    } else {
        p.expect_kw("ON")?;
        let db = p.ident()?;
        p.expect_kw(to)?;
        Some(db)
    };
    let user = p.ident()?;
    Ok(if revoke {
        Statement::Revoke {
            privilege,
            on,
            user,
        }
    } else {
        Statement::Grant {
            privilege,
            on,
            user,
        }
    })
}

/// `RETENTION POLICY <name> ON <db>`.
/// A `GROUP BY time` query without an upper time bound ends now, as
/// influxd's: its last bucket is the one holding now (empty buckets up to
/// it are filled), and points after now are not read.
fn ends_now(mut s: Select, now: i64) -> Select {
    if s.group_time.is_some() && s.max == i64::MAX {
        s.max = now;
    }
    s
}

/// `name ON db.rp` of a subscription statement.
fn subscription_target(p: &mut P) -> Result<(String, String, String), String> {
    let name = p.ident()?;
    p.expect_kw("ON")?;
    let db = p.ident()?;
    if !p.sym(".") {
        return Err(format!("found {}, expected .", p.found()));
    }
    Ok((name, db, p.ident()?))
}

pub(super) fn rp_target(p: &mut P) -> Result<(String, String), String> {
    p.expect_kw("RETENTION")?;
    p.expect_kw("POLICY")?;
    let name = p.ident()?;
    p.expect_kw("ON")?;
    Ok((name, p.ident()?))
}

/// The options of CREATE/ALTER RETENTION POLICY, in any order.
#[derive(Default)]
pub(super) struct RpOptions {
    duration: Option<i64>,
    replication: Option<u32>,
    shard_duration: Option<i64>,
    default: bool,
}

pub(super) fn rp_options(p: &mut P) -> Result<RpOptions, String> {
    let mut o = RpOptions::default();
    loop {
        if p.kw("DURATION") {
            o.duration = Some(p.duration()?);
        } else if p.kw("REPLICATION") {
            o.replication = Some(
                p.num()?
                    .parse()
                    .map_err(|_| "invalid replication".to_string())?,
            );
        } else if p.kw("SHARD") {
            p.expect_kw("DURATION")?;
            o.shard_duration = Some(p.duration()?);
        } else if p.kw("DEFAULT") {
            o.default = true;
        } else {
            return Ok(o);
        }
    }
}

/// `= name`, `=~ /re/` or `!~ /re/` (`WITH KEY`, `WITH MEASUREMENT`).
pub(super) fn name_match(p: &mut P) -> Result<KeyMatch, String> {
    for (op, pos) in [("=~", true), ("!~", false)] {
        if p.sym(op) {
            return Ok(KeyMatch::Regex(regex_literal(p)?, pos));
        }
    }
    if p.sym("=") {
        return Ok(KeyMatch::Eq(p.ident()?));
    }
    Err(format!("found {}, expected =, =~, !~ or IN", p.found()))
}

/// A continuous query's statement as influxd stores it: its tokens
/// printed, the INTO target and the FROM source fully qualified (the
/// database's default retention policy as [`DEFAULT_RP_MARK`]). `toks`
/// start at token `at` of the query.
fn cq_text(toks: &[(Tok, bool)], at: usize, db: &str, s: &Select) -> String {
    canonical(&cq_tokens(toks, at, db, s))
}

/// The tokens of [`cq_text`]; a subquery's sources are qualified inside
/// it, the rest of it kept as written.
fn cq_tokens(toks: &[(Tok, bool)], at: usize, db: &str, s: &Select) -> Vec<(Tok, bool)> {
    let qualified = |t: &Target, regex: Option<&String>| {
        let db = t.db.clone().unwrap_or_else(|| db.to_string());
        let rp = t.rp.clone().unwrap_or_else(|| DEFAULT_RP_MARK.to_string());
        let mut out = vec![
            (Tok::Ident(db), true),
            (Tok::Sym(".".into()), false),
            (Tok::Ident(rp), true),
            (Tok::Sym(".".into()), false),
        ];
        match regex {
            Some(re) => out.push((Tok::Regex(re.clone()), false)),
            None if t.each_source => out.extend([
                (Tok::Sym(":".into()), false),
                (Tok::Ident("MEASUREMENT".into()), false),
            ]),
            None => out.push((Tok::Ident(t.measurement.clone()), true)),
        }
        out
    };
    let from = Target {
        db: s.db.clone(),
        rp: s.rp.clone(),
        measurement: s.measurement.clone(),
        each_source: false,
    };
    // The first source of FROM, when it is a regular expression.
    let from_regex = match s.sources.first() {
        Some(Source::Regex(re)) => Some(re),
        _ => None,
    };
    let mut out: Vec<(Tok, bool)> = Vec::with_capacity(toks.len() + 8);
    let [(ia, ib), (fa, fb)] = s.spans;
    let mut i = 0;
    while i < toks.len() {
        let abs = at + i;
        if s.into.is_some() && abs == ia {
            out.extend(qualified(s.into.as_ref().unwrap_or(&from), None));
            i += ib - ia;
        } else if abs == fa {
            match &s.subquery {
                Some(inner) => {
                    let end = (i + fb - fa).min(toks.len());
                    out.extend(cq_tokens(&toks[i..end], abs, db, inner));
                }
                None => out.extend(qualified(&from, from_regex)),
            }
            i += fb - fa;
        } else {
            out.push(toks[i].clone());
            i += 1;
        }
    }
    out
}

/// `FROM m, /re/, …` of DELETE and DROP SERIES, if given.
fn sources(p: &mut P) -> Result<Vec<Source>, String> {
    let mut out = Vec::new();
    if !p.kw("FROM") {
        return Ok(out);
    }
    loop {
        match p.peek().cloned() {
            Some(Tok::Regex(re)) => {
                p.i += 1;
                regex::Regex::new(&re)
                    .map_err(|e| format!("invalid regular expression /{re}/: {e}"))?;
                out.push(Source::Regex(re));
            }
            _ => out.push(Source::Name(p.ident()?)),
        }
        if !p.sym(",") {
            return Ok(out);
        }
    }
}

/// `FROM m` of the SHOW statements, if given.
pub(super) fn show_from(p: &mut P) -> Result<Option<String>, String> {
    if p.kw("FROM") {
        Ok(Some(p.ident()?))
    } else {
        Ok(None)
    }
}
