//! `wgroam status`: what the running agent last wrote to `status.json`,
//! for people or (`--json`) machines.

use std::path::{Path, PathBuf};

use crate::app::cli::Status;
use crate::config;
use crate::os::signals;

use super::print_problems;

pub fn status(s: &Status) -> i32 {
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
