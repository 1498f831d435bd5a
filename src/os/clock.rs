//! Is the wall clock trustworthy? WireGuard initiations carry it (TAI64N),
//! and a hub rejects one older than the last it saw, so an RTC-less router
//! must not handshake on a clock that has not been set yet.

use std::path::Path;

/// Written by `/etc/hotplug.d/ntp/95-wgroam` (sysntpd's "stratum" event) on
/// OpenWrt into the state directory (`/var/run/wgroam`).
pub const SYNCED_FLAG: &str = "ntp-synced";

/// NTP has set the clock: the kernel's adjtimex status says synchronised, or
/// OpenWrt's ntp hotplug left its flag in the state directory.
pub fn synced(state_dir: &Path) -> bool {
    if state_dir.join(SYNCED_FLAG).exists() {
        return true;
    }
    // SAFETY: timex is plain data; modes 0 only reads the kernel's state.
    let mut t: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: t is a valid timex.
    let state = unsafe { libc::adjtimex(&mut t) };
    state >= 0 && state != libc::TIME_ERROR && t.status & libc::STA_UNSYNC == 0
}
