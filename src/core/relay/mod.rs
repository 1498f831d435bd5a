//! The hub's routes, forwarding, relay policy and NDP proxy, as desired
//! state computed from facts (sans-IO, like the rest of the core).
//!
//! Inputs ([`Facts`]): the managed interfaces with their options, each
//! WireGuard device's index and its peers' allowed IPs (the kernel's view),
//! the main routing table, and the sysctl values the relay may touch.
//! Outputs ([`RelayAction`]): route adds and deletes, sysctl writes, one nft
//! script, the NDP responder's targets. Only differences are emitted, so a
//! repeated call or a restarted agent changes nothing.
//!
//! # Which prefixes
//!
//! A peer's allowed IPs hold its tunnel address (`/128`, `/32`) and the
//! prefixes routed to it (`/64`, `/56`, ...). The tunnel address lies in the
//! prefix of the WireGuard device's own address and is reached through that
//! on-link route, so **routes** are ensured for the prefixes only: every
//! allowed IP that is neither a host address nor a default route. The
//! **relay policy** admits every allowed IP (tunnel addresses send and
//! receive too); the **NDP proxy** answers for every IPv6 allowed IP except a
//! default route (a tunnel address can sit in a switched /64 as well).
//!
//! # Routes
//!
//! A route to the prefix through the WireGuard device in the main table
//! counts as present whoever added it (netifd's `route_allowed_ips`,
//! wg-quick): no duplicate is added. A missing one is added only after it
//! was seen missing for [`ROUTE_GRACE_MS`], so netifd, which adds its routes
//! right after bringing the device up, goes first. Ours carry
//! [`ROUTE_PROTO`] and the metric [`ROUTE_METRIC`] (not the kernel's default
//! 1024), so a later `ip route add` of the same route by somebody else
//! succeeds instead of failing with "File exists"; ours is then removed as
//! redundant. Only routes with our protocol through a managed device are
//! ever deleted: when no longer wanted, when redundant, and on stop.
//!
//! # Forwarding
//!
//! With `forwarding`, IPv6 forwarding is switched on. A Linux router ignores
//! router advertisements unless `accept_ra` is 2, and switching forwarding on
//! purges RA-learned default routes of interfaces without it (a VPS then
//! loses its default route). So when the WAN uses RAs (`accept_ra` is 1) it
//! becomes 2 first. Values the agent changed are restored on stop, in
//! reverse order.
//!
//! # Relay policy (nft)
//!
//! One table `inet wgroam`, replaced wholesale in one `nft -f -`
//! transaction, deleted on stop. Its forward chain has policy accept, so it
//! never breaks other forwarding on the host; it drops packets forwarded into
//! a WireGuard device that do not come from its WAN or are not for a peer,
//! and packets from the device that do not come from a peer.
//!
//! # Relay policy (fw4)
//!
//! On OpenWrt the same intent as a firewall zone users see in LuCI: zone
//! `wgroam` with the tunnels' netifd interfaces and forwardings to and from
//! `wan`, three named sections of uci `firewall` that wgroam owns
//! ([`fw4_desired`], [`fw4_changes`]). They are written (commit, `fw4
//! reload`) only when they differ from what the config asks for, so they
//! stay in place over restarts without a flash write, and are removed when
//! no interface asks for `fw4` any more.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use super::net::{IpNet, ROUTE_PROTO, RT_TABLE_MAIN, Route};
use super::reconcile::{Attempt, InFlight};
use super::{Level, Log, Now, log};
use crate::config::uci::{Change, Section, Value};

/// Metric of the routes the agent adds (see "Routes" above).
pub const ROUTE_METRIC: u32 = 1119;
/// A missing route is added after it was missing this long.
pub const ROUTE_GRACE_MS: u64 = 3_000;
/// The same action is not repeated sooner than this while unconfirmed.
pub const RETRY_MS: u64 = 10_000;
/// Re-checked this often even when nothing says it changed (a sysctl
/// someone reset, our nft table deleted). Route changes do not wait for it:
/// the adapter watches rtnetlink's route notifications and calls
/// [`Relay::look_again`]; a missing route's grace and an unconfirmed
/// action's retry have their own deadlines.
pub const CHECK_MS: u64 = 10_000;
/// The nft table (family `inet`).
pub const NFT_TABLE: &str = "wgroam";
/// sysctl keys, as paths below `/proc/sys`.
pub const SYSCTL_FORWARDING: &str = "net/ipv6/conf/all/forwarding";

