//! RTP, RTCP and RFC 4733 parsers on arbitrary bytes, then the same bytes into a live media
//! session (stats, jitter buffer, G.711 decode, RTCP handling), plain and with SRTP
//! (unprotect: index estimate, replay window, tag check; AES-CM and AES-GCM), and with
//! DTLS-SRTP (the datagrams in the DTLS range, 20–63, go to the handshake of a server
//! session, which makes no key before a well-formed ClientHello; the rest is SRTP before the
//! keys): nothing may panic.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use media::dtls::{DtlsIdentity, DtlsParams};
use media::dtmf::TelephoneEvent;
use media::rtcp;
use media::rtp::RtpPacket;
use media::sdp::{Codec, Direction};
use media::session::{DEFAULT_NTP_ORIGIN, MediaSession, SessionConfig};
use media::srtp::{MasterKey, SrtpParams, SrtpStream, Suite};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = RtpPacket::parse(data) {
        let _ = p.csrcs().count();
        let _ = TelephoneEvent::decode(p.payload);
    }
    if let Ok(pkts) = rtcp::parse_compound(data) {
        // Whatever we decode we can write and decode again.
        let bytes = rtcp::build_compound(&pkts);
        let _ = rtcp::parse_compound(&bytes);
    }
    let t0 = Instant::now();
    let cfg = SessionConfig {
        local_ssrc: 1,
        cname: "fuzz".into(),
        codec: Codec::Pcmu,
        send_pt: 0,
        recv_pt: 0,
        recv_event_pt: Some(101),
        send_event_pt: Some(101),
        ptime_ms: 20,
        rtcp_mux: true,
        direction: Direction::SendRecv,
        source: Default::default(),
        rtcp_interval: Duration::from_secs(5),
        ntp_at_start: DEFAULT_NTP_ORIGIN,
        seed: 1,
        srtp: None,
        dtls: None,
        // Our XR blocks are built from whatever the input made of the statistics.
        rtcp_xr: true,
    };
    let key = |suite: Suite| MasterKey::new(suite, &vec![7; suite.master_len()]).unwrap();
    for suite in Suite::ALL {
        let mut rx = SrtpStream::new(suite, &key(suite));
        let _ = rx.unprotect_rtp(&mut data.to_vec());
        let _ = rx.unprotect_rtcp(&mut data.to_vec());
    }
    let with_srtp = |suite| SessionConfig {
        srtp: Some(SrtpParams {
            suite,
            tx_key: key(suite),
            rx_key: key(suite),
        }),
        ..cfg.clone()
    };
    let (cm, gcm) = (
        with_srtp(Suite::AesCm128HmacSha1_32),
        with_srtp(Suite::AeadAes128Gcm),
    );
    // One certificate for the whole run (making one per input would be most of the time).
    static ID: OnceLock<Arc<DtlsIdentity>> = OnceLock::new();
    let id = ID.get_or_init(|| Arc::new(DtlsIdentity::generate().expect("a certificate")));
    let server = SessionConfig {
        dtls: Some(DtlsParams {
            identity: id.clone(),
            remote: id.fingerprint().clone(),
            active: false,
        }),
        ..cfg.clone()
    };
    for cfg in [cfg, cm, gcm, server] {
        let dtls = cfg.dtls.is_some();
        if dtls && !matches!(data.first(), Some(20..=63)) {
            // A DTLS session loads its key (a P-256 multiplication, slow under ASan): only
            // for inputs that start in the DTLS range, so the other paths keep their pace.
            continue;
        }
        let Ok(mut s) = MediaSession::new(cfg, t0) else {
            return;
        };
        // Split the input into datagrams at 0xFF bytes, 1 ms apart.
        for (i, d) in data.split(|b| *b == 0xff).enumerate() {
            let _ = s.handle_packet(t0 + Duration::from_millis(i as u64), d);
        }
        // What the handshake answers (and, were it keyed, the media).
        while dtls && s.poll_transmit(t0 + Duration::from_secs(2)).is_some() {}
        let _ = s.sample(t0 + Duration::from_secs(1));
        let _ = s.summary();
    }
});
