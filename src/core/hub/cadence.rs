//! When the hub reads the kernel's WireGuard view.
//!
//! Every `poll_ms` while anything moves; once nothing does, only when a
//! captured packet, a link or route event, a deadline or [`QUIET_READ_MS`]
//! says so. The kernel changes a peer's endpoint or handshake only on a
//! packet to or from the listen port, and while the capture is open (and
//! covers transport packets) each such packet wakes the hub: an idle hub
//! need not ask WireGuard every half second what it already knows. A read
//! costs a netlink dump (kernel WireGuard) or a UAPI round trip that wakes
//! wireguard-go; skipping them is most of what an idle hub costs.
//!
//! Whether a read was idle is the runtime's judgement (nothing moved, the
//! counters equal, no packet captured since the read before, the capture
//! open on every interface); this module only keeps the times.

/// After a start, a reload, a link event or a read that saw something move
/// (an endpoint, a handshake, a peer), reads stay at `poll_ms` this long:
/// netifd's `wg setconf` follows a link's creation without a packet, and a
/// push right after a move must be undone within a poll.
pub const HOT_MS: u64 = 10_000;
/// The longest time between two reads of a quiet hub (a configuration
/// change nobody sends a packet after, e.g. a `wg set` by hand while the
/// tunnel is idle, is seen within this; the peer's next packet sees it at
/// once).
pub const QUIET_READ_MS: u64 = 10_000;

/// After a read a captured packet asked for found nothing moved, one more
/// look this much later: the ring hands a packet over a few ms after it
/// arrived, and the WireGuard that roams on it (a decrypt worker in the
/// kernel, a goroutine in wireguard-go) may not have got to it yet under
/// load. Without it such a roam waited for the next poll.
pub const SECOND_LOOK_MS: u64 = 50;

/// What one read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    /// Endpoints, handshakes, the peers or the link changed.
    pub moved: bool,
    /// Nothing happened since the read before: no packet captured, the
    /// counters equal, nothing moved, and a packet would wake the hub.
    pub idle: bool,
}

#[derive(Debug, Clone)]
pub struct Cadence {
    poll_ms: u64,
    hot_until: u64,
    quiet: bool,
    next: u64,
    /// A captured packet woke the quiet hub: its read gets a second look.
    packet_woke: bool,
}

impl Cadence {
    /// A start: read at once, then at `poll_ms` for [`HOT_MS`].
    pub fn new(poll_ms: u64, now_ms: u64) -> Self {
        Self {
            poll_ms: poll_ms.max(1),
            hot_until: now_ms + HOT_MS,
            quiet: false,
            next: 0,
            packet_woke: false,
        }
    }

    /// When the next read is due (monotonic ms).
    pub fn due(&self) -> u64 {
        self.next
    }

    /// Whether the last read was idle and reads now wait for news.
    pub fn quiet(&self) -> bool {
        self.quiet
    }

    /// A read happened at `now_ms` and found `read`.
    pub fn read(&mut self, now_ms: u64, read: Read) {
        if read.moved {
            self.hot_until = self.hot_until.max(now_ms + HOT_MS);
        }
        self.quiet = read.idle && !read.moved && now_ms >= self.hot_until;
        let wait = if self.quiet {
            QUIET_READ_MS.max(self.poll_ms)
        } else {
            self.poll_ms
        };
        self.next = now_ms + wait;
        if std::mem::take(&mut self.packet_woke) && !read.moved {
            self.next = self.next.min(now_ms + SECOND_LOOK_MS);
        }
    }

    /// A link came, went or changed, or a nudge or reload: read at once and
    /// keep reading at `poll_ms` for [`HOT_MS`].
    pub fn wake(&mut self, now_ms: u64) {
        self.hot_until = self.hot_until.max(now_ms + HOT_MS);
        self.quiet = false;
        self.next = 0;
    }

    /// A packet was captured: a quiet hub reads at once (the kernel may
    /// have roamed on it); a busy one reads at its next poll anyway.
    pub fn packet(&mut self, now_ms: u64) {
        if self.quiet {
            self.quiet = false;
            self.packet_woke = true;
            self.next = self.next.min(now_ms);
        }
    }

    /// Read no later than `at_ms`.
    pub fn by(&mut self, at_ms: u64) {
        self.next = self.next.min(at_ms);
    }

    /// Read no later than one poll from `now_ms` (a route event: the relay
    /// looks at the routing table again at the next read).
    pub fn within_a_poll(&mut self, now_ms: u64) {
        self.by(now_ms + self.poll_ms);
    }

