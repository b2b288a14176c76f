//! The InfluxQL subset of DESIGN §5, with InfluxDB's JSON result shape.
//!
//! Statements: `CREATE DATABASE`, `DROP DATABASE`, `SHOW DATABASES`,
//! `CREATE | ALTER | DROP RETENTION POLICY`, `SHOW RETENTION POLICIES [ON db]`,
//! `SHOW MEASUREMENTS [ON db]`, and `SELECT <proj>[, …] FROM [[db.]rp.]m
//! [WHERE <cond> [AND …]] [LIMIT n]` where a projection is `*`, a field, or
//! `count|sum|min|max|mean|first|last(field)` (`count(*)` too), and a
//! condition compares `time` with an integer (ns), an RFC3339 string or
//! `now() [± duration]`, or a tag with `=`/`!=` and a string. Statements that
//! change state become raft commands ([`Statement::command`]); the rest read
//! local state ([`execute_read`]).

use serde_json::{Value, json};

use super::fsm::TsdbView;
use super::line_protocol::{FieldValue, Precision};
use super::timefmt::{go_duration, parse_rfc3339, rfc3339_nano};
use super::users::{Privilege, User};
use crate::proto::tsdb::{self as pb, command::Cmd};

/// A parsed statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `CREATE DATABASE name`
    CreateDatabase(String),
    /// `DROP DATABASE name`
    DropDatabase(String),
    /// `SHOW DATABASES`
    ShowDatabases,
    /// `CREATE RETENTION POLICY …`
    CreateRetentionPolicy {
        /// Name.
        name: String,
        /// Database.
        db: String,
        /// Duration (ns, 0 = INF).
        duration: i64,
        /// Replication.
        replication: u32,
        /// Shard group duration (ns, 0 = default).
        shard_duration: i64,
        /// Make it the default.
        default: bool,
    },
    /// `ALTER RETENTION POLICY …`
    AlterRetentionPolicy {
        /// Name.
        name: String,
        /// Database.
        db: String,
        /// New duration.
        duration: Option<i64>,
        /// New replication.
        replication: Option<u32>,
        /// New shard group duration.
        shard_duration: Option<i64>,
        /// Make it the default.
        default: bool,
    },
    /// `DROP RETENTION POLICY name ON db`
    DropRetentionPolicy(String, String),
    /// `SHOW RETENTION POLICIES [ON db]`
    ShowRetentionPolicies(Option<String>),
    /// `SHOW MEASUREMENTS [ON db]`
    ShowMeasurements {
        /// `ON db`.
        on: Option<String>,
        /// `WITH MEASUREMENT = m | =~ /re/ | !~ /re/`.
        with: Option<KeyMatch>,
        /// `LIMIT n` (0 = none).
        limit: usize,
        /// `OFFSET n`.
        offset: usize,
    },
    /// `SELECT …`
    Select(Select),
    /// `CREATE USER name WITH PASSWORD 'pw' [WITH ALL PRIVILEGES]`
    CreateUser {
        /// Name.
        name: String,
        /// Password (hashed by the node before it becomes a command).
        password: String,
        /// Admin.
        admin: bool,
    },
    /// `DROP USER name`
    DropUser(String),
    /// `SET PASSWORD FOR name = 'pw'`
    SetPassword {
        /// Name.
        name: String,
        /// Password.
        password: String,
    },
    /// `GRANT READ|WRITE|ALL ON db TO user`, or `GRANT ALL PRIVILEGES TO
    /// user` (`on` is `None`: admin).
    Grant {
        /// The privilege.
        privilege: Privilege,
        /// The database (`None`: admin).
        on: Option<String>,
        /// The user.
        user: String,
    },
    /// `REVOKE … FROM user`, as [`Statement::Grant`].
    Revoke {
        /// The privilege.
        privilege: Privilege,
        /// The database (`None`: admin).
        on: Option<String>,
        /// The user.
        user: String,
    },
    /// `SHOW USERS`
    ShowUsers,
    /// `SHOW GRANTS FOR user`
    ShowGrants(String),
    /// `SHOW QUERIES` (answered by the HTTP layer, which runs them)
    ShowQueries,
    /// `KILL QUERY id [ON "host"]`
    KillQuery(u64),
    /// `SHOW TAG KEYS [FROM m]`
    ShowTagKeys(Option<String>),
    /// `SHOW TAG VALUES [FROM m] WITH KEY … [WHERE …]`
    ShowTagValues {
        /// Measurement.
        from: Option<String>,
        /// Which keys.
        keys: KeyMatch,
        /// Series conditions.
        conds: Vec<TagCond>,
    },
    /// `SHOW FIELD KEYS [FROM m]`
    ShowFieldKeys(Option<String>),
    /// `SHOW SERIES [FROM m] [WHERE …]`
    ShowSeries {
        /// Measurement.
        from: Option<String>,
        /// Series conditions.
        conds: Vec<TagCond>,
    },
}

/// The keys of `SHOW TAG VALUES … WITH KEY`.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyMatch {
    /// `= key`
    Eq(String),
    /// `IN (k1, k2)`
    In(Vec<String>),
    /// `=~ /re/` (`true`) or `!~ /re/` (`false`).
    Regex(String, bool),
}

/// What a SELECT returns.
#[derive(Debug, Clone, PartialEq)]
pub enum Projection {
    /// `*`
    All,
    /// A field.
    Field(String),
    /// `func(field)`; field `*` for `count(*)`.
    Agg(String, String),
    /// `transform(agg(field)[, unit])` over `GROUP BY time` buckets:
    /// `derivative`, `non_negative_derivative`, `difference`,
    /// `non_negative_difference`, `cumulative_sum`.
    Nested {
        /// The transformation.
        outer: String,
        /// The aggregate.
        inner: String,
        /// The field.
        field: String,
        /// The derivative's unit (ns; default: the bucket).
        unit: Option<i64>,
    },
}

/// The transformations [`Projection::Nested`] takes.
const TRANSFORMS: &[&str] = &[
    "derivative",
    "non_negative_derivative",
    "difference",
    "non_negative_difference",
    "cumulative_sum",
    "moving_average",
    "elapsed",
];

/// A tag condition.
#[derive(Debug, Clone, PartialEq)]
pub struct TagCond {
    /// Tag key.
    pub key: String,
    /// `=` / `=~` (true) or `!=` / `!~` (false).
    pub eq: bool,
    /// Value (a regular expression when `regex`).
    pub value: String,
    /// `=~` / `!~`.
    pub regex: bool,
}

/// Tag conditions, ready to test series (regular expressions compiled).
struct TagFilter(Vec<(TagCond, Option<regex::Regex>)>);

impl TagFilter {
    fn new(conds: &[TagCond]) -> Result<Self, String> {
        conds
            .iter()
            .map(|c| {
                let re = c
                    .regex
                    .then(|| regex::Regex::new(&c.value).map_err(|e| e.to_string()))
                    .transpose()?;
                Ok((c.clone(), re))
            })
            .collect::<Result<_, String>>()
            .map(TagFilter)
    }

    /// Whether a series with `tags` passes every condition (a missing tag
    /// is "").
    fn keep(&self, tags: &[(String, String)]) -> bool {
        self.0.iter().all(|(c, re)| {
            let v = tags
                .iter()
                .find(|(k, _)| k == &c.key)
                .map_or("", |(_, v)| v.as_str());
            let hit = match re {
                Some(re) => re.is_match(v),
                None => v == c.value,
            };
            hit == c.eq
        })
    }
}

