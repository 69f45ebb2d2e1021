//! RFC 3608 Service-Route: the route a registrar returns in its 200 to a REGISTER is
//! preloaded (after the outbound proxy's, when one is set) on the requests the phone sends
//! outside a dialog, replaced by each 200 to a REGISTER and cleared by one without it or by
//! an un-REGISTER; never on REGISTER, never inside a dialog. One phone and a scripted
//! registrar on a virtual clock (a second phone answers calls), through the public API only.

use std::time::{Duration, Instant};

use sip_msg::typed::RouteRef;
use sip_msg::{Header, HeaderName, Message, Uri};
use sip_proto::auth::Credentials;
use sip_proto::ua::{CallEvent, Destination, Outgoing, UaConfig, UaEvent, UserAgent};

mod common;
use common::{ALICE, BOB, agent, config, deliver, drain, msg, sdp};

/// Where the scripted registrar answers from.
fn server() -> std::net::SocketAddr {
    "127.0.0.1:5060".parse().unwrap()
}

/// Alice at 127.0.0.1:5062, with `proxy` as her outbound proxy when given.
fn alice(proxy: Option<&str>) -> UserAgent {
    UserAgent::new(UaConfig {
        outbound_proxy: proxy.map(|p| match Uri::parse(p).unwrap() {
            Uri::Sip(u) => u,
            other => panic!("not a SIP URI: {other}"),
        }),
        credentials: Some(Credentials::new("alice", "pw")),
        ..config("alice", ALICE, 3608, false, "service-route")
    })
}

/// The one message that starts with `prefix` among what `ua` has to send.
fn sent(ua: &mut UserAgent, prefix: &str) -> Outgoing {
    let (out, _) = drain(ua);
    out.into_iter()
        .find(|o| o.bytes.starts_with(prefix.as_bytes()))
        .unwrap_or_else(|| panic!("no {prefix:?} was sent"))
}

/// `req` answered with `code` and the `extra` header lines (name, value), in order.
fn answer(req: &Message, code: u16, extra: &[(&str, &str)]) -> Message {
    let mut resp = Message::response_to(req, code, "Whatever", Some("srv"));
    for (n, v) in extra {
        resp.headers.push(Header::new(*n, *v));
    }
    resp
}

/// Alice's REGISTER (a refresh when she is registered already) answered 200 with the
/// `Service-Route` lines `lines`; the REGISTER.
fn register_with(ua: &mut UserAgent, now: Instant, refresh: bool, lines: &[&str]) -> Outgoing {
    if refresh {
        ua.refresh_registration(now);
    } else {
        ua.register(now);
    }
    let reg = sent(ua, "REGISTER ");
    let extra: Vec<(&str, &str)> = lines.iter().map(|l| ("Service-Route", *l)).collect();
    ua.handle_message(now, answer(&msg(&reg), 200, &extra), server());
    let (_, ev) = drain(ua);
    assert!(
        matches!(ev[..], [UaEvent::Registered { .. }]),
        "registered: {ev:?}"
    );
    reg
}

/// Every Route value of `m`, in order (each entry of a comma-joined line apart).
fn routes(m: &Message) -> Vec<String> {
    m.headers
        .view_all_texts::<RouteRef>()
        .map(|(text, entry)| {
            entry.unwrap();
            text.to_owned()
        })
        .collect()
}

/// Alice's INVITE to Bob (an offer).
fn invite(ua: &mut UserAgent, now: Instant) -> (sip_proto::ua::CallId, Outgoing) {
    let id = ua.call(
        now,
        Uri::parse("sip:bob@127.0.0.1:5064").unwrap(),
        Some(sdp("v=0 a\r\n")),
    );
    (id, sent(ua, "INVITE "))
}

/// A destination that is the URI `uri`.
fn is_uri(d: &Destination, uri: &str) -> bool {
    matches!(d, Destination::Uri(u) if u.to_string() == uri)
}

const SR1: &str = "<sip:127.0.0.1:5070;lr;orig>";
const SR2: &str = "<sip:10.0.0.2:5080;lr>";
const SR3: &str = "<sip:scscf.example.test;lr>";

