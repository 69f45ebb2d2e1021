//! `sipmeter check`: the registrar connectivity check of the seed page, as a command.

use std::process::ExitCode;
use std::time::Duration;

use agent::check::{CheckDns, CheckReport, CheckRequest, StepStatus, run_check_ws};
use agent::flow::FlowKind;
use agent::trace::Direction;
use sip_net::tls::{ClientSettings, Identity, Verify, certificates_from_pem};
use sip_proto::auth::{Credentials, Secret};

/// Arguments of `sipmeter check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The registrar's domain: host name or IP address.
    #[arg(long)]
    domain: String,
    /// The SIP port (default: 5060 for UDP and TCP, 5061 for TLS, 80 for WS, 443 for WSS).
    #[arg(long)]
    port: Option<u16>,
    /// Transport: udp, tcp, tls, ws, wss, or auto (DNS NAPTR → SRV → A/AAAA decides).
    #[arg(long, default_value = "udp")]
    transport: String,
    /// WS/WSS: the WebSocket path (RFC 7118).
    #[arg(long, value_name = "PATH", default_value = "/")]
    ws_path: String,
    /// TLS: verify the server's certificate against this CA certificate (PEM) instead of the
    /// system's roots (verification mode Custom).
    #[arg(long, value_name = "FILE", alias = "tls-ca")]
    ca: Option<std::path::PathBuf>,
    /// TLS: do not verify the server's certificate at all (verification mode Skip). Insecure:
    /// for labs only.
    #[arg(long, alias = "tls-skip-verify", conflicts_with = "ca")]
    insecure: bool,
    /// TLS: our client certificate (PEM, leaf first) for mutual TLS.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<std::path::PathBuf>,
    /// TLS: the client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<std::path::PathBuf>,
    /// DNS server as ADDRESS:PORT (default: the system's resolver).
    #[arg(long, value_name = "ADDRESS:PORT")]
    dns_server: Option<std::net::SocketAddr>,
    /// The outbound proxy, HOST[:PORT]: calls go through it, REGISTER does not, so the check
    /// sends it an OPTIONS of its own and reports whether it answers. A name is located as a
    /// run locates it (RFC 3263: SRV for the transport without a port, through --dns-server),
    /// and its targets are probed in order until one answers.
    #[arg(long, value_name = "HOST[:PORT]")]
    proxy: Option<String>,
    /// The SIP account's auth user name.
    #[arg(long)]
    user: Option<String>,
    /// The SIP account's password.
    #[arg(long, requires = "user")]
    password: Option<String>,
    /// The realm (default: learned from the challenge).
    #[arg(long)]
    realm: Option<String>,
    /// The extension (AOR user) when it differs from the auth user.
    #[arg(long)]
    extension: Option<String>,
    /// Registration lifetime to ask for, in seconds.
    #[arg(long, default_value_t = 300)]
    expires: u32,
    /// Print the full SIP trace.
    #[arg(long)]
    trace: bool,
    /// Write the SIP messages of the check to FILE as a pcap (Wireshark, tshark).
    #[arg(long, value_name = "FILE")]
    pcap: Option<std::path::PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs the check: exit 0 only when registered (and the outbound proxy, if given, answered), 1 when the check ran and failed, 2 for bad arguments.
