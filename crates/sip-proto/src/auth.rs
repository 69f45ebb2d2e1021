//! Answers digest challenges for the agent (glue over `sip-auth`).

use sip_auth::{Challenge, DigestClient};
pub use sip_auth::{Credentials, Secret};
use sip_msg::{Header, HeaderName, Message, Method};

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
    #[error("unusable challenge: {0}")]
    BadChallenge(sip_auth::AuthError),
}

/// Per-agent digest state: the nonce counts, and the last challenge for reuse.
#[derive(Debug)]
pub struct Authenticator {
    creds: Option<Credentials>,
    client: DigestClient,
    /// The last 401 challenge answered, reused for REGISTER refreshes (RFC 7616 §3.4 nc).
    last: Option<Challenge>,
    /// The nonce of credentials sent unprompted: a rejection of those is a fresh challenge.
    preemptive_nonce: Option<String>,
}

fn nonce_of(value: &str) -> Option<String> {
    sip_auth::Authorization::parse(value).ok().map(|a| a.nonce)
}

impl Authenticator {
    /// New state for these credentials.
    pub fn new(creds: Option<Credentials>) -> Self {
        Self {
            creds,
            client: DigestClient::default(),
            last: None,
            preemptive_nonce: None,
        }
    }

    /// Answers the 401/407 `resp` to `rejected`, a request with `method`, Request-URI `uri`
    /// and `body`. A second challenge to credentials we computed for a challenge (not a
    /// stale one) is a rejection (RFC 3261 §22.2: do not retry the same credentials).
    pub fn challenge(
        &mut self,
        resp: &Message,
        rejected: &Message,
        method: &Method,
        uri: &str,
        body: &[u8],
        cnonce: &str,
    ) -> Result<Header, AuthFailure> {
        let creds = self.creds.as_ref().ok_or(AuthFailure::NoCredentials)?;
        let (challenge_name, answer_name) = if resp.status() == Some(407) {
            (
                HeaderName::ProxyAuthenticate,
                HeaderName::ProxyAuthorization,
            )
        } else {
            (HeaderName::WwwAuthenticate, HeaderName::Authorization)
        };
        let ch = Challenge::strongest(resp.headers.get_all(&challenge_name).map(Header::value))
            .map_err(AuthFailure::BadChallenge)?;
        let sent = rejected
            .headers
            .get(&answer_name)
            .and_then(|h| nonce_of(h.value()));
        if let Some(nonce) = sent {
            let was_preemptive = self.preemptive_nonce.as_deref() == Some(nonce.as_str());
            if !ch.stale && !was_preemptive {
                return Err(AuthFailure::Rejected);
            }
        }
        self.preemptive_nonce = None;
        let value = self
            .client
            .authorize(&ch, creds, method.as_str(), uri, body, cnonce);
        if answer_name == HeaderName::Authorization {
            self.last = Some(ch);
        }
        Ok(Header::new(answer_name, value))
    }

    /// Credentials for a new request from the last 401 challenge, if any (nc incremented).
    pub fn preemptive(
        &mut self,
        method: &Method,
        uri: &str,
        body: &[u8],
        cnonce: &str,
    ) -> Option<Header> {
        let creds = self.creds.as_ref()?;
        let ch = self.last.as_ref()?;
        self.preemptive_nonce = Some(ch.nonce.clone());
        let value = self
            .client
            .authorize(ch, creds, method.as_str(), uri, body, cnonce);
        Some(Header::new(HeaderName::Authorization, value))
    }

    /// The last request with credentials succeeded.
    pub fn succeeded(&mut self) {
        self.preemptive_nonce = None;
    }
}
