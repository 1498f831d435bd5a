//! Glue between the capture socket, the handshake verifier and the hub core:
//! every captured frame becomes at most one core event, verified here so
//! the core only ever sees authenticated initiations; the frames it rejects
//! itself (bad mac1, malformed, forged, over the budget) are counted per
//! drain and reach the core as one event per kind.

use std::net::SocketAddr;
use std::os::fd::RawFd;

use crate::config::Interface;
use crate::core::PublicKey;
use crate::core::hub::{Event, Ignored};
use crate::hub::status::IfaceRuntime;
use crate::os::capture::{Direction, PacketCapture, PacketSource, ifindex};
use crate::os::wg::DeviceView;
use crate::wire::noise::{Reject, Responder};
use crate::wire::{self, INITIATION_LEN, Message};

/// Frames read per wakeup at most, so a flood cannot starve the loop (at
/// about a microsecond each, about a millisecond). Room for what a hold
/// gathers at the frame budget (160 ms at 5 000 frames a second: 800): a
/// drain that stopped short would leave the descriptor ready, and the
/// reader would wake again at once for the rest.
const BURST: usize = 1024;
/// Bytes of a frame classified: IPv6 with an extension header or two and
/// the largest handshake message (an initiation, 148 bytes).
const FRAME_MAX: usize = 256;
/// Initiations verified per second at most (each costs two X25519), with a
/// burst allowance; real peers initiate every two minutes.
const VERIFY_PER_S: u64 = 200;
const VERIFY_BURST: u64 = 400;
/// And verification time at most this share of the CPU (per mille), with a
/// burst allowance: on a fast CPU the count above binds (200 a second of
/// ~70 µs is 1.4 %), on a 24Kc router, where one verification takes
/// milliseconds, this one does, so a flood of valid-mac1 garbage costs the
/// router the same small share whatever its speed. An initiation over
/// budget is not lost: the kernel handles it, the next poll reads the result.
const VERIFY_CPU_PERMILLE: i64 = 30;
const VERIFY_CPU_BURST_US: i64 = 100_000;

/// Two token buckets over monotonic milliseconds: verifications, and the
/// CPU time they took.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    tokens_milli: u64,
    /// Below zero: time spent beyond the budget, paid back first.
    cpu_us: i64,
    last_ms: u64,
}

impl Budget {
    pub fn new() -> Self {
        Self {
            tokens_milli: VERIFY_BURST * 1000,
            cpu_us: VERIFY_CPU_BURST_US,
            last_ms: 0,
        }
    }

    /// Takes one verification if both buckets allow it; the caller then
    /// [`Budget::charge`]s what it cost.
    pub fn take(&mut self, now_ms: u64) -> bool {
        let dt = now_ms.saturating_sub(self.last_ms);
        self.last_ms = now_ms;
        self.tokens_milli = (self.tokens_milli + dt * VERIFY_PER_S).min(VERIFY_BURST * 1000);
        let earned = i64::try_from(dt)
            .unwrap_or(i64::MAX)
            .saturating_mul(VERIFY_CPU_PERMILLE);
        self.cpu_us = self.cpu_us.saturating_add(earned).min(VERIFY_CPU_BURST_US);
        if self.tokens_milli >= 1000 && self.cpu_us > 0 {
            self.tokens_milli -= 1000;
            true
        } else {
            false
        }
    }

    /// Records the time one verification took.
    pub fn charge(&mut self, spent: std::time::Duration) {
        let us = i64::try_from(spent.as_micros()).unwrap_or(i64::MAX);
        self.cpu_us = self.cpu_us.saturating_sub(us);
    }
}

impl Default for Budget {
    fn default() -> Self {
        Self::new()
    }
}

/// Capture state of one interface; empty until the interface is up.
#[derive(Default)]
pub struct HubCapture {
    open: Option<Open>,
    /// What the core last asked for; a socket (re)opened later must honour
    /// it, or transport packets stay filtered out after a link re-creation.
    want_transport: bool,
    /// Last open failure, retried on each observation.
    failed: Option<String>,
    /// The last drain stopped at its burst limit: more is queued.
    saturated: bool,
    /// A frame the kernel may act on was read, or frames were dropped,
    /// since [`HubCapture::take_seen`].
    seen: bool,
    /// The last drain left the descriptor held back (coalescing or resting,
    /// see [`HubCapture::waits`]): when that ends the daemon reads the ring
    /// at once ([`HubCapture::hold_over`]) instead of waiting for the
    /// descriptor to say what it already knows (one wakeup per cycle, not
    /// a timer wakeup and then a poll that finds the ring ready).
    held: bool,
}

struct Open {
    source: PacketCapture,
    responder: Responder,
    public: PublicKey,
    port: u16,
    transport: bool,
    budget: Budget,
    /// Each peer's mac1 key: names the peer an outgoing initiation is for.
    peers: Vec<(PublicKey, [u8; 32])>,
}

