//! Answers digest challenges for the agent (glue over `sip-auth`).

use std::borrow::Cow;

use sip_auth::{Challenge, DigestClient};
pub use sip_auth::{Credentials, Secret};
use sip_msg::{Header, HeaderName, Headers, Message, Method};

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
    /// The server answered `stale=true` to the nonce of its own last stale challenge, again
    /// and again: a fresh nonce is not stale, so answering once more would loop forever.
    #[error("stale=true to the nonce the server had just given, {STALE_RUN_LIMIT} times in a row")]
    StaleLoop,
}

/// How many times in a row the server may call stale the nonce of its own last stale
/// challenge before that is a failure ([`AuthFailure::StaleLoop`]); once may be a server
/// whose clock stepped, or a nonce lifetime shorter than the round trip.
const STALE_RUN_LIMIT: u8 = 2;

/// A short fingerprint of a nonce (FNV-1a, 32 bits): to tell whether the credentials a
/// stale challenge rejects carried the nonce of the previous stale challenge, without
/// keeping the nonce.
fn nonce_mark(nonce: &str) -> u32 {
    nonce.bytes().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Per-agent digest state: the nonce counts, and the last challenge for reuse.
///
/// The credentials are not kept here: the agent's configuration holds them and passes them
/// in (one copy per agent; a fleet has thousands).
#[derive(Debug, Default)]
pub struct Authenticator {
    client: DigestClient,
    /// The last 401 challenge to a REGISTER answered, reused for REGISTER refreshes (RFC
    /// 7616 §3.4 nc): its header value as received, read again when reused (a refresh,
    /// rare) so that an idle phone keeps one string instead of the parsed fields.
    last: Option<Box<str>>,
    /// Credentials were last sent unprompted, with the nonce of `last`: a rejection of those
    /// is a fresh challenge, not a wrong password.
    preemptive: bool,
    /// How many stale challenges in a row rejected the nonce of the stale challenge before
    /// them ([`STALE_RUN_LIMIT`]).
    stale_run: u8,
    /// [`nonce_mark`] of the nonce of the last stale challenge answered (0: none).
    stale_nonce: u32,
}

/// The nonce of the credentials among `headers` named `name` that are for `realm`.
fn nonce_for(headers: &Headers, name: &HeaderName, realm: &str) -> Option<String> {
    headers.get_all(name).find_map(|h| {
        let a = sip_auth::Authorization::parse(h.value()).ok()?;
        (a.realm == realm).then(|| a.nonce.into_owned())
    })
}

/// The realm of a credentials value (`None` when it does not read).
fn realm_of(value: &str) -> Option<Cow<'_, str>> {
    sip_auth::Authorization::parse(value).ok().map(|a| a.realm)
}

/// Puts `header`, credentials answering a challenge, into the headers of the request sent
/// again: the credentials of its kind (`Authorization` or `Proxy-Authorization`) for its
/// realm are replaced, and every other credentials value stays. RFC 3261 §22.3: "If a UA
/// receives a Proxy-Authenticate header field value in a 401/407 response to a request with
/// a particular Call-ID, it should incorporate credentials for that realm in all subsequent
/// requests that contain the same Call-ID"; dropping the proxy's credentials to answer the
/// registrar's 401 (or the other way round) makes each challenge the other's again, and the
/// request never gets through.
pub fn put_credentials(headers: &mut Headers, header: Header) {
    let name = header.name().clone();
    if headers.get(&name).is_none() {
        // Nearly always: the request had no credentials of this kind (the first challenge
        // of its realm), so nothing is read. Room for exactly these.
        headers.reserve_exact(1);
        headers.push(header);
        return;
    }
    let realm = realm_of(header.value()).map(Cow::into_owned);
    let kept: Vec<Header> = headers
        .get_all(&name)
        .filter(|h| {
            realm
                .as_deref()
                .is_none_or(|r| realm_of(h.value()).as_deref() != Some(r))
        })
        .map(|h| h.to_header())
        .collect();
    headers.remove(&name);
    // Room for exactly these: a kept request (a call's INVITE) is not given a doubled list.
    headers.reserve_exact(kept.len() + 1);
    for h in kept {
        headers.push(h);
    }
    headers.push(header);
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
        // RFC 3261 §22.2, §22.3: a challenge is a rejection of the credentials we sent for
        // its realm; credentials for another realm (another proxy on the path, or the
        // registrar behind it) are answered to, not a rejection.
        let sent = nonce_for(&rejected.headers, &answer_name, &ch.realm);
        if let Some(nonce) = sent {
            let was_preemptive =
                self.preemptive && self.last_challenge().is_some_and(|l| l.nonce == nonce);
            if !ch.stale && !was_preemptive {
                return Err(AuthFailure::Rejected);
            }
            if ch.stale {
                // RFC 7616 §3.3: stale means the nonce was valid but old, so the one the
                // server has just given cannot be; a server that says it of each fresh one
                // would have us answer forever.
                if self.stale_nonce != 0 && nonce_mark(&nonce) == self.stale_nonce {
                    self.stale_run += 1;
                    if self.stale_run >= STALE_RUN_LIMIT {
                        self.stale_run = 0;
                        self.stale_nonce = 0;
                        return Err(AuthFailure::StaleLoop);
                    }
                } else {
                    self.stale_run = 0;
                }
                self.stale_nonce = nonce_mark(&ch.nonce);
            }
        }
        self.preemptive = false;
        let header = Header::written(answer_name.clone(), |v| {
            (self.client).authorize_into(v, &ch, creds, method.as_str(), uri, body, cnonce)
        });
        // Only the registrar's challenge is kept: `preemptive` answers it for REGISTER
        // refreshes. A 401 to another request (a callee's, another realm: RFC 3261 §22.1,
        // "The realm string alone defines the protection domain") is not the registrar's
        // protection space and must not replace it.
        if answer_name == HeaderName::Authorization && *method == Method::Register {
            self.last = Some(raw.into());
        }
        Ok(header)
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
        let header = Header::written(HeaderName::Authorization, |v| {
            (self.client).authorize_into(v, &ch, creds, method.as_str(), uri, body, cnonce)
        });
        self.preemptive = true;
        Some(header)
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
