//! Glue between the capture socket, the handshake verifier and the hub core:
//! every captured frame becomes exactly one core event, verified here so
//! the core only ever sees authenticated initiations.

use std::net::SocketAddr;
use std::os::fd::RawFd;

use crate::capture::{Direction, PacketCapture, PacketSource, ifindex};
use crate::config::Interface;
use crate::core::PublicKey;
use crate::core::hub::{Event, Ignored};
use crate::handshake::{Reject, Responder};
use crate::status::IfaceRuntime;
use crate::wg::DeviceView;
use crate::wire::{self, Message};

/// Frames read per wakeup at most, so a flood cannot starve the loop.
const BURST: usize = 256;
/// Initiations verified per second at most (each costs two X25519), with a
/// burst allowance; real peers initiate every two minutes.
const VERIFY_PER_S: u64 = 200;
const VERIFY_BURST: u64 = 400;

/// A token bucket over monotonic milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    tokens_milli: u64,
    last_ms: u64,
}

impl Budget {
    pub fn new() -> Self {
        Self {
            tokens_milli: VERIFY_BURST * 1000,
            last_ms: 0,
        }
    }

    /// Takes one token if available.
    pub fn take(&mut self, now_ms: u64) -> bool {
        let refill = now_ms.saturating_sub(self.last_ms) * VERIFY_PER_S;
        self.last_ms = now_ms;
        self.tokens_milli = (self.tokens_milli + refill).min(VERIFY_BURST * 1000);
        if self.tokens_milli >= 1000 {
            self.tokens_milli -= 1000;
            true
        } else {
            false
        }
    }
}

impl Default for Budget {
    fn default() -> Self {
        Self::new()
    }
}

/// Capture state of one interface; empty until the interface is up.
#[derive(Default)]
pub struct HubCapture {
    open: Option<Open>,
    /// Last open failure, retried on each observation.
    failed: Option<String>,
}

struct Open {
    source: PacketCapture,
    responder: Responder,
    public: PublicKey,
    port: u16,
    transport: bool,
    budget: Budget,
}

impl HubCapture {
    /// Opens (or re-opens after a key or port change) the capture socket.
    pub fn ensure(&mut self, cfg: &Interface, view: &DeviceView, rt: &mut IfaceRuntime) {
        let (Some(port), Some(private), Some(public)) =
            (view.listen_port, view.private_key.as_ref(), view.public_key)
        else {
            self.open = None;
            rt.capture = None;
            rt.capture_error = Some("interface has no private key or listen port yet".into());
            return;
        };
        if let Some(o) = &self.open
            && o.port == port
            && o.public == public
        {
            return;
        }
        let device = cfg.capture_device.as_deref();
        match open(device, port) {
            Ok(source) => {
                self.open = Some(Open {
                    source,
                    responder: Responder::new(**private),
                    public,
                    port,
                    transport: false,
                    budget: Budget::new(),
                });
                self.failed = None;
                rt.capture = Some(format!("{} port {port}", device.unwrap_or("any")));
                rt.capture_error = None;
            }
            Err(e) => {
                let msg = format!("cannot capture on {}: {e}", device.unwrap_or("any"));
                if self.failed.as_deref() != Some(msg.as_str()) {
                    crate::logging::emit(
                        crate::core::Level::Error,
                        &format!("{}: {msg}", cfg.ifname),
                    );
                }
                self.failed = Some(msg.clone());
                self.open = None;
                rt.capture = None;
                rt.capture_error = Some(msg);
            }
        }
    }

    pub fn fd(&self) -> Option<RawFd> {
        self.open.as_ref().map(|o| o.source.fd())
    }

    pub fn set_transport(&mut self, on: bool) {
        if let Some(o) = &mut self.open
            && o.transport != on
        {
            match o.source.set_transport(on) {
                Ok(()) => o.transport = on,
                Err(e) => crate::logging::emit(
                    crate::core::Level::Error,
                    &format!("capture: cannot change filter: {e}"),
                ),
            }
        }
    }

