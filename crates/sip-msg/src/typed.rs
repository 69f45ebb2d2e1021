//! Typed views of the headers a SIP user agent reads (RFC 3261 §20 and extensions).
//! Each parses one header value lazily; `Display` writes it back in canonical form.

use std::borrow::Cow;
use std::fmt;

use crate::error::HeaderError;
use crate::header::{HeaderName, HeaderView, TypedHeader};
use crate::method::Method;
use crate::text::{
    ByteStr, Params, ParamsRef, eq_ic, eq_ic_str, is_token, is_ws, parse_num, plain_header_param,
    quoted_end, split_top, trim_end_fast, trim_fast, trim_start_fast, trim_ws, unquote,
};
use crate::uri::{Host, HostRef, Uri, UriRef, parse_hostport};

/// `[display-name] <uri> *(;param)` or `uri *(;param)` (RFC 3261 §20.10, §25.1 name-addr / addr-spec).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name without quotes, if any.
    pub display: Option<String>,
    /// The URI.
    pub uri: Uri,
    /// Header parameters (`tag`, `expires`, `q`, …).
    pub params: Params,
}

impl NameAddr {
    /// A name-addr with no display name and no parameters.
    pub fn new(uri: impl Into<Uri>) -> Self {
        Self {
            display: None,
            uri: uri.into(),
            params: Params::new(),
        }
    }

    /// The `tag` parameter (From/To).
    pub fn tag(&self) -> Option<String> {
        self.params.value("tag")
    }

    /// Sets the `tag` parameter.
    pub fn with_tag(mut self, tag: &str) -> Self {
        self.params.set("tag", Some(tag));
        self
    }

    /// Reads a name-addr or addr-spec.
    pub fn parse(value: &str) -> Result<Self, HeaderError> {
        NameAddrRef::parse(value).map(NameAddrRef::into_owned)
    }
}

/// A [`NameAddr`] read in place: every part borrowed from the header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddrRef<'a> {
    /// The display name as written (quoted or tokens), if any.
    display_raw: Option<&'a str>,
    /// The URI.
    pub uri: UriRef<'a>,
    /// Header parameters (`tag`, `expires`, `q`, …).
    pub params: ParamsRef<'a>,
}

impl<'a> NameAddrRef<'a> {
    /// Reads a name-addr or addr-spec.
    pub fn parse(value: &'a str) -> Result<Self, HeaderError> {
        let s = trim_ws(value);
        if s.is_empty() {
            return Err(HeaderError::Empty);
        }
        let b = s.as_bytes();
        let (display_raw, after_display) = if b[0] == b'"' {
            let end = quoted_end(b, 0)?;
            (Some(&s[..end]), trim_start_fast(&s[end..]))
        } else {
            match find_top_angle(s)? {
                Some(lt) => {
                    let d = trim_fast(&s[..lt]);
                    // RFC 3261 §25.1: display-name = *(token LWS) / quoted-string
                    if !d.bytes().all(|c| crate::text::is_token_char(c) || is_ws(c)) {
                        return Err(HeaderError::BadDisplayName);
                    }
                    ((!d.is_empty()).then_some(d), &s[lt..])
                }
                None => (None, s),
            }
        };
        if let Some(rest) = after_display.strip_prefix('<') {
            let gt = rest.find_b(b'>').ok_or(HeaderError::UnterminatedAngle)?;
            let uri = UriRef::parse(&rest[..gt])?;
            let params = parse_trailing_params(&rest[gt + 1..])?;
            Ok(Self {
                display_raw,
                uri,
                params,
            })
        } else if display_raw.is_some() {
            // A quoted display name must be followed by <uri>.
            Err(HeaderError::BadDisplayName)
        } else {
            // addr-spec: the URI ends at the first ';' and may not hold ',' '?' ';' (§20.10).
            let (uri_s, params_s) = match after_display.find_b(b';') {
                Some(i) => (&after_display[..i], &after_display[i..]),
                None => (after_display, ""),
            };
            let uri_s = trim_end_fast(uri_s);
            if uri_s.contains('?') || uri_s.contains(',') {
                return Err(HeaderError::Uri(crate::error::UriError::InvalidChar));
            }
            let uri = UriRef::parse(uri_s)?;
            let params = parse_trailing_params(params_s)?;
            Ok(Self {
                display_raw: None,
                uri,
                params,
            })
        }
    }

    /// The display name without quotes, if any (borrowed unless it holds escapes).
    pub fn display(&self) -> Option<Cow<'a, str>> {
        self.display_raw.map(|d| {
            if d.starts_with('"') {
                if d.contains('\\') {
                    Cow::Owned(unquote(d))
                } else {
                    // A quoted string read by `quoted_end`: at least the two quotes.
                    Cow::Borrowed(d.get(1..d.len() - 1).unwrap_or_default())
                }
            } else {
                Cow::Borrowed(d)
            }
        })
    }

    /// The `tag` parameter (From/To).
    pub fn tag(&self) -> Option<Cow<'a, str>> {
        self.params.value("tag")
    }

    /// The owned name-addr.
    pub fn into_owned(self) -> NameAddr {
        NameAddr {
            display: self.display().map(Cow::into_owned),
            uri: self.uri.into_owned(),
            params: self.params.into_owned(),
        }
    }
}

/// False when a From/To (or any header) value cannot hold a `tag` parameter: it lacks the
/// letters `tag` in any case, readable or not. Then its view's `tag()` is `None` whenever the
/// view reads at all, and a caller that treats an unreadable value as one without a tag may
/// skip the parse (the To of nearly every out-of-dialog request).
pub fn may_hold_tag(value: &str) -> bool {
    // Each `t` (either case) found by the vector search, then the two bytes after it: what
    // `windows(3).any(eq_ignore_ascii_case("tag"))` finds, at a fraction of its cost.
    let b = value.as_bytes();
    memchr::memchr2_iter(b't', b'T', b).any(|i| {
        b.get(i + 1..i + 3)
            .is_some_and(|r| r.eq_ignore_ascii_case(b"ag"))
    })
}

/// Finds a `<` outside quotes.
fn find_top_angle(s: &str) -> Result<Option<usize>, HeaderError> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i = quoted_end(b, i)?;
                continue;
            }
            b'<' => return Ok(Some(i)),
            _ => {}
        }
        i += 1;
    }
    Ok(None)
}

/// Reads `*( SEMI param )` after a value; empty input gives no parameters.
fn parse_trailing_params(s: &str) -> Result<ParamsRef<'_>, HeaderError> {
    let s = trim_fast(s);
    if s.is_empty() {
        return Ok(ParamsRef::default());
    }
    let rest = s.strip_prefix(';').ok_or(HeaderError::Trailing)?;
    ParamsRef::parse_header(rest)
}

