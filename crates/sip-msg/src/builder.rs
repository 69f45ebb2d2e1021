//! Builders for correct requests (RFC 3261 §8.1.1).

use std::fmt;

use bytes::Bytes;

use crate::header::{Header, HeaderName};
use crate::message::Message;
use crate::method::Method;
use crate::typed::{CSeq, NameAddr, Via};
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

/// A branch from 64 random bits supplied by the caller (seeded RNG): `z9hG4bK` + 16 hex digits.
pub fn branch_from(random: u64) -> String {
    format!("{BRANCH_MAGIC}{random:016x}")
}

/// A tag from 64 random bits supplied by the caller.
pub fn tag_from(random: u64) -> String {
    format!("{random:016x}")
}

/// Builds a request with the mandatory headers in the usual order:
/// Via, Max-Forwards, Route, From, To, Call-ID, CSeq, Contact, others, Content-Type/Length.
#[derive(Debug)]
pub struct RequestBuilder {
    method: Method,
    uri: Uri,
    /// Via values, printed when added.
    via: Vec<String>,
    max_forwards: u8,
    routes: Vec<NameAddr>,
    from: Option<NameAddr>,
    to: Option<NameAddr>,
    call_id: Option<String>,
    cseq: u32,
    contact: Option<NameAddr>,
    extra: Vec<Header>,
    body: Option<(String, Bytes)>,
}

impl RequestBuilder {
    /// Starts a request; CSeq defaults to 1 and Max-Forwards to 70.
    pub fn new(method: Method, uri: Uri) -> Self {
        Self {
            method,
            uri,
            via: Vec::new(),
            max_forwards: 70,
            routes: Vec::new(),
            from: None,
            to: None,
            call_id: None,
            cseq: 1,
            contact: None,
            extra: Vec::new(),
            body: None,
        }
    }

    /// Adds a Via (the first added is the top one).
    pub fn via(mut self, via: Via) -> Self {
        self.via.push(text_of(&via, 96));
        self
    }

    /// Adds a Via value already printed (`SIP/2.0/UDP host:port;branch=…`), as a caller that
    /// writes its Via straight into one string does.
    pub fn via_text(mut self, via: String) -> Self {
        self.via.push(via);
        self
    }

    /// Sets Max-Forwards.
    pub fn max_forwards(mut self, n: u8) -> Self {
        self.max_forwards = n;
        self
    }

    /// Adds a Route entry.
    pub fn route(mut self, route: NameAddr) -> Self {
        self.routes.push(route);
        self
    }

    /// Sets From (include the tag).
    pub fn from(mut self, from: NameAddr) -> Self {
        self.from = Some(from);
        self
    }

    /// Sets To.
    pub fn to(mut self, to: NameAddr) -> Self {
        self.to = Some(to);
        self
    }

    /// Sets Call-ID.
    pub fn call_id(mut self, call_id: impl Into<String>) -> Self {
        self.call_id = Some(call_id.into());
        self
    }

    /// Sets the CSeq number (the method is the request's).
    pub fn cseq(mut self, seq: u32) -> Self {
        self.cseq = seq;
        self
    }

    /// Sets Contact.
    pub fn contact(mut self, contact: NameAddr) -> Self {
        self.contact = Some(contact);
        self
    }

    /// Adds any other header.
    pub fn header(mut self, name: impl Into<HeaderName>, value: impl Into<String>) -> Self {
        self.extra.push(Header::new(name, value));
        self
    }

    /// Sets the body and its type.
    pub fn body(mut self, content_type: &str, body: impl Into<Bytes>) -> Self {
        self.body = Some((content_type.to_owned(), body.into()));
        self
    }

    /// The request; Content-Length is computed from the body.
    pub fn build(self) -> Message {
        let mut m = Message::new_request(self.method.clone(), self.uri);
        for v in self.via {
            m.headers.push(Header::new(HeaderName::Via, v));
        }
        m.headers.push(Header::new(
            HeaderName::MaxForwards,
            self.max_forwards.to_string(),
        ));
        for r in &self.routes {
            m.headers
                .push(Header::new(HeaderName::Route, text_of(r, 64)));
        }
        if let Some(f) = &self.from {
            m.headers
                .push(Header::new(HeaderName::From, text_of(f, 96)));
        }
        if let Some(t) = &self.to {
            m.headers.push(Header::new(HeaderName::To, text_of(t, 96)));
        }
        if let Some(c) = self.call_id {
            m.headers.push(Header::new(HeaderName::CallId, c));
        }
        m.headers.push(Header::new(
            HeaderName::CSeq,
            text_of(
                &CSeq {
                    seq: self.cseq,
                    method: self.method,
                },
                24,
            ),
        ));
        if let Some(c) = &self.contact {
            m.headers
                .push(Header::new(HeaderName::Contact, text_of(c, 96)));
        }
        for h in self.extra {
            m.headers.push(h);
        }
        match self.body {
            Some((ct, body)) => m.set_body(&ct, body),
            None => m.headers.push(Header::new(HeaderName::ContentLength, "0")),
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uri::{Host, SipUri};

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
}
