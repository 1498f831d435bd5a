//! `wgroam join INVITE` on the travel router: redeem the invite at the hub,
//! write the WireGuard interface, its hub peer, a firewall zone and
//! `/etc/config/wgroam` (one commit per package), bring it up through netifd,
//! start the agent and wait until the tunnel is up and the prefix delegated.
//! Any failure prints one line and puts the three config files back byte for
//! byte.

use std::fs;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::app::cli::Join;
use crate::config::uci::syntax::{Section, parse_config};
use crate::config::valid_uci_name;
use crate::core::PublicKey;
use crate::core::net::IpNet;
use crate::core::pairing::{self, Answer, Grant, Host, Redeem, Token};
use crate::hub::pairing::random;
use crate::os::ubus::{Ubus, UbusCli};
use crate::os::uci::{Change, UciCli, UciStore};

/// The init script that starts the agent (tests point it elsewhere).
pub const INIT_ENV: &str = "WGROAM_INIT";
const REDEEM_WAIT: Duration = Duration::from_secs(10);
const PACKAGES: [&str; 3] = ["network", "firewall", "wgroam"];

/// A failure: the one line and the exit code.
struct Fail(i32, String);

fn fail<T>(code: i32, msg: impl Into<String>) -> Result<T, Fail> {
    Err(Fail(code, msg.into()))
}

pub fn join(j: &Join, uci: UciCli) -> i32 {
    match run(j, &uci) {
        Ok(summary) => {
            print!("{summary}");
            0
        }
        Err(Fail(code, msg)) => {
            eprintln!("wgroam join: {msg}");
            code
        }
    }
}

/// What a lone `-` after `join` is passed to argh as (it takes `-` for an
/// unknown option); never a valid invite.
const STDIN_MARK: &str = "stdin:-";

/// Replaces a lone `-` after the `join` command by [`STDIN_MARK`].
pub fn stdin_arg(mut args: Vec<String>) -> Vec<String> {
    if let Some(j) = args.iter().position(|a| a == "join") {
        for a in args.iter_mut().skip(j + 1) {
            if a == "-" {
                *a = STDIN_MARK.to_string();
            }
        }
    }
    args
}

fn read_invite(arg: &str) -> Result<Token, Fail> {
    let text = if arg == "-" || arg == STDIN_MARK {
        let mut s = String::new();
        io::stdin()
            .take(4096)
            .read_to_string(&mut s)
            .map_err(|e| Fail(2, format!("invite: cannot read stdin: {e}")))?;
        s
    } else {
        arg.to_string()
    };
    Token::decode(&text).map_err(|e| Fail(2, e))
}

fn confdir(uci: &UciCli) -> PathBuf {
    uci.confdir
        .clone()
        .unwrap_or_else(|| PathBuf::from("/etc/config"))
}

/// The three config files as they were (absent = `None`).
struct Snapshot(Vec<(PathBuf, Option<Vec<u8>>)>);

