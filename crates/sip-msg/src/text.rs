//! Lexical helpers shared by the parsers (RFC 3261 §25.1).

use std::borrow::Cow;

use crate::error::HeaderError;

/// Token characters as a table: one load per byte on the parser's hottest path.
static TOKEN_CHARS: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        // `c` < 256: the cast cannot truncate.
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        c += 1;
    }
    t
};

/// RFC 3261 §25.1: `token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" )`.
#[inline]
pub(crate) fn is_token_char(c: u8) -> bool {
    TOKEN_CHARS[c as usize]
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

/// Checks what [`split_top`] checks (closed quotes and angle brackets) without splitting.
pub(crate) fn check_top(s: &str) -> Result<(), HeaderError> {
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
            _ => {}
        }
        i += 1;
    }
    if angle {
        return Err(HeaderError::UnterminatedAngle);
    }
    Ok(())
}

/// The parts of [`split_top`] without a `Vec`; on text that [`check_top`] rejected it still
/// ends (an open quote runs to the end).
#[derive(Debug, Clone)]
pub(crate) struct TopSplit<'a> {
    s: &'a str,
    pos: usize,
    sep: u8,
    done: bool,
}

impl<'a> TopSplit<'a> {
    pub(crate) fn new(s: &'a str, sep: u8) -> Self {
        Self {
            s,
            pos: 0,
            sep,
            done: false,
        }
    }
}

impl<'a> Iterator for TopSplit<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.done {
            return None;
        }
        let b = self.s.as_bytes();
        let mut i = self.pos;
        // A separator counts only outside `<...>`, so each part starts outside one.
        let mut angle = false;
        while i < b.len() {
            match b[i] {
                b'"' => {
                    i = quoted_end(b, i).unwrap_or(b.len());
                    continue;
                }
                b'<' => angle = true,
                b'>' => angle = false,
                c if c == self.sep && !angle => {
                    // `i` is at an ASCII separator: a character boundary.
                    let part = self.s.get(self.pos..i).unwrap_or_default();
                    self.pos = i + 1;
                    return Some(part);
                }
                _ => {}
            }
            i += 1;
        }
        self.done = true;
        Some(self.s.get(self.pos..).unwrap_or_default())
    }
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

    /// Appends `name` even when it is already present (header parameters keep duplicates).
    fn push(&mut self, name: &str, value: Option<&str>) {
        self.0.push((name.to_owned(), value.map(str::to_owned)));
    }
}

/// How a [`ParamsRef`] text is split and which duplicate wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParamsKind {
    /// Header parameters: quotes respected, white space around `;` and `=`, first wins.
    Header,
    /// URI parameters: split at every `;`, no white space, the last value wins.
    Uri,
}

/// Parameters read in place: the validated text after the first `;`, looked up by scanning
/// (a handful of short parameters: cheaper than building a list). [`ParamsRef::into_owned`]
/// gives the [`Params`] the owned views carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamsRef<'a> {
    text: &'a str,
    kind: ParamsKind,
}

impl Default for ParamsRef<'_> {
    fn default() -> Self {
        Self {
            text: "",
            kind: ParamsKind::Header,
        }
    }
}

impl<'a> ParamsRef<'a> {
    /// Reads header parameters `a=b;c` (the leading `;` already removed). White space around
    /// `;` and `=` is allowed (RFC 3261 §25.1 SEMI, EQUAL).
    pub(crate) fn parse_header(s: &'a str) -> Result<Self, HeaderError> {
        check_top(s)?;
        for part in TopSplit::new(s, b';') {
            let (name, value) = header_param(part);
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
        }
        Ok(Self {
            text: s,
            kind: ParamsKind::Header,
        })
    }

    /// URI parameters `a=b;c` that the caller validated (split at every `;`).
    pub(crate) fn uri(s: &'a str) -> Self {
        Self {
            text: s,
            kind: ParamsKind::Uri,
        }
    }

    /// Iterates over `(name, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> + use<'a> {
        let kind = self.kind;
        let (header, uri) = match (self.text.is_empty(), kind) {
            (true, _) => (None, None),
            (false, ParamsKind::Header) => (Some(TopSplit::new(self.text, b';')), None),
            (false, ParamsKind::Uri) => (None, Some(self.text.split(';'))),
        };
        header
            .into_iter()
            .flatten()
            .map(header_param)
            .chain(uri.into_iter().flatten().map(|p| match p.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (p, None),
            }))
    }

    /// The value of `name`: `None` when absent, `Some(None)` when present without a value.
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        let mut found = None;
        for (n, v) in self.iter() {
            if n.eq_ignore_ascii_case(name) {
                found = Some(v);
                if self.kind == ParamsKind::Header {
                    break;
                }
            }
        }
        found
    }

    /// The value of `name` when present with a value; quotes of a quoted value are removed
    /// (borrowed unless it holds escapes).
    pub fn value(&self, name: &str) -> Option<Cow<'a, str>> {
        let v = self.get(name)??;
        Some(if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
            let inner = &v[1..v.len() - 1];
            if inner.contains('\\') {
                Cow::Owned(unquote(v))
            } else {
                Cow::Borrowed(inner)
            }
        } else {
            Cow::Borrowed(v)
        })
    }

    /// True when `name` is present, with or without a value.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// The owned list (URI parameters: a repeated name keeps its first place and last value).
    pub fn into_owned(self) -> Params {
        let mut out = Params::new();
        for (n, v) in self.iter() {
            match self.kind {
                ParamsKind::Header => out.push(n, v),
                ParamsKind::Uri => out.set(n, v),
            }
        }
        out
    }
}

/// One header parameter `name [= value]`, white space trimmed.
fn header_param(part: &str) -> (&str, Option<&str>) {
    let part = part.trim_matches(|c| c == ' ' || c == '\t');
    match part.split_once('=') {
        Some((n, v)) => (n.trim_end(), Some(v.trim_start())),
        None => (part, None),
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
