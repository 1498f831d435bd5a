#!/usr/bin/python3
"""One test per rule of the netifd/odhcpd model (netifd_model.py), each citing the
observation it mirrors: FX = shared/openwrt-fixtures/netifd-delegation/README.md (sN =
section N), UBUS = shared/openwrt-fixtures/ubus/ (both copied to
tests/fixtures/openwrt-observed/). uci is the REAL uci tool
(WGROAM_UCI_BIN, else target/tools/bin/uci), with a save directory, as netifd reads it.

Run: python3 tests/netifd-model/test_netifd_model.py  (tests/e2e/05-netifd-model.sh)
"""

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import netifd_model as m  # noqa: E402

# Copies of shared/openwrt-fixtures/{ubus,netifd-delegation} (real daemon output).
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "openwrt-observed")
UCI = os.environ.get("WGROAM_UCI_BIN") or os.path.join(ROOT, "target", "tools", "bin", "uci")

NETWORK = """config interface 'lan'
\toption device 'lan'
\toption proto 'static'
\toption ipaddr '100.127.1.1'
\toption netmask '255.255.255.0'
\toption ip6assign '64'

config interface 'wg1'
\toption proto 'wireguard'
\tlist addresses '2001:db8:100::2/64'

config wireguard_wg1 'hub'
\toption public_key 'hubkey'
\toption endpoint_host '198.51.100.2'
"""
P56 = "2001:db8:100:100::/56"


class FakeSystem:
    """Devices, addresses and routes as netifd/odhcpd would see them in a netns."""

    def __init__(self):
        self.devs = {"lan": {"up": True, "mtu6": 1500, "ifindex": 3},
                     "wg1": {"up": True, "mtu6": 1420, "ifindex": 7}}
        self.addr = {"lan": {}}
        self.routes = ""
        self.route_calls = []
        self.flushed = []

    def dev_exists(self, d):
        return d in self.devs

    def dev_up(self, d):
        return d in self.devs and self.devs[d]["up"]

    def ifindex(self, d):
        return self.devs.get(d, {}).get("ifindex")

    def mtu6(self, d):
        return self.devs.get(d, {}).get("mtu6")

    def set_mtu6(self, d, v):
        self.devs[d]["mtu6"] = v

    def addr_set(self, dev, cidr, preferred, valid, noprefixroute=False):
        self.addr.setdefault(dev, {})[cidr] = (preferred, valid)

    def route(self, args):
        self.route_calls.append(" ".join(args))

    def addrs(self, dev):
        out = [{"addr": "fe80::1", "plen": 64, "scope": "link", "preferred": m.INFINITE,
                "valid": m.INFINITE}]
        for cidr, (p, v) in self.addr.get(dev, {}).items():
            a, plen = cidr.split("/")
            out.append({"addr": a, "plen": int(plen), "scope": "global", "preferred": p,
                        "valid": v})
        return out

    def ipv6_route(self):
        return self.routes

    def link_mtu(self, d):
        return 1500 if d == "lan" else 1420

    def flush6(self, dev, bounce=True):
        self.addr[dev] = {}
        self.flushed.append(dev)


def route_line(dest, dlen, src, slen, dev):
    h = lambda a: ipaddress.IPv6Address(a).exploded.replace(":", "")  # noqa: E731
    return (f"{h(dest)} {dlen:02x} {h(src)} {slen:02x} {'0' * 32} 00000400 00000001 "
            f"00000000 00000001 {dev:>8}\n")


LO_DEFAULT = route_line("::", 0, "::", 0, "lo")  # the kernel's unreachable ::/0 on lo


class ModelCase(unittest.TestCase):
    handler = "sh"
    network = NETWORK

    def setUp(self):
        if not os.access(UCI, os.X_OK):
            self.fail(f"no uci tool at {UCI}: run tests/tools/build-uci.sh or set WGROAM_UCI_BIN")
        self.tmp = tempfile.mkdtemp(prefix="netifd-model-")
        self.etc = os.path.join(self.tmp, "etc")
        self.save = os.path.join(self.tmp, "save")
        self.d = os.path.join(self.tmp, "model")
        os.makedirs(self.etc)
        os.makedirs(self.save)
        with open(os.path.join(self.etc, "network"), "w") as f:
            f.write(self.network)
        self.sys = FakeSystem()
        m.init_dir(self.d, UCI, self.etc, self.save, self.handler, system=self.sys)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def uci(self, *args):
        subprocess.run([UCI, "-c", self.etc, "-t", self.save, *args], check=True)

    def call(self, obj, method, args=None):
        return m.ubus_call(self.d, obj, method, args, system=self.sys)

    def code(self, obj, method, args=None):
        try:
            self.call(obj, method, args)
        except m.UbusError as e:
            return e.code
        return 0

    def advance(self, secs=1.0):
        """Lets netifd's loop run `secs` later (delayed effects of remove/down)."""
        with m.Store(self.d) as s:
            st = s.read()
            m.Netifd(st, self.sys, m.UciReader(UCI, self.etc, self.save)).apply_due(
                m.time.time() + secs)
            s.write(st)

    def events(self, what):
        return [e for e in m.Store(self.d).read()["events"] if e["what"] == what]

    def lan_assign(self):
        return self.call("network.interface.lan", "status")["ipv6-prefix-assignment"]

    def add(self, prefix=P56, **kw):
        a = {"name": "wgroam_wg1", "proto": "static", "device": "wg1", "ip6prefix": [prefix]}
        a.update(kw)
        self.call("network", "add_dynamic", a)


