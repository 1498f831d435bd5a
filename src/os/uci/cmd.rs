//! [`UciStore`] backed by the real `uci` command-line tool.
//!
//! Reads use `uci export` (file plus staged changes, and unlike `uci show` it keeps
//! one-element lists apart from plain options). Staging first plans the changes
//! against that view (skipping ones already in effect, rejecting missing sections),
//! then feeds them to ONE `uci batch` on stdin. `uci batch` is not atomic by itself
//! and always exits 0 — it only reports failed commands on stderr (and `-q` would
//! silence even that) — so the save-directory files it may touch are snapshotted
//! first and put back if anything went wrong.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Change, Result, Section, UciError, UciStore, parse, plan_changes};

/// Environment variable naming the uci binary.
pub const UCI_BIN_ENV: &str = "WGROAM_UCI_BIN";
/// uci's default save directory (staged changes).
pub const DEFAULT_SAVEDIR: &str = "/tmp/.uci";
/// How long one uci invocation may take (it blocks on locks held by others).
pub const UCI_TIMEOUT: Duration = Duration::from_secs(10);

/// Drives the real `uci` tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UciCli {
    /// The `uci` binary.
    pub bin: PathBuf,
    /// `-c`: config directory (default `/etc/config`).
    pub confdir: Option<PathBuf>,
    /// `-t`: save directory for staged changes (default `/tmp/.uci`).
    pub savedir: Option<PathBuf>,
}

impl Default for UciCli {
    fn default() -> Self {
        Self::from_env()
    }
}

/// What one uci run produced.
struct Run {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

impl UciCli {
    /// `uci` from `$WGROAM_UCI_BIN`, else `uci` on `PATH`; default directories.
    pub fn from_env() -> Self {
        let bin = std::env::var_os(UCI_BIN_ENV)
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from("uci"), PathBuf::from);
        UciCli {
            bin,
            confdir: None,
            savedir: None,
        }
    }

    /// The same tool on config directory `confdir` and save directory `savedir`.
    pub fn with_dirs(mut self, confdir: Option<PathBuf>, savedir: Option<PathBuf>) -> Self {
        self.confdir = confdir;
        self.savedir = savedir;
        self
    }

    fn savedir(&self) -> &Path {
        self.savedir
            .as_deref()
            .unwrap_or(Path::new(DEFAULT_SAVEDIR))
    }

    /// The command line for `args`, for error messages.
    fn describe(&self, args: &[&str]) -> String {
        let mut s = self.bin.display().to_string();
        if let Some(c) = &self.confdir {
            s.push_str(&format!(" -c {}", c.display()));
        }
        if let Some(t) = &self.savedir {
            s.push_str(&format!(" -t {}", t.display()));
        }
        for a in args {
            s.push(' ');
            s.push_str(a);
        }
        s
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<Run> {
        let mut argv: Vec<OsString> = Vec::new();
        if let Some(c) = &self.confdir {
            argv.push("-c".into());
            argv.push(c.into());
        }
        if let Some(t) = &self.savedir {
            argv.push("-t".into());
            argv.push(t.into());
        }
        argv.extend(args.iter().map(OsString::from));
        let what = self.describe(args);
        let mut child = Command::new(&self.bin)
            .args(&argv)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                UciError::new(format!("{what}: cannot run {}: {e}", self.bin.display()))
            })?;
        let drain = |r: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_end(&mut buf);
                }
                String::from_utf8_lossy(&buf).into_owned()
            })
        };
        let out = drain(
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        );
        let err = drain(
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        );
        let feed = match (stdin, child.stdin.take()) {
            (Some(input), Some(mut pipe)) => {
                let input = input.to_string();
                // A tool that exits early closes the pipe; its status tells the rest.
                Some(std::thread::spawn(move || {
                    let _ = pipe.write_all(input.as_bytes());
                }))
            }
            _ => None,
        };
        let deadline = Instant::now() + UCI_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(UciError::new(format!(
                        "{what}: no answer within {} s, killed",
                        UCI_TIMEOUT.as_secs()
                    )));
                }
                Err(e) => return Err(UciError::new(format!("{what}: wait failed: {e}"))),
            }
        };
        if let Some(f) = feed {
            let _ = f.join();
        }
        Ok(Run {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        })
    }

    /// Runs `args`; a non-zero exit or anything on stderr is an error naming the
    /// command and `package`.
    fn run_ok(&self, args: &[&str], stdin: Option<&str>, package: &str) -> Result<String> {
        let r = self.run(args, stdin)?;
        if !r.status.success() || !r.stderr.trim().is_empty() {
            let why = if r.stderr.trim().is_empty() {
                format!("exit status {}", r.status)
            } else {
                r.stderr.trim().to_string()
            };
            return Err(UciError::new(format!(
                "{} (package {package}) failed: {why}",
                self.describe(args)
            )));
        }
        Ok(r.stdout)
    }

    fn check_package(package: &str, what: &str) -> Result<()> {
        if parse::is_valid_package(package) {
            Ok(())
        } else {
            Err(UciError::new(format!(
                "uci {what}: invalid package name '{package}' (letters, digits, '_' and '-' only)"
            )))
        }
    }
}

