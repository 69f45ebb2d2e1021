//! One endpoint's connection to its server over TCP, TLS, WS or WSS, for the load engine.
//!
//! A thin driver: a small task per connection connects (TCP, then the TLS handshake and the
//! WebSocket upgrade when asked), frames incoming bytes into whole SIP messages (sip-msg's
//! framer, bounded by [`crate::flow`]'s message limit) and forwards them to the shard loop,
//! tagged with the endpoint's index and the connection's generation. It writes what the
//! shard queued for it on a bounded channel: the shard never waits on a socket (a full queue
//! is a dropped send, counted as generator overload). The shard stays the only owner of the
//! endpoint's state; the task owns nothing but the socket.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sip_net::tls::{self, ClientSettings, Negotiated};
use tokio::sync::mpsc;

use crate::flow::{Flow, FlowError, FlowKind, WsTarget};

/// Messages a connection may hold queued for sending before sends are dropped.
pub const SEND_QUEUE: usize = 256;

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
            // RFC 7118 has no CRLF keep-alive: WebSocket has its own ping.
            keepalive: keepalive.filter(|_| !kind.websocket()),
        })
    }
}

/// What a connection tells the shard, tagged with whose connection it is.
#[derive(Debug)]
pub struct StreamIn {
    /// The endpoint's index in its shard.
    pub endpoint: usize,
    /// The connection's generation (a reconnect starts a new one; late news of an old one
    /// is dropped).
    pub generation: u32,
    /// What happened.
    pub event: StreamEvent,
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

/// Starts the connection task of endpoint `endpoint`; the shard writes through `outgoing`
/// (dropping the sender closes the connection).
pub fn spawn(
    settings: Arc<StreamSettings>,
    endpoint: usize,
    generation: u32,
    to_shard: mpsc::UnboundedSender<StreamIn>,
    outgoing: mpsc::Receiver<Bytes>,
) {
    tokio::spawn(async move {
        let send = |event| {
            let _ = to_shard.send(StreamIn {
                endpoint,
                generation,
                event,
            });
        };
        let flow = match connect(&settings).await {
            Ok((flow, notes)) => {
                let local = flow
                    .local_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                send(StreamEvent::Connected { local, notes });
                flow
            }
            Err(e) => {
                let after_tcp = matches!(
                    e,
                    FlowError::TlsHandshake(..) | FlowError::WebSocketUpgrade { .. }
                );
                let hint = e
                    .tls_hint()
                    .map_or_else(|| UNREACHABLE_HINT.to_owned(), str::to_owned);
                send(StreamEvent::Failed {
                    error: e.to_string(),
                    hint,
                    after_tcp,
                });
                return;
            }
        };
        let reason = drive(flow, outgoing, settings.keepalive, &send).await;
        if let Some(reason) = reason {
            send(StreamEvent::Closed(reason));
        }
    });
}

/// Connects as `settings` say; the notes say what each phase did.
async fn connect(s: &StreamSettings) -> Result<(Flow, Vec<String>), FlowError> {
    let addr = s.addr;
    let tls_note = |n: &Negotiated| {
        format!(
            "TLS handshake done with {addr}: {} {} (verification: {}{})",
            n.version,
            n.cipher_suite,
            s.verify,
            if s.tls.as_ref().is_some_and(|t| t.2) {
                "; client certificate sent"
            } else {
                ""
            }
        )
    };
    match s.kind {
        FlowKind::Udp => Err(FlowError::NeedsTlsSettings),
        FlowKind::Tcp => {
            let flow = Flow::connect(FlowKind::Tcp, addr, s.timeout).await?;
            Ok((flow, vec![format!("TCP connected to {addr}")]))
        }
        FlowKind::Tls => {
            let Some((config, name, cert)) = s.tls.clone() else {
                return Err(FlowError::NeedsTlsSettings);
            };
            let (flow, c) = Flow::connect_tls(addr, s.timeout, config, name, cert).await?;
            Ok((
                flow,
                vec![format!("TCP connected to {addr}"), tls_note(&c.negotiated)],
            ))
        }
        FlowKind::Ws | FlowKind::Wss => {
            let (flow, c) = Flow::connect_ws(addr, s.timeout, s.tls.clone(), &s.ws).await?;
            let mut notes = vec![format!("TCP connected to {addr}")];
            if let Some((_, n)) = &c.tls {
                notes.push(tls_note(n));
            }
            notes.push(format!(
                "HTTP upgrade to WebSocket at {}://{}{} with subprotocol sip (RFC 7118)",
                if s.kind == FlowKind::Wss { "wss" } else { "ws" },
                s.ws.host,
                s.ws.path
            ));
            Ok((flow, notes))
        }
    }
}

/// Moves messages both ways until the connection closes (the reason) or the shard drops
/// its sender (`None`: closed on purpose).
async fn drive(
    mut flow: Flow,
    mut outgoing: mpsc::Receiver<Bytes>,
    keepalive: Option<Duration>,
    send: &impl Fn(StreamEvent),
) -> Option<String> {
    let period = keepalive.unwrap_or(Duration::from_secs(3600));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // Flow::recv is cancel safe: bytes read stay in its framer.
            r = flow.recv() => match r {
                Ok(m) => send(StreamEvent::Message(m)),
                Err(FlowError::Closed) => return Some("the server closed the connection".into()),
                Err(e) => return Some(e.to_string()),
            },
            m = outgoing.recv() => match m {
                Some(bytes) => {
                    if let Err(e) = flow.send(&bytes).await {
                        return Some(format!("send failed: {e}"));
                    }
                }
                None => {
                    if let Flow::Ws(w) = &mut flow {
                        w.close().await;
                    } else if let Flow::Wss(w, _) = &mut flow {
                        w.close().await;
                    }
                    return None;
                }
            },
            _ = ping.tick(), if keepalive.is_some() => {
                // RFC 5626 §3.5.1: a double CRLF; the server's single-CRLF pong is skipped by
                // the framer.
                if let Err(e) = flow.send(b"\r\n\r\n").await {
                    return Some(format!("keep-alive failed: {e}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn next(rx: &mut mpsc::UnboundedReceiver<StreamIn>) -> StreamEvent {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("an event in time")
            .expect("the task is alive")
            .event
    }

    /// RFC 5626 §3.5.1 over a real loopback connection: the client sends CRLFCRLF every
    /// interval, the server's CRLF pong is swallowed, the next SIP message is forwarded
    /// whole, and the server closing the connection is reported.
    #[tokio::test]
    async fn keepalive_pings_pongs_are_silent_and_a_close_is_reported() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let settings = StreamSettings::new(
            FlowKind::Tcp,
            addr,
            "127.0.0.1",
            &ClientSettings::default(),
            None,
            "/",
            Some(Duration::from_millis(50)),
        )
        .unwrap();
        let (to_shard, mut rx) = mpsc::unbounded_channel();
        let (out_tx, out_rx) = mpsc::channel(SEND_QUEUE);
        spawn(Arc::new(settings), 3, 7, to_shard, out_rx);
        let (mut server, _) = listener.accept().await.unwrap();
        let StreamEvent::Connected { local, notes } = next(&mut rx).await else {
            panic!("connected first");
        };
        assert_eq!(local, server.peer_addr().unwrap());
        assert_eq!(notes, [format!("TCP connected to {addr}")]);
        // Two pings, 50 ms apart.
        for _ in 0..2 {
            let mut ping = [0u8; 4];
            tokio::time::timeout(Duration::from_secs(2), server.read_exact(&mut ping))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&ping, b"\r\n\r\n");
        }
        // A pong, then a message: only the message reaches the shard.
        let options = b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n";
        server.write_all(b"\r\n").await.unwrap();
        server.write_all(options).await.unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((ev.endpoint, ev.generation), (3, 7));
        match ev.event {
            StreamEvent::Message(m) => assert_eq!(&m[..], &options[..]),
            other => panic!("{other:?}"),
        }
        // What the shard queues is written as is.
        out_tx.try_send(Bytes::from_static(options)).unwrap();
        let mut got = vec![0u8; options.len()];
        loop {
            server.read_exact(&mut got[..4]).await.unwrap();
            if &got[..4] != b"\r\n\r\n" {
                break; // not a ping
            }
        }
        server.read_exact(&mut got[4..]).await.unwrap();
        assert_eq!(&got[..], &options[..]);
        drop(server);
        match next(&mut rx).await {
            StreamEvent::Closed(why) => assert!(why.contains("closed"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    /// Dropping the send queue closes the connection on purpose: no `Closed` event.
    #[tokio::test]
    async fn dropping_the_queue_closes_the_connection_quietly() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let settings = StreamSettings::new(
            FlowKind::Tcp,
            addr,
            "127.0.0.1",
            &ClientSettings::default(),
            None,
            "/",
            None,
        )
        .unwrap();
        let (to_shard, mut rx) = mpsc::unbounded_channel();
        let (out_tx, out_rx) = mpsc::channel(SEND_QUEUE);
        spawn(Arc::new(settings), 0, 1, to_shard, out_rx);
        let (mut server, _) = listener.accept().await.unwrap();
        assert!(matches!(next(&mut rx).await, StreamEvent::Connected { .. }));
        drop(out_tx);
        let mut buf = [0u8; 8];
        let n = tokio::time::timeout(Duration::from_secs(5), server.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0, "the client closed");
        // The task ended without a word: the channel closes.
        assert!(
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap()
                .is_none()
        );
    }
}
