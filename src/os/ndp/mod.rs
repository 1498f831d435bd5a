//! NDP proxy: answers IPv6 Neighbor Solicitations on the WAN for addresses
//! inside the peers' prefixes, like ndppd's `static` rules, so a provider
//! that treats the routed prefix as on-link (a switched /64) reaches them.
//!
//! The kernel's own proxy (`proxy_ndp` with one entry per address) cannot
//! cover a prefix, so this is a packet responder: an AF_PACKET `SOCK_DGRAM`
//! socket on the WAN whose classic BPF filter passes only ICMPv6 Neighbor
//! Solicitations (next header 58, hop limit 255, type 135) in the kernel,
//! with all-multicast reception on (solicitations go to solicited-node
//! groups the WAN never joined). Each solicitation for a target inside a
//! peer prefix gets a Neighbor Advertisement from the WAN's MAC: source
//! address the target, Solicited set for a unicast solicitor, Override
//! clear (RFC 4861 7.2.8: a proxy must not override the owner's own
//! answer), Router clear (the targets are the peers' hosts).
//!
//! Parsing and answer building are pure functions over bytes; the socket
//! runs on its own thread so answers never wait for the daemon's loop.

use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use libc::sock_filter;
use pnet_packet::Packet;
use pnet_packet::icmpv6::ndp::{MutableNeighborAdvertPacket, NeighborAdvertFlags};
use pnet_packet::icmpv6::{self, Icmpv6Packet, Icmpv6Types};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv6::{Ipv6Packet, MutableIpv6Packet};

use crate::core::Level;
use crate::core::net::IpNet;
use crate::core::relay::is_target;
use crate::hub::capture::Budget;
use crate::os::capture::{attach_filter, bind_packet, cvt, ifindex, set_option};
use crate::os::syslog::emit;

const ETH_P_IPV6: u16 = 0x86dd;
const ICMPV6: u8 = 58;
const TYPE_NS: u8 = 135;
const OPT_SOURCE_LL: u8 = 1;
const OPT_TARGET_LL: u8 = 2;
/// Bytes of a solicitation handed to user space (header, body, options).
const SNAP: u32 = 1024;
/// How often the responder thread looks at its stop flag.
const STOP_POLL_MS: i64 = 200;

/// Kernel filter for a `SOCK_DGRAM` packet socket (offset 0 is the IPv6
/// header): IPv6, next header ICMPv6, hop limit 255, type 135.
pub fn ns_filter() -> Vec<sock_filter> {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const LD_B_ABS: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    const AD_PROTOCOL: u32 = (libc::SKF_AD_OFF + libc::SKF_AD_PROTOCOL) as u32;
    let insn = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    // Each test falls through on a match and jumps to the final drop (the
    // last instruction) otherwise; `jf` counts the instructions in between.
    vec![
        insn(LD_W_ABS, 0, 0, AD_PROTOCOL),
        insn(JEQ_K, 0, 7, u32::from(ETH_P_IPV6)),
        insn(LD_B_ABS, 0, 0, 6), // next header
        insn(JEQ_K, 0, 5, u32::from(ICMPV6)),
        insn(LD_B_ABS, 0, 0, 7), // hop limit
        insn(JEQ_K, 0, 3, 255),
        insn(LD_B_ABS, 0, 0, 40), // ICMPv6 type
        insn(JEQ_K, 0, 1, u32::from(TYPE_NS)),
        insn(RET_K, 0, 0, SNAP),
        insn(RET_K, 0, 0, 0),
    ]
}

/// A valid Neighbor Solicitation (RFC 4861 7.1.1 checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Solicit {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub target: Ipv6Addr,
    /// The Source Link-Layer Address option.
    pub source_ll: Option<[u8; 6]>,
}

/// The solicited-node multicast group of `a` (ff02::1:ffXX:XXXX).
pub fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// Parses an IPv6 frame as a Neighbor Solicitation; `None` for anything
/// else, malformed or invalid (never panics).
pub fn parse_ns(frame: &[u8]) -> Option<Solicit> {
    let ip = Ipv6Packet::new(frame)?;
    if ip.get_version() != 6
        || ip.get_next_header() != IpNextHeaderProtocols::Icmpv6
        || ip.get_hop_limit() != 255
    {
        return None;
    }
    let len = usize::from(ip.get_payload_length());
    let body = frame.get(40..40 + len)?;
    if body.len() < 24 {
        return None;
    }
    let icmp = Icmpv6Packet::new(body)?;
    let (src, dst) = (ip.get_source(), ip.get_destination());
    if icmp.get_icmpv6_type() != Icmpv6Types::NeighborSolicit
        || icmp.get_icmpv6_code().0 != 0
        || icmpv6::checksum(&icmp, &src, &dst) != icmp.get_checksum()
    {
        return None;
    }
    let target = Ipv6Addr::from(<[u8; 16]>::try_from(&body[8..24]).ok()?);
    if target.is_multicast() || src.is_multicast() {
        return None;
    }
    let mut source_ll = None;
    let mut opts = &body[24..];
    while !opts.is_empty() {
        let olen = usize::from(*opts.get(1)?) * 8;
        if olen == 0 || olen > opts.len() {
            return None;
        }
        if opts[0] == OPT_SOURCE_LL && olen == 8 {
            source_ll = Some(<[u8; 6]>::try_from(&opts[2..8]).ok()?);
        }
        opts = &opts[olen..];
    }
    if src.is_unspecified() && (dst != solicited_node(target) || source_ll.is_some()) {
        return None;
    }
    if dst != solicited_node(target) && dst != target {
        return None;
    }
    Some(Solicit {
        src,
        dst,
        target,
        source_ll,
    })
}

