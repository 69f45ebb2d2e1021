//! The borrowed views (`headers.view::<ViaRef>()` …) read exactly what the owned views
//! (`headers.typed::<Via>()` …) read: the same values, the same errors. Checked on every
//! message under testdata/ (RFC 4475 torture tests, RFC 5118, regressions) and on values
//! chosen to hit the fast paths and their fallbacks.

use std::path::PathBuf;

use sip_msg::typed::{
    CallId, CallIdRef, Contact, ContactRef, ContentType, ContentTypeRef, From, FromRef, NameAddr,
    NameAddrRef, RecordRoute, RecordRouteRef, Route, RouteRef, To, ToRef, Via, ViaRef,
};
use sip_msg::{HeaderView, Headers, Message, ParamsRef, TypedHeader, Uri, UriRef};

/// Parameter names looked up on every view (present, absent, other case, prefixes).
const NAMES: &[&str] = &[
    "branch",
    "BRANCH",
    "received",
    "rport",
    "maddr",
    "ttl",
    "tag",
    "expires",
    "q",
    "lr",
    "transport",
    "x",
    "b",
    "",
];

fn same_params(view: &ParamsRef<'_>, owned: &sip_msg::Params, what: &str) {
    for name in NAMES {
        assert_eq!(view.get(name), owned.get(name), "{what}: get({name:?})");
        assert_eq!(
            view.value(name).map(|v| v.into_owned()),
            owned.value(name),
            "{what}: value({name:?})"
        );
    }
    assert_eq!(view.into_owned(), *owned, "{what}: into_owned");
}

fn same_name_addr(view: &NameAddrRef<'_>, owned: &NameAddr, what: &str) {
    assert_eq!(view.into_owned(), *owned, "{what}");
    assert_eq!(
        view.tag().map(|t| t.into_owned()),
        owned.tag(),
        "{what}: tag"
    );
    assert_eq!(
        view.display().map(|d| d.into_owned()),
        owned.display,
        "{what}: display"
    );
    same_params(&view.params, &owned.params, what);
}

/// `view_all::<V>()` turned owned equals `typed_all::<T>()`, and `view` equals `typed`.
fn same_all<'a, V, T>(h: &'a Headers, own: impl Fn(&V) -> T, what: &str) -> Vec<(V, T)>
where
    V: HeaderView<'a> + 'a,
    T: TypedHeader + PartialEq + std::fmt::Debug,
{
    let views: Vec<Result<V, _>> = h.view_all::<V>().collect();
    let owned = h.typed_all::<T>();
    assert_eq!(views.len(), owned.len(), "{what}: count");
    let mut pairs = Vec::new();
    for (v, o) in views.into_iter().zip(owned) {
        match (v, o) {
            (Ok(v), Ok(o)) => {
                assert_eq!(own(&v), o, "{what}");
                pairs.push((v, o));
            }
            (Err(a), Err(b)) => assert_eq!(a, b, "{what}: error"),
            (v, o) => panic!("{what}: view {:?} but owned {o:?}", v.err()),
        }
    }
    match (h.view::<V>(), h.typed::<T>()) {
        (None, None) => {}
        (Some(Ok(v)), Some(Ok(o))) => assert_eq!(own(&v), o, "{what}: first"),
        (Some(Err(a)), Some(Err(b))) => assert_eq!(a, b, "{what}: first error"),
        (v, o) => panic!(
            "{what}: first view {:?} but owned {o:?}",
            v.map(|r| r.err())
        ),
    }
    pairs
}

fn check_message(msg: &Message, what: &str) {
    let h = &msg.headers;
    for (v, o) in same_all::<ViaRef, Via>(h, |v| v.into_owned(), &format!("{what}: Via")) {
        same_params(&v.params, &o.params, &format!("{what}: Via params"));
        assert_eq!(v.branch().map(|b| b.into_owned()), o.branch());
        assert_eq!(v.received().map(|b| b.into_owned()), o.received());
        assert_eq!(v.rport(), o.rport());
        assert_eq!(v.maddr().map(|b| b.into_owned()), o.maddr());
        assert_eq!(v.ttl(), o.ttl());
    }
    for (v, o) in
        same_all::<ContactRef, Contact>(h, |c| c.into_owned(), &format!("{what}: Contact"))
    {
        assert_eq!(
            (v.expires(), v.q()),
            (o.expires(), o.q()),
            "{what}: Contact"
        );
        if let (Some(a), Some(b)) = (v.addr(), o.addr()) {
            same_name_addr(a, b, &format!("{what}: Contact"));
        }
    }
    for (v, o) in same_all::<FromRef, From>(h, |f| From(f.into_owned()), &format!("{what}: From")) {
        same_name_addr(&v, &o, &format!("{what}: From"));
    }
    for (v, o) in same_all::<ToRef, To>(h, |t| To(t.into_owned()), &format!("{what}: To")) {
        same_name_addr(&v, &o, &format!("{what}: To"));
    }
    same_all::<RouteRef, Route>(h, |r| Route(r.into_owned()), &format!("{what}: Route"));
    same_all::<RecordRouteRef, RecordRoute>(
        h,
        |r| RecordRoute(r.into_owned()),
        &format!("{what}: Record-Route"),
    );
    same_all::<CallIdRef, CallId>(h, |c| CallId(c.0.to_owned()), &format!("{what}: Call-ID"));
    same_all::<ContentTypeRef, ContentType>(
        h,
        |c| c.into_owned(),
        &format!("{what}: Content-Type"),
    );
}

