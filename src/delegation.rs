//! Handing the routed prefix to the LAN, and taking it back.
//!
//! On OpenWrt netifd does the work: the prefix set as `ip6prefix` on the
//! WireGuard interface is delegated to every interface with `ip6assign`, and
//! odhcpd announces it; removing it deprecates the addresses (odhcpd sends
//! the old prefix with lifetime 0). The change is staged in uci's save
//! directory (RAM) and never committed: after a reboot the prefix stays
//! withdrawn until the tunnel is up again, which is what clients need.
//!
//! On plain Linux the agent adds the first address of the prefix to the LAN
//! device and runs Debian's radvd with a generated config; withdrawing
//! re-announces the prefix with lifetime 0 and the router lifetime 0.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::json;

use crate::core::roam::IpNet;
use crate::persist::write_atomic;
use crate::ubus::Ubus;
use crate::uci::{Change, UciStore};

pub trait Delegator {
    fn delegate(&mut self, prefix: IpNet) -> Result<(), String>;
    fn withdraw(&mut self, prefix: IpNet) -> Result<(), String>;
    /// Undoes everything on a clean stop.
    fn stop(&mut self) {}
}

/// OpenWrt: uci `network.<wg>.ip6prefix` + `ubus call network reload`.
pub struct UciDelegator<S: UciStore, U: Ubus> {
    pub store: S,
    pub ubus: U,
    /// The netifd interface of the tunnel (uci section), e.g. `wg0`.
    pub iface: String,
    /// Interfaces that receive /64s from the prefix (`ip6assign`).
    pub downstream: Vec<String>,
}

impl<S: UciStore, U: Ubus> UciDelegator<S, U> {
    fn reload(&self) -> Result<(), String> {
        self.ubus.call("network", "reload", None).map(drop)
    }
}

impl<S: UciStore, U: Ubus> Delegator for UciDelegator<S, U> {
    fn delegate(&mut self, prefix: IpNet) -> Result<(), String> {
        let sections = self.store.load("network").map_err(|e| e.to_string())?;
        let find = |name: &str| sections.iter().find(|s| s.name.as_deref() == Some(name));
        if find(&self.iface).is_none() {
            return Err(format!(
                "network.{}: no such interface; expected the tunnel's netifd interface",
                self.iface
            ));
        }
        let mut changes = vec![Change::set(
            "network",
            &self.iface,
            "ip6prefix",
            &prefix.to_string(),
        )];
        for d in &self.downstream {
            match find(d) {
                None => {
                    return Err(format!(
                        "network.{d}: no such interface; fix wgroam's downstream list"
                    ));
                }
                // Keep the user's own ip6assign; only add one where missing.
                Some(s) if s.get_single("ip6assign").is_none() => {
                    changes.push(Change::set("network", d, "ip6assign", "64"));
                }
                Some(_) => {}
            }
        }
        self.store.stage(&changes).map_err(|e| e.to_string())?;
        self.reload()
    }

    fn withdraw(&mut self, _prefix: IpNet) -> Result<(), String> {
        self.store
            .stage(&[Change::delete_option("network", &self.iface, "ip6prefix")])
            .map_err(|e| e.to_string())?;
        self.reload()
    }
}

/// Plain Linux: an address on the LAN device and radvd announcing the prefix.
pub struct RadvdDelegator {
    pub lan: String,
    pub radvd: PathBuf,
    pub dir: PathBuf,
    child: Option<Child>,
    address: Option<std::net::Ipv6Addr>,
}

impl RadvdDelegator {
    pub fn new(lan: &str, dir: &Path) -> Self {
        Self {
            lan: lan.to_string(),
            radvd: PathBuf::from("radvd"),
            dir: dir.to_path_buf(),
            child: None,
            address: None,
        }
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("radvd.conf")
    }

