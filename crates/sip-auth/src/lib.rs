// NOTE for the engineer assigned to sip-auth: the lead already wrote this crate (commit
// 64193f4) while you were starting, and sip-proto and registrar now depend on its API
// (Challenge, DigestClient, Authorization, NonceIssuer, verify, Verdict, ephemeral, Secret,
// Credentials). Please extend and test it in place — keep these names and signatures.

//! SIP digest authentication (RFC 2617, RFC 7616, RFC 8760) and the ephemeral HMAC
//! credentials of sipmeter's built-in registrar. No I/O, no clock, no randomness: times and
//! cnonces are parameters.
//!
//! Client side: parse the challenges of a 401/407 with [`Challenge::parse`], pick the
//! strongest with [`Challenge::strongest`], and answer with [`DigestClient::authorize`],
//! which keeps the nonce count per nonce.
//!
//! ```
//! use sip_auth::{Challenge, DigestClient, Credentials};
//! let ch = Challenge::parse(r#"Digest realm="biloxi.com", nonce="dcd98b", qop="auth", algorithm=SHA-256"#)?;
//! let creds = Credentials::new("bob", "zanzibar");
//! let mut client = DigestClient::default();
//! let value = client.authorize(&ch, &creds, "REGISTER", "sip:biloxi.com", b"", "0a4f113b");
//! assert!(value.starts_with("Digest username=\"bob\", realm=\"biloxi.com\""));
//! # Ok::<(), sip_auth::AuthError>(())
//! ```
//!
//! Server side: [`NonceIssuer`] makes stateless, expiring nonces; [`verify`] checks an
//! `Authorization` value against a password in constant time. A [`NonceMemo`] keeps the
//! nonces of the last two seconds so that a server computes one nonce per second and checks
//! credentials answering it against the kept text ([`verify_memo`], the same verdicts).
//! [`ephemeral`] issues and checks the `EXPIRY:ID` credentials of the built-in registrar.
//!
//! A [`DigestClient`] keeps `H(user:realm:password)` of the account, realm and algorithm it
//! last answered for, as a UA does, and computes it again when any of them changes.

use std::borrow::Cow;
use std::fmt;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha2::{Sha256, Sha512_256};
use subtle::ConstantTimeEq;

/// Why a challenge or credentials header could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The scheme is not `Digest` (e.g. `Basic`, which SIP forbids, RFC 3261 §22.1).
    #[error("not a digest challenge")]
    NotDigest,
    /// A quoted string has no closing quote.
    #[error("unterminated quoted string")]
    UnterminatedQuote,
    /// A parameter is not `name=value`.
    #[error("malformed parameter")]
    BadParam,
    /// A mandatory parameter is missing.
    #[error("missing parameter {0}")]
    Missing(&'static str),
    /// The algorithm is unknown.
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    /// Only qop values we do not support are offered.
    #[error("unsupported qop")]
    UnsupportedQop,
    /// No challenge in the list could be used.
    #[error("no usable challenge")]
    NoUsableChallenge,
}

/// A secret string that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An account's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The authentication user name.
    pub username: String,
    /// The password.
    pub password: Secret,
    /// The realm; `None` takes it from the challenge.
    pub realm: Option<String>,
}

impl Credentials {
    /// Credentials with no fixed realm.
    pub fn new(username: &str, password: &str) -> Self {
        Self {
            username: username.into(),
            password: Secret::new(password),
            realm: None,
        }
    }
}

/// Digest algorithms (RFC 7616 §3.3, RFC 8760).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Algorithm {
    /// MD5 (RFC 2617; the default when none is named).
    Md5,
    /// MD5-sess.
    Md5Sess,
    /// SHA-256 (RFC 7616, RFC 8760).
    Sha256,
    /// SHA-256-sess.
    Sha256Sess,
    /// SHA-512-256.
    Sha512_256,
    /// SHA-512-256-sess.
    Sha512_256Sess,
}

impl Algorithm {
    /// Reads an algorithm token, case-insensitively.
    pub fn parse(s: &str) -> Option<Self> {
        const ALL: [Algorithm; 6] = [
            Algorithm::Md5,
            Algorithm::Md5Sess,
            Algorithm::Sha256,
            Algorithm::Sha256Sess,
            Algorithm::Sha512_256,
            Algorithm::Sha512_256Sess,
        ];
        ALL.into_iter().find(|a| a.as_str().eq_ignore_ascii_case(s))
    }

    /// The token as written in headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
            Algorithm::Sha512_256 => "SHA-512-256",
            Algorithm::Sha512_256Sess => "SHA-512-256-sess",
        }
    }

    /// The algorithm without `-sess` (the hash function it names).
    fn base(self) -> Self {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => Algorithm::Md5,
            Algorithm::Sha256 | Algorithm::Sha256Sess => Algorithm::Sha256,
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => Algorithm::Sha512_256,
        }
    }

    fn is_sess(self) -> bool {
        matches!(
            self,
            Algorithm::Md5Sess | Algorithm::Sha256Sess | Algorithm::Sha512_256Sess
        )
    }

    /// Strength order for choosing among challenges: SHA-512-256 > SHA-256 > MD5.
    fn strength(self) -> u8 {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => 1,
            Algorithm::Sha256 | Algorithm::Sha256Sess => 2,
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => 3,
        }
    }

    /// The hex digest of `data` (RFC 7616 §3.4.1 `H`).
    pub fn hash(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => hex(&Md5::digest(data)),
            Algorithm::Sha256 | Algorithm::Sha256Sess => hex(&Sha256::digest(data)),
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => hex(&Sha512_256::digest(data)),
        }
    }
}

/// `H(parts joined by ':')` in lower-case hex, with `D` one of the digest algorithms (RFC
/// 7616 §3.4: every digest input is such a list). The parts are gathered in a stack buffer
/// and hashed in one update when they fit (a digest input is short: two hex digests, a
/// nonce, a count, a cnonce), else fed as they come; no text is formatted to hash it.
fn digest_hex<D: Digest>(parts: &[&[u8]]) -> HexDigest {
    let mut h = D::new();
    let mut buf = [0u8; 256];
    let mut n = 0;
    for (i, p) in parts.iter().enumerate() {
        let sep: &[u8] = if i > 0 { b":" } else { b"" };
        for piece in [sep, p] {
            if n + piece.len() > buf.len() {
                h.update(&buf[..n]);
                n = 0;
                if piece.len() > buf.len() {
                    h.update(piece);
                    continue;
                }
            }
            buf[n..n + piece.len()].copy_from_slice(piece);
            n += piece.len();
        }
    }
    h.update(&buf[..n]);
    HexDigest::of(&h.finalize())
}

/// A digest in lower-case hex, on the stack (at most 32 bytes: 64 characters).
#[derive(Clone, Copy)]
struct HexDigest {
    buf: [u8; 64],
    len: usize,
}

impl HexDigest {
    fn of(bytes: &[u8]) -> Self {
        let mut buf = [0u8; 64];
        // Every algorithm here outputs at most 32 bytes (MD5 16, SHA-256 and SHA-512/256 32).
        let bytes = &bytes[..bytes.len().min(32)];
        for (pair, b) in buf.chunks_exact_mut(2).zip(bytes) {
            pair.copy_from_slice(&HEX_PAIRS[usize::from(*b)]);
        }
        Self {
            buf,
            len: bytes.len() * 2,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn as_str(&self) -> &str {
        // Only ASCII hex digits are written.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

/// The two lower-case hex digits of every byte: one load per byte instead of two shifts,
/// masks and loads.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [DIGITS[i >> 4], DIGITS[i & 0xf]];
        i += 1;
    }
    t
};

/// Lower-case hex (digest 0.11 outputs do not implement `LowerHex`).
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let [hi, lo] = HEX_PAIRS[usize::from(*b)];
        s.push(char::from(hi));
        s.push(char::from(lo));
    }
    s
}

/// Quality of protection (RFC 7616 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qop {
    /// Authentication only.
    Auth,
    /// Authentication with integrity protection of the body.
    AuthInt,
}

/// The qop values a challenge offers (RFC 7616 §3.3), each once, in the order first offered.
/// Held inline: there are two known values, and a challenge read needs no list allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QopOffer {
    /// The values offered, first first; `None` after the last.
    list: [Option<Qop>; 2],
}

impl QopOffer {
    /// True when `qop` is offered.
    pub fn contains(&self, qop: &Qop) -> bool {
        self.list.contains(&Some(*qop))
    }

    /// The first value offered.
    pub fn first(&self) -> Option<&Qop> {
        self.list[0].as_ref()
    }

    /// True when no known value is offered.
    pub fn is_empty(&self) -> bool {
        self.list[0].is_none()
    }

    /// The values offered, in order.
    pub fn iter(&self) -> impl Iterator<Item = Qop> + '_ {
        self.list.iter().map_while(|q| *q)
    }

    /// Notes `qop` as offered (a value offered again keeps its first place).
    fn push(&mut self, qop: Qop) {
        if let Some(slot) = self.list.iter_mut().find(|q| q.is_none_or(|q| q == qop)) {
            *slot = Some(qop);
        }
    }
}

impl<const N: usize> PartialEq<[Qop; N]> for QopOffer {
    fn eq(&self, other: &[Qop; N]) -> bool {
        self.iter().eq(other.iter().copied())
    }
}

/// Reads the `name=value` parameters of a digest header in place and hands each to `f`, in
/// order: names as written (compare them case-insensitively), values unquoted (borrowed
/// unless they hold escapes). Nothing is collected: the callers keep the values they know.
fn parse_params<'a>(s: &'a str, mut f: impl FnMut(&'a str, Cow<'a, str>)) -> Result<(), AuthError> {
    let b = s.as_bytes();
    let mut i = 0;
    loop {
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b',' | b'\r' | b'\n') {
            i += 1;
        }
        if i >= b.len() {
            return Ok(());
        }
        let start = i;
        i += first_of_two(&b[i..], b'=', b',');
        if i >= b.len() || b[i] != b'=' {
            return Err(AuthError::BadParam);
        }
        let name = trim_unicode(&s[start..i]);
        if name.is_empty() || name.bytes().any(|c| matches!(c, b' ' | b'\t' | b'"')) {
            return Err(AuthError::BadParam);
        }
        i += 1;
        while i < b.len() && matches!(b[i], b' ' | b'\t') {
            i += 1;
        }
        let value: Cow<'_, str> = if i < b.len() && b[i] == b'"' {
            i += 1;
            let start = i;
            let mut escaped: Option<Vec<u8>> = None;
            loop {
                if escaped.is_none() {
                    // Up to the next quote or backslash at once (nearly every value has
                    // no escape: this finds its closing quote).
                    i += quote_or_backslash(&b[i..]);
                }
                match b.get(i) {
                    None => return Err(AuthError::UnterminatedQuote),
                    Some(b'\\') => {
                        let v = escaped.get_or_insert_with(|| b[start..i].to_vec());
                        if let Some(&c) = b.get(i + 1) {
                            v.push(c);
                        }
                        i += 2;
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(&c) => {
                        if let Some(v) = escaped.as_mut() {
                            v.push(c);
                        }
                        i += 1;
                    }
                }
            }
            match escaped {
                Some(v) => String::from_utf8_lossy(&v).into_owned().into(),
                // No escape: the text between the quotes, which ends before an ASCII `"`.
                None => s[start..i - 1].into(),
            }
        } else {
            let start = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            trim_unicode(&s[start..i]).into()
        };
        f(name, value);
    }
}

