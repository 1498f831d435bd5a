//! rtnetlink adapter: routes, addresses and uplink notifications.
//!
//! Thin on purpose: it turns kernel messages into the core's plain values
//! ([`Route`], [`UplinkEvent`]) and back, and decides nothing. Two sockets:
//! [`Rtnl`] for requests (blocking, one at a time) and [`Monitor`] for
//! multicast notifications (non-blocking, polled by the daemon).
//!
//! Adds and deletes are idempotent: EEXIST on add and ESRCH / EADDRNOTAVAIL
//! on delete count as done. Deletes carry the route's protocol, which the
//! kernel matches, so a delete of one of our routes never removes somebody
//! else's route with the same destination.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::core::roam::{
    Gateway, IpNet, RT_TABLE_MAIN, Route, UplinkChange, UplinkEvent, best_default,
};

const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;
const RTMGRP_IPV6_ROUTE: u32 = 0x400;
/// Large enough for any single rtnetlink datagram (dumps use ≤ 32 KiB).
const BUF_LEN: usize = 64 * 1024;

/// An address family, for [`Routing::default_gateway`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// What the roam needs from the routing stack; fakes implement it in tests.
pub trait Routing {
    /// Unicast routes of `table` (both families).
    fn routes(&mut self, table: u32) -> io::Result<Vec<Route>>;
    /// Adds a route; an existing identical one is fine.
    fn add_route(&mut self, route: &Route) -> io::Result<()>;
    /// Deletes a route with this key, next hop and protocol; none is fine.
    fn del_route(&mut self, route: &Route) -> io::Result<()>;
    /// The main table's best default route that is neither source-specific
    /// nor ours.
    fn default_gateway(&mut self, family: Family) -> io::Result<Option<Gateway>>;
    /// Adds `addr/prefix_len` to an interface; present already is fine.
    fn add_address(&mut self, ifindex: u32, addr: IpAddr, prefix_len: u8) -> io::Result<()>;
    /// Removes `addr/prefix_len` from an interface; absent is fine.
    fn del_address(&mut self, ifindex: u32, addr: IpAddr, prefix_len: u8) -> io::Result<()>;
}

/// The request socket.
pub struct Rtnl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnl {
    /// Opens a route netlink socket in the caller's network namespace.
    pub fn open() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| ctx("open rtnetlink socket", e))?;
        sock.bind_auto()
            .map_err(|e| ctx("bind rtnetlink socket", e))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(|e| ctx("connect rtnetlink socket", e))?;
        Ok(Self {
            sock,
            seq: 0,
            buf: vec![0; BUF_LEN],
        })
    }

    /// Sends one request and collects the replies up to the ACK or DONE.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = flags;
        req.header.sequence_number = self.seq;
        req.finalize();
        let mut bytes = vec![0; req.buffer_len()];
        req.serialize(&mut bytes);
        self.sock.send(&bytes, 0)?;
        let mut replies = Vec::new();
        loop {
            let n = self.sock.recv(&mut &mut self.buf[..], 0)?;
            for m in parse_all(&self.buf[..n])? {
                if m.header.sequence_number != self.seq {
                    continue;
                }
                match m.payload {
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            Some(_) => Err(e.to_io()),
                            None => Ok(replies),
                        };
                    }
                    NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                    _ => {}
                }
            }
        }
    }
}

