//! SIGTERM/SIGINT (stop), SIGHUP (reload) and SIGUSR1/SIGUSR2 (OpenWrt's
//! hotplug scripts: an uplink changed, the clock was synchronised) delivered
//! through a self-pipe, so the single-threaded poll loop wakes up for them
//! like for any fd. USR1/USR2 must be handled: their default action kills.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

static WRITE_FD: AtomicI32 = AtomicI32::new(-1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Stop,
    Reload,
    /// Something changed outside (uplink, clock): look again now.
    Nudge,
}

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = WRITE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = sig as u8;
        // SAFETY: write(2) is async-signal-safe; the pipe is non-blocking.
        unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
    }
}

/// The read end of the self-pipe.
pub struct Signals {
    read_fd: RawFd,
}

impl Signals {
    pub fn install() -> io::Result<Self> {
        let mut fds = [0; 2];
        // SAFETY: fds is a valid array of two ints.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        WRITE_FD.store(fds[1], Ordering::Relaxed);
        for sig in [
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGUSR1,
            libc::SIGUSR2,
        ] {
            // SAFETY: a zeroed sigaction with a plain handler is valid.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as *const () as usize;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        // A closed stdout (procd, a pipe) must not kill us.
        // SAFETY: ignoring SIGPIPE is always valid.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        Ok(Self { read_fd: fds[0] })
    }

    pub fn fd(&self) -> RawFd {
        self.read_fd
    }

    /// Drains pending signals; Stop wins over Reload, Reload over Nudge.
    pub fn take(&self) -> Option<Signal> {
        let mut buf = [0u8; 16];
        let mut got: Option<Signal> = None;
        loop {
            // SAFETY: reading into a valid buffer from our own pipe.
            let n = unsafe { libc::read(self.read_fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return got;
            }
            for &b in &buf[..n as usize] {
                let s = match i32::from(b) {
                    libc::SIGHUP => Signal::Reload,
                    libc::SIGUSR1 | libc::SIGUSR2 => Signal::Nudge,
                    _ => Signal::Stop,
                };
                got = Some(match (got, s) {
                    (Some(Signal::Stop), _) | (_, Signal::Stop) => Signal::Stop,
                    (Some(Signal::Reload), _) | (_, Signal::Reload) => Signal::Reload,
                    _ => Signal::Nudge,
                });
            }
        }
    }
}

/// Waits until one of `fds` is readable or `timeout_ms` passes; returns the
/// readiness of each fd.
pub fn wait(fds: &[RawFd], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: pfds is a valid, correctly sized array.
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(e);
    }
    Ok(pfds.iter().map(|p| p.revents != 0).collect())
}

/// Monotonic and wall-clock time, read once per loop turn.
pub fn now() -> crate::core::Now {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let mono_ms = ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000;
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    crate::core::Now::new(mono_ms, wall)
}
