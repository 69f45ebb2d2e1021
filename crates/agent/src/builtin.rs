//! Runs the built-in registrar core on real sockets (UDP today).

use std::io;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use registrar::{Registrar, RegistrarConfig};
use sip_msg::{Host, Message};
use tokio::net::UdpSocket;
use tokio::sync::watch;

/// A running built-in registrar.
#[derive(Debug)]
pub struct BuiltinRegistrar {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<registrar::Stats>,
}

impl BuiltinRegistrar {
    /// Binds `listen` over UDP (port 0 picks a free port) and serves until stopped.
    /// `config.host`/`config.port` are replaced by the bound address.
    pub async fn start_udp(listen: SocketAddr, mut config: RegistrarConfig) -> io::Result<Self> {
        let sock = UdpSocket::bind(listen).await?;
        let addr = sock.local_addr()?;
        config.host = match addr.ip() {
            std::net::IpAddr::V4(a) => Host::V4(a),
            std::net::IpAddr::V6(a) => Host::V6(a),
        };
        config.port = addr.port();
        config.transport = "UDP".into();
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut core = Registrar::new(config);
            let mut buf = vec![0u8; 65_536];
            loop {
                let wake = core.poll_timeout().map(tokio::time::Instant::from_std);
                tokio::select! {
                    r = sock.recv_from(&mut buf) => {
                        let Ok((n, from)) = r else { continue };
                        // Malformed input is dropped here; a registrar answers what it can read.
                        if let Ok(msg) = Message::parse(&buf[..n]) {
                            core.handle_message(Instant::now(), unix_now(), msg, from);
                        }
                    }
                    () = async { match wake { Some(w) => tokio::time::sleep_until(w).await, None => std::future::pending().await } } => {
                        core.handle_timeout(Instant::now());
                    }
                    _ = stopped.changed() => break,
                }
                while let Some((to, bytes)) = core.poll_transmit() {
                    // A send error to one endpoint must not stop the registrar.
                    let _ = sock.send_to(&bytes, to).await;
                }
            }
            core.stats()
        });
        Ok(Self { addr, stop, task })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and returns the counters.
    pub async fn stop(self) -> registrar::Stats {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
