//! Config validation: every bad option is named with the fix.

use super::*;

fn sec(stype: &str, name: Option<&str>, opts: &[(&str, &str)]) -> Section {
    let mut s = Section::new(stype, name);
    s.options = opts
        .iter()
        .map(|(k, v)| (k.to_string(), Value::Single(v.to_string())))
        .collect();
    s
}

fn good() -> Vec<Section> {
    vec![
        sec("agent", Some("agent"), &[("role", "hub")]),
        sec("interface", Some("wg0"), &[]),
    ]
}

fn problems(secs: &[Section]) -> Vec<String> {
    from_sections(secs)
        .unwrap_err()
        .into_iter()
        .map(|p| p.0)
        .collect()
}

#[test]
fn minimal_config_gets_defaults() {
    let c = from_sections(&good()).unwrap();
    assert_eq!(c.role, Role::Hub);
    assert_eq!(c.poll_ms, 500);
    assert_eq!(c.commit_interval, Some(3600));
    assert_eq!(c.interfaces[0].ifname, "wg0");
    assert!(c.interfaces[0].capture);
}

#[test]
fn each_bad_option_is_one_line_naming_section_option_value_and_fix() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "agent",
            "role",
            "hubb",
            "wgroam.agent.role: 'hubb' is not valid; expected hub or roam",
        ),
        (
            "agent",
            "log_level",
            "loud",
            "wgroam.agent.log_level: 'loud' is not valid",
        ),
        (
            "agent",
            "poll_ms",
            "5",
            "wgroam.agent.poll_ms: '5' is not valid; expected a whole number from 100 to 10000",
        ),
        ("agent", "poll_ms", "-1", "wgroam.agent.poll_ms: '-1'"),
        (
            "agent",
            "uci",
            "maybe",
            "wgroam.agent.uci: 'maybe' is not valid; expected 1 or 0",
        ),
        (
            "agent",
            "state_dir",
            "run/x",
            "wgroam.agent.state_dir: 'run/x' is not valid; expected an absolute path",
        ),
        (
            "agent",
            "commit_interval",
            "1h",
            "wgroam.agent.commit_interval: '1h'",
        ),
        (
            "agent",
            "colour",
            "blue",
            "wgroam.agent.colour: unknown option",
        ),
        (
            "interface",
            "backend",
            "bsd",
            "wgroam.wg0.backend: 'bsd' is not valid; expected auto, kernel or userspace",
        ),
        (
            "interface",
            "ifname",
            "wg/0",
            "wgroam.wg0.ifname: 'wg/0' is not valid",
        ),
        (
            "interface",
            "ifname",
            "averyveryverylongname",
            "wgroam.wg0.ifname",
        ),
        (
            "interface",
            "capture",
            "2",
            "wgroam.wg0.capture: '2' is not valid; expected 1 or 0",
        ),
    ];
    for (stype, opt, value, want) in cases {
        let mut secs = good();
        let i = if *stype == "agent" { 0 } else { 1 };
        secs[i].options.retain(|(n, _)| n != opt);
        secs[i]
            .options
            .push((opt.to_string(), Value::Single(value.to_string())));
        let p = problems(&secs);
        assert_eq!(p.len(), 1, "{opt}={value}: {p:?}");
        assert!(p[0].starts_with(want), "{opt}={value}: {}", p[0]);
    }
}

#[test]
fn structural_problems_are_reported_together() {
    let p = problems(&[
        sec("agent", None, &[]),
        sec("agent", None, &[("role", "hub")]),
        sec("interface", Some("wg-r1"), &[]),
        sec("interface", None, &[]),
        sec("peer", Some("x"), &[]),
    ]);
    let joined = p.join("\n");
    for want in [
        "2 'agent' sections",
        "@agent[0].role: missing",
        "'wg-r1' is not a valid netifd interface name",
        "interface section has no name",
        "unknown section type 'peer'",
    ] {
        assert!(joined.contains(want), "missing {want:?} in:\n{joined}");
    }
    assert!(p.iter().all(|l| !l.contains('\n')));
}

#[test]
fn missing_pieces_say_what_to_add() {
    assert!(problems(&[])[0].contains("no 'agent' section"));
    let p = problems(&[sec("agent", Some("agent"), &[("role", "roam")])]);
    assert!(p[0].contains("no enabled 'interface' section"), "{p:?}");
}

