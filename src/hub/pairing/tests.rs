//! The hub's redeem handling with an in-memory uci and a fake WireGuard: what
//! is written on a grant, and that a refusal writes nothing.

use std::net::SocketAddr;
use std::sync::Arc;

use super::*;
use crate::config::uci::syntax::parse_config;
use crate::core::pairing::{Answer, Host, Redeem, Token, clamp, public_of};
use crate::os::uci::MemoryUci;
use crate::os::wg::fake::FakeWg;

const HUB_PRIVATE: [u8; 32] = [0x48; 32];

const NETWORK: &str = "config interface 'wg0'\n\toption proto 'wireguard'\n\tlist addresses '2001:db8:100::1/64'\n\nconfig wireguard_wg0 'old'\n\toption public_key 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg='\n\tlist allowed_ips '2001:db8:100::2/128'\n\tlist allowed_ips '2001:db8:100:1::/64'\n";

struct Setup {
    dir: PathBuf,
    uci: Arc<MemoryUci>,
    listener: RedeemListener,
    wg: FakeWg,
}

fn setup(tag: &str) -> Setup {
    let dir = std::env::temp_dir().join(format!("wgroam-pair-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let text = format!(
        "config agent 'agent'\n\toption role 'hub'\n\toption state_dir '{}'\n\nconfig interface 'wg0'\n\toption pool '2001:db8:100::/48'\n",
        dir.display()
    );
    let cfg = crate::config::from_sections(&parse_config("wgroam", &text).unwrap()).unwrap();
    let uci = Arc::new(MemoryUci::new().with_package("network", NETWORK).unwrap());
    let listener = RedeemListener {
        listeners: vec![Listener {
            iface: cfg.interfaces[0].clone(),
            socket: UdpSocket::bind("127.0.0.1:0").unwrap(),
        }],
        rate: RateLimit::default(),
        uci: Box::new(uci.clone()),
        state_dir: dir.clone(),
    };
    Setup {
        dir,
        uci,
        listener,
        // The hub's interface: its key, none of the joiners yet.
        wg: FakeWg::new()
            .with_device("wg0", 51820)
            .with_private_key("wg0", HUB_PRIVATE),
    }
}

fn new_invite(s: &Setup, name: &str, expires: u64) -> Token {
    let secret: [u8; 16] = random().unwrap();
    let mut st = lock(&s.dir).unwrap();
    st.invites.push(Invite {
        name: name.into(),
        iface: "wg0".into(),
        hash: pairing::secret_hash(&secret),
        created: 0,
        expires,
        state: InviteState::Pending,
    });
    st.save().unwrap();
    Token {
        hub_key: public_of(&clamp(HUB_PRIVATE)),
        secret,
        host: Host::Name("hub".into()),
        wg_port: 51820,
        redeem_port: 51821,
    }
}

fn from(last: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::from([198, 51, 100, last]), 40000)
}

fn redeem(s: &mut Setup, t: &Token, joiner: [u8; 32], src: u8, now: u64) -> (Option<Answer>, bool) {
    let r = Redeem::new(t, random().unwrap(), &joiner);
    let (reply, added) = s.listener.handle(0, &r.request, from(src), &s.wg, now);
    (reply.and_then(|b| r.answer(&b)), added)
}

fn committed_network(s: &Setup) -> Vec<Section> {
    s.uci.committed("network").unwrap()
}

