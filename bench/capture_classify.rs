//! What the hub's capture does with a frame, in CPU time, without the lab:
//! on initiation-shaped junk, the agent's drain (`hub::capture::Verdicts`:
//! IP/UDP parse and message type of each frame, mac1 four frames at a time)
//! and `classify` (the same, one frame and its mac1 at a time), beside what
//! tcpdump does with a frame it keeps (a copy) and beside the mac1 check
//! alone, one by one and four at once, in the same run. Each measured twice:
//! over 256 frames that stay in the cache (the flood's 256 prepared packets),
//! and over 64 MiB of frames visited in order once a round, so that every
//! frame comes from memory (in order, as the ring's do: the hardware
//! prefetcher hides most of it). bench/hub.sh measures the whole capture path
//! in the lab, with the ring, the wakeups and frames another core just wrote,
//! beside tcpdump; this isolates the per-frame work and shows its floor: the
//! mac1 check, which the agent must make on every junk frame to tell a
//! genuine initiation from it. Last, the drain in the agent's rhythm under a
//! junk trickle, a burst of frames a wakeup, then sleep (600 every 160 ms is
//! its hold at 4 000 frames a second): what a wakeup costs beyond its frames
//! (caches, and on a VM the vCPU, come back cold).
//!
//!     cargo bench --bench capture_classify
//!
//! Built with the release profile (the per-package opt-levels of Cargo.toml
//! included). Best of 7 rounds, ns per frame; the bursts run 3 s each.

use std::hint::black_box;
use std::time::Instant;

use wgroam::hub::capture::{Budget, Verdicts, Who, classify};
use wgroam::os::capture::Direction;
use wgroam::wire::noise::{Mac1, Responder, mac1_key};

const PORT: u16 = 51820;
/// Frame stride in the big set: a ring slot for a handshake-sized frame
/// (tpacket3 header, sockaddr_ll, IP, UDP, 148 bytes) is 288 bytes.
const STRIDE: usize = 288;
const IP_UDP: usize = 28;
const FRAME: usize = IP_UDP + 148;

/// An IPv4/UDP frame to the hub's port with 148 bytes of type-1 junk (bad
/// mac1), from one of 256 sources.
fn junk_frame(i: u32, rnd: &mut u64, out: &mut [u8]) {
    let src = [203, 0, 113, (i % 256) as u8];
    let sport = 20_000 + (i % 256) as u16;
    out[..IP_UDP].copy_from_slice(&[
        0x45,
        0,
        0,
        FRAME as u8,
        0,
        0,
        0,
        0,
        64,
        17,
        0,
        0, //
        src[0],
        src[1],
        src[2],
        src[3],
        198,
        51,
        100,
        2, //
        (sport >> 8) as u8,
        sport as u8,
        (PORT >> 8) as u8,
        PORT as u8,
        0,
        156,
        0,
        0,
    ]);
    for b in &mut out[IP_UDP..FRAME] {
        *rnd ^= *rnd << 13;
        *rnd ^= *rnd >> 7;
        *rnd ^= *rnd << 17;
        *b = *rnd as u8;
    }
    out[IP_UDP..IP_UDP + 4].copy_from_slice(&[1, 0, 0, 0]);
}

/// Best of 7 rounds of `f` over every frame of `set`, `k` consecutive
/// frames a call (`f` gets their slots), in ns per frame.
fn per_frame(set: &[u8], frames: usize, k: usize, mut f: impl FnMut(&[u8]) -> usize) -> f64 {
    let slots = set.len() / STRIDE / k * k;
    let calls = frames / k;
    let mut best = f64::MAX;
    let mut keep = 0;
    for _ in 0..7 {
        let t = Instant::now();
        for c in 0..calls {
            let at = (c * k % slots) * STRIDE;
            keep += f(black_box(&set[at..at + k * STRIDE]));
        }
        best = best.min(t.elapsed().as_nanos() as f64 / (calls * k) as f64);
    }
    black_box(keep);
    best
}

/// The frames in `slots` (ring-slot stride), each `FRAME` bytes.
fn frames(slots: &[u8]) -> impl Iterator<Item = &[u8]> {
    slots.chunks(STRIDE).map(|s| &s[..FRAME])
}

/// The agent's drain over `slots`: every frame through [`Verdicts`], mac1
/// four at a time; returns how many events came out.
fn drain(who: &Who<'_>, slots: &[u8]) -> usize {
    let mut budget = Budget::new();
    let mut v = Verdicts::new("wg0", *who, &mut budget, 0);
    for f in frames(slots) {
        v.push(f, Direction::Incoming);
    }
    v.finish().0.len()
}