fn peer_keys(view: &DeviceView) -> Vec<(PublicKey, [u8; 32])> {
    view.peers
        .iter()
        .map(|p| (p.key, crate::wire::noise::mac1_key(&p.key.0)))
        .collect()
}

impl HubCapture {
    /// Opens (or re-opens after a key or port change) the capture socket.
    pub fn ensure(&mut self, cfg: &Interface, view: &DeviceView, rt: &mut IfaceRuntime) {
        let (Some(port), Some(private), Some(public)) =
            (view.listen_port, view.private_key.as_ref(), view.public_key)
        else {
            // A link being re-created has neither for a moment. Keep listening
            // with what it had: the peer's first packet after the restart is
            // the one that says where it is now, and a socket opened later
            // would not see it.
            if self.open.is_none() {
                rt.capture = None;
                rt.capture_error = Some("interface has no private key or listen port yet".into());
            }
            return;
        };
        if let Some(o) = &mut self.open
            && o.port == port
            && o.public == public
        {
            if o.peers.len() != view.peers.len()
                || o.peers.iter().zip(&view.peers).any(|(a, b)| a.0 != b.key)
            {
                o.peers = peer_keys(view);
            }
            return;
        }
        let device = cfg.capture_device.as_deref();
        match open(device, port, self.want_transport) {
            Ok(source) => {
                crate::os::syslog::emit(
                    crate::core::Level::Debug,
                    &format!(
                        "{}: capture on {} port {port} (transport {})",
                        cfg.ifname,
                        device.unwrap_or("any"),
                        self.want_transport
                    ),
                );
                self.open = Some(Open {
                    source,
                    responder: Responder::new(**private),
                    public,
                    port,
                    transport: self.want_transport,
                    budget: Budget::new(),
                    peers: peer_keys(view),
                });
                self.failed = None;
                rt.capture = Some(format!("{} port {port}", device.unwrap_or("any")));
                rt.capture_error = None;
            }
            Err(e) => {
                let msg = format!("cannot capture on {}: {e}", device.unwrap_or("any"));
                if self.failed.as_deref() != Some(msg.as_str()) {
                    crate::os::syslog::emit(
                        crate::core::Level::Error,
                        &format!("{}: {msg}", cfg.ifname),
                    );
                }
                self.failed = Some(msg.clone());
                self.open = None;
                rt.capture = None;
                rt.capture_error = Some(msg);
            }
        }
    }

    /// Whether the socket is open with the filter the core asked for: then
    /// every packet to the listen port that the kernel could roam or
    /// handshake on wakes the hub (while a peer is known, transport packets
    /// too).
    pub fn covers(&self) -> bool {
        self.open
            .as_ref()
            .is_some_and(|o| o.transport == self.want_transport)
    }

    /// Whether a frame the kernel may act on was read, or frames were
    /// dropped, since the last call (junk it rejects itself does not count).
    pub fn take_seen(&mut self) -> bool {
        std::mem::take(&mut self.seen)
    }

    /// Whether [`HubCapture::take_seen`] would say so.
    pub fn seen(&self) -> bool {
        self.seen
    }

    /// More frames were queued than the last drain read.
    pub fn saturated(&self) -> bool {
        self.open.is_some() && self.saturated
    }

    /// The descriptor to wait on; none while the capture rests after a flood
    /// went over its budget or coalesces wakeups (see [`HubCapture::waits`]).
    pub fn fd(&self) -> Option<RawFd> {
        self.open
            .as_ref()
            .filter(|o| o.source.waits().is_none())
            .map(|o| o.source.fd())
    }

    /// Until when [`HubCapture::fd`] is none: the daemon wakes then to wait
    /// for the descriptor again.
    pub fn waits(&self) -> Option<u64> {
        self.open.as_ref().and_then(|o| o.source.waits())
    }

    /// The hold the last drain left ended: read the ring now.
    pub fn hold_over(&self) -> bool {
        self.held && self.open.is_some() && self.waits().is_none()
    }

    pub fn set_transport(&mut self, on: bool) {
        self.want_transport = on;
        if let Some(o) = &mut self.open
            && o.transport != on
        {
            match o.source.set_transport(on) {
                Ok(()) => o.transport = on,
                Err(e) => crate::os::syslog::emit(
                    crate::core::Level::Error,
                    &format!("capture: cannot change filter: {e}"),
                ),
            }
        }
    }

    /// Frames the kernel dropped (queue full) since the last call.
    pub fn take_drops(&mut self) -> u64 {
        let drops = self
            .open
            .as_mut()
            .and_then(|o| o.source.take_drops().ok())
            .map_or(0, u64::from);
        self.seen |= drops > 0;
        drops
    }

