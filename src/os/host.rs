//! The host's knobs the relay turns besides routes: `/proc/sys`, the `nft`
//! tool, the NDP responders and device indices, behind [`RelayHost`];
//! [`SystemHost`] is the real one, [`fake::FakeHost`] the tests'.

use std::collections::HashMap;
use std::io::{self, Write};
use std::process::{Command, Stdio};

use crate::core::net::IpNet;
use crate::os::ndp::Responder;

/// The system calls the relay needs besides routing; fakes in tests.
pub trait RelayHost {
    /// A device's index; `None` when it does not exist.
    fn ifindex(&mut self, name: &str) -> Option<u32>;
    /// A link appeared, went or changed (rtnetlink): indices may have.
    fn links_changed(&mut self) {}
    /// Link events are watched: every change reaches
    /// [`RelayHost::links_changed`], so cached indices need no expiry.
    fn links_watched(&mut self) {}
    /// `/proc/sys/<key>`, trimmed.
    fn read_sysctl(&mut self, key: &str) -> io::Result<String>;
    fn write_sysctl(&mut self, key: &str, value: &str) -> io::Result<()>;
    /// Runs `nft -f -` with `script`.
    fn nft(&mut self, script: &str) -> io::Result<()>;
    /// Answers solicitations on `wan` for `targets`; empty stops.
    fn ndp(&mut self, wan: &str, targets: &[IpNet]) -> io::Result<()>;
    /// WANs whose responder stopped by itself since the last call.
    fn ndp_dead(&mut self) -> Vec<String>;
}

/// Without link events (rtnetlink unavailable), indices are looked up
/// again after this long.
const INDEX_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// The real host: `/proc/sys`, the `nft` tool, NDP responder threads.
#[derive(Default)]
pub struct SystemHost {
    responders: HashMap<String, Responder>,
    /// Device indices, kept until a link event: `if_nametoindex` opens a
    /// socket each time, and the relay asks at every reconciliation.
    indices: HashMap<String, (u32, std::time::Instant)>,
    /// Link events reach us: no [`INDEX_TTL`].
    watched: bool,
}

impl RelayHost for SystemHost {
    fn ifindex(&mut self, name: &str) -> Option<u32> {
        if let Some((i, at)) = self.indices.get(name)
            && (self.watched || at.elapsed() < INDEX_TTL)
        {
            return Some(*i);
        }
        let i = crate::os::capture::ifindex(name).ok();
        match i {
            Some(i) => {
                self.indices
                    .insert(name.to_string(), (i, std::time::Instant::now()));
            }
            None => {
                self.indices.remove(name);
            }
        }
        i
    }

    fn links_changed(&mut self) {
        self.indices.clear();
    }

    fn links_watched(&mut self) {
        self.watched = true;
    }

    fn read_sysctl(&mut self, key: &str) -> io::Result<String> {
        std::fs::read_to_string(format!("/proc/sys/{key}")).map(|s| s.trim().to_string())
    }

    fn write_sysctl(&mut self, key: &str, value: &str) -> io::Result<()> {
        std::fs::write(format!("/proc/sys/{key}"), value)
    }

    fn nft(&mut self, script: &str) -> io::Result<()> {
        let mut child = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run nft: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(script.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if out.status.success() {
            return Ok(());
        }
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        Err(io::Error::other(format!(
            "nft failed ({}): {first}",
            out.status
        )))
    }

    fn ndp(&mut self, wan: &str, targets: &[IpNet]) -> io::Result<()> {
        if targets.is_empty() {
            self.responders.remove(wan);
            return Ok(());
        }
        if let Some(r) = self.responders.get(wan)
            && r.alive()
        {
            r.set_targets(targets.to_vec());
            return Ok(());
        }
        self.responders.remove(wan);
        let r = Responder::start(wan, targets.to_vec())?;
        self.responders.insert(wan.to_string(), r);
        Ok(())
    }

    fn ndp_dead(&mut self) -> Vec<String> {
        let dead: Vec<String> = self
            .responders
            .iter()
            .filter(|(_, r)| !r.alive())
            .map(|(w, _)| w.clone())
            .collect();
        for w in &dead {
            self.responders.remove(w);
        }
        dead
    }
}

/// A host in memory: sysctls in a map, nft scripts and NDP calls recorded.
#[cfg(test)]
pub mod fake {
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::rc::Rc;

    use super::*;

    #[derive(Default)]
    pub struct Host {
        pub sysctl: BTreeMap<String, String>,
        pub nft: Vec<String>,
        /// Fail this many of the next nft scripts.
        pub nft_fail: usize,
        pub ndp: Vec<(String, Vec<IpNet>)>,
        /// Responders that died, reported by the next `ndp_dead`.
        pub dead: Vec<String>,
        /// sysctls read.
        pub reads: usize,
    }

    /// `wg0` is index 7; nothing else exists.
    pub struct FakeHost(pub Rc<RefCell<Host>>);

    impl RelayHost for FakeHost {
        fn ifindex(&mut self, name: &str) -> Option<u32> {
            (name == "wg0").then_some(7)
        }
        fn read_sysctl(&mut self, key: &str) -> io::Result<String> {
            self.0.borrow_mut().reads += 1;
            self.0
                .borrow()
                .sysctl
                .get(key)
                .cloned()
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        }
        fn write_sysctl(&mut self, key: &str, value: &str) -> io::Result<()> {
            self.0.borrow_mut().sysctl.insert(key.into(), value.into());
            Ok(())
        }
        fn nft(&mut self, script: &str) -> io::Result<()> {
            let mut h = self.0.borrow_mut();
            h.nft.push(script.into());
            if h.nft_fail > 0 {
                h.nft_fail -= 1;
                return Err(io::Error::other(
                    "nft failed: Error: No such file or directory",
                ));
            }
            Ok(())
        }
        fn ndp(&mut self, wan: &str, targets: &[IpNet]) -> io::Result<()> {
            self.0.borrow_mut().ndp.push((wan.into(), targets.to_vec()));
            Ok(())
        }
        fn ndp_dead(&mut self) -> Vec<String> {
            std::mem::take(&mut self.0.borrow_mut().dead)
        }
    }
}
