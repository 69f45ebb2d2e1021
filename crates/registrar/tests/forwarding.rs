//! The proxy's forwarding (RFC 3261 §16.6, §16.7) checked against sip-msg's typed reading of
//! what went in and what came out: our Via and the stamped top Via added on requests (every
//! other Via value kept, in order), our own Route entry popped (the others kept), Max-Forwards
//! decremented, Record-Route added on initial INVITEs, our Via removed from responses, the
//! body and Content-Length as received. Header lines are written in every way a peer may
//! write them: compact names, several values on one line, folded lines, quoted strings with
//! escaped quotes and commas. One process, no sockets, no clock.

use std::net::SocketAddr;
use std::time::Instant;

use registrar::{AuthMode, Registrar, RegistrarConfig};
use sip_msg::typed::{ContentLength, MaxForwards, RecordRoute, Route, Via};
use sip_msg::{Host, Message, TypedHeader};

const NOW_UNIX: u64 = 1_900_000_000;
const OUR_VIA: &str = "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsm";

fn registrar_config() -> RegistrarConfig {
    RegistrarConfig {
        domain: "sipmeter.test".into(),
        host: Host::parse("127.0.0.1").unwrap(),
        port: 5060,
        transport: "UDP".into(),
        auth: AuthMode::Open,
        secret: b"forwarding secret".to_vec(),
        min_expires: 60,
        max_expires: 3600,
    }
}

fn registrar() -> Registrar {
    Registrar::new(registrar_config())
}

fn alice() -> SocketAddr {
    "192.0.2.7:5070".parse().unwrap()
}

fn bob() -> SocketAddr {
    "192.0.2.8:5080".parse().unwrap()
}

