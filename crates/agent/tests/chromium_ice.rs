//! ICE + DTLS-SRTP + rtcp-mux against a real browser: headless Chromium's RTCPeerConnection
//! (driven over WebDriver by chromedriver) answers our call media's offer; its answer (only
//! its loopback UDP candidates kept: only loopback receives test traffic) is applied to our
//! side, which runs its ICE checks, nominates, does the DTLS handshake over the selected
//! pair and exchanges audio with a WebAudio oscillator track. Chromium's getStats must show
//! packets received from us, and we measure its audio.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent::callmedia::{CallMedia, MediaDriver, MediaPlan, PortAllocator, SendTiming, SrtpMode};
use agent::rxstamp::RecvBatch;

/// chromedriver on a free loopback port; killed on drop, even when the test fails.
struct Driver {
    child: Child,
    port: u16,
    profile: std::path::PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn start_driver() -> Driver {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect(
            "chromedriver not found: install the Debian packages `chromium` and `chromium-driver`",
        );
    let profile = std::env::temp_dir().join(format!("sipmeter-ice-chromium-{port}"));
    let d = Driver {
        child,
        port,
        profile,
    };
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return d;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("chromedriver did not listen on port {port} within 10 s");
}

/// One WebDriver request; the response's `value`.
fn wd(d: &Driver, method: &str, path: &str, body: &serde_json::Value) -> serde_json::Value {
    try_wd(d, method, path, body).unwrap()
}

/// [`wd`], its connection's failure an error.
fn try_wd(
    d: &Driver,
    method: &str,
    path: &str,
    body: &serde_json::Value,
) -> std::io::Result<serde_json::Value> {
    let body = body.to_string();
    let mut s = TcpStream::connect(("127.0.0.1", d.port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    // chromedriver keeps the connection open: read the headers, then Content-Length bytes.
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte)?;
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length in {head}"));
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    let json = String::from_utf8_lossy(&body);
    let v: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    Ok(v["value"].clone())
}

/// Runs `script` (async: it calls `done(result)`) in the page.
fn run(d: &Driver, sid: &str, script: &str, args: serde_json::Value) -> serde_json::Value {
    let script = format!(
        "const done = arguments[arguments.length - 1]; const args = arguments; \
         (async () => {{ try {{ {script} }} catch (e) {{ done('ERROR ' + e); }} }})();"
    );
    wd(
        d,
        "POST",
        &format!("/session/{sid}/execute/async"),
        &serde_json::json!({ "script": script, "args": args }),
    )
}

/// Chromium's answer with only its loopback UDP candidates.
fn loopback_only(sdp: &str) -> String {
    sdp.split("\r\n")
        .filter(|l| {
            !l.starts_with("a=candidate:")
                || (l.to_ascii_lowercase().contains(" udp ") && l.contains(" 127.0.0.1 "))
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// A Chromium session with loopback candidates and no mDNS names.
fn open_session(d: &Driver) -> String {
    let caps = serde_json::json!({ "capabilities": { "alwaysMatch": { "goog:chromeOptions": {
        "binary": "/usr/bin/chromium",
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                 "--allow-loopback-in-peer-connection",
                 "--disable-features=WebRtcHideLocalIpsWithMdns",
                 "--autoplay-policy=no-user-gesture-required",
                 format!("--user-data-dir={}", d.profile.display())],
    } } } });
    // chromedriver has once reset the connection of its first session request while it was
    // still starting (a loaded machine): the request is made again, up to 3 times.
    let mut tries = 0;
    let session = loop {
        tries += 1;
        match try_wd(d, "POST", "/session", &caps) {
            Ok(v) => break v,
            Err(e) if tries < 3 => {
                eprintln!("chromedriver: {e}; asking for a session again");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => panic!("no session from chromedriver after {tries} tries: {e}"),
        }
    };
    session["sessionId"].as_str().expect("a session").to_owned()
}

/// Runs our side for 4 s, then checks both: ICE connected over loopback, Chromium received
/// our audio and we received its.
async fn exchange_and_check(d: &Driver, sid: &str, mut media: CallMedia) {
    let mut batch = RecvBatch::default();
    let mut timing = SendTiming::default();
    let end = Instant::now() + Duration::from_secs(4);
    while Instant::now() < end {
        let now = Instant::now();
        media.read_due(now, &mut batch);
        media.on_timeout(now, &mut timing);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let stats = run(
        d,
        sid,
        "const s = await window.pc.getStats(); let inb = 0, out = 0;
         s.forEach(r => { if (r.type === 'inbound-rtp') inb = r.packetsReceived;
                          if (r.type === 'outbound-rtp') out = r.packetsSent; });
         done({ inb, out, ice: window.pc.iceConnectionState, conn: window.pc.connectionState });",
        serde_json::json!([]),
    );
    let notes = media.take_ice_notes();
    let ice = media.ice_summary().expect("ICE ran");
    let (sum, _) = media.finish(Instant::now()).expect("media ran");
    let _ = wd(
        d,
        "DELETE",
        &format!("/session/{sid}"),
        &serde_json::json!({}),
    );
    assert_eq!(
        ice.state, "connected",
        "{ice:?} {notes:?} chromium: {stats}"
    );
    assert_eq!(stats["conn"], "connected", "{stats} {notes:?}");
    let chromium_received = stats["inb"].as_u64().unwrap_or(0);
    assert!(chromium_received >= 50, "{stats} {notes:?}");
    assert!(sum.rx_packets >= 50, "{sum:?} {stats}");
    assert_eq!(sum.srtp_auth_failures, 0, "{sum:?}");
    let (_, remote, _) = ice.selected.expect("a selected pair");
    assert!(remote.ip().is_loopback(), "{ice:?}");
    eprintln!(
        "chromium: {stats}; ours: ICE {} after {:?} ({} checks sent, {} received), pair {:?}, \
         rx {} packets, MOS {:?}",
        ice.state,
        ice.stats.connected_after,
        ice.stats.checks_sent,
        ice.stats.checks_received,
        ice.selected,
        sum.rx_packets,
        sum.mos
    );
}

/// One call's media as a WebRTC-style phone has it: ICE, DTLS-SRTP, rtcp-mux, on loopback.
fn webrtc_media(driver: &MediaDriver) -> CallMedia {
    let mut ports = PortAllocator::new(None, 0);
    let plan = MediaPlan {
        ice: true,
        srtp: SrtpMode::Dtls,
        rtcp_mux: true,
        ..MediaPlan::default()
    };
    let ip: IpAddr = [127, 0, 0, 1].into();
    CallMedia::bind(ip, &mut ports, &plan, 1, 0, 1, driver, false).unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn chromium_answers_our_ice_dtls_offer_and_audio_flows_both_ways() {
    let d = start_driver();
    let sid = open_session(&d);

    let driver = MediaDriver::new().unwrap();
    let mut media = webrtc_media(&driver);
    let offer = String::from_utf8(media.offer().to_vec()).unwrap();
    let answer = run(
        &d,
        &sid,
        "const pc = new RTCPeerConnection(); window.pc = pc;
         const ctx = new AudioContext(); const osc = ctx.createOscillator();
         const dst = ctx.createMediaStreamDestination(); osc.connect(dst); osc.start();
         pc.addTrack(dst.stream.getAudioTracks()[0], dst.stream);
         await pc.setRemoteDescription({ type: 'offer', sdp: args[0] });
         await pc.setLocalDescription(await pc.createAnswer());
         await new Promise(r => { if (pc.iceGatheringState === 'complete') r();
           pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') r(); };
           setTimeout(r, 3000); });
         done(pc.localDescription.sdp);",
        serde_json::json!([offer]),
    );
    let answer = answer.as_str().expect("an SDP answer").to_owned();
    assert!(
        !answer.starts_with("ERROR"),
        "{answer}\n--- our offer:\n{offer}"
    );
    let answer = loopback_only(&answer);
    assert!(answer.contains(" 127.0.0.1 "), "{answer}");
    media
        .apply_answer(
            answer.as_bytes(),
            0x5e1f,
            "sipmeter@chromium",
            7,
            Instant::now(),
        )
        .unwrap_or_else(|e| panic!("{e}\n{answer}"));

    exchange_and_check(&d, &sid, media).await;
}

/// Chromium offers (BUNDLE, `a=mid`, `UDP/TLS/RTP/SAVPF`, Opus first): our call media answers
/// as the controlled agent and the DTLS client (`a=setup:active`), with only Chromium's
/// loopback UDP candidates taken; Chromium's checks and nomination select the pair, and
/// audio flows both ways.
#[tokio::test(flavor = "current_thread")]
async fn our_media_answers_chromiums_offer_as_the_controlled_agent() {
    let d = start_driver();
    let sid = open_session(&d);
    let driver = MediaDriver::new().unwrap();
    let mut media = webrtc_media(&driver);
    let offer = run(
        &d,
        &sid,
        "const pc = new RTCPeerConnection(); window.pc = pc;
         const ctx = new AudioContext(); const osc = ctx.createOscillator();
         const dst = ctx.createMediaStreamDestination(); osc.connect(dst); osc.start();
         pc.addTrack(dst.stream.getAudioTracks()[0], dst.stream);
         await pc.setLocalDescription(await pc.createOffer());
         await new Promise(r => { if (pc.iceGatheringState === 'complete') r();
           pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') r(); };
           setTimeout(r, 3000); });
         done(pc.localDescription.sdp);",
        serde_json::json!([]),
    );
    let offer = loopback_only(offer.as_str().expect("an SDP offer"));
    let answer = media
        .answer(
            offer.as_bytes(),
            0x5e1f,
            "sipmeter@chromium",
            7,
            Instant::now(),
        )
        .unwrap_or_else(|e| panic!("{e}\n{offer}"));
    let answer = String::from_utf8(answer.to_vec()).unwrap();
    let set = run(
        &d,
        &sid,
        "await window.pc.setRemoteDescription({ type: 'answer', sdp: args[0] }); done('ok');",
        serde_json::json!([answer]),
    );
    assert_eq!(
        set, "ok",
        "{set}\n--- our answer:\n{answer}\n--- its offer:\n{offer}"
    );
    exchange_and_check(&d, &sid, media).await;
}
