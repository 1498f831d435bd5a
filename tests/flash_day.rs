//! Issue 7, flash: a simulated roaming day, time compressed. The hub runtime
//! (the daemon's own loop body: observe, flush) runs against the REAL uci tool
//! and a real OpenWrt `network` file, with the fake WireGuard
//! (`wgroam::os::wg::fake`, feature `test-support`) whose peer moves behind
//! its NAT; time is passed in, one second per step. What reaches flash
//! is counted where flash would see it: every new version of the config file
//! (uci commit replaces it by rename).
//!
//! Roaming hour: a NAT change every 2 minutes (30 moves), commit_interval 600:
//! at most one commit per 10 minutes. Quiet hour that follows: not a single
//! write. A clean stop commits what is pending, once.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{Scratch, real_uci};
use wgroam::config;
use wgroam::config::uci::syntax::parse_config;
use wgroam::core::hub::Event;
use wgroam::core::{Now, PublicKey};
use wgroam::hub::network::UciNetwork;
use wgroam::hub::runtime::{HubRuntime, NetworkConfig};
use wgroam::os::uci::UciCli;
use wgroam::os::wg::fake::FakeWg;

const PEER: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

/// Counts the versions of a file: uci commit (and the agent's atomic
/// writes) write a new file and rename it over the old one.
struct Versions<'a> {
    path: &'a Path,
    last: (u64, i64, i64),
    count: u32,
}

impl<'a> Versions<'a> {
    fn new(path: &'a Path) -> Self {
        let last = Self::id(path);
        Versions {
            path,
            last,
            count: 0,
        }
    }

    fn id(path: &Path) -> (u64, i64, i64) {
        let m = fs::metadata(path).unwrap();
        (m.ino(), m.mtime(), m.mtime_nsec())
    }

    /// New versions seen so far, this look included.
    fn check(&mut self) -> u32 {
        let v = Self::id(self.path);
        if v != self.last {
            self.last = v;
            self.count += 1;
        }
        self.count
    }
}

