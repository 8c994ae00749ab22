#!/usr/bin/env bash
# Space and defragmentation, ferrocd next to real etcd (Debian's etcd-server) on this machine,
# single members, the same client (ferrocd-bench), one system at a time, alternating:
#   1. write PUTS puts of 1 KiB values over KEYS keys (history piles up);
#   2. compact to the latest revision (physical) and record db size and the longest
#      compaction pause (etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds);
#   3. start a paced writer (100 clients, 500 puts/s for 4 s), defragment 1 s into it, and
#      record the defrag's duration, the writer's latencies (a stop-the-world defrag shows up
#      as the writer's p99 and slowest write), and 3 s later the db size, the whole data dir's
#      allocated size (du) and RSS.
# Every put writes fresh random bytes (--unique-values): repeated values would flatter an
# engine that compresses.
#
#   scripts/bench-defrag-vs-etcd.sh [--rounds N] [--puts N] [--keys N]
#
# FERROCD_BIN / BENCH_BIN use prebuilt binaries instead of `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=2
PUTS=200000
KEYS=100000
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --puts) PUTS=$2; shift 2 ;;
    --keys) KEYS=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--rounds N] [--puts N]" >&2; exit 2 ;;
  esac
done

START=$(date +%s)
log() { echo "[$(( $(date +%s) - START ))s] $*" >&2; }

if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1; then
  log "installing etcd-server and etcd-client (Debian)"
  apt-get install -y -qq etcd-server etcd-client >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq etcd-server etcd-client >/dev/null; }
fi
TARGET_DIR=${CARGO_TARGET_DIR:-target}
if [ -z "${FERROCD_BIN:-}" ] || [ -z "${BENCH_BIN:-}" ]; then
  log "cargo build --release --bins"
  cargo build --release --bins -q
