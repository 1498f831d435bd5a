#!/usr/bin/python3
"""A small model of OpenWrt's netifd + odhcpd for wgroam's lab tests.

CI has no netifd, odhcpd or ubusd. This stand-in behaves the way the REAL daemons were
observed to behave (../../../shared/openwrt-fixtures/netifd-delegation/README.md, cited
below as "fixtures README sN", and the JSON in openwrt-fixtures/ubus/). It is written
from those observations; it is not built from netifd/odhcpd code. Python 3 standard
library only.

Pieces (all share one state directory DIR, see `init`):
  init DIR --uci BIN --confdir C --savedir S [--handler sh|ucode] [--lan-ifaces lan]
      "boot": reads uci `network` (real uci tool, save dir included), brings the
      interfaces up, writes DIR/state.json.
  ubus DIR ARGS...        the `ubus` command line (`call OBJ METHOD [JSON]`, `list`).
                          The lab installs a wrapper as WGROAM_UBUS_BIN.
  netifd DIR              background: netifd's reaction to device events (a dynamic
                          interface is deleted when its device/tunnel goes down, s9).
  odhcpd DIR [--radvd B]  background: odhcpd's router advertisements, computed like
                          odhcpd (s10) and sent by a real radvd on the LAN device.
  ctl DIR events|state    for tests: link re-creations and other recorded events.

Rules (each has a unit test in test_netifd_model.py naming the fixture it mirrors):
  R1  `network reload` ignores a staged ip6prefix on a proto interface (s1).
  R2  `network.interface.<wg> renew` applies the uci ip6prefix, save dir included,
      without re-creating the link - wireguard.sh handler (s2).
  R3  ucode handler: the config is snapshotted at load; renew replays the snapshot;
      reload with a changed wg section re-creates the link (recorded event) (s7).
  R4  add_dynamic: ip6prefix must be an array (a string is ignored), proto none ignores
      it, an identical repeat is a no-op, a changed config deletes the interface (s9).
  R5  remove/down of a dynamic interface withdraws its prefix; lan keeps its address
      deprecated (preferred 0, valid 7200) (s3, s10).
  R6  a dynamic interface is deleted when its device or tunnel interface goes down (s9).
  R7  downstream interfaces with ip6assign get a /ip6assign of each prefix; status of
      the prefix owner and of lan shows it (s2, ubus/*.json).
  R8  assigning a prefix lowers lan's IPv6 MTU to the uplink device's, unless the lan
      device has mtu6 configured (s10); the RA MTU option is lan's IPv6 MTU (s5, s10).
  R9  router lifetime 1800 iff lan has a public address (deprecated counts) and ANY ::/0
      route not on lo exists in /proc/net/ipv6_route, source-specific ones included (s10).
  R10 RDNSS like odhcpd_get_interface_dns_addr: valid > now; a non-deprecated address
      beats a deprecated one; ULA beats global; longer preferred lifetime wins; else
      the link-local address (s3, s10, ubus/odhcpd-real.ra-capture.txt).
  R11 prefixes: live address -> valid min(v,5400) / preferred min(p,2700); a
      deprecated address or a vanished one (stale) -> goodbye, valid 0 / preferred 0 (s3).
  R12 `dhcp` ubus object exists only while odhcpd runs (ubus exit 4 otherwise).
"""

import fcntl
import ipaddress
import json
import os
import select
import shlex
import signal
import socket
import subprocess
import sys
import time

INFINITE = 0xFFFFFFFF
# odhcpd's caps on announced prefix lifetimes and its default router lifetime
# (fixtures README s2: valid 5400 / preferred 2700, router lifetime 1800).
ND_VALID_LIMIT = 5400
ND_PREFERRED_LIMIT = 2700
ROUTER_LIFETIME = 1800
# netifd keeps a withdrawn assignment's address deprecated for this long (s10).
DEPRECATED_VALID = 7200
# netifd handles `remove` ~100 ms after the call (FINDINGS Q2).
WITHDRAW_DELAY = 0.1
# odhcpd sends one multicast RA 1 s after the LAST address or ::/0 route change
# (FINDINGS Q1/Q3: router.c router_netevent_cb re-arms a 1000 ms timer).
RA_DEBOUNCE = 1.0


class UbusError(Exception):
    """A ubus status code: 2 invalid argument, 3 method not found, 4 not found."""

    MESSAGES = {2: "Invalid argument", 3: "Method not found", 4: "Not found", 5: "No response"}

    def __init__(self, code):
        super().__init__(self.MESSAGES.get(code, "Unknown error"))
        self.code = code


# ---------------------------------------------------------------------------
# uci (the real tool; netifd reads the committed file plus the save directory)


def parse_uci_export(text):
    """`uci export` text -> list of sections {".type", ".name", opts...}; lists are
    Python lists, options strings."""
    sections = []
    cur = None
    for line in text.splitlines():
        words = shlex.split(line, posix=True)
        if not words:
            continue
        if words[0] == "config":
            cur = {".type": words[1], ".name": words[2] if len(words) > 2 else None}
            sections.append(cur)
        elif words[0] == "option" and cur is not None and len(words) >= 3:
            cur[words[1]] = words[2]
        elif words[0] == "list" and cur is not None and len(words) >= 3:
            cur.setdefault(words[1], [])
            if isinstance(cur[words[1]], list):
                cur[words[1]].append(words[2])
    return sections


