//! SRTP and SRTCP (RFC 3711) with keys from SDES (RFC 4568) or DTLS-SRTP, sans-IO.
//!
//! Six crypto suites ([`Suite`]): the AES counter-mode ones with an HMAC-SHA1 tag —
//! `AES_CM_128_HMAC_SHA1_80` (the mandatory one, RFC 4568 §6.2.1), `AES_CM_128_HMAC_SHA1_32`
//! (§6.2.2: a 32-bit tag on SRTP only, SRTCP keeps its 80-bit tag) and their 256-bit
//! forms `AES_256_CM_HMAC_SHA1_80` / `_32` (RFC 6188: AES-256 counter mode, its
//! `AES_256_CM_PRF` key derivation) — and the AEAD ones, `AEAD_AES_128_GCM` and
//! `AEAD_AES_256_GCM` (RFC 7714: AES-GCM with a 16-byte tag, the RTP header as associated
//! data, a 12-byte salt). The key derivation rate is 0 (RFC 3711 §4.3.1: session keys are
//! derived once). One master key per direction, with or without an MKI ([`Mki`], RFC 3711
//! §3.1): when the SDP gave one, every packet carries it (before the HMAC tag, after the
//! AES-GCM one) and a received packet with another is refused ([`SrtpError::UnknownMki`]).
//!
//! How to drive it: an [`SrtpContext`] per call holds what we send ([`SrtpContext::tx`],
//! our master key) and what we receive ([`SrtpContext::rx`], the peer's). Each RTP or RTCP
//! packet built goes through [`SrtpStream::protect_rtp`] / [`SrtpStream::protect_rtcp`]
//! (the tag, and for SRTCP the E flag and index, appended to the caller's buffer, whose
//! capacity is reused: no allocation per packet); each one received through
//! [`SrtpStream::unprotect_rtp`] / [`SrtpStream::unprotect_rtcp`] (decrypted in place; the
//! plain length returned). No clock, no I/O, no randomness: the master keys are given.
//!
//! The AES-CM keystream is RustCrypto's `ctr` over `aes` (AES-NI picked at run time), the
//! tag RustCrypto's `hmac` + `sha1`, AES-GCM RustCrypto's `aes-gcm` (same `aes`; GHASH with
//! CLMUL picked at run time); the session keys' AES schedules, the GHASH key and the keyed
//! HMAC state are computed once per context and borrowed or copied per packet.

use std::fmt;

use aes::cipher::consts::U12;
use aes::cipher::{InnerIvInit, KeyInit, StreamCipher};
use aes::{Aes128Enc, Aes256Enc};
use aes_gcm::{AesGcm, aead::AeadInOut};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

/// An SRTP crypto suite (RFC 4568 §6.2, RFC 6188 §6, RFC 7714 §14.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suite {
    /// AES-GCM, 256-bit key, 16-byte tag, 12-byte salt (RFC 7714).
    AeadAes256Gcm,
    /// AES-GCM, 128-bit key, 16-byte tag, 12-byte salt (RFC 7714).
    AeadAes128Gcm,
    /// AES-CM 256-bit key, HMAC-SHA1 80-bit tag (RFC 6188).
    AesCm256HmacSha1_80,
    /// AES-CM 256-bit key, HMAC-SHA1 32-bit tag on SRTP, 80 bits on SRTCP (RFC 6188).
    AesCm256HmacSha1_32,
    /// AES-CM 128-bit key, HMAC-SHA1 80-bit tag (the mandatory suite).
    AesCm128HmacSha1_80,
    /// AES-CM 128-bit key, HMAC-SHA1 32-bit tag on SRTP (80 bits on SRTCP).
    AesCm128HmacSha1_32,
}

impl Suite {
    /// Every suite we support, in our default preference order: the strongest first (as
    /// FreeSWITCH and SBCs offer them), the mandatory `AES_CM_128_HMAC_SHA1_80` among them
    /// for every peer that has nothing else.
    pub const ALL: [Suite; 6] = [
        Suite::AeadAes256Gcm,
        Suite::AeadAes128Gcm,
        Suite::AesCm256HmacSha1_80,
        Suite::AesCm256HmacSha1_32,
        Suite::AesCm128HmacSha1_80,
        Suite::AesCm128HmacSha1_32,
    ];

    /// The name in `a=crypto`.
    pub fn name(self) -> &'static str {
        match self {
            Suite::AeadAes256Gcm => "AEAD_AES_256_GCM",
            Suite::AeadAes128Gcm => "AEAD_AES_128_GCM",
            Suite::AesCm256HmacSha1_80 => "AES_256_CM_HMAC_SHA1_80",
            Suite::AesCm256HmacSha1_32 => "AES_256_CM_HMAC_SHA1_32",
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    /// The suite of an `a=crypto` name (case-sensitive, as RFC 4568 §9.2 registers them).
    pub fn from_name(name: &str) -> Option<Self> {
        Suite::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The DTLS-SRTP protection profile of the suite (RFC 5764 §4.1.2, RFC 7714 §14.2);
    /// `None` for AES-256-CM, which has none registered.
    pub fn dtls_profile(self) -> Option<u16> {
        match self {
            Suite::AesCm128HmacSha1_80 => Some(0x0001),
            Suite::AesCm128HmacSha1_32 => Some(0x0002),
            Suite::AeadAes128Gcm => Some(0x0007),
            Suite::AeadAes256Gcm => Some(0x0008),
            Suite::AesCm256HmacSha1_80 | Suite::AesCm256HmacSha1_32 => None,
        }
    }

    /// The suite of a DTLS-SRTP protection profile id.
    pub fn from_dtls_profile(id: u16) -> Option<Self> {
        Suite::ALL
            .into_iter()
            .find(|s| s.dtls_profile() == Some(id))
    }

    /// AES-GCM (RFC 7714): the tag comes from the cipher, there is no HMAC.
    pub fn is_aead(self) -> bool {
        matches!(self, Suite::AeadAes128Gcm | Suite::AeadAes256Gcm)
    }

    /// The master (and session encryption) key's length in bytes: 16 or 32.
    pub fn key_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 | Suite::AesCm128HmacSha1_32 | Suite::AeadAes128Gcm => 16,
            Suite::AesCm256HmacSha1_80 | Suite::AesCm256HmacSha1_32 | Suite::AeadAes256Gcm => 32,
        }
    }

    /// The master (and session) salt's length in bytes: 14 for AES-CM (RFC 3711 §4.3), 12
    /// for AES-GCM (RFC 7714 §12).
    pub fn salt_len(self) -> usize {
        if self.is_aead() { 12 } else { 14 }
    }

    /// `key||salt` in bytes, as in an SDES `inline:` key (30, 46, 28 or 44; RFC 4568 §6.1,
    /// RFC 6188 §6, RFC 7714 §12).
    pub fn master_len(self) -> usize {
        self.key_len() + self.salt_len()
    }

    /// The SRTP authentication tag's length in bytes.
    pub fn rtp_tag_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 | Suite::AesCm256HmacSha1_80 => 10,
            Suite::AesCm128HmacSha1_32 | Suite::AesCm256HmacSha1_32 => 4,
            Suite::AeadAes128Gcm | Suite::AeadAes256Gcm => AEAD_TAG_LEN,
        }
    }

    /// The SRTCP tag's length: 80 bits for the HMAC suites (RFC 4568 §6.2.2, RFC 5764
    /// §4.1.2's note), the 16-byte AEAD tag for GCM (RFC 7714 §13.2).
    pub fn rtcp_tag_len(self) -> usize {
        if self.is_aead() { AEAD_TAG_LEN } else { 10 }
    }
}

/// AES-GCM's tag in SRTP and SRTCP: never truncated (RFC 7714 §13.2).
const AEAD_TAG_LEN: usize = 16;
/// The E flag and SRTCP index after an SRTCP packet's payload (RFC 3711 §3.4).
const RTCP_INDEX_LEN: usize = 4;
/// The replay window, in packets (RFC 3711 §3.3.2 asks for at least 64).
pub const REPLAY_WINDOW: u64 = 64;
/// The largest SRTP packet index (48 bits) and SRTCP index (31 bits): no packet may be
/// protected past them with the same master key (RFC 3711 §9.2, RFC 7714 §10).
const MAX_RTP_INDEX: u64 = (1 << 48) - 1;
const MAX_RTCP_INDEX: u64 = (1 << 31) - 1;
/// The longest `key||salt` (AES-256-CM: 32 + 14).
const MAX_MASTER_LEN: usize = 46;