impl Routing for Rtnl {
    fn routes(&mut self, table: u32) -> io::Result<Vec<Route>> {
        let replies = self
            .request(
                RouteNetlinkMessage::GetRoute(RouteMessage::default()),
                NLM_F_REQUEST | NLM_F_DUMP,
            )
            .map_err(|e| ctx("dump routes", e))?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => route_from_msg(r),
                _ => None,
            })
            .filter(|r| r.table == table)
            .collect())
    }

    fn add_route(&mut self, route: &Route) -> io::Result<()> {
        let msg = RouteNetlinkMessage::NewRoute(route_to_msg(route, false));
        match self.request(msg, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            r => r
                .map(drop)
                .map_err(|e| ctx(&format!("add route {route}"), e)),
        }
    }

    fn del_route(&mut self, route: &Route) -> io::Result<()> {
        let msg = RouteNetlinkMessage::DelRoute(route_to_msg(route, true));
        match self.request(msg, NLM_F_REQUEST | NLM_F_ACK) {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            r => r
                .map(drop)
                .map_err(|e| ctx(&format!("delete route {route}"), e)),
        }
    }

    fn default_gateway(&mut self, family: Family) -> io::Result<Option<Gateway>> {
        let routes = self.routes(RT_TABLE_MAIN)?;
        Ok(best_default(
            &routes,
            family == Family::V6,
            RT_TABLE_MAIN,
            None,
        ))
    }

    fn add_address(&mut self, ifindex: u32, addr: IpAddr, prefix_len: u8) -> io::Result<()> {
        let msg = RouteNetlinkMessage::NewAddress(address_to_msg(ifindex, addr, prefix_len));
        match self.request(msg, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            r => r
                .map(drop)
                .map_err(|e| ctx(&format!("add address {addr}/{prefix_len} to #{ifindex}"), e)),
        }
    }

    fn del_address(&mut self, ifindex: u32, addr: IpAddr, prefix_len: u8) -> io::Result<()> {
        let msg = RouteNetlinkMessage::DelAddress(address_to_msg(ifindex, addr, prefix_len));
        match self.request(msg, NLM_F_REQUEST | NLM_F_ACK) {
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(()),
            r => r.map(drop).map_err(|e| {
                ctx(
                    &format!("remove address {addr}/{prefix_len} from #{ifindex}"),
                    e,
                )
            }),
        }
    }
}

/// The notification socket: links, addresses and routes of both families.
pub struct Monitor {
    sock: Socket,
    buf: Vec<u8>,
}

impl Monitor {
    /// Subscribes in the caller's network namespace; non-blocking.
    pub fn open() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| ctx("open rtnetlink monitor", e))?;
        let groups = RTMGRP_LINK
            | RTMGRP_IPV4_IFADDR
            | RTMGRP_IPV6_IFADDR
            | RTMGRP_IPV4_ROUTE
            | RTMGRP_IPV6_ROUTE;
        sock.bind(&SocketAddr::new(0, groups))
            .map_err(|e| ctx("subscribe to rtnetlink groups", e))?;
        sock.set_non_blocking(true)
            .map_err(|e| ctx("rtnetlink monitor non-blocking", e))?;
        // Bursts (a DHCP renewal, a full routing table) must not overflow;
        // if they do anyway, drain() reports it as UplinkChange::Lost.
        let _ = sock.set_rx_buf_sz(1 << 20);
        Ok(Self {
            sock,
            buf: vec![0; BUF_LEN],
        })
    }

    /// For `poll(2)`: readable when notifications wait.
    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Everything queued, in order; empty when nothing waits.
    pub fn drain(&mut self) -> io::Result<Vec<UplinkEvent>> {
        let mut out = Vec::new();
        loop {
            match self.sock.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => {
                    let msgs =
                        parse_all(&self.buf[..n]).map_err(|e| ctx("rtnetlink monitor", e))?;
                    out.extend(msgs.into_iter().filter_map(|m| match m.payload {
                        NetlinkPayload::InnerMessage(inner) => uplink_event(&inner),
                        _ => None,
                    }));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(out),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => out.push(UplinkEvent {
                    ifindex: 0,
                    change: UplinkChange::Lost,
                }),
                Err(e) => return Err(ctx("read rtnetlink monitor", e)),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Conversions (pure, unit-tested below)
// ---------------------------------------------------------------------------

fn ctx(what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Every message of one datagram.
fn parse_all(mut buf: &[u8]) -> io::Result<Vec<NetlinkMessage<RouteNetlinkMessage>>> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < 16 || len > buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("netlink message length {len} with {} bytes left", buf.len()),
            ));
        }
        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[..len]) {
            Ok(m) => out.push(m),
            // netlink-packet-route 0.21 rejects some link messages whole
            // (RTM_DELLINK with an empty IFLA_AF_SPEC on recent kernels);
            // the fixed header says all we need. Anything else unparsable
            // is skipped, not fatal.
            Err(_) => out.extend(link_from_header(&buf[..len])),
        }
        buf = &buf[(len + 3) & !3usize..][..];
        if buf.len() < 16 {
            break;
        }
    }
    Ok(out)
}

