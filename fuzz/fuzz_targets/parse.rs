//! Parse, validate, print and re-parse arbitrary bytes: nothing may panic, and a printed
//! message must parse again to the same start line and header count. The borrowed views
//! must read exactly what the owned views read (they share one parser; this checks the
//! fast paths against the general ones).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip_msg::typed::{
    CSeq, CallId, CallIdRef, Contact, ContactRef, ContentType, ContentTypeRef, From, FromRef,
    RecordRoute, Route, RouteRef, To, ToRef, Via, ViaRef,
};
use sip_msg::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(mut msg) = Message::parse(data) else { return };
    let _ = msg.validate();
    // Every typed view must answer without panicking.
    let vias = msg.headers.typed_all::<Via>();
    let contacts = msg.headers.typed_all::<Contact>();
    let routes = msg.headers.typed_all::<Route>();
    let _ = msg.headers.typed_all::<RecordRoute>();
    let from = msg.headers.typed::<From>();
    let to = msg.headers.typed::<To>();
    let _ = msg.headers.typed::<CSeq>();
    let _ = msg.summary();
    // Borrowed views, turned owned, equal the owned views (values and errors).
    let h = &msg.headers;
    let v: Vec<_> = h.view_all::<ViaRef>().map(|r| r.map(ViaRef::into_owned)).collect();
    assert_eq!(v, vias);
    for (r, o) in h.view_all::<ViaRef>().zip(&vias) {
        if let (Ok(r), Ok(o)) = (r, o) {
            assert_eq!(r.branch().map(|b| b.into_owned()), o.branch());
            assert_eq!(r.rport(), o.rport());
            assert_eq!(r.received().map(|b| b.into_owned()), o.received());
        }
    }
    let c: Vec<_> = h.view_all::<ContactRef>().map(|r| r.map(ContactRef::into_owned)).collect();
    assert_eq!(c, contacts);
    let r: Vec<_> = h.view_all::<RouteRef>().map(|r| r.map(|r| Route(r.into_owned()))).collect();
    assert_eq!(r, routes);
    assert_eq!(h.view::<FromRef>().map(|r| r.map(|f| From(f.into_owned()))), from);
    assert_eq!(h.view::<ToRef>().map(|r| r.map(|t| To(t.into_owned()))), to);
    let tag = h.view::<FromRef>().and_then(Result::ok).and_then(|f| f.tag()).map(|t| t.into_owned());
    assert_eq!(tag, from.and_then(Result::ok).and_then(|f| f.tag()));
    assert_eq!(
        h.view::<CallIdRef>().map(|r| r.map(|c| CallId(c.0.to_owned()))),
        h.typed::<CallId>()
    );
    assert_eq!(
        h.view::<ContentTypeRef>().map(|r| r.map(ContentTypeRef::into_owned)),
        h.typed::<ContentType>()
    );
    // The Request-URI read in place (the parts its parse found, kept as ranges) is the one
    // its text reads as, and the owned one; printed in place only as the owned one prints.
    if let Some(text) = msg.request_uri_text() {
        let read = sip_msg::UriRef::parse(text).ok();
        assert_eq!(msg.request_uri_in_place(), read);
        assert_eq!(
            msg.request_uri().map(std::borrow::Cow::into_owned),
            read.map(sip_msg::UriRef::into_owned)
        );
    }
    if let Some(p) = msg.request_uri_printed() {
        assert_eq!(Some(p.to_owned()), msg.request_uri().map(|u| u.to_string()));
    }
    let printed = msg.to_bytes();
    let again = Message::parse(&printed).expect("a printed message parses again");
    assert_eq!(again.start_line(), msg.start_line());
    assert_eq!(again.headers.len(), msg.headers.len());
});