/// The index of the first `"` or `\` in `b` (`b.len()` when there is none), read eight
/// bytes at a time.
fn quote_or_backslash(b: &[u8]) -> usize {
    first_of_two(b, b'"', b'\\')
}

/// The index of the first `x` or `y` in `b` (`b.len()` when there is none), read eight
/// bytes at a time.
#[inline(always)]
fn first_of_two(b: &[u8], x: u8, y: u8) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while i + 8 <= b.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&b[i..i + 8]);
        let w = u64::from_le_bytes(word);
        let q = w ^ (ONES * u64::from(x));
        let s = w ^ (ONES * u64::from(y));
        // A byte of `q` or `s` is zero where `w` holds the byte looked for; the lowest flag
        // of `(x - ONES) & !x & HIGHS` marks the first zero byte exactly (a borrow only
        // flags bytes above a zero one).
        let found = ((q.wrapping_sub(ONES) & !q) | (s.wrapping_sub(ONES) & !s)) & HIGHS;
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + b[i..]
        .iter()
        .position(|&c| c == x || c == y)
        .unwrap_or(b.len() - i)
}

/// `s.trim()` (Unicode white space, as `str::trim` trims it) without the general search when
/// `s` starts and ends with an ASCII byte that is not white space (nearly every name and
/// value of a digest header): then there is nothing to trim.
#[inline]
fn trim_unicode(s: &str) -> &str {
    // The ASCII white space of `char::is_whitespace`: HT, LF, VT, FF, CR and SP.
    let plain = |c: &u8| c.is_ascii() && !matches!(c, b'\t'..=b'\r' | b' ');
    let b = s.as_bytes();
    if b.first().is_some_and(plain) && b.last().is_some_and(plain) {
        s
    } else {
        s.trim()
    }
}

/// Keeps the first value of each parameter named in `names` (in lower case; compared
/// case-insensitively), in the slot of its name; other parameters are ignored.
fn keep_first<'a, const N: usize>(
    names: &[&str; N],
    slots: &mut [Option<Cow<'a, str>>; N],
) -> impl FnMut(&'a str, Cow<'a, str>) {
    debug_assert!(
        names
            .iter()
            .all(|n| !n.bytes().any(|c| c.is_ascii_uppercase()))
    );
    move |name, value| {
        // The length and the first byte rule out nearly every other name before the whole
        // name is compared: a name of `names` (lower case) equal to `name` ignoring case has
        // its length and, as its first byte, `name`'s in lower case.
        let first = name.as_bytes().first().map(u8::to_ascii_lowercase);
        if let Some(i) = names.iter().position(|n| {
            n.len() == name.len()
                && n.as_bytes().first() == first.as_ref()
                && n.eq_ignore_ascii_case(name)
        }) && slots[i].is_none()
        {
            slots[i] = Some(value);
        }
    }
}

/// Splits a header value into its scheme and the parameters after it.
fn split_scheme(value: &str) -> Result<&str, AuthError> {
    let v = trim_unicode(value);
    // The first SP or HT (ASCII: a byte search finds the same place as a char search).
    let (scheme, rest) = match v.bytes().position(|c| c == b' ' || c == b'\t') {
        Some(at) => (&v[..at], &v[at + 1..]),
        None => (v, ""),
    };
    if !scheme.eq_ignore_ascii_case("digest") {
        return Err(AuthError::NotDigest);
    }
    Ok(rest)
}

/// A digest challenge from `WWW-Authenticate` or `Proxy-Authenticate` (RFC 7616 §3.3).
/// Read in place: the values are borrowed from the header (owned only when they held quoted
/// escapes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge<'a> {
    /// The realm.
    pub realm: Cow<'a, str>,
    /// The server nonce.
    pub nonce: Cow<'a, str>,
    /// The opaque value to echo.
    pub opaque: Option<Cow<'a, str>>,
    /// The algorithm (MD5 when absent).
    pub algorithm: Algorithm,
    /// The qop values offered; empty for an RFC 2069 style challenge.
    pub qop: QopOffer,
    /// True when the previous credentials were right but the nonce expired.
    pub stale: bool,
}

impl<'a> Challenge<'a> {
    /// Reads one challenge header value.
    pub fn parse(value: &'a str) -> Result<Self, AuthError> {
        let mut slots = Default::default();
        parse_params(
            split_scheme(value)?,
            keep_first(
                &["realm", "nonce", "opaque", "algorithm", "qop", "stale"],
                &mut slots,
            ),
        )?;
        let [realm, nonce, opaque, algorithm, qop, stale] = slots;
        let algorithm = match algorithm.as_deref() {
            Some(a) => Algorithm::parse(a).ok_or(AuthError::UnsupportedAlgorithm)?,
            None => Algorithm::Md5,
        };
        let qop = match qop.as_deref() {
            None => QopOffer::default(),
            Some(q) => {
                let mut offered = QopOffer::default();
                for t in q.split(',').map(str::trim) {
                    if t.eq_ignore_ascii_case("auth") {
                        offered.push(Qop::Auth);
                    } else if t.eq_ignore_ascii_case("auth-int") {
                        offered.push(Qop::AuthInt);
                    }
                }
                if offered.is_empty() {
                    return Err(AuthError::UnsupportedQop);
                }
                offered
            }
        };
        Ok(Self {
            realm: realm.ok_or(AuthError::Missing("realm"))?,
            nonce: nonce.ok_or(AuthError::Missing("nonce"))?,
            opaque,
            algorithm,
            qop,
            stale: stale.is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }

    /// The strongest usable challenge among several header values (RFC 8760 §2.4: a client
    /// uses the first one it supports in the server's preference order; among algorithms we
    /// prefer SHA-512-256, then SHA-256, then MD5). Unusable values are skipped.
    pub fn strongest(values: impl IntoIterator<Item = &'a str>) -> Result<Self, AuthError> {
        Self::strongest_with_value(values).map(|(c, _)| c)
    }

    /// [`Challenge::strongest`], with the header value it was read from (kept by a client that
    /// reuses the challenge later: one string instead of the parsed fields).
    pub fn strongest_with_value(
        values: impl IntoIterator<Item = &'a str>,
    ) -> Result<(Self, &'a str), AuthError> {
        let mut best: Option<(Challenge<'a>, &'a str)> = None;
        let mut last_err = AuthError::NoUsableChallenge;
        for v in values {
            match Challenge::parse(v) {
                Ok(c) => {
                    if best
                        .as_ref()
                        .is_none_or(|(b, _)| c.algorithm.strength() > b.algorithm.strength())
                    {
                        best = Some((c, v));
                    }
                }
                Err(e) => last_err = e,
            }
        }
        best.ok_or(last_err)
    }

    /// The header name the answer goes in: `Authorization` for a 401, `Proxy-Authorization` for a 407.
    pub fn answer_header(status: u16) -> &'static str {
        if status == 407 {
            "Proxy-Authorization"
        } else {
            "Authorization"
        }
    }
}

/// Computes the digest response (RFC 7616 §3.4.1; RFC 2617 §3.2.2.1 without qop).
#[allow(clippy::too_many_arguments)] // reason: the RFC's inputs, named as in the RFC
fn response(
    alg: Algorithm,
    user: &str,
    realm: &str,
    password: &str,
    nonce: &str,
    cnonce: &str,
    nc: &str,
    qop: Option<Qop>,
    method: &str,
    uri: &str,
    body: &[u8],
) -> HexDigest {
    let ha1 = ha1_hex(alg, user, realm, password);
    response_from_ha1(alg, &ha1, nonce, cnonce, nc, qop, method, uri, body)
}

/// `H(user:realm:password)` with `alg`'s hash (RFC 7616 §3.4.2, before `-sess`): what a
/// client may keep per user, realm and algorithm.
fn ha1_hex(alg: Algorithm, user: &str, realm: &str, password: &str) -> HexDigest {
    let parts: [&[u8]; 3] = [user.as_bytes(), realm.as_bytes(), password.as_bytes()];
    match alg {
        Algorithm::Md5 | Algorithm::Md5Sess => digest_hex::<Md5>(&parts),
        Algorithm::Sha256 | Algorithm::Sha256Sess => digest_hex::<Sha256>(&parts),
        Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => digest_hex::<Sha512_256>(&parts),
    }
}

/// [`response`] from `H(user:realm:password)` ([`ha1_hex`]).
#[allow(clippy::too_many_arguments)] // reason: the RFC's inputs, named as in the RFC
fn response_from_ha1(
    alg: Algorithm,
    ha1: &HexDigest,
    nonce: &str,
    cnonce: &str,
    nc: &str,
    qop: Option<Qop>,
    method: &str,
    uri: &str,
    body: &[u8],
) -> HexDigest {
    let args = ResponseArgs {
        sess: alg.is_sess(),
        ha1,
        nonce,
        cnonce,
        nc,
        qop,
        method,
        uri,
        body,
    };
    // The algorithm is chosen once; every hash below is then a direct call.
    match alg {
        Algorithm::Md5 | Algorithm::Md5Sess => response_with::<Md5>(&args),
        Algorithm::Sha256 | Algorithm::Sha256Sess => response_with::<Sha256>(&args),
        Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => response_with::<Sha512_256>(&args),
    }
}

/// The inputs of [`response_from_ha1`].
struct ResponseArgs<'a> {
    sess: bool,
    ha1: &'a HexDigest,
    nonce: &'a str,
    cnonce: &'a str,
    nc: &'a str,
    qop: Option<Qop>,
    method: &'a str,
    uri: &'a str,
    body: &'a [u8],
}

