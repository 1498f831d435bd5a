//! Responder-side verification of WireGuard handshake initiations
//! (Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s as the WireGuard paper specifies it).
//!
//! The hub's own WireGuard answers initiations; the hub only *watches* them to
//! learn quickly and reliably where a roaming peer is. Knowing the responder's
//! private key it can replay the first half of the responder's Noise work:
//! check mac1, open the sealed static key (who claims to initiate) and open the
//! sealed timestamp, which only the holder of that static private key can have
//! produced. Whether that peer and timestamp are acceptable is the caller's
//! policy (configured key, timestamp newer than the last one seen).
//!
//! Cost: two X25519 operations per initiation that passes mac1; mac1 itself
//! needs only the public key, so callers should rate-limit.

use blake2::digest::{KeyInit, Mac};
use blake2::{Blake2s256, Blake2sMac, Digest};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, Nonce, Tag};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

use crate::wire::{HandshakeInitiation, INITIATION_LEN};

const CONSTRUCTION: &[u8] = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
const IDENTIFIER: &[u8] = b"WireGuard v1 zx2c4 Jason@zx2c4.com";
const LABEL_MAC1: &[u8] = b"mac1----";

/// Offset of 2^62 plus the 10 s TAI−UTC difference WireGuard implementations
/// add to Unix seconds.
const TAI64_UNIX_OFFSET: u64 = 0x4000_0000_0000_000a;

/// A TAI64N timestamp as carried in an initiation. Ordered like WireGuard
/// compares them (seconds, then nanoseconds, i.e. the 12 big-endian bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Tai64n {
    pub seconds: u64,
    pub nanos: u32,
}

impl Tai64n {
    pub fn from_bytes(b: &[u8; 12]) -> Self {
        let (s, n) = b.split_at(8);
        Tai64n {
            seconds: u64::from_be_bytes(s.try_into().unwrap_or_default()),
            nanos: u32::from_be_bytes(n.try_into().unwrap_or_default()),
        }
    }

    pub fn to_bytes(&self) -> [u8; 12] {
        let mut b = [0; 12];
        b[..8].copy_from_slice(&self.seconds.to_be_bytes());
        b[8..].copy_from_slice(&self.nanos.to_be_bytes());
        b
    }

    /// WireGuard accepts an initiation only if its timestamp is strictly newer
    /// than the last accepted one from that peer (replay protection).
    pub fn is_newer_than(&self, other: &Tai64n) -> bool {
        self > other
    }

    /// Unix seconds as WireGuard implementations encode them (for logs).
    pub fn unix_seconds(&self) -> Option<u64> {
        self.seconds.checked_sub(TAI64_UNIX_OFFSET)
    }
}

/// Who sent a verified initiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Initiator {
    /// The initiator's static public key (to match against configured peers).
    pub static_public: [u8; 32],
    pub timestamp: Tai64n,
    /// The initiator's session index; the response's receiver index echoes it.
    pub sender_index: u32,
}

/// Why an initiation was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// mac1 does not match: not addressed to this responder, or altered.
    BadMac1,
    /// The sealed static key does not open (wrong responder key or forged).
    BadStatic,
    /// The sealed timestamp does not open: the sender lacks the static
    /// private key it claims.
    BadTimestamp,
    /// Not a well-formed initiation (length, type, low-order ephemeral key).
    Malformed,
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reject::BadMac1 => "bad mac1",
            Reject::BadStatic => "static key does not decrypt",
            Reject::BadTimestamp => "timestamp does not decrypt",
            Reject::Malformed => "malformed initiation",
        })
    }
}

impl std::error::Error for Reject {}

/// The responder's key material, precomputed once per interface.
pub struct Responder {
    /// Zeroized on drop by x25519-dalek.
    secret: StaticSecret,
    public: [u8; 32],
    /// BLAKE2s keyed with the mac1 key, the key block already compressed.
    mac1: Mac1,
    /// Chaining key and hash after the pre-message (responder static known).
    chain0: [u8; 32],
    hash0: [u8; 32],
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("public", &hex(&self.public))
            .finish_non_exhaustive()
    }
}

