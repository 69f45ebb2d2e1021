//! Builders for correct requests (RFC 3261 §8.1.1).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::header::{Header, HeaderName, Headers};
use crate::message::{Message, WholeText};
use crate::method::Method;
use crate::typed::{NameAddr, Via};
use crate::uri::Uri;

/// The magic cookie every RFC 3261 branch starts with (§8.1.1.7).
pub const BRANCH_MAGIC: &str = "z9hG4bK";

/// `value.to_string()` written into a string of `capacity` bytes: one allocation for a
/// typical header value instead of one per doubling of an empty string.
pub fn text_of(value: &impl fmt::Display, capacity: usize) -> String {
    use fmt::Write;
    let mut s = String::with_capacity(capacity);
    // Writing into a String never fails; a Display impl that reports an error leaves what it
    // wrote so far (`to_string` would panic instead).
    let _ = write!(s, "{value}");
    s
}

/// Appends `v` as 16 lower-case hex digits (what `format!("{v:016x}")` gives, without the
/// formatting machinery).
pub fn push_hex16(s: &mut String, v: u64) {
    s.push_str(hex16(v, &mut HexText::default()));
}

/// Room for [`hex16`]'s text (on the stack: a tag or cnonce used once needs no `String`).
pub struct HexText(crate::text::Block);

impl fmt::Debug for HexText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HexText").field(&self.0.0).finish()
    }
}

impl Default for HexText {
    fn default() -> Self {
        Self(crate::text::Block([0; 16]))
    }
}

