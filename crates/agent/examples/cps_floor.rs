//! The floor under `sipmeter run`'s CPU per call (issue #6): only the caller's datagrams,
//! with the shard's socket handling and none of its SIP work.
//!
//! It plays zero-length calls against a SIPp UAS (`sipp -sn uas`) the way a sipmeter shard
//! does on the wire: INVITE, then on the 200 an ACK and a BYE, done on the BYE's 200. The
//! messages are pre-printed (the shapes and sizes of what sipmeter sends) with the Call-ID,
//! branch and tag patched in at fixed offsets; a response is matched by a byte scan (status
//! code, `CSeq` method, the call's number in the Call-ID); the ACK and BYE copy the 200's `To`
//! line (SIPp's tag). The socket is handled as the shard handles its own: one UDP socket
//! with a 4 MB receive buffer and `SO_TIMESTAMPNS`, `recvmmsg`/`sendmmsg` batches of 32
//! (`udpbatch`), at most 64 datagrams read per turn, and the same interrupt coalescing
//! (`sipsock::Coalescer`, 500 µs quantum unless `SIPMETER_COALESCE_US` says otherwise) on a
//! plain epoll loop (mio) whose sleeps, like tokio's timer, are whole milliseconds.
//! No parsing, no state machines, no trace, no report, no allocation per message beyond
//! the datagram's own bytes.
//!
//! What it costs per call (`perf stat` around it: `CPS_FLOOR=1 benches/load/cps.sh`) is the
//! kernel's share (loopback delivery, wake-ups) plus a minimal loop on this machine: what
//! no SIP work, however cheap, can go below with kernel sockets.
//!
//! ```text
//! cargo run --release -p agent --example cps_floor -- 127.0.0.1:5060 CALLS RATE
//! ```
//! Prints one line: calls answered and unfinished, wall time, the dialling rate. Calls
//! whose datagrams were lost are not retried (SIPp's own retransmissions are answered): a
//! run with unfinished calls says so and is not a floor figure.

use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use agent::sipsock::{self, Coalescer};
use agent::udpbatch::{self, RecvBatch, SendQueue};
use bytes::Bytes;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

/// Datagrams read per turn at most (the shard's `UDP_DRAIN`).
const UDP_DRAIN: usize = 64;
/// How long the run waits for its last answers after the last dial.
const TAIL: Duration = Duration::from_secs(5);
/// Width of the call number in Call-IDs, branches and tags (patched in place).
const DIGITS: usize = 8;

/// A pre-printed request and where its call number goes.
struct Template {
    bytes: Vec<u8>,
    /// Offsets of each `{n}` (DIGITS bytes of `0`).
    slots: Vec<usize>,
}

impl Template {
    /// `text` with each `{n}` a slot for the call number; CRLF line ends.
    fn new(text: &str) -> Self {
        let text = text.replace('\n', "\r\n");
        let mut bytes = Vec::with_capacity(text.len());
        let mut slots = Vec::new();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("{n}") {
            bytes.extend_from_slice(&rest.as_bytes()[..at]);
            slots.push(bytes.len());
            bytes.extend_from_slice(&[b'0'; DIGITS]);
            rest = &rest[at + 3..];
        }
        bytes.extend_from_slice(rest.as_bytes());
        Self { bytes, slots }
    }

