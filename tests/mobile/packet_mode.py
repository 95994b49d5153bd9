"""Packet mode from Python (ctypes), as an iOS packet tunnel would drive it: no TUN device.

Builds an ICMPv6 echo request from the node's address to TARGET, hands it to
pl_node_send_packet, and waits for the echo reply to come out of the packet callback.

usage: python3 packet_mode.py LIBRARY CONFIG_JSON TARGET_ADDRESS
Exit 0 when the reply arrived intact. Run by tests/tests/mobile.rs.
"""

import ctypes
import ipaddress
import json
import os
import queue
import struct
import sys
import time

PL_OK = 0
LOG = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int32, ctypes.c_char_p)
EVENT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p)
PACKET = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint8), ctypes.c_size_t)


def load(path):
    lib = ctypes.CDLL(path)
    c = ctypes
    sig = {
        "pl_node_new": ([c.c_char_p, LOG, EVENT, c.c_void_p, c.POINTER(c.c_uint64)], c.c_int32),
        "pl_node_start_packet_mode": ([c.c_uint64, PACKET, c.c_void_p], c.c_int32),
        "pl_node_send_packet": ([c.c_uint64, c.c_char_p, c.c_size_t], c.c_int32),
        "pl_node_peers_json": ([c.c_uint64, c.POINTER(c.c_void_p)], c.c_int32),
        "pl_node_address": ([c.c_uint64, c.POINTER(c.c_void_p)], c.c_int32),
        "pl_node_stop": ([c.c_uint64], c.c_int32),
        "pl_node_free": ([c.c_uint64], c.c_int32),
        "pl_string_free": ([c.c_void_p], None),
        "pl_last_error": ([c.c_char_p, c.c_size_t], c.c_size_t),
        "pl_status_name": ([c.c_int32], c.c_char_p),
    }
    for name, (args, res) in sig.items():
        f = getattr(lib, name)
        f.argtypes, f.restype = args, res
    return lib


def check(lib, what, status):
    if status != PL_OK:
        buf = ctypes.create_string_buffer(1024)
        lib.pl_last_error(buf, len(buf))
        name = lib.pl_status_name(status).decode()
        sys.exit(f"{what} failed: {name}: {buf.value.decode()}")


def take_string(lib, what, fn, *args):
    out = ctypes.c_void_p()
    check(lib, what, fn(*args, ctypes.byref(out)))
    s = ctypes.string_at(out.value).decode()
    lib.pl_string_free(out)
    return s


def checksum(src, dst, body):
    data = src.packed + dst.packed + struct.pack("!I3xB", len(body), 58) + body
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(src, dst, ident, seq, payload):
    body = struct.pack("!BBHHH", 128, 0, 0, ident, seq) + payload
    body = body[:2] + struct.pack("!H", checksum(src, dst, body)) + body[4:]
    header = struct.pack("!IHBB", 6 << 28, len(body), 58, 64) + src.packed + dst.packed
    return header + body


def main():
    lib_path, config, target = sys.argv[1:4]
    lib = load(lib_path)
    target = ipaddress.IPv6Address(target)
    events, packets = queue.Queue(), queue.Queue()

    # The callbacks must stay referenced while the node can call them.
    on_log = LOG(lambda ctx, level, msg: level <= 3 and print("[log]", msg.decode(), file=sys.stderr))
    on_event = EVENT(lambda ctx, j: events.put(json.loads(j)))
    on_packet = PACKET(lambda ctx, p, n: packets.put(ctypes.string_at(p, n)))

    node = ctypes.c_uint64()
    check(lib, "pl_node_new", lib.pl_node_new(config.encode(), on_log, on_event, None, ctypes.byref(node)))
    node = node.value
    me = ipaddress.IPv6Address(take_string(lib, "pl_node_address", lib.pl_node_address, node))
    check(lib, "pl_node_start_packet_mode", lib.pl_node_start_packet_mode(node, on_packet, None))

    deadline = time.monotonic() + 10
    while '"state":"up"' not in take_string(lib, "pl_node_peers_json", lib.pl_node_peers_json, node):
        if time.monotonic() > deadline:
            sys.exit("no link came up within 10 s")
        time.sleep(0.1)

    payload = os.urandom(56)
    ident = os.getpid() & 0xFFFF
    started = time.monotonic()
    reply = None
    for seq in range(1, 21):
        packet = echo_request(me, target, ident, seq, payload)
        check(lib, "pl_node_send_packet", lib.pl_node_send_packet(node, packet, len(packet)))
        wait_until = time.monotonic() + 0.5
        while reply is None and time.monotonic() < wait_until:
            try:
                p = packets.get(timeout=0.1)
            except queue.Empty:
                continue
            src = ipaddress.IPv6Address(p[8:24])
            kind, _, _, rid, rseq = struct.unpack("!BBHHH", p[40:48])
            print(f"packet from {src}: ICMPv6 type {kind} id {rid} seq {rseq}", file=sys.stderr)
            if p[6] == 58 and kind == 129 and src == target and rid == ident and rseq == seq:
                reply = p
        if reply is not None:
            break
    if reply is None:
        sys.exit("no echo reply came out of the packet callback")
    body = reply[40:]
    if reply[48:] != payload:
        sys.exit("the echo reply's payload differs from the request's")
    if checksum(target, me, body[:2] + b"\0\0" + body[4:]) != struct.unpack("!H", body[2:4])[0]:
        sys.exit("the echo reply's checksum is wrong")
    rtt = (time.monotonic() - started) * 1000
    check(lib, "pl_node_stop", lib.pl_node_stop(node))
    check(lib, "pl_node_free", lib.pl_node_free(node))
    seen = []
    while not events.empty():
        seen.append(events.get_nowait()["event"])
    for e in ("ready", "peer_up", "stopped"):
        if e not in seen:
            sys.exit(f"no {e} event (events: {seen})")
    print(f"ECHO REPLY OK from {target} in {rtt:.1f} ms (events: {seen})")


if __name__ == "__main__":
    main()