#[test]
fn a_grant_writes_one_peer_section_and_adds_the_peer_live() {
    let mut s = setup("grant");
    let t = new_invite(&s, "travel-1", 1000);
    let joiner = public_of(&clamp([1; 32]));
    let (a, added) = redeem(&mut s, &t, joiner, 3, 10);
    let Some(Answer::Granted(g)) = a else {
        panic!("{a:?}")
    };
    assert!(added);
    // Never what is in the existing peer's allowed_ips.
    assert_eq!(g.prefix.to_string(), "2001:db8:100:2::/64");
    assert_eq!(g.tunnel_addr.to_string(), "2001:db8:100::3");
    let net = committed_network(&s);
    let sec = net
        .iter()
        .find(|x| x.name.as_deref() == Some("wgroam_travel_1"))
        .expect("peer section committed");
    assert_eq!(sec.stype, "wireguard_wg0");
    assert_eq!(
        sec.get_single("public_key"),
        Some(PublicKey(joiner).to_base64().as_str())
    );
    assert_eq!(
        sec.get("allowed_ips").unwrap().values(),
        vec!["2001:db8:100::3/128", "2001:db8:100:2::/64"]
    );
    assert!(
        s.uci.pending("network").unwrap().is_empty(),
        "everything committed"
    );
    assert_eq!(s.wg.added().len(), 1);
    // The same request again (the answer was lost): the same grant, nothing new.
    let (a2, added2) = redeem(&mut s, &t, joiner, 3, 11);
    assert_eq!(a2, Some(Answer::Granted(g)));
    assert!(!added2);
    assert_eq!(s.wg.added().len(), 1);
    // The store holds the hash and the grant, never the secret.
    let text = fs::read_to_string(store_path(&s.dir)).unwrap();
    assert!(!text.contains(&pairing::hex(&t.secret)));
    assert!(text.contains("redeemed"));
    // A second invite gets the next prefix and address.
    let t2 = new_invite(&s, "travel-2", 1000);
    let (a3, _) = redeem(&mut s, &t2, public_of(&clamp([2; 32])), 4, 12);
    let Some(Answer::Granted(g2)) = a3 else {
        panic!("{a3:?}")
    };
    assert_eq!(g2.prefix.to_string(), "2001:db8:100:3::/64");
    assert_eq!(g2.tunnel_addr.to_string(), "2001:db8:100::4");
    let _ = fs::remove_dir_all(&s.dir);
}

#[test]
fn refusals_write_nothing() {
    let mut s = setup("refuse");
    let before = committed_network(&s);
    let t = new_invite(&s, "x", 100);
    let store_before = fs::read(store_path(&s.dir)).unwrap();
    let check = |s: &Setup| {
        assert_eq!(committed_network(s), before);
        assert!(s.uci.pending("network").unwrap().is_empty());
        assert!(s.wg.added().is_empty());
        assert_eq!(fs::read(store_path(&s.dir)).unwrap(), store_before);
    };
    // Expired.
    let (a, _) = redeem(&mut s, &t, [1; 32], 3, 100);
    assert_eq!(a, Some(Answer::Refused(Refusal::Expired)));
    check(&s);
    // Unknown secret (altered with a valid checksum).
    let mut t2 = t.clone();
    t2.secret[0] ^= 1;
    let (a, _) = redeem(&mut s, &t2, [1; 32], 4, 10);
    assert_eq!(a, Some(Answer::Refused(Refusal::Unknown)));
    check(&s);
    // Wrong hub key: cannot be decrypted, a plain refusal.
    let mut t3 = t.clone();
    t3.hub_key = public_of(&clamp([9; 32]));
    let (a, _) = redeem(&mut s, &t3, [1; 32], 5, 10);
    assert_eq!(a, Some(Answer::RefusedPlain(Refusal::WrongHub)));
    check(&s);
    // Revoked.
    {
        let mut st = lock(&s.dir).unwrap();
        st.invites[0].state = InviteState::Revoked;
        st.save().unwrap();
    }
    let (a, _) = redeem(&mut s, &t, [1; 32], 6, 10);
    assert_eq!(a, Some(Answer::Refused(Refusal::Revoked)));
    assert_eq!(committed_network(&s), before);
    assert!(s.wg.added().is_empty());
    let _ = fs::remove_dir_all(&s.dir);
}

