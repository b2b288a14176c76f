//! `tsnode import`: TSM files (a directory of them, or an InfluxDB 1.x data
//! directory) into a node, by file: they are streamed as a tar to the
//! node's `POST /import`, which stages them, splits them at shard-group
//! bounds and has every replica link them in (no value crosses the raft
//! log).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::progress::Progress;

/// Arguments of `tsnode import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// HTTP address of the node to import into.
    #[arg(long, default_value = "127.0.0.1:8086")]
    pub host: String,
    /// Database to import into (it must exist).
    #[arg(long)]
    pub db: String,
    /// Retention policy (the database's default when absent).
    #[arg(long)]
    pub rp: Option<String>,
    /// In an InfluxDB data directory (`<db>/<rp>/<shard>/*.tsm`): only this
    /// source database.
    #[arg(long)]
    pub from_db: Option<String>,
    /// In an InfluxDB data directory: only this source retention policy
    /// (needs --from-db).
    #[arg(long, requires = "from_db")]
    pub from_rp: Option<String>,
    /// User to authenticate as (a node with authentication on needs an
    /// admin for imports).
    #[arg(long, requires = "password")]
    pub username: Option<String>,
    /// That user's password.
    #[arg(long, requires = "username")]
    pub password: Option<String>,
    /// A TSM file, a directory of them, or an InfluxDB data directory.
    pub path: PathBuf,
}