class WireguardSh(ModelCase):
    def test_r1_reload_ignores_staged_ip6prefix(self):
        # FX s1: staged ip6prefix + `ubus call network reload`: netifd does not apply it.
        self.uci("set", f"network.wg1.ip6prefix={P56}")
        self.call("network", "reload")
        self.assertEqual(self.call("network.interface.wg1", "status")["ipv6-prefix"], [])
        self.assertEqual(self.lan_assign(), [])

    def test_r2_renew_applies_staged_ip6prefix_without_recreating_the_link(self):
        # FX s2: ... + `ubus call network.interface.wg1 renew`: applied (save dir read),
        # the link is not re-created.
        self.uci("set", f"network.wg1.ip6prefix={P56}")
        self.call("network.interface.wg1", "renew")
        wg = self.call("network.interface.wg1", "status")
        self.assertEqual([(p["address"], p["mask"]) for p in wg["ipv6-prefix"]],
                         [("2001:db8:100:100::", 56)])
        self.assertEqual(self.lan_assign(), [{
            "address": "2001:db8:100:100::", "mask": 64,
            "local-address": {"address": "2001:db8:100:100::1", "mask": 64}}])
        self.assertEqual(self.events("link-recreated"), [])
        # FX s3: delete (staged) + reload + renew: withdrawn.
        self.uci("delete", "network.wg1.ip6prefix")
        self.call("network", "reload")
        self.assertEqual(len(self.lan_assign()), 1, "reload alone changes nothing (s1)")
        self.call("network.interface.wg1", "renew")
        self.assertEqual(self.lan_assign(), [])

    def test_r4_add_dynamic_array_applies_string_and_proto_none_ignored(self):
        # FX s9: ip6prefix must be an array; a string is ignored silently; proto none
        # ignores it.
        self.add(ip6prefix=P56)  # a string
        st = self.call("network.interface.wgroam_wg1", "status")
        self.assertTrue(st["up"])
        self.assertEqual(st["ipv6-prefix"], [])
        self.call("network.interface.wgroam_wg1", "remove")
        self.add(name="x", proto="none")
        self.assertEqual(self.call("network.interface.x", "status").get("ipv6-prefix"), [])
        self.call("network.interface.x", "remove")
        self.add()
        st = self.call("network.interface.wgroam_wg1", "status")
        self.assertEqual(st["ipv6-prefix"][0]["assigned"],
                         {"lan": {"address": "2001:db8:100:100::", "mask": 64}})
        self.assertTrue(st["dynamic"])

    def test_r4_identical_repeat_is_a_noop_changed_config_deletes(self):
        # FX s9: add_dynamic again: identical -> nothing; changed -> returns 0 but
        # deletes the interface.
        self.add()
        n = len(m.Store(self.d).read()["events"])
        self.add()
        self.assertEqual(len(m.Store(self.d).read()["events"]), n)
        self.assertTrue(self.call("network.interface.wgroam_wg1", "status")["up"])
        self.add(prefix="2001:db8:100:200::/56")
        self.assertEqual(self.code("network.interface.wgroam_wg1", "status"), 4)
        self.assertEqual(self.lan_assign(), [])
        # FINDINGS Q4: that deletion is synchronous (+3 ms), no 100 ms delay.
        self.assertEqual(self.sys.addr["lan"]["2001:db8:100:100::1/64"], (0, 7200))

    def test_r5_remove_keeps_lan_address_deprecated(self):
        # FX s3 + s10: after the withdrawal netifd keeps lan's address from the prefix
        # deprecated (preferred 0, valid 7200); `remove` and `down` both withdraw (s9).
        # FINDINGS Q2: netifd acts ~100 ms after `remove`; Q3: an address deleted before
        # that is ADDED BACK (deprecated), one deleted after it stays gone.
        for method in ("remove", "down"):
            self.add()
            self.assertEqual(self.sys.addr["lan"]["2001:db8:100:100::1/64"],
                             (m.INFINITE, m.INFINITE))
            self.assertIn("replace 2001:db8:100:100::/64 dev lan proto static metric 1024",
                          self.sys.route_calls)
            self.call("network.interface.wgroam_wg1", method)
            self.assertEqual(self.sys.addr["lan"]["2001:db8:100:100::1/64"],
                             (m.INFINITE, m.INFINITE), "not yet: netifd acts ~100 ms later")
            del self.sys.addr["lan"]["2001:db8:100:100::1/64"]  # an early delete
            self.advance()
            self.assertEqual(self.sys.addr["lan"]["2001:db8:100:100::1/64"], (0, 7200))
            self.assertIn("del unreachable 2001:db8:100:100::/56 dev lo proto static metric "
                          "2147483647", self.sys.route_calls)
            del self.sys.addr["lan"]["2001:db8:100:100::1/64"]  # a late delete
            self.advance()
            self.assertNotIn("2001:db8:100:100::1/64", self.sys.addr["lan"])
            self.assertEqual(self.lan_assign(), [])
            self.assertEqual(self.code("network.interface.wgroam_wg1", "status"), 4)

    def test_r6_dynamic_deleted_when_device_or_tunnel_interface_goes_down(self):
        # FX s9: netifd deletes the dynamic interface when wg1 goes down; it must be
        # added again when the tunnel is back. FINDINGS: deleted when the DEVICE
        # disappears; carrier/link down does not delete it; survives `network reload`.
        self.add()

        def watch():
            st = m.Store(self.d).read()
            m.Netifd(st, self.sys, m.UciReader(UCI, self.etc, self.save)).watch_devices()
            with m.Store(self.d) as s:
                s.write(st)

        self.sys.devs["wg1"]["up"] = False
        watch()
        self.assertEqual(self.code("network.interface.wgroam_wg1", "status"), 0,
                         "link down does not delete it")
        self.sys.devs["wg1"]["up"] = True
        self.call("network", "reload")
        self.assertEqual(self.code("network.interface.wgroam_wg1", "status"), 0,
                         "survives reload")
        dev = self.sys.devs.pop("wg1")
        watch()
        self.assertEqual(self.code("network.interface.wgroam_wg1", "status"), 4)
        self.assertEqual(self.lan_assign(), [])
        self.sys.devs["wg1"] = dev
        watch()
        self.assertEqual(self.code("network.interface.wgroam_wg1", "status"), 4,
                         "not re-created by itself")
        self.add()
        self.call("network.interface.wg1", "down")  # ifdown wg1: wireguard deletes the link
        self.assertEqual(self.code("network.interface.wgroam_wg1", "status"), 4)

    def test_r6_added_while_the_device_is_missing_waits_for_it(self):
        # FINDINGS (R 10:46): add_dynamic for a missing device returns 0; the interface
        # waits (up false, available false, no "ipv6-prefix") and comes up by itself.
        dev = self.sys.devs.pop("wg1")
        self.add()
        st = self.call("network.interface.wgroam_wg1", "status")
        self.assertEqual((st["up"], st["available"], "ipv6-prefix" in st), (False, False, False))
        self.sys.devs["wg1"] = dev
        st = m.Store(self.d).read()
        m.Netifd(st, self.sys, m.UciReader(UCI, self.etc, self.save)).watch_devices()
        with m.Store(self.d) as s:
            s.write(st)
        self.assertTrue(self.call("network.interface.wgroam_wg1", "status")["up"])
        self.assertEqual(len(self.lan_assign()), 1)

    def test_r13_netifd_restart_forgets_dynamic_and_resets_mtu(self):
        # FINDINGS "netifd restarted": all IPv6 addresses/routes on its devices flushed,
        # the dynamic interface gone; MTU race: ~1 s later lan's IPv6 MTU is reset to the
        # link MTU even if an assignment had copied wg1's just before.
        self.add()
        with m.Store(self.d) as s:
            st = s.read()
            m.Netifd(st, self.sys, m.UciReader(UCI, self.etc, self.save)).restart()
            s.write(st)
        self.assertIn("lan", self.sys.flushed)
        self.assertEqual(self.code("network.interface.wgroam_wg1", "status"), 4)
        self.assertEqual(self.sys.addr["wg1"], {"2001:db8:100::2/64": (m.INFINITE, m.INFINITE)},
                         "proto addresses set up again")
        self.add()
        self.assertEqual(self.sys.mtu6("lan"), 1420)
        self.advance(1.5)
        self.assertEqual(self.sys.mtu6("lan"), 1500)
        self.assertEqual(len(self.lan_assign()), 1)
        self.call("network", "reload")
        self.call("network.interface.lan", "status")
        self.assertEqual(self.sys.mtu6("lan"), 1500, "only an assignment copies the MTU")

    def test_r7_status_shapes_match_the_real_netifd(self):
        # UBUS netifd-real.network.interface.*.status.json: same keys for an up
        # interface; FX s2: lan's assignment of the /56 is its first /64, ::1 local.
        self.add()
        with open(os.path.join(FIXTURES, "ubus", "netifd-real.network.interface.lan.status.json")) as f:
            real_lan = json.load(f)
        lan = self.call("network.interface.lan", "status")
        self.assertEqual(set(lan) - {"uptime"}, set(real_lan) - {"uptime"})
        self.assertEqual(set(lan["ipv6-prefix-assignment"][0]),
                         set(real_lan["ipv6-prefix-assignment"][0]))
        with open(os.path.join(FIXTURES, "ubus", "netifd-real.network.interface.wan.status.json")) as f:
            real_wan = json.load(f)
        dyn = self.call("network.interface.wgroam_wg1", "status")
        self.assertEqual(set(dyn["ipv6-prefix"][0]), set(real_wan["ipv6-prefix"][0]))
        with open(os.path.join(FIXTURES, "ubus", "netifd-real.network.interface.wg0.status.json")) as f:
            real_wg = json.load(f)
        wg = self.call("network.interface.wg1", "status")
        self.assertEqual(set(wg) - {"uptime"}, set(real_wg) - {"uptime"})
        dump = self.call("network.interface", "dump")
        self.assertEqual(sorted(i["interface"] for i in dump["interface"]),
                         ["lan", "wg1", "wgroam_wg1"])
        self.assertEqual(self.code("network.interface.nosuch", "status"), 4)
        self.assertEqual(self.code("network.interface.lan", "frobnicate"), 3)
        self.assertEqual(self.code("network", "add_dynamic", {"proto": "static"}), 2)

    def test_r7_no_assignment_without_ip6assign(self):
        # FX s2 (lan has ip6assign '64'); without it netifd assigns nothing to lan.
        self.uci("delete", "network.lan.ip6assign")
        self.call("network", "reload")
        self.add()
        self.assertEqual(self.lan_assign(), [])
        dyn = self.call("network.interface.wgroam_wg1", "status")
        self.assertEqual(dyn["ipv6-prefix"][0]["assigned"], {})
        # Fixing it (staged + reload of the static lan) assigns.
        self.uci("set", "network.lan.ip6assign=64")
        self.call("network", "reload")
        self.assertEqual(len(self.lan_assign()), 1)

    def test_r8_mtu_copied_from_uplink_unless_mtu6_set(self):
        # FX s10: when netifd assigns a prefix from the tunnel interface to lan it copies
        # the tunnel's MTU to lan's IPv6 MTU (RA MTU 1420); FX s5: 1500 before.
        self.assertEqual(self.sys.mtu6("lan"), 1500)
        self.add()
        self.assertEqual(self.sys.mtu6("lan"), 1420)
        ra = m.compute_ra(self.sys.addrs("lan"), "", self.sys.mtu6("lan"), {}, 0)
        self.assertEqual(ra["mtu"], 1420)
        # FINDINGS "lan's IPv6 MTU": written only when an assignment is newly enabled;
        # an agent writing 1500 back is overridden at the next (re-)delegation.
        self.sys.set_mtu6("lan", 1500)
        self.call("network", "reload")
        self.assertEqual(self.sys.mtu6("lan"), 1500)
        self.call("network.interface.wgroam_wg1", "remove")
        self.advance()
        self.assertEqual(self.sys.mtu6("lan"), 1500, "not restored, not lowered on removal")
        self.add()
        self.assertEqual(self.sys.mtu6("lan"), 1420)
        # Link down of the tunnel device changes nothing (FINDINGS Q5 b, force_link).
        self.sys.devs["wg1"]["up"] = False
        self.call("network.interface.lan", "status")
        self.assertTrue(self.call("network.interface.wg1", "status")["up"])
        self.assertEqual(len(self.lan_assign()), 1)

    def test_r12_dhcp_object_only_while_odhcpd_runs(self):
        # odhcpd registers the `dhcp` ubus object; stopped -> `ubus call dhcp ipv6ra`
        # exits 4 (Not found). UBUS odhcpd-real.dhcp.ipv6ra.json: the reply's shape.
        self.assertEqual(self.code("dhcp", "ipv6ra"), 4)
        with open(os.path.join(self.d, "odhcpd.pid"), "w") as f:
            f.write(f"{os.getpid()}\n")
        ra = m.compute_ra([{"addr": "2001:db8:100:100::1", "plen": 64, "scope": "global",
                            "preferred": 100, "valid": 200}], "", 1500, {}, 0)
        doc = m.ipv6ra_json("lan", ra, [{"addr": "2001:db8:100:100::1", "plen": 64,
                                         "scope": "global"}])
        with open(os.path.join(self.d, "ipv6ra.json"), "w") as f:
            json.dump(doc, f)
        got = self.call("dhcp", "ipv6ra")
        with open(os.path.join(FIXTURES, "ubus", "odhcpd-real.dhcp.ipv6ra.json")) as f:
            real = json.load(f)
        real_entry = next(iter(real["interfaces"].values()))[1]
        self.assertEqual(set(got["interfaces"]["lan"][0]), set(real_entry))

    def test_r12_service_signal_reloads_odhcpd(self):
        # procd: `/etc/init.d/odhcpd reload` = ubus call service signal {"name":"odhcpd",
        # "signal":1}; odhcpd re-reads the IPv6 MTU only then or on netifd's interface
        # update (FINDINGS "announce_mtu '0' does NOT change what the real odhcpd
        # announces"). Not running -> exit 4.
        sig = {"name": "odhcpd", "signal": 1}
        self.assertEqual(self.code("service", "signal", sig), 4)
        got = []
        old = m.signal.signal(m.signal.SIGHUP, lambda *_: got.append(1))
        try:
            with open(os.path.join(self.d, "odhcpd.pid"), "w") as f:
                f.write(f"{os.getpid()}\n")
            self.assertEqual(self.code("service", "signal", sig), 0)
            self.assertEqual(got, [1])
            self.assertEqual(self.code("service", "signal", {"name": "dnsmasq", "signal": 1}), 4)
        finally:
            m.signal.signal(m.signal.SIGHUP, old)
        # netifd's interface update (what makes odhcpd re-read the MTU) comes with every
        # change of assignments, not with a plain status call.
        n0 = m.Store(self.d).read().get("iface_updates", 0)
        self.add()
        n1 = m.Store(self.d).read().get("iface_updates", 0)
        self.assertGreater(n1, n0)
        self.call("network.interface.lan", "status")
        self.assertEqual(m.Store(self.d).read().get("iface_updates", 0), n1)

    def test_cli_exit_codes(self):
        # ubus(1): 4 = not found; JSON errors are refused.
        argv = ["call", "network.interface.nosuch", "status"]
        self.assertEqual(m.main_ubus(self.d, argv), 4)
        self.assertEqual(m.main_ubus(self.d, ["call", "network", "add_dynamic", "{x"]), 255)


