//! The NDP responder: filter, parser and answers on bytes; a root test in
//! network namespaces with the real `ndisc6`.

use super::*;
use crate::os::testns::{Netns, is_root};
use crate::wire::bpf::tests::run;
use pnet_packet::icmpv6::ndp::NeighborAdvertPacket;

/// A Neighbor Solicitation sent by `ndisc6 2001:db8:100:1::100 vb` from
/// fe80::ff:fe00:b (MAC 02:00:00:00:00:0b), captured with tcpdump: the
/// Ethernet frame (14 bytes of header, then IPv6).
const NDISC6_FRAME: &str = "3333ff00010002000000000b86dd6005a0ce00203afffe80000000000000000000fffe00000bff0200000000000000000001ff0001008700494e0000000020010db8010000010000000000000100010102000000000b";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn real_ns() -> Vec<u8> {
    unhex(NDISC6_FRAME)[14..].to_vec()
}

fn a6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

const SOLICITOR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x0b];
const WAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x0a];

/// An NS from `src` to `dst` for `target` with raw `options`, hop limit
/// `hl`, checksum right.
fn ns(src: &str, dst: &str, target: &str, options: &[u8], hl: u8) -> Vec<u8> {
    let (src, dst) = (a6(src), a6(dst));
    let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&a6(target).octets());
    icmp.extend_from_slice(options);
    let sum = icmpv6::checksum(&Icmpv6Packet::new(&icmp).unwrap(), &src, &dst);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    p.extend_from_slice(&[58, hl]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&icmp);
    p
}

fn slla(mac: [u8; 6]) -> Vec<u8> {
    let mut o = vec![1, 1];
    o.extend_from_slice(&mac);
    o
}

const TARGET: &str = "2001:db8:100:1::100";
const SNODE: &str = "ff02::1:ff00:100";

#[test]
fn solicited_node_groups() {
    assert_eq!(solicited_node(a6(TARGET)), a6(SNODE));
    assert_eq!(
        solicited_node(a6("2001:db8::12:3456:789a")),
        a6("ff02::1:ff56:789a")
    );
}

#[test]
fn filter_passes_solicitations_only() {
    let prog = ns_filter();
    assert_eq!(run(&prog, &real_ns(), ETH_P_IPV6), SNAP);
    assert_eq!(run(&prog, &real_ns(), 0x0800), 0, "not IPv6 by EtherType");
    let mut other = real_ns();
    other[40] = 136; // an advertisement
    assert_eq!(run(&prog, &other, ETH_P_IPV6), 0);
    let mut hl = real_ns();
    hl[7] = 254; // routed from elsewhere
    assert_eq!(run(&prog, &hl, ETH_P_IPV6), 0);
    let mut udp = real_ns();
    udp[6] = 17;
    assert_eq!(run(&prog, &udp, ETH_P_IPV6), 0);
    for cut in [0, 6, 7, 40] {
        assert_eq!(run(&prog, &real_ns()[..cut], ETH_P_IPV6), 0, "cut {cut}");
    }
}

#[test]
fn kernel_accepts_the_filter() {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    attach_filter(s.as_raw_fd(), &ns_filter()).unwrap();
}

#[test]
fn parses_a_real_solicitation() {
    assert_eq!(
        parse_ns(&real_ns()),
        Some(Solicit {
            src: a6("fe80::ff:fe00:b"),
            dst: a6(SNODE),
            target: a6(TARGET),
            source_ll: Some(SOLICITOR_MAC),
        })
    );
}

