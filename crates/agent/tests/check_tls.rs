//! `check` over TLS (and TCP) against the built-in registrar, with certificates made by a CA
//! generated at test time (rcgen): Custom CA, System, Skip, wrong CA, wrong name, expired
//! certificate, mutual TLS required with and without a client certificate, and a TLS check
//! aimed at a plain TCP port.

use std::time::{Duration, SystemTime};

use agent::builtin::{BuiltinRegistrar, Listen};
use agent::check::{CheckDns, CheckReport, CheckRequest, StepStatus, run_check_tls};
use agent::flow::FlowKind;
use agent::trace::Direction;
use registrar::{AuthMode, RegistrarConfig};
use sip_msg::Host;
use sip_net::tls::{CertificateAuthority, ClientSettings, ServerSettings, Validity, Verify};

fn open_registrar() -> RegistrarConfig {
    RegistrarConfig {
        domain: "sipmeter.test".into(),
        host: Host::parse("127.0.0.1").unwrap(),
        port: 0,
        transport: "TLS".into(),
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
        seed: 11,
    }
}

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| (*s).to_owned()).collect()
}

/// A TLS registrar on a free port with a certificate for `cert_names` from `ca`.
async fn tls_registrar(
    ca: &CertificateAuthority,
    cert_names: &[&str],
    client_cas: Option<&CertificateAuthority>,
) -> BuiltinRegistrar {
    let identity = ca.issue(&names(cert_names)).unwrap().identity().unwrap();
    let settings = ServerSettings {
        identity,
        client_cas: client_cas.map(|c| vec![c.cert_der()]),
    };
    BuiltinRegistrar::start(
        Listen::Tls("127.0.0.1:0".parse().unwrap(), settings),
        open_registrar(),
    )
    .await
    .unwrap()
}

fn custom(ca: &CertificateAuthority) -> ClientSettings {
    ClientSettings {
        verify: Verify::Custom(vec![ca.cert_der()]),
        identity: None,
    }
}

fn statuses(r: &CheckReport) -> Vec<(&'static str, StepStatus)> {
    r.steps.iter().map(|s| (s.name, s.status.clone())).collect()
}

fn step<'a>(r: &'a CheckReport, name: &str) -> &'a agent::check::Step {
    r.steps.iter().find(|s| s.name == name).unwrap()
}

async fn check(port: u16, tls: &ClientSettings) -> CheckReport {
    run_check_tls(request(port, FlowKind::Tls), CheckDns::default(), tls).await
}

