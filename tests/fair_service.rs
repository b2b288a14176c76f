//! One client cannot take the service from the others:
//! - idle HTTP connections cannot take the descriptors raft needs: with the
//!   open-file limit at 512, 600 idle connections to the leader's HTTP port
//!   leave writes through the followers (forwarded over the raft port) and
//!   a restarted follower's catch-up working;
//! - a request of 2 000 `CREATE DATABASE` statements finishes, every
//!   statement answered, while another client's writes go on;
//! - a request of 50 000 statements stops being worked on when its client
//!   goes away;
//! - one long SELECT stops reading when its client goes away, and when it
//!   is killed;
//! - 500 slow clients holding half-sent requests (header or body) do not
//!   slow other clients' writes, and are disconnected after
//!   `http_read_timeout`.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::procs::Procs;

#[test]
fn idle_http_connections_do_not_starve_the_raft_port() {
    let mut p = Procs::start_nofile(3, &[], 512);
    let leader = p.leader();
    p.query(leader, "", "CREATE DATABASE db");
    let followers: Vec<u64> = p.nodes.keys().copied().filter(|i| *i != leader).collect();
    // Idle clients: connected, never sending a request.
    let http = p.nodes[&leader].http.clone();
    let idle: Vec<TcpStream> = (0..600)
        .filter_map(|_| TcpStream::connect(&http).ok())
        .collect();
    assert!(idle.len() > 300, "only {} connections opened", idle.len());
    std::thread::sleep(Duration::from_millis(500));
    let mut n = 0;
    for (k, f) in followers.iter().enumerate() {
        for i in 0..10 {
            let t = 1_600_000_000_000_000_000i64 + (k * 100 + i) as i64;
            let (status, body) = p.write_answer(*f, "db", &format!("m v=1 {t}\n"));
            assert_eq!(
                status,
                204,
                "write through node {f}: {body}\n{}",
                p.log(leader)
            );
            n += 1;
        }
    }
    // A follower restarted meanwhile reconnects to the leader and catches up.
    let f = followers[0];
    p.kill(f);
    p.spawn(f);
    p.wait_http(f);
    // (It answers 503 until it hears from the leader.)
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = p.write_answer(f, "db", "m v=1 1600000000000001000\n");
        if status == 204 {
            break;
        }
        assert!(Instant::now() < deadline, "{status} {body}\n{}", p.log(f));
        std::thread::sleep(Duration::from_millis(100));
    }
    n += 1;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = p.query(f, "db", "SELECT count(v) FROM m");
        if v["results"][0]["series"][0]["values"][0][1] == n {
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        p.log(leader).contains("HTTP connection budget spent"),
        "{}",
        p.log(leader)
    );
    drop(idle);
}

#[test]
fn two_thousand_ddl_statements_finish_while_other_clients_write() {
    let p = Procs::start(3, &[]);
    let leader = p.leader();
    p.query(leader, "", "CREATE DATABASE db");
    let http = p.nodes[&leader].http.clone();
    let q: Vec<String> = (0..2000).map(|i| format!("CREATE DATABASE d{i}")).collect();
    let ddl = std::thread::spawn(move || {
        let mut r = ureq::post(&format!("http://{http}/query"))
            .send_form([("q", q.join(";"))])
            .unwrap();
        serde_json::from_str::<serde_json::Value>(&r.body_mut().read_to_string().unwrap()).unwrap()
    });
    for i in 0..20 {
        let (status, body) = p.write_answer(
            leader,
            "db",
            &format!("m v={i} {}\n", 1_600_000_000_000_000_000i64 + i),
        );
        assert_eq!(status, 204, "{body}");
    }
    let v = ddl.join().unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2000);
    assert!(results.iter().all(|r| r.get("error").is_none()), "{v}");
    let dbs = p.query(leader, "", "SHOW DATABASES");
    assert_eq!(
        dbs["results"][0]["series"][0]["values"]
            .as_array()
            .unwrap()
            .len(),
        2001,
        "{dbs}"
    );
}

