//! The hub as the [`crate::driver`] runs it: reads the kernel's WireGuard
//! view every `poll_ms` while anything moves (and at once after a link
//! event or, once quiet, a captured packet: [`Cadence`]), drains captured
//! packets as they arrive, hands everything to the sans-IO [`Hub`] and
//! carries out its actions through the adapters.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use crate::config::Config;
use crate::core::hub::cadence::{Cadence, Read};
use crate::core::hub::{Event, Hub, HubPolicy, LinkId, UciPeer};
use crate::core::{Action, Level, Now};
use crate::driver::Role;
use crate::hub::capture::HubCapture;
use crate::hub::status::{self, IfaceRuntime};
use crate::os::linkwatch::LinkWatch;
use crate::os::syslog::emit;
use crate::os::wg::WireGuard;

/// Where the hub finds its peers in uci and stages what it learned.
pub trait NetworkConfig {
    /// The `wireguard_<iface>` peer sections of `network`.
    fn peers(&self, iface: &str) -> Result<Vec<UciPeer>, String>;
    /// Stages `endpoint_host`/`endpoint_port` of sections (RAM only), all in
    /// one uci transaction: 50 peers moving at once cost one `uci batch`.
    fn stage_endpoints(&self, moves: &[(String, SocketAddr)]) -> Result<(), String>;
    /// Writes staged changes to flash.
    fn commit(&self) -> Result<(), String>;
    /// Whether endpoint changes are staged but not committed.
    fn endpoints_staged(&self) -> Result<bool, String>;
}

/// Minimum spacing of status file rewrites caused by counters alone (any
/// real change is written at once).
const STATUS_EVERY_MS: u64 = 5000;
/// Longest time between two status writes when nothing in it changed (its
/// `updated` field says the agent is alive; `wgroam status` also checks
/// the pid).
const STATUS_HEARTBEAT_MS: u64 = 60_000;
/// How soon the kernel is read again after a packet that may have moved it.
const OBSERVE_SOON_MS: u64 = 100;

pub struct HubRuntime<W: WireGuard> {
    cfg: Config,
    wg: W,
    net: Option<Box<dyn NetworkConfig>>,
    hub: Hub,
    runtime: HashMap<String, IfaceRuntime>,
    captures: HashMap<String, HubCapture>,
    started: u64,
    persist_dirty: bool,
    status_dirty: bool,
    /// Counters may have moved since the status was last built: a read that
    /// was not idle, captured packets, a redeem. A quiet hub's status stays
    /// as it is (but for the heartbeat).
    status_news: bool,
    /// uci sections to stage at the end of this loop turn.
    staged: Vec<(String, SocketAddr)>,
    last_status_ms: u64,
    /// When the status file was last written, and a digest of what it said
    /// (without `updated`).
    last_status_write: Option<(u64, u64)>,
    /// Peer-prefix routes, forwarding, relay policy, NDP proxy.
    relay: crate::hub::relay::HubRelay,
    /// Pairing: the redeem listener (interfaces with a `pool`).
    pairing: Option<(crate::hub::pairing::RedeemListener, crate::os::uci::UciCli)>,
    /// Each interface's public key as last read (part of its link identity).
    wg_public: HashMap<String, Option<crate::core::PublicKey>>,
    /// Link events; without them re-created links are noticed one poll late.
    links: Option<LinkWatch>,
    /// Interface indices (part of a link's identity), looked up again only
    /// after a link event: `if_nametoindex` opens a socket each time.
    ifindex: IndexCache,
    /// Link events were drained during an observation: observe once more,
    /// at once (the change may have come after that interface's read).
    links_moved: bool,
    /// When the kernel is read next.
    cadence: Cadence,
    last_observe_ms: u64,
}

