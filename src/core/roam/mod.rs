//! The roam's decisions: keep the IPv6 split tunnel of a travel router alive.
//!
//! The travel router sits behind somebody else's IPv4 NAT; its IPv6 comes only
//! through WireGuard from the hub. Two things break that tunnel, and both are
//! handled here without touching the system:
//!
//! - **Uplink changes** (new WAN address, new gateway, link down/up). The
//!   kernel's WireGuard caches the source address it last used ("sticky"
//!   source) and keeps sending from the old one for ~15 s. Setting the peer's
//!   endpoint again, even to the same value, drops that cache, so a burst of
//!   rtnetlink events (debounced) becomes one reaction: re-resolve the hub's
//!   name, [`RoamAction::SetEndpoint`], re-pin the endpoint route, and
//!   [`RoamAction::Handshake`].
//! - **Silent breakage** (NAT rebinding with only inbound traffic, hub
//!   restart). A heartbeat through the tunnel every `heartbeat_interval_s`
//!   (skipped while packets come in anyway) makes the NAT open a new mapping
//!   that the hub roams to; when nothing comes back for two intervals the
//!   session is given up and a fresh handshake is forced.
//!
//! # What "forcing a handshake" means (for the adapter)
//!
//! Re-setting the endpoint does **not** mark a WireGuard session stale; it
//! only forgets the cached source address. When the hub still holds the
//! session, any packet through the tunnel after that is enough: the hub
//! authenticates it and roams to the new address. When the hub lost the
//! session (restart), it drops our transport packets and WireGuard would
//! initiate only after REKEY_TIMEOUT + KEEPALIVE_TIMEOUT (15 s). No netlink or
//! UAPI call expires a peer's keypairs, so [`RoamAction::Handshake`] asks the
//! adapter to **re-create the hub peer** with its current settings (remove and
//! add it in one set-device request: public key, preshared key, endpoint,
//! allowed IPs, persistent keepalive), which drops the keypairs, and then to
//! send the probe packet (an ICMPv6 echo to the hub's tunnel address); with no
//! keypair WireGuard initiates at once. A fresh initiation carries a TAI64N
//! timestamp from the wall clock, which is why handshakes are never forced
//! while the clock is not trusted (the hub would reject it as a replay, and
//! remember the bogus future stamp if the clock is ahead).
//!
//! # Reconciler
//!
//! Routes (the source-specific `::/0` into the tunnel and the endpoint pin
//! route) and the prefix delegation are desired state computed from facts.
//! The adapter reports what is applied ([`RoamEvent::RoutesObserved`], a dump
//! of the route table); only the difference is emitted, the same action is
//! not repeated within [`ROUTE_RETRY_MS`], and only routes carrying
//! [`ROUTE_PROTO`] are ever deleted. A restarted agent finds its routes in the
//! dump and does nothing.
//!
//! # Delegation
//!
//! The prefix is *commanded* ([`RoamAction::Delegate`] / [`RoamAction::Withdraw`],
//! each a new generation `seq`) and *confirmed* from looks
//! ([`RoamAction::ObserveDelegation`] → [`RoamEvent::DelegationObserved`]):
//! `Pending` until the carrier holds the prefix, every downstream has an
//! assignment inside it and the RA daemon announces it; after
//! [`DELEG_PROBLEM_AFTER_MS`] the blocker becomes `status.delegation_problem`
//! (logged once). Looks are scheduled, not per poll: 0.3 s after a command,
//! every 0.5 s while pending, every 5 s while delegated, and 0.3 s after a
//! link change of the tunnel device or a link/address change of a
//! downstream device. A carrier netifd dropped is asked for again (backing
//! off) once the tunnel device is present. Withdrawn: the `::/0` routes go in
//! the same step *before* the command (odhcpd's router lifetime counts any
//! `::/0`), and deprecated addresses the looks find inside the prefix are
//! deleted ([`RoamAction::RemoveAddress`]).
//!
//! # Daemon contract
//!
//! - Send [`RoamEvent::Observed`] about once a second and
//!   [`RoamEvent::RoutesObserved`] at start, after carrying out route actions
//!   and whenever rtnetlink reports a change; the dump must include the main
//!   table (gateways are read from it) and the configured table.
//! - Send every rtnetlink message as [`RoamEvent::Uplink`].
//! - Send [`RoamEvent::ClockSynced`] when NTP is first seen to have set the
//!   clock, before the [`RoamEvent::Observed`] of the same look.
//! - Call `handle(now, RoamEvent::Tick)` no later than [`Roam::poll_at`].
//! - Carry out delegation commands and looks in the order given; answer each
//!   look with [`RoamEvent::DelegationObserved`] and a failed command with
//!   [`RoamEvent::DelegationFailed`], echoing its `seq` (older ones are
//!   ignored).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use super::net::{IpNet, ROUTE_PROTO, RT_TABLE_MAIN, Route};
use super::reconcile::InFlight;
use super::{Level, Log, Now, PublicKey, log};

/// A route action is not repeated sooner than this while unconfirmed.
pub const ROUTE_RETRY_MS: u64 = 10_000;
/// WireGuard's REKEY_TIMEOUT: forced handshakes are at least this far apart.
pub const MIN_HANDSHAKE_GAP_MS: u64 = 5_000;
/// A session whose handshake is older than this is dead (REJECT_AFTER_TIME).
const SESSION_LIFETIME_S: u64 = 180;
/// During continuous churn the reaction waits at most this many debounces.
const DEBOUNCE_CAP_FACTOR: u64 = 10;
/// Forced handshakes after a stall back off up to this spacing.
const MAX_STALL_BACKOFF_MS: u64 = 60_000;
/// The first look at the delegation after a command (netifd needs a moment).
const DELEG_FIRST_LOOK_MS: u64 = 300;
/// Looks while netifd has not confirmed yet.
const DELEG_PENDING_LOOK_MS: u64 = 500;
/// Looks while delegated: notices netifd dropping the dynamic interface.
const DELEG_HELD_LOOK_MS: u64 = 5_000;
/// Looks after a withdrawal (deprecated addresses to clean up), for a while.
const DELEG_WITHDRAWN_LOOK_MS: u64 = 1_000;
const DELEG_WITHDRAWN_BUSY_MS: u64 = 10_000;
const DELEG_WITHDRAWN_IDLE_LOOK_MS: u64 = 30_000;
/// Unconfirmed this long: `status` names the problem, one log line says so.
pub const DELEG_PROBLEM_AFTER_MS: u64 = 3_000;
/// Asking netifd again while it does not hold the prefix backs off up to this.
const DELEG_MAX_RETRY_MS: u64 = 30_000;

// ---------------------------------------------------------------------------
// Plain values
// ---------------------------------------------------------------------------

/// A default route's next hop: where the uplink is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gateway {
    /// `None` for on-link defaults (PPP, LTE).
    pub via: Option<IpAddr>,
    pub ifindex: u32,
}

impl fmt::Display for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.via {
            Some(v) => write!(f, "{v} dev #{}", self.ifindex),
            None => write!(f, "dev #{}", self.ifindex),
        }
    }
}

/// The underlay's default gateway of one family: the lowest-metric default
/// route of `table` that is not source-specific, not ours and not out of
/// `exclude_oif` (the tunnel).
pub fn best_default(
    routes: &[Route],
    v6: bool,
    table: u32,
    exclude_oif: Option<u32>,
) -> Option<Gateway> {
    routes
        .iter()
        .filter(|r| {
            r.table == table
                && r.dst.is_default()
                && r.dst.is_ipv6() == v6
                && r.src.is_none_or(|s| s.is_default())
                && !r.is_ours()
                && r.oif.is_some()
                && r.oif != exclude_oif
        })
        .min_by_key(|r| r.metric)
        .map(|r| Gateway {
            via: r.gateway,
            ifindex: r.oif.unwrap_or(0),
        })
}

/// One rtnetlink notification, reduced to what the roam needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkEvent {
    /// Interface index (0 when the message names none).
    pub ifindex: u32,
    pub change: UplinkChange,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UplinkChange {
    /// Administratively up and carrier present.
    LinkUp,
    LinkDown,
    LinkGone,
    /// A usable address appeared (tentative IPv6 addresses are not reported).
    AddrAdded(IpAddr),
    AddrRemoved(IpAddr),
    /// Some route changed: dump again ([`RoamEvent::RoutesObserved`]).
    RouteChanged,
    /// The kernel dropped notifications (ENOBUFS): anything may have changed.
    Lost,
}

/// How the hub is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubEndpoint {
    Addr(SocketAddr),
    /// Resolved by the adapter on [`RoamAction::Resolve`].
    Host {
        host: String,
        port: u16,
    },
}

