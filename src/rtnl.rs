//! rtnetlink adapter: routes, addresses and uplink notifications.
//!
//! Thin on purpose: it turns kernel messages into the core's plain values
//! ([`Route`], [`UplinkEvent`]) and back, and decides nothing. The codec is
//! hand-written for the few messages and attributes wgroam uses (a general
//! rtnetlink library parsed every attribute kind the kernel has, ~180 KB of
//! a MIPS binary); everything else in a datagram is skipped. Two sockets:
//! [`Rtnl`] for requests (blocking, one at a time) and [`Monitor`] for
//! multicast notifications (non-blocking, polled by the daemon).
//!
//! Adds and deletes are idempotent: EEXIST on add and ESRCH / EADDRNOTAVAIL
//! on delete count as done. Deletes carry the route's protocol, which the
//! kernel matches, so a delete of one of our routes never removes somebody
//! else's route with the same destination.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, RawFd};

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

// <linux/netlink.h>
pub(crate) const NLMSG_HDRLEN: usize = 16;
pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;
pub(crate) const NLM_F_REQUEST: u16 = 0x1;
pub(crate) const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
pub(crate) const NLM_F_DUMP: u16 = 0x300;
// <linux/rtnetlink.h>
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;
const RTA_DST: u16 = 1;
const RTA_SRC: u16 = 2;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_TABLE: u16 = 15;
const RTN_UNICAST: u8 = 1;
const RTM_F_CLONED: u32 = 0x200;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RT_SCOPE_NOWHERE: u8 = 255;
const RT_TABLE_UNSPEC: u8 = 0;
// <linux/if_addr.h>
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;
const IFA_F_DADFAILED: u32 = 0x08;
const IFA_F_TENTATIVE: u32 = 0x40;
const IFA_F_DEPRECATED: u32 = 0x20;
const RTM_GETADDR: u16 = 22;
// <linux/if.h>
const IFF_UP: u32 = 0x1;
const IFF_RUNNING: u32 = 0x40;
const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;

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

    /// Sends one request (`nl_type`, `flags`, the message after the netlink
    /// header) and collects the replies up to the ACK or DONE.
    fn request(&mut self, nl_type: u16, flags: u16, body: &[u8]) -> io::Result<Vec<Msg>> {
        self.seq = self.seq.wrapping_add(1);
        let bytes = nlmsg(nl_type, flags, self.seq, body);
        self.sock.send(&bytes, 0)?;
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
        // An all-zero rtmsg: every family, every table.
        let replies = self
            .request(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, &[0; 12])
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
        let body = route_to_msg(route, false).encode();
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        match self.request(RTM_NEWROUTE, flags, &body) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            r => r
                .map(drop)
                .map_err(|e| ctx(&format!("add route {route}"), e)),
        }
    }

    fn del_route(&mut self, route: &Route) -> io::Result<()> {
        let body = route_to_msg(route, true).encode();
        match self.request(RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK, &body) {
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
        let body = address_to_msg(ifindex, addr, prefix_len);
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        match self.request(RTM_NEWADDR, flags, &body) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            r => r
                .map(drop)
                .map_err(|e| ctx(&format!("add address {addr}/{prefix_len} to #{ifindex}"), e)),
        }
    }

    fn del_address(&mut self, ifindex: u32, addr: IpAddr, prefix_len: u8) -> io::Result<()> {
        let body = address_to_msg(ifindex, addr, prefix_len);
        match self.request(RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, &body) {
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
            .request(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, &[0; 8])
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
// Codec (pure, unit-tested below)
// ---------------------------------------------------------------------------

fn ctx(what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// One message of a datagram, decoded as far as wgroam looks.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    /// NLMSG_DONE: the end of a dump.
    Done,
    /// NLMSG_ERROR: 0 is the ACK, else a negative errno.
    Error(i32),
    /// RTM_NEWLINK / RTM_DELLINK: the ifinfomsg's index and IFF_* flags.
    Link { del: bool, index: u32, flags: u32 },
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
    Route { del: bool, msg: RouteMsg },
    /// Anything else, or a message wgroam cannot read (skipped).
    Other,
}

/// A route message: the rtmsg header and the attributes wgroam uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteMsg {
    pub family: u8,
    pub dst_len: u8,
    pub src_len: u8,
    /// The header's table (RT_TABLE_UNSPEC when it does not fit a byte).
    pub table: u8,
    pub protocol: u8,
    pub scope: u8,
    /// RTN_* (unicast, local, ...).
    pub kind: u8,
    /// RTM_F_* flags.
    pub flags: u32,
    pub dst: Option<IpAddr>,
    pub src: Option<IpAddr>,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub priority: Option<u32>,
    /// RTA_TABLE: the full table id.
    pub rta_table: Option<u32>,
}

impl RouteMsg {
    /// The rtmsg and its attributes, as sent after the netlink header.
    fn encode(&self) -> Vec<u8> {
        let mut b = vec![
            self.family,
            self.dst_len,
            self.src_len,
            0, // tos
            self.table,
            self.protocol,
            self.scope,
            self.kind,
        ];
        b.extend_from_slice(&self.flags.to_ne_bytes());
        let ip = |b: &mut Vec<u8>, kind, a: Option<IpAddr>| {
            if let Some(a) = a {
                attr(b, kind, &ip_bytes(&a));
            }
        };
        if let Some(t) = self.rta_table {
            attr(&mut b, RTA_TABLE, &t.to_ne_bytes());
        }
        ip(&mut b, RTA_DST, self.dst);
        ip(&mut b, RTA_SRC, self.src);
        ip(&mut b, RTA_GATEWAY, self.gateway);
        if let Some(o) = self.oif {
            attr(&mut b, RTA_OIF, &o.to_ne_bytes());
        }
        if let Some(p) = self.priority {
            attr(&mut b, RTA_PRIORITY, &p.to_ne_bytes());
        }
        b
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let fixed = b.get(..12)?;
        let mut m = RouteMsg {
            family: fixed[0],
            dst_len: fixed[1],
            src_len: fixed[2],
            table: fixed[4],
            protocol: fixed[5],
            scope: fixed[6],
            kind: fixed[7],
            flags: u32_at(fixed, 8)?,
            ..Default::default()
        };
        for (kind, v) in attrs(&b[12..])? {
            match kind {
                RTA_DST => m.dst = Some(ip_from(v)?),
                RTA_SRC => m.src = Some(ip_from(v)?),
                RTA_GATEWAY => m.gateway = Some(ip_from(v)?),
                RTA_OIF => m.oif = Some(u32_at(v, 0)?),
                RTA_PRIORITY => m.priority = Some(u32_at(v, 0)?),
                RTA_TABLE => m.rta_table = Some(u32_at(v, 0)?),
                _ => {}
            }
        }
        Some(m)
    }
}

/// A netlink message: header (length filled in) and `body`.
pub(crate) fn nlmsg(nl_type: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + body.len();
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&(len as u32).to_ne_bytes());
    b.extend_from_slice(&nl_type.to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel fills it in
    b.extend_from_slice(body);
    b
}

/// Appends one attribute, padded to 4 bytes.
pub(crate) fn attr(b: &mut Vec<u8>, kind: u16, value: &[u8]) {
    b.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    b.extend_from_slice(&kind.to_ne_bytes());
    b.extend_from_slice(value);
    b.resize(b.len().next_multiple_of(4), 0);
}

/// The attributes of `b` as (type without the nested/byte-order bits,
/// value); `None` if one is malformed.
pub(crate) fn attrs(mut b: &[u8]) -> Option<Vec<(u16, &[u8])>> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([b[0], b[1]]));
        if len < 4 || len > b.len() {
            return None;
        }
        out.push((u16::from_ne_bytes([b[2], b[3]]) & 0x3fff, &b[4..len]));
        b = b.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    Some(out)
}

