//! `wgroam invite` on the hub: create, list and revoke invites.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use crate::app::cli::Invite as InviteArgs;
use crate::config;
use crate::core::pairing::{self, Host, Invite, InviteState, Token};
use crate::hub::pairing::{lock, pairing_interface, peer_section, random};
use crate::os::uci::{UciCli, UciStore};
use crate::os::wg::{System, WireGuard};

fn now_wall() -> u64 {
    crate::os::signals::now().wall
}

fn fail(code: i32, msg: &str) -> i32 {
    eprintln!("wgroam invite: {msg}");
    code
}

pub fn invite(a: &InviteArgs, uci: UciCli) -> i32 {
    let path = a
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH));
    let cfg = match config::load(&path) {
        Ok(c) => c,
        Err(p) => {
            for x in p {
                eprintln!("{x}");
            }
            return 2;
        }
    };
    // Creating and revoking an invite are logged like the agent's own lines
    // (`logread -e wgroam`); the token and its secret never are.
    crate::os::syslog::init(cfg.log_level, false);
    let state_dir = a.state_dir.clone().unwrap_or(cfg.state_dir.clone());
    if a.list {
        return list(&state_dir, a.json);
    }
    if let Some(name) = &a.revoke {
        return revoke(&state_dir, name);
    }
    let iface = match pairing_interface(&cfg, a.interface.as_deref()) {
        Ok(i) => i.clone(),
        Err(e) => return fail(2, &e),
    };
    let ttl = match a
        .ttl
        .as_deref()
        .map(pairing::parse_duration)
        .unwrap_or(Ok(3600))
    {
        Ok(t) => t,
        Err(e) => return fail(2, &e),
    };
    let view = match System.read(&iface.ifname, iface.backend) {
        Ok(Some(v)) => v,
        Ok(None) => {
            return fail(
                1,
                &format!(
                    "{}: WireGuard interface does not exist; bring it up first (ifup {})",
                    iface.ifname, iface.name
                ),
            );
        }
        Err(e) => {
            return fail(
                1,
                &format!(
                    "{}: cannot read WireGuard state ({e}); run as root",
                    iface.ifname
                ),
            );
        }
    };
    let Some(hub_key) = view.public_key else {
        return fail(
            1,
            &format!(
                "{}: has no private key yet; set network.{}.private_key",
                iface.ifname, iface.name
            ),
        );
    };
    let (host, wg_port) = match a.endpoint.as_deref() {
        Some(e) => match pairing::parse_endpoint(e) {
            Ok(x) => x,
            Err(_) if view.listen_port.is_some() && Host::parse(e).is_ok() && !e.contains(':') => (
                Host::parse(e).unwrap_or(Host::Name(e.into())),
                view.listen_port.unwrap_or(51820),
            ),
            Err(err) => return fail(2, &format!("--endpoint: {err}")),
        },
        None => {
            return fail(
                2,
                "--endpoint: missing; give the hub's public address and WireGuard port as the travel router reaches it, e.g. --endpoint hub.example.org:51820",
            );
        }
    };
    // Where the uci peer section will go must be free (checked again on redeem).
    let network = uci.load("network").unwrap_or_default();
    let mut store = match lock(&state_dir) {
        Ok(s) => s,
        Err(e) => {
            return fail(
                1,
                &format!(
                    "cannot open the invite store in {}: {e}",
                    state_dir.display()
                ),
            );
        }
    };
    let now = now_wall();
    pairing::prune(&mut store.invites, now);
    let taken = |n: &str| {
        store
            .invites
            .iter()
            .any(|v| peer_section(&v.name) == peer_section(n))
            || network
                .iter()
                .any(|s| s.name.as_deref() == Some(peer_section(n).as_str()))
    };
    let name = match &a.name {
        Some(n) if !pairing::valid_name(n) => {
            return fail(
                2,
                &format!("--name: '{n}' is not valid; expected 1-32 letters, digits, '-' or '_'"),
            );
        }
        Some(n) if taken(n) => {
            return fail(
                2,
                &format!(
                    "--name: '{n}' is already used (an invite or network.{}); pick another name",
                    peer_section(n)
                ),
            );
        }
        Some(n) => n.clone(),
        None => match (1..10_000)
            .map(|i| format!("travel-{i}"))
            .find(|n| !taken(n))
        {
            Some(n) => n,
            None => return fail(1, "no free invite name; pass --name"),
        },
    };
    let secret: [u8; 16] = match random() {
        Ok(s) => s,
        Err(e) => return fail(1, &format!("no random numbers: {e}")),
    };
    let redeem_port = iface.pair.map_or(51821, |p| p.redeem_port);
    let token = Token {
        hub_key: hub_key.0,
        secret,
        host,
        wg_port,
        redeem_port,
    };
    store.invites.push(Invite {
        name: name.clone(),
        iface: iface.name.clone(),
        hash: pairing::secret_hash(&secret),
        created: now,
        expires: now + ttl,
        state: InviteState::Pending,
    });
    if let Err(e) = store.save() {
        return fail(
            1,
            &format!(
                "cannot write the invite store in {}: {e}",
                state_dir.display()
            ),
        );
    }
    drop(store);
    crate::os::syslog::emit(
        crate::core::Level::Notice,
        &format!(
            "pair: invite '{name}' for {} created, expires in {ttl} s",
            iface.ifname
        ),
    );
    let line = token.encode();
    println!("{line}");
    if a.qr || std::io::stdout().is_terminal() {
        print!("{}", crate::app::qr::render(line.as_bytes()));
    }
    if crate::hub::status::read(&state_dir).is_err() {
        eprintln!(
            "wgroam invite: note: the hub agent is not running; the invite can be redeemed only while it runs (/etc/init.d/wgroam start)"
        );
    }
    0
}

