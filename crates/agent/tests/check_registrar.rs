//! `check_registrar` (the plain-data API the server calls) and `check_builtin`: stored settings
//! (transport, verification mode, CA PEM) become the same checklist as `sipmeter check`.

use std::time::Duration;

use agent::builtin::{BuiltinRegistrar, Listen};
use agent::check::{
    CheckAccount, CheckSetupError, RegistrarCheck, RegistrarTransport, RegistrarVerify, StepStatus,
    check_builtin, check_registrar,
};
use registrar::{AccountStatus, Accounts, AuthMode, RegistrarConfig};
use sip_msg::Host;
use sip_net::tls::{CertificateAuthority, ServerSettings};

fn config(auth: AuthMode) -> RegistrarConfig {
    RegistrarConfig {
        domain: "127.0.0.1".into(),
        host: Host::parse("127.0.0.1").unwrap(),
        port: 0,
        transport: "UDP".into(),
        auth,
        secret: b"test".to_vec(),
        min_expires: 10,
        max_expires: 3600,
    }
}

fn spec(port: u16, transport: RegistrarTransport, verify: RegistrarVerify) -> RegistrarCheck {
    RegistrarCheck {
        domain: "127.0.0.1".into(),
        port: Some(port),
        transport,
        proxy: None,
        account: None,
        verify,
        ca_pem: None,
        client_cert_pem: None,
        client_key_pem: None,
        timeout: Duration::from_secs(10),
        seed: 3,
    }
}

fn statuses(r: &agent::check::CheckReport) -> Vec<(&'static str, StepStatus)> {
    r.steps.iter().map(|s| (s.name, s.status.clone())).collect()
}

#[tokio::test]
async fn tls_with_the_stored_ca_pem_registers_and_with_system_roots_fails_at_tls() {
    let ca = CertificateAuthority::new("sipmeter test CA").unwrap();
    let identity = ca
        .issue(&["127.0.0.1".to_owned()])
        .unwrap()
        .identity()
        .unwrap();
    let reg = BuiltinRegistrar::start(
        Listen::Tls(
            "127.0.0.1:0".parse().unwrap(),
            ServerSettings {
                identity,
                client_cas: None,
            },
        ),
        config(AuthMode::Open),
    )
    .await
    .unwrap();
    let port = reg.addr().port();

    let mut custom = spec(port, RegistrarTransport::Tls, RegistrarVerify::Custom);
    custom.ca_pem = Some(ca.cert_pem());
    let ok = check_registrar(custom).await.unwrap();
    assert!(ok.registered, "{ok:#?}");
    assert_eq!(
        statuses(&ok),
        [
            ("dns", StepStatus::Ok),
            ("transport", StepStatus::Ok),
            ("tls", StepStatus::Ok),
            ("register", StepStatus::Ok),
            ("auth", StepStatus::Ok)
        ]
    );
    assert_eq!(
        ok.registration_uri,
        format!("sip:127.0.0.1:{port};transport=tls")
    );

    // The same server against the bundled roots: the handshake is what fails.
    let system = check_registrar(spec(port, RegistrarTransport::Tls, RegistrarVerify::System))
        .await
        .unwrap();
    assert!(!system.registered);
    let tls = system.steps.iter().find(|s| s.name == "tls").unwrap();
    assert_eq!(tls.status, StepStatus::Failed, "{system:#?}");
    assert!(system.hint.is_some());

    // Skip: registers whatever the certificate.
    let skip = check_registrar(spec(port, RegistrarTransport::Tls, RegistrarVerify::Skip))
        .await
        .unwrap();
    assert!(skip.registered, "{skip:#?}");
    reg.stop().await;
}

#[tokio::test]
async fn unusable_stored_material_is_an_error_not_a_report() {
    let missing = check_registrar(spec(5061, RegistrarTransport::Tls, RegistrarVerify::Custom))
        .await
        .unwrap_err();
    assert!(matches!(missing, CheckSetupError::MissingCa), "{missing}");
    let mut bad = spec(5061, RegistrarTransport::Tls, RegistrarVerify::Custom);
    bad.ca_pem = Some("not a certificate".into());
    let e = check_registrar(bad).await.unwrap_err();
    assert!(matches!(e, CheckSetupError::Tls(_)), "{e}");
    let mut key = spec(5061, RegistrarTransport::Tls, RegistrarVerify::System);
    key.client_cert_pem = Some("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".into());
    key.client_key_pem = Some("junk".into());
    let e = check_registrar(key).await.unwrap_err();
    assert!(e.to_string().starts_with("client certificate:"), "{e}");
}

#[tokio::test]
async fn static_account_over_udp_success_and_wrong_password() {
    let accounts = Accounts(
        [(
            "2001".to_owned(),
            ("pw-2001".to_owned(), AccountStatus::Enabled),
        )]
        .into_iter()
        .collect(),
    );
    let reg = BuiltinRegistrar::start_udp(
        "127.0.0.1:0".parse().unwrap(),
        config(AuthMode::Static(accounts)),
    )
    .await
    .unwrap();
    let port = reg.addr().port();
    let account = |pw: &str| CheckAccount {
        username: "2001".into(),
        password: pw.into(),
        realm: None,
        extension: None,
    };
    let mut good = spec(port, RegistrarTransport::Udp, RegistrarVerify::System);
    good.account = Some(account("pw-2001"));
    good.proxy = Some("proxy.example.com:5070".into());
    let r = check_registrar(good).await.unwrap();
    assert!(r.registered, "{r:#?}");
    assert_eq!(r.final_code, Some(200));
    assert_eq!(
        r.trace[0].text,
        "outbound proxy proxy.example.com:5070 configured: used for calls; REGISTER goes to the registrar"
    );
    let mut bad = spec(port, RegistrarTransport::Udp, RegistrarVerify::System);
    bad.account = Some(account("nope"));
    assert!(
        !format!("{bad:?}").contains("nope"),
        "Debug redacts the password"
    );
    let r = check_registrar(bad).await.unwrap();
    assert_eq!(r.final_code, Some(401), "{r:#?}");
    assert_eq!(r.steps[3].status, StepStatus::Failed);
    reg.stop().await;
}

#[tokio::test]
async fn the_builtin_registrar_is_started_on_loopback_for_its_check() {
    let r = check_builtin(b"0123456789abcdef".to_vec(), Duration::from_secs(10), 9)
        .await
        .unwrap();
    assert!(r.registered, "{r:#?}");
    assert_eq!(r.final_code, Some(200));
    let server = r.server.unwrap();
    assert!(server.ip().is_loopback(), "{server}");
    // Ephemeral credentials: challenged, then accepted.
    assert_eq!(r.steps[2].detail, "the server answered REGISTER with 401");
}