pub fn run(args: &CheckArgs) -> ExitCode {
    let mut auto = false;
    let transport = match args.transport.to_ascii_lowercase().as_str() {
        "udp" => FlowKind::Udp,
        "tcp" => FlowKind::Tcp,
        "tls" => FlowKind::Tls,
        "auto" => {
            auto = true;
            FlowKind::Udp
        }
        "ws" => FlowKind::Ws,
        "wss" => FlowKind::Wss,
        other => {
            eprintln!("sipmeter: --transport {other}: expected udp, tcp, tls, wss or auto");
            return ExitCode::from(2);
        }
    };
    let tls = match tls_settings(args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("sipmeter: {e}");
            return ExitCode::from(2);
        }
    };
    let credentials = args.user.as_ref().map(|u| Credentials {
        username: u.clone(),
        password: Secret::new(args.password.clone().unwrap_or_default()),
        realm: args.realm.clone(),
    });
    let req = CheckRequest {
        domain: args.domain.clone(),
        port: args.port,
        transport,
        proxy: args.proxy.clone(),
        credentials,
        extension: args.extension.clone(),
        expires: args.expires,
        timeout: Duration::from_secs(40),
        seed: std::process::id().into(),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sipmeter: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let dns = CheckDns {
        auto,
        server: args.dns_server,
    };
    let report = runtime.block_on(run_check_ws(req, dns, &tls, &args.ws_path));
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print_report(&report, args.trace);
    }
    if let Some(path) = &args.pcap
        && let Err(e) = agent::pcap::write_trace_file(path, &report.trace)
    {
        eprintln!("sipmeter: {e}");
        return ExitCode::from(2);
    }
    if report.registered && report.steps.iter().all(|s| s.status != StepStatus::Failed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The TLS settings from `--ca`, `--insecure`, `--cert` and `--key`.
fn tls_settings(args: &CheckArgs) -> Result<ClientSettings, String> {
    let read = |flag: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
    };
    let verify = match (&args.ca, args.insecure) {
        (Some(path), _) => {
            let pem = read("--ca", path)?;
            Verify::Custom(
                certificates_from_pem(&pem, "CA certificate")
                    .map_err(|e| format!("--ca {}: {e}", path.display()))?,
            )
        }
        (None, true) => Verify::InsecureSkipVerification,
        (None, false) => Verify::System,
    };
    let identity =
        match (&args.cert, &args.key) {
            (Some(cert), Some(key)) => {
                let c = read("--cert", cert)?;
                let k = read("--key", key)?;
                Some(Identity::from_pem(&c, &k).map_err(|e| {
                    format!("--cert {} --key {}: {e}", cert.display(), key.display())
                })?)
            }
            _ => None,
        };
    Ok(ClientSettings { verify, identity })
}

fn print_report(r: &CheckReport, trace: bool) {
    println!("registration URI  {}", r.registration_uri);
    if let Some(s) = r.server {
        let t = r.transport.map_or("", |t| t.via_token());
        println!("server            {s} {t}");
    }
    let label_of = |name: &str| match name {
        "dns" => "DNS resolution",
        "transport" => "transport connection",
        "tls" => "transport connection (TLS handshake)",
        "websocket" => "WebSocket upgrade",
        "register" => "REGISTER answered",
        "proxy" => "outbound proxy (OPTIONS)",
        _ => "authenticated (200 OK)",
    };
    let width = r
        .steps
        .iter()
        .map(|s| label_of(s.name).chars().count())
        .max()
        .unwrap_or(0)
        .max(24);
    for s in &r.steps {
        let mark = match s.status {
            StepStatus::Ok => "ok  ",
            StepStatus::Failed => "FAIL",
            StepStatus::Skipped => "--  ",
        };
        let label = label_of(s.name);
        println!(
            "[{mark}] {label:<width$} {:>8.1} ms  {}",
            s.elapsed_ms, s.detail
        );
    }
    if let Some(h) = &r.hint {
        println!("hint: {h}");
    }
    if trace {
        println!();
        for e in &r.trace {
            match e.direction {
                Direction::Note => println!("--- {:>9.1} ms  {}", e.at_ms, e.text),
                d => {
                    let arrow = if d == Direction::Sent { ">>>" } else { "<<<" };
                    let peer = e.remote.map(|a| a.to_string()).unwrap_or_default();
                    let re = if e.retransmission {
                        " (retransmission)"
                    } else {
                        ""
                    };
                    println!(
                        "{arrow} {:>9.1} ms  {peer}{re}\n{}",
                        e.at_ms,
                        e.text.trim_end()
                    );
                }
            }
        }
    }
}
