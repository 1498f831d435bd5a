//! The `ubus` command (OpenWrt's bus to netifd and odhcpd), JSON in and out.
//! Exit codes follow ubus: the UBUS_STATUS_* number (4 a missing object,
//! 7 a timeout); some builds exit 256-N instead, so both are read. Every call
//! carries a timeout (`-t`): a hung netifd must not hang the agent.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

#[cfg(test)]
pub mod fake;

/// Environment variable naming the ubus binary (tests use a recorder).
pub const UBUS_BIN_ENV: &str = "WGROAM_UBUS_BIN";

/// Seconds one ubus call may take (`ubus -t`).
pub const UBUS_TIMEOUT_S: u32 = 3;

/// What went wrong with a call, as far as the caller decides on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UbusErrorKind {
    /// The object does not exist (UBUS_STATUS_NOT_FOUND).
    NotFound,
    /// No answer in time (UBUS_STATUS_TIMEOUT).
    Timeout,
    /// ubusd not reachable, or ubus not runnable.
    NoBus,
    Other,
}

/// A failed call: its kind and one line for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UbusError {
    pub kind: UbusErrorKind,
    pub msg: String,
}

impl std::fmt::Display for UbusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl From<UbusError> for String {
    fn from(e: UbusError) -> String {
        e.msg
    }
}

/// The bus: [`UbusCli`] is the real one, `fake::FakeUbus` (a netifd model)
/// the tests'.
pub trait Ubus {
    /// `ubus call OBJECT METHOD [ARGS]`; the reply as JSON (`Null` if empty).
    fn call(&self, object: &str, method: &str, args: Option<&Value>) -> Result<Value, UbusError>;
}

#[derive(Debug, Clone)]
pub struct UbusCli {
    pub bin: PathBuf,
}

impl UbusCli {
    pub fn from_env() -> Self {
        let bin = std::env::var_os(UBUS_BIN_ENV)
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from("ubus"), PathBuf::from);
        Self { bin }
    }
}

fn classify(code: Option<i32>, stderr: &str) -> (UbusErrorKind, String) {
    let status = code.map(|c| if c > 128 { 256 - c } else { c });
    let low = stderr.to_ascii_lowercase();
    match status {
        Some(4) => (
            UbusErrorKind::NotFound,
            "object not found (is netifd running?)".into(),
        ),
        Some(7) => (UbusErrorKind::Timeout, "no answer in time".into()),
        _ if low.contains("not found") => (UbusErrorKind::NotFound, "not found".into()),
        _ if low.contains("timed out") => (UbusErrorKind::Timeout, "no answer in time".into()),
        _ if low.contains("failed to connect") || status == Some(10) => {
            (UbusErrorKind::NoBus, "cannot connect to ubusd".into())
        }
        Some(c) if code.is_some_and(|c| c > 128) => (
            UbusErrorKind::Other,
            format!("method failed with ubus error {c}"),
        ),
        Some(c) => (UbusErrorKind::Other, format!("exit code {c}")),
        None => (UbusErrorKind::Other, "killed by a signal".into()),
    }
}

impl Ubus for UbusCli {
    fn call(&self, object: &str, method: &str, args: Option<&Value>) -> Result<Value, UbusError> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["-t", &UBUS_TIMEOUT_S.to_string(), "call", object, method]);
        if let Some(a) = args {
            cmd.arg(a.to_string());
        }
        let line = format!("ubus call {object} {method}");
        let out = cmd.output().map_err(|e| UbusError {
            kind: UbusErrorKind::NoBus,
            msg: format!("{line}: cannot run {}: {e}", self.bin.display()),
        })?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let err = err.trim();
            let (kind, what) = classify(out.status.code(), err);
            return Err(UbusError {
                kind,
                msg: format!(
                    "{line}: {what}{}{err}",
                    if err.is_empty() { "" } else { ": " }
                ),
            });
        }
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        // from_slice, like every other JSON reader here: one instance of
        // serde_json's parser, not a second one for &str (~5 KB on mips).
        serde_json::from_slice(text.as_bytes()).map_err(|e| UbusError {
            kind: UbusErrorKind::Other,
            msg: format!("{line}: reply is not JSON ({e})"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(body: &str) -> (PathBuf, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("wgroam-ubus-{}-{}", std::process::id(), body.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("ubus");
        std::fs::write(&bin, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        (dir, bin)
    }

    #[test]
    fn passes_arguments_and_parses_replies() {
        let (dir, bin) = script("echo \"$@\" > \"$(dirname \"$0\")/args\"; echo '{\"up\": true}'");
        let u = UbusCli { bin };
        let v = u
            .call(
                "network.interface.wg0",
                "status",
                Some(&serde_json::json!({"a": 1})),
            )
            .unwrap();
        assert_eq!(v["up"], true);
        let args = std::fs::read_to_string(dir.join("args")).unwrap();
        assert_eq!(
            args.trim(),
            r#"-t 3 call network.interface.wg0 status {"a":1}"#
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn exit_codes_become_one_line_errors() {
        let (dir, bin) = script("exit 4");
        let e = UbusCli { bin }.call("network", "reload", None).unwrap_err();
        assert_eq!(
            e.msg,
            "ubus call network reload: object not found (is netifd running?)"
        );
        assert_eq!(e.kind, UbusErrorKind::NotFound);
        std::fs::remove_dir_all(dir).unwrap();
        let (dir, bin) = script("echo 'Command failed: Not found' >&2; exit 252");
        let e = UbusCli { bin }.call("network", "reload", None).unwrap_err();
        assert_eq!(e.kind, UbusErrorKind::NotFound, "{e}");
        assert!(e.msg.contains("Not found"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
        let (dir, bin) = script("echo 'Command failed: Request timed out' >&2; exit 7");
        let e = UbusCli { bin }.call("network", "reload", None).unwrap_err();
        assert_eq!(e.kind, UbusErrorKind::Timeout, "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
