//! The operating system's edge: one adapter per system the agent talks to.
//!
//! Each adapter is thin: it turns the system's replies into the core's plain
//! values and the core's actions into calls, and it sits behind a small trait
//! so the glue in [`crate::hub`] and [`crate::roam`] is tested against fakes.
//! Each fake lives beside its real one and has the real one's semantics; it
//! is compiled for tests only (`cfg(test)`), the ones integration tests use
//! also under the `test-support` feature, never into the shipped binary.
//!
//! | adapter | trait | the real one | the fake |
//! |---|---|---|---|
//! | [`wg`] | `WireGuard` | `System` (kernel netlink, wireguard-go UAPI) | `wg::fake::FakeWg` (also `test-support`) |
//! | [`rtnl`] | `Routing` | `Rtnl` (rtnetlink) | `rtnl::fake::FakeRouting` |
//! | [`host`] | `RelayHost` | `SystemHost` (sysctl, nft, NDP) | `host::fake::FakeHost` |
//! | [`uci`] | `UciStore` | `UciCli` (the uci tool) | `uci::MemoryUci` |
//! | [`ubus`] | `Ubus` | `UbusCli` (the ubus tool) | `ubus::fake::FakeUbus` (netifd and odhcpd as observed) |
//! | [`capture`] | `PacketSource` | `PacketCapture` (AF_PACKET ring) | `capture::QueueSource` |

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
