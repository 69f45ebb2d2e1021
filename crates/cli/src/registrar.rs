//! `sipmeter registrar`: the built-in registrar and proxy, standalone, for other tools.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use agent::builtin::{BuiltinRegistrar, Listen, ServiceOptions};
use registrar::{AccountStatus, Accounts, AuthMode, RegistrarConfig};
use sip_msg::Host;
use sip_net::tls::{Identity, ServerSettings, certificates_from_pem, self_signed};

/// Arguments of `sipmeter registrar`.
#[derive(Debug, clap::Args)]
pub struct RegistrarArgs {
    /// Where to listen: `[udp:|tcp:|tls:|ws:|wss:]ADDRESS:PORT`, e.g. 127.0.0.1:5060 (UDP)
    /// or tls:127.0.0.1:5061; port 0 picks a free port. Repeatable: one registrar (one
    /// location service) on every listener, so a phone on one transport calls one on another.
    #[arg(long, default_value = "127.0.0.1:5060", value_parser = parse_listen)]
    listen: Vec<(Proto, SocketAddr)>,
    /// TLS: the server certificate (PEM, leaf first); without it a self-signed certificate
    /// is generated and its fingerprint printed.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<std::path::PathBuf>,
    /// TLS: the server certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<std::path::PathBuf>,
    /// TLS: require client certificates signed by this CA (PEM): mutual TLS.
    #[arg(long, value_name = "FILE")]
    client_ca: Option<std::path::PathBuf>,
    /// TLS: write the generated self-signed certificate (PEM) to this file, for clients to
    /// trust it (`sipmeter check --ca FILE`).
    #[arg(long, value_name = "FILE", conflicts_with = "cert")]
    save_cert: Option<std::path::PathBuf>,
    /// The SIP domain it serves (and the digest realm).
    #[arg(long, default_value = "sipmeter.local")]
    domain: String,
    /// The address (or name) phones reach this registrar at, written in its Via and
    /// Record-Route for a listener on every address (`--listen udp:0.0.0.0:5060`,
    /// `--listen [::]:5060`); required with such a listener.
    #[arg(long, value_name = "HOST")]
    advertise: Option<String>,
    /// An account `user:password` (repeatable); `user:password:disabled` answers 403.
    #[arg(long = "account")]
    accounts: Vec<String>,
    /// Accept anyone without authentication (a lab switch).
    #[arg(long, conflicts_with = "accounts")]
    open: bool,
    /// Shortest registration accepted, seconds: a shorter Expires gets 423 Interval Too Brief
    /// with this Min-Expires (RFC 3261 §10.3 step 7).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    min_expires: u32,
    /// Longest registration granted, seconds (a longer Expires is granted this).
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u32).range(1..))]
    max_expires: u32,
    /// RFC 5626 outbound: the Flow-Timer, seconds, in the 2xx to a phone that registered with
    /// outbound straight over TCP, TLS, WS or WSS (it keeps its flow alive at 80–100 % of
    /// it); 0 sends none.
    #[arg(long, default_value_t = registrar::DEFAULT_FLOW_TIMER)]
    flow_timer: u32,
    /// RFC 5626 outbound: how long the binding of a phone whose flow failed (its connection
    /// closed, or silent for a quarter longer than the Flow-Timer) answers 430 Flow Failed
    /// before it is dropped (then 480); 0s drops it at once.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = agent::testfile::parse_duration)]
    failed_flow_hold: std::time::Duration,
    /// The service numbers' RTP/RTCP port pairs come from this range, e.g. 20000-30000
    /// (default: chosen by the system).
    #[arg(long, value_name = "FROM-TO", value_parser = agent::testfile::parse_port_range)]
    rtp_ports: Option<(u16, u16)>,
    /// A service call whose caller sent neither RTP nor RTCP for this long is ended with BYE.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = agent::testfile::parse_duration)]
    media_timeout: std::time::Duration,
    /// A service call is ended with BYE after this long.
    #[arg(long, value_name = "DURATION", default_value = "4h", value_parser = agent::testfile::parse_duration)]
    max_call: std::time::Duration,
    /// Secret for nonces and ephemeral credentials (default: random per start).
    #[arg(long, env = "SIPMETER_REGISTRAR_SECRET", hide_env_values = true)]
    secret: Option<String>,
}

/// The transport of `--listen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS.
    Tls,
    /// SIP over WebSocket.
    Ws,
    /// SIP over secure WebSocket.
    Wss,
}

