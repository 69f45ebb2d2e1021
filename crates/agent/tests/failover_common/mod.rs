//! What the failover tests (`failover.rs` over UDP, `failover_streams.rs` over TCP) share:
//! two Kamailio instances behind dnsmasq SRV records, the run on its own thread, and readers
//! of its traces.

use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc;

use agent::engine::{EndpointReport, RunEvent, RunSummary, StopHandle};
use agent::trace::{Direction, TraceEntry};
use testpeers::{Dnsmasq, DnsmasqConfig, Kamailio, KamailioConfig, Srv, User, available};

fn users() -> Vec<User> {
    (1001..=1004)
        .map(|n| User::new(&n.to_string(), &format!("pw{n}")))
        .collect()
}

/// dnsmasq with `<service>.<domain>` (`_sip._udp`, `_sip._tcp`) → `first` (priority 10),
/// `second` (priority 20).
pub fn dns(service: &str, domain: &str, first: SocketAddr, second: SocketAddr) -> Dnsmasq {
    let srv = |target: &str, port, priority| Srv {
        name: format!("{service}.{domain}"),
        target: format!("{target}.{domain}"),
        port,
        priority,
        weight: 0,
    };
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    Dnsmasq::start(&DnsmasqConfig {
        local_domains: vec!["test".into()],
        naptr: vec![],
        srv: vec![srv("one", first.port(), 10), srv("two", second.port(), 20)],
        hosts: vec![(format!("one.{domain}"), ip), (format!("two.{domain}"), ip)],
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

pub fn peers() -> bool {
    available("kamailio", "kamailio") && available("dnsmasq", "dnsmasq-base")
}

/// A Kamailio with the four accounts of `run_file`.
pub fn kamailio(config: KamailioConfig) -> Kamailio {
    Kamailio::start(&KamailioConfig {
        users: users(),
        ..config
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Starts the run on its own thread; the caller reads its events.
pub fn start(
    toml: &str,
) -> (
    mpsc::Receiver<RunEvent>,
    std::thread::JoinHandle<(RunSummary, Vec<EndpointReport>)>,
) {
    let mut prepared = agent::testfile::prepare("failover.toml", toml, b"-", 1_700_000_000)
        .unwrap_or_else(|e| panic!("{e}"));
    prepared.plan.keep_all_traces = true;
    let (tx, rx) = mpsc::channel();
    let run = std::thread::spawn(move || {
        agent::runner::execute(prepared, tx, StopHandle::default())
            .unwrap_or_else(|e| panic!("{e}"))
    });
    (rx, run)
}

/// Reads events until `done` says so; an endpoint that fails before is a test failure.
pub fn wait_until(
    rx: &mpsc::Receiver<RunEvent>,
    what: &str,
    mut done: impl FnMut(&RunEvent) -> bool,
) {
    loop {
        match rx.recv() {
            Ok(RunEvent::Finished(r)) => assert_ne!(
                r.outcome.severity(),
                10,
                "an endpoint failed before the first target was stopped: {r:#?}"
            ),
            Ok(e) if done(&e) => return,
            Ok(_) => {}
            Err(_) => panic!("the run ended before {what}"),
        }
    }
}

pub fn notes(r: &EndpointReport) -> Vec<&str> {
    r.trace
        .iter()
        .filter(|e| e.direction == Direction::Note)
        .map(|e| e.text.as_str())
        .collect()
}

/// Requests this endpoint sent, with where they went.
pub fn sent<'a>(r: &'a EndpointReport, method: &str) -> Vec<&'a TraceEntry> {
    r.trace
        .iter()
        .filter(|e| {
            e.direction == Direction::Sent
                && !e.retransmission
                && e.first_line().starts_with(&format!("{method} "))
        })
        .collect()
}

/// A test file on `domain` found through `dns` (AUTO), T1 = 50 ms, accounts 1001–1004.
pub fn run_file(seed: u64, dns: &Dnsmasq, domain: &str, extra: &str, groups: &str) -> String {
    format!(
        r#"
name = "failover"
seed = {seed}
shards = 1
time_limit = "60s"
t1 = "50ms"
dns_server = "{dns}"
{extra}

[[registrar]]
id = "pbx"
domain = "{domain}"
transport = "auto"

[[accounts]]
registrar = "pbx"
range = {{ from = 1001, to = 1004, password = "pw{{n}}" }}
{groups}
"#,
        dns = dns.addr()
    )
}
