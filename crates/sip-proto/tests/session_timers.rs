//! RFC 4028 session timers between two agents on a virtual clock: the caller's INVITE asks
//! (Supported: timer, Session-Expires, Min-SE), the callee's 2xx agrees (§9), a 422 is
//! answered once with its Min-SE (§7.4, §8.1), the refresher refreshes at half the interval
//! (§10: UPDATE without a body when the peer allows it, else a re-INVITE with the same
//! description), the other side ends the call with BYE when no refresh comes before the
//! interval minus min(32 s, a third) (§10), and every refresh starts the interval again.
//! Messages go through the public API; a hook may drop or rewrite them on the wire.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_msg::typed::{MinSe, SessionExpires};
use sip_msg::{Message, Uri};
use sip_proto::ua::{
    CallEvent, CallId, CallState, Refresher, SessionTimerConfig, UaConfig, UaEvent, UserAgent,
};

mod common;
use common::{ALICE, BOB, addr};

const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
const ANSWER: &str = "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n";

fn agent(user: &str, port: u16, seed: u64, timers: Option<SessionTimerConfig>) -> UserAgent {
    UserAgent::new(UaConfig {
        session_timer: timers,
        codecs: None,
        ..common::config(user, port, seed, false, "timers")
    })
}

fn timers(expires: u32, min_se: Option<u32>, refresher: Refresher) -> Option<SessionTimerConfig> {
    Some(SessionTimerConfig {
        expires,
        min_se,
        refresher,
    })
}

/// What the wire does with a message: (sent by Alice, its text) → the text delivered, or
/// `None` (lost).
type Hook = Box<dyn FnMut(bool, &str) -> Option<String>>;

/// Alice calls Bob; every message takes 10 ms.
struct Net {
    alice: UserAgent,
    bob: UserAgent,
    start: Instant,
    now: Instant,
    /// (deliver at, to Bob, text).
    wire: Vec<(Instant, bool, String)>,
    /// (when, from Alice, text as sent) of every message.
    log: Vec<(Duration, bool, String)>,
    /// (when, from Alice, call event).
    events: Vec<(Duration, bool, CallEvent)>,
    hook: Hook,
    a: Option<CallId>,
    b: Option<CallId>,
}

impl Net {
    fn new(alice: Option<SessionTimerConfig>, bob: Option<SessionTimerConfig>) -> Self {
        let now = Instant::now();
        Self {
            alice: agent("alice", ALICE, 41, alice),
            bob: agent("bob", BOB, 42, bob),
            start: now,
            now,
            wire: Vec::new(),
            log: Vec::new(),
            events: Vec::new(),
            hook: Box::new(|_, t| Some(t.to_owned())),
            a: None,
            b: None,
        }
    }

    /// Both with 90 s timers; Alice asks to refresh (`uac`), or asks Bob to (`uas`).
    fn of_90s(refresher: Refresher) -> Self {
        Self::new(
            timers(90, None, refresher),
            timers(90, None, Refresher::Auto),
        )
    }

    /// Alice asks for 90 s, Bob's Min-SE is 100 s: her INVITE is let through asking for 100
    /// s, her first UPDATE goes asking for 90 s (Bob answers it 422).
    fn first_update_too_short() -> Self {
        let mut net = Self::new(
            timers(90, None, Refresher::Uac),
            timers(90, Some(100), Refresher::Auto),
        );
        let mut first = true;
        net.hook = Box::new(move |from_alice, t| {
            if from_alice && t.starts_with("INVITE ") {
                return Some(t.replace("Session-Expires: 90", "Session-Expires: 100"));
            }
            if from_alice && t.starts_with("UPDATE ") && first {
                first = false;
                return Some(t.replace("Session-Expires: 100", "Session-Expires: 90"));
            }
            Some(t.to_owned())
        });
        net
    }

    /// [`Net::of_90s`], Alice refreshing; Bob's 2xx does not list UPDATE in its Allow: her
    /// refreshes are re-INVITEs.
    fn without_update() -> Self {
        let mut net = Self::of_90s(Refresher::Uac);
        net.hook = Box::new(|from_alice, t| {
            Some(if !from_alice && t.starts_with("SIP/2.0 200 ") {
                t.replace(", UPDATE", "")
            } else {
                t.to_owned()
            })
        });
        net
    }

