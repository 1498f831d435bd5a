//! The connections a WireGuard read keeps open from one poll to the next.
//!
//! wireguard-control opens a fresh connection for every read: for the kernel
//! two generic netlink sockets (the family lookup, then the dump) and an
//! 8 KiB buffer each, for wireguard-go a UAPI connection, an 8 KiB reader and
//! an X25519 multiplication to derive the public key it does not send. The
//! hub reads every `poll_ms`, so at idle that was most of its CPU. Here the
//! kernel's socket (with the family id) and each wireguard-go connection stay
//! open, their buffers are reused (and wiped after each read: they held the
//! private key), and the public key is derived once per private key.
//! wireguard-go answers any number of requests on one connection; one that
//! broke (wireguard-go restarted, the link was re-created) is replaced once.
//!
//! Writes are rare and keep going through wireguard-control (userspace) or
//! [`Genl::request`] (kernel, see `PeerNla`).

use std::fmt::Debug;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, UNIX_EPOCH};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkDeserializable, NetlinkMessage, NetlinkPayload,
    NetlinkSerializable,
};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};
use netlink_packet_utils::{Emitable, ParseableParametrized};
use netlink_packet_wireguard::nlas::WgDeviceAttrs;
use netlink_packet_wireguard::{Wireguard, WireguardCmd};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_GENERIC};
use wireguard_control::{Backend, Device, Key, PeerInfo};
use zeroize::Zeroize;

/// Netlink wants a buffer of at least 8 KiB or a page (the kernel then sizes
/// its dump messages to fit).
fn netlink_buffer_len() -> usize {
    // SAFETY: sysconf has no memory effects.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).unwrap_or(0).max(8192)
}

/// Zeroes `buf` and keeps its length (`Vec::zeroize` would also empty it,
/// and the next request would find no room).
fn wipe(buf: &mut [u8]) {
    buf.zeroize();
}

fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// A generic netlink socket with WireGuard's family id resolved.
pub struct Genl {
    sock: Socket,
    family: u16,
    seq: u32,
    buf: Vec<u8>,
}

impl Genl {
    /// Opens the socket and looks up the WireGuard family (ENOENT without
    /// the module).
    pub fn open() -> io::Result<Genl> {
        let sock = Socket::new(NETLINK_GENERIC)?;
        sock.connect(&SocketAddr::new(0, 0))?;
        let mut g = Genl {
            sock,
            family: 0,
            seq: 0,
            buf: vec![0; netlink_buffer_len()],
        };
        let replies = g.request(
            GenlMessage::from_payload(GenlCtrl {
                cmd: GenlCtrlCmd::GetFamily,
                nlas: vec![GenlCtrlAttrs::FamilyName(Wireguard::family_name().into())],
            }),
            NLM_F_REQUEST | NLM_F_ACK,
        )?;
        g.family = replies
            .iter()
            .flat_map(|m| &m.payload.nlas)
            .find_map(|a| match a {
                GenlCtrlAttrs::FamilyId(id) => Some(*id),
                _ => None,
            })
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(g)
    }

