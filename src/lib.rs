//! wgroam: keeps an IPv6 split tunnel alive for a roaming OpenWrt router.
//!
//! The decision logic lives in [`core`] and never touches the operating system;
//! everything that does (WireGuard, uci, ubus, capture, netlink, syslog) is an
//! adapter behind a small trait so the core can be driven by fakes in tests.

pub mod app;
pub mod app_pair;
pub mod bpf;
pub mod capture;
pub mod capture_hub;
pub mod cli;
pub mod clock;
pub mod config;
pub mod core;
pub mod crashpoint;
pub mod daemon;
pub mod delegation;
pub mod handshake;
pub mod health;
pub mod join;
pub mod linkwatch;
pub mod logging;
pub mod ndp;
pub mod network;
pub mod pairing;
pub mod persist;
pub mod probe;
pub mod qr;
pub mod relay;
pub mod roam_runtime;
pub mod rtnl;
pub mod signals;
pub mod state;
pub mod status;
#[cfg(test)]
pub mod testns;
pub mod ubus;
pub mod uci;
pub mod wg;
pub mod wire;