    /// A reload with a new poll interval.
    pub fn set_poll(&mut self, poll_ms: u64) {
        self.poll_ms = poll_ms.max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLL: u64 = 500;
    const IDLE: Read = Read {
        moved: false,
        idle: true,
    };
    const BUSY: Read = Read {
        moved: false,
        idle: false,
    };
    const MOVED: Read = Read {
        moved: true,
        idle: false,
    };

    /// Reads `c` whenever due until `until`; returns the read times.
    fn run(c: &mut Cadence, from: u64, until: u64, what: impl Fn(u64) -> Read) -> Vec<u64> {
        let mut t = from.max(c.due());
        let mut reads = Vec::new();
        while t < until {
            c.read(t, what(t));
            reads.push(t);
            t = c.due();
        }
        reads
    }

    #[test]
    fn an_idle_hub_reads_every_poll_after_a_start_then_every_ten_seconds() {
        let mut c = Cadence::new(POLL, 1_000);
        assert_eq!(c.due(), 0, "a start reads at once");
        let reads = run(&mut c, 1_000, 61_000, |_| IDLE);
        // 10 s at poll_ms, then one read per QUIET_READ_MS.
        let hot = reads.iter().filter(|t| **t < 1_000 + HOT_MS).count();
        assert_eq!(hot, 20, "{reads:?}");
        assert_eq!(reads.len(), 20 + 5, "{reads:?}");
        assert!(c.quiet());
        for w in reads.windows(2).skip(20) {
            assert_eq!(w[1] - w[0], QUIET_READ_MS);
        }
    }

    #[test]
    fn traffic_keeps_the_poll_and_stopping_it_goes_quiet_at_once() {
        let mut c = Cadence::new(POLL, 0);
        // Traffic (counters move, packets captured) for a minute.
        let reads = run(&mut c, 0, 60_000, |_| BUSY);
        assert_eq!(reads.len(), 120);
        assert!(!c.quiet());
        // Traffic stops: the first idle read after the hot window is quiet.
        c.read(60_000, IDLE);
        assert!(c.quiet());
        assert_eq!(c.due(), 60_000 + QUIET_READ_MS);
    }

    #[test]
    fn a_move_keeps_reading_at_the_poll_for_the_hot_window() {
        let mut c = Cadence::new(POLL, 0);
        run(&mut c, 0, 20_000, |_| IDLE);
        assert!(c.quiet());
        // A handshake seen at a backstop read: a push may follow it.
        c.read(20_000, MOVED);
        assert_eq!(c.due(), 20_500);
        let reads = run(&mut c, 20_500, 40_000, |_| IDLE);
        assert_eq!(reads.iter().filter(|t| **t < 30_000).count(), 19);
        assert!(c.quiet());
    }

    #[test]
    fn a_packet_wakes_a_quiet_hub_at_once_and_a_busy_one_keeps_its_poll() {
        let mut c = Cadence::new(POLL, 0);
        run(&mut c, 0, 15_000, |_| IDLE);
        assert!(c.quiet());
        let due = c.due();
        assert!(due > 15_000 + POLL);
        c.packet(15_123);
        assert_eq!(c.due(), 15_123, "the kernel may have roamed on it");
        assert!(!c.quiet());
        // The read after the packet is not idle (a frame was captured) and
        // found nothing moved: WireGuard may not have processed the packet
        // yet, one more look SECOND_LOOK_MS later; a second packet changes
        // nothing.
        c.read(15_123, BUSY);
        assert_eq!(c.due(), 15_123 + SECOND_LOOK_MS);
        c.packet(15_150);
        assert_eq!(c.due(), 15_123 + SECOND_LOOK_MS);
        // After that look, back at the poll (no third look).
        c.read(15_173, BUSY);
        assert_eq!(c.due(), 15_173 + POLL);
        // A read that found the move needs no second look.
        run(&mut c, 15_173, 40_000, |_| IDLE);
        assert!(c.quiet());
        c.packet(40_001);
        c.read(40_001, MOVED);
        assert_eq!(c.due(), 40_001 + POLL);
    }

    #[test]
    fn link_events_nudges_and_route_events() {
        let mut c = Cadence::new(POLL, 0);
        run(&mut c, 0, 15_000, |_| IDLE);
        assert!(c.quiet());
        let due = c.due();
        // A route event: the relay looks again within a poll.
        c.within_a_poll(15_100);
        assert_eq!(c.due(), 15_600);
        assert!(due > 15_600);
        // A link event: read now, then at the poll for HOT_MS.
        c.wake(15_200);
        assert_eq!(c.due(), 0);
        let reads = run(&mut c, 15_200, 40_000, |_| IDLE);
        assert_eq!(reads.iter().filter(|t| **t < 25_200).count(), 20);
        // A core deadline sooner than the next read.
        c.by(c.due() - 1);
        assert!(
            c.quiet(),
            "a deadline reads without leaving quiet by itself"
        );
    }

    #[test]
    fn a_long_poll_is_never_shortened_by_quiet() {
        let mut c = Cadence::new(30_000, 0);
        c.read(HOT_MS, IDLE);
        assert!(c.quiet());
        assert_eq!(c.due(), HOT_MS + 30_000);
    }
}
