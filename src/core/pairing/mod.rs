//! Pairing (issue 14), the pure parts: the invite token, the redeem messages,
//! the allocator of prefixes and tunnel addresses, and the rules of the
//! hub's invite store. No clock, no socket, no randomness of its own: the
//! adapters (`src/hub/pairing/mod.rs`) pass time and random bytes in.
//!
//! The invite carries the hub's WireGuard public key (it authenticates the
//! hub), a one-time 128-bit secret (it authenticates the joiner; the hub
//! stores only its BLAKE2s hash), the hub's WireGuard endpoint and the UDP
//! port of the redeem listener. Redeem is one request and one answer:
//!
//! ```text
//! request  "WGRQ" | E (32) | AEAD(k1, 0, secret (16) | joiner public key (32))   ad = "WGRQ" | E | hub key
//! answer   "WGRS" | AEAD(k2, 0, code (1) | body)                                    ad = "WGRS" | E
//! refusal  "WGRX" | code (1)        (only when the request cannot be decrypted or is rate limited)
//! k1 | k2 = BLAKE2s("wgroam pair v1" | X25519(e, hub) | E | hub key | 1 or 2)
//! ```
//!
//! E is an ephemeral key made for this request. Somebody who records the
//! exchange sees E and ciphertext: without the hub's private key (or e) the
//! secret, the joiner's key and the allocation stay hidden, and a replayed
//! request is answered only for the joiner key inside it. The joiner's
//! private key never leaves it: only its public key is sent.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use blake2::{Blake2s256, Digest};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce, Tag};
use x25519_dalek::{PublicKey as XPublic, StaticSecret};

use super::net::IpNet;

/// Every token starts with this (the version is in the name).
pub const TOKEN_PREFIX: &str = "wgroam1:";
/// A QR code of version 10 (low error correction, byte mode) holds 271
/// bytes; 200 leaves room and keeps the code small.
pub const TOKEN_MAX: usize = 200;
const HOST_MAX: usize = 80;

/// Where the joiner reaches the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
            Host::Ip(a) => write!(f, "{a}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

impl Host {
    /// `host` of `host:port`; a name must look like a DNS name.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim_start_matches('[').trim_end_matches(']');
        if let Ok(a) = s.parse::<IpAddr>() {
            return Ok(Host::Ip(a));
        }
        let ok = !s.is_empty()
            && s.len() <= HOST_MAX
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if ok {
            Ok(Host::Name(s.to_string()))
        } else {
            Err(format!(
                "'{s}' is not an IP address or a DNS name of at most {HOST_MAX} characters"
            ))
        }
    }
}

/// Parses `HOST:PORT` (`[v6]:PORT` for IPv6).
pub fn parse_endpoint(s: &str) -> Result<(Host, u16), String> {
    let (h, p) = s.rsplit_once(':').ok_or_else(|| {
        format!("'{s}' has no port; expected HOST:PORT, e.g. hub.example.org:51820")
    })?;
    let port: u16 =
        p.parse().ok().filter(|p| *p > 0).ok_or_else(|| {
            format!("'{p}' is not a port; expected HOST:PORT with a port 1-65535")
        })?;
    if h.contains(':') && !h.starts_with('[') {
        return Err(format!("'{s}': write an IPv6 address as [ADDRESS]:PORT"));
    }
    Ok((Host::parse(h)?, port))
}

/// What an invite carries.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub hub_key: [u8; 32],
    pub secret: [u8; 16],
    pub host: Host,
    /// The hub's WireGuard port.
    pub wg_port: u16,
    /// The hub's redeem listener (UDP).
    pub redeem_port: u16,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        write!(
            f,
            "Token({}:{}, redeem {})",
            self.host, self.wg_port, self.redeem_port
        )
    }
}

/// CRC-32 (IEEE): catches every change of up to 32 consecutive bits, so any
/// single mistyped or damaged byte of a token is refused before it is used.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

