//! `check` over WS and WSS (SIP over WebSocket, RFC 7118) against the built-in registrar,
//! and a WebSocket upgrade refused by an HTTP server.

use std::time::Duration;

use agent::builtin::{BuiltinRegistrar, Listen};
use agent::check::{CheckDns, CheckReport, CheckRequest, StepStatus, run_check_ws};
use agent::flow::FlowKind;
use agent::trace::Direction;
use registrar::{AuthMode, RegistrarConfig};
use sip_msg::Host;
use sip_net::tls::{CertificateAuthority, ClientSettings, ServerSettings, Verify};

fn open_registrar() -> RegistrarConfig {
    RegistrarConfig {
        domain: "sipmeter.test".into(),
        host: Host::parse("127.0.0.1").unwrap(),
        port: 0,
        transport: "WS".into(),
        auth: AuthMode::Open,
        secret: b"test".to_vec(),
        min_expires: 10,
        max_expires: 3600,
    }
}

fn request(port: u16, transport: FlowKind) -> CheckRequest {
    CheckRequest {
        domain: "127.0.0.1".into(),
        port: Some(port),
        transport,
        proxy: None,
        credentials: None,
        extension: Some("1001".into()),
        expires: 120,
        timeout: Duration::from_secs(10),
        seed: 5,
    }
}

fn statuses(r: &CheckReport) -> Vec<(&'static str, StepStatus)> {
    r.steps.iter().map(|s| (s.name, s.status.clone())).collect()
}

fn sent_register(r: &CheckReport) -> &str {
    &r.trace
        .iter()
        .find(|e| e.direction == Direction::Sent && e.text.starts_with("REGISTER "))
        .unwrap()
        .text
}

#[tokio::test]
async fn registers_over_ws() {
    let reg = BuiltinRegistrar::start(Listen::Ws("127.0.0.1:0".parse().unwrap()), open_registrar())
        .await
        .unwrap();
    let port = reg.addr().port();
    let report = run_check_ws(
        request(port, FlowKind::Ws),
        CheckDns::default(),
        &ClientSettings::default(),
        "/sip",
    )
    .await;
    assert!(report.registered, "{report:#?}");
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
        report.registration_uri,
        format!("sip:127.0.0.1:{port};transport=ws")
    );
    let ws = &report.steps[2].detail;
    assert_eq!(
        ws,
        &format!(
            "HTTP upgrade to WebSocket at ws://127.0.0.1:{port}/sip with subprotocol sip (RFC 7118)"
        )
    );
    let register = sent_register(&report);
    assert!(
        register.contains("Via: SIP/2.0/WS 127.0.0.1:"),
        "{register}"
    );
    assert!(register.contains(";transport=ws>"), "{register}");
    let stats = reg.connection_stats().unwrap();
    assert_eq!(
        (stats.accepted, stats.ws_failed, stats.dropped_no_connection),
        (1, 0, 0)
    );
}

#[tokio::test]
async fn registers_over_wss_with_a_custom_ca() {
    let ca = CertificateAuthority::new("ws CA").unwrap();
    let settings = ServerSettings {
        identity: ca
            .issue(&["127.0.0.1".to_owned()])
            .unwrap()
            .identity()
            .unwrap(),
        client_cas: None,
    };
    let reg = BuiltinRegistrar::start(
        Listen::Wss("127.0.0.1:0".parse().unwrap(), settings),
        open_registrar(),
    )
    .await
    .unwrap();
    let tls = ClientSettings {
        verify: Verify::Custom(vec![ca.cert_der()]),
        identity: None,
    };
    let report = run_check_ws(
        request(reg.addr().port(), FlowKind::Wss),
        CheckDns::default(),
        &tls,
        "/",
    )
    .await;
    assert!(report.registered, "{report:#?}");
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
    assert!(
        report.steps[3]
            .detail
            .starts_with("HTTP upgrade to WebSocket at wss://127.0.0.1:")
    );
    assert!(sent_register(&report).contains("Via: SIP/2.0/WSS 127.0.0.1:"));

    // The same server with the System roots: the TLS step fails before any upgrade.
    let report = run_check_ws(
        request(reg.addr().port(), FlowKind::Wss),
        CheckDns::default(),
        &ClientSettings::default(),
        "/",
    )
    .await;
    assert_eq!(
        statuses(&report),
        [
            ("dns", StepStatus::Ok),
            ("transport", StepStatus::Ok),
            ("tls", StepStatus::Failed),
            ("websocket", StepStatus::Skipped),
            ("register", StepStatus::Skipped),
            ("auth", StepStatus::Skipped),
        ]
    );
}

#[tokio::test]
async fn an_http_404_to_the_upgrade_is_explained() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await.unwrap();
        s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        let _ = s.read(&mut buf).await;
    });
    let report = run_check_ws(
        request(port, FlowKind::Ws),
        CheckDns::default(),
        &ClientSettings::default(),
        "/wrong",
    )
    .await;
    assert!(!report.registered);
    assert_eq!(
        statuses(&report),
        [
            ("dns", StepStatus::Ok),
            ("transport", StepStatus::Ok),
            ("websocket", StepStatus::Failed),
            ("register", StepStatus::Skipped),
            ("auth", StepStatus::Skipped),
        ]
    );
    assert_eq!(
        report.steps[2].detail,
        format!(
            "the server answered the WebSocket upgrade for ws://127.0.0.1:{port}/wrong with HTTP 404 Not Found"
        )
    );
    assert!(report.hint.unwrap().contains("--ws-path"));
    server.abort();
}
