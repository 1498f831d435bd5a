//! Command line: `run`, `status`, `check`, `--version`. Parsing only; the
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
