//! Authentication as influxd 1.x does it, behind `auth_enabled`: who a
//! request is (credentials → a user of the metastore) and the answers
//! influxd gives when it cannot tell (401 with `Www-Authenticate`). What a
//! user may then do is `tsdb::authorize`.
//!
//! As influxd: until an admin user exists, requests are not asked for
//! credentials (and queries may only create the first admin); `/ping`
//! never asks. Beyond influxd: the node's own endpoints (`/status`,
//! `/metrics`, `/members`, `/snapshot`, `/import`) need an admin, and
//! refuse everyone until one exists.

pub mod credentials;
pub mod jwt;
pub mod password;

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::raft::NodeHandle;
use crate::tsdb::fsm::Tsdb;
use crate::tsdb::meta::Metastore;
use crate::tsdb::users::User;
use credentials::Credentials;

/// Authentication settings (influxd's `[http]` keys of the same names).
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Ask for credentials and check privileges.
    pub enabled: bool,
    /// The secret JWT bearer tokens are signed with (empty: tokens are
    /// refused).
    pub shared_secret: String,
}

/// Who a request is, with the metastore it was checked against.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user (`None`: no admin exists yet, so none was asked).
    pub user: Option<User>,
    /// The metastore as this node has it.
    pub meta: Arc<Metastore>,
}

/// The `u` and `p` parameters of a request's URL (influxd reads them
/// from the URL only, never from a form body).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct UrlCredentials {
    /// User name.
    pub u: Option<String>,
    /// Password.
    pub p: Option<String>,
}

/// Checks requests' credentials.
#[derive(Default)]
pub struct Authenticator {
    cfg: AuthConfig,
    passwords: password::PasswordChecker,
}

/// A JSON error answer.
pub fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, axum::Json(json!({ "error": msg.into() }))).into_response()
}

/// influxd's 401: the message and `Www-Authenticate: Basic realm="InfluxDB"`.
pub fn unauthorized(msg: impl Into<String>) -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, msg);
    r.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"InfluxDB\""),
    );
    r
}

impl Authenticator {
    /// An authenticator with `cfg`.
    pub fn new(cfg: AuthConfig) -> Self {
        Self {
            cfg,
            passwords: Default::default(),
        }
    }

    /// Who is asking (`Ok(None)`: authentication is off), or the 401.
    pub async fn caller(
        self: &Arc<Self>,
        node: &NodeHandle<Tsdb>,
        url: &UrlCredentials,
        headers: &HeaderMap,
    ) -> Result<Option<Caller>, Response> {
        if !self.cfg.enabled {
            return Ok(None);
        }
        // The metastore as this node has it (no read view is taken: that
        // would freeze the shards' caches on every request).
        let n = node.clone();
        let meta = tokio::task::spawn_blocking(move || n.local(|t, _| t.meta_arc()))
            .await
            .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        if !meta.admin_exists() {
            return Ok(Some(Caller { user: None, meta }));
        }
        let creds = credentials::parse(url.u.as_deref(), url.p.as_deref(), headers)
            .map_err(unauthorized)?;
        let user = match creds {
            Credentials::Password { user, password } => {
                if user.is_empty() {
                    return Err(unauthorized("username required"));
                }
                let Some(found) = meta.user(&user).cloned() else {
                    return Err(unauthorized("authorization failed"));
                };
                let me = self.clone();
                let stored = found.hash.clone();
                let ok = tokio::task::spawn_blocking(move || {
                    me.passwords.check(&user, &stored, &password)
                })
                .await
                .unwrap_or(false);
                if !ok {
                    return Err(unauthorized("authorization failed"));
                }
                found
            }
            Credentials::Bearer(token) => {
                if self.cfg.shared_secret.is_empty() {
                    return Err(unauthorized(
                        "bearer tokens are refused: this node has no shared_secret",
                    ));
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                let name = jwt::verify(&token, self.cfg.shared_secret.as_bytes(), now)
                    .map_err(|e| unauthorized(e.0))?;
                meta.user(&name)
                    .cloned()
                    .ok_or_else(|| unauthorized("user not found"))?
            }
        };
        Ok(Some(Caller {
            user: Some(user),
            meta,
        }))
    }

    /// Passes an admin (or anyone while authentication is off); else the
    /// 401 or 403. `what` names the endpoint in the refusal.
    pub async fn admin(
        self: &Arc<Self>,
        node: &NodeHandle<Tsdb>,
        url: &UrlCredentials,
        headers: &HeaderMap,
        what: &str,
    ) -> Result<(), Response> {
        match self.caller(node, url, headers).await? {
            None => Ok(()),
            Some(Caller { user: Some(u), .. }) if u.admin => Ok(()),
            Some(Caller { user: None, .. }) => Err(error(
                StatusCode::FORBIDDEN,
                "create admin user first or disable authentication",
            )),
            Some(Caller { user: Some(u), .. }) => Err(error(
                StatusCode::FORBIDDEN,
                format!("{} not authorized: {what} requires admin privilege", u.name),
            )),
        }
    }

    /// Checks a password against a user's stored hash, as
    /// [`Authenticator::caller`] does (blocking: call it on a blocking
    /// thread).
    pub fn password_matches(&self, user: &User, password: &str) -> bool {
        self.passwords.check(&user.name, &user.hash, password)
    }
}
