//! The statements InfluxQL parses into.

use crate::tsdb::users::Privilege;

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
    Select(Box<Select>),
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
    /// `SHOW STATS [FOR 'module']`: the node's statistics (answered by the
    /// server, which holds them).
    ShowStats(Option<String>),
    /// `EXPLAIN [ANALYZE] SELECT …`: the query plan (ANALYZE: run, and timed).
    Explain {
        /// The statement explained.
        select: Box<Select>,
        /// `EXPLAIN ANALYZE`.
        analyze: bool,
    },
    /// `SHOW DIAGNOSTICS`: what the node runs and how it is configured
    /// (answered by the server).
    ShowDiagnostics,
    /// `SHOW SUBSCRIPTIONS`
    ShowSubscriptions,
    /// `CREATE SUBSCRIPTION name ON db.rp DESTINATIONS ALL|ANY 'url'[, …]`
    CreateSubscription {
        /// Name.
        name: String,
        /// Database.
        db: String,
        /// Retention policy.
        rp: String,
        /// `ALL` (every destination gets every write) or `ANY` (one each,
        /// in turn).
        mode: String,
        /// `udp://host:port`, `http(s)://host:port`.
        destinations: Vec<String>,
    },
    /// `DROP SUBSCRIPTION name ON db.rp`
    DropSubscription {
        /// Name.
        name: String,
        /// Database.
        db: String,
        /// Retention policy.
        rp: String,
    },
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
        /// The condition on tags.
        cond: Option<Cond>,
    },
    /// `SHOW FIELD KEYS [FROM m]`
    ShowFieldKeys(Option<String>),
    /// `DELETE [FROM m, /re/, …] [WHERE <tags and time>]`: the points of
    /// the matching series in the time range.
    Delete {
        /// Measurements (empty: all).
        from: Vec<Source>,
        /// The condition on tags.
        cond: Option<Cond>,
        /// First time (inclusive).
        min: i64,
        /// Last time (inclusive).
        max: i64,
    },
    /// `DROP SERIES [FROM …] [WHERE <tags>]`: the matching series, all
    /// their points.
    DropSeries {
        /// Measurements (empty: all).
        from: Vec<Source>,
        /// The condition on tags.
        cond: Option<Cond>,
        /// Whether WHERE compared time (influxd refuses it when the
        /// statement runs).
        timed: bool,
    },
    /// `DROP MEASUREMENT m`
    DropMeasurement(String),
    /// `CREATE CONTINUOUS QUERY name ON db [RESAMPLE …] BEGIN SELECT … END`
    CreateContinuousQuery {
        /// Name.
        name: String,
        /// Database.
        db: String,
        /// The statement as influxd stores it, its INTO and FROM qualified
        /// (an unnamed retention policy is [`DEFAULT_RP_MARK`], replaced by
        /// the database's default when the command applies).
        text: String,
        /// `RESAMPLE EVERY` (ns).
        every: Option<i64>,
        /// `RESAMPLE FOR` (ns).
        for_: Option<i64>,
        /// The SELECT it runs.
        select: Box<Select>,
    },
    /// `DROP CONTINUOUS QUERY name ON db`
    DropContinuousQuery {
        /// Name.
        name: String,
        /// Database.
        db: String,
    },
    /// `SHOW CONTINUOUS QUERIES`
    ShowContinuousQueries,
    /// `SHOW SHARDS`
    ShowShards,
    /// `SHOW SHARD GROUPS`
    ShowShardGroups,
    /// `SHOW SERIES|MEASUREMENT|TAG KEY|TAG VALUES|FIELD KEY [EXACT]
    /// CARDINALITY [ON db] …`: how many of what the listing statement
    /// `of` lists.
    ShowCardinality {
        /// `EXACT` (else an estimation, exact here).
        exact: bool,
        /// The database, if not the request's.
        on: Option<String>,
        /// The listing counted.
        of: Box<Statement>,
    },
    /// `SHOW SERIES [FROM m] [WHERE …]`
    ShowSeries {
        /// Measurement.
        from: Option<String>,
        /// The condition on tags.
        cond: Option<Cond>,
    },
}

/// Stands for the database's default retention policy in a continuous
/// query's stored text until its command applies (no name holds NUL).
pub const DEFAULT_RP_MARK: &str = "\u{0}default\u{0}";