/// A master key identifier (RFC 3711 §3.1, RFC 4568 §6.1: `|value:length` after the key):
/// `len` bytes (1–128) carried in every SRTP and SRTCP packet under that key, the value
/// big-endian, zeros first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mki {
    /// The identifier (SDP's decimal value).
    pub value: u64,
    /// Its length in each packet, in bytes (1–128).
    pub len: u8,
}

impl Mki {
    /// The longest MKI of RFC 4568 §6.1 (its grammar: 1–3 digits, at most 128).
    pub const MAX_LEN: u8 = 128;

    /// `value` in `len` bytes, or `None` when `len` is not 1–128 or `value` does not fit.
    pub fn new(value: u64, len: u8) -> Option<Self> {
        let fits = len >= 8 || value >> (8 * u32::from(len)) == 0;
        ((1..=Self::MAX_LEN).contains(&len) && fits).then_some(Mki { value, len })
    }

    /// Writes its bytes (big-endian) into `out`, which is `len` bytes long.
    fn write(self, out: &mut [u8]) {
        out.fill(0);
        let be = self.value.to_be_bytes();
        let n = out.len().min(8);
        let at = out.len() - n;
        out[at..].copy_from_slice(&be[8 - n..]);
    }

    /// Whether `bytes` are this MKI.
    fn is(self, bytes: &[u8]) -> bool {
        let mut want = [0u8; Self::MAX_LEN as usize];
        let want = &mut want[..usize::from(self.len)];
        self.write(want);
        want == bytes
    }
}

/// A master key and salt of one suite's lengths, with its MKI when the SDP gave one.
/// `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    /// `key||salt`, zero after `len`.
    bytes: [u8; MAX_MASTER_LEN],
    key_len: u8,
    len: u8,
    mki: Option<Mki>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// An `AES_CM_128_HMAC_SHA1_*` key and salt from 30 bytes (the key first, RFC 4568
    /// §6.1 `key||salt`).
    pub fn from_bytes(bytes: [u8; 30]) -> Self {
        // This is ok because 30 is that suite's master length.
        Self::new(Suite::AesCm128HmacSha1_80, &bytes).expect("30 bytes")
    }

    /// `suite`'s key and salt from `key||salt`; `None` unless `bytes` has the suite's
    /// [`Suite::master_len`].
    pub fn new(suite: Suite, bytes: &[u8]) -> Option<Self> {
        if bytes.len() != suite.master_len() {
            return None;
        }
        let mut b = [0; MAX_MASTER_LEN];
        b[..bytes.len()].copy_from_slice(bytes);
        Some(MasterKey {
            bytes: b,
            // This is ok because both are at most 46.
            key_len: suite.key_len() as u8,
            len: bytes.len() as u8,
            mki: None,
        })
    }

    /// This key identified by `mki` in every packet (RFC 3711 §3.1), or by none.
    pub fn with_mki(mut self, mki: Option<Mki>) -> Self {
        self.mki = mki;
        self
    }

    /// Its MKI, if it has one.
    pub fn mki(&self) -> Option<Mki> {
        self.mki
    }

    /// A fresh key for `suite`, its bytes from `fill` (a CSPRNG: RFC 3711 §8.1.1 wants
    /// master keys random and secret).
    pub fn generate<E>(
        suite: Suite,
        fill: &mut impl FnMut(&mut [u8]) -> Result<(), E>,
    ) -> Result<Self, E> {
        let mut b = [0; MAX_MASTER_LEN];
        let b = &mut b[..suite.master_len()];
        fill(b)?;
        // This is ok because `b` has the suite's length.
        Ok(Self::new(suite, b).expect("suite length"))
    }

    /// `key||salt`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    fn key(&self) -> &[u8] {
        &self.bytes[..usize::from(self.key_len)]
    }

    fn salt(&self) -> &[u8] {
        &self.bytes[usize::from(self.key_len)..usize::from(self.len)]
    }

    /// Whether this key has `suite`'s key and salt lengths.
    pub fn fits(&self, suite: Suite) -> bool {
        usize::from(self.key_len) == suite.key_len() && usize::from(self.len) == suite.master_len()
    }

    /// `key||salt` in base64, as after `inline:` (RFC 4568 §6.1).
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.as_bytes())
    }
}

/// Why an SRTP or SRTCP packet could not be protected or unprotected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    /// Shorter than a header and the tag, or its RTP header overruns the packet.
    #[error("srtp packet too short or its header is malformed")]
    Malformed,
    /// The authentication tag does not match (RFC 3711 §3.3 step 5, RFC 7714 §8.2):
    /// tampered, or another key.
    #[error("srtp authentication failed")]
    AuthFailed,
    /// Seen before, or older than the replay window (RFC 3711 §3.3.2).
    #[error("srtp packet replayed")]
    Replayed,
    /// The packet index would exceed 2^48 (SRTP) or 2^31 (SRTCP) under one master key
    /// (RFC 3711 §9.2): a new key is needed.
    #[error("srtp index exhausted: rekeying needed")]
    IndexExhausted,
    /// The packet's MKI names no key of ours (RFC 3711 §3.3 step 1: the MKI selects the
    /// master key; an unknown one cannot be processed).
    #[error("srtp packet's MKI names another master key")]
    UnknownMki,
}

/// An AES key schedule (encryption only) of 128 or 256 bits.
enum AesKey {
    A128(Aes128Enc),
    A256(Aes256Enc),
}

impl AesKey {
    /// The schedule of a 16- or 32-byte key (any other length is a bug of ours: the lengths
    /// come from [`Suite::key_len`]).
    fn new(key: &[u8]) -> Self {
        if key.len() == 32 {
            // This is ok because the length was just checked.
            AesKey::A256(Aes256Enc::new_from_slice(key).expect("32 bytes"))
        } else {
            // This is ok because every suite's key is 16 or 32 bytes (`Suite::key_len`).
            AesKey::A128(Aes128Enc::new_from_slice(key).expect("16 bytes"))
        }
    }

    /// XORs `data` with the AES-CM keystream from counter block `iv` (RFC 3711 §4.1.1,
    /// RFC 6188 §3).
    fn keystream(&self, iv: [u8; 16], data: &mut [u8]) {
        match self {
            AesKey::A128(c) => {
                ctr::Ctr128BE::<&Aes128Enc>::from_core(ctr::CtrCore::inner_iv_init(c, &iv.into()))
                    .apply_keystream(data)
            }
            AesKey::A256(c) => {
                ctr::Ctr128BE::<&Aes256Enc>::from_core(ctr::CtrCore::inner_iv_init(c, &iv.into()))
                    .apply_keystream(data)
            }
        }
    }
}

/// AES-GCM of 128 or 256 bits with a 96-bit IV (RFC 7714 §5.2, §8.1).
enum Gcm {
    A128(AesGcm<Aes128Enc, U12>),
    A256(AesGcm<Aes256Enc, U12>),
}

impl Gcm {
    fn new(key: &[u8]) -> Self {
        match AesKey::new(key) {
            AesKey::A128(c) => Gcm::A128(c.into()),
            AesKey::A256(c) => Gcm::A256(c.into()),
        }
    }

    /// Encrypts `data` in place; returns the tag over `aad` and the ciphertext.
    fn seal(&self, iv: &[u8; 12], aad: &[u8], data: &mut [u8]) -> Result<[u8; 16], SrtpError> {
        let tag = match self {
            Gcm::A128(g) => g.encrypt_inout_detached(iv.into(), aad, data.into()),
            Gcm::A256(g) => g.encrypt_inout_detached(iv.into(), aad, data.into()),
        };
        // Only inputs longer than 2^36 bytes fail: never a datagram.
        tag.map(Into::into).map_err(|_| SrtpError::Malformed)
    }

    /// Checks `tag` over `aad` and `data` (in constant time), then decrypts `data` in place.
    fn open(&self, iv: &[u8; 12], aad: &[u8], data: &mut [u8], tag: &[u8]) -> bool {
        let Ok(tag) = <[u8; 16]>::try_from(tag) else {
            return false;
        };
        let tag = (&tag).into();
        match self {
            Gcm::A128(g) => g.decrypt_inout_detached(iv.into(), aad, data.into(), tag),
            Gcm::A256(g) => g.decrypt_inout_detached(iv.into(), aad, data.into(), tag),
        }
        .is_ok()
    }
}

