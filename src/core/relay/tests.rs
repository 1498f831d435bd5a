//! The relay's desired state: routes, sysctls, nft text and NDP targets.

use super::*;

const WG: u32 = 7;
const OTHER: u32 = 3;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn lab_allowed() -> Vec<IpNet> {
    vec![net("2001:db8:100::2/128"), net("2001:db8:100:1::/64")]
}

fn iface(net_opts: HubNet) -> IfaceFacts {
    IfaceFacts {
        ifname: "wg0".into(),
        net: net_opts,
        ifindex: Some(WG),
        allowed_ips: lab_allowed(),
        fresh: true,
    }
}

fn all_on() -> HubNet {
    HubNet {
        routes: true,
        wan: Some("wan".into()),
        forwarding: true,
        relay: RelayMode::Nft,
        ndp_proxy: true,
    }
}

fn facts(i: IfaceFacts, routes: Vec<Route>) -> Facts {
    Facts {
        ifaces: vec![i],
        routes: Some(routes),
        sysctl: BTreeMap::new(),
    }
}

fn foreign(dst: &str, oif: u32) -> Route {
    Route {
        table: RT_TABLE_MAIN,
        dst: net(dst),
        src: None,
        gateway: None,
        oif: Some(oif),
        metric: 1024,
        proto: 3, // boot: `ip route add`
    }
}

fn ours(dst: &str, oif: u32) -> Route {
    route_for(net(dst), oif)
}

/// The non-log actions.
fn acts(v: Vec<RelayAction>) -> Vec<RelayAction> {
    v.into_iter()
        .filter(|a| !matches!(a, RelayAction::Log(_)))
        .collect()
}

fn logs(v: &[RelayAction]) -> Vec<String> {
    v.iter()
        .filter_map(|a| match a {
            RelayAction::Log(Log { msg, .. }) => Some(msg.clone()),
            _ => None,
        })
        .collect()
}

fn add(dst: &str) -> RelayAction {
    RelayAction::AddRoute {
        ifname: "wg0".into(),
        route: ours(dst, WG),
    }
}

fn del(dst: &str, oif: u32) -> RelayAction {
    RelayAction::DelRoute {
        ifname: if oif == WG {
            "wg0".into()
        } else {
            format!("#{oif}")
        },
        route: ours(dst, oif),
    }
}

fn routes_only() -> HubNet {
    HubNet::default()
}

#[test]
fn prefixes_are_routed_not_tunnel_addresses_or_defaults() {
    let allowed = [
        net("2001:db8:100::2/128"),
        net("2001:db8:100:1::/64"),
        net("100.64.9.1/32"),
        net("100.64.10.0/24"),
        net("::/0"),
        net("0.0.0.0/0"),
        net("2001:db8:100:1::/64"),
    ];
    assert_eq!(
        routed_prefixes(&allowed),
        [net("100.64.10.0/24"), net("2001:db8:100:1::/64")]
    );
    assert_eq!(
        ndp_targets(&allowed),
        [net("2001:db8:100::2/128"), net("2001:db8:100:1::/64")],
        "NDP: IPv6 only, tunnel addresses included, never ::/0"
    );
}

#[test]
fn collapse_drops_contained_prefixes() {
    let c = collapse([
        net("2001:db8:100:1::/64"),
        net("2001:db8:100::/48"),
        net("2001:db8:100::2/128"),
        net("2001:db8:200::/64"),
        net("100.64.0.1/32"),
    ]);
    assert_eq!(
        c,
        [
            net("100.64.0.1/32"),
            net("2001:db8:100::/48"),
            net("2001:db8:200::/64")
        ]
    );
}