impl Snapshot {
    fn take(dir: &Path) -> Result<Self, Fail> {
        let mut v = Vec::new();
        for p in PACKAGES {
            let path = dir.join(p);
            match fs::read(&path) {
                Ok(b) => v.push((path, Some(b))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => v.push((path, None)),
                Err(e) => return fail(1, format!("cannot read {}: {e}", path.display())),
            }
        }
        Ok(Snapshot(v))
    }

    fn had(&self, package: &str) -> bool {
        self.0
            .iter()
            .any(|(p, b)| p.ends_with(package) && b.is_some())
    }

    /// Puts every file back exactly (atomically: temporary file + rename).
    fn restore(&self) {
        for (path, bytes) in &self.0 {
            match bytes {
                Some(b) => {
                    let tmp = path.with_extension("wgroam-restore");
                    if fs::write(&tmp, b)
                        .and_then(|()| fs::rename(&tmp, path))
                        .is_err()
                    {
                        eprintln!("wgroam join: could not restore {}", path.display());
                    }
                }
                None => {
                    let _ = fs::remove_file(path);
                }
            }
        }
    }
}

fn run(j: &Join, uci: &UciCli) -> Result<String, Fail> {
    let token = read_invite(&j.invite)?;
    let ifname = j.interface.clone().unwrap_or_else(|| "wgroam".into());
    if !valid_uci_name(&ifname) || ifname.len() > 15 {
        return fail(
            2,
            format!("--interface: '{ifname}' is not valid; expected 1-15 letters, digits or '_'"),
        );
    }
    let lan = j.lan.clone().unwrap_or_else(|| "lan".into());
    let dir = confdir(uci);
    // Everything that can be checked is checked before the invite is spent.
    let network = uci
        .load("network")
        .or_else(|e| fail(1, format!("uci: cannot read network: {e}")))?;
    if network
        .iter()
        .any(|s| s.name.as_deref() == Some(ifname.as_str()))
    {
        return fail(
            2,
            format!(
                "network.{ifname} already exists; pass --interface NAME for a new interface, or remove it first"
            ),
        );
    }
    if !network
        .iter()
        .any(|s| s.stype == "interface" && s.name.as_deref() == Some(lan.as_str()))
    {
        return fail(
            2,
            format!(
                "--lan: network has no interface '{lan}'; name the LAN interface with --lan IF"
            ),
        );
    }
    let snapshot = Snapshot::take(&dir)?;
    for p in PACKAGES {
        if !snapshot.had(p) {
            continue;
        }
        if let Ok(lines) = uci.pending(p)
            && !lines.is_empty()
        {
            return fail(
                2,
                format!(
                    "uci: {p} has uncommitted changes; commit or revert them first (uci changes {p})"
                ),
            );
        }
    }
    let wgroam = match fs::read_to_string(dir.join("wgroam")) {
        Ok(t) => parse_config("wgroam", &t).map_err(|e| Fail(2, e.to_string()))?,
        Err(_) => Vec::new(),
    };
    if wgroam
        .iter()
        .any(|s| s.stype == "agent" && s.get_single("role") == Some("hub"))
    {
        return fail(
            2,
            "wgroam.agent.role: this router is a hub; run `wgroam join` on the travel router",
        );
    }
    // The package's /etc/config/wgroam has an empty `interface 'wg0'`
    // placeholder: that one is not a configuration (it is replaced below).
    if let Some(s) = wgroam
        .iter()
        .find(|s| s.stype == "interface" && !s.options.is_empty())
    {
        return fail(
            2,
            format!(
                "wgroam.{}: this router already roams with wgroam; remove that section first (uci delete wgroam.{})",
                s.name.as_deref().unwrap_or("?"),
                s.name.as_deref().unwrap_or("@interface[0]")
            ),
        );
    }
    let firewall = if snapshot.had("firewall") {
        Some(
            uci.load("firewall")
                .or_else(|e| fail(1, format!("uci: cannot read firewall: {e}")))?,
        )
    } else {
        None
    };
    let agent_was_running = state_dir(j, &wgroam)
        .map(|d| crate::hub::status::read(&d).is_ok())
        .unwrap_or(false);

    // The long-term key is made here and never leaves this router.
    let private = pairing::clamp(random().map_err(|e| Fail(1, format!("no random numbers: {e}")))?);
    let public = pairing::public_of(&private);
    let grant = redeem(&token, &public)?;

    let changes = changes(
        &ifname,
        &lan,
        &token,
        &private,
        &grant,
        firewall.as_deref(),
        &wgroam,
    );
    let write = || -> Result<(), String> {
        if !snapshot.had("wgroam") {
            fs::write(dir.join("wgroam"), b"").map_err(|e| e.to_string())?;
        }
        uci.stage(&changes).map_err(|e| e.to_string())?;
        for p in PACKAGES {
            if changes.iter().any(|c| c.package() == p) {
                uci.commit(p).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    };
    if let Err(e) = write() {
        revert_staged(uci);
        snapshot.restore();
        return fail(
            1,
            format!("cannot write the configuration ({e}); nothing changed"),
        );
    }
    let undo = |why: String| -> Fail {
        // The agent first: it must not stage anything into the restored files.
        let _ = init("stop");
        revert_staged(uci);
        snapshot.restore();
        let _ = UbusCli::from_env().call("network", "reload", None);
        if agent_was_running {
            let _ = init("start");
        }
        Fail(1, format!("{why}; configuration restored"))
    };
    if let Err(e) = UbusCli::from_env().call("network", "reload", None) {
        return Err(undo(format!(
            "netifd: network reload failed ({e}); is netifd running?"
        )));
    }
    if let Err(e) = init("enable").and_then(|()| init("restart")) {
        return Err(undo(format!("cannot start the agent: {e}")));
    }
    let sdir = state_dir(j, &wgroam).unwrap_or_else(|| PathBuf::from("/var/run/wgroam"));
    let timeout = Duration::from_secs(j.timeout.unwrap_or(30));
    match wait(&sdir, &ifname, timeout) {
        Ok(()) => Ok(format!(
            "joined hub {}:{} as {}\n  interface {ifname}, tunnel address {}/{}\n  prefix {} delegated to {lan}\n  hub tunnel address {}\n",
            token.host,
            token.wg_port,
            PublicKey(public).short(),
            grant.tunnel_addr,
            grant.subnet_len,
            grant.prefix,
            grant.hub_tunnel_addr
        )),
        Err(why) => Err(undo(why)),
    }
}

fn revert_staged(uci: &UciCli) {
    for p in PACKAGES {
        let mut c = Command::new(&uci.bin);
        if let Some(d) = &uci.confdir {
            c.arg("-c").arg(d);
        }
        if let Some(d) = &uci.savedir {
            c.arg("-t").arg(d);
        }
        let _ = c.args(["revert", p]).output();
    }
}

/// The agent's state directory: `--state-dir`, else the config's, else the default.
fn state_dir(j: &Join, wgroam: &[Section]) -> Option<PathBuf> {
    j.state_dir.clone().or_else(|| {
        wgroam
            .iter()
            .find(|s| s.stype == "agent")
            .and_then(|s| s.get_single("state_dir"))
            .map(PathBuf::from)
            .or(Some(PathBuf::from("/var/run/wgroam")))
    })
}

fn init(action: &str) -> Result<(), String> {
    let script = std::env::var(INIT_ENV).unwrap_or_else(|_| "/etc/init.d/wgroam".into());
    let out = Command::new(&script)
        .arg(action)
        .output()
        .map_err(|e| format!("{script} {action}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{script} {action} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Sends the request until an answer comes (10 s).
fn redeem(token: &Token, public: &[u8; 32]) -> Result<Grant, Fail> {
    let eph = random().map_err(|e| Fail(1, format!("no random numbers: {e}")))?;
    let r = Redeem::new(token, eph, public);
    let host = match &token.host {
        Host::Ip(a) => a.to_string(),
        Host::Name(n) => n.clone(),
    };
    let addrs: Vec<SocketAddr> = match (host.as_str(), token.redeem_port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => {
            return fail(
                1,
                format!(
                    "cannot resolve the hub's name '{host}' ({e}); check this router's DNS and uplink"
                ),
            );
        }
    };
    let unreachable = || {
        Fail(
            1,
            format!(
                "no answer from the hub at {}:{} (UDP) within {} s: the hub is unreachable, its agent is not running, or UDP {} is filtered; check `wgroam status` and the firewall on the hub; nothing changed",
                token.host,
                token.redeem_port,
                REDEEM_WAIT.as_secs(),
                token.redeem_port
            ),
        )
    };
    let socks: Vec<(UdpSocket, SocketAddr)> = addrs
        .iter()
        .filter_map(|a| {
            let bind: SocketAddr = if a.is_ipv4() {
                "0.0.0.0:0".parse().ok()?
            } else {
                "[::]:0".parse().ok()?
            };
            let s = UdpSocket::bind(bind).ok()?;
            s.set_read_timeout(Some(Duration::from_millis(100))).ok()?;
            Some((s, *a))
        })
        .collect();
    if socks.is_empty() {
        return Err(unreachable());
    }
    let start = Instant::now();
    let mut next_send = start;
    let mut buf = [0u8; 512];
    while start.elapsed() < REDEEM_WAIT {
        if Instant::now() >= next_send {
            for (s, a) in &socks {
                let _ = s.send_to(&r.request, a);
            }
            next_send += Duration::from_secs(1);
        }
        for (s, a) in &socks {
            let Ok((n, from)) = s.recv_from(&mut buf) else {
                continue;
            };
            if from.ip() != a.ip() {
                continue;
            }
            match r.answer(&buf[..n]) {
                Some(Answer::Granted(g)) => return Ok(g),
                Some(Answer::Refused(x)) | Some(Answer::RefusedPlain(x)) => {
                    return fail(
                        1,
                        format!("refused by the hub: {}; nothing changed", x.explain()),
                    );
                }
                None => {}
            }
        }
    }
    Err(unreachable())
}

/// The zone of `lan` in the firewall (default `lan`).
fn lan_zone(firewall: &[Section], lan: &str) -> String {
    firewall
        .iter()
        .filter(|s| s.stype == "zone")
        .find(|s| {
            s.get("network").is_some_and(|v| {
                v.values()
                    .iter()
                    .any(|n| n.split_whitespace().any(|x| x == lan))
            })
        })
        .and_then(|s| s.get_single("name"))
        .unwrap_or("lan")
        .to_string()
}

fn changes(
    ifname: &str,
    lan: &str,
    token: &Token,
    private: &[u8; 32],
    g: &Grant,
    firewall: Option<&[Section]>,
    wgroam: &[Section],
) -> Vec<Change> {
    let n = "network";
    let peer = format!("{ifname}_hub");
    let host = match &token.host {
        Host::Ip(a) => a.to_string(),
        Host::Name(x) => x.clone(),
    };
    let mut c = vec![
        Change::add_section(n, ifname, "interface"),
        Change::set(n, ifname, "proto", "wireguard"),
        Change::set(n, ifname, "private_key", &base64::encode(private)),
        Change::set_list(
            n,
            ifname,
            "addresses",
            &[format!("{}/{}", g.tunnel_addr, g.subnet_len)],
        ),
        Change::add_section(n, &peer, &format!("wireguard_{ifname}")),
        Change::set(n, &peer, "description", "wgroam hub"),
        Change::set(
            n,
            &peer,
            "public_key",
            &PublicKey(token.hub_key).to_base64(),
        ),
        Change::set(n, &peer, "endpoint_host", &host),
        Change::set(n, &peer, "endpoint_port", &token.wg_port.to_string()),
        Change::set(n, &peer, "persistent_keepalive", "25"),
        // The agent routes ::/0 from the prefix and the tunnel address only.
        Change::set(n, &peer, "route_allowed_ips", "0"),
        Change::set_list(n, &peer, "allowed_ips", &["::/0"]),
    ];
    if let Some(fw) = firewall {
        let f = "firewall";
        // fw4 zone names are at most 11 characters.
        let zone: String = ifname.chars().take(11).collect();
        let zs = format!("{ifname}_zone");
        let fs = format!("{ifname}_fwd");
        c.extend([
            Change::add_section(f, &zs, "zone"),
            Change::set(f, &zs, "name", &zone),
            Change::set_list(f, &zs, "network", &[ifname]),
            Change::set(f, &zs, "input", "REJECT"),
            Change::set(f, &zs, "output", "ACCEPT"),
            Change::set(f, &zs, "forward", "REJECT"),
            Change::add_section(f, &fs, "forwarding"),
            Change::set(f, &fs, "src", &lan_zone(fw, lan)),
            Change::set(f, &fs, "dest", &zone),
        ]);
    }
    let w = "wgroam";
    match wgroam.iter().find(|s| s.stype == "agent") {
        None => {
            c.push(Change::add_section(w, "agent", "agent"));
            c.push(Change::set(w, "agent", "role", "roam"));
        }
        // The package's config has an agent section without a role.
        Some(a) if a.get_single("role").is_none() => {
            let name = a.name.clone().unwrap_or_else(|| "@agent[0]".into());
            c.push(Change::set(w, &name, "role", "roam"));
        }
        Some(_) => {}
    }
    for s in wgroam
        .iter()
        .filter(|s| s.stype == "interface" && s.options.is_empty())
    {
        if let Some(n) = s.name.as_deref().filter(|n| *n != ifname) {
            c.push(Change::delete_section(w, n));
        }
    }
    c.extend([
        Change::add_section(w, ifname, "interface"),
        Change::set(w, ifname, "prefix", &g.prefix.to_string()),
        Change::set(w, ifname, "tunnel_addr", &g.tunnel_addr.to_string()),
        Change::set(w, ifname, "hub_tunnel_addr", &g.hub_tunnel_addr.to_string()),
    ]);
    if lan != "lan" {
        c.push(Change::set_list(w, ifname, "downstream", &[lan]));
    }
    let _ = IpNet::host(IpAddr::V6(g.tunnel_addr));
    c
}

/// Waits for the agent's status: tunnel up and the prefix delegated.
fn wait(dir: &Path, ifname: &str, timeout: Duration) -> Result<(), String> {
    let start = Instant::now();
    let mut last: Option<Value> = None;
    while start.elapsed() < timeout {
        if let Ok(v) = crate::hub::status::read(dir)
            && let Some(i) = v["interfaces"]
                .as_array()
                .and_then(|a| a.iter().find(|i| i["name"] == ifname))
        {
            if i["tunnel_up"] == true && i["delegation"]["state"] == "delegated" {
                return Ok(());
            }
            last = Some(i.clone());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let secs = timeout.as_secs();
    Err(match last {
        None => format!("the agent did not report on {ifname} within {secs} s (logread -e wgroam)"),
        Some(i) if i["tunnel_up"] != true => format!(
            "no handshake with the hub within {secs} s: UDP to the hub's WireGuard port is blocked, or the hub is down"
        ),
        Some(i) => format!(
            "the tunnel is up but the prefix was not delegated within {secs} s: {}",
            i["delegation"]["problem"]
                .as_str()
                .unwrap_or("see `wgroam status`")
        ),
    })
}
