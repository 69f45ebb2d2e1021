//! Review of the extra-fork BYE (RFC 3261 §13.2.2.4, RFC 6026 §7.2, §8.9). Alice's INVITE
//! reaches Bob and Carol (what a forking proxy does); Bob answers first. Agents on a virtual
//! clock, through the public API only.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_msg::{Message, Uri};
use sip_proto::ua::{CallEvent, CallId, CallState, Outgoing, UaEvent, UserAgent};

mod common;
use common::{ALICE, BOB, CAROL, addr, deliver, drain, incoming};

fn agent(user: &str, port: u16, seed: u64) -> UserAgent {
    agent_100rel(user, port, seed, false)
}

fn agent_100rel(user: &str, port: u16, seed: u64, use_100rel: bool) -> UserAgent {
    common::agent(user, port, seed, use_100rel, "review4")
}

fn count(out: &[Outgoing], prefix: &str) -> usize {
    out.iter()
        .filter(|o| o.bytes.starts_with(prefix.as_bytes()))
        .count()
}

/// Runs `ua`'s timers up to `until`; returns what it sent and reported meanwhile.
fn run_timers(ua: &mut UserAgent, until: Instant) -> (Vec<Outgoing>, Vec<UaEvent>) {
    let (mut out, mut ev) = (Vec::new(), Vec::new());
    while let Some(t) = ua.poll_timeout().filter(|&t| t <= until) {
        ua.handle_timeout(t);
        let (o, e) = drain(ua);
        out.extend(o);
        ev.extend(e);
    }
    (out, ev)
}

/// What [`bob_answered`] gives: Alice, Bob and Carol, Alice's call, Bob's and Carol's, and
/// Bob's 2xx.
type Answered = (
    UserAgent,
    UserAgent,
    UserAgent,
    CallId,
    CallId,
    CallId,
    Vec<Outgoing>,
);

/// Alice calls; Bob and Carol both get the INVITE; Bob answers and Alice ACKs him.
fn bob_answered(now: Instant) -> Answered {
    let mut alice = agent("alice", ALICE, 1);
    let (mut bob, mut carol) = (agent("bob", BOB, 2), agent("carol", CAROL, 3));
    let call = alice.call(
        now,
        Uri::parse("sip:bob@127.0.0.1:5064").unwrap(),
        Some(Bytes::from_static(b"v=0\r\n")),
    );
    let (invite, _) = drain(&mut alice);
    assert_eq!(count(&invite, "INVITE "), 1, "{invite:?}");
    let incoming = |ua: &mut UserAgent| incoming(ua, now, &invite);
    let (at_bob, at_carol) = (incoming(&mut bob), incoming(&mut carol));
    bob.answer(now, at_bob, Some(Bytes::from_static(b"v=0\r\n")));
    let (ok, _) = drain(&mut bob);
    deliver(&mut alice, now, BOB, &ok);
    let (ack, _) = drain(&mut alice);
    assert_eq!(count(&ack, "ACK "), 1, "{ack:?}");
    deliver(&mut bob, now, ALICE, &ack);
    drain(&mut bob);
    assert_eq!(alice.call_state(call), Some(CallState::Confirmed));
    (alice, bob, carol, call, at_bob, at_carol, ok)
}

