//! Issue 13: the hub core and the roam core talk to each other through an
//! in-memory world, the way boringtun tests two `Tunn`s against each other.
//! One simulated clock (10 ms steps) drives both; every action either core
//! returns is carried out on the model, and what the model sees is fed back.
//!
//! Modelled:
//! - the roam's uplink: its WAN address and default gateway (a route table
//!   the roam core's route actions change, dumped back to it), and the
//!   rtnetlink events a DHCP lease on a new network produces;
//! - a NAT in front of the roam with one public mapping for its WireGuard
//!   socket. It changes with the uplink, or silently (a rebind: no event at
//!   the roam). Packets to any other mapping are dropped;
//! - both WireGuard kernels, reduced to what the agents read or cause:
//!   endpoint, latest handshake (wall seconds), rx/tx bytes, sessions by
//!   receiver index with their counters, REKEY_TIMEOUT retransmission and
//!   REKEY_AFTER_TIME rekeying at the roam, and the hub's replay protection
//!   (an initiation is taken only with a TAI64N newer than the last one
//!   taken; the endpoint moves to the source of every packet it takes);
//! - the two agents' loops: the hub reads its kernel every 500 ms (100 ms
//!   after the core asks), its capture hands every packet to the core as it
//!   arrives (transport packets only while the core asked for them, its own
//!   responses always), uci stages and commits, the state file; the roam
//!   reads its kernel every 500 ms, dumps routes after changes, ticks at
//!   `poll_at`; netifd takes the delegation at once;
//! - an on-path attacker who records every initiation the roam sends and
//!   replays them from its own address.
//!
//! Not modelled: cryptography (a packet is genuine because the roam's
//! kernel made it; the capture's Noise verification is tested in
//! `src/hub/capture.rs`, so initiations reach the hub core as the verified
//! `Event::Initiation` the capture makes of them), cookies and rate limits,
//! loss other than dead NAT mappings, reordering, DNS, an IPv6 underlay,
//! WireGuard's sticky source address, the hub initiating handshakes itself.

use std::net::{IpAddr, SocketAddr};

use wgroam::core::hub::{Event, Hub, HubPolicy, Ignored, LinkId, Memory, Peer, PeerSnapshot};
use wgroam::core::hub::{Stamp, UNPROVEN_WAIT_MS, UciPeer, Why};
use wgroam::core::net::{IpNet, RT_TABLE_MAIN, Route};
use wgroam::core::roam::{
    Delegation, DelegationReport, DownstreamReport, HubEndpoint, Roam, RoamAction, RoamConfig,
    RoamEvent, TunnelSnapshot, UplinkChange, UplinkEvent,
};
use wgroam::core::{Action, Now, PublicKey};
use wgroam::hub::state;

const T0: Now = Now::new(1_000_000, 1_700_000_000);
/// The roam's build time: the simulated wall clock is later, so trusted.
const BUILT: u64 = 1_690_000_000;
const STEP_MS: u64 = 10;
/// One way, roam to hub or back.
const LATENCY_MS: u64 = 20;
/// The hub's `poll_ms` default, and its read after a suspicious packet.
const HUB_POLL_MS: u64 = 500;
const OBSERVE_SOON_MS: u64 = 100;
const ROAM_OBSERVE_MS: u64 = 500;
/// WireGuard's timers.
const REKEY_TIMEOUT_MS: u64 = 5_000;
const REKEY_AFTER_MS: u64 = 120_000;
const REJECT_AFTER_MS: u64 = 180_000;
/// Message sizes (UDP payload): what the kernels count in rx/tx.
const INIT_LEN: u64 = 148;
const RESP_LEN: u64 = 92;
const ECHO_LEN: u64 = 128;
const KEEPALIVE_LEN: u64 = 32;

const HUB_IF: &str = "wg0";
const ROAM_IF: &str = "wg1";
const SECTION: &str = "roam1";
const HUB_KEY: PublicKey = PublicKey([0xee; 32]);
const ROAM_KEY: PublicKey = PublicKey([0x01; 32]);
const LINK: LinkId = LinkId {
    ifindex: 7,
    public_key: HUB_KEY,
};
const TUN: u32 = 9;
const WAN: u32 = 2;
const LAN: u32 = 3;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn hub_addr() -> SocketAddr {
    sa("198.51.100.2:51820")
}

fn attacker() -> IpAddr {
    ip("192.0.2.66")
}

fn prefix() -> IpNet {
    "2001:db8:100:1::/64".parse().unwrap()
}

fn v4_default(via: IpAddr) -> Route {
    Route {
        table: RT_TABLE_MAIN,
        dst: IpNet::default_route(false),
        src: None,
        gateway: Some(via),
        oif: Some(WAN),
        metric: 0,
        proto: 16,
    }
}

