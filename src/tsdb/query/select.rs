//! The SELECT statement's clauses.

use super::ast::*;
use super::cond::where_clause;
use super::lexer::{P, Tok};

pub(super) fn select(p: &mut P, now: i64) -> Result<Select, String> {
    let mut fields = Vec::new();
    let mut aliases: Vec<Option<String>> = Vec::new();
    loop {
        fields.push(if p.sym("*") {
            Projection::All
        } else {
            projection(p)?
        });
        aliases.push(if p.kw("AS") { Some(p.ident()?) } else { None });
        if !p.sym(",") {
            break;
        }
    }
    let into_at = p.i;
    let into = if p.kw("INTO") { Some(target(p)?) } else { None };
    let into_span = (into_at + 1, p.i);
    p.expect_kw("FROM")?;
    let from_at = p.i;
    // `FROM m`, or several measurements and regular expressions.
    let mut sources = Vec::new();
    // `FROM (SELECT …)`: a subquery.
    let subquery = if p.sym("(") {
        p.expect_kw("SELECT")?;
        let inner = select(p, now)?;
        if !p.sym(")") {
            return Err(format!("found {}, expected )", p.found()));
        }
        Some(Box::new(inner))
    } else {
        None
    };
    let first = if subquery.is_some() {
        (Target::default(), None)
    } else {
        from_source(p)?
    };
    let from_end = p.i;
    while p.sym(",") {
        sources.push(match from_source(p)? {
            (_, Some(re)) => Source::Regex(re),
            (t, None) => Source::Name(t.measurement),
        });
    }
    let Target {
        db,
        rp,
        measurement,
        ..
    } = match first {
        (t, None) if sources.is_empty() => t,
        (t, re) => {
            let first = re.map_or(Source::Name(t.measurement.clone()), Source::Regex);
            sources.insert(0, first);
            t
        }
    };
    let spans = [into_span, (from_at, from_end)];
    let mut s = Select {
        fields,
        db,
        rp,
        measurement,
        min: i64::MIN,
        max: i64::MAX,
        has_min: false,
        cond: None,
        limit: 0,
        group_time: None,
        group_tags: GroupTags::None,
        fill: Fill::Null,
        aliases,
        desc: false,
        offset: 0,
        slimit: 0,
        soffset: 0,
        slimit_by: None,
        reads: 1,
        into,
        spans,
        sources,
        subquery,
        tz: None,
    };
    let where_at = p.i;
    let (cond, bounds) = where_clause(p, now)?;
    s.cond = cond;
    (s.min, s.max, s.has_min) = (bounds.min, bounds.max, bounds.has_min);
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
                .num()
                .ok()
                .and_then(|n| n.parse().ok())
                .ok_or("expected number argument in fill()")?;
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
        match p.peek() {
            Some(Tok::Num(_)) => p.num()?.parse().map_err(|_| format!("invalid {what}")),
            _ => Err(format!("found {}, expected integer", p.found())),
        }
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
    if p.peek()
        .is_some_and(|t| matches!(t, Tok::Ident(x) if x.eq_ignore_ascii_case("tz")))
    {
        p.i += 1;
        s.tz = Some(time_zone(p)?);
        // Wall-clock times in the condition are the zone's.
        let end = p.i;
        (p.i, p.tz) = (where_at, s.tz);
        let reread = where_clause(p, now);
        (p.i, p.tz) = (end, None);
        let (cond, bounds) = reread?;
        s.cond = cond;
        (s.min, s.max, s.has_min) = (bounds.min, bounds.max, bounds.has_min);
    }
    Ok(s)
}

/// The argument of `tz('America/New_York')` (after `tz`), with influxd's
/// errors.
fn time_zone(p: &mut P) -> Result<chrono_tz::Tz, String> {
    if !p.sym("(") {
        return Err("tz must be a function call".into());
    }
    // The arguments' tokens, up to the closing parenthesis.
    let mut args: Vec<Vec<Tok>> = Vec::new();
    let mut depth = 0usize;
    loop {
        let Some(t) = p.peek().cloned() else {
            return Err(format!("found {}, expected )", p.found()));
        };
        p.i += 1;
        match &t {
            Tok::Sym(x) if x == ")" && depth == 0 => break,
            Tok::Sym(x) if x == "," && depth == 0 => {
                args.push(Vec::new());
                continue;
            }
            Tok::Sym(x) if x == ")" => depth -= 1,
            Tok::Sym(x) if x == "(" => depth += 1,
            _ => {}
        }
        match args.last_mut() {
            Some(a) => a.push(t),
            None => args.push(vec![t]),
        }
    }
    match &args[..] {
        [one] => match &one[..] {
            [Tok::Str(name)] => name
                .parse()
                .map_err(|_| format!("unable to find time zone {name}")),
            _ => Err("expected string argument in tz()".into()),
        },
        _ => Err("tz requires exactly one argument".into()),
    }
}

