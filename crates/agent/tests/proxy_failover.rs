//! An outbound proxy located by RFC 3263 on its own name, with failover (RFC 3263 §4.3),
//! against real peers: dnsmasq publishes `_sip._udp.proxy.test` SRV records for two Kamailio
//! outbound proxies (priority 10 and 20; 407 on INVITE, then on to a Kamailio registrar that
//! trusts them), the way an SBC pair publishes itself. The registrar is given by address;
//! `outbound_proxy = "proxy.test"` has no port, so the run asks SRV for the registrar's
//! transport through the file's `dns_server`.
//!
//! Skipped with a message when `kamailio` or `dnsmasq` is absent (fails when
//! `SIPMETER_REQUIRE_PEERS` is set).

// Shared with the registrar's failover tests; this file uses part of it.
#[allow(dead_code)]
mod failover_common;

use std::net::SocketAddr;

use agent::engine::{EndpointReport, Outcome, Phase, RunEvent, RunSummary, StopHandle};
use failover_common::{dns, kamailio, notes, peers, sent, wait_until};
use testpeers::{Dnsmasq, Kamailio, KamailioConfig};

/// The registrar behind the proxies: it registers the phones and delivers the calls the
/// proxies authenticated.
fn registrar() -> Kamailio {
    kamailio(KamailioConfig {
        invite_auth: false,
        one_udp_worker: true,
        ..Default::default()
    })
}

/// An outbound proxy in front of `registrar`: 407 on INVITE, then on to it.
fn proxy(registrar: &Kamailio, config: KamailioConfig) -> Kamailio {
    kamailio(KamailioConfig {
        forward_to: Some(format!("sip:{}", registrar.addr())),
        ..config
    })
}

/// Two proxies in front of `registrar`, relaying to it over `transport`, behind
/// `_sip._<transport>.proxy.test` SRV: the first (priority 10) does not Record-Route, so the
/// calls through it outlive it; the second (priority 20) does.
fn a_proxy_to_stop_and_one_to_stay(
    registrar: &Kamailio,
    transport: &str,
) -> (Kamailio, Kamailio, Dnsmasq) {
    let relay = |record_route| {
        kamailio(KamailioConfig {
            forward_to: Some(format!("sip:{};transport={transport}", registrar.addr())),
            record_route,
            ..Default::default()
        })
    };
    let (p1, p2) = (relay(false), relay(true));
    let dns = dns(
        &format!("_sip._{transport}"),
        "proxy.test",
        p1.addr(),
        p2.addr(),
    );
    (p1, p2, dns)
}

/// 2 callers → 2 callees at `registrar` through the outbound proxy `proxy.test` (SRV through
/// `dns`), T1 = 50 ms (Timer B 3.2 s).
/// `top`: more top-level keys; `callers`: more keys of the callers' group.
fn run_file(
    dns: &Dnsmasq,
    transport: &str,
    registrar: SocketAddr,
    top: &str,
    callers: &str,
) -> String {
    format!(
        r#"
name = "proxy failover"
seed = 12
shards = 1
time_limit = "60s"
t1 = "50ms"
duration = "300ms"
dns_server = "{dns}"
{top}

[[registrar]]
id = "pbx"
domain = "127.0.0.1"
port = {port}
transport = "{transport}"
outbound_proxy = "proxy.test"

[[accounts]]
registrar = "pbx"
range = {{ from = 1001, to = 1004, password = "pw{{n}}" }}

[[group]]
name = "callees"
endpoints = 2
registrar = "pbx"
role = "answer"
media = false

[[group]]
name = "callers"
endpoints = 2
registrar = "pbx"
call = "group:callees"
media = false
{callers}
"#,
        dns = dns.addr(),
        port = registrar.port()
    )
}

/// What the run's thread returns: the run, or why it did not start.
type RunResult = std::io::Result<(RunSummary, Vec<EndpointReport>)>;

fn start(
    toml: &str,
) -> (
    std::sync::mpsc::Receiver<RunEvent>,
    std::thread::JoinHandle<RunResult>,
) {
    let mut prepared = agent::testfile::prepare("proxy.toml", toml, b"-", 1_700_000_000)
        .unwrap_or_else(|e| panic!("{e}"));
    prepared.plan.keep_all_traces = true;
    let (tx, rx) = std::sync::mpsc::channel();
    let run =
        std::thread::spawn(move || agent::runner::execute(prepared, tx, StopHandle::default()));
    (rx, run)
}

