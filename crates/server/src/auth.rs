//! Identity: password hashing (argon2id), random tokens, cookies, the login rate limiter.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "sipmeter_session";
/// Name of the pre-login CSRF cookie (double-submit on the login and setup forms).
pub const LOGIN_CSRF_COOKIE: &str = "sipmeter_login_csrf";
/// Session lifetime.
pub const SESSION_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

/// Hashes a password with argon2id (PHC string). CPU-heavy: call from a blocking task.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
}

/// Verifies a password against a PHC string; false for a wrong password or a corrupt hash.
pub fn verify_password(password: &str, phc: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// A random token of `n` bytes from the OS RNG, hex-encoded.
pub fn random_token(n: usize) -> String {
    let mut buf = vec![0u8; n];
    // The OS RNG failing leaves no safe way to mint a secret: refuse to continue.
    getrandom::fill(&mut buf).expect("the operating system's random number generator failed");
    hex(&buf)
}

/// SHA-256 of a token, hex (what the store keeps instead of session tokens and API keys;
/// they are 256-bit random values, so a fast hash is enough).
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Constant-time string equality (CSRF tokens).
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The value of a cookie in the request headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A `Set-Cookie` value: HttpOnly, SameSite, Path=/, optional Secure.
pub fn set_cookie(
    name: &str,
    value: &str,
    max_age_secs: i64,
    same_site: &str,
    secure: bool,
) -> String {
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite={same_site}; Max-Age={max_age_secs}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The bearer token of an `Authorization` header.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// Login rate limiting: at most [`LoginLimiter::MAX_FAILURES`] failed attempts per email
/// address within [`LoginLimiter::WINDOW`]; further attempts, right or wrong, are refused until
/// the window ends. Keyed by email rather than address, so a shared NAT does not lock people out
/// and one attacker cannot spread guesses over many source addresses.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    failures: HashMap<String, (u32, Instant)>,
}

impl LoginLimiter {
    /// Failed attempts allowed per window.
    pub const MAX_FAILURES: u32 = 5;
    /// The window.
    pub const WINDOW: Duration = Duration::from_secs(15 * 60);

    /// Seconds to wait when `key` is locked out at `now`.
    pub fn locked(&mut self, key: &str, now: Instant) -> Option<u64> {
        let (count, start) = *self.failures.get(key)?;
        let end = start + Self::WINDOW;
        if now >= end {
            self.failures.remove(key);
            return None;
        }
        (count >= Self::MAX_FAILURES).then(|| (end - now).as_secs().max(1))
    }

    /// Records a failed attempt.
    pub fn fail(&mut self, key: &str, now: Instant) {
        if self.failures.len() > 100_000 {
            // Bounded memory under a spray of made-up emails: forget expired windows.
            self.failures.retain(|_, (_, s)| now < *s + Self::WINDOW);
        }
        let e = self.failures.entry(key.to_string()).or_insert((0, now));
        if now >= e.1 + Self::WINDOW {
            *e = (0, now);
        }
        e.0 += 1;
    }

    /// Forgets failures after a successful login.
    pub fn succeed(&mut self, key: &str) {
        self.failures.remove(key);
    }
}

/// A fixed-window request limiter: at most `limit` requests per key per window.
#[derive(Debug)]
pub struct RateLimiter {
    limit: u32,
    window: Duration,
    counts: HashMap<String, (u32, Instant)>,
}

impl RateLimiter {
    /// A limiter allowing `limit` requests per `window`.
    pub fn new(limit: u32, window: Duration) -> RateLimiter {
        RateLimiter {
            limit,
            window,
            counts: HashMap::new(),
        }
    }

    /// Counts a request; `Err(seconds to wait)` when over the limit.
    pub fn hit(&mut self, key: &str, now: Instant) -> Result<(), u64> {
        if self.counts.len() > 100_000 {
            let w = self.window;
            self.counts.retain(|_, (_, s)| now < *s + w);
        }
        let e = self.counts.entry(key.to_string()).or_insert((0, now));
        if now >= e.1 + self.window {
            *e = (0, now);
        }
        if e.0 >= self.limit {
            return Err((e.1 + self.window - now).as_secs().max(1));
        }
        e.0 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_hashes() {
        assert_eq!(hex(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(random_token(32).len(), 64);
        assert_ne!(random_token(16), random_token(16));
    }

    #[test]
    fn passwords() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a phc string"));
    }

    #[test]
    fn cookies_and_bearer() {
        let mut h = HeaderMap::new();
        h.insert("cookie", "a=1; sipmeter_session=xyz; b=2".parse().unwrap());
        h.insert("authorization", "Bearer smk_123".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
        assert_eq!(bearer(&h).as_deref(), Some("smk_123"));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }

    #[test]
    fn rate_limiter_windows() {
        let mut r = RateLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(r.hit("k", t0), Ok(()));
        }
        assert_eq!(r.hit("k", t0 + Duration::from_secs(20)), Err(40));
        assert_eq!(r.hit("other", t0), Ok(()));
        assert_eq!(r.hit("k", t0 + Duration::from_secs(60)), Ok(()));
    }

    #[test]
    fn limiter_locks_after_five_failures_until_the_window_ends() {
        let mut l = LoginLimiter::default();
        let t0 = Instant::now();
        for _ in 0..LoginLimiter::MAX_FAILURES {
            assert_eq!(l.locked("a@x", t0), None);
            l.fail("a@x", t0);
        }
        assert_eq!(l.locked("a@x", t0), Some(900));
        assert_eq!(l.locked("b@x", t0), None, "other accounts unaffected");
        assert_eq!(l.locked("a@x", t0 + Duration::from_secs(899)), Some(1));
        assert_eq!(l.locked("a@x", t0 + LoginLimiter::WINDOW), None);
        l.fail("c@x", t0);
        l.succeed("c@x");
        assert!(!l.failures.contains_key("c@x"));
    }
}
