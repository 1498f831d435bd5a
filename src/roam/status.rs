//! The roam's `status.json`: what `wgroam status` and `ubus call wgroam
//! status` show for a travel router (the schema is in README, "wgroam
//! status"). Written by the runtime whenever what it sees changes.

use serde_json::{Value, json};

use crate::config::Interface;
use crate::core::Now;
use crate::core::roam::{Delegation, RoamStatus};

fn opt<T: ToString>(v: Option<T>) -> Value {
    v.map_or(Value::Null, |x| Value::String(x.to_string()))
}

/// The roam's `status --json` document.
pub fn roam_json(
    s: &RoamStatus,
    iface: &Interface,
    via: &str,
    carrier: Option<&str>,
    now: Now,
    started: u64,
) -> Value {
    let (state, prefix) = match s.delegation {
        _ if via == "off" => ("off", None),
        Delegation::Unknown => ("off", None),
        Delegation::Pending(p) => ("pending", Some(p)),
        Delegation::Delegated(p) => ("delegated", Some(p)),
        Delegation::Withdrawn(p) => ("withdrawn", Some(p)),
    };
    let downstream: serde_json::Map<String, Value> = s
        .downstream
        .iter()
        .map(|(n, a)| (n.clone(), opt(a.as_ref())))
        .collect();
    json!({
        "version": 1,
        "role": "roam",
        "pid": std::process::id(),
        "started": started,
        "updated": now.wall,
        "clock_ok": s.clock_ok,
        "config_error": s.config_error,
        "interfaces": [{
            "name": iface.ifname,
            "up": s.tunnel_present,
            "tunnel_up": s.tunnel_up,
            "down_since": s.down_since_wall,
            "endpoint": opt(s.endpoint),
            "kernel_endpoint": opt(s.kernel_endpoint),
            "latest_handshake": s.last_handshake,
            "rx_bytes": s.rx,
            "tx_bytes": s.tx,
            "gateway_v4": opt(s.gateway_v4.as_ref()),
            "gateway_v6": opt(s.gateway_v6.as_ref()),
            "delegation": {
                "state": state,
                "prefix": opt(prefix),
                "via": via,
                "changed": s.delegation_changed.as_ref().map(|c| json!({"at": c.at_wall, "what": c.what})),
                "problem": s.delegation_problem,
                "interface": carrier,
                "downstream": downstream,
                "mtu": s.lan_mtu,
            },
            "last_reaction": s.last_reaction.as_ref().map(|c| json!({"at": c.at_wall, "what": c.what})),
            "reactions": s.reactions,
            "handshakes_forced": s.handshakes_forced,
            "heartbeats": s.heartbeats,
            "health": s.health.as_ref().map(|h| json!({"ok": h.ok, "detail": h.detail, "at": h.at_wall})),
            "peers": [],
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::roam_setup::roam_config;
    use crate::config::roam_setup::tests::{KEY, iface};
    use crate::core::PublicKey;
    use crate::core::net::IpNet;
    use crate::core::roam::Roam;

    #[test]
    fn status_json_has_the_delegation_fields_and_the_human_form_shows_them() {
        let k = PublicKey::from_base64(KEY).unwrap();
        let rc = roam_config(
            &iface(""),
            &[],
            &[(k, Some("198.51.100.2:51820".parse().unwrap()))],
        )
        .unwrap();
        let mut st = Roam::new(rc, 0).unwrap().status().clone();
        let p: IpNet = "2001:db8:100:1::/64".parse().unwrap();
        st.delegation = Delegation::Pending(p);
        st.delegation_problem = Some("odhcpd is not running (ubus object dhcp missing); the LAN gets no RA — /etc/init.d/odhcpd start".into());
        st.downstream = vec![("lan".into(), None)];
        st.lan_mtu = Some(1420);
        let now = Now::new(5_000, 1_700_000_000);
        let v = roam_json(&st, &iface(""), "netifd", Some("wgroam_wg0"), now, 1);
        let d = &v["interfaces"][0]["delegation"];
        assert_eq!(d["state"], "pending");
        assert_eq!(d["prefix"], "2001:db8:100:1::/64");
        assert_eq!(d["interface"], "wgroam_wg0");
        assert_eq!(d["downstream"], json!({"lan": null}));
        assert_eq!(d["mtu"], 1420);
        assert!(
            d["problem"]
                .as_str()
                .unwrap()
                .starts_with("odhcpd is not running")
        );
        let text = crate::hub::status::human(&v, now.wall);
        assert!(
            text.contains("  delegation pending 2001:db8:100:1::/64 via netifd (wgroam_wg0), lan -, LAN IPv6 MTU 1420\n    problem: odhcpd is not running"),
            "{text}"
        );
        st.delegation = Delegation::Delegated(p);
        st.delegation_problem = None;
        st.downstream = vec![("lan".into(), Some(p))];
        let v = roam_json(&st, &iface(""), "netifd", Some("wgroam_wg0"), now, 1);
        let d = &v["interfaces"][0]["delegation"];
        assert_eq!(d["state"], "delegated");
        assert_eq!(d["problem"], Value::Null);
        assert_eq!(d["downstream"], json!({"lan": "2001:db8:100:1::/64"}));
        let v = roam_json(&st, &iface(""), "off", None, now, 1);
        assert_eq!(v["interfaces"][0]["delegation"]["state"], "off");
    }
}
