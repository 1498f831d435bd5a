//! Hub decisions driven by plain events, no root, no network.

use super::*;

const WG: &str = "wg0";
const T0: Now = Now::new(1_000_000, 1_700_000_000);

fn key(n: u8) -> PublicKey {
    PublicKey([n; 32])
}

fn ep(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn snap(k: u8, endpoint: Option<&str>, hs: Option<u64>, rx: u64) -> PeerSnapshot {
    PeerSnapshot {
        key: key(k),
        endpoint: endpoint.map(ep),
        last_handshake: hs,
        rx,
        tx: rx,
    }
}

fn hub() -> Hub {
    let mut h = Hub::new(HubPolicy::default(), &[WG.to_string()], vec![]);
    h.handle(
        T0,
        Event::Configured {
            iface: WG.into(),
            peers: vec![UciPeer {
                section: "@wireguard_wg0[0]".into(),
                key: key(1),
                endpoint: None,
            }],
        },
    );
    h
}

fn observe(h: &mut Hub, now: Now, peers: Vec<PeerSnapshot>) -> Vec<Action> {
    h.handle(
        now,
        Event::Observed {
            iface: WG.into(),
            peers: Some(peers),
        },
    )
}

fn moves(actions: &[Action]) -> Vec<SocketAddr> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SetEndpoint { endpoint, .. } | Action::Rearm { endpoint, .. } => {
                Some(*endpoint)
            }
            _ => None,
        })
        .collect()
}

fn stages(actions: &[Action]) -> Vec<SocketAddr> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StageEndpoint { endpoint, .. } => Some(*endpoint),
            _ => None,
        })
        .collect()
}

fn init(h: &mut Hub, now: Now, from: &str, k: u8, stamp: Stamp, idx: u32) -> Vec<Action> {
    h.handle(
        now,
        Event::Initiation {
            iface: WG.into(),
            from: ep(from),
            key: key(k),
            stamp,
            sender_index: idx,
        },
    )
}

#[test]
fn kernel_roam_is_followed_and_staged_without_touching_the_kernel() {
    let mut h = hub();
    let a = observe(
        &mut h,
        T0,
        vec![snap(1, Some("203.0.113.5:30001"), Some(T0.wall), 100)],
    );
    assert_eq!(stages(&a), vec![ep("203.0.113.5:30001")]);
    assert!(moves(&a).is_empty(), "the kernel already has it");
    let t1 = T0.after_ms(1000);
    let a = observe(
        &mut h,
        t1,
        vec![snap(1, Some("203.0.113.5:30777"), Some(T0.wall), 300)],
    );
    assert_eq!(stages(&a), vec![ep("203.0.113.5:30777")]);
    assert!(moves(&a).is_empty());
    let p = &h.ifaces[WG].peers[&key(1)];
    assert_eq!(p.last_change.unwrap().why, Why::Kernel);
    assert_eq!(p.last_change.unwrap().from, Some(ep("203.0.113.5:30001")));
    // The same observation again changes nothing: idempotent.
    let a = observe(
        &mut h,
        t1.after_ms(500),
        vec![snap(1, Some("203.0.113.5:30777"), Some(T0.wall), 300)],
    );
    assert!(stages(&a).is_empty() && moves(&a).is_empty());
}

#[test]
fn stale_config_reapplied_by_netifd_is_reverted_to_the_learned_endpoint() {
    let mut h = hub();
    observe(
        &mut h,
        T0,
        vec![snap(1, Some("203.0.113.5:30777"), Some(T0.wall), 100)],
    );
    // Link re-created (counters reset), `wg syncconf` put the old endpoint back.
    let t1 = T0.after_ms(5000);
    let a = observe(
        &mut h,
        t1,
        vec![snap(1, Some("203.0.113.5:30001"), None, 0)],
    );
    assert_eq!(moves(&a), vec![ep("203.0.113.5:30777")]);
    assert_eq!(
        h.ifaces[WG].peers[&key(1)].last_change.unwrap().why,
        Why::Restored
    );
    assert!(
        stages(&a).is_empty(),
        "uci already holds the learned endpoint"
    );
}

