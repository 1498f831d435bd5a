//! Options of an `interface` section that only the roam role reads.

use std::net::{IpAddr, Ipv6Addr};

use super::{Reader, valid_ifname, valid_uci_name};
use crate::core::net::IpNet;

pub const ROAM_OPTIONS: &[&str] = &[
    "hub_peer",
    "hub_key",
    "endpoint",
    "prefix",
    "tunnel_addr",
    "hub_tunnel_addr",
    "heartbeat_interval",
    "grace",
    "delegate",
    "downstream",
    "table",
    "metric",
    "health_url",
    "health_interval",
    "announce_mtu",
];

/// How the delegated prefix reaches the LAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelegateVia {
    /// OpenWrt: a netifd dynamic interface carrying the prefix (ubus only).
    Uci,
    /// Plain Linux: an address on the LAN device and radvd.
    Radvd,
    Off,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoamOptions {
    /// uci section of the hub peer in `network` (default: the only one).
    pub hub_peer: Option<String>,
    /// Hosts without uci: the hub's public key (base64).
    pub hub_key: Option<String>,
    /// Hosts without uci: `host:port` endpoints, preferred first.
    pub endpoints: Vec<String>,
    pub prefix: Option<IpNet>,
    pub tunnel_addr: Option<Ipv6Addr>,
    pub hub_tunnel_addr: Option<IpAddr>,
    /// Seconds; 0 disables heartbeats.
    pub heartbeat_interval: u64,
    pub grace: u64,
    /// `None`: uci on OpenWrt (agent `uci` 1), radvd otherwise.
    pub delegate: Option<DelegateVia>,
    pub downstream: Vec<String>,
    pub table: u32,
    pub metric: u32,
    /// `http://` URL fetched from an address in the prefix.
    pub health_url: Option<String>,
    pub health_interval: u64,
    /// Tell the LAN the tunnel's MTU (default on).
    pub announce_mtu: bool,
}

pub(super) fn read(r: &mut Reader<'_>) -> RoamOptions {
    let mut o = RoamOptions {
        hub_peer: r.single("hub_peer"),
        hub_key: r.single("hub_key"),
        endpoints: r.list("endpoint"),
        heartbeat_interval: r.number("heartbeat_interval", 5, 0, 3600),
        grace: r.number("grace", 30, 0, 86_400),
        table: r.number("table", 254, 1, u64::from(u32::MAX - 1)) as u32,
        metric: r.number("metric", 1024, 1, u64::from(u32::MAX)) as u32,
        ..RoamOptions::default()
    };
    if let Some(p) = &o.hub_peer
        && !valid_uci_name(p)
        && !p.starts_with("@wireguard_")
    {
        r.bad(
            "hub_peer",
            p,
            "the name of the hub's wireguard_<if> section in network",
        );
    }
    if let Some(k) = &o.hub_key
        && crate::core::PublicKey::from_base64(k).is_none()
    {
        r.bad(
            "hub_key",
            k,
            "a WireGuard public key (44 characters of base64)",
        );
    }
    for e in o.endpoints.clone() {
        let ok = e
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !ok {
            r.bad(
                "endpoint",
                &e,
                "host:port or [ipv6]:port, e.g. 'hub.example.org:51820'",
            );
        }
    }
    if let Some(p) = r.single("prefix") {
        match p.parse::<IpNet>() {
            Ok(n) if n.is_ipv6() && n.prefix_len() <= 64 => o.prefix = Some(n),
            _ => r.bad(
                "prefix",
                &p,
                "an IPv6 prefix of /64 or shorter with no host bits, e.g. '2001:db8:100:1::/64'",
            ),
        }
    }
    if let Some(a) = r.single("tunnel_addr") {
        match a.parse() {
            Ok(ip) => o.tunnel_addr = Some(ip),
            Err(_) => r.bad(
                "tunnel_addr",
                &a,
                "this router's IPv6 address inside the tunnel",
            ),
        }
    }
    if let Some(a) = r.single("hub_tunnel_addr") {
        match a.parse() {
            Ok(ip) => o.hub_tunnel_addr = Some(ip),
            Err(_) => r.bad("hub_tunnel_addr", &a, "the hub's address inside the tunnel"),
        }
    }
    o.delegate = match r.single("delegate").as_deref() {
        None => None,
        Some("uci" | "netifd") => Some(DelegateVia::Uci),
        Some("radvd") => Some(DelegateVia::Radvd),
        Some("off") => Some(DelegateVia::Off),
        Some(v) => {
            r.bad("delegate", v, "netifd (or uci), radvd or off");
            None
        }
    };
    o.health_interval = r.number("health_interval", 60, 5, 86_400);
    o.announce_mtu = r.bool("announce_mtu", true);
    if let Some(u) = r.single("health_url") {
        if u.starts_with("http://") && u.len() > 7 && !u.contains(char::is_whitespace) {
            o.health_url = Some(u);
        } else {
            r.bad(
                "health_url",
                &u,
                "an http:// URL (checked through the tunnel; https is not built in)",
            );
        }
    }
    o.downstream = r.list("downstream");
    for d in o.downstream.clone() {
        if !valid_ifname(&d) {
            r.bad("downstream", &d, "a LAN interface name, e.g. 'lan'");
        }
    }
    if o.downstream.is_empty() {
        o.downstream.push("lan".into());
    }
    o
}