/// Session keys for one of SRTP or SRTCP (RFC 3711 §4.3).
enum SessionKeys {
    /// AES-CM encryption and an HMAC-SHA1 tag (RFC 3711 §4.1.1, §4.2; RFC 6188).
    Cm {
        cipher: AesKey,
        salt: [u8; 14],
        /// HMAC-SHA1 keyed with the session auth key: copied per packet (the inner and
        /// outer pads are hashed once).
        mac: HmacSha1,
    },
    /// AES-GCM (RFC 7714).
    Gcm { aead: Gcm, salt: [u8; 12] },
}

impl SessionKeys {
    /// RFC 3711 §4.3.1 with key_derivation_rate 0 (r = 0): for `labels` (encryption, auth,
    /// salt) = (0, 1, 2) for SRTP, (3, 4, 5) for SRTCP. The PRF is AES-CM under the master
    /// key: AES-128 (RFC 3711 §4.3.3) or AES-256 (`AES_256_CM_PRF`, RFC 6188 §5.1, also
    /// for `AEAD_AES_256_GCM`, RFC 7714 §11); GCM's 96-bit master salt is multiplied by
    /// 2^16 to make the PRF's 112-bit one (RFC 7714 §11, erratum 4938), and its session
    /// salt is 96 bits; it derives no auth key (the AEAD tag needs none).
    fn derive(suite: Suite, master: &MasterKey, labels: [u8; 3]) -> Self {
        let prf = AesKey::new(master.key());
        let mut master_salt = [0u8; 14];
        master_salt[..master.salt().len()].copy_from_slice(master.salt());
        let mut enc = [0u8; 32];
        let enc = &mut enc[..suite.key_len()];
        prf_keystream(&prf, &master_salt, labels[0], enc);
        if suite.is_aead() {
            let mut salt = [0u8; 12];
            prf_keystream(&prf, &master_salt, labels[2], &mut salt);
            return SessionKeys::Gcm {
                aead: Gcm::new(enc),
                salt,
            };
        }
        let mut auth = [0u8; 20];
        let mut salt = [0u8; 14];
        prf_keystream(&prf, &master_salt, labels[1], &mut auth);
        prf_keystream(&prf, &master_salt, labels[2], &mut salt);
        SessionKeys::Cm {
            cipher: AesKey::new(enc),
            salt,
            // This is ok because HMAC takes a key of any length.
            mac: <HmacSha1 as KeyInit>::new_from_slice(&auth).expect("hmac takes any key length"),
        }
    }
}

/// XORs `data` with the AES-CM keystream of (`ssrc`, `index`) under `cipher` and session salt
/// `salt` (RFC 3711 §4.1.1: IV = (k_s · 2^16) ⊕ (SSRC · 2^64) ⊕ (i · 2^16)).
fn cm_apply(cipher: &AesKey, salt: &[u8; 14], ssrc: u32, index: u64, data: &mut [u8]) {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(salt);
    for (b, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
        *b ^= s;
    }
    for (b, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
        *b ^= s;
    }
    cipher.keystream(iv, data);
}

/// HMAC-SHA1 of `a || b` (RFC 3711 §4.2: the authenticated portion, then the ROC or the
/// E flag and SRTCP index).
fn hmac_tag(mac: &HmacSha1, a: &[u8], b: &[u8]) -> [u8; 20] {
    let mut mac = mac.clone();
    mac.update(a);
    mac.update(b);
    mac.finalize().into_bytes().into()
}

/// Checks `tag` (the leftmost bytes of the HMAC of `a || b`) in constant time.
fn hmac_verify(mac: &HmacSha1, a: &[u8], b: &[u8], tag: &[u8]) -> bool {
    let mut mac = mac.clone();
    mac.update(a);
    mac.update(b);
    mac.verify_truncated_left(tag).is_ok()
}

/// The AES-GCM IV (RFC 7714 §8.1 for SRTP: `00 00 || SSRC || ROC || SEQ`, §9.1 for SRTCP:
/// `00 00 || SSRC || 00 00 || 0 || SRTCP index`, each XORed with the session salt): both are
/// the SSRC at bytes 2..6 and a 48-bit index at 6..12.
fn gcm_iv(salt: &[u8; 12], ssrc: u32, index: u64) -> [u8; 12] {
    let mut iv = *salt;
    for (b, s) in iv[2..6].iter_mut().zip(ssrc.to_be_bytes()) {
        *b ^= s;
    }
    for (b, s) in iv[6..12].iter_mut().zip(&index.to_be_bytes()[2..]) {
        *b ^= s;
    }
    iv
}

/// The key-derivation PRF (RFC 3711 §4.3.3: AES-CM under the master key, IV = x · 2^16
/// with x = key_id ⊕ master_salt and key_id = label || r, r = 0).
fn prf_keystream(prf: &AesKey, master_salt: &[u8; 14], label: u8, out: &mut [u8]) {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(master_salt);
    // key_id is 56 bits (label || 48-bit r) aligned right in the 112-bit salt: label at byte 7.
    iv[7] ^= label;
    out.fill(0);
    prf.keystream(iv, out);
}

/// The highest index seen of one SSRC and which of the [`REPLAY_WINDOW`] before it were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    ssrc: u32,
    top: u64,
    /// Bit k: index `top - k` was seen.
    seen: u64,
}

impl Window {
    fn new(ssrc: u32, index: u64) -> Self {
        Window {
            ssrc,
            top: index,
            seen: 0,
        }
    }

    /// RFC 3711 Appendix A: the packet index of `seq`, guessing the ROC from the highest
    /// sequence number s_l seen; `None` when it would fall before index 0.
    fn estimate(&self, seq: u16) -> Option<u64> {
        let roc = self.top >> 16;
        let s_l = self.top as u16;
        let v = if s_l < 0x8000 {
            if seq > s_l && seq - s_l > 0x8000 {
                roc.checked_sub(1)?
            } else {
                roc
            }
        } else if s_l - 0x8000 > seq {
            roc + 1
        } else {
            roc
        };
        Some(v << 16 | u64::from(seq))
    }

    /// RFC 3711 §3.3.2: `Ok` when `index` is new and within the window.
    fn check(&self, index: u64) -> Result<(), SrtpError> {
        if index > self.top {
            return Ok(());
        }
        let back = self.top - index;
        if back >= REPLAY_WINDOW || self.seen & (1 << back) != 0 {
            return Err(SrtpError::Replayed);
        }
        Ok(())
    }

    /// Records an authenticated `index` (and, RFC 3711 §3.3.1, the ROC and s_l it implies).
    fn commit(&mut self, index: u64) {
        if index > self.top {
            let ahead = index - self.top;
            self.seen = if ahead >= REPLAY_WINDOW {
                0
            } else {
                self.seen << ahead
            };
            self.top = index;
            self.seen |= 1;
        } else {
            self.seen |= 1 << (self.top - index);
        }
    }
}

/// The window of `ssrc`, a fresh one when `current` is another SSRC's (ROC 0, RFC 3711
/// §3.3.1; taken over only once a packet of it authenticates).
fn window_for(current: Option<Window>, ssrc: u32, seq: u64) -> (Window, bool) {
    match current {
        Some(w) if w.ssrc == ssrc => (w, false),
        _ => (Window::new(ssrc, seq), true),
    }
}

/// One direction of a call: SRTP and SRTCP under one master key. See the module docs.
pub struct SrtpStream {
    suite: Suite,
    rtp: SessionKeys,
    rtcp: SessionKeys,
    rtp_window: Option<Window>,
    rtcp_window: Option<Window>,
    /// The next SRTCP index we send.
    rtcp_index: u64,
    /// The MKI in each packet (before the HMAC tag; after the AEAD one, RFC 7714 §8.1).
    mki: Option<Mki>,
}

impl fmt::Debug for SrtpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpStream")
            .field("suite", &self.suite)
            .field("rtp_window", &self.rtp_window)
            .field("rtcp_window", &self.rtcp_window)
            .field("rtcp_index", &self.rtcp_index)
            .finish_non_exhaustive()
    }
}

