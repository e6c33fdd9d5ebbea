#!/bin/bash
# EXPERIMENT: the subscriber cost on one queued batch (subscriber stopped while the C
# publisher writes COUNT files), user and sys seconds from perf stat.
#   bash bench/floor/experiments/dirbus_uring_queued.sh /tmp/dirbus_uring MODE COUNT
# queued-batch subscriber cost: $1 = binary, $2 = mode, $3 = count
d=$(mktemp -d -p /dev/shm)
perf stat -e task-clock,dTLB-load-misses,iTLB-load-misses,page-faults -o /tmp/u6/perf.$2 $1 --mode $2 --role sub --path $d --count $3 --warmup 0 --idle-ms 2000 > /tmp/u6/s.$2 2>/dev/null & pp=$!
while ! grep -q ready /tmp/u6/s.$2 2>/dev/null; do sleep 0.05; done
sp=$(pgrep -P $pp); kill -STOP $sp
$1 --mode plain --role pub --path $d --count $3 --size 1024 >/dev/null
kill -CONT $sp; wait $pp
echo "$2 $(grep -o '"distinct":[0-9]*' /tmp/u6/s.$2) $(grep -E 'seconds (user|sys)|TLB|faults' /tmp/u6/perf.$2 | awk '{print $1, $2}' | tr '\n' ' ')"
rm -rf $d
