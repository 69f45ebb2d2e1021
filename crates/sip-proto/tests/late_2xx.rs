//! A 2xx to our INVITE retransmitted after the call ended and was forgotten (the agent forgets
//! every ended call at once) is still ACKed, until Timer M (RFC 3261 §13.2.2.4: the UAC core
//! ACKs every 2xx retransmission; RFC 6026 §8.4: they may come for 64·T1 after the first).
//! And the 2xx of a second fork (one INVITE answered by two UASs) is ACKed, then its dialog
//! ended with BYE (§13.2.2.4: a UAC that wants one dialog), while the call lives and after it
//! was forgotten. Agents on a virtual clock, through the public API only; no loss, no sockets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_msg::{Message, Uri};
use sip_proto::ua::{CallEvent, CallId, CallState, Destination, Outgoing, UaEvent, UserAgent};

mod common;
use common::{ALICE, BOB, addr, deliver, drain, incoming};

fn agent(user: &str, port: u16, seed: u64) -> UserAgent {
    common::agent(user, port, seed, false, "late-2xx")
}

fn starting(out: &[Outgoing], prefix: &str) -> Vec<Bytes> {
    out.iter()
        .filter(|o| o.bytes.starts_with(prefix.as_bytes()))
        .map(|o| o.bytes.clone())
        .collect()
}

/// Alice calls Bob, Bob answers, Alice ACKs (the ACK is "lost": not delivered), Alice hangs
/// up, the BYE is answered and Alice forgets the call. Returns the clock, Alice, Bob's 2xx
/// and Alice's ACK.
fn answered_ended_and_forgotten() -> (Instant, UserAgent, Bytes, Bytes) {
    let mut now = Instant::now();
    let (mut alice, mut bob) = (agent("alice", ALICE, 1), agent("bob", BOB, 2));
    let call = alice.call(
        now,
        Uri::parse("sip:bob@127.0.0.1:5064").unwrap(),
        Some(Bytes::from_static(b"v=0\r\n")),
    );
    let (out, _) = drain(&mut alice);
    assert!(matches!(
        out[..],
        [Outgoing {
            destination: Destination::Registrar,
            ..
        }]
    ));
    deliver(&mut bob, now, ALICE, &out);
    let (_, ev) = drain(&mut bob);
    let Some(UaEvent::Call(bob_call, CallEvent::Incoming { .. })) = ev.first() else {
        panic!("no incoming call at Bob: {ev:?}");
    };
    bob.answer(now, *bob_call, Some(Bytes::from_static(b"v=0\r\n")));
    let (out, _) = drain(&mut bob);
    let ok = starting(&out, "SIP/2.0 200 ");
    assert_eq!(ok.len(), 1, "{out:?}");
    now += Duration::from_millis(20);
    deliver(&mut alice, now, BOB, &out);
    let (out, ev) = drain(&mut alice);
    let ack = starting(&out, "ACK ");
    assert_eq!(ack.len(), 1, "{out:?}");
    assert!(
        ev.iter()
            .any(|e| matches!(e, UaEvent::Call(c, CallEvent::Answered { .. }) if *c == call))
    );
    // The ACK is lost. Alice hangs up; Bob answers the BYE.
    now += Duration::from_millis(20);
    alice.hangup(now, call);
    let (out, _) = drain(&mut alice);
    assert_eq!(starting(&out, "BYE ").len(), 1, "{out:?}");
    deliver(&mut bob, now, ALICE, &out);
    let (out, _) = drain(&mut bob);
    assert_eq!(starting(&out, "SIP/2.0 200 ").len(), 1, "{out:?}");
    deliver(&mut alice, now, BOB, &out);
    let (_, ev) = drain(&mut alice);
    assert!(
        ev.iter()
            .any(|e| matches!(e, UaEvent::Call(c, CallEvent::Ended { .. }) if *c == call))
    );
    assert_eq!(alice.call_state(call), Some(CallState::Terminated));
    alice.forget_call(call);
    assert_eq!(alice.call_state(call), None);
    assert_eq!(alice.call_state(CallId(call.0 + 1)), None);
    (now, alice, ok[0].clone(), ack[0].clone())
}

