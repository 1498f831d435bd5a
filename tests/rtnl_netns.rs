//! The rtnetlink adapter against a real kernel, inside a network namespace
//! this test creates and deletes (`wgr-rtnl-<pid>`). Needs root and `ip`;
//! without them it prints why and returns.
//!
//! The namespace is entered with `setns(2)` in a dedicated thread, so the
//! sockets live there while the test harness stays where it was; `ip`
//! commands name the namespace explicitly (`ip -n`).

use std::ffi::CString;
use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use wgroam::core::net::{IpNet, ROUTE_PROTO, Route};
use wgroam::core::roam::{Gateway, UplinkChange, UplinkEvent};
use wgroam::os::rtnl::{Family, Monitor, Routing, Rtnl};

/// Deletes the namespace when dropped, also when the test fails.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces, routes)".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("needs iproute2's `ip`".into()),
    }
}

/// Runs `ip -n <ns> <args>`; panics with its stderr on failure.
fn ip(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["-n", ns])
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip -n {ns} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ifindex(name: &str) -> u32 {
    let c = CString::new(name).unwrap();
    // SAFETY: a valid NUL-terminated string; the lookup uses this thread's
    // network namespace.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert_ne!(i, 0, "no interface {name}");
    i
}

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// Drains the monitor until `want` matches, for at most 3 s.
fn wait_for(mon: &mut Monitor, what: &str, want: impl Fn(&UplinkEvent) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut seen = Vec::new();
    loop {
        for e in mon.drain().expect("drain") {
            if want(&e) {
                return;
            }
            seen.push(e);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {what} within 3 s; saw {seen:?}");
        let mut p = libc::pollfd {
            fd: mon.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, left.as_millis() as i32) };
    }
}

