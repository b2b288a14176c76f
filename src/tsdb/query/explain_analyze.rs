//! `EXPLAIN ANALYZE SELECT …`: the statement is run, and its plan is
//! answered as influxd's tree — the planning, execution and total time,
//! the statement as influxd rewrites it (names typed, `*` expanded, time
//! taken out of the condition), one iterator scanner per call (or one for
//! raw points) and, under each, one iterator per measurement and shard
//! with its cursors and the TSM blocks of its series in the time range by
//! type. Times are this node's; blocks are counted on this node's files.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::ast::*;
use super::filter::{Filter, Keys};
use super::values::series_tags;
use crate::tsdb::fsm::TsdbView;
use crate::tsdb::tsm::KEY_FIELD_SEPARATOR;

/// A node of the answer's tree: a name (`key: value` for a leaf) and its
/// children.
struct Tree {
    text: String,
    children: Vec<Tree>,
}

impl Tree {
    fn leaf(key: &str, value: impl std::fmt::Display) -> Tree {
        Tree {
            text: format!("{key}: {value}"),
            children: Vec::new(),
        }
    }

    fn branch(text: &str, children: Vec<Tree>) -> Tree {
        Tree {
            text: text.to_string(),
            children,
        }
    }

    /// `labels` with its entries sorted by key, as influxd lists them.
    fn labels(mut entries: Vec<(&str, String)>) -> Tree {
        entries.sort_by(|a, b| a.0.cmp(b.0));
        Tree::branch(
            "labels",
            entries.into_iter().map(|(k, v)| Tree::leaf(k, v)).collect(),
        )
    }

    /// Its lines, drawn as influxd draws them.
    fn lines(&self, out: &mut Vec<String>, prefix: &str) {
        for (i, c) in self.children.iter().enumerate() {
            let last = i + 1 == self.children.len();
            out.push(format!(
                "{prefix}{}{}",
                if last { "└── " } else { "├── " },
                c.text
            ));
            // (influxd's continued branch is `│`, two no-break spaces and
            // a space.)
            let more = if last { "    " } else { "│\u{a0}\u{a0} " };
            c.lines(out, &format!("{prefix}{more}"));
        }
    }
}

/// A measurement in one shard: its name, the shard's id and view, and
/// its series (key, fields) that the condition's tags let through.
type Listed<'a> = (
    &'a String,
    u64,
    &'a crate::tsdb::shard::ShardView,
    Vec<(String, BTreeSet<String>)>,
);

