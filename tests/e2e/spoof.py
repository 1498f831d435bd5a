#!/usr/bin/env python3
"""Sends a spoof campaign at a WireGuard hub: replays of captured genuine
initiations, forged initiations with a valid mac1 for the hub's key, garbage
shaped like initiations, truncated/oversized ones, random UDP and, given a file
of captured transport packets (data/keepalive with real session indices),
replays of those. Bounded: COUNT packets, then exits. Prints what it sent per
kind as JSON.

usage: spoof.py HUB_PUBKEY_B64 GENUINE_HEX_FILE HOST PORT COUNT [TRANSPORT_HEX_FILE]
       spoof.py extract PCAP INIT_HEX_OUT TRANSPORT_HEX_OUT

GENUINE_HEX_FILE / TRANSPORT_HEX_FILE: one packet (UDP payload) in hex per line.
`extract` reads a tcpdump capture (Ethernet, IPv4) of packets to the hub and
writes the handshake initiations and the transport packets it holds.
"""
import base64
import hashlib
import json
import os
import socket
import struct
import sys

LABEL_MAC1 = b"mac1----"


def mac1(msg116: bytes, hub_pub: bytes) -> bytes:
    key = hashlib.blake2s(LABEL_MAC1 + hub_pub).digest()
    return hashlib.blake2s(msg116, digest_size=16, key=key).digest()


def forged(hub_pub: bytes) -> bytes:
    body = b"\x01\x00\x00\x00" + os.urandom(112)
    return body + mac1(body, hub_pub) + bytes(16)


def read_hex(path: str) -> list:
    with open(path) as f:
        return [bytes.fromhex(line.strip()) for line in f if line.strip()]


def extract(pcap: str, init_out: str, transport_out: str) -> None:
    data = open(pcap, "rb").read()
    pos, inits, transports = 24, [], []
    while pos + 16 <= len(data):
        incl = struct.unpack_from("<I", data, pos + 8)[0]
        frame = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        if len(frame) < 14 + 20 + 8 or frame[12:14] != b"\x08\x00":
            continue
        ihl = (frame[14] & 0x0F) * 4
        payload = frame[14 + ihl + 8 :]
        if len(payload) == 148 and payload[0] == 1:
            inits.append(payload)
        elif len(payload) >= 32 and payload[0] == 4:
            transports.append(payload)
    with open(init_out, "w") as f:
        f.writelines(p.hex() + "\n" for p in inits)
    with open(transport_out, "w") as f:
        f.writelines(p.hex() + "\n" for p in transports)
    print(json.dumps({"initiations": len(inits), "transport": len(transports)}))


def main() -> None:
    if sys.argv[1] == "extract":
        extract(*sys.argv[2:5])
        return
    hub_pub = base64.b64decode(sys.argv[1])
    genuine = read_hex(sys.argv[2])
    host, port, count = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    transport = read_hex(sys.argv[6]) if len(sys.argv) > 6 else []
    assert len(hub_pub) == 32 and genuine and all(len(g) == 148 for g in genuine)
    kinds = {"forged_mac1": 0, "replay": 0, "bad_mac1": 0, "bad_length": 0, "random": 0}
    if transport:
        kinds["transport_replay"] = 0
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(16)]
    period = 6 if transport else 5
    for i in range(count):
        k = i % period
        g = genuine[(i // period) % len(genuine)]
        if k == 0:
            kind, data = "forged_mac1", forged(hub_pub)
        elif k == 1:
            kind, data = "replay", g
        elif k == 2:
            kind, data = "bad_mac1", b"\x01\x00\x00\x00" + os.urandom(144)
        elif k == 3:
            kind = "bad_length"
            data = g[: 1 + i % 147] if i % 2 else g + os.urandom(1 + i % 64)
        elif k == 4:
            kind, data = "random", os.urandom(1 + i % 200)
        else:
            kind, data = "transport_replay", transport[(i // period) % len(transport)]
        # Many source ports: each looks like a new roaming address.
        socks[i % len(socks)].sendto(data, (host, port))
        kinds[kind] += 1
    print(json.dumps(kinds))


if __name__ == "__main__":
    main()
