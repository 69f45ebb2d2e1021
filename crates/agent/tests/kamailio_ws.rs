//! `check` over WS and WSS (RFC 7118) against a real Kamailio (`websocket.so` + `xhttp.so`,
//! Debian `kamailio-websocket-modules`; WSS also needs `kamailio-tls-modules`).
//!
//! Skipped with a message when a module is absent (fails instead with
//! `SIPMETER_REQUIRE_PEERS=1`).

use std::time::Duration;

use agent::check::{CheckDns, CheckReport, CheckRequest, StepStatus, run_check_ws};
use agent::flow::FlowKind;
use agent::trace::Direction;
use sip_net::tls::{CertificateAuthority, ClientSettings, Verify};
use sip_proto::auth::Credentials;
use testpeers::{Kamailio, KamailioConfig, KamailioTls, User, tls_available, websocket_available};

fn start(ca: &CertificateAuthority) -> Kamailio {
    let cert = ca.issue(&["127.0.0.1".to_owned()]).unwrap();
    Kamailio::start(&KamailioConfig {
        users: vec![User::new("alice", "alice-pw")],
        tls: Some(KamailioTls {
            cert_pem: cert.cert_pem,
            key_pem: cert.key_pem,
            client_ca_pem: None,
        }),
        websocket: true,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn request(port: u16, transport: FlowKind, password: &str) -> CheckRequest {
    CheckRequest {
        domain: "127.0.0.1".into(),
        port: Some(port),
        transport,
        proxy: None,
        credentials: Some(Credentials::new("alice", password)),
        extension: None,
        expires: 120,
        timeout: Duration::from_secs(10),
        seed: 31,
    }
}

fn statuses(r: &CheckReport) -> Vec<(&'static str, StepStatus)> {
    r.steps.iter().map(|s| (s.name, s.status.clone())).collect()
}

fn received(r: &CheckReport) -> Vec<String> {
    r.trace
        .iter()
        .filter(|e| e.direction == Direction::Received)
        .map(|e| e.first_line().to_owned())
        .collect()
}

#[tokio::test]
async fn registers_over_ws_and_wss() {
    if !websocket_available() || !tls_available() {
        return;
    }
    let ca = CertificateAuthority::new("ws interop CA").unwrap();
    let k = start(&ca);

    let ws_port = k.ws_port().unwrap();
    let report = run_check_ws(
        request(ws_port, FlowKind::Ws, "alice-pw"),
        CheckDns::default(),
        &ClientSettings::default(),
        "/",
    )
    .await;
    for s in &report.steps {
        eprintln!("ws  {:<10} {:>7.2} ms  {}", s.name, s.elapsed_ms, s.detail);
    }
    assert!(report.registered, "{report:#?}\nkamailio log:\n{}", k.log());
    assert_eq!(
        statuses(&report),
        [
            ("dns", StepStatus::Ok),
            ("transport", StepStatus::Ok),
            ("websocket", StepStatus::Ok),
            ("register", StepStatus::Ok),
            ("auth", StepStatus::Ok),
        ]
    );
    assert_eq!(
        received(&report),
        [
            "SIP/2.0 401 Unauthorized",
            "SIP/2.0 200 OK",
            "SIP/2.0 200 OK"
        ]
    );
    let register = report
        .trace
        .iter()
        .find(|e| e.direction == Direction::Sent)
        .unwrap();
    assert!(
        register.text.contains("Via: SIP/2.0/WS 127.0.0.1:"),
        "{}",
        register.text
    );

    let tls = ClientSettings {
        verify: Verify::Custom(vec![ca.cert_der()]),
        identity: None,
    };
    let wss_port = k.wss_port().unwrap();
    let report = run_check_ws(
        request(wss_port, FlowKind::Wss, "alice-pw"),
        CheckDns::default(),
        &tls,
        "/",
    )
    .await;
    for s in &report.steps {
        eprintln!("wss {:<10} {:>7.2} ms  {}", s.name, s.elapsed_ms, s.detail);
    }
    assert!(report.registered, "{report:#?}\nkamailio log:\n{}", k.log());
    assert_eq!(
        statuses(&report),
        [
            ("dns", StepStatus::Ok),
            ("transport", StepStatus::Ok),
            ("tls", StepStatus::Ok),
            ("websocket", StepStatus::Ok),
            ("register", StepStatus::Ok),
            ("auth", StepStatus::Ok),
        ]
    );
    assert_eq!(
        report.registration_uri,
        format!("sip:127.0.0.1:{wss_port};transport=wss")
    );

    // A wrong password over WSS: the 401 comes back over the WebSocket, no loop.
    let report = run_check_ws(
        request(wss_port, FlowKind::Wss, "wrong"),
        CheckDns::default(),
        &tls,
        "/",
    )
    .await;
    assert!(!report.registered);
    assert_eq!(report.final_code, Some(401), "{report:#?}");
}