/// A measurement a statement names: by name or by regular expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// `m`
    Name(String),
    /// `/re/`
    Regex(String),
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
    /// A field (or tag).
    Field(String),
    /// `func(field)`; field `*` for `count(*)`.
    Agg(Func, String),
    /// `transform(agg(field)[, unit])` over `GROUP BY time` buckets.
    Nested {
        /// The transformation.
        outer: Transform,
        /// The aggregate.
        inner: Func,
        /// The field.
        field: String,
        /// The unit (derivative, elapsed; ns) or window (moving_average).
        unit: Option<i64>,
    },
    /// Arithmetic over fields and numbers (raw), or over aggregates and
    /// numbers.
    Math(Expr),
    /// A call influxd parses but refuses when the statement runs (bad
    /// arguments): its error, reported then.
    Invalid(String),
    /// `top(field[, tag], N)` / `bottom(…)`: the N points of the highest
    /// (lowest) values, one per value of `tag` if given; `sample(field,
    /// N)`: N points picked at random. Alone in a SELECT.
    Selector {
        /// Which points are picked.
        pick: Pick,
        /// The field.
        field: String,
        /// The tag whose values must differ.
        tag: Option<String>,
        /// N (checked when the statement runs: None when missing).
        n: Option<i64>,
    },
}

/// The points a selector of several points picks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pick {
    /// `top`: the highest values.
    Top,
    /// `bottom`: the lowest values.
    Bottom,
    /// `sample`: at random (reservoir sampling), every point equally likely.
    Sample,
}

impl Pick {
    /// Its name, as influxd names its column.
    pub fn name(&self) -> &'static str {
        match self {
            Pick::Top => "top",
            Pick::Bottom => "bottom",
            Pick::Sample => "sample",
        }
    }
}

/// An aggregate or selector function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Func {
    /// `count`
    Count,
    /// `sum`
    Sum,
    /// `min` (a selector)
    Min,
    /// `max` (a selector)
    Max,
    /// `mean`
    Mean,
    /// `first` (a selector)
    First,
    /// `last` (a selector)
    Last,
    /// `median`
    Median,
    /// `mode`: the most frequent value.
    Mode,
    /// `spread`: max − min.
    Spread,
    /// `stddev`: the sample standard deviation.
    Stddev,
    /// `percentile(field, N)` (a selector).
    Percentile(f64),
    /// `distinct(field)`: a row per value (alone in a SELECT).
    Distinct,
    /// `count(distinct(field))`: how many values.
    CountDistinct,
    /// `integral(field[, unit])`: the area under the points (trapezoids),
    /// per unit (ns; default 1s).
    Integral(i64),
    /// No aggregate: a transformation of the raw points
    /// (`derivative(field)`).
    Raw,
}

impl Func {
    /// The function of a name (`percentile` with N = 0 until its argument
    /// is read).
    pub fn from_name(name: &str) -> Option<Func> {
        Some(match name.to_ascii_lowercase().as_str() {
            "count" => Func::Count,
            "sum" => Func::Sum,
            "min" => Func::Min,
            "max" => Func::Max,
            "mean" => Func::Mean,
            "first" => Func::First,
            "last" => Func::Last,
            "median" => Func::Median,
            "mode" => Func::Mode,
            "spread" => Func::Spread,
            "stddev" => Func::Stddev,
            "percentile" => Func::Percentile(0.0),
            "distinct" => Func::Distinct,
            "integral" => Func::Integral(1_000_000_000),
            _ => return None,
        })
    }

    /// Its name, as influxd names its column.
    pub fn name(&self) -> &'static str {
        match self {
            Func::Count => "count",
            Func::Sum => "sum",
            Func::Min => "min",
            Func::Max => "max",
            Func::Mean => "mean",
            Func::First => "first",
            Func::Last => "last",
            Func::Median => "median",
            Func::Mode => "mode",
            Func::Spread => "spread",
            Func::Stddev => "stddev",
            Func::Percentile(_) => "percentile",
            Func::Distinct => "distinct",
            Func::CountDistinct => "count",
            Func::Integral(_) => "integral",
            Func::Raw => "",
        }
    }

    /// Whether `func(*)` leaves out a field whose values are like `v`:
    /// a numeric function takes numbers, and `min`/`max` booleans too.
    pub fn skips_in_star(&self, v: &crate::tsdb::line_protocol::FieldValue) -> bool {
        use crate::tsdb::line_protocol::FieldValue as V;
        match v {
            V::Float(_) | V::Integer(_) | V::Unsigned(_) => false,
            V::Boolean(_) if matches!(self, Func::Min | Func::Max) => false,
            _ => self.numeric(),
        }
    }

    /// Whether it needs a numeric field.
    pub fn numeric(&self) -> bool {
        matches!(
            self,
            Func::Sum
                | Func::Min
                | Func::Max
                | Func::Mean
                | Func::Median
                | Func::Spread
                | Func::Stddev
                | Func::Percentile(_)
                | Func::Integral(_)
        )
    }
}

