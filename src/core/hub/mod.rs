//! The hub's decisions: which endpoint each roaming peer really has.
//!
//! The kernel is the authority. The agent only ever acts ahead of it where it
//! can prove what it acts on, and nothing reaches uci (let alone flash) before
//! the kernel has confirmed it:
//! - **Confirmed** means: the kernel completed a handshake with the peer at
//!   that address (its `latest_handshake` advanced), or roamed there on
//!   authenticated data (its receive counter grew) from a source that sent no
//!   initiation the agent could not prove fresh. Only a confirmed endpoint is
//!   staged in uci and written to the state file.
//! - A captured initiation that decrypts to a configured peer moves the kernel
//!   endpoint at once only when its TAI64N is newer than a stamp the agent
//!   *trusts*: one it saw complete a handshake, or one from a state file that
//!   matches the running link (see [`Memory`]). Without such a stamp (after a
//!   start, a reload of an unmatched state, a lossy capture) the agent waits
//!   for the kernel: the handshake completing from that address confirms it.
//! - A transport packet whose receiver index maps to a peer, from a new
//!   address while the peer's kernel session is gone (link re-created), moves
//!   the kernel endpoint so the hub's next handshake reaches the peer; the
//!   mapping is only ever learnt from traffic the kernel authenticated, and
//!   the packet's counter must be beyond every one seen for that index.
//! - Anything the agent set that the kernel does not confirm within
//!   [`CONFIRM_MS`] is rolled back to the last confirmed endpoint; an endpoint
//!   the kernel took without traffic (configuration push) or from the source
//!   of an unproven initiation (a replay the kernel accepted because it forgot
//!   the peer's timestamp) is rolled back at the next observation.
//!
//! Everything else is counted and reported, never acted on.

pub mod cadence;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use super::key::PublicKey;
use super::time::Now;
use super::{Action, Level, log};

/// WireGuard's REJECT_AFTER_TIME: a session older than this is dead.
pub const SESSION_LIFETIME_S: u64 = 180;
/// How long an endpoint the agent set (or the kernel took on unproven
/// evidence) may wait for the kernel's confirmation before it is rolled back:
/// WireGuard's REKEY_TIMEOUT, the time one handshake attempt gets.
pub const CONFIRM_MS: u64 = 5000;
/// How long the kernel's endpoint may stay at the source of an initiation
/// the agent could not prove fresh, waiting for the handshake to complete
/// there (a round trip; a replay never completes).
pub const UNPROVEN_WAIT_MS: u64 = 1000;
/// The second look at a kernel endpoint that moved while the peer's counters
/// grew but nothing from there was captured: the capture ring shows a block
/// once the kernel retires it (4 ms, later on a loaded host).
pub const RECHECK_MS: u64 = 50;
/// Initiations without a completed handshake before we name a likely cause.
const FAILED_TRIES_FOR_DIAGNOSIS: u32 = 3;
/// ...spread over at least this long: two retries of WireGuard's REKEY_TIMEOUT
/// (5 s). Closer initiations are a peer (re)starting or a handshake this hub
/// answered before its next poll saw it, not a failure.
const FAILED_SPAN_FOR_DIAGNOSIS_MS: u64 = 10_000;
/// How long a source of unproven or replayed initiations stays suspect.
const SUSPECT_MS: u64 = 10_000;
/// Sources remembered at most (a flood must not grow memory).
const MAX_SUSPECTS: usize = 1024;
/// At most this many "ignored packet" log lines per interface and minute.
const REJECT_LOGS_PER_MINUTE: u32 = 5;
/// Index tables are bounded: a few sessions per peer.
const MAX_INDICES_PER_PEER: usize = 8;
/// Transport indices seen from one peer's address between two observations
/// at most while learning (more means someone else uses that address).
const MAX_LEARN_INDICES: usize = 4;
/// Learning gives up and starts over after this many observations without
/// an exact match (packets in flight at the moment of a read).
const MAX_LEARN_ROUNDS: u32 = 20;

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
    /// A transport packet with a learnt index, session gone.
    Index,
    /// Put back after configuration (or an unconfirmed move) replaced it.
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

/// Which WireGuard link is running: a re-created link has a new ifindex
/// (and has forgotten every session and every peer's last timestamp).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkId {
    pub ifindex: u32,
    pub public_key: PublicKey,
}

/// What a restarted agent remembers of a peer (from its state file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    pub iface: String,
    pub key: PublicKey,
    /// The last endpoint the kernel confirmed.
    pub endpoint: Option<SocketAddr>,
    /// The freshest TAI64N seen from the peer: anything not newer is a replay.
    pub stamp: Option<Stamp>,
    /// `stamp` was proven (a handshake completed after it).
    pub trusted: bool,
    /// The kernel's latest handshake when the file was written.
    pub last_handshake: Option<u64>,
    pub change: Option<Change>,
    /// Confirmed receiver indices of the peer's sessions, with the highest
    /// transport counter seen for each.
    pub indices: Vec<(u32, Option<u64>)>,
}

/// The state file's content.
///
/// It is **trusted** for a peer only when it matches the running kernel:
/// the interface has the same link (ifindex and public key: not re-created,
/// not another key) and the peer's kernel `latest_handshake` is exactly the
/// one written (no handshake happened while the agent was not watching, so
/// no initiation newer than the remembered stamp can have been accepted).
/// Trusted: the stamp proves freshness, the endpoint counts as confirmed.
/// Untrusted: the stamp only still marks older initiations as replays, the
/// endpoint is ignored, and indices are kept only for the same key and while
/// the sessions they name can still be alive at the peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    /// Wall-clock seconds when it was written.
    pub saved_at: u64,
    pub links: BTreeMap<String, LinkId>,
    pub peers: Vec<Remembered>,
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
    /// Genuine but not fresher than one already seen: a replay or clock skew;
    /// or a transport packet whose counter was already seen.
    Replay,
    /// Genuine, but the agent cannot prove it fresh (no trusted stamp yet):
    /// left to the kernel, which confirms it by completing the handshake.
    Unproven,
    /// A transport packet with an index not (or not provably) ours.
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
            Ignored::Unproven => "unproven",
            Ignored::UnknownIndex => "unknown_index",
            Ignored::Malformed => "malformed",
            Ignored::RateLimited => "rate_limited",
        }
    }
}