impl Token {
    fn bytes(&self) -> Vec<u8> {
        let mut v = vec![1u8];
        v.extend_from_slice(&self.hub_key);
        v.extend_from_slice(&self.secret);
        v.extend_from_slice(&self.wg_port.to_be_bytes());
        v.extend_from_slice(&self.redeem_port.to_be_bytes());
        match &self.host {
            Host::Ip(IpAddr::V4(a)) => {
                v.push(4);
                v.extend_from_slice(&a.octets());
            }
            Host::Ip(IpAddr::V6(a)) => {
                v.push(6);
                v.extend_from_slice(&a.octets());
            }
            Host::Name(n) => {
                v.push(0);
                v.push(n.len() as u8);
                v.extend_from_slice(n.as_bytes());
            }
        }
        let crc = crc32(&v);
        v.extend_from_slice(&crc.to_be_bytes());
        v
    }

    /// The one line printed by `wgroam invite`.
    pub fn encode(&self) -> String {
        format!(
            "{TOKEN_PREFIX}{}",
            base64::encode_config(self.bytes(), base64::URL_SAFE_NO_PAD)
        )
    }

    /// Parses a token; every error names what is wrong and what to do.
    pub fn decode(s: &str) -> Result<Self, String> {
        const FIX: &str = "copy the whole line printed by `wgroam invite` again";
        let s = s.trim();
        let body = s
            .strip_prefix(TOKEN_PREFIX)
            .ok_or_else(|| format!("invite: does not start with '{TOKEN_PREFIX}'; {FIX}"))?;
        let b = base64::decode_config(body, base64::URL_SAFE_NO_PAD)
            .map_err(|_| format!("invite: not valid base64url; {FIX}"))?;
        if b.len() < 4 + 1 + 32 + 16 + 4 + 1 {
            return Err(format!("invite: too short; {FIX}"));
        }
        let (data, crc) = b.split_at(b.len() - 4);
        if crc32(data).to_be_bytes() != crc {
            return Err(format!(
                "invite: checksum mismatch (altered or mistyped); {FIX}"
            ));
        }
        if data[0] != 1 {
            return Err(format!(
                "invite: format version {} is not supported; update wgroam on this router",
                data[0]
            ));
        }
        let hub_key: [u8; 32] = data[1..33].try_into().unwrap_or_default();
        let secret: [u8; 16] = data[33..49].try_into().unwrap_or_default();
        let wg_port = u16::from_be_bytes([data[49], data[50]]);
        let redeem_port = u16::from_be_bytes([data[51], data[52]]);
        let rest = &data[53..];
        let bad = || format!("invite: malformed endpoint; {FIX}");
        let host = match rest.split_first() {
            Some((4, a)) if a.len() == 4 => Host::Ip(IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(a).map_err(|_| bad())?,
            ))),
            Some((6, a)) if a.len() == 16 => Host::Ip(IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(a).map_err(|_| bad())?,
            ))),
            Some((0, n)) if !n.is_empty() && usize::from(n[0]) == n.len() - 1 => {
                let name = std::str::from_utf8(&n[1..]).map_err(|_| bad())?;
                Host::parse(name).map_err(|_| bad())?
            }
            _ => return Err(bad()),
        };
        if wg_port == 0 || redeem_port == 0 {
            return Err(bad());
        }
        Ok(Token {
            hub_key,
            secret,
            host,
            wg_port,
            redeem_port,
        })
    }
}

/// The BLAKE2s hash the hub keeps instead of the secret (hex).
pub fn secret_hash(secret: &[u8; 16]) -> String {
    hex(&Blake2s256::digest(secret))
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---------------------------------------------------------------------------
// Redeem messages

pub const REQUEST_MAGIC: &[u8; 4] = b"WGRQ";
pub const ANSWER_MAGIC: &[u8; 4] = b"WGRS";
pub const REFUSAL_MAGIC: &[u8; 4] = b"WGRX";
pub const REQUEST_LEN: usize = 4 + 32 + 16 + 32 + 16;

/// Why a redeem was refused; the number is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request does not decrypt with this hub's key.
    WrongHub = 1,
    Unknown = 2,
    Expired = 3,
    Revoked = 4,
    Used = 5,
    RateLimited = 6,
    Exhausted = 7,
    Failed = 8,
}

