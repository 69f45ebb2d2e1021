//! The registrar a test registers with, and the URIs built from it.
//!
//! A [`RegistrarConfig`] is what a user types in the "New Registrar" form: a domain (host name,
//! IPv4 or IPv6 literal), an optional port, a [`Transport`] and an optional outbound proxy
//! (`host[:port]`). [`RegistrarConfig::new`] validates every field and names the bad one;
//! once built, [`RegistrarConfig::registration_uri`] and [`RegistrarConfig::route_header`]
//! cannot fail.
//!
//! | Configuration                              | `registration_uri()`                      |
//! |--------------------------------------------|-------------------------------------------|
//! | `sip.example.com`, UDP, default port       | `sip:sip.example.com:5060;transport=udp`  |
//! | `pbx.corp.net`, TLS, 5061                  | `sip:pbx.corp.net:5061;transport=tls`     |
//! | `10.0.0.50`, TCP, 5060                     | `sip:10.0.0.50:5060;transport=tcp`        |
//! | `ws.example.com`, WSS, default port        | `sip:ws.example.com:443;transport=wss`    |
//! | `2001:db8::1`, UDP, default port           | `sip:[2001:db8::1]:5060;transport=udp`    |
//! | `example.com`, AUTO, no port               | `sip:example.com`                         |
//! | `example.com`, AUTO, 5070                  | `sip:example.com:5070`                    |
//!
//! AUTO writes neither a port nor a `transport` parameter unless the user gave a port: RFC 3263
//! §4.1/§4.2 use exactly those two URI parts to decide whether to ask NAPTR and SRV, so a
//! default port or transport written into the URI would switch DNS discovery off. With a port
//! given, RFC 3263 §4.2 says the transport is UDP (TLS for sips) and only A/AAAA is asked.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A SIP transport as offered in the registrar form (plus WS for internal use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP (RFC 3261), port 5060.
    Udp,
    /// TCP (RFC 3261), port 5060.
    Tcp,
    /// TLS over TCP (RFC 3261 §26.2), port 5061.
    Tls,
    /// Plain WebSocket (RFC 7118), port 80; not offered in the form, used internally.
    Ws,
    /// WebSocket over TLS (RFC 7118), port 443.
    Wss,
    /// DNS discovery decides (RFC 3263): NAPTR, then SRV, then A/AAAA.
    Auto,
}

impl Transport {
    /// The concrete transports, in the form's order.
    pub const CONCRETE: [Transport; 5] = [
        Transport::Udp,
        Transport::Tcp,
        Transport::Tls,
        Transport::Ws,
        Transport::Wss,
    ];

    /// The default port (RFC 3261 §19.1.2, RFC 7118 §5); `None` for [`Transport::Auto`].
    pub fn default_port(self) -> Option<u16> {
        match self {
            Transport::Udp | Transport::Tcp => Some(5060),
            Transport::Tls => Some(5061),
            Transport::Ws => Some(80),
            Transport::Wss => Some(443),
            Transport::Auto => None,
        }
    }

    /// The URI `transport` parameter value (lower case); `None` for [`Transport::Auto`].
    pub fn param(self) -> Option<&'static str> {
        match self {
            Transport::Udp => Some("udp"),
            Transport::Tcp => Some("tcp"),
            Transport::Tls => Some("tls"),
            Transport::Ws => Some("ws"),
            Transport::Wss => Some("wss"),
            Transport::Auto => None,
        }
    }

    /// True for transports that are reliable (RFC 3261 §17: timers D, I, J, K are zero).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// True for transports protected by TLS.
    pub fn is_secure(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.param().unwrap_or("auto"))
    }
}

impl FromStr for Transport {
    type Err = ConfigError;

    /// Case-insensitive: `udp`, `tcp`, `tls`, `ws`, `wss`, `auto`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        for (name, transport) in [
            ("udp", Transport::Udp),
            ("tcp", Transport::Tcp),
            ("tls", Transport::Tls),
            ("ws", Transport::Ws),
            ("wss", Transport::Wss),
            ("auto", Transport::Auto),
        ] {
            if t.eq_ignore_ascii_case(name) {
                return Ok(transport);
            }
        }
        Err(ConfigError::Transport(s.to_owned()))
    }
}