#[test]
fn missing_prefix_is_added_after_the_grace_and_only_once() {
    let mut r = Relay::new();
    let f = facts(iface(routes_only()), vec![foreign("2001:db8:100::/64", WG)]);
    assert_eq!(acts(r.reconcile(0, &f)), [], "netifd gets the grace first");
    assert_eq!(acts(r.reconcile(ROUTE_GRACE_MS - 1, &f)), []);
    let out = r.reconcile(ROUTE_GRACE_MS, &f);
    assert_eq!(acts(out.clone()), [add("2001:db8:100:1::/64")]);
    assert_eq!(
        logs(&out),
        ["wg0: adding route 2001:db8:100:1::/64 dev wg0 metric 1119 proto 119"]
    );
    // Not confirmed yet: not repeated until RETRY_MS, then with a warning.
    assert_eq!(acts(r.reconcile(ROUTE_GRACE_MS + 500, &f)), []);
    let out = r.reconcile(ROUTE_GRACE_MS + RETRY_MS, &f);
    assert_eq!(acts(out.clone()), [add("2001:db8:100:1::/64")]);
    assert!(logs(&out)[0].contains("retrying"));
    // Applied: nothing more, ever.
    let mut f2 = f.clone();
    f2.routes
        .as_mut()
        .unwrap()
        .push(ours("2001:db8:100:1::/64", WG));
    for t in [20_000, 60_000, 600_000] {
        assert_eq!(acts(r.reconcile(t, &f2)), []);
    }
    // A restarted agent finds its route and does nothing.
    let mut again = Relay::new();
    for t in [0, 5_000, 50_000] {
        assert_eq!(acts(again.reconcile(t, &f2)), []);
    }
}

#[test]
fn grace_restarts_when_the_route_shows_up_meanwhile() {
    let mut r = Relay::new();
    let missing = facts(iface(routes_only()), vec![]);
    let there = facts(
        iface(routes_only()),
        vec![foreign("2001:db8:100:1::/64", WG)],
    );
    assert_eq!(acts(r.reconcile(0, &missing)), []);
    assert_eq!(acts(r.reconcile(1_000, &there)), []);
    // Gone again (ifup): a fresh grace period starts.
    assert_eq!(acts(r.reconcile(4_000, &missing)), []);
    assert_eq!(acts(r.reconcile(6_999, &missing)), []);
    assert_eq!(
        acts(r.reconcile(7_000, &missing)),
        [add("2001:db8:100:1::/64")]
    );
}

#[test]
fn a_route_through_the_device_by_anyone_counts_and_ours_yields_to_it() {
    let mut r = Relay::new();
    // netifd's route (any protocol, any metric) through wg0: nothing to do.
    let f = facts(
        iface(routes_only()),
        vec![foreign("2001:db8:100:1::/64", WG)],
    );
    for t in [0, 5_000, 50_000] {
        assert_eq!(acts(r.reconcile(t, &f)), []);
    }
    // Somebody adds theirs while ours exists: ours is redundant, removed.
    let f = facts(
        iface(routes_only()),
        vec![
            ours("2001:db8:100:1::/64", WG),
            foreign("2001:db8:100:1::/64", WG),
        ],
    );
    assert_eq!(
        acts(r.reconcile(60_000, &f)),
        [del("2001:db8:100:1::/64", WG)]
    );
}

#[test]
fn a_route_elsewhere_does_not_count() {
    let mut r = Relay::new();
    let f = facts(
        iface(routes_only()),
        vec![
            foreign("2001:db8:100:1::/64", OTHER),
            Route {
                src: Some(net("2001:db8::/32")),
                ..foreign("2001:db8:100:1::/64", WG)
            },
            Route {
                table: 100,
                ..foreign("2001:db8:100:1::/64", WG)
            },
        ],
    );
    r.reconcile(0, &f);
    assert_eq!(
        acts(r.reconcile(ROUTE_GRACE_MS, &f)),
        [add("2001:db8:100:1::/64")]
    );
}

