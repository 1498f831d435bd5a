//! Classic BPF filter for the capture socket, so that only WireGuard handshake
//! shapes (and optionally transport headers) are ever copied to user space.
//!
//! The program runs on an AF_PACKET `SOCK_DGRAM` socket: offset 0 is the L3
//! header and the frame's EtherType comes from the ancillary load
//! `SKF_AD_OFF + SKF_AD_PROTOCOL`. IPv4 and IPv6 share one UDP block by
//! leaving the UDP header offset in X (`4*IHL` or 40). It accepts:
//! - to `listen_port`, type 1 (reserved bytes zero), UDP length 8+148: initiations;
//! - from `listen_port`, type 2, UDP length 8+92: the hub's (or a peer's) responses;
//! - with `transport`, to `listen_port`, type 4, UDP length >= 8+32: transport
//!   data, cut after the first 32 bytes of the message (header + 16 bytes).
//!
//! Everything else returns 0 and is dropped in the kernel. IPv4 fragments and
//! IPv6 extension headers are refused (a handshake is never fragmented).
//!
//! Packets are *viewed* with the pnet family (`pnet_packet`), but the socket
//! and this filter stay ours: `pnet_datalink::channel` opens the AF_PACKET
//! socket itself, binds it and hands back boxed `DataLinkSender` /
//! `DataLinkReceiver` trait objects that never expose the descriptor, and its
//! `Config` has no filter option, so nothing can `SO_ATTACH_FILTER` on it;
//! every frame of the interface would be copied to user space and dropped
//! there (the hub's capture cost in BENCHMARKS.md is the filter's). Even
//! where its `Config` accepts a ready `socket_fd` (so a filter could be
//! attached first), the receiver polls that descriptor on its own per read
//! and cannot join the agent's one poll loop, and it turns on promiscuous
//! mode unless told not to: all it would add is a read call.

use libc::sock_filter;

/// Snap length of an accepted transport packet after the UDP header: the
/// 16-byte header plus 16 bytes, exactly a minimal `TransportHeader`.
pub const TRANSPORT_SNAP_PAYLOAD: u32 = 32;

const ETH_P_IP: u32 = 0x0800;
const ETH_P_IPV6: u32 = 0x86dd;
const UDP: u32 = 17;
/// Big-endian view of the little-endian type word (type byte + 3 zero bytes).
const WORD_INITIATION: u32 = 0x0100_0000;
const WORD_RESPONSE: u32 = 0x0200_0000;
const WORD_TRANSPORT: u32 = 0x0400_0000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Label {
    V4,
    V6,
    Udp,
    Init,
    FromHub,
    OwnInit,
    Accept,
    Drop,
}

#[derive(Clone, Copy)]
enum Jump {
    Next,
    To(Label),
}

enum Item {
    Insn(u16, Jump, Jump, u32),
    Here(Label),
}

/// A tiny assembler: instructions with symbolic forward jumps.
struct Asm(Vec<Item>);

impl Asm {
    fn op(&mut self, code: u32, k: u32) {
        self.0
            .push(Item::Insn(code as u16, Jump::Next, Jump::Next, k));
    }
    fn jump(&mut self, code: u32, k: u32, jt: Jump, jf: Jump) {
        self.0.push(Item::Insn(code as u16, jt, jf, k));
    }
    fn label(&mut self, l: Label) {
        self.0.push(Item::Here(l));
    }

    fn finish(self) -> Vec<sock_filter> {
        let mut at = Vec::new();
        let mut pc = 0usize;
        for item in &self.0 {
            match item {
                Item::Here(l) => at.push((*l, pc)),
                Item::Insn(..) => pc += 1,
            }
        }
        let target = |l: Label| at.iter().find(|(x, _)| *x == l).map(|(_, p)| *p);
        let mut out = Vec::with_capacity(pc);
        for item in &self.0 {
            let Item::Insn(code, jt, jf, k) = *item else {
                continue;
            };
            let pc = out.len();
            let rel = |j: Jump| match j {
                Jump::Next => 0,
                Jump::To(l) => {
                    let to = target(l).expect("jump to a placed label");
                    // cBPF jumps are forward only, at most 255 instructions.
                    u8::try_from(to - pc - 1).expect("short forward jump")
                }
            };
            out.push(sock_filter {
                code,
                jt: rel(jt),
                jf: rel(jf),
                k,
            });
        }
        out
    }
}

