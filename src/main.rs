//! Thin entry point: everything lives in the library.

fn main() {
    std::process::exit(wgroam::app::main());
}