/// The messages the registrar sends for `raw` (from `source`), with where each went.
fn handle(reg: &mut Registrar, raw: &str, source: SocketAddr) -> Vec<(SocketAddr, Message)> {
    let msg = Message::parse(raw.as_bytes()).expect("the test's message parses");
    reg.handle_message(Instant::now(), NOW_UNIX, msg, source);
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

fn vias(m: &Message) -> Vec<String> {
    m.headers
        .typed_all::<Via>()
        .into_iter()
        .map(|v| v.map_or_else(|e| format!("unreadable: {e:?}"), |v| v.to_string()))
        .collect()
}

fn routes(m: &Message) -> Vec<String> {
    m.headers
        .typed_all::<Route>()
        .into_iter()
        .map(|r| r.map_or_else(|e| format!("unreadable: {e:?}"), |r| r.to_string()))
        .collect()
}

fn record_routes(m: &Message) -> Vec<String> {
    m.headers
        .typed_all::<RecordRoute>()
        .into_iter()
        .map(|r| r.map_or_else(|e| format!("unreadable: {e:?}"), |r| r.to_string()))
        .collect()
}

fn max_forwards(m: &Message) -> Option<u8> {
    m.headers
        .typed::<MaxForwards>()
        .map(|r| r.expect("a readable Max-Forwards").0)
}

/// Bob's phone registered at `bob()`.
fn with_bob() -> Registrar {
    let mut reg = registrar();
    let raw = "REGISTER sip:sipmeter.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.8:5080;branch=z9hG4bKr1\r\n\
From: <sip:bob@sipmeter.test>;tag=r1\r\nTo: <sip:bob@sipmeter.test>\r\nCall-ID: fwd-reg\r\n\
CSeq: 1 REGISTER\r\nContact: <sip:bob@192.0.2.8:5080>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n";
    let got = handle(&mut reg, raw, bob());
    assert_eq!(got[0].1.status(), Some(200));
    reg
}

/// Requests whose Via and Route lines are written in the ways RFC 3261 §7.3 allows, each
/// with what must come out: the top Via stamped (`received`), the rest of the Vias as
/// received, our Route popped, the rest of the Routes kept, and where the request goes.
#[test]
fn requests_keep_every_other_via_and_route_value() {
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    struct Case {
        /// The Via, Route and Max-Forwards lines of the request.
        lines: &'static str,
        /// In-dialog (a To tag): routed by Route or Request-URI, not by the AOR.
        in_dialog: bool,
        /// The top Via as stamped.
        top: &'static str,
        /// The other Vias, as read from the request.
        rest: &'static [&'static str],
        /// The Routes left.
        routes: &'static [&'static str],
        /// Where it goes.
        to: &'static str,
    }
    let cases = [
        Case {
            lines: "Via: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKa\r\nMax-Forwards: 70\r\n",
            in_dialog: false,
            top: "SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKa;received=192.0.2.7",
            rest: &[],
            routes: &[],
            to: "192.0.2.8:5080",
        },
        // Compact form, several values on one line, and a folded line.
        Case {
            lines: "v: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKb, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKb1\r\n\
Max-Forwards: 70\r\nVia: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKb2,\r\n SIP/2.0/TCP 10.0.0.3;branch=z9hG4bKb3\r\n",
            in_dialog: false,
            top: "SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKb;received=192.0.2.7",
            rest: &[
                "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKb1",
                "SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKb2",
                "SIP/2.0/TCP 10.0.0.3;branch=z9hG4bKb3",
            ],
            routes: &[],
            to: "192.0.2.8:5080",
        },
        // A quoted Via parameter holding an escaped quote and a comma.
        Case {
            lines: "Via: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKc;x=\"a\\\", b\", SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKc1\r\n\
Max-Forwards: 70\r\n",
            in_dialog: false,
            top: "SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKc;x=\"a\\\", b\";received=192.0.2.7",
            rest: &["SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKc1"],
            routes: &[],
            to: "192.0.2.8:5080",
        },
        // In dialog: our Route popped, the next one followed.
        Case {
            lines: "Via: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKd\r\nRoute: <sip:127.0.0.1:5060;lr>, <sip:192.0.2.9:5090;lr>\r\n\
Route: <sip:192.0.2.10;lr>\r\nMax-Forwards: 70\r\n",
            in_dialog: true,
            top: "SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKd;received=192.0.2.7",
            rest: &[],
            routes: &["<sip:192.0.2.9:5090;lr>", "<sip:192.0.2.10;lr>"],
            to: "192.0.2.9:5090",
        },
        // Our Route with a display name holding an escaped quote and a comma.
        Case {
            lines: "Via: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKe\r\n\
Route: \"proxy \\\"one, sipmeter\" <sip:127.0.0.1:5060;lr>, \"next\" <sip:192.0.2.9:5090;lr>\r\nMax-Forwards: 70\r\n",
            in_dialog: true,
            top: "SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKe;received=192.0.2.7",
            rest: &[],
            routes: &["\"next\" <sip:192.0.2.9:5090;lr>"],
            to: "192.0.2.9:5090",
        },
        // A folded Route line, our entry alone on the first line.
        Case {
            lines: "Via: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKf\r\nRoute: <sip:127.0.0.1:5060;lr>\r\n\
Route:\r\n <sip:192.0.2.9:5090;lr>,\r\n <sip:192.0.2.10;lr>\r\nMax-Forwards: 70\r\n",
            in_dialog: true,
            top: "SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKf;received=192.0.2.7",
            rest: &[],
            routes: &["<sip:192.0.2.9:5090;lr>", "<sip:192.0.2.10;lr>"],
            to: "192.0.2.9:5090",
        },
        // RFC 3261 §16.4: a Route naming our domain (no port, or ours) is ours too, in any
        // case; the next one is followed, or the Request-URI when none is left.
        Case {
            lines: "Via: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKg\r\nRoute: <sip:sipmeter.test;lr>, <sip:192.0.2.9:5090;lr>\r\n\
Max-Forwards: 70\r\n",
            in_dialog: true,
            top: "SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKg;received=192.0.2.7",
            rest: &[],
            routes: &["<sip:192.0.2.9:5090;lr>"],
            to: "192.0.2.9:5090",
        },
        Case {
            lines: "Via: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKh\r\nRoute: <sip:SipMeter.TEST:5060;lr>\r\n\
Max-Forwards: 70\r\n",
            in_dialog: true,
            top: "SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKh;received=192.0.2.7",
            rest: &[],
            routes: &[],
            to: "192.0.2.8:5080",
        },
        Case {
            lines: "Via: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKi\r\nRoute: <sip:sipmeter.test;lr>\r\nMax-Forwards: 70\r\n",
            in_dialog: false,
            top: "SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKi;received=192.0.2.7",
            rest: &[],
            routes: &[],
            to: "192.0.2.8:5080",
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        let mut reg = with_bob();
        let (to_tag, method) = if case.in_dialog {
            (";tag=b1", "BYE")
        } else {
            ("", "INVITE")
        };
        let body = if case.in_dialog { "" } else { sdp };
        let raw = format!(
            "{method} sip:bob@sipmeter.test SIP/2.0\r\n{}f: \"Alice, A.\" <sip:alice@sipmeter.test>;tag=a1\r\n\
t: <sip:bob@sipmeter.test>{to_tag}\r\ni: fwd-{i}\r\nCSeq: 1 {method}\r\nc: application/sdp\r\nl: {}\r\n\r\n{body}",
            case.lines,
            body.len()
        );
        let got = handle(&mut reg, &raw, alice());
        assert_eq!(got.len(), 1, "case {i}");
        let (to, out) = &got[0];
        let text = out.to_string();
        assert_eq!(to.to_string(), case.to, "case {i}: {text}");
        assert_eq!(out.method().map(|m| m.to_string()), Some(method.into()));
        let got_vias = vias(out);
        assert!(got_vias[0].starts_with(OUR_VIA), "case {i}: {text}");
        let mut want = vec![case.top.to_owned()];
        want.extend(case.rest.iter().map(|v| v.to_string()));
        assert_eq!(got_vias[1..], want, "case {i}: {text}");
        // As sip-msg prints them (a display name without its quotes).
        let want: Vec<String> = case
            .routes
            .iter()
            .map(|r| Route::parse(r).unwrap().to_string())
            .collect();
        assert_eq!(routes(out), want, "case {i}: {text}");
        assert_eq!(max_forwards(out), Some(69), "case {i}: {text}");
        let rr = record_routes(out);
        if case.in_dialog {
            assert!(rr.is_empty(), "case {i}: {text}");
        } else {
            assert_eq!(rr, ["<sip:127.0.0.1:5060;lr>"], "case {i}: {text}");
        }
        assert_eq!(out.body(), body.as_bytes(), "case {i}: {text}");
        let length = out.headers.typed::<ContentLength>().map(|l| l.unwrap().0);
        assert_eq!(length, Some(body.len() as u32), "case {i}: {text}");
    }
}