/// Past Timer M (64·T1 after Bob's 2xx) Alice's INVITE transaction is gone, and with it what
/// it remembered of the forks it ended. A 2xx of another fork then is a stray response (RFC
/// 6026 §8.9: discarded): before the fix, each copy of it — Carol's retransmissions, or a peer
/// sending ever new To tags — got an ACK and a BYE transaction of its own, with no bound
/// (`MAX_FORKS_ENDED` only counts while the transaction lives). Carol, never ACKed, ends her
/// dialog herself (RFC 3261 §13.3.1.4). Bob's own 2xx again is still ACKed through the call.
#[test]
fn another_forks_2xx_after_timer_m_gets_no_bye_transaction_per_copy() {
    let start = Instant::now();
    let (mut alice, _bob, mut carol, call, _, at_carol, bob_ok) = bob_answered(start);
    let (out, _) = run_timers(&mut alice, start + Duration::from_secs(33));
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(alice.call_state(call), Some(CallState::Confirmed));
    // Carol answers now (her phone rang long); each copy of her 2xx reaches Alice.
    let now = start + Duration::from_secs(33);
    carol.answer(now, at_carol, Some(Bytes::from_static(b"v=0\r\n")));
    let (ok, _) = drain(&mut carol);
    assert_eq!(count(&ok, "SIP/2.0 200 "), 1, "{ok:?}");
    let mut byes = 0;
    for _ in 0..5 {
        deliver(&mut alice, now, CAROL, &ok);
        let (out, ev) = drain(&mut alice);
        byes += count(&out, "BYE ");
        assert!(!ev.iter().any(|e| matches!(e, UaEvent::Call(..))), "{ev:?}");
    }
    // A peer answering with ever new To tags.
    let text = String::from_utf8(ok[0].bytes.to_vec()).unwrap();
    let tag_at = text.find(";tag=").unwrap() + 5;
    for n in 0..40 {
        let forged = format!("{}x{n}{}", &text[..tag_at], &text[tag_at..]);
        alice.handle_message(now, Message::parse(forged.as_bytes()).unwrap(), addr(CAROL));
        let (out, _) = drain(&mut alice);
        byes += count(&out, "BYE ");
    }
    assert_eq!(byes, 0, "BYE transactions started for stray 2xx responses");
    // Bob's own 2xx again is still ACKed (through the call), with no BYE.
    deliver(&mut alice, now, BOB, &bob_ok);
    let (out, _) = drain(&mut alice);
    assert_eq!((count(&out, "ACK "), out.len()), (1, 1), "{out:?}");
    assert_eq!(alice.call_state(call), Some(CallState::Confirmed));
    // Carol gets no ACK: she ends her dialog with BYE after 64·T1 (§13.3.1.4).
    let (out, ev) = run_timers(&mut carol, now + Duration::from_secs(40));
    let first_byes = out
        .iter()
        .filter(|o| o.bytes.starts_with(b"BYE ") && !o.retransmission)
        .count();
    assert_eq!(first_byes, 1, "{out:?} {ev:?}");
    assert_ne!(carol.call_state(at_carol), Some(CallState::Confirmed));
}

/// Carol's reliable 180 is PRACKed in her early dialog (CSeq = the INVITE's + 1), then Bob
/// answers first. When Carol answers too, the BYE that ends her dialog must come after that
/// PRACK in her dialog (RFC 3261 §12.2.1.1): before the fix it reused the PRACK's number
/// (the INVITE's + 1) and Carol refused it with 500 (§12.2.2), so her dialog stayed up.
#[test]
fn the_bye_of_a_fork_comes_after_the_prack_sent_in_its_early_dialog() {
    let now = Instant::now();
    let mut alice = agent_100rel("alice", ALICE, 1, true);
    let mut bob = agent_100rel("bob", BOB, 2, true);
    let mut carol = agent_100rel("carol", CAROL, 3, true);
    let call = alice.call(
        now,
        Uri::parse("sip:bob@127.0.0.1:5064").unwrap(),
        Some(Bytes::from_static(b"v=0\r\n")),
    );
    let (invite, _) = drain(&mut alice);
    let incoming = |ua: &mut UserAgent| incoming(ua, now, &invite);
    let (at_bob, at_carol) = (incoming(&mut bob), incoming(&mut carol));
    // Carol rings reliably; Alice PRACKs; Carol answers the PRACK.
    carol.ring(now, at_carol);
    let (ringing, _) = drain(&mut carol);
    assert!(
        ringing.iter().any(|o| o.bytes.starts_with(b"SIP/2.0 180 ")
            && String::from_utf8_lossy(&o.bytes).contains("RSeq:")),
        "{ringing:?}"
    );
    deliver(&mut alice, now, CAROL, &ringing);
    let (prack, _) = drain(&mut alice);
    assert_eq!(count(&prack, "PRACK "), 1, "{prack:?}");
    deliver(&mut carol, now, ALICE, &prack);
    let (prack_ok, _) = drain(&mut carol);
    assert_eq!(count(&prack_ok, "SIP/2.0 200 "), 1, "{prack_ok:?}");
    deliver(&mut alice, now, CAROL, &prack_ok);
    drain(&mut alice);
    // Bob answers first: Alice's call is Bob's.
    bob.answer(now, at_bob, Some(Bytes::from_static(b"v=0\r\n")));
    let (ok, _) = drain(&mut bob);
    deliver(&mut alice, now, BOB, &ok);
    let (ack, _) = drain(&mut alice);
    assert_eq!(count(&ack, "ACK "), 1, "{ack:?}");
    assert_eq!(alice.call_state(call), Some(CallState::Confirmed));
    // Carol answers: Alice ACKs her 2xx and ends her dialog with BYE, which Carol accepts.
    carol.answer(now, at_carol, Some(Bytes::from_static(b"v=0\r\n")));
    let (ok, _) = drain(&mut carol);
    deliver(&mut alice, now, CAROL, &ok);
    let (out, _) = drain(&mut alice);
    assert_eq!(
        (count(&out, "ACK "), count(&out, "BYE ")),
        (1, 1),
        "{out:?}"
    );
    let seq = |bytes: &[u8]| Message::parse(bytes).unwrap().cseq().unwrap().seq;
    let bye = out.iter().find(|o| o.bytes.starts_with(b"BYE ")).unwrap();
    assert!(
        seq(&bye.bytes) > seq(&prack[0].bytes),
        "BYE {} after PRACK {}",
        seq(&bye.bytes),
        seq(&prack[0].bytes)
    );
    deliver(&mut carol, now, ALICE, &out);
    let (reply, ev) = drain(&mut carol);
    assert_eq!(count(&reply, "SIP/2.0 200 "), 1, "{reply:?}");
    assert!(
        ev.iter().any(|e| matches!(
            e,
            UaEvent::Call(c, CallEvent::Ended { by_remote: true, .. }) if *c == at_carol
        )),
        "{ev:?}"
    );
    assert_eq!(carol.call_state(at_carol), Some(CallState::Terminated));
    assert_eq!(alice.call_state(call), Some(CallState::Confirmed));
}