impl<W: WireGuard> HubRuntime<W> {
    pub fn new(cfg: Config, wg: W, net: Option<Box<dyn NetworkConfig>>, now: Now) -> Self {
        let (memory, problem) = crate::hub::state::load(&cfg.state_file);
        if let Some(p) = problem {
            emit(Level::Warn, &p);
        }
        let hub = Hub::new(policy(&cfg), &names(&cfg), memory);
        let cfg_poll_ms = cfg.poll_ms;
        let mut rt = Self {
            cfg,
            wg,
            net,
            hub,
            runtime: HashMap::new(),
            captures: HashMap::new(),
            started: now.wall,
            persist_dirty: false,
            status_dirty: true,
            status_news: true,
            staged: Vec::new(),
            last_status_ms: 0,
            last_status_write: None,
            relay: crate::hub::relay::HubRelay::system(),
            pairing: None,
            wg_public: HashMap::new(),
            links: LinkWatch::open()
                .map_err(|e| {
                    emit(
                        Level::Warn,
                        &format!("rtnetlink link events unavailable ({e}); relying on polls"),
                    )
                })
                .ok(),
            cadence: Cadence::new(cfg_poll_ms, now.mono_ms),
            last_observe_ms: 0,
            ifindex: IndexCache::default(),
            links_moved: false,
        };
        if rt.links.is_some() {
            rt.wg.watch_links();
            rt.relay.links_watched();
        }
        rt.load_uci_peers(now);
        rt
    }

    /// Applies a new validated config (SIGHUP); learned state is kept.
    pub fn reload(&mut self, cfg: Config, now: Now) {
        if names(&cfg) != names(&self.cfg) || policy(&cfg) != policy(&self.cfg) {
            // What this run learnt, judged again against the kernel like a
            // state file (same link, same handshakes: trusted).
            let memory = crate::hub::state::from_json(&crate::hub::state::to_json(&self.hub));
            self.hub = Hub::new(policy(&cfg), &names(&cfg), memory);
            self.captures.clear();
        }
        self.cfg = cfg;
        self.cadence.set_poll(self.cfg.poll_ms);
        self.cadence.wake(now.mono_ms);
        if let Some((l, uci)) = self.pairing.take() {
            drop(l);
            self.pairing = Some((
                crate::hub::pairing::RedeemListener::open(&self.cfg, Box::new(uci.clone())),
                uci,
            ));
        }
        self.load_uci_peers(now);
    }

    fn load_uci_peers(&mut self, now: Now) {
        let Some(net) = &self.net else { return };
        let mut events = Vec::new();
        for i in &self.cfg.interfaces {
            match net.peers(&i.name) {
                Ok(peers) => events.push(Event::Configured {
                    iface: i.ifname.clone(),
                    peers,
                }),
                Err(e) => emit(Level::Warn, &e),
            }
        }
        match net.endpoints_staged() {
            Ok(true) => events.push(Event::StagedBeforeStart),
            Ok(false) => {}
            Err(e) => emit(Level::Warn, &e),
        }
        for e in events {
            self.feed(now, e);
        }
    }

