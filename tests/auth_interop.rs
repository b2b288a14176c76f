//! Authentication and authorization against a real influxd 1.6.7: the same
//! requests, in the same order, to influxd with `auth-enabled` and to a
//! 3-node tsnode cluster with `--auth-enabled` (through a follower), with
//! every status code and JSON answer compared: the first-admin rule,
//! credentials by URL, Basic and JWT bearer, what READ, WRITE, ALL and
//! admin users may do, grants and revokes, password changes, dropped users
//! and databases, and that refused requests changed nothing.

mod common;

use common::influxd::Influxd;
use common::procs::Procs;
use raftsnap::server::auth::jwt;
use serde_json::Value;

const SECRET: &str = "s3cret";

#[derive(Clone)]
enum Cred {
    None,
    Url(&'static str, &'static str),
    Basic(&'static str, &'static str),
    Bearer(String),
}

struct Step {
    method: &'static str,
    path: &'static str,
    params: Vec<(&'static str, String)>,
    cred: Cred,
    body: &'static str,
}

fn q(cred: Cred, db: &'static str, query: &str) -> Step {
    Step {
        method: "POST",
        path: "/query",
        params: vec![("db", db.into()), ("q", query.into())],
        cred,
        body: "",
    }
}

fn w(cred: Cred, db: &'static str, body: &'static str) -> Step {
    Step {
        method: "POST",
        path: "/write",
        params: if db.is_empty() {
            vec![]
        } else {
            vec![("db", db.into())]
        },
        cred,
        body,
    }
}

fn ask(http: &str, s: &Step) -> (u16, Value) {
    let mut params: Vec<(&str, &str)> = s.params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let auth = match &s.cred {
        Cred::None => None,
        Cred::Url(u, p) => {
            params.push(("u", u));
            params.push(("p", p));
            None
        }
        Cred::Basic(u, p) => Some(common::http::basic(u, p)),
        Cred::Bearer(t) => Some(format!("Bearer {t}")),
    };
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    common::http::request(s.method, http, s.path, &params, &headers, s.body.as_bytes())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn steps() -> Vec<Step> {
    use Cred::*;
    let root = Basic("root", "r");
    let token =
        |user: &str, exp: u64, secret: &str| Bearer(jwt::sign(user, exp, secret.as_bytes()));
    vec![
        // Before any user: only the first admin may be created.
        q(None, "", "SHOW DATABASES"),
        q(None, "", "CREATE DATABASE x"),
        q(None, "", "CREATE USER bob WITH PASSWORD 'b'"),
        w(None, "x", "m v=1 1"),
        q(
            None,
            "",
            "CREATE USER root WITH PASSWORD 'r' WITH ALL PRIVILEGES; CREATE DATABASE x",
        ),
        // Credentials: missing, wrong, by URL, Basic, bearer.
        q(None, "", "SHOW DATABASES"),
        w(None, "x", "m v=1 1"),
        q(Url("root", "bad"), "", "SHOW DATABASES"),
        q(Url("ghost", "r"), "", "SHOW DATABASES"),
        q(Basic("", "r"), "", "SHOW DATABASES"),
        q(Basic("root", ""), "", "SHOW DATABASES"),
        q(Url("root", "r"), "", "SHOW DATABASES"),
        q(root.clone(), "", "SHOW USERS"),
        q(token("root", now() + 3600, SECRET), "", "SHOW USERS"),
        q(token("root", now() - 3600, SECRET), "", "SHOW USERS"),
        q(token("root", now() + 3600, "other"), "", "SHOW USERS"),
        q(token("ghost", now() + 3600, SECRET), "", "SHOW USERS"),
        q(Bearer("abc.def".into()), "", "SHOW USERS"),
        // Users and grants.
        q(
            root.clone(),
            "",
            "CREATE USER rd WITH PASSWORD 'p'; CREATE USER wr WITH PASSWORD 'p'; \
             CREATE USER rw WITH PASSWORD 'p'; GRANT READ ON x TO rd; GRANT WRITE ON x TO wr; \
             GRANT ALL ON x TO rw; CREATE DATABASE y",
        ),
        q(root.clone(), "", "GRANT READ ON nodb TO rd"),
        q(root.clone(), "", "GRANT READ ON x TO ghost"),
        q(
            root.clone(),
            "",
            "SHOW USERS; SHOW GRANTS FOR rd; SHOW GRANTS FOR root; SHOW GRANTS FOR ghost",
        ),
        q(root.clone(), "", "CREATE USER rd WITH PASSWORD 'p'"),
        q(root.clone(), "", "CREATE USER rd WITH PASSWORD 'other'"),
        q(
            root.clone(),
            "",
            "CREATE USER rd WITH PASSWORD 'p' WITH ALL PRIVILEGES",
        ),
        // Writes: WRITE and ALL may, READ may not.
        w(Basic("wr", "p"), "x", "m v=1 1"),
        w(Basic("rw", "p"), "x", "m v=2 2"),
        w(Basic("rd", "p"), "x", "m v=3 3"),
        w(Basic("rd", "p"), "nodb", "m v=3 3"),
        w(Basic("rd", "p"), "y", "m v=3 3"),
        w(Basic("rd", "p"), "", "m v=3 3"),
        w(token("wr", now() + 3600, SECRET), "x", "m v=4 4"),
        // Queries: READ and ALL may, WRITE may not.
        q(Basic("rd", "p"), "x", "SELECT * FROM m"),
        q(Basic("rw", "p"), "x", "SELECT * FROM m"),
        q(Basic("wr", "p"), "x", "SELECT * FROM m"),
        q(
            Basic("rd", "p"),
            "x",
            "select mean(v), count(\"v\") from y..m where time > 0",
        ),
        q(Basic("rd", "p"), "x", "SHOW DATABASES"),
        q(Basic("wr", "p"), "x", "SHOW DATABASES"),
        q(
            Basic("rd", "p"),
            "x",
            "SHOW MEASUREMENTS; SHOW RETENTION POLICIES",
        ),
        q(Basic("wr", "p"), "x", "SHOW MEASUREMENTS"),
        q(Basic("rd", "p"), "x", "SHOW RETENTION POLICIES ON y"),
        q(Basic("rd", "p"), "x", "SELECT * FROM m; CREATE DATABASE z"),
        q(Basic("rd", "p"), "x", "SET PASSWORD FOR rd = 'q'"),
        q(Basic("rd", "p"), "x", "DROP RETENTION POLICY autogen ON x"),
        q(
            Basic("rd", "p"),
            "x",
            "CREATE RETENTION POLICY r1 ON x DURATION 1h REPLICATION 1",
        ),
        q(Basic("rd", "p"), "x", "SHOW USERS"),
        q(Basic("rd", "p"), "x", "GRANT ALL PRIVILEGES TO rd"),
        // Revokes clear bits; ALL PRIVILEGES is the admin flag.
        q(
            root.clone(),
            "",
            "REVOKE READ ON x FROM rw; SHOW GRANTS FOR rw",
        ),
        q(Basic("rw", "p"), "x", "SELECT * FROM m"),
        w(Basic("rw", "p"), "x", "m v=5 5"),
        q(
            root.clone(),
            "",
            "REVOKE ALL ON x FROM rw; SHOW GRANTS FOR rw",
        ),
        w(Basic("rw", "p"), "x", "m v=6 6"),
        q(root.clone(), "", "GRANT ALL PRIVILEGES TO rd; SHOW USERS"),
        q(Basic("rd", "p"), "", "CREATE DATABASE z; SHOW DATABASES"),
        q(
            root.clone(),
            "",
            "REVOKE ALL PRIVILEGES FROM rd; SHOW USERS",
        ),
        q(Basic("rd", "p"), "", "DROP DATABASE z"),
        // Passwords change; dropped users and databases are gone.
        q(root.clone(), "", "SET PASSWORD FOR wr = 'new'"),
        w(Basic("wr", "p"), "x", "m v=7 7"),
        w(Basic("wr", "new"), "x", "m v=8 8"),
        q(root.clone(), "", "SET PASSWORD FOR ghost = 'x'"),
        q(root.clone(), "", "DROP USER wr; DROP USER ghost"),
        w(Basic("wr", "new"), "x", "m v=9 9"),
        q(
            root.clone(),
            "",
            "GRANT WRITE ON y TO rd; DROP DATABASE y; SHOW GRANTS FOR rd",
        ),
        q(root.clone(), "", "SHOW USERS"),
        // Nothing a refused request asked for happened.
        q(root.clone(), "x", "SELECT * FROM m"),
        q(root.clone(), "", "SHOW DATABASES"),
        // An admin who revokes the last admin locks everyone out, as influxd.
        q(root.clone(), "", "REVOKE ALL PRIVILEGES FROM root"),
        q(root.clone(), "", "SHOW USERS"),
        q(None, "", "SHOW USERS"),
        w(None, "x", "m v=10 10"),
        Step {
            method: "GET",
            path: "/ping",
            params: vec![],
            cred: None,
            body: "",
        },
    ]
}

fn label(s: &Step) -> String {
    let who = match &s.cred {
        Cred::None => "-".to_string(),
        Cred::Url(u, _) => format!("url:{u}"),
        Cred::Basic(u, _) => format!("basic:{u}"),
        Cred::Bearer(_) => "bearer".into(),
    };
    format!("{} {} {:?} as {who}", s.method, s.path, s.params)
}

#[test]
fn authentication_and_privileges_answer_as_influxd() {
    let Some(real) = Influxd::start_with(&format!(
        "  auth-enabled = true\n  shared-secret = \"{SECRET}\""
    )) else {
        return;
    };
    let p = Procs::start(3, &["--auth-enabled", "--shared-secret", SECRET]);
    // Through a follower (or any node: no credentials exist yet to ask
    // /status who leads).
    let ours = p.nodes[&2].http.clone();
    let mut differ = Vec::new();
    let all = steps();
    let mut points = None;
    for s in &all {
        let theirs = ask(&real.http, s);
        // A new cluster elects its leader while influxd answers: a 503
        // (no leader yet) is asked again, as a client would.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut mine = ask(&ours, s);
        while mine.0 == 503 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
            mine = ask(&ours, s);
        }
        if matches!(s.cred, Cred::Basic("root", _))
            && s.params.contains(&("q", "SELECT * FROM m".into()))
        {
            points = Some(mine.1.clone());
        }
        if theirs != mine {
            differ.push(format!(
                "{}\n  influxd {} {}\n  tsnode  {} {}",
                label(s),
                theirs.0,
                theirs.1,
                mine.0,
                mine.1
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} answers differ from influxd's:\n{}",
        differ.len(),
        all.len(),
        differ.join("\n")
    );
    // The refused writes changed nothing: the points are the accepted ones.
    let v: Vec<i64> = points.expect("root's SELECT")["results"][0]["series"][0]["values"]
        .as_array()
        .map(|rows| rows.iter().filter_map(|r| r[1].as_i64()).collect())
        .unwrap_or_default();
    assert_eq!(v, [1, 2, 4, 5, 8], "accepted writes only");
}