/// Runs 2 callers → 2 callees through the proxies behind `dns` over `transport`, two calls
/// each, `pause` seconds apart, and stops the first proxy `after` ms once the first calls are
/// up (the callees too, so nothing is still ringing).
fn stop_the_first_proxy_between_calls(
    dns: &Dnsmasq,
    transport: &str,
    reg: &Kamailio,
    first: Kamailio,
    pause: u32,
    after: u64,
) -> (RunSummary, Vec<EndpointReport>) {
    let (rx, run) = start(&run_file(
        dns,
        transport,
        reg.addr(),
        "",
        &format!("calls = 2\npause = \"{pause}s\""),
    ));
    wait_for_phases(&rx, "the first calls were up", Phase::Incall, 4);
    std::thread::sleep(std::time::Duration::from_millis(after));
    drop(first);
    run.join().unwrap().unwrap_or_else(|e| panic!("{e}"))
}

/// Reads the run's events until `n` endpoints entered `phase` (`what` names it).
fn wait_for_phases(rx: &std::sync::mpsc::Receiver<RunEvent>, what: &str, phase: Phase, n: u32) {
    let mut seen = 0;
    wait_until(rx, what, |e| {
        if matches!(e, RunEvent::Phase { phase: p, .. } if *p == phase) {
            seen += 1;
        }
        seen >= n
    });
}

fn callers(reports: &[EndpointReport]) -> impl Iterator<Item = &EndpointReport> {
    reports.iter().filter(|r| r.group == "callers")
}

/// The first proxy answers INVITE with 503 and Retry-After (OPTIONS 200, so the pre-run probe
/// keeps it first): the first caller's INVITE is sent again, as a new transaction, to the
/// second proxy and answered; the shard then skips the first for the Retry-After, so the
/// second caller's INVITE goes straight to the second. REGISTER never goes to a proxy.
#[test]
fn calls_move_to_the_second_srv_proxy_when_the_first_answers_503() {
    if !peers() {
        return;
    }
    let reg = registrar();
    let p1 = proxy(
        &reg,
        KamailioConfig {
            unavailable: Some(120),
            ..Default::default()
        },
    );
    let p2 = proxy(&reg, KamailioConfig::default());
    let (a1, a2) = (p1.addr(), p2.addr());
    let dns = dns("_sip._udp", "proxy.test", a1, a2);
    let (_rx, run) = start(&run_file(&dns, "udp", reg.addr(), "ramp = \"1/s\"", ""));
    let (summary, reports) = run.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        summary
            .discovery
            .iter()
            .any(|d| d.starts_with(&format!("outbound proxy UDP {a1}: "))),
        "the proxy was located and probed: {:#?}",
        summary.discovery
    );
    assert_eq!(
        (summary.calls_attempted, summary.calls_answered),
        (2, 2),
        "{reports:#?}"
    );
    assert_eq!(summary.failovers, 1, "{reports:#?}");
    let moved = format!(
        "outbound proxy: target {a1} UDP failed: 503 Service Unavailable (Retry-After 120 s); trying {a2} UDP (SRV 2 of 2)"
    );
    let mut moved_seen = 0;
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        for reg_sent in sent(r, "REGISTER") {
            assert_eq!(reg_sent.remote, Some(reg.addr()), "{r:#?}");
        }
    }
    for r in callers(&reports) {
        assert_eq!((r.calls_attempted, r.calls_answered), (1, 1), "{r:#?}");
        let invites = sent(r, "INVITE");
        // The Route names the proxy as written: the name, no port (RFC 3263 §4.2).
        assert!(
            invites
                .iter()
                .all(|i| i.text.contains("Route: <sip:proxy.test;lr>")),
            "{r:#?}"
        );
        assert_eq!(invites.last().unwrap().remote, Some(a2), "{r:#?}");
        if invites[0].remote == Some(a1) {
            moved_seen += 1;
            assert!(notes(r).contains(&moved.as_str()), "{:#?}", notes(r));
            // A new transaction: another branch (and Call-ID) than the one that got 503.
            let branch = |e: &agent::trace::TraceEntry| {
                e.text
                    .lines()
                    .find(|l| l.starts_with("Via: "))
                    .and_then(|l| l.split(";branch=").nth(1))
                    .map(|b| b.split(';').next().unwrap_or(b).to_owned())
            };
            let last = invites.last().unwrap();
            assert_ne!(branch(invites[0]), branch(last), "{r:#?}");
        }
    }
    assert_eq!(moved_seen, 1, "one caller met the 503: {reports:#?}");
    let log = p2.log();
    assert!(
        log.lines()
            .filter(|l| l.contains("initial INVITE from "))
            .count()
            >= 4,
        "both callers' INVITEs (407, authorised) reached the second proxy: {log}"
    );
}

