//! SIP, SIPS and tel URIs (RFC 3261 §19.1, §25.1; RFC 3966), and other absolute URIs kept verbatim.

use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::error::UriError;
use crate::text::{ByteStr, Params, ParamsRef, eq_ic_str};

/// The host of a SIP URI or Via.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A host name (kept as written; compare case-insensitively).
    Name(String),
    /// An IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 reference (written in brackets).
    V6(Ipv6Addr),
}

impl From<std::net::IpAddr> for Host {
    fn from(ip: std::net::IpAddr) -> Self {
        match ip {
            std::net::IpAddr::V4(a) => Host::V4(a),
            std::net::IpAddr::V6(a) => Host::V6(a),
        }
    }
}

impl Host {
    /// Parses a host name, an IPv4 address or a bracketed IPv6 reference.
    pub fn parse(s: &str) -> Result<Self, UriError> {
        HostRef::parse(s).map(HostRef::into_owned)
    }

    /// True when the host is an IP address literal (no DNS needed).
    pub fn is_ip(&self) -> bool {
        !matches!(self, Host::Name(_))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl Host {
    /// Writes the host as `Display` prints it into any writer (a `String` directly, without
    /// the formatting machinery).
    pub fn write_to<W: fmt::Write>(&self, w: &mut W) -> fmt::Result {
        match self {
            Host::Name(n) => w.write_str(n),
            Host::V4(a) => crate::text::write_ipv4(w, *a),
            Host::V6(a) => write!(w, "[{a}]"),
        }
    }
}

/// A [`Host`] read in place: the name borrowed from the text it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostRef<'a> {
    /// A host name as written (compare case-insensitively).
    Name(&'a str),
    /// An IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 reference (written in brackets).
    V6(Ipv6Addr),
}

impl<'a> HostRef<'a> {
    /// Parses a host name, an IPv4 address or a bracketed IPv6 reference.
    pub fn parse(s: &'a str) -> Result<Self, UriError> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(UriError::BadHost)?;
            return Ipv6Addr::from_str(inner)
                .map(HostRef::V6)
                .map_err(|_| UriError::BadHost);
        }
        if s.is_empty() {
            return Err(UriError::BadHost);
        }
        let b = s.as_bytes();
        // An IPv4 address when it reads as one (it then holds only digits and dots).
        if b[0].is_ascii_digit()
            && let Some(a) = parse_ipv4(b)
        {
            return Ok(HostRef::V4(a));
        }
        // RFC 3261 §25.1 hostname: labels of alphanum and '-', separated by '.', optional
        // final dot (an empty label after the first is accepted when the name ends in '.').
        let ends_with_dot = b.last() == Some(&b'.');
        let mut ok = true;
        let mut start = 0;
        let mut i = 0;
        // The end of the text closes the last label like a dot does.
        while i <= b.len() {
            if i < b.len() && b[i] != b'.' {
                ok &= HOST_CHARS[b[i] as usize];
                i += 1;
                continue;
            }
            ok &= if i == start {
                start > 0 && ends_with_dot
            } else {
                b[start] != b'-' && b[i - 1] != b'-'
            };
            i += 1;
            start = i;
        }
        if ok {
            Ok(HostRef::Name(s))
        } else {
            Err(UriError::BadHost)
        }
    }

    /// The owned host.
    pub fn into_owned(self) -> Host {
        match self {
            HostRef::Name(n) => Host::Name(n.to_owned()),
            HostRef::V4(a) => Host::V4(a),
            HostRef::V6(a) => Host::V6(a),
        }
    }

    /// True when the host is an IP address literal (no DNS needed).
    pub fn is_ip(&self) -> bool {
        !matches!(self, HostRef::Name(_))
    }
}

impl fmt::Display for HostRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostRef::Name(n) => f.write_str(n),
            HostRef::V4(a) => crate::text::write_ipv4(f, *a),
            HostRef::V6(a) => write!(f, "[{a}]"),
        }
    }
}

/// Characters of a host name label: alphanumerics and `-`.
static HOST_CHARS: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        // `c` < 256: the cast cannot truncate.
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || b == b'-';
        c += 1;
    }
    t
};

