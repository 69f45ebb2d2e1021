//! The SIP message: start line, headers, body. Parsing (RFC 3261 §7), validation and printing.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use bytes::{Buf, Bytes};

use crate::error::{ErrorKind, HeaderError, ParseError, Warning, WarningKind};
use crate::header::{Header, HeaderName, HeaderRef, HeaderView, Headers, Raw, TypedHeader};
use crate::method::Method;
use crate::text::{ByteStr, is_token_char};
use crate::typed::{
    CSeq, CallId, CallIdRef, ContactRef, ContentLength, ContentTypeRef, Expires, From, FromRef,
    MaxForwards, RecordRouteRef, RouteRef, To, ToRef, Via, ViaRef,
};
use crate::uri::{Host, SipUri, SipUriSpans, Uri, UriRef};

/// Largest message [`Message::parse`] accepts by default (a UDP datagram is at most 65,535).
pub const DEFAULT_MAX_SIZE: usize = 65_536;

/// `Method SP Request-URI SP SIP-Version`.
#[derive(Clone)]
pub struct RequestLine {
    /// The method.
    pub method: Method,
    /// The Request-URI.
    uri: RequestUri,
}

/// The Request-URI of a [`RequestLine`]: given (a built request, or one replaced by
/// [`Message::set_request_uri`]), or, for a parsed request, a range of its head text, checked
/// by [`UriRef::parse`] when the message was parsed and made into a [`Uri`] only when asked
/// for ([`RequestLine::uri`]). A user agent never asks for the Request-URI of most requests
/// it receives (ACK, BYE, re-INVITE are matched by their dialog), and a proxy can read it in
/// place ([`Message::request_uri_text`]): no owned copy (and its allocation) per request.
#[derive(Clone)]
enum RequestUri {
    /// Built or replaced.
    Given(Uri),
    /// `start..end` of the head text `head` (a parsed request's).
    InHead {
        /// The head text (the parsed message's, shared).
        head: Arc<str>,
        /// First byte of the URI.
        start: u32,
        /// End of the URI.
        end: u32,
        /// A SIP URI's parts as ranges of its text, as the parse found them (`None`: read
        /// the text again).
        spans: Option<SipUriSpans>,
    },
}

impl RequestUri {
    /// The URI as received, when read from a head text.
    fn text(&self) -> Option<&str> {
        match self {
            RequestUri::InHead {
                head, start, end, ..
            } => head.get(*start as usize..*end as usize),
            RequestUri::Given(_) => None,
        }
    }

    /// The URI read in place, when it is a range of the head text: from the parts the
    /// parse found, or (an IPv6 host, a `tel:` URI) read again. The text was read by
    /// `UriRef::parse` when the message was parsed (a request whose Request-URI does not
    /// parse is refused): it reads again the same.
    fn in_place(&self) -> Option<UriRef<'_>> {
        let text = self.text()?;
        match self {
            RequestUri::InHead {
                spans: Some(spans), ..
            } => spans.view(text).map(UriRef::Sip),
            _ => UriRef::parse(text).ok(),
        }
    }

    fn uri(&self) -> Cow<'_, Uri> {
        match self {
            RequestUri::Given(u) => Cow::Borrowed(u),
            // The empty `sip:` fallback only keeps the function total (see `in_place`).
            RequestUri::InHead { .. } => Cow::Owned(self.in_place().map_or_else(
                || Uri::Sip(SipUri::new(Host::Name(String::new()))),
                UriRef::into_owned,
            )),
        }
    }
}

impl RequestLine {
    /// A request line with a given Request-URI.
    pub fn new(method: Method, uri: Uri) -> Self {
        Self {
            method,
            uri: RequestUri::Given(uri),
        }
    }

    /// The Request-URI: borrowed when built or replaced, made from the received text
    /// otherwise (each call: keep it, or read it in place with [`Message::request_uri_text`]).
    pub fn uri(&self) -> Cow<'_, Uri> {
        self.uri.uri()
    }
}

impl fmt::Debug for RequestLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestLine")
            .field("method", &self.method)
            .field("uri", &self.uri())
            .finish()
    }
}

impl PartialEq for RequestLine {
    fn eq(&self, other: &Self) -> bool {
        self.method == other.method && self.uri() == other.uri()
    }
}

impl Eq for RequestLine {}

/// `SIP-Version SP Status-Code SP Reason-Phrase`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    /// 100–699.
    pub code: u16,
    /// The reason phrase as sent (may be empty): the standard phrases are kept as static text
    /// (no allocation per response), others as their own copy.
    pub reason: Cow<'static, str>,
}

/// A request or a response line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    /// A request.
    Request(RequestLine),
    /// A response.
    Response(StatusLine),
}

/// A SIP message. Parsed messages keep the exact bytes of their start line and headers, so
/// printing one gives back what was received.
#[derive(Debug, Clone)]
pub struct Message {
    start: StartLine,
    start_raw: Raw,
    /// The headers, in order.
    pub headers: Headers,
    body: Bytes,
    /// What a lenient parse tolerated: none in nearly every message (boxed, so that every
    /// message holds 8 bytes for them, not a `Vec`'s 24).
    #[allow(clippy::box_collection)] // reason: a thin pointer in every message, see above
    warnings: Option<Box<Vec<Warning>>>,
}

/// A message's whole printed text as the owner of the [`Bytes`] that send it
/// ([`Message::wire`]: no copy).
pub(crate) struct WholeText(pub(crate) Arc<str>);

impl AsRef<[u8]> for WholeText {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl Message {
    /// A new request with no headers (see [`crate::RequestBuilder`] for a complete one).
    pub fn new_request(method: Method, uri: Uri) -> Self {
        Self::from_start(StartLine::Request(RequestLine::new(method, uri)))
    }

    /// A new response with no headers (see [`Message::response_to`]).
    pub fn new_response(code: u16, reason: &str) -> Self {
        Self::from_start(StartLine::Response(StatusLine {
            code,
            reason: reason_text(reason),
        }))
    }

    fn from_start(start: StartLine) -> Self {
        Self {
            start,
            start_raw: Raw::None,
            headers: Headers::new(),
            body: Bytes::new(),
            warnings: None,
        }
    }

    /// Parses one message as received in a datagram: Content-Length bounds the body when
    /// present, bytes beyond it are discarded (RFC 3261 §18.3); without it the body is the rest.
    /// Checks syntax only; call [`Message::validate`] for the semantic checks.
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        if bytes.len() > DEFAULT_MAX_SIZE {
            return Err(ParseError::new(ErrorKind::TooLarge, 0));
        }
        parse(Input::Borrowed(bytes))
    }

    /// Like [`Message::parse`], without copying the body (the header section is copied once
    /// into a shared UTF-8 buffer that every header points into).
    pub fn parse_bytes(bytes: Bytes) -> Result<Self, ParseError> {
        parse(Input::Owned(bytes))
    }

    /// The start line.
    pub fn start_line(&self) -> &StartLine {
        &self.start
    }

