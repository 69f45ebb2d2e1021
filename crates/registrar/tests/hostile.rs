//! Requests from the network with odd credentials, users, Vias and counters: the registrar
//! answers each (ACKs excepted) and never panics. Long user names, realms and nonces (past
//! the digest code's stack buffers), many and duplicate parameters, quoted values with
//! escapes, non-ASCII and empty values (RFC 3261 §22, RFC 7616 §3.4, RFC 8760). One process,
//! no sockets, no clock.

use std::net::SocketAddr;
use std::time::Instant;

use registrar::{AccountStatus, Accounts, AuthMode, Registrar, RegistrarConfig};
use sip_auth::{Challenge, DigestClient};
use sip_msg::{HeaderName, Host, Message};

const NOW_UNIX: u64 = 1_900_000_000;
const SECRET: &[u8] = b"hostile secret";

fn registrar(auth: AuthMode) -> Registrar {
    Registrar::new(RegistrarConfig {
        domain: "sipmeter.test".into(),
        host: Host::parse("127.0.0.1").unwrap(),
        port: 5060,
        transport: "UDP".into(),
        auth,
        secret: SECRET.to_vec(),
        min_expires: 60,
        max_expires: 3600,
    })
}

fn src() -> SocketAddr {
    "192.0.2.7:5070".parse().unwrap()
}

