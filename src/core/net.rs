//! Network values every part uses: IP prefixes and kernel routes, as plain
//! data (parsed, compared and printed; never read from or written to the
//! kernel here: that is [`crate::os::rtnl`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The route protocol number marking routes this agent owns (`ip route`
/// shows `proto 119`). Only routes with it are ever deleted.
pub const ROUTE_PROTO: u8 = 119;
/// The kernel's main routing table.
pub const RT_TABLE_MAIN: u32 = 254;

/// An IP prefix: address with all host bits clear, and a length.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpNet {
    addr: IpAddr,
    len: u8,
}

impl IpNet {
    /// The prefix `addr/len`; `None` when `len` is too long for the family
    /// or `addr` has host bits set.
    pub fn new(addr: IpAddr, len: u8) -> Option<Self> {
        let net = Self::truncate(addr, len)?;
        (net.addr == addr).then_some(net)
    }

    /// The prefix of length `len` containing `addr` (host bits cleared).
    pub fn truncate(addr: IpAddr, len: u8) -> Option<Self> {
        let addr = match addr {
            IpAddr::V4(a) if len <= 32 => {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) if len <= 128 => {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
            _ => return None,
        };
        Some(Self { addr, len })
    }

    /// The single-address prefix (`/32` or `/128`).
    pub fn host(addr: IpAddr) -> Self {
        let len = if addr.is_ipv4() { 32 } else { 128 };
        Self { addr, len }
    }

    /// `0.0.0.0/0` or `::/0`.
    pub fn default_route(v6: bool) -> Self {
        let addr = if v6 {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        Self { addr, len: 0 }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    pub fn is_ipv6(&self) -> bool {
        self.addr.is_ipv6()
    }

    pub fn is_default(&self) -> bool {
        self.len == 0
    }

    /// `ip` lies inside this prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv6() == self.is_ipv6()
            && Self::truncate(ip, self.len).is_some_and(|n| n.addr == self.addr)
    }

    /// `other` lies entirely inside this prefix.
    pub fn contains_net(&self, other: &IpNet) -> bool {
        other.len >= self.len && self.contains(other.addr)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl fmt::Debug for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for IpNet {
    type Err = String;

    /// `addr/len`, or a bare address as a host prefix. Host bits must be clear.
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("'{s}' is not an IP prefix; expected e.g. 2001:db8::/64"))?;
        let Some(l) = l else {
            return Ok(Self::host(addr));
        };
        let len: u8 = l
            .parse()
            .map_err(|_| format!("'{s}': prefix length '{l}' is not a number"))?;
        match Self::truncate(addr, len) {
            None => Err(format!("'{s}': prefix length {len} is too long")),
            Some(n) if n.addr != addr => Err(format!(
                "'{s}': host bits set; the prefix is {}",
                IpNet { addr: n.addr, len }
            )),
            Some(n) => Ok(n),
        }
    }
}

/// One route as the kernel holds it (unicast only).
///
/// Two routes with the same [`Route::key`] cannot coexist with different
/// next hops (IPv4) or would become a multipath route (IPv6).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub table: u32,
    pub dst: IpNet,
    /// Source prefix of a source-specific (IPv6) route.
    pub src: Option<IpNet>,
    pub gateway: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Priority; IPv6 routes added with 0 get 1024 from the kernel, so the
    /// core never asks for 0 on IPv6.
    pub metric: u32,
    pub proto: u8,
}

impl Route {
    /// What identifies a route in the kernel's table.
    pub fn key(&self) -> (u32, IpNet, Option<IpNet>, u32) {
        (self.table, self.dst, self.src, self.metric)
    }

    /// Same key and same next hop (the protocol may differ).
    pub fn same_as(&self, other: &Route) -> bool {
        self.key() == other.key() && self.gateway == other.gateway && self.oif == other.oif
    }

    pub fn is_ours(&self) -> bool {
        self.proto == ROUTE_PROTO
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.dst)?;
        if let Some(s) = self.src {
            write!(f, " from {s}")?;
        }
        if let Some(g) = self.gateway {
            write!(f, " via {g}")?;
        }
        if let Some(o) = self.oif {
            write!(f, " dev #{o}")?;
        }
        write!(f, " metric {}", self.metric)?;
        if self.table != RT_TABLE_MAIN {
            write!(f, " table {}", self.table)?;
        }
        Ok(())
    }
}