    /// True for a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request(_))
    }

    /// The method of a request; for a response, the method of its CSeq.
    pub fn method(&self) -> Option<Method> {
        match &self.start {
            StartLine::Request(r) => Some(r.method.clone()),
            StartLine::Response(_) => self.cseq().map(|c| c.method),
        }
    }

    /// The Request-URI of a request: borrowed when built or replaced, made from the
    /// received text otherwise (at each call: keep it, or read the text in place with
    /// [`Message::request_uri_text`]).
    pub fn request_uri(&self) -> Option<Cow<'_, Uri>> {
        match &self.start {
            StartLine::Request(r) => Some(r.uri()),
            StartLine::Response(_) => None,
        }
    }

    /// The Request-URI of a request as received (read in place: no copy), when the request
    /// was parsed from a UTF-8 header section and its URI not replaced since; it then reads
    /// with [`UriRef::parse`] (the parse checked it) as [`Message::request_uri`] gives it.
    /// `None` otherwise (use [`Message::request_uri`]).
    pub fn request_uri_text(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request(r) => r.uri.text(),
            StartLine::Response(_) => None,
        }
    }

    /// The Request-URI of a request read in place (no copy, and not read again: the parts
    /// the parse found), when the request was parsed from a UTF-8 header section and its
    /// URI not replaced since: the view whose `into_owned` is [`Message::request_uri`].
    /// `None` otherwise (use [`Message::request_uri`]).
    pub fn request_uri_in_place(&self) -> Option<UriRef<'_>> {
        match &self.start {
            StartLine::Request(r) => r.uri.in_place(),
            StartLine::Response(_) => None,
        }
    }

    /// The Request-URI of a request as [`Message::request_uri`] prints it (`write_to`,
    /// `Display`), read in place: the received text ([`Message::request_uri_text`]) when it
    /// has the form printing gives back unchanged ([`prints_as_written`]: nearly every
    /// Request-URI). `None` otherwise (print [`Message::request_uri`] then).
    pub fn request_uri_printed(&self) -> Option<&str> {
        self.request_uri_text().filter(|t| prints_as_written(t))
    }

    /// Replaces the Request-URI of a request (a proxy retargeting it, RFC 3261 §16.6 step 2);
    /// the start line is then printed from the new URI, the headers and body stay as they are.
    /// False (and nothing changed) for a response.
    pub fn set_request_uri(&mut self, uri: Uri) -> bool {
        match &mut self.start {
            StartLine::Request(r) => {
                r.uri = RequestUri::Given(uri);
                self.start_raw = Raw::None;
                true
            }
            StartLine::Response(_) => false,
        }
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Request(_) => None,
            StartLine::Response(s) => Some(s.code),
        }
    }

    /// The reason phrase of a response.
    pub fn reason(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request(_) => None,
            StartLine::Response(s) => Some(&s.reason),
        }
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Sets the body and its Content-Type, and recomputes Content-Length.
    pub fn set_body(&mut self, content_type: &str, body: impl Into<Bytes>) {
        self.body = body.into();
        if self.body.is_empty() {
            self.headers.remove(&HeaderName::ContentType);
        } else {
            self.headers
                .set(Header::new(HeaderName::ContentType, content_type));
        }
        self.headers.set(Header::new(
            HeaderName::ContentLength,
            self.body.len().to_string(),
        ));
    }

    /// Sets the body without touching the headers (the builder writes Content-Type and
    /// Content-Length itself).
    pub(crate) fn put_body(&mut self, body: Bytes) {
        self.body = body;
    }

    /// Takes the body out, leaving it empty and the headers as they are (Content-Type and
    /// Content-Length still describe the body taken): for a received message kept only for
    /// its headers, whose body (a slice of the whole datagram, which it keeps alive) is read
    /// once.
    pub fn take_body(&mut self) -> Bytes {
        std::mem::take(&mut self.body)
    }

    /// This message with only the headers `keep` selects (in order) and no body,
    /// whose received lines (start line included) are copied into a head text of their own:
    /// the result keeps nothing else of the received message alive. The kept headers print,
    /// read and give their raw bytes exactly as here. For a received request kept only for
    /// what its responses copy from it (RFC 3261 §8.2.6.2: Via, From, To, Call-ID, CSeq;
    /// §12.1.1: Record-Route), which is a few hundred bytes of a message of a kilobyte or two.
    pub fn keep_only(self, keep: impl Fn(&HeaderName) -> bool) -> Message {
        let first = match &self.start_raw {
            Raw::Text { head, start, end } => head.get(*start as usize..*end as usize),
            _ => None,
        };
        let (headers, head) = self.headers.kept(first.unwrap_or_default(), keep);
        let start_raw = match first {
            // The start line is the beginning of the new text.
            Some(line) => Raw::Text {
                head,
                start: 0,
                end: line.len() as u32,
            },
            // Built (printed from `start`), or the bytes of a header section that was not
            // UTF-8: kept as they are.
            None => self.start_raw.clone(),
        };
        let mut start = self.start;
        // A Request-URI read in place moves to the new text with its line (which starts the
        // new text): it keeps nothing of the old one alive either.
        let old_line_start = match &self.start_raw {
            Raw::Text { start, .. } => *start,
            _ => 0,
        };
        if let (StartLine::Request(r), Raw::Text { head: new, .. }) = (&mut start, &start_raw)
            && let RequestUri::InHead {
                head, start, end, ..
            } = &mut r.uri
        {
            *head = Arc::clone(new);
            *start -= old_line_start.min(*start);
            *end -= old_line_start.min(*end);
        }
        Message {
            start,
            start_raw,
            headers,
            body: Bytes::new(),
            warnings: self.warnings,
        }
    }

    /// What a lenient parse tolerated (also filled by [`Message::validate`]).
    pub fn warnings(&self) -> &[Warning] {
        self.warnings.as_deref().map_or(&[], Vec::as_slice)
    }

    /// The Call-ID, when present and well formed.
    pub fn call_id(&self) -> Option<String> {
        self.headers.typed::<CallId>()?.ok().map(|c| c.0)
    }

    /// The CSeq, when present and well formed.
    pub fn cseq(&self) -> Option<CSeq> {
        self.headers.typed::<CSeq>()?.ok()
    }

    /// The top Via, when present and well formed.
    pub fn top_via(&self) -> Option<Via> {
        self.headers.typed::<Via>()?.ok()
    }

    /// The From header, when present and well formed.
    pub fn from(&self) -> Option<From> {
        self.headers.typed::<From>()?.ok()
    }

    /// The To header, when present and well formed.
    pub fn to(&self) -> Option<To> {
        self.headers.typed::<To>()?.ok()
    }

    /// Semantic checks beyond syntax: mandatory headers present (RFC 3261 §8.1.1) and their
    /// typed views readable, single-valued headers not repeated, CSeq method matching the
    /// request method, no headers in the Request-URI. Problems in headers a user agent does
    /// not need become warnings (RFC 4475 §3.1.2.11: ignore what you do not need).
    pub fn validate(&mut self) -> Result<Vec<Warning>, ParseError> {
        let mut warnings = Vec::new();
        let line_of = |msg: &Message, name: &HeaderName| -> usize {
            // Line 1 is the start line; header i is on line i + 2 (folding ignored).
            msg.headers
                .iter()
                .position(|h| h.name() == name)
                .map_or(0, |i| i + 2)
        };
        let err = |msg: &Message, kind: ErrorKind, name: HeaderName| {
            ParseError::in_header(kind, line_of(msg, &name), name)
        };

        // Read in place when the URI is a range of the text (no owned copy made for this):
        // every `name=value` pair after `?` is one entry of the owned URI's headers, and a
        // `?` with no pair does not parse, so `Some` there is a non-empty list here.
        let uri_headers = match (&self.start, self.request_uri_in_place()) {
            (_, Some(u)) => u.as_sip().is_some_and(|u| u.headers.is_some()),
            (StartLine::Request(r), None) => {
                matches!(&*r.uri(), Uri::Sip(u) if !u.headers.is_empty())
            }
            (StartLine::Response(_), None) => false,
        };
        if uri_headers {
            return Err(ParseError::new(ErrorKind::RequestUriHeaders, 1));
        }

        let mandatory = [
            HeaderName::Via,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
        ];
        for name in mandatory {
            if self.headers.get(&name).is_none() {
                return Err(ParseError::in_header(ErrorKind::MissingHeader, 0, name));
            }
        }
        if self.is_request() && self.headers.get(&HeaderName::MaxForwards).is_none() {
            warnings.push(Warning {
                header: Some(HeaderName::MaxForwards),
                line: 0,
                kind: WarningKind::MissingMaxForwards,
            });
        }

        // Headers that may appear only once (RFC 3261 §7.3.1: not comma-separated lists).
        for name in [
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
            HeaderName::MaxForwards,
            HeaderName::ContentLength,
            HeaderName::ContentType,
            HeaderName::Expires,
        ] {
            let differs = {
                let mut values = self.headers.get_all(&name).map(HeaderRef::value);
                match values.next() {
                    Some(first) => values.any(|v| v != first),
                    None => false,
                }
            };
            if differs {
                return Err(err(self, ErrorKind::DuplicateHeader, name));
            }
        }

        type Check = fn(&Message) -> Result<(), (HeaderError, HeaderName)>;
        fn check<T: TypedHeader>(msg: &Message) -> Result<(), (HeaderError, HeaderName)> {
            for v in msg.headers.typed_all::<T>() {
                v.map_err(|e| (e, T::NAME))?;
            }
            Ok(())
        }
        // The borrowed views read (and reject) exactly what the owned ones do, without
        // copying every value.
        macro_rules! check_view {
            ($view:ident) => {
                |msg: &Message| -> Result<(), (HeaderError, HeaderName)> {
                    for v in msg.headers.view_all::<$view>() {
                        v.map_err(|e| (e, <$view as HeaderView>::NAME))?;
                    }
                    Ok(())
                }
            };
        }
        let essential: [Check; 10] = [
            check_view!(ViaRef),
            check_view!(FromRef),
            check_view!(ToRef),
            check_view!(CallIdRef),
            check::<CSeq>,
            check::<MaxForwards>,
            check::<ContentLength>,
            check_view!(ContactRef),
            check_view!(RouteRef),
            check_view!(RecordRouteRef),
        ];
        for c in essential {
            if let Err((e, name)) = c(self) {
                return Err(err(self, ErrorKind::BadHeaderValue(e), name));
            }
        }
        let optional: [Check; 3] = [
            check_view!(ContentTypeRef),
            check::<Expires>,
            check::<crate::typed::Date>,
        ];
        for c in optional {
            if let Err((e, name)) = c(self) {
                let line = line_of(self, &name);
                warnings.push(Warning {
                    header: Some(name),
                    line,
                    kind: WarningKind::MalformedHeader(e),
                });
            }
        }

        // Checked above: CSeq is present and well formed.
        if let (StartLine::Request(r), Some(cseq)) = (&self.start, self.cseq())
            && cseq.method != r.method
        {
            return Err(err(self, ErrorKind::CSeqMethodMismatch, HeaderName::CSeq));
        }
        if !warnings.is_empty() {
            (self.warnings.get_or_insert_with(Box::default)).extend(warnings.iter().cloned());
        }
        Ok(warnings)
    }

    /// A response to `request` (RFC 3261 §8.2.6.2): Via, From, To, Call-ID and CSeq copied;
    /// `to_tag` is added to To when the request's To has none.
    pub fn response_to(request: &Message, code: u16, reason: &str, to_tag: Option<&str>) -> Self {
        let mut resp = Message::new_response(code, reason);
        // Via, From, To, Call-ID, CSeq (+ Record-Route) and Content-Length: room for them all
        // at once instead of growing the list by doubling.
        resp.headers = Headers::with_capacity(
            request
                .headers
                .iter()
                .filter(|h| h.name().is_copied_to_responses())
                .count()
                + 1,
        );
        for h in request.headers.iter() {
            let n = h.name();
            let copy = matches!(
                n,
                HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq
            ) || (matches!(n, HeaderName::RecordRoute) && (101..300).contains(&code));
            if copy {
                // A clone shares the request's received bytes (no copy of the value): the
                // response carries the line exactly as the request did (§8.2.6.2 copies it).
                resp.headers.push_ref(h);
            } else if matches!(n, HeaderName::To) {
                let value = match to_tag {
                    Some(tag) => match NameAddrTag::tagged(h.value(), tag) {
                        Some(text) => text.into_owned(),
                        None => format!("{};tag={tag}", h.value()),
                    },
                    None => h.value().to_owned(),
                };
                resp.headers.push(Header::new(HeaderName::To, value));
            }
        }
        resp.headers
            .push(Header::from_static(HeaderName::ContentLength, "0"));
        resp
    }

    /// Prints a response to `request` straight into `out`, as
    /// `Message::response_to(request, code, reason, to_tag).to_bytes()` would print it, without
    /// building the response: the start line, the copied header lines (byte for byte as
    /// received; To with `to_tag` added when it has none) and `Content-Length: 0`, each ending
    /// in CRLF, but **not** the empty line that ends the head, so the caller can add header
    /// lines before it. When `first_via` is given, the first Via line is printed as those
    /// values instead, one `Via:` line each (a proxy's edited top Via).
    pub fn write_response(
        request: &Message,
        code: u16,
        reason: &str,
        to_tag: Option<&str>,
        first_via: Option<&[&str]>,
        out: &mut Vec<u8>,
    ) {
        write_response_head(request, code, reason, to_tag, first_via, 0, out);
    }

    /// Prints a whole response to `request` into `out`: the bytes of
    /// `Message::response_to(request, code, reason, to_tag)`, then each of `extra` pushed in
    /// order, then `set_body(content_type, body)` when a body is given, then `to_bytes()` —
    /// without building the response (a UA's answers: 100, 180, 200, 481 …).
    /// `extra` is any list of headers read twice (a slice, or headers chained without
    /// collecting them: no allocation).
    pub fn write_full_response<'h>(
        request: &Message,
        code: u16,
        reason: &str,
        to_tag: Option<&str>,
        extra: impl IntoIterator<Item = &'h Header> + Clone,
        body: Option<(&str, &[u8])>,
        out: &mut Vec<u8>,
    ) {
        let len = body.map_or(0, |(_, b)| b.len());
        // Room for it all at once, a few bytes over at most (a To tag the To already has), so
        // that a response kept for retransmission holds little spare room.
        let line = |h: HeaderRef<'_>| {
            h.raw()
                .map_or(h.name().as_str().len() + 2 + h.value().len(), <[u8]>::len)
                + 2
        };
        let copied: usize = request
            .headers
            .iter()
            .map(|h| match h.name() {
                HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                    line(h)
                }
                HeaderName::RecordRoute if (101..300).contains(&code) => line(h),
                HeaderName::To => 6 + h.value().len() + to_tag.map_or(0, |t| 5 + t.len()),
                _ => 0,
            })
            .sum();
        out.reserve(
            12 + reason.len()
                + 2
                + copied
                + 16
                + crate::text::decimal(len as u64, &mut [0; 20]).len()
                + 2
                + extra
                    .clone()
                    .into_iter()
                    .map(|h| line(h.by_ref()))
                    .sum::<usize>()
                + body.map_or(0, |(t, b)| 16 + t.len() + b.len())
                + 2,
        );
        // `set_body` sets Content-Length in place (the copied lines' own one, always first)
        // and drops any later one; it replaces the first Content-Type in place (or appends
        // one) when the body is not empty, and drops every other.
        write_response_head(request, code, reason, to_tag, None, len, out);
        let mut type_seen = false;
        for h in extra {
            if let Some((content_type, _)) = body {
                match h.name() {
                    HeaderName::ContentLength => continue,
                    HeaderName::ContentType => {
                        if !type_seen && len > 0 {
                            write_line(out, HeaderName::ContentType.as_str(), content_type);
                        }
                        type_seen = true;
                        continue;
                    }
                    _ => {}
                }
            }
            write_header(out, h.by_ref());
        }
        if let Some((content_type, b)) = body {
            if !b.is_empty() && !type_seen {
                write_line(out, HeaderName::ContentType.as_str(), content_type);
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(b);
        } else {
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The message on the wire, as [`Message::to_bytes`] prints it, to send: without a copy
    /// when the message's shared text is already exactly that — a request made by
    /// [`crate::RequestBuilder::build`] and not changed since, whose start line, headers,
    /// empty line and body were written as one text — else printed.
    pub fn wire(&self) -> Bytes {
        match self.whole_text() {
            Some(text) => Bytes::from_owner(WholeText(Arc::clone(text))),
            None => Bytes::from(self.to_bytes()),
        }
    }

    /// Makes the text this message prints as its one shared text, as
    /// [`crate::RequestBuilder::build`] writes a request: the start line, the header lines, the
    /// empty line and the body, printed once (what [`Message::to_bytes`] prints), with the
    /// headers made ranges of it. [`Message::wire`] then sends it without printing it again.
    ///
    /// For a request edited after it was built or parsed (a retry with credentials: a new
    /// Via, CSeq and Authorization), which otherwise is printed again for every transmission
    /// and keeps the text it was first written in alive for its unchanged lines. Nothing
    /// changes when the message is whole already, when its body is not UTF-8, or when a
    /// header holds a value unfolded from its received lines.
    pub fn make_whole(&mut self) {
        if self.whole_text().is_none() {
            self.rewrite_whole();
        }
    }

    /// [`Message::wire`] after [`Message::make_whole`]: the message's one text when it is
    /// whole or can be made so (checked once), else printed.
    pub fn wire_whole(&mut self) -> Bytes {
        if let Some(text) = self.whole_text() {
            return Bytes::from_owner(WholeText(Arc::clone(text)));
        }
        match self.rewrite_whole() {
            Some(text) => Bytes::from_owner(WholeText(text)),
            None => Bytes::from(self.to_bytes()),
        }
    }

    /// [`Message::make_whole`] for a message known not to be whole: its new text, or `None`
    /// when it stays as it is.
    fn rewrite_whole(&mut self) -> Option<Arc<str>> {
        if self.headers.is_empty() {
            return None;
        }
        let headers = self.headers.rewritten_len()?;
        let body = std::str::from_utf8(&self.body).ok()?;
        let mut text = crate::builder::scratch::take(128 + headers + 2 + body.len());
        match self.start_raw.as_bytes() {
            Some(raw) => match std::str::from_utf8(raw) {
                Ok(line) => text.push_str(line),
                Err(_) => {
                    crate::builder::scratch::put(text);
                    return None;
                }
            },
            None => {
                // Writing into a String never fails.
                let _ = self.start.write_to(&mut text);
            }
        }
        let line = text.len();
        // Ranges are 32-bit (as a parsed message's): a text longer than that stays as it is.
        if u32::try_from(line + 2 + headers + 2 + body.len()).is_err() {
            crate::builder::scratch::put(text);
            return None;
        }
        text.push_str("\r\n");
        self.headers.rewrite_into(&mut text);
        text.push_str("\r\n");
        let body_at = text.len();
        text.push_str(body);
        let line = line as u32;
        let whole: Arc<str> = Arc::from(text.as_str());
        crate::builder::scratch::put(text);
        self.headers.attach_head(Arc::clone(&whole));
        if !self.body.is_empty() {
            self.body = Bytes::from_owner(WholeText(Arc::clone(&whole))).slice(body_at..);
        }
        self.set_start_text(Arc::clone(&whole), line);
        debug_assert!(
            self.whole_text().is_some(),
            "a message made whole reads as whole"
        );
        Some(whole)
    }

    /// The shared text this message prints as, whole: when its start line is the text's
    /// first line, its headers ([`Headers::one_block`]) the lines after it, and the rest of
    /// the text the empty line and this message's body. Checked at each call (the headers
    /// are public and may have been edited since the text was written).
    fn whole_text(&self) -> Option<&Arc<str>> {
        let Raw::Text {
            head,
            start: 0,
            end: line,
        } = &self.start_raw
        else {
            return None;
        };
        let (block_head, first, end) = self.headers.one_block()?;
        let text = head.as_bytes();
        let line = *line as usize;
        let whole = Arc::ptr_eq(head, block_head)
            && first == line + 2
            && text.get(line..first) == Some(b"\r\n".as_slice())
            && text.get(end..end + 4) == Some(b"\r\n\r\n".as_slice())
            && text.get(end + 4..) == Some(&self.body[..]);
        whole.then_some(head)
    }

    /// Makes `text`'s first `line` bytes this message's start line as printed (a built
    /// request's, written with its headers into one text: [`Message::wire`]).
    pub(crate) fn set_start_text(&mut self, text: Arc<str>, line: u32) {
        self.start_raw = Raw::Text {
            head: text,
            start: 0,
            end: line,
        };
    }

    /// The message on the wire: parsed lines as received, built ones canonical, then the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        // One allocation of the exact size (a `Bytes` made from it then needs no other). A
        // start line printed here (a built message) is printed on the stack first.
        let mut printed = LineBuf::new();
        let start: std::borrow::Cow<'_, [u8]> = match self.start_raw.as_bytes() {
            Some(raw) => raw.into(),
            None => match self.start.write_to(&mut printed) {
                Ok(()) => printed.as_bytes().into(),
                // Longer than the stack buffer: printed into its own string.
                Err(_) => {
                    let mut line = String::with_capacity(2 * LineBuf::SIZE);
                    // Writing into a String never fails.
                    let _ = self.start.write_to(&mut line);
                    line.into_bytes().into()
                }
            },
        };
        // Headers as parsed or built (one run of one text) are copied in one piece.
        let block = self.headers.as_one_block();
        let headers: usize = match block {
            Some(b) => b.len() + 2,
            None => self
                .headers
                .iter()
                .map(|h| match h.raw() {
                    Some(raw) => raw.len() + 2,
                    None => h.name().as_str().len() + 2 + h.value().len() + 2,
                })
                .sum(),
        };
        let mut out = Vec::with_capacity(start.len() + 2 + headers + 2 + self.body.len());
        out.extend_from_slice(&start);
        out.extend_from_slice(b"\r\n");
        match block {
            Some(b) => {
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            None => {
                for h in self.headers.iter() {
                    match h.raw() {
                        Some(raw) => out.extend_from_slice(raw),
                        None => {
                            out.extend_from_slice(h.name().as_str().as_bytes());
                            out.extend_from_slice(b": ");
                            out.extend_from_slice(h.value().as_bytes());
                        }
                    }
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    /// A one-line summary: `INVITE sip:bob@biloxi.com` or `200 OK (INVITE)`.
    pub fn summary(&self) -> String {
        match &self.start {
            StartLine::Request(r) => format!("{} {}", r.method, r.uri()),
            StartLine::Response(s) => match self.cseq() {
                Some(c) => format!("{} {} ({})", s.code, s.reason, c.method),
                None => format!("{} {}", s.code, s.reason),
            },
        }
    }
}

/// True when `text`, a URI that [`UriRef::parse`] accepts, prints back as written
/// ([`Uri::write_to`] of its owned form): `sip:` in lower case, then `user@` (no `:`, so no
/// password) or nothing, then a host name or IPv4 address (written as the parser accepts
/// it: no leading zeros), then a port of digits without a leading zero or nothing, then
/// parameters `;name` or `;name=value` of distinct names (in any case; a repeated one is
/// printed once); no headers or IPv6 reference (`?`, `[` nowhere). Each part is printed as
/// written then (test `uris_that_print_as_written_print_as_written`); anything else says
/// false, which only means "print it to know".
fn prints_as_written(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("sip:") else {
        return false;
    };
    // One pass: `?` or `[` anywhere says no; a `:` or `;` before an `@` is in the userinfo
    // (a password, or a user the check below does not cover); after the last `@`, the first
    // `:` starts the port and the first `;` the parameters.
    let b = rest.as_bytes();
    let (mut colon, mut semi, mut in_user) = (None, None, false);
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'?' | b'[' => return false,
            b'@' => {
                in_user |= colon.is_some() || semi.is_some();
                (colon, semi) = (None, None);
            }
            b':' if colon.is_none() && semi.is_none() => colon = Some(i),
            b';' if semi.is_none() => semi = Some(i),
            _ => {}
        }
    }
    if in_user {
        return false;
    }
    let end = semi.unwrap_or(b.len());
    if let Some(c) = colon {
        // Port digits, no leading zero (one `0` alone prints as `0`).
        let port = &b[c + 1..end];
        if port.is_empty()
            || !port.iter().all(u8::is_ascii_digit)
            || (port.len() > 1 && port[0] == b'0')
        {
            return false;
        }
    }
    let Some(semi) = semi else { return true };
    // Non-empty, distinct names (a URI has a few parameters: the pairs are few; no list).
    let params = &rest[semi + 1..];
    let name = |p: &'_ str| -> usize { p.find_b(b'=').unwrap_or(p.len()) };
    params.split_b(b';').enumerate().all(|(i, p)| {
        let n = &p[..name(p)];
        !n.is_empty()
            && params
                .split_b(b';')
                .take(i)
                .all(|q| !q[..name(q)].eq_ignore_ascii_case(n))
    })
}

/// [`Message::write_response`] with `Content-Length: content_length` as its last line.
fn write_response_head(
    request: &Message,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    first_via: Option<&[&str]>,
    content_length: usize,
    out: &mut Vec<u8>,
) {
    write_status_line(out, code, reason);
    out.extend_from_slice(b"\r\n");
    let mut first_via = first_via;
    for h in request.headers.iter() {
        let n = h.name();
        match n {
            HeaderName::Via if first_via.is_some() => {
                for v in first_via.take().unwrap_or_default() {
                    write_line(out, HeaderName::Via.as_str(), v);
                }
            }
            HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                write_header(out, h);
            }
            HeaderName::RecordRoute if (101..300).contains(&code) => write_header(out, h),
            HeaderName::To => {
                out.extend_from_slice(b"To: ");
                match to_tag.map(|tag| (tag, NameAddrTag::tagged(h.value(), tag))) {
                    // Appended without a copy of the value (the To of nearly every response).
                    Some((tag, None)) => {
                        out.extend_from_slice(h.value().as_bytes());
                        out.extend_from_slice(b";tag=");
                        out.extend_from_slice(tag.as_bytes());
                    }
                    Some((_, Some(text))) => out.extend_from_slice(text.as_bytes()),
                    None => out.extend_from_slice(h.value().as_bytes()),
                }
                out.extend_from_slice(b"\r\n");
            }
            _ => {}
        }
    }
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(crate::text::decimal(content_length as u64, &mut [0; 20]).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `reason` as a static text when it is one of the usual phrases (exactly as written), else
/// a copy.
fn reason_text(reason: &str) -> Cow<'static, str> {
    const USUAL: [&str; 22] = [
        "",
        "OK",
        "Trying",
        "Ringing",
        "Session Progress",
        "Accepted",
        "Unauthorized",
        "Proxy Authentication Required",
        "Forbidden",
        "Not Found",
        "Method Not Allowed",
        "Request Timeout",
        "Bad Request",
        "Temporarily Unavailable",
        "Call/Transaction Does Not Exist",
        "Busy Here",
        "Request Terminated",
        "Interval Too Brief",
        "Server Internal Error",
        "Service Unavailable",
        "Decline",
        "Moved Temporarily",
    ];
    match USUAL.iter().find(|u| **u == reason) {
        Some(u) => Cow::Borrowed(u),
        None => Cow::Owned(reason.to_owned()),
    }
}

impl StartLine {
    /// Writes the line as [`Message::to_bytes`] prints a built one (without the line end).
    fn write_to<W: fmt::Write>(&self, w: &mut W) -> fmt::Result {
        match self {
            StartLine::Request(r) => {
                w.write_str(r.method.as_str())?;
                w.write_str(" ")?;
                r.uri().write_to(w)?;
                w.write_str(" SIP/2.0")
            }
            // As `write_status_line` writes it (a code's digits are those of `to_string`).
            StartLine::Response(s) => {
                w.write_str("SIP/2.0 ")?;
                w.write_str(crate::text::decimal(u64::from(s.code), &mut [0; 20]))?;
                w.write_str(" ")?;
                w.write_str(&s.reason)
            }
        }
    }
}

/// A start line printed on the stack: no allocation for a line of up to [`LineBuf::SIZE`]
/// bytes (a longer one reports an error and is printed into a `String` instead).
struct LineBuf {
    bytes: [u8; LineBuf::SIZE],
    len: usize,
}

impl LineBuf {
    const SIZE: usize = 192;

    fn new() -> Self {
        Self {
            bytes: [0; Self::SIZE],
            len: 0,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        // `len` only grows by what `write_str` copied in: in bounds.
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

impl fmt::Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        let slot = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// `SIP/2.0 code reason`, without the line end.
fn write_status_line(out: &mut Vec<u8>, code: u16, reason: &str) {
    out.extend_from_slice(b"SIP/2.0 ");
    match code {
        // Three digits (every real status code): written without formatting.
        c @ 100..=999 => out.extend_from_slice(&[
            b'0' + (c / 100) as u8,
            b'0' + (c / 10 % 10) as u8,
            b'0' + (c % 10) as u8,
        ]),
        c => out.extend_from_slice(c.to_string().as_bytes()),
    }
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
}

/// One header as [`Message::to_bytes`] prints it (as received, or `Name: value`), and CRLF.
fn write_header(out: &mut Vec<u8>, h: HeaderRef<'_>) {
    match h.raw() {
        Some(raw) => {
            out.extend_from_slice(raw);
            out.extend_from_slice(b"\r\n");
        }
        None => write_line(out, h.name().as_str(), h.value()),
    }
}

/// `name: value` and CRLF.
fn write_line(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Tag detection on a raw To value without a full parse.
struct NameAddrTag;

impl NameAddrTag {
    /// A To value with `tag`, when it is not the value with `;tag=TAG` appended (`None`: no
    /// `tag` parameter): the value as it is when it has a tag, and printed typed with the tag
    /// set when its `tag` has no value (`<uri>;tag`: appending would make a second `tag`, and
    /// the first, valueless one is the one readers take).
    fn tagged<'a>(value: &'a str, tag: &str) -> Option<Cow<'a, str>> {
        match Self::parsed(value) {
            Some(n) if n.tag().is_some() => Some(Cow::Borrowed(value)),
            Some(n) if n.params.contains("tag") => {
                Some(Cow::Owned(n.into_owned().with_tag(tag).to_string()))
            }
            _ => None,
        }
    }

    /// The value read in place when it may have a `tag` parameter. A value without the
    /// letters `tag` (in any case) has none, readable or not: the parse is skipped (the To of
    /// nearly every out-of-dialog request); so is an unreadable value.
    fn parsed(value: &str) -> Option<crate::typed::NameAddrRef<'_>> {
        crate::typed::may_hold_tag(value)
            .then(|| crate::typed::NameAddrRef::parse(value).ok())
            .flatten()
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

/// The header section split into lines: `(start, end)` byte ranges, the body offset, and
/// whether bare LF line ends were seen.
type Head = (Vec<(usize, usize)>, usize, bool);

/// Splits `buf` into lines (CRLF, or a bare LF tolerated and flagged).
fn split_head(buf: &[u8]) -> Result<Head, ParseError> {
    let mut lines = Vec::new();
    let mut pos = 0;
    let mut bare_lf = false;
    loop {
        let Some(end) = find_lf(buf, pos) else {
            return Err(ParseError::new(ErrorKind::Incomplete, lines.len() + 1));
        };
        let line_end = if end > pos && buf[end - 1] == b'\r' {
            end - 1
        } else {
            bare_lf = true;
            end
        };
        if line_end == pos {
            return Ok((lines, end + 1, bare_lf));
        }
        lines.push((pos, line_end));
        pos = end + 1;
    }
}

/// The index of the first `\n` in `b` at or after `from`, with `memchr`. On x86-64 its SSE2
/// searcher directly (SSE2 is always there): it inlines here, where the general `memchr`
/// goes through a run-time CPU dispatch (AVX2) for each line, which costs more than the
/// wider vectors gain on lines of 20 to 100 bytes.
#[inline(always)]
fn find_lf(b: &[u8], from: usize) -> Option<usize> {
    let rest = b.get(from..)?;
    find_in_line(rest, b'\n').map(|p| from + p)
}

/// The index of the first `byte` in `text`, a line or a header value (tens of bytes): on
/// x86-64 with memchr's SSE2 searcher directly (inlined, no run-time CPU dispatch, which
/// costs more than wider vectors gain on texts this short), elsewhere with `memchr`.
#[inline(always)]
pub fn find_in_line(text: &[u8], byte: u8) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    let found = match memchr::arch::x86_64::sse2::memchr::One::new(byte) {
        Some(sse2) => sse2.find(text),
        None => memchr::memchr(byte, text),
    };
    #[cfg(not(target_arch = "x86_64"))]
    let found = memchr::memchr(byte, text);
    found
}

/// [`find_in_line`] for the first of three bytes.
#[inline(always)]
pub(crate) fn find3_in_line(text: &[u8], a: u8, b: u8, c: u8) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    let found = match memchr::arch::x86_64::sse2::memchr::Three::new(a, b, c) {
        Some(sse2) => sse2.find(text),
        None => memchr::memchr3(a, b, c, text),
    };
    #[cfg(not(target_arch = "x86_64"))]
    let found = memchr::memchr3(a, b, c, text);
    found
}

/// Where the bytes being parsed come from: a borrowed slice (copied out as needed) or a
/// [`Bytes`] that slices share.
struct Source<'a> {
    /// The message after any leading CRLFs.
    buf: &'a [u8],
    /// The [`Bytes`] holding `buf` at offset `skip`, when the caller gave one.
    owner: Option<&'a Bytes>,
    skip: usize,
}

impl Source<'_> {
    fn bytes(&self, start: usize, end: usize) -> Bytes {
        match self.owner {
            Some(o) => o.slice(self.skip + start..self.skip + end),
            None => Bytes::copy_from_slice(&self.buf[start..end]),
        }
    }
}

/// The raw form of `start..end`: a range of the shared head text, or its own bytes.
fn raw_of(src: &Source<'_>, head: Option<&Arc<str>>, start: usize, end: usize) -> Raw {
    match head {
        // The head text is at most u32::MAX bytes long (checked where it is made).
        Some(h) => Raw::Text {
            head: Arc::clone(h),
            start: start as u32,
            end: end as u32,
        },
        None => Raw::Bytes(Box::new(src.bytes(start, end))),
    }
}

/// Reads one header (lines `hs..he`, folding included) into `headers`. `folded` says whether
/// continuation lines were joined. True when it is a Content-Length.
fn parse_header(
    src: &Source<'_>,
    head: Option<&Arc<str>>,
    (hs, he, line_no, folded): (usize, usize, usize, bool),
    headers: &mut Headers,
) -> Result<bool, ParseError> {
    let raw = &src.buf[hs..he];
    // The usual names, written in full and followed by the colon, in a few word compares.
    let (name, colon) = match HeaderName::at_line_start(raw) {
        Some(found) => found,
        None => read_name(head, raw, hs, line_no)?,
    };
    let is_length = matches!(name, HeaderName::ContentLength);
    let value_bytes = &raw[colon + 1..];
    let blank = |c: u8| c == b' ' || c == b'\t';
    // The usual `Name: value`: one space after the colon, none at the end (no search).
    let (start, end) = match value_bytes {
        [b' ', first, ..] if !blank(*first) && value_bytes.last().is_some_and(|&c| !blank(c)) => {
            (1, value_bytes.len())
        }
        _ => {
            let start = value_bytes
                .iter()
                .position(|&c| !blank(c))
                .unwrap_or(value_bytes.len());
            let end = value_bytes
                .iter()
                .rposition(|&c| !blank(c))
                .map_or(start, |e| e + 1);
            (start, end)
        }
    };
    match head {
        Some(_) if !folded || !value_bytes[start..end].contains(&b'\n') => {
            // The common case: one line, shared with the head text (no copy). The range is
            // bounded by ASCII bytes (`:`, SP, HT, line ends), so on character boundaries.
            let at = hs + colon + 1;
            headers.push_line(
                name,
                hs as u32,
                he as u32,
                ((at + start) as u32, (at + end) as u32),
            );
        }
        _ => headers.push(Header::parsed(
            name,
            unfold(value_bytes),
            raw_of(src, head, hs, he),
        )),
    }
    Ok(is_length)
}

/// Reads the name of header line `raw` (starting at `hs` of the head), for any name:
/// field-name = token, then optional SP/HT, then `:` (RFC 3261 §7.3.1) in one pass. Gives
/// the name and the index of the colon.
fn read_name(
    head: Option<&Arc<str>>,
    raw: &[u8],
    hs: usize,
    line_no: usize,
) -> Result<(HeaderName, usize), ParseError> {
    let name_end = raw
        .iter()
        .position(|&c| !is_token_char(c))
        .unwrap_or(raw.len());
    let mut colon = name_end;
    while colon < raw.len() && matches!(raw[colon], b' ' | b'\t') {
        colon += 1;
    }
    if name_end == 0 || raw.get(colon) != Some(&b':') {
        // Not `token [WS] :`: a bad name when there is a colon, a bad line when there is none.
        let kind = if raw.contains(&b':') {
            ErrorKind::BadHeaderName
        } else {
            ErrorKind::BadHeaderLine
        };
        return Err(ParseError::new(kind, line_no));
    }
    // Token characters are ASCII: the cut is a character boundary and the conversion cannot
    // fail. The head text gives the `&str` without checking the bytes again.
    let name = match head.and_then(|h| h.get(hs..hs + name_end)) {
        Some(name) => name,
        None => std::str::from_utf8(&raw[..name_end])
            .map_err(|_| ParseError::new(ErrorKind::BadHeaderName, line_no))?,
    };
    Ok((HeaderName::from_token(name), colon))
}

/// What [`split_lines`] finds besides the header spans.
struct Lines {
    /// The end of the start line (without its line end).
    start_end: usize,
    /// Where the body starts (after the empty line).
    body_at: usize,
    /// A line ended with a bare LF.
    bare_lf: bool,
    /// The first header line starts with white space (a fold with nothing to continue).
    leading_fold: bool,
}

/// Splits the header section of `buf` into lines (CRLF, or a bare LF tolerated and
/// flagged): the start line, then the header lines into `spans`, up to the empty line.
/// A function of its own (not inlined into `parse`): its loop keeps its state in registers.
#[inline(never)]
fn split_lines(buf: &[u8], spans: &mut Spans) -> Result<Lines, ParseError> {
    let mut bare_lf = false;
    let mut line_end = |pos: usize, lines: usize| -> Result<(usize, usize), ParseError> {
        let nl = find_lf(buf, pos).ok_or(ParseError::new(ErrorKind::Incomplete, lines + 1))?;
        let end = if nl > pos && buf[nl - 1] == b'\r' {
            nl - 1
        } else {
            bare_lf = true;
            nl
        };
        Ok((end, nl + 1))
    };
    let (start_end, mut pos) = line_end(0, 0)?;
    // Header lines, with folding (RFC 3261 §7.3.1: a line starting with SP/HT continues the
    // previous). Collected as (start, end, line number, folded) before the head text exists.
    let mut lines = 1;
    let mut leading_fold = false;
    let body_at = loop {
        let (end, next) = line_end(pos, lines)?;
        lines += 1;
        if end == pos {
            break next;
        }
        if matches!(buf[pos], b' ' | b'\t') {
            match spans.last_mut() {
                Some(last) => {
                    *last = Span {
                        folded: true,
                        ..Span::new(last.start as usize, end, last.line as usize)
                    };
                }
                None => {
                    // Reported after the start line, as a complete section's first error.
                    leading_fold = true;
                    spans.push(Span::new(pos, end, lines));
                }
            }
        } else {
            spans.push(Span::new(pos, end, lines));
        }
        pos = next;
    };
    Ok(Lines {
        start_end,
        body_at,
        bare_lf,
        leading_fold,
    })
}

/// The first Content-Length's line number and value, if any.
type FirstLength = Option<(usize, Result<ContentLength, HeaderError>)>;

/// Reads the header lines `spans` into `headers`. Gives the first Content-Length (what
/// `headers.typed()` would find) and its line number. A function of its own, as
/// [`split_lines`].
#[inline(never)]
fn read_headers(
    src: &Source<'_>,
    head: Option<&Arc<str>>,
    spans: &Spans,
    headers: &mut Headers,
) -> Result<FirstLength, ParseError> {
    // A header-section error found while reading is reported only when the section is
    // complete; otherwise the message is incomplete (the framer may be mid-stream).
    let or_incomplete = |e: ParseError| match split_head(src.buf) {
        Err(incomplete) => incomplete,
        Ok(_) => e,
    };
    let mut content_length = None;
    for span in spans.iter() {
        let is_length = parse_header(src, head, span.unpack(), headers).map_err(or_incomplete)?;
        if is_length && content_length.is_none() {
            content_length = headers
                .last_in(head)
                .map(|h| (headers.len() + 1, ContentLength::parse(h.value())));
        }
    }
    Ok(content_length)
}

/// What [`parse`] reads: bytes lent (the body is copied out) or a received buffer given (the
/// body is the buffer itself, or a slice of it).
enum Input<'a> {
    Borrowed(&'a [u8]),
    Owned(Bytes),
}

impl Input<'_> {
    /// The body, `range` of the input.
    fn body(self, range: std::ops::Range<usize>) -> Bytes {
        match self {
            _ if range.is_empty() => Bytes::new(),
            Input::Borrowed(b) => Bytes::copy_from_slice(&b[range]),
            // The body runs to the end (the usual datagram): the given buffer itself with its
            // head cut off. `slice` would clone it, and the clone of a `Bytes` made from a
            // `Vec` allocates a shared header; `advance` only moves the start (the buffer is
            // freed whole when the body is dropped, as a slice's is).
            Input::Owned(mut b) if range.end == b.len() => {
                b.advance(range.start);
                b
            }
            Input::Owned(b) => b.slice(range),
        }
    }
}