/// One measurement of FROM: `[[db.]rp.]m`, or `[[db.]rp.]/re/` (the
/// target then names no measurement).
fn from_source(p: &mut P) -> Result<(Target, Option<String>), String> {
    let start = p.i;
    // The qualifiers before a regular expression, if it is one.
    let mut parts: Vec<String> = Vec::new();
    loop {
        if let Some(Tok::Regex(re)) = p.peek().cloned() {
            p.i += 1;
            regex::Regex::new(&re)
                .map_err(|e| format!("invalid regular expression /{re}/: {e}"))?;
            let (db, rp) = match &mut parts[..] {
                [] => (None, None),
                [rp] => (None, Some(std::mem::take(rp))),
                [db, rp] => (Some(std::mem::take(db)), Some(std::mem::take(rp))),
                _ => return Err("a measurement is [db.][rp.]measurement".into()),
            };
            let t = Target {
                db,
                rp: rp.filter(|rp| !rp.is_empty()),
                ..Default::default()
            };
            return Ok((t, Some(re)));
        }
        match p.peek() {
            Some(Tok::Ident(_)) => parts.push(p.ident()?),
            Some(Tok::Sym(s)) if s == "." && !parts.is_empty() => parts.push(String::new()),
            _ => break,
        }
        if !p.sym(".") {
            break;
        }
    }
    p.i = start;
    Ok((target(p)?, None))
}

/// `[[db.]rp.]measurement` (`db..m`: the default retention policy), or
/// `[[db.]rp.]:MEASUREMENT`.
fn target(p: &mut P) -> Result<Target, String> {
    let mut parts = Vec::new();
    let mut each_source = false;
    loop {
        // `:MEASUREMENT` ends a qualified target (alone it is no name).
        if !parts.is_empty() && p.sym(":") {
            match p.ident() {
                Ok(m) if m.eq_ignore_ascii_case("MEASUREMENT") => each_source = true,
                _ => return Err(format!("found {}, expected MEASUREMENT", p.found())),
            }
            parts.push(String::new());
            break;
        }
        parts.push(p.ident()?);
        if !p.sym(".") {
            break;
        }
        while p.peek() == Some(&Tok::Sym(".".into())) {
            p.i += 1;
            parts.push(String::new());
        }
    }
    let mut t = target_of(parts)?;
    t.each_source = each_source;
    Ok(t)
}

/// The target named by `[[db.]rp.]measurement`'s parts.
fn target_of(mut parts: Vec<String>) -> Result<Target, String> {
    Ok(match parts.len() {
        1 => Target {
            measurement: parts.remove(0),
            ..Default::default()
        },
        2 => Target {
            db: None,
            rp: Some(parts.remove(0)),
            measurement: parts.remove(0),
            ..Default::default()
        },
        3 => Target {
            db: Some(parts.remove(0)),
            rp: Some(parts.remove(0)).filter(|rp| !rp.is_empty()),
            measurement: parts.remove(0),
            ..Default::default()
        },
        _ => return Err("a measurement is [db.][rp.]measurement".into()),
    })
}

pub(super) fn aggs_only(fields: &[Projection]) -> bool {
    !fields.is_empty()
        && fields.iter().all(|f| match f {
            Projection::Agg(..) | Projection::Nested { .. } | Projection::Selector { .. } => true,
            Projection::Math(e) => e.has_call(),
            _ => false,
        })
}

/// Whether a projection is a field, a tag, `*` or arithmetic over fields
/// (beside a selector: an auxiliary field).
pub(super) fn is_aux(p: &Projection) -> bool {
    match p {
        Projection::All | Projection::Field(_) => true,
        Projection::Math(e) => !e.has_call(),
        _ => false,
    }
}

