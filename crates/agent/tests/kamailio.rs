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
    // Kamailio asked for qop=auth on REGISTER: the answer carries qop, nc and cnonce.
    assert!(report.trace[1].text.contains("qop=\"auth\""));
    assert!(sent[1].text.contains("qop=auth") && sent[1].text.contains("nc=00000001"));
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

/// A test file run: 5 callers call 5 callees through Kamailio (401 on REGISTER, 407 on INVITE,
/// record-routed ACK and BYE), every endpoint SUCCESS with the expected codes.
#[test]
fn a_run_of_callers_and_callees_through_kamailio() {
    if !have_binary("kamailio") {
        eprintln!("SKIPPED: kamailio is not installed (Debian package `kamailio`)");
        return;
    }
    let users = (1001..=1010)
        .map(|n| User::new(&n.to_string(), &format!("pw{n}")))
        .collect();
    let k = Kamailio::start(&KamailioConfig {
        users,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let text = format!(
        r#"
name = "through kamailio"
duration = "500ms"
seed = 3
shards = 1
time_limit = "30s"

[[registrar]]
id = "kam"
domain = "127.0.0.1"
port = {port}
transport = "udp"

[[accounts]]
registrar = "kam"
range = {{ from = 1001, to = 1010, password = "pw{{n}}" }}

[[group]]
name = "callees"
endpoints = 5
registrar = "kam"
role = "answer"
answer_delay = "100ms"

[[group]]
name = "callers"
endpoints = 5
registrar = "kam"
call = "group:callees"
"#,
        port = k.port()
    );
    let mut prepared = agent::testfile::prepare("kamailio.toml", &text, b"unused", 1_700_000_000)
        .unwrap_or_else(|e| panic!("{e}"));
    prepared.plan.keep_all_traces = true;
    let (tx, _rx) = std::sync::mpsc::channel();
    let (summary, reports) =
        agent::runner::execute(prepared, tx, agent::engine::StopHandle::default()).unwrap();
    for r in &reports {
        assert_eq!(
            r.outcome,
            agent::engine::Outcome::Success,
            "{r:#?}\nkamailio log:\n{}",
            k.log()
        );
        assert_eq!(r.registration_code, Some(200), "{}", r.user);
    }
    assert_eq!(reports.len(), 10);
    assert_eq!((summary.calls_attempted, summary.calls_answered), (5, 5));
    assert_eq!(summary.asr, Some(100.0));
    let callers: Vec<_> = reports.iter().filter(|r| r.group == "callers").collect();
    let callees: Vec<_> = reports.iter().filter(|r| r.group == "callees").collect();
    assert!(callers.iter().all(|r| r.call_code == Some(200)));
    assert_eq!(callees.iter().map(|r| r.calls_received).sum::<u32>(), 5);
    // Each caller was challenged with 407 on its INVITE, then went through; the callee saw
    // Kamailio's Record-Route, and the BYE travelled along it.
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
    for r in &callees {
        let invite = r
            .trace
            .iter()
            .find(|e| e.direction == Direction::Received && e.first_line().starts_with("INVITE "))
            .expect("the callee received the INVITE");
        assert!(
            invite
                .text
                .contains(&format!("Record-Route: <sip:127.0.0.1:{};", k.port())),
            "{}",
            invite.text
        );
    }
}
