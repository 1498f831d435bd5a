//! [`FakeWg`]: the fake [`WireGuard`] the glue's tests run against, an
//! in-memory kernel with the real adapter's semantics. Test builds and the
//! `test-support` feature (integration tests) only.
//!
//! What it keeps of [`System`](super::System):
//! - `read` of a missing interface is `Ok(None)`, of an invalid name an
//!   error; it returns the peers and every allowed IP of every peer.
//! - Writes never create an interface, and `set_endpoint` and `rearm` never
//!   add a peer: both fail with `NotFound` (the real adapter's messages).
//! - `rearm` removes the peer and adds it again with its allowed IPs and
//!   the new endpoint (or its old one): the session is gone (no handshake,
//!   counters at zero) and, as in the kernel's list, it is now the last peer.
//! - `add_peer` adds a peer, or replaces an existing one's allowed IPs; an
//!   allowed IP belongs to one peer only (the kernel's routing table), so
//!   taking one moves it away from the peer that had it.
//! - A private key is stored clamped and its public key derived, as the
//!   kernel does.
//!
//! What the kernel does by itself is a helper for the test to call:
//! [`FakeWg::roam`] (an authenticated packet from a new address),
//! [`FakeWg::handshake`], [`FakeWg::traffic`], [`FakeWg::remove_device`].
//! The backend choice is not modelled: every device answers every choice and
//! reads back with backend `"fake"`.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use zeroize::Zeroizing;

use super::{BackendChoice, DeviceView, WireGuard, iface_name, no_interface, not_configured};
use crate::core::PublicKey;
use crate::core::hub::PeerSnapshot;
use crate::core::net::IpNet;
use crate::core::pairing::{clamp, public_of};

/// One peer as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub key: PublicKey,
    pub endpoint: Option<SocketAddr>,
    /// Wall-clock seconds of the latest handshake; `None`: no session.
    pub last_handshake: Option<u64>,
    pub rx: u64,
    pub tx: u64,
    pub allowed_ips: Vec<IpNet>,
}

impl Peer {
    /// A peer as configured: no session, no traffic yet.
    pub fn new(key: PublicKey, endpoint: Option<SocketAddr>, allowed_ips: &[IpNet]) -> Self {
        Peer {
            key,
            endpoint,
            last_handshake: None,
            rx: 0,
            tx: 0,
            allowed_ips: allowed_ips.to_vec(),
        }
    }
}

/// One interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    pub listen_port: Option<u16>,
    /// Clamped, as the kernel stores it.
    pub private_key: Option<[u8; 32]>,
    pub peers: Vec<Peer>,
}

/// A write the fake applied, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    SetEndpoint {
        ifname: String,
        key: PublicKey,
        endpoint: SocketAddr,
    },
    Rearm {
        ifname: String,
        key: PublicKey,
        endpoint: Option<SocketAddr>,
    },
    AddPeer {
        ifname: String,
        key: PublicKey,
        allowed_ips: Vec<(IpAddr, u8)>,
    },
}

#[derive(Debug, Default)]
struct State {
    devices: BTreeMap<String, Device>,
    writes: Vec<Write>,
}

/// An in-memory WireGuard; clones share the same devices, so a test keeps
/// one handle and gives the code under test another.
#[derive(Debug, Clone, Default)]
pub struct FakeWg(Arc<Mutex<State>>);

impl FakeWg {
    /// No interfaces.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds interface `ifname` (no key, no peers); replaces one already there.
    pub fn with_device(self, ifname: &str, listen_port: u16) -> Self {
        self.state().devices.insert(
            ifname.into(),
            Device {
                listen_port: Some(listen_port),
                ..Device::default()
            },
        );
        self
    }

    /// Sets `ifname`'s private key (`wg set IF private-key`), clamped.
    pub fn with_private_key(self, ifname: &str, private: [u8; 32]) -> Self {
        self.device_mut(ifname, |d| d.private_key = Some(clamp(private)));
        self
    }

