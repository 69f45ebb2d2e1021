//! Review 12: RFC conformance of the client side of registration and digest authentication
//! (RFC 3261 §10.2, §22; RFC 7616; RFC 5626 client side). One phone and a scripted
//! registrar (and proxies) on a virtual clock, through the public API only: each response
//! is written by hand from the request it answers.

use std::time::{Duration, Instant};

use sip_msg::{Header, HeaderName, Host, Message, Method, SipUri, Uri};
use sip_proto::auth::Credentials;
use sip_proto::ua::{RegState, UaConfig, UaEvent, UserAgent};

mod common;
use common::{ALICE, config, drain, msg};

/// Where the scripted registrar (or proxy) answers from.
fn server() -> std::net::SocketAddr {
    "127.0.0.1:5060".parse().unwrap()
}

/// Alice at 127.0.0.1:5062 with the password `pw`.
fn alice() -> UserAgent {
    UserAgent::new(UaConfig {
        credentials: Some(Credentials::new("alice", "pw")),
        ..config("alice", ALICE, 12, false, "review12")
    })
}

/// The one request with `method` that `ua` has to send (panics when there is none).
fn sent(ua: &mut UserAgent, method: Method) -> Message {
    let (out, _) = drain(ua);
    out.iter()
        .map(msg)
        .find(|m| m.method() == Some(method.clone()))
        .unwrap_or_else(|| panic!("no {method:?} was sent"))
}

/// `req` answered with `code` and the `extra` headers.
fn answer(req: &Message, code: u16, extra: &[(&str, &str)]) -> Message {
    let reason = match code {
        200 => "OK",
        401 => "Unauthorized",
        407 => "Proxy Authentication Required",
        423 => "Interval Too Brief",
        _ => "Whatever",
    };
    let mut resp = Message::response_to(req, code, reason, Some("srv"));
    for (n, v) in extra {
        resp.headers.push(Header::new(*n, *v));
    }
    resp
}
/// `req` answered `code` with the challenge `(name, value)`: the request the phone sends
/// again (of `method`).
fn challenged(
    ua: &mut UserAgent,
    t0: Instant,
    req: &Message,
    code: u16,
    challenge: (&str, &str),
    method: Method,
) -> Message {
    ua.handle_message(t0, answer(req, code, &[challenge]), server());
    sent(ua, method)
}

/// The realms of the `name` headers of `m` (credentials), in order.
fn realms(m: &Message, name: &HeaderName) -> Vec<String> {
    m.headers
        .get_all(name)
        .map(|h| {
            sip_auth::Authorization::parse(h.value())
                .unwrap()
                .realm
                .into_owned()
        })
        .collect()
}

const PROXY: &str = r#"Digest realm="proxy.test", nonce="p1", qop="auth", algorithm=SHA-256"#;
const EDGE: &str = r#"Digest realm="edge.test", nonce="e1", qop="auth""#;
const REGISTRAR: &str = r#"Digest realm="example.test", nonce="r1", qop="auth""#;

