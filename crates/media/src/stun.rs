//! STUN messages (RFC 8489, RFC 5389) as ICE uses them (RFC 8445 §7): Binding requests,
//! success and error responses with short-term credentials. Parsing and building only, no
//! I/O: [`Message::parse`] reads a datagram (never panics; every malformed one is a
//! [`StunError`]), [`Builder`] writes one, attribute by attribute, and ends it with
//! MESSAGE-INTEGRITY (HMAC-SHA1, RFC 8489 §14.5) and FINGERPRINT (CRC-32, §14.7).
//!
//! Demultiplexing (RFC 7983 §7): a datagram whose first byte is 0–3 is STUN ([`is_stun`]),
//! 20–63 DTLS ([`crate::dtls::is_dtls`]), 128–191 RTP/RTCP.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

/// RFC 8489 §5: the magic cookie, bytes 4–7 of every message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// RFC 8489 §18.2: the Binding method.
pub const BINDING: u16 = 0x001;

/// Attribute types (RFC 8489 §18.3, RFC 8445 §16.1).
pub mod attr {
    /// CHANNEL-NUMBER (RFC 8656 §18.1).
    pub const CHANNEL_NUMBER: u16 = 0x000C;
    /// LIFETIME (RFC 8656 §18.2).
    pub const LIFETIME: u16 = 0x000D;
    /// XOR-PEER-ADDRESS (RFC 8656 §18.3).
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    /// DATA (RFC 8656 §18.4).
    pub const DATA: u16 = 0x0013;
    /// REALM (RFC 8489 §14.9).
    pub const REALM: u16 = 0x0014;
    /// NONCE (RFC 8489 §14.10).
    pub const NONCE: u16 = 0x0015;
    /// XOR-RELAYED-ADDRESS (RFC 8656 §18.5).
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    /// REQUESTED-TRANSPORT (RFC 8656 §18.7).
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    /// USERNAME.
    pub const USERNAME: u16 = 0x0006;
    /// MESSAGE-INTEGRITY (HMAC-SHA1).
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE.
    pub const ERROR_CODE: u16 = 0x0009;
    /// UNKNOWN-ATTRIBUTES.
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    /// MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6).
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    /// XOR-MAPPED-ADDRESS.
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// PRIORITY (RFC 8445 §16.1).
    pub const PRIORITY: u16 = 0x0024;
    /// USE-CANDIDATE (RFC 8445 §16.1).
    pub const USE_CANDIDATE: u16 = 0x0025;
    /// SOFTWARE.
    pub const SOFTWARE: u16 = 0x8022;
    /// FINGERPRINT.
    pub const FINGERPRINT: u16 = 0x8028;
    /// ICE-CONTROLLED (RFC 8445 §16.1).
    pub const ICE_CONTROLLED: u16 = 0x8029;
    /// ICE-CONTROLLING (RFC 8445 §16.1).
    pub const ICE_CONTROLLING: u16 = 0x802A;
}

/// RFC 8489 §14.7: the FINGERPRINT is the CRC-32 of the message XOR this.
const FINGERPRINT_XOR: u32 = 0x5354_554E;
const HEADER: usize = 20;

/// RFC 7983 §7: the first byte of a STUN message is 0–3 (the two top bits zero, RFC 8489
/// §5). One comparison, so the RTP path pays one branch.
pub fn is_stun(datagram: &[u8]) -> bool {
    matches!(datagram.first(), Some(0..=3))
}

/// A message's class (RFC 8489 §5: bits C1 C0 of the type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A request (0b00).
    Request,
    /// An indication (0b01).
    Indication,
    /// A success response (0b10).
    Success,
    /// An error response (0b11).
    Error,
}

impl Class {
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0x0000,
            Class::Indication => 0x0010,
            Class::Success => 0x0100,
            Class::Error => 0x0110,
        }
    }
}

/// RFC 8489 §5: the method's 12 bits interleaved with the class's two.
fn message_type(class: Class, method: u16) -> u16 {
    (method & 0x0F80) << 2 | (method & 0x0070) << 1 | (method & 0x000F) | class.bits()
}

fn split_type(t: u16) -> (Class, u16) {
    let class = match t & 0x0110 {
        0x0000 => Class::Request,
        0x0010 => Class::Indication,
        0x0100 => Class::Success,
        _ => Class::Error,
    };
    let method = (t & 0x3E00) >> 2 | (t & 0x00E0) >> 1 | (t & 0x000F);
    (class, method)
}

