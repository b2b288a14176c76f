//! The real client libraries against a 3-node tsnode cluster, through a
//! follower: influxdb-python 5.3.2 (`pip install influxdb`) and
//! node-influx 5.12 (`npm install influx`, found in `target/clients` or
//! `$TSNODE_NODE_MODULES`), as `.ci/run` installs them (it sets
//! `TSNODE_CLIENTS_REQUIRED`, so that they cannot be skipped there). Each creates a
//! database, writes (python also gzip-compressed), queries with `GROUP BY`
//! tags through its own result helpers, lists measurements and series,
//! drops a measurement and the database; the answers are checked here.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::procs::Procs;
use serde_json::{Value, json};

const PYTHON: &str = r#"
import json, sys
from influxdb import InfluxDBClient
host, port = sys.argv[1], int(sys.argv[2])
c = InfluxDBClient(host=host, port=port, database="py")
c.create_database("py")
base = 1600000000
points = [
    {"measurement": "cpu", "tags": {"host": h, "dc": "x"}, "time": base + i,
     "fields": {"v": float(i) + (0.5 if h == "b" else 0.0), "n": i}}
    for i in range(10) for h in ("a", "b")
]
assert c.write_points(points, time_precision="s")
z = InfluxDBClient(host=host, port=port, database="py", gzip=True)
assert z.write_points([{"measurement": "mem", "tags": {"host": "a"}, "time": base, "fields": {"used": 7}}],
                      time_precision="s")
rs = c.query("SELECT mean(v), count(n) FROM cpu GROUP BY host")
out = {
    "a": list(rs.get_points(tags={"host": "a"})),
    "b": list(rs.get_points(tags={"host": "b"})),
    "groups": sorted(k[1]["host"] for k in rs.keys()),
    "raw": list(c.query("SELECT v, host FROM cpu WHERE host = 'b' AND n >= 8").get_points()),
    "measurements": c.get_list_measurements(),
    "series": c.get_list_series(),
}
c.drop_measurement("mem")
out["after_drop"] = c.get_list_measurements()
c.drop_database("py")
out["databases"] = c.get_list_database()
print(json.dumps(out))
"#;

const NODE: &str = r#"
const Influx = require('influx');
const [host, port] = process.argv.slice(-2);
const influx = new Influx.InfluxDB({ host, port: Number(port), database: 'js' });
(async () => {
  await influx.createDatabase('js');
  const base = 1600000000;
  const points = [];
  for (let i = 0; i < 10; i++) {
    for (const h of ['a', 'b']) {
      points.push({ measurement: 'cpu', tags: { host: h }, fields: { v: i + (h === 'b' ? 0.5 : 0), n: i },
                    timestamp: base + i });
    }
  }
  points.push({ measurement: 'mem', tags: { host: 'a' }, fields: { used: 7 }, timestamp: base });
  await influx.writePoints(points, { precision: 's' });
  const rows = await influx.query('SELECT mean(v), max(n) FROM cpu GROUP BY host');
  const out = {
    groups: rows.groups().map(g => ({ name: g.name, tags: g.tags, mean: g.rows.map(r => r.mean), max: g.rows.map(r => r.max) })),
    measurements: await influx.getMeasurements(),
    series: await influx.getSeries(),
  };
  await influx.dropMeasurement('mem');
  out.after_drop = await influx.getMeasurements();
  await influx.dropDatabase('js');
  out.databases = await influx.getDatabaseNames();
  console.log(JSON.stringify(out));
})().catch(e => { console.error(e); process.exit(1); });
"#;