    /// Writes the config and makes radvd (re)announce it at once.
    fn announce(&mut self, text: &str) -> Result<(), String> {
        let conf = self.conf();
        write_atomic(&conf, text.as_bytes())
            .map_err(|e| format!("radvd: cannot write {}: {e}", conf.display()))?;
        if let Some(c) = &mut self.child
            && c.try_wait().ok().flatten().is_none()
        {
            // SIGHUP: re-read the config and send an RA now.
            // SAFETY: signalling our own child by its pid.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGHUP) };
            return Ok(());
        }
        let child = Command::new(&self.radvd)
            .arg("--nodaemon")
            .arg("-C")
            .arg(&conf)
            .arg("-p")
            .arg(self.dir.join("radvd.pid"))
            .arg("-m")
            .arg("logfile")
            .arg("-l")
            .arg(self.dir.join("radvd.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("radvd: cannot start {}: {e}", self.radvd.display()))?;
        self.child = Some(child);
        Ok(())
    }

    fn ip(&self, args: &[&str]) -> Result<(), String> {
        let out = Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

/// radvd's configuration for one prefix; `live` false announces it dead.
pub fn radvd_conf(lan: &str, prefix: IpNet, live: bool) -> String {
    let (valid, preferred, router) = if live { (600, 300, 1800) } else { (0, 0, 0) };
    format!(
        "# generated by wgroam; overwritten on every change\n\
         interface {lan} {{\n\
         \tAdvSendAdvert on;\n\
         \tMinRtrAdvInterval 3;\n\
         \tMaxRtrAdvInterval 10;\n\
         \tAdvDefaultLifetime {router};\n\
         \tprefix {prefix} {{\n\
         \t\tAdvOnLink on;\n\
         \t\tAdvAutonomous on;\n\
         \t\tAdvValidLifetime {valid};\n\
         \t\tAdvPreferredLifetime {preferred};\n\
         \t}};\n\
         }};\n"
    )
}

/// The router's own LAN address in a delegated /64: `prefix::1`.
pub fn router_address(prefix: IpNet) -> Option<std::net::Ipv6Addr> {
    let std::net::IpAddr::V6(a) = prefix.addr() else {
        return None;
    };
    let mut o = a.octets();
    o[15] |= 1;
    Some(o.into())
}

impl Delegator for RadvdDelegator {
    fn delegate(&mut self, prefix: IpNet) -> Result<(), String> {
        let lan_net = IpNet::truncate(prefix.addr(), 64).ok_or("prefix is not IPv6")?;
        if let Some(a) = router_address(lan_net)
            && self.address != Some(a)
        {
            let spec = format!("{a}/64");
            // `replace` is idempotent: a restart finds the address in place.
            self.ip(&["-6", "addr", "replace", &spec, "dev", &self.lan, "nodad"])?;
            self.address = Some(a);
        }
        self.announce(&radvd_conf(&self.lan, lan_net, true))
    }

    fn withdraw(&mut self, prefix: IpNet) -> Result<(), String> {
        let lan_net = IpNet::truncate(prefix.addr(), 64).ok_or("prefix is not IPv6")?;
        self.announce(&radvd_conf(&self.lan, lan_net, false))
    }

    /// radvd goes with the agent; the address stays, so clients keep
    /// working through a restart (their prefix lifetimes outlast it).
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child by its pid.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

impl Drop for RadvdDelegator {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// For `status`: what delegation looks like from the outside.
pub fn describe(kind: &str, prefix: Option<IpNet>) -> serde_json::Value {
    json!({ "via": kind, "prefix": prefix.map(|p| p.to_string()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uci::MemoryUci;
    use std::cell::RefCell;

    #[derive(Default)]
    struct Recorder(RefCell<Vec<String>>);
    impl Ubus for &Recorder {
        fn call(
            &self,
            object: &str,
            method: &str,
            _: Option<&serde_json::Value>,
        ) -> Result<serde_json::Value, String> {
            self.0.borrow_mut().push(format!("{object} {method}"));
            Ok(serde_json::Value::Null)
        }
    }

    const NETWORK: &str = "config interface 'lan'\n\toption proto 'static'\n\n\
        config interface 'guest'\n\toption proto 'static'\n\toption ip6assign '60'\n\n\
        config interface 'wg0'\n\toption proto 'wireguard'\n";

    #[test]
    fn uci_delegation_stages_prefix_keeps_user_options_and_reloads() {
        let rec = Recorder::default();
        let store = MemoryUci::new().with_package("network", NETWORK).unwrap();
        let mut d = UciDelegator {
            store,
            ubus: &rec,
            iface: "wg0".into(),
            downstream: vec!["lan".into(), "guest".into()],
        };
        let p: IpNet = "2001:db8:100:100::/56".parse().unwrap();
        let flash = d.store.committed("network");
        d.delegate(p).unwrap();
        let net = d.store.load("network").unwrap();
        let get = |s: &str, o: &str| {
            net.iter()
                .find(|x| x.name.as_deref() == Some(s))
                .and_then(|x| x.get_single(o).map(str::to_string))
        };
        assert_eq!(
            get("wg0", "ip6prefix").as_deref(),
            Some("2001:db8:100:100::/56")
        );
        assert_eq!(get("lan", "ip6assign").as_deref(), Some("64"));
        assert_eq!(
            get("guest", "ip6assign").as_deref(),
            Some("60"),
            "user's value kept"
        );
        assert_eq!(
            d.store.committed("network"),
            flash,
            "nothing committed to flash"
        );
        d.withdraw(p).unwrap();
        let net = d.store.load("network").unwrap();
        let wg = net
            .iter()
            .find(|x| x.name.as_deref() == Some("wg0"))
            .unwrap();
        assert!(wg.get("ip6prefix").is_none());
        assert_eq!(*rec.0.borrow(), vec!["network reload", "network reload"]);
    }

    #[test]
    fn unknown_downstream_is_one_clear_line_and_stages_nothing() {
        let rec = Recorder::default();
        let store = MemoryUci::new().with_package("network", NETWORK).unwrap();
        let mut d = UciDelegator {
            store,
            ubus: &rec,
            iface: "wg0".into(),
            downstream: vec!["lann".into()],
        };
        let e = d.delegate("2001:db8:1::/64".parse().unwrap()).unwrap_err();
        assert_eq!(
            e,
            "network.lann: no such interface; fix wgroam's downstream list"
        );
        assert!(d.store.pending("network").unwrap().is_empty());
        assert!(rec.0.borrow().is_empty());
    }

    #[test]
    fn radvd_config_announces_and_kills_the_prefix() {
        let p: IpNet = "2001:db8:100:1::/64".parse().unwrap();
        let live = radvd_conf("lan", p, true);
        assert!(live.contains("prefix 2001:db8:100:1::/64 {"));
        assert!(live.contains("AdvValidLifetime 600;"));
        let dead = radvd_conf("lan", p, false);
        assert!(dead.contains("AdvValidLifetime 0;") && dead.contains("AdvPreferredLifetime 0;"));
        assert!(dead.contains("AdvDefaultLifetime 0;"));
        assert_eq!(router_address(p).unwrap().to_string(), "2001:db8:100:1::1");
    }
}
