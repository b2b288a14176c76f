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
pub(super) const TRANSFORMS: &[&str] = &[
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
