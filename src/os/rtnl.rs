//! rtnetlink adapter: routes, addresses and uplink notifications.
//!
//! Thin on purpose: it turns kernel messages into the core's plain values
//! ([`Route`], [`UplinkEvent`]) and back, and decides nothing. The messages
//! are netlink-packet-route's (`RouteMessage`, `AddressMessage`,
//! `LinkHeader`), framed by netlink-packet-core's `NetlinkMessage` and sent
//! on a netlink-sys socket: the versions wireguard-control links already.
//! Only the message kinds wgroam reads are parsed (our [`Msg`] is the
//! `NetlinkDeserializable` payload, not `RouteNetlinkMessage`, whose parser
//! and emitter for every rtnetlink kind measured 37 KB more on mips_24kc,
//! `openwrt/README.md`);
//! a link notification is read by its header alone (recent kernels send
//! link attributes a general-purpose parser rejects, e.g. an empty
//! IFLA_AF_SPEC). Two sockets: [`Rtnl`] for requests (blocking, one at a
//! time) and [`Monitor`] for multicast notifications (non-blocking, polled
//! by the daemon).
//!
//! Adds and deletes are idempotent: EEXIST on add and ESRCH / EADDRNOTAVAIL
//! on delete count as done. Deletes carry the route's protocol, which the
//! kernel matches, so a delete of one of our routes never removes somebody
//! else's route with the same destination.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkBuffer,
    NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable,
};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressMessage, AddressMessageBuffer, AddressScope,
};
use netlink_packet_route::link::{LinkFlags, LinkHeader, LinkMessageBuffer};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteMessageBuffer,
    RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_utils::{DecodeError, Emitable, Parseable};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::core::net::{IpNet, RT_TABLE_MAIN, Route};
use crate::core::roam::{Gateway, UplinkChange, UplinkEvent, best_default};

const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;
const RTMGRP_IPV6_ROUTE: u32 = 0x400;
/// Large enough for any single rtnetlink datagram (dumps use ≤ 32 KiB).
const BUF_LEN: usize = 64 * 1024;

// <linux/netlink.h>
const NLMSG_HDRLEN: usize = 16;
// <linux/rtnetlink.h>
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;

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

    /// Sends one request with `flags` and collects the replies up to the
    /// ACK or DONE.
    fn request(&mut self, req: Request, flags: u16) -> io::Result<Vec<Msg>> {
        self.seq = self.seq.wrapping_add(1);
        self.sock.send(&req.into_bytes(flags, self.seq), 0)?;
        let mut replies = Vec::new();
        loop {
            let n = self.sock.recv(&mut &mut self.buf[..], 0)?;
            for (seq, m) in parse_all(&self.buf[..n])? {
                if seq != self.seq {
                    continue;
                }
                match m {
                    Msg::Done | Msg::Error(0) => return Ok(replies),
                    Msg::Error(e) => return Err(io::Error::from_raw_os_error(e.saturating_abs())),
                    Msg::Other => {}
                    m => replies.push(m),
                }
            }
        }
    }
}

