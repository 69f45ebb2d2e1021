//! What the Kamailio runs over stream transports share (`kamailio_streams.rs`,
//! `kamailio_proxy_streams.rs`): Kamailio's TLS listener, the run of a test file with every
//! trace kept, and the notes of an endpoint's trace.

use agent::engine::{EndpointReport, RunSummary, StopHandle};
use agent::trace::Direction;
use sip_net::tls::CertificateAuthority;
use testpeers::KamailioTls;

/// A TLS listener for Kamailio with a certificate for 127.0.0.1 signed by `ca`.
#[allow(dead_code)] // reason: outbound_builtin.rs shares the module and runs no Kamailio
pub fn kamailio_tls(ca: &CertificateAuthority) -> KamailioTls {
    let cert = ca.issue(&["127.0.0.1".to_owned()]).unwrap();
    KamailioTls {
        cert_pem: cert.cert_pem,
        key_pem: cert.key_pem,
        client_ca_pem: None,
    }
}

/// Runs the test file `text` (named `name` in errors), keeping every endpoint's trace.
pub fn run_file(name: &str, text: &str) -> (RunSummary, Vec<EndpointReport>) {
    run_file_at(name, text, 1_700_000_000)
}

/// [`run_file`] at `now_unix` (the built-in registrar's ephemeral credentials are issued
/// for it: the real time for a run through it).
#[allow(dead_code)] // reason: only outbound_builtin.rs, of the binaries sharing the module, runs one
pub fn run_file_at(name: &str, text: &str, now_unix: u64) -> (RunSummary, Vec<EndpointReport>) {
    let mut prepared =
        agent::testfile::prepare(name, text, b"unused", now_unix).unwrap_or_else(|e| panic!("{e}"));
    prepared.plan.keep_all_traces = true;
    let (tx, _rx) = std::sync::mpsc::channel();
    agent::runner::execute(prepared, tx, StopHandle::default()).unwrap()
}

/// The notes of `r`'s trace, in order.
pub fn notes(r: &EndpointReport) -> Vec<&str> {
    r.trace
        .iter()
        .filter(|e| e.direction == Direction::Note)
        .map(|e| e.text.as_str())
        .collect()
}

/// Where the first note starting with `prefix` is (panics with all of them when none).
pub fn note_at(notes: &[&str], prefix: &str) -> usize {
    notes
        .iter()
        .position(|n| n.starts_with(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` in {notes:#?}"))
}
