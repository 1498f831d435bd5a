//! mac1 of four initiations at once: BLAKE2s run in the four 32-bit lanes of
//! a 128-bit vector register (as the BLAKE2 authors' and blake2s_simd's
//! `hash_many` do, here for one fixed shape). BLAKE2s is all 32-bit adds,
//! xors and rotations, so four messages cost about twice one: ~120 ns a mac
//! against ~250 one by one on the x86 lab (`cargo bench --bench
//! capture_classify`). A junk flood is nothing but such macs (issue 16).
//!
//! The registers: SSE2, which every x86_64 CPU has (a VPS hub), and NEON
//! (Advanced SIMD), which every aarch64 CPU has (most current OpenWrt
//! routers); build.rs sets `cfg(mac1_lanes)` for those targets. Elsewhere
//! (MIPS, 32-bit ARM: no vector unit every CPU has) this module is not
//! built and the capture checks one by one ([`super::noise::Mac1::verify`]).
//! On aarch64 the gain is not measured on hardware yet (the same bench
//! prints it): NEON has 32 registers and rotates in two instructions, but
//! small cores (Cortex-A53) run 128-bit operations at half rate.
//!
//! Only what a handshake initiation needs: the keyed state after the key
//! block is precomputed ([`State`]), each message is [`INITIATION_LEN`] bytes
//! whose first 116 are covered, and the 16 bytes after them are the mac1 to
//! compare. Checked against the one-by-one [`super::noise::Mac1`] in
//! `noise::tests` (every lane, valid and altered macs), natively and under
//! qemu-user for aarch64 (tests/e2e/67-qemu-user-unit-tests.sh).

use super::wireguard::{INITIATION_LEN, INITIATION_MAC1_OFFSET};

const IV: [u32; 8] = [
    0x6A09_E667,
    0xBB67_AE85,
    0x3C6E_F372,
    0xA54F_F53A,
    0x510E_527F,
    0x9B05_688C,
    0x1F83_D9AB,
    0x5BE0_CD19,
];