fn needs_quotes(d: &str) -> bool {
    !d.split(' ').all(is_token)
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl NameAddr {
    /// Writes the name-addr as `Display` prints it into any writer (a `String` directly,
    /// without the formatting machinery for the URI and parameters).
    pub fn write_to<W: fmt::Write>(&self, w: &mut W) -> fmt::Result {
        if let Some(d) = &self.display {
            if needs_quotes(d) {
                write!(w, "\"{}\" ", d.replace('\\', "\\\\").replace('"', "\\\""))?;
            } else {
                write!(w, "{d} ")?;
            }
        }
        w.write_str("<")?;
        self.uri.write_to(w)?;
        w.write_str(">")?;
        self.params.write_to(w)
    }
}

macro_rules! name_addr_header {
    ($(#[$doc:meta])* $ty:ident, $rty:ident, $name:ident, $list:literal) => {
        #[doc = concat!("[`", stringify!($ty), "`] read in place (see [`NameAddrRef`]).")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $rty<'a>(pub NameAddrRef<'a>);

        impl<'a> HeaderView<'a> for $rty<'a> {
            const NAME: HeaderName = HeaderName::$name;
            const LIST: bool = $list;
            fn parse(value: &'a str) -> Result<Self, HeaderError> {
                NameAddrRef::parse(value).map($rty)
            }
        }

        impl<'a> std::ops::Deref for $rty<'a> {
            type Target = NameAddrRef<'a>;
            fn deref(&self) -> &NameAddrRef<'a> {
                &self.0
            }
        }

        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $ty(pub NameAddr);

        impl TypedHeader for $ty {
            const NAME: HeaderName = HeaderName::$name;
            const LIST: bool = $list;
            fn parse(value: &str) -> Result<Self, HeaderError> {
                NameAddr::parse(value).map($ty)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::ops::Deref for $ty {
            type Target = NameAddr;
            fn deref(&self) -> &NameAddr {
                &self.0
            }
        }
    };
}

name_addr_header!(
    /// The `From` header (tag identifies the dialog's local side).
    From, FromRef, From, false
);
name_addr_header!(
    /// The `To` header.
    To, ToRef, To, false
);
name_addr_header!(
    /// One `Route` entry.
    Route, RouteRef, Route, true
);
name_addr_header!(
    /// One `Record-Route` entry.
    RecordRoute, RecordRouteRef, RecordRoute, true
);
name_addr_header!(
    /// One `Service-Route` entry (RFC 3608: the route a registrar's 2xx to a REGISTER gives
    /// for the requests the UA sends outside a dialog).
    ServiceRoute, ServiceRouteRef, ServiceRoute, true
);
name_addr_header!(
    /// The `Refer-To` header (RFC 3515).
    ReferTo, ReferToRef, ReferTo, false
);

/// One `Contact` value: `*` (all bindings, with REGISTER) or an address with `expires`/`q`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact {
    /// `Contact: *`
    Star,
    /// A contact address.
    Addr(NameAddr),
}

impl Contact {
    /// The `expires` parameter in seconds.
    pub fn expires(&self) -> Option<u32> {
        match self {
            Contact::Star => None,
            Contact::Addr(a) => a.params.value("expires").and_then(|v| v.parse().ok()),
        }
    }

    /// The `q` parameter (0.0–1.0).
    pub fn q(&self) -> Option<f32> {
        match self {
            Contact::Star => None,
            Contact::Addr(a) => a.params.value("q").and_then(|v| v.parse().ok()),
        }
    }

    /// The address, unless `*`.
    pub fn addr(&self) -> Option<&NameAddr> {
        match self {
            Contact::Star => None,
            Contact::Addr(a) => Some(a),
        }
    }
}

impl TypedHeader for Contact {
    const NAME: HeaderName = HeaderName::Contact;
    const LIST: bool = true;
    fn parse(value: &str) -> Result<Self, HeaderError> {
        ContactRef::parse(value).map(ContactRef::into_owned)
    }
}

/// A [`Contact`] value read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactRef<'a> {
    /// `Contact: *`
    Star,
    /// A contact address.
    Addr(NameAddrRef<'a>),
}

impl<'a> ContactRef<'a> {
    /// The `expires` parameter in seconds.
    pub fn expires(&self) -> Option<u32> {
        match self {
            ContactRef::Star => None,
            ContactRef::Addr(a) => a.params.get("expires")??.parse().ok(),
        }
    }

    /// The `q` parameter (0.0–1.0).
    pub fn q(&self) -> Option<f32> {
        match self {
            ContactRef::Star => None,
            ContactRef::Addr(a) => a.params.get("q")??.parse().ok(),
        }
    }

    /// The address, unless `*`.
    pub fn addr(&self) -> Option<&NameAddrRef<'a>> {
        match self {
            ContactRef::Star => None,
            ContactRef::Addr(a) => Some(a),
        }
    }

    /// The owned contact.
    pub fn into_owned(self) -> Contact {
        match self {
            ContactRef::Star => Contact::Star,
            ContactRef::Addr(a) => Contact::Addr(a.into_owned()),
        }
    }
}

impl<'a> HeaderView<'a> for ContactRef<'a> {
    const NAME: HeaderName = HeaderName::Contact;
    const LIST: bool = true;
    fn parse(value: &'a str) -> Result<Self, HeaderError> {
        if trim_fast(value) == "*" {
            return Ok(ContactRef::Star);
        }
        let a = NameAddrRef::parse(value)?;
        if let Some(e) = a.params.get("expires") {
            // RFC 3261 §20.10: expires is delta-seconds (at most 2**32-1).
            parse_num(e.unwrap_or(""), u32::MAX.into())?;
        }
        if let Some(q) = a.params.get("q") {
            let q: f32 = q.unwrap_or("").parse().map_err(|_| HeaderError::BadParam)?;
            if !(0.0..=1.0).contains(&q) {
                return Err(HeaderError::BadParam);
            }
        }
        Ok(ContactRef::Addr(a))
    }
}

impl fmt::Display for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Contact::Star => f.write_str("*"),
            Contact::Addr(a) => a.fmt(f),
        }
    }
}

/// One `Via` value (RFC 3261 §20.42): `SIP/2.0/UDP host:port;branch=z9hG4bK…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// The transport token, upper-cased (`UDP`, `TCP`, `TLS`, `WS`, `WSS`, `SCTP`…).
    pub transport: String,
    /// The sent-by host.
    pub host: Host,
    /// The sent-by port.
    pub port: Option<u16>,
    /// Parameters (`branch`, `received`, `rport`, `maddr`, `ttl`).
    pub params: Params,
}

impl Via {
    /// A Via with a branch.
    pub fn new(transport: &str, host: Host, port: Option<u16>, branch: &str) -> Self {
        let mut params = Params::new();
        params.set("branch", Some(branch));
        Self {
            transport: transport.to_ascii_uppercase(),
            host,
            port,
            params,
        }
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<String> {
        self.params.value("branch")
    }

    /// The `received` parameter (RFC 3261 §18.2.1).
    pub fn received(&self) -> Option<String> {
        self.params.value("received")
    }

    /// `rport` (RFC 3581): `None` when absent, `Some(None)` when asked for, `Some(Some(p))` when filled.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|p| p.parse().ok()))
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<String> {
        self.params.value("maddr")
    }

    /// The `ttl` parameter.
    pub fn ttl(&self) -> Option<u8> {
        self.params.value("ttl").and_then(|v| v.parse().ok())
    }
}

impl TypedHeader for Via {
    const NAME: HeaderName = HeaderName::Via;
    const LIST: bool = true;
    fn parse(value: &str) -> Result<Self, HeaderError> {
        ViaRef::parse(value).map(ViaRef::into_owned)
    }
}

/// A [`Via`] value read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViaRef<'a> {
    /// The transport token as written (compare case-insensitively).
    pub transport: &'a str,
    /// The sent-by host.
    pub host: HostRef<'a>,
    /// The sent-by port.
    pub port: Option<u16>,
    /// Parameters (`branch`, `received`, `rport`, `maddr`, `ttl`).
    pub params: ParamsRef<'a>,
}

