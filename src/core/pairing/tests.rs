use super::*;

fn token(host: Host) -> Token {
    Token {
        hub_key: public_of(&clamp([9; 32])),
        secret: [0x5a; 16],
        host,
        wg_port: 51820,
        redeem_port: 51821,
    }
}

fn hosts() -> Vec<Host> {
    vec![
        Host::Ip("198.51.100.2".parse().unwrap()),
        Host::Ip("2001:db8:ffff::2".parse().unwrap()),
        Host::Name("hub.example.org".into()),
        Host::Name("a".repeat(80)),
    ]
}

#[test]
fn token_round_trip_and_fits_a_qr_code() {
    for h in hosts() {
        let t = token(h);
        let s = t.encode();
        assert!(s.len() <= TOKEN_MAX, "{} chars: {s}", s.len());
        assert!(!s.contains(char::is_whitespace));
        assert_eq!(Token::decode(&s).unwrap(), t);
        // Surrounding whitespace (copy and paste, `-` from a file) is fine.
        assert_eq!(Token::decode(&format!("  {s}\n")).unwrap(), t);
    }
}

#[test]
fn every_corrupted_character_is_refused() {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for h in hosts() {
        let s = token(h).encode();
        let mut tried = 0;
        for pos in 0..s.len() {
            for &c in ALPHABET.iter().chain(b"=:. ") {
                if s.as_bytes()[pos] == c {
                    continue;
                }
                let mut b = s.clone().into_bytes();
                b[pos] = c;
                let altered = String::from_utf8(b).unwrap();
                tried += 1;
                assert!(
                    Token::decode(&altered).is_err(),
                    "position {pos} changed to {} was accepted",
                    c as char
                );
            }
        }
        assert!(tried > 5000);
    }
}

#[test]
fn every_corrupted_byte_is_refused() {
    for h in hosts() {
        let raw = token(h).bytes();
        for pos in 0..raw.len() {
            for bit in 0..8 {
                let mut b = raw.clone();
                b[pos] ^= 1 << bit;
                let s = format!(
                    "{TOKEN_PREFIX}{}",
                    base64::encode_config(&b, base64::URL_SAFE_NO_PAD)
                );
                assert!(Token::decode(&s).is_err(), "byte {pos} bit {bit} accepted");
            }
            // Whole-byte replacements too.
            for v in [0u8, 0xff, raw[pos].wrapping_add(1)] {
                if v == raw[pos] {
                    continue;
                }
                let mut b = raw.clone();
                b[pos] = v;
                let s = format!(
                    "{TOKEN_PREFIX}{}",
                    base64::encode_config(&b, base64::URL_SAFE_NO_PAD)
                );
                assert!(Token::decode(&s).is_err(), "byte {pos} = {v} accepted");
            }
        }
        // Truncated and extended.
        let s = token(Host::Name("x.org".into())).encode();
        for n in 0..s.len() {
            assert!(Token::decode(&s[..n]).is_err());
        }
        assert!(Token::decode(&format!("{s}A")).is_err());
    }
}

#[test]
fn token_errors_are_one_line_naming_the_fix() {
    for bad in ["", "wgroam1:", "wgroam2:abcd", "wgroam1:!!!!", "hello"] {
        let e = Token::decode(bad).unwrap_err();
        assert!(e.starts_with("invite: "), "{e}");
        assert!(!e.contains('\n'));
        assert!(e.contains("wgroam invite") || e.contains("update"), "{e}");
    }
}

#[test]
fn the_secret_is_never_printed() {
    let t = token(Host::Name("hub".into()));
    assert!(!format!("{t:?}").contains("5a5a"));
    assert!(!format!("{t:?}").contains(&hex(&t.secret)));
}

#[test]
fn endpoints_parse() {
    assert_eq!(
        parse_endpoint("198.51.100.2:51820").unwrap(),
        (Host::Ip("198.51.100.2".parse().unwrap()), 51820)
    );
    assert_eq!(
        parse_endpoint("[2001:db8::1]:1").unwrap(),
        (Host::Ip("2001:db8::1".parse().unwrap()), 1)
    );
    assert_eq!(
        parse_endpoint("hub.example.org:5").unwrap().0,
        Host::Name("hub.example.org".into())
    );
    for bad in ["hub", "hub:0", "hub:x", "2001:db8::1:5", "h_b:1", ":1"] {
        assert!(parse_endpoint(bad).is_err(), "{bad}");
    }
}

// ---------------------------------------------------------------------------

fn hub_private() -> [u8; 32] {
    clamp([9; 32])
}

fn grant() -> Grant {
    Grant {
        tunnel_addr: "2001:db8:100::2".parse().unwrap(),
        subnet_len: 64,
        prefix: "2001:db8:100:1::/64".parse().unwrap(),
        hub_tunnel_addr: "2001:db8:100::1".parse().unwrap(),
    }
}

