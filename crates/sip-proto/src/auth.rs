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
///
/// The credentials are not kept here: the agent's configuration holds them and passes them
/// in (one copy per agent; a fleet has thousands).
#[derive(Debug, Default)]
pub struct Authenticator {
    client: DigestClient,
    /// The last 401 challenge answered, reused for REGISTER refreshes (RFC 7616 §3.4 nc):
    /// its header value as received, read again when reused (a refresh, rare) so that an
    /// idle phone keeps one string instead of the parsed fields.
    last: Option<Box<str>>,
    /// Credentials were last sent unprompted, with the nonce of `last`: a rejection of those
    /// is a fresh challenge, not a wrong password.
    preemptive: bool,
}

fn nonce_of(value: &str) -> Option<String> {
    sip_auth::Authorization::parse(value)
        .ok()
        .map(|a| a.nonce.into_owned())
}

impl Authenticator {
    /// New state: no challenge seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers the 401/407 `resp` to `rejected`, a request with `method`, Request-URI `uri`
    /// and `body`. A second challenge to credentials we computed for a challenge (not a
    /// stale one) is a rejection (RFC 3261 §22.2: do not retry the same credentials).
    #[allow(clippy::too_many_arguments)] // reason: the request's parts, each needed by the digest
    pub fn challenge(
        &mut self,
        creds: Option<&Credentials>,
        resp: &Message,
        rejected: &Message,
        method: &Method,
        uri: &str,
        body: &[u8],
        cnonce: &str,
    ) -> Result<Header, AuthFailure> {
        let creds = creds.ok_or(AuthFailure::NoCredentials)?;
        let (challenge_name, answer_name) = if resp.status() == Some(407) {
            (
                HeaderName::ProxyAuthenticate,
                HeaderName::ProxyAuthorization,
            )
        } else {
            (HeaderName::WwwAuthenticate, HeaderName::Authorization)
        };
        let (ch, raw) = Challenge::strongest_with_value(
            resp.headers.get_all(&challenge_name).map(|h| h.value()),
        )
        .map_err(AuthFailure::BadChallenge)?;
        let sent = rejected
            .headers
            .get(&answer_name)
            .and_then(|h| nonce_of(h.value()));
        if let Some(nonce) = sent {
            let was_preemptive =
                self.preemptive && self.last_challenge().is_some_and(|l| l.nonce == nonce);
            if !ch.stale && !was_preemptive {
                return Err(AuthFailure::Rejected);
            }
        }
        self.preemptive = false;
        let value = self
            .client
            .authorize(&ch, creds, method.as_str(), uri, body, cnonce);
        if answer_name == HeaderName::Authorization {
            self.last = Some(raw.into());
        }
        Ok(Header::new(answer_name, value))
    }

    /// Whether a 401 challenge is kept for [`Authenticator::preemptive`] (without it, that
    /// gives nothing).
    pub fn has_challenge(&self) -> bool {
        self.last.is_some()
    }

    /// Credentials for a new request from the last 401 challenge, if any (nc incremented).
    pub fn preemptive(
        &mut self,
        creds: Option<&Credentials>,
        method: &Method,
        uri: &str,
        body: &[u8],
        cnonce: &str,
    ) -> Option<Header> {
        let creds = creds?;
        // The challenge is read in place from `last` while the client counts the nonce.
        let ch = Challenge::parse(self.last.as_deref()?).ok()?;
        let value = self
            .client
            .authorize(&ch, creds, method.as_str(), uri, body, cnonce);
        self.preemptive = true;
        Some(Header::new(HeaderName::Authorization, value))
    }

    /// The kept challenge, read again (it parsed when it was received, so it parses now).
    fn last_challenge(&self) -> Option<Challenge<'_>> {
        Challenge::parse(self.last.as_deref()?).ok()
    }

    /// The last request with credentials succeeded.
    pub fn succeeded(&mut self) {
        self.preemptive = false;
    }
}
