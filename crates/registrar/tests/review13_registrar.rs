//! Review 13: the registrar (RFC 3261 §10.3, RFC 3327) and the stateless proxy (RFC 3261
//! §16, RFC 3581) against the RFC text. One process, no sockets, no clock (a fixed `Instant`
//! moved by hand).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use registrar::{AuthMode, Registrar, RegistrarConfig};
use sip_msg::{HeaderName, Host, Message};

const NOW_UNIX: u64 = 1_900_000_000;

fn registrar() -> Registrar {
    Registrar::new(RegistrarConfig {
        domain: "sipmeter.test".into(),
        host: Host::parse("127.0.0.1").unwrap(),
        port: 5060,
        transport: "UDP".into(),
        auth: AuthMode::Open,
        secret: b"review13 secret".to_vec(),
        min_expires: 60,
        max_expires: 3600,
    })
}

fn alice() -> SocketAddr {
    "192.0.2.7:5070".parse().unwrap()
}

fn bob() -> SocketAddr {
    "192.0.2.8:5080".parse().unwrap()
}

/// The messages the registrar sends for `raw` (from `source`, at `now`), with where each went.
fn handle(
    reg: &mut Registrar,
    now: Instant,
    raw: &str,
    source: SocketAddr,
) -> Vec<(SocketAddr, Message)> {
    let msg = Message::parse(raw.as_bytes()).expect("the test's message parses");
    reg.handle_message(now, NOW_UNIX, msg, source);
    std::iter::from_fn(|| reg.poll_transmit())
        .map(|(to, b)| {
            let m = Message::parse(&b).unwrap_or_else(|e| {
                panic!(
                    "the registrar's output parses ({e:?}):\n{}",
                    String::from_utf8_lossy(&b)
                )
            });
            (to, m)
        })
        .collect()
}

/// A REGISTER of `user` from `src` with this Call-ID and CSeq; `more` are extra header lines
/// (each ending in CRLF), Contact lines included.
fn register(user: &str, src: SocketAddr, call_id: &str, cseq: u32, more: &str) -> String {
    format!(
        "REGISTER sip:sipmeter.test SIP/2.0\r\nVia: SIP/2.0/UDP {src};branch=z9hG4bKr{call_id}{cseq}\r\n\
From: <sip:{user}@sipmeter.test>;tag=f{cseq}\r\nTo: <sip:{user}@sipmeter.test>\r\nCall-ID: {call_id}\r\n\
CSeq: {cseq} REGISTER\r\n{more}Content-Length: 0\r\n\r\n"
    )
}

fn values(m: &Message, name: &HeaderName) -> Vec<String> {
    m.headers
        .get_all(name)
        .map(|h| h.value().to_owned())
        .collect()
}

fn invite(user: &str, branch: &str, more: &str) -> String {
    format!(
        "INVITE sip:{user}@sipmeter.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bK{branch}\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@sipmeter.test>;tag=a1\r\nTo: <sip:{user}@sipmeter.test>\r\n\
Call-ID: inv-{branch}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@192.0.2.7:5070>\r\n{more}Content-Length: 0\r\n\r\n"
    )
}

/// RFC 3261 §10.3 step 8: the 200 lists the *current* bindings, each with the interval left.
/// A binding whose time has passed, before the driver's next `handle_timeout`, is not one:
/// it is neither listed (as `expires=0`, which reads as removed) nor used as a target; a
/// binding with less than a second left is listed with `expires=1`, not 0.
#[test]
fn a_lapsed_binding_is_neither_listed_nor_reached_before_the_timer_runs() {
    let mut reg = registrar();
    let t0 = Instant::now();
    let a = "Contact: <sip:bob@192.0.2.8:5080>;expires=60\r\n";
    let got = handle(&mut reg, t0, &register("bob", bob(), "c1", 1, a), bob());
    assert_eq!(got[0].1.status(), Some(200));
    // 59.5 s later: half a second left.
    let t1 = t0 + Duration::from_millis(59_500);
    let b = "Contact: <sip:bob@192.0.2.8:5081>;expires=600\r\n";
    let got = handle(&mut reg, t1, &register("bob", bob(), "c2", 1, b), bob());
    let listed = values(&got[0].1, &HeaderName::Contact);
    assert!(
        listed.contains(&"<sip:bob@192.0.2.8:5080>;expires=1".to_owned()),
        "half a second left is listed as 1: {listed:?}"
    );
    // 61 s after t0 the first binding has lapsed; no handle_timeout ran.
    let t2 = t0 + Duration::from_secs(61);
    let got = handle(&mut reg, t2, &register("bob", bob(), "c3", 1, ""), bob());
    let listed = values(&got[0].1, &HeaderName::Contact);
    assert_eq!(
        listed,
        ["<sip:bob@192.0.2.8:5081>;expires=599"],
        "only the current binding"
    );
    // Carol's only binding lapsed: an INVITE to her gets 480, not forwarded to the contact.
    let c = "Contact: <sip:carol@192.0.2.9:5090>\r\nExpires: 60\r\n";
    let carol: SocketAddr = "192.0.2.9:5090".parse().unwrap();
    handle(&mut reg, t0, &register("carol", carol, "c4", 1, c), carol);
    let got = handle(&mut reg, t2, &invite("carol", "i1", ""), alice());
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].0, got[0].1.status()), (alice(), Some(480)));
}

