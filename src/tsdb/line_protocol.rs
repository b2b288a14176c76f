//! InfluxDB 1.x line protocol:
//! `measurement[,tag=value…] field=value[,field=value…] [timestamp]`.
//!
//! Escapes: `\,` and `\ ` in measurements; `\,` `\=` `\ ` in tag keys, tag
//! values and field keys; `\"` and `\\` inside string field values. Field
//! values: float (`1`, `-1.5e3`), integer (`1i`), unsigned (`1u`), string
//! (`"…"`), boolean (`t`, `T`, `true`, `True`, `TRUE`, and the `f` forms).
//! Timestamps are integers in the request's precision, normalized to
//! nanoseconds. Parsing follows InfluxDB's partial-write semantics: every
//! good line is kept, every bad one is reported with its line number.

use std::fmt;

/// A field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// 64-bit float (never NaN or infinite).
    Float(f64),
    /// Signed integer (`i` suffix).
    Integer(i64),
    /// Unsigned integer (`u` suffix).
    Unsigned(u64),
    /// String.
    String(String),
    /// Boolean.
    Boolean(bool),
}

impl FieldValue {
    /// InfluxDB's name of the value's type.
    pub fn type_name(&self) -> &'static str {
        match self {
            FieldValue::Float(_) => "float",
            FieldValue::Integer(_) => "integer",
            FieldValue::Unsigned(_) => "unsigned",
            FieldValue::String(_) => "string",
            FieldValue::Boolean(_) => "boolean",
        }
    }
}

/// One parsed point.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Measurement name (unescaped).
    pub measurement: String,
    /// Tags sorted by key (unescaped).
    pub tags: Vec<(String, String)>,
    /// Fields in line order (unescaped keys); a repeated key keeps the last.
    pub fields: Vec<(String, FieldValue)>,
    /// Nanoseconds since the Unix epoch.
    pub timestamp: i64,
}

/// Timestamp precision of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Nanoseconds (`n`, `ns`, the default).
    #[default]
    Nanoseconds,
    /// Microseconds (`u`, `us`, `µ`).
    Microseconds,
    /// Milliseconds (`ms`).
    Milliseconds,
    /// Seconds (`s`).
    Seconds,
    /// Minutes (`m`).
    Minutes,
    /// Hours (`h`).
    Hours,
}

impl Precision {
    /// Parses InfluxDB's `precision` parameter.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "" | "n" | "ns" => Precision::Nanoseconds,
            "u" | "us" | "µ" => Precision::Microseconds,
            "ms" => Precision::Milliseconds,
            "s" => Precision::Seconds,
            "m" => Precision::Minutes,
            "h" => Precision::Hours,
            _ => return None,
        })
    }

    /// Nanoseconds per unit.
    pub fn nanos(self) -> i64 {
        match self {
            Precision::Nanoseconds => 1,
            Precision::Microseconds => 1_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Seconds => 1_000_000_000,
            Precision::Minutes => 60_000_000_000,
            Precision::Hours => 3_600_000_000_000,
        }
    }
}

/// The longest storage key (series key, `#!~#`, field name) InfluxDB
/// accepts: a TSM index entry's key length is a u16.
pub const MAX_KEY_LENGTH: usize = 65_535;
/// The earliest timestamp InfluxDB accepts (ns).
pub const MIN_NANOS: i64 = i64::MIN + 2;
/// The latest timestamp InfluxDB accepts (ns).
pub const MAX_NANOS: i64 = i64::MAX - 1;

/// influxd's time range check.
pub fn check_time(ns: i64) -> Result<(), String> {
    if (MIN_NANOS..=MAX_NANOS).contains(&ns) {
        Ok(())
    } else {
        Err(format!("time outside range {MIN_NANOS} - {MAX_NANOS}"))
    }
}

/// influxd's key length check, with its message: the series key alone
/// first, then the longest storage key (series key, `#!~#`, field name).
pub fn check_key_length<'a>(
    series_len: usize,
    field_keys: impl Iterator<Item = &'a str>,
) -> Result<(), String> {
    let len = if series_len > MAX_KEY_LENGTH {
        series_len
    } else {
        field_keys
            .map(|k| series_len + super::tsm::KEY_FIELD_SEPARATOR.len() + k.len())
            .max()
            .unwrap_or(series_len)
    };
    if len > MAX_KEY_LENGTH {
        return Err(format!("max key length exceeded: {len} > {MAX_KEY_LENGTH}"));
    }
    Ok(())
}

