//! RFC 3261 §10.3 steps 6 and 7: a REGISTER whose Call-ID is the one a binding was made with
//! must carry a higher CSeq to change it. One process, no sockets, no clock (a fixed `Instant`
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
        secret: b"ordering secret".to_vec(),
        min_expires: 60,
        max_expires: 3600,
    })
}

/// A REGISTER of `bob` with this Call-ID and CSeq, `contacts` as the Contact lines' values.
fn register(call_id: &str, cseq: u32, contacts: &[&str], expires: u32) -> String {
    let mut lines = String::new();
    for c in contacts {
        lines.push_str("Contact: ");
        lines.push_str(c);
        lines.push_str("\r\n");
    }
    format!(
        "REGISTER sip:sipmeter.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKo{call_id}{cseq};rport\r\n\
From: <sip:bob@sipmeter.test>;tag=f1\r\nTo: <sip:bob@sipmeter.test>\r\nCall-ID: {call_id}\r\n\
CSeq: {cseq} REGISTER\r\n{lines}Expires: {expires}\r\nContent-Length: 0\r\n\r\n"
    )
}

const SRC: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7)),
    5070,
);

/// The one answer to `raw`: its status and the contacts it lists.
fn answer(reg: &mut Registrar, now: Instant, raw: &str) -> (u16, Vec<String>) {
    let msg = Message::parse(raw.as_bytes()).expect("the test's request parses");
    reg.handle_message(now, NOW_UNIX, msg, SRC);
    let out: Vec<_> = std::iter::from_fn(|| reg.poll_transmit()).collect();
    assert_eq!(out.len(), 1, "one answer");
    let resp = Message::parse(&out[0].1).expect("the answer parses");
    let listed = resp
        .headers
        .get_all(&HeaderName::Contact)
        .map(|h| h.value().to_owned())
        .collect();
    (resp.status().expect("a response"), listed)
}

fn bound(reg: &Registrar) -> Vec<String> {
    let mut v: Vec<String> = reg
        .bindings("bob")
        .iter()
        .map(|b| b.contact.to_string())
        .collect();
    v.sort();
    v
}

const A: &str = "<sip:bob@192.0.2.7:5070>";
const B: &str = "<sip:bob@192.0.2.7:5071>";

/// A late, older REGISTER of the same Call-ID (an `Expires: 0` overtaken by the re-REGISTER
/// that followed it) is refused with 400 and changes nothing; a higher CSeq or another
/// Call-ID (a phone that restarted: CSeq from 1 again) applies.
#[test]
fn an_older_register_of_the_same_call_id_is_refused() {
    let mut reg = registrar();
    let t0 = Instant::now();
    assert_eq!(answer(&mut reg, t0, &register("c1", 5, &[A], 600)).0, 200);
    assert_eq!(answer(&mut reg, t0, &register("c1", 7, &[A], 600)).0, 200);
    // CSeq 6 (Expires 0) was sent before 7 but arrives after it.
    let (code, _) = answer(&mut reg, t0, &register("c1", 6, &[A], 0));
    assert_eq!(code, 400, "out of order");
    assert_eq!(bound(&reg), ["sip:bob@192.0.2.7:5070"], "the binding stays");
    // `*` (Expires 0) with an older CSeq of the binding's Call-ID fails too.
    assert_eq!(answer(&mut reg, t0, &register("c1", 4, &["*"], 0)).0, 400);
    assert_eq!(bound(&reg).len(), 1, "`*` out of order removes nothing");
    // All or none: one contact out of order refuses the others of the REGISTER.
    assert_eq!(
        answer(&mut reg, t0, &register("c1", 3, &[B, A], 600)).0,
        400
    );
    assert_eq!(bound(&reg), ["sip:bob@192.0.2.7:5070"], "B is not bound");
    // A higher CSeq of the same Call-ID applies.
    assert_eq!(
        answer(&mut reg, t0, &register("c1", 8, &[B, A], 600)).0,
        200
    );
    assert_eq!(bound(&reg).len(), 2);
    // Another Call-ID applies whatever its CSeq (RFC 3261 §10.3 step 7).
    let (code, listed) = answer(&mut reg, t0, &register("c2", 1, &[A], 0));
    assert_eq!(code, 200);
    assert_eq!(listed.len(), 1, "only B is left: {listed:?}");
    assert_eq!(bound(&reg), ["sip:bob@192.0.2.7:5071"]);
    // The binding of B was made by c1/8: `*` of c1 with CSeq 8 is not higher, 9 is.
    assert_eq!(answer(&mut reg, t0, &register("c1", 8, &["*"], 0)).0, 200);
    assert_eq!(bound(&reg).len(), 1, "CSeq 8 again does not remove");
    assert_eq!(answer(&mut reg, t0, &register("c1", 9, &["*"], 0)).0, 200);
    assert!(bound(&reg).is_empty(), "CSeq 9 removes");
}

/// The same CSeq again is a retransmission (its 200 was lost): answered 200 with the current
/// bindings, as a server transaction would answer it, and not applied again (the binding's
/// expiry is not moved).
#[test]
fn a_retransmitted_register_is_answered_and_not_applied_again() {
    let mut reg = registrar();
    let t0 = Instant::now();
    assert_eq!(answer(&mut reg, t0, &register("r1", 2, &[A], 600)).0, 200);
    let later = t0 + Duration::from_secs(100);
    let (code, listed) = answer(&mut reg, later, &register("r1", 2, &[A], 600));
    assert_eq!(code, 200);
    assert_eq!(
        listed,
        ["<sip:bob@192.0.2.7:5070>;expires=500"],
        "not refreshed"
    );
    // A retransmitted removal after it applied: nothing is bound, nothing changes.
    assert_eq!(answer(&mut reg, later, &register("r1", 3, &[A], 0)).0, 200);
    let (code, listed) = answer(&mut reg, later, &register("r1", 3, &[A], 0));
    assert_eq!((code, listed.len()), (200, 0));
    assert!(bound(&reg).is_empty());
}
