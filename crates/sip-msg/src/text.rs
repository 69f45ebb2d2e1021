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

/// Byte searches for ASCII delimiters in short header text: a plain loop, where `str::find`
/// and `split_once` with a `char` set up a `memchr` search that costs more than it saves on
/// values of a few dozen bytes.
pub(crate) trait ByteStr {
    /// The index of the first `c`.
    fn find_b(&self, c: u8) -> Option<usize>;
    /// The index of the last `c`.
    fn rfind_b(&self, c: u8) -> Option<usize>;
    /// The text before and after the first `c`.
    fn split_once_b(&self, c: u8) -> Option<(&str, &str)>;
    /// The text before and after the last `c`.
    fn rsplit_once_b(&self, c: u8) -> Option<(&str, &str)>;
    /// The parts between each `c` (like `str::split`).
    fn split_b(&self, c: u8) -> SplitB<'_>;
}

impl ByteStr for str {
    #[inline]
    fn find_b(&self, c: u8) -> Option<usize> {
        find_byte(self.as_bytes(), c)
    }

    #[inline]
    fn rfind_b(&self, c: u8) -> Option<usize> {
        self.as_bytes().iter().rposition(|&b| b == c)
    }

    #[inline]
    fn split_once_b(&self, c: u8) -> Option<(&str, &str)> {
        // `c` is an ASCII delimiter: both cuts are character boundaries.
        let i = self.find_b(c)?;
        Some((self.get(..i)?, self.get(i + 1..)?))
    }

    #[inline]
    fn rsplit_once_b(&self, c: u8) -> Option<(&str, &str)> {
        let i = self.rfind_b(c)?;
        Some((self.get(..i)?, self.get(i + 1..)?))
    }

    #[inline]
    fn split_b(&self, c: u8) -> SplitB<'_> {
        SplitB {
            rest: Some(self),
            c,
        }
    }
}

/// The index of the first `c` in `b`: eight bytes at a time (a zero byte of `x ^ c` is a
/// `c`; the lowest flagged byte is always a real one, as borrows only run upwards), the
/// last few one by one.
#[inline]
fn find_byte(b: &[u8], c: u8) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let pattern = u64::from_ne_bytes([c; 8]);
    let mut words = b.chunks_exact(8);
    let mut at = 0;
    for chunk in words.by_ref() {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let x = u64::from_le_bytes(w) ^ pattern;
        let found = x.wrapping_sub(ONES) & !x & HIGHS;
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&x| x == c)
        .map(|p| at + p)
}

/// The iterator of [`ByteStr::split_b`].
#[derive(Debug, Clone)]
pub(crate) struct SplitB<'a> {
    rest: Option<&'a str>,
    c: u8,
}