#[test]
fn a_list_where_an_option_belongs_is_named() {
    let mut secs = good();
    secs[0].options[0].1 = Value::List(vec!["hub".into()]);
    assert!(problems(&secs)[0].contains("wgroam.agent.role: is a list"));
}

#[test]
fn disabled_and_duplicate_interfaces() {
    let mut secs = good();
    secs.push(sec("interface", Some("wg9"), &[("enabled", "0")]));
    assert_eq!(from_sections(&secs).unwrap().interfaces.len(), 1);
    secs.push(sec("interface", Some("other"), &[("ifname", "wg0")]));
    assert!(problems(&secs)[0].contains("'wg0' is managed twice"));
}

#[test]
fn hub_network_options_default_to_routes_only() {
    let c = from_sections(&good()).unwrap();
    assert_eq!(c.interfaces[0].net, HubNet::default());
    assert!(c.interfaces[0].net.routes);
    let secs = vec![
        sec("agent", Some("agent"), &[("role", "hub")]),
        sec(
            "interface",
            Some("wg0"),
            &[
                ("routes", "0"),
                ("wan", "eth1"),
                ("forwarding", "1"),
                ("relay", "nft"),
                ("ndp_proxy", "1"),
            ],
        ),
    ];
    let net = from_sections(&secs).unwrap().interfaces[0].net.clone();
    assert_eq!(
        net,
        HubNet {
            routes: false,
            wan: Some("eth1".into()),
            forwarding: true,
            relay: RelayMode::Nft,
            ndp_proxy: true,
        }
    );
}

#[test]
fn relay_fw4_names_a_firewall_zone_and_needs_no_wan_device() {
    let secs = vec![
        sec("agent", Some("agent"), &[("role", "hub")]),
        sec("interface", Some("wg0"), &[("relay", "fw4")]),
    ];
    let net = from_sections(&secs).unwrap().interfaces[0].net.clone();
    assert_eq!(net.relay, RelayMode::Fw4);
    assert_eq!(net.wan, None);
}

#[test]
fn hub_network_options_are_validated_one_line_each() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("routes", "yes please")],
            "wgroam.wg0.routes: 'yes please' is not valid; expected 1 or 0",
        ),
        (
            &[("relay", "iptables"), ("wan", "eth1")],
            "wgroam.wg0.relay: 'iptables' is not valid; expected off, nft or fw4",
        ),
        (
            &[("wan", "eth/1")],
            "wgroam.wg0.wan: 'eth/1' is not valid; expected the WAN device, e.g. 'eth1' or 'wan'",
        ),
        (&[("wan", "a\"b")], "wgroam.wg0.wan: 'a\"b' is not valid"),
        (
            &[("forwarding", "1")],
            "wgroam.wg0.forwarding: '1' needs option wan; expected \"option wan 'DEVICE'\" naming the WAN device",
        ),
        (
            &[("relay", "nft")],
            "wgroam.wg0.relay: 'nft' needs option wan",
        ),
        (
            &[("ndp_proxy", "1")],
            "wgroam.wg0.ndp_proxy: '1' needs option wan",
        ),
        (
            &[("ndp_proxy", "2"), ("wan", "eth1")],
            "wgroam.wg0.ndp_proxy: '2' is not valid; expected 1 or 0",
        ),
    ];
    for (opts, want) in cases {
        let secs = vec![
            sec("agent", Some("agent"), &[("role", "hub")]),
            sec("interface", Some("wg0"), opts),
        ];
        let p = problems(&secs);
        assert_eq!(p.len(), 1, "{opts:?}: {p:?}");
        assert!(p[0].starts_with(want), "{opts:?}: {}", p[0]);
    }
}

#[test]
fn an_option_of_the_other_role_says_so() {
    let mut secs = good();
    secs[1]
        .options
        .push(("prefix".into(), Value::Single("2001:db8::/64".into())));
    assert_eq!(
        problems(&secs),
        vec![
            "wgroam.wg0.prefix: is a roam option, but agent.role is 'hub'; remove it or change the role"
        ]
    );
    let mut secs = good();
    secs[0].options[0].1 = Value::Single("roam".into());
    secs[1]
        .options
        .push(("capture".into(), Value::Single("1".into())));
    assert!(problems(&secs)[0].starts_with("wgroam.wg0.capture: is a hub option"));
}
