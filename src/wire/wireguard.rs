//! Checked, zero-copy views over WireGuard messages and the IP/UDP frames that
//! carry them.
//!
//! Every view is built with `new_checked`, which validates the length and the
//! type word once; after that the accessors only slice at fixed offsets inside
//! the validated length, so hostile input cannot make them panic. Nothing here
//! allocates or copies packet data.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::Ipv4Packet;
use pnet_packet::ipv6::Ipv6Packet;
use pnet_packet::udp::UdpPacket;

/// Why a buffer is not a well-formed message or datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The buffer ends before a header or before the length its header claims.
    Truncated,
    /// A length is wrong for the message type or inconsistent between headers.
    BadLength,
    /// The WireGuard type word is unknown (or its reserved bytes are not zero).
    UnknownType,
    /// The IP version nibble is neither 4 nor 6.
    BadVersion,
    /// An IPv4 fragment or an IPv6 fragment header; only whole datagrams count.
    Fragment,
    /// IPv6 with an extension header before the transport header (not walked).
    Ipv6Extension,
    /// The transport protocol is not UDP.
    NotUdp,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Error::Truncated => "packet truncated",
            Error::BadLength => "bad length",
            Error::UnknownType => "unknown WireGuard message type",
            Error::BadVersion => "not IPv4 or IPv6",
            Error::Fragment => "IP fragment",
            Error::Ipv6Extension => "IPv6 extension header",
            Error::NotUdp => "not UDP",
        })
    }
}

impl std::error::Error for Error {}

/// WireGuard message type words (little-endian u32: type byte + 3 zero bytes).
pub const TYPE_INITIATION: u32 = 1;
pub const TYPE_RESPONSE: u32 = 2;
pub const TYPE_COOKIE_REPLY: u32 = 3;
pub const TYPE_TRANSPORT: u32 = 4;

/// Exact sizes of the handshake messages, minimum size of a transport message
/// (16-byte header plus the 16-byte tag of an empty keepalive).
pub const INITIATION_LEN: usize = 148;
pub const RESPONSE_LEN: usize = 92;
pub const COOKIE_REPLY_LEN: usize = 64;
pub const TRANSPORT_MIN_LEN: usize = 32;

/// Length of an initiation covered by mac1 (everything before mac1).
pub const INITIATION_MAC1_OFFSET: usize = 116;

fn type_word(buf: &[u8]) -> Option<u32> {
    let b = buf.get(..4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Checks the type word and the length rule of one message type.
fn check(buf: &[u8], ty: u32, len_ok: impl Fn(usize) -> bool) -> Result<(), Error> {
    match type_word(buf) {
        None => Err(Error::Truncated),
        Some(t) if t != ty => Err(Error::UnknownType),
        Some(_) if !len_ok(buf.len()) => Err(Error::BadLength),
        Some(_) => Ok(()),
    }
}

/// Generates the shared plumbing of a view: `new_checked`, `into_inner`,
/// `as_bytes` and the fixed-offset field helpers.
macro_rules! view {
    ($name:ident, $ty:expr, $len_ok:expr) => {
        impl<T: AsRef<[u8]>> $name<T> {
            /// Wraps `buffer` after checking its type word and length; the
            /// accessors of the returned view cannot panic.
            pub fn new_checked(buffer: T) -> Result<Self, Error> {
                check(buffer.as_ref(), $ty, $len_ok)?;
                Ok(Self { buffer })
            }

            /// Gives the wrapped buffer back.
            pub fn into_inner(self) -> T {
                self.buffer
            }

            /// The whole message.
            pub fn as_bytes(&self) -> &[u8] {
                self.buffer.as_ref()
            }

            fn u32_at(&self, at: usize) -> u32 {
                u32::from_le_bytes(*self.array_at::<4>(at))
            }

            fn array_at<const N: usize>(&self, at: usize) -> &[u8; N] {
                // In bounds: new_checked verified the length covering every field.
                self.buffer.as_ref()[at..at + N]
                    .try_into()
                    .expect("field inside checked length")
            }
        }
    };
}

/// Message 1 of the handshake, initiator to responder (exactly 148 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeInitiation<T: AsRef<[u8]>> {
    buffer: T,
}

view!(HandshakeInitiation, TYPE_INITIATION, |n| n
    == INITIATION_LEN);

impl<T: AsRef<[u8]>> HandshakeInitiation<T> {
    /// The initiator's session index (the responder's `receiver` later).
    pub fn sender_index(&self) -> u32 {
        self.u32_at(4)
    }
    /// The initiator's ephemeral public key (cleartext).
    pub fn ephemeral(&self) -> &[u8; 32] {
        self.array_at(8)
    }
    /// The initiator's static public key, AEAD-sealed (32 + 16 tag).
    pub fn encrypted_static(&self) -> &[u8; 48] {
        self.array_at(40)
    }
    /// The TAI64N timestamp, AEAD-sealed (12 + 16 tag).
    pub fn encrypted_timestamp(&self) -> &[u8; 28] {
        self.array_at(88)
    }
    pub fn mac1(&self) -> &[u8; 16] {
        self.array_at(INITIATION_MAC1_OFFSET)
    }
    pub fn mac2(&self) -> &[u8; 16] {
        self.array_at(132)
    }
    /// The bytes mac1 authenticates.
    pub fn mac1_input(&self) -> &[u8; INITIATION_MAC1_OFFSET] {
        self.array_at(0)
    }
}

/// Message 2 of the handshake, responder to initiator (exactly 92 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeResponse<T: AsRef<[u8]>> {
    buffer: T,
}