/// The sysctl path of a WAN's `accept_ra`.
pub fn accept_ra_key(wan: &str) -> String {
    format!("net/ipv6/conf/{wan}/accept_ra")
}

/// How the relay policy is enforced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RelayMode {
    #[default]
    Off,
    /// Own nftables table `inet wgroam`.
    Nft,
    /// A firewall zone of OpenWrt's fw4, through uci ([`fw4_desired`]).
    Fw4,
}

impl RelayMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RelayMode::Off => "off",
            RelayMode::Nft => "nft",
            RelayMode::Fw4 => "fw4",
        }
    }
}

/// The fw4 zone of the interfaces with relay `fw4`, and the zone it forwards
/// to and from (OpenWrt's default WAN zone).
pub const FW4_ZONE: &str = "wgroam";
pub const FW4_WAN_ZONE: &str = "wan";
/// The named sections of uci `firewall` wgroam owns: the zone and the two
/// forwardings. Nothing else in `firewall` is ever touched.
pub const FW4_SECTIONS: [&str; 3] = ["wgroam", "wgroam_wan_out", "wgroam_wan_in"];

/// The netifd interfaces (uci `network` names) whose relay is `fw4`: the
/// zone's networks, sorted.
pub fn fw4_networks<'a>(ifaces: impl IntoIterator<Item = (&'a str, &'a HubNet)>) -> Vec<String> {
    let set: BTreeSet<String> = ifaces
        .into_iter()
        .filter(|(_, n)| n.relay == RelayMode::Fw4)
        .map(|(name, _)| name.to_string())
        .collect();
    set.into_iter().collect()
}

/// The firewall sections the fw4 relay wants for `networks` (none when
/// empty): zone `wgroam` holding the tunnels (input and output accepted:
/// the peers' heartbeats and the hub's answers; forwarding between tunnels
/// rejected), forwardings from it to `wan` and from `wan` to it, which is
/// what LuCI's firewall page shows as "wgroam ⇄ wan".
pub fn fw4_desired(networks: &[String]) -> Vec<Section> {
    if networks.is_empty() {
        return Vec::new();
    }
    let single = |v: &str| Value::Single(v.to_string());
    let mut zone = Section::new("zone", Some(FW4_SECTIONS[0]));
    zone.options = vec![
        ("name".into(), single(FW4_ZONE)),
        ("network".into(), Value::List(networks.to_vec())),
        ("input".into(), single("ACCEPT")),
        ("output".into(), single("ACCEPT")),
        ("forward".into(), single("REJECT")),
    ];
    let fwd = |name: &str, src: &str, dest: &str| {
        let mut f = Section::new("forwarding", Some(name));
        f.options = vec![("src".into(), single(src)), ("dest".into(), single(dest))];
        f
    };
    vec![
        zone,
        fwd(FW4_SECTIONS[1], FW4_ZONE, FW4_WAN_ZONE),
        fwd(FW4_SECTIONS[2], FW4_WAN_ZONE, FW4_ZONE),
    ]
}