    /// Bob's UPDATEs (his refreshes) are lost on the way.
    fn losing_bobs_updates(mut self) -> Self {
        self.hook = Box::new(|from_alice, t| {
            (from_alice || !t.starts_with("UPDATE ")).then(|| t.to_owned())
        });
        self
    }

    /// Alice calls, Bob answers at once when the call reaches him: the call confirmed.
    fn call(&mut self) {
        let target = Uri::parse("sip:bob@127.0.0.1:5064").unwrap();
        self.a = Some(self.alice.call(
            self.now,
            target,
            Some(Bytes::from_static(OFFER.as_bytes())),
        ));
        self.run(Duration::from_millis(200));
    }

    fn collect(&mut self) {
        let at = self.now - self.start;
        for from_alice in [true, false] {
            let ua = if from_alice {
                &mut self.alice
            } else {
                &mut self.bob
            };
            let out: Vec<_> = std::iter::from_fn(|| ua.poll_transmit()).collect();
            let ev: Vec<_> = std::iter::from_fn(|| ua.poll_event()).collect();
            for o in out {
                let text = String::from_utf8(o.bytes.to_vec()).unwrap();
                self.log.push((at, from_alice, text.clone()));
                if let Some(t) = (self.hook)(from_alice, &text) {
                    self.wire
                        .push((self.now + Duration::from_millis(10), from_alice, t));
                }
            }
            for e in ev {
                if let UaEvent::Call(id, ce) = e {
                    if !from_alice && matches!(ce, CallEvent::Incoming { .. }) {
                        self.b = Some(id);
                        self.bob
                            .answer(self.now, id, Some(Bytes::from_static(ANSWER.as_bytes())));
                    }
                    self.events.push((at, from_alice, ce));
                }
            }
        }
    }

    /// Runs `d` on the virtual clock.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.collect();
            // Bob's answer queues more.
            self.collect();
            let next = [
                self.wire.iter().map(|w| w.0).min(),
                self.alice.poll_timeout(),
                self.bob.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|n| *n <= end) else {
                break;
            };
            self.now = next.max(self.now);
            let (due, rest): (Vec<_>, Vec<_>) = self.wire.drain(..).partition(|w| w.0 <= self.now);
            self.wire = rest;
            for (_, to_bob, text) in due {
                let m = Message::parse(text.as_bytes()).unwrap();
                if to_bob {
                    self.bob.handle_message(self.now, m, addr(ALICE));
                } else {
                    self.alice.handle_message(self.now, m, addr(BOB));
                }
            }
            self.alice.handle_timeout(self.now);
            self.bob.handle_timeout(self.now);
        }
        self.now = end;
    }

    /// The messages sent (by Alice when `from_alice`) whose first line starts with `prefix`:
    /// (when, parsed).
    fn sent(&self, from_alice: bool, prefix: &str) -> Vec<(Duration, Message)> {
        self.log
            .iter()
            .filter(|(_, a, t)| *a == from_alice && t.starts_with(prefix))
            .map(|(at, _, t)| (*at, Message::parse(t.as_bytes()).unwrap()))
            .collect()
    }

    fn events_of(&self, alice: bool) -> Vec<(Duration, &CallEvent)> {
        self.events
            .iter()
            .filter(|(_, a, _)| *a == alice)
            .map(|(at, _, e)| (*at, e))
            .collect()
    }

    /// When Alice's call was answered (the 2xx she received).
    fn answered_at(&self) -> Duration {
        self.events_of(true)
            .iter()
            .find(|(_, e)| matches!(e, CallEvent::Answered { .. }))
            .map(|(at, _)| *at)
            .expect("the call was answered")
    }
}

fn session_expires(m: &Message) -> Option<(u32, Option<String>)> {
    let se = m.headers.typed::<SessionExpires>()?.ok()?;
    Some((se.seconds, se.refresher()))
}

fn header<'a>(m: &'a Message, name: &str) -> Vec<&'a str> {
    m.headers
        .iter()
        .filter(|h| h.name().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value())
        .collect()
}

fn refreshes(net: &Net, alice: bool, by_us: bool) -> Vec<Duration> {
    net.events_of(alice)
        .iter()
        .filter(|(_, e)| matches!(e, CallEvent::SessionRefreshed { by_us: b, .. } if *b == by_us))
        .map(|(at, _)| *at)
        .collect()
}

fn close(a: Duration, b: Duration) -> bool {
    a.abs_diff(b) <= Duration::from_millis(50)
}

