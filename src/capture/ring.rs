//! The memory-mapped TPACKET_V3 receive ring of a packet socket.
//!
//! The kernel writes accepted frames (after the socket's BPF filter) into
//! fixed-size blocks and hands a block to user space when it is full or when
//! [`RETIRE_TOV_MS`] passed since its first frame; `poll(2)` wakes the reader
//! once per block, not once per packet, and reading costs no system call. The
//! reader walks the block's frames and hands it back by writing
//! `TP_STATUS_KERNEL` into its status word.
//!
//! [`Frames`] parses one block from plain bytes (safe, bounds-checked: a
//! header pointing outside the block ends the walk), so tests feed it blocks
//! laid out as the kernel lays them out; [`Ring`] owns the cursor over the
//! blocks of a mapping and the frame budget that bounds the reader's CPU
//! under a flood ([`FrameBudget`]).

use std::sync::atomic::{AtomicU32, Ordering};

use super::Direction;

/// Size of one block: at most ~220 handshake-sized frames (288 bytes each
/// with headers), so a flood wakes the reader at most every ~220 packets.
pub const BLOCK_SIZE: usize = 1 << 16;
/// Blocks in the ring (256 KiB): ~900 handshakes can wait.
pub const BLOCK_NR: usize = 4;
/// Frame slot size the kernel wants for its bookkeeping (V3 packs frames
/// back to back regardless).
pub const FRAME_SIZE: usize = 2048;
/// A block with at least one frame is handed over after this many ms even
/// when not full: the latency a lone initiation can wait for.
pub const RETIRE_TOV_MS: u32 = 4;

/// Frames the reader looks at per second at most, with a burst of as many.
/// Each costs well under a microsecond here (parse, mac1), so this bounds the
/// reader to a few percent of a core whatever arrives; blocks beyond it are
/// handed back unread and counted as dropped. Genuine traffic is far below:
/// one initiation and one response per peer every two minutes, and while a
/// session is gone, the first 32 bytes of its transport packets.
pub const FRAMES_PER_S: u64 = 10_000;

// Offsets in `struct tpacket_block_desc` / `tpacket_hdr_v1` and in
// `struct tpacket3_hdr` + `struct sockaddr_ll` (linux/if_packet.h); the tests
// check them against libc's definitions.
pub(crate) const BD_STATUS: usize = 8;
pub(crate) const BD_NUM_PKTS: usize = 12;
pub(crate) const BD_FIRST_PKT: usize = 16;
pub(crate) const BD_BLK_LEN: usize = 20;
/// `BLK_HDR_LEN`: where the first frame starts without private data.
pub(crate) const BD_HDR_LEN: usize = 48;
pub(crate) const PH_NEXT: usize = 0;
pub(crate) const PH_SNAPLEN: usize = 12;
pub(crate) const PH_LEN: usize = 16;
pub(crate) const PH_STATUS: usize = 20;
pub(crate) const PH_MAC: usize = 24;
pub(crate) const PH_NET: usize = 26;
pub(crate) const PH_VLAN_TCI: usize = 32;
/// `TPACKET_ALIGN(sizeof(struct tpacket3_hdr))`: the sockaddr_ll follows.
pub(crate) const PH_SLL: usize = 48;
pub(crate) const SLL_PROTOCOL: usize = PH_SLL + 2;
pub(crate) const SLL_IFINDEX: usize = PH_SLL + 4;
pub(crate) const SLL_PKTTYPE: usize = PH_SLL + 10;
/// `TPACKET3_HDRLEN`: header plus sockaddr_ll.
pub(crate) const PH_HDRLEN: usize = PH_SLL + 20;

pub(crate) const TP_STATUS_KERNEL: u32 = 0;
pub(crate) const TP_STATUS_USER: u32 = 1;
pub(crate) const TP_STATUS_VLAN_VALID: u32 = 1 << 4;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// One captured frame, borrowed from its block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The L3 frame as far as captured (`tp_snaplen` bytes).
    pub data: &'a [u8],
    /// Its length on the wire (`tp_len`); more than `data.len()` when the
    /// filter cut it (transport packets).
    pub wire_len: u32,
    pub direction: Direction,
    pub ifindex: u32,
    /// The EtherType (`sll_protocol`).
    pub protocol: u16,
    /// The 802.1Q tag the device took off (`TP_STATUS_VLAN_VALID`).
    pub vlan: Option<u16>,
}

impl Frame<'_> {
    /// The filter (or the slot) cut the frame short.
    pub fn truncated(&self) -> bool {
        (self.data.len() as u64) < u64::from(self.wire_len)
    }
}

/// The frames of one block, in order.
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    block: &'a [u8],
    left: u32,
    at: usize,
}

impl<'a> Frames<'a> {
    /// Walks a block the kernel handed over (`block` is all of it).
    pub fn new(block: &'a [u8]) -> Self {
        let left = u32_at(block, BD_NUM_PKTS).unwrap_or(0);
        let at = u32_at(block, BD_FIRST_PKT).unwrap_or(0) as usize;
        Frames { block, left, at }
    }

    /// Frames the block says it holds (`num_pkts`).
    pub fn count(block: &[u8]) -> u32 {
        u32_at(block, BD_NUM_PKTS).unwrap_or(0)
    }