class UciReader:
    def __init__(self, uci_bin, confdir, savedir):
        self.uci_bin, self.confdir, self.savedir = uci_bin, confdir, savedir

    def load(self, package):
        p = subprocess.run(
            [self.uci_bin, "-c", self.confdir, "-t", self.savedir, "export", package],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if p.returncode != 0:
            return []
        return parse_uci_export(p.stdout)


def as_list(v):
    if v is None:
        return []
    if isinstance(v, list):
        return list(v)
    return str(v).split()


# ---------------------------------------------------------------------------
# The system netifd and odhcpd act on (real in the lab, fake in unit tests)


class System:
    """Linux in the current network namespace."""

    def dev_exists(self, dev):
        return os.path.exists(f"/sys/class/net/{dev}")

    def dev_up(self, dev):
        try:
            with open(f"/sys/class/net/{dev}/flags") as f:
                return int(f.read().strip(), 16) & 1 == 1
        except OSError:
            return False

    def ifindex(self, dev):
        try:
            with open(f"/sys/class/net/{dev}/ifindex") as f:
                return int(f.read())
        except OSError:
            return None

    def mtu6(self, dev):
        try:
            with open(f"/proc/sys/net/ipv6/conf/{dev}/mtu") as f:
                return int(f.read())
        except OSError:
            return None

    def set_mtu6(self, dev, mtu):
        with open(f"/proc/sys/net/ipv6/conf/{dev}/mtu", "w") as f:
            f.write(str(mtu))

    def addr_set(self, dev, cidr, preferred, valid, noprefixroute=False):
        def lft(v):
            return "forever" if v >= INFINITE else str(v)

        subprocess.run(
            ["ip", "-6", "addr", "replace", cidr, "dev", dev, "valid_lft", lft(valid),
             "preferred_lft", lft(preferred), "nodad"]
            + (["noprefixroute"] if noprefixroute else []),
            capture_output=True,
            timeout=10,
        )

    def route(self, args):
        subprocess.run(["ip", "-6", "route"] + args, capture_output=True, timeout=10)

    def addrs(self, dev):
        """[{addr, plen, scope, preferred, valid}] from the kernel."""
        p = subprocess.run(["ip", "-j", "-6", "addr", "show", "dev", dev],
                           capture_output=True, text=True, timeout=10)
        out = []
        try:
            data = json.loads(p.stdout or "[]")
        except ValueError:
            return out
        for link in data:
            for a in link.get("addr_info", []):
                if a.get("family") != "inet6":
                    continue
                out.append({
                    "addr": a["local"],
                    "plen": a["prefixlen"],
                    "scope": a.get("scope", "global"),
                    "preferred": a.get("preferred_life_time", INFINITE),
                    "valid": a.get("valid_life_time", INFINITE),
                })
        return out

    def ipv6_route(self):
        with open("/proc/net/ipv6_route") as f:
            return f.read()

    def link_mtu(self, dev):
        try:
            with open(f"/sys/class/net/{dev}/mtu") as f:
                return int(f.read())
        except OSError:
            return None

    def flush6(self, dev, bounce=True):
        """Every IPv6 address and route of dev gone, the link bounced (LL comes back)."""
        cmds = [["ip", "-6", "route", "flush", "dev", dev], ["ip", "-6", "addr", "flush", "dev", dev]]
        if bounce:
            cmds += [["ip", "link", "set", dev, "down"], ["ip", "link", "set", dev, "up"]]
        for cmd in cmds:
            subprocess.run(cmd, capture_output=True, timeout=10)


# ---------------------------------------------------------------------------
# State file (one JSON document, changed under an flock)


class Store:
    def __init__(self, d):
        self.dir = d
        self.path = os.path.join(d, "state.json")
        self._lock = None

    def __enter__(self):
        self._lock = open(os.path.join(self.dir, "lock"), "a+")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        self._lock.close()

    def read(self):
        with open(self.path) as f:
            return json.load(f)

    def write(self, st):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(st, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path)


def config_of(d):
    with open(os.path.join(d, "config.json")) as f:
        return json.load(f)


# ---------------------------------------------------------------------------
# netifd


PROTO_WITH_HANDLER = ("wireguard",)
ULA_SOURCE = "(ula_prefix)"  # the source name of network.globals.ula_prefix  # proto handlers (shell or ucode), not built-in static


class Netifd:
    """netifd's interfaces and prefix assignment. `st` is the JSON state."""

    def __init__(self, st, system, uci, now=None):
        self.st = st
        self.sys = system
        self.uci = uci
        self.now = now or time.time

    # -- helpers -----------------------------------------------------------
    @property
    def ifaces(self):
        return self.st["interfaces"]

    def event(self, what, **kw):
        e = {"t": round(self.now(), 3), "what": what}
        e.update(kw)
        self.st.setdefault("events", []).append(e)

    def handler(self):
        return self.st.get("handler", "sh")

    def _network(self):
        secs = self.uci.load("network")
        ifaces = {s[".name"]: s for s in secs if s[".type"] == "interface" and s[".name"]}
        return secs, ifaces

    @staticmethod
    def wg_snapshot(secs, name):
        """The ucode handler's snapshot: the section and all its peers (s7)."""
        snap = {"section": None, "peers": []}
        for s in secs:
            if s[".type"] == "interface" and s[".name"] == name:
                snap["section"] = s
            elif s[".type"] == f"wireguard_{name}":
                snap["peers"].append(s)
        return snap

    def _new_iface(self, name, sec, secs):
        proto = sec.get("proto", "none")
        dev = name if proto in PROTO_WITH_HANDLER else sec.get("device", sec.get("ifname", ""))
        rec = {
            "name": name,
            "proto": proto,
            "device": dev,
            "dynamic": False,
            "up": False,
            "config": sec,
            "prefixes": [],
            "since": round(self.now(), 3),
        }
        if proto in PROTO_WITH_HANDLER and self.handler() == "ucode":
            rec["snapshot"] = self.wg_snapshot(secs, name)
        return rec

    def _setup(self, rec):
        """The interface comes up: proto setup reads ip6prefix (proto handler: from uci
        with wireguard.sh, from the snapshot with ucode; static: from its config)."""
        if self.sys.dev_exists(rec["device"]):
            rec["seen_device"] = True
        if not (self.sys.dev_exists(rec["device"]) and self.sys.dev_up(rec["device"])):
            rec["up"] = False
            return
        rec["up"] = True
        rec["since"] = round(self.now(), 3)
        rec["prefixes"] = self._configured_prefixes(rec)

    def _configured_prefixes(self, rec, reread=True):
        if rec["proto"] == "none":
            return []  # proto none ignores ip6prefix (s9)
        if rec.get("dynamic"):
            p = rec["config"].get("ip6prefix")
            # add_dynamic: an array only; a string is ignored silently (s9).
            return [x for x in p if isinstance(x, str)] if isinstance(p, list) else []
        if rec["proto"] in PROTO_WITH_HANDLER and self.handler() == "ucode":
            sec = (rec.get("snapshot") or {}).get("section") or {}
            return valid_prefixes(as_list(sec.get("ip6prefix")))
        if reread and rec["proto"] in PROTO_WITH_HANDLER:
            _, ifaces = self._network()
            sec = ifaces.get(rec["name"], {})
            rec["config"] = sec or rec["config"]
            return valid_prefixes(as_list(sec.get("ip6prefix")))
        return valid_prefixes(as_list(rec["config"].get("ip6prefix")))

    # -- boot / reload -------------------------------------------------------
    def _globals(self, secs):
        g = next((x for x in secs if x[".type"] == "globals"), {})
        self.st["ula_prefix"] = g.get("ula_prefix") or None

    def boot(self):
        secs, ifaces = self._network()
        self._globals(secs)
        self.st["interfaces"] = {}
        for name, sec in ifaces.items():
            rec = self._new_iface(name, sec, secs)
            self.ifaces[name] = rec
            if sec.get("auto", "1") != "0" and sec.get("disabled", "0") != "1":
                self._setup(rec)
        self.reconcile()

    def restart(self):
        """netifd killed and started again (/etc/init.d/network restart; FINDINGS "netifd
        restarted"): the new netifd flushes every IPv6 address and route on its devices
        (the agent's routes too) and bounces them, knows nothing of dynamic interfaces,
        sets up the config again (proto addresses re-added) and ~1 s later its device
        setup resets the IPv6 MTU. odhcpd disables the LAN and stays silent until it is
        reloaded (SIGHUP), see run_odhcpd."""
        devs = sorted({r["device"] for r in self.ifaces.values()
                       if not r.get("dynamic") and r["device"] and self.sys.dev_exists(r["device"])})
        # The lab's uplink (`wan`, DHCP in uci) is only flushed, not bounced: a bounce
        # drops its IPv4 default route, which the real netifd's dhcp proto would fetch
        # again and the model cannot.
        bounce = {r["device"] for r in self.ifaces.values()
                  if r["proto"] in PROTO_WITH_HANDLER or r["config"].get("ip6assign")}
        for dev in devs:
            self.sys.flush6(dev, bounce=dev in bounce)
        self.st["assignments"] = {}
        self.st["pending"] = []
        self.st["netifd_generation"] = self.st.get("netifd_generation", 0) + 1
        self.event("netifd-restarted", devices=devs)
        self.boot()
        for rec in self.ifaces.values():
            if rec["up"]:
                cfg = rec["config"]
                for a in as_list(cfg.get("addresses")) + as_list(cfg.get("ip6addr")):
                    if ":" in a:
                        self.sys.addr_set(rec["device"], a, INFINITE, INFINITE)
        for dev in devs:
            self.st["pending"].append({"due": self.now() + 1.0, "kind": "mtu6-reset",
                                       "dev": dev})

    def reload(self):
        secs, ifaces = self._network()
        self._globals(secs)
        for name in list(self.ifaces):
            rec = self.ifaces.get(name)
            if rec is None or rec.get("dynamic"):
                continue
            if name not in ifaces:
                del self.ifaces[name]
                self.event("interface-removed", iface=name)
                continue
            sec = ifaces[name]
            if rec["proto"] in PROTO_WITH_HANDLER:
                if self.handler() == "ucode":
                    snap = self.wg_snapshot(secs, name)
                    if snap != rec.get("snapshot"):
                        # config() ran again and the snapshot differs: the link is
                        # torn down and set up again (s7).
                        rec["snapshot"] = snap
                        rec["config"] = sec
                        self.event("link-recreated", iface=name, device=rec["device"],
                                   handler="ucode", cause="network reload")
                        self._device_deleted(rec["device"], "link re-created")
                        self._setup(rec)
                # wireguard.sh: reload does not re-read ip6prefix of a proto
                # interface (s1); the config is only picked up at setup/renew.
                continue
            if sec != rec["config"]:
                rec["config"] = sec
                rec["proto"] = sec.get("proto", "none")
                rec["device"] = sec.get("device", sec.get("ifname", ""))
                self._setup(rec)
        for name, sec in ifaces.items():
            if name not in self.ifaces:
                rec = self._new_iface(name, sec, secs)
                self.ifaces[name] = rec
                if sec.get("auto", "1") != "0" and sec.get("disabled", "0") != "1":
                    self._setup(rec)
                self.event("interface-added", iface=name)
        self.reconcile()

    # -- per-interface methods ----------------------------------------------
    def get(self, name):
        rec = self.ifaces.get(name)
        if rec is None:
            raise UbusError(4)
        return rec

    def renew(self, name):
        rec = self.get(name)
        if not rec["up"]:
            return
        if rec["proto"] in PROTO_WITH_HANDLER:
            # wireguard.sh renew re-reads uci (s2); ucode replays the snapshot (s7).
            rec["prefixes"] = self._configured_prefixes(rec)
            self.event("renew", iface=name, handler=self.handler())
        self.reconcile()

    def up(self, name):
        rec = self.get(name)
        if not rec["up"]:
            rec.pop("down_cause", None)
            self._setup(rec)
        self.reconcile()

    def down(self, name):
        rec = self.get(name)
        if rec.get("dynamic"):
            self._delete_dynamic(name, "down")
        else:
            rec["up"] = False
            rec["prefixes"] = []
            rec["down_cause"] = "ubus"
            self.event("interface-down", iface=name)
            if rec["proto"] in PROTO_WITH_HANDLER:
                # wireguard's teardown deletes the link: what was on the device goes
                # (s9: "netifd deletes the dynamic interface when wg1 goes down"); a
                # proto static down keeps the device and its dynamic interfaces.
                self._device_deleted(rec["device"], "ifdown " + name)
        self.reconcile(deferred=True)

    def _device_deleted(self, dev, why):
        for other in [n for n, r in self.ifaces.items()
                      if r.get("dynamic") and r["device"] == dev]:
            self._delete_dynamic(other, why)

    def remove(self, name):
        rec = self.get(name)
        if rec.get("dynamic"):
            self._delete_dynamic(name, "remove")
        else:
            del self.ifaces[name]
            self.event("interface-removed", iface=name)
        self.reconcile(deferred=True)

    def _delete_dynamic(self, name, why):
        self.ifaces.pop(name, None)
        self.event("dynamic-deleted", iface=name, cause=why)

    def add_dynamic(self, args):
        if not isinstance(args, dict) or not isinstance(args.get("name"), str) or not args["name"]:
            raise UbusError(2)
        name = args["name"]
        cfg = dict(args)
        existing = self.ifaces.get(name)
        if existing is not None:
            if not existing.get("dynamic"):
                raise UbusError(2)
            if existing["config"] == cfg:
                return  # identical repeat: nothing happens (s9)
            # A changed config returns 0 but deletes the interface (s9).
            self._delete_dynamic(name, "add_dynamic with a changed config")
            self.reconcile()
            return
        proto = cfg.get("proto", "none")
        if proto not in ("static", "none", "dhcpv6", "dhcp", "wireguard"):
            raise UbusError(2)
        rec = {
            "name": name,
            "proto": proto,
            "device": cfg.get("device", ""),
            "dynamic": True,
            "up": False,
            "config": cfg,
            "prefixes": [],
            "since": round(self.now(), 3),
        }
        self.ifaces[name] = rec
        self._setup(rec)
        self.event("dynamic-added", iface=name)
        self.reconcile()

    # -- device events (R6) -----------------------------------------------
    def watch_devices(self):
        changed = False
        for name in list(self.ifaces):
            rec = self.ifaces.get(name)
            if rec is None:
                continue
            dev_ok = self.sys.dev_exists(rec["device"]) and self.sys.dev_up(rec["device"])
            if rec.get("dynamic"):
                # FINDINGS (A2 chat, "Dynamic interface SURVIVES reload"): deleted when
                # its DEVICE disappears (<=140 ms), not on carrier loss.
                # FINDINGS (R, 10:46): added while its device is missing, it waits
                # (available false) and comes up by itself when the device appears.
                if not self.sys.dev_exists(rec["device"]):
                    if rec.get("seen_device"):
                        self._delete_dynamic(name, "device gone")
                        changed = True
                elif not rec["up"] and self.sys.dev_up(rec["device"]):
                    self._setup(rec)
                    self.event("interface-up", iface=name, cause="device appeared")
                    changed = True
            elif rec["up"] and not self.sys.dev_exists(rec["device"]):
                # Only a vanished device takes the interface down; link/admin down does
                # not (FINDINGS Q5 b: force_link, both interfaces stay up).
                rec["up"] = False
                rec["prefixes"] = []
                rec["down_cause"] = "device"
                self.event("interface-down", iface=name, cause="device down")
                changed = True
            elif not rec["up"] and dev_ok and rec.get("down_cause") == "device":
                # The device is back: netifd sets the interface up again (autostart).
                rec.pop("down_cause", None)
                self._setup(rec)
                self.event("interface-up", iface=name, cause="device back")
                changed = True
        if changed:
            self.reconcile()
        return changed

    # -- prefix assignment (R7, R8, R5) -------------------------------------
    def desired_assignments(self):
        """{downstream iface: [{prefix, from, assigned, local}]}."""
        out = {}
        sources = []
        for name in sorted(self.ifaces):
            rec = self.ifaces[name]
            if rec["up"]:
                for p in rec["prefixes"]:
                    sources.append((name, ipaddress.IPv6Network(p, strict=False)))
        if self.st.get("ula_prefix"):
            # network.globals.ula_prefix: netifd's own local prefix, assigned after the
            # global ones (FINDINGS "Q1-Q3 with a ULA": global first, then the ULA).
            try:
                sources.append((ULA_SOURCE, ipaddress.IPv6Network(self.st["ula_prefix"],
                                                                  strict=False)))
            except ValueError:
                pass
        for name in sorted(self.ifaces):
            rec = self.ifaces[name]
            if not rec["up"] or rec.get("dynamic"):
                continue
            try:
                size = int(rec["config"].get("ip6assign", ""))
            except ValueError:
                continue
            hint = rec["config"].get("ip6hint")
            ifaceid = rec["config"].get("ip6ifaceid", "::1")
            for src, net in sources:
                if src == name or size < net.prefixlen or size > 128:
                    continue
                n_sub = 1 << (size - net.prefixlen)
                idx = 0
                if hint:
                    try:
                        idx = (int(hint, 16) % n_sub)
                    except ValueError:
                        idx = 0
                sub = ipaddress.IPv6Network(
                    (int(net.network_address) + (idx << (128 - size)), size))
                try:
                    iid = int(ipaddress.IPv6Address(ifaceid))
                except ValueError:
                    iid = 1
                local = ipaddress.IPv6Address(int(sub.network_address) | iid)
                out.setdefault(name, []).append({
                    "prefix": str(net), "from": src, "assigned": str(sub), "local": str(local),
                })
        return out

    def _lan_mtu6_configured(self, dev):
        for s in self.uci.load("network"):
            if s[".type"] == "device" and s.get("name") == dev and s.get("mtu6"):
                return True
        return False

    def reconcile(self, deferred=False):
        """Brings addresses/routes in line with the assignments. deferred: a withdrawal's
        effect lands ~100 ms later, handled by the netifd loop (FINDINGS Q2: `remove` acts
        ~100 ms after the call; Q4: a changed add_dynamic acts at once)."""
        want = self.desired_assignments()
        have = self.st.get("assignments", {})
        for name, lst in have.items():
            dev = self.st.get("assign_dev", {}).get(name)
            for a in lst:
                if a not in want.get(name, []) and dev:
                    eff = {"due": self.now() + (WITHDRAW_DELAY if deferred else 0),
                           "dev": dev, "assignment": a, "iface": name}
                    self.st.setdefault("pending", []).append(eff)
                    self.event("assignment-withdrawn", iface=name, prefix=a["assigned"])
        self.st.setdefault("assign_dev", {})
        for name, lst in want.items():
            rec = self.ifaces[name]
            dev = rec["device"]
            self.st["assign_dev"][name] = dev
            for a in lst:
                if a not in have.get(name, []):
                    # A pending withdrawal of the same assignment is void now.
                    self.st["pending"] = [e for e in self.st.get("pending", [])
                                          if e.get("assignment") != a]
                    self._assignment_up(dev, a)
                    self.event("assignment-added", iface=name, prefix=a["assigned"])
                    # When it assigns, netifd copies the uplink's IPv6 MTU to the
                    # downstream, unless mtu6 is set (s10; FINDINGS: only then, never
                    # restored, and a later device reset is not undone).
                    if a["from"] not in self.ifaces:
                        continue  # the ULA has no uplink device
                    up_dev = self.ifaces[a["from"]]["device"]
                    up_mtu = self.sys.mtu6(up_dev)
                    cur = self.sys.mtu6(dev)
                    if up_mtu and cur and up_mtu != cur and not self._lan_mtu6_configured(dev):
                        self.sys.set_mtu6(dev, up_mtu)
                        self.event("mtu6-lowered", iface=name, mtu6=up_mtu, uplink=up_dev)
        if want != have:
            self.iface_update()
        self.st["assignments"] = want
        self.apply_due()

    def iface_update(self):
        """netifd tells odhcpd an interface changed; odhcpd reloads that interface's
        config and so re-reads its IPv6 MTU (FINDINGS "announce_mtu '0' ...")."""
        self.st["iface_updates"] = self.st.get("iface_updates", 0) + 1

    def _assignment_up(self, dev, a):
        # FINDINGS Q1: `<local>/64 noprefixroute forever`, `<assigned> dev lan proto static
        # metric 1024`, `unreachable <prefix> dev lo proto static metric 2147483647`.
        plen = ipaddress.IPv6Network(a["assigned"]).prefixlen
        self.sys.addr_set(dev, f"{a['local']}/{plen}", INFINITE, INFINITE, noprefixroute=True)
        self.sys.route(["replace", a["assigned"], "dev", dev, "proto", "static",
                        "metric", "1024"])
        self.sys.route(["replace", "unreachable", a["prefix"], "dev", "lo", "proto",
                        "static", "metric", "2147483647"])

    def apply_due(self, now=None):
        """Withdrawals whose time has come (FINDINGS Q2): the address is re-added
        deprecated (preferred 0, valid 7200, with a kernel prefix route), the static /64
        route and the unreachable route go. Returns True if anything was applied."""
        now = self.now() if now is None else now
        pending = self.st.get("pending", [])
        due = [e for e in pending if e["due"] <= now]
        if not due:
            return False
        self.st["pending"] = [e for e in pending if e["due"] > now]
        for e in due:
            if e.get("kind") == "mtu6-reset":
                # netifd's own device setup after a (re)start resets the IPv6 MTU, also
                # over a value an assignment copied just before (FINDINGS "MTU race").
                link = self.sys.link_mtu(e["dev"])
                if link and self.sys.mtu6(e["dev"]) != link:
                    self.sys.set_mtu6(e["dev"], link)
                    self.event("mtu6-reset", dev=e["dev"], mtu6=link)
                    self.iface_update()
                continue
            a, dev = e["assignment"], e["dev"]
            plen = ipaddress.IPv6Network(a["assigned"]).prefixlen
            self.sys.addr_set(dev, f"{a['local']}/{plen}", 0, DEPRECATED_VALID)
            self.sys.route(["del", a["assigned"], "dev", dev, "proto", "static",
                            "metric", "1024"])
            if not any(x["prefix"] == a["prefix"] for lst in self.st["assignments"].values()
                       for x in lst):
                self.sys.route(["del", "unreachable", a["prefix"], "dev", "lo", "proto",
                                "static", "metric", "2147483647"])
        return True

    # -- status (shapes from openwrt-fixtures/ubus/*.json) --------------------
    def status(self, name):
        rec = self.get(name)
        st = {
            "up": rec["up"],
            "pending": False,
            "available": bool(rec.get("seen_device") or self.sys.dev_exists(rec["device"])),
            "autostart": True,
            "dynamic": bool(rec.get("dynamic")),
        }
        if rec["up"]:
            st["uptime"] = int(self.now() - rec.get("since", self.now()))
            st["l3_device"] = rec["device"]
        st["proto"] = rec["proto"]
        if rec["proto"] not in PROTO_WITH_HANDLER:
            st["device"] = rec["device"]
        if not rec["up"]:
            st["data"] = {}
            return st
        st.update({"updated": ["addresses"], "metric": 0, "dns_metric": 0, "delegation": True})
        v4, v6 = [], []
        cfg = rec["config"]
        for a in as_list(cfg.get("addresses")) + as_list(cfg.get("ip6addr")):
            try:
                n = ipaddress.ip_interface(a)
            except ValueError:
                continue
            (v6 if n.version == 6 else v4).append(
                {"address": str(n.ip), "mask": n.network.prefixlen})
        if cfg.get("ipaddr"):
            try:
                n = ipaddress.ip_interface(f"{cfg['ipaddr']}/{cfg.get('netmask', '255.255.255.0')}")
                v4.append({"address": str(n.ip), "mask": n.network.prefixlen})
            except ValueError:
                pass
        st["ipv4-address"] = v4
        st["ipv6-address"] = v6
        assigns = self.st.get("assignments", {})
        prefixes = []
        for p in rec["prefixes"]:
            net = ipaddress.IPv6Network(p, strict=False)
            e = {"address": str(net.network_address), "mask": net.prefixlen, "class": name,
                 "assigned": {}}
            for down, lst in sorted(assigns.items()):
                for a in lst:
                    if a["from"] == name and a["prefix"] == str(net):
                        an = ipaddress.IPv6Network(a["assigned"])
                        e["assigned"][down] = {"address": str(an.network_address),
                                               "mask": an.prefixlen}
            prefixes.append(e)
        st["ipv6-prefix"] = prefixes
        pa = []
        for a in assigns.get(name, []):
            an = ipaddress.IPv6Network(a["assigned"])
            pa.append({"address": str(an.network_address), "mask": an.prefixlen,
                       "local-address": {"address": a["local"], "mask": an.prefixlen}})
        st["ipv6-prefix-assignment"] = pa
        for k in ("route", "dns-server", "dns-search", "neighbors"):
            st[k] = []
        st["inactive"] = {k: [] for k in ("ipv4-address", "ipv6-address", "route",
                                          "dns-server", "dns-search", "neighbors")}
        st["data"] = {}
        return st

    def dump(self):
        out = []
        for name in sorted(self.ifaces):
            s = {"interface": name}
            s.update(self.status(name))
            out.append(s)
        return {"interface": out}


def valid_prefixes(lst):
    out = []
    for p in lst:
        try:
            n = ipaddress.IPv6Network(p, strict=False)
        except ValueError:
            continue
        out.append(str(n))
    return out


# ---------------------------------------------------------------------------
# odhcpd: what it announces (pure functions over the system's state)


def is_ula(addr):
    return ipaddress.IPv6Address(addr) in ipaddress.IPv6Network("fc00::/7")


def has_default_route(ipv6_route_text):
    """R9: ANY ::/0 route whose device is not lo, source-specific ones included."""
    for line in ipv6_route_text.splitlines():
        f = line.split()
        if len(f) < 10:
            continue
        if int(f[0], 16) == 0 and int(f[1], 16) == 0 and f[9] != "lo":
            return True
    return False


def dns_addr(addrs, linklocal):
    """R10: odhcpd_get_interface_dns_addr over the interface's global addresses
    (lifetimes relative to now: valid > 0, preferred > 0)."""
    m = None
    for a in addrs:
        if a["valid"] <= 0:
            continue
        if m is None:
            m = a
            continue
        if m["preferred"] > 0 and a["preferred"] <= 0:
            continue  # never trade a usable address for a deprecated one
        if is_ula(a["addr"]):
            if not is_ula(m["addr"]):
                m = a
                continue
        elif is_ula(m["addr"]):
            continue
        if a["preferred"] > m["preferred"]:
            m = a
    return m["addr"] if m else linklocal


def rdnss_lifetime(ra_prefixes):
    """FINDINGS (R, 10:46): the highest valid lifetime of the non-ULA PIOs in the RA, a
    goodbye (stale) PIO counting with its remembered 5400; 1800 without any."""
    best = 0
    for x in ra_prefixes:
        if is_ula(x["prefix"].split("/")[0]):
            continue
        best = max(best, x["valid"] if x["valid"] > 0 else ND_VALID_LIMIT)
    return best or ROUTER_LIFETIME


def compute_ra(addrs, ipv6_route_text, mtu6, stale, now, delegated=()):
    """odhcpd's RA for one interface. addrs: kernel addresses of the interface;
    stale: {prefix: expiry} of prefixes announced before whose address vanished
    (updated in place); delegated: prefixes (str) the assignments come from, for
    route information options. Returns a dict."""
    glob = [a for a in addrs if a["scope"] == "global"]
    ll = next((a["addr"] for a in addrs if a["scope"] == "link"), None)
    prefixes = {}
    for a in glob:
        if a["plen"] > 64:
            continue
        net = str(ipaddress.IPv6Network(f"{a['addr']}/{a['plen']}", strict=False))
        if a["preferred"] > 0:
            v = min(a["valid"], ND_VALID_LIMIT)
            p = min(a["preferred"], ND_PREFERRED_LIMIT)
        else:
            v = p = 0  # deprecated: announced as a goodbye (s3)
        prefixes[net] = max(prefixes.get(net, (0, 0)), (v, p))
    ra_prefixes = []
    for net, (v, p) in sorted(prefixes.items()):
        ra_prefixes.append({"prefix": net, "valid": v, "preferred": p})
        if v > 0:
            stale[net] = now + v  # remembered for a goodbye if the address vanishes
    for net in sorted(stale):
        if net in prefixes:
            continue
        if stale[net] <= now:
            del stale[net]
        else:
            # odhcpd keeps a vanished prefix as "stale" and says goodbye (0/0).
            ra_prefixes.append({"prefix": net, "valid": 0, "preferred": 0, "stale": True})
    # "public prefix": a non-ULA address (a deprecated one counts, s10) or a stale
    # goodbye PIO odhcpd still remembers (FINDINGS, CAVEAT after Q3).
    public = any(not is_ula(a["addr"]) and a["valid"] > 0 for a in glob) or any(
        not is_ula(x["prefix"].split("/")[0]) for x in ra_prefixes)
    router = ROUTER_LIFETIME if public and has_default_route(ipv6_route_text) else 0
    live = [x for x in ra_prefixes if x["valid"] > 0]
    routes = []
    for d in sorted(set(delegated)):
        dn = ipaddress.IPv6Network(d)
        if dn.prefixlen < 64 and any(
                ipaddress.IPv6Network(x["prefix"]).subnet_of(dn) for x in live):
            routes.append({"prefix": d, "lifetime": ND_VALID_LIMIT})
    dns = dns_addr(glob, ll)
    return {
        "router_lifetime": router,
        "mtu": mtu6,
        "prefixes": ra_prefixes,
        "routes": routes,
        # RDNSS lifetime 5400 s while any prefix (even a goodbye) is announced, 1800 s
        # with none (fixtures rdisc6-withdrawn.txt, first RA of
        # ra-capture-delegate-withdraw-restore.txt; FINDINGS Q3: link-local 5400).
        "rdnss": [{"addr": dns, "lifetime": rdnss_lifetime(ra_prefixes)}] if dns else [],
    }


def radvd_conf(dev, ra):
    lines = [
        "# written by tests/netifd-model (odhcpd stand-in); rewritten on every change",
        f"interface {dev} {{",
        "\tAdvSendAdvert on;",
        "\tMinRtrAdvInterval 200;",
        "\tMaxRtrAdvInterval 600;",
        f"\tAdvDefaultLifetime {ra['router_lifetime']};",
    ]
    if ra.get("mtu"):
        lines.append(f"\tAdvLinkMTU {ra['mtu']};")
    for p in ra["prefixes"]:
        lines += [
            f"\tprefix {p['prefix']} {{",
            "\t\tAdvOnLink on;",
            "\t\tAdvAutonomous on;",
            f"\t\tAdvValidLifetime {p['valid']};",
            f"\t\tAdvPreferredLifetime {p['preferred']};",
            "\t};",
        ]
    for r in ra["routes"]:
        lines += [f"\troute {r['prefix']} {{", f"\t\tAdvRouteLifetime {r['lifetime']};", "\t};"]
    for d in ra["rdnss"]:
        lines += [f"\tRDNSS {d['addr']} {{", f"\t\tAdvRDNSSLifetime {d['lifetime']};", "\t};"]
    lines.append("};")
    return "\n".join(lines) + "\n"


def ipv6ra_json(dev, ra, addrs):
    """`ubus call dhcp ipv6ra` (shape of openwrt-fixtures/ubus/odhcpd-real.dhcp.ipv6ra.json)."""
    out = []
    for p in ra["prefixes"]:
        net = ipaddress.IPv6Network(p["prefix"])
        a = next((x["addr"] for x in addrs if x["scope"] == "global"
                  and ipaddress.IPv6Address(x["addr"]) in net), str(net.network_address + 1))
        stale = p["valid"] == 0  # goodbye'd: deprecated or vanished
        e = {"prefix": a, "length": net.prefixlen, "stale": stale}
        if stale:
            e["lifetime"] = ND_VALID_LIMIT  # what is left of odhcpd's goodbye period
        out.append(e)
    return {"interfaces": {dev: out}}


# ---------------------------------------------------------------------------
# Background processes


def pid_alive(pidfile):
    try:
        with open(pidfile) as f:
            pid = int(f.read().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1].split()[0] != "Z"
    except OSError:
        return False


def netlink_socket():
    """Wakes up on address, route and link changes (like odhcpd's netlink listener)."""
    try:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)  # NETLINK_ROUTE
        s.bind((0, 0x1 | 0x100 | 0x400))  # LINK | IPV6_IFADDR | IPV6_ROUTE
        s.setblocking(False)
        return s
    except OSError:
        return None