#[test]
fn the_invite_asks_and_the_2xx_agrees_with_require_timer() {
    let mut net = Net::new(
        timers(1800, Some(120), Refresher::Uac),
        timers(1800, None, Refresher::Auto),
    );
    net.call();
    let (_, invite) = &net.sent(true, "INVITE ")[0];
    assert!(header(invite, "Supported")[0].contains("timer"), "{invite}");
    assert_eq!(session_expires(invite), Some((1800, Some("uac".into()))));
    assert_eq!(
        invite.headers.typed::<MinSe>().unwrap().unwrap().seconds,
        120
    );
    let (_, ok) = &net.sent(false, "SIP/2.0 200 ")[0];
    // §9: the request's refresher is kept; Require: timer since Alice supports timers.
    assert_eq!(session_expires(ok), Some((1800, Some("uac".into()))));
    assert!(header(ok, "Require").contains(&"timer"), "{ok}");
    assert_eq!(
        net.alice.call_state(net.a.unwrap()),
        Some(CallState::Confirmed)
    );
}

#[test]
fn timers_off_promise_nothing_and_answer_without_session_expires() {
    let mut net = Net::new(None, None);
    net.call();
    let (_, invite) = &net.sent(true, "INVITE ")[0];
    assert_eq!(header(invite, "Supported"), ["replaces"]);
    assert!(session_expires(invite).is_none());
    // A caller asking for a timer from a callee without them: a 2xx without Session-Expires,
    // so there is no session expiration (RFC 4028 §7.2) and nobody refreshes.
    let mut net = Net::new(timers(90, None, Refresher::Auto), None);
    net.call();
    let (_, ok) = &net.sent(false, "SIP/2.0 200 ")[0];
    assert!(session_expires(ok).is_none(), "{ok}");
    net.run(Duration::from_secs(300));
    assert!(net.sent(true, "UPDATE ").is_empty());
    assert!(net.sent(true, "BYE ").is_empty());
    assert!(net.sent(false, "BYE ").is_empty());
    assert_eq!(
        net.alice.call_state(net.a.unwrap()),
        Some(CallState::Confirmed)
    );
}

#[test]
fn the_callee_refreshes_when_the_caller_does_not_support_timers() {
    // §9: a caller without `timer` cannot refresh: the callee does (refresher=uas), and its
    // 2xx has no Require: timer.
    let mut net = Net::new(None, timers(90, None, Refresher::Uac));
    net.call();
    let (_, ok) = &net.sent(false, "SIP/2.0 200 ")[0];
    assert_eq!(session_expires(ok), Some((90, Some("uas".into()))));
    assert!(!header(ok, "Require").contains(&"timer"), "{ok}");
    net.run(Duration::from_secs(100));
    let refreshes = net.sent(false, "UPDATE ");
    assert_eq!(refreshes.len(), 2, "at 45 s and 90 s");
}

#[test]
fn a_422_is_answered_once_with_its_min_se() {
    // Bob's minimum is 120 s; Alice asks for 90 s.
    let mut net = Net::new(
        timers(90, None, Refresher::Auto),
        timers(1800, Some(120), Refresher::Auto),
    );
    net.call();
    let refused = net.sent(false, "SIP/2.0 422 ");
    assert_eq!(refused.len(), 1);
    assert_eq!(
        refused[0]
            .1
            .headers
            .typed::<MinSe>()
            .unwrap()
            .unwrap()
            .seconds,
        120,
        "§8.1: the 422 names our Min-SE"
    );
    let invites = net.sent(true, "INVITE ");
    assert_eq!(invites.len(), 2);
    let retry = &invites[1].1;
    assert_eq!(session_expires(retry), Some((120, None)));
    assert_eq!(
        retry.headers.typed::<MinSe>().unwrap().unwrap().seconds,
        120
    );
    assert_eq!(retry.cseq().unwrap().seq, 2);
    // The 422 is no outcome: the call goes on and is answered with 120 s.
    assert!(
        !net.events_of(true)
            .iter()
            .any(|(_, e)| matches!(e, CallEvent::Failed { .. }))
    );
    let (_, ok) = &net.sent(false, "SIP/2.0 200 ")[0];
    // Alice supports timers and names no refresher; Bob (auto) lets her refresh.
    assert_eq!(session_expires(ok), Some((120, Some("uac".into()))));
    assert_eq!(
        net.alice.call_state(net.a.unwrap()),
        Some(CallState::Confirmed)
    );
}

