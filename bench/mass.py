#!/usr/bin/env python3
"""A mass move: every peer of the hub gets a new NAT port at once (tests/lab/many.sh
peers plus r1). Each run: NAT rebind, a random pause (so runs do not line up with the
agent's poll), then one UDP datagram from r1's LAN client and from every wgp peer
(all sent within a millisecond or two), then the status file and the uci save file
are watched every 1 ms.

Reported per run (ms after the first datagram):
  first_stage  the uci save file first changed (the agent began staging the moves)
  last_stage   it last changed
  visible      the status file shows every peer at an endpoint other than before

Output: JSON {"runs": [{"first_stage", "last_stage", "visible", "moved"}], "retries"}.
Bounded: every wait has a timeout; at most 3 * RUNS attempts.

usage: mass.py RUNS STATUS_FILE SAVE_FILE PEER_ADDR6...
"""
import ctypes
import json
import os
import random
import socket
import subprocess
import sys
import time

CLONE_NEWNET = 0x40000000
R2_TUN6 = ("2001:db8:100::1", 9)
INET6 = ("2001:db8:ffff::1", 9)
TIMEOUT_S = 5.0


def sockets_in(ns: str, binds):
    """UDP sockets created inside netns `ns`, bound to each address of `binds`."""
    libc = ctypes.CDLL(None, use_errno=True)
    here = os.open("/proc/self/ns/net", os.O_RDONLY)
    there = os.open("/run/netns/" + ns, os.O_RDONLY)
    out = []
    try:
        if libc.setns(there, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns " + ns)
        for b in binds:
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            if b:
                s.bind((b, 0))
            out.append(s)
        if libc.setns(here, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(here)
        os.close(there)
    return out


def endpoints(status_file: str):
    try:
        with open(status_file, "rb") as f:
            st = json.loads(f.read())
    except (OSError, ValueError):
        return None
    return {p["public_key"]: p.get("endpoint") for i in st.get("interfaces", [])
            for p in i.get("peers", [])}


def save_stamp(path: str):
    try:
        s = os.stat(path)
        return (s.st_mtime_ns, s.st_size, s.st_ino)
    except OSError:
        return None


def main() -> None:
    runs, status_file, save_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    addrs = sys.argv[4:]
    lan = sockets_in("wgr-lan", [None])[0]
    peers = sockets_in("wgr-peers", addrs)
    out, retries = [], 0
    for _ in range(3 * runs):
        if len(out) == runs:
            break
        before = endpoints(status_file) or {}
        r = subprocess.run(["ip", "netns", "exec", "wgr-nat", "conntrack", "-F"],
                           capture_output=True, timeout=10)
        if r.returncode != 0:
            sys.exit("mass: conntrack -F failed")
        time.sleep(0.2 + random.uniform(0, 0.6))
        stamp = save_stamp(save_file)
        t0 = time.monotonic()
        lan.sendto(b"wgroam-bench", INET6)
        for s in peers:
            s.sendto(b"wgroam-bench", R2_TUN6)
        first = last = visible = None
        deadline = t0 + TIMEOUT_S
        while time.monotonic() < deadline:
            now = time.monotonic()
            st = save_stamp(save_file)
            if st != stamp:
                stamp = st
                if first is None:
                    first = now
                last = now
            eps = endpoints(status_file)
            if eps and all(eps.get(k) != v for k, v in before.items()):
                visible = time.monotonic()
                break
            time.sleep(0.001)
        if visible is None or first is None:
            # Some peer drew its old port again (1 in 1000 each) or nothing arrived.
            retries += 1
            time.sleep(1)
            continue
        ms = lambda t: round((t - t0) * 1000, 1)
        out.append({"first_stage": ms(first), "last_stage": ms(last),
                    "visible": ms(visible), "moved": len(before)})
        time.sleep(0.5)
    print(json.dumps({"runs": out, "retries": retries}))
    if len(out) < runs:
        sys.exit(1)


if __name__ == "__main__":
    main()
