//! WireGuard adapter: kernel generic netlink (OpenWrt) or the userspace
//! UAPI socket (wireguard-go), whichever holds the interface.
//!
//! Both protocols are spoken here directly, for the three things wgroam
//! does: read a device, set one peer's endpoint, remove and re-add one peer.
//! (A general WireGuard library cost ~440 KB of a MIPS binary with its
//! netlink stack.) Nothing here creates interfaces or starts daemons, and
//! every write first checks that the interface and the peer exist, since a
//! peer update for an unknown key would add that peer.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use netlink_sys::{Socket, SocketAddr as NlAddr, protocols::NETLINK_GENERIC};
use zeroize::Zeroizing;

use crate::core::PublicKey;
use crate::core::hub::PeerSnapshot;
use crate::core::roam::IpNet;
use crate::rtnl::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NLMSG_HDRLEN, attr, attrs,
    ip_bytes, ip_from, nlmsg, u32_at,
};

/// Which backend to talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    Auto,
    Kernel,
    Userspace,
}

/// What one read of an interface returns.
pub struct DeviceView {
    pub backend: &'static str,
    pub listen_port: Option<u16>,
    pub public_key: Option<PublicKey>,
    /// Needed to verify handshake initiations; kept in memory only.
    pub private_key: Option<Zeroizing<[u8; 32]>>,
    pub peers: Vec<PeerSnapshot>,
    /// Every allowed IP of every peer (the hub routes and relays these).
    pub allowed_ips: Vec<IpNet>,
}

/// The WireGuard operations the daemon needs; fakes implement it in tests.
pub trait WireGuard {
    /// Reads an interface; `Ok(None)` when it does not exist.
    fn read(&self, ifname: &str, choice: BackendChoice) -> io::Result<Option<DeviceView>>;
    /// Sets one existing peer's endpoint live, leaving everything else alone.
    fn set_endpoint(
        &self,
        ifname: &str,
        choice: BackendChoice,
        key: &PublicKey,
        endpoint: SocketAddr,
    ) -> io::Result<()>;
    /// Removes and re-adds one existing peer with its own configuration (and
    /// a new endpoint, if given) in one update: drops its session keys and
    /// WireGuard's handshake rate limit (see `Action::Rearm`).
    fn rearm(
        &self,
        ifname: &str,
        choice: BackendChoice,
        key: &PublicKey,
        endpoint: Option<SocketAddr>,
    ) -> io::Result<()>;
    /// Adds a new peer live (pairing), leaving every other peer's session
    /// alone; a peer with this key already there gets these allowed IPs.
    fn add_peer(
        &self,
        ifname: &str,
        choice: BackendChoice,
        key: &PublicKey,
        allowed_ips: &[(IpAddr, u8)],
    ) -> io::Result<()> {
        let _ = (ifname, choice, key, allowed_ips);
        Err(io::Error::other("adding peers is not supported here"))
    }
}

/// The real thing.
pub struct System;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Kernel,
    Userspace,
}

/// A device as read from either backend.
#[derive(Default)]
struct Device {
    listen_port: Option<u16>,
    private_key: Option<Zeroizing<[u8; 32]>>,
    public_key: Option<[u8; 32]>,
    peers: Vec<Peer>,
}

/// A peer as read: its configuration and counters.
#[derive(Default)]
struct Peer {
    key: [u8; 32],
    preshared_key: Option<Zeroizing<[u8; 32]>>,
    endpoint: Option<SocketAddr>,
    keepalive: Option<u16>,
    allowed_ips: Vec<(IpAddr, u8)>,
    /// Seconds since the epoch; `None` before the first handshake.
    last_handshake: Option<u64>,
    rx: u64,
    tx: u64,
}

/// One peer's part of a set request.
#[derive(Default)]
struct PeerUpdate<'a> {
    key: [u8; 32],
    remove: bool,
    /// Replace the allowed IPs with `allowed_ips` (else add them).
    replace_allowed_ips: bool,
    preshared_key: Option<&'a [u8; 32]>,
    endpoint: Option<SocketAddr>,
    keepalive: Option<u16>,
    allowed_ips: &'a [(IpAddr, u8)],
}

/// What the kernel accepts as an interface name (IFNAMSIZ, no '/' or space).
fn check_name(ifname: &str) -> io::Result<()> {
    let ok = !ifname.is_empty()
        && ifname.len() < 16
        && !ifname
            .bytes()
            .any(|b| b == b'/' || b == 0 || b.is_ascii_whitespace());
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("'{ifname}' is not a valid interface name"),
        ))
    }
}

fn backends(choice: BackendChoice) -> &'static [Backend] {
    match choice {
        BackendChoice::Auto => &[Backend::Kernel, Backend::Userspace],
        BackendChoice::Kernel => &[Backend::Kernel],
        BackendChoice::Userspace => &[Backend::Userspace],
    }
}

/// wireguard-go's UAPI socket for `ifname`, if one exists.
fn userspace_socket(ifname: &str) -> Option<String> {
    ["/var/run/wireguard", "/run/wireguard"]
        .iter()
        .map(|d| format!("{d}/{ifname}.sock"))
        .find(|p| std::path::Path::new(p).exists())
}

fn get(ifname: &str, choice: BackendChoice) -> io::Result<Option<(Backend, Device)>> {
    check_name(ifname)?;
    let mut last = None;
    for &b in backends(choice) {
        let got = match b {
            Backend::Kernel => genl::get(ifname),
            Backend::Userspace => match userspace_socket(ifname) {
                Some(path) => uapi::get(&path),
                None => continue,
            },
        };
        match got {
            Ok(d) => return Ok(Some((b, d))),
            Err(e) => last = Some(e),
        }
    }
    match last {
        // No such device (ENODEV), no WireGuard module (ENOENT for the
        // family) or no socket: the interface is simply absent.
        Some(e)
            if e.raw_os_error() == Some(libc::ENODEV) || e.kind() == io::ErrorKind::NotFound =>
        {
            Ok(None)
        }
        Some(e) => Err(e),
        None => Ok(None),
    }
}

