//! RFC 5626 SIP Outbound (`outbound = true`) against a real Kamailio with its `outbound`,
//! `path` and `stun` modules (registrar `outbound_mode` 1, a Flow-Timer): the REGISTER carries
//! `+sip.instance` and `reg-id`, Kamailio answers `Require: outbound`, the flows are kept
//! alive (CRLF ping/pong over TCP, STUN Binding over UDP, answers counted), calls go through,
//! and a flow that fails — its connection cut, or gone silent so the pong never comes — is
//! found failed and registered again over a new one.
//!
//! Skipped with a message when `kamailio` or `kamailio-outbound-modules` is absent (fails
//! instead with `SIPMETER_REQUIRE_PEERS=1`).

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use agent::builtin::BuiltinRegistrar;
use agent::engine::{EndpointReport, Outcome, RunSummary};
use agent::trace::Direction;
use registrar::{AuthMode, RegistrarConfig};
use sip_msg::Host;
use sip_net::tls::CertificateAuthority;
use testpeers::{
    Kamailio, KamailioConfig, KamailioOutbound, TempDir, User, outbound_available, tls_available,
    websocket_available,
};

mod relay_common;
mod streams_common;

use relay_common::{Relay, Relayed};

fn kamailio(flow_timer: u32) -> Kamailio {
    let users = (1001..=1020)
        .map(|n| User::new(&n.to_string(), &format!("pw{n}")))
        .collect();
    Kamailio::start(&KamailioConfig {
        users,
        outbound: Some(KamailioOutbound { flow_timer }),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A test file for Kamailio's accounts 1001–1020 with `outbound = true` on registrar "kam"
/// at 127.0.0.1: `registrar` holds its other keys, `groups` the groups.
fn test_file(duration: &str, shards: u32, registrar: &str, groups: &str) -> String {
    format!(
        r#"
name = "kamailio outbound"
duration = "{duration}"
seed = 11
shards = {shards}
time_limit = "60s"

[[registrar]]
id = "kam"
domain = "127.0.0.1"
{registrar}
outbound = true

[[accounts]]
registrar = "kam"
range = {{ from = 1001, to = 1020, password = "pw{{n}}" }}
{groups}"#
    )
}

/// `n` callees, and `n` callers calling them once.
fn calls(n: u32) -> String {
    format!(
        r#"
[[group]]
name = "callees"
endpoints = {n}
registrar = "kam"
role = "answer"
answer_delay = "100ms"

[[group]]
name = "callers"
endpoints = {n}
registrar = "kam"
call = "group:callees"
"#
    )
}

/// 10 callers call 10 callees through Kamailio over `transport`, calls lasting `duration`.
fn run_calls(transport: &str, port: u16, duration: &str) -> (RunSummary, Vec<EndpointReport>) {
    let text = test_file(
        duration,
        2,
        &format!("port = {port}\ntransport = \"{transport}\""),
        &calls(10),
    );
    streams_common::run_file("outbound.toml", &text)
}

fn sent<'a>(r: &'a EndpointReport, start: &str) -> Vec<&'a str> {
    r.trace
        .iter()
        .filter(|e| e.direction == Direction::Sent && e.first_line().starts_with(start))
        .map(|e| e.text.as_str())
        .collect()
}

fn received<'a>(r: &'a EndpointReport, start: &str) -> Vec<&'a str> {
    r.trace
        .iter()
        .filter(|e| e.direction == Direction::Received && e.first_line().starts_with(start))
        .map(|e| e.text.as_str())
        .collect()
}