/// A host: a DNS name, an IPv4 literal or an IPv6 literal (printed in brackets in URIs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A host name (RFC 3261 §25.1 `hostname`), lower-cased, without a trailing dot.
    Name(String),
    /// An IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 address.
    V6(Ipv6Addr),
}

/// Why a host is not a host name, IPv4 or IPv6 literal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Nothing was given.
    #[error("empty host")]
    Empty,
    /// Longer than 253 characters (RFC 1035 §2.3.4).
    #[error("host name longer than 253 characters")]
    TooLong,
    /// A label is empty, longer than 63, or holds a character other than letters, digits, '-'.
    #[error("invalid host name label {0:?}")]
    BadLabel(String),
    /// The last label starts with a digit but the whole is not an IPv4 address (RFC 3261 §25.1
    /// `toplabel` starts with a letter), e.g. `10.0.0.256`.
    #[error("not a valid IPv4 address or host name")]
    BadIpv4,
    /// Brackets that do not hold a valid IPv6 address.
    #[error("invalid IPv6 reference")]
    BadIpv6,
    /// One colon: `host:port` where only a host is expected.
    #[error("a host, not host:port (the port has its own field)")]
    PortInHost,
}

impl Host {
    /// Parses a host name, an IPv4 literal, or an IPv6 literal with or without brackets.
    pub fn parse(s: &str) -> Result<Host, HostError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(HostError::Empty);
        }
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(HostError::BadIpv6)?;
            return inner
                .parse::<Ipv6Addr>()
                .map(Host::V6)
                .map_err(|_| HostError::BadIpv6);
        }
        if s.matches(':').count() == 1 {
            return Err(HostError::PortInHost);
        }
        if s.contains(':') {
            return s
                .parse::<Ipv6Addr>()
                .map(Host::V6)
                .map_err(|_| HostError::BadIpv6);
        }
        if let Ok(v4) = s.parse::<Ipv4Addr>() {
            return Ok(Host::V4(v4));
        }
        // A fully qualified name may end with the root dot; it names the same host.
        let name = s.strip_suffix('.').unwrap_or(s);
        if name.len() > 253 {
            return Err(HostError::TooLong);
        }
        for label in name.split('.') {
            let ok = !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(HostError::BadLabel(label.to_owned()));
            }
        }
        // RFC 3261 §25.1: toplabel = ALPHA / ALPHA *( alphanum / "-" ) alphanum.
        let top = name.rsplit('.').next().unwrap_or(name);
        if top.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
            return Err(HostError::BadIpv4);
        }
        Ok(Host::Name(name.to_ascii_lowercase()))
    }

    /// The address if this host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Name(_) => None,
            Host::V4(a) => Some(IpAddr::V4(*a)),
            Host::V6(a) => Some(IpAddr::V6(*a)),
        }
    }
}

impl From<IpAddr> for Host {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => Host::V4(a),
            IpAddr::V6(a) => Host::V6(a),
        }
    }
}

impl fmt::Display for Host {
    /// URI form: IPv6 in brackets (RFC 3261 §25.1 `IPv6reference`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

/// `host[:port]`, as typed for the outbound proxy; IPv6 with a port is `[::1]:5060`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// The host.
    pub host: Host,
    /// The port, if given (never 0).
    pub port: Option<u16>,
}

/// Why a `host[:port]` is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostPortError {
    /// The host part is invalid.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The port is not a number in 1–65535.
    #[error("port {0:?} is not in 1-65535")]
    Port(String),
}

impl FromStr for HostPort {
    type Err = HostPortError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            // [v6] or [v6]:port; Host::parse checks the bracketed address.
            let close = rest.find(']').ok_or(HostError::BadIpv6)?;
            let after = &rest[close + 1..]; // ']' is one ASCII byte
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or(HostError::BadIpv6)?),
            };
            (&s[..close + 2], port)
        } else if s.matches(':').count() > 1 {
            // A bare IPv6 address cannot carry a port: it must be written `[::1]:5060`.
            (s, None)
        } else {
            match s.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (s, None),
            }
        };
        let host = Host::parse(host)?;
        let port = port.map(parse_port).transpose()?;
        Ok(HostPort { host, port })
    }
}

fn parse_port(p: &str) -> Result<u16, HostPortError> {
    match p.parse::<u16>() {
        Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(HostPortError::Port(p.to_owned())),
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p}", self.host),
            None => write!(f, "{}", self.host),
        }
    }
}

