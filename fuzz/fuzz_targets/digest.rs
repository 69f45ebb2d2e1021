//! Parse arbitrary challenge and credentials values: errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    if let Ok(ch) = sip_auth::Challenge::parse(&s) {
        let creds = sip_auth::Credentials::new("u", "p");
        let v = sip_auth::DigestClient::default().authorize(&ch, &creds, "REGISTER", "sip:x", b"", "c");
        sip_auth::Authorization::parse(&v).expect("our own credentials parse");
    }
    let _ = sip_auth::Authorization::parse(&s);
});