// Opcodes (linux/filter.h), composed once for readability.
const LD_W_ABS: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
const LD_H_ABS: u32 = libc::BPF_LD | libc::BPF_H | libc::BPF_ABS;
const LD_B_ABS: u32 = libc::BPF_LD | libc::BPF_B | libc::BPF_ABS;
const LD_W_IND: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_IND;
const LD_H_IND: u32 = libc::BPF_LD | libc::BPF_H | libc::BPF_IND;
const LDX_MSH: u32 = libc::BPF_LDX | libc::BPF_B | libc::BPF_MSH;
const LDX_IMM: u32 = libc::BPF_LDX | libc::BPF_W | libc::BPF_IMM;
const AND_K: u32 = libc::BPF_ALU | libc::BPF_AND | libc::BPF_K;
const ADD_K: u32 = libc::BPF_ALU | libc::BPF_ADD | libc::BPF_K;
const JEQ_K: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
const JGE_K: u32 = libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K;
const JSET_K: u32 = libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K;
const TXA: u32 = libc::BPF_MISC | libc::BPF_TXA;
const RET_K: u32 = libc::BPF_RET | libc::BPF_K;
const RET_A: u32 = libc::BPF_RET | libc::BPF_A;
const AD_PROTOCOL: u32 = (libc::SKF_AD_OFF + libc::SKF_AD_PROTOCOL) as u32;