    /// Configures a peer on `ifname` (`wg set IF peer ...`): no session yet.
    pub fn with_peer(
        self,
        ifname: &str,
        key: PublicKey,
        endpoint: Option<SocketAddr>,
        allowed_ips: &[IpNet],
    ) -> Self {
        self.device_mut(ifname, |d| {
            d.peers.retain(|p| p.key != key);
            take_ips(d, &key, allowed_ips);
            d.peers.push(Peer::new(key, endpoint, allowed_ips));
        });
        self
    }

    /// The interface is deleted (`ip link del`).
    pub fn remove_device(&self, ifname: &str) {
        self.state().devices.remove(ifname);
    }

    /// The peer roamed: the kernel took the source address of an
    /// authenticated packet as its endpoint.
    pub fn roam(&self, ifname: &str, key: &PublicKey, endpoint: SocketAddr) {
        self.peer_mut(ifname, key, |p| p.endpoint = Some(endpoint));
    }

    /// A handshake with the peer completed at wall-clock second `wall`.
    pub fn handshake(&self, ifname: &str, key: &PublicKey, wall: u64) {
        self.peer_mut(ifname, key, |p| p.last_handshake = Some(wall));
    }

    /// `rx` and `tx` more bytes to and from the peer.
    pub fn traffic(&self, ifname: &str, key: &PublicKey, rx: u64, tx: u64) {
        self.peer_mut(ifname, key, |p| {
            p.rx += rx;
            p.tx += tx;
        });
    }

    /// The interface as it is now.
    pub fn device(&self, ifname: &str) -> Option<Device> {
        self.state().devices.get(ifname).cloned()
    }

    /// One peer as it is now.
    pub fn peer(&self, ifname: &str, key: &PublicKey) -> Option<Peer> {
        self.device(ifname)?
            .peers
            .into_iter()
            .find(|p| p.key == *key)
    }

    /// Every write applied so far, in order.
    pub fn writes(&self) -> Vec<Write> {
        self.state().writes.clone()
    }

    /// The `add_peer` calls applied so far: key and allowed IPs.
    pub fn added(&self) -> Vec<(PublicKey, Vec<(IpAddr, u8)>)> {
        self.state()
            .writes
            .iter()
            .filter_map(|w| match w {
                Write::AddPeer {
                    key, allowed_ips, ..
                } => Some((*key, allowed_ips.clone())),
                _ => None,
            })
            .collect()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Test set-up on a device that must exist.
    fn device_mut(&self, ifname: &str, f: impl FnOnce(&mut Device)) {
        let mut s = self.state();
        let d = s
            .devices
            .get_mut(ifname)
            .unwrap_or_else(|| panic!("FakeWg: no device {ifname}"));
        f(d);
    }

    /// Test set-up on a peer that must exist.
    fn peer_mut(&self, ifname: &str, key: &PublicKey, f: impl FnOnce(&mut Peer)) {
        self.device_mut(ifname, |d| {
            let p = d
                .peers
                .iter_mut()
                .find(|p| p.key == *key)
                .unwrap_or_else(|| panic!("FakeWg: {ifname} has no peer {}", key.short()));
            f(p);
        });
    }

    /// A write to an existing device, recorded when it succeeds.
    fn write(
        &self,
        ifname: &str,
        record: Write,
        f: impl FnOnce(&mut Device) -> io::Result<()>,
    ) -> io::Result<()> {
        iface_name(ifname)?;
        let mut s = self.state();
        let d = s
            .devices
            .get_mut(ifname)
            .ok_or_else(|| no_interface(ifname))?;
        f(d)?;
        s.writes.push(record);
        Ok(())
    }
}

/// An allowed IP belongs to one peer: `key` takes `nets` from the others.
fn take_ips(d: &mut Device, key: &PublicKey, nets: &[IpNet]) {
    for p in d.peers.iter_mut().filter(|p| p.key != *key) {
        p.allowed_ips.retain(|n| !nets.contains(n));
    }
}

impl WireGuard for FakeWg {
    fn read(&self, ifname: &str, _: BackendChoice) -> io::Result<Option<DeviceView>> {
        iface_name(ifname)?;
        let s = self.state();
        let Some(d) = s.devices.get(ifname) else {
            return Ok(None);
        };
        Ok(Some(DeviceView {
            backend: "fake",
            listen_port: d.listen_port,
            public_key: d.private_key.map(|k| PublicKey(public_of(&k))),
            private_key: d.private_key.map(Zeroizing::new),
            peers: d
                .peers
                .iter()
                .map(|p| PeerSnapshot {
                    key: p.key,
                    endpoint: p.endpoint,
                    last_handshake: p.last_handshake,
                    rx: p.rx,
                    tx: p.tx,
                })
                .collect(),
            allowed_ips: d
                .peers
                .iter()
                .flat_map(|p| p.allowed_ips.iter().copied())
                .collect(),
        }))
    }

