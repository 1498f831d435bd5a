//! `wgroam check`: validate `/etc/config/wgroam` against itself and the
//! `network` config without starting anything; one line per problem.

use std::path::PathBuf;

use super::{config_path, network, print_problems, uci_for};
use crate::app::cli::Check;
use crate::config::{self, Config, Role};
use crate::hub::runtime::NetworkConfig;
use crate::os::uci::UciCli;
use crate::os::wg::{System, WireGuard};

fn check_hub(problems: &mut Vec<String>, i: &config::Interface, net: Option<&dyn NetworkConfig>) {
    if let Some(n) = net {
        match n.peers(&i.name) {
            Ok(peers) => {
                for p in peers {
                    println!(
                        "{}: would follow peer {} and stage network.{}.endpoint_host/endpoint_port",
                        i.ifname,
                        p.key.short(),
                        p.section
                    );
                }
            }
            Err(e) => problems.push(e),
        }
    }
    if let Some(p) = i.pair {
        println!(
            "{}: would hand out /{} prefixes of {} to paired travel routers (redeem on UDP {})",
            i.ifname, p.size, p.pool, p.redeem_port
        );
    }
    if i.capture {
        match crate::hub::capture::probe(i.capture_device.as_deref()) {
            Ok(()) => println!(
                "{}: would capture handshakes on {}",
                i.ifname,
                i.capture_device.as_deref().unwrap_or("all devices")
            ),
            Err(e) => problems.push(format!(
                "{}: packet capture not permitted ({e}); run as root or set wgroam.{}.capture '0'",
                i.ifname, i.name
            )),
        }
    }
}

fn check_roam(
    problems: &mut Vec<String>,
    cfg: &Config,
    i: &config::Interface,
    uci: &UciCli,
    view: Option<&crate::os::wg::DeviceView>,
) {
    use crate::os::uci::UciStore;
    let network = if cfg.uci {
        match uci.load("network") {
            Ok(n) => n,
            Err(e) => {
                problems.push(e.to_string());
                return;
            }
        }
    } else {
        Vec::new()
    };
    let kernel: Vec<_> = view
        .map(|v| v.peers.iter().map(|p| (p.key, p.endpoint)).collect())
        .unwrap_or_default();
    match crate::config::roam_setup::roam_config(i, &network, &kernel) {
        Ok(rc) => {
            println!("{}: hub peer {}", i.ifname, rc.hub_key.short());
            for r in crate::core::roam::Roam::new(rc.clone(), 0)
                .map(|r| r.desired_routes())
                .unwrap_or_default()
            {
                println!("{}: would keep route {r}", i.ifname);
            }
            match rc.hub_tunnel_addr {
                Some(a) if rc.heartbeat_interval_s > 0 => println!(
                    "{}: would send a heartbeat to {a} every {} s",
                    i.ifname, rc.heartbeat_interval_s
                ),
                _ => println!("{}: no heartbeat (set hub_tunnel_addr)", i.ifname),
            }
            if let Some(p) = rc.prefix {
                println!(
                    "{}: would delegate {p} to {} and withdraw it after {} s without the hub",
                    i.ifname,
                    i.roam.downstream.join(", "),
                    rc.grace_s
                );
                let netifd =
                    cfg.uci && matches!(i.roam.delegate, None | Some(config::DelegateVia::Uci));
                if netifd {
                    println!(
                        "{}: the prefix rides on the netifd dynamic interface {} (ubus add_dynamic; nothing in uci)",
                        i.ifname,
                        crate::roam::delegation::carrier_name(&i.name)
                    );
                    // What netifd needs to hand it on; not fatal here (the
                    // network config may change), `status` shows it live.
                    for d in &i.roam.downstream {
                        match network.iter().find(|s| s.name.as_deref() == Some(d)) {
                            None => println!(
                                "{}: warning: network.{d}: no such interface; nothing gets a /64 of {p} there — fix wgroam's downstream list or add the interface",
                                i.ifname
                            ),
                            Some(s) if s.get_single("ip6assign").is_none() => println!(
                                "{}: warning: network.{d}: no ip6assign; the LAN gets no /64 of {p} — uci set network.{d}.ip6assign=64; uci commit network; /etc/init.d/network reload",
                                i.ifname
                            ),
                            Some(_) => {}
                        }
                    }
                }
            }
        }
        Err(e) => problems.push(e),
    }
    if let Err(e) = crate::os::rtnl::Rtnl::open() {
        problems.push(format!("rtnetlink: {e}; run as root"));
    }
}

pub fn check(c: &Check, confdir: &Option<PathBuf>, savedir: &Option<PathBuf>) -> i32 {
    let path = config_path(&c.config);
    let cfg = match config::load(&path) {
        Ok(c) => c,
        Err(p) => {
            print_problems(&p);
            return 2;
        }
    };
    let uci = uci_for(
        &c.uci_confdir.clone().or(confdir.clone()),
        &c.uci_savedir.clone().or(savedir.clone()),
    );
    let mut problems = Vec::new();
    println!("config {}: role {}", path.display(), cfg.role.as_str());
    let net = network(&cfg, uci.clone());
    for i in &cfg.interfaces {
        let view = match System.read(&i.ifname, i.backend) {
            Ok(Some(v)) => {
                println!(
                    "{}: {} backend, listen port {}, {} peers",
                    i.ifname,
                    v.backend,
                    v.listen_port.map_or("-".into(), |p| p.to_string()),
                    v.peers.len()
                );
                Some(v)
            }
            Ok(None) => {
                problems.push(format!(
                    "{}: WireGuard interface does not exist; create it (netifd: ifup {}) or fix wgroam.{}.ifname",
                    i.ifname, i.name, i.name
                ));
                None
            }
            Err(e) => {
                problems.push(format!(
                    "{}: cannot read WireGuard state ({e}); run as root",
                    i.ifname
                ));
                None
            }
        };
        match cfg.role {
            Role::Hub => check_hub(&mut problems, i, net.as_deref()),
            Role::Roam => check_roam(&mut problems, &cfg, i, &uci, view.as_ref()),
        }
    }
    for p in &problems {
        eprintln!("{p}");
    }
    if problems.is_empty() {
        println!("ok");
        0
    } else {
        1
    }
}
