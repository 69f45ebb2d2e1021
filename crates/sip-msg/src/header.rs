//! Header names, raw headers, and the lazily parsed typed views.

use std::fmt;

use bytes::Bytes;

use crate::error::HeaderError;
use crate::text::{first_top, split_top};

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
            /// A header this crate has no name for, kept as written.
            Other(Box<str>),
        }

        impl HeaderName {
            /// The canonical spelling (`Call-ID`, `CSeq`, …), or the name as written.
            pub fn as_str(&self) -> &str {
                match self {
                    $( HeaderName::$variant => $canon, )*
                    HeaderName::Other(s) => s,
                }
            }

            /// The name for `s`, recognising long and compact forms in any case.
            pub fn from_name(s: &str) -> Self {
                // Most names are canonical or lower case: try those first without folding.
                $(
                    if s == $canon {
                        return HeaderName::$variant;
                    }
                )*
                $(
                    if s.eq_ignore_ascii_case($canon) $(|| s.eq_ignore_ascii_case($compact))? {
                        return HeaderName::$variant;
                    }
                )*
                HeaderName::Other(s.into())
            }
        }
    };
}

// RFC 3261 §7.3.3 and §20; compact forms from RFC 3261, RFC 3515 (r), RFC 3892 (b),
// RFC 3903? (none), RFC 3265 (o, u), RFC 4028 (x), RFC 3841 (j, d), RFC 3329? (none), RFC 3891? (none).
header_names! {
    Accept => "Accept";
    AcceptEncoding => "Accept-Encoding";
    AcceptLanguage => "Accept-Language";
    AlertInfo => "Alert-Info";
    Allow => "Allow";
    AllowEvents => "Allow-Events", "u";
    AuthenticationInfo => "Authentication-Info";
    Authorization => "Authorization";
    CallId => "Call-ID", "i";
    CallInfo => "Call-Info";
    Contact => "Contact", "m";
    ContentDisposition => "Content-Disposition";
    ContentEncoding => "Content-Encoding", "e";
    ContentLanguage => "Content-Language";
    ContentLength => "Content-Length", "l";
    ContentType => "Content-Type", "c";
    CSeq => "CSeq";
    Date => "Date";
    ErrorInfo => "Error-Info";
    Event => "Event", "o";
    Expires => "Expires";
    From => "From", "f";
    InReplyTo => "In-Reply-To";
    MaxForwards => "Max-Forwards";
    MimeVersion => "MIME-Version";
    MinExpires => "Min-Expires";
    MinSe => "Min-SE";
    Organization => "Organization";
    Path => "Path";
    Priority => "Priority";
    ProxyAuthenticate => "Proxy-Authenticate";
    ProxyAuthorization => "Proxy-Authorization";
    ProxyRequire => "Proxy-Require";
    RAck => "RAck";
    Reason => "Reason";
    RecordRoute => "Record-Route";
    ReferTo => "Refer-To", "r";
    ReferredBy => "Referred-By", "b";
    RejectContact => "Reject-Contact", "j";
    ReplyTo => "Reply-To";
    Require => "Require";
    RequestDisposition => "Request-Disposition", "d";
    RetryAfter => "Retry-After";
    Route => "Route";
    RSeq => "RSeq";
    Server => "Server";
    SessionExpires => "Session-Expires", "x";
    Subject => "Subject", "s";
    SubscriptionState => "Subscription-State";
    Supported => "Supported", "k";
    Timestamp => "Timestamp";
    To => "To", "t";
    Unsupported => "Unsupported";
    UserAgent => "User-Agent";
    Via => "Via", "v";
    Warning => "Warning";
    WwwAuthenticate => "WWW-Authenticate";
    AcceptContact => "Accept-Contact", "a";
}

