//! Requests that cross inside a dialog: re-INVITE and UPDATE glare (RFC 3261 §14.1, §14.2;
//! RFC 3311 §5.1, §5.2), BYE while a re-INVITE is pending (§15), CANCEL of a re-INVITE
//! (§9.2), OPTIONS inside a dialog (§11). Alice called Bob; both are real agents on a
//! virtual clock, the messages delivered between them through the public API.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_msg::{Message, Method, Uri};
use sip_proto::ua::{CallEvent, CallId, CallState, Outgoing, UaEvent, UserAgent};

mod common;
use common::{ALICE, BOB, deliver, drain, incoming, of};

fn sdp(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

/// Alice and Bob in a confirmed call, and what they sent and reported on the way.
struct Pair {
    alice: UserAgent,
    bob: UserAgent,
    a: CallId,
    b: CallId,
    start: Instant,
    now: Instant,
    /// (when, from Alice, first line, body) of every message sent, in order.
    log: Vec<(Duration, bool, String, String)>,
    /// (from Alice, event) of every call event reported.
    events: Vec<(bool, CallEvent)>,
}

fn first_line(o: &Outgoing) -> String {
    let text = String::from_utf8_lossy(&o.bytes);
    text.lines().next().unwrap_or("").to_owned()
}

impl Pair {
    fn new() -> Self {
        let now = Instant::now();
        let mut alice = common::agent("alice", ALICE, 11, false, "glare");
        let mut bob = common::agent("bob", BOB, 12, false, "glare");
        let (a, invite) = common::call_bob(&mut alice, now);
        let b = incoming(&mut bob, now, &invite);
        bob.answer(now, b, Some(sdp("v=0 b\r\n")));
        let mut p = Self {
            alice,
            bob,
            a,
            b,
            start: now,
            now,
            log: Vec::new(),
            events: Vec::new(),
        };
        p.settle();
        assert_eq!(p.alice.call_state(a), Some(CallState::Confirmed));
        assert_eq!(p.bob.call_state(b), Some(CallState::Confirmed));
        p.log.clear();
        p.events.clear();
        p
    }

    /// What `alice` (or Bob) has to send, logged; events logged.
    fn take(&mut self, from_alice: bool) -> Vec<Outgoing> {
        let ua = if from_alice {
            &mut self.alice
        } else {
            &mut self.bob
        };
        let (out, ev) = drain(ua);
        let at = self.now - self.start;
        for o in &out {
            let text = String::from_utf8_lossy(&o.bytes);
            let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            self.log
                .push((at, from_alice, first_line(o), body.to_owned()));
        }
        for e in ev {
            if let UaEvent::Call(_, e) = e {
                self.events.push((from_alice, e));
            }
        }
        out
    }

    /// Delivers everything both have to send until neither has anything more.
    fn settle(&mut self) {
        loop {
            let a = self.take(true);
            let b = self.take(false);
            if a.is_empty() && b.is_empty() {
                return;
            }
            deliver(&mut self.bob, self.now, ALICE, &a);
            deliver(&mut self.alice, self.now, BOB, &b);
        }
    }

    /// Runs the clock in 10 ms steps for `d`, firing both agents' timers and delivering.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(10);
            for ua in [&mut self.alice, &mut self.bob] {
                if ua.poll_timeout().is_some_and(|t| t <= self.now) {
                    ua.handle_timeout(self.now);
                }
            }
            self.settle();
        }
    }

    /// The times the requests (or responses) whose first line starts with `prefix` were sent
    /// by Alice (`from_alice`) or Bob.
    fn sent(&self, from_alice: bool, prefix: &str) -> Vec<Duration> {
        self.log
            .iter()
            .filter(|(_, a, l, _)| *a == from_alice && l.starts_with(prefix))
            .map(|(t, _, _, _)| *t)
            .collect()
    }

    /// The bodies of what [`Pair::sent`] picks.
    fn bodies(&self, from_alice: bool, prefix: &str) -> Vec<&str> {
        self.log
            .iter()
            .filter(|(_, a, l, _)| *a == from_alice && l.starts_with(prefix))
            .map(|(_, _, _, b)| b.as_str())
            .collect()
    }

    /// The events Alice (`from_alice`) or Bob reported that `f` picks.
    fn count(&self, from_alice: bool, f: impl Fn(&CallEvent) -> bool) -> usize {
        self.events
            .iter()
            .filter(|(a, e)| *a == from_alice && f(e))
            .count()
    }
}