#[test]
fn only_our_routes_through_managed_devices_are_ever_deleted() {
    let mut r = Relay::new();
    let mut i = iface(routes_only());
    i.allowed_ips = vec![net("2001:db8:100::2/128")]; // prefix withdrawn
    let mut odd_metric = ours("2001:db8:100:2::/64", WG);
    odd_metric.metric = 5;
    let f = facts(
        i,
        vec![
            ours("2001:db8:100:1::/64", WG),
            foreign("2001:db8:100:3::/64", WG),
            ours("2001:db8:100:9::/64", OTHER), // e.g. another agent's
            odd_metric.clone(),
        ],
    );
    let got = acts(r.reconcile(0, &f));
    assert_eq!(
        got,
        [
            del("2001:db8:100:1::/64", WG),
            RelayAction::DelRoute {
                ifname: "wg0".into(),
                route: odd_metric,
            }
        ]
    );
}

#[test]
fn unknown_state_changes_nothing() {
    let mut r = Relay::new();
    let stale = IfaceFacts {
        fresh: false,
        allowed_ips: vec![],
        ..iface(routes_only())
    };
    let f = facts(stale, vec![ours("2001:db8:100:1::/64", WG)]);
    for t in [0, 5_000] {
        assert_eq!(acts(r.reconcile(t, &f)), [], "read failed: keep ours");
    }
    let gone = IfaceFacts {
        ifindex: None,
        ..iface(routes_only())
    };
    let f = facts(gone, vec![]);
    for t in [10_000, 20_000] {
        assert_eq!(acts(r.reconcile(t, &f)), [], "no device: nothing to route");
    }
    let mut f = facts(iface(routes_only()), vec![]);
    f.routes = None;
    for t in [30_000, 40_000] {
        assert_eq!(acts(r.reconcile(t, &f)), [], "no route dump: no change");
    }
}

#[test]
fn routes_off_removes_ours_and_adds_nothing() {
    let mut r = Relay::new();
    let f = facts(
        iface(HubNet {
            routes: false,
            ..HubNet::default()
        }),
        vec![ours("2001:db8:100:1::/64", WG)],
    );
    assert_eq!(acts(r.reconcile(0, &f)), [del("2001:db8:100:1::/64", WG)]);
    let f = facts(f.ifaces[0].clone(), vec![]);
    for t in [5_000, 50_000] {
        assert_eq!(acts(r.reconcile(t, &f)), []);
    }
}

#[test]
fn a_device_dropped_from_the_config_loses_our_routes() {
    let mut r = Relay::new();
    let f = facts(iface(routes_only()), vec![ours("2001:db8:100:1::/64", WG)]);
    assert_eq!(acts(r.reconcile(0, &f)), []);
    let f = Facts {
        ifaces: vec![],
        ..f
    };
    assert_eq!(
        acts(r.reconcile(1_000, &f)),
        [del("2001:db8:100:1::/64", WG)]
    );
}

#[test]
fn stop_removes_ours_only() {
    let mut r = Relay::new();
    let f = facts(
        iface(routes_only()),
        vec![
            ours("2001:db8:100:1::/64", WG),
            foreign("2001:db8:100:3::/64", WG),
            ours("2001:db8:100:9::/64", OTHER),
        ],
    );
    assert_eq!(acts(r.reconcile(0, &f)), []);
    assert_eq!(acts(r.stop(&f)), [del("2001:db8:100:1::/64", WG)]);
}

fn sysctl(f: &mut Facts, kv: &[(&str, &str)]) {
    f.sysctl = kv
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
}

fn set(key: &str, value: &str) -> RelayAction {
    RelayAction::Sysctl {
        key: key.into(),
        value: value.into(),
    }
}

fn forwarding_only() -> HubNet {
    HubNet {
        routes: false,
        wan: Some("wan".into()),
        forwarding: true,
        ..HubNet::default()
    }
}

