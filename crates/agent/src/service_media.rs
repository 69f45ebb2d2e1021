//! The media of the built-in registrar's service numbers (`echo`, `tone`) on real sockets.
//!
//! The registrar core decides (see `registrar::services`); this driver binds one RTP/RTCP
//! port pair per service call on the registrar's listen address, and runs one small task
//! per call that moves datagrams between the sockets and the call's sans-IO media
//! ([`EchoMedia`] or the tone's `MediaSession`). A call with no RTP or RTCP from the caller
//! for [`ServiceOptions::inactivity`] is reported back so the core ends it with a BYE.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use media::rtp;
use media::sdp::Negotiated;
use media::session::{MediaSession, PacketKind};
use registrar::services::{EchoAction, EchoMedia, tone_session};
use registrar::{Registrar, Service, ServiceCallId, ServiceEvent, ServiceLimits};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::callmedia::PortAllocator;

/// How the service numbers run.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// A call whose caller sent neither RTP nor RTCP for this long is ended (BYE).
    pub inactivity: Duration,
    /// RTP/RTCP port pairs from this inclusive range (`None`: chosen by the system).
    pub rtp_ports: Option<(u16, u16)>,
    /// Limits enforced by the core (the longest call).
    pub limits: ServiceLimits,
}

impl Default for ServiceOptions {
    /// 30 s of silence ends a call (RTCP alone, every ≤ 7.5 s, keeps a held call alive);
    /// system-chosen ports; calls up to four hours.
    fn default() -> Self {
        Self {
            inactivity: Duration::from_secs(30),
            rtp_ports: None,
            limits: ServiceLimits::default(),
        }
    }
}

enum Ctl {
    Media(Negotiated),
}

struct CallMediaTask {
    ctl: Option<mpsc::UnboundedSender<Ctl>>,
    sockets: Option<(std::net::UdpSocket, std::net::UdpSocket)>,
    task: Option<JoinHandle<()>>,
}

impl Drop for CallMediaTask {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// The service calls' sockets and tasks of one registrar.
pub(crate) struct ServiceMedia {
    ip: IpAddr,
    ports: PortAllocator,
    calls: HashMap<ServiceCallId, CallMediaTask>,
    inactive_tx: mpsc::UnboundedSender<ServiceCallId>,
    inactive_rx: mpsc::UnboundedReceiver<ServiceCallId>,
    inactivity: Duration,
}

impl ServiceMedia {
    /// Media bound on `ip` (the registrar's listen address).
    pub(crate) fn new(ip: IpAddr, opts: &ServiceOptions) -> Self {
        let (inactive_tx, inactive_rx) = mpsc::unbounded_channel();
        Self {
            ip,
            ports: PortAllocator::new(opts.rtp_ports, 0),
            calls: HashMap::new(),
            inactive_tx,
            inactive_rx,
            inactivity: opts.inactivity,
        }
    }

    /// The next call whose caller went silent.
    ///
    /// # Cancel safety
    /// Cancel safe: a call id is only taken from the channel when this completes.
    pub(crate) async fn next_inactive(&mut self) -> Option<ServiceCallId> {
        self.inactive_rx.recv().await
    }

    /// Carries out the core's service events (bind, start/update, release).
    pub(crate) fn drive(&mut self, core: &mut Registrar) {
        while let Some(ev) = core.poll_service_event() {
            match ev {
                ServiceEvent::Bind { call, peer } => {
                    let r = self.bind(peer);
                    let rtp = match r {
                        Ok((addr, rtp, rtcp)) => {
                            self.calls.insert(
                                call,
                                CallMediaTask {
                                    ctl: None,
                                    sockets: Some((rtp, rtcp)),
                                    task: None,
                                },
                            );
                            Ok(addr)
                        }
                        Err(_) => Err(()),
                    };
                    core.handle_service_bound(Instant::now(), call, rtp);
                }
                ServiceEvent::Media {
                    call,
                    service,
                    negotiated,
                } => {
                    let Some(c) = self.calls.get_mut(&call) else {
                        continue;
                    };
                    if let Some(ctl) = &c.ctl {
                        let _ = ctl.send(Ctl::Media(negotiated));
                    } else if let Some((rtp, rtcp)) = c.sockets.take() {
                        let (tx, rx) = mpsc::unbounded_channel();
                        c.ctl = Some(tx);
                        c.task = Some(tokio::spawn(run_call(
                            CallSetup {
                                id: call,
                                service,
                                negotiated,
                                inactivity: self.inactivity,
                            },
                            rtp,
                            rtcp,
                            rx,
                            self.inactive_tx.clone(),
                        )));
                    }
                }
                ServiceEvent::End { call, .. } => {
                    // Dropping the entry aborts the task and closes the sockets.
                    self.calls.remove(&call);
                }
            }
        }
    }

