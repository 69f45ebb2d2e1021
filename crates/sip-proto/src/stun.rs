//! The few bytes of STUN (RFC 5389) an outbound phone needs for its UDP keep-alives (RFC 5626
//! §4.4.2): a Binding request out, a Binding success response in, its XOR-MAPPED-ADDRESS read.
//!
//! Deliberately minimal and sans-IO (no attributes sent, no FINGERPRINT, no
//! MESSAGE-INTEGRITY): the media crate grows a full codec of its own for ICE; the two can merge
//! later.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// RFC 5389 §6: the magic cookie, bytes 4–8 of every message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;

/// RFC 5389 §18.1: Binding request and its success response.
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const BINDING_ERROR: u16 = 0x0111;

/// RFC 5389 §18.2 attribute types.
const MAPPED_ADDRESS: u16 = 0x0001;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;

/// Why a datagram is not a usable Binding response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    /// Shorter than its header or its stated length.
    #[error("STUN message truncated")]
    Truncated,
    /// Not a Binding success or error response.
    #[error("STUN message type {0:#06x} is not a Binding response")]
    NotBindingResponse(u16),
    /// A Binding error response (its code, RFC 5389 §15.6, when given).
    #[error("STUN Binding error response{}", .0.map(|c| format!(" {c}")).unwrap_or_default())]
    ErrorResponse(Option<u16>),
    /// An address attribute that cannot be read.
    #[error("STUN address attribute malformed")]
    BadAddress,
}

/// True when `bytes` look like STUN, not SIP (RFC 5389 §6 and RFC 5626 §4.4.2: the first two
/// bits are zero and the magic cookie follows; a SIP message starts with a letter).
pub fn is_stun(bytes: &[u8]) -> bool {
    bytes.len() >= 20
        && bytes[0] & 0xC0 == 0
        && bytes[4..8] == MAGIC_COOKIE.to_be_bytes()
        && bytes.len() == 20 + usize::from(u16::from_be_bytes([bytes[2], bytes[3]]))
}

