//! Packet formats, pure: checked zero-copy views over WireGuard messages and
//! the IP/UDP frames carrying them ([`wireguard`]), responder-side Noise
//! verification of initiations ([`noise`]; mac1 four at a time in vector
//! lanes, `lanes`, where the CPU has them) and the classic BPF program the
//! capture socket carries ([`bpf`]). Bytes in, values out; no I/O.

// Pure: no clock, file, socket, thread or command (clippy.toml).
#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod bpf;
#[cfg(mac1_lanes)]
mod lanes;
pub mod noise;
pub mod wireguard;

pub use wireguard::*;