/// RFC 3261 §22.3: "If a UA receives a Proxy-Authenticate header field value in a 401/407
/// response to a request with a particular Call-ID, it should incorporate credentials for
/// that realm in all subsequent requests that contain the same Call-ID." A REGISTER
/// challenged by an outbound proxy, then by a second proxy, then by the registrar, keeps
/// the credentials of each realm in its later retries; a challenge for another realm is
/// not a rejection of the credentials sent for the first.
#[test]
fn the_credentials_of_each_realm_stay_in_the_later_retries_of_a_register() {
    let t0 = Instant::now();
    let mut ua = alice();
    ua.register(t0);
    let r1 = sent(&mut ua, Method::Register);
    let r2 = challenged(
        &mut ua,
        t0,
        &r1,
        407,
        ("Proxy-Authenticate", PROXY),
        Method::Register,
    );
    assert_eq!(realms(&r2, &HeaderName::ProxyAuthorization), ["proxy.test"]);
    // A second proxy on the path challenges too: not a rejection of proxy.test's credentials.
    let r3 = challenged(
        &mut ua,
        t0,
        &r2,
        407,
        ("Proxy-Authenticate", EDGE),
        Method::Register,
    );
    assert_eq!(
        realms(&r3, &HeaderName::ProxyAuthorization),
        ["proxy.test", "edge.test"]
    );
    let r4 = challenged(
        &mut ua,
        t0,
        &r3,
        401,
        ("WWW-Authenticate", REGISTRAR),
        Method::Register,
    );
    assert_eq!(
        realms(&r4, &HeaderName::ProxyAuthorization),
        ["proxy.test", "edge.test"],
        "the proxies' credentials were dropped when the registrar's 401 was answered"
    );
    assert_eq!(realms(&r4, &HeaderName::Authorization), ["example.test"]);
    let cseqs: Vec<u32> = [&r1, &r2, &r3, &r4]
        .iter()
        .map(|m| m.cseq().unwrap().seq)
        .collect();
    assert_eq!(cseqs, [1, 2, 3, 4], "§22.2: each retry increments the CSeq");
    ua.handle_message(t0, answer(&r4, 200, &[]), server());
    let (_, ev) = drain(&mut ua);
    assert!(
        matches!(ev[..], [UaEvent::Registered { .. }]),
        "registered: {ev:?}"
    );
}

/// The other side of the rule: a second challenge for a realm we sent credentials for is a
/// rejection (RFC 3261 §22.2), unless it says `stale=true` (RFC 7616 §3.3): then it is
/// answered, and the realm's old credentials are replaced, not kept beside the new ones.
#[test]
fn a_second_challenge_of_the_same_realm_fails_unless_stale() {
    let t0 = Instant::now();
    for stale in [false, true] {
        let mut ua = alice();
        ua.register(t0);
        let r1 = sent(&mut ua, Method::Register);
        ua.handle_message(
            t0,
            answer(&r1, 407, &[("Proxy-Authenticate", PROXY)]),
            server(),
        );
        let r2 = sent(&mut ua, Method::Register);
        ua.handle_message(
            t0,
            answer(&r2, 401, &[("WWW-Authenticate", REGISTRAR)]),
            server(),
        );
        let r3 = sent(&mut ua, Method::Register);
        let again = if stale {
            r#"Digest realm="proxy.test", nonce="p2", qop="auth", stale=TRUE"#
        } else {
            r#"Digest realm="proxy.test", nonce="p2", qop="auth""#
        };
        ua.handle_message(
            t0,
            answer(&r3, 407, &[("Proxy-Authenticate", again)]),
            server(),
        );
        let (out, ev) = drain(&mut ua);
        if !stale {
            assert!(out.is_empty(), "no retry with the same credentials");
            assert!(
                matches!(ev[..], [UaEvent::RegistrationFailed { code: 407, .. }]),
                "{ev:?}"
            );
            continue;
        }
        let r4 = out
            .iter()
            .map(msg)
            .find(|m| m.method() == Some(Method::Register))
            .expect("the stale nonce is answered");
        let proxy: Vec<_> = r4
            .headers
            .get_all(&HeaderName::ProxyAuthorization)
            .map(|h| {
                sip_auth::Authorization::parse(h.value())
                    .unwrap()
                    .nonce
                    .into_owned()
            })
            .collect();
        assert_eq!(proxy, ["p2"], "proxy.test's credentials replaced");
        assert_eq!(realms(&r4, &HeaderName::Authorization), ["example.test"]);
    }
}

/// The same rule for an INVITE: a 407 from the proxy, then a 401 from the callee's domain.
#[test]
fn an_invite_challenged_by_a_proxy_then_by_the_callee_carries_both_credentials() {
    let t0 = Instant::now();
    let mut ua = alice();
    ua.call(
        t0,
        Uri::parse("sip:bob@example.test").unwrap(),
        Some(bytes::Bytes::from_static(b"v=0\r\n")),
    );
    let i1 = sent(&mut ua, Method::Invite);
    let i2 = challenged(
        &mut ua,
        t0,
        &i1,
        407,
        ("Proxy-Authenticate", PROXY),
        Method::Invite,
    );
    assert_eq!(realms(&i2, &HeaderName::ProxyAuthorization), ["proxy.test"]);
    let i3 = challenged(
        &mut ua,
        t0,
        &i2,
        401,
        ("WWW-Authenticate", REGISTRAR),
        Method::Invite,
    );
    assert_eq!(
        realms(&i3, &HeaderName::ProxyAuthorization),
        ["proxy.test"],
        "the proxy's credentials were dropped when the 401 was answered"
    );
    assert_eq!(realms(&i3, &HeaderName::Authorization), ["example.test"]);
}

