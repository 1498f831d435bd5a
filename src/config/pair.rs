//! Options of a hub `interface` section for pairing (issue 14): the pool the
//! hub hands travel routers prefixes from, and the redeem listener's port.

use super::Reader;
use crate::core::net::IpNet;

/// Pairing is on for an interface with a `pool`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairOptions {
    /// The routed prefix travel routers get their prefixes from.
    pub pool: IpNet,
    /// The prefix length each one gets (default 64).
    pub size: u8,
    /// UDP port of the redeem listener (default 51821).
    pub redeem_port: u16,
}

pub(super) fn read(r: &mut Reader) -> Option<PairOptions> {
    let size = r.number("pool_size", 64, 1, 128) as u8;
    let redeem_port = r.number("redeem_port", 51821, 1, 65535) as u16;
    let pool = r.single("pool")?;
    let net = match pool.parse::<IpNet>() {
        Ok(n) if n.is_ipv6() && !n.is_default() => n,
        Ok(_) | Err(_) => {
            r.bad(
                "pool",
                &pool,
                "an IPv6 prefix routed to this hub, e.g. 2001:db8:100::/48",
            );
            return None;
        }
    };
    if size < net.prefix_len() {
        r.bad(
            "pool_size",
            &size.to_string(),
            &format!(
                "a prefix length of at least {} (the pool's)",
                net.prefix_len()
            ),
        );
        return None;
    }
    Some(PairOptions {
        pool: net,
        size,
        redeem_port,
    })
}
