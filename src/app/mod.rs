//! What each command does, wired to the real adapters. `main.rs` only calls
//! [`main`].

pub mod cli;
pub mod invite;
pub mod join;
pub mod qr;

use std::path::{Path, PathBuf};

use crate::app::cli::{Args, Check, Cmd, Run, Status};
use crate::config::{self, Config, Role};
use crate::core::Level;
use crate::driver::{self, SystemWake};
use crate::hub::network::UciNetwork;
use crate::hub::runtime::{HubRuntime, NetworkConfig};
use crate::os::signals::{self, Signals};
use crate::os::syslog;
use crate::os::uci::UciCli;
use crate::os::wg::{System, WireGuard};
use crate::roam::runtime::RoamRuntime;

/// Exit codes: 0 fine, 1 runtime failure, 2 bad config or usage, 3 not running.
pub fn main() -> i32 {
    let args: Args = parse_args();
    if args.version {
        println!("wgroam {}", env!("WGROAM_PKG_VERSION"));
        return 0;
    }
    let Some(cmd) = args.cmd else {
        eprintln!(
            "wgroam: no command; expected run, status, check, invite or join (see wgroam --help)"
        );
        return 2;
    };
    match cmd {
        Cmd::Run(r) => run(&r, &args.uci_confdir, &args.uci_savedir),
        Cmd::Status(s) => status(&s),
        Cmd::Check(c) => check(&c, &args.uci_confdir, &args.uci_savedir),
        Cmd::Invite(i) => {
            crate::app::invite::invite(&i, uci_for(&args.uci_confdir, &args.uci_savedir))
        }
        Cmd::Join(j) => crate::app::join::join(&j, uci_for(&args.uci_confdir, &args.uci_savedir)),
    }
}

/// `argh::from_env`, except that `join -` (the invite from stdin) gets
/// through: argh takes a lone `-` for an unknown option.
fn parse_args() -> Args {
    let raw: Vec<String> = crate::app::join::stdin_arg(std::env::args().collect());
    let strs: Vec<&str> = raw.iter().map(String::as_str).collect();
    let (cmd, rest) = strs
        .split_first()
        .map_or(("wgroam", &[][..]), |(c, r)| (*c, r));
    let name = std::path::Path::new(cmd)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(cmd);
    match <Args as argh::FromArgs>::from_args(&[name], rest) {
        Ok(a) => a,
        Err(argh::EarlyExit { output, status }) => {
            if status.is_ok() {
                println!("{output}");
                std::process::exit(0);
            }
            eprintln!("{output}\nRun {name} --help for more information.");
            std::process::exit(1);
        }
    }
}

fn config_path(p: &Option<PathBuf>) -> PathBuf {
    p.clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH))
}

fn print_problems(problems: &[config::Problem]) {
    for p in problems {
        eprintln!("{p}");
    }
}

fn uci_for(confdir: &Option<PathBuf>, savedir: &Option<PathBuf>) -> UciCli {
    UciCli::from_env().with_dirs(confdir.clone(), savedir.clone())
}

fn network(cfg: &Config, uci: UciCli) -> Option<Box<dyn NetworkConfig>> {
    cfg.uci
        .then(|| Box::new(UciNetwork::new(uci)) as Box<dyn NetworkConfig>)
}

fn run(r: &Run, confdir: &Option<PathBuf>, savedir: &Option<PathBuf>) -> i32 {
    let path = config_path(&r.config);
    let state_dir = r.state_dir.clone();
    let load = |path: &Path| -> Result<Config, Vec<config::Problem>> {
        let mut cfg = config::load(path)?;
        if let Some(d) = &state_dir {
            cfg.state_dir = d.clone();
        }
        Ok(cfg)
    };
    let cfg = match load(&path) {
        Ok(c) => c,
        Err(p) => {
            print_problems(&p);
            return 2;
        }
    };
    syslog::init(cfg.log_level, r.stderr);
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wgroam: cannot install signal handlers: {e}");
            return 1;
        }
    };
    let uci = uci_for(
        &r.uci_confdir.clone().or(confdir.clone()),
        &r.uci_savedir.clone().or(savedir.clone()),
    );
    let reload = || {
        load(&path).map_err(|p| {
            p.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })
    };
    let mut wake = SystemWake { signals: &signals };
    let result = match cfg.role {
        Role::Hub => {
            let net = network(&cfg, uci.clone());
            // The redeem listener opens a socket per interface with a pool
            // (none without); SIGHUP re-opens it for the new config.
            let mut rt = HubRuntime::new(cfg, System, net, signals::now()).with_pairing(uci);
            driver::run(&mut rt, &mut wake, &reload)
        }
        Role::Roam => RoamRuntime::new(cfg, System, uci, signals::now())
            .and_then(|mut rt| driver::run(&mut rt, &mut wake, &reload)),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            syslog::emit(Level::Error, &e);
            eprintln!("wgroam: {e}");
            1
        }
    }
}

fn status(s: &Status) -> i32 {
    let dir = match (&s.state_dir, &s.config) {
        (Some(d), _) => d.clone(),
        (None, Some(c)) => match config::load(c) {
            Ok(cfg) => cfg.state_dir,
            Err(p) => {
                print_problems(&p);
                return 2;
            }
        },
        (None, None) => config::load(Path::new(config::DEFAULT_PATH))
            .map(|c| c.state_dir)
            .unwrap_or_else(|_| PathBuf::from("/var/run/wgroam")),
    };
    match crate::hub::status::read(&dir) {
        Ok(v) => {
            if s.json {
                println!("{v}");
            } else {
                print!("{}", crate::hub::status::human(&v, signals::now().wall));
            }
            0
        }
        Err(e) => {
            eprintln!("{e}");
            3
        }
    }
}

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

fn check(c: &Check, confdir: &Option<PathBuf>, savedir: &Option<PathBuf>) -> i32 {
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