/// Every endpoint SUCCESS; REGISTER with instance and reg-id, `Require: outbound` and the
/// Flow-Timer in the 200, the callers' INVITEs with `ob`, outbound in use for all.
fn assert_outbound_calls(k: &Kamailio, summary: &RunSummary, reports: &[EndpointReport]) {
    assert_eq!(reports.len(), 20);
    let mut instances = std::collections::HashSet::new();
    for r in reports {
        assert_eq!(
            r.outcome,
            Outcome::Success,
            "{r:#?}\nkamailio log:\n{}",
            k.log()
        );
        let registers = sent(r, "REGISTER ");
        let first = registers.first().expect("a REGISTER");
        assert!(first.contains("Supported: path, outbound\r\n"), "{first}");
        let contact = first
            .lines()
            .find(|l| l.starts_with("Contact: "))
            .unwrap_or_else(|| panic!("{first}"));
        assert!(
            contact.contains(";reg-id=1;+sip.instance=\"<urn:uuid:"),
            "{contact}"
        );
        let urn = contact.split("<urn:uuid:").nth(1).unwrap().to_owned();
        // The same instance in every REGISTER of the endpoint (un-REGISTER included).
        assert!(registers.iter().all(|m| m.contains(&urn)), "{registers:#?}");
        instances.insert(urn);
        let ok = received(r, "SIP/2.0 200 ");
        assert!(
            ok.iter()
                .any(|m| m.contains("Require: outbound\r\n") && m.contains("Flow-Timer: 2\r\n")),
            "{ok:#?}"
        );
        let notes = streams_common::notes(r);
        streams_common::note_at(
            &notes,
            "outbound in use: Require: outbound in the 2xx; Flow-Timer: 2;",
        );
        assert!(
            !notes.iter().any(|n| n.starts_with("outbound flow failed")),
            "{notes:#?}"
        );
    }
    assert_eq!(instances.len(), 20, "one instance per endpoint");
    for r in reports.iter().filter(|r| r.group == "callers") {
        let invites = sent(r, "INVITE ");
        assert!(!invites.is_empty());
        for inv in invites {
            let contact = inv.lines().find(|l| l.starts_with("Contact: ")).unwrap();
            assert!(contact.ends_with(";ob>"), "RFC 5626 §4.3: {contact}");
        }
    }
    assert_eq!((summary.calls_attempted, summary.calls_answered), (10, 10));
    let o = summary.outbound.as_ref().expect("the outbound summary");
    assert_eq!(
        (
            o.endpoints_in_use,
            o.endpoints_not_granted,
            o.flow_failures,
            o.recoveries
        ),
        (20, 0, 0, 0),
        "{o:?}"
    );
    // Keep-alives every 1.6–2 s for the ~3 s each endpoint lives at least: one each, answered.
    assert!(o.pongs >= 20, "{o:?}");
    assert!(o.keepalives_sent >= o.pongs, "{o:?}");
    assert!(
        o.keepalives_sent <= o.pongs + 20,
        "at most one unanswered each: {o:?}"
    );
}

#[test]
fn calls_through_kamailio_over_tcp_register_with_outbound_and_count_pongs() {
    if !outbound_available() {
        return;
    }
    let k = kamailio(2);
    let (summary, reports) = run_calls("tcp", k.port(), "3s");
    assert_outbound_calls(&k, &summary, &reports);
}

#[test]
fn calls_through_kamailio_over_udp_keep_the_flow_with_stun() {
    if !outbound_available() {
        return;
    }
    let k = kamailio(2);
    let (summary, reports) = run_calls("udp", k.port(), "3s");
    assert_outbound_calls(&k, &summary, &reports);
    for r in &reports {
        let notes = streams_common::notes(r);
        let i = streams_common::note_at(&notes, "STUN Binding response from ");
        // Kamailio's stun module saw us at our own loopback address (no NAT here).
        assert!(
            notes[i].contains("the flow's peer sees us at 127.0.0.1:"),
            "{}",
            notes[i]
        );
    }
}

/// `n` endpoints that only register (for `duration`) through the relay over TCP.
fn run_registered(relay: &Relay, n: u32, duration: &str) -> (RunSummary, Vec<EndpointReport>) {
    let text = test_file(
        duration,
        1,
        &format!("port = {}\ntransport = \"tcp\"", relay.addr.port()),
        &format!(
            "\n[[group]]\nname = \"phones\"\nendpoints = {n}\nregistrar = \"kam\"\nrole = \"register\"\n"
        ),
    );
    streams_common::run_file("outbound-failure.toml", &text)
}

