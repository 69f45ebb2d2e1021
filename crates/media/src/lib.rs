//! The sans-IO media core of sipmeter: SDP offer/answer ([`sdp`]), RTP and RTCP packets
//! ([`rtp`], [`rtcp`]), RFC 4733 telephone-events ([`dtmf`]), G.711 ([`g711`]), RFC 3550
//! Appendix A receive statistics ([`stats`]), stretches without RTP ([`gaps`]), the ITU-T G.107 and G.107.1 E-models
//! ([`emodel`]), SRTP with SDES keys ([`srtp`]), a speech-like test signal and level meter ([`audio`]), when sound starts and stops in what we receive ([`sound`]), the per-call [`session::MediaSession`]
//! that ties them together, RTCP XR VoIP metrics ([`xr`], RFC 3611), WAV files as a source ([`wav`]), STUN messages ([`stun`], RFC 8489), a TURN client ([`turn`], RFC 8656) and the ICE agent ([`ice`], RFC 8445, RFC 7675), and a seeded network impairment model for tests ([`impair`]).
//!
//! Nothing here does I/O or reads the clock: every input takes `now: Instant`, every output is
//! polled (`poll_transmit`, `poll_timeout`). The load engine binds a session to a UDP port pair.

#![forbid(unsafe_code)]

pub mod audio;
pub mod dtls;
pub mod dtmf;
pub mod emodel;
pub mod g711;
pub mod gaps;
pub mod ice;
pub mod impair;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
pub mod session;
pub mod sound;
pub mod srtp;
pub mod stats;
pub mod stun;
pub mod tone;
pub mod turn;
pub mod wav;
pub mod xr;
