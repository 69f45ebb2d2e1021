//! Batched datagrams on the shard's shared SIP socket: `sendmmsg` and `recvmmsg`.
//!
//! At a few thousand calls per second each call is about eight UDP datagrams, and on this
//! path one syscall costs as much as a good part of a call's user-space work. The shard
//! queues what a turn of its loop sends ([`SendQueue`]) and writes it with one `sendmmsg`
//! before it sleeps (or when a batch is full); it reads what has arrived with one `recvmmsg`
//! ([`RecvBatch`]) instead of one `recvfrom` per datagram. Order is kept both ways.
//!
//! `sendmmsg`/`recvmmsg` have no safe wrapper in std, mio, socket2 or tokio, so this module
//! holds the `unsafe` for them (as `rxstamp` does for media); every block says why it is
//! sound. The calls never block (`MSG_DONTWAIT`): the caller runs them through tokio's
//! `try_io`, which clears the socket's readiness on `WouldBlock`.
#![allow(unsafe_code)] // reason: sendmmsg/recvmmsg (see above)

use std::collections::VecDeque;
use std::io;
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use socket2::{SockAddr, SockAddrStorage};

use crate::rxstamp;

/// Datagrams written by one `sendmmsg` at most; a queue this long is flushed at once.
pub const SEND_BATCH: usize = 32;

/// Datagrams read by one `recvmmsg` at most.
pub const RECV_BATCH: usize = 32;

/// The largest UDP payload (IPv4: 65,507 bytes; a jumbogram needs IPv6 extension headers we
/// never receive), so no datagram is cut.
const MAX_DATAGRAM: usize = 65_536;

/// One queued datagram: its bytes, where it goes and whatever the caller needs to answer
/// for it if the kernel refuses it (`tag`).
#[derive(Debug)]
pub struct Outgoing<T> {
    pub bytes: Bytes,
    pub to: SocketAddr,
    pub tag: T,
}

/// Datagrams waiting to be written, in the order they were queued.
#[derive(Debug)]
pub struct SendQueue<T> {
    items: VecDeque<Outgoing<T>>,
}

impl<T> Default for SendQueue<T> {
    fn default() -> Self {
        Self {
            items: VecDeque::with_capacity(SEND_BATCH),
        }
    }
}