/// Inputs of the hub core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The identity of an interface's link, sent before each [`Event::Observed`];
    /// `None` when it cannot be read.
    Link { iface: String, link: Option<LinkId> },
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
        counter: u64,
        /// UDP payload length (what the kernel adds to the peer's rx bytes
        /// once it has authenticated the packet).
        len: u64,
    },
    /// The capture socket dropped packets (queue full): something may have
    /// arrived that the agent did not see.
    CaptureLoss { iface: String },
    /// Captured packets that failed verification: `count` of them for the
    /// same reason, the first from `from` (the capture glue counts a drain's
    /// rejections per kind).
    Ignored {
        iface: String,
        from: SocketAddr,
        why: Ignored,
        count: u64,
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

/// An endpoint in the kernel that the kernel has not confirmed yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub to: SocketAddr,
    pub why: Why,
    /// Monotonic ms since which it waits (or since it was decided, while
    /// the link is away and it could not be applied yet).
    pub since_ms: u64,
    /// How long it may wait for the kernel's confirmation.
    pub wait_ms: u64,
    /// Set in the kernel (false while the link is being re-created).
    pub applied: bool,
}

/// Transport bytes captured per index from a peer's address, matched against
/// the kernel's rx counter to learn the index of a session the agent did not
/// see begin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Learn {
    base_rx: u64,
    /// index → (bytes, highest counter)
    acc: BTreeMap<u32, (u64, u64)>,
    rounds: u32,
    spoiled: bool,
}

/// Everything the hub knows about one peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peer {
    pub section: Option<String>,
    /// The last endpoint the kernel confirmed (what status shows, what uci
    /// gets, what is restored).
    pub endpoint: Option<SocketAddr>,
    pub kernel_endpoint: Option<SocketAddr>,
    /// What uci holds (staged or committed).
    pub uci_endpoint: Option<SocketAddr>,
    pub last_handshake: Option<u64>,
    pub rx: u64,
    pub tx: u64,
    pub last_change: Option<Change>,
    /// The freshest TAI64N seen from this peer: nothing older or equal is
    /// ever acted on.
    pub stamp: Option<Stamp>,
    /// `stamp` is at least the kernel's: a newer initiation is provably fresh.
    pub trusted: bool,
    pub pending: Option<Pending>,
    pub diag: Diagnostics,
    /// Seen by the kernel in the latest observation.
    pub present: bool,
    /// The newest initiation seen (source, stamp, mono ms): trusted once the
    /// kernel completes a handshake from that source.
    seen: Option<(SocketAddr, Stamp, u64)>,
    /// The kernel's peer object may hold a timestamp (an initiation reached
    /// it since it was created): re-creating it would open a replay window.
    kernel_has_stamp: bool,
    /// A handshake message of this peer passed since the last observation
    /// (its bytes are in rx, not in the transport capture).
    handshake_traffic: bool,
    /// The kernel moved here while the peer's counters grew, but the capture
    /// showed nothing from here: the next look decides (confirm or restore).
    /// (endpoint, when, the peer's data was captured from where the agent
    /// believes it is).
    recheck: Option<(SocketAddr, u64, bool)>,
    learn: Learn,
}

impl Peer {
    /// The kernel has a usable session with this peer.
    pub fn session_live(&self, now: Now) -> bool {
        self.last_handshake
            .is_some_and(|t| now.wall.saturating_sub(t) < SESSION_LIFETIME_S)
    }
}

/// A receiver index of a peer's session (the hub's index, carried in the
/// peer's transport packets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexInfo {
    pub key: PublicKey,
    /// Tied to the peer by the kernel: a handshake it completed, or rx bytes
    /// that matched exactly. Only confirmed indices are acted on.
    pub confirmed: bool,
    /// Highest transport counter seen with it: anything not above is a replay.
    pub max_counter: Option<u64>,
    /// When the handshake that handed it out was seen (wall seconds), and
    /// the initiation's source (`None`: the hub's own initiation).
    pub issued: Option<(u64, Option<SocketAddr>)>,
}

/// One managed WireGuard interface.
#[derive(Debug, Clone, Default)]
pub struct Iface {
    pub name: String,
    /// The kernel interface exists.
    pub up: bool,
    pub link: Option<LinkId>,
    pub peers: BTreeMap<PublicKey, Peer>,
    /// Their sender index from a verified initiation → peer.
    /// Initiation sender index -> (peer, where the initiation came from).
    their_index: HashMap<u32, (PublicKey, SocketAddr)>,
    /// The hub's receiver indices → peer.
    pub indices: HashMap<u32, IndexInfo>,
    /// Sources of recent unproven or replayed initiations and replayed
    /// transport packets.
    pub(crate) suspects: HashMap<SocketAddr, Suspect>,
    /// Transport bytes captured per source since the last observation: the
    /// kernel roams only to where authenticated traffic came from.
    rx_from: HashMap<SocketAddr, u64>,
    /// More sources than `rx_from` keeps: absence proves nothing.
    rx_from_full: bool,
    /// The capture delivers transport packets (it works, and is on).
    transport_seen: bool,
    /// Each kernel endpoint's peer as last observed (`None`: shared).
    by_kernel_endpoint: HashMap<SocketAddr, Option<PublicKey>>,
    suspects_pruned: u64,
    pub ignored: BTreeMap<Ignored, u64>,
    logs_this_minute: (u64, u32),
    transport_capture: bool,
    observed_once: bool,
    /// The capture lost packets since the last observation.
    lossy: bool,
}