#[test]
fn forwarding_keeps_ra_default_routes_and_is_restored_in_reverse() {
    let mut r = Relay::new();
    let mut f = facts(iface(forwarding_only()), vec![]);
    assert_eq!(
        r.sysctl_keys(&f.ifaces),
        [
            "net/ipv6/conf/all/forwarding".to_string(),
            "net/ipv6/conf/wan/accept_ra".to_string()
        ]
    );
    sysctl(
        &mut f,
        &[
            ("net/ipv6/conf/all/forwarding", "0"),
            ("net/ipv6/conf/wan/accept_ra", "1"),
        ],
    );
    let out = r.reconcile(0, &f);
    assert_eq!(
        acts(out.clone()),
        [
            set("net/ipv6/conf/wan/accept_ra", "2"),
            set("net/ipv6/conf/all/forwarding", "1")
        ],
        "accept_ra first: forwarding on purges RA routes of accept_ra 1"
    );
    assert_eq!(
        logs(&out),
        [
            "setting net.ipv6.conf.wan.accept_ra = 2 (was 1)",
            "setting net.ipv6.conf.all.forwarding = 1 (was 0)"
        ]
    );
    sysctl(
        &mut f,
        &[
            ("net/ipv6/conf/all/forwarding", "1"),
            ("net/ipv6/conf/wan/accept_ra", "2"),
        ],
    );
    assert_eq!(acts(r.reconcile(1_000, &f)), []);
    assert_eq!(
        acts(r.stop(&f)),
        [
            set("net/ipv6/conf/all/forwarding", "0"),
            set("net/ipv6/conf/wan/accept_ra", "1")
        ]
    );
}

#[test]
fn accept_ra_is_left_alone_when_the_wan_does_not_use_ras() {
    for ra in ["0", "2"] {
        let mut r = Relay::new();
        let mut f = facts(iface(forwarding_only()), vec![]);
        sysctl(
            &mut f,
            &[
                ("net/ipv6/conf/all/forwarding", "0"),
                ("net/ipv6/conf/wan/accept_ra", ra),
            ],
        );
        assert_eq!(
            acts(r.reconcile(0, &f)),
            [set("net/ipv6/conf/all/forwarding", "1")]
        );
        sysctl(
            &mut f,
            &[
                ("net/ipv6/conf/all/forwarding", "1"),
                ("net/ipv6/conf/wan/accept_ra", ra),
            ],
        );
        assert_eq!(acts(r.stop(&f)), [set("net/ipv6/conf/all/forwarding", "0")]);
    }
}

#[test]
fn forwarding_already_on_is_never_touched() {
    let mut r = Relay::new();
    let mut f = facts(iface(forwarding_only()), vec![]);
    sysctl(
        &mut f,
        &[
            ("net/ipv6/conf/all/forwarding", "1"),
            ("net/ipv6/conf/wan/accept_ra", "0"),
        ],
    );
    assert_eq!(acts(r.reconcile(0, &f)), []);
    assert_eq!(acts(r.stop(&f)), []);
    // Without the option nothing is even read.
    let off = facts(iface(routes_only()), vec![]);
    assert!(Relay::new().sysctl_keys(&off.ifaces).is_empty());
}

#[test]
fn a_failed_sysctl_is_retried_and_not_restored() {
    let mut r = Relay::new();
    let mut f = facts(iface(forwarding_only()), vec![]);
    sysctl(
        &mut f,
        &[
            ("net/ipv6/conf/all/forwarding", "0"),
            ("net/ipv6/conf/wan/accept_ra", "0"),
        ],
    );
    let a = acts(r.reconcile(0, &f));
    assert_eq!(a, [set("net/ipv6/conf/all/forwarding", "1")]);
    r.failed(0, &a[0]);
    assert_eq!(acts(r.reconcile(1_000, &f)), []);
    assert_eq!(acts(r.reconcile(RETRY_MS, &f)), a);
    r.failed(RETRY_MS, &a[0]);
    assert_eq!(acts(r.stop(&f)), [], "nothing was changed");
}