/// The uci changes that make wgroam's sections of `current` (uci `firewall`)
/// exactly `desired`: created, corrected option by option, or deleted.
/// Empty when they already are, so a restarted agent writes nothing.
pub fn fw4_changes(desired: &[Section], current: &[Section]) -> Vec<Change> {
    const PKG: &str = "firewall";
    let mut out = Vec::new();
    for name in FW4_SECTIONS {
        let find = |secs: &[Section]| {
            secs.iter()
                .find(|s| s.name.as_deref() == Some(name))
                .cloned()
        };
        let (cur, want) = (find(current), find(desired));
        let Some(want) = want else {
            if cur.is_some() {
                out.push(Change::delete_section(PKG, name));
            }
            continue;
        };
        let cur = match cur {
            Some(c) if c.stype == want.stype => Some(c),
            Some(_) => {
                out.push(Change::delete_section(PKG, name));
                None
            }
            None => None,
        };
        if cur.is_none() {
            out.push(Change::add_section(PKG, name, &want.stype));
        }
        for (opt, v) in &want.options {
            if cur.as_ref().and_then(|c| c.get(opt)) == Some(v) {
                continue;
            }
            out.push(match v {
                Value::Single(x) => Change::set(PKG, name, opt, x),
                Value::List(xs) => Change::set_list(PKG, name, opt, xs),
            });
        }
        for (opt, _) in cur.iter().flat_map(|c| c.options.iter()) {
            if want.get(opt).is_none() {
                out.push(Change::delete_option(PKG, name, opt));
            }
        }
    }
    out
}

/// The hub's network options of one interface (from the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubNet {
    /// Ensure a route into the tunnel for each peer prefix.
    pub routes: bool,
    /// The WAN device (forwarding, relay and NDP proxy need it).
    pub wan: Option<String>,
    /// Switch IPv6 forwarding on (and keep RA default routes).
    pub forwarding: bool,
    pub relay: RelayMode,
    /// Answer neighbour solicitations on the WAN for peer prefixes.
    pub ndp_proxy: bool,
}

impl Default for HubNet {
    fn default() -> Self {
        Self {
            routes: true,
            wan: None,
            forwarding: false,
            relay: RelayMode::Off,
            ndp_proxy: false,
        }
    }
}

/// One managed WireGuard interface as the relay sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfaceFacts {
    /// The kernel device, e.g. `wg0`.
    pub ifname: String,
    pub net: HubNet,
    /// The device's index; `None` while it does not exist.
    pub ifindex: Option<u32>,
    /// Every allowed IP of every peer, as last read.
    pub allowed_ips: Vec<IpNet>,
    /// `allowed_ips` was read in this observation (not a stale copy).
    pub fresh: bool,
}

/// Everything a reconciliation looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub ifaces: Vec<IfaceFacts>,
    /// The main table; `None` when it could not be read (no route changes).
    pub routes: Option<Vec<Route>>,
    /// Current values of the keys [`Relay::sysctl_keys`] named; a missing
    /// key is unreadable (no change is made to it).
    pub sysctl: BTreeMap<String, String>,
}

/// What the relay is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayEvent {
    /// Facts gathered because [`Relay::due`] said so: reconcile.
    Observed(Facts),
    /// The adapter could not carry out this action.
    Failed(RelayAction),
    /// The agent stops: undo everything, from these facts.
    Stop(Facts),
}

/// What the relay asks the adapter to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayAction {
    AddRoute {
        ifname: String,
        route: Route,
    },
    DelRoute {
        ifname: String,
        route: Route,
    },
    /// Write `value` to `/proc/sys/<key>`.
    Sysctl {
        key: String,
        value: String,
    },
    /// Run `nft -f -` with this script.
    Nft {
        script: String,
    },
    /// Answer neighbour solicitations on `wan` for these prefixes; an empty
    /// list stops answering.
    NdpTargets {
        wan: String,
        targets: Vec<IpNet>,
    },
    Log(Log),
}

impl From<Log> for RelayAction {
    fn from(l: Log) -> Self {
        RelayAction::Log(l)
    }
}

/// The prefixes routed to peers: allowed IPs that are neither host
/// addresses nor default routes, sorted, without duplicates.
pub fn routed_prefixes(allowed: &[IpNet]) -> Vec<IpNet> {
    let set: BTreeSet<IpNet> = allowed
        .iter()
        .filter(|n| !n.is_default() && !is_host(n))
        .copied()
        .collect();
    set.into_iter().collect()
}

/// The NDP proxy's targets: IPv6 allowed IPs except default routes,
/// collapsed.
pub fn ndp_targets(allowed: &[IpNet]) -> Vec<IpNet> {
    collapse(
        allowed
            .iter()
            .filter(|n| n.is_ipv6() && !n.is_default())
            .copied(),
    )
}

