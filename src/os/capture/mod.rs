//! Packet capture adapter: an AF_PACKET `SOCK_DGRAM` socket carrying the
//! [`crate::wire::bpf`] filter, so the kernel hands over only WireGuard handshake
//! shapes (L3 frames, see [`crate::wire::parse_l3`]), through a memory-mapped
//! TPACKET_V3 ring ([`ring`]): no system call per packet, one wakeup per
//! block, and a frame budget that bounds the reader's CPU under a flood.
//!
//! The core sees it only through [`PacketSource`], so tests feed it fakes
//! ([`QueueSource`]).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::wire::bpf;

pub mod ring;
use ring::Ring;

/// Which way a captured frame went through the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received (addressed to this host or seen on the link).
    Incoming,
    /// Sent by this host (`PACKET_OUTGOING`), e.g. the hub's own response.
    Outgoing,
}

/// One frame where the source keeps it: the L3 frame, possibly cut by the
/// filter's snap length (transport packets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Borrowed<'a> {
    pub data: &'a [u8],
    pub direction: Direction,
    /// Interface the frame was seen on (useful with the "any" index 0).
    pub ifindex: u32,
}

/// A source of captured L3 frames. `next_frame` never blocks; the daemon polls
/// `fd` for readability.
pub trait PacketSource {
    /// Next frame, borrowed where it lies (the ring) until the next call,
    /// or `None` when nothing is queued. `now_ms` is the monotonic clock in
    /// ms (CLOCK_MONOTONIC, as [`PacketSource::waits`]), read once per
    /// drain rather than once per frame.
    fn next_frame(&mut self, now_ms: u64) -> io::Result<Option<Borrowed<'_>>>;
    /// Descriptor to poll for readability.
    fn fd(&self) -> RawFd;
    /// Also capture (truncated) transport data packets, or stop doing so.
    fn set_transport(&mut self, on: bool) -> io::Result<()>;
    /// Until when not to wait for `fd` (monotonic ms): over its budget
    /// lately, or coalescing wakeups; `next_frame` still works meanwhile.
    fn waits(&self) -> Option<u64> {
        None
    }
}

/// AF_PACKET capture of one interface (or all, with index 0).
pub struct PacketCapture {
    // Field order: the ring's cursor goes before the mapping, the mapping
    // before the socket.
    ring: Ring,
    _map: Mapping,
    fd: OwnedFd,
    listen_port: u16,
    transport: bool,
    /// Capturing on all interfaces: a VLAN-tagged frame is seen again,
    /// untagged, on its VLAN device (or is not for this host at all).
    any: bool,
}

/// A shared mapping of a packet socket's ring, unmapped on drop.
struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is plain memory; access goes through `Ring`.
unsafe impl Send for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len came from a successful mmap, unmapped only here.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

fn mono_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// A libc return value as a Result (negative: errno).
pub(crate) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `setsockopt(fd, level, name, value)` for a plain-data `value`.
pub(crate) fn set_option<T>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: value is valid for size_of::<T>() bytes during the call; the
    // kernel copies it.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Binds an AF_PACKET socket to `protocol` (an ETH_P_* value) on interface
