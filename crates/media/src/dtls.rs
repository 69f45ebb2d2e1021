//! DTLS-SRTP (RFC 5764, RFC 5763): the DTLS handshake on the RTP 5-tuple that keys SRTP,
//! sans-IO over [`dimpl`] (DTLS 1.2 and 1.3, RustCrypto).
//!
//! [`DtlsSrtp`] takes datagrams ([`DtlsSrtp::handle_datagram`]) and timer instants
//! ([`DtlsSrtp::handle_timeout`]), each with `now`; it gives datagrams to send
//! ([`DtlsSrtp::poll_datagram`]), its next timer ([`DtlsSrtp::poll_timeout`]) and, once the
//! handshake is done and the peer's certificate matched the SDP's `a=fingerprint`
//! (RFC 5763 §5), the SRTP keys ([`DtlsSrtp::take_keys`]) exported with the label
//! "EXTRACTOR-dtls_srtp" (RFC 5764 §4.2). No clock reads, no I/O.
//!
//! Certificates ([`DtlsIdentity`]): self-signed ECDSA P-256 (dimpl has ECDHE_ECDSA suites
//! only), made by the caller once (per run in the agent) and shared by every call.
//!
//! Demultiplexing (RFC 7983 §7): a datagram whose first byte is 20–63 is DTLS
//! ([`is_dtls`]), 128–191 RTP/RTCP.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dimpl::{Config, Dtls, DtlsCertificate, Output, SrtpProfile};
use sha1::Sha1;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

use crate::srtp::{MasterKey, SrtpParams, Suite};

/// RFC 7983 §7: the first byte of a DTLS record is 20–63.
pub fn is_dtls(datagram: &[u8]) -> bool {
    matches!(datagram.first(), Some(20..=63))
}

/// A certificate fingerprint's hash (RFC 4572 §5, RFC 8122 §5: the names of the IANA
/// "Hash Function Textual Names" registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFunction {
    /// `sha-1` (legacy peers).
    Sha1,
    /// `sha-224`.
    Sha224,
    /// `sha-256` (what we send, RFC 8122 §5: SHA-256 is the must).
    Sha256,
    /// `sha-384`.
    Sha384,
    /// `sha-512`.
    Sha512,
}

impl HashFunction {
    /// The SDP name.
    pub fn name(self) -> &'static str {
        match self {
            HashFunction::Sha1 => "sha-1",
            HashFunction::Sha224 => "sha-224",
            HashFunction::Sha256 => "sha-256",
            HashFunction::Sha384 => "sha-384",
            HashFunction::Sha512 => "sha-512",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [
            HashFunction::Sha1,
            HashFunction::Sha224,
            HashFunction::Sha256,
            HashFunction::Sha384,
            HashFunction::Sha512,
        ]
        .into_iter()
        .find(|h| h.name().eq_ignore_ascii_case(name))
    }

    fn digest(self, der: &[u8]) -> Vec<u8> {
        match self {
            HashFunction::Sha1 => Sha1::digest(der).to_vec(),
            HashFunction::Sha224 => Sha224::digest(der).to_vec(),
            HashFunction::Sha256 => Sha256::digest(der).to_vec(),
            HashFunction::Sha384 => Sha384::digest(der).to_vec(),
            HashFunction::Sha512 => Sha512::digest(der).to_vec(),
        }
    }
}

/// An `a=fingerprint` value (RFC 8122 §5): hash function and the certificate's digest.
#[derive(Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// The hash.
    pub hash: HashFunction,
    /// The digest of the DER certificate.
    pub digest: Vec<u8>,
}

/// Why an `a=fingerprint` value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FingerprintError {
    /// Not `hash-func SP XX:XX:…`.
    #[error("malformed a=fingerprint {0:?} (RFC 8122 §5: hash-func SP XX:XX:..)")]
    Malformed(String),
    /// A hash we do not know.
    #[error("unknown fingerprint hash {0:?} (we know sha-1, sha-224, sha-256, sha-384, sha-512)")]
    UnknownHash(String),
}

