//! `tsnode snapshot list|inspect|verify`.
//!
//! Exit codes of `verify`: 0 sound, 1 some file bad (each named), 2 the meta
//! table itself unreadable. `inspect` exits 2 on an unreadable meta table.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde::Serialize;

use crate::proto::snapshot::SnapshotMetaTable;
use crate::snapshot::meta_table;
use crate::snapshot::storage::scan;

/// `tsnode snapshot ...`
#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// List the snapshots of a node's data directory (read-only).
    List {
        /// The node's data directory (snapshots live in `<dir>/snapshots`).
        #[arg(long)]
        data_dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a snapshot's meta table: index, term, membership, files.
    Inspect {
        /// A snapshot directory (`snapshot_<index>`).
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Recompute every file's crc32c against the meta table.
    Verify {
        /// A snapshot directory (`snapshot_<index>`).
        dir: PathBuf,
    },
    /// Ask a running node to take a snapshot now (`POST /snapshot`).
    Save {
        /// The node's HTTP address.
        #[arg(long, default_value = "127.0.0.1:8086")]
        host: String,
    },
}

/// `tsnode snapshot inspect --json` output (field names are a contract).
#[derive(Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct InspectJson {
    /// last_included_index.
    pub index: u64,
    /// last_included_term.
    pub term: u64,
    /// Voter ids.
    pub voters: Vec<u64>,
    /// Learner ids.
    pub learners: Vec<u64>,
    /// Every file.
    pub files: Vec<InspectFile>,
    /// Total bytes of the files.
    pub bytes: u64,
}

/// One file in [`InspectJson`].
#[derive(Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct InspectFile {
    /// Relative name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// crc32c (Castagnoli).
    pub crc32c: u32,
}

impl From<&SnapshotMetaTable> for InspectJson {
    fn from(t: &SnapshotMetaTable) -> Self {
        let m = t.meta.clone().unwrap_or_default();
        InspectJson {
            index: m.last_included_index,
            term: m.last_included_term,
            voters: m.voters,
            learners: m.learners,
            files: t
                .files
                .iter()
                .map(|f| InspectFile {
                    name: f.name.clone(),
                    size: f.size,
                    crc32c: f.crc32c,
                })
                .collect(),
            bytes: t.files.iter().map(|f| f.size).sum(),
        }
    }
}

/// Runs a snapshot command; returns the exit code.
pub fn run(cmd: SnapshotCmd) -> i32 {
    match cmd {
        SnapshotCmd::List { data_dir, json } => list(&data_dir, json),
        SnapshotCmd::Inspect { dir, json } => inspect(&dir, json),
        SnapshotCmd::Verify { dir } => verify(&dir),
        SnapshotCmd::Save { host } => save(&host),
    }
}

fn list(data_dir: &Path, json: bool) -> i32 {
    let root = data_dir.join("snapshots");
    let entries = match scan(&root) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    if json {
        let v: Vec<_> = entries
            .iter()
            .map(|s| {
                serde_json::json!({
                    "dir": s.dir,
                    "kind": s.kind,
                    "index": s.index,
                    "meta": s.table.as_ref().ok().map(InspectJson::from),
                    "error": s.table.as_ref().err(),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return 0;
    }
    if entries.is_empty() {
        println!("no snapshots under {}", root.display());
        return 0;
    }
    println!(
        "{:<10} {:>20} {:>8} {:>7} {:>14}  dir",
        "kind", "index", "term", "files", "bytes"
    );
    for s in &entries {
        match &s.table {
            Ok(t) => {
                let j = InspectJson::from(t);
                println!(
                    "{:<10} {:>20} {:>8} {:>7} {:>14}  {}",
                    s.kind,
                    j.index,
                    j.term,
                    j.files.len(),
                    j.bytes,
                    s.dir.display()
                );
            }
            Err(e) => println!(
                "{:<10} {:>20} {:>8} {:>7} {:>14}  {}  ({e})",
                s.kind,
                s.index.map_or("-".into(), |i| i.to_string()),
                "-",
                "-",
                "-",
                s.dir.display()
            ),
        }
    }
    0
}

fn inspect(dir: &Path, json: bool) -> i32 {
    let table = match meta_table::read_dir_table(dir) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let j = InspectJson::from(&table);
    if json {
        match serde_json::to_string_pretty(&j) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        }
        return 0;
    }
    let meta = table.meta.clone().unwrap_or_default();
    println!("snapshot   {}", dir.display());
    println!("index      {}", j.index);
    println!("term       {}", j.term);
    println!("membership {}", meta_table::describe_membership(&meta));
    println!("files      {} ({} bytes)", j.files.len(), j.bytes);
    for f in &j.files {
        println!("  {:>14}  {:08x}  {}", f.size, f.crc32c, f.name);
    }
    0
}

/// `POST http://<host>/snapshot` over a plain HTTP/1.1 connection.
fn save(host: &str) -> i32 {
    use std::io::{Read, Write};
    let addr = host.trim_start_matches("http://").trim_end_matches('/');
    let mut s = match std::net::TcpStream::connect(addr) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: connect {addr}: {e}");
            return 1;
        }
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(600)));
    let req = format!(
        "POST /snapshot HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let mut resp = String::new();
    if let Err(e) = s
        .write_all(req.as_bytes())
        .and_then(|()| s.read_to_string(&mut resp))
    {
        eprintln!("error: {addr}: {e}");
        return 1;
    }
    let status = resp.split_whitespace().nth(1).unwrap_or("");
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    if status == "200" {
        match serde_json::from_str::<serde_json::Value>(body) {
            Ok(v) => {
                println!("snapshot {} (term {}) on {addr}", v["index"], v["term"]);
                0
            }
            Err(_) => {
                println!("{body}");
                0
            }
        }
    } else {
        eprintln!("error: {addr} answered {status}: {body}");
        1
    }
}

fn verify(dir: &Path) -> i32 {
    match crate::snapshot::verify_dir(dir) {
        Err(e) => {
            eprintln!("error: meta table unreadable: {e}");
            2
        }
        Ok((table, bad)) if bad.is_empty() => {
            println!(
                "ok: {} files, {} bytes match the meta table of snapshot {}",
                table.files.len(),
                table.files.iter().map(|f| f.size).sum::<u64>(),
                table.meta.map_or(0, |m| m.last_included_index)
            );
            0
        }
        Ok((table, bad)) => {
            for b in &bad {
                println!("BAD {b}");
            }
            println!(
                "{} of {} files failed verification",
                bad.len(),
                table.files.len()
            );
            1
        }
    }
}