    /// Reads what is queued and turns it into core events.
    pub fn drain(&mut self, iface: &str, now_ms: u64) -> Vec<Event> {
        let Some(o) = &mut self.open else {
            return Vec::new();
        };
        let who = Who {
            responder: &o.responder,
            port: o.port,
            peers: &o.peers,
        };
        let mut verdicts = Verdicts::new(iface, who, &mut o.budget, now_ms);
        self.saturated = true;
        for _ in 0..BURST {
            match o.source.next_frame(now_ms) {
                // Classified where it lies, as far as a handshake message
                // and its headers go.
                Ok(Some(c)) => verdicts.push(&c.data[..c.data.len().min(FRAME_MAX)], c.direction),
                Ok(None) => {
                    self.saturated = false;
                    break;
                }
                Err(e) => {
                    crate::os::syslog::emit(
                        crate::core::Level::Error,
                        &format!("{iface}: capture read failed: {e}"),
                    );
                    break;
                }
            }
        }
        let (events, seen) = verdicts.finish();
        self.seen |= seen;
        self.held = o.source.waits().is_some();
        events
    }
}

/// A drain's frames turned into core events, in the order they came, with
/// the mac1 checks of incoming initiations made four at a time on x86_64
/// and aarch64 ([`Responder::verify_mac1_x4`]: a flood of junk initiations
/// is nothing but such checks). Initiations wait (copied) for the batch to
/// fill; any other verdict first settles those waiting, so events keep
/// frame order: the same events as [`classify`] frame by frame.
pub struct Verdicts<'a> {
    judge: Judge<'a>,
    /// Whether initiations wait to be checked four at a time (x86_64 and
    /// aarch64: [`wire::noise::MAC1_LANES`]); elsewhere each is checked at
    /// once, where it lies.
    lanes: bool,
    /// Incoming initiations waiting for their mac1 check.
    waiting: usize,
    from: [SocketAddr; 4],
    msgs: [[u8; INITIATION_LEN]; 4],
    events: Vec<Event>,
    /// Rejected frames by kind: (first source, how many).
    rejected: Vec<(Ignored, SocketAddr, u64)>,
    seen: bool,
}

impl<'a> Verdicts<'a> {
    pub fn new(iface: &'a str, who: Who<'a>, budget: &'a mut Budget, now_ms: u64) -> Self {
        Verdicts {
            judge: Judge {
                iface,
                who,
                budget,
                now_ms,
            },
            lanes: wire::noise::MAC1_LANES,
            waiting: 0,
            from: [SocketAddr::from(([0, 0, 0, 0], 0)); 4],
            msgs: [[0; INITIATION_LEN]; 4],
            events: Vec::new(),
            rejected: Vec::new(),
            seen: false,
        }
    }

    /// One captured L3 frame.
    pub fn push(&mut self, frame: &[u8], direction: Direction) {
        match step(self.judge.iface, &self.judge.who, frame, direction) {
            Step::Mac1(from, msg) if !self.lanes => {
                let ok = self.judge.who.responder.verify_mac1(msg);
                let v = self.judge.initiation(from, msg, ok);
                self.take(v);
            }
            Step::Mac1(from, msg) => {
                self.from[self.waiting] = from;
                self.msgs[self.waiting] = *msg;
                self.waiting += 1;
                if self.waiting == 4 {
                    self.settle();
                }
            }
            Step::Done(None) => {}
            Step::Done(Some(v)) => {
                self.settle();
                self.take(Some(v));
            }
        }
    }

    /// The core events, rejections last (one per kind: an initiation over
    /// the budget makes the core distrust its stamps, which is never undone
    /// by a verified one read earlier in the same drain), and whether a
    /// frame the kernel may act on was among them.
    pub fn finish(mut self) -> (Vec<Event>, bool) {
        self.settle();
        let iface = self.judge.iface;
        self.events.extend(
            self.rejected
                .into_iter()
                .map(|(why, from, count)| Event::Ignored {
                    iface: iface.to_string(),
                    from,
                    why,
                    count,
                }),
        );
        (self.events, self.seen)
    }

    /// Checks the waiting initiations' mac1 and takes their verdicts.
    fn settle(&mut self) {
        let n = std::mem::take(&mut self.waiting);
        let responder = self.judge.who.responder;
        let ok = if n == 4 {
            let m = &self.msgs;
            responder.verify_mac1_x4([&m[0], &m[1], &m[2], &m[3]])
        } else {
            std::array::from_fn(|i| i < n && responder.verify_mac1(&self.msgs[i]))
        };
        for (i, ok) in ok.into_iter().enumerate().take(n) {
            let v = self.judge.initiation(self.from[i], &self.msgs[i], ok);
            self.take(v);
        }
    }

    fn take(&mut self, v: Option<Verdict>) {
        // What the kernel may act on (news, or an initiation left
        // unverified) makes the hub read it; what it rejects itself (bad
        // mac1, malformed, forged) does not.
        self.seen |= matches!(
            v,
            Some(Verdict::Event(_) | Verdict::Ignored(_, Ignored::RateLimited))
        );
        match v {
            Some(Verdict::Event(e)) => self.events.push(e),
            Some(Verdict::Ignored(from, why)) => {
                match self.rejected.iter_mut().find(|r| r.0 == why) {
                    Some(r) => r.2 += 1,
                    None => self.rejected.push((why, from, 1)),
                }
            }
            None => {}
        }
    }
}

