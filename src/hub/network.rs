//! The hub's view of OpenWrt's `network` config: peers are the
//! `wireguard_<iface>` sections (netifd ignores peers typed for another
//! interface, and so do we); learned endpoints are staged in the uci save
//! directory (RAM) and reach flash only on commit.

use std::net::{IpAddr, SocketAddr};

use crate::core::PublicKey;
use crate::core::hub::UciPeer;
use crate::hub::runtime::NetworkConfig;
use crate::os::uci::{Change, Section, UciCli, UciStore};

pub struct UciNetwork<S: UciStore = UciCli> {
    store: S,
}

impl<S: UciStore> UciNetwork<S> {
    pub fn new(store: S) -> Self {
        Self { store }
    }
}

/// Peers of one interface; a section with a bad key is reported, not fatal.
pub fn peers_of(iface: &str, sections: &[Section]) -> (Vec<UciPeer>, Vec<String>) {
    let stype = format!("wireguard_{iface}");
    let mut peers = Vec::new();
    let mut problems = Vec::new();
    for s in sections.iter().filter(|s| s.stype == stype) {
        let section = s.reference();
        let Some(key_s) = s.get_single("public_key") else {
            problems.push(format!(
                "network.{section}.public_key: missing; this peer is ignored until it has one"
            ));
            continue;
        };
        let Some(key) = PublicKey::from_base64(key_s) else {
            problems.push(format!(
                "network.{section}.public_key: '{key_s}' is not a WireGuard key; expected 44 characters of base64"
            ));
            continue;
        };
        let endpoint = match (s.get_single("endpoint_host"), s.get_single("endpoint_port")) {
            (Some(h), port) => {
                let port = port.and_then(|p| p.parse::<u16>().ok()).unwrap_or(51820);
                h.trim_matches(|c| c == '[' || c == ']')
                    .parse::<IpAddr>()
                    .ok()
                    .map(|ip| SocketAddr::new(ip, port))
            }
            _ => None,
        };
        peers.push(UciPeer {
            section,
            key,
            endpoint,
        });
    }
    (peers, problems)
}

impl<S: UciStore> NetworkConfig for UciNetwork<S> {
    fn peers(&self, iface: &str) -> Result<Vec<UciPeer>, String> {
        let sections = self.store.load("network").map_err(|e| e.to_string())?;
        let (peers, problems) = peers_of(iface, &sections);
        for p in problems {
            crate::os::syslog::emit(crate::core::Level::Warn, &p);
        }
        Ok(peers)
    }

    fn stage_endpoints(&self, moves: &[(String, SocketAddr)]) -> Result<(), String> {
        let changes: Vec<Change> = moves
            .iter()
            .flat_map(|(section, ep)| {
                [
                    Change::set("network", section, "endpoint_host", &ep.ip().to_string()),
                    Change::set("network", section, "endpoint_port", &ep.port().to_string()),
                ]
            })
            .collect();
        self.store.stage(&changes).map_err(|e| e.to_string())
    }

    fn commit(&self) -> Result<(), String> {
        self.store.commit("network").map_err(|e| e.to_string())
    }

    fn endpoints_staged(&self) -> Result<bool, String> {
        let lines = self.store.pending("network").map_err(|e| e.to_string())?;
        Ok(lines.iter().any(|l| is_endpoint_change(l)))
    }
}

/// A `uci changes` line (`network.r1.endpoint_port='30001'`,
/// `-network.r1.endpoint_host`) that sets or deletes an endpoint option.
fn is_endpoint_change(line: &str) -> bool {
    let target = line.trim_start_matches(['-', '+']);
    let target = target.split_once('=').map_or(target, |(t, _)| t);
    target.ends_with(".endpoint_host") || target.ends_with(".endpoint_port")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::uci::MemoryUci;

    const NET: &str = "config interface 'wg0'\n\toption proto 'wireguard'\n\nconfig wireguard_wg0 'r1'\n\toption public_key 'AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE='\n\toption description 'travel router'\n";

    #[test]
    fn staged_endpoints_are_seen_and_other_changes_are_not() {
        let net = UciNetwork::new(MemoryUci::new().with_package("network", NET).unwrap());
        assert_eq!(net.endpoints_staged(), Ok(false));
        net.store
            .stage(&[Change::set("network", "r1", "description", "hotel")])
            .unwrap();
        assert_eq!(net.endpoints_staged(), Ok(false), "a user's own change");
        net.stage_endpoints(&[("r1".into(), "198.51.100.3:30001".parse().unwrap())])
            .unwrap();
        assert_eq!(net.endpoints_staged(), Ok(true));
        net.commit().unwrap();
        assert_eq!(net.endpoints_staged(), Ok(false));
    }

    #[test]
    fn endpoint_change_lines_as_uci_prints_them() {
        assert!(is_endpoint_change("network.r1.endpoint_port='30001'"));
        assert!(is_endpoint_change(
            "network.cfg0a2b3c.endpoint_host='198.51.100.3'"
        ));
        assert!(is_endpoint_change("-network.r1.endpoint_host"));
        assert!(!is_endpoint_change("network.r1.endpoint_hostname='x'"));
        assert!(!is_endpoint_change("network.lan.ipaddr='100.127.1.1'"));
        assert!(!is_endpoint_change(
            "network.r1.description='endpoint_port'"
        ));
    }
}
