//! The hub's decisions: which endpoint each roaming peer really has.
//!
//! Evidence comes in three strengths, and only authenticated evidence moves
//! an endpoint:
//! - the kernel's own view (WireGuard roams on authenticated packets only);
//! - a captured handshake initiation that this agent decrypted itself to a
//!   configured peer with a fresher TAI64N than any seen before;
//! - a transport packet carrying a session index this hub handed to a peer,
//!   used only while that peer's kernel session is gone (after the link was
//!   re-created), because then the kernel cannot authenticate it.
//!
//! Everything else is counted and reported, never acted on.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use super::key::PublicKey;
use super::time::Now;
use super::{Action, Level};

/// WireGuard's REJECT_AFTER_TIME: a session older than this is dead.
pub const SESSION_LIFETIME_S: u64 = 180;
/// Initiations without a completed handshake before we name a likely cause.
const FAILED_TRIES_FOR_DIAGNOSIS: u32 = 3;
/// ...spread over at least this long: two retries of WireGuard's REKEY_TIMEOUT
/// (5 s). Closer initiations are a peer (re)starting or a handshake this hub
/// answered before its next poll saw it, not a failure.
const FAILED_SPAN_FOR_DIAGNOSIS_MS: u64 = 10_000;
/// How long a source of forged or replayed packets stays suspect.
const SUSPECT_MS: u64 = 10_000;
/// Sources of replays remembered at most (a flood must not grow memory).
const MAX_SUSPECTS: usize = 1024;
/// At most this many "ignored packet" log lines per interface and minute.
const REJECT_LOGS_PER_MINUTE: u32 = 5;

/// The hub's policy, from the validated config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubPolicy {
    /// Seconds a staged uci change waits before it is committed to flash;
    /// `None` never commits (RAM only, lost on reboot by choice).
    pub commit_after_s: Option<u64>,
    /// Commit pending changes on a clean stop.
    pub commit_on_stop: bool,
}

impl Default for HubPolicy {
    fn default() -> Self {
        Self {
            commit_after_s: Some(3600),
            commit_on_stop: true,
        }
    }
}

/// Why an endpoint moved; shown in `status` and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// WireGuard roamed on an authenticated packet; we noticed.
    Kernel,
    /// A captured, verified, fresh handshake initiation.
    Initiation,
    /// A transport packet with an index we handed out, session gone.
    Index,
    /// Re-applied after a restart or after configuration put a stale one back.
    Restored,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Kernel => "kernel",
            Why::Initiation => "initiation",
            Why::Index => "index",
            Why::Restored => "restored",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Why::Kernel, Why::Initiation, Why::Index, Why::Restored]
            .into_iter()
            .find(|w| w.as_str() == s)
    }
}

/// The last endpoint move of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub at_wall: u64,
    pub from: Option<SocketAddr>,
    pub to: SocketAddr,
    pub why: Why,
}

/// A TAI64N timestamp from a handshake initiation, ordered.
pub type Stamp = (u64, u32);

/// What the kernel reports about one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSnapshot {
    pub key: PublicKey,
    pub endpoint: Option<SocketAddr>,
    /// Wall-clock seconds of the latest handshake, if any.
    pub last_handshake: Option<u64>,
    pub rx: u64,
    pub tx: u64,
}

/// A peer as configured in uci (`network.@wireguard_<if>[n]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UciPeer {
    /// Address usable in `uci set network.<section>...` (named or `@type[n]`).
    pub section: String,
    pub key: PublicKey,
    pub endpoint: Option<SocketAddr>,
}

/// What a restarted agent remembers of a peer (from its state file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    pub key: PublicKey,
    pub endpoint: SocketAddr,
    pub stamp: Option<Stamp>,
    pub change: Option<Change>,
}

/// Why a captured packet was not acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ignored {
    /// mac1 is not for this interface's key (another hub, or garbage).
    BadMac1,
    /// mac1 fine but the static key or timestamp does not decrypt: forged.
    Forged,
    /// Decrypts to a key that is not one of this interface's peers.
    UnknownPeer,
    /// Genuine but not fresher than one already seen: a replay or clock skew.
    Replay,
    /// A transport packet with an index no peer of ours was given.
    UnknownIndex,
    /// Malformed, truncated or oversized.
    Malformed,
    /// mac1 fine, but more initiations than the verifier's budget (a flood
    /// aimed at the two X25519 operations each one costs).
    RateLimited,
}