/// CPU time of the calling thread in ns (`/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let responder = Responder::new([0x11; 32]);
    let who = Who {
        responder: &responder,
        port: PORT,
        peers: &[],
    };
    let mac1 = Mac1::new(&mac1_key(responder.public_key()));

    let hot_n = 256;
    let cold_n = if quick { 4096 } else { (64 << 20) / STRIDE };
    let mut rnd = 0x0123_4567_89ab_cdef_u64;
    let mut fill = |n: usize| {
        let mut set = vec![0u8; n * STRIDE];
        for (i, slot) in set.chunks_exact_mut(STRIDE).enumerate() {
            junk_frame(i as u32, &mut rnd, slot);
        }
        set
    };
    let (hot, cold) = (fill(hot_n), fill(cold_n));
    let rounds = |n: usize| if quick { n } else { n.max(200_000) };

    let mut copy_buf = [0u8; 2048];
    let mut rows: Vec<(&str, f64, f64)> = Vec::new();
    let mut measure = |name, k: usize, f: &mut dyn FnMut(&[u8]) -> usize| {
        let h = per_frame(&hot, rounds(hot_n), k, &mut *f);
        let c = per_frame(&cold, cold_n, k, &mut *f);
        rows.push((name, h, c));
    };
    measure(
        "copy the frame (tcpdump's work with a frame it keeps, less the pcap header)",
        1,
        &mut |f| {
            copy_buf[..FRAME].copy_from_slice(&f[..FRAME]);
            black_box(&copy_buf);
            FRAME
        },
    );
    measure(
        "mac1 alone (`Mac1::verify`: two BLAKE2s blocks)",
        1,
        &mut |f| usize::from(mac1.verify(&f[IP_UDP..FRAME])),
    );
    measure(
        "mac1 four at once (`Mac1::verify4`: vector lanes where the CPU has them, else one by one)",
        4,
        &mut |f| {
            let msg = |i: usize| -> &[u8; 148] {
                f[i * STRIDE + IP_UDP..i * STRIDE + FRAME]
                    .try_into()
                    .unwrap()
            };
            let ok = mac1.verify4([msg(0), msg(1), msg(2), msg(3)]);
            ok.iter().filter(|x| **x).count()
        },
    );
    measure("`classify` one frame (parse, type, mac1)", 1, &mut |f| {
        usize::from(classify("wg0", &who, &f[..FRAME], Direction::Incoming, &mut || true).is_some())
    });
    measure(
        "the agent's drain (`Verdicts`: parse and type each, mac1 four at a time), 64 frames a drain",
        64,
        &mut |f| drain(&who, f),
    );

    // The drain in the agent's rhythm under a trickle: a burst of frames a
    // wakeup, then sleep. CPU time of this thread (schedstat): the sleeps do
    // not count, what a wakeup costs does.
    let mut bursts = Vec::new();
    for (burst, sleep_ms) in [(600, 160), (1200, 320)] {
        let secs = if quick { 0 } else { 3 };
        let (c0, t0) = (thread_cpu_ns(), Instant::now());
        let mut n = 0usize;
        loop {
            // The burst's frames in ring order (the cold set: another part
            // each time, as the ring's blocks are).
            let at = (n % (cold_n - burst)) * STRIDE;
            black_box(drain(&who, black_box(&cold[at..at + burst * STRIDE])));
            n += burst;
            // Asleep before the last reading too: a running thread's
            // schedstat lags behind its current slice.
            std::thread::sleep(std::time::Duration::from_millis(sleep_ms));
            if t0.elapsed().as_secs() >= secs {
                break;
            }
        }
        bursts.push((burst, sleep_ms, (thread_cpu_ns() - c0) as f64 / n as f64));
    }

    println!(
        "| work per initiation-shaped junk frame | in cache, ns | from memory (in order), ns | x copy (in cache / from memory) |"
    );
    println!("|---|---|---|---|");
    let (copy_h, copy_c) = (rows[0].1, rows[0].2);
    for (name, h, c) in &rows {
        println!(
            "| {name} | {h:.1} | {c:.1} | {:.1} / {:.1} |",
            h / copy_h,
            c / copy_c
        );
    }
    println!();
    println!(
        "| the drain in bursts: frames a wakeup, sleep between | CPU ns per frame (thread schedstat) | x back to back, from memory |"
    );
    println!("|---|---|---|");
    for (burst, sleep_ms, ns) in bursts {
        println!(
            "| {burst} every {sleep_ms} ms | {ns:.1} | {:.2} |",
            ns / rows[4].2
        );
    }
    if quick {
        println!("(quick run: `cargo bench --bench capture_classify` for the numbers)");
    }
}
