//! How the registrar compares contacts (RFC 3261 §19.1.4, §10.3 step 7) and who may register
//! an AOR (§10.2 third-party registration). One process, no sockets, no clock.

use std::net::SocketAddr;
use std::time::Instant;

use registrar::{AccountStatus, Accounts, AuthMode, Registrar, RegistrarConfig};
use sip_auth::{Challenge, Credentials, DigestClient};
use sip_msg::{HeaderName, Host, Message};

const NOW_UNIX: u64 = 1_900_000_000;

fn registrar(auth: AuthMode) -> Registrar {
    Registrar::new(RegistrarConfig {
        domain: "sipmeter.test".into(),
        host: Host::parse("127.0.0.1").unwrap(),
        port: 5060,
        transport: "UDP".into(),
        auth,
        secret: b"compare secret".to_vec(),
        min_expires: 60,
        max_expires: 3600,
    })
}

/// A REGISTER of `aor` by `from` binding `contact` for `expires` seconds, with `extra` lines.
fn register(aor: &str, from: &str, contact: &str, expires: u32, cseq: u32, extra: &str) -> String {
    format!(
        "REGISTER sip:sipmeter.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKc{cseq};rport\r\n\
From: <sip:{from}@sipmeter.test>;tag=f1\r\nTo: <sip:{aor}@sipmeter.test>\r\nCall-ID: compare-1\r\n\
CSeq: {cseq} REGISTER\r\nContact: <{contact}>\r\nExpires: {expires}\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

/// Hands `raw` to the registrar (from `source`); the answers' status codes (0: forwarded),
/// with where each went.
fn handle(reg: &mut Registrar, raw: &str, source: SocketAddr) -> Vec<(u16, SocketAddr, Message)> {
    let msg = Message::parse(raw.as_bytes()).expect("the test's request parses");
    reg.handle_message(Instant::now(), NOW_UNIX, msg, source);
    std::iter::from_fn(|| reg.poll_transmit())
        .map(|(to, b)| {
            let m = Message::parse(&b).expect("the registrar's output parses");
            (m.status().unwrap_or(0), to, m)
        })
        .collect()
}

fn status(reg: &mut Registrar, raw: &str, source: SocketAddr) -> u16 {
    let got = handle(reg, raw, source);
    assert_eq!(got.len(), 1, "one answer");
    got[0].0
}

fn contacts(reg: &Registrar, user: &str) -> Vec<String> {
    reg.bindings(user)
        .iter()
        .map(|b| b.contact.to_string())
        .collect()
}

fn src(port: u16) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 7], port))
}