impl Ignored {
    pub fn as_str(self) -> &'static str {
        match self {
            Ignored::BadMac1 => "bad_mac1",
            Ignored::Forged => "forged",
            Ignored::UnknownPeer => "unknown_peer",
            Ignored::Replay => "replay",
            Ignored::UnknownIndex => "unknown_index",
            Ignored::Malformed => "malformed",
            Ignored::RateLimited => "rate_limited",
        }
    }
}

/// Inputs of the hub core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Kernel view of an interface; `None` when the interface is missing.
    Observed {
        iface: String,
        peers: Option<Vec<PeerSnapshot>>,
    },
    /// Peers configured for an interface in uci (re-sent on reload).
    Configured { iface: String, peers: Vec<UciPeer> },
    /// A handshake initiation verified and decrypted by the capture path.
    Initiation {
        iface: String,
        from: SocketAddr,
        key: PublicKey,
        stamp: Stamp,
        sender_index: u32,
    },
    /// A handshake response this hub sent (captured outgoing).
    Response {
        iface: String,
        sender_index: u32,
        receiver_index: u32,
    },
    /// A handshake initiation this hub sent to a peer (captured outgoing;
    /// the peer is known from the mac1 under its key).
    OwnInitiation {
        iface: String,
        key: PublicKey,
        sender_index: u32,
    },
    /// A transport packet (data or keepalive) that arrived.
    Transport {
        iface: String,
        from: SocketAddr,
        receiver_index: u32,
    },
    /// A captured packet that failed verification.
    Ignored {
        iface: String,
        from: SocketAddr,
        why: Ignored,
    },
    /// Timer.
    Tick,
    /// uci holds endpoint changes staged before this start (a previous run
    /// was killed before its commit): they wait for the commit policy like
    /// the ones this run stages.
    StagedBeforeStart,
    /// Clean shutdown requested.
    Stop,
}

/// Per-peer diagnostics: initiations seen against handshakes completed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics {
    pub initiations: u64,
    pub handshakes: u64,
    /// Initiations since the last completed handshake.
    pub unanswered: u32,
    /// Monotonic ms of the first of them.
    pub unanswered_since: Option<u64>,
    pub replays: u64,
    pub cause: Option<&'static str>,
}

/// Everything the hub knows about one peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peer {
    pub section: Option<String>,
    /// The endpoint we believe in (what status shows, what uci gets).
    pub endpoint: Option<SocketAddr>,
    pub kernel_endpoint: Option<SocketAddr>,
    /// What uci holds (staged or committed).
    pub uci_endpoint: Option<SocketAddr>,
    pub last_handshake: Option<u64>,
    pub rx: u64,
    pub tx: u64,
    pub last_change: Option<Change>,
    pub stamp: Option<Stamp>,
    pub diag: Diagnostics,
    /// Seen by the kernel in the latest observation.
    pub present: bool,
}

impl Peer {
    /// The kernel has a usable session with this peer.
    pub fn session_live(&self, now: Now) -> bool {
        self.last_handshake
            .is_some_and(|t| now.wall.saturating_sub(t) < SESSION_LIFETIME_S)
    }
}

/// One managed WireGuard interface.
#[derive(Debug, Clone, Default)]
pub struct Iface {
    pub name: String,
    /// The kernel interface exists.
    pub up: bool,
    pub peers: BTreeMap<PublicKey, Peer>,
    /// Their sender index from a verified initiation → peer.
    their_index: HashMap<u32, PublicKey>,
    /// Indices this hub handed out in responses → peer.
    our_index: HashMap<u32, PublicKey>,
    /// Sources of recently rejected packets (mono ms of last rejection).
    pub(crate) suspects: HashMap<SocketAddr, u64>,
    suspects_pruned: u64,
    pub ignored: BTreeMap<Ignored, u64>,
    logs_this_minute: (u64, u32),
    transport_capture: bool,
    observed_once: bool,
}

