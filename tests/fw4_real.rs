//! The hub's `relay 'fw4'` against the REAL OpenWrt `uci` tool, on OpenWrt's
//! default fw4 firewall config (tests/fixtures/uci/openwrt-defaults/
//! firewall.fw4-default): the zone `wgroam` and its forwardings to and from
//! `wan` are created, committed and `fw4 reload`ed once; a restarted agent
//! (a new [`Fw4Sync`]) writes nothing; a changed interface list is
//! corrected; switching relay off removes exactly wgroam's sections; the
//! user's own sections and staged-but-uncommitted changes are never touched.
//! `fw4` is a recorder script (there is no fw4 here); what it would load is
//! the committed /etc/config/firewall this test reads back.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

mod common;

use common::{Scratch, real_uci};
use wgroam::config::uci::syntax::{Section, Value, parse_config};
use wgroam::config::{Config, from_sections};
use wgroam::hub::relay::Fw4Sync;
use wgroam::os::uci::{UciCli, UciStore};

const FIXTURE: &str = "tests/fixtures/uci/openwrt-defaults/firewall.fw4-default";

fn cfg(state_dir: &Path, ifaces: &[(&str, &str)]) -> Config {
    let mut text = format!(
        "config agent 'agent'\n\toption role 'hub'\n\toption state_dir '{}'\n",
        state_dir.display()
    );
    for (name, relay) in ifaces {
        text.push_str(&format!(
            "\nconfig interface '{name}'\n\toption relay '{relay}'\n\toption wan 'eth1'\n"
        ));
    }
    from_sections(&parse_config("test", &text).unwrap()).unwrap()
}

struct Rig {
    uci: PathBuf,
    conf: PathBuf,
    reloads: Rc<RefCell<u32>>,
}

impl Rig {
    fn new(s: &Scratch, uci: PathBuf) -> Self {
        let conf = s.path("conf");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::copy(FIXTURE, conf.join("firewall")).unwrap();
        Rig {
            uci,
            conf,
            reloads: Rc::new(RefCell::new(0)),
        }
    }

    /// A new Fw4Sync, as a (re)started agent has: real uci on the scratch
    /// config directory, its own save directory under the state dir.
    fn agent(&self) -> Fw4Sync {
        let (bin, conf) = (self.uci.clone(), self.conf.clone());
        let reloads = self.reloads.clone();
        Fw4Sync::new(
            Box::new(move |c: &Config| {
                let save = c.state_dir.join("uci-firewall");
                std::fs::create_dir_all(&save)?;
                Ok(Box::new(UciCli {
                    bin: bin.clone(),
                    confdir: Some(conf.clone()),
                    savedir: Some(save),
                }) as Box<dyn UciStore>)
            }),
            Box::new(move || {
                *reloads.borrow_mut() += 1;
                Ok(())
            }),
        )
    }

    /// The committed firewall config, as uci (and so fw4) reads it.
    fn committed(&self, s: &Scratch) -> Vec<Section> {
        let empty = s.path("empty-save");
        std::fs::create_dir_all(&empty).unwrap();
        UciCli {
            bin: self.uci.clone(),
            confdir: Some(self.conf.clone()),
            savedir: Some(empty),
        }
        .load("firewall")
        .unwrap()
    }

    fn reloads(&self) -> u32 {
        *self.reloads.borrow()
    }
}

fn named<'a>(secs: &'a [Section], name: &str) -> Option<&'a Section> {
    secs.iter().find(|s| s.name.as_deref() == Some(name))
}

fn single(s: &Section, opt: &str) -> String {
    s.get_single(opt).unwrap_or("").to_string()
}

/// The user's own sections: everything but wgroam's, in order.
fn foreign(secs: &[Section]) -> Vec<Section> {
    secs.iter()
        .filter(|s| !s.name.as_deref().is_some_and(|n| n.starts_with("wgroam")))
        .cloned()
        .collect()
}