/// `v` as 16 lower-case hex digits written into `out` ([`tag_from`]'s text, without a
/// `String`).
pub fn hex16(v: u64, out: &mut HexText) -> &str {
    let out = &mut out.0;
    // The eight nibbles of `x`, most significant first, one per byte (little-endian word).
    fn spread(x: u32) -> u64 {
        // Bytes of `x` most significant first, then each 16-bit and 8-bit half apart.
        let x = u64::from(x.swap_bytes());
        let x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
        let x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
        // Each byte holds two nibbles: the high one goes first (the lower byte).
        (((x & 0x0F0F_0F0F_0F0F_0F0F) << 8) | ((x >> 4) & 0x0F0F_0F0F_0F0F_0F0F))
            & 0x0F0F_0F0F_0F0F_0F0F
    }
    // Nibbles to `0`–`9` and `a`–`f`: 0x30 + n, and 0x27 more from 10 up (n + 6 carries
    // into bit 4 exactly then; no byte overflows into the next).
    fn ascii(n: u64) -> u64 {
        let letters = ((n + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
        n + 0x3030_3030_3030_3030 + letters * 0x27
    }
    // `v >> 32` and `v as u32` keep the two halves: the casts cut nothing that is used.
    out.0[..8].copy_from_slice(&ascii(spread((v >> 32) as u32)).to_le_bytes());
    out.0[8..].copy_from_slice(&ascii(spread(v as u32)).to_le_bytes());
    // Only ASCII hex digits are written, so this never falls back.
    std::str::from_utf8(&out.0).unwrap_or_default()
}

/// Appends `ip` as its `Display` prints it (IPv4 without the formatting machinery).
pub fn push_ip(s: &mut String, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(a) => {
            // Writing into a String never fails.
            let _ = crate::text::write_ipv4(s, a);
        }
        std::net::IpAddr::V6(a) => {
            let _ = fmt::Write::write_fmt(s, format_args!("{a}"));
        }
    }
}

/// Appends `host` as its `Display` prints it (names and IPv4 without the formatting
/// machinery; IPv6 in brackets).
pub fn push_host(s: &mut String, host: &crate::uri::Host) {
    use crate::uri::{Host, HostRef};
    push_host_ref(
        s,
        &match host {
            Host::Name(n) => HostRef::Name(n),
            Host::V4(a) => HostRef::V4(*a),
            Host::V6(a) => HostRef::V6(*a),
        },
    );
}

/// Appends `host` as its `Display` prints it (see [`push_host`]).
pub fn push_host_ref(s: &mut String, host: &crate::uri::HostRef<'_>) {
    use crate::uri::HostRef;
    match host {
        HostRef::Name(n) => s.push_str(n),
        // Writing into a String never fails.
        HostRef::V4(a) => {
            let _ = crate::text::write_ipv4(s, *a);
        }
        HostRef::V6(a) => {
            let _ = fmt::Write::write_fmt(s, format_args!("[{a}]"));
        }
    }
}

/// [`push_host_ref`] into any writer (a text on the stack). Not what `push_host_ref` calls:
/// a generic function is compiled where it is used, so this one leaves the code of this
/// crate (and the instruction counts of its parser) as they were.
pub fn write_host_ref(w: &mut impl fmt::Write, host: &crate::uri::HostRef<'_>) -> fmt::Result {
    use crate::uri::HostRef;
    match host {
        HostRef::Name(n) => w.write_str(n),
        HostRef::V4(a) => crate::text::write_ipv4(w, *a),
        HostRef::V6(a) => w.write_fmt(format_args!("[{a}]")),
    }
}

/// Appends `n` in decimal (what `n.to_string()` gives, without the formatting machinery).
pub fn push_decimal(s: &mut String, n: u64) {
    s.push_str(crate::text::decimal(n, &mut [0; 20]));
}

/// A branch from 64 random bits supplied by the caller (seeded RNG): `z9hG4bK` + 16 hex digits.
pub fn branch_from(random: u64) -> String {
    let mut s = String::with_capacity(BRANCH_MAGIC.len() + 16);
    s.push_str(BRANCH_MAGIC);
    push_hex16(&mut s, random);
    s
}

/// A tag from 64 random bits supplied by the caller.
pub fn tag_from(random: u64) -> String {
    let mut s = String::with_capacity(16);
    push_hex16(&mut s, random);
    s
}

/// Builds a request with the mandatory headers in the usual order:
/// Via, Max-Forwards, Route, From, To, Call-ID, CSeq, Contact, others, Content-Type/Length.
///
/// The request's parts live in one box, so each builder method (which takes and returns the
/// builder by value) moves a pointer, not the parts (about 1,000 bytes: the request URI and
/// the From, To and Contact name-addrs are inline).
pub struct RequestBuilder {
    parts: Box<Parts>,
}

/// What a [`RequestBuilder`] holds.
#[derive(Debug)]
struct Parts {
    method: Method,
    uri: Uri,
    /// Via values, printed when added: the top one apart (a request nearly always has one
    /// Via, and a list of one would be an allocation of its own).
    via: Option<Addr>,
    /// The Via values under the top one.
    via_more: Vec<Addr>,
    max_forwards: u8,
    routes: Vec<Addr>,
    from: Option<Addr>,
    to: Option<Addr>,
    call_id: Option<Addr>,
    cseq: u32,
    /// Values written in place (`*_with`): one string for all of them, so a request made
    /// from kept texts (a dialog's From, To, Call-ID and route set) needs one allocation,
    /// not one per value. [`Addr::Span`] points into it.
    texts: String,
    contact: Option<NameAddr>,
    extra: Vec<Extra>,
    body: Option<(String, Bytes)>,
}

impl Parts {
    /// The method and the Request-URI, taken out (placeholders left: the parts are emptied
    /// next).
    fn take_line(&mut self) -> (Method, Uri) {
        let empty = Uri::Sip(crate::uri::SipUri::new(crate::uri::Host::Name(
            String::new(),
        )));
        (
            std::mem::replace(&mut self.method, Method::Ack),
            std::mem::replace(&mut self.uri, empty),
        )
    }

    /// Back to what [`RequestBuilder::new`] sets up, but for the method and the Request-URI
    /// (placeholders until the next builder sets them), keeping the room of the lists and of
    /// `texts`.
    fn empty(&mut self) {
        drop(self.take_line());
        // Every field named (no `..`): a field added to `Parts` must be reset here too.
        let Parts {
            method: _,
            uri: _,
            via,
            via_more,
            max_forwards,
            routes,
            from,
            to,
            call_id,
            cseq,
            texts,
            contact,
            extra,
            body,
        } = self;
        *via = None;
        via_more.clear();
        *max_forwards = 70;
        routes.clear();
        *from = None;
        *to = None;
        *call_id = None;
        *cseq = 1;
        texts.clear();
        *contact = None;
        extra.clear();
        *body = None;
    }
}

/// A header added with [`RequestBuilder::header`], [`RequestBuilder::header_line`] or
/// [`RequestBuilder::header_with`] (a value written into the builder's `texts`, no `String`
/// of its own).
#[derive(Debug)]
enum Extra {
    Line(Header),
    Span(HeaderName, usize, usize),
}

impl Extra {
    fn name(&self) -> &HeaderName {
        match self {
            Self::Line(h) => h.name(),
            Self::Span(name, ..) => name,
        }
    }

    /// The value: a span is a range of `texts`, which only grows (made by `write_span`).
    fn value<'a>(&'a self, texts: &'a str) -> &'a str {
        match self {
            Self::Line(h) => h.value(),
            Self::Span(_, start, end) => texts.get(*start..*end).unwrap_or_default(),
        }
    }
}

impl RequestBuilder {
    /// Starts a request; CSeq defaults to 1 and Max-Forwards to 70.
    pub fn new(method: Method, uri: Uri) -> Self {
        let parts = match scratch::PARTS.take() {
            // The thread's last builder's box, emptied when it was built ([`Parts::empty`]):
            // its lists and string keep their room.
            Some(mut kept) => {
                kept.method = method;
                kept.uri = uri;
                kept
            }
            None => Box::new(Parts {
                method,
                uri,
                via: None,
                via_more: Vec::new(),
                max_forwards: 70,
                routes: Vec::new(),
                from: None,
                to: None,
                call_id: None,
                cseq: 1,
                texts: String::new(),
                contact: None,
                extra: Vec::new(),
                body: None,
            }),
        };
        Self { parts }
    }

    /// Adds a Via (the first added is the top one).
    pub fn via(self, via: Via) -> Self {
        self.via_text(text_of(&via, 96))
    }

    /// Adds a Via value already printed (`SIP/2.0/UDP host:port;branch=…`), as a caller that
    /// writes its Via straight into one string does.
    pub fn via_text(mut self, via: String) -> Self {
        self.push_via(Addr::Text(via));
        self
    }

    /// Adds a Via value written in place (see [`RequestBuilder::from_with`]).
    pub fn via_with(mut self, write: impl FnOnce(&mut String)) -> Self {
        let via = self.write_span(write);
        self.push_via(via);
        self
    }

    fn push_via(&mut self, via: Addr) {
        if self.parts.via.is_none() {
            self.parts.via = Some(via);
        } else {
            self.parts.via_more.push(via);
        }
    }

    /// Sets Max-Forwards.
    pub fn max_forwards(mut self, n: u8) -> Self {
        self.parts.max_forwards = n;
        self
    }

    /// Adds a Route entry.
    pub fn route(mut self, route: NameAddr) -> Self {
        self.parts.routes.push(Addr::Parsed(route));
        self
    }

    /// Adds a Route entry already printed (`<sip:p.example;lr>`), as a dialog that printed its
    /// route set once does.
    pub fn route_text(mut self, route: String) -> Self {
        self.parts.routes.push(Addr::Text(route));
        self
    }

    /// Sets From (include the tag).
    pub fn from(mut self, from: NameAddr) -> Self {
        self.parts.from = Some(Addr::Parsed(from));
        self
    }

    /// Sets From to a value already printed (`<sip:a@h>;tag=1`), as a dialog that printed
    /// its URIs once does.
    pub fn from_text(mut self, from: String) -> Self {
        self.parts.from = Some(Addr::Text(from));
        self
    }

    /// Sets To.
    pub fn to(mut self, to: NameAddr) -> Self {
        self.parts.to = Some(Addr::Parsed(to));
        self
    }

    /// Sets To to a value already printed (see [`RequestBuilder::from_text`]).
    pub fn to_text(mut self, to: String) -> Self {
        self.parts.to = Some(Addr::Text(to));
        self
    }

    /// Sets Call-ID.
    pub fn call_id(mut self, call_id: impl Into<String>) -> Self {
        self.parts.call_id = Some(Addr::Text(call_id.into()));
        self
    }

    /// Reserves room for `n` more bytes of values written in place (`*_with`), so that
    /// writing them grows the builder's one string once.
    pub fn reserve_text(mut self, n: usize) -> Self {
        self.parts.texts.reserve(n);
        self
    }

    /// Writes a value into the builder's own string and returns where it lies.
    fn write_span(&mut self, write: impl FnOnce(&mut String)) -> Addr {
        let (start, end) = self.write_range(write);
        Addr::Span(start, end)
    }

    /// Writes a value into the builder's own string and returns its range.
    fn write_range(&mut self, write: impl FnOnce(&mut String)) -> (usize, usize) {
        let start = self.parts.texts.len();
        write(&mut self.parts.texts);
        (start, self.parts.texts.len())
    }

    /// Sets From to the text that `write` appends to the string it is given (the value
    /// only, tag included). Unlike [`RequestBuilder::from_text`] this needs no `String` of
    /// its own: a dialog copies its kept text straight in.
    pub fn from_with(mut self, write: impl FnOnce(&mut String)) -> Self {
        self.parts.from = Some(self.write_span(write));
        self
    }

    /// Sets To, written in place (see [`RequestBuilder::from_with`]).
    pub fn to_with(mut self, write: impl FnOnce(&mut String)) -> Self {
        self.parts.to = Some(self.write_span(write));
        self
    }

    /// Sets Call-ID, written in place (see [`RequestBuilder::from_with`]).
    pub fn call_id_with(mut self, write: impl FnOnce(&mut String)) -> Self {
        self.parts.call_id = Some(self.write_span(write));
        self
    }

    /// Adds a Route entry, written in place (see [`RequestBuilder::from_with`]).
    pub fn route_with(mut self, write: impl FnOnce(&mut String)) -> Self {
        let r = self.write_span(write);
        self.parts.routes.push(r);
        self
    }

    /// Sets the CSeq number (the method is the request's).
    pub fn cseq(mut self, seq: u32) -> Self {
        self.parts.cseq = seq;
        self
    }

    /// Sets Contact.
    pub fn contact(mut self, contact: NameAddr) -> Self {
        self.parts.contact = Some(contact);
        self
    }

    /// Adds any other header.
    pub fn header(mut self, name: impl Into<HeaderName>, value: impl Into<String>) -> Self {
        self.parts.extra.push(Extra::Line(Header::new(name, value)));
        self
    }

    /// Adds any other header, its value written in place (see [`RequestBuilder::from_with`]):
    /// printed as [`RequestBuilder::header`] prints the same value, without a `String` of its
    /// own.
    pub fn header_with(
        mut self,
        name: impl Into<HeaderName>,
        write: impl FnOnce(&mut String),
    ) -> Self {
        let (start, end) = self.write_range(write);
        self.parts.extra.push(Extra::Span(name.into(), start, end));
        self
    }

    /// Adds a header built already ([`Header::from_shared`], [`Header::from_static`]):
    /// printed `Name: value` as [`RequestBuilder::header`] prints its.
    pub fn header_line(mut self, header: Header) -> Self {
        self.parts.extra.push(Extra::Line(header));
        self
    }

    /// Sets the body and its type.
    pub fn body(mut self, content_type: &str, body: impl Into<Bytes>) -> Self {
        self.parts.body = Some((content_type.to_owned(), body.into()));
        self
    }

    /// The request; Content-Length is computed from the body.
    ///
    /// Every header is written into one text buffer that the message's headers share (as a
    /// parsed message's do): one allocation for the header section instead of one per value.
    ///
    /// That text is the whole request as it goes on the wire: the start line, the header
    /// lines, the empty line and the body (when it is UTF-8, as SDP is), so that
    /// [`Message::wire`] sends it without printing it again, and the body is a range of it
    /// too (one copy of it in the request, not two).
    pub fn build(self) -> Message {
        let mut p = self.parts;
        let body = p.body.take();
        let (w, body) = write_head(&p, body, true);
        let HeadWriter {
            mut head,
            start_line,
            lines,
        } = w;
        head.push_str("\r\n");
        let body_at = head.len();
        let whole = match std::str::from_utf8(&body) {
            Ok(text) => {
                head.push_str(text);
                true
            }
            // Printed by `to_bytes` when sent.
            Err(_) => false,
        };
        let mut written = lines.unwrap_or_default();
        let (method, uri) = p.take_line();
        let mut m = Message::new_request(method, uri);
        // The lines are ranges of the text, which they hold once.
        let text: Arc<str> = Arc::from(head.as_str());
        scratch::put(head);
        scratch::keep_parts(p);
        let body = if whole && !body.is_empty() {
            Bytes::from_owner(WholeText(Arc::clone(&text))).slice(body_at..)
        } else {
            body
        };
        // A start line of 4 GiB or more (absurd, but not a panic) is printed from the parts.
        if let Ok(line) = u32::try_from(start_line) {
            m.set_start_text(Arc::clone(&text), line);
        }
        written.attach_head(text);
        m.headers = written;
        m.put_body(body);
        m
    }

    /// The request printed, exactly as `build().to_bytes()` prints it, for a caller that
    /// only sends it (a 2xx's ACK): the start line and the headers are written into one
    /// scratch text, then copied with the body into a buffer of the exact size (a caller may
    /// keep it), with no header list, no shared head text and no `Message` made.
    pub fn build_bytes(self) -> Vec<u8> {
        let mut p = self.parts;
        let body = p.body.take();
        let (w, body) = write_head(&p, body, false);
        let mut out = Vec::with_capacity(w.head.len() + 2 + body.len());
        out.extend_from_slice(w.head.as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&body);
        scratch::put(w.head);
        scratch::keep_parts(p);
        out
    }
}

/// What a request is built with, kept for the thread's next request: the text a head is
/// written into before it is copied out ([`RequestBuilder::build`] into the shared head text,
/// [`RequestBuilder::build_bytes`] into the exact-size bytes), and the builder's box of
/// parts, emptied, with the room of its lists and of its string of values written in place.
/// Allocations (and frees) fewer per request built: the head text, the box, the string and
/// the list of extra headers. Not state of any request: taken, handed back empty (a nested
/// builder finds them taken and makes its own).
pub(crate) mod scratch {
    use std::cell::Cell;

    use super::Parts;

    /// Larger texts are not kept (a rare huge request leaves no lasting footprint).
    const KEEP_AT_MOST: usize = 16 * 1024;

    thread_local! {
        /// The head being written.
        static HEAD: Cell<String> = const { Cell::new(String::new()) };
        /// The last builder's parts, emptied.
        pub(super) static PARTS: Cell<Option<Box<Parts>>> = const { Cell::new(None) };
    }

    /// The kept head text, empty, with room for `room` bytes.
    pub(crate) fn take(room: usize) -> String {
        let mut text = HEAD.take();
        text.reserve(room);
        text
    }

    /// Gives the head text back for the next request.
    pub(crate) fn put(mut text: String) {
        if text.capacity() <= KEEP_AT_MOST {
            text.clear();
            HEAD.set(text);
        }
    }

    /// Keeps a built request's parts, emptied, for the thread's next builder.
    pub(super) fn keep_parts(mut parts: Box<Parts>) {
        if parts.texts.capacity() <= KEEP_AT_MOST {
            parts.empty();
            PARTS.set(Some(parts));
        }
    }
}

/// Writes the start line of `p` and its header lines (its `body` taken out of it), each
/// ended by CRLF, as `Message::to_bytes` prints them, with room left for the empty line and
/// the body; notes each header line's range when `lines` (for [`RequestBuilder::build`];
/// not for [`RequestBuilder::build_bytes`]). Gives the writer and the body.
fn write_head(p: &Parts, body: Option<(String, Bytes)>, lines: bool) -> (HeadWriter, Bytes) {
    let has_body = body.as_ref().is_some_and(|(_, b)| !b.is_empty());
    // Content-Length is always computed, and the body's type replaces another one.
    let skipped = |name: &HeaderName| {
        *name == HeaderName::ContentLength || (has_body && *name == HeaderName::ContentType)
    };
    // The number of lines written below, exactly. The list gets room for one more: a
    // request answered with a challenge is sent again with its credentials added (RFC
    // 3261 §22.2, §22.3), which would otherwise double the list.
    let vias = || p.via.iter().chain(&p.via_more);
    let count = vias().count()
        + 1
        + p.routes.len()
        + [&p.from, &p.to, &p.call_id]
            .iter()
            .filter(|a| a.is_some())
            .count()
        + 1
        + usize::from(p.contact.is_some())
        + p.extra.iter().filter(|h| !skipped(h.name())).count()
        + 1
        + usize::from(has_body);
    let room = 400
        + body.as_ref().map_or(0, |(_, b)| b.len())
        + vias().map(|v| v.len_hint() + 8).sum::<usize>()
        + p.routes.len() * 72
        + p.extra
            .iter()
            .map(|h| h.name().as_str().len() + h.value(&p.texts).len() + 4)
            .sum::<usize>();
    // The start line first (room for it: a guess of 80 bytes; for the empty line and a
    // body, the caller's).
    let mut head = scratch::take(80 + room);
    // `Method SP Request-URI SP SIP-Version`, as a built message's start line prints.
    head.push_str(p.method.as_str());
    head.push(' ');
    // Writing into a String never fails.
    let _ = p.uri.write_to(&mut head);
    head.push_str(" SIP/2.0");
    let start_line = head.len();
    head.push_str("\r\n");
    let mut w = HeadWriter {
        head,
        start_line,
        lines: lines.then(|| Headers::with_capacity(count + 1)),
    };
    for v in vias() {
        w.addr(HeaderName::Via, v, &p.texts);
    }
    w.number(HeaderName::MaxForwards, u64::from(p.max_forwards));
    for r in &p.routes {
        w.addr(HeaderName::Route, r, &p.texts);
    }
    for (name, addr) in [
        (HeaderName::From, &p.from),
        (HeaderName::To, &p.to),
        (HeaderName::CallId, &p.call_id),
    ] {
        if let Some(a) = addr {
            w.addr(name, a, &p.texts);
        }
    }
    // `CSeq: <seq> <method>`, as `CSeq`'s `Display` prints it.
    let at = w.open(&HeaderName::CSeq);
    push_decimal(&mut w.head, u64::from(p.cseq));
    w.head.push(' ');
    w.head.push_str(p.method.as_str());
    w.close(HeaderName::CSeq, at);
    if let Some(c) = &p.contact {
        w.name_addr(HeaderName::Contact, c);
    }
    for h in p.extra.iter().filter(|h| !skipped(h.name())) {
        w.text(h.name().clone(), h.value(&p.texts));
    }
    let body = match body {
        Some((ct, body)) => {
            if !body.is_empty() {
                w.text(HeaderName::ContentType, &ct);
            }
            // usize is at most 64 bits on every target we build for.
            w.number(HeaderName::ContentLength, body.len() as u64);
            body
        }
        None => {
            w.text(HeaderName::ContentLength, "0");
            Bytes::new()
        }
    };
    debug_assert!(
        w.lines.as_ref().is_none_or(|l| l.len() == count),
        "the room made is the room used"
    );
    (w, body)
}

impl fmt::Debug for RequestBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &*self.parts;
        f.debug_struct("RequestBuilder")
            .field("method", &p.method)
            .field("uri", &p.uri)
            .field("via", &p.via)
            .field("via_more", &p.via_more)
            .field("max_forwards", &p.max_forwards)
            .field("routes", &p.routes)
            .field("from", &p.from)
            .field("to", &p.to)
            .field("call_id", &p.call_id)
            .field("texts", &p.texts)
            .field("cseq", &p.cseq)
            .field("contact", &p.contact)
            .field("extra", &p.extra)
            .field("body", &p.body)
            .finish()
    }
}