#[test]
fn a_second_key_cannot_use_a_redeemed_invite_and_attempts_are_rate_limited() {
    let mut s = setup("used");
    let t = new_invite(&s, "x", 1000);
    let (a, _) = redeem(&mut s, &t, [1; 32], 3, 10);
    assert!(matches!(a, Some(Answer::Granted(_))));
    let before = committed_network(&s);
    let (a, _) = redeem(&mut s, &t, [2; 32], 7, 10);
    assert_eq!(a, Some(Answer::Refused(Refusal::Used)));
    assert_eq!(committed_network(&s), before);
    // From one address: BURST attempts per window, then refused unread.
    for _ in 1..RateLimit::BURST {
        let (a, _) = redeem(&mut s, &t, [2; 32], 7, 20);
        assert_eq!(a, Some(Answer::Refused(Refusal::Used)));
    }
    let (a, _) = redeem(&mut s, &t, [2; 32], 7, 20);
    assert_eq!(a, Some(Answer::RefusedPlain(Refusal::RateLimited)));
    // Garbage is dropped without an answer.
    let (reply, _) = s.listener.handle(0, b"hello", from(8), &s.wg, 20);
    assert!(reply.is_none());
    let _ = fs::remove_dir_all(&s.dir);
}

#[test]
fn exhaustion_is_refused_with_the_reason() {
    let mut s = setup("exhaust");
    // A pool of four /64s: ::/64 is the hub's subnet, :1 is taken, two left.
    let text = format!(
        "config agent 'agent'\n\toption role 'hub'\n\toption state_dir '{}'\n\nconfig interface 'wg0'\n\toption pool '2001:db8:100::/62'\n",
        s.dir.display()
    );
    let cfg = crate::config::from_sections(&parse_config("wgroam", &text).unwrap()).unwrap();
    s.listener.listeners[0].iface = cfg.interfaces[0].clone();
    for (i, want) in [(1u8, true), (2, true), (3, false)] {
        let t = new_invite(&s, &format!("t{i}"), 1000);
        let (a, _) = redeem(&mut s, &t, public_of(&clamp([i; 32])), i, 10);
        match (a, want) {
            (Some(Answer::Granted(_)), true) => {}
            (Some(Answer::Refused(Refusal::Exhausted)), false) => {}
            (a, _) => panic!("{i}: {a:?}"),
        }
    }
    let _ = fs::remove_dir_all(&s.dir);
}

#[test]
fn hub_address_and_allowed_ips_from_uci() {
    let net = parse_config("network", NETWORK).unwrap();
    assert_eq!(
        hub_address(&net, "wg0"),
        Some(("2001:db8:100::1".parse().unwrap(), 64))
    );
    assert_eq!(hub_address(&net, "wg1"), None);
    assert_eq!(uci_allowed_ips(&net).len(), 2);
    assert_eq!(peer_section("travel 1"), "wgroam_travel_1");
}

#[test]
fn pool_options_are_validated_with_one_line_each() {
    let load = |extra: &str| {
        let text =
            format!("config agent 'agent'\n\toption role 'hub'\n\nconfig interface 'wg0'\n{extra}");
        crate::config::from_sections(&parse_config("wgroam", &text).unwrap())
    };
    let cfg = load(
        "\toption pool '2001:db8:100::/48'\n\toption pool_size '56'\n\toption redeem_port '4000'\n",
    )
    .unwrap();
    let p = cfg.interfaces[0].pair.unwrap();
    assert_eq!(
        (p.pool.to_string(), p.size, p.redeem_port),
        ("2001:db8:100::/48".into(), 56, 4000)
    );
    assert_eq!(load("").unwrap().interfaces[0].pair, None);
    for (extra, want) in [
        (
            "\toption pool '10.0.0.0/8'\n",
            "wgroam.wg0.pool: '10.0.0.0/8' is not valid",
        ),
        ("\toption pool '2001:db8:100::1/48'\n", "wgroam.wg0.pool"),
        (
            "\toption pool '2001:db8:100::/48'\n\toption pool_size '40'\n",
            "wgroam.wg0.pool_size: '40'",
        ),
        (
            "\toption pool '2001:db8:100::/48'\n\toption redeem_port '0'\n",
            "wgroam.wg0.redeem_port",
        ),
    ] {
        let e = load(extra).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].to_string().starts_with(want), "{}", e[0]);
    }
    // A roam router does not know the option.
    let text = "config agent 'agent'\n\toption role 'roam'\n\nconfig interface 'wg0'\n\toption pool '2001:db8:100::/48'\n";
    let e = crate::config::from_sections(&parse_config("wgroam", text).unwrap()).unwrap_err();
    assert!(e[0].to_string().contains("pool"), "{}", e[0]);
}