impl Fingerprint {
    /// The fingerprint of a DER certificate under `hash`.
    pub fn of(hash: HashFunction, der: &[u8]) -> Self {
        Fingerprint {
            hash,
            digest: hash.digest(der),
        }
    }

    /// Parses `sha-256 AB:CD:…` (RFC 8122 §5; hex case-insensitive). Never panics.
    pub fn parse(value: &str) -> Result<Self, FingerprintError> {
        let bad = || FingerprintError::Malformed(value.chars().take(120).collect());
        let mut it = value.split_ascii_whitespace();
        let (Some(name), Some(hex), None) = (it.next(), it.next(), it.next()) else {
            return Err(bad());
        };
        let hash = HashFunction::from_name(name)
            .ok_or_else(|| FingerprintError::UnknownHash(name.into()))?;
        let digest = hex
            .split(':')
            .map(|b| {
                (b.len() == 2)
                    .then(|| u8::from_str_radix(b, 16).ok())
                    .flatten()
            })
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(bad)?;
        if digest.len() != hash.digest(&[]).len() {
            return Err(bad());
        }
        Ok(Fingerprint { hash, digest })
    }

    /// Whether `der` is the certificate this fingerprint names.
    pub fn matches(&self, der: &[u8]) -> bool {
        self.hash.digest(der) == self.digest
    }
}

impl fmt::Display for Fingerprint {
    /// The SDP value: `sha-256 AB:CD:…` (upper-case hex, RFC 8122 §5).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hash.name())?;
        for (i, b) in self.digest.iter().enumerate() {
            write!(f, "{}{b:02X}", if i == 0 { ' ' } else { ':' })?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// Our certificate and key, and the certificate's SHA-256 fingerprint for the SDP. `Debug`
/// never shows the key.
pub struct DtlsIdentity {
    cert: DtlsCertificate,
    fingerprint: Fingerprint,
}

impl DtlsIdentity {
    /// A fresh self-signed ECDSA P-256 certificate (RFC 5763 §5: self-signed is the norm,
    /// the fingerprint in the signalling is what authenticates it). ≈ 0.1 ms of CPU: make it
    /// once and share it ([`Arc`]).
    pub fn generate() -> Result<Self, String> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| format!("cannot generate the DTLS key: {e}"))?;
        let params = rcgen::CertificateParams::new(vec!["sipmeter".to_string()])
            .map_err(|e| format!("cannot make the DTLS certificate: {e}"))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| format!("cannot sign the DTLS certificate: {e}"))?;
        Ok(Self::from_der(cert.der().to_vec(), key.serialize_der()))
    }

    /// From a DER certificate and its PKCS#8 (or SEC1) DER private key.
    pub fn from_der(certificate: Vec<u8>, private_key: Vec<u8>) -> Self {
        let fingerprint = Fingerprint::of(HashFunction::Sha256, &certificate);
        DtlsIdentity {
            cert: DtlsCertificate {
                certificate,
                private_key,
            },
            fingerprint,
        }
    }

    /// The SHA-256 fingerprint of our certificate.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }
}

impl fmt::Debug for DtlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DtlsIdentity({})", self.fingerprint)
    }
}

impl PartialEq for DtlsIdentity {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl Eq for DtlsIdentity {}

/// `a=setup` (RFC 4145 §4, RFC 5763 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// Opens the connection: the DTLS client.
    Active,
    /// Waits: the DTLS server.
    Passive,
    /// Either (an offer's only legal value under RFC 5763 §5).
    ActPass,
    /// No connection now.
    HoldConn,
}