impl Routing for Rtnl {
    fn routes(&mut self, table: u32) -> io::Result<Vec<Route>> {
        // An all-zero rtmsg (the default header): every family, every table.
        let replies = self
            .request(
                Request::Route(RTM_GETROUTE, RouteMessage::default()),
                NLM_F_REQUEST | NLM_F_DUMP,
            )
            .map_err(|e| ctx("dump routes", e))?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                Msg::Route { del: false, msg } => route_from_msg(msg),
                _ => None,
            })
            .filter(|r| r.table == table)
            .collect())
    }

    fn add_route(&mut self, route: &Route) -> io::Result<()> {
        let req = Request::Route(RTM_NEWROUTE, route_to_msg(route, false));
        match self.request(req, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            r => r
                .map(drop)
                .map_err(|e| ctx(&format!("add route {route}"), e)),
        }
    }

    fn del_route(&mut self, route: &Route) -> io::Result<()> {
        let req = Request::Route(RTM_DELROUTE, route_to_msg(route, true));
        match self.request(req, NLM_F_REQUEST | NLM_F_ACK) {
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
        let req = Request::Addr(RTM_NEWADDR, address_to_msg(ifindex, addr, prefix_len));
        match self.request(req, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            r => r
                .map(drop)
                .map_err(|e| ctx(&format!("add address {addr}/{prefix_len} to #{ifindex}"), e)),
        }
    }

    fn del_address(&mut self, ifindex: u32, addr: IpAddr, prefix_len: u8) -> io::Result<()> {
        let req = Request::Addr(RTM_DELADDR, address_to_msg(ifindex, addr, prefix_len));
        match self.request(req, NLM_F_REQUEST | NLM_F_ACK) {
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

/// One address of an interface, as an address dump shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfAddr {
    pub addr: IpAddr,
    pub prefix_len: u8,
    /// Preferred lifetime 0 (IFA_F_DEPRECATED).
    pub deprecated: bool,
    /// Duplicate address detection not finished (or failed).
    pub tentative: bool,
}

impl Rtnl {
    /// The addresses of interface `ifindex` (both families).
    pub fn addresses(&mut self, ifindex: u32) -> io::Result<Vec<IfAddr>> {
        // An all-zero ifaddrmsg: every family; the kernel ignores the index
        // in a dump, so filter here.
        let replies = self
            .request(
                Request::Addr(RTM_GETADDR, AddressMessage::default()),
                NLM_F_REQUEST | NLM_F_DUMP,
            )
            .map_err(|e| ctx("dump addresses", e))?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                Msg::Addr {
                    del: false,
                    index,
                    addr: Some(addr),
                    prefix_len,
                    deprecated,
                    tentative,
                } if *index == ifindex => Some(IfAddr {
                    addr: *addr,
                    prefix_len: *prefix_len,
                    deprecated: *deprecated,
                    tentative: *tentative,
                }),
                _ => None,
            })
            .collect())
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
                    out.extend(msgs.iter().filter_map(|(_, m)| uplink_event(m)));
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
// Messages (pure, unit-tested below)
// ---------------------------------------------------------------------------

fn ctx(what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// A request: the rtnetlink type and netlink-packet-route's message.
#[derive(Debug, Clone)]
enum Request {
    Route(u16, RouteMessage),
    Addr(u16, AddressMessage),
}

impl NetlinkSerializable for Request {
    fn message_type(&self) -> u16 {
        match self {
            Request::Route(t, _) | Request::Addr(t, _) => *t,
        }
    }

    fn buffer_len(&self) -> usize {
        match self {
            Request::Route(_, m) => m.buffer_len(),
            Request::Addr(_, m) => m.buffer_len(),
        }
    }

    fn serialize(&self, buffer: &mut [u8]) {
        match self {
            Request::Route(_, m) => m.emit(buffer),
            Request::Addr(_, m) => m.emit(buffer),
        }
    }
}

impl Request {
    /// The whole netlink message (the kernel fills in the port).
    fn into_bytes(self, flags: u16, seq: u32) -> Vec<u8> {
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = seq;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(self));
        msg.finalize();
        let mut bytes = vec![0; msg.buffer_len()];
        msg.serialize(&mut bytes);
        bytes
    }
}

/// One message of a datagram, decoded as far as wgroam looks.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    /// NLMSG_DONE: the end of a dump.
    Done,
    /// NLMSG_ERROR: 0 is the ACK, else a negative errno.
    Error(i32),
    /// RTM_NEWLINK / RTM_DELLINK: the ifinfomsg's index and IFF_* flags.
    Link {
        del: bool,
        index: u32,
        flags: LinkFlags,
    },
    /// RTM_NEWADDR / RTM_DELADDR.
    Addr {
        del: bool,
        index: u32,
        /// IFA_F_TENTATIVE or IFA_F_DADFAILED (header or IFA_FLAGS).
        tentative: bool,
        /// IFA_LOCAL where present (point-to-point links put the peer in
        /// IFA_ADDRESS), else IFA_ADDRESS.
        addr: Option<IpAddr>,
        prefix_len: u8,
        /// IFA_F_DEPRECATED: preferred lifetime 0.
        deprecated: bool,
    },
    /// RTM_NEWROUTE / RTM_DELROUTE.
    Route { del: bool, msg: RouteMessage },
    /// Anything else, or a message wgroam cannot read (skipped).
    Other,
}

impl NetlinkDeserializable for Msg {
    type Error = DecodeError;