    fn bind(
        &mut self,
        peer: SocketAddr,
    ) -> io::Result<(SocketAddr, std::net::UdpSocket, std::net::UdpSocket)> {
        let ip = if self.ip.is_unspecified() {
            facing(peer).unwrap_or(self.ip)
        } else {
            self.ip
        };
        let (rtp, rtcp) = self.ports.bind_pair(ip)?;
        rtp.set_nonblocking(true)?;
        rtcp.set_nonblocking(true)?;
        let port = rtp.local_addr()?.port();
        Ok((SocketAddr::new(ip, port), rtp, rtcp))
    }
}

/// The local address the system routes to `peer` from (for SDP when listening on 0.0.0.0).
fn facing(peer: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = match peer {
        SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let s = std::net::UdpSocket::bind(any).ok()?;
    s.connect(peer).ok()?;
    Some(s.local_addr().ok()?.ip())
}

struct CallSetup {
    id: ServiceCallId,
    service: Service,
    negotiated: Negotiated,
    inactivity: Duration,
}

enum Media {
    Echo(EchoMedia),
    Tone {
        session: Box<MediaSession>,
        rtp_to: SocketAddr,
        rtcp_to: SocketAddr,
        mux: bool,
    },
}

/// One service call's media until the registrar drops it (the task is aborted then).
async fn run_call(
    setup: CallSetup,
    rtp: std::net::UdpSocket,
    rtcp: std::net::UdpSocket,
    mut ctl: mpsc::UnboundedReceiver<Ctl>,
    inactive: mpsc::UnboundedSender<ServiceCallId>,
) {
    let (Ok(rtp), Ok(rtcp)) = (UdpSocket::from_std(rtp), UdpSocket::from_std(rtcp)) else {
        let _ = inactive.send(setup.id);
        return;
    };
    let (rtp, rtcp) = (Arc::new(rtp), Arc::new(rtcp));
    let n = &setup.negotiated;
    // SSRC and seed from the call id: distinct per call, reproducible.
    let ssrc = 0x5e00_0000 ^ (setup.id.0 as u32).wrapping_mul(0x9e37_79b9);
    let now = Instant::now();
    let mut media = match setup.service {
        Service::Echo => Media::Echo(EchoMedia::new(n, ssrc)),
        Service::Tone => match tone_session(n, ssrc, setup.id.0, now) {
            Ok(s) => Media::Tone {
                session: Box::new(s),
                rtp_to: n.remote_rtp,
                rtcp_to: n.remote_rtcp,
                mux: n.rtcp_mux,
            },
            // The codec was negotiated from our own list, so only a build without Opus
            // gets here: nothing to send; the silence timer ends the call.
            Err(_) => Media::Echo(EchoMedia::new(n, ssrc)),
        },
    };
    let mut last_heard = now;
    let mut reported = false;
    let mut buf_rtp = vec![0u8; 2048];
    let mut buf_rtcp = vec![0u8; 2048];
    loop {
        let silence_at = (!reported).then_some(last_heard + setup.inactivity);
        let media_at = match &media {
            Media::Tone { session, .. } => session.poll_timeout(),
            Media::Echo(_) => None,
        };
        let wake = [silence_at, media_at].into_iter().flatten().min();
        tokio::select! {
            r = rtp.recv_from(&mut buf_rtp) => {
                if let Ok((len, from)) = r {
                    last_heard = Instant::now();
                    on_datagram(&mut media, &rtp, &mut buf_rtp[..len], from, false).await;
                }
            }
            r = rtcp.recv_from(&mut buf_rtcp) => {
                if let Ok((len, from)) = r {
                    last_heard = Instant::now();
                    on_datagram(&mut media, &rtcp, &mut buf_rtcp[..len], from, true).await;
                }
            }
            c = ctl.recv() => match c {
                Some(Ctl::Media(n)) => match &mut media {
                    Media::Echo(e) => e.update(&n),
                    Media::Tone { session, .. } => session.set_direction(Instant::now(), n.direction),
                },
                None => return,
            },
            () = sleep_until(wake) => {}
        }
        let now = Instant::now();
        if silence_at.is_some_and(|t| t <= now) {
            reported = true;
            let _ = inactive.send(setup.id);
        }
        if let Media::Tone {
            session,
            rtp_to,
            rtcp_to,
            mux,
        } = &mut media
        {
            while let Some(o) = session.poll_transmit(now) {
                // A full socket buffer loses this datagram only; the call carries on.
                let _ = match o.kind {
                    PacketKind::Rtp => rtp.send_to(&o.bytes, *rtp_to).await,
                    PacketKind::Rtcp if *mux => rtp.send_to(&o.bytes, *rtcp_to).await,
                    PacketKind::Rtcp => rtcp.send_to(&o.bytes, *rtcp_to).await,
                };
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

async fn on_datagram(
    media: &mut Media,
    sock: &UdpSocket,
    buf: &mut [u8],
    from: SocketAddr,
    on_rtcp_port: bool,
) {
    let now = Instant::now();
    match media {
        Media::Echo(echo) => match echo.handle_packet(now, buf) {
            // Symmetric RTP: back to where it came from.
            EchoAction::Reflect => {
                let _ = sock.send_to(buf, from).await;
            }
            EchoAction::Reply(bytes) => {
                let _ = sock.send_to(&bytes, from).await;
            }
            EchoAction::Drop => {}
        },
        Media::Tone {
            session,
            rtp_to,
            rtcp_to,
            mux,
        } => {
            let rtcp = rtp::is_rtcp(buf);
            if session.handle_packet(now, buf).is_ok() {
                // Symmetric RTP (latching): send where the caller's packets come from, which
                // gets through a NAT the SDP address may not describe.
                if !rtcp {
                    *rtp_to = from;
                    if *mux {
                        *rtcp_to = from;
                    }
                } else if on_rtcp_port {
                    *rtcp_to = from;
                }
            }
        }
    }
}