/// A link message rebuilt from its fixed headers (nlmsghdr + ifinfomsg).
fn link_from_header(b: &[u8]) -> Option<NetlinkMessage<RouteNetlinkMessage>> {
    const RTM_NEWLINK: u16 = 16;
    const RTM_DELLINK: u16 = 17;
    if b.len() < 32 {
        return None;
    }
    let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
    let u32_at = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let mut link = LinkMessage::default();
    link.header.index = u32_at(20);
    link.header.flags = LinkFlags::from_bits_retain(u32_at(24));
    let inner = match u16_at(4) {
        RTM_NEWLINK => RouteNetlinkMessage::NewLink(link),
        RTM_DELLINK => RouteNetlinkMessage::DelLink(link),
        _ => return None,
    };
    let mut header = NetlinkHeader::default();
    header.length = u32_at(0);
    header.message_type = u16_at(4);
    header.flags = u16_at(6);
    header.sequence_number = u32_at(8);
    header.port_number = u32_at(12);
    Some(NetlinkMessage::new(
        header,
        NetlinkPayload::InnerMessage(inner),
    ))
}

fn family_of(v6: bool) -> AddressFamily {
    if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    }
}

fn route_addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// The kernel's route as the core sees it; `None` for non-unicast, cached
/// and non-IP routes.
pub fn route_from_msg(m: &RouteMessage) -> Option<Route> {
    let h = &m.header;
    if h.kind != RouteType::Unicast || h.flags.contains(RouteFlags::Cloned) {
        return None;
    }
    let v6 = match h.address_family {
        AddressFamily::Inet => false,
        AddressFamily::Inet6 => true,
        _ => return None,
    };
    let any = IpNet::default_route(v6).addr();
    let (mut dst, mut src, mut gateway, mut oif, mut metric) = (any, None, None, None, 0);
    let mut table = u32::from(h.table);
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(a) => dst = route_addr(a)?,
            RouteAttribute::Source(a) => src = route_addr(a),
            RouteAttribute::Gateway(a) => gateway = route_addr(a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => metric = *p,
            RouteAttribute::Table(t) => table = *t,
            _ => {}
        }
    }
    let src = match h.source_prefix_length {
        0 => None,
        l => Some(IpNet::truncate(src?, l)?),
    };
    Some(Route {
        table,
        dst: IpNet::truncate(dst, h.destination_prefix_length)?,
        src,
        gateway,
        oif,
        metric,
        proto: u8::from(h.protocol),
    })
}

/// The request for adding (or, with `del`, deleting) `r`.
pub fn route_to_msg(r: &Route, del: bool) -> RouteMessage {
    let v6 = r.dst.is_ipv6();
    let mut m = RouteMessage::default();
    m.header.address_family = family_of(v6);
    m.header.destination_prefix_length = r.dst.prefix_len();
    m.header.source_prefix_length = r.src.map_or(0, |s| s.prefix_len());
    m.header.table = u8::try_from(r.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    m.header.protocol = RouteProtocol::from(r.proto);
    m.header.scope = if del {
        // As `ip route del`: match any scope.
        RouteScope::NoWhere
    } else if r.gateway.is_none() && !v6 {
        RouteScope::Link
    } else {
        RouteScope::Universe
    };
    m.header.kind = RouteType::Unicast;
    let a = &mut m.attributes;
    a.push(RouteAttribute::Table(r.table));
    if !r.dst.is_default() {
        a.push(RouteAttribute::Destination(r.dst.addr().into()));
    }
    if let Some(s) = r.src {
        a.push(RouteAttribute::Source(s.addr().into()));
    }
    if let Some(g) = r.gateway {
        a.push(RouteAttribute::Gateway(g.into()));
    }
    if let Some(o) = r.oif {
        a.push(RouteAttribute::Oif(o));
    }
    if r.metric != 0 {
        a.push(RouteAttribute::Priority(r.metric));
    }
    m
}

fn address_to_msg(ifindex: u32, addr: IpAddr, prefix_len: u8) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = family_of(addr.is_ipv6());
    m.header.prefix_len = prefix_len;
    m.header.index = ifindex;
    m.header.scope = AddressScope::Universe;
    if addr.is_ipv4() {
        m.attributes.push(AddressAttribute::Local(addr));
    }
    m.attributes.push(AddressAttribute::Address(addr));
    m
}

