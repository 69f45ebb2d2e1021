//! Header names, raw headers, and the lazily parsed typed views.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::HeaderError;
use crate::text::{TopSplit, check_top, first_top, split_top, trim_fast};

macro_rules! header_names {
    ($( $variant:ident => $canon:literal $(, $compact:literal)? ; )*) => {
        /// A header name: the well-known ones as variants, any other kept as written.
        /// Names compare case-insensitively; compact forms map to their long form.
        #[derive(Debug, Clone)]
        pub enum HeaderName {
            $(
                #[doc = concat!("`", $canon, "`")]
                $variant,
            )*
            /// A header this crate has no name for, kept as written (behind one thin pointer:
            /// the name is 16 bytes in every header of every message).
            Other(Box<String>),
        }

        impl HeaderName {
            /// The canonical spelling (`Call-ID`, `CSeq`, …), or the name as written.
            pub fn as_str(&self) -> &str {
                match self {
                    $( HeaderName::$variant => $canon, )*
                    HeaderName::Other(s) => s.as_str(),
                }
            }

            /// The name for `s`, recognising long and compact forms in any case.
            pub fn from_name(s: &str) -> Self {
                if crate::text::is_token(s) {
                    Self::from_token(s)
                } else {
                    Self::from_any(s)
                }
            }

            /// [`HeaderName::from_name`] for a name already checked to be a token.
            pub(crate) fn from_token(s: &str) -> Self {
                match Self::frequent(s.as_bytes()) {
                    Some(name) => name,
                    None => Self::from_any(s),
                }
            }

            fn from_any(s: &str) -> Self {
                let b = s.as_bytes();
                if let [c] = b {
                    // Compact forms are single letters (RFC 3261 §7.3.3).
                    let c = c.to_ascii_lowercase();
                    $($(
                        if c == $compact.as_bytes()[0] {
                            return HeaderName::$variant;
                        }
                    )?)*
                }
                // One pass, most frequent names first (the list order); the length test
                // rejects most candidates before any byte is compared.
                $(
                    if b.len() == $canon.len() && b.eq_ignore_ascii_case($canon.as_bytes()) {
                        return HeaderName::$variant;
                    }
                )*
                HeaderName::Other(Box::new(s.to_owned()))
            }
        }
    };
}

// RFC 3261 §7.3.3 and §20; compact forms from RFC 3261, RFC 3515 (r), RFC 3892 (b),
// RFC 3265 (o, u), RFC 4028 (x), RFC 3841 (j, d); Replaces (RFC 3891) and Service-Route
// (RFC 3608) have none. `from_name` tries the names in this order: the headers of every
// request and response come first.
header_names! {
    Via => "Via", "v";
    From => "From", "f";
    To => "To", "t";
    CallId => "Call-ID", "i";
    CSeq => "CSeq";
    Contact => "Contact", "m";
    MaxForwards => "Max-Forwards";
    ContentLength => "Content-Length", "l";
    ContentType => "Content-Type", "c";
    Route => "Route";
    RecordRoute => "Record-Route";
    Allow => "Allow";
    Supported => "Supported", "k";
    UserAgent => "User-Agent";
    Server => "Server";
    Expires => "Expires";
    Authorization => "Authorization";
    ProxyAuthorization => "Proxy-Authorization";
    WwwAuthenticate => "WWW-Authenticate";
    ProxyAuthenticate => "Proxy-Authenticate";
    Require => "Require";
    Event => "Event", "o";
    AllowEvents => "Allow-Events", "u";
    SubscriptionState => "Subscription-State";
    Date => "Date";
    Reason => "Reason";
    SessionExpires => "Session-Expires", "x";
    MinSe => "Min-SE";
    RSeq => "RSeq";
    RAck => "RAck";
    Accept => "Accept";
    AcceptEncoding => "Accept-Encoding";
    AcceptLanguage => "Accept-Language";
    AlertInfo => "Alert-Info";
    AuthenticationInfo => "Authentication-Info";
    CallInfo => "Call-Info";
    ContentDisposition => "Content-Disposition";
    ContentEncoding => "Content-Encoding", "e";
    ContentLanguage => "Content-Language";
    ErrorInfo => "Error-Info";
    InReplyTo => "In-Reply-To";
    MimeVersion => "MIME-Version";
    MinExpires => "Min-Expires";
    Organization => "Organization";
    Path => "Path";
    Priority => "Priority";
    ProxyRequire => "Proxy-Require";
    ReferTo => "Refer-To", "r";
    ReferredBy => "Referred-By", "b";
    Replaces => "Replaces";
    RejectContact => "Reject-Contact", "j";
    ReplyTo => "Reply-To";
    RequestDisposition => "Request-Disposition", "d";
    RetryAfter => "Retry-After";
    Subject => "Subject", "s";
    Timestamp => "Timestamp";
    Unsupported => "Unsupported";
    Warning => "Warning";
    AcceptContact => "Accept-Contact", "a";
    ServiceRoute => "Service-Route";
}

impl HeaderName {
    /// The headers a response copies from its request: Via, From, To (its tag added),
    /// Call-ID, CSeq (RFC 3261 §8.2.6.2) and Record-Route (§12.1.1; in 1xx-2xx only).
    pub fn is_copied_to_responses(&self) -> bool {
        matches!(
            self,
            HeaderName::Via
                | HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
                | HeaderName::RecordRoute
        )
    }
}