    /// Sends one request (WireGuard's family id filled in) and collects the
    /// replies up to DONE or the ACK; the buffer is wiped afterwards.
    pub fn request<F>(
        &mut self,
        mut message: GenlMessage<F>,
        flags: u16,
    ) -> io::Result<Vec<GenlMessage<F>>>
    where
        F: GenlFamily + Clone + Debug + Eq + Emitable + ParseableParametrized<[u8], GenlHeader>,
        GenlMessage<F>: Clone + Debug + Eq + NetlinkSerializable + NetlinkDeserializable,
    {
        if message.family_id() == 0 {
            message.set_resolved_family_id(self.family);
        }
        self.seq = self.seq.wrapping_add(1);
        let mut req = NetlinkMessage::from(message);
        req.header.flags = flags;
        req.header.sequence_number = self.seq;
        req.finalize();
        let len = req.buffer_len();
        if len > self.buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("netlink request of {len} bytes"),
            ));
        }
        req.serialize(&mut self.buf[..len]);
        let result = self.exchange::<F>(len);
        wipe(&mut self.buf);
        result
    }

    fn exchange<F>(&mut self, len: usize) -> io::Result<Vec<GenlMessage<F>>>
    where
        F: GenlFamily + Clone + Debug + Eq + Emitable + ParseableParametrized<[u8], GenlHeader>,
        GenlMessage<F>: Clone + Debug + Eq + NetlinkSerializable + NetlinkDeserializable,
    {
        if self.sock.send(&self.buf[..len], 0)? != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "short netlink send",
            ));
        }
        let mut replies = Vec::new();
        loop {
            let n = self.sock.recv(&mut &mut self.buf[..], 0)?;
            let mut off = 0;
            while off < n {
                let bytes = &self.buf[off..n];
                let m = NetlinkMessage::<GenlMessage<F>>::deserialize(bytes).map_err(invalid)?;
                let l = m.header.length as usize;
                if l == 0 {
                    return Err(invalid("netlink message of length 0"));
                }
                off += (l + 3) & !3;
                // What is left of an earlier, abandoned request.
                if m.header.sequence_number != self.seq {
                    continue;
                }
                match m.payload {
                    NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.into()),
                    NetlinkPayload::Done(_) | NetlinkPayload::Error(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(g) => replies.push(g),
                    _ => {}
                }
            }
        }
    }

    /// Dumps one interface (ENODEV when it does not exist).
    pub fn device(&mut self, ifname: &str) -> io::Result<Dev> {
        let replies = self.request(
            GenlMessage::from_payload(Wireguard {
                cmd: WireguardCmd::GetDevice,
                nlas: vec![WgDeviceAttrs::IfName(ifname.to_string())],
            }),
            NLM_F_REQUEST | NLM_F_DUMP | NLM_F_ACK,
        )?;
        let nlas: Vec<WgDeviceAttrs> = replies.into_iter().flat_map(|m| m.payload.nlas).collect();
        Device::try_from(&nlas[..]).map(Dev::from)
    }
}

/// The public key of the last private key seen, so that it is derived (an
/// X25519 multiplication: milliseconds on a router) once, not at every read.
/// Keyed by a hash: no further copy of the private key is kept.
#[derive(Default)]
pub struct PublicCache(Option<([u8; 32], Key)>);

impl PublicCache {
    pub fn public(&mut self, private: &Key) -> Key {
        use blake2::{Blake2s256, Digest};
        let id: [u8; 32] = Blake2s256::digest(private.0).into();
        if let Some((seen, public)) = &self.0
            && *seen == id
        {
            return public.clone();
        }
        let public = private.get_public();
        self.0 = Some((id, public.clone()));
        public
    }
}

/// A connection to wireguard-go's UAPI socket, kept for the next read.
pub struct Uapi {
    stream: UnixStream,
    buf: Vec<u8>,
    /// The socket file connected to (device, inode): a re-created link is
    /// served by a new wireguard-go with a new socket, while the old one may
    /// still answer for a moment.
    file: (u64, u64),
}

/// (device, inode) of the socket file at `path`.
fn file_id(path: &str) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// How long a read waits for wireguard-go before the connection is dropped.
const UAPI_TIMEOUT: Duration = Duration::from_secs(2);