def run_netifd(d):
    """netifd's event side: device up/down (R6) and the delayed effect of `remove`."""
    system = System()
    cfg = config_of(d)
    uci = UciReader(cfg["uci"], cfg["confdir"], cfg["savedir"])
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    with open(os.path.join(d, "netifd.pid"), "w") as f:
        f.write(f"{os.getpid()}\n")
    while not stop:
        time.sleep(0.05)
        with Store(d) as s:
            st = s.read()
            n = Netifd(st, system, uci)
            changed = n.apply_due()
            changed = n.watch_devices() or changed
            if changed:
                s.write(st)


def ra_trigger_signature(addrs, ipv6_route_text):
    """What re-arms odhcpd's RA timer: the interface's addresses (and their
    deprecated-ness), and the set of ::/0 routes (FINDINGS Q1, Q3)."""
    a = sorted((x["addr"], x["plen"], x["preferred"] > 0) for x in addrs)
    r = sorted(line.split()[2] + line.split()[9] for line in ipv6_route_text.splitlines()
               if len(line.split()) >= 10 and int(line.split()[1], 16) == 0
               and int(line.split()[0], 16) == 0 and line.split()[9] != "lo")
    return json.dumps([a, r])


class Debounce:
    """odhcpd's 1000 ms RA timer: every trigger re-arms it; it fires once."""

    def __init__(self, delay=RA_DEBOUNCE):
        self.delay = delay
        self.deadline = None
        self.sig = None

    def observe(self, sig, now):
        """True if this re-armed the timer."""
        if sig != self.sig:
            self.sig = sig
            self.deadline = now + self.delay
            return True
        return False

    def due(self, now):
        if self.deadline is not None and now >= self.deadline:
            self.deadline = None
            return True
        return False