/// The contents of a save-directory file before a batch, to put back on failure.
struct Snapshot {
    path: PathBuf,
    before: Option<Vec<u8>>,
}

impl Snapshot {
    fn take(path: PathBuf) -> Result<Self> {
        let before = match std::fs::read(&path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(UciError::new(format!(
                    "uci stage: cannot read {}: {e}",
                    path.display()
                )));
            }
        };
        Ok(Snapshot { path, before })
    }

    fn restore(&self) -> std::io::Result<()> {
        match &self.before {
            Some(b) => std::fs::write(&self.path, b),
            None => match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        }
    }
}

impl UciStore for UciCli {
    fn load(&self, package: &str) -> Result<Vec<Section>> {
        Self::check_package(package, "export")?;
        let text = self.run_ok(&["export", package], None, package)?;
        Ok(parse::parse_config(
            &format!("uci export {package}"),
            &text,
        )?)
    }

    fn stage(&self, changes: &[Change]) -> Result<()> {
        for c in changes {
            c.validate()?;
        }
        let mut packages: Vec<&str> = Vec::new();
        for c in changes {
            if !packages.contains(&c.package()) {
                packages.push(c.package());
            }
        }
        let mut views = std::collections::BTreeMap::new();
        for p in &packages {
            views.insert(p.to_string(), self.load(p)?);
        }
        let effective = plan_changes(&mut views, changes)?;
        if effective.is_empty() {
            return Ok(());
        }
        let mut script = String::new();
        for (c, existed) in &effective {
            for line in c.batch_lines(*existed) {
                script.push_str(&line);
                script.push('\n');
            }
        }
        let touched: Vec<&str> = packages
            .iter()
            .copied()
            .filter(|p| effective.iter().any(|(c, _)| c.package() == *p))
            .collect();
        let label = touched.join(",");
        if let Some(dir) = &self.savedir {
            // uci creates only the last level itself (mode 0700, like uci).
            std::os::unix::fs::DirBuilderExt::mode(
                std::fs::DirBuilder::new().recursive(true),
                0o700,
            )
            .create(dir)
            .map_err(|e| {
                UciError::new(format!(
                    "uci stage: cannot create save directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let snapshots = touched
            .iter()
            .map(|p| Snapshot::take(self.savedir().join(p)))
            .collect::<Result<Vec<_>>>()?;
        crate::crashpoint!("uci-before-batch");
        match self.run_ok(&["batch"], Some(&script), &label) {
            Ok(_) => {
                crate::crashpoint!("uci-after-batch");
                Ok(())
            }
            Err(e) => {
                let mut msg = format!("{e}; nothing staged");
                for s in &snapshots {
                    if let Err(re) = s.restore() {
                        msg = format!("{e}; rolling back {} failed: {re}", s.path.display());
                    }
                }
                Err(UciError::new(msg))
            }
        }
    }

    fn commit(&self, package: &str) -> Result<()> {
        Self::check_package(package, "commit")?;
        crate::crashpoint!("uci-before-commit");
        self.run_ok(&["commit", package], None, package)?;
        crate::crashpoint!("uci-after-commit");
        Ok(())
    }

    fn pending(&self, package: &str) -> Result<Vec<String>> {
        Self::check_package(package, "changes")?;
        let out = self.run_ok(&["changes", package], None, package)?;
        Ok(parse::logical_lines(&out))
    }

    fn revert(&self, package: &str, section: &str, option: &str) -> Result<()> {
        Self::check_package(package, "revert")?;
        let ok =
            |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok(section) || !ok(option) {
            return Err(UciError::new(format!(
                "uci revert: invalid name '{package}.{section}.{option}'"
            )));
        }
        let target = format!("{package}.{section}.{option}");
        self.run_ok(&["revert", &target], None, package).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_command_with_dirs() {
        let u = UciCli {
            bin: "/x/uci".into(),
            confdir: Some("/c".into()),
            savedir: Some("/t".into()),
        };
        assert_eq!(
            u.describe(&["commit", "network"]),
            "/x/uci -c /c -t /t commit network"
        );
    }

    #[test]
    fn missing_binary_is_a_one_line_error() {
        let u = UciCli {
            bin: "/nonexistent/uci".into(),
            confdir: None,
            savedir: None,
        };
        let e = u.load("network").unwrap_err();
        assert!(
            e.message()
                .starts_with("/nonexistent/uci export network: cannot run"),
            "{e}"
        );
        assert!(!e.message().contains('\n'));
    }

    #[test]
    fn rejects_bad_package_names_without_running() {
        let u = UciCli {
            bin: "/nonexistent/uci".into(),
            confdir: None,
            savedir: None,
        };
        let e = u.commit("../etc").unwrap_err();
        assert!(e.message().contains("invalid package name"), "{e}");
    }
}