impl Uapi {
    pub fn connect(path: &str) -> io::Result<Uapi> {
        let file = file_id(path)?;
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(UAPI_TIMEOUT))?;
        stream.set_write_timeout(Some(UAPI_TIMEOUT))?;
        Ok(Uapi {
            stream,
            buf: Vec::with_capacity(4096),
            file,
        })
    }

    /// One `get=1` on this connection.
    pub fn device(&mut self, keys: &mut PublicCache) -> io::Result<Dev> {
        let result = self.exchange().and_then(|()| parse_get(&self.buf, keys));
        self.buf.zeroize();
        result
    }

    fn exchange(&mut self) -> io::Result<()> {
        self.stream.write_all(b"get=1\n\n")?;
        self.buf.clear();
        // The reply ends with "errno=N\n\n", the only empty line in it.
        while !self.buf.ends_with(b"\n\n") {
            // Into the whole kept buffer at once: with many peers the reply
            // is hundreds of KB, read in a few calls instead of one per 4 KB.
            let at = self.buf.len();
            let room = (self.buf.capacity() - at).max(4096);
            self.buf.resize(at + room, 0);
            match self.stream.read(&mut self.buf[at..]) {
                Ok(0) => {
                    self.buf.truncate(at);
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "wireguard-go closed the connection",
                    ));
                }
                Ok(n) => self.buf.truncate(at + n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.buf.truncate(at),
                Err(e) => {
                    self.buf.truncate(at);
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

/// What a read of an interface found, from either backend (wireguard-control's
/// [`Device`] cannot be built outside the crate).
#[derive(Debug, Clone, PartialEq)]
pub struct Dev {
    pub backend: Backend,
    pub public_key: Option<Key>,
    pub private_key: Option<Key>,
    pub listen_port: Option<u16>,
    pub peers: Vec<PeerInfo>,
}

impl From<Device> for Dev {
    fn from(d: Device) -> Dev {
        Dev {
            backend: d.backend,
            public_key: d.public_key,
            private_key: d.private_key,
            listen_port: d.listen_port,
            peers: d.peers,
        }
    }
}

/// A UAPI `get` reply (what wireguard-control's own parser makes of it,
/// without printing unknown keys).
/// The peer a UAPI line belongs to.
fn current<'a>(p: &'a mut Option<PeerInfo>, k: &str) -> io::Result<&'a mut PeerInfo> {
    p.as_mut()
        .ok_or_else(|| invalid(format!("UAPI {k} before any peer")))
}

pub fn parse_get(reply: &[u8], keys: &mut PublicCache) -> io::Result<Dev> {
    let text = std::str::from_utf8(reply).map_err(invalid)?;
    let mut d = Dev {
        backend: Backend::Userspace,
        public_key: None,
        private_key: None,
        listen_port: None,
        peers: Vec::new(),
    };
    let mut peer: Option<PeerInfo> = None;
    let key = |v: &str| Key::from_hex(v).map_err(|_| invalid("bad key in UAPI reply"));
    let num =
        |v: &str| -> io::Result<u64> { v.parse().map_err(|_| invalid(format!("bad number {v}"))) };
    let mut errno = None;
    for line in text.lines().filter(|l| !l.is_empty()) {
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| invalid("UAPI line without '='"))?;
        match k {
            "private_key" => {
                let private = key(v)?;
                d.public_key = Some(keys.public(&private));
                d.private_key = Some(private);
            }
            "listen_port" => {
                d.listen_port = Some(u16::try_from(num(v)?).map_err(invalid)?);
            }
            "public_key" => {
                if let Some(done) = peer.replace(PeerInfo::from_public_key(key(v)?)) {
                    d.peers.push(done);
                }
            }
            "preshared_key" => current(&mut peer, k)?.config.preshared_key = Some(key(v)?),
            "endpoint" => {
                current(&mut peer, k)?.config.endpoint = Some(v.parse().map_err(invalid)?)
            }
            "allowed_ip" => current(&mut peer, k)?.config.allowed_ips.push(
                v.parse()
                    .map_err(|_| invalid(format!("bad allowed_ip {v}")))?,
            ),
            "persistent_keepalive_interval" => {
                let s = u16::try_from(num(v)?).map_err(invalid)?;
                current(&mut peer, k)?.config.persistent_keepalive_interval = Some(s);
            }
            "last_handshake_time_sec" => {
                let s = num(v)?;
                if s > 0 {
                    current(&mut peer, k)?.stats.last_handshake_time =
                        Some(UNIX_EPOCH + Duration::from_secs(s));
                }
            }
            "rx_bytes" => current(&mut peer, k)?.stats.rx_bytes = num(v)?,
            "tx_bytes" => current(&mut peer, k)?.stats.tx_bytes = num(v)?,
            "errno" => errno = Some(num(v)?),
            _ => {}
        }
    }
    match errno {
        Some(0) => {}
        Some(e) => return Err(io::Error::from_raw_os_error(i32::try_from(e).unwrap_or(0))),
        None => return Err(invalid("UAPI reply without errno")),
    }
    d.peers.extend(peer);
    Ok(d)
}

/// Every connection the reads keep, per process.
pub struct Conns {
    genl: Option<Genl>,
    uapi: Vec<(String, Uapi)>,
    keys: PublicCache,
    /// The backend that last answered for each interface: asked first next
    /// time, so that a poll of a wireguard-go interface does not first ask
    /// the kernel (a failed family lookup per poll, for nothing).
    answered: Vec<(String, Backend)>,
    /// Link events are watched ([`crate::os::wg::WireGuard::watch_links`]):
    /// a kept wireguard-go connection is used without looking at its socket
    /// file, and dropped at the next link event.
    pub links_watched: bool,
}

impl Conns {
    pub const fn new() -> Conns {
        Conns {
            genl: None,
            uapi: Vec::new(),
            keys: PublicCache(None),
            answered: Vec::new(),
            links_watched: false,
        }
    }

    /// Closes every wireguard-go connection (opened again when next read).
    pub fn forget_uapi(&mut self) {
        self.uapi.clear();
    }