    /// Never fails: what is short or malformed is [`Msg::Other`].
    fn deserialize(header: &NetlinkHeader, b: &[u8]) -> Result<Self, DecodeError> {
        let nl_type = header.message_type;
        let m = match nl_type {
            // The header only: the attributes are not needed.
            RTM_NEWLINK | RTM_DELLINK => LinkMessageBuffer::new_checked(b)
                .and_then(|buf| LinkHeader::parse(&buf))
                .map(|h| Msg::Link {
                    del: nl_type == RTM_DELLINK,
                    index: h.index,
                    flags: h.flags,
                }),
            RTM_NEWADDR | RTM_DELADDR => AddressMessageBuffer::new_checked(&b)
                .and_then(|buf| AddressMessage::parse(&buf))
                .map(|m| addr_msg(nl_type == RTM_DELADDR, &m)),
            RTM_NEWROUTE | RTM_DELROUTE => RouteMessageBuffer::new_checked(&b)
                .and_then(|buf| RouteMessage::parse(&buf))
                .map(|msg| Msg::Route {
                    del: nl_type == RTM_DELROUTE,
                    msg,
                }),
            _ => Ok(Msg::Other),
        };
        Ok(m.unwrap_or(Msg::Other))
    }
}

fn addr_msg(del: bool, m: &AddressMessage) -> Msg {
    let mut flags = AddressFlags::from_bits_retain(u32::from(m.header.flags.bits()));
    let (mut local, mut address) = (None, None);
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            AddressAttribute::Flags(f) => flags |= *f,
            _ => {}
        }
    }
    Msg::Addr {
        del,
        index: m.header.index,
        tentative: flags.intersects(AddressFlags::Tentative | AddressFlags::Dadfailed),
        addr: local.or(address),
        prefix_len: m.header.prefix_len,
        deprecated: flags.contains(AddressFlags::Deprecated),
    }
}

/// Every message of one datagram, with its sequence number; a message the
/// framing reads but the payload parser does not is [`Msg::Other`].
fn parse_all(mut buf: &[u8]) -> io::Result<Vec<(u32, Msg)>> {
    let mut out = Vec::new();
    while buf.len() >= NLMSG_HDRLEN {
        let len = NetlinkBuffer::new_checked(buf)
            .map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("netlink message with {} bytes left: {e}", buf.len()),
                )
            })?
            .length() as usize;
        let one = &buf[..len];
        let seq = NetlinkBuffer::new(one).sequence_number();
        let msg = match NetlinkMessage::<Msg>::deserialize(one).map(|m| m.payload) {
            Ok(NetlinkPayload::Done(_)) => Msg::Done,
            Ok(NetlinkPayload::Error(e)) => Msg::Error(e.raw_code()),
            Ok(NetlinkPayload::InnerMessage(m)) => m,
            _ => Msg::Other,
        };
        out.push((seq, msg));
        buf = buf.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    Ok(out)
}

fn family_of(v6: bool) -> AddressFamily {
    if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    }
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
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
    let (mut dst, mut src, mut gateway) = (None, None, None);
    let (mut oif, mut priority, mut table) = (None, None, None);
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(a) => dst = Some(route_ip(a)?),
            RouteAttribute::Source(a) => src = Some(route_ip(a)?),
            RouteAttribute::Gateway(a) => gateway = Some(route_ip(a)?),
            RouteAttribute::Oif(o) => oif = Some(*o),
            RouteAttribute::Priority(p) => priority = Some(*p),
            RouteAttribute::Table(t) => table = Some(*t),
            _ => {}
        }
    }
    let dst = dst.unwrap_or(IpNet::default_route(v6).addr());
    let src = match h.source_prefix_length {
        0 => None,
        l => Some(IpNet::truncate(src?, l)?),
    };
    Some(Route {
        table: table.unwrap_or(u32::from(h.table)),
        dst: IpNet::truncate(dst, h.destination_prefix_length)?,
        src,
        gateway,
        oif,
        metric: priority.unwrap_or(0),
        proto: h.protocol.into(),
    })
}

