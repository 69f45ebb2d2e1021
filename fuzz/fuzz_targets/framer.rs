//! Feed arbitrary bytes to the stream framer in arbitrary chunks: nothing may panic, frames
//! are prefixes of the stream, and the buffer never exceeds the cap by more than one chunk.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip_msg::{Frame, Framer};

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let chunk = usize::from(data[0] % 64) + 1;
    let stream = &data[1..];
    let mut f = Framer::new(4096);
    let mut consumed = 0usize;
    for c in stream.chunks(chunk) {
        f.push(c);
        while let Some(r) = f.next_frame() {
            match r {
                Ok(Frame::Message(m)) => {
                    assert!(stream[consumed..].starts_with(&m));
                    consumed += m.len();
                    let _ = sip_msg::Message::parse_bytes(m);
                }
                Ok(Frame::Ping) => consumed += 4,
                Ok(Frame::Pong) => consumed += 2,
                Err(_) => return,
            }
        }
        assert!(f.buffered() <= 4096 + chunk);
    }
});
