//! Statements printed back as InfluxQL that parses into the same
//! statement, and the property tests that hold the parser to it: any
//! input gives a statement or an error (never a panic), and
//! `parse(print(ast)) == ast` for statements generated from InfluxQL's
//! grammar.

use super::ast::*;
use super::text::{cond_text, quote_ident, string_literal};
use crate::tsdb::users::Privilege;

/// `s` as InfluxQL; None for what cannot be printed back (a projection
/// that only carries the error its arguments give).
pub(super) fn statement(s: &Statement) -> Option<String> {
    let id = |n: &str| quote_ident(n);
    let on = |db: &Option<String>| db.as_ref().map(|d| format!(" ON {}", id(d)));
    let from = |m: &Option<String>| m.as_ref().map(|m| format!(" FROM {}", id(m)));
    let cond = |c: &Option<Cond>| c.as_ref().map(|c| format!(" WHERE {}", cond_text(c)));
    Some(match s {
        Statement::CreateDatabase(d) => format!("CREATE DATABASE {}", id(d)),
        Statement::DropDatabase(d) => format!("DROP DATABASE {}", id(d)),
        Statement::ShowDatabases => "SHOW DATABASES".into(),
        Statement::CreateRetentionPolicy {
            name,
            db,
            duration,
            replication,
            shard_duration,
            default,
        } => format!(
            "CREATE RETENTION POLICY {} ON {} DURATION {} REPLICATION {replication}{}{}",
            id(name),
            id(db),
            duration_text(*duration),
            if *shard_duration != 0 {
                format!(" SHARD DURATION {}", duration_text(*shard_duration))
            } else {
                String::new()
            },
            if *default { " DEFAULT" } else { "" }
        ),
        Statement::AlterRetentionPolicy {
            name,
            db,
            duration,
            replication,
            shard_duration,
            default,
        } => format!(
            "ALTER RETENTION POLICY {} ON {}{}{}{}{}",
            id(name),
            id(db),
            duration
                .map(|d| format!(" DURATION {}", duration_text(d)))
                .unwrap_or_default(),
            replication
                .map(|r| format!(" REPLICATION {r}"))
                .unwrap_or_default(),
            shard_duration
                .map(|d| format!(" SHARD DURATION {}", duration_text(d)))
                .unwrap_or_default(),
            if *default { " DEFAULT" } else { "" }
        ),
        Statement::DropRetentionPolicy(name, db) => {
            format!("DROP RETENTION POLICY {} ON {}", id(name), id(db))
        }
        Statement::ShowRetentionPolicies(db) => {
            format!("SHOW RETENTION POLICIES{}", on(db).unwrap_or_default())
        }
        Statement::ShowMeasurements {
            on: db,
            with,
            limit,
            offset,
        } => format!(
            "SHOW MEASUREMENTS{}{}{}{}",
            on(db).unwrap_or_default(),
            with.as_ref()
                .map(|w| format!(" WITH MEASUREMENT {}", key_match(w)))
                .unwrap_or_default(),
            count_clause("LIMIT", *limit),
            count_clause("OFFSET", *offset),
        ),
        Statement::Select(sel) => format!("SELECT {}", select(sel)?),
        Statement::CreateUser {
            name,
            password,
            admin,
        } => format!(
            "CREATE USER {} WITH PASSWORD {}{}",
            id(name),
            string_literal(password),
            if *admin { " WITH ALL PRIVILEGES" } else { "" }
        ),
        Statement::DropUser(u) => format!("DROP USER {}", id(u)),
        Statement::SetPassword { name, password } => format!(
            "SET PASSWORD FOR {} = {}",
            id(name),
            string_literal(password)
        ),
        Statement::Grant {
            privilege,
            on: db,
            user,
        } => grant("GRANT", "TO", *privilege, db, user)?,
        Statement::Revoke {
            privilege,
            on: db,
            user,
        } => grant("REVOKE", "FROM", *privilege, db, user)?,
        Statement::ShowUsers => "SHOW USERS".into(),
        Statement::ShowGrants(u) => format!("SHOW GRANTS FOR {}", id(u)),
        Statement::ShowQueries => "SHOW QUERIES".into(),
        Statement::ShowStats(None) => "SHOW STATS".into(),
        Statement::ShowStats(Some(m)) => format!("SHOW STATS FOR {}", string_literal(m)),
        Statement::Explain {
            select: sel,
            analyze,
        } => format!(
            "EXPLAIN {}SELECT {}",
            if *analyze { "ANALYZE " } else { "" },
            select(sel)?
        ),
        Statement::ShowDiagnostics => "SHOW DIAGNOSTICS".into(),
        Statement::ShowSubscriptions => "SHOW SUBSCRIPTIONS".into(),
        Statement::CreateSubscription {
            name,
            db,
            rp,
            mode,
            destinations,
        } => format!(
            "CREATE SUBSCRIPTION {} ON {}.{} DESTINATIONS {mode} {}",
            id(name),
            id(db),
            id(rp),
            destinations
                .iter()
                .map(|d| string_literal(d))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Statement::DropSubscription { name, db, rp } => {
            format!("DROP SUBSCRIPTION {} ON {}.{}", id(name), id(db), id(rp))
        }
        Statement::KillQuery(q) => format!("KILL QUERY {q}"),
        Statement::ShowTagKeys(m) => format!("SHOW TAG KEYS{}", from(m).unwrap_or_default()),
        Statement::ShowTagValues {
            from: m,
            keys,
            cond: c,
        } => format!(
            "SHOW TAG VALUES{} WITH KEY {}{}",
            from(m).unwrap_or_default(),
            match keys {
                KeyMatch::In(k) => format!(
                    "IN ({})",
                    k.iter().map(|k| id(k)).collect::<Vec<_>>().join(", ")
                ),
                k => key_match(k),
            },
            cond(c).unwrap_or_default()
        ),
        Statement::ShowFieldKeys(m) => format!("SHOW FIELD KEYS{}", from(m).unwrap_or_default()),
        Statement::Delete {
            from: sources,
            cond: c,
            min,
            max,
        } => {
            let mut where_ = Vec::new();
            where_.extend(c.as_ref().map(|c| format!("({})", cond_text(c))));
            where_.extend(time_bounds(*min, *min != i64::MIN, *max));
            format!("DELETE{}{}", sources_text(sources), where_text(&where_))
        }
        Statement::DropSeries {
            from: sources,
            cond: c,
            timed,
        } => {
            let mut where_ = Vec::new();
            where_.extend(c.as_ref().map(|c| format!("({})", cond_text(c))));
            if *timed {
                where_.push("time > 0".to_string());
            }
            format!(
                "DROP SERIES{}{}",
                sources_text(sources),
                where_text(&where_)
            )
        }
        Statement::DropMeasurement(m) => format!("DROP MEASUREMENT {}", id(m)),
        Statement::CreateContinuousQuery {
            name,
            db,
            every,
            for_,
            select: sel,
            ..
        } => {
            let resample = match (every, for_) {
                (None, None) => String::new(),
                (e, f) => format!(
                    " RESAMPLE{}{}",
                    e.map(|e| format!(" EVERY {}", duration_text(e)))
                        .unwrap_or_default(),
                    f.map(|f| format!(" FOR {}", duration_text(f)))
                        .unwrap_or_default()
                ),
            };
            format!(
                "CREATE CONTINUOUS QUERY {} ON {}{resample} BEGIN SELECT {} END",
                id(name),
                id(db),
                select(sel)?
            )
        }
        Statement::DropContinuousQuery { name, db } => {
            format!("DROP CONTINUOUS QUERY {} ON {}", id(name), id(db))
        }
        Statement::ShowContinuousQueries => "SHOW CONTINUOUS QUERIES".into(),
        Statement::ShowShards => "SHOW SHARDS".into(),
        Statement::ShowShardGroups => "SHOW SHARD GROUPS".into(),
        Statement::ShowCardinality { exact, on: db, of } => {
            let exact = if *exact { " EXACT" } else { "" };
            let db = on(db).unwrap_or_default();
            match &**of {
                Statement::ShowSeries { from: m, cond: c } => format!(
                    "SHOW SERIES{exact} CARDINALITY{db}{}{}",
                    from(m).unwrap_or_default(),
                    cond(c).unwrap_or_default()
                ),
                Statement::ShowMeasurements { .. } => {
                    format!("SHOW MEASUREMENT{exact} CARDINALITY{db}")
                }
                Statement::ShowTagKeys(m) => format!(
                    "SHOW TAG KEY{exact} CARDINALITY{db}{}",
                    from(m).unwrap_or_default()
                ),
                Statement::ShowTagValues {
                    from: m,
                    keys,
                    cond: c,
                } => format!(
                    "SHOW TAG VALUES{exact} CARDINALITY{db}{} WITH KEY {}{}",
                    from(m).unwrap_or_default(),
                    key_match(keys),
                    cond(c).unwrap_or_default()
                ),
                Statement::ShowFieldKeys(m) => format!(
                    "SHOW FIELD KEY{exact} CARDINALITY{db}{}",
                    from(m).unwrap_or_default()
                ),
                _ => return None,
            }
        }
        Statement::ShowSeries { from: m, cond: c } => format!(
            "SHOW SERIES{}{}",
            from(m).unwrap_or_default(),
            cond(c).unwrap_or_default()
        ),
    })
}

/// A SELECT after the keyword.
pub(super) fn select(s: &Select) -> Option<String> {
    let mut out = Vec::new();
    for (p, alias) in s.fields.iter().zip(&s.aliases) {
        let mut text = projection(p)?;
        if let Some(a) = alias {
            text.push_str(" AS ");
            text.push_str(&quote_ident(a));
        }
        out.push(text);
    }
    let mut text = out.join(", ");
    if let Some(t) = &s.into {
        text.push_str(" INTO ");
        text.push_str(&qualified(
            t.db.as_deref(),
            t.rp.as_deref(),
            &if t.each_source {
                ":MEASUREMENT".to_string()
            } else {
                quote_ident(&t.measurement)
            },
        ));
    }
    text.push_str(" FROM ");
    if let Some(inner) = &s.subquery {
        text.push_str(&format!("(SELECT {})", select(inner)?));
    } else if s.sources.is_empty() {
        text.push_str(&qualified(
            s.db.as_deref(),
            s.rp.as_deref(),
            &quote_ident(&s.measurement),
        ));
    } else {
        let mut names = Vec::new();
        for (i, src) in s.sources.iter().enumerate() {
            let name = source_text(src);
            names.push(if i == 0 {
                qualified(s.db.as_deref(), s.rp.as_deref(), &name)
            } else {
                name
            });
        }
        text.push_str(&names.join(", "));
    }
    let mut where_ = Vec::new();
    where_.extend(s.cond.as_ref().map(|c| format!("({})", cond_text(c))));
    where_.extend(time_bounds(s.min, s.has_min, s.max));
    text.push_str(&where_text(&where_));
    let mut group = Vec::new();
    if let Some((iv, off)) = s.group_time {
        group.push(format!("time({iv}ns, {off}ns)"));
    }
    match &s.group_tags {
        GroupTags::None => {}
        GroupTags::All => group.push("*".into()),
        GroupTags::Keys(k) => group.extend(k.iter().map(|k| quote_ident(k))),
    }
    if !group.is_empty() {
        text.push_str(" GROUP BY ");
        text.push_str(&group.join(", "));
    }
    match s.fill {
        Fill::Null => {}
        Fill::None => text.push_str(" fill(none)"),
        Fill::Value(v) => text.push_str(&format!(" fill({v:?})")),
        Fill::Previous => text.push_str(" fill(previous)"),
        Fill::Linear => text.push_str(" fill(linear)"),
    }
    if s.desc {
        text.push_str(" ORDER BY time DESC");
    }
    for (kw, n) in [
        ("LIMIT", s.limit),
        ("OFFSET", s.offset),
        ("SLIMIT", s.slimit),
        ("SOFFSET", s.soffset),
    ] {
        text.push_str(&count_clause(kw, n));
    }
    if let Some(tz) = s.tz {
        text.push_str(&format!(" tz({})", string_literal(tz.name())));
    }
    Some(text)
}

fn projection(p: &Projection) -> Option<String> {
    Some(match p {
        Projection::All => "*".into(),
        Projection::Field(f) => quote_ident(f),
        Projection::Agg(f, field) => call(*f, field),
        Projection::Math(e) => expr(e),
        Projection::Invalid(_) => return None,
        Projection::Selector {
            pick,
            field,
            tag,
            n,
        } => {
            let mut args = vec![quote_ident(field)];
            args.extend(tag.iter().map(|t| quote_ident(t)));
            args.extend(n.map(|n| n.to_string()));
            format!("{}({})", pick.name(), args.join(", "))
        }
        Projection::Nested {
            outer,
            inner,
            field,
            unit,
        } => {
            let arg = match inner {
                Func::Raw => quote_ident(field),
                f => call(*f, field),
            };
            let mut args = vec![arg];
            match outer {
                Transform::HoltWinters { h, m, .. } => {
                    args.push(h.to_string());
                    args.push(m.to_string());
                }
                Transform::Indicator(ind) => {
                    use super::indicators::Warmup;
                    // As many arguments as the indicator takes.
                    let max = ind.kind.max_args();
                    args.push(ind.period.to_string());
                    if max >= 3 {
                        args.push(ind.hold.to_string());
                    }
                    if max >= 4 {
                        args.push(string_literal(match ind.warmup {
                            Warmup::Exponential => "exponential",
                            Warmup::Simple => "simple",
                            Warmup::None => "none",
                        }));
                    }
                }
                Transform::MovingAverage => args.extend(unit.map(|n| n.to_string())),
                _ => args.extend(unit.map(|u| format!("{u}ns"))),
            }
            format!("{}({})", outer.name(), args.join(", "))
        }
    })
}

/// An aggregate of a field, as written.
fn call(f: Func, field: &str) -> String {
    let arg = if field == "*" {
        "*".to_string()
    } else {
        quote_ident(field)
    };
    match f {
        Func::CountDistinct => format!("count(distinct({arg}))"),
        Func::Percentile(n) => format!("percentile({arg}, {n:?})"),
        Func::Integral(unit) => format!("integral({arg}, {unit}ns)"),
        f => format!("{}({arg})", f.name()),
    }
}

/// Arithmetic, parenthesised as it groups.
fn expr(e: &Expr) -> String {
    match e {
        Expr::Field(f) => quote_ident(f),
        Expr::Call(f, field) => call(*f, field),
        Expr::Int(i) => i.to_string(),
        Expr::Float(x) => format!("{x:?}"),
        Expr::Str(s) => string_literal(s),
        Expr::Bool(b) => b.to_string(),
        Expr::Neg(x) => format!("-({})", expr(x)),
        Expr::Bin(l, op, r) => format!("({} {} {})", expr(l), op.symbol(), expr(r)),
        Expr::Undefined(name) => format!("{}(x)", quote_ident(name)),
    }
}

fn grant(
    verb: &str,
    to: &str,
    privilege: Privilege,
    db: &Option<String>,
    user: &str,
) -> Option<String> {
    let what = match privilege {
        Privilege::Read => "READ",
        Privilege::Write => "WRITE",
        Privilege::All => "ALL",
        Privilege::None => return None,
    };
    Some(match db {
        Some(db) => format!(
            "{verb} {what} ON {} {to} {}",
            quote_ident(db),
            quote_ident(user)
        ),
        None => format!("{verb} {what} PRIVILEGES {to} {}", quote_ident(user)),
    })
}

fn key_match(k: &KeyMatch) -> String {
    match k {
        KeyMatch::Eq(n) => format!("= {}", quote_ident(n)),
        KeyMatch::In(k) => format!(
            "IN ({})",
            k.iter()
                .map(|k| quote_ident(k))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        KeyMatch::Regex(re, true) => format!("=~ {}", regex_text(re)),
        KeyMatch::Regex(re, false) => format!("!~ {}", regex_text(re)),
    }
}

fn regex_text(re: &str) -> String {
    format!("/{}/", re.replace('/', "\\/"))
}

fn source_text(s: &Source) -> String {
    match s {
        Source::Name(n) => quote_ident(n),
        Source::Regex(re) => regex_text(re),
    }
}

fn sources_text(s: &[Source]) -> String {
    if s.is_empty() {
        return String::new();
    }
    let names: Vec<String> = s.iter().map(source_text).collect();
    format!(" FROM {}", names.join(", "))
}

/// `[[db.]rp.]name` (`db..name`: the default retention policy).
fn qualified(db: Option<&str>, rp: Option<&str>, name: &str) -> String {
    match (db, rp) {
        (None, None) => name.to_string(),
        (None, Some(rp)) => format!("{}.{name}", quote_ident(rp)),
        (Some(db), None) => format!("{}..{name}", quote_ident(db)),
        (Some(db), Some(rp)) => format!("{}.{}.{name}", quote_ident(db), quote_ident(rp)),
    }
}

/// Inclusive time bounds as comparisons with times in ns.
fn time_bounds(min: i64, has_min: bool, max: i64) -> Vec<String> {
    let mut out = Vec::new();
    if has_min {
        out.push(format!("time >= {min}"));
    }
    if max != i64::MAX {
        out.push(format!("time <= {max}"));
    }
    out
}

fn where_text(parts: &[String]) -> String {
    if parts.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", parts.join(" AND "))
    }
}

/// ` LIMIT n` and the like; nothing for 0 (none).
fn count_clause(kw: &str, n: usize) -> String {
    if n > 0 {
        format!(" {kw} {n}")
    } else {
        String::new()
    }
}

/// A duration in ns as a literal.
fn duration_text(ns: i64) -> String {
    if ns == 0 {
        "INF".into()
    } else {
        format!("{ns}ns")
    }
}

#[cfg(test)]
mod tests {
    use super::super::parser::{parse, parse_with_text};
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_600_000_000_000_000_000;

    /// What printing cannot keep: token positions, and a continuous
    /// query's stored text (made from the tokens as written).
    fn normalised(s: Statement) -> Statement {
        fn sel(mut s: Select) -> Select {
            s.spans = [(0, 0); 2];
            s.subquery = s.subquery.map(|q| Box::new(sel(*q)));
            s
        }
        match s {
            Statement::Select(s) => Statement::Select(Box::new(sel(*s))),
            Statement::Explain { select, analyze } => Statement::Explain {
                select: Box::new(sel(*select)),
                analyze,
            },
            Statement::CreateContinuousQuery {
                name,
                db,
                every,
                for_,
                select,
                ..
            } => Statement::CreateContinuousQuery {
                name,
                db,
                text: String::new(),
                every,
                for_,
                select: Box::new(sel(*select)),
            },
            s => s,
        }
    }

    /// Each parsed statement printed, parsed again and compared. Returns
    /// how many were printed.
    fn round_trip(q: &str) -> Result<usize, TestCaseError> {
        let Ok(parsed) = parse(q, NOW) else {
            return Ok(0);
        };
        let mut printed = 0;
        for s in parsed {
            let Some(text) = statement(&s) else { continue };
            let again = parse(&text, NOW)
                .map_err(|e| TestCaseError::fail(format!("{q}\n  printed {text}\n  {e}")))?;
            prop_assert_eq!(again.len(), 1, "{} printed {}", q, text);
            let again = again.into_iter().next().map(normalised);
            prop_assert_eq!(again, Some(normalised(s)), "{} printed {}", q, text);
            printed += 1;
        }
        Ok(printed)
    }

    fn one_of(items: &'static [&'static str]) -> impl Strategy<Value = String> {
        proptest::sample::select(items).prop_map(str::to_string)
    }

    fn name() -> impl Strategy<Value = String> {
        one_of(&["v", "i", "s", "host", "dc", "\"my v\"", "\"select\"", "_x9"])
    }

    fn aggregate() -> impl Strategy<Value = String> {
        prop_oneof![
            (
                one_of(&[
                    "count", "sum", "mean", "median", "mode", "spread", "stddev", "min", "max",
                    "first", "last", "distinct", "integral",
                ]),
                name()
            )
                .prop_map(|(f, n)| format!("{f}({n})")),
            one_of(&[
                "count(*)",
                "mean(*)",
                "percentile(v, 90)",
                "percentile(v, 99.5)",
                "count(distinct(host))",
                "integral(v, 2s)",
                "COUNT(v)",
            ]),
        ]
    }

    fn arithmetic() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            name(),
            aggregate(),
            (0i64..1000).prop_map(|n| n.to_string()),
            (0u32..10_000).prop_map(|n| format!("{}.{}", n / 100, n % 100)),
            one_of(&["'x'", "'it\\'s'", "true", "FALSE"]),
        ];
        leaf.prop_recursive(3, 12, 2, |inner| {
            prop_oneof![
                (
                    inner.clone(),
                    one_of(&["+", "-", "*", "/", "%"]),
                    inner.clone()
                )
                    .prop_map(|(l, op, r)| format!("{l} {op} {r}")),
                inner.clone().prop_map(|e| format!("({e})")),
                inner.prop_map(|e| format!("-{e}")),
            ]
        })
    }

    fn projection() -> impl Strategy<Value = String> {
        let one = prop_oneof![
            3 => name(),
            1 => Just("*".to_string()),
            3 => aggregate(),
            2 => arithmetic(),
            2 => one_of(&[
                "derivative(mean(v), 1s)",
                "non_negative_derivative(max(v))",
                "difference(v)",
                "non_negative_difference(sum(i))",
                "moving_average(mean(v), 3)",
                "cumulative_sum(v)",
                "elapsed(v, 1ms)",
                "holt_winters(mean(v), 3, 2)",
                "holt_winters_with_fit(first(v), 5, 0)",
                "exponential_moving_average(v, 4)",
                "triple_exponential_derivative(mean(v), 3, 2)",
                "chande_momentum_oscillator(mean(v), 3, 1, 'none')",
                "kaufmans_efficiency_ratio(v, 2)",
                "relative_strength_index(v, 5, -1, 'simple')",
                "top(v, 3)",
                "top(v, host, 2)",
                "bottom(i, dc, host, 1)",
                "sample(v, 5)",
                "nope(v)",
                "percentile(v)",
                "moving_average(v, 0)",
            ]),
        ];
        (one, proptest::option::of(name())).prop_map(|(p, alias)| match alias {
            Some(a) => format!("{p} AS {a}"),
            None => p,
        })
    }

    fn condition() -> impl Strategy<Value = String> {
        let leaf = one_of(&[
            "host = 'a'",
            "host != 'b'",
            "v > 5",
            "v >= -2.5",
            "i < 10",
            "host =~ /a.*/",
            "dc !~ /x\\/y/",
            "s = 'x\\'y'",
            "b = true",
            "v * 2 > i",
            "(v + 1) * 2 > 7",
            "i > v",
            "time > 10s",
            "time >= now() - 1h",
            "time < '2020-09-13T12:26:40Z'",
            "time <= 1600000000000000000",
            "time = 5",
            "time > '2020-09-13 12:00:00'",
            "\"my v\" <= 0",
            "'a' = host",
            "5 < v",
            "-1.5 >= \"my v\"",
            "10s < time",
            "3 = v + i",
            "1 = 1",
            "'a' != 'b'",
        ]);
        leaf.prop_recursive(3, 10, 2, |inner| {
            prop_oneof![
                (inner.clone(), one_of(&["AND", "OR", "and"]), inner.clone())
                    .prop_map(|(l, op, r)| format!("{l} {op} {r}")),
                inner.prop_map(|c| format!("({c})")),
            ]
        })
    }

    fn select_text() -> impl Strategy<Value = String> {
        (
            proptest::collection::vec(projection(), 1..4),
            proptest::option::of(one_of(&[
                "m2",
                "db.rp.:MEASUREMENT",
                "rp.x",
                "db..\"my m\"",
            ])),
            one_of(&[
                "m",
                "\"my m\"",
                "db.rp.m",
                "db..m",
                "rp.m",
                "/c.*/",
                "m, /x/",
                "db.rp./re/, n",
                "(SELECT mean(v) AS v FROM m GROUP BY time(1m), host)",
                "(SELECT v, host FROM m WHERE time > 5s)",
            ]),
            proptest::option::of(condition()),
            proptest::option::of(one_of(&[
                "time(1m)",
                "time(10s, 3s)",
                "time(1h, -10m), host",
                "host",
                "host, dc",
                "*",
                "time(1d), *",
            ])),
            proptest::option::of(one_of(&[
                "fill(none)",
                "fill(null)",
                "fill(previous)",
                "fill(linear)",
                "fill(0)",
                "fill(-1.5)",
            ])),
            proptest::option::of(one_of(&["ORDER BY time DESC", "ORDER BY time ASC"])),
            (
                proptest::option::of(1usize..100),
                proptest::option::of(1usize..100),
                proptest::option::of(1usize..10),
                proptest::option::of(1usize..10),
            ),
            proptest::option::of(one_of(&["tz('America/New_York')", "tz('UTC')"])),
        )
            .prop_map(
                |(fields, into, from, cond, group, fill, order, (l, o, sl, so), tz)| {
                    let mut q = format!("SELECT {}", fields.join(", "));
                    if let Some(i) = into {
                        q.push_str(&format!(" INTO {i}"));
                    }
                    q.push_str(&format!(" FROM {from}"));
                    if let Some(c) = cond {
                        q.push_str(&format!(" WHERE {c}"));
                    }
                    if let Some(g) = group {
                        q.push_str(&format!(" GROUP BY {g}"));
                    }
                    for part in [fill, order].into_iter().flatten() {
                        q.push(' ');
                        q.push_str(&part);
                    }
                    for (kw, n) in [("LIMIT", l), ("OFFSET", o), ("SLIMIT", sl), ("SOFFSET", so)] {
                        if let Some(n) = n {
                            q.push_str(&format!(" {kw} {n}"));
                        }
                    }
                    if let Some(tz) = tz {
                        q.push_str(&format!(" {tz}"));
                    }
                    q
                },
            )
    }

    fn other_statement() -> impl Strategy<Value = String> {
        prop_oneof![
            one_of(&[
                "CREATE DATABASE \"my db\"",
                "DROP DATABASE db",
                "SHOW DATABASES",
                "CREATE RETENTION POLICY rp ON db DURATION 1d REPLICATION 1 SHARD DURATION 1h DEFAULT",
                "CREATE RETENTION POLICY \"r p\" ON db DURATION INF REPLICATION 2",
                "ALTER RETENTION POLICY rp ON db DURATION 2w DEFAULT",
                "ALTER RETENTION POLICY rp ON db SHARD DURATION 30m REPLICATION 3",
                "DROP RETENTION POLICY rp ON db",
                "SHOW RETENTION POLICIES",
                "SHOW RETENTION POLICIES ON db",
                "SHOW MEASUREMENTS",
                "SHOW MEASUREMENTS ON db WITH MEASUREMENT =~ /c/ LIMIT 2 OFFSET 1",
                "SHOW MEASUREMENTS WITH MEASUREMENT = cpu",
                "CREATE USER u WITH PASSWORD 'p\\'w' WITH ALL PRIVILEGES",
                "CREATE USER \"a user\" WITH PASSWORD 'pw'",
                "DROP USER u",
                "SET PASSWORD FOR u = 'new'",
                "GRANT READ ON db TO u",
                "GRANT ALL PRIVILEGES TO u",
                "REVOKE WRITE ON db FROM u",
                "REVOKE ALL FROM u",
                "SHOW USERS",
                "SHOW GRANTS FOR u",
                "SHOW QUERIES",
                "SHOW STATS",
                "SHOW STATS FOR 'shard'",
                "SHOW DIAGNOSTICS",
                "SHOW SUBSCRIPTIONS",
                "CREATE SUBSCRIPTION s ON db.rp DESTINATIONS ANY 'http://a:1', 'udp://b:2'",
                "DROP SUBSCRIPTION s ON db.rp",
                "KILL QUERY 12",
                "KILL QUERY 7 ON \"h:8086\"",
                "SHOW TAG KEYS",
                "SHOW TAG KEYS FROM m",
                "SHOW TAG VALUES WITH KEY = host",
                "SHOW TAG VALUES FROM m WITH KEY IN (host, dc) WHERE host = 'a'",
                "SHOW TAG VALUES WITH KEY =~ /h.*/ WHERE dc != 'x' OR host = 'b'",
                "SHOW FIELD KEYS FROM \"my m\"",
                "SHOW SERIES",
                "SHOW SERIES FROM m WHERE host = 'a'",
                "SHOW SERIES EXACT CARDINALITY ON db FROM m WHERE host = 'a'",
                "SHOW SERIES CARDINALITY",
                "SHOW MEASUREMENT EXACT CARDINALITY ON db",
                "SHOW TAG KEY CARDINALITY FROM m",
                "SHOW TAG VALUES CARDINALITY WITH KEY = host",
                "SHOW FIELD KEY EXACT CARDINALITY",
                "DELETE FROM m WHERE host = 'a' AND time < 10s",
                "DELETE WHERE time >= 5 AND time <= 7",
                "DELETE FROM m, /c/",
                "DROP SERIES FROM /c/ WHERE dc = 'x'",
                "DROP SERIES WHERE host = 'a' AND time > 0",
                "DROP MEASUREMENT \"my m\"",
                "DROP CONTINUOUS QUERY cq ON db",
                "SHOW CONTINUOUS QUERIES",
                "SHOW SHARDS",
                "SHOW SHARD GROUPS",
            ]),
            select_text().prop_map(|s| format!("EXPLAIN {s}")),
            select_text().prop_map(|s| format!("EXPLAIN ANALYZE {s}")),
            select_text().prop_map(|s| format!(
                "CREATE CONTINUOUS QUERY cq ON db RESAMPLE EVERY 1m FOR 2h BEGIN {s} END"
            )),
            select_text()
                .prop_map(|s| format!("CREATE CONTINUOUS QUERY \"c q\" ON db BEGIN {s} END")),
        ]
    }

    /// Tokens and pieces of InfluxQL in any order: reaches deeper into the
    /// parser than arbitrary text.
    fn token_soup() -> impl Strategy<Value = String> {
        let tok = one_of(&[
            "SELECT",
            "FROM",
            "WHERE",
            "GROUP",
            "BY",
            "time",
            "(",
            ")",
            ",",
            "*",
            "+",
            "-",
            "/",
            "%",
            "=",
            "!=",
            "=~",
            "!~",
            "<",
            ">=",
            "AND",
            "OR",
            "fill",
            "LIMIT",
            "OFFSET",
            "SLIMIT",
            "ORDER",
            "DESC",
            "tz",
            "INTO",
            ":MEASUREMENT",
            ".",
            "..",
            "m",
            "v",
            "host",
            "'a'",
            "'",
            "\"",
            "/re/",
            "/",
            "1",
            "-1",
            "1.5",
            "1s",
            "10m",
            "now()",
            "mean",
            "count",
            "distinct",
            "top",
            "percentile",
            "derivative",
            "holt_winters",
            "exponential_moving_average",
            "SHOW",
            "TAG",
            "VALUES",
            "WITH",
            "KEY",
            "IN",
            "CREATE",
            "DROP",
            "DATABASE",
            "RETENTION",
            "POLICY",
            "ON",
            "DURATION",
            "CONTINUOUS",
            "QUERY",
            "BEGIN",
            "END",
            "RESAMPLE",
            "EVERY",
            "DELETE",
            "SERIES",
            "CARDINALITY",
            "EXACT",
            "GRANT",
            "REVOKE",
            "KILL",
            "EXPLAIN",
            "ANALYZE",
            ";",
            "$x",
            "::",
            "::tag",
            "true",
            "9223372036854775808",
            "\n",
            "\u{e9}",
            "\\",
        ]);
        proptest::collection::vec(tok, 0..40).prop_map(|t| t.join(" "))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_text_parses_or_is_refused(q in any::<String>()) {
            let _ = parse(&q, NOW);
            let _ = parse_with_text(&q, NOW);
        }

        #[test]
        fn any_tokens_parse_or_are_refused(q in token_soup()) {
            let _ = parse(&q, NOW);
            let _ = parse_with_text(&q, NOW);
        }

        #[test]
        fn printed_selects_parse_into_themselves(q in select_text()) {
            round_trip(&q)?;
        }

        #[test]
        fn printed_statements_parse_into_themselves(q in other_statement()) {
            round_trip(&q)?;
        }
    }

    /// The generated statements are mostly valid and printable: the round
    /// trip is tested, not skipped.
    #[test]
    fn most_generated_statements_are_printed() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        let (mut tried, mut printed) = (0, 0);
        for _ in 0..500 {
            let q = select_text().new_tree(&mut runner).map(|t| t.current());
            let Ok(q) = q else { continue };
            tried += 1;
            printed += round_trip(&q)
                .map_err(|e| e.to_string())
                .expect("round trip");
        }
        eprintln!("{printed} of {tried} printed");
        assert!(printed * 2 > tried, "{printed} of {tried} printed");
    }

    #[test]
    fn a_statement_prints_as_influxql() {
        let q = "SELECT mean(v) AS m, max(\"my v\") * 2 INTO db..:MEASUREMENT FROM db.rp.cpu \
                 WHERE host = 'a' AND time >= 10s AND time < 20s GROUP BY time(5s), host \
                 fill(none) ORDER BY time DESC LIMIT 3 SOFFSET 1 tz('UTC')";
        let s = parse(q, NOW).expect("parses");
        assert_eq!(
            statement(&s[0]).expect("printed"),
            "SELECT mean(v) AS m, (max(\"my v\") * 2) INTO db..:MEASUREMENT FROM db.rp.cpu \
             WHERE (\"host\" = 'a') AND time >= 10000000000 AND time <= 19999999999 \
             GROUP BY time(5000000000ns, 0ns), host fill(none) ORDER BY time DESC LIMIT 3 \
             SOFFSET 1 tz('UTC')"
        );
    }
}
