//! Who may use the registrar: digest authentication over `sip-auth`.

use std::collections::HashMap;

use sip_msg::{Header, Message, Method};

/// Whether an account may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    /// May register and call.
    Enabled,
    /// Known but refused with 403.
    Disabled,
}

/// A static account list: user → (password, status).
#[derive(Clone, Default)]
pub struct Accounts(pub HashMap<String, (String, AccountStatus)>);

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// Who may register and call.
#[derive(Clone)]
pub enum AuthMode {
    /// No authentication at all (a lab switch).
    Open,
    /// Ephemeral HMAC credentials `EXPIRY:ID` / `base64(HMAC-SHA256(secret, username))`.
    Ephemeral {
        /// The server secret (never printed).
        secret: Vec<u8>,
    },
    /// A static account list.
    Static(Accounts),
}

impl std::fmt::Debug for AuthMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthMode::Open => f.write_str("Open"),
            AuthMode::Ephemeral { .. } => f.write_str("Ephemeral { secret: <redacted> }"),
            AuthMode::Static(a) => f.debug_tuple("Static").field(a).finish(),
        }
    }
}

/// The verdict on a request.
#[derive(Debug)]
#[allow(dead_code)] // reason: Challenge and NotFound come with digest verification (sip-auth)
pub(crate) enum Outcome {
    /// Authenticated as this user (or no authentication needed).
    Allowed(String),
    /// Send this challenge header (401 or 407).
    Challenge(Header),
    /// Known but disabled, or credentials forged/expired.
    Forbidden,
    /// Unknown user.
    NotFound,
}

/// Verifies credentials statelessly (nonces are HMACs of a timestamp).
#[derive(Debug)]
pub(crate) struct Verifier {
    mode: AuthMode,
    realm: String,
}

impl Verifier {
    pub(crate) fn new(mode: &AuthMode, realm: &str) -> Self {
        Self {
            mode: mode.clone(),
            realm: realm.to_owned(),
        }
    }

    pub(crate) fn is_ephemeral(&self) -> bool {
        matches!(self.mode, AuthMode::Ephemeral { .. })
    }

    /// True when `user` is a known account (for 480 versus 404).
    pub(crate) fn knows(&self, user: &str) -> bool {
        match &self.mode {
            AuthMode::Static(a) => a.0.contains_key(user),
            AuthMode::Open | AuthMode::Ephemeral { .. } => true,
        }
    }

    pub(crate) fn check(
        &self,
        req: &Message,
        _method: &Method,
        _now_unix: u64,
        _proxy: bool,
    ) -> Outcome {
        let user = req
            .from()
            .and_then(|f| f.uri.as_sip().and_then(|u| u.user_unescaped()))
            .unwrap_or_default();
        let _ = &self.realm;
        match &self.mode {
            AuthMode::Open => Outcome::Allowed(user),
            _ => Outcome::Forbidden,
        }
    }
}