pub(crate) fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

pub(crate) fn ip_from(v: &[u8]) -> Option<IpAddr> {
    match v.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(v).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(v).ok()?))),
        _ => None,
    }
}

pub(crate) fn ip_bytes(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Every message of one datagram, with its sequence number.
fn parse_all(mut buf: &[u8]) -> io::Result<Vec<(u32, Msg)>> {
    let mut out = Vec::new();
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("netlink message length {len} with {} bytes left", buf.len()),
            ));
        }
        let nl_type = u16::from_ne_bytes([buf[4], buf[5]]);
        let seq = u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]);
        out.push((seq, decode(nl_type, &buf[NLMSG_HDRLEN..len])));
        buf = buf.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    Ok(out)
}

/// One message's body; [`Msg::Other`] for the rest and for what is short or
/// malformed.
fn decode(nl_type: u16, b: &[u8]) -> Msg {
    let m = match nl_type {
        NLMSG_DONE => Some(Msg::Done),
        NLMSG_ERROR => b
            .get(..4)
            .map(|e| Msg::Error(i32::from_ne_bytes([e[0], e[1], e[2], e[3]]))),
        // ifinfomsg: family, pad, type (u16), index (i32), flags, change.
        // The attributes are not needed (and recent kernels send some that
        // general-purpose parsers reject, e.g. an empty IFLA_AF_SPEC).
        RTM_NEWLINK | RTM_DELLINK => b.get(..16).and_then(|h| {
            Some(Msg::Link {
                del: nl_type == RTM_DELLINK,
                index: u32_at(h, 4)?,
                flags: u32_at(h, 8)?,
            })
        }),
        // ifaddrmsg: family, prefixlen, flags (u8), scope, index (u32).
        RTM_NEWADDR | RTM_DELADDR => b.get(..8).and_then(|h| {
            let mut flags = u32::from(h[2]);
            let (mut local, mut address) = (None, None);
            for (kind, v) in attrs(&b[8..])? {
                match kind {
                    IFA_LOCAL => local = Some(ip_from(v)?),
                    IFA_ADDRESS => address = Some(ip_from(v)?),
                    IFA_FLAGS => flags |= u32_at(v, 0)?,
                    _ => {}
                }
            }
            Some(Msg::Addr {
                del: nl_type == RTM_DELADDR,
                index: u32_at(h, 4)?,
                tentative: flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED) != 0,
                addr: local.or(address),
                prefix_len: h[1],
                deprecated: flags & IFA_F_DEPRECATED != 0,
            })
        }),
        RTM_NEWROUTE | RTM_DELROUTE => RouteMsg::decode(b).map(|msg| Msg::Route {
            del: nl_type == RTM_DELROUTE,
            msg,
        }),
        _ => None,
    };
    m.unwrap_or(Msg::Other)
}

