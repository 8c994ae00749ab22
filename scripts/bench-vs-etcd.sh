#!/usr/bin/env bash
# Side-by-side comparison of ferrocd and real etcd (Debian's etcd-server) on this machine:
# same flags, data dirs on the same disk, the same client (ferrocd-bench), one system at a time,
# alternating (the order flips every round so drift in the machine's load hits both), repeated.
#
#   scripts/bench-vs-etcd.sh                 # 3-member clusters, 3 rounds
#   scripts/bench-vs-etcd.sh --quick         # 1 round, small totals (under 5 minutes)
#   scripts/bench-vs-etcd.sh --members 1     # single members
#   scripts/bench-vs-etcd.sh --rounds 5 --out results.jsonl
#
# Environment: FERROCD_BIN / BENCH_BIN use prebuilt binaries instead of `cargo build --release`
# (which honours CARGO_TARGET_DIR); BENCH_WORKDIR puts the data dirs elsewhere (default: a temp
# dir under the cargo target dir).
#
# Prints one table: workload, metric, etcd, ferrocd, ratio (ratio > 1: ferrocd better; for
# throughput it is ferrocd/etcd, for latency, memory and size etcd/ferrocd), then the errors
# per system and workload, and the disk's fsync floor. Never judges the numbers; it exits
# non-zero only when a system cannot be started or a tool is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

MEMBERS=3
ROUNDS=${ROUNDS:-3}
QUICK=0
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --members) MEMBERS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--members N] [--quick] [--rounds R] [--out FILE]" >&2; exit 2 ;;
  esac
done

if [ "$QUICK" = 1 ]; then
  ROUNDS=1
  ONE=300          # requests of the 1-client workloads
  MANY=3000        # requests of the 1000-client workloads
  WATCHERS=1000 WATCH_STREAMS=10 WATCH_PUTS=20 WATCH_RATE=20
  KEEPALIVES=2000
  LEASE_PAIRS=1000
  FSYNCS=300
else
  ONE=2000
  MANY=20000
  WATCHERS=10000 WATCH_STREAMS=100 WATCH_PUTS=100 WATCH_RATE=20
  KEEPALIVES=20000
  LEASE_PAIRS=10000
  FSYNCS=1000
fi
T0=$(date +%s)
log() { echo "[$(( $(date +%s) - T0 ))s] $*" >&2; }

export ETCDCTL_API=3
if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1; then
  log "installing etcd-server and etcd-client (Debian) ..."
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client >/dev/null
fi
TARGET_DIR=${CARGO_TARGET_DIR:-target}
if [ -z "${FERROCD_BIN:-}" ] || [ -z "${BENCH_BIN:-}" ]; then
  log "cargo build --release --bins"
  cargo build --release --bins -q