/// `ifindex` (0: all).
pub(crate) fn bind_packet(fd: RawFd, protocol: u16, ifindex: u32) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex =
        i32::try_from(ifindex).map_err(|_| io::Error::other("interface index too large"))?;
    // SAFETY: sll is a valid sockaddr_ll of the given size.
    cvt(unsafe {
        libc::bind(
            fd,
            (&raw const sll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Installs (or atomically replaces) a classic BPF socket filter.
pub(crate) fn attach_filter(fd: RawFd, prog: &[libc::sock_filter]) -> io::Result<()> {
    let len = u16::try_from(prog.len()).map_err(|_| io::Error::other("BPF program too long"))?;
    let fprog = libc::sock_fprog {
        len,
        filter: prog.as_ptr().cast_mut(),
    };
    // fprog points to `prog`, alive for the call.
    set_option(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
}

/// Interface index by name (for `PacketCapture::open`).
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| io::Error::other("NUL in interface name"))?;
    // SAFETY: c is a valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        i => Ok(i),
    }
}

impl PacketCapture {
    /// Opens a nonblocking capture of interface `ifindex` (0 = all) for a
    /// WireGuard interface listening on `listen_port`. Needs CAP_NET_RAW.
    ///
    /// The socket is created with protocol 0, which receives nothing; the
    /// filter is attached before `bind` sets ETH_P_ALL and the interface. So
    /// no unfiltered frame can ever be queued, and none has to be drained.
    pub fn open(ifindex: u32, listen_port: u16, transport: bool) -> io::Result<Self> {
        Self::open_ring(ifindex, listen_port, transport, ring::RETIRE_TOV_MS)
    }

    fn open_ring(ifindex: u32, listen_port: u16, transport: bool, tov_ms: u32) -> io::Result<Self> {
        let ty = libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        // SAFETY: plain syscall; on success we own the new descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(cvt(libc::socket(libc::AF_PACKET, ty, 0))?) };
        let raw = fd.as_raw_fd();
        attach_filter(raw, &bpf::wireguard_filter(listen_port, transport))?;
        let version = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        set_option(raw, libc::SOL_PACKET, libc::PACKET_VERSION, &version)?;
        let req = libc::tpacket_req3 {
            tp_block_size: ring::BLOCK_SIZE as u32,
            tp_block_nr: ring::BLOCK_NR as u32,
            tp_frame_size: ring::FRAME_SIZE as u32,
            tp_frame_nr: (ring::BLOCK_SIZE / ring::FRAME_SIZE * ring::BLOCK_NR) as u32,
            tp_retire_blk_tov: tov_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        set_option(raw, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)?;
        let len = ring::BLOCK_SIZE * ring::BLOCK_NR;
        // SAFETY: maps the ring just configured on our socket; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                raw,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let map = Mapping { ptr, len };
        // SAFETY: the mapping is the socket's ring of BLOCK_NR blocks of
        // BLOCK_SIZE bytes (page-aligned), alive as long as `map`, which the
        // capture keeps and drops after the ring.
        let ring = unsafe {
            Ring::new(
                ptr.cast(),
                ring::BLOCK_SIZE,
                ring::BLOCK_NR,
                ring::FRAMES_PER_S,
            )
        };
        bind_packet(raw, libc::ETH_P_ALL as u16, ifindex)?;
        Ok(PacketCapture {
            ring,
            _map: map,
            fd,
            listen_port,
            transport,
            any: ifindex == 0,
        })
    }
}

impl PacketCapture {
    /// Frames lost since the last call: those the kernel dropped because
    /// every block of the ring was still with the reader (PACKET_STATISTICS
    /// resets on read), plus those the reader handed back unread over its
    /// frame budget. A flood is thus visible in `status` even though it
    /// never reached the verifier.
    pub fn take_drops(&mut self) -> io::Result<u32> {
        // SAFETY: tpacket_stats_v3 is plain data; all-zero is a valid value.
        let mut st: libc::tpacket_stats_v3 = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: st is valid for writes of len bytes.
        cvt(unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&raw mut st).cast(),
                &mut len,
            )
        })?;
        let shed = u32::try_from(self.ring.take_shed()).unwrap_or(u32::MAX);
        Ok(st.tp_drops.saturating_add(shed))
    }
}