/// [`response_from_ha1`] with the algorithm's hash `D`.
fn response_with<D: Digest>(a: &ResponseArgs<'_>) -> HexDigest {
    // Every input is hashed in pieces: no formatted copies (this runs for every request a
    // fleet authenticates, on both sides).
    let mut ha1 = *a.ha1;
    if a.sess {
        ha1 = digest_hex::<D>(&[ha1.as_bytes(), a.nonce.as_bytes(), a.cnonce.as_bytes()]);
    }
    let ha2 = match a.qop {
        Some(Qop::AuthInt) => {
            let hb = digest_hex::<D>(&[a.body]);
            digest_hex::<D>(&[a.method.as_bytes(), a.uri.as_bytes(), hb.as_bytes()])
        }
        _ => digest_hex::<D>(&[a.method.as_bytes(), a.uri.as_bytes()]),
    };
    match a.qop {
        Some(q) => {
            let q = if q == Qop::Auth { "auth" } else { "auth-int" };
            digest_hex::<D>(&[
                ha1.as_bytes(),
                a.nonce.as_bytes(),
                a.nc.as_bytes(),
                a.cnonce.as_bytes(),
                q.as_bytes(),
                ha2.as_bytes(),
            ])
        }
        None => digest_hex::<D>(&[ha1.as_bytes(), a.nonce.as_bytes(), ha2.as_bytes()]),
    }
}

/// A client's kept `H(user:realm:password)` ([`DigestClient`]): the digest in bytes, for
/// the hash of `alg`, and a fingerprint of the user, realm and password it was computed
/// from (SipHash; the password is hashed last, so a server choosing realms cannot make two
/// fingerprints meet without knowing it). A fingerprint that differs (another account, a
/// changed password, another realm) computes it again.
#[derive(Clone, Copy)]
struct KeptHa1 {
    fingerprint: u64,
    alg: Algorithm,
    len: u8,
    digest: [u8; 32],
}

impl KeptHa1 {
    fn fingerprint(alg: Algorithm, user: &str, realm: &str, password: &str) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        (alg, user, realm, password).hash(&mut h);
        h.finish()
    }

    fn hex(&self) -> HexDigest {
        HexDigest::of(&self.digest[..usize::from(self.len)])
    }
}

/// Client state: the nonce count per nonce (RFC 7616 §3.4: nc increments on reuse).
///
/// Only the [`DigestClient::NONCES`] most recent nonces are remembered: a client answers the
/// latest challenge, and a phone that runs for days would otherwise keep every nonce it was
/// ever given. Thousands of agents each hold one, so the list is sized exactly.
///
/// It keeps `H(user:realm:password)` of the last account, realm and algorithm it answered
/// for (RFC 7616 §3.4.2: as a UA does, it does not hash the password for every request), and
/// computes it again when any of them changes.
#[derive(Default, Clone)]
pub struct DigestClient {
    /// `(digest of the nonce, count)`, most recently used last. The nonce's digest, not the
    /// nonce: no copy of it per phone (two nonces whose digests meet would share a count,
    /// which only makes a count larger).
    counts: Vec<(u64, u32)>,
    /// `H(user:realm:password)` last computed.
    ha1: Option<KeptHa1>,
}

impl fmt::Debug for DigestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestClient")
            .field("counts", &self.counts)
            .field("ha1", &self.ha1.map(|_| "<redacted>"))
            .finish()
    }
}

impl DigestClient {
    /// The `Authorization`/`Proxy-Authorization` value answering `ch` for a request.
    /// Prefers qop `auth`; uses `auth-int` only when it is the only one offered.
    pub fn authorize(
        &mut self,
        ch: &Challenge<'_>,
        creds: &Credentials,
        method: &str,
        uri: &str,
        body: &[u8],
        cnonce: &str,
    ) -> String {
        let mut v = String::new();
        self.authorize_into(&mut v, ch, creds, method, uri, body, cnonce);
        v
    }

    /// [`DigestClient::authorize`] appended to `v` (a header's scratch text, so the value is
    /// kept with no room to spare).
    #[allow(clippy::too_many_arguments)] // reason: `authorize`'s arguments and the text it writes in
    pub fn authorize_into(
        &mut self,
        v: &mut String,
        ch: &Challenge<'_>,
        creds: &Credentials,
        method: &str,
        uri: &str,
        body: &[u8],
        cnonce: &str,
    ) {
        // The challenge's realm wins: it is what the server will hash with.
        let realm: &str = &ch.realm;
        let qop = if ch.qop.contains(&Qop::Auth) {
            Some(Qop::Auth)
        } else {
            ch.qop.first().copied()
        };
        let count = self.next_count(&ch.nonce);
        let ha1 = self.ha1(
            ch.algorithm,
            &creds.username,
            realm,
            creds.password.expose(),
        );
        // `format!("{count:08x}")` without the formatting machinery.
        let mut nc_buf = [0u8; 8];
        for (i, d) in nc_buf.iter_mut().enumerate() {
            *d = b"0123456789abcdef"[((count >> (28 - 4 * i)) & 0xf) as usize];
        }
        // Only ASCII hex digits are written.
        let nc = std::str::from_utf8(&nc_buf).unwrap_or_default();
        let resp = response_from_ha1(
            ch.algorithm,
            &ha1,
            &ch.nonce,
            cnonce,
            nc,
            qop,
            method,
            uri,
            body,
        );
        // Written piece by piece into one string (what the `format!` calls it replaces gave).
        // The fixed text is at most 136 bytes (quoting may add more: the string grows then).
        v.reserve(
            136 + creds.username.len()
                + realm.len()
                + ch.nonce.len()
                + uri.len()
                + resp.as_str().len()
                + cnonce.len()
                + ch.opaque.as_ref().map_or(0, |o| o.len()),
        );
        for (name, value) in [
            ("Digest username=\"", &*creds.username),
            ("\", realm=\"", realm),
            ("\", nonce=\"", &ch.nonce),
            ("\", uri=\"", uri),
        ] {
            v.push_str(name);
            v.push_str(&quote(value));
        }
        v.push_str("\", response=\"");
        v.push_str(resp.as_str());
        v.push_str("\", algorithm=");
        v.push_str(ch.algorithm.as_str());
        if let Some(q) = qop {
            v.push_str(", cnonce=\"");
            v.push_str(&quote(cnonce));
            v.push_str("\", qop=");
            v.push_str(if q == Qop::Auth { "auth" } else { "auth-int" });
            v.push_str(", nc=");
            v.push_str(nc);
        }
        if let Some(o) = &ch.opaque {
            v.push_str(", opaque=\"");
            v.push_str(&quote(o));
            v.push('"');
        }
    }

    /// How many nonces keep their count.
    pub const NONCES: usize = 4;

    /// `H(user:realm:password)` for `alg`'s hash: the kept one when it was computed from
    /// the same algorithm, user, realm and password, else computed (and kept).
    fn ha1(&mut self, alg: Algorithm, user: &str, realm: &str, password: &str) -> HexDigest {
        let alg = alg.base();
        let fingerprint = KeptHa1::fingerprint(alg, user, realm, password);
        if let Some(kept) = self.ha1
            && kept.fingerprint == fingerprint
            && kept.alg == alg
        {
            return kept.hex();
        }
        let hex = ha1_hex(alg, user, realm, password);
        let mut digest = [0u8; 32];
        let len = hex.as_bytes().len() / 2;
        for (d, pair) in digest.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            // Lower-case hex digits only (HexDigest writes them).
            let v = |c: u8| {
                if c.is_ascii_digit() {
                    c - b'0'
                } else {
                    c - b'a' + 10
                }
            };
            *d = v(pair[0]) << 4 | v(pair[1]);
        }
        self.ha1 = Some(KeptHa1 {
            fingerprint,
            alg,
            // At most 32 bytes (HexDigest holds at most 64 digits).
            len: u8::try_from(len).unwrap_or(32),
            digest,
        });
        hex
    }

    /// Increments and returns the count of `nonce` (1 for a nonce not seen or forgotten).
    fn next_count(&mut self, nonce: &str) -> u32 {
        let nonce = {
            use std::hash::{Hash, Hasher};
            let mut h = std::hash::DefaultHasher::new();
            nonce.hash(&mut h);
            h.finish()
        };
        let count = match self.counts.iter().position(|(n, _)| *n == nonce) {
            Some(i) => self.counts.remove(i).1 + 1,
            None => {
                if self.counts.len() == Self::NONCES {
                    self.counts.remove(0);
                }
                1
            }
        };
        if self.counts.len() == self.counts.capacity() {
            self.counts.reserve_exact(1);
        }
        self.counts.push((nonce, count));
        count
    }

    /// True when the realm the account is configured with differs from the challenge's.
    pub fn realm_mismatch(ch: &Challenge, creds: &Credentials) -> bool {
        creds.realm.as_deref().is_some_and(|r| r != ch.realm)
    }
}

/// `s` escaped for a quoted-string: borrowed when it holds no `\\` or `"` (nearly always).
fn quote(s: &str) -> std::borrow::Cow<'_, str> {
    if quote_or_backslash(s.as_bytes()) < s.len() {
        s.replace('\\', "\\\\").replace('"', "\\\"").into()
    } else {
        s.into()
    }
}

/// Parsed `Authorization` / `Proxy-Authorization` digest credentials, read in place: every
/// value borrowed from the header value (owned only when it held quoted escapes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization<'a> {
    /// The user name.
    pub username: Cow<'a, str>,
    /// The realm.
    pub realm: Cow<'a, str>,
    /// The nonce being answered.
    pub nonce: Cow<'a, str>,
    /// The digest URI.
    pub uri: Cow<'a, str>,
    /// The response hash.
    pub response: Cow<'a, str>,
    /// The algorithm.
    pub algorithm: Algorithm,
    /// qop chosen by the client.
    pub qop: Option<Qop>,
    /// Client nonce.
    pub cnonce: Option<Cow<'a, str>>,
    /// Nonce count (8 hex digits).
    pub nc: Option<Cow<'a, str>>,
    /// Opaque echoed.
    pub opaque: Option<Cow<'a, str>>,
}