    /// The request for call `n`, with `to` (a whole `To:` line, CRLF included) after the
    /// template's first `\r\n` line when given.
    fn print(&self, n: usize, to: Option<&[u8]>) -> Bytes {
        let mut out = Vec::with_capacity(self.bytes.len() + to.map_or(0, <[u8]>::len));
        out.extend_from_slice(&self.bytes);
        let mut digits = [b'0'; DIGITS];
        let mut v = n;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        for &s in &self.slots {
            out[s..s + DIGITS].copy_from_slice(&digits);
        }
        if let Some(to) = to {
            // The To line goes where the template has `To: -\r\n`.
            if let Some(at) = find(&out, b"\r\nTo: -\r\n") {
                out.splice(at + 2..at + 9, to.iter().copied());
            }
        }
        Bytes::from(out)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// What a response says, by byte scan: status code, whether its `CSeq` is an INVITE's, the
/// call number in its Call-ID, and its `To` line (CRLF included).
fn scan(d: &[u8]) -> Option<(u16, bool, usize, &[u8])> {
    let code = d.strip_prefix(b"SIP/2.0 ")?.get(..3)?;
    let code = code.iter().try_fold(0u16, |a, &c| {
        c.is_ascii_digit().then(|| a * 10 + u16::from(c - b'0'))
    })?;
    let cseq = find(d, b"\r\nCSeq:")?;
    let line_end = cseq + 2 + find(&d[cseq + 2..], b"\r\n")?;
    let invite = find(&d[cseq..line_end], b"INVITE").is_some();
    let cid = find(d, b"\r\nCall-ID: floor")? + 16;
    let n = d.get(cid..cid + DIGITS)?.iter().try_fold(0usize, |a, &c| {
        c.is_ascii_digit().then(|| a * 10 + usize::from(c - b'0'))
    })?;
    let to = find(d, b"\r\nTo:")? + 2;
    let to_end = to + find(&d[to..], b"\r\n")? + 2;
    Some((code, invite, n, &d[to..to_end]))
}

#[derive(Clone, Copy, PartialEq)]
enum Call {
    Idle,
    Inviting,
    Ending,
    Done,
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || io::Error::other("usage: cps_floor SERVER_ADDR CALLS RATE");
    let server: SocketAddr = args
        .first()
        .and_then(|a| a.parse().ok())
        .ok_or_else(usage)?;
    let calls: usize = args.get(1).and_then(|a| a.parse().ok()).ok_or_else(usage)?;
    let rate: f64 = args.get(2).and_then(|a| a.parse().ok()).ok_or_else(usage)?;

    let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
    sipsock::widen_recv_buffer(&sock);
    let _ = agent::rxstamp::enable(&sock);
    sock.set_nonblocking(true)?;
    let local = sock.local_addr()?;

    // The shapes of sipmeter's requests for a zero-length call without media (see the note
    // docs/notes-cpu3.md for how they were taken from a run).
    let head = |method: &str, cseq: u32, branch: &str, tag_line: &str| {
        format!(
            "{method} sip:service@{server} SIP/2.0\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK{{n}}{branch};rport\n\
             Max-Forwards: 70\n\
             From: <sip:caller{{n}}@{host}>;tag=f{{n}}\n\
             {tag_line}\
             Call-ID: floor{{n}}@{local}\n\
             CSeq: {cseq} {method}\n\
             User-Agent: sipmeter/0.1.0\n",
            host = server.ip(),
        )
    };
    let to_plain = format!("To: <sip:service@{server}>\n");
    let sdp = format!(
        "v=0\no=sipmeter 0 1 IN IP4 {ip}\ns=sipmeter\nc=IN IP4 {ip}\nt=0 0\n\
         m=audio 0 RTP/AVP 0 8 101\na=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000\n\
         a=rtpmap:101 telephone-event/8000\na=fmtp:101 0-15\na=ptime:20\na=sendrecv\n",
        ip = local.ip()
    )
    .replace('\n', "\r\n");
    let invite = Template::new(&format!(
        "{}Contact: <sip:caller{{n}}@{local}>\n\
         Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE, PRACK\n\
         Supported: replaces, timer\nContent-Type: application/sdp\nContent-Length: {}\n\n",
        head("INVITE", 1, "i", &to_plain),
        sdp.len()
    ));
    let mut invite_bytes = invite.bytes.clone();
    invite_bytes.extend_from_slice(sdp.as_bytes());
    let invite = Template {
        bytes: invite_bytes,
        slots: invite.slots,
    };
    let ack = Template::new(&format!(
        "{}Content-Length: 0\n\n",
        head("ACK", 1, "a", "To: -\n")
    ));
    let bye = Template::new(&format!(
        "{}Content-Length: 0\n\n",
        head("BYE", 2, "b", "To: -\n")
    ));

    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(8);
    let fd = sock.as_raw_fd();
    let mut armed = false;
    let mut coalesce = Coalescer::new(sipsock::quantum());
    let mut rx = RecvBatch::default();
    let mut tx: SendQueue<()> = SendQueue::default();
    let mut state = vec![Call::Idle; calls];
    let (mut dialled, mut done) = (0usize, 0usize);
    let start = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / rate);
    let mut last_dial = start;
    let mut more = false;
    let send = |tx: &mut SendQueue<()>| {
        // A full send buffer: the rest waits for the next turn (rare; counted as nothing).
        let _ = tx.flush(|items| udpbatch::send_batch(&sock, items), |_, _| {});
    };
    loop {
        let now = Instant::now();
        // Dial what is due (the shard's timer heap, here one schedule).
        while dialled < calls && start + gap.mul_f64(dialled as f64) <= now {
            state[dialled] = Call::Inviting;
            if tx.push(invite.print(dialled, None), server, ()) {
                send(&mut tx);
            }
            last_dial = now;
            dialled += 1;
        }
        if done == calls || (dialled == calls && now > last_dial + TAIL) {
            send(&mut tx);
            break;
        }
        let next_dial = (dialled < calls).then(|| start + gap.mul_f64(dialled as f64));
        let next = next_dial.unwrap_or(now + Duration::from_millis(200));
        let next = if more { now } else { next };
        let (co, wake) = coalesce.plan_sleep(now, next, next_dial);
        if co && armed {
            poll.registry().deregister(&mut SourceFd(&fd))?;
            armed = false;
        } else if !co && !armed {
            poll.registry()
                .register(&mut SourceFd(&fd), Token(0), Interest::READABLE)?;
            armed = true;
        }
        send(&mut tx);
        poll.poll(&mut events, Some(wake.saturating_duration_since(now)))?;
        if !(coalesce.coalescing() || more || !events.is_empty()) {
            continue;
        }
        // Read (as `Shard::on_udp_readable`).
        let began = Instant::now();
        let (mut left, mut got) = (UDP_DRAIN, 0);
        more = true;
        while left > 0 {
            let drained = match udpbatch::recv_batch(&sock, &mut rx) {
                Ok(n) => n < udpbatch::RECV_BATCH,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => false,
                Err(_) => {
                    left -= 1;
                    continue;
                }
            };
            for i in 0..rx.len() {
                let Some((d, _)) = rx.datagram(i) else {
                    continue;
                };
                got += 1;
                let Some((code, is_invite, n, to)) = scan(d) else {
                    continue;
                };
                let Some(call) = state.get_mut(n) else {
                    continue;
                };
                match (code, is_invite, *call) {
                    // The INVITE's 200 (or SIPp's retransmission of it): ACK, then BYE.
                    (200..=299, true, Call::Inviting) => {
                        tx.push(ack.print(n, Some(to)), server, ());
                        if tx.push(bye.print(n, Some(to)), server, ()) {
                            send(&mut tx);
                        }
                        *call = Call::Ending;
                    }
                    (200..=299, true, Call::Ending | Call::Done) => {
                        let full = tx.push(ack.print(n, Some(to)), server, ());
                        if full {
                            send(&mut tx);
                        }
                    }
                    (200..=699, false, Call::Ending) => {
                        *call = Call::Done;
                        done += 1;
                    }
                    _ => {}
                }
            }
            if drained {
                more = false;
                break;
            }
            left = left.saturating_sub(rx.len());
        }
        coalesce.read(got, began);
    }
    let wall = start.elapsed().as_secs_f64();
    let dial_span = last_dial.duration_since(start).as_secs_f64();
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "floor: {calls} calls, {done} done, {} unfinished, {wall:.2} s, dialled at {:.0} calls/s, \
         {} coalesced and {} ready sleeps",
        calls - done,
        if dial_span > 0.0 {
            (calls.saturating_sub(1)) as f64 / dial_span
        } else {
            0.0
        },
        coalesce.coalesced_sleeps,
        coalesce.ready_sleeps,
    )?;
    Ok(())
}