impl<'a> ViaRef<'a> {
    /// The `branch` parameter.
    pub fn branch(&self) -> Option<Cow<'a, str>> {
        self.params.value("branch")
    }

    /// The `received` parameter (RFC 3261 §18.2.1).
    pub fn received(&self) -> Option<Cow<'a, str>> {
        self.params.value("received")
    }

    /// `rport` (RFC 3581): `None` when absent, `Some(None)` when asked for, `Some(Some(p))` when filled.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|p| p.parse().ok()))
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<Cow<'a, str>> {
        self.params.value("maddr")
    }

    /// The `ttl` parameter.
    pub fn ttl(&self) -> Option<u8> {
        self.params.value("ttl").and_then(|v| v.parse().ok())
    }

    /// The owned Via (transport upper-cased).
    pub fn into_owned(self) -> Via {
        Via {
            transport: self.transport.to_ascii_uppercase(),
            host: self.host.into_owned(),
            port: self.port,
            params: self.params.into_owned(),
        }
    }
}

impl<'a> HeaderView<'a> for ViaRef<'a> {
    const NAME: HeaderName = HeaderName::Via;
    const LIST: bool = true;
    fn parse(value: &'a str) -> Result<Self, HeaderError> {
        // RFC 3261 §25.1: sent-protocol = protocol-name SLASH protocol-version SLASH transport,
        // SLASH = SWS "/" SWS; then LWS sent-by *( SEMI via-params ).
        let (transport, rest) = sent_protocol(value)?;
        let (sent_by, params) = match rest.find_b(b';') {
            Some(i) => (trim_end_fast(&rest[..i]), &rest[i..]),
            None => (trim_end_fast(rest), ""),
        };
        let (host, port) = parse_hostport(sent_by)?;
        let params = parse_trailing_params(params)?;
        if let Some(Some(ttl)) = params.get("ttl") {
            parse_num(ttl, 255)?;
        }
        Ok(Self {
            transport,
            host,
            port,
            params,
        })
    }
}

/// Only the `branch` parameter of a Via value (the top one through [`Headers::view`]): what
/// [`ViaRef::branch`] gives, for a transaction layer that matches on the branch alone.
///
/// The sent-protocol is checked as [`ViaRef`] checks it, but the sent-by host and the other
/// parameters are neither parsed nor checked (a Via whose host is junk still gives its
/// branch); a value with a quoted parameter is read by [`ViaRef`] in full.
///
/// [`Headers::view`]: crate::Headers::view
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViaBranch<'a>(pub Option<Cow<'a, str>>);

impl<'a> HeaderView<'a> for ViaBranch<'a> {
    const NAME: HeaderName = HeaderName::Via;
    const LIST: bool = true;
    fn parse(value: &'a str) -> Result<Self, HeaderError> {
        if crate::find_in_line(value.as_bytes(), b'"').is_some() {
            return ViaRef::parse(value).map(|v| ViaBranch(v.branch()));
        }
        let (_, rest) = sent_protocol(value)?;
        let Some(i) = rest.find_b(b';') else {
            return Ok(ViaBranch(None));
        };
        // `rest[i..]` starts with the `;` found at `i` (one byte).
        let params = rest.get(i + 1..).unwrap_or_default();
        match plain_header_param(params, "branch").flatten() {
            // `branch=` with nothing: the full view rejects it too (never an empty branch,
            // which no transaction could be matched on).
            Some("") => Err(HeaderError::BadParam),
            b => Ok(ViaBranch(b.map(Cow::Borrowed))),
        }
    }
}

/// The sent-protocol of a Via value (RFC 3261 §25.1: `SIP / 2.0 / transport`, `SLASH = SWS
/// "/" SWS`, then LWS): the transport token and the rest after the white space.
fn sent_protocol(value: &str) -> Result<(&str, &str), HeaderError> {
    let rest = match usual_after_version(value) {
        Some(rest) => rest,
        None => after_version(value)?,
    };
    let tend = rest
        .bytes()
        .position(|c| c == b' ' || c == b'\t')
        .ok_or(HeaderError::BadSentProtocol)?;
    let transport = &rest[..tend];
    if !is_token(transport) {
        return Err(HeaderError::BadToken);
    }
    Ok((transport, trim_start_fast(&rest[tend..])))
}

/// [`after_version`] for the usual `SIP/2.0/` (no white space around the slashes), without
/// its two splits; `None` for any other start. The splits would find `SIP` and `2.0` and the
/// rest after the second slash (eight ASCII bytes: a character boundary).
#[inline]
fn usual_after_version(value: &str) -> Option<&str> {
    let b = value.as_bytes();
    (b.len() >= 8 && eq_ic(&b[..4], b"SIP/") && &b[4..8] == b"2.0/")
        .then(|| trim_start_fast(value.get(8..).unwrap_or_default()))
}

/// What follows `SIP / 2.0 /` (and the white space after it) in a sent-protocol.
fn after_version(value: &str) -> Result<&str, HeaderError> {
    let (name, rest) = value
        .split_once_b(b'/')
        .ok_or(HeaderError::BadSentProtocol)?;
    let (version, rest) = rest
        .split_once_b(b'/')
        .ok_or(HeaderError::BadSentProtocol)?;
    if !eq_ic_str(trim_fast(name), "SIP") || trim_fast(version) != "2.0" {
        return Err(HeaderError::BadSentProtocol);
    }
    Ok(trim_start_fast(rest))
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Piece by piece, without the formatting machinery (the registrar and the UA print
        // a Via per request they send).
        f.write_str("SIP/2.0/")?;
        f.write_str(&self.transport)?;
        f.write_str(" ")?;
        self.host.write_to(f)?;
        if let Some(p) = self.port {
            f.write_str(":")?;
            f.write_str(crate::text::decimal(u64::from(p), &mut [0; 20]))?;
        }
        self.params.write_to(f)
    }
}

/// The `CSeq` header: sequence number and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// The sequence number (RFC 3261 §8.1.1.5: below 2**31).
    pub seq: u32,
    /// The method.
    pub method: Method,
}

impl TypedHeader for CSeq {
    const NAME: HeaderName = HeaderName::CSeq;
    const LIST: bool = false;
    fn parse(value: &str) -> Result<Self, HeaderError> {
        // The usual form, `<number> <method>` with one space and no other white space, read
        // without the general split (the same two parts, checked in the same order).
        let blank = |c: u8| c == b' ' || c == b'\t';
        if let Some((n, m)) = value.split_once_b(b' ')
            && !n.is_empty()
            && !m.is_empty()
            && !n.bytes().any(blank)
            && !m.bytes().any(blank)
        {
            let seq = parse_num(n, u32::MAX.into())?;
            let method = Method::parse(m).ok_or(HeaderError::BadToken)?;
            // Checked against u32::MAX just above: the conversion cannot fail.
            return Ok(Self {
                seq: u32::try_from(seq).map_err(|_| HeaderError::BadNumber)?,
                method,
            });
        }
        cseq_any(value)
    }
}

