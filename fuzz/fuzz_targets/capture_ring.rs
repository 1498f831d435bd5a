//! Any bytes as the blocks of a TPACKET_V3 ring, read the way the hub reads
//! its capture (`capture::ring::Ring`, frame budget included), every frame
//! through the drain's `capture::Verdicts` (mac1 four at a time): never
//! panics, never hangs, never reads outside the ring, hands every block back,
//! never yields more frames than the blocks claim (read + shed), and the
//! drain's events are those of `capture::classify` frame by frame, in order
//! (`capture::classify_each`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wgroam::hub::capture::{Budget, Verdicts, Who, classify_each};
use wgroam::os::capture::ring::{Frames, Ring};

#[path = "fixture.rs"]
mod fixture;
use fixture::responder;

const BLOCK: usize = 1024;
const BLOCKS: usize = 4;
/// `block_status` in `struct tpacket_block_desc`.
const STATUS: usize = 8;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    // 8-aligned memory, as the kernel's mapping is page-aligned.
    let mut mem = vec![0u64; BLOCK * BLOCKS / 8];
    // SAFETY: u64 storage viewed as bytes, only within this scope.
    let bytes =
        unsafe { std::slice::from_raw_parts_mut(mem.as_mut_ptr().cast::<u8>(), BLOCK * BLOCKS) };
    let n = rest.len().min(bytes.len());
    bytes[..n].copy_from_slice(&rest[..n]);
    let mut claimed = 0u64;
    // The kernel hands blocks over in order: the first `k` are the reader's
    // (TP_STATUS_USER), the rest still the kernel's.
    let k = usize::from(first & 7).min(BLOCKS);
    for b in 0..BLOCKS {
        let user = b < k;
        let status = &mut bytes[b * BLOCK + STATUS..b * BLOCK + STATUS + 4];
        status.copy_from_slice(&u32::from(user).to_ne_bytes());
        if user {
            claimed += u64::from(Frames::count(&bytes[b * BLOCK..(b + 1) * BLOCK]));
        }
    }
    let budget = u64::from(first >> 3) * 2;
    // SAFETY: mem holds BLOCK * BLOCKS bytes, 8-aligned, alive until the
    // end of this closure, and nobody else writes it while the ring reads.
    let mut ring = unsafe { Ring::new(mem.as_mut_ptr().cast(), BLOCK, BLOCKS, budget) };
    let peers = [(
        wgroam::core::PublicKey(*responder().public_key()),
        wgroam::wire::noise::mac1_key(responder().public_key()),
    )];
    let who = Who {
        responder: responder(),
        port: 51820,
        peers: &peers,
    };
    let mut read = 0u64;
    // A budget with a few verifications left (first >> 5: 0 to 7), so that
    // it can run out midway: all but those taken.
    let fresh = || {
        let (mut all, mut n) = (Budget::new(), 0u64);
        while all.take(0) {
            n += 1;
        }
        let mut b = Budget::new();
        for _ in 0..n.saturating_sub(u64::from(first >> 5)) {
            b.take(0);
        }
        b
    };
    let mut batched = fresh();
    let mut drain = Verdicts::new("wg0", who, &mut batched, 0);
    let mut frames = Vec::new();
    while let Some(f) = ring.next(0) {
        read += 1;
        assert!(read <= claimed, "more frames than the blocks claim");
        drain.push(f.data, f.direction);
        frames.push((f.data.to_vec(), f.direction));
    }
    let want = classify_each(
        "wg0",
        &who,
        frames.iter().map(|(f, d)| (&f[..], *d)),
        &mut fresh(),
        0,
    );
    assert_eq!(drain.finish(), want);
    assert!(read + ring.take_shed() <= claimed);
    drop(ring);
    // Every block went back to the kernel.
    for b in 0..BLOCKS {
        let status = mem[(b * BLOCK + STATUS) / 8].to_ne_bytes();
        assert_eq!(&status[STATUS % 8..STATUS % 8 + 4], &[0; 4]);
    }
});
