//! What the outbound proxy's second connection costs: 500 callers → 500 callees (signalling
//! only) through two Kamailio (registrar, and outbound proxy in front of it), over TCP or
//! TLS, with and without the proxy. Prints the run's peak memory over the process's start
//! (VmHWM − VmRSS before the run; the Kamailio processes are not counted) and the peak of open
//! descriptors. A benchmark (needs Kamailio), not a check: run it by hand, one configuration per process (the high-water
//! mark does not go down), e.g.
//!
//! ```text
//! for t in tcp tls; do for p in 0 1; do
//!   PROXY_COST=$t,$p cargo bench -p agent --bench proxy_cost
//! done; done
//! ```
//!
//! `PROXY_COST=tls,1,reg`: the 1000 endpoints only register and stay 12 s, so every
//! connection is open at the peak.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agent::engine::{Outcome, StopHandle};
use sip_net::tls::CertificateAuthority;
use testpeers::{Kamailio, KamailioConfig, KamailioTls, TempDir, User};

const PAIRS: usize = 500;

fn status(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

fn kamailio(
    tls: Option<&CertificateAuthority>,
    invite_auth: bool,
    forward_to: Option<String>,
) -> Kamailio {
    Kamailio::start(&KamailioConfig {
        users: (1001..1001 + 2 * PAIRS)
            .map(|n| User::new(&n.to_string(), &format!("pw{n}")))
            .collect(),
        invite_auth,
        forward_to,
        shm_mb: 256,
        tls: tls.map(|ca| {
            let cert = ca.issue(&["127.0.0.1".to_owned()]).unwrap();
            KamailioTls {
                cert_pem: cert.cert_pem,
                key_pem: cert.key_pem,
                client_ca_pem: None,
            }
        }),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn main() {
    let config = std::env::var("PROXY_COST").unwrap_or_else(|_| "tcp,1".into());
    let mut parts = config.split(',');
    let transport = parts.next().unwrap_or("tcp");
    let with_proxy = parts.next() == Some("1");
    // A third part `reg`: every endpoint only registers (no calls) and stays 12 s.
    let register_only = parts.next() == Some("reg");
    let tls = transport == "tls";
    let ca = CertificateAuthority::new("cost CA").unwrap();
    let ca = tls.then_some(&ca);
    // Without the proxy the registrar challenges the INVITEs itself (the same 407 round trip).
    let r = kamailio(ca, !with_proxy, None);
    let r_addr = if tls { r.tls_addr().unwrap() } else { r.addr() };
    let p = with_proxy.then(|| {
        kamailio(
            ca,
            true,
            Some(format!("sip:{r_addr};transport={transport}")),
        )
    });
    let dir = TempDir::new("sipmeter-proxy-cost").unwrap();
    let ca_file = dir.path().join("ca.pem");
    if let Some(ca) = ca {
        std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    }
    let proxy_line = p.as_ref().map_or(String::new(), |p| {
        let a = if tls { p.tls_addr().unwrap() } else { p.addr() };
        format!("outbound_proxy = \"{a}\"")
    });
    let tls_lines = if tls {
        format!(
            "tls_verify = \"custom\"\ntls_ca = \"{}\"",
            ca_file.display()
        )
    } else {
        String::new()
    };
    let text = format!(
        r#"
name = "proxy cost"
duration = "{duration}"
ramp = "{ramp}"
seed = 11
time_limit = "90s"

[[registrar]]
id = "pbx"
domain = "127.0.0.1"
port = {port}
transport = "{transport}"
{proxy_line}
{tls_lines}

[[accounts]]
registrar = "pbx"
range = {{ from = 1001, to = {last}, password = "pw{{n}}" }}

{groups}
"#,
        port = r_addr.port(),
        // Kamailio does TLS in one TCP worker (the harness's, kamailio#3695): at 500
        // handshakes a second it times out and closes some; 100 a second it takes.
        ramp = if tls { "100/s" } else { "500/s" },
        last = 1000 + 2 * PAIRS,
        // Registering only, every endpoint stays until all have connected: the peak holds
        // all the connections at once.
        duration = if register_only { "12s" } else { "2s" },
        groups = if register_only {
            format!(
                "[[group]]\nname = \"phones\"\nendpoints = {}\nregistrar = \"pbx\"\nrole = \"register\"\nmedia = false\n",
                2 * PAIRS
            )
        } else {
            format!(
                "[[group]]\nname = \"callees\"\nendpoints = {PAIRS}\nregistrar = \"pbx\"\nrole = \"answer\"\nmedia = false\n\n\
                 [[group]]\nname = \"callers\"\nendpoints = {PAIRS}\nregistrar = \"pbx\"\ncall = \"group:callees\"\nmedia = false\n"
            )
        },
    );
    let prepared = agent::testfile::prepare("cost.toml", &text, b"unused", 1_700_000_000)
        .unwrap_or_else(|e| panic!("{e}"));
    let fds = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (fds, done) = (Arc::clone(&fds), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let n = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
                fds.fetch_max(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let fds_before = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
    let rss_before = status("VmRSS:");
    let started = Instant::now();
    let (tx, _rx) = std::sync::mpsc::channel();
    let (summary, reports) = agent::runner::execute(prepared, tx, StopHandle::default()).unwrap();
    let wall = started.elapsed();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = status("VmHWM:");
    let ok = reports
        .iter()
        .filter(|r| r.outcome == Outcome::Success)
        .count();
    println!(
        "PROXY_COST {transport} proxy={with_proxy} register_only={register_only}: {ok}/{} SUCCESS, calls {}/{}, wall {:.2} s, \
         peak RSS {} kB over {} kB before (+{} kB), peak fds {} ({} before), reconnects {}, dropped sends {}",
        reports.len(),
        summary.calls_answered,
        summary.calls_attempted,
        wall.as_secs_f64(),
        peak,
        rss_before,
        peak.saturating_sub(rss_before),
        fds.load(Ordering::Relaxed),
        fds_before,
        summary.reconnects,
        summary.dropped_sends,
    );
    let mut errors = std::collections::BTreeMap::new();
    for r in reports.iter().filter(|r| r.outcome != Outcome::Success) {
        let e = format!("{:?}: {}", r.outcome, r.error.as_deref().unwrap_or("-"));
        *errors
            .entry(e.chars().take(160).collect::<String>())
            .or_insert(0) += 1;
    }
    for (e, n) in &errors {
        println!("  {n} × {e}");
    }
    if std::env::var_os("PROXY_COST_LOG").is_some() {
        let log = r.log();
        let mut lines: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
        lines.dedup_by_key(|l| l.split_once("]: ").map_or(*l, |x| x.1).to_owned());
        println!(
            "registrar errors:\n{}",
            lines
                .iter()
                .take(12)
                .copied()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