impl Pair {
    /// Alice (`from_alice`) or Bob reported `n` events that `f` picks.
    fn expect(&self, n: usize, from_alice: bool, f: impl Fn(&CallEvent) -> bool) {
        assert_eq!(self.count(from_alice, f), n, "{:?}", self.events);
    }

    /// Both have sent a request that crosses the other's: each takes the other's and answers
    /// it 491 (not 200); the 491s are delivered. Nothing is reported yet.
    fn cross_with_491(&mut self) {
        let a = self.take(true);
        let b = self.take(false);
        deliver(&mut self.alice, self.now, BOB, &b);
        deliver(&mut self.bob, self.now, ALICE, &a);
        let a = self.take(true);
        let b = self.take(false);
        for out in [&a, &b] {
            assert_eq!(of(out, "SIP/2.0 491 ").len(), 1, "{out:?}");
            assert!(of(out, "SIP/2.0 200 ").is_empty(), "{out:?}");
        }
        deliver(&mut self.alice, self.now, BOB, &b);
        deliver(&mut self.bob, self.now, ALICE, &a);
        self.settle();
        assert!(self.events.is_empty(), "{:?}", self.events);
    }

    /// Each sent its request (`prefix`) twice, the second time after RFC 3261 §14.1's wait:
    /// 2.1–4 s for Alice (she owns the Call-ID), 0–2 s for Bob (a 10 ms step of slack).
    fn retried_after_their_timers(&self, prefix: &str) {
        let (ta, tb) = (self.sent(true, prefix), self.sent(false, prefix));
        assert_eq!((ta.len(), tb.len()), (2, 2), "{:?}", self.log);
        assert!(
            ta[1] >= Duration::from_millis(2100) && ta[1] <= Duration::from_millis(4010),
            "Alice (owns the Call-ID) retried at {:?}",
            ta[1]
        );
        assert!(
            tb[1] <= Duration::from_millis(2010),
            "Bob retried at {:?}",
            tb[1]
        );
    }

    /// Alice (`from_alice`) or Bob reported one outcome of her re-INVITE or UPDATE: `method`'s
    /// 200, and no other.
    fn one_outcome(&self, from_alice: bool, method: Method) {
        assert_eq!(
            self.count(from_alice, modified(method, 200)),
            1,
            "{:?}",
            self.events
        );
        assert_eq!(
            self.count(from_alice, |e| matches!(e, CallEvent::Modified { .. })),
            1,
            "{:?}",
            self.events
        );
    }
}

fn modified(method: Method, code: u16) -> impl Fn(&CallEvent) -> bool {
    move |e| matches!(e, CallEvent::Modified { method: m, code: c, .. } if *m == method && *c == code)
}

/// RFC 3261 §14.2: a UAS that receives a re-INVITE while its own re-INVITE is in progress in
/// the same dialog answers 491; §14.1: the UAC that gets 491 tries again after a random
/// 2.1–4 s when it owns the Call-ID (Alice, the caller), 0–2 s when not (Bob). Before: each
/// answered the other's re-INVITE 200 while its own was pending (two offers crossing).
#[test]
fn crossing_reinvites_get_491_and_are_each_retried_after_their_timer() {
    let mut p = Pair::new();
    assert!(p.alice.reinvite(p.now, p.a, sdp("v=0 a hold\r\n")));
    assert!(p.bob.reinvite(p.now, p.b, sdp("v=0 b hold\r\n")));
    p.cross_with_491();
    // Each 491 was ACKed by its transaction.
    assert_eq!(p.sent(true, "ACK ").len(), 1, "{:?}", p.log);
    assert_eq!(p.sent(false, "ACK ").len(), 1, "{:?}", p.log);
    p.run(Duration::from_secs(5));
    assert_eq!(p.bodies(true, "INVITE "), ["v=0 a hold\r\n"; 2]);
    assert_eq!(p.bodies(false, "INVITE "), ["v=0 b hold\r\n"; 2]);
    p.retried_after_their_timers("INVITE ");
    // Each retry was answered 200 and ACKed; each side reports its one outcome and the
    // other's one re-INVITE.
    for alice in [true, false] {
        p.one_outcome(alice, Method::Invite);
        p.expect(1, alice, |e| matches!(e, CallEvent::Reinvited { .. }));
    }
    assert_eq!(p.alice.call_state(p.a), Some(CallState::Confirmed));
    assert_eq!(p.bob.call_state(p.b), Some(CallState::Confirmed));
}