/// One scanner: its labels and the fields its cursors read.
struct Scanner {
    labels: Vec<(&'static str, String)>,
    /// The field its call reads (none for raw points).
    reads: Option<String>,
    /// Its auxiliary fields (fields only: tags need no cursor).
    aux: BTreeSet<String>,
}

/// The `EXPLAIN ANALYZE` answer for `s` on database `db`; `run` runs the
/// statement (its answer is not shown; its error is the statement's).
pub(super) fn explain_analyze(
    t: &TsdbView,
    db: &str,
    s: &Select,
    run: impl FnOnce() -> Result<Value, String>,
) -> Result<Value, String> {
    let planning = Instant::now();
    let db = s.db.as_deref().unwrap_or(db);
    if db.is_empty() {
        return Err("database name required".into());
    }
    let rp = t
        .meta()
        .resolve_rp(db, s.rp.as_deref().unwrap_or(""))
        .map_err(|e| e.to_string())?
        .to_string();
    let shards = t
        .shards_in(db, &rp, s.min, s.max)
        .map_err(|e| e.to_string())?;
    let ids = t.shard_ids_in(db, &rp, s.min, s.max);
    let filter = Filter::new(s.cond.as_ref())?;
    let names = super::select_exec::source_names(t, db, s)?;
    // The names and types of every measurement read.
    let (mut types, mut tags) = (BTreeMap::new(), BTreeSet::new());
    for (_, shard) in &shards {
        for m in &names {
            shard.field_types(m, &mut types);
            shard.tag_keys(m, &mut tags);
        }
    }
    let typed = |name: &str| -> String {
        match types.get(name) {
            Some(ty) => format!("{name}::{ty}"),
            None if tags.contains(name) => format!("{name}::tag"),
            None => name.to_string(),
        }
    };
    let statement = statement_text(s, db, &rp, &types, &tags, &typed);
    let cond_text = s.cond.as_ref().map(|c| cond_text(c, &typed, false));
    let scanners = scanners(s, &types, &tags, &typed);
    let fields: BTreeSet<String> = types.keys().cloned().collect();
    let keys = Keys::Known {
        tags: &tags,
        fields: &fields,
    };
    let cond_fields: BTreeSet<String> = filter
        .fields(&keys)
        .into_iter()
        .map(str::to_string)
        .collect();
    // Each measurement's series in each shard that holds it, listed once
    // for every scanner; those the condition's tags leave out are gone.
    let mut listed: Vec<Listed> = Vec::new();
    for m in &names {
        for ((_, shard), id) in shards.iter().zip(&ids) {
            if !shard.measurements().contains(m) {
                continue;
            }
            let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            shard.series(m, &[], &mut series);
            series.retain(|key, _| filter.series(&series_tags(key), &keys) != Some(false));
            listed.push((m, *id, shard, series.into_iter().collect()));
        }
    }
    let mut scanner_trees = Vec::new();
    for sc in &scanners {
        let mut children = vec![Tree::labels(sc.labels.clone())];
        for (m, id, shard, series) in &listed {
            let started = Instant::now();
            let (mut refs, mut aux, mut conds) = (0u64, 0u64, 0u64);
            // Blocks and their bytes by type.
            let mut blocks: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
            for (key, has) in series {
                let mut read: BTreeSet<&String> = BTreeSet::new();
                for f in sc.reads.iter().filter(|f| has.contains(*f)) {
                    refs += 1;
                    read.insert(f);
                }
                for f in sc.aux.iter().filter(|f| has.contains(*f)) {
                    aux += 1;
                    read.insert(f);
                }
                for f in cond_fields.iter().filter(|f| has.contains(*f)) {
                    conds += 1;
                    read.insert(f);
                }
                for f in read {
                    let c = shard.cost(&format!("{key}{KEY_FIELD_SEPARATOR}{f}"), s.min, s.max);
                    let ty = types.get(f.as_str()).copied().unwrap_or("float");
                    let e = blocks.entry(ty).or_default();
                    e.0 += c.2;
                    e.1 += c.3;
                }
            }
            let mut labels = vec![("measurement", m.to_string()), ("shard_id", id.to_string())];
            if let Some(c) = &cond_text {
                labels.push(("cond", c.clone()));
            }
            let mut kids = vec![
                Tree::labels(labels),
                Tree::leaf("cursors_ref", refs),
                Tree::leaf("cursors_aux", aux),
                Tree::leaf("cursors_cond", conds),
            ];
            for ty in ["float", "integer", "unsigned", "string", "boolean"] {
                let (n, bytes) = blocks.get(ty).copied().unwrap_or_default();
                kids.push(Tree::leaf(&format!("{ty}_blocks_decoded"), n));
                kids.push(Tree::leaf(&format!("{ty}_blocks_size_bytes"), bytes));
            }
            kids.push(Tree::leaf("planning_time", go_duration(started.elapsed())));
            children.push(Tree::branch("create_iterator", kids));
        }
        // A scanner with no iterator is not listed.
        if children.len() > 1 {
            scanner_trees.push(Tree::branch("iterator_scanner", children));
        }
    }
    let planned = planning.elapsed();
    let executing = Instant::now();
    let answer = run()?;
    if let Some(e) = answer.get("error").and_then(Value::as_str) {
        return Err(e.to_string());
    }
    let executed = executing.elapsed();
    let mut cursor = vec![Tree::labels(vec![("statement", statement)])];
    cursor.extend(scanner_trees);
    let select = Tree::branch(
        "select",
        vec![
            Tree::leaf("execution_time", go_duration(executed)),
            Tree::leaf("planning_time", go_duration(planned)),
            Tree::leaf("total_time", go_duration(planned + executed)),
            Tree::branch("build_cursor", cursor),
        ],
    );
    let mut lines = vec![".".to_string()];
    Tree::branch(".", vec![select]).lines(&mut lines, "");
    // A row per line, and an empty one to end, as influxd's.
    lines.push(String::new());
    let values: Vec<Value> = lines.into_iter().map(|l| json!([l])).collect();
    Ok(json!({"series": [{"columns": ["EXPLAIN ANALYZE"], "values": values}]}))
}

/// The scanners influxd builds: one per call of the select list (its
/// expression the call as written), the fields beside a selector as their
/// auxiliary fields; for raw points one, every field read as auxiliary.
fn scanners(
    s: &Select,
    types: &BTreeMap<String, &'static str>,
    tags: &BTreeSet<String>,
    typed: &dyn Fn(&str) -> String,
) -> Vec<Scanner> {
    let mut plain: BTreeSet<String> = BTreeSet::new();
    let mut calls: Vec<(String, String)> = Vec::new();
    for p in &s.fields {
        match p {
            Projection::All => {
                plain.extend(types.keys().cloned());
                plain.extend(tags.iter().cloned());
            }
            Projection::Field(f) => {
                plain.insert(f.clone());
            }
            Projection::Agg(f, field) if field == "*" => calls
                .extend(star_fields(*f, types).map(|fld| (call_text(*f, fld, typed), fld.clone()))),
            Projection::Agg(f, field) => calls.push((call_text(*f, field, typed), field.clone())),
            Projection::Math(e) => {
                let mut leaves = Vec::new();
                e.leaves(&mut leaves);
                for l in leaves {
                    match l {
                        Expr::Call(f, field) => {
                            calls.push((call_text(*f, field, typed), field.clone()))
                        }
                        Expr::Field(f) => {
                            plain.insert(f.clone());
                        }
                        _ => {}
                    }
                }
            }
            Projection::Nested { field, .. } | Projection::Selector { field, .. } => {
                calls.push((projection_text(p, typed), field.clone()));
            }
            Projection::Invalid(_) => {}
        }
    }
    let aux_label = plain
        .iter()
        .map(|n| typed(n))
        .collect::<Vec<_>>()
        .join(", ");
    let aux: BTreeSet<String> = plain
        .iter()
        .filter(|n| types.contains_key(*n))
        .cloned()
        .collect();
    if calls.is_empty() {
        // Nothing known to read: no scanner.
        if !plain
            .iter()
            .any(|n| types.contains_key(n) || tags.contains(n))
        {
            return Vec::new();
        }
        return vec![Scanner {
            labels: vec![("auxiliary_fields", aux_label)],
            reads: None,
            aux,
        }];
    }
    calls
        .into_iter()
        .map(|(expr, field)| {
            let mut labels = vec![("expr", expr)];
            if !plain.is_empty() {
                labels.push(("auxiliary_fields", aux_label.clone()));
            }
            Scanner {
                labels,
                reads: types.contains_key(&field).then_some(field),
                aux: aux.clone(),
            }
        })
        .collect()
}

/// The fields `f(*)` reads: numeric ones for a numeric function.
fn star_fields<'a>(
    f: Func,
    types: &'a BTreeMap<String, &'static str>,
) -> impl Iterator<Item = &'a String> + 'a {
    types
        .iter()
        .filter(move |(_, ty)| {
            !f.numeric()
                || matches!(**ty, "float" | "integer" | "unsigned")
                || (**ty == "boolean" && matches!(f, Func::Min | Func::Max))
        })
        .map(|(name, _)| name)
}

