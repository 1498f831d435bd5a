//! The relay adapter: wiring to fakes (routing, host), and the real nft
//! and sysctl in a network namespace (root).

use super::*;
use crate::core::net::{ROUTE_PROTO, Route};
use crate::core::relay::{RETRY_MS, ROUTE_GRACE_MS, ROUTE_METRIC, nft_ruleset, nft_script};
use crate::os::host::fake::{FakeHost, Host};
use crate::os::rtnl::fake::{FakeRouting, Table};
use crate::os::testns::{Netns, is_root};
use std::cell::RefCell;
use std::rc::Rc;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn cfg(iface_opts: &str) -> Config {
    let text = format!(
        "config agent 'agent'\n\toption role 'hub'\n\nconfig interface 'wg0'\n{iface_opts}"
    );
    let secs = crate::config::uci::syntax::parse_config("test", &text).unwrap();
    crate::config::from_sections(&secs).unwrap()
}

fn allowed() -> Vec<IpNet> {
    vec![net("2001:db8:100::2/128"), net("2001:db8:100:1::/64")]
}

fn relay(table: &Rc<RefCell<Table>>, host: &Rc<RefCell<Host>>) -> HubRelay {
    let t = Rc::clone(table);
    HubRelay::new(
        Box::new(FakeHost(Rc::clone(host))),
        Box::new(move || Ok(Box::new(FakeRouting(Rc::clone(&t))) as Box<dyn Routing>)),
    )
}

fn ours() -> Route {
    Route {
        table: RT_TABLE_MAIN,
        dst: net("2001:db8:100:1::/64"),
        src: None,
        gateway: None,
        oif: Some(7),
        metric: ROUTE_METRIC,
        proto: ROUTE_PROTO,
    }
}

#[test]
fn with_route_events_watched_only_an_event_makes_it_dump_the_table_again() {
    let table = Rc::new(RefCell::new(Table::default()));
    let host = host_before_forwarding();
    let c = cfg("\toption wan 'wan'\n\toption forwarding '1'\n");
    let mut r = relay(&table, &host);
    r.links_watched();
    let run = |r: &mut HubRelay, from: u64, to: u64| {
        for t in (from..to).step_by(500) {
            r.seen("wg0", Some(allowed()));
            r.reconcile(t, &c);
        }
    };
    run(&mut r, 0, 30_000);
    assert_eq!(table.borrow().adds, 1);
    assert_eq!(table.borrow().routes, [ours()]);
    // A minute of periodic re-checks: the table is not dumped (nothing said
    // it changed), yet the re-check runs: a sysctl someone reset (no event
    // tells of that) is set again.
    let dumps = table.borrow().dumps;
    host.borrow_mut()
        .sysctl
        .insert(crate::core::relay::SYSCTL_FORWARDING.into(), "0".into());
    run(&mut r, 30_000, 90_000);
    assert_eq!(table.borrow().dumps, dumps, "no route event, no dump");
    assert_eq!(
        host.borrow().sysctl[crate::core::relay::SYSCTL_FORWARDING],
        "1",
        "the re-check still runs"
    );
    // Someone deletes the route: its notification makes the relay look,
    // and the route is back after its grace.
    table.borrow_mut().routes.clear();
    r.routes_changed();
    run(&mut r, 90_000, 90_000 + ROUTE_GRACE_MS + 2_000);
    assert_eq!(table.borrow().adds, 2);
    assert_eq!(table.borrow().routes, [ours()]);
    // A link event (a link going down takes its IPv4 routes without a
    // route notification) makes the next reconciliation (here the periodic
    // re-check) dump again too.
    run(&mut r, 100_000, 120_000);
    let dumps = table.borrow().dumps;
    r.links_changed();
    run(
        &mut r,
        120_000,
        120_000 + crate::core::relay::CHECK_MS + 500,
    );
    assert_eq!(table.borrow().dumps, dumps + 1);
}

#[test]
fn route_is_added_once_survives_a_restart_and_goes_on_stop() {
    let table = Rc::new(RefCell::new(Table::default()));
    let host = Rc::new(RefCell::new(Host::default()));
    let foreign = Route {
        dst: net("2001:db8:100::/64"),
        metric: 256,
        proto: 2,
        ..ours()
    };
    table.borrow_mut().routes.push(foreign.clone());
    let c = cfg("");
    let mut r = relay(&table, &host);
    for t in (0..ROUTE_GRACE_MS).step_by(500) {
        r.seen("wg0", Some(allowed()));
        r.reconcile(t, &c);
    }
    assert_eq!(table.borrow().adds, 0, "grace first");
    for t in (ROUTE_GRACE_MS..30_000).step_by(500) {
        r.seen("wg0", Some(allowed()));
        r.reconcile(t, &c);
    }
    assert_eq!(table.borrow().adds, 1);
    assert_eq!(table.borrow().routes, [foreign.clone(), ours()]);

    // Killed and started again: finds its route, does nothing.
    let mut again = relay(&table, &host);
    for t in (0..30_000).step_by(500) {
        again.seen("wg0", Some(allowed()));
        again.reconcile(t, &c);
    }
    assert_eq!((table.borrow().adds, table.borrow().dels), (1, 0));

    again.stop(&c);
    assert_eq!(table.borrow().routes, [foreign], "only ours removed");
    assert!(host.borrow().nft.is_empty(), "relay off: nft never run");
}

