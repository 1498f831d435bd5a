//! Crash injection for the crash-safety test (tests/e2e/40-crash-safety.sh).
//!
//! `crashpoint!("name")` marks a write step. Built with the cargo feature
//! `crash-inject`, the environment variable `WGROAM_CRASH_AT=<name>:<n>` makes
//! the process SIGKILL itself (exactly what `kill -9` does) the n-th time it
//! reaches that step. Without the feature the macro expands to nothing.

/// Marks a write step where the crash-safety test may kill the process.
#[macro_export]
macro_rules! crashpoint {
    ($name:literal) => {
        #[cfg(feature = "crash-inject")]
        $crate::os::crashpoint::hit($name);
    };
}

/// Kills the process at the n-th hit of the step named in `WGROAM_CRASH_AT`.
#[cfg(feature = "crash-inject")]
pub fn hit(name: &str) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};
    static TARGET: OnceLock<Option<(String, u32)>> = OnceLock::new();
    static SEEN: AtomicU32 = AtomicU32::new(0);
    let target = TARGET.get_or_init(|| {
        let v = std::env::var("WGROAM_CRASH_AT").ok()?;
        let (step, n) = v.rsplit_once(':')?;
        Some((step.to_string(), n.parse().ok()?))
    });
    let Some((step, n)) = target else { return };
    if step == name && SEEN.fetch_add(1, Ordering::SeqCst) + 1 == *n {
        eprintln!("wgroam: crash-inject: SIGKILL at {name} #{n}");
        // SAFETY: kill(2) on our own pid; SIGKILL cannot be caught.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}