impl Refusal {
    fn from_code(c: u8) -> Option<Self> {
        use Refusal::*;
        [
            WrongHub,
            Unknown,
            Expired,
            Revoked,
            Used,
            RateLimited,
            Exhausted,
            Failed,
        ]
        .into_iter()
        .find(|r| *r as u8 == c)
    }

    /// The joiner's one line: cause and fix.
    pub fn explain(self) -> &'static str {
        match self {
            Refusal::WrongHub => {
                "the hub at this address does not hold the key in the invite (wrong hub, or the invite was altered); check --endpoint on the hub and create a new invite there"
            }
            Refusal::Unknown => {
                "the hub does not know this invite (altered, or the hub restarted and lost it); create a new one with `wgroam invite` on the hub"
            }
            Refusal::Expired => {
                "the invite has expired; create a new one with `wgroam invite` on the hub (--ttl for a longer one)"
            }
            Refusal::Revoked => {
                "the invite was revoked on the hub; create a new one with `wgroam invite`"
            }
            Refusal::Used => {
                "the invite was already used by another router; create a new one with `wgroam invite` on the hub"
            }
            Refusal::RateLimited => {
                "the hub is rate-limiting redeem attempts; wait a minute and try again"
            }
            Refusal::Exhausted => {
                "the hub's pool has no free prefix or tunnel address left; widen wgroam.<if>.pool or remove an unused peer on the hub"
            }
            Refusal::Failed => {
                "the hub could not apply the new peer (see `logread -e wgroam` on the hub)"
            }
        }
    }
}

/// What the hub hands the joiner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The joiner's tunnel address and the length of the hub's subnet.
    pub tunnel_addr: Ipv6Addr,
    pub subnet_len: u8,
    pub prefix: IpNet,
    pub hub_tunnel_addr: Ipv6Addr,
}

impl Grant {
    fn bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(50);
        v.extend_from_slice(&self.tunnel_addr.octets());
        v.push(self.subnet_len);
        match self.prefix.addr() {
            IpAddr::V6(a) => v.extend_from_slice(&a.octets()),
            IpAddr::V4(_) => v.extend_from_slice(&[0; 16]),
        }
        v.push(self.prefix.prefix_len());
        v.extend_from_slice(&self.hub_tunnel_addr.octets());
        v
    }

    fn parse(b: &[u8]) -> Option<Self> {
        if b.len() != 50 {
            return None;
        }
        let a = |r: std::ops::Range<usize>| <[u8; 16]>::try_from(&b[r]).ok().map(Ipv6Addr::from);
        let tunnel_addr = a(0..16)?;
        let prefix = IpNet::new(IpAddr::V6(a(17..33)?), b[33])?;
        Some(Grant {
            tunnel_addr,
            subnet_len: b[16].min(128),
            prefix,
            hub_tunnel_addr: a(34..50)?,
        })
    }
}

fn keys(shared: &[u8; 32], e_pub: &[u8; 32], hub_key: &[u8; 32]) -> ([u8; 32], [u8; 32]) {
    let k = |n: u8| -> [u8; 32] {
        let mut d = Blake2s256::new();
        d.update(b"wgroam pair v1");
        d.update(shared);
        d.update(e_pub);
        d.update(hub_key);
        d.update([n]);
        d.finalize().into()
    };
    (k(1), k(2))
}

/// ChaCha20-Poly1305 with nonce 0 (every key is used for one message).
fn seal(key: &[u8; 32], ad: &[u8], pt: &[u8]) -> Vec<u8> {
    let mut buf = pt.to_vec();
    let tag = ChaCha20Poly1305::new(key.into())
        .encrypt_in_place_detached(Nonce::from_slice(&[0; 12]), ad, &mut buf)
        .map(|t| t.to_vec())
        .unwrap_or_default();
    buf.extend(tag);
    buf
}

fn open(key: &[u8; 32], ad: &[u8], ct: &[u8]) -> Option<Vec<u8>> {
    let (body, tag) = ct.split_at(ct.len().checked_sub(16)?);
    let mut buf = body.to_vec();
    ChaCha20Poly1305::new(key.into())
        .decrypt_in_place_detached(
            Nonce::from_slice(&[0; 12]),
            ad,
            &mut buf,
            Tag::from_slice(tag),
        )
        .ok()?;
    Some(buf)
}