/// RFC 3311 §5.2: an UPDATE with an offer received while our own offer (UPDATE or re-INVITE)
/// waits for its answer is refused with 491; §5.1: the UAC retries after the §14.1 timer. An
/// UPDATE without offer (a session refresh) is no glare: answered 200.
#[test]
fn crossing_update_offers_get_491_and_are_retried() {
    let mut p = Pair::new();
    assert!(p.alice.update(p.now, p.a, Some(sdp("v=0 a2\r\n"))));
    assert!(p.bob.update(p.now, p.b, Some(sdp("v=0 b2\r\n"))));
    p.cross_with_491();
    p.run(Duration::from_secs(5));
    p.retried_after_their_timers("UPDATE ");
    for alice in [true, false] {
        p.one_outcome(alice, Method::Update);
    }
    // Each retried UPDATE carries the same offer.
    assert_eq!(p.bodies(true, "UPDATE "), ["v=0 a2\r\n"; 2]);
    assert_eq!(p.bodies(false, "UPDATE "), ["v=0 b2\r\n"; 2]);

    // A re-INVITE of Alice's pending, an UPDATE offer of Bob's: 491 to Bob; his UPDATE
    // without offer meanwhile: 200.
    let mut p = Pair::new();
    assert!(p.alice.reinvite(p.now, p.a, sdp("v=0 a3\r\n")));
    let a = p.take(true);
    assert!(p.bob.update(p.now, p.b, None));
    let b = p.take(false);
    deliver(&mut p.alice, p.now, BOB, &b);
    let reply = p.take(true);
    assert_eq!(of(&reply, "SIP/2.0 200 ").len(), 1, "{reply:?}");
    deliver(&mut p.bob, p.now, ALICE, &reply);
    assert!(p.bob.update(p.now, p.b, Some(sdp("v=0 b3\r\n"))));
    let b = p.take(false);
    deliver(&mut p.alice, p.now, BOB, &b);
    let reply = p.take(true);
    assert_eq!(of(&reply, "SIP/2.0 491 ").len(), 1, "{reply:?}");
    deliver(&mut p.bob, p.now, ALICE, &reply);
    deliver(&mut p.bob, p.now, ALICE, &a);
    p.settle();
    p.run(Duration::from_secs(3));
    p.expect(1, true, modified(Method::Invite, 200));
    p.expect(2, false, modified(Method::Update, 200));
    p.expect(0, false, modified(Method::Update, 491));
}

/// §15: Alice hangs up while her re-INVITE waits for its answer. Bob answers both; Alice
/// ACKs the re-INVITE's 2xx (§13.2.2.4) and her call ends with her BYE's 200.
#[test]
fn our_bye_while_our_reinvite_is_pending() {
    let mut p = Pair::new();
    assert!(p.alice.reinvite(p.now, p.a, sdp("v=0 a4\r\n")));
    p.alice.hangup(p.now, p.a);
    p.settle();
    assert_eq!(p.sent(true, "ACK ").len(), 1, "{:?}", p.log);
    assert_eq!(p.sent(true, "BYE ").len(), 1, "{:?}", p.log);
    assert_eq!(p.alice.call_state(p.a), Some(CallState::Terminated));
    assert_eq!(p.bob.call_state(p.b), Some(CallState::Terminated));
    p.expect(1, true, |e| {
        matches!(
            e,
            CallEvent::Ended {
                by_remote: false,
                code: 200
            }
        )
    });
}

