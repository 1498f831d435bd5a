//! WireGuard adapter over wireguard-control: kernel generic netlink
//! (OpenWrt) or the userspace UAPI socket (wireguard-go), whichever holds the
//! interface.
//!
//! Two traps of wireguard-control shape this file: `DeviceUpdate::apply`
//! creates the interface when it is missing (kernel) or starts wireguard-go
//! (userspace), and a peer update for an unknown key adds that peer. So every
//! write first reads the device and checks that the interface, its socket and
//! the peer exist. What the crate lacks is in two small extension traits on
//! its own types, not a fork:
//! - [`DeviceExt`]: a kernel dump that continues a peer with many allowed IPs
//!   in the next message reads as that peer twice; merged here.
//! - [`PeerNla`]: kernel writes send the SET_DEVICE request alone, built from
//!   the crate's own netlink-packet-wireguard types and sent through its
//!   netlink-request, because `DeviceUpdate::apply` first sends an
//!   RTM_NEWLINK to create the interface, at every write: that would recreate
//!   an interface deleted since the read, and it links all of
//!   netlink-packet-route's message codec (about 390 KB of a MIPS binary).

use std::io;
use std::net::SocketAddr;
use std::time::UNIX_EPOCH;

use netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST};
use netlink_packet_generic::GenlMessage;
use netlink_packet_wireguard::constants::{
    AF_INET, AF_INET6, WGPEER_F_REMOVE_ME, WGPEER_F_REPLACE_ALLOWEDIPS,
};
use netlink_packet_wireguard::nlas::{
    WgAllowedIp, WgAllowedIpAttrs, WgDeviceAttrs, WgPeer, WgPeerAttrs,
};
use netlink_packet_wireguard::{Wireguard, WireguardCmd};
use wireguard_control::{
    Backend, Device, DeviceUpdate, InterfaceName, Key, PeerConfig, PeerConfigBuilder, PeerInfo,
};
use zeroize::{Zeroize, Zeroizing};

use crate::core::PublicKey;
use crate::core::hub::PeerSnapshot;
use crate::core::net::IpNet;

pub use crate::config::BackendChoice;

mod conn;
#[cfg(any(test, feature = "test-support"))]
pub mod fake;

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

/// The WireGuard operations the daemon needs: [`System`] is the real one,
/// [`fake::FakeWg`] the tests'.
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
        allowed_ips: &[(std::net::IpAddr, u8)],
    ) -> io::Result<()> {
        let _ = (ifname, choice, key, allowed_ips);
        Err(io::Error::other("adding peers is not supported here"))
    }
    /// The caller watches rtnetlink link events and calls
    /// [`WireGuard::links_changed`] for them before its next read: what a
    /// read keeps open (wireguard-go's connection) is then trusted until a
    /// link changes, instead of being checked at every read.
    fn watch_links(&self) {}
    /// A link appeared, went or changed (wireguard-go starts and stops with
    /// its TUN device, so a new wireguard-go always comes with one).
    fn links_changed(&self) {}
}

/// The real thing.
pub struct System;

/// What wgroam needs of a [`Device`] beyond what wireguard-control offers.
pub trait DeviceExt {
    /// The peers, each once: the kernel continues a peer whose allowed IPs
    /// do not fit one netlink message in the next message of the dump, and
    /// wireguard-control lists each part as a peer of its own.
    fn merged_peers(&self) -> Vec<PeerInfo>;
}

impl DeviceExt for Device {
    fn merged_peers(&self) -> Vec<PeerInfo> {
        merge_peers(&self.peers)
    }
}

impl DeviceExt for conn::Dev {
    fn merged_peers(&self) -> Vec<PeerInfo> {
        merge_peers(&self.peers)
    }
}

