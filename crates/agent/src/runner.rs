//! Runs a prepared test: starts the built-in registrar when the test uses it, then the engine.

use std::net::SocketAddr;
use std::sync::mpsc;

use registrar::{AuthMode, RegistrarConfig};
use sip_msg::{Host, Uri};

use sip_net::tls::{ServerSettings, Verify, self_signed};

use crate::builtin::{BuiltinRegistrar, Listen, ServiceOptions};
use crate::engine::{EndpointReport, RunEvent, RunSummary, StopHandle, run_with_targets};
use crate::failover::{Target, TargetList};
use crate::flow::FlowKind;
use crate::testfile::Prepared;

/// Runs `prepared`, streaming events to `events`.
pub fn execute(
    mut prepared: Prepared,
    events: mpsc::Sender<RunEvent>,
    stop: StopHandle,
) -> std::io::Result<(RunSummary, Vec<EndpointReport>)> {
    let mut found = Vec::new();
    let mut targets: Vec<TargetList> = prepared
        .plan
        .servers()
        .map(|s| TargetList::single(s.addr, s.transport.kind))
        .collect();
    for (site, d) in std::mem::take(&mut prepared.discover) {
        let server = prepared.plan.site_server(site);
        let name = server
            .transport
            .tls_name
            .as_deref()
            .unwrap_or(&server.domain);
        let (list, notes) = locate(
            &d.destination,
            d.dns_server,
            None,
            server,
            name,
            prepared.plan.seed,
            "",
        )?;
        let first = &list.targets[list.start];
        let server = prepared.plan.site_server_mut(site);
        server.addr = first.addr;
        server.transport.kind = first.kind;
        // An IP literal proxy takes the chosen transport now; a named one is located below.
        let named = prepared.proxies.iter().any(|(s, _)| *s == site);
        if let Some(p) = server.outbound_proxy.as_mut()
            && !named
        {
            crate::testfile::complete_outbound_proxy(p, first.kind);
        }
        found.extend(notes);
        targets[site] = list;
    }
    // The outbound proxies: a single configured address, or the targets of their own name.
    let mut proxies = crate::engine::configured_proxies(&prepared.plan);
    for (site, l) in std::mem::take(&mut prepared.proxies) {
        let server = prepared.plan.site_server(site);
        let Some((uri, _)) = &server.outbound_proxy else {
            continue;
        };
        // The TLS name (and SNI) is the proxy's host as written (docs/notes-proxy8.md).
        let name = uri.host.to_string();
        // RFC 3263 on the proxy's own name, through the registrar's resolver; the run keeps
        // the targets on the registrar's transport (its connections carry both legs).
        let kind = server.transport.kind;
        let (list, notes) = locate(
            &l.destination,
            l.dns_server,
            Some((kind, server.addr.is_ipv4())),
            server,
            &name,
            prepared.plan.seed,
            "outbound proxy ",
        )
        .map_err(|e| std::io::Error::other(format!("{}: {e}", l.field)))?;
        let first = list.targets[list.start].addr;
        if let Some(p) = prepared.plan.site_server_mut(site).outbound_proxy.as_mut() {
            crate::testfile::complete_located_proxy(p, first, kind);
        }
        found.extend(notes);
        proxies[site] = list;
    }
    let Some(secret) = prepared.builtin.take() else {
        return run_with_targets(prepared.plan, targets, proxies, events, stop).map(
            |(mut summary, reports)| {
                summary.discovery = found;
                (summary, reports)
            },
        );
    };
    // The built-in registrar runs on its own thread for the length of the run (named, so
    // a benchmark can read its CPU apart: benches/load/rtp.sh).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("registrar")
        .enable_all()
        .build()?;
    let domain = "sipmeter.builtin".to_owned();
    let ip: SocketAddr = ([127, 0, 0, 1], 0).into();
    // One registrar with a listener per transport the built-in servers use (one location
    // service: their groups call each other across transports).
    let mut kinds: Vec<FlowKind> = Vec::new();
    for &site in &prepared.builtin_sites {
        let kind = prepared.plan.site_server(site).transport.kind;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    // TLS and WSS: a certificate made for this run, which the endpoints trust (Custom CA).
    let tls = if kinds.iter().any(|k| k.secure()) {
        let cert = self_signed(&[domain.clone(), "127.0.0.1".to_owned()])
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        for &site in &prepared.builtin_sites {
            let server = prepared.plan.site_server_mut(site);
            if server.transport.kind.secure() {
                server.transport.tls.verify = Verify::Custom(vec![cert.cert_der.clone()]);
            }
        }
        Some(ServerSettings {
            identity: cert
                .identity()
                .map_err(|e| std::io::Error::other(e.to_string()))?,
            client_cas: None,
        })
    } else {
        None
    };
    // RFC 5626: the built-in registrar's Flow-Timer is the shortest `keepalive` of the
    // registrar entries it serves (whole seconds, at least 1), so its outbound phones keep
    // the interval their file sets and the 2xx says so.
    let flow_timer = prepared
        .builtin_sites
        .iter()
        .filter_map(|&site| prepared.plan.site_server(site).transport.keepalive)
        .map(|k| {
            let secs = k.as_secs() + u64::from(k.subsec_nanos() > 0);
            u32::try_from(secs).unwrap_or(u32::MAX).max(1)
        })
        .min()
        .or(Some(registrar::DEFAULT_FLOW_TIMER));
    // `failed_flow_hold`: the shortest of those entries', else the registrar's default.
    let failed_flow_hold = prepared
        .builtin_sites
        .iter()
        .filter_map(|&site| prepared.plan.site_server(site).transport.failed_flow_hold)
        .min()
        .unwrap_or(registrar::DEFAULT_FAILED_FLOW_HOLD);
    let listens = kinds
        .iter()
        .map(|kind| match (kind, &tls) {
            (FlowKind::Tcp, _) => Listen::Tcp(ip),
            (FlowKind::Ws, _) => Listen::Ws(ip),
            (FlowKind::Tls, Some(t)) => Listen::Tls(ip, t.clone()),
            (FlowKind::Wss, Some(t)) => Listen::Wss(ip, t.clone()),
            _ => Listen::Udp(ip),
        })
        .collect();
    let reg = rt
        .block_on(BuiltinRegistrar::start_many(
            listens,
            RegistrarConfig {
                domain: domain.clone(),
                host: Host::parse("127.0.0.1").unwrap_or(Host::Name("localhost".into())),
                port: 0,
                transport: "UDP".into(),
                auth: AuthMode::Ephemeral,
                secret,
                min_expires: 10,
                max_expires: 3600,
            },
            ServiceOptions {
                flow_timer,
                failed_flow_hold,
                ..ServiceOptions::default()
            },
        ))
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    for &site in &prepared.builtin_sites {
        let server = prepared.plan.site_server_mut(site);
        let kind = server.transport.kind;
        let addr = kinds
            .iter()
            .position(|k| *k == kind)
            .and_then(|i| reg.addrs().get(i))
            .copied()
            .unwrap_or(reg.addr());
        server.addr = addr;
        server.domain = domain.clone();
        server.registrar_uri = Uri::parse(&format!(
            "sip:127.0.0.1:{};transport={}",
            addr.port(),
            kind.via_token().to_ascii_lowercase()
        ))
        .map_err(|e| std::io::Error::other(e.to_string()))?;
        targets[site] = TargetList::single(addr, kind);
    }
    let out = run_with_targets(prepared.plan, targets, proxies, events, stop).map(
        |(mut summary, reports)| {
            summary.discovery = found;
            (summary, reports)
        },
    );
    rt.block_on(reg.stop());
    out
}

/// Locates a server by DNS (RFC 3263) and fails over before the run (§4.3): the registrar
/// (`only`: `None`, any transport this engine drives) or an outbound proxy given by name
/// (`only`: the registrar's transport and address family, IPv4 or not — the shard's sockets
/// face the registrar's; `label` "outbound proxy " heads its notes). Each
/// target in DNS order is asked with an OPTIONS over its transport (the probe of `check
/// --proxy`; TLS checks `server_name`), and the first that answers with any final response
/// but 503 is used; a dead one (refused, silent, 503) is reported to the planner and the next
/// is tried. When none answers, the first is used anyway (some servers ignore OPTIONS from
/// strangers) and the notes say so.
///
/// The run keeps every target of the chosen transport in DNS order, starting at the one
/// used: endpoints fail over along it during the run ([`crate::failover`]).
fn locate(
    destination: &sip_proto::rfc3263::Destination,
    dns_server: Option<SocketAddr>,
    only: Option<(FlowKind, bool)>,
    server: &crate::engine::ServerTarget,
    server_name: &str,
    seed: u64,
    label: &str,
) -> std::io::Result<(TargetList, Vec<String>)> {
    use sip_net::dns::{Discovery, Dns};
    use sip_proto::rfc3263::{Answer, Failure};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let dns = Dns::new(dns_server).map_err(std::io::Error::other)?;
        let mut disco = Discovery::new(destination.clone(), dns, seed)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut skipped = Vec::new();
        let mut notes = Vec::new();
        let mut first = None;
        let mut usable: Vec<(SocketAddr, FlowKind)> = Vec::new();
        let mut found = disco.all_targets().await;
        let published = disco.log().iter().any(|e| match &e.answer {
            Answer::Srv(r) => !r.is_empty(),
            Answer::Naptr(r) => !r.is_empty(),
            _ => false,
        });
        if let Some((k, _)) = only
            && destination.transport.is_none()
            && !published
            && found.iter().all(|t| crate::flow::kind_of(t.transport) != Some(k))
        {
            // AUTO, and the proxy's name publishes no NAPTR or SRV: its A/AAAA fallback is
            // UDP 5060 (RFC 3263 §4.1), which says nothing of the proxy's transports. Ask
            // as for a URI with the registrar's transport (§4.2: its SRV, then A/AAAA on its
            // default port), which is what the endpoints' connections can carry.
            let fixed = sip_proto::rfc3263::Destination {
                transport: Some(crate::flow::transport_of(k)),
                ..destination.clone()
            };
            let dns = Dns::new(dns_server).map_err(std::io::Error::other)?;
            disco = Discovery::new(fixed, dns, seed)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            found = disco.all_targets().await;
        }
        for t in found {
            let addr = SocketAddr::new(t.address, t.port);
            match crate::flow::kind_of(t.transport) {
                Some(kind) if only.is_none_or(|(k, v4)| k == kind && addr.is_ipv4() == v4) => {
                    usable.push((addr, kind));
                }
                _ => skipped.push(format!("{} {addr}", t.transport)),
            }
        }
        if let (Some((k, v4)), false) = (only, skipped.is_empty()) {
            // RFC 3263 §4.1 lets a client keep to the transports it drives: here the one the
            // registrar's connections use (an endpoint holds both over it).
            notes.push(format!(
                "{label}{}: left out, not {} over {} (the registrar's transport and address family): {}",
                destination.host,
                k.via_token(),
                if v4 { "IPv4" } else { "IPv6" },
                skipped.join(", ")
            ));
        }
        let srv = disco
            .log()
            .iter()
            .any(|e| matches!(&e.answer, Answer::Srv(r) if !r.is_empty()));
        // The failover list: the targets of the transport and address family used (the
        // shard's sockets are bound for one), in DNS order.
        let list = |addr: SocketAddr, kind: FlowKind| {
            let same: Vec<SocketAddr> = usable
                .iter()
                .filter(|(a, k)| *k == kind && a.is_ipv4() == addr.is_ipv4())
                .map(|(a, _)| *a)
                .collect();
            let n = same.len();
            TargetList {
                start: same.iter().position(|a| *a == addr).unwrap_or(0),
                targets: same
                    .into_iter()
                    .enumerate()
                    .map(|(i, a)| Target {
                        addr: a,
                        kind,
                        origin: format!("{} {} of {n}", if srv { "SRV" } else { "address" }, i + 1),
                    })
                    .collect(),
            }
        };
        for &(addr, kind) in &usable {
            let t = sip_proto::rfc3263::Target {
                transport: crate::flow::transport_of(kind),
                address: addr.ip(),
                port: addr.port(),
            };
            first.get_or_insert((addr, kind));
            let transport = &server.transport;
            let probe = crate::proxyprobe::ProxyProbe {
                proxy: &addr.to_string(),
                kind,
                tls: &transport.tls,
                ws_path: &transport.ws_path,
                user: "sipmeter",
                domain: &server.domain,
                server_name: Some(server_name),
                seed,
                timeout: std::time::Duration::from_secs(4),
            };
            let mut trace = Vec::new();
            let (step, _) =
                crate::proxyprobe::probe(&probe, std::time::Instant::now(), &mut trace).await;
            let target = format!("{label}{} {addr}", kind.via_token());
            if step.status == crate::check::StepStatus::Ok {
                notes.push(format!(
                    "{target}: {}",
                    step.detail.replace("outbound proxy ", "")
                ));
                return Ok((list(addr, kind), notes));
            }
            notes.push(format!(
                "{target} failed ({}): next target (RFC 3263 §4.3)",
                step.detail.replace("outbound proxy ", "")
            ));
            let failure = if step.detail.contains(" 503 ") {
                Failure::ServiceUnavailable
            } else if step.detail.contains("no answer") {
                Failure::Timeout
            } else {
                Failure::TransportError
            };
            disco.handle_failure(t, failure);
        }
        if let Some((addr, kind)) = first {
            notes.push(format!(
                "{label}{}: no target answered OPTIONS: using the first, {} {addr}",
                destination.host,
                kind.via_token()
            ));
            return Ok((list(addr, kind), notes));
        }
        let asked: Vec<String> = disco.log().iter().map(|e| e.to_string()).collect();
        let host = &destination.host;
        Err(std::io::Error::other(match only {
            _ if skipped.is_empty() => {
                format!("DNS finds no server for {host}: {}", asked.join("; "))
            }
            Some((k, v4)) => format!(
                "DNS offers {host} only over {}, not over {} on {} (the registrar's transport and address family, which the endpoints' connections to both use): publish {} targets for it, or give the proxy as ADDRESS:PORT",
                skipped.join(", "),
                k.via_token(),
                if v4 { "IPv4" } else { "IPv6" },
                k.via_token()
            ),
            None => format!(
                "DNS offers {host} only over {}, which the load engine cannot drive",
                skipped.join(", ")
            ),
        }))
    })
}