/// RFC 3261 §19.1.4: a contact the same as a bound one (host case, escapes of unreserved
/// characters, parameter case, a parameter other than user/ttl/method/maddr present on one
/// side only) replaces its binding; a different one (user case, an escaped reserved
/// character, an omitted default port, another scheme, user/maddr/ttl/method on one side
/// only, a URI header on one side only, a parameter both have with other values) is a
/// binding of its own.
#[test]
fn contacts_compare_as_rfc_3261_says() {
    let mut reg = registrar(AuthMode::Open);
    let base = "sip:bob@Phone.Example:5070;transport=udp";
    let mut cseq = 1;
    let mut bind = |reg: &mut Registrar, contact: &str, expires: u32| {
        cseq += 1;
        status(
            reg,
            &register("bob", "bob", contact, expires, cseq, ""),
            src(5070),
        )
    };
    assert_eq!(bind(&mut reg, base, 600), 200);
    for same in [
        "sip:bob@phone.example:5070;transport=udp",
        "sip:b%6Fb@PHONE.EXAMPLE:5070;transport=udp",
        "sip:%62ob@phone.example:5070;TRANSPORT=UDP",
        "sip:bob@phone.example:5070",
        "sip:bob@phone.example:5070;transport=udp;x-foo=1",
        "sip:bob@phone.example:5070;lr",
    ] {
        assert_eq!(bind(&mut reg, same, 600), 200, "{same}");
        assert_eq!(contacts(&reg, "bob"), [same], "{same} replaces the binding");
    }
    let mut bound = 1;
    for other in [
        "sip:Bob@phone.example:5070",
        "sip:bob@phone.example",
        "sip:bob@phone.example:5060",
        "sips:bob@phone.example:5070",
        "sip:bob@phone.example:5071",
        "sip:bob@phone2.example:5070",
        "sip:bob@phone.example:5070;user=phone",
        "sip:bob@phone.example:5070;maddr=192.0.2.1",
        "sip:bob@phone.example:5070;ttl=1",
        "sip:bob@phone.example:5070;method=INVITE",
        "sip:bob@phone.example:5070?Subject=x",
        "sip:bob:pw@phone.example:5070",
    ] {
        assert_eq!(bind(&mut reg, other, 600), 200, "{other}");
        bound += 1;
        assert_eq!(
            reg.bindings("bob").len(),
            bound,
            "{other} is a binding of its own"
        );
    }
    // Values of a parameter both sides carry must match (case aside); one on one side only
    // is ignored (transport too).
    assert_eq!(
        bind(&mut reg, "sip:bob@phone.example:5070;x-foo=2", 600),
        200
    );
    assert_eq!(
        reg.bindings("bob").len(),
        bound,
        "x-foo on one side is ignored"
    );
    assert_eq!(
        bind(&mut reg, "sip:bob@phone.example:5070;transport=UDP", 600),
        200
    );
    assert_eq!(
        reg.bindings("bob").len(),
        bound,
        "transport on one side is ignored"
    );
    assert_eq!(
        bind(&mut reg, "sip:bob@phone.example:5070;transport=tcp", 600),
        200
    );
    bound += 1;
    assert_eq!(
        reg.bindings("bob").len(),
        bound,
        "transport=tcp is not transport=UDP: {:?}",
        contacts(&reg, "bob")
    );
    // An escaped reserved character is not the character (`+` is reserved, `%2B` ≠ `+`).
    let mut reg = registrar(AuthMode::Open);
    let mut cseq = 100;
    let mut bind = |reg: &mut Registrar, contact: &str, expires: u32| {
        cseq += 1;
        status(
            reg,
            &register("carol", "carol", contact, expires, cseq, ""),
            src(5071),
        )
    };
    assert_eq!(bind(&mut reg, "sip:+1555@phone.example", 600), 200);
    assert_eq!(bind(&mut reg, "sip:%2B1555@phone.example", 600), 200);
    assert_eq!(reg.bindings("carol").len(), 2);
    assert_eq!(bind(&mut reg, "sip:%2b1555@phone.example", 600), 200);
    assert_eq!(reg.bindings("carol").len(), 2, "hex digits in any case");
    // Un-registering a same contact written otherwise removes its binding only.
    assert_eq!(bind(&mut reg, "sip:%2b1555@PHONE.example;foo", 0), 200);
    assert_eq!(contacts(&reg, "carol"), ["sip:+1555@phone.example"]);
}