impl Responder {
    /// Builds the responder from its 32-byte private key (as `wg genkey`
    /// decodes to).
    pub fn new(mut private_key: [u8; 32]) -> Self {
        let secret = StaticSecret::from(private_key);
        private_key.zeroize();
        let public = PublicKey::from(&secret).to_bytes();
        let chain0 = hash(&[CONSTRUCTION]);
        let hash0 = hash(&[&hash(&[&chain0, IDENTIFIER]), &public]);
        let mac1_key = hash(&[LABEL_MAC1, &public]);
        Responder {
            secret,
            public,
            mac1: Mac1::new(&mac1_key),
            chain0,
            hash0,
        }
    }

    pub fn public_key(&self) -> &[u8; 32] {
        &self.public
    }

    /// Checks mac1 of a handshake message (its last 32 bytes are mac1, mac2):
    /// keyed BLAKE2s-128 with the mac1 key, compared in constant time.
    pub fn verify_mac1(&self, msg: &[u8]) -> bool {
        self.mac1.verify(msg)
    }

    /// [`Responder::verify_mac1`] of four initiations ([`Mac1::verify4`]).
    pub fn verify_mac1_x4(&self, msgs: [&[u8; INITIATION_LEN]; 4]) -> [bool; 4] {
        self.mac1.verify4(msgs)
    }

    /// Verifies an initiation and tells who sent it.
    pub fn identify(&self, init: &HandshakeInitiation<&[u8]>) -> Result<Initiator, Reject> {
        if !self.verify_mac1(init.as_bytes()) {
            return Err(Reject::BadMac1);
        }
        let ephemeral = init.ephemeral();
        let mut chain = kdf1(&self.chain0, ephemeral);
        let mut h = hash(&[&self.hash0, ephemeral]);

        // es: DH(responder static, initiator ephemeral) keys the static key.
        let es = self.secret.diffie_hellman(&PublicKey::from(*ephemeral));
        if !es.was_contributory() {
            return Err(Reject::Malformed);
        }
        let (c, key) = kdf2(&chain, es.as_bytes());
        *chain = *c;
        let mut static_public = [0u8; 32];
        open(&key, &h, init.encrypted_static(), &mut static_public).ok_or(Reject::BadStatic)?;
        h = hash(&[&h, init.encrypted_static()]);

        // ss: DH(responder static, initiator static) keys the timestamp, so
        // opening it proves the sender holds the initiator's private key.
        let ss = self.secret.diffie_hellman(&PublicKey::from(static_public));
        if !ss.was_contributory() {
            return Err(Reject::BadStatic);
        }
        let (_, key) = kdf2(&chain, ss.as_bytes());
        let mut ts = [0u8; 12];
        open(&key, &h, init.encrypted_timestamp(), &mut ts).ok_or(Reject::BadTimestamp)?;

        Ok(Initiator {
            static_public,
            timestamp: Tai64n::from_bytes(&ts),
            sender_index: init.sender_index(),
        })
    }

