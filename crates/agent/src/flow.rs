//! One endpoint's signalling flow to its server over UDP or TCP: a thin driver that moves
//! whole SIP messages between a socket and the sans-IO agent.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use sip_msg::{Frame, Framer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Largest SIP message accepted from a stream.
const MAX_MESSAGE: usize = 64 * 1024;

/// The transports this engine drives today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum FlowKind {
    /// UDP, one socket per flow.
    Udp,
    /// TCP, one connection per flow (as real phones do).
    Tcp,
}

impl FlowKind {
    /// The Via transport token.
    pub fn via_token(self) -> &'static str {
        match self {
            FlowKind::Udp => "UDP",
            FlowKind::Tcp => "TCP",
        }
    }

    /// True for connection-oriented transports (no SIP retransmissions, RFC 3261 §17.1.1.2).
    pub fn reliable(self) -> bool {
        matches!(self, FlowKind::Tcp)
    }
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
    /// Any other socket error.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
}

/// A connected flow.
#[derive(Debug)]
pub enum Flow {
    /// A UDP socket connected to the server (ICMP errors surface as send/recv errors).
    Udp(UdpSocket),
    /// A TCP connection with its framer.
    Tcp(TcpStream, Framer),
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
            FlowKind::Tcp => {
                match tokio::time::timeout(timeout, TcpStream::connect(remote)).await {
                    Err(_) => Err(FlowError::ConnectTimeout(remote, timeout)),
                    Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        Err(FlowError::Refused(remote))
                    }
                    Ok(Err(e)) => Err(e.into()),
                    Ok(Ok(s)) => {
                        s.set_nodelay(true)?;
                        Ok(Flow::Tcp(s, Framer::new(MAX_MESSAGE)))
                    }
                }
            }
        }
    }

    /// Our address on this flow.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Flow::Udp(s) => s.local_addr(),
            Flow::Tcp(s, _) => s.local_addr(),
        }
    }

    /// The server's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Flow::Udp(s) => s.peer_addr(),
            Flow::Tcp(s, _) => s.peer_addr(),
        }
    }

    /// Sends one message.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), FlowError> {
        match self {
            Flow::Udp(s) => {
                s.send(bytes).await?;
            }
            Flow::Tcp(s, _) => s.write_all(bytes).await?,
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
        }
    }
}