/// The joiner's side of one redeem: the request and how to read the answer.
pub struct Redeem {
    e_pub: [u8; 32],
    k_answer: [u8; 32],
    pub request: Vec<u8>,
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Granted(Grant),
    /// Authenticated refusal (from the hub that holds the key).
    Refused(Refusal),
    /// Unauthenticated refusal: could be spoofed, but only ever ends a wait.
    RefusedPlain(Refusal),
}

impl Redeem {
    /// `ephemeral`: 32 random bytes, used once.
    pub fn new(token: &Token, ephemeral: [u8; 32], joiner_key: &[u8; 32]) -> Self {
        let e = StaticSecret::from(ephemeral);
        let e_pub = XPublic::from(&e).to_bytes();
        let shared = e.diffie_hellman(&XPublic::from(token.hub_key)).to_bytes();
        let (k1, k2) = keys(&shared, &e_pub, &token.hub_key);
        let mut pt = token.secret.to_vec();
        pt.extend_from_slice(joiner_key);
        let mut ad = REQUEST_MAGIC.to_vec();
        ad.extend_from_slice(&e_pub);
        ad.extend_from_slice(&token.hub_key);
        let mut request = REQUEST_MAGIC.to_vec();
        request.extend_from_slice(&e_pub);
        request.extend(seal(&k1, &ad, &pt));
        Redeem {
            e_pub,
            k_answer: k2,
            request,
        }
    }

    /// Reads a datagram from the hub; `None` when it is not an answer to
    /// this request (ignored, the wait goes on).
    pub fn answer(&self, b: &[u8]) -> Option<Answer> {
        if b.len() == 5 && &b[..4] == REFUSAL_MAGIC {
            return Refusal::from_code(b[4]).map(Answer::RefusedPlain);
        }
        if b.len() < 4 + 16 + 1 || &b[..4] != ANSWER_MAGIC {
            return None;
        }
        let mut ad = ANSWER_MAGIC.to_vec();
        ad.extend_from_slice(&self.e_pub);
        let pt = open(&self.k_answer, &ad, &b[4..])?;
        let (&code, body) = pt.split_first()?;
        if code == 0 {
            Grant::parse(body).map(Answer::Granted)
        } else {
            Refusal::from_code(code).map(Answer::Refused)
        }
    }
}

/// The hub's side: a decrypted request.
pub struct Opened {
    pub secret: [u8; 16],
    pub joiner_key: [u8; 32],
    e_pub: [u8; 32],
    k_answer: [u8; 32],
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Opened(..)")
    }
}

/// Decrypts a request with the hub's private key. `Err(true)` when it is a
/// request that does not decrypt (wrong hub or altered), `Err(false)` when
/// it is not a request at all (dropped silently).
pub fn open_request(b: &[u8], hub_private: &[u8; 32]) -> Result<Opened, bool> {
    if b.len() != REQUEST_LEN || &b[..4] != REQUEST_MAGIC {
        return Err(false);
    }
    let e_pub: [u8; 32] = b[4..36].try_into().map_err(|_| false)?;
    let s = StaticSecret::from(*hub_private);
    let hub_key = XPublic::from(&s).to_bytes();
    let shared = s.diffie_hellman(&XPublic::from(e_pub)).to_bytes();
    let (k1, k2) = keys(&shared, &e_pub, &hub_key);
    let mut ad = REQUEST_MAGIC.to_vec();
    ad.extend_from_slice(&e_pub);
    ad.extend_from_slice(&hub_key);
    let pt = open(&k1, &ad, &b[36..]).ok_or(true)?;
    Ok(Opened {
        secret: pt[..16].try_into().map_err(|_| true)?,
        joiner_key: pt[16..48].try_into().map_err(|_| true)?,
        e_pub,
        k_answer: k2,
    })
}