/// A From, To, Call-ID or Route value: a name-addr, its text already printed, or a range
/// of the builder's `texts` (written in place).
#[derive(Debug)]
enum Addr {
    Parsed(NameAddr),
    Text(String),
    Span(usize, usize),
}

impl Addr {
    /// The printed length, for the room a head is given (a name-addr's is a guess).
    fn len_hint(&self) -> usize {
        match self {
            Self::Parsed(_) => 64,
            Self::Text(t) => t.len(),
            Self::Span(start, end) => end - start,
        }
    }
}

/// The header section of a built request: `Name: value` lines in one string, and where each
/// line and value lies in it.
struct HeadWriter {
    /// The start line, CRLF, then the header lines, each ended by CRLF.
    head: String,
    /// The start line's length (without its CRLF).
    start_line: usize,
    /// The lines written so far, as ranges of `head` (given to them once it is complete);
    /// `None` when only the text is wanted ([`RequestBuilder::build_bytes`]).
    lines: Option<Headers>,
}

impl HeadWriter {
    fn open(&mut self, name: &HeaderName) -> (usize, usize) {
        let start = self.head.len();
        self.head.push_str(name.as_str());
        self.head.push_str(": ");
        (start, self.head.len())
    }

    fn close(&mut self, name: HeaderName, (start, value): (usize, usize)) {
        let end = self.head.len();
        match (
            u32::try_from(start),
            u32::try_from(value),
            u32::try_from(end),
        ) {
            _ if self.lines.is_none() => {}
            (Ok(start), Ok(value), Ok(end)) => {
                if let Some(lines) = &mut self.lines {
                    lines.push_line(name, start, end, (value, end));
                }
            }
            // Past 4 GiB of header text (absurd, but not a panic): a value of its own. The
            // range was cut by this writer at character boundaries.
            _ => {
                let text = self.head.get(value..end).unwrap_or_default().to_owned();
                if let Some(lines) = &mut self.lines {
                    lines.push(Header::new(name, text));
                }
            }
        }
        self.head.push_str("\r\n");
    }