fn count_lines(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn rtnl_against_the_kernel_in_a_netns() {
    if let Some(why) = skip_reason() {
        eprintln!("rtnl_netns: skipped: {why}");
        return;
    }
    let name = format!("wgr-rtnl-{}", std::process::id());
    let status = Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .expect("ip netns add");
    assert!(status.success(), "ip netns add {name} failed");
    let ns = Netns(name.clone());
    ip(&name, &["link", "set", "lo", "up"]);
    ip(
        &name,
        &["link", "add", "d0", "type", "veth", "peer", "name", "d1"],
    );
    ip(&name, &["link", "set", "d0", "up"]);
    ip(&name, &["link", "set", "d1", "up"]);
    let result = std::thread::spawn(move || {
        let f = File::open(format!("/run/netns/{name}")).expect("open netns");
        // SAFETY: a namespace fd we own; only this thread moves.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        in_namespace(&name);
    })
    .join();
    drop(ns);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn in_namespace(ns: &str) {
    let mut mon = Monitor::open().expect("monitor");
    let mut rt = Rtnl::open().expect("rtnl");
    let d0 = ifindex("d0");
    let d1 = ifindex("d1");
    assert!(
        mon.drain().is_ok(),
        "draining an idle monitor does not block"
    );

    // (a) Notifications: addresses of both families, link state.
    ip(
        ns,
        &["addr", "add", "2001:db8:7::1/64", "dev", "d0", "nodad"],
    );
    wait_for(&mut mon, "IPv6 address event", |e| {
        e.ifindex == d0 && e.change == UplinkChange::AddrAdded(addr("2001:db8:7::1"))
    });
    ip(ns, &["addr", "add", "192.0.2.1/24", "dev", "d0"]);
    wait_for(&mut mon, "IPv4 address event", |e| {
        e.ifindex == d0 && e.change == UplinkChange::AddrAdded(addr("192.0.2.1"))
    });
    ip(ns, &["addr", "del", "192.0.2.1/24", "dev", "d0"]);
    wait_for(&mut mon, "IPv4 address removal", |e| {
        e.ifindex == d0 && e.change == UplinkChange::AddrRemoved(addr("192.0.2.1"))
    });
    ip(ns, &["addr", "add", "192.0.2.1/24", "dev", "d0"]);
    ip(ns, &["link", "set", "d1", "down"]);
    wait_for(&mut mon, "carrier loss on d0", |e| {
        e.ifindex == d0 && e.change == UplinkChange::LinkDown
    });
    ip(ns, &["link", "set", "d1", "up"]);
    wait_for(&mut mon, "carrier back on d0", |e| {
        e.ifindex == d0 && e.change == UplinkChange::LinkUp
    });

    // (b) Source-specific default route into the "tunnel": idempotent add.
    let split = Route {
        table: 254,
        dst: net("::/0"),
        src: Some(net("2001:db8:100:1::/64")),
        gateway: None,
        oif: Some(d0),
        metric: 1024,
        proto: ROUTE_PROTO,
    };
    rt.add_route(&split).expect("add split route");
    rt.add_route(&split).expect("adding it again is fine");
    let shown = ip(ns, &["-6", "route", "show"]);
    assert_eq!(
        count_lines(&shown, "from 2001:db8:100:1::/64"),
        1,
        "exactly one route:\n{shown}"
    );
    assert_eq!(
        count_lines(
            &shown,
            "default from 2001:db8:100:1::/64 dev d0 proto 119 metric 1024"
        ),
        1,
        "{shown}"
    );
    wait_for(&mut mon, "route event", |e| {
        e.ifindex == d0 && e.change == UplinkChange::RouteChanged
    });
    let dump = rt.routes(254).expect("dump");
    assert_eq!(dump.iter().filter(|r| r.same_as(&split)).count(), 1);
    assert_eq!(
        dump.iter().find(|r| r.same_as(&split)).unwrap().proto,
        ROUTE_PROTO
    );

    // Pin route via an IPv6 gateway, an IPv4 host route, another table.
    let pin = Route {
        table: 254,
        dst: net("2001:db8:ffff::2/128"),
        src: None,
        gateway: Some(addr("2001:db8:7::fe")),
        oif: Some(d0),
        metric: 1024,
        proto: ROUTE_PROTO,
    };
    let v4 = Route {
        table: 254,
        dst: net("203.0.113.9/32"),
        src: None,
        gateway: Some(addr("192.0.2.254")),
        oif: Some(d0),
        metric: 0,
        proto: ROUTE_PROTO,
    };
    let other_table = Route {
        table: 1000,
        ..split.clone()
    };
    for r in [&pin, &v4, &other_table] {
        rt.add_route(r).unwrap_or_else(|e| panic!("{e}"));
    }
    let dump = rt.routes(254).expect("dump");
    for r in [&split, &pin, &v4] {
        assert!(
            dump.iter().any(|d| d.same_as(r)),
            "{r} missing from {dump:?}"
        );
    }
    let t1000 = rt.routes(1000).expect("dump table 1000");
    assert_eq!(t1000.iter().filter(|r| r.same_as(&other_table)).count(), 1);
    assert!(!dump.iter().any(|d| d.table == 1000), "tables kept apart");
    assert_eq!(
        count_lines(
            &ip(ns, &["-6", "route", "show", "table", "1000"]),
            "from 2001:db8:100:1::/64"
        ),
        1
    );

    // (c) Default gateways: ours (source-specific) is not the uplink.
    assert_eq!(rt.default_gateway(Family::V6).unwrap(), None);
    ip(
        ns,
        &[
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:db8:7::fe",
            "dev",
            "d0",
            "metric",
            "512",
        ],
    );
    ip(
        ns,
        &["route", "add", "default", "via", "192.0.2.254", "dev", "d0"],
    );
    assert_eq!(
        rt.default_gateway(Family::V6).unwrap(),
        Some(Gateway {
            via: Some(addr("2001:db8:7::fe")),
            ifindex: d0
        })
    );
    assert_eq!(
        rt.default_gateway(Family::V4).unwrap(),
        Some(Gateway {
            via: Some(addr("192.0.2.254")),
            ifindex: d0
        })
    );

    // Deletes match our protocol: somebody else's route stays.
    ip(
        ns,
        &[
            "-6",
            "route",
            "add",
            "2001:db8:ffff::3/128",
            "dev",
            "d0",
            "proto",
            "static",
        ],
    );
    let theirs = Route {
        dst: net("2001:db8:ffff::3/128"),
        src: None,
        ..split.clone()
    };
    rt.del_route(&theirs)
        .expect("deleting a route we do not own is a no-op");
    assert_eq!(
        count_lines(&ip(ns, &["-6", "route", "show"]), "2001:db8:ffff::3"),
        1
    );

    // del_route removes ours; again is fine.
    for r in [&split, &pin, &v4, &other_table] {
        rt.del_route(r).unwrap_or_else(|e| panic!("{e}"));
        rt.del_route(r).unwrap_or_else(|e| panic!("again: {e}"));
    }
    let shown = ip(ns, &["-6", "route", "show"]);
    assert_eq!(
        count_lines(&shown, "from 2001:db8:100:1::/64"),
        0,
        "{shown}"
    );
    assert_eq!(count_lines(&shown, "2001:db8:ffff::2"), 0, "{shown}");
    assert_eq!(
        count_lines(&ip(ns, &["-4", "route", "show"]), "203.0.113.9"),
        0
    );
    let dump = rt.routes(254).expect("dump");
    assert!(!dump.iter().any(|r| r.proto == ROUTE_PROTO), "{dump:?}");

    // A bad route is a clear error, not a panic.
    let bad = Route {
        gateway: Some(addr("2001:db8:99::1")),
        ..pin.clone()
    };
    let err = rt.add_route(&bad).expect_err("unreachable gateway");
    assert!(
        err.to_string()
            .starts_with("add route 2001:db8:ffff::2/128 via 2001:db8:99::1"),
        "{err}"
    );

    // (d) Addresses: idempotent add and delete.
    for (a, len) in [("2001:db8:100:1::1", 64), ("198.51.100.7", 24)] {
        rt.add_address(d1, addr(a), len).expect("add address");
        rt.add_address(d1, addr(a), len).expect("again");
        assert_eq!(
            count_lines(
                &ip(ns, &["addr", "show", "dev", "d1"]),
                &format!("{a}/{len}")
            ),
            1
        );
        wait_for(&mut mon, "own address event", |e| {
            e.ifindex == d1 && e.change == UplinkChange::AddrAdded(addr(a))
        });
        rt.del_address(d1, addr(a), len).expect("del address");
        rt.del_address(d1, addr(a), len).expect("again");
        assert_eq!(
            count_lines(&ip(ns, &["addr", "show", "dev", "d1"]), &format!("{a}/")),
            0
        );
    }

    // (e) The address dump sees what netifd leaves after a withdrawal: a
    // deprecated address (preferred 0, valid 7200) inside the prefix.
    ip(
        ns,
        &[
            "-6",
            "addr",
            "add",
            "2001:db8:100:1::1/64",
            "dev",
            "d1",
            "nodad",
            "valid_lft",
            "7200",
            "preferred_lft",
            "0",
        ],
    );
    ip(
        ns,
        &[
            "-6",
            "addr",
            "add",
            "2001:db8:100:2::1/64",
            "dev",
            "d1",
            "nodad",
        ],
    );
    let dump = rt.addresses(d1).expect("dump addresses");
    let find = |a: &str| dump.iter().find(|x| x.addr == addr(a)).copied();
    let dep = find("2001:db8:100:1::1").expect("deprecated one listed");
    assert!(dep.deprecated && dep.prefix_len == 64, "{dep:?}");
    let live = find("2001:db8:100:2::1").expect("live one listed");
    assert!(!live.deprecated && !live.tentative, "{live:?}");
    assert!(dump.iter().all(|x| x.addr != addr("2001:db8:100:1::2")));
    assert!(
        rt.addresses(d0)
            .unwrap()
            .iter()
            .all(|x| x.addr != addr("2001:db8:100:1::1")),
        "only the interface asked about"
    );
    // Without nodad the new address is tentative while DAD runs (~1 s).
    ip(
        ns,
        &["-6", "addr", "add", "2001:db8:100:3::1/64", "dev", "d1"],
    );
    let fresh = rt
        .addresses(d1)
        .unwrap()
        .into_iter()
        .find(|x| x.addr == addr("2001:db8:100:3::1"))
        .expect("fresh one listed");
    assert!(fresh.tentative, "{fresh:?}");
    rt.del_address(d1, addr("2001:db8:100:1::1"), 64)
        .expect("del deprecated");
    assert!(
        rt.addresses(d1)
            .unwrap()
            .iter()
            .all(|x| x.addr != addr("2001:db8:100:1::1"))
    );

    // A removed link is reported as gone.
    ip(ns, &["link", "del", "d0"]);
    wait_for(&mut mon, "link removal", |e| {
        e.ifindex == d0 && e.change == UplinkChange::LinkGone
    });
}
