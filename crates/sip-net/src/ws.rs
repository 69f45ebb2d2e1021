//! SIP over WebSocket (RFC 7118): the HTTP upgrade with `Sec-WebSocket-Protocol: sip` over
//! our own TCP or TLS stream, one SIP message per WebSocket message, and upgrade failures in
//! words.

use std::io;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
pub use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::tls::Diagnosis;

/// The subprotocol of RFC 7118 §4.1.
pub const SUBPROTOCOL: &str = "sip";

/// Largest WebSocket message accepted (a SIP message, RFC 7118 §5).
const MAX_MESSAGE: usize = 64 * 1024;

/// Read buffer per connection. tungstenite allocates it up front, 128 KiB by default: a
/// registrar holding thousands of phones' connections then spent ≈ 145 KB per WebSocket
/// connection (`benches/load/conns.sh`). SIP messages are a few KB and arrive one at a
/// time; a longer one is read in several pieces.
const READ_BUFFER: usize = 4 * 1024;

fn config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
        .read_buffer_size(READ_BUFFER)
}

/// A SIP-over-WebSocket connection over `S` (TCP for WS, TLS for WSS).
#[derive(Debug)]
pub struct SipWebSocket<S> {
    inner: WebSocketStream<S>,
}

/// Runs the client's opening handshake (RFC 6455 §4.1) asking for the `sip` subprotocol;
/// `host` goes in the Host header (and the URL), `path` is the resource (e.g. `/`).
/// `client_certificate` says whether a TLS stream underneath presented one (it only shapes
/// the words of a TLS failure that surfaces during the upgrade).
///
/// # Cancel safety
///
/// Not cancel safe: a cancelled upgrade leaves the stream unusable (it is consumed).
pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    secure: bool,
    host: &str,
    path: &str,
    client_certificate: bool,
) -> Result<SipWebSocket<S>, Diagnosis> {
    let scheme = if secure { "wss" } else { "ws" };
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let url = format!("{scheme}://{host}{path}");
    let mut request = url.as_str().into_client_request().map_err(|e| Diagnosis {
        problem: format!("`{url}` is not a valid WebSocket URL: {e}"),
        hint: "check the domain, port and WebSocket path".into(),
        certificate: false,
    })?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    match tokio_tungstenite::client_async_with_config(request, stream, Some(config())).await {
        Ok((inner, _response)) => Ok(SipWebSocket { inner }),
        Err(WsError::Io(io)) if crate::tls::diagnose(&io, client_certificate).is_some() => {
            // A TLS alert after the handshake (TLS 1.3 refuses a client certificate so).
            Err(crate::tls::diagnose(&io, client_certificate)
                .unwrap_or_else(|| explain_upgrade(&WsError::Io(io), &url)))
        }
        Err(e) => Err(explain_upgrade(&e, &url)),
    }
}

/// Explains a failed WebSocket upgrade.
fn explain_upgrade(e: &WsError, url: &str) -> Diagnosis {
    let d = |problem: String, hint: &str| Diagnosis {
        problem,
        hint: hint.to_owned(),
        certificate: false,
    };
    match e {
        WsError::Http(resp) => d(
            format!(
                "the server answered the WebSocket upgrade for {url} with HTTP {}",
                resp.status()
            ),
            "check the WebSocket path (--ws-path) and that this port serves SIP over WebSocket",
        ),
        WsError::Protocol(ProtocolError::SecWebSocketSubProtocolError(_)) => d(
            format!(
                "the server at {url} did not accept the WebSocket subprotocol `sip` (RFC 7118)"
            ),
            "the server speaks WebSocket but not SIP over it: check the port and path",
        ),
        WsError::Io(io) if io.kind() == io::ErrorKind::UnexpectedEof => d(
            format!("the server closed the connection during the WebSocket upgrade for {url}"),
            "the port may not serve WebSocket: check the port (WS is often 80 or 8080, WSS 443 or 8443)",
        ),
        WsError::Protocol(p) => d(
            format!("the WebSocket upgrade for {url} failed: {p}"),
            "the port may not serve WebSocket: check the port and path",
        ),
        e => d(
            format!("the WebSocket upgrade for {url} failed: {e}"),
            "check the port and path, and the server's WebSocket log",
        ),
    }
}