/// The first proxy dies between the calls (it does not Record-Route, so the first calls'
/// BYEs go through the registrar): each caller's second INVITE gets no answer (Timer B), is
/// sent again to the second proxy and answered. Every endpoint ends SUCCESS.
#[test]
fn new_calls_move_to_the_second_srv_proxy_when_the_first_dies() {
    if !peers() {
        return;
    }
    let reg = registrar();
    let (p1, p2, dns) = a_proxy_to_stop_and_one_to_stay(&reg, "udp");
    let (a1, a2) = (p1.addr(), p2.addr());
    let (summary, reports) = stop_the_first_proxy_between_calls(&dns, "udp", &reg, p1, 2, 0);
    assert_eq!(
        (summary.calls_attempted, summary.calls_answered),
        (4, 4),
        "{reports:#?}"
    );
    let timed_out = format!(
        "outbound proxy: target {a1} UDP failed: no final response (Timer B fired); trying {a2} UDP (SRV 2 of 2)"
    );
    let skipped = format!(
        "outbound proxy: target {a1} UDP is down (found by another endpoint of the shard); sending to {a2} UDP (SRV 2 of 2)"
    );
    let mut timeouts = 0;
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
    }
    for r in callers(&reports) {
        assert_eq!((r.calls_attempted, r.calls_answered), (2, 2), "{r:#?}");
        let invites = sent(r, "INVITE");
        assert_eq!(invites[0].remote, Some(a1), "{r:#?}");
        assert_eq!(invites.last().unwrap().remote, Some(a2), "{r:#?}");
        let n = notes(r);
        timeouts += n.iter().filter(|t| **t == timed_out).count();
        assert!(n.iter().any(|t| *t == timed_out || *t == skipped), "{n:#?}");
    }
    assert!(timeouts >= 1, "{reports:#?}");
    assert!(
        (1..=2).contains(&summary.failovers),
        "{}",
        summary.failovers
    );
}

/// A proxy name DNS does not know: the run does not start, and the error names the file's
/// line and `registrar[0].outbound_proxy`.
#[test]
fn an_outbound_proxy_name_that_does_not_resolve_stops_the_run_before_it_starts() {
    if !peers() {
        return;
    }
    let reg = registrar();
    // dnsmasq knows only `elsewhere.test`: `proxy.test` has no records.
    let dns = dns("_sip._udp", "elsewhere.test", reg.addr(), reg.addr());
    let toml = run_file(&dns, "udp", reg.addr(), "", "");
    let (_rx, run) = start(&toml);
    let e = run.join().unwrap().expect_err("the run must not start");
    let line = toml
        .lines()
        .position(|l| l.starts_with("outbound_proxy"))
        .unwrap()
        + 1;
    let e = e.to_string();
    assert!(
        e.starts_with(&format!(
            "proxy.toml:{line}: registrar[0].outbound_proxy: DNS finds no server for proxy.test"
        )),
        "{e}"
    );
}

/// Over TCP the proxy connection goes to the endpoint's proxy target. The first proxy dies
/// between the calls (after the first ended): the connections to it close, the reopened one is refused, and it moves
/// to the second target (`_sip._tcp` SRV 2 of 2); the second calls go through it.
#[test]
fn tcp_calls_move_to_the_second_srv_proxy_when_the_first_dies() {
    if !peers() {
        return;
    }
    let reg = registrar();
    let (p1, p2, dns) = a_proxy_to_stop_and_one_to_stay(&reg, "tcp");
    let (a1, a2) = (p1.addr(), p2.addr());
    // Not under the first calls (300 ms): a call placed through a proxy connection is lost
    // with it.
    let (summary, reports) = stop_the_first_proxy_between_calls(&dns, "tcp", &reg, p1, 3, 1200);
    assert_eq!(
        (summary.calls_attempted, summary.calls_answered),
        (4, 4),
        "{reports:#?}"
    );
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
    }
    let refused = format!("outbound proxy: target {a1} TCP failed: connect failed: ");
    let skipped = format!(
        "outbound proxy: target {a1} TCP is down (found by another endpoint of the shard); sending to {a2} TCP (SRV 2 of 2)"
    );
    for r in callers(&reports) {
        let invites = sent(r, "INVITE");
        assert_eq!(invites[0].remote, Some(a1), "{r:#?}");
        assert_eq!(invites.last().unwrap().remote, Some(a2), "{r:#?}");
        let n = notes(r);
        assert!(
            n.iter().any(|t| (t.starts_with(&refused)
                && t.ends_with(&format!("; trying {a2} TCP (SRV 2 of 2)")))
                || *t == skipped),
            "{n:#?}"
        );
        assert!(
            n.iter()
                .any(|t| t.starts_with(&format!("connecting over TCP to the outbound proxy {a2}"))),
            "{n:#?}"
        );
    }
    assert!(summary.failovers >= 1, "{}", summary.failovers);
}