#[test]
fn invalid_solicitations_are_refused() {
    let good = ns("fe80::1", SNODE, TARGET, &slla(SOLICITOR_MAC), 255);
    assert!(parse_ns(&good).is_some());
    let mut bad_sum = good.clone();
    bad_sum[50] ^= 1;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("checksum", bad_sum),
        ("hop limit", ns("fe80::1", SNODE, TARGET, &[], 64)),
        (
            "multicast target",
            ns("fe80::1", "ff02::1", "ff02::1", &[], 255),
        ),
        (
            "zero-length option",
            ns("fe80::1", SNODE, TARGET, &[1, 0, 0, 0, 0, 0, 0, 0], 255),
        ),
        (
            "option past the end",
            ns("fe80::1", SNODE, TARGET, &[1, 2, 0, 0, 0, 0, 0, 0], 255),
        ),
        (
            "DAD with a source link-layer address",
            ns("::", SNODE, TARGET, &slla(SOLICITOR_MAC), 255),
        ),
        (
            "DAD not to the solicited-node group",
            ns("::", "ff02::1", TARGET, &[], 255),
        ),
        (
            "to another group",
            ns("fe80::1", "ff02::1:ff00:1", TARGET, &[], 255),
        ),
        ("multicast source", ns("ff02::5", SNODE, TARGET, &[], 255)),
    ];
    for (what, p) in cases {
        assert_eq!(parse_ns(&p), None, "{what}");
    }
    // Unicast (neighbour unreachability detection) is fine.
    assert!(parse_ns(&ns("fe80::1", TARGET, TARGET, &[], 255)).is_some());
}

#[test]
fn truncated_or_garbage_never_panics() {
    let p = real_ns();
    for cut in 0..p.len() {
        assert_eq!(parse_ns(&p[..cut]), None, "cut {cut}");
    }
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..2000 {
        let mut f = p.clone();
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x as usize) % f.len();
            f[i] = (x >> 32) as u8;
        }
        let _ = parse_ns(&f);
    }
}

/// (flags, target, tll option, destination) of an answer, checked.
fn read_na(a: &Advert) -> (u8, Ipv6Addr, [u8; 6], Ipv6Addr, Ipv6Addr) {
    let ip = Ipv6Packet::new(&a.packet).unwrap();
    assert_eq!(ip.get_version(), 6);
    assert_eq!(ip.get_hop_limit(), 255);
    assert_eq!(ip.get_next_header(), IpNextHeaderProtocols::Icmpv6);
    assert_eq!(usize::from(ip.get_payload_length()), a.packet.len() - 40);
    let body = ip.payload();
    let icmp = Icmpv6Packet::new(body).unwrap();
    assert_eq!(
        icmpv6::checksum(&icmp, &ip.get_source(), &ip.get_destination()),
        icmp.get_checksum(),
        "checksum"
    );
    let na = NeighborAdvertPacket::new(body).unwrap();
    assert_eq!(na.get_icmpv6_type(), Icmpv6Types::NeighborAdvert);
    assert_eq!(body[24..26], [2, 1], "target link-layer address option");
    let tll: [u8; 6] = body[26..32].try_into().unwrap();
    (
        na.get_flags(),
        na.get_target_addr(),
        tll,
        ip.get_source(),
        ip.get_destination(),
    )
}

#[test]
fn answers_for_targets_inside_the_prefixes() {
    let targets = [net("2001:db8:100:1::/64"), net("2001:db8:100::2/128")];
    let s = parse_ns(&real_ns()).unwrap();
    let a = answer(&s, None, &targets, WAN_MAC).unwrap();
    assert_eq!(a.dst_mac, SOLICITOR_MAC, "from the SLLA option");
    let (flags, target, tll, src, dst) = read_na(&a);
    assert_eq!(
        flags,
        NeighborAdvertFlags::Solicited,
        "solicited, no override (proxy), no router"
    );
    assert_eq!(target, a6(TARGET));
    assert_eq!(tll, WAN_MAC);
    assert_eq!(src, a6(TARGET));
    assert_eq!(dst, a6("fe80::ff:fe00:b"));

    // Host target; no SLLA: the frame's Ethernet source is used.
    let s = parse_ns(&ns(
        "2001:db8:ffff::1",
        "ff02::1:ff00:2",
        "2001:db8:100::2",
        &[],
        255,
    ))
    .unwrap();
    let a = answer(&s, Some([2, 0, 0, 0, 0, 0x77]), &targets, WAN_MAC).unwrap();
    assert_eq!(a.dst_mac, [2, 0, 0, 0, 0, 0x77]);
    assert_eq!(read_na(&a).4, a6("2001:db8:ffff::1"));
    assert_eq!(answer(&s, None, &targets, WAN_MAC), None, "nowhere to send");

    // Outside every prefix: silence.
    for t in ["2001:db8:100:2::100", "2001:db8:100::3", "2001:db8:ffff::2"] {
        let s = parse_ns(&ns(
            "fe80::1",
            &solicited_node(a6(t)).to_string(),
            t,
            &[],
            255,
        ))
        .unwrap();
        assert_eq!(
            answer(&s, Some(SOLICITOR_MAC), &targets, WAN_MAC),
            None,
            "{t}"
        );
    }
    assert_eq!(
        answer(&parse_ns(&real_ns()).unwrap(), None, &[], WAN_MAC),
        None
    );
}

