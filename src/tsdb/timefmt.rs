//! Time formats InfluxDB uses: RFC3339 with nanoseconds (trailing zeros
//! trimmed, as Go's `RFC3339Nano`) and Go's duration strings (`168h0m0s`).

/// (year, month, day) of a day count since 1970-01-01 (H. Hinnant's algorithm).
pub(crate) fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2023-11-14T22:13:20.5Z` for nanoseconds since the epoch.
pub fn rfc3339_nano(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        s / 3600,
        s % 3600 / 60,
        s % 60
    );
    if frac != 0 {
        out.push_str(format!(".{frac:09}").trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// RFC3339 with nanoseconds, as Go writes it, of the wall-clock time at
/// `offset` seconds from UTC (`Z` when 0, else `±hh:mm`).
pub fn rfc3339_nano_at(ns: i64, offset: i64) -> String {
    if offset == 0 {
        return rfc3339_nano(ns);
    }
    let mut out = rfc3339_nano(ns.saturating_add(offset.saturating_mul(1_000_000_000)));
    out.pop();
    let sign = if offset < 0 { '-' } else { '+' };
    let m = offset.unsigned_abs() / 60;
    out.push_str(&format!("{sign}{:02}:{:02}", m / 60, m % 60));
    out
}

/// Parses RFC3339 (`2023-11-14T22:13:20Z`, fractions, `±hh:mm` offsets);
/// instants outside the i64-nanosecond range clamp to its ends.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let digits = s.get(start..i)?;
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        frac = digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32);
    }
    let offset = match s.get(i..)? {
        "Z" | "z" => 0,
        o if o.len() == 6 && matches!(&o[..1], "+" | "-") && &o[3..4] == ":" => {
            let sign = if &o[..1] == "-" { -1 } else { 1 };
            sign * (o[1..3].parse::<i64>().ok()? * 3600 + o[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - offset;
    // Instants outside the i64-nanosecond range (before 1677, after 2262,
    // e.g. Go's zero time 0001-01-01) clamp to its ends: before or after
    // every point that can be stored.
    Some(
        i128::from(secs)
            .saturating_mul(1_000_000_000)
            .saturating_add(i128::from(frac))
            .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
    )
}

/// Go's `time.Duration.String()` for whole seconds and above (`168h0m0s`, `0s`).
pub fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = if ns < 0 { "-" } else { "" };
    let total = ns.unsigned_abs();
    // Under a second Go uses the largest unit below it (`140µs`, `1.5ms`).
    let frac = |unit: u64, name: &str| {
        let (w, f) = (total / unit, total % unit);
        let digits = unit.to_string().len() - 1;
        match f {
            0 => format!("{neg}{w}{name}"),
            f => format!(
                "{neg}{w}.{}{name}",
                format!("{f:0digits$}").trim_end_matches('0')
            ),
        }
    };
    match total {
        t if t < 1_000 => return format!("{neg}{t}ns"),
        t if t < 1_000_000 => return frac(1_000, "µs"),
        t if t < 1_000_000_000 => return frac(1_000_000, "ms"),
        _ => {}
    }
    let (secs, frac) = (total / 1_000_000_000, total % 1_000_000_000);
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let sec = if frac == 0 {
        format!("{s}")
    } else {
        format!("{s}.{}", format!("{frac:09}").trim_end_matches('0'))
    };
    if h > 0 {
        format!("{neg}{h}h{m}m{sec}s")
    } else if m > 0 {
        format!("{neg}{m}m{sec}s")
    } else {
        format!("{neg}{sec}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        assert_eq!(rfc3339_nano(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_nano(1_700_000_000_500_000_000),
            "2023-11-14T22:13:20.5Z"
        );
        assert_eq!(rfc3339_nano(-1), "1969-12-31T23:59:59.999999999Z");
        for ns in [
            0,
            1,
            1_700_000_000_123_456_789,
            -86_400_000_000_000,
            951_782_400_000_000_000,
        ] {
            assert_eq!(parse_rfc3339(&rfc3339_nano(ns)), Some(ns));
        }
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20+01:00"),
            Some(1_700_000_000_000_000_000)
        );
        for bad in [
            "",
            "2023-11-14",
            "2023-13-14T00:00:00Z",
            "2023-11-14T00:00:00",
            "2023-11-14T00:00:00.Z",
            "xxxx-11-14T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(168 * 3_600_000_000_000), "168h0m0s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
    }
}
