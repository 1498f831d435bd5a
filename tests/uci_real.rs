//! The uci layer against the REAL OpenWrt `uci` tool (built by
//! tests/tools/build-uci.sh into target/tools/bin/uci, or named by
//! $WGROAM_UCI_BIN). Tests that need the tool print a skip reason and return when
//! it is missing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::real_uci;
use wgroam::config::uci::syntax::{self as parse, Value};
use wgroam::os::uci::{Change, UciCli, UciStore, find_section};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch directory with a uci config and save directory, removed on drop.
struct Scratch(common::Scratch);

impl Scratch {
    fn new(name: &str) -> Self {
        let s = common::Scratch::new(&format!("uci-{name}"));
        std::fs::create_dir_all(s.path("conf")).unwrap();
        std::fs::create_dir_all(s.path("save")).unwrap();
        Scratch(s)
    }
    fn conf(&self) -> PathBuf {
        self.0.path("conf")
    }
    fn save(&self) -> PathBuf {
        self.0.path("save")
    }
    fn cli(&self, bin: &Path) -> UciCli {
        UciCli {
            bin: bin.to_path_buf(),
            confdir: Some(self.conf()),
            savedir: Some(self.save()),
        }
    }
}

/// Config files under `dir` (recursively), skipping captured ubus JSON and
/// the notes and captures next to them.
fn config_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "ubus") {
                config_files(&p, out);
            }
        } else if !p
            .extension()
            .is_some_and(|e| e == "md" || e == "txt" || e == "json")
        {
            // Notes and captures (netifd-delegation/) are not uci files.
            out.push(p);
        }
    }
}

fn fixtures() -> Vec<PathBuf> {
    let mut v = Vec::new();
    config_files(&manifest_dir().join("tests/fixtures/uci"), &mut v);
    assert!(v.len() >= 19, "fixtures missing: {v:?}");
    v
}

fn run_uci(bin: &Path, s: &Scratch, args: &[&str]) -> String {
    let out = Command::new(bin)
        .arg("-c")
        .arg(s.conf())
        .arg("-t")
        .arg(s.save())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "uci {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

/// Fixtures the real uci rejects too, with the line it stops at: this one has
/// documentation prose pasted after the config.
const INVALID_FIXTURES: &[(&str, usize)] =
    &[("network.vxlan-over-wireguard-netjsonconfig-doc", 31)];

fn expected_failure(f: &Path) -> Option<usize> {
    let name = f.file_name()?.to_str()?;
    INVALID_FIXTURES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, l)| *l)
}

#[test]
fn parses_every_fixture_including_shared() {
    let mut files = fixtures();
    let shared = manifest_dir().join("../shared/openwrt-fixtures");
    if shared.is_dir() {
        config_files(&shared, &mut files);
    } else {
        eprintln!(
            "note: {} absent, checking the copied fixtures only",
            shared.display()
        );
    }
    for f in &files {
        let label = f.display().to_string();
        let result = parse::parse_config(&label, &read(f));
        match expected_failure(f) {
            None => {
                let sections = result.unwrap_or_else(|e| panic!("{e}"));
                assert!(!sections.is_empty(), "{label}: no sections");
            }
            Some(line) => {
                let e = result.expect_err(&label);
                assert_eq!(e.line, line, "{e}");
                assert_eq!(
                    e.to_string(),
                    format!(
                        "{label}:{line}: invalid command 'All'; expected 'config', 'option', 'list', 'package' or a '#' comment"
                    )
                );
            }
        }
    }
}