    fn parse(&self) -> Option<(Frame<'a>, u32)> {
        let b = self.block;
        let h = self.at;
        let end = h.checked_add(PH_HDRLEN)?;
        if end > b.len() {
            return None;
        }
        let snaplen = u32_at(b, h + PH_SNAPLEN)? as usize;
        let wire_len = u32_at(b, h + PH_LEN)?;
        let status = u32_at(b, h + PH_STATUS)?;
        // SOCK_DGRAM: tp_mac == tp_net, the L3 header.
        let net = usize::from(u16_at(b, h + PH_NET)?);
        if net < PH_HDRLEN {
            return None;
        }
        let start = h.checked_add(net)?;
        let data = b.get(start..start.checked_add(snaplen)?)?;
        let vlan = (status & TP_STATUS_VLAN_VALID != 0)
            .then(|| u32_at(b, h + PH_VLAN_TCI).map(|t| t as u16))
            .flatten();
        let frame = Frame {
            data,
            wire_len,
            direction: if b[h + SLL_PKTTYPE] == libc::PACKET_OUTGOING {
                Direction::Outgoing
            } else {
                Direction::Incoming
            },
            ifindex: u32_at(b, h + SLL_IFINDEX)?,
            protocol: u16::from_be(u16_at(b, h + SLL_PROTOCOL)?),
            vlan,
        };
        Some((frame, u32_at(b, h + PH_NEXT)?))
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Frame<'a>;

    fn next(&mut self) -> Option<Frame<'a>> {
        if self.left == 0 {
            return None;
        }
        let Some((frame, next)) = self.parse() else {
            // Not what the kernel writes: stop rather than guess.
            self.left = 0;
            return None;
        };
        self.left -= 1;
        match (next, self.at.checked_add(next as usize)) {
            (1.., Some(at)) => self.at = at,
            // The last frame of a closed block has no successor.
            _ => self.left = 0,
        }
        Some(frame)
    }
}

/// A token bucket of frames over monotonic milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct FrameBudget {
    tokens: u64,
    last_ms: Option<u64>,
    per_s: u64,
}

impl FrameBudget {
    pub fn new(per_s: u64) -> Self {
        FrameBudget {
            tokens: per_s,
            last_ms: None,
            per_s,
        }
    }

    /// Takes `n` frames' worth if available (a block is read whole or not).
    pub fn take(&mut self, now_ms: u64, n: u64) -> bool {
        let last = self.last_ms.unwrap_or(now_ms);
        let refill = now_ms.saturating_sub(last).saturating_mul(self.per_s) / 1000;
        if refill > 0 || self.last_ms.is_none() {
            self.last_ms = Some(now_ms);
        }
        self.tokens = self.tokens.saturating_add(refill).min(self.per_s);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

/// The reader's cursor over a ring of blocks.
pub struct Ring {
    base: *mut u8,
    block_size: usize,
    block_nr: usize,
    /// The block to read next.
    cur: usize,
    /// Walk state inside `cur` once it was opened: (frames left, offset).
    walk: Option<(u32, usize)>,
    budget: FrameBudget,
    /// Frames handed back unread over the budget, not yet reported.
    shed: u64,
}

// SAFETY: the ring is only touched through &mut self; the mapping is not
// tied to a thread.
unsafe impl Send for Ring {}

impl Ring {
    /// # Safety
    /// `base` must point to `block_size * block_nr` bytes, readable and
    /// writable, laid out as a TPACKET_V3 ring, that stay valid (and are
    /// written by nobody but the kernel's packet socket, or a test acting as
    /// it) for the lifetime of the `Ring`; `block_size` a multiple of 8.
    pub unsafe fn new(base: *mut u8, block_size: usize, block_nr: usize, per_s: u64) -> Self {
        Ring {
            base,
            block_size,
            block_nr,
            cur: 0,
            walk: None,
            budget: FrameBudget::new(per_s),
            shed: 0,
        }
    }

    fn status(&self, i: usize) -> &AtomicU32 {
        // SAFETY: in bounds (i < block_nr), 4-aligned (blocks are page or
        // 8-byte aligned); the kernel writes the word with release
        // semantics after the block's contents.
        unsafe {
            &*self
                .base
                .add(i * self.block_size + BD_STATUS)
                .cast::<AtomicU32>()
        }
    }

    /// Block `i`, with a lifetime the caller picks: it must not outlive the
    /// block's hand-back (the next `next` call or the `Ring`).
    fn block<'a>(&self, i: usize) -> &'a [u8] {
        // SAFETY: in bounds; the kernel does not write a block while its
        // status says TP_STATUS_USER, which the caller checked (acquire).
        unsafe { std::slice::from_raw_parts(self.base.add(i * self.block_size), self.block_size) }
    }

    fn user_owned(&self, i: usize) -> bool {
        self.status(i).load(Ordering::Acquire) & TP_STATUS_USER != 0
    }

    /// Hands the current block back to the kernel and moves on.
    fn release(&mut self) {
        self.status(self.cur)
            .store(TP_STATUS_KERNEL, Ordering::Release);
        self.cur = (self.cur + 1) % self.block_nr;
        self.walk = None;
    }

    /// The next frame, or `None` when no handed-over block is left. Blocks
    /// over the frame budget are handed back unread (see [`Ring::take_shed`]).
    pub fn next(&mut self, now_ms: u64) -> Option<Frame<'_>> {
        loop {
            let (left, at) = match self.walk {
                Some(w) => w,
                None => {
                    if !self.user_owned(self.cur) {
                        return None;
                    }
                    let block = self.block(self.cur);
                    let n = Frames::count(block);
                    if !self.budget.take(now_ms, u64::from(n)) {
                        self.shed += u64::from(n);
                        self.release();
                        continue;
                    }
                    let f = Frames::new(block);
                    (f.left, f.at)
                }
            };
            let mut frames = Frames {
                block: self.block(self.cur),
                left,
                at,
            };
            match frames.next() {
                Some(frame) => {
                    self.walk = Some((frames.left, frames.at));
                    return Some(frame);
                }
                None => self.release(),
            }
        }
    }

    /// Frames handed back unread since the last call.
    pub fn take_shed(&mut self) -> u64 {
        std::mem::take(&mut self.shed)
    }
}
