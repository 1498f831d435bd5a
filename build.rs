//! Records the build time: a wall clock earlier than this is certainly wrong
//! (an RTC-less router before NTP), so the roam role will not burn WireGuard
//! handshakes with it. Honours SOURCE_DATE_EPOCH for reproducible builds.
//!
//! Also the package version `wgroam --version` prints, `VERSION-rRELEASE`
//! (0.1.0-r1): the crate version and `[package.metadata.openwrt] release`
//! from Cargo.toml, or `WGROAM_PKG_VERSION` as the feed Makefile passes it
//! (PKG_VERSION-rPKG_RELEASE, so a release bumped in the feed shows), which
//! must name the crate's version.
//!
//! And `cfg(mac1_lanes)` on the targets whose CPUs all have 128-bit vector
//! lanes (see src/wire/lanes.rs).
fn main() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-env-changed=WGROAM_PKG_VERSION");
    println!("cargo:rerun-if-changed=Cargo.toml");
    println!("cargo:rerun-if-changed=build.rs");
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    println!("cargo:rustc-env=WGROAM_BUILD_EPOCH={epoch}");

    let crate_version = std::env::var("CARGO_PKG_VERSION").expect("cargo sets CARGO_PKG_VERSION");
    let version = match std::env::var("WGROAM_PKG_VERSION") {
        Ok(v) if !v.is_empty() => v,
        _ => format!("{crate_version}-r{}", manifest_release()),
    };
    let release = version
        .strip_prefix(&crate_version)
        .and_then(|r| r.strip_prefix("-r"));
    if !release.is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit())) {
        panic!(
            "WGROAM_PKG_VERSION '{version}' is not valid; expected {crate_version}-rN \
             (PKG_VERSION must be Cargo.toml's version {crate_version})"
        );
    }
    println!("cargo:rustc-env=WGROAM_PKG_VERSION={version}");

    // mac1 four at a time in vector lanes (src/wire/lanes.rs) where every CPU
    // of the target has them: SSE2 on x86_64, NEON on (little-endian) aarch64.
    println!("cargo::rustc-check-cfg=cfg(mac1_lanes)");
    let target = |k: &str| std::env::var(k).unwrap_or_default();
    let arch = target("CARGO_CFG_TARGET_ARCH");
    if arch == "x86_64" || (arch == "aarch64" && target("CARGO_CFG_TARGET_ENDIAN") == "little") {
        println!("cargo:rustc-cfg=mac1_lanes");
    }
}

/// `release = N` of `[package.metadata.openwrt]` in Cargo.toml.
fn manifest_release() -> String {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{dir}/Cargo.toml")).expect("read Cargo.toml");
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == "[package.metadata.openwrt]";
        } else if inside
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == "release"
        {
            let v = v.trim();
            if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
                return v.to_string();
            }
            panic!("Cargo.toml: [package.metadata.openwrt] release = {v}; expected a whole number");
        }
    }
    panic!("Cargo.toml: no 'release = N' in [package.metadata.openwrt]");
}
