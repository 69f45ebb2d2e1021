//! ICE (RFC 8445, `ice = true`) end to end: our WebRTC-style endpoints (ICE + DTLS-SRTP +
//! rtcp-mux over WSS) call each other through the built-in registrar over real loopback
//! sockets; checks, nomination, DTLS and media all go over the selected pair. A peer without
//! ICE gets the RFC 8445 §5.1 fallback: media to its c=/m= address. With a TURN relay and a
//! STUN server (`turn_server`, `stun_server`, `ice_policy`) against coturn (Debian
//! `coturn`): `ice_policy = "relay"` sends the checks, RTP and RTCP through coturn
//! allocations; a wrong TURN password fails the call naming TURN 401; a server-reflexive
//! address equal to the host candidate is dropped.

use agent::engine::{EndpointReport, Outcome, RunSummary, StopHandle};
use agent::trace::Direction;
use testpeers::{Coturn, CoturnConfig, available};

fn run_file(text: &str) -> (RunSummary, Vec<EndpointReport>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut prepared = agent::testfile::prepare("ice.toml", text, b"ice secret", now)
        .unwrap_or_else(|e| panic!("{e}"));
    prepared.plan.keep_all_traces = true;
    let (tx, _rx) = std::sync::mpsc::channel();
    agent::runner::execute(prepared, tx, StopHandle::default()).unwrap()
}

fn file(transport: &str, callees: &str, callers: &str) -> String {
    format!(
        r#"
name = "ice over {transport}"
duration = "3s"
seed = 11
time_limit = "30s"

[[registrar]]
id = "builtin"
kind = "builtin"
transport = "{transport}"

[[group]]
name = "callees"
endpoints = 3
registrar = "builtin"
role = "answer"
answer_delay = "50ms"
{callees}

[[group]]
name = "callers"
endpoints = 3
registrar = "builtin"
call = "group:callees"
{callers}
"#
    )
}

/// The audio section's lines of the SDP in the first message `r` sent that starts with
/// `first` and has a body.
fn sdp_sent<'a>(r: &'a EndpointReport, first: &str) -> &'a str {
    r.trace
        .iter()
        .filter(|t| t.direction == Direction::Sent && t.text.starts_with(first))
        .filter_map(|t| t.text.split_once("\r\n\r\n").map(|(_, b)| b))
        .find(|b| b.contains("m=audio"))
        .unwrap_or_else(|| panic!("{}: no SDP in a sent {first}", r.user))
}

fn assert_success(r: &EndpointReport) {
    assert_eq!(
        r.outcome,
        Outcome::Success,
        "{}: {:?} {:?}",
        r.user,
        r.error,
        notes(r)
    );
}

/// The trace notes about ICE (and its STUN and TURN servers).
fn notes(r: &EndpointReport) -> Vec<&str> {
    r.trace
        .iter()
        .filter(|t| ["ICE", "TURN", "STUN"].iter().any(|w| t.text.contains(w)))
        .map(|t| t.text.as_str())
        .collect()
}

