//! Interop with Kamailio, a real third-party registrar and proxy, over loopback: `check` over
//! UDP and TCP, wrong password, disabled and unknown accounts, and a run of callers calling
//! callees through it (401 on REGISTER, 407 on INVITE, record-routed BYE).
//!
//! Skipped with a message when the `kamailio` binary is absent (`./scripts/test` installs it).

use std::time::Duration;

use agent::check::{CheckReport, CheckRequest, StepStatus, run_check};
use agent::flow::FlowKind;
use agent::trace::Direction;
use sip_proto::auth::Credentials;
use testpeers::{Kamailio, KamailioConfig, User, have_binary};

fn kamailio() -> Option<Kamailio> {
    if !have_binary("kamailio") {
        eprintln!("SKIPPED: kamailio is not installed (Debian package `kamailio`)");
        return None;
    }
    let config = KamailioConfig {
        users: vec![
            User::new("alice", "alice-pw"),
            User::new("bob", "bob-pw"),
            User::disabled("carol"),
        ],
        ..Default::default()
    };
    Some(Kamailio::start(&config).unwrap_or_else(|e| panic!("{e}")))
}

fn request(k: &Kamailio, transport: FlowKind, user: &str, password: &str) -> CheckRequest {
    CheckRequest {
        domain: "127.0.0.1".into(),
        port: Some(k.port()),
        transport,
        proxy: None,
        credentials: Some(Credentials::new(user, password)),
        extension: None,
        expires: 120,
        timeout: Duration::from_secs(10),
        seed: 11,
    }
}

fn statuses(r: &CheckReport) -> Vec<(&'static str, StepStatus)> {
    r.steps.iter().map(|s| (s.name, s.status.clone())).collect()
}

fn received_codes(r: &CheckReport) -> Vec<String> {
    r.trace
        .iter()
        .filter(|e| e.direction == Direction::Received)
        .map(|e| e.first_line().to_owned())
        .collect()
}

async fn registers_over(transport: FlowKind) {
    let Some(k) = kamailio() else { return };
    let report = run_check(request(&k, transport, "alice", "alice-pw")).await;
    assert!(report.registered, "{report:#?}\nkamailio log:\n{}", k.log());
    assert_eq!(report.final_code, Some(200));
    assert_eq!(
        statuses(&report),
        [
            ("dns", StepStatus::Ok),
            ("transport", StepStatus::Ok),
            ("register", StepStatus::Ok),
            ("auth", StepStatus::Ok)
        ]
    );
    assert_eq!(
        report.steps[3].detail.split(';').next().unwrap(),
        "200 OK after a 401 challenge"
    );
    // REGISTER → 401 → REGISTER with Authorization → 200, then the un-REGISTER → 200.
    assert_eq!(
        received_codes(&report),
        [
            "SIP/2.0 401 Unauthorized",
            "SIP/2.0 200 OK",
            "SIP/2.0 200 OK"
        ],
        "{:#?}",
        report.trace
    );
    let sent: Vec<_> = report
        .trace
        .iter()
        .filter(|e| e.direction == Direction::Sent)
        .collect();
    assert!(sent[1].text.contains("Authorization: Digest "));
    assert!(sent[1].text.contains("realm=\"127.0.0.1\""));
    let via = format!("SIP/2.0/{} ", transport.via_token());
    assert!(sent.iter().all(|e| e.text.contains(&via)));
}

#[tokio::test]
async fn check_registers_with_kamailio_over_udp() {
    registers_over(FlowKind::Udp).await;
}

#[tokio::test]
async fn check_registers_with_kamailio_over_tcp() {
    registers_over(FlowKind::Tcp).await;
}

#[tokio::test]
async fn wrong_password_fails_with_the_401_and_its_hint() {
    let Some(k) = kamailio() else { return };
    let report = run_check(request(&k, FlowKind::Udp, "alice", "wrong")).await;
    assert!(!report.registered);
    assert_eq!(report.final_code, Some(401), "{report:#?}");
    assert_eq!(report.steps[2].status, StepStatus::Ok, "Kamailio answered");
    assert_eq!(report.steps[3].status, StepStatus::Failed);
    assert!(
        report
            .hint
            .as_deref()
            .unwrap()
            .contains("check the SIP account's username, password and realm")
    );
    // Challenged, answered with credentials, challenged again: the UA gives up (no loop).
    assert_eq!(
        received_codes(&report),
        ["SIP/2.0 401 Unauthorized", "SIP/2.0 401 Unauthorized"]
    );
}

#[tokio::test]
async fn disabled_account_is_refused_with_403() {
    let Some(k) = kamailio() else { return };
    let report = run_check(request(&k, FlowKind::Udp, "carol", "anything")).await;
    assert!(!report.registered);
    assert_eq!(report.final_code, Some(403), "{report:#?}");
    assert!(report.hint.as_deref().unwrap().contains("account disabled"));
    assert_eq!(received_codes(&report), ["SIP/2.0 403 Account Disabled"]);
}

#[tokio::test]
async fn unknown_user_is_not_found() {
    let Some(k) = kamailio() else { return };
    let report = run_check(request(&k, FlowKind::Tcp, "mallory", "x")).await;
    assert!(!report.registered);
    assert_eq!(report.final_code, Some(404), "{report:#?}");
    assert!(report.hint.as_deref().unwrap().starts_with("not found"));
    assert_eq!(received_codes(&report), ["SIP/2.0 404 User Not Found"]);
}
