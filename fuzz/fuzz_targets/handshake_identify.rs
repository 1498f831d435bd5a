//! Handshake initiations from anyone: `Responder::identify_payload` never
//! panics. Half the inputs are made 148 bytes long with a valid mac1, so the
//! fuzzer reaches the X25519 and AEAD steps instead of stopping at mac1.
#![no_main]

use blake2::digest::{KeyInit, Mac};
use blake2::{Blake2s256, Blake2sMac, Digest};
use libfuzzer_sys::fuzz_target;

#[path = "fixture.rs"]
mod fixture;
use fixture::responder;

/// Writes a valid mac1 (keyed BLAKE2s-128 over everything before it).
fn set_mac1(msg: &mut [u8], public: &[u8; 32]) {
    let key: [u8; 32] = Blake2s256::new()
        .chain_update(b"mac1----")
        .chain_update(public)
        .finalize()
        .into();
    let mut mac = <Blake2sMac<blake2::digest::consts::U16> as KeyInit>::new_from_slice(&key)
        .expect("32-byte key");
    Mac::update(&mut mac, &msg[..116]);
    msg[116..132].copy_from_slice(&mac.finalize().into_bytes());
}

fuzz_target!(|data: &[u8]| {
    let r = responder();
    let _ = r.identify_payload(data);
    let _ = r.verify_mac1(data);
    if data.first().is_some_and(|b| b & 1 == 1) {
        let mut msg = [0u8; 148];
        let n = data.len().min(148);
        msg[..n].copy_from_slice(&data[..n]);
        msg[..4].copy_from_slice(&[1, 0, 0, 0]);
        set_mac1(&mut msg, r.public_key());
        assert!(r.verify_mac1(&msg));
        if let Ok(who) = r.identify_payload(&msg) {
            // Only a message built with a real key pair gets here.
            assert_eq!(
                who.sender_index,
                u32::from_le_bytes(msg[4..8].try_into().unwrap())
            );
        }
    }
});
