//! The SELECT statement's clauses.

use super::ast::*;
use super::lexer::{P, Tok, parse_duration};
use super::parser::regex_cond;
use crate::tsdb::timefmt::parse_rfc3339;

pub(super) fn select(p: &mut P, now: i64) -> Result<Select, String> {
    let mut fields = Vec::new();
    let mut aliases: Vec<Option<String>> = Vec::new();
    loop {
        if p.sym("*") {
            fields.push(Projection::All);
        } else {
            let name = p.ident()?;
            if p.sym("(") && TRANSFORMS.contains(&name.to_ascii_lowercase().as_str()) {
                let outer = name.to_ascii_lowercase();
                let inner = p.ident()?;
                if !p.sym("(") {
                    return Err(format!(
                        "{outer}() of raw points is not supported: use {outer}(<aggregate>(field)) with GROUP BY time(…)"
                    ));
                }
                let field = p.ident()?;
                if !p.sym(")") {
                    return Err(format!("expected ), found {}", p.found()));
                }
                // A unit (derivative, elapsed) or a window (moving_average).
                let unit = if !p.sym(",") {
                    None
                } else if outer == "moving_average" {
                    let n: i64 = p
                        .num()?
                        .parse()
                        .map_err(|_| "moving_average() takes a number of points".to_string())?;
                    if n < 1 {
                        return Err("moving_average() window must be at least 1".into());
                    }
                    Some(n)
                } else {
                    Some(p.duration()?)
                };
                if outer == "moving_average" && unit.is_none() {
                    return Err("moving_average() takes a number of points".into());
                }
                if !p.sym(")") {
                    return Err(format!("expected ), found {}", p.found()));
                }
                fields.push(Projection::Nested {
                    outer,
                    inner: inner.to_ascii_lowercase(),
                    field,
                    unit,
                });
            } else if p.t.get(p.i.wrapping_sub(1)) == Some(&Tok::Sym("(".into())) {
                let f = name.to_ascii_lowercase();
                if ![
                    "count",
                    "sum",
                    "min",
                    "max",
                    "mean",
                    "first",
                    "last",
                    "median",
                    "spread",
                    "stddev",
                    "percentile",
                ]
                .contains(&f.as_str())
                {
                    return Err(format!("unsupported function {name}()"));
                }
                let arg = if p.sym("*") {
                    "*".to_string()
                } else {
                    p.ident()?
                };
                if arg == "*" && f != "count" {
                    return Err(format!("{f}(*) is not supported"));
                }
                // percentile(field, N): N rides in the function's name.
                let f = if f == "percentile" {
                    if !p.sym(",") {
                        return Err("percentile() takes a field and a number".into());
                    }
                    let n: f64 = p
                        .num()?
                        .parse()
                        .map_err(|_| "percentile() takes a number".to_string())?;
                    format!("percentile:{n}")
                } else {
                    f
                };
                if !p.sym(")") {
                    return Err(format!("expected ), found {}", p.found()));
                }
                fields.push(Projection::Agg(f, arg));
            } else {
                fields.push(Projection::Field(name));
            }
        }
        aliases.resize(fields.len() - 1, None);
        aliases.push(if p.kw("AS") { Some(p.ident()?) } else { None });
        if !p.sym(",") {
            break;
        }
    }
    let aggs = fields
        .iter()
        .filter(|f| matches!(f, Projection::Agg(..) | Projection::Nested { .. }))
        .count();
    let nested = fields
        .iter()
        .filter(|f| matches!(f, Projection::Nested { .. }))
        .count();
    if nested > 0 && nested != fields.len() {
        return Err("mixing transformations with other projections is not supported".into());
    }
    if aggs > 0 && aggs != fields.len() {
        return Err("mixing aggregate and non-aggregate queries is not supported".into());
    }
    p.expect_kw("FROM")?;
    let mut parts = vec![p.ident()?];
    while p.sym(".") {
        // `db..m`: the database's default retention policy.
        if p.peek() == Some(&Tok::Sym(".".into())) {
            parts.push(String::new());
            continue;
        }
        parts.push(p.ident()?);
    }
    let (db, rp, measurement) = match parts.len() {
        1 => (None, None, parts.remove(0)),
        2 => (None, Some(parts.remove(0)), parts.remove(0)),
        3 => (
            Some(parts.remove(0)),
            Some(parts.remove(0)).filter(|rp| !rp.is_empty()),
            parts.remove(0),
        ),
        _ => return Err("FROM takes [db.][rp.]measurement".into()),
    };
    let mut s = Select {
        fields,
        db,
        rp,
        measurement,
        min: i64::MIN,
        max: i64::MAX,
        has_min: false,
        tags: Vec::new(),
        limit: 0,
        group_time: None,
        group_tags: GroupTags::None,
        fill: Fill::Null,
        field_conds: Vec::new(),
        aliases,
        desc: false,
        offset: 0,
        slimit: 0,
        soffset: 0,
    };
    if p.kw("WHERE") {
        loop {
            let lhs = p.ident()?;
            let op = match p.peek().cloned() {
                Some(Tok::Sym(o))
                    if ["=", "!=", "<>", "<", "<=", ">", ">=", "=~", "!~"]
                        .contains(&o.as_str()) =>
                {
                    p.i += 1;
                    o
                }
                _ => return Err(format!("expected a comparison, found {}", p.found())),
            };
            if !lhs.eq_ignore_ascii_case("time") && (op == "=~" || op == "!~") {
                s.tags.push(regex_cond(p, lhs, &op)?);
            } else if lhs.eq_ignore_ascii_case("time") {
                let t = time_literal(p, now)?;
                match op.as_str() {
                    ">" => s.min = s.min.max(t.saturating_add(1)),
                    ">=" => s.min = s.min.max(t),
                    "<" => s.max = s.max.min(t.saturating_sub(1)),
                    "<=" => s.max = s.max.min(t),
                    "=" => {
                        s.min = s.min.max(t);
                        s.max = s.max.min(t);
                    }
                    _ => return Err(format!("time does not support {op}")),
                }
                if matches!(op.as_str(), ">" | ">=" | "=") {
                    s.has_min = true;
                }
            } else {
                // A string compared with = or != is a tag condition (or a
                // string field's, decided when the series are known); a
                // number or boolean is a field condition.
                let neg = p.sym("-");
                let value = match p.peek().cloned() {
                    Some(Tok::Str(v)) if !neg => {
                        p.i += 1;
                        FieldLit::Str(v)
                    }
                    Some(Tok::Num(n)) => {
                        p.i += 1;
                        let x: f64 = n.parse().map_err(|_| format!("invalid number {n}"))?;
                        FieldLit::Num(if neg { -x } else { x })
                    }
                    Some(Tok::Ident(b))
                        if !neg
                            && (b.eq_ignore_ascii_case("true")
                                || b.eq_ignore_ascii_case("false")) =>
                    {
                        p.i += 1;
                        FieldLit::Bool(b.eq_ignore_ascii_case("true"))
                    }
                    _ => {
                        return Err(format!(
                            "expected a string, number or boolean after {lhs} {op}, found {}",
                            p.found()
                        ));
                    }
                };
                match value {
                    FieldLit::Str(v) if matches!(op.as_str(), "=" | "!=" | "<>") => {
                        s.tags.push(TagCond {
                            key: lhs,
                            eq: op == "=",
                            value: v,
                            regex: false,
                        });
                    }
                    value => s.field_conds.push(FieldCond {
                        key: lhs,
                        op: if op == "<>" { "!=".into() } else { op },
                        value,
                    }),
                }
            }
            if !p.kw("AND") {
                break;
            }
        }
    }
    if p.kw("GROUP") {
        p.expect_kw("BY")?;
        loop {
            if p.peek()
                .is_some_and(|t| matches!(t, Tok::Ident(x) if x.eq_ignore_ascii_case("time")))
                && p.t.get(p.i + 1) == Some(&Tok::Sym("(".into()))
            {
                p.i += 2;
                let interval = p.duration()?;
                if interval <= 0 {
                    return Err("time dimension must have a positive duration".into());
                }
                let offset = if p.sym(",") {
                    let neg = p.sym("-");
                    let d = p.duration()?;
                    if neg { -d } else { d }
                } else {
                    0
                };
                if !p.sym(")") {
                    return Err(format!("found {}, expected )", p.found()));
                }
                s.group_time = Some((interval, offset.rem_euclid(interval)));
            } else if p.sym("*") {
                s.group_tags = GroupTags::All;
            } else {
                let key = p.ident()?;
                match &mut s.group_tags {
                    GroupTags::Keys(k) => k.push(key),
                    GroupTags::None => s.group_tags = GroupTags::Keys(vec![key]),
                    GroupTags::All => {}
                }
            }
            if !p.sym(",") {
                break;
            }
        }
        if s.group_time.is_some() && !aggs_only(&s.fields) {
            return Err("GROUP BY requires at least one aggregate function".into());
        }
    }
    if s.group_time.is_none()
        && s.fields
            .iter()
            .any(|f| matches!(f, Projection::Nested { .. }))
    {
        return Err("a transformation of an aggregate needs GROUP BY time(…)".into());
    }
    if p.kw("FILL") {
        if !p.sym("(") {
            return Err(format!("found {}, expected (", p.found()));
        }
        s.fill = if p.kw("NULL") {
            Fill::Null
        } else if p.kw("NONE") {
            Fill::None
        } else if p.kw("PREVIOUS") {
            Fill::Previous
        } else if p.kw("LINEAR") {
            Fill::Linear
        } else {
            let neg = p.sym("-");
            let n: f64 = p
                .num()?
                .parse()
                .map_err(|_| "fill takes null, none, previous, linear or a number".to_string())?;
            Fill::Value(if neg { -n } else { n })
        };
        if !p.sym(")") {
            return Err(format!("found {}, expected )", p.found()));
        }
    }
    if p.kw("ORDER") {
        p.expect_kw("BY")?;
        if !p.kw("TIME") {
            return Err(format!(
                "only ORDER BY time supported at this time, found {}",
                p.found()
            ));
        }
        s.desc = p.kw("DESC");
        if !s.desc {
            p.kw("ASC");
        }
    }
    let count = |p: &mut P, what: &str| -> Result<usize, String> {
        p.num()?.parse().map_err(|_| format!("invalid {what}"))
    };
    if p.kw("LIMIT") {
        s.limit = count(p, "LIMIT")?;
    }
    if p.kw("OFFSET") {
        s.offset = count(p, "OFFSET")?;
    }
    if p.kw("SLIMIT") {
        s.slimit = count(p, "SLIMIT")?;
    }
    if p.kw("SOFFSET") {
        s.soffset = count(p, "SOFFSET")?;
    }
    Ok(s)
}