fn is_host(n: &IpNet) -> bool {
    n.prefix_len() == if n.is_ipv6() { 128 } else { 32 }
}

/// Sorted, without prefixes contained in another (nft interval sets refuse
/// overlapping elements).
pub fn collapse(nets: impl IntoIterator<Item = IpNet>) -> Vec<IpNet> {
    let set: BTreeSet<IpNet> = nets.into_iter().collect();
    set.iter()
        .filter(|n| !set.iter().any(|o| o != *n && o.contains_net(n)))
        .copied()
        .collect()
}

fn nft_element(n: &IpNet) -> String {
    if is_host(n) {
        n.addr().to_string()
    } else {
        n.to_string()
    }
}

/// `inet wgroam`'s complete definition for the interfaces with relay `nft`.
/// `None` when no interface asks for it.
pub fn nft_ruleset(ifaces: &[IfaceFacts]) -> Option<String> {
    let relayed: Vec<(&IfaceFacts, &str)> = ifaces
        .iter()
        .filter(|i| i.net.relay == RelayMode::Nft)
        .filter_map(|i| i.net.wan.as_deref().map(|w| (i, w)))
        .collect();
    if relayed.is_empty() {
        return None;
    }
    let mut t = format!("table inet {NFT_TABLE} {{\n");
    for (n, (i, _)) in relayed.iter().enumerate() {
        let all = collapse(i.allowed_ips.iter().copied());
        for (fam, ty, v6) in [("v6", "ipv6_addr", true), ("v4", "ipv4_addr", false)] {
            let _ = writeln!(t, "\tset peers{fam}_{n} {{");
            let _ = writeln!(t, "\t\ttype {ty}");
            let _ = writeln!(t, "\t\tflags interval");
            let _ = writeln!(t, "\t\tcomment \"peers of {}\"", i.ifname);
            let elems: Vec<String> = all
                .iter()
                .filter(|p| p.is_ipv6() == v6)
                .map(nft_element)
                .collect();
            if !elems.is_empty() {
                let _ = writeln!(t, "\t\telements = {{ {} }}", elems.join(", "));
            }
            let _ = writeln!(t, "\t}}");
        }
    }
    t.push_str("\tchain forward {\n");
    t.push_str("\t\ttype filter hook forward priority filter; policy accept;\n");
    for (n, (i, wan)) in relayed.iter().enumerate() {
        let wg = &i.ifname;
        let _ = writeln!(t, "\t\toifname \"{wg}\" iifname != \"{wan}\" counter drop");
        let _ = writeln!(
            t,
            "\t\toifname \"{wg}\" ip6 daddr != @peersv6_{n} counter drop"
        );
        let _ = writeln!(
            t,
            "\t\toifname \"{wg}\" ip daddr != @peersv4_{n} counter drop"
        );
        let _ = writeln!(
            t,
            "\t\tiifname \"{wg}\" ip6 saddr != @peersv6_{n} counter drop"
        );
        let _ = writeln!(
            t,
            "\t\tiifname \"{wg}\" ip saddr != @peersv4_{n} counter drop"
        );
    }
    t.push_str("\t}\n}\n");
    Some(t)
}

/// The script that makes `inet wgroam` exactly `ruleset` (or absent), in one
/// transaction: declaring the table first makes the delete valid whether
/// or not it exists.
pub fn nft_script(ruleset: Option<&str>) -> String {
    let mut s = format!("table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n");
    if let Some(r) = ruleset {
        s.push_str(r);
    }
    s
}

/// `net/ipv6/conf/wan/accept_ra` as `net.ipv6.conf.wan.accept_ra`.
pub fn sysctl_name(key: &str) -> String {
    key.replace('/', ".")
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Nft {
    /// Nothing of ours (at start, or deleted).
    Absent,
    Applied(String),
    /// A script failed at this time; the table's state is unknown.
    Failed(u64),
}

/// What the relay sent, as [`InFlight`] keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Sent {
    Sysctl(String, String),
    Add(Route),
    Del(Route),
    /// Targets handed to a WAN's NDP responder (held after a failure).
    Ndp(String),
}