fi
FERROCD=$(realpath "${FERROCD_BIN:-$TARGET_DIR/release/ferrocd}")
BENCH=$(realpath "${BENCH_BIN:-$TARGET_DIR/release/ferrocd-bench}")
mkdir -p "${BENCH_WORKDIR:-$TARGET_DIR}"
WORK=$(mktemp -d -p "${BENCH_WORKDIR:-$TARGET_DIR}" bench-vs-etcd.XXXXXX)
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start SYSTEM: launches MEMBERS processes with identical flags; sets PIDS and EPS.
start() {
  local sys=$1 i ic="" cps=() pps=()
  for i in $(seq 1 "$MEMBERS"); do
    cps+=("$(free_port)"); pps+=("$(free_port)")
    ic="$ic,n$i=http://127.0.0.1:${pps[$((i-1))]}"
  done
  ic=${ic#,}
  EPS=""
  PIDS=()
  for i in $(seq 1 "$MEMBERS"); do
    local cp=${cps[$((i-1))]} pp=${pps[$((i-1))]} bin
    local args=(--name "n$i" --data-dir "$WORK/$sys-data-$i"
      --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp"
      --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp"
      --initial-cluster "$ic" --initial-cluster-state new --initial-cluster-token "bench-$sys"
      --log-level error)
    if [ "$sys" = etcd ]; then bin=etcd; else bin=$FERROCD; fi
    "$bin" "${args[@]}" >"$WORK/$sys-$i.log" 2>&1 &
    PIDS+=($!)
    EPS="$EPS,127.0.0.1:$cp"
  done
  EPS=${EPS#,}
  for _ in $(seq 1 300); do
    if etcdctl --endpoints="$EPS" endpoint health >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "$sys did not become healthy; its logs:" >&2
  tail -n 20 "$WORK/$sys"-*.log >&2
  exit 1
}

# stop SYSTEM ROUND: records RSS (sum over members), db and data dir sizes, then stops it.
stop() {
  local sys=$1 round=$2 rss=0 db=0 dir=0 p i
  for p in "${PIDS[@]}"; do rss=$((rss + $(awk '/VmRSS/ {print $2*1024}' "/proc/$p/status"))); done
  for i in $(seq 1 "$MEMBERS"); do
    local d="$WORK/$sys-data-$i"
    # etcd keeps its bbolt file at member/snap/db, ferrocd its LSM-tree at member/db/.
    if [ "$sys" = etcd ]; then db=$((db + $(du -sb "$d/member/snap/db" | cut -f1)));
    else db=$((db + $(du -sb "$d/member/db" | cut -f1))); fi
    dir=$((dir + $(du -sk "$d" | cut -f1) * 1024))
  done
  printf '{"system":"%s","round":%d,"workload":"sizes","rss_bytes":%d,"db_bytes":%d,"data_dir_bytes":%d}\n' \
    "$sys" "$round" "$rss" "$db" "$dir" >>"$RESULTS"
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
  rm -rf "$WORK/$sys"-data-*
}

# bench SYSTEM ROUND WORKLOAD ferrocd-bench-args...: runs one workload and records its report
# (or its failure, without stopping the comparison).
bench() {
  local sys=$1 round=$2 wl=$3 out
  shift 3
  log "$sys round $round: $wl"
  if out=$("$BENCH" --endpoints "$EPS" --json "$@" 2>"$WORK/bench.err"); then
    python3 - "$sys" "$round" "$wl" "$out" >>"$RESULTS" <<'PY'
import json, sys
system, rnd, wl, out = sys.argv[1:5]
d = json.loads(out.splitlines()[-1])
print(json.dumps({"system": system, "round": int(rnd), "workload": wl,
    "p50": d["percentiles"]["p50"], "p99": d["percentiles"]["p99"],
    "rps": d["requests_per_sec"], "requests": d["requests"], "errors": d["errors"]}))
PY
  else
    local msg
    msg=$(tail -n 1 "$WORK/bench.err" | tr -d '"\\')
    printf '{"system":"%s","round":%d,"workload":"%s","failed":"%s"}\n' "$sys" "$round" "$wl" "$msg" >>"$RESULTS"
  fi
}

workloads() { # SYSTEM ROUND
  local s=$1 r=$2 value
  value=$(head -c 256 /dev/zero | tr '\0' v)
  etcdctl --endpoints="$EPS" put bench-key "$value" >/dev/null
  bench "$s" "$r" put-seq-1client --target-leader put --total "$ONE" \
    --key-size 8 --val-size 256 --sequential-keys --key-space-size 100000
  bench "$s" "$r" put-1000clients --conns 100 --clients 1000 put --total "$MANY" \
    --key-size 8 --val-size 256 --key-space-size 100000
  bench "$s" "$r" range-l-1client --target-leader range bench-key --consistency l --total "$ONE"
  bench "$s" "$r" range-l-1000clients --conns 100 --clients 1000 range bench-key \
    --consistency l --total "$MANY"
  bench "$s" "$r" range-s-1client --target-leader range bench-key --consistency s --total "$ONE"
  bench "$s" "$r" range-s-1000clients --conns 100 --clients 1000 range bench-key \
    --consistency s --total "$MANY"
  bench "$s" "$r" watch-latency --target-leader --conns 10 watch-latency \
    --watchers "$WATCHERS" --streams "$WATCH_STREAMS" --puts "$WATCH_PUTS" --rate "$WATCH_RATE"
  bench "$s" "$r" lease-keepalive-100clients --conns 10 --clients 100 lease-keepalive \
    --total "$KEEPALIVES"
  bench "$s" "$r" lease-grant-revoke-100clients --conns 10 --clients 100 lease-grant-revoke \
    --total "$LEASE_PAIRS"
}

log "$MEMBERS member(s), $ROUNDS round(s), work dir $WORK"
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="etcd ferrocd"; else order="ferrocd etcd"; fi
  for sys in $order; do
    start "$sys"
    workloads "$sys" "$round"
    stop "$sys" "$round"
  done
done
log "fsync floor"
FSYNC=$("$BENCH" --json fsync --dir "$WORK" --count "$FSYNCS")
[ -n "$OUT" ] && cp "$RESULTS" "$OUT"

python3 - "$RESULTS" "$FSYNC" "$ROUNDS" "$MEMBERS" "$(etcd --version | head -n 1)" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1])]
fsync = json.loads(sys.argv[2])
rounds, members, etcd_version = sys.argv[3], sys.argv[4], sys.argv[5]