    fn set_endpoint(
        &self,
        ifname: &str,
        _: BackendChoice,
        key: &PublicKey,
        endpoint: SocketAddr,
    ) -> io::Result<()> {
        let record = Write::SetEndpoint {
            ifname: ifname.into(),
            key: *key,
            endpoint,
        };
        self.write(ifname, record, |d| {
            let p = d
                .peers
                .iter_mut()
                .find(|p| p.key == *key)
                .ok_or_else(|| not_configured(ifname, key))?;
            p.endpoint = Some(endpoint);
            Ok(())
        })
    }

    fn rearm(
        &self,
        ifname: &str,
        _: BackendChoice,
        key: &PublicKey,
        endpoint: Option<SocketAddr>,
    ) -> io::Result<()> {
        let record = Write::Rearm {
            ifname: ifname.into(),
            key: *key,
            endpoint,
        };
        self.write(ifname, record, |d| {
            let i = d
                .peers
                .iter()
                .position(|p| p.key == *key)
                .ok_or_else(|| not_configured(ifname, key))?;
            let old = d.peers.remove(i);
            d.peers.push(Peer::new(
                old.key,
                endpoint.or(old.endpoint),
                &old.allowed_ips,
            ));
            Ok(())
        })
    }

    fn add_peer(
        &self,
        ifname: &str,
        _: BackendChoice,
        key: &PublicKey,
        allowed_ips: &[(IpAddr, u8)],
    ) -> io::Result<()> {
        let record = Write::AddPeer {
            ifname: ifname.into(),
            key: *key,
            allowed_ips: allowed_ips.to_vec(),
        };
        self.write(ifname, record, |d| {
            let mut nets: Vec<IpNet> = Vec::new();
            for &(a, l) in allowed_ips {
                // The kernel stores the prefix (host bits cleared) and
                // refuses a length too long for the family.
                let n = IpNet::truncate(a, l).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{ifname}: {a}/{l} is not a valid allowed IP"),
                    )
                })?;
                if !nets.contains(&n) {
                    nets.push(n);
                }
            }
            take_ips(d, key, &nets);
            match d.peers.iter_mut().find(|p| p.key == *key) {
                Some(p) => p.allowed_ips = nets,
                None => d.peers.push(Peer::new(*key, None, &nets)),
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: PublicKey = PublicKey([1; 32]);
    const K2: PublicKey = PublicKey([2; 32]);

    fn at(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn any() -> BackendChoice {
        BackendChoice::Auto
    }

    /// wg0 with K1 (one /64) and K2 (two nets), both with live sessions.
    fn two_peers() -> FakeWg {
        let wg = FakeWg::new()
            .with_device("wg0", 51820)
            .with_private_key("wg0", [0x41; 32])
            .with_peer(
                "wg0",
                K1,
                Some(at("198.51.100.1:1000")),
                &[net("2001:db8:1::/64")],
            )
            .with_peer(
                "wg0",
                K2,
                Some(at("198.51.100.2:2000")),
                &[net("2001:db8:2::/64"), net("10.0.2.0/24")],
            );
        for k in [K1, K2] {
            wg.handshake("wg0", &k, 1_700_000_000);
            wg.traffic("wg0", &k, 100, 200);
        }
        wg
    }

    #[test]
    fn read_returns_peers_keys_and_the_union_of_allowed_ips() {
        let wg = two_peers();
        let v = wg.read("wg0", any()).unwrap().unwrap();
        assert_eq!(v.listen_port, Some(51820));
        let private = clamp([0x41; 32]);
        assert_eq!(v.private_key.as_deref(), Some(&private), "stored clamped");
        assert_eq!(v.public_key, Some(PublicKey(public_of(&private))));
        assert_eq!(
            v.peers,
            vec![
                PeerSnapshot {
                    key: K1,
                    endpoint: Some(at("198.51.100.1:1000")),
                    last_handshake: Some(1_700_000_000),
                    rx: 100,
                    tx: 200,
                },
                PeerSnapshot {
                    key: K2,
                    endpoint: Some(at("198.51.100.2:2000")),
                    last_handshake: Some(1_700_000_000),
                    rx: 100,
                    tx: 200,
                },
            ]
        );
        assert_eq!(
            v.allowed_ips,
            vec![
                net("2001:db8:1::/64"),
                net("2001:db8:2::/64"),
                net("10.0.2.0/24")
            ]
        );
        // Like the real adapter: absent is no error, a bad name is.
        assert!(wg.read("wg9", any()).unwrap().is_none());
        assert!(wg.read("bad/name", any()).is_err());
        // No private key: no public key either.
        let bare = FakeWg::new().with_device("wg1", 1);
        let v = bare.read("wg1", any()).unwrap().unwrap();
        assert!(v.private_key.is_none() && v.public_key.is_none());
    }

    #[test]
    fn set_endpoint_moves_one_existing_peer_and_never_adds_one() {
        let wg = two_peers();
        wg.set_endpoint("wg0", any(), &K1, at("203.0.113.5:4000"))
            .unwrap();
        let p = wg.peer("wg0", &K1).unwrap();
        assert_eq!(p.endpoint, Some(at("203.0.113.5:4000")));
        assert_eq!(p.last_handshake, Some(1_700_000_000), "session kept");
        assert_eq!(
            wg.peer("wg0", &K2).unwrap().endpoint,
            Some(at("198.51.100.2:2000"))
        );
        let before = wg.device("wg0");
        let e = wg
            .set_endpoint("wg0", any(), &PublicKey([3; 32]), at("192.0.2.1:1"))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        assert!(e.to_string().contains("is not configured"), "{e}");
        let e = wg
            .set_endpoint("wg9", any(), &K1, at("192.0.2.1:1"))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        assert!(wg.device("wg9").is_none(), "no interface created");
        assert_eq!(wg.device("wg0"), before);
        assert_eq!(wg.writes().len(), 1, "failed writes are not recorded");
    }

    #[test]
    fn rearm_re_creates_the_peer_without_its_session() {
        let wg = two_peers();
        wg.rearm("wg0", any(), &K1, Some(at("203.0.113.6:4001")))
            .unwrap();
        let v = wg.read("wg0", any()).unwrap().unwrap();
        // Re-added: now last in the list, with its allowed IPs.
        assert_eq!(v.peers[1].key, K1);
        assert_eq!(v.peers[1].endpoint, Some(at("203.0.113.6:4001")));
        assert_eq!(v.peers[1].last_handshake, None);
        assert_eq!((v.peers[1].rx, v.peers[1].tx), (0, 0));
        assert_eq!(
            wg.peer("wg0", &K1).unwrap().allowed_ips,
            vec![net("2001:db8:1::/64")]
        );
        // The other peer's session is untouched.
        assert_eq!(v.peers[0].last_handshake, Some(1_700_000_000));
        // Without a new endpoint the old one is kept.
        wg.rearm("wg0", any(), &K2, None).unwrap();
        let p = wg.peer("wg0", &K2).unwrap();
        assert_eq!(p.endpoint, Some(at("198.51.100.2:2000")));
        assert_eq!(p.last_handshake, None);
        // Unknown peer or interface: NotFound, nothing added.
        let e = wg
            .rearm("wg0", any(), &PublicKey([3; 32]), None)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        let e = wg.rearm("wg9", any(), &K1, None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        assert_eq!(wg.device("wg0").unwrap().peers.len(), 2);
        assert_eq!(
            wg.writes(),
            vec![
                Write::Rearm {
                    ifname: "wg0".into(),
                    key: K1,
                    endpoint: Some(at("203.0.113.6:4001"))
                },
                Write::Rearm {
                    ifname: "wg0".into(),
                    key: K2,
                    endpoint: None
                },
            ]
        );
    }

    #[test]
    fn add_peer_adds_or_replaces_allowed_ips_and_takes_them_from_others() {
        let wg = two_peers();
        let k3 = PublicKey([3; 32]);
        let six: IpAddr = "2001:db8:3::1".parse().unwrap();
        // Host bits are cleared, as the kernel stores prefixes.
        let sub: IpAddr = "2001:db8:3:1::9".parse().unwrap();
        wg.add_peer("wg0", any(), &k3, &[(six, 128), (sub, 64)])
            .unwrap();
        let p = wg.peer("wg0", &k3).unwrap();
        assert_eq!(
            (p.endpoint, p.last_handshake, p.rx),
            (None, None, 0),
            "a new peer has no endpoint and no session"
        );
        assert_eq!(
            p.allowed_ips,
            vec![net("2001:db8:3::1/128"), net("2001:db8:3:1::/64")]
        );
        assert_eq!(wg.added(), vec![(k3, vec![(six, 128), (sub, 64)])]);
        // The same key again replaces its allowed IPs; one K2 had moves over.
        let v4: IpAddr = "10.0.2.0".parse().unwrap();
        wg.add_peer("wg0", any(), &k3, &[(v4, 24)]).unwrap();
        assert_eq!(
            wg.peer("wg0", &k3).unwrap().allowed_ips,
            vec![net("10.0.2.0/24")]
        );
        assert_eq!(
            wg.peer("wg0", &K2).unwrap().allowed_ips,
            vec![net("2001:db8:2::/64")]
        );
        assert_eq!(wg.device("wg0").unwrap().peers.len(), 3);
        // No interface: an error, none created; a bad length is refused.
        let e = wg.add_peer("wg9", any(), &k3, &[]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        assert!(wg.device("wg9").is_none());
        let e = wg.add_peer("wg0", any(), &k3, &[(v4, 33)]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        assert_eq!(wg.added().len(), 2);
    }

    #[test]
    fn the_kernels_side_roam_handshake_traffic_and_a_deleted_device() {
        let wg = two_peers();
        let other = wg.clone();
        other.roam("wg0", &K1, at("203.0.113.9:9"));
        other.handshake("wg0", &K1, 1_700_000_100);
        other.traffic("wg0", &K1, 1, 2);
        let p = wg.peer("wg0", &K1).unwrap();
        assert_eq!(p.endpoint, Some(at("203.0.113.9:9")), "clones share state");
        assert_eq!(
            (p.last_handshake, p.rx, p.tx),
            (Some(1_700_000_100), 101, 202)
        );
        assert!(
            wg.writes().is_empty(),
            "the kernel's own doings are no writes"
        );
        wg.remove_device("wg0");
        assert!(wg.read("wg0", any()).unwrap().is_none());
        let e = wg
            .set_endpoint("wg0", any(), &K1, at("192.0.2.1:1"))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
