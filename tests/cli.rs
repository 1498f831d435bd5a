//! The command-line contract, with the real binary: version, usage errors,
//! `status` exit codes and JSON, `check` against a missing WireGuard
//! interface.

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_wgroam");

mod common;
use common::Scratch;

/// Runs wgroam with `args`; these commands never wait on anything.
fn wgroam(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .env_remove("WGROAM_UCI_BIN")
        .output()
        .expect("run wgroam")
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).expect("output is UTF-8")
}

/// The lines of `s`, each checked to be non-empty.
fn one_line(s: &str, what: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: expected one line, got {s:?}");
    assert!(!lines[0].trim().is_empty(), "{what}: empty line");
    lines[0].to_string()
}

fn write_status(dir: &Path, pid: u64) {
    let v = serde_json::json!({
        "version": 1,
        "role": "hub",
        "pid": pid,
        "started": 1_700_000_000u64,
        "updated": 1_700_000_100u64,
        "uci": { "pending": true, "commits": 2 },
        "interfaces": [{
            "name": "wg0",
            "up": true,
            "backend": "userspace",
            "listen_port": 51820,
            "capture": "any port 51820",
            "capture_error": null,
            "capture_drops": 0,
            "ignored": { "bad_mac1": 3 },
            "peers": [{
                "public_key": "kM3hD8xqAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                "section": "r1",
                "present": true,
                "endpoint": "198.51.100.3:30412",
                "kernel_endpoint": "198.51.100.3:30412",
                "uci_endpoint": "198.51.100.3:30412",
                "latest_handshake": 1_700_000_090u64,
                "rx_bytes": 9324,
                "tx_bytes": 8812,
                "last_change": {
                    "at": 1_700_000_060u64,
                    "from": "198.51.100.3:30077",
                    "to": "198.51.100.3:30412",
                    "why": "kernel"
                },
                "initiations": 1,
                "handshakes": 1,
                "replays": 0,
                "problem": null
            }]
        }]
    });
    fs::write(dir.join("status.json"), v.to_string()).unwrap();
}

/// `PKG_VERSION:=` / `PKG_RELEASE:=` of a feed Makefile.
fn makefile_var(makefile: &str, var: &str) -> String {
    let text = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(makefile))
        .expect("read the feed Makefile");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{var}:=")))
        .unwrap_or_else(|| panic!("{makefile} has no {var}:="))
        .to_string()
}