/// The endpoint found its flow failed (`why`) and registered again over a new connection:
/// the notes in that order, and two REGISTERs answered 200 before the un-REGISTER.
fn assert_recovered(r: &EndpointReport, why: &str, k: &Kamailio) {
    assert_eq!(
        r.outcome,
        Outcome::Success,
        "{r:#?}\nkamailio log:\n{}",
        k.log()
    );
    let notes = streams_common::notes(r);
    let in_use = streams_common::note_at(&notes, "outbound in use");
    let failed = streams_common::note_at(&notes, "outbound flow failed: ");
    assert!(notes[failed].contains(why), "{}", notes[failed]);
    let recovered = streams_common::note_at(&notes, "outbound flow recovered");
    assert!(in_use < failed && failed < recovered, "{notes:#?}");
    let registers: Vec<_> = r
        .trace
        .iter()
        .filter(|e| e.direction == Direction::Sent && e.first_line().starts_with("REGISTER "))
        .collect();
    let locals: std::collections::HashSet<_> = registers.iter().map(|e| e.local).collect();
    assert!(locals.len() >= 2, "a new connection registered: {locals:?}");
    let urns: std::collections::HashSet<_> = registers
        .iter()
        .filter_map(|e| e.text.split("+sip.instance=").nth(1)?.lines().next())
        .collect();
    assert_eq!(urns.len(), 1, "one instance over both flows: {urns:?}");
}

/// `n` phones registered over TCP through a relay to Kamailio (Flow-Timer `flow_timer`) for
/// `duration`; `after` in, `break_flows` is done to the connections relayed so far. Each phone
/// must find its flow failed (`why`), and register again over a new one (the relay accepts a
/// second connection each). The run's summary.
fn flows_fail_and_recover(
    flow_timer: u32,
    n: u32,
    duration: &str,
    after: Duration,
    break_flows: fn(&Mutex<Vec<Relayed>>),
    why: &str,
) -> RunSummary {
    let k = kamailio(flow_timer);
    let relay = Relay::start(k.addr());
    let breaker = {
        let conns = relay.conns.clone();
        std::thread::spawn(move || {
            std::thread::sleep(after);
            break_flows(&conns);
        })
    };
    let (summary, reports) = run_registered(&relay, n, duration);
    breaker.join().unwrap();
    for r in &reports {
        assert_recovered(r, why, &k);
        let e = r.outbound.as_ref().unwrap();
        assert_eq!(
            (e.in_use, e.flow_timer, e.flow_failures, e.recoveries),
            (true, Some(flow_timer), 1, 1),
            "{e:?}"
        );
    }
    assert_each_recovered_once(&summary, &relay, n);
    summary
}

/// Each of the `n` phones failed and recovered once, over a second connection through
/// `relay` (then closed).
fn assert_each_recovered_once(summary: &RunSummary, relay: &Relay, n: u32) {
    let o = summary.outbound.clone().unwrap();
    assert_eq!(
        (o.endpoints_in_use, o.flow_failures, o.recoveries),
        (n, u64::from(n), u64::from(n)),
        "{o:?}"
    );
    assert_eq!(
        relay.accepted(),
        2 * n,
        "one connection each, then a new one each"
    );
    Relay::cut(&relay.conns);
}

#[test]
fn a_cut_flow_is_found_failed_and_registered_again() {
    if !outbound_available() {
        return;
    }
    // Flow-Timer 20: no ping before the cut, 1.5 s in.
    flows_fail_and_recover(
        20,
        3,
        "4s",
        Duration::from_millis(1500),
        Relay::cut,
        "the connection closed",
    );
}