class WithMtu6(ModelCase):
    network = NETWORK + "\nconfig device\n\toption name 'lan'\n\toption mtu6 '1500'\n"

    def test_r8_mtu6_configured_keeps_lan_mtu(self):
        # FX s10: "... unless the lan device has mtu6 configured" (DELEG-CONTRACT).
        self.add()
        self.assertEqual(self.sys.mtu6("lan"), 1500)


class WithUla(ModelCase):
    network = NETWORK + "\nconfig globals 'globals'\n\toption ula_prefix 'fd12:3456:789a::/48'\n"

    def test_ula_assigned_after_the_global_and_named_in_rdnss(self):
        # FINDINGS "Q1-Q3 with a ULA": lan has the ULA /64 before add_dynamic; after it
        # two assignments, global first; RDNSS names the ULA even while delegated, and
        # after the withdrawal (the deprecated global address changes nothing).
        self.assertEqual([a["address"] for a in self.lan_assign()], ["fd12:3456:789a::"])
        self.add()
        self.assertEqual([a["address"] for a in self.lan_assign()],
                         ["2001:db8:100:100::", "fd12:3456:789a::"])
        self.assertEqual(self.sys.mtu6("lan"), 1420)
        ra = m.compute_ra(self.sys.addrs("lan"), "", 1420, {}, 0)
        self.assertEqual(ra["rdnss"][0]["addr"], "fd12:3456:789a::1")
        self.call("network.interface.wgroam_wg1", "remove")
        self.advance()
        ra = m.compute_ra(self.sys.addrs("lan"), "", 1420, {}, 1)
        self.assertEqual(ra["rdnss"][0]["addr"], "fd12:3456:789a::1")
        self.assertEqual([a["address"] for a in self.lan_assign()], ["fd12:3456:789a::"])


