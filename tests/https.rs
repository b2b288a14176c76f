//! The HTTP API over TLS (`--https-enabled`): a client that trusts the
//! certificate writes and reads; plain HTTP on that port gets nothing; a
//! client that stalls its handshake holds up no one; the real `influx`
//! CLI works with `-ssl`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::free_port;

#[test]
fn the_api_over_https_with_the_real_influx_cli() {
    let dir = tempfile::tempdir().unwrap();
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert_pem = ck.cert.pem();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let (http, raft) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let snap = format!("127.0.0.1:{}", free_port());
    let _node = common::http::Killed(
        Command::new(env!("CARGO_BIN_EXE_tsnode"))
            .args([
                "serve",
                "--id",
                "1",
                "--raft-addr",
                &raft,
                "--http-addr",
                &http,
            ])
            .args(["--snapshotter-addr", &snap, "--https-enabled"])
            .arg("--https-certificate")
            .arg(&cert)
            .arg("--https-private-key")
            .arg(&key)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let root = ureq::tls::Certificate::from_pem(cert_pem.as_bytes()).unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![root])))
                .build(),
        )
        .http_status_as_error(false)
        .build()
        .into();
    let url = |p: &str| format!("https://localhost:{}{p}", http.rsplit(':').next().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    while agent
        .get(url("/ping"))
        .call()
        .map(|r| r.status().as_u16())
        .ok()
        != Some(204)
    {
        assert!(
            Instant::now() < deadline,
            "no HTTPS /ping: {}",
            std::fs::read_to_string(dir.path().join("log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A client that opens a connection and never starts its handshake
    // holds up no one.
    let stalled = std::net::TcpStream::connect(&http).unwrap();
    let q = |q: &str| -> serde_json::Value {
        let mut r = agent
            .post(url("/query"))
            .send_form([("q", q), ("db", "db")])
            .unwrap();
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
    };
    // The single node needs a moment to lead.
    let deadline = Instant::now() + Duration::from_secs(30);
    while q("CREATE DATABASE db")["results"][0].get("error").is_some()
        || q("CREATE DATABASE db").get("error").is_some()
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    }
    let w = agent
        .post(url("/write?db=db"))
        .send("m v=42 1600000000000000000\n")
        .unwrap();
    assert_eq!(w.status().as_u16(), 204);
    let v = q("SELECT v FROM m");
    assert_eq!(
        v["results"][0]["series"][0]["values"][0][1].as_f64(),
        Some(42.0),
        "{v}"
    );
    // Plain HTTP on the HTTPS port gets no answer.
    let plain = ureq::get(&format!("http://{http}/ping"))
        .config()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .call();
    assert!(plain.is_err(), "{plain:?}");
    drop(stalled);

    // The real influx CLI, trusting the certificate as -unsafeSsl does.
    let Some(influx) = common::influxd::binary("influx") else {
        return;
    };
    let port = http.rsplit(':').next().unwrap().to_string();
    let o = Command::new(influx)
        .args(["-ssl", "-unsafeSsl", "-host", "127.0.0.1", "-port", &port])
        .args([
            "-database",
            "db",
            "-format",
            "json",
            "-execute",
            "SELECT v FROM m",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_default();
    assert_eq!(
        v["results"][0]["series"][0]["values"][0][1].as_f64(),
        Some(42.0),
        "{out}"
    );
    let _ = std::io::stderr().flush();
}