#[test]
fn duplicate_address_detection_gets_an_unsolicited_answer_to_all_nodes() {
    let s = parse_ns(&ns("::", SNODE, TARGET, &[], 255)).unwrap();
    let a = answer(
        &s,
        Some(SOLICITOR_MAC),
        &[net("2001:db8:100:1::/64")],
        WAN_MAC,
    )
    .unwrap();
    assert_eq!(a.dst_mac, [0x33, 0x33, 0, 0, 0, 1]);
    let (flags, .., dst) = read_na(&a);
    assert_eq!(flags, 0);
    assert_eq!(dst, a6("ff02::1"));
}

// ---------------------------------------------------------------------------
// Root: a real solicitation from another namespace gets our answer.

fn sh(args: &[&str]) -> std::process::Output {
    std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap()
}

/// Two namespaces joined by a veth pair, deleted on drop.
struct Pair {
    hub: Netns,
    peer: Netns,
}

/// `ndisc6` from the peer: the MAC it learned for `target`, if answered.
fn ndisc6(pair: &Pair, target: &str) -> Option<String> {
    let o = sh(&[
        "ip",
        "netns",
        "exec",
        &pair.peer.0,
        "ndisc6",
        "-1",
        "-n",
        "-r",
        "2",
        "-w",
        "400",
        target,
        "ndp1",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Target link-layer address:"))
        .map(|m| m.trim().to_ascii_lowercase())
}

#[test]
fn root_a_solicitation_from_a_neighbour_gets_the_wan_mac() {
    if !is_root() {
        eprintln!("skip root_a_solicitation_from_a_neighbour_gets_the_wan_mac: needs root");
        return;
    }
    if sh(&["sh", "-c", "command -v ndisc6"]).stdout.is_empty() {
        eprintln!("skip root_a_solicitation_from_a_neighbour_gets_the_wan_mac: no ndisc6");
        return;
    }
    let pid = std::process::id();
    let pair = Pair {
        hub: Netns::new(format!("wgr-ndptest-{pid}-h")),
        peer: Netns::new(format!("wgr-ndptest-{pid}-p")),
    };
    pair.hub.ip(&[
        "link",
        "add",
        "ndp0",
        "address",
        "02:00:00:00:00:0a",
        "type",
        "veth",
        "peer",
        "name",
        "ndp1",
        "netns",
        &pair.peer.0,
    ]);
    pair.hub.ip(&["link", "set", "ndp0", "up"]);
    pair.peer.ip(&["link", "set", "ndp1", "up"]);
    pair.peer
        .ip(&["addr", "add", "2001:db8:ffff::1/64", "dev", "ndp1", "nodad"]);

    // Without a responder nobody answers.
    assert_eq!(ndisc6(&pair, TARGET), None);

    let r = pair
        .hub
        .run(|| Responder::start("ndp0", vec![net("2001:db8:100:1::/64")]).unwrap());
    assert_eq!(ndisc6(&pair, TARGET).as_deref(), Some("02:00:00:00:00:0a"));
    assert_eq!(
        ndisc6(&pair, "2001:db8:100:2::1"),
        None,
        "outside the prefix"
    );
    assert!(r.answered() >= 1);
    assert!(r.alive());
    r.set_targets(vec![net("2001:db8:100:2::/64")]);
    assert_eq!(ndisc6(&pair, TARGET), None, "targets replaced");
    assert_eq!(
        ndisc6(&pair, "2001:db8:100:2::1").as_deref(),
        Some("02:00:00:00:00:0a")
    );
    let t = std::time::Instant::now();
    drop(r);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(2),
        "stops promptly"
    );
    assert_eq!(ndisc6(&pair, "2001:db8:100:2::1"), None, "stopped");

    // A device without Ethernet addresses is refused with a clear error.
    let e = pair
        .hub
        .run(|| Responder::start("lo", vec![]).err().unwrap());
    assert!(e.to_string().contains("not an Ethernet device"), "{e}");
}
