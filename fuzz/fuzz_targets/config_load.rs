//! Any text as /etc/config/wgroam: parsing and validation never panic; a
//! refused config gets one clean line per problem, an accepted one is sane.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wgroam::config;
use wgroam::config::uci::syntax::parse_config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(sections) = parse_config("wgroam", text) else {
        return;
    };
    match config::from_sections(&sections) {
        Ok(c) => {
            assert!(!c.interfaces.is_empty());
            assert!((100..=10_000).contains(&c.poll_ms));
            assert!(c.state_dir.is_absolute() && c.state_file.is_absolute());
            for i in &c.interfaces {
                assert!(config::valid_uci_name(&i.name));
                assert!(config::valid_ifname(&i.ifname));
            }
        }
        Err(problems) => {
            assert!(!problems.is_empty());
            for p in problems {
                let line = p.to_string();
                assert!(line.starts_with("wgroam"), "{line:?}");
                assert!(!line.chars().any(char::is_control), "{line:?}");
            }
        }
    }
});