/// Runs Alice's timers up to `until`.
fn run_timers(alice: &mut UserAgent, until: Instant) -> Instant {
    let mut now = until;
    while let Some(t) = alice.poll_timeout().filter(|&t| t <= until) {
        now = t;
        alice.handle_timeout(now);
        drain(alice);
    }
    now.max(until)
}

#[test]
fn a_2xx_retransmitted_after_the_call_was_forgotten_is_acked_until_timer_m() {
    let (now, mut alice, ok, ack) = answered_ended_and_forgotten();
    let first_2xx = now;
    // Bob retransmits his 2xx (it got no ACK): each copy gets the same ACK, sent as a
    // retransmission, and no event for the forgotten call.
    for wait in [500, 1000, 2000, 4000] {
        let now = run_timers(&mut alice, first_2xx + Duration::from_millis(wait));
        alice.handle_message(now, Message::parse(&ok).unwrap(), addr(BOB));
        let (out, ev) = drain(&mut alice);
        assert_eq!(out.len(), 1, "{out:?} {ev:?}");
        assert_eq!(out[0].bytes, ack);
        assert!(out[0].retransmission);
        assert_eq!(
            out[0].destination,
            Destination::Uri(Arc::new(Uri::parse("sip:bob@127.0.0.1:5064").unwrap()))
        );
        assert!(!ev.iter().any(|e| matches!(e, UaEvent::Call(..))), "{ev:?}");
    }
    // Timer M (64·T1 = 32 s after the first 2xx) ends the INVITE's transaction: a copy after
    // it is too late and gets nothing (the call is long gone).
    let now = run_timers(&mut alice, first_2xx + Duration::from_secs(33));
    assert_eq!(alice.poll_timeout(), None, "nothing left to wait for");
    alice.handle_message(now, Message::parse(&ok).unwrap(), addr(BOB));
    let (out, _) = drain(&mut alice);
    assert!(out.is_empty(), "{out:?}");
}

const CAROL: u16 = 5066;

/// The INVITE of Alice's new call to Bob and Carol at once (what a forking proxy would do: both
/// get the same INVITE); each rings. Returns Alice's call and each one's call.
fn forked_call(
    now: Instant,
    alice: &mut UserAgent,
    bob: &mut UserAgent,
    carol: &mut UserAgent,
) -> (CallId, CallId, CallId) {
    let call = alice.call(
        now,
        Uri::parse("sip:bob@127.0.0.1:5064").unwrap(),
        Some(Bytes::from_static(b"v=0\r\n")),
    );
    let (out, _) = drain(alice);
    assert_eq!(starting(&out, "INVITE ").len(), 1, "{out:?}");
    let incoming = |ua: &mut UserAgent| incoming(ua, now, &out);
    let (at_bob, at_carol) = (incoming(bob), incoming(carol));
    (call, at_bob, at_carol)
}

/// `ua` answers its call; returns its 2xx.
fn answer(now: Instant, ua: &mut UserAgent, call: CallId) -> Vec<Outgoing> {
    ua.answer(now, call, Some(Bytes::from_static(b"v=0\r\n")));
    let (out, _) = drain(ua);
    assert_eq!(starting(&out, "SIP/2.0 200 ").len(), 1, "{out:?}");
    out
}

/// Carol's 2xx reaches Alice: Alice ACKs it and ends Carol's dialog with BYE (RFC 3261
/// §13.2.2.4); Carol answers the BYE and her call ends, by the remote side. Alice's own call
/// sees nothing of it.
fn second_fork_is_ended(
    now: Instant,
    alice: &mut UserAgent,
    carol: &mut UserAgent,
    ok: &[Outgoing],
) {
    deliver(alice, now, CAROL, ok);
    let (out, ev) = drain(alice);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(starting(&out, "ACK ").len(), 1, "{out:?}");
    assert_eq!(starting(&out, "BYE ").len(), 1, "{out:?}");
    for o in &out {
        assert_eq!(
            o.destination,
            Destination::Uri(Arc::new(Uri::parse("sip:carol@127.0.0.1:5066").unwrap()))
        );
    }
    assert!(!ev.iter().any(|e| matches!(e, UaEvent::Call(..))), "{ev:?}");
    deliver(carol, now, ALICE, &out);
    let (reply, ev) = drain(carol);
    assert_eq!(starting(&reply, "SIP/2.0 200 ").len(), 1, "{reply:?}");
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
    deliver(alice, now, CAROL, &reply);
    let (out, ev) = drain(alice);
    assert!(out.is_empty(), "{out:?}");
    assert!(!ev.iter().any(|e| matches!(e, UaEvent::Call(..))), "{ev:?}");
}