#[test]
fn webrtc_style_calls_over_wss_connect_ice_then_dtls_then_media() {
    let webrtc = "ice = true\nsrtp = \"dtls\"\nrtcp_mux = true";
    let (summary, reports) = run_file(&file("wss", webrtc, webrtc));
    assert_eq!(summary.calls_answered, 3, "{summary:?}");
    assert_eq!(reports.len(), 6);
    for r in &reports {
        assert_success(r);
        let m = r.media.as_ref().expect("media measured");
        let ice = m.ice.as_ref().expect("an ice report");
        assert_eq!(ice.state, "connected", "{}: {ice:?} {:?}", r.user, notes(r));
        assert_eq!(
            (ice.connected, ice.failures, ice.fallbacks),
            (1, 0, 0),
            "{ice:?}"
        );
        assert!(ice.checks_sent >= 1 && ice.checks_received >= 1, "{ice:?}");
        let ms = ice.connected_ms.expect("time to connected");
        assert!(ms > 0.0 && ms < 3000.0, "{ice:?}");
        assert_eq!(ice.remote_candidate, Some("host"), "{ice:?}");
        let pair = ice.selected_pair.as_deref().expect("a selected pair");
        assert!(
            pair.starts_with("127.0.0.1:") && pair.contains(" -> 127.0.0.1:"),
            "{pair}"
        );
        // DTLS and media went over the pair: keyed, and audio measured from what arrived.
        assert_eq!(m.dtls_failures, 0, "{m:?}");
        assert!(m.srtp.is_some(), "{m:?}");
        assert!(m.rx_packets >= 50, "{}: {m:?}", r.user);
        assert!(m.mos.is_some_and(|x| x > 4.0), "{m:?}");
        let n = notes(r);
        assert!(n.iter().any(|t| t.contains("ICE connected after")), "{n:?}");
        assert!(n.iter().any(|t| t.contains("ICE selected pair")), "{n:?}");
    }
    let caller = reports.iter().find(|r| r.group == "callers").unwrap();
    let offer = sdp_sent(caller, "INVITE ");
    for line in [
        "a=ice-ufrag:",
        "a=ice-pwd:",
        "a=candidate:",
        " typ host",
        "a=end-of-candidates",
        "a=rtcp-mux",
        "UDP/TLS/RTP/SAVP",
    ] {
        assert!(offer.contains(line), "{line} not in {offer}");
    }
    // One component with rtcp-mux.
    assert_eq!(offer.matches("a=candidate:").count(), 1, "{offer}");
    let callee = reports.iter().find(|r| r.group == "callees").unwrap();
    let answer = sdp_sent(callee, "SIP/2.0 200");
    assert!(
        answer.contains("a=ice-ufrag:") && answer.contains("a=candidate:"),
        "{answer}"
    );
}

/// Plain RTP without rtcp-mux: two components (RTP and RTCP sockets), each checked and
/// selected on both sides.
#[test]
fn two_components_without_rtcp_mux_over_udp() {
    let (summary, reports) = run_file(&file("udp", "ice = true", "ice = true"));
    assert_eq!(summary.calls_answered, 3, "{summary:?}");
    for r in &reports {
        assert_success(r);
        let m = r.media.as_ref().expect("media measured");
        assert_eq!(m.ice.as_ref().map(|i| i.state), Some("connected"), "{m:?}");
        assert!(m.rx_packets >= 50, "{m:?}");
        let n = notes(r);
        for c in ["component 1", "component 2"] {
            assert!(n.iter().any(|t| t.contains(c)), "{c}: {n:?}");
        }
    }
    let caller = reports.iter().find(|r| r.group == "callers").unwrap();
    assert_eq!(
        sdp_sent(caller, "INVITE ").matches("a=candidate:").count(),
        2
    );
}

/// A callee without ICE: its answer has no ICE attributes, so our caller falls back to its
/// c=/m= address (RFC 8445 §5.1), traced; media flows both ways. Our ICE callee answering
/// a caller without ICE puts none in its answer (RFC 8839 §4.2.1).
#[test]
fn a_peer_without_ice_gets_the_fallback_and_media() {
    let (summary, reports) = run_file(&file("udp", "", "ice = true"));
    assert_eq!(summary.calls_answered, 3, "{summary:?}");
    for r in &reports {
        assert_success(r);
        let m = r.media.as_ref().expect("media measured");
        assert!(m.rx_packets >= 50, "{}: {m:?}", r.user);
    }
    for r in reports.iter().filter(|r| r.group == "callers") {
        let ice = r.media.as_ref().unwrap().ice.as_ref().expect("ice report");
        assert_eq!(
            (ice.state, ice.fallbacks, ice.checks_sent),
            ("fallback", 1, 0),
            "{ice:?}"
        );
        let n = notes(r);
        assert!(n.iter().any(|t| t.contains("has no ICE")), "{n:?}");
    }
    for r in reports.iter().filter(|r| r.group == "callees") {
        assert!(r.media.as_ref().unwrap().ice.is_none());
    }
    let (summary, reports) = run_file(&file("udp", "ice = true", ""));
    assert_eq!(summary.calls_answered, 3, "{summary:?}");
    for r in &reports {
        assert_success(r);
        assert!(r.media.as_ref().unwrap().rx_packets >= 50);
    }
    let callee = reports.iter().find(|r| r.group == "callees").unwrap();
    let answer = sdp_sent(callee, "SIP/2.0 200");
    assert!(!answer.contains("a=ice-"), "{answer}");
}