/// The statement as influxd prints it once rewritten: names typed, `*`
/// expanded, sources qualified, time out of the condition.
fn statement_text(
    s: &Select,
    db: &str,
    rp: &str,
    types: &BTreeMap<String, &'static str>,
    tags: &BTreeSet<String>,
    typed: &dyn Fn(&str) -> String,
) -> String {
    let mut fields = Vec::new();
    for (p, alias) in s.fields.iter().zip(&s.aliases) {
        if *p == Projection::All {
            let mut all: Vec<&String> = types.keys().chain(tags.iter()).collect();
            all.sort();
            all.dedup();
            fields.extend(all.into_iter().map(|n| typed(n)));
            continue;
        }
        // `f(*)`: one call per field it takes, named `f_field`.
        if let Projection::Agg(f, field) = p
            && field == "*"
        {
            let name = alias.clone().unwrap_or_else(|| f.name().to_string());
            fields.extend(star_fields(*f, types).map(|fld| {
                format!(
                    "{} AS {}",
                    call_text(*f, fld, typed),
                    super::text::quote_ident(&format!("{name}_{fld}"))
                )
            }));
            continue;
        }
        let mut text = projection_text(p, typed);
        if let Some(a) = alias {
            text.push_str(" AS ");
            text.push_str(&super::text::quote_ident(a));
        }
        fields.push(text);
    }
    // The sources as written (a regular expression kept), qualified.
    let written: Vec<String> = if s.sources.is_empty() {
        vec![super::text::quote_ident(&s.measurement)]
    } else {
        s.sources
            .iter()
            .map(|src| match src {
                Source::Name(n) => super::text::quote_ident(n),
                Source::Regex(r) => format!("/{}/", r.replace('/', "\\/")),
            })
            .collect()
    };
    let from: Vec<String> = written
        .iter()
        .map(|m| {
            format!(
                "{}.{}.{m}",
                super::text::quote_ident(db),
                super::text::quote_ident(rp),
            )
        })
        .collect();
    let mut out = format!("SELECT {} FROM {}", fields.join(", "), from.join(", "));
    if let Some(c) = &s.cond {
        out.push_str(" WHERE ");
        out.push_str(&cond_text(c, typed, false));
    }
    let mut group = Vec::new();
    if let Some((iv, off)) = s.group_time {
        group.push(if off == 0 {
            format!("time({})", duration_literal(iv))
        } else {
            format!("time({}, {})", duration_literal(iv), duration_literal(off))
        });
    }
    match &s.group_tags {
        GroupTags::None => {}
        GroupTags::All => group.push("*".into()),
        GroupTags::Keys(k) => group.extend(k.iter().map(|k| super::text::quote_ident(k))),
    }
    if !group.is_empty() {
        out.push_str(" GROUP BY ");
        out.push_str(&group.join(", "));
    }
    match s.fill {
        Fill::Null => {}
        Fill::None => out.push_str(" fill(none)"),
        Fill::Value(v) => out.push_str(&format!(" fill({})", number_text(v))),
        Fill::Previous => out.push_str(" fill(previous)"),
        Fill::Linear => out.push_str(" fill(linear)"),
    }
    if s.desc {
        out.push_str(" ORDER BY time DESC");
    }
    for (kw, n) in [
        ("LIMIT", s.limit),
        ("OFFSET", s.offset),
        ("SLIMIT", s.slimit),
        ("SOFFSET", s.soffset),
    ] {
        if n > 0 {
            out.push_str(&format!(" {kw} {n}"));
        }
    }
    out
}