fn parse(input: Input<'_>) -> Result<Message, ParseError> {
    let (bytes, owner) = match &input {
        Input::Borrowed(b) => (*b, None),
        Input::Owned(b) => (&b[..], Some(b)),
    };
    // RFC 3261 §7.5: ignore CRLFs before the start line.
    let skip = bytes
        .iter()
        .take_while(|&&c| c == b'\r' || c == b'\n')
        .count();
    let src = Source {
        buf: &bytes[skip..],
        owner,
        skip,
    };
    let buf = src.buf;
    if buf.is_empty() {
        return Err(ParseError::new(ErrorKind::Empty, 0));
    }
    // Positions are kept in 32 bits (`Span`, `Raw::Text`): 4 GiB or more is refused (a
    // datagram is at most 64 KiB; `Message::parse` refuses more than that already).
    if u32::try_from(buf.len()).is_err() {
        return Err(ParseError::new(ErrorKind::TooLarge, 0));
    }
    // Split the header section into lines: the start line, then the header spans, up to
    // the empty line.
    let mut spans = Spans::new();
    let Lines {
        start_end: e0,
        body_at,
        bare_lf,
        leading_fold,
    } = split_lines(buf, &mut spans)?;

    // The header section as one shared UTF-8 text when it is (nearly always), so that header
    // values are `&str` ranges of it without a copy or a check per header. Checked with SIMD
    // (`simdutf8::basic` accepts exactly what `std::str::from_utf8` accepts, test
    // `the_head_check_accepts_what_std_accepts`), several times faster on a header section.
    let head: Option<Arc<str>> = match simdutf8::basic::from_utf8(&buf[..body_at]) {
        Ok(text) if u32::try_from(text.len()).is_ok() => Some(Arc::from(text)),
        _ => None,
    };
    let mut warnings = Vec::new();
    if bare_lf {
        warnings.push(Warning {
            header: None,
            line: 0,
            kind: WarningKind::BareLf,
        });
    }
    let start = parse_start_line(&buf[..e0], head.as_ref(), &mut warnings)?;
    let start_raw = raw_of(&src, head.as_ref(), 0, e0);
    if leading_fold {
        return Err(ParseError::new(ErrorKind::BadHeaderLine, 2));
    }

    let mut headers = Headers::with_capacity(spans.len);
    // The first Content-Length, noted while reading (what `headers.typed()` would find).
    let content_length = read_headers(&src, head.as_ref(), &spans, &mut headers)?;
    // The headers hold the head text (moved in, not shared once more); each parsed line is a
    // range of it.
    if let Some(head) = head {
        headers.attach_head(head);
    }

    // Body: bounded by Content-Length when present (RFC 3261 §18.3).
    let available = buf.len() - body_at;
    let body = match content_length {
        None => {
            if available > 0 {
                warnings.push(Warning {
                    header: None,
                    line: 0,
                    kind: WarningKind::MissingContentLength,
                });
            }
            body_at..buf.len()
        }
        Some((line, length)) => match length {
            Ok(ContentLength(n)) => {
                // u32 always fits in usize on the 32/64-bit targets we build for.
                let n = n as usize;
                if n > available {
                    return Err(ParseError::in_header(
                        ErrorKind::BodyTooShort {
                            declared: n,
                            available,
                        },
                        0,
                        HeaderName::ContentLength,
                    ));
                }
                if n < available {
                    warnings.push(Warning {
                        header: None,
                        line: 0,
                        kind: WarningKind::ExtraBytes,
                    });
                }
                body_at..body_at + n
            }
            Err(e) => {
                return Err(ParseError::in_header(
                    ErrorKind::BadHeaderValue(e),
                    line,
                    HeaderName::ContentLength,
                ));
            }
        },
    };
    // The body's range of the input (`buf` starts `skip` bytes in).
    let body = input.body(skip + body.start..skip + body.end);
    Ok(Message {
        start,
        start_raw,
        headers,
        body,
        warnings: (!warnings.is_empty()).then(|| Box::new(warnings)),
    })
}

