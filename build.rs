//! Records the build time: a wall clock earlier than this is certainly wrong
//! (an RTC-less router before NTP), so the roam role will not burn WireGuard
//! handshakes with it. Honours SOURCE_DATE_EPOCH for reproducible builds.
fn main() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    println!("cargo:rustc-env=WGROAM_BUILD_EPOCH={epoch}");
}