/// The roam's configuration (validated by [`RoamConfig::validate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoamConfig {
    /// The WireGuard interface.
    pub iface: String,
    /// The hub peer's public key.
    pub hub_key: PublicKey,
    /// The hub's endpoints, preferred first (e.g. its IPv6 and IPv4 address).
    pub endpoints: Vec<HubEndpoint>,
    /// The hub peer's `allowed_ips` on this router; the delegated prefix
    /// must lie inside one of them.
    pub hub_allowed_ips: Vec<IpNet>,
    /// This router's own tunnel address (IPv6 default route from it).
    pub tunnel_addr: Option<Ipv6Addr>,
    /// The hub's tunnel address: heartbeat probes go there. `None` disables
    /// heartbeats (liveness then relies on real traffic).
    pub hub_tunnel_addr: Option<IpAddr>,
    /// The prefix the hub routes to us, delegated to the LAN.
    pub prefix: Option<IpNet>,
    /// Routing table for the tunnel routes.
    pub table: u32,
    pub metric: u32,
    pub debounce_ms: u64,
    pub heartbeat_interval_s: u64,
    /// Tunnel down this long → withdraw the prefix from the LAN.
    pub grace_s: u64,
    /// Run the health check this often; `None` never.
    pub health_interval_s: Option<u64>,
    /// Tell the LAN the tunnel's MTU (netifd copies it to the downstream's
    /// IPv6 MTU; radvd announces it). Off: a downstream IPv6 MTU netifd
    /// lowered to the tunnel's is put back to the link MTU.
    pub announce_mtu: bool,
}

impl RoamConfig {
    /// Defaults for everything but the peer.
    pub fn new(iface: &str, hub_key: PublicKey, endpoints: Vec<HubEndpoint>) -> Self {
        Self {
            iface: iface.to_string(),
            hub_key,
            endpoints,
            hub_allowed_ips: vec![IpNet::default_route(true)],
            tunnel_addr: None,
            hub_tunnel_addr: None,
            prefix: None,
            table: RT_TABLE_MAIN,
            metric: 1024,
            debounce_ms: 200,
            heartbeat_interval_s: 5,
            grace_s: 30,
            health_interval_s: None,
            announce_mtu: true,
        }
    }

    /// Checks everything the core relies on; the error is one line.
    pub fn validate(&self) -> Result<(), String> {
        if self.iface.is_empty() {
            return Err("no WireGuard interface named".into());
        }
        if self.endpoints.is_empty() {
            return Err("no hub endpoint; expected an address:port or host:port".into());
        }
        for e in &self.endpoints {
            match e {
                HubEndpoint::Addr(a) if a.port() == 0 => {
                    return Err(format!("hub endpoint {a}: port 0"));
                }
                HubEndpoint::Host { host, port } if host.is_empty() || *port == 0 => {
                    return Err(format!(
                        "hub endpoint '{host}:{port}': empty host or port 0"
                    ));
                }
                _ => {}
            }
        }
        if let Some(p) = self.prefix {
            if !p.is_ipv6() {
                return Err(format!("prefix {p} is not IPv6"));
            }
            if p.prefix_len() > 64 || p.prefix_len() == 0 {
                return Err(format!(
                    "prefix {p} cannot be delegated; expected a length from /1 to /64 (SLAAC needs /64)"
                ));
            }
            if !self.hub_allowed_ips.iter().any(|a| a.contains_net(&p)) {
                let allowed: Vec<String> =
                    self.hub_allowed_ips.iter().map(|a| a.to_string()).collect();
                return Err(format!(
                    "prefix {p} is not inside the hub peer's allowed_ips ({})",
                    if allowed.is_empty() {
                        "none".to_string()
                    } else {
                        allowed.join(", ")
                    }
                ));
            }
        }
        if let Some(t) = self.tunnel_addr
            && (t.is_unspecified() || t.is_multicast() || t.is_loopback())
        {
            return Err(format!("tunnel address {t} is not a unicast address"));
        }
        if self.table == 0 || self.table == 255 {
            return Err(format!(
                "routing table {} is reserved; expected main (254) or a table of your own",
                self.table
            ));
        }
        if self.heartbeat_interval_s == 0 || self.heartbeat_interval_s > 3600 {
            return Err(format!(
                "heartbeat interval {}s; expected 1 to 3600",
                self.heartbeat_interval_s
            ));
        }
        if self.debounce_ms > 10_000 {
            return Err(format!(
                "debounce {} ms; expected at most 10000",
                self.debounce_ms
            ));
        }
        if self.health_interval_s == Some(0) {
            return Err("health check interval 0; expected seconds or none".into());
        }
        Ok(())
    }

    fn hosts(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .endpoints
            .iter()
            .filter_map(|e| match e {
                HubEndpoint::Host { host, .. } => Some(host.clone()),
                HubEndpoint::Addr(_) => None,
            })
            .collect();
        v.dedup();
        v
    }

    fn interval_ms(&self) -> u64 {
        self.heartbeat_interval_s * 1000
    }
}

/// What WireGuard reports about the hub peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelSnapshot {
    /// The WireGuard interface's index.
    pub ifindex: u32,
    pub endpoint: Option<SocketAddr>,
    /// Wall-clock seconds of the latest handshake.
    pub last_handshake: Option<u64>,
    pub rx: u64,
    pub tx: u64,
}

/// Inputs of the roam core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoamEvent {
    /// A configuration reload; a bad one is logged and ignored.
    Configured(RoamConfig),
    /// The hub peer as WireGuard sees it; `None` when the interface (or the
    /// peer) is missing.
    Observed(Option<TunnelSnapshot>),
    /// The routes currently in the kernel (main table and the configured one).
    RoutesObserved(Vec<Route>),
    Uplink(UplinkEvent),
    Resolved {
        host: String,
        addrs: Vec<IpAddr>,
    },
    ResolveFailed {
        host: String,
        error: String,
    },
    /// The wall clock is known to be right (NTP synced). Initiations made
    /// before carried the old clock; a dead tunnel is re-handshaken at once.
    ClockSynced,
    HealthResult {
        ok: bool,
        detail: String,
    },
    /// The answer to [`RoamAction::ObserveDelegation`] with the same `seq`.
    DelegationObserved {
        seq: u64,
        report: DelegationReport,
    },
    /// Carrying out [`RoamAction::Delegate`] / [`RoamAction::Withdraw`] of
    /// generation `seq` failed (one line, cause and fix).
    DelegationFailed {
        seq: u64,
        error: String,
    },
    Tick,
}

/// What the system holds of the delegation (netifd's dynamic interface and
/// the downstream interfaces' assignments, or radvd), looked at by the adapter.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DelegationReport {
    /// The prefix the carrier holds and is up with; `None`: absent (netifd
    /// deleted the dynamic interface, or it was never added).
    pub carried: Option<IpNet>,
    pub downstream: Vec<DownstreamReport>,
    /// Something that blocks delegation, as one line naming cause and fix.
    pub problem: Option<String>,
    /// The WireGuard device's MTU.
    pub tunnel_mtu: Option<u32>,
}

/// One downstream interface as the adapter saw it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DownstreamReport {
    /// The netifd interface (`lan`), or the device on plain Linux.
    pub name: String,
    /// Its device (`br-lan`) and the device's index, when known.
    pub device: Option<String>,
    pub ifindex: Option<u32>,
    /// Its assignment inside the prefix that was asked about.
    pub assigned: Option<IpNet>,
    /// The device's IPv6 MTU (what the RA announces) and its link MTU.
    pub mtu6: Option<u32>,
    pub link_mtu: Option<u32>,
    /// odhcpd's RAs on the device carry a /64 of the prefix (`None`:
    /// unknown, e.g. an odhcpd without `ipv6ra`).
    pub announced: Option<bool>,
    /// Addresses on the device inside the prefix asked about with preferred
    /// lifetime 0 (netifd's leftovers after a withdrawal): address, length.
    pub deprecated: Vec<(Ipv6Addr, u8)>,
}

