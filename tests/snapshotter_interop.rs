//! The InfluxDB snapshotter service against Debian's real tools: `influxd
//! backup -portable` of a 3-node tsnode cluster (through a follower, which
//! serves its local files), restored with `influxd restore -portable` into a
//! real influxd, answers the same count.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::influxd::{Influxd, binary};
use common::procs::Procs;

#[test]
fn influxd_backup_of_a_tsnode_cluster_restores_into_real_influxd() {
    let Some(influxd) = binary("influxd") else {
        return;
    };
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
    let out = Command::new(&influxd)
        .args([
            "backup",
            "-portable",
            "-host",
            &p.nodes[&follower].snapshotter,
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "influxd backup: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        p.log(follower)
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
            "UploadSize 2^62 on a type not served",
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
