//! WireGuard adapter over wireguard-control: kernel netlink (OpenWrt) or the
//! userspace UAPI socket (wireguard-go), whichever holds the interface.
//!
//! Two traps of wireguard-control shape this file: `DeviceUpdate::apply`
//! creates the interface when it is missing (kernel) or starts a userspace
//! daemon (UAPI), and a peer update for an unknown key adds that peer. So
//! every write first checks that the interface and the peer exist.

use std::io;
use std::net::SocketAddr;
use std::time::UNIX_EPOCH;

use wireguard_control::{Backend, Device, DeviceUpdate, InterfaceName, Key, PeerConfigBuilder};
use zeroize::Zeroizing;

use crate::core::PublicKey;
use crate::core::hub::PeerSnapshot;
use crate::core::roam::IpNet;

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
}

/// The real thing.
pub struct System;

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

fn userspace_socket_exists(ifname: &str) -> bool {
    ["/var/run/wireguard", "/run/wireguard"]
        .iter()
        .any(|d| std::path::Path::new(&format!("{d}/{ifname}.sock")).exists())
}

fn get(ifname: &str, choice: BackendChoice) -> io::Result<Option<Device>> {
    let name = iface_name(ifname)?;
    let mut last = None;
    for &b in backends(choice) {
        if b == Backend::Userspace && !userspace_socket_exists(ifname) {
            continue;
        }
        match Device::get(&name, b) {
            Ok(d) => return Ok(Some(d)),
            Err(e) => last = Some(e),
        }
    }
    match last {
        // No such device (ENODEV) or no socket: the interface is simply absent.
        Some(e)
            if e.raw_os_error() == Some(libc::ENODEV) || e.kind() == io::ErrorKind::NotFound =>
        {
            Ok(None)
        }
        Some(e) => Err(e),
        None => Ok(None),
    }
}

fn not_configured(ifname: &str, key: &PublicKey) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{ifname}: peer {} is not configured", key.short()),
    )
}

impl WireGuard for System {
    fn read(&self, ifname: &str, choice: BackendChoice) -> io::Result<Option<DeviceView>> {
        let Some(d) = get(ifname, choice)? else {
            return Ok(None);
        };
        let peers = d
            .peers
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
            .collect();
        Ok(Some(DeviceView {
            backend: match d.backend {
                Backend::Kernel => "kernel",
                Backend::Userspace => "userspace",
            },
            listen_port: d.listen_port,
            public_key: d.public_key.as_ref().map(|k| PublicKey(k.0)),
            private_key: d.private_key.as_ref().map(|k| Zeroizing::new(k.0)),
            peers,
            allowed_ips: d
                .peers
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
        let Some(d) = get(ifname, choice)? else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{ifname}: interface does not exist"),
            ));
        };
        if !d.peers.iter().any(|p| p.config.public_key.0 == key.0) {
            return Err(not_configured(ifname, key));
        }
        DeviceUpdate::new()
            .add_peer(PeerConfigBuilder::new(&Key(key.0)).set_endpoint(endpoint))
            .apply(&iface_name(ifname)?, d.backend)
    }

    fn rearm(
        &self,
        ifname: &str,
        choice: BackendChoice,
        key: &PublicKey,
        endpoint: Option<SocketAddr>,
    ) -> io::Result<()> {
        let Some(d) = get(ifname, choice)? else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{ifname}: interface does not exist"),
            ));
        };
        let Some(peer) = d.peers.iter().find(|p| p.config.public_key.0 == key.0) else {
            return Err(not_configured(ifname, key));
        };
        let mut again =
            PeerConfigBuilder::from_peer_config(peer.config.clone()).replace_allowed_ips();
        if let Some(e) = endpoint {
            again = again.set_endpoint(e);
        }
        DeviceUpdate::new()
            .add_peer(PeerConfigBuilder::new(&Key(key.0)).remove())
            .add_peer(again)
            .apply(&iface_name(ifname)?, d.backend)
    }
}