/// What the roam core asks the adapters to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoamAction {
    /// Resolve the hub's name; answer with `Resolved` or `ResolveFailed`.
    Resolve {
        host: String,
    },
    /// Set the peer's endpoint, even if unchanged: drops the sticky source.
    SetEndpoint {
        iface: String,
        key: PublicKey,
        endpoint: SocketAddr,
    },
    /// Drop the peer's session (re-create it with its current settings in
    /// one request), then send a probe to `probe` through the tunnel so
    /// WireGuard initiates now. See the module documentation.
    Handshake {
        iface: String,
        key: PublicKey,
        probe: Option<IpAddr>,
    },
    /// Send one small packet (ICMPv6 echo) to `to` through the tunnel.
    SendHeartbeat {
        iface: String,
        to: IpAddr,
    },
    /// Add a route; EEXIST counts as done.
    AddRoute(Route),
    /// Delete a route (matching its protocol); ESRCH counts as done.
    DelRoute(Route),
    /// Hand the prefix to the LAN (a netifd dynamic interface on the tunnel
    /// device carrying it, or an address on the LAN and radvd on plain
    /// Linux). Failure: [`RoamEvent::DelegationFailed`] with `seq`.
    Delegate {
        prefix: IpNet,
        seq: u64,
    },
    /// Take the prefix back: clients deprecate it. The routes into the
    /// tunnel are deleted by actions before this one.
    Withdraw {
        prefix: IpNet,
        seq: u64,
    },
    /// Look at what the system holds of `prefix`; answer with
    /// [`RoamEvent::DelegationObserved`] carrying `seq`.
    ObserveDelegation {
        prefix: IpNet,
        seq: u64,
        /// The prefix should be held (not withdrawn): look for blockers too.
        held: bool,
    },
    /// Delete a deprecated address netifd left inside a withdrawn prefix.
    RemoveAddress {
        device: String,
        addr: Ipv6Addr,
        len: u8,
    },
    /// Set `device`'s IPv6 MTU (what its RAs announce) and make the RA
    /// daemon take it (odhcpd reads it only when it reloads).
    SetIpv6Mtu {
        device: String,
        mtu: u32,
    },
    /// Run the health check; answer with `HealthResult`.
    HealthCheck,
    Log(Log),
}

impl From<Log> for RoamAction {
    fn from(l: Log) -> Self {
        RoamAction::Log(l)
    }
}

/// The prefix delegation: what was commanded, and (for `Delegated`) whether
/// the system confirmed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delegation {
    /// Nothing commanded yet since start (or no prefix).
    Unknown,
    /// Asked for, not confirmed yet.
    Pending(IpNet),
    /// Confirmed: the carrier holds it, every downstream has an assignment.
    Delegated(IpNet),
    Withdrawn(IpNet),
}

impl Delegation {
    pub fn prefix(&self) -> Option<IpNet> {
        match self {
            Self::Unknown => None,
            Self::Pending(p) | Self::Delegated(p) | Self::Withdrawn(p) => Some(*p),
        }
    }
}

/// A moment labelled for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamped {
    pub at_wall: u64,
    pub what: String,
}

/// The result of the latest health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub ok: bool,
    pub detail: String,
    pub at_wall: u64,
}

/// Everything `status` shows about the roam.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoamStatus {
    /// The latest reload was rejected: why (the previous config stays).
    pub config_error: Option<String>,
    pub clock_ok: bool,
    /// The WireGuard interface and hub peer exist.
    pub tunnel_present: bool,
    /// Packets come back from the hub.
    pub tunnel_up: bool,
    pub down_since_wall: Option<u64>,
    /// The endpoint this agent set.
    pub endpoint: Option<SocketAddr>,
    /// The endpoint WireGuard reports.
    pub kernel_endpoint: Option<SocketAddr>,
    pub last_handshake: Option<u64>,
    pub rx: u64,
    pub tx: u64,
    pub gateway_v4: Option<Gateway>,
    pub gateway_v6: Option<Gateway>,
    pub delegation: Delegation,
    pub delegation_changed: Option<Stamped>,
    /// What blocks the delegation (cause and fix), once it blocked a while.
    pub delegation_problem: Option<String>,
    /// Each downstream interface and its assignment from the prefix.
    pub downstream: Vec<(String, Option<IpNet>)>,
    /// The first downstream's IPv6 MTU (what its RAs announce).
    pub lan_mtu: Option<u32>,
    pub last_reaction: Option<Stamped>,
    pub reactions: u64,
    pub handshakes_forced: u64,
    pub heartbeats: u64,
    pub health: Option<Health>,
}

// ---------------------------------------------------------------------------
// The core
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Pending {
    first_ms: u64,
    last_ms: u64,
    why: String,
    /// An uplink really changed: force a handshake (not just at start).
    force: bool,
}

/// The sans-IO roam: feed it events, carry out the actions it returns.
#[derive(Debug, Clone)]
pub struct Roam {
    cfg: RoamConfig,
    not_before_wall: u64,
    synced: bool,
    status: RoamStatus,
    start_ms: Option<u64>,
    /// Monotonic ms of the latest event handled.
    last_ms: u64,

    // Tunnel.
    ifindex: Option<u32>,
    present: bool,
    absent_since: Option<u64>,
    last_rx_ms: Option<u64>,
    unanswered_since: Option<u64>,
    last_heartbeat_ms: Option<u64>,
    next_stall_ms: Option<u64>,
    stalls: u32,
    last_forced_ms: Option<u64>,

    // Uplink.
    links: BTreeMap<u32, bool>,
    addrs: BTreeMap<u32, BTreeSet<IpAddr>>,
    gw4: Option<Gateway>,
    gw6: Option<Gateway>,
    /// The last IPv6 gateway seen: the pin route survives a gap.
    pin_gw: Option<Gateway>,
    pending: Option<Pending>,

    // Endpoint.
    resolved: BTreeMap<String, Vec<IpAddr>>,
    candidate: usize,

    // Applied state.
    routes: Option<Vec<Route>>,
    /// Route adds (`true`) and deletes sent and not yet observed.
    inflight: InFlight<(bool, Route)>,
    next_health_ms: Option<u64>,

    // Delegation.
    /// What was commanded (`Unknown`, `Delegated` or `Withdrawn`).
    want: Delegation,
    /// Bumped with every command; older reports are stale.
    deleg_gen: u64,
    /// When the current command was issued.
    deleg_since_ms: u64,
    next_deleg_look_ms: Option<u64>,
    /// Re-asking netifd while it does not hold the prefix: not before this.
    deleg_retry_ms: u64,
    deleg_retry_gap_ms: u64,
    /// The latest report of the current generation, and a failed command.
    deleg_report: Option<DelegationReport>,
    deleg_error: Option<String>,
    /// The blocker seen while pending, and since when (shown once stable).
    problem_cand: Option<String>,
    problem_cand_since: u64,
    /// Downstream devices: their link and address events trigger a look.
    deleg_watch: BTreeSet<u32>,

    /// Last message per topic: conditions are logged once, not per event.
    logged: BTreeMap<&'static str, String>,
}

impl Roam {
    /// A roam core for a validated configuration. `not_before_wall` is the
    /// build time: a wall clock earlier than that is certainly wrong.
    pub fn new(cfg: RoamConfig, not_before_wall: u64) -> Result<Self, String> {
        cfg.validate()
            .map_err(|e| format!("{}: configuration rejected: {e}", cfg.iface))?;
        Ok(Self {
            cfg,
            not_before_wall,
            synced: false,
            status: RoamStatus {
                config_error: None,
                clock_ok: false,
                tunnel_present: false,
                tunnel_up: false,
                down_since_wall: None,
                endpoint: None,
                kernel_endpoint: None,
                last_handshake: None,
                rx: 0,
                tx: 0,
                gateway_v4: None,
                gateway_v6: None,
                delegation: Delegation::Unknown,
                delegation_changed: None,
                delegation_problem: None,
                downstream: Vec::new(),
                lan_mtu: None,
                last_reaction: None,
                reactions: 0,
                handshakes_forced: 0,
                heartbeats: 0,
                health: None,
            },
            start_ms: None,
            last_ms: 0,
            ifindex: None,
            present: false,
            absent_since: None,
            last_rx_ms: None,
            unanswered_since: None,
            last_heartbeat_ms: None,
            next_stall_ms: None,
            stalls: 0,
            last_forced_ms: None,
            links: BTreeMap::new(),
            addrs: BTreeMap::new(),
            gw4: None,
            gw6: None,
            pin_gw: None,
            pending: None,
            resolved: BTreeMap::new(),
            candidate: 0,
            routes: None,
            inflight: InFlight::new(ROUTE_RETRY_MS),
            next_health_ms: None,
            want: Delegation::Unknown,
            deleg_gen: 0,
            deleg_since_ms: 0,
            next_deleg_look_ms: None,
            deleg_retry_ms: 0,
            deleg_retry_gap_ms: 0,
            deleg_report: None,
            deleg_error: None,
            problem_cand: None,
            problem_cand_since: 0,
            deleg_watch: BTreeSet::new(),
            logged: BTreeMap::new(),
        })
    }

    /// What `status` shows.
    pub fn status(&self) -> &RoamStatus {
        &self.status
    }

