//! Progress for long work: a bar on a terminal, plain lines otherwise.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress display over `total` units.
pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    total: u64,
    last_pct: u64,
    bytes: bool,
}

impl Progress {
    /// Counts items.
    pub fn items(label: &str, total: u64) -> Self {
        Self::new(label, total, false)
    }

    /// Counts bytes.
    pub fn bytes(label: &str, total: u64) -> Self {
        Self::new(label, total, true)
    }

    fn new(label: &str, total: u64, bytes: bool) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(total);
            let tmpl = if bytes {
                "{msg:>12} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
            } else {
                "{msg:>12} [{bar:40}] {pos}/{len} {per_sec} eta {eta}"
            };
            if let Ok(style) = ProgressStyle::with_template(tmpl) {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_message(label.to_string());
            b
        });
        Self {
            bar,
            label: label.to_string(),
            total,
            last_pct: 0,
            bytes,
        }
    }

    /// Sets the total (when it becomes known).
    pub fn set_total(&mut self, total: u64) {
        self.total = total;
        if let Some(b) = &self.bar {
            b.set_length(total);
        }
    }

    /// Sets the position.
    pub fn set(&mut self, done: u64) {
        match &self.bar {
            Some(b) => b.set_position(done),
            None => {
                let pct = (done * 100).checked_div(self.total).unwrap_or(100);
                if pct >= self.last_pct + 25 || (done >= self.total && self.last_pct < 100) {
                    self.last_pct = pct - pct % 25;
                    let unit = if self.bytes { " bytes" } else { "" };
                    eprintln!("  {}: {done}/{}{unit} ({pct}%)", self.label, self.total);
                }
            }
        }
    }

    /// Ends the display.
    pub fn finish(self) {
        if let Some(b) = self.bar {
            b.finish();
        }
    }
}