impl<'a> Authorization<'a> {
    /// Reads a credentials header value.
    pub fn parse(value: &'a str) -> Result<Self, AuthError> {
        let mut slots = Default::default();
        parse_params(
            split_scheme(value)?,
            keep_first(
                &[
                    "username",
                    "realm",
                    "nonce",
                    "uri",
                    "response",
                    "algorithm",
                    "qop",
                    "cnonce",
                    "nc",
                    "opaque",
                ],
                &mut slots,
            ),
        )?;
        let [
            username,
            realm,
            nonce,
            uri,
            response,
            algorithm,
            qop,
            cnonce,
            nc,
            opaque,
        ] = slots;
        let qop = match qop.as_deref() {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => Some(Qop::Auth),
            Some(q) if q.eq_ignore_ascii_case("auth-int") => Some(Qop::AuthInt),
            Some(_) => return Err(AuthError::UnsupportedQop),
        };
        let algorithm = match algorithm.as_deref() {
            Some(a) => Algorithm::parse(a).ok_or(AuthError::UnsupportedAlgorithm)?,
            None => Algorithm::Md5,
        };
        let a = Self {
            username: username.ok_or(AuthError::Missing("username"))?,
            realm: realm.ok_or(AuthError::Missing("realm"))?,
            nonce: nonce.ok_or(AuthError::Missing("nonce"))?,
            uri: uri.ok_or(AuthError::Missing("uri"))?,
            response: response.ok_or(AuthError::Missing("response"))?,
            algorithm,
            qop,
            cnonce,
            nc,
            opaque,
        };
        if a.qop.is_some() && (a.cnonce.is_none() || a.nc.is_none()) {
            return Err(AuthError::Missing("cnonce/nc"));
        }
        Ok(a)
    }

    /// True when these credentials answer what a [`NonceIssuer`] challenge offering the
    /// algorithms `offered` offers: one of those algorithms (an absent `algorithm` is MD5)
    /// and qop `auth`, the only qop its challenges offer. RFC 7616 §3.4: the algorithm must
    /// be one the challenge supplied and the qop one of the alternatives it indicated; RFC
    /// 7616 (SIP's digest since RFC 8760) has no RFC 2069 answer without qop. A server
    /// checks this before [`verify`], which computes the response for whatever the
    /// credentials name, and answers credentials that fail it with a fresh challenge.
    pub fn answers_offer(&self, offered: &[Algorithm]) -> bool {
        self.qop == Some(Qop::Auth) && offered.contains(&self.algorithm)
    }
}

/// Stateless nonces: `TIMESTAMP.HMAC(secret, TIMESTAMP:realm)`, valid for `lifetime` seconds.
#[derive(Clone)]
pub struct NonceIssuer {
    /// HMAC-SHA-256 keyed with the secret, cloned for each nonce: the key's two blocks are
    /// hashed once here instead of for every nonce issued or checked.
    mac: Hmac<Sha256>,
    lifetime: u64,
}

impl fmt::Debug for NonceIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceIssuer")
            .field("secret", &"<redacted>")
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

/// What a nonce check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceState {
    /// Issued by us and still valid.
    Fresh,
    /// Issued by us but expired: answer with `stale=true` (RFC 7616 §3.3).
    Stale,
    /// Not issued by us (forged or from another realm).
    Invalid,
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail for Hmac<Sha256>.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

impl NonceIssuer {
    /// An issuer keyed by `secret` whose nonces live `lifetime_secs`.
    pub fn new(secret: &[u8], lifetime_secs: u64) -> Self {
        Self {
            // HMAC accepts keys of any length: `new_from_slice` cannot fail for Hmac<Sha256>.
            mac: Hmac::<Sha256>::new_from_slice(secret).expect("hmac takes keys of any length"),
            lifetime: lifetime_secs,
        }
    }

    /// A nonce for `realm` at `now_unix`.
    pub fn issue(&self, realm: &str, now_unix: u64) -> String {
        self.nonce(realm, now_unix).as_str().to_owned()
    }

    /// The nonce for `realm` at `now_unix`, on the stack.
    fn nonce(&self, realm: &str, now_unix: u64) -> NonceText {
        let mut mac = self.mac.clone();
        let mut digits = [0u8; 20];
        let ts = decimal(now_unix, &mut digits);
        mac.update(ts.as_bytes());
        mac.update(b":");
        mac.update(realm.as_bytes());
        let mac = mac.finalize().into_bytes();
        let mut out = NonceText {
            buf: [0; 45],
            len: ts.len() + 1,
        };
        out.buf[..ts.len()].copy_from_slice(ts.as_bytes());
        out.buf[ts.len()] = b'.';
        // 18 bytes are exactly 24 base64 characters, and a timestamp at most 20 digits:
        // the buffer fits (the `unwrap_or` is never taken).
        out.len += base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode_slice(&mac[..18], &mut out.buf[out.len..])
            .unwrap_or(0);
        out
    }

    /// Checks a nonce we may have issued.
    pub fn check(&self, nonce: &str, realm: &str, now_unix: u64) -> NonceState {
        let Some((ts, _)) = nonce.split_once('.') else {
            return NonceState::Invalid;
        };
        let Ok(t) = ts.parse::<u64>() else {
            return NonceState::Invalid;
        };
        if !self.is_ours(nonce, ts, t, realm) {
            return NonceState::Invalid;
        }
        self.freshness(t, now_unix)
    }

    /// [`NonceIssuer::check`] with `memo`: a nonce of a timestamp `memo` kept (issued by
    /// [`NonceIssuer::challenges_memo`] with this issuer and realm) is compared with the kept
    /// text instead of computing its HMAC again. The verdict is the same: the kept text is the
    /// only nonce this issuer makes for that timestamp and realm.
    pub fn check_memo(
        &self,
        memo: &NonceMemo,
        nonce: &str,
        realm: &str,
        now_unix: u64,
    ) -> NonceState {
        let Some((ts, _)) = nonce.split_once('.') else {
            return NonceState::Invalid;
        };
        let Ok(t) = ts.parse::<u64>() else {
            return NonceState::Invalid;
        };
        let ours = match memo.get(t, realm) {
            // Constant time: do not leak how much of a forged nonce matched.
            Some(kept) => bool::from(kept.as_str().as_bytes().ct_eq(nonce.as_bytes())),
            None => self.is_ours(nonce, ts, t, realm),
        };
        if !ours {
            return NonceState::Invalid;
        }
        self.freshness(t, now_unix)
    }

    /// Whether a nonce of timestamp `t` is still fresh.
    fn freshness(&self, t: u64, now_unix: u64) -> NonceState {
        if now_unix > t.saturating_add(self.lifetime) || t > now_unix.saturating_add(60) {
            NonceState::Stale
        } else {
            NonceState::Fresh
        }
    }

    /// True when `nonce` (`ts` `.` tag, `ts` read as `t`) is the nonce we issue for `t`.
    fn is_ours(&self, nonce: &str, ts: &str, t: u64, realm: &str) -> bool {
        // The canonical nonce of `t` (a timestamp written with leading zeros is not ours).
        let mut mac = self.mac.clone();
        mac.update(ts.as_bytes());
        mac.update(b":");
        mac.update(realm.as_bytes());
        let mac = mac.finalize().into_bytes();
        let mut tag = [0u8; 24];
        // 18 bytes are exactly 24 base64 characters: the buffer fits.
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode_slice(&mac[..18], &mut tag)
            .unwrap_or(0);
        let mut digits = [0u8; 20];
        let canonical = decimal(t, &mut digits) == ts;
        let given = &nonce.as_bytes()[ts.len() + 1..];
        canonical && n == 24 && bool::from(tag.as_slice().ct_eq(given))
    }

    /// A challenge header value (`Digest realm=…, nonce=…, algorithm=…, qop="auth"`).
    pub fn challenge(
        &self,
        realm: &str,
        algorithm: Algorithm,
        stale: bool,
        now_unix: u64,
    ) -> String {
        let [v] = self.challenges(realm, [algorithm], stale, now_unix);
        v
    }

    /// [`NonceIssuer::challenge`] for each of `algorithms`, in order, with the one nonce
    /// they share (RFC 8760 §2.4: a server offers one challenge per algorithm) computed once.
    pub fn challenges<const N: usize>(
        &self,
        realm: &str,
        algorithms: [Algorithm; N],
        stale: bool,
        now_unix: u64,
    ) -> [String; N] {
        let nonce = self.nonce(realm, now_unix);
        let realm_q = quote(realm);
        algorithms.map(|algorithm| challenge_text(&realm_q, nonce.as_str(), algorithm, stale))
    }

    /// [`NonceIssuer::challenges`] with `memo`: the nonce of `now_unix` is computed once per
    /// second (every challenge of that second has the same one) and kept for
    /// [`NonceIssuer::check_memo`].
    pub fn challenges_memo<const N: usize>(
        &self,
        memo: &mut NonceMemo,
        realm: &str,
        algorithms: [Algorithm; N],
        stale: bool,
        now_unix: u64,
    ) -> [String; N] {
        let nonce = match memo.get(now_unix, realm) {
            Some(kept) => *kept,
            None => {
                let nonce = self.nonce(realm, now_unix);
                memo.put(now_unix, realm, nonce);
                nonce
            }
        };
        let realm_q = quote(realm);
        algorithms.map(|algorithm| challenge_text(&realm_q, nonce.as_str(), algorithm, stale))
    }
}

/// The nonces a [`NonceIssuer`] issued in the last two seconds it issued any, for one realm:
/// its nonces are a function of the second and the realm, so the challenges of one second
/// share one HMAC, and credentials answering them (within a second or two) are checked
/// against the kept text. Keep one per issuer and realm ([`NonceIssuer::challenges_memo`],
/// [`NonceIssuer::check_memo`], [`verify_memo`]); a nonce of another second is checked in
/// full. About 150 bytes, whatever the load.
#[derive(Clone)]
pub struct NonceMemo {
    realm: Box<str>,
    /// `(second, its nonce)`, the most recent first.
    kept: [Option<(u64, NonceText)>; 2],
}

impl fmt::Debug for NonceMemo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceMemo")
            .field("realm", &self.realm)
            .field("seconds", &self.kept.map(|k| k.map(|(t, _)| t)))
            .finish()
    }
}

impl NonceMemo {
    /// An empty memo for `realm`'s nonces.
    pub fn new(realm: &str) -> Self {
        Self {
            realm: realm.into(),
            kept: [None; 2],
        }
    }

    fn get(&self, t: u64, realm: &str) -> Option<&NonceText> {
        if *self.realm != *realm {
            return None;
        }
        self.kept
            .iter()
            .flatten()
            .find(|(s, _)| *s == t)
            .map(|(_, n)| n)
    }

    fn put(&mut self, t: u64, realm: &str, nonce: NonceText) {
        if *self.realm != *realm {
            return;
        }
        self.kept = [Some((t, nonce)), self.kept[0]];
    }
}

/// A nonce on the stack: the timestamp (at most 20 digits), `.`, 24 base64 characters.
#[derive(Clone, Copy)]
struct NonceText {
    buf: [u8; 45],
    len: usize,
}