class UcodeHandler(ModelCase):
    handler = "ucode"

    def test_r3_renew_replays_the_snapshot(self):
        # FX s7: `renew` never re-reads uci: a staged ip6prefix is not applied.
        self.uci("set", f"network.wg1.ip6prefix={P56}")
        self.call("network.interface.wg1", "renew")
        self.assertEqual(self.call("network.interface.wg1", "status")["ipv6-prefix"], [])
        self.assertEqual(self.lan_assign(), [])

    def test_r3_reload_with_changed_section_recreates_the_link(self):
        # FX s7/s9: `network reload` applies it but re-creates the WireGuard link.
        self.call("network", "reload")
        self.assertEqual(self.events("link-recreated"), [], "unchanged config: no bounce")
        self.uci("set", f"network.wg1.ip6prefix={P56}")
        self.call("network", "reload")
        self.assertEqual(len(self.events("link-recreated")), 1)
        self.assertEqual(len(self.lan_assign()), 1)
        # A changed peer (endpoint) is a changed snapshot too; the re-created link takes
        # what sat on the old device with it.
        self.add(prefix="2001:db8:100:200::/56")
        self.uci("set", "network.hub.endpoint_host=192.0.2.9")
        self.call("network", "reload")
        self.assertEqual(len(self.events("link-recreated")), 2)
        self.assertEqual(self.code("network.interface.wgroam_wg1", "status"), 4)

    def test_r4_add_dynamic_works_without_a_bounce(self):
        # FX s9: add_dynamic reaches the LAN under both handlers, link kept.
        self.add()
        self.assertEqual(len(self.lan_assign()), 1)
        self.call("network.interface.wgroam_wg1", "remove")
        self.assertEqual(self.lan_assign(), [])
        self.assertEqual(self.events("link-recreated"), [])


