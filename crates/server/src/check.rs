//! "Check connectivity" on a registrar: the same checklist as `sipmeter check` (DNS →
//! transport → REGISTER answered → authenticated), run by the engine (`agent::check`) with a
//! stored registrar's settings and a stored account's decrypted credentials.
//!
//! The built-in registrar has no address of its own (each run starts one on loopback): its
//! check starts one the same way, registers with freshly issued ephemeral credentials and
//! stops it, which proves the engine and the built-in registrar work on this server.

use std::time::Duration;

use agent::check::{
    CheckAccount, CheckReport, RegistrarCheck, RegistrarTransport, RegistrarVerify, check_builtin,
    check_registrar,
};
use serde_json::{Value, json};
use store::{Registrar, RegistrarKind, StoreError, TlsVerify, Transport};

use crate::AppState;

/// The checklist's own limit (a REGISTER over UDP gives up after 64·T1 = 32 s otherwise).
pub(crate) const CHECK_TIMEOUT: Duration = Duration::from_secs(20);
/// The hard limit of the whole request, setup and teardown included.
const HARD_LIMIT: Duration = Duration::from_secs(25);

/// Why no check report could be produced.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CheckError {
    /// The account id is not one of this registrar's accounts.
    #[error("SIP account not found on this registrar")]
    AccountNotFound,
    /// An account was given for the built-in registrar.
    #[error("the built-in registrar needs no SIP account: its check uses ephemeral credentials")]
    BuiltinNoAccounts,
    /// The stored TLS material or a secret cannot be used.
    #[error("{0}")]
    Setup(String),
    /// The check went past its hard limit.
    #[error("the check did not finish within {} s", HARD_LIMIT.as_secs())]
    Timeout,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs the check for `r` with account `account` (one of its accounts) or none.
pub(crate) async fn run(
    state: &AppState,
    r: &Registrar,
    account: Option<i64>,
) -> Result<CheckReport, CheckError> {
    let seed = seed();
    let work = async {
        if r.kind == RegistrarKind::Builtin {
            if account.is_some() {
                return Err(CheckError::BuiltinNoAccounts);
            }
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret)
                .map_err(|e| CheckError::Setup(format!("no randomness: {e}")))?;
            return check_builtin(secret.to_vec(), CHECK_TIMEOUT, seed)
                .await
                .map_err(|e| CheckError::Setup(e.to_string()));
        }
        let account = match account {
            None => None,
            Some(aid) => {
                let a = state
                    .store()
                    .sip_accounts(r.id)
                    .await?
                    .into_iter()
                    .find(|a| a.id == aid)
                    .ok_or(CheckError::AccountNotFound)?;
                let password = state.sip_password(&a).map_err(|e| {
                    tracing::error!(account = a.id, error = %e, "cannot decrypt a SIP password");
                    CheckError::Setup(
                        "the account's password cannot be decrypted with this server's secret key"
                            .into(),
                    )
                })?;
                Some(CheckAccount {
                    username: a.username,
                    password,
                    realm: a.realm,
                    extension: a.extension,
                })
            }
        };
        let key = state.registrar_tls_key(r).map_err(|e| {
            tracing::error!(registrar = r.id, error = %e, "cannot decrypt a TLS key");
            CheckError::Setup(
                "the client key cannot be decrypted with this server's secret key".into(),
            )
        })?;
        let spec = RegistrarCheck {
            domain: r.domain.clone(),
            port: r.port,
            transport: match r.transport {
                Transport::Udp => RegistrarTransport::Udp,
                Transport::Tcp => RegistrarTransport::Tcp,
                Transport::Tls => RegistrarTransport::Tls,
                Transport::Wss => RegistrarTransport::Wss,
                Transport::Auto => RegistrarTransport::Auto,
            },
            proxy: r.outbound_proxy.clone(),
            account,
            verify: match r.tls_verify {
                TlsVerify::System => RegistrarVerify::System,
                TlsVerify::Custom => RegistrarVerify::Custom,
                TlsVerify::Skip => RegistrarVerify::Skip,
            },
            ca_pem: r.tls_ca_pem.clone(),
            client_cert_pem: r.tls_cert_pem.clone(),
            client_key_pem: key,
            timeout: CHECK_TIMEOUT,
            seed,
        };
        check_registrar(spec)
            .await
            .map_err(|e| CheckError::Setup(e.to_string()))
    };
    tokio::time::timeout(HARD_LIMIT, work)
        .await
        .map_err(|_| CheckError::Timeout)?
}

fn seed() -> u64 {
    let mut b = [0u8; 8];
    // A failure only makes the tags predictable, which is harmless.
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

/// The status of a step as the API and the page show it.
pub(crate) fn status_str(s: &agent::check::StepStatus) -> &'static str {
    match s {
        agent::check::StepStatus::Ok => "ok",
        agent::check::StepStatus::Failed => "failed",
        agent::check::StepStatus::Skipped => "skipped",
    }
}

/// The report as the API returns it (camelCase, like every other resource).
pub(crate) fn report_json(r: &CheckReport) -> Value {
    json!({
        "registrationUri": r.registration_uri,
        "server": r.server.map(|s| s.to_string()),
        "transport": r.transport.map(|t| t.via_token()),
        "registered": r.registered,
        "finalCode": r.final_code,
        "hint": r.hint,
        "steps": r.steps.iter().map(|s| json!({
            "name": s.name,
            "status": status_str(&s.status),
            "elapsedMs": (s.elapsed_ms * 1000.0).round() / 1000.0,
            "detail": s.detail,
        })).collect::<Vec<_>>(),
        "trace": r.trace.iter().map(|e| json!({
            "direction": e.direction,
            "atMs": (e.at_ms * 1000.0).round() / 1000.0,
            "wallMs": e.wall_ms,
            "transport": e.transport.map(|t| t.via_token()),
            "local": e.local.map(|a| a.to_string()),
            "remote": e.remote.map(|a| a.to_string()),
            "retransmission": e.retransmission,
            "text": e.text,
        })).collect::<Vec<_>>(),
    })
}
