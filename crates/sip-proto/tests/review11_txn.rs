//! Review 11: RFC conformance of the transaction layer (RFC 3261 §17, §9, §13.3.1.4;
//! RFC 6026) as the UA uses it. Alice and Bob on a virtual clock through the public API;
//! where the network must lose or change a message, the test does it by hand.

use std::time::{Duration, Instant};

use sip_proto::ua::{CallEvent, CallId, CallState, Outgoing, UaEvent, UserAgent};

mod common;
use common::{ALICE, BOB, calling, deliver, drain, sdp, settle};

/// Alice's call to Bob answered and ACKed (no 100rel): (alice, her call, bob, his call).
fn confirmed(now: Instant) -> (UserAgent, CallId, UserAgent, CallId) {
    let (mut alice, a, mut bob, b) = calling(now, false, true);
    bob.answer(now, b, Some(sdp("v=0 b\r\n")));
    settle(now, &mut alice, &mut bob);
    assert_eq!(alice.call_state(a), Some(CallState::Confirmed));
    assert_eq!(bob.call_state(b), Some(CallState::Confirmed));
    (alice, a, bob, b)
}

/// The first line of `o`.
fn first_line(o: &Outgoing) -> String {
    let text = String::from_utf8_lossy(&o.bytes);
    text.lines().next().unwrap_or_default().to_owned()
}

/// What one side sent during [`run`]: (time from the start, first line).
type Sent = Vec<(Duration, String)>;

