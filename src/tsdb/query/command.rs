//! The raft commands of the statements that change state.

use super::ast::Statement;
use crate::proto::tsdb::{self as pb, command::Cmd};

impl Statement {
    /// The raft command a state-changing statement becomes (`db` is the
    /// request's database); `None` for reads; `Some(Err)` for one refused
    /// as it runs (the statement's error).
    pub fn command(&self, db: &str) -> Option<Result<Cmd, String>> {
        if let Some(d) = super::delete::delete_command(self, db) {
            return Some(d.map(Cmd::DeleteSeries));
        }
        Some(Ok(match self.clone() {
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
            Statement::CreateContinuousQuery { name, db, text, .. } => {
                Cmd::CreateContinuousQuery(pb::CreateContinuousQuery {
                    db,
                    name,
                    query: text,
                })
            }
            Statement::DropContinuousQuery { name, db } => {
                Cmd::DropContinuousQuery(pb::DropContinuousQuery { db, name })
            }
            Statement::CreateSubscription {
                name,
                db,
                rp,
                mode,
                destinations,
            } => Cmd::CreateSubscription(pb::CreateSubscription {
                db,
                rp,
                name,
                mode,
                destinations,
            }),
            Statement::DropSubscription { name, db, rp } => {
                Cmd::DropSubscription(pb::DropSubscription { db, rp, name })
            }
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
        }))
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
