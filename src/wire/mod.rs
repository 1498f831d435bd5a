//! Packet formats, pure: checked zero-copy views over WireGuard messages and
//! the IP/UDP frames carrying them ([`wireguard`]), responder-side Noise
//! verification of initiations ([`noise`]) and the classic BPF program the
//! capture socket carries ([`bpf`]). Bytes in, values out; no I/O.

pub mod bpf;
pub mod noise;
pub mod wireguard;

pub use wireguard::*;