/// §15.1.2: Bob hangs up while Alice's re-INVITE is on its way to him. Alice takes the BYE
/// (200, her call ends); Bob, whose BYE is out, does not take the re-INVITE into a session
/// he has ended: 481. Alice's call reports its end once, and nothing after.
#[test]
fn their_bye_crossing_our_reinvite() {
    let mut p = Pair::new();
    assert!(p.alice.reinvite(p.now, p.a, sdp("v=0 a5\r\n")));
    let a = p.take(true);
    p.bob.hangup(p.now, p.b);
    let b = p.take(false);
    deliver(&mut p.alice, p.now, BOB, &b);
    deliver(&mut p.bob, p.now, ALICE, &a);
    let a = p.take(true);
    let b = p.take(false);
    assert_eq!(of(&a, "SIP/2.0 200 ").len(), 1, "{a:?}");
    assert_eq!(of(&b, "SIP/2.0 481 ").len(), 1, "{b:?}");
    assert!(
        p.count(false, |e| matches!(e, CallEvent::Reinvited { .. })) == 0,
        "{:?}",
        p.events
    );
    deliver(&mut p.alice, p.now, BOB, &b);
    deliver(&mut p.bob, p.now, ALICE, &a);
    p.settle();
    p.run(Duration::from_secs(1));
    assert_eq!(p.alice.call_state(p.a), Some(CallState::Terminated));
    assert_eq!(p.bob.call_state(p.b), Some(CallState::Terminated));
    p.expect(1, true, |e| matches!(e, CallEvent::Ended { .. }));
    p.expect(1, false, |e| {
        matches!(
            e,
            CallEvent::Ended {
                by_remote: false,
                code: 200
            }
        )
    });
}

/// `req` (an in-dialog request Alice sent) as another method, with its CSeq number.
fn as_method(req: &Outgoing, from: &str, to: &str) -> Message {
    let text = String::from_utf8(req.bytes.to_vec()).unwrap();
    let text = text.replacen(from, to, 1);
    let text = text.replacen(
        &format!(" {}\r\n", from.trim()),
        &format!(" {}\r\n", to.trim()),
        1,
    );
    Message::parse(text.as_bytes()).unwrap()
}

/// §9.2: a CANCEL of a re-INVITE already answered has no effect (200 to the CANCEL, the
/// call goes on); a CANCEL matching no transaction gets 481.
#[test]
fn a_cancel_of_an_answered_reinvite_changes_nothing() {
    let mut p = Pair::new();
    assert!(p.alice.reinvite(p.now, p.a, sdp("v=0 a6\r\n")));
    let a = p.take(true);
    let reinvite = of(&a, "INVITE ")[0].clone();
    deliver(&mut p.bob, p.now, ALICE, &a);
    p.settle();
    // The CANCEL: the re-INVITE's Request-URI, Via, From, To, Call-ID, CSeq number.
    let text = String::from_utf8(reinvite.bytes.to_vec()).unwrap();
    let head = text.split("\r\n\r\n").next().unwrap();
    let mut cancel = head.replacen("INVITE ", "CANCEL ", 1);
    cancel = cancel.replace(" INVITE\r\n", " CANCEL\r\n");
    let cancel: String = cancel
        .split("\r\n")
        .filter(|l| !l.starts_with("Content-") && !l.starts_with("Contact"))
        .map(|l| format!("{l}\r\n"))
        .collect::<String>()
        + "Content-Length: 0\r\n\r\n";
    p.bob.handle_message(
        p.now,
        Message::parse(cancel.as_bytes()).unwrap(),
        common::addr(ALICE),
    );
    let b = p.take(false);
    assert_eq!(of(&b, "SIP/2.0 200 ").len(), 1, "{b:?}");
    assert!(of(&b, "SIP/2.0 487 ").is_empty(), "{b:?}");
    assert_eq!(p.bob.call_state(p.b), Some(CallState::Confirmed));
    assert!(
        !p.events
            .iter()
            .any(|(_, e)| matches!(e, CallEvent::Failed { .. } | CallEvent::Ended { .. })),
        "{:?}",
        p.events
    );
    // Another branch: no such transaction.
    let stray = cancel.replacen(";branch=z9hG4bK", ";branch=z9hG4bKx", 1);
    p.bob.handle_message(
        p.now,
        Message::parse(stray.as_bytes()).unwrap(),
        common::addr(ALICE),
    );
    let b = p.take(false);
    assert_eq!(of(&b, "SIP/2.0 481 ").len(), 1, "{b:?}");
    assert_eq!(p.bob.call_state(p.b), Some(CallState::Confirmed));
}

