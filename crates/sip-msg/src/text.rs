//! Lexical helpers shared by the parsers (RFC 3261 §25.1).

use crate::error::HeaderError;

/// RFC 3261 §25.1: `token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" )`.
pub(crate) fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// True when `s` is a non-empty token.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// Linear white space as it appears inside a header value after unfolding.
pub(crate) fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// Finds the end of a quoted string that starts at `start` (a `"`): the index just past the
/// closing quote. Backslash escapes one character (RFC 3261 §25.1 quoted-pair).
pub(crate) fn quoted_end(s: &[u8], start: usize) -> Result<usize, HeaderError> {
    let mut i = start + 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(HeaderError::UnterminatedQuote)
}

/// Removes the quotes and quoted-pair escapes of a quoted string (input includes the quotes).
pub(crate) fn unquote(s: &str) -> String {
    let inner = &s[1..s.len() - 1];
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Splits `s` at every `sep` that is outside quotes and outside `<...>`.
pub(crate) fn split_top(s: &str, sep: u8) -> Result<Vec<&str>, HeaderError> {
    let b = s.as_bytes();
    let mut parts = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut angle = false;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i = quoted_end(b, i)?;
                continue;
            }
            b'<' => angle = true,
            b'>' => angle = false,
            c if c == sep && !angle => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if angle {
        return Err(HeaderError::UnterminatedAngle);
    }
    parts.push(&s[start..]);
    Ok(parts)
}

/// The part of `s` before the first `sep` outside quotes and `<...>` (all of `s` if none).
pub(crate) fn first_top(s: &str, sep: u8) -> Result<&str, HeaderError> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut angle = false;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i = quoted_end(b, i)?;
                continue;
            }
            b'<' => angle = true,
            b'>' => angle = false,
            c if c == sep && !angle => return Ok(&s[..i]),
            _ => {}
        }
        i += 1;
    }
    if angle {
        return Err(HeaderError::UnterminatedAngle);
    }
    Ok(s)
}

/// An ordered list of `name[=value]` parameters; names compare case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, Option<String>)>);

impl Params {
    /// An empty list.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// The value of `name`: `None` when absent, `Some(None)` when present without a value.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// The value of `name` when present with a value; quotes of a quoted value are removed.
    pub fn value(&self, name: &str) -> Option<String> {
        let v = self.get(name)??;
        Some(if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
            unquote(v)
        } else {
            v.to_owned()
        })
    }

    /// True when `name` is present, with or without a value.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets `name` (replacing an earlier value) or appends it.
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(str::to_owned);
        match self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_owned(), value)),
        }
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Iterates over `(name, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_deref()))
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses `;a=b;c` (the leading `;` already removed, i.e. `a=b;c`). White space around
    /// `;` and `=` is allowed (RFC 3261 §25.1 SEMI, EQUAL).
    pub(crate) fn parse_header_params(s: &str) -> Result<Self, HeaderError> {
        let mut out = Vec::new();
        for part in split_top(s, b';')? {
            let part = part.trim_matches(|c| c == ' ' || c == '\t');
            let (name, value) = match part.split_once('=') {
                Some((n, v)) => (n.trim_end(), Some(v.trim_start())),
                None => (part, None),
            };
            if !is_token(name) {
                return Err(HeaderError::BadParam);
            }
            if let Some(v) = value {
                let ok = if v.starts_with('"') {
                    quoted_end(v.as_bytes(), 0)? == v.len()
                } else {
                    // token / host (IPv6 references carry `[` `:` `]`)
                    !v.is_empty()
                        && v.bytes()
                            .all(|c| is_token_char(c) || matches!(c, b'[' | b']' | b':'))
                };
                if !ok {
                    return Err(HeaderError::BadParam);
                }
            }
            out.push((name.to_owned(), value.map(str::to_owned)));
        }
        Ok(Self(out))
    }
}

impl std::fmt::Display for Params {
    /// Writes `;name=value` for each parameter.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, v) in &self.0 {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

/// Parses a decimal number that must fit in `u64` and be at most `max`.
pub(crate) fn parse_num(s: &str, max: u64) -> Result<u64, HeaderError> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err(HeaderError::BadNumber);
    }
    let n: u64 = s.parse().map_err(|_| HeaderError::BadNumber)?;
    if n > max {
        return Err(HeaderError::BadNumber);
    }
    Ok(n)
}
