//! Export of SIP traces as classic libpcap files that Wireshark and `tshark` open and decode.
//!
//! A trace holds SIP messages, not packets, so the packets are synthesised: each message gets
//! an IPv4 or IPv6 header (correct lengths, IPv4 header checksum) and a UDP header, or — for
//! stream transports — one or more TCP segments of a synthesised connection per (local,
//! remote) pair: a three-way handshake before its first message, then PSH/ACK segments whose
//! sequence and acknowledgement numbers advance with the bytes of each direction. UDP and TCP
//! checksums are computed. The link type is `LINKTYPE_RAW` (101: the packet starts with the IP
//! header, version 4 or 6), so one file can mix both families.
//!
//! Timestamps come from the entries' wall-clock time, which the trace keeps to the
//! millisecond; the microseconds are recovered from the monotonic offsets (`at_ms`) of the
//! same endpoint, never moving a packet outside the millisecond its wall-clock time names.
//!
//! What the file cannot show: retransmissions by the kernel, real TCP handshakes, TLS records
//! (a TLS trace would be written as the decrypted SIP over TCP on the original ports).

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::engine::EndpointReport;
use crate::flow::FlowKind;
use crate::trace::{Direction, TraceEntry};

/// `LINKTYPE_RAW`: each packet starts with an IPv4 or IPv6 header.
pub const LINKTYPE_RAW: u32 = 101;
/// Largest packet a record may hold (the IP total length field is 16 bits).
pub const SNAPLEN: u32 = 65_535;
/// Largest UDP payload over IPv4 (65,535 − 20 − 8).
pub const MAX_UDP_V4: usize = 65_507;
/// Largest UDP payload over IPv6 without jumbograms (65,535 − 8).
pub const MAX_UDP_V6: usize = 65_527;
/// Largest TCP payload per synthesised segment (fits IPv4: 65,535 − 20 − 20); longer messages
/// are split over several segments, which Wireshark reassembles.
pub const MAX_TCP_SEGMENT: usize = 65_495;

/// Why a pcap could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// The UDP message does not fit one IP datagram (it cannot have been sent as one).
    #[error("a {len}-byte UDP message does not fit one IP datagram (at most {max} bytes)")]
    TooLarge {
        /// The message length.
        len: usize,
        /// The limit for its IP version.
        max: usize,
    },
    /// Writing failed.
    #[error("cannot write {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Writing to a stream failed.
    #[error("cannot write the pcap: {0}")]
    Io(#[from] io::Error),
}

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
// Arbitrary fixed initial sequence numbers: the file is synthetic and reproducible.
const CLIENT_ISN: u32 = 0x1000_0000;
const SERVER_ISN: u32 = 0x5000_0000;

/// One synthesised TCP connection: the next sequence number each way.
#[derive(Debug, Clone, Copy)]
struct TcpConn {
    /// Next sequence number of the side that opened it (our endpoint).
    client_next: u32,
    /// Next sequence number of the peer.
    server_next: u32,
}

/// Writes packets to a classic (microsecond) libpcap stream.
///
/// Drive it with [`PcapWriter::write_entry`] in time order, then [`PcapWriter::finish`].
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
    /// Connections keyed by (our address, peer address).
    tcp: HashMap<(SocketAddr, SocketAddr), TcpConn>,
    packets: usize,
}

