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

/// A request from Alice's address, written by hand: `method` with the branch `branch` and
/// CSeq number 1, outside any dialog.
fn by_hand(method: &str, branch: &str) -> sip_msg::Message {
    let text = format!(
        "{method} sip:bob@127.0.0.1:5064 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5062;branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.test>;tag=a1\r\n\
         To: <sip:bob@example.test>\r\n\
         Call-ID: review11-cancel@127.0.0.1\r\n\
         CSeq: 1 {method}\r\n\
         Content-Type: text/plain\r\n\
         Content-Length: 2\r\n\r\nhi"
    );
    let text = if method == "CANCEL" {
        text.replace(
            "Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi",
            "Content-Length: 0\r\n\r\n",
        )
    } else {
        text
    };
    sip_msg::Message::parse(text.as_bytes()).unwrap()
}

/// RFC 3261 §9.2: the UAS finds the transaction a CANCEL cancels "by taking the CANCEL
/// request, and then assuming that the request method is anything but CANCEL or ACK and
/// applying the transaction matching procedures of Section 17.2.3"; "Regardless of the
/// method of the original request, as long as the CANCEL matched an existing transaction,
/// the UAS answers the CANCEL request itself with a 200 (OK) response" (and 481 only when
/// none matched). Alice's MESSAGE is answered 200 and its server transaction waits out
/// Timer J; a CANCEL with its branch gets 200 and changes nothing (the MESSAGE has its final
/// response); a CANCEL naming no transaction still gets 481. Before the fix only an INVITE's
/// transaction was looked for: the first CANCEL got 481 too.
#[test]
fn a_cancel_matching_a_non_invite_transaction_gets_200() {
    let now = Instant::now();
    let mut bob = common::agent("bob", BOB, 42, false, "bob");
    let from = common::addr(ALICE);
    bob.handle_message(now, by_hand("MESSAGE", "z9hG4bKmsg1"), from);
    let (out, _) = drain(&mut bob);
    assert_eq!(common::of(&out, "SIP/2.0 200 ").len(), 1, "{out:?}");
    bob.handle_message(now, by_hand("CANCEL", "z9hG4bKmsg1"), from);
    let (out, _) = drain(&mut bob);
    let ok = common::of(&out, "SIP/2.0 200 ");
    assert_eq!((ok.len(), out.len()), (1, 1), "{out:?}");
    assert_eq!(
        common::msg(ok[0]).cseq().unwrap().method,
        sip_msg::Method::Cancel
    );
    // A CANCEL matching nothing: 481.
    bob.handle_message(now, by_hand("CANCEL", "z9hG4bKnone"), from);
    let (out, _) = drain(&mut bob);
    assert_eq!(common::of(&out, "SIP/2.0 481 ").len(), 1, "{out:?}");
}

/// RFC 3261 §9.2: the 200 to a CANCEL is built per §8.2.6, "noting that the To tag of the
/// response to the CANCEL and the To tag in the response to the original request SHOULD be
/// the same". Bob rings (180 with his tag); Alice hangs up and her CANCEL reaches Bob: the
/// 200 to the CANCEL carries the tag of the 180 and of the 487. Before the fix it carried a
/// fresh random tag, as every response made outside a call does.
#[test]
fn the_200_to_a_cancel_carries_the_to_tag_of_the_invites_responses() {
    let now = Instant::now();
    let (mut alice, a, mut bob, b) = calling(now, false, true);
    bob.ring(now, b);
    let (ringing, _) = drain(&mut bob);
    let r180 = common::of(&ringing, "SIP/2.0 180 ");
    assert_eq!(r180.len(), 1, "{ringing:?}");
    let tag = common::to_tag(&common::msg(r180[0]));
    deliver(&mut alice, now, BOB, &ringing);
    drain(&mut alice);
    alice.hangup(now, a);
    let (cancel, _) = drain(&mut alice);
    assert_eq!(common::of(&cancel, "CANCEL ").len(), 1, "{cancel:?}");
    deliver(&mut bob, now, ALICE, &cancel);
    let (out, _) = drain(&mut bob);
    let tags = |prefix: &str, method: sip_msg::Method| -> Vec<String> {
        common::of(&out, prefix)
            .iter()
            .map(|o| common::msg(o))
            .filter(|m| m.cseq().unwrap().method == method)
            .map(|m| common::to_tag(&m))
            .collect()
    };
    assert_eq!(
        tags("SIP/2.0 487 ", sip_msg::Method::Invite),
        std::slice::from_ref(&tag),
        "{out:?}"
    );
    assert_eq!(
        tags("SIP/2.0 200 ", sip_msg::Method::Cancel),
        [tag],
        "{out:?}"
    );
}

