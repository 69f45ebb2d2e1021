//! RFC 3263 §4.3 failover during a run, against real peers: dnsmasq serves two SRV targets
//! (two Kamailio instances on free loopback ports), the run starts on the first, and:
//! - the first dies mid-run: the endpoints' refreshes and new calls move to the second;
//! - the first answers 503 with Retry-After: the endpoints register on the second, and the
//!   shard skips the first for later endpoints.
//!
//! Skipped with a message when `kamailio` or `dnsmasq` is absent (fails when
//! `SIPMETER_REQUIRE_PEERS` is set).

mod failover_common;

use std::sync::mpsc;

use agent::engine::{Outcome, Phase, RunEvent};
use agent::trace::Direction;
use failover_common::{dns, kamailio, notes, peers, run_file, sent, start, wait_until};
use testpeers::KamailioConfig;

/// Waits until `n` endpoints have entered `phase`.
fn wait_for(rx: &mpsc::Receiver<RunEvent>, phase: Phase, n: usize) {
    let mut seen = 0;
    wait_until(rx, &format!("{n} endpoints were {phase:?}"), |e| {
        if matches!(e, RunEvent::Phase { phase: p, .. } if *p == phase) {
            seen += 1;
        }
        seen >= n
    });
}

/// The first SRV target dies after every endpoint registered there: each refresh (Timer F,
/// 64×T1 = 3.2 s, since ICMP is not seen on the shared UDP socket) moves to the second
/// target and is answered there, and the endpoints un-register there at the end.
#[test]
fn refreshes_move_to_the_second_srv_target_when_the_first_dies() {
    if !peers() {
        return;
    }
    let k1 = kamailio(KamailioConfig::default());
    let k2 = kamailio(KamailioConfig::default());
    let (a1, a2) = (k1.addr(), k2.addr());
    let dns = dns("_sip._udp", "refresh.test", a1, a2);
    // Kamailio grants 10 s: the refresh leaves at 5 s and moves at 8.2 s; the endpoints
    // stay 12 s.
    let toml = run_file(
        11,
        &dns,
        "refresh.test",
        "duration = \"12s\"\nregister_expires = 10",
        r#"
[[group]]
name = "phones"
endpoints = 3
registrar = "pbx"
role = "register"
media = false
"#,
    );
    let (rx, run) = start(&toml);
    wait_for(&rx, Phase::Registered, 3);
    drop(k1);
    let (summary, reports) = run.join().unwrap();
    assert_eq!(summary.discovery.len(), 1, "{:#?}", summary.discovery);
    assert_eq!(reports.len(), 3);
    // Each phone moved once: by its own timeout or with the shard's table.
    assert_eq!(summary.failovers, 3);
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        let regs = sent(r, "REGISTER");
        // Registered on the first target (401, then 200) …
        assert_eq!(regs[0].remote, Some(a1), "{r:#?}");
        // … and the last REGISTER, the un-REGISTER, went to the second and was answered.
        let last = regs.last().unwrap();
        assert!(last.text.contains("Expires: 0\r\n"), "{}", last.text);
        assert_eq!(last.remote, Some(a2), "{r:#?}");
        let n = notes(r);
        let moved = format!(
            "target {a1} UDP failed: no response (Timer F fired); trying {a2} UDP (SRV 2 of 2)"
        );
        let moved_by_other = format!(
            "target {a1} UDP is down (found by another endpoint of the shard); registering on {a2} UDP (SRV 2 of 2)"
        );
        assert!(
            n.iter().any(|t| *t == moved || *t == moved_by_other),
            "{n:#?}"
        );
        assert!(
            n.contains(&format!("registered on {a2} UDP").as_str()),
            "{n:#?}"
        );
        // A refresh went to the first target after it died, and none after the move.
        let to_a1 = regs.iter().filter(|e| e.remote == Some(a1)).count();
        assert!(to_a1 >= 3, "the 401, the 200 and the lost refresh: {r:#?}");
        let first_a2 = regs.iter().position(|e| e.remote == Some(a2)).unwrap();
        assert!(regs[first_a2..].iter().all(|e| e.remote == Some(a2)));
    }
}