/// Runs a client script against `http` (`host:port`); its JSON output.
fn run(cmd: &mut Command, http: &str) -> Value {
    let (host, port) = http.rsplit_once(':').expect("host:port");
    let out = cmd.args([host, port]).output().expect("client runs");
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// A client that is not installed skips its test, unless CI (which
/// installs them) says they are required.
fn skipped(why: &str) {
    assert!(
        std::env::var_os("TSNODE_CLIENTS_REQUIRED").is_none(),
        "{why}, and TSNODE_CLIENTS_REQUIRED is set"
    );
    eprintln!("{why}: skipped");
}

/// A float as influxd's JSON writes it (a whole one without a fraction).
fn number(x: f64) -> Value {
    if x.fract() == 0.0 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

/// A follower's HTTP address (writes and DDL are forwarded to the leader).
fn follower(p: &Procs) -> String {
    let leader = p.leader();
    let id = *p.nodes.keys().find(|i| **i != leader).expect("a follower");
    p.nodes[&id].http.clone()
}

#[test]
fn influxdb_python_works_against_a_cluster() {
    let has = Command::new("python3")
        .args(["-c", "import influxdb"])
        .status()
        .is_ok_and(|s| s.success());
    if !has {
        skipped("influxdb-python is not installed (pip install influxdb==5.3.2)");
        return;
    }
    let p = Procs::start(3, &[]);
    let out = run(Command::new("python3").args(["-c", PYTHON]), &follower(&p));
    let mean = |h: f64| number((0..10).map(|i| i as f64 + h).sum::<f64>() / 10.0);
    assert_eq!(
        out["a"],
        json!([{"time": "1970-01-01T00:00:00Z", "mean": mean(0.0), "count": 10}]),
        "{out}"
    );
    assert_eq!(
        out["b"],
        json!([{"time": "1970-01-01T00:00:00Z", "mean": mean(0.5), "count": 10}]),
        "{out}"
    );
    assert_eq!(out["groups"], json!(["a", "b"]), "{out}");
    assert_eq!(
        out["raw"],
        json!([
            {"time": "2020-09-13T12:26:48Z", "v": 8.5, "host": "b"},
            {"time": "2020-09-13T12:26:49Z", "v": 9.5, "host": "b"}
        ]),
        "{out}"
    );
    assert_eq!(
        out["measurements"],
        json!([{"name": "cpu"}, {"name": "mem"}]),
        "{out}"
    );
    assert_eq!(
        out["series"],
        json!(["cpu,dc=x,host=a", "cpu,dc=x,host=b", "mem,host=a"]),
        "{out}"
    );
    assert_eq!(out["after_drop"], json!([{"name": "cpu"}]), "{out}");
    assert!(
        !out["databases"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["name"] == "py"),
        "{out}"
    );
    // Every replica agrees the database is gone.
    for id in p.nodes.keys() {
        let dbs = p.query(*id, "", "SHOW DATABASES");
        assert!(!dbs.to_string().contains("\"py\""), "node {id}: {dbs}");
    }
}

/// Where node-influx is installed, if it is.
fn node_modules() -> Option<PathBuf> {
    let dir = std::env::var_os("TSNODE_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/clients/node_modules")
        });
    dir.join("influx").exists().then_some(dir)
}

#[test]
fn node_influx_works_against_a_cluster() {
    let Some(modules) = node_modules() else {
        skipped("node-influx is not installed (npm install --prefix target/clients influx@5.12.0)");
        return;
    };
    let p = Procs::start(3, &[]);
    let mut cmd = Command::new("node");
    cmd.env("NODE_PATH", &modules).args(["-e", NODE, "--"]);
    let out = run(&mut cmd, &follower(&p));
    let mean = |h: f64| number((0..10).map(|i| i as f64 + h).sum::<f64>() / 10.0);
    assert_eq!(
        out["groups"],
        json!([
            {"name": "cpu", "tags": {"host": "a"}, "mean": [mean(0.0)], "max": [9]},
            {"name": "cpu", "tags": {"host": "b"}, "mean": [mean(0.5)], "max": [9]}
        ]),
        "{out}"
    );
    assert_eq!(out["measurements"], json!(["cpu", "mem"]), "{out}");
    assert_eq!(
        out["series"],
        json!(["cpu,host=a", "cpu,host=b", "mem,host=a"]),
        "{out}"
    );
    assert_eq!(out["after_drop"], json!(["cpu"]), "{out}");
    assert!(
        !out["databases"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d == "js"),
        "{out}"
    );
}
