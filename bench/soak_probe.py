#!/usr/bin/env python3
"""bench/soak_probe.py: the traffic of bench/soak.sh, one process per node namespace.

It owns one UDP socket on [::]:PORT, used for both roles:
  * echo: every probe request that arrives is sent back to its sender, unchanged but marked
    as a reply;
  * sender: every INTERVAL seconds it sends a probe (magic, its index, the destination's index,
    a sequence number, the send time) to the overlay address of the destination chosen for the
    current rotation slot, and waits up to TIMEOUT seconds for the echo.

Sending starts at --t0 (the same for every node, after all of them listen); time is cut into
slots of ROTATE seconds from --t0; in each slot a node sends to FANOUT other nodes drawn by random.Random(seed, node,
slot), so the pairs change every slot and the run is reproducible from its seed.

Output (--out), one line per probe once it is settled, flushed at once:
    t_sent,src,dst,seq,rtt_ms,err
rtt_ms is -1 for a probe with no echo within TIMEOUT; err is empty, "late" (an echo that came
after TIMEOUT: the probe stays counted as lost) or the errno name of a send that failed (for
example ENETUNREACH while the local daemon, hence its TUN device, is down). t_sent is the wall
clock (time.time()), the same clock as the fault log of soak.sh.

It must not: send anywhere but the overlay addresses of --addrs; keep unbounded state (at
most MAX_OUTSTANDING probes are waited for; the oldest are settled as lost beyond that).
"""

import argparse
import errno
import random
import select
import socket
import struct
import sys
import time

MAGIC = b"SOAK"
# magic, kind (0 request, 1 echo), src, dst, seq, t_sent
FMT = "!4sBHHQd"
SIZE = struct.calcsize(FMT)
PAD = 64 - SIZE  # probes are 64 bytes of UDP payload
MAX_OUTSTANDING = 4096


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--index", type=int, required=True, help="this node's index (1-based)")
    p.add_argument("--addrs", required=True, help='file of "INDEX ADDRESS" lines')
    p.add_argument("--port", type=int, default=7900)
    p.add_argument("--interval", type=float, default=0.2)
    p.add_argument("--timeout", type=float, default=3.0)
    p.add_argument("--rotate", type=float, default=30.0)
    p.add_argument("--fanout", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--t0", type=float, required=True, help="first send and start of slot 0 (unix time)")
    p.add_argument("--out", required=True)
    return p.parse_args()


def read_addrs(path):
    addrs = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2:
                addrs[int(parts[0])] = parts[1]
    return addrs


def packed(addr):
    try:
        return socket.inet_pton(socket.AF_INET6, addr.split("%")[0])
    except OSError:
        return None


def destinations(a, others, slot):
    rng = random.Random(f"{a.seed}/{a.index}/{slot}")
    return rng.sample(others, min(a.fanout, len(others)))


def main():
    a = parse_args()
    addrs = read_addrs(a.addrs)
    index_of = {socket.inet_pton(socket.AF_INET6, v): k for k, v in addrs.items()}
    others = sorted(k for k in addrs if k != a.index)
    if not others:
        sys.exit(f"soak_probe: no other node in {a.addrs}")
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("::", a.port))
    out = open(a.out, "a", buffering=1, encoding="utf-8")

    seq = {d: 0 for d in others}  # next sequence number per destination
    outstanding = {}  # (dst, seq) -> t_sent
    settled_late = set()  # (dst, seq) settled as lost: a late echo is noted once
    # Echo from now on; send from --t0 on, when every node's prober is listening.
    next_send = max(time.time(), a.t0)

    def settle(key, t_sent, rtt, err=""):
        out.write(f"{t_sent:.6f},{a.index},{key[0]},{key[1]},{rtt},{err}\n")

    while True:
        now = time.time()
        # Settle what timed out (dict order is send order).
        while outstanding:
            key, t_sent = next(iter(outstanding.items()))
            if now - t_sent < a.timeout and len(outstanding) <= MAX_OUTSTANDING:
                break
            del outstanding[key]
            settle(key, t_sent, -1)
            settled_late.add(key)
            if len(settled_late) > MAX_OUTSTANDING:
                settled_late.clear()
        if now >= next_send:
            slot = int((now - a.t0) // a.rotate)
            for dst in destinations(a, others, slot):
                s = seq[dst]
                seq[dst] = s + 1
                msg = struct.pack(FMT, MAGIC, 0, a.index, dst, s, now) + bytes(PAD)
                try:
                    sock.sendto(msg, (addrs[dst], a.port))
                    outstanding[(dst, s)] = now
                except OSError as e:
                    settle((dst, s), now, -1, errno.errorcode.get(e.errno, str(e.errno)))
            next_send += a.interval
            if next_send < now:  # we were starved: keep the rate, do not burst
                next_send = now + a.interval
        wait = max(0.0, min(next_send - time.time(), 0.05))
        r, _, _ = select.select([sock], [], [], wait)
        if not r:
            continue
        for _ in range(64):
            try:
                data, peer = sock.recvfrom(2048)
            except BlockingIOError:
                break
            except OSError:
                break
            if len(data) < SIZE or data[:4] != MAGIC:
                continue
            _, kind, src, dst, s, t_sent = struct.unpack(FMT, data[:SIZE])
            if kind == 0 and dst == a.index:
                # Echo to where it came from, if that is the node it claims to be.
                if index_of.get(packed(peer[0])) == src:
                    reply = struct.pack(FMT, MAGIC, 1, src, dst, s, t_sent) + data[SIZE:]
                    try:
                        sock.sendto(reply, peer)
                    except OSError:
                        pass
            elif kind == 1 and src == a.index:
                key = (dst, s)
                if key in outstanding:
                    del outstanding[key]
                    settle(key, t_sent, f"{(time.time() - t_sent) * 1000:.3f}")
                elif key in settled_late:
                    settled_late.discard(key)
                    out.write(f"{t_sent:.6f},{a.index},{dst},{s},-1,late\n")
            if not select.select([sock], [], [], 0)[0]:
                break


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