    /// NTP has been seen to set the clock ([`RoamEvent::ClockSynced`]).
    pub fn ntp_synced(&self) -> bool {
        self.synced
    }

    /// The configuration in force (the last good one).
    pub fn config(&self) -> &RoamConfig {
        &self.cfg
    }

    /// The delegation adapter changed (configuration reload): look at the
    /// delegation soon and ask again at once if it is not held.
    pub fn look_soon(&mut self, now: Now) {
        if self.want != Delegation::Unknown {
            self.next_deleg_look_ms = Some(now.mono_ms + DELEG_FIRST_LOOK_MS);
            self.deleg_retry_ms = now.mono_ms;
            self.deleg_retry_gap_ms = 1_000;
            if let Delegation::Delegated(p) = self.status.delegation {
                self.status.delegation = Delegation::Pending(p);
                self.deleg_since_ms = now.mono_ms;
            }
        }
    }

    /// The routes the core wants right now (for `status` and tests).
    pub fn desired_routes(&self) -> Vec<Route> {
        let mut v = Vec::new();
        let Some(oif) = self.ifindex.filter(|_| self.present) else {
            return v;
        };
        let c = &self.cfg;
        let into_tunnel = |src: IpNet| Route {
            table: c.table,
            dst: IpNet::default_route(true),
            src: Some(src),
            gateway: None,
            oif: Some(oif),
            metric: c.metric,
            proto: ROUTE_PROTO,
        };
        if matches!(self.want, Delegation::Withdrawn(_)) && c.prefix.is_some() {
            // Withdrawn: no ::/0 into the tunnel at all, or odhcpd keeps
            // announcing this router as a default router. Heartbeats to the
            // hub still need a way into the tunnel.
            if let (Some(IpAddr::V6(h)), Some(_)) = (c.hub_tunnel_addr, c.tunnel_addr) {
                v.push(Route {
                    table: c.table,
                    dst: IpNet::host(IpAddr::V6(h)),
                    src: None,
                    gateway: None,
                    oif: Some(oif),
                    metric: c.metric,
                    proto: ROUTE_PROTO,
                });
            }
        } else {
            if let Some(p) = c.prefix {
                v.push(into_tunnel(p));
            }
            if let Some(t) = c.tunnel_addr {
                let t = IpNet::host(IpAddr::V6(t));
                if !c.prefix.is_some_and(|p| p.contains_net(&t)) {
                    v.push(into_tunnel(t));
                }
            }
        }
        if let Some(pin) = self.pin_route() {
            v.push(pin);
        }
        v
    }

    /// The monotonic time by which `Tick` must be handled.
    pub fn poll_at(&self) -> Option<u64> {
        let c = &self.cfg;
        let iv = c.interval_ms();
        let mut at: Vec<u64> = Vec::new();
        if let Some(p) = &self.pending {
            at.push(
                (p.last_ms + c.debounce_ms).min(p.first_ms + c.debounce_ms * DEBOUNCE_CAP_FACTOR),
            );
        }
        if self.present && c.hub_tunnel_addr.is_some() {
            let quiet = self.last_rx_ms.map_or(0, |t| t + iv);
            let due = self.last_heartbeat_ms.map_or(0, |t| t + iv);
            at.push(quiet.max(due));
        }
        at.extend(self.next_stall_ms);
        if let Some(t) = self.unanswered_since {
            at.push(t + 2 * iv);
        }
        if let (Some(d), Some(_)) = (self.down_since_ms(u64::MAX), c.prefix)
            && !matches!(self.want, Delegation::Withdrawn(_))
        {
            at.push(d + c.grace_s * 1000);
        }
        if self.want != Delegation::Unknown {
            at.extend(self.next_deleg_look_ms);
            if matches!(self.status.delegation, Delegation::Pending(_))
                && self.status.delegation_problem.is_none()
            {
                at.push(self.deleg_since_ms + DELEG_PROBLEM_AFTER_MS);
            }
        }
        at.extend(self.next_health_ms);
        at.extend(self.inflight.poll_at());
        // Deadlines already handled whose condition did not hold are no
        // deadlines: never ask for a busy loop.
        at.into_iter().filter(|t| *t > self.last_ms).min()
    }

    /// Handles one event; returns what to do, in order.
    pub fn handle(&mut self, now: Now, event: RoamEvent) -> Vec<RoamAction> {
        let mut out = Vec::new();
        if self.start_ms.is_none() {
            self.start_ms = Some(now.mono_ms);
            self.schedule(now, "start", false);
            if let Some(s) = self.cfg.health_interval_s {
                self.next_health_ms = Some(now.mono_ms + s * 1000);
            }
        }
        self.last_ms = self.last_ms.max(now.mono_ms);
        self.update_clock(now, &mut out);
        match event {
            RoamEvent::Configured(cfg) => self.configured(now, cfg, &mut out),
            RoamEvent::Observed(snap) => self.observed(now, snap, &mut out),
            RoamEvent::RoutesObserved(routes) => self.routes_observed(now, routes),
            RoamEvent::Uplink(ev) => self.uplink(now, ev),
            RoamEvent::Resolved { host, addrs } => self.resolved(now, host, addrs, &mut out),
            RoamEvent::ResolveFailed { host, error } => {
                let known = self.resolved.get(&host).map_or(0, Vec::len);
                self.log_once(
                    &mut out,
                    "resolve",
                    Level::Warn,
                    format!(
                        "{}: cannot resolve hub '{host}': {error}; {}",
                        self.cfg.iface,
                        if known > 0 {
                            "keeping the last addresses"
                        } else {
                            "no address known yet"
                        }
                    ),
                );
            }
            RoamEvent::ClockSynced => {
                let news = !self.synced;
                self.synced = true;
                self.update_clock(now, &mut out);
                if news {
                    self.clock_synced(now, &mut out);
                }
            }
            RoamEvent::HealthResult { ok, detail } => self.health_result(now, ok, detail, &mut out),
            RoamEvent::DelegationObserved { seq, report } => {
                if seq == self.deleg_gen {
                    self.delegation_observed(now, report, &mut out);
                }
            }
            RoamEvent::DelegationFailed { seq, error } => {
                if seq == self.deleg_gen {
                    self.deleg_error = Some(error.clone());
                    if matches!(self.want, Delegation::Withdrawn(_)) {
                        self.set_problem(error, &mut out);
                    }
                }
            }
            RoamEvent::Tick => {}
        }
        self.step(now, &mut out);
        out
    }

    // -- events ------------------------------------------------------------

    fn configured(&mut self, now: Now, cfg: RoamConfig, out: &mut Vec<RoamAction>) {
        if let Err(e) = cfg.validate() {
            let msg = format!(
                "{}: configuration rejected: {e}; keeping the previous one",
                cfg.iface
            );
            log(out, Level::Error, msg);
            self.status.config_error = Some(e);
            return;
        }
        self.status.config_error = None;
        if cfg == self.cfg {
            return;
        }
        let peer_changed = cfg.iface != self.cfg.iface
            || cfg.hub_key != self.cfg.hub_key
            || cfg.endpoints != self.cfg.endpoints;
        if cfg.health_interval_s != self.cfg.health_interval_s {
            self.next_health_ms = cfg.health_interval_s.map(|s| now.mono_ms + s * 1000);
        }
        if cfg.iface != self.cfg.iface {
            self.present = false;
            self.ifindex = None;
        }
        self.cfg = cfg;
        log(
            out,
            Level::Info,
            format!("{}: configuration reloaded", self.cfg.iface),
        );
        if peer_changed {
            self.candidate = 0;
            self.schedule(now, "configuration changed", false);
        }
    }