fn set(ifname: &str, backend: Backend, peers: &[PeerUpdate]) -> io::Result<()> {
    match backend {
        Backend::Kernel => genl::set(ifname, peers),
        Backend::Userspace => {
            let path = userspace_socket(ifname).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{ifname}: wireguard-go socket is gone"),
                )
            })?;
            uapi::set(&path, peers)
        }
    }
}

fn not_configured(ifname: &str, key: &PublicKey) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{ifname}: peer {} is not configured", key.short()),
    )
}

fn no_interface(ifname: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{ifname}: interface does not exist"),
    )
}

impl WireGuard for System {
    fn read(&self, ifname: &str, choice: BackendChoice) -> io::Result<Option<DeviceView>> {
        let Some((backend, d)) = get(ifname, choice)? else {
            return Ok(None);
        };
        Ok(Some(DeviceView {
            backend: match backend {
                Backend::Kernel => "kernel",
                Backend::Userspace => "userspace",
            },
            listen_port: d.listen_port,
            public_key: d.public_key.map(PublicKey),
            private_key: d.private_key,
            peers: d
                .peers
                .iter()
                .map(|p| PeerSnapshot {
                    key: PublicKey(p.key),
                    endpoint: p.endpoint,
                    last_handshake: p.last_handshake.filter(|&s| s > 0),
                    rx: p.rx,
                    tx: p.tx,
                })
                .collect(),
            allowed_ips: d
                .peers
                .iter()
                .flat_map(|p| &p.allowed_ips)
                .filter_map(|&(a, cidr)| IpNet::truncate(a, cidr))
                .collect(),
        }))
    }

    fn set_endpoint(
        &self,
        ifname: &str,
        choice: BackendChoice,
        key: &PublicKey,
        endpoint: SocketAddr,
    ) -> io::Result<()> {
        let (backend, d) = get(ifname, choice)?.ok_or_else(|| no_interface(ifname))?;
        if !d.peers.iter().any(|p| p.key == key.0) {
            return Err(not_configured(ifname, key));
        }
        let update = PeerUpdate {
            key: key.0,
            endpoint: Some(endpoint),
            ..Default::default()
        };
        set(ifname, backend, &[update])
    }

    fn rearm(
        &self,
        ifname: &str,
        choice: BackendChoice,
        key: &PublicKey,
        endpoint: Option<SocketAddr>,
    ) -> io::Result<()> {
        let (backend, d) = get(ifname, choice)?.ok_or_else(|| no_interface(ifname))?;
        let Some(peer) = d.peers.iter().find(|p| p.key == key.0) else {
            return Err(not_configured(ifname, key));
        };
        set(ifname, backend, &rearm_updates(peer, endpoint))
    }

    fn add_peer(
        &self,
        ifname: &str,
        choice: BackendChoice,
        key: &PublicKey,
        allowed_ips: &[(IpAddr, u8)],
    ) -> io::Result<()> {
        let (backend, _) = get(ifname, choice)?.ok_or_else(|| no_interface(ifname))?;
        let update = PeerUpdate {
            key: key.0,
            replace_allowed_ips: true,
            allowed_ips,
            ..Default::default()
        };
        set(ifname, backend, &[update])
    }
}

/// Remove the peer, then add it again with its own configuration (and the
/// new endpoint, if given), in one request.
fn rearm_updates(peer: &Peer, endpoint: Option<SocketAddr>) -> [PeerUpdate<'_>; 2] {
    [
        PeerUpdate {
            key: peer.key,
            remove: true,
            ..Default::default()
        },
        PeerUpdate {
            key: peer.key,
            replace_allowed_ips: true,
            preshared_key: peer.preshared_key.as_deref(),
            endpoint: endpoint.or(peer.endpoint),
            keepalive: peer.keepalive,
            allowed_ips: &peer.allowed_ips,
            ..Default::default()
        },
    ]
}

/// The kernel module's generic netlink family (<linux/wireguard.h>).
mod genl {
    use super::*;

    const GENL_ID_CTRL: u16 = 0x10;
    const CTRL_CMD_GETFAMILY: u8 = 3;
    const CTRL_ATTR_FAMILY_ID: u16 = 1;
    const CTRL_ATTR_FAMILY_NAME: u16 = 2;
    const NLA_F_NESTED: u16 = 0x8000;
    const WG_CMD_GET_DEVICE: u8 = 0;
    const WG_CMD_SET_DEVICE: u8 = 1;
    const WG_GENL_VERSION: u8 = 1;
    const WGDEVICE_A_IFNAME: u16 = 2;
    const WGDEVICE_A_PRIVATE_KEY: u16 = 3;
    const WGDEVICE_A_PUBLIC_KEY: u16 = 4;
    const WGDEVICE_A_LISTEN_PORT: u16 = 6;
    const WGDEVICE_A_PEERS: u16 = 8;
    pub(super) const WGPEER_A_PUBLIC_KEY: u16 = 1;
    pub(super) const WGPEER_A_PRESHARED_KEY: u16 = 2;
    pub(super) const WGPEER_A_FLAGS: u16 = 3;
    pub(super) const WGPEER_A_ENDPOINT: u16 = 4;
    pub(super) const WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL: u16 = 5;
    pub(super) const WGPEER_A_LAST_HANDSHAKE_TIME: u16 = 6;
    pub(super) const WGPEER_A_RX_BYTES: u16 = 7;
    pub(super) const WGPEER_A_TX_BYTES: u16 = 8;
    pub(super) const WGPEER_A_ALLOWEDIPS: u16 = 9;
    pub(super) const WGPEER_F_REMOVE_ME: u32 = 1;
    pub(super) const WGPEER_F_REPLACE_ALLOWEDIPS: u32 = 2;
    pub(super) const WGALLOWEDIP_A_FAMILY: u16 = 1;
    pub(super) const WGALLOWEDIP_A_IPADDR: u16 = 2;
    pub(super) const WGALLOWEDIP_A_CIDR_MASK: u16 = 3;