#[test]
fn forwarding_option_dropped_on_reload_restores() {
    let mut r = Relay::new();
    let mut f = facts(iface(forwarding_only()), vec![]);
    sysctl(
        &mut f,
        &[
            ("net/ipv6/conf/all/forwarding", "0"),
            ("net/ipv6/conf/wan/accept_ra", "1"),
        ],
    );
    r.reconcile(0, &f);
    let mut g = facts(iface(routes_only()), vec![]);
    assert_eq!(
        r.sysctl_keys(&g.ifaces).len(),
        2,
        "restorable keys are still read"
    );
    sysctl(
        &mut g,
        &[
            ("net/ipv6/conf/all/forwarding", "1"),
            ("net/ipv6/conf/wan/accept_ra", "2"),
        ],
    );
    assert_eq!(
        acts(r.reconcile(1_000, &g)),
        [
            set("net/ipv6/conf/all/forwarding", "0"),
            set("net/ipv6/conf/wan/accept_ra", "1")
        ]
    );
    assert!(r.sysctl_keys(&g.ifaces).is_empty());
}

const LAB_RULESET: &str = r#"table inet wgroam {
	set peersv6_0 {
		type ipv6_addr
		flags interval
		comment "peers of wg0"
		elements = { 2001:db8:100::2, 2001:db8:100:1::/64 }
	}
	set peersv4_0 {
		type ipv4_addr
		flags interval
		comment "peers of wg0"
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		oifname "wg0" iifname != "wan" counter drop
		oifname "wg0" ip6 daddr != @peersv6_0 counter drop
		oifname "wg0" ip daddr != @peersv4_0 counter drop
		iifname "wg0" ip6 saddr != @peersv6_0 counter drop
		iifname "wg0" ip saddr != @peersv4_0 counter drop
	}
}
"#;

#[test]
fn nft_ruleset_admits_wan_to_peers_only() {
    let f = facts(iface(all_on()), vec![]);
    assert_eq!(nft_ruleset(&f.ifaces).as_deref(), Some(LAB_RULESET));
    let off = facts(iface(routes_only()), vec![]);
    assert_eq!(nft_ruleset(&off.ifaces), None);
    let no_wan = facts(
        iface(HubNet {
            wan: None,
            ..all_on()
        }),
        vec![],
    );
    assert_eq!(nft_ruleset(&no_wan.ifaces), None);
}

#[test]
fn nft_script_replaces_the_table_in_one_transaction() {
    assert_eq!(
        nft_script(None),
        "table inet wgroam\ndelete table inet wgroam\n"
    );
    let s = nft_script(Some(LAB_RULESET));
    assert!(s.starts_with("table inet wgroam\ndelete table inet wgroam\ntable inet wgroam {"));
}

fn nft_relay() -> HubNet {
    HubNet {
        routes: false,
        wan: Some("wan".into()),
        relay: RelayMode::Nft,
        ..HubNet::default()
    }
}

#[test]
fn nft_is_applied_on_change_only_and_deleted_on_stop() {
    let mut r = Relay::new();
    let mut f = facts(iface(nft_relay()), vec![]);
    assert_eq!(
        acts(r.reconcile(0, &f)),
        [RelayAction::Nft {
            script: nft_script(Some(LAB_RULESET))
        }]
    );
    assert!(r.nft_applied());
    assert_eq!(acts(r.reconcile(1_000, &f)), []);
    // A new peer prefix: the whole table again.
    f.ifaces[0].allowed_ips.push(net("2001:db8:100:2::/64"));
    let a = acts(r.reconcile(2_000, &f));
    let [RelayAction::Nft { script }] = a.as_slice() else {
        panic!("{a:?}")
    };
    assert!(
        script.contains("elements = { 2001:db8:100::2, 2001:db8:100:1::/64, 2001:db8:100:2::/64 }")
    );
    // A failure is retried after RETRY_MS, not before.
    r.failed(2_000, &a[0]);
    assert!(!r.nft_applied());
    assert_eq!(acts(r.reconcile(3_000, &f)), []);
    assert_eq!(acts(r.reconcile(2_000 + RETRY_MS, &f)), a);
    assert_eq!(
        acts(r.stop(&f)),
        [RelayAction::Nft {
            script: nft_script(None)
        }]
    );
    assert_eq!(acts(r.stop(&f)), [], "deleted once");
}