/// The length of an RTP header with its CSRCs and extension (RFC 3550 §5.1, §5.3.1), if it
/// fits in `p`.
fn rtp_header_len(p: &[u8]) -> Option<usize> {
    if p.len() < 12 || p[0] >> 6 != 2 {
        return None;
    }
    let mut n = 12 + 4 * usize::from(p[0] & 0x0f);
    if p[0] & 0x10 != 0 {
        let words = p.get(n + 2..n + 4)?;
        n += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    (n <= p.len()).then_some(n)
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl SrtpStream {
    /// A stream under `master` (its session keys derived here, RFC 3711 §4.3). `master`
    /// must have the suite's lengths ([`MasterKey::fits`]; SDES and DTLS-SRTP keys are made
    /// so): a shorter key is read as zeros past its end, never out of bounds.
    pub fn new(suite: Suite, master: &MasterKey) -> Self {
        debug_assert!(master.fits(suite), "{suite:?} key of another length");
        SrtpStream {
            suite,
            rtp: SessionKeys::derive(suite, master, [0, 1, 2]),
            rtcp: SessionKeys::derive(suite, master, [3, 4, 5]),
            rtp_window: None,
            rtcp_window: None,
            rtcp_index: 0,
            mki: master.mki,
        }
    }

    /// The MKI's length in each packet (0 without one).
    fn mki_len(&self) -> usize {
        self.mki.map_or(0, |m| usize::from(m.len))
    }

    /// Writes our MKI into the packet that ends at `end`, just protected without it, whose
    /// last `tag_len` bytes are the tag and the room of the MKI follows: with an HMAC suite
    /// the tag moves after the MKI (RFC 3711 §3.1: `… | MKI | tag`), with AES-GCM the MKI
    /// follows the tag (RFC 7714 §8.1, §9.1). Returns the new end.
    fn put_mki(&self, buf: &mut [u8], end: usize, tag_len: usize) -> usize {
        let Some(mki) = self.mki else {
            return end;
        };
        let m = usize::from(mki.len);
        let at = if self.suite.is_aead() {
            end
        } else {
            buf.copy_within(end - tag_len..end, end - tag_len + m);
            end - tag_len
        };
        mki.write(&mut buf[at..at + m]);
        end + m
    }

    /// Checks and removes the MKI of a received packet (see [`Self::put_mki`]), the tag of
    /// `tag_len` bytes moved back in its place; returns the packet's length without it.
    fn take_mki(&self, packet: &mut [u8], tag_len: usize) -> Result<usize, SrtpError> {
        let Some(mki) = self.mki else {
            return Ok(packet.len());
        };
        let (n, m) = (packet.len(), usize::from(mki.len));
        if n < m + tag_len {
            return Err(SrtpError::Malformed);
        }
        let at = if self.suite.is_aead() {
            n - m
        } else {
            n - tag_len - m
        };
        if !mki.is(&packet[at..at + m]) {
            return Err(SrtpError::UnknownMki);
        }
        if !self.suite.is_aead() {
            packet.copy_within(n - tag_len..n, at);
        }
        Ok(n - m)
    }

    /// The suite.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Encrypts the RTP packet in `packet` and appends its tag (RFC 3711 §3.3, RFC 7714
    /// §8). The sender's ROC follows the sequence numbers (a wrap from 65535 to 0 raises
    /// it); a new SSRC starts at ROC 0.
    pub fn protect_rtp(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        let len = packet.len();
        packet.resize(len + self.suite.rtp_tag_len() + self.mki_len(), 0);
        let done = self.protect_rtp_in_place(packet, len);
        if done.is_err() {
            packet.truncate(len);
        }
        done.map(|_| ())
    }

    /// [`Self::protect_rtp`] in a buffer that has room for the tag (and the MKI): encrypts
    /// the RTP packet in `buf[..len]` and writes its tag after it; returns the SRTP packet's
    /// length (`len` plus the suite's tag and the MKI). An SRTP packet unprotected in place
    /// (the same suite and MKI length) leaves that room, so a reflector re-protects without
    /// copying.
    pub fn protect_rtp_in_place(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let tag_len = self.suite.rtp_tag_len();
        if buf.len() < len.saturating_add(tag_len + self.mki_len()) {
            return Err(SrtpError::Malformed);
        }
        let (packet, tag_out) = buf.split_at_mut(len);
        let header = rtp_header_len(packet).ok_or(SrtpError::Malformed)?;
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let ssrc = be32(&packet[8..12]);
        let (mut w, _) = window_for(self.rtp_window, ssrc, u64::from(seq));
        let index = w.estimate(seq).ok_or(SrtpError::IndexExhausted)?;
        if index > MAX_RTP_INDEX {
            return Err(SrtpError::IndexExhausted);
        }
        match &self.rtp {
            SessionKeys::Cm { cipher, salt, mac } => {
                cm_apply(cipher, salt, ssrc, index, &mut packet[header..]);
                let roc = ((index >> 16) as u32).to_be_bytes();
                let tag = hmac_tag(mac, packet, &roc);
                tag_out[..tag_len].copy_from_slice(&tag[..tag_len]);
            }
            SessionKeys::Gcm { aead, salt } => {
                // RFC 7714 §8.2: the header (CSRCs and extension included) is the AAD.
                let (aad, payload) = packet.split_at_mut(header);
                let tag = aead.seal(&gcm_iv(salt, ssrc, index), aad, payload)?;
                tag_out[..tag_len].copy_from_slice(&tag);
            }
        }
        w.commit(index);
        self.rtp_window = Some(w);
        Ok(self.put_mki(buf, len + tag_len, tag_len))
    }

    /// Checks and decrypts the SRTP packet in `packet` in place (RFC 3711 §3.3: index
    /// estimate, replay check, authentication, then decryption; RFC 7714 §8.3); returns the
    /// length of the plain RTP packet at its start. A failed packet changes no state.
    pub fn unprotect_rtp(&mut self, packet: &mut [u8]) -> Result<usize, SrtpError> {
        let tag_len = self.suite.rtp_tag_len();
        let n = self.take_mki(packet, tag_len)?;
        let packet = &mut packet[..n];
        if packet.len() < 12 + tag_len {
            return Err(SrtpError::Malformed);
        }
        let end = packet.len() - tag_len;
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let ssrc = be32(&packet[8..12]);
        let (mut w, fresh) = window_for(self.rtp_window, ssrc, u64::from(seq));
        let index = w.estimate(seq).ok_or(SrtpError::Replayed)?;
        if !fresh {
            w.check(index)?;
        }
        let (body, tag) = packet.split_at_mut(end);
        match &self.rtp {
            SessionKeys::Cm { cipher, salt, mac } => {
                let roc = ((index >> 16) as u32).to_be_bytes();
                if !hmac_verify(mac, body, &roc, tag) {
                    return Err(SrtpError::AuthFailed);
                }
                let header = rtp_header_len(body).ok_or(SrtpError::Malformed)?;
                cm_apply(cipher, salt, ssrc, index, &mut body[header..]);
            }
            SessionKeys::Gcm { aead, salt } => {
                // The header is the AAD: one that does not parse cannot be checked.
                let header = rtp_header_len(body).ok_or(SrtpError::Malformed)?;
                let (aad, payload) = body.split_at_mut(header);
                if !aead.open(&gcm_iv(salt, ssrc, index), aad, payload, tag) {
                    return Err(SrtpError::AuthFailed);
                }
            }
        }
        w.commit(index);
        self.rtp_window = Some(w);
        Ok(end)
    }

    /// Encrypts the RTCP compound in `packet` (all but the first 8 bytes) and appends the E
    /// flag with the SRTCP index and the tag (RFC 3711 §3.4: index then tag; RFC 7714 §9.2:
    /// the AEAD tag, then the index, which is associated data with the first 8 bytes).
    pub fn protect_rtcp(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        if packet.len() < 8 {
            return Err(SrtpError::Malformed);
        }
        let index = self.rtcp_index;
        if index > MAX_RTCP_INDEX {
            return Err(SrtpError::IndexExhausted);
        }
        let ssrc = be32(&packet[4..8]);
        // This is ok because index ≤ 2^31 - 1 (checked above).
        let e_index = (0x8000_0000 | index as u32).to_be_bytes();
        match &self.rtcp {
            SessionKeys::Cm { cipher, salt, mac } => {
                cm_apply(cipher, salt, ssrc, index, &mut packet[8..]);
                packet.extend_from_slice(&e_index);
                let tag = hmac_tag(mac, packet, &[]);
                packet.extend_from_slice(&tag[..self.suite.rtcp_tag_len()]);
            }
            SessionKeys::Gcm { aead, salt } => {
                let aad = rtcp_aad(&packet[..8], e_index);
                let tag = aead.seal(&gcm_iv(salt, ssrc, index), &aad, &mut packet[8..])?;
                packet.extend_from_slice(&tag);
                packet.extend_from_slice(&e_index);
            }
        }
        if self.mki.is_some() {
            // The MKI after the index (RFC 3711 §3.4, RFC 7714 §9.1): before the HMAC tag,
            // last with AES-GCM.
            let end = packet.len();
            packet.resize(end + self.mki_len(), 0);
            self.put_mki(packet, end, self.suite.rtcp_tag_len());
        }
        self.rtcp_index += 1;
        Ok(())
    }

    /// Checks and decrypts (when its E flag is set) the SRTCP packet in `packet` in place
    /// (RFC 3711 §3.4, RFC 7714 §9.2/§9.3); returns the length of the plain RTCP compound at
    /// its start. A failed packet changes no state (its bytes may be).
    pub fn unprotect_rtcp(&mut self, packet: &mut [u8]) -> Result<usize, SrtpError> {
        let tag_len = self.suite.rtcp_tag_len();
        let n = self.take_mki(packet, tag_len)?;
        let packet = &mut packet[..n];
        if packet.len() < 8 + RTCP_INDEX_LEN + tag_len {
            return Err(SrtpError::Malformed);
        }
        let end = packet.len() - RTCP_INDEX_LEN - tag_len;
        // The E flag and index: before the HMAC tag, after the AEAD one.
        let at = if self.suite.is_aead() {
            packet.len() - RTCP_INDEX_LEN
        } else {
            end
        };
        let e_index = be32(&packet[at..at + RTCP_INDEX_LEN]);
        let encrypted = e_index & 0x8000_0000 != 0;
        let index = u64::from(e_index & 0x7fff_ffff);
        let ssrc = be32(&packet[4..8]);
        let (mut w, fresh) = window_for(self.rtcp_window, ssrc, index);
        if !fresh {
            w.check(index)?;
        }
        match &self.rtcp {
            SessionKeys::Cm { cipher, salt, mac } => {
                let (authed, tag) = packet.split_at_mut(end + RTCP_INDEX_LEN);
                if !hmac_verify(mac, authed, &[], tag) {
                    return Err(SrtpError::AuthFailed);
                }
                if encrypted {
                    cm_apply(cipher, salt, ssrc, index, &mut authed[8..end]);
                }
            }
            SessionKeys::Gcm { aead, salt } => {
                let iv = gcm_iv(salt, ssrc, index);
                let ok = if encrypted {
                    let aad = rtcp_aad(&packet[..8], e_index.to_be_bytes());
                    let (body, tag) = packet[..at].split_at_mut(end);
                    aead.open(&iv, &aad, &mut body[8..], tag)
                } else {
                    // RFC 7714 §9.3: the whole packet and the E flag/index are the AAD,
                    // nothing is encrypted. Tag and index swapped to make the AAD one slice.
                    packet[end..].rotate_right(RTCP_INDEX_LEN);
                    let (aad, tag) = packet.split_at_mut(end + RTCP_INDEX_LEN);
                    aead.open(&iv, aad, &mut [], tag)
                };
                if !ok {
                    return Err(SrtpError::AuthFailed);
                }
            }
        }
        w.commit(index);
        self.rtcp_window = Some(w);
        Ok(end)
    }
}

/// SRTCP's AEAD associated data when encrypted (RFC 7714 §9.2): the first 8 bytes, then the
/// E flag and SRTCP index.
fn rtcp_aad(head: &[u8], e_index: [u8; 4]) -> [u8; 12] {
    let mut aad = [0u8; 12];
    aad[..8].copy_from_slice(head);
    aad[8..].copy_from_slice(&e_index);
    aad
}

/// A call's SRTP: what we send under our key, what we receive under the peer's.
#[derive(Debug)]
pub struct SrtpContext {
    /// Our direction (our master key).
    pub tx: SrtpStream,
    /// The peer's direction (its master key).
    pub rx: SrtpStream,
}

impl SrtpContext {
    /// The context of a negotiated suite and keys.
    pub fn new(p: &SrtpParams) -> Self {
        SrtpContext {
            tx: SrtpStream::new(p.suite, &p.tx_key),
            rx: SrtpStream::new(p.suite, &p.rx_key),
        }
    }
}

/// What SDES negotiated for a call: the suite, our key and the peer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtpParams {
    /// The crypto suite both sides use.
    pub suite: Suite,
    /// Our master key (in our `a=crypto` line): protects what we send.
    pub tx_key: MasterKey,
    /// The peer's master key (in its line): protects what we receive.
    pub rx_key: MasterKey,
}

/// A malformed `a=crypto` attribute (RFC 4568 §9.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Not `<tag> <suite> <key-params> [<session-params>]`.
    #[error("a=crypto needs a tag, a suite and key parameters")]
    Fields,
    /// The tag is not a 1–9 digit decimal number.
    #[error("a=crypto tag is not a number of 1-9 digits")]
    Tag,
    /// The key method is not `inline:` (the only one RFC 4568 defines).
    #[error("a=crypto key method is not inline:")]
    KeyMethod,
    /// The key is not base64.
    #[error("a=crypto key is not base64")]
    Base64,
    /// The key and salt are not the suite's length (RFC 4568 §6.1, RFC 6188 §6, RFC 7714
    /// §12): the length found and the suite.
    #[error("a=crypto key is {got} bytes, {want} ({key} key + {salt} salt) expected for {name}", got = .0, want = .1.master_len(), key = .1.key_len(), salt = .1.salt_len(), name = .1.name())]
    KeyLength(usize, Suite),
    /// The lifetime or MKI field does not parse (an MKI longer than 128 bytes, or a value
    /// its length cannot hold, included).
    #[error("a=crypto key lifetime or MKI is malformed")]
    KeyInfo,
}