/// The TSM files under `root` (itself if a file), in path order (a shard's
/// files sort oldest first, so later files win), filtered by source
/// database and retention policy (the first path components under `root`).
pub fn collect_tsm(
    root: &Path,
    from_db: Option<&str>,
    from_rp: Option<&str>,
) -> std::io::Result<Vec<(PathBuf, u64)>> {
    let mut out = Vec::new();
    if root.is_file() {
        out.push((root.to_path_buf(), std::fs::metadata(root)?.len()));
        return Ok(out);
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let p = e.path();
            let ft = e.file_type()?;
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() && p.extension().is_some_and(|x| x == "tsm") {
                let rel: Vec<String> = p
                    .strip_prefix(root)
                    .unwrap_or(&p)
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                let keep = from_db.is_none_or(|db| rel.first().is_some_and(|c| c == db))
                    && from_rp.is_none_or(|rp| rel.get(1).is_some_and(|c| c == rp));
                if keep {
                    out.push((p, e.metadata()?.len()));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Counts bytes read, for the progress display.
struct Counting<R> {
    inner: R,
    progress: Progress,
    done: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        self.progress.set(self.done);
        Ok(n)
    }
}

/// The files to send for `files`: a TSM file with a tombstone file beside
/// it (`<stem>.tombstone`, its deletes, as influxd leaves them until a
/// compaction) is sent as a copy written in `scratch` without the deleted
/// points, left out when none is left; the others as they are.
pub fn apply_tombstones(
    files: Vec<(PathBuf, u64)>,
    scratch: &Path,
) -> Result<Vec<(PathBuf, u64)>, String> {
    use crate::tsdb::shard::{ShardFile, write_merged};
    use crate::tsdb::tsm::Tombstones;
    let mut out = Vec::with_capacity(files.len());
    for (i, (p, size)) in files.into_iter().enumerate() {
        let tomb = p.with_extension("tombstone");
        if !tomb.is_file() {
            out.push((p, size));
            continue;
        }
        let set = Tombstones::read(&tomb).map_err(|e| e.to_string())?;
        let cut = scratch.join(format!("{i:06}.tsm"));
        let m = ShardFile::open(&p, 0)
            .and_then(|f| f.with_deletes(set))
            .and_then(|f| write_merged(std::slice::from_ref(&f), &cut, i64::MIN, i64::MAX))
            .map_err(|e| format!("{}: applying its tombstones: {e}", p.display()))?;
        if m.values == 0 {
            let _ = std::fs::remove_file(&cut);
        } else {
            out.push((cut, m.size));
        }
    }
    Ok(out)
}

fn run(a: &ImportArgs) -> Result<String, String> {
    let files = collect_tsm(&a.path, a.from_db.as_deref(), a.from_rp.as_deref())
        .map_err(|e| format!("{}: {e}", a.path.display()))?;
    if files.is_empty() {
        return Err(format!("no TSM files under {}", a.path.display()));
    }
    let scratch = tempfile::Builder::new()
        .prefix("tsnode-import-")
        .tempdir()
        .map_err(|e| format!("a scratch directory: {e}"))?;
    let files = apply_tombstones(files, scratch.path())?;
    if files.is_empty() {
        return Err(format!(
            "no point left to import under {} (every one deleted by tombstone files)",
            a.path.display()
        ));
    }
    // The tar's size: a header and the padded data per file, two zero blocks.
    let total: u64 = files
        .iter()
        .map(|(_, s)| 512 + s.div_ceil(512) * 512)
        .sum::<u64>()
        + 1024;
    let (rx, tx) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let list = files.clone();
    let writer = std::thread::spawn(move || -> Result<(), String> {
        let mut b = tar::Builder::new(tx);
        for (i, (p, _)) in list.iter().enumerate() {
            b.append_path_with_name(p, format!("{i:06}.tsm"))
                .map_err(|e| format!("{}: {e}", p.display()))?;
        }
        b.into_inner().map(drop).map_err(|e| e.to_string())
    });
    let mut body = Counting {
        inner: rx,
        progress: Progress::bytes("importing", total),
        done: 0,
    };
    let mut url = format!("http://{}/import?db={}", a.host, form_urlencoded(&a.db));
    if let Some(rp) = &a.rp {
        url.push_str(&format!("&rp={}", form_urlencoded(rp)));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let auth = match (&a.username, &a.password) {
        (Some(u), Some(p)) => {
            use base64::Engine;
            let b = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            format!("Basic {b}")
        }
        _ => String::new(),
    };
    let post = |url: &str| {
        let r = agent.post(url);
        if auth.is_empty() {
            r
        } else {
            r.header("Authorization", &auth)
        }
    };
    // An empty import first: a refusal (no such database, no credentials)
    // is read before any file is sent.
    let mut pre = post(&url)
        .send_empty()
        .map_err(|e| format!("POST {url}: {e}"))?;
    if !pre.status().is_success() {
        let text = pre.body_mut().read_to_string().unwrap_or_default();
        return Err(refusal(pre.status(), &text));
    }
    let sent = post(&url)
        .header("Content-Type", "application/x-tar")
        .send(ureq::SendBody::from_reader(&mut body));
    body.progress.finish();
    let built = writer
        .join()
        .unwrap_or_else(|_| Err("the tar writer panicked".into()));
    let mut resp = sent.map_err(|e| format!("POST {url}: {e}"))?;
    let status = resp.status();
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("reading the answer: {e}"))?;
    if !status.is_success() {
        return Err(refusal(status, &text));
    }
    built?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let g = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
    Ok(format!(
        "import complete: {} file(s), {} bytes, {} values in {} shard group(s)",
        g("files"),
        g("bytes"),
        g("values"),
        g("shard_groups")
    ))
}

/// The error of a refused import, from its JSON answer.
fn refusal(status: ureq::http::StatusCode, text: &str) -> String {
    let msg = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
        .unwrap_or_else(|| text.to_string());
    format!("import refused ({status}): {msg}")
}

/// Percent-encodes a query parameter value.
fn form_urlencoded(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs `tsnode import`; returns the exit code.
pub fn import(a: &ImportArgs) -> i32 {
    match run(a) {
        Ok(msg) => {
            println!("{msg}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_with_tombstones_are_sent_without_their_deleted_points() {
        use crate::tsdb::tsm::{Tombstones, TsmReader, TsmWriter, Values};
        let t = tempfile::tempdir().unwrap();
        let shard = t.path().join("db/autogen/1");
        std::fs::create_dir_all(&shard).unwrap();
        let write = |name: &str| {
            let p = shard.join(name);
            let mut w = TsmWriter::create(&p).unwrap();
            let ts: Vec<i64> = (0..100).collect();
            w.write("m,host=a#!~#v", &ts, &Values::Integer(ts.clone()))
                .unwrap();
            w.finish().unwrap();
            p
        };
        let (plain, cut, gone) = (
            write("000000001-000000001.tsm"),
            write("000000002-000000001.tsm"),
            write("000000003-000000001.tsm"),
        );
        let mut some = Tombstones::default();
        some.add("m,host=a#!~#v", 0, 89);
        some.write(&cut.with_extension("tombstone")).unwrap();
        let mut all = Tombstones::default();
        all.add("m,host=a#!~#v", i64::MIN, i64::MAX);
        all.write(&gone.with_extension("tombstone")).unwrap();
        let files = collect_tsm(t.path(), None, None).unwrap();
        assert_eq!(files.len(), 3);
        let scratch = tempfile::tempdir().unwrap();
        let sent = apply_tombstones(files, scratch.path()).unwrap();
        assert_eq!(sent.len(), 2, "the file with nothing left is not sent");
        assert_eq!(sent[0].0, plain);
        assert!(sent[1].0.starts_with(scratch.path()));
        let r = TsmReader::open(&sent[1].0).unwrap();
        let (ts, _) = r.read("m,host=a#!~#v").unwrap().unwrap();
        assert_eq!(ts, (90..100).collect::<Vec<_>>());
        assert_eq!(sent[1].1, std::fs::metadata(&sent[1].0).unwrap().len());
        // A damaged tombstone file stops the import, named.
        std::fs::write(cut.with_extension("tombstone"), b"junk").unwrap();
        let files = collect_tsm(t.path(), None, None).unwrap();
        let e = apply_tombstones(files, scratch.path()).unwrap_err();
        assert!(e.contains("000000002-000000001.tombstone"), "{e}");
    }

    #[test]
    fn a_data_directory_is_filtered_by_database_and_policy() {
        let t = tempfile::tempdir().unwrap();
        for p in [
            "a/autogen/1/1.tsm",
            "a/autogen/1/2.tsm",
            "a/other/2/1.tsm",
            "b/autogen/3/1.tsm",
            "a/autogen/1/x.wal",
        ] {
            let f = t.path().join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, b"x").unwrap();
        }
        let names = |db, rp| {
            collect_tsm(t.path(), db, rp)
                .unwrap()
                .into_iter()
                .map(|(p, _)| p.strip_prefix(t.path()).unwrap().display().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(None, None).len(), 4);
        assert_eq!(
            names(Some("a"), Some("autogen")),
            ["a/autogen/1/1.tsm", "a/autogen/1/2.tsm"]
        );
        assert_eq!(names(Some("b"), None), ["b/autogen/3/1.tsm"]);
        assert_eq!(form_urlencoded("my db/x"), "my%20db%2Fx");
    }
}