    /// Reads every managed interface from the kernel; says whether anything
    /// moved, or nothing happened at all since the read before.
    pub fn observe(&mut self, now: Now) -> Read {
        // Quiet needs link events (a re-created link is noticed by them) and
        // an open capture on every interface (a packet wakes the hub).
        let mut read = Read {
            moved: false,
            idle: self.links.is_some(),
        };
        // Link events queued before this read are this read's news (the
        // WireGuard adapter drops connections a re-created link made stale);
        // only those that come during it ask for another look.
        self.links_changed_since_last_look();
        self.links_moved = false;
        for i in self.cfg.interfaces.clone() {
            let view = match self.wg.read(&i.ifname, i.backend) {
                Ok(v) => v,
                Err(e) => {
                    emit(
                        Level::Warn,
                        &format!("{}: cannot read WireGuard state: {e}", i.ifname),
                    );
                    read.idle = false;
                    continue;
                }
            };
            self.relay
                .seen(&i.ifname, view.as_ref().map(|v| v.allowed_ips.clone()));
            let rt = self.runtime.entry(i.ifname.clone()).or_default();
            self.wg_public
                .insert(i.ifname.clone(), view.as_ref().and_then(|v| v.public_key));
            // Whether the kernel's view of who is where moved since the last
            // read (endpoints, handshakes, the link itself).
            let print = view.as_ref().map(view_print);
            let moved = print.is_none() || rt.view_print != print;
            rt.view_print = print;
            let traffic = view.as_ref().map(|v| {
                v.peers
                    .iter()
                    .fold(0u64, |s, p| s.wrapping_add(p.rx).wrapping_add(p.tx))
            });
            let counted = rt.traffic != traffic;
            rt.traffic = traffic;
            read.moved |= moved;
            read.idle &= !moved && !counted && i.capture;
            let peers = view.map(|v| {
                rt.backend = Some(v.backend);
                rt.listen_port = v.listen_port;
                if i.capture {
                    let cap = self.captures.entry(i.ifname.clone()).or_default();
                    cap.ensure(&i, &v, rt);
                }
                v.peers
            });
            // Everything captured up to now, after the read: every packet the
            // kernel counted or roamed on is then in (a packet socket queues it
            // before WireGuard processes it), so a roam is never mistaken for
            // a push. The ring shows a block only once the kernel retires it,
            // at most RETIRE_TOV_MS after its first frame (one jiffy more at a
            // low HZ): wait that long first, so a packet that arrived just
            // before the read is not missed. All of it, bounded. Only when
            // the kernel's view moved: the decisions that weigh captured
            // packets against the kernel are about endpoints and handshakes
            // (and a second look follows RECHECK_MS later anyway); a quiet
            // poll sleeps once, in the event loop.
            if moved
                && self
                    .captures
                    .get(&i.ifname)
                    .is_some_and(|c| c.fd().is_some())
            {
                std::thread::sleep(std::time::Duration::from_millis(
                    u64::from(2 * crate::os::capture::ring::RETIRE_TOV_MS) + 4,
                ));
            }
            for _ in 0..64 {
                self.drain_capture(now, &i.ifname);
                if !self
                    .captures
                    .get(&i.ifname)
                    .is_some_and(HubCapture::saturated)
                {
                    break;
                }
            }
            // Frames read since the last read (here, or in between).
            let captured = self.captures.get_mut(&i.ifname).map(HubCapture::take_seen);
            read.idle &= captured == Some(false)
                && self.captures.get(&i.ifname).is_some_and(HubCapture::covers);
            let link = peers.as_ref().and_then(|_| {
                let public_key = self.wg_public.get(&i.ifname).copied().flatten()?;
                let ifindex = self.ifindex(&i.ifname)?;
                Some(LinkId {
                    ifindex,
                    public_key,
                })
            });
            self.feed(
                now,
                Event::Link {
                    iface: i.ifname.clone(),
                    link,
                },
            );
            // The capture stays open while the link is re-created: it listens
            // on the WAN, and the peer's first packet after a restart is the
            // one that tells where it is now.
            self.feed(
                now,
                Event::Observed {
                    iface: i.ifname.clone(),
                    peers,
                },
            );
        }
        self.feed(now, Event::Tick);
        if self.relay.reconcile(now.mono_ms, &self.cfg) {
            self.status_news = true;
        }
        read
    }

    /// When the next WireGuard read is due: the cadence's, or a deadline of
    /// the core's or the relay's that the last read did not already handle
    /// (never a busy loop).
    fn observe_at(&self) -> u64 {
        let later = |t: &u64| *t > self.last_observe_ms;
        let core = self.hub.poll_at().filter(later);
        let relay = self.relay.poll_at().filter(later);
        core.into_iter()
            .chain(relay)
            .fold(self.cadence.due(), u64::min)
    }

    /// `ifname`'s index, from the cache unless a link changed since it was
    /// looked up. Called after the WireGuard read: a link the read saw
    /// re-created has already queued its event (rtnetlink notifies before
    /// the request that made the change returns), so the index is never
    /// older than the read. Without link events, looked up every time.
    fn ifindex(&mut self, ifname: &str) -> Option<u32> {
        self.links_changed_since_last_look();
        let watched = self.links.is_some();
        self.ifindex
            .get(ifname, watched, |n| crate::os::capture::ifindex(n).ok())
    }

    /// Drains the link and route events; a route event makes the relay
    /// look at the routing table again; if a link changed, forgets the
    /// indices (and tells the relay) and returns true.
    fn links_changed_since_last_look(&mut self) -> bool {
        let Some(c) = self.links.as_mut().map(LinkWatch::drain) else {
            return false;
        };
        if c.routes {
            self.relay.routes_changed();
            self.cadence.within_a_poll(self.last_observe_ms);
        }
        if c.links {
            self.ifindex.clear();
            self.wg.links_changed();
            self.relay.links_changed();
            self.links_moved = true;
        }
        c.links
    }