fn list(state_dir: &Path, json: bool) -> i32 {
    let store = match lock(state_dir) {
        Ok(s) => s,
        Err(e) => return fail(1, &format!("cannot open the invite store: {e}")),
    };
    let now = now_wall();
    if json {
        // [{name, interface, state (pending|expired|revoked|used), expires, prefix?, tunnel_addr?}]
        let v: Vec<serde_json::Value> = store
            .invites
            .iter()
            .map(|v| {
                let mut o =
                    serde_json::json!({"name": v.name, "interface": v.iface, "expires": v.expires});
                o["state"] = match &v.state {
                    InviteState::Pending if now >= v.expires => "expired".into(),
                    InviteState::Pending => "pending".into(),
                    InviteState::Revoked => "revoked".into(),
                    InviteState::Redeemed { grant, .. } => {
                        o["prefix"] = grant.prefix.to_string().into();
                        o["tunnel_addr"] = grant.tunnel_addr.to_string().into();
                        "used".into()
                    }
                };
                o
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return 0;
    }
    for v in &store.invites {
        let state = match &v.state {
            InviteState::Pending if now >= v.expires => "expired".to_string(),
            InviteState::Pending => format!("pending, expires in {} s", v.expires - now),
            InviteState::Revoked => "revoked".into(),
            InviteState::Redeemed { grant, .. } => format!(
                "used: prefix {}, tunnel {}",
                grant.prefix, grant.tunnel_addr
            ),
        };
        println!("{}  {}  {state}", v.name, v.iface);
    }
    0
}

fn revoke(state_dir: &Path, name: &str) -> i32 {
    let mut store = match lock(state_dir) {
        Ok(s) => s,
        Err(e) => return fail(1, &format!("cannot open the invite store: {e}")),
    };
    let Some(v) = store.invites.iter_mut().find(|v| v.name == name) else {
        return fail(
            2,
            &format!("--revoke: no invite named '{name}' (see wgroam invite --list)"),
        );
    };
    match v.state {
        InviteState::Pending => v.state = InviteState::Revoked,
        InviteState::Revoked => return 0,
        InviteState::Redeemed { .. } => {
            return fail(
                2,
                &format!(
                    "--revoke: invite '{name}' was already used; remove its peer instead: uci delete network.{}; uci commit network; wg set <if> peer <key> remove",
                    peer_section(name)
                ),
            );
        }
    }
    if let Err(e) = store.save() {
        return fail(1, &format!("cannot write the invite store: {e}"));
    }
    crate::os::syslog::emit(
        crate::core::Level::Notice,
        &format!("pair: invite '{name}' revoked"),
    );
    println!("revoked {name}");
    0
}
