//! Kernel receive timestamps for media sockets (`SO_TIMESTAMPNS`).
//!
//! Interarrival jitter (RFC 3550 A.8) is only as good as the arrival times it is fed. Stamped
//! with `Instant::now()` when the shard's media loop gets round to reading, a busy generator
//! shows its own scheduling delay as network jitter: a tester must not blame the server for
//! its own load. The kernel stamps each datagram as it reaches the socket; we read that stamp
//! with the datagram and turn it into an [`Instant`].
//!
//! The stamp is on the wall clock (`CLOCK_REALTIME`), so it is converted by its age: the
//! wall clock now minus the stamp, taken from `Instant::now()` read at the same moment. A
//! stamp from the future or older than [`MAX_AGE`] (the wall clock was stepped) is ignored
//! and the read time is used instead.
//!
//! Linux switches stamping on for the whole system a moment after the first socket asks
//! (a deferred static key); until then the kernel stamps datagrams when they are read, which
//! is what we did before. So the first datagrams of the first call may carry read times.
//!
//! `recvmsg`/`recvmmsg` with a control buffer have no safe wrapper in std, mio or socket2, so this module
//! is the one place in the crate with `unsafe` for sockets; every block says why it is sound.
#![allow(unsafe_code)] // reason: setsockopt/recvmsg with a control buffer (see above)

use std::io;
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A kernel stamp older than this is not trusted (the wall clock was stepped meanwhile).
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// Asks the kernel to stamp every datagram received on `sock`.
pub fn enable(sock: &impl AsRawFd) -> io::Result<()> {
    set_option(sock, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)
}

/// Has the kernel hand over each received datagram's TOS byte (IPv4) or Traffic Class
/// (IPv6) with it (`IP_RECVTOS` / `IPV6_RECVTCLASS`): its DSCP tells whether the network
/// kept the sender's marking ([`RecvBatch::tos`]).
pub fn enable_tos(sock: &impl AsRawFd, v6: bool) -> io::Result<()> {
    if v6 {
        set_option(sock, libc::IPPROTO_IPV6, libc::IPV6_RECVTCLASS, 1)
    } else {
        set_option(sock, libc::IPPROTO_IP, libc::IP_RECVTOS, 1)
    }
}