impl<'a> Iterator for SplitB<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        match rest.split_once_b(self.c) {
            Some((part, after)) => {
                self.rest = Some(after);
                Some(part)
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

/// `s` without leading and trailing SP and HT (what `trim_matches([' ', '\t'])` gives, on bytes).
#[inline]
pub(crate) fn trim_ws(s: &str) -> &str {
    let b = s.as_bytes();
    let mut start = 0;
    while start < b.len() && matches!(b[start], b' ' | b'\t') {
        start += 1;
    }
    let mut end = b.len();
    while end > start && matches!(b[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    // Both cuts sit next to ASCII white space or at the ends: character boundaries.
    s.get(start..end).unwrap_or_default()
}

/// A byte that is certainly not part of leading or trailing white space (`char::is_whitespace`):
/// printable ASCII.
#[inline]
fn solid(c: u8) -> bool {
    c > b' ' && c < 0x7f
}

/// `s.trim()` (Unicode white space), answering without a character walk when both ends are
/// printable ASCII (nearly every header value and parameter).
#[inline]
pub fn trim_fast(s: &str) -> &str {
    match s.as_bytes() {
        [] => s,
        [first, .., last] | [first @ last] if solid(*first) && solid(*last) => s,
        _ => s.trim(),
    }
}

/// `s.trim_start()`, fast when `s` starts with printable ASCII.
#[inline]
pub(crate) fn trim_start_fast(s: &str) -> &str {
    match s.as_bytes().first() {
        None => s,
        Some(&c) if solid(c) => s,
        _ => s.trim_start(),
    }
}

/// `s.trim_end()`, fast when `s` ends with printable ASCII.
#[inline]
pub(crate) fn trim_end_fast(s: &str) -> &str {
    match s.as_bytes().last() {
        None => s,
        Some(&c) if solid(c) => s,
        _ => s.trim_end(),
    }
}

/// `a.eq_ignore_ascii_case(b)` with one comparison per equal byte (the library version
/// lower-cases both sides of every byte).
#[inline]
pub(crate) fn eq_ic(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(&x, &y)| x == y || ((x ^ y) == 0x20 && (x | 0x20).is_ascii_lowercase()))
}

/// [`eq_ic`] for text.
#[inline]
pub(crate) fn eq_ic_str(a: &str, b: &str) -> bool {
    eq_ic(a.as_bytes(), b.as_bytes())
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

/// The bytes the top-level splitters act on: quotes, angle brackets and both separators
/// (the reference the word-at-a-time search is tested against).
#[cfg(test)]
static TOP_SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b'"' as usize] = true;
    t[b'<' as usize] = true;
    t[b'>' as usize] = true;
    t[b',' as usize] = true;
    t[b';' as usize] = true;
    t
};

/// The index of the next byte at or after `i` that a top-level splitter acts on (or the end).
#[inline]
fn skip_plain(b: &[u8], i: usize) -> usize {
    skip_to_any(b, i, [b'"', b'<', b'>', b',', b';'])
}

/// The index of the next byte at or after `i` that [`first_top`] acts on when it looks for
/// a comma (or the end): a `;` changes nothing there, so it does not stop the search.
#[inline]
fn skip_to_comma_level(b: &[u8], i: usize) -> usize {
    skip_to_any(b, i, [b'"', b'<', b'>', b','])
}

/// The index of the first byte of `specials` at or after `i` (or the end).
#[inline(always)]
fn skip_to_any<const N: usize>(b: &[u8], mut i: usize, specials: [u8; N]) -> usize {
    // Eight bytes at a time: a zero byte of `x ^ c` is a byte equal to `c`. The lowest
    // flagged byte of each test is always a real match (borrows only propagate upwards), so
    // the lowest flagged byte of their union is the first special byte.
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let found = specials
            .iter()
            .fold(0, |found, &c| found | zero(x ^ u64::from_ne_bytes([c; 8])));
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && !specials.contains(&b[i]) {
        i += 1;
    }
    i
}

/// Checks what [`split_top`] checks (closed quotes and angle brackets) without splitting.
pub(crate) fn check_top(s: &str) -> Result<(), HeaderError> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut angle = false;
    loop {
        i = skip_plain(b, i);
        if i >= b.len() {
            break;
        }
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
        loop {
            i = skip_plain(b, i);
            if i >= b.len() {
                break;
            }
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
    // Nearly every Via: no comma, quote or `<` (one vector search over the value). The loop
    // would then stop only at a `>` (which leaves no `<...>` open) and end with the whole
    // text.
    if sep == b',' && crate::message::find3_in_line(s.as_bytes(), b',', b'"', b'<').is_none() {
        return Ok(s);
    }
    first_top_by_loop(s, sep)
}

/// [`first_top`] by walking the special bytes.
fn first_top_by_loop(s: &str, sep: u8) -> Result<&str, HeaderError> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut angle = false;
    loop {
        // For a comma (every caller) only `"` `<` `>` `,` matter: `;` (three or four in a
        // Via) need not stop the search.
        i = if sep == b',' {
            skip_to_comma_level(b, i)
        } else {
            skip_plain(b, i)
        };
        if i >= b.len() {
            break;
        }
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
///
/// Held as the printed text (`;name=value` for each, in order): one allocation for any
/// number of parameters (a list of owned strings took one per name and per value, and one
/// for the list), and printing it is one copy. When a name holds `;` or `=`, or a value
/// holds `;` (a quoted value may), splitting the text would not find the parameters again:
/// their places are then kept beside it.
#[derive(Clone, Default)]
pub struct Params {
    /// `;name[=value]` for each parameter, in order.
    text: String,
    /// Empty while `text` splits back into its parameters (at each `;`, then at the first
    /// `=`); otherwise where each parameter lies in `text`.
    items: Vec<ParamAt>,
}

/// Where one parameter of a [`Params`] lies in its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ParamAt {
    /// The `;` before it.
    start: usize,
    /// The end of its name.
    end_of_name: usize,
    /// Its end: the end of the name when it has no value; past the `=` when it has one
    /// (even an empty one).
    end: usize,
}

impl PartialEq for Params {
    fn eq(&self, other: &Self) -> bool {
        // The same parameters in the same order, however each is held.
        self.iter().eq(other.iter())
    }
}

impl Eq for Params {}

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // As the list of pairs it is: `Params([("branch", Some("z9hG4bK1")), ("rport", None)])`.
        f.debug_tuple("Params")
            .field(&self.iter().collect::<Vec<_>>())
            .finish()
    }
}

/// One parameter of a text that splits back: `name[=value]`.
fn split_param(p: &str) -> (&str, Option<&str>) {
    match p.split_once_b(b'=') {
        Some((n, v)) => (n, Some(v)),
        None => (p, None),
    }
}