fn merge_peers(parts: &[PeerInfo]) -> Vec<PeerInfo> {
    let mut out: Vec<PeerInfo> = Vec::with_capacity(parts.len());
    for p in parts {
        match out
            .iter_mut()
            .find(|q| q.config.public_key == p.config.public_key)
        {
            None => out.push(p.clone()),
            Some(q) => {
                let (c, qc) = (&p.config, &mut q.config);
                qc.preshared_key = qc.preshared_key.take().or_else(|| c.preshared_key.clone());
                qc.endpoint = qc.endpoint.or(c.endpoint);
                qc.persistent_keepalive_interval = qc
                    .persistent_keepalive_interval
                    .or(c.persistent_keepalive_interval);
                qc.allowed_ips.extend(c.allowed_ips.iter().cloned());
                let s = &mut q.stats;
                s.last_handshake_time = s.last_handshake_time.or(p.stats.last_handshake_time);
                s.rx_bytes = s.rx_bytes.max(p.stats.rx_bytes);
                s.tx_bytes = s.tx_bytes.max(p.stats.tx_bytes);
            }
        }
    }
    out
}

/// A peer's part of a kernel SET_DEVICE request, from wireguard-control's
/// own [`PeerConfig`] (what its `PeerConfigBuilder` would send, which it
/// keeps private).
pub trait PeerNla {
    /// The peer with its configuration and `flags` (`WGPEER_F_*`).
    fn to_nla(&self, flags: u32) -> WgPeer;
}

impl PeerNla for PeerConfig {
    fn to_nla(&self, flags: u32) -> WgPeer {
        let mut attrs = vec![WgPeerAttrs::PublicKey(self.public_key.0)];
        if let Some(e) = self.endpoint {
            attrs.push(WgPeerAttrs::Endpoint(e));
        }
        if let Some(k) = &self.preshared_key {
            attrs.push(WgPeerAttrs::PresharedKey(k.0));
        }
        if let Some(i) = self.persistent_keepalive_interval {
            attrs.push(WgPeerAttrs::PersistentKeepalive(i));
        }
        if !self.allowed_ips.is_empty() {
            let ips = self.allowed_ips.iter().map(|a| {
                WgAllowedIp(vec![
                    WgAllowedIpAttrs::Family(if a.address.is_ipv4() {
                        AF_INET
                    } else {
                        AF_INET6
                    }),
                    WgAllowedIpAttrs::IpAddr(a.address),
                    WgAllowedIpAttrs::Cidr(a.cidr),
                ])
            });
            attrs.push(WgPeerAttrs::AllowedIps(ips.collect()));
        }
        if flags != 0 {
            attrs.push(WgPeerAttrs::Flags(flags));
        }
        WgPeer(attrs)
    }
}

/// The kernel SET_DEVICE request for `peers` of `ifname`, nothing else.
fn kernel_set_request(ifname: &str, peers: Vec<WgPeer>) -> GenlMessage<Wireguard> {
    GenlMessage::from_payload(Wireguard {
        cmd: WireguardCmd::SetDevice,
        nlas: vec![
            WgDeviceAttrs::IfName(ifname.to_string()),
            WgDeviceAttrs::Peers(peers),
        ],
    })
}

/// The update for one peer: only its key and new endpoint.
fn endpoint_update(key: &PublicKey, endpoint: SocketAddr) -> PeerConfig {
    let mut p = PeerInfo::from_public_key(Key(key.0)).config;
    p.endpoint = Some(endpoint);
    p
}

/// Remove the peer, then add it again with its own configuration (and the
/// new endpoint, if given), in one request.
fn rearm_request(
    ifname: &str,
    peer: &PeerConfig,
    endpoint: Option<SocketAddr>,
) -> GenlMessage<Wireguard> {
    let mut again = peer.clone();
    again.endpoint = endpoint.or(peer.endpoint);
    let gone = PeerInfo::from_public_key(peer.public_key.clone()).config;
    kernel_set_request(
        ifname,
        vec![
            gone.to_nla(WGPEER_F_REMOVE_ME),
            again.to_nla(WGPEER_F_REPLACE_ALLOWEDIPS),
        ],
    )
}

fn kernel_send(request: GenlMessage<Wireguard>) -> io::Result<()> {
    let mut conns = conns();
    let r = conns
        .genl()
        .and_then(|g| g.request(request, NLM_F_REQUEST | NLM_F_ACK));
    if r.is_err() {
        conns.forget_genl();
    }
    r.map(drop)
}

fn iface_name(ifname: &str) -> io::Result<InterfaceName> {
    ifname.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("'{ifname}' is not a valid interface name"),
        )
    })
}

