#!/usr/bin/env bash
# Measurements for notes/issue38-docs.md: tiny study on one node vs a two-node loopback cluster, smoke on the cluster with a worker kill and a driver stop.
set -u
R=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p /tmp/h38m && cd /tmp/h38m
PY=$R/.venv/bin/python; RAY=$R/.venv/bin/ray
export OMP_NUM_THREADS=1 ADCERT_DATA=/work/shared/data RAY_AUTH_MODE=token RAY_AUTH_TOKEN=$(head -c 16 /dev/urandom | xxd -p)
echo "load: $(cat /proc/loadavg)"
echo "== 1. tiny, one local node, 1 CPU"
s=$(date +%s.%N); $PY $R/examples/study.py --preset tiny --out-dir /tmp/h38m/tiny-one --processes 1 > tiny-one.log 2>&1; echo "rc $? wall $(echo "$(date +%s.%N) - $s" | bc) s"
grep -E "\] " tiny-one.log | sed 's/^.\{24\}//'
echo "== 2. two-node loopback cluster, 1 CPU each"
PORT=6391
$RAY start --head --port=$PORT --num-cpus=1 --node-ip-address=127.0.0.1 --include-dashboard=false --disable-usage-stats --block > head.log 2>&1 & HEAD=$!
for i in $(seq 60); do $RAY status --address=127.0.0.1:$PORT >/dev/null 2>&1 && break; sleep 1; done
$RAY start --address=127.0.0.1:$PORT --num-cpus=1 --node-ip-address=127.0.0.1 --disable-usage-stats --block > node2.log 2>&1 & NODE2=$!
for i in $(seq 60); do [ "$($RAY status --address=127.0.0.1:$PORT 2>/dev/null | grep -c node_)" -ge 2 ] && break; sleep 1; done
$RAY status --address=127.0.0.1:$PORT | sed -n 1,12p
echo "load: $(cat /proc/loadavg)"
s=$(date +%s.%N); $PY $R/examples/study.py --preset tiny --out-dir /tmp/h38m/tiny-two --ray-address 127.0.0.1:$PORT > tiny-two.log 2>&1; echo "rc $? wall $(echo "$(date +%s.%N) - $s" | bc) s"
grep -E "\] " tiny-two.log | sed 's/^.\{24\}//'
echo "== 3. smoke on the cluster: a worker SIGKILLed mid-training, then the driver stopped (SIGTERM) and started again"
s=$(date +%s.%N)
$PY $R/examples/study.py --preset smoke --out-dir /tmp/h38m/smoke-two --ray-address 127.0.0.1:$PORT > smoke-two-1.log 2>&1 & DRV=$!
# kill the worker training a grid point after its first epoch
T=/tmp/h38m/smoke-two/seed0/grid/mtl-ibp-alpha0.1
for i in $(seq 3000); do [ -s $T/metrics.jsonl ] && break; sleep 0.1; done
for p in $(pgrep -f "^ray::adcert-run $T"); do echo "SIGKILL worker $p ($(tr '\0' ' ' < /proc/$p/cmdline | cut -c1-90)) after $(wc -l < $T/metrics.jsonl) epoch(s)"; kill -9 $p; done
# stop the driver once the distilled wave has a finished run
for i in $(seq 3000); do ls /tmp/h38m/smoke-two/seed0/grid/cc-dist-alpha0.5/summary.json >/dev/null 2>&1 && break; sleep 0.2; done
kill -TERM $DRV; wait $DRV; echo "driver stopped: rc $?"; tail -1 smoke-two-1.log | cut -c1-200
echo "finished runs at the stop: $(find /tmp/h38m/smoke-two -name summary.json -not -path '*eval-*' | wc -l)"
$PY $R/examples/study.py --preset smoke --out-dir /tmp/h38m/smoke-two --ray-address 127.0.0.1:$PORT > smoke-two-2.log 2>&1; echo "restarted: rc $? total wall $(echo "$(date +%s.%N) - $s" | bc) s"
grep -E "\] " smoke-two-1.log smoke-two-2.log | sed 's/^\(smoke-two-.\.log:\).\{24\}/\1 /'
$PY - <<'PY'
import json
r = json.load(open("/tmp/h38m/smoke-two/results.json"))
print("runs_trained_now (second call):", r["runs_trained_now"], " wall_time_s:", r["wall_time_s"])
for run, n in sorted(r["nodes"].items()): print(f"  {run:45s} trained on {n['trained_on']}")
import collections; print(collections.Counter(n["trained_on"] for n in r["nodes"].values()))
PY
kill -TERM $NODE2 $HEAD; wait
echo "load: $(cat /proc/loadavg)"