view!(HandshakeResponse, TYPE_RESPONSE, |n| n == RESPONSE_LEN);

impl<T: AsRef<[u8]>> HandshakeResponse<T> {
    pub fn sender_index(&self) -> u32 {
        self.u32_at(4)
    }
    /// Equals the `sender_index` of the initiation this answers.
    pub fn receiver_index(&self) -> u32 {
        self.u32_at(8)
    }
    pub fn ephemeral(&self) -> &[u8; 32] {
        self.array_at(12)
    }
    /// AEAD tag over the empty plaintext.
    pub fn encrypted_nothing(&self) -> &[u8; 16] {
        self.array_at(44)
    }
    pub fn mac1(&self) -> &[u8; 16] {
        self.array_at(60)
    }
    pub fn mac2(&self) -> &[u8; 16] {
        self.array_at(76)
    }
}

/// Cookie reply sent under load instead of a response (exactly 64 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieReply<T: AsRef<[u8]>> {
    buffer: T,
}

view!(CookieReply, TYPE_COOKIE_REPLY, |n| n == COOKIE_REPLY_LEN);

impl<T: AsRef<[u8]>> CookieReply<T> {
    pub fn receiver_index(&self) -> u32 {
        self.u32_at(4)
    }
    pub fn nonce(&self) -> &[u8; 24] {
        self.array_at(8)
    }
    pub fn encrypted_cookie(&self) -> &[u8; 32] {
        self.array_at(32)
    }
}

/// Header of a transport data message (at least 32 bytes: 16 of header, then
/// the sealed packet and its 16-byte tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportHeader<T: AsRef<[u8]>> {
    buffer: T,
}

view!(TransportHeader, TYPE_TRANSPORT, |n| n >= TRANSPORT_MIN_LEN);

impl<T: AsRef<[u8]>> TransportHeader<T> {
    pub fn receiver_index(&self) -> u32 {
        self.u32_at(4)
    }
    pub fn counter(&self) -> u64 {
        u64::from_le_bytes(*self.array_at::<8>(8))
    }
    /// The sealed packet including its tag.
    pub fn encrypted(&self) -> &[u8] {
        &self.buffer.as_ref()[16..]
    }
}

/// A UDP payload classified by WireGuard message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    Initiation(HandshakeInitiation<&'a [u8]>),
    Response(HandshakeResponse<&'a [u8]>),
    CookieReply(CookieReply<&'a [u8]>),
    Transport(TransportHeader<&'a [u8]>),
}

/// Classifies a UDP payload; fails unless it is a well-formed message.
pub fn classify(payload: &[u8]) -> Result<Message<'_>, Error> {
    match type_word(payload).ok_or(Error::Truncated)? {
        TYPE_INITIATION => HandshakeInitiation::new_checked(payload).map(Message::Initiation),
        TYPE_RESPONSE => HandshakeResponse::new_checked(payload).map(Message::Response),
        TYPE_COOKIE_REPLY => CookieReply::new_checked(payload).map(Message::CookieReply),
        TYPE_TRANSPORT => TransportHeader::new_checked(payload).map(Message::Transport),
        _ => Err(Error::UnknownType),
    }
}

/// A UDP datagram found in an L3 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// Where the UDP payload lies in the frame. With [`parse_l3_prefix`] it may
    /// end early; `truncated` says so.
    pub payload: Range<usize>,
    /// The frame ended before the UDP length (capture snap length); only
    /// [`parse_l3_prefix`] returns such datagrams.
    pub truncated: bool,
}