def die_with_parent():
    """radvd must not outlive the odhcpd model (a KILLed lab would leak it)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def stop_child(c):
    """SIGKILL: radvd's own shutdown RA (router lifetime 0) must not go out."""
    if c is not None:
        if c.poll() is None:
            c.kill()
        c.wait()


class OdhcpdCore:
    """odhcpd's decisions, without I/O: when to send an RA, with what (R8-R12).
    step() gets the system's state and returns {"kill": [dev], "send": {dev: ra}}:
    devices whose radvd must go now, and RAs to send now."""

    def __init__(self, lans, mtu6):
        self.lans = list(lans)
        self.stale = {dev: {} for dev in self.lans}
        self.timers = {dev: Debounce() for dev in self.lans}
        self.latched_mtu = dict(mtu6)  # read at start
        self.sent = {}  # what `dhcp ipv6ra` shows
        self.first = True
        self.generation = None
        self.updates = None
        self.disabled = False

    def reload(self, mtu6):
        """SIGHUP (/etc/init.d/odhcpd reload): config and IPv6 MTU re-read, LAN enabled
        again after a netifd restart, one RA 1 s later (FINDINGS)."""
        self.latched_mtu = dict(mtu6)
        self.disabled = False
        for t in self.timers.values():
            t.sig = None

    def step(self, now, st, addrs, route_text, mtu6):
        out = {"kill": [], "send": {}}
        upd = st.get("iface_updates", 0)
        if upd != self.updates:
            # netifd's interface update: odhcpd reloads the interface and takes the IPv6
            # MTU from /proc only then; later writes are not seen (FINDINGS 10:56-10:58).
            self.updates = upd
            self.latched_mtu = dict(mtu6)
        gen = st.get("netifd_generation", 0)
        if self.generation is None:
            self.generation = gen
        if gen != self.generation:
            # netifd bounced lan: "Disabling services with lan0 not running"; only a
            # reload enables it again (FINDINGS "netifd restarted").
            self.generation = gen
            self.disabled = True
            out["kill"] += self.lans
            self.sent.clear()
        delegated = [a["prefix"] for lst in st.get("assignments", {}).values() for a in lst]
        for dev in self.lans:
            if self.disabled:
                continue
            if self.timers[dev].observe(ra_trigger_signature(addrs[dev], route_text), now) \
                    and not self.first:
                # radvd reacts to lan's address changes by itself, ~1 s later, with its
                # OLD content: it goes now; a fresh one sends when odhcpd's timer fires.
                out["kill"].append(dev)
            ra = compute_ra(addrs[dev], route_text, self.latched_mtu.get(dev), self.stale[dev],
                            now, delegated)
            if not (self.first or self.timers[dev].due(now)):
                continue
            self.timers[dev].deadline = None
            # `dhcp ipv6ra` shows what was announced.
            self.sent.update(ipv6ra_json(dev, ra, addrs[dev])["interfaces"])
            out["send"][dev] = ra
        self.first = False
        return out

    def wait(self, now):
        w = 0.5
        for t in self.timers.values():
            if t.deadline is not None:
                w = max(0.0, min(w, t.deadline - now))
        return w