/// `check --proxy proxy.test` locates the proxy as a run does (SRV through the check's DNS
/// server) and probes its targets in order: the first is a dead UDP port (ICMP port
/// unreachable), the second a Kamailio proxy; the step names the address that answered and
/// the one skipped.
#[test]
fn check_locates_a_proxy_by_name_and_probes_the_next_target_when_the_first_is_dead() {
    if !peers() {
        return;
    }
    let reg = registrar();
    let dead = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .unwrap();
    let p2 = proxy(&reg, KamailioConfig::default());
    let a2 = p2.addr();
    let dns = dns("_sip._udp", "proxy.test", dead, a2);
    let req = agent::check::CheckRequest {
        domain: "127.0.0.1".into(),
        port: Some(reg.port()),
        transport: agent::flow::FlowKind::Udp,
        proxy: Some("proxy.test".into()),
        credentials: Some(sip_proto::auth::Credentials::new("1001", "pw1001")),
        extension: None,
        expires: 120,
        timeout: std::time::Duration::from_secs(10),
        seed: 11,
    };
    let check_dns = agent::check::CheckDns {
        auto: false,
        server: Some(dns.addr()),
    };
    let report = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(agent::check::run_check_with(req, check_dns));
    assert!(report.registered, "{report:#?}");
    let step = report.steps.iter().find(|s| s.name == "proxy").unwrap();
    assert_eq!(step.status, agent::check::StepStatus::Ok, "{report:#?}");
    assert!(
        step.detail.starts_with(&format!(
            "outbound proxy {a2} answered OPTIONS with 200 Keepalive"
        )),
        "{}",
        step.detail
    );
    assert!(
        step.detail
            .contains("(target 2 of 2 for proxy.test); skipped: "),
        "{}",
        step.detail
    );
    assert!(step.detail.contains(&dead.to_string()), "{}", step.detail);
}

