#!/usr/bin/python3
"""Router advertisements from `tcpdump -tt -vvv` text (stdin) as JSON lines (stdout):
{"t": epoch s, "router_lifetime": s, "mtu": n|null, "prefixes": [{"prefix", "valid",
"preferred"}], "routes": [{"prefix", "lifetime"}], "rdnss": [{"addr", "lifetime"}]}.
What a LAN client received, for lab tests."""
import json
import re
import sys

HEAD = re.compile(r"^(\d+\.\d+) IP6 .*router advertisement")
RL = re.compile(r"router lifetime (\d+)s")
MTU = re.compile(r"mtu option \(5\).*:\s+(\d+)\s*$")
PIO = re.compile(r"prefix info option \(3\).*: (\S+), Flags \[[^]]*\], valid time (\d+)s, pref. time (\d+)s")
RIO = re.compile(r"route info option \(24\).*:\s+(\S+), pref=\w+, lifetime=(\d+)s")
RDNSS = re.compile(r"rdnss option \(25\).*lifetime (\d+)s, addr: (.*)$")


def parse(lines):
    out, cur = [], None
    for line in lines:
        m = HEAD.match(line)
        if m:
            cur = {"t": float(m.group(1)), "router_lifetime": None, "mtu": None,
                   "prefixes": [], "routes": [], "rdnss": []}
            out.append(cur)
            continue
        if cur is None or not line.startswith((" ", "\t")):
            if not line.startswith((" ", "\t")):
                cur = None
            continue
        if (m := RL.search(line)) and cur["router_lifetime"] is None:
            cur["router_lifetime"] = int(m.group(1))
        elif m := MTU.search(line):
            cur["mtu"] = int(m.group(1))
        elif m := PIO.search(line):
            cur["prefixes"].append({"prefix": m.group(1), "valid": int(m.group(2)),
                                    "preferred": int(m.group(3))})
        elif m := RIO.search(line):
            cur["routes"].append({"prefix": m.group(1), "lifetime": int(m.group(2))})
        elif m := RDNSS.search(line):
            for a in m.group(2).split(","):
                cur["rdnss"].append({"addr": a.strip(), "lifetime": int(m.group(1))})
    return out


if __name__ == "__main__":
    for ra in parse(sys.stdin):
        print(json.dumps(ra, sort_keys=True))