#[tokio::test]
async fn registers_over_tls_with_a_custom_ca() {
    let ca = CertificateAuthority::new("sipmeter test CA").unwrap();
    let reg = tls_registrar(&ca, &["127.0.0.1"], None).await;
    let port = reg.addr().port();
    let report = check(port, &custom(&ca)).await;
    assert!(report.registered, "{report:#?}");
    assert_eq!(
        report.registration_uri,
        format!("sip:127.0.0.1:{port};transport=tls")
    );
    assert_eq!(report.transport, Some(FlowKind::Tls));
    assert_eq!(
        statuses(&report),
        [
            ("dns", StepStatus::Ok),
            ("transport", StepStatus::Ok),
            ("tls", StepStatus::Ok),
            ("register", StepStatus::Ok),
            ("auth", StepStatus::Ok),
        ]
    );
    let tls = step(&report, "tls");
    assert!(tls.detail.starts_with("TLSv1.3 TLS13_"), "{}", tls.detail);
    assert!(
        tls.detail.contains("verification: Custom CA"),
        "{}",
        tls.detail
    );
    assert!(tls.elapsed_ms > 0.0);
    // Via TLS, Contact ;transport=tls, sent and answered over the TLS flow.
    let register = report
        .trace
        .iter()
        .find(|e| e.direction == Direction::Sent && e.text.starts_with("REGISTER "))
        .unwrap();
    assert_eq!(register.transport, Some(FlowKind::Tls));
    assert!(
        register.text.contains("Via: SIP/2.0/TLS 127.0.0.1:"),
        "{}",
        register.text
    );
    assert!(
        register.text.contains(";transport=tls>"),
        "{}",
        register.text
    );
    assert!(
        report
            .trace
            .iter()
            .any(|e| e.direction == Direction::Received && e.text.starts_with("SIP/2.0 200"))
    );
    let stats = reg.connection_stats().unwrap();
    assert_eq!(stats.tls_failed, 0);
    assert_eq!(stats.accepted, 1);
    let core = reg.stop().await;
    assert!(core.registered >= 1, "{core:?}");
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_an_unknown_authority() {
    let ca = CertificateAuthority::new("server CA").unwrap();
    let other = CertificateAuthority::new("some other CA").unwrap();
    let reg = tls_registrar(&ca, &["127.0.0.1"], None).await;
    let report = check(reg.addr().port(), &custom(&other)).await;
    assert!(!report.registered);
    assert_eq!(
        statuses(&report),
        [
            ("dns", StepStatus::Ok),
            ("transport", StepStatus::Ok),
            ("tls", StepStatus::Failed),
            ("register", StepStatus::Skipped),
            ("auth", StepStatus::Skipped),
        ]
    );
    assert_eq!(
        step(&report, "tls").detail,
        "the server's certificate is signed by an unknown authority"
    );
    let hint = report.hint.unwrap();
    assert!(hint.contains("choose Custom (--ca FILE)"), "{hint}");
    // Nothing went over the wire in clear.
    assert!(report.trace.iter().all(|e| e.direction == Direction::Note));
    assert_eq!(reg.connection_stats().unwrap().accepted, 1);
}

#[tokio::test]
async fn system_verification_refuses_a_test_ca() {
    let ca = CertificateAuthority::new("private CA").unwrap();
    let reg = tls_registrar(&ca, &["127.0.0.1"], None).await;
    let report = check(reg.addr().port(), &ClientSettings::default()).await;
    assert!(!report.registered);
    assert_eq!(step(&report, "tls").status, StepStatus::Failed);
    assert!(
        step(&report, "tls").detail.contains("unknown authority"),
        "{report:#?}"
    );
}

#[tokio::test]
async fn skip_mode_registers_whatever_the_certificate() {
    let ca = CertificateAuthority::new("private CA").unwrap();
    // Wrong name too: Skip checks neither the issuer nor the name.
    let reg = tls_registrar(&ca, &["elsewhere.test"], None).await;
    let tls = ClientSettings {
        verify: Verify::InsecureSkipVerification,
        identity: None,
    };
    let report = check(reg.addr().port(), &tls).await;
    assert!(report.registered, "{report:#?}");
    assert!(
        step(&report, "tls")
            .detail
            .contains("verification: Skip (insecure)")
    );
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused_with_both_names() {
    let ca = CertificateAuthority::new("server CA").unwrap();
    let reg = tls_registrar(&ca, &["pbx.test", "sip.pbx.test"], None).await;
    let report = check(reg.addr().port(), &custom(&ca)).await;
    assert!(!report.registered);
    assert_eq!(
        step(&report, "tls").detail,
        "the server's certificate is valid for pbx.test, sip.pbx.test, not 127.0.0.1"
    );
    assert!(report.hint.unwrap().contains("subjectAltName"));
}

#[tokio::test]
async fn an_expired_certificate_says_since_when() {
    let ca = CertificateAuthority::new("server CA").unwrap();
    let now = SystemTime::now();
    let expired = ca
        .issue_valid(
            &names(&["127.0.0.1"]),
            Validity {
                not_before: now - Duration::from_secs(40 * 86_400),
                not_after: now - Duration::from_secs(10 * 86_400),
            },
        )
        .unwrap();
    let settings = ServerSettings {
        identity: expired.identity().unwrap(),
        client_cas: None,
    };
    let reg = BuiltinRegistrar::start(
        Listen::Tls("127.0.0.1:0".parse().unwrap(), settings),
        open_registrar(),
    )
    .await
    .unwrap();
    let report = check(reg.addr().port(), &custom(&ca)).await;
    assert!(!report.registered);
    let detail = &step(&report, "tls").detail;
    assert!(
        detail.starts_with("the server's certificate has expired: valid until 20"),
        "{detail}"
    );
    // 10 days ago, or 9 when the seconds straddle a day boundary in the computation.
    assert!(
        detail.ends_with(", 10 days ago") || detail.ends_with(", 9 days ago"),
        "{detail}"
    );
    assert!(
        report
            .hint
            .unwrap()
            .starts_with("renew the server's certificate")
    );
}

#[tokio::test]
async fn mutual_tls_required_and_missing_fails_clearly_then_works_with_a_client_certificate() {
    let ca = CertificateAuthority::new("server CA").unwrap();
    let clients = CertificateAuthority::new("client CA").unwrap();
    let reg = tls_registrar(&ca, &["127.0.0.1"], Some(&clients)).await;
    let port = reg.addr().port();

    let report = check(port, &custom(&ca)).await;
    assert!(!report.registered);
    assert_eq!(
        statuses(&report),
        [
            ("dns", StepStatus::Ok),
            ("transport", StepStatus::Ok),
            ("tls", StepStatus::Failed),
            ("register", StepStatus::Skipped),
            ("auth", StepStatus::Skipped),
        ],
        "{report:#?}"
    );
    assert_eq!(
        step(&report, "tls").detail,
        "the server requires a client certificate (mutual TLS) and we sent none"
    );
    assert_eq!(
        report.hint.as_deref(),
        Some("give a client certificate and its key (--cert FILE --key FILE)")
    );

    // A client certificate from a CA the server does not trust.
    let stranger = CertificateAuthority::new("stranger CA").unwrap();
    let mut tls = custom(&ca);
    tls.identity = Some(
        stranger
            .issue(&names(&["phone1.test"]))
            .unwrap()
            .identity()
            .unwrap(),
    );
    let report = check(port, &tls).await;
    assert!(!report.registered);
    assert_eq!(
        step(&report, "tls").detail,
        "the server refused our client certificate (UnknownCA)",
        "{report:#?}"
    );

    tls.identity = Some(
        clients
            .issue(&names(&["phone1.test"]))
            .unwrap()
            .identity()
            .unwrap(),
    );
    let report = check(port, &tls).await;
    assert!(report.registered, "{report:#?}");
    assert!(
        step(&report, "tls")
            .detail
            .ends_with("; client certificate sent)")
    );
    assert_eq!(reg.connection_stats().unwrap().tls_failed, 2);
}

#[tokio::test]
async fn tls_against_a_plain_sip_port_says_it_is_not_tls() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A plain-TCP SIP server that answers whatever it reads with a 400, as some do.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await.unwrap();
        s.write_all(b"SIP/2.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        let _ = s.read(&mut buf).await;
    });
    let ca = CertificateAuthority::new("server CA").unwrap();
    let report = check(port, &custom(&ca)).await;
    assert!(!report.registered);
    let tls = step(&report, "tls");
    assert_eq!(tls.status, StepStatus::Failed, "{report:#?}");
    assert!(
        tls.detail
            .starts_with("the server does not speak TLS on this port ("),
        "{}",
        tls.detail
    );
    assert!(report.hint.unwrap().contains("TLS is usually on 5061"));
    server.abort();
}