/// RFC 3608 §6: the Service-Route values of the 200, in order (several lines, several on
/// one line), become the INVITE's Route; it goes to the first one. An entry that does not
/// read is left out, the others kept.
#[test]
fn the_service_route_is_preloaded_on_an_invite() {
    let t0 = Instant::now();
    let mut ua = alice(None);
    let reg = register_with(
        &mut ua,
        t0,
        false,
        &[SR1, "<sip:10.0.0.2:5080;lr>, <sip:@@bad", SR3],
    );
    assert!(routes(&msg(&reg)).is_empty(), "a REGISTER has no Route");
    let (_, inv) = invite(&mut ua, t0);
    let m = msg(&inv);
    // `<sip:10.0.0.2:5080;lr>, <sip:@@bad` does not split (an unclosed `<`): the line is
    // left out whole; the other entries stay in order.
    assert_eq!(
        routes(&m),
        [SR1, SR3],
        "{}",
        String::from_utf8_lossy(&inv.bytes)
    );
    assert!(
        is_uri(&inv.destination, "sip:127.0.0.1:5070;lr;orig"),
        "the INVITE goes to the first route: {:?}",
        inv.destination
    );
    assert_eq!(
        m.request_uri().unwrap().to_string(),
        "sip:bob@127.0.0.1:5064",
        "loose routes: the Request-URI stays the target"
    );

    // Several entries on one line, and one that does not read among them.
    let mut ua = alice(None);
    register_with(
        &mut ua,
        t0,
        false,
        &["<sip:10.0.0.2:5080;lr>, <sip:not a uri;lr>, <sip:scscf.example.test;lr>"],
    );
    let (_, inv) = invite(&mut ua, t0);
    assert_eq!(routes(&msg(&inv)), [SR2, SR3]);
    assert!(is_uri(&inv.destination, "sip:10.0.0.2:5080;lr"));
}

/// With an outbound proxy, its Route comes first and the INVITE goes to it (RFC 3608 §6:
/// the service route is preloaded after the outbound proxy).
#[test]
fn the_service_route_follows_the_outbound_proxy() {
    let t0 = Instant::now();
    let mut ua = alice(Some("sip:127.0.0.1:5090"));
    register_with(&mut ua, t0, false, &[SR1, SR2]);
    let (_, inv) = invite(&mut ua, t0);
    assert_eq!(
        routes(&msg(&inv)),
        ["<sip:127.0.0.1:5090;lr>", SR1, SR2],
        "{}",
        String::from_utf8_lossy(&inv.bytes)
    );
    assert_eq!(inv.destination, Destination::OutboundProxy);
}

/// Each 200 to a REGISTER replaces the service route (§6: "the UA MUST replace any
/// previously stored service route"); one without Service-Route clears it, and an
/// un-REGISTER clears it. REGISTER refreshes never carry it.
#[test]
fn the_service_route_is_replaced_by_each_200_and_cleared() {
    let t0 = Instant::now();
    let mut ua = alice(None);
    register_with(&mut ua, t0, false, &[SR1]);
    let (_, inv) = invite(&mut ua, t0);
    assert_eq!(routes(&msg(&inv)), [SR1]);

    let t1 = t0 + Duration::from_secs(100);
    let reg = register_with(&mut ua, t1, true, &[SR2]);
    assert!(routes(&msg(&reg)).is_empty(), "a refresh has no Route");
    assert_eq!(reg.destination, Destination::Registrar);
    let (_, inv) = invite(&mut ua, t1);
    assert_eq!(
        routes(&msg(&inv)),
        [SR2],
        "the second 200's route replaces the first"
    );
    assert!(is_uri(&inv.destination, "sip:10.0.0.2:5080;lr"));

    let t2 = t1 + Duration::from_secs(100);
    let reg = register_with(&mut ua, t2, true, &[]);
    assert!(routes(&msg(&reg)).is_empty());
    let (_, inv) = invite(&mut ua, t2);
    assert!(routes(&msg(&inv)).is_empty(), "a 200 without it clears it");
    assert_eq!(inv.destination, Destination::Registrar);

    // Registered with a route again, then unregistered: gone.
    let t3 = t2 + Duration::from_secs(100);
    register_with(&mut ua, t3, true, &[SR3]);
    ua.unregister(t3);
    let unreg = sent(&mut ua, "REGISTER ");
    assert!(
        routes(&msg(&unreg)).is_empty(),
        "an un-REGISTER has no Route"
    );
    ua.handle_message(t3, answer(&msg(&unreg), 200, &[]), server());
    drain(&mut ua);
    let (_, inv) = invite(&mut ua, t3);
    assert!(routes(&msg(&inv)).is_empty(), "an un-REGISTER clears it");
    assert_eq!(inv.destination, Destination::Registrar);
}

