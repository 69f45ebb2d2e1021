//! One endpoint's connection to its server over TCP, TLS, WS or WSS, for the load engine:
//! how it is made ([`StreamSettings`]) and what it tells the shard ([`StreamIn`]). The shard's
//! poll set ([`crate::netpoll`]) drives every connection of the shard; the shard stays the
//! only owner of the endpoints' state.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_net::tls::{self, ClientSettings};

use crate::flow::{FlowKind, WsTarget};

/// Messages an endpoint's own connection may hold queued for sending before sends are
/// dropped.
pub const SEND_QUEUE: usize = 256;

/// The most messages a shard's shared (trunk) connection may hold queued: [`SEND_QUEUE`]
/// for each endpoint on it, up to this (about 64 MB of 1 KB messages). A server that reads
/// a trunk's connection slower than its calls come is waited for, as by a real trunk, rather
/// than its calls' messages dropped after 256 (at 20,000 calls/s, 4 ms of traffic).
pub const SHARED_SEND_QUEUE_MAX: usize = 65_536;

/// How each endpoint of a run connects to the server (one connection per endpoint).
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// TCP, TLS, WS or WSS.
    pub kind: FlowKind,
    /// The server's address.
    pub addr: SocketAddr,
    /// TLS (TLS and WSS): the rustls config, the server name (SNI and the name verified) and
    /// whether a client certificate is presented.
    pub tls: Option<(
        Arc<tls::rustls::ClientConfig>,
        tls::rustls::pki_types::ServerName<'static>,
        bool,
    )>,
    /// The verification mode's name, for the trace.
    pub verify: &'static str,
    /// WS and WSS: the Host header and the path.
    pub ws: WsTarget,
    /// Each phase of connecting (TCP, TLS, upgrade) must finish within this.
    pub timeout: Duration,
    /// CRLF keep-alive interval on TCP and TLS (RFC 5626 §3.5.1); `None`: off.
    pub keepalive: Option<Duration>,
    /// DSCP of everything the connection sends, its SYN included (`None`: unmarked).
    pub dscp: Option<crate::dscp::Dscp>,
    /// The endpoint's second connection, to its outbound proxy: the same transport and TLS
    /// settings to the proxy's address, verified against the proxy's name (`None`: none).
    pub proxy: Option<Arc<StreamSettings>>,
}

impl StreamSettings {
    /// The settings for `kind` to `addr`; `domain` is the SNI and the WebSocket host.
    pub fn new(
        kind: FlowKind,
        addr: SocketAddr,
        domain: &str,
        tls: &ClientSettings,
        tls_name: Option<&str>,
        ws_path: &str,
        keepalive: Option<Duration>,
    ) -> Result<Self, String> {
        let tls_setup = if kind.secure() {
            let name = tls_name.unwrap_or(domain);
            let config = tls.config().map_err(|e| format!("TLS settings: {e}"))?;
            let server = tls::server_name(name).map_err(|e| format!("TLS settings: {e}"))?;
            Some((config, server, tls.identity.is_some()))
        } else {
            None
        };
        let host = match domain.parse::<IpAddr>() {
            Ok(IpAddr::V6(a)) => format!("[{a}]:{}", addr.port()),
            _ => format!("{domain}:{}", addr.port()),
        };
        Ok(Self {
            kind,
            addr,
            tls: tls_setup,
            verify: tls.verify.name(),
            ws: WsTarget {
                host,
                path: if ws_path.is_empty() {
                    "/".into()
                } else {
                    ws_path.to_owned()
                },
            },
            timeout: Duration::from_secs(5),
            // Over a WebSocket the keep-alive is a ping frame (RFC 6455 §5.5.2), our choice.
            keepalive,
            dscp: None,
            proxy: None,
        })
    }
}

/// What a connection tells the shard, tagged with whose connection it is.
#[derive(Debug)]
pub struct StreamIn {
    /// The endpoint's index in its shard.
    pub endpoint: usize,
    /// Which of its connections: to the server, or to the outbound proxy.
    pub leg: crate::netpoll::Leg,
    /// The connection's generation (a reconnect starts a new one; late news of an old one
    /// is dropped).
    pub generation: u32,
    /// What happened.
    pub event: StreamEvent,
    /// For a message or datagram: when its last bytes reached the socket (the kernel's
    /// receive stamp, `SO_TIMESTAMPNS`), so that a shard reading it later (coalescing its
    /// wakes) still times answers from their arrival. `None`: no stamp (the time read).
    pub arrived: Option<Instant>,
}

/// The events of one connection.
#[derive(Debug)]
pub enum StreamEvent {
    /// Connected: our address, and what the trace should say (TCP, TLS, WebSocket).
    Connected {
        /// Our address on the connection (Via and Contact).
        local: SocketAddr,
        /// One note per phase.
        notes: Vec<String>,
    },
    /// Could not connect.
    Failed {
        /// What went wrong, in words.
        error: String,
        /// What to do about it (as `check` says it).
        hint: String,
        /// True when TCP connected but TLS or the WebSocket upgrade failed.
        after_tcp: bool,
    },
    /// One whole SIP message.
    Message(Bytes),
    /// A datagram on an endpoint's own UDP socket, and where it came from.
    Datagram(Bytes, SocketAddr),
    /// The connection closed, and why.
    Closed(String),
}

/// What `check` says about an unreachable server.
pub const UNREACHABLE_HINT: &str = "the server is unreachable on this transport and port: check the address, port, transport and firewall";