/// Responses: our Via (alone on its line or first of several, compact or not) is removed and
/// the response goes to the next Via's received/rport address; every other Via stays.
#[test]
fn responses_lose_our_via_only() {
    for (i, (lines, rest, to)) in [
        (
            "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsm0123456789abcdef\r\n\
Via: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKa;received=192.0.2.7;rport=5071\r\n",
            &["SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKa;received=192.0.2.7;rport=5071"][..],
            "192.0.2.7:5071",
        ),
        (
            "v: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsm0123456789abcdef ,SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKa;received=192.0.2.7,\r\n \
SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa1\r\n",
            &[
                "SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKa;received=192.0.2.7",
                "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa1",
            ][..],
            "192.0.2.7:5070",
        ),
        (
            "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsm0123456789abcdef;x=\"q\\\", r\", SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKa;received=192.0.2.7\r\n",
            &["SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKa;received=192.0.2.7"][..],
            "192.0.2.7:5070",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let mut reg = registrar();
        let raw = format!(
            "SIP/2.0 200 OK\r\n{lines}Record-Route: <sip:127.0.0.1:5060;lr>\r\nf: <sip:alice@sipmeter.test>;tag=a1\r\n\
t: <sip:bob@sipmeter.test>;tag=b1\r\ni: fwd-r{i}\r\nCSeq: 1 INVITE\r\nc: application/sdp\r\nl: 4\r\n\r\nv=0\n"
        );
        let got = handle(&mut reg, &raw, bob());
        assert_eq!(got.len(), 1, "case {i}");
        let (addr, out) = &got[0];
        let text = out.to_string();
        assert_eq!(addr.to_string(), to, "case {i}: {text}");
        assert_eq!(out.status(), Some(200));
        assert_eq!(vias(out), rest, "case {i}: {text}");
        assert_eq!(record_routes(out), ["<sip:127.0.0.1:5060;lr>"], "case {i}");
        assert_eq!(&out.body()[..], b"v=0\n", "case {i}");
    }
}

/// The registrar's own answers (here 200 to a REGISTER, RFC 3261 §8.2.6.2) copy every Via
/// value, the top one stamped, whatever quoted strings the top one holds.
#[test]
fn answers_keep_every_via_value() {
    let mut reg = registrar();
    let raw = "REGISTER sip:sipmeter.test SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKq;x=\"q\\\", r\", SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKq1\r\n\
From: <sip:alice@sipmeter.test>;tag=r1\r\nTo: <sip:alice@sipmeter.test>\r\nCall-ID: fwd-answer\r\n\
CSeq: 1 REGISTER\r\nContact: <sip:alice@192.0.2.7:5070>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n";
    let got = handle(&mut reg, raw, alice());
    assert_eq!(got.len(), 1);
    let (to, out) = &got[0];
    assert_eq!(*to, alice());
    assert_eq!(out.status(), Some(200), "{out}");
    assert_eq!(
        vias(out),
        [
            "SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKq;x=\"q\\\", r\";received=192.0.2.7",
            "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKq1"
        ],
        "{out}"
    );
}

/// RFC 3261 §16.6 step 4: the Record-Route URI must resolve to the proxy. Resolved as RFC
/// 3263 says, a `sip:` URI with an address, a port and no transport is UDP, so a registrar
/// serving a stream transport names it (`;transport=tcp` …), as Kamailio's record_route
/// does; and a Route naming us with that transport is popped as ours.
#[test]
fn record_route_names_the_transport_it_resolves_to() {
    for (transport, rr) in [
        ("UDP", "<sip:127.0.0.1:5060;lr>"),
        ("TCP", "<sip:127.0.0.1:5060;transport=tcp;lr>"),
        ("TLS", "<sip:127.0.0.1:5060;transport=tls;lr>"),
        ("WS", "<sip:127.0.0.1:5060;transport=ws;lr>"),
        ("WSS", "<sip:127.0.0.1:5060;transport=wss;lr>"),
    ] {
        let mut reg = Registrar::new(RegistrarConfig {
            transport: transport.into(),
            ..registrar_config()
        });
        let register = "REGISTER sip:sipmeter.test SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.8:5080;branch=z9hG4bKr1\r\n\
From: <sip:bob@sipmeter.test>;tag=r1\r\nTo: <sip:bob@sipmeter.test>\r\nCall-ID: fwd-rr\r\n\
CSeq: 1 REGISTER\r\nContact: <sip:bob@192.0.2.8:5080>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(handle(&mut reg, register, bob())[0].1.status(), Some(200));
        let invite = "INVITE sip:bob@sipmeter.test SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.7:5070;branch=z9hG4bKi\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@sipmeter.test>;tag=a1\r\nTo: <sip:bob@sipmeter.test>\r\nCall-ID: fwd-rr-call\r\n\
CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        let got = handle(&mut reg, invite, alice());
        assert_eq!(got[0].0, bob(), "{transport}");
        assert_eq!(record_routes(&got[0].1), [rr], "{transport}");
        let via = vias(&got[0].1)[0].clone();
        assert!(
            via.starts_with(&format!("SIP/2.0/{transport} 127.0.0.1:5060;")),
            "{via}"
        );
        // The BYE the callee sends along that route set: our entry popped, on to alice.
        let bye = format!(
            "BYE sip:alice@192.0.2.7:5070 SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.8:5080;branch=z9hG4bKb\r\n\
Route: {rr}\r\nMax-Forwards: 70\r\nFrom: <sip:bob@sipmeter.test>;tag=b1\r\nTo: <sip:alice@sipmeter.test>;tag=a1\r\n\
Call-ID: fwd-rr-call\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
        );
        let got = handle(&mut reg, &bye, bob());
        assert_eq!(got[0].0, alice(), "{transport}");
        assert!(routes(&got[0].1).is_empty(), "{transport}: {}", got[0].1);
    }
}