/// The relay's memory between reconciliations: what it changed, so it can
/// undo exactly that, and what it has asked for recently.
#[derive(Debug)]
pub struct Relay {
    /// sysctls this agent changed, in order, with their original values.
    restore: Vec<(String, String)>,
    nft: Nft,
    /// Targets handed to each WAN's responder.
    ndp: BTreeMap<String, Vec<IpNet>>,
    /// (ifindex, prefix) seen missing since (ms).
    missing: BTreeMap<(u32, IpNet), u64>,
    /// Actions recently emitted and not yet seen to take effect.
    inflight: InFlight<Sent>,
    /// Every WireGuard device index managed in this run: our routes through
    /// one that is no longer managed (config reload) are removed too.
    known_oifs: BTreeMap<u32, String>,
    /// The interfaces of the last reconciliation, and when the next check
    /// is due even if they stay the same.
    last: Option<Vec<IfaceFacts>>,
    next_check_ms: u64,
    /// When the last reconciliation was due: deadlines up to it are met.
    last_check_ms: u64,
}

impl Default for Relay {
    fn default() -> Self {
        Self::new()
    }
}

fn route_for(prefix: IpNet, ifindex: u32) -> Route {
    Route {
        table: RT_TABLE_MAIN,
        dst: prefix,
        src: None,
        gateway: None,
        oif: Some(ifindex),
        metric: ROUTE_METRIC,
        proto: ROUTE_PROTO,
    }
}

/// A route to `prefix` through device `oif` in the main table.
fn through(r: &Route, prefix: &IpNet, oif: u32) -> bool {
    r.table == RT_TABLE_MAIN && r.dst == *prefix && r.src.is_none() && r.oif == Some(oif)
}

impl Relay {
    pub fn new() -> Self {
        Self {
            restore: Vec::new(),
            nft: Nft::Absent,
            ndp: BTreeMap::new(),
            missing: BTreeMap::new(),
            inflight: InFlight::new(RETRY_MS),
            known_oifs: BTreeMap::new(),
            last: None,
            next_check_ms: 0,
            last_check_ms: 0,
        }
    }

    /// The relay's one entry point, the same shape as the hub's and the
    /// roam's cores.
    pub fn handle(&mut self, now: Now, event: RelayEvent) -> Vec<RelayAction> {
        match event {
            RelayEvent::Observed(facts) => self.reconcile(now.mono_ms, &facts),
            RelayEvent::Failed(action) => {
                self.failed(now.mono_ms, &action);
                Vec::new()
            }
            RelayEvent::Stop(facts) => self.stop(&facts),
        }
    }

    /// Whether a reconciliation is due at `now` for these interfaces (they
    /// changed since the last one, or [`CHECK_MS`] passed); records them.
    /// The adapter gathers the costly facts (route dump, sysctls) only then.
    pub fn due(&mut self, now: Now, ifaces: &[IfaceFacts]) -> bool {
        if self.last.as_deref() == Some(ifaces) && now.mono_ms < self.next_due() {
            return false;
        }
        self.last = Some(ifaces.to_vec());
        self.next_check_ms = now.mono_ms + CHECK_MS;
        self.last_check_ms = now.mono_ms;
        true
    }

    /// When a reconciliation is due by itself: the periodic re-check, the
    /// end of a missing route's grace, an unconfirmed action's retry, a
    /// failed nft script's retry (each only if a check has not met it).
    fn next_due(&self) -> u64 {
        let met = self.last_check_ms;
        let grace = self.missing.values().map(|since| since + ROUTE_GRACE_MS);
        let nft = match self.nft {
            Nft::Failed(t) => Some(t + RETRY_MS),
            _ => None,
        };
        grace
            .chain(self.inflight.poll_at())
            .chain(nft)
            .filter(|t| *t > met)
            .fold(self.next_check_ms, u64::min)
    }

    /// Check again at the next [`Relay::due`], whatever it is given (a
    /// responder died).
    pub fn look_again(&mut self) {
        self.last = None;
    }

    /// The interfaces of the last reconciliation (for status).
    pub fn last_ifaces(&self) -> &[IfaceFacts] {
        self.last.as_deref().unwrap_or_default()
    }