    /// Handles one event and carries out the resulting actions.
    pub fn feed(&mut self, now: Now, event: Event) {
        let actions = self.hub.handle(now, event);
        self.apply(actions);
    }

    fn apply(&mut self, actions: Vec<Action>) {
        for a in actions {
            self.status_dirty = true;
            match a {
                Action::Log(l) => emit(l.level, &l.msg),
                Action::SetEndpoint {
                    ref iface,
                    key,
                    endpoint,
                }
                | Action::Rearm {
                    ref iface,
                    key,
                    endpoint,
                } => {
                    let backend = self
                        .cfg
                        .interfaces
                        .iter()
                        .find(|i| &i.ifname == iface)
                        .map(|i| i.backend);
                    let result = backend.map(|b| {
                        // Rearm's contract: re-create the peer only if the
                        // kernel still holds no session with it when carried
                        // out. The core decides on a view at least one read
                        // old (the capture is drained after the read); a
                        // handshake completed since must not be destroyed, so
                        // the condition is checked here, at the last moment,
                        // like a compare-and-swap.
                        let fresh = || {
                            self.wg.read(iface, b).ok().flatten().is_some_and(|v| {
                                v.peers.iter().any(|p| {
                                    p.key == key
                                        && p.last_handshake.is_some_and(|t| {
                                            crate::os::signals::now().wall.saturating_sub(t)
                                                < crate::core::hub::SESSION_LIFETIME_S
                                        })
                                })
                            })
                        };
                        if matches!(a, Action::Rearm { .. }) && !fresh() {
                            self.wg.rearm(iface, b, &key, Some(endpoint))
                        } else {
                            self.wg.set_endpoint(iface, b, &key, endpoint)
                        }
                    });
                    if let Some(Err(e)) = result {
                        emit(
                            Level::Error,
                            &format!("{iface}: cannot set endpoint of peer {}: {e}", key.short()),
                        );
                    }
                }
                Action::StageEndpoint { section, endpoint } => {
                    // Several peers moving at once go into one uci batch.
                    self.staged.retain(|(s, _)| *s != section);
                    self.staged.push((section, endpoint));
                }
                Action::CommitUci => {
                    self.persist_now();
                    self.stage_now();
                    if let Some(net) = &self.net
                        && let Err(e) = net.commit()
                    {
                        emit(Level::Error, &e);
                    }
                }
                Action::Persist => self.persist_dirty = true,
                Action::CaptureTransport { iface, on } => {
                    if let Some(c) = self.captures.get_mut(&iface) {
                        c.set_transport(on);
                    }
                }
            }
        }
    }

    /// File descriptors to wait on, with the interface each belongs to.
    pub fn capture_fds(&self) -> Vec<(RawFd, String)> {
        self.captures
            .iter()
            .filter_map(|(n, c)| c.fd().map(|fd| (fd, n.clone())))
            .collect()
    }

    /// Reads one interface's capture (ready, or its hold ended); a packet
    /// the kernel may act on makes the hub read WireGuard at once.
    fn capture_ready(&mut self, now: Now, iface: &str) {
        // Counters (ignored, drops) may move: the status follows within
        // STATUS_EVERY_MS.
        self.status_news = true;
        self.drain_capture(now, iface);
        if self.captures.get(iface).is_some_and(HubCapture::seen) {
            self.cadence.packet(now.mono_ms);
        }
        if self.hub.take_observe_soon() {
            // An unproven or replayed initiation: if the kernel took it (it
            // forgot the peer's timestamp), roll back before anyone uses it.
            self.cadence.by(now.mono_ms + OBSERVE_SOON_MS);
        }
    }

    /// Drains one interface's capture socket into the core.
    pub fn drain_capture(&mut self, now: Now, iface: &str) {
        let events = match self.captures.get_mut(iface) {
            Some(c) => {
                let events = c.drain(iface, now.mono_ms);
                let drops = c.take_drops();
                if drops > 0 {
                    // A counter: written with the others (at most every 5 s),
                    // not at every wakeup of a flood.
                    self.runtime
                        .entry(iface.to_string())
                        .or_default()
                        .capture_drops += drops;
                }
                let mut events = events;
                if drops > 0 {
                    events.push(Event::CaptureLoss {
                        iface: iface.to_string(),
                    });
                }
                events
            }
            None => return,
        };
        for e in events {
            self.feed(now, e);
        }
    }