/// §11: OPTIONS inside a dialog is answered 200 with Allow; the call is untouched and the
/// dialog's CSeq goes on (the next request of the peer, with a higher number, is taken).
#[test]
fn options_inside_a_dialog() {
    let mut p = Pair::new();
    assert!(
        p.alice
            .info(p.now, p.a, "application/dtmf-relay", sdp("Signal=1\r\n"))
    );
    let a = p.take(true);
    let options = as_method(&a[0], "INFO ", "OPTIONS ");
    assert_eq!(options.method(), Some(Method::Options));
    p.bob.handle_message(p.now, options, common::addr(ALICE));
    let b = p.take(false);
    let ok = of(&b, "SIP/2.0 200 ");
    assert_eq!(ok.len(), 1, "{b:?}");
    let ok = Message::parse(&ok[0].bytes).unwrap();
    assert!(ok.headers.value(&sip_msg::HeaderName::Allow).is_some());
    assert!(p.events.is_empty(), "{:?}", p.events);
    assert!(
        p.alice
            .info(p.now, p.a, "application/dtmf-relay", sdp("Signal=2\r\n"))
    );
    p.settle();
    p.expect(1, false, |e| matches!(e, CallEvent::Info { .. }));
    assert_eq!(p.bob.call_state(p.b), Some(CallState::Confirmed));
}

/// §14.2: an INVITE inside the dialog while the first INVITE is still in progress. Its UAC
/// (Alice, ringing) answers 491; its UAS (Bob, who has not answered yet) answers 500 with a
/// Retry-After of 0–10 s. Neither takes it as a re-INVITE. (Forged from each one's UPDATE
/// in the early dialog: the API sends no INVITE there.)
#[test]
fn an_invite_crossing_the_first_one() {
    let now = Instant::now();
    let mut alice = common::agent("alice", ALICE, 21, false, "glare");
    let mut bob = common::agent("bob", BOB, 22, false, "glare");
    let a = alice.call(
        now,
        Uri::parse("sip:bob@127.0.0.1:5064").unwrap(),
        Some(sdp("v=0 a\r\n")),
    );
    let (invite, _) = drain(&mut alice);
    let b = incoming(&mut bob, now, &invite);
    bob.ring(now, b);
    let (ringing, _) = drain(&mut bob);
    deliver(&mut alice, now, BOB, &ringing);
    drain(&mut alice);
    assert_eq!(alice.call_state(a), Some(CallState::Early));
    for (from, to, code) in [(true, false, 500), (false, true, 491)] {
        let (sender, call) = if from { (&mut alice, a) } else { (&mut bob, b) };
        assert!(sender.update(now, call, None));
        let (out, _) = drain(sender);
        let forged = as_method(&out[0], "UPDATE ", "INVITE ");
        assert_eq!(forged.method(), Some(Method::Invite));
        let receiver = if to { &mut alice } else { &mut bob };
        receiver.handle_message(now, forged, common::addr(if from { ALICE } else { BOB }));
        let (reply, ev) = drain(receiver);
        let r = of(&reply, &format!("SIP/2.0 {code} "));
        assert_eq!((r.len(), reply.len()), (1, 1), "{reply:?}");
        if code == 500 {
            let m = Message::parse(&r[0].bytes).unwrap();
            let after: u32 = m
                .headers
                .value(&sip_msg::HeaderName::RetryAfter)
                .unwrap()
                .parse()
                .unwrap();
            assert!(after <= 10);
        }
        assert!(
            !ev.iter()
                .any(|e| matches!(e, UaEvent::Call(_, CallEvent::Reinvited { .. }))),
            "{ev:?}"
        );
    }
    assert_eq!(alice.call_state(a), Some(CallState::Early));
    assert_eq!(bob.call_state(b), Some(CallState::Early));
}

