//! The InfluxDB snapshotter service against Debian's real tools: `influxd
//! backup -portable` of a 3-node tsnode cluster (through a follower, which
//! serves its local files), restored with `influxd restore -portable` into a
//! real influxd, answers the same count.

mod common;

use std::time::{Duration, Instant};

use common::influxd::{Influxd, portable};
use common::procs::Procs;

#[test]
fn influxd_backup_of_a_tsnode_cluster_restores_into_real_influxd() {
    let Some(real) = Influxd::start() else { return };
    let p = Procs::start(3, &[]);
    let leader = p.leader();
    p.query(leader, "", "CREATE DATABASE src");
    for b in 0..4u64 {
        let body: String = (0..500u64)
            .map(|i| {
                format!(
                    "cpu,host=h{} usage={}.25,n={}i {}\n",
                    i % 7,
                    b * 500 + i,
                    i,
                    1_700_000_000_000_000_000 + (b * 500 + i) * 1_000_000_000
                )
            })
            .collect();
        assert!(p.write(leader, "src", &body));
    }
    let follower = *p.nodes.keys().find(|i| **i != leader).unwrap();
    let count = |v: serde_json::Value| {
        v["results"][0]["series"][0]["values"][0][1]
            .as_i64()
            .unwrap_or(-1)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(p.query(follower, "src", "SELECT count(usage) FROM cpu")) != 2000 {
        assert!(Instant::now() < deadline, "follower never caught up");
        std::thread::sleep(Duration::from_millis(50));
    }

    let dir = tempfile::tempdir().unwrap();
    portable(
        "backup",
        &p.nodes[&follower].snapshotter,
        &[],
        dir.path(),
        || p.log(follower),
    );
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.ends_with(".manifest"))
            && names.iter().any(|n| n.ends_with(".tar.gz")),
        "{names:?}"
    );

    real.restore(&["-db", "src"], dir.path());
    let rows = real.rows("src", "SELECT usage FROM cpu", 2000);
    assert_eq!(rows.len(), 2000, "{}", real.log());
    let real_count = real.query("src", "SELECT count(usage), sum(n) FROM cpu");
    let ours = p.query(leader, "src", "SELECT count(usage), sum(n) FROM cpu");
    assert_eq!(real_count["results"][0]["series"][0]["values"][0][1], 2000);
    assert_eq!(
        real_count["results"][0]["series"][0]["values"][0][2],
        ours["results"][0]["series"][0]["values"][0][2]
    );
}