impl Opened {
    /// The encrypted answer: a grant or a refusal.
    pub fn answer(&self, result: Result<&Grant, Refusal>) -> Vec<u8> {
        let mut pt = Vec::new();
        match result {
            Ok(g) => {
                pt.push(0);
                pt.extend(g.bytes());
            }
            Err(r) => pt.push(r as u8),
        }
        let mut ad = ANSWER_MAGIC.to_vec();
        ad.extend_from_slice(&self.e_pub);
        let mut out = ANSWER_MAGIC.to_vec();
        out.extend(seal(&self.k_answer, &ad, &pt));
        out
    }
}

pub fn plain_refusal(r: Refusal) -> Vec<u8> {
    let mut v = REFUSAL_MAGIC.to_vec();
    v.push(r as u8);
    v
}

/// The public key of a private key.
pub fn public_of(private: &[u8; 32]) -> [u8; 32] {
    XPublic::from(&StaticSecret::from(*private)).to_bytes()
}

/// A WireGuard private key from 32 random bytes (clamped as `wg genkey` does).
pub fn clamp(mut k: [u8; 32]) -> [u8; 32] {
    k[0] &= 248;
    k[31] &= 127;
    k[31] |= 64;
    k
}

// ---------------------------------------------------------------------------
// Allocator

/// The hub's pool (from `wgroam.<if>.pool`, `pool_size` and the hub
/// interface's own IPv6 address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub pool: IpNet,
    /// Prefix length handed to each travel router (default 64).
    pub size: u8,
    /// The hub's own tunnel address and its subnet length.
    pub hub_addr: Ipv6Addr,
    pub subnet_len: u8,
}

/// At most this many candidates are looked at (a /48 pool of /64s is 65536).
const MAX_CANDIDATES: u128 = 1 << 20;

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains_net(b) || b.contains_net(a)
}

/// The next free prefix of the pool and the next free tunnel address of the
/// hub's subnet; `taken`: every allowed IP of every peer (uci and kernel).
pub fn allocate(pool: &Pool, taken: &[IpNet]) -> Result<Grant, String> {
    let IpAddr::V6(base) = pool.pool.addr() else {
        return Err("pool is not IPv6".into());
    };
    let plen = pool.pool.prefix_len();
    if pool.size < plen || pool.size > 128 {
        return Err(format!(
            "pool_size /{} does not fit in pool {}; expected a length between {plen} and 128",
            pool.size, pool.pool
        ));
    }
    let taken6: Vec<&IpNet> = taken
        .iter()
        .filter(|t| t.is_ipv6() && !t.is_default())
        .collect();
    let count = 1u128
        .checked_shl(u32::from(pool.size - plen))
        .unwrap_or(u128::MAX);
    let step = 1u128.checked_shl(u32::from(128 - pool.size)).unwrap_or(0);
    let hub_subnet = IpNet::truncate(IpAddr::V6(pool.hub_addr), pool.subnet_len);
    let mut prefix = None;
    for i in 0..count.min(MAX_CANDIDATES) {
        let a = Ipv6Addr::from(u128::from(base).wrapping_add(i.wrapping_mul(step)));
        let Some(net) = IpNet::new(IpAddr::V6(a), pool.size) else {
            continue;
        };
        // The hub's own tunnel subnet may lie inside the pool: never hand it out.
        if taken6.iter().any(|t| overlaps(t, &net))
            || hub_subnet.is_some_and(|h| overlaps(&h, &net))
        {
            continue;
        }
        prefix = Some(net);
        break;
    }
    let prefix = prefix.ok_or_else(|| {
        format!(
            "pool {} is exhausted: every /{} in it is in a peer's allowed_ips; widen wgroam.<if>.pool or remove an unused peer",
            pool.pool, pool.size
        )
    })?;
    let sub = IpNet::truncate(IpAddr::V6(pool.hub_addr), pool.subnet_len)
        .ok_or("hub address has a bad subnet length")?;
    let IpAddr::V6(sbase) = sub.addr() else {
        return Err("hub address is not IPv6".into());
    };
    let hosts = 1u128
        .checked_shl(u32::from(128 - pool.subnet_len))
        .unwrap_or(u128::MAX);
    let mut tunnel = None;
    // Skip ::0 (subnet-router anycast) and the hub's own address.
    for i in 1..hosts.min(MAX_CANDIDATES) {
        let a = Ipv6Addr::from(u128::from(sbase) + i);
        let ip = IpAddr::V6(a);
        if a == pool.hub_addr || taken6.iter().any(|t| t.contains(ip)) {
            continue;
        }
        tunnel = Some(a);
        break;
    }
    let tunnel_addr = tunnel.ok_or_else(|| {
        format!("the hub's tunnel subnet {sub} is exhausted: every address is in a peer's allowed_ips; use a larger subnet on the hub interface")
    })?;
    Ok(Grant {
        tunnel_addr,
        subnet_len: pool.subnet_len,
        prefix,
        hub_tunnel_addr: pool.hub_addr,
    })
}

