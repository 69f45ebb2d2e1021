//! `sipmeter run` against a real Kamailio over TCP, TLS, WS and WSS: 10 callers call 10
//! callees (401 on REGISTER, 407 on INVITE, record-routed ACK and BYE), one connection per
//! endpoint, and Kamailio delivers each INVITE on the callee's own connection.
//!
//! Skipped with a message when `kamailio` (or its TLS/WebSocket modules) is absent (fails
//! instead with `SIPMETER_REQUIRE_PEERS=1`).

use agent::engine::{EndpointReport, Outcome, RunSummary};
use agent::flow::FlowKind;
use agent::trace::Direction;
use sip_net::tls::CertificateAuthority;
use testpeers::{
    Kamailio, KamailioConfig, TempDir, User, available, tls_available, websocket_available,
};

mod streams_common;

fn kamailio(tls: Option<&CertificateAuthority>, websocket: bool) -> Kamailio {
    let users = (1001..=1020)
        .map(|n| User::new(&n.to_string(), &format!("pw{n}")))
        .collect();
    let tls = tls.map(streams_common::kamailio_tls);
    Kamailio::start(&KamailioConfig {
        users,
        one_time_nonce: true,
        tls,
        websocket,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs the 10 → 10 test file over `transport` to `port`; `extra` goes in the registrar.
fn run(transport: &str, port: u16, extra: &str) -> (RunSummary, Vec<EndpointReport>) {
    let text = format!(
        r#"
name = "kamailio over {transport}"
duration = "500ms"
seed = 5
shards = 2
time_limit = "40s"

[[registrar]]
id = "kam"
domain = "127.0.0.1"
port = {port}
transport = "{transport}"
{extra}

[[accounts]]
registrar = "kam"
range = {{ from = 1001, to = 1020, password = "pw{{n}}" }}

[[group]]
name = "callees"
endpoints = 10
registrar = "kam"
role = "answer"
answer_delay = "100ms"

[[group]]
name = "callers"
endpoints = 10
registrar = "kam"
call = "group:callees"
"#
    );
    streams_common::run_file("kamailio.toml", &text)
}

fn assert_calls_went_through(
    kind: FlowKind,
    k: &Kamailio,
    summary: &RunSummary,
    reports: &[EndpointReport],
) {
    for r in reports {
        assert_eq!(
            r.outcome,
            Outcome::Success,
            "{r:#?}\nkamailio log:\n{}",
            k.log()
        );
        assert_eq!(r.registration_code, Some(200), "{}", r.user);
        let messages: Vec<_> = r
            .trace
            .iter()
            .filter(|e| e.direction != Direction::Note)
            .collect();
        assert!(messages.iter().all(|e| e.transport == Some(kind)));
        let locals: std::collections::HashSet<_> = messages.iter().map(|e| e.local).collect();
        assert_eq!(locals.len(), 1, "one connection per endpoint: {locals:?}");
    }
    assert_eq!(reports.len(), 20);
    assert_eq!((summary.calls_attempted, summary.calls_answered), (10, 10));
    let callers: Vec<_> = reports.iter().filter(|r| r.group == "callers").collect();
    let callees: Vec<_> = reports.iter().filter(|r| r.group == "callees").collect();
    assert_eq!(callees.iter().map(|r| r.calls_received).sum::<u32>(), 10);
    for r in &callers {
        let lines: Vec<&str> = r.trace.iter().map(|e| e.first_line()).collect();
        assert!(
            lines.contains(&"SIP/2.0 407 Proxy Authentication Required"),
            "{lines:?}"
        );
        assert!(
            r.trace.iter().any(|e| e.direction == Direction::Sent
                && e.first_line().starts_with("INVITE ")
                && e.text.contains("Proxy-Authorization: Digest ")),
            "{lines:?}"
        );
        assert!(
            r.trace
                .iter()
                .any(|e| e.direction == Direction::Sent && e.first_line().starts_with("BYE ")),
            "{lines:?}"
        );
    }
    // Each callee's INVITE came in on the callee's own connection (Kamailio reused it).
    for r in &callees {
        let register = r
            .trace
            .iter()
            .find(|e| e.direction == Direction::Sent && e.first_line().starts_with("REGISTER "))
            .unwrap();
        let invite = r
            .trace
            .iter()
            .find(|e| e.direction == Direction::Received && e.first_line().starts_with("INVITE "))
            .expect("the callee received the INVITE");
        assert_eq!(invite.local, register.local);
        assert!(
            invite
                .text
                .contains(&format!("Via: SIP/2.0/{} 127.0.0.1:", kind.via_token())),
            "{}",
            invite.text
        );
    }
}

#[test]
fn a_run_through_kamailio_over_tcp() {
    if !available("kamailio", "kamailio") {
        return;
    }
    let k = kamailio(None, false);
    let (summary, reports) = run("tcp", k.port(), "");
    assert_calls_went_through(FlowKind::Tcp, &k, &summary, &reports);
}

/// Issue #6: 10 callers → 10 callees through Kamailio over TLS, with 407 on INVITE; the
/// server's certificate is verified against the CA given in the test file.
#[test]
fn a_run_through_kamailio_over_tls_with_a_custom_ca() {
    if !tls_available() {
        return;
    }
    let (k, summary, reports) = run_tls_with_a_custom_ca("");
    assert_calls_went_through(FlowKind::Tls, &k, &summary, &reports);
    assert_custom_ca_verified(&reports, "TLS handshake done with 127.0.0.1:");
}

/// The 10 → 10 run over TLS to a Kamailio whose certificate the test file's CA signed;
/// `extra` goes in the registrar.
fn run_tls_with_a_custom_ca(extra: &str) -> (Kamailio, RunSummary, Vec<EndpointReport>) {
    let ca = CertificateAuthority::new("run CA").unwrap();
    let k = kamailio(Some(&ca), false);
    let dir = TempDir::new("sipmeter-run-tls").unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let (summary, reports) = run(
        "tls",
        k.tls_port().unwrap(),
        &format!(
            "tls_verify = \"custom\"\ntls_ca = \"{}\"\n{extra}",
            ca_file.display()
        ),
    );
    (k, summary, reports)
}

/// Every endpoint's trace has the TLS handshake's note (starting with `prefix`), verified
/// against the custom CA.
fn assert_custom_ca_verified(reports: &[EndpointReport], prefix: &str) {
    for r in reports {
        let notes = streams_common::notes(r);
        let tls = streams_common::note_at(&notes, prefix);
        assert!(notes[tls].contains("verification: Custom CA"), "{notes:#?}");
    }
}

/// `connections = "shared"` (a trunk): the 10 → 10 run through Kamailio carries every
/// endpoint of a shard on one connection. The checks above hold (Kamailio delivers each
/// callee's INVITE on the connection it registered over), and all 20 endpoints use two local
/// addresses, one per shard: two connections opened, one TLS handshake each.
fn assert_shared(kind: FlowKind, k: &Kamailio, summary: &RunSummary, reports: &[EndpointReport]) {
    assert_calls_went_through(kind, k, summary, reports);
    assert_eq!(summary.connections_opened, 2, "{summary:?}");
    let locals: std::collections::HashSet<_> = reports
        .iter()
        .flat_map(|r| r.trace.iter())
        .filter(|e| e.direction != Direction::Note)
        .map(|e| e.local)
        .collect();
    assert_eq!(locals.len(), 2, "one connection per shard: {locals:?}");
    for r in reports.iter().filter(|r| r.group == "callees") {
        assert!(
            r.trace.iter().any(|e| e.direction == Direction::Received
                && e.first_line()
                    .starts_with(&format!("INVITE sip:{}@127.0.0.1:", r.user))),
            "{:#?}",
            r.trace
        );
    }
}

#[test]
fn a_run_through_kamailio_on_shared_tcp_connections() {
    if !available("kamailio", "kamailio") {
        return;
    }
    let k = kamailio(None, false);
    let (summary, reports) = run("tcp", k.port(), "connections = \"shared\"");
    assert_shared(FlowKind::Tcp, &k, &summary, &reports);
}

#[test]
fn a_run_through_kamailio_on_shared_tls_connections() {
    if !tls_available() {
        return;
    }
    let (k, summary, reports) = run_tls_with_a_custom_ca("connections = \"shared\"");
    assert_shared(FlowKind::Tls, &k, &summary, &reports);
    assert_custom_ca_verified(
        &reports,
        "shared connection: TLS handshake done with 127.0.0.1:",
    );
}

/// With System verification the self-signed chain is refused: every endpoint ends
/// REGISTRATION_FAILED, with the words and the hint of `sipmeter check`.
#[test]
fn a_run_over_tls_refuses_an_unknown_authority_with_the_hint() {
    if !tls_available() {
        return;
    }
    let ca = CertificateAuthority::new("run CA").unwrap();
    let k = kamailio(Some(&ca), false);
    let (_, reports) = run("tls", k.tls_port().unwrap(), "");
    assert_eq!(reports.len(), 20);
    for r in &reports {
        assert_eq!(r.outcome, Outcome::RegistrationFailed, "{r:#?}");
        let e = r.error.as_deref().unwrap();
        assert!(
            e.contains("unknown authority") && e.contains("Custom"),
            "{e}"
        );
    }
}

#[test]
fn a_run_through_kamailio_over_ws_and_wss() {
    if !websocket_available() || !tls_available() {
        return;
    }
    let ca = CertificateAuthority::new("run CA").unwrap();
    let k = kamailio(Some(&ca), true);
    let (summary, reports) = run("ws", k.ws_port().unwrap(), "");
    assert_calls_went_through(FlowKind::Ws, &k, &summary, &reports);
    let (summary, reports) = run("wss", k.wss_port().unwrap(), "tls_verify = \"skip\"");
    assert_calls_went_through(FlowKind::Wss, &k, &summary, &reports);
}

/// `connections = "shared"` over WS and WSS: one WebSocket (and one TLS handshake) per shard
/// carries its endpoints' registrations and calls through Kamailio's websocket module.
#[test]
fn a_run_through_kamailio_on_shared_ws_and_wss_connections() {
    if !websocket_available() || !tls_available() {
        return;
    }
    let ca = CertificateAuthority::new("run CA").unwrap();
    let k = kamailio(Some(&ca), true);
    let (summary, reports) = run("ws", k.ws_port().unwrap(), "connections = \"shared\"");
    assert_shared(FlowKind::Ws, &k, &summary, &reports);
    let (summary, reports) = run(
        "wss",
        k.wss_port().unwrap(),
        "connections = \"shared\"\ntls_verify = \"skip\"",
    );
    assert_shared(FlowKind::Wss, &k, &summary, &reports);
}
