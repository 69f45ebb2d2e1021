//! One endpoint's signalling flow to its server over UDP, TCP, TLS, WS or WSS: a thin driver
//! that moves whole SIP messages between a socket and the sans-IO agent.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_msg::{Frame, Framer};
use sip_net::tls::{self, ClientStream, Diagnosis, Negotiated};
use sip_net::ws::SipWebSocket;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Largest SIP message accepted from a stream.
pub(crate) const MAX_MESSAGE: usize = 64 * 1024;

/// The transports this engine drives today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum FlowKind {
    /// UDP, one socket per flow.
    Udp,
    /// TCP, one connection per flow (as real phones do).
    Tcp,
    /// TLS over TCP, one connection per flow.
    Tls,
    /// SIP over WebSocket (RFC 7118) over TCP.
    Ws,
    /// SIP over secure WebSocket (RFC 7118) over TLS.
    Wss,
}

impl FlowKind {
    /// The Via transport token.
    pub fn via_token(self) -> &'static str {
        match self {
            FlowKind::Udp => "UDP",
            FlowKind::Tcp => "TCP",
            FlowKind::Tls => "TLS",
            FlowKind::Ws => "WS",
            FlowKind::Wss => "WSS",
        }
    }

    /// True for connection-oriented transports (no SIP retransmissions, RFC 3261 §17.1.1.2).
    pub fn reliable(self) -> bool {
        !matches!(self, FlowKind::Udp)
    }

    /// True when the flow runs TLS (TLS and WSS).
    pub fn secure(self) -> bool {
        matches!(self, FlowKind::Tls | FlowKind::Wss)
    }

    /// True for WebSocket flows.
    pub fn websocket(self) -> bool {
        matches!(self, FlowKind::Ws | FlowKind::Wss)
    }

    /// The port a server listens on when none is given (RFC 3261 §19.1.2, RFC 7118 §5): the
    /// registrar's and the outbound proxy's, in a run and in `check`.
    pub fn default_port(self) -> u16 {
        match self {
            FlowKind::Udp | FlowKind::Tcp => 5060,
            FlowKind::Tls => 5061,
            FlowKind::Ws => 80,
            FlowKind::Wss => 443,
        }
    }
}

/// The RFC 3263 planner's name for a transport this engine drives.
pub fn transport_of(kind: FlowKind) -> sip_proto::target::Transport {
    use sip_proto::target::Transport;
    match kind {
        FlowKind::Udp => Transport::Udp,
        FlowKind::Tcp => Transport::Tcp,
        FlowKind::Tls => Transport::Tls,
        FlowKind::Ws => Transport::Ws,
        FlowKind::Wss => Transport::Wss,
    }
}

/// The flow for a transport the RFC 3263 planner found; `None` for one this engine cannot
/// drive.
pub fn kind_of(transport: sip_proto::target::Transport) -> Option<FlowKind> {
    use sip_proto::target::Transport;
    Some(match transport {
        Transport::Udp => FlowKind::Udp,
        Transport::Tcp => FlowKind::Tcp,
        Transport::Tls => FlowKind::Tls,
        Transport::Ws => FlowKind::Ws,
        Transport::Wss => FlowKind::Wss,
        Transport::Auto => return None,
    })
}

/// Why a flow failed, in words an engineer can act on.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// Nothing answered the TCP handshake in time.
    #[error("no answer to the TCP handshake with {0} within {1:?} (firewall dropping packets?)")]
    ConnectTimeout(SocketAddr, Duration),
    /// The peer refused the connection.
    #[error("connection refused by {0}: nothing listens on that port over TCP")]
    Refused(SocketAddr),
    /// The peer closed the connection.
    #[error("the server closed the connection")]
    Closed,
    /// The stream is not SIP (framing failed).
    #[error("cannot frame the stream: {0}")]
    Framing(#[from] sip_msg::FrameError),
    /// The TLS handshake failed after the TCP connection (which took the given time); the
    /// diagnosis says why in words.
    #[error("{}", .0.problem)]
    TlsHandshake(Diagnosis, Duration),
    /// The TLS stream failed after the handshake (e.g. the server's alert refusing our client
    /// certificate, which TLS 1.3 delivers on the first read).
    #[error("{}", .0.problem)]
    Tls(Diagnosis),
    /// The WebSocket upgrade failed after the TCP connection and the TLS handshake (WSS);
    /// the diagnosis says why in words.
    #[error("{}", .diagnosis.problem)]
    WebSocketUpgrade {
        /// What went wrong.
        diagnosis: Diagnosis,
        /// The TCP connection's time.
        tcp: Duration,
        /// The TLS handshake (WSS).
        tls: Option<(Duration, Negotiated)>,
    },
    /// The WebSocket failed after the upgrade.
    #[error("WebSocket error: {0}")]
    WebSocket(String),
    /// A TLS or WebSocket flow was asked of [`Flow::connect`], which has no settings for them.
    #[error("a TLS or WebSocket flow needs settings: use Flow::connect_tls or Flow::connect_ws")]
    NeedsTlsSettings,
    /// Any other socket error.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
}