/// A re-INVITE refused with 491 and waiting for its §14.1 retry is replaced by a newer one
/// the application sends meanwhile (its offer is the one that counts): it is not sent again
/// on top of it. One outcome is reported.
#[test]
fn a_new_reinvite_replaces_one_waiting_after_491() {
    let mut p = Pair::new();
    assert!(p.alice.reinvite(p.now, p.a, sdp("v=0 a7\r\n")));
    assert!(p.bob.reinvite(p.now, p.b, sdp("v=0 b7\r\n")));
    p.settle();
    assert_eq!(p.sent(true, "SIP/2.0 491 ").len(), 1, "{:?}", p.log);
    // Bob's retry comes within 2 s and is answered; Alice sends a new offer before hers.
    p.run(Duration::from_millis(2050));
    assert!(p.alice.reinvite(p.now, p.a, sdp("v=0 a8\r\n")));
    p.settle();
    p.run(Duration::from_secs(3));
    assert_eq!(
        p.bodies(true, "INVITE "),
        ["v=0 a7\r\n", "v=0 a8\r\n"],
        "{:?}",
        p.log
    );
    p.one_outcome(true, Method::Invite);
    p.one_outcome(false, Method::Invite);
}

/// RFC 3264 §4 (one offer at a time): Alice's re-INVITE refused with 491 waits for its
/// §14.1 retry when she sends a new offer in an UPDATE, which Bob takes (his own re-INVITE
/// waits too). The waiting re-INVITE's offer is older than the one Bob now has: it is not
/// sent on top of it. (Before: replaced only by a request of the same method, so the stale
/// re-INVITE went again 2.1–4 s later.)
#[test]
fn a_new_offer_in_an_update_replaces_a_waiting_reinvite() {
    let mut p = Pair::new();
    assert!(p.alice.reinvite(p.now, p.a, sdp("v=0 a1\r\n")));
    assert!(p.bob.reinvite(p.now, p.b, sdp("v=0 b1\r\n")));
    p.cross_with_491();
    assert!(p.alice.update(p.now, p.a, Some(sdp("v=0 a2\r\n"))));
    p.settle();
    p.run(Duration::from_secs(5));
    assert_eq!(p.bodies(true, "INVITE "), ["v=0 a1\r\n"], "{:?}", p.log);
    assert_eq!(p.bodies(true, "UPDATE "), ["v=0 a2\r\n"], "{:?}", p.log);
    p.one_outcome(true, Method::Update);
    p.one_outcome(false, Method::Invite);
}

/// RFC 3264 §8: "the version in the origin field MUST increment by one from the previous
/// SDP". Alice's hold (version 2) and Bob's cross; Bob's goes again first (0–2 s) and Alice
/// answers it (her description, version 3); her own hold goes again after that, so it
/// takes version 4 (it went with its stale version 2, below the answer she had just given).
#[test]
fn a_reinvite_retried_after_our_answer_takes_the_next_version() {
    let mut p = Pair::new();
    let hold = |who: &str, v: u32, port: u16| {
        Bytes::from(format!(
            "v=0\r\no={who} 1 {v} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0\r\na=sendonly\r\n"
        ))
    };
    assert!(p.alice.reinvite(p.now, p.a, hold("alice", 2, 4000)));
    assert!(p.bob.reinvite(p.now, p.b, hold("bob", 2, 5000)));
    p.cross_with_491();
    p.run(Duration::from_secs(5));
    let alice_sent: Vec<String> = p
        .log
        .iter()
        .filter(|(_, a, l, _)| *a && (l.starts_with("INVITE ") || l.starts_with("SIP/2.0 200")))
        .map(|(_, _, l, b)| format!("{l} {}", b.lines().nth(1).unwrap_or("")))
        .collect();
    let hold_v2 = "INVITE sip:bob@127.0.0.1:5064 SIP/2.0 o=alice 1 2 IN IP4 127.0.0.1";
    assert_eq!(alice_sent[0], hold_v2, "{alice_sent:?}");
    assert_eq!(
        alice_sent[1..],
        [
            "SIP/2.0 200 OK o=alice 1 3 IN IP4 127.0.0.1".to_owned(),
            hold_v2.replace(" 1 2 IN", " 1 4 IN"),
        ],
        "{alice_sent:?}"
    );
    assert_eq!(
        p.alice.local_sdp(p.a).map(|s| s.to_vec()),
        Some(hold("alice", 4, 4000).to_vec())
    );
}
