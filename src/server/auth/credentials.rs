//! The credentials of a request, found where influxd looks for them: the
//! `u` and `p` URL parameters (both non-empty), else the `Authorization`
//! header — `Bearer <jwt>` or HTTP Basic.

use axum::http::HeaderMap;
use base64::Engine;

/// What a request presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A user name and password (URL parameters or Basic).
    Password {
        /// Name.
        user: String,
        /// Password.
        password: String,
    },
    /// A JSON web token signed with the shared secret.
    Bearer(String),
}

/// influxd's message when nothing usable was presented (401).
pub const UNPARSABLE: &str = "unable to parse authentication credentials";

/// The credentials of a request with URL parameters `u`, `p` (as given)
/// and `headers`.
pub fn parse(
    u: Option<&str>,
    p: Option<&str>,
    headers: &HeaderMap,
) -> Result<Credentials, &'static str> {
    if let (Some(user), Some(password)) = (u, p)
        && !user.is_empty()
        && !password.is_empty()
    {
        return Ok(Credentials::Password {
            user: user.to_string(),
            password: password.to_string(),
        });
    }
    let Some(h) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty())
    else {
        return Err(UNPARSABLE);
    };
    let parts: Vec<&str> = h.split(' ').collect();
    if let ["Bearer", token] = parts[..] {
        return Ok(Credentials::Bearer(token.to_string()));
    }
    let basic = h
        .strip_prefix("Basic ")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        });
    match basic {
        Some((user, password)) => Ok(Credentials::Password { user, password }),
        None => Err(UNPARSABLE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[test]
    fn found_where_influxd_looks() {
        let pw = |u: &str, p: &str| {
            Ok(Credentials::Password {
                user: u.into(),
                password: p.into(),
            })
        };
        assert_eq!(parse(Some("a"), Some("b"), &HeaderMap::new()), pw("a", "b"));
        // One URL parameter alone is not credentials; the header is asked.
        assert_eq!(parse(Some("a"), None, &HeaderMap::new()), Err(UNPARSABLE));
        assert_eq!(
            parse(Some("a"), Some(""), &with("Basic cm9vdDpy")),
            pw("root", "r")
        );
        assert_eq!(parse(None, None, &with("Basic cm9vdDo=")), pw("root", ""));
        assert_eq!(parse(None, None, &with("Basic !!!")), Err(UNPARSABLE));
        assert_eq!(
            parse(None, None, &with("Basic cm9vdA==")),
            Err(UNPARSABLE),
            "no colon"
        );
        assert_eq!(
            parse(None, None, &with("Bearer abc.def")),
            Ok(Credentials::Bearer("abc.def".into()))
        );
        assert_eq!(parse(None, None, &with("bearer x")), Err(UNPARSABLE));
        assert_eq!(parse(None, None, &with("Bearer")), Err(UNPARSABLE));
    }
}
