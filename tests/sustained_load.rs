//! Sustained load on a 3-node cluster of `tsnode` processes, alone in its
//! test binary (so no other test competes for the two cores): 60 s of writes
//! from 4 connections, and the leader keeps its term.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::procs::{Procs, writers};

fn status_u64(p: &Procs, id: u64, field: &str) -> u64 {
    p.status(id).map_or(0, |s| s[field].as_u64().unwrap_or(0))
}

fn count(p: &Procs, id: u64, db: &str, q: &str) -> i64 {
    p.query(id, db, q)["results"][0]["series"][0]["values"][0][1]
        .as_i64()
        .unwrap_or(0)
}

#[test]
fn sixty_seconds_of_writes_from_four_connections_keep_the_leader_and_get_no_5xx() {
    let p = Procs::start(3, &[]);
    let leader = p.leader();
    p.query(leader, "", "CREATE DATABASE db");
    let term = status_u64(&p, leader, "term");
    let stop = Arc::new(AtomicBool::new(false));
    let ws = writers(&p, vec![leader], 4, 5000, stop.clone());
    let start = Instant::now();
    let mut terms = Vec::new();
    while start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_secs(1));
        for id in 1..=3u64 {
            if let Some(s) = p.status(id) {
                terms.push((id, s["term"].as_u64().unwrap_or(0), s["role"].clone()));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (mut points, mut e5, mut other) = (0, 0, 0);
    for w in ws {
        let (a, x, o) = w.join().unwrap();
        points += a.iter().map(|(_, n)| n).sum::<u64>();
        e5 += x;
        other += o;
    }
    eprintln!("60 s: {points} points acknowledged, {e5} 5xx, {other} other failures");
    assert_eq!(e5, 0, "5xx answers");
    assert_eq!(other, 0, "failed writes");
    assert!(
        terms.iter().all(|(_, t, _)| *t == term),
        "the term changed: {terms:?}"
    );
    assert_eq!(p.status(leader).unwrap()["role"], "leader");
    assert_eq!(
        count(&p, leader, "db", "SELECT count(v) FROM m"),
        points as i64
    );
}