#[test]
fn live_session_wins_over_memory() {
    let remembered = vec![Remembered {
        key: key(1),
        endpoint: ep("203.0.113.5:30001"),
        stamp: None,
        change: None,
    }];
    let mut h = Hub::new(HubPolicy::default(), &[WG.to_string()], remembered);
    let a = observe(
        &mut h,
        T0,
        vec![snap(1, Some("203.0.113.9:30002"), Some(T0.wall - 5), 10)],
    );
    assert!(moves(&a).is_empty());
    assert_eq!(
        h.ifaces[WG].peers[&key(1)].endpoint,
        Some(ep("203.0.113.9:30002"))
    );
}

#[test]
fn restart_restores_remembered_endpoint_when_session_is_gone() {
    let remembered = vec![Remembered {
        key: key(1),
        endpoint: ep("203.0.113.5:30777"),
        stamp: Some((5, 0)),
        change: None,
    }];
    let mut h = Hub::new(HubPolicy::default(), &[WG.to_string()], remembered);
    let a = observe(
        &mut h,
        T0,
        vec![snap(1, Some("203.0.113.5:30001"), None, 0)],
    );
    assert_eq!(moves(&a), vec![ep("203.0.113.5:30777")]);
}

#[test]
fn fresh_initiation_moves_endpoint_at_once_and_replay_never_does() {
    let mut h = hub();
    observe(
        &mut h,
        T0,
        vec![snap(1, Some("203.0.113.5:30001"), Some(T0.wall), 100)],
    );
    let a = init(&mut h, T0.after_ms(10), "203.0.113.5:30500", 1, (100, 1), 7);
    assert_eq!(moves(&a), vec![ep("203.0.113.5:30500")]);
    assert!(
        !a.iter().any(|x| matches!(x, Action::Rearm { .. })),
        "never re-create a peer the kernel is handshaking with"
    );
    assert_eq!(stages(&a), vec![ep("203.0.113.5:30500")]);
    // The same initiation replayed from elsewhere: ignored, counted.
    for n in 0..1000u32 {
        let from = format!("198.51.100.{}:{}", 7 + n % 200, 40000 + n % 1000);
        let a = init(&mut h, T0.after_ms(20), &from, 1, (100, 1), 7);
        assert!(moves(&a).is_empty() && stages(&a).is_empty());
    }
    assert_eq!(h.ifaces[WG].ignored[&Ignored::Replay], 1000);
    assert_eq!(
        h.ifaces[WG].peers[&key(1)].endpoint,
        Some(ep("203.0.113.5:30500"))
    );
}

#[test]
fn initiation_from_unknown_peer_is_ignored() {
    let mut h = hub();
    let a = init(&mut h, T0, "198.51.100.66:1234", 9, (1, 1), 1);
    assert!(moves(&a).is_empty() && stages(&a).is_empty());
    assert_eq!(h.ifaces[WG].ignored[&Ignored::UnknownPeer], 1);
}

#[test]
fn kernel_roam_to_a_suspect_source_is_reverted() {
    let mut h = hub();
    observe(
        &mut h,
        T0,
        vec![snap(1, Some("203.0.113.5:30001"), Some(T0.wall), 100)],
    );
    h.handle(
        T0,
        Event::Ignored {
            iface: WG.into(),
            from: ep("198.51.100.66:4444"),
            why: Ignored::Replay,
        },
    );
    let a = observe(
        &mut h,
        T0.after_ms(500),
        vec![snap(1, Some("198.51.100.66:4444"), Some(T0.wall), 250)],
    );
    assert_eq!(moves(&a), vec![ep("203.0.113.5:30001")]);
}

/// Peer 1 at 203.0.113.5:30001 with a live session whose index the hub
/// handed out (0xbbbb, answering the peer's 0xaaaa) was captured.
fn hub_with_session() -> Hub {
    let mut h = hub();
    observe(
        &mut h,
        T0,
        vec![snap(1, Some("203.0.113.5:30001"), Some(T0.wall), 100)],
    );
    init(&mut h, T0, "203.0.113.5:30001", 1, (100, 1), 0xaaaa);
    h.handle(
        T0,
        Event::Response {
            iface: WG.into(),
            sender_index: 0xbbbb,
            receiver_index: 0xaaaa,
        },
    );
    h
}