impl Params {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty list with room for `text` bytes of printed parameters.
    fn with_capacity(text: usize) -> Self {
        Self {
            text: String::with_capacity(text),
            items: Vec::new(),
        }
    }

    /// True while the text splits back into its parameters.
    fn splits(&self) -> bool {
        self.items.is_empty()
    }

    /// The name and value of the parameter at `at`.
    fn pair(&self, at: &ParamAt) -> (&str, Option<&str>) {
        // Positions were taken from this text as it was written (ASCII `;` and `=` at the
        // cuts, so on character boundaries); the empty fallbacks keep this total.
        let name = self
            .text
            .get(at.start + 1..at.end_of_name)
            .unwrap_or_default();
        let value = (at.end > at.end_of_name).then(|| {
            self.text
                .get(at.end_of_name + 1..at.end)
                .unwrap_or_default()
        });
        (name, value)
    }

    /// The value of `name`: `None` when absent, `Some(None)` when present without a value.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
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

    /// Sets `name` (replacing an earlier value, the name kept as first written) or appends it.
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        let Some(i) = self.iter().position(|(n, _)| n.eq_ignore_ascii_case(name)) else {
            self.push(name, value);
            return;
        };
        self.place_items();
        let Some(&at) = self.items.get(i) else { return };
        let mut tail = String::new();
        if let Some(v) = value {
            tail.push('=');
            tail.push_str(v);
        }
        let new_end = at.end_of_name + tail.len();
        self.text.replace_range(at.end_of_name..at.end, &tail);
        // The parameters after it move by the change in length (they start at or after
        // its old end, so nothing goes below zero).
        for later in self.items.iter_mut().skip(i + 1) {
            for p in [&mut later.start, &mut later.end_of_name, &mut later.end] {
                *p = *p - at.end + new_end;
            }
        }
        if let Some(slot) = self.items.get_mut(i) {
            slot.end = new_end;
        }
    }

    /// Removes `name` (every parameter of that name).
    pub fn remove(&mut self, name: &str) {
        if !self.contains(name) {
            return;
        }
        let mut kept = Params::with_capacity(self.text.len());
        for (n, v) in self.iter() {
            if !n.eq_ignore_ascii_case(name) {
                kept.push(n, v);
            }
        }
        *self = kept;
    }

    /// Iterates over `(name, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        // One of the two is empty: the split text, or the kept places.
        let split = (self.splits() && !self.text.is_empty())
            .then(|| self.text.get(1..).unwrap_or_default().split_b(b';'));
        split
            .into_iter()
            .flatten()
            .map(split_param)
            .chain(self.items.iter().map(|at| self.pair(at)))
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        if self.splits() {
            self.iter().count()
        } else {
            self.items.len()
        }
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Keeps the place of every parameter beside the text (before an edit, or when a new
    /// parameter would not split back).
    fn place_items(&mut self) {
        if !self.splits() || self.text.is_empty() {
            return;
        }
        let mut items = Vec::with_capacity(4);
        let mut start = 0;
        for part in self.text.get(1..).unwrap_or_default().split_b(b';') {
            let (n, v) = split_param(part);
            let end_of_name = start + 1 + n.len();
            let end = end_of_name + v.map_or(0, |v| 1 + v.len());
            items.push(ParamAt {
                start,
                end_of_name,
                end,
            });
            start = end;
        }
        self.items = items;
    }

    /// Appends `name` even when it is already present (header parameters keep duplicates).
    fn push(&mut self, name: &str, value: Option<&str>) {
        let splits_back = !name.bytes().any(|c| c == b';' || c == b'=')
            && !value.is_some_and(|v| v.bytes().any(|c| c == b';'));
        if !splits_back {
            self.place_items();
        }
        let start = self.text.len();
        self.text.push(';');
        self.text.push_str(name);
        let end_of_name = self.text.len();
        if let Some(v) = value {
            self.text.push('=');
            self.text.push_str(v);
        }
        if !splits_back || !self.splits() {
            self.items.push(ParamAt {
                start,
                end_of_name,
                end: self.text.len(),
            });
        }
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
    /// No quoted value: valid header parameters then hold no `"`, `<` or `>` at all, so a
    /// plain split at `;` finds the same parts as the quote-aware one.
    plain: bool,
    /// For simple parameters (`name[=value]` joined by `;`, no white space or quotes), where
    /// each starts: lookups then compare names without scanning. 0 when not indexed.
    count: u8,
    starts: [u16; MAX_INDEXED],
}

/// Parameters indexed by [`ParamsRef`] (Via, From/To and Contact carry fewer).
const MAX_INDEXED: usize = 6;

impl Default for ParamsRef<'_> {
    fn default() -> Self {
        Self {
            text: "",
            kind: ParamsKind::Header,
            plain: true,
            count: 0,
            starts: [0; MAX_INDEXED],
        }
    }
}

