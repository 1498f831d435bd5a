//! [`FakeUbus`]: netifd and odhcpd behind the [`Ubus`] trait, in memory, for
//! the delegation tests ([`crate::roam::delegation`]). Test builds only.
//!
//! It behaves as the real netifd was observed to
//! (../shared/openwrt-fixtures/netifd-delegation/README.md, sections 9
//! and 10): `ip6prefix` must be an array, an identical `add_dynamic` is a
//! no-op, a changed one deletes the interface, `status` of an absent
//! interface fails with "Not found", the dynamic interface is deleted
//! when the tunnel device goes down, and a downstream with `ip6assign`
//! gets a /64 of a prefix carried by an up interface. odhcpd's `dhcp
//! ipv6ra` table follows its RFC 9096 table (FINDINGS Q6).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::{Ubus, UbusError, UbusErrorKind};
use crate::core::net::IpNet;

/// A dynamic interface (`network add_dynamic`).
#[derive(Debug, Clone, PartialEq)]
pub struct Dynamic {
    /// The `add_dynamic` arguments it was added with.
    pub config: Value,
    pub up: bool,
    pub prefixes: Vec<IpNet>,
}

/// What netifd and odhcpd hold; tests change it through [`FakeUbus::n`].
#[derive(Debug, Default)]
pub struct Netifd {
    /// Interfaces with `ip6assign` (name → its l3 device).
    pub lans: BTreeMap<String, (String, bool)>,
    pub dynamic: BTreeMap<String, Dynamic>,
    /// The tunnel device exists.
    pub device_up: bool,
    /// odhcpd is running (ubus object `dhcp`).
    pub odhcpd: bool,
    /// odhcpd has sent its RA with the assignment.
    pub ra_sent: bool,
    /// netifd answers (else every call times out).
    pub answering: bool,
    /// Every call, `object method [args]`.
    pub calls: Vec<String>,
}

/// netifd and odhcpd over ubus, in memory; clones share the same state.
#[derive(Clone, Default)]
pub struct FakeUbus(Arc<Mutex<Netifd>>);

/// The error a call to a missing object gets (`Command failed: Not found`).
pub fn not_found(what: &str) -> UbusError {
    UbusError {
        kind: UbusErrorKind::NotFound,
        msg: format!(
            "ubus call {what}: object not found (is netifd running?): Command failed: Not found"
        ),
    }
}

impl FakeUbus {
    /// `lan` (br-lan) with `ip6assign`, the tunnel device up, odhcpd
    /// running and its RAs sent, netifd answering; no dynamic interface.
    pub fn new() -> Self {
        let f = FakeUbus::default();
        {
            let mut n = f.0.lock().unwrap();
            n.lans.insert("lan".into(), ("br-lan".into(), true));
            n.device_up = true;
            n.odhcpd = true;
            n.ra_sent = true;
            n.answering = true;
        }
        f
    }
    /// The state, to look at or change.
    pub fn n(&self) -> std::sync::MutexGuard<'_, Netifd> {
        self.0.lock().unwrap()
    }
    /// The tunnel device goes away: netifd deletes dynamic interfaces on it.
    pub fn device_down(&self) {
        let mut n = self.n();
        n.device_up = false;
        n.dynamic.clear();
    }
    /// The device appears: a carrier added while it was missing comes up
    /// by itself (observed).
    pub fn device_back(&self) {
        let mut n = self.n();
        n.device_up = true;
        for d in n.dynamic.values_mut() {
            d.up = true;
        }
    }
    /// Every call so far, `object method [args]`.
    pub fn calls(&self) -> Vec<String> {
        self.n().calls.clone()
    }
}