/// What decides on an incoming initiation in a drain: the interface, the
/// verification budget and the drain's time.
struct Judge<'a> {
    iface: &'a str,
    who: Who<'a>,
    budget: &'a mut Budget,
    now_ms: u64,
}

impl Judge<'_> {
    /// [`after_mac1`] with the verification budget: whether the check may
    /// run, and what it took.
    fn initiation(
        &mut self,
        from: SocketAddr,
        msg: &[u8; INITIATION_LEN],
        mac1_ok: bool,
    ) -> Option<Verdict> {
        let (budget, now_ms) = (&mut *self.budget, self.now_ms);
        // When a verification was allowed: it runs right after.
        let mut granted = None;
        let mut verify = || {
            let allowed = budget.take(now_ms);
            if allowed {
                granted = Some(std::time::Instant::now());
            }
            allowed
        };
        let v = after_mac1(self.iface, &self.who, from, msg, mac1_ok, &mut verify);
        if let Some(t0) = granted {
            budget.charge(t0.elapsed());
        }
        v
    }
}

/// Frame-by-frame [`classify`] with a drain's bookkeeping (rejections
/// counted per kind and appended last; whether a frame the kernel may act
/// on was read): what [`Verdicts`] must report for the same frames. The
/// reference of its unit test and of the `capture_ring` fuzz target; the
/// budget is only taken, not charged (timings would differ).
#[cfg(any(test, feature = "test-support"))]
pub fn classify_each<'f>(
    iface: &str,
    who: &Who<'_>,
    frames: impl IntoIterator<Item = (&'f [u8], Direction)>,
    budget: &mut Budget,
    now_ms: u64,
) -> (Vec<Event>, bool) {
    let mut events = Vec::new();
    let mut rejected: Vec<(Ignored, SocketAddr, u64)> = Vec::new();
    let mut seen = false;
    for (frame, direction) in frames {
        let v = classify(iface, who, frame, direction, &mut || budget.take(now_ms));
        seen |= matches!(
            v,
            Some(Verdict::Event(_) | Verdict::Ignored(_, Ignored::RateLimited))
        );
        match v {
            Some(Verdict::Event(e)) => events.push(e),
            Some(Verdict::Ignored(from, why)) => match rejected.iter_mut().find(|r| r.0 == why) {
                Some(r) => r.2 += 1,
                None => rejected.push((why, from, 1)),
            },
            None => {}
        }
    }
    events.extend(
        rejected
            .into_iter()
            .map(|(why, from, count)| Event::Ignored {
                iface: iface.to_string(),
                from,
                why,
                count,
            }),
    );
    (events, seen)
}

/// What classification needs to know about the interface.
#[derive(Clone, Copy)]
pub struct Who<'a> {
    pub responder: &'a Responder,
    pub port: u16,
    /// Each peer's mac1 key (see [`crate::wire::noise::mac1_key`]).
    pub peers: &'a [(PublicKey, [u8; 32])],
}

/// What one captured frame is.
#[derive(Debug)]
pub enum Verdict {
    /// News for the core.
    Event(Event),
    /// Rejected here, from this source: only counted (and logged, rate
    /// limited) by the core.
    Ignored(SocketAddr, Ignored),
}

impl Verdict {
    /// The core event for this one frame.
    pub fn into_event(self, iface: &str) -> Event {
        match self {
            Verdict::Event(e) => e,
            Verdict::Ignored(from, why) => Event::Ignored {
                iface: iface.to_string(),
                from,
                why,
                count: 1,
            },
        }
    }
}

/// One captured L3 frame → at most one verdict.
pub fn classify(
    iface: &str,
    who: &Who<'_>,
    frame: &[u8],
    direction: Direction,
    budget: &mut dyn FnMut() -> bool,
) -> Option<Verdict> {
    match step(iface, who, frame, direction) {
        Step::Done(v) => v,
        Step::Mac1(from, msg) => {
            let ok = who.responder.verify_mac1(msg);
            after_mac1(iface, who, from, msg, ok, budget)
        }
    }
}

/// A frame's verdict, or the incoming initiation whose verdict waits for
/// its mac1 check (made one by one or four at a time).
enum Step<'f> {
    Done(Option<Verdict>),
    Mac1(SocketAddr, &'f [u8; INITIATION_LEN]),
}