impl Setup {
    /// The SDP value.
    pub fn as_str(self) -> &'static str {
        match self {
            Setup::Active => "active",
            Setup::Passive => "passive",
            Setup::ActPass => "actpass",
            Setup::HoldConn => "holdconn",
        }
    }

    /// From the SDP value (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        [
            Setup::Active,
            Setup::Passive,
            Setup::ActPass,
            Setup::HoldConn,
        ]
        .into_iter()
        .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// What offer/answer settled for DTLS-SRTP: our identity, the peer's fingerprint and our
/// role. A media session with it runs the handshake ([`DtlsSrtp`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtlsParams {
    /// Our certificate.
    pub identity: Arc<DtlsIdentity>,
    /// The peer's `a=fingerprint`: its certificate must match it.
    pub remote: Fingerprint,
    /// We are the DTLS client (`a=setup:active` on our side).
    pub active: bool,
}

/// What a call's DTLS did, for the report.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DtlsSummary {
    /// We were the client.
    pub active: bool,
    /// "DTLS1.2" or "DTLS1.3" once known.
    pub version: Option<&'static str>,
    /// The SRTP suite the handshake chose.
    pub suite: Option<&'static str>,
    /// From our first handshake datagram sent (client) or received (server) to the keys.
    pub handshake: Option<Duration>,
    /// Handshake datagrams sent (retransmissions included) and received.
    pub sent: u64,
    /// Handshake datagrams received.
    pub received: u64,
    /// Why there are no keys (`None`: keyed, or still running).
    pub failure: Option<String>,
}

enum State {
    Handshaking,
    Keyed,
    Failed,
}

/// One DTLS-SRTP association (one per call: rtcp-mux is required, RFC 5764 §4.1 then needs
/// one handshake for the RTP and RTCP it carries).
pub struct DtlsSrtp {
    dtls: Dtls,
    remote: Fingerprint,
    state: State,
    peer_ok: Option<bool>,
    keys: Option<SrtpParams>,
    out: std::collections::VecDeque<Vec<u8>>,
    timeout: Option<Instant>,
    last_now: Instant,
    began: Option<Instant>,
    buf: Vec<u8>,
    summary: DtlsSummary,
}

impl fmt::Debug for DtlsSrtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsSrtp")
            .field("dtls", &self.dtls)
            .field("summary", &self.summary)
            .finish()
    }
}

/// How long a handshake may take in all (dimpl's default is 40 s; a call's setup budget is
/// shorter): 10 s, with retransmissions from 1 s doubling (RFC 6347 §4.2.4.1).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn config() -> Arc<Config> {
    // The server sends no cookie exchange (RFC 6347 §4.2.1 makes it optional): the peer is
    // the one the signalling named, and the cookie round trip would add an RTT to every
    // call's silent start. Client certificates are required (dimpl's default; RFC 5763 §5).
    Arc::new(
        Config::builder()
            .use_server_cookie(false)
            .handshake_timeout(HANDSHAKE_TIMEOUT)
            .build()
            // This is ok because both durations are non-zero and below dimpl's maximum.
            .expect("static DTLS config is valid"),
    )
}

impl DtlsSrtp {
    /// Starts the association at `now`: a client sends its ClientHello at once.
    pub fn new(p: &DtlsParams, now: Instant) -> Self {
        // DTLS 1.3 or 1.2, whichever the peer speaks (RFC 9147; VoIP peers speak 1.2).
        let mut dtls = Dtls::new_auto(config(), p.identity.cert.clone(), now);
        if p.active {
            dtls.set_active(true);
        }
        let mut s = DtlsSrtp {
            dtls,
            remote: p.remote.clone(),
            state: State::Handshaking,
            peer_ok: None,
            keys: None,
            out: Default::default(),
            timeout: None,
            last_now: now,
            began: None,
            buf: vec![0; 2048],
            summary: DtlsSummary {
                active: p.active,
                ..DtlsSummary::default()
            },
        };
        let r = s.dtls.handle_timeout(now);
        s.after(now, r);
        s
    }