fn backends(choice: BackendChoice) -> &'static [Backend] {
    match choice {
        BackendChoice::Auto => &[Backend::Kernel, Backend::Userspace],
        BackendChoice::Kernel => &[Backend::Kernel],
        BackendChoice::Userspace => &[Backend::Userspace],
    }
}

/// wireguard-go's UAPI socket for `ifname`, where wireguard-control looks
/// for it, if one exists (without it, `apply` would start wireguard-go).
fn userspace_socket(ifname: &str) -> Option<String> {
    Some(socket_path(ifname)).filter(|p| std::path::Path::new(p).exists())
}

fn socket_path(ifname: &str) -> String {
    format!("/var/run/wireguard/{ifname}.sock")
}

/// The connections reads keep open between polls (see [`conn`]).
static CONNS: std::sync::Mutex<conn::Conns> = std::sync::Mutex::new(conn::Conns::new());

fn conns() -> std::sync::MutexGuard<'static, conn::Conns> {
    CONNS.lock().unwrap_or_else(|e| e.into_inner())
}

fn get(ifname: &str, choice: BackendChoice) -> io::Result<Option<conn::Dev>> {
    iface_name(ifname)?;
    let mut order = backends(choice).to_vec();
    let mut conns = conns();
    if let Some(b) = conns.answered(ifname) {
        order.sort_by_key(|x| *x != b);
    }
    let mut last = None;
    for b in order {
        let got = match b {
            Backend::Kernel => conns.kernel(ifname),
            _ => match conns.userspace(ifname, &socket_path(ifname)) {
                // No wireguard-go socket: not this backend.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                r => r,
            },
        };
        match got {
            Ok(d) => {
                conns.set_answered(ifname, b);
                return Ok(Some(d));
            }
            Err(e) => last = Some(e),
        }
    }
    match last {
        // No such device (ENODEV), no WireGuard module (ENOENT for the
        // family) or no socket: the interface is simply absent.
        Some(e)
            if e.raw_os_error() == Some(libc::ENODEV)
                || e.raw_os_error() == Some(libc::ENOENT)
                || e.kind() == io::ErrorKind::NotFound =>
        {
            Ok(None)
        }
        Some(e) => Err(e),
        None => Ok(None),
    }
}