/// A REGISTER for `user` (as written in the To URI) with `extra` header lines.
fn register(user: &str, extra: &str) -> String {
    format!(
        "REGISTER sip:sipmeter.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKh1;rport\r\n\
From: <sip:{user}@sipmeter.test>;tag=f1\r\nTo: <sip:{user}@sipmeter.test>\r\nCall-ID: hostile-1\r\n\
CSeq: 1 REGISTER\r\nContact: <sip:{user}@192.0.2.7:5070>\r\nExpires: 300\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

/// Hands `raw` to the registrar; the status codes it answered with (0 for a request it
/// forwarded).
fn answers(reg: &mut Registrar, raw: &str) -> Vec<u16> {
    let msg = Message::parse(raw.as_bytes())
        .unwrap_or_else(|e| panic!("the test's request parses: {e:?}"));
    reg.handle_message(Instant::now(), NOW_UNIX, msg, src());
    std::iter::from_fn(|| reg.poll_transmit())
        .map(|(_, b)| {
            Message::parse(&b)
                .expect("the registrar's answer parses")
                .status()
                .unwrap_or(0)
        })
        .collect()
}

/// Credentials values a peer may send: long, non-ASCII, empty, escaped, duplicated, many.
fn odd_authorizations() -> Vec<String> {
    let long = "u".repeat(10_000);
    let long_q = "\\\"".repeat(3_000);
    let many: String = (0..2_000).map(|i| format!("p{i}=v{i}, ")).collect();
    let mut v = vec![
        format!("Digest username=\"{long}\", realm=\"sipmeter.test\", nonce=\"n\", uri=\"sip:sipmeter.test\", response=\"00\""),
        format!("Digest username=\"a\", realm=\"sipmeter.test\", nonce=\"{long}\", uri=\"sip:sipmeter.test\", response=\"00\""),
        format!("Digest username=\"a\", realm=\"sipmeter.test\", nonce=\"1.{long}\", uri=\"{long}\", response=\"{long}\", cnonce=\"{long}\", nc={long}, qop=auth"),
        format!("Digest username=\"{long_q}\", realm=\"sipmeter.test\", nonce=\"n\", uri=\"u\", response=\"r\""),
        format!("Digest {many}username=\"a\", realm=\"sipmeter.test\", nonce=\"n\", uri=\"u\", response=\"r\""),
        "Digest username=\"jörg\", realm=\"sipmeter.test\", nonce=\"ñ.ü\", uri=\"sip:ä\", response=\"é\"".into(),
        "Digest username=\"\", realm=\"sipmeter.test\", nonce=\"\", uri=\"\", response=\"\"".into(),
        "Digest username=, realm=sipmeter.test, nonce=, uri=, response=".into(),
        "Digest username=\"a\", username=\"b\", realm=\"sipmeter.test\", realm=\"x\", nonce=\"n\", uri=\"u\", response=\"r\"".into(),
        "Digest username=\"a\\".into(),
        "Digest username=\"a\\\"".into(),
        "Digest username=\"\\é\", realm=\"sipmeter.test\", nonce=\"n\", uri=\"u\", response=\"r\"".into(),
        "Digest".into(),
        "Digest ,,,, ,".into(),
        "Digest =x".into(),
        "Digest a".into(),
        "Basic YTpi".into(),
        "Digest username=\"a\", realm=\"sipmeter.test\", nonce=\"n\", uri=\"u\", response=\"r\", algorithm=SHA-512-256-sess, qop=auth-int, nc=zz, cnonce=\"\"".into(),
        "Digest username=\"a\", realm=\"sipmeter.test\", nonce=\"18446744073709551615.AAAAAAAAAAAAAAAAAAAAAAAA\", uri=\"u\", response=\"r\"".into(),
        "Digest username=\"a\", realm=\"sipmeter.test\", nonce=\"99999999999999999999999.x\", uri=\"u\", response=\"r\", algorithm=\"MD5\"".into(),
        "Digest username=\"a\", realm=\"sipmeter.test\", nonce=\".\", uri=\"u\", response=\"r\", algorithm=unknown".into(),
    ];
    // A realm and nonce as long as a datagram allows, past every stack buffer.
    v.push(format!(
        "Digest username=\"1001\", realm=\"{}\", nonce=\"{}\", uri=\"sip:sipmeter.test\", response=\"00\"",
        "r".repeat(60_000),
        "n".repeat(300)
    ));
    v
}

fn modes() -> Vec<AuthMode> {
    let mut accounts = Accounts::default();
    for user in ["1001", "a", "jörg", ""] {
        accounts
            .0
            .insert(user.into(), ("pw".into(), AccountStatus::Enabled));
    }
    accounts
        .0
        .insert("u".repeat(10_000), ("pw".into(), AccountStatus::Enabled));
    vec![
        AuthMode::Open,
        AuthMode::Ephemeral,
        AuthMode::Static(accounts),
    ]
}

#[test]
fn odd_credentials_are_answered_and_never_panic() {
    for mode in modes() {
        let mut reg = registrar(mode);
        for auth in odd_authorizations() {
            for (name, method) in [
                ("Authorization", "REGISTER"),
                ("Proxy-Authorization", "INVITE"),
            ] {
                let raw = if method == "REGISTER" {
                    register("1001", &format!("{name}: {auth}\r\n"))
                } else {
                    format!(
                        "INVITE sip:1001@sipmeter.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKi1\r\n\
From: <sip:a@sipmeter.test>;tag=f1\r\nTo: <sip:1001@sipmeter.test>\r\nCall-ID: hostile-2\r\n\
CSeq: 1 INVITE\r\nMax-Forwards: 70\r\n{name}: {auth}\r\nContent-Length: 0\r\n\r\n"
                    )
                };
                let got = answers(&mut reg, &raw);
                assert_eq!(
                    got.len(),
                    1,
                    "{method} {}: {got:?}",
                    &auth[..auth.len().min(80)]
                );
                // An answer, or (0) the INVITE forwarded to the user registered just before.
                assert!(got[0] == 0 || (200..700).contains(&got[0]), "{got:?}");
            }
        }
    }
}

#[test]
fn odd_users_vias_and_counters_are_answered_and_never_panic() {
    let users = [
        "al%69ce".to_string(),
        "%ff%fe".into(),
        "%00".into(),
        "a%".into(),
        "a%2".into(),
        "%25".into(),
        "j%C3%B6rg".into(),
        "x".repeat(5_000),
        "%41".repeat(2_000),
    ];
    for mode in modes() {
        let mut reg = registrar(mode);
        for user in &users {
            let got = answers(&mut reg, &register(user, ""));
            assert!(
                got.len() == 1 && (200..700).contains(&got[0]),
                "{user}: {got:?}"
            );
        }
        // (Via, answered): a top Via that does not parse gives no address to answer to
        // (RFC 3261 §18.2.2): the request is dropped.
        for (via, answered) in [
            (
                "SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKv1;received=1.2.3.4;rport=9;rport",
                true,
            ),
            (
                "SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKv2;x=\"a;b,c\\\"d\";rport",
                true,
            ),
            (
                "SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKv3;x=\"é\", SIP/2.0/UDP b;branch=z9hG4bKx",
                true,
            ),
            (
                "SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKv6;é=ü, SIP/2.0/UDP b;branch=z9hG4bKx",
                false,
            ),
            (
                "SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKv4;;;=;é=ü, SIP/2.0/UDP b;branch=z9hG4bKx",
                false,
            ),
            (
                "SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bKv5;rport",
                true,
            ),
        ] {
            let raw = register("1001", "")
                .replace("SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKh1;rport", via);
            let got = answers(&mut reg, &raw);
            assert_eq!(got.len(), usize::from(answered), "{via}: {got:?}");
            assert!(got.iter().all(|c| (200..700).contains(c)), "{via}: {got:?}");
        }
        for mf in [
            "0",
            "1",
            "99",
            "100",
            "101",
            "4294967295",
            "99999999999999999999",
            "",
        ] {
            let raw = format!(
                "OPTIONS sip:1001@sipmeter.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKo{mf}\r\n\
From: <sip:a@sipmeter.test>;tag=f1\r\nTo: \"tag\" <sip:tag@sipmeter.test>\r\nCall-ID: hostile-3\r\n\
CSeq: 1 OPTIONS\r\nMax-Forwards: {mf}\r\nContent-Length: 0\r\n\r\n"
            );
            let got = answers(&mut reg, &raw);
            // OPTIONS to a user: answered (483 at 0 hops) or forwarded (0) when bound.
            assert_eq!(got.len(), 1, "{mf}: {got:?}");
        }
    }
}

/// A static account whose user name is long and non-ASCII registers with correct
/// credentials (the digest inputs are longer than the stack buffers they are gathered in).
#[test]
fn long_and_non_ascii_user_names_authenticate() {
    for user in ["jörg".to_string(), "u".repeat(10_000), "\"q\\uote\"".into()] {
        let mut accounts = Accounts::default();
        accounts
            .0
            .insert(user.clone(), ("pw".into(), AccountStatus::Enabled));
        let mut reg = registrar(AuthMode::Static(accounts));
        // The AOR user is the account's user, %-escaped as a URI needs it.
        let escaped: String = user
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let raw = register(&escaped, "");
        let msg = Message::parse(raw.as_bytes()).unwrap();
        reg.handle_message(Instant::now(), NOW_UNIX, msg, src());
        let (_, challenge) = reg.poll_transmit().unwrap();
        let challenge = Message::parse(&challenge).unwrap();
        assert_eq!(challenge.status(), Some(401));
        let values: Vec<&str> = challenge
            .headers
            .get_all(&HeaderName::WwwAuthenticate)
            .map(|h| h.value())
            .collect();
        for value in values {
            let ch = Challenge::parse(value).unwrap();
            let cred = sip_auth::Credentials::new(&user, "pw");
            let auth = DigestClient::default().authorize(
                &ch,
                &cred,
                "REGISTER",
                "sip:sipmeter.test",
                b"",
                "cn0123",
            );
            let raw = register(&escaped, &format!("Authorization: {auth}\r\n"))
                .replace("CSeq: 1 ", "CSeq: 2 ")
                .replace("z9hG4bKh1", "z9hG4bKh2");
            let got = answers(&mut reg, &raw);
            assert_eq!(
                got,
                [200],
                "{} {:?}",
                &user[..user.len().min(8)],
                ch.algorithm
            );
            assert_eq!(reg.bindings(&user).len(), 1);
        }
    }
}

/// RFC 3261 §16.6 step 3: a request without Max-Forwards is forwarded with one added, of 70;
/// one with Max-Forwards is forwarded with it less one; 0 is answered 483 (§16.3 step 3); a
/// value that is not a number the proxy can decrement is refused with 400 (§16.3 step 1:
/// the header fields the proxy processes must be well formed).
#[test]
fn max_forwards_is_added_decremented_or_refused() {
    let mut reg = registrar(AuthMode::Open);
    assert_eq!(answers(&mut reg, &register("1001", "")), [200]);
    for (line, want) in [
        ("", Ok("70")),
        ("Max-Forwards: 70\r\n", Ok("69")),
        ("Max-Forwards: 1\r\n", Ok("0")),
        ("Max-Forwards: 255\r\n", Ok("254")),
        ("Max-Forwards: 0\r\n", Err(483)),
        ("Max-Forwards: abc\r\n", Err(400)),
        ("Max-Forwards: 99999999999999999999\r\n", Err(400)),
    ] {
        let raw = format!(
            "INVITE sip:1001@sipmeter.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.8:5070;branch=z9hG4bKmf{}\r\n\
From: <sip:a@sipmeter.test>;tag=f1\r\nTo: <sip:1001@sipmeter.test>\r\nCall-ID: mf-{}\r\n\
CSeq: 1 INVITE\r\n{line}Content-Length: 0\r\n\r\n",
            line.len(),
            line.len()
        );
        let msg = Message::parse(raw.as_bytes()).unwrap();
        reg.handle_message(
            Instant::now(),
            NOW_UNIX,
            msg,
            "192.0.2.8:5070".parse().unwrap(),
        );
        let out: Vec<Message> = std::iter::from_fn(|| reg.poll_transmit())
            .map(|(_, b)| Message::parse(&b).unwrap())
            .collect();
        assert_eq!(out.len(), 1, "{line:?}");
        match want {
            Ok(mf) => {
                assert_eq!(out[0].method(), Some(sip_msg::Method::Invite), "{line:?}");
                assert_eq!(
                    out[0].headers.value(&HeaderName::MaxForwards),
                    Some(mf),
                    "{line:?}"
                );
            }
            Err(code) => assert_eq!(out[0].status(), Some(code), "{line:?}"),
        }
    }
}

/// An AOR user is unescaped once (RFC 3261 §19.1.2, §10.3): `%2541` binds `%41`, not `A`;
/// plain and escaped spellings of one name bind the same user.
#[test]
fn aor_users_are_unescaped_once() {
    let mut reg = registrar(AuthMode::Open);
    for (written, bound) in [
        ("%2541", "%41"),
        ("%25", "%"),
        ("b%6Fb", "bob"),
        ("bob", "bob"),
    ] {
        assert_eq!(
            answers(&mut reg, &register(written, "")),
            [200],
            "{written}"
        );
        assert!(!reg.bindings(bound).is_empty(), "{written} binds {bound}");
    }
    assert!(reg.bindings("A").is_empty());
}