/// What `Ipv4Addr::from_str` accepts, without its general parser: four decimal octets of at
/// most three digits, no leading zero, each at most 255, separated by dots.
fn parse_ipv4(s: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut k = 0;
    let mut value: u16 = 0;
    let mut digits = 0;
    for &c in s {
        if c == b'.' {
            if digits == 0 || k == 3 {
                return None;
            }
            octets[k] = u8::try_from(value).ok()?;
            k += 1;
            value = 0;
            digits = 0;
            continue;
        }
        // At most three digits, and no leading zero.
        if !c.is_ascii_digit() || digits == 3 || (digits == 1 && value == 0) {
            return None;
        }
        value = value * 10 + u16::from(c - b'0');
        digits += 1;
    }
    if digits == 0 || k != 3 {
        return None;
    }
    octets[3] = u8::try_from(value).ok()?;
    Some(Ipv4Addr::from(octets))
}

/// Splits `host[:port]` where host may be a bracketed IPv6 reference.
pub(crate) fn parse_hostport(s: &str) -> Result<(HostRef<'_>, Option<u16>), UriError> {
    let (host, port) = if s.starts_with('[') {
        let end = s.find_b(b']').ok_or(UriError::BadHost)?;
        let rest = &s[end + 1..];
        let port = match rest {
            "" => None,
            r => Some(r.strip_prefix(':').ok_or(UriError::BadPort)?),
        };
        (&s[..=end], port)
    } else {
        match s.rsplit_once_b(b':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|c| c.is_ascii_digit()) {
                return Err(UriError::BadPort);
            }
            // At most five digits: fits in u32; above 65535 is an error.
            let n = p.bytes().fold(0u32, |n, c| n * 10 + u32::from(c - b'0'));
            Some(u16::try_from(n).map_err(|_| UriError::BadPort)?)
        }
    };
    Ok((HostRef::parse(host)?, port))
}

/// The scheme of a SIP URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:` (TLS end to end).
    Sips,
}

/// A `sip:` or `sips:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    /// `sip` or `sips`.
    pub scheme: Scheme,
    /// The user part, still %-escaped as written.
    pub user: Option<String>,
    /// The password, still %-escaped (RFC 3261 discourages it, but it is legal).
    pub password: Option<String>,
    /// The host.
    pub host: Host,
    /// The port, when written.
    pub port: Option<u16>,
    /// URI parameters (`;transport=tcp;lr`).
    pub params: Params,
    /// URI headers (`?Subject=x&Priority=urgent`), still escaped.
    pub headers: Vec<(String, String)>,
}

impl SipUri {
    /// A URI `sip:host` with nothing else.
    pub fn new(host: Host) -> Self {
        Self {
            scheme: Scheme::Sip,
            user: None,
            password: None,
            host,
            port: None,
            params: Params::new(),
            headers: Vec::new(),
        }
    }

    /// Sets the user part (escape it first if needed).
    pub fn with_user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Sets the port.
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Adds a URI parameter.
    pub fn with_param(mut self, name: &str, value: Option<&str>) -> Self {
        self.params.set(name, value);
        self
    }

    /// The user part with %-escapes decoded.
    pub fn user_unescaped(&self) -> Option<String> {
        self.user.as_deref().map(unescape)
    }

    /// The `transport` parameter, lower-cased.
    pub fn transport(&self) -> Option<String> {
        self.params
            .value("transport")
            .map(|t| t.to_ascii_lowercase())
    }

    /// True with the `lr` parameter (loose routing, RFC 3261 §16.12).
    pub fn is_loose_route(&self) -> bool {
        self.params.contains("lr")
    }
}

/// A [`SipUri`] read in place (every part borrowed from the text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipUriRef<'a> {
    /// `sip` or `sips`.
    pub scheme: Scheme,
    /// The user part, still %-escaped as written.
    pub user: Option<&'a str>,
    /// The password, still %-escaped.
    pub password: Option<&'a str>,
    /// The host.
    pub host: HostRef<'a>,
    /// The port, when written.
    pub port: Option<u16>,
    /// URI parameters (`;transport=tcp;lr`).
    pub params: ParamsRef<'a>,
    /// URI headers after `?` (`Subject=x&Priority=urgent`), still escaped.
    pub headers: Option<&'a str>,
}