/// A SELECT statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    /// Projections.
    pub fields: Vec<Projection>,
    /// Database (from `db.rp.m`), if given.
    pub db: Option<String>,
    /// Retention policy, if given.
    pub rp: Option<String>,
    /// Measurement.
    pub measurement: String,
    /// Inclusive time bounds.
    pub min: i64,
    /// Inclusive time bounds.
    pub max: i64,
    /// Whether a lower bound was given (aggregates report it as their time).
    pub has_min: bool,
    /// Tag conditions.
    pub tags: Vec<TagCond>,
    /// Row limit (0 = none).
    pub limit: usize,
    /// `GROUP BY time(interval[, offset])`: (interval, offset) in ns.
    pub group_time: Option<(i64, i64)>,
    /// `GROUP BY` tags.
    pub group_tags: GroupTags,
    /// `fill(…)` of empty time buckets.
    pub fill: Fill,
    /// Conditions on field values (`v > 95`, `s = 'x'` on a string field).
    pub field_conds: Vec<FieldCond>,
    /// `AS` names, by projection.
    pub aliases: Vec<Option<String>>,
    /// `ORDER BY time DESC`.
    pub desc: bool,
    /// `OFFSET n`: rows skipped (per series).
    pub offset: usize,
    /// `SLIMIT n`: series kept (0 = all).
    pub slimit: usize,
    /// `SOFFSET n`: series skipped.
    pub soffset: usize,
}

/// A literal a field is compared with.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldLit {
    /// A number.
    Num(f64),
    /// A string.
    Str(String),
    /// A boolean.
    Bool(bool),
}

/// A condition on a field's value: `key op value`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldCond {
    /// Field.
    pub key: String,
    /// `=`, `!=`, `<`, `<=`, `>`, `>=`.
    pub op: String,
    /// What it is compared with.
    pub value: FieldLit,
}

impl FieldCond {
    /// Whether `v` passes (a value of another kind than the literal never
    /// does).
    fn holds(&self, v: &FieldValue) -> bool {
        use std::cmp::Ordering;
        let ord = match (&self.value, v) {
            (FieldLit::Num(x), v) => num(v).and_then(|n| n.partial_cmp(x)),
            (FieldLit::Str(x), FieldValue::String(s)) => Some(s.as_str().cmp(x.as_str())),
            (FieldLit::Bool(x), FieldValue::Boolean(b)) => Some(b.cmp(x)),
            _ => None,
        };
        let Some(o) = ord else { return false };
        match self.op.as_str() {
            "=" => o == Ordering::Equal,
            "!=" => o != Ordering::Equal,
            "<" => o == Ordering::Less,
            "<=" => o != Ordering::Greater,
            ">" => o == Ordering::Greater,
            ">=" => o != Ordering::Less,
            _ => false,
        }
    }
}

/// The tags a SELECT groups by.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum GroupTags {
    /// None: one series.
    #[default]
    None,
    /// `GROUP BY *`: every tag.
    All,
    /// These tag keys.
    Keys(Vec<String>),
}

/// What an empty `GROUP BY time` bucket shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Fill {
    /// `fill(null)` (the default): null (a count shows 0).
    #[default]
    Null,
    /// `fill(none)`: no row.
    None,
    /// `fill(<number>)`.
    Value(f64),
    /// `fill(previous)`: the bucket before's value.
    Previous,
    /// `fill(linear)`: interpolated between the buckets around it.
    Linear,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Sym(String),
    Regex(String),
}

/// Tokens, each with whether it was a double-quoted identifier (for
/// [`canonical`]).
fn lex_marked(q: &str) -> Result<Vec<(Tok, bool)>, String> {
    let c: Vec<char> = q.chars().collect();
    let mut out: Vec<(Tok, bool)> = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '\'' || ch == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                match c.get(i) {
                    None => return Err(format!("unterminated {ch}quoted{ch} text")),
                    Some('\\') if c.get(i + 1).is_some() => {
                        s.push(c[i + 1]);
                        i += 2;
                    }
                    Some(x) if *x == ch => {
                        i += 1;
                        break;
                    }
                    Some(x) => {
                        s.push(*x);
                        i += 1;
                    }
                }
            }
            out.push(if ch == '\'' {
                (Tok::Str(s), false)
            } else {
                (Tok::Ident(s), true)
            });
        } else if ch.is_ascii_digit() {
            let start = i;
            while c
                .get(i)
                .is_some_and(|x| x.is_ascii_alphanumeric() || *x == '.')
            {
                i += 1;
            }
            out.push((Tok::Num(c[start..i].iter().collect()), false));
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while c.get(i).is_some_and(|x| x.is_alphanumeric() || *x == '_') {
                i += 1;
            }
            out.push((Tok::Ident(c[start..i].iter().collect()), false));
        } else {
            let two: String = c[i..(i + 2).min(c.len())].iter().collect();
            if ["<=", ">=", "!=", "<>", "=~", "!~"].contains(&two.as_str()) {
                out.push((Tok::Sym(two), false));
                i += 2;
            } else if ch == '/'
                && matches!(out.last(), Some((Tok::Sym(s), _)) if s == "=~" || s == "!~")
            {
                let mut re = String::new();
                i += 1;
                loop {
                    match c.get(i) {
                        None => return Err("unterminated regular expression".into()),
                        Some('\\') if c.get(i + 1) == Some(&'/') => {
                            re.push('/');
                            i += 2;
                        }
                        Some('/') => {
                            i += 1;
                            break;
                        }
                        Some(x) => {
                            re.push(*x);
                            i += 1;
                        }
                    }
                }
                out.push((Tok::Regex(re), false));
            } else if "(),*;=<>.+-".contains(ch) {
                out.push((Tok::Sym(ch.to_string()), false));
                i += 1;
            } else {
                return Err(format!("unexpected character {ch:?}"));
            }
        }
    }
    Ok(out)
}

struct P {
    t: Vec<Tok>,
    i: usize,
}

impl P {
    fn peek(&self) -> Option<&Tok> {
        self.t.get(self.i)
    }
    fn kw(&mut self, k: &str) -> bool {
        if let Some(Tok::Ident(s)) = self.peek()
            && s.eq_ignore_ascii_case(k)
        {
            self.i += 1;
            return true;
        }
        false
    }
    fn expect_kw(&mut self, k: &str) -> Result<(), String> {
        if self.kw(k) {
            Ok(())
        } else {
            Err(format!("expected {k}, found {}", self.found()))
        }
    }
    fn sym(&mut self, s: &str) -> bool {
        if self.peek() == Some(&Tok::Sym(s.into())) {
            self.i += 1;
            return true;
        }
        false
    }
    fn found(&self) -> String {
        match self.peek() {
            None => "EOF".into(),
            Some(Tok::Ident(s) | Tok::Num(s) | Tok::Sym(s)) => s.clone(),
            Some(Tok::Str(s)) => format!("'{s}'"),
            Some(Tok::Regex(s)) => format!("/{s}/"),
        }
    }
    fn ident(&mut self) -> Result<String, String> {
        match self.peek().cloned() {
            Some(Tok::Ident(s)) => {
                self.i += 1;
                Ok(s)
            }
            _ => Err(format!("expected identifier, found {}", self.found())),
        }
    }
    fn num(&mut self) -> Result<String, String> {
        match self.peek().cloned() {
            Some(Tok::Num(s)) => {
                self.i += 1;
                Ok(s)
            }
            _ => Err(format!("expected number, found {}", self.found())),
        }
    }
    fn string(&mut self) -> Result<String, String> {
        match self.peek().cloned() {
            Some(Tok::Str(s)) => {
                self.i += 1;
                Ok(s)
            }
            _ => Err(format!("found {}, expected string", self.found())),
        }
    }
    fn duration(&mut self) -> Result<i64, String> {
        if self.kw("INF") {
            return Ok(0);
        }
        parse_duration(&self.num()?)
    }
}