    fn text(&mut self, name: HeaderName, value: &str) {
        let at = self.open(&name);
        self.head.push_str(value);
        self.close(name, at);
    }

    fn addr(&mut self, name: HeaderName, value: &Addr, texts: &str) {
        match value {
            Addr::Parsed(a) => self.name_addr(name, a),
            Addr::Text(t) => self.text(name, t),
            // Spans are made by `write_span` over this same string, which only grows.
            Addr::Span(start, end) => self.text(name, texts.get(*start..*end).unwrap_or_default()),
        }
    }

    fn name_addr(&mut self, name: HeaderName, value: &NameAddr) {
        let at = self.open(&name);
        // Writing into a String never fails.
        let _ = value.write_to(&mut self.head);
        self.close(name, at);
    }

    /// `Name: n` in decimal, as `Display` prints a number (without the formatting
    /// machinery).
    fn number(&mut self, name: HeaderName, n: u64) {
        let at = self.open(&name);
        push_decimal(&mut self.head, n);
        self.close(name, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::typed::{CSeq, MaxForwards};

    #[test]
    fn a_request_printed_at_once_is_the_built_one_printed() {
        // `build_bytes` gives exactly `build().to_bytes()`: every kind of value (typed,
        // text, written in place), skipped and replaced headers, with and without a body,
        // and a Request-URI longer than the room guessed for the start line.
        let long = format!("sip:{}@example.com;transport=tcp", "x".repeat(300));
        for (uri, body, routes) in [
            ("sip:bob@example.com", None, 0),
            ("sip:bob@192.0.2.1:5062", Some(&b"v=0\r\n"[..]), 1),
            (long.as_str(), Some(&b""[..]), 3),
            ("tel:+15551234", Some(&b"x"[..]), 2),
        ] {
            let make = || {
                let mut b = RequestBuilder::new(Method::Ack, Uri::parse(uri).unwrap())
                    .via_with(|s| s.push_str("SIP/2.0/UDP h:5060;branch=z9hG4bKa;rport"))
                    .via_text("SIP/2.0/TCP p.example;branch=z9hG4bKb".into())
                    .from_with(|s| s.push_str("<sip:a@example.com>;tag=1"))
                    .to(NameAddr::new(Uri::parse("sip:bob@example.com").unwrap()))
                    .call_id("c@h")
                    .cseq(7)
                    .max_forwards(69)
                    .contact(NameAddr::new(Uri::parse("sip:a@192.0.2.9:5070").unwrap()))
                    .header("Content-Length", "99")
                    .header(HeaderName::ContentType, "text/old")
                    .header_with("X-In-Place", |s| s.push_str("yes"))
                    .header_line(Header::from_static(HeaderName::Allow, "ACK"));
                for i in 0..routes {
                    b = match i {
                        0 => b.route(NameAddr::new(Uri::parse("sip:p0.example;lr").unwrap())),
                        1 => b.route_text("<sip:p1.example;lr>".into()),
                        _ => b.route_with(|s| s.push_str("<sip:p2.example;lr>")),
                    };
                }
                if let Some(body) = body {
                    b = b.body("application/sdp", Bytes::copy_from_slice(body));
                }
                b
            };
            let built = make().build().to_bytes();
            assert_eq!(
                String::from_utf8(make().build_bytes()).unwrap(),
                String::from_utf8(built).unwrap(),
                "{uri}"
            );
        }
    }

    #[test]
    fn a_built_request_is_sent_as_its_one_text_until_it_is_edited() {
        // `wire` gives what `to_bytes` prints. For a request as built, the very text its
        // header lines (and its body) are ranges of; for one edited since, a new print.
        let sdp: &[u8] = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n";
        let make = |body: Option<&[u8]>| {
            let b = RequestBuilder::new(Method::Invite, Uri::parse("sip:b@example.com").unwrap())
                .via_text("SIP/2.0/UDP h:5060;branch=z9hG4bKw".into())
                .from_with(|s| s.push_str("<sip:a@example.com>;tag=1"))
                .to_with(|s| s.push_str("<sip:b@example.com>"))
                .call_id("w@h")
                .cseq(3);
            match body {
                Some(body) => b.body("application/sdp", Bytes::copy_from_slice(body)),
                None => b,
            }
        };
        let in_text = |m: &Message, p: *const u8| {
            let (text, ..) = m.headers.one_block().expect("lines of one text");
            text.as_bytes().as_ptr_range().contains(&p)
        };
        let not_utf8: &[u8] = b"\xff\xfe not UTF-8";
        for (body, shared) in [(None, true), (Some(sdp), true), (Some(&b""[..]), true)] {
            let m = make(body).build();
            let wire = m.wire();
            assert_eq!(&wire[..], &m.to_bytes()[..], "{body:?}");
            assert_eq!(in_text(&m, wire.as_ptr()), shared, "{body:?}");
            if let Some(b) = body.filter(|b| !b.is_empty()) {
                assert_eq!(&m.body()[..], b);
                assert!(
                    in_text(&m, m.body().as_ptr()),
                    "the body is a range of the text"
                );
            }
        }
        // A body that is not UTF-8 is not part of the text: printed when sent.
        let m = make(Some(not_utf8)).build();
        let wire = m.wire();
        assert_eq!(&wire[..], &m.to_bytes()[..]);
        assert!(wire.ends_with(not_utf8));
        assert!(!in_text(&m, wire.as_ptr()));
        // Every edit is sent as edited.
        type Edit = fn(&mut Message);
        let edits: [(&str, Edit); 7] = [
            ("push", |m| m.headers.push(Header::new("X-Late", "1"))),
            ("remove last", |m| {
                m.headers.remove(&HeaderName::ContentLength)
            }),
            ("remove first", |m| {
                drop(m.headers.remove_first(&HeaderName::Via))
            }),
            ("set", |m| {
                m.headers.set(Header::new(HeaderName::CallId, "x@h"))
            }),
            ("uri", |m| {
                m.set_request_uri(Uri::parse("sip:c@example.com").unwrap());
            }),
            ("take body", |m| drop(m.take_body())),
            ("set body", |m| {
                m.set_body("application/sdp", &b"v=1\r\n"[..])
            }),
        ];
        // Every header as read: name, value, received bytes.
        let reading = |m: &Message| -> Vec<(String, String, Option<Vec<u8>>)> {
            (m.headers.iter())
                .map(|h| {
                    (
                        h.name().to_string(),
                        h.value().to_owned(),
                        h.raw().map(<[u8]>::to_vec),
                    )
                })
                .collect()
        };
        for (what, edit) in edits {
            let mut m = make(Some(sdp)).build();
            let before = m.to_bytes();
            edit(&mut m);
            let wire = m.wire();
            assert_ne!(&wire[..], &before[..], "{what}");
            assert_eq!(&wire[..], &m.to_bytes()[..], "{what}");
            // `wire_whole` sends it made whole.
            let mut w = m.clone();
            let sent = w.wire_whole();
            assert_eq!(&sent[..], &wire[..], "{what}");
            assert!(
                in_text(&w, sent.as_ptr()),
                "{what}: sent as the text, no copy"
            );
            // Made whole, it prints and reads the same, and is sent as its one text.
            let (headers, body) = (reading(&m), m.body().clone());
            let uri = m.request_uri().map(std::borrow::Cow::into_owned);
            m.make_whole();
            assert_eq!(&m.to_bytes()[..], &wire[..], "{what}");
            let sent = m.wire();
            assert_eq!(&sent[..], &wire[..], "{what}");
            assert!(
                in_text(&m, sent.as_ptr()),
                "{what}: sent as the text, no copy"
            );
            // Headers added after the build become lines of the text, as built ones are
            // (their received bytes: the line printed); the others read as before.
            let printed_line = |(n, v, raw): (String, String, Option<Vec<u8>>)| {
                let line = raw.unwrap_or_else(|| format!("{n}: {v}").into_bytes());
                (n, v, Some(line))
            };
            let headers: Vec<_> = headers.into_iter().map(printed_line).collect();
            assert_eq!(reading(&m), headers, "{what}");
            assert_eq!(m.body(), &body, "{what}");
            assert_eq!(
                m.request_uri().map(std::borrow::Cow::into_owned),
                uri,
                "{what}"
            );
            if !m.body().is_empty() {
                assert!(
                    in_text(&m, m.body().as_ptr()),
                    "{what}: the body is a range of it"
                );
            }
            // Edited again, it prints as edited (and can be made whole again).
            m.headers.set(Header::new(HeaderName::CallId, "again@h"));
            let edited = m.wire();
            assert_eq!(&edited[..], &m.to_bytes()[..], "{what}");
            m.make_whole();
            assert_eq!(&m.wire()[..], &edited[..], "{what}");
            assert_eq!(
                m.headers.value(&HeaderName::CallId),
                Some("again@h"),
                "{what}"
            );
        }
        // A parsed message prints as received, and made whole (after an edit) likewise.
        let raw = make(Some(sdp)).build().to_bytes();
        let parsed = Message::parse(&raw).unwrap();
        assert_eq!(&parsed.wire()[..], &raw[..]);
        let mut edited = parsed.clone();
        edited
            .headers
            .set(Header::new(HeaderName::CSeq, "4 INVITE"));
        let printed = edited.to_bytes();
        edited.make_whole();
        assert_eq!(&edited.wire()[..], &printed[..]);
        assert!(in_text(&edited, edited.wire().as_ptr()));
        // A folded value stays as it is (no range of a new text can give it): printed.
        let folded = b"OPTIONS sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKf\r\nSubject: a\r\n  b\r\nCall-ID: f@h\r\nCSeq: 1 OPTIONS\r\n\r\n";
        let mut m = Message::parse(folded).unwrap();
        m.headers.set(Header::new(HeaderName::CallId, "g@h"));
        let printed = m.to_bytes();
        m.make_whole();
        assert_eq!(&m.wire()[..], &printed[..]);
        assert_eq!(
            m.headers.value(&HeaderName::from_name("Subject")),
            Some("a b")
        );
        // A body that is not UTF-8 stays apart from the text, printed when sent.
        let mut m = make(Some(not_utf8)).build();
        m.headers.set(Header::new(HeaderName::CallId, "n@h"));
        let printed = m.to_bytes();
        m.make_whole();
        assert_eq!(&m.wire()[..], &printed[..]);
    }

    #[test]
    fn a_builder_after_another_starts_as_a_fresh_one() {
        // The thread keeps a built request's parts, emptied, for its next builder: nothing
        // of the last request (Vias, Max-Forwards, routes, From/To/Call-ID, CSeq, Contact,
        // extra headers, body, texts written in place) shows in the next one.
        let minimal = || {
            let b = RequestBuilder::new(Method::Bye, Uri::parse("sip:b@example.com").unwrap())
                .call_id("m@h");
            (b.build().to_bytes(), {
                let b = RequestBuilder::new(Method::Bye, Uri::parse("sip:b@example.com").unwrap());
                b.call_id("m@h").build_bytes()
            })
        };
        // A new thread's first builder is a fresh one.
        let fresh = std::thread::spawn(minimal).join().unwrap();
        assert_eq!(fresh.0, fresh.1);
        let full = || {
            RequestBuilder::new(Method::Invite, Uri::parse("sip:x@example.org").unwrap())
                .via_with(|s| s.push_str("SIP/2.0/UDP h:5060;branch=z9hG4bKa"))
                .via_text("SIP/2.0/UDP p:5060;branch=z9hG4bKb".into())
                .max_forwards(9)
                .route_with(|s| s.push_str("<sip:p.example;lr>"))
                .from_with(|s| s.push_str("<sip:a@example.org>;tag=9"))
                .to_with(|s| s.push_str("<sip:x@example.org>"))
                .call_id("full@h")
                .cseq(99)
                .contact(NameAddr::new(Uri::parse("sip:a@192.0.2.9").unwrap()))
                .header_with("X-Old", |s| s.push_str("old"))
                .header_line(Header::from_static(HeaderName::Allow, "INVITE"))
                .body("application/sdp", Bytes::from_static(b"v=0\r\n"))
        };
        let _ = full().build();
        assert_eq!(minimal(), fresh);
        let _ = full().build_bytes();
        assert_eq!(minimal(), fresh);
        // A builder dropped unbuilt leaves nothing either.
        drop(full());
        assert_eq!(minimal(), fresh);
    }

    #[test]
    fn heads_written_in_the_kept_scratch_text_print_as_the_first_one() {
        // The scratch text a head is written in is kept between requests (and dropped when
        // it grew past its bound): whatever was built before, the same builder gives the same
        // bytes, by `build` and by `build_bytes`, and the built head reads as its own.
        let make = |extra: usize| {
            RequestBuilder::new(Method::Options, Uri::parse("sip:b@example.com").unwrap())
                .via_text("SIP/2.0/UDP h:5060;branch=z9hG4bKs".into())
                .from_with(|s| s.push_str("<sip:a@example.com>;tag=1"))
                .to_with(|s| s.push_str("<sip:b@example.com>"))
                .call_id("s@h")
                .cseq(1)
                .header_with("X-Pad", |s| s.push_str(&"p".repeat(extra)))
        };
        let first = make(10).build().to_bytes();
        for extra in [10, 20_000, 10, 3_000, 0, 10] {
            let built = make(extra).build();
            let again = make(extra).build_bytes();
            assert_eq!(built.to_bytes(), again, "{extra}");
            assert_eq!(built.headers.value(&HeaderName::CallId), Some("s@h"));
            assert_eq!(
                built
                    .headers
                    .value(&HeaderName::from("X-Pad"))
                    .map(str::len),
                Some(extra)
            );
            if extra == 10 {
                assert_eq!(make(extra).build().to_bytes(), first);
            }
        }
    }

    #[test]
    fn values_written_in_place_print_as_owned_values_do() {
        // `header_with` and `header_line(from_static)` print exactly what `header` prints,
        // in the order added, among other values written in place; a second Via goes under
        // the first.
        let uri = Uri::parse("sip:x@example.com").unwrap();
        let base = || {
            RequestBuilder::new(Method::Register, uri.clone())
                .via_text("SIP/2.0/UDP a.example:5060;branch=z9hG4bK1".into())
                .via_text("SIP/2.0/UDP b.example;branch=z9hG4bK2".into())
                .from_with(|s| s.push_str("<sip:x@example.com>;tag=1"))
                .call_id_with(|s| s.push_str("c@h"))
        };
        let owned = base()
            .header(HeaderName::Contact, "<sip:x@1.2.3.4:5060>")
            .header(HeaderName::Expires, "3600")
            .header(HeaderName::Allow, "INVITE, ACK")
            .header("X-Empty", "")
            .build();
        let in_place = base()
            .header_with(HeaderName::Contact, |s| s.push_str("<sip:x@1.2.3.4:5060>"))
            .header_with(HeaderName::Expires, |s| push_decimal(s, 3600))
            .header_line(Header::from_static(HeaderName::Allow, "INVITE, ACK"))
            .header_with("X-Empty", |_| {})
            .build();
        assert_eq!(
            String::from_utf8(in_place.to_bytes()).unwrap(),
            String::from_utf8(owned.to_bytes()).unwrap()
        );
        let text = String::from_utf8(in_place.to_bytes()).unwrap();
        assert!(text.starts_with(
            "REGISTER sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP a.example:5060;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP b.example;branch=z9hG4bK2\r\n"
        ), "{text}");
        assert_eq!(
            in_place
                .headers
                .get(&HeaderName::Expires)
                .map(|h| h.value()),
            Some("3600")
        );
    }

    #[test]
    fn numbers_are_printed_as_display_prints_them() {
        // Max-Forwards, CSeq and Content-Length are written without the formatting
        // machinery: the same text as the typed headers' `Display`, at the edges too.
        let uri = Uri::parse("sip:x@example.com").unwrap();
        for (mf, seq, method, body) in [
            (0u8, 0u32, Method::Options, 0usize),
            (70, 1, Method::Invite, 1),
            (255, u32::MAX, Method::parse("FOO-BAR").unwrap(), 1234),
            (9, 10, Method::Register, 99),
        ] {
            let mut b = RequestBuilder::new(method.clone(), uri.clone())
                .max_forwards(mf)
                .cseq(seq);
            if body > 0 {
                b = b.body("text/plain", vec![b'x'; body]);
            }
            let m = b.build();
            let text = String::from_utf8(m.to_bytes()).unwrap();
            let want_cseq = CSeq { seq, method }.to_string();
            assert!(
                text.contains(&format!("\r\nCSeq: {want_cseq}\r\n")),
                "{text}"
            );
            let want_mf = MaxForwards(mf).to_string();
            assert!(
                text.contains(&format!("\r\nMax-Forwards: {want_mf}\r\n")),
                "{text}"
            );
            assert!(
                text.contains(&format!("\r\nContent-Length: {body}\r\n")),
                "{text}"
            );
            // And they read back as built.
            let again = Message::parse(text.as_bytes()).unwrap();
            assert_eq!(again.cseq().map(|c| c.seq), Some(seq));
            assert_eq!(again.body().len(), body);
        }
    }
    use crate::uri::{Host, SipUri};

    #[test]
    fn a_host_written_anywhere_prints_as_pushed_into_a_string() {
        /// A writer that is not a `String`, giving up past `room` bytes.
        struct Small {
            text: Vec<u8>,
            room: usize,
        }
        impl fmt::Write for Small {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                if self.text.len() + s.len() > self.room {
                    return Err(fmt::Error);
                }
                self.text.extend_from_slice(s.as_bytes());
                Ok(())
            }
        }
        let v4 = (0..=255u8).flat_map(|o| {
            [
                format!("{o}.0.0.0"),
                format!("1.{o}.2.3"),
                format!("255.255.{o}.255"),
                format!("10.0.0.{o}"),
            ]
        });
        let others = [
            "h",
            "PC33.Atlanta.example",
            "[2001:DB8::1]",
            "[::1]",
            "[::ffff:192.0.2.1]",
        ];
        for text in v4.chain(others.iter().map(|s| (*s).to_owned())) {
            let host = crate::uri::HostRef::parse(&text).unwrap();
            let mut pushed = String::from("x");
            push_host_ref(&mut pushed, &host);
            let mut written = String::from("x");
            write_host_ref(&mut written, &host).unwrap();
            assert_eq!(written, pushed);
            let mut small = Small {
                text: b"x".to_vec(),
                room: 64,
            };
            write_host_ref(&mut small, &host).unwrap();
            assert_eq!(small.text, pushed.as_bytes());
            // A writer that gives up: the error comes back.
            let mut full = Small {
                text: Vec::new(),
                room: 0,
            };
            assert!(write_host_ref(&mut full, &host).is_err());
        }
    }

    #[test]
    fn table_and_word_printing_matches_the_formatting_machinery() {
        // Every number up to 100,000 (the table below 100, the pairs above), the ends, and
        // each power of ten and its neighbours (an odd or even count of digits).
        let powers = (0..20).flat_map(|k| {
            let p = 10u64.pow(k);
            [p - 1, p, p + 1]
        });
        for v in (0..100_000u64)
            .chain([u64::MAX, u64::MAX - 1, 1 << 63])
            .chain(powers)
        {
            let mut s = String::from("x");
            push_decimal(&mut s, v);
            assert_eq!(s, format!("x{v}"));
        }
        // Every nibble value in every place, and a spread of patterns.
        let mut patterns = vec![0, u64::MAX, 0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210];
        for place in 0..16 {
            for nibble in 0..16u64 {
                patterns.push(nibble << (4 * place));
                patterns.push(!(nibble << (4 * place)));
            }
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            patterns.push(x);
        }
        for v in patterns {
            let mut s = String::from("x");
            push_hex16(&mut s, v);
            assert_eq!(s, format!("x{v:016x}"));
        }
        // Every octet in every place of an address.
        for o in 0..=255u8 {
            for a in [
                [o, 0, 0, 0],
                [0, o, 0, 0],
                [0, 0, o, 0],
                [0, 0, 0, o],
                [o, o, o, o],
                [255, o, 9, 100],
            ] {
                let ip = std::net::Ipv4Addr::from(a);
                let mut s = String::from("x");
                push_ip(&mut s, ip.into());
                assert_eq!(s, format!("x{ip}"));
            }
        }
    }

    #[test]
    fn digits_are_written_as_format_writes_them() {
        for v in [
            0,
            1,
            9,
            10,
            255,
            5060,
            65_535,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut s = String::new();
            push_decimal(&mut s, v);
            assert_eq!(s, v.to_string());
            let mut s = String::from("x");
            push_hex16(&mut s, v);
            assert_eq!(s, format!("x{v:016x}"));
            assert_eq!(hex16(v, &mut HexText::default()), tag_from(v));
        }
        assert_eq!(branch_from(0xabc), format!("{BRANCH_MAGIC}{:016x}", 0xabc));
        assert_eq!(tag_from(u64::MAX), "ffffffffffffffff");
        for a in ["example.COM", "[::1]", "[2001:db8::7]", "a-b.c"] {
            let host = Host::parse(a).unwrap();
            let mut s = String::new();
            push_host(&mut s, &host);
            assert_eq!(s, host.to_string());
        }
        for a in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "1.22.133.9",
        ] {
            let host = Host::parse(a).unwrap();
            assert_eq!(host.to_string(), a);
            let mut s = String::from("x");
            push_host(&mut s, &host);
            assert_eq!(s, format!("x{host}"));
            let uri = SipUri::new(host).with_user("u").with_port(5060);
            assert_eq!(uri.to_string(), format!("sip:u@{a}:5060"));
        }
    }