    pub fn answered(&self, ifname: &str) -> Option<Backend> {
        self.answered
            .iter()
            .find(|(n, _)| n == ifname)
            .map(|(_, b)| *b)
    }

    pub fn set_answered(&mut self, ifname: &str, b: Backend) {
        match self.answered.iter_mut().find(|(n, _)| n == ifname) {
            Some(e) => e.1 = b,
            None => self.answered.push((ifname.to_string(), b)),
        }
    }

    /// Whether a wireguard-go connection for `ifname` is open.
    #[cfg(test)]
    pub fn has_uapi(&self, ifname: &str) -> bool {
        self.uapi.iter().any(|(n, _)| n == ifname)
    }

    /// The kernel socket, opened if needed.
    pub fn genl(&mut self) -> io::Result<&mut Genl> {
        match self.genl {
            Some(ref mut g) => Ok(g),
            None => Ok(self.genl.insert(Genl::open()?)),
        }
    }

    /// Closes the kernel socket (opened again when next needed).
    pub fn forget_genl(&mut self) {
        self.genl = None;
    }

    /// Reads `ifname` through the kernel; a socket that failed otherwise
    /// than "no such device" is opened again next time.
    pub fn kernel(&mut self, ifname: &str) -> io::Result<Dev> {
        let r = self.genl()?.device(ifname);
        if let Err(e) = &r
            && e.raw_os_error() != Some(libc::ENODEV)
        {
            self.genl = None;
        }
        r
    }