impl PacketSource for PacketCapture {
    fn next_frame(&mut self, now_ms: u64) -> io::Result<Option<Borrowed<'_>>> {
        // On "any", tagged frames are also seen untagged on the VLAN device.
        let any = self.any;
        Ok(self
            .ring
            .next_where(now_ms, |f| !(any && f.vlan.is_some()))
            .map(|f| Borrowed {
                data: f.data,
                direction: f.direction,
                ifindex: f.ifindex,
            }))
    }

    fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn waits(&self) -> Option<u64> {
        self.ring.waits(mono_ms())
    }

    /// Swaps the filter in place; frames already queued under the old filter
    /// are still delivered, so callers classify every frame anyway.
    fn set_transport(&mut self, on: bool) -> io::Result<()> {
        if on != self.transport {
            attach_filter(
                self.fd.as_raw_fd(),
                &bpf::wireguard_filter(self.listen_port, on),
            )?;
            self.transport = on;
        }
        Ok(())
    }
}

/// In-memory [`PacketSource`] for tests of the code that consumes captures.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct QueueSource {
    pub frames: std::collections::VecDeque<(Vec<u8>, Direction, u32)>,
    pub transport: bool,
    /// The frame handed out last.
    current: Option<(Vec<u8>, Direction, u32)>,
}

