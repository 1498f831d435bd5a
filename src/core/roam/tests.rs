//! Roam decisions driven by plain events, no root, no network.
//!
//! A tiny simulated world sits around the core: a kernel route table that
//! carries out route actions, WireGuard counters, and a hub that answers
//! probes (or not).

use super::*;

const WG: &str = "wg1";
const TUN: u32 = 7;
const WAN: u32 = 2;
const LAN: u32 = 3;
const T0: Now = Now::new(1_000_000, 1_700_000_000);
const BUILT: u64 = 1_690_000_000;
const STATIC: u8 = 4;
const DHCP: u8 = 16;
const RA: u8 = 9;

fn key(n: u8) -> PublicKey {
    PublicKey([n; 32])
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn prefix() -> IpNet {
    net("2001:db8:100:1::/64")
}

fn cfg() -> RoamConfig {
    let mut c = RoamConfig::new(
        WG,
        key(9),
        vec![HubEndpoint::Addr(sa("198.51.100.2:51820"))],
    );
    c.prefix = Some(prefix());
    c.tunnel_addr = Some("2001:db8:100::2".parse().unwrap());
    c.hub_tunnel_addr = Some(ip("2001:db8:100::1"));
    c
}

fn route(
    dst: &str,
    src: Option<&str>,
    via: Option<&str>,
    oif: u32,
    metric: u32,
    proto: u8,
) -> Route {
    Route {
        table: RT_TABLE_MAIN,
        dst: net(dst),
        src: src.map(net),
        gateway: via.map(ip),
        oif: Some(oif),
        metric,
        proto,
    }
}

fn v4_default(via: &str) -> Route {
    route("0.0.0.0/0", None, Some(via), WAN, 0, DHCP)
}

fn v6_default(via: &str) -> Route {
    route("::/0", None, Some(via), WAN, 1024, RA)
}

fn split(src: &str) -> Route {
    route("::/0", Some(src), None, TUN, 1024, ROUTE_PROTO)
}

/// netifd and odhcpd as the core's adapter reports them (the adapter's own
/// tests check the report against the observed daemons).
#[derive(Debug, Clone)]
struct Netifd {
    /// netifd takes a delegation (false: e.g. no downstream with ip6assign).
    accepts: bool,
    /// What the look reports as the blocker while it does not accept.
    problem: Option<String>,
    held: Option<IpNet>,
    /// lan's addresses left deprecated by a withdrawal.
    deprecated: Vec<(Ipv6Addr, u8)>,
    lan_mtu6: u32,
    /// Answer looks at all (false: they are lost, e.g. a hung ubus).
    answering: bool,
    /// odhcpd has sent an RA with the assignment (`dhcp ipv6ra`).
    announcing: bool,
    adds: usize,
}

/// The core plus a simulated kernel and hub.
struct World {
    netifd: Netifd,
    roam: Roam,
    now: Now,
    kernel: Vec<Route>,
    rx: u64,
    tx: u64,
    handshake: Option<u64>,
    /// The hub answers probes and handshakes.
    answering: bool,
    /// Inbound traffic makes rx grow every observation regardless.
    traffic: bool,
    /// Whether the world carries out route actions.
    apply_routes: bool,
    log: Vec<(u64, RoamAction)>,
}

impl World {
    fn new(c: RoamConfig) -> Self {
        Self::with_clock(c, BUILT)
    }

    fn with_clock(c: RoamConfig, not_before: u64) -> Self {
        Self {
            netifd: Netifd {
                accepts: true,
                problem: None,
                held: None,
                deprecated: Vec::new(),
                lan_mtu6: 1500,
                answering: true,
                announcing: true,
                adds: 0,
            },
            roam: Roam::new(c, not_before).unwrap(),
            now: T0,
            kernel: vec![
                v4_default("100.64.0.1"),
                route("100.64.0.0/24", None, None, WAN, 0, 2),
            ],
            rx: 5000,
            tx: 5000,
            handshake: Some(T0.wall - 30),
            answering: true,
            traffic: false,
            apply_routes: true,
            log: Vec::new(),
        }
    }

    /// Started, routes applied, delegated, quiet.
    fn steady(c: RoamConfig) -> Self {
        let mut w = Self::new(c);
        w.observe();
        w.dump();
        w.run(2_000, 100);
        w.log.clear();
        w
    }

    fn report(&self, prefix: IpNet) -> DelegationReport {
        let n = &self.netifd;
        let assigned = n
            .held
            .filter(|h| *h == prefix)
            .and_then(|h| IpNet::truncate(h.addr(), 64));
        DelegationReport {
            carried: n.held,
            downstream: vec![DownstreamReport {
                name: "lan".into(),
                device: Some("br-lan".into()),
                ifindex: Some(LAN),
                announced: assigned.map(|_| n.announcing),
                assigned,
                mtu6: Some(n.lan_mtu6),
                link_mtu: Some(1500),
                deprecated: n
                    .deprecated
                    .iter()
                    .filter(|(a, _)| prefix.contains(IpAddr::V6(*a)))
                    .copied()
                    .collect(),
            }],
            problem: if n.accepts { None } else { n.problem.clone() },
            tunnel_mtu: Some(1420),
        }
    }

    fn ev(&mut self, e: RoamEvent) -> Vec<RoamAction> {
        let mut a = self.roam.handle(self.now, e);
        let mut answers = Vec::new();
        for x in &a {
            self.log.push((self.now.mono_ms, x.clone()));
            match x {
                RoamAction::Delegate { prefix, .. } => {
                    self.netifd.adds += 1;
                    if self.netifd.accepts {
                        self.netifd.held = Some(*prefix);
                        // netifd copies the tunnel's MTU to lan's IPv6 MTU.
                        self.netifd.lan_mtu6 = 1420;
                    }
                }
                RoamAction::Withdraw { prefix, .. } if self.netifd.held.take().is_some() => {
                    let lan = IpNet::truncate(prefix.addr(), 64).unwrap();
                    let IpAddr::V6(a) = lan.addr() else { panic!() };
                    let mut o = a.octets();
                    o[15] = 1;
                    self.netifd.deprecated.push((o.into(), 64));
                }
                RoamAction::ObserveDelegation { prefix, seq, .. } if self.netifd.answering => {
                    answers.push(RoamEvent::DelegationObserved {
                        seq: *seq,
                        report: self.report(*prefix),
                    });
                }
                RoamAction::RemoveAddress { addr, len, .. } => {
                    self.netifd.deprecated.retain(|d| *d != (*addr, *len));
                }
                RoamAction::SetIpv6Mtu { mtu, .. } => self.netifd.lan_mtu6 = *mtu,
                RoamAction::AddRoute(r)
                    if self.apply_routes && !self.kernel.iter().any(|k| k.same_as(r)) =>
                {
                    self.kernel.push(r.clone());
                }
                RoamAction::DelRoute(r) if self.apply_routes => {
                    self.kernel
                        .retain(|k| !(k.same_as(r) && k.proto == r.proto));
                }
                RoamAction::SendHeartbeat { .. } | RoamAction::Handshake { .. } => {
                    if matches!(x, RoamAction::Handshake { .. }) {
                        // The peer is re-created: counters start over.
                        self.rx = 0;
                        self.tx = 0;
                    }
                    self.tx += 148;
                    if self.answering {
                        self.rx += 148;
                        if matches!(x, RoamAction::Handshake { .. }) {
                            self.handshake = Some(self.now.wall);
                        }
                    }
                }
                _ => {}
            }
        }
        for e in answers {
            let more = self.ev(e);
            a.extend(more);
        }
        a
    }

    fn observe(&mut self) -> Vec<RoamAction> {
        if self.traffic {
            self.rx += 1000;
        }
        let snap = TunnelSnapshot {
            ifindex: TUN,
            endpoint: Some(sa("198.51.100.2:51820")),
            last_handshake: self.handshake,
            rx: self.rx,
            tx: self.tx,
        };
        self.ev(RoamEvent::Observed(Some(snap)))
    }

    fn dump(&mut self) -> Vec<RoamAction> {
        let k = self.kernel.clone();
        self.ev(RoamEvent::RoutesObserved(k))
    }

    fn uplink(&mut self, ifindex: u32, change: UplinkChange) -> Vec<RoamAction> {
        self.ev(RoamEvent::Uplink(UplinkEvent { ifindex, change }))
    }

    fn advance(&mut self, ms: u64) {
        self.now = self.now.after_ms(ms);
    }

    /// Walks time forward in `step` ms: tick each step, observe WireGuard and
    /// dump routes each second, the way the daemon does.
    fn run(&mut self, ms: u64, step: u64) -> Vec<(u64, RoamAction)> {
        let from = self.log.len();
        let end = self.now.mono_ms + ms;
        while self.now.mono_ms < end {
            self.advance(step);
            if self.now.mono_ms % 1000 < step {
                self.observe();
                self.dump();
            }
            self.ev(RoamEvent::Tick);
        }
        self.log[from..].to_vec()
    }
}

fn count(log: &[(u64, RoamAction)], f: impl Fn(&RoamAction) -> bool) -> usize {
    log.iter().filter(|(_, a)| f(a)).count()
}

fn times(log: &[(u64, RoamAction)], f: impl Fn(&RoamAction) -> bool) -> Vec<u64> {
    log.iter().filter(|(_, a)| f(a)).map(|(t, _)| *t).collect()
}

fn is_set(a: &RoamAction) -> bool {
    matches!(a, RoamAction::SetEndpoint { .. })
}

fn is_hs(a: &RoamAction) -> bool {
    matches!(a, RoamAction::Handshake { .. })
}

fn is_hb(a: &RoamAction) -> bool {
    matches!(a, RoamAction::SendHeartbeat { .. })
}

fn is_route(a: &RoamAction) -> bool {
    matches!(a, RoamAction::AddRoute(_) | RoamAction::DelRoute(_))
}

fn not_log(a: &RoamAction) -> bool {
    !matches!(a, RoamAction::Log(_))
}

fn logs(actions: &[RoamAction], level: Level) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            RoamAction::Log(Log { level: l, msg }) if *l == level => Some(msg.clone()),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------

#[test]
fn ipnet_parses_strictly_and_tests_containment() {
    assert_eq!(net("2001:db8:100:1::/64").prefix_len(), 64);
    assert_eq!(net("198.51.100.2").prefix_len(), 32);
    assert!(
        "2001:db8:100:1::1/64".parse::<IpNet>().is_err(),
        "host bits"
    );
    assert!("2001:db8::/129".parse::<IpNet>().is_err());
    assert!("10.0.0.0/33".parse::<IpNet>().is_err());
    assert!("nonsense/8".parse::<IpNet>().is_err());
    assert_eq!(
        IpNet::truncate(ip("2001:db8:100:1::1"), 48),
        Some(net("2001:db8:100::/48"))
    );
    assert!(net("2001:db8:100::/48").contains_net(&net("2001:db8:100:1::/64")));
    assert!(!net("2001:db8:100:1::/64").contains_net(&net("2001:db8:100::/48")));
    assert!(net("::/0").contains(ip("2001:db8::1")));
    assert!(!net("::/0").contains(ip("192.0.2.1")), "families never mix");
    assert!(net("0.0.0.0/0").contains_net(&net("192.0.2.0/24")));
    assert_eq!(
        net("2001:db8:100:1::/64").to_string(),
        "2001:db8:100:1::/64"
    );
}

#[test]
fn best_default_ignores_the_tunnel_our_routes_and_source_specific_ones() {
    let routes = vec![
        route("::/0", None, None, TUN, 512, STATIC),
        split("2001:db8:100:1::/64"),
        route("::/0", None, Some("fe80::1"), WAN, 1024, RA),
        route("::/0", None, Some("fe80::2"), LAN, 2048, RA),
        route("0.0.0.0/0", None, Some("100.64.0.1"), WAN, 10, DHCP),
        route("0.0.0.0/0", None, Some("203.0.113.1"), LAN, 5, DHCP),
    ];
    assert_eq!(
        best_default(&routes, true, RT_TABLE_MAIN, Some(TUN)),
        Some(Gateway {
            via: Some(ip("fe80::1")),
            ifindex: WAN
        })
    );
    assert_eq!(
        best_default(&routes, false, RT_TABLE_MAIN, Some(TUN)),
        Some(Gateway {
            via: Some(ip("203.0.113.1")),
            ifindex: LAN
        })
    );
    assert_eq!(best_default(&routes, true, 100, Some(TUN)), None);
}

#[test]
fn start_with_a_live_tunnel_routes_and_delegates_without_forcing_a_handshake() {
    let mut w = World::new(cfg());
    let mut a = w.observe();
    a.extend(w.dump());
    assert_eq!(
        a.iter().filter(|a| not_log(a)).cloned().collect::<Vec<_>>(),
        vec![
            RoamAction::Delegate {
                prefix: prefix(),
                seq: 1
            },
            RoamAction::AddRoute(split("2001:db8:100:1::/64")),
            RoamAction::AddRoute(split("2001:db8:100::2/128")),
        ],
        "split tunnel: IPv6 default from the prefix and from our tunnel address; IPv4 untouched"
    );
    let log = w.run(2_000, 100);
    assert_eq!(
        count(&log, is_set),
        1,
        "the start reaction sets the endpoint"
    );
    assert_eq!(
        count(&log, is_hs),
        0,
        "a live session needs no fresh handshake"
    );
    assert_eq!(count(&log, is_route), 0, "routes applied once");
    let s = w.roam.status();
    assert!(s.tunnel_up && s.clock_ok);
    assert_eq!(s.delegation, Delegation::Delegated(prefix()));
    assert_eq!(s.endpoint, Some(sa("198.51.100.2:51820")));
    assert_eq!(
        s.gateway_v4,
        Some(Gateway {
            via: Some(ip("100.64.0.1")),
            ifindex: WAN
        })
    );
    // A restarted agent with everything in place does nothing but probe.
    let mut again = World::new(cfg());
    again.kernel = w.kernel.clone();
    again.observe();
    again.dump();
    let log = again.run(2_000, 100);
    assert_eq!(count(&log, is_route), 0);
}

#[test]
fn uplink_change_burst_gives_one_reaction_one_debounce_after_the_last_event() {
    let mut w = World::steady(cfg());
    let t = w.now.mono_ms;
    // A DHCP renewal with a new address: address gone, default route gone,
    // new address, default route back: 80 ms of churn.
    w.uplink(WAN, UplinkChange::AddrRemoved(ip("100.64.0.2")));
    w.advance(10);
    w.uplink(WAN, UplinkChange::RouteChanged);
    w.kernel.retain(|r| !r.dst.is_default() || r.dst.is_ipv6());
    w.advance(10);
    w.dump();
    w.advance(40);
    w.uplink(WAN, UplinkChange::AddrAdded(ip("100.64.0.77")));
    w.advance(20);
    w.kernel.push(v4_default("100.64.0.1"));
    w.uplink(WAN, UplinkChange::RouteChanged);
    w.dump();
    assert_eq!(w.now.mono_ms, t + 80);
    let mut acts = Vec::new();
    while w.now.mono_ms < t + 1_000 {
        w.advance(10);
        for a in w.ev(RoamEvent::Tick) {
            acts.push((w.now.mono_ms, a));
        }
    }
    assert_eq!(times(&acts, is_set), vec![t + 80 + 200]);
    assert_eq!(times(&acts, is_hs), vec![t + 80 + 200]);
    let order: Vec<&RoamAction> = acts.iter().map(|(_, a)| a).filter(|a| not_log(a)).collect();
    assert!(
        is_set(order[0]) && is_hs(order[1]),
        "endpoint first, then handshake: {order:?}"
    );
    assert_eq!(
        order[1],
        &RoamAction::Handshake {
            iface: WG.into(),
            key: key(9),
            probe: Some(ip("2001:db8:100::1"))
        }
    );
    assert_eq!(w.roam.status().reactions, 2, "start + this one");
    let last = w.roam.status().last_reaction.clone().unwrap();
    assert!(last.what.contains("100.64.0.2 removed"), "{}", last.what);
}

#[test]
fn events_that_change_nothing_do_not_react() {
    let mut w = World::steady(cfg());
    w.uplink(WAN, UplinkChange::AddrAdded(ip("100.64.0.2")));
    w.run(1_000, 50);
    let before = w.roam.status().reactions;
    // The same address announced again (RA lifetime refresh, netifd re-add).
    w.uplink(WAN, UplinkChange::AddrAdded(ip("100.64.0.2")));
    // Our own route changes, the tunnel, the LAN, link-local addresses.
    w.uplink(TUN, UplinkChange::AddrAdded(ip("2001:db8:100::2")));
    w.uplink(TUN, UplinkChange::LinkDown);
    w.uplink(WAN, UplinkChange::RouteChanged);
    w.uplink(LAN, UplinkChange::AddrAdded(ip("2001:db8:100:1::1")));
    w.uplink(WAN, UplinkChange::AddrAdded(ip("fe80::1234")));
    w.uplink(WAN, UplinkChange::LinkUp); // first sight: a baseline
    w.uplink(WAN, UplinkChange::LinkUp);
    let log = w.run(3_000, 50);
    assert_eq!(w.roam.status().reactions, before);
    assert_eq!(count(&log, is_set) + count(&log, is_hs), 0);
    // A real link bounce does react.
    w.uplink(WAN, UplinkChange::LinkDown);
    w.advance(100);
    w.uplink(WAN, UplinkChange::LinkUp);
    let log = w.run(1_000, 50);
    assert_eq!(count(&log, is_set), 1);
    assert_eq!(w.roam.status().reactions, before + 1);
}

#[test]
fn rx_growth_skips_heartbeats() {
    let mut w = World::steady(cfg());
    w.traffic = true;
    let log = w.run(60_000, 100);
    assert_eq!(count(&log, is_hb), 0, "packets come in anyway");
    w.traffic = false;
    let log = w.run(30_000, 100);
    let hb = times(&log, is_hb);
    // Every interval once quiet; an answer (seen at the next once-a-second
    // observation) restarts the interval.
    assert_eq!(hb.len(), 5, "{hb:?}");
    assert!(
        hb.windows(2)
            .all(|p| (5_000..=6_000).contains(&(p[1] - p[0]))),
        "{hb:?}"
    );
    assert_eq!(count(&log, is_hs), 0, "every probe answered");
    assert!(w.roam.status().tunnel_up);
}

#[test]
fn silent_rebind_forces_a_handshake_after_two_unanswered_intervals() {
    let mut w = World::steady(cfg());
    w.traffic = true;
    w.run(10_000, 100);
    // The NAT rebinds silently: inbound stops, our probes get no answer.
    w.traffic = false;
    w.answering = false;
    let quiet_from = w.now.mono_ms;
    let log = w.run(20_000, 100);
    let hb = times(&log, is_hb);
    let hs = times(&log, is_hs);
    let first_probe = hb[0];
    assert!(
        first_probe - quiet_from <= 5_000,
        "probe within one interval"
    );
    assert_eq!(
        hs,
        vec![first_probe + 10_000],
        "forced 2 intervals after the first unanswered probe"
    );
    let set = times(&log, is_set);
    assert_eq!(
        set,
        vec![first_probe + 10_000],
        "from the current socket: endpoint re-set first"
    );
    assert!(!w.roam.status().tunnel_up);
    // The hub answers the new handshake: back up, no more forcing.
    w.answering = true;
    let log = w.run(30_000, 100);
    assert!(count(&log, is_hs) <= 1);
    assert!(w.roam.status().tunnel_up);
    let log = w.run(30_000, 100);
    assert_eq!(count(&log, is_hs), 0);
}

#[test]
fn a_dead_hub_gets_handshakes_with_backoff_not_a_storm() {
    let mut c = cfg();
    c.endpoints = vec![
        HubEndpoint::Addr(sa("198.51.100.2:51820")),
        HubEndpoint::Addr(sa("203.0.113.2:51820")),
    ];
    let mut w = World::steady(c);
    w.answering = false;
    let log = w.run(300_000, 100);
    let hs = times(&log, is_hs);
    let gaps: Vec<u64> = hs.windows(2).map(|p| p[1] - p[0]).collect();
    assert!(
        gaps.windows(2).all(|g| g[1] >= g[0]),
        "backing off: {gaps:?}"
    );
    assert!(gaps.iter().all(|g| *g <= MAX_STALL_BACKOFF_MS), "{gaps:?}");
    assert!(hs.len() <= 9, "bounded: {} in 5 min", hs.len());
    // Each stall tries the next endpoint.
    let eps: Vec<SocketAddr> = log
        .iter()
        .filter_map(|(_, a)| match a {
            RoamAction::SetEndpoint { endpoint, .. } => Some(*endpoint),
            _ => None,
        })
        .collect();
    assert_eq!(eps[0], sa("203.0.113.2:51820"));
    assert_eq!(eps[1], sa("198.51.100.2:51820"));
}

#[test]
fn prefix_is_withdrawn_after_grace_and_restored_when_the_hub_answers() {
    let mut w = World::steady(cfg());
    w.answering = false;
    let log = w.run(60_000, 100);
    let first_probe = times(&log, is_hb)[0];
    let withdrawn = times(&log, |a| matches!(a, RoamAction::Withdraw { .. }));
    assert_eq!(
        withdrawn,
        vec![first_probe + 30_000],
        "down counts from the first unanswered probe"
    );
    let s = w.roam.status();
    assert_eq!(s.delegation, Delegation::Withdrawn(prefix()));
    assert!(!s.tunnel_up);
    assert!(s.down_since_wall.is_some());
    assert!(
        s.delegation_changed
            .as_ref()
            .unwrap()
            .what
            .contains("withdrawing 2001:db8:100:1::/64")
    );
    assert!(
        log.iter().any(|(_, a)| matches!(a,
        RoamAction::Log(Log { level: Level::Notice, msg }) if msg.contains("tunnel down for 30s")))
    );
    w.answering = true;
    let log = w.run(30_000, 100);
    let delegated = times(&log, |a| matches!(a, RoamAction::Delegate { .. }));
    assert_eq!(delegated.len(), 1);
    assert_eq!(w.roam.status().delegation, Delegation::Delegated(prefix()));
    assert!(w.roam.status().tunnel_up);
    // Routes stayed in place the whole time.
    assert!(w.kernel.contains(&split("2001:db8:100:1::/64")));
}

#[test]
fn short_outages_do_not_withdraw() {
    let mut w = World::steady(cfg());
    for _ in 0..5 {
        w.answering = false;
        w.run(20_000, 100);
        w.answering = true;
        w.run(10_000, 100);
    }
    let n = count(&w.log, |a| {
        matches!(a, RoamAction::Withdraw { .. } | RoamAction::Delegate { .. })
    });
    assert_eq!(n, 0);
}

#[test]
fn flapping_uplink_does_not_cause_an_action_storm() {
    let mut w = World::steady(cfg());
    let from = w.log.len();
    for i in 0..200 {
        let change = if i % 2 == 0 {
            UplinkChange::LinkDown
        } else {
            UplinkChange::LinkUp
        };
        w.uplink(WAN, change);
        w.advance(50);
        w.ev(RoamEvent::Tick);
        if i % 20 == 0 {
            w.observe();
            w.dump();
        }
    }
    w.run(5_000, 50);
    let log = &w.log[from..];
    let sets = count(log, is_set);
    let hs = count(log, is_hs);
    assert!(
        (1..=6).contains(&sets),
        "10 s of flapping: {sets} endpoint sets"
    );
    assert!(
        hs <= 3,
        "handshakes at least {MIN_HANDSHAKE_GAP_MS} ms apart: {hs}"
    );
    let hs_t = times(log, is_hs);
    assert!(hs_t.windows(2).all(|p| p[1] - p[0] >= MIN_HANDSHAKE_GAP_MS));
}

#[test]
fn repeated_observations_are_idempotent_and_failed_routes_retry_slowly() {
    let mut w = World::steady(cfg());
    for _ in 0..5 {
        let a = w.dump();
        assert!(a.is_empty(), "{a:?}");
        let a = w.observe();
        assert!(a.iter().all(|a| !is_route(a)));
    }
    // Someone deletes our route; the adapter fails to put it back.
    w.kernel.retain(|r| *r != split("2001:db8:100:1::/64"));
    w.apply_routes = false;
    let a = w.dump();
    assert_eq!(a.iter().filter(|a| is_route(a)).count(), 1);
    for _ in 0..9 {
        w.advance(1000);
        assert!(
            w.dump().iter().all(|a| !is_route(a)),
            "no duplicate within the retry time"
        );
    }
    w.advance(1000);
    let a = w.dump();
    assert_eq!(
        a.iter()
            .filter(|a| is_route(a))
            .cloned()
            .collect::<Vec<_>>(),
        vec![RoamAction::AddRoute(split("2001:db8:100:1::/64"))]
    );
    assert_eq!(logs(&a, Level::Warn).len(), 1, "a retry is worth a warning");
}

#[test]
fn foreign_routes_are_left_alone_and_only_stale_own_routes_go() {
    let mut w = World::new(cfg());
    // netifd already has the prefix route (proto static); an old run of ours
    // left a route for a prefix no longer configured; the admin has one too.
    w.kernel.push(route(
        "::/0",
        Some("2001:db8:100:1::/64"),
        None,
        TUN,
        1024,
        STATIC,
    ));
    w.kernel.push(split("2001:db8:999::/64"));
    w.kernel.push(route(
        "::/0",
        Some("2001:db8:555::/64"),
        None,
        TUN,
        1024,
        STATIC,
    ));
    w.observe();
    let a = w.dump();
    let routes: Vec<RoamAction> = a.into_iter().filter(is_route).collect();
    assert_eq!(
        routes,
        vec![
            RoamAction::DelRoute(split("2001:db8:999::/64")),
            RoamAction::AddRoute(split("2001:db8:100::2/128")),
        ]
    );
}

#[test]
fn ipv6_endpoint_is_pinned_via_the_uplink_gateway_and_follows_it() {
    let mut c = cfg();
    c.endpoints = vec![HubEndpoint::Addr(sa("[2001:db8:ffff::2]:51820"))];
    let mut w = World::new(c);
    w.kernel.push(v6_default("fe80::1"));
    w.observe();
    w.dump();
    w.run(2_000, 100);
    let pin = |via: &str| {
        route(
            "2001:db8:ffff::2/128",
            None,
            Some(via),
            WAN,
            1024,
            ROUTE_PROTO,
        )
    };
    assert!(w.kernel.contains(&pin("fe80::1")), "{:?}", w.kernel);
    // New router on the uplink.
    w.kernel.retain(|r| *r != v6_default("fe80::1"));
    w.kernel.push(v6_default("fe80::2"));
    w.uplink(WAN, UplinkChange::RouteChanged);
    let from = w.log.len();
    w.dump();
    w.run(1_000, 50);
    let routes: Vec<RoamAction> = w.log[from..]
        .iter()
        .map(|(_, a)| a.clone())
        .filter(is_route)
        .collect();
    assert_eq!(
        routes,
        vec![
            RoamAction::DelRoute(pin("fe80::1")),
            RoamAction::AddRoute(pin("fe80::2")),
        ]
    );
    assert_eq!(
        count(&w.log[from..], is_hs),
        1,
        "a new gateway is an uplink change"
    );
    // The IPv6 default disappears for a while: the last pin stays.
    w.kernel.retain(|r| *r != v6_default("fe80::2"));
    w.dump();
    let log = w.run(3_000, 100);
    assert_eq!(count(&log, is_route), 0);
    assert!(w.kernel.contains(&pin("fe80::2")));
}

#[test]
fn ipv4_only_uplink_prefers_the_ipv4_endpoint_and_drops_the_stale_pin() {
    let mut c = cfg();
    c.endpoints = vec![
        HubEndpoint::Addr(sa("[2001:db8:ffff::2]:51820")),
        HubEndpoint::Addr(sa("198.51.100.2:51820")),
    ];
    let mut w = World::new(c);
    w.kernel.push(v6_default("fe80::1"));
    w.observe();
    w.dump();
    w.run(2_000, 100);
    assert_eq!(
        w.roam.status().endpoint,
        Some(sa("[2001:db8:ffff::2]:51820")),
        "dual-stack uplink: config order"
    );
    let pin = route(
        "2001:db8:ffff::2/128",
        None,
        Some("fe80::1"),
        WAN,
        1024,
        ROUTE_PROTO,
    );
    assert!(w.kernel.contains(&pin));
    // Move to an IPv4-only uplink: a link of its own.
    w.kernel
        .retain(|r| !r.dst.is_default() || r.proto == ROUTE_PROTO);
    w.kernel
        .retain(|r| r.oif != Some(WAN) || r.proto == ROUTE_PROTO);
    w.kernel
        .push(route("0.0.0.0/0", None, Some("192.0.2.1"), LAN, 0, DHCP));
    w.uplink(WAN, UplinkChange::LinkGone);
    let from = w.log.len();
    w.dump();
    w.run(1_000, 50);
    let log = &w.log[from..];
    let eps: Vec<SocketAddr> = log
        .iter()
        .filter_map(|(_, a)| match a {
            RoamAction::SetEndpoint { endpoint, .. } => Some(*endpoint),
            _ => None,
        })
        .collect();
    assert_eq!(eps, vec![sa("198.51.100.2:51820")]);
    assert!(
        log.iter()
            .any(|(_, a)| *a == RoamAction::DelRoute(pin.clone()))
    );
    assert!(!w.kernel.contains(&pin));
}

#[test]
fn untrusted_clock_never_forces_a_handshake() {
    let mut w = World::with_clock(cfg(), T0.wall + 86_400);
    w.observe();
    w.dump();
    w.run(2_000, 100);
    assert!(!w.roam.status().clock_ok);
    w.uplink(WAN, UplinkChange::AddrRemoved(ip("100.64.0.2")));
    let log = w.run(1_000, 50);
    assert_eq!(count(&log, is_set), 1, "the sticky source is still dropped");
    assert_eq!(count(&log, is_hs), 0);
    assert!(count(&log, is_hb) >= 1, "a probe instead");
    w.answering = false;
    let log = w.run(60_000, 100);
    assert_eq!(count(&log, is_hs), 0);
    let warns = count(
        &w.log,
        |a| matches!(a, RoamAction::Log(Log { level: Level::Warn, msg }) if msg.contains("clock not trusted")),
    );
    assert_eq!(warns, 1, "said once");
    w.ev(RoamEvent::ClockSynced);
    assert!(w.roam.status().clock_ok);
    let log = w.run(60_000, 100);
    assert!(count(&log, is_hs) >= 1);
}

/// R1 rebooted without RTC: its clock is behind but after the build time
/// (trusted), so the hub dropped every initiation until NTP set the clock.
fn rebooted_behind() -> World {
    let mut w = World::new(cfg());
    w.answering = false;
    w.handshake = None;
    w.rx = 0;
    w.tx = 0;
    w.observe();
    w.dump();
    w
}

#[test]
fn ntp_sync_re_handshakes_a_dead_tunnel_at_once() {
    let mut w = rebooted_behind();
    // Stalls force handshakes at ~0.2 s and ~10.2 s; the sync comes <5 s
    // after the last one, which carried the old clock.
    w.run(11_000, 100);
    assert!(w.roam.status().clock_ok, "trusted by the build time");
    let forced = times(&w.log, is_hs);
    assert_eq!(forced.len(), 2, "{forced:?}");
    w.answering = true;
    let a = w.ev(RoamEvent::ClockSynced);
    assert_eq!(a.iter().filter(|x| is_hs(x)).count(), 1, "{a:?}");
    assert!(
        logs(&a, Level::Notice)[0].contains("clock set by NTP while the tunnel is down"),
        "{a:?}"
    );
    // Once: a second signal is no news.
    w.advance(100);
    let a = w.ev(RoamEvent::ClockSynced);
    assert!(!a.iter().any(is_hs), "{a:?}");
    assert!(w.roam.ntp_synced());
}

#[test]
fn ntp_sync_leaves_a_live_tunnel_alone() {
    let mut w = World::steady(cfg());
    w.traffic = true;
    w.run(3_000, 100);
    assert!(w.roam.status().tunnel_up);
    let a = w.ev(RoamEvent::ClockSynced);
    assert!(!a.iter().any(is_hs), "{a:?}");
}

#[test]
fn ntp_sync_before_the_first_look_is_no_news() {
    let mut w = World::new(cfg());
    w.answering = false;
    let a = w.ev(RoamEvent::ClockSynced);
    assert!(!a.iter().any(is_hs), "{a:?}");
    assert!(w.roam.ntp_synced());
}

#[test]
fn bad_reload_is_logged_once_and_keeps_the_last_good_state() {
    let mut w = World::steady(cfg());
    let kernel = w.kernel.clone();
    let mut bad = cfg();
    bad.prefix = Some(net("2001:db8:100:1::/72"));
    let a = w.ev(RoamEvent::Configured(bad));
    assert_eq!(a.len(), 1);
    assert!(
        logs(&a, Level::Error)[0].contains("/72 cannot be delegated"),
        "{a:?}"
    );
    assert!(w.roam.status().config_error.is_some());
    let mut outside = cfg();
    outside.hub_allowed_ips = vec![net("2001:db8:100::/64")];
    let a = w.ev(RoamEvent::Configured(outside));
    assert_eq!(
        logs(&a, Level::Error),
        vec![
            "wg1: configuration rejected: prefix 2001:db8:100:1::/64 is not inside the hub peer's allowed_ips (2001:db8:100::/64); keeping the previous one"
                .to_string()
        ]
    );
    let log = w.run(5_000, 100);
    assert_eq!(count(&log, is_route), 0, "working routes kept");
    assert_eq!(w.kernel, kernel);
    assert_eq!(w.roam.config().prefix, Some(prefix()));
    assert_eq!(w.roam.status().delegation, Delegation::Delegated(prefix()));
    // A good reload moves to the new prefix cleanly.
    let mut good = cfg();
    good.prefix = Some(net("2001:db8:100:2::/64"));
    let a = w.ev(RoamEvent::Configured(good));
    assert!(w.roam.status().config_error.is_none());
    let acts: Vec<RoamAction> = a.into_iter().filter(not_log).collect();
    assert_eq!(
        acts,
        vec![
            RoamAction::DelRoute(split("2001:db8:100:1::/64")),
            RoamAction::AddRoute(split("2001:db8:100:2::/64")),
            RoamAction::Withdraw {
                prefix: prefix(),
                seq: 2
            },
            RoamAction::Delegate {
                prefix: net("2001:db8:100:2::/64"),
                seq: 3
            },
        ]
    );
    assert!(
        Roam::new(
            {
                let mut c = cfg();
                c.endpoints.clear();
                c
            },
            BUILT
        )
        .is_err()
    );
}

#[test]
fn hostname_endpoint_is_resolved_on_every_reaction() {
    let mut c = cfg();
    c.endpoints = vec![HubEndpoint::Host {
        host: "hub.example.net".into(),
        port: 51820,
    }];
    let mut w = World::new(c);
    w.observe();
    w.dump();
    let log = w.run(1_000, 50);
    let resolves: Vec<&RoamAction> = log
        .iter()
        .map(|(_, a)| a)
        .filter(|a| matches!(a, RoamAction::Resolve { .. }))
        .collect();
    assert_eq!(
        resolves,
        vec![&RoamAction::Resolve {
            host: "hub.example.net".into()
        }]
    );
    assert_eq!(count(&log, is_set), 0, "nothing to set before the answer");
    let a = w.ev(RoamEvent::Resolved {
        host: "hub.example.net".into(),
        addrs: vec![ip("198.51.100.2")],
    });
    assert!(a.iter().any(|a| *a
        == RoamAction::SetEndpoint {
            iface: WG.into(),
            key: key(9),
            endpoint: sa("198.51.100.2:51820")
        }));
    // Uplink change: the known address is set at once, the name re-resolved;
    // the hub moved (dynamic DNS), so the new address follows.
    w.uplink(WAN, UplinkChange::AddrRemoved(ip("100.64.0.2")));
    let log = w.run(500, 50);
    assert_eq!(count(&log, |a| matches!(a, RoamAction::Resolve { .. })), 1);
    assert_eq!(count(&log, is_set), 1);
    w.advance(5_000);
    let a = w.ev(RoamEvent::Resolved {
        host: "hub.example.net".into(),
        addrs: vec![ip("203.0.113.2")],
    });
    assert!(a.iter().any(|a| matches!(a,
        RoamAction::SetEndpoint { endpoint, .. } if *endpoint == sa("203.0.113.2:51820"))));
    let a = w.ev(RoamEvent::ResolveFailed {
        host: "hub.example.net".into(),
        error: "timeout".into(),
    });
    assert_eq!(logs(&a, Level::Warn).len(), 1);
    let a = w.ev(RoamEvent::ResolveFailed {
        host: "hub.example.net".into(),
        error: "timeout".into(),
    });
    assert!(a.is_empty(), "said once");
    assert_eq!(w.roam.status().endpoint, Some(sa("203.0.113.2:51820")));
}

#[test]
fn missing_interface_keeps_routes_and_its_return_reacts() {
    let mut w = World::steady(cfg());
    let kernel = w.kernel.clone();
    for _ in 0..40 {
        w.advance(1_000);
        w.ev(RoamEvent::Observed(None));
        w.dump();
    }
    assert_eq!(
        count(
            &w.log,
            |a| matches!(a, RoamAction::Log(Log { level: Level::Warn, msg }) if msg.contains("missing"))
        ),
        1,
        "said once"
    );
    assert_eq!(w.kernel, kernel, "a failed read deletes nothing");
    assert!(!w.roam.status().tunnel_present);
    assert_eq!(w.roam.status().delegation, Delegation::Withdrawn(prefix()));
    // netifd re-creates it with a new index: routes follow, the hub is probed.
    w.kernel.retain(|r| r.oif != Some(TUN));
    let snap = TunnelSnapshot {
        ifindex: 8,
        endpoint: Some(sa("198.51.100.2:51820")),
        last_handshake: None,
        rx: 0,
        tx: 0,
    };
    let mut a = w.ev(RoamEvent::Observed(Some(snap)));
    a.extend(w.dump());
    let adds: Vec<Route> = a
        .into_iter()
        .filter_map(|a| match a {
            RoamAction::AddRoute(r) => Some(r),
            _ => None,
        })
        .collect();
    // Still withdrawn: no ::/0 into the tunnel, only the way to the hub.
    assert_eq!(
        adds,
        vec![route(
            "2001:db8:100::1/128",
            None,
            None,
            8,
            1024,
            ROUTE_PROTO
        )]
    );
    let log = w.run(1_000, 50);
    assert_eq!(
        count(&log, is_set),
        1,
        "the new interface gets our endpoint"
    );
}

#[test]
fn no_default_route_defers_the_reaction_until_one_appears() {
    let mut w = World::steady(cfg());
    w.kernel
        .retain(|r| !r.dst.is_default() || r.proto == ROUTE_PROTO);
    w.uplink(WAN, UplinkChange::LinkDown);
    w.dump();
    let log = w.run(5_000, 100);
    assert_eq!(count(&log, is_set), 0);
    assert_eq!(
        count(
            &log,
            |a| matches!(a, RoamAction::Log(Log { msg, .. }) if msg.contains("no default route"))
        ),
        1
    );
    w.kernel.push(v4_default("100.64.0.1"));
    w.uplink(WAN, UplinkChange::LinkUp);
    w.dump();
    let log = w.run(1_000, 50);
    assert_eq!(count(&log, is_set), 1);
}

#[test]
fn health_checks_run_periodically_and_results_show_in_status() {
    let mut c = cfg();
    c.health_interval_s = Some(60);
    let mut w = World::steady(c);
    let log = w.run(130_000, 1_000);
    assert_eq!(count(&log, |a| *a == RoamAction::HealthCheck), 2);
    let a = w.ev(RoamEvent::HealthResult {
        ok: false,
        detail: "ping 2001:db8:ffff::1 timed out".into(),
    });
    assert_eq!(logs(&a, Level::Warn).len(), 1);
    let a = w.ev(RoamEvent::HealthResult {
        ok: false,
        detail: "ping 2001:db8:ffff::1 timed out".into(),
    });
    assert!(a.is_empty());
    let h = w.roam.status().health.clone().unwrap();
    assert!(!h.ok);
    assert_eq!(h.at_wall, w.now.wall);
}

#[test]
fn poll_at_drives_an_event_driven_loop_without_busy_waiting() {
    let mut w = World::steady(cfg());
    w.uplink(WAN, UplinkChange::AddrRemoved(ip("100.64.0.2")));
    let t = w.now.mono_ms;
    let at = w.roam.poll_at().unwrap();
    assert_eq!(at, t + 200, "the debounce deadline comes first");
    w.now = Now::new(at, w.now.wall);
    let a = w.ev(RoamEvent::Tick);
    assert!(a.iter().any(is_hs));
    // Only future deadlines, whatever the state.
    w.answering = false;
    for _ in 0..200 {
        let at = w.roam.poll_at().expect("heartbeats keep a deadline");
        assert!(at > w.now.mono_ms);
        w.now = Now::new(at, w.now.wall + (at - w.now.mono_ms) / 1000);
        w.observe();
        w.ev(RoamEvent::Tick);
    }
    assert!(count(&w.log, is_hs) >= 2);
}

#[test]
fn an_interface_that_appears_after_start_gets_the_endpoint_and_routes() {
    let mut c = cfg();
    c.endpoints = vec![
        HubEndpoint::Addr(sa("[2001:db8:ffff::2]:51820")),
        HubEndpoint::Addr(sa("198.51.100.2:51820")),
    ];
    let mut w = World::new(c);
    w.ev(RoamEvent::Observed(None));
    w.dump();
    let log = w.run(200, 50);
    assert!(
        log.is_empty(),
        "nothing to do without the interface: {log:?}"
    );
    for _ in 0..3 {
        w.advance(1_000);
        w.ev(RoamEvent::Observed(None));
    }
    assert_eq!(count(&w.log, not_log), 0);
    w.handshake = None;
    let from = w.log.len();
    w.observe();
    w.run(1_000, 50);
    let log = w.log[from..].to_vec();
    let eps: Vec<SocketAddr> = log
        .iter()
        .filter_map(|(_, a)| match a {
            RoamAction::SetEndpoint { endpoint, .. } => Some(*endpoint),
            _ => None,
        })
        .collect();
    assert_eq!(
        eps,
        vec![sa("198.51.100.2:51820")],
        "IPv4-only uplink: IPv4 endpoint"
    );
    assert_eq!(count(&log, is_hs), 1, "no live session: handshake at once");
    assert_eq!(count(&log, |a| matches!(a, RoamAction::AddRoute(_))), 2);
}

// ---------------------------------------------------------------------------
// Delegation: confirmed by netifd, problems, re-adding, withdrawal order.

fn is_deleg(a: &RoamAction) -> bool {
    matches!(a, RoamAction::Delegate { .. })
}

fn is_look(a: &RoamAction) -> bool {
    matches!(a, RoamAction::ObserveDelegation { .. })
}

fn warns_with(log: &[(u64, RoamAction)], text: &str) -> usize {
    count(
        log,
        |a| matches!(a, RoamAction::Log(Log { level: Level::Warn, msg }) if msg.contains(text)),
    )
}

#[test]
fn delegated_only_once_netifd_confirms_it() {
    let mut w = World::new(cfg());
    w.observe();
    w.dump();
    assert_eq!(
        w.roam.status().delegation,
        Delegation::Pending(prefix()),
        "asked, not confirmed"
    );
    let log = w.run(300, 100);
    assert_eq!(count(&log, is_look), 1, "one look 300 ms after the command");
    let s = w.roam.status();
    assert_eq!(s.delegation, Delegation::Delegated(prefix()));
    assert_eq!(
        s.downstream,
        vec![("lan".to_string(), Some(prefix()))],
        "lan's assignment from the prefix"
    );
    assert_eq!(s.lan_mtu, Some(1420), "netifd copied the tunnel MTU");
    assert!(s.delegation_problem.is_none());
    assert!(log.iter().any(|(_, a)| matches!(a,
        RoamAction::Log(Log { level: Level::Notice, msg }) if msg == "wg1: 2001:db8:100:1::/64 delegated (confirmed: lan 2001:db8:100:1::/64)")));
}

#[test]
fn a_delegation_netifd_does_not_take_stays_pending_with_one_problem_line() {
    let mut w = World::new(cfg());
    w.netifd.accepts = false;
    w.netifd.problem = Some("network.lan: no ip6assign; the LAN gets no /64 of 2001:db8:100:1::/64 — uci set network.lan.ip6assign=64; uci commit network; /etc/init.d/network reload".into());
    w.observe();
    w.dump();
    let log = w.run(2_500, 100);
    assert_eq!(w.roam.status().delegation, Delegation::Pending(prefix()));
    assert!(
        w.roam.status().delegation_problem.is_none(),
        "not before the bound"
    );
    assert_eq!(warns_with(&log, "delegation problem"), 0);
    let log = w.run(60_000, 100);
    let s = w.roam.status();
    assert_eq!(s.delegation, Delegation::Pending(prefix()));
    assert_eq!(s.delegation_problem, w.netifd.problem);
    assert_eq!(
        warns_with(&log, "delegation problem: network.lan: no ip6assign"),
        1,
        "one log line when it appears, not one per look"
    );
    // netifd is asked again, backing off, not on every look.
    let adds = w.netifd.adds;
    assert!((3..=8).contains(&adds), "{adds} add_dynamic calls in 62 s");
    assert!(count(&log, is_look) <= 62 * 2 + 1);
    // The user fixes it: confirmed at the next look or retry, problem gone.
    w.netifd.accepts = true;
    let log = w.run(31_000, 100);
    let s = w.roam.status();
    assert_eq!(s.delegation, Delegation::Delegated(prefix()));
    assert!(s.delegation_problem.is_none());
    assert!(log.iter().any(|(_, a)| matches!(a,
        RoamAction::Log(Log { level: Level::Notice, msg }) if msg == "wg1: delegation problem resolved")));
}

#[test]
fn no_answer_or_a_failed_command_is_a_problem_too() {
    let mut w = World::new(cfg());
    w.netifd.answering = false;
    w.observe();
    w.dump();
    w.run(3_100, 100);
    assert_eq!(
        w.roam.status().delegation_problem.as_deref(),
        Some("2001:db8:100:1::/64 not confirmed after 3s (no answer yet)")
    );
    // The command itself failed: its error is the problem.
    let mut w = World::new(cfg());
    w.netifd.accepts = false;
    w.observe();
    w.dump();
    let seq = w
        .log
        .iter()
        .find_map(|(_, a)| match a {
            RoamAction::Delegate { seq, .. } => Some(*seq),
            _ => None,
        })
        .unwrap();
    let err = "netifd is not answering (ubus call network add_dynamic: no answer in time) — check 'logread -e netifd'; /etc/init.d/network restart";
    w.ev(RoamEvent::DelegationFailed {
        seq,
        error: err.into(),
    });
    w.run(3_100, 100);
    assert_eq!(w.roam.status().delegation_problem.as_deref(), Some(err));
    // A stale report (an older generation) changes nothing.
    let before = w.roam.status().clone();
    w.ev(RoamEvent::DelegationObserved {
        seq: 0,
        report: DelegationReport::default(),
    });
    assert_eq!(w.roam.status().delegation, before.delegation);
}

#[test]
fn netifd_dropping_the_dynamic_interface_is_noticed_and_repaired() {
    let mut w = World::steady(cfg());
    assert_eq!(w.roam.status().delegation, Delegation::Delegated(prefix()));
    // Looks while delegated are seconds apart, not per 500 ms poll.
    let log = w.run(60_000, 100);
    let looks = count(&log, is_look);
    assert!((10..=13).contains(&looks), "{looks} looks in 60 s");
    // The tunnel device is re-created (ifdown/ifup): netifd deleted the
    // dynamic interface. The periodic look finds it within 5 s.
    w.netifd.held = None;
    let log = w.run(5_500, 100);
    assert_eq!(count(&log, is_deleg), 1, "added again");
    assert_eq!(w.roam.status().delegation, Delegation::Delegated(prefix()));
    // A link event of the tunnel device makes the look happen at once.
    w.netifd.held = None;
    w.uplink(TUN, UplinkChange::LinkDown);
    w.uplink(TUN, UplinkChange::LinkUp);
    let t0 = w.now.mono_ms;
    let log = w.run(1_000, 100);
    let t = times(&log, is_deleg);
    assert_eq!(t.len(), 1);
    assert!(t[0] - t0 <= 500, "re-added within 0.5 s of the link event");
    assert_eq!(w.roam.status().delegation, Delegation::Delegated(prefix()));
}

#[test]
fn withdrawal_deletes_the_default_routes_first_then_removes_then_cleans_the_lan_address() {
    let mut w = World::steady(cfg());
    w.netifd
        .deprecated
        .push(("2001:db8:999::1".parse().unwrap(), 64));
    w.answering = false;
    let log = w.run(40_000, 100);
    let at = times(&log, |a| matches!(a, RoamAction::Withdraw { .. }))[0];
    let same: Vec<&RoamAction> = log
        .iter()
        .filter(|(t, a)| *t == at && (is_route(a) || matches!(a, RoamAction::Withdraw { .. })))
        .map(|(_, a)| a)
        .collect();
    assert_eq!(
        same,
        vec![
            &RoamAction::DelRoute(split("2001:db8:100:1::/64")),
            &RoamAction::DelRoute(split("2001:db8:100::2/128")),
            &RoamAction::AddRoute(route(
                "2001:db8:100::1/128",
                None,
                None,
                TUN,
                1024,
                ROUTE_PROTO
            )),
            &RoamAction::Withdraw {
                prefix: prefix(),
                seq: 2
            },
        ],
        "no ::/0 left when netifd/odhcpd send the goodbye"
    );
    assert!(
        !w.kernel.iter().any(|r| r.is_ours() && r.dst.is_default()),
        "no default route of ours left"
    );
    // netifd left lan's address deprecated; the next look removes it, and
    // only it (the other address is not inside our prefix).
    let removed: Vec<(u64, RoamAction)> = log
        .iter()
        .filter(|(_, a)| matches!(a, RoamAction::RemoveAddress { .. }))
        .cloned()
        .collect();
    assert_eq!(
        removed,
        vec![(
            at + 300,
            RoamAction::RemoveAddress {
                device: "br-lan".into(),
                addr: "2001:db8:100:1::1".parse().unwrap(),
                len: 64
            }
        )]
    );
    assert_eq!(
        w.netifd.deprecated,
        vec![("2001:db8:999::1".parse().unwrap(), 64)]
    );
    assert_eq!(w.roam.status().delegation, Delegation::Withdrawn(prefix()));
    // The hub answers again: routes back first, then the delegation,
    // confirmed well within 2 s of the first answer.
    w.answering = true;
    let log = w.run(10_000, 100);
    let back = times(&log, is_deleg)[0];
    let routes: Vec<u64> = times(
        &log,
        |a| matches!(a, RoamAction::AddRoute(r) if r.dst.is_default()),
    );
    assert_eq!(routes.len(), 2);
    assert!(routes.iter().all(|t| *t == back));
    let idx = |f: &dyn Fn(&RoamAction) -> bool| log.iter().position(|(_, a)| f(a)).unwrap();
    assert!(idx(&|a| matches!(a, RoamAction::AddRoute(r) if r.dst.is_default())) < idx(&is_deleg));
    let confirmed = log
        .iter()
        .find(|(_, a)| matches!(a, RoamAction::Log(Log { msg, .. }) if msg.contains("delegated (confirmed")))
        .map(|(t, _)| *t)
        .unwrap();
    assert!(confirmed - back <= 500, "{}", confirmed - back);
    assert_eq!(w.roam.status().delegation, Delegation::Delegated(prefix()));
    assert!(
        !w.kernel.iter().any(|r| r.dst.prefix_len() == 128
            && r.is_ours()
            && r.dst.addr() == ip("2001:db8:100::1")),
        "the hub route is gone again"
    );
}

#[test]
fn announce_mtu_off_puts_the_lan_ipv6_mtu_back() {
    let w = World::steady(cfg());
    assert_eq!(w.netifd.lan_mtu6, 1420);
    assert_eq!(
        count(&w.log, |a| matches!(a, RoamAction::SetIpv6Mtu { .. })),
        0,
        "on by default: netifd's copy of the tunnel MTU stays"
    );
    let mut c = cfg();
    c.announce_mtu = false;
    let w = World::steady(c);
    assert_eq!(w.netifd.lan_mtu6, 1500);
    assert_eq!(w.roam.status().lan_mtu, Some(1420), "as last seen");
    let mut w = w;
    w.run(6_000, 100);
    assert_eq!(w.roam.status().lan_mtu, Some(1500));
    assert!(
        w.log
            .iter()
            .all(|(_, a)| !matches!(a, RoamAction::SetIpv6Mtu { .. })),
        "once"
    );
}

#[test]
fn removing_the_prefix_withdraws_it_but_keeps_the_routers_own_route() {
    let mut w = World::steady(cfg());
    let mut c = cfg();
    c.prefix = None;
    let a: Vec<RoamAction> = w
        .ev(RoamEvent::Configured(c))
        .into_iter()
        .filter(|a| is_route(a) || matches!(a, RoamAction::Withdraw { .. }))
        .collect();
    assert_eq!(
        a,
        vec![
            RoamAction::DelRoute(split("2001:db8:100:1::/64")),
            RoamAction::Withdraw {
                prefix: prefix(),
                seq: 2
            },
        ]
    );
    w.run(5_000, 100);
    assert!(w.kernel.contains(&split("2001:db8:100::2/128")));
}

#[test]
fn a_downstream_address_change_is_looked_at_at_once() {
    let mut w = World::steady(cfg());
    // netifd took lan's assignment away (e.g. a reload without ip6assign):
    // lan's address changes; the look follows within 0.3 s, not 5 s.
    w.netifd.held = None;
    let t0 = w.now.mono_ms;
    w.uplink(LAN, UplinkChange::AddrRemoved(ip("2001:db8:100:1::1")));
    let log = w.run(1_000, 100);
    let looks = times(&log, is_look);
    assert_eq!(looks[0] - t0, 300, "{looks:?}");
    assert_eq!(count(&log, is_deleg), 1);
    // Events of other interfaces do not cause looks.
    let log = w.run(4_000, 100);
    assert_eq!(count(&log, is_look), 0);
    w.uplink(WAN, UplinkChange::AddrRemoved(ip("100.64.0.9")));
    let log = w.run(500, 100);
    assert_eq!(count(&log, is_look), 0);
}

#[test]
fn delegated_waits_for_odhcpd_to_announce_it() {
    let mut w = World::new(cfg());
    w.netifd.announcing = false;
    w.observe();
    w.dump();
    w.run(900, 100);
    assert_eq!(
        w.roam.status().delegation,
        Delegation::Pending(prefix()),
        "netifd assigned it, odhcpd has not sent an RA with it yet"
    );
    w.netifd.announcing = true;
    w.run(600, 100);
    assert_eq!(w.roam.status().delegation, Delegation::Delegated(prefix()));
    assert_eq!(w.netifd.adds, 1, "not asked twice for that");
}

#[test]
fn a_carrier_netifd_dropped_with_the_device_is_re_added_only_when_the_device_is_back() {
    let mut w = World::steady(cfg());
    // wireguard.sh teardown: the device goes, netifd drops the carrier and
    // leaves lan's address deprecated.
    w.netifd.held = None;
    w.netifd
        .deprecated
        .push(("2001:db8:100:1::1".parse().unwrap(), 64));
    w.ev(RoamEvent::Observed(None));
    w.uplink(TUN, UplinkChange::LinkGone);
    let from = w.log.len();
    for _ in 0..6 {
        w.advance(500);
        w.ev(RoamEvent::Observed(None));
        w.ev(RoamEvent::Tick);
    }
    assert_eq!(
        count(&w.log[from..], is_deleg),
        0,
        "no add while the device is missing"
    );
    assert!(
        w.netifd.deprecated.is_empty(),
        "lan's deprecated address cleaned at once, not at the withdrawal"
    );
    assert_eq!(w.roam.status().delegation, Delegation::Pending(prefix()));
    // The device is back: added again at once.
    let snap = TunnelSnapshot {
        ifindex: TUN,
        endpoint: Some(sa("198.51.100.2:51820")),
        last_handshake: w.handshake,
        rx: w.rx,
        tx: w.tx,
    };
    w.ev(RoamEvent::Observed(Some(snap)));
    let log = w.run(1_000, 100);
    assert_eq!(count(&log, is_deleg), 1);
}

#[test]
fn a_lan_mtu_netifd_reset_to_the_links_is_lowered_again() {
    let mut w = World::steady(cfg());
    // netifd (re)set the LAN device up after copying the tunnel's MTU.
    w.netifd.lan_mtu6 = 1500;
    let log = w.run(6_000, 100);
    let sets: Vec<&RoamAction> = log
        .iter()
        .map(|(_, a)| a)
        .filter(|a| matches!(a, RoamAction::SetIpv6Mtu { .. }))
        .collect();
    assert_eq!(
        sets,
        vec![&RoamAction::SetIpv6Mtu {
            device: "br-lan".into(),
            mtu: 1420
        }]
    );
    assert_eq!(w.netifd.lan_mtu6, 1420);
}

#[test]
fn the_problem_follows_the_current_look_not_an_old_error() {
    let mut w = World::new(cfg());
    w.netifd.accepts = false;
    w.observe();
    w.dump();
    let seq = w
        .log
        .iter()
        .find_map(|(_, a)| match a {
            RoamAction::Delegate { seq, .. } => Some(*seq),
            _ => None,
        })
        .unwrap();
    w.ev(RoamEvent::DelegationFailed {
        seq,
        error: "netifd is not running (…; ubus object network missing) — /etc/init.d/network start"
            .into(),
    });
    w.run(3_100, 100);
    assert!(
        w.roam
            .status()
            .delegation_problem
            .as_deref()
            .unwrap()
            .starts_with("netifd is not running")
    );
    // netifd is back and holds it, but odhcpd stays silent (its RA table
    // is empty after the restart).
    w.netifd.accepts = true;
    w.netifd.announcing = false;
    w.run(10_000, 100);
    assert_eq!(w.roam.status().delegation, Delegation::Pending(prefix()));
    assert_eq!(
        w.roam.status().delegation_problem.as_deref(),
        Some("odhcpd is not announcing 2001:db8:100:1::/64 on br-lan — /etc/init.d/odhcpd reload")
    );
    w.netifd.announcing = true;
    w.run(1_000, 100);
    assert_eq!(w.roam.status().delegation, Delegation::Delegated(prefix()));
    assert!(w.roam.status().delegation_problem.is_none());
}

#[test]
fn a_route_add_that_failed_while_the_tunnel_was_down_is_retried_when_it_is_up() {
    let mut w = World::steady(cfg());
    // netifd restarted: our routes flushed, and the add fails while the
    // link bounces.
    w.kernel.retain(|r| !r.is_ours());
    w.apply_routes = false;
    w.uplink(TUN, UplinkChange::LinkDown);
    w.dump();
    w.run(1_000, 100);
    w.apply_routes = true;
    let mut log = w.uplink(TUN, UplinkChange::LinkUp);
    log.extend(w.dump());
    assert_eq!(
        log.iter()
            .filter(|a| matches!(a, RoamAction::AddRoute(_)))
            .count(),
        2,
        "at once, not after {ROUTE_RETRY_MS} ms"
    );
}

#[test]
fn a_new_delegation_adapter_is_checked_and_asked_at_once() {
    let mut w = World::steady(cfg());
    // Reloaded with another way to delegate: nothing holds it there yet.
    w.netifd.held = None;
    w.roam.look_soon(w.now);
    assert_eq!(w.roam.status().delegation, Delegation::Pending(prefix()));
    let t0 = w.now.mono_ms;
    let log = w.run(1_000, 100);
    let t = times(&log, is_deleg);
    assert_eq!(t.len(), 1);
    assert!(t[0] - t0 <= 300);
    assert_eq!(w.roam.status().delegation, Delegation::Delegated(prefix()));
}

#[test]
fn a_transient_blocker_while_the_user_fixes_things_is_not_reported() {
    let mut w = World::new(cfg());
    w.netifd.accepts = false;
    w.netifd.problem = Some("network.lan: no ip6assign; …".into());
    w.observe();
    w.dump();
    w.run(10_000, 100);
    assert_eq!(
        w.roam.status().delegation_problem.as_deref(),
        Some("network.lan: no ip6assign; …")
    );
    // The user commits ip6assign and reloads: netifd assigns, odhcpd's RA
    // follows ~1 s later; meanwhile the look sees "not announcing".
    w.netifd.accepts = true;
    w.netifd.held = Some(prefix());
    w.netifd.announcing = false;
    let from = w.log.len();
    w.run(1_000, 100);
    w.netifd.announcing = true;
    w.run(1_000, 100);
    assert_eq!(w.roam.status().delegation, Delegation::Delegated(prefix()));
    let warns = warns_with(&w.log[from..], "delegation problem");
    assert_eq!(warns, 0, "nobody is told to reload odhcpd for a 1 s lag");
    // A blocker that lasts is reported, also when it replaces another.
    w.netifd.announcing = false;
    w.uplink(LAN, UplinkChange::AddrRemoved(ip("2001:db8:100:1::1")));
    w.run(8_000, 100);
    assert_eq!(
        w.roam.status().delegation_problem.as_deref(),
        Some("odhcpd is not announcing 2001:db8:100:1::/64 on br-lan — /etc/init.d/odhcpd reload")
    );
}
