//! The metastore: databases → retention policies → shard groups → shards,
//! with ID counters, serialized as InfluxDB 1.x's `meta.Data` protobuf and
//! framed as its metastore backup (`u64 0x59590101 | u64 len | meta.Data |
//! u64 len | node JSON`).
//!
//! Every change is deterministic (IDs come from the counters, shard groups
//! from the timestamp), so replicas applying the same commands agree.

use std::collections::BTreeMap;

use indexmap::IndexMap;

use prost::Message;

use crate::proto::meta as pb;

/// The metastore backup magic.
pub const BACKUP_MAGIC: u64 = 0x5959_0101;
/// One hour in nanoseconds.
pub const HOUR: i64 = 3_600_000_000_000;
/// InfluxDB's default retention policy name.
pub const DEFAULT_RP: &str = "autogen";

/// A metastore error (the command is refused; nothing changes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    /// No such database.
    #[error("database not found: {0}")]
    DatabaseNotFound(String),
    /// No such retention policy.
    #[error("retention policy not found: {0}")]
    RetentionPolicyNotFound(String),
    /// The database already exists (import).
    #[error("database already exists: {0}")]
    DatabaseExists(String),
    /// The retention policy exists with other settings.
    #[error("retention policy already exists with different settings: {0}")]
    RetentionPolicyConflict(String),
    /// A name is not acceptable.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A continuous query of that name exists with another statement.
    #[error("continuous query already exists")]
    ContinuousQueryExists,
    /// A duration is not acceptable (influxd's message).
    #[error("{0}")]
    InvalidDuration(String),
    /// A metastore blob does not decode.
    #[error("metastore blob: {0}")]
    Decode(String),
    /// A user of that name exists (influxd's message).
    #[error("user already exists")]
    UserExists,
    /// No such user (influxd's message).
    #[error("user not found")]
    UserNotFound,
    /// A user needs a name (influxd's message).
    #[error("username required")]
    UsernameRequired,
    /// A subscription of that name exists on the retention policy
    /// (influxd's message).
    #[error("subscription already exists")]
    SubscriptionExists,
    /// No subscription of that name on the retention policy (influxd's
    /// message).
    #[error("subscription not found")]
    SubscriptionNotFound,
    /// A destination is not `udp`, `http` or `https` with a host and port
    /// (influxd's message).
    #[error("invalid subscription URL: {0}")]
    InvalidSubscriptionUrl(String),
}

/// The (database, retention policy) pairs a continuous query's SELECT
/// names, INTO first, then FROM and its subqueries' FROM (None: the
/// query's database, the default policy).
fn cq_retention_policies<'a>(
    s: &'a super::query::Select,
    out: &mut Vec<(Option<&'a str>, Option<&'a str>)>,
) {
    if let Some(t) = &s.into {
        out.push((t.db.as_deref(), t.rp.as_deref()));
    }
    match &s.subquery {
        Some(inner) => cq_retention_policies(inner, out),
        None => out.push((s.db.as_deref(), s.rp.as_deref())),
    }
}

/// A shard group: one time range of a retention policy, one shard here.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardGroup {
    /// Group id.
    pub id: u64,
    /// Inclusive start (ns).
    pub start: i64,
    /// Exclusive end (ns).
    pub end: i64,
    /// When deleted (0 = live).
    pub deleted_at: i64,
    /// Shard ids.
    pub shards: Vec<u64>,
}

/// A retention policy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetentionPolicy {
    /// Name.
    pub name: String,
    /// How long data is kept (ns; 0 = forever).
    pub duration: i64,
    /// Time span of one shard group (ns).
    pub shard_group_duration: i64,
    /// Replication factor (kept for InfluxDB tools; raft replicates to all).
    pub replica_n: u32,
    /// Shard groups, by start time.
    pub shard_groups: Vec<ShardGroup>,
    /// Subscriptions: where writes to this retention policy are forwarded.
    #[serde(default)]
    pub subscriptions: Vec<Subscription>,
}

/// A subscription (`CREATE SUBSCRIPTION`): the writes to its retention
/// policy are sent on to its destinations.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Subscription {
    /// Name.
    pub name: String,
    /// `ALL`: every destination gets every write; `ANY`: each write goes
    /// to one, in turn.
    pub mode: String,
    /// `udp://host:port`, `http://host:port`, `https://host:port`.
    pub destinations: Vec<String>,
}

/// A database.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Database {
    /// Name.
    pub name: String,
    /// Default retention policy.
    pub default_rp: String,
    /// Retention policies by name, in creation order (as influxd lists
    /// them).
    pub rps: IndexMap<String, RetentionPolicy>,
    /// Continuous queries: (name, statement as stored), in creation order.
    #[serde(default)]
    pub cqs: Vec<(String, String)>,
}

