//! Who may use the registrar: digest authentication over `sip-auth`.

use std::borrow::Cow;
use std::collections::HashMap;

use sip_auth::{Algorithm, Authorization, NonceIssuer, NonceMemo, Verdict, ephemeral, verify_memo};
use sip_msg::{Header, HeaderName, Message, Method, Uri};

/// How long a nonce stays fresh (then `stale=true`).
const NONCE_LIFETIME_SECS: u64 = 300;

/// The algorithms the challenges offer, in the order offered: SHA-256 first, then MD5 for
/// peers that know nothing better (RFC 8760 §2.4). Credentials must name one of them.
const OFFERED: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Md5];

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
#[derive(Debug, Clone)]
pub enum AuthMode {
    /// No authentication at all (a lab switch).
    Open,
    /// Ephemeral HMAC credentials `EXPIRY:ID` / `base64(HMAC-SHA256(secret, username))`
    /// keyed by the registrar's secret.
    Ephemeral,
    /// A static account list.
    Static(Accounts),
}

/// The verdict on a request (the user name borrowed from its credentials).
#[derive(Debug)]
pub(crate) enum Outcome<'a> {
    /// Authenticated as this user (empty when no authentication is needed: Open).
    Allowed(Cow<'a, str>),
    /// Send these challenge headers (401 or 407): SHA-256, then MD5.
    Challenge([Header; 2]),
    /// Known but disabled, or credentials expired.
    Forbidden,
    /// Unknown user.
    NotFound,
    /// The credentials' digest `uri` names another resource than the Request-URI (400).
    UriMismatch,
}

/// Verifies credentials statelessly (nonces are HMACs of a timestamp).
pub(crate) struct Verifier {
    mode: AuthMode,
    realm: String,
    /// Ephemeral credentials' passwords, keyed by the secret once.
    ephemeral: ephemeral::Checker,
    issuer: NonceIssuer,
    /// The nonces of the last two seconds a challenge was sent in: one HMAC per second for
    /// the challenges, and none for credentials answering them (see `NonceMemo`).
    memo: NonceMemo,
    /// The Request-URI printed, kept between requests (compared with the digest `uri`).
    uri_text: String,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("mode", &self.mode)
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    pub(crate) fn new(mode: &AuthMode, realm: &str, secret: &[u8]) -> Self {
        Self {
            mode: mode.clone(),
            realm: realm.to_owned(),
            ephemeral: ephemeral::Checker::new(secret),
            issuer: NonceIssuer::new(secret, NONCE_LIFETIME_SECS),
            memo: NonceMemo::new(realm),
            uri_text: String::new(),
        }
    }

    /// True when an authenticated user may register its own AOR only (a static account
    /// list: the account's user is the AOR's user). With no authentication (Open) anyone may
    /// register any AOR, third parties too (RFC 3261 §10.2: From ≠ To); the From is not an
    /// identity then. Ephemeral credentials are issued by the run to its own endpoints and
    /// are not tied to an AOR.
    pub(crate) fn binds_own_aor_only(&self) -> bool {
        matches!(self.mode, AuthMode::Static(_))
    }

    /// True with a static account list (otherwise users are known by having registered).
    pub(crate) fn has_accounts(&self) -> bool {
        matches!(self.mode, AuthMode::Static(_))
    }

    /// True when `user` is a known account (for 480 versus 404).
    pub(crate) fn knows(&self, user: &str) -> bool {
        match &self.mode {
            AuthMode::Static(a) => a.0.contains_key(user),
            AuthMode::Open | AuthMode::Ephemeral => true,
        }
    }

    /// Challenges: [`OFFERED`], with qop `auth`. Both offer the same nonce: it is computed
    /// once.
    fn challenges(&mut self, proxy: bool, stale: bool, now_unix: u64) -> [Header; 2] {
        let name = if proxy {
            HeaderName::ProxyAuthenticate
        } else {
            HeaderName::WwwAuthenticate
        };
        self.issuer
            .challenges_memo(&mut self.memo, &self.realm, OFFERED, stale, now_unix)
            .map(|v| Header::new(name.clone(), v))
    }

