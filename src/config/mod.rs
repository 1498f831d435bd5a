//! `/etc/config/wgroam`: one `agent` section and one `interface` section per
//! managed WireGuard interface. Every problem is reported on its own line
//! naming section, option, value and what is expected; nothing is applied
//! from a config that has any problem.

// Pure: no clock, file, socket, thread or command (clippy.toml).
#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

use std::fmt;
use std::path::{Path, PathBuf};

use crate::core::Level;
use crate::core::relay::{HubNet, RelayMode};
use uci::syntax::parse_config;
use uci::{Section, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Hub,
    Roam,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Hub => "hub",
            Role::Roam => "roam",
        }
    }
}

/// Which WireGuard backend an interface uses (`option backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    Auto,
    Kernel,
    Userspace,
}

/// A managed WireGuard interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// The netifd interface (uci section in `network`), e.g. `wg0`.
    pub name: String,
    /// The kernel device; netifd names it after the interface.
    pub ifname: String,
    pub backend: BackendChoice,
    /// Hub: capture handshake initiations on the WAN.
    pub capture: bool,
    /// Hub: device to capture on; `None` captures on all devices.
    pub capture_device: Option<String>,
    /// Roam: how to keep the tunnel and the delegated prefix.
    pub roam: RoamOptions,
    /// Hub: peer-prefix routes, forwarding, relay policy, NDP proxy.
    pub net: HubNet,
    /// Hub: pairing pool and redeem port (`None` without `pool`).
    pub pair: Option<PairOptions>,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub role: Role,
    pub log_level: Level,
    /// RAM directory for `status.json` (read by `wgroam status`).
    pub state_dir: PathBuf,
    /// Learned endpoints and stamps, to survive agent restarts.
    pub state_file: PathBuf,
    pub poll_ms: u64,
    /// Stage learned endpoints in uci `network` (OpenWrt).
    pub uci: bool,
    /// Seconds before staged changes are committed; `None`: never.
    pub commit_interval: Option<u64>,
    pub commit_on_stop: bool,
    pub interfaces: Vec<Interface>,
}

/// One problem with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem(pub String);

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub const DEFAULT_PATH: &str = "/etc/config/wgroam";

const AGENT_OPTIONS: &[&str] = &[
    "role",
    "log_level",
    "state_dir",
    "state_file",
    "poll_ms",
    "uci",
    "commit_interval",
    "commit_on_stop",
];
/// The first three are common to both roles, the rest are the hub's.
const INTERFACE_OPTIONS: &[&str] = &[
    "enabled",
    "ifname",
    "backend",
    "capture",
    "capture_device",
    "routes",
    "wan",
    "forwarding",
    "relay",
    "ndp_proxy",
    "pool",
    "pool_size",
    "redeem_port",
];