/// A projection, names typed.
fn projection_text(p: &Projection, typed: &dyn Fn(&str) -> String) -> String {
    match p {
        Projection::All => "*".into(),
        Projection::Field(f) => typed(f),
        Projection::Agg(f, field) => call_text(*f, field, typed),
        Projection::Math(e) => expr_text(e, typed),
        Projection::Invalid(_) => String::new(),
        Projection::Selector {
            pick,
            field,
            tag,
            n,
        } => {
            let mut args = vec![typed(field)];
            args.extend(tag.iter().map(|t| typed(t)));
            args.extend(n.map(|n| n.to_string()));
            format!("{}({})", pick.name(), args.join(", "))
        }
        Projection::Nested {
            outer,
            inner,
            field,
            unit,
        } => {
            let mut args = vec![match inner {
                Func::Raw => typed(field),
                f => call_text(*f, field, typed),
            }];
            match outer {
                Transform::HoltWinters { h, m, .. } => {
                    args.push(h.to_string());
                    args.push(m.to_string());
                }
                Transform::Indicator(ind) => args.push(ind.period.to_string()),
                Transform::MovingAverage => args.extend(unit.map(|n| n.to_string())),
                _ => args.extend(unit.map(duration_literal)),
            }
            format!("{}({})", outer.name(), args.join(", "))
        }
    }
}

fn call_text(f: Func, field: &str, typed: &dyn Fn(&str) -> String) -> String {
    let arg = typed(field);
    match f {
        Func::CountDistinct => format!("count(distinct({arg}))"),
        Func::Percentile(n) => format!("percentile({arg}, {})", number_text(n)),
        Func::Integral(u) if u != 1_000_000_000 => {
            format!("integral({arg}, {})", duration_literal(u))
        }
        f => format!("{}({arg})", f.name()),
    }
}

/// How tightly an operator binds (influxql's precedence).
fn precedence(op: Op) -> u8 {
    match op {
        Op::Add | Op::Sub => 1,
        Op::Mul | Op::Div | Op::Rem => 2,
    }
}

/// Arithmetic as influxql prints it: parentheses only where they group.
fn expr_text(e: &Expr, typed: &dyn Fn(&str) -> String) -> String {
    let side = |x: &Expr, parent: Op, right: bool| -> String {
        let text = expr_text(x, typed);
        match x {
            Expr::Bin(_, op, _)
                if precedence(*op) < precedence(parent)
                    || (right && precedence(*op) == precedence(parent)) =>
            {
                format!("({text})")
            }
            _ => text,
        }
    };
    match e {
        Expr::Field(f) => typed(f),
        Expr::Call(f, field) => call_text(*f, field, typed),
        Expr::Int(i) => i.to_string(),
        Expr::Float(x) => format!("{x:.3}"),
        Expr::Str(s) => super::text::string_literal(s),
        Expr::Bool(b) => b.to_string(),
        // influxd reads `-x` as `-1 * x`.
        Expr::Neg(x) => format!("-1 * {}", side(x, Op::Mul, true)),
        Expr::Bin(l, op, r) => format!(
            "{} {} {}",
            side(l, *op, false),
            op.symbol(),
            side(r, *op, true)
        ),
        Expr::Undefined(name) => format!("{name}()"),
    }
}

