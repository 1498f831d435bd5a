//! The roam core's configuration ([`RoamConfig`]) from what the router has:
//! the wgroam `interface` section, OpenWrt's `network` config (the hub is
//! the interface's one `wireguard_<if>` peer, or the one `hub_peer` names)
//! and, without uci, the kernel's only peer. Pure: the caller reads them.

use std::net::{IpAddr, SocketAddr};

use super::Interface;
use crate::config::uci::Section;
use crate::core::PublicKey;
use crate::core::net::IpNet;
use crate::core::roam::{HubEndpoint, RoamConfig};

/// Builds the core's configuration from wgroam's options, the `network`
/// config (OpenWrt) and what the kernel shows.
pub fn roam_config(
    iface: &Interface,
    network: &[Section],
    kernel_peers: &[(PublicKey, Option<SocketAddr>)],
) -> Result<RoamConfig, String> {
    let o = &iface.roam;
    let stype = format!("wireguard_{}", iface.name);
    let peers: Vec<&Section> = network.iter().filter(|s| s.stype == stype).collect();
    let section = match &o.hub_peer {
        Some(name) => Some(
            peers
                .iter()
                .find(|s| s.reference() == *name)
                .copied()
                .ok_or_else(|| {
                    format!(
                        "wgroam.{}.hub_peer: '{name}' is not a {stype} section in network",
                        iface.name
                    )
                })?,
        ),
        None if peers.len() == 1 => Some(peers[0]),
        None if peers.len() > 1 => {
            return Err(format!(
                "wgroam.{}.hub_peer: network has {} {stype} sections; name the hub's",
                iface.name,
                peers.len()
            ));
        }
        None => None,
    };
    let key_text = o
        .hub_key
        .clone()
        .or_else(|| section.and_then(|s| s.get_single("public_key").map(str::to_string)));
    let key = match key_text {
        Some(k) => PublicKey::from_base64(&k).ok_or_else(|| {
            format!("hub public key '{k}' is not a WireGuard key (44 characters of base64)")
        })?,
        None if kernel_peers.len() == 1 => kernel_peers[0].0,
        None => {
            return Err(format!(
                "wgroam.{}.hub_key: no hub peer found; set hub_key or configure the peer in network",
                iface.name
            ));
        }
    };
    let mut endpoints: Vec<HubEndpoint> = o.endpoints.iter().filter_map(|e| endpoint(e)).collect();
    if endpoints.is_empty()
        && let Some(s) = section
        && let Some(host) = s.get_single("endpoint_host")
    {
        let port = s
            .get_single("endpoint_port")
            .and_then(|p| p.parse().ok())
            .unwrap_or(51820);
        endpoints.extend(endpoint(&format!(
            "[{}]:{port}",
            host.trim_matches(['[', ']'])
        )));
    }
    if endpoints.is_empty()
        && let Some((_, Some(e))) = kernel_peers.iter().find(|(k, _)| *k == key)
    {
        endpoints.push(HubEndpoint::Addr(*e));
    }
    let mut cfg = RoamConfig::new(&iface.ifname, key, endpoints);
    if let Some(s) = section
        && let Some(v) = s.get("allowed_ips")
    {
        let nets: Vec<IpNet> = v.values().iter().filter_map(|a| a.parse().ok()).collect();
        if !nets.is_empty() {
            cfg.hub_allowed_ips = nets;
        }
    }
    cfg.tunnel_addr = o.tunnel_addr.or_else(|| {
        let wg = network
            .iter()
            .find(|s| s.name.as_deref() == Some(iface.name.as_str()))?;
        wg.get("addresses")?
            .values()
            .iter()
            .find_map(|a| a.split('/').next()?.parse::<std::net::Ipv6Addr>().ok())
    });
    // Interval 0 switches heartbeats off (the core knows that as "no target").
    cfg.hub_tunnel_addr = o.hub_tunnel_addr.filter(|_| o.heartbeat_interval > 0);
    cfg.prefix = o.prefix;
    cfg.table = o.table;
    cfg.metric = o.metric;
    if o.heartbeat_interval > 0 {
        cfg.heartbeat_interval_s = o.heartbeat_interval;
    }
    cfg.grace_s = o.grace;
    cfg.health_interval_s = o.health_url.as_ref().map(|_| o.health_interval);
    cfg.announce_mtu = o.announce_mtu;
    cfg.validate()
        .map_err(|e| format!("wgroam.{}: {e}", iface.name))?;
    Ok(cfg)
}