#[test]
fn a_device_that_could_not_be_read_keeps_its_routes() {
    let table = Rc::new(RefCell::new(Table::default()));
    let host = Rc::new(RefCell::new(Host::default()));
    table.borrow_mut().routes.push(ours());
    let c = cfg("");
    let mut r = relay(&table, &host);
    // No `seen` at all (read errors): nothing is decided about wg0.
    for t in (0..30_000).step_by(500) {
        r.reconcile(t, &c);
    }
    assert_eq!((table.borrow().adds, table.borrow().dels), (0, 0));
}

#[test]
fn nft_failure_is_retried_not_hammered() {
    let table = Rc::new(RefCell::new(Table::default()));
    let host = Rc::new(RefCell::new(Host {
        nft_fail: 1,
        ..Host::default()
    }));
    let c = cfg("\toption wan 'wan'\n\toption relay 'nft'\n");
    let mut r = relay(&table, &host);
    for t in (0..RETRY_MS).step_by(500) {
        r.seen("wg0", Some(allowed()));
        r.reconcile(t, &c);
    }
    assert_eq!(host.borrow().nft.len(), 1);
    r.seen("wg0", Some(allowed()));
    r.reconcile(RETRY_MS, &c);
    assert_eq!(host.borrow().nft.len(), 2);
    let want = nft_script(nft_ruleset(r.core.last_ifaces()).as_deref());
    assert_eq!(host.borrow().nft[1], want);
    for t in (RETRY_MS..60_000).step_by(500) {
        r.seen("wg0", Some(allowed()));
        r.reconcile(t, &c);
    }
    assert_eq!(host.borrow().nft.len(), 2, "applied once, then left alone");
    r.stop(&c);
    assert_eq!(host.borrow().nft[2], nft_script(None));
}