/// Reads a CSeq value in any form (white space of any length between the parts).
fn cseq_any(value: &str) -> Result<CSeq, HeaderError> {
    {
        let mut it = value.split([' ', '\t']).filter(|s| !s.is_empty());
        let seq = parse_num(it.next().ok_or(HeaderError::Empty)?, u32::MAX.into())?;
        let method =
            Method::parse(it.next().ok_or(HeaderError::BadToken)?).ok_or(HeaderError::BadToken)?;
        if it.next().is_some() {
            return Err(HeaderError::Trailing);
        }
        // Checked against u32::MAX just above: the conversion cannot fail.
        Ok(CSeq {
            seq: u32::try_from(seq).map_err(|_| HeaderError::BadNumber)?,
            method,
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Without the formatting machinery (an ACK or CANCEL prints the CSeq it copies).
        f.write_str(crate::text::decimal(u64::from(self.seq), &mut [0; 20]))?;
        f.write_str(" ")?;
        f.write_str(self.method.as_str())
    }
}

/// The `Call-ID` header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallId(pub String);

impl TypedHeader for CallId {
    const NAME: HeaderName = HeaderName::CallId;
    const LIST: bool = false;
    fn parse(value: &str) -> Result<Self, HeaderError> {
        CallIdRef::parse(value).map(|c| Self(c.0.to_owned()))
    }
}

/// The `Call-ID` header read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallIdRef<'a>(pub &'a str);

impl<'a> HeaderView<'a> for CallIdRef<'a> {
    const NAME: HeaderName = HeaderName::CallId;
    const LIST: bool = false;
    fn parse(value: &'a str) -> Result<Self, HeaderError> {
        // RFC 3261 §25.1: callid = word [ "@" word ]
        if value.is_empty() {
            return Err(HeaderError::Empty);
        }
        // No white space or control byte, at most one `@`.
        if !is_word_bytes(value.as_bytes()) {
            return Err(HeaderError::BadToken);
        }
        let b = value.as_bytes();
        if let Some(at) = crate::find_in_line(b, b'@')
            && crate::find_in_line(&b[at + 1..], b'@').is_some()
        {
            return Err(HeaderError::BadToken);
        }
        Ok(Self(value))
    }
}

/// True when no byte of `b` is a control byte, SP or DEL (`c <= 0x20 || c == 0x7f`), eight
/// bytes at a time.
fn is_word_bytes(b: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let mut words = b.chunks_exact(8);
    let mut flags = 0;
    for chunk in words.by_ref() {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let x = u64::from_le_bytes(w);
        // A byte below 0x21 (`x - 0x21` borrows, and its high bit was clear), or a byte
        // equal to 0x7f (zero after the xor): whether any byte is so is exact, even where a
        // borrow flags a byte above a real one.
        let d = x ^ (ONES * 0x7f);
        flags |= (x.wrapping_sub(ONES * 0x21) & !x) | (d.wrapping_sub(ONES) & !d);
    }
    flags & HIGHS == 0 && words.remainder().iter().all(|&c| c > b' ' && c != 0x7f)
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! number_header {
    ($(#[$doc:meta])* $ty:ident, $name:ident, $int:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $ty(pub $int);

        impl TypedHeader for $ty {
            const NAME: HeaderName = HeaderName::$name;
            const LIST: bool = false;
            fn parse(value: &str) -> Result<Self, HeaderError> {
                let n = parse_num(trim_fast(value), <$int>::MAX.into())?;
                // parse_num checked the range: the conversion cannot fail.
                Ok($ty(<$int>::try_from(n).map_err(|_| HeaderError::BadNumber)?))
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

number_header!(
    /// `Max-Forwards` (0–255).
    MaxForwards, MaxForwards, u8
);
number_header!(
    /// `Content-Length` in bytes.
    ContentLength, ContentLength, u32
);
number_header!(
    /// `Expires` in seconds.
    Expires, Expires, u32
);
number_header!(
    /// `Min-Expires` in seconds (sent with 423 Interval Too Brief).
    MinExpires, MinExpires, u32
);
number_header!(
    /// `RSeq` (RFC 3262).
    RSeq, RSeq, u32
);

/// `Content-Type`: `type/subtype *(;param)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    /// `type/subtype`, lower-cased.
    pub media_type: String,
    /// Parameters.
    pub params: Params,
}

impl TypedHeader for ContentType {
    const NAME: HeaderName = HeaderName::ContentType;
    const LIST: bool = false;
    fn parse(value: &str) -> Result<Self, HeaderError> {
        ContentTypeRef::parse(value).map(ContentTypeRef::into_owned)
    }
}

/// A [`ContentType`] read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentTypeRef<'a> {
    /// The type (`application`) as written.
    pub ty: &'a str,
    /// The subtype (`sdp`) as written.
    pub subtype: &'a str,
    /// Parameters.
    pub params: ParamsRef<'a>,
}

impl ContentTypeRef<'_> {
    /// True when the media type is `ty/subtype`, compared case-insensitively.
    pub fn is(&self, ty: &str, subtype: &str) -> bool {
        eq_ic_str(self.ty, ty) && eq_ic_str(self.subtype, subtype)
    }

    /// The owned view (`type/subtype` lower-cased).
    pub fn into_owned(self) -> ContentType {
        ContentType {
            media_type: format!(
                "{}/{}",
                self.ty.to_ascii_lowercase(),
                self.subtype.to_ascii_lowercase()
            ),
            params: self.params.into_owned(),
        }
    }
}

impl<'a> HeaderView<'a> for ContentTypeRef<'a> {
    const NAME: HeaderName = HeaderName::ContentType;
    const LIST: bool = false;
    fn parse(value: &'a str) -> Result<Self, HeaderError> {
        let (mt, params) = match value.find_b(b';') {
            Some(i) => (&value[..i], &value[i..]),
            None => (value, ""),
        };
        let (t, s) = mt.split_once_b(b'/').ok_or(HeaderError::BadToken)?;
        let (t, s) = (trim_fast(t), trim_fast(s));
        if !is_token(t) || !is_token(s) {
            return Err(HeaderError::BadToken);
        }
        Ok(Self {
            ty: t,
            subtype: s,
            params: parse_trailing_params(params)?,
        })
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.media_type, self.params)
    }
}

/// A challenge or credentials header: `Digest realm="x", nonce="y", …` (RFC 3261 §20.27, §20.44).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthParams {
    /// The scheme (`Digest`).
    pub scheme: String,
    /// The auth-params; quoted values keep their quotes (use [`Params::value`] to unquote).
    pub params: Params,
}

impl AuthParams {
    fn parse(value: &str) -> Result<Self, HeaderError> {
        let value = value.trim();
        let (scheme, rest) = match value.find([' ', '\t']) {
            Some(i) => (&value[..i], value[i..].trim_start()),
            None => (value, ""),
        };
        if !is_token(scheme) {
            return Err(HeaderError::BadToken);
        }
        let mut params = Params::new();
        if !rest.is_empty() {
            for p in split_top(rest, b',')? {
                let p = p.trim();
                let (n, v) = p.split_once('=').ok_or(HeaderError::BadParam)?;
                let (n, v) = (n.trim(), v.trim());
                if !is_token(n) || v.is_empty() {
                    return Err(HeaderError::BadParam);
                }
                if v.starts_with('"') && quoted_end(v.as_bytes(), 0)? != v.len() {
                    return Err(HeaderError::Trailing);
                }
                params.set(n, Some(v));
            }
        }
        Ok(Self {
            scheme: scheme.to_owned(),
            params,
        })
    }
}

impl fmt::Display for AuthParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.scheme)?;
        for (i, (n, v)) in self.params.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}{n}={}", v.unwrap_or(""))?;
        }
        Ok(())
    }
}