fn step<'f>(iface: &str, who: &Who<'_>, frame: &'f [u8], direction: Direction) -> Step<'f> {
    let port = who.port;
    // Names are allocated only for an event: frames that make none (most
    // of a flood's) cost no allocation here.
    let Ok(dg) = wire::parse_l3_prefix(frame) else {
        return Step::Done(None);
    };
    let payload = dg.payload(frame);
    let ignored = |from: SocketAddr, why| Step::Done(Some(Verdict::Ignored(from, why)));
    let event = |e| Step::Done(Some(Verdict::Event(e)));
    match direction {
        Direction::Outgoing => {
            // Our own responses teach us which index we gave to whom.
            if dg.src.port() != port {
                return Step::Done(None);
            }
            match wire::classify(payload) {
                Ok(Message::Response(r)) => event(Event::Response {
                    iface: iface.to_string(),
                    sender_index: r.sender_index(),
                    receiver_index: r.receiver_index(),
                }),
                Ok(Message::Initiation(init)) => who
                    .peers
                    .iter()
                    .find(|(_, k)| crate::wire::noise::verify_mac1_with(k, init.as_bytes()))
                    .map_or(Step::Done(None), |(key, _)| {
                        event(Event::OwnInitiation {
                            iface: iface.to_string(),
                            key: *key,
                            sender_index: init.sender_index(),
                        })
                    }),
                _ => Step::Done(None),
            }
        }
        Direction::Incoming => {
            if dg.dst.port() != port {
                return Step::Done(None);
            }
            let from = dg.src;
            if dg.truncated {
                // Transport packets are captured cut short on purpose.
                // (the filter keeps the 32 bytes a transport header needs).
                return match wire::classify(payload) {
                    Ok(Message::Transport(t)) => event(Event::Transport {
                        iface: iface.to_string(),
                        from,
                        receiver_index: t.receiver_index(),
                        counter: t.counter(),
                        len: udp_payload_len(frame, &dg),
                    }),
                    _ => ignored(from, Ignored::Malformed),
                };
            }
            match wire::classify(payload) {
                Ok(Message::Initiation(_)) => match payload.try_into() {
                    Ok(msg) => Step::Mac1(from, msg),
                    Err(_) => ignored(from, Ignored::Malformed),
                },
                Ok(Message::Transport(t)) => event(Event::Transport {
                    iface: iface.to_string(),
                    from,
                    receiver_index: t.receiver_index(),
                    counter: t.counter(),
                    len: udp_payload_len(frame, &dg),
                }),
                Ok(_) => Step::Done(None),
                Err(_) => ignored(from, Ignored::Malformed),
            }
        }
    }
}

/// The verdict on an incoming initiation once its mac1 was checked: the
/// budget decides whether it is verified (two X25519) here.
fn after_mac1(
    iface: &str,
    who: &Who<'_>,
    from: SocketAddr,
    msg: &[u8; INITIATION_LEN],
    mac1_ok: bool,
    budget: &mut dyn FnMut() -> bool,
) -> Option<Verdict> {
    let ignored = |why| Some(Verdict::Ignored(from, why));
    if !mac1_ok {
        return ignored(Ignored::BadMac1);
    }
    if !budget() {
        return ignored(Ignored::RateLimited);
    }
    let Ok(init) = wire::HandshakeInitiation::new_checked(&msg[..]) else {
        return ignored(Ignored::Malformed);
    };
    match who.responder.identify(&init) {
        Ok(who) => Some(Verdict::Event(Event::Initiation {
            iface: iface.to_string(),
            from,
            key: PublicKey(who.static_public),
            stamp: (who.timestamp.seconds, who.timestamp.nanos),
            sender_index: who.sender_index,
        })),
        Err(Reject::BadMac1) => ignored(Ignored::BadMac1),
        Err(Reject::Malformed) => ignored(Ignored::Malformed),
        Err(_) => ignored(Ignored::Forged),
    }
}

/// The UDP payload length from the UDP header (the frame itself may be cut
/// short by the snap length): what the kernel adds to the peer's rx bytes.
fn udp_payload_len(frame: &[u8], dg: &wire::Datagram) -> u64 {
    let at = dg.payload.start;
    match at.checked_sub(4).and_then(|i| frame.get(i..i + 2)) {
        Some(b) => u64::from(u16::from_be_bytes([b[0], b[1]])).saturating_sub(8),
        None => dg.payload.len() as u64,
    }
}

fn open(device: Option<&str>, port: u16, transport: bool) -> std::io::Result<PacketCapture> {
    let index = match device {
        Some(d) => ifindex(d)?,
        None => 0,
    };
    PacketCapture::open(index, port, transport)
}