    /// True when the digest `uri` names the Request-URI's resource (RFC 7616 §3.4.6, RFC 2617
    /// §3.2.2.5: the server SHOULD check it, and answer 400 when they differ). Clients write
    /// the Request-URI verbatim (sipmeter's UA, SIPp, Kamailio's `uac`, phones), which the
    /// printed Request-URI matches byte for byte; another writing is compared as RFC 3261
    /// §19.1.4 says (host case, escapes, a `transport` parameter on one side only).
    fn names_request_uri(&mut self, req: &Message, digest_uri: &str) -> bool {
        // The printed Request-URI read in place when it prints as received (no owned copy).
        if req.request_uri_printed() == Some(digest_uri) {
            return true;
        }
        let Some(request_uri) = req.request_uri() else {
            return false;
        };
        self.uri_text.clear();
        // Writing into a String never fails.
        let _ = request_uri.write_to(&mut self.uri_text);
        self.uri_text == digest_uri
            || Uri::parse(digest_uri).is_ok_and(|u| crate::uri_eq::equivalent(&u, &request_uri))
    }

    pub(crate) fn check<'a>(
        &mut self,
        req: &'a Message,
        method: &Method,
        now_unix: u64,
        proxy: bool,
    ) -> Outcome<'a> {
        if matches!(self.mode, AuthMode::Open) {
            // No identity: nobody authenticated (the From is whatever the sender wrote).
            return Outcome::Allowed(Cow::Borrowed(""));
        }
        // Statics: the credentials read below borrow from the request for as long as the name.
        static AUTHORIZATION: HeaderName = HeaderName::Authorization;
        static PROXY_AUTHORIZATION: HeaderName = HeaderName::ProxyAuthorization;
        let name = if proxy {
            &PROXY_AUTHORIZATION
        } else {
            &AUTHORIZATION
        };
        // Use the credentials for our realm (a request may carry several, RFC 3261 §22.4).
        let creds = req
            .headers
            .get_all(name)
            .filter_map(|h| Authorization::parse(h.value()).ok())
            .find(|a| a.realm == self.realm);
        let Some(creds) = creds else {
            return Outcome::Challenge(self.challenges(proxy, false, now_unix));
        };
        // RFC 7616 §3.4 (SIP's digest since RFC 8760): the credentials must answer what was
        // offered, an offered algorithm and qop `auth` (no RFC 2069 answer without qop, no
        // `-sess` or SHA-512-256 the challenge did not name). Any other is a client that did
        // not follow the challenge: a fresh one tells it what to answer.
        if !creds.answers_offer(&OFFERED) {
            return Outcome::Challenge(self.challenges(proxy, false, now_unix));
        }
        if !self.names_request_uri(req, &creds.uri) {
            return Outcome::UriMismatch;
        }
        // The expected password, borrowed (an ephemeral one is computed on the stack).
        let ephemeral;
        let password: &str = match &self.mode {
            AuthMode::Open => unreachable!("handled above"),
            AuthMode::Ephemeral => match self.ephemeral.expected(&creds.username, now_unix) {
                Ok(p) => {
                    ephemeral = p;
                    ephemeral.expose()
                }
                Err(_) => return Outcome::Forbidden,
            },
            AuthMode::Static(accounts) => match accounts.0.get(&*creds.username) {
                Some((_, AccountStatus::Disabled)) => return Outcome::Forbidden,
                Some((p, AccountStatus::Enabled)) => p,
                None => return Outcome::NotFound,
            },
        };
        match verify_memo(
            &creds,
            &self.issuer,
            &self.memo,
            &self.realm,
            password,
            method.as_str(),
            req.body(),
            now_unix,
        ) {
            Verdict::Ok => Outcome::Allowed(creds.username),
            Verdict::Stale => Outcome::Challenge(self.challenges(proxy, true, now_unix)),
            Verdict::Rejected => Outcome::Challenge(self.challenges(proxy, false, now_unix)),
        }
    }
}
