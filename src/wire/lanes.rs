//! mac1 of four initiations at once: BLAKE2s run in the four 32-bit lanes of
//! the SSE2 registers every x86_64 CPU has (as the BLAKE2 authors' and
//! blake2s_simd's `hash_many` do, here for one fixed shape). BLAKE2s is all
//! 32-bit adds, xors and rotations, so four messages cost about twice one:
//! ~120 ns a mac against ~250 one by one (`cargo bench --bench
//! capture_classify`). A junk flood is nothing but such macs (issue 16), and
//! a VPS hub is x86_64. Other targets check one by one.
//!
//! Only what a handshake initiation needs: the keyed state after the key
//! block is precomputed ([`State`]), each message is [`INITIATION_LEN`] bytes
//! whose first 116 are covered, and the 16 bytes after them are the mac1 to
//! compare. Checked against the one-by-one [`super::noise::Mac1`] in
//! `noise::tests` (every lane, valid and altered macs).

use core::arch::x86_64::*;

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
        let mut m = [[0u32; 4]; 16];
        for (w, word) in m.iter_mut().enumerate() {
            *word = [u32::from_le_bytes(block[4 * w..4 * w + 4].try_into().unwrap()); 4];
        }
        // SAFETY: SSE2 is part of x86_64; the arrays are plain data.
        unsafe {
            let mut hv = [_mm_setzero_si128(); 8];
            for (v, x) in hv.iter_mut().zip(h) {
                *v = _mm_set1_epi32(x as i32);
            }
            let mv = m.map(|w| _mm_loadu_si128(w.as_ptr().cast()));
            compress(&mut hv, &mv, 64, false);
            for (x, v) in h.iter_mut().zip(hv) {
                *x = _mm_cvtsi128_si32(v) as u32;
            }
        }
        State(h)
    }

    /// Whether each of four initiations carries a valid mac1.
    pub fn verify(&self, msgs: [&[u8; INITIATION_LEN]; 4]) -> [bool; 4] {
        // Written out without iterators, closures or slice copies: the crate
        // builds at opt-level z, which leaves those as calls (~50 ns a
        // message here).
        // SAFETY: SSE2 is part of x86_64; `words` reads inside the messages.
        unsafe {
            let s = |i: usize| _mm_set1_epi32(self.0[i] as i32);
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
            let z = _mm_setzero_si128();
            let m = [
                b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, z, z, z,
            ];
            compress(&mut h, &m, (64 + COVERED) as u32, true);
            // The first four words of h are the 16-byte mac, lane by lane.
            let [w0, w1, w2, w3] = words(&msgs, COVERED);
            let eq = _mm_and_si128(
                _mm_and_si128(_mm_cmpeq_epi32(h[0], w0), _mm_cmpeq_epi32(h[1], w1)),
                _mm_and_si128(_mm_cmpeq_epi32(h[2], w2), _mm_cmpeq_epi32(h[3], w3)),
            );
            let bits = _mm_movemask_ps(_mm_castsi128_ps(eq));
            [bits & 1 != 0, bits & 2 != 0, bits & 4 != 0, bits & 8 != 0]
        }
    }
}

/// Words `off / 4 ..` of four messages, four lanes per word.
#[inline(always)]
unsafe fn words(msgs: &[&[u8; INITIATION_LEN]; 4], off: usize) -> [__m128i; 4] {
    debug_assert!(off + 16 <= INITIATION_LEN);
    // SAFETY: SSE2 is part of x86_64; each unaligned load reads 16 bytes
    // inside a message (the callers' offsets end at 132 of 148).
    unsafe {
        let ld = |i: usize| _mm_loadu_si128(msgs[i].as_ptr().add(off).cast());
        transpose([ld(0), ld(1), ld(2), ld(3)])
    }
}

/// Rows of four words (one message each) to four lanes per word.
#[inline(always)]
unsafe fn transpose([a, b, c, d]: [__m128i; 4]) -> [__m128i; 4] {
    // SAFETY: SSE2 is part of x86_64.
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

#[inline(always)]
unsafe fn ror(x: __m128i, n: i32) -> __m128i {
    // SAFETY: SSE2 is part of x86_64.
    unsafe {
        match n {
            16 => _mm_shufflehi_epi16::<0xB1>(_mm_shufflelo_epi16::<0xB1>(x)),
            12 => _mm_or_si128(_mm_srli_epi32::<12>(x), _mm_slli_epi32::<20>(x)),
            8 => _mm_or_si128(_mm_srli_epi32::<8>(x), _mm_slli_epi32::<24>(x)),
            _ => _mm_or_si128(_mm_srli_epi32::<7>(x), _mm_slli_epi32::<25>(x)),
        }
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn g(v: &mut [__m128i; 16], a: usize, b: usize, c: usize, d: usize, x: __m128i, y: __m128i) {
    // SAFETY: SSE2 is part of x86_64.
    unsafe {
        v[a] = _mm_add_epi32(_mm_add_epi32(v[a], v[b]), x);
        v[d] = ror(_mm_xor_si128(v[d], v[a]), 16);
        v[c] = _mm_add_epi32(v[c], v[d]);
        v[b] = ror(_mm_xor_si128(v[b], v[c]), 12);
        v[a] = _mm_add_epi32(_mm_add_epi32(v[a], v[b]), y);
        v[d] = ror(_mm_xor_si128(v[d], v[a]), 8);
        v[c] = _mm_add_epi32(v[c], v[d]);
        v[b] = ror(_mm_xor_si128(v[b], v[c]), 7);
    }
}

/// BLAKE2s compression of one block in each lane; `t` is the byte count
/// through this block (the same in every lane), `last` the final block.
#[inline(never)]
unsafe fn compress(h: &mut [__m128i; 8], m: &[__m128i; 16], t: u32, last: bool) {
    // SAFETY: SSE2 is part of x86_64.
    unsafe {
        let iv = |i: usize| _mm_set1_epi32(IV[i] as i32);
        let mut v = [_mm_setzero_si128(); 16];
        v[..8].copy_from_slice(h);
        for i in 0..4 {
            v[8 + i] = iv(i);
        }
        v[12] = _mm_set1_epi32((IV[4] ^ t) as i32);
        v[13] = iv(5);
        v[14] = _mm_set1_epi32(if last { !IV[6] } else { IV[6] } as i32);
        v[15] = iv(7);
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
            h[i] = _mm_xor_si128(h[i], _mm_xor_si128(v[i], v[i + 8]));
        }
    }
}