/// Carol's 2xx as Bob's 2xx with Carol's To tag and Contact, through two proxies that
/// Record-Route (`rr` as the 2xx lists them: the proxy nearest Carol first).
fn carols_2xx(bob_ok: &[u8], rr: &str) -> Message {
    let text = String::from_utf8(bob_ok.to_vec()).unwrap();
    let to = text.find("\r\nTo: ").unwrap();
    let tag_at = to + text[to..].find(";tag=").unwrap() + 5;
    let text = format!("{}c{}", &text[..tag_at], &text[tag_at..]);
    let contact = text.find("\r\nContact: ").unwrap() + 2;
    let end = contact + text[contact..].find("\r\n").unwrap();
    let text = format!(
        "{}{rr}\r\nContact: <sip:carol@127.0.0.1:5066>{}",
        &text[..contact],
        &text[end..]
    );
    Message::parse(text.as_bytes()).unwrap()
}

/// The fork's ACK and BYE follow its route set: its 2xx's Record-Route reversed (§12.1.2),
/// loose routing (Request-URI = its Contact, sent to the first route) and strict routing
/// (Request-URI = the first route, its Contact last in Route; §12.2.1.1).
#[test]
fn a_forks_ack_and_bye_follow_its_record_route() {
    for (rr, uri, routes) in [
        (
            "Record-Route: <sip:p2.example;lr>, <sip:p1.example;lr>",
            "sip:carol@127.0.0.1:5066",
            vec!["<sip:p1.example;lr>", "<sip:p2.example;lr>"],
        ),
        (
            "Record-Route: <sip:p2.example;lr>\r\nRecord-Route: <sip:p1.example>",
            "sip:p1.example",
            vec!["<sip:p2.example;lr>", "<sip:carol@127.0.0.1:5066>"],
        ),
    ] {
        let now = Instant::now();
        let (mut alice, _bob, _carol, call, _, _, bob_ok) = bob_answered(now);
        let carol_ok = carols_2xx(&bob_ok[0].bytes, rr);
        assert_eq!(
            carol_ok.headers.value(&sip_msg::HeaderName::Contact),
            Some("<sip:carol@127.0.0.1:5066>")
        );
        alice.handle_message(now, carol_ok, addr(CAROL));
        let (out, ev) = drain(&mut alice);
        assert_eq!(
            (count(&out, "ACK "), count(&out, "BYE ")),
            (1, 1),
            "{out:?}"
        );
        for o in &out {
            let m = Message::parse(&o.bytes).unwrap();
            assert_eq!(m.request_uri().unwrap().to_string(), uri, "{rr}");
            let got: Vec<String> = m
                .headers
                .get_all(&sip_msg::HeaderName::Route)
                .flat_map(|h| {
                    h.value()
                        .split(',')
                        .map(|r| r.trim().to_owned())
                        .collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(got, routes, "{rr}");
            // Sent to the first route (p1), whatever its parameters.
            assert!(
                matches!(&o.destination, sip_proto::ua::Destination::Uri(u)
                    if u.to_string().starts_with("sip:p1.example")),
                "{rr}: {:?}",
                o.destination
            );
            assert_eq!(
                m.to().unwrap().tag().as_deref().map(|t| t.starts_with('c')),
                Some(true)
            );
        }
        assert!(!ev.iter().any(|e| matches!(e, UaEvent::Call(..))), "{ev:?}");
        assert_eq!(alice.call_state(call), Some(CallState::Confirmed));
    }
}

/// Alice hangs up while Bob and Carol ring: her CANCEL is pending when both answer anyway
/// (§9.1 race). Bob's 2xx is ACKed and his dialog ended with BYE (the call's), Carol's is
/// ACKed and ended with a BYE of its own; each UAS accepts its BYE and ends its call.
#[test]
fn forks_answering_while_our_cancel_is_pending_are_each_acked_and_ended() {
    let now = Instant::now();
    let mut alice = agent("alice", ALICE, 1);
    let (mut bob, mut carol) = (agent("bob", BOB, 2), agent("carol", CAROL, 3));
    let call = alice.call(
        now,
        Uri::parse("sip:bob@127.0.0.1:5064").unwrap(),
        Some(Bytes::from_static(b"v=0\r\n")),
    );
    let (invite, _) = drain(&mut alice);
    let incoming = |ua: &mut UserAgent| incoming(ua, now, &invite);
    let (at_bob, at_carol) = (incoming(&mut bob), incoming(&mut carol));
    bob.ring(now, at_bob);
    let (ringing, _) = drain(&mut bob);
    deliver(&mut alice, now, BOB, &ringing);
    drain(&mut alice);
    alice.hangup(now, call);
    let (cancel, _) = drain(&mut alice);
    assert_eq!(count(&cancel, "CANCEL "), 1, "{cancel:?}");
    // The CANCEL is still on its way: both answer.
    let mut ended = Vec::new();
    for (ua, at, port) in [(&mut bob, at_bob, BOB), (&mut carol, at_carol, CAROL)] {
        ua.answer(now, at, Some(Bytes::from_static(b"v=0\r\n")));
        let (ok, _) = drain(ua);
        deliver(&mut alice, now, port, &ok);
        let (out, _) = drain(&mut alice);
        assert_eq!(
            (count(&out, "ACK "), count(&out, "BYE "), out.len()),
            (1, 1, 2),
            "{out:?}"
        );
        deliver(ua, now, ALICE, &out);
        let (reply, ev) = drain(ua);
        assert_eq!(count(&reply, "SIP/2.0 200 "), 1, "{reply:?}");
        assert!(
            ev.iter().any(|e| matches!(
                e,
                UaEvent::Call(
                    _,
                    CallEvent::Ended {
                        by_remote: true,
                        ..
                    }
                )
            )),
            "{ev:?}"
        );
        assert_eq!(ua.call_state(at), Some(CallState::Terminated));
        ended.push(reply);
    }
    // Bob's answer to the BYE ends Alice's call; Carol's is nobody's business.
    deliver(&mut alice, now, BOB, &ended[0]);
    let (_, ev) = drain(&mut alice);
    assert!(
        ev.iter()
            .any(|e| matches!(e, UaEvent::Call(c, CallEvent::Ended { .. }) if *c == call)),
        "{ev:?}"
    );
    deliver(&mut alice, now, CAROL, &ended[1]);
    let (out, ev) = drain(&mut alice);
    assert!(out.is_empty(), "{out:?}");
    assert!(!ev.iter().any(|e| matches!(e, UaEvent::Call(..))), "{ev:?}");
}