    /// Reads `ifname` from wireguard-go at the socket `path`, on the open
    /// connection if it is still to that socket file — taken as given while
    /// link events are watched (a new wireguard-go comes with a link event,
    /// which closed the connection) — else, or if it broke, on a new one.
    /// NotFound: no socket file.
    pub fn userspace(&mut self, ifname: &str, path: &str) -> io::Result<Dev> {
        if let Some(i) = self.uapi.iter().position(|(n, _)| n == ifname) {
            let same = self.links_watched || file_id(path).is_ok_and(|f| f == self.uapi[i].1.file);
            if same && let Ok(d) = self.uapi[i].1.device(&mut self.keys) {
                return Ok(d);
            }
            self.uapi.swap_remove(i);
        }
        let mut c = Uapi::connect(path)?;
        let d = c.device(&mut self.keys)?;
        self.uapi.push((ifname.to_string(), c));
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::os::unix::net::UnixListener;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A `get` reply as wireguard-go writes it (device, then each peer).
    const REPLY: &str = "private_key=4040404040404040404040404040404040404040404040404040404040404040\n\
listen_port=51820\n\
public_key=2222222222222222222222222222222222222222222222222222222222222222\n\
preshared_key=0000000000000000000000000000000000000000000000000000000000000000\n\
protocol_version=1\n\
endpoint=[2001:db8::2]:40000\n\
last_handshake_time_sec=1700000000\n\
last_handshake_time_nsec=5\n\
tx_bytes=92\n\
rx_bytes=180\n\
persistent_keepalive_interval=25\n\
allowed_ip=2001:db8:100::2/128\n\
allowed_ip=100.64.9.0/24\n\
public_key=3333333333333333333333333333333333333333333333333333333333333333\n\
last_handshake_time_sec=0\n\
tx_bytes=0\n\
rx_bytes=0\n\
errno=0\n\n";

    #[test]
    fn a_get_reply_reads_as_wireguard_control_would() {
        let mut keys = PublicCache::default();
        let d = parse_get(REPLY.as_bytes(), &mut keys).unwrap();
        assert_eq!(d.backend, Backend::Userspace);
        assert_eq!(d.listen_port, Some(51820));
        let private = Key([0x40; 32]);
        assert_eq!(d.private_key, Some(private.clone()));
        assert_eq!(d.public_key, Some(private.get_public()));
        assert_eq!(d.peers.len(), 2);
        let p = &d.peers[0];
        assert_eq!(p.config.public_key, Key([0x22; 32]));
        assert_eq!(p.config.preshared_key, Some(Key([0; 32])));
        assert_eq!(
            p.config.endpoint,
            Some("[2001:db8::2]:40000".parse().unwrap())
        );
        assert_eq!(p.config.persistent_keepalive_interval, Some(25));
        assert_eq!(
            p.config.allowed_ips,
            vec![
                "2001:db8:100::2/128".parse().unwrap(),
                "100.64.9.0/24".parse().unwrap()
            ]
        );
        assert_eq!(
            p.stats.last_handshake_time,
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert_eq!((p.stats.rx_bytes, p.stats.tx_bytes), (180, 92));
        let q = &d.peers[1];
        assert_eq!(q.config.public_key, Key([0x33; 32]));
        assert_eq!(q.stats.last_handshake_time, None);
        assert_eq!(q.config.endpoint, None);
    }

    #[test]
    fn bad_get_replies_are_errors() {
        let mut keys = PublicCache::default();
        let errno = parse_get(b"errno=19\n\n", &mut keys).unwrap_err();
        assert_eq!(errno.raw_os_error(), Some(19));
        for bad in [
            "listen_port=51820\n\n",             // cut before errno
            "endpoint=192.0.2.1:1\nerrno=0\n\n", // peer field before a peer
            "private_key=zz\nerrno=0\n\n",       // not a key
            "listen_port=70000\nerrno=0\n\n",    // not a port
            "no equals sign\nerrno=0\n\n",
        ] {
            assert!(parse_get(bad.as_bytes(), &mut keys).is_err(), "{bad:?}");
        }
        // Keys it does not know are skipped, not printed.
        let d = parse_get(b"new_thing=1\nerrno=0\n\n", &mut keys).unwrap();
        assert!(d.peers.is_empty());
    }

    #[test]
    fn a_wiped_netlink_buffer_keeps_its_room() {
        let mut buf = vec![7u8; netlink_buffer_len()];
        wipe(&mut buf);
        assert_eq!(buf.len(), netlink_buffer_len());
        assert!(buf.iter().all(|b| *b == 0));
    }

    #[test]
    fn the_public_key_is_derived_once_per_private_key() {
        let mut keys = PublicCache::default();
        let a = Key([0x40; 32]);
        let b = Key([0x48; 32]);
        assert_eq!(keys.public(&a), a.get_public());
        let first = keys.0.clone().unwrap();
        assert_eq!(keys.public(&a), a.get_public());
        assert_eq!(keys.0.clone().unwrap(), first, "cached");
        assert_ne!(first.0, a.0, "the cache holds a hash, not the key");
        assert_eq!(keys.public(&b), b.get_public());
        assert_ne!(keys.0.clone().unwrap().0, first.0);
    }

    /// A wireguard-go stand-in: answers `get=1` on each connection
    /// `replies_per_conn` times, then closes it; counts connections.
    fn fake_uapi(path: &std::path::Path, replies_per_conn: usize) -> Arc<AtomicUsize> {
        let listener = UnixListener::bind(path).unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(s) = s else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let mut r = std::io::BufReader::new(s.try_clone().unwrap());
                let mut w = s;
                for _ in 0..replies_per_conn {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line != "get=1\n" {
                        break;
                    }
                    line.clear();
                    r.read_line(&mut line).unwrap();
                    // In two writes: the reader must wait for the empty line.
                    let (a, b) = REPLY.split_at(REPLY.len() / 2);
                    w.write_all(a.as_bytes()).unwrap();
                    w.flush().unwrap();
                    std::thread::sleep(Duration::from_millis(5));
                    w.write_all(b.as_bytes()).unwrap();
                }
            }
        });
        accepted
    }

    #[test]
    fn reads_share_one_uapi_connection_and_replace_a_broken_one() {
        let dir = std::env::temp_dir().join(format!("wgr-uapi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("wgf0.sock");
        let _ = std::fs::remove_file(&path);
        let accepted = fake_uapi(&path, 3);
        let socket = path.to_str().unwrap();
        let mut conns = Conns::new();
        let first = conns.userspace("wgf0", socket).unwrap();
        for _ in 0..2 {
            assert_eq!(conns.userspace("wgf0", socket).unwrap(), first);
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "three reads, one connection"
        );
        assert!(conns.has_uapi("wgf0"));
        // The stand-in closed it after three replies: the fourth read
        // connects again and succeeds.
        assert_eq!(conns.userspace("wgf0", socket).unwrap(), first);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        // A new wireguard-go (the link was re-created) has a new socket
        // file: the old connection, though it still answers, is not asked.
        std::fs::remove_file(&path).unwrap();
        let accepted_new = fake_uapi(&path, 3);
        assert_eq!(conns.userspace("wgf0", socket).unwrap(), first);
        assert_eq!(accepted_new.load(Ordering::SeqCst), 1, "the new socket");
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "not the old one again");
        // No socket any more: the interface is gone (NotFound), and the
        // connection is not kept.
        std::fs::remove_file(&path).unwrap();
        let e = conns.userspace("wgf0", socket).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(!conns.has_uapi("wgf0"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