/// A transaction ID (RFC 8489 §5: 96 bits, random per transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransactionId(pub [u8; 12]);

/// Why a datagram is not a STUN message we can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    /// Shorter than the 20-byte header, or than its length field says.
    #[error("truncated STUN message ({0} bytes)")]
    Truncated(usize),
    /// The top two bits of the type are not zero (RFC 8489 §5).
    #[error("not a STUN message (first byte {0:#04x})")]
    NotStun(u8),
    /// No magic cookie: an RFC 3489 message, which ICE does not use.
    #[error("no STUN magic cookie (RFC 3489 message?)")]
    NoCookie,
    /// The length field is not a multiple of 4 or not the datagram's.
    #[error("STUN length {length} does not fit the {datagram}-byte datagram")]
    BadLength {
        /// The header's length field.
        length: usize,
        /// The datagram's length.
        datagram: usize,
    },
    /// An attribute runs past the end of the message.
    #[error("STUN attribute {0:#06x} runs past the message")]
    AttributeOverrun(u16),
    /// An attribute's value has the wrong size or content for its type.
    #[error("malformed STUN attribute {0:#06x}")]
    BadAttribute(u16),
    /// FINGERPRINT present and wrong (RFC 8489 §14.7): not a STUN message for us.
    #[error("STUN FINGERPRINT mismatch")]
    BadFingerprint,
}

/// ERROR-CODE (RFC 8489 §14.8): the code (300–699) and its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCode {
    /// 300–699, e.g. 487 Role Conflict (RFC 8445 §7.3.1.1).
    pub code: u16,
    /// The reason phrase.
    pub reason: String,
}

