//! SIP messages for sipmeter: parse, inspect, build and print (RFC 3261 §7, §20, §25). No I/O.
//!
//! - [`Message::parse`] reads one message (syntax), [`Message::validate`] applies the semantic
//!   checks a user agent needs; both return errors that say what is wrong and on which line
//!   and header ([`ParseError`]).
//! - Every header keeps its raw bytes; typed views parse lazily:
//!   `msg.headers.typed::<Via>()`, `msg.headers.typed_all::<Contact>()`. The borrowed views
//!   read the same values in place without allocating (the hot path):
//!   `msg.headers.view::<ViaRef>()`, `msg.headers.view_all::<ContactRef>()`; each has an
//!   `into_owned()` giving the owned view.
//! - [`Framer`] splits TCP/TLS/WebSocket streams into messages.
//! - [`RequestBuilder`] and [`Message::response_to`] write correct messages.
//!
//! ```
//! use sip_msg::{Message, typed::Via};
//! let raw = b"OPTIONS sip:carol@chicago.com SIP/2.0\r\n\
//! Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKhjhs8ass877\r\n\
//! Max-Forwards: 70\r\nTo: <sip:carol@chicago.com>\r\n\
//! From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
//! Call-ID: a84b4c76e66710\r\nCSeq: 63104 OPTIONS\r\nContent-Length: 0\r\n\r\n";
//! let mut msg = Message::parse(raw)?;
//! msg.validate()?;
//! let via = msg.headers.typed::<Via>().unwrap()?;
//! assert_eq!(via.branch().as_deref(), Some("z9hG4bKhjhs8ass877"));
//! assert_eq!(msg.to_bytes(), raw);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod builder;
mod error;
mod framer;
mod header;
mod message;
mod method;
mod text;
pub mod typed;
mod uri;

pub use builder::{
    BRANCH_MAGIC, HexText, RequestBuilder, branch_from, hex16, push_decimal, push_hex16, push_host,
    push_host_ref, push_ip, tag_from, text_of, write_host_ref,
};
pub use error::{ErrorKind, HeaderError, ParseError, UriError, Warning, WarningKind};
pub use framer::{Frame, FrameError, Framer};
pub use header::{Header, HeaderName, HeaderRef, HeaderView, Headers, TypedHeader};
pub use message::{DEFAULT_MAX_SIZE, Message, RequestLine, StartLine, StatusLine, find_in_line};
pub use method::Method;
pub use text::{Params, ParamsRef, decimal, trim_fast};
pub use uri::{Host, HostRef, Scheme, SipUri, SipUriRef, Uri, UriRef, escape_hvalue, unescape};
