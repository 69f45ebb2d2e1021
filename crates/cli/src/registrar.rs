//! `sipmeter registrar`: the built-in registrar and proxy, standalone, for other tools.

use std::net::SocketAddr;
use std::process::ExitCode;

use agent::builtin::BuiltinRegistrar;
use registrar::{AccountStatus, Accounts, AuthMode, RegistrarConfig};
use sip_msg::Host;

/// Arguments of `sipmeter registrar`.
#[derive(Debug, clap::Args)]
pub struct RegistrarArgs {
    /// Where to listen (UDP), e.g. 127.0.0.1:5060; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:5060")]
    listen: SocketAddr,
    /// The SIP domain it serves (and the digest realm).
    #[arg(long, default_value = "sipmeter.local")]
    domain: String,
    /// An account `user:password` (repeatable); `user:password:disabled` answers 403.
    #[arg(long = "account")]
    accounts: Vec<String>,
    /// Accept anyone without authentication (a lab switch).
    #[arg(long, conflicts_with = "accounts")]
    open: bool,
    /// Secret for nonces and ephemeral credentials (default: random per start).
    #[arg(long, env = "SIPMETER_REGISTRAR_SECRET", hide_env_values = true)]
    secret: Option<String>,
}

/// Runs until Ctrl-C.
pub fn run(args: &RegistrarArgs) -> ExitCode {
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
            host: Host::Name("placeholder".into()),
            port: 0,
            transport: "UDP".into(),
            auth,
            secret,
            min_expires: 60,
            max_expires: 3600,
        };
        match BuiltinRegistrar::start_udp(args.listen, config).await {
            Ok(reg) => {
                println!(
                    "sipmeter registrar listening on udp:{} for domain {} ({mode})",
                    reg.addr(),
                    args.domain
                );
                let _ = tokio::signal::ctrl_c().await;
                let stats = reg.stop().await;
                println!("stopped: {stats:?}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sipmeter: cannot listen on {}: {e}", args.listen);
                ExitCode::from(2)
            }
        }
    })
}
