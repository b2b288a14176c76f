//! Checking files against the size and crc32c recorded when they were
//! written: one file at a time, optionally paced to a byte rate (the
//! background scrub reads at `scrub_rate` so that it never competes with
//! writes for the disk).

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::snapshot::error::FileProblem;

/// Paces reads to `bytes_per_sec` (0 = unpaced).
#[derive(Debug)]
pub struct Pace {
    bytes_per_sec: u64,
    started: Instant,
    bytes: u64,
}

impl Pace {
    /// A pace of `bytes_per_sec` starting now (0 = as fast as the disk).
    pub fn new(bytes_per_sec: u64) -> Self {
        Self {
            bytes_per_sec,
            started: Instant::now(),
            bytes: 0,
        }
    }

    /// Counts `n` bytes read and sleeps until the rate allows more.
    pub fn took(&mut self, n: u64) {
        self.bytes += n;
        if self.bytes_per_sec == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.bytes as f64 / self.bytes_per_sec as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(wait);
        }
    }

    /// Bytes counted so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// Re-reads `path` and compares it with the size and crc32c it had when
/// written; `None` if it matches. `stop` is polled between chunks: when it
/// returns true the check ends early with `None` (not a finding).
pub fn check_file(
    path: &Path,
    size: u64,
    crc32c: u32,
    pace: &mut Pace,
    stop: &dyn Fn() -> bool,
) -> Option<FileProblem> {
    match File::open(path) {
        Ok(f) => check_open(&f, size, crc32c, pace, stop),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(FileProblem::Missing),
        Err(e) => Some(FileProblem::Unreadable(e.to_string())),
    }
}

/// [`check_file`] on a file already open (one a reader holds, so that it
/// stays readable should it be removed meanwhile).
pub fn check_open(
    f: &File,
    size: u64,
    crc32c: u32,
    pace: &mut Pace,
    stop: &dyn Fn() -> bool,
) -> Option<FileProblem> {
    let actual = match f.metadata() {
        Err(e) => return Some(FileProblem::Unreadable(e.to_string())),
        Ok(md) => md.len(),
    };
    if actual != size {
        return Some(FileProblem::SizeMismatch {
            expected: size,
            actual,
        });
    }
    let mut buf = vec![0u8; 1 << 20];
    let (mut crc, mut at) = (0u32, 0u64);
    while at < size {
        if stop() {
            return None;
        }
        let n = match f.read_at(&mut buf, at) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Some(FileProblem::Unreadable(e.to_string())),
        };
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        at += n as u64;
        pace.took(n as u64);
    }
    if at != size {
        return Some(FileProblem::SizeMismatch {
            expected: size,
            actual: at,
        });
    }
    (crc != crc32c).then_some(FileProblem::CrcMismatch {
        expected: crc32c,
        actual: crc,
    })
}

/// A file to check: where, and its size and crc32c when written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Where it is.
    pub path: PathBuf,
    /// Size when written.
    pub size: u64,
    /// crc32c when written.
    pub crc32c: u32,
}

/// Checks every target, reading a file that several targets share by hard
/// link (a live TSM file and the snapshots holding it) once. Returns a
/// finding per target (in order) and how many files were read.
pub fn check_targets(
    targets: &[Target],
    pace: &mut Pace,
    stop: &dyn Fn() -> bool,
) -> (Vec<Option<FileProblem>>, u64) {
    let mut seen: HashMap<(u64, u64, u64, u32), Option<FileProblem>> = HashMap::new();
    let mut read = 0;
    let out = targets
        .iter()
        .map(|t| {
            let id = fs::metadata(&t.path)
                .ok()
                .map(|m| (m.dev(), m.ino(), t.size, t.crc32c));
            if let Some(found) = id.and_then(|id| seen.get(&id)) {
                return found.clone();
            }
            read += 1;
            let found = check_file(&t.path, t.size, t.crc32c, pace, stop);
            if let Some(id) = id {
                seen.insert(id, found.clone());
            }
            found
        })
        .collect();
    (out, read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flipped_byte_a_cut_and_a_missing_file_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
        fs::write(&p, &data).unwrap();
        let crc = crc32c::crc32c(&data);
        let size = data.len() as u64;
        let never = || false;
        let mut pace = Pace::new(0);
        assert_eq!(check_file(&p, size, crc, &mut pace, &never), None);
        assert_eq!(pace.bytes(), size);

        let mut bad = data.clone();
        bad[123_456] ^= 0x10;
        fs::write(&p, &bad).unwrap();
        assert!(matches!(
            check_file(&p, size, crc, &mut pace, &never),
            Some(FileProblem::CrcMismatch { expected, .. }) if expected == crc
        ));
        fs::write(&p, &data[..1000]).unwrap();
        assert_eq!(
            check_file(&p, size, crc, &mut pace, &never),
            Some(FileProblem::SizeMismatch {
                expected: size,
                actual: 1000
            })
        );
        fs::remove_file(&p).unwrap();
        assert_eq!(
            check_file(&p, size, crc, &mut pace, &never),
            Some(FileProblem::Missing)
        );
    }

    #[test]
    fn a_file_linked_from_several_places_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        let data = vec![7u8; 100_000];
        fs::write(&a, &data).unwrap();
        fs::hard_link(&a, &b).unwrap();
        fs::write(&c, &data[..10]).unwrap();
        let crc = crc32c::crc32c(&data);
        let t = |p: &Path, size| Target {
            path: p.to_path_buf(),
            size,
            crc32c: crc,
        };
        let mut pace = Pace::new(0);
        let (found, read) = check_targets(
            &[t(&a, 100_000), t(&b, 100_000), t(&c, 100_000)],
            &mut pace,
            &|| false,
        );
        assert_eq!(read, 2, "the hard link is not read again");
        assert_eq!(pace.bytes(), 100_000);
        assert_eq!(&found[..2], &[None, None]);
        assert!(matches!(found[2], Some(FileProblem::SizeMismatch { .. })));
        // A damaged shared file is reported for every place that links it.
        let mut bad = data.clone();
        bad[5] ^= 1;
        fs::write(&a, &bad).unwrap();
        let (found, _) = check_targets(&[t(&a, 100_000), t(&b, 100_000)], &mut pace, &|| false);
        assert!(
            found
                .iter()
                .all(|f| matches!(f, Some(FileProblem::CrcMismatch { .. })))
        );
    }

    #[test]
    fn the_pace_holds_reads_to_the_rate() {
        let mut pace = Pace::new(10 << 20);
        let t = Instant::now();
        pace.took(2 << 20);
        // 2 MiB at 10 MiB/s is due after 0.2 s.
        assert!(t.elapsed() >= Duration::from_millis(190));
    }
}
