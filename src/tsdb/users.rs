//! Users and privileges, as InfluxDB 1.x keeps them in its metastore
//! (`meta.Data.Users`): a bcrypt hash, an admin flag, and one privilege per
//! database. They replicate as raft commands, travel inside snapshots and
//! backups with the rest of the metastore, and are checked by the HTTP
//! API when authentication is on (`server::auth`).
//!
//! Semantics follow influxd 1.6.7, checked against it: users keep their
//! creation order (`SHOW USERS`); `GRANT` replaces the privilege on a
//! database, `REVOKE` clears its bits (`REVOKE READ` from `ALL` leaves
//! `WRITE`); dropping a database drops every privilege on it.

use std::collections::BTreeMap;

use super::meta::{MetaError, Metastore};

/// A privilege on a database, numbered as InfluxQL's (and as the metastore
/// protobuf stores it).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Privilege {
    /// Nothing (what a full `REVOKE` leaves).
    None = 0,
    /// Queries.
    Read = 1,
    /// Writes.
    Write = 2,
    /// Both.
    All = 3,
}

impl Privilege {
    /// From the stored number; `None` for an unknown one.
    pub fn from_i32(v: i32) -> Option<Self> {
        Some(match v {
            0 => Self::None,
            1 => Self::Read,
            2 => Self::Write,
            3 => Self::All,
            _ => return None,
        })
    }

    /// As `SHOW GRANTS` and influxd's messages name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NO PRIVILEGES",
            Self::Read => "READ",
            Self::Write => "WRITE",
            Self::All => "ALL PRIVILEGES",
        }
    }

    /// `self` with the bits of `other` cleared (REVOKE).
    pub fn without(self, other: Privilege) -> Privilege {
        Self::from_i32(self as i32 & !(other as i32)).unwrap_or(Self::None)
    }
}

/// A user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct User {
    /// Name.
    pub name: String,
    /// bcrypt hash of the password.
    pub hash: String,
    /// Admin: may run every statement.
    pub admin: bool,
    /// Privilege per database.
    pub privileges: BTreeMap<String, Privilege>,
}

impl User {
    /// Whether the user may act with `needed` on `db` (influxd's
    /// `AuthorizeDatabase`: admin, nothing needed, or exactly the privilege
    /// or `ALL`).
    pub fn may(&self, needed: Privilege, db: &str) -> bool {
        if self.admin || needed == Privilege::None {
            return true;
        }
        self.privileges
            .get(db)
            .is_some_and(|p| *p == needed || *p == Privilege::All)
    }
}