#[test]
fn a_long_request_stops_when_its_client_goes_away() {
    let p = Procs::start(1, &[]);
    let leader = p.leader();
    let http = p.nodes[&leader].http.clone();
    let q = vec!["SHOW DATABASES"; 50_000].join(";");
    let r = ureq::post(&format!("http://{http}/query"))
        .config()
        .timeout_global(Some(Duration::from_secs(1)))
        .build()
        .send_form([("q", q.as_str())]);
    assert!(r.is_err(), "50 000 statements took under a second here");
    let rounds = || p.metric(leader, "raftsnap_read_index_rounds_total");
    std::thread::sleep(Duration::from_millis(500));
    let a = rounds();
    std::thread::sleep(Duration::from_secs(1));
    let b = rounds();
    assert!(a > 0.0);
    assert_eq!(a, b, "statements still executed after the client left");
}

#[test]
fn a_long_select_stops_reading_when_its_client_goes_away_or_it_is_killed() {
    let p = Procs::start(1, &[]);
    let leader = p.leader();
    p.query(leader, "", "CREATE DATABASE db");
    let http = p.nodes[&leader].http.clone();
    // 100 000 series: reading them all takes seconds here.
    for chunk in 0..10 {
        let body: String = (chunk * 10_000..(chunk + 1) * 10_000)
            .map(|i| format!("big,host=h{i} v={i} {i}\n"))
            .collect();
        assert!(p.write(leader, "db", &body));
    }
    let stopped = || p.metric(leader, "raftsnap_query_reads_interrupted_total");
    assert_eq!(stopped(), 0.0);
    let wait_for = |n: f64, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while stopped() < n {
            assert!(Instant::now() < deadline, "the read never stopped: {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // The client gives up after 0.3 s: the read stops at its next series.
    let r = ureq::post(&format!("http://{http}/query"))
        .query("db", "db")
        .config()
        .timeout_global(Some(Duration::from_millis(300)))
        .build()
        .send_form([("q", "SELECT * FROM big")]);
    assert!(r.is_err(), "the SELECT took under 0.3 s here");
    wait_for(1.0, "client gone");
    // KILL QUERY stops the read as well.
    let h = http.clone();
    let runner = std::thread::spawn(move || post_query(&h, "SELECT * FROM big"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let qid = loop {
        let shown = post_query(&http, "SHOW QUERIES");
        let rows = shown["results"][0]["series"][0]["values"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(r) = rows.iter().find(|r| r[1] == "SELECT * FROM big") {
            break r[0].as_u64().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the SELECT never showed: {shown}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    post_query(&http, &format!("KILL QUERY {qid}"));
    let v = runner.join().unwrap();
    assert_eq!(v["results"][0]["error"], "query interrupted", "{v}");
    wait_for(2.0, "killed");
    // A chunked answer, written as it is read, stops too when its client
    // goes away.
    let r = ureq::post(&format!("http://{http}/query"))
        .query("db", "db")
        .query("chunked", "true")
        .config()
        .timeout_global(Some(Duration::from_millis(300)))
        .build()
        .send_form([("q", "SELECT * FROM big")])
        .and_then(|mut r| r.body_mut().read_to_string());
    assert!(r.is_err(), "the chunked SELECT took under 0.3 s here");
    wait_for(3.0, "chunked, client gone");
    // A query that is left alone still answers in full.
    let v = post_query(&http, "SELECT count(v) FROM big");
    assert_eq!(v["results"][0]["series"][0]["values"][0][1], 100_000, "{v}");
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn slow_clients_do_not_delay_others_and_are_disconnected() {
    use std::io::{Read, Write};
    let p = Procs::start(3, &["--http-read-timeout", "3s"]);
    let leader = p.leader();
    p.query(leader, "", "CREATE DATABASE db");
    let mut t = 1_600_000_000_000_000_000i64;
    let mut timed_writes = |n: usize| -> Vec<Duration> {
        (0..n)
            .map(|_| {
                t += 1;
                let started = Instant::now();
                let (status, body) = p.write_answer(leader, "db", &format!("m v=1 {t}\n"));
                assert_eq!(status, 204, "{body}");
                started.elapsed()
            })
            .collect()
    };
    timed_writes(10);
    let alone = median(timed_writes(60));
    let http = p.nodes[&leader].http.clone();
    // Half a header, or a whole header and a tenth of the body.
    let slow: Vec<TcpStream> = (0..500)
        .map(|i| {
            let mut s = TcpStream::connect(&http).unwrap();
            let req: &[u8] = if i % 2 == 0 {
                b"POST /write?db=db HTTP/1.1\r\nHost: x\r\nContent-Le"
            } else {
                b"POST /write?db=db HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nm v=1 1"
            };
            s.write_all(req).unwrap();
            s
        })
        .collect();
    let with_slow = median(timed_writes(60));
    eprintln!(
        "median write: {alone:?} alone, {with_slow:?} with 500 slow clients holding requests"
    );
    assert!(
        with_slow <= alone * 2 + Duration::from_millis(10),
        "writes took {with_slow:?} with 500 slow clients, {alone:?} without"
    );
    // After the read timeout every slow client has been disconnected.
    let started = Instant::now();
    let mut closed = 0;
    for mut s in slow {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = Vec::new();
        match s.read_to_end(&mut buf) {
            Ok(_) => closed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            Err(e) => panic!(
                "a slow client still connected after {:?}: {e}",
                started.elapsed()
            ),
        }
    }
    assert_eq!(closed, 500);
    assert!(timed_writes(5).len() == 5);
}

/// VmRSS or VmHWM (peak) of process `pid`, in bytes.
fn mem(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix(" kB")?
                .trim()
                .parse::<u64>()
                .ok()
        })
        .unwrap()
        * 1024
}

#[test]
fn a_write_of_two_million_new_series_is_refused_and_memory_stays_bounded() {
    use std::io::Write;
    let p = Procs::start(1, &[]);
    let leader = p.leader();
    p.query(leader, "", "CREATE DATABASE db");
    let mut body = String::with_capacity(40 << 20);
    for i in 0..2_000_000u32 {
        body.push_str(&format!("s,k={i} v=1 1\n"));
    }
    // Gzip (Telegraf's default): the 2 M lines are over max-body-size
    // as they are.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(body.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    drop(body);
    let pid = p.nodes[&leader].child.as_ref().unwrap().id();
    let before = mem(pid, "VmRSS:");
    let started = Instant::now();
    let mut r = ureq::post(&format!("http://{}/write", p.nodes[&leader].http))
        .query("db", "db")
        .header("Content-Encoding", "gzip")
        .config()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .send(&gz[..])
        .unwrap();
    let took = started.elapsed();
    let status = r.status().as_u16();
    let answer = r.body_mut().read_to_string().unwrap();
    let peak = mem(pid, "VmHWM:");
    eprintln!(
        "2 M new series ({} bytes gzipped): {status} {answer} in {took:?}; RSS {} MiB before, peak {} MiB",
        gz.len(),
        before >> 20,
        peak >> 20
    );
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&answer).unwrap(),
        serde_json::json!({"error": "partial write: max-series-per-database limit exceeded: (1000000) dropped=2000000"})
    );
    assert!(
        peak.saturating_sub(before) < 64 << 20,
        "RSS grew from {} MiB to a peak of {} MiB",
        before >> 20,
        peak >> 20
    );
    let c = p.query(leader, "db", "SELECT count(v) FROM s");
    assert_eq!(c["results"][0]["series"], serde_json::Value::Null, "{c}");
}

fn post_query(http: &str, q: &str) -> serde_json::Value {
    let mut r = ureq::post(&format!("http://{http}/query"))
        .query("db", "db")
        .config()
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .send_form([("q", q)])
        .unwrap();
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

#[test]
fn show_queries_kill_query_and_the_query_timeout() {
    let p = Procs::start(1, &["--query-timeout", "2s"]);
    let leader = p.leader();
    p.query(leader, "", "CREATE DATABASE db");
    let http = p.nodes[&leader].http.clone();
    let long = vec!["SHOW DATABASES"; 50_000].join(";");
    // The timeout: a query running past 2 s stops with influxd's error.
    let started = Instant::now();
    let v = post_query(&http, &long);
    let took = started.elapsed();
    let results = v["results"].as_array().unwrap();
    let last = results.last().unwrap();
    assert_eq!(last["error"], "query-timeout limit exceeded", "{last}");
    assert!(results.len() < 50_000, "{} statements ran", results.len());
    eprintln!("timed out after {took:?} and {} statements", results.len());
    // SHOW QUERIES lists a running query; KILL QUERY stops it.
    let h = http.clone();
    let long2 = long.clone();
    let runner = std::thread::spawn(move || post_query(&h, &long2));
    let deadline = Instant::now() + Duration::from_secs(30);
    let qid = loop {
        let shown = post_query(&http, "SHOW QUERIES");
        let s = &shown["results"][0]["series"][0];
        assert_eq!(
            s["columns"],
            serde_json::json!(["qid", "query", "database", "duration", "status"])
        );
        let rows = s["values"].as_array().cloned().unwrap_or_default();
        let me = rows.iter().find(|r| r[1] == "SHOW QUERIES").unwrap();
        assert_eq!(
            (&me[2], &me[4]),
            (&serde_json::json!("db"), &serde_json::json!("running"))
        );
        if let Some(r) = rows.iter().find(|r| {
            r[1].as_str()
                .is_some_and(|q| q.starts_with("SHOW DATABASES;\nSHOW DATABASES"))
        }) {
            break r[0].as_u64().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the long query never showed: {shown}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        post_query(&http, &format!("KILL QUERY {qid}")),
        serde_json::json!({"results": [{"statement_id": 0}]})
    );
    let v = runner.join().unwrap();
    let last = v["results"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["error"], "query interrupted", "{last}");
    // As influxd answers an unknown id.
    assert_eq!(
        post_query(&http, "KILL QUERY 999999"),
        serde_json::json!({"results": [{"statement_id": 0, "error": "no such query id: 999999"}]})
    );
}

#[test]
fn an_aggregate_over_millions_of_points_keeps_memory_to_its_groups() {
    use std::io::Write;
    let p = Procs::start(1, &[]);
    let leader = p.leader();
    p.query(leader, "", "CREATE DATABASE agg");
    let http = p.nodes[&leader].http.clone();
    // 10 series × 200 000 points a second apart: 2 M points.
    let (series, per) = (10u64, 200_000u64);
    for k in 0..series {
        let mut body = String::with_capacity(6 << 20);
        for i in 0..per {
            body.push_str(&format!("m,k={k} v={} {}\n", i % 100, i * 1_000_000_000));
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(body.as_bytes()).unwrap();
        let r = ureq::post(&format!("http://{http}/write"))
            .query("db", "agg")
            .header("Content-Encoding", "gzip")
            .config()
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .send(&gz.finish().unwrap()[..])
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
    }
    // Into TSM files: the reads decode blocks, as on a long-running node.
    p.snapshot(leader);
    let pid = p.nodes[&leader].child.as_ref().unwrap().id();
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    let before = mem(pid, "VmRSS:");
    let all = post_query(
        &http,
        "SELECT count(v), sum(v), mean(v), max(v), first(v), last(v) FROM agg.autogen.m",
    );
    let hours = post_query(
        &http,
        "SELECT count(v), mean(v) FROM agg.autogen.m WHERE time >= 0 AND time < 200000s GROUP BY time(1h), k",
    );
    let peak = mem(pid, "VmHWM:");
    eprintln!(
        "2 M points aggregated: RSS {} MiB before, peak {} MiB",
        before >> 20,
        peak >> 20
    );
    let row = &all["results"][0]["series"][0]["values"][0];
    let sum_per_series: u64 = (0..per).map(|i| i % 100).sum();
    assert_eq!(row[1], serde_json::json!(series * per), "{all}");
    assert_eq!(row[2], serde_json::json!(series * sum_per_series), "{all}");
    assert_eq!(row[4], serde_json::json!(99), "{all}");
    let groups = hours["results"][0]["series"].as_array().map_or(0, Vec::len);
    assert_eq!(groups as u64, series, "{hours}");
    assert_eq!(
        hours["results"][0]["series"][0]["values"][0][1],
        serde_json::json!(3600),
        "{hours}"
    );
    // Every point held at once would be 2 M × 32 bytes per function read.
    assert!(
        peak.saturating_sub(before) < 64 << 20,
        "RSS grew from {} MiB to a peak of {} MiB",
        before >> 20,
        peak >> 20
    );
}