#[test]
fn bad_input_on_the_snapshotter_port_is_closed_and_the_node_keeps_serving() {
    use std::io::{Read, Write};
    let p = Procs::start(1, &[]);
    p.leader();
    p.query(1, "", "CREATE DATABASE db");
    let addr = p.nodes[&1].snapshotter.clone();
    let mut big = vec![3u8, 1];
    big.extend(std::iter::repeat_n(b'{', 70 << 10));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "random bytes",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
                .collect(),
        ),
        ("wrong mux header", vec![9, 1, b'{', b'}', b'\n']),
        ("type 2", b"\x03\x02{}\n".to_vec()),
        ("unknown type", b"\x03\x63{}\n".to_vec()),
        ("truncated JSON", b"\x03\x01{\"Type\":1,\"Back".to_vec()),
        ("JSON over 64 KiB", big),
        (
            "UploadSize 2^62",
            b"\x03\x06{\"Type\":6,\"UploadSize\":4611686018427387904}\n".to_vec(),
        ),
        (
            "shard that does not exist",
            b"\x03\x00{\"Type\":0,\"ShardID\":999}\n".to_vec(),
        ),
    ];
    for (what, bytes) in cases {
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = c.write_all(&bytes);
        let _ = c.shutdown(std::net::Shutdown::Write);
        let mut out = Vec::new();
        let r = c.read_to_end(&mut out);
        // A timed-out read (the server kept the connection open) fails here.
        assert!(
            r.is_ok(),
            "{what}: the server did not close the connection: {r:?}"
        );
        assert!(out.is_empty(), "{what}: got {} bytes back", out.len());
        assert!(
            p.write(1, "db", "m v=1 1\n"),
            "{what}: the node stopped serving writes"
        );
    }
    assert!(p.log(1).contains("snapshotter request refused"));
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A tar with one entry whose name is written as given (the tar crate
/// refuses to build `..` or absolute names itself).
fn raw_tar(name: &str, body: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_size(body.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend(body);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend([0u8; 1024]);
    out
}

#[test]
fn restores_refuse_escaping_tars_stalled_clients_and_huge_uploads() {
    use raftsnap::snapshotter::client::Client;
    use std::io::{Read, Write};
    let p = Procs::start(
        1,
        &[
            "--snapshotter-timeout",
            "1s",
            "--snapshotter-max-upload",
            "64MiB",
        ],
    );
    p.leader();
    p.query(1, "", "CREATE DATABASE db");
    assert!(p.write(1, "db", "m v=1 1000000000\nm v=2 2000000000\n"));
    let addr = p.nodes[&1].snapshotter.clone();
    let pid = p.nodes[&1].child.as_ref().unwrap().id();
    let client = Client::new(&addr, Duration::from_secs(10));
    // A new shard to upload into: import the node's own metastore as db2.
    let meta = client.metastore().unwrap();
    let map = client.import_metastore(&meta, "db", "db2", "", "").unwrap();
    assert_eq!(map.len(), 1);
    let new_id = map[0].1;
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("evil.tsm");
    let depth = "../".repeat(16);
    for (what, name) in [
        ("a `..` entry", format!("{depth}{}", target.display())),
        ("an absolute entry", target.display().to_string()),
    ] {
        let tar = raw_tar(&name, b"not really TSM");
        let r = client.upload_shard(new_id, |w| w.write_all(&tar));
        let e = r.expect_err(what).to_string();
        assert!(e.contains("leaves its directory"), "{what}: {e}");
        assert!(!target.exists(), "{what}: a file was written outside");
        assert!(
            p.write(1, "db", "m v=3 3000000000\n"),
            "{what}: writes stopped"
        );
    }
    // A corrupt TSM file in the right place: refused, nothing applied.
    let tar = raw_tar(
        &format!("db2/autogen/{new_id}/000000001-000000001.tsm"),
        b"garbage",
    );
    let e = client
        .upload_shard(new_id, |w| w.write_all(&tar))
        .unwrap_err();
    assert!(e.to_string().contains("TSM"), "{e}");
    let q = p.query(1, "db2", "SELECT count(v) FROM m");
    assert!(q["results"][0]["series"].is_null(), "{q}");

    // Stalled clients are closed after the timeout (1 s here): after the
    // mux byte, inside a JSON line, inside a metastore upload and inside a
    // shard upload.
    let mut type7 = vec![3u8, 7];
    type7.extend(new_id.to_be_bytes());
    type7.extend(&raw_tar("db2/autogen/1/x.tsm", &[0u8; 4096])[..700]);
    for (what, bytes) in [
        ("after the mux byte", vec![3u8]),
        ("inside the JSON", b"\x03\x01{\"Type\":".to_vec()),
        (
            "inside a metastore upload",
            b"\x03\x06{\"Type\":6,\"BackupDatabase\":\"db\",\"UploadSize\":1000}\nabc".to_vec(),
        ),
        ("inside a shard upload", type7),
    ] {
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        c.write_all(&bytes).unwrap();
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        let r = c.read_to_end(&mut out);
        assert!(r.is_ok(), "{what}: still open after 20 s: {r:?}");
        assert!(started.elapsed() < Duration::from_secs(20), "{what}");
        assert!(
            p.write(1, "db", "m v=4 4000000000\n"),
            "{what}: writes stopped"
        );
    }

    // Announced uploads are not preallocated: 2^62, and 60 MiB (under the
    // limit) of which 3 bytes come. Memory stays put.
    let before = rss_kib(pid);
    for size in [1u64 << 62, 60 << 20, 65 << 20] {
        for _ in 0..4 {
            let mut c = std::net::TcpStream::connect(&addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let req = format!("{{\"Type\":6,\"BackupDatabase\":\"db\",\"UploadSize\":{size}}}\n");
            let mut b = vec![3u8, 6];
            b.extend(req.as_bytes());
            b.extend(b"abc");
            c.write_all(&b).unwrap();
            c.shutdown(std::net::Shutdown::Write).unwrap();
            let mut out = Vec::new();
            assert!(c.read_to_end(&mut out).is_ok());
            assert!(out.is_empty(), "UploadSize {size}: got a reply");
        }
    }
    let after = rss_kib(pid);
    assert!(
        after < before + 32 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    assert!(p.write(1, "db", "m v=5 5000000000\n"));
    let log = p.log(1);
    for needle in [
        "leaves its directory",
        "nothing within",
        "over the limit",
        "stalled",
    ] {
        assert!(log.contains(needle), "log lacks {needle:?}:\n{log}");
    }
    // The scratch directory is left empty.
    let scratch = p.dir.path().join("node1").join("tsdb.scratch");
    assert_eq!(
        std::fs::read_dir(&scratch).unwrap().count(),
        0,
        "{}",
        scratch.display()
    );
}