#[test]
fn fw4_zone_is_created_once_kept_over_restarts_corrected_and_removed() {
    let Some(uci) = real_uci("fw4_zone_is_created_once_kept_over_restarts_corrected_and_removed")
    else {
        return;
    };
    let s = Scratch::new("fw4-real");
    let rig = Rig::new(&s, uci);
    let state = s.path("state");
    let before = rig.committed(&s);

    // Start: zone wgroam with wg0, forwardings both ways, one reload.
    let c = cfg(&state, &[("wg0", "fw4")]);
    let mut agent = rig.agent();
    assert!(agent.sync(0, &c), "the first sync must change the firewall");
    assert_eq!(rig.reloads(), 1);
    let fw = rig.committed(&s);
    let zone = named(&fw, "wgroam").expect("zone section committed");
    assert_eq!(zone.stype, "zone");
    assert_eq!(single(zone, "name"), "wgroam");
    assert_eq!(zone.get("network"), Some(&Value::List(vec!["wg0".into()])));
    assert_eq!(single(zone, "input"), "ACCEPT");
    assert_eq!(single(zone, "forward"), "REJECT");
    for (name, src, dest) in [
        ("wgroam_wan_out", "wgroam", "wan"),
        ("wgroam_wan_in", "wan", "wgroam"),
    ] {
        let f = named(&fw, name).unwrap_or_else(|| panic!("{name} committed"));
        assert_eq!(
            (f.stype.as_str(), single(f, "src"), single(f, "dest")),
            ("forwarding", src.into(), dest.into())
        );
    }
    assert_eq!(
        foreign(&fw),
        before,
        "the default zones, rules and forwardings are untouched"
    );
    let file = std::fs::read_to_string(rig.conf.join("firewall")).unwrap();
    assert!(file.contains("config zone 'wgroam'"), "{file}");

    // The same agent again, and a restarted agent: nothing written.
    let mtime = std::fs::metadata(rig.conf.join("firewall"))
        .unwrap()
        .modified()
        .unwrap();
    assert!(!agent.sync(1_000, &c));
    let mut restarted = rig.agent();
    assert!(
        !restarted.sync(0, &c),
        "a restart must not write the firewall again"
    );
    assert_eq!(rig.reloads(), 1, "no fw4 reload without a change");
    assert_eq!(
        std::fs::metadata(rig.conf.join("firewall"))
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );

    // Somebody edits the zone (and stages an unrelated change, uncommitted,
    // in uci's own save directory): the zone is corrected, their staged
    // change stays uncommitted.
    let user_save = s.path("user-save");
    std::fs::create_dir_all(&user_save).unwrap();
    let user = UciCli {
        bin: rig.uci.clone(),
        confdir: Some(rig.conf.clone()),
        savedir: Some(user_save.clone()),
    };
    let run = |args: &[&str]| {
        let st = std::process::Command::new(&rig.uci)
            .arg("-c")
            .arg(&rig.conf)
            .arg("-t")
            .arg(&user_save)
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "uci {args:?}");
    };
    run(&["set", "firewall.wgroam.forward=ACCEPT"]);
    run(&["commit", "firewall"]);
    run(&["set", "firewall.@zone[0].input=REJECT"]);
    let c2 = cfg(&state, &[("wg0", "fw4"), ("wg1", "fw4"), ("wg2", "nft")]);
    let mut again = rig.agent();
    assert!(again.sync(0, &c2));
    assert_eq!(rig.reloads(), 2);
    let fw = rig.committed(&s);
    let zone = named(&fw, "wgroam").unwrap();
    assert_eq!(single(zone, "forward"), "REJECT", "corrected");
    assert_eq!(
        zone.get("network"),
        Some(&Value::List(vec!["wg0".into(), "wg1".into()]))
    );
    assert_eq!(
        single(&fw[1], "input"),
        "ACCEPT",
        "the lan zone's committed input is what it was"
    );
    assert_eq!(
        user.pending("firewall").unwrap().len(),
        1,
        "the user's staged change is still only staged"
    );

    // relay switched off everywhere: exactly wgroam's sections go.
    let off = cfg(&state, &[("wg0", "off")]);
    assert!(rig.agent().sync(0, &off));
    assert_eq!(rig.reloads(), 3);
    let fw = rig.committed(&s);
    assert!(
        fw.iter()
            .all(|x| !x.name.as_deref().is_some_and(|n| n.starts_with("wgroam")))
    );
    assert_eq!(foreign(&fw), before);
    assert!(!rig.agent().sync(0, &off), "nothing left to remove");
    assert_eq!(rig.reloads(), 3);
}

#[test]
fn no_firewall_config_and_no_fw4_interface_is_quiet() {
    let Some(uci) = real_uci("no_firewall_config_and_no_fw4_interface_is_quiet") else {
        return;
    };
    let s = Scratch::new("fw4-none");
    let rig = Rig::new(&s, uci);
    std::fs::remove_file(rig.conf.join("firewall")).unwrap();
    let c = cfg(&s.path("state"), &[("wg0", "nft")]);
    let mut agent = rig.agent();
    assert!(!agent.sync(0, &c));
    assert_eq!(rig.reloads(), 0);
    assert_eq!(agent.networks(), Some(&[][..]));
    assert!(!rig.conf.join("firewall").exists(), "nothing created");
}
