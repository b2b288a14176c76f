//! Statements printed as influxd prints them in its messages.

use super::ast::{CmpOp, Cond, Lit, Statement};
use super::lexer::Tok;
use crate::tsdb::users::Privilege;

/// InfluxQL's keywords (printed upper case; quoted when an identifier).
pub(super) const KEYWORDS: &[&str] = &[
    "ALL",
    "ALTER",
    "AND",
    "ANY",
    "AS",
    "ASC",
    "BEGIN",
    "BY",
    "CARDINALITY",
    "CREATE",
    "CONTINUOUS",
    "DATABASE",
    "DATABASES",
    "DEFAULT",
    "DELETE",
    "DESC",
    "DESTINATIONS",
    "DIAGNOSTICS",
    "DISTINCT",
    "DROP",
    "DURATION",
    "END",
    "EVERY",
    "EXACT",
    "EXPLAIN",
    "FIELD",
    "FOR",
    "FROM",
    "GRANT",
    "GRANTS",
    "GROUP",
    "GROUPS",
    "IN",
    "INF",
    "INSERT",
    "INTO",
    "KEY",
    "KEYS",
    "KILL",
    "LIMIT",
    "MEASUREMENT",
    "MEASUREMENTS",
    "NAME",
    "OFFSET",
    "ON",
    "OR",
    "ORDER",
    "PASSWORD",
    "POLICIES",
    "POLICY",
    "PRIVILEGES",
    "QUERIES",
    "QUERY",
    "READ",
    "REPLICATION",
    "RESAMPLE",
    "RETENTION",
    "REVOKE",
    "SELECT",
    "SERIES",
    "SET",
    "SHARD",
    "SHARDS",
    "SLIMIT",
    "SOFFSET",
    "STATS",
    "SUBSCRIPTION",
    "SUBSCRIPTIONS",
    "TAG",
    "TO",
    "USER",
    "USERS",
    "VALUES",
    "WHERE",
    "WITH",
    "WRITE",
];

pub(super) fn is_keyword(s: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(s))
}

