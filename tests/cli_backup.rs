//! `tsnode backup` / `tsnode restore` against a scripted snapshotter that
//! misbehaves: a shard tar cut short, an empty reply, a refused import.
//! A failed backup writes no manifest (so no restore can pick it up), and
//! every failure is reported with a non-zero exit.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;

use prost::Message;
use raftsnap::snapshotter::wire::{BACKUP_MAGIC, encode_id_map};

/// Serves `n` connections; `reply(type byte, request bytes)` answers each.
fn scripted(n: usize, reply: fn(u8) -> Vec<u8>) -> (String, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let h = std::thread::spawn(move || {
        for _ in 0..n {
            let Ok((mut c, _)) = l.accept() else { return };
            let mut head = [0u8; 2];
            if c.read_exact(&mut head).is_err() {
                continue;
            }
            // Read the JSON line and, for type 6, the upload that follows:
            // everything the client sends before it goes quiet. Closing
            // with unread bytes would reset the connection (RST) before
            // the client reads the reply.
            c.set_read_timeout(Some(std::time::Duration::from_millis(300)))
                .unwrap();
            let mut buf = [0u8; 65536];
            while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
            let _ = c.write_all(&reply(head[1]));
            let _ = c.shutdown(std::net::Shutdown::Write);
            while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
        }
    });
    (addr, h)
}

fn meta_reply() -> Vec<u8> {
    let data = raftsnap::proto::meta::Data::default().encode_to_vec();
    let mut b = BACKUP_MAGIC.to_be_bytes().to_vec();
    b.extend((data.len() as u64).to_be_bytes());
    b.extend(&data);
    b.extend(5u64.to_be_bytes());
    b.extend(b"null\n");
    b
}

fn tsnode(args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_tsnode"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

#[test]
fn a_shard_tar_cut_short_fails_the_backup_and_writes_no_manifest() {
    let (addr, h) = scripted(3, |typ| match typ {
        1 => meta_reply(),
        3 => b"{\"Paths\":[\"db/autogen/1\"]}\n".to_vec(),
        // A tar header and half a file, no trailer.
        _ => {
            let mut h = tar::Header::new_ustar();
            h.set_path("db/autogen/1/000000001-000000001.tsm").unwrap();
            h.set_size(4096);
            h.set_cksum();
            let mut b = h.as_bytes().to_vec();
            b.extend([7u8; 1000]);
            b
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bk");
    let (ok, text) = tsnode(&["backup", "--host", &addr, out.to_str().unwrap()]);
    h.join().unwrap();
    assert!(!ok, "{text}");
    assert!(text.contains("without its trailer"), "{text}");
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.ends_with(".manifest") || n.ends_with(".tar.gz")),
        "{names:?}"
    );
}

#[test]
fn an_empty_reply_and_a_refused_import_are_reported() {
    // The metastore request answered with nothing (a server-side error).
    let (addr, h) = scripted(1, |_| Vec::new());
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = tsnode(&["backup", "--host", &addr, dir.path().to_str().unwrap()]);
    h.join().unwrap();
    assert!(!ok);
    assert!(text.contains("closed without a reply"), "{text}");

    // A restore whose import the server refuses (empty ID map).
    let bk = dir.path().join("bk");
    raftsnap::snapshotter::portable::write_backup(
        &bk,
        "20240101T000000Z",
        &raftsnap::proto::meta::Data::default(),
        &[],
    )
    .unwrap();
    let (addr, h) = scripted(1, |_| encode_id_map(&[]));
    let (ok, text) = tsnode(&[
        "restore",
        "--host",
        &addr,
        "--db",
        "db",
        bk.to_str().unwrap(),
    ]);
    h.join().unwrap();
    assert!(!ok);
    assert!(text.contains("may already exist"), "{text}");

    // Bad arguments and a directory without a backup.
    let (ok, text) = tsnode(&["restore", "--newdb", "x", bk.to_str().unwrap()]);
    assert!(!ok && text.contains("--db"), "{text}");
    let (ok, text) = tsnode(&[
        "restore",
        "--host",
        &addr,
        dir.path().join("none").to_str().unwrap(),
    ]);
    assert!(!ok && text.contains("none"), "{text}");
    let (ok, text) = tsnode(&[
        "backup",
        "--host",
        &addr,
        "--since",
        "2024-01-01T00:00:00Z",
        "--start",
        "2024-01-01T00:00:00Z",
        "/tmp/x",
    ]);
    assert!(!ok && text.contains("cannot be used with"), "{text}");
}