fn parse_listen(s: &str) -> Result<(Proto, SocketAddr), String> {
    let (proto, rest) = match s.split_once(':') {
        Some(("udp", r)) => (Proto::Udp, r),
        Some(("tcp", r)) => (Proto::Tcp, r),
        Some(("tls", r)) => (Proto::Tls, r),
        Some(("ws", r)) => (Proto::Ws, r),
        Some(("wss", r)) => (Proto::Wss, r),
        _ => (Proto::Udp, s),
    };
    rest.parse().map(|a| (proto, a)).map_err(|_| {
        format!("`{s}`: expected [udp:|tcp:|tls:|ws:|wss:]ADDRESS:PORT, e.g. tls:127.0.0.1:5061")
    })
}

/// The TLS settings from `--cert/--key` (or a fresh self-signed certificate for the domain,
/// localhost and every listener's address) and `--client-ca`; the second value describes the
/// certificate for the start-up banner.
fn tls_settings(args: &RegistrarArgs) -> Result<(ServerSettings, String), String> {
    let read = |flag: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
    };
    let (identity, what) = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let id = Identity::from_pem(&read("--cert", cert)?, &read("--key", key)?)
                .map_err(|e| format!("--cert {} --key {}: {e}", cert.display(), key.display()))?;
            let what = format!("certificate {}", cert.display());
            (id, what)
        }
        _ => {
            let mut names = vec![args.domain.clone(), "localhost".to_owned()];
            // Phones on a listener on every address reach it at the advertised address.
            if let Some(a) = &args.advertise {
                let a = a.trim_start_matches('[').trim_end_matches(']').to_owned();
                if !names.contains(&a) {
                    names.push(a);
                }
            }
            for (_, addr) in &args.listen {
                let ip = addr.ip().to_string();
                if !addr.ip().is_unspecified() && !names.contains(&ip) {
                    names.push(ip);
                }
            }
            let issued = self_signed(&names).map_err(|e| e.to_string())?;
            if let Some(path) = &args.save_cert {
                std::fs::write(path, &issued.cert_pem)
                    .map_err(|e| format!("--save-cert {}: {e}", path.display()))?;
            }
            let id = issued.identity().map_err(|e| e.to_string())?;
            (
                id,
                format!("self-signed certificate for {}", names.join(", ")),
            )
        }
    };
    let what = format!("{what}, SHA-256 fingerprint {}", identity.fingerprint());
    let client_cas = match &args.client_ca {
        Some(path) => Some(
            certificates_from_pem(&read("--client-ca", path)?, "client CA certificate")
                .map_err(|e| format!("--client-ca {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let what = if client_cas.is_some() {
        format!("{what}; client certificates required (mutual TLS)")
    } else {
        what
    };
    Ok((
        ServerSettings {
            identity,
            client_cas,
        },
        what,
    ))
}

/// Runs until Ctrl-C.
pub fn run(args: &RegistrarArgs) -> ExitCode {
    if args.min_expires > args.max_expires {
        eprintln!(
            "sipmeter: --min-expires {} is above --max-expires {}",
            args.min_expires, args.max_expires
        );
        return ExitCode::from(2);
    }
    if args.media_timeout.is_zero() || args.max_call.is_zero() {
        eprintln!("sipmeter: --media-timeout and --max-call must be above 0");
        return ExitCode::from(2);
    }
    let secure = args
        .listen
        .iter()
        .any(|(p, _)| matches!(p, Proto::Tls | Proto::Wss));
    if !secure && (args.cert.is_some() || args.client_ca.is_some() || args.save_cert.is_some()) {
        eprintln!(
            "sipmeter: --cert, --key, --client-ca and --save-cert need a --listen tls: or wss:ADDRESS:PORT"
        );
        return ExitCode::from(2);
    }
    // One certificate for every TLS and WSS listener.
    let (tls, tls_banner) = if secure {
        match tls_settings(args) {
            Ok((settings, what)) => (Some(settings), Some(what)),
            Err(e) => {
                eprintln!("sipmeter: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        (None, None)
    };
    let listens: Vec<Listen> = args
        .listen
        .iter()
        .map(|&(proto, addr)| match (proto, &tls) {
            (Proto::Udp, _) => Listen::Udp(addr),
            (Proto::Tcp, _) => Listen::Tcp(addr),
            (Proto::Ws, _) => Listen::Ws(addr),
            (Proto::Tls, Some(t)) => Listen::Tls(addr, t.clone()),
            (Proto::Wss, Some(t)) => Listen::Wss(addr, t.clone()),
            (Proto::Tls | Proto::Wss, None) => unreachable!("settings exist when secure"),
        })
        .collect();
    let auth = if args.open {
        AuthMode::Open
    } else if args.accounts.is_empty() {
        AuthMode::Ephemeral
    } else {
        let mut accounts = Accounts::default();
        for a in &args.accounts {
            let mut parts = a.splitn(3, ':');
            let (Some(user), Some(pass)) = (parts.next(), parts.next()) else {
                eprintln!("sipmeter: --account {a}: expected user:password[:disabled]");
                return ExitCode::from(2);
            };
            let status = match parts.next() {
                None => AccountStatus::Enabled,
                Some("disabled") => AccountStatus::Disabled,
                Some(other) => {
                    eprintln!("sipmeter: --account {a}: `{other}` is not `disabled`");
                    return ExitCode::from(2);
                }
            };
            accounts
                .0
                .insert(user.to_owned(), (pass.to_owned(), status));
        }
        AuthMode::Static(accounts)
    };
    // A listener on every address has no address of its own to put in Via and Record-Route:
    // phones would be told to send their in-dialog requests to 0.0.0.0.
    let advertised = match (
        &args.advertise,
        args.listen.iter().find(|(_, a)| a.ip().is_unspecified()),
    ) {
        (Some(h), _) => match advertised_host(h) {
            Some(host) => host,
            None => {
                eprintln!(
                    "sipmeter: --advertise {h}: not a host name, an IPv4 address or an IPv6 address"
                );
                return ExitCode::from(2);
            }
        },
        (None, Some((_, addr))) => {
            eprintln!(
                "sipmeter: --listen {addr} listens on every address: give --advertise HOST, the address phones reach this registrar at (it goes in Via and Record-Route)"
            );
            return ExitCode::from(2);
        }
        // Unused: every listener advertises its own address.
        (None, None) => Host::Name("localhost".into()),
    };
    let secret = args
        .secret
        .clone()
        .map(String::into_bytes)
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            format!("{t}-{}", std::process::id()).into_bytes()
        });
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sipmeter: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let mode = match &auth {
        AuthMode::Open => "open (no authentication)".to_owned(),
        AuthMode::Ephemeral => "ephemeral HMAC credentials".to_owned(),
        AuthMode::Static(a) => format!("{} static account(s)", a.0.len()),
    };
    rt.block_on(async {
        let config = RegistrarConfig {
            domain: args.domain.clone(),
            // Replaced by the first listener's unless it listens on every address.
            host: advertised,
            port: 0,
            transport: String::new(),
            auth,
            secret,
            min_expires: args.min_expires,
            max_expires: args.max_expires,
        };
        let services = ServiceOptions {
            inactivity: args.media_timeout,
            rtp_ports: args.rtp_ports,
            limits: registrar::ServiceLimits {
                max_call: args.max_call,
            },
            flow_timer: (args.flow_timer > 0).then_some(args.flow_timer),
            failed_flow_hold: args.failed_flow_hold,
        };
        let wanted: Vec<String> = listens
            .iter()
            .map(|l| format!("{}:{}", l.token().to_ascii_lowercase(), l.addr()))
            .collect();
        let tokens: Vec<String> = listens
            .iter()
            .map(|l| l.token().to_ascii_lowercase())
            .collect();
        match BuiltinRegistrar::start_many(listens, config, services).await {
            Ok(reg) => {
                let on: Vec<String> = tokens
                    .iter()
                    .zip(reg.addrs())
                    .map(|(token, addr)| format!("{token}:{addr}"))
                    .collect();
                // One write for the whole banner, and write errors ignored: a reader that
                // takes the first lines and closes the pipe must not stop the registrar.
                let mut banner = format!(
                    "sipmeter registrar listening on {} for domain {} ({mode})\n",
                    on.join(" "),
                    args.domain
                );
                if let Some(what) = &tls_banner {
                    banner.push_str(&format!("TLS: {what}\n"));
                }
                banner.push_str(&format!(
                    "service numbers: echo@{d} reflects RTP, tone@{d} plays {} Hz at {} dBov, \
                     sit@{d} plays a SIT in early media then refuses with 404\n",
                    registrar::services::TONE_HZ,
                    registrar::services::TONE_DBOV,
                    d = args.domain
                ));
                // Ctrl-C is handled from before the banner: a script that interrupts the
                // registrar as soon as it reads the address gets the stop and its stats.
                #[cfg(unix)]
                let mut interrupt =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
                let mut stdout = std::io::stdout();
                let _ = stdout
                    .write_all(banner.as_bytes())
                    .and_then(|()| stdout.flush());
                #[cfg(unix)]
                match interrupt.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
                #[cfg(not(unix))]
                let _ = tokio::signal::ctrl_c().await;
                let stats = reg.stop().await;
                let _ = writeln!(std::io::stdout(), "stopped: {stats:?}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sipmeter: cannot listen on {}: {e}", wanted.join(" "));
                ExitCode::from(2)
            }
        }
    })
}

/// `--advertise`: a host name, an IPv4 address, or an IPv6 address with or without brackets.
fn advertised_host(text: &str) -> Option<Host> {
    if let Ok(ip) = text.parse::<std::net::IpAddr>() {
        return Some(Host::from(ip));
    }
    Host::parse(text)
        .ok()
        .filter(|h| !matches!(h, Host::Name(n) if n.is_empty()))
}