    /// [`Responder::identify`] for a raw UDP payload.
    pub fn identify_payload(&self, payload: &[u8]) -> Result<Initiator, Reject> {
        let init = HandshakeInitiation::new_checked(payload).map_err(|_| Reject::Malformed)?;
        self.identify(&init)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// HASH(a || b || ...) = BLAKE2s-256.
/// The mac1 key of a receiver: every handshake message sent *to* `public`
/// carries a mac1 under it, which tells whom an initiation is for.
pub fn mac1_key(public: &[u8; 32]) -> [u8; 32] {
    hash(&[LABEL_MAC1, public])
}

/// Whether [`Mac1::verify4`] checks four initiations at once (x86_64 and
/// aarch64: see [`super::lanes`]), and is worth waiting for four.
pub const MAC1_LANES: bool = cfg!(mac1_lanes);

/// mac1 verification for one key with the keyed state precomputed: keyed
/// BLAKE2s compresses the zero-padded key as a block of its own, so starting
/// from the state after it saves one of the three compressions a 148-byte
/// initiation costs. This is the check every initiation-shaped packet pays.
#[derive(Clone)]
pub struct Mac1 {
    core: blake2::Blake2sVarCore,
    key: [u8; 32],
    /// The same state for [`Mac1::verify4`], in vector lanes.
    #[cfg(mac1_lanes)]
    lanes: super::lanes::State,
}

impl Mac1 {
    pub fn new(key: &[u8; 32]) -> Self {
        use blake2::digest::core_api::{Block, UpdateCore};
        let mut core = blake2::Blake2sVarCore::new_with_params(&[], &[], 32, 16);
        let mut block = Block::<blake2::Blake2sVarCore>::default();
        block[..32].copy_from_slice(key);
        core.update_blocks(std::slice::from_ref(&block));
        Mac1 {
            core,
            key: *key,
            #[cfg(mac1_lanes)]
            lanes: super::lanes::State::new(key),
        }
    }

    /// [`Mac1::verify`] of four initiations: at once in vector lanes where
    /// the CPU has them ([`MAC1_LANES`]: about twice the cost of one), one
    /// by one elsewhere.
    pub fn verify4(&self, msgs: [&[u8; INITIATION_LEN]; 4]) -> [bool; 4] {
        #[cfg(mac1_lanes)]
        return self.lanes.verify(msgs);
        #[cfg(not(mac1_lanes))]
        return msgs.map(|m| self.verify(m));
    }

    /// Same answer as [`verify_mac1_with`], allocation-free. The covered
    /// bytes go to the compression function where they lie (all blocks but
    /// the last; BLAKE2s finalizes the last one, full or not), and the
    /// comparison is two 64-bit words: 3 932 instructions a junk packet,
    /// against 4 042 through `digest_blocks` and a byte-wise fold
    /// (bench/capture-instr.sh; BLAKE2s compression itself is 3 192).
    pub fn verify(&self, msg: &[u8]) -> bool {
        use blake2::digest::core_api::{Block, Buffer, UpdateCore, VariableOutputCore};
        let Some(split) = msg.len().checked_sub(32) else {
            return false;
        };
        let (covered, macs) = msg.split_at(split);
        if covered.is_empty() {
            // The key block is then the last one, compressed as such.
            return verify_mac1_with(&self.key, msg);
        }
        let (blocks, last) = covered.split_at((covered.len() - 1) / 64 * 64);
        let mut core = self.core.clone();
        for block in blocks.chunks_exact(64) {
            core.update_blocks(std::slice::from_ref(
                Block::<blake2::Blake2sVarCore>::from_slice(block),
            ));
        }
        let mut buffer = Buffer::<blake2::Blake2sVarCore>::new(last);
        let mut out = Default::default();
        core.finalize_variable_core(&mut buffer, &mut out);
        let word = |b: &[u8], i: usize| u64::from_ne_bytes(b[i..i + 8].try_into().unwrap());
        let diff = (word(&out, 0) ^ word(macs, 0)) | (word(&out, 8) ^ word(macs, 8));
        std::hint::black_box(diff) == 0
    }
}

/// Checks mac1 of a handshake message (its last 32 bytes are mac1, mac2)
/// under `key`: keyed BLAKE2s-128, compared in constant time.
pub fn verify_mac1_with(key: &[u8; 32], msg: &[u8]) -> bool {
    let Some(split) = msg.len().checked_sub(32) else {
        return false;
    };
    let (covered, macs) = msg.split_at(split);
    let mut mac = <Blake2sMac<blake2::digest::consts::U16> as KeyInit>::new_from_slice(key)
        .expect("32-byte key is valid for BLAKE2s");
    Mac::update(&mut mac, covered);
    mac.verify_slice(&macs[..16]).is_ok()
}

fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut d = Blake2s256::new();
    for p in parts {
        Digest::update(&mut d, p);
    }
    d.finalize().into()
}

/// HMAC-BLAKE2s (RFC 2104 with a 64-byte block); keys are always 32 bytes.
fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    let mut pad = Zeroizing::new([0u8; 64]);
    pad[..32].copy_from_slice(key);
    pad.iter_mut().for_each(|b| *b ^= 0x36);
    let mut inner = Blake2s256::new();
    Digest::update(&mut inner, &pad[..]);
    for p in parts {
        Digest::update(&mut inner, p);
    }
    let inner = Zeroizing::new(<[u8; 32]>::from(inner.finalize()));
    pad.iter_mut().for_each(|b| *b ^= 0x36 ^ 0x5c);
    Zeroizing::new(hash(&[&pad[..], &inner[..]]))
}