/// Why a well-formed `a=crypto` line cannot be used (we skip it and try the next one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsupported {
    /// A suite we do not implement (its name).
    Suite(String),
    /// Several keys (RFC 4568 §6.1), or a session parameter (KDR, UNENCRYPTED_*,
    /// FEC_ORDER …, §6.3) we do not implement.
    Feature(&'static str),
}

/// One usable `a=crypto` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crypto {
    /// The tag (answers name the offer's line by it, RFC 4568 §5.1.2).
    pub tag: u32,
    /// The suite.
    pub suite: Suite,
    /// The master key and salt.
    pub key: MasterKey,
}

impl Crypto {
    /// Parses the value of an `a=crypto` attribute: `Ok(Err(_))` for a well-formed line we
    /// cannot use (another suite, several keys, session parameters).
    pub fn parse(value: &str) -> Result<Result<Crypto, Unsupported>, CryptoError> {
        let mut fields = value.split_ascii_whitespace();
        let (Some(tag), Some(suite), Some(key_params)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(CryptoError::Fields);
        };
        if tag.is_empty() || tag.len() > 9 || !tag.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CryptoError::Tag);
        }
        // This is ok because 1-9 ASCII digits always fit in a u32.
        let tag: u32 = tag.parse().expect("1-9 digits");
        // RFC 4568 §9.1: key-params = key-param *(";" key-param); only the first is checked
        // before the suite so that a foreign suite's key format is not an error.
        let first = key_params.split(';').next().unwrap_or_default();
        let Some(inline) = first.strip_prefix("inline:") else {
            return Err(CryptoError::KeyMethod);
        };
        let mut parts = inline.split('|');
        let key = parts.next().unwrap_or_default();
        let Some(suite) = Suite::from_name(suite) else {
            return Ok(Err(Unsupported::Suite(suite.to_owned())));
        };
        let bytes = BASE64.decode(key).map_err(|_| CryptoError::Base64)?;
        let Some(key) = MasterKey::new(suite, &bytes) else {
            return Err(CryptoError::KeyLength(bytes.len(), suite));
        };
        // Optional lifetime ("2^31" or a decimal count), then an optional "MKI:length"
        // (RFC 4568 §6.1; Skype for Business and Teams send `|2^31|1:1`).
        let mut key = key;
        for p in parts {
            if let Some(exp) = p.strip_prefix("2^") {
                exp.parse::<u8>().map_err(|_| CryptoError::KeyInfo)?;
            } else if let Some((mki, len)) = p.split_once(':') {
                let value = mki.parse::<u64>().map_err(|_| CryptoError::KeyInfo)?;
                let len = len.parse::<u8>().map_err(|_| CryptoError::KeyInfo)?;
                let mki = Mki::new(value, len).ok_or(CryptoError::KeyInfo)?;
                key = key.with_mki(Some(mki));
            } else {
                p.parse::<u64>().map_err(|_| CryptoError::KeyInfo)?;
            }
        }
        if key_params.contains(';') {
            return Ok(Err(Unsupported::Feature("several master keys")));
        }
        if fields.next().is_some() {
            return Ok(Err(Unsupported::Feature("session parameters")));
        }
        Ok(Ok(Crypto { tag, suite, key }))
    }

    /// The attribute's value: `<tag> <suite> inline:<key||salt>`, and `|<MKI>:<length>`
    /// when the key has an MKI.
    pub fn value(&self) -> String {
        let mut v = format!(
            "{} {} inline:{}",
            self.tag,
            self.suite.name(),
            self.key.to_base64()
        );
        if let Some(m) = self.key.mki() {
            v.push_str(&format!("|{}:{}", m.value, m.len));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 3711 Appendix B.2: the AES-CM keystream for key 2B7E…, salt F0F1…FD, SSRC 0,
    /// index 0, its first three blocks and the blocks at counters FEFF–FF01.
    #[test]
    fn rfc3711_b2_aes_cm_keystream() {
        let cipher = AesKey::new(&hex("2B7E151628AED2A6ABF7158809CF4F3C"));
        let salt: [u8; 14] = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD").try_into().unwrap();
        let mut ks = vec![0u8; 16 * 0xff02];
        cm_apply(&cipher, &salt, 0, 0, &mut ks);
        assert_eq!(
            ks[..48],
            hex("E03EAD0935C95E80E166B16DD92B4EB4
                 D23513162B02D0F72A43A2FE4A5F97AB
                 41E95B3BB0A2E8DD477901E4FCA894C0")[..]
        );
        assert_eq!(
            ks[16 * 0xfeff..],
            hex("EC8CDF7398607CB0F2D21675EA9EA1E4
                 362B7C3C6773516318A077D7FC5073AE
                 6A2CC3787889374FBEB4C81B17BA6C44")[..]
        );
    }

    /// RFC 3711 Appendix B.3: the session keys derived from master key E1F9…, salt 0EC6….
    #[test]
    fn rfc3711_b3_key_derivation() {
        let prf = AesKey::new(&hex("E1F97A0D3E018BE0D64FA32C06DE4139"));
        let salt: [u8; 14] = hex("0EC675AD498AFEEBB6960B3AABE6").try_into().unwrap();
        let mut enc = [0u8; 16];
        let mut auth = [0u8; 94];
        let mut k_s = [0u8; 14];
        prf_keystream(&prf, &salt, 0, &mut enc);
        prf_keystream(&prf, &salt, 1, &mut auth);
        prf_keystream(&prf, &salt, 2, &mut k_s);
        assert_eq!(enc[..], hex("C61E7A93744F39EE10734AFE3FF7A087")[..]);
        assert_eq!(k_s[..], hex("30CBBC08863D8C85D49DB34A9AE1")[..]);
        assert_eq!(
            auth[..],
            hex(
                "CEBE321F6FF7716B6FD4AB49AF256A156D38BAA48F0A0ACF3C34E2359E6CDBCE
                 E049646C43D9327AD175578EF72270986371C10C9A369AC2F94A8C5FBCDDDC25
                 6D6E919A48B610EF17C2041E474035766B68642C59BBFC2F34DB60DBDFB2"
            )[..]
        );
    }

    fn key(b: u8) -> MasterKey {
        MasterKey::from_bytes(std::array::from_fn(|i| b.wrapping_add(i as u8)))
    }

    /// A key of `suite`'s length.
    fn key_of(suite: Suite, b: u8) -> MasterKey {
        let bytes: Vec<u8> = (0..suite.master_len())
            .map(|i| b.wrapping_add(i as u8))
            .collect();
        MasterKey::new(suite, &bytes).unwrap()
    }

    /// A stream whose session keys (not master keys) are given, as RFC 7714's vectors are.
    fn gcm_stream(suite: Suite, key: &[u8], salt: &str) -> SrtpStream {
        let salt: [u8; 12] = hex(salt).try_into().unwrap();
        let keys = || SessionKeys::Gcm {
            aead: Gcm::new(key),
            salt,
        };
        let mut s = SrtpStream::new(suite, &key_of(suite, 0));
        (s.rtp, s.rtcp) = (keys(), keys());
        s
    }

    /// RFC 7714 §16.1.1/§16.2.1 (SRTP encryption) and §16.1.2/§16.2.2 (decryption): the
    /// "Gallia est omnis divisa in partes tres" packet, keys 00..0f / 00..1f, salt "Quid pro
    /// quo".
    #[test]
    fn rfc7714_16_srtp_aes_gcm() {
        let plain = hex("8040f17b8041f8d35501a0b2
            47616c6c696120657374206f6d6e69732064697669736120696e207061727465732074726573");
        let key: Vec<u8> = (0..32).collect();
        for (suite, key, want) in [
            (
                Suite::AeadAes128Gcm,
                &key[..16],
                "8040f17b8041f8d35501a0b2 f24de3a3fb34de6cacba861c9d7e4bcabe633bd50d294e6f42a5f47a
                 51c7d19b36de3adf8833 899d7f27beb16a9152cf765ee4390cce",
            ),
            (
                Suite::AeadAes256Gcm,
                &key[..],
                "8040f17b8041f8d35501a0b2 32b1de78a822fe12ef9f78fa332e33aab18012389a58e2f3b50b2a
                 0276ffae0f1ba63799b87b 7aa3db36dfffd6b0f9bb7878d7a76c13",
            ),
        ] {
            let mut p = plain.clone();
            gcm_stream(suite, key, "517569642070726f2071756f")
                .protect_rtp(&mut p)
                .unwrap();
            assert_eq!(p, hex(want), "{suite:?}");
            let mut rx = gcm_stream(suite, key, "517569642070726f2071756f");
            let n = rx.unprotect_rtp(&mut p).unwrap();
            assert_eq!(p[..n], plain[..], "{suite:?}");
        }
    }

    /// RFC 7714 §17.1/§17.2 (SRTCP encrypted, index 0x5d4) both ways, and §17.3/§17.4 (E
    /// flag clear: authenticated only) on receipt.
    #[test]
    fn rfc7714_17_srtcp_aes_gcm() {
        let plain = hex(
            "81c8000d4d6172734e5450314e545032525450200000042a0000e9304c756e61
                         deadbeefdeadbeefdeadbeefdeadbeefdeadbeef",
        );
        let key: Vec<u8> = (0..32).collect();
        for (suite, key, want) in [
            (
                Suite::AeadAes128Gcm,
                &key[..16],
                "81c8000d4d617273 63e94885dcdab67ca727d7662f6b7e997ff5c0f76c06f32dc676a5f1730d6fda
                 4ce09b4686303ded0bb9275bc84aa458 96cf4d2fc5abf87245d9eade 800005d4",
            ),
            (
                Suite::AeadAes256Gcm,
                &key[..],
                "81c8000d4d617273 d50ae4d1f5ce5d304ba297e47d470c282c3ece5dbffe0a50a2eaa5c1110555be
                 8415f658c61de0476f1b6fad1d1eb30c4446839f57ff6f6cb26ac3be 800005d4",
            ),
        ] {
            let mut tx = gcm_stream(suite, key, "517569642070726f2071756f");
            tx.rtcp_index = 0x5d4;
            let mut p = plain.clone();
            tx.protect_rtcp(&mut p).unwrap();
            assert_eq!(p, hex(want), "{suite:?}");
            let mut rx = gcm_stream(suite, key, "517569642070726f2071756f");
            let n = rx.unprotect_rtcp(&mut p).unwrap();
            assert_eq!(p[..n], plain[..], "{suite:?}");
        }
        // §17.3: the 128-bit key, E = 0: the packet in the clear, its tag, the index.
        let mut p = plain.clone();
        p.extend_from_slice(&hex("841dd9683dd78ec92ae58790125f62b3 000005d4"));
        let mut rx = gcm_stream(Suite::AeadAes128Gcm, &key[..16], "517569642070726f2071756f");
        let mut bad = p.clone();
        bad[9] ^= 1;
        assert_eq!(rx.unprotect_rtcp(&mut bad), Err(SrtpError::AuthFailed));
        let n = rx.unprotect_rtcp(&mut p).unwrap();
        assert_eq!(p[..n], plain[..]);
    }

    /// RFC 6188 §7.1: the AES-256-CM keystream for key 57F8…, IV F0F1…FD0000.
    #[test]
    fn rfc6188_7_1_aes_256_cm_keystream() {
        let cipher = AesKey::new(&hex(
            "57f82fe3613fd170a85ec93c40b1f0922ec4cb0dc025b58272147cc438944a98",
        ));
        let salt: [u8; 14] = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD").try_into().unwrap();
        let mut ks = [0u8; 48];
        cm_apply(&cipher, &salt, 0, 0, &mut ks);
        assert_eq!(
            ks[..],
            hex("92bdd28a93c3f52511c677d08b5515a4
                 9da71b2378a854f67050756ded165bac
                 63c4868b7096d88421b563b8c94c9a31")[..]
        );
    }

    /// RFC 6188 §7.2: the AES_256_CM_PRF session keys of master key F0F0…, salt 3B04….
    #[test]
    fn rfc6188_7_2_aes_256_cm_prf() {
        let master = hex(
            "f0f04914b513f2763a1b1fa130f10e2998f6f6e43e4309d1e622a0e332b9f1b6
             3b04803de51ee7c96423ab5b78d2",
        );
        let master = MasterKey::new(Suite::AesCm256HmacSha1_80, &master).unwrap();
        let prf = AesKey::new(master.key());
        let salt: [u8; 14] = master.salt().try_into().unwrap();
        let (mut enc, mut auth, mut k_s) = ([0u8; 32], [0u8; 20], [0u8; 14]);
        prf_keystream(&prf, &salt, 0, &mut enc);
        prf_keystream(&prf, &salt, 1, &mut auth);
        prf_keystream(&prf, &salt, 2, &mut k_s);
        assert_eq!(
            enc[..],
            hex("5ba1064e30ec51613cad926c5a28ef731ec7fb397f70a960653caf06554cd8c4")[..]
        );
        assert_eq!(
            auth[..],
            hex("fd9c32d39ed5fbb5a9dc96b30818454d1313dc05")[..]
        );
        assert_eq!(k_s[..], hex("fa31791685ca444a9e07c6c64e93")[..]);
    }

    #[test]
    fn suites_lengths_names_and_dtls_profiles() {
        for suite in Suite::ALL {
            assert_eq!(Suite::from_name(suite.name()), Some(suite));
            assert_eq!(
                MasterKey::generate(suite, &mut |b: &mut [u8]| {
                    b.fill(1);
                    Ok::<(), ()>(())
                })
                .unwrap()
                .as_bytes(),
                vec![1; suite.master_len()]
            );
            if let Some(id) = suite.dtls_profile() {
                assert_eq!(Suite::from_dtls_profile(id), Some(suite));
            }
        }
        let lens = Suite::ALL.map(|s| (s.master_len(), s.rtp_tag_len(), s.rtcp_tag_len()));
        assert_eq!(
            lens,
            [
                (44, 16, 16),
                (28, 16, 16),
                (46, 10, 10),
                (46, 4, 10),
                (30, 10, 10),
                (30, 4, 10)
            ]
        );
        assert_eq!(Suite::from_dtls_profile(0x0007), Some(Suite::AeadAes128Gcm));
        assert_eq!(Suite::from_dtls_profile(0x0003), None);
        assert_eq!(MasterKey::new(Suite::AeadAes128Gcm, &[0; 30]), None);
    }

    fn rtp(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 160, 0, 0, 0, 0];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    fn pair(suite: Suite) -> (SrtpStream, SrtpStream) {
        (
            SrtpStream::new(suite, &key_of(suite, 7)),
            SrtpStream::new(suite, &key_of(suite, 7)),
        )
    }

    #[test]
    fn rtp_round_trip_both_suites_and_tamper_fails() {
        for suite in Suite::ALL {
            let (mut tx, mut rx) = pair(suite);
            let plain = rtp(100, 0xdead_beef, &[0xd5; 160]);
            let mut p = plain.clone();
            tx.protect_rtp(&mut p).unwrap();
            assert_eq!(p.len(), plain.len() + suite.rtp_tag_len());
            assert_eq!(p[..12], plain[..12], "the header stays plain");
            assert_ne!(p[12..172], plain[12..], "the payload is encrypted");
            for i in [0, 5, 12, 100, p.len() - 1] {
                let mut bad = p.clone();
                bad[i] ^= 1;
                assert_eq!(
                    rx.unprotect_rtp(&mut bad),
                    Err(SrtpError::AuthFailed),
                    "{i}"
                );
            }
            let n = rx.unprotect_rtp(&mut p).unwrap();
            assert_eq!(p[..n], plain[..]);
            // Another key: no packet passes.
            let mut other = SrtpStream::new(suite, &key_of(suite, 8));
            let mut q = plain.clone();
            tx.protect_rtp(&mut q).unwrap();
            assert_eq!(other.unprotect_rtp(&mut q), Err(SrtpError::AuthFailed));
        }
    }

    #[test]
    fn replays_are_rejected_within_and_behind_the_window() {
        for suite in Suite::ALL {
            let (mut tx, mut rx) = pair(suite);
            let sent: Vec<Vec<u8>> = (0..100u16)
                .map(|s| {
                    let mut p = rtp(s, 1, b"abc");
                    tx.protect_rtp(&mut p).unwrap();
                    p
                })
                .collect();
            // Out of order within the window is fine; each only once.
            for i in [0, 2, 1, 5, 3, 4] {
                rx.unprotect_rtp(&mut sent[i].clone()).unwrap();
            }
            assert_eq!(
                rx.unprotect_rtp(&mut sent[2].clone()),
                Err(SrtpError::Replayed)
            );
            for p in &sent[6..] {
                rx.unprotect_rtp(&mut p.clone()).unwrap();
            }
            // Index 99 is the top: 36 is inside the window (seen), 35 is 64 behind.
            assert_eq!(
                rx.unprotect_rtp(&mut sent[36].clone()),
                Err(SrtpError::Replayed)
            );
            assert_eq!(
                rx.unprotect_rtp(&mut sent[35].clone()),
                Err(SrtpError::Replayed)
            );
            // A tampered packet does not move the window: the genuine one still passes.
            let mut next = rtp(100, 1, b"abc");
            tx.protect_rtp(&mut next).unwrap();
            let mut bad = next.clone();
            bad[13] ^= 0x40;
            assert_eq!(rx.unprotect_rtp(&mut bad), Err(SrtpError::AuthFailed));
            rx.unprotect_rtp(&mut next).unwrap();
        }
    }

    #[test]
    fn the_roc_follows_a_wrap_at_65535_on_both_sides() {
        for suite in Suite::ALL {
            let (mut tx, mut rx) = pair(suite);
            let mut seq = 65_530u16;
            let mut out = Vec::new();
            for _ in 0..12 {
                let mut p = rtp(seq, 9, b"payload");
                tx.protect_rtp(&mut p).unwrap();
                out.push(p);
                seq = seq.wrapping_add(1);
            }
            assert_eq!(
                tx.rtp_window.unwrap().top,
                1 << 16 | 5,
                "ROC 1 after the wrap"
            );
            // Delivered with the packets around the wrap reordered.
            for i in [0, 1, 2, 3, 4, 6, 5, 7, 9, 8, 10, 11] {
                let n = rx.unprotect_rtp(&mut out[i]).unwrap();
                assert_eq!(&out[i][12..n], b"payload", "{i}");
            }
            assert_eq!(rx.rtp_window.unwrap().top, 1 << 16 | 5);
            // A receiver that guessed the ROC wrong (joined after the wrap with ROC 0) cannot
            // authenticate: the ROC is in the tag (RFC 3711 §4.2).
            let mut late = SrtpStream::new(suite, &key_of(suite, 7));
            let mut p = rtp(seq, 9, b"payload");
            tx.protect_rtp(&mut p).unwrap();
            assert_eq!(late.unprotect_rtp(&mut p), Err(SrtpError::AuthFailed));
        }
    }

    #[test]
    fn rtcp_round_trip_index_and_replay() {
        for suite in Suite::ALL {
            let (mut tx, mut rx) = pair(suite);
            // An RR with no blocks and an SDES chunk, 8 + 12 bytes.
            let plain = vec![
                0x81, 201, 0, 1, 0, 0, 0, 42, 0x81, 202, 0, 2, 0, 0, 0, 42, 1, 1, b'x', 0,
            ];
            let mut packets = Vec::new();
            for _ in 0..3 {
                let mut p = plain.clone();
                tx.protect_rtcp(&mut p).unwrap();
                assert_eq!(p.len(), plain.len() + 4 + suite.rtcp_tag_len(), "{suite:?}");
                assert_eq!(p[..8], plain[..8]);
                assert_ne!(p[8..20], plain[8..]);
                packets.push(p);
            }
            // The E flag and index: before the HMAC tag, last after the AEAD one.
            let at = if suite.is_aead() { 20 + 16 } else { 20 };
            assert_eq!(
                be32(&packets[2][at..at + 4]),
                0x8000_0002,
                "E flag and index 2"
            );
            let mut bad = packets[1].clone();
            bad[9] ^= 1;
            assert_eq!(rx.unprotect_rtcp(&mut bad), Err(SrtpError::AuthFailed));
            let first = packets[0].clone();
            for p in &mut packets {
                let n = rx.unprotect_rtcp(p).unwrap();
                assert_eq!(p[..n], plain[..]);
            }
            let mut again = first;
            assert_eq!(rx.unprotect_rtcp(&mut again), Err(SrtpError::Replayed));
        }
    }

    /// With an MKI (RFC 3711 §3.1): SRTP `payload | MKI | tag` with an HMAC suite and
    /// `payload+tag | MKI` with AES-GCM; SRTCP `… | E+index | MKI | tag` and `… | E+index |
    /// MKI`. The MKI is not authenticated: another one is refused as another key's
    /// (`UnknownMki`), a short packet as malformed, never a panic.
    #[test]
    fn an_mki_is_carried_in_each_packet_where_its_suite_puts_it() {
        let mki = Mki::new(0x0102, 4).unwrap();
        for suite in Suite::ALL {
            let k = key_of(suite, 1).with_mki(Some(mki));
            let (mut tx, mut rx) = (SrtpStream::new(suite, &k), SrtpStream::new(suite, &k));
            let plain = rtp(7, 0xabcd, &[0x55; 160]);
            let mut p = plain.clone();
            tx.protect_rtp(&mut p).unwrap();
            let tag = suite.rtp_tag_len();
            assert_eq!(p.len(), plain.len() + tag + 4, "{suite:?}");
            let at = if suite.is_aead() {
                p.len() - 4
            } else {
                p.len() - tag - 4
            };
            assert_eq!(p[at..at + 4], [0, 0, 1, 2], "{suite:?}");
            let mut wrong = p.clone();
            wrong[at + 3] = 3;
            assert_eq!(rx.unprotect_rtp(&mut wrong), Err(SrtpError::UnknownMki));
            let n = rx.unprotect_rtp(&mut p).unwrap();
            assert_eq!(p[..n], plain[..], "{suite:?}");
            // In place, as the echo reflects: the room of the tag and the MKI is reused.
            let next = rtp(8, 0xabcd, &[0x55; 160]);
            let mut buf = next.clone();
            buf.resize(next.len() + tag + 4, 0);
            let len = tx.protect_rtp_in_place(&mut buf, next.len()).unwrap();
            assert_eq!(len, buf.len());
            assert_eq!(rx.unprotect_rtp(&mut buf).unwrap(), next.len());
            assert_eq!(buf[..next.len()], next[..]);
            // SRTCP.
            let rr = vec![0x80, 201, 0, 1, 0, 0, 0, 42];
            let mut c = rr.clone();
            tx.protect_rtcp(&mut c).unwrap();
            let rtag = suite.rtcp_tag_len();
            assert_eq!(c.len(), 8 + rtag + 4 + 4, "{suite:?}");
            let at = if suite.is_aead() {
                c.len() - 4
            } else {
                c.len() - rtag - 4
            };
            assert_eq!(c[at..at + 4], [0, 0, 1, 2], "{suite:?}");
            // The E flag and index just before the MKI, whichever the suite.
            assert_eq!(be32(&c[at - 4..at]), 0x8000_0000, "{suite:?}");
            let n = rx.unprotect_rtcp(&mut c).unwrap();
            assert_eq!(c[..n], rr[..]);
            // Without the MKI the receiver expects: refused, never a panic.
            let plain_rx = &mut SrtpStream::new(suite, &key_of(suite, 1));
            let mut q = plain.clone();
            tx.protect_rtp(&mut q).unwrap();
            assert_eq!(plain_rx.unprotect_rtp(&mut q), Err(SrtpError::AuthFailed));
            for len in 0..8 {
                let _ = rx.unprotect_rtp(&mut vec![0x80u8; len]);
                let _ = rx.unprotect_rtcp(&mut vec![0x80u8; len]);
            }
        }
    }

    #[test]
    fn short_and_odd_packets_never_panic() {
        for suite in Suite::ALL {
            let (mut tx, mut rx) = pair(suite);
            for len in 0..60 {
                let mut p = vec![0x80u8; len];
                let _ = rx.unprotect_rtp(&mut p);
                let _ = rx.unprotect_rtcp(&mut p);
                let mut v = p.clone();
                let _ = tx.protect_rtp(&mut v);
                let _ = tx.protect_rtcp(&mut v);
            }
            // An extension header longer than the packet.
            let mut p = rtp(1, 1, &[0, 0, 0xff, 0xff]);
            p[0] |= 0x10;
            assert_eq!(tx.protect_rtp(&mut p), Err(SrtpError::Malformed));
            // Not RTP version 2: the HMAC fails first; AES-GCM cannot find its AAD.
            let want = if suite.is_aead() {
                SrtpError::Malformed
            } else {
                SrtpError::AuthFailed
            };
            assert_eq!(rx.unprotect_rtp(&mut [0u8; 30]), Err(want), "{suite:?}");
        }
    }

    #[test]
    fn crypto_lines_parse_or_say_why_not() {
        let k = key(1);
        let b64 = k.to_base64();
        assert_eq!(b64.len(), 40);
        let ok = Crypto::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{b64}|2^31"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (ok.tag, ok.suite, &ok.key),
            (1, Suite::AesCm128HmacSha1_80, &k)
        );
        assert_eq!(
            Crypto::parse(&ok.value()).unwrap().unwrap(),
            ok,
            "value() round trips"
        );
        // An MKI (`|value:length`, RFC 4568 §6.1): kept with the key, printed back.
        let with_mki = Crypto::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{b64}|2^31|1:4"))
            .unwrap()
            .unwrap();
        assert_eq!(with_mki.key.mki(), Mki::new(1, 4));
        assert_eq!(
            with_mki.value(),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{b64}|1:4")
        );
        assert_eq!(Crypto::parse(&with_mki.value()).unwrap().unwrap(), with_mki);
        let cases: [(&str, Result<(), CryptoError>); 13] = [
            ("", Err(CryptoError::Fields)),
            ("1 AES_CM_128_HMAC_SHA1_80", Err(CryptoError::Fields)),
            (
                "x AES_CM_128_HMAC_SHA1_80 inline:AAAA",
                Err(CryptoError::Tag),
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 uri:x",
                Err(CryptoError::KeyMethod),
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:!!!!",
                Err(CryptoError::Base64),
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:AAAA",
                Err(CryptoError::KeyLength(3, Suite::AesCm128HmacSha1_80)),
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:{k}|x",
                Err(CryptoError::KeyInfo),
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:{k}|1:4;inline:{k}|2:4",
                Ok(()),
            ),
            // An MKI of 0 or 129 bytes, or a value its length cannot hold.
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:{k}|1:0",
                Err(CryptoError::KeyInfo),
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:{k}|256:1",
                Err(CryptoError::KeyInfo),
            ),
            ("1 AES_CM_128_HMAC_SHA1_80 inline:{k} KDR=1", Ok(())),
            ("2 AES_192_CM_HMAC_SHA1_80 inline:whatever", Ok(())),
            (
                "2 AEAD_AES_256_GCM inline:{k}",
                Err(CryptoError::KeyLength(30, Suite::AeadAes256Gcm)),
            ),
        ];
        for (line, want) in cases {
            let line = line.replace("{k}", &b64);
            match (Crypto::parse(&line), want) {
                (Err(e), Err(w)) => assert_eq!(e, w, "{line}"),
                (Ok(Err(_)), Ok(())) => {}
                (got, want) => panic!("{line}: {got:?}, want {want:?}"),
            }
        }
        assert_eq!(format!("{k:?}"), "MasterKey(..)");
    }
}
