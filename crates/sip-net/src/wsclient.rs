//! The client side of SIP over WebSocket (RFC 7118), sans-IO: the opening handshake
//! (RFC 6455 §4.1) and the framing (§5), for a driver that owns the socket (the load
//! engine's poll set). Bytes read from the connection go in with [`WsClient::push`]; what
//! must be written comes out of [`WsClient::take_output`]. Frames we send are masked (§5.3),
//! one SIP message per WebSocket message, text when it is UTF-8, binary otherwise (RFC 7118
//! §5.1). Pings are answered, a close is answered and reported.

use bytes::{Buf, Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::http::StatusCode;

use crate::tls::Diagnosis;
use crate::ws::SUBPROTOCOL;

/// Largest WebSocket message accepted (a SIP message, RFC 7118 §5).
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Largest HTTP response head accepted during the upgrade.
const MAX_HEAD: usize = 16 * 1024;

/// What [`WsClient::next_event`] hands back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    /// The upgrade succeeded: the WebSocket is open.
    Open,
    /// One whole SIP message (a text or binary WebSocket message).
    Message(Bytes),
    /// The server closed the WebSocket (our close frame in answer is queued).
    Closed,
    /// A pong (RFC 6455 §5.5.3): the answer to our ping ([`WsClient::ping`]), or one the
    /// server sent unasked (a heartbeat).
    Pong,
}

/// A WebSocket failure, in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsFailure {
    /// The upgrade was refused or malformed.
    #[error("{}", .0.problem)]
    Upgrade(Diagnosis),
    /// The server broke the framing rules after the upgrade.
    #[error("WebSocket error: {0}")]
    Protocol(String),
}

#[derive(Debug)]
enum State {
    /// Waiting for the server's `101 Switching Protocols`.
    Upgrading { accept: String },
    /// Frames flow.
    Open,
    /// A close was sent or received: nothing more is read or sent.
    Closed,
}

/// One client WebSocket connection, sans-IO.
#[derive(Debug)]
pub struct WsClient {
    url: String,
    state: State,
    input: BytesMut,
    output: Vec<u8>,
    /// Fragments of a message in progress (§5.4).
    partial: Option<BytesMut>,
    /// Masking keys (§5.3: unpredictable; seeded from the random handshake key).
    rng: StdRng,
    /// The upgrade just finished: [`WsEvent::Open`] is due.
    opened: bool,
}

