//! The one event loop both roles run in: one thread, one `poll(2)`.
//!
//! Every turn the loop lets the role do what is due ([`Role::turn`]), writes
//! what changed ([`Role::flush`]), then sleeps until the role's next deadline
//! ([`Role::wake_at`]), one of its descriptors becomes readable
//! ([`Role::fds`]) or a signal arrives: SIGTERM/SIGINT stop cleanly, SIGHUP
//! reloads a config that validated (a bad one is refused and the running one
//! kept), SIGUSR1/SIGUSR2 (hotplug, ntp) make the role look again at once.
//!
//! What differs between the hub and the roam is behind [`Role`]; the
//! operating system (clock, signal pipe, `poll`) is behind [`Wake`], so the
//! loop itself is tested with a scripted fake of both.

use std::os::fd::RawFd;

use crate::config::Config;
use crate::core::{Level, Now};
use crate::os::signals::{self, Signal, Signals};
use crate::os::syslog::emit;

/// The loop never sleeps longer than this, whatever the role asks.
pub const MAX_SLEEP_MS: u64 = 60_000;

/// One role's glue as the loop drives it.
pub trait Role {
    /// What a readable descriptor stands for (a capture, a listener, ...).
    type Token: Clone;

    /// "hub" or "roam": the start and stop log lines name it.
    fn name(&self) -> &'static str;
    /// What it manages, for the start line ("wg0, wg1").
    fn managing(&self) -> String;
    /// Does whatever is due at `now`: reads the kernel, ticks the core.
    fn turn(&mut self, now: Now);
    /// The monotonic millisecond at which [`Role::turn`] has work again.
    fn wake_at(&self) -> u64;
    /// Descriptors to wait on beside the signal pipe, each with its token.
    fn fds(&self) -> Vec<(RawFd, Self::Token)>;
    /// A descriptor from the last [`Role::fds`] is readable.
    fn ready(&mut self, now: Now, token: Self::Token);
    /// Writes state and status if they changed (`force`: in any case).
    fn flush(&mut self, now: Now, force: bool);
    /// Applies a config that passed validation; `Err` keeps the running one.
    fn reload(&mut self, cfg: Config, now: Now) -> Result<(), String>;
    /// Something changed outside (uplink, clock): look again now.
    fn nudge(&mut self, now: Now);
    /// Clean stop; the loop flushes (forced) after it.
    fn stop(&mut self, now: Now);
}

/// The operating system as the loop sees it.
pub trait Wake {
    fn now(&self) -> Now;
    /// Sleeps until one of `fds` is readable, a signal arrives or
    /// `timeout_ms` passes; returns each fd's readiness and the signal
    /// taken, if any.
    fn wait(
        &mut self,
        fds: &[RawFd],
        timeout_ms: u64,
    ) -> Result<(Vec<bool>, Option<Signal>), String>;
}

/// The real clock, signal self-pipe and `poll(2)`.
pub struct SystemWake<'a> {
    pub signals: &'a Signals,
}

impl Wake for SystemWake<'_> {
    fn now(&self) -> Now {
        signals::now()
    }

    fn wait(
        &mut self,
        fds: &[RawFd],
        timeout_ms: u64,
    ) -> Result<(Vec<bool>, Option<Signal>), String> {
        let mut all = Vec::with_capacity(fds.len() + 1);
        all.push(self.signals.fd());
        all.extend_from_slice(fds);
        let ready = signals::wait(&all, timeout_ms as i32).map_err(|e| format!("poll: {e}"))?;
        // The self-pipe is read only when poll says so: a signal that
        // arrives later keeps it readable for the next wait.
        let signal = if ready[0] { self.signals.take() } else { None };
        Ok((ready[1..].to_vec(), signal))
    }
}

/// Runs `role` until SIGTERM. `reload` re-reads and validates the config.
pub fn run<R: Role>(
    role: &mut R,
    wake: &mut impl Wake,
    reload: &dyn Fn() -> Result<Config, String>,
) -> Result<(), String> {
    emit(
        Level::Notice,
        &format!("{} started, managing {}", role.name(), role.managing()),
    );
    loop {
        let now = wake.now();
        role.turn(now);
        role.flush(now, false);
        let fds = role.fds();
        let raw: Vec<RawFd> = fds.iter().map(|(fd, _)| *fd).collect();
        let timeout = role
            .wake_at()
            .saturating_sub(wake.now().mono_ms)
            .min(MAX_SLEEP_MS);
        let (ready, signal) = wake.wait(&raw, timeout)?;
        let now = wake.now();
        for ((_, token), r) in fds.into_iter().zip(ready) {
            if r {
                role.ready(now, token);
            }
        }
        match signal {
            Some(Signal::Stop) => {
                role.stop(now);
                role.flush(now, true);
                emit(Level::Notice, &format!("{} stopped", role.name()));
                return Ok(());
            }
            Some(Signal::Reload) => match reload().and_then(|cfg| role.reload(cfg, now)) {
                Ok(()) => emit(Level::Notice, "config reloaded"),
                Err(e) => emit(
                    Level::Error,
                    &format!("reload refused, keeping the running config: {e}"),
                ),
            },
            Some(Signal::Nudge) => role.nudge(now),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests;