/// Applies `update` to a wireguard-go interface that was just read; never
/// starts wireguard-go to do it. (Kernel writes: [`PeerNla`].)
fn apply_userspace(ifname: &str, update: DeviceUpdate) -> io::Result<()> {
    if userspace_socket(ifname).is_none() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{ifname}: wireguard-go socket is gone"),
        ));
    }
    // A constant backend: the kernel arm of `apply` is never linked.
    update.apply(&iface_name(ifname)?, Backend::Userspace)
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
    fn watch_links(&self) {
        conns().links_watched = true;
    }

    fn links_changed(&self) {
        conns().forget_uapi();
    }

    fn read(&self, ifname: &str, choice: BackendChoice) -> io::Result<Option<DeviceView>> {
        let Some(mut d) = get(ifname, choice)? else {
            return Ok(None);
        };
        let peers = d.merged_peers();
        // wireguard-control's `Key` is plain bytes: keep the private key in
        // a `Zeroizing` and wipe the crate's copy (its netlink and UAPI
        // buffers are dropped unwiped).
        let private_key = d.private_key.as_ref().map(|k| Zeroizing::new(k.0));
        if let Some(k) = d.private_key.as_mut() {
            k.0.zeroize();
        }
        Ok(Some(DeviceView {
            backend: match d.backend {
                Backend::Kernel => "kernel",
                _ => "userspace",
            },
            listen_port: d.listen_port,
            public_key: d.public_key.as_ref().map(|k| PublicKey(k.0)),
            private_key,
            peers: peers
                .iter()
                .map(|p| PeerSnapshot {
                    key: PublicKey(p.config.public_key.0),
                    endpoint: p.config.endpoint,
                    last_handshake: p
                        .stats
                        .last_handshake_time
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map(|d| d.as_secs())
                        .filter(|&s| s > 0),
                    rx: p.stats.rx_bytes,
                    tx: p.stats.tx_bytes,
                })
                .collect(),
            allowed_ips: peers
                .iter()
                .flat_map(|p| &p.config.allowed_ips)
                .filter_map(|a| IpNet::truncate(a.address, a.cidr))
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
        let d = get(ifname, choice)?.ok_or_else(|| no_interface(ifname))?;
        if !d.peers.iter().any(|p| p.config.public_key.0 == key.0) {
            return Err(not_configured(ifname, key));
        }
        if d.backend == Backend::Kernel {
            let peer = endpoint_update(key, endpoint).to_nla(0);
            return kernel_send(kernel_set_request(ifname, vec![peer]));
        }
        let update = DeviceUpdate::new()
            .add_peer(PeerConfigBuilder::new(&Key(key.0)).set_endpoint(endpoint));
        apply_userspace(ifname, update)
    }

    fn rearm(
        &self,
        ifname: &str,
        choice: BackendChoice,
        key: &PublicKey,
        endpoint: Option<SocketAddr>,
    ) -> io::Result<()> {
        let d = get(ifname, choice)?.ok_or_else(|| no_interface(ifname))?;
        let peers = d.merged_peers();
        let Some(peer) = peers.iter().find(|p| p.config.public_key.0 == key.0) else {
            return Err(not_configured(ifname, key));
        };
        if d.backend == Backend::Kernel {
            return kernel_send(rearm_request(ifname, &peer.config, endpoint));
        }
        // Remove, then add again with its own configuration (and the new
        // endpoint, if given), in one request.
        let mut again =
            PeerConfigBuilder::from_peer_config(peer.config.clone()).replace_allowed_ips();
        if let Some(e) = endpoint.or(peer.config.endpoint) {
            again = again.set_endpoint(e);
        }
        let update = DeviceUpdate::new()
            .add_peer(PeerConfigBuilder::new(&Key(key.0)).remove())
            .add_peer(again);
        apply_userspace(ifname, update)
    }

    fn add_peer(
        &self,
        ifname: &str,
        choice: BackendChoice,
        key: &PublicKey,
        allowed_ips: &[(std::net::IpAddr, u8)],
    ) -> io::Result<()> {
        let d = get(ifname, choice)?.ok_or_else(|| no_interface(ifname))?;
        let mut b = PeerConfigBuilder::new(&Key(key.0)).replace_allowed_ips();
        for (a, l) in allowed_ips {
            b = b.add_allowed_ip(*a, *l);
        }
        if d.backend == Backend::Kernel {
            let peer = b.into_peer_config().to_nla(WGPEER_F_REPLACE_ALLOWEDIPS);
            return kernel_send(kernel_set_request(ifname, vec![peer]));
        }
        apply_userspace(ifname, DeviceUpdate::new().add_peer(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::{Duration, Instant};

    fn v4(a: &str) -> SocketAddr {
        a.parse().unwrap()
    }

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

    /// The genl payload (genlmsghdr + attributes) a request puts on the wire.
    fn body(request: GenlMessage<Wireguard>) -> Vec<u8> {
        use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
        let mut msg = NetlinkMessage::from(request);
        msg.payload = match msg.payload {
            NetlinkPayload::InnerMessage(mut g) => {
                g.set_resolved_family_id(0x1234);
                NetlinkPayload::InnerMessage(g)
            }
            p => p,
        };
        msg.finalize();
        let mut buf = vec![0; msg.buffer_len()];
        msg.serialize(&mut buf);
        assert_eq!(u16::from_ne_bytes([buf[4], buf[5]]), 0x1234, "family id");
        buf[16..].to_vec()
    }

    #[test]
    fn set_endpoint_request_is_laid_out_as_the_kernel_reads_it() {
        // <linux/wireguard.h>, written out independently of the encoder:
        // genlmsghdr {cmd SET_DEVICE, version 1}, WGDEVICE_A_IFNAME "wg0\0",
        // WGDEVICE_A_PEERS { { PUBLIC_KEY, ENDPOINT sockaddr_in } }.
        let peer = endpoint_update(&PublicKey([7; 32]), v4("198.51.100.2:51820")).to_nla(0);
        let mut sin = ne16(libc::AF_INET as u16).to_vec();
        sin.extend_from_slice(&51820u16.to_be_bytes());
        sin.extend_from_slice(&[198, 51, 100, 2, 0, 0, 0, 0, 0, 0, 0, 0]);
        let mut want = vec![1, 1, 0, 0];
        want.extend(nla(2, b"wg0\0"));
        want.extend(nested(8, &[nested(0, &[nla(1, &[7; 32]), nla(4, &sin)])]));
        assert_eq!(body(kernel_set_request("wg0", vec![peer])), want);
    }

    #[test]
    fn rearm_removes_and_re_adds_the_peer_with_its_configuration() {
        let mut peer = PeerInfo::from_public_key(Key([9; 32])).config;
        peer.preshared_key = Some(Key([5; 32]));
        peer.endpoint = Some("[2001:db8::2]:51820".parse().unwrap());
        peer.persistent_keepalive_interval = Some(25);
        peer.allowed_ips = vec![
            "2001:db8:100::2/128".parse().unwrap(),
            "100.64.9.0/24".parse().unwrap(),
        ];
        let new = v4("203.0.113.7:4000");
        let mut sin = ne16(libc::AF_INET as u16).to_vec();
        sin.extend_from_slice(&4000u16.to_be_bytes());
        sin.extend_from_slice(&[203, 0, 113, 7, 0, 0, 0, 0, 0, 0, 0, 0]);
        let ip = |fam: i32, a: &[u8], cidr: u8| {
            nested(0, &[nla(1, &ne16(fam as u16)), nla(2, a), nla(3, &[cidr])])
        };
        let six: std::net::Ipv6Addr = "2001:db8:100::2".parse().unwrap();
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
                        nla(4, &sin),
                        nla(2, &[5; 32]),
                        nla(5, &25u16.to_ne_bytes()),
                        nested(
                            9,
                            &[
                                ip(libc::AF_INET6, &six.octets(), 128),
                                ip(libc::AF_INET, &[100, 64, 9, 0], 24),
                            ],
                        ),
                        nla(3, &2u32.to_ne_bytes()),
                    ],
                ),
            ],
        ));
        assert_eq!(body(rearm_request("wg1", &peer, Some(new))), want);
        // Without a new endpoint the old one is kept.
        let keep = body(rearm_request("wg1", &peer, None));
        let mut sin6 = ne16(libc::AF_INET6 as u16).to_vec();
        sin6.extend_from_slice(&51820u16.to_be_bytes());
        sin6.extend_from_slice(&[0; 4]);
        sin6.extend_from_slice(
            &"2001:db8::2"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        sin6.extend_from_slice(&[0; 4]);
        assert!(keep.windows(sin6.len()).any(|w| w == sin6), "{keep:?}");
    }

    #[test]
    fn a_peer_continued_in_the_next_dump_message_is_one_peer() {
        let part = |key: u8, ips: &[&str]| {
            let mut p = PeerInfo::from_public_key(Key([key; 32]));
            p.config.allowed_ips = ips.iter().map(|s| s.parse().unwrap()).collect();
            p
        };
        let mut first = part(1, &["10.0.0.1/32", "10.0.0.2/32"]);
        first.config.endpoint = Some(v4("192.0.2.1:51820"));
        first.config.persistent_keepalive_interval = Some(25);
        first.config.preshared_key = Some(Key([9; 32]));
        first.stats.rx_bytes = 7;
        first.stats.last_handshake_time = Some(UNIX_EPOCH + Duration::from_secs(100));
        // What the kernel sends in the next message: the key and the rest of
        // the allowed IPs, nothing else.
        let rest = part(1, &["10.0.0.3/32"]);
        let other = part(2, &["10.0.1.0/24"]);
        let merged = merge_peers(&[first.clone(), other.clone(), rest]);
        assert_eq!(merged.len(), 2);
        let mut want = first;
        want.config.allowed_ips.push("10.0.0.3/32".parse().unwrap());
        assert_eq!(merged[0], want);
        assert_eq!(merged[1], other);
    }

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
        if !crate::os::testns::is_root()
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
        // The connection stays open for the next read, which gives the same.
        assert!(conns().has_uapi(&live.dev));
        let again = System
            .read(&live.dev, BackendChoice::Auto)
            .unwrap()
            .unwrap();
        assert_eq!(again.peers, v.peers);
        assert_eq!(again.public_key, v.public_key);

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

        behaves_like_the_adapter(&System, &live.dev, peer);
    }

    /// What the real adapter does and the fake must do too, seen through the
    /// trait only: `ifname` holds `peer` with allowed IPs 100.64.9.0/24 and
    /// 2001:db8:100::2/128, and no peer `[0x33; 32]` or `[0x44; 32]`. Run on
    /// a live wireguard-go device above and on [`fake::FakeWg`] below.
    fn behaves_like_the_adapter(wg: &dyn WireGuard, ifname: &str, peer: PublicKey) {
        let auto = BackendChoice::Auto;
        let read = || wg.read(ifname, auto).unwrap().unwrap();
        let find = |v: &DeviceView, k: PublicKey| v.peers.iter().find(|p| p.key == k).cloned();
        let nets = |v: &DeviceView| {
            let mut n: Vec<String> = v.allowed_ips.iter().map(|n| n.to_string()).collect();
            n.sort();
            n
        };
        let count = read().peers.len();
        wg.set_endpoint(ifname, auto, &peer, v4("203.0.113.20:2000"))
            .unwrap();
        let p = find(&read(), peer).unwrap();
        assert_eq!(p.endpoint, Some(v4("203.0.113.20:2000")));
        wg.rearm(ifname, auto, &peer, Some(v4("203.0.113.21:2001")))
            .unwrap();
        let v = read();
        let p = find(&v, peer).unwrap();
        assert_eq!(p.endpoint, Some(v4("203.0.113.21:2001")));
        assert_eq!(p.last_handshake, None, "no session after a rearm");
        assert_eq!(nets(&v), ["100.64.9.0/24", "2001:db8:100::2/128"]);
        wg.rearm(ifname, auto, &peer, None).unwrap();
        let p = find(&read(), peer).unwrap();
        assert_eq!(p.endpoint, Some(v4("203.0.113.21:2001")), "endpoint kept");

        // Unknown peers and interfaces: NotFound, nothing added or created.
        let other = PublicKey([0x33; 32]);
        let e = wg
            .set_endpoint(ifname, auto, &other, v4("192.0.2.1:1"))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        let e = wg.rearm(ifname, auto, &other, None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        assert_eq!(read().peers.len(), count);
        let absent = "wgr-absent1";
        let e = wg
            .set_endpoint(absent, auto, &peer, v4("192.0.2.1:1"))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        let e = wg.rearm(absent, auto, &peer, None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        let e = wg.add_peer(absent, auto, &other, &[]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        assert!(wg.read(absent, auto).unwrap().is_none(), "not created");
        assert!(wg.read("bad/name", auto).is_err());

        // add_peer adds a peer without a session; the same key again gets
        // the new allowed IPs; the other peer keeps its endpoint.
        let joiner = PublicKey([0x44; 32]);
        let host: std::net::IpAddr = "2001:db8:100::3".parse().unwrap();
        let prefix: std::net::IpAddr = "2001:db8:100:3::".parse().unwrap();
        wg.add_peer(ifname, auto, &joiner, &[(host, 128)]).unwrap();
        wg.add_peer(ifname, auto, &joiner, &[(host, 128), (prefix, 64)])
            .unwrap();
        let v = read();
        assert_eq!(v.peers.len(), count + 1);
        let j = find(&v, joiner).unwrap();
        assert_eq!((j.endpoint, j.last_handshake), (None, None));
        assert_eq!(
            nets(&v),
            [
                "100.64.9.0/24",
                "2001:db8:100:3::/64",
                "2001:db8:100::2/128",
                "2001:db8:100::3/128"
            ]
        );
        let p = find(&v, peer).unwrap();
        assert_eq!(p.endpoint, Some(v4("203.0.113.21:2001")));
    }

    #[test]
    fn the_fake_behaves_like_the_adapter() {
        let peer = PublicKey([0x22; 32]);
        let wg = fake::FakeWg::new().with_device("wg0", 51999).with_peer(
            "wg0",
            peer,
            Some(v4("198.51.100.2:51820")),
            &[
                "2001:db8:100::2/128".parse().unwrap(),
                "100.64.9.0/24".parse().unwrap(),
            ],
        );
        wg.handshake("wg0", &peer, 1_700_000_000);
        behaves_like_the_adapter(&wg, "wg0", peer);
    }
}