/// RFC 3261 §10.3: "Registrars MUST NOT include a Record-Route header field in any response
/// to a REGISTER request." A REGISTER that passed a proxy treating REGISTER as an unknown
/// method may carry one; the 200 (and the 200 to OPTIONS, which creates no dialog) must not
/// copy it.
#[test]
fn no_record_route_in_the_answer_to_a_register() {
    let mut reg = registrar();
    let t0 = Instant::now();
    let more = "Record-Route: <sip:192.0.2.50;lr>\r\nContact: <sip:bob@192.0.2.8:5080>\r\nExpires: 600\r\n";
    let got = handle(&mut reg, t0, &register("bob", bob(), "rr", 1, more), bob());
    assert_eq!(got[0].1.status(), Some(200));
    assert!(
        values(&got[0].1, &HeaderName::RecordRoute).is_empty(),
        "no Record-Route in the 200"
    );
    let opts = "OPTIONS sip:sipmeter.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKo1\r\n\
Record-Route: <sip:192.0.2.50;lr>\r\nFrom: <sip:alice@sipmeter.test>;tag=o1\r\nTo: <sip:sipmeter.test>\r\n\
Call-ID: opt1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let got = handle(&mut reg, t0, opts, alice());
    assert_eq!(got[0].1.status(), Some(200));
    assert!(values(&got[0].1, &HeaderName::RecordRoute).is_empty());
}

/// RFC 3327 §5.3: the registrar stores the Path and, when the UA said it supports Path,
/// returns the Path it stored in the 200, in the order received.
#[test]
fn the_path_is_returned_in_the_200() {
    let mut reg = registrar();
    let t0 = Instant::now();
    let edge: SocketAddr = "192.0.2.60:5060".parse().unwrap();
    let raw = "REGISTER sip:sipmeter.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.60:5060;branch=z9hG4bKe1\r\n\
Via: SIP/2.0/UDP 192.0.2.8:5080;branch=z9hG4bKp1\r\nPath: <sip:192.0.2.60:5060;lr>\r\nPath: <sip:192.0.2.61;lr>\r\n\
Supported: path\r\nFrom: <sip:bob@sipmeter.test>;tag=p1\r\nTo: <sip:bob@sipmeter.test>\r\nCall-ID: path1\r\n\
CSeq: 1 REGISTER\r\nContact: <sip:bob@192.0.2.8:5080>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n";
    let got = handle(&mut reg, t0, raw, edge);
    assert_eq!(got[0].1.status(), Some(200));
    let path: Vec<String> = got[0]
        .1
        .headers
        .typed_all::<sip_msg::typed::Route>()
        .into_iter()
        .map(|r| r.unwrap().to_string())
        .collect();
    assert!(path.is_empty(), "Path is not printed as Route");
    let path = values(&got[0].1, &HeaderName::Path).join(", ");
    assert_eq!(path, "<sip:192.0.2.60:5060;lr>, <sip:192.0.2.61;lr>");
}