#[test]
fn parse_agrees_with_real_uci_show_and_export() {
    let Some(bin) = real_uci("parse_agrees_with_real_uci_show_and_export") else {
        return;
    };
    let mut compared = 0;
    for f in fixtures() {
        let s = Scratch::new("show");
        std::fs::copy(&f, s.conf().join("fx")).unwrap();
        let mine = parse::parse_config("fx", &read(&f));
        let out = Command::new(&bin)
            .arg("-c")
            .arg(s.conf())
            .arg("-t")
            .arg(s.save())
            .args(["show", "fx"])
            .output()
            .unwrap();
        if !out.status.success() {
            // Both reject the file, at the same line.
            let err = String::from_utf8_lossy(&out.stderr);
            let e = mine.expect_err(&format!("{}: real uci rejects it: {err}", f.display()));
            assert!(
                err.contains(&format!(" at line {},", e.line)),
                "{}: uci says {err}, we say {e}",
                f.display()
            );
            continue;
        }
        let mine = mine.unwrap_or_else(|e| panic!("{e}"));
        let shown = String::from_utf8(out.stdout).unwrap();
        assert_eq!(parse::render_show("fx", &mine), shown, "{}", f.display());
        // The show parser reads the real output back to the same sections (a
        // one-element list prints like a plain option).
        let from_show = parse::sections_from_show(&parse::parse_show("show", &shown).unwrap());
        let flatten = |v: &Value| v.values().into_iter().map(String::from).collect::<Vec<_>>();
        assert_eq!(from_show.len(), mine.len(), "{}", f.display());
        for (a, b) in from_show.iter().zip(&mine) {
            assert_eq!((&a.stype, &a.name, a.index), (&b.stype, &b.name, b.index));
            let a: Vec<_> = a
                .options
                .iter()
                .map(|(n, v)| (n.clone(), flatten(v)))
                .collect();
            let b: Vec<_> = b
                .options
                .iter()
                .map(|(n, v)| (n.clone(), flatten(v)))
                .collect();
            assert_eq!(a, b, "{}", f.display());
        }
        // `uci export` keeps lists and options apart: exact equality.
        let exported = run_uci(&bin, &s, &["export", "fx"]);
        assert_eq!(
            parse::parse_config("export", &exported).unwrap(),
            mine,
            "{}",
            f.display()
        );
        compared += 1;
    }
    assert!(compared >= 18, "only {compared} fixtures compared");
}

fn router(bin: &Path, name: &str) -> (Scratch, UciCli) {
    let s = Scratch::new(name);
    std::fs::copy(
        manifest_dir().join("tests/fixtures/uci/netns-router/network"),
        s.conf().join("network"),
    )
    .unwrap();
    let cli = s.cli(bin);
    (s, cli)
}

fn endpoint(section: &str, host: &str, port: &str) -> Vec<Change> {
    vec![
        Change::set("network", section, "endpoint_host", host),
        Change::set("network", section, "endpoint_port", port),
    ]
}

#[test]
fn stage_load_commit_cycle() {
    let Some(bin) = real_uci("stage_load_commit_cycle") else {
        return;
    };
    let (s, uci) = router(&bin, "cycle");
    let file = s.conf().join("network");
    let original = read(&file);

    uci.stage(&endpoint("roamer", "203.0.113.9", "40001"))
        .unwrap();
    // (a) the config file is untouched; the changes sit in the save directory.
    assert_eq!(read(&file), original);
    let delta = read(&s.save().join("network"));
    assert!(
        delta.contains("network.roamer.endpoint_host='203.0.113.9'"),
        "{delta}"
    );
    assert!(
        delta.contains("network.roamer.endpoint_port='40001'"),
        "{delta}"
    );
    assert_eq!(
        uci.pending("network").unwrap(),
        [
            "network.roamer.endpoint_host='203.0.113.9'",
            "network.roamer.endpoint_port='40001'"
        ]
    );
    // (b) load sees the staged values on top of the file.
    let view = uci.load("network").unwrap();
    let roamer = find_section(&view, "roamer").unwrap();
    assert_eq!(roamer.get_single("endpoint_host"), Some("203.0.113.9"));
    assert_eq!(roamer.get_single("endpoint_port"), Some("40001"));
    assert_eq!(
        roamer.get_single("public_key"),
        Some("92HAGP8DDCzYOI8r5hS3OdjzKz6+OoFSxkezNnUfaW4=")
    );
    let hub = find_section(&view, "hub").unwrap();
    assert_eq!(hub.get_single("endpoint_host"), Some("198.51.100.10"));

    // (c) commit writes the file and empties the save directory.
    uci.commit("network").unwrap();
    let committed = parse::parse_config("network", &read(&file)).unwrap();
    let roamer = find_section(&committed, "roamer").unwrap();
    assert_eq!(roamer.get_single("endpoint_host"), Some("203.0.113.9"));
    assert_eq!(roamer.get_single("endpoint_port"), Some("40001"));
    assert!(uci.pending("network").unwrap().is_empty());
    let left = std::fs::read(s.save().join("network")).unwrap_or_default();
    assert!(
        left.is_empty(),
        "save dir still holds {:?}",
        String::from_utf8_lossy(&left)
    );
    // Everything else in the file survived the commit.
    let before = parse::parse_config("network", &original).unwrap();
    assert_eq!(committed.len(), before.len());
    assert_eq!(
        find_section(&committed, "wg0"),
        find_section(&before, "wg0")
    );
    assert_eq!(
        find_section(&committed, "hub"),
        find_section(&before, "hub")
    );
}

