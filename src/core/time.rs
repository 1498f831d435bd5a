//! Time as the core sees it: always passed in, never read.
//!
//! Monotonic milliseconds drive timers; wall-clock seconds only label what
//! users see (`status`) and compare with WireGuard's handshake times, which
//! the kernel reports in wall-clock time.

/// The moment an event is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Now {
    /// Monotonic milliseconds since an arbitrary origin (CLOCK_MONOTONIC).
    pub mono_ms: u64,
    /// Wall-clock seconds since the Unix epoch.
    pub wall: u64,
}

impl Now {
    pub const fn new(mono_ms: u64, wall: u64) -> Self {
        Self { mono_ms, wall }
    }

    /// The same moment `ms` milliseconds later (tests walk time forward).
    pub const fn after_ms(self, ms: u64) -> Self {
        Self {
            mono_ms: self.mono_ms + ms,
            wall: self.wall + ms / 1000,
        }
    }

    /// Milliseconds elapsed since `earlier` (0 if the clock went backwards).
    pub const fn since_ms(self, earlier_mono_ms: u64) -> u64 {
        self.mono_ms.saturating_sub(earlier_mono_ms)
    }
}