/// A Binding request with transaction ID `tid` and no attributes (RFC 5389 §7.1).
pub fn binding_request(tid: [u8; 12]) -> [u8; 20] {
    let mut m = [0u8; 20];
    m[0..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
    // Length 0: no attributes.
    m[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    m[8..20].copy_from_slice(&tid);
    m
}

/// A Binding success response to request `tid` telling the client it was seen at `mapped`
/// (XOR-MAPPED-ADDRESS, RFC 5389 §15.2): what a registrar answers an outbound phone's UDP
/// keep-alive with (RFC 5626 §4.4.2).
pub fn binding_success(tid: [u8; 12], mapped: SocketAddr) -> Vec<u8> {
    let mut cookie_tid = [0u8; 16];
    cookie_tid[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    cookie_tid[4..].copy_from_slice(&tid);
    let (family, octets) = match mapped.ip() {
        IpAddr::V4(ip) => (1, ip.octets().to_vec()),
        IpAddr::V6(ip) => (2, ip.octets().to_vec()),
    };
    let port = mapped.port().to_be_bytes();
    // Reserved, family, X-Port, X-Address (RFC 5389 §15.2): XORed with cookie and tid.
    let mut value = vec![0, family, port[0] ^ cookie_tid[0], port[1] ^ cookie_tid[1]];
    value.extend(octets.iter().zip(cookie_tid).map(|(b, x)| b ^ x));
    let mut m = Vec::with_capacity(20 + 4 + value.len());
    m.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
    // `value` is 8 (IPv4) or 20 (IPv6) bytes: the lengths fit a u16.
    m.extend_from_slice(&((4 + value.len()) as u16).to_be_bytes());
    m.extend_from_slice(&cookie_tid);
    m.extend_from_slice(&XOR_MAPPED_ADDRESS.to_be_bytes());
    m.extend_from_slice(&(value.len() as u16).to_be_bytes());
    m.extend_from_slice(&value);
    m
}

/// The transaction ID of a STUN request (`None` when `bytes` is not a Binding request).
pub fn binding_request_tid(bytes: &[u8]) -> Option<[u8; 12]> {
    if !is_stun(bytes) || u16::from_be_bytes([bytes[0], bytes[1]]) != BINDING_REQUEST {
        return None;
    }
    bytes[8..20].try_into().ok()
}

/// A Binding success response: its transaction ID and the address the server saw us at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingResponse {
    /// The transaction ID (the request's).
    pub tid: [u8; 12],
    /// XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS (RFC 3489 servers), else `None`.
    pub mapped: Option<SocketAddr>,
}

/// Reads a Binding response. Any other STUN message, or a truncated one, is an error, never a
/// panic.
pub fn parse_binding_response(bytes: &[u8]) -> Result<BindingResponse, StunError> {
    if bytes.len() < 20 {
        return Err(StunError::Truncated);
    }
    let kind = u16::from_be_bytes([bytes[0], bytes[1]]);
    let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    let body = bytes.get(20..20 + len).ok_or(StunError::Truncated)?;
    let mut tid = [0u8; 12];
    tid.copy_from_slice(&bytes[8..20]);
    let mut xor = None;
    let mut plain = None;
    let mut error_code = None;
    let mut at = 0;
    while at + 4 <= body.len() {
        let t = u16::from_be_bytes([body[at], body[at + 1]]);
        let l = usize::from(u16::from_be_bytes([body[at + 2], body[at + 3]]));
        let value = body.get(at + 4..at + 4 + l).ok_or(StunError::Truncated)?;
        match t {
            XOR_MAPPED_ADDRESS => xor = Some(address(value, Some(&bytes[4..20]))?),
            MAPPED_ADDRESS => plain = Some(address(value, None)?),
            // RFC 5389 §15.6: class (hundreds) and number.
            0x0009 if value.len() >= 4 => {
                error_code = Some(u16::from(value[2] & 7) * 100 + u16::from(value[3]))
            }
            _ => {}
        }
        // RFC 5389 §15: attributes are padded to 4 bytes.
        at += 4 + l.div_ceil(4) * 4;
    }
    match kind {
        BINDING_SUCCESS => Ok(BindingResponse {
            tid,
            mapped: xor.or(plain),
        }),
        BINDING_ERROR => Err(StunError::ErrorResponse(error_code)),
        k => Err(StunError::NotBindingResponse(k)),
    }
}

/// An address attribute (RFC 5389 §15.1, §15.2); `xor` is the cookie and transaction ID.
fn address(v: &[u8], xor: Option<&[u8]>) -> Result<SocketAddr, StunError> {
    if v.len() < 8 {
        return Err(StunError::BadAddress);
    }
    let mask = |i: usize| xor.map_or(0, |x| x[i]);
    let port = u16::from_be_bytes([v[2] ^ mask(0), v[3] ^ mask(1)]);
    let ip = match v[1] {
        1 => IpAddr::V4(Ipv4Addr::new(
            v[4] ^ mask(0),
            v[5] ^ mask(1),
            v[6] ^ mask(2),
            v[7] ^ mask(3),
        )),
        2 if v.len() >= 20 => {
            let mut o = [0u8; 16];
            for (i, b) in o.iter_mut().enumerate() {
                *b = v[4 + i] ^ mask(i);
            }
            IpAddr::V6(Ipv6Addr::from(o))
        }
        _ => return Err(StunError::BadAddress),
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kamailio 5.6's stun module's answer to a Binding request from 127.0.0.1:42507
    /// (captured on loopback): XOR-MAPPED-ADDRESS and SOFTWARE.
    const KAMAILIO: &str = "010100382112a4428ed61d9cff1a112a92da3671002000080001a60b5e12a443802200275365727665723a206b616d61696c696f2028352e362e3320287838365f36342f6c696e7578292900";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn kamailios_binding_response_reads_its_xor_mapped_address() {
        let b = hex(KAMAILIO);
        assert!(is_stun(&b));
        let r = parse_binding_response(&b).unwrap();
        assert_eq!(r.tid, b[8..20]);
        assert_eq!(r.mapped, Some("127.0.0.1:34585".parse().unwrap()));
    }

    #[test]
    fn a_request_is_20_bytes_with_the_cookie_and_is_not_sip() {
        let r = binding_request([7; 12]);
        assert!(is_stun(&r));
        assert_eq!(&r[..4], &[0, 1, 0, 0]);
        assert!(!is_stun(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x\r\n\r\n"));
        assert_eq!(
            parse_binding_response(&r),
            Err(StunError::NotBindingResponse(1))
        );
    }

    #[test]
    fn our_success_response_reads_back_for_both_families() {
        for mapped in ["127.0.0.1:34585", "[2001:db8::7]:5060"] {
            let mapped: SocketAddr = mapped.parse().unwrap();
            let tid = [3; 12];
            let req = binding_request(tid);
            assert_eq!(binding_request_tid(&req), Some(tid));
            let b = binding_success(tid, mapped);
            assert!(is_stun(&b));
            assert_eq!(binding_request_tid(&b), None, "a response, not a request");
            let r = parse_binding_response(&b).unwrap();
            assert_eq!((r.tid, r.mapped), (tid, Some(mapped)));
        }
        // Kamailio's, rebuilt without its SOFTWARE attribute.
        let k = hex(KAMAILIO);
        let tid: [u8; 12] = k[8..20].try_into().unwrap();
        let ours = binding_success(tid, "127.0.0.1:34585".parse().unwrap());
        assert_eq!(&ours[20..], &k[20..32]);
    }

    #[test]
    fn truncated_and_malformed_responses_are_errors() {
        let b = hex(KAMAILIO);
        for n in 0..b.len() {
            let _ = parse_binding_response(&b[..n]); // never panics
        }
        assert_eq!(parse_binding_response(&b[..30]), Err(StunError::Truncated));
        let mut bad = b.clone();
        bad[25] = 9; // address family
        assert_eq!(parse_binding_response(&bad), Err(StunError::BadAddress));
        let mut err = b[..20].to_vec();
        err[1] = 0x11;
        err[3] = 8;
        err.extend_from_slice(&[0, 9, 0, 4, 0, 0, 4, 87]);
        assert_eq!(
            parse_binding_response(&err),
            Err(StunError::ErrorResponse(Some(487)))
        );
    }
}