    /// Stages what the core asked for since the last call, in one batch.
    fn stage_now(&mut self) {
        if self.staged.is_empty() {
            return;
        }
        let moves = std::mem::take(&mut self.staged);
        if let Some(net) = &self.net
            && let Err(e) = net.stage_endpoints(&moves)
        {
            emit(Level::Error, &e);
        }
    }

    /// Writes the state file if the core asked for it. Always before the
    /// uci stage: killed in between, the restarted agent then remembers the
    /// endpoint uci is about to get, never an older one that it would stage
    /// back.
    fn persist_now(&mut self) {
        if self.persist_dirty {
            self.persist_dirty = false;
            if let Err(e) = crate::hub::state::save(&self.cfg.state_file, &self.hub) {
                emit(
                    Level::Error,
                    &format!("state: cannot write {}: {e}", self.cfg.state_file.display()),
                );
            }
        }
    }

    /// Writes the state file, stages uci changes and writes the status file
    /// when something changed; called once per turn of the loop.
    pub fn flush(&mut self, now: Now, force: bool) {
        self.persist_now();
        self.stage_now();
        let heartbeat_due = self
            .last_status_write
            .is_none_or(|(at, _)| now.since_ms(at) >= STATUS_HEARTBEAT_MS);
        let counters_due = now.since_ms(self.last_status_ms) >= STATUS_EVERY_MS
            && (self.status_news || heartbeat_due);
        if force || self.status_dirty || counters_due {
            self.status_dirty = false;
            self.status_news = false;
            self.last_status_ms = now.mono_ms;
            let runtime = |n: &str| self.runtime.get(n).cloned().unwrap_or_default();
            let mut v = status::hub_json(&self.hub, now, self.started, &runtime);
            v["relay"] = self.relay.status_json();
            // Counters that did not move rewrite nothing but `updated`:
            // skipped until the heartbeat is due.
            let updated = v["updated"].take();
            let print = json_digest(&v);
            v["updated"] = updated;
            let same = self
                .last_status_write
                .is_some_and(|(at, p)| p == print && now.since_ms(at) < STATUS_HEARTBEAT_MS);
            if same && !force {
                return;
            }
            self.last_status_write = Some((now.mono_ms, print));
            if let Err(e) = status::write(&self.cfg.state_dir, &v) {
                emit(
                    Level::Error,
                    &format!("status: cannot write {}: {e}", self.cfg.state_dir.display()),
                );
            }
        }
    }

    /// Listens for pairing redeems (issue 14) on the interfaces with a pool.
    pub fn with_pairing(mut self, uci: crate::os::uci::UciCli) -> Self {
        self.pairing = Some((
            crate::hub::pairing::RedeemListener::open(&self.cfg, Box::new(uci.clone())),
            uci,
        ));
        self
    }

    fn pairing_fds(&self) -> Vec<RawFd> {
        self.pairing
            .as_ref()
            .map(|(l, _)| l.fds())
            .unwrap_or_default()
    }

    /// Answers the redeems waiting on listener `idx`; a new peer is read
    /// from uci at once so its endpoint is followed like any other's.
    fn redeem(&mut self, now: Now, idx: usize) {
        let Some((l, _)) = self.pairing.as_mut() else {
            return;
        };
        if l.drain(idx, &self.wg, now.wall) {
            self.load_uci_peers(now);
            self.status_dirty = true;
        }
    }
}

/// Interface indices by name, kept until [`IndexCache::clear`] (a link
/// event).
#[derive(Default)]
struct IndexCache(HashMap<String, u32>);