/// The request for adding (or, with `del`, deleting) `r`: the rtmsg, then
/// RTA_TABLE, RTA_DST (not for a default route), RTA_SRC, RTA_GATEWAY,
/// RTA_OIF and RTA_PRIORITY (not for metric 0) where the route has them.
pub fn route_to_msg(r: &Route, del: bool) -> RouteMessage {
    let v6 = r.dst.is_ipv6();
    let mut m = RouteMessage::default();
    let h = &mut m.header;
    h.address_family = family_of(v6);
    h.destination_prefix_length = r.dst.prefix_len();
    h.source_prefix_length = r.src.map_or(0, |s| s.prefix_len());
    // The full id goes in RTA_TABLE.
    h.table = u8::try_from(r.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    h.protocol = RouteProtocol::from(r.proto);
    h.scope = if del {
        // As `ip route del`: match any scope.
        RouteScope::NoWhere
    } else if r.gateway.is_none() && !v6 {
        RouteScope::Link
    } else {
        RouteScope::Universe
    };
    h.kind = RouteType::Unicast;
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

/// An ifaddrmsg with IFA_LOCAL (IPv4 only, as `ip addr add`) and
/// IFA_ADDRESS.
fn address_to_msg(ifindex: u32, addr: IpAddr, prefix_len: u8) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = family_of(addr.is_ipv6());
    m.header.prefix_len = prefix_len;
    m.header.scope = AddressScope::Universe;
    m.header.index = ifindex;
    if addr.is_ipv4() {
        m.attributes.push(AddressAttribute::Local(addr));
    }
    m.attributes.push(AddressAttribute::Address(addr));
    m
}

/// One notification as the core's [`UplinkEvent`]; `None` for the rest.
pub fn uplink_event(m: &Msg) -> Option<UplinkEvent> {
    let (ifindex, change) = match m {
        Msg::Link {
            del: false,
            index,
            flags,
        } => (
            *index,
            if flags.contains(LinkFlags::Up | LinkFlags::Running) {
                UplinkChange::LinkUp
            } else {
                UplinkChange::LinkDown
            },
        ),
        Msg::Link {
            del: true, index, ..
        } => (*index, UplinkChange::LinkGone),
        Msg::Addr {
            del: false,
            index,
            tentative: false,
            addr,
            ..
        } => (*index, UplinkChange::AddrAdded((*addr)?)),
        Msg::Addr {
            del: true,
            index,
            addr,
            ..
        } => (*index, UplinkChange::AddrRemoved((*addr)?)),
        Msg::Route { msg, .. } => {
            if msg.header.flags.contains(RouteFlags::Cloned) {
                return None;
            }
            let oif = msg.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(o) => Some(*o),
                _ => None,
            });
            (oif.unwrap_or(0), UplinkChange::RouteChanged)
        }
        _ => return None,
    };
    Some(UplinkEvent { ifindex, change })
}

/// A routing table in memory for the glue's tests.
#[cfg(test)]
pub mod fake {
    use std::cell::RefCell;
    use std::io;
    use std::net::IpAddr;
    use std::rc::Rc;

    use super::{Family, Routing};
    use crate::core::net::Route;
    use crate::core::roam::Gateway;

    #[derive(Default)]
    pub struct Table {
        pub routes: Vec<Route>,
        pub adds: usize,
        pub dels: usize,
        /// Route dumps asked for.
        pub dumps: usize,
    }

    pub struct FakeRouting(pub Rc<RefCell<Table>>);

