//! Any text as a uci file or as `uci show` output: the parsers never panic,
//! errors are one line, and a parsed file survives export and re-parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wgroam::config::uci::syntax as parse;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse::parse_config("fuzz", text) {
        Ok(sections) => {
            // Types that are plain names survive the export format (libuci
            // prints types unquoted, as render_export does).
            if sections.iter().all(|s| parse::is_valid_name(&s.stype)) {
                let again = parse::parse_config("export", &parse::render_export("fuzz", &sections))
                    .expect("exported config parses");
                assert_eq!(again, sections);
            }
        }
        Err(e) => assert!(e.line >= 1),
    }
    if let Ok(lines) = parse::parse_show("fuzz", text) {
        let _ = parse::sections_from_show(&lines);
    }
    let _ = parse::logical_lines(text);
});