    #[test]
    fn builds_a_valid_invite() {
        let bob = SipUri::new(Host::parse("biloxi.com").unwrap()).with_user("bob");
        let alice = SipUri::new(Host::parse("atlanta.com").unwrap()).with_user("alice");
        let mut m = RequestBuilder::new(Method::Invite, bob.clone().into())
            .via(Via::new(
                "udp",
                Host::parse("192.0.2.1").unwrap(),
                Some(5060),
                &branch_from(0xabc),
            ))
            .from(NameAddr::new(alice.clone()).with_tag(&tag_from(7)))
            .to(NameAddr::new(bob))
            .call_id("c1@192.0.2.1")
            .cseq(2)
            .contact(NameAddr::new(alice))
            .header("User-Agent", "sipmeter")
            .body("application/sdp", "v=0\r\n")
            .build();
        let bytes = m.to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with("INVITE sip:bob@biloxi.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK0000000000000abc\r\n"));
        assert!(text.contains("Content-Length: 5\r\n"));
        m.validate().unwrap();
        let mut again = Message::parse(&bytes).unwrap();
        assert!(again.validate().unwrap().is_empty());
        assert_eq!(
            again.cseq().unwrap(),
            CSeq {
                seq: 2,
                method: Method::Invite
            }
        );
        assert_eq!(again.body().as_ref(), b"v=0\r\n");
    }

    #[test]
    fn printed_from_to_and_route_give_the_same_request() {
        // A dialog prints its name-addrs itself: the request is the one built from them.
        let bob = SipUri::new(Host::parse("biloxi.com").unwrap()).with_user("bob");
        let mut alice = NameAddr::new(
            SipUri::new(Host::parse("192.0.2.7").unwrap())
                .with_user("alice")
                .with_port(5062)
                .with_param("transport", Some("tcp")),
        )
        .with_tag("a1");
        alice.display = Some("Alice \"A\"".to_owned());
        let to = NameAddr::new(bob.clone()).with_tag("b2");
        let route = NameAddr::new(
            SipUri::new(Host::parse("192.0.2.9").unwrap())
                .with_port(5060)
                .with_param("lr", None),
        );
        let build = |b: RequestBuilder| b.call_id("c").cseq(3).build().to_bytes();
        let parsed = build(
            RequestBuilder::new(Method::Bye, bob.clone().into())
                .via_text("SIP/2.0/UDP h:1;branch=z9hG4bK1".to_owned())
                .route(route.clone())
                .from(alice.clone())
                .to(to.clone()),
        );
        let printed = build(
            RequestBuilder::new(Method::Bye, bob.into())
                .via_text("SIP/2.0/UDP h:1;branch=z9hG4bK1".to_owned())
                .route_text(text_of(&route, 16))
                .from_text(text_of(&alice, 16))
                .to_text(text_of(&to, 16)),
        );
        assert_eq!(
            String::from_utf8(printed).unwrap(),
            String::from_utf8(parsed).unwrap()
        );
    }

    #[test]
    fn values_written_in_place_give_the_same_request_as_owned_texts() {
        // A dialog copies its kept From, To, Call-ID and route set into the builder's one
        // string: the request is byte for byte the one built from owned texts, in any
        // order of the calls, mixed with owned and parsed values, and with no values.
        let uri: Uri = Uri::parse("sip:bob@192.0.2.4:5070;transport=tcp").unwrap();
        let via = "SIP/2.0/UDP h:1;branch=z9hG4bK1";
        let (from, to, call_id) = ("\"A\" <sip:a@x>;tag=1", "<sip:b@y>;tag=2", "c9@h");
        let (r1, r2) = ("<sip:192.0.2.9;lr>", "<sip:p2.example;lr;ftag=1>");
        let owned = RequestBuilder::new(Method::Bye, uri.clone())
            .via_text(via.to_owned())
            .route_text(r1.to_owned())
            .route_text(r2.to_owned())
            .from_text(from.to_owned())
            .to_text(to.to_owned())
            .call_id(call_id)
            .cseq(4)
            .build()
            .to_bytes();
        let in_place = RequestBuilder::new(Method::Bye, uri.clone())
            .reserve_text(8)
            .via_text(via.to_owned())
            .call_id_with(|s| s.push_str(call_id))
            .to_with(|s| s.push_str(to))
            .route_with(|s| s.push_str(r1))
            .from_with(|s| {
                s.push_str("\"A\" <sip:a@x>");
                s.push_str(";tag=1");
            })
            .route_with(|s| s.push_str(r2))
            .cseq(4)
            .build();
        assert_eq!(
            String::from_utf8(in_place.to_bytes()).unwrap(),
            String::from_utf8(owned.clone()).unwrap()
        );
        assert_eq!(in_place.headers.value(&HeaderName::CallId), Some(call_id));
        assert_eq!(in_place.headers.value(&HeaderName::From), Some(from));
        let routes: Vec<_> = in_place
            .headers
            .get_all(&HeaderName::Route)
            .map(|h| h.value().to_owned())
            .collect();
        assert_eq!(routes, [r1, r2]);
        // Mixed: a parsed route, then one written in place, then an owned To.
        let mixed = RequestBuilder::new(Method::Bye, uri.clone())
            .via_text(via.to_owned())
            .route(NameAddr::parse(r1).unwrap())
            .route_with(|s| s.push_str(r2))
            .from_with(|s| s.push_str(from))
            .to_text(to.to_owned())
            .call_id_with(|s| s.push_str(call_id))
            .cseq(4)
            .build()
            .to_bytes();
        assert_eq!(
            String::from_utf8(mixed).unwrap(),
            String::from_utf8(owned).unwrap()
        );
        // An empty value written in place is an empty header value, as an empty text is.
        let empty = |b: RequestBuilder| String::from_utf8(b.cseq(1).build().to_bytes()).unwrap();
        assert_eq!(
            empty(RequestBuilder::new(Method::Bye, uri.clone()).call_id_with(|_| {})),
            empty(RequestBuilder::new(Method::Bye, uri).call_id(""))
        );
    }

    #[test]
    fn built_headers_share_one_buffer_and_print_canonically() {
        let bob = SipUri::new(Host::parse("biloxi.com").unwrap()).with_user("bob");
        let proxy = SipUri::new(Host::parse("p.example").unwrap());
        let mut m = RequestBuilder::new(Method::Invite, bob.clone().into())
            .via_text("SIP/2.0/TCP h:1;branch=z9hG4bK1".to_owned())
            .max_forwards(69)
            .route(NameAddr::new(proxy))
            .from(NameAddr::new(bob.clone()).with_tag("a"))
            .to(NameAddr::new(bob))
            .call_id("c")
            .cseq(7)
            .header("Content-Length", "99")
            .header("X-Any", "v")
            .body("application/sdp", "v=0\r\n")
            .build();
        let expected = "INVITE sip:bob@biloxi.com SIP/2.0\r\n\
            Via: SIP/2.0/TCP h:1;branch=z9hG4bK1\r\nMax-Forwards: 69\r\n\
            Route: <sip:p.example>\r\nFrom: <sip:bob@biloxi.com>;tag=a\r\n\
            To: <sip:bob@biloxi.com>\r\nCall-ID: c\r\nCSeq: 7 INVITE\r\nX-Any: v\r\n\
            Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n";
        assert_eq!(String::from_utf8(m.to_bytes()).unwrap(), expected);
        assert_eq!(m.headers.value(&HeaderName::CallId), Some("c"));
        assert_eq!(m.headers.value(&HeaderName::MaxForwards), Some("69"));
        assert_eq!(m.cseq().unwrap().seq, 7);
        assert!(m.validate().unwrap().is_empty());
        // Built headers can still be replaced and removed one by one.
        m.headers.set(Header::new(HeaderName::MaxForwards, "5"));
        m.headers.remove(&HeaderName::Route);
        let text = String::from_utf8(m.to_bytes()).unwrap();
        assert!(text.contains("\r\nMax-Forwards: 5\r\nFrom: "), "{text}");
        let empty = RequestBuilder::new(
            Method::Options,
            SipUri::new(Host::parse("x").unwrap()).into(),
        )
        .body("application/sdp", "")
        .build();
        let text = String::from_utf8(empty.to_bytes()).unwrap();
        assert_eq!(
            text,
            "OPTIONS sip:x SIP/2.0\r\nMax-Forwards: 70\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn a_builder_moves_as_one_pointer() {
        // Each builder method takes and returns the builder by value: it must stay one word.
        assert_eq!(
            std::mem::size_of::<RequestBuilder>(),
            std::mem::size_of::<usize>()
        );
        let b = RequestBuilder::new(Method::Options, Uri::parse("sip:x").unwrap()).cseq(4);
        let shown = format!("{b:?}");
        assert!(
            shown.starts_with("RequestBuilder { method: Options"),
            "{shown}"
        );
        assert!(shown.contains("cseq: 4"), "{shown}");
    }

    /// What the builder printed for the requests above before it was boxed.
    const GOLDEN: [&str; 4] = [
        "REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK00000000000000a1\r\nMax-Forwards: 70\r\nFrom: <sip:1001@example.test>;tag=00000000000000b2\r\nTo: <sip:1001@example.test>\r\nCall-ID: 00000000000000c3@127.0.0.1\r\nCSeq: 2 REGISTER\r\nContact: <sip:1001@127.0.0.1:5070>\r\nExpires: 3600\r\nUser-Agent: sipmeter\r\nAllow: INVITE, ACK, BYE, CANCEL, OPTIONS\r\nContent-Length: 0\r\n\r\n",
        "INVITE sip:1002@example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK00000000000000d4\r\nMax-Forwards: 70\r\nRoute: <sip:127.0.0.1:5060;lr>\r\nFrom: <sip:1001@example.test>;tag=e5\r\nTo: <sip:1002@example.test>\r\nCall-ID: f6@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:1001@127.0.0.1:5070>\r\nUser-Agent: sipmeter\r\nAllow: INVITE, ACK, BYE\r\nSupported: replaces, timer\r\nContent-Type: application/sdp\r\nContent-Length: 31\r\n\r\nv=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n",
        "BYE sip:1002@127.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK00000000000000a7\r\nMax-Forwards: 70\r\nRoute: <sip:127.0.0.1:5060;lr>\r\nRoute: <sip:p2.example;lr>\r\nFrom: <sip:1001@example.test>;tag=e5\r\nTo: <sip:1002@example.test>;tag=b8\r\nCall-ID: f6@127.0.0.1\r\nCSeq: 2 BYE\r\nUser-Agent: sipmeter\r\nContent-Length: 0\r\n\r\n",
        "INVITE sip:1002@example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK00000000000000a9\r\nMax-Forwards: 70\r\nFrom: <sip:1001@example.test>;tag=e5\r\nTo: <sip:1002@example.test>;tag=b8\r\nCall-ID: f6@127.0.0.1\r\nCSeq: 3 INVITE\r\nContact: <sip:1001@127.0.0.1:5070>\r\nUser-Agent: sipmeter\r\nRAck: 1 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n",
    ];

    /// The builder calls the user agent makes (REGISTER, INVITE through a proxy, an in-dialog
    /// BYE with a printed route set, a re-INVITE with a typed Contact), printed with the
    /// bytes the builder gave before it was boxed (`msg3`): the layout change prints the same.
    #[test]
    fn the_user_agents_requests_print_the_same_bytes_as_before() {
        let registrar = Uri::parse("sip:example.test").unwrap();
        let register = RequestBuilder::new(Method::Register, registrar)
            .via_text("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK00000000000000a1".into())
            .from_text("<sip:1001@example.test>;tag=00000000000000b2".into())
            .to_text("<sip:1001@example.test>".into())
            .call_id("00000000000000c3@127.0.0.1")
            .cseq(2)
            .header(HeaderName::Contact, "<sip:1001@127.0.0.1:5070>")
            .header(HeaderName::Expires, "3600")
            .max_forwards(70)
            .header(HeaderName::UserAgent, "sipmeter")
            .header(HeaderName::Allow, "INVITE, ACK, BYE, CANCEL, OPTIONS")
            .build();
        let bob = Uri::parse("sip:1002@example.test").unwrap();
        let proxy = Uri::parse("sip:127.0.0.1:5060;lr").unwrap();
        let invite = RequestBuilder::new(Method::Invite, bob.clone())
            .via_text("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK00000000000000d4".into())
            .from_text("<sip:1001@example.test>;tag=e5".into())
            .to_text("<sip:1002@example.test>".into())
            .call_id("f6@127.0.0.1")
            .cseq(1)
            .header(HeaderName::Contact, "<sip:1001@127.0.0.1:5070>")
            .route(NameAddr::new(proxy))
            .header(HeaderName::UserAgent, "sipmeter")
            .header(HeaderName::Allow, "INVITE, ACK, BYE")
            .header(HeaderName::Supported, "replaces, timer")
            .body("application/sdp", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n")
            .build();
        let bye = RequestBuilder::new(Method::Bye, Uri::parse("sip:1002@127.0.0.1:5080").unwrap())
            .via_text("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK00000000000000a7".into())
            .from_text("<sip:1001@example.test>;tag=e5".into())
            .to_text("<sip:1002@example.test>;tag=b8".into())
            .call_id("f6@127.0.0.1")
            .cseq(2)
            .route_text("<sip:127.0.0.1:5060;lr>".into())
            .route_text("<sip:p2.example;lr>".into())
            .header(HeaderName::UserAgent, "sipmeter")
            .build();
        let contact = NameAddr::new(Uri::parse("sip:1001@127.0.0.1:5070").unwrap());
        let reinvite = RequestBuilder::new(Method::Invite, bob)
            .via_text("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK00000000000000a9".into())
            .from(NameAddr::new(Uri::parse("sip:1001@example.test").unwrap()).with_tag("e5"))
            .to(NameAddr::new(Uri::parse("sip:1002@example.test").unwrap()).with_tag("b8"))
            .call_id("f6@127.0.0.1")
            .cseq(3)
            .header(HeaderName::UserAgent, "sipmeter")
            .contact(contact)
            .header(HeaderName::RAck, "1 1 INVITE")
            .body("application/sdp", "v=0\r\n")
            .build();
        let printed: Vec<String> = [register, invite, bye, reinvite]
            .iter()
            .map(|m| String::from_utf8(m.to_bytes()).unwrap())
            .collect();
        assert_eq!(printed, GOLDEN);
    }
}