/// A line that did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number in the request body.
    pub line: usize,
    /// The line (at most 256 bytes of it).
    pub text: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unable to parse '{}': {}", self.text, self.reason)
    }
}

/// Appends `p` to `out` as one line of line protocol (nanosecond time),
/// which [`parse`] reads back as `p`.
pub fn encode_line(out: &mut String, p: &Point) {
    use std::fmt::Write;
    escape_into(out, &p.measurement, &[',', ' ']);
    for (k, v) in &p.tags {
        out.push(',');
        escape_into(out, k, &[',', '=', ' ']);
        out.push('=');
        escape_into(out, v, &[',', '=', ' ']);
    }
    for (i, (k, v)) in p.fields.iter().enumerate() {
        out.push(if i == 0 { ' ' } else { ',' });
        escape_into(out, k, &[',', '=', ' ']);
        out.push('=');
        // Writing to a String cannot fail.
        let _ = match v {
            FieldValue::Float(f) => write!(out, "{f}"),
            FieldValue::Integer(n) => write!(out, "{n}i"),
            FieldValue::Unsigned(n) => write!(out, "{n}u"),
            FieldValue::Boolean(b) => write!(out, "{b}"),
            FieldValue::String(s) => {
                out.push('"');
                for c in s.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
                Ok(())
            }
        };
    }
    let _ = writeln!(out, " {}", p.timestamp);
}

/// Escapes a measurement name for a series key or line.
pub fn escape_measurement(s: &str) -> String {
    escape(s, &[',', ' '])
}

/// Escapes a tag key, tag value or field key.
pub fn escape_key(s: &str) -> String {
    escape(s, &[',', '=', ' '])
}

fn escape(s: &str, special: &[char]) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s, special);
    out
}

fn escape_into(out: &mut String, s: &str, special: &[char]) {
    if !s
        .bytes()
        .any(|b| special.iter().any(|c| *c as u32 == u32::from(b)))
    {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        if special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
}

fn escaped_len(s: &str, special: &[char]) -> usize {
    s.len()
        + s.bytes()
            .filter(|b| special.iter().any(|c| *c as u32 == u32::from(*b)))
            .count()
}

/// The length of [`series_key`]'s result, computed without building it.
pub fn series_key_len(measurement: &str, tags: &[(String, String)]) -> usize {
    escaped_len(measurement, &[',', ' '])
        + tags
            .iter()
            .map(|(k, v)| 2 + escaped_len(k, &[',', '=', ' ']) + escaped_len(v, &[',', '=', ' ']))
            .sum::<usize>()
}

impl Point {
    /// The series key: escaped measurement and sorted tags, as InfluxDB
    /// writes it in TSM keys (`cpu,host=a`).
    pub fn series_key(&self) -> String {
        series_key(&self.measurement, &self.tags)
    }
}

/// The series key of a measurement and its (sorted) tags.
pub fn series_key(measurement: &str, tags: &[(String, String)]) -> String {
    let mut k = String::with_capacity(series_key_len(measurement, tags));
    escape_into(&mut k, measurement, &[',', ' ']);
    for (tk, tv) in tags {
        k.push(',');
        escape_into(&mut k, tk, &[',', '=', ' ']);
        k.push('=');
        escape_into(&mut k, tv, &[',', '=', ' ']);
    }
    k
}

/// A body cut into pieces of `lines` lines (the last may be shorter), each
/// with the number of lines before it (add it to a [`ParseError::line`]
/// of the piece).
pub fn chunks(body: &str, lines: usize) -> impl Iterator<Item = (usize, &str)> {
    let n = lines.max(1);
    let mut rest = Some(body);
    let mut before = 0;
    std::iter::from_fn(move || {
        let r = rest?;
        let cut = line_ends(r).nth(n - 1).map(|i| i + 1);
        let at = before;
        before += lines;
        match cut {
            Some(i) if i < r.len() => {
                rest = Some(&r[i..]);
                Some((at, &r[..i]))
            }
            _ => {
                rest = None;
                Some((at, r))
            }
        }
    })
}

/// Where the lines of `body` end: each `\n` that is not inside a string
/// field's quotes (a string may hold newlines, as influxd reads it). A
/// quote counts once the line's fields have begun (after its first
/// unescaped space).
fn line_ends(body: &str) -> impl Iterator<Item = usize> + '_ {
    let b = body.as_bytes();
    let (mut i, mut in_fields, mut quoted) = (0, false, false);
    std::iter::from_fn(move || {
        while i < b.len() {
            let c = b[i];
            i += 1;
            match c {
                b'\\' => i += 1,
                b' ' if !quoted => in_fields = true,
                b'"' if in_fields => quoted = !quoted,
                b'\n' if !quoted => {
                    in_fields = false;
                    return Some(i - 1);
                }
                _ => {}
            }
        }
        None
    })
}

