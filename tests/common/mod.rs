//! Helpers shared by the integration tests that run the real binary.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A scratch directory, unique per process, test and call; removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "wgroam-it-{}-{}-{}",
            std::process::id(),
            name,
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// A path inside the scratch directory.
    #[allow(dead_code)] // not every test binary uses it
    pub fn path(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The real OpenWrt uci tool (built by tests/tools/build-uci.sh into
/// target/tools/bin/uci, or named by $WGROAM_UCI_BIN), or `None` after
/// printing why `test` is skipped.
#[allow(dead_code)] // not every test binary uses it
pub fn real_uci(test: &str) -> Option<PathBuf> {
    let bin = match std::env::var_os("WGROAM_UCI_BIN").filter(|v| !v.is_empty()) {
        Some(b) => PathBuf::from(b),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tools/bin/uci"),
    };
    if bin.is_file() {
        Some(bin)
    } else {
        eprintln!(
            "SKIP {test}: real uci tool not found at {} (run tests/tools/build-uci.sh or set WGROAM_UCI_BIN)",
            bin.display()
        );
        None
    }
}