#[test]
fn a_second_422_fails_the_call() {
    let mut net = Net::new(
        timers(90, None, Refresher::Auto),
        timers(1800, Some(120), Refresher::Auto),
    );
    // The wire lowers every INVITE's interval to 90 again: Bob refuses both.
    net.hook = Box::new(|_, t| {
        Some(if t.starts_with("INVITE ") {
            t.replace("Session-Expires: 120", "Session-Expires: 90")
        } else {
            t.to_owned()
        })
    });
    net.call();
    assert_eq!(net.sent(true, "INVITE ").len(), 2, "retried once only");
    assert!(
        net.events_of(true)
            .iter()
            .any(|(_, e)| matches!(e, CallEvent::Failed { code: 422, .. }))
    );
}

#[test]
fn the_refresher_sends_a_bodiless_update_at_half_the_interval() {
    let mut net = Net::of_90s(Refresher::Uac);
    net.call();
    let answered = net.answered_at();
    net.run(Duration::from_secs(200));
    let updates = net.sent(true, "UPDATE ");
    assert_eq!(updates.len(), 4, "at 45, 90, 135 and 180 s");
    for (k, (at, u)) in updates.iter().enumerate() {
        // Each 2xx (20 ms later) starts the interval again.
        let due = answered
            + Duration::from_secs(45) * (k as u32 + 1)
            + Duration::from_millis(20) * k as u32;
        assert!(close(*at, due), "refresh {k} at {at:?}, due {due:?}");
        assert!(u.body().is_empty(), "no offer in a refresh UPDATE: {u}");
        assert_eq!(session_expires(u), Some((90, Some("uac".into()))));
        assert!(header(u, "Supported").contains(&"timer"));
    }
    let oks = net.sent(false, "SIP/2.0 200 ");
    let update_oks: Vec<_> = oks
        .iter()
        .filter(|(_, m)| m.cseq().unwrap().method.as_str() == "UPDATE")
        .collect();
    assert_eq!(update_oks.len(), 4);
    for (_, ok) in update_oks {
        assert_eq!(session_expires(ok), Some((90, Some("uac".into()))));
        assert!(header(ok, "Require").contains(&"timer"));
    }
    assert_eq!(refreshes(&net, true, true).len(), 4);
    assert_eq!(refreshes(&net, false, false).len(), 4);
    assert!(net.sent(true, "BYE ").is_empty() && net.sent(false, "BYE ").is_empty());
    assert_eq!(
        net.bob.call_state(net.b.unwrap()),
        Some(CallState::Confirmed)
    );
}

#[test]
fn without_update_in_allow_the_refresh_is_a_re_invite_with_the_same_offer() {
    let mut net = Net::without_update();
    net.call();
    net.run(Duration::from_secs(100));
    assert!(net.sent(true, "UPDATE ").is_empty());
    let reinvites = net.sent(true, "INVITE ");
    // The INVITE, then refreshes at 45 s and 90 s.
    assert_eq!(reinvites.len(), 3);
    for (_, r) in &reinvites[1..] {
        assert_eq!(&r.body()[..], OFFER.as_bytes(), "our description unchanged");
        assert_eq!(session_expires(r), Some((90, Some("uac".into()))));
    }
    assert_eq!(net.sent(true, "ACK ").len(), 3, "each 2xx ACKed");
    assert_eq!(refreshes(&net, true, true).len(), 2);
}

#[test]
fn no_refresh_from_the_peer_ends_the_call_with_bye_before_expiry() {
    // Bob refreshes, but his refreshes never arrive.
    let mut net = Net::of_90s(Refresher::Uas).losing_bobs_updates();
    net.call();
    let answered = net.answered_at();
    net.run(Duration::from_secs(70));
    // §10: 90 s minus min(32 s, 30 s) = 60 s after the 2xx.
    let byes = net.sent(true, "BYE ");
    assert_eq!(byes.len(), 1);
    assert!(
        close(byes[0].0, answered + Duration::from_secs(60)),
        "BYE at {:?}",
        byes[0].0
    );
    let expired: Vec<_> = net
        .events_of(true)
        .into_iter()
        .filter(|(_, e)| matches!(e, CallEvent::SessionExpired { .. }))
        .collect();
    assert!(
        matches!(
            expired[..],
            [(
                _,
                CallEvent::SessionExpired {
                    interval: 90,
                    code: 0
                }
            )]
        ),
        "{expired:?}"
    );
    assert!(net.events_of(true).iter().any(|(_, e)| matches!(
        e,
        CallEvent::Ended {
            by_remote: false,
            code: 200
        }
    )));
}

