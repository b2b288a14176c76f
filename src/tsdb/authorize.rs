//! Who may run which statement, as influxd 1.6.7 decides it (its
//! `QueryAuthorizer`): what each statement requires, influxd's rule for the
//! first admin, and its messages (checked against it by the differential
//! test `tests/auth_interop.rs`).

use super::meta::Metastore;
use super::query::Statement;
use super::users::{Privilege, User};

/// What one statement requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Needed {
    /// Nothing.
    Nothing,
    /// The admin flag.
    Admin,
    /// A privilege on a database (`None`: the request's `db`).
    On(Privilege, Option<String>),
}

/// What `stmt` requires (InfluxQL's `RequiredPrivileges`).
pub fn needed(stmt: &Statement) -> Needed {
    match stmt {
        Statement::Select(s) | Statement::Explain { select: s, .. } => {
            Needed::On(Privilege::Read, s.db.clone())
        }
        Statement::ShowDatabases => Needed::Nothing,
        Statement::ShowQueries
        | Statement::ShowTagKeys(_)
        | Statement::ShowTagValues { .. }
        | Statement::ShowFieldKeys(_)
        | Statement::ShowSeries { .. } => Needed::On(Privilege::Read, None),
        Statement::ShowMeasurements { on, .. }
        | Statement::ShowRetentionPolicies(on)
        | Statement::ShowCardinality { on, .. } => Needed::On(Privilege::Read, on.clone()),
        // influxd asks only WRITE on the database for this one.
        Statement::DropRetentionPolicy(_, db) => Needed::On(Privilege::Write, Some(db.clone())),
        Statement::Delete { .. } => Needed::On(Privilege::Write, None),
        Statement::CreateContinuousQuery { db, .. } | Statement::DropContinuousQuery { db, .. } => {
            Needed::On(Privilege::Write, Some(db.clone()))
        }
        Statement::ShowContinuousQueries => Needed::On(Privilege::Read, None),
        Statement::ShowShards
        | Statement::ShowShardGroups
        | Statement::ShowStats(_)
        | Statement::ShowDiagnostics
        | Statement::ShowSubscriptions
        | Statement::CreateSubscription { .. }
        | Statement::DropSubscription { .. } => Needed::Admin,
        Statement::DropSeries { .. } | Statement::DropMeasurement(_) => {
            Needed::On(Privilege::All, None)
        }
        Statement::CreateDatabase(_)
        | Statement::DropDatabase(_)
        | Statement::CreateRetentionPolicy { .. }
        | Statement::AlterRetentionPolicy { .. }
        | Statement::CreateUser { .. }
        | Statement::DropUser(_)
        | Statement::SetPassword { .. }
        | Statement::Grant { .. }
        | Statement::Revoke { .. }
        | Statement::ShowUsers
        | Statement::ShowGrants(_)
        | Statement::KillQuery(_) => Needed::Admin,
    }
}

/// Whether `user` (`None`: none authenticated) may run `stmts` (each with
/// its text) with `db` as the request's database; the refusal is influxd's
/// message (the HTTP API answers 403 `error authorizing query: <it>`).
pub fn authorize_query(
    meta: &Metastore,
    user: Option<&User>,
    stmts: &[(Statement, String)],
    db: &str,
) -> Result<(), String> {
    if meta.users.is_empty() {
        // The only thing to do before the first user: create an admin.
        return match stmts.first() {
            Some((Statement::CreateUser { admin: true, .. }, _)) => Ok(()),
            _ => Err("create admin user first or disable authentication".into()),
        };
    }
    let Some(user) = user else {
        return Err("no user provided".into());
    };
    if user.admin {
        return Ok(());
    }
    for (stmt, text) in stmts {
        let refuse = |what: String| {
            Err(format!(
                "{} not authorized to execute statement '{text}', requires {what}",
                user.name
            ))
        };
        match needed(stmt) {
            Needed::Nothing => {}
            Needed::Admin => return refuse("admin privilege".into()),
            Needed::On(p, on) => {
                let on = on.as_deref().unwrap_or(db);
                if !user.may(p, on) {
                    return refuse(format!("{} on {on}", p.as_str()));
                }
            }
        }
    }
    Ok(())
}