/// A Neighbor Advertisement ready to send: the IPv6 packet and the
/// Ethernet destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub packet: Vec<u8>,
    pub dst_mac: [u8; 6],
}

/// The answer to `ns` when its target lies in one of `targets`. `l2_src`
/// is the Ethernet source of the solicitation (used when it carries no
/// Source Link-Layer Address option), `mac` the WAN's own address.
pub fn answer(
    ns: &Solicit,
    l2_src: Option<[u8; 6]>,
    targets: &[IpNet],
    mac: [u8; 6],
) -> Option<Advert> {
    if !is_target(targets, IpAddr::V6(ns.target)) {
        return None;
    }
    let (dst, dst_mac, flags) = if ns.src.is_unspecified() {
        // Duplicate address detection: tell everybody, unsolicited.
        let all = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        (all, [0x33, 0x33, 0, 0, 0, 1], 0)
    } else {
        let to = ns.source_ll.or(l2_src)?;
        (ns.src, to, NeighborAdvertFlags::Solicited)
    };
    let mut icmp = vec![0u8; 32];
    {
        let mut na = MutableNeighborAdvertPacket::new(&mut icmp)?;
        na.set_icmpv6_type(Icmpv6Types::NeighborAdvert);
        na.set_flags(flags);
        na.set_target_addr(ns.target);
    }
    icmp[24] = OPT_TARGET_LL;
    icmp[25] = 1;
    icmp[26..32].copy_from_slice(&mac);
    let sum = icmpv6::checksum(&Icmpv6Packet::new(&icmp)?, &ns.target, &dst);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut packet = vec![0u8; 40 + icmp.len()];
    {
        let mut ip = MutableIpv6Packet::new(&mut packet)?;
        ip.set_version(6);
        ip.set_payload_length(icmp.len() as u16);
        ip.set_next_header(IpNextHeaderProtocols::Icmpv6);
        ip.set_hop_limit(255);
        ip.set_source(ns.target);
        ip.set_destination(dst);
        ip.set_payload(&icmp);
    }
    debug_assert_eq!(
        Ipv6Packet::new(&packet).map(|p| p.payload().len()),
        Some(32)
    );
    Some(Advert { packet, dst_mac })
}

/// The MAC address of `name` (SIOCGIFHWADDR), in the caller's namespace.
fn hw_addr(fd: RawFd, name: &str) -> io::Result<[u8; 6]> {
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        return Err(io::Error::other("interface name too long"));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: req is a valid ifreq; the kernel fills ifr_hwaddr.
    cvt(unsafe { libc::ioctl(fd, libc::SIOCGIFHWADDR as _, &mut req) })?;
    // SAFETY: SIOCGIFHWADDR wrote the hwaddr member of the union.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    if sa.sa_family != libc::ARPHRD_ETHER {
        return Err(io::Error::other(format!(
            "{name} is not an Ethernet device (type {}); NDP proxy needs one",
            sa.sa_family
        )));
    }
    let mut mac = [0u8; 6];
    for (m, b) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *m = *b as u8;
    }
    Ok(mac)
}

