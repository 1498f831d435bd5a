//! Adapter for the hub's routes, forwarding, relay policy and NDP proxy
//! ([`crate::core::relay`]): gathers the facts (device indices, the main
//! routing table over rtnetlink, sysctls from `/proc/sys`) and carries out
//! the core's actions (routes via [`Routing`], sysctl, nft and NDP through
//! [`RelayHost`]).
//!
//! The daemon calls [`HubRelay::seen`] with each interface's WireGuard view,
//! [`HubRelay::reconcile`] after each observation (it works only when
//! something changed — [`HubRelay::routes_changed`] on a route notification —
//! when one of the core's deadlines is due, or every
//! [`crate::core::relay::CHECK_MS`] to catch changes made by others; with
//! route and link events watched, [`HubRelay::links_watched`], that
//! re-check reuses the last route dump until an event says the table
//! changed), and [`HubRelay::stop`] on a clean stop. [`Fw4Sync`] keeps the fw4 relay's
//! firewall zone in uci `firewall` (checked on each reconciliation, written
//! only when the config asks for something else).

use std::collections::BTreeMap;
use std::io;
use std::process::{Command, Stdio};

use crate::config::Config;
use crate::core::net::{IpNet, RT_TABLE_MAIN};
use crate::core::relay::RelayEvent;
use crate::core::relay::{
    FW4_WAN_ZONE, FW4_ZONE, Facts, IfaceFacts, Relay, RelayAction, fw4_changes, fw4_desired,
    fw4_networks,
};
use crate::core::{Level, Now};
use crate::os::host::{RelayHost, SystemHost};
use crate::os::rtnl::{Routing, Rtnl};
use crate::os::syslog::emit;
use crate::os::uci::{UciCli, UciStore};

/// Environment variable naming the fw4 tool (tests use a recorder).
pub const FW4_BIN_ENV: &str = "WGROAM_FW4_BIN";
/// A failed fw4 sync is retried after this long.
pub const FW4_RETRY_MS: u64 = 30_000;

/// `fw4 reload` (or `$WGROAM_FW4_BIN reload`).
pub fn fw4_reload() -> io::Result<()> {
    let bin = std::env::var_os(FW4_BIN_ENV)
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "fw4".into());
    let out = Command::new(&bin)
        .arg("reload")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run fw4 reload: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let first = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    Err(io::Error::other(format!(
        "fw4 reload failed ({}): {first}",
        out.status
    )))
}

/// The uci store for `firewall` in `state_dir`: uci's real config directory,
/// a save directory of its own, so that a commit carries only wgroam's
/// changes, never somebody's uncommitted ones.
pub type OpenFirewall = Box<dyn FnMut(&Config) -> io::Result<Box<dyn UciStore>>>;

/// Keeps the fw4 relay's sections of uci `firewall` (zone `wgroam` and its
/// forwardings to and from `wan`, [`crate::core::relay::fw4_desired`]) what
/// the config asks for: written, committed and `fw4 reload`ed only when
/// they differ, so restarts write nothing; removed when no interface asks
/// for `fw4` any more. On a host without a `firewall` config and without
/// `fw4` interfaces it does nothing.
pub struct Fw4Sync {
    open: OpenFirewall,
    reload: Box<dyn FnMut() -> io::Result<()>>,
    /// The zone's networks as last brought into place.
    synced: Option<Vec<String>>,
    retry_at_ms: u64,
}

impl Fw4Sync {
    pub fn new(open: OpenFirewall, reload: Box<dyn FnMut() -> io::Result<()>>) -> Self {
        Self {
            open,
            reload,
            synced: None,
            retry_at_ms: 0,
        }
    }

    /// The real uci tool (`$WGROAM_UCI_BIN`) on /etc/config, and `fw4`.
    pub fn system() -> Self {
        Self::new(
            Box::new(|cfg: &Config| {
                let save = cfg.state_dir.join("uci-firewall");
                std::fs::create_dir_all(&save)?;
                Ok(Box::new(UciCli::from_env().with_dirs(None, Some(save))) as Box<dyn UciStore>)
            }),
            Box::new(fw4_reload),
        )
    }

    /// The networks of zone `wgroam` as last synced (`None`: not yet).
    pub fn networks(&self) -> Option<&[String]> {
        self.synced.as_deref()
    }