impl<'a> ParamsRef<'a> {
    /// The text the parameters were read from.
    pub(crate) fn text(&self) -> &'a str {
        self.text
    }

    /// Reads header parameters `a=b;c` (the leading `;` already removed). White space around
    /// `;` and `=` is allowed (RFC 3261 §25.1 SEMI, EQUAL).
    pub(crate) fn parse_header(s: &'a str) -> Result<Self, HeaderError> {
        let mut starts = [0u16; MAX_INDEXED];
        if let Some(count) = simple_header_params(s.as_bytes(), &mut starts) {
            return Ok(Self {
                text: s,
                kind: ParamsKind::Header,
                plain: true,
                count,
                starts,
            });
        }
        // Without quotes or `<` the quote-aware split is a plain one and cannot fail.
        let simple = !s.bytes().any(|c| c == b'"' || c == b'<');
        if !simple {
            check_top(s)?;
        }
        let mut plain = true;
        let (mut top, mut flat) = if simple {
            (None, Some(s.split_b(b';')))
        } else {
            (Some(TopSplit::new(s, b';')), None)
        };
        let parts = std::iter::from_fn(|| match (&mut top, &mut flat) {
            (Some(t), _) => t.next(),
            (None, Some(f)) => f.next(),
            (None, None) => None,
        });
        for part in parts {
            let (name, value) = header_param(part);
            if !is_token(name) {
                return Err(HeaderError::BadParam);
            }
            if let Some(v) = value {
                let ok = if v.starts_with('"') {
                    plain = false;
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
            plain,
            count: 0,
            starts: [0; MAX_INDEXED],
        })
    }

    /// URI parameters `a=b;c` that the caller validated (split at every `;`).
    pub(crate) fn uri(s: &'a str) -> Self {
        Self {
            text: s,
            kind: ParamsKind::Uri,
            plain: true,
            count: 0,
            starts: [0; MAX_INDEXED],
        }
    }

    /// Iterates over `(name, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> + use<'a> {
        let kind = self.kind;
        let (header, uri) = match (self.text.is_empty(), kind) {
            (true, _) => (None, None),
            (false, ParamsKind::Header) => (Some(TopSplit::new(self.text, b';')), None),
            (false, ParamsKind::Uri) => (None, Some(self.text.split_b(b';'))),
        };
        header
            .into_iter()
            .flatten()
            .map(header_param)
            .chain(uri.into_iter().flatten().map(uri_param))
    }

    /// The value of `name`: `None` when absent, `Some(None)` when present without a value.
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        if self.text.is_empty() {
            return None;
        }
        if self.count > 0 {
            return self.get_indexed(name);
        }
        match self.kind {
            ParamsKind::Header if self.plain => self
                .text
                .split_b(b';')
                .find_map(|part| match_param(part, name)),
            ParamsKind::Header => {
                TopSplit::new(self.text, b';').find_map(|part| match_param(part, name))
            }
            // `set` semantics of the owned list: the last value wins.
            ParamsKind::Uri => self
                .text
                .split_b(b';')
                .map(uri_param)
                .filter(|(n, _)| eq_ic_str(n, name))
                .last()
                .map(|(_, v)| v),
        }
    }

    /// [`ParamsRef::get`] through the index of simple parameters: `name` or `name=value`.
    fn get_indexed(&self, name: &str) -> Option<Option<&'a str>> {
        let count = usize::from(self.count);
        let b = self.text.as_bytes();
        for k in 0..count {
            let start = usize::from(self.starts[k]);
            let end = match self.starts.get(k + 1) {
                Some(&next) if k + 1 < count => usize::from(next) - 1,
                _ => b.len(),
            };
            let part = b.get(start..end)?;
            if part.len() >= name.len() && eq_ic(&part[..name.len()], name.as_bytes()) {
                match part.get(name.len()) {
                    None => return Some(None),
                    // `=` is ASCII: the value starts on a character boundary.
                    Some(b'=') => return Some(self.text.get(start + name.len() + 1..end)),
                    Some(_) => {}
                }
            }
        }
        None
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
        if self.text.is_empty() {
            return Params::new();
        }
        // The printed list is at most the text and its leading `;` (white space dropped);
        // room for four parameters covers nearly every header and URI.
        let mut out = Params::with_capacity(self.text.len() + 1);
        for (n, v) in self.iter() {
            match self.kind {
                ParamsKind::Header => out.push(n, v),
                ParamsKind::Uri => out.set(n, v),
            }
        }
        out
    }
}

/// Token characters (class 1) and the other characters of an unquoted parameter value
/// (class 2: `[` `]` `:` of IPv6 references).
static PARAM_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        if TOKEN_CHARS[c] {
            t[c] = 1;
        }
        c += 1;
    }
    t[b'[' as usize] = 2;
    t[b']' as usize] = 2;
    t[b':' as usize] = 2;
    t
};