impl HeaderName {
    /// The headers of nearly every message, found by length and first letter.
    #[inline]
    fn frequent(b: &[u8]) -> Option<Self> {
        let first = b.first()?.to_ascii_lowercase();
        let (name, canon) = match (b.len(), first) {
            (3, b'v') => (HeaderName::Via, "Via"),
            (4, b'f') => (HeaderName::From, "From"),
            (2, b't') => (HeaderName::To, "To"),
            (7, b'c') if b[1].eq_ignore_ascii_case(&b'a') => (HeaderName::CallId, "Call-ID"),
            (7, b'c') => (HeaderName::Contact, "Contact"),
            (4, b'c') => (HeaderName::CSeq, "CSeq"),
            (12, b'm') => (HeaderName::MaxForwards, "Max-Forwards"),
            (14, b'c') => (HeaderName::ContentLength, "Content-Length"),
            (12, b'c') => (HeaderName::ContentType, "Content-Type"),
            (5, b'r') => (HeaderName::Route, "Route"),
            (12, b'r') => (HeaderName::RecordRoute, "Record-Route"),
            (5, b'a') => (HeaderName::Allow, "Allow"),
            (9, b's') => (HeaderName::Supported, "Supported"),
            (10, b'u') => (HeaderName::UserAgent, "User-Agent"),
            (7, b'e') => (HeaderName::Expires, "Expires"),
            (19, b'p') => (HeaderName::ProxyAuthorization, "Proxy-Authorization"),
            (13, b'a') => (HeaderName::Authorization, "Authorization"),
            _ => return None,
        };
        eq_fold_token(b, canon.as_bytes()).then_some(name)
    }
}

impl HeaderName {
    /// The name at the start of a header line `raw` when it is one of the names of nearly
    /// every message, written in full (any case) and followed at once by `:`: the name and
    /// its length. Compares whole words, without reading the name byte by byte first.
    /// `None` for anything else (compact forms, white space before the colon, other
    /// names): the general reader then gives the same answer, only slower.
    #[inline]
    pub(crate) fn at_line_start(raw: &[u8]) -> Option<(Self, usize)> {
        macro_rules! try_names {
            ($( $variant:ident => $canon:literal ),* $(,)?) => {{
                $(
                    if starts_with_name(raw, $canon) {
                        return Some((HeaderName::$variant, $canon.len()));
                    }
                )*
            }};
        }
        match raw.first()? | 0x20 {
            b'v' => try_names!(Via => b"Via"),
            b'f' => try_names!(From => b"From"),
            b't' => try_names!(To => b"To"),
            b'c' => try_names!(
                CallId => b"Call-ID",
                CSeq => b"CSeq",
                Contact => b"Contact",
                ContentLength => b"Content-Length",
                ContentType => b"Content-Type",
            ),
            b'm' => try_names!(MaxForwards => b"Max-Forwards"),
            b'r' => {
                try_names!(Route => b"Route", RecordRoute => b"Record-Route", Require => b"Require")
            }
            b'a' => {
                try_names!(Allow => b"Allow", Authorization => b"Authorization", Accept => b"Accept")
            }
            b's' => try_names!(Supported => b"Supported", Server => b"Server"),
            b'u' => try_names!(UserAgent => b"User-Agent"),
            b'e' => try_names!(Expires => b"Expires"),
            b'p' => try_names!(
                ProxyAuthorization => b"Proxy-Authorization",
                ProxyAuthenticate => b"Proxy-Authenticate",
            ),
            b'w' => try_names!(WwwAuthenticate => b"WWW-Authenticate"),
            _ => {}
        }
        None
    }
}

/// True when `raw` starts with `canon` (letters in any case, other bytes exactly) followed
/// by `:`. Eight bytes at a time; `canon` is a constant, so its words and letter masks fold.
#[inline(always)]
fn starts_with_name(raw: &[u8], canon: &'static [u8]) -> bool {
    let n = canon.len();
    if raw.get(n) != Some(&b':') {
        return false;
    }
    let mut i = 0;
    while i < n {
        let e = (i + 8).min(n);
        // `e <= n < raw.len()`: both ranges are in bounds.
        let (x, y) = (word(&raw[i..e]), word(&canon[i..e]));
        // A letter may differ from the canonical one in bit 0x20 (case) only; any other byte
        // must be equal.
        if (x ^ y) & !letter_bits(&canon[i..e]) != 0 {
            return false;
        }
        i = e;
    }
    true
}

/// Up to eight bytes as a little-endian word, zero-padded.
#[inline(always)]
fn word(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w[..b.len()].copy_from_slice(b);
    u64::from_le_bytes(w)
}

/// 0x20 in each byte of the word where `b` holds an ASCII letter.
#[inline(always)]
fn letter_bits(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    for (slot, c) in w.iter_mut().zip(b) {
        if c.is_ascii_alphabetic() {
            *slot = 0x20;
        }
    }
    u64::from_le_bytes(w)
}

/// `a.eq_ignore_ascii_case(b)` for two tokens. Setting bit 0x20 folds
/// case and maps no other token character onto another one (only letters, and characters
/// that are not token characters, differ from others in that bit alone).
fn eq_fold_token(a: &[u8], b: &[u8]) -> bool {
    // No early exit: a short branch-free loop.
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .fold(0u8, |acc, (x, y)| acc | ((x ^ y) & !0x20))
            == 0
}