    fn observed(&mut self, now: Now, snap: Option<TunnelSnapshot>, out: &mut Vec<RoamAction>) {
        let name = self.cfg.iface.clone();
        let Some(s) = snap else {
            self.log_once(
                out,
                "tunnel-missing",
                Level::Warn,
                format!("{name}: interface or hub peer missing; waiting"),
            );
            if self.present || self.absent_since.is_none() {
                self.absent_since = Some(now.mono_ms);
            }
            self.present = false;
            return;
        };
        self.logged.remove("tunnel-missing");
        if self.ifindex.is_some_and(|i| i != s.ifindex) {
            log(
                out,
                Level::Info,
                format!("{name}: interface re-created (index {})", s.ifindex),
            );
            self.inflight.clear();
            if self.want != Delegation::Unknown {
                self.next_deleg_look_ms = Some(now.mono_ms + DELEG_FIRST_LOOK_MS);
                self.deleg_retry_ms = now.mono_ms;
            }
        }
        if !self.present {
            // A baseline, not growth: the counters predate us. A live
            // session counts as evidence; heartbeats check it soon.
            if self.ifindex.is_some() {
                log(out, Level::Info, format!("{name}: interface is back"));
            }
            // Merges with the start reaction when that is still pending.
            self.schedule(now, "tunnel interface present", false);
            if self.want != Delegation::Unknown {
                // netifd may have dropped the carrier with the device.
                self.next_deleg_look_ms = Some(now.mono_ms + DELEG_FIRST_LOOK_MS);
                self.deleg_retry_ms = now.mono_ms;
                self.deleg_retry_gap_ms = 1_000;
            }
            self.last_rx_ms = s
                .last_handshake
                .is_some_and(|t| now.wall.saturating_sub(t) < SESSION_LIFETIME_S)
                .then_some(now.mono_ms);
            self.unanswered_since = None;
            self.next_stall_ms = None;
        } else {
            let grew = |new: u64, old: u64| if new < old { new > 0 } else { new > old };
            let rx = grew(s.rx, self.status.rx) || s.last_handshake > self.status.last_handshake;
            let tx = grew(s.tx, self.status.tx);
            if rx {
                if let Some(since) = self.down_since_ms(now.mono_ms) {
                    log(
                        out,
                        Level::Notice,
                        format!(
                            "{name}: hub answers again after {}s",
                            now.since_ms(since) / 1000
                        ),
                    );
                }
                self.last_rx_ms = Some(now.mono_ms);
                self.unanswered_since = None;
                self.next_stall_ms = None;
                self.stalls = 0;
            } else if tx {
                self.mark_sent(now);
            }
        }
        self.ifindex = Some(s.ifindex);
        self.present = true;
        self.absent_since = None;
        self.status.kernel_endpoint = s.endpoint;
        self.status.last_handshake = s.last_handshake;
        self.status.rx = s.rx;
        self.status.tx = s.tx;
    }

    fn routes_observed(&mut self, now: Now, routes: Vec<Route>) {
        let first = self.routes.is_none();
        let tunnel = self.ifindex;
        let gw4 = best_default(&routes, false, RT_TABLE_MAIN, tunnel);
        let gw6 = best_default(&routes, true, RT_TABLE_MAIN, tunnel);
        self.inflight.retain(|(add, r)| {
            let present = routes.iter().any(|o| o.same_as(r));
            present != *add
        });
        self.routes = Some(routes);
        if gw6.is_some() {
            self.pin_gw = gw6;
        }
        if !first && (gw4 != self.gw4 || gw6 != self.gw6) {
            let show = |g: Option<Gateway>| g.map_or("none".to_string(), |g| g.to_string());
            let why = format!(
                "gateway v4 {} -> {}, v6 {} -> {}",
                show(self.gw4),
                show(gw4),
                show(self.gw6),
                show(gw6)
            );
            self.gw4 = gw4;
            self.gw6 = gw6;
            self.schedule(now, &why, true);
        } else {
            self.gw4 = gw4;
            self.gw6 = gw6;
        }
        self.status.gateway_v4 = gw4;
        self.status.gateway_v6 = gw6;
    }

    fn uplink(&mut self, now: Now, ev: UplinkEvent) {
        if self.deleg_watch.contains(&ev.ifindex)
            && self.want != Delegation::Unknown
            && !matches!(ev.change, UplinkChange::RouteChanged | UplinkChange::Lost)
        {
            // A downstream's link or addresses changed (netifd took its
            // assignment away, or gave it back): look soon.
            let soon = now.mono_ms + DELEG_FIRST_LOOK_MS;
            self.next_deleg_look_ms = Some(self.next_deleg_look_ms.map_or(soon, |t| t.min(soon)));
        }
        if self.ifindex == Some(ev.ifindex) && ev.ifindex != 0 {
            // The tunnel device went down or up: netifd deletes the dynamic
            // interface on the way down; look now instead of at the next
            // periodic look, and ask again at once when it is gone.
            if matches!(
                ev.change,
                UplinkChange::LinkUp | UplinkChange::LinkDown | UplinkChange::LinkGone
            ) && self.want != Delegation::Unknown
            {
                self.next_deleg_look_ms = Some(now.mono_ms + DELEG_FIRST_LOOK_MS);
                self.deleg_retry_ms = now.mono_ms;
                self.deleg_retry_gap_ms = 1_000;
            }
            if ev.change == UplinkChange::LinkUp {
                // Route adds that failed while it was down ("Network is
                // down") are retried now, not after ROUTE_RETRY_MS.
                self.inflight
                    .retain(|(add, r)| !(*add && r.oif == Some(ev.ifindex)));
            }
            return;
        }
        let i = ev.ifindex;
        let significant = match &ev.change {
            UplinkChange::LinkUp | UplinkChange::LinkDown => {
                let up = ev.change == UplinkChange::LinkUp;
                let prev = self.links.insert(i, up);
                prev.is_some_and(|p| p != up) && self.is_uplink(i)
            }
            UplinkChange::LinkGone => {
                self.links.remove(&i);
                self.addrs.remove(&i);
                if self.pin_gw.is_some_and(|g| g.ifindex == i) {
                    self.pin_gw = None;
                }
                self.is_uplink(i)
            }
            UplinkChange::AddrAdded(a) => {
                !ignorable(*a) && self.addrs.entry(i).or_default().insert(*a) && self.is_uplink(i)
            }
            UplinkChange::AddrRemoved(a) => {
                if let Some(s) = self.addrs.get_mut(&i) {
                    s.remove(a);
                }
                !ignorable(*a) && self.is_uplink(i)
            }
            UplinkChange::RouteChanged => false,
            UplinkChange::Lost => true,
        };
        if significant {
            let why = match &ev.change {
                UplinkChange::LinkUp => format!("link #{i} up"),
                UplinkChange::LinkDown => format!("link #{i} down"),
                UplinkChange::LinkGone => format!("link #{i} gone"),
                UplinkChange::AddrAdded(a) => format!("address {a} added on #{i}"),
                UplinkChange::AddrRemoved(a) => format!("address {a} removed from #{i}"),
                UplinkChange::RouteChanged => "routes changed".to_string(),
                UplinkChange::Lost => "netlink events lost".to_string(),
            };
            self.schedule(now, &why, true);
        }
    }

    fn resolved(&mut self, now: Now, host: String, addrs: Vec<IpAddr>, out: &mut Vec<RoamAction>) {
        if addrs.is_empty() {
            let msg = format!("{}: hub '{host}' resolved to no address", self.cfg.iface);
            return self.log_once(out, "resolve", Level::Warn, msg);
        }
        self.logged.remove("resolve");
        let before = self.chosen();
        if self.resolved.get(&host) != Some(&addrs) {
            let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
            log(
                out,
                Level::Info,
                format!("{}: hub '{host}' is {}", self.cfg.iface, list.join(", ")),
            );
            self.resolved.insert(host, addrs);
        }
        let after = self.chosen();
        if after != before
            && let Some(ep) = after
            && self.pending.is_none()
            && self.present
        {
            // The reaction went out before the name was known: finish it.
            self.set_endpoint(ep, out);
            let how = if self.down_since_ms(now.mono_ms).is_some() {
                self.force_handshake(now, out)
            } else {
                self.heartbeat(now, out);
                "probe sent"
            };
            log(
                out,
                Level::Notice,
                format!("{}: hub endpoint now {ep}; {how}", self.cfg.iface),
            );
        }
    }

    /// NTP just set the clock. A router without RTC boots with its clock
    /// behind: the hub drops its initiations (TAI64N not newer than the last
    /// it accepted) until now, and WireGuard retries only every 5 s. A dead
    /// tunnel gets a fresh initiation at once, even right after a forced one
    /// (that one carried the old clock).
    fn clock_synced(&mut self, now: Now, out: &mut Vec<RoamAction>) {
        if !self.present || self.down_since_ms(now.mono_ms).is_none() {
            return;
        }
        let Some(ep) = self.chosen() else {
            return;
        };
        self.last_forced_ms = None;
        self.rehandshake(now, ep, "clock set by NTP while the tunnel is down", out);
    }

    /// Sets the endpoint again (WireGuard forgets its cached source address)
    /// and forces a handshake; logs why and what was done.
    fn rehandshake(&mut self, now: Now, ep: SocketAddr, why: &str, out: &mut Vec<RoamAction>) {
        self.set_endpoint(ep, out);
        let how = self.force_handshake(now, out);
        log(
            out,
            Level::Notice,
            format!("{}: {why}; endpoint {ep}; {how}", self.cfg.iface),
        );
    }