#[test]
fn a_silent_flow_fails_on_the_missing_pong_and_is_registered_again() {
    if !outbound_available() {
        return;
    }
    // Flow-Timer 2: a ping every 1.6–2 s; the first connections go silent 3 s in (the new
    // ones are relayed), so a ping goes unanswered and the flow fails 10 s later.
    let summary = flows_fail_and_recover(
        2,
        2,
        "17s",
        Duration::from_millis(3000),
        Relay::silence,
        "no CRLF pong within 10000 ms",
    );
    let o = summary.outbound.unwrap();
    assert!(o.pongs >= 2, "pongs before the silence: {o:?}");
}

/// Two Kamailio for RFC 5626 §5: a registrar (`outbound_mode` 1, `use_path`, Flow-Timer 2)
/// and an edge proxy in front of it (`outbound`, `path`, `stun`; 407 on INVITE, Record-Route)
/// that adds a Path to REGISTER and sends what comes back along it down the phone's flow. The
/// edge listens for TLS (certificate from `ca`) and WebSocket when asked; it reaches the
/// registrar over UDP.
struct EdgePair {
    registrar: Kamailio,
    edge: Kamailio,
}

impl EdgePair {
    fn start(ca: Option<&CertificateAuthority>, websocket: bool) -> EdgePair {
        let users = || {
            (1001..=1020)
                .map(|n| User::new(&n.to_string(), &format!("pw{n}")))
                .collect()
        };
        let registrar = Kamailio::start(&KamailioConfig {
            users: users(),
            invite_auth: false,
            outbound: Some(KamailioOutbound { flow_timer: 2 }),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let edge = Kamailio::start(&KamailioConfig {
            users: users(),
            forward_to: Some(format!("sip:127.0.0.1:{}", registrar.port())),
            outbound: Some(KamailioOutbound { flow_timer: 0 }),
            edge: true,
            tls: ca.map(streams_common::kamailio_tls),
            websocket,
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        EdgePair { registrar, edge }
    }

    fn logs(&self) -> String {
        format!(
            "edge log:\n{}\nregistrar log:\n{}",
            self.edge.log(),
            self.registrar.log()
        )
    }

    /// The registrar saw the edge's Path with `ob` (the flow), and the edge sent an INVITE
    /// along a Path.
    fn assert_path_with_ob(&self) {
        let path = self
            .registrar
            .log()
            .lines()
            .find(|l| l.contains("REGISTER from 1001 with Path: <sip:"))
            .unwrap_or_else(|| panic!("no Path at the registrar: {}", self.logs()))
            .to_owned();
        assert!(
            path.contains(&format!("@127.0.0.1:{};lr;ob>", self.edge.port())),
            "the Path names the edge and the flow (ob): {path}\n{}",
            self.logs()
        );
        assert!(
            self.edge.log().contains("edge: INVITE along the Path to "),
            "{}",
            self.logs()
        );
    }
}

/// `calls(n)` through the edge proxy at `proxy` over `transport` (`extra`: more registrar
/// keys), the registrar named by its UDP port.
fn run_through_edge(
    pair: &EdgePair,
    transport: &str,
    proxy: SocketAddr,
    groups: &str,
    duration: &str,
    extra: &str,
) -> (RunSummary, Vec<EndpointReport>) {
    let text = test_file(
        duration,
        1,
        &format!(
            "port = {}\ntransport = \"{transport}\"\noutbound_proxy = \"{proxy}\"\n{extra}",
            pair.registrar.port(),
        ),
        groups,
    );
    streams_common::run_file("outbound-edge.toml", &text)
}

/// Each endpoint SUCCESS and granted outbound; every REGISTER went to `proxy` with `route`;
/// each callee's INVITE came from `proxy` on the flow (the local address) its last REGISTER
/// before it used.
fn assert_through_edge(
    logs: impl Fn() -> String,
    reports: &[EndpointReport],
    proxy: SocketAddr,
    route: &str,
) {
    for r in reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}\n{}", logs());
        for reg in r
            .trace
            .iter()
            .filter(|e| e.direction == Direction::Sent && e.first_line().starts_with("REGISTER "))
        {
            assert_eq!(reg.remote, Some(proxy), "{}", reg.text);
            assert!(
                reg.text.contains(&format!("Route: {route}\r\n")),
                "{}",
                reg.text
            );
        }
        let ok = received(r, "SIP/2.0 200 ");
        assert!(
            ok.iter().any(|m| m.contains("Require: outbound\r\n")),
            "{ok:#?}\n{}",
            logs()
        );
    }
    for r in reports.iter().filter(|r| r.group == "callees") {
        let at = r
            .trace
            .iter()
            .position(|e| {
                e.direction == Direction::Received && e.first_line().starts_with("INVITE ")
            })
            .expect("the callee got its call");
        let invite = &r.trace[at];
        assert_eq!(invite.remote, Some(proxy), "{}", invite.text);
        let register = r.trace[..at]
            .iter()
            .rev()
            .find(|e| e.direction == Direction::Sent && e.first_line().starts_with("REGISTER "))
            .expect("registered before the call");
        assert_eq!(
            invite.local, register.local,
            "the call came over the flow the REGISTER made"
        );
    }
}

/// RFC 5626 §5 with two Kamailio, over UDP with `outbound_proxy`: the REGISTER goes to the
/// edge with its Route (`ob`), the edge adds a Path with `ob`, the registrar answers `Require:
/// outbound`; STUN keep-alives go to the edge; calls reach the callees from the edge along
/// the Path.
#[test]
fn through_a_kamailio_edge_proxy_the_register_gets_a_path_and_calls_come_over_the_flow() {
    if !outbound_available() {
        return;
    }
    let pair = EdgePair::start(None, false);
    let edge = pair.edge.addr();
    let (summary, reports) = run_through_edge(&pair, "udp", edge, &calls(3), "3s", "");
    assert_through_edge(
        || pair.logs(),
        &reports,
        edge,
        &format!("<sip:127.0.0.1:{};lr;ob>", edge.port()),
    );
    for r in &reports {
        let notes = streams_common::notes(r);
        let i = streams_common::note_at(&notes, "STUN Binding response from ");
        assert!(notes[i].contains(&format!("from {edge}:")), "{}", notes[i]);
    }
    pair.assert_path_with_ob();
    assert_eq!(summary.calls_answered, 3);
    let o = summary.outbound.unwrap();
    assert_eq!((o.endpoints_in_use, o.flow_failures), (6, 0), "{o:?}");
    assert!(o.pongs >= 6, "{o:?}");
}

/// The same over a stream transport (RFC 5626 §3.2: the flow is the phone's connection to
/// the edge): only a connection to the edge is opened, REGISTER and INVITE both go on it with
/// the edge's Route, and the calls come back on it.
fn through_the_edge_over_a_stream(
    pair: &EdgePair,
    transport: &str,
    proxy: SocketAddr,
    extra: &str,
) -> RunSummary {
    let (summary, reports) = run_through_edge(pair, transport, proxy, &calls(3), "3s", extra);
    let route = format!(
        "<sip:127.0.0.1:{};transport={transport};lr;ob>",
        proxy.port()
    );
    assert_through_edge(|| pair.logs(), &reports, proxy, &route);
    for r in &reports {
        let notes = streams_common::notes(r);
        let connects: Vec<_> = notes
            .iter()
            .filter(|n| n.starts_with("connecting over "))
            .collect();
        assert!(!connects.is_empty(), "{notes:#?}");
        assert!(
            connects.iter().all(|n| n.contains(&format!(
                "to the outbound proxy {proxy} (the RFC 5626 flow)"
            ))),
            "one connection, to the edge: {connects:#?}"
        );
        let sends: std::collections::HashSet<_> = r
            .trace
            .iter()
            .filter(|e| e.direction == Direction::Sent)
            .map(|e| (e.local, e.remote))
            .collect();
        assert_eq!(sends.len(), 1, "everything on the one flow: {sends:?}");
    }
    for r in reports.iter().filter(|r| r.group == "callers") {
        for inv in sent(r, "INVITE ") {
            assert!(inv.contains(&format!("Route: {route}\r\n")), "{inv}");
            let contact = inv.lines().find(|l| l.starts_with("Contact: ")).unwrap();
            assert!(contact.ends_with(";ob>"), "RFC 5626 §4.3: {contact}");
        }
    }
    pair.assert_path_with_ob();
    assert_eq!(summary.calls_answered, 3, "{}", pair.logs());
    let o = summary.outbound.clone().unwrap();
    assert_eq!((o.endpoints_in_use, o.flow_failures), (6, 0), "{o:?}");
    summary
}

#[test]
fn through_a_kamailio_edge_proxy_over_tcp_the_flow_is_the_proxy_connection() {
    if !outbound_available() {
        return;
    }
    let pair = EdgePair::start(None, false);
    let summary = through_the_edge_over_a_stream(&pair, "tcp", pair.edge.addr(), "");
    // CRLF keep-alives to the edge (Flow-Timer 2 from the registrar, through the edge).
    let o = summary.outbound.unwrap();
    assert!(o.pongs >= 6, "{o:?}");
}

/// The registrar keys trusting `ca` (its certificate in a file of the returned directory).
fn trusting(ca: &CertificateAuthority) -> (TempDir, String) {
    let dir = TempDir::new("sipmeter-outbound-tls").unwrap();
    let file = dir.path().join("ca.pem");
    std::fs::write(&file, ca.cert_pem()).unwrap();
    let keys = format!("tls_verify = \"custom\"\ntls_ca = \"{}\"", file.display());
    (dir, keys)
}

#[test]
fn through_a_kamailio_edge_proxy_over_tls_the_flow_is_the_proxy_connection() {
    if !outbound_available() || !tls_available() {
        return;
    }
    let ca = CertificateAuthority::new("sipmeter outbound test CA").unwrap();
    let pair = EdgePair::start(Some(&ca), false);
    let (_dir, trust) = trusting(&ca);
    let summary =
        through_the_edge_over_a_stream(&pair, "tls", pair.edge.tls_addr().unwrap(), &trust);
    let o = summary.outbound.unwrap();
    assert!(o.pongs >= 6, "{o:?}");
}

#[test]
fn through_a_kamailio_edge_proxy_over_ws_the_flow_is_the_proxy_connection() {
    if !outbound_available() || !websocket_available() {
        return;
    }
    let pair = EdgePair::start(None, true);
    let ws = SocketAddr::new(pair.edge.addr().ip(), pair.edge.ws_port().unwrap());
    through_the_edge_over_a_stream(&pair, "ws", ws, "");
}

#[test]
fn through_a_kamailio_edge_proxy_over_wss_the_flow_is_the_proxy_connection() {
    if !outbound_available() || !tls_available() || !websocket_available() {
        return;
    }
    let ca = CertificateAuthority::new("sipmeter outbound test CA").unwrap();
    let pair = EdgePair::start(Some(&ca), true);
    let wss = SocketAddr::new(pair.edge.addr().ip(), pair.edge.wss_port().unwrap());
    let (_dir, trust) = trusting(&ca);
    through_the_edge_over_a_stream(&pair, "wss", wss, &trust);
}

/// A flow to the edge cut by a relay between the phones and the edge is found failed, and
/// each phone connects to the edge again and registers over the new flow.
#[test]
fn a_cut_flow_to_the_edge_proxy_is_found_failed_and_registered_again() {
    if !outbound_available() {
        return;
    }
    let pair = EdgePair::start(None, false);
    let relay = Relay::start(pair.edge.addr());
    let n = 3;
    // The flows are cut once every phone's registration was granted outbound (waited for,
    // not timed: a loaded machine registers late).
    let breaker = {
        let (conns, granted) = (relay.conns.clone(), relay.granted.clone());
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while granted.load(Ordering::SeqCst) < n && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            // The last 200 was relayed: a moment for the phones to read it.
            std::thread::sleep(Duration::from_millis(200));
            Relay::cut(&conns);
        })
    };
    let (summary, reports) = run_through_edge(
        &pair,
        "tcp",
        relay.addr,
        &format!(
            "\n[[group]]\nname = \"phones\"\nendpoints = {n}\nregistrar = \"kam\"\nrole = \"register\"\n"
        ),
        "6s",
        "",
    );
    breaker.join().unwrap();
    assert_through_edge(
        || pair.logs(),
        &reports,
        relay.addr,
        &format!("<sip:{};transport=tcp;lr;ob>", relay.addr),
    );
    for r in &reports {
        assert_recovered(r, "the connection closed", &pair.edge);
    }
    assert_each_recovered_once(&summary, &relay, n);
}