impl PartialEq for HeaderName {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (HeaderName::Other(a), HeaderName::Other(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

impl Eq for HeaderName {}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for HeaderName {
    fn from(s: &str) -> Self {
        HeaderName::from_name(s)
    }
}

/// One header line: its name, its unfolded value, and (when parsed) the exact bytes received.
/// A header held by a message is read through [`HeaderRef`] (`headers.get(..)`,
/// `headers.iter()`): a parsed line is a range of the message's head text, which the
/// [`Headers`] holds once (one reference count per message, not one per header). A `Header`
/// of its own (built, or taken out of a message) holds what it needs.
#[derive(Clone)]
pub struct Header {
    name: HeaderName,
    repr: Repr,
}

/// How a header's value and received bytes are held.
#[derive(Clone)]
enum Repr {
    /// A line of the head text of the [`Headers`] that holds it, value needing no unfolding:
    /// the line is `start..end` of that text and the value (trimmed) `value.0..value.1`. No
    /// copy, no reference count. Never found outside a `Headers` (taken out, it becomes
    /// [`Repr::Shared`]).
    InHead {
        /// First byte of the line(s).
        start: u32,
        /// End of the line(s), without the final CRLF.
        end: u32,
        /// The value's range.
        value: (u32, u32),
    },
    /// [`Repr::InHead`] taken out of its message: it holds the head text itself (boxed, rare:
    /// a header taken out of a message, or copied into one holding another text).
    Shared(Box<SharedLine>),
    /// Parsed, with a value that needed unfolding or repair (rare: boxed to keep `Header`
    /// small): the owned value and the received bytes.
    Parsed(Box<(String, Raw)>),
    /// Built locally: printed as `Name: value` (a `Box<str>`, not a `String`: the list's
    /// slot is sized by its largest form).
    Owned(Box<str>),
    /// Built locally from a constant (`Content-Length: 0`): no allocation.
    Static(&'static str),
    /// Built locally from a shared text (a phone group's `User-Agent`): a copy of the header
    /// costs a reference count, not an allocation.
    SharedText(Arc<str>),
}

impl Repr {
    /// The value's range in the head text, for a line of one.
    fn line_value(&self) -> Option<(u32, u32)> {
        match self {
            Repr::InHead { value, .. } => Some(*value),
            Repr::Shared(l) => Some(l.value),
            _ => None,
        }
    }
}

/// A line of a head text held with the text ([`Repr::Shared`]).
#[derive(Clone)]
struct SharedLine {
    /// The header section as received.
    head: Arc<str>,
    /// First byte of the line(s).
    start: u32,
    /// End of the line(s), without the final CRLF.
    end: u32,
    /// The value's range.
    value: (u32, u32),
}

/// Where a header's received bytes live.
#[derive(Clone)]
pub(crate) enum Raw {
    /// Built locally: printed as `Name: value`.
    None,
    /// `start..end` of the received header section, valid UTF-8 as a whole and shared by
    /// every header of the message (one reference count, no copy per header).
    Text {
        /// The header section as received.
        head: Arc<str>,
        /// First byte of the line(s).
        start: u32,
        /// End of the line(s), without the final CRLF.
        end: u32,
    },
    /// The exact bytes of a header section that is not valid UTF-8 (rare: boxed, so that a
    /// message's start line holds 32 bytes for its received form, not 40).
    Bytes(Box<Bytes>),
}

impl Raw {
    /// The bytes, if any.
    pub(crate) fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Raw::None => None,
            // Ranges were cut at line ends, which are ASCII: always in bounds and on
            // character boundaries; the empty fallback keeps the function total.
            Raw::Text { head, start, end } => Some(
                head.as_bytes()
                    .get(*start as usize..*end as usize)
                    .unwrap_or_default(),
            ),
            Raw::Bytes(b) => Some(b),
        }
    }
}

impl fmt::Debug for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_bytes() {
            Some(b) => fmt::Debug::fmt(&String::from_utf8_lossy(b), f),
            None => f.write_str("None"),
        }
    }
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.by_ref(), f)
    }
}

impl Header {
    /// A header built locally (printed as `Name: value`).
    pub fn new(name: impl Into<HeaderName>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            repr: Repr::Owned(value.into().into_boxed_str()),
        }
    }

    /// A header built locally whose value `write` appends to an empty string: written in
    /// the thread's scratch text (the one the request builder writes heads in) and kept in a
    /// block of exactly its length (one allocation; a `String` with room to spare would be
    /// shrunk into the header, a reallocation).
    pub fn written(name: HeaderName, write: impl FnOnce(&mut String)) -> Self {
        let mut text = crate::builder::scratch::take(0);
        write(&mut text);
        let value = Box::from(text.as_str());
        crate::builder::scratch::put(text);
        Self {
            name,
            repr: Repr::Owned(value),
        }
    }

    /// A header built locally from a constant value: no allocation.
    pub fn from_static(name: HeaderName, value: &'static str) -> Self {
        Self {
            name,
            repr: Repr::Static(value),
        }
    }

    /// A header built locally from a shared text (printed as `Name: value`): a copy of it
    /// costs a reference count, not an allocation.
    pub fn from_shared(name: HeaderName, value: Arc<str>) -> Self {
        Self {
            name,
            repr: Repr::SharedText(value),
        }
    }

    /// A parsed header whose value needed unfolding or repair (an owned copy).
    pub(crate) fn parsed(name: HeaderName, value: String, raw: Raw) -> Self {
        Self {
            name,
            repr: Repr::Parsed(Box::new((value, raw))),
        }
    }

    /// The header's name.
    pub fn name(&self) -> &HeaderName {
        &self.name
    }

    /// The value with folding replaced by a single space and outer white space trimmed.
    pub fn value(&self) -> &str {
        self.by_ref().value()
    }

    /// The line(s) exactly as received, without the final CRLF; `None` for a built header.
    pub fn raw(&self) -> Option<&[u8]> {
        self.by_ref().raw()
    }

    /// This header read as a [`HeaderRef`] (what a message's headers give).
    pub fn by_ref(&self) -> HeaderRef<'_> {
        HeaderRef {
            header: self,
            head: None,
        }
    }
}

/// A header of a [`Headers`] (or a [`Header`] of its own, [`Header::by_ref`]): its name, its
/// value and its received bytes, borrowed.
#[derive(Clone, Copy)]
pub struct HeaderRef<'a> {
    header: &'a Header,
    /// The head text of the `Headers` the header is in, if it has one.
    head: Option<&'a Arc<str>>,
}

