//! DSCP marking (RFC 2474) of the packets a run sends: `sip_dscp` on a registrar marks its
//! signalling, `rtp_dscp` on a group its calls' RTP and RTCP, as phones do so that a network's
//! QoS policy can give voice its queue (RFC 4594 §4: EF, 46, for telephony media; CS3, 24, for
//! call signalling). A test can then check that the path keeps the marks, or compare a marked
//! group with an unmarked one through the same network.

use std::fmt;
use std::io;
use std::os::fd::AsRawFd;

/// A Differentiated Services codepoint: the six high bits of the IPv4 TOS byte or the IPv6
/// Traffic Class (RFC 2474 §3); the two low bits (ECN, RFC 3168) stay zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dscp(u8);

/// The codepoints with a name: class selectors (RFC 2474 §4.2.2), assured forwarding
/// (RFC 2597 §6), expedited forwarding (RFC 3246), VOICE-ADMIT (RFC 5865) and lower effort
/// (RFC 8622).
const NAMES: &[(&str, u8)] = &[
    ("DF", 0),
    ("CS0", 0),
    ("LE", 1),
    ("CS1", 8),
    ("AF11", 10),
    ("AF12", 12),
    ("AF13", 14),
    ("CS2", 16),
    ("AF21", 18),
    ("AF22", 20),
    ("AF23", 22),
    ("CS3", 24),
    ("AF31", 26),
    ("AF32", 28),
    ("AF33", 30),
    ("CS4", 32),
    ("AF41", 34),
    ("AF42", 36),
    ("AF43", 38),
    ("CS5", 40),
    ("VOICE-ADMIT", 44),
    ("EF", 46),
    ("CS6", 48),
    ("CS7", 56),
];

impl Dscp {
    /// A codepoint from its number (0–63).
    pub fn new(value: u8) -> Option<Self> {
        (value < 64).then_some(Self(value))
    }

    /// A codepoint from its name (`EF`, `CS3`, `AF41`, …, any case) or its number (`46`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if let Ok(n) = t.parse::<u8>() {
            return Self::new(n).ok_or_else(|| format!("{n} is not a DSCP (0–63)"));
        }
        NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(t))
            .map(|&(_, v)| Self(v))
            .ok_or_else(|| {
                format!("unknown DSCP {t:?}: a number 0–63 or a name such as EF, CS3, AF41")
            })
    }

    /// The codepoint's number.
    pub fn value(self) -> u8 {
        self.0
    }

    /// The TOS / Traffic Class byte: the codepoint in the six high bits, ECN zero.
    pub fn tos(self) -> u8 {
        self.0 << 2
    }

    /// Marks what `sock` sends from now on. `v6`: the socket is an IPv6 one; it gets the
    /// Traffic Class and, for the IPv4 peers a dual-stack socket reaches, the TOS byte too
    /// (Linux takes `IP_TOS` on an IPv6 socket for its IPv4-mapped traffic).
    pub fn mark(self, sock: &impl AsRawFd, v6: bool) -> io::Result<()> {
        let tos = libc::c_int::from(self.tos());
        let set = |level, name| crate::rxstamp::set_option(sock, level, name, tos);
        if v6 {
            set(libc::IPPROTO_IPV6, libc::IPV6_TCLASS)?;
            // An IPv6-only socket may refuse it; it then has no IPv4 traffic to mark.
            let _ = set(libc::IPPROTO_IP, libc::IP_TOS);
            Ok(())
        } else {
            set(libc::IPPROTO_IP, libc::IP_TOS)
        }
        .map_err(|e| io::Error::new(e.kind(), format!("marking DSCP {self}: {e}")))
    }
}

impl fmt::Display for Dscp {
    /// `46 (EF)`, or the number alone when it has no name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // CS0 and DF are one codepoint: the first name found (DF) is the usual one.
        match NAMES.iter().find(|&&(_, v)| v == self.0) {
            Some((name, _)) => write!(f, "{} ({name})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn names_and_numbers_parse_to_their_codepoints() {
        assert_eq!(Dscp::parse("EF").unwrap().value(), 46);
        assert_eq!(Dscp::parse("ef").unwrap().tos(), 0xb8);
        assert_eq!(Dscp::parse("cs3").unwrap().value(), 24);
        assert_eq!(Dscp::parse("AF41").unwrap().value(), 34);
        assert_eq!(Dscp::parse("voice-admit").unwrap().value(), 44);
        assert_eq!(Dscp::parse(" 63 ").unwrap().value(), 63);
        assert_eq!(Dscp::parse("0").unwrap().to_string(), "0 (DF)");
        assert_eq!(Dscp::parse("46").unwrap().to_string(), "46 (EF)");
        assert_eq!(Dscp::parse("45").unwrap().to_string(), "45");
        let e = Dscp::parse("64").unwrap_err();
        assert!(e.contains("0–63"), "{e}");
        let e = Dscp::parse("EX").unwrap_err();
        assert!(e.contains("EF, CS3"), "{e}");
        assert!(Dscp::parse("-1").is_err());
        assert!(Dscp::new(64).is_none());
    }

    /// The kernel keeps the mark: read back with getsockopt, for both families.
    #[test]
    fn a_marked_socket_carries_the_tos_byte() {
        let get = |sock: &UdpSocket, level, name| {
            let mut v: libc::c_int = -1;
            let mut len = size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: `v` and `len` outlive the call; `len` is `v`'s size.
            #[allow(unsafe_code)] // reason: getsockopt, test only
            let r = unsafe {
                libc::getsockopt(
                    sock.as_raw_fd(),
                    level,
                    name,
                    (&raw mut v).cast(),
                    &raw mut len,
                )
            };
            assert_eq!(r, 0, "{}", io::Error::last_os_error());
            v
        };
        let v4 = UdpSocket::bind("127.0.0.1:0").unwrap();
        Dscp::parse("EF").unwrap().mark(&v4, false).unwrap();
        assert_eq!(get(&v4, libc::IPPROTO_IP, libc::IP_TOS), 0xb8);
        if let Ok(v6) = UdpSocket::bind("[::1]:0") {
            Dscp::parse("CS3").unwrap().mark(&v6, true).unwrap();
            assert_eq!(get(&v6, libc::IPPROTO_IPV6, libc::IPV6_TCLASS), 0x60);
        }
    }
}
