//! The roam as the [`crate::driver`] runs it: woken by rtnetlink
//! notifications and the answers of helper threads (name resolution, the
//! delegation worker), it reads the tunnel every 500 ms, feeds the sans-IO
//! [`Roam`] and carries out its actions through the adapters.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc::{Receiver, Sender, channel};

use crate::config::roam_setup::roam_config;
use crate::config::{Config, DelegateVia, Interface};
use crate::core::net::{IpNet, RT_TABLE_MAIN};
use crate::core::roam::{Roam, RoamAction, RoamConfig, RoamEvent, TunnelSnapshot};
use crate::core::{Level, Now, PublicKey};
use crate::driver::Role;
use crate::os::rtnl::{Monitor, Routing, Rtnl};
use crate::os::signals;
use crate::os::syslog::emit;
use crate::os::ubus::UbusCli;
use crate::os::uci::{UciCli, UciStore};
use crate::os::wg::WireGuard;
use crate::roam::delegation::{Delegator, Look, NetifdDelegator, RadvdDelegator, SysLinks};
use crate::roam::status::roam_json;

/// How often the tunnel's counters are read: the heartbeat's notion of
/// "nothing came in" is only as fine as this.
const OBSERVE_MS: u64 = 500;

const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// An address of this host inside `prefix` (the router's LAN address from the
/// delegated prefix), the source that proves the LAN clients' path.
fn local_address_in(prefix: IpNet) -> Option<std::net::Ipv6Addr> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: cur points into the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is valid; the family says which sockaddr it is.
        if i32::from(unsafe { (*ifa.ifa_addr).sa_family }) != libc::AF_INET6 {
            continue;
        }
        // SAFETY: an AF_INET6 address is a sockaddr_in6.
        let sin6 = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in6>() };
        let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
        if prefix.contains(IpAddr::V6(ip)) {
            found = Some(ip);
            break;
        }
    }
    // SAFETY: list came from getifaddrs.
    unsafe { libc::freeifaddrs(list) };
    found
}

/// Answers from helper threads, with a pipe to wake the poll loop.
struct Inbox {
    tx: Sender<RoamEvent>,
    rx: Receiver<RoamEvent>,
    read: OwnedFd,
    write: std::sync::Arc<OwnedFd>,
}

impl Inbox {
    fn new() -> std::io::Result<Self> {
        let mut fds = [0; 2];
        // SAFETY: fds is a valid array of two ints.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let (tx, rx) = channel();
        // SAFETY: both descriptors were just created and are ours.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Self {
            tx,
            rx,
            read,
            write: std::sync::Arc::new(write),
        })
    }

    /// Runs `job` on a thread; its event arrives through the inbox.
    fn spawn(&self, job: impl FnOnce() -> RoamEvent + Send + 'static) {
        let (tx, write) = (self.tx.clone(), self.write.clone());
        std::thread::spawn(move || {
            let _ = tx.send(job());
            // SAFETY: writing one byte to our own non-blocking pipe.
            unsafe { libc::write(write.as_raw_fd(), b"x".as_ptr().cast(), 1) };
        });
    }

    /// A handle for a long-lived thread to post events.
    fn poster(&self) -> Poster {
        Poster {
            tx: self.tx.clone(),
            write: self.write.clone(),
        }
    }

    fn drain(&self) -> Vec<RoamEvent> {
        let mut buf = [0u8; 64];
        // SAFETY: reading into a valid buffer from our own pipe.
        while unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {
        }
        self.rx.try_iter().collect()
    }
}

/// Posts events into the [`Inbox`] from another thread.
struct Poster {
    tx: Sender<RoamEvent>,
    write: std::sync::Arc<OwnedFd>,
}

impl Poster {
    fn post(&self, e: RoamEvent) {
        let _ = self.tx.send(e);
        // SAFETY: writing one byte to our own non-blocking pipe.
        unsafe { libc::write(self.write.as_raw_fd(), b"x".as_ptr().cast(), 1) };
    }
}