#[test]
fn version_prints_the_package_version_of_the_feed_makefile() {
    let o = wgroam(&["--version"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(text(&o.stderr), "");
    // The form the packages carry (opkg and apk: VERSION-rRELEASE), and the
    // one the packages feed's CI looks for: PKG_VERSION in --version.
    let want = format!(
        "wgroam {}-r{}\n",
        makefile_var("openwrt/Makefile", "PKG_VERSION"),
        makefile_var("openwrt/Makefile", "PKG_RELEASE")
    );
    assert_eq!(text(&o.stdout), want);
    assert!(want.starts_with(&format!("wgroam {}-r", env!("CARGO_PKG_VERSION"))));
    // scripts/version.sh (what scripts/package.sh names the packages by)
    // says the same and finds the Makefiles in agreement.
    let script = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/version.sh"))
        .arg("--check")
        .output()
        .expect("run scripts/version.sh");
    assert!(script.status.success(), "{}", text(&script.stderr));
    assert_eq!(format!("wgroam {}", text(&script.stdout)), want);
}

#[test]
fn no_command_is_a_usage_error_with_a_one_line_hint() {
    let o = wgroam(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(text(&o.stdout), "");
    let l = one_line(&text(&o.stderr), "no command");
    assert!(l.contains("no command"), "{l}");
    assert!(l.contains("run, status, check, invite or join"), "{l}");
    assert!(l.contains("--help"), "{l}");
}

#[test]
fn unknown_flags_and_commands_are_refused() {
    for args in [
        &["--bogus"][..],
        &["frobnicate"],
        &["run", "--bogus"],
        &["status", "--jsn"],
        &["check", "--config"],
    ] {
        let o = wgroam(args);
        assert_ne!(o.status.code(), Some(0), "{args:?} was accepted");
        assert!(o.status.code().is_some(), "{args:?}: killed by a signal");
        let all = text(&o.stdout) + &text(&o.stderr);
        assert!(
            all.contains(args.last().unwrap()) || all.contains("--config"),
            "{args:?}: the message does not name the culprit: {all:?}"
        );
    }
}

#[test]
fn help_lists_the_commands() {
    let o = wgroam(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let out = text(&o.stdout);
    for c in ["run", "status", "check", "--version"] {
        assert!(out.contains(c), "--help lacks {c}: {out}");
    }
}

#[test]
fn status_without_an_agent_exits_3_with_a_clear_line() {
    let s = Scratch::new("none");
    let dir = s.0.to_str().unwrap();
    for json in [false, true] {
        let mut args = vec!["status", "--state-dir", dir];
        if json {
            args.push("--json");
        }
        let o = wgroam(&args);
        assert_eq!(o.status.code(), Some(3), "{args:?}");
        assert_eq!(text(&o.stdout), "", "{args:?}");
        let l = one_line(&text(&o.stderr), "status without agent");
        assert!(l.contains("is 'wgroam run' running?"), "{l}");
        assert!(l.contains(&format!("{dir}/status.json")), "{l}");
    }
}

#[test]
fn status_of_a_dead_agent_exits_3() {
    let s = Scratch::new("dead");
    // A process that has exited and been reaped: its pid is free.
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    write_status(&s.0, u64::from(pid));
    let o = wgroam(&["status", "--json", "--state-dir", s.0.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(text(&o.stdout), "");
    let l = one_line(&text(&o.stderr), "dead agent");
    assert!(
        l.contains(&format!("the agent (pid {pid}) is not running")),
        "{l}"
    );
}

#[test]
fn status_of_a_damaged_file_exits_3() {
    let s = Scratch::new("damaged");
    fs::write(s.0.join("status.json"), b"{\"role\": \"hub\", \"pid\": ").unwrap();
    let o = wgroam(&["status", "--state-dir", s.0.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    let l = one_line(&text(&o.stderr), "damaged status");
    assert!(l.contains("is not valid JSON"), "{l}");
}

#[test]
fn status_json_of_a_live_agent_is_valid_json_with_role() {
    let s = Scratch::new("live");
    // This test's own process stands in for the running agent.
    let pid = u64::from(std::process::id());
    write_status(&s.0, pid);
    let dir = s.0.to_str().unwrap();

    let o = wgroam(&["status", "--json", "--state-dir", dir]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let v: serde_json::Value = serde_json::from_str(&out).expect("status --json is JSON");
    assert_eq!(v["role"], "hub");
    assert_eq!(v["pid"], pid);
    assert_eq!(
        v["interfaces"][0]["peers"][0]["endpoint"],
        "198.51.100.3:30412"
    );
    assert_eq!(one_line(&out, "json"), out.trim_end());

    let o = wgroam(&["status", "--state-dir", dir]);
    assert_eq!(o.status.code(), Some(0));
    let human = text(&o.stdout);
    assert!(
        human.starts_with(&format!("wgroam hub, pid {pid}\n")),
        "{human}"
    );
    assert!(human.contains("endpoint 198.51.100.3:30412"), "{human}");
    assert!(human.contains("ignored packets: bad_mac1 3"), "{human}");
}

#[test]
fn check_names_a_missing_wireguard_interface_and_the_fix() {
    let s = Scratch::new("check");
    let conf = s.0.join("wgroam");
    // uci and capture off: only the interface is checked.
    fs::write(
        &conf,
        "config agent 'agent'\n\toption role 'hub'\n\toption uci '0'\n\n\
         config interface 'wgrnx9'\n\toption capture '0'\n",
    )
    .unwrap();
    let o = wgroam(&["check", "--config", conf.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(
        out.starts_with(&format!("config {}: role hub\n", conf.display())),
        "{out}"
    );
    assert!(!out.contains("\nok\n"), "{out}");
    let l = one_line(&text(&o.stderr), "check");
    assert_eq!(
        l,
        "wgrnx9: WireGuard interface does not exist; create it (netifd: ifup wgrnx9) or fix wgroam.wgrnx9.ifname"
    );
}

#[test]
fn check_of_a_bad_config_exits_2() {
    let s = Scratch::new("check-bad");
    let conf = s.0.join("wgroam");
    fs::write(&conf, "config agent 'agent'\n\toption role 'hubb'\n").unwrap();
    let o = wgroam(&["check", "--config", conf.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(text(&o.stdout), "");
    assert!(
        text(&o.stderr).contains("wgroam.agent.role: 'hubb' is not valid; expected hub or roam")
    );
}

#[test]
fn join_refuses_a_bad_invite_with_one_line_and_exit_2() {
    for bad in ["hello", "wgroam1:AAAA", "-"] {
        let o = wgroam(&["join", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert_eq!(text(&o.stdout), "");
        let l = one_line(&text(&o.stderr), bad);
        assert!(l.starts_with("wgroam join: invite: "), "{l}");
    }
}

#[test]
fn check_of_a_roam_names_the_carrier_and_a_lan_without_ip6assign() {
    let Some(uci) = common::real_uci("check_of_a_roam_names_the_carrier") else {
        return;
    };
    let s = Scratch::new("check-roam");
    let conf = s.0.join("wgroam");
    let confdir = s.0.join("etc");
    let savedir = s.0.join("save");
    fs::create_dir_all(&confdir).unwrap();
    fs::write(
        &conf,
        "config agent 'agent'\n\toption role 'roam'\n\n\
         config interface 'wgrnx8'\n\toption prefix '2001:db8:100:100::/56'\n\
         \tlist downstream 'lan'\n\tlist downstream 'guest'\n",
    )
    .unwrap();
    fs::write(
        confdir.join("network"),
        "config interface 'lan'\n\toption proto 'static'\n\n\
         config interface 'wgrnx8'\n\toption proto 'wireguard'\n\n\
         config wireguard_wgrnx8 'hub'\n\toption public_key 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg='\n\
         \toption endpoint_host '198.51.100.2'\n\tlist allowed_ips '::/0'\n",
    )
    .unwrap();
    let o = Command::new(BIN)
        .args(["check", "--config", conf.to_str().unwrap()])
        .args(["--uci-confdir", confdir.to_str().unwrap()])
        .args(["--uci-savedir", savedir.to_str().unwrap()])
        .env("WGROAM_UCI_BIN", &uci)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = text(&o.stdout);
    assert!(
        out.contains("wgrnx8: the prefix rides on the netifd dynamic interface wgroam_wgrnx8 (ubus add_dynamic; nothing in uci)\n"),
        "{out}"
    );
    assert!(out.contains("wgrnx8: warning: network.lan: no ip6assign; the LAN gets no /64 of 2001:db8:100:100::/56 — uci set network.lan.ip6assign=64; uci commit network; /etc/init.d/network reload\n"), "{out}");
    assert!(
        out.contains("wgrnx8: warning: network.guest: no such interface;"),
        "{out}"
    );
    // check writes nothing to uci.
    assert!(!savedir.join("network").exists());
}