/// The first SRV target dies while the first calls are up (it does not Record-Route, so
/// their BYEs go phone to phone). Each caller's second INVITE gets no answer (Timer B): the
/// caller marks the target down, every endpoint of the shard registers on the second
/// target, and the INVITE is sent again there and answered. Every endpoint ends SUCCESS.
#[test]
fn new_calls_move_to_the_second_srv_target_when_the_first_dies() {
    if !peers() {
        return;
    }
    let k1 = kamailio(KamailioConfig {
        record_route: false,
        ..Default::default()
    });
    // One UDP worker: the callees' REGISTERs, sent before the caller's INVITE, are saved
    // before Kamailio looks the callee up.
    let k2 = kamailio(KamailioConfig {
        one_udp_worker: true,
        ..Default::default()
    });
    let (a1, a2) = (k1.addr(), k2.addr());
    let dns = dns("_sip._udp", "calls.test", a1, a2);
    let toml = run_file(
        11,
        &dns,
        "calls.test",
        "duration = \"300ms\"",
        r#"
[[group]]
name = "callees"
endpoints = 2
registrar = "pbx"
role = "answer"

[[group]]
name = "callers"
endpoints = 2
registrar = "pbx"
call = "group:callees"
calls = 2
# The first target is stopped at the first answer: the pause leaves it seconds to go.
pause = "2s"
"#,
    );
    let (rx, run) = start(&toml);
    // Both callers' first calls are up (the callees too, so nothing is still ringing).
    wait_for(&rx, Phase::Incall, 4);
    drop(k1);
    let (summary, reports) = run.join().unwrap();
    assert_eq!(
        (summary.calls_attempted, summary.calls_answered),
        (4, 4),
        "{reports:#?}"
    );
    let timeout_note = format!(
        "target {a1} UDP failed: no final response (Timer B fired); trying {a2} UDP (SRV 2 of 2)"
    );
    let mut timeouts = 0;
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        let n = notes(r);
        timeouts += n.iter().filter(|t| **t == timeout_note).count();
        assert!(
            n.contains(&format!("registered on {a2} UDP").as_str()),
            "{n:#?}"
        );
        let regs = sent(r, "REGISTER");
        assert_eq!(regs[0].remote, Some(a1));
        assert_eq!(regs.last().unwrap().remote, Some(a2), "{r:#?}");
        if r.group == "callers" {
            assert_eq!((r.calls_attempted, r.calls_answered), (2, 2), "{r:#?}");
            let invites = sent(r, "INVITE");
            assert_eq!(invites[0].remote, Some(a1), "{r:#?}");
            assert_eq!(invites.last().unwrap().remote, Some(a2), "{r:#?}");
        } else {
            assert_eq!(r.calls_received, 2, "{r:#?}");
        }
    }
    // At least the caller that found the target dead says so (the other may have been
    // moved by it before its own INVITE timed out).
    assert!(timeouts >= 1, "{reports:#?}");
    // Its INVITE, and the three other endpoints moved; perhaps the other caller's INVITE.
    assert!(
        (4..=5).contains(&summary.failovers),
        "{}",
        summary.failovers
    );
}

