//! One early dialog per fork (RFC 3261 §12.1.2, §13.2.2.4; RFC 3262 §4). Alice's INVITE
//! reaches Bob and Carol (what a forking proxy does); both ring with reliable provisionals.
//! Each To tag makes its own early dialog: each reliable 1xx is PRACKed in its fork's dialog
//! (its To tag, its Contact as Request-URI, its own CSeq numbers and RSeq), the call goes on
//! in the dialog of the fork that answers, and the BYE that ends the other fork's dialog
//! comes right after that fork's PRACKs. Agents on a virtual clock, through the public API.

use std::time::Instant;

use bytes::Bytes;
use sip_msg::{HeaderName, Message};
use sip_proto::ua::{CallEvent, CallId, CallState, Destination, Outgoing, UaEvent, UserAgent};

mod common;
use common::{ALICE, BOB, CAROL, addr, deliver, drain, incoming, msg, of, seq, to_tag};

fn agent(user: &str, port: u16, seed: u64) -> UserAgent {
    common::agent(user, port, seed, true, "earlydlg")
}

/// The one request `prefix` in `out`, checked to be in the dialog with the To tag `tag` and
/// the Contact of the UAS at `port` (Request-URI and destination, no route set here).
fn one_request_to(out: &[Outgoing], prefix: &str, tag: &str, user: &str, port: u16) -> Message {
    let found = of(out, prefix);
    assert_eq!(found.len(), 1, "{prefix}: {out:?}");
    let m = msg(found[0]);
    assert_eq!(to_tag(&m), tag, "{prefix} To tag");
    let contact = format!("sip:{user}@127.0.0.1:{port}");
    assert_eq!(m.request_uri().unwrap().to_string(), contact, "{prefix}");
    assert!(
        matches!(&found[0].destination, Destination::Uri(u) if u.to_string() == contact),
        "{prefix} sent to {:?}",
        found[0].destination
    );
    m
}

/// A UAS ringing: its call, its To tag (read from its first reliable 180) and its port.
struct Fork {
    ua: UserAgent,
    call: CallId,
    port: u16,
    user: &'static str,
    tag: String,
}

impl Fork {
    /// Rings reliably once more (a new RSeq): Alice PRACKs it in this fork's dialog, the
    /// fork answers the PRACK. Returns Alice's PRACK.
    fn ring(&mut self, alice: &mut UserAgent, now: Instant, rseq: u32, cseq: u32) -> Message {
        self.ua.ring(now, self.call);
        let (ringing, _) = drain(&mut self.ua);
        let r = of(&ringing, "SIP/2.0 180 ");
        assert_eq!(r.len(), 1, "{ringing:?}");
        let r = msg(r[0]);
        assert_eq!(
            r.headers.value(&HeaderName::RSeq),
            Some(rseq.to_string().as_str())
        );
        if self.tag.is_empty() {
            self.tag = to_tag(&r);
        }
        deliver(alice, now, self.port, &ringing);
        let (out, ev) = drain(alice);
        let prack = one_request_to(&out, "PRACK ", &self.tag, self.user, self.port);
        assert_eq!(seq(&prack), cseq, "{} PRACK CSeq", self.user);
        assert_eq!(
            prack.headers.value(&HeaderName::RAck),
            Some(format!("{rseq} 1 INVITE").as_str())
        );
        assert!(
            ev.iter().any(
                |e| matches!(e, UaEvent::Call(_, CallEvent::Pracked { rseq: r }) if *r == rseq)
            ),
            "{ev:?}"
        );
        // The same 180 again (a retransmission): no second PRACK.
        deliver(alice, now, self.port, &ringing);
        let (again, _) = drain(alice);
        assert!(of(&again, "PRACK ").is_empty(), "{again:?}");
        // The fork accepts the PRACK: it is in its dialog, for its outstanding 180.
        deliver(&mut self.ua, now, ALICE, &out);
        let (ok, ev) = drain(&mut self.ua);
        assert_eq!(of(&ok, "SIP/2.0 200 ").len(), 1, "{ok:?}");
        assert!(
            ev.iter()
                .any(|e| matches!(e, UaEvent::Call(_, CallEvent::Pracked { .. }))),
            "{ev:?}"
        );
        deliver(alice, now, self.port, &ok);
        drain(alice);
        prack
    }

    /// Answers; returns the 2xx.
    fn answer(&mut self, now: Instant) -> Vec<Outgoing> {
        self.ua
            .answer(now, self.call, Some(Bytes::from_static(b"v=0\r\n")));
        drain(&mut self.ua).0
    }

