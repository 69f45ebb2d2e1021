//! sipmeter's engine: drives the sans-IO endpoints of `sip-proto` over real sockets.

pub mod builtin;
pub mod callmedia;
pub mod capacity;
pub mod check;
pub mod conn;
pub mod dscp;
pub mod engine;
pub mod eventbuf;
pub mod failover;
pub mod fasthash;
pub mod flow;
pub mod hints;
pub mod netpoll;
pub mod pcap;
pub mod proxyprobe;
pub mod rawscan;
pub mod routes;
pub mod runner;
pub mod rxstamp;
pub mod sdpoffer;
pub mod service_media;
pub mod sipsock;
pub mod testfile;
pub mod timerheap;
pub mod trace;
pub mod udpbatch;
