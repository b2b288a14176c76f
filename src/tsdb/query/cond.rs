//! The WHERE clause: a condition on tags and fields, with the time
//! comparisons taken out into bounds wherever they stand (influxd drops a
//! time comparison from an `OR` and applies it to the whole statement).

use super::ast::{CmpOp, Cond, Expr, Lit};
use super::lexer::{P, Tok, parse_duration};
use crate::tsdb::timefmt::parse_rfc3339;

/// Inclusive time bounds of a WHERE clause.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    /// First time (inclusive).
    pub min: i64,
    /// Last time (inclusive).
    pub max: i64,
    /// Whether a lower bound was given.
    pub has_min: bool,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            min: i64::MIN,
            max: i64::MAX,
            has_min: false,
        }
    }
}

/// `WHERE <condition>` if present: the condition without its time
/// comparisons, and their bounds.
pub(super) fn where_clause(p: &mut P, now: i64) -> Result<(Option<Cond>, Bounds), String> {
    let mut b = Bounds::default();
    if !p.kw("WHERE") {
        return Ok((None, b));
    }
    let c = or_expr(p, now, &mut b)?;
    Ok((c, b))
}

fn or_expr(p: &mut P, now: i64, b: &mut Bounds) -> Result<Option<Cond>, String> {
    let mut left = and_expr(p, now, b)?;
    while p.kw("OR") {
        let right = and_expr(p, now, b)?;
        left = join(left, right, |x, y| Cond::Or(Box::new(x), Box::new(y)));
    }
    Ok(left)
}

fn and_expr(p: &mut P, now: i64, b: &mut Bounds) -> Result<Option<Cond>, String> {
    let mut left = atom(p, now, b)?;
    while p.kw("AND") {
        let right = atom(p, now, b)?;
        left = join(left, right, |x, y| Cond::And(Box::new(x), Box::new(y)));
    }
    Ok(left)
}

/// Two sides, either of which may have been a time comparison (gone).
fn join(a: Option<Cond>, b: Option<Cond>, f: fn(Cond, Cond) -> Cond) -> Option<Cond> {
    match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (a, b) => a.or(b),
    }
}

fn atom(p: &mut P, now: i64, b: &mut Bounds) -> Result<Option<Cond>, String> {
    let start = p.i;
    if p.sym("(") {
        let saved = *b;
        let grouped = or_expr(p, now, b).and_then(|c| {
            if p.sym(")") {
                Ok(c)
            } else {
                Err(format!("found {}, expected )", p.found()))
            }
        });
        match grouped {
            Ok(c) => return Ok(c),
            // `(v + 1) * 2 > 5`: parenthesised arithmetic, not a group.
            Err(e) => {
                *b = saved;
                p.i = start;
                let Ok(left) = field_expr(p) else {
                    return Err(e);
                };
                let op = comparison(p)?;
                let right = field_expr(p)?;
                return Ok(Some(Cond::Expr { left, op, right }));
            }
        }
    }
    if let Some(c) = literal_first(p, now, b)? {
        return Ok(c);
    }
    let key = match p.peek() {
        Some(Tok::Ident(_)) => p.ident()?,
        _ => {
            return Err(format!(
                "found {}, expected identifier, string, number, bool",
                p.found()
            ));
        }
    };
    // Arithmetic on the left (`v * 2 > 5`): an expression comparison.
    if !key.eq_ignore_ascii_case("time")
        && matches!(p.peek(), Some(Tok::Sym(o)) if ["+", "-", "*", "/", "%"].contains(&o.as_str()))
    {
        p.i = start;
        let left = field_expr(p)?;
        let op = comparison(p)?;
        let right = field_expr(p)?;
        return Ok(Some(Cond::Expr { left, op, right }));
    }
    let op = match p.peek().cloned() {
        Some(Tok::Sym(o)) => match CmpOp::from_sym(&o) {
            Some(op) => {
                p.i += 1;
                (op, o)
            }
            None => return Err(format!("expected a comparison, found {o}")),
        },
        _ => return Err(format!("expected a comparison, found {}", p.found())),
    };
    if key.eq_ignore_ascii_case("time") {
        let t = time_literal(p, now)?;
        time_bound(b, op.0, &op.1, t)?;
        return Ok(None);
    }
    // A field (or arithmetic) on the right (`a > b`): an expression
    // comparison.
    let field_right = matches!(p.peek(), Some(Tok::Ident(r))
        if !r.eq_ignore_ascii_case("true") && !r.eq_ignore_ascii_case("false"))
        || matches!(p.t.get(p.i + 1), Some(Tok::Sym(o)) if ["+", "-", "*", "/", "%"].contains(&o.as_str()));
    if field_right && !matches!(op.0, CmpOp::Match | CmpOp::NotMatch) {
        let right = field_expr(p)?;
        return Ok(Some(Cond::Expr {
            left: Expr::Field(key),
            op: op.0,
            right,
        }));
    }
    let value = if matches!(op.0, CmpOp::Match | CmpOp::NotMatch) {
        Lit::Regex(regex_literal(p)?)
    } else {
        literal(p)
            .map_err(|found| format!("found {found}, expected identifier, string, number, bool"))?
    };
    Ok(Some(Cond::Cmp {
        key,
        op: op.0,
        value,
    }))
}