impl<'a> SipUriRef<'a> {
    /// `scan`: what [`UriRef::parse`] found in `rest` in its one pass.
    fn parse(scheme: Scheme, rest: &'a str, scan: &Scan) -> Result<Self, UriError> {
        let escapes = scan.escapes;
        let check_escapes = |s: &str| if escapes { check_escapes(s) } else { Ok(()) };
        // The user part may hold `?`, `;` and `,` (RFC 3261 §25.1 user-unreserved) while `@`
        // appears nowhere else unescaped: the userinfo ends at the last `@`. After it, the
        // first `?` starts the headers and the first `;` before that the parameters.
        let (userinfo, after_user, from) = match scan.at {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..], at + 1),
            None => (None, rest, 0),
        };
        let (hostpart, headers) = match scan.question {
            Some(i) => (&after_user[..i - from], Some(&after_user[i - from + 1..])),
            None => (after_user, None),
        };
        let semi = scan.semi.map(|i| i - from);
        let (user, password) = match userinfo {
            None => (None, None),
            Some(ui) => {
                // One pass: the user ends at the first `:` (not a user character), and every
                // byte before it must be one.
                let b = ui.as_bytes();
                let mut colon = 0;
                while colon < b.len() && USER_CHARS[usize::from(b[colon])] {
                    colon += 1;
                }
                let (u, p) = match b.get(colon) {
                    None => (ui, None),
                    // `:` is ASCII: both cuts are character boundaries.
                    Some(b':') => (
                        ui.get(..colon).unwrap_or_default(),
                        Some(ui.get(colon + 1..).unwrap_or_default()),
                    ),
                    // A byte that is not a user character before any `:`. (The escapes are
                    // checked first, as before: a bad escape is reported as one.)
                    Some(_) => {
                        let u = ui.split_once_b(b':').map_or(ui, |(u, _)| u);
                        if u.is_empty() {
                            return Err(UriError::BadUser);
                        }
                        check_escapes(u)?;
                        return Err(UriError::BadUser);
                    }
                };
                if u.is_empty() {
                    return Err(UriError::BadUser);
                }
                check_escapes(u)?;
                if let Some(p) = p {
                    check_escapes(p)?;
                }
                (Some(u), p)
            }
        };
        let (hostport, params) = match semi {
            Some(i) => (&hostpart[..i], Some(&hostpart[i + 1..])),
            None => (hostpart, None),
        };
        let (host, port) = parse_hostport(hostport)?;
        if let Some(ps) = params {
            for p in ps.split_b(b';') {
                let (n, v) = match p.split_once_b(b'=') {
                    Some((n, v)) => (n, Some(v)),
                    None => (p, None),
                };
                if n.is_empty() {
                    return Err(UriError::BadParam);
                }
                check_escapes(n)?;
                if let Some(v) = v {
                    check_escapes(v)?;
                }
            }
        }
        if let Some(h) = headers {
            for pair in h.split_b(b'&') {
                let (n, v) = pair.split_once_b(b'=').ok_or(UriError::BadParam)?;
                check_escapes(n)?;
                check_escapes(v)?;
            }
        }
        Ok(Self {
            scheme,
            user,
            password,
            host,
            port,
            params: ParamsRef::uri(params.unwrap_or("")),
            headers,
        })
    }

    /// The owned URI.
    pub fn into_owned(self) -> SipUri {
        let headers = match self.headers {
            None => Vec::new(),
            Some(h) => h
                .split_b(b'&')
                .filter_map(|pair| pair.split_once_b(b'='))
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect(),
        };
        SipUri {
            scheme: self.scheme,
            user: self.user.map(str::to_owned),
            password: self.password.map(str::to_owned),
            host: self.host.into_owned(),
            port: self.port,
            params: self.params.into_owned(),
            headers,
        }
    }

    /// The `transport` parameter as written (compare case-insensitively).
    pub fn transport(&self) -> Option<Cow<'a, str>> {
        self.params.value("transport")
    }

    /// True with the `lr` parameter (loose routing, RFC 3261 §16.12).
    pub fn is_loose_route(&self) -> bool {
        self.params.contains("lr")
    }
}

/// RFC 3261 §25.1 `user = 1*( unreserved / escaped / user-unreserved )`, as a table.
static USER_CHARS: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        // `c` < 256: the cast cannot truncate.
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_'
                    | b'.'
                    | b'!'
                    | b'~'
                    | b'*'
                    | b'\''
                    | b'('
                    | b')'
                    | b'%'
                    | b'&'
                    | b'='
                    | b'+'
                    | b'$'
                    | b','
                    | b';'
                    | b'?'
                    | b'/'
            );
        c += 1;
    }
    t
};