impl NonceText {
    fn as_str(&self) -> &str {
        // Only ASCII digits, `.` and base64 characters are written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

/// A challenge header value for an already quoted realm and a nonce.
fn challenge_text(realm_q: &str, nonce: &str, algorithm: Algorithm, stale: bool) -> String {
    // Exactly its length: the text is kept as a header's value, with no room to spare.
    let stale_text = if stale { ", stale=true" } else { "" };
    let mut v = String::with_capacity(
        "Digest realm=\"\", nonce=\"\", algorithm=, qop=\"auth\"".len()
            + realm_q.len()
            + nonce.len()
            + algorithm.as_str().len()
            + stale_text.len(),
    );
    v.push_str("Digest realm=\"");
    v.push_str(realm_q);
    v.push_str("\", nonce=\"");
    v.push_str(nonce);
    v.push_str("\", algorithm=");
    v.push_str(algorithm.as_str());
    v.push_str(", qop=\"auth\"");
    v.push_str(stale_text);
    debug_assert_eq!(
        v.len(),
        v.capacity(),
        "the challenge's length is computed exactly"
    );
    v
}

/// `n` in decimal, written into `buf` (a u64 has at most 20 digits).
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits are written.
    std::str::from_utf8(&buf[i..]).unwrap_or_default()
}

/// The server's verdict on credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The response is right and the nonce fresh.
    Ok,
    /// The response is right but the nonce expired: challenge again with `stale=true`.
    Stale,
    /// Wrong password, forged nonce, or another realm.
    Rejected,
}

/// Verifies parsed credentials for a request (`method`, `body`) against `password`.
pub fn verify(
    auth: &Authorization,
    issuer: &NonceIssuer,
    realm: &str,
    password: &str,
    method: &str,
    body: &[u8],
    now_unix: u64,
) -> Verdict {
    if auth.realm != realm {
        return Verdict::Rejected;
    }
    let nonce_state = issuer.check(&auth.nonce, realm, now_unix);
    verify_response(auth, nonce_state, realm, password, method, body)
}

/// [`verify`] with the nonce checked by [`NonceIssuer::check_memo`] (the same verdict).
#[allow(clippy::too_many_arguments)] // reason: verify's inputs and the memo
pub fn verify_memo(
    auth: &Authorization,
    issuer: &NonceIssuer,
    memo: &NonceMemo,
    realm: &str,
    password: &str,
    method: &str,
    body: &[u8],
    now_unix: u64,
) -> Verdict {
    if auth.realm != realm {
        return Verdict::Rejected;
    }
    let nonce_state = issuer.check_memo(memo, &auth.nonce, realm, now_unix);
    verify_response(auth, nonce_state, realm, password, method, body)
}

/// The rest of [`verify`] once the nonce is checked.
fn verify_response(
    auth: &Authorization,
    nonce_state: NonceState,
    realm: &str,
    password: &str,
    method: &str,
    body: &[u8],
) -> Verdict {
    if nonce_state == NonceState::Invalid {
        return Verdict::Rejected;
    }
    let expected = response(
        auth.algorithm,
        &auth.username,
        realm,
        password,
        &auth.nonce,
        auth.cnonce.as_deref().unwrap_or(""),
        auth.nc.as_deref().unwrap_or(""),
        auth.qop,
        method,
        &auth.uri,
        body,
    );
    // Constant time: do not leak how many leading characters matched.
    // Hex digits compared case-insensitively, without a lower-cased copy.
    let given = auth.response.as_bytes();
    let same_len = expected.as_bytes().len() == given.len();
    let mut lowered = [0u8; 64];
    for (l, g) in lowered.iter_mut().zip(given) {
        *l = g.to_ascii_lowercase();
    }
    let given = &lowered[..given.len().min(64)];
    if !same_len || !bool::from(expected.as_bytes().ct_eq(given)) {
        return Verdict::Rejected;
    }
    if nonce_state == NonceState::Stale {
        Verdict::Stale
    } else {
        Verdict::Ok
    }
}

/// Ephemeral credentials of the built-in registrar: username `EXPIRY_UNIX:ID`, password
/// `base64(HMAC-SHA256(secret, username))`.
pub mod ephemeral {
    use base64::Engine;
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::Sha256;

    use super::hmac_sha256;

    /// Why ephemeral credentials were refused.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
    pub enum EphemeralError {
        /// The username is not `EXPIRY:ID`.
        #[error("not an ephemeral username")]
        Malformed,
        /// The expiry has passed.
        #[error("ephemeral credentials expired")]
        Expired,
    }

    /// The password for `username` under `secret`.
    pub fn password(secret: &[u8], username: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(hmac_sha256(secret, username.as_bytes()))
    }

    /// Issues credentials for `id` valid until `expiry_unix`: `(username, password)`.
    pub fn issue(secret: &[u8], id: &str, expiry_unix: u64) -> (String, String) {
        let username = format!("{expiry_unix}:{id}");
        let pw = password(secret, &username);
        (username, pw)
    }

    /// The password the registrar expects for `username`, if it is well formed and unexpired.
    /// A forged username yields a password its holder cannot know, so digest verification fails.
    pub fn expected_password(
        secret: &[u8],
        username: &str,
        now_unix: u64,
    ) -> Result<String, EphemeralError> {
        check_username(username, now_unix)?;
        Ok(password(secret, username))
    }

    /// Refuses a username that is not `EXPIRY:ID` or whose expiry has passed.
    fn check_username(username: &str, now_unix: u64) -> Result<(), EphemeralError> {
        let (expiry, id) = username.split_once(':').ok_or(EphemeralError::Malformed)?;
        let expiry: u64 = expiry.parse().map_err(|_| EphemeralError::Malformed)?;
        if id.is_empty() {
            return Err(EphemeralError::Malformed);
        }
        if now_unix > expiry {
            return Err(EphemeralError::Expired);
        }
        Ok(())
    }

    /// [`expected_password`] for one secret, with its HMAC key prepared once: each check
    /// then hashes two SHA-256 blocks less (the keyed inner and outer pads are kept).
    #[derive(Clone)]
    pub struct Checker {
        mac: Hmac<Sha256>,
    }