#[test]
fn the_peers_refresh_starts_our_interval_again() {
    // Bob refreshes; his first refresh (45 s) arrives, the later ones are lost: Alice's BYE
    // comes 60 s after that refresh, not 60 s after the answer.
    let mut net = Net::of_90s(Refresher::Uas);
    let mut updates = 0;
    net.hook = Box::new(move |from_alice, t| {
        if !from_alice && t.starts_with("UPDATE ") {
            updates += 1;
            if updates > 1 {
                return None;
            }
        }
        Some(t.to_owned())
    });
    net.call();
    net.run(Duration::from_secs(200));
    let first = refreshes(&net, true, false);
    assert_eq!(first.len(), 1, "Alice got one refresh");
    let byes = net.sent(true, "BYE ");
    assert_eq!(byes.len(), 1);
    assert!(
        close(byes[0].0, first[0] + Duration::from_secs(60)),
        "BYE at {:?}, refresh at {:?}",
        byes[0].0,
        first[0]
    );
}

#[test]
fn a_re_invite_from_the_peer_refreshes_too() {
    // Bob holds the call at 30 s: his re-INVITE is a refresh (§10), so Alice's expiry moves
    // to 30 s + 60 s, even though his UPDATEs are lost.
    let mut net = Net::of_90s(Refresher::Uas).losing_bobs_updates();
    net.call();
    net.run(Duration::from_secs(30));
    let b = net.b.unwrap();
    assert!(
        net.bob
            .reinvite(net.now, b, Bytes::from_static(ANSWER.as_bytes()))
    );
    let held = net.now;
    net.run(Duration::from_secs(100));
    let byes = net.sent(true, "BYE ");
    assert_eq!(byes.len(), 1);
    let at = net.start + byes[0].0;
    assert!(
        at.duration_since(held).abs_diff(Duration::from_secs(60)) <= Duration::from_millis(50),
        "BYE {:?} after the re-INVITE",
        at.duration_since(held)
    );
    let reinvite = &net.sent(false, "INVITE ")[0].1;
    assert_eq!(
        session_expires(reinvite),
        Some((90, Some("uac".into()))),
        "Bob refreshes: uac of his request"
    );
}

#[test]
fn an_unanswered_refresh_ends_the_call_with_bye() {
    // Alice refreshes; Bob's answers to her UPDATE are lost: Timer F (32 s) ends it, and
    // §10 has the refresher send BYE.
    let mut net = Net::of_90s(Refresher::Uac);
    net.hook = Box::new(|from_alice, t| {
        let update_answer = !from_alice && t.starts_with("SIP/2.0") && t.contains(" UPDATE\r\n");
        (!update_answer).then(|| t.to_owned())
    });
    net.call();
    net.run(Duration::from_secs(100));
    assert!(net.events_of(true).iter().any(|(_, e)| matches!(
        e,
        CallEvent::SessionExpired {
            interval: 90,
            code: 408
        }
    )));
    assert_eq!(net.sent(true, "BYE ").len(), 1);
}

#[test]
fn a_422_to_a_refresh_is_answered_once_with_its_min_se() {
    // The first refresh asks for 90 s on the wire.
    let mut net = Net::first_update_too_short();
    net.call();
    net.run(Duration::from_secs(60));
    assert_eq!(net.sent(false, "SIP/2.0 422 ").len(), 1);
    let updates = net.sent(true, "UPDATE ");
    assert_eq!(updates.len(), 2, "the refresh, then its retry");
    assert_eq!(
        session_expires(&updates[1].1),
        Some((100, Some("uac".into())))
    );
    assert_eq!(
        updates[1]
            .1
            .headers
            .typed::<MinSe>()
            .unwrap()
            .unwrap()
            .seconds,
        100
    );
    assert_eq!(refreshes(&net, true, true).len(), 1);
    // No warning: the 422 is not the refresh's outcome.
    assert!(
        !net.events_of(true)
            .iter()
            .any(|(_, e)| matches!(e, CallEvent::Modified { code: 422, .. }))
    );
}