impl Metastore {
    /// The user named `name`.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    fn user_mut(&mut self, name: &str) -> Result<&mut User, MetaError> {
        self.users
            .iter_mut()
            .find(|u| u.name == name)
            .ok_or(MetaError::UserNotFound)
    }

    /// Whether any user is an admin (with authentication on, influxd asks
    /// for credentials only then).
    pub fn admin_exists(&self) -> bool {
        self.users.iter().any(|u| u.admin)
    }

    /// Creates a user (refused if the name is taken).
    pub fn create_user(&mut self, name: &str, hash: &str, admin: bool) -> Result<(), MetaError> {
        if name.is_empty() {
            return Err(MetaError::UsernameRequired);
        }
        if self.user(name).is_some() {
            return Err(MetaError::UserExists);
        }
        self.users.push(User {
            name: name.to_string(),
            hash: hash.to_string(),
            admin,
            privileges: BTreeMap::new(),
        });
        Ok(())
    }

    /// Drops a user.
    pub fn drop_user(&mut self, name: &str) -> Result<(), MetaError> {
        let before = self.users.len();
        self.users.retain(|u| u.name != name);
        if self.users.len() == before {
            return Err(MetaError::UserNotFound);
        }
        Ok(())
    }

    /// Replaces a user's password hash.
    pub fn set_password(&mut self, name: &str, hash: &str) -> Result<(), MetaError> {
        self.user_mut(name)?.hash = hash.to_string();
        Ok(())
    }

    /// GRANT (`revoke` false: the privilege on `db` becomes `p`) or REVOKE
    /// (`p`'s bits are cleared from it; `ALL` leaves none). The database
    /// must exist.
    pub fn set_privilege(
        &mut self,
        name: &str,
        db: &str,
        p: Privilege,
        revoke: bool,
    ) -> Result<(), MetaError> {
        self.user_mut(name)?;
        if !self.has_database(db) {
            return Err(MetaError::DatabaseNotFound(db.to_string()));
        }
        let u = self.user_mut(name)?;
        let now = u.privileges.get(db).copied().unwrap_or(Privilege::None);
        let next = match (revoke, p) {
            (false, p) => p,
            (true, Privilege::All) => Privilege::None,
            (true, p) => now.without(p),
        };
        u.privileges.insert(db.to_string(), next);
        Ok(())
    }

    /// GRANT / REVOKE ALL PRIVILEGES: the admin flag.
    pub fn set_admin(&mut self, name: &str, admin: bool) -> Result<(), MetaError> {
        self.user_mut(name)?.admin = admin;
        Ok(())
    }

    /// Forgets every privilege on `db` (it was dropped).
    pub(crate) fn drop_privileges_on(&mut self, db: &str) {
        for u in &mut self.users {
            u.privileges.remove(db);
        }
    }

    /// A restore's users: the users of `src` with a privilege on a restored
    /// database (`renamed`: source name → restored name), and on a restore
    /// of every database (`whole`) its admins too. Each one absent here is
    /// added (hash and admin flag as backed up); each gets its privileges
    /// on the restored databases. A user present here keeps its password
    /// and flag. (influxd's restore drops users and grants; restoring them
    /// is what its users ask for.)
    pub(crate) fn import_users(
        &mut self,
        src: &Metastore,
        renamed: &BTreeMap<String, String>,
        whole: bool,
    ) {
        for su in &src.users {
            let concerned =
                (whole && su.admin) || su.privileges.keys().any(|db| renamed.contains_key(db));
            if !concerned {
                continue;
            }
            if self.user(&su.name).is_none() {
                self.users.push(User {
                    privileges: BTreeMap::new(),
                    ..su.clone()
                });
            }
            let Ok(u) = self.user_mut(&su.name) else {
                continue;
            };
            for (db, p) in &su.privileges {
                if let Some(to) = renamed.get(db) {
                    u.privileges.entry(to.clone()).or_insert(*p);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_replace_and_revokes_clear_bits_as_influxd() {
        let mut m = Metastore::default();
        m.create_database("x").unwrap();
        m.create_user("rd", "h", false).unwrap();
        assert_eq!(m.create_user("rd", "h2", false), Err(MetaError::UserExists));
        assert_eq!(
            m.create_user("", "h", false),
            Err(MetaError::UsernameRequired)
        );
        m.set_privilege("rd", "x", Privilege::All, false).unwrap();
        m.set_privilege("rd", "x", Privilege::Read, true).unwrap();
        assert_eq!(m.user("rd").unwrap().privileges["x"], Privilege::Write);
        assert!(m.user("rd").unwrap().may(Privilege::Write, "x"));
        assert!(!m.user("rd").unwrap().may(Privilege::Read, "x"));
        m.set_privilege("rd", "x", Privilege::All, true).unwrap();
        assert_eq!(m.user("rd").unwrap().privileges["x"], Privilege::None);
        assert_eq!(
            m.set_privilege("rd", "nodb", Privilege::Read, false),
            Err(MetaError::DatabaseNotFound("nodb".into()))
        );
        assert_eq!(
            m.set_privilege("ghost", "x", Privilege::Read, false),
            Err(MetaError::UserNotFound)
        );
        assert!(!m.admin_exists());
        m.set_admin("rd", true).unwrap();
        assert!(m.admin_exists());
        m.drop_database("x");
        assert!(
            m.user("rd").unwrap().privileges.is_empty(),
            "dropped with the db"
        );
        m.drop_user("rd").unwrap();
        assert_eq!(m.drop_user("rd"), Err(MetaError::UserNotFound));
    }

    #[test]
    fn users_round_trip_through_the_metastore_blob() {
        let mut m = Metastore::default();
        m.create_database("x").unwrap();
        m.create_user("zed", "$2b$04$abc", true).unwrap();
        m.create_user("amy", "$2b$04$def", false).unwrap();
        m.set_privilege("amy", "x", Privilege::Write, false)
            .unwrap();
        let back = Metastore::from_backup_blob(&m.backup_blob(1, 2)).unwrap();
        assert_eq!(back, m);
        let names: Vec<&str> = back.users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["zed", "amy"], "creation order kept");
    }

    #[test]
    fn a_restore_adds_missing_users_and_their_grants_on_restored_databases() {
        let mut src = Metastore::default();
        src.create_database("a").unwrap();
        src.create_database("b").unwrap();
        src.create_user("amy", "src-hash", false).unwrap();
        src.set_privilege("amy", "a", Privilege::Read, false)
            .unwrap();
        src.set_privilege("amy", "b", Privilege::Write, false)
            .unwrap();
        src.create_user("root", "src-root", true).unwrap();
        src.create_user("bob", "src-bob", false).unwrap();
        src.set_privilege("bob", "b", Privilege::Read, false)
            .unwrap();
        let mut dst = Metastore::default();
        dst.create_user("root", "dst-root", true).unwrap();
        let renamed = [("a".to_string(), "a2".to_string())].into();
        dst.import_users(&src, &renamed, false);
        assert!(
            dst.user("bob").is_none(),
            "nothing on the restored database"
        );
        dst.import_users(&src, &renamed, true);
        assert_eq!(dst.user("root").unwrap().hash, "dst-root", "kept");
        let amy = dst.user("amy").unwrap();
        assert_eq!(amy.hash, "src-hash");
        assert_eq!(
            amy.privileges,
            [("a2".to_string(), Privilege::Read)].into(),
            "only the restored database"
        );
    }
}