fn roam_config() -> RoamConfig {
    let mut c = RoamConfig::new(ROAM_IF, HUB_KEY, vec![HubEndpoint::Addr(hub_addr())]);
    c.prefix = Some(prefix());
    c.tunnel_addr = Some("2001:db8:100::2".parse().unwrap());
    c.hub_tunnel_addr = Some(ip("2001:db8:100::1"));
    c
}

// ---------------------------------------------------------------------------
// The wire

/// What the hub's capture (or the kernels) can tell of a WireGuard packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Msg {
    Initiation {
        key: PublicKey,
        stamp: Stamp,
        sender: u32,
    },
    Response {
        sender: u32,
        receiver: u32,
    },
    /// Transport data; `echo`: an ICMPv6 echo request (heartbeat, probe)
    /// the other side answers.
    Data {
        receiver: u32,
        counter: u64,
        len: u64,
        echo: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct Packet {
    at: u64,
    from: SocketAddr,
    to: SocketAddr,
    msg: Msg,
}

// ---------------------------------------------------------------------------
// The kernels

#[derive(Debug, Clone, Copy)]
struct Session {
    local: u32,
    remote: u32,
    counter: u64,
    born: u64,
}

/// The roam's WireGuard peer for the hub.
#[derive(Debug, Default)]
struct RoamWg {
    endpoint: Option<SocketAddr>,
    last_handshake: Option<u64>,
    rx: u64,
    tx: u64,
    session: Option<Session>,
    /// Our sender index of the initiation awaiting its response, and when.
    initiating: Option<(u32, u64)>,
    attempts: u32,
    /// A packet waits for the session.
    queued: bool,
}

#[derive(Debug, Clone, Copy)]
struct Keypair {
    /// The hub's index: the receiver index in the roam's transport packets.
    index: u32,
    remote: u32,
    born: u64,
    /// Confirmed by the first transport packet under it.
    confirmed: bool,
    max_counter: Option<u64>,
}

/// The hub's WireGuard peer for the roam.
#[derive(Debug, Default)]
struct HubWg {
    endpoint: Option<SocketAddr>,
    last_handshake: Option<u64>,
    rx: u64,
    tx: u64,
    /// The newest TAI64N taken: WireGuard's replay protection.
    stamp: Option<Stamp>,
    keypairs: Vec<Keypair>,
    counter: u64,
}

// ---------------------------------------------------------------------------
// The world

struct World {
    /// Simulated ms since T0.
    t: u64,
    next_index: u32,
    wire: Vec<Packet>,
    /// The roam's current public mapping at the NAT.
    nat: SocketAddr,

    roam: Roam,
    roam_wg: RoamWg,
    roam_routes: Vec<Route>,
    roam_routes_dirty: bool,
    wan_addr: IpAddr,
    netifd_held: Option<IpNet>,
    roam_next_observe: u64,
    roam_withdrew: bool,

    hub_wg: HubWg,
    /// The hub's WireGuard link (a reboot makes a new one).
    hub_link: LinkId,
    /// The hub agent, while one runs.
    hub: Option<Hub>,
    hub_next_poll: u64,
    hub_capture_transport: bool,
    /// Every action the hub agents asked for (logs left out), with the time.
    hub_actions: Vec<(u64, Action)>,
    /// uci: committed and staged endpoint of the roam's peer section.
    uci_committed: Option<SocketAddr>,
    uci_staged: Option<SocketAddr>,
    /// The state file as the hub agent last wrote it.
    state_file: Memory,
    /// Every endpoint the hub's kernel had, with the time it took it.
    hub_kernel_trace: Vec<(u64, Option<SocketAddr>)>,

    /// Initiations the attacker recorded on the wire.
    tap: Vec<Msg>,
    replaying: bool,
    replays_sent: u64,
}

impl World {
    /// Both sides up, nobody talked yet; the hub agent runs if `hub_agent`.
    fn new(hub_agent: bool) -> Self {
        let mut w = World {
            t: 0,
            next_index: 0x1000,
            wire: Vec::new(),
            nat: sa("203.0.113.5:30001"),
            roam: Roam::new(roam_config(), BUILT).unwrap(),
            roam_wg: RoamWg {
                endpoint: Some(hub_addr()),
                ..RoamWg::default()
            },
            roam_routes: vec![v4_default(ip("100.64.0.1"))],
            roam_routes_dirty: true,
            wan_addr: ip("100.64.0.2"),
            netifd_held: None,
            roam_next_observe: 0,
            roam_withdrew: false,
            hub_wg: HubWg::default(),
            hub_link: LINK,
            hub: None,
            hub_next_poll: 0,
            hub_capture_transport: false,
            hub_actions: Vec::new(),
            uci_committed: None,
            uci_staged: None,
            state_file: Memory::default(),
            hub_kernel_trace: vec![(0, None)],
            tap: Vec::new(),
            replaying: false,
            replays_sent: 0,
        };
        if hub_agent {
            w.start_hub(Memory::default());
        }
        w
    }

    /// Started, the first handshake done and confirmed at the hub, quiet.
    fn established() -> Self {
        let mut w = World::new(true);
        let nat = w.nat;
        let took = w.run_until(5_000, |w| {
            w.hub_peer().is_some_and(|p| p.endpoint == Some(nat)) && w.roam.status().tunnel_up
        });
        assert!(took.is_some(), "no tunnel within 5 s");
        w.run(10_000);
        w
    }

    fn now(&self) -> Now {
        Now::new(T0.mono_ms + self.t, T0.wall + self.t / 1000)
    }

    fn wall(&self) -> u64 {
        self.now().wall
    }

    /// A TAI64N label from the wall clock, as the roam's kernel stamps its
    /// initiations (strictly increasing with time).
    fn tai64n(&self) -> Stamp {
        (
            (1 << 62) + 10 + self.wall(),
            ((self.t % 1000) * 1_000_000) as u32,
        )
    }

    fn fresh_index(&mut self) -> u32 {
        self.next_index += 1;
        self.next_index
    }

    fn send(&mut self, from: SocketAddr, to: SocketAddr, msg: Msg) {
        self.wire.push(Packet {
            at: self.t + LATENCY_MS,
            from,
            to,
            msg,
        });
    }

    fn hub_peer(&self) -> Option<&Peer> {
        self.hub.as_ref()?.ifaces.get(HUB_IF)?.peers.get(&ROAM_KEY)
    }

    fn hub_ignored(&self, why: Ignored) -> u64 {
        self.hub
            .as_ref()
            .and_then(|h| h.ifaces[HUB_IF].ignored.get(&why).copied())
            .unwrap_or(0)
    }

    // -- time ----------------------------------------------------------------

    fn step(&mut self) {
        self.t += STEP_MS;
        // The wire.
        let (due, later): (Vec<Packet>, Vec<Packet>) =
            self.wire.drain(..).partition(|p| p.at <= self.t);
        self.wire = later;
        for p in due {
            if p.to == hub_addr() {
                self.hub_receives(p);
            } else if p.to == self.nat {
                self.roam_receives(p);
            }
        }
        // The attacker: one replay every 50 ms, a new source port each time.
        if self.replaying && self.t % 50 == 0 && !self.tap.is_empty() {
            let msg = self.tap[(self.replays_sent as usize) % self.tap.len()];
            let from = SocketAddr::new(attacker(), 40_000 + (self.replays_sent % 20_000) as u16);
            self.replays_sent += 1;
            self.send(from, hub_addr(), msg);
        }
        // The roam's kernel: retransmit an unanswered initiation.
        if let Some((_, at)) = self.roam_wg.initiating
            && self.t - at >= REKEY_TIMEOUT_MS
        {
            self.roam_wg.attempts += 1;
            if self.roam_wg.attempts > 18 {
                self.roam_wg.initiating = None;
                self.roam_wg.queued = false;
            } else {
                self.roam_initiate();
            }
        }
        // The roam agent's loop.
        if self.t >= self.roam_next_observe {
            self.roam_next_observe = self.t + ROAM_OBSERVE_MS;
            let snap = TunnelSnapshot {
                ifindex: TUN,
                endpoint: self.roam_wg.endpoint,
                last_handshake: self.roam_wg.last_handshake,
                rx: self.roam_wg.rx,
                tx: self.roam_wg.tx,
            };
            self.roam_feed(RoamEvent::Observed(Some(snap)));
        }
        if self.roam_routes_dirty {
            self.roam_routes_dirty = false;
            let routes = self.roam_routes.clone();
            self.roam_feed(RoamEvent::RoutesObserved(routes));
        }
        if self
            .roam
            .poll_at()
            .is_some_and(|at| at <= T0.mono_ms + self.t)
        {
            self.roam_feed(RoamEvent::Tick);
        }
        // The hub agent's loop.
        if self.hub.is_some() && self.t >= self.hub_next_poll {
            self.hub_next_poll = self.t + HUB_POLL_MS;
            let peers = vec![PeerSnapshot {
                key: ROAM_KEY,
                endpoint: self.hub_wg.endpoint,
                last_handshake: self.hub_wg.last_handshake,
                rx: self.hub_wg.rx,
                tx: self.hub_wg.tx,
            }];
            self.hub_feed(Event::Link {
                iface: HUB_IF.into(),
                link: Some(self.hub_link),
            });
            self.hub_feed(Event::Observed {
                iface: HUB_IF.into(),
                peers: Some(peers),
            });
            self.hub_feed(Event::Tick);
        }
        if self.hub_kernel_trace.last().map(|x| x.1) != Some(self.hub_wg.endpoint) {
            self.hub_kernel_trace.push((self.t, self.hub_wg.endpoint));
        }
        let d = self.roam.status().delegation;
        self.roam_withdrew |= matches!(d, Delegation::Withdrawn(_));
    }

    fn run(&mut self, ms: u64) {
        let end = self.t + ms;
        while self.t < end {
            self.step();
        }
    }

    /// Steps until `cond` holds, at most `ms`; how long it took.
    fn run_until(&mut self, ms: u64, cond: impl Fn(&World) -> bool) -> Option<u64> {
        let start = self.t;
        while self.t < start + ms {
            if cond(self) {
                return Some(self.t - start);
            }
            self.step();
        }
        cond(self).then_some(self.t - start)
    }

    // -- the roam ------------------------------------------------------------

    fn roam_feed(&mut self, e: RoamEvent) {
        let actions = self.roam.handle(self.now(), e);
        let mut answers = Vec::new();
        for a in actions {
            match a {
                RoamAction::SetEndpoint { endpoint, .. } => self.roam_wg.endpoint = Some(endpoint),
                RoamAction::Handshake { .. } => {
                    // The hub peer re-created: no keys, counters from zero;
                    // the probe then makes WireGuard initiate.
                    self.roam_wg = RoamWg {
                        endpoint: self.roam_wg.endpoint,
                        ..RoamWg::default()
                    };
                    self.roam_send_echo();
                }
                RoamAction::SendHeartbeat { .. } => self.roam_send_echo(),
                RoamAction::AddRoute(r) => {
                    if !self.roam_routes.iter().any(|k| k.same_as(&r)) {
                        self.roam_routes.push(r);
                    }
                    self.roam_routes_dirty = true;
                }
                RoamAction::DelRoute(r) => {
                    self.roam_routes.retain(|k| !k.same_as(&r));
                    self.roam_routes_dirty = true;
                }
                RoamAction::Delegate { prefix, .. } => self.netifd_held = Some(prefix),
                RoamAction::Withdraw { .. } => self.netifd_held = None,
                RoamAction::ObserveDelegation { prefix, seq, .. } => {
                    let assigned = self
                        .netifd_held
                        .filter(|h| *h == prefix)
                        .and_then(|h| IpNet::truncate(h.addr(), 64));
                    let report = DelegationReport {
                        carried: self.netifd_held,
                        downstream: vec![DownstreamReport {
                            name: "lan".into(),
                            device: Some("br-lan".into()),
                            ifindex: Some(LAN),
                            assigned,
                            mtu6: Some(1420),
                            link_mtu: Some(1500),
                            announced: assigned.map(|_| true),
                            deprecated: Vec::new(),
                        }],
                        problem: None,
                        tunnel_mtu: Some(1420),
                    };
                    answers.push(RoamEvent::DelegationObserved { seq, report });
                }
                _ => {}
            }
        }
        for e in answers {
            self.roam_feed(e);
        }
    }

    /// An ICMPv6 echo into the tunnel: sent under the session, or queued
    /// while WireGuard initiates one.
    fn roam_send_echo(&mut self) {
        let live = self
            .roam_wg
            .session
            .filter(|s| self.t - s.born < REJECT_AFTER_MS);
        match live {
            Some(s) => {
                self.roam_send_data(ECHO_LEN, true);
                if self.t - s.born >= REKEY_AFTER_MS && self.roam_wg.initiating.is_none() {
                    self.roam_initiate();
                }
            }
            None => {
                self.roam_wg.queued = true;
                if self.roam_wg.initiating.is_none() {
                    self.roam_wg.attempts = 0;
                    self.roam_initiate();
                }
            }
        }
    }

    fn roam_send_data(&mut self, len: u64, echo: bool) {
        let Some(s) = self.roam_wg.session.as_mut() else {
            return;
        };
        s.counter += 1;
        let msg = Msg::Data {
            receiver: s.remote,
            counter: s.counter,
            len,
            echo,
        };
        self.roam_wg.tx += len;
        let to = self.roam_wg.endpoint.expect("endpoint set");
        self.send(self.nat, to, msg);
    }

    fn roam_initiate(&mut self) {
        let sender = self.fresh_index();
        let msg = Msg::Initiation {
            key: ROAM_KEY,
            stamp: self.tai64n(),
            sender,
        };
        self.roam_wg.initiating = Some((sender, self.t));
        self.roam_wg.tx += INIT_LEN;
        self.tap.push(msg);
        let to = self.roam_wg.endpoint.expect("endpoint set");
        self.send(self.nat, to, msg);
    }

    fn roam_receives(&mut self, p: Packet) {
        match p.msg {
            Msg::Response { sender, receiver } => {
                if self.roam_wg.initiating.map(|i| i.0) != Some(receiver) {
                    return;
                }
                self.roam_wg.initiating = None;
                self.roam_wg.session = Some(Session {
                    local: receiver,
                    remote: sender,
                    counter: 0,
                    born: self.t,
                });
                self.roam_wg.last_handshake = Some(self.wall());
                self.roam_wg.rx += RESP_LEN;
                // The queued packet, or a keepalive, confirms the session.
                if std::mem::take(&mut self.roam_wg.queued) {
                    self.roam_send_data(ECHO_LEN, true);
                } else {
                    self.roam_send_data(KEEPALIVE_LEN, false);
                }
            }
            Msg::Data { receiver, len, .. } => {
                if self.roam_wg.session.is_some_and(|s| s.local == receiver) {
                    self.roam_wg.rx += len;
                }
            }
            Msg::Initiation { .. } => {}
        }
    }

    /// A DHCP lease on another network: address and default route go, new
    /// ones come, and the NAT in front is another one.
    fn uplink_change(&mut self, addr: &str, gateway: &str, public: SocketAddr) {
        let ev = |change| {
            RoamEvent::Uplink(UplinkEvent {
                ifindex: WAN,
                change,
            })
        };
        self.nat = public;
        let old = std::mem::replace(&mut self.wan_addr, ip(addr));
        self.roam_feed(ev(UplinkChange::AddrRemoved(old)));
        self.roam_routes
            .retain(|r| !r.dst.is_default() || r.dst.is_ipv6());
        self.roam_feed(ev(UplinkChange::RouteChanged));
        self.roam_feed(RoamEvent::RoutesObserved(self.roam_routes.clone()));
        self.roam_feed(ev(UplinkChange::AddrAdded(ip(addr))));
        self.roam_routes.push(v4_default(ip(gateway)));
        self.roam_feed(ev(UplinkChange::RouteChanged));
        self.roam_feed(RoamEvent::RoutesObserved(self.roam_routes.clone()));
    }

    // -- the hub -------------------------------------------------------------

    /// Starts a hub agent with `memory` as its state file; uci keeps what
    /// earlier agents staged and committed.
    fn start_hub(&mut self, memory: Memory) {
        self.hub = Some(Hub::new(
            HubPolicy::default(),
            &[HUB_IF.to_string()],
            memory,
        ));
        self.hub_next_poll = self.t;
        self.hub_capture_transport = false;
        self.hub_feed(Event::Configured {
            iface: HUB_IF.into(),
            peers: vec![UciPeer {
                section: SECTION.into(),
                key: ROAM_KEY,
                endpoint: self.uci_staged.or(self.uci_committed),
            }],
        });
        if self.uci_staged.is_some() && self.uci_staged != self.uci_committed {
            self.hub_feed(Event::StagedBeforeStart);
        }
    }

    /// The hub router reboots: netifd makes the link and the peer anew from
    /// uci (committed values only); WireGuard forgot every key and stamp.
    fn reboot_hub(&mut self) {
        self.kill_hub();
        self.uci_staged = None;
        self.hub_link.ifindex += 1;
        self.hub_wg = HubWg {
            endpoint: self.uci_committed,
            ..HubWg::default()
        };
    }

    /// kill -9: whatever was not written is lost.
    fn kill_hub(&mut self) {
        self.hub = None;
        self.hub_capture_transport = false;
    }

    fn hub_feed(&mut self, e: Event) {
        let now = self.now();
        let Some(hub) = self.hub.as_mut() else {
            return;
        };
        let actions = hub.handle(now, e);
        let soon = hub.take_observe_soon();
        let mut persist = false;
        for a in actions {
            if !matches!(a, Action::Log(_)) {
                self.hub_actions.push((self.t, a.clone()));
            }
            match a {
                Action::SetEndpoint { endpoint, .. } => self.hub_wg.endpoint = Some(endpoint),
                Action::Rearm { endpoint, .. } => {
                    let live = self
                        .hub_wg
                        .last_handshake
                        .is_some_and(|h| now.wall.saturating_sub(h) < REJECT_AFTER_MS / 1000);
                    if !live {
                        // Removed and added again: keys, stamp and counters gone.
                        self.hub_wg = HubWg::default();
                    }
                    self.hub_wg.endpoint = Some(endpoint);
                }
                Action::StageEndpoint { endpoint, .. } => self.uci_staged = Some(endpoint),
                Action::CommitUci => {
                    persist = true;
                    self.uci_committed = self.uci_staged.or(self.uci_committed);
                    self.uci_staged = None;
                }
                Action::Persist => persist = true,
                Action::CaptureTransport { on, .. } => self.hub_capture_transport = on,
                Action::Log(_) => {}
            }
        }
        if persist && let Some(hub) = &self.hub {
            self.state_file = state::from_json(&state::to_json(hub));
        }
        if soon {
            self.hub_next_poll = self.hub_next_poll.min(self.t + OBSERVE_SOON_MS);
        }
    }

    /// A packet reaches the hub's port: the capture sees it first, then
    /// WireGuard takes it or drops it.
    fn hub_receives(&mut self, p: Packet) {
        let iface = HUB_IF.to_string();
        match p.msg {
            Msg::Initiation { key, stamp, sender } => {
                // Verified by the capture (mac1, static key, timestamp): what
                // it hands the core for a genuine initiation, replay or not.
                self.hub_feed(Event::Initiation {
                    iface,
                    from: p.from,
                    key,
                    stamp,
                    sender_index: sender,
                });
                if self.hub_wg.stamp.is_some_and(|s| stamp <= s) {
                    return; // WireGuard's replay protection
                }
                self.hub_wg.stamp = Some(stamp);
                self.hub_wg.endpoint = Some(p.from);
                self.hub_wg.rx += INIT_LEN;
                let index = self.fresh_index();
                self.hub_wg.keypairs.push(Keypair {
                    index,
                    remote: sender,
                    born: self.t,
                    confirmed: false,
                    max_counter: None,
                });
                self.hub_wg.tx += RESP_LEN;
                self.send(
                    hub_addr(),
                    p.from,
                    Msg::Response {
                        sender: index,
                        receiver: sender,
                    },
                );
                self.hub_feed(Event::Response {
                    iface: HUB_IF.into(),
                    sender_index: index,
                    receiver_index: sender,
                });
            }
            Msg::Data {
                receiver,
                counter,
                len,
                echo,
            } => {
                if self.hub_capture_transport {
                    self.hub_feed(Event::Transport {
                        iface,
                        from: p.from,
                        receiver_index: receiver,
                        counter,
                        len,
                    });
                }
                let t = self.t;
                let Some(kp) = self.hub_wg.keypairs.iter_mut().find(|k| {
                    k.index == receiver
                        && t - k.born < REJECT_AFTER_MS
                        && k.max_counter.is_none_or(|m| counter > m)
                }) else {
                    return;
                };
                kp.max_counter = Some(counter);
                let remote = kp.remote;
                if !kp.confirmed {
                    // The responder's handshake completes with the first
                    // transport packet under the new keys.
                    kp.confirmed = true;
                    self.hub_wg.last_handshake = Some(self.wall());
                    let n = self.hub_wg.keypairs.len();
                    self.hub_wg.keypairs.drain(..n.saturating_sub(3));
                }
                // Authenticated: WireGuard roams to the packet's source.
                self.hub_wg.rx += len;
                self.hub_wg.endpoint = Some(p.from);
                if echo {
                    self.hub_wg.counter += 1;
                    self.hub_wg.tx += ECHO_LEN;
                    let msg = Msg::Data {
                        receiver: remote,
                        counter: self.hub_wg.counter,
                        len: ECHO_LEN,
                        echo: false,
                    };
                    self.send(hub_addr(), p.from, msg);
                }
            }
            Msg::Response { .. } => {}
        }
    }

    /// Hub actions since `from` (an index into `hub_actions`) that name `ip`.
    fn hub_actions_for(&self, from: usize, ip: IpAddr) -> Vec<(u64, Action)> {
        self.hub_actions[from..]
            .iter()
            .filter(|(_, a)| match a {
                Action::SetEndpoint { endpoint, .. }
                | Action::Rearm { endpoint, .. }
                | Action::StageEndpoint { endpoint, .. } => endpoint.ip() == ip,
                _ => false,
            })
            .cloned()
            .collect()
    }

    /// Hub actions since `from` that move or stage anything, or commit.
    fn hub_moves(&self, from: usize) -> Vec<(u64, Action)> {
        self.hub_actions[from..]
            .iter()
            .filter(|(_, a)| {
                matches!(
                    a,
                    Action::SetEndpoint { .. }
                        | Action::Rearm { .. }
                        | Action::StageEndpoint { .. }
                        | Action::CommitUci
                )
            })
            .cloned()
            .collect()
    }
}

/// Everything the user sees of the hub agrees on `ep`: the kernel's
/// endpoint, the agent's confirmed one (`status`), and uci.
fn hub_follows(w: &World, ep: SocketAddr) -> bool {
    w.hub_wg.endpoint == Some(ep)
        && w.hub_peer().is_some_and(|p| p.endpoint == Some(ep))
        && w.uci_staged.or(w.uci_committed) == Some(ep)
}

// ---------------------------------------------------------------------------
// 1. Uplink change at the roam

#[test]
fn an_uplink_change_is_followed_by_the_hub_and_the_tunnel_is_up_again() {
    let mut w = World::established();
    let handshake_before = w.roam.status().last_handshake;
    let forced_before = w.roam.status().handshakes_forced;
    let new = sa("198.18.7.9:61001");
    w.uplink_change("10.20.0.7", "10.20.0.1", new);
    // Debounce (200 ms), the initiation's way to the hub (20 ms): the hub's
    // kernel is there; its handshake completes a round trip later.
    let kernel = w.run_until(3_000, |w| w.hub_wg.endpoint == Some(new));
    assert!(kernel.is_some_and(|ms| ms <= 300), "hub kernel: {kernel:?}");
    let up = w.run_until(3_000, |w| {
        w.roam.status().last_handshake > handshake_before && w.roam.status().tunnel_up
    });
    let up = kernel.unwrap() + up.expect("the roam sees a fresh handshake");
    // Seen at the roam agent's next read of its kernel.
    assert!(
        up <= 300 + ROAM_OBSERVE_MS + 100,
        "tunnel up again after {up} ms"
    );
    // Confirmed (status, uci) at the hub's next read of its kernel.
    let all = w.run_until(3_000, |w| hub_follows(w, new));
    let all = kernel.unwrap() + all.expect("confirmed and staged");
    assert!(all <= 300 + HUB_POLL_MS + 100, "confirmed after {all} ms");
    let p = w.hub_peer().unwrap();
    assert_eq!(
        p.last_change.unwrap().why,
        Why::Initiation,
        "a fresh stamp the hub trusts: moved at once, not left to the kernel"
    );
    // And it stays that way: one reaction, one forced handshake, the
    // LAN's prefix never withdrawn.
    w.run(60_000);
    assert!(hub_follows(&w, new));
    assert!(w.roam.status().tunnel_up);
    assert_eq!(w.roam.status().handshakes_forced, forced_before + 1);
    assert!(!w.roam_withdrew);
    assert_eq!(w.roam.status().delegation, Delegation::Delegated(prefix()));
}

// ---------------------------------------------------------------------------
// 2. Silent NAT rebind

#[test]
fn a_silent_nat_rebind_is_followed_through_the_kernel_within_a_heartbeat() {
    let mut w = World::established();
    let forced_before = w.roam.status().handshakes_forced;
    let mark = w.hub_actions.len();
    // The NAT forgets the mapping and makes a new one for the next packet
    // out; the roam's interfaces do not change: no event there.
    let new = SocketAddr::new(w.nat.ip(), 30777);
    w.nat = new;
    let interval = roam_config().heartbeat_interval_s * 1000;
    let kernel = w.run_until(3 * interval, |w| w.hub_wg.endpoint == Some(new));
    assert!(
        kernel.is_some_and(|ms| ms <= interval + LATENCY_MS),
        "the next heartbeat moves the hub's kernel: {kernel:?}"
    );
    let all = w.run_until(3 * interval, |w| hub_follows(w, new));
    let all = kernel.unwrap() + all.expect("confirmed and staged");
    assert!(all <= interval + LATENCY_MS + HUB_POLL_MS + 100, "{all} ms");
    let p = w.hub_peer().unwrap();
    assert_eq!(p.last_change.unwrap().why, Why::Kernel);
    assert!(
        !w.hub_moves(mark)
            .iter()
            .any(|(_, a)| matches!(a, Action::SetEndpoint { .. } | Action::Rearm { .. })),
        "the kernel roamed by itself; the agent only confirmed it"
    );
    w.run(60_000);
    assert!(hub_follows(&w, new));
    assert!(w.roam.status().tunnel_up);
    assert_eq!(
        w.roam.status().handshakes_forced,
        forced_before,
        "a heartbeat was enough: no session was given up"
    );
    assert!(!w.roam_withdrew);
}

// ---------------------------------------------------------------------------
// 3. Hub restart

#[test]
fn a_restarted_hub_moves_nothing_by_itself_and_follows_the_next_handshake() {
    let mut w = World::established();
    w.run(20_000);
    let ep = w.nat;
    assert!(hub_follows(&w, ep));
    w.kill_hub();
    w.run(3_000);
    let mark = w.hub_actions.len();
    let memory = w.state_file.clone();
    w.start_hub(memory);
    // The first read of the kernel: the state file matches (same link, no
    // handshake since it was written), so `status` shows the endpoint and
    // the stamp is trusted at once.
    w.run(HUB_POLL_MS);
    let p = w.hub_peer().unwrap();
    assert_eq!(p.endpoint, Some(ep), "the persisted endpoint, trusted");
    assert!(p.trusted);
    w.run(60_000);
    assert_eq!(w.hub_moves(mark), vec![], "nothing moves by itself");
    assert!(hub_follows(&w, ep));
    assert!(
        w.hub_kernel_trace
            .iter()
            .all(|(t, e)| *t < 33_000 || *e == Some(ep)),
        "{:?}",
        w.hub_kernel_trace
    );
    // The roam's next genuine handshake (a new uplink) is followed on the
    // fast path: the restarted agent trusts its stamp.
    let new = sa("198.18.7.9:61002");
    w.uplink_change("10.20.0.8", "10.20.0.1", new);
    let all = w.run_until(3_000, |w| hub_follows(w, new));
    assert!(
        all.is_some_and(|ms| ms <= 300 + HUB_POLL_MS + 100),
        "{all:?}"
    );
    assert_eq!(
        w.hub_peer().unwrap().last_change.unwrap().why,
        Why::Initiation
    );
    assert!(w.roam.status().tunnel_up);
}

// ---------------------------------------------------------------------------
// 4. Replayed initiations

#[test]
fn replays_recorded_before_the_hub_started_never_move_it_and_a_genuine_move_is_followed() {
    // An agent ran at first and learned where the roam was.
    let mut w = World::established();
    let first = w.nat;
    assert_eq!(w.uci_staged, Some(first));
    // Then no agent runs while the roam moves twice: the attacker records
    // every initiation (from the start on), none of which the next agent
    // sees.
    w.kill_hub();
    w.uplink_change("10.20.0.7", "10.20.0.1", sa("198.18.7.9:61001"));
    w.run(30_000);
    let there = sa("198.18.7.9:61077");
    w.nat = there; // a silent rebind too
    w.run(30_000);
    assert_eq!(w.hub_wg.endpoint, Some(there));
    let recorded = w.tap.len();
    assert!(recorded >= 2, "{recorded} initiations recorded");
    // The agent starts with its state file lost; the attacker replays all of
    // them, 20 a second, from its own address, from now on.
    w.start_hub(Memory::default());
    w.replaying = true;
    let mark = w.hub_actions.len();
    w.run(30_000);
    // The kernel stays with the roam, and the agent confirms it from the
    // roam's data: replays the kernel rejects (it holds a newer stamp) are
    // not counted as the peer's handshake traffic, so they cannot keep rx
    // growth from proving where the peer is.
    assert_eq!(w.hub_wg.endpoint, Some(there));
    assert_eq!(w.hub_peer().unwrap().endpoint, Some(there));
    assert!(
        w.hub_ignored(Ignored::Unproven) + w.hub_ignored(Ignored::Replay) >= 500,
        "the core saw the replays: {} unproven, {} replay",
        w.hub_ignored(Ignored::Unproven),
        w.hub_ignored(Ignored::Replay)
    );
    // A genuine move while the replays go on: followed (left to the kernel,
    // which completes the handshake there), and trusted from then on.
    let new = sa("198.18.9.1:62000");
    w.uplink_change("10.30.0.7", "10.30.0.1", new);
    let all = w.run_until(3_000, |w| hub_follows(w, new));
    assert!(
        all.is_some_and(|ms| ms <= 300 + HUB_POLL_MS + 100),
        "{all:?}"
    );
    assert!(w.hub_peer().unwrap().trusted);
    w.run(60_000);
    assert!(w.replays_sent >= 1_500, "{} replays", w.replays_sent);
    // Never the attacker: not in the kernel for a single step, not asked
    // for by the agent, not staged, not committed.
    let evil: Vec<_> = w
        .hub_kernel_trace
        .iter()
        .filter(|(_, e)| e.is_some_and(|e| e.ip() == attacker()))
        .collect();
    assert!(
        evil.is_empty(),
        "hub kernel at the attacker {} times, first {:?}",
        evil.len(),
        evil.first()
    );
    assert_eq!(w.hub_actions_for(mark, attacker()), vec![]);
    assert!(w.uci_staged.is_none_or(|e| e.ip() != attacker()));
    assert!(w.uci_committed.is_none_or(|e| e.ip() != attacker()));
    assert!(hub_follows(&w, new));
    assert!(w.roam.status().tunnel_up);
}

/// The documented limit (README, "Limits"): WireGuard itself takes a replay
/// when it forgot the peer's timestamp. After a reboot of the hub router the
/// kernel moves to the attacker on each replay newer than the last it took;
/// the agent puts it back within a second each time, never stages or
/// commits it, and the roam's own handshake is followed.
#[test]
fn after_a_hub_reboot_the_kernel_takes_replays_and_the_agent_undoes_each() {
    let mut w = World::established();
    // Stop cleanly: the endpoint is committed, netifd brings it back.
    let home = w.nat;
    w.hub_feed(Event::Stop);
    assert_eq!(w.uci_committed, Some(home));
    w.reboot_hub();
    w.run(2_000);
    w.start_hub(Memory::default());
    w.replaying = true;
    let mark = w.hub_actions.len();
    w.run(40_000);
    // Each stay at the attacker ends within the agent's wait for an unproven
    // initiation's handshake (1 s) and one read of the kernel.
    let trace = &w.hub_kernel_trace;
    let at_attacker = |e: &Option<SocketAddr>| e.is_some_and(|e| e.ip() == attacker());
    let mut evil = 0;
    let mut since = None;
    for (t, e) in trace.iter().chain([(w.t, None)].iter()) {
        match (since, at_attacker(e)) {
            (None, true) => {
                evil += 1;
                since = Some(*t);
            }
            (Some(from), false) => {
                assert!(
                    t - from <= UNPROVEN_WAIT_MS + HUB_POLL_MS,
                    "at the attacker {from}..{t}"
                );
                since = None;
            }
            _ => {}
        }
    }
    assert!(evil >= 1, "the kernel took a replay: {trace:?}");
    assert_eq!(
        w.hub_actions_for(mark, attacker())
            .iter()
            .filter(|(_, a)| matches!(a, Action::StageEndpoint { .. }))
            .count(),
        0
    );
    assert!(w.uci_staged.is_none_or(|e| e.ip() != attacker()));
    assert!(
        w.hub_peer()
            .unwrap()
            .endpoint
            .is_none_or(|e| e.ip() != attacker())
    );
    // The roam found its session gone and handshook again: followed.
    assert!(hub_follows(&w, home), "{:?}", w.hub_peer());
    assert!(w.roam.status().tunnel_up);
}