/// A BYE whose Request-URI is a registered contact written otherwise (escapes, host case, the
/// default port) reaches the address that contact registered from, for contacts whose user is
/// the AOR's and for those whose user is not.
#[test]
fn in_dialog_requests_find_contacts_written_otherwise() {
    let mut reg = registrar(AuthMode::Open);
    let (a, b) = (src(40001), src(40002));
    assert_eq!(
        status(
            &mut reg,
            &register("alice", "alice", "sip:alice@Phone-A.example", 600, 1, ""),
            a
        ),
        200
    );
    assert_eq!(
        status(
            &mut reg,
            &register("bob", "bob", "sip:Phone7@Phone-B.example:5070", 600, 2, ""),
            b
        ),
        200
    );
    for (target, want) in [
        ("sip:alice@phone-a.example", a),
        ("sip:%61lice@PHONE-A.EXAMPLE:5060", a),
        ("sip:Phone7@phone-b.example:5070", b),
        ("sip:Ph%6Fne7@PHONE-B.example:5070;transport=udp", b),
    ] {
        let raw = format!(
            "BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bKbye\r\n\
From: <sip:x@sipmeter.test>;tag=a\r\nTo: <sip:y@sipmeter.test>;tag=b\r\nCall-ID: c1\r\n\
CSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        let got = handle(&mut reg, &raw, src(5060));
        assert_eq!(got.len(), 1, "{target}");
        assert_eq!(got[0].0, 0, "{target}: forwarded");
        assert_eq!(got[0].1, want, "{target}");
    }
    // A user part in another case is another contact: not found (no address to send to).
    let raw = "BYE sip:phone7@phone-b.example:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bKbye2\r\n\
From: <sip:x@sipmeter.test>;tag=a\r\nTo: <sip:y@sipmeter.test>;tag=b\r\nCall-ID: c1\r\n\
CSeq: 3 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(status(&mut reg, raw, src(5060)), 404);
}

/// RFC 3261 §10.2: a third party may register an AOR (From ≠ To). With no authentication
/// (Open) the registrar binds the To AOR whoever sends it; with a static account list the
/// authenticated user must be the AOR's user (403 otherwise), whatever the From says.
#[test]
fn third_party_registration() {
    let mut reg = registrar(AuthMode::Open);
    assert_eq!(
        status(
            &mut reg,
            &register("bob", "alice", "sip:bob@192.0.2.7:5070", 600, 1, ""),
            src(5070)
        ),
        200
    );
    assert_eq!(contacts(&reg, "bob"), ["sip:bob@192.0.2.7:5070"]);
    assert!(reg.bindings("alice").is_empty());

    let mut accounts = Accounts::default();
    for user in ["alice", "bob"] {
        accounts
            .0
            .insert(user.into(), (format!("{user}-pw"), AccountStatus::Enabled));
    }
    let mut reg = registrar(AuthMode::Static(accounts));
    // (AOR, From, credentials of) → status.
    for (n, (aor, from, who, want)) in [
        ("bob", "alice", "alice", 403),
        ("bob", "alice", "bob", 200),
        ("alice", "alice", "alice", 200),
        ("alice", "bob", "bob", 403),
    ]
    .into_iter()
    .enumerate()
    {
        let cseq = 10 * n as u32;
        let contact = format!("sip:{aor}@192.0.2.7:5070");
        let got = handle(
            &mut reg,
            &register(aor, from, &contact, 600, cseq + 1, ""),
            src(5070),
        );
        assert_eq!(got[0].0, 401);
        let ch = got[0]
            .2
            .headers
            .get_all(&HeaderName::WwwAuthenticate)
            .map(|h| h.value().to_owned())
            .next()
            .unwrap();
        let ch = Challenge::parse(&ch).unwrap();
        let auth = DigestClient::default().authorize(
            &ch,
            &Credentials::new(who, &format!("{who}-pw")),
            "REGISTER",
            "sip:sipmeter.test",
            b"",
            "cn1",
        );
        let raw = register(
            aor,
            from,
            &contact,
            600,
            cseq + 2,
            &format!("Authorization: {auth}\r\n"),
        );
        assert_eq!(
            status(&mut reg, &raw, src(5070)),
            want,
            "{aor} by {from} as {who}"
        );
    }
    assert_eq!(reg.bindings("bob").len(), 1);
    assert_eq!(reg.bindings("alice").len(), 1);
}

/// RFC 3261 §10.3 step 7: the bindings of a REGISTER are updated all or none. A contact
/// whose interval is too brief gets 423 (with Min-Expires) and no contact of that REGISTER
/// is bound or removed; a user never registered before stays unknown (404, not 480).
#[test]
fn a_brief_interval_refuses_the_whole_register() {
    let mut reg = registrar(AuthMode::Open);
    let two = |cseq: u32, first: &str, second: &str| {
        format!(
            "REGISTER sip:sipmeter.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKb{cseq}\r\n\
From: <sip:dave@sipmeter.test>;tag=f1\r\nTo: <sip:dave@sipmeter.test>\r\nCall-ID: compare-2\r\n\
CSeq: {cseq} REGISTER\r\nContact: {first}\r\nContact: {second}\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let got = handle(
        &mut reg,
        &two(
            1,
            "<sip:dave@192.0.2.7:5070>;expires=600",
            "<sip:dave@192.0.2.7:5071>;expires=10",
        ),
        src(5070),
    );
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, 423);
    assert_eq!(got[0].2.headers.value(&HeaderName::MinExpires), Some("60"));
    assert!(reg.bindings("dave").is_empty());
    let invite = "INVITE sip:dave@sipmeter.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKi1\r\n\
From: <sip:x@sipmeter.test>;tag=a\r\nTo: <sip:dave@sipmeter.test>\r\nCall-ID: c9\r\n\
CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(status(&mut reg, invite, src(5060)), 404, "dave is unknown");
    // Both contacts bound; then a REGISTER removing one and too brief for the other
    // changes nothing.
    assert_eq!(
        status(
            &mut reg,
            &two(
                2,
                "<sip:dave@192.0.2.7:5070>;expires=600",
                "<sip:dave@192.0.2.7:5071>;expires=600"
            ),
            src(5070)
        ),
        200
    );
    assert_eq!(reg.bindings("dave").len(), 2);
    assert_eq!(
        status(
            &mut reg,
            &two(
                3,
                "<sip:dave@192.0.2.7:5070>;expires=0",
                "<sip:dave@192.0.2.7:5071>;expires=5"
            ),
            src(5070)
        ),
        423
    );
    assert_eq!(reg.bindings("dave").len(), 2);
}
