#!/usr/bin/env python3
"""Detection latency of the wgroam hub in the lab (tests/lab): time from the packet
r1 sends to the moment the agent's status file shows r1's new endpoint.

Each run: prepare (NAT rebind; for `initiation` also give r1 a fresh WireGuard peer
so its next packet is a handshake initiation), wait a random fraction of a second
(so runs do not line up with the agent's poll cycle), then send one UDP datagram from
the LAN client (wgr-lan) through r1's tunnel and poll the status file every 1 ms
until r1's endpoint differs from the one before. The clock starts right before
sendto(): process start-up is not counted.

  kernel      r1 keeps its session; its data arrives from a new NAT port and the
              kernel (wireguard-go) roams; the agent sees it at its next poll.
  initiation  r1 starts a new handshake from a new NAT port; the agent captures the
              initiation, verifies it and moves the endpoint at once.

Output: one JSON object {"mode", "runs": [{"ms", "endpoint", "why"}], "retries"}.
Bounded: every wait has a timeout; at most 3 * RUNS attempts.

With SETTLE_S (a 6th argument, default 0), each run first waits that long without
traffic: past the hub's 10 s hot window, the hub is quiet (it reads WireGuard when a
packet wakes it, not every poll).

usage: latency.py MODE RUNS STATUS_FILE R1_PUB R2_PUB [SETTLE_S]
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
LAN_NS = "/run/netns/wgr-lan"
DST = ("2001:db8:ffff::1", 9)
R2_ENDPOINT = "198.51.100.2:51820"
TIMEOUT_S = 3.0


def lan_socket() -> socket.socket:
    """A UDP socket living in wgr-lan (created there, used from here)."""
    libc = ctypes.CDLL(None, use_errno=True)
    here = os.open("/proc/self/ns/net", os.O_RDONLY)
    there = os.open(LAN_NS, os.O_RDONLY)
    try:
        if libc.setns(there, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns wgr-lan")
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        if libc.setns(here, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(here)
        os.close(there)
    return s


def peer(status_file: str, key: str):
    try:
        with open(status_file, "rb") as f:
            st = json.loads(f.read())
    except (OSError, ValueError):
        return None
    for i in st.get("interfaces", []):
        for p in i.get("peers", []):
            if p.get("public_key") == key:
                return p
    return None


def sh(*cmd: str) -> None:
    r = subprocess.run(cmd, timeout=10, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("latency: %s failed: %s" % (" ".join(cmd), r.stderr.strip()))


def fresh_r1_peer(r2_pub: str) -> None:
    """r1 forgets its session with r2 (peer removed and re-added unchanged)."""
    sh("ip", "netns", "exec", "wgr-r1", "wg", "set", "wg1", "peer", r2_pub, "remove")
    sh("ip", "netns", "exec", "wgr-r1", "wg", "set", "wg1", "peer", r2_pub,
       "endpoint", R2_ENDPOINT, "allowed-ips", "::/0")


def main() -> None:
    mode, runs, status_file, r1_pub, r2_pub = sys.argv[1:6]
    settle = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    runs = int(runs)
    assert mode in ("kernel", "initiation")
    sock = lan_socket()
    out, retries = [], 0
    for _ in range(3 * runs):
        if len(out) == runs:
            break
        p = peer(status_file, r1_pub)
        old = p.get("endpoint") if p else None
        if mode == "initiation":
            fresh_r1_peer(r2_pub)
        time.sleep(settle)
        sh("ip", "netns", "exec", "wgr-nat", "conntrack", "-F")
        time.sleep(0.2 + random.uniform(0, 0.6))
        t0 = time.monotonic()
        sock.sendto(b"wgroam-bench", DST)
        deadline = t0 + TIMEOUT_S
        new = None
        while time.monotonic() < deadline:
            p = peer(status_file, r1_pub)
            if p and p.get("endpoint") not in (None, old):
                new = p
                break
            time.sleep(0.001)
        if new is None:
            # The NAT drew the same port again (1 in 1000) or nothing arrived.
            retries += 1
            continue
        ms = (time.monotonic() - t0) * 1000
        why = (new.get("last_change") or {}).get("why")
        out.append({"ms": round(ms, 1), "endpoint": new["endpoint"], "why": why})
        # Let r1's handshake (initiation mode) finish before the next run.
        time.sleep(0.3)
    print(json.dumps({"mode": mode, "runs": out, "retries": retries}))
    if len(out) < runs:
        sys.exit(1)


if __name__ == "__main__":
    main()
