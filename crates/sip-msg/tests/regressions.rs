//! Inputs that once broke the parser (found by fuzzing or reported), kept under
//! testdata/regressions: each must parse or fail with an error, never panic, and whatever
//! parses must print and parse again.

use std::path::PathBuf;

use sip_msg::{Framer, Message};

#[test]
fn regressions_never_panic() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/regressions");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("testdata/regressions") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "sip") {
            continue;
        }
        n += 1;
        let bytes = std::fs::read(&path).unwrap();
        if let Ok(mut m) = Message::parse(&bytes) {
            let _ = m.validate();
            Message::parse(&m.to_bytes())
                .unwrap_or_else(|e| panic!("{}: reprint fails: {e}", path.display()));
        }
        let mut f = Framer::new(65_536);
        f.push(&bytes);
        while let Some(r) = f.next_frame() {
            if r.is_err() {
                break;
            }
        }
    }
    assert!(n >= 1, "the regression files are there");
}