/// Hold and resume by re-INVITE (our caller's offers carry the same ICE credentials, RFC
/// 8839 §4.4.1.1.2): the ICE session is kept — no restart, the same selected pair, DTLS
/// not redone — and the media resumes over it.
#[test]
fn hold_and_resume_keep_the_ice_session() {
    let webrtc = "ice = true\nsrtp = \"dtls\"\nrtcp_mux = true";
    let caller = format!(
        "{webrtc}\nactions = [{{ at = \"1s\", do = \"hold\" }}, {{ at = \"2s\", do = \"resume\" }}]"
    );
    let (summary, reports) = run_file(&file("ws", webrtc, &caller));
    assert_eq!(summary.calls_answered, 3, "{summary:?}");
    for r in &reports {
        assert_success(r);
        let m = r.media.as_ref().expect("media measured");
        let ice = m.ice.as_ref().expect("ice report");
        assert_eq!((ice.state, ice.connected), ("connected", 1), "{ice:?}");
        let n = notes(r);
        assert!(!n.iter().any(|t| t.contains("restarts")), "{n:?}");
        assert_eq!(
            n.iter()
                .filter(|t| t.contains("ICE connected after"))
                .count(),
            1,
            "{n:?}"
        );
        assert_eq!((m.dtls_failures, m.srtp_auth_failures), (0, 0), "{m:?}");
        assert!(m.rx_packets >= 50, "{}: {m:?}", r.user);
    }
    let caller = reports.iter().find(|r| r.group == "callers").unwrap();
    let reinvites: Vec<&str> = caller
        .trace
        .iter()
        .filter(|t| t.direction == Direction::Sent && t.text.starts_with("INVITE "))
        .filter_map(|t| t.text.split_once("\r\n\r\n").map(|(_, b)| b))
        .collect();
    assert!(reinvites.len() >= 3, "{reinvites:?}");
    let ufrag = |b: &str| {
        b.lines()
            .find(|l| l.starts_with("a=ice-ufrag:"))
            .map(str::to_owned)
    };
    assert!(ufrag(reinvites[0]).is_some());
    assert!(
        reinvites.iter().all(|b| ufrag(b) == ufrag(reinvites[0])),
        "{reinvites:?}"
    );
    // The callee's answers inside the call keep its ICE attributes (the user agent answers
    // from its description as sent), so the session is kept on both sides.
    let callee = reports.iter().find(|r| r.group == "callees").unwrap();
    let answers: Vec<&str> = callee
        .trace
        .iter()
        .filter(|t| t.direction == Direction::Sent && t.text.starts_with("SIP/2.0 200"))
        .filter(|t| t.text.contains(" INVITE\r\n"))
        .filter_map(|t| t.text.split_once("\r\n\r\n").map(|(_, b)| b))
        .filter(|b| b.contains("m=audio"))
        .collect();
    assert!(answers.len() >= 3, "{answers:?}");
    assert!(ufrag(answers[0]).is_some(), "{answers:?}");
    assert!(
        answers.iter().all(|b| ufrag(b) == ufrag(answers[0])),
        "{answers:?}"
    );
}

fn coturn() -> Option<Coturn> {
    if !available("turnserver", "coturn") {
        return None;
    }
    Some(Coturn::start(&CoturnConfig::default()).unwrap_or_else(|e| panic!("{e}")))
}

/// A group's keys for ICE through `server` as user `u` with `password`; `relay`: only the
/// relayed candidate.
fn turn_keys(server: &Coturn, password: &str, relay: bool) -> String {
    format!(
        "ice = true\nrtcp_mux = true\n{}turn_server = \"{}\"\nturn_user = \"u\"\n\
         turn_password = \"{password}\"",
        if relay {
            "ice_policy = \"relay\"\n"
        } else {
            ""
        },
        server.addr()
    )
}

