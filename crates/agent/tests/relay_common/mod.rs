//! A TCP relay between phones and a SIP server over TCP that a test can cut (close every
//! connection), silence (keep the connections open, forward nothing on them) or make slow
//! to open new connections (`kamailio_outbound.rs`, `outbound_builtin.rs`).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A relay listening on 127.0.0.1, forwarding each accepted connection to one of its own to
/// the server.
pub struct Relay {
    pub addr: SocketAddr,
    /// Each relayed connection: both sockets and its silence switch.
    pub conns: Arc<Mutex<Vec<Relayed>>>,
    accepted: Arc<Mutex<u32>>,
    /// Answers relayed to the endpoints that grant outbound (`Require: outbound`).
    pub granted: Arc<AtomicU32>,
    /// Milliseconds a connection accepted from now on waits before its bytes are relayed
    /// (its connection to the server is opened then): a phone's new flow that is slow to
    /// reach the server.
    #[allow(dead_code)] // reason: kamailio_outbound.rs shares the module and never delays
    pub hold_new: Arc<AtomicU64>,
}

/// One relayed connection.
pub struct Relayed {
    client: TcpStream,
    server: TcpStream,
    silent: Arc<AtomicBool>,
}

impl Relay {
    /// A relay to `to`.
    pub fn start(to: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(Mutex::new(0));
        let granted = Arc::new(AtomicU32::new(0));
        let hold_new = Arc::new(AtomicU64::new(0));
        let (c, a, g, h) = (
            conns.clone(),
            accepted.clone(),
            granted.clone(),
            hold_new.clone(),
        );
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let hold = Duration::from_millis(h.load(Ordering::SeqCst));
                let (c, a, g) = (c.clone(), a.clone(), g.clone());
                std::thread::spawn(move || {
                    std::thread::sleep(hold);
                    let Ok(server) = TcpStream::connect(to) else {
                        return;
                    };
                    relay(client, server, &c, &a, &g);
                });
            }
        });
        Relay {
            addr,
            conns,
            accepted,
            granted,
            hold_new,
        }
    }

    /// Closes every connection relayed so far (`conns` of a relay).
    pub fn cut(conns: &Mutex<Vec<Relayed>>) {
        for c in conns.lock().unwrap().drain(..) {
            let _ = c.client.shutdown(Shutdown::Both);
            let _ = c.server.shutdown(Shutdown::Both);
        }
    }

    /// Silences every connection relayed so far; later ones are relayed.
    pub fn silence(conns: &Mutex<Vec<Relayed>>) {
        for c in conns.lock().unwrap().iter() {
            c.silent.store(true, Ordering::SeqCst);
        }
    }

    /// Connections relayed so far (opened to the server).
    pub fn accepted(&self) -> u32 {
        *self.accepted.lock().unwrap()
    }
}

/// Pumps bytes both ways between `client` and `server` until either closes.
fn relay(
    client: TcpStream,
    server: TcpStream,
    conns: &Mutex<Vec<Relayed>>,
    accepted: &Mutex<u32>,
    granted: &Arc<AtomicU32>,
) {
    *accepted.lock().unwrap() += 1;
    let silent = Arc::new(AtomicBool::new(false));
    conns.lock().unwrap().push(Relayed {
        client: client.try_clone().unwrap(),
        server: server.try_clone().unwrap(),
        silent: silent.clone(),
    });
    for (mut from, mut into, to_client) in [
        (
            client.try_clone().unwrap(),
            server.try_clone().unwrap(),
            false,
        ),
        (server, client, true),
    ] {
        let s = silent.clone();
        let g = granted.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 16384];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) if !s.load(Ordering::SeqCst) => {
                        if into.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        if to_client {
                            let grants = buf[..n]
                                .windows(19)
                                .filter(|w| *w == b"Require: outbound\r\n")
                                .count();
                            g.fetch_add(
                                u32::try_from(grants).unwrap_or(u32::MAX),
                                Ordering::SeqCst,
                            );
                        }
                    }
                    Ok(_) => {} // silenced: dropped
                }
            }
            let _ = into.shutdown(Shutdown::Both);
        });
    }
}
