//! `sipmeter serve`: the web app and API on one port, over SQLite (default) or PostgreSQL.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use server::{AppState, FirstStart, ServerConfig};

/// Arguments of `sipmeter serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:8080", env = "SIPMETER_LISTEN")]
    listen: SocketAddr,
    /// Database URL: sqlite://PATH or postgres://USER@HOST:PORT/DB (default: SQLite in the data dir).
    #[arg(long, env = "SIPMETER_DATABASE_URL")]
    database: Option<String>,
    /// Directory for the embedded database and other server data.
    #[arg(long, default_value = "sipmeter-data", env = "SIPMETER_DATA_DIR")]
    data_dir: PathBuf,
    /// On first start, create the Owner with this email (instead of printing a setup link).
    #[arg(long, env = "SIPMETER_ADMIN_EMAIL", requires = "admin_password")]
    admin_email: Option<String>,
    /// On first start, the Owner's password (at least 10 characters).
    #[arg(
        long,
        env = "SIPMETER_ADMIN_PASSWORD",
        hide_env_values = true,
        requires = "admin_email"
    )]
    admin_password: Option<String>,
    /// Mark cookies Secure (when served behind HTTPS).
    #[arg(long)]
    secure_cookies: bool,
    /// Key encrypting SIP account passwords (64 hex digits); default: `secret.key` in the data
    /// dir, created on first start.
    #[arg(long, env = "SIPMETER_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    /// API requests allowed per API key or session per minute.
    #[arg(long, default_value_t = 600, env = "SIPMETER_API_REQUESTS_PER_MINUTE")]
    api_requests_per_minute: u32,
}

/// Runs the server until Ctrl-C or SIGTERM, then shuts down gracefully.
pub fn run(args: &ServeArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sipmeter: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sipmeter serve: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SIPMETER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    std::fs::create_dir_all(&args.data_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create the data directory {}: {e}",
            args.data_dir.display()
        )
    })?;
    let url = match &args.database {
        Some(u) => u.clone(),
        None => format!("sqlite://{}/sipmeter.db?mode=rwc", args.data_dir.display()),
    };
    // SIP account passwords are encrypted with this key: keep it with backups of the database.
    let secret_key = match &args.secret_key {
        Some(hex) => server::secrets::SecretKey::from_hex(hex)
            .map_err(|e| anyhow::anyhow!("SIPMETER_SECRET_KEY: {e}"))?,
        None => server::secrets::SecretKey::load_or_create(&args.data_dir)?,
    };
    let store = store::Store::connect(&url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the database: {e}"))?;
    let admin = match (&args.admin_email, &args.admin_password) {
        (Some(e), Some(p)) => Some((e.as_str(), p.as_str())),
        _ => None,
    };
    let first = server::first_start(&store, admin).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    // The handlers are installed before the address is printed: a supervisor (or a test)
    // that sends SIGTERM as soon as it reads the address gets a graceful stop, not the
    // default action of the signal.
    let shutdown = shutdown_signal()?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "sipmeter serve: listening on http://{addr} ({:?} database)",
        store.backend()
    )?;
    let token = match first {
        FirstStart::AlreadySetUp => None,
        FirstStart::Created(b) => {
            writeln!(
                out,
                "sipmeter serve: created the Owner {} and the \"Demo\" project with the built-in registrar",
                b.user.email
            )?;
            None
        }
        FirstStart::NeedsSetup { token } => {
            writeln!(
                out,
                "sipmeter serve: first start: open http://{addr}/setup?token={token} to create the Owner account (the link works once)"
            )?;
            Some(token)
        }
    };
    out.flush()?;
    drop(out);
    // Expired sessions are refused at lookup; this only keeps the table small.
    let purge_store = store.clone();
    let purge = tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            every.tick().await;
            if let Err(e) = purge_store.purge_sessions(store::now_ms()).await {
                tracing::warn!(error = %e, "purging expired sessions failed");
            }
        }
    });
    let state = AppState::new(
        store.clone(),
        ServerConfig {
            secure_cookies: args.secure_cookies,
            api_requests_per_minute: args.api_requests_per_minute,
            secret_key,
        },
        token,
    );
    axum::serve(listener, server::router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    purge.abort();
    store.close().await;
    println!("sipmeter serve: stopped");
    Ok(())
}

/// Installs the Ctrl-C and (on Unix) SIGTERM handlers now, and returns a future that
/// resolves on either.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt())
            .map_err(|e| anyhow::anyhow!("cannot handle SIGINT: {e}"))?;
        let mut term = signal(SignalKind::terminate())
            .map_err(|e| anyhow::anyhow!("cannot handle SIGTERM: {e}"))?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
