//! JSON web tokens signed with the shared secret (HS256, HS384, HS512), as
//! influxd 1.x accepts them: the token must be signed by the secret, not
//! expired (`exp`, required), not early (`nbf`, `iat`), and name a user
//! (`username`). Messages are influxd's (jwt-go's), checked against it.

use base64::Engine;
use serde_json::Value;

/// Why a token was refused (the 401 body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TokenError(pub String);

fn refuse(m: impl Into<String>) -> TokenError {
    TokenError(m.into())
}

fn segment(s: &str) -> Result<Vec<u8>, TokenError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|e| refuse(e.to_string()))
}

fn json_segment(s: &str) -> Result<serde_json::Map<String, Value>, TokenError> {
    match serde_json::from_slice(&segment(s)?) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(refuse("token segment is not a JSON object")),
        Err(e) => Err(refuse(e.to_string())),
    }
}

/// The user a token names, if `secret` signed it and it is valid at
/// `now` (Unix seconds).
pub fn verify(token: &str, secret: &[u8], now: f64) -> Result<String, TokenError> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err(refuse("token contains an invalid number of segments"));
    };
    let h = json_segment(header)?;
    let c = json_segment(claims)?;
    let alg = h.get("alg").and_then(Value::as_str).unwrap_or("");
    let hmac = match alg {
        "HS256" => ring::hmac::HMAC_SHA256,
        "HS384" => ring::hmac::HMAC_SHA384,
        "HS512" => ring::hmac::HMAC_SHA512,
        "none" | "RS256" | "RS384" | "RS512" | "ES256" | "ES384" | "ES512" | "PS256" | "PS384"
        | "PS512" => {
            return Err(refuse(format!("unexpected signing method: {alg}")));
        }
        _ => return Err(refuse("signing method (alg) is unavailable.")),
    };
    // jwt-go checks the claims, then the signature; the last failure is the
    // one reported.
    let num = |k: &str| c.get(k).and_then(Value::as_f64);
    let mut failure = None;
    if num("exp").is_some_and(|exp| now > exp) {
        failure = Some("Token is expired");
    }
    if num("iat").is_some_and(|iat| now < iat) {
        failure = Some("Token used before issued");
    }
    if num("nbf").is_some_and(|nbf| now < nbf) {
        failure = Some("Token is not valid yet");
    }
    let key = ring::hmac::Key::new(hmac, secret);
    let signed = format!("{header}.{claims}");
    let sig_ok = segment(signature)
        .map(|sig| ring::hmac::verify(&key, signed.as_bytes(), &sig).is_ok())
        .unwrap_or(false);
    if !sig_ok {
        failure = Some("signature is invalid");
    }
    if let Some(f) = failure {
        return Err(refuse(f));
    }
    if !num("exp").is_some_and(|exp| exp > 0.0) {
        return Err(refuse("token expiration required"));
    }
    match c.get("username") {
        Some(Value::String(u)) if u.is_empty() => Err(refuse("token must contain a username")),
        Some(Value::String(u)) => Ok(u.clone()),
        _ => Err(refuse("username in token must be a string")),
    }
}

/// A token for `user`, expiring at `exp` (Unix seconds), signed HS256 with
/// `secret` (for tools and tests).
pub fn sign(user: &str, exp: u64, secret: &[u8]) -> String {
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let header = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = b64(serde_json::json!({ "username": user, "exp": exp })
        .to_string()
        .as_bytes());
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, format!("{header}.{claims}").as_bytes());
    format!("{header}.{claims}.{}", b64(tag.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: &str, claims: Value, secret: &[u8]) -> String {
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let (h, c) = (b64(header.as_bytes()), b64(claims.to_string().as_bytes()));
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let tag = ring::hmac::sign(&key, format!("{h}.{c}").as_bytes());
        format!("{h}.{c}.{}", b64(tag.as_ref()))
    }

    #[test]
    fn tokens_are_checked_as_influxd_checks_them() {
        let now = 1_000_000.0;
        let hs = r#"{"alg":"HS256","typ":"JWT"}"#;
        let ok = |t: &str| verify(t, b"s3cret", now);
        let err = |m: &str| Err(TokenError(m.into()));
        assert_eq!(ok(&sign("root", 1_000_100, b"s3cret")), Ok("root".into()));
        assert_eq!(
            ok(&sign("root", 999_000, b"s3cret")),
            err("Token is expired")
        );
        assert_eq!(
            ok(&sign("root", 1_000_100, b"other")),
            err("signature is invalid")
        );
        assert_eq!(
            ok(&sign("root", 999_000, b"other")),
            err("signature is invalid"),
            "the signature is checked last"
        );
        let t = token(hs, serde_json::json!({"username": "root"}), b"s3cret");
        assert_eq!(ok(&t), err("token expiration required"));
        let t = token(hs, serde_json::json!({"exp": 1_000_100}), b"s3cret");
        assert_eq!(ok(&t), err("username in token must be a string"));
        let t = token(
            hs,
            serde_json::json!({"username": "", "exp": 1_000_100}),
            b"s3cret",
        );
        assert_eq!(ok(&t), err("token must contain a username"));
        let t = token(
            hs,
            serde_json::json!({"username": "a", "exp": 1_000_100, "nbf": 1_000_050}),
            b"s3cret",
        );
        assert_eq!(ok(&t), err("Token is not valid yet"));
        let t = token(r#"{"alg":"none"}"#, serde_json::json!({}), b"s3cret");
        assert_eq!(ok(&t), err("unexpected signing method: none"));
        assert_eq!(
            ok("abc.def"),
            err("token contains an invalid number of segments")
        );
        assert!(ok("!!.??.**").is_err());
    }
}