/// `time op t` narrowed into the bounds.
fn time_bound(b: &mut Bounds, op: CmpOp, sym: &str, t: i64) -> Result<(), String> {
    match op {
        CmpOp::Gt => b.min = b.min.max(t.saturating_add(1)),
        CmpOp::Ge => b.min = b.min.max(t),
        CmpOp::Lt => b.max = b.max.min(t.saturating_sub(1)),
        CmpOp::Le => b.max = b.max.min(t),
        CmpOp::Eq => {
            b.min = b.min.max(t);
            b.max = b.max.min(t);
        }
        _ => return Err(format!("time does not support {sym}")),
    }
    if matches!(op, CmpOp::Gt | CmpOp::Ge | CmpOp::Eq) {
        b.has_min = true;
    }
    Ok(())
}

/// `'a' = host`, `5 < v`, `10s < time`: a literal, a comparison, then a
/// bare name, read as influxd reads it, the name first and the comparison
/// turned round. None (nothing read) when the atom is not of that shape.
fn literal_first(p: &mut P, now: i64, b: &mut Bounds) -> Result<Option<Option<Cond>>, String> {
    let start = p.i;
    // A number, a string or a boolean; a duration (`60s`) before `time`.
    let value = literal(p);
    // `'a' =~ /a/`: decided here, as influxd folds it: a string matched
    // against the expression; a number or a boolean matches neither way.
    if let Ok(lit) = &value
        && let Some(op @ (CmpOp::Match | CmpOp::NotMatch)) = match p.peek() {
            Some(Tok::Sym(o)) => CmpOp::from_sym(o),
            _ => None,
        }
    {
        p.i += 1;
        let re = regex_literal(p)?;
        let holds = match lit {
            Lit::Str(s) => {
                let re = regex::Regex::new(&re)
                    .map_err(|e| format!("invalid regular expression /{re}/: {e}"))?;
                re.is_match(s) == (op == CmpOp::Match)
            }
            _ => false,
        };
        // A comparison of two literals, which holds on every row or none.
        return Ok(Some(Some(Cond::Expr {
            left: Expr::Int(1),
            op: CmpOp::Eq,
            right: Expr::Int(i64::from(holds)),
        })));
    }
    if value.is_err() {
        p.i = start;
        let neg = usize::from(p.peek() == Some(&Tok::Sym("-".into())));
        let before_time = matches!(p.t.get(p.i + neg), Some(Tok::Num(_)))
            && matches!(p.t.get(p.i + neg + 2), Some(Tok::Ident(k)) if k.eq_ignore_ascii_case("time"));
        if !before_time {
            return Ok(None);
        }
        p.i += neg + 1;
    }
    let op = match p.peek() {
        Some(Tok::Sym(o)) => {
            CmpOp::from_sym(o).filter(|op| !matches!(op, CmpOp::Match | CmpOp::NotMatch))
        }
        _ => None,
    };
    let key = match (op, p.t.get(p.i + 1), p.t.get(p.i + 2)) {
        (Some(_), Some(Tok::Ident(k)), next) if !matches!(next, Some(Tok::Sym(s)) if ["+", "-", "*", "/", "%", "("].contains(&s.as_str())) => {
            k.clone()
        }
        // `3 = v + 1`, `3 = (v + 1)`, and two literals (`1 = 1`, `'a' =
        // 'a'`): compared row by row.
        (Some(_), Some(t), _)
            if matches!(t, Tok::Ident(k) if !k.eq_ignore_ascii_case("time"))
                || matches!(t, Tok::Num(_) | Tok::Str(_))
                || *t == Tok::Sym("(".into())
                || *t == Tok::Sym("-".into()) =>
        {
            p.i = start;
            let left = field_expr(p)?;
            let op = comparison(p)?;
            let right = field_expr(p)?;
            return Ok(Some(Some(Cond::Expr { left, op, right })));
        }
        _ => {
            p.i = start;
            return Ok(None);
        }
    };
    let Some(op) = op else {
        p.i = start;
        return Ok(None);
    };
    let turned = match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::Le => CmpOp::Ge,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::Ge => CmpOp::Le,
        op => op,
    };
    let after = p.i + 2;
    if key.eq_ignore_ascii_case("time") {
        // The literal again, read as a time.
        p.i = start;
        let t = time_literal(p, now)?;
        p.i = after;
        time_bound(b, turned, super::text::op_text(turned), t)?;
        return Ok(Some(None));
    }
    let Ok(value) = value else {
        p.i = start;
        return Ok(None);
    };
    p.i = after;
    Ok(Some(Some(Cond::Cmp {
        key,
        op: turned,
        value,
    })))
}