/// Alice's description on hold (RFC 3264 §8.4).
fn hold() -> Bytes {
    Bytes::from(format!("{OFFER}a=sendonly\r\n"))
}

/// [`hold`] sent again after Alice answered Bob's crossing offer (version 2): version 3.
fn hold_after_answer() -> String {
    format!("{OFFER}a=sendonly\r\n").replace("o=- 1 1 IN", "o=- 1 3 IN")
}

/// RFC 4028 §7.4: a 422 to a refresh that carried an offer is answered by the same request
/// again, asking for the 422's Min-SE, with the same offer: an UPDATE offering hold goes
/// again offering hold (it went without its offer: the hold was lost), and its 2xx is the
/// request's outcome.
#[test]
fn a_422_to_an_update_with_an_offer_is_answered_by_the_same_offer_asking_more() {
    let mut net = Net::first_update_too_short();
    net.call();
    net.run(Duration::from_secs(10));
    assert!(net.alice.update(net.now, net.a.unwrap(), Some(hold())));
    net.run(Duration::from_secs(1));
    assert_eq!(net.sent(false, "SIP/2.0 422 ").len(), 1);
    let updates = net.sent(true, "UPDATE ");
    assert_eq!(updates.len(), 2, "the UPDATE, then its retry");
    let retry = &updates[1].1;
    assert_eq!(&retry.body()[..], &hold()[..], "the same offer: {retry}");
    assert_eq!(session_expires(retry), Some((100, Some("uac".into()))));
    assert_eq!(
        retry.headers.typed::<MinSe>().unwrap().unwrap().seconds,
        100
    );
    let outcomes: Vec<_> = net
        .events_of(true)
        .into_iter()
        .filter_map(|(_, e)| match e {
            CallEvent::Modified { code, sdp, .. } => Some((*code, sdp.is_some())),
            _ => None,
        })
        .collect();
    assert_eq!(outcomes, [(200, true)], "Bob's answer to the hold");
}

/// The times (since the start) of the re-INVITEs (`alice`: hers, else Bob's) sent after
/// the call's INVITE, and of the 491s they received.
fn reinvites_and_491s(net: &Net, alice: bool) -> (Vec<Duration>, Vec<Duration>) {
    let invites = net
        .sent(alice, "INVITE ")
        .into_iter()
        .filter(|(_, m)| m.cseq().unwrap().seq > 1)
        .map(|(at, _)| at)
        .collect();
    let refused = net
        .sent(!alice, "SIP/2.0 491 ")
        .into_iter()
        .map(|(at, _)| at + Duration::from_millis(10))
        .collect();
    (invites, refused)
}

/// RFC 3261 §14.1: a re-INVITE refused with 491 goes again after a random 2.1–4 s (we own
/// the Call-ID), and nothing else may jump that wait: Alice's refresh re-INVITE, due a
/// second after the glare, waits for her retry, which carries the session's terms and
/// refreshes it (RFC 4028 §10). (It went at once with her hold offer, dropping the retry.)
#[test]
fn a_refresh_re_invite_waits_for_a_glare_retry() {
    let mut net = Net::without_update();
    net.call();
    net.run(Duration::from_secs(44));
    // Both put the call on hold at once: glare.
    let (a, b) = (net.a.unwrap(), net.b.unwrap());
    assert!(net.alice.reinvite(net.now, a, hold()));
    let bob_hold = Bytes::from(format!("{ANSWER}a=sendonly\r\n"));
    assert!(net.bob.reinvite(net.now, b, bob_hold));
    net.run(Duration::from_secs(60));
    let (invites, refused) = reinvites_and_491s(&net, true);
    assert_eq!(refused.len(), 1, "one glare: {invites:?}");
    let glare = refused[0];
    let after: Vec<_> = invites.iter().filter(|at| **at > glare).collect();
    let wait = *after[0] - glare;
    assert!(
        wait >= Duration::from_millis(2090) && wait <= Duration::from_millis(4010),
        "Alice's next re-INVITE {wait:?} after the 491: {invites:?}"
    );
    // That one is the hold again, one version above Alice's answer to Bob's hold (RFC
    // 3264 §8).
    let retry = net
        .sent(true, "INVITE ")
        .into_iter()
        .find(|(at, _)| at == after[0]);
    assert_eq!(&retry.unwrap().1.body()[..], hold_after_answer().as_bytes());
    assert!(!refreshes(&net, true, true).is_empty());
    assert!(net.sent(true, "BYE ").is_empty() && net.sent(false, "BYE ").is_empty());
}