/// A host as found: forwarding off, RAs accepted only while not forwarding.
fn host_before_forwarding() -> Rc<RefCell<Host>> {
    let host = Rc::new(RefCell::new(Host::default()));
    host.borrow_mut().sysctl = [
        ("net/ipv6/conf/all/forwarding", "0"),
        ("net/ipv6/conf/wan/accept_ra", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    host
}

#[test]
fn forwarding_sysctls_are_set_and_restored() {
    let table = Rc::new(RefCell::new(Table::default()));
    let host = host_before_forwarding();
    let c = cfg("\toption wan 'wan'\n\toption forwarding '1'\n\toption routes '0'\n");
    let mut r = relay(&table, &host);
    r.seen("wg0", Some(allowed()));
    r.reconcile(0, &c);
    let now: Vec<String> = host.borrow().sysctl.values().cloned().collect();
    assert_eq!(now, ["1", "2"]);
    r.stop(&c);
    let now: Vec<String> = host.borrow().sysctl.values().cloned().collect();
    assert_eq!(now, ["0", "1"]);
}

#[test]
fn status_shows_what_the_relay_keeps_in_place() {
    let table = Rc::new(RefCell::new(Table::default()));
    let host = host_before_forwarding();
    let c = cfg("\toption wan 'wan'\n\toption forwarding '1'\n");
    let mut r = relay(&table, &host);
    assert_eq!(r.status_json()["nft_table"], false);
    r.seen("wg0", Some(allowed()));
    r.reconcile(0, &c);
    let s = r.status_json();
    assert_eq!(
        s["routes"]["wg0"],
        serde_json::json!(["2001:db8:100:1::/64"]),
        "{s}"
    );
    // In the order they were changed (accept_ra first keeps RA routes).
    assert_eq!(
        s["changed_sysctls"],
        serde_json::json!([
            "net/ipv6/conf/wan/accept_ra",
            "net/ipv6/conf/all/forwarding"
        ])
    );
    r.stop(&c);
    assert_eq!(r.status_json()["changed_sysctls"], serde_json::json!([]));
}

#[test]
fn a_dead_responder_is_restarted_after_the_retry_time() {
    let table = Rc::new(RefCell::new(Table::default()));
    let host = Rc::new(RefCell::new(Host::default()));
    let c = cfg("\toption wan 'wan'\n\toption ndp_proxy '1'\n\toption routes '0'\n");
    let mut r = relay(&table, &host);
    r.seen("wg0", Some(allowed()));
    r.reconcile(0, &c);
    assert_eq!(host.borrow().ndp, [("wan".to_string(), allowed())]);
    host.borrow_mut().dead.push("wan".into());
    for t in (500..RETRY_MS + 500).step_by(500) {
        r.seen("wg0", Some(allowed()));
        r.reconcile(t, &c);
    }
    assert_eq!(host.borrow().ndp.len(), 1, "not before RETRY_MS");
    r.seen("wg0", Some(allowed()));
    r.reconcile(RETRY_MS + 500, &c);
    assert_eq!(host.borrow().ndp.len(), 2);
    r.stop(&c);
    assert_eq!(host.borrow().ndp[2], ("wan".to_string(), vec![]));
}

// ---------------------------------------------------------------------------
// Root: the real nft and sysctls inside a throw-away network namespace.

fn nft_list(ns: &str) -> String {
    let o = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "list", "ruleset"])
        .output()
        .unwrap();
    // Whitespace-normalised: nft wraps long element lists.
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn root_nft_table_is_replaced_wholesale_and_deleted() {
    if !is_root() {
        eprintln!("skip root_nft_table_is_replaced_wholesale_and_deleted: needs root");
        return;
    }
    let ns = Netns::new(format!("wgr-nfttest-{}", std::process::id()));
    let mut host = SystemHost::default();
    let c = cfg("\toption wan 'wan'\n\toption relay 'nft'\n");
    let mut facts = vec![IfaceFacts {
        ifname: "wg0".into(),
        net: c.interfaces[0].net.clone(),
        ifindex: Some(7),
        allowed_ips: allowed(),
        fresh: true,
    }];
    // Somebody else's table is never touched.
    let other = "table inet other {\n\tchain other_forward {\n\t\ttype filter hook forward priority 0; policy accept;\n\t}\n}\n";
    ns.run(|| host.nft(other)).unwrap();
    let first = nft_script(nft_ruleset(&facts).as_deref());
    for _ in 0..2 {
        ns.run(|| host.nft(&first)).unwrap();
    }
    let listed = nft_list(&ns.0);
    assert!(listed.contains("table inet wgroam"), "{listed}");
    assert!(
        listed.contains("elements = { 2001:db8:100::2, 2001:db8:100:1::/64 }"),
        "{listed}"
    );
    assert_eq!(listed.matches("table inet wgroam").count(), 1);
    assert!(listed.contains("table inet other"));
    // A new prefix replaces the sets.
    facts[0].allowed_ips.push(net("2001:db8:100:2::/64"));
    facts[0].allowed_ips.push(net("100.64.5.0/24"));
    ns.run(|| host.nft(&nft_script(nft_ruleset(&facts).as_deref())))
        .unwrap();
    let listed = nft_list(&ns.0);
    assert!(listed.contains("2001:db8:100:2::/64"), "{listed}");
    assert!(listed.contains("100.64.5.0/24"), "{listed}");
    // Deleted, twice without error; the other table stays.
    for _ in 0..2 {
        ns.run(|| host.nft(&nft_script(None))).unwrap();
    }
    let listed = nft_list(&ns.0);
    assert!(!listed.contains("wgroam"), "{listed}");
    assert!(listed.contains("table inet other"));
    // A broken script is an error naming nft's complaint.
    let e = ns
        .run(|| host.nft("table inet wgroam { nonsense }"))
        .unwrap_err();
    assert!(e.to_string().starts_with("nft failed"), "{e}");
}

#[test]
fn root_sysctls_are_per_namespace() {
    if !is_root() {
        eprintln!("skip root_sysctls_are_per_namespace: needs root");
        return;
    }
    let ns = Netns::new(format!("wgr-sysctltest-{}", std::process::id()));
    let mut host = SystemHost::default();
    let key = "net/ipv6/conf/all/forwarding";
    let outside = host.read_sysctl(key).unwrap();
    ns.run(|| {
        assert_eq!(host.read_sysctl(key).unwrap(), "0");
        host.write_sysctl(key, "1").unwrap();
        assert_eq!(host.read_sysctl(key).unwrap(), "1");
        assert_eq!(host.read_sysctl("net/ipv6/conf/lo/accept_ra").unwrap(), "1");
    });
    assert_eq!(host.read_sysctl(key).unwrap(), outside, "host untouched");
}

/// Device indices are remembered (no socket per lookup) until a link event
/// says they may have changed.
#[test]
fn root_device_indices_are_cached_until_a_link_event() {
    if !is_root() {
        eprintln!("skip root_device_indices_are_cached_until_a_link_event: needs root");
        return;
    }
    let ns = Netns::new(format!("wgr-idx-{}", std::process::id()));
    let add = || ns.ip(&["link", "add", "ix0", "type", "veth", "peer", "name", "ix1"]);
    add();
    let index = || ns.run(|| crate::os::capture::ifindex("ix0").unwrap());
    let mut host = SystemHost::default();
    let first = index();
    assert_eq!(ns.run(|| host.ifindex("ix0")), Some(first));
    // Re-created: a new index, which the cache does not know yet...
    ns.ip(&["link", "del", "ix0"]);
    add();
    let second = index();
    assert_ne!(first, second);
    assert_eq!(ns.run(|| host.ifindex("ix0")), Some(first), "cached");
    // ...until the link event.
    host.links_changed();
    assert_eq!(ns.run(|| host.ifindex("ix0")), Some(second));
    assert_eq!(ns.run(|| host.ifindex("nosuch0")), None);
}