/// KDF1: the new chaining key only.
fn kdf1(chain: &[u8; 32], input: &[u8]) -> Zeroizing<[u8; 32]> {
    let prk = hmac(chain, &[input]);
    hmac(&prk, &[&[1]])
}

/// KDF2: the new chaining key and a cipher key.
fn kdf2(chain: &[u8; 32], input: &[u8]) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    let prk = hmac(chain, &[input]);
    let t1 = hmac(&prk, &[&[1]]);
    let t2 = hmac(&prk, &[&t1[..], &[2]]);
    (t1, t2)
}

/// AEAD open with counter 0 (each handshake key is used once) and `aad` as
/// associated data; `sealed` is plaintext || 16-byte tag.
fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8], out: &mut [u8]) -> Option<()> {
    let (ct, tag) = sealed.split_at(sealed.len().checked_sub(16)?);
    if ct.len() != out.len() {
        return None;
    }
    out.copy_from_slice(ct);
    let cipher = ChaCha20Poly1305::new(key.into());
    let ok = cipher
        .decrypt_in_place_detached(&Nonce::default(), aad, out, Tag::from_slice(tag))
        .is_ok();
    if !ok {
        out.zeroize();
    }
    ok.then_some(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn precomputed_mac1_agrees_with_keyed_blake2s() {
        let mut next = xorshift(0x0123_4567_89ab_cdef);
        let mut rnd = move || next() as u8;
        for len in 0..300usize {
            let key: [u8; 32] = std::array::from_fn(|_| rnd());
            let m = Mac1::new(&key);
            let mut msg: Vec<u8> = (0..len).map(|_| rnd()).collect();
            assert_eq!(m.verify(&msg), verify_mac1_with(&key, &msg), "len {len}");
            if len >= 32 {
                // A valid mac1 (keyed BLAKE2s-128 over what precedes it).
                let cut = len - 32;
                let mut mac =
                    <Blake2sMac<blake2::digest::consts::U16> as KeyInit>::new_from_slice(&key)
                        .unwrap();
                Mac::update(&mut mac, &msg[..cut]);
                msg[cut..cut + 16].copy_from_slice(&mac.finalize().into_bytes());
                assert!(m.verify(&msg), "len {len}");
                assert!(verify_mac1_with(&key, &msg));
                msg[cut + 15] ^= 1;
                assert!(!m.verify(&msg), "len {len}");
            }
        }
    }

    /// Four at once, in every lane: each lane's answer is that lane's
    /// message's, whatever the other three hold (valid, altered anywhere in
    /// the covered bytes or the mac, random).
    #[test]
    fn mac1_of_four_agrees_with_one_by_one() {
        let mut rnd = xorshift(0x9e37_79b9_7f4a_7c15);
        for round in 0..400 {
            let key: [u8; 32] = std::array::from_fn(|_| rnd() as u8);
            let m = Mac1::new(&key);
            let msgs: [[u8; INITIATION_LEN]; 4] = std::array::from_fn(|_| {
                let mut msg: [u8; INITIATION_LEN] = std::array::from_fn(|_| rnd() as u8);
                match rnd() % 4 {
                    0 => {} // junk
                    k => {
                        let mut mac =
                            <Blake2sMac<blake2::digest::consts::U16> as KeyInit>::new_from_slice(
                                &key,
                            )
                            .unwrap();
                        Mac::update(&mut mac, &msg[..INITIATION_MAC1_OFFSET]);
                        msg[INITIATION_MAC1_OFFSET..][..16]
                            .copy_from_slice(&mac.finalize().into_bytes());
                        if k == 1 {
                            // One bit off in the covered bytes or the mac.
                            let bit = rnd() as usize % ((INITIATION_MAC1_OFFSET + 16) * 8);
                            msg[bit / 8] ^= 1 << (bit % 8);
                        }
                    }
                }
                msg
            });
            let one: [bool; 4] = std::array::from_fn(|i| m.verify(&msgs[i]));
            assert_eq!(
                m.verify4([&msgs[0], &msgs[1], &msgs[2], &msgs[3]]),
                one,
                "round {round}"
            );
        }
    }

    use crate::wire::tests::xorshift;
    use crate::wire::{INITIATION_LEN, INITIATION_MAC1_OFFSET};

    fn hex32(s: &str) -> [u8; 32] {
        crate::wire::tests::hex(s).try_into().unwrap()
    }

    macro_rules! fixture {
        ($name:literal) => {
            crate::wire::tests::hex(include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/handshake/",
                $name,
                ".hex"
            )))
        };
    }

    fn responder_private() -> [u8; 32] {
        fixture!("responder_private").try_into().unwrap()
    }
    fn initiator_public() -> [u8; 32] {
        fixture!("initiator_public").try_into().unwrap()
    }

    /// Initiator side of message 1, for tests: what a WireGuard peer sends.
    pub(crate) fn build_initiation(
        initiator_private: [u8; 32],
        ephemeral_private: [u8; 32],
        responder_public: [u8; 32],
        timestamp: Tai64n,
        sender_index: u32,
    ) -> [u8; INITIATION_LEN] {
        let seal = |key: &[u8; 32], aad: &[u8], plain: &[u8], out: &mut [u8]| {
            let (ct, tag) = out.split_at_mut(plain.len());
            ct.copy_from_slice(plain);
            let t = ChaCha20Poly1305::new(key.into())
                .encrypt_in_place_detached(&Nonce::default(), aad, ct)
                .unwrap();
            tag.copy_from_slice(&t);
        };
        let s = StaticSecret::from(initiator_private);
        let e = StaticSecret::from(ephemeral_private);
        let (s_pub, e_pub) = (PublicKey::from(&s), PublicKey::from(&e));
        let r_pub = PublicKey::from(responder_public);

        let mut m = [0u8; INITIATION_LEN];
        m[0] = 1;
        m[4..8].copy_from_slice(&sender_index.to_le_bytes());
        m[8..40].copy_from_slice(e_pub.as_bytes());

        let chain = hash(&[CONSTRUCTION]);
        let h = hash(&[&hash(&[&chain, IDENTIFIER]), &responder_public]);
        let chain = kdf1(&chain, e_pub.as_bytes());
        let h = hash(&[&h, e_pub.as_bytes()]);
        let (chain, key) = kdf2(&chain, e.diffie_hellman(&r_pub).as_bytes());
        seal(&key, &h, s_pub.as_bytes(), &mut m[40..88]);
        let h = hash(&[&h, &m[40..88]]);
        let (_, key) = kdf2(&chain, s.diffie_hellman(&r_pub).as_bytes());
        seal(&key, &h, &timestamp.to_bytes(), &mut m[88..116]);
        set_mac1(&mut m, &responder_public);
        m
    }

    /// Recomputes mac1 as anybody knowing the responder's public key can.
    pub(crate) fn set_mac1(m: &mut [u8; INITIATION_LEN], responder_public: &[u8; 32]) {
        let mut mac =
            <Blake2sMac<blake2::digest::consts::U16> as KeyInit>::new_from_slice(&hash(&[
                LABEL_MAC1,
                responder_public,
            ]))
            .unwrap();
        Mac::update(&mut mac, &m[..INITIATION_MAC1_OFFSET]);
        let tag = mac.finalize().into_bytes();
        m[INITIATION_MAC1_OFFSET..INITIATION_MAC1_OFFSET + 16].copy_from_slice(&tag);
    }

    const TS: Tai64n = Tai64n {
        seconds: TAI64_UNIX_OFFSET + 1_700_000_000,
        nanos: 123_000_000,
    };

    #[test]
    fn fixture_keys_are_consistent() {
        let r = Responder::new(responder_private());
        assert_eq!(
            r.public_key(),
            &hex32(include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/handshake/responder_public.hex"
            )))
        );
        let i = StaticSecret::from(<[u8; 32]>::try_from(fixture!("initiator_private")).unwrap());
        assert_eq!(PublicKey::from(&i).to_bytes(), initiator_public());
    }

    #[test]
    fn identifies_real_wireguard_go_initiations() {
        let r = Responder::new(responder_private());
        let v4 = r.identify_payload(&fixture!("initiation_v4")).unwrap();
        let v6 = r.identify_payload(&fixture!("initiation_v6")).unwrap();
        for (who, init) in [
            (&v4, fixture!("initiation_v4")),
            (&v6, fixture!("initiation_v6")),
        ] {
            assert_eq!(who.static_public, initiator_public());
            assert_eq!(who.sender_index.to_le_bytes(), init[4..8]);
            // Captured in 2024 or later, by a clock not wildly off.
            let unix = who.timestamp.unix_seconds().unwrap();
            assert!((1_700_000_000..4_000_000_000).contains(&unix), "{unix}");
        }
        // The second capture was made later; a real responder accepted both.
        assert!(v6.timestamp.is_newer_than(&v4.timestamp));
        assert!(!v4.timestamp.is_newer_than(&v6.timestamp));
        assert!(!v4.timestamp.is_newer_than(&v4.timestamp));
    }

    #[test]
    fn real_initiation_bit_flips() {
        let r = Responder::new(responder_private());
        let real: [u8; INITIATION_LEN] = fixture!("initiation_v4").try_into().unwrap();
        for bit in 0..INITIATION_LEN * 8 {
            let mut m = real;
            m[bit / 8] ^= 1 << (bit % 8);
            let got = r.identify_payload(&m);
            match bit / 8 {
                0..4 => assert_eq!(got, Err(Reject::Malformed), "bit {bit}"),
                4..116 => assert_eq!(got, Err(Reject::BadMac1), "bit {bit}"),
                116..132 => assert_eq!(got, Err(Reject::BadMac1), "bit {bit}"),
                // mac2 only matters to a responder under load that handed out a
                // cookie; WireGuard ignores it otherwise, and so do we.
                _ => assert_eq!(got.unwrap().static_public, initiator_public()),
            }
        }
    }

    #[test]
    fn forged_mac1_does_not_help_an_attacker() {
        // mac1 needs only the public key; the Noise layers must still hold.
        let r = Responder::new(responder_private());
        let real: [u8; INITIATION_LEN] = fixture!("initiation_v4").try_into().unwrap();
        for bit in (8 * 8..116 * 8).step_by(3) {
            let mut m = real;
            m[bit / 8] ^= 1 << (bit % 8);
            set_mac1(&mut m, r.public_key());
            let got = r.identify_payload(&m);
            let want = match bit / 8 {
                8..88 => Reject::BadStatic,
                _ => Reject::BadTimestamp,
            };
            // A flipped ephemeral may also land on a low-order point.
            assert!(
                got == Err(want) || got == Err(Reject::Malformed),
                "bit {bit}: {got:?}"
            );
        }
        // The sender index is covered by mac1 only, like in WireGuard.
        let mut m = real;
        m[4] ^= 1;
        set_mac1(&mut m, r.public_key());
        assert_eq!(
            r.identify_payload(&m).unwrap().sender_index.to_le_bytes()[0],
            real[4] ^ 1
        );
    }

    #[test]
    fn wrong_responder_key_rejects() {
        let mut other = responder_private();
        other[7] ^= 0x40;
        let wrong = Responder::new(other);
        let mut m: [u8; INITIATION_LEN] = fixture!("initiation_v4").try_into().unwrap();
        assert_eq!(wrong.identify_payload(&m), Err(Reject::BadMac1));
        set_mac1(&mut m, wrong.public_key());
        assert_eq!(wrong.identify_payload(&m), Err(Reject::BadStatic));
    }

    #[test]
    fn truncated_and_oversized_are_malformed() {
        let r = Responder::new(responder_private());
        let real = fixture!("initiation_v4");
        for n in 0..real.len() {
            assert_eq!(
                r.identify_payload(&real[..n]),
                Err(Reject::Malformed),
                "len {n}"
            );
        }
        let mut long = real.clone();
        long.push(0);
        assert_eq!(r.identify_payload(&long), Err(Reject::Malformed));
        assert!(!r.verify_mac1(&real[..31]));
        assert!(r.verify_mac1(&real));
    }

    #[test]
    fn built_initiation_round_trips() {
        let r = Responder::new(responder_private());
        let ipriv: [u8; 32] = fixture!("initiator_private").try_into().unwrap();
        let m = build_initiation(ipriv, [9; 32], *r.public_key(), TS, 0xdead_beef);
        let who = r.identify_payload(&m).unwrap();
        assert_eq!(who.static_public, initiator_public());
        assert_eq!(who.timestamp, TS);
        assert_eq!(who.sender_index, 0xdead_beef);
        assert_eq!(TS.unix_seconds(), Some(1_700_000_000));
        // An impostor using the victim's public key cannot seal the timestamp.
        let mut forged = build_initiation([5; 32], [9; 32], *r.public_key(), TS, 1);
        let victim = build_initiation(ipriv, [9; 32], *r.public_key(), TS, 1);
        forged[40..88].copy_from_slice(&victim[40..88]); // same ephemeral => same key
        set_mac1(&mut forged, r.public_key());
        assert_eq!(r.identify_payload(&forged), Err(Reject::BadTimestamp));
    }

    #[test]
    fn low_order_ephemeral_is_malformed() {
        let r = Responder::new(responder_private());
        let mut m: [u8; INITIATION_LEN] = fixture!("initiation_v4").try_into().unwrap();
        m[8..40].fill(0); // the identity point: DH result all zero
        set_mac1(&mut m, r.public_key());
        assert_eq!(r.identify_payload(&m), Err(Reject::Malformed));
    }

    #[test]
    fn tai64n_order_and_bytes() {
        let a = Tai64n::from_bytes(&[0x40, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9]);
        assert_eq!(
            a,
            Tai64n {
                seconds: 0x4000_0000_0000_0001,
                nanos: 9
            }
        );
        assert_eq!(Tai64n::from_bytes(&a.to_bytes()), a);
        let b = Tai64n { nanos: 10, ..a };
        let c = Tai64n {
            seconds: a.seconds + 1,
            nanos: 0,
        };
        assert!(b.is_newer_than(&a) && c.is_newer_than(&b) && !a.is_newer_than(&c));
        assert_eq!(Tai64n::default().unix_seconds(), None);
    }

    #[test]
    fn debug_never_shows_the_private_key() {
        let r = Responder::new(responder_private());
        let shown = format!("{r:?}");
        assert!(shown.contains(&hex(r.public_key())));
        assert!(!shown.contains(&hex(&responder_private())));
        assert!(!shown.contains(&hex(&r.mac1.key)));
    }

    #[test]
    fn random_input_never_panics() {
        let r = Responder::new(responder_private());
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        for round in 0..3_000 {
            let len = if round % 2 == 0 {
                INITIATION_LEN
            } else {
                (next() % 300) as usize
            };
            let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if len == INITIATION_LEN {
                // Shape it as an initiation with a valid mac1 so the random
                // bytes reach the X25519 and AEAD layers.
                buf[..4].copy_from_slice(&[1, 0, 0, 0]);
                let mut m: [u8; INITIATION_LEN] = buf.clone().try_into().unwrap();
                set_mac1(&mut m, r.public_key());
                buf = m.to_vec();
                let got = r.identify_payload(&buf);
                assert!(
                    matches!(got, Err(Reject::BadStatic | Reject::Malformed)),
                    "{got:?}"
                );
            } else {
                assert!(r.identify_payload(&buf).is_err());
            }
            let _ = r.verify_mac1(&buf);
        }
    }
}