/// The lines of `body` (see [`line_ends`]).
fn lines(body: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let mut ends = line_ends(body);
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match ends.next() {
            Some(e) => {
                let line = &body[start..e];
                start = e + 1;
                Some(line)
            }
            None => {
                done = true;
                Some(&body[start.min(body.len())..])
            }
        }
    })
}

/// Parses a request body. Lines that are empty or start with `#` are
/// skipped; a line without a timestamp gets `default_time` (ns).
pub fn parse(body: &str, precision: Precision, default_time: i64) -> (Vec<Point>, Vec<ParseError>) {
    let mut points = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in lines(body).enumerate() {
        // As influxd: a CR stays part of the line (and spoils it).
        let line = raw.trim_start_matches([' ', '\t']);
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line, precision, default_time) {
            Ok(p) => points.push(p),
            Err(reason) => errors.push(ParseError {
                line: i + 1,
                text: truncate(line, 256),
                reason,
            }),
        }
    }
    (points, errors)
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Reads up to an unescaped byte in `stops`, unescaping `escapable`.
    fn token(&mut self, stops: &[u8], escapable: &[u8]) -> Result<String, String> {
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            if c == b'\\'
                && self
                    .b
                    .get(self.i + 1)
                    .is_some_and(|n| escapable.contains(n))
            {
                out.push(self.b[self.i + 1]);
                self.i += 2;
                continue;
            }
            if stops.contains(&c) {
                break;
            }
            out.push(c);
            self.i += 1;
        }
        String::from_utf8(out).map_err(|_| "invalid UTF-8".to_string())
    }

    fn skip_spaces(&mut self) -> usize {
        let start = self.i;
        while self.peek() == Some(b' ') || self.peek() == Some(b'\t') {
            self.i += 1;
        }
        self.i - start
    }
}

fn parse_line(line: &str, precision: Precision, default_time: i64) -> Result<Point, String> {
    let mut s = Scanner {
        b: line.as_bytes(),
        i: 0,
    };
    let measurement = s.token(b", ", b", ")?;
    if measurement.is_empty() {
        return Err("missing measurement".into());
    }
    let mut tags: Vec<(String, String)> = Vec::new();
    while s.peek() == Some(b',') {
        s.i += 1;
        let k = s.token(b"=, ", b",= ")?;
        if k.is_empty() {
            return Err("missing tag key".into());
        }
        if s.peek() != Some(b'=') {
            return Err(format!("missing tag value for {k:?}"));
        }
        s.i += 1;
        let v = s.token(b", ", b",= ")?;
        if v.is_empty() {
            return Err(format!("missing tag value for {k:?}"));
        }
        tags.push((k, v));
    }
    if s.skip_spaces() == 0 || s.peek().is_none() {
        return Err("missing fields".into());
    }
    tags.sort_by(|a, b| a.0.cmp(&b.0));
    if tags.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err("duplicate tags".into());
    }
    let mut fields: Vec<(String, FieldValue)> = Vec::new();
    loop {
        let k = s.token(b"=, ", b",= ")?;
        if k.is_empty() {
            return Err("missing field key".into());
        }
        if s.peek() != Some(b'=') {
            return Err("invalid field format".into());
        }
        s.i += 1;
        let v = field_value(&mut s).map_err(|e| format!("field {k:?}: {e}"))?;
        fields.retain(|(fk, _)| fk != &k);
        fields.push((k, v));
        match s.peek() {
            Some(b',') => s.i += 1,
            _ => break,
        }
    }
    let spaced = s.skip_spaces();
    let timestamp = if s.peek().is_none() {
        default_time
    } else if spaced == 0 {
        return Err("invalid field format".into());
    } else {
        let t = s.token(b" \t", b"")?;
        s.skip_spaces();
        if s.peek().is_some() {
            return Err("point is invalid".into());
        }
        let v: i64 = t.parse().map_err(|_| "bad timestamp".to_string())?;
        let ns = v.checked_mul(precision.nanos()).unwrap_or(i64::MAX);
        check_time(ns)?;
        ns
    };
    // influxd drops a field named `time` from a point that has others (a
    // point of `time` alone is refused when it is written).
    if fields.len() > 1 {
        fields.retain(|(k, _)| k != "time");
    }
    check_key_length(
        series_key_len(&measurement, &tags),
        fields.iter().map(|(k, _)| k.as_str()),
    )?;
    Ok(Point {
        measurement,
        tags,
        fields,
        timestamp,
    })
}