    struct Conn {
        sock: Socket,
        seq: u32,
        buf: Vec<u8>,
    }

    impl Conn {
        fn open() -> io::Result<Self> {
            let mut sock = Socket::new(NETLINK_GENERIC)?;
            sock.bind_auto()?;
            sock.connect(&NlAddr::new(0, 0))?;
            Ok(Self {
                sock,
                seq: 0,
                buf: vec![0; 64 * 1024],
            })
        }

        /// Sends one request; returns the bodies of the answers up to the
        /// ACK or DONE.
        fn request(&mut self, nl_type: u16, flags: u16, body: &[u8]) -> io::Result<Vec<Vec<u8>>> {
            self.seq = self.seq.wrapping_add(1);
            self.sock.send(&nlmsg(nl_type, flags, self.seq, body), 0)?;
            let mut out = Vec::new();
            loop {
                let n = self.sock.recv(&mut &mut self.buf[..], 0)?;
                let mut b = &self.buf[..n];
                while b.len() >= NLMSG_HDRLEN {
                    let len = u32_at(b, 0).unwrap_or(0) as usize;
                    if len < NLMSG_HDRLEN || len > b.len() {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("netlink message length {len} with {} bytes left", b.len()),
                        ));
                    }
                    let kind = u16::from_ne_bytes([b[4], b[5]]);
                    let body = &b[NLMSG_HDRLEN..len];
                    if u32_at(b, 8) == Some(self.seq) {
                        // NLMSG_ERROR: 0 is the ACK; DONE may carry an error.
                        let code = u32_at(body, 0).map_or(0, |c| c as i32);
                        match kind {
                            NLMSG_ERROR | NLMSG_DONE if code < 0 => {
                                return Err(io::Error::from_raw_os_error(-code));
                            }
                            NLMSG_ERROR | NLMSG_DONE => return Ok(out),
                            k if k == nl_type => out.push(body.to_vec()),
                            _ => {}
                        }
                    }
                    b = b.get(len.next_multiple_of(4)..).unwrap_or_default();
                }
            }
        }

        /// The WireGuard family's id; ENOENT (NotFound) without the module.
        fn family(&mut self) -> io::Result<u16> {
            let mut body = vec![CTRL_CMD_GETFAMILY, 1, 0, 0];
            attr(&mut body, CTRL_ATTR_FAMILY_NAME, b"wireguard\0");
            let answers = self.request(GENL_ID_CTRL, NLM_F_REQUEST | NLM_F_ACK, &body)?;
            answers
                .iter()
                .filter_map(|a| attrs(a.get(4..)?))
                .flatten()
                .find(|(k, v)| *k == CTRL_ATTR_FAMILY_ID && v.len() == 2)
                .map(|(_, v)| u16::from_ne_bytes([v[0], v[1]]))
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no wireguard family id"))
        }
    }

    fn header(cmd: u8, ifname: &str) -> Vec<u8> {
        let mut b = vec![cmd, WG_GENL_VERSION, 0, 0];
        let mut name = ifname.as_bytes().to_vec();
        name.push(0);
        attr(&mut b, WGDEVICE_A_IFNAME, &name);
        b
    }

    pub(super) fn get(ifname: &str) -> io::Result<Device> {
        let mut c = Conn::open()?;
        let family = c.family()?;
        let body = header(WG_CMD_GET_DEVICE, ifname);
        let answers = c.request(family, NLM_F_REQUEST | NLM_F_DUMP, &body)?;
        parse_device(&answers)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed WireGuard device"))
    }

    pub(super) fn set(ifname: &str, peers: &[PeerUpdate]) -> io::Result<()> {
        let mut c = Conn::open()?;
        let family = c.family()?;
        c.request(
            family,
            NLM_F_REQUEST | NLM_F_ACK,
            &set_request(ifname, peers),
        )
        .map(drop)
    }

    /// Appends a nested attribute holding what `fill` writes.
    fn nest(b: &mut Vec<u8>, kind: u16, fill: impl FnOnce(&mut Vec<u8>)) {
        let start = b.len();
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        fill(b);
        let len = (b.len() - start) as u16;
        b[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    pub(super) fn set_request(ifname: &str, peers: &[PeerUpdate]) -> Vec<u8> {
        let mut b = header(WG_CMD_SET_DEVICE, ifname);
        nest(&mut b, WGDEVICE_A_PEERS, |b| {
            for p in peers {
                nest(b, 0, |b| {
                    attr(b, WGPEER_A_PUBLIC_KEY, &p.key);
                    let flags = if p.remove { WGPEER_F_REMOVE_ME } else { 0 }
                        | if p.replace_allowed_ips {
                            WGPEER_F_REPLACE_ALLOWEDIPS
                        } else {
                            0
                        };
                    if flags != 0 {
                        attr(b, WGPEER_A_FLAGS, &flags.to_ne_bytes());
                    }
                    if let Some(k) = p.preshared_key {
                        attr(b, WGPEER_A_PRESHARED_KEY, k);
                    }
                    if let Some(e) = p.endpoint {
                        attr(b, WGPEER_A_ENDPOINT, &sockaddr(e));
                    }
                    if let Some(k) = p.keepalive {
                        attr(b, WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, &k.to_ne_bytes());
                    }
                    if p.replace_allowed_ips || !p.allowed_ips.is_empty() {
                        nest(b, WGPEER_A_ALLOWEDIPS, |b| {
                            for (ip, cidr) in p.allowed_ips {
                                nest(b, 0, |b| {
                                    let family = match ip {
                                        IpAddr::V4(_) => libc::AF_INET as u16,
                                        IpAddr::V6(_) => libc::AF_INET6 as u16,
                                    };
                                    attr(b, WGALLOWEDIP_A_FAMILY, &family.to_ne_bytes());
                                    attr(b, WGALLOWEDIP_A_IPADDR, &ip_bytes(ip));
                                    attr(b, WGALLOWEDIP_A_CIDR_MASK, &[*cidr]);
                                });
                            }
                        });
                    }
                });
            }
        });
        b
    }

    /// struct sockaddr_in / sockaddr_in6 (port and flow info big-endian).
    pub(super) fn sockaddr(a: SocketAddr) -> Vec<u8> {
        let mut b = Vec::with_capacity(28);
        match a {
            SocketAddr::V4(a) => {
                b.extend_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
                b.extend_from_slice(&a.port().to_be_bytes());
                b.extend_from_slice(&a.ip().octets());
                b.extend_from_slice(&[0; 8]);
            }
            SocketAddr::V6(a) => {
                b.extend_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
                b.extend_from_slice(&a.port().to_be_bytes());
                b.extend_from_slice(&a.flowinfo().to_be_bytes());
                b.extend_from_slice(&a.ip().octets());
                b.extend_from_slice(&a.scope_id().to_ne_bytes());
            }
        }
        b
    }

    fn sockaddr_from(v: &[u8]) -> Option<SocketAddr> {
        let family = i32::from(u16::from_ne_bytes([*v.first()?, *v.get(1)?]));
        let port = u16::from_be_bytes([v[2], *v.get(3)?]);
        if family == libc::AF_INET {
            let ip: [u8; 4] = v.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
        } else if family == libc::AF_INET6 {
            let ip: [u8; 16] = v.get(8..24)?.try_into().ok()?;
            let flow = u32::from_be_bytes(v.get(4..8)?.try_into().ok()?);
            let scope = u32_at(v, 24)?;
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                flow,
                scope,
            )))
        } else {
            None
        }
    }

    fn key(v: &[u8]) -> Option<[u8; 32]> {
        v.try_into().ok()
    }

    fn u64_at(v: &[u8], i: usize) -> Option<u64> {
        Some(u64::from_ne_bytes(v.get(i..i + 8)?.try_into().ok()?))
    }

    /// The device from the bodies of a GET_DEVICE dump. A device with many
    /// peers comes in several messages, and a peer's allowed IPs may go on
    /// in the next message under the same key.
    pub(super) fn parse_device(answers: &[Vec<u8>]) -> Option<Device> {
        let mut d = Device::default();
        for a in answers {
            for (kind, v) in attrs(a.get(4..)?)? {
                match kind {
                    WGDEVICE_A_PRIVATE_KEY => d.private_key = Some(Zeroizing::new(key(v)?)),
                    WGDEVICE_A_PUBLIC_KEY => d.public_key = Some(key(v)?),
                    WGDEVICE_A_LISTEN_PORT => {
                        d.listen_port = Some(u16::from_ne_bytes(v.try_into().ok()?));
                    }
                    WGDEVICE_A_PEERS => {
                        for (_, p) in attrs(v)? {
                            let p = parse_peer(p)?;
                            match d.peers.last_mut() {
                                Some(last) if last.key == p.key => {
                                    last.allowed_ips.extend(p.allowed_ips);
                                }
                                _ => d.peers.push(p),
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        Some(d)
    }

    fn parse_peer(b: &[u8]) -> Option<Peer> {
        let mut p = Peer::default();
        let mut has_key = false;
        for (kind, v) in attrs(b)? {
            match kind {
                WGPEER_A_PUBLIC_KEY => {
                    p.key = key(v)?;
                    has_key = true;
                }
                // All zero: none.
                WGPEER_A_PRESHARED_KEY => {
                    p.preshared_key = key(v)?
                        .iter()
                        .any(|&x| x != 0)
                        .then(|| Zeroizing::new(key(v).unwrap_or_default()));
                }
                WGPEER_A_ENDPOINT => p.endpoint = sockaddr_from(v),
                WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL => {
                    p.keepalive = Some(u16::from_ne_bytes(v.try_into().ok()?));
                }
                // struct __kernel_timespec: s64 seconds, s64 nanoseconds.
                WGPEER_A_LAST_HANDSHAKE_TIME => {
                    p.last_handshake = u64_at(v, 0).filter(|&s| s > 0 && s < i64::MAX as u64);
                }
                WGPEER_A_RX_BYTES => p.rx = u64_at(v, 0)?,
                WGPEER_A_TX_BYTES => p.tx = u64_at(v, 0)?,
                WGPEER_A_ALLOWEDIPS => {
                    for (_, ip) in attrs(v)? {
                        let (mut addr, mut cidr) = (None, None);
                        for (k, v) in attrs(ip)? {
                            match k {
                                WGALLOWEDIP_A_IPADDR => addr = ip_from(v),
                                WGALLOWEDIP_A_CIDR_MASK => cidr = v.first().copied(),
                                _ => {}
                            }
                        }
                        p.allowed_ips.push((addr?, cidr?));
                    }
                }
                _ => {}
            }
        }
        has_key.then_some(p)
    }
}

/// wireguard-go's cross-platform UAPI: `key=value` lines over a unix socket
/// (https://www.wireguard.com/xplatform/).
mod uapi {
    use super::*;

    fn connect(path: &str) -> io::Result<UnixStream> {
        let s = UnixStream::connect(path)?;
        // A hung daemon must not hang the agent.
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.set_write_timeout(Some(Duration::from_secs(5)))?;
        Ok(s)
    }

    pub(super) fn get(path: &str) -> io::Result<Device> {
        let mut s = connect(path)?;
        s.write_all(b"get=1\n\n")?;
        let mut r = BufReader::new(s);
        // The answer holds the private key: wiped when dropped.
        let mut lines = Vec::new();
        loop {
            let mut line = Zeroizing::new(String::new());
            if r.read_line(&mut line)? == 0 || *line == "\n" {
                break;
            }
            lines.push(line);
        }
        parse_get(lines.iter().map(|l| l.trim_end()))
    }

    /// The public key of `private`. wireguard-go reports only the private
    /// key and the agent reads the device every poll: the X25519 base-point
    /// multiplication (no precomputed table in this build) is done once per
    /// key, remembered under a hash of it rather than a copy.
    fn public_of(private: &[u8; 32]) -> [u8; 32] {
        use blake2::Digest;
        static LAST: std::sync::Mutex<Option<([u8; 32], [u8; 32])>> = std::sync::Mutex::new(None);
        let id: [u8; 32] = blake2::Blake2s256::digest(private).into();
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((h, public)) = *last
            && h == id
        {
            return public;
        }
        let public =
            x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*private)).to_bytes();
        *last = Some((id, public));
        public
    }

    fn bad(line: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("wireguard-go: unexpected line '{line}'"),
        )
    }

    fn hex_key(v: &str) -> Option<[u8; 32]> {
        let mut k = [0u8; 32];
        if v.len() != 64 {
            return None;
        }
        for (i, b) in k.iter_mut().enumerate() {
            *b = u8::from_str_radix(v.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(k)
    }

    fn hex(k: &[u8; 32]) -> String {
        k.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The answer to `get=1`, up to and including `errno=`.
    pub(super) fn parse_get<'a>(lines: impl Iterator<Item = &'a str>) -> io::Result<Device> {
        let mut d = Device::default();
        let mut peer: Option<Peer> = None;
        for line in lines {
            let (k, v) = line.split_once('=').ok_or_else(|| bad(line))?;
            let p = peer.as_mut();
            let ok = match (k, p) {
                ("errno", _) => {
                    let n: i32 = v.parse().map_err(|_| bad(line))?;
                    if n != 0 {
                        return Err(io::Error::from_raw_os_error(n));
                    }
                    Some(())
                }
                ("private_key", _) => hex_key(v).map(|k| {
                    d.public_key = Some(public_of(&k));
                    d.private_key = Some(Zeroizing::new(k));
                }),
                ("listen_port", _) => v.parse().ok().map(|p| d.listen_port = Some(p)),
                ("public_key", _) => hex_key(v).map(|key| {
                    d.peers.extend(peer.replace(Peer {
                        key,
                        ..Default::default()
                    }));
                }),
                ("preshared_key", Some(p)) => hex_key(v).map(|k| {
                    p.preshared_key = k.iter().any(|&x| x != 0).then(|| Zeroizing::new(k));
                }),
                ("endpoint", Some(p)) => v.parse().ok().map(|e| p.endpoint = Some(e)),
                ("persistent_keepalive_interval", Some(p)) => {
                    v.parse().ok().map(|k| p.keepalive = Some(k))
                }
                ("allowed_ip", Some(p)) => v.split_once('/').and_then(|(a, c)| {
                    p.allowed_ips.push((a.parse().ok()?, c.parse().ok()?));
                    Some(())
                }),
                ("last_handshake_time_sec", Some(p)) => v
                    .parse()
                    .ok()
                    .map(|s: u64| p.last_handshake = (s > 0).then_some(s)),
                ("rx_bytes", Some(p)) => v.parse().ok().map(|n| p.rx = n),
                ("tx_bytes", Some(p)) => v.parse().ok().map(|n| p.tx = n),
                (
                    "preshared_key"
                    | "endpoint"
                    | "persistent_keepalive_interval"
                    | "allowed_ip"
                    | "last_handshake_time_sec"
                    | "rx_bytes"
                    | "tx_bytes",
                    None,
                ) => None,
                // fwmark, protocol_version, last_handshake_time_nsec, and
                // whatever later versions add.
                _ => Some(()),
            };
            ok.ok_or_else(|| bad(line))?;
        }
        d.peers.extend(peer);
        Ok(d)
    }

    pub(super) fn set_request(peers: &[PeerUpdate]) -> String {
        let mut s = String::from("set=1\n");
        for p in peers {
            s += &format!("public_key={}\n", hex(&p.key));
            if p.remove {
                s += "remove=true\n";
            }
            if p.replace_allowed_ips {
                s += "replace_allowed_ips=true\n";
            }
            if let Some(k) = p.preshared_key {
                s += &format!("preshared_key={}\n", hex(k));
            }
            if let Some(e) = p.endpoint {
                s += &format!("endpoint={e}\n");
            }
            if let Some(k) = p.keepalive {
                s += &format!("persistent_keepalive_interval={k}\n");
            }
            for (ip, cidr) in p.allowed_ips {
                s += &format!("allowed_ip={ip}/{cidr}\n");
            }
        }
        s.push('\n');
        s
    }

    pub(super) fn set(path: &str, peers: &[PeerUpdate]) -> io::Result<()> {
        let mut s = connect(path)?;
        let req = Zeroizing::new(set_request(peers));
        s.write_all(req.as_bytes())?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line)?;
        match line
            .trim_end()
            .strip_prefix("errno=")
            .map(str::parse::<i32>)
        {
            Some(Ok(0)) => Ok(()),
            Some(Ok(n)) => Err(io::Error::from_raw_os_error(n)),
            _ => Err(bad(line.trim_end())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::genl::*;
    use super::*;
    use std::process::Command;
    use std::time::Instant;

    fn ne16(v: u16) -> [u8; 2] {
        v.to_ne_bytes()
    }

    /// An nlattr by hand: length and type in host order, value, padding.
    fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut b = ne16((4 + value.len()) as u16).to_vec();
        b.extend_from_slice(&ne16(kind));
        b.extend_from_slice(value);
        while b.len() % 4 != 0 {
            b.push(0);
        }
        b
    }

    fn nested(kind: u16, parts: &[Vec<u8>]) -> Vec<u8> {
        let inner = parts.concat();
        let mut b = ne16((4 + inner.len()) as u16).to_vec();
        b.extend_from_slice(&ne16(kind | 0x8000));
        b.extend(inner);
        b
    }

    fn v4(a: &str) -> SocketAddr {
        a.parse().unwrap()
    }

    #[test]
    fn set_endpoint_request_is_laid_out_as_the_kernel_reads_it() {
        // <linux/wireguard.h>, written out independently of the encoder:
        // genlmsghdr {cmd SET_DEVICE, version 1}, WGDEVICE_A_IFNAME "wg0\0",
        // WGDEVICE_A_PEERS { { PUBLIC_KEY, ENDPOINT sockaddr_in } }.
        let update = PeerUpdate {
            key: [7; 32],
            endpoint: Some(v4("198.51.100.2:51820")),
            ..Default::default()
        };
        let mut sin = ne16(libc::AF_INET as u16).to_vec();
        sin.extend_from_slice(&51820u16.to_be_bytes());
        sin.extend_from_slice(&[198, 51, 100, 2, 0, 0, 0, 0, 0, 0, 0, 0]);
        let mut want = vec![1, 1, 0, 0];
        want.extend(nla(2, b"wg0\0"));
        want.extend(nested(8, &[nested(0, &[nla(1, &[7; 32]), nla(4, &sin)])]));
        assert_eq!(set_request("wg0", &[update]), want);
    }

    fn sample_peer() -> Peer {
        Peer {
            key: [9; 32],
            preshared_key: Some(Zeroizing::new([5; 32])),
            endpoint: Some("[2001:db8::2]:51820".parse().unwrap()),
            keepalive: Some(25),
            allowed_ips: vec![
                ("2001:db8:100::2".parse().unwrap(), 128),
                ("100.64.9.0".parse().unwrap(), 24),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn rearm_removes_and_re_adds_the_peer_with_its_configuration() {
        let peer = sample_peer();
        let new = v4("203.0.113.7:4000");
        let body = set_request("wg1", &rearm_updates(&peer, Some(new)));
        let mut sin = ne16(libc::AF_INET as u16).to_vec();
        sin.extend_from_slice(&4000u16.to_be_bytes());
        sin.extend_from_slice(&[203, 0, 113, 7, 0, 0, 0, 0, 0, 0, 0, 0]);
        let ip = |fam: i32, a: &[u8], cidr: u8| {
            nested(0, &[nla(1, &ne16(fam as u16)), nla(2, a), nla(3, &[cidr])])
        };
        let six: Ipv6Addr = "2001:db8:100::2".parse().unwrap();
        let mut want = vec![1, 1, 0, 0];
        want.extend(nla(2, b"wg1\0"));
        want.extend(nested(
            8,
            &[
                nested(0, &[nla(1, &[9; 32]), nla(3, &1u32.to_ne_bytes())]),
                nested(
                    0,
                    &[
                        nla(1, &[9; 32]),
                        nla(3, &2u32.to_ne_bytes()),
                        nla(2, &[5; 32]),
                        nla(4, &sin),
                        nla(5, &25u16.to_ne_bytes()),
                        nested(
                            9,
                            &[
                                ip(libc::AF_INET6, &six.octets(), 128),
                                ip(libc::AF_INET, &[100, 64, 9, 0], 24),
                            ],
                        ),
                    ],
                ),
            ],
        ));
        assert_eq!(body, want);
        // Without a new endpoint the old one is kept.
        let keep = rearm_updates(&peer, None);
        assert_eq!(keep[1].endpoint, peer.endpoint);
    }

    #[test]
    fn a_kernel_dump_becomes_one_device_with_merged_peers() {
        let mut sin6 = ne16(libc::AF_INET6 as u16).to_vec();
        sin6.extend_from_slice(&51820u16.to_be_bytes());
        sin6.extend_from_slice(&0u32.to_be_bytes());
        sin6.extend_from_slice(&"fe80::1".parse::<Ipv6Addr>().unwrap().octets());
        sin6.extend_from_slice(&3u32.to_ne_bytes());
        let mut ts = 1_700_000_000i64.to_ne_bytes().to_vec();
        ts.extend_from_slice(&5i64.to_ne_bytes());
        let aip = |a: [u8; 4], c: u8| {
            nested(
                0,
                &[
                    nla(1, &ne16(libc::AF_INET as u16)),
                    nla(2, &a),
                    nla(3, &[c]),
                ],
            )
        };
        let dev = |peers: Vec<Vec<u8>>| {
            let mut b = vec![0, 1, 0, 0];
            b.extend(nla(1, &4u32.to_ne_bytes()));
            b.extend(nla(2, b"wg0\0"));
            b.extend(nla(3, &[1; 32]));
            b.extend(nla(4, &[2; 32]));
            b.extend(nla(6, &51820u16.to_ne_bytes()));
            b.extend(nested(8, &peers));
            b
        };
        let first = dev(vec![nested(
            0,
            &[
                nla(1, &[9; 32]),
                nla(2, &[0; 32]),
                nla(4, &sin6),
                nla(5, &0u16.to_ne_bytes()),
                nla(6, &ts),
                nla(7, &100u64.to_ne_bytes()),
                nla(8, &200u64.to_ne_bytes()),
                nested(9, &[aip([100, 64, 1, 0], 24)]),
            ],
        )]);
        // The kernel continues the same peer's allowed IPs in a new message,
        // then a second peer that never shook hands.
        let second = dev(vec![
            nested(
                0,
                &[nla(1, &[9; 32]), nested(9, &[aip([100, 64, 2, 0], 24)])],
            ),
            nested(0, &[nla(1, &[8; 32]), nla(6, &[0; 16]), nested(9, &[])]),
        ]);
        let d = parse_device(&[first, second]).unwrap();
        assert_eq!(d.listen_port, Some(51820));
        assert_eq!(d.private_key.as_deref(), Some(&[1; 32]));
        assert_eq!(d.public_key, Some([2; 32]));
        assert_eq!(d.peers.len(), 2);
        let p = &d.peers[0];
        assert_eq!(p.key, [9; 32]);
        assert!(p.preshared_key.is_none(), "all-zero preshared key is none");
        assert_eq!(p.endpoint, Some("[fe80::1%3]:51820".parse().unwrap()));
        assert_eq!(p.last_handshake, Some(1_700_000_000));
        assert_eq!((p.rx, p.tx), (100, 200));
        assert_eq!(
            p.allowed_ips,
            [
                ("100.64.1.0".parse().unwrap(), 24),
                ("100.64.2.0".parse().unwrap(), 24)
            ]
        );
        assert_eq!(d.peers[1].last_handshake, None);
        assert!(d.peers[1].allowed_ips.is_empty());
        // A peer without a key or a malformed nest spoils the answer.
        let broken = dev(vec![nested(0, &[nla(7, &1u64.to_ne_bytes())])]);
        assert!(parse_device(&[broken]).is_none());
        let mut cut = dev(vec![]);
        cut.extend_from_slice(&[40, 0, 8, 0]);
        assert!(parse_device(&[cut]).is_none());
    }

    #[test]
    fn wireguard_go_answers_parse_like_the_kernel_ones() {
        // The example of https://www.wireguard.com/xplatform/ (trimmed).
        let text = "private_key=e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a
listen_port=12912
public_key=b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33
preshared_key=188515093e952f5f22e865cef3012e72f8b5f0b598ac0309d5dacce3b70fcf52
allowed_ip=192.168.4.4/32
endpoint=[abcd:23::33%2]:51820
last_handshake_time_sec=1
last_handshake_time_nsec=2
public_key=58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceb7e19321376
tx_bytes=38333
rx_bytes=2224
allowed_ip=192.168.4.6/32
persistent_keepalive_interval=111
endpoint=182.122.22.19:3233
last_handshake_time_sec=0
protocol_version=1
errno=0";
        let d = uapi::parse_get(text.lines()).unwrap();
        assert_eq!(d.listen_port, Some(12912));
        let private = d.private_key.as_deref().copied().unwrap();
        let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(private));
        assert_eq!(d.public_key, Some(public.to_bytes()));
        assert_eq!(d.peers.len(), 2);
        assert_eq!(d.peers[0].key[..2], [0xb8, 0x59]);
        assert!(d.peers[0].preshared_key.is_some());
        assert_eq!(d.peers[0].last_handshake, Some(1));
        assert_eq!(
            d.peers[0].endpoint,
            Some("[abcd:23::33%2]:51820".parse().unwrap())
        );
        let p = &d.peers[1];
        assert_eq!(p.endpoint, Some(v4("182.122.22.19:3233")));
        assert_eq!(p.keepalive, Some(111));
        assert_eq!((p.rx, p.tx), (2224, 38333));
        assert_eq!(p.last_handshake, None);
        assert_eq!(p.allowed_ips, [("192.168.4.6".parse().unwrap(), 32)]);
        let err = uapi::parse_get(["errno=19"].into_iter()).err().unwrap();
        assert_eq!(err.raw_os_error(), Some(libc::ENODEV));
        assert!(
            uapi::parse_get(["endpoint=1.2.3.4:5"].into_iter()).is_err(),
            "no peer yet"
        );
        assert!(uapi::parse_get(["private_key=zz"].into_iter()).is_err());
    }

    #[test]
    fn the_public_key_follows_a_changed_private_key() {
        // Computed once per key (cached): a new key must not get the old answer.
        for seed in [1u8, 2, 1, 3, 3] {
            let private = [seed; 32];
            let line = format!(
                "private_key={}",
                private
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            );
            let d = uapi::parse_get([line.as_str(), "errno=0"].into_iter()).unwrap();
            let want = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(private))
                .to_bytes();
            assert_eq!(d.public_key, Some(want), "seed {seed}");
        }
    }

    #[test]
    fn wireguard_go_set_requests() {
        let peer = sample_peer();
        let got = uapi::set_request(&rearm_updates(&peer, None));
        let k9 = "09".repeat(32);
        let k5 = "05".repeat(32);
        assert_eq!(
            got,
            format!(
                "set=1\npublic_key={k9}\nremove=true\npublic_key={k9}\nreplace_allowed_ips=true\n\
                 preshared_key={k5}\nendpoint=[2001:db8::2]:51820\npersistent_keepalive_interval=25\n\
                 allowed_ip=2001:db8:100::2/128\nallowed_ip=100.64.9.0/24\n\n"
            )
        );
        let one = PeerUpdate {
            key: [9; 32],
            endpoint: Some(v4("192.0.2.1:1")),
            ..Default::default()
        };
        assert_eq!(
            uapi::set_request(&[one]),
            format!("set=1\npublic_key={k9}\nendpoint=192.0.2.1:1\n\n")
        );
    }

    #[test]
    fn interface_names_are_checked() {
        for ok in ["wg0", "wan.2", "a-b_c", "fifteen_chars_x"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "sixteen_chars_xx", "a/b", "a b", "a\0"] {
            let e = check_name(bad).unwrap_err();
            assert!(
                e.to_string().contains("not a valid interface name"),
                "{bad}"
            );
        }
    }

    // ---- against a live wireguard-go (root; network namespace) ----------

    fn run(cmd: &mut Command) -> String {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A namespace with a wireguard-go device; both removed on drop.
    struct LiveDevice {
        ns: String,
        dev: String,
        child: std::process::Child,
    }

    impl LiveDevice {
        fn start() -> LiveDevice {
            let pid = std::process::id();
            let ns = format!("wgr-wgt-{pid}");
            let dev = format!("wgt{}", pid % 100_000);
            run(Command::new("ip").args(["netns", "add", &ns]));
            let child = Command::new("ip")
                .args(["netns", "exec", &ns, "wireguard-go", &dev])
                .env("WG_PROCESS_FOREGROUND", "1")
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let live = LiveDevice { ns, dev, child };
            let deadline = Instant::now() + Duration::from_secs(10);
            while userspace_socket(&live.dev).is_none() {
                assert!(Instant::now() < deadline, "wireguard-go did not start");
                std::thread::sleep(Duration::from_millis(50));
            }
            live
        }

        fn wg(&self, args: &[&str]) -> String {
            let mut all = vec!["netns", "exec", &self.ns, "wg"];
            all.extend_from_slice(args);
            run(Command::new("ip").args(&all))
        }
    }

    impl Drop for LiveDevice {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            if let Some(s) = userspace_socket(&self.dev) {
                let _ = std::fs::remove_file(s);
            }
            let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        }
    }

    #[test]
    fn root_only_live_wireguard_go_read_set_endpoint_and_rearm() {
        if !crate::testns::is_root()
            || Command::new("wireguard-go")
                .arg("--version")
                .output()
                .is_err()
        {
            eprintln!("skip: needs root and wireguard-go");
            return;
        }
        let live = LiveDevice::start();
        let dir = std::env::temp_dir().join(format!("wgr-wgt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key_file = |name: &str, k: &[u8; 32]| {
            let p = dir.join(name);
            std::fs::write(&p, base64::encode(k)).unwrap();
            p.to_str().unwrap().to_string()
        };
        // Clamped already, as WireGuard stores private keys.
        let mut private = [0x41u8; 32];
        private[0] = 0x40;
        let peer = PublicKey([0x22; 32]);
        let other = PublicKey([0x33; 32]);
        let (pk, psk) = (key_file("priv", &private), key_file("psk", &[0x55; 32]));
        let peer_b64 = base64::encode(peer.0);
        live.wg(&[
            "set",
            &live.dev,
            "private-key",
            &pk,
            "listen-port",
            "51999",
            "peer",
            &peer_b64,
            "preshared-key",
            &psk,
            "endpoint",
            "198.51.100.2:51820",
            "persistent-keepalive",
            "25",
            "allowed-ips",
            "2001:db8:100::2/128,100.64.9.0/24",
        ]);
        std::fs::remove_dir_all(&dir).unwrap();

        // Auto: the kernel has no WireGuard family here (or no such
        // device), so the userspace socket answers.
        let v = System
            .read(&live.dev, BackendChoice::Auto)
            .unwrap()
            .unwrap();
        assert_eq!(v.backend, "userspace");
        assert_eq!(v.listen_port, Some(51999));
        assert_eq!(v.private_key.as_deref(), Some(&private));
        let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(private));
        assert_eq!(v.public_key, Some(PublicKey(public.to_bytes())));
        assert_eq!(v.peers.len(), 1);
        assert_eq!(v.peers[0].key, peer);
        assert_eq!(v.peers[0].endpoint, Some(v4("198.51.100.2:51820")));
        assert_eq!(v.peers[0].last_handshake, None);
        let mut nets: Vec<String> = v.allowed_ips.iter().map(|n| n.to_string()).collect();
        nets.sort();
        assert_eq!(nets, ["100.64.9.0/24", "2001:db8:100::2/128"]);

        let dump = |live: &LiveDevice| live.wg(&["show", &live.dev, "dump"]);
        System
            .set_endpoint(
                &live.dev,
                BackendChoice::Userspace,
                &peer,
                v4("203.0.113.5:40000"),
            )
            .unwrap();
        let d = dump(&live);
        assert!(d.contains("\t203.0.113.5:40000\t"), "{d}");

        System
            .rearm(
                &live.dev,
                BackendChoice::Auto,
                &peer,
                Some(v4("203.0.113.6:40001")),
            )
            .unwrap();
        // Same peer, same configuration, new endpoint.
        let line: Vec<String> = dump(&live)
            .lines()
            .nth(1)
            .unwrap()
            .split('\t')
            .map(String::from)
            .collect();
        assert_eq!(line[0], peer_b64);
        assert_eq!(line[1], base64::encode([0x55; 32]), "preshared key kept");
        assert_eq!(line[2], "203.0.113.6:40001");
        let mut ips: Vec<&str> = line[3].split(',').collect();
        ips.sort();
        assert_eq!(ips, ["100.64.9.0/24", "2001:db8:100::2/128"]);
        assert_eq!(line[7], "25", "keepalive kept");

        // Writes never add peers.
        let e = System
            .set_endpoint(&live.dev, BackendChoice::Auto, &other, v4("192.0.2.1:1"))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        let e = System
            .rearm(&live.dev, BackendChoice::Auto, &other, None)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        assert_eq!(dump(&live).lines().count(), 2, "still one peer");

        // An absent interface is no error.
        assert!(
            System
                .read("wgr-absent0", BackendChoice::Auto)
                .unwrap()
                .is_none()
        );
        assert!(System.read("bad/name", BackendChoice::Auto).is_err());
    }
}
