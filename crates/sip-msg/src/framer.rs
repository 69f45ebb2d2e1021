//! Splits a stream (TCP, TLS, WebSocket text) into SIP messages by Content-Length.
//!
//! Push bytes as they arrive with [`Framer::push`], then call [`Framer::next_frame`] until it
//! returns `None`. Each byte is scanned once: the search for the end of the header section
//! resumes where it stopped. CRLF keep-alives between messages are reported, not parsed
//! (RFC 5626 §3.5.1: a double CRLF is a ping, a single CRLF the pong). A lone CRLF at the end
//! of what has arrived is reported as a pong at once, because a client's liveness check must
//! not wait for more data; so a ping split by the network right after its first CRLF reads as
//! two pongs. After an error the
//! stream is out of sync and the connection should be closed; the framer stays failed.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::ErrorKind;

/// What the framer found next in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One complete message (header section and body), ready for [`crate::Message::parse_bytes`].
    Message(Bytes),
    /// A CRLF CRLF keep-alive ping (answer with a single CRLF).
    Ping,
    /// A single CRLF keep-alive pong.
    Pong,
}

/// Why the stream cannot be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The header section or the declared body exceeds the size limit.
    #[error("message larger than {0} bytes")]
    TooLarge(usize),
    /// The header section has no Content-Length (mandatory on streams, RFC 3261 §18.3).
    #[error("message without content-length on a stream")]
    MissingContentLength,
    /// Content-Length is not a number.
    #[error("bad content-length")]
    BadContentLength,
}

impl From<FrameError> for ErrorKind {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::TooLarge(_) => ErrorKind::TooLarge,
            FrameError::MissingContentLength => ErrorKind::MissingContentLength,
            FrameError::BadContentLength => {
                ErrorKind::BadHeaderValue(crate::error::HeaderError::BadNumber)
            }
        }
    }
}

/// A stream framer with a size cap.
#[derive(Debug)]
pub struct Framer {
    buf: BytesMut,
    max: usize,
    /// Where the search for CRLFCRLF resumes.
    scanned: usize,
    /// Total length of the message being assembled, once its header section is complete.
    want: Option<usize>,
    failed: Option<FrameError>,
}

impl Framer {
    /// A framer refusing messages larger than `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max: max_message,
            scanned: 0,
            want: None,
            failed: None,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// Bytes buffered and not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next frame, `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Result<Frame, FrameError>> {
        if let Some(e) = self.failed {
            return Some(Err(e));
        }
        let r = self.step();
        if let Some(Err(e)) = r {
            self.failed = Some(e);
            self.buf.clear();
        }
        r
    }

    fn step(&mut self) -> Option<Result<Frame, FrameError>> {
        if self.want.is_none() && self.scanned == 0 {
            // Between messages: keep-alives.
            if self.buf.starts_with(b"\r\n\r\n") {
                self.buf.advance(4);
                return Some(Ok(Frame::Ping));
            }
            if self.buf.starts_with(b"\r\n") {
                self.buf.advance(2);
                return Some(Ok(Frame::Pong));
            }
            if self.buf.as_ref() == b"\r" {
                return None;
            }
        }
        if self.want.is_none() {
            let from = self.scanned.saturating_sub(3);
            match find(&self.buf[from..], b"\r\n\r\n") {
                Some(i) => {
                    let head_len = from + i + 4;
                    let cl = match content_length(&self.buf[..head_len]) {
                        Ok(cl) => cl,
                        Err(e) => return Some(Err(e)),
                    };
                    let total = head_len.saturating_add(cl);
                    if total > self.max {
                        return Some(Err(FrameError::TooLarge(self.max)));
                    }
                    self.want = Some(total);
                }
                None => {
                    self.scanned = self.buf.len();
                    if self.buf.len() > self.max {
                        return Some(Err(FrameError::TooLarge(self.max)));
                    }
                    return None;
                }
            }
        }
        // Set just above or on an earlier call.
        let want = self.want?;
        if self.buf.len() < want {
            return None;
        }
        let msg = self.buf.split_to(want).freeze();
        self.want = None;
        self.scanned = 0;
        Some(Ok(Frame::Message(msg)))
    }
}