/// Runs Alice and Bob on the virtual clock from `start` until `end` after it, delivering
/// what each sends to the other except what `lose` (given the sender's name, the message
/// and the time) says the network loses. Returns what each sent and reported.
fn run(
    start: Instant,
    end: Duration,
    alice: &mut UserAgent,
    bob: &mut UserAgent,
    mut lose: impl FnMut(&str, &Outgoing, Duration) -> bool,
) -> (Sent, Vec<UaEvent>, Sent, Vec<UaEvent>) {
    let (mut a_sent, mut a_ev, mut b_sent, mut b_ev) = (vec![], vec![], vec![], vec![]);
    let mut now = start;
    loop {
        loop {
            let (a_out, ev) = drain(alice);
            a_ev.extend(ev);
            let (b_out, ev) = drain(bob);
            b_ev.extend(ev);
            if a_out.is_empty() && b_out.is_empty() {
                break;
            }
            let at = now - start;
            for o in &a_out {
                a_sent.push((at, first_line(o)));
            }
            for o in &b_out {
                b_sent.push((at, first_line(o)));
            }
            let a_kept: Vec<Outgoing> = a_out
                .into_iter()
                .filter(|o| !lose("alice", o, at))
                .collect();
            let b_kept: Vec<Outgoing> = b_out.into_iter().filter(|o| !lose("bob", o, at)).collect();
            deliver(bob, now, ALICE, &a_kept);
            deliver(alice, now, BOB, &b_kept);
        }
        let next = [alice.poll_timeout(), bob.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        match next {
            Some(t) if t <= start + end => {
                now = t.max(now);
                alice.handle_timeout(now);
                bob.handle_timeout(now);
            }
            _ => break,
        }
    }
    (a_sent, a_ev, b_sent, b_ev)
}

/// The call events of `ev` for `call`.
fn events_of(ev: &[UaEvent], call: CallId) -> Vec<&CallEvent> {
    ev.iter()
        .filter_map(|e| match e {
            UaEvent::Call(c, e) if *c == call => Some(e),
            _ => None,
        })
        .collect()
}

/// RFC 3261 §13.3.1.4 (and §14.2: a re-INVITE's UAS behaves as for an INVITE): "The 2xx
/// response is passed to the transport with an interval that starts at T1 seconds and
/// doubles for each retransmission until it reaches T2 seconds" until the ACK comes; RFC
/// 6026 §8.7 leans on it: the INVITE server transaction in Accepted absorbs the INVITE's
/// retransmissions and "MUST NOT generate 2xx retransmissions on its own". Alice puts the
/// call on hold with a re-INVITE carrying an offer; Bob's 200 with the answer is lost once.
/// Bob's core must send it again (at T1), Alice ACK it, and the call stay up. Before the
/// fix only a 2xx carrying our own offer (a re-INVITE without one) went again: Alice's
/// re-INVITE retransmissions were absorbed, her Timer B fired at 64·T1, and the call ended
/// with a 408 and a BYE.
#[test]
fn a_lost_2xx_to_a_reinvite_with_an_offer_is_sent_again_until_the_ack() {
    let start = Instant::now();
    let (mut alice, a, mut bob, b) = confirmed(start);
    assert!(alice.reinvite(start, a, sdp("v=0 a hold\r\na=sendonly\r\n")));
    let mut lost = 0;
    let (a_sent, a_ev, b_sent, b_ev) = run(
        start,
        Duration::from_secs(40),
        &mut alice,
        &mut bob,
        |who, o, _| {
            let drop = who == "bob" && o.bytes.starts_with(b"SIP/2.0 200 ") && lost == 0;
            lost += usize::from(drop);
            drop
        },
    );
    assert_eq!(lost, 1);
    let oks: Vec<_> = b_sent
        .iter()
        .filter(|(_, l)| l.starts_with("SIP/2.0 200 "))
        .collect();
    assert!(oks.len() >= 2, "the 2xx went once: {b_sent:?}");
    assert_eq!(oks[1].0, Duration::from_millis(500), "{b_sent:?}");
    assert!(
        a_sent.iter().any(|(_, l)| l.starts_with("ACK ")),
        "{a_sent:?}"
    );
    assert!(
        !a_sent.iter().any(|(_, l)| l.starts_with("BYE ")),
        "{a_sent:?}"
    );
    assert!(
        events_of(&a_ev, a)
            .iter()
            .any(|e| matches!(e, CallEvent::Modified { code: 200, .. })),
        "{a_ev:?}"
    );
    assert!(
        !events_of(&b_ev, b)
            .iter()
            .any(|e| matches!(e, CallEvent::Ended { .. } | CallEvent::Failed { .. })),
        "{b_ev:?}"
    );
    assert_eq!(alice.call_state(a), Some(CallState::Confirmed));
    assert_eq!(bob.call_state(b), Some(CallState::Confirmed));
    // Once ACKed, the 2xx goes no more.
    let ack_at = a_sent
        .iter()
        .find(|(_, l)| l.starts_with("ACK "))
        .map(|(t, _)| *t)
        .unwrap();
    assert!(
        !oks.iter().any(|(t, _)| *t > ack_at),
        "2xx after the ACK: {b_sent:?}"
    );
}

/// RFC 3261 §13.3.1.4: "Since 2xx is retransmitted end-to-end, there may be hops between UAS
/// and UAC that are UDP. To ensure reliable delivery across these hops, the response is
/// retransmitted periodically even if the transport at the UAS is reliable." Alice and Bob on
/// TCP (a proxy between them would have UDP on the far side); Bob's 200 is lost once on the
/// way (on that UDP hop). Bob must send it again at T1 and stop at the ACK. Before the fix a
/// UAS on a reliable transport sent its 2xx once (its first retransmission was set at
/// 64·T1, where it gives up instead): the call failed at 32 s, "no ACK for our 2xx", and the
/// caller's INVITE had no final response.
#[test]
fn the_2xx_goes_again_until_the_ack_on_a_reliable_transport_too() {
    let start = Instant::now();
    let tcp = |user, port, seed| {
        let mut c = common::config(user, port, seed, false, "tcp");
        c.transport = "TCP".into();
        c.reliable = true;
        UserAgent::new(c)
    };
    let (mut alice, mut bob) = (tcp("alice", ALICE, 41), tcp("bob", BOB, 42));
    let (a, invite) = common::call_bob(&mut alice, start);
    let b = common::incoming(&mut bob, start, &invite);
    bob.answer(start, b, Some(sdp("v=0 b\r\n")));
    let mut lost = 0;
    let (a_sent, _, b_sent, b_ev) = run(
        start,
        Duration::from_secs(40),
        &mut alice,
        &mut bob,
        |who, o, _| {
            let drop = who == "bob" && o.bytes.starts_with(b"SIP/2.0 200 ") && lost == 0;
            lost += usize::from(drop);
            drop
        },
    );
    assert_eq!(lost, 1);
    let oks: Vec<_> = b_sent
        .iter()
        .filter(|(_, l)| l.starts_with("SIP/2.0 200 "))
        .collect();
    assert_eq!(oks.len(), 2, "{b_sent:?}");
    assert_eq!(oks[1].0, Duration::from_millis(500), "{b_sent:?}");
    assert_eq!(
        a_sent.iter().filter(|(_, l)| l.starts_with("ACK ")).count(),
        1,
        "{a_sent:?}"
    );
    assert!(
        !events_of(&b_ev, b)
            .iter()
            .any(|e| matches!(e, CallEvent::Ended { .. } | CallEvent::Failed { .. })),
        "{b_ev:?}"
    );
    assert_eq!(alice.call_state(a), Some(CallState::Confirmed));
    assert_eq!(bob.call_state(b), Some(CallState::Confirmed));
}