/// dnsmasq for the AUTO tests: the registrar `pbx.test` by `_sip._udp` SRV, the proxy
/// `proxy.test` by `proxy_service` SRV (`_sip._udp` or `_sip._tcp`), both on loopback.
fn auto_dns(registrar: SocketAddr, proxy_service: &str, proxy: SocketAddr) -> Dnsmasq {
    let srv = |name: &str, target: &str, port| testpeers::Srv {
        name: name.into(),
        target: target.into(),
        port,
        priority: 10,
        weight: 0,
    };
    let ip: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    Dnsmasq::start(&testpeers::DnsmasqConfig {
        local_domains: vec!["test".into()],
        naptr: vec![],
        srv: vec![
            srv("_sip._udp.pbx.test", "reg.pbx.test", registrar.port()),
            srv(
                &format!("{proxy_service}.proxy.test"),
                "sbc.proxy.test",
                proxy.port(),
            ),
        ],
        hosts: vec![("reg.pbx.test".into(), ip), ("sbc.proxy.test".into(), ip)],
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// AUTO: the registrar is found by its SRV (UDP) and the proxy by its own (`_sip._udp`
/// here): the run registers at the one and calls through the other, the Route names the
/// proxy's name.
#[test]
fn auto_locates_registrar_and_proxy_each_on_its_own_name() {
    if !peers() {
        return;
    }
    let reg = registrar();
    let p = proxy(&reg, KamailioConfig::default());
    let dns = auto_dns(reg.addr(), "_sip._udp", p.addr());
    let toml = run_file(&dns, "auto", reg.addr(), "", "")
        .replace("domain = \"127.0.0.1\"", "domain = \"pbx.test\"")
        .replace(&format!("port = {}\n", reg.port()), "");
    let (_rx, run) = start(&toml);
    let (summary, reports) = run.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (summary.calls_attempted, summary.calls_answered),
        (2, 2),
        "{reports:#?}"
    );
    for r in callers(&reports) {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        assert_eq!(sent(r, "REGISTER")[0].remote, Some(reg.addr()));
        let invites = sent(r, "INVITE");
        assert!(invites.iter().all(|i| i.remote == Some(p.addr())), "{r:#?}");
        assert!(
            invites[0].text.contains("Route: <sip:proxy.test;lr>"),
            "{r:#?}"
        );
    }
}

/// AUTO, and the proxy's name publishes only TCP while the registrar was found over UDP:
/// the registrar's discovery is not bent, and one endpoint's two connections run one
/// transport, so the run refuses to start and names both transports.
#[test]
fn auto_refuses_a_proxy_published_only_over_another_transport_than_the_registrar() {
    if !peers() {
        return;
    }
    let reg = registrar();
    let dns = auto_dns(reg.addr(), "_sip._tcp", reg.addr());
    let toml = run_file(&dns, "auto", reg.addr(), "", "")
        .replace("domain = \"127.0.0.1\"", "domain = \"pbx.test\"")
        .replace(&format!("port = {}\n", reg.port()), "");
    let (_rx, run) = start(&toml);
    let e = run
        .join()
        .unwrap()
        .expect_err("the run must not start")
        .to_string();
    assert!(
        e.contains("registrar[0].outbound_proxy: DNS offers proxy.test only over tcp ")
            && e.contains("not over UDP on IPv4 (the registrar's transport"),
        "{e}"
    );
}

/// RFC 5626 outbound through an edge proxy located by SRV (`_sip._tcp.proxy.test`: two
/// Kamailio edges in front of a registrar with outbound), over TCP: the flow is the phone's
/// connection to the first edge. The first edge dies once the phones are registered: each
/// finds its flow failed, its new connection to the first is refused, and it moves to the
/// second target (RFC 3263 §4.3), where it registers again.
#[test]
fn an_outbound_flow_moves_to_the_second_srv_edge_when_the_first_dies() {
    if !peers() || !testpeers::outbound_available() {
        return;
    }
    let reg = kamailio(KamailioConfig {
        invite_auth: false,
        outbound: Some(testpeers::KamailioOutbound { flow_timer: 20 }),
        ..Default::default()
    });
    let edge = || {
        kamailio(KamailioConfig {
            forward_to: Some(format!("sip:{}", reg.addr())),
            outbound: Some(testpeers::KamailioOutbound { flow_timer: 0 }),
            edge: true,
            ..Default::default()
        })
    };
    let (p1, p2) = (edge(), edge());
    let (a1, a2) = (p1.addr(), p2.addr());
    let dns = dns("_sip._tcp", "proxy.test", a1, a2);
    let toml = format!(
        r#"
name = "outbound flow failover"
seed = 12
shards = 1
time_limit = "60s"
duration = "6s"
dns_server = "{dns}"

[[registrar]]
id = "pbx"
domain = "127.0.0.1"
port = {port}
transport = "tcp"
outbound_proxy = "proxy.test"
outbound = true

[[accounts]]
registrar = "pbx"
range = {{ from = 1001, to = 1004, password = "pw{{n}}" }}

[[group]]
name = "phones"
endpoints = 2
registrar = "pbx"
role = "register"
"#,
        dns = dns.addr(),
        port = reg.addr().port()
    );
    let (rx, run) = start(&toml);
    wait_for_phases(&rx, "both phones registered", Phase::Registered, 2);
    drop(p1);
    let (summary, reports) = run.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
    let refused = format!("outbound proxy: target {a1} TCP failed: connect failed: ");
    let skipped = format!(
        "outbound proxy: target {a1} TCP is down (found by another endpoint of the shard); sending to {a2} TCP (SRV 2 of 2)"
    );
    for r in &reports {
        assert_eq!(r.outcome, Outcome::Success, "{r:#?}");
        let n = notes(r);
        let at = |prefix: &str| {
            n.iter()
                .position(|t| t.starts_with(prefix))
                .unwrap_or_else(|| panic!("no note {prefix:?}: {n:#?}"))
        };
        let failed = at("outbound flow failed: the connection closed");
        assert!(
            n.iter().any(|t| (t.starts_with(&refused)
                && t.ends_with(&format!("; trying {a2} TCP (SRV 2 of 2)")))
                || *t == skipped),
            "{n:#?}"
        );
        let moved = at(&format!(
            "connecting over TCP to the outbound proxy {a2} (the RFC 5626 flow)"
        ));
        let recovered = at("outbound flow recovered");
        assert!(failed < moved && moved < recovered, "{n:#?}");
        let registers = sent(r, "REGISTER");
        assert_eq!(registers[0].remote, Some(a1), "{r:#?}");
        assert_eq!(registers.last().unwrap().remote, Some(a2), "{r:#?}");
    }
    assert!(summary.failovers >= 1, "{}", summary.failovers);
    let o = summary.outbound.unwrap();
    assert_eq!((o.flow_failures, o.recoveries), (2, 2), "{o:?}");
}