#[test]
fn awkward_values_round_trip() {
    let Some(bin) = real_uci("awkward_values_round_trip") else {
        return;
    };
    let (s, uci) = router(&bin, "quotes");
    // (d) quotes, spaces and characters that mean something to uci's parser.
    let nasty = "it's a \"quoted\" value; # not a comment \\ 'twice'  ";
    let multi = "line one\nline two";
    let list = ["2001:db8:100::2/128", "it's", "a b"];
    uci.stage(&[
        Change::set("network", "hub", "description", nasty),
        Change::set("network", "hub", "note", multi),
        Change::set_list("network", "hub", "allowed_ips", &list),
    ])
    .unwrap();
    let check = |sections: &[parse::Section]| {
        let hub = find_section(sections, "hub").unwrap();
        assert_eq!(hub.get_single("description"), Some(nasty));
        assert_eq!(hub.get_single("note"), Some(multi));
        assert_eq!(
            hub.get("allowed_ips"),
            Some(&Value::List(list.iter().map(|s| s.to_string()).collect()))
        );
    };
    check(&uci.load("network").unwrap());
    assert_eq!(
        run_uci(&bin, &s, &["get", "network.hub.description"]),
        format!("{nasty}\n")
    );
    let pending = uci.pending("network").unwrap();
    assert!(
        pending.contains(&"network.hub.note='line one\nline two'".to_string()),
        "{pending:?}"
    );
    uci.commit("network").unwrap();
    check(&parse::parse_config("network", &read(&s.conf().join("network"))).unwrap());
}

#[test]
fn staging_the_same_values_twice_adds_no_change_lines() {
    let Some(bin) = real_uci("staging_the_same_values_twice_adds_no_change_lines") else {
        return;
    };
    let (s, uci) = router(&bin, "twice");
    // (e)
    let mut changes = endpoint("roamer", "203.0.113.9", "40001");
    changes.push(Change::set_list(
        "network",
        "roamer",
        "allowed_ips",
        &["2001:db8:100::2/128", "2001:db8:100:1::/64"],
    ));
    uci.stage(&changes).unwrap();
    let first = uci.pending("network").unwrap();
    let delta = read(&s.save().join("network"));
    assert_eq!(first.len(), 5, "{first:?}");
    uci.stage(&changes).unwrap();
    assert_eq!(uci.pending("network").unwrap(), first);
    assert_eq!(read(&s.save().join("network")), delta);
    // A value already committed is not staged at all.
    let s2 = Scratch::new("twice-committed");
    std::fs::copy(s.conf().join("network"), s2.conf().join("network")).unwrap();
    let uci2 = s2.cli(&bin);
    uci2.stage(&endpoint("hub", "198.51.100.10", "51820"))
        .unwrap();
    assert!(uci2.pending("network").unwrap().is_empty());
}