impl WsClient {
    /// Starts the opening handshake for `ws[s]://host{path}` asking for the `sip`
    /// subprotocol; the request is in [`Self::take_output`].
    pub fn new(secure: bool, host: &str, path: &str) -> Self {
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        let url = format!("{}://{host}{path}", if secure { "wss" } else { "ws" });
        let key = generate_key();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n"
        );
        let seed = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Self {
            state: State::Upgrading {
                accept: derive_accept_key(key.as_bytes()),
            },
            url,
            input: BytesMut::new(),
            output: request.into_bytes(),
            partial: None,
            rng: StdRng::seed_from_u64(seed),
            opened: false,
        }
    }

    /// The WebSocket URL asked for.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// True once the upgrade succeeded.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open)
    }

    /// Bytes read from the connection.
    pub fn push(&mut self, data: &[u8]) {
        self.input.extend_from_slice(data);
    }

    /// Bytes to write to the connection (the request, frames, answers to pings and closes).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// True when output waits.
    pub fn wants_write(&self) -> bool {
        !self.output.is_empty()
    }

    /// Frames one SIP message (masked) and returns the frame's bytes; `None` unless open.
    pub fn frame(&mut self, message: &[u8]) -> Option<Vec<u8>> {
        if !self.is_open() {
            return None;
        }
        // RFC 7118 §5.1: text for UTF-8 messages, binary otherwise.
        let opcode = if std::str::from_utf8(message).is_ok() {
            0x1
        } else {
            0x2
        };
        Some(self.masked(opcode, message))
    }

    /// A ping frame (RFC 6455 §5.5.2, masked, no payload): the keep-alive of an RFC 5626
    /// outbound flow over WebSocket, answered by a pong ([`WsEvent::Pong`]); `None` unless
    /// open.
    pub fn ping(&mut self) -> Option<Vec<u8>> {
        self.is_open().then(|| self.masked(0x9, &[]))
    }

    /// Queues a close frame (normal closure, §7.4.1) unless closed already.
    pub fn close(&mut self) {
        if self.is_open() {
            let f = self.masked(0x8, &1000u16.to_be_bytes());
            self.output.extend_from_slice(&f);
        }
        self.state = State::Closed;
    }

    /// The failure when the connection ends before the upgrade finished.
    pub fn closed_during_upgrade(&self) -> Diagnosis {
        Diagnosis {
            problem: format!(
                "the server closed the connection during the WebSocket upgrade for {}",
                self.url
            ),
            hint: "the port may not serve WebSocket: check the port (WS is often 80 or 8080, WSS 443 or 8443)".into(),
            certificate: false,
        }
    }

    /// The next thing that happened, from the bytes pushed so far; `Ok(None)`: more bytes
    /// are needed.
    pub fn next_event(&mut self) -> Result<Option<WsEvent>, WsFailure> {
        if let State::Upgrading { accept } = &self.state {
            let Some(end) = self.input.windows(4).position(|w| w == b"\r\n\r\n") else {
                if self.input.len() > MAX_HEAD {
                    return Err(self.upgrade_error("the response head is too long".into()));
                }
                return Ok(None);
            };
            let head = self.input.split_to(end + 4);
            let head = String::from_utf8_lossy(&head).into_owned();
            self.check_response(&head, &accept.clone())?;
            self.state = State::Open;
            self.opened = true;
        }
        if std::mem::take(&mut self.opened) {
            return Ok(Some(WsEvent::Open));
        }
        while matches!(self.state, State::Open) {
            let Some((fin, opcode, payload)) = self.next_frame()? else {
                return Ok(None);
            };
            match opcode {
                0x0 => {
                    let Some(p) = self.partial.as_mut() else {
                        return Err(WsFailure::Protocol(
                            "a continuation frame without a message to continue".into(),
                        ));
                    };
                    if p.len() + payload.len() > MAX_MESSAGE {
                        return Err(too_long());
                    }
                    p.extend_from_slice(&payload);
                    if fin {
                        let m = self.partial.take().unwrap_or_default();
                        return Ok(Some(WsEvent::Message(m.freeze())));
                    }
                }
                0x1 | 0x2 => {
                    if self.partial.is_some() {
                        return Err(WsFailure::Protocol(
                            "a new message began before the last one ended".into(),
                        ));
                    }
                    if fin {
                        return Ok(Some(WsEvent::Message(payload)));
                    }
                    self.partial = Some(BytesMut::from(&payload[..]));
                }
                0x8 => {
                    // Answer with our own close (§5.5.1), echoing the status code.
                    let code = payload.get(..2).unwrap_or(&[]).to_vec();
                    let f = self.masked(0x8, &code);
                    self.output.extend_from_slice(&f);
                    self.state = State::Closed;
                    return Ok(Some(WsEvent::Closed));
                }
                0x9 => {
                    let f = self.masked(0xA, &payload);
                    self.output.extend_from_slice(&f);
                }
                0xA => return Ok(Some(WsEvent::Pong)),
                other => {
                    return Err(WsFailure::Protocol(format!(
                        "a frame with the unknown opcode {other:#x}"
                    )));
                }
            }
        }
        Ok(None)
    }

    /// One whole frame from the input: (FIN, opcode, payload).
    fn next_frame(&mut self) -> Result<Option<(bool, u8, Bytes)>, WsFailure> {
        let b = &self.input[..];
        if b.len() < 2 {
            return Ok(None);
        }
        let fin = b[0] & 0x80 != 0;
        if b[0] & 0x70 != 0 {
            return Err(WsFailure::Protocol(
                "a frame with reserved bits set (no extension was agreed)".into(),
            ));
        }
        let opcode = b[0] & 0x0f;
        let masked = b[1] & 0x80 != 0;
        let (len, mut at) = match b[1] & 0x7f {
            126 => {
                if b.len() < 4 {
                    return Ok(None);
                }
                (usize::from(u16::from_be_bytes([b[2], b[3]])), 4)
            }
            127 => {
                if b.len() < 10 {
                    return Ok(None);
                }
                let mut n = [0u8; 8];
                n.copy_from_slice(&b[2..10]);
                (
                    usize::try_from(u64::from_be_bytes(n)).unwrap_or(usize::MAX),
                    10,
                )
            }
            n => (usize::from(n), 2),
        };
        if opcode >= 0x8 && (len > 125 || !fin) {
            return Err(WsFailure::Protocol(
                "a control frame longer than 125 bytes or fragmented".into(),
            ));
        }
        if len > MAX_MESSAGE {
            return Err(too_long());
        }
        // §5.1: a server must not mask its frames; one that does is tolerated (unmasked here).
        let mask = if masked {
            if b.len() < at + 4 {
                return Ok(None);
            }
            let m = [b[at], b[at + 1], b[at + 2], b[at + 3]];
            at += 4;
            Some(m)
        } else {
            None
        };
        if b.len() < at + len {
            return Ok(None);
        }
        self.input.advance(at);
        let mut payload = self.input.split_to(len);
        if let Some(m) = mask {
            for (i, byte) in payload.iter_mut().enumerate() {
                *byte ^= m[i % 4];
            }
        }
        Ok(Some((fin, opcode, payload.freeze())))
    }

    /// A final, masked frame (§5.2, §5.3).
    fn masked(&mut self, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::with_capacity(payload.len() + 14);
        f.push(0x80 | opcode);
        match payload.len() {
            n @ 0..=125 => f.push(0x80 | n as u8),
            n @ 126..=0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask: [u8; 4] = self.rng.random();
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    /// Checks the server's answer to the upgrade (§4.1, RFC 7118 §4.1).
    fn check_response(&self, head: &str, accept: &str) -> Result<(), WsFailure> {
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or("");
        let code = status
            .strip_prefix("HTTP/1.1 ")
            .or_else(|| status.strip_prefix("HTTP/1.0 "))
            .and_then(|s| s.get(..3))
            .and_then(|c| c.parse::<u16>().ok());
        let Some(code) = code else {
            return Err(self.upgrade_error(format!("`{status}` is not an HTTP status line")));
        };
        if code != 101 {
            let status =
                StatusCode::from_u16(code).map_or_else(|_| code.to_string(), |s| s.to_string());
            return Err(WsFailure::Upgrade(Diagnosis {
                problem: format!(
                    "the server answered the WebSocket upgrade for {} with HTTP {status}",
                    self.url
                ),
                hint: "check the WebSocket path (--ws-path) and that this port serves SIP over WebSocket".into(),
                certificate: false,
            }));
        }
        let header = |name: &str| {
            head.split("\r\n").skip(1).find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
            })
        };
        if !header("Upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
            return Err(self.upgrade_error("no `Upgrade: websocket` header in the answer".into()));
        }
        if !header("Connection").is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        }) {
            return Err(self.upgrade_error("no `Connection: Upgrade` header in the answer".into()));
        }
        if header("Sec-WebSocket-Accept") != Some(accept) {
            return Err(
                self.upgrade_error("the Sec-WebSocket-Accept header does not match our key".into())
            );
        }
        if !header("Sec-WebSocket-Protocol").is_some_and(|v| v.eq_ignore_ascii_case(SUBPROTOCOL)) {
            return Err(WsFailure::Upgrade(Diagnosis {
                problem: format!(
                    "the server at {} did not accept the WebSocket subprotocol `sip` (RFC 7118)",
                    self.url
                ),
                hint: "the server speaks WebSocket but not SIP over it: check the port and path"
                    .into(),
                certificate: false,
            }));
        }
        Ok(())
    }

    fn upgrade_error(&self, why: String) -> WsFailure {
        WsFailure::Upgrade(Diagnosis {
            problem: format!("the WebSocket upgrade for {} failed: {why}", self.url),
            hint: "the port may not serve WebSocket: check the port and path".into(),
            certificate: false,
        })
    }
}