const SIGMA: [[usize; 16]; 10] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
    [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
    [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
    [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
    [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
    [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
    [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
    [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
    [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
];

/// Bytes of an initiation mac1 covers: two blocks, the second 52 bytes.
const COVERED: usize = INITIATION_MAC1_OFFSET;
const _: () = assert!(COVERED == 116 && INITIATION_LEN >= COVERED + 16);

/// Four 32-bit lanes and what BLAKE2s does with them. Every function is
/// plain data in, plain data out; only [`arch::load`] reads memory.
#[cfg(target_arch = "x86_64")]
mod arch {
    use core::arch::x86_64::*;

    pub type V = __m128i;

    // SAFETY (every block below): SSE2 is part of x86_64.
    #[inline(always)]
    pub fn splat(x: u32) -> V {
        unsafe { _mm_set1_epi32(x as i32) }
    }
    #[inline(always)]
    pub fn add(a: V, b: V) -> V {
        unsafe { _mm_add_epi32(a, b) }
    }
    #[inline(always)]
    pub fn xor(a: V, b: V) -> V {
        unsafe { _mm_xor_si128(a, b) }
    }
    #[inline(always)]
    pub fn ror16(x: V) -> V {
        unsafe { _mm_shufflehi_epi16::<0xB1>(_mm_shufflelo_epi16::<0xB1>(x)) }
    }
    #[inline(always)]
    pub fn ror12(x: V) -> V {
        unsafe { _mm_or_si128(_mm_srli_epi32::<12>(x), _mm_slli_epi32::<20>(x)) }
    }
    #[inline(always)]
    pub fn ror8(x: V) -> V {
        unsafe { _mm_or_si128(_mm_srli_epi32::<8>(x), _mm_slli_epi32::<24>(x)) }
    }
    #[inline(always)]
    pub fn ror7(x: V) -> V {
        unsafe { _mm_or_si128(_mm_srli_epi32::<7>(x), _mm_slli_epi32::<25>(x)) }
    }
    /// Four little-endian words at `bytes[at..at + 16]`.
    #[inline(always)]
    pub fn load(bytes: &[u8], at: usize) -> V {
        let b: &[u8; 16] = bytes[at..at + 16].try_into().unwrap();
        // SAFETY: 16 readable bytes; the load is unaligned.
        unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
    }
    /// Rows of four words (one message each) to four lanes per word.
    #[inline(always)]
    pub fn transpose([a, b, c, d]: [V; 4]) -> [V; 4] {
        unsafe {
            let ab_lo = _mm_unpacklo_epi32(a, b);
            let cd_lo = _mm_unpacklo_epi32(c, d);
            let ab_hi = _mm_unpackhi_epi32(a, b);
            let cd_hi = _mm_unpackhi_epi32(c, d);
            [
                _mm_unpacklo_epi64(ab_lo, cd_lo),
                _mm_unpackhi_epi64(ab_lo, cd_lo),
                _mm_unpacklo_epi64(ab_hi, cd_hi),
                _mm_unpackhi_epi64(ab_hi, cd_hi),
            ]
        }
    }
    /// Per lane: all four pairs equal.
    #[inline(always)]
    pub fn all_eq(a: [V; 4], b: [V; 4]) -> [bool; 4] {
        unsafe {
            let eq = |i: usize| _mm_cmpeq_epi32(a[i], b[i]);
            let all = _mm_and_si128(_mm_and_si128(eq(0), eq(1)), _mm_and_si128(eq(2), eq(3)));
            let bits = _mm_movemask_ps(_mm_castsi128_ps(all));
            [bits & 1 != 0, bits & 2 != 0, bits & 4 != 0, bits & 8 != 0]
        }
    }
    #[inline(always)]
    pub fn first(x: V) -> u32 {
        unsafe { _mm_cvtsi128_si32(x) as u32 }
    }
}

#[cfg(target_arch = "aarch64")]
mod arch {
    use core::arch::aarch64::*;

    pub type V = uint32x4_t;

    // SAFETY (every block below): NEON is part of aarch64.
    #[inline(always)]
    pub fn splat(x: u32) -> V {
        unsafe { vdupq_n_u32(x) }
    }
    #[inline(always)]
    pub fn add(a: V, b: V) -> V {
        unsafe { vaddq_u32(a, b) }
    }
    #[inline(always)]
    pub fn xor(a: V, b: V) -> V {
        unsafe { veorq_u32(a, b) }
    }
    #[inline(always)]
    pub fn ror16(x: V) -> V {
        unsafe { vreinterpretq_u32_u16(vrev32q_u16(vreinterpretq_u16_u32(x))) }
    }
    // Right by n: the low bits shifted up, the high ones inserted below.
    #[inline(always)]
    pub fn ror12(x: V) -> V {
        unsafe { vsriq_n_u32::<12>(vshlq_n_u32::<20>(x), x) }
    }
    #[inline(always)]
    pub fn ror8(x: V) -> V {
        unsafe { vsriq_n_u32::<8>(vshlq_n_u32::<24>(x), x) }
    }
    #[inline(always)]
    pub fn ror7(x: V) -> V {
        unsafe { vsriq_n_u32::<7>(vshlq_n_u32::<25>(x), x) }
    }
    /// Four little-endian words at `bytes[at..at + 16]`.
    #[inline(always)]
    pub fn load(bytes: &[u8], at: usize) -> V {
        let b: &[u8; 16] = bytes[at..at + 16].try_into().unwrap();
        // SAFETY: 16 readable bytes; byte loads need no alignment.
        unsafe { vreinterpretq_u32_u8(vld1q_u8(b.as_ptr())) }
    }
    /// Rows of four words (one message each) to four lanes per word.
    #[inline(always)]
    pub fn transpose([a, b, c, d]: [V; 4]) -> [V; 4] {
        unsafe {
            let ab0 = vreinterpretq_u64_u32(vtrn1q_u32(a, b));
            let ab1 = vreinterpretq_u64_u32(vtrn2q_u32(a, b));
            let cd0 = vreinterpretq_u64_u32(vtrn1q_u32(c, d));
            let cd1 = vreinterpretq_u64_u32(vtrn2q_u32(c, d));
            [
                vreinterpretq_u32_u64(vtrn1q_u64(ab0, cd0)),
                vreinterpretq_u32_u64(vtrn1q_u64(ab1, cd1)),
                vreinterpretq_u32_u64(vtrn2q_u64(ab0, cd0)),
                vreinterpretq_u32_u64(vtrn2q_u64(ab1, cd1)),
            ]
        }
    }
    /// Per lane: all four pairs equal.
    #[inline(always)]
    pub fn all_eq(a: [V; 4], b: [V; 4]) -> [bool; 4] {
        unsafe {
            let eq = |i: usize| vceqq_u32(a[i], b[i]);
            let all = vandq_u32(vandq_u32(eq(0), eq(1)), vandq_u32(eq(2), eq(3)));
            [
                vgetq_lane_u32::<0>(all) != 0,
                vgetq_lane_u32::<1>(all) != 0,
                vgetq_lane_u32::<2>(all) != 0,
                vgetq_lane_u32::<3>(all) != 0,
            ]
        }
    }
    #[inline(always)]
    pub fn first(x: V) -> u32 {
        unsafe { vgetq_lane_u32::<0>(x) }
    }
}

use arch::V;

/// The keyed BLAKE2s-128 state after the key block, for one mac1 key.
#[derive(Clone, Debug)]
pub struct State([u32; 8]);

impl State {
    pub fn new(key: &[u8; 32]) -> Self {
        // Parameter block: digest 16 bytes, key 32 bytes, fanout 1, depth 1.
        let mut h = IV;
        h[0] ^= 0x0101_0000 ^ (32 << 8) ^ 16;
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(key);
        // The key block in every lane (only the first is kept).
        let word = |w: usize| {
            arch::splat(u32::from_le_bytes(
                block[4 * w..4 * w + 4].try_into().unwrap(),
            ))
        };
        let m: [V; 16] = std::array::from_fn(word);
        let mut hv = h.map(arch::splat);
        compress(&mut hv, &m, 64, false);
        State(hv.map(arch::first))
    }

    /// Whether each of four initiations carries a valid mac1.
    pub fn verify(&self, msgs: [&[u8; INITIATION_LEN]; 4]) -> [bool; 4] {
        // Written out without iterators over vectors or slice copies: the
        // crate builds at opt-level z, which leaves those as calls (~50 ns a
        // message on x86_64).
        let s = |i: usize| arch::splat(self.0[i]);
        let mut h = [s(0), s(1), s(2), s(3), s(4), s(5), s(6), s(7)];
        let [a0, a1, a2, a3] = words(&msgs, 0);
        let [a4, a5, a6, a7] = words(&msgs, 16);
        let [a8, a9, a10, a11] = words(&msgs, 32);
        let [a12, a13, a14, a15] = words(&msgs, 48);
        let m = [
            a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15,
        ];
        compress(&mut h, &m, 128, false);
        // Bytes 64..116: words 0..12 of the last block, zero after.
        let [b0, b1, b2, b3] = words(&msgs, 64);
        let [b4, b5, b6, b7] = words(&msgs, 80);
        let [b8, b9, b10, b11] = words(&msgs, 96);
        let [b12, _, _, _] = words(&msgs, 112);
        let z = arch::splat(0);
        let m = [
            b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, z, z, z,
        ];
        compress(&mut h, &m, (64 + COVERED) as u32, true);
        // The first four words of h are the 16-byte mac, lane by lane.
        arch::all_eq([h[0], h[1], h[2], h[3]], words(&msgs, COVERED))
    }
}

/// Words `off / 4 ..` of four messages, four lanes per word.
#[inline(always)]
fn words(msgs: &[&[u8; INITIATION_LEN]; 4], off: usize) -> [V; 4] {
    arch::transpose([
        arch::load(msgs[0], off),
        arch::load(msgs[1], off),
        arch::load(msgs[2], off),
        arch::load(msgs[3], off),
    ])
}

#[inline(always)]
fn g(v: &mut [V; 16], a: usize, b: usize, c: usize, d: usize, x: V, y: V) {
    v[a] = arch::add(arch::add(v[a], v[b]), x);
    v[d] = arch::ror16(arch::xor(v[d], v[a]));
    v[c] = arch::add(v[c], v[d]);
    v[b] = arch::ror12(arch::xor(v[b], v[c]));
    v[a] = arch::add(arch::add(v[a], v[b]), y);
    v[d] = arch::ror8(arch::xor(v[d], v[a]));
    v[c] = arch::add(v[c], v[d]);
    v[b] = arch::ror7(arch::xor(v[b], v[c]));
}

/// BLAKE2s compression of one block in each lane; `t` is the byte count
/// through this block (the same in every lane), `last` the final block.
#[inline(never)]
fn compress(h: &mut [V; 8], m: &[V; 16], t: u32, last: bool) {
    let iv = |i: usize| arch::splat(IV[i]);
    let f = if last { !IV[6] } else { IV[6] };
    let mut v = [
        h[0],
        h[1],
        h[2],
        h[3],
        h[4],
        h[5],
        h[6],
        h[7],
        iv(0),
        iv(1),
        iv(2),
        iv(3),
        arch::splat(IV[4] ^ t),
        iv(5),
        arch::splat(f),
        iv(7),
    ];
    // Unrolled with the schedule as constants (the crate builds at
    // opt-level z, which would keep the loop and index `m` at run time).
    macro_rules! round {
        ($($r:literal)*) => {$({
            const S: [usize; 16] = SIGMA[$r];
            g(&mut v, 0, 4, 8, 12, m[S[0]], m[S[1]]);
            g(&mut v, 1, 5, 9, 13, m[S[2]], m[S[3]]);
            g(&mut v, 2, 6, 10, 14, m[S[4]], m[S[5]]);
            g(&mut v, 3, 7, 11, 15, m[S[6]], m[S[7]]);
            g(&mut v, 0, 5, 10, 15, m[S[8]], m[S[9]]);
            g(&mut v, 1, 6, 11, 12, m[S[10]], m[S[11]]);
            g(&mut v, 2, 7, 8, 13, m[S[12]], m[S[13]]);
            g(&mut v, 3, 4, 9, 14, m[S[14]], m[S[15]]);
        })*};
    }
    round!(0 1 2 3 4 5 6 7 8 9);
    for i in 0..8 {
        h[i] = arch::xor(h[i], arch::xor(v[i], v[i + 8]));
    }
}