/// RFC 3261 §16.4: "If the Request-URI contains a value this proxy previously placed into a
/// Record-Route header field ..., the proxy MUST replace the Request-URI in the request with
/// the last value from the Route header field, and remove that value from the Route header
/// field." (A strict router before us.)
#[test]
fn a_request_uri_naming_our_record_route_takes_the_last_route() {
    let mut reg = registrar();
    let t0 = Instant::now();
    let raw = "BYE sip:127.0.0.1:5060;lr SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKs1\r\n\
Max-Forwards: 70\r\nRoute: <sip:192.0.2.30;lr>, <sip:bob@192.0.2.8:5080>\r\nFrom: <sip:alice@sipmeter.test>;tag=a1\r\n\
To: <sip:bob@sipmeter.test>;tag=b1\r\nCall-ID: strict1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
    let got = handle(&mut reg, t0, raw, alice());
    assert_eq!(got.len(), 1);
    let (to, m) = &got[0];
    assert!(m.is_request(), "forwarded: {m:?}");
    assert_eq!(
        m.request_uri().unwrap().to_string(),
        "sip:bob@192.0.2.8:5080"
    );
    let routes: Vec<String> = m
        .headers
        .typed_all::<sip_msg::typed::Route>()
        .into_iter()
        .map(|r| r.unwrap().to_string())
        .collect();
    assert_eq!(routes, ["<sip:192.0.2.30;lr>"]);
    assert_eq!(*to, "192.0.2.30:5060".parse::<SocketAddr>().unwrap());
}

/// RFC 3261 §18.3 / §20.14: over a stream, Content-Length MUST be used. A request that came
/// over UDP without one and goes out on a TCP interface gets one.
#[test]
fn a_request_forwarded_onto_a_stream_carries_content_length() {
    let mut reg = registrar();
    let tcp = reg
        .add_interface("TCP", Host::parse("127.0.0.1").unwrap(), 5062)
        .unwrap();
    let t0 = Instant::now();
    let bob_tcp = registrar::Flow {
        addr: "192.0.2.8:40000".parse().unwrap(),
        iface: tcp,
    };
    let raw = "REGISTER sip:sipmeter.test SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.8:40000;branch=z9hG4bKt1\r\n\
From: <sip:bob@sipmeter.test>;tag=t1\r\nTo: <sip:bob@sipmeter.test>\r\nCall-ID: tcp1\r\nCSeq: 1 REGISTER\r\n\
Contact: <sip:bob@192.0.2.8:40000;transport=tcp>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n";
    reg.handle_message_on(
        t0,
        NOW_UNIX,
        Message::parse(raw.as_bytes()).unwrap(),
        bob_tcp,
    );
    while reg.poll_transmit_flow().is_some() {}
    let body = "v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let raw = format!(
        "INVITE sip:bob@sipmeter.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKnc1\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@sipmeter.test>;tag=a1\r\nTo: <sip:bob@sipmeter.test>\r\n\
Call-ID: nocl\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@192.0.2.7:5070>\r\nContent-Type: application/sdp\r\n\r\n{body}"
    );
    reg.handle_message(
        t0,
        NOW_UNIX,
        Message::parse(raw.as_bytes()).unwrap(),
        alice(),
    );
    let (flow, bytes) = reg.poll_transmit_flow().expect("forwarded");
    assert_eq!(flow, bob_tcp);
    let m = Message::parse(&bytes).unwrap();
    assert_eq!(
        m.headers
            .typed::<sip_msg::typed::ContentLength>()
            .map(|c| c.unwrap().0),
        Some(body.len() as u32),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
}

/// RFC 3261 §16.3 step 2 / §8.2.2.1: a Request-URI whose scheme the proxy does not
/// understand SHOULD get 416 (Unsupported URI Scheme), not 404.
#[test]
fn an_unknown_request_uri_scheme_gets_416() {
    let mut reg = registrar();
    let t0 = Instant::now();
    for uri in ["mailto:bob@sipmeter.test", "http://sipmeter.test/bob"] {
        let raw = format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKu1\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@sipmeter.test>;tag=a1\r\nTo: <sip:bob@sipmeter.test>\r\n\
Call-ID: scheme1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        let got = handle(&mut reg, t0, &raw, alice());
        assert_eq!(got[0].1.status(), Some(416), "{uri}");
    }
}

