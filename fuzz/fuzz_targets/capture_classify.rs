//! Any captured frame, either direction, through the hub's capture glue
//! (parse, classify, verify) with a fixed responder: never panics, and an
//! `Initiation` event only comes out of a frame the verifier accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wgroam::core::hub::Event;
use wgroam::hub::capture::{Who, classify};
use wgroam::os::capture::Direction;
use wgroam::wire;

#[path = "fixture.rs"]
mod fixture;
use fixture::responder;

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
    // The responder's own key as the one peer: outgoing initiations to it
    // are recognised by their mac1.
    let peers = [(
        wgroam::core::PublicKey(*responder().public_key()),
        wgroam::wire::noise::mac1_key(responder().public_key()),
    )];
    let who = Who {
        responder: responder(),
        port: 51820,
        peers: &peers,
    };
    let event = classify("wg0", &who, frame, direction, &mut budget).map(|v| v.into_event("wg0"));
    if let Some(Event::Initiation { key, .. }) = event {
        let d = wire::parse_l3_prefix(frame).expect("an initiation came from a datagram");
        let who = responder()
            .identify_payload(d.payload(frame))
            .expect("only verified initiations become events");
        assert_eq!(key.0, who.static_public);
    }
});