/// A source that sent unproven or replayed packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suspect {
    /// Monotonic ms of its first and latest such packet.
    pub first_ms: u64,
    pub last_ms: u64,
    /// A replay (not merely unproven) came from it.
    pub replay: bool,
}

impl Iface {
    /// The source's record, if it sent an unproven or replayed packet recently.
    fn suspect(&self, ep: SocketAddr, now: Now) -> Option<Suspect> {
        self.suspects
            .get(&ep)
            .filter(|s| now.since_ms(s.last_ms) < SUSPECT_MS)
            .copied()
    }

    fn add_suspect(&mut self, from: SocketAddr, replay: bool, now: Now) {
        if self.suspects.len() >= MAX_SUSPECTS && now.since_ms(self.suspects_pruned) >= 1000 {
            self.suspects_pruned = now.mono_ms;
            self.suspects
                .retain(|_, s| now.since_ms(s.last_ms) < SUSPECT_MS);
        }
        if let Some(s) = self.suspects.get_mut(&from) {
            if now.since_ms(s.last_ms) >= SUSPECT_MS {
                s.first_ms = now.mono_ms;
                s.replay = false;
            }
            s.last_ms = now.mono_ms;
            s.replay |= replay;
        } else if self.suspects.len() < MAX_SUSPECTS {
            self.suspects.insert(
                from,
                Suspect {
                    first_ms: now.mono_ms,
                    last_ms: now.mono_ms,
                    replay,
                },
            );
        }
    }

    fn add_index(&mut self, index: u32, info: IndexInfo) {
        if let Some(old) = self.indices.get(&index)
            && old.key != info.key
            && old.confirmed
        {
            // A random 32-bit index collides with a confirmed one of another
            // peer only by attack: keep what the kernel confirmed.
            return;
        }
        let mine = self.indices.values().filter(|i| i.key == info.key).count();
        if mine >= MAX_INDICES_PER_PEER && !self.indices.contains_key(&index) {
            // Forget unconfirmed ones first, then any: indices are random.
            let drop: Vec<u32> = self
                .indices
                .iter()
                .filter(|(_, i)| i.key == info.key)
                .map(|(n, i)| (i.confirmed, *n))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .take(MAX_INDICES_PER_PEER / 2)
                .map(|(_, n)| n)
                .collect();
            for n in drop {
                self.indices.remove(&n);
            }
        }
        let e = self.indices.entry(index).or_insert(info);
        e.key = info.key;
        e.confirmed |= info.confirmed;
        e.max_counter = e.max_counter.max(info.max_counter);
    }
}

/// The sans-IO hub: feed it events, carry out the actions it returns.
#[derive(Debug, Clone)]
pub struct Hub {
    policy: HubPolicy,
    pub ifaces: BTreeMap<String, Iface>,
    /// The state file, applied to each interface at its first observation.
    memory: Memory,
    /// Monotonic ms since which uci changes wait for a commit.
    pending_since: Option<u64>,
    pub commits: u64,
    /// Wall clock of the latest event (the state file's `saved_at`).
    pub last_wall: u64,
    /// The kernel should be read again soon (something may have moved it).
    observe_soon: bool,
}

impl Hub {
    pub fn new(policy: HubPolicy, ifaces: &[String], memory: Memory) -> Self {
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
        Self {
            policy,
            ifaces,
            memory,
            pending_since: None,
            commits: 0,
            last_wall: 0,
            observe_soon: false,
        }
    }

    fn peer_mut(&mut self, iface: &str, key: &PublicKey) -> Option<&mut Peer> {
        self.ifaces.get_mut(iface)?.peers.get_mut(key)
    }

    /// Staged uci changes wait for a commit.
    pub fn commit_pending(&self) -> bool {
        self.pending_since.is_some()
    }

    /// When something is next due, in monotonic ms: the interval commit, or
    /// the deadline of an endpoint waiting for the kernel's confirmation
    /// (the runtime reads the kernel then and the core confirms or rolls
    /// back), a second look ([`RECHECK_MS`]). The runtime also reads the kernel every `poll_ms`.
    pub fn poll_at(&self) -> Option<u64> {
        let commit = self
            .pending_since
            .zip(self.policy.commit_after_s)
            .map(|(since, after)| since + after * 1000);
        let peers = self.ifaces.values().flat_map(|i| i.peers.values());
        let due = peers.flat_map(|p| {
            let confirm = p
                .pending
                .filter(|p| p.applied)
                .map(|p| p.since_ms + p.wait_ms);
            let recheck = p.recheck.map(|(_, at, _)| at);
            confirm.into_iter().chain(recheck)
        });
        commit.into_iter().chain(due).min()
    }

    /// Whether the kernel should be read again now (an unproven or replayed
    /// initiation arrived: the kernel may have moved an endpoint on it).
    pub fn take_observe_soon(&mut self) -> bool {
        std::mem::take(&mut self.observe_soon)
    }

