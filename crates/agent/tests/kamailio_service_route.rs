//! RFC 3608 Service-Route against Kamailio: its registrar appends a Service-Route to the 200
//! to REGISTER (as IMS cores and some SBCs do); the calls placed then carry it as their
//! preloaded Route (after the outbound proxy's, when one is set) and still complete.
//!
//! Skipped with a message when the `kamailio` binary is absent (`./scripts/test` installs it).

use agent::trace::Direction;
use testpeers::{Kamailio, KamailioConfig, User, available};

/// The two entries Kamailio's 200 to REGISTER gives (both Kamailio itself: it logs the
/// Route of each initial request, then drops it).
const SERVICE_ROUTE: &str = "<sip:127.0.0.1:@PORT@;lr;sr=orig>, <sip:127.0.0.1:@PORT@;lr;sr=term>";

fn kamailio() -> Kamailio {
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

/// Two callers call two callees through Kamailio, with or without an outbound proxy line:
/// every INVITE (the first and the one answering the 407) carries the service route, in
/// order, after the proxy's Route; REGISTER and BYE do not; the calls complete.
fn calls_carry_the_service_route(proxy: bool) {
    if !available("kamailio", "kamailio") {
        return;
    }
    let k = kamailio();
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
