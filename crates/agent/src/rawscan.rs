//! Byte scans over raw SIP messages, a word (8 bytes) at a time.
//!
//! The shard reads the Call-ID of each request it sends and of each response it receives
//! without parsing the message (`engine::raw_call_id`): most of that time is finding line
//! ends. `memchr` would do it too, but is not a dependency of this crate; the word-at-a-time
//! test below is the classic "has a zero byte" bit trick.

/// The index of the first `needle` in `hay`.
pub fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO.wrapping_mul(u64::from(needle));
    let mut chunks = hay.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ pattern;
        // Non-zero exactly when some byte of `x` is zero (a byte equal to `needle`).
        if x.wrapping_sub(LO) & !x & HI != 0 {
            return chunk.iter().position(|&b| b == needle).map(|i| at + i);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == needle)
        .map(|i| at + i)
}

/// The `\n`-separated pieces of `bytes`, as `bytes.split(|&b| b == b'\n')` yields them.
pub fn lines(bytes: &[u8]) -> Lines<'_> {
    Lines { rest: Some(bytes) }
}

/// See [`lines`].
#[derive(Debug, Clone)]
pub struct Lines<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match find_byte(rest, b'\n') {
            Some(i) => {
                self.rest = Some(&rest[i + 1..]);
                Some(&rest[..i])
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_byte_at_every_offset_like_position() {
        // All lengths up to three words, the needle at each place (and absent), with
        // bytes around it that differ from the needle by one bit or share its high bit.
        for needle in [b'\n', b':', 0u8, 0x80, 0xff] {
            for len in 0..24 {
                for place in 0..=len {
                    let mut hay: Vec<u8> = (0..len)
                        .map(|i| match i % 4 {
                            0 => needle ^ 1,
                            1 => needle ^ 0x80,
                            2 => needle.wrapping_add(1),
                            _ => b'a',
                        })
                        .collect();
                    if place < len {
                        hay[place] = needle;
                        if place + 3 < len {
                            hay[place + 3] = needle; // a second one further on
                        }
                    }
                    assert_eq!(
                        find_byte(&hay, needle),
                        hay.iter().position(|&b| b == needle),
                        "needle {needle:#x} len {len} place {place}"
                    );
                }
            }
        }
    }

    #[test]
    fn lines_split_as_the_slice_split_does() {
        let cases: [&[u8]; 7] = [
            b"",
            b"\n",
            b"\n\n",
            b"one line without end",
            b"INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\nbody\n",
            b"a\nbb\nccccccccccccccccc\n\nd",
            b"\xff\xfe\n\x00\x80\n",
        ];
        for c in cases {
            let want: Vec<&[u8]> = c.split(|&b| b == b'\n').collect();
            assert_eq!(lines(c).collect::<Vec<_>>(), want, "{c:?}");
        }
    }
}
