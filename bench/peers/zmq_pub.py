#!/usr/bin/python3
"""ZeroMQ ipc PUB peer for bench/fanout.ts.

Usage: zmq_pub.py ENDPOINT SIZE WARMUP COUNT RATE BATCH

Binds ENDPOINT, prints "bound", waits for a line "go" on stdin, then sends WARMUP + COUNT
messages of SIZE bytes, each starting with CLOCK_MONOTONIC ns (u64 LE, the actual send time)
and a sequence number (u64 LE); RATE messages per second (0: as fast as possible). Then sends
end markers (sequence 0xFFFFFFFF) for a while and prints one JSON line with its own figures.
"""
import json
import os
import struct
import sys
import time

import zmq

endpoint, size, warmup, count, rate = sys.argv[1], *map(int, sys.argv[2:6])
ctx = zmq.Context()
pub = ctx.socket(zmq.PUB)
pub.setsockopt(zmq.SNDHWM, 0)  # unlimited: measure delivery, not the drop policy
pub.bind(endpoint)
print("bound", flush=True)
sys.stdin.readline()
cpu0 = os.times()

clock = time.clock_gettime_ns
MONO = time.CLOCK_MONOTONIC
pad = b"\0" * (size - 16)
pack = struct.Struct("<QQ").pack
total = warmup + count
t0 = clock(MONO)
max_lag = 0
if rate > 0:
    interval = 1_000_000_000 // rate
    i = 0
    while i < total:
        now = clock(MONO)
        due = t0 + i * interval
        if due > now:
            left = due - now
            if left > 60_000:
                time.sleep((left - 50_000) / 1e9)
            continue
        max_lag = max(max_lag, now - due)
        pub.send(pack(now, i) + pad)
        i += 1
else:
    for i in range(total):
        pub.send(pack(clock(MONO), i) + pad)
t1 = clock(MONO)
for _ in range(10):
    pub.send(pack(clock(MONO), 0xFFFFFFFF) + pad)
    time.sleep(0.05)
cpu = os.times()
print(json.dumps({
    "pub_rate": total / ((t1 - t0) / 1e9),
    "cpu_ms": (cpu.user + cpu.system - cpu0.user - cpu0.system) * 1000,
    "max_lag_us": max_lag / 1000,
}), flush=True)
pub.close(linger=30000)  # deliver what is queued
ctx.term()