    /// Brings the firewall sections to what `cfg` asks for, if that changed
    /// since the last sync. Returns whether the firewall was changed.
    pub fn sync(&mut self, now_ms: u64, cfg: &Config) -> bool {
        let nets = fw4_networks(cfg.interfaces.iter().map(|i| (i.name.as_str(), &i.net)));
        if self.synced.as_ref() == Some(&nets) || now_ms < self.retry_at_ms {
            return false;
        }
        match self.apply(cfg, &nets) {
            Ok(changed) => {
                self.synced = Some(nets);
                changed
            }
            Err(e) if nets.is_empty() && self.synced.is_none() => {
                // No firewall config (not OpenWrt) and nothing asked for.
                emit(Level::Debug, &format!("fw4: nothing to check: {e}"));
                self.synced = Some(nets);
                false
            }
            Err(e) => {
                emit(
                    Level::Error,
                    &format!("fw4: cannot set up zone {FW4_ZONE}: {e}"),
                );
                self.retry_at_ms = now_ms + FW4_RETRY_MS;
                false
            }
        }
    }

    fn apply(&mut self, cfg: &Config, nets: &[String]) -> Result<bool, String> {
        let uci = (self.open)(cfg).map_err(|e| e.to_string())?;
        let current = uci.load("firewall").map_err(|e| e.to_string())?;
        let changes = fw4_changes(&fw4_desired(nets), &current);
        if changes.is_empty() {
            return Ok(false);
        }
        if !nets.is_empty()
            && !current
                .iter()
                .any(|s| s.stype == "zone" && s.get_single("name") == Some(FW4_WAN_ZONE))
        {
            emit(
                Level::Warn,
                &format!(
                    "fw4: no firewall zone '{FW4_WAN_ZONE}'; zone {FW4_ZONE}'s forwardings to and from it do nothing until it exists"
                ),
            );
        }
        uci.stage(&changes).map_err(|e| e.to_string())?;
        uci.commit("firewall").map_err(|e| e.to_string())?;
        (self.reload)().map_err(|e| e.to_string())?;
        let what = if nets.is_empty() {
            format!("zone {FW4_ZONE} and its forwardings removed")
        } else {
            format!(
                "zone {FW4_ZONE} with {} forwarding to and from {FW4_WAN_ZONE}",
                nets.join(", ")
            )
        };
        emit(
            Level::Notice,
            &format!(
                "fw4: {what} ({} uci changes committed, fw4 reloaded)",
                changes.len()
            ),
        );
        Ok(true)
    }
}

type OpenRouting = Box<dyn FnMut() -> io::Result<Box<dyn Routing>>>;

/// The relay of a running hub.
pub struct HubRelay {
    core: Relay,
    host: Box<dyn RelayHost>,
    routing: Option<Box<dyn Routing>>,
    open_routing: OpenRouting,
    /// This observation's WireGuard views: `Some` allowed IPs, or `None`
    /// for a missing device. Interfaces that could not be read are absent.
    seen: BTreeMap<String, Option<Vec<IpNet>>>,
    /// Last known allowed IPs per device (kept while it is missing).
    allowed: BTreeMap<String, Vec<IpNet>>,
    /// Last routing error logged, so a persistent one is logged once.
    routing_error: Option<String>,
    /// The fw4 relay (zone in uci `firewall`); `None` in tests without it.
    fw4: Option<Fw4Sync>,
    /// Route and link events are watched: every change of the routing
    /// table reaches [`HubRelay::routes_changed`] or
    /// [`HubRelay::links_changed`] (a link going down takes its IPv4 routes
    /// without a notification), so the last dump stays true until one.
    routes_watched: bool,
    /// The main table as last dumped, while `routes_watched`.
    last_routes: Option<Vec<crate::core::net::Route>>,
}

impl HubRelay {
    pub fn new(host: Box<dyn RelayHost>, open_routing: OpenRouting) -> Self {
        Self {
            core: Relay::new(),
            host,
            routing: None,
            open_routing,
            seen: BTreeMap::new(),
            allowed: BTreeMap::new(),
            routing_error: None,
            fw4: None,
            routes_watched: false,
            last_routes: None,
        }
    }

    /// The same with the fw4 relay kept by `fw4`.
    pub fn with_fw4(mut self, fw4: Fw4Sync) -> Self {
        self.fw4 = Some(fw4);
        self
    }