/// Byte classes of a URI: characters it may not hold, `%`, and the delimiters `@` `?` `;`.
const URI_BAD: u8 = 1;
const URI_PERCENT: u8 = 2;
const URI_DELIM: u8 = 4;

/// What one pass over a URI finds: whether it holds escapes, the last `@`, and after it the
/// first `?` and the first `;` before that `?` (byte positions).
#[derive(Debug, Clone, Copy)]
struct Scan {
    escapes: bool,
    at: Option<usize>,
    question: Option<usize>,
    semi: Option<usize>,
}

impl Scan {
    /// Scans `s`; a character a URI may not hold is an error. Eight bytes at a time: only
    /// the bytes [`uri_candidates`] flags (the few that may be of a class) are looked at.
    fn of(s: &str) -> Result<Self, UriError> {
        let mut class = 0;
        let mut scan = Scan {
            escapes: false,
            at: None,
            question: None,
            semi: None,
        };
        let mut visit = |i: usize, c: u8| {
            class |= URI_CLASS[usize::from(c)];
            match c {
                b'@' => {
                    scan.at = Some(i);
                    scan.question = None;
                    scan.semi = None;
                }
                b'?' if scan.question.is_none() => scan.question = Some(i),
                b';' if scan.question.is_none() && scan.semi.is_none() => scan.semi = Some(i),
                _ => {}
            }
        };
        let b = s.as_bytes();
        let mut words = b.chunks_exact(8);
        let mut base = 0;
        for chunk in words.by_ref() {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            let mut flags = uri_candidates(u64::from_le_bytes(w));
            while flags != 0 {
                // Little-endian: the lowest flag is the first candidate, in order.
                let k = (flags.trailing_zeros() / 8) as usize;
                visit(base + k, w[k]);
                flags &= flags - 1;
            }
            base += 8;
        }
        for (k, &c) in words.remainder().iter().enumerate() {
            if URI_CLASS[usize::from(c)] != 0 {
                visit(base + k, c);
            }
        }
        if class & URI_BAD != 0 {
            return Err(UriError::InvalidChar);
        }
        scan.escapes = class & URI_PERCENT != 0;
        Ok(scan)
    }

    /// The positions relative to `s[offset..]` (the delimiters all lie beyond `offset`).
    fn after(&self, offset: usize) -> Self {
        let shift = |p: Option<usize>| p.map(|p| p.saturating_sub(offset));
        Scan {
            escapes: self.escapes,
            at: shift(self.at),
            question: shift(self.question),
            semi: shift(self.semi),
        }
    }
}
/// Bit 7 of each byte of `w` that may be of a class in [`URI_CLASS`]: every byte below
/// 0x26 (white space, controls, `"`, `%`, and `!` `#` `$`), 0x3B to 0x40 (`;` `<` `=` `>` `?`
/// `@`), 0x7F and above. So every byte of a class, and a few others (`=`, non-ASCII …) that
/// the caller looks up and finds of none. Exact per byte: the sums are of 7-bit values and
/// never carry into the next byte.
#[inline(always)]
fn uri_candidates(w: u64) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    const LOW: u64 = u64::from_ne_bytes([0x7f; 8]);
    let y = w & LOW;
    // Bit 7 where the low seven bits are at least `n` (n <= 0x80).
    let at_least = |n: u64| y + (0x80 - n) * ONES;
    (!at_least(0x26) | (at_least(0x3b) & !at_least(0x41)) | at_least(0x7f) | w) & HIGH
}

static URI_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c <= b' ' as usize {
        t[c] = URI_BAD;
        c += 1;
    }
    t[b'<' as usize] = URI_BAD;
    t[b'>' as usize] = URI_BAD;
    t[b'"' as usize] = URI_BAD;
    t[0x7f] = URI_BAD;
    t[b'%' as usize] = URI_PERCENT;
    t[b'@' as usize] = URI_DELIM;
    t[b'?' as usize] = URI_DELIM;
    t[b';' as usize] = URI_DELIM;
    t
};