/// Runs the server's side of the opening handshake: accepts when the client asks for the
/// `sip` subprotocol (answering it), refuses with 400 otherwise.
///
/// # Cancel safety
///
/// Not cancel safe: a cancelled upgrade leaves the stream unusable (it is consumed).
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
) -> Result<SipWebSocket<S>, WsError> {
    #[allow(clippy::result_large_err)] // reason: the callback's signature is tungstenite's
    fn negotiate(
        req: &Request,
        mut resp: Response,
    ) -> Result<Response, tokio_tungstenite::tungstenite::handshake::server::ErrorResponse> {
        let wants_sip = req
            .headers()
            .get_all("Sec-WebSocket-Protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case(SUBPROTOCOL));
        if !wants_sip {
            let mut refusal = tokio_tungstenite::tungstenite::handshake::server::ErrorResponse::new(
                Some("SIP over WebSocket needs Sec-WebSocket-Protocol: sip (RFC 7118)".into()),
            );
            *refusal.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::BAD_REQUEST;
            return Err(refusal);
        }
        resp.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
        Ok(resp)
    }
    let inner =
        tokio_tungstenite::accept_hdr_async_with_config(stream, negotiate, Some(config())).await?;
    Ok(SipWebSocket { inner })
}

/// What [`SipWebSocket::recv_any`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsIn {
    /// One SIP message.
    Message(Bytes),
    /// A ping or pong frame: the peer is there.
    Alive,
}

impl<S: AsyncRead + AsyncWrite + Unpin> SipWebSocket<S> {
    /// The stream underneath (TCP or TLS).
    pub fn get_ref(&self) -> &S {
        self.inner.get_ref()
    }

    /// Sends one SIP message as one WebSocket message: text when it is UTF-8 (RFC 7118 §5.1
    /// allows both), binary otherwise.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), WsError> {
        let msg = match std::str::from_utf8(bytes) {
            Ok(s) => Message::text(s),
            Err(_) => Message::binary(bytes.to_vec()),
        };
        self.inner.send(msg).await
    }

    /// Receives the next SIP message; `Ok(None)` when the peer closed the WebSocket.
    /// Pings are answered by tungstenite on the next read or write.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: `StreamExt::next` keeps partial frames in the stream.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, WsError> {
        loop {
            match self.recv_any().await? {
                Some(WsIn::Message(m)) => return Ok(Some(m)),
                Some(WsIn::Alive) => {}
                None => return Ok(None),
            }
        }
    }

    /// Receives the next SIP message or control frame: a ping or pong is [`WsIn::Alive`] (an
    /// RFC 5626 keep-alive over a WebSocket: the peer is there). `Ok(None)` when the peer
    /// closed the WebSocket. Pings are answered by tungstenite on the next read or write.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: `StreamExt::next` keeps partial frames in the stream.
    pub async fn recv_any(&mut self) -> Result<Option<WsIn>, WsError> {
        loop {
            match self.inner.next().await {
                None | Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                    return Ok(Some(WsIn::Message(m.into_data())));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => return Ok(Some(WsIn::Alive)),
                Some(Ok(Message::Frame(_))) => {}
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => return Ok(None),
                Some(Err(e)) => return Err(e),
            }
        }
    }

    /// Sends a ping frame (RFC 6455 §5.5.2), as a phone keeps its flow (RFC 5626 §4.4.1).
    pub async fn ping(&mut self) -> Result<(), WsError> {
        self.inner.send(Message::Ping(Vec::new().into())).await
    }

    /// Closes the WebSocket (best effort).
    pub async fn close(&mut self) {
        let _ = self.inner.close(None).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    /// Messages larger than the read buffer cross whole, both ways, over a real TCP
    /// connection (a SIP message with a long SDP or many Via headers: up to 64 KiB); a longer
    /// one is refused.
    #[tokio::test]
    async fn messages_longer_than_the_read_buffer_arrive_whole() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = accept(tcp).await.unwrap();
            let mut got = Vec::new();
            while let Ok(Some(m)) = ws.recv().await {
                ws.send(&m).await.unwrap();
                got.push(m.len());
            }
            got
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut ws = connect(tcp, false, &addr.to_string(), "/", false)
            .await
            .unwrap();
        for len in [
            100,
            READ_BUFFER - 1,
            READ_BUFFER + 1,
            3 * READ_BUFFER + 7,
            MAX_MESSAGE,
        ] {
            let text: String = (0..len)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            ws.send(text.as_bytes()).await.unwrap();
            let back = ws.recv().await.unwrap().expect("echoed");
            assert_eq!(back.len(), len);
            assert_eq!(&back[..], text.as_bytes());
        }
        ws.send(&vec![b'x'; MAX_MESSAGE + 1]).await.unwrap();
        ws.close().await;
        let got = server.await.unwrap();
        assert_eq!(got.len(), 5, "the over-long message is refused: {got:?}");
    }
}
