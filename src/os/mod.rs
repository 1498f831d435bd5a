//! The operating system's edge: one adapter per system the agent talks to.
//!
//! Each adapter is thin: it turns the system's replies into the core's plain
//! values and the core's actions into calls, and it sits behind a small trait
//! (`WireGuard`, `Routing`, `UciStore`, `Ubus`, `PacketSource`, ...) so the
//! glue in [`crate::hub`] and [`crate::roam`] is tested against fakes.

pub mod capture;
pub mod clock;
pub mod crashpoint;
pub mod files;
pub mod host;
pub mod http;
pub mod icmp;
pub mod linkwatch;
pub mod ndp;
pub mod rtnl;
pub mod signals;
pub mod syslog;
#[cfg(test)]
pub mod testns;
pub mod ubus;
pub mod uci;
pub mod wg;