    fn health_result(&mut self, now: Now, ok: bool, detail: String, out: &mut Vec<RoamAction>) {
        let changed = self.status.health.as_ref().is_none_or(|h| h.ok != ok);
        if changed {
            let (level, word) = if ok {
                (Level::Info, "passed")
            } else {
                (Level::Warn, "failed")
            };
            log(
                out,
                level,
                format!("{}: health check {word}: {detail}", self.cfg.iface),
            );
        }
        self.status.health = Some(Health {
            ok,
            detail,
            at_wall: now.wall,
        });
    }

    // -- timers and reconciliation ----------------------------------------

    fn step(&mut self, now: Now, out: &mut Vec<RoamAction>) {
        if let Some(p) = &self.pending {
            let d = self.cfg.debounce_ms;
            if now.mono_ms >= p.last_ms + d || now.mono_ms >= p.first_ms + d * DEBOUNCE_CAP_FACTOR {
                let p = self.pending.take().expect("checked");
                self.react(now, p, out);
            }
        }
        self.liveness(now, out);
        // Routes go before the delegation command of the same step: on a
        // withdrawal the ::/0 routes must be gone before netifd/odhcpd send
        // the goodbye RA (its router lifetime counts them), on a restore
        // they must be there when clients get the prefix.
        let mut deleg = Vec::new();
        self.delegation(now, &mut deleg);
        if let Some(t) = self.next_health_ms
            && now.mono_ms >= t
        {
            out.push(RoamAction::HealthCheck);
            self.next_health_ms = self.cfg.health_interval_s.map(|s| now.mono_ms + s * 1000);
        }
        self.reconcile_routes(now, out);
        out.extend(deleg);
        self.status.endpoint = self.chosen();
        self.status.tunnel_present = self.present;
        let down = self.down_since_ms(now.mono_ms);
        self.status.tunnel_up = down.is_none();
        self.status.down_since_wall = down.map(|d| now.wall.saturating_sub(now.since_ms(d) / 1000));
    }

    fn schedule(&mut self, now: Now, why: &str, force: bool) {
        match &mut self.pending {
            Some(p) => {
                p.last_ms = now.mono_ms;
                p.force |= force;
            }
            None => {
                self.pending = Some(Pending {
                    first_ms: now.mono_ms,
                    last_ms: now.mono_ms,
                    why: why.to_string(),
                    force,
                });
            }
        }
    }

    fn react(&mut self, now: Now, p: Pending, out: &mut Vec<RoamAction>) {
        let name = self.cfg.iface.clone();
        if self.routes.is_some() && self.gw4.is_none() && self.gw6.is_none() {
            self.log_once(
                out,
                "no-uplink",
                Level::Info,
                format!("{name}: uplink has no default route; waiting ({})", p.why),
            );
            return;
        }
        self.logged.remove("no-uplink");
        if !self.present {
            // Nothing to set; the interface coming back schedules again.
            return;
        }
        self.candidate = 0;
        for host in self.cfg.hosts() {
            out.push(RoamAction::Resolve { host });
        }
        let ep = self.chosen();
        match ep {
            Some(ep) => self.set_endpoint(ep, out),
            None => log(
                out,
                Level::Info,
                format!("{name}: hub address not resolved yet"),
            ),
        }
        // At start a live tunnel needs no fresh handshake, a dead one does.
        let force = p.force || self.down_since_ms(now.mono_ms).is_some();
        let how = if force && ep.is_some() {
            self.force_handshake(now, out)
        } else {
            self.heartbeat(now, out);
            "probe sent"
        };
        self.status.reactions += 1;
        let what = format!(
            "{}; endpoint {}; {how}",
            p.why,
            ep.map_or("unresolved".to_string(), |e| e.to_string())
        );
        log(
            out,
            Level::Notice,
            format!("{name}: uplink reaction: {what}"),
        );
        self.status.last_reaction = Some(Stamped {
            at_wall: now.wall,
            what,
        });
    }

    fn liveness(&mut self, now: Now, out: &mut Vec<RoamAction>) {
        if !self.present {
            return;
        }
        let iv = self.cfg.interval_ms();
        let quiet = self.last_rx_ms.is_none_or(|t| now.since_ms(t) >= iv);
        let due = self.last_heartbeat_ms.is_none_or(|t| now.since_ms(t) >= iv);
        if quiet && due && self.cfg.hub_tunnel_addr.is_some() {
            self.heartbeat(now, out);
        }
        if let Some(t) = self.next_stall_ms
            && now.mono_ms >= t
        {
            self.stalls += 1;
            let backoff = (2 * iv)
                .saturating_mul(1 << self.stalls.min(16))
                .min(MAX_STALL_BACKOFF_MS);
            self.next_stall_ms = Some(now.mono_ms + backoff);
            let silent = self.unanswered_since.map_or(0, |s| now.since_ms(s) / 1000);
            let n = self.candidates().len();
            if n > 1 {
                self.candidate = (self.candidate + 1) % n;
            }
            for host in self.cfg.hosts() {
                out.push(RoamAction::Resolve { host });
            }
            let Some(ep) = self.chosen() else {
                return;
            };
            let why = format!("no answer from the hub for {silent}s");
            self.rehandshake(now, ep, &why, out);
        }
    }

    fn delegation(&mut self, now: Now, out: &mut Vec<RoamAction>) {
        let name = self.cfg.iface.clone();
        let applied = self.want;
        let Some(prefix) = self.cfg.prefix else {
            if let Delegation::Delegated(old) = applied {
                self.command(now, Delegation::Withdrawn(old), "no prefix configured", out);
            }
            self.deleg_looks(now, out);
            return;
        };
        if let Delegation::Delegated(old) = applied
            && old != prefix
        {
            self.command(now, Delegation::Withdrawn(old), "prefix changed", out);
        }
        let applied = self.want;
        match self.down_since_ms(now.mono_ms) {
            None => {
                if applied != Delegation::Delegated(prefix) {
                    let why = format!("{name}: tunnel up");
                    self.command(now, Delegation::Delegated(prefix), &why, out);
                }
            }
            Some(since) => {
                let down_ms = now.since_ms(since);
                if down_ms >= self.cfg.grace_s * 1000
                    && !matches!(applied, Delegation::Withdrawn(_))
                {
                    let why = format!("{name}: tunnel down for {}s", down_ms / 1000);
                    self.command(now, Delegation::Withdrawn(prefix), &why, out);
                }
            }
        }
        self.deleg_looks(now, out);
    }

    /// Looks at the delegation when due; a `problem` once it stayed
    /// unconfirmed for [`DELEG_PROBLEM_AFTER_MS`].
    fn deleg_looks(&mut self, now: Now, out: &mut Vec<RoamAction>) {
        let Some(prefix) = self.want.prefix() else {
            return;
        };
        if matches!(self.status.delegation, Delegation::Pending(_)) {
            self.track_problem(now, out);
        }
        if self.next_deleg_look_ms.is_some_and(|t| now.mono_ms >= t) {
            out.push(RoamAction::ObserveDelegation {
                prefix,
                seq: self.deleg_gen,
                held: matches!(self.want, Delegation::Delegated(_)),
            });
            let gap = match self.status.delegation {
                Delegation::Pending(_) => DELEG_PENDING_LOOK_MS,
                Delegation::Delegated(_) => DELEG_HELD_LOOK_MS,
                Delegation::Withdrawn(_)
                    if now.since_ms(self.deleg_since_ms) < DELEG_WITHDRAWN_BUSY_MS =>
                {
                    DELEG_WITHDRAWN_LOOK_MS
                }
                _ => DELEG_WITHDRAWN_IDLE_LOOK_MS,
            };
            self.next_deleg_look_ms = Some(now.mono_ms + gap);
        }
    }

    /// While pending: a blocker is shown once the delegation has been
    /// pending for [`DELEG_PROBLEM_AFTER_MS`] *and* that same blocker has
    /// lasted as long (netifd, then odhcpd ~1 s later, pass through
    /// transient states a user must not be told to fix).
    fn track_problem(&mut self, now: Now, out: &mut Vec<RoamAction>) {
        let Some(text) = self.derive_problem() else {
            return;
        };
        if self.problem_cand.as_ref() != Some(&text) {
            self.problem_cand = Some(text.clone());
            self.problem_cand_since = now.mono_ms;
        }
        if now.since_ms(self.deleg_since_ms) >= DELEG_PROBLEM_AFTER_MS
            && now.since_ms(self.problem_cand_since) >= DELEG_PROBLEM_AFTER_MS
        {
            self.set_problem(text, out);
        }
    }

    /// Shows `problem` in `status`; logged once when it appears or changes.
    fn set_problem(&mut self, problem: String, out: &mut Vec<RoamAction>) {
        if self.status.delegation_problem.as_ref() != Some(&problem) {
            log(
                out,
                Level::Warn,
                format!("{}: delegation problem: {problem}", self.cfg.iface),
            );
            self.status.delegation_problem = Some(problem);
        }
    }

