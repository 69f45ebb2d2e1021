//! Interop with Kamailio, a real third-party registrar and proxy, over loopback: `check` over
//! UDP and TCP, wrong password, disabled and unknown accounts, and a run of callers calling
//! callees through it (401 on REGISTER, 407 on INVITE, record-routed BYE), and its
//! Service-Route (RFC 3608) carried by those calls.
//!
//! Skipped with a message when the `kamailio` binary is absent (`./scripts/test` installs it).

use std::time::Duration;

use agent::check::{CheckReport, CheckRequest, StepStatus, run_check};
use agent::flow::FlowKind;
use agent::trace::Direction;
use sip_proto::auth::Credentials;
use testpeers::{Kamailio, KamailioConfig, User, available};

fn kamailio() -> Option<Kamailio> {
    if !available("kamailio", "kamailio") {
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

/// A server that accepts each nonce once (Kamailio's `one_time_nonce`) challenges the
/// un-REGISTER that reuses the nonce of the REGISTER: the check answers that challenge too.
#[tokio::test]
async fn a_one_time_nonce_server_rechallenges_and_the_check_answers() {
    if !available("kamailio", "kamailio") {
        return;
    }
    let k = Kamailio::start(&KamailioConfig {
        users: vec![User::new("alice", "alice-pw")],
        one_time_nonce: true,
        register_qop: false,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let report = run_check(request(&k, FlowKind::Udp, "alice", "alice-pw")).await;
    assert!(report.registered, "{report:#?}");
    assert_eq!(
        received_codes(&report),
        [
            "SIP/2.0 401 Unauthorized",
            "SIP/2.0 200 OK",
            "SIP/2.0 401 Unauthorized",
            "SIP/2.0 200 OK"
        ],
        "the un-REGISTER was challenged and then accepted: {:#?}",
        report.trace
    );
    let unregisters: Vec<_> = report
        .trace
        .iter()
        .filter(|e| e.direction == Direction::Sent && e.text.contains("Expires: 0\r\n"))
        .collect();
    assert_eq!(unregisters.len(), 2);
    // The second un-REGISTER answers the fresh nonce, not the spent one.
    let nonce = |text: &str| {
        text.split("nonce=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .map(str::to_owned)
    };
    let fresh = report
        .trace
        .iter()
        .filter(|e| e.direction == Direction::Received)
        .nth(2)
        .and_then(|e| nonce(&e.text));
    assert!(fresh.is_some());
    assert_eq!(nonce(&unregisters[1].text), fresh);
}

/// The same check against Kamailio on IPv6 loopback: `[::1]` in the registration URI, Via and
/// Contact.
async fn registers_over_ipv6(transport: FlowKind) {
    if !available("kamailio", "kamailio") {
        return;
    }
    let k = Kamailio::start(&KamailioConfig {
        users: vec![User::new("alice", "alice-pw")],
        ipv6: true,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let mut req = request(&k, transport, "alice", "alice-pw");
    req.domain = "::1".into();
    let report = run_check(req).await;
    assert!(report.registered, "{report:#?}\nkamailio log:\n{}", k.log());
    assert_eq!(
        report.registration_uri,
        format!(
            "sip:[::1]:{};transport={}",
            k.port(),
            transport.via_token().to_ascii_lowercase()
        )
    );
    assert_eq!(report.server, Some(k.addr()));
    let register = &report.trace[0].text;
    assert!(
        register.contains(&format!("SIP/2.0/{} [::1]:", transport.via_token())),
        "{register}"
    );
    assert!(
        register.contains("Contact: <sip:alice@[::1]:"),
        "{register}"
    );
    assert_eq!(
        received_codes(&report),
        [
            "SIP/2.0 401 Unauthorized",
            "SIP/2.0 200 OK",
            "SIP/2.0 200 OK"
        ]
    );
}

#[tokio::test]
async fn check_registers_with_kamailio_over_ipv6_udp() {
    registers_over_ipv6(FlowKind::Udp).await;
}

#[tokio::test]
async fn check_registers_with_kamailio_over_ipv6_tcp() {
    registers_over_ipv6(FlowKind::Tcp).await;
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

/// A test file run: 10 callers call 10 callees through Kamailio (401 on REGISTER, 407 on INVITE,
/// record-routed ACK and BYE), every endpoint SUCCESS with the expected codes.
#[test]
fn a_run_of_callers_and_callees_through_kamailio() {
    if !available("kamailio", "kamailio") {
        return;
    }
    let k = numbered_kamailio();
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
    assert_eq!(reports.len(), 20);
    assert_eq!((summary.calls_attempted, summary.calls_answered), (10, 10));
    assert_eq!(summary.asr, Some(100.0));
    let callers: Vec<_> = reports.iter().filter(|r| r.group == "callers").collect();
    let callees: Vec<_> = reports.iter().filter(|r| r.group == "callees").collect();
    assert!(callers.iter().all(|r| r.call_code == Some(200)));
    assert_eq!(callees.iter().map(|r| r.calls_received).sum::<u32>(), 10);
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

/// Kamailio with accounts 1001–1020 (password `pw<n>`), a disabled `carol`, and one-time
/// nonces (stricter than the default; INVITE challenges are never reused).
fn numbered_kamailio() -> Kamailio {
    let users = (1001..=1020)
        .map(|n| User::new(&n.to_string(), &format!("pw{n}")))
        .chain(std::iter::once(User::disabled("carol")))
        .collect();
    Kamailio::start(&KamailioConfig {
        users,
        one_time_nonce: true,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn run_text(
    text: &str,
) -> (
    agent::engine::RunSummary,
    Vec<agent::engine::EndpointReport>,
) {
    let mut prepared = agent::testfile::prepare("kamailio.toml", text, b"unused", 1_700_000_000)
        .unwrap_or_else(|e| panic!("{e}"));
    prepared.plan.keep_all_traces = true;
    let (tx, _rx) = std::sync::mpsc::channel();
    agent::runner::execute(prepared, tx, agent::engine::StopHandle::default()).unwrap()
}

/// INVITEs sent through an outbound proxy carry the preloaded Route (RFC 3261 §8.1.2), and
/// Kamailio, acting as that proxy, sees it.
#[test]
fn calls_through_an_outbound_proxy_carry_its_route() {
    if !available("kamailio", "kamailio") {
        return;
    }
    let k = numbered_kamailio();
    let port = k.port();
    let (summary, reports) = run_text(&format!(
        r#"
name = "outbound proxy"
duration = "300ms"
seed = 4
shards = 1
time_limit = "30s"

[[registrar]]
id = "kam"
domain = "127.0.0.1"
port = {port}
outbound_proxy = "127.0.0.1:{port}"

[[accounts]]
registrar = "kam"
range = {{ from = 1001, to = 1004, password = "pw{{n}}" }}

[[group]]
name = "callees"
endpoints = 2
registrar = "kam"
role = "answer"

[[group]]
name = "callers"
endpoints = 2
registrar = "kam"
call = "group:callees"
"#
    ));
    assert_eq!(
        (summary.calls_attempted, summary.calls_answered),
        (2, 2),
        "{reports:#?}"
    );
    let route = format!("Route: <sip:127.0.0.1:{port};lr>");
    for r in reports.iter().filter(|r| r.group == "callers") {
        let invite = r
            .trace
            .iter()
            .find(|e| e.direction == Direction::Sent && e.first_line().starts_with("INVITE "))
            .unwrap();
        assert!(invite.text.contains(&route), "{}", invite.text);
    }
    let log = k.log();
    let seen: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("initial INVITE from "))
        .collect();
    assert_eq!(
        seen.len(),
        4,
        "two INVITEs per caller (407, then authorised): {log}"
    );
    assert!(
        seen.iter()
            .all(|l| l.ends_with(&format!("with Route: <sip:127.0.0.1:{port};lr>"))),
        "{seen:#?}"
    );
}

/// A disabled account ends REGISTRATION_FAILED with Kamailio's 403 and the hint; the other
/// endpoints of the run are unaffected.
#[test]
fn a_disabled_account_fails_registration_with_403_in_a_run() {
    if !available("kamailio", "kamailio") {
        return;
    }
    let k = numbered_kamailio();
    let (summary, reports) = run_text(&format!(
        r#"
name = "disabled account"
duration = "200ms"
seed = 5
shards = 1
time_limit = "20s"

[[registrar]]
id = "kam"
domain = "127.0.0.1"
port = {port}

[[accounts]]
registrar = "kam"
list = [
  {{ username = "1001", password = "pw1001" }},
  {{ username = "carol", password = "whatever" }},
]

[[group]]
name = "phones"
endpoints = 2
registrar = "kam"
role = "register"
"#,
        port = k.port()
    ));
    assert_eq!(summary.outcomes.get("SUCCESS"), Some(&1), "{reports:#?}");
    let carol = reports.iter().find(|r| r.user == "carol").unwrap();
    assert_eq!(carol.outcome, agent::engine::Outcome::RegistrationFailed);
    assert_eq!(carol.registration_code, Some(403));
    let error = carol.error.as_deref().unwrap();
    assert!(error.contains("403"), "{error}");
    assert!(error.contains("account disabled"), "{error}");
}

/// Calls Kamailio cannot complete: an unknown user (404) and a known user who is not
/// registered (480) end CALL_FAILED with those codes and their hints.
#[test]
fn calls_to_unknown_and_unregistered_users_fail_with_404_and_480() {
    if !available("kamailio", "kamailio") {
        return;
    }
    let k = numbered_kamailio();
    let (summary, reports) = run_text(&format!(
        r#"
name = "failed calls"
duration = "200ms"
seed = 6
shards = 1
time_limit = "20s"

[[registrar]]
id = "kam"
domain = "127.0.0.1"
port = {port}

[[accounts]]
registrar = "kam"
range = {{ from = 1001, to = 1002, password = "pw{{n}}" }}

[[group]]
name = "to-unknown"
endpoints = 1
registrar = "kam"
call = "sip:9999@127.0.0.1"

[[group]]
name = "to-offline"
endpoints = 1
registrar = "kam"
call = "sip:1019@127.0.0.1"
"#,
        port = k.port()
    ));
    assert_eq!((summary.calls_attempted, summary.calls_answered), (2, 0));
    let by_group = |g: &str| reports.iter().find(|r| r.group == g).unwrap();
    for (group, code, hint) in [
        ("to-unknown", 404, "not found"),
        ("to-offline", 480, "not reachable now"),
    ] {
        let r = by_group(group);
        assert_eq!(r.outcome, agent::engine::Outcome::CallFailed, "{r:#?}");
        assert_eq!(r.registration_code, Some(200));
        assert_eq!(r.call_code, Some(code), "{r:#?}");
        let error = r.error.as_deref().unwrap_or_default();
        assert!(error.contains(hint), "{error}");
    }
}

/// The server goes down: over UDP the ICMP "port unreachable" ends the check at once with
/// the 408 outcome (RFC 3261 §8.1.3.1 treats a transport error like a timeout); over TCP the
/// refused connection fails the transport step.
#[tokio::test]
async fn a_stopped_server_is_a_transport_failure_not_a_hang() {
    let Some(k) = kamailio() else { return };
    let dead = request(&k, FlowKind::Udp, "alice", "alice-pw");
    drop(k);
    let started = std::time::Instant::now();
    let report = run_check(dead.clone()).await;
    assert!(started.elapsed() < Duration::from_secs(5), "no 32 s wait");
    assert!(!report.registered);
    assert_eq!(report.final_code, Some(408), "{report:#?}");
    assert_eq!(report.steps[2].status, StepStatus::Failed);
    assert!(
        report.steps[2]
            .detail
            .contains("refused it (ICMP unreachable"),
        "{}",
        report.steps[2].detail
    );
    assert!(
        report
            .hint
            .as_deref()
            .unwrap()
            .starts_with("request timeout")
    );

    let report = run_check(CheckRequest {
        transport: FlowKind::Tcp,
        ..dead
    })
    .await;
    assert_eq!(report.steps[1].status, StepStatus::Failed, "{report:#?}");
    assert!(
        report.steps[1]
            .detail
            .starts_with("connection refused by 127.0.0.1:")
    );
}

/// A run over IPv6 loopback through Kamailio on `[::1]`: 2 callers → 2 callees.
#[test]
fn a_run_over_ipv6_through_kamailio() {
    if !available("kamailio", "kamailio") {
        return;
    }
    let k = Kamailio::start(&KamailioConfig {
        users: (1001..=1004)
            .map(|n| User::new(&n.to_string(), &format!("pw{n}")))
            .collect(),
        ipv6: true,
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let (summary, reports) = run_text(&format!(
        r#"
name = "ipv6"
duration = "200ms"
seed = 8
shards = 1
time_limit = "20s"

[[registrar]]
id = "kam"
domain = "::1"
port = {port}

[[accounts]]
registrar = "kam"
range = {{ from = 1001, to = 1004, password = "pw{{n}}" }}

[[group]]
name = "callees"
endpoints = 2
registrar = "kam"
role = "answer"

[[group]]
name = "callers"
endpoints = 2
registrar = "kam"
call = "group:callees"
"#,
        port = k.port()
    ));
    for r in &reports {
        assert_eq!(
            r.outcome,
            agent::engine::Outcome::Success,
            "{r:#?}\n{}",
            k.log()
        );
    }
    assert_eq!((summary.calls_attempted, summary.calls_answered), (2, 2));
    let invite = reports
        .iter()
        .filter(|r| r.group == "callers")
        .flat_map(|r| r.trace.iter())
        .find(|e| e.first_line().starts_with("INVITE "))
        .unwrap();
    assert!(
        invite.first_line().starts_with("INVITE sip:100"),
        "{}",
        invite.text
    );
    assert!(
        invite.first_line().contains("@[::1] SIP/2.0"),
        "{}",
        invite.text
    );
}

// RFC 3608 Service-Route: Kamailio's registrar appends a Service-Route to the 200 to
// REGISTER (as IMS cores and some SBCs do); the calls placed then carry it as their
// preloaded Route (after the outbound proxy's, when one is set) and still complete.

/// The two entries Kamailio's 200 to REGISTER gives (both Kamailio itself: it logs the
/// Route of each initial request, then drops it).
const SERVICE_ROUTE: &str = "<sip:127.0.0.1:@PORT@;lr;sr=orig>, <sip:127.0.0.1:@PORT@;lr;sr=term>";

fn service_route_kamailio() -> Kamailio {
    let users = (1001..=1004)
        .map(|n| User::new(&n.to_string(), &format!("pw{n}")))
        .collect();
    Kamailio::start(&KamailioConfig {
        users,
        service_route: Some(SERVICE_ROUTE.into()),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Two callers call two callees through Kamailio, with or without an outbound proxy line:
/// every INVITE (the first and the one answering the 407) carries the service route, in
/// order, after the proxy's Route; REGISTER and BYE do not; the calls complete.
fn calls_carry_the_service_route(proxy: bool) {
    if !available("kamailio", "kamailio") {
        return;
    }
    let k = service_route_kamailio();
    let port = k.port();
    let proxy_line = if proxy {
        format!("outbound_proxy = \"127.0.0.1:{port}\"")
    } else {
        String::new()
    };
    let (summary, reports) = run_text(&format!(
        r#"
name = "service route"
duration = "300ms"
seed = 5
shards = 1
time_limit = "30s"

[[registrar]]
id = "kam"
domain = "127.0.0.1"
port = {port}
{proxy_line}

[[accounts]]
registrar = "kam"
range = {{ from = 1001, to = 1004, password = "pw{{n}}" }}

[[group]]
name = "callees"
endpoints = 2
registrar = "kam"
role = "answer"

[[group]]
name = "callers"
endpoints = 2
registrar = "kam"
call = "group:callees"
"#
    ));
    let log = k.log();
    assert_eq!(
        (summary.calls_attempted, summary.calls_answered),
        (2, 2),
        "{reports:#?}\nkamailio log:\n{log}"
    );
    for r in &reports {
        assert_eq!(r.outcome, agent::engine::Outcome::Success, "{r:#?}\n{log}");
    }
    let service_route = SERVICE_ROUTE.replace("@PORT@", &port.to_string());
    let routes = if proxy {
        format!("Route: <sip:127.0.0.1:{port};lr>\r\nRoute: {service_route}\r\n")
    } else {
        format!("Route: {service_route}\r\n")
    };
    for r in reports.iter().filter(|r| r.group == "callers") {
        let ok = r
            .trace
            .iter()
            .find(|e| {
                e.direction == Direction::Received
                    && e.first_line() == "SIP/2.0 200 OK"
                    && e.text.contains(" REGISTER\r\n")
            })
            .expect("a 200 to REGISTER");
        assert!(
            ok.text.contains(&format!("Service-Route: {service_route}")),
            "{}",
            ok.text
        );
        let sent = |method: &str| {
            r.trace
                .iter()
                .filter(|e| e.direction == Direction::Sent && e.first_line().starts_with(method))
                .collect::<Vec<_>>()
        };
        let invites = sent("INVITE ");
        assert_eq!(invites.len(), 2, "the INVITE, then its answer to the 407");
        for invite in invites {
            assert!(invite.text.contains(&routes), "{}", invite.text);
        }
        for e in sent("REGISTER ").into_iter().chain(sent("BYE ")) {
            assert!(
                !e.text.contains(&service_route),
                "{} carries the service route:\n{}",
                e.first_line(),
                e.text
            );
        }
    }
    // Kamailio saw the route on each initial INVITE (its log names the first Route line).
    let seen: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("initial INVITE from "))
        .collect();
    assert_eq!(seen.len(), 4, "two INVITEs per caller: {log}");
    let first_line = if proxy {
        format!("<sip:127.0.0.1:{port};lr>")
    } else {
        service_route.clone()
    };
    assert!(
        seen.iter()
            .all(|l| l.ends_with(&format!("with Route: {first_line}"))),
        "{seen:#?}"
    );
}

#[test]
fn calls_carry_the_service_route_of_the_registration() {
    calls_carry_the_service_route(false);
}

#[test]
fn calls_carry_the_service_route_after_the_outbound_proxy() {
    calls_carry_the_service_route(true);
}
