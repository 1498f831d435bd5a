//! The commands, one file each (`run`, `status`, `check`, `invite`, `join`),
//! wired to the real adapters, and the command line (`cli`). `main.rs` only calls
//! [`main`].

pub mod check;
pub mod cli;
pub mod invite;
pub mod join;
pub mod qr;
pub mod run;
pub mod status;

use std::path::PathBuf;

use crate::app::cli::{Args, Cmd};
use crate::config::{self, Config};
use crate::hub::network::UciNetwork;
use crate::hub::runtime::NetworkConfig;
use crate::os::uci::UciCli;

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
        Cmd::Run(r) => run::run(&r, &args.uci_confdir, &args.uci_savedir),
        Cmd::Status(s) => status::status(&s),
        Cmd::Check(c) => check::check(&c, &args.uci_confdir, &args.uci_savedir),
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
