//! ICE with a TURN relay and a STUN server (`turn_server`, `stun_server`, `ice_policy`)
//! against coturn (Debian `coturn`) on loopback: our endpoints call each other through the
//! built-in registrar with `ice_policy = "relay"`, so the checks, DTLS-free RTP and RTCP all
//! go through coturn allocations; a wrong TURN password fails the call naming TURN 401; a
//! server-reflexive address equal to the host candidate is dropped.

use agent::engine::{EndpointReport, Outcome, RunSummary, StopHandle};
use testpeers::{Coturn, CoturnConfig, available};

fn run_file(text: &str) -> (RunSummary, Vec<EndpointReport>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut prepared = agent::testfile::prepare("ice_turn.toml", text, b"ice secret", now)
        .unwrap_or_else(|e| panic!("{e}"));
    prepared.plan.keep_all_traces = true;
    let (tx, _rx) = std::sync::mpsc::channel();
    agent::runner::execute(prepared, tx, StopHandle::default()).unwrap()
}

fn file(ice: &str) -> String {
    format!(
        r#"
name = "ice through a TURN relay"
duration = "3s"
seed = 11
time_limit = "30s"

[[registrar]]
id = "builtin"
kind = "builtin"
transport = "udp"

[[group]]
name = "callees"
endpoints = 2
registrar = "builtin"
role = "answer"
answer_delay = "50ms"
{ice}

[[group]]
name = "callers"
endpoints = 2
registrar = "builtin"
call = "group:callees"
{ice}
"#
    )
}

fn coturn() -> Option<Coturn> {
    if !available("turnserver", "coturn") {
        return None;
    }
    Some(Coturn::start(&CoturnConfig::default()).unwrap_or_else(|e| panic!("{e}")))
}

/// The trace notes about ICE, STUN and TURN.
fn notes(r: &EndpointReport) -> Vec<&str> {
    r.trace
        .iter()
        .filter(|t| ["ICE", "TURN", "STUN"].iter().any(|w| t.text.contains(w)))
        .map(|t| t.text.as_str())
        .collect()
}

#[test]
fn relay_only_calls_go_through_coturn() {
    let Some(server) = coturn() else {
        return;
    };
    let ice = format!(
        "ice = true\nrtcp_mux = true\nice_policy = \"relay\"\nturn_server = \"{}\"\n\
         turn_user = \"u\"\nturn_password = \"p\"",
        server.addr()
    );
    let (summary, reports) = run_file(&file(&ice));
    assert_eq!(summary.calls_answered, 2, "{summary:?}");
    assert_eq!(reports.len(), 4);
    for r in &reports {
        assert_eq!(
            r.outcome,
            Outcome::Success,
            "{}: {:?} {:?}",
            r.user,
            r.error,
            notes(r)
        );
        let m = r.media.as_ref().expect("media measured");
        let ice = m.ice.as_ref().expect("an ice report");
        assert_eq!(ice.state, "connected", "{}: {ice:?} {:?}", r.user, notes(r));
        assert_eq!(ice.local_candidate, Some("relay"), "{ice:?}");
        assert_eq!(ice.remote_candidate, Some("relay"), "{ice:?}");
        assert_eq!(ice.turn_failures, 0, "{ice:?}");
        let relayed = ice.relayed.as_deref().expect("a relayed address");
        // The selected pair is between the two relayed addresses on coturn's relay IP.
        let pair = ice.selected_pair.as_deref().expect("a selected pair");
        assert!(
            pair.starts_with(&format!("{relayed} -> ")),
            "{pair} / {relayed}"
        );
        // Media measured from what arrived through the relay.
        assert!(m.rx_packets >= 50, "{}: {m:?}", r.user);
        assert!(m.mos.is_some_and(|x| x > 4.0), "{m:?}");
        let n = notes(r);
        for step in [
            "TURN Allocate: 401 challenge",
            "TURN allocation: relayed",
            "TURN permission for",
            "TURN channel",
            "(relay) ->",
        ] {
            assert!(n.iter().any(|t| t.contains(step)), "{step}: {n:?}");
        }
    }
    // The SDP offered only the relayed candidate.
    let caller = reports.iter().find(|r| r.group == "callers").unwrap();
    let offer = caller
        .trace
        .iter()
        .find(|t| t.text.starts_with("INVITE ") && t.text.contains("m=audio"))
        .map(|t| t.text.as_str())
        .expect("an INVITE with SDP");
    assert_eq!(offer.matches("a=candidate:").count(), 1, "{offer}");
    assert!(offer.contains(" typ relay raddr "), "{offer}");
    // coturn's own account: four allocations, channels bound, data relayed.
    let log = server.log();
    let count = |s: &str| log.matches(s).count();
    assert!(
        count("incoming packet ALLOCATE processed, success") >= 4,
        "{log}"
    );
    assert!(
        count("incoming packet CHANNEL_BIND processed, success") >= 4,
        "{log}"
    );
    assert!(count("lifetime=0") >= 4, "allocations released: {log}");
}

