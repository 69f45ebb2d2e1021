//! `check` with DNS discovery (AUTO, RFC 3263) through a real DNS server (dnsmasq on a free
//! loopback port) in front of a real registrar (Kamailio): NAPTR → SRV → A picks the transport
//! and port the records say, a dead SRV target is skipped, and a domain with only an A record
//! falls back to UDP 5060.
//!
//! Skipped with a message when `kamailio` or `dnsmasq` is absent (Debian packages `kamailio`
//! and `dnsmasq-base`; `./scripts/test` installs them).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use agent::check::{CheckDns, CheckReport, CheckRequest, StepStatus, run_check_with};
use agent::flow::FlowKind;
use agent::trace::Direction;
use sip_proto::auth::Credentials;
use testpeers::{Dnsmasq, DnsmasqConfig, Kamailio, KamailioConfig, Naptr, Srv, User, available};

struct Lab {
    kamailio: Kamailio,
    dns: Dnsmasq,
    dead_port: u16,
}

fn lab() -> Option<Lab> {
    if !available("kamailio", "kamailio") || !available("dnsmasq", "dnsmasq-base") {
        return None;
    }
    let kamailio = Kamailio::start(&KamailioConfig {
        users: std::iter::once(User::new("alice", "alice-pw"))
            .chain((1001..=1004).map(|n| User::new(&n.to_string(), &format!("pw{n}"))))
            .collect(),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let port = kamailio.port();
    // Nothing listens here: UDP gets ICMP port unreachable, TCP a refused connection.
    let dead_port = testpeers::free_port().unwrap();
    let naptr = |name: &str, order, service: &str, replacement: &str| Naptr {
        name: name.into(),
        order,
        preference: 10,
        service: service.into(),
        replacement: replacement.into(),
    };
    let srv = |name: &str, target: &str, port, priority| Srv {
        name: name.into(),
        target: target.into(),
        port,
        priority,
        weight: 0,
    };
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let dns = Dnsmasq::start(&DnsmasqConfig {
        local_domains: vec!["test".into()],
        naptr: vec![
            // TLS first by order: its target is dead, so the check fails over to TCP.
            naptr("naptr.test", 5, "SIPS+D2T", "_sips._tcp.naptr.test"),
            naptr("naptr.test", 10, "SIP+D2T", "_sip._tcp.naptr.test"),
            naptr("naptr.test", 20, "SIP+D2U", "_sip._udp.naptr.test"),
            naptr("run.test", 10, "SIP+D2U", "_sip._udp.run.test"),
        ],
        srv: vec![
            srv("_sips._tcp.naptr.test", "tls.naptr.test", dead_port, 10),
            srv("_sip._tcp.naptr.test", "kamailio.naptr.test", port, 10),
            srv("_sip._udp.naptr.test", "kamailio.naptr.test", port, 10),
            srv("_sip._udp.run.test", "kamailio.naptr.test", port, 10),
            srv("_sip._tcp.tcponly.test", "kamailio.naptr.test", port, 10),
            srv("_sip._udp.dual.test", "host.dual.test", port, 10),
            // The first UDP target is dead, the second is Kamailio.
            srv(
                "_sip._udp.failover.test",
                "dead.failover.test",
                dead_port,
                10,
            ),
            srv(
                "_sip._udp.failover.test",
                "kamailio.failover.test",
                port,
                20,
            ),
        ],
        hosts: vec![
            ("tls.naptr.test".into(), ip),
            ("kamailio.naptr.test".into(), ip),
            ("dead.failover.test".into(), ip),
            ("kamailio.failover.test".into(), ip),
            ("aonly.test".into(), ip),
            // Kamailio listens on 127.0.0.1 only: the AAAA address, tried first, is dead.
            ("host.dual.test".into(), "::1".parse().unwrap()),
            ("host.dual.test".into(), ip),
        ],
    })
    .unwrap_or_else(|e| panic!("{e}"));
    Some(Lab {
        kamailio,
        dns,
        dead_port,
    })
}

fn request(domain: &str, port: Option<u16>) -> CheckRequest {
    CheckRequest {
        domain: domain.into(),
        port,
        // Ignored with AUTO: DNS decides.
        transport: FlowKind::Udp,
        proxy: None,
        credentials: Some(Credentials::new("alice", "alice-pw")),
        extension: None,
        expires: 120,
        timeout: Duration::from_secs(10),
        seed: 5,
    }
}

fn auto(lab: &Lab) -> CheckDns {
    CheckDns {
        auto: true,
        server: Some(lab.dns.addr()),
    }
}

fn all_ok(r: &CheckReport) -> bool {
    r.steps.len() == 4 && r.steps.iter().all(|s| s.status == StepStatus::Ok)
}

fn notes(r: &CheckReport) -> Vec<&str> {
    r.trace
        .iter()
        .filter(|e| e.direction == Direction::Note)
        .map(|e| e.text.as_str())
        .collect()
}

#[tokio::test]
async fn auto_follows_naptr_and_srv_to_kamailio_over_tcp() {
    let Some(lab) = lab() else { return };
    let report = run_check_with(request("naptr.test", None), auto(&lab)).await;
    assert!(
        report.registered && all_ok(&report),
        "{report:#?}\n{}",
        lab.dns.log()
    );
    assert_eq!(report.registration_uri, "sip:naptr.test");
    assert_eq!(report.transport, Some(FlowKind::Tcp));
    assert_eq!(report.server, Some(lab.kamailio.addr()));
    let dns = &report.steps[0].detail;
    assert!(dns.starts_with("naptr.test Naptr → "), "{dns}");
    assert!(dns.contains("10 SIP+D2T → _sip._tcp.naptr.test"), "{dns}");
    assert!(
        dns.contains(&format!(
            "⇒ tls 127.0.0.1:{} (DNS server {})",
            lab.dead_port,
            lab.dns.addr()
        )),
        "the TLS target comes first by NAPTR order: {dns}"
    );
    // The TLS target is tried first; nothing listens there, so the check fails over to TCP.
    let n = notes(&report);
    assert!(
        n.iter().any(|t| *t
            == format!(
                "tls 127.0.0.1:{dead} failed (connection refused by 127.0.0.1:{dead}: nothing listens on that port over TCP): trying tcp 127.0.0.1:{} (RFC 3263 §4.3)",
                lab.kamailio.port(),
                dead = lab.dead_port,
            )),
        "{n:#?}"
    );
    let sent = report
        .trace
        .iter()
        .find(|e| e.direction == Direction::Sent)
        .unwrap();
    assert!(sent.text.starts_with("REGISTER sip:naptr.test SIP/2.0\r\n"));
    assert!(sent.text.contains("Via: SIP/2.0/TCP "));
    // dnsmasq saw the questions in RFC 3263 order.
    let log = lab.dns.log();
    let naptr_q = log.find("query[NAPTR] naptr.test").expect("NAPTR asked");
    let srv_q = log
        .find("query[SRV] _sip._tcp.naptr.test")
        .expect("SRV asked");
    let a_q = log.find("query[A] kamailio.naptr.test").expect("A asked");
    assert!(naptr_q < srv_q && srv_q < a_q, "{log}");
}

#[tokio::test]
async fn auto_fails_over_past_a_dead_srv_target() {
    let Some(lab) = lab() else { return };
    let report = run_check_with(request("failover.test", None), auto(&lab)).await;
    assert!(report.registered && all_ok(&report), "{report:#?}");
    assert_eq!(report.transport, Some(FlowKind::Udp));
    assert_eq!(report.server, Some(lab.kamailio.addr()));
    let n = notes(&report);
    let failover = n
        .iter()
        .find(|t| t.contains("(RFC 3263 §4.3)"))
        .unwrap_or_else(|| panic!("{n:#?}"));
    assert!(
        failover.starts_with(&format!("udp 127.0.0.1:{} failed (", lab.dead_port)),
        "{failover}"
    );
    assert!(
        failover.ends_with(&format!(
            "trying udp 127.0.0.1:{} (RFC 3263 §4.3)",
            lab.kamailio.port()
        )),
        "{failover}"
    );
    // Both REGISTERs are in the trace: the one to the dead target, then the one that worked.
    let registers: Vec<SocketAddr> = report
        .trace
        .iter()
        .filter(|e| e.direction == Direction::Sent && e.first_line().starts_with("REGISTER"))
        .filter_map(|e| e.remote)
        .collect();
    assert_eq!(registers[0].port(), lab.dead_port);
    assert!(registers[1..].iter().all(|a| *a == lab.kamailio.addr()));
}

#[tokio::test]
async fn auto_with_only_an_a_record_falls_back_to_udp_5060() {
    let Some(lab) = lab() else { return };
    let mut req = request("aonly.test", None);
    // Whatever answers on 5060 (usually nothing): this test is about where the check goes.
    req.timeout = Duration::from_secs(2);
    let report = run_check_with(req, auto(&lab)).await;
    assert_eq!(report.steps[0].status, StepStatus::Ok, "{report:#?}");
    assert_eq!(report.transport, Some(FlowKind::Udp));
    assert_eq!(report.server, Some("127.0.0.1:5060".parse().unwrap()));
    let dns = &report.steps[0].detail;
    assert!(dns.contains("aonly.test Naptr → no records"), "{dns}");
    assert!(
        dns.contains("_sip._udp.aonly.test Srv → no records"),
        "{dns}"
    );
    assert!(
        dns.contains("aonly.test A → 127.0.0.1 ⇒ udp 127.0.0.1:5060"),
        "{dns}"
    );
}

#[tokio::test]
async fn auto_with_a_port_asks_only_a_and_uses_udp() {
    let Some(lab) = lab() else { return };
    // RFC 3263 §4.2: a port in the URI means no NAPTR/SRV; UDP unless a transport is given.
    let report = run_check_with(request("aonly.test", Some(lab.kamailio.port())), auto(&lab)).await;
    assert!(report.registered && all_ok(&report), "{report:#?}");
    assert_eq!(
        report.registration_uri,
        format!("sip:aonly.test:{}", lab.kamailio.port())
    );
    assert_eq!(report.transport, Some(FlowKind::Udp));
    let dns = &report.steps[0].detail;
    assert!(!dns.contains("Naptr") && !dns.contains("Srv"), "{dns}");
}

#[tokio::test]
async fn a_fixed_transport_with_a_custom_dns_server() {
    let Some(lab) = lab() else { return };
    let mut req = request("kamailio.naptr.test", Some(lab.kamailio.port()));
    req.transport = FlowKind::Tcp;
    let report = run_check_with(
        req,
        CheckDns {
            auto: false,
            server: Some(lab.dns.addr()),
        },
    )
    .await;
    assert!(report.registered && all_ok(&report), "{report:#?}");
    assert_eq!(
        report.registration_uri,
        format!(
            "sip:kamailio.naptr.test:{};transport=tcp",
            lab.kamailio.port()
        )
    );
    assert_eq!(report.transport, Some(FlowKind::Tcp));
}

#[tokio::test]
async fn auto_for_a_domain_with_no_records_fails_at_dns() {
    let Some(lab) = lab() else { return };
    let report = run_check_with(request("nothing.test", None), auto(&lab)).await;
    assert!(!report.registered);
    assert_eq!(report.steps[0].status, StepStatus::Failed, "{report:#?}");
    assert!(
        report.steps[0]
            .detail
            .starts_with("nothing.test has no NAPTR, SRV or address records: ")
    );
    assert!(
        report.steps[1..]
            .iter()
            .all(|s| s.status == StepStatus::Skipped)
    );
    assert!(report.hint.as_deref().unwrap().contains("does not resolve"));
}

fn run_file(lab: &Lab, domain: &str) -> String {
    format!(
        r#"
name = "auto through dnsmasq and kamailio"
duration = "300ms"
seed = 9
shards = 1
time_limit = "30s"
dns_server = "{dns}"

[[registrar]]
id = "pbx"
domain = "{domain}"
transport = "auto"

[[accounts]]
registrar = "pbx"
range = {{ from = 1001, to = 1004, password = "pw{{n}}" }}

[[group]]
name = "callees"
endpoints = 2
registrar = "pbx"
role = "answer"

[[group]]
name = "callers"
endpoints = 2
registrar = "pbx"
call = "group:callees"
"#,
        dns = lab.dns.addr()
    )
}

#[test]
fn a_test_file_with_transport_auto_finds_kamailio_by_naptr_and_srv() {
    let Some(lab) = lab() else { return };
    let mut prepared = agent::testfile::prepare(
        "auto.toml",
        &run_file(&lab, "run.test"),
        b"-",
        1_700_000_000,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        prepared.plan.server.registrar_uri.to_string(),
        "sip:run.test"
    );
    prepared.plan.keep_all_traces = true;
    let (tx, _rx) = std::sync::mpsc::channel();
    let (summary, reports) =
        agent::runner::execute(prepared, tx, agent::engine::StopHandle::default())
            .unwrap_or_else(|e| panic!("{e}\n{}", lab.dns.log()));
    for r in &reports {
        assert_eq!(r.outcome, agent::engine::Outcome::Success, "{r:#?}");
        assert_eq!(r.registration_code, Some(200));
        // Every message went to the address the SRV record named.
        assert!(
            r.trace
                .iter()
                .filter(|e| e.direction == Direction::Sent)
                .all(|e| e.remote == Some(lab.kamailio.addr())),
            "{r:#?}"
        );
    }
    assert_eq!((summary.calls_attempted, summary.calls_answered), (2, 2));
    let log = lab.dns.log();
    assert!(log.contains("query[NAPTR] run.test"), "{log}");
    assert!(log.contains("query[SRV] _sip._udp.run.test"), "{log}");
}

/// A domain whose records offer only TCP: the run goes over TCP, one connection per
/// endpoint, to the address the SRV record names.
#[test]
fn a_test_file_with_auto_runs_over_tcp_when_dns_offers_only_tcp() {
    let Some(lab) = lab() else { return };
    let mut prepared = agent::testfile::prepare(
        "auto.toml",
        &run_file(&lab, "tcponly.test"),
        b"-",
        1_700_000_000,
    )
    .unwrap();
    prepared.plan.keep_all_traces = true;
    let (tx, _rx) = std::sync::mpsc::channel();
    let (summary, reports) =
        agent::runner::execute(prepared, tx, agent::engine::StopHandle::default())
            .unwrap_or_else(|e| panic!("{e}\n{}", lab.dns.log()));
    for r in &reports {
        assert_eq!(r.outcome, agent::engine::Outcome::Success, "{r:#?}");
        let sent: Vec<_> = r
            .trace
            .iter()
            .filter(|e| e.direction == Direction::Sent)
            .collect();
        assert!(
            sent.iter().all(|e| e.remote == Some(lab.kamailio.addr())
                && e.transport == Some(agent::flow::FlowKind::Tcp)),
            "{r:#?}"
        );
        assert!(
            sent[0].text.contains("Via: SIP/2.0/TCP "),
            "{}",
            sent[0].text
        );
    }
    assert_eq!((summary.calls_attempted, summary.calls_answered), (2, 2));
}

/// The first SRV target is dead: before the run, its OPTIONS is refused (ICMP), the run fails
/// over to the next target (RFC 3263 §4.3), and every endpoint talks to Kamailio only.
#[test]
fn a_run_fails_over_past_a_dead_srv_target() {
    let Some(lab) = lab() else { return };
    let mut prepared = agent::testfile::prepare(
        "auto.toml",
        &run_file(&lab, "failover.test"),
        b"-",
        1_700_000_000,
    )
    .unwrap();
    prepared.plan.keep_all_traces = true;
    let (tx, _rx) = std::sync::mpsc::channel();
    let (summary, reports) =
        agent::runner::execute(prepared, tx, agent::engine::StopHandle::default())
            .unwrap_or_else(|e| panic!("{e}\n{}", lab.dns.log()));
    assert_eq!(summary.discovery.len(), 2, "{:#?}", summary.discovery);
    assert!(
        summary.discovery[0].starts_with(&format!(
            "UDP 127.0.0.1:{} failed (the outbound proxy",
            lab.dead_port
        )) || summary.discovery[0]
            .starts_with(&format!("UDP 127.0.0.1:{} failed (", lab.dead_port)),
        "{:#?}",
        summary.discovery
    );
    assert!(
        summary.discovery[1].starts_with(&format!(
            "UDP {}: {} answered OPTIONS with 200",
            lab.kamailio.addr(),
            lab.kamailio.addr()
        )),
        "{:#?}",
        summary.discovery
    );
    for r in &reports {
        assert_eq!(r.outcome, agent::engine::Outcome::Success, "{r:#?}");
        assert!(
            r.trace
                .iter()
                .filter(|e| e.direction == Direction::Sent)
                .all(|e| e.remote == Some(lab.kamailio.addr())),
            "{r:#?}"
        );
    }
    assert_eq!((summary.calls_attempted, summary.calls_answered), (2, 2));
}

#[tokio::test]
async fn auto_tries_aaaa_first_and_falls_back_to_a() {
    let Some(lab) = lab() else { return };
    let report = run_check_with(request("dual.test", None), auto(&lab)).await;
    assert!(
        report.registered && all_ok(&report),
        "{report:#?}\n{}",
        lab.dns.log()
    );
    assert_eq!(report.server, Some(lab.kamailio.addr()));
    let port = lab.kamailio.port();
    assert!(
        report.steps[0]
            .detail
            .contains(&format!("host.dual.test Aaaa → ::1 ⇒ udp [::1]:{port}")),
        "{}",
        report.steps[0].detail
    );
    let n = notes(&report);
    assert!(
        n.iter()
            .any(|t| t.starts_with(&format!("udp [::1]:{port} failed ("))
                && t.ends_with(&format!("trying udp 127.0.0.1:{port} (RFC 3263 §4.3)"))),
        "{n:#?}"
    );
}