fn family_of(v6: bool) -> u8 {
    if v6 { AF_INET6 } else { AF_INET }
}

/// The kernel's route as the core sees it; `None` for non-unicast, cached
/// and non-IP routes.
pub fn route_from_msg(m: &RouteMsg) -> Option<Route> {
    if m.kind != RTN_UNICAST || m.flags & RTM_F_CLONED != 0 {
        return None;
    }
    let v6 = match m.family {
        AF_INET => false,
        AF_INET6 => true,
        _ => return None,
    };
    let dst = m.dst.unwrap_or(IpNet::default_route(v6).addr());
    let src = match m.src_len {
        0 => None,
        l => Some(IpNet::truncate(m.src?, l)?),
    };
    Some(Route {
        table: m.rta_table.unwrap_or(u32::from(m.table)),
        dst: IpNet::truncate(dst, m.dst_len)?,
        src,
        gateway: m.gateway,
        oif: m.oif,
        metric: m.priority.unwrap_or(0),
        proto: m.protocol,
    })
}

/// The request for adding (or, with `del`, deleting) `r`.
pub fn route_to_msg(r: &Route, del: bool) -> RouteMsg {
    let v6 = r.dst.is_ipv6();
    RouteMsg {
        family: family_of(v6),
        dst_len: r.dst.prefix_len(),
        src_len: r.src.map_or(0, |s| s.prefix_len()),
        table: u8::try_from(r.table).unwrap_or(RT_TABLE_UNSPEC),
        protocol: r.proto,
        scope: if del {
            // As `ip route del`: match any scope.
            RT_SCOPE_NOWHERE
        } else if r.gateway.is_none() && !v6 {
            RT_SCOPE_LINK
        } else {
            RT_SCOPE_UNIVERSE
        },
        kind: RTN_UNICAST,
        flags: 0,
        dst: (!r.dst.is_default()).then(|| r.dst.addr()),
        src: r.src.map(|s| s.addr()),
        gateway: r.gateway,
        oif: r.oif,
        priority: (r.metric != 0).then_some(r.metric),
        rta_table: Some(r.table),
    }
}