/// How many function calls a projection makes.
fn calls(p: &Projection) -> usize {
    match p {
        Projection::Agg(..) | Projection::Nested { .. } | Projection::Selector { .. } => 1,
        Projection::Math(e) => {
            let mut leaves = Vec::new();
            e.leaves(&mut leaves);
            leaves
                .iter()
                .filter(|l| matches!(l, Expr::Call(..) | Expr::Undefined(_)))
                .count()
        }
        Projection::All | Projection::Field(_) | Projection::Invalid(_) => 0,
    }
}

/// Whether a projection calls a selector of one point of a field
/// (`first`, `last`, `min`, `max`, `percentile`, arithmetic over one of
/// them) or of several (`top`, `bottom`, `sample`): what may stand beside
/// auxiliary fields.
pub(super) fn selector_call(p: &Projection) -> bool {
    let one = |f: &Func, field: &str| {
        field != "*"
            && matches!(
                f,
                Func::First | Func::Last | Func::Min | Func::Max | Func::Percentile(_)
            )
    };
    match p {
        Projection::Agg(f, field) => one(f, field),
        Projection::Selector { field, .. } => field != "*",
        Projection::Math(e) => {
            let mut leaves = Vec::new();
            e.leaves(&mut leaves);
            matches!(&leaves[..], [Expr::Call(f, field)] if one(f, field))
        }
        _ => false,
    }
}

/// Whether a SELECT has auxiliary fields beside its calls (checked by
/// `check`: beside one selector).
pub(super) fn with_aux(fields: &[Projection]) -> bool {
    fields.iter().any(is_aux) && fields.iter().any(|f| calls(f) > 0)
}

/// One projection: a field, an aggregate, a transformation of an
/// aggregate, or arithmetic over fields or aggregates.
fn projection(p: &mut P) -> Result<Projection, String> {
    let transform = match (p.peek(), p.t.get(p.i + 1)) {
        (Some(Tok::Ident(name)), Some(Tok::Sym(paren))) if paren == "(" => {
            Transform::from_name(name)
        }
        _ => None,
    };
    let selector = match (p.peek(), p.t.get(p.i + 1)) {
        (Some(Tok::Ident(name)), Some(Tok::Sym(paren))) if paren == "(" => {
            match name.to_ascii_lowercase().as_str() {
                "top" => Some(Pick::Top),
                "bottom" => Some(Pick::Bottom),
                "sample" => Some(Pick::Sample),
                _ => None,
            }
        }
        _ => None,
    };
    if let Some(pick) = selector {
        p.i += 2;
        let name = pick.name();
        let field = p.ident()?;
        // The arguments after the field: tag names and numbers.
        let mut tags = Vec::new();
        let mut nums: Vec<String> = Vec::new();
        while p.sym(",") {
            let neg = p.sym("-");
            match p.peek().cloned() {
                Some(Tok::Num(x)) => {
                    p.i += 1;
                    nums.push(if neg { format!("-{x}") } else { x });
                }
                _ => tags.push(p.ident()?),
            }
        }
        if !p.sym(")") {
            return Err(format!("expected ), found {}", p.found()));
        }
        let got = 1 + tags.len() + nums.len();
        let n = nums.last().map(|x| x.parse::<i64>());
        let invalid = match (pick, &n) {
            (Pick::Sample, _) if got != 2 => Some(format!(
                "invalid number of arguments for sample, expected 2, got {got}"
            )),
            (Pick::Sample, Some(Err(_)) | None) => {
                Some("expected integer argument in sample()".to_string())
            }
            (_, Some(Err(_))) => Some(format!(
                "expected integer as last argument in {name}(), found {:.3}",
                nums.last()
                    .and_then(|x| x.parse::<f64>().ok())
                    .unwrap_or(0.0)
            )),
            _ => None,
        };
        if let Some(e) = invalid {
            return Ok(Projection::Invalid(e));
        }
        return Ok(Projection::Selector {
            pick,
            field,
            tag: tags.pop(),
            n: n.and_then(Result::ok),
        });
    }
    if let Some(outer) = transform {
        p.i += 2;
        let n = nested(p, outer)?;
        if matches!(p.peek(), Some(Tok::Sym(s)) if ["+", "-", "*", "/", "%"].contains(&s.as_str()))
        {
            return Err(format!("{}() cannot take part in arithmetic", outer.name()));
        }
        return Ok(n);
    }
    Ok(match additive(p)? {
        Expr::Field(f) => Projection::Field(f),
        Expr::Call(f, field) => Projection::Agg(f, field),
        e => Projection::Math(e),
    })
}