#[test]
fn redeem_round_trip() {
    let t = token(Host::Name("hub".into()));
    let joiner = public_of(&clamp([3; 32]));
    let r = Redeem::new(&t, [7; 32], &joiner);
    assert_eq!(r.request.len(), REQUEST_LEN);
    let o = open_request(&r.request, &hub_private()).unwrap();
    assert_eq!(o.secret, t.secret);
    assert_eq!(o.joiner_key, joiner);
    assert_eq!(
        r.answer(&o.answer(Ok(&grant()))),
        Some(Answer::Granted(grant()))
    );
    assert_eq!(
        r.answer(&o.answer(Err(Refusal::Expired))),
        Some(Answer::Refused(Refusal::Expired))
    );
    assert_eq!(
        r.answer(&plain_refusal(Refusal::WrongHub)),
        Some(Answer::RefusedPlain(Refusal::WrongHub))
    );
}

#[test]
fn a_recorder_sees_neither_secret_nor_keys() {
    let t = token(Host::Name("hub".into()));
    let joiner = public_of(&clamp([3; 32]));
    let r = Redeem::new(&t, [7; 32], &joiner);
    let o = open_request(&r.request, &hub_private()).unwrap();
    let answer = o.answer(Ok(&grant()));
    for wire in [&r.request, &answer] {
        for needle in [
            &t.secret[..],
            &joiner[..],
            &grant().prefix.to_string().into_bytes()[..],
        ] {
            assert!(!wire.windows(needle.len()).any(|w| w == needle));
        }
        let prefix = match grant().prefix.addr() {
            IpAddr::V6(a) => a.octets(),
            _ => unreachable!(),
        };
        assert!(!wire.windows(8).any(|w| w == &prefix[..8]));
    }
    // Two redeems of the same token look unrelated (fresh ephemeral key).
    let r2 = Redeem::new(&t, [8; 32], &joiner);
    assert_ne!(r.request[4..36], r2.request[4..36]);
    assert_ne!(r.request[36..], r2.request[36..]);
}

#[test]
fn a_request_for_another_hub_or_altered_does_not_open() {
    let t = token(Host::Name("hub".into()));
    let r = Redeem::new(&t, [7; 32], &[1; 32]);
    assert!(matches!(
        open_request(&r.request, &clamp([10; 32])),
        Err(true)
    ));
    for pos in 4..r.request.len() {
        let mut b = r.request.clone();
        b[pos] ^= 1;
        assert!(
            matches!(open_request(&b, &hub_private()), Err(true)),
            "{pos}"
        );
    }
    // Not a request at all: dropped silently.
    assert!(matches!(open_request(b"hello", &hub_private()), Err(false)));
    assert!(matches!(
        open_request(&r.request[..50], &hub_private()),
        Err(false)
    ));
}

#[test]
fn an_answer_for_another_request_or_forged_is_ignored() {
    let t = token(Host::Name("hub".into()));
    let r1 = Redeem::new(&t, [7; 32], &[1; 32]);
    let r2 = Redeem::new(&t, [8; 32], &[1; 32]);
    let o2 = open_request(&r2.request, &hub_private()).unwrap();
    let a2 = o2.answer(Ok(&grant()));
    assert_eq!(r1.answer(&a2), None);
    for pos in 0..a2.len() {
        let mut b = a2.clone();
        b[pos] ^= 0x80;
        assert_eq!(r2.answer(&b), None, "{pos}");
    }
}

// ---------------------------------------------------------------------------

fn pool(p: &str, size: u8) -> Pool {
    Pool {
        pool: p.parse().unwrap(),
        size,
        hub_addr: "2001:db8:100::1".parse().unwrap(),
        subnet_len: 64,
    }
}