impl FlowError {
    /// What to do about a TLS failure (`None` for other errors).
    pub fn tls_hint(&self) -> Option<&str> {
        match self {
            FlowError::Tls(d)
            | FlowError::TlsHandshake(d, _)
            | FlowError::WebSocketUpgrade { diagnosis: d, .. } => Some(&d.hint),
            _ => None,
        }
    }
}

/// How long each phase of a TLS connection took, and what the handshake agreed on.
#[derive(Debug, Clone)]
pub struct TlsConnected {
    /// The TCP three-way handshake.
    pub tcp: Duration,
    /// The TLS handshake after it.
    pub handshake: Duration,
    /// Version, cipher suite and the server certificate's fingerprint.
    pub negotiated: Negotiated,
}

/// A connected flow.
#[derive(Debug)]
pub enum Flow {
    /// A UDP socket connected to the server (ICMP errors surface as send/recv errors).
    Udp(UdpSocket),
    /// A TCP connection with its framer.
    Tcp(TcpStream, Framer),
    /// A TLS connection with its framer; `bool` is true when we presented a client
    /// certificate (to explain a later refusal).
    Tls(Box<ClientStream>, Framer, bool),
    /// SIP over WebSocket over TCP.
    Ws(Box<SipWebSocket<TcpStream>>),
    /// SIP over WebSocket over TLS; `bool` as for [`Flow::Tls`].
    Wss(Box<SipWebSocket<ClientStream>>, bool),
}

/// The phases of a WebSocket connection: TCP, TLS (WSS), the HTTP upgrade.
#[derive(Debug, Clone)]
pub struct WsConnected {
    /// The TCP three-way handshake.
    pub tcp: Duration,
    /// The TLS handshake and what it agreed on (WSS only).
    pub tls: Option<(Duration, Negotiated)>,
    /// The HTTP upgrade to WebSocket.
    pub upgrade: Duration,
}

/// Where a WebSocket flow goes beyond the address: the Host header and the path.
#[derive(Debug, Clone)]
pub struct WsTarget {
    /// `host[:port]` for the Host header and URL (the registrar's domain).
    pub host: String,
    /// The resource, e.g. `/` or `/ws`.
    pub path: String,
}