/// Checked correct (no defect): RFC 3261 §17's timer values on a reliable transport. Client
/// INVITE: no Timer A, Timer B 64·T1, Timer D zero (§17.1.1.2); client non-INVITE: no Timer
/// E, Timer F 64·T1, Timer K zero (§17.1.2.2); server INVITE: no Timer G, Timer H 64·T1,
/// Timer I zero (§17.2.1); server non-INVITE: Timer J zero (§17.2.2); RFC 6026's Timers L
/// and M 64·T1 on every transport (§8.4, §8.7).
#[test]
fn reliable_transport_timer_values() {
    use sip_proto::timer::{Timer, TimerConfig};
    use sip_proto::transaction::{ClientTransaction, ServerTransaction, State, TxnEvent};
    let now = Instant::now();
    let c = TimerConfig::default();
    let t64 = now + Duration::from_secs(32);
    let invite = by_hand("INVITE", "z9hG4bKrel1");
    let message = by_hand("MESSAGE", "z9hG4bKrel2");
    let resp =
        |req: &sip_msg::Message, code| sip_msg::Message::response_to(req, code, "X", Some("t1"));
    // Client INVITE: the only deadline is Timer B's; a 486 ends it at once (D = 0).
    let mut t = ClientTransaction::new(now, &invite, true, c).unwrap();
    assert_eq!(t.poll_timeout(), Some(t64));
    t.handle_timeout(now + Duration::from_secs(1));
    assert_eq!(t.retransmissions(), 0);
    t.handle_response(now, &resp(&invite, 486));
    assert_eq!(t.state(), State::Completed);
    assert_eq!(t.poll_timeout(), Some(now));
    t.handle_timeout(now);
    assert_eq!(t.state(), State::Terminated);
    // Client INVITE, 2xx: Accepted for 64·T1 (Timer M).
    let mut t = ClientTransaction::new(now, &invite, true, c).unwrap();
    t.handle_response(now, &resp(&invite, 200));
    assert_eq!((t.state(), t.poll_timeout()), (State::Accepted, Some(t64)));
    // Client non-INVITE: Timer F only; K = 0.
    let mut t = ClientTransaction::new(now, &message, true, c).unwrap();
    assert_eq!(t.poll_timeout(), Some(t64));
    t.handle_response(now, &resp(&message, 200));
    assert_eq!((t.state(), t.poll_timeout()), (State::Completed, Some(now)));
    // Server INVITE, non-2xx: no Timer G, Timer H at 64·T1; the ACK: Confirmed, I = 0.
    let mut s = ServerTransaction::new(&invite, true, c).unwrap();
    s.send_response(now, &resp(&invite, 486)).unwrap();
    assert_eq!(s.poll_timeout(), Some(t64));
    let ack = by_hand("ACK", "z9hG4bKrel1");
    s.handle_request(now, &ack);
    assert_eq!((s.state(), s.poll_timeout()), (State::Confirmed, Some(now)));
    // Server INVITE, non-2xx, no ACK: Timer H reports the failure, nothing was resent.
    let mut s = ServerTransaction::new(&invite, true, c).unwrap();
    s.send_response(now, &resp(&invite, 486)).unwrap();
    s.handle_timeout(t64);
    let ev: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    assert!(
        ev.iter().any(|e| matches!(e, TxnEvent::Timeout(Timer::H))),
        "{ev:?}"
    );
    assert!(
        !ev.iter()
            .any(|e| matches!(e, TxnEvent::Retransmitted { .. })),
        "{ev:?}"
    );
    // Server INVITE, 2xx: Accepted for 64·T1 (Timer L).
    let mut s = ServerTransaction::new(&invite, true, c).unwrap();
    s.send_response(now, &resp(&invite, 200)).unwrap();
    assert_eq!((s.state(), s.poll_timeout()), (State::Accepted, Some(t64)));
    // Server non-INVITE: J = 0.
    let mut s = ServerTransaction::new(&message, true, c).unwrap();
    s.send_response(now, &resp(&message, 200)).unwrap();
    assert_eq!((s.state(), s.poll_timeout()), (State::Completed, Some(now)));
}