    /// A DTLS datagram from the peer ([`is_dtls`]) at `now`.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        let now = self.clock(now);
        if matches!(self.state, State::Failed) {
            return;
        }
        self.summary.received += 1;
        self.began.get_or_insert(now);
        // dimpl wants its logical clock refreshed before a packet at a new instant.
        let r = self
            .dtls
            .handle_timeout(now)
            .and_then(|()| self.dtls.handle_packet(datagram));
        self.after(now, r);
    }

    /// The timer of [`Self::poll_timeout`] fired (or any later instant).
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock(now);
        if matches!(self.state, State::Failed) {
            return;
        }
        if self.timeout.is_some_and(|t| t <= now) {
            let r = self.dtls.handle_timeout(now);
            self.after(now, r);
        }
    }

    /// dimpl wants instants that never go back (arrival stamps may be older than a timer
    /// already handled).
    fn clock(&mut self, now: Instant) -> Instant {
        self.last_now = self.last_now.max(now);
        self.last_now
    }

    fn fail(&mut self, why: String) {
        self.state = State::Failed;
        self.out.clear();
        self.timeout = None;
        self.summary.failure.get_or_insert(why);
    }

    fn after(&mut self, now: Instant, r: Result<(), dimpl::Error>) {
        if let Err(e) = r {
            // RFC 6347 §4.1.2.7: every error dimpl returns is fatal to the association.
            let why = format!("DTLS handshake failed: {e}");
            self.fail(why);
            return;
        }
        self.timeout = None;
        loop {
            match self.dtls.poll_output(&mut self.buf) {
                Output::Packet(p) => {
                    if matches!(self.state, State::Failed) {
                        continue;
                    }
                    self.summary.sent += 1;
                    self.began.get_or_insert(now);
                    self.out.push_back(p.to_vec());
                }
                Output::BufferTooSmall { needed } => self.buf.resize(needed, 0),
                Output::Timeout(t) => {
                    if matches!(self.state, State::Handshaking) {
                        self.timeout = Some(t);
                    }
                    break;
                }
                Output::PeerCert(der) => {
                    let ok = self.remote.matches(der);
                    self.peer_ok = Some(ok);
                    if !ok {
                        // RFC 5763 §5: the certificate must match the signalled fingerprint.
                        let seen = Fingerprint::of(self.remote.hash, der);
                        self.fail(format!(
                            "DTLS peer certificate does not match the SDP a=fingerprint \
                             (RFC 5763 §5): the SDP says {}, the certificate is {seen}",
                            self.remote
                        ));
                    }
                }
                Output::KeyingMaterial(km, profile) => self.keyed(now, &km, profile),
                Output::CloseNotify if matches!(self.state, State::Handshaking) => {
                    self.fail("the peer closed DTLS (close_notify) before the keys".into());
                }
                _ => {}
            }
        }
        if matches!(self.state, State::Handshaking) && self.dtls.is_closed() {
            self.fail("DTLS closed before the handshake ended".into());
        }
    }

    fn keyed(&mut self, now: Instant, km: &[u8], profile: SrtpProfile) {
        if !matches!(self.state, State::Handshaking) {
            return;
        }
        if self.peer_ok != Some(true) {
            self.fail("DTLS handshake ended without the peer's certificate".into());
            return;
        }
        self.summary.version = self.dtls.protocol_version().map(|v| match v {
            dimpl::ProtocolVersion::DTLS1_3 => "DTLS1.3",
            _ => "DTLS1.2",
        });
        let Some(keys) = split_keys(km, profile, self.summary.active) else {
            self.fail(format!(
                "the DTLS handshake chose the SRTP profile {profile} ({} bytes of keys), which \
                 this build's SRTP does not run",
                km.len()
            ));
            return;
        };
        self.summary.suite = Some(keys.suite.name());
        self.summary.handshake = Some(now.saturating_duration_since(self.began.unwrap_or(now)));
        self.keys = Some(keys);
        self.state = State::Keyed;
        self.timeout = None;
    }

    /// The next datagram to send to the peer's RTP address.
    pub fn poll_datagram(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// Whether datagrams wait in [`Self::poll_datagram`].
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// The latest instant handled: datagrams waiting are due then.
    pub fn now(&self) -> Instant {
        self.last_now
    }

    /// When [`Self::handle_timeout`] must run (a retransmission or the handshake's end).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timeout
    }

    /// The SRTP keys, once (the handshake is done and the peer's certificate matched).
    pub fn take_keys(&mut self) -> Option<SrtpParams> {
        self.keys.take()
    }

    /// Still handshaking (no keys, no failure).
    pub fn handshaking(&self) -> bool {
        matches!(self.state, State::Handshaking)
    }

    /// What happened so far.
    pub fn summary(&self) -> &DtlsSummary {
        &self.summary
    }
}

