//! The responder of tests/fixtures/handshake, shared by the fuzz targets that
//! need a real interface key (its genuine initiations are seeds).

use std::sync::OnceLock;

use wgroam::wire::noise::Responder;

fn unhex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

pub fn responder() -> &'static Responder {
    static R: OnceLock<Responder> = OnceLock::new();
    R.get_or_init(|| {
        let key = unhex(include_str!(
            "../../tests/fixtures/handshake/responder_private.hex"
        ));
        Responder::new(key.try_into().unwrap())
    })
}
