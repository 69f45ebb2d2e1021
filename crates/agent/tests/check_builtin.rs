//! `check` against the built-in registrar over real loopback sockets.

use std::time::Duration;

use agent::builtin::BuiltinRegistrar;
use agent::check::{CheckRequest, StepStatus, run_check};
use agent::flow::FlowKind;
use agent::trace::Direction;
use registrar::{AuthMode, RegistrarConfig};
use sip_msg::Host;

fn open_registrar() -> RegistrarConfig {
    RegistrarConfig {
        domain: "sipmeter.test".into(),
        host: Host::parse("127.0.0.1").unwrap(),
        port: 0,
        transport: "UDP".into(),
        auth: AuthMode::Open,
        secret: b"test".to_vec(),
        min_expires: 10,
        max_expires: 3600,
    }
}

fn request(port: u16) -> CheckRequest {
    CheckRequest {
        domain: "127.0.0.1".into(),
        port: Some(port),
        transport: FlowKind::Udp,
        proxy: None,
        credentials: None,
        extension: Some("1001".into()),
        expires: 120,
        timeout: Duration::from_secs(10),
        seed: 7,
    }
}

#[tokio::test]
async fn registers_with_the_builtin_registrar_over_udp() {
    let reg = BuiltinRegistrar::start_udp("127.0.0.1:0".parse().unwrap(), open_registrar())
        .await
        .unwrap();
    let report = run_check(request(reg.addr().port())).await;
    assert!(report.registered, "{report:#?}");
    assert_eq!(report.final_code, Some(200));
    assert_eq!(
        report.registration_uri,
        format!("sip:127.0.0.1:{};transport=udp", reg.addr().port())
    );
    let statuses: Vec<_> = report
        .steps
        .iter()
        .map(|s| (s.name, s.status.clone()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("dns", StepStatus::Ok),
            ("transport", StepStatus::Ok),
            ("register", StepStatus::Ok),
            ("auth", StepStatus::Ok)
        ]
    );
    // REGISTER, 200, un-REGISTER, 200: the exact bytes of each are in the trace.
    let lines: Vec<(Direction, String)> = report
        .trace
        .iter()
        .filter(|e| e.direction != Direction::Note)
        .map(|e| (e.direction, e.first_line().to_owned()))
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[0].1.starts_with("REGISTER sip:127.0.0.1:"));
    assert_eq!(lines[1], (Direction::Received, "SIP/2.0 200 OK".to_owned()));
    assert!(report.trace[0].text.contains("Expires: 120\r\n"));
    assert!(
        report.trace[2].text.contains("Expires: 0\r\n"),
        "un-REGISTER at the end"
    );
    let stats = reg.stop().await;
    assert_eq!(stats.registered, 2);
}

#[tokio::test]
async fn a_closed_port_fails_fast_with_a_hint() {
    // Bind and drop a socket to find a port nobody listens on.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let report = run_check(request(port)).await;
    assert!(!report.registered);
    assert_eq!(report.final_code, Some(408));
    assert_eq!(report.steps[2].status, StepStatus::Failed, "{report:#?}");
    assert!(report.hint.as_deref().unwrap().contains("unreachable"));
    assert!(
        report
            .trace
            .iter()
            .any(|e| e.text.contains("receive failed")),
        "the ICMP error is in the trace"
    );
}

#[tokio::test]
async fn tcp_refused_is_a_transport_failure() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut req = request(port);
    req.transport = FlowKind::Tcp;
    let report = run_check(req).await;
    assert_eq!(report.steps[1].status, StepStatus::Failed);
    assert!(
        report.steps[1].detail.contains("connection refused"),
        "{}",
        report.steps[1].detail
    );
    assert_eq!(report.steps[2].status, StepStatus::Skipped);
}