    /// Handles one event; returns what to do, in order.
    pub fn handle(&mut self, now: Now, event: Event) -> Vec<Action> {
        self.last_wall = now.wall;
        let mut out = Vec::new();
        match event {
            Event::Link { iface, link } => {
                if let Some(i) = self.ifaces.get_mut(&iface)
                    && link.is_some()
                {
                    if i.link.is_some() && i.link != link {
                        log(
                            &mut out,
                            Level::Notice,
                            format!(
                                "{iface}: link re-created; waiting for the kernel to confirm endpoints"
                            ),
                        );
                        for p in i.peers.values_mut() {
                            p.kernel_has_stamp = false;
                        }
                    }
                    i.link = link;
                }
            }
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
                    && let Some((key, src)) = i.their_index.get(&receiver_index).copied()
                {
                    // Confirmed only once the kernel completes this handshake.
                    i.add_index(
                        sender_index,
                        IndexInfo {
                            key,
                            confirmed: false,
                            max_counter: None,
                            issued: Some((now.wall, Some(src))),
                        },
                    );
                }
            }
            Event::OwnInitiation {
                iface,
                key,
                sender_index,
            } => {
                // The peer answers with this index in its transport packets.
                if let Some(i) = self.ifaces.get_mut(&iface)
                    && let Some(p) = i.peers.get_mut(&key)
                {
                    p.handshake_traffic = true;
                    i.add_index(
                        sender_index,
                        IndexInfo {
                            key,
                            confirmed: false,
                            max_counter: None,
                            issued: Some((now.wall, None)),
                        },
                    );
                }
            }
            Event::Transport {
                iface,
                from,
                receiver_index,
                counter,
                len,
            } => self.transport(now, &iface, from, receiver_index, counter, len, &mut out),
            Event::CaptureLoss { iface } => {
                if let Some(i) = self.ifaces.get_mut(&iface) {
                    if !i.lossy && i.peers.values().any(|p| p.trusted) {
                        log(
                            &mut out,
                            Level::Info,
                            format!(
                                "{iface}: capture lost packets; initiations wait for the kernel until the next handshake"
                            ),
                        );
                    }
                    i.lossy = true;
                    // A genuine initiation may have reached the kernel
                    // unseen: our stamp no longer proves anything newer.
                    for p in i.peers.values_mut() {
                        p.trusted = false;
                    }
                }
            }
            Event::Ignored {
                iface,
                from,
                why,
                count,
            } => self.ignored_many(now, &iface, from, why, count, &mut out),
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

    /// The state file meets the running kernel (first observation).
    fn apply_memory(
        &mut self,
        now: Now,
        name: &str,
        peers: &[PeerSnapshot],
        out: &mut Vec<Action>,
    ) {
        let Some(iface) = self.ifaces.get_mut(name) else {
            return;
        };
        let mine: Vec<Remembered> = self
            .memory
            .peers
            .iter()
            .filter(|r| r.iface == name)
            // A peer removed from the kernel and from uci while the agent
            // was stopped is gone: remembering it would list it again.
            .filter(|r| peers.iter().any(|s| s.key == r.key) || iface.peers.contains_key(&r.key))
            .cloned()
            .collect();
        if mine.is_empty() {
            return;
        }
        let saved = self.memory.links.get(name).copied();
        let same_link = saved.is_some() && saved == iface.link;
        let same_key =
            saved.is_some() && saved.map(|l| l.public_key) == iface.link.map(|l| l.public_key);
        let recent = now.wall.saturating_sub(self.memory.saved_at) < SESSION_LIFETIME_S;
        let mut trusted_n = 0;
        let mut restage = Vec::new();
        for r in &mine {
            let snap = peers.iter().find(|s| s.key == r.key);
            let peer = iface.peers.entry(r.key).or_default();
            // Older or equal stamps are replays whatever else is true.
            peer.stamp = peer.stamp.max(r.stamp);
            let same_handshake = snap.is_some_and(|s| s.last_handshake == r.last_handshake);
            if same_link && same_handshake {
                trusted_n += 1;
                peer.trusted = r.trusted;
                peer.endpoint = r.endpoint;
                peer.last_change = r.change;
                if let Some(ep) = r.endpoint
                    && peer.uci_endpoint != Some(ep)
                {
                    restage.push((r.key, ep));
                }
            }
            if (same_link && same_handshake) || (same_key && recent) {
                for &(index, max_counter) in &r.indices {
                    iface.add_index(
                        index,
                        IndexInfo {
                            key: r.key,
                            confirmed: true,
                            max_counter,
                            issued: None,
                        },
                    );
                }
            }
        }
        let why = if trusted_n == mine.len() {
            "trusted (same link, no handshake since it was written)".to_string()
        } else if saved.is_none() {
            "not trusted (written by an older version or for another link)".to_string()
        } else if !same_link {
            "not trusted (the link was re-created or has another key)".to_string()
        } else {
            format!(
                "trusted for {trusted_n} of {} peers (the others handshaked while the agent was not running)",
                mine.len()
            )
        };
        log(out, Level::Info, format!("{name}: state file {why}"));
        for (key, ep) in restage {
            self.stage(now, name, key, ep, out);
        }
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
                p.kernel_has_stamp = false;
                p.learn = Learn::default();
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
        if first {
            self.apply_memory(now, name, &peers, out);
        }
        let Some(iface) = self.ifaces.get_mut(name) else {
            return;
        };
        let lossy = std::mem::take(&mut iface.lossy);
        let rx_from = std::mem::take(&mut iface.rx_from);
        let capture_complete =
            iface.transport_seen && !lossy && !std::mem::take(&mut iface.rx_from_full);
        for p in iface.peers.values_mut() {
            p.present = false;
        }
        let mut ops = Vec::new();
        for snap in peers {
            let suspect = snap.endpoint.and_then(|e| iface.suspect(e, now));
            let peer = iface.peers.entry(snap.key).or_default();
            // The peer (or the link) was re-created: counters start over and
            // the kernel forgot the peer's last timestamp.
            let reset = snap.rx < peer.rx
                || (peer.last_handshake.is_some() && snap.last_handshake.is_none());
            if reset {
                peer.kernel_has_stamp = false;
            }
            let hs_adv = !first
                && snap.last_handshake.is_some()
                && snap.last_handshake > peer.last_handshake;
            let rx_grew = !first && !reset && snap.rx > peer.rx;
            let prev_rx = peer.rx;
            let prev_kernel = peer.kernel_endpoint;
            let handshake_traffic = std::mem::take(&mut peer.handshake_traffic);
            if hs_adv {
                // The state file must hold the kernel's latest handshake, or a
                // restarted agent could not trust it.
                out.push(Action::Persist);
                peer.diag.handshakes += 1;
                peer.diag.unanswered = 0;
                peer.diag.unanswered_since = None;
                peer.diag.cause = None;
            }
            let steady = !first
                && !reset
                && !hs_adv
                && !lossy
                && !handshake_traffic
                && prev_kernel == snap.endpoint
                && snap.endpoint.is_some();
            let learnt = learn(peer, steady, snap.rx);
            peer.present = true;
            peer.kernel_endpoint = snap.endpoint;
            peer.last_handshake = snap.last_handshake;
            peer.rx = snap.rx;
            peer.tx = snap.tx;
            // A handshake the kernel completed at or after an index was handed
            // out, with the peer where that handshake's initiation came from
            // (or answering the hub's own), ties the index to the peer even
            // when the agent never saw `latest handshake` advance (it started
            // in between, or two handshakes completed within one second). A
            // replayed initiation's index is never tied: the kernel is not at
            // the replay's source once the genuine handshake completes.
            if let (Some(h), Some(at)) = (snap.last_handshake, snap.endpoint) {
                for i in iface.indices.values_mut() {
                    if i.key == snap.key
                        && !i.confirmed
                        && i.issued
                            .is_some_and(|(w, src)| h >= w && src.is_none_or(|s| s == at))
                    {
                        i.confirmed = true;
                    }
                }
            }
            if hs_adv {
                // The kernel completed a handshake: the initiation seen from
                // where it now is was genuine, and so are the indices handed
                // out in it.
                if let (Some(e), Some((src, stamp, at))) = (snap.endpoint, peer.seen)
                    && src == e
                    && now.since_ms(at) < CONFIRM_MS + 1000
                {
                    peer.stamp = peer.stamp.max(Some(stamp));
                    peer.trusted = true;
                    out.push(Action::Persist);
                }
                for i in iface.indices.values_mut() {
                    if i.key == snap.key {
                        i.confirmed = true;
                    }
                }
                // Where the handshake completed, the unproven initiation was
                // the peer's own.
                if let Some(e) = snap.endpoint
                    && iface.suspects.get(&e).is_some_and(|s| !s.replay)
                {
                    iface.suspects.remove(&e);
                }
            }
            if let Some((index, max_counter)) = learnt {
                let known = iface
                    .indices
                    .get(&index)
                    .is_some_and(|i| i.key == snap.key && i.confirmed);
                if iface
                    .indices
                    .get(&index)
                    .is_some_and(|i| i.key != snap.key && i.confirmed)
                {
                    log(
                        out,
                        Level::Warn,
                        format!(
                            "{name}: peer {} index {index:#x} matches another peer's; not learnt",
                            snap.key.short()
                        ),
                    );
                } else if !known {
                    iface.add_index(
                        index,
                        IndexInfo {
                            key: snap.key,
                            confirmed: true,
                            max_counter: Some(max_counter),
                            issued: None,
                        },
                    );
                    log(
                        out,
                        Level::Info,
                        format!(
                            "{name}: peer {} session index {index:#x} learnt from traffic the kernel authenticated",
                            snap.key.short()
                        ),
                    );
                    out.push(Action::Persist);
                }
            }
            let peer = iface.peers.get_mut(&snap.key).expect("just inserted");
            // A decision taken while the link was away goes in now.
            if let Some(p) = &mut peer.pending
                && !p.applied
            {
                p.applied = true;
                p.since_ms = now.mono_ms;
                if snap.endpoint != Some(p.to) {
                    ops.push(Op::Apply(snap.key, p.to, p.why));
                }
                continue;
            }
            let Some(e) = snap.endpoint else { continue };
            let expired = |p: &Pending| now.since_ms(p.since_ms) >= p.wait_ms;
            if Some(e) == peer.endpoint {
                if peer.pending.is_some_and(|p| p.to == e || expired(&p)) {
                    peer.pending = None;
                }
                continue;
            }
            let replay_src = suspect.is_some_and(|s| s.replay);
            // Bytes captured from `e` since the last look: the kernel roams
            // only to the source of an authenticated packet.
            let data_from_e = rx_from.get(&e).is_some_and(|b| *b > 0);
            let from_believed = peer
                .endpoint
                .is_some_and(|b| b != e && rx_from.get(&b).is_some_and(|x| *x > 0));
            if let Some((_, _, seen_elsewhere)) = peer.recheck.take().filter(|r| r.0 == e) {
                // The second look: data from `e` captured since the first one
                // (the ring showed it late) or a handshake completed there
                // confirms it. The peer's data captured from where the agent
                // believes it is means configuration put `e` there. Nothing
                // captured from the peer at all: the capture missed its
                // traffic (the kernel moves only on authenticated packets and
                // its counter grew), so the kernel is believed.
                let fallback = peer.endpoint.or(peer.uci_endpoint).filter(|k| *k != e);
                let pushed = seen_elsewhere || from_believed;
                if (data_from_e && !lossy && suspect.is_none())
                    || (hs_adv && !replay_src)
                    || (!pushed && !lossy && suspect.is_none())
                {
                    ops.push(Op::Confirm(snap.key, e, Why::Kernel));
                } else if let Some(back) = fallback {
                    log(
                        out,
                        Level::Debug,
                        format!(
                            "{name}: peer {} at {e} on the second look: its data came from {}, nothing from there, no handshake",
                            snap.key.short(),
                            peer.endpoint.map_or("-".into(), |b| b.to_string())
                        ),
                    );
                    ops.push(Op::Restore(
                        snap.key,
                        back,
                        "changed without traffic from the peer",
                    ));
                }
                continue;
            }
            let confirmed = if first {
                false
            } else if hs_adv {
                !replay_src
            } else {
                // Authenticated data from there moved the kernel. Not when a
                // handshake message of the peer passed (its bytes count in rx
                // though nothing completed), nor for an endpoint the agent set
                // ahead of the kernel: that one needs the handshake.
                rx_grew
                    && !lossy
                    && !handshake_traffic
                    && suspect.is_none()
                    && peer.pending.is_none_or(|p| p.to != e)
                    && (!capture_complete || data_from_e)
            };
            if confirmed {
                let why = peer
                    .pending
                    .filter(|p| p.to == e)
                    .map_or(Why::Kernel, |p| p.why);
                peer.pending = None;
                ops.push(Op::Confirm(snap.key, e, why));
                continue;
            }
            // With nothing confirmed yet (a start), the configured endpoint is
            // the one to go back to.
            let fallback = peer.endpoint.or(peer.uci_endpoint).filter(|k| *k != e);
            if let Some(p) = peer.pending {
                if p.to == e && !expired(&p) && !replay_src {
                    continue;
                }
                if expired(&p) || p.to == e {
                    peer.pending = None;
                    if let Some(back) = fallback {
                        ops.push(Op::Restore(snap.key, back, "not confirmed by the kernel"));
                    }
                    continue;
                }
            }
            if first {
                continue;
            }
            let moved = prev_kernel != Some(e);
            let Some(back) = fallback else { continue };
            match suspect {
                Some(s) if s.replay => {
                    ops.push(Op::Restore(snap.key, back, "source of a replayed packet"))
                }
                Some(s) if moved => {
                    // A genuine initiation the agent could not prove fresh: a
                    // real roam completes its handshake within a round trip, a
                    // replay the kernel took never does.
                    peer.pending = Some(Pending {
                        to: e,
                        why: Why::Kernel,
                        since_ms: s.first_ms,
                        wait_ms: UNPROVEN_WAIT_MS,
                        applied: true,
                    });
                }
                Some(_) => {}
                None if !moved => {}
                None if peer.endpoint.is_some()
                    && !hs_adv
                    && rx_grew
                    && capture_complete
                    && !data_from_e
                    && !handshake_traffic =>
                {
                    // The peer talked, but none of it was captured from `e`:
                    // configuration put it there while the peer talks from
                    // elsewhere, or the ring had not shown the packets yet (a
                    // loaded host retires blocks late). One more look, soon.
                    log(
                        out,
                        Level::Debug,
                        format!(
                            "{name}: peer {} at {e}: rx {prev_rx} -> {}, nothing captured from there (captured from {:?}); a second look",
                            snap.key.short(),
                            snap.rx,
                            rx_from.keys().collect::<Vec<_>>()
                        ),
                    );
                    peer.recheck = Some((e, now.mono_ms + RECHECK_MS, from_believed));
                }
                None if peer.endpoint.is_some() && !hs_adv && !rx_grew => {
                    // Nothing came from the peer at `e`: configuration (netifd's
                    // `wg syncconf`, a ucode handler's snapshot) put it there.
                    log(
                        out,
                        Level::Debug,
                        format!(
                            "{name}: peer {} at {e}: its rx counter did not grow ({} -> {}{})",
                            snap.key.short(),
                            prev_rx,
                            snap.rx,
                            if reset { ", reset" } else { "" }
                        ),
                    );
                    ops.push(Op::Restore(
                        snap.key,
                        back,
                        "changed without traffic from the peer",
                    ))
                }
                None if rx_grew => {
                    // Traffic, but the capture may have missed what moved it.
                    peer.pending = Some(Pending {
                        to: e,
                        why: Why::Kernel,
                        since_ms: now.mono_ms,
                        wait_ms: CONFIRM_MS,
                        applied: true,
                    });
                }
                None => {}
            }
        }
        let mut by_ep: HashMap<SocketAddr, Option<PublicKey>> = HashMap::new();
        for (k, p) in &iface.peers {
            if let Some(e) = p.kernel_endpoint {
                by_ep.entry(e).and_modify(|o| *o = None).or_insert(Some(*k));
            }
        }
        iface.by_kernel_endpoint = by_ep;
        for op in ops {
            match op {
                Op::Confirm(key, ep, why) => self.confirm(now, name, key, ep, why, out),
                Op::Restore(key, ep, why) => self.restore(now, name, key, ep, why, out),
                Op::Apply(key, ep, why) => self.set_kernel(name, key, ep, why, out),
            }
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
        // Its bytes count in the kernel's rx if the kernel takes it: not a
        // stale one while the kernel holds a newer stamp (a stream of replays
        // must not keep the peer's data from confirming a move).
        if !stale || !peer.kernel_has_stamp {
            peer.handshake_traffic = true;
        }
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
        let proven = peer.trusted;
        peer.stamp = Some(stamp);
        peer.seen = Some((from, stamp, now.mono_ms));
        peer.kernel_has_stamp = true;
        iface.their_index.retain(|_, (k, _)| *k != key);
        iface.their_index.insert(sender_index, (key, from));
        if !proven {
            // Genuine, but possibly a replay of one the kernel has already
            // seen: the kernel decides (the handshake completes from `from`).
            return self.ignored(now, name, from, Ignored::Unproven, out);
        }
        iface.suspects.remove(&from);
        let (known, kernel) = (peer.endpoint, peer.kernel_endpoint);
        if known != Some(from) && peer.pending.is_none_or(|p| p.to != from) {
            peer.pending = Some(Pending {
                to: from,
                why: Why::Initiation,
                since_ms: now.mono_ms,
                wait_ms: CONFIRM_MS,
                applied: iface.up && peer.present,
            });
            if kernel != Some(from) && iface.up && peer.present {
                self.set_kernel(name, key, from, Why::Initiation, out);
            }
        }
        // The handshake completes within a round trip: read the kernel
        // again soon to confirm it (and stage it) then, not a poll later.
        self.observe_soon = true;
        // The stamp is part of what must survive a restart.
        out.push(Action::Persist);
    }

    #[allow(clippy::too_many_arguments)]
    fn transport(
        &mut self,
        now: Now,
        name: &str,
        from: SocketAddr,
        index: u32,
        counter: u64,
        len: u64,
        out: &mut Vec<Action>,
    ) {
        let Some(iface) = self.ifaces.get_mut(name) else {
            return;
        };
        iface.transport_seen = true;
        if let Some(b) = iface.rx_from.get_mut(&from) {
            *b += len;
        } else if iface.rx_from.len() < MAX_SUSPECTS {
            iface.rx_from.insert(from, len);
        } else {
            iface.rx_from_full = true;
        }
        // Learning: bytes per index from where the kernel has a live peer
        // (one map lookup per packet, however many peers).
        let owner = iface.by_kernel_endpoint.get(&from).copied().flatten();
        if let Some(p) = owner.and_then(|k| iface.peers.get_mut(&k)) {
            if p.kernel_endpoint == Some(from) && p.session_live(now) {
                let l = &mut p.learn;
                if l.acc.len() >= MAX_LEARN_INDICES && !l.acc.contains_key(&index) {
                    l.spoiled = true;
                } else {
                    let a = l.acc.entry(index).or_default();
                    a.0 += len;
                    a.1 = a.1.max(counter);
                }
            }
        }
        let Some(info) = iface.indices.get(&index).copied() else {
            return self.ignored(now, name, from, Ignored::UnknownIndex, out);
        };
        let Some(peer) = iface.peers.get(&info.key) else {
            return;
        };
        if peer.kernel_endpoint == Some(from) || peer.endpoint == Some(from) {
            // The peer's own traffic where it is: the counter moves on.
            if let Some(i) = iface.indices.get_mut(&index) {
                i.max_counter = i.max_counter.max(Some(counter));
            }
            return;
        }
        if !info.confirmed {
            return self.ignored(now, name, from, Ignored::UnknownIndex, out);
        }
        // While the kernel has the session it authenticates and roams itself.
        if peer.session_live(now) {
            return;
        }
        if info.max_counter.is_some_and(|m| counter <= m) {
            return self.ignored(now, name, from, Ignored::Replay, out);
        }
        if peer
            .pending
            .is_some_and(|p| now.since_ms(p.since_ms) < p.wait_ms)
        {
            // One candidate at a time until the kernel confirms or it expires.
            return;
        }
        let key = info.key;
        let applied = iface.up && peer.present;
        if let Some(p) = iface.peers.get_mut(&key) {
            p.pending = Some(Pending {
                to: from,
                why: Why::Index,
                since_ms: now.mono_ms,
                wait_ms: CONFIRM_MS,
                applied,
            });
        }
        if applied {
            self.set_kernel(name, key, from, Why::Index, out);
        } else {
            log(
                out,
                Level::Notice,
                format!(
                    "{name}: peer {} seen at {from} (index); applied when the link is back",
                    key.short()
                ),
            );
        }
    }

    fn ignored(
        &mut self,
        now: Now,
        name: &str,
        from: SocketAddr,
        why: Ignored,
        out: &mut Vec<Action>,
    ) {
        self.ignored_many(now, name, from, why, 1, out);
    }

    fn ignored_many(
        &mut self,
        now: Now,
        name: &str,
        from: SocketAddr,
        why: Ignored,
        count: u64,
        out: &mut Vec<Action>,
    ) {
        let Some(iface) = self.ifaces.get_mut(name) else {
            return;
        };
        if count == 0 {
            return;
        }
        *iface.ignored.entry(why).or_default() += count;
        if why == Ignored::RateLimited {
            // An initiation went unverified: if it was the peer's, the kernel
            // may hold a newer stamp than ours. Safe degradation under a flood:
            // initiations wait for the kernel until the next handshake.
            for p in iface.peers.values_mut() {
                p.trusted = false;
            }
        }
        // Only a genuine initiation the agent could not act on can make the
        // kernel roam (when it forgot the peer's last timestamp, or never saw
        // this one); the rest it rejects itself. The map is bounded, and
        // pruned at most once a second, so a flood costs O(1) per packet.
        if matches!(why, Ignored::Replay | Ignored::Unproven) {
            iface.add_suspect(from, why == Ignored::Replay, now);
            self.observe_soon = true;
        }
        let minute = now.mono_ms / 60_000;
        if iface.logs_this_minute.0 != minute {
            iface.logs_this_minute = (minute, 0);
        }
        iface.logs_this_minute.1 += 1;
        // Unknown indices are normal after a restart (sessions begun before
        // it), unproven initiations after a start: only attempts at
        // deception are worth a notice.
        let level = if matches!(why, Ignored::UnknownIndex | Ignored::Unproven) {
            Level::Debug
        } else {
            Level::Notice
        };
        if iface.logs_this_minute.1 <= REJECT_LOGS_PER_MINUTE {
            let more = match count {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            log(
                out,
                level,
                format!("{name}: ignored packet from {from}: {}{more}", why.as_str()),
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
                i.suspects
                    .retain(|_, s| now.since_ms(s.last_ms) < SUSPECT_MS);
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

    /// Transport packets are captured (cut to their header) while a peer is
    /// known: the agent needs them to learn session indices from traffic the
    /// kernel authenticates, to know each index's counter (so a replayed
    /// packet is recognised), and to find a peer whose session is gone.
    fn update_transport_capture(&mut self, _now: Now, name: &str, out: &mut Vec<Action>) {
        let Some(iface) = self.ifaces.get_mut(name) else {
            return;
        };
        let want = iface
            .peers
            .values()
            .any(|p| p.endpoint.is_some() || p.kernel_endpoint.is_some());
        if want != iface.transport_capture {
            iface.transport_capture = want;
            out.push(Action::CaptureTransport {
                iface: name.to_string(),
                on: want,
            });
        }
    }

    /// Puts an endpoint into the kernel ahead of its confirmation.
    fn set_kernel(
        &mut self,
        name: &str,
        key: PublicKey,
        to: SocketAddr,
        why: Why,
        out: &mut Vec<Action>,
    ) {
        let Some(peer) = self.peer_mut(name, &key) else {
            return;
        };
        let from_s = peer
            .kernel_endpoint
            .map_or_else(|| "none".to_string(), |f| f.to_string());
        log(
            out,
            Level::Notice,
            format!(
                "{name}: peer {} kernel endpoint {from_s} -> {to} ({}, awaiting the kernel's confirmation)",
                key.short(),
                why.as_str()
            ),
        );
        // Re-creating the peer object resets WireGuard's handshake rate limit
        // (the hub handshakes at once) but also its memory of the peer's last
        // timestamp: only when it holds none, so no replay window opens.
        let rearm = why == Why::Index && !peer.kernel_has_stamp && peer.last_handshake.is_none();
        peer.kernel_endpoint = Some(to);
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

    /// The kernel confirmed `to`: it becomes the endpoint, staged in uci.
    fn confirm(
        &mut self,
        now: Now,
        name: &str,
        key: PublicKey,
        to: SocketAddr,
        why: Why,
        out: &mut Vec<Action>,
    ) {
        let Some(peer) = self.peer_mut(name, &key) else {
            return;
        };
        let from = peer.endpoint;
        peer.endpoint = Some(to);
        peer.last_change = Some(Change {
            at_wall: now.wall,
            from,
            to,
            why,
        });
        log_move(out, name, key, from, to, why.as_str());
        out.push(Action::Persist);
        self.stage(now, name, key, to, out);
    }

    /// Puts the confirmed endpoint back in the kernel (and in uci if needed).
    fn restore(
        &mut self,
        now: Now,
        name: &str,
        key: PublicKey,
        to: SocketAddr,
        cause: &str,
        out: &mut Vec<Action>,
    ) {
        let Some(peer) = self.peer_mut(name, &key) else {
            return;
        };
        let from = peer.kernel_endpoint;
        peer.pending = None;
        peer.last_change = Some(Change {
            at_wall: now.wall,
            from,
            to,
            why: Why::Restored,
        });
        log_move(out, name, key, from, to, &format!("restored: {cause}"));
        if peer.present {
            peer.kernel_endpoint = Some(to);
            out.push(Action::SetEndpoint {
                iface: name.to_string(),
                key,
                endpoint: to,
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

enum Op {
    Confirm(PublicKey, SocketAddr, Why),
    Restore(PublicKey, SocketAddr, &'static str),
    Apply(PublicKey, SocketAddr, Why),
}

/// One observation of the learning: `Some((index, highest counter))` when
/// exactly one index was captured from the peer's address and its bytes are
/// exactly what the kernel authenticated since learning began. A forged
/// packet with any index spoils the match (its bytes are captured, the kernel
/// does not count them), so nothing unauthenticated can plant a mapping.
fn learn(peer: &mut Peer, steady: bool, rx: u64) -> Option<(u32, u64)> {
    let l = &mut peer.learn;
    let restart = |l: &mut Learn| {
        *l = Learn {
            base_rx: rx,
            ..Learn::default()
        }
    };
    if !steady || l.spoiled || rx < l.base_rx {
        restart(l);
        return None;
    }
    let growth = rx - l.base_rx;
    let captured: u64 = l.acc.values().map(|a| a.0).sum();
    if growth > 0 && l.acc.len() == 1 && captured == growth {
        let (&index, &(_, max_counter)) = l.acc.iter().next()?;
        restart(l);
        return Some((index, max_counter));
    }
    l.rounds += 1;
    if captured > growth || l.acc.len() > 1 || l.rounds >= MAX_LEARN_ROUNDS {
        restart(l);
    }
    None
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

/// The one line every endpoint move logs (stable: `logread -e wgroam`, tests).
fn log_move(
    out: &mut Vec<Action>,
    name: &str,
    key: PublicKey,
    from: Option<SocketAddr>,
    to: SocketAddr,
    why: &str,
) {
    let from = from.map_or_else(|| "none".to_string(), |f| f.to_string());
    log(
        out,
        Level::Notice,
        format!(
            "{name}: peer {} endpoint {from} -> {to} ({why})",
            key.short()
        ),
    );
}

#[cfg(test)]
mod tests;