/// `host:port`, `[v6]:port` or `v4:port`; a name becomes a `Host` to resolve.
fn endpoint(s: &str) -> Option<HubEndpoint> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(HubEndpoint::Addr(a));
    }
    let (host, port) = s.rsplit_once(':')?;
    let host = host.trim_matches(['[', ']']);
    let port = port.parse().ok()?;
    match host.parse::<IpAddr>() {
        Ok(ip) => Some(HubEndpoint::Addr(SocketAddr::new(ip, port))),
        Err(_) => Some(HubEndpoint::Host {
            host: host.to_string(),
            port,
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::from_sections;
    use crate::config::uci::syntax::parse_config;

    pub(crate) const KEY: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

    pub(crate) fn iface(extra: &str) -> Interface {
        let text = format!(
            "config agent 'agent'\n\toption role 'roam'\n\nconfig interface 'wg0'\n\toption prefix '2001:db8:100:1::/64'\n{extra}"
        );
        from_sections(&parse_config("wgroam", &text).unwrap())
            .unwrap()
            .interfaces
            .remove(0)
    }

    pub(crate) fn network(peers: &str) -> Vec<Section> {
        let text = format!(
            "config interface 'wg0'\n\toption proto 'wireguard'\n\tlist addresses '2001:db8:100::2/64'\n\tlist addresses '100.100.0.2/32'\n\n{peers}"
        );
        parse_config("network", &text).unwrap()
    }

    #[test]
    fn hub_comes_from_network_on_openwrt() {
        let net = network(&format!(
            "config wireguard_wg0 'hub'\n\toption public_key '{KEY}'\n\toption endpoint_host 'hub.example.org'\n\toption endpoint_port '51821'\n\tlist allowed_ips '::/0'\n"
        ));
        let rc = roam_config(&iface(""), &net, &[]).unwrap();
        assert_eq!(rc.hub_key.to_base64(), KEY);
        assert_eq!(
            rc.endpoints,
            vec![HubEndpoint::Host {
                host: "hub.example.org".into(),
                port: 51821
            }]
        );
        assert_eq!(rc.tunnel_addr, Some("2001:db8:100::2".parse().unwrap()));
        assert_eq!(rc.prefix.unwrap().to_string(), "2001:db8:100:1::/64");
    }

    #[test]
    fn ipv6_endpoint_host_and_explicit_options_win() {
        let net = network(&format!(
            "config wireguard_wg0\n\toption public_key '{KEY}'\n\toption endpoint_host '2001:db8:ffff::2'\n"
        ));
        let rc = roam_config(&iface(""), &net, &[]).unwrap();
        assert_eq!(
            rc.endpoints,
            vec![HubEndpoint::Addr(
                "[2001:db8:ffff::2]:51820".parse().unwrap()
            )]
        );
        let rc = roam_config(
            &iface(
                "\tlist endpoint '198.51.100.2:51820'\n\toption tunnel_addr '2001:db8:100::9'\n",
            ),
            &net,
            &[],
        )
        .unwrap();
        assert_eq!(
            rc.endpoints,
            vec![HubEndpoint::Addr("198.51.100.2:51820".parse().unwrap())]
        );
        assert_eq!(rc.tunnel_addr, Some("2001:db8:100::9".parse().unwrap()));
    }

    #[test]
    fn ambiguity_and_bad_prefixes_are_one_line() {
        let two = network(&format!(
            "config wireguard_wg0 'a'\n\toption public_key '{KEY}'\n\toption endpoint_host '198.51.100.2'\n\nconfig wireguard_wg0 'b'\n\toption public_key '{KEY}'\n\toption endpoint_host '198.51.100.3'\n"
        ));
        let e = roam_config(&iface(""), &two, &[]).unwrap_err();
        assert_eq!(
            e,
            "wgroam.wg0.hub_peer: network has 2 wireguard_wg0 sections; name the hub's"
        );
        assert!(roam_config(&iface("\toption hub_peer 'b'\n"), &two, &[]).is_ok());
        let e = roam_config(&iface("\toption hub_peer 'c'\n"), &two, &[]).unwrap_err();
        assert!(e.contains("'c' is not a wireguard_wg0 section"), "{e}");
        // A prefix outside what the hub routes to us.
        let narrow = network(&format!(
            "config wireguard_wg0\n\toption public_key '{KEY}'\n\toption endpoint_host '198.51.100.2'\n\tlist allowed_ips '2001:db8:200::/48'\n"
        ));
        let e = roam_config(&iface(""), &narrow, &[]).unwrap_err();
        assert!(e.starts_with("wgroam.wg0: ") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn without_uci_the_kernel_names_the_hub() {
        let k = PublicKey::from_base64(KEY).unwrap();
        let rc = roam_config(
            &iface(""),
            &[],
            &[(k, Some("198.51.100.2:51820".parse().unwrap()))],
        )
        .unwrap();
        assert_eq!(rc.hub_key, k);
        assert_eq!(
            rc.endpoints,
            vec![HubEndpoint::Addr("198.51.100.2:51820".parse().unwrap())]
        );
        assert!(
            roam_config(&iface(""), &[], &[])
                .unwrap_err()
                .contains("hub_key")
        );
    }
}