impl<'a> HeaderRef<'a> {
    /// The header's name.
    #[inline]
    pub fn name(self) -> &'a HeaderName {
        &self.header.name
    }

    /// The value with folding replaced by a single space and outer white space trimmed.
    #[inline]
    pub fn value(self) -> &'a str {
        let (text, range): (&'a str, _) = match &self.header.repr {
            Repr::InHead { value, .. } => (self.head.map_or("", |h| h), *value),
            Repr::Shared(l) => (&l.head, l.value),
            Repr::Parsed(p) => return &p.0,
            Repr::Owned(s) => return s,
            Repr::Static(s) => return s,
            Repr::SharedText(s) => return s,
        };
        // Lines are only given ranges inside their head that end next to ASCII bytes, so
        // `get` cannot fail; the empty fallback keeps the function total.
        text.get(range.0 as usize..range.1 as usize)
            .unwrap_or_default()
    }

    /// The line(s) exactly as received, without the final CRLF; `None` for a built header.
    #[inline]
    pub fn raw(self) -> Option<&'a [u8]> {
        let (text, start, end): (&'a str, _, _) = match &self.header.repr {
            Repr::InHead { start, end, .. } => (self.head.map_or("", |h| h), *start, *end),
            Repr::Shared(l) => (&l.head, l.start, l.end),
            Repr::Parsed(p) => return p.1.as_bytes(),
            Repr::Owned(_) | Repr::Static(_) | Repr::SharedText(_) => return None,
        };
        // Ranges were cut at line ends, which are ASCII: always in bounds and on
        // character boundaries; the empty fallback keeps the function total.
        Some(
            text.as_bytes()
                .get(start as usize..end as usize)
                .unwrap_or_default(),
        )
    }

    /// A [`Header`] of its own with the same name, value and received bytes (a parsed line
    /// shares the message's head text: one reference count, no copy).
    pub fn to_header(self) -> Header {
        match (&self.header.repr, self.head) {
            (&Repr::InHead { start, end, value }, Some(head)) => Header {
                name: self.header.name.clone(),
                repr: Repr::Shared(Box::new(SharedLine {
                    head: Arc::clone(head),
                    start,
                    end,
                    value,
                })),
            },
            // Not reached (a line of a head is only in the `Headers` holding that head): an
            // empty built header keeps the function total.
            (Repr::InHead { .. }, None) => Header::new(self.header.name.clone(), ""),
            _ => self.header.clone(),
        }
    }

    /// [`HeaderRef::raw`] as text, for a line that is a range of a head text (no UTF-8 check:
    /// the text is a `str`, cut at ASCII line ends).
    fn line_text(self) -> Option<&'a str> {
        let (head, start, end) = self.shared_line()?;
        head.get(start as usize..end as usize)
    }

    /// For a line that is a range of a head text: the text and the line's range.
    fn shared_line(self) -> Option<(&'a Arc<str>, u32, u32)> {
        match (&self.header.repr, self.head) {
            (Repr::InHead { start, end, .. }, Some(head)) => Some((head, *start, *end)),
            (Repr::Shared(l), _) => Some((&l.head, l.start, l.end)),
            _ => None,
        }
    }
}

impl fmt::Debug for HeaderRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let raw = self.raw().map(String::from_utf8_lossy);
        f.debug_struct("Header")
            .field("name", self.name())
            .field("value", &self.value())
            .field("raw", &raw.as_deref().unwrap_or("None"))
            .finish()
    }
}

/// A typed, lazily parsed view of a header value (`headers.typed::<Via>()`).
pub trait TypedHeader: Sized {
    /// The header this view reads.
    const NAME: HeaderName;
    /// True when one header line may carry several comma-separated values (RFC 3261 §7.3.1).
    const LIST: bool;
    /// Reads one value (one element of the list for list headers).
    fn parse(value: &str) -> Result<Self, HeaderError>;
}

/// A typed view that borrows from the header value instead of copying it
/// (`headers.view::<ViaRef>()`): no allocation for the common headers. Each has an
/// `into_owned()` giving the matching [`TypedHeader`], which is parsed by the same code.
pub trait HeaderView<'a>: Sized {
    /// The header this view reads.
    const NAME: HeaderName;
    /// True when one header line may carry several comma-separated values (RFC 3261 §7.3.1).
    const LIST: bool;
    /// Reads one value (one element of the list for list headers).
    fn parse(value: &'a str) -> Result<Self, HeaderError>;
}

/// The headers of a message, in order. Parsed lines are ranges of the message's head text,
/// held here once.
#[derive(Clone, Default)]
pub struct Headers {
    /// The head text the [`Repr::InHead`] lines are ranges of (a parsed message's, or a built
    /// request's printed head).
    head: Option<Arc<str>>,
    list: Vec<Header>,
}

/// The list goes back to the thread's spare lists ([`spare`]), emptied, for the next message
/// parsed.
impl Drop for Headers {
    fn drop(&mut self) {
        spare::give(&mut self.list);
    }
}

/// Header lists of dropped messages, kept for the next messages made on the same thread: a
/// message is mostly parsed, handled and dropped before the next one is parsed, so its list
/// (a heap block of 40 bytes a header) is used again, still in the cache, instead of a fresh
/// one allocated for every message and freed after it.
mod spare {
    use std::cell::RefCell;

    use super::Header;

    /// Lists kept per thread at most.
    pub(super) const KEPT: usize = 4;
    /// A list with room for more headers than this is freed, not kept (a rare long message
    /// must not hold memory for the thread's life).
    const MAX_ROOM: usize = 64;

    thread_local! {
        static LISTS: RefCell<Vec<Vec<Header>>> = const { RefCell::new(Vec::new()) };
    }

    /// An empty list with room for `n` headers: a kept one when there is one not much
    /// larger (at most twice `n`, or 16), so that a message kept for long (a request kept
    /// for its responses, for a whole call) does not hold the room of the longest message
    /// the thread saw.
    pub(super) fn take(n: usize) -> Vec<Header> {
        let most = n.saturating_mul(2).max(16);
        // `try_*`: a list asked for while the thread's lists are borrowed (not reached: only
        // `give` and this borrow them, and neither makes a message) or destroyed is new.
        let kept = LISTS
            .try_with(|l| {
                l.try_borrow_mut().ok().and_then(|mut l| {
                    let i = l.iter().rposition(|v| v.capacity() <= most)?;
                    Some(l.swap_remove(i))
                })
            })
            .ok()
            .flatten();
        match kept {
            Some(mut list) => {
                list.reserve(n);
                list
            }
            None => Vec::with_capacity(n),
        }
    }

