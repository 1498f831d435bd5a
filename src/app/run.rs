//! `wgroam run`: load the config, install the signal handlers, build the
//! role (hub or roam) on the real adapters and hand it to the driver.

use std::path::{Path, PathBuf};

use super::{config_path, network, print_problems, uci_for};
use crate::app::cli::Run;
use crate::config::{self, Config, Role};
use crate::core::Level;
use crate::driver::{self, SystemWake};
use crate::hub::runtime::HubRuntime;
use crate::os::signals::{self, Signals};
use crate::os::syslog;
use crate::os::wg::System;
use crate::roam::runtime::RoamRuntime;

pub fn run(r: &Run, confdir: &Option<PathBuf>, savedir: &Option<PathBuf>) -> i32 {
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