#[cfg(test)]
impl PacketSource for QueueSource {
    fn next_frame(&mut self, _now_ms: u64) -> io::Result<Option<Borrowed<'_>>> {
        self.current = self.frames.pop_front();
        Ok(self
            .current
            .as_ref()
            .map(|(data, direction, ifindex)| Borrowed {
                data,
                direction: *direction,
                ifindex: *ifindex,
            }))
    }

    fn fd(&self) -> RawFd {
        -1
    }

    fn set_transport(&mut self, on: bool) -> io::Result<()> {
        self.transport = on;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::testns::{Netns, ip, is_root};
    use crate::wire::{self, Message};
    use std::net::{SocketAddr, UdpSocket};
    use std::process::Command;
    use std::time::{Duration, Instant};

    #[test]
    fn kernel_accepts_the_filters() {
        // Any socket takes a classic filter without privileges; the kernel's
        // checker validates jumps, loads and the final return.
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        for transport in [false, true] {
            let prog = bpf::wireguard_filter(51820, transport);
            attach_filter(s.as_raw_fd(), &prog).unwrap();
        }
        // ...and rejects a broken one, so the check above means something.
        let mut bad = bpf::wireguard_filter(51820, false);
        bad[1].jt = 200;
        assert!(attach_filter(s.as_raw_fd(), &bad).is_err());
    }

    #[test]
    fn queue_source_hands_out_frames() {
        let mut q = QueueSource::default();
        q.frames.push_back((vec![1, 2, 3], Direction::Outgoing, 7));
        let f = q.next_frame(0).unwrap().unwrap();
        assert_eq!(
            (f.data, f.direction, f.ifindex),
            (&[1, 2, 3][..], Direction::Outgoing, 7)
        );
        assert_eq!(q.next_frame(0).unwrap(), None);
    }

    /// Two namespaces joined by a veth pair: hub 192.0.2.1, 2001:db8:c::1;
    /// peer 192.0.2.2, 2001:db8:c::2. Returns (hub, peer, hub's interface).
    fn veth_lab(tag: char) -> (Netns, Netns, String) {
        let pid = std::process::id();
        let hub = Netns::new(format!("wgr-captest-{pid}-{tag}a"));
        let peer = Netns::new(format!("wgr-captest-{pid}-{tag}b"));
        let (hub_if, peer_if) = (format!("wgc{pid}{tag}a"), format!("wgc{pid}{tag}b"));
        ip(&[
            "link", "add", &hub_if, "netns", &hub.0, "type", "veth", "peer", "name", &peer_if,
            "netns", &peer.0,
        ]);
        for (ns, dev, v4, v6) in [
            (&hub, &hub_if, "192.0.2.1/24", "2001:db8:c::1/64"),
            (&peer, &peer_if, "192.0.2.2/24", "2001:db8:c::2/64"),
        ] {
            ns.ip(&["addr", "add", v4, "dev", dev]);
            ns.ip(&["addr", "add", v6, "dev", dev, "nodad"]);
            ns.ip(&["link", "set", dev, "up"]);
        }
        (hub, peer, hub_if)
    }

    /// A WireGuard-shaped payload carrying `marker` in its index field.
    fn wg(ty: u8, len: usize, marker: u32) -> Vec<u8> {
        let mut p = vec![0x5a; len];
        p[..4].copy_from_slice(&[ty, 0, 0, 0]);
        p[4..8].copy_from_slice(&marker.to_le_bytes());
        p
    }

    /// Sends `l3` (IPv4) in an Ethernet broadcast frame tagged with `vlan`
    /// out of `dev`, through a raw packet socket.
    fn send_tagged(dev: &str, vlan: u16, l3: &[u8]) {
        let mut eth = vec![0xff; 6];
        eth.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x81, 0x00]);
        eth.extend_from_slice(&vlan.to_be_bytes());
        eth.extend_from_slice(&[0x08, 0x00]);
        eth.extend_from_slice(l3);
        // SAFETY: plain syscall; owned on success.
        let fd = unsafe {
            OwnedFd::from_raw_fd(cvt(libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0)).unwrap())
        };
        bind_packet(fd.as_raw_fd(), 0, ifindex(dev).unwrap()).unwrap();
        // SAFETY: eth is valid for its length.
        let n = unsafe { libc::send(fd.as_raw_fd(), eth.as_ptr().cast(), eth.len(), 0) };
        assert_eq!(n, eth.len() as isize, "{}", io::Error::last_os_error());
    }

    fn send(from: &str, to: &str, payload: &[u8]) {
        let s = UdpSocket::bind(from).unwrap();
        s.send_to(payload, to).unwrap();
    }

    /// Captures until `want` frames arrived (plus a grace period to catch
    /// extras) or the deadline passes: (frame, datagram, direction, ifindex).
    fn collect(
        cap: &mut PacketCapture,
        want: usize,
        wait: Duration,
    ) -> Vec<(Vec<u8>, wire::Datagram, Direction, u32)> {
        let mut got = Vec::new();
        let deadline = Instant::now() + wait;
        let mut grace: Option<Instant> = None;
        while Instant::now() < grace.unwrap_or(deadline) {
            match cap.next_frame(mono_ms()).unwrap() {
                Some(c) => {
                    let frame = c.data.to_vec();
                    let d = wire::parse_l3_prefix(&frame).unwrap();
                    got.push((frame, d, c.direction, c.ifindex));
                    if got.len() >= want && grace.is_none() {
                        grace = Some(Instant::now() + Duration::from_millis(300));
                    }
                }
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        got
    }

    fn marker(frame: &[u8], d: &wire::Datagram) -> (u8, u32) {
        let p = d.payload(frame);
        (p[0], u32::from_le_bytes(p[4..8].try_into().unwrap()))
    }

    #[test]
    fn root_only_wireguard_shapes_reach_user_space() {
        if !is_root() {
            eprintln!(
                "skip root_only_wireguard_shapes_reach_user_space: needs root (netns, AF_PACKET)"
            );
            return;
        }
        let (hub, peer, hub_if) = veth_lab('s');
        let (mut cap, hub_index) = hub.run(|| {
            let i = ifindex(&hub_if).unwrap();
            (PacketCapture::open(i, 51820, false).unwrap(), i)
        });
        let mut any = hub.run(|| PacketCapture::open(0, 51820, false).unwrap());

        peer.run(|| {
            let to = "192.0.2.1:51820";
            send("192.0.2.2:4000", to, &wg(1, 148, 1)); // initiation: yes
            send("192.0.2.2:0", "192.0.2.1:51821", &wg(1, 148, 2)); // other port
            send("192.0.2.2:0", to, &wg(1, 100, 3)); // bad length
            send("192.0.2.2:0", to, &wg(4, 64, 4)); // transport, not asked for
            send("192.0.2.2:0", to, b"hello, not wireguard");
            send("192.0.2.2:0", to, &wg(2, 92, 5)); // response to the port
            send("192.0.2.2:51820", "192.0.2.1:4001", &wg(2, 92, 6)); // response: yes
            send(
                "[2001:db8:c::2]:4000",
                "[2001:db8:c::1]:51820",
                &wg(1, 148, 7),
            ); // yes
            send("[2001:db8:c::2]:0", "[2001:db8:c::1]:51820", &wg(3, 64, 8)); // cookie
        });
        hub.run(|| send("192.0.2.1:51820", "192.0.2.2:4002", &wg(2, 92, 9))); // own: yes

        let got = collect(&mut cap, 4, Duration::from_secs(5));
        // Sorted: neighbour resolution may reorder the two families.
        let mut seen: Vec<_> = got
            .iter()
            .map(|(f, d, dir, _)| (marker(f, d), *dir))
            .collect();
        seen.sort_by_key(|((_, m), _)| *m);
        assert_eq!(
            seen,
            [
                ((1, 1), Direction::Incoming),
                ((2, 6), Direction::Incoming),
                ((1, 7), Direction::Incoming),
                ((2, 9), Direction::Outgoing),
            ],
            "only WireGuard shapes, nothing else"
        );
        assert!(got.iter().all(|(.., i)| *i == hub_index));
        for (f, d, ..) in &got {
            let want = match marker(f, d).1 {
                1 => "192.0.2.2:4000",
                6 => "192.0.2.2:51820",
                7 => "[2001:db8:c::2]:4000",
                _ => "192.0.2.1:51820",
            };
            assert_eq!(d.src, want.parse::<SocketAddr>().unwrap());
            assert!(!d.truncated);
            wire::classify(d.payload(f)).unwrap();
        }

        // The "any" capture saw the same frames on the same interface.
        let all = collect(&mut any, 4, Duration::from_secs(5));
        assert_eq!(all.len(), 4);
        assert!(all.iter().all(|(.., i)| *i == hub_index));

        // Transport data only once asked for, cut after its first 32 bytes.
        cap.set_transport(true).unwrap();
        peer.run(|| {
            send("192.0.2.2:4000", "192.0.2.1:51820", &wg(4, 200, 10));
            send("192.0.2.2:4000", "192.0.2.1:51820", &wg(1, 148, 11));
        });
        let got = collect(&mut cap, 2, Duration::from_secs(5));
        assert_eq!(got.len(), 2);
        let (f, d, ..) = &got[0];
        assert_eq!(f.len(), 20 + 8 + 32);
        assert!(d.truncated);
        let Ok(Message::Transport(t)) = wire::classify(d.payload(f)) else {
            panic!("not a transport header");
        };
        assert_eq!(t.receiver_index(), 10);
        assert_eq!(marker(&got[1].0, &got[1].1), (1, 11));
        cap.set_transport(false).unwrap();
        peer.run(|| send("192.0.2.2:4000", "192.0.2.1:51820", &wg(4, 200, 12)));
        assert!(collect(&mut cap, 1, Duration::from_secs(1)).is_empty());
    }

    /// What `root_ring_real_block` sent, as the kernel wrote it into one
    /// block (also the recorded fixture of `ring::tests`).
    pub(crate) fn check_recorded_block(block: &[u8]) {
        let frames: Vec<ring::Frame<'_>> = ring::Frames::new(block).collect();
        let mut seen: Vec<_> = frames
            .iter()
            .map(|f| {
                let d = wire::parse_l3_prefix(f.data).unwrap();
                let (ty, m) = marker(f.data, &d);
                (m, ty, f, d)
            })
            .collect();
        seen.sort_by_key(|(m, ..)| *m);
        let shape: Vec<_> = seen
            .iter()
            .map(|(m, ty, f, d)| (*m, *ty, f.direction, f.protocol, f.vlan, d.truncated))
            .collect();
        use Direction::{Incoming as In, Outgoing as Out};
        assert_eq!(
            shape,
            [
                (1, 1, In, 0x0800, None, false),
                (2, 1, In, 0x86dd, None, false),
                (3, 4, In, 0x0800, None, true),
                (4, 2, Out, 0x0800, None, false),
                (5, 1, In, 0x0800, Some(7), false),
            ]
        );
        let (_, _, cut, d) = &seen[2];
        assert_eq!((cut.data.len(), cut.wire_len), (20 + 8 + 32, 20 + 8 + 200));
        assert!(cut.truncated());
        assert!(matches!(
            wire::classify(d.payload(cut.data)),
            Ok(Message::Transport(t)) if t.receiver_index() == 3
        ));
        let (_, _, v6, d) = &seen[1];
        assert_eq!(v6.data.len(), 40 + 8 + 148);
        assert_eq!(d.src, "[2001:db8:c::2]:4000".parse::<SocketAddr>().unwrap());
        assert_eq!(
            seen[4].3.dst,
            "203.0.113.9:51820".parse::<SocketAddr>().unwrap()
        );
        // One interface, the veth, for all of them.
        assert!(frames.iter().all(|f| f.ifindex == frames[0].ifindex));
    }

    #[test]
    fn root_ring_real_block() {
        if !is_root() {
            eprintln!("skip root_ring_real_block: needs root (netns, AF_PACKET)");
            return;
        }
        let (hub, peer, hub_if) = veth_lab('r');
        let peer_if = hub_if.replace("ra", "rb");
        // Neighbours resolved first, so that nothing reorders the frames.
        for to in ["192.0.2.1", "2001:db8:c::1"] {
            let st = Command::new("ip")
                .args(["netns", "exec", &peer.0, "ping", "-c1", "-W2", to])
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(st.success(), "ping {to}");
        }
        let mut one = hub.run(|| {
            let i = ifindex(&hub_if).unwrap();
            // A long retire timeout: all five frames land in one block.
            PacketCapture::open_ring(i, 51820, true, 2000).unwrap()
        });
        let mut any = hub.run(|| PacketCapture::open(0, 51820, true).unwrap());
        peer.run(|| {
            let to = "192.0.2.1:51820";
            send("192.0.2.2:4000", to, &wg(1, 148, 1));
            send(
                "[2001:db8:c::2]:4000",
                "[2001:db8:c::1]:51820",
                &wg(1, 148, 2),
            );
            send("192.0.2.2:4000", to, &wg(4, 200, 3));
        });
        hub.run(|| send("192.0.2.1:51820", "192.0.2.2:4002", &wg(2, 92, 4)));
        // An 802.1Q-tagged frame (VLAN 7, for which the hub has no device):
        // the receive path moves the tag into the packet's metadata.
        peer.run(|| {
            send_tagged(
                &peer_if,
                7,
                &wire::tests::ipv4_udp(5, 0, 4000, 51820, &wg(1, 148, 5)),
            )
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let block = loop {
            if let Some(b) = one.ring.peek_block() {
                break b.to_vec();
            }
            assert!(Instant::now() < deadline, "no block handed over");
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Ok(path) = std::env::var("WGROAM_RECORD_BLOCK") {
            let hex: String = block.iter().map(|b| format!("{b:02x}")).collect();
            std::fs::write(path, hex + "\n").unwrap();
        }
        check_recorded_block(&block);
        // Reading it through the ring gives the same five frames.
        assert_eq!(collect(&mut one, 5, Duration::from_secs(1)).len(), 5);
        // On "any" the tagged frame is skipped: a VLAN device would see it
        // again untagged, and without one it is not for this host.
        let all = collect(&mut any, 4, Duration::from_secs(5));
        let mut markers: Vec<u32> = all.iter().map(|(f, d, ..)| marker(f, d).1).collect();
        markers.sort();
        assert_eq!(markers, [1, 2, 3, 4]);
        assert_eq!(any.take_drops().unwrap() + one.take_drops().unwrap(), 0);
    }

    /// A burst while the reader is busy (the hub verifying initiations):
    /// frames a few ms apart each retire a block of their own, and the ring
    /// keeps them all (four big blocks kept four frames).
    #[test]
    fn root_ring_keeps_a_trickle_while_the_reader_is_busy() {
        if !is_root() {
            eprintln!("skip root_ring_keeps_a_trickle_while_the_reader_is_busy: needs root");
            return;
        }
        let (hub, peer, hub_if) = veth_lab('t');
        let st = Command::new("ip")
            .args(["netns", "exec", &peer.0, "ping", "-c1", "-W2", "192.0.2.1"])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        let mut cap =
            hub.run(|| PacketCapture::open(ifindex(&hub_if).unwrap(), 51820, false).unwrap());
        let n = 60u32;
        peer.run(|| {
            let s = UdpSocket::bind("192.0.2.2:4000").unwrap();
            for m in 0..n {
                s.send_to(&wg(1, 148, m), "192.0.2.1:51820").unwrap();
                std::thread::sleep(Duration::from_millis(2 * u64::from(ring::RETIRE_TOV_MS)));
            }
        });
        // Nothing was read meanwhile.
        let got = collect(&mut cap, n as usize, Duration::from_secs(3));
        let mut markers: Vec<u32> = got.iter().map(|(f, d, ..)| marker(f, d).1).collect();
        markers.sort();
        assert_eq!(markers, (0..n).collect::<Vec<_>>());
        assert_eq!(cap.take_drops().unwrap(), 0);
    }

    /// A wireguard-go process in a namespace, stopped (and its UAPI socket
    /// removed) on drop.
    struct WireguardGo {
        child: std::process::Child,
        name: String,
    }

    impl WireguardGo {
        fn start(ns: &Netns, name: &str) -> WireguardGo {
            let child = Command::new("ip")
                .args(["netns", "exec", &ns.0, "wireguard-go", name])
                .env("WG_PROCESS_FOREGROUND", "1")
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let wg = WireguardGo {
                child,
                name: name.to_string(),
            };
            let sock = format!("/run/wireguard/{name}.sock");
            let deadline = Instant::now() + Duration::from_secs(10);
            while !std::path::Path::new(&sock).exists() {
                assert!(
                    Instant::now() < deadline,
                    "wireguard-go {name} did not start"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            wg
        }
    }

    impl Drop for WireguardGo {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_file(format!("/run/wireguard/{}.sock", self.name));
        }
    }

    fn base64(b: &[u8]) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for c in b.chunks(3) {
            let n = c
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &x)| n | u32::from(x) << (16 - 8 * i));
            for i in 0..4 {
                out.push(if i <= c.len() {
                    A[(n >> (18 - 6 * i) & 63) as usize] as char
                } else {
                    '='
                });
            }
        }
        out
    }

    /// `wg set` in a namespace; the private key goes through a 0600 file.
    fn wg_set(ns: &Netns, dev: &str, private: &[u8; 32], args: &[&str]) {
        use std::os::unix::fs::OpenOptionsExt;
        let path = std::env::temp_dir().join(format!("{dev}.key"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, base64(private).as_bytes()).unwrap();
        let key = path.to_str().unwrap();
        let mut all = vec!["netns", "exec", &ns.0, "wg", "set", dev, "private-key", key];
        all.extend_from_slice(args);
        let st = Command::new("ip").args(&all).status().unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(st.success(), "wg set {dev} failed");
    }

    #[test]
    fn root_only_live_wireguard_go_handshake_is_identified() {
        use crate::wire::noise::{Responder, Tai64n, tests::build_initiation};
        use x25519_dalek::{PublicKey, StaticSecret};
        if !is_root() {
            eprintln!("skip root_only_live_wireguard_go_handshake_is_identified: needs root");
            return;
        }
        if Command::new("wireguard-go")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skip root_only_live_wireguard_go_handshake_is_identified: no wireguard-go");
            return;
        }
        let (hub, peer, hub_if) = veth_lab('w');
        let pid = std::process::id();
        let (hub_wg, peer_wg) = (format!("wgc{pid}h"), format!("wgc{pid}p"));
        let (hub_key, peer_key) = ([0x11u8; 32], [0x22u8; 32]);
        let peer_pub = PublicKey::from(&StaticSecret::from(peer_key)).to_bytes();
        let responder = Responder::new(hub_key);

        let mut cap = hub
            .run(|| PacketCapture::open(ifindex(&hub_if)?, 51820, false))
            .unwrap();
        let _hub_go = WireguardGo::start(&hub, &hub_wg);
        let _peer_go = WireguardGo::start(&peer, &peer_wg);
        let (hub_b64, peer_b64) = (base64(responder.public_key()), base64(&peer_pub));
        wg_set(
            &hub,
            &hub_wg,
            &hub_key,
            &[
                "listen-port",
                "51820",
                "peer",
                &peer_b64,
                "allowed-ips",
                "2001:db8:c:1::2/128",
            ],
        );
        hub.ip(&["link", "set", &hub_wg, "up"]);
        peer.ip(&["link", "set", &peer_wg, "up"]);
        // A persistent keepalive makes the peer handshake at once.
        wg_set(
            &peer,
            &peer_wg,
            &peer_key,
            &[
                "listen-port",
                "40001",
                "peer",
                &hub_b64,
                "allowed-ips",
                "2001:db8:c:1::1/128",
                "endpoint",
                "192.0.2.1:51820",
                "persistent-keepalive",
                "1",
            ],
        );

        let got = collect(&mut cap, 2, Duration::from_secs(10));
        let init = got.iter().find(|(f, d, dir, _)| {
            *dir == Direction::Incoming
                && matches!(wire::classify(d.payload(f)), Ok(Message::Initiation(_)))
        });
        let (f, d, ..) = init.expect("captured the live initiation");
        assert_eq!(d.src, "192.0.2.2:40001".parse::<SocketAddr>().unwrap());
        let who = responder.identify_payload(d.payload(f)).unwrap();
        assert_eq!(who.static_public, peer_pub);
        let resp = got
            .iter()
            .find_map(|(f, d, dir, _)| match wire::classify(d.payload(f)) {
                Ok(Message::Response(r)) if *dir == Direction::Outgoing => Some(r.receiver_index()),
                _ => None,
            });
        assert_eq!(
            resp,
            Some(who.sender_index),
            "hub's wireguard-go answered it"
        );

        // The test builder's initiation is accepted by real WireGuard too: it
        // answers with a response addressed to the builder's sender index.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let ts = Tai64n {
            seconds: 0x4000_0000_0000_000a + now.as_secs() + 2,
            nanos: 0,
        };
        assert!(ts.is_newer_than(&who.timestamp));
        let built = build_initiation(peer_key, [0x33; 32], *responder.public_key(), ts, 0x5eed);
        assert_eq!(responder.identify_payload(&built).unwrap().timestamp, ts);
        peer.run(|| send("192.0.2.2:40002", "192.0.2.1:51820", &built));
        let got = collect(&mut cap, 2, Duration::from_secs(5));
        let answered = got.iter().any(|(f, d, dir, _)| {
            *dir == Direction::Outgoing
                && d.dst == "192.0.2.2:40002".parse::<SocketAddr>().unwrap()
                && matches!(wire::classify(d.payload(f)), Ok(Message::Response(r)) if r.receiver_index() == 0x5eed)
        });
        assert!(
            answered,
            "wireguard-go answered the built initiation: {got:?}"
        );
    }
}