impl PartialEq for HeaderName {
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
#[derive(Debug, Clone)]
pub struct Header {
    name: HeaderName,
    value: Value,
    raw: Option<Bytes>,
}

/// A header value: a slice of the received bytes when it needed no unfolding (no copy), or
/// an owned string (built headers, folded or non-UTF-8 values).
#[derive(Debug, Clone)]
enum Value {
    /// Valid UTF-8, already trimmed, shared with the message buffer.
    Shared(Bytes),
    /// Owned text.
    Owned(String),
}

impl Header {
    /// A header built locally (printed as `Name: value`).
    pub fn new(name: impl Into<HeaderName>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: Value::Owned(value.into()),
            raw: None,
        }
    }

    /// A parsed header whose value needed unfolding or repair (an owned copy).
    pub(crate) fn parsed(name: HeaderName, value: String, raw: Bytes) -> Self {
        Self {
            name,
            value: Value::Owned(value),
            raw: Some(raw),
        }
    }

    /// A parsed header whose value is the UTF-8 slice `value` of the received buffer.
    pub(crate) fn parsed_shared(name: HeaderName, value: Bytes, raw: Bytes) -> Self {
        Self {
            name,
            value: Value::Shared(value),
            raw: Some(raw),
        }
    }

    /// The header's name.
    pub fn name(&self) -> &HeaderName {
        &self.name
    }

    /// The value with folding replaced by a single space and outer white space trimmed.
    pub fn value(&self) -> &str {
        match &self.value {
            // Checked to be UTF-8 when the header was parsed (`parsed_shared`), so this
            // cannot fail; the empty fallback only keeps the function total.
            Value::Shared(b) => std::str::from_utf8(b).unwrap_or_default(),
            Value::Owned(s) => s,
        }
    }

    /// The line(s) exactly as received, without the final CRLF; `None` for a built header.
    pub fn raw(&self) -> Option<&[u8]> {
        self.raw.as_deref()
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

/// The headers of a message, in order.
#[derive(Debug, Clone, Default)]
pub struct Headers(Vec<Header>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// All headers in order.
    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first header named `name`.
    pub fn get(&self, name: &HeaderName) -> Option<&Header> {
        self.0.iter().find(|h| &h.name == name)
    }

    /// The first value of header `name`.
    pub fn value(&self, name: &HeaderName) -> Option<&str> {
        self.get(name).map(Header::value)
    }

    /// Every header line named `name`.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a Header> + 'a {
        self.0.iter().filter(move |h| &h.name == name)
    }

    /// The typed view of the first value of `T`'s header; `None` when absent.
    pub fn typed<T: TypedHeader>(&self) -> Option<Result<T, HeaderError>> {
        let h = self.get(&T::NAME)?;
        if T::LIST {
            let first = match first_top(h.value(), b',') {
                Ok(first) => first,
                Err(e) => return Some(Err(e)),
            };
            Some(T::parse(first.trim()))
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

    /// Appends a header.
    pub fn push(&mut self, header: Header) {
        self.0.push(header);
    }

    /// Inserts a header before all others (e.g. a new top Via).
    pub fn push_front(&mut self, header: Header) {
        self.0.insert(0, header);
    }

    /// Replaces every header named like `header` with it (appended when absent, kept in place when present).
    pub fn set(&mut self, header: Header) {
        match self.0.iter().position(|h| h.name == header.name) {
            Some(i) => {
                let name = header.name.clone();
                self.0[i] = header;
                let mut j = 0;
                self.0.retain(|h| {
                    let keep = j <= i || h.name != name;
                    j += 1;
                    keep
                });
            }
            None => self.0.push(header),
        }
    }

    /// Removes every header named `name`.
    pub fn remove(&mut self, name: &HeaderName) {
        self.0.retain(|h| &h.name != name);
    }

    /// Removes the first header named `name` and returns it (e.g. popping the top Via).
    pub fn remove_first(&mut self, name: &HeaderName) -> Option<Header> {
        let i = self.0.iter().position(|h| &h.name == name)?;
        Some(self.0.remove(i))
    }
}