/// A registrar's configuration field that failed validation; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The domain is not a host name, IPv4 or IPv6 literal.
    #[error("domain: {0}")]
    Domain(#[source] HostError),
    /// The port is 0 (or, parsed from text, not a number in 1–65535).
    #[error("port: {0:?} is not in 1-65535")]
    Port(String),
    /// The transport is not one of udp, tcp, tls, wss, auto.
    #[error("transport: unknown {0:?} (expected udp, tcp, tls, wss or auto)")]
    Transport(String),
    /// The outbound proxy is not `host[:port]`.
    #[error("outbound proxy: {0}")]
    OutboundProxy(#[source] HostPortError),
}

/// A validated registrar: where test endpoints send REGISTER (and INVITE, unless a proxy is set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrarConfig {
    domain: Host,
    port: Option<u16>,
    transport: Transport,
    outbound_proxy: Option<HostPort>,
}

impl RegistrarConfig {
    /// Validates the form's fields: `domain` a host name or IP literal (IPv6 with or without
    /// brackets), `port` 1–65535, `outbound_proxy` `host[:port]` (empty means none).
    pub fn new(
        domain: &str,
        port: Option<u16>,
        transport: Transport,
        outbound_proxy: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let domain = Host::parse(domain).map_err(ConfigError::Domain)?;
        if port == Some(0) {
            return Err(ConfigError::Port("0".to_owned()));
        }
        let outbound_proxy = match outbound_proxy.map(str::trim) {
            None | Some("") => None,
            Some(p) => Some(p.parse::<HostPort>().map_err(ConfigError::OutboundProxy)?),
        };
        Ok(Self {
            domain,
            port,
            transport,
            outbound_proxy,
        })
    }

    /// Like [`RegistrarConfig::new`] from the form's text fields (empty port/proxy = none).
    pub fn from_text(
        domain: &str,
        port: &str,
        transport: &str,
        outbound_proxy: &str,
    ) -> Result<Self, ConfigError> {
        let port = match port.trim() {
            "" => None,
            p => Some(parse_port(p).map_err(|_| ConfigError::Port(p.to_owned()))?),
        };
        Self::new(domain, port, transport.parse()?, Some(outbound_proxy))
    }

    /// The registrar's host.
    pub fn domain(&self) -> &Host {
        &self.domain
    }

    /// The port as configured (`None`: the transport's default, or DNS for AUTO).
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The transport as configured.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The outbound proxy, if any.
    pub fn outbound_proxy(&self) -> Option<&HostPort> {
        self.outbound_proxy.as_ref()
    }

    /// The port REGISTER is sent to: as configured, else the transport's default (`None` for
    /// AUTO without a port: DNS decides).
    pub fn effective_port(&self) -> Option<u16> {
        self.port.or(self.transport.default_port())
    }

    /// The Request-URI for REGISTER, e.g. `sip:sip.example.com:5060;transport=udp`.
    ///
    /// AUTO gives `sip:domain` (or `sip:domain:port` with a port) so that RFC 3263 discovery
    /// runs on it; see the module doc.
    pub fn registration_uri(&self) -> String {
        let mut uri = format!("sip:{}", self.domain);
        if let Some(port) = self.effective_port() {
            uri.push_str(&format!(":{port}"));
        }
        if let Some(t) = self.transport.param() {
            uri.push_str(";transport=");
            uri.push_str(t);
        }
        uri
    }

