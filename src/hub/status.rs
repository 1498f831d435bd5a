//! `wgroam status`: the running agent writes `status.json` into its RAM
//! state directory whenever what it sees changes; the command reads it.
//! The JSON form is the machine interface and documented in README.

use std::io;
use std::path::Path;

use serde_json::{Value, json};

use crate::core::Now;
use crate::core::hub::Hub;
use crate::hub::state::change_json;
use crate::os::files::write_atomic_ram;

pub const FILE: &str = "status.json";

/// Facts about an interface that the core does not keep.
#[derive(Debug, Clone, Default)]
pub struct IfaceRuntime {
    pub backend: Option<&'static str>,
    pub listen_port: Option<u16>,
    pub capture: Option<String>,
    pub capture_error: Option<String>,
    /// Captured frames the kernel dropped because the agent fell behind.
    pub capture_drops: u64,
    /// Digest of the last WireGuard read (`runtime::view_print`).
    pub view_print: Option<u64>,
    /// Sum of the peers' byte counters at the last read: traffic moves it.
    pub traffic: Option<u64>,
}

pub fn hub_json(
    hub: &Hub,
    now: Now,
    started: u64,
    runtime: &dyn Fn(&str) -> IfaceRuntime,
) -> Value {
    let ifaces: Vec<Value> = hub
        .ifaces
        .values()
        .map(|i| {
            let rt = runtime(&i.name);
            let peers: Vec<Value> = i
                .peers
                .iter()
                .map(|(k, p)| {
                    json!({
                        "public_key": k.to_base64(),
                        "section": p.section,
                        "present": p.present,
                        "endpoint": p.endpoint.map(|e| e.to_string()),
                        "kernel_endpoint": p.kernel_endpoint.map(|e| e.to_string()),
                        "uci_endpoint": p.uci_endpoint.map(|e| e.to_string()),
                        "latest_handshake": p.last_handshake,
                        "rx_bytes": p.rx,
                        "tx_bytes": p.tx,
                        "last_change": p.last_change.map(change_json),
                        "stamp_trusted": p.trusted,
                        "indices": i.indices.values().filter(|x| x.key == *k && x.confirmed).count(),
                        "pending": p.pending.map(|x| json!({
                            "to": x.to.to_string(),
                            "why": x.why.as_str(),
                            "applied": x.applied,
                        })),
                        "initiations": p.diag.initiations,
                        "handshakes": p.diag.handshakes,
                        "replays": p.diag.replays,
                        "problem": p.diag.cause,
                    })
                })
                .collect();
            let ignored: serde_json::Map<String, Value> = i
                .ignored
                .iter()
                .map(|(w, n)| (w.as_str().to_string(), json!(n)))
                .collect();
            json!({
                "name": i.name,
                "up": i.up,
                "backend": rt.backend,
                "listen_port": rt.listen_port,
                "capture": rt.capture,
                "capture_error": rt.capture_error,
                "capture_drops": rt.capture_drops,
                "ignored": ignored,
                "peers": peers,
            })
        })
        .collect();
    json!({
        "version": 1,
        "role": "hub",
        "pid": std::process::id(),
        "started": started,
        "updated": now.wall,
        "uci": { "pending": hub.commit_pending(), "commits": hub.commits },
        "interfaces": ifaces,
    })
}

pub fn write(dir: &Path, status: &Value) -> io::Result<()> {
    write_atomic_ram(&dir.join(FILE), status.to_string().as_bytes())
}

fn pid_alive(pid: u64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks that the process exists.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// Reads the status file of a running agent.
pub fn read(dir: &Path) -> Result<Value, String> {
    let path = dir.join(FILE);
    let bytes = std::fs::read(&path).map_err(|e| {
        format!(
            "status: no status at {} ({e}); is 'wgroam run' running? (see --state-dir)",
            path.display()
        )
    })?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("status: {} is not valid JSON: {e}", path.display()))?;
    let pid = v.get("pid").and_then(Value::as_u64).unwrap_or(0);
    if !pid_alive(pid) {
        return Err(format!(
            "status: the agent (pid {pid}) is not running; last status at {}",
            path.display()
        ));
    }
    Ok(v)
}