/// Checks that a capture socket may be opened (for `wgroam check`).
pub fn probe(device: Option<&str>) -> std::io::Result<()> {
    open(device, 51820, false).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verification_budget_binds_by_count_on_a_fast_cpu_and_by_time_on_a_slow_one() {
        use std::time::Duration;
        let allowed = |cost: Duration| {
            let mut b = Budget::new();
            let mut n = 0;
            // Ten seconds of a flood: as many as the budget allows.
            for ms in 0..10_000u64 {
                while b.take(1_000 + ms) {
                    b.charge(cost);
                    n += 1;
                }
            }
            n
        };
        // 70 µs each: the count binds (burst + 200 a second).
        let fast = allowed(Duration::from_micros(70));
        assert!((2_000..=2_400).contains(&fast), "{fast}");
        // 5 ms each (a 24Kc): 3 % of the CPU (+ the burst), ~70 in 10 s.
        let slow = allowed(Duration::from_millis(5));
        assert!((60..=90).contains(&slow), "{slow}");
        // Time spent beyond the burst is paid back before the next one.
        let mut b = Budget::new();
        assert!(b.take(0));
        b.charge(Duration::from_secs(1));
        assert!(!b.take(1_000), "1 s spent, 30 ms earned back");
        assert!(b.take(40_000), "paid back");
    }
    use crate::core::Now;
    use crate::core::hub::{Hub, HubPolicy, PeerSnapshot, UciPeer};
    use crate::core::{Action, PublicKey};
    use crate::wire::noise::Tai64n;
    use crate::wire::noise::tests::{build_initiation, set_mac1};
    use crate::wire::tests::xorshift;
    use x25519_dalek::{PublicKey as XPublic, StaticSecret};

    const PORT: u16 = 51820;
    const HUB_PRIV: [u8; 32] = [0x11; 32];
    const PEER_PRIV: [u8; 32] = [0x22; 32];

    fn public(private: [u8; 32]) -> [u8; 32] {
        XPublic::from(&StaticSecret::from(private)).to_bytes()
    }

    /// An IPv4/UDP frame as AF_PACKET SOCK_DGRAM delivers it.
    fn frame(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
        let total = 20 + 8 + payload.len();
        let mut f = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0x40,
            0,
            64,
            17,
            0,
            0,
        ];
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        f
    }

    fn stamp(s: u64) -> Tai64n {
        Tai64n {
            seconds: 0x4000_0000_0000_0000 + s,
            nanos: 0,
        }
    }

    fn inbound(payload: &[u8], sport: u16) -> Vec<u8> {
        frame([203, 0, 113, 5], sport, [198, 51, 100, 2], PORT, payload)
    }

    fn run(f: &[u8], dir: Direction, allow: bool) -> Option<Event> {
        let r = Responder::new(HUB_PRIV);
        let peers = [(
            PublicKey(public(PEER_PRIV)),
            crate::wire::noise::mac1_key(&public(PEER_PRIV)),
        )];
        let who = Who {
            responder: &r,
            port: PORT,
            peers: &peers,
        };
        classify("wg0", &who, f, dir, &mut || allow).map(|v| v.into_event("wg0"))
    }

    #[test]
    fn genuine_initiation_names_its_peer() {
        let m = build_initiation(PEER_PRIV, [0x33; 32], public(HUB_PRIV), stamp(10), 77);
        match run(&inbound(&m, 30001), Direction::Incoming, true) {
            Some(Event::Initiation {
                key,
                from,
                sender_index,
                ..
            }) => {
                assert_eq!(key, PublicKey(public(PEER_PRIV)));
                assert_eq!(from.to_string(), "203.0.113.5:30001");
                assert_eq!(sender_index, 77);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn forgeries_are_named_not_acted_on() {
        let hub_pub = public(HUB_PRIV);
        let good = build_initiation(PEER_PRIV, [0x33; 32], hub_pub, stamp(10), 1);
        let why = |m: &[u8], allow| match run(&inbound(m, 4000), Direction::Incoming, allow) {
            Some(Event::Ignored { why, .. }) => why,
            other => panic!("{other:?}"),
        };
        // Altered after mac1: bad mac1.
        let mut m = good;
        m[100] ^= 1;
        assert_eq!(why(&m, true), Ignored::BadMac1);
        // mac1 recomputed by an attacker who knows only public keys: the
        // sealed timestamp does not open.
        set_mac1(&mut m, &hub_pub);
        assert_eq!(why(&m, true), Ignored::Forged);
        // Over the verification budget: not even decrypted.
        assert_eq!(why(&good, false), Ignored::RateLimited);
        // Truncated and oversized.
        assert_eq!(why(&good[..147], true), Ignored::Malformed);
        let mut big = good.to_vec();
        big.push(0);
        assert_eq!(why(&big, true), Ignored::Malformed);
    }

    #[test]
    fn own_initiation_names_the_peer_it_is_for() {
        // The hub initiating towards the peer: mac1 under the peer's key.
        let m = build_initiation(HUB_PRIV, [0x44; 32], public(PEER_PRIV), stamp(3), 0xabcd);
        let out = frame([198, 51, 100, 2], PORT, [203, 0, 113, 5], 30001, &m);
        assert_eq!(
            run(&out, Direction::Outgoing, true),
            Some(Event::OwnInitiation {
                iface: "wg0".into(),
                key: PublicKey(public(PEER_PRIV)),
                sender_index: 0xabcd
            })
        );
        // For someone who is not a peer: nothing.
        let m = build_initiation(HUB_PRIV, [0x44; 32], public([0x55; 32]), stamp(3), 1);
        let out = frame([198, 51, 100, 2], PORT, [203, 0, 113, 5], 30001, &m);
        assert_eq!(run(&out, Direction::Outgoing, true), None);
    }

    #[test]
    fn own_response_and_cut_transport_packets() {
        let mut resp = [0u8; 92];
        resp[0] = 2;
        resp[4..8].copy_from_slice(&5u32.to_le_bytes());
        resp[8..12].copy_from_slice(&9u32.to_le_bytes());
        let out = frame([198, 51, 100, 2], PORT, [203, 0, 113, 5], 30001, &resp);
        assert_eq!(
            run(&out, Direction::Outgoing, true),
            Some(Event::Response {
                iface: "wg0".into(),
                sender_index: 5,
                receiver_index: 9
            })
        );
        // A data packet cut by the filter's snap length after 32 payload bytes.
        let mut data = vec![0u8; 200];
        data[0] = 4;
        data[4..8].copy_from_slice(&5u32.to_le_bytes());
        let f = inbound(&data, 30002);
        let cut = &f[..20 + 8 + 32];
        assert!(matches!(
            run(cut, Direction::Incoming, true),
            Some(Event::Transport {
                receiver_index: 5,
                len: 200,
                ..
            })
        ));
    }

    /// The spoof campaign at unit level, from the attacker's strongest
    /// position: the agent has just started (no stamp of its own, no state)
    /// and the attacker holds a genuine initiation recorded before. 12 000
    /// replayed, forged and junk packets from other sources through the real
    /// verifier and the real core never move the endpoint nor stage anything
    /// in uci; the genuine peer's next handshake is then followed.
    #[test]
    fn spoof_campaign_moves_nothing() {
        let hub_pub = public(HUB_PRIV);
        let peer = PublicKey(public(PEER_PRIV));
        let mut hub = Hub::new(HubPolicy::default(), &["wg0".into()], Default::default());
        let now = Now::new(1_000, 1_700_000_000);
        hub.handle(
            now,
            Event::Configured {
                iface: "wg0".into(),
                peers: vec![UciPeer {
                    section: "r1".into(),
                    key: peer,
                    endpoint: None,
                }],
            },
        );
        let genuine = build_initiation(PEER_PRIV, [0x33; 32], hub_pub, stamp(50), 1);
        let next = build_initiation(PEER_PRIV, [0x34; 32], hub_pub, stamp(60), 2);
        let r = Responder::new(HUB_PRIV);
        let mut budget = Budget::new();
        let feed = |hub: &mut Hub, f: &[u8], t: Now, budget: &mut Budget| -> Vec<Action> {
            let mut allow = || budget.take(t.mono_ms);
            let who = Who {
                responder: &r,
                port: PORT,
                peers: &[],
            };
            match classify("wg0", &who, f, Direction::Incoming, &mut allow) {
                Some(v) => hub.handle(t, v.into_event("wg0")),
                None => Vec::new(),
            }
        };
        let observe = |hub: &mut Hub, t: Now, hs: u64, rx: u64| {
            hub.handle(
                t,
                Event::Observed {
                    iface: "wg0".into(),
                    peers: Some(vec![PeerSnapshot {
                        key: peer,
                        endpoint: Some("203.0.113.5:30001".parse().unwrap()),
                        last_handshake: Some(hs),
                        rx,
                        tx: 92,
                    }]),
                },
            )
        };
        // Started after the peer's handshake: the kernel's view only.
        observe(&mut hub, now, now.wall - 30, 148);
        let mut rnd = xorshift(0x9e37_79b9_7f4a_7c15);
        // Impersonations of the configured peer by attackers with their own
        // ephemeral keys (the sealed timestamp cannot be made without the
        // peer's private key), built once: X25519 is slow in debug builds.
        let forged: Vec<[u8; 148]> = (0..32)
            .map(|_| {
                let mut m =
                    build_initiation(rnd_key(&mut rnd), rnd_key(&mut rnd), hub_pub, stamp(99), 3);
                m[90] ^= 0x40;
                set_mac1(&mut m, &hub_pub);
                m
            })
            .collect();
        let mut acted = Vec::new();
        for i in 0..12_000u64 {
            let t = now.after_ms(i / 10);
            let sport = 40_000 + (rnd() % 20_000) as u16;
            let src = [198, 51, 100, 66];
            let payload: Vec<u8> = match i % 4 {
                0 => genuine.to_vec(),
                1 => forged[(i / 4) as usize % forged.len()].to_vec(),
                2 => {
                    let mut m = [0u8; 148];
                    m.iter_mut().for_each(|b| *b = rnd() as u8);
                    m[..4].copy_from_slice(&[1, 0, 0, 0]);
                    m.to_vec()
                }
                _ => (0..(rnd() % 300) as usize).map(|_| rnd() as u8).collect(),
            };
            let f = frame(src, sport, [198, 51, 100, 2], PORT, &payload);
            acted.extend(feed(&mut hub, &f, t, &mut budget).into_iter().filter(|a| {
                !matches!(
                    a,
                    Action::Log(_) | Action::Persist | Action::CaptureTransport { .. }
                )
            }));
        }
        assert!(acted.is_empty(), "{:?}", &acted[..acted.len().min(5)]);
        let p = &hub.ifaces["wg0"].peers[&peer];
        assert_eq!(p.endpoint, None, "nothing confirmed yet");
        let ignored: u64 = hub.ifaces["wg0"].ignored.values().sum();
        assert!(ignored >= 9_000, "{ignored} ignored");
        assert!(hub.ifaces["wg0"].ignored[&Ignored::Unproven] > 0);
        // The peer's next real handshake: the kernel completes it from where
        // the peer is; that confirms the endpoint (staged) and the stamp.
        let t = now.after_ms(2000);
        feed(&mut hub, &inbound(&next, 30001), t, &mut budget);
        let a = observe(&mut hub, t.after_ms(500), t.wall, 148 + 148 + 32);
        assert!(
            a.iter().any(|x| matches!(x, Action::StageEndpoint { .. })),
            "{a:?}"
        );
        assert!(hub.ifaces["wg0"].peers[&peer].trusted);
        // Now the replays are recognised as such.
        let before = hub.ifaces["wg0"]
            .ignored
            .get(&Ignored::Replay)
            .copied()
            .unwrap_or(0);
        let f = frame([198, 51, 100, 66], 41000, [198, 51, 100, 2], PORT, &genuine);
        let a = feed(&mut hub, &f, t.after_ms(3000), &mut budget);
        assert!(
            !a.iter()
                .any(|x| matches!(x, Action::SetEndpoint { .. } | Action::StageEndpoint { .. }))
        );
        assert_eq!(hub.ifaces["wg0"].ignored[&Ignored::Replay], before + 1);
    }

    /// A drain checks mac1 four at a time (x86_64, aarch64) or each at once; what it
    /// reports must be what frame-by-frame classification reports, in the same order: random
    /// runs of junk initiations, genuine and forged ones, transport, replies
    /// of our own and malformed frames, with the budget running out midway
    /// (rate-limited ones) and batches cut short by other verdicts and by
    /// the end of the drain.
    #[test]
    fn batched_mac1_checks_keep_every_verdict_and_its_order() {
        let hub_pub = public(HUB_PRIV);
        let r = Responder::new(HUB_PRIV);
        let peers = [(
            PublicKey(public(PEER_PRIV)),
            crate::wire::noise::mac1_key(&public(PEER_PRIV)),
        )];
        let who = || Who {
            responder: &r,
            port: PORT,
            peers: &peers,
        };
        let mut rnd = xorshift(0x2545_f491_4f6c_dd1d);
        let genuine: Vec<[u8; 148]> = (0..4u8)
            .map(|i| {
                build_initiation(
                    PEER_PRIV,
                    [0x40 + i; 32],
                    hub_pub,
                    stamp(70 + u64::from(i)),
                    9,
                )
            })
            .collect();
        let mut forged = build_initiation([0x55; 32], [0x56; 32], hub_pub, stamp(80), 5);
        forged[90] ^= 0x40;
        set_mac1(&mut forged, &hub_pub);
        let mut transport = vec![4, 0, 0, 0, 7, 0, 0, 0];
        transport.extend_from_slice(&[0; 24]);
        for drain in 0..60 {
            let mut frames: Vec<(Vec<u8>, Direction)> = Vec::new();
            for _ in 0..(rnd() % 40) {
                let sport = 20_000 + (rnd() % 1000) as u16;
                let (payload, dir) = match rnd() % 12 {
                    0 => (genuine[(rnd() % 4) as usize].to_vec(), Direction::Incoming),
                    1 => (forged.to_vec(), Direction::Incoming),
                    2 => (transport.clone(), Direction::Incoming),
                    3 => (
                        (0..(rnd() % 200) as usize).map(|_| rnd() as u8).collect(),
                        Direction::Incoming,
                    ),
                    4 => (genuine[0].to_vec(), Direction::Outgoing),
                    _ => {
                        let mut m: Vec<u8> = (0..148).map(|_| rnd() as u8).collect();
                        m[..4].copy_from_slice(&[1, 0, 0, 0]);
                        (m, Direction::Incoming)
                    }
                };
                let f = match dir {
                    Direction::Incoming => inbound(&payload, sport),
                    _ => frame([198, 51, 100, 2], PORT, [203, 0, 113, 5], sport, &payload),
                };
                frames.push((f, dir));
            }
            // A budget of a few verifications, so that some run out.
            let fresh = || {
                let mut b = Budget::new();
                for _ in 0..VERIFY_BURST - 2 - drain % 4 {
                    b.take(0);
                }
                b
            };
            let (want, want_seen) = classify_each(
                "wg0",
                &who(),
                frames.iter().map(|(f, d)| (&f[..], *d)),
                &mut fresh(),
                0,
            );
            for lanes in [true, false] {
                let mut batched = fresh();
                let mut v = Verdicts::new("wg0", who(), &mut batched, 0);
                v.lanes = lanes;
                for (f, dir) in &frames {
                    v.push(f, *dir);
                }
                let (got, seen) = v.finish();
                assert_eq!(got, want, "drain {drain}, lanes {lanes}");
                assert_eq!(seen, want_seen, "drain {drain}, lanes {lanes}");
            }
        }
    }

    fn rnd_key(rnd: &mut impl FnMut() -> u64) -> [u8; 32] {
        let mut k = [0u8; 32];
        k.iter_mut().for_each(|b| *b = rnd() as u8);
        k
    }
}