/// Index tables are bounded: two entries per peer per handshake round.
const MAX_INDICES_PER_PEER: usize = 8;

/// The sans-IO hub: feed it events, carry out the actions it returns.
#[derive(Debug, Clone)]
pub struct Hub {
    policy: HubPolicy,
    pub ifaces: BTreeMap<String, Iface>,
    remembered: HashMap<PublicKey, Remembered>,
    /// Monotonic ms since which uci changes wait for a commit.
    pending_since: Option<u64>,
    pub commits: u64,
}

impl Hub {
    pub fn new(policy: HubPolicy, ifaces: &[String], remembered: Vec<Remembered>) -> Self {
        let ifaces = ifaces
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    Iface {
                        name: n.clone(),
                        ..Iface::default()
                    },
                )
            })
            .collect();
        let remembered = remembered.into_iter().map(|r| (r.key, r)).collect();
        Self {
            policy,
            ifaces,
            remembered,
            pending_since: None,
            commits: 0,
        }
    }

    fn peer_mut(&mut self, iface: &str, key: &PublicKey) -> Option<&mut Peer> {
        self.ifaces.get_mut(iface)?.peers.get_mut(key)
    }

    /// Staged uci changes wait for a commit.
    pub fn commit_pending(&self) -> bool {
        self.pending_since.is_some()
    }

    /// Handles one event; returns what to do, in order.
    pub fn handle(&mut self, now: Now, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Observed { iface, peers } => self.observed(now, &iface, peers, &mut out),
            Event::Configured { iface, peers } => self.configured(now, &iface, peers, &mut out),
            Event::Initiation {
                iface,
                from,
                key,
                stamp,
                sender_index,
            } => self.initiation(now, &iface, from, key, stamp, sender_index, &mut out),
            Event::Response {
                iface,
                sender_index,
                receiver_index,
            } => {
                if let Some(i) = self.ifaces.get_mut(&iface)
                    && let Some(key) = i.their_index.get(&receiver_index).copied()
                {
                    remember_index(&mut i.our_index, sender_index, key);
                }
            }
            Event::OwnInitiation {
                iface,
                key,
                sender_index,
            } => {
                // The peer answers with this index in its transport packets.
                if let Some(i) = self.ifaces.get_mut(&iface)
                    && i.peers.contains_key(&key)
                {
                    remember_index(&mut i.our_index, sender_index, key);
                }
            }
            Event::Transport {
                iface,
                from,
                receiver_index,
            } => self.transport(now, &iface, from, receiver_index, &mut out),
            Event::Ignored { iface, from, why } => self.ignored(now, &iface, from, why, &mut out),
            Event::Tick => self.tick(now, &mut out),
            Event::StagedBeforeStart => {
                if self.policy.commit_after_s.is_some() && self.pending_since.is_none() {
                    self.pending_since = Some(now.mono_ms);
                    log(
                        &mut out,
                        Level::Notice,
                        "uci: endpoint changes staged before this start wait for the next commit"
                            .to_string(),
                    );
                }
            }
            Event::Stop => {
                if self.pending_since.is_some() && self.policy.commit_on_stop {
                    self.commit(&mut out, "stop");
                }
            }
        }
        out
    }

    fn observed(
        &mut self,
        now: Now,
        name: &str,
        peers: Option<Vec<PeerSnapshot>>,
        out: &mut Vec<Action>,
    ) {
        let Some(iface) = self.ifaces.get_mut(name) else {
            return;
        };
        let Some(peers) = peers else {
            if iface.up {
                log(
                    out,
                    Level::Warn,
                    format!("{name}: interface is gone; waiting"),
                );
            }
            iface.up = false;
            for p in iface.peers.values_mut() {
                p.present = false;
                p.last_handshake = None;
                // Whatever the next link starts with is news.
                p.kernel_endpoint = None;
            }
            self.update_transport_capture(now, name, out);
            return;
        };
        if !iface.up && iface.observed_once {
            log(out, Level::Info, format!("{name}: interface is back"));
        }
        iface.up = true;
        let first = !iface.observed_once;
        iface.observed_once = true;
        for p in iface.peers.values_mut() {
            p.present = false;
        }
        let mut moves = Vec::new();
        for snap in peers {
            let peer = iface.peers.entry(snap.key).or_default();
            let fresh = peer.rx == 0 && peer.tx == 0 && peer.kernel_endpoint.is_none();
            // rx grew (and did not reset): the kernel authenticated something.
            let authenticated = snap.rx > peer.rx && !fresh || first && peer_is_live(&snap, now);
            if snap.last_handshake.is_some() && snap.last_handshake > peer.last_handshake {
                peer.diag.handshakes += 1;
                peer.diag.unanswered = 0;
                peer.diag.unanswered_since = None;
                peer.diag.cause = None;
            }
            let changed = snap.endpoint != peer.kernel_endpoint;
            peer.present = true;
            peer.kernel_endpoint = snap.endpoint;
            peer.last_handshake = snap.last_handshake;
            peer.rx = snap.rx;
            peer.tx = snap.tx;
            if !changed && !first {
                continue;
            }
            let Some(ep) = snap.endpoint else { continue };
            if Some(ep) == peer.endpoint {
                continue;
            }
            let suspect = iface
                .suspects
                .get(&ep)
                .is_some_and(|&t| now.since_ms(t) < SUSPECT_MS);
            if authenticated && !suspect {
                moves.push((snap.key, ep, Why::Kernel, false));
            } else if let Some(known) = peer
                .endpoint
                .or_else(|| self.remembered.get(&snap.key).map(|r| r.endpoint))
            {
                // Configuration (netifd's `wg syncconf`, a restart) or a
                // suspicious roam put another endpoint in: put ours back
                // unless the kernel has a live session there.
                if suspect || !peer.session_live(now) {
                    moves.push((snap.key, known, Why::Restored, true));
                }
            } else {
                // Nothing better known: adopt the configured one silently.
                peer.endpoint = Some(ep);
            }
        }
        for (key, ep, why, apply) in moves {
            self.move_endpoint(now, name, key, ep, why, apply, out);
        }
        self.update_transport_capture(now, name, out);
    }

    fn configured(&mut self, now: Now, name: &str, peers: Vec<UciPeer>, out: &mut Vec<Action>) {
        let Some(iface) = self.ifaces.get_mut(name) else {
            return;
        };
        let mut restage = Vec::new();
        for u in peers {
            let peer = iface.peers.entry(u.key).or_default();
            peer.section = Some(u.section.clone());
            peer.uci_endpoint = u.endpoint;
            if peer.endpoint.is_none()
                && let Some(r) = self.remembered.get(&u.key)
            {
                peer.endpoint = Some(r.endpoint);
                peer.stamp = peer.stamp.max(r.stamp);
                peer.last_change = peer.last_change.or(r.change);
            }
            if let Some(ep) = peer.endpoint
                && peer.uci_endpoint != Some(ep)
            {
                restage.push((u.key, ep));
            }
        }
        for (key, ep) in restage {
            self.stage(now, name, key, ep, out);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn initiation(
        &mut self,
        now: Now,
        name: &str,
        from: SocketAddr,
        key: PublicKey,
        stamp: Stamp,
        sender_index: u32,
        out: &mut Vec<Action>,
    ) {
        let Some(iface) = self.ifaces.get_mut(name) else {
            return;
        };
        let Some(peer) = iface.peers.get_mut(&key) else {
            return self.ignored(now, name, from, Ignored::UnknownPeer, out);
        };
        let stale = peer.stamp.is_some_and(|s| stamp <= s);
        if stale && peer.endpoint.is_some_and(|e| e != from) {
            // A genuine initiation replayed from elsewhere: an attack, not
            // something the peer did; it says nothing about its health.
            return self.ignored(now, name, from, Ignored::Replay, out);
        }
        peer.diag.initiations += 1;
        peer.diag.unanswered += 1;
        let since = *peer.diag.unanswered_since.get_or_insert(now.mono_ms);
        let failing = peer.diag.unanswered >= FAILED_TRIES_FOR_DIAGNOSIS
            && now.since_ms(since) >= FAILED_SPAN_FOR_DIAGNOSIS_MS;
        if stale {
            peer.diag.replays += 1;
            if failing {
                set_cause(
                    out,
                    name,
                    key,
                    peer,
                    "stale timestamp: replay, or the peer's clock is behind",
                );
            }
            return self.ignored(now, name, from, Ignored::Replay, out);
        }
        if failing {
            set_cause(
                out,
                name,
                key,
                peer,
                "initiations verified but no handshake completes: check the peer's preshared key and allowed_ips",
            );
        }
        peer.stamp = Some(stamp);
        remember_index(&mut iface.their_index, sender_index, key);
        iface.suspects.remove(&from);
        if peer.endpoint != Some(from) {
            self.move_endpoint(now, name, key, from, Why::Initiation, true, out);
        }
        // The stamp is part of what must survive a restart.
        out.push(Action::Persist);
    }

    fn transport(
        &mut self,
        now: Now,
        name: &str,
        from: SocketAddr,
        index: u32,
        out: &mut Vec<Action>,
    ) {
        let Some(iface) = self.ifaces.get_mut(name) else {
            return;
        };
        let Some(key) = iface.our_index.get(&index).copied() else {
            return self.ignored(now, name, from, Ignored::UnknownIndex, out);
        };
        let Some(peer) = iface.peers.get(&key) else {
            return;
        };
        // While the kernel has the session it authenticates and roams itself.
        if peer.session_live(now) || peer.endpoint == Some(from) {
            return;
        }
        self.move_endpoint(now, name, key, from, Why::Index, true, out);
    }

    fn ignored(
        &mut self,
        now: Now,
        name: &str,
        from: SocketAddr,
        why: Ignored,
        out: &mut Vec<Action>,
    ) {
        let Some(iface) = self.ifaces.get_mut(name) else {
            return;
        };
        *iface.ignored.entry(why).or_default() += 1;
        // Only a replayed genuine initiation can make the kernel roam (after
        // a peer was re-created it forgets the last timestamp); the rest it
        // rejects itself. The map is bounded, and pruned at most once a
        // second, so a flood from spoofed sources costs O(1) per packet.
        if why == Ignored::Replay {
            if iface.suspects.len() >= MAX_SUSPECTS && now.since_ms(iface.suspects_pruned) >= 1000 {
                iface.suspects_pruned = now.mono_ms;
                iface.suspects.retain(|_, t| now.since_ms(*t) < SUSPECT_MS);
            }
            if iface.suspects.len() < MAX_SUSPECTS {
                iface.suspects.insert(from, now.mono_ms);
            }
        }
        let minute = now.mono_ms / 60_000;
        if iface.logs_this_minute.0 != minute {
            iface.logs_this_minute = (minute, 0);
        }
        iface.logs_this_minute.1 += 1;
        // Unknown indices are normal after a restart (sessions the hub itself
        // initiated); only attempts at verification are worth a notice.
        let level = if why == Ignored::UnknownIndex {
            Level::Debug
        } else {
            Level::Notice
        };
        if iface.logs_this_minute.1 <= REJECT_LOGS_PER_MINUTE {
            log(
                out,
                level,
                format!("{name}: ignored packet from {from}: {}", why.as_str()),
            );
        }
    }

    fn tick(&mut self, now: Now, out: &mut Vec<Action>) {
        if let (Some(since), Some(after)) = (self.pending_since, self.policy.commit_after_s)
            && now.since_ms(since) >= after * 1000
        {
            self.commit(out, "interval");
        }
        let names: Vec<String> = self.ifaces.keys().cloned().collect();
        for name in names {
            if let Some(i) = self.ifaces.get_mut(&name) {
                i.suspects.retain(|_, t| now.since_ms(*t) < SUSPECT_MS);
            }
            self.update_transport_capture(now, &name, out);
        }
    }

    fn commit(&mut self, out: &mut Vec<Action>, why: &str) {
        self.pending_since = None;
        self.commits += 1;
        log(
            out,
            Level::Info,
            format!("uci: committing endpoints ({why})"),
        );
        out.push(Action::CommitUci);
    }

    /// Transport packets are worth capturing only while some peer's session
    /// is gone; otherwise the kernel filter keeps them out of user space.
    fn update_transport_capture(&mut self, now: Now, name: &str, out: &mut Vec<Action>) {
        let Some(iface) = self.ifaces.get_mut(name) else {
            return;
        };
        // Also while the link is being re-created (not `up`): a packet then
        // moves what we believe, and the link gets it when it is back.
        let want = !iface.our_index.is_empty()
            && iface
                .peers
                .values()
                .any(|p| p.endpoint.is_some() && !p.session_live(now));
        if want != iface.transport_capture {
            iface.transport_capture = want;
            out.push(Action::CaptureTransport {
                iface: name.to_string(),
                on: want,
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn move_endpoint(
        &mut self,
        now: Now,
        name: &str,
        key: PublicKey,
        to: SocketAddr,
        why: Why,
        apply: bool,
        out: &mut Vec<Action>,
    ) {
        let Some(peer) = self.peer_mut(name, &key) else {
            return;
        };
        // Re-applying what we already believe: the kernel is what moved.
        let from = if peer.endpoint == Some(to) {
            peer.kernel_endpoint
        } else {
            peer.endpoint
        };
        peer.endpoint = Some(to);
        peer.last_change = Some(Change {
            at_wall: now.wall,
            from,
            to,
            why,
        });
        let from_s = from.map_or_else(|| "none".to_string(), |f| f.to_string());
        log(
            out,
            Level::Notice,
            format!(
                "{name}: peer {} endpoint {from_s} -> {to} ({})",
                key.short(),
                why.as_str()
            ),
        );
        if apply && peer.kernel_endpoint != Some(to) && peer.present {
            peer.kernel_endpoint = Some(to);
            // A fresh peer object is harmless only when the kernel holds no
            // session and no handshake is under way with this peer.
            let untouched = peer.last_handshake.is_none() && peer.rx == 0;
            let rearm = match why {
                Why::Index => !peer.session_live(now),
                Why::Restored => untouched,
                Why::Kernel | Why::Initiation => false,
            };
            let (iface, endpoint) = (name.to_string(), to);
            out.push(if rearm {
                Action::Rearm {
                    iface,
                    key,
                    endpoint,
                }
            } else {
                Action::SetEndpoint {
                    iface,
                    key,
                    endpoint,
                }
            });
        }
        out.push(Action::Persist);
        self.stage(now, name, key, to, out);
    }

    fn stage(
        &mut self,
        now: Now,
        name: &str,
        key: PublicKey,
        to: SocketAddr,
        out: &mut Vec<Action>,
    ) {
        let Some(peer) = self.peer_mut(name, &key) else {
            return;
        };
        let Some(section) = peer.section.clone() else {
            return;
        };
        if peer.uci_endpoint == Some(to) {
            return;
        }
        peer.uci_endpoint = Some(to);
        out.push(Action::StageEndpoint {
            section,
            endpoint: to,
        });
        if self.policy.commit_after_s.is_some() {
            self.pending_since.get_or_insert(now.mono_ms);
        }
    }
}

fn peer_is_live(snap: &PeerSnapshot, now: Now) -> bool {
    snap.last_handshake
        .is_some_and(|t| now.wall.saturating_sub(t) < SESSION_LIFETIME_S)
}

fn remember_index(map: &mut HashMap<u32, PublicKey>, index: u32, key: PublicKey) {
    if map.values().filter(|k| **k == key).count() >= MAX_INDICES_PER_PEER {
        // Forget this peer's oldest-looking entries; indices are random, so
        // any will do as long as the table stays bounded.
        let stale: Vec<u32> = map
            .iter()
            .filter(|(_, k)| **k == key)
            .map(|(i, _)| *i)
            .take(MAX_INDICES_PER_PEER / 2)
            .collect();
        for i in stale {
            map.remove(&i);
        }
    }
    map.insert(index, key);
}

fn set_cause(
    out: &mut Vec<Action>,
    name: &str,
    key: PublicKey,
    peer: &mut Peer,
    cause: &'static str,
) {
    if peer.diag.cause != Some(cause) {
        peer.diag.cause = Some(cause);
        log(
            out,
            Level::Warn,
            format!("{name}: peer {} handshake failing: {cause}", key.short()),
        );
    }
}

fn log(out: &mut Vec<Action>, level: Level, msg: String) {
    out.push(Action::Log { level, msg });
}

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