fn field_value(s: &mut Scanner<'_>) -> Result<FieldValue, String> {
    if s.peek() == Some(b'"') {
        s.i += 1;
        let mut out = Vec::new();
        loop {
            match s.peek() {
                None => return Err("unterminated string".into()),
                Some(b'\\') if matches!(s.b.get(s.i + 1), Some(b'"') | Some(b'\\')) => {
                    out.push(s.b[s.i + 1]);
                    s.i += 2;
                }
                Some(b'"') => {
                    s.i += 1;
                    break;
                }
                Some(c) => {
                    out.push(c);
                    s.i += 1;
                }
            }
        }
        if !matches!(s.peek(), None | Some(b',') | Some(b' ') | Some(b'\t')) {
            return Err("unexpected text after a string".into());
        }
        return String::from_utf8(out)
            .map(FieldValue::String)
            .map_err(|_| "invalid UTF-8".into());
    }
    let start = s.i;
    while !matches!(s.peek(), None | Some(b',') | Some(b' ') | Some(b'\t')) {
        s.i += 1;
    }
    let v = std::str::from_utf8(&s.b[start..s.i]).map_err(|_| "invalid UTF-8".to_string())?;
    match v {
        "" => Err("missing value".into()),
        "t" | "T" | "true" | "True" | "TRUE" => Ok(FieldValue::Boolean(true)),
        "f" | "F" | "false" | "False" | "FALSE" => Ok(FieldValue::Boolean(false)),
        _ if v.ends_with('i') => {
            let n = &v[..v.len() - 1];
            if !is_int(n) {
                return Err(format!("invalid integer {v:?}"));
            }
            n.parse()
                .map(FieldValue::Integer)
                .map_err(|_| format!("integer {v} out of range"))
        }
        _ if v.ends_with('u') => {
            let n = &v[..v.len() - 1];
            if !is_int(n) || n.starts_with('-') {
                return Err(format!("invalid unsigned integer {v:?}"));
            }
            n.parse()
                .map(FieldValue::Unsigned)
                .map_err(|_| format!("unsigned {v} out of range"))
        }
        _ => {
            let numeric = v
                .bytes()
                .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
                && v.bytes().any(|c| c.is_ascii_digit());
            let f: f64 = if numeric {
                v.parse().map_err(|_| format!("invalid number {v:?}"))?
            } else {
                return Err(format!("invalid field value {v:?}"));
            };
            if !f.is_finite() {
                return Err(format!("number {v} out of range"));
            }
            Ok(FieldValue::Float(f))
        }
    }
}

