//! The sans-IO core: events in, actions out, time passed in.
//!
//! Nothing here reads a clock, opens a socket or runs a command, so every
//! decision is unit-tested with plain values, the way boringtun tests its
//! `Tunn` and smoltcp its `Interface`.

// Pure: no clock, file, socket, thread or command (clippy.toml).
#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod hub;
pub mod key;
pub mod net;
pub mod pairing;
pub mod reconcile;
pub mod relay;
pub mod roam;
pub mod time;

use std::net::SocketAddr;

pub use key::PublicKey;
pub use time::Now;

/// Log severity, mapped to syslog priorities by the adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Notice,
    Info,
    Debug,
}

/// A line for syslog: what every core's actions carry to say what it did
/// (the adapter maps the level to a syslog priority).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    pub level: Level,
    pub msg: String,
}

/// Appends a log line to any core's actions.
pub fn log<A: From<Log>>(out: &mut Vec<A>, level: Level, msg: String) {
    out.push(A::from(Log { level, msg }));
}

/// What the core asks the outside world to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Set a peer's endpoint live (no link bounce, sessions kept).
    SetEndpoint {
        iface: String,
        key: PublicKey,
        endpoint: SocketAddr,
    },
    /// Set a peer's endpoint by removing and re-adding the peer with its
    /// configuration. Only for a peer whose kernel session is gone: it resets
    /// WireGuard's 5 s handshake rate limit, so the next packet to the peer
    /// starts a handshake to the new endpoint at once. Carried out only if
    /// the kernel still holds no session with the peer at that moment (else
    /// as `SetEndpoint`): the core's view is a read old, and a session
    /// completed since must survive.
    Rearm {
        iface: String,
        key: PublicKey,
        endpoint: SocketAddr,
    },
    /// Stage `endpoint_host`/`endpoint_port` of a `network` uci section.
    StageEndpoint {
        section: String,
        endpoint: SocketAddr,
    },
    /// `uci commit network`: the only flash write.
    CommitUci,
    /// Write the agent's state file (learned endpoints, stamps).
    Persist,
    /// Let transport packets through the capture filter, or not.
    CaptureTransport {
        iface: String,
        on: bool,
    },
    Log(Log),
}

impl From<Log> for Action {
    fn from(l: Log) -> Self {
        Action::Log(l)
    }
}
