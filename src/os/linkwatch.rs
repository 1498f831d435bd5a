//! Wakes the hub when any network link appears, goes or changes state.
//!
//! A WireGuard link that netifd re-creates comes back without sessions, and
//! the first packet a roamed peer sends afterwards is the one that says where
//! it is now: the hub must be capturing by then. Polling alone notices the new
//! link up to `poll_ms` late; this subscription makes the next observation
//! happen at once. Messages are not parsed: any link event means "look now",
//! and they are rare on a router.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

const RTMGRP_LINK: u32 = 0x1;

pub struct LinkWatch {
    sock: Socket,
    buf: Vec<u8>,
}

impl LinkWatch {
    /// Subscribes to link notifications in the caller's network namespace.
    pub fn open() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind(&SocketAddr::new(0, RTMGRP_LINK))?;
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

    /// Discards what is queued; true if anything was (an overflow counts).
    pub fn drain(&mut self) -> bool {
        let mut any = false;
        loop {
            match self.sock.recv(&mut &mut self.buf[..], 0) {
                Ok(_) => any = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => any = true,
                Err(_) => return any,
            }
        }
    }
}