#[test]
fn views_read_what_owned_views_read_on_every_test_message() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata");
    let mut checked = 0;
    for dir in ["rfc4475", "rfc5118", "regressions"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("testdata") {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "sip") {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            if let Ok(msg) = Message::parse(&bytes) {
                check_message(&msg, &path.display().to_string());
                checked += 1;
            }
        }
    }
    // RFC 4475 alone has more than 30 messages that parse.
    assert!(checked > 30, "only {checked} messages checked");
}

#[test]
fn views_match_on_edge_values() {
    let vias = [
        "SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK6c2f;rport",
        "SIP / 2.0 / udp host.example.com ; branch = z9hG4bK1 ; received=10.0.0.1;rport=5060",
        "SIP/2.0/TCP [2001:db8::9:1];branch=z9hG4bKas3;ttl=16;maddr=[2001:db8::1]",
        "SIP/2.0/UDP h;branch=\"quoted;semi\";x",
        "SIP/2.0/UDP h;branch=a;branch=b;BRANCH=c",
        "SIP/2.0/UDP h;ttl=300",
        "SIP/2.0/UDP h;;branch=a",
        "SIP/2.0/UDP h;branch=",
        "SIP/2.0/UDP h;branch",
        "SIP/2.0/UDP h;br anch=a",
        "SIP/2.0/UDP h;branch=a;",
        "SIP/2.0/UDP h;x=\"unterminated",
        "SIP/2.0/UDP h;x=<a;b>",
        "SIP/2.0/UDP 010.0.0.1:5060;branch=z9hG4bK1",
        "SIP/2.0/UDP 1.2.3:99999",
        "SIP/2.0/UDP a..b.;rport",
        "SIP/2.0/UDP -a.b",
        "SIP/3.0/UDP h",
        "SIP/2.0/UDP\u{a0}h",
        "SIP/2.0/UDP h;tag\u{3000}=x",
    ];
    let addrs = [
        "\"Load Tester 1001\" <sip:1001@pbx.example.com>;tag=9f3a7c21e5d84b60",
        "<sip:1002@pbx.example.com>",
        "Bob <sips:bob:pw@[2001:db8::1]:5061;transport=TCP;lr?Subject=x&P=y> ; tag = 88",
        "\"Bob \\\"B\\\"\" <sip:bob@biloxi.com>;tag=a6c85cf",
        "sip:alice@atlanta.com;tag=1928301774",
        "sip:user@example.com?Route=%3Csip:a%3E",
        "<sip:%61lice@example.com;lr;lr=x;transport=udp;transport=tcp>",
        "<sip:%6Glice@example.com>",
        "<tel:+1-201-555-0123;phone-context=example.com>",
        "<urn:service:sos>",
        "<mailto:a%zz@b>",
        "<sip:a@b>;expires=3600;q=0.7",
        "<sip:a@b>;expires=280297596632815",
        "<sip:a@b>;q=2",
        "<sip:a@b>;tag=\"x\\\"y\"",
        "Bell, Alexander <sip:a@b>",
        "\"Bob <sip:b@c>",
        "<sip:b@c",
        "<sip:a@b;maddr=[::1]>;param=[::1]:5",
        "<sip:a b@c>",
        "*",
    ];
    for (i, v) in vias.iter().enumerate() {
        let raw = format!("OPTIONS sip:a@b SIP/2.0\r\nVia: {v}\r\nVia: {v}, {v}\r\n\r\n");
        let msg = Message::parse(raw.as_bytes()).unwrap();
        check_message(&msg, &format!("via {i}: {v}"));
    }
    for (i, a) in addrs.iter().enumerate() {
        let raw = format!(
            "OPTIONS sip:a@b SIP/2.0\r\nFrom: {a}\r\nTo: {a}\r\nContact: {a}\r\n\
             Contact: {a}, <sip:x@y>\r\nRoute: {a}\r\nRecord-Route: {a}\r\n\r\n"
        );
        let msg = Message::parse(raw.as_bytes()).unwrap();
        check_message(&msg, &format!("addr {i}: {a}"));
        let uri = a.trim_start_matches('<').split('>').next().unwrap();
        assert_eq!(
            UriRef::parse(uri).map(UriRef::into_owned),
            Uri::parse(uri),
            "uri {uri}"
        );
    }
}

#[test]
fn views_borrow_from_the_message() {
    let raw = b"INVITE sip:bob@biloxi.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds;received=192.0.2.1\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
To: Bob <sip:bob@biloxi.com>\r\nCall-ID: a84b4c76e66710\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.com>;expires=60\r\nContent-Type: Application/SDP\r\n\r\n";
    let msg = Message::parse(raw).unwrap();
    let h = &msg.headers;
    let via = h.view::<ViaRef>().unwrap().unwrap();
    assert_eq!(via.transport, "UDP");
    assert!(matches!(
        via.branch(),
        Some(std::borrow::Cow::Borrowed("z9hG4bK776asdhds"))
    ));
    assert_eq!(via.received().as_deref(), Some("192.0.2.1"));
    assert_eq!(via.rport(), None);
    let from = h.view::<FromRef>().unwrap().unwrap();
    assert_eq!(from.display().as_deref(), Some("Alice"));
    assert_eq!(from.tag().as_deref(), Some("1928301774"));
    let user = from.uri.as_sip().and_then(|u| u.user);
    assert_eq!(user, Some("alice"));
    assert_eq!(h.view::<ToRef>().unwrap().unwrap().tag(), None);
    assert_eq!(h.view::<CallIdRef>().unwrap().unwrap().0, "a84b4c76e66710");
    let contacts: Vec<_> = h.view_all::<ContactRef>().map(Result::unwrap).collect();
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].expires(), Some(60));
    let ct = h.view::<ContentTypeRef>().unwrap().unwrap();
    assert!(ct.is("application", "sdp"));
    assert_eq!(ct.into_owned().media_type, "application/sdp");
    assert!(h.view::<RouteRef>().is_none());
}