/// Bit 7 of each byte of `w` that is not an ASCII letter or digit: below 0x30, 0x3A to 0x40,
/// 0x5B to 0x60, 0x7B and above. Exact per byte: the sums are of 7-bit values and never carry
/// into the next byte.
#[inline(always)]
fn not_alphanumeric(w: u64) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    const LOW: u64 = u64::from_ne_bytes([0x7f; 8]);
    let y = w & LOW;
    // Bit 7 where the low seven bits are at least `n` (n <= 0x80).
    let at_least = |n: u64| y + (0x80 - n) * ONES;
    (!at_least(0x30)
        | (at_least(0x3a) & !at_least(0x41))
        | (at_least(0x5b) & !at_least(0x61))
        | at_least(0x7b)
        | w)
        & HIGH
}

/// The index of the first byte at or after `i` whose [`PARAM_CLASS`] `accept` refuses (or
/// the end). Letters and digits (class 1) must be accepted: eight bytes at a time, only the
/// other bytes are looked up.
#[inline(always)]
fn skip_class(s: &[u8], mut i: usize, accept: impl Fn(u8) -> bool) -> usize {
    while let Some(chunk) = s.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let mut flags = not_alphanumeric(u64::from_le_bytes(w));
        while flags != 0 {
            // Little-endian: the lowest flag is the first such byte.
            let k = (flags.trailing_zeros() / 8) as usize;
            if !accept(PARAM_CLASS[usize::from(w[k])]) {
                return i + k;
            }
            flags &= flags - 1;
        }
        i += 8;
    }
    while i < s.len() && accept(PARAM_CLASS[usize::from(s[i])]) {
        i += 1;
    }
    i
}

/// For header parameters `name[=value]` joined by `;` with no white space, quotes or other
/// unusual bytes, which the general reader would accept: their number, and where each starts
/// in `starts`; one pass instead of the general split, trim and checks. `None` sends the text
/// to the general reader (for anything else, and for the precise error).
fn simple_header_params(s: &[u8], starts: &mut [u16; MAX_INDEXED]) -> Option<u8> {
    let mut i = 0;
    let mut count = 0;
    loop {
        let start = i;
        i = skip_class(s, i, |class| class == 1);
        if i == start {
            return None;
        }
        // Index up to MAX_INDEXED parameters in text of up to 64 KiB; otherwise give up (the
        // general reader takes it).
        *starts.get_mut(count)? = u16::try_from(start).ok()?;
        count += 1;
        if i < s.len() && s[i] == b'=' {
            i += 1;
            let value = i;
            i = skip_class(s, i, |class| class != 0);
            if i == value {
                return None;
            }
        }
        if i == s.len() {
            // At most MAX_INDEXED (6): fits in u8.
            return u8::try_from(count).ok();
        }
        if s[i] != b';' {
            return None;
        }
        i += 1;
    }
}

/// The first header parameter called `name` in `text` (`a=1;b;c=2`, after the first `;`),
/// as [`ParamsRef::get`] finds it, for text with no quoted value (no `"`): a plain split at
/// `;`, without checking or indexing the other parameters.
pub(crate) fn plain_header_param<'a>(text: &'a str, name: &str) -> Option<Option<&'a str>> {
    text.split_b(b';').find_map(|part| match_param(part, name))
}

/// The value of `part` when its name is `name`; most parts are rejected on their first bytes.
#[inline]
fn match_param<'a>(part: &'a str, name: &str) -> Option<Option<&'a str>> {
    let p = part.as_bytes();
    let mut i = 0;
    while i < p.len() && matches!(p[i], b' ' | b'\t') {
        i += 1;
    }
    // The name starts after the leading white space: it must begin with `name`.
    let prefix = p.get(i..i + name.len())?;
    if !eq_ic(prefix, name.as_bytes()) {
        return None;
    }
    let (n, v) = header_param(part);
    eq_ic_str(n, name).then_some(v)
}

/// One header parameter `name [= value]`, white space trimmed.
fn header_param(part: &str) -> (&str, Option<&str>) {
    let part = trim_ws(part);
    match part.split_once_b(b'=') {
        Some((n, v)) => (trim_end_fast(n), Some(trim_start_fast(v))),
        None => (part, None),
    }
}

/// One URI parameter `name [= value]` (no white space in URIs).
fn uri_param(part: &str) -> (&str, Option<&str>) {
    match part.split_once_b(b'=') {
        Some((n, v)) => (n, Some(v)),
        None => (part, None),
    }
}

impl std::fmt::Display for Params {
    /// Writes `;name=value` for each parameter.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.write_to(f)
    }
}