/// A header's lines while the head is split: start, end, line number, folded. In 32-bit
/// fields (16 bytes, not 32: the inline spans are set up for every message parsed);
/// `parse` refuses input of 4 GiB or more before any span is made.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    start: u32,
    end: u32,
    line: u32,
    folded: bool,
}

impl Span {
    fn new(start: usize, end: usize, line: usize) -> Self {
        // `parse` refused input longer than u32::MAX: positions and line numbers (at most
        // one line per byte) fit, the casts cut nothing (no check per line needed).
        Self {
            start: start as u32,
            end: end as u32,
            line: line as u32,
            folded: false,
        }
    }

    fn unpack(&self) -> (usize, usize, usize, bool) {
        (
            self.start as usize,
            self.end as usize,
            self.line as usize,
            self.folded,
        )
    }
}

/// The header spans of one message: the first [`Spans::INLINE`] on the stack (a message
/// rarely has more), the rest in a list; one heap allocation less per message parsed.
struct Spans {
    inline: [Span; Spans::INLINE],
    len: usize,
    more: Vec<Span>,
}

impl Spans {
    const INLINE: usize = 32;

    fn new() -> Self {
        Self {
            inline: [Span::default(); Self::INLINE],
            len: 0,
            more: Vec::new(),
        }
    }

