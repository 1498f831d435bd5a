//! Command line: `run`, `status`, `check`, `invite`, `join`, `--version`. Parsing only; the
//! work happens in the roles.

use std::path::PathBuf;

use argh::FromArgs;

/// wgroam: keeps an IPv6 split tunnel alive for a roaming WireGuard router.
#[derive(FromArgs, Debug)]
pub struct Args {
    /// print the version and exit
    #[argh(switch)]
    pub version: bool,
    /// uci configuration directory (uci -c), e.g. for tests or non-OpenWrt hosts
    #[argh(option)]
    pub uci_confdir: Option<PathBuf>,
    /// uci save directory for staged changes (uci -t)
    #[argh(option)]
    pub uci_savedir: Option<PathBuf>,
    #[argh(subcommand)]
    pub cmd: Option<Cmd>,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Cmd {
    Run(Run),
    Status(Status),
    Check(Check),
    Invite(Invite),
    Join(Join),
}

/// run the agent in the foreground (role from the config)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "run")]
pub struct Run {
    /// config file (uci syntax), default /etc/config/wgroam
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// also log to stderr
    #[argh(switch)]
    pub stderr: bool,
    /// directory for status.json (overrides the config's state_dir)
    #[argh(option)]
    pub state_dir: Option<PathBuf>,
    /// uci configuration directory (uci -c)
    #[argh(option)]
    pub uci_confdir: Option<PathBuf>,
    /// uci save directory for staged changes (uci -t)
    #[argh(option)]
    pub uci_savedir: Option<PathBuf>,
}

/// show what the running agent sees and did
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "status")]
pub struct Status {
    /// machine-readable JSON
    #[argh(switch)]
    pub json: bool,
    /// directory holding status.json, default /var/run/wgroam
    #[argh(option)]
    pub state_dir: Option<PathBuf>,
    /// config file, to find its state_dir
    #[argh(option)]
    pub config: Option<PathBuf>,
}

/// validate config and environment; print what run would do
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "check")]
pub struct Check {
    /// config file (uci syntax), default /etc/config/wgroam
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// uci configuration directory (uci -c)
    #[argh(option)]
    pub uci_confdir: Option<PathBuf>,
    /// uci save directory for staged changes (uci -t)
    #[argh(option)]
    pub uci_savedir: Option<PathBuf>,
}

/// hub: create a one-time invite for a travel router (prints one line)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "invite")]
pub struct Invite {
    /// the hub interface the travel router joins (default: the one with a pool)
    #[argh(option)]
    pub interface: Option<String>,
    /// a name for the invite and the peer (default: travel-N)
    #[argh(option)]
    pub name: Option<String>,
    /// how long the invite is valid, e.g. 1h, 30m (default 1h)
    #[argh(option)]
    pub ttl: Option<String>,
    /// the hub's public address as the travel router reaches it, HOST:PORT
    #[argh(option)]
    pub endpoint: Option<String>,
    /// also draw the invite as a QR code
    #[argh(switch)]
    pub qr: bool,
    /// list pending and used invites
    #[argh(switch)]
    pub list: bool,
    /// revoke a pending invite by name
    #[argh(option)]
    pub revoke: Option<String>,
    /// with --list: machine-readable JSON (for the LuCI app)
    #[argh(switch)]
    pub json: bool,
    /// config file, default /etc/config/wgroam
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// the agent's state directory (overrides the config's state_dir)
    #[argh(option)]
    pub state_dir: Option<PathBuf>,
}

/// travel router: join a hub with an invite from `wgroam invite`
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "join")]
pub struct Join {
    /// the invite line, or - to read it from stdin
    #[argh(positional)]
    pub invite: String,
    /// the WireGuard interface to create (default wgroam)
    #[argh(option)]
    pub interface: Option<String>,
    /// the LAN interface that gets the prefix (default lan)
    #[argh(option)]
    pub lan: Option<String>,
    /// seconds to wait for the tunnel and the delegation (default 30)
    #[argh(option)]
    pub timeout: Option<u64>,
    /// the agent's state directory, where it writes status.json (default /var/run/wgroam)
    #[argh(option)]
    pub state_dir: Option<PathBuf>,
}