impl<W: Write> PcapWriter<W> {
    /// Starts a file: writes the 24-byte global header (little-endian, v2.4, `LINKTYPE_RAW`).
    pub fn new(mut out: W) -> io::Result<Self> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // magic: microsecond timestamps
        h.extend_from_slice(&2u16.to_le_bytes()); // version major
        h.extend_from_slice(&4u16.to_le_bytes()); // version minor
        h.extend_from_slice(&0i32.to_le_bytes()); // thiszone
        h.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        h.extend_from_slice(&SNAPLEN.to_le_bytes());
        h.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
        out.write_all(&h)?;
        Ok(Self {
            out,
            tcp: HashMap::new(),
            packets: 0,
        })
    }

    /// Packets written so far.
    pub fn packets(&self) -> usize {
        self.packets
    }

    /// Writes the packet(s) of one trace entry at `ts_us` (microseconds since the Unix epoch).
    /// Notes and entries without addresses are skipped. Returns the packets written.
    pub fn write_entry(&mut self, e: &TraceEntry, ts_us: u64) -> Result<usize, PcapError> {
        let (Some(kind), Some(local), Some(remote)) = (e.transport, e.local, e.remote) else {
            return Ok(0);
        };
        let (src, dst) = match e.direction {
            Direction::Sent => (local, remote),
            Direction::Received => (remote, local),
            Direction::Note => return Ok(0),
        };
        let before = self.packets;
        match kind {
            FlowKind::Udp => {
                let max = if is_v4_pair(src, dst) {
                    MAX_UDP_V4
                } else {
                    MAX_UDP_V6
                };
                if e.bytes.len() > max {
                    return Err(PcapError::TooLarge {
                        len: e.bytes.len(),
                        max,
                    });
                }
                let udp = udp_segment(src, dst, &e.bytes);
                self.packet(ts_us, src, dst, IPPROTO_UDP, &udp)?;
            }
            // TLS and WebSocket flows are written as the decrypted, unframed SIP they carried,
            // over TCP on the original ports, so Wireshark shows the messages themselves.
            FlowKind::Tcp | FlowKind::Tls | FlowKind::Ws | FlowKind::Wss => {
                self.tcp_message(e.direction, local, remote, &e.bytes, ts_us)?
            }
        }
        Ok(self.packets - before)
    }

    /// Ends every open synthesised TCP connection with FIN/ACK both ways at `ts_us`, so that
    /// Wireshark sees complete streams.
    pub fn close_connections(&mut self, ts_us: u64) -> io::Result<()> {
        let mut conns: Vec<_> = self.tcp.drain().collect();
        conns.sort_by_key(|(k, _)| *k);
        for ((local, remote), c) in conns {
            let fin = tcp_segment(
                local,
                remote,
                c.client_next,
                c.server_next,
                TCP_FIN | TCP_ACK,
                &[],
            );
            self.packet(ts_us, local, remote, IPPROTO_TCP, &fin)?;
            let fin = tcp_segment(
                remote,
                local,
                c.server_next,
                c.client_next.wrapping_add(1),
                TCP_FIN | TCP_ACK,
                &[],
            );
            self.packet(ts_us, remote, local, IPPROTO_TCP, &fin)?;
            let ack = tcp_segment(
                local,
                remote,
                c.client_next.wrapping_add(1),
                c.server_next.wrapping_add(1),
                TCP_ACK,
                &[],
            );
            self.packet(ts_us, local, remote, IPPROTO_TCP, &ack)?;
        }
        Ok(())
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }

    fn tcp_message(
        &mut self,
        direction: Direction,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
        ts_us: u64,
    ) -> io::Result<()> {
        let key = (local, remote);
        let mut c = match self.tcp.get(&key) {
            Some(c) => *c,
            None => {
                // Our endpoint opened the connection (phones connect out): SYN, SYN/ACK, ACK.
                let syn = tcp_segment(local, remote, CLIENT_ISN, 0, TCP_SYN, &[]);
                self.packet(ts_us, local, remote, IPPROTO_TCP, &syn)?;
                let syn_ack = tcp_segment(
                    remote,
                    local,
                    SERVER_ISN,
                    CLIENT_ISN.wrapping_add(1),
                    TCP_SYN | TCP_ACK,
                    &[],
                );
                self.packet(ts_us, remote, local, IPPROTO_TCP, &syn_ack)?;
                let c = TcpConn {
                    client_next: CLIENT_ISN.wrapping_add(1),
                    server_next: SERVER_ISN.wrapping_add(1),
                };
                let ack = tcp_segment(local, remote, c.client_next, c.server_next, TCP_ACK, &[]);
                self.packet(ts_us, local, remote, IPPROTO_TCP, &ack)?;
                c
            }
        };
        for chunk in bytes.chunks(MAX_TCP_SEGMENT) {
            // chunks() of a usize length ≤ 65,495: the cast cannot truncate.
            let n = chunk.len() as u32;
            if direction == Direction::Sent {
                let seg = tcp_segment(
                    local,
                    remote,
                    c.client_next,
                    c.server_next,
                    TCP_PSH | TCP_ACK,
                    chunk,
                );
                self.packet(ts_us, local, remote, IPPROTO_TCP, &seg)?;
                c.client_next = c.client_next.wrapping_add(n);
            } else {
                let seg = tcp_segment(
                    remote,
                    local,
                    c.server_next,
                    c.client_next,
                    TCP_PSH | TCP_ACK,
                    chunk,
                );
                self.packet(ts_us, remote, local, IPPROTO_TCP, &seg)?;
                c.server_next = c.server_next.wrapping_add(n);
            }
        }
        self.tcp.insert(key, c);
        Ok(())
    }

    /// Writes one record: an IP header for `proto` around `l4` (a UDP or TCP segment).
    fn packet(
        &mut self,
        ts_us: u64,
        src: SocketAddr,
        dst: SocketAddr,
        proto: u8,
        l4: &[u8],
    ) -> io::Result<()> {
        let ip = ip_packet(src.ip(), dst.ip(), proto, l4);
        let mut rec = Vec::with_capacity(16 + ip.len());
        // Seconds fit 32 bits until 2106; saturate rather than wrap after that.
        let secs = u32::try_from(ts_us / 1_000_000).unwrap_or(u32::MAX);
        rec.extend_from_slice(&secs.to_le_bytes());
        rec.extend_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
        // The IP length fields bound a packet to 65,535 (+40 for an IPv6 header): fits u32.
        let len = ip.len() as u32;
        rec.extend_from_slice(&len.to_le_bytes()); // captured length
        rec.extend_from_slice(&len.to_le_bytes()); // original length
        rec.extend_from_slice(&ip);
        self.out.write_all(&rec)?;
        self.packets += 1;
        Ok(())
    }
}