/// An identifier as influxd prints it: bare when it can be, else quoted.
pub fn quote_ident(s: &str) -> String {
    let bare = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !is_keyword(s);
    if bare {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// A string literal as influxd prints it: single-quoted, backslashes and
/// quotes escaped.
pub(super) fn string_literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Tokens printed as influxd prints a statement.
pub(super) fn canonical(toks: &[(Tok, bool)]) -> String {
    let mut out = String::new();
    let mut prev: Option<&Tok> = None;
    for (i, (t, quoted)) in toks.iter().enumerate() {
        let glue = match (prev, t) {
            (None, _) => true,
            (_, Tok::Sym(s)) if [",", ")", "."].contains(&s.as_str()) => true,
            (Some(Tok::Sym(s)), _) if ["(", ".", ":"].contains(&s.as_str()) => true,
            // A call's parenthesis, not a clause's (`FROM (SELECT …)`).
            (Some(Tok::Ident(k)), Tok::Sym(s)) if s == "(" => {
                toks.get(i.wrapping_sub(1))
                    .is_some_and(|(_, quoted)| *quoted)
                    || !["FROM", "WHERE", "AND", "OR", "IN", "BY", "ON", "AS"]
                        .iter()
                        .any(|c| k.eq_ignore_ascii_case(c))
            }
            _ => false,
        };
        if !glue {
            out.push(' ');
        }
        let call = matches!(toks.get(i + 1), Some((Tok::Sym(s), _)) if s == "(");
        match t {
            Tok::Ident(s) if !*quoted && is_keyword(s) => out.push_str(&s.to_ascii_uppercase()),
            Tok::Ident(s) if !*quoted && call => out.push_str(s),
            Tok::Ident(s) => out.push_str(&quote_ident(s)),
            Tok::Str(s) => out.push_str(&string_literal(s)),
            Tok::Num(s) | Tok::Sym(s) => out.push_str(s),
            Tok::Regex(s) => {
                out.push('/');
                out.push_str(s);
                out.push('/');
            }
        }
        prev = Some(t);
    }
    out
}

/// The text of a user statement, as influxd prints it (passwords hidden).
pub(super) fn user_statement_text(s: &Statement) -> Option<String> {
    let on = |p: &Privilege, on: &Option<String>| match on {
        Some(db) => format!("{} ON {}", p.as_str(), quote_ident(db)),
        None => "ALL PRIVILEGES".to_string(),
    };
    Some(match s {
        Statement::CreateUser { name, admin, .. } => format!(
            "CREATE USER {} WITH PASSWORD [REDACTED]{}",
            quote_ident(name),
            if *admin { " WITH ALL PRIVILEGES" } else { "" }
        ),
        Statement::DropUser(name) => format!("DROP USER {}", quote_ident(name)),
        Statement::SetPassword { name, .. } => {
            format!("SET PASSWORD FOR {} = [REDACTED]", quote_ident(name))
        }
        Statement::Grant {
            privilege,
            on: o,
            user,
        } => format!("GRANT {} TO {}", on(privilege, o), quote_ident(user)),
        Statement::Revoke {
            privilege,
            on: o,
            user,
        } => format!("REVOKE {} FROM {}", on(privilege, o), quote_ident(user)),
        Statement::ShowUsers => "SHOW USERS".into(),
        Statement::ShowGrants(user) => format!("SHOW GRANTS FOR {}", quote_ident(user)),
        _ => return None,
    })
}

/// A condition as InfluxQL text that [`super::cond::parse_condition`]
/// reads back into the same condition (how a delete's condition travels
/// in its raft command).
pub(crate) fn cond_text(c: &Cond) -> String {
    match c {
        Cond::And(a, b) => format!("({}) AND ({})", cond_text(a), cond_text(b)),
        Cond::Or(a, b) => format!("({}) OR ({})", cond_text(a), cond_text(b)),
        Cond::Expr { left, op, right } => {
            format!("{} {} {}", expr_text(left), op_text(*op), expr_text(right))
        }
        Cond::Cmp { key, op, value } => {
            let op = op_text(*op);
            let value = match value {
                Lit::Num(n) => format!("{n}"),
                Lit::Str(s) => string_literal(s),
                Lit::Bool(b) => b.to_string(),
                Lit::Regex(r) => format!("/{}/", r.replace('/', "\\/")),
            };
            // A quoted key: "time" or a keyword stays a key.
            format!(
                "\"{}\" {op} {value}",
                key.replace('\\', "\\\\").replace('"', "\\\"")
            )
        }
    }
}

pub(super) fn op_text(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "=",
        CmpOp::Ne => "!=",
        CmpOp::Lt => "<",
        CmpOp::Le => "<=",
        CmpOp::Gt => ">",
        CmpOp::Ge => ">=",
        CmpOp::Match => "=~",
        CmpOp::NotMatch => "!~",
    }
}

/// Arithmetic over fields as InfluxQL text (parenthesised).
fn expr_text(e: &super::ast::Expr) -> String {
    use super::ast::Expr;
    match e {
        Expr::Field(f) => format!("\"{}\"", f.replace('\\', "\\\\").replace('"', "\\\"")),
        Expr::Int(i) => i.to_string(),
        Expr::Float(x) => format!("{x:?}"),
        Expr::Str(s) => string_literal(s),
        Expr::Bool(b) => b.to_string(),
        Expr::Neg(x) => format!("-({})", expr_text(x)),
        Expr::Bin(l, op, r) => format!("({} {} {})", expr_text(l), op.symbol(), expr_text(r)),
        Expr::Call(f, field) => format!("{}(\"{field}\")", f.name()),
        Expr::Undefined(name) => format!("{name}()"),
    }
}