impl IndexCache {
    /// The index of `ifname`: cached if `watched` (link events clear the
    /// cache), else looked up each time.
    fn get(
        &mut self,
        ifname: &str,
        watched: bool,
        lookup: impl FnOnce(&str) -> Option<u32>,
    ) -> Option<u32> {
        if watched && let Some(i) = self.0.get(ifname) {
            return Some(*i);
        }
        let i = lookup(ifname);
        match i {
            Some(i) => self.0.insert(ifname.to_string(), i),
            None => self.0.remove(ifname),
        };
        i
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

fn names(cfg: &Config) -> Vec<String> {
    cfg.interfaces.iter().map(|i| i.ifname.clone()).collect()
}

fn policy(cfg: &Config) -> HubPolicy {
    HubPolicy {
        commit_after_s: cfg.commit_interval,
        commit_on_stop: cfg.commit_on_stop,
    }
}

/// What woke the hub.
#[derive(Debug, Clone)]
pub enum HubToken {
    /// An rtnetlink link event.
    Links,
    /// Captured packets of an interface.
    Capture(String),
    /// A pairing redeem on listener `n`.
    Redeem(usize),
}

impl<W: WireGuard> Role for HubRuntime<W> {
    type Token = HubToken;

    fn name(&self) -> &'static str {
        "hub"
    }

    fn managing(&self) -> String {
        names(&self.cfg).join(", ")
    }

    fn turn(&mut self, now: Now) {
        // A capture whose hold ended is read now, not after one more poll.
        let over: Vec<String> = self
            .captures
            .iter()
            .filter(|(_, c)| c.hold_over())
            .map(|(n, _)| n.clone())
            .collect();
        for name in over {
            self.capture_ready(now, &name);
        }
        if now.mono_ms >= self.observe_at() {
            self.last_observe_ms = now.mono_ms;
            // observe() clears links_moved after its own first drain.
            let read = self.observe(now);
            self.status_news |= !read.idle;
            self.cadence.read(now.mono_ms, read);
            if std::mem::take(&mut self.links_moved) {
                self.cadence.wake(now.mono_ms);
            }
            if self.hub.take_observe_soon() {
                self.cadence.by(now.mono_ms + OBSERVE_SOON_MS);
            }
        }
    }

    fn wake_at(&self) -> u64 {
        // A capture that coalesces or rests is waited for again when that
        // ends (without reading WireGuard then); counters that moved reach
        // the status file within STATUS_EVERY_MS, however quiet the hub is
        // by then.
        let status = self
            .status_news
            .then_some(self.last_status_ms + STATUS_EVERY_MS);
        self.captures
            .values()
            .filter_map(HubCapture::waits)
            .chain(status)
            .fold(self.observe_at(), u64::min)
    }

    fn fds(&self) -> Vec<(RawFd, HubToken)> {
        let mut fds: Vec<(RawFd, HubToken)> = Vec::new();
        fds.extend(self.links.as_ref().map(|l| (l.fd(), HubToken::Links)));
        fds.extend(
            self.capture_fds()
                .into_iter()
                .map(|(fd, name)| (fd, HubToken::Capture(name))),
        );
        fds.extend(
            self.pairing_fds()
                .into_iter()
                .enumerate()
                .map(|(i, fd)| (fd, HubToken::Redeem(i))),
        );
        fds
    }

    fn ready(&mut self, now: Now, token: HubToken) {
        self.status_news = true;
        match token {
            HubToken::Links => {
                if self.links_changed_since_last_look() {
                    // A link came, went or changed: observe in this turn.
                    self.cadence.wake(now.mono_ms);
                    self.links_moved = false;
                }
            }
            HubToken::Capture(name) => self.capture_ready(now, &name),
            HubToken::Redeem(i) => self.redeem(now, i),
        }
    }

    fn flush(&mut self, now: Now, force: bool) {
        HubRuntime::flush(self, now, force);
    }

    fn reload(&mut self, cfg: Config, now: Now) -> Result<(), String> {
        HubRuntime::reload(self, cfg, now);
        Ok(())
    }

    fn nudge(&mut self, now: Now) {
        self.cadence.wake(now.mono_ms);
    }

    fn stop(&mut self, now: Now) {
        self.feed(now, Event::Stop);
        self.relay.stop(&self.cfg);
    }
}

/// A digest of a JSON value's text, to tell whether it changed; streamed
/// (the status of a thousand peers is ~350 KB of text, not built twice).
fn json_digest(v: &serde_json::Value) -> u64 {
    use std::hash::Hasher;
    struct Sink(std::collections::hash_map::DefaultHasher);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.write(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut sink = Sink(std::collections::hash_map::DefaultHasher::new());
    // Writing to a hasher cannot fail; a value that cannot be written
    // digests as what was written of it.
    let _ = serde_json::to_writer(&mut sink, v);
    sink.0.finish()
}

/// A digest of where the kernel has each peer and when it last completed a
/// handshake: two reads with the same digest saw nobody move. The order of
/// the peers does not count (wireguard-go lists them in Go's random map
/// order).
fn view_print(v: &crate::os::wg::DeviceView) -> u64 {
    use std::hash::BuildHasher;
    // Fixed keys: the same view gives the same digest in every read.
    let state =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
    let peers = v
        .peers
        .iter()
        .map(|p| state.hash_one((p.key, p.endpoint, p.last_handshake)))
        .fold(0u64, u64::wrapping_add);
    state.hash_one((v.public_key, v.peers.len(), peers))
}

#[cfg(test)]
mod tests {
    use super::IndexCache;
    use std::cell::Cell;

    #[test]
    fn the_view_digest_sees_moves_and_handshakes_not_the_order_of_peers() {
        use crate::core::PublicKey;
        use crate::core::hub::PeerSnapshot;
        use crate::os::wg::DeviceView;
        let peer = |k: u8, port: u16, hs: Option<u64>| PeerSnapshot {
            key: PublicKey([k; 32]),
            endpoint: Some(std::net::SocketAddr::from(([198, 51, 100, k], port))),
            last_handshake: hs,
            rx: u64::from(port),
            tx: 0,
        };
        let view = |peers: Vec<PeerSnapshot>| DeviceView {
            backend: "fake",
            listen_port: Some(51820),
            public_key: Some(PublicKey([9; 32])),
            private_key: None,
            peers,
            allowed_ips: Vec::new(),
        };
        let d = |peers| super::view_print(&view(peers));
        let base = d(vec![peer(1, 30000, Some(5)), peer(2, 30001, None)]);
        // wireguard-go lists peers in random order; counters do not count.
        assert_eq!(base, d(vec![peer(2, 30001, None), peer(1, 30000, Some(5))]));
        let mut busy = peer(1, 30000, Some(5));
        busy.rx += 1000;
        assert_eq!(base, d(vec![busy, peer(2, 30001, None)]));
        // A move, a handshake, a peer more or less: news.
        assert_ne!(base, d(vec![peer(1, 30002, Some(5)), peer(2, 30001, None)]));
        assert_ne!(base, d(vec![peer(1, 30000, Some(6)), peer(2, 30001, None)]));
        assert_ne!(base, d(vec![peer(1, 30000, Some(5))]));
    }

    #[test]
    fn indices_are_looked_up_once_until_a_link_event() {
        let calls = Cell::new(0);
        let next = Cell::new(7);
        let lookup = |_: &str| {
            calls.set(calls.get() + 1);
            Some(next.get())
        };
        let mut c = IndexCache::default();
        for _ in 0..5 {
            assert_eq!(c.get("wg0", true, lookup), Some(7));
        }
        assert_eq!(calls.get(), 1, "one lookup for five polls");
        // netifd re-creates wg0: a link event, a new index.
        next.set(9);
        assert_eq!(c.get("wg0", true, lookup), Some(7), "until the event");
        c.clear();
        assert_eq!(c.get("wg0", true, lookup), Some(9));
        assert_eq!(c.get("wg0", true, lookup), Some(9));
        assert_eq!(calls.get(), 2);
        // A link that is gone is not remembered.
        c.clear();
        assert_eq!(c.get("wg0", true, |_: &str| None), None);
        assert_eq!(c.get("wg0", true, lookup), Some(9));
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn without_link_events_every_poll_looks_again() {
        let calls = Cell::new(0);
        let lookup = |_: &str| {
            calls.set(calls.get() + 1);
            Some(3)
        };
        let mut c = IndexCache::default();
        for _ in 0..3 {
            assert_eq!(c.get("wg0", false, lookup), Some(3));
        }
        assert_eq!(calls.get(), 3);
    }
}