    /// What blocks the delegation, from the latest look and command.
    fn derive_problem(&self) -> Option<String> {
        let prefix = self.want.prefix()?;
        let report = self.deleg_report.as_ref();
        let problem = report
            .and_then(|r| r.problem.clone())
            .or_else(|| self.deleg_error.clone())
            .or_else(|| {
                let r = report?;
                if r.carried != Some(prefix) {
                    return Some(format!(
                        "the tunnel interface does not hold {prefix} (is {} up?)",
                        self.cfg.iface
                    ));
                }
                let missing: Vec<&str> = r
                    .downstream
                    .iter()
                    .filter(|d| !d.assigned.is_some_and(|a| prefix.contains_net(&a)))
                    .map(|d| d.name.as_str())
                    .collect();
                if !missing.is_empty() {
                    return Some(format!(
                        "{} got no assignment from {prefix}; check ip6assign and ip6class there",
                        missing.join(", ")
                    ));
                }
                let silent: Vec<String> = r
                    .downstream
                    .iter()
                    .filter(|d| d.announced == Some(false))
                    .map(|d| d.device.clone().unwrap_or_else(|| d.name.clone()))
                    .collect();
                (!silent.is_empty()).then(|| {
                    format!(
                        "odhcpd is not announcing {prefix} on {} — /etc/init.d/odhcpd reload",
                        silent.join(", ")
                    )
                })
            })
            .unwrap_or_else(|| {
                format!(
                    "{prefix} not confirmed after {}s (no answer yet)",
                    DELEG_PROBLEM_AFTER_MS / 1000
                )
            });
        Some(problem)
    }

    fn clear_problem(&mut self, out: &mut Vec<RoamAction>) {
        self.problem_cand = None;
        if self.status.delegation_problem.take().is_some() {
            log(
                out,
                Level::Notice,
                format!("{}: delegation problem resolved", self.cfg.iface),
            );
        }
    }

    /// Issues a delegate/withdraw command (a new generation).
    fn command(&mut self, now: Now, to: Delegation, why: &str, out: &mut Vec<RoamAction>) {
        let what = match to {
            Delegation::Delegated(p) => format!("{why}; delegating {p} to the LAN"),
            Delegation::Withdrawn(p) => format!("{why}; withdrawing {p} from the LAN"),
            Delegation::Unknown | Delegation::Pending(_) => return,
        };
        log(out, Level::Notice, what.clone());
        self.want = to;
        self.status.delegation_changed = Some(Stamped {
            at_wall: now.wall,
            what,
        });
        self.deleg_retry_gap_ms = 1_000;
        self.issue(now, out, false);
    }

    /// Sends the current command (a new generation). A `retry` of the same
    /// attempt keeps its problem and the problem's clock.
    fn issue(&mut self, now: Now, out: &mut Vec<RoamAction>, retry: bool) {
        self.deleg_gen += 1;
        let seq = self.deleg_gen;
        if !retry {
            self.deleg_since_ms = now.mono_ms;
            self.deleg_report = None;
            self.deleg_error = None;
            self.clear_problem(out);
        }
        self.next_deleg_look_ms = Some(now.mono_ms + DELEG_FIRST_LOOK_MS);
        self.deleg_retry_ms = now.mono_ms + self.deleg_retry_gap_ms;
        self.deleg_retry_gap_ms = (self.deleg_retry_gap_ms * 2).min(DELEG_MAX_RETRY_MS);
        match self.want {
            Delegation::Delegated(prefix) => {
                self.status.delegation = Delegation::Pending(prefix);
                out.push(RoamAction::Delegate { prefix, seq });
            }
            Delegation::Withdrawn(prefix) => {
                self.status.delegation = Delegation::Withdrawn(prefix);
                out.push(RoamAction::Withdraw { prefix, seq });
            }
            _ => {}
        }
    }

    /// Deletes the deprecated addresses netifd left inside `p` on the
    /// downstreams `which` selects (only deprecated ones: deleting one
    /// before netifd deprecated it is undone by netifd).
    fn drop_deprecated(
        &self,
        p: IpNet,
        r: &DelegationReport,
        which: impl Fn(&DownstreamReport) -> bool,
        out: &mut Vec<RoamAction>,
    ) {
        for d in r.downstream.iter().filter(|d| which(d)) {
            let Some(dev) = &d.device else { continue };
            for (a, len) in &d.deprecated {
                if p.contains(IpAddr::V6(*a)) {
                    log(
                        out,
                        Level::Info,
                        format!(
                            "{}: removing deprecated {a}/{len} from {dev} (inside {p}, no longer delegated)",
                            self.cfg.iface
                        ),
                    );
                    out.push(RoamAction::RemoveAddress {
                        device: dev.clone(),
                        addr: *a,
                        len: *len,
                    });
                }
            }
        }
    }

    fn delegation_observed(&mut self, now: Now, r: DelegationReport, out: &mut Vec<RoamAction>) {
        let name = self.cfg.iface.clone();
        self.status.downstream = r
            .downstream
            .iter()
            .map(|d| (d.name.clone(), d.assigned))
            .collect();
        self.status.lan_mtu = r.downstream.first().and_then(|d| d.mtu6);
        self.deleg_watch = r.downstream.iter().filter_map(|d| d.ifindex).collect();
        match self.want {
            Delegation::Delegated(p) => {
                let confirmed = r.carried == Some(p)
                    && r.problem.is_none()
                    && r.downstream.iter().all(|d| {
                        d.assigned.is_some_and(|a| p.contains_net(&a)) && d.announced != Some(false)
                    });
                if r.carried.is_none() {
                    // netifd dropped it by itself (device gone): lan's
                    // address is left deprecated; clean it now, not only at
                    // the withdrawal (odhcpd would name it as DNS server).
                    self.drop_deprecated(p, &r, |d| d.assigned.is_none(), out);
                }
                // The LAN's IPv6 MTU is what odhcpd announces. netifd copies
                // the tunnel's when it assigns the prefix, but may set the
                // link's again when it (re)sets the LAN device up.
                for d in &r.downstream {
                    let (Some(dev), Some(m6), Some(link), Some(tun)) =
                        (&d.device, d.mtu6, d.link_mtu, r.tunnel_mtu)
                    else {
                        continue;
                    };
                    let want = if self.cfg.announce_mtu && m6 > tun {
                        Some(tun)
                    } else if !self.cfg.announce_mtu && m6 == tun && m6 < link {
                        Some(link)
                    } else {
                        None
                    };
                    if let Some(mtu) = want {
                        log(
                            out,
                            Level::Info,
                            format!(
                                "{name}: {dev}: IPv6 MTU {m6} -> {mtu} ({})",
                                if self.cfg.announce_mtu {
                                    "the tunnel's, announce_mtu is on"
                                } else {
                                    "the link's, announce_mtu is off"
                                }
                            ),
                        );
                        out.push(RoamAction::SetIpv6Mtu {
                            device: dev.clone(),
                            mtu,
                        });
                    }
                }
                let was = self.status.delegation;
                if r.carried == Some(p) {
                    // The command evidently went through after all (netifd
                    // back): its old error is no longer the problem.
                    self.deleg_error = None;
                }
                self.deleg_report = Some(r.clone());
                if confirmed {
                    self.clear_problem(out);
                    self.deleg_retry_gap_ms = 1_000;
                    if was != Delegation::Delegated(p) {
                        let lans: Vec<String> = r
                            .downstream
                            .iter()
                            .map(|d| {
                                format!(
                                    "{} {}",
                                    d.name,
                                    d.assigned.map_or("-".into(), |a| a.to_string())
                                )
                            })
                            .collect();
                        log(
                            out,
                            Level::Notice,
                            format!("{name}: {p} delegated (confirmed: {})", lans.join(", ")),
                        );
                        self.status.delegation = Delegation::Delegated(p);
                        self.next_deleg_look_ms = Some(now.mono_ms + DELEG_HELD_LOOK_MS);
                    }
                    return;
                }
                if r.carried != Some(p) && !self.present {
                    // The device is gone: adding now would only make netifd
                    // wait for it; the device's return looks again.
                    if was == Delegation::Delegated(p) {
                        self.status.delegation = Delegation::Pending(p);
                        self.deleg_since_ms = now.mono_ms;
                    }
                } else if r.carried != Some(p) {
                    if was == Delegation::Delegated(p) {
                        log(
                            out,
                            Level::Notice,
                            format!(
                                "{name}: {p} no longer held (netifd dropped it); delegating again"
                            ),
                        );
                        self.deleg_retry_gap_ms = 1_000;
                        self.issue(now, out, false);
                        return;
                    }
                    if now.mono_ms >= self.deleg_retry_ms {
                        log(
                            out,
                            Level::Info,
                            format!("{name}: {p} still not held; asking again"),
                        );
                        self.deleg_report = Some(r);
                        self.issue(now, out, true);
                        return;
                    }
                }
                if was == Delegation::Delegated(p) {
                    // Held, but a downstream lost its assignment (or odhcpd
                    // went away): pending again, the problem follows.
                    self.status.delegation = Delegation::Pending(p);
                    self.deleg_since_ms = now.mono_ms;
                    self.next_deleg_look_ms = Some(now.mono_ms + DELEG_PENDING_LOOK_MS);
                }
                self.track_problem(now, out);
            }
            Delegation::Withdrawn(p) => {
                self.drop_deprecated(p, &r, |_| true, out);
                if r.carried == Some(p) && now.mono_ms >= self.deleg_retry_ms {
                    log(
                        out,
                        Level::Info,
                        format!("{name}: {p} still held after the withdrawal; asking again"),
                    );
                    self.deleg_report = Some(r);
                    self.issue(now, out, true);
                    return;
                }
                self.deleg_report = Some(r);
            }
            _ => {}
        }
    }

