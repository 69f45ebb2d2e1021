//! Parse, validate, print and re-parse arbitrary bytes: nothing may panic, and a printed
//! message must parse again to the same start line and header count.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip_msg::typed::{CSeq, Contact, From, RecordRoute, Route, To, Via};
use sip_msg::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(mut msg) = Message::parse(data) else { return };
    let _ = msg.validate();
    // Every typed view must answer without panicking.
    let _ = msg.headers.typed_all::<Via>();
    let _ = msg.headers.typed_all::<Contact>();
    let _ = msg.headers.typed_all::<Route>();
    let _ = msg.headers.typed_all::<RecordRoute>();
    let _ = msg.headers.typed::<From>();
    let _ = msg.headers.typed::<To>();
    let _ = msg.headers.typed::<CSeq>();
    let _ = msg.summary();
    let printed = msg.to_bytes();
    let again = Message::parse(&printed).expect("a printed message parses again");
    assert_eq!(again.start_line(), msg.start_line());
    assert_eq!(again.headers.len(), msg.headers.len());
});
