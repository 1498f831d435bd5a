//! One ICMPv6 echo request through the tunnel: the roam's heartbeat and the
//! packet that makes WireGuard initiate a handshake at once. Raw ICMPv6
//! socket (root); the kernel fills in the checksum.

use std::io;
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::os::capture::cvt;

fn sockaddr(ip: Ipv6Addr) -> libc::sockaddr_in6 {
    // SAFETY: sockaddr_in6 is plain data; all-zero is valid.
    let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    sa.sin6_addr.s6_addr = ip.octets();
    sa
}

/// Sends an echo request to `to`, from `from` when given (a source-specific
/// default route matches only sources inside the tunnel's prefixes).
pub fn echo(to: Ipv6Addr, from: Option<Ipv6Addr>, seq: u16) -> io::Result<()> {
    // SAFETY: plain syscall; we own the descriptor on success.
    let fd = unsafe {
        OwnedFd::from_raw_fd(cvt(libc::socket(
            libc::AF_INET6,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMPV6,
        ))?)
    };
    let len = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    if let Some(src) = from {
        let sa = sockaddr(src);
        // SAFETY: sa is a valid sockaddr_in6 of `len` bytes.
        cvt(unsafe { libc::bind(fd.as_raw_fd(), (&raw const sa).cast(), len) })?;
    }
    let id = (std::process::id() & 0xffff) as u16;
    let mut pkt = [0u8; 16];
    pkt[0] = 128; // echo request
    pkt[4..6].copy_from_slice(&id.to_be_bytes());
    pkt[6..8].copy_from_slice(&seq.to_be_bytes());
    pkt[8..].copy_from_slice(b"wgroam\0\0");
    let sa = sockaddr(to);
    // SAFETY: pkt and sa are valid for the lengths given.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            pkt.as_ptr().cast(),
            pkt.len(),
            libc::MSG_DONTWAIT,
            (&raw const sa).cast(),
            len,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