/// A transport packet for index `idx` from `from`.
fn transport(h: &mut Hub, now: Now, from: &str, idx: u32) -> Vec<Action> {
    h.handle(
        now,
        Event::Transport {
            iface: WG.into(),
            from: ep(from),
            receiver_index: idx,
        },
    )
}

#[test]
fn index_of_a_lost_session_recovers_the_peer_after_link_recreation() {
    let mut h = hub_with_session();
    // Session live: the kernel roams by itself; the agent stays out.
    let a = transport(&mut h, T0.after_ms(100), "203.0.113.5:30999", 0xbbbb);
    assert!(moves(&a).is_empty());
    // Hub's link re-created with the stale uci endpoint; the NAT moved meanwhile.
    let t1 = T0.after_ms(2000);
    let a = observe(
        &mut h,
        t1,
        vec![snap(1, Some("203.0.113.5:30001"), None, 0)],
    );
    assert!(
        moves(&a).is_empty(),
        "the stale one is also the learned one"
    );
    assert!(a.contains(&Action::CaptureTransport {
        iface: WG.into(),
        on: true
    }));
    // An index nobody was given: never acted on.
    let a = transport(&mut h, t1.after_ms(100), "198.51.100.66:5555", 0x1234);
    assert!(moves(&a).is_empty());
    let a = transport(&mut h, t1.after_ms(200), "203.0.113.5:30999", 0xbbbb);
    assert_eq!(moves(&a), vec![ep("203.0.113.5:30999")]);
    assert_eq!(
        h.ifaces[WG].peers[&key(1)].last_change.unwrap().why,
        Why::Index
    );
    // Handshake done: capture of transport packets goes off again.
    let a = observe(
        &mut h,
        t1.after_ms(1000),
        vec![snap(1, Some("203.0.113.5:30999"), Some(t1.wall + 1), 92)],
    );
    assert!(a.contains(&Action::CaptureTransport {
        iface: WG.into(),
        on: false
    }));
}

#[test]
fn commits_wait_for_the_policy_and_happen_on_stop() {
    let mut h = hub();
    observe(
        &mut h,
        T0,
        vec![snap(1, Some("203.0.113.5:30001"), Some(T0.wall), 100)],
    );
    let mut commits = 0;
    // A day of roaming, one NAT change every 10 minutes, ticks every second.
    let mut now = T0;
    for minute in 0..(24 * 60) {
        if minute % 10 == 0 {
            let port = 30000 + minute % 1000;
            let rx = 1000 + minute as u64;
            observe(
                &mut h,
                now,
                vec![snap(
                    1,
                    Some(&format!("203.0.113.5:{port}")),
                    Some(now.wall),
                    rx,
                )],
            );
        }
        for _ in 0..60 {
            now = now.after_ms(1000);
            commits += h
                .handle(now, Event::Tick)
                .iter()
                .filter(|a| **a == Action::CommitUci)
                .count();
        }
    }
    assert!((23..=24).contains(&commits), "{commits} commits in a day");
    // Steady state: nothing pending, nothing committed.
    let quiet: usize = (0..7200)
        .map(|i| {
            h.handle(now.after_ms(1000 * i), Event::Tick)
                .iter()
                .filter(|a| **a == Action::CommitUci)
                .count()
        })
        .sum();
    assert!(quiet <= 1);
    observe(
        &mut h,
        now,
        vec![snap(1, Some("203.0.113.5:31000"), Some(now.wall), 10_000)],
    );
    assert!(h.handle(now, Event::Stop).contains(&Action::CommitUci));
}

#[test]
fn changes_staged_before_a_crash_are_committed_by_the_policy() {
    let mut h = hub();
    let a = h.handle(T0, Event::StagedBeforeStart);
    assert!(!a.contains(&Action::CommitUci), "not at once: {a:?}");
    let hour = HubPolicy::default().commit_after_s.unwrap() * 1000;
    assert!(
        !h.handle(T0.after_ms(hour - 1000), Event::Tick)
            .contains(&Action::CommitUci)
    );
    assert!(
        h.handle(T0.after_ms(hour), Event::Tick)
            .contains(&Action::CommitUci)
    );
    // Adopted pending changes also go to flash on a clean stop.
    let mut h = hub();
    h.handle(T0, Event::StagedBeforeStart);
    assert!(h.handle(T0, Event::Stop).contains(&Action::CommitUci));
}

