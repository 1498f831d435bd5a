//! Pairing on the hub (issue 14): the invite store file, `wgroam invite`,
//! and the redeem listener the hub's loop polls. The rules are in
//! [`crate::core::pairing`]; this file does the I/O.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::config::uci::syntax::Section;
use crate::config::{Config, Interface, Role};
use crate::core::Level;
use crate::core::PublicKey;
use crate::core::net::IpNet;
use crate::core::pairing::{self, Decision, Grant, Invite, InviteState, Pool, RateLimit, Refusal};
use crate::os::syslog::emit;
use crate::os::uci::{Change, UciStore};
use crate::os::wg::WireGuard;

/// `n` bytes from the kernel's CSPRNG (the getrandom system call itself:
/// the static musl builds link libc's `getrandom` as a weak, null symbol).
pub fn random<const N: usize>() -> io::Result<[u8; N]> {
    let mut b = [0u8; N];
    let mut got = 0;
    while got < N {
        // SAFETY: the kernel writes at most N - got bytes into b[got..].
        let r = unsafe { libc::syscall(libc::SYS_getrandom, b[got..].as_mut_ptr(), N - got, 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        got += r as usize;
    }
    Ok(b)
}

// ---------------------------------------------------------------------------
// The store: <state_dir>/invites.json, guarded by an flock on invites.lock.

pub fn store_path(state_dir: &Path) -> PathBuf {
    state_dir.join("invites.json")
}

/// Holds the store's lock while alive.
pub struct Locked {
    _lock: fs::File,
    path: PathBuf,
    pub invites: Vec<Invite>,
}

fn grant_json(g: &Grant) -> Value {
    json!({
        "tunnel_addr": g.tunnel_addr.to_string(),
        "subnet_len": g.subnet_len,
        "prefix": g.prefix.to_string(),
        "hub_tunnel_addr": g.hub_tunnel_addr.to_string(),
    })
}

fn grant_from(v: &Value) -> Option<Grant> {
    Some(Grant {
        tunnel_addr: v["tunnel_addr"].as_str()?.parse().ok()?,
        subnet_len: v["subnet_len"].as_u64()? as u8,
        prefix: v["prefix"].as_str()?.parse().ok()?,
        hub_tunnel_addr: v["hub_tunnel_addr"].as_str()?.parse().ok()?,
    })
}

fn to_json(invites: &[Invite]) -> Value {
    let list: Vec<Value> = invites
        .iter()
        .map(|i| {
            let mut v = json!({
                "name": i.name, "interface": i.iface, "hash": i.hash,
                "created": i.created, "expires": i.expires,
            });
            match &i.state {
                InviteState::Pending => v["state"] = "pending".into(),
                InviteState::Revoked => v["state"] = "revoked".into(),
                InviteState::Redeemed { joiner, grant } => {
                    v["state"] = "redeemed".into();
                    v["joiner"] = PublicKey(*joiner).to_base64().into();
                    v["grant"] = grant_json(grant);
                }
            }
            v
        })
        .collect();
    json!({"version": 1, "invites": list})
}

fn from_json(v: &Value) -> Vec<Invite> {
    let Some(list) = v["invites"].as_array() else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|i| {
            let state = match i["state"].as_str()? {
                "pending" => InviteState::Pending,
                "revoked" => InviteState::Revoked,
                "redeemed" => InviteState::Redeemed {
                    joiner: PublicKey::from_base64(i["joiner"].as_str()?)?.0,
                    grant: grant_from(&i["grant"])?,
                },
                _ => return None,
            };
            Some(Invite {
                name: i["name"].as_str()?.to_string(),
                iface: i["interface"].as_str()?.to_string(),
                hash: i["hash"].as_str()?.to_string(),
                created: i["created"].as_u64()?,
                expires: i["expires"].as_u64()?,
                state,
            })
        })
        .collect()
}

/// Locks and reads the store (an absent file is an empty store).
pub fn lock(state_dir: &Path) -> io::Result<Locked> {
    fs::create_dir_all(state_dir)?;
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(state_dir.join("invites.lock"))?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let path = store_path(state_dir);
    let invites = match fs::read_to_string(&path) {
        // from_slice: the parser instance the other JSON readers use.
        Ok(t) => from_json(&serde_json::from_slice(t.as_bytes()).unwrap_or(Value::Null)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    Ok(Locked {
        _lock: lock,
        path,
        invites,
    })
}

impl Locked {
    /// Writes the store atomically (temporary file, fsync, rename); mode 600.
    pub fn save(&self) -> io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = self.path.with_extension("json.tmp");
        let mut f = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(to_json(&self.invites).to_string().as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &self.path)
    }
}

// ---------------------------------------------------------------------------
// What the hub knows from uci `network`

/// Every allowed IP of every WireGuard peer section in `network`.
pub fn uci_allowed_ips(network: &[Section]) -> Vec<IpNet> {
    network
        .iter()
        .filter(|s| s.stype.starts_with("wireguard_"))
        .filter_map(|s| s.get("allowed_ips"))
        .flat_map(|v| {
            v.values()
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .flat_map(|a| a.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter_map(|a| a.parse::<IpNet>().ok())
        .collect()
}

/// The hub interface's own IPv6 address and subnet length
/// (`network.<if>.addresses`).
pub fn hub_address(network: &[Section], iface: &str) -> Option<(Ipv6Addr, u8)> {
    let sec = network
        .iter()
        .find(|s| s.stype == "interface" && s.name.as_deref() == Some(iface))?;
    let vals: Vec<String> = ["addresses", "ip6addr"]
        .iter()
        .filter_map(|o| sec.get(o))
        .flat_map(|v| {
            v.values()
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .flat_map(|a| a.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect();
    vals.iter().find_map(|a| {
        let (addr, len) = a.split_once('/').unwrap_or((a, "128"));
        let addr: Ipv6Addr = addr.parse().ok()?;
        let len: u8 = len.parse().ok().filter(|l| *l <= 128)?;
        Some((addr, len))
    })
}

/// The uci section name of a paired peer.
pub fn peer_section(name: &str) -> String {
    format!(
        "wgroam_{}",
        name.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect::<String>()
    )
}

/// The hub interface an invite is for: `--interface`, or the only one with a pool.
pub fn pairing_interface<'a>(cfg: &'a Config, want: Option<&str>) -> Result<&'a Interface, String> {
    if cfg.role != Role::Hub {
        return Err("wgroam.agent.role: this router is not a hub; run `wgroam invite` on the hub and `wgroam join` here".into());
    }
    let with_pool: Vec<&Interface> = cfg.interfaces.iter().filter(|i| i.pair.is_some()).collect();
    match want {
        Some(w) => {
            let i = cfg.interfaces.iter().find(|i| i.name == w).ok_or_else(|| {
                format!(
                    "--interface: wgroam has no interface section '{w}'; expected one of {}",
                    cfg.interfaces
                        .iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            if i.pair.is_none() {
                return Err(no_pool(w));
            }
            Ok(i)
        }
        None => match with_pool.as_slice() {
            [one] => Ok(one),
            [] => Err(no_pool(
                cfg.interfaces.first().map_or("wg0", |i| i.name.as_str()),
            )),
            _ => Err(
                "--interface: several interfaces have a pool; name one with --interface IF".into(),
            ),
        },
    }
}

fn no_pool(iface: &str) -> String {
    format!(
        "wgroam.{iface}.pool: not set; pairing hands out prefixes from it — uci set wgroam.{iface}.pool=2001:db8:100::/48; uci commit wgroam; /etc/init.d/wgroam reload"
    )
}

// ---------------------------------------------------------------------------
// The redeem listener (in the hub's loop)

struct Listener {
    iface: Interface,
    socket: UdpSocket,
}

/// One UDP socket per interface with a pool.
pub struct RedeemListener {
    listeners: Vec<Listener>,
    rate: RateLimit,
    uci: Box<dyn UciStore>,
    state_dir: PathBuf,
}

impl RedeemListener {
    /// Binds `[::]:redeem_port` (IPv4 and IPv6) for each interface with a pool.
    pub fn open(cfg: &Config, uci: Box<dyn UciStore>) -> Self {
        let mut listeners = Vec::new();
        for i in cfg.interfaces.iter().filter(|i| i.pair.is_some()) {
            let port = i.pair.map_or(0, |p| p.redeem_port);
            let bound =
                UdpSocket::bind(("::", port)).or_else(|_| UdpSocket::bind(("0.0.0.0", port)));
            match bound.and_then(|s| s.set_nonblocking(true).map(|()| s)) {
                Ok(socket) => {
                    emit(
                        Level::Notice,
                        &format!("pair: {} listening for redeems on UDP {port}", i.ifname),
                    );
                    listeners.push(Listener {
                        iface: i.clone(),
                        socket,
                    });
                }
                Err(e) => emit(
                    Level::Error,
                    &format!(
                        "pair: {}: cannot listen on UDP {port} ({e}); set wgroam.{}.redeem_port to a free port",
                        i.ifname, i.name
                    ),
                ),
            }
        }
        RedeemListener {
            listeners,
            rate: RateLimit::default(),
            uci,
            state_dir: cfg.state_dir.clone(),
        }
    }

    pub fn fds(&self) -> Vec<RawFd> {
        self.listeners
            .iter()
            .map(|l| l.socket.as_raw_fd())
            .collect()
    }

    /// Handles every datagram waiting on listener `idx`. `true` when a new
    /// peer was added (the caller re-reads uci).
    pub fn drain(&mut self, idx: usize, wg: &dyn WireGuard, now_wall: u64) -> bool {
        let mut added = false;
        let mut buf = [0u8; 512];
        loop {
            let Some(l) = self.listeners.get(idx) else {
                return added;
            };
            let (n, from) = match l.socket.recv_from(&mut buf) {
                Ok(x) => x,
                Err(_) => return added,
            };
            let (reply, new_peer) = self.handle(idx, &buf[..n], from, wg, now_wall);
            if let Some(r) = reply {
                let _ = self.listeners[idx].socket.send_to(&r, from);
            }
            added |= new_peer;
        }
    }

    fn handle(
        &mut self,
        idx: usize,
        b: &[u8],
        from: SocketAddr,
        wg: &dyn WireGuard,
        now: u64,
    ) -> (Option<Vec<u8>>, bool) {
        let iface = self.listeners[idx].iface.clone();
        let src = canonical(from.ip());
        if b.len() != pairing::REQUEST_LEN || &b[..4] != pairing::REQUEST_MAGIC {
            return (None, false);
        }
        if !self.rate.allow(src, now) {
            emit(
                Level::Warn,
                &format!(
                    "pair: redeem from {src} refused: rate limited ({} per {} s)",
                    RateLimit::BURST,
                    RateLimit::WINDOW_S
                ),
            );
            return (Some(pairing::plain_refusal(Refusal::RateLimited)), false);
        }
        let private = match wg.read(&iface.ifname, iface.backend) {
            Ok(Some(v)) => v.private_key,
            _ => None,
        };
        let Some(private) = private else {
            emit(
                Level::Error,
                &format!(
                    "pair: redeem from {src} dropped: cannot read {}'s private key",
                    iface.ifname
                ),
            );
            return (None, false);
        };
        let opened = match pairing::open_request(b, &private) {
            Ok(o) => o,
            Err(false) => return (None, false),
            Err(true) => {
                emit(
                    Level::Warn,
                    &format!(
                        "pair: redeem from {src} refused: does not decrypt with {}'s key (wrong hub or altered invite)",
                        iface.ifname
                    ),
                );
                return (Some(pairing::plain_refusal(Refusal::WrongHub)), false);
            }
        };
        let joiner = PublicKey(opened.joiner_key);
        let hash = pairing::secret_hash(&opened.secret);
        let mut store = match lock(&self.state_dir) {
            Ok(s) => s,
            Err(e) => {
                emit(
                    Level::Error,
                    &format!("pair: cannot read the invite store: {e}"),
                );
                return (Some(opened.answer(Err(Refusal::Failed))), false);
            }
        };
        let name = store
            .invites
            .iter()
            .find(|v| v.hash == hash)
            .map(|v| v.name.clone());
        let label = name.as_deref().unwrap_or("?");
        match pairing::decide(&store.invites, &hash, &joiner.0, now) {
            Decision::Refuse(r) => {
                emit(
                    Level::Warn,
                    &format!(
                        "pair: redeem of invite '{label}' from {src} (key {}) refused: {r:?}",
                        joiner.short()
                    ),
                );
                (Some(opened.answer(Err(r))), false)
            }
            Decision::Repeat(g) => {
                emit(
                    Level::Info,
                    &format!(
                        "pair: invite '{label}' asked again by {} from {src}; same answer",
                        joiner.short()
                    ),
                );
                (Some(opened.answer(Ok(&g))), false)
            }
            Decision::Apply(i) => {
                let inv = store.invites[i].clone();
                match self.apply(&iface, &inv, &joiner, wg) {
                    Ok(g) => {
                        store.invites[i].state = InviteState::Redeemed {
                            joiner: joiner.0,
                            grant: g,
                        };
                        if let Err(e) = store.save() {
                            emit(
                                Level::Error,
                                &format!("pair: cannot write the invite store: {e}"),
                            );
                        }
                        emit(
                            Level::Notice,
                            &format!(
                                "pair: invite '{}' redeemed by {} from {src}: prefix {}, tunnel {}, peer network.{}",
                                inv.name,
                                joiner.short(),
                                g.prefix,
                                g.tunnel_addr,
                                peer_section(&inv.name)
                            ),
                        );
                        (Some(opened.answer(Ok(&g))), true)
                    }
                    Err((r, e)) => {
                        emit(
                            Level::Error,
                            &format!(
                                "pair: redeem of invite '{}' from {src} failed: {e}",
                                inv.name
                            ),
                        );
                        (Some(opened.answer(Err(r))), false)
                    }
                }
            }
        }
    }

    /// Allocates, writes the peer section (one `uci commit network`) and adds
    /// the peer live. On failure nothing stays behind.
    fn apply(
        &self,
        iface: &Interface,
        inv: &Invite,
        joiner: &PublicKey,
        wg: &dyn WireGuard,
    ) -> Result<Grant, (Refusal, String)> {
        let fail = |e: String| (Refusal::Failed, e);
        let pair = iface.pair.ok_or_else(|| fail("no pool".into()))?;
        let network = self.uci.load("network").map_err(|e| fail(e.to_string()))?;
        let (hub_addr, subnet_len) = hub_address(&network, &iface.name).ok_or_else(|| {
            fail(format!(
                "network.{}.addresses has no IPv6 address; tunnel addresses come from its subnet — add one, e.g. uci add_list network.{}.addresses=fd00:77::1/64",
                iface.name, iface.name
            ))
        })?;
        let mut taken = uci_allowed_ips(&network);
        if let Ok(Some(v)) = wg.read(&iface.ifname, iface.backend) {
            if v.peers.iter().any(|p| p.key == *joiner) {
                return Err(fail(format!(
                    "key {} is already a peer of {}",
                    joiner.short(),
                    iface.ifname
                )));
            }
            taken.extend(v.allowed_ips);
        }
        let pool = Pool {
            pool: pair.pool,
            size: pair.size,
            hub_addr,
            subnet_len,
        };
        let g = pairing::allocate(&pool, &taken).map_err(|e| (Refusal::Exhausted, e))?;
        let sec = peer_section(&inv.name);
        if network
            .iter()
            .any(|s| s.name.as_deref() == Some(sec.as_str()))
        {
            return Err(fail(format!("network.{sec} already exists")));
        }
        let allowed = [
            IpNet::host(IpAddr::V6(g.tunnel_addr)).to_string(),
            g.prefix.to_string(),
        ];
        let changes = [
            Change::add_section("network", &sec, &format!("wireguard_{}", iface.name)),
            Change::set("network", &sec, "public_key", &joiner.to_base64()),
            Change::set(
                "network",
                &sec,
                "description",
                &format!("wgroam pairing: {}", inv.name),
            ),
            Change::set_list("network", &sec, "allowed_ips", &allowed),
        ];
        self.uci.stage(&changes).map_err(|e| fail(e.to_string()))?;
        if let Err(e) = self.uci.commit("network") {
            let _ = self.uci.stage(&[Change::delete_section("network", &sec)]);
            return Err(fail(e.to_string()));
        }
        let ips = [
            (IpAddr::V6(g.tunnel_addr), 128u8),
            (g.prefix.addr(), g.prefix.prefix_len()),
        ];
        if let Err(e) = wg.add_peer(&iface.ifname, iface.backend, joiner, &ips) {
            let _ = self.uci.stage(&[Change::delete_section("network", &sec)]);
            let _ = self.uci.commit("network");
            return Err(fail(format!(
                "cannot add the peer to {}: {e}",
                iface.ifname
            )));
        }
        Ok(g)
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests;
