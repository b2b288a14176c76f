//! Checking files against the size and crc32c recorded when they were
//! written: one file at a time, optionally paced to a byte rate (the
//! background scrub reads at `scrub_rate` so that it never competes with
//! writes for the disk).

use std::fs::{self, File};
use std::io::Read;
use std::path::Path;
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
    let actual = match fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(FileProblem::Missing),
        Err(e) => return Some(FileProblem::Unreadable(e.to_string())),
        Ok(md) => md.len(),
    };
    if actual != size {
        return Some(FileProblem::SizeMismatch {
            expected: size,
            actual,
        });
    }
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) => return Some(FileProblem::Unreadable(e.to_string())),
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut crc = 0u32;
    loop {
        if stop() {
            return None;
        }
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Some(FileProblem::Unreadable(e.to_string())),
        };
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        pace.took(n as u64);
    }
    (crc != crc32c).then_some(FileProblem::CrcMismatch {
        expected: crc32c,
        actual: crc,
    })
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
    fn the_pace_holds_reads_to_the_rate() {
        let mut pace = Pace::new(10 << 20);
        let t = Instant::now();
        pace.took(2 << 20);
        // 2 MiB at 10 MiB/s is due after 0.2 s.
        assert!(t.elapsed() >= Duration::from_millis(190));
    }
}