/// A condition as influxql prints it (`in_and`: inside an AND, where an OR
/// needs its parentheses).
fn cond_text(c: &Cond, typed: &dyn Fn(&str) -> String, in_and: bool) -> String {
    match c {
        Cond::And(a, b) => format!(
            "{} AND {}",
            cond_text(a, typed, true),
            cond_text(b, typed, true)
        ),
        Cond::Or(a, b) => {
            let text = format!(
                "{} OR {}",
                cond_text(a, typed, false),
                cond_text(b, typed, false)
            );
            if in_and { format!("({text})") } else { text }
        }
        Cond::Expr { left, op, right } => format!(
            "{} {} {}",
            expr_text(left, typed),
            super::text::op_text(*op),
            expr_text(right, typed)
        ),
        Cond::Cmp { key, op, value } => {
            let value = match value {
                Lit::Num(n) => number_text(*n),
                Lit::Str(s) => super::text::string_literal(s),
                Lit::Bool(b) => b.to_string(),
                Lit::Regex(r) => format!("/{}/", r.replace('/', "\\/")),
            };
            format!("{} {} {value}", typed(key), super::text::op_text(*op))
        }
    }
}

/// A number as influxql prints its literal: an integer bare, a float with
/// three decimals.
fn number_text(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n:.3}")
    }
}

/// A duration literal as influxql prints it: in the largest unit that
/// divides it.
fn duration_literal(ns: i64) -> String {
    const UNITS: [(i64, &str); 8] = [
        (604_800_000_000_000, "w"),
        (86_400_000_000_000, "d"),
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "u"),
        (1, "ns"),
    ];
    if ns == 0 {
        return "0s".into();
    }
    for (unit, name) in UNITS {
        if ns % unit == 0 {
            return format!("{}{name}", ns / unit);
        }
    }
    format!("{ns}ns")
}

/// A duration as Go prints one (`33.743µs`, `1.5ms`, `2s`).
fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    let trim = |x: f64, unit: &str| {
        let s = format!("{x:.3}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        format!("{s}{unit}")
    };
    match ns {
        0 => "0s".into(),
        n if n < 1_000 => format!("{n}ns"),
        n if n < 1_000_000 => trim(n as f64 / 1e3, "µs"),
        n if n < 1_000_000_000 => trim(n as f64 / 1e6, "ms"),
        n => trim(n as f64 / 1e9, "s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_and_influxql_print_them() {
        assert_eq!(go_duration(Duration::from_nanos(33_743)), "33.743µs");
        assert_eq!(go_duration(Duration::from_nanos(1_500_000)), "1.5ms");
        assert_eq!(go_duration(Duration::from_nanos(999)), "999ns");
        assert_eq!(go_duration(Duration::from_secs(2)), "2s");
        assert_eq!(duration_literal(1_000_000_000), "1s");
        assert_eq!(duration_literal(10), "10ns");
        assert_eq!(duration_literal(90_000_000_000), "90s");
        assert_eq!(duration_literal(7 * 86_400_000_000_000), "1w");
    }

    #[test]
    fn arithmetic_and_conditions_print_with_the_parentheses_they_need() {
        let typed = |n: &str| format!("{n}::float");
        let q =
            "SELECT (v + 1) * w, v - (w - 1), -v FROM m WHERE (host = 'a' OR v > 1.5) AND w < 2";
        let Statement::Select(s) = &super::super::parse(q, 0).expect("parses")[0] else {
            panic!("not a select")
        };
        let texts: Vec<String> = s
            .fields
            .iter()
            .map(|p| projection_text(p, &typed))
            .collect();
        assert_eq!(
            texts,
            [
                "(v::float + 1) * w::float",
                "v::float - (w::float - 1)",
                "-1 * v::float"
            ]
        );
        assert_eq!(
            cond_text(s.cond.as_ref().expect("a condition"), &typed, false),
            "(host::float = 'a' OR v::float > 1.500) AND w::float < 2"
        );
    }
}
