//! The agent's memory across restarts: each peer's learned endpoint, the
//! freshest handshake stamp seen from it and why it last moved. Written
//! atomically; a missing or damaged file means "nothing remembered".

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::core::PublicKey;
use crate::core::hub::{Change, Hub, LinkId, Memory, Remembered, Why};
use crate::os::files::write_atomic;

/// Version 2 adds what trust needs (the link, each peer's latest handshake
/// when written, whether its stamp was proven) and the learnt indices. A
/// version 1 file still gives its stamps as replay floors, nothing more.
pub fn to_json(hub: &Hub) -> Value {
    let links: serde_json::Map<String, Value> = hub
        .ifaces
        .values()
        .filter_map(|i| {
            let l = i.link?;
            Some((
                i.name.clone(),
                json!({ "ifindex": l.ifindex, "public_key": l.public_key.to_base64() }),
            ))
        })
        .collect();
    let peers: Vec<Value> = hub
        .ifaces
        .values()
        .flat_map(|i| i.peers.iter().map(move |(k, p)| (i, k, p)))
        .filter_map(|(i, k, p)| {
            let indices: Vec<Value> = i
                .indices
                .iter()
                .filter(|(_, x)| x.key == *k && x.confirmed)
                .map(|(n, x)| json!([n, x.max_counter]))
                .collect();
            if p.endpoint.is_none() && p.stamp.is_none() && indices.is_empty() {
                return None;
            }
            Some(json!({
                "iface": i.name,
                "key": k.to_base64(),
                "endpoint": p.endpoint.map(|e| e.to_string()),
                "stamp": p.stamp.map(|(s, n)| json!([s, n])),
                "trusted": p.trusted,
                "latest_handshake": p.last_handshake,
                "change": p.last_change.map(change_json),
                "indices": indices,
            }))
        })
        .collect();
    json!({ "version": 2, "saved_at": hub.last_wall, "links": links, "peers": peers })
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

fn link_from(v: &Value) -> Option<LinkId> {
    Some(LinkId {
        ifindex: u32::try_from(v.get("ifindex")?.as_u64()?).ok()?,
        public_key: PublicKey::from_base64(v.get("public_key")?.as_str()?)?,
    })
}

/// Parses a state file; entries that do not parse are skipped.
pub fn from_json(v: &Value) -> Memory {
    let version = v.get("version").and_then(Value::as_u64).unwrap_or(0);
    let links: BTreeMap<String, LinkId> = if version >= 2 {
        v.get("links")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(n, l)| Some((n.clone(), link_from(l)?)))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        BTreeMap::new()
    };
    let peers = v
        .get("peers")
        .and_then(Value::as_array)
        .map(|peers| {
            peers
                .iter()
                .filter_map(|p| {
                    Some(Remembered {
                        iface: p.get("iface")?.as_str()?.to_string(),
                        key: PublicKey::from_base64(p.get("key")?.as_str()?)?,
                        endpoint: p
                            .get("endpoint")
                            .and_then(Value::as_str)
                            .and_then(|s| s.parse().ok()),
                        stamp: p.get("stamp").and_then(|s| {
                            Some((
                                s.get(0)?.as_u64()?,
                                u32::try_from(s.get(1)?.as_u64()?).ok()?,
                            ))
                        }),
                        trusted: version >= 2
                            && p.get("trusted").and_then(Value::as_bool) == Some(true),
                        last_handshake: p.get("latest_handshake").and_then(Value::as_u64),
                        change: p.get("change").and_then(change_from),
                        indices: p
                            .get("indices")
                            .and_then(Value::as_array)
                            .map(|a| {
                                a.iter()
                                    .filter_map(|x| {
                                        Some((
                                            u32::try_from(x.get(0)?.as_u64()?).ok()?,
                                            x.get(1).and_then(Value::as_u64),
                                        ))
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Memory {
        saved_at: v.get("saved_at").and_then(Value::as_u64).unwrap_or(0),
        links,
        peers,
    }
}

/// Loads what a previous run remembered. Never fails the start: a damaged
/// file is reported and ignored.
pub fn load(path: &Path) -> (Memory, Option<String>) {
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Memory::default(), None),
        Err(e) => (
            Memory::default(),
            Some(format!("state: cannot read {}: {e}", path.display())),
        ),
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => (from_json(&v), None),
            Err(e) => (
                Memory::default(),
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

    fn snap(ep: &str, hs: u64, rx: u64) -> PeerSnapshot {
        PeerSnapshot {
            key: PublicKey([3; 32]),
            endpoint: Some(ep.parse().unwrap()),
            last_handshake: Some(hs),
            rx,
            tx: 5,
        }
    }

    #[test]
    fn round_trips_what_the_hub_learned() {
        let mut hub = Hub::new(HubPolicy::default(), &["wg0".into()], Memory::default());
        let now = Now::new(1, 1_700_000_000);
        let link = LinkId {
            ifindex: 7,
            public_key: PublicKey([9; 32]),
        };
        hub.handle(
            now,
            Event::Link {
                iface: "wg0".into(),
                link: Some(link),
            },
        );
        let observe = |hub: &mut Hub, t: Now, hs, rx| {
            hub.handle(
                t,
                Event::Observed {
                    iface: "wg0".into(),
                    peers: Some(vec![snap("[2001:db8::5]:51820", hs, rx)]),
                },
            )
        };
        observe(&mut hub, now, now.wall - 10, 5);
        // Authenticated data from there: confirmed, remembered.
        observe(&mut hub, now.after_ms(500), now.wall - 10, 500);
        let back = from_json(&to_json(&hub));
        assert_eq!(back.links["wg0"], link);
        assert_eq!(back.saved_at, now.wall);
        assert_eq!(back.peers.len(), 1);
        let p = &back.peers[0];
        assert_eq!((p.iface.as_str(), p.key), ("wg0", PublicKey([3; 32])));
        assert_eq!(p.endpoint.unwrap().to_string(), "[2001:db8::5]:51820");
        assert_eq!(p.last_handshake, Some(now.wall - 10));
        assert_eq!(p.change.unwrap().why, Why::Kernel);
    }

    #[test]
    fn a_version_1_file_gives_replay_floors_only() {
        let v: Value = serde_json::from_str(
            r#"{"version":1,"peers":[{"iface":"wg0","key":"AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=",
            "endpoint":"1.2.3.4:5","stamp":[7,1],"trusted":true}]}"#,
        )
        .unwrap();
        let m = from_json(&v);
        assert!(m.links.is_empty());
        assert_eq!(m.peers[0].stamp, Some((7, 1)));
        assert!(!m.peers[0].trusted);
    }

    #[test]
    fn damaged_file_is_ignored_with_a_reason() {
        let p = std::env::temp_dir().join(format!("wgroam-state-{}.json", std::process::id()));
        std::fs::write(&p, b"{\"peers\": [tru").unwrap();
        let (r, why) = load(&p);
        assert!(r.peers.is_empty());
        assert!(why.unwrap().contains("damaged"));
        std::fs::write(
            &p,
            br#"{"peers":[{"iface":"wg0","key":"x","endpoint":"1.2.3.4:5"}]}"#,
        )
        .unwrap();
        assert!(load(&p).0.peers.is_empty(), "bad key skipped");
        std::fs::remove_file(&p).unwrap();
        assert_eq!(load(&p), (Memory::default(), None));
    }
}