def A(addr, preferred, valid, plen=64):
    return {"addr": addr, "plen": plen, "scope": "global", "preferred": preferred,
            "valid": valid}


class Odhcpd(unittest.TestCase):
    def test_r9_router_lifetime_needs_default_route_not_on_lo_and_public_address(self):
        # FX s10: non-zero while lan has a public address (a deprecated one counts) and
        # ANY ::/0 route not on lo exists; `default from` routes count; none -> 0.
        live = [A("2001:db8:100:100::1", 100, 200)]
        dep = [A("2001:db8:100:100::1", 0, 7200)]
        src_default = route_line("::", 0, "2001:db8:100:100::", 56, "wg1")
        plain_default = route_line("::", 0, "::", 0, "wg1")
        self.assertEqual(m.compute_ra(live, LO_DEFAULT, 1500, {}, 0)["router_lifetime"], 0)
        self.assertEqual(m.compute_ra(live, LO_DEFAULT + src_default, 1500, {}, 0)
                         ["router_lifetime"], 1800)
        self.assertEqual(m.compute_ra(live, plain_default, 1500, {}, 0)["router_lifetime"], 1800)
        self.assertEqual(m.compute_ra(dep, src_default, 1500, {}, 0)["router_lifetime"], 1800,
                         "s3: lifetime stays 1800 after the withdrawal while routes remain")
        self.assertEqual(m.compute_ra([], src_default, 1500, {}, 0)["router_lifetime"], 0)
        ula = [A("fd00:1::1", 100, 200)]
        self.assertEqual(m.compute_ra(ula, src_default, 1500, {}, 0)["router_lifetime"], 0)
        # FINDINGS (CAVEAT after Q3): a stale goodbye PIO counts as a public prefix.
        stale = {}
        m.compute_ra(live, "", 1500, stale, 0)
        self.assertEqual(m.compute_ra(ula, plain_default, 1500, stale, 1)["router_lifetime"],
                         1800)
        self.assertEqual(m.compute_ra(ula, LO_DEFAULT, 1500, stale, 1)["router_lifetime"], 0)

    def test_ra_timing_one_ra_1s_after_the_last_change(self):
        # FINDINGS Q1/Q3: any address change on lan or ::/0 route add/del re-arms a
        # 1000 ms timer; ONE multicast RA 1 s after the LAST change.
        t = m.Debounce()
        live = [A("2001:db8:100:100::1", 100, 200)]
        t.observe(m.ra_trigger_signature(live, ""), 0.0)
        t.observe(m.ra_trigger_signature(live, LO_DEFAULT), 0.5)  # lo: not a trigger
        self.assertFalse(t.due(0.99))
        self.assertTrue(t.due(1.0))
        t.observe(m.ra_trigger_signature(live, ""), 1.2)
        self.assertFalse(t.due(1.5))
        src_default = route_line("::", 0, "2001:db8:100:100::", 56, "wg1")
        t.observe(m.ra_trigger_signature(live, src_default), 0.9)  # re-armed
        self.assertFalse(t.due(1.5))
        self.assertTrue(t.due(1.9))
        self.assertFalse(t.due(5.0), "fires once")
        dep = [A("2001:db8:100:100::1", 0, 7200)]
        t.observe(m.ra_trigger_signature(dep, src_default), 6.0)  # deprecated: a change
        self.assertTrue(t.due(7.0))
        t.observe(m.ra_trigger_signature([A("2001:db8:100:100::1", 0, 7100)], src_default), 8)
        self.assertFalse(t.due(10.0), "a lifetime ticking down is no change")

    def test_r10_rdnss_like_odhcpd_get_interface_dns_addr(self):
        # FX s3/s10: with only the deprecated address, RDNSS names it (rdisc6-withdrawn);
        # UBUS odhcpd-real.ra-capture.txt: the ULA is named; no global -> link-local
        # (first RA of ra-capture-delegate-withdraw-restore.txt).
        ll = "fe80::1"
        self.assertEqual(m.dns_addr([A("2001:db8:100:100::1", 0, 7200)], ll),
                         "2001:db8:100:100::1")
        self.assertEqual(m.dns_addr([A("2001:db8:100:100::1", 0, 7200), A("fd00::1", 10, 20)],
                                    ll), "fd00::1")
        self.assertEqual(m.dns_addr([A("2001:db8:1::1", 100, 200), A("fd00::1", 0, 20)], ll),
                         "2001:db8:1::1", "a usable address beats a deprecated ULA")
        self.assertEqual(m.dns_addr([A("2001:db8:1::1", 100, 200), A("fd00::1", 50, 60)], ll),
                         "fd00::1")
        self.assertEqual(m.dns_addr([A("2001:db8:1::1", 100, 200), A("2001:db8:2::1", 300, 400)],
                                    ll), "2001:db8:2::1", "longest preferred lifetime")
        self.assertEqual(m.dns_addr([A("2001:db8:1::1", 0, 0)], ll), ll, "valid > now")
        self.assertEqual(m.dns_addr([], ll), ll)
        ra = m.compute_ra([{"addr": ll, "plen": 64, "scope": "link", "preferred": m.INFINITE,
                            "valid": m.INFINITE}, A("2001:db8:100:100::1", 0, 7200)],
                          "", 1500, {}, 0)
        self.assertEqual(ra["rdnss"], [{"addr": "2001:db8:100:100::1", "lifetime": 5400}])
        # FINDINGS Q3: after the delete, link-local with the goodbye PIO: 5400; baseline
        # without any prefix (FX first RA of the capture): 1800.
        stale = {}
        m.compute_ra([A("2001:db8:100:100::1", 100, 200)], "", 1500, stale, 0)
        ra = m.compute_ra([{"addr": ll, "plen": 64, "scope": "link", "preferred": m.INFINITE,
                            "valid": m.INFINITE}], "", 1500, stale, 1)
        self.assertEqual(ra["rdnss"], [{"addr": ll, "lifetime": 5400}])
        ra = m.compute_ra([{"addr": ll, "plen": 64, "scope": "link", "preferred": m.INFINITE,
                            "valid": m.INFINITE}], "", 1500, {}, 1)
        self.assertEqual(ra["rdnss"], [{"addr": ll, "lifetime": 1800}])
        # FINDINGS (R 10:46): only non-ULA PIOs count; a ULA alone gives 1800.
        ra = m.compute_ra([A("fd00::1", 100, 200)], "", 1500, {}, 1)
        self.assertEqual(ra["rdnss"], [{"addr": "fd00::1", "lifetime": 1800}])

    def test_r11_prefix_lifetimes_goodbye_and_stale(self):
        # FX s2: 5400/2700 announced; s3: after the withdrawal valid 0 / preferred 0;
        # UBUS odhcpd-real.ra-capture.txt / dhcp.ipv6ra.json: a vanished prefix stays
        # "stale" and is announced with 0/0.
        stale = {}
        ra = m.compute_ra([A("2001:db8:100:100::1", m.INFINITE, m.INFINITE)], "", 1500, stale, 0,
                          ["2001:db8:100:100::/56"])
        self.assertEqual(ra["prefixes"], [{"prefix": "2001:db8:100:100::/64", "valid": 5400,
                                           "preferred": 2700}])
        self.assertEqual(ra["routes"], [{"prefix": "2001:db8:100:100::/56", "lifetime": 5400}])
        ra = m.compute_ra([A("2001:db8:100:100::1", 0, 7200)], "", 1500, stale, 1)
        self.assertEqual(ra["prefixes"], [{"prefix": "2001:db8:100:100::/64", "valid": 0,
                                           "preferred": 0}])
        self.assertEqual(ra["routes"], [])
        ra = m.compute_ra([], "", 1500, stale, 2)
        self.assertEqual(ra["prefixes"], [{"prefix": "2001:db8:100:100::/64", "valid": 0,
                                           "preferred": 0, "stale": True}])
        ra = m.compute_ra([], "", 1500, stale, 10_000)
        self.assertEqual(ra["prefixes"], [], "forgotten once its lifetime is over")

    def test_radvd_accepts_the_generated_config(self):
        # The RAs are sent by a real radvd: its own config check must pass.
        radvd = shutil.which("radvd") or "/usr/sbin/radvd"
        if not os.access(radvd, os.X_OK):
            self.fail("radvd is not installed (scripts/install-deps.sh installs it)")
        ra = m.compute_ra([A("2001:db8:100:100::1", 0, 7200),
                           {"addr": "fe80::1", "plen": 64, "scope": "link",
                            "preferred": m.INFINITE, "valid": m.INFINITE}],
                          route_line("::", 0, "::", 0, "wg1"), 1420, {}, 0,
                          ["2001:db8:100:100::/56"])
        with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
            f.write(m.radvd_conf("lo", ra))
            f.flush()
            p = subprocess.run([radvd, "-c", "-C", f.name], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


class RaCapture(unittest.TestCase):
    def test_lab_parser_reads_the_real_capture(self):
        # tests/lab/ra_capture.py is how the lab tests see RAs; it must read the real
        # odhcpd capture of FX (delegated, withdrawn, delegated again) correctly.
        sys.path.insert(0, os.path.join(ROOT, "tests", "lab"))
        import ra_capture

        with open(os.path.join(FIXTURES, "netifd-delegation",
                               "ra-capture-delegate-withdraw-restore.txt")) as f:
            ras = ra_capture.parse(f)
        self.assertEqual(len(ras), 6)
        self.assertEqual(ras[1]["router_lifetime"], 1800)
        self.assertEqual(ras[1]["mtu"], 1500)
        self.assertEqual(ras[1]["prefixes"], [{"prefix": "2001:db8:100:100::/64",
                                               "valid": 5400, "preferred": 2700}])
        self.assertEqual(ras[1]["routes"], [{"prefix": "2001:db8:100:100::/56",
                                             "lifetime": 5400}])
        self.assertEqual(ras[3]["prefixes"][0]["valid"], 0)
        self.assertEqual(ras[3]["rdnss"], [{"addr": "2001:db8:100:100::1", "lifetime": 5400}])


class OdhcpdLoop(unittest.TestCase):
    LL = {"addr": "fe80::1", "plen": 64, "scope": "link", "preferred": m.INFINITE,
          "valid": m.INFINITE}

    def test_r8_mtu_latched_at_interface_update_or_reload(self):
        # FINDINGS "announce_mtu '0' does NOT change what the real odhcpd announces":
        # the RA MTU is read from /proc only at netifd's interface update or a reload.
        core = m.OdhcpdCore(["lan"], {"lan": 1500})
        live = {"lan": [self.LL, A("2001:db8:100:1::1", m.INFINITE, m.INFINITE)]}
        st = {"iface_updates": 0}
        self.assertEqual(core.step(0.0, st, {"lan": [self.LL]}, "", {"lan": 1500})["send"]
                         ["lan"]["mtu"], 1500, "the first RA at start")
        st = {"iface_updates": 1}  # netifd assigned and copied wg1's MTU
        core.step(1.0, st, live, "", {"lan": 1420})
        out = core.step(2.0, st, live, "", {"lan": 1500})  # an agent wrote 1500 back
        self.assertEqual(out["send"]["lan"]["mtu"], 1420, "a later /proc write is not seen")
        core.reload({"lan": 1500})
        core.step(3.0, st, live, "", {"lan": 1500})
        self.assertEqual(core.step(4.0, st, live, "", {"lan": 1500})["send"]["lan"]["mtu"], 1500)

    def test_r12_silent_after_netifd_restart_until_reload(self):
        # FINDINGS "netifd restarted": odhcpd disables the LAN, `dhcp ipv6ra` is
        # {"interfaces":{}} and no RA goes out until a reload (SIGHUP).
        core = m.OdhcpdCore(["lan"], {"lan": 1420})
        live = {"lan": [self.LL, A("2001:db8:100:1::1", m.INFINITE, m.INFINITE)]}
        core.step(0.0, {}, live, "", {"lan": 1420})
        self.assertEqual(list(core.sent), ["lan"])
        out = core.step(1.0, {"netifd_generation": 1}, live, "", {"lan": 1420})
        self.assertEqual((out["kill"], out["send"], core.sent), (["lan"], {}, {}))
        for t in (2.0, 3.0, 9.0):
            self.assertEqual(core.step(t, {"netifd_generation": 1}, live, "", {"lan": 1420})
                             ["send"], {})
        core.reload({"lan": 1420})
        core.step(10.0, {"netifd_generation": 1}, live, "", {"lan": 1420})
        out = core.step(11.0, {"netifd_generation": 1}, live, "", {"lan": 1420})
        self.assertIn("lan", out["send"])
        self.assertEqual(core.sent["lan"], [{"prefix": "2001:db8:100:1::1", "length": 64,
                                             "stale": False}])

    def test_r12_one_ra_per_change_and_old_radvd_stopped_at_once(self):
        # FINDINGS Q1/Q3: one RA 1 s after the last change; the radvd holding the old
        # content goes at the first trigger (it would re-announce it by itself).
        core = m.OdhcpdCore(["lan"], {"lan": 1420})
        core.step(0.0, {}, {"lan": [self.LL]}, "", {"lan": 1420})
        live = {"lan": [self.LL, A("2001:db8:100:1::1", m.INFINITE, m.INFINITE)]}
        out = core.step(5.0, {}, live, "", {"lan": 1420})
        self.assertEqual((out["kill"], out["send"]), (["lan"], {}))
        self.assertEqual(core.step(5.5, {}, live, "", {"lan": 1420})["send"], {})
        self.assertEqual(core.sent["lan"], [], "ipv6ra lists what was SENT")
        out = core.step(6.0, {}, live, "", {"lan": 1420})
        self.assertEqual(out["send"]["lan"]["prefixes"][0]["valid"], 5400)
        self.assertEqual(core.step(7.0, {}, live, "", {"lan": 1420})["send"], {})


class UciExport(unittest.TestCase):
    def test_parse_export_options_lists_quotes(self):
        secs = m.parse_uci_export(
            "package network\n\nconfig interface 'lan'\n\toption device 'lan'\n"
            "\tlist addresses 'a b'\n\tlist addresses 'd'\\''e'\n\nconfig device\n"
            "\toption name 'x'\n")
        self.assertEqual(secs[0], {".type": "interface", ".name": "lan", "device": "lan",
                                   "addresses": ["a b", "d'e"]})
        self.assertEqual(secs[1][".name"], None)


if __name__ == "__main__":
    unittest.main(verbosity=2)
