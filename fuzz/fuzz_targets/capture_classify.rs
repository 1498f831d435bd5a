//! Any captured frame, either direction, through the hub's capture glue
//! (parse, classify, verify) with a fixed responder: never panics, and an
//! `Initiation` event only comes out of a frame the verifier accepted.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wgroam::capture::Direction;
use wgroam::capture_hub::classify;
use wgroam::core::hub::Event;
use wgroam::handshake::Responder;
use wgroam::wire;

fn unhex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn responder() -> &'static Responder {
    static R: OnceLock<Responder> = OnceLock::new();
    R.get_or_init(|| {
        let key = unhex(include_str!(
            "../../tests/fixtures/handshake/responder_private.hex"
        ));
        Responder::new(key.try_into().unwrap())
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, frame)) = data.split_first() else {
        return;
    };
    let direction = if first & 1 == 0 {
        Direction::Incoming
    } else {
        Direction::Outgoing
    };
    let mut budget = || first & 2 == 0;
    let event = classify("wg0", responder(), 51820, frame, direction, &mut budget);
    if let Some(Event::Initiation { key, .. }) = event {
        let d = wire::parse_l3_prefix(frame).expect("an initiation came from a datagram");
        let who = responder()
            .identify_payload(d.payload(frame))
            .expect("only verified initiations become events");
        assert_eq!(key.0, who.static_public);
    }
});