    /// Takes `out` (requests from Alice), answers them, checks the BYE was accepted and the
    /// call ended.
    fn accept_bye(&mut self, now: Instant, out: &[Outgoing]) -> Vec<Outgoing> {
        deliver(&mut self.ua, now, ALICE, out);
        let (reply, ev) = drain(&mut self.ua);
        assert_eq!(of(&reply, "SIP/2.0 200 ").len(), 1, "{reply:?}");
        assert!(
            ev.iter().any(|e| matches!(
                e,
                UaEvent::Call(c, CallEvent::Ended { by_remote: true, .. }) if *c == self.call
            )),
            "{ev:?}"
        );
        assert_eq!(self.ua.call_state(self.call), Some(CallState::Terminated));
        reply
    }
}

/// Alice calls; the INVITE (CSeq 1) reaches Bob and Carol.
fn forked(now: Instant) -> (UserAgent, CallId, Fork, Fork) {
    let mut alice = agent("alice", ALICE, 1);
    let (call, invite) = common::call_bob(&mut alice, now);
    assert_eq!(of(&invite, "INVITE ").len(), 1, "{invite:?}");
    assert_eq!(seq(&msg(&invite[0])), 1);
    let fork = |user: &'static str, port: u16, seed: u64| {
        let mut ua = agent(user, port, seed);
        let call = incoming(&mut ua, now, &invite);
        Fork {
            ua,
            call,
            port,
            user,
            tag: String::new(),
        }
    };
    (alice, call, fork("bob", BOB, 2), fork("carol", CAROL, 3))
}

/// Bob rings reliably once, Carol twice (each UAS numbers its RSeq from 1): each 180 is
/// PRACKed in its own fork's dialog, CSeq 2 (and 3) in that dialog. Then one fork answers
/// (`bob_first`: Bob, the fork that rang first, else Carol, the second): Alice's call goes on
/// in its dialog (her BYE continues its CSeq), and the other fork's 2xx is ACKed and ended
/// with a BYE right after that fork's own PRACKs, which it accepts (§12.2.2).
#[test]
fn each_fork_is_pracked_in_its_own_early_dialog_and_the_answering_one_goes_on() {
    for bob_first in [true, false] {
        let now = Instant::now();
        let (mut alice, call, mut bob, mut carol) = forked(now);
        // Before the fix Carol's RSeq 1 was taken for Bob's again (not PRACKed), and her
        // RSeq 2 was PRACKed in Bob's dialog (his To tag and Contact, CSeq 3).
        bob.ring(&mut alice, now, 1, 2);
        carol.ring(&mut alice, now, 1, 2);
        carol.ring(&mut alice, now, 2, 3);
        assert_ne!(bob.tag, carol.tag);
        assert_eq!(alice.call_state(call), Some(CallState::Early));
        let (first, second) = if bob_first {
            (&mut bob, &mut carol)
        } else {
            (&mut carol, &mut bob)
        };
        // The last CSeq each fork's dialog used: Bob 2, Carol 3.
        let last = |f: &Fork| if f.user == "bob" { 2 } else { 3 };
        let ok = first.answer(now);
        deliver(&mut alice, now, first.port, &ok);
        let (out, ev) = drain(&mut alice);
        let ack = one_request_to(&out, "ACK ", &first.tag, first.user, first.port);
        assert_eq!((seq(&ack), out.len()), (1, 1), "{out:?}");
        assert!(
            ev.iter()
                .any(|e| matches!(e, UaEvent::Call(c, CallEvent::Answered { .. }) if *c == call)),
            "{ev:?}"
        );
        assert_eq!(alice.call_state(call), Some(CallState::Confirmed));
        deliver(&mut first.ua, now, ALICE, &out);
        drain(&mut first.ua);
        assert_eq!(first.ua.call_state(first.call), Some(CallState::Confirmed));
        // The other fork answers too: ACKed in its dialog, then ended with BYE after its PRACKs.
        let ok = second.answer(now);
        deliver(&mut alice, now, second.port, &ok);
        let (out, ev) = drain(&mut alice);
        assert_eq!(out.len(), 2, "{out:?}");
        let ack = one_request_to(&out, "ACK ", &second.tag, second.user, second.port);
        assert_eq!(seq(&ack), 1);
        let bye = one_request_to(&out, "BYE ", &second.tag, second.user, second.port);
        assert_eq!(seq(&bye), last(second) + 1, "{} fork BYE", second.user);
        assert!(!ev.iter().any(|e| matches!(e, UaEvent::Call(..))), "{ev:?}");
        second.accept_bye(now, &out);
        // Alice hangs up: the BYE goes in the answering fork's dialog, after its PRACKs.
        alice.hangup(now, call);
        let (out, _) = drain(&mut alice);
        let bye = one_request_to(&out, "BYE ", &first.tag, first.user, first.port);
        assert_eq!(seq(&bye), last(first) + 1, "{} call BYE", first.user);
        let reply = first.accept_bye(now, &out);
        deliver(&mut alice, now, first.port, &reply);
        let (_, ev) = drain(&mut alice);
        assert!(
            ev.iter()
                .any(|e| matches!(e, UaEvent::Call(c, CallEvent::Ended { .. }) if *c == call)),
            "{ev:?}"
        );
    }
}

