//! Any captured frame: `parse_l3`, `parse_l3_prefix` and `classify` never
//! panic, and what they return is consistent with the buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wgroam::wire;

fuzz_target!(|frame: &[u8]| {
    let whole = wire::parse_l3(frame);
    let prefix = wire::parse_l3_prefix(frame);
    if let Ok(d) = &whole {
        // A whole datagram is also a valid prefix, and the same one.
        assert!(!d.truncated);
        assert_eq!(prefix.as_ref().ok(), Some(d));
        assert!(d.payload.start <= d.payload.end && d.payload.end <= frame.len());
    }
    if let Ok(d) = &prefix {
        assert!(d.payload.start <= d.payload.end && d.payload.end <= frame.len());
        let payload = d.payload(frame);
        assert_eq!(payload.len(), d.payload.len());
        if let Ok(m) = wire::classify(payload) {
            // A classified message always fits in what was captured.
            let n = match m {
                wire::Message::Initiation(i) => i.as_bytes().len(),
                wire::Message::Response(r) => r.as_bytes().len(),
                wire::Message::CookieReply(c) => c.as_bytes().len(),
                wire::Message::Transport(t) => t.as_bytes().len(),
            };
            assert!(n <= payload.len());
        }
    }
    let _ = wire::classify(frame);
});
