//! Test-only harness: starts real third-party peers on free loopback ports and stops them on
//! drop, even when the test fails.
//!
//! - [`Kamailio`]: registrar (usrloc in memory) + stateful proxy with digest authentication
//!   (401 for REGISTER, 407 for INVITE) against a fixed table of users, record-routing,
//!   `lookup("location")` for calls, 404 for unknown users, 403 for a disabled account.
//! - [`Dnsmasq`]: an authoritative DNS server for test zones (NAPTR, SRV, A records).
//! - [`Coturn`]: a TURN/STUN server with long-term credentials relaying to loopback peers.
//!
//! Each peer runs in its own process group, which is terminated as a whole on drop.
//! Missing binaries are reported as [`PeerError::Missing`] naming the Debian package; tests
//! gate on [`available`], which skips with a message (or fails under `SIPMETER_REQUIRE_PEERS`).

mod coturn;
mod dnsmasq;
mod kamailio;
mod proc;

pub use coturn::{Coturn, CoturnConfig};
pub use dnsmasq::{Dnsmasq, DnsmasqConfig, Naptr, Srv};
pub use kamailio::{
    Kamailio, KamailioConfig, KamailioOutbound, KamailioTls, User, module_installed,
    outbound_available, tls_available, tls_module_installed, websocket_available,
};
pub use proc::{PeerError, TempDir, available, free_port, have_binary};
