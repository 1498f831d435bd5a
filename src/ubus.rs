//! The `ubus` command (OpenWrt's bus to netifd and odhcpd), JSON in and out.
//! Exit codes follow ubus: 4 is a missing object; a method returning error N
//! exits 256-N.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// Environment variable naming the ubus binary (tests use a recorder).
pub const UBUS_BIN_ENV: &str = "WGROAM_UBUS_BIN";

pub trait Ubus {
    /// `ubus call OBJECT METHOD [ARGS]`; the reply as JSON (`Null` if empty).
    fn call(&self, object: &str, method: &str, args: Option<&Value>) -> Result<Value, String>;
}

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

fn describe(code: Option<i32>) -> String {
    match code {
        Some(4) => "object not found (is netifd running?)".into(),
        Some(c) if c > 128 => format!("method failed with ubus error {}", 256 - c),
        Some(c) => format!("exit code {c}"),
        None => "killed by a signal".into(),
    }
}

impl Ubus for UbusCli {
    fn call(&self, object: &str, method: &str, args: Option<&Value>) -> Result<Value, String> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["call", object, method]);
        if let Some(a) = args {
            cmd.arg(a.to_string());
        }
        let line = format!("ubus call {object} {method}");
        let out = cmd
            .output()
            .map_err(|e| format!("{line}: cannot run {}: {e}", self.bin.display()))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let err = err.trim();
            return Err(format!(
                "{line}: {}{}{err}",
                describe(out.status.code()),
                if err.is_empty() { "" } else { ": " }
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| format!("{line}: reply is not JSON ({e})"))
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
        assert_eq!(args.trim(), r#"call network.interface.wg0 status {"a":1}"#);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn exit_codes_become_one_line_errors() {
        let (dir, bin) = script("exit 4");
        let e = UbusCli { bin }.call("network", "reload", None).unwrap_err();
        assert_eq!(
            e,
            "ubus call network reload: object not found (is netifd running?)"
        );
        std::fs::remove_dir_all(dir).unwrap();
        let (dir, bin) = script("echo 'Command failed: Not found' >&2; exit 252");
        let e = UbusCli { bin }.call("network", "reload", None).unwrap_err();
        assert!(e.contains("ubus error 4") && e.contains("Not found"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