#[test]
fn a_wrong_turn_password_fails_the_call_naming_turn_401() {
    let Some(server) = coturn() else {
        return;
    };
    let ice = format!(
        "ice = true\nrtcp_mux = true\nice_policy = \"relay\"\nturn_server = \"{}\"\n\
         turn_user = \"u\"\nturn_password = \"wrong\"",
        server.addr()
    );
    let (_, reports) = run_file(&file(&ice));
    for r in reports.iter().filter(|r| r.group == "callers") {
        assert_eq!(
            r.outcome,
            Outcome::NegotiationFailed,
            "{}: {:?}",
            r.user,
            notes(r)
        );
        let error = r.error.as_deref().unwrap_or_default();
        assert!(error.contains("TURN 401"), "{error}");
        let ice = r
            .media
            .as_ref()
            .and_then(|m| m.ice.as_ref())
            .expect("ice report");
        assert_eq!(ice.turn_failures, 1, "{ice:?}");
        assert!(
            ice.turn_error
                .as_deref()
                .is_some_and(|e| e.contains("TURN 401"))
        );
    }
}

#[test]
fn a_srflx_equal_to_the_host_candidate_is_dropped() {
    let Some(server) = coturn() else {
        return;
    };
    let ice = format!(
        "ice = true\nrtcp_mux = true\nstun_server = \"{}\"",
        server.addr()
    );
    let (summary, reports) = run_file(&file(&ice));
    assert_eq!(summary.calls_answered, 2, "{summary:?}");
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{}: {:?}", r.user, notes(r));
        let n = notes(r);
        assert!(
            n.iter()
                .any(|t| t.contains("server-reflexive address 127.0.0.1:")),
            "{n:?}"
        );
        assert!(
            n.iter()
                .any(|t| t.contains("equals the host candidate: dropped (RFC 8445 §5.1.3)")),
            "{n:?}"
        );
        let ice = r
            .media
            .as_ref()
            .and_then(|m| m.ice.as_ref())
            .expect("ice report");
        assert_eq!(ice.local_candidate, Some("host"), "{ice:?}");
    }
}

/// `ice_policy = "all"` (the default) with a wrong TURN password: no relayed candidate, the
/// failure is reported, and the calls connect over their host candidates.
#[test]
fn without_the_relay_policy_a_failed_allocation_leaves_the_host_path() {
    let Some(server) = coturn() else {
        return;
    };
    let ice = format!(
        "ice = true\nrtcp_mux = true\nturn_server = \"{}\"\nturn_user = \"u\"\n\
         turn_password = \"wrong\"",
        server.addr()
    );
    let (summary, reports) = run_file(&file(&ice));
    assert_eq!(summary.calls_answered, 2, "{summary:?}");
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{}: {:?}", r.user, notes(r));
        let ice = r
            .media
            .as_ref()
            .and_then(|m| m.ice.as_ref())
            .expect("ice report");
        assert_eq!(ice.local_candidate, Some("host"), "{ice:?}");
        assert_eq!(ice.turn_failures, 1, "{ice:?}");
        assert!(ice.relayed.is_none(), "{ice:?}");
        let n = notes(r);
        assert!(
            n.iter()
                .any(|t| t.contains("TURN: no relayed candidate: TURN 401")),
            "{n:?}"
        );
    }
}