// ---------------------------------------------------------------------------
// Invite store rules

/// One invite as the hub keeps it (the secret only as a hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    pub name: String,
    /// The netifd interface the joiner becomes a peer of.
    pub iface: String,
    pub hash: String,
    pub created: u64,
    pub expires: u64,
    pub state: InviteState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InviteState {
    Pending,
    Revoked,
    /// Redeemed by this joiner key with this grant: a repeat of the same
    /// request (the answer was lost) gets the same answer again.
    Redeemed {
        joiner: [u8; 32],
        grant: Grant,
    },
}

/// What the hub does with a decrypted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allocate and apply; then mark the invite (index) redeemed.
    Apply(usize),
    /// Same joiner, same invite again: answer with the earlier grant.
    Repeat(Grant),
    Refuse(Refusal),
}

/// The rules: unknown, expired, revoked, used by another key are refused.
pub fn decide(store: &[Invite], hash: &str, joiner: &[u8; 32], now: u64) -> Decision {
    let Some((i, inv)) = store.iter().enumerate().find(|(_, v)| v.hash == hash) else {
        return Decision::Refuse(Refusal::Unknown);
    };
    match &inv.state {
        InviteState::Revoked => Decision::Refuse(Refusal::Revoked),
        InviteState::Redeemed { joiner: j, grant } if j == joiner => Decision::Repeat(*grant),
        InviteState::Redeemed { .. } => Decision::Refuse(Refusal::Used),
        InviteState::Pending if now >= inv.expires => Decision::Refuse(Refusal::Expired),
        InviteState::Pending => Decision::Apply(i),
    }
}

/// Drops invites an hour past their expiry (kept that long so a late
/// attempt is told "expired", not "unknown").
pub fn prune(store: &mut Vec<Invite>, now: u64) {
    store.retain(|v| now < v.expires + 3600);
}

/// Invite names go into uci section names: letters, digits, `_` and `-`.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `1h`, `30m`, `90s`, `2d` or plain seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let (num, mul) = match s.as_bytes().last() {
        Some(b's') => (&s[..s.len() - 1], 1),
        Some(b'm') => (&s[..s.len() - 1], 60),
        Some(b'h') => (&s[..s.len() - 1], 3600),
        Some(b'd') => (&s[..s.len() - 1], 86_400),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .and_then(|n| n.checked_mul(mul))
        .filter(|n| *n <= 30 * 86_400)
        .ok_or_else(|| {
            format!("--ttl: '{s}' is not a duration; expected e.g. 1h, 30m or 3600 (at most 30d)")
        })
}

/// Rate limit of redeem attempts: at most `burst` per source address within
/// `window_s`, and at most `4 * burst` in total.
#[derive(Debug, Default)]
pub struct RateLimit {
    seen: Vec<(IpAddr, u64)>,
}

impl RateLimit {
    pub const BURST: usize = 5;
    pub const WINDOW_S: u64 = 60;

    /// Records an attempt; `false` when it is over the limit.
    pub fn allow(&mut self, from: IpAddr, now: u64) -> bool {
        self.seen.retain(|(_, t)| now < t + Self::WINDOW_S);
        let mine = self.seen.iter().filter(|(a, _)| *a == from).count();
        if mine >= Self::BURST || self.seen.len() >= 4 * Self::BURST {
            return false;
        }
        self.seen.push((from, now));
        true
    }
}

#[cfg(test)]
mod tests;