    /// The `Route` header value for the outbound proxy (RFC 3261 §8.1.2 pre-existing route
    /// set, loose routing `lr`), e.g. `<sip:proxy.example.com:5060;lr>`.
    ///
    /// A missing port is the transport's default. Transports other than UDP add a `transport`
    /// parameter: RFC 3263 §4.2 would otherwise pick UDP for a URI with a port. AUTO leaves both
    /// out so that the proxy, too, is found by DNS.
    pub fn route_header(&self) -> Option<String> {
        let proxy = self.outbound_proxy.as_ref()?;
        let mut uri = format!("<sip:{}", proxy.host);
        if let Some(port) = proxy.port.or(self.transport.default_port()) {
            uri.push_str(&format!(":{port}"));
        }
        if let Some(t) = self
            .transport
            .param()
            .filter(|_| self.transport != Transport::Udp)
        {
            uri.push_str(";transport=");
            uri.push_str(t);
        }
        uri.push_str(";lr>");
        Some(uri)
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Add;

    use super::*;

    fn uri(domain: &str, port: Option<u16>, t: Transport) -> String {
        RegistrarConfig::new(domain, port, t, None)
            .unwrap()
            .registration_uri()
    }

    #[test]
    fn seed_table() {
        assert_eq!(
            uri("sip.example.com", None, Transport::Udp),
            "sip:sip.example.com:5060;transport=udp"
        );
        assert_eq!(
            uri("pbx.corp.net", Some(5061), Transport::Tls),
            "sip:pbx.corp.net:5061;transport=tls"
        );
        assert_eq!(
            uri("10.0.0.50", Some(5060), Transport::Tcp),
            "sip:10.0.0.50:5060;transport=tcp"
        );
    }

    #[test]
    fn default_ports_per_transport() {
        assert_eq!(
            uri("h.example", None, Transport::Tcp),
            "sip:h.example:5060;transport=tcp"
        );
        assert_eq!(
            uri("h.example", None, Transport::Tls),
            "sip:h.example:5061;transport=tls"
        );
        assert_eq!(
            uri("h.example", None, Transport::Wss),
            "sip:h.example:443;transport=wss"
        );
        assert_eq!(
            uri("h.example", None, Transport::Ws),
            "sip:h.example:80;transport=ws"
        );
        assert_eq!(Transport::Auto.default_port(), None);
    }

    #[test]
    fn ipv6_is_bracketed_either_way() {
        for d in ["2001:db8::1", "[2001:db8::1]", " [2001:DB8::1] "] {
            assert_eq!(
                uri(d, None, Transport::Udp),
                "sip:[2001:db8::1]:5060;transport=udp"
            );
        }
    }

    #[test]
    fn auto_leaves_discovery_to_dns() {
        assert_eq!(uri("example.com", None, Transport::Auto), "sip:example.com");
        assert_eq!(
            uri("example.com", Some(5070), Transport::Auto),
            "sip:example.com:5070"
        );
        assert_eq!(uri("::1", None, Transport::Auto), "sip:[::1]");
    }

    #[test]
    fn host_names_are_normalised() {
        assert_eq!(
            uri("SIP.Example.COM.", None, Transport::Udp),
            "sip:sip.example.com:5060;transport=udp"
        );
    }

    #[test]
    fn route_header() {
        let c = RegistrarConfig::new(
            "sip.example.com",
            None,
            Transport::Udp,
            Some("proxy.example.com:5060"),
        )
        .unwrap();
        assert_eq!(c.route_header().unwrap(), "<sip:proxy.example.com:5060;lr>");
        let c = RegistrarConfig::new(
            "sip.example.com",
            None,
            Transport::Udp,
            Some("proxy.example.com"),
        )
        .unwrap();
        assert_eq!(c.route_header().unwrap(), "<sip:proxy.example.com:5060;lr>");
        let c = RegistrarConfig::new(
            "sip.example.com",
            None,
            Transport::Tls,
            Some("proxy.example.com"),
        )
        .unwrap();
        assert_eq!(
            c.route_header().unwrap(),
            "<sip:proxy.example.com:5061;transport=tls;lr>"
        );
        let c = RegistrarConfig::new("sip.example.com", None, Transport::Udp, Some("[::1]:5070"))
            .unwrap();
        assert_eq!(c.route_header().unwrap(), "<sip:[::1]:5070;lr>");
        let c = RegistrarConfig::new("sip.example.com", None, Transport::Auto, Some("p.example"))
            .unwrap();
        assert_eq!(c.route_header().unwrap(), "<sip:p.example;lr>");
        let c = RegistrarConfig::new("sip.example.com", None, Transport::Udp, Some("  ")).unwrap();
        assert_eq!(c.route_header(), None);
    }

    #[test]
    fn from_text() {
        let c = RegistrarConfig::from_text("pbx.corp.net", "5061", "TLS", "").unwrap();
        assert_eq!(c.registration_uri(), "sip:pbx.corp.net:5061;transport=tls");
        let c = RegistrarConfig::from_text("sip.example.com", " ", "udp", "proxy.example.com:5060")
            .unwrap();
        assert_eq!(c.port(), None);
        assert!(c.outbound_proxy().is_some());
    }

    #[test]
    fn bad_inputs_name_the_field() {
        let bad = |d: &str, p: &str, t: &str, o: &str| {
            RegistrarConfig::from_text(d, p, t, o).unwrap_err()
        };
        assert_eq!(
            bad("", "", "udp", ""),
            ConfigError::Domain(HostError::Empty)
        );
        assert!(matches!(
            bad("bad_host.com", "", "udp", ""),
            ConfigError::Domain(HostError::BadLabel(_))
        ));
        assert!(matches!(
            bad("-a.com", "", "udp", ""),
            ConfigError::Domain(HostError::BadLabel(_))
        ));
        assert!(matches!(
            bad("a..com", "", "udp", ""),
            ConfigError::Domain(HostError::BadLabel(_))
        ));
        assert!(matches!(
            bad(&"a".repeat(64), "", "udp", ""),
            ConfigError::Domain(HostError::BadLabel(_))
        ));
        assert_eq!(
            bad(&"a.".repeat(127).add("a"), "", "udp", ""),
            ConfigError::Domain(HostError::TooLong)
        );
        assert_eq!(
            bad("10.0.0.256", "", "udp", ""),
            ConfigError::Domain(HostError::BadIpv4)
        );
        assert_eq!(
            bad("[::1", "", "udp", ""),
            ConfigError::Domain(HostError::BadIpv6)
        );
        assert_eq!(
            bad("1::2::3", "", "udp", ""),
            ConfigError::Domain(HostError::BadIpv6)
        );
        assert_eq!(
            bad("sip.example.com:5060", "", "udp", ""),
            ConfigError::Domain(HostError::PortInHost)
        );
        assert_eq!(bad("a.com", "0", "udp", ""), ConfigError::Port("0".into()));
        assert_eq!(
            bad("a.com", "65536", "udp", ""),
            ConfigError::Port("65536".into())
        );
        assert_eq!(
            bad("a.com", "+5060", "udp", ""),
            ConfigError::Port("+5060".into())
        );
        assert_eq!(bad("a.com", "x", "udp", ""), ConfigError::Port("x".into()));
        assert_eq!(
            bad("a.com", "", "sctp", ""),
            ConfigError::Transport("sctp".into())
        );
        assert!(matches!(
            bad("a.com", "", "udp", "p.com:0"),
            ConfigError::OutboundProxy(HostPortError::Port(_))
        ));
        assert!(matches!(
            bad("a.com", "", "udp", "p.com:"),
            ConfigError::OutboundProxy(HostPortError::Port(_))
        ));
        assert!(matches!(
            bad("a.com", "", "udp", "[::1]5060"),
            ConfigError::OutboundProxy(HostPortError::Host(HostError::BadIpv6))
        ));
        assert!(matches!(
            bad("a.com", "", "udp", "[zz]:5060"),
            ConfigError::OutboundProxy(HostPortError::Host(HostError::BadIpv6))
        ));
        assert!(matches!(
            bad("a.com", "", "udp", "p_x.com"),
            ConfigError::OutboundProxy(HostPortError::Host(_))
        ));
        assert_eq!(
            RegistrarConfig::new("a.com", Some(0), Transport::Udp, None).unwrap_err(),
            ConfigError::Port("0".into())
        );
        // The message names the field.
        assert!(
            bad("a.com", "", "udp", "p.com:0")
                .to_string()
                .starts_with("outbound proxy:")
        );
        assert!(bad("", "", "udp", "").to_string().starts_with("domain:"));
    }

    #[test]
    fn host_port_forms() {
        let hp: HostPort = "[2001:db8::5]:5062".parse().unwrap();
        assert_eq!(hp.host, Host::V6("2001:db8::5".parse().unwrap()));
        assert_eq!(hp.port, Some(5062));
        assert_eq!(hp.to_string(), "[2001:db8::5]:5062");
        let hp: HostPort = "::1".parse().unwrap();
        assert_eq!(hp.port, None);
        let hp: HostPort = "[::1]".parse().unwrap();
        assert_eq!(hp.port, None);
        let hp: HostPort = "10.1.2.3:5080".parse().unwrap();
        assert_eq!(hp.to_string(), "10.1.2.3:5080");
    }
}
