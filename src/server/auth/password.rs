//! Passwords: bcrypt hashes (influxd's cost, 10), checked off the async
//! workers, with a cache of checks that passed so that a client sending
//! its password with every request costs one bcrypt, not one per request
//! (influxd keeps the same kind of cache). The cache keeps a salted
//! SHA-256 of the password, never the password, and an entry is used only
//! while the user's stored hash is the one it was checked against.

use std::collections::HashMap;

use std::sync::Mutex;

use ring::rand::SecureRandom;

/// influxd's bcrypt cost.
pub const BCRYPT_COST: u32 = 10;
/// Cache entries kept at most (then the cache starts over).
const MAX_CACHED: usize = 10_000;

/// A password hash for the metastore.
pub fn hash(password: &str) -> Result<String, String> {
    bcrypt::hash(password, BCRYPT_COST).map_err(|e| format!("hash password: {e}"))
}

/// Checks passwords against stored hashes.
pub struct PasswordChecker {
    salt: [u8; 16],
    passed: Mutex<HashMap<String, (String, [u8; 32])>>,
}

impl Default for PasswordChecker {
    fn default() -> Self {
        let mut salt = [0u8; 16];
        if ring::rand::SystemRandom::new().fill(&mut salt).is_err() {
            // No system randomness: a fixed salt still hides the password
            // behind SHA-256; the cache is only ever in this process.
            salt = *b"tsnode-pw-cache!";
        }
        Self {
            salt,
            passed: Mutex::new(HashMap::new()),
        }
    }
}

impl PasswordChecker {
    fn digest(&self, password: &str) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&self.salt);
        ctx.update(password.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    /// Whether `password` matches `stored` (the bcrypt hash of `user`).
    /// Blocks for a bcrypt unless the same check passed before: call it on
    /// a blocking thread.
    pub fn check(&self, user: &str, stored: &str, password: &str) -> bool {
        let d = self.digest(password);
        if let Some((h, cached)) = self
            .passed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
            && h == stored
        {
            // Compared in constant time.
            return cached.iter().zip(&d).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        }
        if !bcrypt::verify(password, stored).unwrap_or(false) {
            return false;
        }
        let mut passed = self.passed.lock().unwrap_or_else(|p| p.into_inner());
        if passed.len() >= MAX_CACHED {
            passed.clear();
        }
        passed.insert(user.to_string(), (stored.to_string(), d));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_check_follows_the_stored_hash() {
        let c = PasswordChecker::default();
        let h1 = bcrypt::hash("pw", 4).unwrap();
        assert!(c.check("u", &h1, "pw"));
        assert!(c.check("u", &h1, "pw"), "from the cache");
        assert!(
            !c.check("u", &h1, "other"),
            "the cache does not pass another password"
        );
        let h2 = bcrypt::hash("new", 4).unwrap();
        assert!(
            !c.check("u", &h2, "pw"),
            "a changed password is checked again"
        );
        assert!(c.check("u", &h2, "new"));
        // influxd's (Go) hashes verify too.
        let go = bcrypt::hash_with_result("x", 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoA);
        assert!(c.check("g", &go, "x"));
    }
}