#[test]
fn a_roaming_day_costs_flash_only_by_the_commit_policy() {
    let Some(uci) = real_uci("flash_day") else {
        return;
    };
    let dir = Scratch::new("flash-day");
    let etc = dir.path("etc");
    fs::create_dir_all(&etc).unwrap();
    let typical = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/uci/openwrt-defaults/network.config_generate-typical"
    ))
    .unwrap();
    let network = etc.join("network");
    fs::write(
        &network,
        format!(
            "{typical}\nconfig interface 'wg0'\n\toption proto 'wireguard'\n\toption listen_port '51820'\n\n\
             config wireguard_wg0\n\toption public_key '{PEER}'\n\tlist allowed_ips '2001:db8:100:1::/64'\n\
             \toption endpoint_host '198.51.100.3'\n\toption endpoint_port '30000'\n"
        ),
    )
    .unwrap();
    let conf = format!(
        "config agent 'agent'\n\toption role 'hub'\n\toption state_dir '{d}/run'\n\toption state_file '{d}/state.json'\n\
         \toption commit_interval '600'\n\nconfig interface 'wg0'\n\toption capture '0'\n\toption routes '0'\n",
        d = dir.0.display()
    );
    let cfg = config::from_sections(&parse_config("wgroam", &conf).unwrap()).unwrap();
    let store = UciCli {
        bin: uci.clone(),
        confdir: Some(etc.clone()),
        savedir: Some(dir.path("save")),
    };
    let net: Box<dyn NetworkConfig> = Box::new(UciNetwork::new(store));

    // One peer, roaming wherever the test puts it; the kernel keeps a live
    // session (a handshake 30 s ago, traffic every second).
    let start_wall = 1_795_000_000;
    let key = PublicKey::from_base64(PEER).unwrap();
    let kernel = FakeWg::new().with_device("wg0", 51820).with_peer(
        "wg0",
        key,
        Some("198.51.100.3:30000".parse().unwrap()),
        &["2001:db8:100:1::/64".parse().unwrap()],
    );
    kernel.handshake("wg0", &key, start_wall - 30);
    let mut now = Now::new(1_000, start_wall);
    let mut rt = HubRuntime::new(cfg, kernel.clone(), Some(net), now);

    let mut writes = Versions::new(&network);
    let mut step = |rt: &mut HubRuntime<FakeWg>, now: Now| {
        kernel.handshake("wg0", &key, now.wall.saturating_sub(30));
        kernel.traffic("wg0", &key, 1, 1);
        rt.observe(now);
        rt.flush(now, false);
        writes.check()
    };

    // The roaming hour: a new NAT port every 2 minutes.
    let mut moves = 0;
    for s in 0..3600u64 {
        if s % 120 == 60 {
            moves += 1;
            let port = 30000 + moves;
            kernel.roam("wg0", &key, format!("198.51.100.3:{port}").parse().unwrap());
        }
        now = Now::new(now.mono_ms + 1000, now.wall + 1);
        step(&mut rt, now);
    }
    let roaming = step(&mut rt, now);
    let last_port = 30000 + moves;
    // Followed: what is staged is where the peer is.
    let show = |opt: &str| {
        let out = std::process::Command::new(&uci)
            .args(["-c", etc.to_str().unwrap(), "-t"])
            .arg(dir.path("save"))
            .args(["get", &format!("network.@wireguard_wg0[0].{opt}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(show("endpoint_port"), last_port.to_string());
    assert_eq!(moves, 30);
    assert!(
        (1..=6).contains(&roaming),
        "{roaming} writes of /etc/config/network for {moves} moves in an hour with commit_interval 600"
    );

    // The quiet hour: the peer stays put, the agent keeps polling.
    for _ in 0..3600u64 {
        now = Now::new(now.mono_ms + 1000, now.wall + 1);
        step(&mut rt, now);
    }
    let quiet = step(&mut rt, now) - roaming;
    assert_eq!(quiet, 0, "writes of /etc/config/network in a quiet hour");
    // By then the last move is committed: the file holds where the peer is.
    let text = fs::read_to_string(&network).unwrap();
    assert!(
        text.contains(&format!("option endpoint_port '{last_port}'")),
        "{text}"
    );

    // A silent tunnel (no traffic, no handshake) for ten minutes: the status
    // file (RAM, but every rewrite is work) is rewritten on its heartbeat
    // only, not every time the counters are due.
    let status = dir.path("run").join("status.json");
    let mut status_versions = Versions::new(&status);
    let mut status_writes = 0;
    for _ in 0..600u64 {
        now = Now::new(now.mono_ms + 1000, now.wall + 1);
        rt.observe(now);
        rt.flush(now, false);
        status_writes = status_versions.check();
    }
    assert!(
        (9..=11).contains(&status_writes),
        "{status_writes} status rewrites in 10 silent minutes (heartbeat 60 s)"
    );

    // One more move, then a clean stop: committed once, at the stop.
    kernel.roam("wg0", &key, "198.51.100.3:31000".parse().unwrap());
    now = Now::new(now.mono_ms + 1000, now.wall + 1);
    let before_stop = step(&mut rt, now);
    rt.feed(now, Event::Stop);
    rt.flush(now, true);
    let after_stop = step(&mut rt, now);
    assert_eq!(after_stop - before_stop, 1, "one write at the stop");
    assert!(
        fs::read_to_string(&network)
            .unwrap()
            .contains("option endpoint_port '31000'")
    );
    // Nothing else of the user's file changed: every other section is intact.
    let text = fs::read_to_string(&network).unwrap();
    assert!(text.contains("config interface 'lan'") && text.contains("option ip6assign '60'"));
    eprintln!(
        "flash_day: {moves} moves in the roaming hour -> {roaming} config writes (commit_interval 600); quiet hour -> {quiet}; stop -> 1; 10 silent minutes -> {status_writes} status rewrites"
    );
}
