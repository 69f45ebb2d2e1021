//! sipmeter's network layer: DNS discovery (RFC 3263 NAPTR → SRV → A/AAAA) through
//! hickory-resolver, feeding the sans-IO planner of `sip-proto` ([`dns`]); TLS settings,
//! certificates and handshake diagnoses with rustls and ring ([`tls`]); SIP over WebSocket,
//! RFC 7118 ([`ws`]), and its client side sans-IO for the load engine ([`wsclient`]).

pub mod dns;
pub mod tls;
pub mod ws;
pub mod wsclient;
