//! Errors: what is wrong and where (line, header). No strings.

use std::fmt;

use crate::header::HeaderName;

/// Why a SIP URI could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// Empty input.
    #[error("empty uri")]
    Empty,
    /// No `scheme:` prefix.
    #[error("missing scheme")]
    MissingScheme,
    /// A character that may not stand in a URI (space, `<`, `>`, a control byte).
    #[error("invalid character in uri")]
    InvalidChar,
    /// A `%` not followed by two hex digits.
    #[error("bad escape sequence")]
    BadEscape,
    /// The host part is empty or not a host name, IPv4 address or IPv6 reference.
    #[error("bad host")]
    BadHost,
    /// The port is not a number from 0 to 65535.
    #[error("bad port")]
    BadPort,
    /// A URI parameter has an empty name.
    #[error("bad uri parameter")]
    BadParam,
    /// The user part holds a character that needs escaping.
    #[error("bad user part")]
    BadUser,
}

/// Why a header value could not be read as its typed view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The value is empty where one is required.
    #[error("empty value")]
    Empty,
    /// A quoted string has no closing quote.
    #[error("unterminated quoted string")]
    UnterminatedQuote,
    /// A `<` has no matching `>`.
    #[error("unterminated <uri>")]
    UnterminatedAngle,
    /// The URI inside the value is malformed.
    #[error("bad uri: {0}")]
    Uri(#[from] UriError),
    /// A display name that is neither tokens nor a quoted string.
    #[error("bad display name")]
    BadDisplayName,
    /// A number that is missing, malformed or outside its legal range.
    #[error("bad number")]
    BadNumber,
    /// A token (method, transport, scheme) with characters a token may not have.
    #[error("bad token")]
    BadToken,
    /// A header parameter without a name, or a malformed value.
    #[error("bad parameter")]
    BadParam,
    /// The Via sent-protocol is not `SIP/2.0/TRANSPORT`.
    #[error("bad sent-protocol")]
    BadSentProtocol,
    /// Text after the value that does not belong there.
    #[error("unexpected trailing text")]
    Trailing,
    /// A date that is not RFC 1123 format in GMT.
    #[error("bad date")]
    BadDate,
    /// Several values where only one is allowed.
    #[error("several values where one is allowed")]
    Multiple,
    /// A parameter the header must carry is missing (the name given).
    #[error("missing parameter {0}")]
    MissingParam(&'static str),
}

/// What is wrong with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// No bytes at all (or only line breaks).
    #[error("empty message")]
    Empty,
    /// The header section has no terminating empty line.
    #[error("incomplete header section")]
    Incomplete,
    /// The first line is neither a request line nor a status line.
    #[error("bad start line")]
    BadStartLine,
    /// The method is not a token.
    #[error("bad method")]
    BadMethod,
    /// The Request-URI is malformed.
    #[error("bad request-uri: {0}")]
    BadRequestUri(UriError),
    /// The Request-URI carries `?headers`, which RFC 3261 §19.1.5 forbids there.
    #[error("request-uri carries headers")]
    RequestUriHeaders,
    /// The version is not `SIP/2.0`.
    #[error("unsupported sip version")]
    BadVersion,
    /// The status code is not three digits from 100 to 699.
    #[error("bad status code")]
    BadStatusCode,
    /// A header line without a colon.
    #[error("header line without colon")]
    BadHeaderLine,
    /// A header name with characters a token may not have.
    #[error("bad header name")]
    BadHeaderName,
    /// A header value that its typed view cannot read.
    #[error("bad header value: {0}")]
    BadHeaderValue(HeaderError),
    /// A mandatory header is missing.
    #[error("missing mandatory header")]
    MissingHeader,
    /// A header that may appear once appears several times with different values.
    #[error("header appears more than once")]
    DuplicateHeader,
    /// Content-Length says more bytes than the message holds.
    #[error("body shorter than content-length ({declared} declared, {available} present)")]
    BodyTooShort {
        /// Bytes Content-Length declares.
        declared: usize,
        /// Bytes present after the header section.
        available: usize,
    },
    /// The CSeq method differs from the request method.
    #[error("cseq method does not match the request method")]
    CSeqMethodMismatch,
    /// The message is larger than the configured limit.
    #[error("message too large")]
    TooLarge,
    /// A stream message without Content-Length (RFC 3261 §18.3).
    #[error("missing content-length on a stream transport")]
    MissingContentLength,
}

/// A malformed message: what is wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    kind: ErrorKind,
    line: usize,
    header: Option<HeaderName>,
}

impl ParseError {
    pub(crate) fn new(kind: ErrorKind, line: usize) -> Self {
        Self {
            kind,
            line,
            header: None,
        }
    }

    pub(crate) fn in_header(kind: ErrorKind, line: usize, header: HeaderName) -> Self {
        Self {
            kind,
            line,
            header: Some(header),
        }
    }

    /// What is wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The 1-based line of the message where the problem is (0 when it concerns the whole message).
    pub fn line(&self) -> usize {
        self.line
    }

    /// The header concerned, if any.
    pub fn header(&self) -> Option<&HeaderName> {
        self.header.as_ref()
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: ", self.line)?;
        }
        if let Some(h) = &self.header {
            write!(f, "{}: ", h.as_str())?;
        }
        write!(f, "{}", self.kind)
    }
}

impl std::error::Error for ParseError {}

/// Something a lenient parser accepted but a strict one would not: reported, not fatal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The header concerned, if any.
    pub header: Option<HeaderName>,
    /// The 1-based line, 0 for the whole message.
    pub line: usize,
    /// What was tolerated.
    pub kind: WarningKind,
}

/// What a lenient parse tolerated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WarningKind {
    /// A header that is not needed to process the message has a malformed value.
    #[error("malformed non-essential header: {0}")]
    MalformedHeader(HeaderError),
    /// Max-Forwards is missing (RFC 2543 peers omit it).
    #[error("missing max-forwards")]
    MissingMaxForwards,
    /// Lines end with a bare LF instead of CRLF.
    #[error("bare lf line endings")]
    BareLf,
    /// Trailing whitespace on the start line.
    #[error("trailing whitespace on the start line")]
    StartLineWhitespace,
    /// Bytes after the body that Content-Length does not cover (discarded, RFC 3261 §18.3).
    #[error("bytes after the body discarded")]
    ExtraBytes,
    /// No Content-Length header (allowed on UDP: the body is the rest of the datagram).
    #[error("missing content-length")]
    MissingContentLength,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: ", self.line)?;
        }
        if let Some(h) = &self.header {
            write!(f, "{}: ", h.as_str())?;
        }
        write!(f, "{}", self.kind)
    }
}
