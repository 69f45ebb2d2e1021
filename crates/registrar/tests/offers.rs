//! Credentials must answer what the registrar's challenge offered (RFC 7616 §3.4, which RFC
//! 8760 makes SIP's digest): one of the offered algorithms (SHA-256 or MD5; an absent
//! `algorithm` is MD5) and the offered qop (`auth`, with cnonce and nc). Credentials with
//! another algorithm (`SHA-512-256`, the `-sess` variants), without qop (RFC 2069 style) or
//! with `qop=auth-int` are answered with a fresh challenge, on REGISTER (401) and on INVITE
//! (407) alike. And the digest `uri` must name the Request-URI's resource (RFC 7616 §3.4.6, RFC
//! 2617 §3.2.2.5): credentials computed for another URI get 400, even when their response is
//! right for the URI they name; the same URI written otherwise (RFC 3261 §19.1.4: host case, a
//! `transport` parameter on one side) is the same resource. One process, no sockets, no clock
//! (`now_unix` is passed in).

use std::net::SocketAddr;
use std::time::Instant;

use registrar::{AccountStatus, Accounts, AuthMode, Registrar, RegistrarConfig};
use sip_auth::{Challenge, Credentials, DigestClient};
use sip_msg::{HeaderName, Host, Message};

const T0: u64 = 1_900_000_000;