/// A bodiless refresh UPDATE (RFC 4028 §10) is no offer: it goes while Alice's UPDATE
/// offering hold waits after a 491 (RFC 3311 §5.2), and leaves it waiting: the hold goes
/// again after its back-off (it was dropped, the hold lost).
#[test]
fn a_refresh_update_leaves_an_update_offer_waiting_after_491() {
    let mut net = Net::of_90s(Refresher::Uac);
    net.call();
    net.run(Duration::from_secs(44));
    let (a, b) = (net.a.unwrap(), net.b.unwrap());
    assert!(net.alice.update(net.now, a, Some(hold())));
    let bob_hold = Bytes::from(format!("{ANSWER}a=sendonly\r\n"));
    assert!(net.bob.update(net.now, b, Some(bob_hold)));
    net.run(Duration::from_secs(10));
    let updates = net.sent(true, "UPDATE ");
    let bodies: Vec<_> = updates.iter().map(|(_, u)| !u.body().is_empty()).collect();
    // The hold, the refresh at 45 s (no body), the hold again after its back-off.
    assert_eq!(bodies, [true, false, true], "{updates:?}");
    assert_eq!(&updates[2].1.body()[..], hold_after_answer().as_bytes());
    assert!(updates[1].0 < updates[2].0);
}

#[test]
fn a_2xx_below_our_min_se_is_followed_and_reported() {
    // Alice asks for 1800 s with Min-SE 120; Bob's 2xxs (a broken UAS) set 30 s, which RFC
    // 4028 §9 forbids.
    let mut net = Net::new(
        timers(1800, Some(120), Refresher::Uac),
        timers(1800, None, Refresher::Auto),
    );
    net.hook = Box::new(|from_alice, t| {
        Some(if !from_alice && t.starts_with("SIP/2.0 200 ") {
            t.replace("Session-Expires: 1800", "Session-Expires: 30")
        } else {
            t.to_owned()
        })
    });
    net.call();
    net.run(Duration::from_secs(20));
    let too_short: Vec<_> = net
        .events
        .iter()
        .filter_map(|(at, from_alice, e)| match e {
            CallEvent::SessionTooShort { interval, min_se } if *from_alice => {
                Some((*at, *interval, *min_se))
            }
            _ => None,
        })
        .collect();
    // The INVITE's 2xx, then the 2xx of the refresh at half of the 30 s followed.
    // Reported for the INVITE's 2xx; the 30 s are followed: Alice refreshes at 15 s (Bob's
    // own Min-SE, 90 s, refuses that UPDATE with 422; the retry asks 90 s and its 2xx keeps
    // the rules).
    assert_eq!(too_short.len(), 1, "{too_short:?}");
    assert_eq!((too_short[0].1, too_short[0].2), (30, 120));
    let updates = net.sent(true, "UPDATE ");
    assert!(
        updates
            .first()
            .is_some_and(|(at, _)| close(*at, Duration::from_secs(15))),
        "{updates:?}"
    );
    assert_eq!(net.sent(false, "SIP/2.0 422 ").len(), 1);
    assert!(net.sent(true, "BYE ").is_empty(), "the call goes on");

    // Without our Min-SE the floor is 90 s; a 2xx that keeps the rules says nothing.
    for (bob_sets, reported) in [
        ("Session-Expires: 60", true),
        ("Session-Expires: 90", false),
    ] {
        let mut net = Net::new(
            timers(1800, None, Refresher::Uac),
            timers(1800, None, Refresher::Auto),
        );
        net.hook = Box::new(move |from_alice, t| {
            Some(if !from_alice && t.starts_with("SIP/2.0 200 ") {
                t.replace("Session-Expires: 1800", bob_sets)
            } else {
                t.to_owned()
            })
        });
        net.call();
        let got = net.events.iter().any(|(_, _, e)| {
            matches!(
                e,
                CallEvent::SessionTooShort {
                    interval: 60,
                    min_se: 90
                }
            )
        });
        assert_eq!(got, reported, "{bob_sets}");
        assert!(
            !net.events
                .iter()
                .any(|(_, _, e)| matches!(e, CallEvent::SessionTooShort { interval: 90, .. })),
            "{bob_sets}"
        );
    }
}