    fn push(&mut self, span: Span) {
        match self.inline.get_mut(self.len) {
            Some(slot) => *slot = span,
            None => self.more.push(span),
        }
        self.len += 1;
    }

    fn last_mut(&mut self) -> Option<&mut Span> {
        match self.len {
            0 => None,
            n if n <= Self::INLINE => self.inline.get_mut(n - 1),
            _ => self.more.last_mut(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Span> {
        self.inline[..self.len.min(Self::INLINE)]
            .iter()
            .chain(self.more.iter())
    }
}

/// Joins folded lines: CRLF + white space becomes one space; outer white space trimmed.
fn unfold(raw: &[u8]) -> String {
    // Header values are UTF-8 almost always: take the fast path, fall back to lossy.
    let s: std::borrow::Cow<'_, str> = match std::str::from_utf8(raw) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(raw),
    };
    if !raw.contains(&b'\n') {
        return s.trim_matches([' ', '\t']).to_owned();
    }
    let mut out = String::with_capacity(s.len());
    for (k, part) in s.split('\n').enumerate() {
        let part = part.trim_end_matches('\r');
        if k == 0 {
            out.push_str(part.trim_end_matches([' ', '\t']));
        } else {
            out.push(' ');
            out.push_str(part.trim_matches([' ', '\t']));
        }
    }
    out.trim_matches([' ', '\t']).to_owned()
}

/// `SIP/2.0 DDD[ reason]` read without splitting: the status line as the general reader in
/// `parse_start_line` reads it, or `None` for anything else (which that reader then reads,
/// or rejects with its precise error).
fn usual_status_line(line: &str) -> Option<StatusLine> {
    let b = line.as_bytes();
    if !b.get(..8)?.eq_ignore_ascii_case(b"SIP/2.0 ") {
        return None;
    }
    let digits = b.get(8..11)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // The reason is what follows the space after the code; no space, no reason.
    let reason = match b.get(11) {
        None => "",
        Some(b' ') => line.get(12..)?,
        Some(_) => return None,
    };
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if !(100..700).contains(&code) {
        return None;
    }
    Some(StatusLine {
        code,
        reason: reason_text(reason),
    })
}

/// Reads a status line (`line` starts with `SIP/`), any form.
fn read_status_line(line: &str) -> Result<StatusLine, ParseError> {
    let bad = |k| ParseError::new(k, 1);
    let mut it = line.splitn(3, ' ');
    let version = it.next().unwrap_or("");
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err(bad(ErrorKind::BadVersion));
    }
    let code = it.next().ok_or(bad(ErrorKind::BadStatusCode))?;
    if code.len() != 3 || !code.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad(ErrorKind::BadStatusCode));
    }
    let code: u16 = code.parse().map_err(|_| bad(ErrorKind::BadStatusCode))?;
    if !(100..700).contains(&code) {
        return Err(bad(ErrorKind::BadStatusCode));
    }
    let reason = reason_text(it.next().unwrap_or(""));
    Ok(StatusLine { code, reason })
}

