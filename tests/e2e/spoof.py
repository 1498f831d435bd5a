#!/usr/bin/env python3
"""Sends a spoof campaign at a WireGuard hub: forged initiations with a valid mac1
for the hub's key, replays of a captured genuine initiation, garbage shaped like
initiations, truncated/oversized ones and random UDP. Bounded: COUNT packets, then
exits. Prints what it sent per kind as JSON.

usage: spoof.py HUB_PUBKEY_B64 GENUINE_HEX_FILE HOST PORT COUNT
"""
import base64
import hashlib
import json
import os
import socket
import sys

LABEL_MAC1 = b"mac1----"


def mac1(msg116: bytes, hub_pub: bytes) -> bytes:
    key = hashlib.blake2s(LABEL_MAC1 + hub_pub).digest()
    return hashlib.blake2s(msg116, digest_size=16, key=key).digest()


def forged(hub_pub: bytes) -> bytes:
    body = b"\x01\x00\x00\x00" + os.urandom(112)
    return body + mac1(body, hub_pub) + bytes(16)


def main() -> None:
    hub_pub = base64.b64decode(sys.argv[1])
    genuine = bytes.fromhex(open(sys.argv[2]).read().strip())
    host, port, count = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    assert len(hub_pub) == 32 and len(genuine) == 148
    kinds = {"forged_mac1": 0, "replay": 0, "bad_mac1": 0, "bad_length": 0, "random": 0}
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(16)]
    for i in range(count):
        k = i % 5
        if k == 0:
            kind, data = "forged_mac1", forged(hub_pub)
        elif k == 1:
            kind, data = "replay", genuine
        elif k == 2:
            kind, data = "bad_mac1", b"\x01\x00\x00\x00" + os.urandom(144)
        elif k == 3:
            kind = "bad_length"
            data = genuine[: 1 + i % 147] if i % 2 else genuine + os.urandom(1 + i % 64)
        else:
            kind, data = "random", os.urandom(1 + i % 200)
        # Many source ports: each looks like a new roaming address.
        socks[i % len(socks)].sendto(data, (host, port))
        kinds[kind] += 1
    print(json.dumps(kinds))


if __name__ == "__main__":
    main()