impl Params {
    /// Writes `;name=value` for each parameter into any writer, as `Display` does.
    pub fn write_to<W: std::fmt::Write>(&self, w: &mut W) -> std::fmt::Result {
        // The text is the printed form.
        w.write_str(&self.text)
    }
}

/// `00`, `01` … `99`: the numbers below 100 are slices of this text (no digit loop and no
/// UTF-8 check for the Max-Forwards, CSeq and Content-Length of nearly every message).
const PAIRS: &str = "00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";

/// `n` in decimal, as `Display` prints it, written into `buf` (20 bytes hold any `u64`)
/// without the formatting machinery: a port, a CSeq number, a Content-Length.
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &str {
    if n < 100 {
        // `n` < 100: in bounds, and ASCII, so on character boundaries.
        let at = 2 * n as usize + usize::from(n < 10);
        return PAIRS.get(at..2 * n as usize + 2).unwrap_or_default();
    }
    // Two digits at a time from the same table, from the right (a port or a CSeq number
    // takes two or three steps instead of four or five divisions).
    let pairs = PAIRS.as_bytes();
    let mut i = buf.len();
    while n >= 100 {
        // `n % 100` < 100: the pair is in the table, and `i` >= 2 (20 digits hold any u64).
        let at = 2 * (n % 100) as usize;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&pairs[at..at + 2]);
        n /= 100;
    }
    // `n` < 100 and not 0 (the number had three digits or more): one or two digits left.
    let at = 2 * n as usize;
    if n >= 10 {
        i -= 2;
        buf[i..i + 2].copy_from_slice(&pairs[at..at + 2]);
    } else {
        i -= 1;
        buf[i] = pairs[at + 1];
    }
    // Only ASCII digits are written, so this never falls back.
    std::str::from_utf8(&buf[i..]).unwrap_or_default()
}

/// A 16-byte block aligned as two words (the UTF-8 check of a whole aligned block is one
/// step of its ASCII fast path).
#[repr(align(16))]
pub(crate) struct Block(pub(crate) [u8; 16]);

/// Each octet's digits (at most three) and how many there are, in the fourth byte.
static OCTETS: [[u8; 4]; 256] = {
    let mut t = [[0u8; 4]; 256];
    let mut i = 0;
    while i < 256 {
        // `i` < 256: the cast cannot truncate.
        let o = i as u8;
        t[i] = if o >= 100 {
            [b'0' + o / 100, b'0' + o / 10 % 10, b'0' + o % 10, 3]
        } else if o >= 10 {
            [b'0' + o / 10, b'0' + o % 10, b' ', 2]
        } else {
            [b'0' + o, b' ', b' ', 1]
        };
        i += 1;
    }
    t
};

/// Writes an IPv4 address as `Ipv4Addr`'s `Display` does (dotted decimal), in one call.
pub(crate) fn write_ipv4(f: &mut impl std::fmt::Write, a: std::net::Ipv4Addr) -> std::fmt::Result {
    // Four octets of up to three digits and three dots: at most 15 bytes of a block padded
    // with spaces, each octet copied from the table as four bytes (its digits, then bytes
    // the next octet or the padding overwrite).
    let mut b = Block([b' '; 16]);
    let mut len = 0;
    for o in a.octets() {
        let digits = OCTETS[usize::from(o)];
        let n = usize::from(digits[3]);
        // `len` <= 12 here (three octets of three digits and their dots): in bounds.
        b.0[len..len + 4].copy_from_slice(&digits);
        b.0[len + n] = b'.';
        len += n + 1;
    }
    // The last octet's dot is not part of the address.
    len -= 1;
    b.0[len] = b' ';
    // Only ASCII digits, dots and spaces are written, so this never falls back.
    let text = std::str::from_utf8(&b.0).unwrap_or_default();
    f.write_str(text.get(..len).unwrap_or_default())
}