/// True when both addresses are IPv4 (or IPv4-mapped IPv6), so an IPv4 header is written.
fn is_v4_pair(a: SocketAddr, b: SocketAddr) -> bool {
    v4(a.ip()).is_some() && v4(b.ip()).is_some()
}

fn v4(ip: IpAddr) -> Option<[u8; 4]> {
    match ip {
        IpAddr::V4(a) => Some(a.octets()),
        IpAddr::V6(a) => a.to_ipv4_mapped().map(|a| a.octets()),
    }
}

fn v6(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// The one's-complement sum of 16-bit big-endian words (RFC 1071), not yet complemented.
fn ones_sum(mut sum: u32, data: &[u8]) -> u32 {
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

/// The Internet checksum of `data` (RFC 1071).
pub fn internet_checksum(data: &[u8]) -> u16 {
    !(ones_sum(0, data) as u16)
}

/// The UDP/TCP checksum over the pseudo-header (RFC 768, RFC 9293 §3.1, RFC 8200 §8.1) and
/// the segment, whose checksum field must be zero.
fn l4_checksum(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8]) -> u16 {
    let mut sum = 0;
    // The length fits: segments are bounded by the IP length fields.
    let len = segment.len() as u32;
    match (v4(src), v4(dst)) {
        (Some(s), Some(d)) => {
            sum = ones_sum(sum, &s);
            sum = ones_sum(sum, &d);
            sum = ones_sum(sum, &[0, proto]);
            sum = ones_sum(sum, &(len as u16).to_be_bytes());
        }
        _ => {
            sum = ones_sum(sum, &v6(src));
            sum = ones_sum(sum, &v6(dst));
            sum = ones_sum(sum, &len.to_be_bytes());
            sum = ones_sum(sum, &[0, 0, 0, proto]);
        }
    }
    !(ones_sum(sum, segment) as u16)
}

/// A UDP header and payload with its checksum (RFC 768: a computed 0 is sent as 0xffff).
fn udp_segment(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(8 + payload.len());
    s.extend_from_slice(&src.port().to_be_bytes());
    s.extend_from_slice(&dst.port().to_be_bytes());
    // Callers bound the payload to MAX_UDP_V6: the length fits 16 bits.
    s.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    s.extend_from_slice(&[0, 0]);
    s.extend_from_slice(payload);
    let c = match l4_checksum(src.ip(), dst.ip(), IPPROTO_UDP, &s) {
        0 => 0xffff,
        c => c,
    };
    s[6..8].copy_from_slice(&c.to_be_bytes());
    s
}

/// A 20-byte TCP header (no options) and payload with its checksum.
fn tcp_segment(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut s = Vec::with_capacity(20 + payload.len());
    s.extend_from_slice(&src.port().to_be_bytes());
    s.extend_from_slice(&dst.port().to_be_bytes());
    s.extend_from_slice(&seq.to_be_bytes());
    s.extend_from_slice(&ack.to_be_bytes());
    s.push(5 << 4); // data offset: 5 words
    s.push(flags);
    s.extend_from_slice(&65_535u16.to_be_bytes()); // window
    s.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    s.extend_from_slice(payload);
    let c = l4_checksum(src.ip(), dst.ip(), IPPROTO_TCP, &s);
    s[16..18].copy_from_slice(&c.to_be_bytes());
    s
}

/// An IPv4 (both addresses IPv4) or IPv6 header around `l4`.
fn ip_packet(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> Vec<u8> {
    match (v4(src), v4(dst)) {
        (Some(s), Some(d)) => {
            let mut p = Vec::with_capacity(20 + l4.len());
            p.push(0x45); // version 4, header length 5 words
            p.push(0); // DSCP/ECN
            // Callers bound l4 so the total fits 16 bits.
            p.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
            p.extend_from_slice(&[0, 0]); // identification
            p.extend_from_slice(&0x4000u16.to_be_bytes()); // don't fragment
            p.push(64); // TTL
            p.push(proto);
            p.extend_from_slice(&[0, 0]); // header checksum, below
            p.extend_from_slice(&s);
            p.extend_from_slice(&d);
            let c = internet_checksum(&p[..20]);
            p[10..12].copy_from_slice(&c.to_be_bytes());
            p.extend_from_slice(l4);
            p
        }
        _ => {
            let mut p = Vec::with_capacity(40 + l4.len());
            p.extend_from_slice(&[0x60, 0, 0, 0]); // version 6, class 0, flow 0
            // Callers bound l4 to 65,535 bytes.
            p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            p.push(proto);
            p.push(64); // hop limit
            p.extend_from_slice(&v6(src));
            p.extend_from_slice(&v6(dst));
            p.extend_from_slice(l4);
            p
        }
    }
}

/// The capture time of each entry of one endpoint's trace, in microseconds since the Unix
/// epoch (`None` for notes and entries without a wall-clock time).
///
/// The wall-clock times are truncated to the millisecond, but all entries of one trace share
/// one wall-clock origin plus a monotonic offset `at_ms` kept to the nanosecond. The origin is
/// estimated as the largest `wall_ms − at_ms` (each entry bounds it from below), and each
/// timestamp is `origin + at_ms`, clamped into the millisecond its own `wall_ms` names (so a
/// wall-clock step during the run never moves a packet by more than that).
pub fn entry_timestamps(entries: &[TraceEntry]) -> Vec<Option<u64>> {
    let is_msg = |e: &TraceEntry| e.direction != Direction::Note && e.wall_ms > 0;
    let origin_us = entries
        .iter()
        .filter(|e| is_msg(e))
        .map(|e| e.wall_ms as f64 * 1000.0 - e.at_ms * 1000.0)
        .fold(f64::NEG_INFINITY, f64::max);
    entries
        .iter()
        .map(|e| {
            if !is_msg(e) {
                return None;
            }
            let lo = e.wall_ms.saturating_mul(1000);
            let est = (origin_us + e.at_ms * 1000.0).round();
            let ts = if est.is_finite() && est >= 0.0 {
                est as u64
            } else {
                lo
            };
            Some(ts.clamp(lo, lo.saturating_add(999)))
        })
        .collect()
}

/// Writes one trace as a pcap to `out`: its messages in order. Returns the packets written.
pub fn write_trace<W: Write>(out: W, entries: &[TraceEntry]) -> Result<usize, PcapError> {
    let mut w = PcapWriter::new(out)?;
    let mut last = 0;
    for (e, ts) in entries.iter().zip(entry_timestamps(entries)) {
        if let Some(ts) = ts {
            w.write_entry(e, ts)?;
            last = ts;
        }
    }
    w.close_connections(last)?;
    let n = w.packets();
    w.finish()?;
    Ok(n)
}

/// Writes `path` from a trace (`sipmeter check --pcap FILE`). Returns the packets written.
pub fn write_trace_file(path: &Path, entries: &[TraceEntry]) -> Result<usize, PcapError> {
    let file = std::fs::File::create(path).map_err(|source| PcapError::File {
        path: path.to_owned(),
        source,
    })?;
    write_trace(io::BufWriter::new(file), entries).map_err(|e| with_path(e, path))
}

fn with_path(e: PcapError, path: &Path) -> PcapError {
    match e {
        PcapError::Io(source) => PcapError::File {
            path: path.to_owned(),
            source,
        },
        other => other,
    }
}

/// What [`write_run_pcaps`] wrote.
#[derive(Debug, Clone, Default)]
pub struct RunPcaps {
    /// One file per endpoint whose trace the report kept, in endpoint order.
    pub endpoint_files: Vec<PathBuf>,
    /// The merged file of every kept trace, in time order.
    pub all: PathBuf,
    /// Packets in the merged file.
    pub packets: usize,
}

/// A file-name-safe form of a user name: ASCII letters, digits, `.`, `_`, `+`, `-`; any other
/// character becomes `_`.
fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes `DIR/<id>-<user>.pcap` for each endpoint with a kept trace, and `DIR/all.pcap`
/// with every one of them merged in time order (`sipmeter run --pcap DIR`). Creates `dir`.
pub fn write_run_pcaps(dir: &Path, reports: &[EndpointReport]) -> Result<RunPcaps, PcapError> {
    std::fs::create_dir_all(dir).map_err(|source| PcapError::File {
        path: dir.to_owned(),
        source,
    })?;
    let mut out = RunPcaps {
        all: dir.join("all.pcap"),
        ..RunPcaps::default()
    };
    // (timestamp, endpoint index, entry index): sorted, the merged order; ties keep each
    // endpoint's own order.
    let mut merged: Vec<(u64, usize, usize)> = Vec::new();
    for (ri, r) in reports.iter().enumerate() {
        let stamps = entry_timestamps(&r.trace);
        if stamps.iter().all(Option::is_none) {
            continue;
        }
        let path = dir.join(format!("{}-{}.pcap", r.id, file_safe(&r.user)));
        write_trace_file(&path, &r.trace)?;
        out.endpoint_files.push(path);
        merged.extend(
            stamps
                .iter()
                .enumerate()
                .filter_map(|(ei, ts)| ts.map(|ts| (ts, ri, ei))),
        );
    }
    merged.sort_unstable();
    let file = std::fs::File::create(&out.all).map_err(|source| PcapError::File {
        path: out.all.clone(),
        source,
    })?;
    let all = out.all.clone();
    let write = || -> Result<usize, PcapError> {
        let mut w = PcapWriter::new(io::BufWriter::new(file))?;
        for &(ts, ri, ei) in &merged {
            w.write_entry(&reports[ri].trace[ei], ts)?;
        }
        w.close_connections(merged.last().map_or(0, |m| m.0))?;
        let n = w.packets();
        w.finish()?;
        Ok(n)
    };
    out.packets = write().map_err(|e| with_path(e, &all))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::net::Ipv6Addr;
    use std::time::{Duration, UNIX_EPOCH};

    /// One record of a pcap file, decoded by the test's own reader.
    #[derive(Debug)]
    struct Packet {
        ts_us: u64,
        src: SocketAddr,
        dst: SocketAddr,
        proto: u8,
        /// TCP: (seq, ack, flags).
        tcp: Option<(u32, u32, u8)>,
        payload: Vec<u8>,
    }

    fn u16be(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([b[at], b[at + 1]])
    }
    fn u32be(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }
    fn u32le(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    /// A minimal libpcap reader that also verifies every length and checksum.
    fn read_pcap(file: &[u8]) -> Vec<Packet> {
        assert_eq!(u32le(file, 0), 0xa1b2_c3d4, "magic");
        assert_eq!(u16::from_le_bytes([file[4], file[5]]), 2);
        assert_eq!(u16::from_le_bytes([file[6], file[7]]), 4);
        assert_eq!(u32le(file, 16), SNAPLEN);
        assert_eq!(u32le(file, 20), LINKTYPE_RAW);
        let mut at = 24;
        let mut out = Vec::new();
        while at < file.len() {
            let ts_us = u64::from(u32le(file, at)) * 1_000_000 + u64::from(u32le(file, at + 4));
            assert!(u32le(file, at + 4) < 1_000_000, "microseconds field");
            let incl = u32le(file, at + 8) as usize;
            assert_eq!(incl, u32le(file, at + 12) as usize, "not truncated");
            let p = &file[at + 16..at + 16 + incl];
            at += 16 + incl;
            let (src_ip, dst_ip, proto, l4): (IpAddr, IpAddr, u8, &[u8]) = match p[0] >> 4 {
                4 => {
                    assert_eq!(p[0] & 0xf, 5);
                    assert_eq!(u16be(p, 2) as usize, p.len(), "IPv4 total length");
                    assert_eq!(internet_checksum(&p[..20]), 0, "IPv4 header checksum");
                    let s: [u8; 4] = p[12..16].try_into().unwrap();
                    let d: [u8; 4] = p[16..20].try_into().unwrap();
                    (s.into(), d.into(), p[9], &p[20..])
                }
                6 => {
                    assert_eq!(u16be(p, 4) as usize, p.len() - 40, "IPv6 payload length");
                    let s: [u8; 16] = p[8..24].try_into().unwrap();
                    let d: [u8; 16] = p[24..40].try_into().unwrap();
                    (
                        Ipv6Addr::from(s).into(),
                        Ipv6Addr::from(d).into(),
                        p[6],
                        &p[40..],
                    )
                }
                v => panic!("IP version {v}"),
            };
            // A correct UDP/TCP checksum sums, with the pseudo-header, to zero.
            assert_eq!(
                l4_checksum(src_ip, dst_ip, proto, l4),
                0,
                "transport checksum"
            );
            let (sp, dp) = (u16be(l4, 0), u16be(l4, 2));
            let (tcp, payload) = match proto {
                IPPROTO_UDP => {
                    assert_eq!(u16be(l4, 4) as usize, l4.len(), "UDP length");
                    (None, l4[8..].to_vec())
                }
                IPPROTO_TCP => {
                    let off = usize::from(l4[12] >> 4) * 4;
                    (
                        Some((u32be(l4, 4), u32be(l4, 8), l4[13])),
                        l4[off..].to_vec(),
                    )
                }
                p => panic!("protocol {p}"),
            };
            out.push(Packet {
                ts_us,
                src: SocketAddr::new(src_ip, sp),
                dst: SocketAddr::new(dst_ip, dp),
                proto,
                tcp,
                payload,
            });
        }
        assert_eq!(at, file.len(), "no trailing bytes");
        out
    }

    const T0_MS: u64 = 1_780_000_000_123; // a wall-clock origin in 2026

    fn entry(
        dir: Direction,
        kind: FlowKind,
        local: &str,
        remote: &str,
        text: &str,
        at_us: u64,
    ) -> TraceEntry {
        let at = Duration::from_micros(at_us);
        TraceEntry::new(
            dir,
            kind,
            local.parse().unwrap(),
            remote.parse().unwrap(),
            Bytes::copy_from_slice(text.as_bytes()),
            at,
            UNIX_EPOCH + Duration::from_millis(T0_MS) + Duration::from_micros(250) + at,
            false,
        )
    }

    const REG: &str = "REGISTER sip:lab.test SIP/2.0\r\nCall-ID: a\r\nContent-Length: 0\r\n\r\n";
    const OK: &str = "SIP/2.0 200 OK\r\nCall-ID: a\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn global_header_bytes() {
        let w = PcapWriter::new(Vec::new()).unwrap();
        let b = w.finish().unwrap();
        assert_eq!(
            b,
            [
                0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 101,
                0, 0, 0
            ]
        );
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2; the checksum is its complement.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(internet_checksum(&data), !0xddf2);
        // Odd length: the last byte is padded with zero.
        assert_eq!(internet_checksum(&[0x01]), !0x0100);
    }

    #[test]
    fn ipv4_udp_packet_bytes() {
        let e = entry(
            Direction::Sent,
            FlowKind::Udp,
            "10.0.0.1:5070",
            "10.0.0.2:5060",
            "hi",
            0,
        );
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        assert_eq!(w.write_entry(&e, 1_000_000_000_000_007).unwrap(), 1);
        let b = w.finish().unwrap();
        let rec = &b[24..];
        assert_eq!(u32le(rec, 0), 1_000_000_000); // seconds
        assert_eq!(u32le(rec, 4), 7); // microseconds
        assert_eq!(u32le(rec, 8), 30); // 20 IP + 8 UDP + 2
        let p = &rec[16..];
        // IPv4 header computed by hand: 4500 001e 0000 4000 4011 xxxx 0a00 0001 0a00 0002;
        // sum = 4500+001e+4000+4011+0a00+0001+0a00+0002 = 0xd932 → checksum 0x26cd.
        assert_eq!(
            &p[..20],
            [
                0x45, 0, 0, 30, 0, 0, 0x40, 0, 64, 17, 0x26, 0xcd, 10, 0, 0, 1, 10, 0, 0, 2
            ]
        );
        // UDP: ports 5070 → 5060, length 10; checksum by hand: pseudo-header
        // 0a00+0001+0a00+0002+0011+000a, header 13ce+13c4+000a, data 6869 = 0xa423 → 0x5bdc.
        assert_eq!(&p[20..28], [0x13, 0xce, 0x13, 0xc4, 0, 10, 0x5b, 0xdc]);
        assert_eq!(&p[28..], b"hi");
    }

    #[test]
    fn ipv6_udp_has_computed_checksum_and_lengths() {
        let e = entry(
            Direction::Received,
            FlowKind::Udp,
            "[::1]:5070",
            "[2001:db8::5]:5060",
            OK,
            0,
        );
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write_entry(&e, 5).unwrap();
        let pk = read_pcap(&w.finish().unwrap());
        assert_eq!(pk.len(), 1);
        assert_eq!(pk[0].src, "[2001:db8::5]:5060".parse().unwrap());
        assert_eq!(pk[0].dst, "[::1]:5070".parse().unwrap());
        assert_eq!(pk[0].proto, IPPROTO_UDP);
        assert_eq!(pk[0].payload, OK.as_bytes());
    }

    #[test]
    fn round_trip_udp_trace_keeps_order_bytes_and_microseconds() {
        let trace = vec![
            entry(
                Direction::Sent,
                FlowKind::Udp,
                "127.0.0.1:40000",
                "127.0.0.1:5060",
                REG,
                1_000,
            ),
            TraceEntry::note("a note is not a packet".into(), Duration::from_millis(2)),
            entry(
                Direction::Received,
                FlowKind::Udp,
                "127.0.0.1:40000",
                "127.0.0.1:5060",
                OK,
                2_345,
            ),
        ];
        let mut buf = Vec::new();
        assert_eq!(write_trace(&mut buf, &trace).unwrap(), 2);
        let pk = read_pcap(&buf);
        assert_eq!(pk.len(), 2);
        assert_eq!(pk[0].payload, REG.as_bytes());
        assert_eq!(pk[0].src, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(pk[1].payload, OK.as_bytes());
        assert_eq!(pk[1].src, "127.0.0.1:5060".parse().unwrap());
        // The true times are T0 + 250 µs + at, but the wall clock only gives milliseconds:
        // the 250 µs cannot be recovered from two messages, the spacing between them can.
        assert_eq!(pk[1].ts_us - pk[0].ts_us, 1_345);
        let true0 = T0_MS * 1000 + 250 + 1_000;
        assert!(
            (true0 - 999..=true0).contains(&pk[0].ts_us),
            "{}",
            pk[0].ts_us
        );
        // Within the millisecond its wall-clock time names.
        assert_eq!(pk[0].ts_us / 1000, trace[0].wall_ms);
        assert_eq!(pk[1].ts_us / 1000, trace[2].wall_ms);
    }

    #[test]
    fn timestamps_stay_within_their_wall_clock_millisecond() {
        // A wall-clock step of +5 s between the two messages: the second keeps its own time.
        let a = entry(
            Direction::Sent,
            FlowKind::Udp,
            "127.0.0.1:1",
            "127.0.0.1:2",
            REG,
            0,
        );
        let mut b = a.clone();
        b.at_ms = 10.5;
        b.wall_ms = a.wall_ms + 5_010;
        let ts = entry_timestamps(&[a.clone(), b.clone()]);
        let (t0, t1) = (ts[0].unwrap(), ts[1].unwrap());
        assert!((a.wall_ms * 1000..a.wall_ms * 1000 + 1000).contains(&t0));
        assert!((b.wall_ms * 1000..b.wall_ms * 1000 + 1000).contains(&t1));
    }

    #[test]
    fn tcp_stream_has_handshake_and_consistent_sequence_numbers() {
        let l = "[2001:db8::1]:40001";
        let r = "[2001:db8::2]:5060";
        let msgs = [
            (Direction::Sent, REG),
            (Direction::Received, OK),
            (Direction::Sent, REG),
        ];
        let trace: Vec<_> = msgs
            .iter()
            .enumerate()
            .map(|(i, (d, t))| entry(*d, FlowKind::Tcp, l, r, t, i as u64 * 1000))
            .collect();
        let mut buf = Vec::new();
        // 3 handshake + 3 messages + 3 closing segments.
        assert_eq!(write_trace(&mut buf, &trace).unwrap(), 9);
        let pk = read_pcap(&buf);
        let flags: Vec<u8> = pk.iter().map(|p| p.tcp.unwrap().2).collect();
        assert_eq!(
            flags,
            [
                TCP_SYN,
                TCP_SYN | TCP_ACK,
                TCP_ACK,
                TCP_PSH | TCP_ACK,
                TCP_PSH | TCP_ACK,
                TCP_PSH | TCP_ACK,
                TCP_FIN | TCP_ACK,
                TCP_FIN | TCP_ACK,
                TCP_ACK
            ]
        );
        let (c, s) = (CLIENT_ISN, SERVER_ISN);
        let reg = REG.len() as u32;
        let ok = OK.len() as u32;
        let seq_ack: Vec<(u32, u32)> = pk
            .iter()
            .map(|p| (p.tcp.unwrap().0, p.tcp.unwrap().1))
            .collect();
        assert_eq!(
            seq_ack,
            [
                (c, 0),
                (s, c + 1),
                (c + 1, s + 1),
                (c + 1, s + 1),
                (s + 1, c + 1 + reg),
                (c + 1 + reg, s + 1 + ok),
                (c + 1 + 2 * reg, s + 1 + ok),
                (s + 1 + ok, c + 2 + 2 * reg),
                (c + 2 + 2 * reg, s + 2 + ok),
            ]
        );
        assert_eq!(pk[4].src, r.parse().unwrap());
        assert_eq!(pk[4].payload, OK.as_bytes());
        assert!(pk[..3].iter().all(|p| p.payload.is_empty()));
    }

    #[test]
    fn long_tcp_message_is_split_into_segments_and_reassembles() {
        let body = "x".repeat(70_000);
        let text = format!("MESSAGE sip:a SIP/2.0\r\nContent-Length: 70000\r\n\r\n{body}");
        let e = entry(
            Direction::Sent,
            FlowKind::Tcp,
            "127.0.0.1:40000",
            "127.0.0.1:5060",
            &text,
            0,
        );
        let mut buf = Vec::new();
        write_trace(&mut buf, &[e]).unwrap();
        let pk = read_pcap(&buf);
        let data: Vec<&Packet> = pk.iter().filter(|p| !p.payload.is_empty()).collect();
        assert_eq!(data.len(), 2);
        assert_eq!(data[0].payload.len(), MAX_TCP_SEGMENT);
        assert_eq!(
            data[1].tcp.unwrap().0,
            data[0].tcp.unwrap().0 + MAX_TCP_SEGMENT as u32
        );
        let joined: Vec<u8> = data.iter().flat_map(|p| p.payload.clone()).collect();
        assert_eq!(joined, text.as_bytes());
    }

    #[test]
    fn oversized_udp_message_is_an_error_not_a_panic() {
        let big = "y".repeat(MAX_UDP_V4 + 1);
        let e = entry(
            Direction::Sent,
            FlowKind::Udp,
            "127.0.0.1:1",
            "127.0.0.1:2",
            &big,
            0,
        );
        let err = write_trace(Vec::new(), &[e]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a 65508-byte UDP message does not fit one IP datagram (at most 65507 bytes)"
        );
    }

    #[test]
    fn file_names_are_safe() {
        assert_eq!(file_safe("alice+1@x.org/../y"), "alice+1_x.org_.._y");
    }
}