/// The whole metastore.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Metastore {
    /// Databases by name, in creation order (as influxd lists them).
    pub databases: IndexMap<String, Database>,
    /// Last shard group id given out.
    pub max_shard_group_id: u64,
    /// Last shard id given out.
    pub max_shard_id: u64,
    /// Users, in creation order (see [`super::users`]).
    #[serde(default)]
    pub users: Vec<super::users::User>,
}

/// Checks a database or retention policy name: it becomes a path component.
pub fn validate_name(name: &str) -> Result<(), MetaError> {
    let bad = |reason| {
        Err(MetaError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > 255 {
        return bad("longer than 255 bytes");
    }
    if name == "." || name == ".." {
        return bad("`.` and `..` are not names");
    }
    if name.contains(['/', '\\', '\0']) {
        return bad("contains `/`, `\\` or NUL");
    }
    Ok(())
}

/// InfluxDB's shard group duration for a retention duration (0 = forever).
pub fn default_shard_group_duration(duration: i64) -> i64 {
    match duration {
        0 => 168 * HOUR,
        d if d < 2 * 24 * HOUR => HOUR,
        d if d < 180 * 24 * HOUR => 24 * HOUR,
        _ => 168 * HOUR,
    }
}

/// A shard group duration as influxd keeps it: none given, the default
/// for the retention duration; at least an hour.
pub fn normalised_shard_duration(shard_group_duration: i64, duration: i64) -> i64 {
    match shard_group_duration {
        0 => default_shard_group_duration(duration),
        s if s < HOUR => HOUR,
        s => s,
    }
}

/// Nanoseconds from Go's zero time (January 1, year 1, UTC) to the Unix
/// epoch.
const GO_ZERO_TO_UNIX_NS: i128 = 62_135_596_800 * 1_000_000_000;

/// The `[start, end)` of the shard group a write at `ts` makes under a
/// shard group duration of `sgd`, as influxd makes it: `ts` rounded down
/// to a multiple of `sgd` counted from Go's zero time (so weekly groups
/// start on Mondays; groups that divide a day fall where counting from
/// the Unix epoch puts them), the end no later than the last time a point
/// may have.
pub fn aligned_group(ts: i64, sgd: i64) -> (i64, i64) {
    let sgd = i128::from(sgd.max(1));
    let start = i128::from(ts) - (i128::from(ts) + GO_ZERO_TO_UNIX_NS).rem_euclid(sgd);
    let end = start + sgd;
    let clamp = |t: i128| i64::try_from(t).unwrap_or(if t < 0 { i64::MIN } else { i64::MAX });
    (clamp(start), clamp(end))
}

impl Metastore {
    /// Whether database `db` exists.
    pub fn has_database(&self, db: &str) -> bool {
        self.databases.contains_key(db)
    }

    fn db(&self, db: &str) -> Result<&Database, MetaError> {
        self.databases
            .get(db)
            .ok_or_else(|| MetaError::DatabaseNotFound(db.to_string()))
    }

    fn db_mut(&mut self, db: &str) -> Result<&mut Database, MetaError> {
        self.databases
            .get_mut(db)
            .ok_or_else(|| MetaError::DatabaseNotFound(db.to_string()))
    }

    /// Creates a database (with `autogen`, kept forever) unless it exists.
    pub fn create_database(&mut self, name: &str) -> Result<(), MetaError> {
        validate_name(name)?;
        self.databases
            .entry(name.to_string())
            .or_insert_with(|| Database {
                name: name.to_string(),
                default_rp: DEFAULT_RP.into(),
                rps: [(
                    DEFAULT_RP.to_string(),
                    RetentionPolicy {
                        name: DEFAULT_RP.into(),
                        duration: 0,
                        shard_group_duration: default_shard_group_duration(0),
                        replica_n: 1,
                        shard_groups: Vec::new(),
                        subscriptions: Vec::new(),
                    },
                )]
                .into(),
                cqs: Vec::new(),
            });
        Ok(())
    }

    /// Creates a continuous query (its stored statement; the default
    /// retention policy's mark replaced by the database's default). As
    /// influxd: the same query again succeeds; another under the name is
    /// refused.
    pub fn create_continuous_query(
        &mut self,
        db: &str,
        name: &str,
        query: &str,
    ) -> Result<(), MetaError> {
        let mark = super::query::quote_ident(super::query::DEFAULT_RP_MARK);
        let default_rp = self.db(db)?.default_rp.clone();
        let query = query.replace(&mark, &super::query::quote_ident(&default_rp));
        // As influxd: every retention policy it writes to or reads from
        // (inside subqueries too) must exist.
        if let Ok(parsed) = super::query::parse(&query, 0)
            && let Some(super::query::Statement::CreateContinuousQuery { select, .. }) =
                parsed.first()
        {
            let mut named = Vec::new();
            cq_retention_policies(select, &mut named);
            for (d, rp) in named {
                let d = d.unwrap_or(db);
                let rp = rp.unwrap_or(&default_rp);
                if !self.db(d)?.rps.contains_key(rp) {
                    return Err(MetaError::RetentionPolicyNotFound(format!("{d}.{rp}")));
                }
            }
        }
        let d = self.db_mut(db)?;
        match d.cqs.iter().find(|(n, _)| n == name) {
            Some((_, q)) if *q == query => Ok(()),
            Some(_) => Err(MetaError::ContinuousQueryExists),
            None => {
                d.cqs.push((name.to_string(), query));
                Ok(())
            }
        }
    }

    /// Drops a continuous query (none of that name: nothing to do, as
    /// influxd).
    pub fn drop_continuous_query(&mut self, db: &str, name: &str) -> Result<(), MetaError> {
        self.db_mut(db)?.cqs.retain(|(n, _)| n != name);
        Ok(())
    }

    /// Creates a subscription on `db`.`rp`, as influxd: every destination
    /// must be `udp`, `http` or `https` with a host and port; a name is
    /// used once per retention policy.
    pub fn create_subscription(
        &mut self,
        db: &str,
        rp: &str,
        name: &str,
        mode: &str,
        destinations: &[String],
    ) -> Result<(), MetaError> {
        if let Some(bad) = destinations.iter().find(|d| !valid_destination(d)) {
            return Err(MetaError::InvalidSubscriptionUrl(bad.clone()));
        }
        let p = self
            .db_mut(db)?
            .rps
            .get_mut(rp)
            .ok_or_else(|| MetaError::RetentionPolicyNotFound(rp.to_string()))?;
        if p.subscriptions.iter().any(|s| s.name == name) {
            return Err(MetaError::SubscriptionExists);
        }
        p.subscriptions.push(Subscription {
            name: name.to_string(),
            mode: mode.to_string(),
            destinations: destinations.to_vec(),
        });
        Ok(())
    }

    /// Drops a subscription (influxd's error if there is none).
    pub fn drop_subscription(&mut self, db: &str, rp: &str, name: &str) -> Result<(), MetaError> {
        let p = self
            .db_mut(db)?
            .rps
            .get_mut(rp)
            .ok_or_else(|| MetaError::RetentionPolicyNotFound(rp.to_string()))?;
        let before = p.subscriptions.len();
        p.subscriptions.retain(|s| s.name != name);
        if p.subscriptions.len() == before {
            return Err(MetaError::SubscriptionNotFound);
        }
        Ok(())
    }

    /// Drops a database; returns the shard ids it held.
    pub fn drop_database(&mut self, name: &str) -> Vec<u64> {
        self.drop_privileges_on(name);
        self.databases
            .shift_remove(name)
            .map(|d| {
                d.rps
                    .values()
                    .flat_map(|rp| rp.shard_groups.iter().flat_map(|g| g.shards.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Creates a retention policy (idempotent with the same settings).
    pub fn create_retention_policy(
        &mut self,
        db: &str,
        name: &str,
        duration: i64,
        shard_group_duration: i64,
        replica_n: u32,
        make_default: bool,
    ) -> Result<(), MetaError> {
        validate_name(name)?;
        if duration < 0 || shard_group_duration < 0 {
            return Err(MetaError::InvalidDuration(
                "durations cannot be negative".into(),
            ));
        }
        if duration != 0 && duration < HOUR {
            return Err(MetaError::InvalidDuration(
                "retention policy duration must be at least 1h0m0s".into(),
            ));
        }
        let sgd = normalised_shard_duration(shard_group_duration, duration);
        if duration != 0 && duration < sgd {
            return Err(MetaError::InvalidDuration(
                "retention policy duration must be greater than the shard duration".into(),
            ));
        }
        let d = self.db_mut(db)?;
        if let Some(rp) = d.rps.get(name) {
            if rp.duration != duration
                || rp.shard_group_duration != sgd
                || rp.replica_n != replica_n.max(1)
            {
                return Err(MetaError::RetentionPolicyConflict(name.to_string()));
            }
        } else {
            d.rps.insert(
                name.to_string(),
                RetentionPolicy {
                    name: name.to_string(),
                    duration,
                    shard_group_duration: sgd,
                    replica_n: replica_n.max(1),
                    shard_groups: Vec::new(),
                    subscriptions: Vec::new(),
                },
            );
        }
        if make_default {
            d.default_rp = name.to_string();
        }
        Ok(())
    }

    /// Changes a retention policy's settings.
    pub fn alter_retention_policy(
        &mut self,
        db: &str,
        name: &str,
        duration: Option<i64>,
        shard_group_duration: Option<i64>,
        replica_n: Option<u32>,
        make_default: bool,
    ) -> Result<(), MetaError> {
        let d = self.db_mut(db)?;
        let rp = d
            .rps
            .get_mut(name)
            .ok_or_else(|| MetaError::RetentionPolicyNotFound(name.to_string()))?;
        let du = duration.unwrap_or(rp.duration);
        if du < 0 || (du != 0 && du < HOUR) {
            return Err(MetaError::InvalidDuration(
                "retention policy duration must be at least 1h0m0s".into(),
            ));
        }
        let sgd = match shard_group_duration {
            Some(s) if s < 0 => {
                return Err(MetaError::InvalidDuration(
                    "durations cannot be negative".into(),
                ));
            }
            Some(s) => normalised_shard_duration(s, du),
            None => rp.shard_group_duration,
        };
        if du != 0 && du < sgd {
            return Err(MetaError::InvalidDuration(
                "retention policy duration must be greater than the shard duration".into(),
            ));
        }
        rp.duration = du;
        rp.shard_group_duration = sgd;
        if let Some(r) = replica_n {
            rp.replica_n = r.max(1);
        }
        if make_default {
            d.default_rp = name.to_string();
        }
        Ok(())
    }

    /// Drops a retention policy; returns the shard ids it held.
    pub fn drop_retention_policy(&mut self, db: &str, name: &str) -> Result<Vec<u64>, MetaError> {
        let d = self.db_mut(db)?;
        let rp = d
            .rps
            .shift_remove(name)
            .ok_or_else(|| MetaError::RetentionPolicyNotFound(name.to_string()))?;
        Ok(rp
            .shard_groups
            .iter()
            .flat_map(|g| g.shards.clone())
            .collect())
    }

    /// The retention policy name `rp` resolves to (empty = the default).
    pub fn resolve_rp<'a>(&'a self, db: &str, rp: &'a str) -> Result<&'a str, MetaError> {
        let d = self.db(db)?;
        let name = if rp.is_empty() {
            d.default_rp.as_str()
        } else {
            rp
        };
        if d.rps.contains_key(name) {
            Ok(name)
        } else {
            Err(MetaError::RetentionPolicyNotFound(name.to_string()))
        }
    }

    /// The shard for a point at `ts`, creating its shard group if needed.
    pub fn shard_for(&mut self, db: &str, rp: &str, ts: i64) -> Result<u64, MetaError> {
        let (start, end) = self.group_bounds(db, rp, ts)?;
        let rp = self.resolve_rp(db, rp)?.to_string();
        let (mut gid, mut sid) = (self.max_shard_group_id, self.max_shard_id);
        let d = self.db_mut(db)?;
        let p = d
            .rps
            .get_mut(&rp)
            .ok_or_else(|| MetaError::RetentionPolicyNotFound(rp.clone()))?;
        if let Some(g) = p
            .shard_groups
            .iter()
            .find(|g| g.deleted_at == 0 && g.start <= ts && ts < g.end)
        {
            return Ok(g.shards[0]);
        }
        gid += 1;
        sid += 1;
        p.shard_groups.push(ShardGroup {
            id: gid,
            start,
            end,
            deleted_at: 0,
            shards: vec![sid],
        });
        p.shard_groups.sort_by_key(|g| g.start);
        self.max_shard_group_id = gid;
        self.max_shard_id = sid;
        Ok(sid)
    }

    /// The time range `[start, end)` of the shard group of `db`/`rp` that
    /// holds `ts`: the existing group's, or the one a write would create
    /// ([`aligned_group`], cut where it would meet a group made before).
    pub fn group_bounds(&self, db: &str, rp: &str, ts: i64) -> Result<(i64, i64), MetaError> {
        let rp = self.resolve_rp(db, rp)?;
        let p = self
            .db(db)?
            .rps
            .get(rp)
            .ok_or_else(|| MetaError::RetentionPolicyNotFound(rp.to_string()))?;
        if let Some(g) = p
            .shard_groups
            .iter()
            .find(|g| g.deleted_at == 0 && g.start <= ts && ts < g.end)
        {
            return Ok((g.start, g.end));
        }
        let (mut start, mut end) = aligned_group(ts, p.shard_group_duration);
        // Groups made when they were aligned otherwise are left whole.
        for g in p.shard_groups.iter().filter(|g| g.deleted_at == 0) {
            if g.end <= ts {
                start = start.max(g.end);
            } else if g.start > ts {
                end = end.min(g.start);
            }
        }
        Ok((start, end))
    }

    /// Marks a shard group deleted at `at`; returns its shard ids.
    pub fn delete_shard_group(
        &mut self,
        db: &str,
        rp: &str,
        id: u64,
        at: i64,
    ) -> Result<Vec<u64>, MetaError> {
        let d = self.db_mut(db)?;
        let p = d
            .rps
            .get_mut(rp)
            .ok_or_else(|| MetaError::RetentionPolicyNotFound(rp.to_string()))?;
        match p
            .shard_groups
            .iter_mut()
            .find(|g| g.id == id && g.deleted_at == 0)
        {
            Some(g) => {
                g.deleted_at = at;
                Ok(g.shards.clone())
            }
            None => Ok(Vec::new()),
        }
    }

    /// Every live shard: (db, rp, shard id, group start, group end).
    pub fn shards(&self) -> Vec<(String, String, u64, i64, i64)> {
        let mut out = Vec::new();
        for d in self.databases.values() {
            for p in d.rps.values() {
                for g in p.shard_groups.iter().filter(|g| g.deleted_at == 0) {
                    for s in &g.shards {
                        out.push((d.name.clone(), p.name.clone(), *s, g.start, g.end));
                    }
                }
            }
        }
        out
    }

    /// The metastore as InfluxDB's `meta.Data`.
    pub fn to_proto(&self, term: u64, index: u64) -> pb::Data {
        pb::Data {
            term,
            index,
            cluster_id: 0,
            max_node_id: 0,
            max_shard_group_id: self.max_shard_group_id,
            max_shard_id: self.max_shard_id,
            databases: self
                .databases
                .values()
                .map(|d| pb::DatabaseInfo {
                    name: d.name.clone(),
                    default_retention_policy: d.default_rp.clone(),
                    retention_policies: d
                        .rps
                        .values()
                        .map(|p| pb::RetentionPolicyInfo {
                            name: p.name.clone(),
                            duration: p.duration,
                            shard_group_duration: p.shard_group_duration,
                            replica_n: p.replica_n,
                            shard_groups: p
                                .shard_groups
                                .iter()
                                .map(|g| pb::ShardGroupInfo {
                                    id: g.id,
                                    start_time: g.start,
                                    end_time: g.end,
                                    deleted_at: g.deleted_at,
                                    shards: g
                                        .shards
                                        .iter()
                                        .map(|s| pb::ShardInfo {
                                            id: *s,
                                            ..Default::default()
                                        })
                                        .collect(),
                                    truncated_at: None,
                                })
                                .collect(),
                            subscriptions: p
                                .subscriptions
                                .iter()
                                .map(|s| pb::SubscriptionInfo {
                                    name: s.name.clone(),
                                    mode: s.mode.clone(),
                                    destinations: s.destinations.clone(),
                                })
                                .collect(),
                        })
                        .collect(),
                    continuous_queries: d
                        .cqs
                        .iter()
                        .map(|(name, query)| pb::ContinuousQueryInfo {
                            name: name.clone(),
                            query: query.clone(),
                        })
                        .collect(),
                })
                .collect(),
            users: self
                .users
                .iter()
                .map(|u| pb::UserInfo {
                    name: u.name.clone(),
                    hash: u.hash.clone(),
                    admin: u.admin,
                    privileges: u
                        .privileges
                        .iter()
                        .map(|(db, p)| pb::UserPrivilege {
                            database: db.clone(),
                            privilege: *p as i32,
                        })
                        .collect(),
                })
                .collect(),
            ..Default::default()
        }
    }

    /// A metastore from InfluxDB's `meta.Data` (names checked).
    pub fn from_proto(d: &pb::Data) -> Result<Self, MetaError> {
        let mut m = Metastore {
            max_shard_group_id: d.max_shard_group_id,
            max_shard_id: d.max_shard_id,
            ..Default::default()
        };
        for db in &d.databases {
            validate_name(&db.name)?;
            let mut rps = IndexMap::new();
            for p in &db.retention_policies {
                validate_name(&p.name)?;
                rps.insert(
                    p.name.clone(),
                    RetentionPolicy {
                        name: p.name.clone(),
                        duration: p.duration,
                        shard_group_duration: p.shard_group_duration,
                        replica_n: p.replica_n,
                        shard_groups: p
                            .shard_groups
                            .iter()
                            .map(|g| ShardGroup {
                                id: g.id,
                                start: g.start_time,
                                end: g.end_time,
                                deleted_at: g.deleted_at,
                                shards: g.shards.iter().map(|s| s.id).collect(),
                            })
                            .collect(),
                        subscriptions: p
                            .subscriptions
                            .iter()
                            .map(|s| Subscription {
                                name: s.name.clone(),
                                mode: s.mode.clone(),
                                destinations: s.destinations.clone(),
                            })
                            .collect(),
                    },
                );
            }
            m.databases.insert(
                db.name.clone(),
                Database {
                    name: db.name.clone(),
                    default_rp: db.default_retention_policy.clone(),
                    rps,
                    cqs: db
                        .continuous_queries
                        .iter()
                        .map(|c| (c.name.clone(), c.query.clone()))
                        .collect(),
                },
            );
        }
        for u in &d.users {
            let mut privileges = BTreeMap::new();
            for p in &u.privileges {
                let privilege =
                    super::users::Privilege::from_i32(p.privilege).ok_or_else(|| {
                        MetaError::Decode(format!(
                            "user {:?}: privilege {} on {:?} is not one of 0..=3",
                            u.name, p.privilege, p.database
                        ))
                    })?;
                privileges.insert(p.database.clone(), privilege);
            }
            if u.name.is_empty() || m.users.iter().any(|x| x.name == u.name) {
                return Err(MetaError::Decode(format!(
                    "user name {:?} is empty or repeated",
                    u.name
                )));
            }
            m.users.push(super::users::User {
                name: u.name.clone(),
                hash: u.hash.clone(),
                admin: u.admin,
                privileges,
            });
        }
        Ok(m)
    }

    /// InfluxDB's metastore backup: magic, meta.Data, node JSON (`null`).
    pub fn backup_blob(&self, term: u64, index: u64) -> Vec<u8> {
        let data = self.to_proto(term, index).encode_to_vec();
        let node = b"null\n";
        let mut out = Vec::with_capacity(data.len() + 32);
        out.extend_from_slice(&BACKUP_MAGIC.to_be_bytes());
        out.extend_from_slice(&(data.len() as u64).to_be_bytes());
        out.extend_from_slice(&data);
        out.extend_from_slice(&(node.len() as u64).to_be_bytes());
        out.extend_from_slice(node);
        out
    }

    /// Parses a metastore backup blob.
    pub fn from_backup_blob(b: &[u8]) -> Result<Self, MetaError> {
        let err = |s: &str| MetaError::Decode(s.to_string());
        let u64_at = |at: usize| {
            b.get(at..at + 8)
                .map(|s| u64::from_be_bytes(s.try_into().unwrap_or_default()))
                .ok_or_else(|| err("truncated"))
        };
        if u64_at(0)? != BACKUP_MAGIC {
            return Err(err("bad magic"));
        }
        let len = usize::try_from(u64_at(8)?).map_err(|_| err("length"))?;
        let data = b
            .get(16..16usize.checked_add(len).ok_or_else(|| err("length"))?)
            .ok_or_else(|| err("truncated meta.Data"))?;
        let node_at = 16 + len;
        let node_len = usize::try_from(u64_at(node_at)?).map_err(|_| err("node length"))?;
        if node_len > 1 << 20 || b.len() < node_at + 8 + node_len {
            return Err(err("truncated node JSON"));
        }
        let d = pb::Data::decode(data).map_err(|e| MetaError::Decode(e.to_string()))?;
        Self::from_proto(&d)
    }

    /// Imports databases of `src` (InfluxDB's restore `ImportData`): `db`
    /// (empty = all but `_internal`) renamed to `newdb`, optionally only
    /// retention policy `rp` renamed to `newrp`; shard groups and shards get
    /// new ids. Returns (old shard id, new shard id) pairs. Fails if a target
    /// database exists.
    pub fn import(
        &mut self,
        src: &Metastore,
        db: &str,
        newdb: &str,
        rp: &str,
        newrp: &str,
    ) -> Result<Vec<(u64, u64)>, MetaError> {
        let pick: Vec<&Database> = src
            .databases
            .values()
            .filter(|d| d.name != "_internal" && (db.is_empty() || d.name == db))
            .collect();
        if !db.is_empty() && pick.is_empty() {
            return Err(MetaError::DatabaseNotFound(db.to_string()));
        }
        let mut staged = self.clone();
        let mut map = Vec::new();
        let mut renamed = BTreeMap::new();
        for d in pick {
            let target = if !newdb.is_empty() {
                newdb.to_string()
            } else {
                d.name.clone()
            };
            validate_name(&target)?;
            if staged.databases.contains_key(&target) {
                return Err(MetaError::DatabaseExists(target));
            }
            let mut nd = Database {
                name: target.clone(),
                default_rp: d.default_rp.clone(),
                rps: IndexMap::new(),
                cqs: Vec::new(),
            };
            for p in d.rps.values().filter(|p| rp.is_empty() || p.name == rp) {
                let pname = if !rp.is_empty() && !newrp.is_empty() {
                    newrp.to_string()
                } else {
                    p.name.clone()
                };
                validate_name(&pname)?;
                let mut np = RetentionPolicy {
                    name: pname.clone(),
                    shard_groups: Vec::new(),
                    ..p.clone()
                };
                for g in &p.shard_groups {
                    staged.max_shard_group_id += 1;
                    let mut shards = Vec::new();
                    for s in &g.shards {
                        staged.max_shard_id += 1;
                        shards.push(staged.max_shard_id);
                        if g.deleted_at == 0 {
                            map.push((*s, staged.max_shard_id));
                        }
                    }
                    np.shard_groups.push(ShardGroup {
                        id: staged.max_shard_group_id,
                        shards,
                        ..g.clone()
                    });
                }
                if !rp.is_empty() && nd.default_rp == p.name {
                    nd.default_rp = pname.clone();
                }
                nd.rps.insert(pname, np);
            }
            if !nd.rps.contains_key(&nd.default_rp) {
                nd.default_rp = nd
                    .rps
                    .keys()
                    .next()
                    .cloned()
                    .unwrap_or_else(|| DEFAULT_RP.into());
            }
            renamed.insert(d.name.clone(), target.clone());
            staged.databases.insert(target, nd);
        }
        staged.import_users(src, &renamed, db.is_empty());
        *self = staged;
        Ok(map)
    }
}

/// Whether a subscription destination is one influxd accepts: scheme
/// `udp`, `http` or `https`, then a host and a port.
fn valid_destination(d: &str) -> bool {
    d.parse::<http::Uri>().is_ok_and(|u| {
        matches!(u.scheme_str(), Some("udp" | "http" | "https"))
            && u.host().is_some_and(|h| !h.is_empty())
            && u.port().is_some()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_are_checked_kept_and_carried_by_the_proto() {
        let mut m = Metastore::default();
        m.create_database("db").unwrap();
        let dests = vec!["udp://h:1".to_string(), "https://[::1]:8/x".to_string()];
        m.create_subscription("db", "autogen", "s", "ANY", &dests)
            .unwrap();
        assert_eq!(
            m.create_subscription("db", "autogen", "s", "ALL", &dests),
            Err(MetaError::SubscriptionExists)
        );
        for bad in ["ftp://h:1", "http://h", "http://h:", "h:1", "udp://a:b:c"] {
            assert_eq!(
                m.create_subscription("db", "autogen", "t", "ALL", &[bad.to_string()]),
                Err(MetaError::InvalidSubscriptionUrl(bad.to_string())),
                "{bad}"
            );
        }
        assert!(matches!(
            m.create_subscription("db", "nope", "t", "ALL", &dests),
            Err(MetaError::RetentionPolicyNotFound(_))
        ));
        let back = Metastore::from_proto(&m.to_proto(1, 2)).unwrap();
        assert_eq!(back.databases["db"].rps["autogen"].subscriptions.len(), 1);
        assert_eq!(back, m);
        m.drop_subscription("db", "autogen", "s").unwrap();
        assert_eq!(
            m.drop_subscription("db", "autogen", "s"),
            Err(MetaError::SubscriptionNotFound)
        );
    }

    #[test]
    fn shard_groups_are_deterministic_and_aligned() {
        let mut a = Metastore::default();
        a.create_database("db").unwrap();
        let week = 168 * HOUR;
        // The Unix epoch is a Thursday; influxd's weekly groups start on
        // Mondays (1969-12-29, 1970-01-05, …), counted from Go's zero time.
        let monday = 4 * 24 * HOUR;
        let s1 = a.shard_for("db", "", 5 * week + 10).unwrap();
        assert_eq!(a.shard_for("db", "autogen", 5 * week + 99).unwrap(), s1);
        let s2 = a.shard_for("db", "", -1).unwrap();
        assert_ne!(s1, s2);
        let g = &a.databases["db"].rps["autogen"].shard_groups;
        assert_eq!((g[0].start, g[0].end), (monday - week, monday));
        assert_eq!(
            (g[1].start, g[1].end),
            (monday + 4 * week, monday + 5 * week)
        );
        let mut b = Metastore::default();
        b.create_database("db").unwrap();
        b.shard_for("db", "", 5 * week + 10).unwrap();
        b.shard_for("db", "", -1).unwrap();
        assert_eq!(a, b, "same commands, same metastore");
    }

    #[test]
    fn shard_groups_are_aligned_as_influxds() {
        let (day, week) = (24 * HOUR, 168 * HOUR);
        // SHOW SHARD GROUPS of influxd 1.6.7 after writes at these times.
        let monday_2023_11_13 = 1_699_833_600_000_000_000;
        let tuesday = 1_700_000_000_000_000_000;
        assert_eq!(
            aligned_group(tuesday, week),
            (monday_2023_11_13, monday_2023_11_13 + week)
        );
        assert_eq!(aligned_group(0, week), (-3 * day, 4 * day));
        assert_eq!(aligned_group(4 * day, week), (4 * day, 11 * day));
        // Durations that divide a day count from midnight.
        assert_eq!(aligned_group(36 * HOUR, day), (day, 2 * day));
        assert_eq!(aligned_group(-1, HOUR), (-HOUR, 0));
        // Five days: Go's zero time is 719 162 days before 1970.
        assert_eq!(aligned_group(0, 5 * day), (-2 * day, 3 * day));
        // The ends of time.
        assert_eq!(aligned_group(i64::MAX - 1, week).1, i64::MAX);
        assert_eq!(aligned_group(i64::MIN + 2, week).0, i64::MIN);
    }

    #[test]
    fn a_new_group_stops_where_a_group_made_before_starts_or_ends() {
        let mut m = Metastore::default();
        m.create_database("db").unwrap();
        let (day, week) = (24 * HOUR, 168 * HOUR);
        // A group from the Unix epoch, as earlier versions made them.
        let rp = m
            .databases
            .get_mut("db")
            .unwrap()
            .rps
            .get_mut("autogen")
            .unwrap();
        rp.shard_groups.push(ShardGroup {
            id: 1,
            start: 0,
            end: week,
            deleted_at: 0,
            shards: vec![1],
        });
        (m.max_shard_group_id, m.max_shard_id) = (1, 1);
        // Monday's group would be [4d, 11d) and [-3d, 4d).
        assert_eq!(m.group_bounds("db", "", 8 * day).unwrap(), (week, 11 * day));
        assert_eq!(m.group_bounds("db", "", -day).unwrap(), (-3 * day, 0));
        assert_eq!(m.group_bounds("db", "", 2 * day).unwrap(), (0, week));
        let s = m.shard_for("db", "", 8 * day).unwrap();
        assert_eq!(m.shard_for("db", "", week).unwrap(), s);
        assert_ne!(m.shard_for("db", "", week - 1).unwrap(), s);
    }

    #[test]
    fn retention_policies_follow_influxdb_rules() {
        let mut m = Metastore::default();
        m.create_database("db").unwrap();
        m.create_retention_policy("db", "short", 24 * HOUR, 0, 1, true)
            .unwrap();
        assert_eq!(m.databases["db"].rps["short"].shard_group_duration, HOUR);
        assert_eq!(m.databases["db"].default_rp, "short");
        m.create_retention_policy("db", "short", 24 * HOUR, 0, 1, false)
            .unwrap();
        assert!(matches!(
            m.create_retention_policy("db", "short", 48 * HOUR, 0, 1, false),
            Err(MetaError::RetentionPolicyConflict(_))
        ));
        assert!(
            m.create_retention_policy("db", "tiny", 60, 0, 1, false)
                .is_err()
        );
        assert!(
            m.create_retention_policy("nope", "x", 0, 0, 1, false)
                .is_err()
        );
        for bad in ["", "..", "a/b", "a\\b", "x\0"] {
            assert!(m.create_database(bad).is_err(), "{bad:?}");
        }
        // Shorter than its 168h shard groups: refused, as influxd.
        assert!(
            m.alter_retention_policy("db", "autogen", Some(72 * HOUR), None, None, true)
                .is_err()
        );
        m.alter_retention_policy("db", "autogen", Some(172 * HOUR), None, None, true)
            .unwrap();
        assert_eq!(m.databases["db"].default_rp, "autogen");
        assert_eq!(
            m.drop_retention_policy("db", "short").unwrap(),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn the_backup_blob_round_trips_and_rejects_garbage() {
        let mut m = Metastore::default();
        m.create_database("a").unwrap();
        m.create_database("b").unwrap();
        m.shard_for("a", "", 1).unwrap();
        let blob = m.backup_blob(3, 9);
        assert_eq!(&blob[..8], &BACKUP_MAGIC.to_be_bytes());
        assert!(blob.ends_with(b"\0\0\0\0\0\0\0\x05null\n"));
        assert_eq!(Metastore::from_backup_blob(&blob).unwrap(), m);
        for cut in [0, 7, 15, 20, blob.len() - 10] {
            assert!(Metastore::from_backup_blob(&blob[..cut]).is_err(), "{cut}");
        }
    }

    #[test]
    fn import_renames_and_renumbers() {
        let mut src = Metastore::default();
        src.create_database("src").unwrap();
        src.create_database("_internal").unwrap();
        let old = src.shard_for("src", "", 100).unwrap();
        let mut dst = Metastore::default();
        dst.create_database("x").unwrap();
        dst.shard_for("x", "", 1).unwrap();
        dst.shard_for("x", "", 10 * 168 * HOUR).unwrap();
        let map = dst.import(&src, "src", "copy", "", "").unwrap();
        assert_eq!(map, vec![(old, 3)]);
        assert!(!dst.databases.contains_key("_internal"));
        assert_eq!(
            dst.databases["copy"].rps["autogen"].shard_groups[0].shards,
            vec![3]
        );
        assert!(matches!(
            dst.import(&src, "src", "copy", "", ""),
            Err(MetaError::DatabaseExists(_))
        ));
        let map = dst.import(&src, "src", "copy2", "autogen", "kept").unwrap();
        assert_eq!(map.len(), 1);
        assert_eq!(dst.databases["copy2"].default_rp, "kept");
    }
}
