//! Runs a prepared test: starts the built-in registrar when the test uses it, then the engine.

use std::net::SocketAddr;
use std::sync::mpsc;

use registrar::{AuthMode, RegistrarConfig};
use sip_msg::{Host, Uri};

use sip_net::tls::{ServerSettings, Verify, self_signed};

use crate::builtin::{BuiltinRegistrar, Listen};
use crate::engine::{EndpointReport, RunEvent, RunSummary, StopHandle, run};
use crate::flow::FlowKind;
use crate::testfile::{Discover, Prepared};

/// Runs `prepared`, streaming events to `events`.
pub fn execute(
    mut prepared: Prepared,
    events: mpsc::Sender<RunEvent>,
    stop: StopHandle,
) -> std::io::Result<(RunSummary, Vec<EndpointReport>)> {
    if let Some(d) = prepared.discover.take() {
        let (addr, kind) = discover(&d, prepared.plan.seed)?;
        prepared.plan.server.addr = addr;
        prepared.plan.server.transport.kind = kind;
    }
    let Some(secret) = prepared.builtin.take() else {
        return run(prepared.plan, events, stop);
    };
    // The built-in registrar runs on its own thread for the length of the run.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let domain = "sipmeter.builtin".to_owned();
    let ip: SocketAddr = ([127, 0, 0, 1], 0).into();
    let kind = prepared.plan.server.transport.kind;
    // TLS and WSS: a certificate made for this run, which the endpoints trust (Custom CA).
    let tls = if kind.secure() {
        let cert = self_signed(&[domain.clone(), "127.0.0.1".to_owned()])
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        prepared.plan.server.transport.tls.verify = Verify::Custom(vec![cert.cert_der.clone()]);
        Some(ServerSettings {
            identity: cert
                .identity()
                .map_err(|e| std::io::Error::other(e.to_string()))?,
            client_cas: None,
        })
    } else {
        None
    };
    let listen = match (kind, tls) {
        (FlowKind::Tcp, _) => Listen::Tcp(ip),
        (FlowKind::Ws, _) => Listen::Ws(ip),
        (FlowKind::Tls, Some(t)) => Listen::Tls(ip, t),
        (FlowKind::Wss, Some(t)) => Listen::Wss(ip, t),
        _ => Listen::Udp(ip),
    };
    let reg = rt
        .block_on(BuiltinRegistrar::start(
            listen,
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
        ))
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let addr = reg.addr();
    prepared.plan.server.addr = addr;
    prepared.plan.server.domain = domain;
    prepared.plan.server.registrar_uri = Uri::parse(&format!(
        "sip:127.0.0.1:{};transport={}",
        addr.port(),
        kind.via_token().to_ascii_lowercase()
    ))
    .map_err(|e| std::io::Error::other(e.to_string()))?;
    let out = run(prepared.plan, events, stop);
    rt.block_on(reg.stop());
    out
}

/// Locates the registrar by DNS (RFC 3263): the first target the engine can drive, and its
/// transport.
fn discover(d: &Discover, seed: u64) -> std::io::Result<(SocketAddr, FlowKind)> {
    use sip_net::dns::{Discovery, Dns};
    use sip_proto::target::Transport;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let dns = Dns::new(d.dns_server).map_err(std::io::Error::other)?;
        let mut disco = Discovery::new(d.destination.clone(), dns, seed)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut skipped = Vec::new();
        while let Some(t) = disco.next_target().await {
            let kind = match t.transport {
                Transport::Udp => Some(FlowKind::Udp),
                Transport::Tcp => Some(FlowKind::Tcp),
                Transport::Tls => Some(FlowKind::Tls),
                Transport::Ws => Some(FlowKind::Ws),
                Transport::Wss => Some(FlowKind::Wss),
                Transport::Auto => None,
            };
            if let Some(kind) = kind {
                return Ok((SocketAddr::new(t.address, t.port), kind));
            }
            skipped.push(format!("{} {}:{}", t.transport, t.address, t.port));
        }
        let asked: Vec<String> = disco.log().iter().map(|e| e.to_string()).collect();
        let host = &d.destination.host;
        Err(std::io::Error::other(if skipped.is_empty() {
            format!("DNS finds no server for {host}: {}", asked.join("; "))
        } else {
            format!(
                "DNS offers {host} only over {}, which the load engine cannot drive",
                skipped.join(", ")
            )
        }))
    })
}