def run_odhcpd(d, radvd_bin):
    """odhcpd (OdhcpdCore) with a real radvd per RA on the LAN device."""
    system = System()
    cfg = config_of(d)
    lans = cfg.get("ra_ifaces", ["lan"])
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    hup = []
    signal.signal(signal.SIGHUP, lambda *_: hup.append(1))  # /etc/init.d/odhcpd reload
    pidfile = os.path.join(d, "odhcpd.pid")
    with open(pidfile, "w") as f:
        f.write(f"{os.getpid()}\n")
    nl = netlink_socket()
    core = OdhcpdCore(lans, {dev: system.mtu6(dev) for dev in lans})
    children = {}
    try:
        while not stop:
            now = time.time()
            with Store(d) as s:
                st = s.read()
            mtu6 = {dev: system.mtu6(dev) for dev in lans}
            if hup:
                hup.clear()
                core.reload(mtu6)
            out = core.step(now, st, {dev: system.addrs(dev) for dev in lans},
                            system.ipv6_route(), mtu6)
            for dev in out["kill"]:
                stop_child(children.pop(dev, None))
            for dev, ra in out["send"].items():
                conf = os.path.join(d, f"radvd-{dev}.conf")
                with open(conf + ".tmp", "w") as f:
                    f.write(radvd_conf(dev, ra))
                os.replace(conf + ".tmp", conf)
                with open(os.path.join(d, f"ra-{dev}.log"), "a") as f:
                    f.write(json.dumps({"t": round(now, 3), "ra": ra}) + "\n")
                # A fresh radvd per RA advertises the new content at once.
                stop_child(children.pop(dev, None))
                pid = os.path.join(d, f"radvd-{dev}.pid")
                try:
                    os.unlink(pid)
                except OSError:
                    pass
                # radvd's privsep helper writes AdvLinkMTU into
                # /proc/sys/net/ipv6/conf/<dev>/mtu; odhcpd does not touch it. So radvd
                # runs in a private mount namespace where that file is a copy.
                fake = os.path.join(d, f"radvd-{dev}.mtu")
                with open(fake, "w") as f:
                    f.write(f"{mtu6[dev]}\n")
                children[dev] = subprocess.Popen(
                    ["unshare", "-m", "--propagation", "private", "sh", "-c",
                     'mount --bind "$1" "/proc/sys/net/ipv6/conf/$2/mtu" && shift 2 && exec "$@"',
                     "sh", fake, dev,
                     radvd_bin, "--nodaemon", "-C", conf, "-p", pid, "-m", "logfile", "-l",
                     os.path.join(d, f"radvd-{dev}.log")],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
            tmp = os.path.join(d, "ipv6ra.json.tmp")
            with open(tmp, "w") as f:
                json.dump({"interfaces": core.sent}, f, indent="\t")
            os.replace(tmp, os.path.join(d, "ipv6ra.json"))
            wait = core.wait(time.time())
            if nl:
                try:
                    r, _, _ = select.select([nl], [], [], wait)
                    if r:
                        while True:
                            nl.recv(65536)
                except (BlockingIOError, InterruptedError):
                    pass
            else:
                time.sleep(min(wait, 0.05))
    finally:
        # odhcpd sends no final RA when it stops (FINDINGS Q7): radvd is killed, so its
        # shutdown RA (router lifetime 0) does not go out either.
        for c in children.values():
            stop_child(c)
        try:
            os.unlink(pidfile)
        except OSError:
            pass


# ---------------------------------------------------------------------------
# ubus command line


def ubus_call(d, obj, method, args, system=None, uci=None):
    system = system or System()
    cfg = config_of(d)
    uci = uci or UciReader(cfg["uci"], cfg["confdir"], cfg["savedir"])
    if obj == "service":
        # procd: /etc/init.d/odhcpd reload = `ubus call service signal {"name":"odhcpd",
        # "signal":1}` (procd_send_signal). Only odhcpd is known here.
        if method != "signal":
            raise UbusError(3)
        if not isinstance(args, dict) or not isinstance(args.get("name"), str):
            raise UbusError(2)
        pidfile = os.path.join(d, "odhcpd.pid")
        if args["name"] != "odhcpd" or not pid_alive(pidfile):
            raise UbusError(4)
        with open(pidfile) as f:
            os.kill(int(f.read().split()[0]), int(args.get("signal", signal.SIGHUP)))
        return None
    if obj == "dhcp":
        if not pid_alive(os.path.join(d, "odhcpd.pid")):
            raise UbusError(4)  # R12: odhcpd registers the object; not running -> none
        if method == "ipv6ra":
            try:
                with open(os.path.join(d, "ipv6ra.json")) as f:
                    return json.load(f)
            except (OSError, ValueError):
                return {"interfaces": {}}
        if method in ("ipv4leases", "ipv6leases"):
            return {"device": {}}
        raise UbusError(3)
    with Store(d) as s:
        st = s.read()
        n = Netifd(st, system, uci)
        n.watch_devices()
        reply = None
        if obj == "network":
            if method == "reload":
                n.reload()
            elif method == "add_dynamic":
                n.add_dynamic(args)
            elif method == "get_proto_handlers":
                reply = {"static": {}, "wireguard": {}, "none": {}, "dhcp": {}}
            else:
                raise UbusError(3)
        elif obj == "network.interface":
            if method != "dump":
                raise UbusError(3)
            reply = n.dump()
        elif obj == "network.device":
            if method != "status":
                raise UbusError(3)
            dev = (args or {}).get("name")
            if not dev or not system.dev_exists(dev):
                raise UbusError(4) if dev else UbusError(2)
            reply = {"present": True, "up": system.dev_up(dev), "mtu6": system.mtu6(dev),
                     "ifindex": system.ifindex(dev)}
        elif obj.startswith("network.interface."):
            name = obj[len("network.interface."):]
            n.get(name)
            if method == "status":
                reply = n.status(name)
            elif method == "renew":
                n.renew(name)
            elif method == "up":
                n.up(name)
            elif method == "down":
                n.down(name)
            elif method == "remove":
                n.remove(name)
            else:
                raise UbusError(3)
        else:
            raise UbusError(4)
        s.write(st)
    return reply


def ubus_objects(d):
    st = Store(d).read()
    objs = ["network", "network.device", "network.interface", "service"]
    objs += [f"network.interface.{n}" for n in sorted(st["interfaces"])]
    if pid_alive(os.path.join(d, "odhcpd.pid")):
        objs.append("dhcp")
    return sorted(objs)


def main_ubus(d, argv):
    # Accept (and ignore) the global options real ubus takes before the command.
    while argv and argv[0].startswith("-"):
        argv = argv[2:] if argv[0] in ("-s", "-t") else argv[1:]
    if not argv:
        print("Usage: ubus [<options>] <command> [arguments...]", file=sys.stderr)
        return 1
    with open(os.path.join(d, "ubus.log"), "a") as f:
        f.write(json.dumps({"t": round(time.time(), 3), "argv": argv}) + "\n")
    if argv[0] == "list":
        import fnmatch

        pat = argv[1] if len(argv) > 1 else "*"
        hits = [o for o in ubus_objects(d) if fnmatch.fnmatchcase(o, pat)]
        if not hits:
            print("Command failed: Not found", file=sys.stderr)
            return 4
        print("\n".join(hits))
        return 0
    if argv[0] != "call" or len(argv) < 3:
        print("Command failed: Invalid argument", file=sys.stderr)
        return 2
    args = None
    if len(argv) > 3:
        try:
            args = json.loads(argv[3])
        except ValueError:
            print("Failed to parse message data", file=sys.stderr)
            return 255
        if not isinstance(args, dict):
            print("Failed to parse message data", file=sys.stderr)
            return 255
    try:
        reply = ubus_call(d, argv[1], argv[2], args)
    except UbusError as e:
        print(f"Command failed: {e}", file=sys.stderr)
        return e.code
    if reply is not None:
        print(json.dumps(reply, indent="\t"))
    return 0


def init_dir(d, uci_bin, confdir, savedir, handler="sh", ra_ifaces=("lan",), system=None):
    """netifd "boots": reads uci network and brings the interfaces up."""
    os.makedirs(d, exist_ok=True)
    cfg = {"uci": uci_bin, "confdir": confdir, "savedir": savedir,
           "ra_ifaces": list(ra_ifaces)}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    st = {"handler": handler, "interfaces": {}, "assignments": {}, "events": []}
    with Store(d) as s:
        n = Netifd(st, system or System(), UciReader(uci_bin, confdir, savedir))
        n.boot()
        s.write(st)


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, d = argv[0], argv[1]
    rest = argv[2:]
    if cmd == "init":
        opts = {"handler": "sh", "ra_ifaces": "lan"}
        i = 0
        while i < len(rest):
            k = rest[i].lstrip("-").replace("-", "_")
            opts[k] = rest[i + 1]
            i += 2
        if opts["handler"] not in ("sh", "ucode"):
            print("init: --handler must be sh or ucode", file=sys.stderr)
            return 2
        for k in ("uci", "confdir", "savedir"):
            if k not in opts:
                print(f"init: --{k} is required", file=sys.stderr)
                return 2
        init_dir(d, opts["uci"], opts["confdir"], opts["savedir"], opts["handler"],
                 opts["ra_ifaces"].split(","))
        return 0
    if cmd == "ubus":
        return main_ubus(d, rest)
    if cmd == "netifd":
        run_netifd(d)
        return 0
    if cmd == "odhcpd":
        radvd = "radvd"
        if rest[:1] == ["--radvd"]:
            radvd = rest[1]
        run_odhcpd(d, radvd)
        return 0
    if cmd == "ctl":
        st = Store(d).read()
        what = rest[0] if rest else "state"
        if what == "events":
            kinds = rest[1:]
            for e in st.get("events", []):
                if not kinds or e["what"] in kinds:
                    print(json.dumps(e, sort_keys=True))
        elif what == "restart-netifd":
            cfg = config_of(d)
            with Store(d) as s:
                st2 = s.read()
                Netifd(st2, System(), UciReader(cfg["uci"], cfg["confdir"], cfg["savedir"])).restart()
                s.write(st2)
        elif what == "state":
            print(json.dumps(st, indent=1, sort_keys=True))
        else:
            print(f"ctl: unknown {what}", file=sys.stderr)
            return 2
        return 0
    print(f"unknown command {cmd}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