    /// Empties `list` and keeps it for [`take`] (unless the thread keeps enough, or it is
    /// too large or has no room at all).
    pub(super) fn give(list: &mut Vec<Header>) {
        if list.capacity() == 0 || list.capacity() > MAX_ROOM {
            return;
        }
        // The headers are dropped here, before the list is borrowed: a header holds no
        // `Headers`, so this does not come back into `give`.
        list.clear();
        let _ = LISTS.try_with(|l| {
            if let Ok(mut l) = l.try_borrow_mut()
                && l.len() < KEPT
            {
                l.push(std::mem::take(list));
            }
        });
    }

    /// How many lists this thread keeps (tests).
    #[cfg(test)]
    pub(super) fn kept() -> usize {
        LISTS.with(|l| l.borrow().len())
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Headers").field(&DebugList(self)).finish()
    }
}

/// The headers as a list, for `Debug`.
struct DebugList<'a>(&'a Headers);

impl fmt::Debug for DebugList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Room for `n` headers without reallocating (a list of a message dropped on this
    /// thread when one is kept, see [`spare`]).
    pub fn with_capacity(n: usize) -> Self {
        Self {
            head: None,
            list: spare::take(n),
        }
    }

    /// The headers `keep` selects, in order, with their received lines copied into a head
    /// text of their own that starts with `first` and a CRLF (a start line): the copy keeps
    /// nothing else of the text these lines are ranges of. Each header prints, reads and
    /// gives its raw bytes as before. Headers without received lines are cloned; so are
    /// those read from a header section that was not UTF-8 (their bytes are a slice of it).
    /// Gives the new text too (`first` is its beginning).
    pub(crate) fn kept(&self, first: &str, keep: impl Fn(&HeaderName) -> bool) -> (Self, Arc<str>) {
        /// The received line(s) of `h` as text, when they are a range of a header section
        /// that was UTF-8 (ranges cut at ASCII line ends: on character boundaries).
        fn line_of(h: HeaderRef<'_>) -> Option<&str> {
            match (&h.header.repr, h.shared_line()) {
                (Repr::Parsed(p), _) => match &p.1 {
                    Raw::Text { head, start, end } => head.get(*start as usize..*end as usize),
                    _ => None,
                },
                (_, Some((head, start, end))) => head.get(start as usize..end as usize),
                _ => None,
            }
        }
        // Two walks: the size of the copy, then the copy and the list of ranges of it.
        let (mut size, mut count) = (first.len() + 2, 0);
        for h in self.iter().filter(|h| keep(h.name())) {
            count += 1;
            size += line_of(h).map_or(0, |l| l.len() + 2);
        }
        // Written in the builder's kept scratch text, then copied into the shared one (no
        // `String` allocated and freed per request kept).
        let mut text = crate::builder::scratch::take(size);
        text.push_str(first);
        text.push_str("\r\n");
        let mut list = spare::take(count);
        // Unfolded values (rare) get their range once the text is shared: (index, range).
        let mut unfolded: Vec<(usize, u32, u32)> = Vec::new();
        for h in self.iter().filter(|h| keep(h.name())) {
            let repr = match line_of(h) {
                None => h.to_header().repr,
                Some(line) => {
                    // The copy is no longer than the text the lines come from (`first` is a
                    // line of it), which fits in 32 bits.
                    let new = text.len() as u32;
                    let end = new + line.len() as u32;
                    text.push_str(line);
                    text.push_str("\r\n");
                    match (&h.header.repr, h.shared_line()) {
                        (Repr::Parsed(p), _) => {
                            unfolded.push((list.len(), new, end));
                            Repr::Parsed(Box::new((p.0.clone(), Raw::None)))
                        }
                        (repr, Some((_, start, _))) if let Some(value) = repr.line_value() => {
                            // The value lies inside its line (`start <= value <= end`): the
                            // differences are the same offsets in the copy.
                            let shift = |v: u32| new + v.saturating_sub(start);
                            Repr::InHead {
                                start: new,
                                end,
                                value: (shift(value.0), shift(value.1)),
                            }
                        }
                        // Not reached: `line_of` gives a line for these forms only.
                        _ => h.to_header().repr,
                    }
                }
            };
            list.push(Header {
                name: h.header.name.clone(),
                repr,
            });
        }
        let head: Arc<str> = Arc::from(text.as_str());
        crate::builder::scratch::put(text);
        for (i, start, end) in unfolded {
            if let Some(Header {
                repr: Repr::Parsed(p),
                ..
            }) = list.get_mut(i)
            {
                p.1 = Raw::Text {
                    head: Arc::clone(&head),
                    start,
                    end,
                };
            }
        }
        (
            Self {
                head: Some(Arc::clone(&head)),
                list,
            },
            head,
        )
    }

    /// The bytes [`Headers::rewrite_into`] writes (every line and its CRLF), when every
    /// header can be rewritten so: all but a value unfolded or repaired from its received
    /// lines (no range of a new text gives it).
    pub(crate) fn rewritten_len(&self) -> Option<usize> {
        let mut len = 0;
        for h in self.iter() {
            len += 2 + match (&h.header.repr, h.line_text()) {
                (Repr::Parsed(_), _) => return None,
                (Repr::InHead { .. } | Repr::Shared(_), Some(line)) => line.len(),
                (Repr::InHead { .. } | Repr::Shared(_), None) => return None,
                _ => h.name().as_str().len() + 2 + h.value().len(),
            };
        }
        Some(len)
    }

    /// Appends every header's line and a CRLF to `text`, as `to_bytes` prints them (its
    /// received bytes, or `Name: value`), and makes each header that range of `text` (its
    /// value the same range as before within the line). The headers read from `text` once it
    /// is given to them ([`Headers::attach_head`]), not before. Only after
    /// [`Headers::rewritten_len`] said they can be, and `text` ends under 4 GiB (ranges are
    /// 32-bit).
    pub(crate) fn rewrite_into(&mut self, text: &mut String) {
        for i in 0..self.list.len() {
            let at = text.len();
            let (line, value) = {
                let h = self.view_of(&self.list[i]);
                match (h.shared_line(), h.header.repr.line_value()) {
                    // The value lies inside its line (`start <= value <= end`): its offsets in
                    // the line are the same in the new text (saturating: total whatever it is).
                    (Some((head, start, end)), Some(value)) => {
                        let line = head.get(start as usize..end as usize).unwrap_or_default();
                        text.push_str(line);
                        let at = |v: u32| v.saturating_sub(start);
                        (line.len(), (at(value.0), at(value.1)))
                    }
                    // Built: `Name: value` (and not reached for the forms above).
                    _ => {
                        let name = h.name().as_str();
                        text.push_str(name);
                        text.push_str(": ");
                        text.push_str(h.value());
                        let line = text.len() - at;
                        (line, ((name.len() + 2) as u32, line as u32))
                    }
                }
            };
            text.push_str("\r\n");
            let at = at as u32;
            self.list[i].repr = Repr::InHead {
                start: at,
                end: at + line as u32,
                value: (at + value.0, at + value.1),
            };
        }
    }

    /// Gives these headers the head text their lines are ranges of (a parsed message's, once
    /// its lines are read; a built request's, once it is printed).
    pub(crate) fn attach_head(&mut self, head: Arc<str>) {
        self.head = Some(head);
    }

    /// Appends line `start..end` of the head text this is given ([`Headers::attach_head`]),
    /// whose value is `value.0..value.1` of it
    /// (ranges in bytes, on character boundaries).
    pub(crate) fn push_line(&mut self, name: HeaderName, start: u32, end: u32, value: (u32, u32)) {
        self.list.push(Header {
            name,
            repr: Repr::InHead { start, end, value },
        });
    }

    /// Appends a copy of `h`, a header of another message (or of this one), printed as it
    /// prints there (a received line as received). A line of that message's head text is
    /// kept as a range of it when this holds the same text or none yet (one reference count
    /// for all of them, no copy of the value: a response's or an ACK's lines copied from the
    /// request), else as a header of its own ([`HeaderRef::to_header`]).
    pub fn push_ref(&mut self, h: HeaderRef<'_>) {
        if let (Repr::InHead { .. }, Some(head)) = (&h.header.repr, h.head) {
            let same = match &self.head {
                Some(mine) => Arc::ptr_eq(mine, head),
                None => {
                    self.head = Some(Arc::clone(head));
                    true
                }
            };
            if same {
                self.list.push(h.header.clone());
                return;
            }
        }
        self.list.push(h.to_header());
    }

    #[inline]
    fn view_of<'a>(&'a self, h: &'a Header) -> HeaderRef<'a> {
        HeaderRef {
            header: h,
            head: self.head.as_ref(),
        }
    }

    /// All headers in order.
    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = HeaderRef<'_>> {
        self.list.iter().map(|h| self.view_of(h))
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The last header (the one just read, while a message is parsed), its lines read from
    /// `head` (the text the lines are ranges of, not attached yet) when given.
    pub(crate) fn last_in<'a>(&'a self, head: Option<&'a Arc<str>>) -> Option<HeaderRef<'a>> {
        self.list.last().map(|h| HeaderRef {
            header: h,
            head: head.or(self.head.as_ref()),
        })
    }

    /// When every header is a line of one head text, in order and each followed by exactly
    /// CRLF (a message as parsed or as built, not edited since): the bytes from the first
    /// line to the end of the last, which print as the headers printed one by one do.
    pub(crate) fn as_one_block(&self) -> Option<&[u8]> {
        let (head, first, end) = self.one_block()?;
        head.as_bytes().get(first..end)
    }

    /// [`Headers::as_one_block`] as the head text the block is part of and the block's range
    /// in it.
    pub(crate) fn one_block(&self) -> Option<(&Arc<str>, usize, usize)> {
        let mut it = self.iter();
        let (head, first, mut end) = it.next()?.shared_line()?;
        for h in it {
            let (text, start, line_end) = h.shared_line()?;
            let gap = head.as_bytes().get(end as usize..start as usize);
            if !Arc::ptr_eq(text, head) || gap != Some(b"\r\n".as_slice()) {
                return None;
            }
            end = line_end;
        }
        let (first, end) = (first as usize, end as usize);
        head.as_bytes().get(first..end).map(|_| (head, first, end))
    }

    /// The first header named `name`.
    #[inline]
    pub fn get(&self, name: &HeaderName) -> Option<HeaderRef<'_>> {
        self.list
            .iter()
            .find(|h| &h.name == name)
            .map(|h| self.view_of(h))
    }

    /// The first value of header `name`.
    #[inline]
    pub fn value(&self, name: &HeaderName) -> Option<&str> {
        self.get(name).map(HeaderRef::value)
    }

    /// Every header line named `name`.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = HeaderRef<'a>> + 'a {
        self.list
            .iter()
            .filter(move |h| &h.name == name)
            .map(|h| self.view_of(h))
    }

    /// The typed view of the first value of `T`'s header; `None` when absent.
    pub fn typed<T: TypedHeader>(&self) -> Option<Result<T, HeaderError>> {
        let h = self.get(&T::NAME)?;
        if T::LIST {
            let first = match first_top(h.value(), b',') {
                Ok(first) => first,
                Err(e) => return Some(Err(e)),
            };
            Some(T::parse(trim_fast(first)))
        } else {
            Some(T::parse(h.value()))
        }
    }

    /// Every value of `T`'s header across all its lines, in order (list headers split at commas).
    pub fn typed_all<T: TypedHeader>(&self) -> Vec<Result<T, HeaderError>> {
        let mut out = Vec::new();
        for h in self.get_all(&T::NAME) {
            if T::LIST {
                match split_top(h.value(), b',') {
                    Ok(parts) => out.extend(parts.into_iter().map(|p| T::parse(p.trim()))),
                    Err(e) => out.push(Err(e)),
                }
            } else {
                out.push(T::parse(h.value()));
            }
        }
        out
    }

    /// The borrowed view of the first value of `T`'s header; `None` when absent.
    /// Reads what [`Headers::typed`] reads, without allocating.
    pub fn view<'a, T: HeaderView<'a>>(&'a self) -> Option<Result<T, HeaderError>> {
        let h = self.get(&T::NAME)?;
        if T::LIST {
            let first = match first_top(h.value(), b',') {
                Ok(first) => first,
                Err(e) => return Some(Err(e)),
            };
            Some(T::parse(trim_fast(first)))
        } else {
            Some(T::parse(h.value()))
        }
    }

    /// Every value of `T`'s header across all its lines, in order, as borrowed views: the
    /// items of [`Headers::typed_all`] without the `Vec` or any copy.
    pub fn view_all<'a, T: HeaderView<'a> + 'a>(
        &'a self,
    ) -> impl Iterator<Item = Result<T, HeaderError>> + 'a {
        self.view_all_texts::<T>().map(|(_, v)| v)
    }

    /// [`Headers::view_all`] with the text each value was read from (trimmed; empty for a
    /// line whose list cannot be split): what a caller keeps as received rather than an
    /// owned parse printed again (a dialog's route set).
    pub fn view_all_texts<'a, T: HeaderView<'a> + 'a>(
        &'a self,
    ) -> impl Iterator<Item = (&'a str, Result<T, HeaderError>)> + 'a {
        self.list
            .iter()
            .filter(|h| h.name == T::NAME)
            .flat_map(|h| {
                let v = self.view_of(h).value();
                // One value (not a list), one error (a list that cannot be split), or the
                // parts of a list: one iterator type for the three without boxing.
                let (single, parts) = if !T::LIST {
                    (Some(Ok(v)), None)
                } else if !v.bytes().any(|c| matches!(c, b',' | b'"' | b'<')) {
                    // No separator and nothing that could hide one: a single value.
                    (Some(Ok(trim_fast(v))), None)
                } else {
                    match check_top(v) {
                        Ok(()) => (None, Some(TopSplit::new(v, b','))),
                        Err(e) => (Some(Err(e)), None),
                    }
                };
                single
                    .into_iter()
                    .chain(parts.into_iter().flatten().map(|p| Ok(trim_fast(p))))
            })
            .map(|v| match v {
                Ok(text) => (text, T::parse(text)),
                Err(e) => ("", Err(e)),
            })
    }

    /// The index of the first header named `name` (for [`Headers::insert`]).
    pub fn position(&self, name: &HeaderName) -> Option<usize> {
        self.list.iter().position(|h| &h.name == name)
    }

    /// Inserts a header at `index` (appended when `index` is past the end).
    pub fn insert(&mut self, index: usize, header: Header) {
        self.list.insert(index.min(self.list.len()), header);
    }

    /// Appends a header.
    #[inline]
    pub fn push(&mut self, header: Header) {
        self.list.push(header);
    }

    /// Room for exactly `additional` more headers (no doubling): for a message kept a long
    /// time that gets one header more (a request re-sent with credentials).
    pub fn reserve_exact(&mut self, additional: usize) {
        self.list.reserve_exact(additional);
    }

    /// Inserts a header before all others (e.g. a new top Via).
    pub fn push_front(&mut self, header: Header) {
        self.list.insert(0, header);
    }

    /// Replaces every header named like `header` with it (appended when absent, kept in place when present).
    pub fn set(&mut self, header: Header) {
        match self.list.iter().position(|h| h.name == header.name) {
            Some(i) => {
                let name = header.name.clone();
                self.list[i] = header;
                let mut j = 0;
                self.list.retain(|h| {
                    let keep = j <= i || h.name != name;
                    j += 1;
                    keep
                });
            }
            None => self.list.push(header),
        }
    }

    /// Removes every header named `name`.
    pub fn remove(&mut self, name: &HeaderName) {
        self.list.retain(|h| &h.name != name);
    }

    /// Removes the first header named `name` and returns it (e.g. popping the top Via).
    pub fn remove_first(&mut self, name: &HeaderName) -> Option<Header> {
        let i = self.list.iter().position(|h| &h.name == name)?;
        let h = self.list.remove(i);
        Some(match h.repr {
            Repr::InHead { .. } => self.view_of(&h).to_header(),
            _ => h,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    /// Every header as (name, value, raw line), and the message printed.
    type Reading = (Vec<(String, String, Option<Vec<u8>>)>, Vec<u8>);

    /// Every header of `m` as (name, value, raw line), and the message printed.
    fn reading(m: &Message) -> Reading {
        let headers = m
            .headers
            .iter()
            .map(|h| {
                (
                    h.name().as_str().to_owned(),
                    h.value().to_owned(),
                    h.raw().map(<[u8]>::to_vec),
                )
            })
            .collect();
        (headers, m.to_bytes())
    }

    #[test]
    fn a_written_header_reads_as_one_built_from_its_string() {
        let written = Header::written(HeaderName::CSeq, |t| t.push_str("2 INVITE"));
        let built = Header::new(HeaderName::CSeq, "2 INVITE");
        assert_eq!(written.value(), "2 INVITE");
        assert_eq!(written.raw(), None);
        assert_eq!(format!("{written:?}"), format!("{built:?}"));
        // Written inside another one's writing (the scratch text is taken): both whole.
        let outer = Header::written(HeaderName::Via, |t| {
            let inner = Header::written(HeaderName::CallId, |t| t.push_str("a@b"));
            t.push_str("SIP/2.0/UDP h;x=");
            t.push_str(inner.value());
        });
        assert_eq!(outer.value(), "SIP/2.0/UDP h;x=a@b");
        // The scratch text is emptied before each use.
        let next = Header::written(HeaderName::To, |t| t.push_str("<sip:b@h>"));
        assert_eq!(next.value(), "<sip:b@h>");
    }

    #[test]
    fn a_line_taken_out_of_its_message_keeps_its_value_and_bytes() {
        let m = Message::parse(b"OPTIONS sip:a@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nCall-ID:  c@h \r\nCSeq: 1 OPTIONS\r\n\r\n").unwrap();
        let taken = m.headers.get(&HeaderName::CallId).unwrap().to_header();
        drop(m);
        assert_eq!(taken.value(), "c@h");
        assert_eq!(taken.raw(), Some(b"Call-ID:  c@h ".as_slice()));
        let mut other = Headers::new();
        other.push_ref(taken.by_ref());
        assert_eq!(other.get(&HeaderName::CallId).unwrap().value(), "c@h");
    }

    #[test]
    fn a_request_kept_in_the_scratch_text_reads_as_one_kept_on_a_fresh_thread() {
        // `keep_only` writes the kept lines in the builder's scratch text: whatever was
        // built or kept before on the thread (short, long, past the scratch's bound), the
        // kept request reads and prints the same, and the next build is not changed by it.
        fn text(pad: usize) -> String {
            format!(
                "INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\n folded\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nX-Pad: {}\r\nContact: <sip:a@h>\r\nContent-Length: 0\r\n\r\n",
                "p".repeat(pad)
            )
        }
        fn kept(pad: usize) -> Message {
            Message::parse(text(pad).as_bytes())
                .unwrap()
                .keep_only(|n| *n != HeaderName::Contact)
        }
        fn build(pad: usize) -> Message {
            crate::RequestBuilder::new(
                crate::Method::Options,
                crate::Uri::parse("sip:b@h").unwrap(),
            )
            .via_text("SIP/2.0/UDP h;branch=z9hG4bKs".into())
            .call_id("s@h")
            .cseq(1)
            .header_with("X-Pad", |s| s.push_str(&"q".repeat(pad)))
            .build()
        }
        let pads = [0, 10, 20_000, 3_000, 0];
        let fresh: Vec<_> = pads
            .iter()
            .map(|&pad| {
                std::thread::spawn(move || (reading(&kept(pad)), reading(&build(pad))))
                    .join()
                    .unwrap()
            })
            .collect();
        std::thread::spawn(move || {
            for (k, &pad) in pads.iter().enumerate() {
                for &before in &pads {
                    drop(build(before));
                    drop(kept(before));
                    let m = kept(pad);
                    assert_eq!(reading(&m), fresh[k].0, "{pad} after {before}");
                    assert!(m.headers.get(&HeaderName::Contact).is_none());
                    assert_eq!(reading(&build(pad)), fresh[k].1, "{pad} after {before}");
                }
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_message_parsed_into_a_kept_list_reads_as_one_parsed_into_a_new_one() {
        // Asks for room enough that any kept list is taken (none has room for more than 64).
        const MAX_HEADERS_KEPT: usize = 64;
        let long: String = (0..40).map(|i| format!("X-H{i}: {i}\r\n")).collect();
        let texts = [
            "INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n".to_owned(),
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:b@h>;tag=2\r\n folded\r\nContent-Length: 0\r\n\r\n".to_owned(),
            format!("OPTIONS sip:b@h SIP/2.0\r\n{long}{long}Content-Length: 0\r\n\r\n"),
            "SIP/2.0 100 Trying\r\n\r\n".to_owned(),
        ];
        // The reference: each text parsed on a thread of its own, into a new list.
        let fresh: Vec<_> = texts
            .iter()
            .map(|t| {
                let t = t.clone();
                std::thread::spawn(move || reading(&Message::parse(t.as_bytes()).unwrap()))
                    .join()
                    .unwrap()
            })
            .collect();
        std::thread::spawn(move || {
            assert_eq!(spare::kept(), 0);
            // Every order of two texts: the second is parsed into the first one's list.
            for (i, a) in texts.iter().enumerate() {
                for (j, b) in texts.iter().enumerate() {
                    drop(Message::parse(a.as_bytes()).unwrap());
                    let m = Message::parse(b.as_bytes()).unwrap();
                    assert_eq!(reading(&m), fresh[j], "{i} then {j}");
                }
            }
            // The 81-header message's list is freed, not kept; the others are (from none
            // kept: dropping a list taken out directly does not keep it).
            while spare::kept() > 0 {
                drop(spare::take(MAX_HEADERS_KEPT));
            }
            let lists: Vec<_> = texts[..3]
                .iter()
                .map(|t| Message::parse(t.as_bytes()).unwrap())
                .collect();
            assert_eq!(spare::kept(), 0);
            drop(lists);
            assert_eq!(spare::kept(), 2);
            // A message without headers takes a kept list too, and gives it back.
            let m = Message::parse(texts[3].as_bytes()).unwrap();
            assert_eq!(spare::kept(), 1);
            assert_eq!(reading(&m), fresh[3]);
            drop(m);
            assert_eq!(spare::kept(), 2);
            // No more than `KEPT` lists are kept.
            let many: Vec<_> = (0..10)
                .map(|_| Message::parse(texts[0].as_bytes()).unwrap())
                .collect();
            drop(many);
            assert_eq!(spare::kept(), spare::KEPT);
            // A kept list is taken again: a message parsed after takes one.
            let m = Message::parse(texts[0].as_bytes()).unwrap();
            assert_eq!(spare::kept(), spare::KEPT - 1);
            assert_eq!(reading(&m), fresh[0]);
            drop(m);
            // A list with room for many more headers than a message has is not taken for it
            // (a kept message must not hold the longest message's room): a 41-header
            // message's list stays for a 41-header one.
            while spare::kept() > 0 {
                drop(spare::take(MAX_HEADERS_KEPT));
            }
            let wide = format!("OPTIONS sip:b@h SIP/2.0\r\n{long}Content-Length: 0\r\n\r\n");
            drop(Message::parse(wide.as_bytes()).unwrap());
            assert_eq!(spare::kept(), 1);
            let small = Message::parse(texts[0].as_bytes()).unwrap();
            assert_eq!(spare::kept(), 1, "the wide list is left");
            assert!(small.headers.list.capacity() <= 16);
            let again = Message::parse(wide.as_bytes()).unwrap();
            assert_eq!(spare::kept(), 0, "taken for a message as wide");
            drop((small, again));
            // A message kept for its responses reads as before too (its list is a kept one).
            let kept = Message::parse(texts[0].as_bytes())
                .unwrap()
                .keep_only(|n| *n != HeaderName::CallId);
            assert_eq!(kept.headers.len(), 5);
            assert!(kept.headers.get(&HeaderName::CallId).is_none());
        })
        .join()
        .unwrap();
    }
}