#[test]
fn relay_only_calls_go_through_coturn() {
    let Some(server) = coturn() else {
        return;
    };
    let ice = turn_keys(&server, "p", true);
    let (summary, reports) = run_file(&file("udp", &ice, &ice));
    assert_eq!(summary.calls_answered, 3, "{summary:?}");
    assert_eq!(reports.len(), 6);
    for r in &reports {
        assert_success(r);
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
    let offer = sdp_sent(caller, "INVITE ");
    assert_eq!(offer.matches("a=candidate:").count(), 1, "{offer}");
    assert!(offer.contains(" typ relay raddr "), "{offer}");
    // coturn's own account: six allocations, channels bound, released.
    let log = server.log();
    let count = |s: &str| log.matches(s).count();
    assert!(
        count("incoming packet ALLOCATE processed, success") >= 6,
        "{log}"
    );
    assert!(
        count("incoming packet CHANNEL_BIND processed, success") >= 6,
        "{log}"
    );
    assert!(count("lifetime=0") >= 6, "allocations released: {log}");
}

#[test]
fn a_wrong_turn_password_fails_the_call_naming_turn_401() {
    let Some(server) = coturn() else {
        return;
    };
    let ice = turn_keys(&server, "wrong", true);
    let (_, reports) = run_file(&file("udp", &ice, &ice));
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
    let (summary, reports) = run_file(&file("udp", &ice, &ice));
    assert_eq!(summary.calls_answered, 3, "{summary:?}");
    for r in &reports {
        assert_success(r);
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
    let ice = turn_keys(&server, "wrong", false);
    let (summary, reports) = run_file(&file("udp", &ice, &ice));
    assert_eq!(summary.calls_answered, 3, "{summary:?}");
    for r in &reports {
        assert_success(r);
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

/// ICE groups (`ice_keys`, `calls` calls each) and a plain group on one shard
/// (`shards = 1`): one ICE caller and callee, two plain callers making three calls each.
fn alongside(ice_keys: &str, ice_endpoints: u32, ice_calls: u32) -> String {
    format!(
        r#"
name = "gathering alongside plain calls"
duration = "1s"
seed = 12
shards = 1
time_limit = "40s"

[[registrar]]
id = "builtin"
kind = "builtin"
transport = "udp"

[[group]]
name = "ice_callees"
endpoints = {ice_endpoints}
registrar = "builtin"
role = "answer"
answer_delay = "10ms"
{ice_keys}

[[group]]
name = "ice_callers"
endpoints = {ice_endpoints}
registrar = "builtin"
call = "group:ice_callees"
calls = {ice_calls}
{ice_keys}

[[group]]
name = "plain_callees"
endpoints = 2
registrar = "builtin"
role = "answer"
answer_delay = "10ms"

[[group]]
name = "plain_callers"
endpoints = 2
registrar = "builtin"
call = "group:plain_callees"
calls = 3
pause = "50ms"
"#
    )
}

/// When (ms since the run's start) `r` received a 2xx to an INVITE.
fn answers_received(r: &EndpointReport) -> Vec<f64> {
    r.trace
        .iter()
        .filter(|t| t.direction == Direction::Received && t.text.starts_with("SIP/2.0 200"))
        .filter(|t| t.text.contains(" INVITE\r\n"))
        .map(|t| t.at_ms)
        .collect()
}

/// When (ms since the run's start) `r` first sent a message starting with `start`.
fn first_sent(r: &EndpointReport, start: &str) -> f64 {
    r.trace
        .iter()
        .find(|t| t.direction == Direction::Sent && t.text.starts_with(start))
        .map(|t| t.at_ms)
        .unwrap_or_else(|| panic!("{}: no {start:?} sent", r.user))
}

/// A STUN and TURN "server" that never answers (a bound socket that reads nothing), and the
/// group keys naming it.
fn silent_ice_servers() -> (std::net::UdpSocket, String) {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let ice = format!(
        "ice = true\nrtcp_mux = true\nstun_server = \"{addr}\"\nturn_server = \"{addr}\"\n\
         turn_user = \"u\"\nturn_password = \"p\""
    );
    (silent, ice)
}

/// A STUN and a TURN server that never answer (a bound socket that reads nothing) cost an
/// ICE call its gathering limit (2 s) before its INVITE, and its callee the same before its
/// answer, but only them: on the same shard the plain group's calls are set up and
/// answered meanwhile, with their usual setup times. (When gathering blocked the shard,
/// nothing else on it moved for those 2 s: no plain call could be answered inside the ICE
/// caller's gathering.) The silent servers are notes, not failures: the host pair carries
/// the ICE call (`ice_policy = "all"`).
#[test]
fn a_silent_ice_server_holds_its_own_calls_not_the_shard() {
    let (silent, ice) = silent_ice_servers();
    let (summary, reports) = run_file(&alongside(&ice, 1, 1));
    assert_eq!(summary.calls_answered, 7, "{summary:?}");
    for r in &reports {
        assert_success(r);
    }
    // Each plain call lasted its 1 s: its BYE was not held up behind a gathering (a
    // blocked shard made a call in progress last 1 s + the 2 s of the callee's gathering).
    for r in reports.iter().filter(|r| r.group == "plain_callers") {
        let byes: Vec<f64> = r
            .trace
            .iter()
            .filter(|t| t.direction == Direction::Sent && t.text.starts_with("BYE "))
            .map(|t| t.at_ms)
            .collect();
        let answers = answers_received(r);
        assert_eq!((answers.len(), byes.len()), (3, 3), "{}", r.user);
        for (a, b) in answers.iter().zip(&byes) {
            assert!(
                b - a < 1500.0,
                "{}: answered at {a} ms, BYE at {b} ms",
                r.user
            );
        }
    }
    let ice_caller = reports.iter().find(|r| r.group == "ice_callers").unwrap();
    let note_at = |r: &EndpointReport, what: &str| {
        r.trace
            .iter()
            .find(|t| t.direction == Direction::Note && t.text.contains(what))
            .map(|t| t.at_ms)
            .unwrap_or_else(|| panic!("{}: no {what:?} in {:?}", r.user, notes(r)))
    };
    let began = note_at(ice_caller, "ICE gathering started");
    let ended = note_at(
        ice_caller,
        "ICE gathering took 2000 ms (STUN no answer, TURN no allocation)",
    );
    let invite = first_sent(ice_caller, "INVITE ");
    assert!(
        invite >= ended && ended >= began + 1990.0,
        "{began} {ended} {invite}"
    );
    for r in reports.iter().filter(|r| r.group.starts_with("ice_")) {
        let ice = r.media.as_ref().and_then(|m| m.ice.as_ref()).expect("ice");
        assert_eq!(
            (ice.gathered, ice.gathering_max_ms, ice.turn_failures),
            (1, Some(2000.0), 1),
            "{ice:?}"
        );
        assert_eq!(ice.local_candidate, Some("host"), "{ice:?}");
        let n = notes(r);
        assert!(
            n.iter()
                .any(|t| t.contains("STUN") && t.contains("no answer")),
            "{n:?}"
        );
    }
    // The plain calls went on while the ICE caller gathered.
    let mut inside = 0;
    for r in reports.iter().filter(|r| r.group == "plain_callers") {
        assert_eq!(r.calls_attempted, 3, "{}", r.user);
        inside += answers_received(r)
            .iter()
            .filter(|&&t| t > began && t < ended)
            .count();
        let setup = r.timings.call_setup_ms.expect("a setup time");
        assert!(setup < 500.0, "{}: setup {setup} ms", r.user);
    }
    assert!(
        inside >= 2,
        "{inside} plain calls answered during the gathering"
    );
    drop(silent);
}

/// A callee gathers from the INVITE on, beside its ringing: with a silent STUN/TURN server
/// (2 s to give up) and `answer_delay = "2s"`, its answer comes 2 s after the INVITE, not
/// 4 s (the delay, then the gathering). A callee gathering only at its answer made each
/// call's setup the sum of both.
#[test]
fn a_callee_gathers_while_it_rings() {
    let (silent, ice) = silent_ice_servers();
    let text =
        alongside(&ice, 1, 1).replacen("answer_delay = \"10ms\"", "answer_delay = \"2s\"", 1);
    let (summary, reports) = run_file(&text);
    assert_eq!(summary.calls_answered, 7, "{summary:?}");
    for r in &reports {
        assert_success(r);
    }
    let caller = reports.iter().find(|r| r.group == "ice_callers").unwrap();
    let setup = caller.timings.call_setup_ms.expect("a setup time");
    assert!((1900.0..3000.0).contains(&setup), "setup {setup} ms");
    let callee = reports.iter().find(|r| r.group == "ice_callees").unwrap();
    let at = |what: &str| {
        callee
            .trace
            .iter()
            .find(|t| t.text.starts_with(what))
            .map(|t| t.at_ms)
            .unwrap_or_else(|| panic!("no {what:?} in {:#?}", callee.trace))
    };
    let invite = at("INVITE ");
    let began =
        at("ICE gathering started at the INVITE, beside the ringing: the answer, due in 2000 ms");
    let ended = at("ICE gathering took 2000 ms");
    let answer = first_sent(callee, "SIP/2.0 200 ");
    assert!(
        began - invite < 100.0,
        "INVITE at {invite} ms, gathering at {began} ms"
    );
    assert!(
        (1990.0..2300.0).contains(&(answer - invite)) && answer >= ended,
        "INVITE at {invite} ms, gathered at {ended} ms, answered at {answer} ms"
    );
    drop(silent);
}

/// Relay-only calls through coturn, two per caller, beside plain calls on one shard: each
/// call's INVITE and answer wait for its own allocation (timed in the report and the
/// trace), the relayed candidates carry the media, and the plain calls are unaffected.
#[test]
fn relayed_calls_gather_beside_plain_calls_on_one_shard() {
    let Some(server) = coturn() else {
        return;
    };
    let ice = turn_keys(&server, "p", true);
    let (summary, reports) = run_file(&alongside(&ice, 2, 2));
    assert_eq!(summary.calls_answered, 10, "{summary:?}");
    for r in &reports {
        assert_success(r);
    }
    for r in reports.iter().filter(|r| r.group.starts_with("ice_")) {
        let m = r.media.as_ref().expect("media measured");
        let ice = m.ice.as_ref().expect("an ice report");
        assert_eq!(
            (ice.local_candidate, ice.remote_candidate),
            (Some("relay"), Some("relay")),
            "{}: {ice:?} {:?}",
            r.user,
            notes(r)
        );
        assert_eq!((ice.gathered, ice.turn_failures), (2, 0), "{ice:?}");
        let max = ice.gathering_max_ms.expect("gathering timed");
        assert!(max > 0.0 && max < 2000.0, "{ice:?}");
        assert!(m.rx_packets >= 50, "{}: {m:?}", r.user);
        let n = notes(r);
        assert_eq!(
            n.iter()
                .filter(|t| t.starts_with("ICE gathering took ") && t.contains("TURN "))
                .count(),
            2,
            "{n:?}"
        );
        // The offer or answer went after its allocation.
        let allocated = r
            .trace
            .iter()
            .position(|t| t.text.starts_with("TURN allocation: relayed"))
            .expect("an allocation");
        let sdp = r
            .trace
            .iter()
            .position(|t| {
                t.direction == Direction::Sent
                    && (t.text.starts_with("INVITE ") || t.text.starts_with("SIP/2.0 200"))
                    && t.text.contains(" typ relay ")
            })
            .expect("an SDP with the relayed candidate");
        assert!(allocated < sdp, "{n:?}");
    }
    for r in reports.iter().filter(|r| r.group == "plain_callers") {
        assert_eq!(r.calls_attempted, 3, "{}", r.user);
    }
}