/// The SRTP suite of a dimpl profile (RFC 5764 §4.1.2, RFC 7714 §14.2).
fn suite_of(profile: SrtpProfile) -> Option<Suite> {
    Suite::from_dtls_profile(match profile {
        SrtpProfile::AES128_CM_SHA1_80 => 0x0001,
        SrtpProfile::AEAD_AES_128_GCM => 0x0007,
        SrtpProfile::AEAD_AES_256_GCM => 0x0008,
        _ => return None,
    })
}

/// RFC 5764 §4.2: the exported block is client key ‖ server key ‖ client salt ‖ server salt;
/// the client's key and salt protect what the client sends. `None` for a profile our SRTP
/// does not run, or a block of the wrong length.
pub fn split_keys(km: &[u8], profile: SrtpProfile, active: bool) -> Option<SrtpParams> {
    let suite = suite_of(profile)?;
    let (k, s) = (suite.key_len(), suite.salt_len());
    if km.len() != 2 * (k + s) {
        return None;
    }
    let key = |i: usize| {
        let mut b = km[i * k..(i + 1) * k].to_vec();
        b.extend_from_slice(&km[2 * k + i * s..2 * k + (i + 1) * s]);
        MasterKey::new(suite, &b)
    };
    let (client, server) = (key(0)?, key(1)?);
    let (tx_key, rx_key) = if active {
        (client, server)
    } else {
        (server, client)
    };
    Some(SrtpParams {
        suite,
        tx_key,
        rx_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Arc<DtlsIdentity> {
        Arc::new(DtlsIdentity::generate().unwrap())
    }

    /// An end with `me`'s certificate told `told` is the peer's fingerprint.
    fn end(me: &Arc<DtlsIdentity>, told: &Fingerprint, active: bool, now: Instant) -> DtlsSrtp {
        let p = DtlsParams {
            identity: me.clone(),
            remote: told.clone(),
            active,
        };
        DtlsSrtp::new(&p, now)
    }

    fn pair(a: &Arc<DtlsIdentity>, b: &Arc<DtlsIdentity>, now: Instant) -> (DtlsSrtp, DtlsSrtp) {
        (
            end(a, b.fingerprint(), true, now),
            end(b, a.fingerprint(), false, now),
        )
    }

    /// Runs both ends with a one-way delay, dropping the datagrams `drop` says to; returns
    /// when both are done or 20 s passed.
    fn run(
        c: &mut DtlsSrtp,
        s: &mut DtlsSrtp,
        t0: Instant,
        delay: Duration,
        mut drop: impl FnMut(u64) -> bool,
    ) -> Instant {
        let mut now = t0;
        let mut wire: Vec<(Instant, bool, Vec<u8>)> = Vec::new();
        let mut n = 0;
        while now < t0 + Duration::from_secs(20) && (c.handshaking() || s.handshaking()) {
            for (to_server, e) in [(true, &mut *c), (false, &mut *s)] {
                e.handle_timeout(now);
                while let Some(d) = e.poll_datagram() {
                    n += 1;
                    if !drop(n) {
                        wire.push((now + delay, to_server, d));
                    }
                }
            }
            let (due, later): (Vec<_>, Vec<_>) = wire.into_iter().partition(|w| w.0 <= now);
            wire = later;
            for (_, to_server, d) in due {
                assert!(is_dtls(&d));
                if to_server {
                    s.handle_datagram(now, &d);
                } else {
                    c.handle_datagram(now, &d);
                }
            }
            now += Duration::from_millis(1);
        }
        now
    }

    #[test]
    fn fingerprints_parse_print_and_refuse_garbage() {
        let id = identity();
        let f = id.fingerprint().clone();
        let text = f.to_string();
        assert!(text.starts_with("sha-256 "), "{text}");
        assert_eq!(text.len(), "sha-256 ".len() + 32 * 3 - 1);
        assert_eq!(Fingerprint::parse(&text), Ok(f.clone()));
        assert_eq!(Fingerprint::parse(&text.to_lowercase()), Ok(f.clone()));
        assert!(f.matches(&id.cert.certificate));
        for bad in [
            "",
            "sha-256",
            "sha-256 AB:CD",
            "sha-256 zz:",
            "sha-256 A:BC",
            "x y z",
        ] {
            assert!(Fingerprint::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Fingerprint::parse("md5 AB:CD"),
            Err(FingerprintError::UnknownHash("md5".into()))
        );
        let sha1 = Fingerprint::of(HashFunction::Sha1, &id.cert.certificate);
        assert_eq!(Fingerprint::parse(&sha1.to_string()), Ok(sha1));
    }

    #[test]
    fn a_handshake_keys_both_sides_crosswise() {
        let (a, b) = (identity(), identity());
        let t0 = Instant::now();
        let (mut c, mut s) = pair(&a, &b, t0);
        run(&mut c, &mut s, t0, Duration::from_millis(5), |_| false);
        let (kc, ks) = (c.take_keys().unwrap(), s.take_keys().unwrap());
        // dimpl 0.9 offers and prefers AEAD_AES_256_GCM (not configurable).
        assert_eq!(kc.suite, Suite::AeadAes256Gcm);
        assert_eq!(kc.tx_key, ks.rx_key);
        assert_eq!(kc.rx_key, ks.tx_key);
        assert_ne!(kc.tx_key, kc.rx_key);
        assert!(c.take_keys().is_none(), "keys are given once");
        let (sc, ss) = (c.summary(), s.summary());
        assert_eq!((sc.active, ss.active), (true, false));
        assert_eq!(sc.version, Some("DTLS1.3"));
        assert_eq!(sc.suite, Some("AEAD_AES_256_GCM"));
        // DTLS 1.3 without a cookie: one round trip (10 ms) for each, no retransmission.
        for hs in [sc.handshake.unwrap(), ss.handshake.unwrap()] {
            assert!(
                hs >= Duration::from_millis(10) && hs < Duration::from_millis(30),
                "{hs:?}"
            );
        }
        assert_eq!((sc.failure.as_deref(), ss.failure.as_deref()), (None, None));
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn lost_flights_are_sent_again_on_the_timer() {
        let (a, b) = (identity(), identity());
        let t0 = Instant::now();
        let (mut c, mut s) = pair(&a, &b, t0);
        // The first two datagrams on the wire are lost: the client's hello goes again
        // after the 1 s initial timer (RFC 6347 §4.2.4.1).
        run(&mut c, &mut s, t0, Duration::from_millis(5), |n| n <= 1);
        assert!(c.take_keys().is_some() && s.take_keys().is_some());
        let hs = c.summary().handshake.unwrap();
        assert!(hs >= Duration::from_millis(700), "{hs:?}");
        assert!(c.summary().sent >= 3, "{:?}", c.summary());
    }

    #[test]
    fn a_certificate_that_is_not_the_sdps_gives_no_keys_and_names_both() {
        let (a, b, other) = (identity(), identity(), identity());
        let t0 = Instant::now();
        // The client was told the server's fingerprint is `other`'s.
        let mut c = end(&a, other.fingerprint(), true, t0);
        let mut s = end(&b, a.fingerprint(), false, t0);
        run(&mut c, &mut s, t0, Duration::from_millis(5), |_| false);
        assert!(c.take_keys().is_none());
        let why = c.summary().failure.clone().unwrap();
        assert!(why.contains(&other.fingerprint().to_string()), "{why}");
        assert!(why.contains(&b.fingerprint().to_string()), "{why}");
        // The server never gets the client's Finished: it gives up at the handshake timeout.
        assert!(s.take_keys().is_none());
    }

    #[test]
    fn garbage_in_the_dtls_range_never_panics() {
        let (a, b) = (identity(), identity());
        let t0 = Instant::now();
        let (mut c, mut s) = pair(&a, &b, t0);
        let mut x: u32 = 12345;
        for i in 0..2000u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let len = (x >> 8) as usize % 200;
            let mut d: Vec<u8> = (0..len).map(|j| (x >> (j % 24)) as u8).collect();
            if let Some(f) = d.first_mut() {
                *f = 20 + (i % 44) as u8;
            }
            let now = t0 + Duration::from_millis(u64::from(i));
            c.handle_datagram(now, &d);
            s.handle_datagram(now, &d);
        }
        assert!(c.take_keys().is_none() && s.take_keys().is_none());
    }

    #[test]
    fn setup_values() {
        for s in [
            Setup::Active,
            Setup::Passive,
            Setup::ActPass,
            Setup::HoldConn,
        ] {
            assert_eq!(Setup::parse(s.as_str()), Some(s));
        }
        assert_eq!(Setup::parse("ACTPASS"), Some(Setup::ActPass));
        assert_eq!(Setup::parse("both"), None);
    }

    #[test]
    fn keys_split_per_rfc_5764_4_2() {
        let km: Vec<u8> = (0..60).collect();
        let c = split_keys(&km, SrtpProfile::AES128_CM_SHA1_80, true).unwrap();
        let mut want = [0u8; 30];
        want[..16].copy_from_slice(&km[..16]);
        want[16..].copy_from_slice(&km[32..46]);
        assert_eq!(c.tx_key, MasterKey::from_bytes(want));
        want[..16].copy_from_slice(&km[16..32]);
        want[16..].copy_from_slice(&km[46..60]);
        assert_eq!(c.rx_key, MasterKey::from_bytes(want));
        let s = split_keys(&km, SrtpProfile::AES128_CM_SHA1_80, false).unwrap();
        assert_eq!((s.tx_key, s.rx_key), (c.rx_key, c.tx_key));
        assert!(split_keys(&km[..59], SrtpProfile::AES128_CM_SHA1_80, true).is_none());
        // AEAD_AES_128_GCM: 16-byte keys, 12-byte salts (RFC 7714 §12): 56 bytes.
        assert!(split_keys(&km, SrtpProfile::AEAD_AES_128_GCM, true).is_none());
        let g = split_keys(&km[..56], SrtpProfile::AEAD_AES_128_GCM, true).unwrap();
        assert_eq!(g.suite, Suite::AeadAes128Gcm);
        let want: Vec<u8> = (0..16).chain(32..44).collect();
        assert_eq!(g.tx_key.as_bytes(), &want[..]);
        let km: Vec<u8> = (0..88).collect();
        let g = split_keys(&km, SrtpProfile::AEAD_AES_256_GCM, false).unwrap();
        let want: Vec<u8> = (32..64).chain(76..88).collect();
        assert_eq!(g.tx_key.as_bytes(), &want[..]);
    }
}