/// A transformation of the buckets of an aggregate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transform {
    /// `derivative`
    Derivative,
    /// `non_negative_derivative`
    NonNegativeDerivative,
    /// `difference`
    Difference,
    /// `non_negative_difference`
    NonNegativeDifference,
    /// `cumulative_sum`
    CumulativeSum,
    /// `moving_average`
    MovingAverage,
    /// `elapsed`
    Elapsed,
    /// `holt_winters(agg, h, m)` / `holt_winters_with_fit(…)`: `h` buckets
    /// forecast, a season of `m` buckets (below 2: none), the fitted
    /// values too if `fit`.
    HoltWinters {
        /// Buckets forecast.
        h: i64,
        /// Buckets in a season.
        m: i64,
        /// `holt_winters_with_fit`.
        fit: bool,
    },
    /// An exponential average, a momentum or an efficiency indicator
    /// (`exponential_moving_average(field, period[, hold[, warmup]])`, …).
    Indicator(super::indicators::Indicator),
}

impl Transform {
    /// The transformation of a name.
    pub fn from_name(name: &str) -> Option<Transform> {
        Some(match name.to_ascii_lowercase().as_str() {
            "derivative" => Transform::Derivative,
            "non_negative_derivative" => Transform::NonNegativeDerivative,
            "difference" => Transform::Difference,
            "non_negative_difference" => Transform::NonNegativeDifference,
            "cumulative_sum" => Transform::CumulativeSum,
            "moving_average" => Transform::MovingAverage,
            "elapsed" => Transform::Elapsed,
            n if super::indicators::IndicatorKind::from_name(n).is_some() => {
                let kind = super::indicators::IndicatorKind::from_name(n)?;
                Transform::Indicator(super::indicators::Indicator {
                    kind,
                    period: 0,
                    hold: -1,
                    warmup: if kind == super::indicators::IndicatorKind::Cmo {
                        super::indicators::Warmup::None
                    } else {
                        super::indicators::Warmup::Exponential
                    },
                })
            }
            "holt_winters" => Transform::HoltWinters {
                h: 0,
                m: 0,
                fit: false,
            },
            "holt_winters_with_fit" => Transform::HoltWinters {
                h: 0,
                m: 0,
                fit: true,
            },
            _ => return None,
        })
    }

    /// Its name, as influxd names its column.
    pub fn name(&self) -> &'static str {
        match self {
            Transform::Derivative => "derivative",
            Transform::NonNegativeDerivative => "non_negative_derivative",
            Transform::Difference => "difference",
            Transform::NonNegativeDifference => "non_negative_difference",
            Transform::CumulativeSum => "cumulative_sum",
            Transform::MovingAverage => "moving_average",
            Transform::Elapsed => "elapsed",
            Transform::HoltWinters { fit: false, .. } => "holt_winters",
            Transform::HoltWinters { fit: true, .. } => "holt_winters_with_fit",
            Transform::Indicator(i) => i.kind.name(),
        }
    }
}

/// Arithmetic in a projection.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A field.
    Field(String),
    /// An aggregate of a field.
    Call(Func, String),
    /// An integer literal.
    Int(i64),
    /// A float literal.
    Float(f64),
    /// A string literal (`'x'`): a type error beside any field, as
    /// influxd's.
    Str(String),
    /// `true` or `false`: as a string literal.
    Bool(bool),
    /// `-e`
    Neg(Box<Expr>),
    /// `l op r`
    Bin(Box<Expr>, Op, Box<Expr>),
    /// A call of a function influxd does not know (an error when the
    /// statement runs).
    Undefined(String),
}

/// An arithmetic operator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
}

impl Op {
    /// The operator as InfluxQL writes it.
    pub fn symbol(&self) -> &'static str {
        match self {
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
            Op::Div => "/",
            Op::Rem => "%",
        }
    }
}

impl Expr {
    /// Whether it holds an aggregate.
    pub fn has_call(&self) -> bool {
        match self {
            Expr::Call(..) | Expr::Undefined(_) => true,
            Expr::Neg(e) => e.has_call(),
            Expr::Bin(l, _, r) => l.has_call() || r.has_call(),
            _ => false,
        }
    }

    /// Whether it holds a field outside any aggregate.
    pub fn has_field(&self) -> bool {
        match self {
            Expr::Field(_) => true,
            Expr::Neg(e) => e.has_field(),
            Expr::Bin(l, _, r) => l.has_field() || r.has_field(),
            _ => false,
        }
    }

