//! `check` over TLS against a real Kamailio (Debian `kamailio-tls-modules`, OpenSSL on the
//! server side, rustls on ours) with certificates generated at test time (rcgen): Custom CA,
//! Skip, System refusing a self-signed certificate, a wrong name, and mutual TLS.
//!
//! Skipped with a message when `kamailio` or its `tls.so` is absent (fails instead with
//! `SIPMETER_REQUIRE_PEERS=1`).

use std::time::Duration;

use agent::check::{CheckDns, CheckReport, CheckRequest, StepStatus, run_check_tls};
use agent::flow::FlowKind;
use agent::trace::Direction;
use sip_net::tls::{CertificateAuthority, ClientSettings, IssuedCertificate, Verify, self_signed};
use sip_proto::auth::Credentials;
use testpeers::{
    Dnsmasq, DnsmasqConfig, Kamailio, KamailioConfig, KamailioTls, Naptr, Srv, User, available,
    tls_available,
};

fn start(cert: &IssuedCertificate, client_ca: Option<&CertificateAuthority>) -> Kamailio {
    Kamailio::start(&KamailioConfig {
        users: vec![User::new("alice", "alice-pw")],
        tls: Some(KamailioTls {
            cert_pem: cert.cert_pem.clone(),
            key_pem: cert.key_pem.clone(),
            client_ca_pem: client_ca.map(CertificateAuthority::cert_pem),
        }),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn request(k: &Kamailio, password: &str) -> CheckRequest {
    CheckRequest {
        domain: "127.0.0.1".into(),
        port: k.tls_port(),
        transport: FlowKind::Tls,
        proxy: None,
        credentials: Some(Credentials::new("alice", password)),
        extension: None,
        expires: 120,
        timeout: Duration::from_secs(10),
        seed: 21,
    }
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

fn tls_step(r: &CheckReport) -> &agent::check::Step {
    r.steps.iter().find(|s| s.name == "tls").unwrap()
}

fn received(r: &CheckReport) -> Vec<String> {
    r.trace
        .iter()
        .filter(|e| e.direction == Direction::Received)
        .map(|e| e.first_line().to_owned())
        .collect()
}

#[tokio::test]
async fn registers_over_tls_with_a_custom_ca_then_unregisters() {
    if !tls_available() {
        return;
    }
    let ca = CertificateAuthority::new("interop CA").unwrap();
    let cert = ca.issue(&["127.0.0.1".to_owned()]).unwrap();
    let k = start(&cert, None);
    let report = run_check_tls(request(&k, "alice-pw"), CheckDns::default(), &custom(&ca)).await;
    assert!(report.registered, "{report:#?}\nkamailio log:\n{}", k.log());
    for s in &report.steps {
        // Shown with --nocapture: the figures of docs/tls.md.
        eprintln!("{:<10} {:>7.2} ms  {}", s.name, s.elapsed_ms, s.detail);
    }
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
    assert_eq!(
        report.registration_uri,
        format!("sip:127.0.0.1:{};transport=tls", k.tls_port().unwrap())
    );
    assert_eq!(report.server, k.tls_addr());
    let tls = tls_step(&report);
    assert!(tls.detail.starts_with("TLSv1.3 TLS13_"), "{}", tls.detail);
    assert!(
        tls.detail.contains(&format!(
            "server certificate SHA-256 {}",
            cert.fingerprint()
        )),
        "{}",
        tls.detail
    );
    // 401 → 200, then the un-REGISTER (nc=00000002 on the same nonce) → 200, all over TLS.
    assert_eq!(
        received(&report),
        [
            "SIP/2.0 401 Unauthorized",
            "SIP/2.0 200 OK",
            "SIP/2.0 200 OK"
        ]
    );
    let sent: Vec<_> = report
        .trace
        .iter()
        .filter(|e| e.direction == Direction::Sent)
        .collect();
    assert_eq!(sent.len(), 3);
    for e in &sent {
        assert_eq!(e.transport, Some(FlowKind::Tls));
        assert!(e.text.contains("Via: SIP/2.0/TLS 127.0.0.1:"), "{}", e.text);
        assert!(e.text.contains(";transport=tls>"), "{}", e.text);
    }
    // Kamailio stored the contact with transport=tls: its 200 lists it back.
    let ok = report
        .trace
        .iter()
        .find(|e| e.direction == Direction::Received && e.text.starts_with("SIP/2.0 200"))
        .unwrap();
    assert!(ok.text.contains(";transport=tls>;expires="), "{}", ok.text);
}

#[tokio::test]
async fn wrong_password_over_tls_shows_the_401() {
    if !tls_available() {
        return;
    }
    let ca = CertificateAuthority::new("interop CA").unwrap();
    let k = start(&ca.issue(&["127.0.0.1".to_owned()]).unwrap(), None);
    let report = run_check_tls(request(&k, "wrong"), CheckDns::default(), &custom(&ca)).await;
    assert!(!report.registered);
    assert_eq!(report.final_code, Some(401), "{report:#?}");
    assert_eq!(tls_step(&report).status, StepStatus::Ok);
}

#[tokio::test]
async fn self_signed_is_refused_with_system_and_accepted_with_skip() {
    if !tls_available() {
        return;
    }
    let cert = self_signed(&["127.0.0.1".to_owned()]).unwrap();
    let k = start(&cert, None);

    let report = run_check_tls(
        request(&k, "alice-pw"),
        CheckDns::default(),
        &ClientSettings::default(),
    )
    .await;
    assert!(!report.registered);
    assert_eq!(tls_step(&report).status, StepStatus::Failed);
    assert_eq!(
        tls_step(&report).detail,
        "the server's certificate is signed by an unknown authority"
    );
    assert!(
        report
            .hint
            .as_deref()
            .unwrap()
            .contains("choose Custom (--ca FILE)")
    );

    let skip = ClientSettings {
        verify: Verify::InsecureSkipVerification,
        identity: None,
    };
    let report = run_check_tls(request(&k, "alice-pw"), CheckDns::default(), &skip).await;
    assert!(report.registered, "{report:#?}\nkamailio log:\n{}", k.log());
    assert!(
        tls_step(&report)
            .detail
            .contains("verification: Skip (insecure)")
    );
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() {
    if !tls_available() {
        return;
    }
    let ca = CertificateAuthority::new("interop CA").unwrap();
    let k = start(&ca.issue(&["sip.kamailio.test".to_owned()]).unwrap(), None);
    let report = run_check_tls(request(&k, "alice-pw"), CheckDns::default(), &custom(&ca)).await;
    assert!(!report.registered);
    assert_eq!(
        tls_step(&report).detail,
        "the server's certificate is valid for sip.kamailio.test, not 127.0.0.1"
    );
}

#[tokio::test]
async fn mutual_tls_with_kamailio() {
    if !tls_available() {
        return;
    }
    let ca = CertificateAuthority::new("interop CA").unwrap();
    let phones = CertificateAuthority::new("phones CA").unwrap();
    let k = start(&ca.issue(&["127.0.0.1".to_owned()]).unwrap(), Some(&phones));

    let report = run_check_tls(request(&k, "alice-pw"), CheckDns::default(), &custom(&ca)).await;
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
        tls_step(&report).detail,
        "the server requires a client certificate (mutual TLS) and we sent none"
    );

    let mut tls = custom(&ca);
    tls.identity = Some(
        phones
            .issue(&["alice.phone.test".to_owned()])
            .unwrap()
            .identity()
            .unwrap(),
    );
    let report = run_check_tls(request(&k, "alice-pw"), CheckDns::default(), &tls).await;
    assert!(report.registered, "{report:#?}\nkamailio log:\n{}", k.log());
}

#[tokio::test]
async fn auto_follows_sips_naptr_and_srv_to_kamailio_over_tls() {
    if !tls_available() || !available("dnsmasq", "dnsmasq-base") {
        return;
    }
    // The certificate names the SIP domain: SNI and verification use the domain, not the
    // SRV target (RFC 5922 §4.1).
    let ca = CertificateAuthority::new("interop CA").unwrap();
    let k = start(&ca.issue(&["pbx.test".to_owned()]).unwrap(), None);
    let dns = Dnsmasq::start(&DnsmasqConfig {
        local_domains: vec!["test".into()],
        naptr: vec![
            Naptr {
                name: "pbx.test".into(),
                order: 10,
                preference: 10,
                service: "SIPS+D2T".into(),
                replacement: "_sips._tcp.pbx.test".into(),
            },
            Naptr {
                name: "pbx.test".into(),
                order: 20,
                preference: 10,
                service: "SIP+D2U".into(),
                replacement: "_sip._udp.pbx.test".into(),
            },
        ],
        srv: vec![
            Srv {
                name: "_sips._tcp.pbx.test".into(),
                target: "sip1.pbx.test".into(),
                port: k.tls_port().unwrap(),
                priority: 10,
                weight: 0,
            },
            Srv {
                name: "_sip._udp.pbx.test".into(),
                target: "sip1.pbx.test".into(),
                port: k.port(),
                priority: 10,
                weight: 0,
            },
        ],
        hosts: vec![("sip1.pbx.test".into(), "127.0.0.1".parse().unwrap())],
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let mut req = request(&k, "alice-pw");
    req.domain = "pbx.test".into();
    req.port = None;
    let auto = CheckDns {
        auto: true,
        server: Some(dns.addr()),
    };
    let report = run_check_tls(req, auto, &custom(&ca)).await;
    assert!(report.registered, "{report:#?}\nkamailio log:\n{}", k.log());
    assert_eq!(report.transport, Some(FlowKind::Tls));
    assert_eq!(report.server, k.tls_addr());
    assert_eq!(report.registration_uri, "sip:pbx.test");
    let dns_step = &report.steps[0].detail;
    assert!(
        dns_step.contains("10 SIPS+D2T → _sips._tcp.pbx.test"),
        "{dns_step}"
    );
    assert!(
        tls_step(&report).detail.contains("with pbx.test; "),
        "{}",
        tls_step(&report).detail
    );
}