/// A value as shown in a problem line: control characters (newlines, escape
/// sequences) escaped, so that every problem stays on one line.
fn show(v: &str) -> String {
    v.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn show_value(v: &Value) -> String {
    v.values()
        .iter()
        .map(|x| format!("'{}'", show(x)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads one option of a section, recording problems.
struct Reader<'a> {
    sec: &'a Section,
    label: String,
    problems: &'a mut Vec<Problem>,
}

impl Reader<'_> {
    fn bad(&mut self, opt: &str, value: &str, expected: &str) {
        self.problems.push(Problem(format!(
            "wgroam.{}.{opt}: '{}' is not valid; expected {expected}",
            self.label,
            show(value)
        )));
    }

    fn list(&mut self, opt: &str) -> Vec<String> {
        match self.sec.get(opt) {
            None => Vec::new(),
            Some(v) => v.values().into_iter().map(str::to_string).collect(),
        }
    }

    fn single(&mut self, opt: &str) -> Option<String> {
        match self.sec.get(opt)? {
            Value::Single(v) => Some(v.clone()),
            v @ Value::List(_) => {
                self.problems.push(Problem(format!(
                    "wgroam.{}.{opt}: is a list ({}); expected a single 'option {opt}'",
                    self.label,
                    show_value(v)
                )));
                None
            }
        }
    }

    fn bool(&mut self, opt: &str, default: bool) -> bool {
        match self.single(opt).as_deref() {
            None => default,
            Some("1" | "on" | "yes" | "true" | "enabled") => true,
            Some("0" | "off" | "no" | "false" | "disabled") => false,
            Some(v) => {
                self.bad(opt, v, "1 or 0");
                default
            }
        }
    }

    fn number(&mut self, opt: &str, default: u64, min: u64, max: u64) -> u64 {
        match self.single(opt) {
            None => default,
            Some(v) => match v.parse::<u64>() {
                // Digits only: no sign, no spaces (u64's parser accepts '+').
                Ok(n) if (min..=max).contains(&n) && v.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => {
                    self.bad(opt, &v, &format!("a whole number from {min} to {max}"));
                    default
                }
            },
        }
    }

    /// An absolute path; with `file`, one naming a file (not ending in '/').
    fn path(&mut self, opt: &str, default: &str, file: bool) -> PathBuf {
        match self.single(opt) {
            None => PathBuf::from(default),
            Some(v) if v.starts_with('/') && !v.contains('\0') && !(file && v.ends_with('/')) => {
                PathBuf::from(v)
            }
            Some(v) if file => {
                self.bad(
                    opt,
                    &v,
                    &format!("an absolute path of a file, e.g. {default}"),
                );
                PathBuf::from(default)
            }
            Some(v) => {
                self.bad(opt, &v, "an absolute path");
                PathBuf::from(default)
            }
        }
    }

    fn unknown_options(&mut self, known: &[&str]) {
        self.unknown_options_listing(known, known.len());
    }

    /// Reports options not in `known`, naming the first `listed` of them.
    fn unknown_options_listing(&mut self, known: &[&str], listed: usize) {
        let unknown: Vec<(String, String)> = self
            .sec
            .options
            .iter()
            .filter(|(n, _)| !known.contains(&n.as_str()))
            .map(|(n, v)| (n.clone(), show_value(v)))
            .collect();
        for (n, v) in unknown {
            self.problems.push(Problem(format!(
                "wgroam.{}.{n}: unknown option ({v}); expected one of {}",
                self.label,
                known[..listed].join(", ")
            )));
        }
    }
}

/// Linux interface names: 1-15 bytes, no '/', whitespace or ':'.
pub fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 16
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

/// uci section names: letters, digits and '_' only.
pub fn valid_uci_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn label(sec: &Section, index: usize) -> String {
    match &sec.name {
        Some(n) => n.clone(),
        None => format!("@{}[{index}]", sec.stype),
    }
}

/// Names that can go into an nft string literal as they are.
fn nft_safe(s: &str) -> bool {
    !s.contains(['"', '\\'])
}

/// The hub's `routes`, `wan`, `forwarding`, `relay` and `ndp_proxy`.
fn hub_net(r: &mut Reader, ifname: &str) -> HubNet {
    let routes = r.bool("routes", true);
    let wan = r.single("wan");
    if let Some(w) = &wan
        && !(valid_ifname(w) && nft_safe(w))
    {
        r.bad("wan", w, "the WAN device, e.g. 'eth1' or 'wan'");
    }
    let forwarding = r.bool("forwarding", false);
    let relay = match r.single("relay").as_deref() {
        None | Some("off" | "0") => RelayMode::Off,
        Some("nft") => RelayMode::Nft,
        Some("fw4") => RelayMode::Fw4,
        Some(v) => {
            r.bad("relay", v, "off, nft or fw4");
            RelayMode::Off
        }
    };
    let ndp_proxy = r.bool("ndp_proxy", false);
    if relay == RelayMode::Nft && !nft_safe(ifname) {
        r.bad("relay", "nft", "an ifname without '\"' or '\\' for nft");
    }
    for (opt, value, on) in [
        ("forwarding", "1", forwarding),
        // fw4 forwards to and from the firewall zone `wan`, not a device.
        ("relay", relay.as_str(), relay == RelayMode::Nft),
        ("ndp_proxy", "1", ndp_proxy),
    ] {
        if on && wan.is_none() {
            r.problems.push(Problem(format!(
                "wgroam.{}.{opt}: '{value}' needs option wan; expected \"option wan 'DEVICE'\" naming the WAN device",
                r.label
            )));
        }
    }
    HubNet {
        routes,
        wan,
        forwarding,
        relay,
        ndp_proxy,
    }
}

/// Reads and validates a config file: the folder's one read of the
/// system, everything after it is [`from_bytes`].
#[allow(clippy::disallowed_methods)]
pub fn load(path: &Path) -> Result<Config, Vec<Problem>> {
    let text = std::fs::read(path).map_err(|e| {
        let fix = match e.kind() {
            std::io::ErrorKind::NotFound => {
                "expected a uci config file there; create it or pass --config PATH"
            }
            std::io::ErrorKind::IsADirectory => "expected a uci config file, not a directory",
            _ => "expected a readable uci config file; check its permissions or pass --config PATH",
        };
        vec![Problem(format!(
            "{}: cannot read ({e}); {fix}",
            path.display()
        ))]
    })?;
    from_bytes(path, text)
}

/// Validates the bytes of a config file (`path` names it in problems).
pub fn from_bytes(path: &Path, text: Vec<u8>) -> Result<Config, Vec<Problem>> {
    // uci stops reading a line at a NUL byte; such a file is damaged, not config.
    let text = match String::from_utf8(text) {
        Ok(t) if !t.contains('\0') => t,
        _ => {
            return Err(vec![Problem(format!(
                "{}: not a text file; expected uci syntax (config/option lines)",
                path.display()
            ))]);
        }
    };
    let sections = parse_config(&path.display().to_string(), &text)
        .map_err(|e| vec![Problem(e.to_string())])?;
    from_sections(&sections)
}

/// Validates sections into a [`Config`], or returns every problem found.
pub fn from_sections(sections: &[Section]) -> Result<Config, Vec<Problem>> {
    let mut problems = Vec::new();
    let agents: Vec<(usize, &Section)> = sections
        .iter()
        .filter(|s| s.stype == "agent")
        .enumerate()
        .collect();
    if agents.len() > 1 {
        problems.push(Problem(format!(
            "wgroam: {} 'agent' sections; expected exactly one",
            agents.len()
        )));
    }
    let mut role_known = false;
    let mut cfg = Config {
        role: Role::Hub,
        log_level: Level::Info,
        state_dir: PathBuf::from("/var/run/wgroam"),
        state_file: PathBuf::from("/var/lib/wgroam/state.json"),
        poll_ms: 500,
        uci: true,
        commit_interval: Some(3600),
        commit_on_stop: true,
        interfaces: Vec::new(),
    };
    match agents.first() {
        None => problems.push(Problem(
            "wgroam: no 'agent' section; add \"config agent 'agent'\" with \"option role 'hub'\" or 'roam'"
                .into(),
        )),
        Some(&(i, sec)) => {
            let mut r = Reader {
                sec,
                label: label(sec, i),
                problems: &mut problems,
            };
            r.unknown_options(AGENT_OPTIONS);
            match r.single("role").as_deref() {
                Some("hub") => (cfg.role, role_known) = (Role::Hub, true),
                Some("roam") => (cfg.role, role_known) = (Role::Roam, true),
                Some(v) => r.bad("role", v, "hub or roam"),
                None if sec.get("role").is_some() => {} // a list: reported
                None => r.problems.push(Problem(format!(
                    "wgroam.{}.role: missing; expected 'hub' (static router) or 'roam' (travel router)",
                    r.label
                ))),
            }
            match r.single("log_level").as_deref() {
                None | Some("info") => {}
                Some("error") => cfg.log_level = Level::Error,
                Some("warn") => cfg.log_level = Level::Warn,
                Some("notice") => cfg.log_level = Level::Notice,
                Some("debug") => cfg.log_level = Level::Debug,
                Some(v) => r.bad("log_level", v, "error, warn, notice, info or debug"),
            }
            cfg.state_dir = r.path("state_dir", "/var/run/wgroam", false);
            cfg.state_file = r.path("state_file", "/var/lib/wgroam/state.json", true);
            cfg.poll_ms = r.number("poll_ms", 500, 100, 10_000);
            cfg.uci = r.bool("uci", true);
            let interval = r.number("commit_interval", 3600, 0, 30 * 86_400);
            cfg.commit_interval = (interval > 0).then_some(interval);
            cfg.commit_on_stop = r.bool("commit_on_stop", true);
        }
    }
    let mut seen = Vec::new();
    for (i, sec) in sections
        .iter()
        .filter(|s| s.stype == "interface")
        .enumerate()
    {
        let mut r = Reader {
            sec,
            label: label(sec, i),
            problems: &mut problems,
        };
        // Name the options of this agent's role; an option of the other role
        // gets its own line saying so.
        let (mine, other, other_role): (&[&str], &[&str], &str) = match cfg.role {
            Role::Roam => (ROAM_OPTIONS, &INTERFACE_OPTIONS[3..], "hub"),
            Role::Hub => (&INTERFACE_OPTIONS[3..], ROAM_OPTIONS, "roam"),
        };
        for (n, _) in &sec.options {
            if role_known && other.contains(&n.as_str()) {
                r.problems.push(Problem(format!(
                    "wgroam.{}.{n}: is a {other_role} option, but agent.role is '{}'; remove it or change the role",
                    r.label,
                    cfg.role.as_str()
                )));
            }
        }
        let known: Vec<&str> = INTERFACE_OPTIONS[..3]
            .iter()
            .chain(mine)
            .chain(other)
            .copied()
            .collect();
        let listed = INTERFACE_OPTIONS[..3].len() + mine.len();
        r.unknown_options_listing(&known, listed);
        let Some(name) = sec.name.clone() else {
            r.problems.push(Problem(format!(
                "wgroam.{}: interface section has no name; expected \"config interface 'wg0'\" naming the netifd interface",
                r.label
            )));
            continue;
        };
        if !valid_uci_name(&name) {
            r.problems.push(Problem(format!(
                "wgroam.{name}: '{name}' is not a valid netifd interface name; expected letters, digits and '_' only"
            )));
            continue;
        }
        if !r.bool("enabled", true) {
            continue;
        }
        let ifname = r.single("ifname").unwrap_or_else(|| name.clone());
        if !valid_ifname(&ifname) {
            r.bad(
                "ifname",
                &ifname,
                "a Linux interface name (1-15 characters, no '/' or ':')",
            );
        }
        let backend = match r.single("backend").as_deref() {
            None | Some("auto") => BackendChoice::Auto,
            Some("kernel") => BackendChoice::Kernel,
            Some("userspace") => BackendChoice::Userspace,
            Some(v) => {
                r.bad("backend", v, "auto, kernel or userspace");
                BackendChoice::Auto
            }
        };
        let capture = r.bool("capture", true);
        let capture_device = r.single("capture_device");
        if let Some(d) = &capture_device
            && !valid_ifname(d)
        {
            r.bad(
                "capture_device",
                d,
                "a Linux interface name, e.g. 'wan' or 'eth1'",
            );
        }
        let roam = roam::read(&mut r);
        if seen.contains(&ifname) {
            r.problems.push(Problem(format!(
                "wgroam.{name}.ifname: '{}' is managed twice; expected one section per interface",
                show(&ifname)
            )));
            continue;
        }
        seen.push(ifname.clone());
        let net = hub_net(&mut r, &ifname);
        let pair = match cfg.role {
            Role::Hub => pair::read(&mut r),
            Role::Roam => None,
        };
        cfg.interfaces.push(Interface {
            name,
            ifname,
            backend,
            capture,
            capture_device,
            roam,
            net,
            pair,
        });
    }
    for sec in sections {
        if sec.stype != "agent" && sec.stype != "interface" {
            problems.push(Problem(format!(
                "wgroam.{}: unknown section type '{}'; expected 'agent' or 'interface'",
                sec.reference(),
                sec.stype
            )));
        }
    }
    if cfg.interfaces.is_empty() && problems.is_empty() {
        problems.push(Problem(
            "wgroam: no enabled 'interface' section; add \"config interface 'wg0'\" for the WireGuard interface to manage"
                .into(),
        ));
    }
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(problems)
    }
}

mod roam;
pub mod roam_setup;
pub mod uci;
pub use roam::{DelegateVia, ROAM_OPTIONS, RoamOptions};

mod pair;
pub use pair::PairOptions;

#[cfg(test)]
mod tests;