fn check_escapes(s: &str) -> Result<(), UriError> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if i + 2 >= b.len() {
                return Err(UriError::BadEscape);
            }
            if !(b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                return Err(UriError::BadEscape);
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Decodes %-escapes (invalid escapes are kept as written).
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                // Two hex digits make at most 0xff: the cast cannot truncate.
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Escapes `s` as the value of a URI header (RFC 3261 §25.1 `hvalue`: `unreserved`, the
/// `hnv-unreserved` marks `[ ] / ? : + $`, and %-escapes for every other byte), so that a
/// header field value (`Replaces: a@b;to-tag=1` in a Refer-To, RFC 3891 §7) fits in a URI.
pub fn escape_hvalue(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()[]/?:+$".contains(&b) {
            out.push(b as char);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
    out
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl SipUri {
    /// Writes the URI as `Display` prints it into any writer (see [`Host::write_to`]).
    pub fn write_to<W: fmt::Write>(&self, w: &mut W) -> fmt::Result {
        w.write_str(match self.scheme {
            Scheme::Sip => "sip:",
            Scheme::Sips => "sips:",
        })?;
        if let Some(u) = &self.user {
            w.write_str(u)?;
            if let Some(p) = &self.password {
                write!(w, ":{p}")?;
            }
            w.write_str("@")?;
        }
        self.host.write_to(w)?;
        if let Some(p) = self.port {
            w.write_str(":")?;
            w.write_str(crate::text::decimal(u64::from(p), &mut [0; 20]))?;
        }
        self.params.write_to(w)?;
        for (i, (n, v)) in self.headers.iter().enumerate() {
            write!(w, "{}{n}={v}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

/// A [`SipUriRef`] as ranges of the text it was read from (no lifetime, no copy): a parsed
/// request keeps its Request-URI so, and [`SipUriSpans::view`] gives the view back without
/// reading the text again. IPv6 hosts are not kept so (the text is read again for them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SipUriSpans {
    scheme: Scheme,
    user: Option<(u32, u32)>,
    password: Option<(u32, u32)>,
    /// The host name's range, or the IPv4 address.
    host: Result<Ipv4Addr, (u32, u32)>,
    port: Option<u16>,
    params: (u32, u32),
    headers: Option<(u32, u32)>,
}

impl SipUriSpans {
    /// The ranges of `u`'s parts in `text`, which `u` was read from; `None` for an IPv6
    /// host or a part that is not a range of `text` (an empty parameter list is not).
    pub(crate) fn of(text: &str, u: &SipUriRef<'_>) -> Option<Self> {
        // Where `part` lies in `text` (a sub-slice of it: its address minus the text's).
        let range = |part: &str| -> Option<(u32, u32)> {
            let start = (part.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
            let end = start.checked_add(part.len())?;
            (end <= text.len()).then_some((u32::try_from(start).ok()?, u32::try_from(end).ok()?))
        };
        let opt = |part: Option<&str>| match part {
            Some(p) => range(p).map(Some),
            None => Some(None),
        };
        let params = match u.params.text() {
            "" => (0, 0),
            p => range(p)?,
        };
        Some(Self {
            scheme: u.scheme,
            user: opt(u.user)?,
            password: opt(u.password)?,
            host: match u.host {
                HostRef::V4(a) => Ok(a),
                HostRef::Name(n) => Err(range(n)?),
                HostRef::V6(_) => return None,
            },
            port: u.port,
            params,
            headers: opt(u.headers)?,
        })
    }

    /// The view these ranges were made from, read from the same `text`.
    pub(crate) fn view<'a>(&self, text: &'a str) -> Option<SipUriRef<'a>> {
        let part = |(a, b): (u32, u32)| text.get(a as usize..b as usize);
        let opt = |r: Option<(u32, u32)>| match r {
            Some(r) => part(r).map(Some),
            None => Some(None),
        };
        Some(SipUriRef {
            scheme: self.scheme,
            user: opt(self.user)?,
            password: opt(self.password)?,
            host: match self.host {
                Ok(a) => HostRef::V4(a),
                Err(r) => HostRef::Name(part(r)?),
            },
            port: self.port,
            params: ParamsRef::uri(part(self.params)?),
            headers: opt(self.headers)?,
        })
    }
}

/// A URI as it may appear in a Request-URI, To, From, Contact or Route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    /// `sip:` or `sips:`.
    Sip(SipUri),
    /// `tel:` (RFC 3966): the number and its parameters, as written.
    Tel {
        /// The telephone-subscriber part up to the first `;`.
        number: String,
        /// Parameters such as `phone-context`.
        params: Params,
    },
    /// Any other absolute URI (`http:`, `mailto:`, `urn:` …), kept verbatim.
    Other {
        /// The scheme, lower-cased.
        scheme: String,
        /// Everything after the colon.
        rest: String,
    },
}

/// A [`Uri`] read in place (every part borrowed from the text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriRef<'a> {
    /// `sip:` or `sips:`.
    Sip(SipUriRef<'a>),
    /// `tel:` (RFC 3966).
    Tel {
        /// The telephone-subscriber part up to the first `;`.
        number: &'a str,
        /// Parameters such as `phone-context`.
        params: ParamsRef<'a>,
    },
    /// Any other absolute URI, as written.
    Other {
        /// The scheme as written.
        scheme: &'a str,
        /// Everything after the colon.
        rest: &'a str,
    },
}

impl<'a> UriRef<'a> {
    /// Parses an absolute URI.
    pub fn parse(s: &'a str) -> Result<Self, UriError> {
        if s.is_empty() {
            return Err(UriError::Empty);
        }
        let scan = Scan::of(s)?;
        // `sip:` (any case), the scheme of nearly every URI: read without the general split
        // and checks below, which give the same answer for it.
        if s.as_bytes()
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"sip:"))
        {
            // The first four bytes are ASCII: the cut is a character boundary.
            let rest = s.get(4..).unwrap_or_default();
            return SipUriRef::parse(Scheme::Sip, rest, &scan.after(4)).map(UriRef::Sip);
        }
        let (scheme, rest) = s.split_once_b(b':').ok_or(UriError::MissingScheme)?;
        let valid_scheme = !scheme.is_empty()
            && scheme.as_bytes()[0].is_ascii_alphabetic()
            && scheme
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
        if !valid_scheme {
            return Err(UriError::MissingScheme);
        }
        if eq_ic_str(scheme, "sip") {
            SipUriRef::parse(Scheme::Sip, rest, &scan.after(scheme.len() + 1)).map(UriRef::Sip)
        } else if eq_ic_str(scheme, "sips") {
            SipUriRef::parse(Scheme::Sips, rest, &scan.after(scheme.len() + 1)).map(UriRef::Sip)
        } else if eq_ic_str(scheme, "tel") {
            let (number, params) = match rest.split_once_b(b';') {
                Some((n, p)) => (n, Some(p)),
                None => (rest, None),
            };
            if number.is_empty() {
                return Err(UriError::BadUser);
            }
            if let Some(p) = params {
                for kv in p.split_b(b';') {
                    let k = kv.split_once_b(b'=').map_or(kv, |(k, _)| k);
                    if k.is_empty() {
                        return Err(UriError::BadParam);
                    }
                }
            }
            Ok(UriRef::Tel {
                number,
                params: ParamsRef::uri(params.unwrap_or("")),
            })
        } else {
            if scan.escapes {
                check_escapes(rest)?;
            }
            Ok(UriRef::Other { scheme, rest })
        }
    }

    /// The owned URI.
    pub fn into_owned(self) -> Uri {
        match self {
            UriRef::Sip(u) => Uri::Sip(u.into_owned()),
            UriRef::Tel { number, params } => Uri::Tel {
                number: number.to_owned(),
                params: params.into_owned(),
            },
            UriRef::Other { scheme, rest } => Uri::Other {
                scheme: scheme.to_ascii_lowercase(),
                rest: rest.to_owned(),
            },
        }
    }

    /// The SIP URI, when this is one.
    pub fn as_sip(&self) -> Option<&SipUriRef<'a>> {
        match self {
            UriRef::Sip(u) => Some(u),
            _ => None,
        }
    }
}

impl Uri {
    /// Parses an absolute URI.
    pub fn parse(s: &str) -> Result<Self, UriError> {
        UriRef::parse(s).map(UriRef::into_owned)
    }

    /// The SIP URI, when this is one.
    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }
}