/// Our address on a link: IFA_LOCAL where present (point-to-point links put
/// the peer in IFA_ADDRESS), else IFA_ADDRESS.
fn address_of(m: &AddressMessage) -> Option<IpAddr> {
    let local = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(a) => Some(*a),
        _ => None,
    });
    local.or_else(|| {
        m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(a) => Some(*a),
            _ => None,
        })
    })
}

fn tentative(m: &AddressMessage) -> bool {
    let bad = AddressHeaderFlags::Tentative | AddressHeaderFlags::Dadfailed;
    m.header.flags.intersects(bad)
        || m.attributes.iter().any(|a| {
            matches!(a, AddressAttribute::Flags(f)
                if f.intersects(AddressFlags::Tentative | AddressFlags::Dadfailed))
        })
}

fn link_up(m: &LinkMessage) -> bool {
    m.header.flags.contains(LinkFlags::Up | LinkFlags::Running)
}

/// One notification as the core's [`UplinkEvent`]; `None` for the rest.
pub fn uplink_event(m: &RouteNetlinkMessage) -> Option<UplinkEvent> {
    let (ifindex, change) = match m {
        RouteNetlinkMessage::NewLink(l) => (
            l.header.index,
            if link_up(l) {
                UplinkChange::LinkUp
            } else {
                UplinkChange::LinkDown
            },
        ),
        RouteNetlinkMessage::DelLink(l) => (l.header.index, UplinkChange::LinkGone),
        RouteNetlinkMessage::NewAddress(a) if !tentative(a) => {
            (a.header.index, UplinkChange::AddrAdded(address_of(a)?))
        }
        RouteNetlinkMessage::DelAddress(a) => {
            (a.header.index, UplinkChange::AddrRemoved(address_of(a)?))
        }
        RouteNetlinkMessage::NewRoute(r) | RouteNetlinkMessage::DelRoute(r) => {
            if r.header.flags.contains(RouteFlags::Cloned) {
                return None;
            }
            let oif = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            });
            (oif.unwrap_or(0), UplinkChange::RouteChanged)
        }
        _ => return None,
    };
    Some(UplinkEvent { ifindex, change })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::roam::ROUTE_PROTO;
    use netlink_packet_route::address::AddressHeaderFlags;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn source_specific() -> Route {
        Route {
            table: 254,
            dst: net("::/0"),
            src: Some(net("2001:db8:100:1::/64")),
            gateway: None,
            oif: Some(7),
            metric: 1024,
            proto: ROUTE_PROTO,
        }
    }

    /// Serialised and parsed back through the real netlink codec.
    fn round_trip(r: &Route) -> Route {
        let mut nl = NetlinkMessage::from(RouteNetlinkMessage::NewRoute(route_to_msg(r, false)));
        nl.finalize();
        let mut bytes = vec![0; nl.buffer_len()];
        nl.serialize(&mut bytes);
        let parsed = parse_all(&bytes).unwrap();
        assert_eq!(parsed.len(), 1);
        match &parsed[0].payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(m)) => {
                route_from_msg(m).unwrap()
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn routes_survive_the_codec() {
        let mut v4 = source_specific();
        v4.dst = net("203.0.113.9/32");
        v4.src = None;
        v4.gateway = Some("192.0.2.254".parse().unwrap());
        v4.oif = Some(3);
        v4.metric = 0;
        v4.table = 1000;
        let mut pin = source_specific();
        pin.dst = net("2001:db8:ffff::2/128");
        pin.src = None;
        pin.gateway = Some("fe80::1".parse().unwrap());
        for r in [source_specific(), v4, pin] {
            assert_eq!(round_trip(&r), r);
        }
    }

    #[test]
    fn request_headers_match_what_the_kernel_expects() {
        let m = route_to_msg(&source_specific(), false);
        assert_eq!(m.header.address_family, AddressFamily::Inet6);
        assert_eq!(m.header.destination_prefix_length, 0);
        assert_eq!(m.header.source_prefix_length, 64);
        assert_eq!(u8::from(m.header.protocol), ROUTE_PROTO);
        assert!(
            !m.attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Destination(_))),
            "a default route has no RTA_DST"
        );
        let d = route_to_msg(&source_specific(), true);
        assert_eq!(d.header.scope, RouteScope::NoWhere);
        assert_eq!(
            u8::from(d.header.protocol),
            ROUTE_PROTO,
            "deletes match our protocol only"
        );
        let mut big = source_specific();
        big.table = 1000;
        assert_eq!(route_to_msg(&big, false).header.table, 0);
    }

    #[test]
    fn cached_and_non_unicast_routes_are_skipped() {
        let mut m = route_to_msg(&source_specific(), false);
        m.header.kind = RouteType::Local;
        assert_eq!(route_from_msg(&m), None);
        let mut m = route_to_msg(&source_specific(), false);
        m.header.flags = RouteFlags::Cloned;
        assert_eq!(route_from_msg(&m), None);
    }

    #[test]
    fn notifications_become_uplink_events() {
        let mut a = address_to_msg(2, "100.64.0.2".parse().unwrap(), 24);
        let ev = uplink_event(&RouteNetlinkMessage::NewAddress(a.clone())).unwrap();
        assert_eq!(
            ev,
            UplinkEvent {
                ifindex: 2,
                change: UplinkChange::AddrAdded("100.64.0.2".parse().unwrap())
            }
        );
        a.header.flags = AddressHeaderFlags::Tentative;
        assert_eq!(uplink_event(&RouteNetlinkMessage::NewAddress(a)), None);
        let ev = uplink_event(&RouteNetlinkMessage::NewRoute(route_to_msg(
            &source_specific(),
            false,
        )))
        .unwrap();
        assert_eq!(ev.ifindex, 7);
        assert_eq!(ev.change, UplinkChange::RouteChanged);
        let mut l = LinkMessage::default();
        l.header.index = 4;
        l.header.flags = LinkFlags::Up | LinkFlags::Running | LinkFlags::LowerUp;
        assert_eq!(
            uplink_event(&RouteNetlinkMessage::NewLink(l.clone()))
                .unwrap()
                .change,
            UplinkChange::LinkUp
        );
        l.header.flags = LinkFlags::Up;
        assert_eq!(
            uplink_event(&RouteNetlinkMessage::NewLink(l.clone()))
                .unwrap()
                .change,
            UplinkChange::LinkDown,
            "up without carrier is down"
        );
        assert_eq!(
            uplink_event(&RouteNetlinkMessage::DelLink(l))
                .unwrap()
                .change,
            UplinkChange::LinkGone
        );
    }

    #[test]
    fn link_messages_the_crate_rejects_still_count() {
        // RTM_DELLINK for index 5, flags UP|RUNNING, with an empty
        // IFLA_AF_SPEC (type 26), as kernel 6.18 sends it for a veth.
        let mut b = Vec::new();
        b.extend_from_slice(&36u32.to_ne_bytes());
        b.extend_from_slice(&17u16.to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&[0, 0, 1, 0]); // family, pad, type ether
        b.extend_from_slice(&5i32.to_ne_bytes());
        b.extend_from_slice(&0x41u32.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&4u16.to_ne_bytes());
        b.extend_from_slice(&26u16.to_ne_bytes());
        assert!(NetlinkMessage::<RouteNetlinkMessage>::deserialize(&b).is_err());
        let msgs = parse_all(&b).unwrap();
        let NetlinkPayload::InnerMessage(m) = &msgs[0].payload else {
            panic!("{msgs:?}");
        };
        assert_eq!(
            uplink_event(m),
            Some(UplinkEvent {
                ifindex: 5,
                change: UplinkChange::LinkGone
            })
        );
    }

    #[test]
    fn truncated_datagrams_are_errors_not_panics() {
        let mut nl = NetlinkMessage::from(RouteNetlinkMessage::NewRoute(route_to_msg(
            &source_specific(),
            false,
        )));
        nl.finalize();
        let mut bytes = vec![0; nl.buffer_len()];
        nl.serialize(&mut bytes);
        for cut in [17, 20, bytes.len() - 1] {
            assert!(parse_all(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(parse_all(&bytes[..10]).unwrap().is_empty());
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes);
        assert_eq!(parse_all(&two).unwrap().len(), 2);
    }
}