/// The timer-driven refresh (not the API's) carries no Route either.
#[test]
fn a_timed_refresh_carries_no_route() {
    let t0 = Instant::now();
    let mut ua = alice(Some("sip:127.0.0.1:5090"));
    register_with(&mut ua, t0, false, &[SR1]);
    // The transaction's last timer first, then the refresh.
    let reg = (0..10)
        .find_map(|_| {
            let at = ua.poll_timeout().expect("a refresh is armed");
            ua.handle_timeout(at);
            drain(&mut ua)
                .0
                .into_iter()
                .find(|o| o.bytes.starts_with(b"REGISTER "))
        })
        .expect("no refresh was sent");
    assert!(routes(&msg(&reg)).is_empty(), "the refresh has no Route");
    assert_eq!(reg.destination, Destination::Registrar);
}

/// The INVITE sent again after a 407 and its CANCEL carry the same Route and go to the same
/// place as the first INVITE (RFC 3261 §22.2, §9.1), even when a 200 to a REGISTER has
/// changed the service route since.
#[test]
fn the_retried_invite_and_its_cancel_keep_the_first_route() {
    let t0 = Instant::now();
    let mut ua = alice(None);
    register_with(&mut ua, t0, false, &[SR1, SR2]);
    let (id, inv) = invite(&mut ua, t0);
    let challenge = r#"Digest realm="example.test", nonce="n1", qop="auth""#;
    // The service route changes while the call is being set up.
    register_with(&mut ua, t0, true, &[SR3]);
    ua.handle_message(
        t0,
        answer(&msg(&inv), 407, &[("Proxy-Authenticate", challenge)]),
        server(),
    );
    let retry = sent(&mut ua, "INVITE ");
    assert_eq!(routes(&msg(&retry)), [SR1, SR2]);
    assert!(is_uri(&retry.destination, "sip:127.0.0.1:5070;lr;orig"));
    ua.handle_message(t0, answer(&msg(&retry), 180, &[]), server());
    drain(&mut ua);
    ua.hangup(t0, id);
    let cancel = sent(&mut ua, "CANCEL ");
    assert_eq!(routes(&msg(&cancel)), [SR1, SR2]);
    assert!(is_uri(&cancel.destination, "sip:127.0.0.1:5070;lr;orig"));
}

/// Inside the dialog the dialog's route set rules (RFC 3261 §12.2.1.1): the ACK and the BYE
/// carry the 2xx's Record-Route (reversed), or no Route at all without one, and go to its
/// first entry or the remote target; never the service route.
#[test]
fn requests_inside_a_dialog_follow_its_route_set() {
    let t0 = Instant::now();
    for record_route in [None, Some("<sip:127.0.0.1:5099;lr>")] {
        let mut ua = alice(Some("sip:127.0.0.1:5090"));
        register_with(&mut ua, t0, false, &[SR1, SR2]);
        let (id, inv) = invite(&mut ua, t0);
        let mut bob = agent("bob", BOB, 4, false, "bob");
        let mut inv = msg(&inv);
        if let Some(rr) = record_route {
            inv.headers.push(Header::new(HeaderName::RecordRoute, rr));
        }
        bob.handle_message(t0, inv, common::addr(ALICE));
        let (_, ev) = drain(&mut bob);
        let b = match ev.first() {
            Some(UaEvent::Call(c, CallEvent::Incoming { .. })) => *c,
            _ => panic!("no incoming call: {ev:?}"),
        };
        bob.answer(t0, b, Some(sdp("v=0 b\r\n")));
        let (ok, _) = drain(&mut bob);
        deliver(&mut ua, t0, BOB, &ok);
        let ack = sent(&mut ua, "ACK ");
        ua.hangup(t0, id);
        let bye = sent(&mut ua, "BYE ");
        for (what, o) in [("ACK", &ack), ("BYE", &bye)] {
            let m = msg(o);
            match record_route {
                None => {
                    assert!(
                        routes(&m).is_empty(),
                        "{what}: {}",
                        String::from_utf8_lossy(&o.bytes)
                    );
                    assert!(
                        is_uri(&o.destination, "sip:bob@127.0.0.1:5064"),
                        "{what} goes to the remote target: {:?}",
                        o.destination
                    );
                }
                Some(rr) => {
                    assert_eq!(routes(&m), [rr], "{what}");
                    assert!(is_uri(&o.destination, "sip:127.0.0.1:5099;lr"), "{what}");
                }
            }
            assert_eq!(m.method().unwrap().as_str(), what);
        }
    }
}