/// RFC 3261 §10.2.4: the lifetime granted is the `expires` of the 200's Contact that is
/// ours. An outbound phone (RFC 5626) whose REGISTER goes through the outbound proxy over a
/// connection of its own writes that connection's address in its Contact: that Contact is
/// ours, and its `expires` is the lifetime granted (not Expires, not the lifetime asked).
#[test]
fn an_outbound_register_through_the_proxy_connection_reads_its_own_contacts_expires() {
    let t0 = Instant::now();
    let mut cfg = config("alice", 41000, 12, false, "review12");
    cfg.transport = "TCP".into();
    cfg.reliable = true;
    cfg.outbound_proxy = Some(
        SipUri::new(Host::parse("127.0.0.1").unwrap())
            .with_port(5070)
            .with_param("transport", Some("tcp")),
    );
    let mut ua = UserAgent::new(cfg);
    ua.set_proxy_local(Some((Host::parse("127.0.0.1").unwrap(), 42000)));
    ua.enable_outbound(sip_proto::outbound::instance_urn(12));
    ua.register(t0);
    let r1 = sent(&mut ua, Method::Register);
    let ours = r1.headers.value(&HeaderName::Contact).unwrap().to_owned();
    assert!(ours.contains("@127.0.0.1:42000;"), "{ours}");
    // The registrar lists another binding of the AOR first, at the address the phone's
    // other connection has (another flow, another lifetime), then ours.
    let contacts =
        format!("<sip:alice@127.0.0.1:41000;transport=tcp>;expires=900, {ours};expires=120");
    ua.handle_message(
        t0,
        answer(
            &r1,
            200,
            &[
                ("Contact", &contacts),
                ("Expires", "3600"),
                ("Require", "outbound"),
            ],
        ),
        server(),
    );
    let (_, ev) = drain(&mut ua);
    assert!(
        matches!(ev[..], [UaEvent::Registered { expires: 120, .. }]),
        "{ev:?}"
    );
}

