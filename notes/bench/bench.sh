#!/bin/bash
# median timings of compose commands against $DOCKER_HOST; usage: bench.sh
cd "$(dirname "$0")"
t() { local s=$(date +%s%N); "$@" >/dev/null 2>&1 || echo "FAILED: $*" >&2; echo $(( ($(date +%s%N)-s)/1000000 )); }
med() { sort -n | awk '{a[NR]=$1} END{print "median=" a[int((NR+1)/2)] "ms min=" a[1] "ms max=" a[NR] "ms n=" NR}'; }
DC="docker compose -p benchp"
$DC up -d --wait; $DC down -t 0            # warm-up
echo -n "up -d --wait from nothing (then down -t 0): "
for i in 1 2 3 4 5; do t $DC up -d --wait; $DC down -t 0 >/dev/null 2>&1; done | med
$DC up -d --wait >/dev/null 2>&1
echo -n "up -d --wait when already up (no-op): "; for i in 1 2 3 4 5; do t $DC up -d --wait; done | med
echo -n "ps --format json: "; for i in $(seq 10); do t $DC ps --format json; done | med
echo -n "ps -a --format json: "; for i in $(seq 10); do t $DC ps -a --format json; done | med
echo -n "docker ps -a --filter label (whole engine): "; for i in $(seq 10); do t docker ps -a --filter label=dev.grove.token --format '{{json .}}'; done | med
echo -n "docker compose version: "; for i in $(seq 10); do t docker compose version; done | med
echo -n "docker info --format: "; for i in $(seq 10); do t docker info --format '{{.ServerVersion}}'; done | med
echo -n "down -t 0: "; for i in 1 2 3; do $DC up -d --wait >/dev/null 2>&1; t $DC down -t 0; done | med
echo -n "down (default 10s stop timeout; httpd as PID 1 ignores SIGTERM?): "; $DC up -d --wait >/dev/null 2>&1; t $DC down