fn is_int(s: &str) -> bool {
    let d = s.strip_prefix('-').unwrap_or(s);
    !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod chunk_tests {
    use super::*;

    #[test]
    fn chunks_cut_at_line_ends_and_number_their_lines() {
        let c: Vec<(usize, &str)> = chunks("a\nb\nc\nd\ne", 2).collect();
        assert_eq!(c, [(0, "a\nb\n"), (2, "c\nd\n"), (4, "e")]);
        let c: Vec<(usize, &str)> = chunks("a\nb\n", 2).collect();
        assert_eq!(c, [(0, "a\nb\n")]);
        assert_eq!(chunks("", 5).collect::<Vec<_>>(), [(0, "")]);
        let (_, errs) = parse(
            chunks("m v=1\nbad\nm v=2", 2).next().unwrap().1,
            Precision::Nanoseconds,
            0,
        );
        assert_eq!(errs[0].line, 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FieldValue::*;

    fn one(line: &str) -> Point {
        let (p, e) = parse(line, Precision::Nanoseconds, 42);
        assert!(e.is_empty(), "{line}: {e:?}");
        assert_eq!(p.len(), 1);
        p.into_iter().next().unwrap()
    }

    #[test]
    fn encoded_lines_parse_back_to_the_same_points() {
        for line in [
            "m v=1.5 1",
            "m\\ x\\,y,t\\=k=a\\ b\\,c,u=z f\\ g=-0,i=-3i,n=7u,s=\"q\\\"x\\\\\",b=true -5",
            "m v=1e-300,w=123456789012345680000 0",
        ] {
            let p = one(line);
            let mut out = std::string::String::new();
            encode_line(&mut out, &p);
            assert!(out.ends_with('\n'), "{out}");
            assert_eq!(one(out.trim_end()), p, "{line} → {out}");
        }
    }

    fn bad(line: &str) -> std::string::String {
        let (p, e) = parse(line, Precision::Nanoseconds, 42);
        assert!(p.is_empty(), "{line} parsed: {p:?}");
        e[0].reason.clone()
    }

    #[test]
    fn a_corpus_of_valid_lines() {
        let p = one("cpu,host=a,region=eu value=1.5,n=3i,u=7u,s=\"hi\",b=t 1700000000000000000");
        assert_eq!(p.measurement, "cpu");
        assert_eq!(
            p.tags,
            vec![("host".into(), "a".into()), ("region".into(), "eu".into())]
        );
        assert_eq!(
            p.fields,
            vec![
                ("value".into(), Float(1.5)),
                ("n".into(), Integer(3)),
                ("u".into(), Unsigned(7)),
                ("s".into(), String("hi".into())),
                ("b".into(), Boolean(true)),
            ]
        );
        assert_eq!(p.timestamp, 1_700_000_000_000_000_000);
        // Tags are sorted; no timestamp takes the default.
        let p = one("m,z=1,a=2 f=1");
        assert_eq!(p.tags[0].0, "a");
        assert_eq!(p.timestamp, 42);
        assert_eq!(p.series_key(), "m,a=2,z=1");
        // Escapes.
        let p = one(r#"my\ meas\,x,tag\ key=tag\=val\,ue fi\=eld="a \"quoted\" \\ str" -5"#);
        assert_eq!(p.measurement, "my meas,x");
        assert_eq!(p.tags, vec![("tag key".into(), "tag=val,ue".into())]);
        assert_eq!(
            p.fields,
            vec![("fi=eld".into(), String(r#"a "quoted" \ str"#.into()))]
        );
        assert_eq!(p.timestamp, -5);
        assert_eq!(p.series_key(), r"my\ meas\,x,tag\ key=tag\=val\,ue");
        // Unicode, and a string with commas, spaces and equals signs.
        let p = one("温度,城市=北京 值=23.5,note=\"a, b = c\" 1");
        assert_eq!(p.measurement, "温度");
        assert_eq!(p.fields[1], ("note".into(), String("a, b = c".into())));
        // Numbers.
        assert_eq!(one("m f=-1.5e3").fields[0].1, Float(-1500.0));
        assert_eq!(one("m f=1").fields[0].1, Float(1.0));
        assert_eq!(
            one("m f=-9223372036854775808i").fields[0].1,
            Integer(i64::MIN)
        );
        assert_eq!(
            one("m f=18446744073709551615u").fields[0].1,
            Unsigned(u64::MAX)
        );
        for (v, b) in [
            ("t", true),
            ("TRUE", true),
            ("True", true),
            ("f", false),
            ("False", false),
            ("FALSE", false),
        ] {
            assert_eq!(one(&format!("m f={v}")).fields[0].1, Boolean(b));
        }
        // Empty string value, repeated field keeps the last.
        assert_eq!(
            one("m f=\"\"").fields[0].1,
            String(std::string::String::new())
        );
        assert_eq!(one("m f=1,f=2").fields, vec![("f".into(), Float(2.0))]);
        // Trailing spaces; a string holding a newline; `time` beside
        // other fields is dropped.
        assert_eq!(one("m f=1 10  ").timestamp, 10);
        assert_eq!(one("m s=\"a\nb\" 7").fields[0].1, String("a\nb".into()));
        assert_eq!(
            one("m f=1,time=2 3").fields,
            vec![("f".into(), Float(2.0 - 1.0))]
        );
    }

    #[test]
    fn precision_scales_timestamps() {
        for (p, want) in [
            ("n", 5),
            ("u", 5_000),
            ("ms", 5_000_000),
            ("s", 5_000_000_000),
            ("m", 300_000_000_000),
            ("h", 18_000_000_000_000),
        ] {
            let (pts, _) = parse("m f=1 5", Precision::parse(p).unwrap(), 0);
            assert_eq!(pts[0].timestamp, want, "{p}");
        }
        assert!(Precision::parse("x").is_none());
        let (_, e) = parse("m f=1 9223372036854775807", Precision::Seconds, 0);
        assert!(e[0].reason.contains("time outside range"));
        // influxd's range ends one short of i64's.
        let (_, e) = parse("m f=1 9223372036854775807", Precision::Nanoseconds, 0);
        assert_eq!(
            e[0].reason,
            "time outside range -9223372036854775806 - 9223372036854775806"
        );
        let (p, _) = parse("m f=1 9223372036854775806", Precision::Nanoseconds, 0);
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn keys_past_influxdbs_limit_are_refused_with_its_message() {
        // The storage key: series key + `#!~#` + field name (influxd: 65539 > 65535).
        let line = format!("cpu,host={} value=1 5", "a".repeat(65_521));
        let (p, e) = parse(&line, Precision::Nanoseconds, 0);
        assert!(p.is_empty());
        assert_eq!(e[0].reason, "max key length exceeded: 65539 > 65535");
        // influxd reports the series key alone when it is over already.
        let line = format!("cpu,host={} v=1", "a".repeat(70_000));
        let (_, e) = parse(&line, Precision::Nanoseconds, 0);
        assert_eq!(e[0].reason, "max key length exceeded: 70009 > 65535");
        let line = format!("cpu,host={} v=1 5", "a".repeat(65_521 - 3));
        let (p, e) = parse(&line, Precision::Nanoseconds, 0);
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn a_corpus_of_invalid_lines_names_the_problem() {
        for (line, want) in [
            (",t=1 f=1", "missing measurement"),
            ("m", "missing fields"),
            ("m ", "missing fields"),
            ("m,t f=1", "missing tag value"),
            ("m,t= f=1", "missing tag value"),
            ("m,=v f=1", "missing tag key"),
            ("m,a=1,a=2 f=1", "duplicate tags"),
            ("m f", "invalid field format"),
            ("m f=1 10\r", "bad timestamp"),
            ("m =1", "missing field key"),
            ("m f=", "missing value"),
            ("m f=abc", "invalid field value"),
            ("m f=1.2.3", "invalid number"),
            ("m f=NaN", "invalid field value"),
            ("m f=1e999", "out of range"),
            ("m f=1.5i", "invalid integer"),
            ("m f=9223372036854775808i", "out of range"),
            ("m f=-1u", "invalid unsigned"),
            ("m f=\"open", "unterminated string"),
            ("m f=\"s\"x", "unexpected text after a string"),
            ("m f=1 abc", "bad timestamp"),
            ("m f=1 1 2", "point is invalid"),
        ] {
            let r = bad(line);
            assert!(r.contains(want), "{line:?}: got {r:?}, want {want:?}");
        }
    }

    #[test]
    fn partial_writes_keep_good_lines_and_number_bad_ones() {
        let body = "# comment\ncpu f=1 1\n\nbad line\ncpu f=2 2\ncpu f=\n";
        let (p, e) = parse(body, Precision::Nanoseconds, 0);
        assert_eq!(p.len(), 2);
        assert_eq!(e.iter().map(|e| e.line).collect::<Vec<_>>(), vec![4, 6]);
        assert_eq!(
            e[0].to_string(),
            "unable to parse 'bad line': invalid field format"
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            let _ = parse(&s, Precision::Nanoseconds, 0);
        }

        #[test]
        fn never_panics_on_line_protocol_shaped_input(s in "[a-z\\\\, =\"0-9.iutfTF-]{0,80}") {
            let _ = parse(&s, Precision::Milliseconds, 0);
        }

        #[test]
        fn escaped_names_round_trip(m in "[a-z ,=\\\\]{1,12}", k in "[a-z ,=]{1,8}", v in "[a-z ,=]{1,8}") {
            let m = m.trim_end_matches('\\').to_string();
            proptest::prop_assume!(!m.is_empty() && !m.starts_with('#') && !m.starts_with(' '));
            let line = format!("{},{}={} f=1i 7", escape_measurement(&m), escape_key(&k), escape_key(&v));
            let (p, e) = parse(&line, Precision::Nanoseconds, 0);
            proptest::prop_assert!(e.is_empty(), "{}: {:?}", line, e);
            proptest::prop_assert_eq!(&p[0].measurement, &m);
            proptest::prop_assert_eq!(&p[0].tags[0], &(k, v));
        }
    }
}