impl Datagram {
    /// The payload bytes of `frame` (the buffer this was parsed from); empty if
    /// given another, shorter buffer.
    pub fn payload<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        frame.get(self.payload.clone()).unwrap_or(&[])
    }
}

/// Parses an L3 frame as an AF_PACKET `SOCK_DGRAM` socket delivers it (IPv4 or
/// IPv6 header first) down to its UDP payload. Rejects fragments, IPv6
/// extension headers, non-UDP and any length that disagrees between the
/// headers and the buffer (trailing link-layer padding is allowed). Checksums
/// are not verified: captured outgoing packets may carry offloaded, unfilled
/// checksums, and the kernel checks incoming ones itself.
pub fn parse_l3(frame: &[u8]) -> Result<Datagram, Error> {
    parse(frame, false)
}

/// Like [`parse_l3`] for a capture cut short by a snap length: the IP and UDP
/// headers must be complete, the payload may end early (`truncated`).
pub fn parse_l3_prefix(frame: &[u8]) -> Result<Datagram, Error> {
    parse(frame, true)
}

fn parse(frame: &[u8], allow_short: bool) -> Result<Datagram, Error> {
    // (source, destination, offset of the UDP header, end of the IP packet)
    let (src, dst, l4, end) = match frame.first().map(|b| b >> 4) {
        None => return Err(Error::Truncated),
        Some(4) => {
            let ip = Ipv4Packet::new(frame).ok_or(Error::Truncated)?;
            let header = usize::from(ip.get_header_length()) * 4;
            let total = usize::from(ip.get_total_length());
            if header < 20 || total < header {
                return Err(Error::BadLength);
            }
            if header > frame.len() {
                return Err(Error::Truncated);
            }
            const MORE_FRAGMENTS: u8 = 0b001;
            if ip.get_flags() & MORE_FRAGMENTS != 0 || ip.get_fragment_offset() != 0 {
                return Err(Error::Fragment);
            }
            if ip.get_next_level_protocol() != IpNextHeaderProtocols::Udp {
                return Err(Error::NotUdp);
            }
            let (s, d) = (ip.get_source(), ip.get_destination());
            (IpAddr::V4(s), IpAddr::V4(d), header, total)
        }
        Some(6) => {
            let ip = Ipv6Packet::new(frame).ok_or(Error::Truncated)?;
            let l4 = 40; // fixed header; extension headers are refused below
            let end = l4 + usize::from(ip.get_payload_length());
            match ip.get_next_header() {
                IpNextHeaderProtocols::Udp => {}
                IpNextHeaderProtocols::Ipv6Frag => return Err(Error::Fragment),
                IpNextHeaderProtocols::Hopopt
                | IpNextHeaderProtocols::Ipv6Route
                | IpNextHeaderProtocols::Ipv6Opts
                | IpNextHeaderProtocols::Ah
                | IpNextHeaderProtocols::Esp
                | IpNextHeaderProtocols::MobilityHeader => return Err(Error::Ipv6Extension),
                _ => return Err(Error::NotUdp),
            }
            let (s, d) = (ip.get_source(), ip.get_destination());
            (IpAddr::V6(s), IpAddr::V6(d), l4, end)
        }
        Some(_) => return Err(Error::BadVersion),
    };
    // Frames may carry link-layer padding after the IP packet, never less.
    let truncated = end > frame.len();
    if truncated && !allow_short {
        return Err(Error::Truncated);
    }
    if end < l4 + 8 {
        return Err(Error::BadLength);
    }
    let ip_payload = frame.get(l4..end.min(frame.len())).unwrap_or(&[]);
    let udp = UdpPacket::new(ip_payload).ok_or(Error::Truncated)?;
    let udp_len = usize::from(udp.get_length());
    // UDP length 0 (IPv6 jumbogram) and lengths past the IP packet are invalid.
    if udp_len < 8 || l4 + udp_len > end {
        return Err(Error::BadLength);
    }
    let payload_end = (l4 + udp_len).min(frame.len());
    Ok(Datagram {
        src: SocketAddr::new(src, udp.get_source()),
        dst: SocketAddr::new(dst, udp.get_destination()),
        payload: l4 + 8..payload_end,
        truncated: payload_end < l4 + udp_len,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Marsaglia's xorshift64: the tests' reproducible pseudo-random numbers.
    pub(crate) fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let s = s.trim();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    macro_rules! fixture {
        ($name:literal) => {
            hex(include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/handshake/",
                $name,
                ".hex"
            )))
        };
    }

    #[test]
    fn real_initiation_fields() {
        let init = fixture!("initiation_v4");
        let m = HandshakeInitiation::new_checked(&init[..]).unwrap();
        assert_eq!(m.sender_index().to_le_bytes(), init[4..8]);
        assert_eq!(m.ephemeral()[..], init[8..40]);
        assert_eq!(m.encrypted_static()[..], init[40..88]);
        assert_eq!(m.encrypted_timestamp()[..], init[88..116]);
        assert_eq!(m.mac1()[..], init[116..132]);
        assert_eq!(m.mac2(), &[0; 16], "no cookie in play");
        assert_eq!(m.mac1_input()[..], init[..116]);
        assert!(matches!(classify(&init), Ok(Message::Initiation(_))));
    }

    #[test]
    fn real_response_answers_real_initiation() {
        for (i, r) in [
            (fixture!("initiation_v4"), fixture!("response_v4")),
            (fixture!("initiation_v6"), fixture!("response_v6")),
        ] {
            let init = HandshakeInitiation::new_checked(&i[..]).unwrap();
            let Ok(Message::Response(resp)) = classify(&r) else {
                panic!("response not classified");
            };
            assert_eq!(resp.receiver_index(), init.sender_index());
            assert_ne!(resp.ephemeral(), init.ephemeral());
            assert_eq!(resp.encrypted_nothing()[..], r[44..60]);
            assert_eq!(resp.mac1()[..], r[60..76]);
            assert_eq!(resp.mac2(), &[0; 16]);
        }
    }

    #[test]
    fn real_frames_parse() {
        let cases = [
            (
                fixture!("initiation_v4.l3"),
                "192.0.2.1:40001",
                "192.0.2.2:51820",
                148,
            ),
            (
                fixture!("response_v4.l3"),
                "192.0.2.2:51820",
                "192.0.2.1:40001",
                92,
            ),
            (
                fixture!("transport_v4.l3"),
                "192.0.2.1:40001",
                "192.0.2.2:51820",
                144,
            ),
            (
                fixture!("initiation_v6.l3"),
                "[2001:db8:f::1]:40001",
                "[2001:db8:f::2]:51820",
                148,
            ),
            (
                fixture!("response_v6.l3"),
                "[2001:db8:f::2]:51820",
                "[2001:db8:f::1]:40001",
                92,
            ),
            (
                fixture!("transport_v6.l3"),
                "[2001:db8:f::1]:40001",
                "[2001:db8:f::2]:51820",
                144,
            ),
        ];
        for (frame, src, dst, len) in cases {
            let d = parse_l3(&frame).unwrap();
            assert_eq!(d.src, src.parse().unwrap());
            assert_eq!(d.dst, dst.parse().unwrap());
            assert_eq!(d.payload(&frame).len(), len);
            assert!(!d.truncated);
            classify(d.payload(&frame)).unwrap();
        }
        let frame = fixture!("initiation_v4.l3");
        let d = parse_l3(&frame).unwrap();
        assert_eq!(d.payload(&frame), fixture!("initiation_v4"));
    }

    #[test]
    fn real_transport_header() {
        let frame = fixture!("transport_v4.l3");
        let resp = fixture!("response_v4");
        let d = parse_l3(&frame).unwrap();
        let Ok(Message::Transport(t)) = classify(d.payload(&frame)) else {
            panic!("not transport");
        };
        // The initiator's first data packet goes to the responder's index.
        let resp = HandshakeResponse::new_checked(&resp[..]).unwrap();
        assert_eq!(t.receiver_index(), resp.sender_index());
        assert_eq!(t.counter(), 0);
        assert_eq!(t.encrypted().len(), 128);
    }

    #[test]
    fn views_reject_wrong_shapes() {
        let init = fixture!("initiation_v4");
        assert_eq!(
            HandshakeInitiation::new_checked(&init[..147]),
            Err(Error::BadLength)
        );
        let mut long = init.clone();
        long.push(0);
        assert_eq!(
            HandshakeInitiation::new_checked(&long[..]),
            Err(Error::BadLength)
        );
        for i in 1..4 {
            let mut reserved = init.clone();
            reserved[i] = 1;
            assert_eq!(classify(&reserved), Err(Error::UnknownType));
        }
        assert_eq!(
            HandshakeResponse::new_checked(&init[..]),
            Err(Error::UnknownType)
        );
        assert_eq!(classify(&init[..3]), Err(Error::Truncated));
        assert_eq!(classify(&[]), Err(Error::Truncated));
        assert_eq!(classify(&[5, 0, 0, 0]), Err(Error::UnknownType));
        assert_eq!(classify(&[0, 0, 0, 0]), Err(Error::UnknownType));
        let mut t = vec![4, 0, 0, 0];
        t.resize(31, 0);
        assert_eq!(classify(&t), Err(Error::BadLength));
        t.push(0);
        assert!(matches!(classify(&t), Ok(Message::Transport(_))));
        let mut c = vec![3, 0, 0, 0];
        c.resize(64, 7);
        let Ok(Message::CookieReply(cr)) = classify(&c) else {
            panic!()
        };
        assert_eq!(cr.receiver_index(), 0x0707_0707);
        assert_eq!(cr.nonce(), &[7; 24]);
        assert_eq!(cr.encrypted_cookie(), &[7; 32]);
        c.push(0);
        assert_eq!(classify(&c), Err(Error::BadLength));
    }

    /// A UDP/IPv4 frame with the given IHL, flags/offset word and payload.
    pub(crate) fn ipv4_udp(ihl: u8, frag: u16, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let hl = usize::from(ihl) * 4;
        let mut f = vec![0u8; hl];
        f[0] = 0x40 | ihl;
        f[2..4].copy_from_slice(&((hl + 8 + payload.len()) as u16).to_be_bytes());
        f[6..8].copy_from_slice(&frag.to_be_bytes());
        f[8] = 64;
        f[9] = 17;
        f[12..16].copy_from_slice(&[198, 51, 100, 7]);
        f[16..20].copy_from_slice(&[203, 0, 113, 9]);
        for b in f.iter_mut().skip(20) {
            *b = 1; // NOP options
        }
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        f
    }

    /// A UDP/IPv6 frame with the given next header and payload.
    pub(crate) fn ipv6_udp(next: u8, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 40];
        f[0] = 0x60;
        f[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f[6] = next;
        f[7] = 64;
        f[8..10].copy_from_slice(&[0x20, 0x01]);
        f[10..12].copy_from_slice(&[0x0d, 0xb8]);
        f[23] = 1;
        f[24..26].copy_from_slice(&[0x20, 0x01]);
        f[26..28].copy_from_slice(&[0x0d, 0xb8]);
        f[39] = 2;
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn l3_options_padding_and_rejections() {
        let f = ipv4_udp(7, 0x4000, 1000, 51820, b"hello");
        let d = parse_l3(&f).unwrap();
        assert_eq!(d.src, "198.51.100.7:1000".parse().unwrap());
        assert_eq!(d.dst, "203.0.113.9:51820".parse().unwrap());
        assert_eq!(d.payload(&f), b"hello");
        assert_eq!(d.payload, 36..41);

        let mut padded = f.clone();
        padded.extend_from_slice(&[0; 10]);
        assert_eq!(parse_l3(&padded).unwrap().payload(&padded), b"hello");

        assert_eq!(
            parse_l3(&ipv4_udp(5, 0x2000, 1, 2, b"x")),
            Err(Error::Fragment)
        );
        assert_eq!(
            parse_l3(&ipv4_udp(5, 0x0001, 1, 2, b"x")),
            Err(Error::Fragment)
        );
        let mut tcp = ipv4_udp(5, 0, 1, 2, b"x");
        tcp[9] = 6;
        assert_eq!(parse_l3(&tcp), Err(Error::NotUdp));
        let mut ihl4 = ipv4_udp(5, 0, 1, 2, b"x");
        ihl4[0] = 0x44;
        assert_eq!(parse_l3(&ihl4), Err(Error::BadLength));
        let mut udp_long = ipv4_udp(5, 0, 1, 2, b"xyz");
        udp_long[25] += 1;
        assert_eq!(parse_l3(&udp_long), Err(Error::BadLength));
        let mut udp_short = ipv4_udp(5, 0, 1, 2, b"xyz");
        udp_short[24..26].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(parse_l3(&udp_short), Err(Error::BadLength));
        assert_eq!(parse_l3(&f[..f.len() - 1]), Err(Error::Truncated));
        assert_eq!(parse_l3(&f[..19]), Err(Error::Truncated));
        assert_eq!(parse_l3(&[]), Err(Error::Truncated));
        assert_eq!(parse_l3(&[0x50; 60]), Err(Error::BadVersion));

        let v6 = ipv6_udp(17, 5, 6, b"abc");
        let d = parse_l3(&v6).unwrap();
        assert_eq!(d.src, "[2001:db8::1]:5".parse().unwrap());
        assert_eq!(d.dst, "[2001:db8::2]:6".parse().unwrap());
        assert_eq!(d.payload(&v6), b"abc");
        assert_eq!(parse_l3(&ipv6_udp(44, 5, 6, b"abc")), Err(Error::Fragment));
        assert_eq!(
            parse_l3(&ipv6_udp(0, 5, 6, b"abc")),
            Err(Error::Ipv6Extension)
        );
        assert_eq!(
            parse_l3(&ipv6_udp(60, 5, 6, b"abc")),
            Err(Error::Ipv6Extension)
        );
        assert_eq!(parse_l3(&ipv6_udp(58, 5, 6, b"abc")), Err(Error::NotUdp));
        assert_eq!(parse_l3(&v6[..45]), Err(Error::Truncated));
        let mut jumbo = v6.clone();
        jumbo[44..46].copy_from_slice(&[0, 0]);
        assert_eq!(parse_l3(&jumbo), Err(Error::BadLength));
    }

    #[test]
    fn prefix_parse_of_snapped_capture() {
        let frame = fixture!("transport_v6.l3");
        let snapped = &frame[..40 + 8 + 32];
        assert_eq!(parse_l3(snapped), Err(Error::Truncated));
        let d = parse_l3_prefix(snapped).unwrap();
        assert!(d.truncated);
        assert_eq!(d.payload, 48..80);
        let Ok(Message::Transport(t)) = classify(d.payload(snapped)) else {
            panic!()
        };
        assert_eq!(t.counter(), 0);
        // Headers must still be whole.
        assert_eq!(parse_l3_prefix(&frame[..47]), Err(Error::Truncated));
        let whole = parse_l3_prefix(&frame).unwrap();
        assert!(!whole.truncated);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        let seeds = [fixture!("initiation_v4.l3"), fixture!("transport_v6.l3")];
        let (mut parsed, mut classified) = (0, 0);
        for round in 0..20_000 {
            let mut buf = if round % 2 == 0 {
                seeds[round % 4 / 2].clone()
            } else {
                (0..(next() % 200) as usize).map(|_| next() as u8).collect()
            };
            // Mutate a few bytes and maybe cut the end off.
            for _ in 0..(next() % 4) {
                if !buf.is_empty() {
                    let i = (next() as usize) % buf.len();
                    buf[i] = next() as u8;
                }
            }
            let cut = (next() as usize) % (buf.len() + 1);
            if next() % 3 == 0 {
                buf.truncate(cut);
            }
            for d in [parse_l3(&buf), parse_l3_prefix(&buf)]
                .into_iter()
                .flatten()
            {
                assert!(d.payload.start <= d.payload.end && d.payload.end <= buf.len());
                parsed += 1;
                classified += usize::from(classify(d.payload(&buf)).is_ok());
            }
            let _ = classify(&buf);
        }
        // The mutations must also reach the deeper layers, not only fail early.
        assert!(
            parsed > 2_000 && classified > 1_000,
            "{parsed} {classified}"
        );
    }
}