def values(system, wl, field):
    return [r[field] for r in rows
            if r["system"] == system and r["workload"] == wl and field in r and not r.get("errors")]

def med(system, wl, field):
    v = values(system, wl, field)
    return statistics.median(v) if v else None

print(f"\n{members} member(s), {rounds} alternating round(s), median over rounds; {etcd_version}")
print("ratio > 1: ferrocd better (throughput ferrocd/etcd; latency, memory, size etcd/ferrocd)\n")
print(f"{'workload':28} {'metric':10} {'etcd':>11} {'ferrocd':>11} {'ratio':>7}")
MS, RPS, MIB = ("ms", 1e3, False), ("req/s", 1, True), ("MiB", 1 / 2**20, False)
table = [
    ("put-seq-1client", [("p50", MS), ("p99", MS), ("rps", RPS)]),
    ("put-1000clients", [("rps", RPS), ("p50", MS), ("p99", MS)]),
    ("range-l-1client", [("rps", RPS), ("p50", MS)]),
    ("range-l-1000clients", [("rps", RPS), ("p99", MS)]),
    ("range-s-1client", [("rps", RPS), ("p50", MS)]),
    ("range-s-1000clients", [("rps", RPS), ("p99", MS)]),
    ("watch-latency", [("p50", MS), ("p99", MS)]),
    ("lease-keepalive-100clients", [("rps", RPS), ("p50", MS)]),
    ("lease-grant-revoke-100clients", [("rps", RPS), ("p50", MS)]),
    ("sizes", [("rss_bytes", MIB), ("db_bytes", MIB), ("data_dir_bytes", MIB)]),
]
names = {"rss_bytes": "RSS", "db_bytes": "db", "data_dir_bytes": "data dir*", "rps": "req/s"}
for wl, metrics in table:
    label = "after run (sum)" if wl == "sizes" else wl
    for field, (unit, scale, higher_better) in metrics:
        e, f = med("etcd", wl, field), med("ferrocd", wl, field)
        metric = names.get(field, field) + ("" if field == "rps" else " " + unit)
        fmt = lambda x: f"{x * scale:11.3f}" if x is not None else f"{'n/a':>11}"
        if e is None or f is None or e == 0 or f == 0:
            ratio = "n/a"
        else:
            ratio = f"{(f / e) if higher_better else (e / f):.2f}"
        print(f"{label:28} {metric:10} {fmt(e)} {fmt(f)} {ratio:>7}")
        label = ""

problems = []
for r in rows:
    if r.get("failed"):
        problems.append(f"{r['system']} {r['workload']} (round {r['round']}): benchmark failed: {r['failed']}")
    for msg, n in (r.get("errors") or {}).items():
        problems.append(f"{r['system']} {r['workload']} (round {r['round']}): {n} errors: {msg}")
print("\nerrors: " + ("none" if not problems else "(workloads with errors are n/a above)"))
for p in problems:
    print("  " + p)
print("\n* data dir: blocks allocated under --data-dir (etcd preallocates 64 MiB WAL segments);"
      " db: etcd's member/snap/db file, ferrocd's member/db/ tree (apparent size)")
p = fsync["percentiles"]
print(f"\nfsync floor (2300 B write + fdatasync, same disk): p50 {p['p50']*1e3:.3f} ms, "
      f"p99 {p['p99']*1e3:.3f} ms")
PY
log "done"