pub(super) fn aggs_only(fields: &[Projection]) -> bool {
    !fields.is_empty()
        && fields
            .iter()
            .all(|f| matches!(f, Projection::Agg(..) | Projection::Nested { .. }))
}

pub(super) fn time_literal(p: &mut P, now: i64) -> Result<i64, String> {
    match p.peek().cloned() {
        Some(Tok::Str(s)) => {
            p.i += 1;
            // RFC3339, or influxd's `2006-01-02 15:04:05[.999]` and
            // `2006-01-02` (UTC).
            parse_rfc3339(&s)
                .or_else(|| parse_rfc3339(&format!("{s}Z")))
                .or_else(|| parse_rfc3339(&format!("{s}T00:00:00Z")))
                .ok_or_else(|| format!("invalid time {s:?}"))
        }
        Some(Tok::Sym(m)) if m == "-" => {
            p.i += 1;
            p.num()?
                .parse::<i64>()
                .map(|n| -n)
                .map_err(|_| "invalid time".into())
        }
        Some(Tok::Num(n)) => {
            p.i += 1;
            // An integer (ns), or a duration literal since the epoch
            // (`1600000000000ms`, as Grafana sends).
            n.parse::<i64>()
                .or_else(|_| parse_duration(&n))
                .map_err(|_| format!("invalid time {n}"))
        }
        Some(Tok::Ident(f)) if f.eq_ignore_ascii_case("now") => {
            p.i += 1;
            if !(p.sym("(") && p.sym(")")) {
                return Err("expected now()".into());
            }
            let mut t = now;
            if p.sym("-") {
                t = t.saturating_sub(parse_duration(&p.num()?)?);
            } else if p.sym("+") {
                t = t.saturating_add(parse_duration(&p.num()?)?);
            }
            Ok(t)
        }
        _ => Err(format!("expected a time, found {}", p.found())),
    }
}