fn too_long() -> WsFailure {
    WsFailure::Protocol(format!(
        "a message longer than {MAX_MESSAGE} bytes (a SIP message is far shorter)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server's side of a frame: unmasked.
    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![u8::from(fin) << 7 | opcode];
        match payload.len() {
            n @ 0..=125 => f.push(n as u8),
            n @ 126..=0xffff => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    /// Unmasks one client frame: (opcode, payload).
    fn unmask(f: &[u8]) -> (u8, Vec<u8>) {
        assert_eq!(f[0] & 0x80, 0x80, "final");
        assert_eq!(f[1] & 0x80, 0x80, "masked");
        let (len, at) = match f[1] & 0x7f {
            126 => (usize::from(u16::from_be_bytes([f[2], f[3]])), 4),
            127 => panic!("long"),
            n => (usize::from(n), 2),
        };
        let mask = &f[at..at + 4];
        let p = f[at + 4..at + 4 + len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!(f.len(), at + 4 + len);
        (f[0] & 0x0f, p)
    }

    fn open_client() -> WsClient {
        let mut c = WsClient::new(false, "example.com:80", "/ws");
        let req = String::from_utf8(c.take_output()).unwrap();
        let key = req
            .split("\r\n")
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap();
        let accept = derive_accept_key(key.as_bytes());
        c.push(format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: sip\r\n\r\n").as_bytes());
        assert_eq!(c.next_event(), Ok(Some(WsEvent::Open)));
        c
    }

    #[test]
    fn the_request_asks_for_sip_and_a_valid_answer_opens() {
        let mut c = WsClient::new(true, "[::1]:8443", "ws");
        assert_eq!(c.url(), "wss://[::1]:8443/ws");
        let req = String::from_utf8(c.take_output()).unwrap();
        assert!(
            req.starts_with("GET /ws HTTP/1.1\r\nHost: [::1]:8443\r\n"),
            "{req}"
        );
        assert!(req.contains("\r\nSec-WebSocket-Protocol: sip\r\n"));
        assert!(req.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        assert!(req.ends_with("\r\n\r\n"));
        assert!(!c.is_open());
        assert_eq!(c.frame(b"x"), None, "nothing is framed before the upgrade");
        let c = open_client();
        assert!(c.is_open());
    }

    #[test]
    fn refusals_are_explained() {
        let mut c = WsClient::new(false, "h:80", "/");
        c.push(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        match c.next_event() {
            Err(WsFailure::Upgrade(d)) => assert_eq!(
                d.problem,
                "the server answered the WebSocket upgrade for ws://h:80/ with HTTP 404 Not Found"
            ),
            other => panic!("{other:?}"),
        }
        let mut c = WsClient::new(false, "h:80", "/");
        let req = String::from_utf8(c.take_output()).unwrap();
        let key = req
            .split("\r\n")
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap();
        let accept = derive_accept_key(key.as_bytes());
        c.push(format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").as_bytes());
        match c.next_event() {
            Err(WsFailure::Upgrade(d)) => {
                assert!(d.problem.contains("subprotocol `sip`"), "{d:?}")
            }
            other => panic!("{other:?}"),
        }
        let mut c = WsClient::new(false, "h:80", "/");
        c.push(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAA\r\nSec-WebSocket-Protocol: sip\r\n\r\n");
        match c.next_event() {
            Err(WsFailure::Upgrade(d)) => assert!(d.problem.contains("does not match"), "{d:?}"),
            other => panic!("{other:?}"),
        }
        let c = WsClient::new(false, "h:80", "/");
        assert_eq!(
            c.closed_during_upgrade().problem,
            "the server closed the connection during the WebSocket upgrade for ws://h:80/"
        );
    }

    #[test]
    fn messages_in_pieces_fragments_pings_and_close() {
        let mut c = open_client();
        // A text message in two reads; a binary one in two fragments with a ping between.
        let f = server_frame(true, 0x1, b"OPTIONS sip:a SIP/2.0\r\n\r\n");
        c.push(&f[..5]);
        assert_eq!(c.next_event(), Ok(None));
        c.push(&f[5..]);
        assert_eq!(
            c.next_event(),
            Ok(Some(WsEvent::Message(Bytes::from_static(
                b"OPTIONS sip:a SIP/2.0\r\n\r\n"
            ))))
        );
        let long = vec![b'y'; 300];
        c.push(&server_frame(false, 0x2, &long[..200]));
        c.push(&server_frame(true, 0x9, b"hi"));
        c.push(&server_frame(true, 0x0, &long[200..]));
        assert_eq!(
            c.next_event(),
            Ok(Some(WsEvent::Message(Bytes::from(long))))
        );
        assert_eq!(unmask(&c.take_output()), (0xA, b"hi".to_vec()), "the pong");
        // What we send: masked text or binary frames.
        let f = c.frame(b"REGISTER").unwrap();
        assert_eq!(unmask(&f), (0x1, b"REGISTER".to_vec()));
        let f = c.frame(&[0xff; 200]).unwrap();
        assert_eq!(unmask(&f), (0x2, vec![0xff; 200]));
        // The server's close is answered and reported.
        c.push(&server_frame(true, 0x8, &1001u16.to_be_bytes()));
        assert_eq!(c.next_event(), Ok(Some(WsEvent::Closed)));
        assert_eq!(
            unmask(&c.take_output()),
            (0x8, 1001u16.to_be_bytes().to_vec())
        );
        assert_eq!(c.frame(b"x"), None);
    }

    /// RFC 6455 §5.5.2/§5.5.3: our keep-alive ping is a masked, empty ping frame; the
    /// server's pong, even between two fragments of a message, is told; no ping once closed.
    #[test]
    fn our_pings_and_their_pongs() {
        let mut c = open_client();
        let ping = c.ping().expect("open");
        assert_eq!(ping[1] & 0x80, 0x80, "masked");
        assert_eq!(unmask(&ping), (0x9, Vec::new()));
        c.push(&server_frame(true, 0xA, b""));
        assert_eq!(c.next_event(), Ok(Some(WsEvent::Pong)));
        c.push(&server_frame(false, 0x1, b"OPTIONS sip:a "));
        c.push(&server_frame(true, 0xA, b"beat"));
        c.push(&server_frame(true, 0x0, b"SIP/2.0\r\n\r\n"));
        assert_eq!(c.next_event(), Ok(Some(WsEvent::Pong)));
        assert_eq!(
            c.next_event(),
            Ok(Some(WsEvent::Message(Bytes::from_static(
                b"OPTIONS sip:a SIP/2.0\r\n\r\n"
            ))))
        );
        assert!(!c.wants_write(), "a pong is not answered");
        c.close();
        assert_eq!(c.ping(), None);
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        for bad in [
            server_frame(true, 0x3, b""),
            server_frame(false, 0x9, b""),
            server_frame(true, 0x0, b"x"),
            vec![0xC1, 0x00],
            {
                let mut f = vec![0x81, 127];
                f.extend_from_slice(&u64::MAX.to_be_bytes());
                f
            },
        ] {
            let mut c = open_client();
            c.push(&bad);
            assert!(
                matches!(c.next_event(), Err(WsFailure::Protocol(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn our_close_is_a_masked_close_frame() {
        let mut c = open_client();
        c.close();
        assert_eq!(
            unmask(&c.take_output()),
            (0x8, 1000u16.to_be_bytes().to_vec())
        );
        assert!(!c.is_open());
    }
}