/// The first SRV target answers REGISTER and INVITE with 503 and Retry-After (OPTIONS
/// still 200, so the pre-run probe picks it): the first endpoint fails over to the second
/// target; the shard then skips the first for Retry-After, so the endpoints that start
/// later (one a second) go straight to the second. Calls go through the second.
#[test]
fn a_503_with_retry_after_moves_registrations_to_the_second_target() {
    if !peers() {
        return;
    }
    let k1 = kamailio(KamailioConfig {
        unavailable: Some(120),
        ..Default::default()
    });
    let k2 = kamailio(KamailioConfig::default());
    let (a1, a2) = (k1.addr(), k2.addr());
    let dns = dns("_sip._udp", "busy.test", a1, a2);
    let toml = run_file(
        11,
        &dns,
        "busy.test",
        "duration = \"300ms\"\nramp = \"1/s\"",
        r#"
[[group]]
name = "callees"
endpoints = 2
registrar = "pbx"
role = "answer"
media = false

[[group]]
name = "callers"
endpoints = 2
registrar = "pbx"
call = "group:callees"
media = false
"#,
    );
    let (_rx, run) = start(&toml);
    let (summary, reports) = run.join().unwrap();
    assert!(
        summary.discovery[0].starts_with(&format!("UDP {a1}: ")),
        "the probe's OPTIONS is answered 200: {:#?}",
        summary.discovery
    );
    assert_eq!((summary.calls_attempted, summary.calls_answered), (2, 2));
    // The first endpoint's REGISTER, and the three not yet started moved with the table.
    assert_eq!(summary.failovers, 4);
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        assert_eq!(r.registration_code, Some(200));
        let regs = sent(r, "REGISTER");
        assert!(regs.iter().skip(1).all(|e| e.remote == Some(a2)), "{r:#?}");
        for i in sent(r, "INVITE") {
            assert_eq!(i.remote, Some(a2), "{r:#?}");
        }
    }
    // The first endpoint met the 503 and moved; the later ones never asked the first target.
    let first = &reports.iter().find(|r| r.id == 0).unwrap();
    assert_eq!(sent(first, "REGISTER")[0].remote, Some(a1));
    let got_503 = first.trace.iter().any(|e| {
        e.direction == Direction::Received
            && e.first_line() == "SIP/2.0 503 Service Unavailable"
            && e.text.contains("Retry-After: 120\r\n")
    });
    assert!(got_503, "{first:#?}");
    assert!(
        notes(first).contains(
            &format!(
                "target {a1} UDP failed: 503 Service Unavailable (Retry-After 120 s); trying {a2} UDP (SRV 2 of 2)"
            )
            .as_str()
        ),
        "{first:#?}"
    );
    for r in reports.iter().filter(|r| r.id != 0) {
        assert!(
            sent(r, "REGISTER").iter().all(|e| e.remote == Some(a2)),
            "started a second or more after the 503, so the first target was skipped: {r:#?}"
        );
    }
}

/// Both SRV targets answer 503: the REGISTER tries both, once, and the endpoint fails with
/// the last answer (REGISTRATION_FAILED), its trace saying that no target is left. (One
/// phone: with two, the second may find both already down by Retry-After and try none.)
#[test]
fn when_every_target_answers_503_the_registration_fails() {
    if !peers() {
        return;
    }
    let busy = || {
        kamailio(KamailioConfig {
            unavailable: Some(30),
            ..Default::default()
        })
    };
    let (k1, k2) = (busy(), busy());
    let (a1, a2) = (k1.addr(), k2.addr());
    let dns = dns("_sip._udp", "down.test", a1, a2);
    let toml = run_file(
        11,
        &dns,
        "down.test",
        "duration = \"300ms\"",
        r#"
[[group]]
name = "phones"
endpoints = 1
registrar = "pbx"
role = "register"
media = false
"#,
    );
    let (_rx, run) = start(&toml);
    let (summary, reports) = run.join().unwrap();
    // The phone moved once, then found no target left.
    assert_eq!(summary.failovers, 1);
    assert_eq!(reports.len(), 1);
    for r in &reports {
        assert_eq!(r.outcome, Outcome::RegistrationFailed, "{r:#?}");
        assert_eq!(r.registration_code, Some(503));
        let error = r.error.as_deref().unwrap();
        assert!(
            error.starts_with("REGISTER failed: 503 Service Unavailable: "),
            "{error}"
        );
        let n = notes(r);
        assert_eq!(
            n.last().copied(),
            Some(
                format!(
                    "target {a2} UDP failed: 503 Service Unavailable (Retry-After 30 s); no target left (2 of 2 tried or down)"
                )
                .as_str()
            ),
            "{n:#?}"
        );
        let regs = sent(r, "REGISTER");
        assert_eq!(regs.len(), 2, "{r:#?}");
        assert_eq!((regs[0].remote, regs[1].remote), (Some(a1), Some(a2)));
    }
}