    /// Its fields and aggregates, left to right.
    pub fn leaves<'a>(&'a self, out: &mut Vec<&'a Expr>) {
        match self {
            Expr::Field(_) | Expr::Call(..) | Expr::Undefined(_) => out.push(self),
            Expr::Neg(e) => e.leaves(out),
            Expr::Bin(l, _, r) => {
                l.leaves(out);
                r.leaves(out);
            }
            _ => {}
        }
    }

    /// Its column name as influxd's: the names of its fields and functions
    /// joined by `_`.
    pub fn column_name(&self) -> String {
        let mut leaves = Vec::new();
        self.leaves(&mut leaves);
        leaves
            .iter()
            .map(|l| match l {
                Expr::Field(f) => f.clone(),
                Expr::Call(f, _) => f.name().to_string(),
                Expr::Undefined(name) => name.clone(),
                _ => String::new(),
            })
            .collect::<Vec<_>>()
            .join("_")
    }
}

/// A WHERE condition (time comparisons taken out into the bounds).
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// Both.
    And(Box<Cond>, Box<Cond>),
    /// Either.
    Or(Box<Cond>, Box<Cond>),
    /// `expr op expr` over fields (`v * 2 > 5`, `a > b`): tested row by
    /// row.
    Expr {
        /// Left side.
        left: Expr,
        /// The comparison (not a regular expression's).
        op: CmpOp,
        /// Right side.
        right: Expr,
    },
    /// `key op value`: on a tag or on a field, decided when the series are
    /// known.
    Cmp {
        /// Tag key or field.
        key: String,
        /// The comparison.
        op: CmpOp,
        /// What it is compared with.
        value: Lit,
    },
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `!=` or `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `=~`
    Match,
    /// `!~`
    NotMatch,
}

impl CmpOp {
    /// The operator of a symbol.
    pub fn from_sym(s: &str) -> Option<CmpOp> {
        Some(match s {
            "=" => CmpOp::Eq,
            "!=" | "<>" => CmpOp::Ne,
            "<" => CmpOp::Lt,
            "<=" => CmpOp::Le,
            ">" => CmpOp::Gt,
            ">=" => CmpOp::Ge,
            "=~" => CmpOp::Match,
            "!~" => CmpOp::NotMatch,
            _ => return None,
        })
    }
}

/// A literal a condition compares with.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    /// A number.
    Num(f64),
    /// A string.
    Str(String),
    /// A boolean.
    Bool(bool),
    /// A regular expression (checked when parsed).
    Regex(String),
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
    /// The condition on tags and fields, if any.
    pub cond: Option<Cond>,
    /// Row limit (0 = none).
    pub limit: usize,
    /// `GROUP BY time(interval[, offset])`: (interval, offset) in ns.
    pub group_time: Option<(i64, i64)>,
    /// `GROUP BY` tags.
    pub group_tags: GroupTags,
    /// `fill(…)` of empty time buckets.
    pub fill: Fill,
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
    /// The grouping whose groups `SLIMIT`/`SOFFSET` count, when not the
    /// statement's own: a subquery's reads count the groups of its outer
    /// query, as influxd passes the outer dimensions down.
    pub slimit_by: Option<GroupTags>,
    /// How many times `FROM` names the measurement read (`FROM m, m`,
    /// `FROM m, /m/`): influxd reads it once per name, so each point
    /// counts that many times (1 when named once).
    pub reads: usize,
    /// `INTO [[db.]rp.]measurement`: where the rows are written.
    pub into: Option<Target>,
    /// Token positions of the INTO target and of the FROM source (for the
    /// text a continuous query is stored as).
    pub spans: [(usize, usize); 2],
    /// `FROM a, /re/, …`: the measurements, when more than one or a regular
    /// expression is named (empty: `measurement` alone).
    pub sources: Vec<Source>,
    /// `FROM (SELECT …)`: the rows of a subquery, read as series.
    pub subquery: Option<Box<Select>>,
    /// `tz('…')`: the time zone of `GROUP BY time` windows, of the times
    /// answered and of wall-clock times in the condition.
    pub tz: Option<chrono_tz::Tz>,
}

/// A measurement written or read, as `[[db.]rp.]m`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Target {
    /// Database, if given.
    pub db: Option<String>,
    /// Retention policy, if given.
    pub rp: Option<String>,
    /// Measurement.
    pub measurement: String,
    /// `:MEASUREMENT` (INTO): each row goes to the measurement it was
    /// read from.
    pub each_source: bool,
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

impl GroupTags {
    /// The tag keys grouped by, sorted and each once (none for no
    /// grouping); None for `GROUP BY *`, whose keys are the data's.
    pub fn keys(&self) -> Option<Vec<String>> {
        match self {
            GroupTags::None => Some(Vec::new()),
            GroupTags::All => None,
            GroupTags::Keys(k) => {
                let mut k = k.clone();
                k.sort();
                k.dedup();
                Some(k)
            }
        }
    }
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