#[test]
fn relay_off_never_touches_nft() {
    let mut r = Relay::new();
    let f = facts(iface(routes_only()), vec![]);
    r.reconcile(0, &f);
    assert!(
        !r.reconcile(ROUTE_GRACE_MS, &f)
            .iter()
            .chain(r.stop(&f).iter())
            .any(|a| matches!(a, RelayAction::Nft { .. }))
    );
}

#[test]
fn ndp_targets_follow_the_peers() {
    let mut r = Relay::new();
    let ndp = HubNet {
        routes: false,
        wan: Some("wan".into()),
        ndp_proxy: true,
        ..HubNet::default()
    };
    let mut f = facts(iface(ndp), vec![]);
    let t = |v: &[&str]| RelayAction::NdpTargets {
        wan: "wan".into(),
        targets: v.iter().map(|s| net(s)).collect(),
    };
    assert_eq!(
        acts(r.reconcile(0, &f)),
        [t(&["2001:db8:100::2/128", "2001:db8:100:1::/64"])]
    );
    assert_eq!(acts(r.reconcile(1_000, &f)), []);
    f.ifaces[0].allowed_ips = vec![net("2001:db8:100:1::/64"), net("::/0")];
    assert_eq!(acts(r.reconcile(2_000, &f)), [t(&["2001:db8:100:1::/64"])]);
    // Opening the responder failed: retried after RETRY_MS.
    r.failed(2_000, &t(&["2001:db8:100:1::/64"]));
    assert_eq!(acts(r.reconcile(3_000, &f)), []);
    assert_eq!(
        acts(r.reconcile(2_000 + RETRY_MS, &f)),
        [t(&["2001:db8:100:1::/64"])]
    );
    assert_eq!(acts(r.stop(&f)), [t(&[])]);
    assert_eq!(acts(r.stop(&f)), []);
}

#[test]
fn everything_on_in_order_and_undone_on_stop() {
    let mut r = Relay::new();
    let mut f = facts(iface(all_on()), vec![]);
    sysctl(
        &mut f,
        &[
            ("net/ipv6/conf/all/forwarding", "0"),
            ("net/ipv6/conf/wan/accept_ra", "1"),
        ],
    );
    r.reconcile(0, &f);
    let a = acts(r.reconcile(ROUTE_GRACE_MS, &f));
    assert_eq!(a, [add("2001:db8:100:1::/64")]);
    f.routes = Some(vec![ours("2001:db8:100:1::/64", WG)]);
    sysctl(
        &mut f,
        &[
            ("net/ipv6/conf/all/forwarding", "1"),
            ("net/ipv6/conf/wan/accept_ra", "2"),
        ],
    );
    let stop = acts(r.stop(&f));
    assert_eq!(
        stop,
        [
            RelayAction::NdpTargets {
                wan: "wan".into(),
                targets: vec![]
            },
            RelayAction::Nft {
                script: nft_script(None)
            },
            del("2001:db8:100:1::/64", WG),
            set("net/ipv6/conf/all/forwarding", "0"),
            set("net/ipv6/conf/wan/accept_ra", "1"),
        ]
    );
}