#[test]
fn never_commit_policy_never_commits() {
    let policy = HubPolicy {
        commit_after_s: None,
        commit_on_stop: false,
    };
    let mut h = Hub::new(policy, &[WG.to_string()], vec![]);
    h.handle(
        T0,
        Event::Configured {
            iface: WG.into(),
            peers: vec![UciPeer {
                section: "p".into(),
                key: key(1),
                endpoint: None,
            }],
        },
    );
    let a = observe(
        &mut h,
        T0,
        vec![snap(1, Some("203.0.113.5:30001"), Some(T0.wall), 100)],
    );
    assert_eq!(stages(&a).len(), 1);
    let mut all: Vec<Action> = (0..10_000)
        .flat_map(|i| h.handle(T0.after_ms(i * 1000), Event::Tick))
        .collect();
    all.extend(h.handle(T0, Event::StagedBeforeStart));
    all.extend(h.handle(T0, Event::Stop));
    assert!(!all.contains(&Action::CommitUci));
}

/// Three fresh initiations from peer 1, `spacing_ms` apart, none answered.
fn three_unanswered(h: &mut Hub, spacing_ms: u64) {
    for i in 0..3 {
        init(
            h,
            T0.after_ms(i * spacing_ms),
            "203.0.113.5:30001",
            1,
            (200 + i, 0),
            1,
        );
    }
}

#[test]
fn repeated_initiations_without_handshake_name_a_cause() {
    let mut h = hub();
    observe(
        &mut h,
        T0,
        vec![snap(1, Some("203.0.113.5:30001"), Some(T0.wall - 500), 100)],
    );
    three_unanswered(&mut h, 5000);
    let cause = h.ifaces[WG].peers[&key(1)].diag.cause.unwrap();
    assert!(cause.contains("no handshake completes"), "{cause}");
    // Three within a second (a peer restarting, or answered before the next
    // poll saw the handshake) are no diagnosis.
    let mut h = hub();
    three_unanswered(&mut h, 300);
    assert_eq!(h.ifaces[WG].peers[&key(1)].diag.cause, None);
    observe(
        &mut h,
        T0.after_ms(20_000),
        vec![snap(1, Some("203.0.113.5:30001"), Some(T0.wall + 20), 400)],
    );
    assert_eq!(h.ifaces[WG].peers[&key(1)].diag.cause, None);
}

#[test]
fn two_peers_behind_one_nat_keep_their_own_ports() {
    let mut h = hub();
    h.handle(
        T0,
        Event::Configured {
            iface: WG.into(),
            peers: vec![
                UciPeer {
                    section: "@wireguard_wg0[0]".into(),
                    key: key(1),
                    endpoint: None,
                },
                UciPeer {
                    section: "@wireguard_wg0[1]".into(),
                    key: key(2),
                    endpoint: None,
                },
            ],
        },
    );
    observe(
        &mut h,
        T0,
        vec![
            snap(1, Some("203.0.113.5:30001"), Some(T0.wall), 1),
            snap(2, Some("203.0.113.5:30002"), Some(T0.wall), 1),
        ],
    );
    init(&mut h, T0.after_ms(5), "203.0.113.5:30011", 2, (9, 9), 3);
    let p = &h.ifaces[WG].peers;
    assert_eq!(p[&key(1)].endpoint, Some(ep("203.0.113.5:30001")));
    assert_eq!(p[&key(2)].endpoint, Some(ep("203.0.113.5:30011")));
}

#[test]
fn ignored_packets_are_logged_at_a_bounded_rate() {
    let mut h = hub();
    let logs: usize = (0..10_000u64)
        .map(|i| {
            h.handle(
                T0.after_ms(i),
                Event::Ignored {
                    iface: WG.into(),
                    from: ep("198.51.100.66:1"),
                    why: Ignored::BadMac1,
                },
            )
            .len()
        })
        .sum();
    assert!(logs <= 5, "{logs} log lines for 10k junk packets in 10 s");
    assert_eq!(h.ifaces[WG].ignored[&Ignored::BadMac1], 10_000);
}