    impl Routing for FakeRouting {
        fn routes(&mut self, table: u32) -> io::Result<Vec<Route>> {
            self.0.borrow_mut().dumps += 1;
            let t = self.0.borrow();
            Ok(t.routes
                .iter()
                .filter(|r| r.table == table)
                .cloned()
                .collect())
        }
        fn add_route(&mut self, route: &Route) -> io::Result<()> {
            let mut t = self.0.borrow_mut();
            t.adds += 1;
            if !t.routes.iter().any(|r| r.same_as(route)) {
                t.routes.push(route.clone());
            }
            Ok(())
        }
        fn del_route(&mut self, route: &Route) -> io::Result<()> {
            let mut t = self.0.borrow_mut();
            t.dels += 1;
            t.routes
                .retain(|r| !(r.same_as(route) && r.proto == route.proto));
            Ok(())
        }
        fn default_gateway(&mut self, _: Family) -> io::Result<Option<Gateway>> {
            Ok(None)
        }
        fn add_address(&mut self, _: u32, _: IpAddr, _: u8) -> io::Result<()> {
            Ok(())
        }
        fn del_address(&mut self, _: u32, _: IpAddr, _: u8) -> io::Result<()> {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::net::ROUTE_PROTO;
    use std::net::Ipv6Addr;

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

    /// A netlink message by hand: header (length filled in) and `body`.
    fn nlmsg(nl_type: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut b = ((16 + body.len()) as u32).to_ne_bytes().to_vec();
        b.extend_from_slice(&nl_type.to_ne_bytes());
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(body);
        b
    }

    /// What netlink-packet-route emits for `m` after the netlink header.
    fn body(m: &impl Emitable) -> Vec<u8> {
        let mut b = vec![0; m.buffer_len()];
        m.emit(&mut b);
        b
    }

    /// Encoded as a request and decoded back as the kernel's answer.
    fn round_trip(r: &Route) -> Route {
        let bytes = Request::Route(RTM_NEWROUTE, route_to_msg(r, false)).into_bytes(0, 1);
        let parsed = parse_all(&bytes).unwrap();
        assert_eq!(parsed.len(), 1);
        match &parsed[0].1 {
            Msg::Route { del: false, msg } => route_from_msg(msg).unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn ne32(v: u32) -> [u8; 4] {
        v.to_ne_bytes()
    }

    /// An rtattr by hand: length and type in host order, value, padding.
    fn rta(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut b = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(value);
        while b.len() % 4 != 0 {
            b.push(0);
        }
        b
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
    fn a_route_request_is_laid_out_as_the_kernel_reads_it() {
        // struct rtmsg + RTA_TABLE, RTA_DST, RTA_GATEWAY, RTA_OIF, written
        // out from <linux/rtnetlink.h> independently of the encoder.
        let r = Route {
            table: 254,
            dst: net("203.0.113.9/32"),
            src: None,
            gateway: Some("192.0.2.254".parse().unwrap()),
            oif: Some(3),
            metric: 0,
            proto: ROUTE_PROTO,
        };
        let mut want = vec![2, 32, 0, 0, 254, ROUTE_PROTO, 0, 1];
        want.extend_from_slice(&ne32(0));
        want.extend(rta(15, &ne32(254)));
        want.extend(rta(1, &[203, 0, 113, 9]));
        want.extend(rta(5, &[192, 0, 2, 254]));
        want.extend(rta(4, &ne32(3)));
        assert_eq!(body(&route_to_msg(&r, false)), want);
        let msg = Request::Route(RTM_NEWROUTE, route_to_msg(&r, false)).into_bytes(0x605, 9);
        assert_eq!(&msg[16..], &want[..]);
        assert_eq!(&msg[..4], &ne32(16 + want.len() as u32));
        assert_eq!(
            &msg[4..8],
            &[24u16.to_ne_bytes(), 0x605u16.to_ne_bytes()].concat()[..]
        );
        assert_eq!(&msg[8..12], &ne32(9));
        // An address: ifaddrmsg + IFA_LOCAL + IFA_ADDRESS for IPv4.
        let a = body(&address_to_msg(2, "100.64.0.2".parse().unwrap(), 24));
        let mut want = vec![2, 24, 0, 0];
        want.extend_from_slice(&ne32(2));
        want.extend(rta(2, &[100, 64, 0, 2]));
        want.extend(rta(1, &[100, 64, 0, 2]));
        assert_eq!(a, want);
        let a6 = body(&address_to_msg(2, "2001:db8::1".parse().unwrap(), 64));
        assert_eq!(a6.len(), 8 + 20, "IPv6: IFA_ADDRESS only");
    }

    #[test]
    fn request_headers_match_what_the_kernel_expects() {
        let m = route_to_msg(&source_specific(), false);
        let b = body(&m);
        // family AF_INET6, dst_len 0, src_len 64, tos, table, protocol,
        // scope universe, type unicast
        assert_eq!(&b[..8], &[10, 0, 64, 0, 254, ROUTE_PROTO, 0, 1]);
        assert!(
            !m.attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Destination(_))),
            "a default route has no RTA_DST"
        );
        let d = body(&route_to_msg(&source_specific(), true));
        assert_eq!(d[6], 255, "deletes match any scope (RT_SCOPE_NOWHERE)");
        assert_eq!(d[5], ROUTE_PROTO, "deletes match our protocol only");
        let mut big = source_specific();
        big.table = 1000;
        let b = body(&route_to_msg(&big, false));
        assert_eq!(b[4], 0, "RT_TABLE_UNSPEC in the header");
        assert_eq!(&b[12..20], &rta(15, &ne32(1000))[..], "RTA_TABLE 1000");
        let mut link = source_specific();
        link.dst = net("198.51.100.0/24");
        link.src = None;
        assert_eq!(body(&route_to_msg(&link, false))[6], 253, "RT_SCOPE_LINK");
    }

    #[test]
    fn cached_and_non_unicast_routes_are_skipped() {
        let mut m = route_to_msg(&source_specific(), false);
        m.header.kind = RouteType::Local;
        assert_eq!(route_from_msg(&m), None);
        let mut m = route_to_msg(&source_specific(), false);
        m.header.flags = RouteFlags::Cloned;
        assert_eq!(route_from_msg(&m), None);
        let mut m = route_to_msg(&source_specific(), false);
        m.attributes
            .retain(|a| !matches!(a, RouteAttribute::Source(_)));
        assert_eq!(route_from_msg(&m), None, "a source length without RTA_SRC");
    }

    /// A notification datagram with one message.
    fn note(nl_type: u16, body: Vec<u8>) -> Msg {
        let mut all = parse_all(&nlmsg(nl_type, 0, 0, &body)).unwrap();
        assert_eq!(all.len(), 1);
        all.remove(0).1
    }

    fn ifaddrmsg(family: u8, flags: u8, index: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut b = vec![family, 64, flags, 0];
        b.extend_from_slice(&ne32(index));
        b.extend(attrs.concat());
        b
    }

    fn ifinfomsg(index: u32, flags: u32) -> Vec<u8> {
        let mut b = vec![0, 0, 1, 0];
        b.extend_from_slice(&ne32(index));
        b.extend_from_slice(&ne32(flags));
        b.extend_from_slice(&ne32(0));
        b
    }

    #[test]
    fn notifications_become_uplink_events() {
        let v4 = note(
            RTM_NEWADDR,
            body(&address_to_msg(2, "100.64.0.2".parse().unwrap(), 24)),
        );
        assert_eq!(
            uplink_event(&v4),
            Some(UplinkEvent {
                ifindex: 2,
                change: UplinkChange::AddrAdded("100.64.0.2".parse().unwrap())
            })
        );
        let six = "2001:db8::2".parse::<Ipv6Addr>().unwrap().octets();
        // Tentative in the header, or (IPv6 today) in IFA_FLAGS only.
        let tent = note(RTM_NEWADDR, ifaddrmsg(10, 0x40, 3, &[rta(1, &six)]));
        assert_eq!(uplink_event(&tent), None);
        let tent = note(
            RTM_NEWADDR,
            ifaddrmsg(10, 0, 3, &[rta(1, &six), rta(8, &ne32(0x40 | 0x200))]),
        );
        assert_eq!(uplink_event(&tent), None);
        let ok = note(
            RTM_NEWADDR,
            ifaddrmsg(10, 0, 3, &[rta(1, &six), rta(8, &ne32(0x200))]),
        );
        assert_eq!(
            uplink_event(&ok).unwrap().change,
            UplinkChange::AddrAdded(IpAddr::V6(six.into()))
        );
        // Preferred lifetime 0: in IFA_FLAGS (and the header's byte).
        let dep = note(
            RTM_NEWADDR,
            ifaddrmsg(10, 0, 3, &[rta(1, &six), rta(8, &ne32(0x20 | 0x80))]),
        );
        assert!(matches!(
            dep,
            Msg::Addr {
                deprecated: true,
                tentative: false,
                prefix_len: 64,
                ..
            }
        ));
        let dep = note(RTM_NEWADDR, ifaddrmsg(10, 0x20, 3, &[rta(1, &six)]));
        assert!(matches!(
            dep,
            Msg::Addr {
                deprecated: true,
                ..
            }
        ));
        assert!(matches!(
            ok,
            Msg::Addr {
                deprecated: false,
                ..
            }
        ));
        let gone = note(RTM_DELADDR, ifaddrmsg(10, 0x40, 3, &[rta(1, &six)]));
        assert_eq!(
            uplink_event(&gone).unwrap().change,
            UplinkChange::AddrRemoved(IpAddr::V6(six.into()))
        );
        // Point-to-point: IFA_ADDRESS is the peer, IFA_LOCAL is ours.
        let ptp = note(
            RTM_NEWADDR,
            ifaddrmsg(2, 0, 4, &[rta(1, &[192, 0, 2, 9]), rta(2, &[192, 0, 2, 1])]),
        );
        assert_eq!(
            uplink_event(&ptp).unwrap().change,
            UplinkChange::AddrAdded("192.0.2.1".parse().unwrap())
        );
        let route = note(RTM_NEWROUTE, body(&route_to_msg(&source_specific(), false)));
        let ev = uplink_event(&route).unwrap();
        assert_eq!(ev.ifindex, 7);
        assert_eq!(ev.change, UplinkChange::RouteChanged);
        let mut cloned = route_to_msg(&source_specific(), false);
        cloned.header.flags = RouteFlags::Cloned;
        assert_eq!(uplink_event(&note(RTM_DELROUTE, body(&cloned))), None);
        let up = 0x1 | 0x40 | 0x10000; // IFF_UP | IFF_RUNNING | IFF_LOWER_UP
        assert_eq!(
            uplink_event(&note(RTM_NEWLINK, ifinfomsg(4, up))),
            Some(UplinkEvent {
                ifindex: 4,
                change: UplinkChange::LinkUp
            })
        );
        assert_eq!(
            uplink_event(&note(RTM_NEWLINK, ifinfomsg(4, 0x1)))
                .unwrap()
                .change,
            UplinkChange::LinkDown,
            "up without carrier is down"
        );
        assert_eq!(
            uplink_event(&note(RTM_DELLINK, ifinfomsg(4, up)))
                .unwrap()
                .change,
            UplinkChange::LinkGone
        );
        assert_eq!(uplink_event(&note(RTM_NEWADDR, vec![2, 24])), None, "short");
    }

    #[test]
    fn link_messages_with_odd_attributes_still_count() {
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
        // Why links are read by their header alone: netlink-packet-route's
        // whole LinkMessage parser rejects this message.
        let payload = &b[16..];
        let whole = LinkMessageBuffer::new_checked(&payload)
            .and_then(|buf| netlink_packet_route::link::LinkMessage::parse(&buf));
        assert!(whole.is_err());
        let msgs = parse_all(&b).unwrap();
        assert_eq!(
            uplink_event(&msgs[0].1),
            Some(UplinkEvent {
                ifindex: 5,
                change: UplinkChange::LinkGone
            })
        );
    }

    #[test]
    fn acks_errors_and_dump_ends_are_recognised() {
        let mut err = (-libc::EEXIST).to_ne_bytes().to_vec();
        err.extend_from_slice(&[0; 16]); // the request's header
        assert_eq!(note(2, err), Msg::Error(-libc::EEXIST));
        assert_eq!(
            note(2, vec![0; 20]),
            Msg::Error(0),
            "NLMSG_ERROR 0: the ACK"
        );
        assert_eq!(note(3, ne32(0).to_vec()), Msg::Done);
        assert_eq!(note(RTM_NEWROUTE, vec![0; 8]), Msg::Other, "short rtmsg");
        let mut bad = body(&route_to_msg(&source_specific(), false));
        bad.extend_from_slice(&[40, 0, 1, 0]); // attribute longer than the rest
        assert_eq!(note(RTM_NEWROUTE, bad), Msg::Other);
        let seqs: Vec<u32> = parse_all(&[nlmsg(3, 2, 7, &[]), nlmsg(3, 2, 8, &[])].concat())
            .unwrap()
            .iter()
            .map(|m| m.0)
            .collect();
        assert_eq!(seqs, [7, 8]);
    }

    #[test]
    fn truncated_datagrams_are_errors_not_panics() {
        let bytes =
            Request::Route(RTM_NEWROUTE, route_to_msg(&source_specific(), false)).into_bytes(0, 1);
        for cut in [17, 20, bytes.len() - 1] {
            assert!(parse_all(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(parse_all(&bytes[..10]).unwrap().is_empty());
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes);
        assert_eq!(parse_all(&two).unwrap().len(), 2);
    }
}