/// A parsed STUN message. The attributes ICE uses are read into fields; others are skipped
/// by their length (comprehension-required ones listed in [`Message::unknown_required`]).
/// Integrity is checked against a key with [`Message::check_integrity`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    raw: &'a [u8],
    /// The class.
    pub class: Class,
    /// The method ([`BINDING`] for ICE).
    pub method: u16,
    /// The transaction ID.
    pub transaction: TransactionId,
    /// USERNAME (RFC 8445 §7.2.2: "RFRAG:LFRAG").
    pub username: Option<&'a str>,
    /// XOR-MAPPED-ADDRESS, un-XORed.
    pub xor_mapped_address: Option<SocketAddr>,
    /// PRIORITY.
    pub priority: Option<u32>,
    /// USE-CANDIDATE present.
    pub use_candidate: bool,
    /// ICE-CONTROLLING's tie-breaker.
    pub ice_controlling: Option<u64>,
    /// ICE-CONTROLLED's tie-breaker.
    pub ice_controlled: Option<u64>,
    /// ERROR-CODE.
    pub error: Option<ErrorCode>,
    /// SOFTWARE.
    pub software: Option<&'a str>,
    /// FINGERPRINT present (and right: a wrong one fails the parse).
    pub fingerprint: bool,
    /// REALM (long-term credentials, RFC 8489 §9.2).
    pub realm: Option<&'a str>,
    /// NONCE (long-term credentials, RFC 8489 §9.2).
    pub nonce: Option<&'a [u8]>,
    /// XOR-RELAYED-ADDRESS (TURN), un-XORed.
    pub xor_relayed_address: Option<SocketAddr>,
    /// XOR-PEER-ADDRESS (TURN), un-XORed.
    pub xor_peer_address: Option<SocketAddr>,
    /// LIFETIME in seconds (TURN).
    pub lifetime: Option<u32>,
    /// DATA (TURN).
    pub data: Option<&'a [u8]>,
    /// CHANNEL-NUMBER (TURN).
    pub channel_number: Option<u16>,
    /// Comprehension-required attributes (0x0000–0x7FFF) we do not know (RFC 8489 §15:
    /// a request with any is answered 420), at most 8.
    pub unknown_required: Vec<u16>,
    /// Where MESSAGE-INTEGRITY starts, if present.
    integrity_at: Option<usize>,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl<'a> Message<'a> {
    /// Parses one datagram. Never panics: anything that is not a well-formed STUN message
    /// with the magic cookie is an error. RFC 8489 §14.5, §14.7: attributes after
    /// MESSAGE-INTEGRITY are ignored but FINGERPRINT, nothing after FINGERPRINT.
    pub fn parse(raw: &'a [u8]) -> Result<Self, StunError> {
        if raw.len() < HEADER {
            return Err(StunError::Truncated(raw.len()));
        }
        if raw[0] & 0xC0 != 0 {
            return Err(StunError::NotStun(raw[0]));
        }
        if be32(raw, 4) != MAGIC_COOKIE {
            return Err(StunError::NoCookie);
        }
        let length = usize::from(be16(raw, 2));
        if !length.is_multiple_of(4) || HEADER + length != raw.len() {
            return Err(StunError::BadLength {
                length,
                datagram: raw.len(),
            });
        }
        let (class, method) = split_type(be16(raw, 0));
        let mut transaction = [0u8; 12];
        transaction.copy_from_slice(&raw[8..HEADER]);
        let mut m = Message {
            raw,
            class,
            method,
            transaction: TransactionId(transaction),
            username: None,
            xor_mapped_address: None,
            priority: None,
            use_candidate: false,
            ice_controlling: None,
            ice_controlled: None,
            error: None,
            software: None,
            realm: None,
            nonce: None,
            xor_relayed_address: None,
            xor_peer_address: None,
            lifetime: None,
            data: None,
            channel_number: None,
            fingerprint: false,
            unknown_required: Vec::new(),
            integrity_at: None,
        };
        let mut at = HEADER;
        while at < raw.len() {
            if raw.len() - at < 4 {
                return Err(StunError::Truncated(raw.len()));
            }
            let (typ, len) = (be16(raw, at), usize::from(be16(raw, at + 2)));
            let start = at + 4;
            if raw.len() - start < len {
                return Err(StunError::AttributeOverrun(typ));
            }
            let value = &raw[start..start + len];
            if m.fingerprint {
                // RFC 8489 §14.7: FINGERPRINT is the last attribute.
                return Err(StunError::BadAttribute(typ));
            }
            if typ == attr::FINGERPRINT {
                if len != 4 {
                    return Err(StunError::BadAttribute(typ));
                }
                if crc32_with_length(&raw[..at], at + 8 - HEADER) ^ FINGERPRINT_XOR
                    != be32(value, 0)
                {
                    return Err(StunError::BadFingerprint);
                }
                m.fingerprint = true;
            } else if m.integrity_at.is_none() {
                m.attribute(typ, value)?;
                if typ == attr::MESSAGE_INTEGRITY {
                    if len != 20 {
                        return Err(StunError::BadAttribute(typ));
                    }
                    m.integrity_at = Some(at);
                }
            }
            // Values are padded to 4 bytes (RFC 8489 §14); the padding may be cut off only
            // at the very end, which the length check above already excludes.
            at = (start + len).next_multiple_of(4).min(raw.len());
        }
        Ok(m)
    }

    fn attribute(&mut self, typ: u16, v: &'a [u8]) -> Result<(), StunError> {
        let bad = || StunError::BadAttribute(typ);
        match typ {
            attr::USERNAME => {
                // RFC 8489 §14.3: fewer than 513 bytes of UTF-8.
                if v.len() > 512 {
                    return Err(bad());
                }
                self.username = Some(std::str::from_utf8(v).map_err(|_| bad())?);
            }
            attr::SOFTWARE => self.software = std::str::from_utf8(v).ok(),
            attr::XOR_MAPPED_ADDRESS => {
                self.xor_mapped_address = Some(xor_address(v, &self.transaction).ok_or_else(bad)?);
            }
            attr::XOR_RELAYED_ADDRESS => {
                self.xor_relayed_address = Some(xor_address(v, &self.transaction).ok_or_else(bad)?);
            }
            attr::XOR_PEER_ADDRESS => {
                self.xor_peer_address = Some(xor_address(v, &self.transaction).ok_or_else(bad)?);
            }
            attr::REALM => {
                // RFC 8489 §14.9: fewer than 128 characters (763 bytes) of UTF-8.
                if v.len() > 763 {
                    return Err(bad());
                }
                self.realm = Some(std::str::from_utf8(v).map_err(|_| bad())?);
            }
            attr::NONCE => {
                // RFC 8489 §14.10: fewer than 128 characters (763 bytes).
                if v.len() > 763 {
                    return Err(bad());
                }
                self.nonce = Some(v);
            }
            attr::LIFETIME => {
                let b: [u8; 4] = v.try_into().map_err(|_| bad())?;
                self.lifetime = Some(u32::from_be_bytes(b));
            }
            attr::DATA => self.data = Some(v),
            attr::CHANNEL_NUMBER => {
                // RFC 8656 §18.1: the number, then 16 bits RFFU.
                if v.len() != 4 {
                    return Err(bad());
                }
                self.channel_number = Some(be16(v, 0));
            }
            // Known, and nothing we act on (RFC 8656 §18.7, §18.6: requests carry them).
            attr::REQUESTED_TRANSPORT => {}
            attr::PRIORITY => {
                let b: [u8; 4] = v.try_into().map_err(|_| bad())?;
                self.priority = Some(u32::from_be_bytes(b));
            }
            attr::USE_CANDIDATE => {
                if !v.is_empty() {
                    return Err(bad());
                }
                self.use_candidate = true;
            }
            attr::ICE_CONTROLLING | attr::ICE_CONTROLLED => {
                let b: [u8; 8] = v.try_into().map_err(|_| bad())?;
                let t = Some(u64::from_be_bytes(b));
                if typ == attr::ICE_CONTROLLING {
                    self.ice_controlling = t;
                } else {
                    self.ice_controlled = t;
                }
            }
            attr::ERROR_CODE => {
                if v.len() < 4 {
                    return Err(bad());
                }
                let code = u16::from(v[2] & 0x07) * 100 + u16::from(v[3]);
                if !(300..700).contains(&code) || v[3] > 99 {
                    return Err(bad());
                }
                let reason = String::from_utf8_lossy(&v[4..]).into_owned();
                self.error = Some(ErrorCode { code, reason });
            }
            attr::MESSAGE_INTEGRITY | attr::MESSAGE_INTEGRITY_SHA256 | attr::UNKNOWN_ATTRIBUTES => {
            }
            t if t < 0x8000 && self.unknown_required.len() < 8 => self.unknown_required.push(t),
            _ => {}
        }
        Ok(())
    }

    /// The datagram as received.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Whether MESSAGE-INTEGRITY is present.
    pub fn has_integrity(&self) -> bool {
        self.integrity_at.is_some()
    }

    /// RFC 8489 §14.5: whether MESSAGE-INTEGRITY is present and is the HMAC-SHA1 under
    /// `key` (short-term credentials: the password itself, §9.1.1; ICE does no SASLprep) of
    /// the message up to it, with the length field counting up to its end.
    pub fn check_integrity(&self, key: &[u8]) -> bool {
        let Some(at) = self.integrity_at else {
            return false;
        };
        let expected = hmac_sha1(key, &self.raw[..at], at + 24 - HEADER);
        // Constant-time comparison is not needed against a peer under test, but costs nothing.
        let got = &self.raw[at + 4..at + 24];
        expected
            .iter()
            .zip(got)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// RFC 8489 §14.2: XOR-MAPPED-ADDRESS: the port XOR the cookie's top 16 bits, an IPv4
/// address XOR the cookie, an IPv6 one XOR the cookie and the transaction ID.
fn xor_address(v: &[u8], txn: &TransactionId) -> Option<SocketAddr> {
    if v.len() < 4 {
        return None;
    }
    let port = be16(v, 2) ^ (MAGIC_COOKIE >> 16) as u16;
    let mut key = [0u8; 16];
    key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    key[4..].copy_from_slice(&txn.0);
    let ip = match (v[1], v.len()) {
        (0x01, 8) => {
            let b: [u8; 4] = std::array::from_fn(|i| v[4 + i] ^ key[i]);
            IpAddr::V4(Ipv4Addr::from(b))
        }
        (0x02, 20) => {
            let b: [u8; 16] = std::array::from_fn(|i| v[4 + i] ^ key[i]);
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

fn hmac_sha1(key: &[u8], before: &[u8], length: usize) -> [u8; 20] {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = HmacSha1::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(&before[..2]);
    mac.update(&(length as u16).to_be_bytes());
    mac.update(&before[4..]);
    mac.finalize().into_bytes().into()
}

/// CRC-32 (ISO 3309, the one of RFC 1952: reflected polynomial 0xEDB88320) of `before` with
/// the header's length field replaced by `length`.
fn crc32_with_length(before: &[u8], length: usize) -> u32 {
    let crc = crc32_update(0xFFFF_FFFF, &before[..2]);
    let crc = crc32_update(crc, &(length as u16).to_be_bytes());
    !crc32_update(crc, &before[4..])
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

fn crc32_update(mut crc: u32, bytes: &[u8]) -> u32 {
    for b in bytes {
        crc = CRC_TABLE[((crc ^ u32::from(*b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    crc
}

/// Writes a STUN message: the header, then attributes in call order, then
/// [`Builder::integrity`] and [`Builder::fingerprint`] (or [`Builder::finish`]).
#[derive(Debug, Clone)]
pub struct Builder {
    buf: Vec<u8>,
    pad: u8,
}

impl Builder {
    /// A message of `class` and `method` with the transaction ID `txn`.
    pub fn new(class: Class, method: u16, txn: TransactionId) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&message_type(class, method).to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(&txn.0);
        Builder { buf, pad: 0 }
    }

    /// The byte padding values to 4 bytes (RFC 8489 §14: any; we send zeros, RFC 5769's
    /// vectors use spaces).
    pub fn padding(mut self, byte: u8) -> Self {
        self.pad = byte;
        self
    }

    fn set_length(&mut self) {
        let len = (self.buf.len() - HEADER) as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
    }

    /// Any attribute, padded to 4 bytes. Values over 65535 bytes are cut (none of ours is).
    pub fn attribute(mut self, typ: u16, value: &[u8]) -> Self {
        let value = &value[..value.len().min(usize::from(u16::MAX))];
        self.buf.extend_from_slice(&typ.to_be_bytes());
        self.buf
            .extend_from_slice(&(value.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(value);
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(self.pad);
        }
        self.set_length();
        self
    }

    /// USERNAME.
    pub fn username(self, name: &str) -> Self {
        self.attribute(attr::USERNAME, name.as_bytes())
    }

    /// SOFTWARE.
    pub fn software(self, s: &str) -> Self {
        self.attribute(attr::SOFTWARE, s.as_bytes())
    }

    /// PRIORITY.
    pub fn priority(self, p: u32) -> Self {
        self.attribute(attr::PRIORITY, &p.to_be_bytes())
    }

    /// USE-CANDIDATE.
    pub fn use_candidate(self) -> Self {
        self.attribute(attr::USE_CANDIDATE, &[])
    }

    /// ICE-CONTROLLING (`controlling`) or ICE-CONTROLLED with the tie-breaker.
    pub fn role(self, controlling: bool, tie_breaker: u64) -> Self {
        let typ = if controlling {
            attr::ICE_CONTROLLING
        } else {
            attr::ICE_CONTROLLED
        };
        self.attribute(typ, &tie_breaker.to_be_bytes())
    }

    /// XOR-MAPPED-ADDRESS (RFC 8489 §14.2).
    pub fn xor_mapped_address(self, addr: SocketAddr) -> Self {
        self.xor_address(attr::XOR_MAPPED_ADDRESS, addr)
    }

    /// An address attribute XORed as XOR-MAPPED-ADDRESS is (RFC 8489 §14.2):
    /// XOR-RELAYED-ADDRESS and XOR-PEER-ADDRESS (RFC 8656 §18.3, §18.5) too.
    pub fn xor_address(self, typ: u16, addr: SocketAddr) -> Self {
        let mut key = [0u8; 16];
        key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        key[4..].copy_from_slice(&self.buf[8..HEADER]);
        let mut v = vec![0u8];
        v.push(if addr.is_ipv4() { 0x01 } else { 0x02 });
        v.extend_from_slice(&(addr.port() ^ (MAGIC_COOKIE >> 16) as u16).to_be_bytes());
        match addr.ip() {
            IpAddr::V4(ip) => v.extend(ip.octets().iter().zip(key).map(|(a, k)| a ^ k)),
            IpAddr::V6(ip) => v.extend(ip.octets().iter().zip(key).map(|(a, k)| a ^ k)),
        }
        self.attribute(typ, &v)
    }

    /// REALM.
    pub fn realm(self, realm: &str) -> Self {
        self.attribute(attr::REALM, realm.as_bytes())
    }

    /// NONCE.
    pub fn nonce(self, nonce: &[u8]) -> Self {
        self.attribute(attr::NONCE, nonce)
    }

    /// LIFETIME in seconds (RFC 8656 §18.2).
    pub fn lifetime(self, seconds: u32) -> Self {
        self.attribute(attr::LIFETIME, &seconds.to_be_bytes())
    }

    /// REQUESTED-TRANSPORT (RFC 8656 §18.7): the IP protocol number, 17 for UDP.
    pub fn requested_transport(self, protocol: u8) -> Self {
        self.attribute(attr::REQUESTED_TRANSPORT, &[protocol, 0, 0, 0])
    }

    /// CHANNEL-NUMBER (RFC 8656 §18.1).
    pub fn channel_number(self, number: u16) -> Self {
        let n = number.to_be_bytes();
        self.attribute(attr::CHANNEL_NUMBER, &[n[0], n[1], 0, 0])
    }

    /// DATA (RFC 8656 §18.4).
    pub fn data(self, data: &[u8]) -> Self {
        self.attribute(attr::DATA, data)
    }

    /// ERROR-CODE (RFC 8489 §14.8), `code` 300–699.
    pub fn error_code(self, code: u16, reason: &str) -> Self {
        let mut v = vec![0, 0, (code / 100) as u8 & 0x07, (code % 100) as u8];
        v.extend_from_slice(reason.as_bytes());
        self.attribute(attr::ERROR_CODE, &v)
    }

    /// MESSAGE-INTEGRITY under `key` (RFC 8489 §14.5).
    pub fn integrity(self, key: &[u8]) -> Self {
        let length = self.buf.len() + 24 - HEADER;
        let mac = hmac_sha1(key, &self.buf, length);
        self.attribute(attr::MESSAGE_INTEGRITY, &mac)
    }

    /// FINGERPRINT (RFC 8489 §14.7), and the message.
    pub fn fingerprint(self) -> Vec<u8> {
        let crc = crc32_with_length(&self.buf, self.buf.len() + 8 - HEADER) ^ FINGERPRINT_XOR;
        self.attribute(attr::FINGERPRINT, &crc.to_be_bytes()).buf
    }

    /// The message without FINGERPRINT.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";
    const TXN: TransactionId = TransactionId([
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ]);

    fn vector(text: &str) -> Vec<u8> {
        let hex = text
            .lines()
            .find(|l| !l.starts_with('#'))
            .expect("a hex line");
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn request() -> Vec<u8> {
        vector(include_str!(
            "../../../testdata/rfc5769/2.1-sample-request.hex"
        ))
    }

    #[test]
    fn rfc5769_sample_request_parses_verifies_and_is_built_byte_exact() {
        let raw = request();
        let m = Message::parse(&raw).expect("parses");
        assert_eq!((m.class, m.method), (Class::Request, BINDING));
        assert_eq!(m.transaction, TXN);
        assert_eq!(m.software, Some("STUN test client"));
        assert_eq!(m.username, Some("evtj:h6vY"));
        assert_eq!(m.priority, Some(0x6e00_01ff));
        assert_eq!(m.ice_controlled, Some(0x932f_f9b1_5126_3b36));
        assert_eq!(m.ice_controlling, None);
        assert!(!m.use_candidate);
        assert!(m.fingerprint);
        assert!(m.check_integrity(PASSWORD));
        assert!(!m.check_integrity(b"VOkJxbRl1RmTxUk/WvJxBu"));
        let built = Builder::new(Class::Request, BINDING, TXN)
            .padding(b' ')
            .software("STUN test client")
            .priority(0x6e00_01ff)
            .role(false, 0x932f_f9b1_5126_3b36)
            .username("evtj:h6vY")
            .integrity(PASSWORD)
            .fingerprint();
        assert_eq!(built, raw);
    }

    #[test]
    fn rfc5769_sample_responses_ipv4_and_ipv6() {
        for (text, addr) in [
            (
                include_str!("../../../testdata/rfc5769/2.2-sample-ipv4-response.hex"),
                "192.0.2.1:32853",
            ),
            (
                include_str!("../../../testdata/rfc5769/2.3-sample-ipv6-response.hex"),
                "[2001:db8:1234:5678:11:2233:4455:6677]:32853",
            ),
        ] {
            let raw = vector(text);
            let m = Message::parse(&raw).expect("parses");
            let addr: SocketAddr = addr.parse().expect("address");
            assert_eq!((m.class, m.method), (Class::Success, BINDING));
            assert_eq!(m.xor_mapped_address, Some(addr));
            assert_eq!(m.software, Some("test vector"));
            assert!(m.check_integrity(PASSWORD));
            let built = Builder::new(Class::Success, BINDING, TXN)
                .padding(b' ')
                .software("test vector")
                .xor_mapped_address(addr)
                .integrity(PASSWORD)
                .fingerprint();
            assert_eq!(built, raw, "{addr}");
        }
    }

    #[test]
    fn error_response_with_role_conflict_round_trips() {
        let raw = Builder::new(Class::Error, BINDING, TXN)
            .error_code(487, "Role Conflict")
            .integrity(b"pwd")
            .fingerprint();
        let m = Message::parse(&raw).expect("parses");
        assert_eq!(m.class, Class::Error);
        assert_eq!(
            m.error,
            Some(ErrorCode {
                code: 487,
                reason: "Role Conflict".into()
            })
        );
        assert!(m.check_integrity(b"pwd"));
        let req = Builder::new(Class::Request, BINDING, TXN)
            .use_candidate()
            .role(true, 7)
            .finish();
        let m = Message::parse(&req).expect("parses");
        assert!(m.use_candidate && !m.fingerprint && !m.has_integrity());
        assert_eq!(m.ice_controlling, Some(7));
    }

    #[test]
    fn unknown_attributes_are_skipped_by_length() {
        let raw = Builder::new(Class::Request, BINDING, TXN)
            .attribute(0x7777, b"abc")
            .attribute(0xC001, b"12345")
            .username("a:b")
            .fingerprint();
        let m = Message::parse(&raw).expect("parses");
        assert_eq!(m.username, Some("a:b"));
        assert_eq!(m.unknown_required, vec![0x7777]);
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        let raw = request();
        // Every truncation, and every single-byte corruption.
        for n in 0..raw.len() {
            assert!(Message::parse(&raw[..n]).is_err(), "truncated to {n}");
        }
        for i in 0..raw.len() {
            for x in [0x01, 0x80, 0xff] {
                let mut bad = raw.clone();
                bad[i] ^= x;
                // An error, unless the flip turned FINGERPRINT's type into an unknown
                // attribute after MESSAGE-INTEGRITY (ignored, RFC 8489 §14.5): then the
                // message has no fingerprint.
                if let Ok(m) = Message::parse(&bad) {
                    assert!(
                        !m.fingerprint && (100..102).contains(&i),
                        "byte {i} ^ {x:#x}"
                    );
                }
            }
        }
        assert_eq!(Message::parse(&raw[..0]), Err(StunError::Truncated(0)));
        let mut no_cookie = raw.clone();
        no_cookie[4] = 0;
        assert_eq!(Message::parse(&no_cookie), Err(StunError::NoCookie));
        let mut fp = raw.clone();
        let last = fp.len() - 1;
        fp[last] ^= 1;
        assert_eq!(Message::parse(&fp), Err(StunError::BadFingerprint));
        // An attribute longer than the message.
        let mut over = Builder::new(Class::Request, BINDING, TXN)
            .username("abcd")
            .finish();
        over[23] = 200;
        assert_eq!(
            Message::parse(&over),
            Err(StunError::AttributeOverrun(attr::USERNAME))
        );
        // Bad sizes of known attributes.
        for (typ, v) in [
            (attr::PRIORITY, &b"abc"[..]),
            (attr::ICE_CONTROLLING, b"1234"),
            (attr::USE_CANDIDATE, b"x"),
            (attr::XOR_MAPPED_ADDRESS, b"\0\x01\0\0\0"),
            (attr::ERROR_CODE, b"\0\0\x09\x63"),
            (attr::USERNAME, b"\xff\xfe"),
        ] {
            let m = Builder::new(Class::Request, BINDING, TXN)
                .attribute(typ, v)
                .finish();
            assert_eq!(Message::parse(&m), Err(StunError::BadAttribute(typ)));
        }
    }

    #[test]
    fn demux_by_first_byte() {
        assert!(is_stun(&request()));
        assert!(!is_stun(&[20, 0]) && !is_stun(&[0x80, 0]) && !is_stun(&[]));
        assert!(crate::dtls::is_dtls(&[22]) && !crate::dtls::is_dtls(&request()));
    }
}