#[test]
fn a_route_lost_much_later_is_added_again_without_a_retry_warning() {
    let mut r = Relay::new();
    let missing = facts(iface(routes_only()), vec![]);
    let there = facts(iface(routes_only()), vec![ours("2001:db8:100:1::/64", WG)]);
    r.reconcile(0, &missing);
    assert_eq!(
        acts(r.reconcile(ROUTE_GRACE_MS, &missing)),
        [add("2001:db8:100:1::/64")]
    );
    r.reconcile(ROUTE_GRACE_MS + 500, &there);
    // An hour later somebody deletes it (ifup): added again, as news.
    r.reconcile(3_600_000, &missing);
    let out = r.reconcile(3_600_000 + ROUTE_GRACE_MS, &missing);
    assert_eq!(acts(out.clone()), [add("2001:db8:100:1::/64")]);
    assert!(!logs(&out)[0].contains("retrying"), "{out:?}");
    assert!(r.inflight.len() <= 1, "old actions are forgotten");
}

#[test]
fn the_relay_asks_for_facts_when_its_interfaces_change_or_a_check_is_due() {
    // The timing of reconciliations is the core's: the adapter gathers the
    // route dump and the sysctls only when `due` says so.
    let mut r = Relay::new();
    let t = Now::new(1_000, 0);
    let i = vec![iface(all_on())];
    assert!(r.due(t, &i), "the first look");
    assert!(!r.due(t.after_ms(999), &i), "nothing changed, not yet");
    assert_eq!(r.poll_at(), Some(1_000 + CHECK_MS));
    let mut changed = i.clone();
    changed[0].allowed_ips.push(net("2001:db8:300::/48"));
    assert!(r.due(t.after_ms(10), &changed), "new allowed IPs: at once");
    assert!(!r.due(t.after_ms(CHECK_MS + 9), &changed), "not yet");
    assert!(
        r.due(t.after_ms(CHECK_MS + 10), &changed),
        "a periodic re-check"
    );
    r.look_again();
    let t = t.after_ms(CHECK_MS);
    assert!(
        r.due(t.after_ms(1_011), &changed),
        "after look_again (a route event)"
    );
    // Through the one entry point: a failed nft script is retried later.
    let a = r.handle(
        t.after_ms(1_011),
        RelayEvent::Observed(facts(changed[0].clone(), vec![])),
    );
    let nft = a
        .into_iter()
        .find(|a| matches!(a, RelayAction::Nft { .. }))
        .expect("nft applied");
    assert!(
        r.handle(t.after_ms(1_012), RelayEvent::Failed(nft))
            .is_empty()
    );
    assert_eq!(
        r.poll_at(),
        Some(t.after_ms(1_011).mono_ms + ROUTE_GRACE_MS),
        "the missing routes' grace first, then the check and the retries"
    );
}

#[test]
fn a_missing_routes_grace_ends_a_wait_without_waiting_for_the_periodic_check() {
    // Route events make the adapter look again; the end of the grace is
    // the core's own deadline, long before CHECK_MS.
    let mut r = Relay::new();
    let t = Now::new(5_000, 0);
    let i = vec![iface(all_on())];
    assert!(r.due(t, &i));
    r.handle(t, RelayEvent::Observed(facts(i[0].clone(), vec![])));
    assert_eq!(r.poll_at(), Some(t.mono_ms + ROUTE_GRACE_MS));
    assert!(
        !r.due(t.after_ms(ROUTE_GRACE_MS - 1), &i),
        "still in its grace"
    );
    assert!(r.due(t.after_ms(ROUTE_GRACE_MS), &i), "the grace is over");
    let out = r.handle(
        t.after_ms(ROUTE_GRACE_MS),
        RelayEvent::Observed(facts(i[0].clone(), vec![])),
    );
    assert!(
        out.iter()
            .any(|a| matches!(a, RelayAction::AddRoute { .. })),
        "{out:?}"
    );
    // Met deadlines do not make every poll a check (a route that cannot be
    // added is retried after RETRY_MS, not at each poll).
    assert!(!r.due(t.after_ms(ROUTE_GRACE_MS + 500), &i));
    assert_eq!(
        r.poll_at(),
        Some(t.after_ms(ROUTE_GRACE_MS).mono_ms + CHECK_MS.min(RETRY_MS))
    );
}