macro_rules! auth_header {
    ($(#[$doc:meta])* $ty:ident, $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $ty(pub AuthParams);

        impl TypedHeader for $ty {
            const NAME: HeaderName = HeaderName::$name;
            const LIST: bool = false;
            fn parse(value: &str) -> Result<Self, HeaderError> {
                AuthParams::parse(value).map($ty)
            }
        }

        impl std::ops::Deref for $ty {
            type Target = AuthParams;
            fn deref(&self) -> &AuthParams {
                &self.0
            }
        }
    };
}

auth_header!(
    /// `WWW-Authenticate` (a 401 challenge).
    WwwAuthenticate, WwwAuthenticate
);
auth_header!(
    /// `Proxy-Authenticate` (a 407 challenge).
    ProxyAuthenticate, ProxyAuthenticate
);
auth_header!(
    /// `Authorization` (credentials for a 401).
    Authorization, Authorization
);
auth_header!(
    /// `Proxy-Authorization` (credentials for a 407).
    ProxyAuthorization, ProxyAuthorization
);

macro_rules! token_list_header {
    ($(#[$doc:meta])* $ty:ident, $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $ty(pub Vec<String>);

        impl TypedHeader for $ty {
            const NAME: HeaderName = HeaderName::$name;
            const LIST: bool = false;
            fn parse(value: &str) -> Result<Self, HeaderError> {
                let mut out = Vec::new();
                for t in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    if !is_token(t) {
                        return Err(HeaderError::BadToken);
                    }
                    out.push(t.to_owned());
                }
                Ok($ty(out))
            }
        }

        impl $ty {
            /// True when the list holds `token` (case-insensitive).
            pub fn contains(&self, token: &str) -> bool {
                self.0.iter().any(|t| t.eq_ignore_ascii_case(token))
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0.join(", "))
            }
        }
    };
}

token_list_header!(
    /// `Allow`: methods the peer accepts.
    Allow, Allow
);
token_list_header!(
    /// `Supported`: option tags (`100rel`, `timer`, `replaces` …).
    Supported, Supported
);
token_list_header!(
    /// `Require`: option tags the peer insists on.
    Require, Require
);
token_list_header!(
    /// `Unsupported`: option tags the peer refused (with 420).
    Unsupported, Unsupported
);

/// `RAck` (RFC 3262): `rseq cseq method`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RAck {
    /// The RSeq being acknowledged.
    pub rseq: u32,
    /// The CSeq number of the INVITE.
    pub cseq: u32,
    /// The method (INVITE).
    pub method: Method,
}

impl TypedHeader for RAck {
    const NAME: HeaderName = HeaderName::RAck;
    const LIST: bool = false;
    fn parse(value: &str) -> Result<Self, HeaderError> {
        let mut it = value.split([' ', '\t']).filter(|s| !s.is_empty());
        let mut num = || -> Result<u32, HeaderError> {
            let n = parse_num(it.next().ok_or(HeaderError::Empty)?, u32::MAX.into())?;
            u32::try_from(n).map_err(|_| HeaderError::BadNumber)
        };
        let rseq = num()?;
        let cseq = num()?;
        let method =
            Method::parse(it.next().ok_or(HeaderError::BadToken)?).ok_or(HeaderError::BadToken)?;
        if it.next().is_some() {
            return Err(HeaderError::Trailing);
        }
        Ok(Self { rseq, cseq, method })
    }
}

impl fmt::Display for RAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.rseq, self.cseq, self.method)
    }
}

/// `delta-seconds *(;param)`: shared shape of Session-Expires, Min-SE and Retry-After.
fn parse_delta_params(value: &str) -> Result<(u32, Params), HeaderError> {
    let (d, params) = match value.find(';') {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, ""),
    };
    // Retry-After may carry a comment: `120 (I'm in a meeting)`.
    let d = match d.find('(') {
        Some(i) if d.trim_end().ends_with(')') => &d[..i],
        _ => d,
    };
    let n = parse_num(d.trim(), u32::MAX.into())?;
    // parse_num checked the range: the conversion cannot fail.
    Ok((
        u32::try_from(n).map_err(|_| HeaderError::BadNumber)?,
        parse_trailing_params(params)?.into_owned(),
    ))
}

macro_rules! delta_header {
    ($(#[$doc:meta])* $ty:ident, $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $ty {
            /// Seconds.
            pub seconds: u32,
            /// Parameters.
            pub params: Params,
        }

        impl TypedHeader for $ty {
            const NAME: HeaderName = HeaderName::$name;
            const LIST: bool = false;
            fn parse(value: &str) -> Result<Self, HeaderError> {
                let (seconds, params) = parse_delta_params(value)?;
                Ok(Self { seconds, params })
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", self.seconds, self.params)
            }
        }
    };
}

delta_header!(
    /// `Session-Expires` (RFC 4028), with `refresher=uac|uas`.
    SessionExpires, SessionExpires
);
delta_header!(
    /// `Min-SE` (RFC 4028).
    MinSe, MinSe
);
delta_header!(
    /// `Retry-After` (RFC 3261 §20.33).
    RetryAfter, RetryAfter
);

impl SessionExpires {
    /// The `refresher` parameter (`uac` or `uas`).
    pub fn refresher(&self) -> Option<String> {
        self.params.value("refresher")
    }
}

/// One `Reason` value (RFC 3326): `SIP ;cause=200 ;text="Call completed elsewhere"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// `SIP`, `Q.850`, …
    pub protocol: String,
    /// Parameters (`cause`, `text`).
    pub params: Params,
}

impl Reason {
    /// The `cause` parameter.
    pub fn cause(&self) -> Option<u16> {
        self.params.value("cause").and_then(|c| c.parse().ok())
    }

    /// The `text` parameter, unquoted.
    pub fn text(&self) -> Option<String> {
        self.params.value("text")
    }
}

impl TypedHeader for Reason {
    const NAME: HeaderName = HeaderName::Reason;
    const LIST: bool = true;
    fn parse(value: &str) -> Result<Self, HeaderError> {
        let (p, params) = match value.find(';') {
            Some(i) => (value[..i].trim(), &value[i..]),
            None => (value.trim(), ""),
        };
        if !is_token(p) {
            return Err(HeaderError::BadToken);
        }
        Ok(Self {
            protocol: p.to_owned(),
            params: parse_trailing_params(params)?.into_owned(),
        })
    }
}