/// Arithmetic over fields and numbers in a condition (no aggregates).
fn field_expr(p: &mut P) -> Result<Expr, String> {
    let e = super::select::additive(p)?;
    if e.has_call() {
        return Err("aggregate functions are not allowed in a WHERE clause".into());
    }
    Ok(e)
}

/// A comparison operator (not a regular expression's).
fn comparison(p: &mut P) -> Result<CmpOp, String> {
    match p.peek().cloned() {
        Some(Tok::Sym(o)) => match CmpOp::from_sym(&o) {
            Some(op) if !matches!(op, CmpOp::Match | CmpOp::NotMatch) => {
                p.i += 1;
                Ok(op)
            }
            _ => Err(format!("expected a comparison, found {o}")),
        },
        _ => Err(format!("expected a comparison, found {}", p.found())),
    }
}

/// A string, number (optionally negative) or boolean; the token found
/// otherwise.
fn literal(p: &mut P) -> Result<Lit, String> {
    let neg = p.sym("-");
    let lit = match p.peek().cloned() {
        Some(Tok::Str(v)) if !neg => Lit::Str(v),
        Some(Tok::Num(n)) => {
            let x: f64 = n.parse().map_err(|_| n.clone())?;
            Lit::Num(if neg { -x } else { x })
        }
        Some(Tok::Ident(b))
            if !neg && (b.eq_ignore_ascii_case("true") || b.eq_ignore_ascii_case("false")) =>
        {
            Lit::Bool(b.eq_ignore_ascii_case("true"))
        }
        _ => return Err(p.found()),
    };
    p.i += 1;
    Ok(lit)
}

/// `/re/`, checked.
pub(super) fn regex_literal(p: &mut P) -> Result<String, String> {
    match p.peek().cloned() {
        Some(Tok::Regex(re)) => {
            p.i += 1;
            regex::Regex::new(&re)
                .map_err(|e| format!("invalid regular expression /{re}/: {e}"))?;
            Ok(re)
        }
        _ => Err(format!("found {}, expected regex", p.found())),
    }
}

/// A time: an RFC3339 string (or influxd's `2006-01-02 15:04:05` forms),
/// an integer (ns), a duration literal since the epoch, or `now() [± d]`.
fn time_literal(p: &mut P, now: i64) -> Result<i64, String> {
    match p.peek().cloned() {
        Some(Tok::Str(s)) => {
            p.i += 1;
            // RFC3339, or influxd's `2006-01-02 15:04:05[.999]` and
            // `2006-01-02` (wall-clock times of the `tz()` zone, or UTC).
            if let Some(t) = parse_rfc3339(&s) {
                return Ok(t);
            }
            let local = parse_rfc3339(&format!("{s}Z"))
                .or_else(|| parse_rfc3339(&format!("{s}T00:00:00Z")))
                .ok_or_else(|| format!("invalid time {s:?}"))?;
            Ok(match p.tz {
                Some(tz) => super::window::local_to_utc(tz, local),
                None => local,
            })
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

/// A condition printed by [`super::text::cond_text`], read back.
pub(crate) fn parse_condition(text: &str) -> Result<Option<Cond>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let (marked, _) = super::lexer::lex_marked(text)?;
    let mut p = P {
        t: marked.into_iter().map(|(t, _)| t).collect(),
        i: 0,
        tz: None,
    };
    let mut b = Bounds::default();
    let c = or_expr(&mut p, 0, &mut b)?;
    if p.peek().is_some() {
        return Err(format!("found {} after the condition", p.found()));
    }
    Ok(c)
}