/// RFC 3261 §10.3 step 7 reads each Contact; one that cannot be read is a malformed request
/// (§8.2, §21.4.1: 400). Before, it was left out silently: a REGISTER whose only Contact was
/// unreadable was taken for a query and answered 200, and the phone believed it was bound.
#[test]
fn a_register_with_an_unreadable_contact_gets_400() {
    let mut reg = registrar();
    let t0 = Instant::now();
    for contact in [
        "Contact: <sip:bob@192.0.2.8:5080\r\n",
        "Contact: <sip:bob@192.0.2.8:5081>, <>\r\n",
    ] {
        let more = format!("{contact}Expires: 600\r\n");
        let got = handle(
            &mut reg,
            t0,
            &register("bob", bob(), "bad", 1, &more),
            bob(),
        );
        assert_eq!(got[0].1.status(), Some(400), "{contact}");
    }
    assert!(reg.bindings("bob").is_empty(), "nothing bound");
}

/// RFC 3261 §16.6 step 6: "If the copy contains a Route header field, the proxy MUST inspect
/// the URI in its first value. If that URI does not contain an lr parameter, the proxy MUST
/// modify the copy as follows: - The proxy MUST place the Request-URI into the Route header
/// field as the last value. - The proxy MUST then place the first Route header field value
/// into the Request-URI and remove that value from the Route header field." (A strict router
/// after us.)
#[test]
fn a_strict_router_next_gets_the_request_uri_from_the_route() {
    let mut reg = registrar();
    let t0 = Instant::now();
    let raw = "BYE sip:bob@192.0.2.8:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKsn1\r\n\
Max-Forwards: 70\r\nRoute: <sip:127.0.0.1:5060;lr>, <sip:192.0.2.30;maddr=192.0.2.30>\r\nRoute: <sip:192.0.2.31;lr>\r\n\
From: <sip:alice@sipmeter.test>;tag=a1\r\nTo: <sip:bob@sipmeter.test>;tag=b1\r\nCall-ID: strictnext1\r\n\
CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
    let got = handle(&mut reg, t0, raw, alice());
    assert_eq!(got.len(), 1);
    let (to, m) = &got[0];
    assert!(m.is_request(), "forwarded: {m:?}");
    assert_eq!(
        m.request_uri().unwrap().to_string(),
        "sip:192.0.2.30;maddr=192.0.2.30"
    );
    let routes: Vec<String> = m
        .headers
        .typed_all::<sip_msg::typed::Route>()
        .into_iter()
        .map(|r| r.unwrap().to_string())
        .collect();
    assert_eq!(
        routes,
        ["<sip:192.0.2.31;lr>", "<sip:bob@192.0.2.8:5080>"],
        "the Request-URI is the last Route value"
    );
    assert_eq!(*to, "192.0.2.30:5060".parse::<SocketAddr>().unwrap());
}

/// Checked correct (no change): RFC 3261 §10.3 step 6, "*" only with `Expires: 0` and as
/// the only Contact (400 otherwise, nothing changes); with both it removes every binding of
/// the AOR.
#[test]
fn star_needs_expires_zero_and_no_other_contact() {
    let mut reg = registrar();
    let t0 = Instant::now();
    let two = "Contact: <sip:bob@192.0.2.8:5080>, <sip:bob@192.0.2.8:5081>\r\nExpires: 600\r\n";
    let got = handle(&mut reg, t0, &register("bob", bob(), "s1", 1, two), bob());
    assert_eq!(values(&got[0].1, &HeaderName::Contact).len(), 2);
    for (cseq, more) in [
        (2, "Contact: *\r\nExpires: 600\r\n"),
        (3, "Contact: *\r\n"),
        (
            4,
            "Contact: *\r\nContact: <sip:bob@192.0.2.8:5082>\r\nExpires: 0\r\n",
        ),
    ] {
        let got = handle(
            &mut reg,
            t0,
            &register("bob", bob(), "s1", cseq, more),
            bob(),
        );
        assert_eq!(got[0].1.status(), Some(400), "{more}");
        assert_eq!(reg.bindings("bob").len(), 2, "{more}: nothing changes");
    }
    let more = "Contact: *\r\nExpires: 0\r\n";
    let got = handle(&mut reg, t0, &register("bob", bob(), "s1", 5, more), bob());
    assert_eq!(got[0].1.status(), Some(200));
    assert!(values(&got[0].1, &HeaderName::Contact).is_empty());
    assert!(reg.bindings("bob").is_empty());
}