/// Reads the start line `raw`; `head` is the header section as text when it is UTF-8 (the
/// start line is its beginning: no second check).
fn parse_start_line(
    raw: &[u8],
    head: Option<&Arc<str>>,
    warnings: &mut Vec<Warning>,
) -> Result<StartLine, ParseError> {
    let bad = |k| ParseError::new(k, 1);
    let line = match head.and_then(|h| h.get(..raw.len())) {
        Some(line) => line,
        None => std::str::from_utf8(raw).map_err(|_| bad(ErrorKind::BadStartLine))?,
    };
    if line
        .as_bytes()
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
    {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        return match usual_status_line(line) {
            Some(status) => Ok(StartLine::Response(status)),
            None => read_status_line(line).map(StartLine::Response),
        };
    }
    // Request-Line = Method SP Request-URI SP SIP-Version CRLF (exactly one SP each).
    let trimmed = line.trim_end_matches([' ', '\t']);
    if trimmed.len() != line.len() {
        warnings.push(Warning {
            header: None,
            line: 1,
            kind: WarningKind::StartLineWhitespace,
        });
    }
    // Up to three elements, and how many there were.
    let mut parts = [""; 3];
    let mut count = 0;
    let mut empty_after_method = false;
    for (k, p) in trimmed.split_b(b' ').enumerate() {
        if let Some(slot) = parts.get_mut(k) {
            *slot = p;
        }
        empty_after_method |= k > 0 && p.is_empty();
        count = k + 1;
    }
    if count != 3 {
        // Covers several spaces between elements and white space inside the Request-URI.
        if count > 3 && empty_after_method {
            return Err(bad(ErrorKind::BadStartLine));
        }
        if count > 3 {
            return Err(bad(ErrorKind::BadRequestUri(
                crate::error::UriError::InvalidChar,
            )));
        }
        return Err(bad(ErrorKind::BadStartLine));
    }
    let method = Method::parse(parts[0]).ok_or(bad(ErrorKind::BadMethod))?;
    if !parts[2].eq_ignore_ascii_case("SIP/2.0") {
        if parts[2]
            .as_bytes()
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
        {
            return Err(bad(ErrorKind::BadVersion));
        }
        return Err(bad(ErrorKind::BadStartLine));
    }
    let uri = UriRef::parse(parts[1]).map_err(|e| bad(ErrorKind::BadRequestUri(e)))?;
    // With the head text, the URI stays a range of it (the line starts the text; the URI
    // follows the method and one SP), made into a `Uri` only when asked for.
    let uri = match head {
        // The head text is at most u32::MAX bytes long (checked where it is made).
        Some(head) => RequestUri::InHead {
            head: Arc::clone(head),
            start: (parts[0].len() + 1) as u32,
            end: (parts[0].len() + 1 + parts[1].len()) as u32,
            spans: uri.as_sip().and_then(|u| SipUriSpans::of(parts[1], u)),
        },
        None => RequestUri::Given(uri.into_owned()),
    };
    Ok(StartLine::Request(RequestLine { method, uri }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@biloxi.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.com>\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    #[test]
    fn parses_rfc3261_invite() {
        let mut m = Message::parse(INVITE).unwrap();
        assert!(m.validate().unwrap().is_empty());
        assert_eq!(m.method(), Some(Method::Invite));
        assert_eq!(
            m.call_id().as_deref(),
            Some("a84b4c76e66710@pc33.atlanta.com")
        );
        assert_eq!(m.cseq().unwrap().seq, 314159);
        assert_eq!(m.from().unwrap().tag().as_deref(), Some("1928301774"));
        assert_eq!(m.to().unwrap().tag(), None);
        assert_eq!(
            m.top_via().unwrap().branch().as_deref(),
            Some("z9hG4bK776asdhds")
        );
        assert_eq!(m.body().as_ref(), b"v=0\n");
        assert_eq!(m.to_bytes(), INVITE);
    }

    /// The headers hold the head text once and each parsed line is a range of it: a header
    /// taken out of its message, copied into a response or into a message of another head,
    /// or outliving its message, still reads and prints the same value and bytes.
    #[test]
    fn header_lines_read_the_same_inside_and_outside_their_message() {
        const FOLDED: &[u8] = b"OPTIONS sip:x@y SIP/2.0\r\n\
Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
Subject: one\r\n two\r\n\
Call-ID: c2\r\n\
\r\n";
        let m = Message::parse(INVITE).unwrap();
        let lines: Vec<(String, String, Vec<u8>)> = m
            .headers
            .iter()
            .map(|h| {
                (
                    h.name().to_string(),
                    h.value().to_owned(),
                    h.raw().unwrap().to_vec(),
                )
            })
            .collect();
        assert_eq!(lines.len(), 9);
        assert_eq!(
            lines[1],
            (
                "Max-Forwards".into(),
                "70".into(),
                b"Max-Forwards: 70".to_vec()
            )
        );
        // Taken out whole, each one alone: the same value and bytes, after the message is gone.
        let mut copy = m.clone();
        let owned: Vec<Header> = m.headers.iter().map(HeaderRef::to_header).collect();
        let via = copy.headers.remove_first(&HeaderName::Via).unwrap();
        drop(m);
        for (h, (name, value, raw)) in owned.iter().zip(&lines) {
            assert_eq!(
                (h.name().to_string(), h.value(), h.raw()),
                (name.clone(), value.as_str(), Some(raw.as_slice()))
            );
            assert_eq!(h.by_ref().value(), value);
        }
        assert_eq!(via.value(), lines[0].1);
        assert_eq!(format!("{via:?}"), format!("{:?}", owned[0]));
        // Put back into a message of another head text (a folded one): printed as received.
        let mut other = Message::parse(FOLDED).unwrap();
        assert_eq!(other.headers.value(&HeaderName::Subject), Some("one two"));
        other.headers.push_front(via);
        other.headers.push(owned[2].clone());
        let printed = other.to_bytes();
        let text = String::from_utf8(printed).unwrap();
        assert!(
            text.starts_with("OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nSubject: one\r\n two\r\nCall-ID: c2\r\nTo: Bob <sip:bob@biloxi.com>\r\n"),
            "{text}"
        );
        assert_eq!(
            Message::parse(text.as_bytes())
                .unwrap()
                .headers
                .value(&HeaderName::To),
            Some("Bob <sip:bob@biloxi.com>")
        );
        // A response copies its request's lines (sharing the request's text) and prints them
        // as received; the request may go first.
        let req = Message::parse(INVITE).unwrap();
        let resp = Message::response_to(&req, 180, "Ringing", Some("t1"));
        let mut direct = Vec::new();
        Message::write_full_response(&req, 180, "Ringing", Some("t1"), &[], None, &mut direct);
        drop(req);
        assert_eq!(resp.to_bytes(), direct);
        let text = String::from_utf8(direct).unwrap();
        assert!(
            text.contains("\r\nFrom: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n"),
            "{text}"
        );
        assert!(
            text.contains("\r\nTo: Bob <sip:bob@biloxi.com>;tag=t1\r\n"),
            "{text}"
        );
        // The debug form lists the headers with their values.
        let debug = format!("{:?}", resp.headers);
        assert!(
            debug.starts_with("Headers([Header { name: Via, value: \"SIP/2.0/UDP"),
            "{debug}"
        );
    }

    #[test]
    fn retargeting_prints_the_new_uri_and_keeps_the_rest_as_received() {
        let mut m = Message::parse(INVITE).unwrap();
        let uri = Uri::parse("sip:bob@192.0.2.4:5062").unwrap();
        assert!(m.set_request_uri(uri.clone()));
        assert_eq!(m.request_uri().as_deref(), Some(&uri));
        let mut want = b"INVITE sip:bob@192.0.2.4:5062 SIP/2.0".to_vec();
        want.extend_from_slice(&INVITE[INVITE.iter().position(|&c| c == b'\r').unwrap()..]);
        assert_eq!(m.to_bytes(), want);
        let mut resp = Message::response_to(&m, 200, "OK", Some("t"));
        assert!(!resp.set_request_uri(uri));
        assert_eq!(resp.status(), Some(200));
        // position and insert: put a header back where it was.
        let i = m.headers.position(&HeaderName::To).unwrap();
        let to = m.headers.remove_first(&HeaderName::To).unwrap();
        m.headers.insert(i, to);
        assert_eq!(m.to_bytes(), want);
        m.headers.insert(99, Header::new(HeaderName::Subject, "x"));
        assert_eq!(m.headers.iter().last().unwrap().value(), "x");
        assert_eq!(
            m.headers.position(&HeaderName::Subject),
            Some(m.headers.len() - 1)
        );
        assert_eq!(m.headers.position(&HeaderName::Warning), None);
    }

    #[test]
    fn folding_compact_and_multi() {
        let raw = b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP a.example.com;branch=z9hG4bK1,\r\n SIP/2.0/UDP b.example.com;branch=z9hG4bK2\r\nVia: SIP/2.0/TCP c.example.com;branch=z9hG4bK3\r\nf: <sip:a@b>;tag=1\r\nt: <sip:c@d>;tag=2\r\ni: x@y\r\nCSeq: 1 REGISTER\r\nl: 0\r\nX-Odd :  anything goes\r\n\r\n";
        let mut m = Message::parse(raw).unwrap();
        m.validate().unwrap();
        let vias: Vec<_> = m
            .headers
            .typed_all::<Via>()
            .into_iter()
            .map(|v| v.unwrap().branch().unwrap())
            .collect();
        assert_eq!(vias, ["z9hG4bK1", "z9hG4bK2", "z9hG4bK3"]);
        assert_eq!(m.headers.value(&"x-odd".into()), Some("anything goes"));
        assert_eq!(m.status(), Some(200));
        assert_eq!(m.method(), Some(Method::Register));
        assert_eq!(m.to_bytes(), raw);
    }

    #[test]
    fn a_printed_answer_is_the_built_one() {
        // Compact names, a folded To, joined and repeated Vias, Record-Route, a To with a tag,
        // a header that is not copied: `write_response` + the empty line gives the bytes of
        // `response_to` + `to_bytes`, for every code class, with and without a To tag.
        let requests: [&[u8]; 4] = [
            INVITE,
            b"INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK7\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;TAG\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n",
            b"INVITE sip:b@h SIP/2.0\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/TCP b;branch=z9hG4bK2\r\nVia: SIP/2.0/UDP c;branch=z9hG4bK3\r\nRecord-Route: <sip:p;lr>\r\nf: <sip:a@h>;tag=1\r\nt: \"B\"\r\n  <sip:b@h>\r\ni: x@y\r\nCSeq: 1 INVITE\r\nX-Other: no\r\nl: 0\r\n\r\n",
            b"BYE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK9\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\n\r\n",
        ];
        for raw in requests {
            let req = Message::parse(raw).unwrap();
            for code in [100, 180, 200, 302, 401, 500] {
                for tag in [None, Some("t1")] {
                    let built = Message::response_to(&req, code, "Reason", tag);
                    let mut printed = Vec::new();
                    Message::write_response(&req, code, "Reason", tag, None, &mut printed);
                    printed.extend_from_slice(b"\r\n");
                    assert_eq!(
                        String::from_utf8_lossy(&printed),
                        String::from_utf8_lossy(&built.to_bytes())
                    );
                    // The first Via line replaced, as a proxy's answer does.
                    for vias in [&["SIP/2.0/UDP z;received=1.2.3.4"][..], &["V1", "V2, V3"]] {
                        let mut edited = built.clone();
                        let i = edited.headers.position(&HeaderName::Via).unwrap();
                        edited.headers.remove_first(&HeaderName::Via);
                        for (k, v) in vias.iter().enumerate() {
                            edited
                                .headers
                                .insert(i + k, Header::new(HeaderName::Via, *v));
                        }
                        let mut printed = Vec::new();
                        Message::write_response(
                            &req,
                            code,
                            "Reason",
                            tag,
                            Some(vias),
                            &mut printed,
                        );
                        printed.extend_from_slice(b"\r\n");
                        assert_eq!(printed, edited.to_bytes());
                    }
                }
            }
        }
    }

    #[test]
    fn a_request_kept_for_its_responses_answers_as_the_whole_one() {
        // The requests of `a_printed_answer_is_the_built_one` (compact names, a folded To,
        // joined Vias, Record-Route), one with a body, one whose header section is not UTF-8,
        // and a built one: the copy `keep_only` makes gives the same responses, byte for byte,
        // its headers read and print as the kept ones of the whole request, and its received
        // lines are its own (nothing of the whole request's text is kept alive).
        let copied = |n: &HeaderName| {
            n.is_copied_to_responses() || matches!(n, HeaderName::Require | HeaderName::Supported)
        };
        let mut requests: Vec<Message> = [
            INVITE,
            b"INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK7\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;TAG\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n",
            b"INVITE sip:b@h SIP/2.0\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/TCP b;branch=z9hG4bK2\r\nVia: SIP/2.0/UDP c;branch=z9hG4bK3\r\nRecord-Route: <sip:p;lr>\r\nf: <sip:a@h>;tag=1\r\nt: \"B\"\r\n  <sip:b@h>\r\ni: x@y\r\nCSeq: 1 INVITE\r\nX-Other: no\r\nSupported: 100rel\r\nl: 0\r\n\r\n",
            b"INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK5\r\nFrom: \"Zo\xeb\" <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 4\r\n\r\nv=0\n",
            b"INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK6\r\nFrom: <sip:a@h>;tag=1\r\nTo:   <sip:b@h> \r\nRequire: 100rel\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n",
        ]
        .iter()
        .map(|raw| Message::parse(raw).unwrap())
        .collect();
        let mut built = Message::new_request(Method::Invite, Uri::parse("sip:b@h").unwrap());
        for (n, v) in [
            (HeaderName::Via, "SIP/2.0/UDP a;branch=z9hG4bK8"),
            (HeaderName::From, "<sip:a@h>;tag=1"),
            (HeaderName::To, "<sip:b@h>"),
            (HeaderName::CallId, "c"),
            (HeaderName::CSeq, "1 INVITE"),
            (HeaderName::MaxForwards, "70"),
        ] {
            built.headers.push(Header::new(n, v));
        }
        requests.push(built);
        for req in &requests {
            let kept = req.clone().keep_only(copied);
            assert!(kept.body().is_empty());
            assert_eq!(kept.start_line(), req.start_line());
            let view = |m: &Message| -> Vec<(HeaderName, String, Option<Vec<u8>>)> {
                m.headers
                    .iter()
                    .filter(|h| copied(h.name()))
                    .map(|h| {
                        (
                            h.name().clone(),
                            h.value().to_owned(),
                            h.raw().map(<[u8]>::to_vec),
                        )
                    })
                    .collect()
            };
            assert_eq!(view(&kept), view(req));
            assert_eq!(kept.headers.len(), view(req).len());
            // Nothing of the whole request's head text is referred to by the copy.
            if let Raw::Text { head, .. } = &req.start_raw {
                let whole = head.as_bytes().as_ptr_range();
                let lines = kept.headers.iter().filter_map(|h| h.raw());
                let start = match &kept.start_raw {
                    Raw::Text { head, .. } => Some(head.as_bytes()),
                    _ => None,
                };
                for line in lines.chain(start) {
                    assert!(!whole.contains(&line.as_ptr()), "{req:?}");
                }
            }
            for code in [100, 180, 200, 487] {
                for tag in [None, Some("t1")] {
                    let extra = [Header::new(HeaderName::Contact, "<sip:b@10.0.0.2>")];
                    let body = (code == 200).then_some(("application/sdp", &b"v=0\r\n"[..]));
                    let (mut whole, mut copy) = (Vec::new(), Vec::new());
                    Message::write_full_response(req, code, "R", tag, &extra, body, &mut whole);
                    Message::write_full_response(&kept, code, "R", tag, &extra, body, &mut copy);
                    assert_eq!(
                        String::from_utf8_lossy(&whole),
                        String::from_utf8_lossy(&copy)
                    );
                    assert_eq!(
                        Message::response_to(req, code, "R", tag).to_bytes(),
                        Message::response_to(&kept, code, "R", tag).to_bytes()
                    );
                }
            }
        }
    }

    #[test]
    fn a_valueless_to_tag_is_replaced_not_doubled() {
        // `To: <uri>;tag` (no value): appending would give `<uri>;tag;tag=t1`, whose first,
        // valueless `tag` is the one a reader takes (no readable tag). The tag is set instead.
        let req = Message::parse(
            b"INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK7\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag;x=y\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n",
        )
        .unwrap();
        let built = Message::response_to(&req, 180, "Ringing", Some("t1"));
        let mut printed = Vec::new();
        Message::write_response(&req, 180, "Ringing", Some("t1"), None, &mut printed);
        printed.extend_from_slice(b"\r\n");
        for m in [built, Message::parse(&printed).unwrap()] {
            let to = m.headers.value(&HeaderName::To).unwrap().to_owned();
            assert_eq!(to.matches("tag").count(), 1, "{to}");
            assert_eq!(m.to().unwrap().tag().as_deref(), Some("t1"), "{to}");
        }
    }

    #[test]
    fn a_printed_full_answer_is_the_built_one() {
        // `write_full_response` gives the bytes of `response_to` + pushed headers +
        // `set_body` + `to_bytes`, including extra headers that `set_body` replaces or drops.
        let requests: [&[u8]; 2] = [
            INVITE,
            b"BYE sip:b@h SIP/2.0\r\nv: SIP/2.0/UDP a;branch=z9hG4bK9, SIP/2.0/UDP b;branch=z9hG4bK8\r\nRecord-Route: <sip:p;lr>\r\nFrom: <sip:a@h>;tag=1\r\nt: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 2 BYE\r\nl: 0\r\n\r\n",
        ];
        let extras: [Vec<Header>; 4] = [
            vec![],
            vec![
                Header::new(HeaderName::Contact, "<sip:b@10.0.0.2:5062>"),
                Header::new(HeaderName::Server, "ua"),
            ],
            vec![
                Header::new(HeaderName::ContentType, "text/plain"),
                Header::new(HeaderName::ContentLength, "99"),
                Header::new(HeaderName::Server, "ua"),
            ],
            vec![
                Header::new(HeaderName::ContentType, "a/b"),
                Header::new("X-Mid", "m"),
                Header::new(HeaderName::ContentType, "c/d"),
            ],
        ];
        let bodies: [Option<(&str, &[u8])>; 3] = [
            None,
            Some(("application/sdp", b"v=0\r\n")),
            Some(("application/sdp", b"")),
        ];
        for raw in requests {
            let req = Message::parse(raw).unwrap();
            for code in [100, 180, 200, 481] {
                for tag in [None, Some("t1")] {
                    for extra in &extras {
                        for body in bodies {
                            let mut built = Message::response_to(&req, code, "Reason", tag);
                            for h in extra {
                                built.headers.push(h.clone());
                            }
                            if let Some((ct, b)) = body {
                                built.set_body(ct, Bytes::copy_from_slice(b));
                            }
                            let mut printed = Vec::new();
                            Message::write_full_response(
                                &req,
                                code,
                                "Reason",
                                tag,
                                extra,
                                body,
                                &mut printed,
                            );
                            assert_eq!(
                                String::from_utf8_lossy(&printed),
                                String::from_utf8_lossy(&built.to_bytes()),
                                "{code} {tag:?} {extra:?} {body:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_name_fast_path_reads_what_the_general_reader_reads() {
        // The names the fast path knows, names close to them, and every one-byte change of
        // each (any byte value at any place, the colon and what follows included).
        let known = [
            "Via",
            "From",
            "To",
            "Call-ID",
            "CSeq",
            "Contact",
            "Content-Length",
            "Content-Type",
            "Max-Forwards",
            "Route",
            "Record-Route",
            "Require",
            "Allow",
            "Authorization",
            "Accept",
            "Supported",
            "Server",
            "User-Agent",
            "Expires",
            "Proxy-Authorization",
            "Proxy-Authenticate",
            "WWW-Authenticate",
        ];
        let near = [
            "v",
            "Vi",
            "Viaa",
            "Call-IDs",
            "Call_ID",
            "X",
            "Content-Lengths",
        ];
        let check = |line: &[u8]| {
            let general = read_name(None, line, 0, 2).ok();
            if let Some(fast) = HeaderName::at_line_start(line) {
                assert_eq!(
                    Some(&fast),
                    general.as_ref(),
                    "{:?}",
                    String::from_utf8_lossy(line)
                );
                assert!(!matches!(fast.0, HeaderName::Other(_)));
            }
        };
        let mut fast = 0;
        for name in known.iter().chain(&near) {
            for spelling in [name.to_string(), name.to_lowercase(), name.to_uppercase()] {
                for tail in [": x", ":", " : x", "\t:x", "x: y", ""] {
                    let line = format!("{spelling}{tail}").into_bytes();
                    if known.contains(name) && tail.starts_with(':') {
                        // The fast path is taken for every known name written in full.
                        assert!(HeaderName::at_line_start(&line).is_some(), "{spelling}");
                        fast += 1;
                    }
                    check(&line);
                    for i in 0..line.len() {
                        for b in 0..=255u8 {
                            let mut l = line.clone();
                            l[i] = b;
                            check(&l);
                        }
                    }
                }
            }
        }
        assert_eq!(fast, known.len() * 3 * 2);
        // And in a whole message: names in any case, white space before the colon, compact
        // forms and unknown names all come out as before.
        let msg = Message::parse(
            b"OPTIONS sip:a@b SIP/2.0\r\nvIA: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCALL-ID : c1\r\n\
f: <sip:a@b>;tag=1\r\nTo:<sip:b@b>\r\nCSeq:\t1 OPTIONS\r\nX-Via: 1\r\n\
Max-Forwards: 70\r\ncontent-length: 0\r\n\r\n",
        )
        .unwrap();
        let names: Vec<&str> = msg.headers.iter().map(|h| h.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "Via",
                "Call-ID",
                "From",
                "To",
                "CSeq",
                "X-Via",
                "Max-Forwards",
                "Content-Length"
            ]
        );
        assert_eq!(msg.headers.value(&HeaderName::CallId), Some("c1"));
        assert_eq!(msg.headers.value(&HeaderName::CSeq), Some("1 OPTIONS"));
    }

    #[test]
    fn the_status_line_fast_path_reads_what_the_general_reader_reads() {
        let lines = [
            "SIP/2.0 200 OK",
            "SIP/2.0 100 Trying",
            "sip/2.0 180 Ringing",
            "SIP/2.0 200",
            "SIP/2.0 200 ",
            "SIP/2.0 200  two spaces",
            "SIP/2.0 487 Request Terminated",
            "SIP/2.0 699 x",
            "SIP/2.0 700 x",
            "SIP/2.0 099 x",
            "SIP/2.0 20 OK",
            "SIP/2.0 2000 OK",
            "SIP/2.0  200 OK",
            "SIP/2.1 200 OK",
            "SIP/2.0 2x0 OK",
            "SIP/2.0 200\tOK",
            "SIP/2.0 200 Ünïcödé",
        ];
        let mut fast = 0;
        let mut check = |line: &str| {
            if let Some(f) = usual_status_line(line) {
                assert_eq!(Ok(f), read_status_line(line), "{line:?}");
                fast += 1;
            }
        };
        for line in lines {
            check(line);
            // Every one-byte change of the first twelve bytes (each ASCII value).
            for i in 0..line.len().min(12) {
                for c in 0..128u8 {
                    let mut b = line.as_bytes().to_vec();
                    b[i] = c;
                    if let Ok(l) = std::str::from_utf8(&b) {
                        check(l);
                    }
                }
            }
        }
        assert!(fast > 300, "{fast}");
        // Taken for the usual lines, and a parse gives the same message either way.
        for line in ["SIP/2.0 200 OK", "SIP/2.0 200", "SIP/2.0 200 "] {
            assert!(usual_status_line(line).is_some());
        }
        let m =
            Message::parse(b"SIP/2.0 183 Session Progress\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert_eq!(
            (m.status(), m.reason()),
            (Some(183), Some("Session Progress"))
        );
    }

    #[test]
    fn a_body_shared_with_the_datagram_is_the_copied_one() {
        let head = "MESSAGE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                    Call-ID: c\r\nCSeq: 1 MESSAGE\r\n";
        for (extra, rest) in [
            ("Content-Length: 5\r\n", "hello"),
            ("Content-Length: 3\r\n", "hello"),
            ("Content-Length: 0\r\n", "hello"),
            ("Content-Length: 0\r\n", ""),
            ("", "hello"),
            ("", ""),
        ] {
            for lead in ["", "\r\n\r\n"] {
                let text = format!("{lead}{head}{extra}\r\n{rest}");
                let copied = Message::parse(text.as_bytes()).unwrap();
                // A `Bytes` made from a `Vec` (what a driver hands on), and a static one.
                for owner in [
                    Bytes::from(text.clone().into_bytes()),
                    Bytes::from(text.clone()).slice(..),
                ] {
                    let shared = Message::parse_bytes(owner).unwrap();
                    assert_eq!(shared.body(), copied.body(), "{text:?}");
                    assert_eq!(shared.to_bytes(), copied.to_bytes(), "{text:?}");
                    assert_eq!(shared.warnings(), copied.warnings(), "{text:?}");
                    // The body outlives the message it came with, as a slice of it did.
                    let body = shared.body().clone();
                    drop(shared);
                    assert_eq!(&body[..], copied.body(), "{text:?}");
                }
            }
        }
    }

    #[test]
    fn the_first_content_length_bounds_the_body_and_a_bad_one_says_its_line() {
        // Two Content-Lengths: the first one counts (as `headers.typed()` reads it).
        let m = Message::parse(
            b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nl: 2\r\nContent-Length: 4\r\n\r\nabcd",
        )
        .unwrap();
        assert_eq!(&m.body()[..], b"ab");
        assert_eq!(m.warnings()[0].kind, WarningKind::ExtraBytes);
        // A bad value is reported on its own line, with the header named.
        let e = Message::parse(
            b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nX: y\r\ncontent-length: x1\r\n\r\n",
        )
        .unwrap_err();
        assert_eq!(
            (e.line(), e.header()),
            (4, Some(&HeaderName::ContentLength))
        );
        assert!(matches!(e.kind(), ErrorKind::BadHeaderValue(_)));
        // Folded lines before it do not shift the count of headers it is reported by.
        let e = Message::parse(
            b"MESSAGE sip:a@b SIP/2.0\r\nSubject: a\r\n b\r\nContent-Length: -1\r\n\r\n",
        )
        .unwrap_err();
        assert_eq!(
            (e.line(), e.header()),
            (3, Some(&HeaderName::ContentLength))
        );
        // None: the rest is the body, with a warning when there is one.
        let m =
            Message::parse(b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\nxyz").unwrap();
        assert_eq!(&m.body()[..], b"xyz");
        assert_eq!(m.warnings()[0].kind, WarningKind::MissingContentLength);
    }

    #[test]
    fn headers_copied_in_one_piece_print_as_one_by_one() {
        // The reference: the start line as printed, then each header as it prints alone.
        fn one_by_one(m: &Message) -> Vec<u8> {
            let all = m.to_bytes();
            let first = all.windows(2).position(|w| w == b"\r\n").unwrap();
            let mut out = all[..first + 2].to_vec();
            for h in m.headers.iter() {
                match h.raw() {
                    Some(raw) => out.extend_from_slice(raw),
                    None => {
                        out.extend_from_slice(format!("{}: {}", h.name(), h.value()).as_bytes())
                    }
                }
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(m.body());
            out
        }
        let check = |m: &Message, one_piece: bool| {
            assert_eq!(m.headers.as_one_block().is_some(), one_piece);
            assert_eq!(
                String::from_utf8_lossy(&m.to_bytes()),
                String::from_utf8_lossy(&one_by_one(m))
            );
        };
        // As parsed, as built: one piece.
        let parsed = Message::parse(INVITE).unwrap();
        check(&parsed, true);
        assert_eq!(parsed.to_bytes(), INVITE);
        let built = crate::RequestBuilder::new(Method::Options, Uri::parse("sip:b@h").unwrap())
            .call_id("c")
            .header("X-A", "1")
            .build();
        check(&built, true);
        // The top header taken away: the rest is still one run.
        let mut m = parsed.clone();
        m.headers.remove_first(&HeaderName::Via);
        check(&m, true);
        // A header taken from the middle, one put in front, one replaced: one by one.
        let mut m = parsed.clone();
        m.headers.remove(&HeaderName::To);
        check(&m, false);
        let mut m = parsed.clone();
        m.headers
            .push_front(Header::new("Via", "SIP/2.0/UDP p;branch=z9hG4bKx"));
        check(&m, false);
        let mut m = parsed.clone();
        m.headers.set(Header::new("Max-Forwards", "69"));
        check(&m, false);
        // Bare LF line ends are printed as CRLF, one by one.
        let lf =
            Message::parse(b"OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h\nCall-ID: x\n\n").unwrap();
        check(&lf, false);
        assert!(
            lf.to_bytes()
                .ends_with(b"Via: SIP/2.0/UDP h\r\nCall-ID: x\r\n\r\n")
        );
        // A folded line is kept as received, in one piece with the others.
        let folded =
            Message::parse(b"OPTIONS sip:a@b SIP/2.0\r\nSubject: a\r\n  b\r\nCall-ID: x\r\n\r\n")
                .unwrap();
        assert_eq!(
            folded.to_bytes(),
            b"OPTIONS sip:a@b SIP/2.0\r\nSubject: a\r\n  b\r\nCall-ID: x\r\n\r\n"
        );
        assert_eq!(folded.to_bytes(), one_by_one(&folded));
        // A header section that is not UTF-8: its own bytes, one by one.
        let raw = Message::parse(b"OPTIONS sip:a@b SIP/2.0\r\nSubject: \xff\r\nCall-ID: x\r\n\r\n")
            .unwrap();
        check(&raw, false);
        // An answer copies some of the request's lines.
        let answer = Message::response_to(&parsed, 200, "OK", Some("t1"));
        assert_eq!(answer.to_bytes(), one_by_one(&answer));
    }

    /// `write_full_response` prints the same bytes for its added headers given as a slice or
    /// chained from where they are (no list collected).
    #[test]
    fn a_full_response_prints_chained_headers_as_a_slice() {
        let req = Message::parse(INVITE).unwrap();
        let contact = Some(Header::new(HeaderName::Contact, "<sip:b@192.0.2.2>"));
        let none: Option<Header> = None;
        let lines = [
            Header::from_static(HeaderName::Require, "100rel"),
            Header::new(HeaderName::RSeq, "1"),
        ];
        let server = Header::from_shared(HeaderName::Server, Arc::from("x/1"));
        let all = vec![
            contact.clone().unwrap(),
            lines[0].clone(),
            lines[1].clone(),
            server.clone(),
        ];
        for body in [None, Some(("application/sdp", b"v=0\r\n".as_slice()))] {
            let mut from_slice = Vec::new();
            Message::write_full_response(
                &req,
                183,
                "Session Progress",
                Some("t"),
                &all,
                body,
                &mut from_slice,
            );
            let mut chained = Vec::new();
            let extra = contact
                .iter()
                .chain(&none)
                .chain(lines.iter())
                .chain(std::iter::once(&server));
            Message::write_full_response(
                &req,
                183,
                "Session Progress",
                Some("t"),
                extra,
                body,
                &mut chained,
            );
            assert_eq!(
                String::from_utf8_lossy(&chained),
                String::from_utf8_lossy(&from_slice)
            );
            assert!(
                String::from_utf8(chained)
                    .unwrap()
                    .contains("\r\nRequire: 100rel\r\nRSeq: 1\r\nServer: x/1\r\n")
            );
        }
    }

    /// A header of a shared text prints and reads as a built one, and its copies share the
    /// text (no copy of it).
    #[test]
    fn a_header_of_a_shared_text_prints_as_a_built_one() {
        let text: Arc<str> = Arc::from("sipmeter/1.0");
        let h = Header::from_shared(HeaderName::UserAgent, Arc::clone(&text));
        let copy = h.clone();
        assert_eq!(Arc::strong_count(&text), 3);
        assert_eq!(copy.value(), "sipmeter/1.0");
        assert!(std::ptr::eq(copy.value().as_ptr(), text.as_ptr()));
        assert_eq!(copy.raw(), None);
        let built = crate::RequestBuilder::new(Method::Options, Uri::parse("sip:b@h").unwrap())
            .call_id("c")
            .header_line(copy)
            .header("Subject", "x")
            .build();
        let printed = String::from_utf8(built.to_bytes()).unwrap();
        assert!(
            printed.contains("\r\nUser-Agent: sipmeter/1.0\r\nSubject: x\r\n"),
            "{printed}"
        );
        let mut resp = Message::new_response(200, "OK");
        resp.headers.push(h);
        assert!(
            String::from_utf8(resp.to_bytes())
                .unwrap()
                .contains("\r\nUser-Agent: sipmeter/1.0\r\n")
        );
        drop((built, resp));
        assert_eq!(Arc::strong_count(&text), 1);
    }

    /// Request-URIs built from pieces that print as written or not (scheme case, user with
    /// escapes and a password, names, IPv4 and IPv6 hosts, ports with leading zeros,
    /// parameters, headers).
    fn request_uri_texts() -> Vec<String> {
        let mut out = Vec::new();
        for scheme in ["sip:", "SIP:", "sips:", "Sip:"] {
            for user in ["", "alice@", "a%41b@", "bob:pw@", "a;b@", "a?b@", "+1-555@"] {
                // (Space-separated lists: none of the pieces holds a space.)
                for host in "example.com EXAMPLE.com 1.2.3.4 01.2.3.4 1.2.3.256 [::1] [0::1] h-1.x."
                    .split(' ')
                {
                    for port in ["", ":5060", ":05060", ":0", ":65535", ":7", ":00"] {
                        let tails = ";lr ;transport=TCP ?a=b ;a=1;a=2 ;Lr;lr ;a=b=c;lr \
                                     ;transport=udp;lr?h=v ;x=a:b ;x=a@b";
                        for tail in std::iter::once("").chain(tails.split_whitespace()) {
                            out.push(format!("{scheme}{user}{host}{port}{tail}"));
                        }
                    }
                }
            }
        }
        out.extend(["tel:+1555", "urn:service:sos", "sip:%61lice@h"].map(String::from));
        out
    }

    #[test]
    fn uris_that_print_as_written_print_as_written() {
        let mut shortcuts = 0;
        for text in request_uri_texts() {
            let Ok(uri) = Uri::parse(&text) else { continue };
            if prints_as_written(&text) {
                shortcuts += 1;
                assert_eq!(uri.to_string(), text);
            }
        }
        // Not vacuous: the usual forms take the shortcut.
        assert!(shortcuts > 50, "{shortcuts}");
        assert!(prints_as_written("sip:alice@192.0.2.1:5060"));
        assert!(prints_as_written("sip:reg.example"));
    }

    #[test]
    fn a_parsed_request_uri_reads_in_place_as_the_owned_one() {
        for text in request_uri_texts() {
            let raw = format!(
                "OPTIONS {text} SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                 Call-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            );
            let owned = Uri::parse(&text);
            let msg = Message::parse(raw.as_bytes());
            // The parse accepts exactly the URIs `Uri::parse` accepts, and gives that URI.
            assert_eq!(msg.is_ok(), owned.is_ok(), "{text}");
            let (Ok(msg), Ok(owned)) = (msg, owned) else {
                continue;
            };
            assert_eq!(msg.request_uri().as_deref(), Some(&owned), "{text}");
            assert_eq!(msg.request_uri_text(), Some(text.as_str()));
            // In place: the view the parse found (kept as ranges), as reading the text gives.
            assert_eq!(
                msg.request_uri_in_place(),
                UriRef::parse(&text).ok(),
                "{text}"
            );
            if let Some(printed) = msg.request_uri_printed() {
                assert_eq!(printed, owned.to_string());
            }
            // Kept alone (its own text), the same URI; printed as before.
            let kept = msg.clone().keep_only(|n| *n == HeaderName::CSeq);
            assert_eq!(kept.request_uri().as_deref(), Some(&owned), "{text}");
            assert_eq!(kept.request_uri_text(), Some(text.as_str()));
            assert_eq!(kept.request_uri_in_place(), UriRef::parse(&text).ok());
            assert!(
                kept.to_bytes()
                    .starts_with(format!("OPTIONS {text} SIP/2.0\r\n").as_bytes())
            );
            assert_eq!(kept.summary(), msg.summary());
            // Replaced: the new one, printed from the owned URI.
            let mut moved = msg;
            let target = Uri::parse("sip:bob@192.0.2.7").unwrap();
            assert!(moved.set_request_uri(target.clone()));
            assert_eq!(moved.request_uri().as_deref(), Some(&target));
            assert_eq!(moved.request_uri_text(), None);
            assert_eq!(moved.request_uri_in_place(), None);
            assert!(
                moved
                    .to_bytes()
                    .starts_with(b"OPTIONS sip:bob@192.0.2.7 SIP/2.0\r\n")
            );
        }
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_header_is_40_bytes() {
        // Every message holds one per line (parsed lines share the head text): kept small.
        // 56 bytes while a line taken out of its message held its head text inline and a
        // built value was a `String`.
        assert_eq!(std::mem::size_of::<HeaderName>(), 16);
        assert_eq!(std::mem::size_of::<Header>(), 40);
        // A message is inline in every transaction and behind every shared `Arc<Message>`:
        // 280 bytes (an `Arc` of it in mimalloc's 320-byte class, not the 384 of the 312
        // it was with its warnings' `Vec` inline, a 24-byte method and a 40-byte raw form).
        assert_eq!(std::mem::size_of::<Message>(), 280);
        assert_eq!(std::mem::size_of::<Method>(), 16);
    }

    #[test]
    fn reason_phrases_are_kept_as_sent() {
        // Usual phrases (kept as static text) and others (copied), printed back unchanged.
        for reason in [
            "OK",
            "Trying",
            "ok",
            "Okay then",
            "",
            "Unauthorized ",
            "Très bien",
        ] {
            let raw = format!(
                "SIP/2.0 200 {reason}\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n"
            );
            let m = Message::parse(raw.as_bytes()).unwrap();
            assert_eq!(m.reason(), Some(reason));
            assert_eq!(m.to_bytes(), raw.as_bytes());
            let built = Message::new_response(200, reason);
            assert_eq!(built.reason(), Some(reason));
            assert!(
                String::from_utf8(built.to_bytes())
                    .unwrap()
                    .starts_with(&format!("SIP/2.0 200 {reason}\r\n"))
            );
        }
    }

    #[test]
    fn the_head_check_accepts_what_std_accepts() {
        // `parse` takes the header section as text when `simdutf8::basic::from_utf8` accepts
        // it; that must be exactly when std's check does. Valid and invalid sequences of every
        // kind (overlong, surrogate, above U+10FFFF, truncated, stray continuation, 0xFF)
        // placed at every offset around the vector widths (16, 32, 64 bytes) of ASCII text.
        let pieces: [&[u8]; 16] = [
            "é".as_bytes(),
            "€".as_bytes(),
            "😀".as_bytes(),
            b"\xC3",
            b"\xE2\x82",
            b"\xF0\x9F\x98",
            b"\x80",
            b"\xBF",
            b"\xC0\xAF",
            b"\xE0\x80\xAF",
            b"\xED\xA0\x80",
            b"\xF4\x90\x80\x80",
            b"\xF8\x88\x80\x80\x80",
            b"\xFF",
            b"\xFE",
            b"\x00",
        ];
        for len in [
            0usize, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 200,
        ] {
            let ascii = vec![b'a'; len];
            assert!(simdutf8::basic::from_utf8(&ascii).is_ok());
            for piece in pieces {
                for at in 0..=len {
                    let mut b = ascii.clone();
                    b.splice(at..at, piece.iter().copied());
                    assert_eq!(
                        simdutf8::basic::from_utf8(&b).is_ok(),
                        std::str::from_utf8(&b).is_ok(),
                        "{piece:x?} at {at} of {len}"
                    );
                }
            }
        }
        // A real header section with a non-ASCII display name, then with a broken one.
        let good = "INVITE sip:b@h SIP/2.0\r\nFrom: \"Zoë\" <sip:a@h>;tag=1\r\n\r\n";
        assert!(simdutf8::basic::from_utf8(good.as_bytes()).is_ok());
        let mut bad = good.as_bytes().to_vec();
        let at = good.find('ë').unwrap();
        bad[at + 1] = b'x';
        assert!(simdutf8::basic::from_utf8(&bad).is_err());
        assert!(std::str::from_utf8(&bad).is_err());
    }

    #[test]
    fn find_lf_finds_what_a_byte_by_byte_scan_finds() {
        // Buffers of every length up to 40, and lengths around memchr's vector sizes and
        // unrolled loops (16, 32, 64, 128 bytes), with a `\n` at every place or none, near
        // misses around it (0x0B and 0x0A ^ 0x80 are one bit away, 0x00 and 0xFF the
        // extremes), searched from every start (long buffers: the first 40 starts, around
        // the `\n` and the end).
        let long = [
            63, 64, 65, 95, 96, 97, 127, 128, 129, 130, 159, 191, 255, 256, 257,
        ];
        for len in (0..=40usize).chain(long) {
            for lf in (0..len).map(Some).chain([None]) {
                for filler in [b'a', 0x0B, 0x8A, 0x00, 0xFF, b'\r'] {
                    let mut b = vec![filler; len];
                    if let Some(at) = lf {
                        b[at] = b'\n';
                        // A second one further on: the first must be found.
                        if at + 3 < len {
                            b[at + 3] = b'\n';
                        }
                    }
                    let starts: Vec<usize> = if len <= 40 {
                        (0..=len + 1).collect()
                    } else {
                        let near = lf.map_or(0, |at| at.saturating_sub(2));
                        (0..=40)
                            .chain(near..near + 5)
                            .chain(len - 2..=len + 1)
                            .collect()
                    };
                    for from in starts {
                        let expected = b
                            .get(from..)
                            .and_then(|r| r.iter().position(|&c| c == b'\n'))
                            .map(|p| p + from);
                        assert_eq!(find_lf(&b, from), expected, "{b:?} from {from}");
                    }
                }
            }
        }
    }

    #[test]
    fn values_are_trimmed_as_the_general_trim_does() {
        // Every value of up to four bytes from SP, HT, `x`, `0` and `:` after the colon (the
        // `Name: value` fast path and every other shape), for a known name and an unknown one.
        let alphabet = [b' ', b'\t', b'x', b'0', b':'];
        let mut values: Vec<Vec<u8>> = vec![Vec::new()];
        for len in 1..=4 {
            let mut more = Vec::new();
            for v in values.iter().filter(|v| v.len() == len - 1) {
                for &c in &alphabet {
                    let mut w = v.clone();
                    w.push(c);
                    more.push(w);
                }
            }
            values.extend(more);
        }
        for v in &values {
            for name in ["Subject", "X-Other", "Content-Length"] {
                let mut msg = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
                msg.extend_from_slice(name.as_bytes());
                msg.push(b':');
                msg.extend_from_slice(v);
                msg.extend_from_slice(b"\r\nCall-ID: c\r\n\r\n");
                let text = std::str::from_utf8(v).unwrap();
                let expected = text.trim_matches([' ', '\t']);
                match Message::parse(&msg) {
                    Ok(m) => {
                        let h = m.headers.iter().next().unwrap();
                        assert_eq!(h.value(), expected, "{name}:{text:?}");
                        assert_eq!(m.to_bytes(), msg, "{name}:{text:?}");
                    }
                    // Only a Content-Length that is not a number is refused.
                    Err(e) => assert_eq!(
                        (name, e.header()),
                        ("Content-Length", Some(&HeaderName::ContentLength)),
                        "{text:?}"
                    ),
                }
            }
        }
    }

    #[test]
    fn built_start_lines_print_as_before_on_the_stack_or_not() {
        let first_line = |m: &Message| {
            let b = m.to_bytes();
            let end = b.windows(2).position(|w| w == b"\r\n").unwrap();
            String::from_utf8(b[..end].to_vec()).unwrap()
        };
        // Request-URIs of every length around the stack buffer's size.
        for user in 0..=LineBuf::SIZE + 8 {
            let text = format!(
                "sip:{}@h.example.com;transport=tcp",
                "u".repeat(user.max(1))
            );
            let uri = Uri::parse(&text).unwrap();
            for method in [Method::Invite, Method::parse("X-LONG-METHOD-NAME").unwrap()] {
                let m = crate::RequestBuilder::new(method.clone(), uri.clone())
                    .call_id("c")
                    .build();
                assert_eq!(first_line(&m), format!("{method} {text} SIP/2.0"));
                assert_eq!(
                    Message::parse(&m.to_bytes())
                        .unwrap()
                        .request_uri()
                        .as_deref(),
                    Some(&uri)
                );
            }
        }
        // Status lines, usual codes and not, reasons short and long.
        let long = "r".repeat(LineBuf::SIZE);
        for code in [0, 99, 100, 180, 486, 699, 1000, u16::MAX] {
            for reason in ["", "OK", "Busy Here", long.as_str()] {
                let m = Message::new_response(code, reason);
                assert_eq!(first_line(&m), format!("SIP/2.0 {code} {reason}"));
            }
        }
    }

    #[test]
    fn many_headers_and_folding_past_the_inline_spans() {
        // More header lines than `Spans` keeps on the stack, with folded lines on both sides
        // of the boundary: every header is read, in order, and printed back as received.
        for folded_at in [30, 31, 32, 33, 40] {
            let mut raw = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
            for i in 0..45 {
                raw.extend_from_slice(format!("X-H{i}: v{i}\r\n").as_bytes());
                if i == folded_at {
                    raw.extend_from_slice(b" more\r\n\tend\r\n");
                }
            }
            raw.extend_from_slice(b"Content-Length: 0\r\n\r\n");
            let m = Message::parse(&raw).unwrap();
            assert_eq!(m.headers.len(), 46);
            for i in 0..45 {
                let want = if i == folded_at {
                    format!("v{i} more end")
                } else {
                    format!("v{i}")
                };
                let name: HeaderName = format!("X-H{i}").as_str().into();
                assert_eq!(m.headers.value(&name), Some(want.as_str()), "header {i}");
            }
            assert_eq!(m.to_bytes(), raw);
            let line = raw.len() - 4;
            let mut broken = raw[..line].to_vec();
            broken.extend_from_slice(b"\r\nBad Header\r\n\r\n");
            let e = Message::parse(&broken).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::BadHeaderLine);
        }
    }

    #[test]
    fn errors_say_where() {
        let e = Message::parse(b"INVITE sip:a@b SIP/2.0\r\nVia SIP/2.0/UDP x\r\n\r\n").unwrap_err();
        assert_eq!((e.kind(), e.line()), (ErrorKind::BadHeaderLine, 2));
        let e = Message::parse(b"INVITE sip:a@b SIP/7.0\r\n\r\n").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadVersion);
        let e = Message::parse(b"SIP/2.0 4294967301 Huge\r\n\r\n").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadStatusCode);
        let e =
            Message::parse(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\nabc").unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::BodyTooShort {
                declared: 10,
                available: 3
            }
        );
        assert_eq!(
            e.to_string(),
            "Content-Length: body shorter than content-length (10 declared, 3 present)"
        );
        let e = Message::parse(b"INVITE sip:a@b SIP/2.0\r\nVia: x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Incomplete);
        let e = Message::parse(b"INVITE  sip:a@b SIP/2.0\r\n\r\n").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadStartLine);
        let mut m = Message::parse(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: 1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\r\n").unwrap();
        let e = m.validate().unwrap_err();
        assert_eq!(
            (e.kind(), e.line(), e.header()),
            (ErrorKind::CSeqMethodMismatch, 6, Some(&HeaderName::CSeq))
        );
    }

    #[test]
    fn response_copies_headers() {
        let req = Message::parse(INVITE).unwrap();
        let resp = Message::response_to(&req, 180, "Ringing", Some("abc"));
        let mut again = Message::parse(&resp.to_bytes()).unwrap();
        again.validate().unwrap();
        assert_eq!(again.to().unwrap().tag().as_deref(), Some("abc"));
        assert_eq!(again.call_id(), req.call_id());
        assert_eq!(again.summary(), "180 Ringing (INVITE)");
        // Copied lines are the request's, byte for byte (compact forms and folding too).
        let raw = b"INVITE sip:b@x SIP/2.0\r\nv: SIP/2.0/UDP p;branch=z9hG4bK1,\r\n SIP/2.0/UDP q;branch=z9hG4bK2\r\n\
f: <sip:a@x>;tag=1\r\nt: <sip:b@x>\r\ni: c\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n";
        let req = Message::parse(raw).unwrap();
        let resp = Message::response_to(&req, 200, "OK", Some("z"));
        let text = String::from_utf8(resp.to_bytes()).unwrap();
        assert_eq!(
            text,
            "SIP/2.0 200 OK\r\nv: SIP/2.0/UDP p;branch=z9hG4bK1,\r\n SIP/2.0/UDP q;branch=z9hG4bK2\r\n\
f: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=z\r\ni: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        let again = Message::parse(text.as_bytes()).unwrap();
        assert_eq!(again.headers.get_all(&HeaderName::Via).count(), 1);
        assert_eq!(
            again.top_via().unwrap().branch().as_deref(),
            Some("z9hG4bK1")
        );
    }
}