#[test]
fn failing_stage_reports_and_changes_nothing() {
    let Some(bin) = real_uci("failing_stage_reports_and_changes_nothing") else {
        return;
    };
    let (s, uci) = router(&bin, "fail");
    let file = s.conf().join("network");
    let original = read(&file);
    // (f) a missing section: one-line error naming section and package; the valid
    // change before it is not staged either.
    let mut changes = endpoint("roamer", "203.0.113.9", "40001");
    changes.push(Change::set(
        "network",
        "nosuch",
        "endpoint_host",
        "203.0.113.1",
    ));
    let e = uci.stage(&changes).unwrap_err().to_string();
    assert!(
        e.contains("section 'nosuch' does not exist in package 'network'"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
    assert!(uci.pending("network").unwrap().is_empty());
    assert_eq!(read(&file), original);

    // The tool itself failing mid-batch (here: a wrapper that lets the real uci
    // stage everything, then reports an error) is rolled back as well.
    uci.stage(&endpoint("hub", "198.51.100.77", "51820"))
        .unwrap();
    let staged_before = read(&s.save().join("network"));
    let wrapper = s.0.path("uci-failing-batch");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n'{}' \"$@\"\nrc=$?\nfor a in \"$@\"; do\n  if [ \"$a\" = batch ]; then echo 'uci: simulated failure' >&2; exit 1; fi\ndone\nexit $rc\n",
            bin.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let failing = s.cli(&wrapper);
    let e = failing
        .stage(&endpoint("roamer", "203.0.113.9", "40001"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(" batch (package network) failed: uci: simulated failure; nothing staged"),
        "{e}"
    );
    assert!(e.contains(&format!("-c {}", s.conf().display())), "{e}");
    assert_eq!(read(&s.save().join("network")), staged_before);
    assert_eq!(
        uci.pending("network").unwrap().len(),
        1,
        "only the earlier hub change"
    );
    assert_eq!(read(&file), original);

    // A commit of a package that does not exist names command and package.
    let e = uci.commit("nosuchpkg").unwrap_err().to_string();
    assert!(
        e.contains("commit nosuchpkg (package nosuchpkg) failed: "),
        "{e}"
    );
}

#[test]
fn addressing_a_peer_by_type_and_index() {
    let Some(bin) = real_uci("addressing_a_peer_by_type_and_index") else {
        return;
    };
    let (s, uci) = router(&bin, "index");
    // (g) @wireguard_wg0[1] is the second peer, 'roamer'.
    let view = uci.load("network").unwrap();
    assert_eq!(
        find_section(&view, "@wireguard_wg0[1]")
            .unwrap()
            .name
            .as_deref(),
        Some("roamer")
    );
    uci.stage(&endpoint("@wireguard_wg0[1]", "203.0.113.9", "40001"))
        .unwrap();
    let view = uci.load("network").unwrap();
    let roamer = find_section(&view, "roamer").unwrap();
    assert_eq!(roamer.get_single("endpoint_port"), Some("40001"));
    assert_eq!(
        find_section(&view, "hub")
            .unwrap()
            .get_single("endpoint_port"),
        Some("51820")
    );
    assert_eq!(
        run_uci(
            &bin,
            &s,
            &["get", "network.@wireguard_wg0[-1].endpoint_host"]
        ),
        "203.0.113.9\n"
    );
    // Staging the same through the name is a no-op.
    let before = uci.pending("network").unwrap();
    uci.stage(&endpoint("roamer", "203.0.113.9", "40001"))
        .unwrap();
    assert_eq!(uci.pending("network").unwrap(), before);
    // Out of range: clear error, nothing staged.
    let e = uci
        .stage(&endpoint("@wireguard_wg0[2]", "203.0.113.9", "1"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("section '@wireguard_wg0[2]' does not exist"),
        "{e}"
    );
    assert_eq!(uci.pending("network").unwrap(), before);
}

#[test]
fn creates_a_missing_save_directory() {
    let Some(bin) = real_uci("creates_a_missing_save_directory") else {
        return;
    };
    let (s, mut uci) = router(&bin, "savedir");
    let deep = s.0.path("run/wgroam/uci");
    uci.savedir = Some(deep.clone());
    uci.stage(&endpoint("roamer", "203.0.113.9", "40001"))
        .unwrap();
    assert!(read(&deep.join("network")).contains("endpoint_port='40001'"));
}

#[test]
fn add_and_delete_sections_through_the_real_tool() {
    let Some(bin) = real_uci("add_and_delete_sections_through_the_real_tool") else {
        return;
    };
    let (_s, uci) = router(&bin, "sections");
    uci.stage(&[
        Change::add_section("network", "peer3", "wireguard_wg0"),
        Change::set("network", "peer3", "public_key", "k3"),
        Change::delete_option("network", "hub", "description"),
        Change::delete_section("network", "roamer"),
    ])
    .unwrap();
    let view = uci.load("network").unwrap();
    assert!(find_section(&view, "roamer").is_none());
    assert_eq!(
        find_section(&view, "@wireguard_wg0[1]")
            .unwrap()
            .name
            .as_deref(),
        Some("peer3")
    );
    assert_eq!(find_section(&view, "hub").unwrap().get("description"), None);
    uci.commit("network").unwrap();
    assert_eq!(uci.load("network").unwrap(), view);
}

#[test]
fn an_ip6prefix_an_older_wgroam_staged_is_reverted_at_start_and_nothing_else() {
    use wgroam::roam::delegation::{Delegator, NetifdDelegator, SysLinks};
    let Some(bin) = real_uci("an_ip6prefix_an_older_wgroam_staged_is_reverted_at_start") else {
        return;
    };
    let (s, uci) = router(&bin, "revert-ip6prefix");
    let file = s.conf().join("network");
    let original = read(&file);
    // What the uci-based delegation of older versions left behind after a
    // few cycles (fixtures README section 4), plus a change of the user's.
    let set = Change::set("network", "wg0", "ip6prefix", "2001:db8:100:100::/56");
    uci.stage(std::slice::from_ref(&set)).unwrap();
    uci.stage(&[Change::delete_option("network", "wg0", "ip6prefix")])
        .unwrap();
    uci.stage(&[set]).unwrap();
    uci.stage(&[Change::set("network", "lan", "ip6hint", "10")])
        .unwrap();
    assert_eq!(uci.pending("network").unwrap().len(), 4);
    let mut d = NetifdDelegator {
        // start() must not call ubus at all.
        ubus: wgroam::os::ubus::UbusCli {
            bin: PathBuf::from("/nonexistent/ubus"),
        },
        uci: uci.clone(),
        links: SysLinks,
        iface: "wg0".into(),
        device: "wg0".into(),
        downstream: vec!["lan".into()],
    };
    let did = d.start().unwrap();
    assert!(did.unwrap().contains("network.wg0.ip6prefix"));
    assert_eq!(
        run_uci(&bin, &s, &["changes", "network"]).trim(),
        "network.lan.ip6hint='10'",
        "only the old ip6prefix reverted"
    );
    assert_eq!(d.start().unwrap(), None, "a second start finds nothing");
    assert_eq!(read(&file), original, "flash untouched");
    // A committed ip6prefix (the user's own, static setup) is left alone.
    run_uci(&bin, &s, &["revert", "network"]);
    run_uci(&bin, &s, &["set", "network.wg0.ip6prefix=2001:db8:5::/48"]);
    run_uci(&bin, &s, &["commit", "network"]);
    let committed = read(&file);
    assert_eq!(d.start().unwrap(), None);
    assert_eq!(read(&file), committed);
    assert_eq!(
        run_uci(&bin, &s, &["get", "network.wg0.ip6prefix"]).trim(),
        "2001:db8:5::/48"
    );
}