    /// Reads what is queued and turns it into core events.
    pub fn drain(&mut self, iface: &str, now_ms: u64) -> Vec<Event> {
        let Some(o) = &mut self.open else {
            return Vec::new();
        };
        let mut buf = [0u8; 256];
        let mut events = Vec::new();
        for _ in 0..BURST {
            match o.source.recv(&mut buf) {
                Ok(Some(c)) => {
                    let budget = &mut o.budget;
                    let mut verify = || budget.take(now_ms);
                    let frame = &buf[..c.len.min(buf.len())];
                    if let Some(e) =
                        classify(iface, &o.responder, o.port, frame, c.direction, &mut verify)
                    {
                        events.push(e);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    crate::logging::emit(
                        crate::core::Level::Error,
                        &format!("{iface}: capture read failed: {e}"),
                    );
                    break;
                }
            }
        }
        events
    }
}

/// One captured L3 frame → at most one core event.
pub fn classify(
    iface: &str,
    responder: &Responder,
    port: u16,
    frame: &[u8],
    direction: Direction,
    budget: &mut dyn FnMut() -> bool,
) -> Option<Event> {
    let iface = iface.to_string();
    let dg = wire::parse_l3_prefix(frame).ok()?;
    let payload = dg.payload(frame);
    let ignored = |from: SocketAddr, why| {
        Some(Event::Ignored {
            iface: iface.clone(),
            from,
            why,
        })
    };
    match direction {
        Direction::Outgoing => {
            // Our own responses teach us which index we gave to whom.
            if dg.src.port() != port {
                return None;
            }
            match wire::classify(payload) {
                Ok(Message::Response(r)) => Some(Event::Response {
                    iface,
                    sender_index: r.sender_index(),
                    receiver_index: r.receiver_index(),
                }),
                _ => None,
            }
        }
        Direction::Incoming => {
            if dg.dst.port() != port {
                return None;
            }
            let from = dg.src;
            if dg.truncated {
                // Transport packets are captured cut short on purpose.
                // (the filter keeps the 32 bytes a transport header needs).
                return match wire::classify(payload) {
                    Ok(Message::Transport(t)) => Some(Event::Transport {
                        iface,
                        from,
                        receiver_index: t.receiver_index(),
                    }),
                    _ => ignored(from, Ignored::Malformed),
                };
            }
            match wire::classify(payload) {
                Ok(Message::Initiation(init)) if !responder.verify_mac1(init.as_bytes()) => {
                    ignored(from, Ignored::BadMac1)
                }
                Ok(Message::Initiation(_)) if !budget() => ignored(from, Ignored::RateLimited),
                Ok(Message::Initiation(init)) => match responder.identify(&init) {
                    Ok(who) => Some(Event::Initiation {
                        iface,
                        from,
                        key: PublicKey(who.static_public),
                        stamp: (who.timestamp.seconds, who.timestamp.nanos),
                        sender_index: who.sender_index,
                    }),
                    Err(Reject::BadMac1) => ignored(from, Ignored::BadMac1),
                    Err(Reject::Malformed) => ignored(from, Ignored::Malformed),
                    Err(_) => ignored(from, Ignored::Forged),
                },
                Ok(Message::Transport(t)) => Some(Event::Transport {
                    iface,
                    from,
                    receiver_index: t.receiver_index(),
                }),
                Ok(_) => None,
                Err(_) => ignored(from, Ignored::Malformed),
            }
        }
    }
}

fn open(device: Option<&str>, port: u16) -> std::io::Result<PacketCapture> {
    let index = match device {
        Some(d) => ifindex(d)?,
        None => 0,
    };
    PacketCapture::open(index, port, false)
}

/// Checks that a capture socket may be opened (for `wgroam check`).
pub fn probe(device: Option<&str>) -> std::io::Result<()> {
    open(device, 51820).map(drop)
}