    /// The real thing: rtnetlink, `/proc/sys`, `nft`, AF_PACKET.
    pub fn system() -> Self {
        Self::new(
            Box::new(SystemHost::default()),
            Box::new(|| Rtnl::open().map(|r| Box::new(r) as Box<dyn Routing>)),
        )
        .with_fw4(Fw4Sync::system())
    }

    /// What the relay keeps in place, for `status --json`: the peer prefixes
    /// routed into each managed device, the nft table, the NDP targets per
    /// WAN and the sysctls this run changed.
    pub fn status_json(&self) -> serde_json::Value {
        let routes: serde_json::Map<String, serde_json::Value> = self
            .core
            .last_ifaces()
            .iter()
            .filter(|i| i.net.routes)
            .map(|i| {
                let p: Vec<String> = crate::core::relay::routed_prefixes(&i.allowed_ips)
                    .iter()
                    .map(|n| n.to_string())
                    .collect();
                (i.ifname.clone(), serde_json::json!(p))
            })
            .collect();
        let ndp: serde_json::Map<String, serde_json::Value> = self
            .core
            .ndp()
            .iter()
            .map(|(wan, t)| {
                let t: Vec<String> = t.iter().map(|n| n.to_string()).collect();
                (wan.clone(), serde_json::json!(t))
            })
            .collect();
        let sysctls: Vec<&str> = self.core.changed_sysctls().collect();
        serde_json::json!({
            "routes": routes,
            "nft_table": self.core.nft_applied(),
            "ndp_targets": ndp,
            "changed_sysctls": sysctls,
            "fw4_zone": self.fw4.as_ref().and_then(Fw4Sync::networks).filter(|n| !n.is_empty()).map(|n| serde_json::json!({"name": FW4_ZONE, "networks": n})),
        })
    }

    /// When the relay wants to reconcile by itself (a missing route's grace
    /// end, a retry, the periodic re-check).
    pub fn poll_at(&self) -> Option<u64> {
        self.core.poll_at()
    }

    /// A link appeared, went or changed: device indices are looked up
    /// again, and the routing table dumped again.
    pub fn links_changed(&mut self) {
        self.host.links_changed();
        self.last_routes = None;
    }

    /// Link and route events are watched ([`HubRelay::links_changed`] and
    /// [`HubRelay::routes_changed`] follow every change): device indices
    /// and the last route dump are kept until one. A quiet hub's periodic
    /// re-check then reads sysctls only, not the routing table.
    pub fn links_watched(&mut self) {
        self.host.links_watched();
        self.routes_watched = true;
    }

    /// A route was added or removed (rtnetlink notification): the next
    /// reconciliation dumps the routing table again.
    pub fn routes_changed(&mut self) {
        self.core.look_again();
        self.last_routes = None;
    }

    /// Records one interface's WireGuard view: its peers' allowed IPs, or
    /// `None` when the device does not exist.
    pub fn seen(&mut self, ifname: &str, allowed: Option<Vec<IpNet>>) {
        if let Some(a) = &allowed {
            self.allowed.insert(ifname.to_string(), a.clone());
        }
        self.seen.insert(ifname.to_string(), allowed);
    }

    fn iface_facts(&mut self, cfg: &Config) -> Vec<IfaceFacts> {
        let seen = std::mem::take(&mut self.seen);
        cfg.interfaces
            .iter()
            .map(|i| {
                let fresh = matches!(seen.get(&i.ifname), Some(Some(_)));
                IfaceFacts {
                    ifname: i.ifname.clone(),
                    net: i.net.clone(),
                    ifindex: self.host.ifindex(&i.ifname),
                    allowed_ips: self.allowed.get(&i.ifname).cloned().unwrap_or_default(),
                    fresh,
                }
            })
            .collect()
    }

    fn facts(&mut self, ifaces: Vec<IfaceFacts>) -> Facts {
        let routes = self.routes();
        let mut sysctl = BTreeMap::new();
        for key in self.core.sysctl_keys(&ifaces) {
            match self.host.read_sysctl(&key) {
                Ok(v) => {
                    sysctl.insert(key, v);
                }
                Err(e) => emit(Level::Warn, &format!("cannot read /proc/sys/{key}: {e}")),
            }
        }
        Facts {
            ifaces,
            routes,
            sysctl,
        }
    }