    /// When the relay wants to be asked [`Relay::due`] again.
    pub fn poll_at(&self) -> Option<u64> {
        Some(self.next_due())
    }

    /// The sysctl keys whose values [`Facts::sysctl`] must carry.
    pub fn sysctl_keys(&self, ifaces: &[IfaceFacts]) -> Vec<String> {
        let mut keys: BTreeSet<String> = self.restore.iter().map(|(k, _)| k.clone()).collect();
        for i in ifaces.iter().filter(|i| i.net.forwarding) {
            keys.insert(SYSCTL_FORWARDING.into());
            if let Some(w) = &i.net.wan {
                keys.insert(accept_ra_key(w));
            }
        }
        keys.into_iter().collect()
    }

    /// The NDP targets currently handed out, by WAN (for status).
    pub fn ndp(&self) -> &BTreeMap<String, Vec<IpNet>> {
        &self.ndp
    }

    /// The sysctls this agent changed (and restores on stop), for status.
    pub fn changed_sysctls(&self) -> impl Iterator<Item = &str> {
        self.restore.iter().map(|(k, _)| k.as_str())
    }

    /// Whether the nft table is believed to be in place.
    pub fn nft_applied(&self) -> bool {
        matches!(self.nft, Nft::Applied(_))
    }

    /// An action the adapter could not carry out; it is retried after
    /// [`RETRY_MS`].
    pub fn failed(&mut self, now_ms: u64, action: &RelayAction) {
        match action {
            RelayAction::Nft { .. } => self.nft = Nft::Failed(now_ms),
            RelayAction::Sysctl { key, .. } => {
                // Not changed after all: nothing to restore.
                if let Some(pos) = self.restore.iter().rposition(|(k, _)| k == key) {
                    self.restore.remove(pos);
                }
            }
            RelayAction::NdpTargets { wan, .. } => {
                self.ndp.remove(wan);
                self.inflight.hold(now_ms, Sent::Ndp(wan.clone()));
            }
            _ => {}
        }
    }

    /// Brings the system towards the desired state.
    pub fn reconcile(&mut self, now_ms: u64, facts: &Facts) -> Vec<RelayAction> {
        // Actions that keep failing are re-recorded every RETRY_MS; the
        // others were carried out long ago and are forgotten.
        self.inflight.expire(now_ms, 2 * RETRY_MS);
        let mut out = Vec::new();
        self.sysctls(now_ms, facts, false, &mut out);
        self.routes(now_ms, facts, false, &mut out);
        self.nft(now_ms, facts, false, &mut out);
        self.ndp_targets(now_ms, facts, false, &mut out);
        out
    }

    /// Undoes everything: our routes, the nft table, the responders and the
    /// sysctls this agent changed.
    pub fn stop(&mut self, facts: &Facts) -> Vec<RelayAction> {
        let mut out = Vec::new();
        self.ndp_targets(0, facts, true, &mut out);
        self.nft(0, facts, true, &mut out);
        self.routes(0, facts, true, &mut out);
        self.sysctls(0, facts, true, &mut out);
        out
    }

