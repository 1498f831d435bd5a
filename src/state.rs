//! The agent's memory across restarts: each peer's learned endpoint, the
//! freshest handshake stamp seen from it and why it last moved. Written
//! atomically; a missing or damaged file means "nothing remembered".

use std::path::Path;

use serde_json::{Value, json};

use crate::core::PublicKey;
use crate::core::hub::{Change, Hub, Remembered, Why};
use crate::persist::write_atomic;

pub fn to_json(hub: &Hub) -> Value {
    let peers: Vec<Value> = hub
        .ifaces
        .values()
        .flat_map(|i| i.peers.iter().map(move |(k, p)| (i, k, p)))
        .filter_map(|(i, k, p)| {
            let ep = p.endpoint?;
            Some(json!({
                "iface": i.name,
                "key": k.to_base64(),
                "endpoint": ep.to_string(),
                "stamp": p.stamp.map(|(s, n)| json!([s, n])),
                "change": p.last_change.map(change_json),
            }))
        })
        .collect();
    json!({ "version": 1, "peers": peers })
}

pub fn change_json(c: Change) -> Value {
    json!({
        "at": c.at_wall,
        "from": c.from.map(|f| f.to_string()),
        "to": c.to.to_string(),
        "why": c.why.as_str(),
    })
}

fn change_from(v: &Value) -> Option<Change> {
    Some(Change {
        at_wall: v.get("at")?.as_u64()?,
        from: v.get("from")?.as_str().and_then(|s| s.parse().ok()),
        to: v.get("to")?.as_str()?.parse().ok()?,
        why: Why::parse(v.get("why")?.as_str()?)?,
    })
}

/// Parses a state file; entries that do not parse are skipped.
pub fn from_json(v: &Value) -> Vec<Remembered> {
    let Some(peers) = v.get("peers").and_then(Value::as_array) else {
        return Vec::new();
    };
    peers
        .iter()
        .filter_map(|p| {
            Some(Remembered {
                key: PublicKey::from_base64(p.get("key")?.as_str()?)?,
                endpoint: p.get("endpoint")?.as_str()?.parse().ok()?,
                stamp: p.get("stamp").and_then(|s| {
                    Some((
                        s.get(0)?.as_u64()?,
                        u32::try_from(s.get(1)?.as_u64()?).ok()?,
                    ))
                }),
                change: p.get("change").and_then(change_from),
            })
        })
        .collect()
}

/// Loads what a previous run remembered. Never fails the start: a damaged
/// file is reported and ignored.
pub fn load(path: &Path) -> (Vec<Remembered>, Option<String>) {
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), None),
        Err(e) => (
            Vec::new(),
            Some(format!("state: cannot read {}: {e}", path.display())),
        ),
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => (from_json(&v), None),
            Err(e) => (
                Vec::new(),
                Some(format!(
                    "state: {} is damaged ({e}); starting fresh",
                    path.display()
                )),
            ),
        },
    }
}

pub fn save(path: &Path, hub: &Hub) -> std::io::Result<()> {
    write_atomic(path, to_json(hub).to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Now;
    use crate::core::hub::{Event, HubPolicy, PeerSnapshot};

    #[test]
    fn round_trips_what_the_hub_learned() {
        let mut hub = Hub::new(HubPolicy::default(), &["wg0".into()], vec![]);
        let now = Now::new(1, 1_700_000_000);
        hub.handle(
            now,
            Event::Observed {
                iface: "wg0".into(),
                peers: Some(vec![PeerSnapshot {
                    key: PublicKey([3; 32]),
                    endpoint: Some("[2001:db8::5]:51820".parse().unwrap()),
                    last_handshake: Some(now.wall),
                    rx: 5,
                    tx: 5,
                }]),
            },
        );
        let back = from_json(&to_json(&hub));
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].key, PublicKey([3; 32]));
        assert_eq!(back[0].endpoint.to_string(), "[2001:db8::5]:51820");
        assert_eq!(back[0].change.unwrap().why, Why::Kernel);
    }

    #[test]
    fn damaged_file_is_ignored_with_a_reason() {
        let p = std::env::temp_dir().join(format!("wgroam-state-{}.json", std::process::id()));
        std::fs::write(&p, b"{\"peers\": [tru").unwrap();
        let (r, why) = load(&p);
        assert!(r.is_empty());
        assert!(why.unwrap().contains("damaged"));
        std::fs::write(&p, br#"{"peers":[{"key":"x","endpoint":"1.2.3.4:5"}]}"#).unwrap();
        assert!(load(&p).0.is_empty(), "bad key skipped");
        std::fs::remove_file(&p).unwrap();
        assert_eq!(load(&p), (vec![], None));
    }
}
