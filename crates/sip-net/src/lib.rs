//! sipmeter's network layer. Today: DNS discovery (RFC 3263 NAPTR → SRV → A/AAAA) through
//! hickory-resolver, feeding the sans-IO planner of `sip-proto`.

pub mod dns;
pub mod tls;
pub mod ws;