/// Opens the solicitation socket on interface `index`.
fn open_socket(index: u32) -> io::Result<OwnedFd> {
    let ty = libc::SOCK_DGRAM | libc::SOCK_CLOEXEC;
    // SAFETY: plain syscall; on success we own the new descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(cvt(libc::socket(libc::AF_PACKET, ty, 0))?) };
    attach_filter(fd.as_raw_fd(), &ns_filter())?;
    bind_packet(fd.as_raw_fd(), ETH_P_IPV6, index)?;
    // Solicited-node groups of the targets were never joined: receive all
    // multicast while this socket lives (the kernel drops it on close).
    // SAFETY: packet_mreq is plain data; all-zero is a valid value.
    let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
    mreq.mr_ifindex = i32::try_from(index).map_err(|_| io::Error::other("bad ifindex"))?;
    mreq.mr_type = libc::PACKET_MR_ALLMULTI as u16;
    set_option(
        fd.as_raw_fd(),
        libc::SOL_PACKET,
        libc::PACKET_ADD_MEMBERSHIP,
        &mreq,
    )?;
    let tv = libc::timeval {
        tv_sec: 0,
        // suseconds_t is 32 bits on some targets.
        tv_usec: (STOP_POLL_MS * 1000) as _,
    };
    set_option(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
    Ok(fd)
}

struct Shared {
    targets: Mutex<Vec<IpNet>>,
    stop: AtomicBool,
    /// 32 bits: 32-bit MIPS has no 64-bit atomics.
    answered: AtomicU32,
    error: Mutex<Option<String>>,
}

/// A running responder on one WAN device; stopped on drop.
pub struct Responder {
    wan: String,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    /// Opens the socket on `wan` (errors are returned here) and starts
    /// answering for `targets`. Needs CAP_NET_RAW.
    pub fn start(wan: &str, targets: Vec<IpNet>) -> io::Result<Self> {
        let index = ifindex(wan).map_err(|e| io::Error::new(e.kind(), format!("{wan}: {e}")))?;
        let fd = open_socket(index).map_err(|e| io::Error::new(e.kind(), format!("{wan}: {e}")))?;
        let mac = hw_addr(fd.as_raw_fd(), wan)?;
        let shared = Arc::new(Shared {
            targets: Mutex::new(targets),
            stop: AtomicBool::new(false),
            answered: AtomicU32::new(0),
            error: Mutex::new(None),
        });
        let s = Arc::clone(&shared);
        let name = wan.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("ndp-{wan}"))
            .stack_size(64 * 1024)
            .spawn(move || {
                if let Err(e) = serve(&fd, index, mac, &name, &s) {
                    let msg = format!("{name}: NDP proxy stopped: {e}");
                    emit(Level::Error, &msg);
                    *s.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg);
                }
            })?;
        Ok(Self {
            wan: wan.to_string(),
            shared,
            thread: Some(thread),
        })
    }

    pub fn wan(&self) -> &str {
        &self.wan
    }

    pub fn set_targets(&self, targets: Vec<IpNet>) {
        *self
            .shared
            .targets
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = targets;
    }

    /// False once the thread gave up (the WAN went away).
    pub fn alive(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Advertisements sent so far.
    pub fn answered(&self) -> u64 {
        u64::from(self.shared.answered.load(Ordering::Relaxed))
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The responder loop: receive, answer, until stopped or the device fails.
fn serve(fd: &OwnedFd, index: u32, mac: [u8; 6], wan: &str, s: &Shared) -> io::Result<()> {
    let mut buf = [0u8; SNAP as usize];
    let mut budget = Budget::new();
    let started = std::time::Instant::now();
    while !s.stop.load(Ordering::Relaxed) {
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut alen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: buf and from are valid for writes of the lengths given.
        let n = unsafe {
            libc::recvfrom(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&raw mut from).cast(),
                &mut alen,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock => continue,
                _ => return Err(e),
            }
        }
        if from.sll_pkttype == libc::PACKET_OUTGOING {
            continue;
        }
        let Some(ns) = parse_ns(&buf[..n as usize]) else {
            continue;
        };
        let l2 = (from.sll_halen == 6).then(|| {
            let mut m = [0u8; 6];
            m.copy_from_slice(&from.sll_addr[..6]);
            m
        });
        let advert = {
            let t = s.targets.lock().unwrap_or_else(|p| p.into_inner());
            answer(&ns, l2, &t, mac)
        };
        let Some(advert) = advert else { continue };
        // Once told to stop, not one more answer.
        if s.stop.load(Ordering::Relaxed) {
            break;
        }
        if !budget.take(started.elapsed().as_millis() as u64) {
            continue;
        }
        send(fd, index, &advert)?;
        s.answered.fetch_add(1, Ordering::Relaxed);
        emit(
            Level::Debug,
            &format!("{wan}: NDP proxy: {} is at {}", ns.target, mac_str(&mac)),
        );
    }
    Ok(())
}

fn send(fd: &OwnedFd, index: u32, a: &Advert) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = ETH_P_IPV6.to_be();
    to.sll_ifindex = index as i32;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&a.dst_mac);
    // SAFETY: the packet and `to` are valid for the lengths given.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            a.packet.as_ptr().cast(),
            a.packet.len(),
            0,
            (&raw const to).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        // A full queue or a link blip loses one answer; the solicitor asks again.
        if matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN)) {
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}

fn mac_str(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests;