fn nets(v: &[&str]) -> Vec<IpNet> {
    v.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn allocator_skips_the_hub_subnet_and_taken_prefixes() {
    // The hub's own /64 (2001:db8:100::/64) lies in the pool.
    let g = allocate(&pool("2001:db8:100::/48", 64), &[]).unwrap();
    assert_eq!(g.prefix.to_string(), "2001:db8:100:1::/64");
    assert_eq!(g.tunnel_addr.to_string(), "2001:db8:100::2");
    assert_eq!(g.hub_tunnel_addr.to_string(), "2001:db8:100::1");
    let taken = nets(&[
        "2001:db8:100::2/128",
        "2001:db8:100:1::/64",
        "::/0",
        "10.0.0.0/8",
    ]);
    let g = allocate(&pool("2001:db8:100::/48", 64), &taken).unwrap();
    assert_eq!(g.prefix.to_string(), "2001:db8:100:2::/64");
    assert_eq!(g.tunnel_addr.to_string(), "2001:db8:100::3");
    // A wider allowed IP covering candidates blocks all of them.
    let taken = nets(&["2001:db8:100:1::/64", "2001:db8:100:2::/63"]);
    let g = allocate(&pool("2001:db8:100::/48", 64), &taken).unwrap();
    assert_eq!(g.prefix.to_string(), "2001:db8:100:4::/64");
    // A narrower allowed IP inside a candidate blocks it too.
    let taken = nets(&["2001:db8:100:1:1::/80"]);
    let g = allocate(&pool("2001:db8:100::/48", 64), &taken).unwrap();
    assert_eq!(g.prefix.to_string(), "2001:db8:100:2::/64");
    // Other sizes.
    let g = allocate(&pool("2001:db8:200::/48", 56), &[]).unwrap();
    assert_eq!(g.prefix.to_string(), "2001:db8:200::/56");
}

#[test]
fn allocator_exhaustion_is_a_clear_error() {
    let p = pool("2001:db8:100::/62", 64);
    // ::/64 is the hub's subnet; 1, 2, 3 taken.
    let taken = nets(&[
        "2001:db8:100:1::/64",
        "2001:db8:100:2::/64",
        "2001:db8:100:3::/64",
    ]);
    let e = allocate(&p, &taken).unwrap_err();
    assert!(e.contains("pool 2001:db8:100::/62 is exhausted"), "{e}");
    assert!(e.contains("widen"), "{e}");
    assert!(!e.contains('\n'));
    // Tunnel subnet exhausted: a /126 has ::1 (hub), ::2, ::3.
    let mut p = pool("2001:db8:200::/48", 64);
    p.subnet_len = 126;
    let e = allocate(&p, &nets(&["2001:db8:100::2/128", "2001:db8:100::3/128"])).unwrap_err();
    assert!(
        e.contains("tunnel subnet 2001:db8:100::/126 is exhausted"),
        "{e}"
    );
    // Size shorter than the pool.
    assert!(
        allocate(&pool("2001:db8:100::/64", 56), &[])
            .unwrap_err()
            .contains("pool_size")
    );
}

#[test]
fn allocations_in_a_row_never_repeat() {
    let p = pool("2001:db8:100::/56", 64);
    let mut taken = Vec::new();
    let mut got = Vec::new();
    for _ in 0..255 {
        let g = allocate(&p, &taken).unwrap();
        assert!(!got.contains(&g.prefix));
        taken.push(g.prefix);
        taken.push(IpNet::host(IpAddr::V6(g.tunnel_addr)));
        got.push(g.prefix);
    }
    assert!(allocate(&p, &taken).unwrap_err().contains("exhausted"));
}

// ---------------------------------------------------------------------------

fn invite(name: &str, hash: &str, state: InviteState) -> Invite {
    Invite {
        name: name.into(),
        iface: "wg0".into(),
        hash: hash.into(),
        created: 1000,
        expires: 4600,
        state,
    }
}

#[test]
fn store_rules() {
    let j = [1u8; 32];
    let store = vec![
        invite("a", "h1", InviteState::Pending),
        invite("b", "h2", InviteState::Revoked),
        invite(
            "c",
            "h3",
            InviteState::Redeemed {
                joiner: j,
                grant: grant(),
            },
        ),
    ];
    assert_eq!(decide(&store, "h1", &j, 2000), Decision::Apply(0));
    assert_eq!(
        decide(&store, "h1", &j, 4600),
        Decision::Refuse(Refusal::Expired)
    );
    assert_eq!(
        decide(&store, "h2", &j, 2000),
        Decision::Refuse(Refusal::Revoked)
    );
    assert_eq!(decide(&store, "h3", &j, 2000), Decision::Repeat(grant()));
    assert_eq!(
        decide(&store, "h3", &[2; 32], 2000),
        Decision::Refuse(Refusal::Used)
    );
    assert_eq!(
        decide(&store, "nope", &j, 2000),
        Decision::Refuse(Refusal::Unknown)
    );
    // The hash of a secret, never the secret.
    assert_eq!(secret_hash(&[0x5a; 16]).len(), 64);
    assert!(!secret_hash(&[0x5a; 16]).contains(&hex(&[0x5a; 16])));
    let mut s = store.clone();
    prune(&mut s, 4600 + 3599);
    assert_eq!(s.len(), 3);
    prune(&mut s, 4600 + 3600);
    assert!(s.is_empty());
}

#[test]
fn durations_and_names() {
    assert_eq!(parse_duration("1h"), Ok(3600));
    assert_eq!(parse_duration("30m"), Ok(1800));
    assert_eq!(parse_duration("90"), Ok(90));
    for bad in ["", "0", "h", "-1h", "31d", "1x"] {
        assert!(
            parse_duration(bad).unwrap_err().starts_with("--ttl:"),
            "{bad}"
        );
    }
    assert!(valid_name("travel-1"));
    assert!(!valid_name("a b") && !valid_name("") && !valid_name("x'y"));
}

#[test]
fn rate_limit_per_source_and_in_total() {
    let mut r = RateLimit::default();
    let a: IpAddr = "198.51.100.3".parse().unwrap();
    for _ in 0..RateLimit::BURST {
        assert!(r.allow(a, 100));
    }
    assert!(!r.allow(a, 100));
    assert!(r.allow("198.51.100.4".parse().unwrap(), 100));
    assert!(r.allow(a, 100 + RateLimit::WINDOW_S));
    let mut r = RateLimit::default();
    for i in 0..4 * RateLimit::BURST as u8 {
        assert!(r.allow(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)), 5));
    }
    assert!(!r.allow("10.1.1.1".parse().unwrap(), 5));
}
