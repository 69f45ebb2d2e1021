//! RFC 3263 §4.3 failover during a run over TCP, against real peers: dnsmasq serves two
//! `_sip._tcp` SRV targets (two Kamailio instances on free loopback ports), the run starts
//! on the first, and the first is stopped mid-run. The endpoints' connections close, the
//! reconnect to the first is refused, and each endpoint connects to the second, registers
//! there and carries on: refreshes, new calls and un-REGISTERs go to the second.
//!
//! Skipped with a message when `kamailio` or `dnsmasq` is absent (fails when
//! `SIPMETER_REQUIRE_PEERS` is set).

mod failover_common;

use std::net::SocketAddr;

use agent::engine::{EndpointReport, Outcome, Phase, RunEvent};
use failover_common::{dns, kamailio, notes, peers, run_file, sent, start, wait_until};
use testpeers::KamailioConfig;

/// Each endpoint says why it left the first target, in the words of the UDP path: its own
/// refused connect, or the shard's table (another endpoint was refused first).
fn assert_moved(r: &EndpointReport, a1: SocketAddr, a2: SocketAddr) {
    let n = notes(r);
    let own = format!("target {a1} TCP failed: connect failed: ");
    let own_end = format!("; trying {a2} TCP (SRV 2 of 2)");
    let by_other = format!(
        "target {a1} TCP is down (found by another endpoint of the shard); registering on {a2} TCP (SRV 2 of 2)"
    );
    assert!(
        n.iter()
            .any(|t| (t.starts_with(&own) && t.ends_with(&own_end)) || *t == by_other),
        "{n:#?}"
    );
    assert!(
        n.contains(&format!("connecting over TCP to {a2} (reconnect)").as_str()),
        "{n:#?}"
    );
}

/// The first target dies after every phone registered there over TCP: the connections
/// close, the reconnect there is refused, and each phone connects to the second target and
/// registers. Its refresh and its un-REGISTER go there; every phone ends SUCCESS.
#[test]
fn tcp_registrations_move_to_the_second_srv_target_when_the_first_dies() {
    if !peers() {
        return;
    }
    let k1 = kamailio(KamailioConfig::default());
    let k2 = kamailio(KamailioConfig::default());
    let (a1, a2) = (k1.addr(), k2.addr());
    let dns = dns("_sip._tcp", "tcp-refresh.test", a1, a2);
    // Kamailio grants 4 s: a refresh leaves at 2 s on the second target; phones stay 6 s.
    let toml = run_file(
        12,
        &dns,
        "tcp-refresh.test",
        "duration = \"6s\"\nregister_expires = 4",
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
    let mut registered = 0;
    wait_until(&rx, "3 phones registered", |e| {
        registered += usize::from(matches!(
            e,
            RunEvent::Phase {
                phase: Phase::Registered,
                ..
            }
        ));
        registered == 3
    });
    drop(k1);
    let (summary, reports) = run.join().unwrap();
    assert_eq!(reports.len(), 3);
    assert_eq!(summary.failovers, 3, "{reports:#?}");
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        assert_moved(r, a1, a2);
        let regs = sent(r, "REGISTER");
        assert_eq!(regs[0].remote, Some(a1), "{r:#?}");
        let first_a2 = regs.iter().position(|e| e.remote == Some(a2)).unwrap();
        assert!(
            regs[first_a2..].iter().all(|e| e.remote == Some(a2)),
            "{r:#?}"
        );
        // Registered (401, 200), at least one refresh, and the un-REGISTER on the second.
        assert!(regs.len() - first_a2 >= 4, "{r:#?}");
        let last = regs.last().unwrap();
        assert!(last.text.contains("Expires: 0\r\n"), "{}", last.text);
    }
}

/// The first target dies between calls: the callers' and callees' connections close, each
/// endpoint connects to the second target and registers there, and the second calls go
/// through it. 4 of 4 calls answered, every endpoint SUCCESS.
#[test]
fn tcp_new_calls_move_to_the_second_srv_target_when_the_first_dies() {
    if !peers() {
        return;
    }
    let k1 = kamailio(KamailioConfig::default());
    let k2 = kamailio(KamailioConfig::default());
    let (a1, a2) = (k1.addr(), k2.addr());
    let dns = dns("_sip._tcp", "tcp-calls.test", a1, a2);
    let toml = run_file(
        12,
        &dns,
        "tcp-calls.test",
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
# The first target is stopped between the calls: the pause leaves it seconds to go.
pause = "5s"
"#,
    );
    let (rx, run) = start(&toml);
    // Both first calls are up on both sides …
    let mut incall = 0;
    wait_until(&rx, "4 endpoints in a call", |e| {
        incall += usize::from(matches!(
            e,
            RunEvent::Phase {
                phase: Phase::Incall,
                ..
            }
        ));
        incall == 4
    });
    // … then both callers hang up (BYE), and the next progress report (at most a second
    // later) comes after their BYEs were answered; the second calls wait 5 s.
    let mut hanging_up = 0;
    wait_until(&rx, "both callers hung up", |e| {
        hanging_up += usize::from(matches!(
            e,
            RunEvent::Phase {
                phase: Phase::Disconnecting,
                ..
            }
        ));
        hanging_up == 2
    });
    wait_until(&rx, "a progress report", |e| {
        matches!(e, RunEvent::Progress(_))
    });
    drop(k1);
    let (summary, reports) = run.join().unwrap();
    assert_eq!(
        (summary.calls_attempted, summary.calls_answered),
        (4, 4),
        "{reports:#?}"
    );
    assert_eq!(summary.failovers, 4, "{reports:#?}");
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        assert_moved(r, a1, a2);
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
}

/// The first target answers REGISTER with 503 and Retry-After over TCP (OPTIONS still
/// 200, so the pre-run probe picks it): the phone closes that connection, connects to the
/// second target and registers there. It ends SUCCESS; the trace says why it moved.
#[test]
fn tcp_a_503_moves_the_registration_to_the_second_srv_target() {
    if !peers() {
        return;
    }
    let k1 = kamailio(KamailioConfig {
        unavailable: Some(120),
        ..Default::default()
    });
    let k2 = kamailio(KamailioConfig::default());
    let (a1, a2) = (k1.addr(), k2.addr());
    let dns = dns("_sip._tcp", "tcp-503.test", a1, a2);
    let toml = run_file(
        12,
        &dns,
        "tcp-503.test",
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
    assert_eq!(summary.failovers, 1, "{reports:#?}");
    let r = &reports[0];
    assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
    let n = notes(r);
    let moved = format!(
        "target {a1} TCP failed: 503 Service Unavailable (Retry-After 120 s); trying {a2} TCP (SRV 2 of 2)"
    );
    assert!(n.contains(&moved.as_str()), "{n:#?}");
    assert!(
        n.contains(&format!("connecting over TCP to {a2} (reconnect)").as_str()),
        "{n:#?}"
    );
    let regs = sent(r, "REGISTER");
    assert_eq!(regs[0].remote, Some(a1), "{r:#?}");
    assert!(regs[1..].iter().all(|e| e.remote == Some(a2)), "{r:#?}");
    assert!(
        regs.last().unwrap().text.contains("Expires: 0\r\n"),
        "{r:#?}"
    );
}
