//! sipmeter's control plane: the JSON API (`/api/v1`) and the server-rendered web UI, over the
//! [`store`].
//!
//! [`router`] is a plain function of an [`AppState`], so tests drive it without a port
//! (`tower::ServiceExt::oneshot`) or serve it on `127.0.0.1:0`. The `sipmeter serve` command
//! (crates/cli) connects the store, calls [`first_start`], binds and serves.

mod accounts;
mod api;
pub mod auth;
pub mod certs;
mod check;
pub mod members;
pub mod openapi;
pub mod secrets;
pub mod validate;
mod web;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use store::{Bootstrap, Store};

pub use api::ApiError;

tokio::task_local! {
    /// The id of the request being handled (set by the request-id middleware).
    static REQUEST_ID: String;
}

/// The current request's id, or "-" outside a request.
pub(crate) fn request_id() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "-".to_string())
}

/// Settings of a running server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Mark cookies `Secure` (set when served behind HTTPS).
    pub secure_cookies: bool,
    /// API requests allowed per credential (API key or session) per minute.
    pub api_requests_per_minute: u32,
    /// Key encrypting SIP account passwords at rest.
    pub secret_key: secrets::SecretKey,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            secure_cookies: false,
            api_requests_per_minute: 600,
            secret_key: secrets::SecretKey::random(),
        }
    }
}

/// Shared state of the server; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    config: ServerConfig,
    /// The one-time setup token while no user exists.
    setup_token: Mutex<Option<String>>,
    limiter: Mutex<auth::LoginLimiter>,
    api_limiter: Mutex<auth::RateLimiter>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.inner.store)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State over a store; `setup_token` is the one-time token from [`first_start`], if any.
    pub fn new(store: Store, config: ServerConfig, setup_token: Option<String>) -> AppState {
        AppState {
            inner: Arc::new(Inner {
                store,
                setup_token: Mutex::new(setup_token),
                limiter: Mutex::new(auth::LoginLimiter::default()),
                api_limiter: Mutex::new(auth::RateLimiter::new(
                    config.api_requests_per_minute,
                    std::time::Duration::from_secs(60),
                )),
                config,
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn secret_key(&self) -> &secrets::SecretKey {
        &self.inner.config.secret_key
    }

    /// The clear password of a stored SIP account (for the engine that registers with it).
    pub fn sip_password(
        &self,
        account: &store::SipAccount,
    ) -> Result<String, secrets::SecretError> {
        self.secret_key().decrypt(
            &account.password_enc,
            &accounts::aad(account.registrar_id, &account.username),
        )
    }

    /// The clear TLS client key of a stored registrar, if it has one.
    pub fn registrar_tls_key(
        &self,
        r: &store::Registrar,
    ) -> Result<Option<String>, secrets::SecretError> {
        r.tls_key_pem
            .as_deref()
            .map(|k| {
                self.secret_key()
                    .decrypt(k, &api::tls_key_aad(r.project_id))
            })
            .transpose()
    }

    pub(crate) fn secure_cookies(&self) -> bool {
        self.inner.config.secure_cookies
    }

    /// Takes the setup token if `given` matches it (constant-time), so it works once.
    pub(crate) fn check_setup_token(&self, given: &str, consume: bool) -> bool {
        let mut guard = self
            .inner
            .setup_token
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let ok = guard.as_deref().is_some_and(|t| auth::same(t, given));
        if ok && consume {
            *guard = None;
        }
        ok
    }

    pub(crate) fn api_limiter(&self) -> std::sync::MutexGuard<'_, auth::RateLimiter> {
        self.inner
            .api_limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn limiter(&self) -> std::sync::MutexGuard<'_, auth::LoginLimiter> {
        self.inner.limiter.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What [`first_start`] found or did.
#[derive(Debug)]
pub enum FirstStart {
    /// Users exist already.
    AlreadySetUp,
    /// The Owner, organization and Demo project were created from the admin credentials.
    Created(Bootstrap),
    /// No users: the setup page at `/setup?token=TOKEN` creates the Owner (token works once).
    NeedsSetup {
        /// The one-time token.
        token: String,
    },
}

/// Errors of [`first_start`].
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The admin credentials are unusable.
    #[error("{0}")]
    Invalid(&'static str),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// Minimum password length for every account.
pub const MIN_PASSWORD_LEN: usize = 10;

/// Checks an email and password for a new account; the message names the problem.
pub fn check_credentials(email: &str, password: &str) -> Result<(), &'static str> {
    let email = email.trim();
    let valid_email = email.split_once('@').is_some_and(|(u, d)| {
        !u.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
    }) && !email.contains(char::is_whitespace)
        && email.len() <= 254;
    if !valid_email {
        return Err("the admin email is not a valid email address");
    }
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err("the admin password must be at least 10 characters");
    }
    Ok(())
}

/// Creates the first Owner, their organization and the Demo project (with the built-in
/// registrar).
pub async fn create_owner(
    store: &Store,
    email: &str,
    password: &str,
    org_name: &str,
) -> Result<Bootstrap, SetupError> {
    check_credentials(email, password).map_err(SetupError::Invalid)?;
    let password = password.to_string();
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|_| SetupError::Invalid("password hashing failed"))?
        .map_err(|_| SetupError::Invalid("password hashing failed"))?;
    let name = email.split('@').next().unwrap_or(email).to_string();
    Ok(store.bootstrap(email, &name, &hash, org_name).await?)
}

/// First start: when no user exists, creates the Owner from `admin` (email, password) or
/// returns a one-time setup token to print.
pub async fn first_start(
    store: &Store,
    admin: Option<(&str, &str)>,
) -> Result<FirstStart, SetupError> {
    if store.count_users().await? > 0 {
        return Ok(FirstStart::AlreadySetUp);
    }
    match admin {
        Some((email, password)) => Ok(FirstStart::Created(
            create_owner(store, email, password, "My organization").await?,
        )),
        None => Ok(FirstStart::NeedsSetup {
            token: auth::random_token(24),
        }),
    }
}

/// Gives each request an id (`x-request-id`, and `meta.requestId` in API answers) and sets the
/// security headers: no framing, no MIME sniffing, no referrer leaving the site (setup and
/// invitation links carry tokens), and a CSP allowing only our own scripts and styles (the UI
/// has no inline script or style).
async fn request_id_layer(req: Request, next: Next) -> Response {
    use axum::http::HeaderValue;
    let id = auth::random_token(8);
    let mut resp = REQUEST_ID.scope(id.clone(), next.run(req)).await;
    let h = resp.headers_mut();
    if let Ok(v) = id.parse() {
        h.insert("x-request-id", v);
    }
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    resp
}

/// The whole application: web UI, JSON API and static assets.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(web::routes())
        .nest("/api/v1", api::routes(state.clone()))
        .layer(axum::middleware::from_fn(request_id_layer))
        .with_state(state)
}