/// `setsockopt` of an `int` option.
pub(crate) fn set_option(
    sock: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` outlives the call and the length passed is its size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads one datagram into `buf` without blocking: its length, when it arrived (the
/// kernel's stamp when there is one, else now), where from, and its TOS byte when
/// [`enable_tos`] asked for it. Errors are the socket's (`WouldBlock` when drained). A
/// datagram longer than `buf` is cut, as `recv_from` would.
pub fn recv(
    sock: &impl AsRawFd,
    buf: &mut [u8],
) -> io::Result<(usize, Instant, Option<SocketAddr>, Option<u8>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for one timespec message and then some; u64s keep it aligned for cmsghdr.
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 8]>() as _;
    // SAFETY: sockaddr_storage is plain old data; all-zero is valid (AF_UNSPEC).
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw mut name).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `msg` points at `iov` (which points into `buf`), at `control` and at `name`,
    // all alive and exclusively borrowed for the duration of the call, with their true
    // lengths.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &raw mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let from = crate::udpbatch::source(&name, msg.msg_namelen);
    let (at, tos) = read_control(&msg, Instant::now(), SystemTime::now());
    Ok((n as usize, at, from, tos))
}

/// When the datagram of `msg` arrived — its kernel stamp, else `now` (`wall` is the wall
/// clock read with `now`) — and its TOS byte when the control messages carry it.
fn read_control(msg: &libc::msghdr, now: Instant, wall: SystemTime) -> (Instant, Option<u8>) {
    let mut at = now;
    let mut tos = None;
    // SAFETY: the kernel filled `msg_control`/`msg_controllen`; CMSG_FIRSTHDR/NXTHDR walk it
    // within those bounds and return null at its end.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !cmsg.is_null() {
        // SAFETY: non-null headers from CMSG_FIRSTHDR/NXTHDR lie inside `control`.
        let header = unsafe { &*cmsg };
        if header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SCM_TIMESTAMPNS {
            // SAFETY: an SCM_TIMESTAMPNS message carries one timespec; the data may be
            // unaligned for it, hence the unaligned read.
            let ts: libc::timespec =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
            if let Some(stamp) = u64::try_from(ts.tv_sec)
                .ok()
                .map(|s| UNIX_EPOCH + Duration::new(s, ts.tv_nsec as u32))
                && let Ok(age) = wall.duration_since(stamp)
                && age <= MAX_AGE
            {
                at = now.checked_sub(age).unwrap_or(now);
            }
        } else if header.cmsg_level == libc::IPPROTO_IP && header.cmsg_type == libc::IP_TOS {
            // SAFETY: an IP_TOS message carries one byte.
            tos = Some(unsafe { *libc::CMSG_DATA(cmsg) });
        } else if header.cmsg_level == libc::IPPROTO_IPV6 && header.cmsg_type == libc::IPV6_TCLASS {
            // SAFETY: an IPV6_TCLASS message carries one int, maybe unaligned.
            let class: libc::c_int =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
            tos = u8::try_from(class).ok();
        }
        // SAFETY: as above.
        cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
    }
    (at, tos)
}

/// The control buffer a receive needs for one stamp, in `u64`s (aligned for `cmsghdr`): room
/// for one timespec message and then some.
pub const CONTROL_WORDS: usize = 8;

/// When the datagram a `recvmsg`/`recvmmsg` header describes reached its socket: the
/// kernel's stamp when the header's control buffer holds one, else `now` (`wall` is the wall
/// clock read with `now`). For the shard's SIP socket (`udpbatch::recv_batch`): its
/// signalling timings (time to 100/180, post-dial delay, setup) count from the arrival, not
/// from when a busy loop got round to reading.
pub fn arrival_of(msg: &libc::msghdr, now: Instant, wall: SystemTime) -> Instant {
    read_control(msg, now, wall).0
}

/// How many datagrams one [`recv_batch`] reads at most.
pub const BATCH: usize = 4;

/// Buffers for [`recv_batch`]: [`BATCH`] datagrams of up to 2 KB each (RTP over UDP fits; a
/// longer datagram is cut), with their lengths and arrival times after a read.
pub struct RecvBatch {
    bufs: Box<[[u8; 2048]; BATCH]>,
    control: [[u64; 8]; BATCH],
    names: [libc::sockaddr_storage; BATCH],
    got: [(usize, Instant, Option<SocketAddr>); BATCH],
    tos: [Option<u8>; BATCH],
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch").finish_non_exhaustive()
    }
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self {
            bufs: Box::new([[0; 2048]; BATCH]),
            control: [[0; 8]; BATCH],
            // SAFETY: sockaddr_storage is plain old data; all-zero is valid (AF_UNSPEC).
            names: unsafe { std::mem::zeroed() },
            got: [(0, Instant::now(), None); BATCH],
            tos: [None; BATCH],
        }
    }
}

impl RecvBatch {
    /// The `i`-th datagram of the last read, when it arrived and where from.
    pub fn datagram(&self, i: usize) -> Option<(&[u8], Instant, Option<SocketAddr>)> {
        let (len, at, from) = *self.got.get(i)?;
        Some((&self.bufs[i][..len.min(2048)], at, from))
    }

    /// The `i`-th datagram's TOS byte (IPv4) or Traffic Class (IPv6), when the socket asked
    /// for it ([`enable_tos`]).
    pub fn tos(&self, i: usize) -> Option<u8> {
        self.tos.get(i).copied().flatten()
    }

    /// [`Self::datagram`], writable in place (an echo rewrites a header before sending it
    /// back).
    pub fn datagram_mut(&mut self, i: usize) -> Option<(&mut [u8], Instant, Option<SocketAddr>)> {
        let (len, at, from) = *self.got.get(i)?;
        Some((&mut self.bufs[i][..len.min(2048)], at, from))
    }
}

/// Reads up to [`BATCH`] datagrams in one `recvmmsg` without blocking, each with its arrival
/// time as [`recv`] gives it, and returns how many. Fewer than [`BATCH`] means the socket was
/// drained (no second call to learn that it would block). Errors are the socket's
/// (`WouldBlock` when nothing was waiting).
pub fn recv_batch(sock: &impl AsRawFd, batch: &mut RecvBatch) -> io::Result<usize> {
    // SAFETY: iovec and mmsghdr are plain old data; all-zero is valid (null, empty).
    let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (i, (m, v)) in msgs.iter_mut().zip(iov.iter_mut()).enumerate() {
        v.iov_base = batch.bufs[i].as_mut_ptr().cast();
        v.iov_len = batch.bufs[i].len();
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
        m.msg_hdr.msg_control = batch.control[i].as_mut_ptr().cast();
        m.msg_hdr.msg_controllen = size_of::<[u64; 8]>() as _;
        m.msg_hdr.msg_name = (&raw mut batch.names[i]).cast();
        m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    }
    // SAFETY: every header points at its own iovec (into its own 2 KB buffer), control
    // buffer and sockaddr_storage, all alive and exclusively borrowed for the call, with their true lengths; the
    // vector length is the array's; no timeout.
    // The raw system call, not glibc's cancellation-point wrapper (see [`send_to`]).
    let n = unsafe {
        libc::syscall(
            libc::SYS_recvmmsg,
            libc::c_long::from(sock.as_raw_fd()),
            msgs.as_mut_ptr(),
            BATCH as libc::c_long,
            libc::c_long::from(libc::MSG_DONTWAIT),
            std::ptr::null_mut::<libc::timespec>(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = (n as usize).min(BATCH);
    let (now, wall) = (Instant::now(), SystemTime::now());
    for (i, m) in msgs.iter().enumerate().take(n) {
        let from = crate::udpbatch::source(&batch.names[i], m.msg_hdr.msg_namelen);
        let (at, tos) = read_control(&m.msg_hdr, now, wall);
        batch.got[i] = (m.msg_len as usize, at, from);
        batch.tos[i] = tos;
    }
    Ok(n)
}

/// Sends `buf` to `to` without blocking: `sendto(2)` as a plain system call. glibc's
/// `sendto` (what std's `send_to` calls) is a thread-cancellation point: in a process with
/// more than one thread it switches the thread's cancellation type on and off around the
/// call (two atomic updates of the thread's descriptor), ≈ 2.5 % of a shard at 3,000 calls
/// (docs/notes-rtpsched.md). We never cancel threads, so the raw call is the same send.
pub fn send_to(sock: &impl AsRawFd, buf: &[u8], to: &socket2::SockAddr) -> io::Result<usize> {
    // SAFETY: `buf` is a valid slice for reads of its length; `to` is a whole socket address
    // of `to.len()` bytes; the kernel only reads both; no pointer outlives the call.
    let n = unsafe {
        libc::syscall(
            libc::SYS_sendto,
            libc::c_long::from(sock.as_raw_fd()),
            buf.as_ptr(),
            buf.len(),
            libc::c_long::from(libc::MSG_DONTWAIT),
            to.as_ptr(),
            libc::c_long::from(to.len()),
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::net::UdpSocket;

    /// A datagram that waited in the socket is stamped when it arrived, not when it was read.
    /// Linux turns stamping on for the system shortly after the first socket asks, so the
    /// first tries may be stamped at the read: at most 20 tries (1 s).
    #[test]
    fn the_stamp_is_the_arrival_not_the_read() {
        stamping_on();
    }

    /// Waits until the kernel stamps datagrams on arrival (see the module's doc), checking
    /// each stamp; panics if it never does within 20 tries (1 s). For tests of stamps on other
    /// sockets, which must not meet the first moments.
    pub(crate) fn stamping_on() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable(&rx).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut waited = Vec::new();
        for _ in 0..20 {
            let sent = Instant::now();
            tx.send_to(b"one", rx.local_addr().unwrap()).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            let mut buf = [0u8; 16];
            let (n, at, _, _) = recv(&rx, &mut buf).unwrap();
            let read = Instant::now();
            assert_eq!(&buf[..n], b"one");
            assert!(at >= sent.checked_sub(Duration::from_millis(1)).unwrap());
            assert!(at <= read);
            assert_eq!(
                recv(&rx, &mut buf).unwrap_err().kind(),
                io::ErrorKind::WouldBlock
            );
            waited.push(read.duration_since(at));
            if read.duration_since(at) >= Duration::from_millis(45) {
                return;
            }
        }
        panic!("never stamped on arrival: waited {waited:?}");
    }

    /// One call reads up to a batch, in order, each with its own stamp; a short batch means
    /// drained.
    #[test]
    fn a_batch_reads_datagrams_in_order_with_their_stamps() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable(&rx).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sent = Instant::now();
        for i in 0..BATCH + 2 {
            tx.send_to(&[i as u8; 3], rx.local_addr().unwrap()).unwrap();
        }
        let mut batch = RecvBatch::default();
        let mut got = Vec::new();
        for want in [BATCH, 2] {
            assert_eq!(recv_batch(&rx, &mut batch).unwrap(), want);
            let read = Instant::now();
            for i in 0..want {
                let (bytes, at, from) = batch.datagram(i).unwrap();
                assert_eq!(from, Some(tx.local_addr().unwrap()));
                assert_eq!(bytes.len(), 3);
                assert!(at >= sent.checked_sub(Duration::from_millis(1)).unwrap() && at <= read);
                got.push(bytes[0]);
            }
        }
        assert_eq!(got, (0..BATCH as u8 + 2).collect::<Vec<_>>());
        assert_eq!(
            recv_batch(&rx, &mut batch).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    /// Without SO_TIMESTAMPNS there is no stamp: the read time is used.
    #[test]
    fn without_a_stamp_the_read_time_is_used() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"two", rx.local_addr().unwrap()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let before = Instant::now();
        let mut buf = [0u8; 16];
        let (n, at, _, _) = recv(&rx, &mut buf).unwrap();
        assert_eq!(n, 3);
        assert!(at >= before);
    }

    /// With `enable_tos`, each datagram comes with the TOS byte it was sent with (and
    /// without a mark, zero), in a batch and alone.
    #[test]
    fn the_tos_byte_comes_with_the_datagram() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable(&rx).unwrap();
        enable_tos(&rx, false).unwrap();
        let marked = UdpSocket::bind("127.0.0.1:0").unwrap();
        crate::dscp::Dscp::parse("EF")
            .unwrap()
            .mark(&marked, false)
            .unwrap();
        let plain = UdpSocket::bind("127.0.0.1:0").unwrap();
        marked.send_to(b"ef", rx.local_addr().unwrap()).unwrap();
        plain.send_to(b"df", rx.local_addr().unwrap()).unwrap();
        marked.send_to(b"ef", rx.local_addr().unwrap()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let mut batch = RecvBatch::default();
        assert_eq!(recv_batch(&rx, &mut batch).unwrap(), 3);
        assert_eq!(
            (0..3).map(|i| batch.tos(i)).collect::<Vec<_>>(),
            [Some(0xb8), Some(0), Some(0xb8)]
        );
        marked.send_to(b"ef", rx.local_addr().unwrap()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let mut buf = [0u8; 16];
        assert_eq!(recv(&rx, &mut buf).unwrap().3, Some(0xb8));
        if let (Ok(rx6), Ok(tx6)) = (UdpSocket::bind("[::1]:0"), UdpSocket::bind("[::1]:0")) {
            enable_tos(&rx6, true).unwrap();
            crate::dscp::Dscp::parse("CS3")
                .unwrap()
                .mark(&tx6, true)
                .unwrap();
            tx6.send_to(b"cs3", rx6.local_addr().unwrap()).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            assert_eq!(recv(&rx6, &mut buf).unwrap().3, Some(0x60));
        }
    }
}