impl<T> SendQueue<T> {
    /// Queues a datagram; true when a batch is full (time to [`flush`](Self::flush)).
    pub fn push(&mut self, bytes: Bytes, to: SocketAddr, tag: T) -> bool {
        self.items.push_back(Outgoing { bytes, to, tag });
        self.items.len() >= SEND_BATCH
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether a queued datagram's tag satisfies `pred` (a scan of at most a batch or so:
    /// the queue is flushed whenever [`SEND_BATCH`] wait).
    pub fn holds(&self, mut pred: impl FnMut(&T) -> bool) -> bool {
        self.items.iter().any(|o| pred(&o.tag))
    }

    /// Writes the queue in order, up to [`SEND_BATCH`] datagrams per call of `send` (one
    /// `sendmmsg`, see [`send_batch`]), until it is empty (`Ok`) or the socket would block
    /// (`Err(WouldBlock)`: the rest stays queued, in order). A datagram the kernel refuses
    /// with another error is handed to `failed` with the error and not retried; the ones
    /// after it are still sent.
    pub fn flush(
        &mut self,
        mut send: impl FnMut(&[Outgoing<T>]) -> io::Result<usize>,
        mut failed: impl FnMut(Outgoing<T>, io::Error),
    ) -> io::Result<()> {
        while !self.items.is_empty() {
            let chunk = self.items.make_contiguous();
            let len = chunk.len().min(SEND_BATCH);
            match send(&chunk[..len]) {
                Ok(n) => {
                    // sendmmsg stops at the first datagram it cannot send; zero would mean
                    // no progress at all, which it reports as an error instead.
                    self.items.drain(..n.clamp(1, len));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if let Some(first) = self.items.pop_front() {
                        failed(first, e);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Writes `items` (at most [`SEND_BATCH`]) in order with one `sendmmsg` without blocking:
/// how many were sent. An error means the first was not (`WouldBlock` when the socket's
/// buffer is full); a later failure shows as a count short of `items.len()`.
pub fn send_batch<T>(sock: &impl AsRawFd, items: &[Outgoing<T>]) -> io::Result<usize> {
    let items = &items[..items.len().min(SEND_BATCH)];
    if items.is_empty() {
        return Ok(0);
    }
    // Addresses first, so the headers below can point at them without moving them. Only
    // as many as there are datagrams: an array of 32 would be 4 KB to fill on each call.
    let addrs: Vec<SockAddr> = items.iter().map(|i| SockAddr::from(i.to)).collect();
    // SAFETY: iovec and mmsghdr are plain old data; all-zero is valid (null, empty).
    let mut iov: [libc::iovec; SEND_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; SEND_BATCH] = unsafe { std::mem::zeroed() };
    for (i, (item, addr)) in items.iter().zip(&addrs).enumerate() {
        iov[i].iov_base = item.bytes.as_ptr().cast_mut().cast();
        iov[i].iov_len = item.bytes.len();
        let h = &mut msgs[i].msg_hdr;
        h.msg_name = addr.as_ptr().cast_mut().cast();
        h.msg_namelen = addr.len();
        h.msg_iov = &raw mut iov[i];
        h.msg_iovlen = 1;
    }
    // SAFETY: the first `items.len()` headers each point at one iovec over an item's bytes
    // (alive and unchanged: `items` is borrowed for the call; the kernel only reads them)
    // and at that item's socket address with its true length; `msg_len` is written back
    // into `msgs`, which we own.
    let n = unsafe {
        libc::sendmmsg(
            sock.as_raw_fd(),
            msgs.as_mut_ptr(),
            items.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Buffers for [`recv_batch`]: [`RECV_BATCH`] datagrams of any size, with their lengths,
/// sources and arrival times after a read. The 2 MB buffer is allocated zeroed, so only the
/// pages datagrams touch are ever backed by memory.
pub struct RecvBatch {
    bufs: Vec<u8>,
    names: Box<[libc::sockaddr_storage; RECV_BATCH]>,
    /// Room for each datagram's kernel receive stamp (`SO_TIMESTAMPNS`, see `rxstamp`).
    control: Box<[[u64; rxstamp::CONTROL_WORDS]; RECV_BATCH]>,
    got: [(usize, Option<SocketAddr>); RECV_BATCH],
    /// When each datagram reached the socket (the read time when it carried no stamp).
    arrived: [Instant; RECV_BATCH],
    len: usize,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self {
            bufs: vec![0; RECV_BATCH * MAX_DATAGRAM],
            // SAFETY: sockaddr_storage is plain old data; all-zero is valid (AF_UNSPEC).
            names: Box::new(unsafe { std::mem::zeroed() }),
            control: Box::new([[0; rxstamp::CONTROL_WORDS]; RECV_BATCH]),
            got: [(0, None); RECV_BATCH],
            arrived: [Instant::now(); RECV_BATCH],
            len: 0,
        }
    }
}

impl RecvBatch {
    /// How many datagrams the last read got.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `i`-th datagram of the last read and its source (`None`: not an IP address).
    pub fn datagram(&self, i: usize) -> Option<(&[u8], Option<SocketAddr>)> {
        if i >= self.len {
            return None;
        }
        let (n, from) = self.got[i];
        let start = i * MAX_DATAGRAM;
        Some((&self.bufs[start..start + n.min(MAX_DATAGRAM)], from))
    }

    /// When the `i`-th datagram of the last read reached the socket: the kernel's receive
    /// stamp when the socket has `SO_TIMESTAMPNS` on (`rxstamp::enable`), else the time of
    /// the read.
    pub fn arrival(&self, i: usize) -> Option<Instant> {
        (i < self.len).then(|| self.arrived[i])
    }
}

/// Reads up to [`RECV_BATCH`] datagrams with one `recvmmsg` without blocking, in arrival
/// order, and returns how many ([`RecvBatch::datagram`] gives them). Fewer than
/// [`RECV_BATCH`] means the socket was drained when it was read. Errors are the socket's
/// (`WouldBlock` when nothing was waiting); the batch is then empty.
pub fn recv_batch(sock: &impl AsRawFd, batch: &mut RecvBatch) -> io::Result<usize> {
    batch.len = 0;
    // SAFETY: iovec and mmsghdr are plain old data; all-zero is valid (null, empty).
    let mut iov: [libc::iovec; RECV_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; RECV_BATCH] = unsafe { std::mem::zeroed() };
    let bufs = batch.bufs.as_mut_ptr();
    for (i, (m, v)) in msgs.iter_mut().zip(iov.iter_mut()).enumerate() {
        // SAFETY: `bufs` holds RECV_BATCH * MAX_DATAGRAM bytes, so slot `i` is in bounds.
        v.iov_base = unsafe { bufs.add(i * MAX_DATAGRAM) }.cast();
        v.iov_len = MAX_DATAGRAM;
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
        m.msg_hdr.msg_name = (&raw mut batch.names[i]).cast();
        m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        m.msg_hdr.msg_control = batch.control[i].as_mut_ptr().cast();
        m.msg_hdr.msg_controllen = size_of::<[u64; rxstamp::CONTROL_WORDS]>() as _;
    }
    // SAFETY: every header points at its own iovec (over its own MAX_DATAGRAM-byte slot of
    // `bufs`, slots do not overlap), its own sockaddr_storage and its own control buffer,
    // all alive and exclusively borrowed for the call, with their true lengths; the vector
    // length is the arrays'; no timeout.
    let n = unsafe {
        libc::recvmmsg(
            sock.as_raw_fd(),
            msgs.as_mut_ptr(),
            RECV_BATCH as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = (n as usize).min(RECV_BATCH);
    let (now, wall) = (Instant::now(), SystemTime::now());
    for (i, m) in msgs.iter().enumerate().take(n) {
        let from = source(&batch.names[i], m.msg_hdr.msg_namelen);
        batch.got[i] = (m.msg_len as usize, from);
        batch.arrived[i] = rxstamp::arrival_of(&m.msg_hdr, now, wall);
    }
    batch.len = n;
    Ok(n)
}

/// The source address the kernel wrote into `name` (`len` bytes of it) on a receive;
/// `None` when it is not an IP socket address. An IPv4 peer heard on a dual-stack IPv6
/// socket (`::ffff:a.b.c.d`) is given as IPv4, the address it is known by everywhere else.
pub(crate) fn source(name: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len.min(size_of::<libc::sockaddr_storage>() as libc::socklen_t);
    // SAFETY: `name` is a whole sockaddr_storage and `len` is capped at its size, so the
    // address SockAddr reads (`len` bytes of it, per its family) is initialised memory.
    unsafe {
        let mut storage = SockAddrStorage::zeroed();
        *storage.view_as::<libc::sockaddr_storage>() = *name;
        SockAddr::new(storage, len)
    }
    .as_socket()
    .map(canonical)
}

/// A peer heard on a dual-stack IPv6 socket over IPv4 (`::ffff:a.b.c.d`) as the IPv4 address
/// it is, the one it is known by everywhere else (traces, routing, `received=`).
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    fn pair() -> (UdpSocket, UdpSocket) {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        (tx, rx)
    }

    /// A queue longer than a batch goes out in order, to each datagram's own destination,
    /// and a batch read gets them back in order with their source.
    #[test]
    fn queued_datagrams_go_out_in_order_and_come_back_in_batches() {
        let (tx, rx) = pair();
        let (_, rx2) = pair();
        let mut q = SendQueue::default();
        let total = SEND_BATCH + 5;
        for i in 0..total {
            let to = if i % 7 == 3 {
                rx2.local_addr().unwrap()
            } else {
                rx.local_addr().unwrap()
            };
            let full = q.push(Bytes::from(format!("message {i}")), to, i);
            assert_eq!(full, q.len() >= SEND_BATCH);
        }
        q.flush(|items| send_batch(&tx, items), |_, e| panic!("{e}"))
            .unwrap();
        assert!(q.is_empty());
        // Nothing is sent twice and nothing is lost: every datagram, in order per socket.
        let mut seen = Vec::new();
        let mut batch = RecvBatch::default();
        rx.set_nonblocking(true).unwrap();
        while let Ok(n) = recv_batch(&rx, &mut batch) {
            for i in 0..n {
                let (bytes, from) = batch.datagram(i).unwrap();
                assert_eq!(from, Some(tx.local_addr().unwrap()));
                seen.push(String::from_utf8(bytes.to_vec()).unwrap());
            }
            assert!(batch.datagram(n).is_none());
        }
        let want: Vec<String> = (0..total)
            .filter(|i| i % 7 != 3)
            .map(|i| format!("message {i}"))
            .collect();
        assert_eq!(seen, want);
        let mut buf = [0u8; 64];
        let mut other = Vec::new();
        for _ in 0..(0..total).filter(|i| i % 7 == 3).count() {
            let (n, _) = rx2.recv_from(&mut buf).unwrap();
            other.push(String::from_utf8(buf[..n].to_vec()).unwrap());
        }
        let want: Vec<String> = (0..total)
            .filter(|i| i % 7 == 3)
            .map(|i| format!("message {i}"))
            .collect();
        assert_eq!(other, want);
    }

    /// A datagram the kernel refuses (too long for UDP) is reported with its tag and
    /// error; the ones before and after it still go out, in order.
    #[test]
    fn a_refused_datagram_is_reported_and_the_rest_go_out() {
        let (tx, rx) = pair();
        let to = rx.local_addr().unwrap();
        let mut q = SendQueue::default();
        q.push(Bytes::from_static(b"first"), to, 1);
        q.push(Bytes::from(vec![b'x'; 70_000]), to, 2);
        q.push(Bytes::from_static(b"third"), to, 3);
        let mut failed = Vec::new();
        q.flush(
            |items| send_batch(&tx, items),
            |o, e| failed.push((o.tag, e.raw_os_error())),
        )
        .unwrap();
        assert_eq!(failed, vec![(2, Some(libc::EMSGSIZE))]);
        let mut buf = [0u8; 64];
        for want in [&b"first"[..], b"third"] {
            let (n, _) = rx.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], want);
        }
    }

    /// A full send buffer stops the flush with `WouldBlock` and keeps the rest, in order,
    /// for the next flush, which sends it. (The kernel is stood in for by a closure: on
    /// loopback a full send buffer cannot be made to happen on demand.)
    #[test]
    fn a_full_buffer_keeps_the_rest_queued_in_order() {
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut q = SendQueue::default();
        for i in 0..5 {
            q.push(Bytes::from_static(b"m"), to, i);
        }
        let mut sent = Vec::new();
        // The first call takes two datagrams, the second finds the buffer full.
        let mut calls = 0;
        let r = q.flush(
            |items| {
                calls += 1;
                if calls == 1 {
                    sent.extend(items[..2].iter().map(|o| o.tag));
                    Ok(2)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                }
            },
            |_, e| panic!("{e}"),
        );
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert_eq!(q.len(), 3);
        // What left is no longer held; what waits is (the engine flushes a finishing
        // endpoint's datagrams only when it has some queued).
        assert!(!q.holds(|&t| t == 1));
        assert!(q.holds(|&t| t == 2) && q.holds(|&t| t == 4));
        q.flush(
            |items| {
                sent.extend(items.iter().map(|o| o.tag));
                Ok(items.len())
            },
            |_, e| panic!("{e}"),
        )
        .unwrap();
        assert!(q.is_empty());
        assert!(!q.holds(|_| true));
        assert_eq!(sent, vec![0, 1, 2, 3, 4]);
    }

    /// A datagram of any length UDP allows is read whole, with its neighbours intact.
    #[test]
    fn long_datagrams_are_read_whole() {
        let (tx, rx) = pair();
        let to = rx.local_addr().unwrap();
        socket2::SockRef::from(&rx)
            .set_recv_buffer_size(1 << 20)
            .unwrap();
        let mut q = SendQueue::default();
        q.push(Bytes::from(vec![b'a'; 60_000]), to, 0);
        q.push(Bytes::from_static(b"short"), to, 1);
        q.push(Bytes::from(vec![b'c'; 65_000]), to, 2);
        q.flush(|items| send_batch(&tx, items), |_, e| panic!("{e}"))
            .unwrap();
        rx.set_nonblocking(true).unwrap();
        let mut batch = RecvBatch::default();
        let mut got = Vec::new();
        while let Ok(n) = recv_batch(&rx, &mut batch) {
            got.extend((0..n).map(|i| batch.datagram(i).unwrap().0.to_vec()));
        }
        assert_eq!(got.len(), 3);
        assert!(got[0].len() == 60_000 && got[0].iter().all(|&b| b == b'a'));
        assert_eq!(got[1], b"short");
        assert!(got[2].len() == 65_000 && got[2].iter().all(|&b| b == b'c'));
    }
}