    fn reconcile_routes(&mut self, now: Now, out: &mut Vec<RoamAction>) {
        let Some(observed) = &self.routes else {
            return;
        };
        if !self.present {
            // The kernel drops a vanished interface's routes itself; a
            // failed read must not make us delete working ones.
            return;
        }
        let desired = self.desired_routes();
        let table = self.cfg.table;
        let mut dels: Vec<Route> = observed
            .iter()
            .filter(|r| r.is_ours() && r.table == table)
            .filter(|r| !desired.iter().any(|d| d.same_as(r)))
            .cloned()
            .collect();
        dels.dedup();
        let adds: Vec<Route> = desired
            .into_iter()
            .filter(|d| !observed.iter().any(|r| r.same_as(d)))
            .collect();
        for r in dels {
            self.route_action(now, false, r, out);
        }
        for r in adds {
            self.route_action(now, true, r, out);
        }
    }

    fn route_action(&mut self, now: Now, add: bool, r: Route, out: &mut Vec<RoamAction>) {
        let Some(attempt) = self.inflight.send(now.mono_ms, (add, r.clone())) else {
            return;
        };
        let retry = attempt.is_retry();
        self.inflight.settle(&(!add, r.clone()));
        let verb = if add { "adding" } else { "removing" };
        let (level, note) = if retry {
            (Level::Warn, " (not applied yet; retrying)")
        } else {
            (Level::Info, "")
        };
        log(
            out,
            level,
            format!("{}: {verb} route {r}{note}", self.cfg.iface),
        );
        out.push(if add {
            RoamAction::AddRoute(r)
        } else {
            RoamAction::DelRoute(r)
        });
    }

    // -- helpers -----------------------------------------------------------

    fn update_clock(&mut self, now: Now, out: &mut Vec<RoamAction>) {
        let ok = self.synced || now.wall >= self.not_before_wall;
        if ok && !self.status.clock_ok {
            self.logged.remove("clock");
            if self.start_ms.is_some_and(|s| s != now.mono_ms) {
                log(
                    out,
                    Level::Info,
                    format!("{}: clock trusted now", self.cfg.iface),
                );
            }
        }
        self.status.clock_ok = ok;
    }

    /// Monotonic ms since which the tunnel counts as down, if it does.
    fn down_since_ms(&self, now_ms: u64) -> Option<u64> {
        if !self.present {
            return self.absent_since.or(self.start_ms);
        }
        if self.last_rx_ms.is_none() {
            return self.start_ms;
        }
        let t = self.unanswered_since?;
        (now_ms.saturating_sub(t) >= 2 * self.cfg.interval_ms()).then_some(t)
    }

    fn is_uplink(&self, ifindex: u32) -> bool {
        if self.routes.is_none() {
            return true;
        }
        [self.gw4, self.gw6, self.pin_gw]
            .iter()
            .flatten()
            .any(|g| g.ifindex == ifindex)
    }

    fn mark_sent(&mut self, now: Now) {
        if self.unanswered_since.is_none() {
            self.unanswered_since = Some(now.mono_ms);
            self.next_stall_ms = Some(now.mono_ms + 2 * self.cfg.interval_ms());
        }
    }

    fn heartbeat(&mut self, now: Now, out: &mut Vec<RoamAction>) {
        let Some(to) = self.cfg.hub_tunnel_addr else {
            return;
        };
        out.push(RoamAction::SendHeartbeat {
            iface: self.cfg.iface.clone(),
            to,
        });
        self.status.heartbeats += 1;
        self.last_heartbeat_ms = Some(now.mono_ms);
        self.mark_sent(now);
    }

    /// Forces a handshake when allowed, else sends a probe; says which.
    fn force_handshake(&mut self, now: Now, out: &mut Vec<RoamAction>) -> &'static str {
        if !self.status.clock_ok {
            self.log_once(
                out,
                "clock",
                Level::Warn,
                format!(
                    "{}: clock not trusted yet (wall {} is before {}); not forcing handshakes",
                    self.cfg.iface, now.wall, self.not_before_wall
                ),
            );
            self.heartbeat(now, out);
            return "probe sent (clock not trusted)";
        }
        if self
            .last_forced_ms
            .is_some_and(|t| now.since_ms(t) < MIN_HANDSHAKE_GAP_MS)
        {
            self.heartbeat(now, out);
            return "probe sent (handshake forced moments ago)";
        }
        out.push(RoamAction::Handshake {
            iface: self.cfg.iface.clone(),
            key: self.cfg.hub_key,
            probe: self.cfg.hub_tunnel_addr,
        });
        self.last_forced_ms = Some(now.mono_ms);
        self.last_heartbeat_ms = Some(now.mono_ms);
        self.status.handshakes_forced += 1;
        self.mark_sent(now);
        "handshake forced"
    }

    fn set_endpoint(&mut self, endpoint: SocketAddr, out: &mut Vec<RoamAction>) {
        out.push(RoamAction::SetEndpoint {
            iface: self.cfg.iface.clone(),
            key: self.cfg.hub_key,
            endpoint,
        });
    }

    /// The hub's addresses, the uplink's family first when it has only one.
    fn candidates(&self) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = Vec::new();
        for e in &self.cfg.endpoints {
            match e {
                HubEndpoint::Addr(a) => v.push(*a),
                HubEndpoint::Host { host, port } => v.extend(
                    self.resolved
                        .get(host)
                        .into_iter()
                        .flatten()
                        .map(|ip| SocketAddr::new(*ip, *port)),
                ),
            }
        }
        let mut seen = BTreeSet::new();
        v.retain(|a| seen.insert(*a));
        if self.routes.is_some() {
            match (self.gw4.is_some(), self.gw6.is_some()) {
                (true, false) => v.sort_by_key(|a| a.is_ipv6()),
                (false, true) => v.sort_by_key(|a| a.is_ipv4()),
                _ => {}
            }
        }
        v
    }

    fn chosen(&self) -> Option<SocketAddr> {
        let v = self.candidates();
        (!v.is_empty()).then(|| v[self.candidate % v.len()])
    }

    fn pin_route(&self) -> Option<Route> {
        let ep = self.chosen()?;
        if !ep.is_ipv6() {
            return None;
        }
        let c = &self.cfg;
        let tunnel_default = c.prefix.is_some()
            || c.tunnel_addr.is_some()
            || self.routes.iter().flatten().any(|r| {
                r.dst.is_default() && r.dst.is_ipv6() && r.oif.is_some() && r.oif == self.ifindex
            });
        if !tunnel_default {
            return None;
        }
        let gw = self.gw6.or(self.pin_gw)?;
        Some(Route {
            table: c.table,
            dst: IpNet::host(ep.ip()),
            src: None,
            gateway: gw.via,
            oif: Some(gw.ifindex),
            metric: c.metric,
            proto: ROUTE_PROTO,
        })
    }

    fn log_once(
        &mut self,
        out: &mut Vec<RoamAction>,
        topic: &'static str,
        level: Level,
        msg: String,
    ) {
        if self.logged.get(topic) != Some(&msg) {
            self.logged.insert(topic, msg.clone());
            log(out, level, msg);
        }
    }
}

/// Addresses whose coming and going says nothing about the uplink.
fn ignorable(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => a.is_loopback() || a.is_link_local() || a.is_multicast(),
        IpAddr::V6(a) => {
            a.is_loopback() || a.is_multicast() || (a.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests;
