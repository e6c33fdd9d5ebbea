#!/usr/bin/python3
"""ZeroMQ ipc SUB peer for bench/fanout.ts.

Usage: zmq_sub.py ENDPOINT WARMUP COUNT LATENCY

Connects to ENDPOINT, subscribes to everything, prints "ready", then receives until the end
marker (sequence 0xFFFFFFFF) or until it has seen the last sequence number. Prints one JSON
line: delivered (sequence >= WARMUP), duplicates, order violations, receive rate, CPU time,
and (LATENCY=1) one-way latencies in microseconds from the stamped send time.
"""
import json
import os
import struct
import sys
import time

import zmq

endpoint = sys.argv[1]
warmup, count, want_latency = map(int, sys.argv[2:5])
ctx = zmq.Context()
sub = ctx.socket(zmq.SUB)
sub.setsockopt(zmq.RCVHWM, 0)
sub.setsockopt(zmq.RCVTIMEO, 10000)  # give up after 10 s of silence
sub.setsockopt(zmq.SUBSCRIBE, b"")
sub.connect(endpoint)
cpu0 = os.times()
print("ready", flush=True)

clock = time.clock_gettime_ns
MONO = time.CLOCK_MONOTONIC
unpack = struct.Struct("<QQ").unpack_from
last_seq = warmup + count - 1
seen = bytearray(warmup + count)
delivered = duplicates = order = 0
last = -1
first_ns = last_ns = 0
lat = []
while True:
    try:
        msg = sub.recv()
    except zmq.Again:
        break
    now = clock(MONO)
    sent, seq = unpack(msg)
    if seq == 0xFFFFFFFF:
        break
    if seq < last:
        order += 1
    last = seq
    if seen[seq]:
        duplicates += 1
        continue
    seen[seq] = 1
    if seq < warmup:
        continue
    if delivered == 0:
        first_ns = now
    last_ns = now
    delivered += 1
    if want_latency:
        lat.append((now - sent) / 1000)
    if seq == last_seq:
        break
cpu = os.times()
print(json.dumps({
    "delivered": delivered,
    "duplicates": duplicates,
    "order": order,
    "sub_rate": delivered / ((last_ns - first_ns) / 1e9) if last_ns > first_ns else 0,
    "cpu_ms": (cpu.user + cpu.system - cpu0.user - cpu0.system) * 1000,
    "lat": lat,
}), flush=True)
sub.close(linger=0)
ctx.term()