    fn sysctls(&mut self, now_ms: u64, facts: &Facts, stop: bool, out: &mut Vec<RelayAction>) {
        // Wanted values, in the order they must be written: accept_ra
        // before forwarding (forwarding on purges RA routes otherwise).
        let mut want: Vec<(String, &str, &str)> = Vec::new();
        if !stop {
            let fwd: Vec<&IfaceFacts> = facts.ifaces.iter().filter(|i| i.net.forwarding).collect();
            let wans: BTreeSet<&str> = fwd.iter().filter_map(|i| i.net.wan.as_deref()).collect();
            for w in wans {
                want.push((accept_ra_key(w), "1", "2"));
            }
            if !fwd.is_empty() {
                want.push((SYSCTL_FORWARDING.into(), "", "1"));
            }
        }
        // Restore what is no longer wanted, newest first.
        let held: BTreeSet<&str> = want.iter().map(|(k, ..)| k.as_str()).collect();
        let mut i = self.restore.len();
        while i > 0 {
            i -= 1;
            if held.contains(self.restore[i].0.as_str()) {
                continue;
            }
            let (key, orig) = self.restore.remove(i);
            if facts.sysctl.get(&key) == Some(&orig) {
                continue;
            }
            log(
                out,
                Level::Notice,
                format!("restoring {} = {orig}", sysctl_name(&key)),
            );
            out.push(RelayAction::Sysctl { key, value: orig });
        }
        for (key, only_from, value) in want {
            let Some(cur) = facts.sysctl.get(&key) else {
                continue;
            };
            if cur == value || (!only_from.is_empty() && cur != only_from) {
                continue;
            }
            let sent = Sent::Sysctl(key.clone(), value.to_string());
            let Some(retry) = self.inflight.send(now_ms, sent).map(Attempt::is_retry) else {
                continue;
            };
            if !self.restore.iter().any(|(k, _)| *k == key) {
                self.restore.push((key.clone(), cur.clone()));
            }
            let (level, note) = if retry {
                (Level::Warn, " (not applied yet; retrying)")
            } else {
                (Level::Notice, "")
            };
            log(
                out,
                level,
                format!("setting {} = {value} (was {cur}){note}", sysctl_name(&key)),
            );
            out.push(RelayAction::Sysctl {
                key,
                value: value.to_string(),
            });
        }
    }

    fn routes(&mut self, now_ms: u64, facts: &Facts, stop: bool, out: &mut Vec<RelayAction>) {
        let Some(observed) = &facts.routes else {
            return;
        };
        let mut managed: BTreeMap<u32, &IfaceFacts> = BTreeMap::new();
        for i in &facts.ifaces {
            if let Some(x) = i.ifindex {
                managed.insert(x, i);
                self.known_oifs.insert(x, i.ifname.clone());
            }
        }
        let known = self.known_oifs.clone();
        let name_of = |oif: u32| {
            known
                .get(&oif)
                .cloned()
                .unwrap_or_else(|| format!("#{oif}"))
        };
        // Desired prefixes per device; `None`: leave that device alone.
        let mut desired: BTreeMap<u32, Option<Vec<IpNet>>> = BTreeMap::new();
        for (&x, i) in &managed {
            let d = if stop || !i.net.routes {
                Some(Vec::new())
            } else if i.fresh {
                Some(routed_prefixes(&i.allowed_ips))
            } else {
                None
            };
            desired.insert(x, d);
        }
        // Deletes: ours through a device managed now or earlier in this run.
        let mut dels: Vec<&Route> = Vec::new();
        for r in observed.iter().filter(|r| {
            r.is_ours() && r.table == RT_TABLE_MAIN && r.src.is_none() && r.gateway.is_none()
        }) {
            let Some(oif) = r.oif.filter(|o| self.known_oifs.contains_key(o)) else {
                continue;
            };
            let keep = match desired.get(&oif) {
                // Known from earlier, not managed any more.
                None => false,
                Some(None) => true,
                Some(Some(want)) => {
                    want.contains(&r.dst)
                        && r.same_as(&route_for(r.dst, oif))
                        && !observed
                            .iter()
                            .any(|o| !o.is_ours() && through(o, &r.dst, oif))
                }
            };
            if !keep && !dels.iter().any(|d| d.same_as(r)) {
                dels.push(r);
            }
        }
        for r in dels {
            let ifname = name_of(r.oif.unwrap_or(0));
            let Some(retry) = self
                .inflight
                .send(now_ms, Sent::Del(r.clone()))
                .map(Attempt::is_retry)
            else {
                continue;
            };
            self.inflight.settle(&Sent::Add(r.clone()));
            let note = if retry {
                " (still there; retrying)"
            } else {
                ""
            };
            log(
                out,
                if retry { Level::Warn } else { Level::Info },
                format!(
                    "{ifname}: removing route {} dev {ifname} proto {ROUTE_PROTO}{note}",
                    r.dst
                ),
            );
            out.push(RelayAction::DelRoute {
                ifname,
                route: r.clone(),
            });
        }
        // Adds: a prefix with no route through its device, after the grace.
        let mut still_missing = BTreeSet::new();
        for (&oif, want) in &desired {
            let Some(want) = want else { continue };
            for p in want {
                if observed.iter().any(|r| through(r, p, oif)) {
                    continue;
                }
                still_missing.insert((oif, *p));
                let since = *self.missing.entry((oif, *p)).or_insert(now_ms);
                if now_ms.saturating_sub(since) < ROUTE_GRACE_MS {
                    continue;
                }
                let route = route_for(*p, oif);
                let Some(retry) = self
                    .inflight
                    .send(now_ms, Sent::Add(route.clone()))
                    .map(Attempt::is_retry)
                else {
                    continue;
                };
                self.inflight.settle(&Sent::Del(route.clone()));
                let ifname = name_of(oif);
                let note = if retry {
                    " (not applied yet; retrying)"
                } else {
                    ""
                };
                log(
                    out,
                    if retry { Level::Warn } else { Level::Info },
                    format!(
                        "{ifname}: adding route {p} dev {ifname} metric {ROUTE_METRIC} proto {ROUTE_PROTO}{note}"
                    ),
                );
                out.push(RelayAction::AddRoute { ifname, route });
            }
        }
        self.missing.retain(|k, _| still_missing.contains(k));
    }

