//! One HTTP request to a node (or to influxd), answered as (status, JSON):
//! what the differential and process tests compare.

use serde_json::Value;

/// The `Authorization` value of HTTP Basic `user:password`.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A request to `http` (host:port): `method` `path` with URL `params`,
/// `headers`, and `body` (POST). The answer's status and its JSON (a
/// string when it is not JSON, null when empty); any status is an answer.
pub fn request(
    method: &str,
    http: &str,
    path: &str,
    params: &[(&str, &str)],
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Value) {
    let (status, _, text) = request_raw(method, http, path, params, headers, body);
    let v = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, v)
}

/// Like [`request`]: the status, the answer's headers (names lower case)
/// and its body as text.
pub fn request_raw(
    method: &str,
    http: &str,
    path: &str,
    params: &[(&str, &str)],
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("http://{http}{path}");
    let r = if method == "GET" {
        let mut r = agent.get(&url);
        for (k, v) in params {
            r = r.query(k, v);
        }
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.call()
    } else {
        let mut r = agent.post(&url);
        for (k, v) in params {
            r = r.query(k, v);
        }
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send(body)
    };
    let mut r = r.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = r.status().as_u16();
    let names: Vec<(String, String)> = r
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    (status, names, text)
}

/// A child process killed and reaped when dropped.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