/// The first `needle` in `hay` (`memchr::memmem`: a vector search for the needle's rarest
/// byte, then a compare; the byte-window scan it replaces compared at every offset).
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// The pieces of `head` between `\n`s, as `head.split(|&c| c == b'\n')` gives them (the
/// last one after the last `\n`, maybe empty), found with `memchr`.
fn head_lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(head);
    std::iter::from_fn(move || {
        let r = rest?;
        match memchr::memchr(b'\n', r) {
            Some(end) => {
                rest = r.get(end + 1..);
                r.get(..end)
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// Reads Content-Length (or `l`) from a header section without parsing the rest.
fn content_length(head: &[u8]) -> Result<usize, FrameError> {
    for line in head_lines(head).skip(1) {
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let v = line[colon + 1..].trim_ascii();
            if v.is_empty() || v.len() > 10 || !v.iter().all(u8::is_ascii_digit) {
                return Err(FrameError::BadContentLength);
            }
            let s = std::str::from_utf8(v).map_err(|_| FrameError::BadContentLength)?;
            return s.parse().map_err(|_| FrameError::BadContentLength);
        }
    }
    Err(FrameError::MissingContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    const M1: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 3\r\n\r\nabc";
    const M2: &[u8] = b"SIP/2.0 200 OK\r\nl: 0\r\n\r\n";

    fn collect(f: &mut Framer) -> Vec<Frame> {
        let mut out = Vec::new();
        while let Some(r) = f.next_frame() {
            out.push(r.unwrap());
        }
        out
    }

    #[test]
    fn memchr_searches_find_what_byte_by_byte_scans_find() {
        // Every buffer of up to six bytes over `\r`, `\n`, `:` and `a`, and longer ones (up to
        // 130 bytes, past memchr's vector sizes) with the pattern at every offset: the
        // `\r\n\r\n` search against the window scan it replaced, the line split against
        // `split`, from every start.
        let alphabet = [b'\r', b'\n', b':', b'a'];
        let mut bufs: Vec<Vec<u8>> = vec![Vec::new()];
        let mut last = bufs.clone();
        for _ in 0..6 {
            last = last
                .iter()
                .flat_map(|b| {
                    alphabet.iter().map(move |&c| {
                        let mut b = b.clone();
                        b.push(c);
                        b
                    })
                })
                .collect();
            bufs.extend(last.iter().cloned());
        }
        for len in [15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 130] {
            for at in 0..len {
                for pattern in [&b"\r\n\r\n"[..], b"\r\n\r", b"\n", b":"] {
                    let mut b = vec![b'a'; len];
                    for (i, &c) in pattern.iter().enumerate() {
                        if let Some(slot) = b.get_mut(at + i) {
                            *slot = c;
                        }
                    }
                    bufs.push(b);
                }
            }
        }
        let window_find = |hay: &[u8], needle: &[u8]| -> Option<usize> {
            hay.windows(needle.len()).position(|w| w == needle)
        };
        for b in &bufs {
            for from in 0..=b.len() {
                let hay = &b[from..];
                assert_eq!(
                    find(hay, b"\r\n\r\n"),
                    window_find(hay, b"\r\n\r\n"),
                    "{hay:?}"
                );
                let split: Vec<&[u8]> = hay.split(|&c| c == b'\n').collect();
                let ours: Vec<&[u8]> = head_lines(hay).collect();
                assert_eq!(ours, split, "{hay:?}");
            }
        }
    }

    #[test]
    fn splits_messages_and_keepalives_in_any_chunking() {
        let mut stream = Vec::new();
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(M1);
        stream.extend_from_slice(b"\r\n");
        stream.extend_from_slice(M2);
        for chunk in 4..stream.len() {
            let mut f = Framer::new(1000);
            let mut frames = Vec::new();
            for c in stream.chunks(chunk) {
                f.push(c);
                frames.extend(collect(&mut f));
            }
            assert_eq!(
                frames,
                vec![
                    Frame::Ping,
                    Frame::Message(Bytes::from_static(M1)),
                    Frame::Pong,
                    Frame::Message(Bytes::from_static(M2)),
                ],
                "chunk size {chunk}"
            );
            assert_eq!(f.buffered(), 0);
        }
    }

    #[test]
    fn byte_by_byte_messages_and_a_split_ping() {
        let mut f = Framer::new(1000);
        let mut frames = Vec::new();
        for b in [b"\r\n\r\n".as_slice(), M1, M2].concat() {
            f.push(&[b]);
            frames.extend(collect(&mut f));
        }
        // The ping arrived one byte at a time: its first CRLF is taken for a pong (see module doc).
        assert_eq!(
            frames,
            vec![
                Frame::Pong,
                Frame::Pong,
                Frame::Message(Bytes::from_static(M1)),
                Frame::Message(Bytes::from_static(M2)),
            ]
        );
    }

    #[test]
    fn refuses_oversize_and_missing_length() {
        let mut f = Framer::new(16);
        f.push(b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n");
        assert_eq!(f.next_frame(), Some(Err(FrameError::TooLarge(16))));
        assert_eq!(f.next_frame(), Some(Err(FrameError::TooLarge(16))));
        let mut f = Framer::new(1000);
        f.push(b"INVITE sip:a@b SIP/2.0\r\n\r\n");
        assert_eq!(f.next_frame(), Some(Err(FrameError::MissingContentLength)));
        let mut f = Framer::new(1000);
        f.push(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 99999\r\n\r\n");
        assert_eq!(f.next_frame(), Some(Err(FrameError::TooLarge(1000))));
        let mut f = Framer::new(1000);
        f.push(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n");
        assert_eq!(f.next_frame(), Some(Err(FrameError::BadContentLength)));
    }
}