impl Ubus for FakeUbus {
    fn call(&self, object: &str, method: &str, args: Option<&Value>) -> Result<Value, UbusError> {
        let mut n = self.n();
        let line = match args {
            Some(a) => format!("{object} {method} {a}"),
            None => format!("{object} {method}"),
        };
        n.calls.push(line.clone());
        if !n.answering {
            return Err(UbusError {
                kind: UbusErrorKind::Timeout,
                msg: format!("ubus call {object} {method}: no answer in time"),
            });
        }
        match (object, method) {
            ("network", "add_dynamic") => {
                let a = args.cloned().unwrap_or(Value::Null);
                let name = a["name"].as_str().unwrap().to_string();
                if let Some(d) = n.dynamic.get(&name) {
                    if d.config != a {
                        // Observed: a changed config returns 0 and deletes it.
                        n.dynamic.remove(&name);
                    }
                    return Ok(Value::Null);
                }
                // A string ip6prefix is ignored silently.
                let prefixes = a["ip6prefix"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.as_str()?.parse().ok())
                    .collect();
                let up = n.device_up;
                n.dynamic.insert(
                    name,
                    Dynamic {
                        config: a,
                        up,
                        prefixes,
                    },
                );
                Ok(Value::Null)
            }
            ("dhcp", "ipv6ra") if n.odhcpd => {
                // odhcpd's RFC 9096 table (FINDINGS Q6): per device, the
                // /64s its RAs carried; stale ones are goodbyes.
                let mut per_dev: BTreeMap<String, Vec<Value>> = BTreeMap::new();
                for (dev, assign) in n.lans.values() {
                    let list = per_dev.entry(dev.clone()).or_default();
                    for d in n.dynamic.values().filter(|d| d.up && *assign && n.ra_sent) {
                        for p in &d.prefixes {
                            let a = IpNet::truncate(p.addr(), 64).unwrap();
                            list.push(json!({"prefix": a.addr().to_string(), "length": 64, "stale": false}));
                        }
                    }
                }
                Ok(json!({ "interfaces": per_dev }))
            }
            ("dhcp", _) => Err(not_found(&line)),
            ("service", "signal") if n.odhcpd => Ok(Value::Null),
            _ => {
                let Some(name) = object.strip_prefix("network.interface.") else {
                    return Err(not_found(&line));
                };
                if let Some(d) = n.dynamic.get(name).cloned() {
                    return match method {
                        // Waiting for its device: no ipv6-prefix key at all.
                        "status" if !d.up => Ok(json!({
                            "up": false, "pending": false, "available": false, "dynamic": true,
                        })),
                        "status" => Ok(json!({
                            "up": true,
                            "available": true,
                            "dynamic": true,
                            "ipv6-prefix": d.prefixes.iter().map(|p| json!({"address": p.addr().to_string(), "mask": p.prefix_len()})).collect::<Vec<_>>(),
                        })),
                        "remove" => {
                            n.dynamic.remove(name);
                            Ok(Value::Null)
                        }
                        _ => Err(not_found(&line)),
                    };
                }
                if let Some((dev, assign)) = n.lans.get(name).cloned() {
                    let assigned: Vec<Value> = n
                        .dynamic
                        .values()
                        .filter(|d| d.up && assign)
                        .flat_map(|d| d.prefixes.clone())
                        .map(|p| {
                            let a = IpNet::truncate(p.addr(), 64).unwrap();
                            json!({"address": a.addr().to_string(), "mask": 64})
                        })
                        .collect();
                    return Ok(json!({
                        "up": true,
                        "l3_device": dev,
                        "ipv6-prefix-assignment": assigned,
                    }));
                }
                Err(not_found(&line))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fake_drops_a_changed_add_like_netifd() {
        // Guards the fake itself: a changed add_dynamic deletes.
        let ubus = FakeUbus::new();
        let a = json!({"name":"x","proto":"static","device":"wg1","ip6prefix":["2001:db8::/56"]});
        let b = json!({"name":"x","proto":"static","device":"wg1","ip6prefix":["2001:db9::/56"]});
        ubus.call("network", "add_dynamic", Some(&a)).unwrap();
        ubus.call("network", "add_dynamic", Some(&b)).unwrap();
        let e = ubus
            .call("network.interface.x", "status", None)
            .unwrap_err();
        assert_eq!(e.kind, UbusErrorKind::NotFound);
    }
}