/// Builds the capture filter for a WireGuard interface listening on
/// `listen_port`; `transport` also admits (truncated) transport data.
pub fn wireguard_filter(listen_port: u16, transport: bool) -> Vec<sock_filter> {
    use Jump::{Next, To};
    use Label::*;
    let port = u32::from(listen_port);
    let mut a = Asm(Vec::new());

    a.op(LD_W_ABS, AD_PROTOCOL);
    a.jump(JEQ_K, ETH_P_IP, To(V4), Next);
    a.jump(JEQ_K, ETH_P_IPV6, To(V6), To(Drop));

    a.label(V4);
    a.op(LD_B_ABS, 0);
    a.op(AND_K, 0xf0);
    a.jump(JEQ_K, 0x40, Next, To(Drop));
    a.op(LD_B_ABS, 9);
    a.jump(JEQ_K, UDP, Next, To(Drop));
    a.op(LD_H_ABS, 6); // more-fragments flag and fragment offset
    a.jump(JSET_K, 0x3fff, To(Drop), Next);
    a.op(LDX_MSH, 0); // X = 4 * IHL
    a.op(TXA, 0);
    a.jump(JGE_K, 20, To(Udp), To(Drop));

    a.label(V6);
    a.op(LD_B_ABS, 0);
    a.op(AND_K, 0xf0);
    a.jump(JEQ_K, 0x60, Next, To(Drop));
    a.op(LD_B_ABS, 6); // next header: UDP directly, no extension headers
    a.jump(JEQ_K, UDP, Next, To(Drop));
    a.op(LDX_IMM, 40);

    // X = offset of the UDP header; the WireGuard type word is at X+8.
    a.label(Udp);
    a.op(LD_H_IND, 2);
    a.jump(JEQ_K, port, Next, To(FromHub));
    a.op(LD_W_IND, 8);
    if transport {
        a.jump(JEQ_K, WORD_INITIATION, To(Init), Next);
        a.jump(JEQ_K, WORD_TRANSPORT, Next, To(FromHub));
        a.op(LD_H_IND, 4);
        a.jump(JGE_K, 8 + 32, Next, To(Drop));
        a.op(TXA, 0);
        a.op(ADD_K, 8 + TRANSPORT_SNAP_PAYLOAD);
        a.op(RET_A, 0);
    } else {
        a.jump(JEQ_K, WORD_INITIATION, To(Init), To(FromHub));
    }
    a.label(Init);
    a.op(LD_H_IND, 4);
    a.jump(JEQ_K, 8 + 148, To(Accept), To(Drop));

    // Also reached for packets to the port that were no initiation: a peer
    // may listen on the same port number as the hub.
    // From the port: the hub's own responses and initiations, whose sender
    // indices tell which peer a later transport packet belongs to.
    a.label(FromHub);
    a.op(LD_H_IND, 0);
    a.jump(JEQ_K, port, Next, To(Drop));
    a.op(LD_W_IND, 8);
    a.jump(JEQ_K, WORD_INITIATION, To(OwnInit), Next);
    a.jump(JEQ_K, WORD_RESPONSE, Next, To(Drop));
    a.op(LD_H_IND, 4);
    a.jump(JEQ_K, 8 + 92, To(Accept), To(Drop));
    a.label(OwnInit);
    a.op(LD_H_IND, 4);
    a.jump(JEQ_K, 8 + 148, To(Accept), To(Drop));

    a.label(Accept);
    a.op(RET_K, u32::MAX);
    a.label(Drop);
    a.op(RET_K, 0);
    a.finish()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::tests::{hex, ipv4_udp, ipv6_udp, xorshift};

    /// Runs a cBPF program like the kernel does for a packet socket and
    /// returns the snap length (0 = drop). Out-of-bounds loads drop.
    pub(crate) fn run(prog: &[sock_filter], pkt: &[u8], protocol: u16) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let load = |off: u32, size: usize| -> Option<u32> {
            if off == AD_PROTOCOL && size == 4 {
                return Some(u32::from(protocol));
            }
            let off = off as usize;
            let b = pkt.get(off..off.checked_add(size)?)?;
            Some(b.iter().fold(0, |v, &byte| v << 8 | u32::from(byte)))
        };
        loop {
            let i = prog[pc];
            pc += 1;
            let code = u32::from(i.code);
            let size = |c: u32| match c & 0x18 {
                libc::BPF_W => 4,
                libc::BPF_H => 2,
                _ => 1,
            };
            match code {
                c if c & 0x07 == libc::BPF_LD && c & 0xe0 == libc::BPF_ABS => {
                    let Some(v) = load(i.k, size(c)) else {
                        return 0;
                    };
                    a = v;
                }
                c if c & 0x07 == libc::BPF_LD && c & 0xe0 == libc::BPF_IND => {
                    let Some(v) = load(x.wrapping_add(i.k), size(c)) else {
                        return 0;
                    };
                    a = v;
                }
                LDX_MSH => {
                    let Some(v) = load(i.k, 1) else { return 0 };
                    x = 4 * (v & 0xf);
                }
                LDX_IMM => x = i.k,
                AND_K => a &= i.k,
                ADD_K => a = a.wrapping_add(i.k),
                TXA => a = x,
                RET_K => return i.k,
                RET_A => return a,
                JEQ_K | JGE_K | JSET_K => {
                    let taken = match code {
                        JEQ_K => a == i.k,
                        JGE_K => a >= i.k,
                        _ => a & i.k != 0,
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                _ => panic!("interpreter lacks opcode {code:#x}"),
            }
        }
    }

    const PORT: u16 = 51820;

    fn wg(ty: u8, len: usize) -> Vec<u8> {
        let mut p = vec![0xa5; len];
        p[..4].copy_from_slice(&[ty, 0, 0, 0]);
        p
    }

    /// Snap length for (filter without transport, filter with transport).
    fn verdicts(pkt: &[u8], proto: u16) -> (u32, u32) {
        (
            run(&wireguard_filter(PORT, false), pkt, proto),
            run(&wireguard_filter(PORT, true), pkt, proto),
        )
    }

    const ALL: u32 = u32::MAX;

    #[test]
    fn accepts_real_wireguard_go_frames() {
        let f = |s: &str| hex(s);
        let v4 = [
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/handshake/initiation_v4.l3.hex"
            )),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/handshake/response_v4.l3.hex"
            )),
        ];
        for s in v4 {
            assert_eq!(verdicts(&f(s), 0x0800), (ALL, ALL));
        }
        let v6 = [
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/handshake/initiation_v6.l3.hex"
            )),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/handshake/response_v6.l3.hex"
            )),
        ];
        for s in v6 {
            assert_eq!(verdicts(&f(s), 0x86dd), (ALL, ALL));
        }
        let t4 = f(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/handshake/transport_v4.l3.hex"
        )));
        assert_eq!(verdicts(&t4, 0x0800), (0, 20 + 8 + 32));
        let t6 = f(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/handshake/transport_v6.l3.hex"
        )));
        assert_eq!(verdicts(&t6, 0x86dd), (0, 40 + 8 + 32));
        // What the snap leaves is a parseable transport header.
        let snapped = &t6[..40 + 8 + 32];
        let d = crate::wire::parse_l3_prefix(snapped).unwrap();
        assert!(crate::wire::TransportHeader::new_checked(d.payload(snapped)).is_ok());
    }

    #[test]
    fn ipv4_shapes() {
        let init = wg(1, 148);
        let resp = wg(2, 92);
        let cases: &[(Vec<u8>, (u32, u32), &str)] = &[
            (ipv4_udp(5, 0, 4000, PORT, &init), (ALL, ALL), "initiation"),
            (ipv4_udp(5, 0x4000, 4000, PORT, &init), (ALL, ALL), "DF set"),
            (ipv4_udp(7, 0, 4000, PORT, &init), (ALL, ALL), "IHL 7"),
            (ipv4_udp(15, 0, 4000, PORT, &init), (ALL, ALL), "IHL 15"),
            (ipv4_udp(5, 0, PORT, 4000, &resp), (ALL, ALL), "response"),
            (
                ipv4_udp(6, 0, PORT, 4000, &resp),
                (ALL, ALL),
                "response IHL 6",
            ),
            (ipv4_udp(5, 0, PORT, PORT, &resp), (ALL, ALL), "same port"),
            (ipv4_udp(5, 0, 4000, PORT, &wg(4, 32)), (0, 60), "keepalive"),
            (
                ipv4_udp(9, 0, 4000, PORT, &wg(4, 200)),
                (0, 76),
                "data IHL 9",
            ),
            (
                ipv4_udp(5, 0, 4000, PORT, &wg(4, 31)),
                (0, 0),
                "short transport",
            ),
            (
                ipv4_udp(5, 0, PORT, 4000, &wg(4, 64)),
                (0, 0),
                "outgoing data",
            ),
            (ipv4_udp(5, 0, 4000, 4001, &init), (0, 0), "other port"),
            (
                ipv4_udp(5, 0, PORT, 4000, &init),
                (ALL, ALL),
                "the hub's own initiation",
            ),
            (
                ipv4_udp(5, 0, PORT, 4000, &wg(1, 149)),
                (0, 0),
                "own initiation, wrong length",
            ),
            (
                ipv4_udp(5, 0, 4000, PORT, &resp),
                (0, 0),
                "response to port",
            ),
            (
                ipv4_udp(5, 0, 4000, PORT, &wg(1, 147)),
                (0, 0),
                "short init",
            ),
            (ipv4_udp(5, 0, 4000, PORT, &wg(1, 149)), (0, 0), "long init"),
            (ipv4_udp(5, 0, PORT, 4000, &wg(2, 93)), (0, 0), "long resp"),
            (ipv4_udp(5, 0, 4000, PORT, &wg(3, 64)), (0, 0), "cookie"),
            (
                ipv4_udp(5, 0x2000, 4000, PORT, &init),
                (0, 0),
                "more fragments",
            ),
            (
                ipv4_udp(5, 0x0010, 4000, PORT, &init),
                (0, 0),
                "fragment offset",
            ),
            (ipv4_udp(5, 0, 4000, PORT, &[]), (0, 0), "empty"),
        ];
        for (pkt, want, what) in cases {
            assert_eq!(verdicts(pkt, 0x0800), *want, "{what}");
        }
        let mut reserved = ipv4_udp(5, 0, 4000, PORT, &init);
        reserved[28 + 2] = 1;
        assert_eq!(verdicts(&reserved, 0x0800), (0, 0), "reserved byte");
        let mut tcp = ipv4_udp(5, 0, 4000, PORT, &init);
        tcp[9] = 6;
        assert_eq!(verdicts(&tcp, 0x0800), (0, 0), "tcp");
        let mut ihl4 = ipv4_udp(5, 0, 4000, PORT, &init);
        ihl4[0] = 0x44;
        assert_eq!(verdicts(&ihl4, 0x0800), (0, 0), "IHL 4");
        let good = ipv4_udp(5, 0, 4000, PORT, &init);
        assert_eq!(verdicts(&good, 0x0806), (0, 0), "ARP ethertype");
        assert_eq!(verdicts(&good, 0x86dd), (0, 0), "v4 bytes as v6");
        assert_eq!(verdicts(&good[..30], 0x0800), (0, 0), "cut before type");
    }

    #[test]
    fn ipv6_shapes() {
        let init = wg(1, 148);
        let resp = wg(2, 92);
        let cases: &[(Vec<u8>, (u32, u32), &str)] = &[
            (ipv6_udp(17, 4000, PORT, &init), (ALL, ALL), "initiation"),
            (ipv6_udp(17, PORT, 4000, &resp), (ALL, ALL), "response"),
            (ipv6_udp(17, 4000, PORT, &wg(4, 48)), (0, 80), "data"),
            (ipv6_udp(17, 4000, 4001, &init), (0, 0), "other port"),
            (ipv6_udp(17, 4000, PORT, &wg(1, 92)), (0, 0), "short init"),
            (ipv6_udp(44, 4000, PORT, &init), (0, 0), "fragment header"),
            (ipv6_udp(0, 4000, PORT, &init), (0, 0), "hop-by-hop"),
            (
                ipv6_udp(60, 4000, PORT, &init),
                (0, 0),
                "destination options",
            ),
            (ipv6_udp(6, 4000, PORT, &init), (0, 0), "tcp"),
        ];
        for (pkt, want, what) in cases {
            assert_eq!(verdicts(pkt, 0x86dd), *want, "{what}");
        }
        let good = ipv6_udp(17, 4000, PORT, &init);
        assert_eq!(verdicts(&good, 0x0800), (0, 0), "v6 bytes as v4");
        assert_eq!(verdicts(&good[..50], 0x86dd), (0, 0), "cut before type");
    }

    #[test]
    fn port_is_a_parameter() {
        let pkt = ipv4_udp(5, 0, 4000, 443, &wg(1, 148));
        assert_eq!(run(&wireguard_filter(443, false), &pkt, 0x0800), ALL);
        assert_eq!(run(&wireguard_filter(PORT, false), &pkt, 0x0800), 0);
    }

    #[test]
    fn random_frames_never_accepted_by_accident() {
        // Random bytes must essentially never look like a handshake, and the
        // program must never run off its end (the interpreter would panic).
        let mut next = xorshift(0x1234_5678_9abc_def1);
        let (f, t) = (wireguard_filter(PORT, false), wireguard_filter(PORT, true));
        for _ in 0..20_000 {
            let pkt: Vec<u8> = (0..(next() % 260) as usize).map(|_| next() as u8).collect();
            let proto = [0x0800, 0x86dd, 0x0806][(next() % 3) as usize];
            assert_eq!(run(&f, &pkt, proto), 0);
            assert_eq!(run(&t, &pkt, proto), 0);
        }
    }
}