/// Whether `user` may write into `db`; the refusal is influxd's message
/// (HTTP 403).
pub fn authorize_write(user: Option<&User>, db: &str) -> Result<(), String> {
    match user {
        None => Err(format!("user is required to write to database {db:?}")),
        Some(u) if u.may(Privilege::Write, db) => Ok(()),
        Some(u) => Err(format!(
            "{:?} user is not authorized to write to database {db:?}",
            u.name
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::query::parse_with_text;

    fn meta() -> Metastore {
        let mut m = Metastore::default();
        m.create_database("x").unwrap();
        m.create_user("root", "h", true).unwrap();
        m.create_user("rd", "h", false).unwrap();
        m.set_privilege("rd", "x", Privilege::Read, false).unwrap();
        m
    }

    fn check(m: &Metastore, who: Option<&str>, q: &str, db: &str) -> Result<(), String> {
        let stmts = parse_with_text(q, 0).unwrap();
        authorize_query(m, who.and_then(|w| m.user(w)), &stmts, db)
    }

    #[test]
    fn statements_need_what_influxd_asks_with_its_messages() {
        let m = meta();
        assert_eq!(check(&m, Some("rd"), "SELECT * FROM m", "x"), Ok(()));
        assert_eq!(check(&m, Some("rd"), "show databases", ""), Ok(()));
        assert_eq!(
            check(
                &m,
                Some("rd"),
                "select mean(v), count(\"v\") from y..m where time > now() - 1h",
                "x"
            ),
            Err(
                "rd not authorized to execute statement 'SELECT mean(v), count(v) FROM y..m \
                 WHERE time > now() - 1h', requires READ on y"
                    .into()
            )
        );
        assert_eq!(
            check(&m, Some("rd"), "SELECT * FROM m; create database z", "x"),
            Err("rd not authorized to execute statement 'CREATE DATABASE z', requires admin privilege".into())
        );
        assert_eq!(
            check(&m, Some("rd"), "set password for rd = 'q'", "x"),
            Err(
                "rd not authorized to execute statement 'SET PASSWORD FOR rd = [REDACTED]', \
                 requires admin privilege"
                    .into()
            )
        );
        assert_eq!(
            check(&m, Some("rd"), "DROP RETENTION POLICY autogen ON x", "x"),
            Err(
                "rd not authorized to execute statement 'DROP RETENTION POLICY autogen ON x', \
                 requires WRITE on x"
                    .into()
            )
        );
        assert_eq!(check(&m, Some("root"), "DROP DATABASE x", ""), Ok(()));
        assert_eq!(
            check(&m, None, "SHOW DATABASES", ""),
            Err("no user provided".into())
        );
    }

    #[test]
    fn before_any_user_only_an_admin_may_be_created() {
        let m = Metastore::default();
        assert_eq!(
            check(
                &m,
                None,
                "CREATE USER a WITH PASSWORD 'p' WITH ALL PRIVILEGES; CREATE DATABASE d",
                ""
            ),
            Ok(())
        );
        for q in ["CREATE USER a WITH PASSWORD 'p'", "SHOW DATABASES"] {
            assert_eq!(
                check(&m, None, q, ""),
                Err("create admin user first or disable authentication".into())
            );
        }
    }

    #[test]
    fn writes_need_write_or_all() {
        let m = meta();
        assert_eq!(authorize_write(m.user("root"), "x"), Ok(()));
        assert_eq!(
            authorize_write(m.user("rd"), "x"),
            Err("\"rd\" user is not authorized to write to database \"x\"".into())
        );
        assert_eq!(
            authorize_write(None, "x"),
            Err("user is required to write to database \"x\"".into())
        );
    }
}