/// RFC 5626 §6 at the built-in registrar behind a Kamailio edge proxy (the phones reach the
/// edge over TCP, the edge the registrar over UDP): the REGISTER arrives with the edge's Path
/// (`ob`), the 200 says `Require: outbound` (no Flow-Timer: the edge keeps the flow), and a
/// call to a phone goes from the registrar to the edge with the Path as its Route, then down
/// the phone's flow.
#[test]
fn the_builtin_registrar_behind_a_kamailio_edge_grants_outbound_and_routes_along_the_path() {
    if !outbound_available() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let reg = rt
        .block_on(BuiltinRegistrar::start_udp(
            "127.0.0.1:0".parse().unwrap(),
            RegistrarConfig {
                domain: "127.0.0.1".into(),
                host: Host::parse("127.0.0.1").unwrap(),
                port: 0,
                transport: "UDP".into(),
                auth: AuthMode::Open,
                secret: b"outbound behind an edge".to_vec(),
                min_expires: 10,
                max_expires: 3600,
            },
        ))
        .unwrap();
    let edge = Kamailio::start(&KamailioConfig {
        users: (1001..=1020)
            .map(|n| User::new(&n.to_string(), &format!("pw{n}")))
            .collect(),
        forward_to: Some(format!("sip:{}", reg.addr())),
        outbound: Some(KamailioOutbound { flow_timer: 0 }),
        edge: true,
        invite_auth: false,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let text = test_file(
        "3s",
        1,
        &format!(
            "port = {}\ntransport = \"tcp\"\noutbound_proxy = \"{}\"",
            reg.addr().port(),
            edge.addr()
        ),
        &calls(3),
    );
    let (summary, reports) = streams_common::run_file("outbound-builtin-edge.toml", &text);
    let logs = || format!("edge log:\n{}", edge.log());
    assert_through_edge(
        logs,
        &reports,
        edge.addr(),
        &format!("<sip:{};transport=tcp;lr;ob>", edge.addr()),
    );
    for r in &reports {
        for ok in received(r, "SIP/2.0 200 ")
            .iter()
            .filter(|m| m.contains("REGISTER"))
        {
            assert!(!ok.contains("Flow-Timer"), "not through an edge: {ok}");
        }
        let notes = streams_common::notes(r);
        streams_common::note_at(
            &notes,
            "outbound in use: Require: outbound in the 2xx; no Flow-Timer",
        );
    }
    assert!(
        edge.log().contains("edge: INVITE along the Path to "),
        "{}",
        logs()
    );
    assert_eq!(summary.calls_answered, 3, "{}", logs());
    let o = summary.outbound.unwrap();
    assert_eq!((o.endpoints_in_use, o.flow_failures), (6, 0), "{o:?}");
    let stats = rt.block_on(reg.stop());
    assert!(stats.forwarded >= 3, "{stats:?}");
}
