//! InfluxQL's tokens and the cursor the parsers read them with.

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Sym(String),
    Regex(String),
}

/// Tokens with their quoted flags, and the (line, char) of each.
pub(super) type Lexed = (Vec<(Tok, bool)>, Vec<(usize, usize)>);

/// Tokens, each with whether it was a double-quoted identifier (for
/// [`canonical`]), and where each starts (line and character, from 1, as
/// influxd's messages give them).
pub(super) fn lex_marked(q: &str) -> Result<Lexed, String> {
    let c: Vec<char> = q.chars().collect();
    let mut out: Vec<(Tok, bool)> = Vec::new();
    let mut starts = Vec::new();
    let (mut line, mut line_start) = (1, 0);
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        let before = out.len();
        let start = (line, i + 1 - line_start);
        if ch == '\n' {
            line += 1;
            line_start = i + 1;
        }
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '\'' || ch == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                match c.get(i) {
                    None => return Err(format!("unterminated {ch}quoted{ch} text")),
                    Some('\\') if c.get(i + 1).is_some() => {
                        s.push(c[i + 1]);
                        i += 2;
                    }
                    Some(x) if *x == ch => {
                        i += 1;
                        break;
                    }
                    Some(x) => {
                        s.push(*x);
                        i += 1;
                    }
                }
            }
            out.push(if ch == '\'' {
                (Tok::Str(s), false)
            } else {
                (Tok::Ident(s), true)
            });
        } else if ch.is_ascii_digit() {
            let start = i;
            while c
                .get(i)
                .is_some_and(|x| x.is_ascii_alphanumeric() || *x == '.')
            {
                i += 1;
            }
            out.push((Tok::Num(c[start..i].iter().collect()), false));
        } else if ch.is_alphabetic() || ch == '_' || ch == '$' {
            // `$name`: a bound parameter, replaced before parsing.
            let start = i;
            i += 1;
            while c.get(i).is_some_and(|x| x.is_alphanumeric() || *x == '_') {
                i += 1;
            }
            out.push((Tok::Ident(c[start..i].iter().collect()), false));
        } else {
            let two: String = c[i..(i + 2).min(c.len())].iter().collect();
            if ["<=", ">=", "!=", "<>", "=~", "!~"].contains(&two.as_str()) {
                out.push((Tok::Sym(two), false));
                i += 2;
            } else if ch == '/'
                && match out.last() {
                    // After a match operator, FROM, or a comma (where
                    // a division cannot stand): a regular expression.
                    // (and after the `.` of `db.rp./re/`).
                    Some((Tok::Sym(s), _)) => ["=~", "!~", ",", "."].contains(&s.as_str()),
                    Some((Tok::Ident(k), false)) => k.eq_ignore_ascii_case("FROM"),
                    _ => false,
                }
            {
                let mut re = String::new();
                i += 1;
                loop {
                    match c.get(i) {
                        None => return Err("unterminated regular expression".into()),
                        Some('\\') if c.get(i + 1) == Some(&'/') => {
                            re.push('/');
                            i += 2;
                        }
                        Some('/') => {
                            i += 1;
                            break;
                        }
                        Some(x) => {
                            re.push(*x);
                            i += 1;
                        }
                    }
                }
                out.push((Tok::Regex(re), false));
            } else if "(),*;=<>.+-/%:".contains(ch) {
                out.push((Tok::Sym(ch.to_string()), false));
                i += 1;
            } else {
                return Err(format!("unexpected character {ch:?}"));
            }
        }
        // A type cast after a name (`host::tag`, `"v"::float`) is read and
        // left out: names resolve as they would without it.
        if matches!(out.last(), Some((Tok::Ident(_), _))) && out.len() > before {
            i = after_cast(&c, i);
        }
        if out.len() > before {
            // influxd's scanner places a string one character before its
            // quote.
            let (line, ch) = start;
            let string = matches!(out.last(), Some((Tok::Str(_), _)));
            starts.push((line, if string { ch.saturating_sub(1) } else { ch }));
        }
    }
    Ok((out, starts))
}

/// Where the text after a name continues: past `::type` if one follows.
fn after_cast(c: &[char], i: usize) -> usize {
    if c.get(i) != Some(&':') || c.get(i + 1) != Some(&':') {
        return i;
    }
    let mut j = i + 2;
    while c.get(j).is_some_and(|x| x.is_ascii_alphabetic()) {
        j += 1;
    }
    let word: String = c[i + 2..j].iter().collect::<String>().to_ascii_lowercase();
    match word.as_str() {
        "float" | "integer" | "unsigned" | "string" | "boolean" | "field" | "tag" => j,
        _ => i,
    }
}

pub(super) struct P {
    pub(super) t: Vec<Tok>,
    pub(super) i: usize,
    /// The zone wall-clock time literals are read in (`tz()`; else UTC).
    pub(super) tz: Option<chrono_tz::Tz>,
}

impl P {
    pub(super) fn peek(&self) -> Option<&Tok> {
        self.t.get(self.i)
    }
    pub(super) fn kw(&mut self, k: &str) -> bool {
        if let Some(Tok::Ident(s)) = self.peek()
            && s.eq_ignore_ascii_case(k)
        {
            self.i += 1;
            return true;
        }
        false
    }
    pub(super) fn expect_kw(&mut self, k: &str) -> Result<(), String> {
        if self.kw(k) {
            Ok(())
        } else {
            Err(format!("expected {k}, found {}", self.found()))
        }
    }
    pub(super) fn sym(&mut self, s: &str) -> bool {
        if self.peek() == Some(&Tok::Sym(s.into())) {
            self.i += 1;
            return true;
        }
        false
    }
    pub(super) fn found(&self) -> String {
        match self.peek() {
            None => "EOF".into(),
            Some(Tok::Ident(s) | Tok::Num(s) | Tok::Sym(s)) => s.clone(),
            // influxd names a string by its text, without quotes.
            Some(Tok::Str(s)) => s.clone(),
            Some(Tok::Regex(s)) => format!("/{s}/"),
        }
    }
    pub(super) fn ident(&mut self) -> Result<String, String> {
        match self.peek().cloned() {
            Some(Tok::Ident(s)) => {
                self.i += 1;
                Ok(s)
            }
            _ => Err(format!("found {}, expected identifier", self.found())),
        }
    }
    pub(super) fn num(&mut self) -> Result<String, String> {
        match self.peek().cloned() {
            Some(Tok::Num(s)) => {
                self.i += 1;
                Ok(s)
            }
            _ => Err(format!("expected number, found {}", self.found())),
        }
    }
    pub(super) fn string(&mut self) -> Result<String, String> {
        match self.peek().cloned() {
            Some(Tok::Str(s)) => {
                self.i += 1;
                Ok(s)
            }
            _ => Err(format!("found {}, expected string", self.found())),
        }
    }
    pub(super) fn duration(&mut self) -> Result<i64, String> {
        if self.kw("INF") {
            return Ok(0);
        }
        parse_duration(&self.num()?)
    }
}

/// Parses an InfluxQL duration literal (`1h`, `30d`, `100ms`, `2w`).
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("invalid duration {s}"))?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().map_err(|_| format!("invalid duration {s}"))?;
    let mult = match unit {
        "ns" => 1,
        "u" | "µ" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        "w" => 604_800_000_000_000,
        _ => return Err(format!("invalid duration {s}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("duration {s} out of range"))
}