impl From<SipUri> for Uri {
    fn from(u: SipUri) -> Self {
        Uri::Sip(u)
    }
}

impl FromStr for Uri {
    type Err = UriError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uri::parse(s)
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl Uri {
    /// Writes the URI as `Display` prints it into any writer (see [`Host::write_to`]).
    pub fn write_to<W: fmt::Write>(&self, w: &mut W) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.write_to(w),
            Uri::Tel { number, params } => write!(w, "tel:{number}{params}"),
            Uri::Other { scheme, rest } => write!(w, "{scheme}:{rest}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_scan_finds_what_a_byte_by_byte_scan_finds() {
        // Escapes, the last `@`, the first `?` and `;` after it.
        type Found = (bool, Option<usize>, Option<usize>, Option<usize>);
        // The scan as it was written before, byte by byte over the class table.
        fn reference(s: &str) -> Result<Found, UriError> {
            let (mut class, mut at, mut question, mut semi) = (0, None, None, None);
            for (i, c) in s.bytes().enumerate() {
                class |= URI_CLASS[usize::from(c)];
                match c {
                    b'@' => {
                        at = Some(i);
                        question = None;
                        semi = None;
                    }
                    b'?' if question.is_none() => question = Some(i),
                    b';' if question.is_none() && semi.is_none() => semi = Some(i),
                    _ => {}
                }
            }
            if class & URI_BAD != 0 {
                return Err(UriError::InvalidChar);
            }
            Ok((class & URI_PERCENT != 0, at, question, semi))
        }
        let check = |s: &str| {
            let got = Scan::of(s).map(|x| (x.escapes, x.at, x.question, x.semi));
            assert_eq!(got, reference(s), "{s:?}");
        };
        // Every byte value (as a character, and the bytes of a non-ASCII one) at every place
        // of URIs up to 25 bytes long, alone and among the delimiters.
        let base = "sip:alice@host.example;transport=udp?h=v";
        for len in 0..=25 {
            for place in 0..len.max(1) {
                for c in (0u8..=255).map(char::from).chain(['é', '€', '😀']) {
                    let mut s: String = base.chars().take(len).collect();
                    if place <= s.len() && s.is_char_boundary(place) {
                        s.insert(place, c);
                        check(&s);
                    }
                }
            }
        }
        // Every one-byte class of byte, in every place of a word.
        for c in [
            b'@', b';', b'?', b'%', b' ', b'"', b'<', b'>', b'=', 0x7f, b'\t', b'a',
        ] {
            for n in 1..20 {
                for place in 0..n {
                    let mut v = vec![b'x'; n];
                    v[place] = c;
                    let s = String::from_utf8(v).unwrap();
                    check(&s);
                    check(&format!("sip:u@h;{s}@k?{s};x"));
                }
            }
        }
    }

    #[test]
    fn user_parts_and_schemes_read_as_before() {
        // (URI, user, password) or the error, as the two-pass reader gave them: a bad escape
        // is reported before a bad user character, an empty user before either.
        let ok = [
            ("sip:alice@h", Some("alice"), None),
            ("SIP:alice@h", Some("alice"), None),
            ("sIp:a%41b@h", Some("a%41b"), None),
            ("sip:a:pw@h", Some("a"), Some("pw")),
            ("sip:a:@h", Some("a"), Some("")),
            ("sip:a:p:q@h", Some("a"), Some("p:q")),
            (
                "sip:+1-(2)_3.!~*'&=$,;?/@h",
                Some("+1-(2)_3.!~*'&=$,;?/"),
                None,
            ),
            ("sip:h", None, None),
            ("sips:bob@h", Some("bob"), None),
        ];
        for (text, user, password) in ok {
            let u = UriRef::parse(text).unwrap();
            let s = u.as_sip().unwrap();
            assert_eq!((s.user, s.password), (user, password), "{text}");
        }
        let bad = [
            ("sip:@h", UriError::BadUser),
            ("sip::pw@h", UriError::BadUser),
            ("sip:a[b@h", UriError::BadUser),
            ("sip:a{:b@h", UriError::BadUser),
            ("sip:\u{e9}@h", UriError::BadUser),
            ("sip:a%4g[b@h", UriError::BadEscape),
            ("sip:a%4g:b@h", UriError::BadEscape),
            ("sip:a:p%zz@h", UriError::BadEscape),
            ("sip:a[%zz@h", UriError::BadEscape),
            ("sip:", UriError::BadHost),
        ];
        for (text, e) in bad {
            assert_eq!(UriRef::parse(text).map(|_| ()), Err(e), "{text}");
        }
        // A scheme that only starts like `sip` is another scheme.
        assert!(matches!(
            UriRef::parse("si:a@h"),
            Ok(UriRef::Other { scheme: "si", .. })
        ));
    }

    #[test]
    fn parses_full_sip_uri() {
        let u = Uri::parse("sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?Subject=x&P=y")
            .unwrap();
        let s = u.as_sip().unwrap();
        assert_eq!(s.scheme, Scheme::Sips);
        assert_eq!(s.user.as_deref(), Some("alice"));
        assert_eq!(s.password.as_deref(), Some("secret"));
        assert_eq!(s.host, Host::V6("2001:db8::1".parse().unwrap()));
        assert_eq!(s.port, Some(5061));
        assert_eq!(s.transport().as_deref(), Some("tcp"));
        assert!(s.is_loose_route());
        assert_eq!(s.headers.len(), 2);
        assert_eq!(
            u.to_string(),
            "sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?Subject=x&P=y"
        );
    }

    #[test]
    fn header_values_escape_to_what_unescape_reads_back() {
        let v = "a8f@10.0.0.1;to-tag=7Ab;from-tag=x%y z";
        let e = escape_hvalue(v);
        assert_eq!(e, "a8f%4010.0.0.1%3Bto-tag%3D7Ab%3Bfrom-tag%3Dx%25y%20z");
        assert_eq!(unescape(&e), v);
        let u = Uri::parse(&format!("sip:t@example.com?Replaces={e}")).unwrap();
        assert_eq!(u.as_sip().unwrap().headers[0].1, e);
    }

    #[test]
    fn escapes_and_tel() {
        let u = Uri::parse("sip:%61lice@example.com").unwrap();
        assert_eq!(
            u.as_sip().unwrap().user_unescaped().as_deref(),
            Some("alice")
        );
        assert_eq!(
            Uri::parse("sip:%6Glice@example.com"),
            Err(UriError::BadEscape)
        );
        assert_eq!(Uri::parse("sip:a%6@example.com"), Err(UriError::BadEscape));
        let t = Uri::parse("tel:+1-201-555-0123;phone-context=example.com").unwrap();
        assert!(matches!(t, Uri::Tel { ref number, .. } if number == "+1-201-555-0123"));
        assert!(matches!(
            Uri::parse("http://x/y").unwrap(),
            Uri::Other { .. }
        ));
    }

    #[test]
    fn rejects_bad_uris() {
        assert_eq!(
            Uri::parse("sip:user@example.com:99999"),
            Err(UriError::BadPort)
        );
        assert_eq!(
            Uri::parse("sip:user@exa mple.com"),
            Err(UriError::InvalidChar)
        );
        assert_eq!(Uri::parse("sip:[2001:db8:::1]"), Err(UriError::BadHost));
        assert_eq!(Uri::parse("sip:@example.com"), Err(UriError::BadUser));
        assert_eq!(Uri::parse("example.com"), Err(UriError::MissingScheme));
        assert_eq!(Uri::parse("sip:a@-bad-.com"), Err(UriError::BadHost));
        assert_eq!(Uri::parse(""), Err(UriError::Empty));
    }

    #[test]
    fn ipv4_matches_std() {
        // Every string of up to 7 characters over digits that matter and dots, plus edges.
        let alphabet = b"01259.";
        let mut inputs: Vec<String> = vec![
            "255.255.255.255".into(),
            "256.1.1.1".into(),
            "1.2.3.4.5".into(),
            "01.2.3.4".into(),
            "192.0.2.10".into(),
            "1.2.3.".into(),
            "1000.1.1.1".into(),
            "0.0.0.0".into(),
        ];
        for len in 1..=7u32 {
            for mut n in 0..alphabet.len().pow(len) {
                let mut s = String::new();
                for _ in 0..len {
                    s.push(char::from(alphabet[n % alphabet.len()]));
                    n /= alphabet.len();
                }
                inputs.push(s);
            }
        }
        for s in inputs {
            assert_eq!(parse_ipv4(s.as_bytes()), Ipv4Addr::from_str(&s).ok(), "{s}");
        }
    }

    #[test]
    fn host_kinds() {
        assert!(Host::parse("10.0.0.50").unwrap().is_ip());
        assert!(!Host::parse("pbx.corp.net").unwrap().is_ip());
        assert!(Host::parse("example.com.").is_ok());
        assert!(Host::parse("a..b").is_err());
    }
}
