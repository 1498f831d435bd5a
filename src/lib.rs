//! wgroam: keeps an IPv6 split tunnel alive for a roaming OpenWrt router.
//!
//! The tree is the design:
//!
//! | folder | what lives there | may touch the OS |
//! |---|---|---|
//! | [`core`] | the decisions: events in, actions out, time passed in | no (enforced by clippy, see `clippy.toml`) |
//! | [`wire`] | packet formats: WireGuard messages, Noise verification, BPF | no |
//! | [`driver`] | the one event loop both roles run in | yes (through [`driver::Wake`]) |
//! | [`os`] | one adapter per system, each a small trait, the real one and a fake | yes |
//! | [`hub`] | the hub's glue: peers from uci, capture, relay, state, status | yes (through `os`) |
//! | [`roam`] | the roam's glue: setup, delegation, health, status | yes (through `os`) |
//! | [`config`] | `/etc/config/wgroam`: parsing and validation | no |
//! | [`app`] | one file per command (`run`, `check`, `status`, `invite`, `join`) and the CLI | yes |

pub mod app;
pub mod config;
pub mod core;
pub mod driver;
pub mod hub;
pub mod os;
pub mod roam;
pub mod wire;