/// A peer sending reliable 180s with ever new To tags: Alice PRACKs a bounded number of
/// early dialogs (the first fork's and `MAX_EARLY_FORKS` = 16 more), each once; the rest
/// are reported ignored, not kept. The first fork still answers and its call goes on.
#[test]
fn early_dialogs_of_endless_to_tags_are_bounded() {
    let now = Instant::now();
    let (mut alice, call, mut bob, _carol) = forked(now);
    bob.ua.ring(now, bob.call);
    let (ringing, _) = drain(&mut bob.ua);
    let text = String::from_utf8(ringing[0].bytes.to_vec()).unwrap();
    let tag_at = text.find("\r\nTo: ").unwrap();
    let tag_at = tag_at + text[tag_at..].find(";tag=").unwrap() + 5;
    let (mut pracks, mut ignored) = (0, 0);
    let mut tags = Vec::new();
    for n in 0..100 {
        let forged = format!("{}x{n}{}", &text[..tag_at], &text[tag_at..]);
        for _ in 0..2 {
            alice.handle_message(now, Message::parse(forged.as_bytes()).unwrap(), addr(BOB));
            let (out, ev) = drain(&mut alice);
            for p in of(&out, "PRACK ") {
                let m = msg(p);
                assert_eq!(seq(&m), 2, "each early dialog's first PRACK");
                tags.push(to_tag(&m));
            }
            pracks += of(&out, "PRACK ").len();
            ignored += ev
                .iter()
                .filter(|e| matches!(e, UaEvent::Ignored { .. }))
                .count();
        }
    }
    assert_eq!(pracks, 17, "PRACKed early dialogs");
    let mut distinct = tags.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 17, "{tags:?}");
    assert_eq!(ignored, 2 * (100 - 17), "reported ignored");
    // Bob's own 2xx (his real tag, no early dialog kept for it) confirms the call.
    let ok = bob.answer(now);
    let bob_tag = to_tag(&msg(&ok[0]));
    deliver(&mut alice, now, BOB, &ok);
    let (out, _) = drain(&mut alice);
    let ack = one_request_to(&out, "ACK ", &bob_tag, "bob", BOB);
    assert_eq!(seq(&ack), 1);
    assert_eq!(alice.call_state(call), Some(CallState::Confirmed));
    // A 2xx of a PRACKed fork (x0, the call's first early dialog, and x16, the last one
    // kept) is ended with a BYE after its PRACK (CSeq 3); of a fork never PRACKed (x16's
    // next, and a tag never seen), after the INVITE (CSeq 2).
    let text = String::from_utf8(ok[0].bytes.to_vec()).unwrap();
    let tag_at = text.find("\r\nTo: ").unwrap();
    let tag_at = tag_at + text[tag_at..].find(";tag=").unwrap() + 5;
    for (prefix, bye_seq) in [("x0", 3), ("x16", 3), ("x17", 2), ("y", 2)] {
        let forged = format!("{}{prefix}{}", &text[..tag_at], &text[tag_at..]);
        alice.handle_message(now, Message::parse(forged.as_bytes()).unwrap(), addr(BOB));
        let (out, _) = drain(&mut alice);
        let tag = format!("{prefix}{bob_tag}");
        assert_eq!(seq(&one_request_to(&out, "ACK ", &tag, "bob", BOB)), 1);
        let bye = one_request_to(&out, "BYE ", &tag, "bob", BOB);
        assert_eq!(seq(&bye), bye_seq, "{prefix}");
    }
    alice.hangup(now, call);
    let (out, _) = drain(&mut alice);
    let bye = one_request_to(&out, "BYE ", &bob_tag, "bob", BOB);
    assert_eq!(seq(&bye), 2);
}
