#!/usr/bin/env python3
"""EXPERIMENT driver for dirbus_uring.c: alternates (sub mode, pub mode) pairs over ROUNDS
rounds, COUNT x SIZE-byte messages on /dev/shm, and prints medians of the end-to-end rate and
CPU per message (publisher + subscriber, user + sys, all threads), and the publisher's own.

  python3 bench/floor/experiments/dirbus_uring.py BIN ROUNDS COUNT plain:plain ring3:plain ...
"""
import json, os, shutil, signal, statistics, subprocess, sys, tempfile

binary, rounds, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
# QUEUED=1: the subscriber is stopped while the publisher runs (one queued batch to read)
queued = os.environ.get("QUEUED") == "1"
pairs = [p.split(":") for p in sys.argv[4:]]
res = {tuple(p): [] for p in pairs}
for _ in range(rounds):
    for sm, pm in pairs:
        d = tempfile.mkdtemp(dir="/dev/shm", prefix="u6-")
        sub = subprocess.Popen([binary, "--mode", sm, "--role", "sub", "--path", d, "--count",
                                str(count), "--warmup", "0", "--idle-ms", "3000"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert sub.stdout.readline().strip() == "ready"
        if queued:
            sub.send_signal(signal.SIGSTOP)
        pub = subprocess.run([binary, "--mode", pm, "--role", "pub", "--path", d, "--count",
                              str(count), "--size", "1024", "--batch", "64"],
                             capture_output=True, text=True)
        if queued:
            sub.send_signal(signal.SIGCONT)
        out, err = sub.communicate()
        if not out.strip() or not pub.stdout.strip():
            sys.exit(f"{sm}:{pm} failed: sub {err!r} pub {pub.stderr!r}")
        s, p = json.loads(out), json.loads(pub.stdout)
        shutil.rmtree(d)
        ok = s["distinct"] == count and s["duplicates"] == 0
        span = max(s["last_ns"] - s["first_ns"], 1) / 1e9
        res[(sm, pm)].append(dict(
            rate=count / span, cpu=(s["cpu_ms"] + p["cpu_ms"]) * 1000 / count,
            sub=s["cpu_ms"] * 1000 / count, pubcpu=p["cpu_ms"] * 1000 / count,
            pubrate=count / (p["elapsed_ns"] / 1e9), ok=ok, order=s["order"],
            note=err.strip().splitlines()[-1] if err.strip() else ""))
print("load", os.getloadavg())
for k, v in res.items():
    m = lambda f: statistics.median(x[f] for x in v)
    print(f"sub {k[0]:6} pub {k[1]:8} e2e {m('rate'):8.0f}/s cpu {m('cpu'):5.1f} us/msg "
          f"(sub {m('sub'):5.1f} pub {m('pubcpu'):5.1f}) pub-rate {m('pubrate'):8.0f}/s "
          f"ok {all(x['ok'] for x in v)} order {[x['order'] for x in v]} {v[-1]['note']}")