/// An ifaddrmsg with IFA_LOCAL (IPv4 only, as `ip addr add`) and
/// IFA_ADDRESS.
fn address_to_msg(ifindex: u32, addr: IpAddr, prefix_len: u8) -> Vec<u8> {
    let mut b = vec![family_of(addr.is_ipv6()), prefix_len, 0, RT_SCOPE_UNIVERSE];
    b.extend_from_slice(&ifindex.to_ne_bytes());
    if addr.is_ipv4() {
        attr(&mut b, IFA_LOCAL, &ip_bytes(&addr));
    }
    attr(&mut b, IFA_ADDRESS, &ip_bytes(&addr));
    b
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
            if flags & (IFF_UP | IFF_RUNNING) == IFF_UP | IFF_RUNNING {
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
            if msg.flags & RTM_F_CLONED != 0 {
                return None;
            }
            (msg.oif.unwrap_or(0), UplinkChange::RouteChanged)
        }
        _ => return None,
    };
    Some(UplinkEvent { ifindex, change })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::roam::ROUTE_PROTO;

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

    /// Encoded as a request and decoded back as the kernel's answer.
    fn round_trip(r: &Route) -> Route {
        let bytes = nlmsg(RTM_NEWROUTE, 0, 1, &route_to_msg(r, false).encode());
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
        assert_eq!(route_to_msg(&r, false).encode(), want);
        let msg = nlmsg(RTM_NEWROUTE, 0x605, 9, &want);
        assert_eq!(&msg[..4], &ne32(16 + want.len() as u32));
        assert_eq!(
            &msg[4..8],
            &[24u16.to_ne_bytes(), 0x605u16.to_ne_bytes()].concat()[..]
        );
        assert_eq!(&msg[8..12], &ne32(9));
        // An address: ifaddrmsg + IFA_LOCAL + IFA_ADDRESS for IPv4.
        let a = address_to_msg(2, "100.64.0.2".parse().unwrap(), 24);
        let mut want = vec![2, 24, 0, 0];
        want.extend_from_slice(&ne32(2));
        want.extend(rta(2, &[100, 64, 0, 2]));
        want.extend(rta(1, &[100, 64, 0, 2]));
        assert_eq!(a, want);
        let a6 = address_to_msg(2, "2001:db8::1".parse().unwrap(), 64);
        assert_eq!(a6.len(), 8 + 20, "IPv6: IFA_ADDRESS only");
    }

    #[test]
    fn request_headers_match_what_the_kernel_expects() {
        let m = route_to_msg(&source_specific(), false);
        assert_eq!(m.family, AF_INET6);
        assert_eq!(m.dst_len, 0);
        assert_eq!(m.src_len, 64);
        assert_eq!(m.protocol, ROUTE_PROTO);
        assert_eq!(m.scope, RT_SCOPE_UNIVERSE);
        let kinds: Vec<u16> = attrs(&m.encode()[12..])
            .unwrap()
            .iter()
            .map(|a| a.0)
            .collect();
        assert!(!kinds.contains(&RTA_DST), "a default route has no RTA_DST");
        let d = route_to_msg(&source_specific(), true);
        assert_eq!(d.scope, RT_SCOPE_NOWHERE);
        assert_eq!(d.protocol, ROUTE_PROTO, "deletes match our protocol only");
        let mut big = source_specific();
        big.table = 1000;
        let m = route_to_msg(&big, false);
        assert_eq!((m.table, m.rta_table), (0, Some(1000)));
        let mut link = source_specific();
        link.dst = net("198.51.100.0/24");
        link.src = None;
        assert_eq!(route_to_msg(&link, false).scope, RT_SCOPE_LINK);
    }

    #[test]
    fn cached_and_non_unicast_routes_are_skipped() {
        let mut m = route_to_msg(&source_specific(), false);
        m.kind = 2; // RTN_LOCAL
        assert_eq!(route_from_msg(&m), None);
        let mut m = route_to_msg(&source_specific(), false);
        m.flags = RTM_F_CLONED;
        assert_eq!(route_from_msg(&m), None);
        let mut m = route_to_msg(&source_specific(), false);
        m.src = None;
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
            address_to_msg(2, "100.64.0.2".parse().unwrap(), 24),
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
        let route = note(
            RTM_NEWROUTE,
            route_to_msg(&source_specific(), false).encode(),
        );
        let ev = uplink_event(&route).unwrap();
        assert_eq!(ev.ifindex, 7);
        assert_eq!(ev.change, UplinkChange::RouteChanged);
        let mut cloned = route_to_msg(&source_specific(), false);
        cloned.flags = RTM_F_CLONED;
        assert_eq!(uplink_event(&note(RTM_DELROUTE, cloned.encode())), None);
        let up = IFF_UP | IFF_RUNNING | 0x10000; // | IFF_LOWER_UP
        assert_eq!(
            uplink_event(&note(RTM_NEWLINK, ifinfomsg(4, up))),
            Some(UplinkEvent {
                ifindex: 4,
                change: UplinkChange::LinkUp
            })
        );
        assert_eq!(
            uplink_event(&note(RTM_NEWLINK, ifinfomsg(4, IFF_UP)))
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
        assert_eq!(note(NLMSG_ERROR, err), Msg::Error(-libc::EEXIST));
        assert_eq!(note(NLMSG_ERROR, vec![0; 20]), Msg::Error(0));
        assert_eq!(note(NLMSG_DONE, ne32(0).to_vec()), Msg::Done);
        assert_eq!(note(RTM_NEWROUTE, vec![0; 8]), Msg::Other, "short rtmsg");
        let mut bad = route_to_msg(&source_specific(), false).encode();
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
        let bytes = nlmsg(
            RTM_NEWROUTE,
            0,
            1,
            &route_to_msg(&source_specific(), false).encode(),
        );
        for cut in [17, 20, bytes.len() - 1] {
            assert!(parse_all(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(parse_all(&bytes[..10]).unwrap().is_empty());
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes);
        assert_eq!(parse_all(&two).unwrap().len(), 2);
    }
}
