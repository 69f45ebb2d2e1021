//! Runs the bench's workload a fixed number of times, for instruction-level profiling:
//! `valgrind --tool=callgrind target/release/examples/parse_loop view 10000`
//! (modes: `view`, `owned`, `parse`, `validate`, `print` (the parsed INVITE printed); `kinds NAME` parses one message of
//! `workload::KINDS`, e.g. `kinds BYE`). Counts are deterministic, unlike time.

use std::hint::black_box;

use sip_msg::Message;

#[path = "../benches/workload.rs"]
mod workload;
use workload::{INVITE, KINDS, parse_and_read_owned, parse_and_view};

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "view".to_owned());
    let kind = if mode == "kinds" { args.next() } else { None };
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let kind_bytes = kind.as_deref().map(|k| {
        KINDS
            .iter()
            .find(|(name, _)| *name == k)
            .map(|(_, b)| *b)
            .unwrap_or_else(|| panic!("no message kind {k}"))
    });
    let mut acc = 0usize;
    let parsed = Message::parse(INVITE).expect("parses");
    for _ in 0..n {
        acc += match mode.as_str() {
            "owned" => parse_and_read_owned(black_box(INVITE)),
            "kinds" => Message::parse_bytes(bytes::Bytes::from_static(black_box(
                kind_bytes.expect("a kind"),
            )))
            .expect("parses")
            .headers
            .len(),
            "print" => black_box(&parsed).to_bytes().len(),
            "parse" => Message::parse(black_box(INVITE))
                .expect("parses")
                .headers
                .len(),
            "validate" => {
                let mut m = Message::parse(black_box(INVITE)).expect("parses");
                m.validate().expect("valid").len()
            }
            _ => parse_and_view(black_box(INVITE)),
        };
    }
    println!("{mode} x{n}: {acc}");
}