/// Parses an InfluxQL duration literal (`1h`, `30d`, `100ms`, `2w`).
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("invalid duration {s}"))?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().map_err(|_| format!("invalid duration {s}"))?;
    let mult = match unit {
        "ns" => 1,
        "u" | "µ" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        "w" => 604_800_000_000_000,
        _ => return Err(format!("invalid duration {s}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("duration {s} out of range"))
}

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
    let marked = lex_marked(q)?;
    let mut p = P {
        t: marked.iter().map(|(t, _)| t.clone()).collect(),
        i: 0,
    };
    let mut out = Vec::new();
    while p.peek().is_some() {
        if p.sym(";") {
            continue;
        }
        let from = p.i;
        let stmt = statement(&mut p, now)?;
        let text = match user_statement_text(&stmt) {
            Some(t) => t,
            None => canonical(&marked[from..p.i]),
        };
        out.push((stmt, text));
        if p.peek().is_some() && !p.sym(";") {
            return Err(format!("unexpected {} after the statement", p.found()));
        }
    }
    if out.is_empty() {
        return Err("empty query".into());
    }
    Ok(out)
}

/// InfluxQL's keywords (printed upper case; quoted when an identifier).
const KEYWORDS: &[&str] = &[
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

fn is_keyword(s: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(s))
}

/// An identifier as influxd prints it: bare when it can be, else quoted.
fn quote_ident(s: &str) -> String {
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

/// Tokens printed as influxd prints a statement.
fn canonical(toks: &[(Tok, bool)]) -> String {
    let mut out = String::new();
    let mut prev: Option<&Tok> = None;
    for (i, (t, quoted)) in toks.iter().enumerate() {
        let glue = match (prev, t) {
            (None, _) => true,
            (_, Tok::Sym(s)) if [",", ")", "."].contains(&s.as_str()) => true,
            (Some(Tok::Sym(s)), _) if ["(", "."].contains(&s.as_str()) => true,
            (Some(Tok::Ident(_)), Tok::Sym(s)) if s == "(" => true,
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
            Tok::Str(s) => {
                out.push('\'');
                out.push_str(&s.replace('\\', "\\\\").replace('\'', "\\'"));
                out.push('\'');
            }
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
fn user_statement_text(s: &Statement) -> Option<String> {
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

fn statement(p: &mut P, now: i64) -> Result<Statement, String> {
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
    if p.kw("DROP") {
        if p.kw("USER") {
            return Ok(Statement::DropUser(p.ident()?));
        }
        if p.kw("DATABASE") {
            return Ok(Statement::DropDatabase(p.ident()?));
        }
        let (name, db) = rp_target(p)?;
        return Ok(Statement::DropRetentionPolicy(name, db));
    }
    if p.kw("SHOW") {
        if p.kw("USERS") {
            return Ok(Statement::ShowUsers);
        }
        if p.kw("QUERIES") {
            return Ok(Statement::ShowQueries);
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
            let conds = where_tags(p)?;
            return Ok(Statement::ShowTagValues { from, keys, conds });
        }
        if p.kw("FIELD") {
            p.expect_kw("KEYS")?;
            return Ok(Statement::ShowFieldKeys(show_from(p)?));
        }
        if p.kw("SERIES") {
            let from = show_from(p)?;
            let conds = where_tags(p)?;
            return Ok(Statement::ShowSeries { from, conds });
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
        return Err(format!("unsupported SHOW {}", p.found()));
    }
    if p.kw("SELECT") {
        return select(p, now).map(Statement::Select);
    }
    Err(format!(
        "found {}, expected SELECT, SHOW, CREATE, DROP, GRANT, REVOKE, ALTER, SET, KILL",
        p.found()
    ))
}

/// `GRANT|REVOKE READ|WRITE|ALL [PRIVILEGES] ON db TO|FROM user`, or
/// `… ALL [PRIVILEGES] TO|FROM user` (admin).
fn grant(p: &mut P, revoke: bool) -> Result<Statement, String> {
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
fn rp_target(p: &mut P) -> Result<(String, String), String> {
    p.expect_kw("RETENTION")?;
    p.expect_kw("POLICY")?;
    let name = p.ident()?;
    p.expect_kw("ON")?;
    Ok((name, p.ident()?))
}

/// The options of CREATE/ALTER RETENTION POLICY, in any order.
#[derive(Default)]
struct RpOptions {
    duration: Option<i64>,
    replication: Option<u32>,
    shard_duration: Option<i64>,
    default: bool,
}

fn rp_options(p: &mut P) -> Result<RpOptions, String> {
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

fn select(p: &mut P, now: i64) -> Result<Select, String> {
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

/// `key =~ /re/` or `key !~ /re/` (the operator already read).
fn regex_cond(p: &mut P, key: String, op: &str) -> Result<TagCond, String> {
    match p.peek().cloned() {
        Some(Tok::Regex(re)) => {
            p.i += 1;
            regex::Regex::new(&re)
                .map_err(|e| format!("invalid regular expression /{re}/: {e}"))?;
            Ok(TagCond {
                key,
                eq: op == "=~",
                value: re,
                regex: true,
            })
        }
        _ => Err(format!("found {}, expected regex", p.found())),
    }
}

/// `= name`, `=~ /re/` or `!~ /re/` (`WITH KEY`, `WITH MEASUREMENT`).
fn name_match(p: &mut P) -> Result<KeyMatch, String> {
    for (op, pos) in [("=~", true), ("!~", false)] {
        if p.sym(op) {
            let c = regex_cond(p, String::new(), op)?;
            return Ok(KeyMatch::Regex(c.value, pos));
        }
    }
    if p.sym("=") {
        return Ok(KeyMatch::Eq(p.ident()?));
    }
    Err(format!("found {}, expected =, =~, !~ or IN", p.found()))
}

/// `WHERE tag = 'v' [AND …]` of the SHOW statements (tags only).
fn where_tags(p: &mut P) -> Result<Vec<TagCond>, String> {
    let mut out = Vec::new();
    if !p.kw("WHERE") {
        return Ok(out);
    }
    loop {
        let key = p.ident()?;
        let op = match p.peek().cloned() {
            Some(Tok::Sym(o)) if ["=", "!=", "<>", "=~", "!~"].contains(&o.as_str()) => {
                p.i += 1;
                o
            }
            _ => return Err(format!("expected a tag comparison, found {}", p.found())),
        };
        if op == "=~" || op == "!~" {
            out.push(regex_cond(p, key, &op)?);
        } else {
            let value = p.string()?;
            out.push(TagCond {
                key,
                eq: op == "=",
                value,
                regex: false,
            });
        }
        if !p.kw("AND") {
            return Ok(out);
        }
    }
}

/// `FROM m` of the SHOW statements, if given.
fn show_from(p: &mut P) -> Result<Option<String>, String> {
    if p.kw("FROM") {
        Ok(Some(p.ident()?))
    } else {
        Ok(None)
    }
}

fn aggs_only(fields: &[Projection]) -> bool {
    !fields.is_empty()
        && fields
            .iter()
            .all(|f| matches!(f, Projection::Agg(..) | Projection::Nested { .. }))
}

fn time_literal(p: &mut P, now: i64) -> Result<i64, String> {
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

impl Statement {
    /// The raft command a state-changing statement becomes (`db` is the
    /// request's database); `None` for reads.
    pub fn command(&self) -> Option<Cmd> {
        Some(match self.clone() {
            Statement::CreateDatabase(name) => Cmd::CreateDatabase(pb::CreateDatabase { name }),
            Statement::DropDatabase(name) => Cmd::DropDatabase(pb::DropDatabase { name }),
            Statement::CreateRetentionPolicy {
                name,
                db,
                duration,
                replication,
                shard_duration,
                default,
            } => Cmd::CreateRetentionPolicy(pb::CreateRetentionPolicy {
                db,
                name,
                duration,
                shard_group_duration: shard_duration,
                replica_n: replication,
                make_default: default,
            }),
            Statement::AlterRetentionPolicy {
                name,
                db,
                duration,
                replication,
                shard_duration,
                default,
            } => Cmd::AlterRetentionPolicy(pb::AlterRetentionPolicy {
                db,
                name,
                duration,
                shard_group_duration: shard_duration,
                replica_n: replication,
                make_default: default,
            }),
            Statement::DropRetentionPolicy(name, db) => {
                Cmd::DropRetentionPolicy(pb::DropRetentionPolicy { db, name })
            }
            Statement::DropUser(name) => Cmd::DropUser(pb::DropUser { name }),
            Statement::Grant {
                privilege,
                on,
                user,
            }
            | Statement::Revoke {
                privilege,
                on,
                user,
            } => {
                let revoke = matches!(self, Statement::Revoke { .. });
                match on {
                    Some(db) => Cmd::SetPrivilege(pb::SetPrivilege {
                        name: user,
                        db,
                        privilege: privilege as i32,
                        revoke,
                    }),
                    None => Cmd::SetAdmin(pb::SetAdmin {
                        name: user,
                        admin: !revoke,
                    }),
                }
            }
            _ => return None,
        })
    }

    /// The password a statement sets (`CREATE USER`, `SET PASSWORD`): the
    /// node hashes it, then [`Statement::password_command`] makes the
    /// command.
    pub fn password(&self) -> Option<&str> {
        match self {
            Statement::CreateUser { password, .. } | Statement::SetPassword { password, .. } => {
                Some(password)
            }
            _ => None,
        }
    }

    /// The command of a statement that sets a password, given its hash.
    pub fn password_command(&self, hash: String) -> Option<Cmd> {
        Some(match self {
            Statement::CreateUser { name, admin, .. } => Cmd::CreateUser(pb::CreateUser {
                name: name.clone(),
                hash,
                admin: *admin,
            }),
            Statement::SetPassword { name, .. } => Cmd::SetPassword(pb::SetPassword {
                name: name.clone(),
                hash,
            }),
            _ => return None,
        })
    }
}

fn time_value(ns: i64, epoch: Option<Precision>) -> Value {
    match epoch {
        Some(p) => json!(ns.div_euclid(p.nanos())),
        None => json!(rfc3339_nano(ns)),
    }
}

/// A float as influxd's JSON writes it (Go's encoding/json): a whole
/// value without a fraction (`17835`, not `17835.0`).
fn float_json(f: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if f.fract() == 0.0 && f.abs() <= EXACT {
        json!(f as i64)
    } else {
        json!(f)
    }
}

fn to_json(v: &FieldValue) -> Value {
    match v {
        FieldValue::Float(f) => float_json(*f),
        FieldValue::Integer(i) => json!(i),
        FieldValue::Unsigned(u) => json!(u),
        FieldValue::String(s) => json!(s),
        FieldValue::Boolean(b) => json!(b),
    }
}

fn num(v: &FieldValue) -> Option<f64> {
    match v {
        FieldValue::Float(f) => Some(*f),
        FieldValue::Integer(i) => Some(*i as f64),
        FieldValue::Unsigned(u) => Some(*u as f64),
        _ => None,
    }
}

/// A series' tags and its points by field.
type TaggedSeries = (
    Vec<(String, String)>,
    std::collections::BTreeMap<String, Vec<(i64, FieldValue)>>,
);

/// Tags of a series key (`m,a=1,b=2`), unescaped.
pub(crate) fn series_tags(series: &str) -> Vec<(String, String)> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = series.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push('\\');
                    cur.push(n);
                }
            }
            ',' => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    let unescape = |s: &str| {
        s.replace("\\,", ",")
            .replace("\\=", "=")
            .replace("\\ ", " ")
    };
    parts
        .iter()
        .skip(1)
        .filter_map(|kv| {
            let mut split = None;
            let b = kv.as_bytes();
            for i in 0..b.len() {
                if b[i] == b'=' && (i == 0 || b[i - 1] != b'\\') {
                    split = Some(i);
                    break;
                }
            }
            split.map(|i| (unescape(&kv[..i]), unescape(&kv[i + 1..])))
        })
        .collect()
}

/// One unnamed series of `columns`, with `values` only if there are any
/// (as influxd lists users and grants).
fn listing(columns: Value, values: Vec<Value>) -> Value {
    let mut s = json!({ "columns": columns });
    if !values.is_empty() {
        s["values"] = json!(values);
    }
    json!({ "series": [s] })
}

/// The schema statements: tag keys, tag values, field keys, series.
fn show_schema(t: &TsdbView, db: &str, stmt: &Statement) -> Result<Value, String> {
    use std::collections::{BTreeMap, BTreeSet};
    if db.is_empty() {
        return Err("database name required".into());
    }
    let (from, conds) = match stmt {
        Statement::ShowTagKeys(f) | Statement::ShowFieldKeys(f) => (f.clone(), Vec::new()),
        Statement::ShowTagValues { from, conds, .. } | Statement::ShowSeries { from, conds } => {
            (from.clone(), conds.clone())
        }
        _ => return Err("not a schema statement".into()),
    };
    let filter = TagFilter::new(&conds)?;
    let key_re = match stmt {
        Statement::ShowTagValues {
            keys: KeyMatch::Regex(re, _),
            ..
        } => Some(regex::Regex::new(re).map_err(|e| e.to_string())?),
        _ => None,
    };
    let key_wanted = |k: &str| match stmt {
        Statement::ShowTagValues { keys, .. } => match keys {
            KeyMatch::Eq(x) => x == k,
            KeyMatch::In(xs) => xs.iter().any(|x| x == k),
            KeyMatch::Regex(_, pos) => key_re.as_ref().is_some_and(|r| r.is_match(k)) == *pos,
        },
        _ => true,
    };
    // measurement → what the statement lists for it.
    let mut per: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    let mut series: BTreeSet<String> = BTreeSet::new();
    let mut last = String::new();
    for (key, ty) in t.key_types(db) {
        let (sk, field) = key
            .split_once(super::tsm::KEY_FIELD_SEPARATOR)
            .unwrap_or((key.as_str(), ""));
        let m = super::shard::measurement_of(sk);
        if from.as_deref().is_some_and(|f| f != m) {
            continue;
        }
        if let Statement::ShowFieldKeys(_) = stmt {
            let e = per.entry(m).or_default();
            if !e.iter().any(|(f, _)| f == field) {
                e.insert((field.to_string(), ty.to_string()));
            }
            continue;
        }
        if sk == last {
            continue;
        }
        last = sk.to_string();
        let tags = series_tags(sk);
        if !filter.keep(&tags) {
            continue;
        }
        match stmt {
            Statement::ShowSeries { .. } => {
                series.insert(sk.to_string());
            }
            Statement::ShowTagKeys(_) => {
                let e = per.entry(m).or_default();
                e.extend(tags.into_iter().map(|(k, _)| (k, String::new())));
            }
            _ => {
                let e = per.entry(m).or_default();
                e.extend(tags.into_iter().filter(|(k, _)| key_wanted(k)));
            }
        }
    }
    if let Statement::ShowSeries { .. } = stmt {
        if series.is_empty() {
            return Ok(json!({}));
        }
        let vals: Vec<Value> = series.into_iter().map(|k| json!([k])).collect();
        return Ok(json!({"series": [{"columns": ["key"], "values": vals}]}));
    }
    let columns = match stmt {
        Statement::ShowTagKeys(_) => json!(["tagKey"]),
        Statement::ShowFieldKeys(_) => json!(["fieldKey", "fieldType"]),
        _ => json!(["key", "value"]),
    };
    let out: Vec<Value> = per
        .into_iter()
        .filter(|(_, rows)| !rows.is_empty())
        .map(|(m, rows)| {
            let vals: Vec<Value> = rows
                .into_iter()
                .map(|(a, b)| match stmt {
                    Statement::ShowTagKeys(_) => json!([a]),
                    _ => json!([a, b]),
                })
                .collect();
            json!({"name": m, "columns": columns, "values": vals})
        })
        .collect();
    if out.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({ "series": out }))
}

/// Runs a read statement against local state; the InfluxDB result object
/// (without `statement_id`). `db` is the request's `db` parameter.
pub fn execute_read(t: &TsdbView, db: &str, stmt: &Statement, epoch: Option<Precision>) -> Value {
    execute_read_as(t, db, stmt, epoch, None)
}

/// [`execute_read`] for a user (authentication on): `SHOW DATABASES` lists
/// only the databases the user may read or write, as influxd's.
pub fn execute_read_as(
    t: &TsdbView,
    db: &str,
    stmt: &Statement,
    epoch: Option<Precision>,
    user: Option<&User>,
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
                return err(super::meta::MetaError::UserNotFound.to_string());
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
        Statement::Select(s) => match select_exec(t, db, s, epoch) {
            Ok(v) => v,
            Err(e) => err(e),
        },
        _ => err("not a read statement".into()),
    }
}

fn select_exec(
    t: &TsdbView,
    db: &str,
    s: &Select,
    epoch: Option<Precision>,
) -> Result<Value, String> {
    let db = s.db.as_deref().unwrap_or(db);
    if db.is_empty() {
        return Err("database name required".into());
    }
    if !t.meta().databases.contains_key(db) {
        return Err(format!("database not found: {db}"));
    }
    let data = t
        .scan(
            db,
            s.rp.as_deref().unwrap_or(""),
            &s.measurement,
            scan_start(s),
            s.max,
        )
        .map_err(|e| e.to_string())?;
    let data: Vec<TaggedSeries> = data
        .into_iter()
        .map(|(k, f)| (series_tags(&k), f))
        .collect();
    // `*` is every field and tag of the measurement in the time range, as
    // influxd expands it, whatever the conditions keep.
    let mut field_names: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut tag_names: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for (tags, fields) in &data {
        field_names.extend(fields.keys().cloned());
        tag_names.extend(tags.iter().map(|(k, _)| k.clone()));
    }
    // A `key = 'string'` on a field (no tag of that name) is a condition
    // on the field's value, as influxd decides it.
    let is_tag = |k: &str| {
        data.iter()
            .any(|(tags, _)| tags.iter().any(|(t, _)| t == k))
    };
    let is_field = |k: &str| data.iter().any(|(_, fs)| fs.contains_key(k));
    let mut field_conds = s.field_conds.clone();
    let mut tag_conds = Vec::new();
    for c in &s.tags {
        if !c.regex && !is_tag(&c.key) && is_field(&c.key) {
            field_conds.push(FieldCond {
                key: c.key.clone(),
                op: if c.eq { "=" } else { "!=" }.into(),
                value: FieldLit::Str(c.value.clone()),
            });
        } else {
            tag_conds.push(c.clone());
        }
    }
    // Keep series whose tags satisfy the conditions, and the points whose
    // fields do.
    let filter = TagFilter::new(&tag_conds)?;
    let data: Vec<TaggedSeries> = data
        .into_iter()
        .filter(|(tags, _)| filter.keep(tags))
        .map(|(tags, fields)| (tags, keep_rows(fields, &field_conds)))
        .filter(|(_, fields)| !fields.is_empty())
        .collect();
    if data.is_empty() {
        return Ok(json!({}));
    }
    // The groups: series by the values of the grouped tags (a missing tag
    // is ""), in order of those values.
    let keys: Vec<String> = match &s.group_tags {
        GroupTags::None => Vec::new(),
        GroupTags::All => tag_names.iter().cloned().collect(),
        GroupTags::Keys(k) => {
            let mut k = k.clone();
            k.sort();
            k.dedup();
            k
        }
    };
    let mut groups: std::collections::BTreeMap<Vec<String>, Vec<&TaggedSeries>> =
        std::collections::BTreeMap::new();
    for d in &data {
        let vals = keys
            .iter()
            .map(|k| {
                d.0.iter()
                    .find(|(tk, _)| tk == k)
                    .map_or(String::new(), |(_, v)| v.clone())
            })
            .collect();
        groups.entry(vals).or_default().push(d);
    }
    let grouped = !matches!(s.group_tags, GroupTags::None);
    let mut out = Vec::new();
    let slimit = if s.slimit == 0 { usize::MAX } else { s.slimit };
    // `ORDER BY time DESC` reverses the series too, as influxd's.
    let ordered: Vec<(&Vec<String>, &Vec<&TaggedSeries>)> = if s.desc {
        groups.iter().rev().collect()
    } else {
        groups.iter().collect()
    };
    for (vals, members) in ordered.into_iter().skip(s.soffset).take(slimit) {
        let body = if aggs_only(&s.fields) {
            aggregate_rows(s, &members[..], &field_names, epoch)?
        } else {
            raw_rows(s, &members[..], &field_names, &tag_names, &keys, epoch)
        };
        let Some((columns, values)) = body else {
            continue;
        };
        let mut one = json!({"name": s.measurement, "columns": columns, "values": values});
        if grouped {
            let tags: serde_json::Map<String, Value> = keys
                .iter()
                .zip(vals)
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            one["tags"] = Value::Object(tags);
        }
        out.push(one);
    }
    if out.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({ "series": out }))
}

/// The points of a series' fields at the times where every field
/// condition holds (a condition on a field the row lacks fails).
fn keep_rows(
    mut fields: std::collections::BTreeMap<String, Vec<(i64, FieldValue)>>,
    conds: &[FieldCond],
) -> std::collections::BTreeMap<String, Vec<(i64, FieldValue)>> {
    if conds.is_empty() {
        return fields;
    }
    let mut keep: Option<std::collections::BTreeSet<i64>> = None;
    for c in conds {
        let ok: std::collections::BTreeSet<i64> = fields
            .get(&c.key)
            .map(|pts| {
                pts.iter()
                    .filter(|(_, v)| c.holds(v))
                    .map(|(t, _)| *t)
                    .collect()
            })
            .unwrap_or_default();
        keep = Some(match keep {
            None => ok,
            Some(k) => k.intersection(&ok).copied().collect(),
        });
    }
    let keep = keep.unwrap_or_default();
    for pts in fields.values_mut() {
        pts.retain(|(t, _)| keep.contains(t));
    }
    fields.retain(|_, pts| !pts.is_empty());
    fields
}

/// Whether a SELECT transforms aggregates (then its buckets start one
/// interval before the range, as influxd's, so that the first bucket of
/// the range has one before it).
fn transforms(s: &Select) -> bool {
    s.fields
        .iter()
        .any(|f| matches!(f, Projection::Nested { .. }))
}

/// The first time a SELECT reads.
fn scan_start(s: &Select) -> i64 {
    match s.group_time {
        Some((iv, _)) if transforms(s) && s.has_min => s.min.saturating_sub(iv),
        _ => s.min,
    }
}

/// `outer` over the non-null values of one column of buckets (time,
/// value): the rows it produces.
fn transform(outer: &str, unit: i64, col: &[(i64, Value)]) -> Vec<(i64, Value)> {
    let mut out = Vec::new();
    let mut prev: Option<(i64, &Value)> = None;
    let mut sum: Option<Value> = None;
    let values: Vec<(i64, &Value)> = col
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(t, v)| (*t, v))
        .collect();
    if outer == "moving_average" {
        let n = usize::try_from(unit).unwrap_or(1).max(1);
        for w in values.windows(n) {
            let sum: f64 = w.iter().map(|(_, v)| v.as_f64().unwrap_or(0.0)).sum();
            out.push((w[n - 1].0, float_json(sum / n as f64)));
        }
        return out;
    }
    if outer == "elapsed" {
        for w in values.windows(2) {
            out.push((w[1].0, json!((w[1].0 - w[0].0) / unit.max(1))));
        }
        return out;
    }
    for (t, v) in col.iter().filter(|(_, v)| !v.is_null()) {
        match outer {
            "cumulative_sum" => {
                let next = match (&sum, v) {
                    (Some(Value::Number(a)), Value::Number(b)) if a.is_i64() && b.is_i64() => {
                        json!(
                            a.as_i64()
                                .unwrap_or(0)
                                .wrapping_add(b.as_i64().unwrap_or(0))
                        )
                    }
                    (Some(a), b) => {
                        float_json(a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0))
                    }
                    (None, b) => b.clone(),
                };
                sum = Some(next.clone());
                out.push((*t, next));
            }
            _ => {
                if let Some((t0, v0)) = prev {
                    let r = match outer {
                        "difference" | "non_negative_difference" => match (v0, v) {
                            (Value::Number(a), Value::Number(b)) if a.is_i64() && b.is_i64() => {
                                json!(
                                    b.as_i64()
                                        .unwrap_or(0)
                                        .wrapping_sub(a.as_i64().unwrap_or(0))
                                )
                            }
                            _ => float_json(v.as_f64().unwrap_or(0.0) - v0.as_f64().unwrap_or(0.0)),
                        },
                        _ => {
                            let dt = (*t - t0) as f64 / unit as f64;
                            float_json(
                                (v.as_f64().unwrap_or(0.0) - v0.as_f64().unwrap_or(0.0)) / dt,
                            )
                        }
                    };
                    let negative = r.as_f64().is_some_and(|x| x < 0.0);
                    if !(outer.starts_with("non_negative") && negative) {
                        out.push((*t, r));
                    }
                }
                prev = Some((*t, v));
            }
        }
    }
    out
}

/// Most `GROUP BY time` buckets one query may ask for.
const MAX_BUCKETS: i64 = 1_000_000;

/// The value of `f` over `pts` (sorted by time), and the time of the point
/// a selector picked. An empty set counts 0 and is null otherwise.
fn aggregate(
    f: &str,
    fld: &str,
    pts: &[(i64, FieldValue)],
) -> Result<(Value, Option<i64>), String> {
    let nums: Vec<f64> = pts.iter().filter_map(|p| num(&p.1)).collect();
    Ok(match f {
        "count" => (json!(pts.len()), None),
        _ if pts.is_empty() => (Value::Null, None),
        "first" => (to_json(&pts[0].1), Some(pts[0].0)),
        "last" => {
            let l = &pts[pts.len() - 1];
            (to_json(&l.1), Some(l.0))
        }
        "sum" | "min" | "max" | "mean" | "median" | "spread" | "stddev"
            if nums.len() != pts.len() =>
        {
            return Err(format!("{f}() needs a numeric field, {fld} is not"));
        }
        "sum" => match &pts[0].1 {
            FieldValue::Integer(_) => (
                json!(
                    pts.iter()
                        .map(|p| if let FieldValue::Integer(i) = p.1 {
                            i
                        } else {
                            0
                        })
                        .fold(0i64, i64::wrapping_add)
                ),
                None,
            ),
            _ => (float_json(nums.iter().sum::<f64>()), None),
        },
        "min" | "max" => pts
            .iter()
            .reduce(|a, b| {
                let (x, y) = (num(&a.1).unwrap_or(0.0), num(&b.1).unwrap_or(0.0));
                if (f == "min" && y < x) || (f == "max" && y > x) {
                    b
                } else {
                    a
                }
            })
            .map_or((Value::Null, None), |p| (to_json(&p.1), Some(p.0))),
        "mean" => (
            float_json(nums.iter().sum::<f64>() / nums.len() as f64),
            None,
        ),
        "median" => {
            let mut v = nums.clone();
            v.sort_by(f64::total_cmp);
            let m = v.len() / 2;
            let x = if v.len() % 2 == 1 {
                v[m]
            } else {
                (v[m - 1] + v[m]) / 2.0
            };
            (float_json(x), None)
        }
        "spread" => match &pts[0].1 {
            FieldValue::Integer(_) => {
                let ints = pts.iter().filter_map(|p| match p.1 {
                    FieldValue::Integer(i) => Some(i),
                    _ => None,
                });
                let (lo, hi) =
                    ints.fold((i64::MAX, i64::MIN), |(lo, hi), i| (lo.min(i), hi.max(i)));
                (json!(hi.wrapping_sub(lo)), None)
            }
            _ => {
                let lo = nums.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = nums.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (float_json(hi - lo), None)
            }
        },
        // The nearest-rank percentile, a selector (influxd's rule).
        _ if f.starts_with("percentile:") => {
            let n: f64 = f["percentile:".len()..].parse().unwrap_or(0.0);
            if nums.len() != pts.len() {
                return Err(format!("percentile() needs a numeric field, {fld} is not"));
            }
            let i = (pts.len() as f64 * n / 100.0 + 0.5).floor() as i64 - 1;
            let Ok(i) = usize::try_from(i) else {
                return Ok((Value::Null, None));
            };
            let mut sorted: Vec<&(i64, FieldValue)> = pts.iter().collect();
            sorted.sort_by(|a, b| {
                num(&a.1)
                    .unwrap_or(0.0)
                    .total_cmp(&num(&b.1).unwrap_or(0.0))
            });
            match sorted.get(i) {
                Some(p) => (to_json(&p.1), Some(p.0)),
                None => (Value::Null, None),
            }
        }
        // The sample standard deviation; of one value: null, as influxd.
        "stddev" if nums.len() < 2 => (Value::Null, None),
        "stddev" => {
            // influxd's arithmetic: a running mean, then the squares.
            let mut mean = 0.0;
            for (k, x) in nums.iter().enumerate() {
                mean += (x - mean) / (k + 1) as f64;
            }
            let var = nums.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>();
            (float_json((var / (nums.len() - 1) as f64).sqrt()), None)
        }
        _ => (Value::Null, None),
    })
}

type Rows = Option<(Vec<String>, Vec<Value>)>;

/// The aggregate rows of one group: one row, or one per `GROUP BY time`
/// bucket with `fill` applied.
fn aggregate_rows(
    s: &Select,
    members: &[&TaggedSeries],
    field_names: &std::collections::BTreeSet<String>,
    epoch: Option<Precision>,
) -> Result<Rows, String> {
    // (function, field, column) per output column.
    let mut targets: Vec<(String, String, String)> = Vec::new();
    // Per column: the transformation over it and its unit, if any.
    let mut outers: Vec<Option<(String, Option<i64>)>> = Vec::new();
    for (i, p) in s.fields.iter().enumerate() {
        if let Projection::Nested {
            outer,
            inner,
            field,
            unit,
        } = p
        {
            let alias = s.aliases.get(i).cloned().flatten();
            targets.push((
                inner.clone(),
                field.clone(),
                alias.unwrap_or_else(|| outer.clone()),
            ));
            outers.push(Some((outer.clone(), *unit)));
            continue;
        }
        let Projection::Agg(f, field) = p else {
            continue;
        };
        outers.push(None);
        let alias = s.aliases.get(i).cloned().flatten();
        if field == "*" {
            for fld in field_names {
                let col = match &alias {
                    Some(a) => format!("{a}_{fld}"),
                    None => format!("{f}_{fld}"),
                };
                targets.push((f.clone(), fld.clone(), col));
            }
        } else {
            let name = f.split(':').next().unwrap_or(f).to_string();
            targets.push((f.clone(), field.clone(), alias.unwrap_or(name)));
        }
    }
    let pts: Vec<Vec<(i64, FieldValue)>> = targets
        .iter()
        .map(|(_, fld, _)| {
            let mut v: Vec<(i64, FieldValue)> = members
                .iter()
                .flat_map(|(_, fs)| fs.get(fld).cloned().unwrap_or_default())
                .collect();
            v.sort_by_key(|p| p.0);
            v
        })
        .collect();
    let mut columns = vec!["time".to_string()];
    // A name used twice gets `_1`, `_2`, … as influxd names them.
    for t in &targets {
        let mut name = t.2.clone();
        let mut n = 0;
        while columns.contains(&name) {
            n += 1;
            name = format!("{}_{n}", t.2);
        }
        columns.push(name);
    }
    let Some((iv, off)) = s.group_time else {
        let mut row = vec![time_value(if s.has_min { s.min } else { 0 }, epoch)];
        let mut selector_time = None;
        for ((f, fld, _), p) in targets.iter().zip(&pts) {
            let (v, t) = aggregate(f, fld, p)?;
            if matches!(f.as_str(), "first" | "last") || (s.fields.len() == 1 && t.is_some()) {
                selector_time = t;
            }
            row.push(v);
        }
        // A lone selector reports its point's time, as InfluxDB does.
        if s.fields.len() == 1
            && columns.len() == 2
            && let Some(t0) = selector_time
        {
            row[0] = time_value(t0, epoch);
        }
        return Ok(Some((columns, vec![Value::Array(row)])));
    };
    let bucket = |t: i64| (t - off).div_euclid(iv) * iv + off;
    let first_point = pts.iter().filter_map(|p| p.first()).map(|p| p.0).min();
    let last_point = pts.iter().filter_map(|p| p.last()).map(|p| p.0).max();
    outers.resize(targets.len(), None);
    let (Some(lo), Some(hi)) = (
        if s.has_min {
            Some(scan_start(s))
        } else {
            first_point
        },
        if s.max != i64::MAX {
            Some(s.max)
        } else {
            last_point
        },
    ) else {
        return Ok(None);
    };
    let (start, end) = (bucket(lo), bucket(hi));
    let n = end.saturating_sub(start) / iv + 1;
    if n > MAX_BUCKETS {
        return Err(format!(
            "GROUP BY time({}) over this range makes {n} buckets, more than {MAX_BUCKETS}",
            super::timefmt::go_duration(iv)
        ));
    }
    // Per bucket, per column: the value and whether the bucket was empty.
    let mut rows: Vec<(i64, Vec<(Value, bool)>)> = Vec::with_capacity(n.max(0) as usize);
    for b in 0..n {
        let t0 = start + b * iv;
        let mut cells = Vec::with_capacity(targets.len());
        for ((f, fld, _), p) in targets.iter().zip(&pts) {
            let from = p.partition_point(|x| x.0 < t0.max(lo));
            let to = p.partition_point(|x| x.0 < t0.saturating_add(iv) && x.0 <= hi);
            let slice = &p[from..to.max(from)];
            let (v, _) = aggregate(f, fld, slice)?;
            cells.push((v, slice.is_empty()));
        }
        rows.push((t0, cells));
    }
    fill(&mut rows, &s.fill);
    if outers.iter().any(Option::is_some) {
        // The transformations, over each column's buckets; a row for each
        // time one of them produced a value, from the range's first bucket.
        let first = if s.has_min { bucket(s.min) } else { i64::MIN };
        let mut by_time: std::collections::BTreeMap<i64, Vec<(Value, bool)>> =
            std::collections::BTreeMap::new();
        for (c, o) in outers.iter().enumerate() {
            let Some((outer, unit)) = o else { continue };
            let col: Vec<(i64, Value)> = rows.iter().map(|r| (r.0, r.1[c].0.clone())).collect();
            let default = if outer == "elapsed" { 1 } else { iv };
            for (t, v) in transform(outer, unit.unwrap_or(default), &col) {
                if t >= first {
                    by_time
                        .entry(t)
                        .or_insert_with(|| vec![(Value::Null, true); outers.len()])[c] = (v, false);
                }
            }
        }
        rows = by_time.into_iter().collect();
    }
    if s.desc {
        rows.reverse();
    }
    let values: Vec<Value> = rows
        .into_iter()
        .skip(s.offset)
        .map(|(t0, cells)| {
            let mut r = vec![time_value(t0, epoch)];
            r.extend(cells.into_iter().map(|c| c.0));
            Value::Array(r)
        })
        .collect();
    let values = if s.limit > 0 {
        values.into_iter().take(s.limit).collect()
    } else {
        values
    };
    Ok((!values.is_empty()).then_some((columns, values)))
}

/// Applies `fill` to the empty buckets of `rows`.
fn fill(rows: &mut Vec<(i64, Vec<(Value, bool)>)>, how: &Fill) {
    let cols = rows.first().map_or(0, |r| r.1.len());
    match how {
        Fill::Null => {}
        Fill::None => rows.retain(|r| r.1.iter().any(|c| !c.1)),
        Fill::Value(x) => {
            for r in rows.iter_mut() {
                for c in r.1.iter_mut().filter(|c| c.1) {
                    c.0 = float_json(*x);
                }
            }
        }
        Fill::Previous => {
            for c in 0..cols {
                let mut last = Value::Null;
                for r in rows.iter_mut() {
                    if r.1[c].1 {
                        r.1[c].0 = last.clone();
                    } else {
                        last = r.1[c].0.clone();
                    }
                }
            }
        }
        Fill::Linear => {
            for c in 0..cols {
                let known: Vec<(usize, f64)> = rows
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| !r.1[c].1)
                    .filter_map(|(i, r)| r.1[c].0.as_f64().map(|v| (i, v)))
                    .collect();
                for w in known.windows(2) {
                    let ((i0, v0), (i1, v1)) = (w[0], w[1]);
                    for (i, r) in rows.iter_mut().enumerate().take(i1).skip(i0 + 1) {
                        let v = v0 + (v1 - v0) * (i - i0) as f64 / (i1 - i0) as f64;
                        r.1[c].0 = float_json(v);
                    }
                }
            }
        }
    }
}

/// The raw rows of one group: one per (time, series), columns in
/// InfluxDB's order (the grouped tags are the series' tags, not columns).
fn raw_rows(
    s: &Select,
    members: &[&TaggedSeries],
    field_names: &std::collections::BTreeSet<String>,
    tag_names: &std::collections::BTreeSet<String>,
    grouped: &[String],
    epoch: Option<Precision>,
) -> Rows {
    let all = s.fields.iter().any(|p| matches!(p, Projection::All));
    let wanted: Vec<String> = if all {
        let mut v: Vec<String> = field_names
            .iter()
            .chain(tag_names.iter().filter(|t| !grouped.contains(t)))
            .cloned()
            .collect();
        v.sort();
        v.dedup();
        v
    } else {
        s.fields
            .iter()
            .filter_map(|p| {
                if let Projection::Field(f) = p {
                    Some(f.clone())
                } else {
                    None
                }
            })
            .collect()
    };
    let mut rows: Vec<(i64, usize, Vec<Value>)> = Vec::new();
    for (si, (tags, fields)) in members.iter().enumerate() {
        let mut times: std::collections::BTreeMap<i64, Vec<Value>> =
            std::collections::BTreeMap::new();
        for (ci, col) in wanted.iter().enumerate() {
            if let Some(pts) = fields.get(col) {
                for (ts, v) in pts {
                    times
                        .entry(*ts)
                        .or_insert_with(|| vec![Value::Null; wanted.len()])[ci] = to_json(v);
                }
            }
        }
        for (ts, mut vals) in times {
            if vals
                .iter()
                .zip(&wanted)
                .all(|(v, c)| v.is_null() || tag_names.contains(c) && !field_names.contains(c))
            {
                continue;
            }
            for (ci, col) in wanted.iter().enumerate() {
                if vals[ci].is_null()
                    && let Some((_, tv)) = tags.iter().find(|(k, _)| k == col)
                {
                    vals[ci] = json!(tv);
                }
            }
            rows.push((ts, si, vals));
        }
    }
    rows.sort_by_key(|r| (r.0, r.1));
    if s.desc {
        rows.sort_by_key(|r| (std::cmp::Reverse(r.0), r.1));
    }
    rows.drain(..s.offset.min(rows.len()));
    if s.limit > 0 {
        rows.truncate(s.limit);
    }
    if rows.is_empty() {
        return None;
    }
    let mut columns = vec!["time".to_string()];
    if all {
        columns.extend(wanted);
    } else {
        // The projections' names, or their `AS` names.
        let named = s
            .fields
            .iter()
            .zip(&s.aliases)
            .filter_map(|(p, a)| match p {
                Projection::Field(f) => Some(a.clone().unwrap_or_else(|| f.clone())),
                _ => None,
            });
        columns.extend(named);
    }
    let values = rows
        .into_iter()
        .map(|(ts, _, vals)| {
            let mut r = vec![time_value(ts, epoch)];
            r.extend(vals);
            Value::Array(r)
        })
        .collect();
    Some((columns, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_parse() {
        assert_eq!(
            parse("create database x; SHOW DATABASES", 0).unwrap(),
            vec![
                Statement::CreateDatabase("x".into()),
                Statement::ShowDatabases
            ]
        );
        assert_eq!(
            parse("CREATE RETENTION POLICY \"one week\" ON db DURATION 1w REPLICATION 1 SHARD DURATION 1d DEFAULT", 0).unwrap()[0],
            Statement::CreateRetentionPolicy { name: "one week".into(), db: "db".into(), duration: 604_800_000_000_000, replication: 1, shard_duration: 86_400_000_000_000, default: true }
        );
        let Statement::Select(s) = &parse("SELECT count(v), mean(v) FROM db.autogen.cpu WHERE time >= '2023-11-14T22:13:20Z' AND time < now() - 1h AND host = 'a' LIMIT 5", 10_000_000_000_000).unwrap()[0] else { panic!() };
        assert_eq!(
            s.fields,
            vec![
                Projection::Agg("count".into(), "v".into()),
                Projection::Agg("mean".into(), "v".into())
            ]
        );
        assert_eq!(
            (s.db.as_deref(), s.rp.as_deref(), s.measurement.as_str()),
            (Some("db"), Some("autogen"), "cpu")
        );
        assert_eq!(
            (s.min, s.max, s.limit),
            (
                1_700_000_000_000_000_000,
                10_000_000_000_000 - 3_600_000_000_000 - 1,
                5
            )
        );
        assert_eq!(
            s.tags,
            vec![TagCond {
                key: "host".into(),
                eq: true,
                value: "a".into(),
                regex: false,
            }]
        );
        for (bad, want) in [
            ("", "empty query"),
            ("DELETE FROM x", "expected SELECT"),
            ("SELECT holt_winters(v) FROM m", "unsupported function"),
            ("SELECT v, count(v) FROM m", "mixing aggregate"),
            ("SELECT v FROM m WHERE time > 'yesterday'", "invalid time"),
            (
                "SELECT v FROM m WHERE v > x",
                "expected a string, number or boolean",
            ),
            ("SHOW CONTINUOUS QUERIES", "unsupported SHOW"),
            ("SHOW TAG VALUES", "expected WITH"),
            (
                "SELECT v FROM m WHERE host =~ /(/",
                "invalid regular expression",
            ),
            (
                "CREATE RETENTION POLICY r ON db REPLICATION 1",
                "needs DURATION",
            ),
            ("SELECT 'x", "unterminated"),
        ] {
            let e = parse(bad, 0).unwrap_err();
            assert!(e.contains(want), "{bad:?}: {e}");
        }
    }
}
