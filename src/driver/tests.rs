//! The loop against a scripted fake of the operating system and a role that
//! records what it was asked: deadlines become poll timeouts, readable fds
//! reach the role as its tokens, and each signal does what it says.

use std::cell::RefCell;
use std::collections::VecDeque;

use super::*;
use crate::config::from_sections;
use crate::config::uci::syntax::parse_config;

const CONFIG: &str = "config agent 'agent'\n\toption role 'hub'\n\
    config interface 'wg0'\n\toption ifname 'wg0'\n";

fn config() -> Config {
    from_sections(&parse_config("wgroam", CONFIG).unwrap()).unwrap()
}

/// One wakeup of the fake `poll`: how long it slept, which fds were
/// readable and which signal came with it.
struct Step {
    slept_ms: u64,
    ready: Vec<bool>,
    signal: Option<Signal>,
}

fn step(slept_ms: u64, ready: &[bool], signal: Option<Signal>) -> Step {
    Step {
        slept_ms,
        ready: ready.to_vec(),
        signal,
    }
}

#[derive(Default)]
struct FakeWake {
    mono_ms: RefCell<u64>,
    script: VecDeque<Step>,
    /// (fds, timeout) of every wait.
    waits: Vec<(Vec<RawFd>, u64)>,
}

impl Wake for FakeWake {
    fn now(&self) -> Now {
        Now::new(*self.mono_ms.borrow(), 1_700_000_000)
    }

    fn wait(
        &mut self,
        fds: &[RawFd],
        timeout_ms: u64,
    ) -> Result<(Vec<bool>, Option<Signal>), String> {
        self.waits.push((fds.to_vec(), timeout_ms));
        let s = self
            .script
            .pop_front()
            .ok_or("script ran out (the loop did not stop)")?;
        assert!(s.slept_ms <= timeout_ms, "slept past the timeout");
        *self.mono_ms.borrow_mut() += s.slept_ms;
        Ok((s.ready, s.signal))
    }
}

#[derive(Default)]
struct FakeRole {
    calls: Vec<String>,
    /// Deadline the role reports; `turn` moves it on by `every`.
    next: u64,
    every: u64,
    fds: Vec<(RawFd, &'static str)>,
    refuse_reload: bool,
}

impl Role for FakeRole {
    type Token = &'static str;

    fn name(&self) -> &'static str {
        "fake"
    }
    fn managing(&self) -> String {
        "wg0".into()
    }
    fn turn(&mut self, now: Now) {
        if now.mono_ms >= self.next {
            self.calls.push(format!("turn@{}", now.mono_ms));
            self.next = now.mono_ms + self.every;
        }
    }
    fn wake_at(&self) -> u64 {
        self.next
    }
    fn fds(&self) -> Vec<(RawFd, &'static str)> {
        self.fds.clone()
    }
    fn ready(&mut self, now: Now, token: &'static str) {
        self.calls.push(format!("ready {token}@{}", now.mono_ms));
    }
    fn flush(&mut self, _: Now, force: bool) {
        if force {
            self.calls.push("flush!".into());
        }
    }
    fn reload(&mut self, cfg: Config, _: Now) -> Result<(), String> {
        if self.refuse_reload {
            return Err("no".into());
        }
        self.calls
            .push(format!("reload {}", cfg.interfaces[0].ifname));
        Ok(())
    }
    fn nudge(&mut self, now: Now) {
        self.calls.push(format!("nudge@{}", now.mono_ms));
        self.next = now.mono_ms;
    }
    fn stop(&mut self, _: Now) {
        self.calls.push("stop".into());
    }
}

fn run_script(role: &mut FakeRole, script: Vec<Step>) -> FakeWake {
    let mut wake = FakeWake {
        script: script.into(),
        ..Default::default()
    };
    run(role, &mut wake, &|| Ok(config())).unwrap();
    wake
}

#[test]
fn sleeps_until_the_roles_deadline_and_turns_when_it_is_due() {
    let mut role = FakeRole {
        every: 500,
        ..Default::default()
    };
    let wake = run_script(
        &mut role,
        vec![
            step(500, &[], None),
            step(200, &[], None),
            step(300, &[], Some(Signal::Stop)),
        ],
    );
    let timeouts: Vec<u64> = wake.waits.iter().map(|w| w.1).collect();
    assert_eq!(timeouts, [500, 500, 300]);
    assert_eq!(role.calls, ["turn@0", "turn@500", "stop", "flush!"]);
}

#[test]
fn a_readable_fd_reaches_the_role_as_its_token_and_others_do_not() {
    let mut role = FakeRole {
        every: 10_000,
        fds: vec![(7, "capture"), (9, "redeem")],
        ..Default::default()
    };
    let wake = run_script(
        &mut role,
        vec![
            step(20, &[false, true], None),
            step(5, &[true, true], Some(Signal::Stop)),
        ],
    );
    assert_eq!(wake.waits[0].0, [7, 9], "the role's fds, in order");
    assert_eq!(
        role.calls,
        [
            "turn@0",
            "ready redeem@20",
            "ready capture@25",
            "ready redeem@25",
            "stop",
            "flush!"
        ]
    );
}

#[test]
fn a_role_without_deadlines_still_wakes_once_a_minute() {
    let mut role = FakeRole {
        next: u64::MAX,
        ..Default::default()
    };
    let wake = run_script(&mut role, vec![step(0, &[], Some(Signal::Stop))]);
    assert_eq!(wake.waits[0].1, MAX_SLEEP_MS);
}

#[test]
fn reload_applies_a_valid_config_and_nudge_looks_at_once() {
    let mut role = FakeRole {
        every: 1000,
        ..Default::default()
    };
    let wake = run_script(
        &mut role,
        vec![
            step(100, &[], Some(Signal::Reload)),
            step(100, &[], Some(Signal::Nudge)),
            step(0, &[], Some(Signal::Stop)),
        ],
    );
    assert_eq!(
        role.calls,
        [
            "turn@0",
            "reload wg0",
            "nudge@200",
            "turn@200",
            "stop",
            "flush!"
        ]
    );
    assert_eq!(
        wake.waits[2].1, 1000,
        "after the nudge's turn, a full period"
    );
}

#[test]
fn a_refused_reload_keeps_the_loop_running_with_the_old_config() {
    let mut role = FakeRole {
        every: 1000,
        refuse_reload: true,
        ..Default::default()
    };
    let mut wake = FakeWake {
        script: vec![
            step(10, &[], Some(Signal::Reload)),
            step(0, &[], Some(Signal::Stop)),
        ]
        .into(),
        ..Default::default()
    };
    // A config that fails validation never reaches the role.
    run(&mut role, &mut wake, &|| {
        Err("wgroam.agent.role: bad".into())
    })
    .unwrap();
    assert_eq!(role.calls, ["turn@0", "stop", "flush!"]);
    role.calls.clear();
    role.next = 0;
    let mut wake = FakeWake {
        script: vec![
            step(10, &[], Some(Signal::Reload)),
            step(0, &[], Some(Signal::Stop)),
        ]
        .into(),
        ..Default::default()
    };
    // One that validates but the role refuses: still running.
    run(&mut role, &mut wake, &|| Ok(config())).unwrap();
    assert_eq!(role.calls, ["turn@0", "stop", "flush!"]);
}

#[test]
fn a_failing_poll_ends_the_loop_with_the_error() {
    let mut role = FakeRole::default();
    let mut wake = FakeWake::default();
    let e = run(&mut role, &mut wake, &|| Ok(config())).unwrap_err();
    assert!(e.contains("script ran out"), "{e}");
}