pub(super) fn additive(p: &mut P) -> Result<Expr, String> {
    let mut e = multiplicative(p)?;
    loop {
        let op = if p.sym("+") {
            Op::Add
        } else if p.sym("-") {
            Op::Sub
        } else {
            return Ok(e);
        };
        e = Expr::Bin(Box::new(e), op, Box::new(multiplicative(p)?));
    }
}

fn multiplicative(p: &mut P) -> Result<Expr, String> {
    let mut e = unary(p)?;
    loop {
        let op = if p.sym("*") {
            Op::Mul
        } else if p.sym("/") {
            Op::Div
        } else if p.sym("%") {
            Op::Rem
        } else {
            return Ok(e);
        };
        e = Expr::Bin(Box::new(e), op, Box::new(unary(p)?));
    }
}

fn unary(p: &mut P) -> Result<Expr, String> {
    if p.sym("-") {
        // Only a name, a number, a duration or `(` may follow `-` (influxd
        // places a string's error at the sign).
        const AFTER_SIGN: &str = "expected identifier, number, duration, (";
        match p.peek().cloned() {
            Some(Tok::Str(s)) => {
                p.i -= 1;
                return Err(format!("found {s}, {AFTER_SIGN}"));
            }
            Some(Tok::Ident(b))
                if b.eq_ignore_ascii_case("true") || b.eq_ignore_ascii_case("false") =>
            {
                return Err(format!("found {}, {AFTER_SIGN}", b.to_ascii_uppercase()));
            }
            _ => {}
        }
        return Ok(match unary(p)? {
            Expr::Int(i) => Expr::Int(i.wrapping_neg()),
            Expr::Float(f) => Expr::Float(-f),
            e => Expr::Neg(Box::new(e)),
        });
    }
    if p.sym("(") {
        let e = additive(p)?;
        if !p.sym(")") {
            return Err(format!("found {}, expected )", p.found()));
        }
        return Ok(e);
    }
    match p.peek().cloned() {
        Some(Tok::Str(s)) => {
            p.i += 1;
            return Ok(Expr::Str(s));
        }
        Some(Tok::Ident(b))
            if b.eq_ignore_ascii_case("true") || b.eq_ignore_ascii_case("false") =>
        {
            p.i += 1;
            return Ok(Expr::Bool(b.eq_ignore_ascii_case("true")));
        }
        _ => {}
    }
    if let Some(Tok::Num(n)) = p.peek().cloned() {
        p.i += 1;
        return match n.parse::<i64>() {
            Ok(i) => Ok(Expr::Int(i)),
            Err(_) => n
                .parse::<f64>()
                .map(Expr::Float)
                .map_err(|_| format!("invalid number {n}")),
        };
    }
    let name = p.ident()?;
    if !p.sym("(") {
        return Ok(Expr::Field(name));
    }
    call(p, &name)
}

/// `func(field)` (the `(` already read): an aggregate or selector.
fn call(p: &mut P, name: &str) -> Result<Expr, String> {
    let Some(mut f) = Func::from_name(name) else {
        // Known to be undefined when the statement runs, as influxd's.
        let mut depth = 1;
        while depth > 0 {
            match p.peek() {
                None => return Err("found EOF, expected )".into()),
                Some(Tok::Sym(s)) if s == "(" => depth += 1,
                Some(Tok::Sym(s)) if s == ")" => depth -= 1,
                _ => {}
            }
            p.i += 1;
        }
        return Ok(Expr::Undefined(name.to_string()));
    };
    // count(distinct(field))
    if f == Func::Count
        && matches!(p.peek(), Some(Tok::Ident(d)) if d.eq_ignore_ascii_case("distinct"))
        && p.t.get(p.i + 1) == Some(&Tok::Sym("(".into()))
    {
        p.i += 2;
        let field = p.ident()?;
        if !(p.sym(")") && p.sym(")")) {
            return Err(format!("expected ), found {}", p.found()));
        }
        return Ok(Expr::Call(Func::CountDistinct, field));
    }
    let arg = if p.sym("*") {
        "*".to_string()
    } else {
        p.ident()?
    };
    if let Func::Integral(_) = f
        && p.sym(",")
    {
        f = Func::Integral(p.duration()?.max(1));
    }
    // `func(*)`: the function over every field (numeric ones for the
    // numeric functions).
    let over_all = matches!(
        f,
        Func::Count
            | Func::Mean
            | Func::Sum
            | Func::Median
            | Func::Spread
            | Func::Stddev
            | Func::Min
            | Func::Max
            | Func::First
            | Func::Last
            | Func::Mode
    );
    if arg == "*" && !over_all {
        return Err(format!("{}(*) is not supported", f.name()));
    }
    if let Func::Percentile(_) = f {
        if !p.sym(",") {
            return Err("percentile() takes a field and a number".into());
        }
        let n: f64 = p
            .num()?
            .parse()
            .map_err(|_| "percentile() takes a number".to_string())?;
        f = Func::Percentile(n);
    }
    if !p.sym(")") {
        return Err(format!("expected ), found {}", p.found()));
    }
    Ok(Expr::Call(f, arg))
}