/// A refresh still in flight when the phone unregisters (RFC 3261 §10.2.2) must not register
/// it again: its 200 (before or after the un-REGISTER's) leaves the phone unregistered with
/// no refresh armed, and a challenge to it is not answered (the answer, with a higher CSeq
/// than the un-REGISTER's, would make the binding again at the registrar).
#[test]
fn a_refresh_overtaken_by_an_unregister_does_not_register_again() {
    let t0 = Instant::now();
    for case in ["refresh 200 first", "unregister 200 first", "refresh 401"] {
        let mut ua = alice();
        ua.register(t0);
        let r1 = sent(&mut ua, Method::Register);
        let ours = r1.headers.value(&HeaderName::Contact).unwrap().to_owned();
        let granted = format!("{ours};expires=300");
        ua.handle_message(t0, answer(&r1, 200, &[("Contact", &granted)]), server());
        drain(&mut ua);
        // The refresh goes 32 s (a Timer F) before the binding lapses.
        let t1 = t0 + Duration::from_secs(268);
        ua.handle_timeout(t1);
        let refresh = sent(&mut ua, Method::Register);
        ua.unregister(t1);
        let un = sent(&mut ua, Method::Register);
        assert_eq!(un.headers.value(&HeaderName::Expires), Some("0"));
        match case {
            "refresh 200 first" => {
                ua.handle_message(
                    t1,
                    answer(&refresh, 200, &[("Contact", &granted)]),
                    server(),
                );
                ua.handle_message(t1, answer(&un, 200, &[]), server());
            }
            "unregister 200 first" => {
                ua.handle_message(t1, answer(&un, 200, &[]), server());
                ua.handle_message(
                    t1,
                    answer(&refresh, 200, &[("Contact", &granted)]),
                    server(),
                );
            }
            _ => {
                ua.handle_message(
                    t1,
                    answer(&refresh, 401, &[("WWW-Authenticate", REGISTRAR)]),
                    server(),
                );
                ua.handle_message(t1, answer(&un, 200, &[]), server());
            }
        }
        let (out, ev) = drain(&mut ua);
        assert!(
            out.iter()
                .all(|o| msg(o).method() != Some(Method::Register)),
            "{case}: a REGISTER after the un-REGISTER"
        );
        // The refresh's 200 may be reported (the registrar did refresh the binding then),
        // but never after the un-REGISTER's answer.
        let unregistered = ev
            .iter()
            .position(|e| matches!(e, UaEvent::Unregistered { code: 200 }))
            .unwrap_or_else(|| panic!("{case}: {ev:?}"));
        assert!(
            !ev[unregistered..]
                .iter()
                .any(|e| matches!(e, UaEvent::Registered { .. })),
            "{case}: {ev:?}"
        );
        assert_eq!(ua.registration(), RegState::Unregistered, "{case}");
        // Nothing more for an hour: no refresh was armed by the late 200.
        let mut now = t1;
        while let Some(t) = ua
            .poll_timeout()
            .filter(|t| *t <= t1 + Duration::from_secs(3600))
        {
            now = t.max(now);
            ua.handle_timeout(now);
            let (out, _) = drain(&mut ua);
            assert!(
                out.iter()
                    .all(|o| msg(o).method() != Some(Method::Register)),
                "{case}: registered again at {:?}",
                now - t1
            );
        }
        assert_eq!(ua.registration(), RegState::Unregistered, "{case}");
    }
}

/// The challenge a REGISTER refresh reuses (RFC 7616 §3.4: nc increments) is the
/// registrar's. RFC 3261 §22.1: "The realm string alone defines the protection domain"; a
/// 401 from the callee (another realm) to an INVITE between two refreshes is not the
/// registrar's protection space, and credentials for it sent to the registrar only cost a
/// new challenge.
#[test]
fn a_refresh_reuses_the_registrars_challenge_not_a_callees() {
    let t0 = Instant::now();
    let mut ua = alice();
    ua.register(t0);
    let r1 = sent(&mut ua, Method::Register);
    let r2 = challenged(
        &mut ua,
        t0,
        &r1,
        401,
        ("WWW-Authenticate", REGISTRAR),
        Method::Register,
    );
    let ours = r2.headers.value(&HeaderName::Contact).unwrap().to_owned();
    let granted = format!("{ours};expires=300");
    ua.handle_message(t0, answer(&r2, 200, &[("Contact", &granted)]), server());
    drain(&mut ua);
    ua.call(
        t0,
        Uri::parse("sip:bob@example.test").unwrap(),
        Some(bytes::Bytes::from_static(b"v=0\r\n")),
    );
    let i1 = sent(&mut ua, Method::Invite);
    let callee = r#"Digest realm="bob.test", nonce="b1", qop="auth""#;
    let i2 = challenged(
        &mut ua,
        t0,
        &i1,
        401,
        ("WWW-Authenticate", callee),
        Method::Invite,
    );
    assert_eq!(realms(&i2, &HeaderName::Authorization), ["bob.test"]);
    ua.handle_timeout(t0 + Duration::from_secs(268));
    let refresh = sent(&mut ua, Method::Register);
    let creds: Vec<_> = refresh
        .headers
        .get_all(&HeaderName::Authorization)
        .map(|h| sip_auth::Authorization::parse(h.value()).unwrap())
        .map(|a| {
            (
                a.realm.into_owned(),
                a.nonce.into_owned(),
                a.nc.unwrap().into_owned(),
            )
        })
        .collect();
    assert_eq!(
        creds,
        [("example.test".into(), "r1".into(), "00000002".into())],
        "the refresh answers the registrar's challenge again"
    );
}