/// Parses a decimal number that must fit in `u64` and be at most `max`.
pub(crate) fn parse_num(s: &str, max: u64) -> Result<u64, HeaderError> {
    if s.is_empty() || s.len() > 20 {
        return Err(HeaderError::BadNumber);
    }
    // Digits only, and no overflow: what `u64::from_str` accepts of them, in one pass.
    let mut n: u64 = 0;
    for c in s.bytes() {
        if !c.is_ascii_digit() {
            return Err(HeaderError::BadNumber);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(c - b'0')))
            .ok_or(HeaderError::BadNumber)?;
    }
    if n > max {
        return Err(HeaderError::BadNumber);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The list of pairs `Params` was before it kept one text: the reference it must match.
    #[derive(Default)]
    struct Model(Vec<(String, Option<String>)>);

    impl Model {
        fn set(&mut self, name: &str, value: Option<&str>) {
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
        fn printed(&self) -> String {
            let mut s = String::new();
            for (n, v) in &self.0 {
                s.push(';');
                s.push_str(n);
                if let Some(v) = v {
                    s.push('=');
                    s.push_str(v);
                }
            }
            s
        }
    }

    #[test]
    fn params_in_one_text_behave_as_the_list_of_pairs() {
        let names = [
            "branch", "BRANCH", "rport", "received", "tag", "lr", "x", "é", "", "a=b", "c;d",
        ];
        let values = [
            None,
            Some(""),
            Some("z9hG4bK1"),
            Some("\"a;b=c\""),
            Some("ünï"),
            Some("1.2.3.4"),
            Some("x=y"),
        ];
        // A fixed pseudo-random sequence of sets, pushes and removes (no dependency needed).
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..300 {
            let mut p = Params::new();
            let mut m = Model::default();
            for _ in 0..next(12) {
                let name = names[next(names.len())];
                let value = values[next(values.len())];
                match next(3) {
                    0 => {
                        p.set(name, value);
                        m.set(name, value);
                    }
                    1 => {
                        p.push(name, value);
                        m.0.push((name.to_owned(), value.map(str::to_owned)));
                    }
                    _ => {
                        p.remove(name);
                        m.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                    }
                }
                let pairs: Vec<_> =
                    m.0.iter()
                        .map(|(n, v)| (n.as_str(), v.as_deref()))
                        .collect();
                assert_eq!(p.iter().collect::<Vec<_>>(), pairs);
                assert_eq!(p.len(), m.0.len());
                assert_eq!(p.is_empty(), m.0.is_empty());
                assert_eq!(p.to_string(), m.printed());
                assert_eq!(format!("{p:?}"), format!("Params({pairs:?})"));
                for n in names {
                    let want = m.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(n));
                    assert_eq!(p.get(n), want.map(|(_, v)| v.as_deref()));
                    assert_eq!(p.contains(n), want.is_some());
                }
                // Equal lists are equal values, built either way.
                let mut q = Params::new();
                for (n, v) in &pairs {
                    q.push(n, *v);
                }
                assert_eq!(p, q);
            }
        }
        // Quoted values lose their quotes through `value`.
        let mut p = Params::new();
        p.set("q", Some("\"a\\\"b\""));
        assert_eq!(p.value("Q").as_deref(), Some("a\"b"));
    }

    #[test]
    fn numbers_are_read_as_from_str_reads_them() {
        // The reference: digits only, at most 20, then `u64::from_str`, then the bound.
        let reference = |s: &str, max: u64| -> Result<u64, HeaderError> {
            if s.is_empty() || s.len() > 20 || !s.bytes().all(|c| c.is_ascii_digit()) {
                return Err(HeaderError::BadNumber);
            }
            let n: u64 = s.parse().map_err(|_| HeaderError::BadNumber)?;
            if n > max {
                return Err(HeaderError::BadNumber);
            }
            Ok(n)
        };
        let mut cases: Vec<String> = [
            "",
            "0",
            "00",
            "007",
            "70",
            "4294967295",
            "4294967296",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999",
            "000000000000000000001",
            "00000000000000000001",
            "+1",
            "-1",
            " 1",
            "1 ",
            "1a",
            "٣",
            "1_0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        cases.extend((0..2000u64).map(|n| (n * 7919).to_string()));
        for s in &cases {
            for max in [0, 70, u64::from(u32::MAX), u64::MAX] {
                assert_eq!(parse_num(s, max), reference(s, max), "{s:?} <= {max}");
            }
        }
    }

    #[test]
    fn skip_class_stops_where_a_byte_by_byte_scan_stops() {
        // Every byte value at every place of runs of letters and digits up to 25 bytes long,
        // from every start, for the name test (class 1) and the value test (class not 0).
        let filler: Vec<u8> = b"aZ09zA9x".iter().copied().cycle().take(25).collect();
        for len in 0..=25 {
            for place in 0..len.max(1) {
                for c in 0..=255u8 {
                    let mut b = filler[..len].to_vec();
                    if place < len {
                        b[place] = c;
                    }
                    for from in 0..=len {
                        for accept in [|k: u8| k == 1, |k: u8| k != 0] {
                            let expected = (from..len)
                                .find(|&i| !accept(PARAM_CLASS[usize::from(b[i])]))
                                .unwrap_or(len);
                            assert_eq!(skip_class(&b, from, accept), expected, "{b:?} from {from}");
                        }
                    }
                }
            }
        }
        // The flags are exactly the bytes that are not letters or digits.
        for c in 0..=255u8 {
            let w = u64::from_le_bytes([c; 8]);
            let flagged = not_alphanumeric(w) != 0;
            assert_eq!(flagged, !c.is_ascii_alphanumeric(), "{c:#x}");
        }
    }

    #[test]
    fn find_byte_finds_what_a_byte_by_byte_scan_finds() {
        // Every target among delimiters, 0x00, 0x01 (one above a match: the borrow trick's
        // false flag), 0x80 and 0xFF; in buffers of every length up to 33 holding it at every
        // place (and again further on, and not at all), among fillers next to it in value.
        for c in [b'>', b':', b';', b'=', b'@', 0x00, 0x01, 0x80, 0xFF] {
            for len in 0..34usize {
                for at in (0..len).map(Some).chain([None]) {
                    for filler in [b'a', c.wrapping_add(1), c.wrapping_sub(1), c ^ 0x80] {
                        if filler == c {
                            continue;
                        }
                        let mut b = vec![filler; len];
                        if let Some(at) = at {
                            b[at] = c;
                            if at + 5 < len {
                                b[at + 5] = c;
                            }
                        }
                        let expected = b.iter().position(|&x| x == c);
                        assert_eq!(find_byte(&b, c), expected, "{c:#x} in {b:?}");
                    }
                }
            }
        }
    }

    /// The first value of a list read with the shortcut (no comma, quote or `<`: the whole
    /// text) is the one the loop finds, errors included, for every string of up to five
    /// pieces from the bytes that matter and their neighbours, and for long values around the
    /// vector search's block sizes.
    #[test]
    fn the_first_value_shortcut_finds_what_the_loop_finds() {
        const PIECES: [&str; 10] = [",", "\"", "<", ">", "\\", "a", ";", "é", " ", "+"];
        let mut values = vec![String::new()];
        for _ in 0..5 {
            let longer: Vec<String> = values
                .iter()
                .filter(|v| v.chars().count() == values.last().map_or(0, |l| l.chars().count()))
                .flat_map(|v| PIECES.iter().map(move |p| format!("{v}{p}")))
                .collect();
            values.extend(longer);
        }
        for len in [15, 16, 17, 31, 32, 33, 63, 64, 65, 100] {
            for special in [",", "\"", "<", ">"] {
                for at in [0, len / 2, len - 1] {
                    let mut v = "x".repeat(len);
                    v.replace_range(at..at + 1, special);
                    values.push(v);
                }
            }
            values.push("y".repeat(len));
        }
        for v in &values {
            assert_eq!(first_top(v, b','), first_top_by_loop(v, b','), "{v:?}");
        }
    }

    /// Every string of up to three characters from a set holding each kind of white space
    /// `char::is_whitespace` knows (ASCII and not), printable ASCII, a control character, DEL
    /// and non-ASCII letters: the shortcut trims what `str::trim` trims.
    #[test]
    fn trim_fast_trims_what_str_trim_trims() {
        const CHARS: [char; 15] = [
            ' ', '\t', '\n', '\u{b}', '\u{c}', '\r', '\u{1c}', '\u{7f}', '\u{85}', '\u{a0}',
            '\u{2028}', '\u{3000}', 'a', ',', 'é',
        ];
        for len in 0..=3u32 {
            for mut k in 0..CHARS.len().pow(len) {
                let mut s = String::new();
                for _ in 0..len {
                    s.push(CHARS[k % CHARS.len()]);
                    k /= CHARS.len();
                }
                assert_eq!(trim_fast(&s), s.trim(), "{s:?}");
                let long = format!("{s}sip:a@b{s}");
                assert_eq!(trim_fast(&long), long.trim(), "{long:?}");
            }
        }
    }

    #[test]
    fn skip_plain_finds_what_a_byte_by_byte_scan_finds() {
        // Every special byte (and near misses: bytes one above and below, high bytes) at every
        // offset of strings longer than one word, from every start.
        let fillers = [b'a', b'=', b'+', b'-', b'?', b'[', 0x80, 0xff, 0x2b, 0x3d];
        let specials = [b'"', b'<', b'>', b',', b';'];
        for len in [0, 1, 7, 8, 9, 15, 16, 17, 31] {
            for &fill in &fillers {
                for &sp in &specials {
                    for at in 0..=len {
                        let mut b = vec![fill; len];
                        if at < len {
                            b[at] = sp;
                        }
                        if at + 3 < len {
                            b[at + 3] = specials[(at + 1) % specials.len()];
                        }
                        for from in 0..=len {
                            let want = (from..len)
                                .find(|&i| TOP_SPECIAL[b[i] as usize])
                                .unwrap_or(len);
                            assert_eq!(skip_plain(&b, from), want, "{b:?} from {from}");
                            let want = (from..len)
                                .find(|&i| matches!(b[i], b'"' | b'<' | b'>' | b','))
                                .unwrap_or(len);
                            assert_eq!(skip_to_comma_level(&b, from), want, "{b:?} from {from}");
                        }
                    }
                }
            }
        }
    }
}