fn registrar() -> Registrar {
    let mut accounts = Accounts::default();
    for user in ["alice", "bob"] {
        accounts
            .0
            .insert(user.into(), ("pw".into(), AccountStatus::Enabled));
    }
    Registrar::new(RegistrarConfig {
        domain: "sipmeter.test".into(),
        host: Host::parse("127.0.0.1").unwrap(),
        port: 5060,
        transport: "UDP".into(),
        auth: AuthMode::Static(accounts),
        secret: b"offers secret".to_vec(),
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

fn register(user: &str, cseq: u32, extra: &str) -> String {
    let port = if user == "alice" { 5070 } else { 5080 };
    format!(
        "REGISTER sip:sipmeter.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:{port};branch=z9hG4bKo{cseq}\r\n\
From: <sip:{user}@sipmeter.test>;tag=f1\r\nTo: <sip:{user}@sipmeter.test>\r\nCall-ID: offers-{user}\r\n\
CSeq: {cseq} REGISTER\r\nContact: <sip:{user}@192.0.2.7:{port}>\r\nExpires: 600\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

fn invite(cseq: u32, extra: &str) -> String {
    format!(
        "INVITE sip:bob@sipmeter.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKi{cseq}\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@sipmeter.test>;tag=a1\r\nTo: <sip:bob@sipmeter.test>\r\n\
Call-ID: offers-call-{cseq}\r\nCSeq: {cseq} INVITE\r\nContact: <sip:alice@192.0.2.7:5070>\r\n\
{extra}Content-Length: 0\r\n\r\n"
    )
}

/// The one message the registrar sends for `raw` (from `source`), and where it went.
fn answer(reg: &mut Registrar, raw: &str, source: SocketAddr) -> (SocketAddr, Message) {
    reg.handle_message(
        Instant::now(),
        T0,
        Message::parse(raw.as_bytes()).unwrap(),
        source,
    );
    let (to, bytes) = reg.poll_transmit().expect("an answer");
    assert!(reg.poll_transmit().is_none(), "one answer");
    (to, Message::parse(&bytes).unwrap())
}

/// The nonce of the challenge `resp` carries (the SHA-256 one, first).
fn nonce(resp: &Message, name: &HeaderName) -> String {
    let ch = resp.headers.get_all(name).next().expect("a challenge");
    Challenge::parse(ch.value()).unwrap().nonce.into_owned()
}

/// Credentials of `user` answering `nonce` as if it had been offered with `algorithm`
/// (`None`: no algorithm parameter, MD5) and `qop` (`None`: no qop offered).
fn credentials(
    user: &str,
    nonce: &str,
    algorithm: Option<&str>,
    qop: Option<&str>,
    method: &str,
    uri: &str,
) -> String {
    let mut ch = format!("Digest realm=\"sipmeter.test\", nonce=\"{nonce}\"");
    if let Some(a) = algorithm {
        ch.push_str(&format!(", algorithm={a}"));
    }
    if let Some(q) = qop {
        ch.push_str(&format!(", qop=\"{q}\""));
    }
    let ch = Challenge::parse(&ch).unwrap();
    let v = DigestClient::default().authorize(
        &ch,
        &Credentials::new(user, "pw"),
        method,
        uri,
        b"",
        "0a4f113b",
    );
    match algorithm {
        Some(_) => v,
        // A client answering an MD5 challenge may leave `algorithm` out (it is MD5 then).
        None => v.replace(", algorithm=MD5", ""),
    }
}

/// Answers that follow the offer, and answers that do not (they get a fresh challenge).
const ACCEPTED: [(Option<&str>, Option<&str>); 3] = [
    (Some("SHA-256"), Some("auth")),
    (Some("MD5"), Some("auth")),
    (None, Some("auth")),
];
const REFUSED: [(Option<&str>, Option<&str>); 7] = [
    (Some("SHA-512-256"), Some("auth")),
    (Some("SHA-256-sess"), Some("auth")),
    (Some("MD5-sess"), Some("auth")),
    (Some("SHA-256"), None),
    (Some("MD5"), None),
    (None, None),
    (Some("SHA-256"), Some("auth-int")),
];

#[test]
fn register_credentials_must_answer_the_offer() {
    let mut reg = registrar();
    let mut cseq = 0;
    let mut next = || {
        cseq += 1;
        cseq
    };
    let (_, first) = answer(&mut reg, &register("alice", next(), ""), alice());
    assert_eq!(first.status(), Some(401));
    let n = nonce(&first, &HeaderName::WwwAuthenticate);
    for (algorithm, qop) in ACCEPTED {
        let c = credentials("alice", &n, algorithm, qop, "REGISTER", "sip:sipmeter.test");
        let extra = format!("Authorization: {c}\r\n");
        let (_, r) = answer(&mut reg, &register("alice", next(), &extra), alice());
        assert_eq!(r.status(), Some(200), "{c}");
    }
    for (algorithm, qop) in REFUSED {
        let c = credentials("alice", &n, algorithm, qop, "REGISTER", "sip:sipmeter.test");
        let extra = format!("Authorization: {c}\r\n");
        let (_, r) = answer(&mut reg, &register("alice", next(), &extra), alice());
        assert_eq!(r.status(), Some(401), "{c}");
        // A fresh challenge: both offers, not stale (the nonce was not the fault).
        let offers: Vec<&str> = r
            .headers
            .get_all(&HeaderName::WwwAuthenticate)
            .map(|h| h.value())
            .collect();
        assert_eq!(offers.len(), 2, "{c}");
        assert!(offers.iter().all(|o| !o.contains("stale")), "{c}");
        assert!(offers[0].contains("algorithm=SHA-256"), "{c}");
        assert!(offers[1].contains("algorithm=MD5"), "{c}");
    }
}

/// A registrar where Bob has registered (SHA-256, qop auth), so that an accepted INVITE is
/// forwarded to him, and Alice's first INVITE got 407: the registrar and that nonce.
fn bob_registered_and_alice_challenged() -> (Registrar, String) {
    let mut reg = registrar();
    let (_, r) = answer(&mut reg, &register("bob", 1, ""), bob());
    let n = nonce(&r, &HeaderName::WwwAuthenticate);
    let c = credentials(
        "bob",
        &n,
        Some("SHA-256"),
        Some("auth"),
        "REGISTER",
        "sip:sipmeter.test",
    );
    let (_, r) = answer(
        &mut reg,
        &register("bob", 2, &format!("Authorization: {c}\r\n")),
        bob(),
    );
    assert_eq!(r.status(), Some(200));

    let (_, first) = answer(&mut reg, &invite(1, ""), alice());
    assert_eq!(first.status(), Some(407));
    let n = nonce(&first, &HeaderName::ProxyAuthenticate);
    (reg, n)
}

#[test]
fn invite_credentials_must_answer_the_offer() {
    let (mut reg, n) = bob_registered_and_alice_challenged();
    let mut cseq = 1;
    for (algorithm, qop) in ACCEPTED {
        cseq += 1;
        let c = credentials(
            "alice",
            &n,
            algorithm,
            qop,
            "INVITE",
            "sip:bob@sipmeter.test",
        );
        let (to, m) = answer(
            &mut reg,
            &invite(cseq, &format!("Proxy-Authorization: {c}\r\n")),
            alice(),
        );
        assert_eq!((m.status(), to), (None, bob()), "{c}: forwarded to bob");
    }
    for (algorithm, qop) in REFUSED {
        cseq += 1;
        let c = credentials(
            "alice",
            &n,
            algorithm,
            qop,
            "INVITE",
            "sip:bob@sipmeter.test",
        );
        let (to, m) = answer(
            &mut reg,
            &invite(cseq, &format!("Proxy-Authorization: {c}\r\n")),
            alice(),
        );
        assert_eq!((m.status(), to), (Some(407), alice()), "{c}");
        let offers = m.headers.get_all(&HeaderName::ProxyAuthenticate).count();
        assert_eq!(offers, 2, "{c}");
    }
}

/// The REGISTER's status when its credentials (SHA-256, qop auth, right password) are
/// computed for `uri`.
fn register_with_uri(reg: &mut Registrar, nonce: &str, cseq: u32, uri: &str) -> u16 {
    let c = credentials(
        "alice",
        nonce,
        Some("SHA-256"),
        Some("auth"),
        "REGISTER",
        uri,
    );
    let (_, r) = answer(
        reg,
        &register("alice", cseq, &format!("Authorization: {c}\r\n")),
        alice(),
    );
    r.status().unwrap()
}

const SAME_FOR_REGISTER: [&str; 4] = [
    "sip:sipmeter.test",
    "sip:SIPMETER.test",
    "sip:sipmeter.test;transport=udp",
    "SIP:sipmeter.test",
];
const OTHER_FOR_REGISTER: [&str; 8] = [
    "sip:other.test",
    "sip:sipmeter.test:5060",
    "sips:sipmeter.test",
    "sip:alice@sipmeter.test",
    "sip:sipmeter.test;maddr=192.0.2.1",
    "tel:+15550100",
    "*",
    "",
];

#[test]
fn register_credentials_must_name_the_request_uri() {
    let mut reg = registrar();
    let (_, first) = answer(&mut reg, &register("alice", 1, ""), alice());
    assert_eq!(first.status(), Some(401));
    let n = nonce(&first, &HeaderName::WwwAuthenticate);
    let mut cseq = 1;
    for uri in SAME_FOR_REGISTER {
        cseq += 1;
        assert_eq!(register_with_uri(&mut reg, &n, cseq, uri), 200, "{uri}");
    }
    let registered = reg.stats().registered;
    for uri in OTHER_FOR_REGISTER {
        cseq += 1;
        assert_eq!(register_with_uri(&mut reg, &n, cseq, uri), 400, "{uri}");
    }
    assert_eq!(reg.stats().registered, registered, "nothing was applied");
}

#[test]
fn invite_credentials_must_name_the_request_uri() {
    let (mut reg, n) = bob_registered_and_alice_challenged();
    let mut cseq = 1;
    for (uri, want) in [
        ("sip:bob@sipmeter.test", Some(0)),
        ("sip:bob@SipMeter.Test", Some(0)),
        ("sip:b%6Fb@sipmeter.test;transport=udp", Some(0)),
        ("sip:carol@sipmeter.test", Some(400)),
        ("sip:Bob@sipmeter.test", Some(400)),
        ("sip:bob@other.test", Some(400)),
        ("sip:bob@sipmeter.test;user=phone", Some(400)),
        ("sip:sipmeter.test", Some(400)),
    ] {
        cseq += 1;
        let c = credentials("alice", &n, Some("SHA-256"), Some("auth"), "INVITE", uri);
        let (to, m) = answer(
            &mut reg,
            &invite(cseq, &format!("Proxy-Authorization: {c}\r\n")),
            alice(),
        );
        if want == Some(0) {
            assert!(m.is_request(), "{uri}: forwarded");
            assert_eq!(to, bob(), "{uri}");
        } else {
            assert_eq!(m.status(), want, "{uri}");
            assert_eq!(to, alice(), "{uri}");
        }
    }
}