    fn nft(&mut self, now_ms: u64, facts: &Facts, stop: bool, out: &mut Vec<RelayAction>) {
        let want = if stop {
            None
        } else {
            nft_ruleset(&facts.ifaces)
        };
        match (&self.nft, &want) {
            (Nft::Absent, None) => return,
            (Nft::Applied(a), Some(w)) if a == w => return,
            (Nft::Failed(t), _) if !stop && now_ms.saturating_sub(*t) < RETRY_MS => return,
            _ => {}
        }
        let msg = match &want {
            Some(_) => format!("nft: applying relay policy (table inet {NFT_TABLE})"),
            None => format!("nft: deleting table inet {NFT_TABLE}"),
        };
        log(out, Level::Info, msg);
        out.push(RelayAction::Nft {
            script: nft_script(want.as_deref()),
        });
        self.nft = match want {
            Some(w) => Nft::Applied(w),
            None => Nft::Absent,
        };
    }

    fn ndp_targets(&mut self, now_ms: u64, facts: &Facts, stop: bool, out: &mut Vec<RelayAction>) {
        let mut want: BTreeMap<String, Vec<IpNet>> = BTreeMap::new();
        if !stop {
            for i in facts.ifaces.iter().filter(|i| i.net.ndp_proxy) {
                if let Some(w) = &i.net.wan {
                    let t = want.entry(w.clone()).or_default();
                    t.extend(ndp_targets(&i.allowed_ips));
                }
            }
        }
        for t in want.values_mut() {
            *t = collapse(t.iter().copied());
        }
        let gone: Vec<String> = self
            .ndp
            .keys()
            .filter(|w| !want.contains_key(*w))
            .cloned()
            .collect();
        for wan in gone {
            self.ndp.remove(&wan);
            // Logged once it is off, so the line means it.
            out.push(RelayAction::NdpTargets {
                wan: wan.clone(),
                targets: Vec::new(),
            });
            log(out, Level::Info, format!("{wan}: NDP proxy off"));
        }
        for (wan, targets) in want {
            if self.ndp.get(&wan) == Some(&targets) {
                continue;
            }
            let key = Sent::Ndp(wan.clone());
            if self.inflight.waiting(now_ms, &key) {
                continue;
            }
            self.inflight.settle(&key);
            let list: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
            log(
                out,
                Level::Info,
                format!(
                    "{wan}: NDP proxy answers for {}",
                    if list.is_empty() {
                        "nothing (no peer prefix yet)".into()
                    } else {
                        list.join(", ")
                    }
                ),
            );
            self.ndp.insert(wan.clone(), targets.clone());
            out.push(RelayAction::NdpTargets { wan, targets });
        }
    }
}

/// `ip` lies in one of `targets`.
pub fn is_target(targets: &[IpNet], ip: IpAddr) -> bool {
    targets.iter().any(|t| t.contains(ip))
}

#[cfg(test)]
mod tests;
