//! The registrar's nonces (RFC 7616 §3.3, §3.4): credentials answering a nonce of any second
//! within its lifetime are accepted, whether or not the registrar still keeps that second's
//! nonce; after its lifetime the nonce is stale (401 with `stale=true`); a forged nonce is
//! challenged afresh. One process, no sockets, no clock (`now_unix` is passed in).

use std::net::SocketAddr;
use std::time::Instant;

use registrar::{AccountStatus, Accounts, AuthMode, Registrar, RegistrarConfig};
use sip_auth::{Challenge, Credentials, DigestClient};
use sip_msg::{HeaderName, Host, Message};

const T0: u64 = 1_900_000_000;

fn registrar() -> Registrar {
    let mut accounts = Accounts::default();
    accounts
        .0
        .insert("alice".into(), ("pw".into(), AccountStatus::Enabled));
    Registrar::new(RegistrarConfig {
        domain: "sipmeter.test".into(),
        host: Host::parse("127.0.0.1").unwrap(),
        port: 5060,
        transport: "UDP".into(),
        auth: AuthMode::Static(accounts),
        secret: b"nonce secret".to_vec(),
        min_expires: 60,
        max_expires: 3600,
    })
}

fn register(cseq: u32, extra: &str) -> Message {
    let raw = format!(
        "REGISTER sip:sipmeter.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKn{cseq}\r\n\
From: <sip:alice@sipmeter.test>;tag=f1\r\nTo: <sip:alice@sipmeter.test>\r\nCall-ID: nonces-1\r\n\
CSeq: {cseq} REGISTER\r\nContact: <sip:alice@192.0.2.7:5070>\r\nExpires: 600\r\n{extra}Content-Length: 0\r\n\r\n"
    );
    Message::parse(raw.as_bytes()).unwrap()
}

fn answer(reg: &mut Registrar, msg: Message, now_unix: u64) -> Message {
    let src: SocketAddr = "192.0.2.7:5070".parse().unwrap();
    reg.handle_message(Instant::now(), now_unix, msg, src);
    let (_, bytes) = reg.poll_transmit().expect("an answer");
    assert!(reg.poll_transmit().is_none());
    Message::parse(&bytes).unwrap()
}

/// The SHA-256 challenge of a 401.
fn challenge(resp: &Message) -> String {
    assert_eq!(resp.status(), Some(401));
    resp.headers
        .get_all(&HeaderName::WwwAuthenticate)
        .next()
        .unwrap()
        .value()
        .to_owned()
}

fn credentials(ch: &str, password: &str) -> String {
    let ch = Challenge::parse(ch).unwrap();
    let v = DigestClient::default().authorize(
        &ch,
        &Credentials::new("alice", password),
        "REGISTER",
        "sip:sipmeter.test",
        b"",
        "cn",
    );
    format!("Authorization: {v}\r\n")
}

#[test]
fn nonces_of_any_second_are_checked_alike() {
    let mut reg = registrar();
    // Challenges in three seconds (the registrar keeps the nonces of the last two).
    let ch: Vec<String> = (0..3)
        .map(|i| challenge(&answer(&mut reg, register(1 + i as u32, ""), T0 + i)))
        .collect();
    // Two challenges of one second carry one nonce.
    assert_eq!(ch[2], challenge(&answer(&mut reg, register(4, ""), T0 + 2)));
    let mut cseq = 10;
    let mut status = |reg: &mut Registrar, extra: &str, now: u64| {
        cseq += 1;
        answer(reg, register(cseq, extra), now)
    };
    for c in &ch {
        // Fresh within the lifetime (300 s), kept or not.
        assert_eq!(
            status(&mut reg, &credentials(c, "pw"), T0 + 3).status(),
            Some(200)
        );
        // A wrong password is challenged again, not stale.
        let r = status(&mut reg, &credentials(c, "wrong"), T0 + 3);
        assert!(!challenge(&r).contains("stale"), "{c}");
    }
    // Past the lifetime: stale (the client may retry with the new nonce, RFC 7616 §3.3).
    for c in &ch {
        let r = status(&mut reg, &credentials(c, "pw"), T0 + 2 + 301);
        assert!(challenge(&r).ends_with("stale=true"), "{c}");
    }
    // A forged nonce (its last character changed) of a kept second is challenged afresh.
    let forged = {
        let at = ch[2].find("nonce=\"").unwrap() + "nonce=\"".len();
        let end = at + ch[2][at..].find('"').unwrap();
        let last = &ch[2][end - 1..end];
        let other = if last == "A" { "B" } else { "A" };
        format!("{}{other}{}", &ch[2][..end - 1], &ch[2][end..])
    };
    let r = status(&mut reg, &credentials(&forged, "pw"), T0 + 3);
    assert!(!challenge(&r).contains("stale"));
}