/// Checked correct (no change): RFC 3261 §16.11, the stateless proxy. A retransmitted INVITE
/// and its CANCEL leave with the same branch (a function of the incoming one) to the same
/// place; the proxy sends no 100 Trying (one message out per message in); the response
/// pops our Via and goes to the next Via's `received` and `rport` (RFC 3581), or its sent-by
/// port when it asked for no rport (§18.2.2).
#[test]
fn stateless_branches_cancel_and_the_response_path() {
    let mut reg = registrar();
    let t0 = Instant::now();
    let b = "Contact: <sip:bob@192.0.2.8:5080>\r\nExpires: 600\r\n";
    handle(&mut reg, t0, &register("bob", bob(), "sb", 1, b), bob());
    let natted: SocketAddr = "198.51.100.7:31000".parse().unwrap();
    let inv = invite("bob", "sl1", "").replace(";branch=z9hG4bKsl1", ";branch=z9hG4bKsl1;rport");
    let first = handle(&mut reg, t0, &inv, natted);
    let again = handle(&mut reg, t0, &inv, natted);
    assert_eq!(first.len(), 1, "no 100 Trying from a stateless proxy");
    let top_via = |m: &Message| values(m, &HeaderName::Via)[0].clone();
    assert_eq!(first[0].0, bob());
    assert_eq!(top_via(&first[0].1), top_via(&again[0].1), "retransmission");
    let cancel = inv
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let c = handle(&mut reg, t0, &cancel, natted);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].0, bob());
    assert_eq!(top_via(&c[0].1), top_via(&first[0].1), "CANCEL's branch");
    // Bob's 180: our Via popped, sent to received:rport.
    let fwd = &first[0].1;
    let vias: String = values(fwd, &HeaderName::Via)
        .iter()
        .map(|v| format!("Via: {v}\r\n"))
        .collect();
    let ringing = format!(
        "SIP/2.0 180 Ringing\r\n{vias}From: <sip:alice@sipmeter.test>;tag=a1\r\nTo: <sip:bob@sipmeter.test>;tag=b9\r\n\
Call-ID: inv-sl1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    let got = handle(&mut reg, t0, &ringing, bob());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, natted, "to received and rport");
    assert_eq!(values(&got[0].1, &HeaderName::Via).len(), 1, "ours popped");
    // Without rport asked: received, and the sent-by port.
    let inv = invite("bob", "sl2", "");
    let first = handle(&mut reg, t0, &inv, natted);
    let vias: String = values(&first[0].1, &HeaderName::Via)
        .iter()
        .map(|v| format!("Via: {v}\r\n"))
        .collect();
    let ringing = format!(
        "SIP/2.0 180 Ringing\r\n{vias}From: <sip:alice@sipmeter.test>;tag=a1\r\nTo: <sip:bob@sipmeter.test>;tag=b9\r\n\
Call-ID: inv-sl2\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    let got = handle(&mut reg, t0, &ringing, bob());
    assert_eq!(
        got[0].0,
        "198.51.100.7:5070".parse::<SocketAddr>().unwrap(),
        "received, sent-by port"
    );
}

/// Checked correct (no change): RFC 3261 §16.3 step 3, Max-Forwards 0 gets 483 and is not
/// forwarded; otherwise it leaves one less.
#[test]
fn max_forwards_zero_gets_483() {
    let mut reg = registrar();
    let t0 = Instant::now();
    let b = "Contact: <sip:bob@192.0.2.8:5080>\r\nExpires: 600\r\n";
    handle(&mut reg, t0, &register("bob", bob(), "mf", 1, b), bob());
    let zero = invite("bob", "mf0", "").replace("Max-Forwards: 70", "Max-Forwards: 0");
    let got = handle(&mut reg, t0, &zero, alice());
    assert_eq!((got.len(), got[0].1.status()), (1, Some(483)));
    let one = invite("bob", "mf1", "").replace("Max-Forwards: 70", "Max-Forwards: 1");
    let got = handle(&mut reg, t0, &one, alice());
    assert_eq!(values(&got[0].1, &HeaderName::MaxForwards), ["0"]);
}
