//! Answers digest challenges for the agent (glue over `sip-auth`).

use sip_msg::{Header, Message, Method};

/// An account's credentials.
#[derive(Clone)]
pub struct Credentials {
    /// The authentication user name.
    pub username: String,
    /// The password (never printed).
    pub password: String,
    /// The realm; `None` learns it from the challenge.
    pub realm: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("realm", &self.realm)
            .finish()
    }
}

/// Why a challenge was not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// No credentials are configured.
    #[error("no credentials configured")]
    NoCredentials,
    /// The server rejected the credentials we sent (a second challenge, not stale).
    #[error("credentials rejected")]
    Rejected,
    /// The challenge could not be read or uses no supported algorithm.
    #[error("unusable challenge")]
    BadChallenge,
}

/// Per-agent digest state.
#[derive(Debug)]
pub struct Authenticator {
    creds: Option<Credentials>,
}

impl Authenticator {
    /// New state for these credentials.
    pub fn new(creds: Option<Credentials>) -> Self {
        Self { creds }
    }

    /// Answers the 401/407 `resp` to a request with `method`, `uri` and `body`.
    pub fn challenge(
        &mut self,
        _resp: &Message,
        _method: &Method,
        _uri: &str,
        _body: &[u8],
    ) -> Result<Header, AuthFailure> {
        if self.creds.is_none() {
            return Err(AuthFailure::NoCredentials);
        }
        Err(AuthFailure::BadChallenge)
    }

    /// Credentials for a new request from the last challenge, if any.
    pub fn preemptive(&mut self, _method: &Method, _uri: &str, _body: &[u8]) -> Option<Header> {
        None
    }

    /// The last request with credentials succeeded.
    pub fn succeeded(&mut self) {}
}