fn age(now: u64, t: Option<u64>) -> String {
    match t {
        None => "never".into(),
        Some(t) => format!("{}s ago", now.saturating_sub(t)),
    }
}

/// The short human form.
pub fn human(v: &Value, now_wall: u64) -> String {
    let mut s = String::new();
    let role = v["role"].as_str().unwrap_or("?");
    s += &format!("wgroam {role}, pid {}\n", v["pid"]);
    for i in v["interfaces"].as_array().into_iter().flatten() {
        s += &format!(
            "interface {}: {}, {} backend, port {}, capture {}\n",
            i["name"].as_str().unwrap_or("?"),
            if i["up"].as_bool() == Some(true) {
                "up"
            } else {
                "DOWN"
            },
            i["backend"].as_str().unwrap_or("-"),
            i["listen_port"],
            i["capture"].as_str().unwrap_or("off"),
        );
        if let Some(e) = i["capture_error"].as_str() {
            s += &format!("  capture problem: {e}\n");
        }
        for p in i["peers"].as_array().into_iter().flatten() {
            let key = p["public_key"].as_str().unwrap_or("?");
            s += &format!(
                "  peer {}  endpoint {}  handshake {}  rx {} tx {}\n",
                &key[..key.len().min(8)],
                p["endpoint"].as_str().unwrap_or("(none)"),
                age(now_wall, p["latest_handshake"].as_u64()),
                p["rx_bytes"],
                p["tx_bytes"],
            );
            if let Some(c) = p["last_change"].as_object() {
                s += &format!(
                    "    moved {} from {} ({}, {})\n",
                    c["to"].as_str().unwrap_or("?"),
                    c["from"].as_str().unwrap_or("none"),
                    c["why"].as_str().unwrap_or("?"),
                    age(now_wall, c["at"].as_u64()),
                );
            }
            if let Some(problem) = p["problem"].as_str() {
                s += &format!("    problem: {problem}\n");
            }
        }
        if let Some(d) = i["delegation"].as_object() {
            let lans: Vec<String> = d
                .get("downstream")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(n, a)| format!("{n} {}", a.as_str().unwrap_or("-")))
                .collect();
            s += &format!(
                "  delegation {} {} via {}{}{}{}\n",
                d.get("state").and_then(Value::as_str).unwrap_or("?"),
                d.get("prefix").and_then(Value::as_str).unwrap_or("-"),
                d.get("via").and_then(Value::as_str).unwrap_or("?"),
                d.get("interface")
                    .and_then(Value::as_str)
                    .map_or(String::new(), |c| format!(" ({c})")),
                if lans.is_empty() {
                    String::new()
                } else {
                    format!(", {}", lans.join(", "))
                },
                d.get("mtu")
                    .and_then(Value::as_u64)
                    .map_or(String::new(), |m| format!(", LAN IPv6 MTU {m}")),
            );
            if let Some(problem) = d.get("problem").and_then(Value::as_str) {
                s += &format!("    problem: {problem}\n");
            }
        }
        if let Some(ign) = i["ignored"].as_object().filter(|o| !o.is_empty()) {
            let parts: Vec<String> = ign.iter().map(|(k, n)| format!("{k} {n}")).collect();
            s += &format!("  ignored packets: {}\n", parts.join(", "));
        }
        if let Some(d) = i["capture_drops"].as_u64().filter(|d| *d > 0) {
            s += &format!("  capture queue overflows: {d} packets dropped unread\n");
        }
    }
    if v["uci"]["pending"].as_bool() == Some(true) {
        s += "uci: endpoint changes staged (RAM), commit pending\n";
    }
    s
}