#[test]
fn interface_disappearing_and_returning_is_reported_once() {
    let mut h = hub();
    observe(
        &mut h,
        T0,
        vec![snap(1, Some("203.0.113.5:30001"), Some(T0.wall), 100)],
    );
    let gone = |h: &mut Hub| {
        h.handle(
            T0,
            Event::Observed {
                iface: WG.into(),
                peers: None,
            },
        )
        .len()
    };
    assert_eq!(gone(&mut h), 1);
    assert_eq!(gone(&mut h), 0);
    assert!(!h.ifaces[WG].up);
}

#[test]
fn sessions_the_hub_initiated_are_recognised_after_another_restart() {
    let mut h = hub();
    observe(
        &mut h,
        T0,
        vec![snap(1, Some("203.0.113.5:30001"), Some(T0.wall), 100)],
    );
    // After a first recovery the hub initiated the new session itself.
    h.handle(
        T0,
        Event::OwnInitiation {
            iface: WG.into(),
            key: key(1),
            sender_index: 0xcccc,
        },
    );
    // For a peer we do not have: never remembered.
    h.handle(
        T0,
        Event::OwnInitiation {
            iface: WG.into(),
            key: key(9),
            sender_index: 0xdddd,
        },
    );
    let t1 = T0.after_ms(3000);
    observe(
        &mut h,
        t1,
        vec![snap(1, Some("203.0.113.5:30001"), None, 0)],
    );
    let tr = |h: &mut Hub, idx| {
        h.handle(
            t1.after_ms(100),
            Event::Transport {
                iface: WG.into(),
                from: ep("203.0.113.5:31111"),
                receiver_index: idx,
            },
        )
    };
    assert!(moves(&tr(&mut h, 0xdddd)).is_empty());
    assert_eq!(moves(&tr(&mut h, 0xcccc)), vec![ep("203.0.113.5:31111")]);
}

#[test]
fn a_replay_flood_from_spoofed_sources_keeps_memory_bounded() {
    let mut h = hub();
    observe(
        &mut h,
        T0,
        vec![snap(1, Some("203.0.113.5:30001"), Some(T0.wall), 100)],
    );
    init(&mut h, T0, "203.0.113.5:30001", 1, (100, 1), 7);
    for i in 0..100_000u32 {
        let from = SocketAddr::from((
            [198, 18, (i >> 8) as u8, i as u8],
            1024 + (i % 50_000) as u16,
        ));
        h.handle(
            T0.after_ms(u64::from(i) / 20),
            Event::Initiation {
                iface: WG.into(),
                from,
                key: key(1),
                stamp: (100, 1),
                sender_index: 7,
            },
        );
    }
    assert!(h.ifaces[WG].suspects.len() <= MAX_SUSPECTS);
    assert_eq!(h.ifaces[WG].ignored[&Ignored::Replay], 100_000);
}

#[test]
fn a_packet_during_the_restart_gap_is_applied_when_the_link_is_back() {
    let mut h = hub_with_session();
    // wg0 is gone; the capture keeps listening on the WAN.
    let t1 = T0.after_ms(1000);
    let a = h.handle(
        t1,
        Event::Observed {
            iface: WG.into(),
            peers: None,
        },
    );
    assert!(a.contains(&Action::CaptureTransport {
        iface: WG.into(),
        on: true
    }));
    let a = transport(&mut h, t1.after_ms(100), "203.0.113.5:30777", 0xbbbb);
    assert!(moves(&a).is_empty(), "no link to apply it to yet");
    assert_eq!(stages(&a), vec![ep("203.0.113.5:30777")]);
    // Back with the stale endpoint from config: the learned one goes in at once.
    let a = observe(
        &mut h,
        t1.after_ms(400),
        vec![snap(1, Some("203.0.113.5:30001"), None, 0)],
    );
    assert_eq!(moves(&a), vec![ep("203.0.113.5:30777")]);
    assert!(a.iter().any(|x| matches!(x, Action::Rearm { .. })));
}