    impl std::fmt::Debug for Checker {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("ephemeral::Checker")
        }
    }

    impl Checker {
        /// A checker for credentials issued under `secret`.
        pub fn new(secret: &[u8]) -> Self {
            Self {
                // HMAC accepts keys of any length: `new_from_slice` cannot fail for Hmac<Sha256>.
                mac: Hmac::<Sha256>::new_from_slice(secret).expect("hmac takes keys of any length"),
            }
        }

        /// What [`expected_password`] gives for this checker's secret.
        pub fn expected_password(
            &self,
            username: &str,
            now_unix: u64,
        ) -> Result<String, EphemeralError> {
            self.expected(username, now_unix)
                .map(|p| p.expose().to_owned())
        }

        /// [`Checker::expected_password`] on the stack (no allocation: the registrar asks
        /// for one per authenticated request).
        pub fn expected(&self, username: &str, now_unix: u64) -> Result<Password, EphemeralError> {
            check_username(username, now_unix)?;
            let mut mac = self.mac.clone();
            mac.update(username.as_bytes());
            let mut p = Password([0; 44]);
            // 32 bytes are exactly 44 base64 characters (with one `=`): the buffer fits, the
            // `unwrap_or` is never taken.
            let n = base64::engine::general_purpose::STANDARD
                .encode_slice(mac.finalize().into_bytes(), &mut p.0)
                .unwrap_or(0);
            debug_assert_eq!(n, 44);
            Ok(p)
        }
    }

    /// An ephemeral password (base64 of an HMAC-SHA-256, 44 characters) on the stack; never
    /// shown by `Debug`.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub struct Password([u8; 44]);

    impl Password {
        /// The password itself.
        pub fn expose(&self) -> &str {
            // Only base64 characters are written.
            std::str::from_utf8(&self.0).unwrap_or_default()
        }
    }

    impl std::fmt::Debug for Password {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("<redacted>")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_section_3_5() {
        let ch = Challenge::parse(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        let creds = Credentials::new("Mufasa", "Circle Of Life");
        let v = DigestClient::default().authorize(
            &ch,
            &creds,
            "GET",
            "/dir/index.html",
            b"",
            "0a4f113b",
        );
        assert!(
            v.contains(r#"response="6629fae49393a05397450978507c4ef1""#),
            "{v}"
        );
        assert!(
            v.contains("nc=00000001") && v.contains("qop=auth,") || v.contains("qop=auth, "),
            "{v}"
        );
        assert!(v.contains(r#"opaque="5ccc069c403ebaf9f0171e9517f40e41""#));
    }

    const RFC7616_CHALLENGE: &str = r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=ALG, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;
    const RFC7616_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

    #[test]
    fn rfc7616_section_3_9_1_md5_and_sha256() {
        let creds = Credentials::new("Mufasa", "Circle of Life");
        for (alg, expected) in [
            ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
            (
                "SHA-256",
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
        ] {
            let value = RFC7616_CHALLENGE.replace("ALG", alg);
            let ch = Challenge::parse(&value).unwrap();
            let v = DigestClient::default().authorize(
                &ch,
                &creds,
                "GET",
                "/dir/index.html",
                b"",
                RFC7616_CNONCE,
            );
            assert!(
                v.contains(&format!("response=\"{expected}\"")),
                "{alg}: {v}"
            );
        }
    }

    /// Review 12: the answer is written as RFC 7616 §3.4 writes it. `algorithm`, `qop` and
    /// `nc` are tokens (unquoted); `username`, `realm`, `nonce`, `uri`, `response`, `cnonce`
    /// and `opaque` are quoted strings. Without qop in the challenge (RFC 2069, kept by RFC
    /// 2617 §3.2.2) there is no `cnonce`, `nc` or `qop`, and the response is H(HA1:nonce:HA2).
    /// SHA-512-256 is chosen over SHA-256 and MD5 whatever the server's order (our local
    /// policy, which RFC 7616 §3.7 allows over the server's preference order: see
    /// [`Challenge::strongest`]), and `stale=TRUE` reads in any case (§3.3:
    /// case-insensitive).
    #[test]
    fn answers_quote_what_rfc_7616_quotes_and_nothing_else() {
        let creds = Credentials::new("Mufasa", "Circle of Life");
        let v = DigestClient::default().authorize(
            &Challenge::parse(&RFC7616_CHALLENGE.replace("ALG", "SHA-256")).unwrap(),
            &creds,
            "GET",
            "/dir/index.html",
            b"",
            RFC7616_CNONCE,
        );
        for part in [
            "Digest username=\"Mufasa\"",
            "realm=\"http-auth@example.org\"",
            "uri=\"/dir/index.html\"",
            "algorithm=SHA-256,",
            &format!("cnonce=\"{RFC7616_CNONCE}\""),
            "qop=auth,",
            "nc=00000001",
            "opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"",
        ] {
            assert!(v.contains(part), "{part} in {v}");
        }
        assert!(!v.contains("nc=\"") && !v.contains("qop=\"") && !v.contains("algorithm=\""));
        // RFC 2069 style: no qop offered.
        let old = Challenge::parse(r#"Digest realm="r", nonce="n""#).unwrap();
        assert!(old.qop.is_empty());
        let v = DigestClient::default().authorize(&old, &creds, "REGISTER", "sip:r", b"", "c");
        assert!(
            !v.contains("cnonce") && !v.contains("nc=") && !v.contains("qop"),
            "{v}"
        );
        let ha1 = Algorithm::Md5.hash(b"Mufasa:r:Circle of Life");
        let ha2 = Algorithm::Md5.hash(b"REGISTER:sip:r");
        let expected = Algorithm::Md5.hash(format!("{ha1}:n:{ha2}").as_bytes());
        assert!(v.contains(&format!("response=\"{expected}\"")), "{v}");
        // The strongest of three, whatever their order; stale in upper case.
        let sha512 =
            r#"Digest realm="r", nonce="n3", algorithm=SHA-512-256, qop="auth", stale=TRUE"#;
        let sha256 = r#"Digest realm="r", nonce="n2", algorithm=SHA-256, qop="auth""#;
        let md5 = r#"Digest realm="r", nonce="n1", qop="auth""#;
        let best = Challenge::strongest([md5, sha512, sha256]).unwrap();
        assert_eq!((best.algorithm, best.stale), (Algorithm::Sha512_256, true));
        let v = DigestClient::default().authorize(&best, &creds, "REGISTER", "sip:r", b"", "c");
        assert!(v.contains("algorithm=SHA-512-256,"), "{v}");
    }

    #[test]
    fn strongest_challenge_wins_and_bad_ones_are_skipped() {
        let md5 = r#"Digest realm="r", nonce="n1""#;
        let sha = r#"Digest realm="r", nonce="n2", algorithm=SHA-256"#;
        let bad = r#"Digest realm="r", nonce="n3", algorithm=SHA-1"#;
        assert_eq!(Challenge::strongest([md5, sha, bad]).unwrap().nonce, "n2");
        assert_eq!(
            Challenge::strongest([bad, md5]).unwrap().algorithm,
            Algorithm::Md5
        );
        assert_eq!(
            Challenge::strongest([bad]),
            Err(AuthError::UnsupportedAlgorithm)
        );
    }

    #[test]
    fn malformed_challenges_are_errors_not_panics() {
        assert_eq!(
            Challenge::parse(r#"Basic realm="x""#),
            Err(AuthError::NotDigest)
        );
        assert_eq!(
            Challenge::parse(r#"Digest realm="x, nonce=y"#),
            Err(AuthError::UnterminatedQuote)
        );
        assert_eq!(
            Challenge::parse(r#"Digest realm="x, nonce="y"#),
            Err(AuthError::BadParam)
        );
        assert_eq!(
            Challenge::parse(r#"Digest realm="x""#),
            Err(AuthError::Missing("nonce"))
        );
        assert_eq!(
            Challenge::parse(r#"Digest realm"#),
            Err(AuthError::BadParam)
        );
        assert_eq!(
            Challenge::parse(r#"Digest realm="x", nonce="y", qop="bogus""#),
            Err(AuthError::UnsupportedQop)
        );
        assert!(
            Challenge::parse(r#"DIGEST REALM="x", NONCE="y", STALE=TRUE"#)
                .unwrap()
                .stale
        );
        for junk in ["", "Digest", "Digest ,,,", "Digest a=\"\\", "Digest =x"] {
            let _ = Challenge::parse(junk);
            let _ = Authorization::parse(junk);
        }
    }

    #[test]
    fn nc_increments_on_the_same_nonce() {
        let ch = Challenge::parse(r#"Digest realm="r", nonce="n", qop="auth""#).unwrap();
        let creds = Credentials::new("u", "p");
        let mut c = DigestClient::default();
        assert!(
            c.authorize(&ch, &creds, "REGISTER", "sip:r", b"", "c")
                .contains("nc=00000001")
        );
        assert!(
            c.authorize(&ch, &creds, "REGISTER", "sip:r", b"", "c")
                .contains("nc=00000002")
        );
    }

    #[test]
    fn qop_offers_keep_the_first_place_of_each_known_value() {
        let offer = |q: &str| {
            Challenge::parse(&format!(r#"Digest realm="r", nonce="n", qop="{q}""#)).map(|c| c.qop)
        };
        let cases: [(&str, &[Qop]); 6] = [
            ("auth", &[Qop::Auth]),
            ("auth-int", &[Qop::AuthInt]),
            ("auth-int, auth", &[Qop::AuthInt, Qop::Auth]),
            ("AUTH,auth,auth-int,auth", &[Qop::Auth, Qop::AuthInt]),
            ("x, auth-int, y, auth-int", &[Qop::AuthInt]),
            ("auth-int,x,auth", &[Qop::AuthInt, Qop::Auth]),
        ];
        for (q, want) in cases {
            let qop = offer(q).unwrap();
            assert_eq!(qop.iter().collect::<Vec<_>>(), want, "{q}");
            assert_eq!(qop.first(), want.first(), "{q}");
            assert_eq!(qop.contains(&Qop::Auth), want.contains(&Qop::Auth), "{q}");
            assert!(!qop.is_empty());
        }
        assert_eq!(offer("x, y"), Err(AuthError::UnsupportedQop));
        let none = Challenge::parse(r#"Digest realm="r", nonce="n""#).unwrap();
        assert!(none.qop.is_empty() && none.qop.first().is_none());
    }

    #[test]
    fn params_are_read_in_place_with_escapes_and_any_case() {
        let ch = Challenge::parse(
            r#"Digest REALM="a \"b\" c\\d", Nonce = "n,1" , qop="auth,auth-int", Algorithm=SHA-256, opaque="", stale=TRUE"#,
        )
        .unwrap();
        assert_eq!(ch.realm, r#"a "b" c\d"#);
        assert_eq!(ch.nonce, "n,1");
        assert_eq!(ch.qop, [Qop::Auth, Qop::AuthInt]);
        assert_eq!(ch.algorithm, Algorithm::Sha256);
        assert_eq!(ch.opaque.as_deref(), Some(""));
        assert!(ch.stale);
        // The first of two values wins, and quoting round-trips through an answer.
        let ch = Challenge::parse(r#"Digest realm="r\"", realm="other", nonce="x""#).unwrap();
        assert_eq!(ch.realm, "r\"");
        let v = DigestClient::default().authorize(
            &ch,
            &Credentials::new("u\"ser", "p"),
            "REGISTER",
            "sip:r",
            b"",
            "c",
        );
        let a = Authorization::parse(&v).unwrap();
        assert_eq!((&*a.username, &*a.realm), ("u\"ser", "r\""));
        assert_eq!(
            Challenge::parse(r#"Digest realm="r"#).err(),
            Some(AuthError::UnterminatedQuote)
        );
    }

    #[test]
    fn nonce_counts_are_kept_for_the_latest_nonces_only() {
        let creds = Credentials::new("u", "p");
        let ch = |n: usize| format!(r#"Digest realm="r", nonce="n{n}", qop="auth""#);
        let mut c = DigestClient::default();
        let nc = |c: &mut DigestClient, n: usize| {
            let value = ch(n);
            let ch = Challenge::parse(&value).unwrap();
            let v = c.authorize(&ch, &creds, "REGISTER", "sip:r", b"", "c");
            v.split("nc=").nth(1).unwrap().get(..8).unwrap().to_owned()
        };
        assert_eq!(nc(&mut c, 0), "00000001");
        // Interleaved nonces keep their own counts.
        for n in 1..DigestClient::NONCES {
            assert_eq!(nc(&mut c, n), "00000001");
        }
        assert_eq!(nc(&mut c, 0), "00000002");
        // A run of new nonces pushes the oldest out (the list stays bounded).
        for n in 100..200 {
            assert_eq!(nc(&mut c, n), "00000001");
        }
        assert_eq!(c.counts.len(), DigestClient::NONCES);
        assert_eq!(nc(&mut c, 199), "00000002");
        assert_eq!(nc(&mut c, 0), "00000001", "forgotten: starts again");
    }

    /// `answers_offer`: only an offered algorithm (an absent one is MD5) with qop `auth`.
    /// Credentials without qop, with `auth-int` or another algorithm answer no offer of
    /// `NonceIssuer`'s, even when their response is right for what they name.
    #[test]
    fn credentials_answer_the_offer_only_with_its_algorithm_and_qop_auth() {
        let issuer = NonceIssuer::new(b"k", 300);
        let now = 1_800_000_000;
        let creds = Credentials::new("alice", "wonderland");
        let offered = [Algorithm::Sha256, Algorithm::Md5];
        for (alg, qop, answers) in [
            (Some("SHA-256"), Some("auth"), true),
            (Some("MD5"), Some("auth"), true),
            (None, Some("auth"), true),
            (Some("SHA-256"), None, false),
            (Some("MD5"), None, false),
            (None, None, false),
            (Some("SHA-256"), Some("auth-int"), false),
            (Some("SHA-512-256"), Some("auth"), false),
            (Some("SHA-256-sess"), Some("auth"), false),
            (Some("MD5-sess"), Some("auth"), false),
        ] {
            let mut ch = format!(r#"Digest realm="r", nonce="{}""#, issuer.issue("r", now));
            if let Some(a) = alg {
                ch.push_str(&format!(", algorithm={a}"));
            }
            if let Some(q) = qop {
                ch.push_str(&format!(r#", qop="{q}""#));
            }
            let ch = Challenge::parse(&ch).unwrap();
            let mut v = DigestClient::default().authorize(&ch, &creds, "INVITE", "sip:b", b"", "c");
            if alg.is_none() {
                v = v.replace(", algorithm=MD5", "");
            }
            let a = Authorization::parse(&v).unwrap();
            // The response itself is right for what the credentials name.
            let verdict = verify(&a, &issuer, "r", "wonderland", "INVITE", b"", now);
            assert_eq!(verdict, Verdict::Ok, "{v}");
            assert_eq!(a.answers_offer(&offered), answers, "{v}");
        }
        // MD5 alone offered: a SHA-256 answer is not one.
        let ch = issuer.challenge("r", Algorithm::Sha256, false, now);
        let v = DigestClient::default().authorize(
            &Challenge::parse(&ch).unwrap(),
            &creds,
            "INVITE",
            "sip:b",
            b"",
            "c",
        );
        let a = Authorization::parse(&v).unwrap();
        assert!(!a.answers_offer(&[Algorithm::Md5]));
        assert!(a.answers_offer(&[Algorithm::Sha256]));
    }

    #[test]
    fn server_round_trip_auth_int_sess_stale_and_forgery() {
        let issuer = NonceIssuer::new(b"server secret", 300);
        let now = 1_800_000_000;
        let creds = Credentials::new("alice", "wonderland");
        for (alg, qop) in [
            ("MD5", "auth"),
            ("SHA-256-sess", "auth"),
            ("SHA-256", "auth-int"),
            ("SHA-512-256", "auth"),
        ] {
            let ch_value = format!(
                r#"Digest realm="sipmeter", nonce="{}", algorithm={alg}, qop="{qop}""#,
                issuer.issue("sipmeter", now)
            );
            let ch = Challenge::parse(&ch_value).unwrap();
            let v = DigestClient::default().authorize(
                &ch,
                &creds,
                "INVITE",
                "sip:bob@sipmeter",
                b"v=0\r\n",
                "abc",
            );
            let a = Authorization::parse(&v).unwrap();
            assert_eq!(
                verify(
                    &a,
                    &issuer,
                    "sipmeter",
                    "wonderland",
                    "INVITE",
                    b"v=0\r\n",
                    now + 10
                ),
                Verdict::Ok,
                "{alg} {qop}"
            );
            assert_eq!(
                verify(
                    &a,
                    &issuer,
                    "sipmeter",
                    "wrong",
                    "INVITE",
                    b"v=0\r\n",
                    now + 10
                ),
                Verdict::Rejected
            );
            assert_eq!(
                verify(
                    &a,
                    &issuer,
                    "sipmeter",
                    "wonderland",
                    "INVITE",
                    b"v=0\r\n",
                    now + 301
                ),
                Verdict::Stale
            );
            if qop == "auth-int" {
                assert_eq!(
                    verify(
                        &a,
                        &issuer,
                        "sipmeter",
                        "wonderland",
                        "INVITE",
                        b"tampered",
                        now
                    ),
                    Verdict::Rejected
                );
            }
        }
        let forged = Authorization::parse(r#"Digest username="alice", realm="sipmeter", nonce="1800000000.AAAA", uri="sip:x", response="00""#).unwrap();
        assert_eq!(
            verify(
                &forged,
                &issuer,
                "sipmeter",
                "wonderland",
                "REGISTER",
                b"",
                now
            ),
            Verdict::Rejected
        );
        assert!(
            issuer
                .challenge("sipmeter", Algorithm::Sha256, true, now)
                .ends_with("stale=true")
        );
    }

    #[test]
    fn challenges_share_one_nonce_and_print_as_challenge_does() {
        let issuer = NonceIssuer::new(b"k", 300);
        for realm in ["sipmeter", r#"a "quoted" \ realm"#] {
            for stale in [false, true] {
                let both =
                    issuer.challenges(realm, [Algorithm::Sha256, Algorithm::Md5], stale, 1_234);
                assert_eq!(
                    both,
                    [
                        issuer.challenge(realm, Algorithm::Sha256, stale, 1_234),
                        issuer.challenge(realm, Algorithm::Md5, stale, 1_234),
                    ]
                );
                let ch = Challenge::parse(&both[0]).unwrap();
                assert_eq!((&*ch.realm, ch.stale), (realm, stale));
                assert_eq!(ch.nonce, issuer.issue(realm, 1_234));
                assert_eq!(issuer.check(&ch.nonce, realm, 1_234), NonceState::Fresh);
            }
        }
        // The longest timestamp still fits the nonce's buffer.
        let n = issuer.issue("r", u64::MAX);
        assert_eq!(n.len(), 20 + 1 + 24);
        assert_eq!(issuer.check(&n, "r", u64::MAX), NonceState::Fresh);
    }

    /// A client that keeps H(A1) answers as a new client does, for the same account again and
    /// after its password, user, realm or algorithm changed (never from the kept H(A1) of the
    /// old ones): the server accepts the new password and refuses the old one.
    #[test]
    fn a_kept_ha1_answers_as_a_new_client_and_follows_every_change() {
        let issuer = NonceIssuer::new(b"k", 300);
        let mut kept = DigestClient::default();
        let steps: [(&str, &str, &str, &str); 12] = [
            ("alice", "pw1", "sipmeter", "SHA-256"),
            ("alice", "pw1", "sipmeter", "SHA-256"),
            ("alice", "pw2", "sipmeter", "SHA-256"),
            ("alice", "pw1", "sipmeter", "SHA-256"),
            ("bob", "pw1", "sipmeter", "SHA-256"),
            ("alice", "pw1", "other", "SHA-256"),
            ("alice", "pw1", "sipmeter", "MD5"),
            ("alice", "pw1", "sipmeter", "MD5-sess"),
            ("alice", "pw1", "sipmeter", "SHA-256-sess"),
            ("alice", "pw1", "sipmeter", "SHA-512-256"),
            // The same text split otherwise between user and realm is another account.
            ("alicesip", "pw1", "meter", "SHA-256"),
            ("alice", "pw1", "sipmeter", "SHA-256"),
        ];
        for (i, (user, password, realm, alg)) in steps.into_iter().enumerate() {
            let t = 1_800_000_000 + i as u64;
            let ch = format!(
                r#"Digest realm="{realm}", nonce="{}", algorithm={alg}, qop="auth""#,
                issuer.issue(realm, t)
            );
            let ch = Challenge::parse(&ch).unwrap();
            let creds = Credentials::new(user, password);
            let v = kept.authorize(&ch, &creds, "INVITE", "sip:b@s", b"", "cn");
            let fresh =
                DigestClient::default().authorize(&ch, &creds, "INVITE", "sip:b@s", b"", "cn");
            assert_eq!(v, fresh, "step {i}");
            let a = Authorization::parse(&v).unwrap();
            assert_eq!(
                verify(&a, &issuer, realm, password, "INVITE", b"", t),
                Verdict::Ok,
                "step {i}"
            );
            let other = if password == "pw1" { "pw2" } else { "pw1" };
            assert_eq!(
                verify(&a, &issuer, realm, other, "INVITE", b"", t),
                Verdict::Rejected,
                "step {i}"
            );
        }
        // The kept H(A1) is never shown.
        assert!(format!("{kept:?}").contains("<redacted>"), "{kept:?}");
    }

    /// The memo gives the verdicts of the full check, for nonces it keeps, nonces of seconds it
    /// no longer keeps, forged ones (tag, timestamp written otherwise, another realm, another
    /// secret) and every freshness, and the challenges it prints are `challenges`'.
    #[test]
    fn a_nonce_memo_gives_the_verdicts_of_the_full_check() {
        let issuer = NonceIssuer::new(b"k", 300);
        let other = NonceIssuer::new(b"other secret", 300);
        let mut memo = NonceMemo::new("sipmeter");
        let t0 = 1_800_000_000u64;
        let mut nonces = Vec::new();
        for t in [t0, t0, t0 + 1, t0 + 2, t0 + 2] {
            let algs = [Algorithm::Sha256, Algorithm::Md5];
            let with_memo = issuer.challenges_memo(&mut memo, "sipmeter", algs, false, t);
            assert_eq!(with_memo, issuer.challenges("sipmeter", algs, false, t));
            // Another realm is not kept (nor mistaken for the memo's).
            assert_eq!(
                issuer.challenges_memo(&mut memo, "elsewhere", algs, true, t),
                issuer.challenges("elsewhere", algs, true, t)
            );
            nonces.push(issuer.issue("sipmeter", t));
        }
        // t0 is no longer kept, t0 + 1 and t0 + 2 are.
        assert!(memo.get(t0, "sipmeter").is_none());
        assert!(memo.get(t0 + 1, "sipmeter").is_some());
        assert!(memo.get(t0 + 2, "sipmeter").is_some());
        assert!(memo.get(t0 + 2, "elsewhere").is_none());
        let kept = issuer.issue("sipmeter", t0 + 2);
        let (ts, tag) = kept.split_once('.').unwrap();
        let mut flipped = tag.to_owned().into_bytes();
        flipped[23] = if flipped[23] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        nonces.extend([
            format!("{ts}.{flipped}"),
            format!("0{ts}.{tag}"),
            format!("+{ts}.{tag}"),
            format!("{ts}.{tag}x"),
            format!("{ts}.{}", &tag[..23]),
            format!("{ts}."),
            ts.to_string(),
            String::new(),
            other.issue("sipmeter", t0 + 2),
            issuer.issue("elsewhere", t0 + 2),
            issuer.issue("sipmeter", t0 + 5),
            issuer.issue("sipmeter", t0 - 400),
        ]);
        for nonce in &nonces {
            for realm in ["sipmeter", "elsewhere"] {
                for now in [
                    t0 - 100,
                    t0,
                    t0 + 2,
                    t0 + 300,
                    t0 + 302,
                    t0 + 303,
                    t0 + 1000,
                ] {
                    assert_eq!(
                        issuer.check_memo(&memo, nonce, realm, now),
                        issuer.check(nonce, realm, now),
                        "{nonce} {realm} {now}"
                    );
                }
            }
        }
        // Through verify: the same verdicts with and without the memo.
        let creds = Credentials::new("alice", "wonderland");
        for t in [t0, t0 + 2] {
            let ch = issuer.challenge("sipmeter", Algorithm::Sha256, false, t);
            let ch = Challenge::parse(&ch).unwrap();
            let v = DigestClient::default().authorize(&ch, &creds, "INVITE", "sip:b@s", b"", "c");
            let a = Authorization::parse(&v).unwrap();
            for (password, now) in [("wonderland", t), ("wrong", t), ("wonderland", t + 301)] {
                assert_eq!(
                    verify_memo(&a, &issuer, &memo, "sipmeter", password, "INVITE", b"", now),
                    verify(&a, &issuer, "sipmeter", password, "INVITE", b"", now),
                    "{t} {password} {now}"
                );
            }
        }
    }

    #[test]
    fn quotes_and_backslashes_are_found_at_every_offset() {
        for len in 0..40 {
            for at in 0..=len {
                for c in [b'"', b'\\'] {
                    let mut b = vec![b'x'; len];
                    if at < len {
                        b[at] = c;
                    }
                    assert_eq!(quote_or_backslash(&b), at, "{len} {at} {c}");
                    // Bytes next to the ones looked for, and high bytes, are not taken for them.
                    let other: Vec<u8> = (0..len)
                        .map(|i| [b'!', b'#', b'[', b']', 0xa2, 0xdc][i % 6])
                        .collect();
                    assert_eq!(quote_or_backslash(&other), len);
                }
                // The same search for a parameter name's end (`=` or `,`).
                for c in [b'=', b','] {
                    let mut b: Vec<u8> = (0..len)
                        .map(|i| [b'<', b'>', b'-', b'+', 0xbd, 0xac][i % 6])
                        .collect();
                    assert_eq!(first_of_two(&b, b'=', b','), len);
                    if at < len {
                        b[at] = c;
                    }
                    assert_eq!(first_of_two(&b, b'=', b','), at, "{len} {at} {c}");
                }
            }
        }
        // Escapes at every offset of a long value read as before.
        for at in 0..40 {
            let realm = format!(
                "{}\"{}\\{}",
                "a".repeat(at),
                "b".repeat(at % 9),
                "c".repeat(40 - at)
            );
            let v = DigestClient::default().authorize(
                &Challenge::parse(&format!("Digest realm=\"{}\", nonce=\"n\"", quote(&realm)))
                    .unwrap(),
                &Credentials::new("u", "p"),
                "REGISTER",
                "sip:r",
                b"",
                "c",
            );
            let a = Authorization::parse(&v).unwrap();
            assert_eq!(a.realm, realm);
            assert_eq!(a.nonce, "n");
        }
    }

    /// The parameter reader as it was before it handed values to a callback (26fa152): a
    /// `Vec` of every pair, looked up by name (first one wins) afterwards.
    fn reference_params(s: &str) -> Result<Vec<(&str, Cow<'_, str>)>, AuthError> {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            while i < b.len() && matches!(b[i], b' ' | b'\t' | b',' | b'\r' | b'\n') {
                i += 1;
            }
            if i >= b.len() {
                return Ok(out);
            }
            let start = i;
            while i < b.len() && b[i] != b'=' && b[i] != b',' {
                i += 1;
            }
            if i >= b.len() || b[i] != b'=' {
                return Err(AuthError::BadParam);
            }
            let name = s[start..i].trim();
            if name.is_empty() || name.contains([' ', '\t', '"']) {
                return Err(AuthError::BadParam);
            }
            i += 1;
            while i < b.len() && matches!(b[i], b' ' | b'\t') {
                i += 1;
            }
            let value: Cow<'_, str> = if i < b.len() && b[i] == b'"' {
                i += 1;
                let start = i;
                let mut escaped: Option<Vec<u8>> = None;
                loop {
                    match b.get(i) {
                        None => return Err(AuthError::UnterminatedQuote),
                        Some(b'\\') => {
                            let v = escaped.get_or_insert_with(|| b[start..i].to_vec());
                            if let Some(&c) = b.get(i + 1) {
                                v.push(c);
                            }
                            i += 2;
                        }
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(&c) => {
                            if let Some(v) = escaped.as_mut() {
                                v.push(c);
                            }
                            i += 1;
                        }
                    }
                }
                match escaped {
                    Some(v) => String::from_utf8_lossy(&v).into_owned().into(),
                    None => s[start..i - 1].into(),
                }
            } else {
                let start = i;
                while i < b.len() && b[i] != b',' {
                    i += 1;
                }
                s[start..i].trim().into()
            };
            out.push((name, value));
        }
    }

    /// Parameters read without a `Vec` are the ones the `Vec` reader gave, for generated
    /// headers full of what a peer may send: quotes, escapes (also before a multi-byte
    /// character and at the very end), commas and `=` inside quotes, duplicate and empty
    /// names and values, upper case, non-ASCII, and values long enough for the
    /// eight-bytes-at-a-time quote scan (RFC 7616 §3.4: the first of duplicates is kept).
    /// No input panics.
    #[test]
    fn parameters_read_in_place_are_the_ones_read_into_a_list() {
        const PIECES: [&str; 29] = [
            "username",
            "USERNAME",
            "realm",
            "nonce",
            "uri",
            "response",
            "qop",
            "nc",
            "cnonce",
            "algorithm",
            "opaque",
            "=",
            ",",
            " ",
            "\"",
            "\\",
            "\\\"",
            "a",
            "é",
            "\\é",
            "auth",
            "xxxxxxxxxxxxxxxxxxx",
            "\t",
            "\r\n",
            // White space `str::trim` trims that is not SP/HT/CR/LF.
            "\u{a0}",
            "\u{3000}",
            "\u{b}",
            "\u{c}",
            "\u{85}",
        ];
        const NAMES: [&str; 10] = [
            "username",
            "realm",
            "nonce",
            "uri",
            "response",
            "algorithm",
            "qop",
            "cnonce",
            "nc",
            "opaque",
        ];
        // xorshift64*: deterministic, no dependency.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let mut parsed = 0;
        for round in 0..30_000 {
            let mut s = String::new();
            // Mostly well-formed `name="value", ` lists with odd values; sometimes noise.
            for _ in 0..(next() % 8) {
                if round % 3 == 0 {
                    s.push_str(PIECES[(next() % 29) as usize]);
                    continue;
                }
                s.push_str(NAMES[(next() % 10) as usize]);
                s.push('=');
                let quoted = next() % 2 == 0;
                if quoted {
                    s.push('"');
                }
                for _ in 0..(next() % 6) {
                    s.push_str(PIECES[(next() % 29) as usize]);
                }
                if quoted && next() % 8 != 0 {
                    s.push('"');
                }
                s.push_str(", ");
            }
            let want = reference_params(&s);
            let mut got = Vec::new();
            let r = parse_params(&s, |n, v| got.push((n, v)));
            match (&want, r) {
                (Ok(w), Ok(())) => {
                    assert_eq!(&got, w, "{s:?}");
                    parsed += 1;
                    let mut slots = Default::default();
                    parse_params(&s, keep_first(&NAMES, &mut slots)).unwrap();
                    for (name, slot) in NAMES.iter().zip(&slots) {
                        let first = w
                            .iter()
                            .find(|(n, _)| n.eq_ignore_ascii_case(name))
                            .map(|(_, v)| v);
                        assert_eq!(slot.as_ref(), first, "{name} in {s:?}");
                    }
                }
                (Err(w), Err(g)) => assert_eq!(*w, g, "{s:?}"),
                (w, g) => panic!("{s:?}: before {w:?}, now {g:?}"),
            }
            // The public readers never panic on it either.
            let _ = Authorization::parse(&format!("Digest {s}"));
            let _ = Challenge::parse(&format!("Digest {s}"));
        }
        assert!(parsed > 10_000, "only {parsed} inputs parsed");
    }

    /// The trim's shortcut gives what `str::trim` gives, and the scheme is split where the
    /// char search split it, for every string of up to three characters from a set holding
    /// every kind of white space `char::is_whitespace` knows (ASCII and not), ASCII letters,
    /// a control character and non-ASCII letters.
    #[test]
    fn the_trim_shortcut_and_the_scheme_split_are_the_char_searches() {
        const CHARS: [char; 14] = [
            ' ', '\t', '\n', '\u{b}', '\u{c}', '\r', '\u{1c}', '\u{85}', '\u{a0}', '\u{3000}', 'a',
            'D', 'é', '"',
        ];
        let mut strings = vec![String::new()];
        for len in 1..=3u32 {
            for mut k in 0..CHARS.len().pow(len) {
                let mut s = String::new();
                for _ in 0..len {
                    s.push(CHARS[k % CHARS.len()]);
                    k /= CHARS.len();
                }
                strings.push(s);
            }
        }
        for s in &strings {
            assert_eq!(trim_unicode(s), s.trim(), "{s:?}");
            for value in [s.clone(), format!("Digest{s}"), format!("{s}digest{s}x=1")] {
                let v = value.trim();
                let rest = v.split_once([' ', '\t']).map_or("", |(scheme, rest)| {
                    if scheme.eq_ignore_ascii_case("digest") {
                        rest
                    } else {
                        ""
                    }
                });
                let was = if v
                    .split_once([' ', '\t'])
                    .map_or(v, |(scheme, _)| scheme)
                    .eq_ignore_ascii_case("digest")
                {
                    Ok(rest)
                } else {
                    Err(AuthError::NotDigest)
                };
                assert_eq!(split_scheme(&value), was, "{value:?}");
            }
        }
    }

    #[test]
    fn hashing_in_pieces_is_hashing_the_joined_text() {
        for alg in [Algorithm::Md5, Algorithm::Sha256, Algorithm::Sha512_256] {
            // Around the stack buffer's size, and past it.
            for len in [0, 1, 100, 254, 255, 256, 257, 300, 600] {
                let big = "x".repeat(len);
                let parts: [&[u8]; 4] = [b"a", big.as_bytes(), b"", b"tail"];
                let joined = format!("a:{big}::tail");
                let got = match alg {
                    Algorithm::Md5 => digest_hex::<Md5>(&parts),
                    Algorithm::Sha256 => digest_hex::<Sha256>(&parts),
                    _ => digest_hex::<Sha512_256>(&parts),
                };
                assert_eq!(got.as_str(), alg.hash(joined.as_bytes()), "{alg:?} {len}");
            }
        }
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    #[test]
    fn ephemeral_credentials() {
        let secret = b"run secret";
        let (user, pw) = ephemeral::issue(secret, "run42-ep7", 2_000);
        assert_eq!(user, "2000:run42-ep7");
        assert_eq!(
            ephemeral::expected_password(secret, &user, 1_999),
            Ok(pw.clone())
        );
        assert_eq!(
            ephemeral::expected_password(secret, &user, 2_001),
            Err(ephemeral::EphemeralError::Expired)
        );
        assert_eq!(
            ephemeral::expected_password(secret, "nocolon", 0),
            Err(ephemeral::EphemeralError::Malformed)
        );
        assert_ne!(
            ephemeral::expected_password(b"other", &user, 0).unwrap(),
            pw,
            "another secret gives another password"
        );
        assert!(!format!("{:?}", Credentials::new("u", "hunter2")).contains("hunter2"));
    }

    #[test]
    fn a_prepared_checker_expects_the_same_passwords() {
        for secret in [&b"s3cret"[..], b"", &[7u8; 100][..]] {
            let checker = ephemeral::Checker::new(secret);
            for user in [
                "2000:run42-ep7",
                "5:x",
                "9999999999:a:b",
                "nocolon",
                "x:y",
                "3:",
            ] {
                for now in [0, 1_999, 2_001] {
                    assert_eq!(
                        checker.expected_password(user, now),
                        ephemeral::expected_password(secret, user, now),
                        "{user} at {now}"
                    );
                    assert_eq!(
                        checker.expected(user, now).map(|p| p.expose().to_owned()),
                        ephemeral::expected_password(secret, user, now),
                        "{user} at {now}"
                    );
                }
            }
            let (user, pw) = ephemeral::issue(secret, "id", 10);
            assert_eq!(checker.expected_password(&user, 10).unwrap(), pw);
        }
    }
}