#[test]
fn a_second_forks_2xx_is_acked_then_its_dialog_ended_with_bye() {
    let mut now = Instant::now();
    let mut alice = agent("alice", ALICE, 1);
    let (mut bob, mut carol) = (agent("bob", BOB, 2), agent("carol", CAROL, 3));
    let (call, at_bob, at_carol) = forked_call(now, &mut alice, &mut bob, &mut carol);
    // Bob answers first: Alice's call is Bob's.
    let ok = answer(now, &mut bob, at_bob);
    now += Duration::from_millis(20);
    deliver(&mut alice, now, BOB, &ok);
    let (out, ev) = drain(&mut alice);
    assert_eq!(starting(&out, "ACK ").len(), 1, "{out:?}");
    assert!(
        ev.iter()
            .any(|e| matches!(e, UaEvent::Call(c, CallEvent::Answered { .. }) if *c == call))
    );
    deliver(&mut bob, now, ALICE, &out);
    drain(&mut bob);
    // Carol answers too: her dialog is ACKed and ended; Alice and Bob stay in the call.
    let ok = answer(now, &mut carol, at_carol);
    now += Duration::from_millis(20);
    second_fork_is_ended(now, &mut alice, &mut carol, &ok);
    assert_eq!(carol.call_state(at_carol), Some(CallState::Terminated));
    assert_eq!(alice.call_state(call), Some(CallState::Confirmed));
    assert_eq!(bob.call_state(at_bob), Some(CallState::Confirmed));
    // Alice hangs up: the BYE goes to Bob, who ends his call.
    alice.hangup(now, call);
    let (out, _) = drain(&mut alice);
    assert_eq!(starting(&out, "BYE ").len(), 1, "{out:?}");
    deliver(&mut bob, now, ALICE, &out);
    drain(&mut bob);
    assert_eq!(bob.call_state(at_bob), Some(CallState::Terminated));
}

#[test]
fn a_second_forks_2xx_after_the_call_was_forgotten_is_acked_then_ended_with_bye() {
    let mut now = Instant::now();
    let mut alice = agent("alice", ALICE, 1);
    let (mut bob, mut carol) = (agent("bob", BOB, 2), agent("carol", CAROL, 3));
    let (call, at_bob, at_carol) = forked_call(now, &mut alice, &mut bob, &mut carol);
    let ok = answer(now, &mut bob, at_bob);
    now += Duration::from_millis(20);
    deliver(&mut alice, now, BOB, &ok);
    let (out, _) = drain(&mut alice);
    deliver(&mut bob, now, ALICE, &out);
    drain(&mut bob);
    // Alice hangs up, Bob answers the BYE, Alice forgets the call.
    now += Duration::from_millis(20);
    alice.hangup(now, call);
    let (out, _) = drain(&mut alice);
    deliver(&mut bob, now, ALICE, &out);
    let (out, _) = drain(&mut bob);
    deliver(&mut alice, now, BOB, &out);
    drain(&mut alice);
    alice.forget_call(call);
    assert_eq!(alice.call_state(call), None);
    // Carol answers late (within Timer M): her dialog is still ACKed and ended.
    now = run_timers(&mut alice, now + Duration::from_secs(2));
    let ok = answer(now, &mut carol, at_carol);
    second_fork_is_ended(now, &mut alice, &mut carol, &ok);
    assert_eq!(carol.call_state(at_carol), Some(CallState::Terminated));
    // Alice's timers run out: nothing left, nothing sent after the BYE's transaction.
    run_timers(&mut alice, now + Duration::from_secs(40));
    assert_eq!(alice.poll_timeout(), None);
}
