//! The hub's glue (R2, the static router): peers read from OpenWrt's
//! `network` config ([`network`]), captured handshakes verified and handed
//! to the core ([`capture`]), routes and relay policy carried out
//! ([`relay`]), learned endpoints kept across restarts ([`state`]),
//! `status.json` ([`status`]), pairing's invite store and redeem listener
//! ([`pairing`]), and the role the loop runs
//! ([`runtime`], driven by [`crate::driver`]).

pub mod capture;
pub mod network;
pub mod pairing;
pub mod relay;
pub mod runtime;
pub mod state;
pub mod status;