impl Flow {
    /// Opens a flow to `remote`, binding the local side to the matching loopback or wildcard
    /// address and port 0.
    pub async fn connect(
        kind: FlowKind,
        remote: SocketAddr,
        timeout: Duration,
    ) -> Result<Self, FlowError> {
        match kind {
            FlowKind::Udp => {
                let local: SocketAddr = if remote.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                }
                .parse()
                .expect("literal socket addresses parse");
                let sock = UdpSocket::bind(local).await?;
                sock.connect(remote).await?;
                Ok(Flow::Udp(sock))
            }
            FlowKind::Tcp => Ok(Flow::Tcp(
                tcp_connect(remote, timeout).await?,
                Framer::new(MAX_MESSAGE),
            )),
            FlowKind::Tls | FlowKind::Ws | FlowKind::Wss => Err(FlowError::NeedsTlsSettings),
        }
    }

    /// Opens a TLS flow to `remote`: TCP, then the TLS handshake with `config`, sending
    /// `name` as SNI (none for an IP address) and verifying the certificate against it.
    /// `timeout` applies to each phase. `client_certificate` says whether `config` presents
    /// one (it only shapes the words of a failure).
    pub async fn connect_tls(
        remote: SocketAddr,
        timeout: Duration,
        config: Arc<tls::rustls::ClientConfig>,
        name: tls::rustls::pki_types::ServerName<'static>,
        client_certificate: bool,
    ) -> Result<(Self, TlsConnected), FlowError> {
        let t = Instant::now();
        let tcp = tcp_connect(remote, timeout).await?;
        let tcp_time = t.elapsed();
        let t = Instant::now();
        let stream = match tokio::time::timeout(timeout, tls::connect(tcp, config, name)).await {
            Err(_) => {
                return Err(FlowError::TlsHandshake(
                    tls_timeout(remote, timeout),
                    tcp_time,
                ));
            }
            Ok(Err(e)) => {
                return Err(match tls::diagnose(&e, client_certificate) {
                    Some(d) => FlowError::TlsHandshake(d, tcp_time),
                    None => e.into(),
                });
            }
            Ok(Ok(s)) => s,
        };
        let connected = TlsConnected {
            tcp: tcp_time,
            handshake: t.elapsed(),
            negotiated: Negotiated::of(&stream),
        };
        Ok((
            Flow::Tls(
                Box::new(stream),
                Framer::new(MAX_MESSAGE),
                client_certificate,
            ),
            connected,
        ))
    }

    /// Opens a WebSocket flow to `remote` (RFC 7118): TCP, then for WSS the TLS handshake
    /// (`tls`: config, server name, whether a client certificate is presented), then the HTTP
    /// upgrade asking for the `sip` subprotocol. `timeout` applies to each phase.
    pub async fn connect_ws(
        remote: SocketAddr,
        timeout: Duration,
        tls: Option<(
            Arc<tls::rustls::ClientConfig>,
            tls::rustls::pki_types::ServerName<'static>,
            bool,
        )>,
        target: &WsTarget,
    ) -> Result<(Self, WsConnected), FlowError> {
        let upgrade_timeout = |tcp, tls| FlowError::WebSocketUpgrade {
            diagnosis: ws_timeout(timeout),
            tcp,
            tls,
        };
        match tls {
            None => {
                let t = Instant::now();
                let tcp = tcp_connect(remote, timeout).await?;
                let tcp_time = t.elapsed();
                let t = Instant::now();
                let ws = tokio::time::timeout(
                    timeout,
                    sip_net::ws::connect(tcp, false, &target.host, &target.path, false),
                )
                .await
                .map_err(|_| upgrade_timeout(tcp_time, None))?
                .map_err(|diagnosis| FlowError::WebSocketUpgrade {
                    diagnosis,
                    tcp: tcp_time,
                    tls: None,
                })?;
                let connected = WsConnected {
                    tcp: tcp_time,
                    tls: None,
                    upgrade: t.elapsed(),
                };
                Ok((Flow::Ws(Box::new(ws)), connected))
            }
            Some((config, name, cert)) => {
                let (flow, c) = Self::connect_tls(remote, timeout, config, name, cert).await?;
                let Flow::Tls(stream, _, _) = flow else {
                    unreachable!("connect_tls returns a TLS flow")
                };
                let tls = Some((c.handshake, c.negotiated));
                let t = Instant::now();
                let ws = tokio::time::timeout(
                    timeout,
                    sip_net::ws::connect(*stream, true, &target.host, &target.path, cert),
                )
                .await
                .map_err(|_| upgrade_timeout(c.tcp, tls.clone()))?
                .map_err(|diagnosis| FlowError::WebSocketUpgrade {
                    diagnosis,
                    tcp: c.tcp,
                    tls: tls.clone(),
                })?;
                let connected = WsConnected {
                    tcp: c.tcp,
                    tls,
                    upgrade: t.elapsed(),
                };
                Ok((Flow::Wss(Box::new(ws), cert), connected))
            }
        }
    }

    /// Our address on this flow.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Flow::Udp(s) => s.local_addr(),
            Flow::Tcp(s, _) => s.local_addr(),
            Flow::Tls(s, _, _) => s.get_ref().0.local_addr(),
            Flow::Ws(w) => w.get_ref().local_addr(),
            Flow::Wss(w, _) => w.get_ref().get_ref().0.local_addr(),
        }
    }

    /// The server's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Flow::Udp(s) => s.peer_addr(),
            Flow::Tcp(s, _) => s.peer_addr(),
            Flow::Tls(s, _, _) => s.get_ref().0.peer_addr(),
            Flow::Ws(w) => w.get_ref().peer_addr(),
            Flow::Wss(w, _) => w.get_ref().get_ref().0.peer_addr(),
        }
    }

    /// Sends one message.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), FlowError> {
        match self {
            Flow::Udp(s) => {
                s.send(bytes).await?;
            }
            Flow::Tcp(s, _) => s.write_all(bytes).await?,
            Flow::Tls(s, _, cert) => {
                let sent = async {
                    s.write_all(bytes).await?;
                    s.flush().await
                };
                sent.await.map_err(|e| tls_error(e, *cert))?;
            }
            Flow::Ws(w) => w.send(bytes).await.map_err(|e| ws_error(e, false))?,
            Flow::Wss(w, cert) => w.send(bytes).await.map_err(|e| ws_error(e, *cert))?,
        }
        Ok(())
    }

    /// Receives the next whole message (keep-alives are skipped).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: bytes read from a stream are kept in the framer, so a cancelled call
    /// loses nothing and the next call continues where it stopped.
    pub async fn recv(&mut self) -> Result<Bytes, FlowError> {
        match self {
            Flow::Udp(s) => {
                let mut buf = vec![0u8; 65_536];
                let n = s.recv(&mut buf).await?;
                buf.truncate(n);
                Ok(Bytes::from(buf))
            }
            Flow::Tcp(s, framer) => loop {
                while let Some(frame) = framer.next_frame() {
                    match frame? {
                        Frame::Message(m) => return Ok(m),
                        Frame::Ping | Frame::Pong => {}
                    }
                }
                let mut buf = [0u8; 16 * 1024];
                let n = s.read(&mut buf).await?;
                if n == 0 {
                    return Err(FlowError::Closed);
                }
                framer.push(&buf[..n]);
            },
            Flow::Tls(s, framer, cert) => loop {
                while let Some(frame) = framer.next_frame() {
                    match frame? {
                        Frame::Message(m) => return Ok(m),
                        Frame::Ping | Frame::Pong => {}
                    }
                }
                let mut buf = [0u8; 16 * 1024];
                // tokio-rustls's read is cancel safe: decrypted bytes stay in the session.
                let n = s.read(&mut buf).await.map_err(|e| tls_error(e, *cert))?;
                if n == 0 {
                    return Err(FlowError::Closed);
                }
                framer.push(&buf[..n]);
            },
            Flow::Ws(w) => match w.recv().await.map_err(|e| ws_error(e, false))? {
                Some(m) => Ok(m),
                None => Err(FlowError::Closed),
            },
            Flow::Wss(w, cert) => match w.recv().await.map_err(|e| ws_error(e, *cert))? {
                Some(m) => Ok(m),
                None => Err(FlowError::Closed),
            },
        }
    }
}