#[tokio::test]
async fn registers_with_the_builtin_registrar_over_tcp() {
    let reg = BuiltinRegistrar::start(
        Listen::Tcp("127.0.0.1:0".parse().unwrap()),
        open_registrar(),
    )
    .await
    .unwrap();
    let report = run_check_tls(
        request(reg.addr().port(), FlowKind::Tcp),
        CheckDns::default(),
        &ClientSettings::default(),
    )
    .await;
    assert!(report.registered, "{report:#?}");
    assert_eq!(
        statuses(&report),
        [
            ("dns", StepStatus::Ok),
            ("transport", StepStatus::Ok),
            ("register", StepStatus::Ok),
            ("auth", StepStatus::Ok),
        ]
    );
    let register = report
        .trace
        .iter()
        .find(|e| e.direction == Direction::Sent && e.text.starts_with("REGISTER "))
        .unwrap();
    assert!(register.text.contains("Via: SIP/2.0/TCP "));
    assert_eq!(reg.connection_stats().unwrap().dropped_no_connection, 0);
}

#[tokio::test]
async fn registers_over_tls_on_ipv6_with_the_address_in_the_certificate() {
    let ca = CertificateAuthority::new("v6 CA").unwrap();
    let settings = ServerSettings {
        identity: ca.issue(&names(&["::1"])).unwrap().identity().unwrap(),
        client_cas: None,
    };
    let reg = BuiltinRegistrar::start(
        Listen::Tls("[::1]:0".parse().unwrap(), settings),
        open_registrar(),
    )
    .await
    .unwrap();
    let mut req = request(reg.addr().port(), FlowKind::Tls);
    req.domain = "::1".into();
    let report = run_check_tls(req, CheckDns::default(), &custom(&ca)).await;
    assert!(report.registered, "{report:#?}");
    assert_eq!(
        report.registration_uri,
        format!("sip:[::1]:{};transport=tls", reg.addr().port())
    );
    assert!(step(&report, "tls").detail.contains(" with ::1; "));
}