fi
FERROCD=$(realpath "${FERROCD_BIN:-$TARGET_DIR/release/ferrocd}")
BENCH=$(realpath "${BENCH_BIN:-$TARGET_DIR/release/ferrocd-bench}")
WORK=$(mktemp -d -p "$TARGET_DIR" bench-defrag.XXXXXX)
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
PID=""
cleanup() {
  [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

db_size() { etcdctl --endpoints="$EP" endpoint status -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["dbSize"])'; }
rss() { awk '/VmRSS/ {print $2*1024}' "/proc/$PID/status"; }
record() { printf '{"system":"%s","round":%d,"metric":"%s","value":%s}\n' "$1" "$2" "$3" "$4" >>"$RESULTS"; }

run() {
  local sys=$1 round=$2 cp pp bin data="$WORK/$1-data"
  cp=$(free_port); pp=$(free_port); EP="127.0.0.1:$cp"
  if [ "$sys" = etcd ]; then bin=etcd; else bin=$FERROCD; fi
  "$bin" --name n1 --data-dir "$data" \
    --listen-client-urls "http://$EP" --advertise-client-urls "http://$EP" \
    --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
    --initial-cluster "n1=http://127.0.0.1:$pp" --quota-backend-bytes 8589934592 \
    --log-level error >"$WORK/$sys.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 300); do
    etcdctl --endpoints="$EP" endpoint health >/dev/null 2>&1 && break
    sleep 0.1
  done
  log "$sys round $round: $PUTS puts"
  "$BENCH" --endpoints "$EP" --conns 10 --clients 100 put --total "$PUTS" \
    --key-space-size "$KEYS" --val-size 1024 --unique-values --json >/dev/null
  record "$sys" "$round" db_written "$(db_size)"
  local rev
  rev=$(etcdctl --endpoints="$EP" get x -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
  etcdctl --endpoints="$EP" compact "$rev" --physical >/dev/null
  sleep 1
  record "$sys" "$round" db_compacted "$(db_size)"
  record "$sys" "$round" rss_compacted "$(rss)"
  record "$sys" "$round" compaction_pause_max "$(python3 - "http://$EP/metrics" <<'PY'
import sys, urllib.request
# The upper bound of the highest non-empty bucket of the pause histogram (ms).
name = "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds_bucket"
prev, top = 0, 0.0
for line in urllib.request.urlopen(sys.argv[1]).read().decode().splitlines():
    if line.startswith(name):
        le = line.split('le="')[1].split('"')[0]
        n = float(line.rsplit(" ", 1)[1])
        if n > prev and le != "+Inf":
            top = float(le)
        elif n > prev:
            top = float("inf")
        prev = n
print(top)
PY
)"
  log "$sys round $round: defrag under a paced writer"
  "$BENCH" --endpoints "$EP" --conns 10 --clients 100 put --total 2000 --rate 500 \
    --key-space-size "$KEYS" --val-size 1024 --unique-values --json >"$WORK/writer.json" &
  local writer=$! t0 t1
  sleep 1
  t0=$(date +%s.%N)
  etcdctl --endpoints="$EP" --command-timeout=120s defrag >/dev/null
  t1=$(date +%s.%N)
  wait "$writer"
  record "$sys" "$round" defrag_secs "$(python3 -c "print($t1 - $t0)")"
  sleep 3 # let the old database go (ferrocd frees it once its last reader is done)
  record "$sys" "$round" db_defragged "$(db_size)"
  # Allocated bytes of everything under the data dir (db, WAL, snapshots), as du sees them.
  record "$sys" "$round" dir_defragged "$(du -s --block-size=1 "$data" | cut -f1)"
  record "$sys" "$round" rss "$(rss)"
  python3 - "$sys" "$round" "$WORK/writer.json" >>"$RESULTS" <<'PY'
import json, sys
sys_, rnd, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
r = json.load(open(path))
for metric, v in [("write_p99", r["percentiles"]["p99"]), ("write_max", r["slowest_secs"]),
                  ("write_errors", r["error_count"])]:
    print(json.dumps({"system": sys_, "round": rnd, "metric": metric, "value": v}))
PY
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
  rm -rf "$data"
}

for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="etcd ferrocd"; else order="ferrocd etcd"; fi
  for sys in $order; do run "$sys" "$round"; done
done

python3 - "$RESULTS" "$PUTS" "$ROUNDS" "$(etcd --version 2>/dev/null | head -1)" "$KEYS" <<'PY'
import json, statistics, sys
path, puts, rounds, version, keys = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
vals = {}
for line in open(path):
    r = json.loads(line)
    vals.setdefault((r["system"], r["metric"]), []).append(r["value"])
med = lambda s, m: statistics.median(vals[(s, m)]) if (s, m) in vals else None
print(f"\nsingle member, {puts} puts of 1 KiB over {keys} keys, {rounds} alternating round(s), median; {version}")
print("ratio > 1: ferrocd better (etcd/ferrocd)\n")
print(f"{'metric':34} {'etcd':>10} {'ferrocd':>10} {'ratio':>7}")
rows = [("db after writes (MiB)", "db_written", 2**-20), ("db after compaction (MiB)", "db_compacted", 2**-20),
        ("RSS after compaction (MiB)", "rss_compacted", 2**-20),
        ("longest compaction pause (ms, bucket)", "compaction_pause_max", 1),
        ("db after defrag (MiB)", "db_defragged", 2**-20),
        ("data dir after defrag, du (MiB)", "dir_defragged", 2**-20), ("RSS after defrag (MiB)", "rss", 2**-20),
        ("defrag duration (s)", "defrag_secs", 1), ("write p99 during defrag (ms)", "write_p99", 1e3),
        ("slowest write during defrag (ms)", "write_max", 1e3)]
for name, m, scale in rows:
    e, f = med("etcd", m), med("ferrocd", m)
    if e is None or f is None:
        print(f"{name:34} {'n/a':>10} {'n/a':>10}")
        continue
    ratio = f"{e / f:7.2f}" if f else "    inf"
    print(f"{name:34} {e * scale:10.2f} {f * scale:10.2f} {ratio}")
errs = {s: sum(vals.get((s, "write_errors"), [0])) for s in ("etcd", "ferrocd")}
print(f"\nwrite errors during defrag: etcd {errs['etcd']}, ferrocd {errs['ferrocd']}")
PY
log "done"