/// A WebSocket error; TLS errors underneath are explained as for TLS flows.
fn ws_error(e: sip_net::ws::WsError, client_certificate: bool) -> FlowError {
    match e {
        sip_net::ws::WsError::Io(io) => match tls_error(io, client_certificate) {
            FlowError::Io(io) if io.kind() == io::ErrorKind::UnexpectedEof => FlowError::Closed,
            other => other,
        },
        e => FlowError::WebSocket(e.to_string()),
    }
}

async fn tcp_connect(remote: SocketAddr, timeout: Duration) -> Result<TcpStream, FlowError> {
    match tokio::time::timeout(timeout, TcpStream::connect(remote)).await {
        Err(_) => Err(FlowError::ConnectTimeout(remote, timeout)),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            Err(FlowError::Refused(remote))
        }
        Ok(Err(e)) => Err(e.into()),
        Ok(Ok(s)) => {
            s.set_nodelay(true)?;
            Ok(s)
        }
    }
}

/// No answer to the TLS handshake within `timeout`, in words.
pub(crate) fn tls_timeout(remote: SocketAddr, timeout: Duration) -> Diagnosis {
    Diagnosis {
        problem: format!("no answer to the TLS handshake with {remote} within {timeout:?}"),
        hint:
            "the port may be plain UDP/TCP SIP or a firewall may drop TLS: TLS is usually on 5061"
                .into(),
        certificate: false,
    }
}

/// No answer to the WebSocket upgrade within `timeout`, in words.
pub(crate) fn ws_timeout(timeout: Duration) -> Diagnosis {
    Diagnosis {
        problem: format!("no answer to the WebSocket upgrade within {timeout:?}"),
        hint: "the port may not serve WebSocket: check the port and path".into(),
        certificate: false,
    }
}

/// A TLS stream error, explained when rustls says why (e.g. the server's alert after the
/// handshake: with TLS 1.3 a refused client certificate shows up on the first read).
fn tls_error(e: io::Error, client_certificate: bool) -> FlowError {
    match e
        .get_ref()
        .and_then(|i| i.downcast_ref::<tls::rustls::Error>())
    {
        Some(r) => FlowError::Tls(tls::explain(r, client_certificate)),
        None => e.into(),
    }
}
