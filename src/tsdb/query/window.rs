//! `GROUP BY time(interval[, offset])` windows, in UTC or in the time zone
//! of `tz('…')`, with influxd's rules for the days a zone's offset changes:
//! a window starts at the zone's local multiple of the interval, a day
//! that gains an hour lasts 25 hours, and the windows an empty bucket is
//! filled for step by the interval, corrected once the offset changed.

use chrono::{Offset, TimeZone};
use chrono_tz::Tz;

const NS_PER_SEC: i64 = 1_000_000_000;

/// The offset from UTC of `tz` at `ns` (ns since the epoch), in ns.
pub(super) fn zone_offset(tz: Tz, ns: i64) -> i64 {
    let Some(at) = chrono::DateTime::from_timestamp(
        ns.div_euclid(NS_PER_SEC),
        u32::try_from(ns.rem_euclid(NS_PER_SEC)).unwrap_or(0),
    ) else {
        return 0;
    };
    i64::from(
        tz.offset_from_utc_datetime(&at.naive_utc())
            .fix()
            .local_minus_utc(),
    ) * NS_PER_SEC
}

/// The instant of a wall-clock time of `tz` (`local`: that wall-clock
/// time read as if it were UTC), resolved as Go's `time.Date` resolves
/// one in a gap or an overlap: the offset at the local time taken as UTC,
/// then the offset at the instant that gives if it differs.
pub(super) fn local_to_utc(tz: Tz, local: i64) -> i64 {
    let guess = local.saturating_sub(zone_offset(tz, local));
    local.saturating_sub(zone_offset(tz, guess))
}

/// The windows of one SELECT.
#[derive(Debug, Clone, Copy)]
pub(super) struct Windows {
    /// The interval, ns (> 0).
    iv: i64,
    /// The offset, ns, in `0..iv`.
    off: i64,
    /// The time zone of `tz()`, if any.
    tz: Option<Tz>,
}

impl Windows {
    /// The windows of `GROUP BY time(iv, off)` in `tz`.
    pub(super) fn new(iv: i64, off: i64, tz: Option<Tz>) -> Windows {
        Windows {
            iv: iv.max(1),
            off,
            tz,
        }
    }

    fn zone(&self, t: i64) -> i64 {
        self.tz.map_or(0, |tz| zone_offset(tz, t))
    }

    /// The start of the window holding `t`.
    pub(super) fn start(&self, t: i64) -> i64 {
        self.window(t).0
    }

    /// The window holding `t`: its start and its end (exclusive).
    pub(super) fn window(&self, t: i64) -> (i64, i64) {
        let t = t.saturating_sub(self.off);
        let zone = self.zone(t);
        let dt = t.saturating_add(zone).rem_euclid(self.iv);
        let mut start = t.saturating_sub(dt);
        // The zone at the start may differ from the one at `t` (the
        // window began before the change): midnight is local midnight.
        if self.tz.is_some() {
            let o = zone - self.zone(start);
            if o != 0 && o.abs() < self.iv {
                start = start.saturating_add(o);
            }
        }
        let mut end = t.saturating_add(self.iv - dt);
        if self.tz.is_some() {
            let end_zone = self.zone(end);
            let o = zone - end_zone;
            // Gained time belongs to the window before the change; skipped
            // time only shortens a window the change falls in.
            if o != 0
                && o.abs() < self.iv
                && (o > 0 || self.zone(end.saturating_add(o)) == end_zone)
            {
                end = end.saturating_add(o);
            }
        }
        (start.saturating_add(self.off), end.saturating_add(self.off))
    }

    /// The rows of `lo..=hi` as influxd's fill emits them: it steps from
    /// the window holding `lo` to the one holding `hi` by the interval,
    /// moved by the change once the zone's offset changed (by less than
    /// the interval); a window holding points (`held`: their windows'
    /// starts, sorted) that a step passed over or landed beside takes the
    /// place of the step after it.
    pub(super) fn rows(&self, lo: i64, hi: i64, held: &[i64]) -> Vec<i64> {
        let (mut w, last) = (self.start(lo), self.start(hi));
        let mut offset = self.zone(w);
        let mut held = held.iter().copied().peekable();
        let mut out = Vec::new();
        loop {
            match held.peek() {
                None if w > last => break,
                Some(&b) if b <= w => {
                    out.push(b);
                    held.next();
                }
                _ => out.push(w),
            }
            let Some(next) = w.checked_add(self.iv) else {
                break;
            };
            w = next;
            let now = self.zone(w - 1);
            if now != offset {
                let diff = offset - now;
                if diff.abs() < self.iv {
                    w = w.saturating_add(diff);
                }
                offset = now;
            }
        }
        out
    }

    /// How many windows `lo..=hi` spans, as influxd's buckets limit counts
    /// them (from the two windows' starts, by the interval).
    pub(super) fn count(&self, lo: i64, hi: i64) -> i64 {
        self.start(hi).saturating_sub(self.start(lo)) / self.iv + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3600 * NS_PER_SEC;

    fn ns(s: &str) -> i64 {
        crate::tsdb::timefmt::parse_rfc3339(s).unwrap_or(i64::MIN)
    }

    #[test]
    fn without_a_zone_windows_are_multiples_of_the_interval_plus_the_offset() {
        let w = Windows::new(10, 3, None);
        assert_eq!(w.window(25), (23, 33));
        assert_eq!(w.window(23), (23, 33));
        assert_eq!(w.window(-1), (-7, 3));
        assert_eq!(w.rows(5, 31, &[]), vec![3, 13, 23]);
        assert_eq!(w.count(5, 31), 3);
    }

    #[test]
    fn a_day_in_new_york_starts_at_local_midnight_across_both_changes() {
        let ny: Tz = "America/New_York".parse().unwrap_or(Tz::UTC);
        let w = Windows::new(24 * H, 0, Some(ny));
        // The day the clocks go back lasts 25 hours.
        assert_eq!(
            w.window(ns("2020-11-01T15:00:00Z")),
            (ns("2020-11-01T04:00:00Z"), ns("2020-11-02T05:00:00Z"))
        );
        // The day they go forward, 23.
        assert_eq!(
            w.window(ns("2020-03-08T15:00:00Z")),
            (ns("2020-03-08T05:00:00Z"), ns("2020-03-09T04:00:00Z"))
        );
        assert_eq!(
            w.rows(ns("2020-10-31T12:00:00Z"), ns("2020-11-02T12:00:00Z"), &[]),
            vec![
                ns("2020-10-31T04:00:00Z"),
                ns("2020-11-01T04:00:00Z"),
                ns("2020-11-02T05:00:00Z")
            ]
        );
    }

    #[test]
    fn wall_clock_times_resolve_as_go_resolves_them() {
        let ny: Tz = "America/New_York".parse().unwrap_or(Tz::UTC);
        let local = ns("2020-07-01T12:00:00Z");
        assert_eq!(local_to_utc(ny, local), ns("2020-07-01T16:00:00Z"));
        assert_eq!(zone_offset(ny, ns("2020-01-01T00:00:00Z")), -5 * H);
    }
}