    fn routes(&mut self) -> Option<Vec<crate::core::net::Route>> {
        if let Some(r) = &self.last_routes {
            return Some(r.clone());
        }
        let result = match &mut self.routing {
            Some(r) => r.routes(RT_TABLE_MAIN),
            None => match (self.open_routing)() {
                Ok(r) => {
                    let r = self.routing.insert(r);
                    r.routes(RT_TABLE_MAIN)
                }
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(r) => {
                self.routing_error = None;
                if self.routes_watched {
                    self.last_routes = Some(r.clone());
                }
                Some(r)
            }
            Err(e) => {
                let msg = format!("routes: cannot read the main table: {e}");
                if self.routing_error.as_deref() != Some(&msg) {
                    emit(Level::Error, &msg);
                    self.routing_error = Some(msg);
                }
                // A broken socket is reopened next time.
                self.routing = None;
                None
            }
        }
    }

    /// Brings routes, sysctls, nft and NDP to what `cfg` and the last
    /// observation ask for, if anything changed or a re-check is due; says
    /// whether it changed anything (the status then shows it).
    pub fn reconcile(&mut self, now_ms: u64, cfg: &Config) -> bool {
        let now = Now::new(now_ms, 0);
        for wan in self.host.ndp_dead() {
            self.core.handle(
                now,
                RelayEvent::Failed(RelayAction::NdpTargets {
                    wan,
                    targets: Vec::new(),
                }),
            );
            self.core.look_again();
        }
        if let Some(f) = &mut self.fw4 {
            f.sync(now_ms, cfg);
        }
        let ifaces = self.iface_facts(cfg);
        if !self.core.due(now, &ifaces) {
            return false;
        }
        let facts = self.facts(ifaces);
        let actions = self.core.handle(now, RelayEvent::Observed(facts));
        let changed = !actions.is_empty();
        self.apply(now_ms, actions);
        changed
    }

    /// Removes our routes and nft table, stops the NDP proxy and restores
    /// the sysctls this agent changed.
    pub fn stop(&mut self, cfg: &Config) {
        self.last_routes = None;
        let ifaces = self.iface_facts(cfg);
        let facts = self.facts(ifaces);
        let actions = self.core.handle(Now::new(0, 0), RelayEvent::Stop(facts));
        self.apply(0, actions);
    }

    fn apply(&mut self, now_ms: u64, actions: Vec<RelayAction>) {
        for a in actions {
            if matches!(
                a,
                RelayAction::AddRoute { .. } | RelayAction::DelRoute { .. }
            ) {
                // Its notification follows; the next look is a fresh dump
                // in any case.
                self.last_routes = None;
            }
            let result = match &a {
                RelayAction::Log(l) => {
                    emit(l.level, &l.msg);
                    Ok(())
                }
                RelayAction::AddRoute { route, .. } => match &mut self.routing {
                    Some(r) => r.add_route(route),
                    None => Err(io::Error::other("no rtnetlink socket")),
                },
                RelayAction::DelRoute { route, .. } => match &mut self.routing {
                    Some(r) => r.del_route(route),
                    None => Err(io::Error::other("no rtnetlink socket")),
                },
                RelayAction::Sysctl { key, value } => self.host.write_sysctl(key, value),
                RelayAction::Nft { script } => self.host.nft(script),
                RelayAction::NdpTargets { wan, targets } => self.host.ndp(wan, targets),
            };
            if let Err(e) = result {
                let what = match &a {
                    RelayAction::AddRoute { ifname, route } => {
                        format!("{ifname}: cannot add route {}", route.dst)
                    }
                    RelayAction::DelRoute { ifname, route } => {
                        format!("{ifname}: cannot remove route {}", route.dst)
                    }
                    RelayAction::Sysctl { key, value } => {
                        format!("cannot set {} = {value}", key.replace('/', "."))
                    }
                    RelayAction::Nft { .. } => "nft: cannot apply the relay policy".into(),
                    RelayAction::NdpTargets { wan, .. } => {
                        format!("{wan}: cannot start the NDP proxy")
                    }
                    RelayAction::Log(_) => String::new(),
                };
                emit(Level::Error, &format!("{what}: {e}"));
                self.core
                    .handle(Now::new(now_ms, 0), RelayEvent::Failed(a.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests;
