//! Wakes the hub when any network link appears, goes or changes state, and
//! tells it when a route changed.
//!
//! A WireGuard link that netifd re-creates comes back without sessions, and
//! the first packet a roamed peer sends afterwards is the one that says where
//! it is now: the hub must be capturing by then. Polling alone notices the new
//! link up to `poll_ms` late; this subscription makes the next observation
//! happen at once. Route notifications replace a route dump every second:
//! the relay looks at the routing table when it changed (or its own
//! deadlines say so). Messages are not parsed beyond their type: any link
//! event means "look now", any route event "dump the routes again", and
//! both are rare on a router.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const RTMGRP_IPV6_ROUTE: u32 = 0x400;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;

/// What the notifications drained said changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changed {
    pub links: bool,
    pub routes: bool,
}

impl Changed {
    const ALL: Self = Self {
        links: true,
        routes: true,
    };

    /// The kinds of the netlink messages in one datagram.
    fn of_datagram(mut buf: &[u8]) -> Self {
        let mut c = Self::default();
        while buf.len() >= 16 {
            let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            match u16::from_ne_bytes([buf[4], buf[5]]) {
                RTM_NEWLINK | RTM_DELLINK => c.links = true,
                RTM_NEWROUTE | RTM_DELROUTE => c.routes = true,
                _ => {}
            }
            let step = (len + 3) & !3;
            if len < 16 || step > buf.len() {
                break;
            }
            buf = &buf[step..];
        }
        c
    }
}

pub struct LinkWatch {
    sock: Socket,
    buf: Vec<u8>,
}

impl LinkWatch {
    /// Subscribes to link notifications in the caller's network namespace.
    pub fn open() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind(&SocketAddr::new(
            0,
            RTMGRP_LINK | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE,
        ))?;
        sock.set_non_blocking(true)?;
        Ok(Self {
            sock,
            buf: vec![0; 8192],
        })
    }

    /// For `poll(2)`: readable when notifications wait.
    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Discards what is queued and says what it was about (an overflow
    /// counts as everything).
    pub fn drain(&mut self) -> Changed {
        let mut c = Changed::default();
        loop {
            match self.sock.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => {
                    let d = Changed::of_datagram(&self.buf[..n.min(self.buf.len())]);
                    c.links |= d.links;
                    c.routes |= d.routes;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => c = Changed::ALL,
                Err(_) => return c,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: u16, payload: usize) -> Vec<u8> {
        let len = 16 + payload;
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.resize(len, 0);
        m.resize((len + 3) & !3, 0);
        m
    }

    #[test]
    fn a_datagram_says_whether_links_or_routes_changed() {
        assert!(Changed::of_datagram(&msg(RTM_NEWLINK, 20)).links);
        assert!(!Changed::of_datagram(&msg(RTM_NEWLINK, 20)).routes);
        let mut both = msg(RTM_DELROUTE, 37);
        both.extend(msg(RTM_DELLINK, 8));
        assert_eq!(Changed::of_datagram(&both), Changed::ALL);
        // Addresses (RTM_NEWADDR 20) and neighbours (28) are neither.
        assert_eq!(Changed::of_datagram(&msg(20, 40)), Changed::default());
        assert_eq!(Changed::of_datagram(&msg(28, 40)), Changed::default());
    }

    #[test]
    fn a_truncated_or_bogus_datagram_ends_the_walk() {
        let mut m = msg(RTM_NEWROUTE, 40);
        m.truncate(10);
        assert_eq!(Changed::of_datagram(&m), Changed::default());
        let mut zero = msg(RTM_NEWROUTE, 0);
        zero[..4].copy_from_slice(&0u32.to_ne_bytes());
        zero.extend(msg(RTM_NEWLINK, 0));
        // A zero length cannot advance: the route is seen, the walk stops.
        assert!(Changed::of_datagram(&zero).routes);
        let mut long = msg(RTM_NEWLINK, 0);
        long[..4].copy_from_slice(&4096u32.to_ne_bytes());
        assert!(Changed::of_datagram(&long).links);
    }
}