/// Work for the delegation thread, carried out in order.
enum Job {
    Delegate(IpNet, u64),
    Withdraw(IpNet, u64),
    Look(IpNet, u64, bool),
    SetMtu(String, u32),
    Stop,
}

/// The delegator lives on its own thread: a netifd that does not answer
/// (ubus waits up to its timeout per call) never holds up the tunnel's
/// reactions. Jobs run in the order the core asked for them; the routes of
/// the same step were already applied on the loop thread.
struct DelegWorker {
    tx: Sender<Job>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl DelegWorker {
    fn spawn(mut d: Box<dyn Delegator>, out: Poster) -> Self {
        let (tx, rx) = channel::<Job>();
        let handle = std::thread::spawn(move || {
            for job in rx {
                match job {
                    Job::Delegate(prefix, seq) => {
                        if let Err(error) = d.delegate(prefix) {
                            out.post(RoamEvent::DelegationFailed { seq, error });
                        }
                    }
                    Job::Withdraw(prefix, seq) => {
                        if let Err(error) = d.withdraw(prefix) {
                            out.post(RoamEvent::DelegationFailed { seq, error });
                        }
                    }
                    Job::Look(prefix, seq, held) => {
                        let report = (d.observer(prefix, held))();
                        out.post(RoamEvent::DelegationObserved { seq, report });
                    }
                    Job::SetMtu(dev, mtu) => {
                        if let Err(e) = d.set_ipv6_mtu(&dev, mtu) {
                            emit(Level::Warn, &format!("delegation: {e}"));
                        }
                    }
                    Job::Stop => {
                        d.stop();
                        return;
                    }
                }
            }
        });
        Self {
            tx,
            handle: Some(handle),
        }
    }

    fn send(&self, job: Job) {
        let _ = self.tx.send(job);
    }

    /// Stops the delegator (radvd goes) after the jobs already queued.
    fn stop(&mut self) {
        self.send(Job::Stop);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

pub struct RoamRuntime<W: WireGuard> {
    cfg: Config,
    iface: Interface,
    wg: W,
    roam: Roam,
    rtnl: Rtnl,
    monitor: Monitor,
    delegator: DelegWorker,
    /// The netifd dynamic interface's name, for `status`.
    carrier: Option<String>,
    delegate_via: &'static str,
    /// A delegation look is running on a helper thread; the next one waits.
    look_running: bool,
    look_queued: Option<(IpNet, u64, bool)>,
    uci: UciCli,
    inbox: Inbox,
    started: u64,
    next_observe_ms: u64,
    routes_dirty: bool,
    status_dirty: bool,
    last_status_ms: u64,
    seq: u16,
}

fn delegator(cfg: &Config, iface: &Interface, uci: &UciCli) -> (Box<dyn Delegator>, &'static str) {
    let via = iface.roam.delegate.unwrap_or(if cfg.uci {
        DelegateVia::Uci
    } else {
        DelegateVia::Radvd
    });
    match via {
        DelegateVia::Uci => (
            Box::new(NetifdDelegator {
                ubus: UbusCli::from_env(),
                uci: uci.clone(),
                links: SysLinks,
                iface: iface.name.clone(),
                device: iface.ifname.clone(),
                downstream: iface.roam.downstream.clone(),
            }),
            "netifd",
        ),
        DelegateVia::Radvd => (
            Box::new(RadvdDelegator::new(
                &iface.roam.downstream[0],
                &cfg.state_dir,
                &iface.ifname,
                iface.roam.announce_mtu,
            )),
            "radvd",
        ),
        DelegateVia::Off => (Box::new(NoDelegation), "off"),
    }
}

struct NoDelegation;
impl Delegator for NoDelegation {
    fn delegate(&mut self, _: IpNet) -> Result<(), String> {
        Ok(())
    }
    fn withdraw(&mut self, _: IpNet) -> Result<(), String> {
        Ok(())
    }
    fn observer(&self, prefix: IpNet, held: bool) -> Look {
        Box::new(move || crate::core::roam::DelegationReport {
            carried: held.then_some(prefix),
            ..Default::default()
        })
    }
}

impl<W: WireGuard> RoamRuntime<W> {
    pub fn new(cfg: Config, wg: W, uci: UciCli, now: Now) -> Result<Self, String> {
        let iface = cfg
            .interfaces
            .first()
            .cloned()
            .ok_or("roam: no interface configured")?;
        if cfg.interfaces.len() > 1 {
            emit(
                Level::Warn,
                &format!("roam: only the first interface ({}) is managed", iface.name),
            );
        }
        let network = if cfg.uci {
            uci.load("network").map_err(|e| e.to_string())?
        } else {
            Vec::new()
        };
        let kernel: Vec<(PublicKey, Option<SocketAddr>)> = wg
            .read(&iface.ifname, iface.backend)
            .ok()
            .flatten()
            .map(|v| v.peers.iter().map(|p| (p.key, p.endpoint)).collect())
            .unwrap_or_default();
        let rc = roam_config(&iface, &network, &kernel)?;
        let roam = Roam::new(rc, env!("WGROAM_BUILD_EPOCH").parse().unwrap_or(0))?;
        let (mut delegator, delegate_via) = delegator(&cfg, &iface, &uci);
        match delegator.start() {
            Ok(Some(what)) => emit(Level::Notice, &format!("delegation: {what}")),
            Ok(None) => {}
            Err(e) => emit(Level::Warn, &format!("delegation: {e}")),
        }
        let inbox = Inbox::new().map_err(|e| format!("pipe: {e}"))?;
        let carrier = delegator.carrier();
        let delegator = DelegWorker::spawn(delegator, inbox.poster());
        Ok(Self {
            inbox,
            carrier,
            rtnl: Rtnl::open().map_err(|e| format!("rtnetlink: {e}"))?,
            monitor: Monitor::open().map_err(|e| format!("rtnetlink monitor: {e}"))?,
            cfg,
            iface,
            wg,
            roam,
            delegator,
            delegate_via,
            look_running: false,
            look_queued: None,
            uci,
            started: now.wall,
            next_observe_ms: 0,
            routes_dirty: true,
            status_dirty: true,
            last_status_ms: 0,
            seq: 0,
        })
    }

    /// Validates a reloaded config into the core's form; the core itself
    /// refuses one that would break the tunnel and keeps the last good one.
    fn reconfigure(&mut self, cfg: Config) -> Result<RoamConfig, String> {
        let iface = cfg
            .interfaces
            .iter()
            .find(|i| i.ifname == self.iface.ifname)
            .cloned()
            .ok_or_else(|| format!("{} is no longer configured", self.iface.ifname))?;
        let network = if cfg.uci {
            self.uci.load("network").map_err(|e| e.to_string())?
        } else {
            Vec::new()
        };
        let rc = roam_config(&iface, &network, &[])?;
        let (old, new) = (&self.iface.roam, &iface.roam);
        let rebuild = old.delegate != new.delegate
            || old.downstream != new.downstream
            || old.announce_mtu != new.announce_mtu
            || self.cfg.uci != cfg.uci;
        self.iface = iface;
        self.cfg = cfg;
        if rebuild {
            // The delegator is built from these options: a new one, and a
            // look soon so the core re-checks (and re-asks) under it.
            let (d, via) = delegator(&self.cfg, &self.iface, &self.uci);
            if via != self.delegate_via
                && let Some(p) = self.roam.status().delegation.prefix()
            {
                // The old way must not keep carrying it (seq 0: stale,
                // its result is ignored).
                self.delegator.send(Job::Withdraw(p, 0));
            }
            self.delegator.stop();
            self.carrier = d.carrier();
            self.delegate_via = via;
            self.delegator = DelegWorker::spawn(d, self.inbox.poster());
            self.look_running = false;
            self.look_queued = None;
            self.roam.look_soon(signals::now());
            emit(
                Level::Info,
                &format!(
                    "delegation: now via {via} to {}",
                    self.iface.roam.downstream.join(", ")
                ),
            );
        }
        Ok(rc)
    }

    fn feed(&mut self, now: Now, event: RoamEvent) {
        if matches!(event, RoamEvent::DelegationObserved { .. }) {
            self.look_running = false;
        }
        for a in self.roam.handle(now, event) {
            self.status_dirty = true;
            self.act(a);
        }
        if !self.look_running
            && let Some((prefix, seq, held)) = self.look_queued.take()
        {
            self.start_look(prefix, seq, held);
        }
    }

    fn start_look(&mut self, prefix: IpNet, seq: u64, held: bool) {
        if self.look_running {
            self.look_queued = Some((prefix, seq, held));
            return;
        }
        self.look_running = true;
        self.delegator.send(Job::Look(prefix, seq, held));
    }

    fn act(&mut self, a: RoamAction) {
        let b = self.iface.backend;
        match a {
            RoamAction::Log(l) => emit(l.level, &l.msg),
            RoamAction::Resolve { host } => {
                let h = host.clone();
                self.inbox
                    .spawn(move || match (h.as_str(), 0).to_socket_addrs() {
                        Ok(addrs) => RoamEvent::Resolved {
                            host: h,
                            addrs: addrs.map(|a| a.ip()).collect(),
                        },
                        Err(e) => RoamEvent::ResolveFailed {
                            host: h,
                            error: e.to_string(),
                        },
                    });
            }
            RoamAction::SetEndpoint {
                iface,
                key,
                endpoint,
            } => {
                if let Err(e) = self.wg.set_endpoint(&iface, b, &key, endpoint) {
                    emit(
                        Level::Error,
                        &format!("{iface}: cannot set the hub's endpoint: {e}"),
                    );
                }
            }
            RoamAction::Handshake { iface, key, probe } => {
                if let Err(e) = self.wg.rearm(&iface, b, &key, None) {
                    emit(
                        Level::Error,
                        &format!("{iface}: cannot restart the session: {e}"),
                    );
                }
                if let Some(to) = probe {
                    self.probe(to);
                }
            }
            RoamAction::SendHeartbeat { to, .. } => self.probe(to),
            RoamAction::AddRoute(r) => {
                if let Err(e) = self.rtnl.add_route(&r) {
                    emit(Level::Error, &format!("route: cannot add {r}: {e}"));
                }
                self.routes_dirty = true;
            }
            RoamAction::DelRoute(r) => {
                if let Err(e) = self.rtnl.del_route(&r) {
                    emit(Level::Error, &format!("route: cannot delete {r}: {e}"));
                }
                self.routes_dirty = true;
            }
            RoamAction::Delegate { prefix, seq } => self.delegator.send(Job::Delegate(prefix, seq)),
            RoamAction::Withdraw { prefix, seq } => self.delegator.send(Job::Withdraw(prefix, seq)),
            RoamAction::ObserveDelegation { prefix, seq, held } => {
                self.start_look(prefix, seq, held);
            }
            RoamAction::RemoveAddress { device, addr, len } => {
                let r = crate::os::capture::ifindex(&device)
                    .map_err(|e| e.to_string())
                    .and_then(|i| {
                        self.rtnl
                            .del_address(i, IpAddr::V6(addr), len)
                            .map_err(|e| e.to_string())
                    });
                if let Err(e) = r {
                    emit(
                        Level::Warn,
                        &format!("delegation: cannot remove {addr}/{len} from {device}: {e}"),
                    );
                }
            }
            RoamAction::SetIpv6Mtu { device, mtu } => self.delegator.send(Job::SetMtu(device, mtu)),
            RoamAction::HealthCheck => {
                let Some(url) = self.iface.roam.health_url.clone() else {
                    return;
                };
                let source = self
                    .roam
                    .config()
                    .prefix
                    .and_then(local_address_in)
                    .map(IpAddr::V6);
                self.inbox.spawn(move || {
                    let (ok, detail) = crate::os::http::check(&url, source, HEALTH_TIMEOUT);
                    RoamEvent::HealthResult { ok, detail }
                });
            }
        }
    }

    fn probe(&mut self, to: IpAddr) {
        self.seq = self.seq.wrapping_add(1);
        let IpAddr::V6(to) = to else {
            emit(
                Level::Warn,
                &format!("probe: {to} is not IPv6; heartbeats need the hub's IPv6 tunnel address"),
            );
            return;
        };
        let from = self.roam.config().tunnel_addr;
        if let Err(e) = crate::os::icmp::echo(to, from, self.seq) {
            emit(Level::Debug, &format!("probe to {to}: {e}"));
        }
    }

    fn observe(&mut self, now: Now) {
        // Before the snapshot: a sync already there at the first look is no
        // news (the tunnel is not known to be present yet).
        if !self.roam.ntp_synced() && crate::os::clock::synced(&self.cfg.state_dir) {
            self.feed(now, RoamEvent::ClockSynced);
        }
        let key = self.roam.config().hub_key;
        let snap = match self.wg.read(&self.iface.ifname, self.iface.backend) {
            Ok(Some(v)) => v.peers.iter().find(|p| p.key == key).and_then(|p| {
                Some(TunnelSnapshot {
                    ifindex: crate::os::capture::ifindex(&self.iface.ifname).ok()?,
                    endpoint: p.endpoint,
                    last_handshake: p.last_handshake,
                    rx: p.rx,
                    tx: p.tx,
                })
            }),
            Ok(None) => None,
            Err(e) => {
                emit(
                    Level::Warn,
                    &format!("{}: cannot read WireGuard state: {e}", self.iface.ifname),
                );
                None
            }
        };
        self.feed(now, RoamEvent::Observed(snap));
    }

    fn refresh_routes(&mut self, now: Now) {
        let mut routes = Vec::new();
        let mut tables = vec![RT_TABLE_MAIN];
        if self.roam.config().table != RT_TABLE_MAIN {
            tables.push(self.roam.config().table);
        }
        for t in tables {
            match self.rtnl.routes(t) {
                Ok(r) => routes.extend(r),
                Err(e) => {
                    emit(Level::Warn, &format!("route: cannot read table {t}: {e}"));
                    return;
                }
            }
        }
        self.routes_dirty = false;
        self.feed(now, RoamEvent::RoutesObserved(routes));
    }

    fn flush(&mut self, now: Now, force: bool) {
        if force || self.status_dirty || now.since_ms(self.last_status_ms) >= OBSERVE_MS {
            self.status_dirty = false;
            self.last_status_ms = now.mono_ms;
            let v = roam_json(
                self.roam.status(),
                &self.iface,
                self.delegate_via,
                self.carrier.as_deref(),
                now,
                self.started,
            );
            if let Err(e) = crate::hub::status::write(&self.cfg.state_dir, &v) {
                emit(
                    Level::Error,
                    &format!("status: cannot write {}: {e}", self.cfg.state_dir.display()),
                );
            }
        }
    }
}

/// What woke the roam.
#[derive(Debug, Clone, Copy)]
pub enum RoamToken {
    /// rtnetlink: routes, addresses, links changed.
    Rtnl,
    /// A helper thread answered (name resolution, delegation, health).
    Inbox,
}

/// Routes and the delegation stay in place on a clean stop, so a restart
/// (upgrade) does not interrupt the LAN's IPv6; the restarted agent finds
/// them and changes nothing.
impl<W: WireGuard> Role for RoamRuntime<W> {
    type Token = RoamToken;

    fn name(&self) -> &'static str {
        "roam"
    }

    fn managing(&self) -> String {
        self.iface.ifname.clone()
    }

    fn turn(&mut self, now: Now) {
        if now.mono_ms >= self.next_observe_ms {
            self.observe(now);
            self.next_observe_ms = now.mono_ms + OBSERVE_MS;
        }
        if self.routes_dirty {
            self.refresh_routes(now);
        }
        if self.roam.poll_at().is_some_and(|t| t <= now.mono_ms) {
            self.feed(now, RoamEvent::Tick);
        }
    }

    fn wake_at(&self) -> u64 {
        let deadline = self.next_observe_ms;
        self.roam.poll_at().map_or(deadline, |t| deadline.min(t))
    }

    fn fds(&self) -> Vec<(RawFd, RoamToken)> {
        vec![
            (self.monitor.fd(), RoamToken::Rtnl),
            (self.inbox.read.as_raw_fd(), RoamToken::Inbox),
        ]
    }

    fn ready(&mut self, now: Now, token: RoamToken) {
        match token {
            RoamToken::Rtnl => {
                match self.monitor.drain() {
                    Ok(events) => {
                        for e in events {
                            self.feed(now, RoamEvent::Uplink(e));
                        }
                    }
                    Err(e) => emit(Level::Warn, &format!("rtnetlink monitor: {e}")),
                }
                self.routes_dirty = true;
            }
            RoamToken::Inbox => {
                for e in self.inbox.drain() {
                    self.feed(now, e);
                }
            }
        }
    }

    fn flush(&mut self, now: Now, force: bool) {
        RoamRuntime::flush(self, now, force);
    }

    fn reload(&mut self, cfg: Config, now: Now) -> Result<(), String> {
        let rc = self.reconfigure(cfg)?;
        self.feed(now, RoamEvent::Configured(rc));
        Ok(())
    }

    // Hotplug (uplink) or ntp (clock): observe, re-read routes now.
    fn nudge(&mut self, _: Now) {
        self.next_observe_ms = 0;
        self.routes_dirty = true;
    }

    fn stop(&mut self, _: Now) {
        self.delegator.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_netifd_never_holds_up_the_loop_and_jobs_keep_their_order() {
        use crate::core::roam::DelegationReport;
        use std::sync::{Arc, Mutex};
        use std::time::{Duration, Instant};

        struct Slow(Arc<Mutex<Vec<&'static str>>>);
        impl Delegator for Slow {
            fn delegate(&mut self, _: IpNet) -> Result<(), String> {
                std::thread::sleep(Duration::from_millis(300));
                self.0.lock().unwrap().push("delegate");
                Err("netifd is not answering (no answer in time)".into())
            }
            fn withdraw(&mut self, _: IpNet) -> Result<(), String> {
                self.0.lock().unwrap().push("withdraw");
                Ok(())
            }
            fn observer(&self, prefix: IpNet, held: bool) -> Look {
                let l = self.0.clone();
                Box::new(move || {
                    l.lock().unwrap().push("look");
                    DelegationReport {
                        carried: held.then_some(prefix),
                        ..Default::default()
                    }
                })
            }
            fn stop(&mut self) {
                self.0.lock().unwrap().push("stop");
            }
        }
        let calls = Arc::new(Mutex::new(Vec::new()));
        let inbox = Inbox::new().unwrap();
        let mut w = DelegWorker::spawn(Box::new(Slow(calls.clone())), inbox.poster());
        let p: IpNet = "2001:db8:100:1::/64".parse().unwrap();
        let t = Instant::now();
        w.send(Job::Delegate(p, 1));
        w.send(Job::Withdraw(p, 2));
        w.send(Job::Look(p, 2, false));
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "the loop does not wait"
        );
        let mut got = Vec::new();
        while got.len() < 2 && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
            got.extend(inbox.drain());
        }
        assert!(
            matches!(&got[0], RoamEvent::DelegationFailed { seq: 1, error } if error.starts_with("netifd is not answering")),
            "{got:?}"
        );
        assert!(
            matches!(&got[1], RoamEvent::DelegationObserved { seq: 2, report } if report.carried.is_none()),
            "{got:?}"
        );
        w.stop();
        assert_eq!(
            *calls.lock().unwrap(),
            vec!["delegate", "withdraw", "look", "stop"]
        );
    }
}