/// `transform(agg(field)[, n])` (the `transform(` already read).
fn nested(p: &mut P, outer: Transform) -> Result<Projection, String> {
    let o = outer.name();
    let inner = p.ident()?;
    // `transform(field, …)`: of the raw points.
    let (inner, field) = if p.sym("(") {
        let Expr::Call(inner, field) = call(p, &inner)? else {
            return Err(format!("{o}() takes an aggregate"));
        };
        (inner, field)
    } else {
        (Func::Raw, inner)
    };
    if let Transform::Indicator(ind) = outer {
        return indicator_args(p, ind, inner, field);
    }
    if let Transform::HoltWinters { fit, .. } = outer {
        // Both counts; influxd's errors are the statement's.
        let mut args: Vec<Option<i64>> = Vec::new();
        while p.sym(",") {
            let neg = p.sym("-");
            args.push(match p.peek().cloned() {
                Some(Tok::Num(x)) => {
                    p.i += 1;
                    x.parse::<i64>().ok().map(|n| if neg { -n } else { n })
                }
                _ => {
                    p.i += 1;
                    None
                }
            });
        }
        if !p.sym(")") {
            return Err(format!("expected ), found {}", p.found()));
        }
        let counts = || -> Result<(i64, i64), String> {
            let [h, m] = args[..] else {
                return Err(format!(
                    "invalid number of arguments for {o}, expected 3, got {}",
                    args.len() + 1
                ));
            };
            let h = h.ok_or(format!("expected integer argument as second arg in {o}"))?;
            if h <= 0 {
                return Err(format!("second arg to {o} must be greater than 0, got {h}"));
            }
            let m = m.ok_or(format!("expected integer argument as third arg in {o}"))?;
            if m < 0 {
                return Err(format!("third arg to {o} cannot be negative, got {m}"));
            }
            if inner == Func::Raw {
                return Err(format!("must use aggregate function with {o}"));
            }
            Ok((h, m))
        };
        return Ok(match counts() {
            Ok((h, m)) => Projection::Nested {
                outer: Transform::HoltWinters { h, m, fit },
                inner,
                field,
                unit: None,
            },
            Err(e) => Projection::Invalid(e),
        });
    }
    // A unit (derivative, elapsed) or a window (moving_average).
    let unit = if !p.sym(",") {
        None
    } else if outer == Transform::MovingAverage {
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
    if outer == Transform::MovingAverage && unit.is_none() {
        return Err("moving_average() takes a number of points".into());
    }
    if !p.sym(")") {
        return Err(format!("expected ), found {}", p.found()));
    }
    Ok(Projection::Nested {
        outer,
        inner,
        field,
        unit,
    })
}

/// The arguments of an indicator after its column (`, period[, hold[,
/// 'warmup']])`, through the closing parenthesis); influxd's errors for
/// bad ones are the statement's.
fn indicator_args(
    p: &mut P,
    mut ind: super::indicators::Indicator,
    inner: Func,
    field: String,
) -> Result<Projection, String> {
    use super::indicators::{IndicatorKind, Warmup};
    enum Arg {
        Int(i64),
        Str(String),
        Other,
    }
    let mut args = Vec::new();
    while p.sym(",") {
        let neg = p.sym("-");
        let t = p.peek().cloned();
        p.i += 1;
        args.push(match t {
            Some(Tok::Num(x)) => x
                .parse::<i64>()
                .map_or(Arg::Other, |n| Arg::Int(if neg { -n } else { n })),
            Some(Tok::Str(x)) => Arg::Str(x),
            _ => Arg::Other,
        });
    }
    if !p.sym(")") {
        return Err(format!("expected ), found {}", p.found()));
    }
    let name = ind.kind.name();
    let got = args.len() + 1;
    let max = ind.kind.max_args();
    let mut checked = || -> Result<super::indicators::Indicator, String> {
        if !(2..=max).contains(&got) {
            return Err(format!(
                "invalid number of arguments for {name}, expected at least 2 but no more than {max}, got {got}"
            ));
        }
        match args[0] {
            Arg::Int(n) if n < 1 => {
                return Err(format!("{name} period must be greater than or equal to 1"));
            }
            Arg::Int(n) => ind.period = n,
            _ => return Err(format!("{name} period must be an integer")),
        }
        match args.get(1) {
            None => {}
            Some(Arg::Int(h)) => {
                if ind.kind == IndicatorKind::Trix && *h < 1 && *h != -1 {
                    return Err(format!(
                        "{name} hold period must be greater than or equal to 1"
                    ));
                }
                if *h < 0 && *h != -1 {
                    return Err(format!(
                        "{name} hold period must be greater than or equal to 0"
                    ));
                }
                ind.hold = *h;
            }
            Some(_) => return Err(format!("{name} hold period must be an integer")),
        }
        let cmo = ind.kind == IndicatorKind::Cmo;
        match args.get(2) {
            None => {}
            Some(Arg::Str(w)) => {
                ind.warmup = match w.as_str() {
                    "exponential" => Warmup::Exponential,
                    "simple" => Warmup::Simple,
                    "none" if cmo => Warmup::None,
                    _ if cmo => {
                        return Err(format!(
                            "{name} warmup type must be one of: 'none' 'exponential' 'simple'"
                        ));
                    }
                    _ => {
                        return Err(format!(
                            "{name} warmup type must be one of: 'exponential' 'simple'"
                        ));
                    }
                }
            }
            Some(_) => return Err(format!("{name} warmup type must be a string")),
        }
        Ok(ind)
    };
    Ok(match checked() {
        Ok(ind) => Projection::Nested {
            outer: Transform::Indicator(ind),
            inner,
            field,
            unit: None,
        },
        Err(e) => Projection::Invalid(e),
    })
}

/// Whether influxql's reduction leaves a literal of `e`: numbers under
/// arithmetic, strings joined by `+`.
fn folds_to_literal(e: &Expr) -> bool {
    match e {
        Expr::Int(_) | Expr::Float(_) | Expr::Str(_) | Expr::Bool(_) => true,
        Expr::Neg(x) => folds_to_number(x),
        Expr::Bin(l, op, r) => {
            (folds_to_number(l) && folds_to_number(r))
                || (*op == Op::Add && folds_to_string(l) && folds_to_string(r))
        }
        _ => false,
    }
}

fn folds_to_number(e: &Expr) -> bool {
    match e {
        Expr::Int(_) | Expr::Float(_) => true,
        Expr::Neg(x) => folds_to_number(x),
        Expr::Bin(l, _, r) => folds_to_number(l) && folds_to_number(r),
        _ => false,
    }
}

fn folds_to_string(e: &Expr) -> bool {
    match e {
        Expr::Str(_) => true,
        Expr::Bin(l, Op::Add, r) => folds_to_string(l) && folds_to_string(r),
        _ => false,
    }
}

/// influxd's compilation of arithmetic in a projection: a side that is a
/// literal is skipped, two literals that do not fold are refused, an
/// unknown function is named.
fn compile_math(e: &Expr) -> Result<(), String> {
    match e {
        Expr::Undefined(name) => Err(format!("undefined function {name}()")),
        Expr::Neg(x) => compile_math(x),
        Expr::Bin(l, _, r) => match (folds_to_literal(l), folds_to_literal(r)) {
            (true, true) => Err("cannot perform a binary expression on two literals".into()),
            (true, false) => compile_math(r),
            (false, true) => compile_math(l),
            (false, false) => compile_math(l).and_then(|()| compile_math(r)),
        },
        _ => Ok(()),
    }
}

/// influxd's refusal of `distinct()` beside anything.
const DISTINCT_ALONE: &str =
    "aggregate function distinct() cannot be combined with other functions or fields";

/// The checks influxd makes when a SELECT runs (its errors are the
/// statement's, not the request's).
pub(super) fn check(s: &Select) -> Result<(), String> {
    // Each projection is compiled in turn; the first error is the
    // statement's.
    for f in &s.fields {
        match f {
            Projection::Invalid(e) => return Err(e.clone()),
            Projection::Math(e) if folds_to_literal(e) => {
                return Err("field must contain at least one variable".into());
            }
            Projection::Math(e) => compile_math(e)?,
            _ => {}
        }
    }
    let fields = &s.fields;
    let aggs = fields
        .iter()
        .filter(|f| aggs_only(std::slice::from_ref(f)))
        .count();
    let nested = fields
        .iter()
        .filter(|f| matches!(f, Projection::Nested { .. }))
        .count();
    let mixed = fields
        .iter()
        .any(|f| matches!(f, Projection::Math(e) if e.has_call() && e.has_field()));
    let calls: usize = fields.iter().map(calls).sum();
    let distinct = fields
        .iter()
        .any(|f| matches!(f, Projection::Agg(Func::Distinct, _)));
    if with_aux(fields) {
        // influxd's order: top/bottom beside other calls, distinct, then
        // auxiliary fields beside anything but one selector.
        if let Some(Projection::Selector { pick, .. }) = fields.iter().find(|f| {
            matches!(
                f,
                Projection::Selector {
                    pick: Pick::Top | Pick::Bottom,
                    ..
                }
            )
        }) && calls > 1
        {
            return Err(format!(
                "selector function {}() cannot be combined with other functions",
                pick.name()
            ));
        }
        if distinct {
            return Err(DISTINCT_ALONE.into());
        }
        if mixed || !fields.iter().all(|f| is_aux(f) || selector_call(f)) {
            return Err("mixing aggregate and non-aggregate queries is not supported".into());
        }
        if calls > 1 {
            return Err(
                "mixing multiple selector functions with tags or fields is not supported".into(),
            );
        }
    } else if mixed || (aggs > 0 && aggs != fields.len()) {
        return Err("mixing aggregate and non-aggregate queries is not supported".into());
    }
    // Transformations (of raw points or of aggregates) may stand beside
    // aggregates, nothing else.
    let beside = fields.iter().any(|f| match f {
        Projection::Nested { .. } | Projection::Agg(..) => false,
        Projection::Math(e) => !e.has_call(),
        _ => true,
    });
    if nested > 0 && nested != fields.len() && beside {
        return Err("mixing transformations with other projections is not supported".into());
    }
    // top() and bottom() are named first: sample() may stand beside other
    // functions (see `zip`), they may not.
    let alone = |f: &&Projection| {
        matches!(
            f,
            Projection::Selector {
                pick: Pick::Top | Pick::Bottom,
                ..
            }
        )
    };
    if let Some(Projection::Selector { pick, n, tag, .. }) =
        fields.iter().find(alone).or_else(|| {
            fields
                .iter()
                .find(|f| matches!(f, Projection::Selector { .. }))
        })
    {
        let name = pick.name();
        if calls > 1 {
            return Err(format!(
                "selector function {name}() cannot be combined with other functions"
            ));
        }
        let got = 1 + usize::from(tag.is_some()) + usize::from(n.is_some());
        match (pick, n) {
            (Pick::Sample, Some(n)) if *n < 1 => {
                return Err(format!("sample window must be greater than 1, got {n}"));
            }
            (_, None) => {
                return Err(format!(
                    "invalid number of arguments for {name}, expected at least 2, got {got}"
                ));
            }
            (_, Some(n)) if *n < 1 => {
                return Err(format!("limit ({n}) in {name} function must be at least 1"));
            }
            (Pick::Top | Pick::Bottom, Some(n)) if s.limit > 0 && *n > s.limit as i64 => {
                return Err(format!(
                    "limit ({n}) in {name} function can not be larger than the LIMIT ({}) in the select statement",
                    s.limit
                ));
            }
            _ => {}
        }
    }
    if distinct && fields.len() > 1 {
        return Err(DISTINCT_ALONE.into());
    }
    if s.group_time.is_some() && !aggs_only(fields) && !with_aux(fields) {
        return Err("GROUP BY requires at least one aggregate function".into());
    }
    for f in fields {
        match f {
            Projection::Nested { outer, inner, .. }
                if *inner != Func::Raw && s.group_time.is_none() =>
            {
                return Err(format!(
                    "{} aggregate requires a GROUP BY interval",
                    outer.name()
                ));
            }
            Projection::Nested {
                outer,
                inner: Func::Raw,
                ..
            } if s.group_time.is_some() => {
                return Err(format!(
                    "aggregate function required inside the call to {}",
                    outer.name()
                ));
            }
            _ => {}
        }
    }
    Ok(())
}