macro_rules! text_header {
    ($(#[$doc:meta])* $ty:ident, $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $ty(pub String);

        impl TypedHeader for $ty {
            const NAME: HeaderName = HeaderName::$name;
            const LIST: bool = false;
            fn parse(value: &str) -> Result<Self, HeaderError> {
                if value.trim().is_empty() {
                    return Err(HeaderError::Empty);
                }
                Ok($ty(value.to_owned()))
            }
        }
    };
}

text_header!(
    /// `User-Agent`: the product tokens of a client.
    UserAgent, UserAgent
);
text_header!(
    /// `Server`: the product tokens of a server.
    Server, Server
);

/// `Date` (RFC 3261 §20.17): RFC 1123 format, always GMT, e.g. `Sat, 13 Nov 2010 23:29:00 GMT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Date(pub String);

impl TypedHeader for Date {
    const NAME: HeaderName = HeaderName::Date;
    const LIST: bool = false;
    fn parse(value: &str) -> Result<Self, HeaderError> {
        let v = value.trim();
        let parts: Vec<&str> = v.split(' ').collect();
        const DAYS: [&str; 7] = ["Mon,", "Tue,", "Wed,", "Thu,", "Fri,", "Sat,", "Sun,"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let ok = parts.len() == 6
            && DAYS.contains(&parts[0])
            && parts[1].len() == 2
            && parse_num(parts[1], 31).is_ok()
            && MONTHS.contains(&parts[2])
            && parts[3].len() == 4
            && parse_num(parts[3], 9999).is_ok()
            && parts[4].len() == 8
            && parts[4].split(':').count() == 3
            && parts[4]
                .split(':')
                .all(|x| x.len() == 2 && parse_num(x, 60).is_ok())
            && parts[5] == "GMT";
        if ok {
            Ok(Date(v.to_owned()))
        } else {
            Err(HeaderError::BadDate)
        }
    }
}

/// `Replaces` (RFC 3891 §6.1): the dialog an INVITE replaces, named by its Call-ID and tags
/// as the sender of the Replaces sees them: `to-tag` is the tag of the receiver of the INVITE
/// (its local tag), `from-tag` the other party's (RFC 3891 §3).
///
/// ```text
/// Replaces        = "Replaces" HCOLON callid *(SEMI replaces-param)
/// replaces-param  = to-tag / from-tag / early-flag / generic-param
/// to-tag          = "to-tag" EQUAL token
/// from-tag        = "from-tag" EQUAL token
/// early-flag      = "early-only"
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaces {
    /// The Call-ID of the dialog replaced.
    pub call_id: String,
    /// The `to-tag`: the local tag of the receiver of the INVITE.
    pub to_tag: String,
    /// The `from-tag`: the remote tag at the receiver of the INVITE.
    pub from_tag: String,
    /// `early-only`: replace only an early dialog (RFC 3891 §3: a confirmed one gets 486).
    pub early_only: bool,
}

impl TypedHeader for Replaces {
    const NAME: HeaderName = HeaderName::Replaces;
    const LIST: bool = false;
    fn parse(value: &str) -> Result<Self, HeaderError> {
        let (call_id, params) = match value.find(';') {
            Some(i) => (value[..i].trim(), &value[i..]),
            None => (value.trim(), ""),
        };
        // RFC 3261 §25.1: callid = word [ "@" word ]; no white space, no separators.
        if call_id.is_empty() || call_id.bytes().any(|c| is_ws(c) || c == b',') {
            return Err(HeaderError::BadToken);
        }
        let params = parse_trailing_params(params)?;
        let (mut to_tag, mut from_tag, mut early_only) = (None, None, false);
        for (name, v) in params.iter() {
            let slot = if name.eq_ignore_ascii_case("to-tag") {
                &mut to_tag
            } else if name.eq_ignore_ascii_case("from-tag") {
                &mut from_tag
            } else {
                early_only |= name.eq_ignore_ascii_case("early-only");
                continue;
            };
            // §6.1: "exactly one to-tag and exactly one from-tag", each a token.
            let v = v.filter(|v| is_token(v)).ok_or(HeaderError::BadParam)?;
            if slot.replace(v).is_some() {
                return Err(HeaderError::Multiple);
            }
        }
        Ok(Self {
            call_id: call_id.to_owned(),
            to_tag: to_tag
                .ok_or(HeaderError::MissingParam("to-tag"))?
                .to_owned(),
            from_tag: from_tag
                .ok_or(HeaderError::MissingParam("from-tag"))?
                .to_owned(),
            early_only,
        })
    }
}

impl fmt::Display for Replaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{};to-tag={};from-tag={}",
            self.call_id, self.to_tag, self.from_tag
        )?;
        if self.early_only {
            f.write_str(";early-only")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_and_cseq_print_as_the_formatting_machinery_printed_them() {
        // The Display impls as they were written with `write!`.
        fn via_reference(v: &Via) -> String {
            let mut s = format!("SIP/2.0/{} {}", v.transport, v.host);
            if let Some(p) = v.port {
                s.push_str(&format!(":{p}"));
            }
            s.push_str(&format!("{}", v.params));
            s
        }
        for text in [
            "SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK6c2f8a9e1b7d4;rport",
            "SIP/2.0/udp pc33.atlanta.com;branch=z9hG4bK776asdhds",
            "SIP/2.0/TLS [2001:db8::7]:5061;branch=z9hG4bKx;received=10.0.0.1;rport=5061",
            "SIP/2.0/TCP h:0",
            "SIP/2.0/WSS h:65535;branch=\"q;x\";lr",
            "SIP/2.0/SCTP 255.255.255.255",
        ] {
            let v = Via::parse(text).unwrap();
            assert_eq!(v.to_string(), via_reference(&v), "{text}");
            assert_eq!(
                format!("{v:>90}"),
                format!("{:>90}", via_reference(&v)).trim_start()
            );
        }
        for (seq, method) in [
            (0, Method::Invite),
            (1, Method::Ack),
            (99, Method::Bye),
            (100, Method::Register),
            (u32::MAX, Method::parse("FOO").unwrap()),
        ] {
            let c = CSeq { seq, method };
            assert_eq!(c.to_string(), format!("{} {}", c.seq, c.method));
        }
    }

    #[test]
    fn the_cseq_fast_path_reads_what_the_general_reader_reads() {
        let values = [
            "1 INVITE",
            "314159 INVITE",
            "1  INVITE",
            "1\tINVITE",
            " 1 INVITE",
            "1 INVITE ",
            "x INVITE",
            "1 inv@lid",
            "4294967296 ACK",
            "4294967295 ACK",
            "1 FOO",
            "1 INVITE x",
            "1",
            "",
            " ",
            "01 BYE",
            "1 INV ITE",
            "-1 BYE",
            "1 ",
            " BYE",
            "1 \tBYE",
            "1 Ä",
        ];
        for v in values {
            assert_eq!(CSeq::parse(v), cseq_any(v), "{v:?}");
        }
        assert_eq!(
            CSeq::parse("2 REGISTER"),
            Ok(CSeq {
                seq: 2,
                method: Method::Register
            })
        );
    }

    #[test]
    fn name_addr_forms() {
        let a = NameAddr::parse("\"Bob \\\"B\\\"\" <sip:bob@biloxi.com>;tag=a6c85cf").unwrap();
        assert_eq!(a.display.as_deref(), Some("Bob \"B\""));
        assert_eq!(a.tag().as_deref(), Some("a6c85cf"));
        let b = NameAddr::parse("sip:alice@atlanta.com;tag=1928301774").unwrap();
        assert_eq!(b.tag().as_deref(), Some("1928301774"));
        assert!(b.uri.as_sip().unwrap().params.is_empty());
        let c = NameAddr::parse("Alice Smith <sip:alice@atlanta.com> ; tag = 88").unwrap();
        assert_eq!(c.display.as_deref(), Some("Alice Smith"));
        assert_eq!(c.tag().as_deref(), Some("88"));
        assert_eq!(
            NameAddr::parse("Bell, Alexander <sip:a@b>"),
            Err(HeaderError::BadDisplayName)
        );
        assert_eq!(
            NameAddr::parse("\"Bob <sip:b@c>"),
            Err(HeaderError::UnterminatedQuote)
        );
        assert_eq!(
            NameAddr::parse("<sip:b@c"),
            Err(HeaderError::UnterminatedAngle)
        );
        assert!(NameAddr::parse("sip:user@example.com?Route=%3Csip:a%3E").is_err());
    }

    #[test]
    fn via_params() {
        let v = Via::parse(
            "SIP / 2.0 / UDP 192.0.2.1:5060 ; branch=z9hG4bK776;rport;received=10.0.0.1",
        )
        .unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch().as_deref(), Some("z9hG4bK776"));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.received().as_deref(), Some("10.0.0.1"));
        let v6 = Via::parse("SIP/2.0/TCP [2001:db8::9:1];branch=z9hG4bKas3;ttl=16").unwrap();
        assert_eq!(v6.ttl(), Some(16));
        assert_eq!(
            v6.to_string(),
            "SIP/2.0/TCP [2001:db8::9:1];branch=z9hG4bKas3;ttl=16"
        );
        assert!(Via::parse("SIP/3.0/UDP host").is_err());
        assert!(Via::parse("SIP/2.0/UDP host;ttl=300").is_err());
    }

    #[test]
    fn may_hold_tag_finds_what_a_three_byte_window_finds() {
        // Every string of up to 5 bytes over an alphabet of the letters in question (both
        // cases), their near misses and separators, and a few long ones: the vector search
        // must agree with the plain definition everywhere.
        let alphabet: &[u8] = b"tTaAgGs;=<";
        let plain = |v: &str| {
            v.as_bytes()
                .windows(3)
                .any(|w| w.eq_ignore_ascii_case(b"tag"))
        };
        let mut values = vec![String::new()];
        for _ in 0..5 {
            let longer: Vec<String> = values
                .iter()
                .flat_map(|v| alphabet.iter().map(move |&c| format!("{v}{}", c as char)))
                .collect();
            values.extend(longer);
        }
        values.extend(
            [
                "<sip:bob@b.example>;tag=1928301774",
                "<sip:bob@b.example>;TAG=x",
                "<sip:bob@b.example;ta=g>",
                "\"Tag\" <sip:t@a.g>",
                "<sip:bob@b.example:5060;transport=udp>;ta",
            ]
            .map(String::from),
        );
        for v in &values {
            assert_eq!(may_hold_tag(v), plain(v), "{v:?}");
        }
        let long = format!("<sip:{}@h>;x{}", "t".repeat(70), "a".repeat(70));
        assert_eq!(may_hold_tag(&long), plain(&long));
        assert!(may_hold_tag(&format!("{long};tag=1")));
    }

    #[test]
    fn numbers_and_lists() {
        assert_eq!(CSeq::parse("4711 INVITE").unwrap().seq, 4711);
        assert!(CSeq::parse("36893488147419103232 INVITE").is_err());
        assert!(MaxForwards::parse("300").is_err());
        assert_eq!(MaxForwards::parse("70").unwrap().0, 70);
        assert!(ContentLength::parse("-999").is_err());
        assert!(Supported::parse("").unwrap().0.is_empty());
        assert!(Allow::parse("INVITE, ACK,BYE").unwrap().contains("bye"));
        let r = RAck::parse("776656 1 INVITE").unwrap();
        assert_eq!((r.rseq, r.cseq), (776656, 1));
        let se = SessionExpires::parse("1800;refresher=uac").unwrap();
        assert_eq!((se.seconds, se.refresher().as_deref()), (1800, Some("uac")));
        assert_eq!(
            RetryAfter::parse("18000 (meeting);duration=3600")
                .unwrap()
                .seconds,
            18000
        );
        let reason = Reason::parse("Q.850;cause=16;text=\"Terminated\"").unwrap();
        assert_eq!(
            (reason.cause(), reason.text().as_deref()),
            (Some(16), Some("Terminated"))
        );
    }

    #[test]
    fn auth_and_dates() {
        let w = WwwAuthenticate::parse(
            "Digest realm=\"atlanta.com\", qop=\"auth,auth-int\", nonce=\"84a4\", algorithm=MD5",
        )
        .unwrap();
        assert_eq!(w.scheme, "Digest");
        assert_eq!(w.params.value("qop").as_deref(), Some("auth,auth-int"));
        assert_eq!(w.params.value("algorithm").as_deref(), Some("MD5"));
        assert!(WwwAuthenticate::parse("Digest realm=\"x").is_err());
        assert!(Date::parse("Sat, 13 Nov 2010 23:29:00 GMT").is_ok());
        assert!(Date::parse("Fri, 01 Jan 2010 16:00:00 EST").is_err());
        assert!(matches!(Contact::parse("*").unwrap(), Contact::Star));
        let c = Contact::parse("<sip:a@b>;expires=3600;q=0.7").unwrap();
        assert_eq!((c.expires(), c.q()), (Some(3600), Some(0.7)));
        assert!(Contact::parse("<sip:a@b>;expires=280297596632815").is_err());
    }

    /// Where the `SIP/2.0/` shortcut answers, the general splits give the same rest, for
    /// values built from pieces around each place the shortcut looks at: the
    /// protocol name in any case and near misses, white space around the slashes, other
    /// versions, transports (bad tokens too) and what follows (Unicode white space too).
    #[test]
    fn the_usual_sent_protocol_reads_as_the_general_splits_read_it() {
        let names = [
            "SIP",
            "sip",
            "sIp",
            "SIQ",
            " SIP",
            "SIP ",
            "SI",
            "",
            "\u{a0}SIP",
        ];
        let slashes = ["/", " /", "/ ", "\t/\t", "//", ""];
        let versions = ["2.0", "2.00", "20", " 2.0", "2.0 ", "2.0/", "\u{3000}2.0"];
        let transports = ["UDP", "tls", "", " UDP", "U@P", "UDP/", "\u{a0}UDP"];
        let rests = [" h:1;branch=z9hG4bK1", "\th", "  h", "", "\u{a0}h", " "];
        let mut n = 0;
        for name in names {
            for s1 in slashes {
                for version in versions {
                    for s2 in slashes {
                        for transport in transports {
                            for rest in rests {
                                let v = format!("{name}{s1}{version}{s2}{transport}{rest}");
                                if let Some(rest) = usual_after_version(&v) {
                                    assert_eq!(after_version(&v), Ok(rest), "{v:?}");
                                    n += 1;
                                }
                                let _ = sent_protocol(&v);
                            }
                        }
                    }
                }
            }
        }
        assert!(n > 1_000, "{n} values take the shortcut");
    }

    /// A Call-ID is read as the byte loop read it: every byte value at every place of texts
    /// around the word size (for the eight-bytes-at-a-time test), next to printable filler
    /// and next to bytes on both sides of each limit, with zero, one or two `@`.
    #[test]
    fn call_ids_are_checked_as_the_byte_loop_checked_them() {
        fn reference(value: &str) -> Result<CallIdRef<'_>, HeaderError> {
            if value.is_empty() {
                return Err(HeaderError::Empty);
            }
            let (mut bad, mut ats) = (false, 0usize);
            for c in value.bytes() {
                bad |= c <= b' ' || c == 0x7f;
                ats += usize::from(c == b'@');
            }
            if bad || ats > 1 {
                return Err(HeaderError::BadToken);
            }
            Ok(CallIdRef(value))
        }
        for len in 1..=20usize {
            for at in 0..len {
                for filler in [b'a', b'!', 0x7e, 0x22] {
                    for c in 0..=0x7fu8 {
                        let mut b = vec![filler; len];
                        b[at] = c;
                        for extra in [None, Some(0), Some(len - 1)] {
                            let mut b = b.clone();
                            if let Some(e) = extra
                                && e != at
                            {
                                b[e] = b'@';
                            }
                            let v = std::str::from_utf8(&b).unwrap();
                            assert_eq!(CallIdRef::parse(v), reference(v), "{v:?}");
                        }
                    }
                }
            }
        }
        for v in [
            "é@x",
            "a@é",
            "\u{a0}",
            "ab\u{2028}cdefghij",
            "0123456789abcdef@host.example",
        ] {
            assert_eq!(CallIdRef::parse(v), reference(v), "{v:?}");
        }
    }

    #[test]
    fn the_branch_alone_is_what_the_full_via_view_gives() {
        // Every value the full view reads gives the same branch from the branch-only read.
        for v in [
            "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK00000000000000a1",
            "SIP/2.0/UDP 127.0.0.1:5070;rport;branch=z9hG4bK1;received=10.0.0.1",
            "SIP/2.0/TCP h.example;received=1.2.3.4;BRANCH=Upper;branch=second",
            "sip / 2.0 / tls [2001:db8::1]:5061 ; branch = z9hG4bKsp ; rport=5",
            "SIP/2.0/UDP\th:1;branchx=no;xbranch=no;branch=z9hG4bKyes",
            "SIP/2.0/UDP h:1;branch",
            "SIP/2.0/UDP h:1",
            "SIP/2.0/UDP h:1;rport",
            "SIP/2.0/UDP h:1;x=\"a;branch=quoted\";branch=z9hG4bKq",
            "SIP/2.0/UDP h:1;branch=\"z9hG4bK\\\"esc\"",
            "SIP/2.0/UDP h:1;branch=z9hG4bKsp   ",
        ] {
            let full = ViaRef::parse(v).unwrap_or_else(|e| panic!("{v}: {e:?}"));
            assert_eq!(ViaBranch::parse(v), Ok(ViaBranch(full.branch())), "{v}");
        }
        // A sent-protocol the full view rejects is rejected alike.
        for v in [
            "",
            "SIP/2.0",
            "SIP/3.0/UDP h;branch=z9hG4bK1",
            "HTTP/2.0/UDP h;branch=z9hG4bK1",
            "SIP/2.0/UDP;branch=z9hG4bK1",
            "SIP/2.0/U@P h;branch=z9hG4bK1",
            "SIP/2.0/UDP h:1;branch=",
            "SIP/2.0/UDP h:1;branch= ",
        ] {
            let full = ViaRef::parse(v).map(|_| ()).unwrap_err();
            assert_eq!(ViaBranch::parse(v).map(|_| ()), Err(full), "{v:?}");
        }
        // The sent-by host is not read: a junk host still gives the branch.
        let junk = "SIP/2.0/UDP bad host!:99999;branch=z9hG4bKj";
        assert!(ViaRef::parse(junk).is_err());
        assert_eq!(
            ViaBranch::parse(junk),
            Ok(ViaBranch(Some(Cow::Borrowed("z9hG4bKj"))))
        );
        // Through the headers, the top value of the top Via line is read.
        let m = crate::Message::parse(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a:1;branch=z9hG4bKtop, SIP/2.0/UDP b;branch=z9hG4bKnext\r\n\
              Via: SIP/2.0/UDP c;branch=z9hG4bKlast\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        let top = m.headers.view::<ViaBranch>().unwrap().unwrap();
        assert_eq!(top.0.as_deref(), Some("z9hG4bKtop"));
    }

    #[test]
    fn replaces_reads_rfc3891_values_and_refuses_broken_ones() {
        // RFC 3891 §6.1's example.
        let r = Replaces::parse("98732@sip.example.com;from-tag=r33th4x0r;to-tag=ff87ff").unwrap();
        assert_eq!(r.call_id, "98732@sip.example.com");
        assert_eq!(r.to_tag, "ff87ff");
        assert_eq!(r.from_tag, "r33th4x0r");
        assert!(!r.early_only);
        assert_eq!(
            r.to_string(),
            "98732@sip.example.com;to-tag=ff87ff;from-tag=r33th4x0r"
        );
        let r = Replaces::parse(" x ; TO-TAG=a ; From-Tag=b ; early-only ; foo=bar").unwrap();
        assert_eq!(
            (&r.call_id[..], &r.to_tag[..], &r.from_tag[..]),
            ("x", "a", "b")
        );
        assert!(r.early_only);
        assert_eq!(
            Replaces::parse("x;to-tag=a;from-tag=b;early-only")
                .unwrap()
                .to_string(),
            "x;to-tag=a;from-tag=b;early-only"
        );
        assert_eq!(
            Replaces::parse("x;to-tag=a"),
            Err(HeaderError::MissingParam("from-tag"))
        );
        assert_eq!(
            Replaces::parse("x;from-tag=b"),
            Err(HeaderError::MissingParam("to-tag"))
        );
        assert_eq!(
            Replaces::parse("x;to-tag=a;to-tag=c;from-tag=b"),
            Err(HeaderError::Multiple)
        );
        assert_eq!(
            Replaces::parse("x;to-tag;from-tag=b"),
            Err(HeaderError::BadParam)
        );
        assert_eq!(
            Replaces::parse(";to-tag=a;from-tag=b"),
            Err(HeaderError::BadToken)
        );
        assert_eq!(
            Replaces::parse("a b;to-tag=a;from-tag=b"),
            Err(HeaderError::BadToken)
        );
        assert!(Replaces::parse("").is_err());
    }
}
