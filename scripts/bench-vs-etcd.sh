#!/usr/bin/env bash
# Side-by-side single-member comparison of ferrocd and etcd (Debian's etcd-server), same machine,
# same disk, same client (ferrocd-bench), alternating systems over several rounds.
#
#   scripts/bench-vs-etcd.sh            # 3 rounds x 2000 sequential puts + 2000 gets
#   ROUNDS=5 TOTAL=5000 scripts/bench-vs-etcd.sh
#
# Prints per-workload p50/p99 for each system (median over rounds) and the ratio etcd/ferrocd
# (> 1 means ferrocd is faster), plus the disk's fsync floor and RSS after the run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
TOTAL=${TOTAL:-2000}
MEMBERS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --members) MEMBERS=$2; shift 2 ;;
    --quick) ROUNDS=1; TOTAL=500; shift ;;
    *) echo "usage: $0 [--members N] [--quick]" >&2; exit 2 ;;
  esac
done

if ! command -v etcd >/dev/null 2>&1; then
  echo "installing etcd-server (Debian) ..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
fi
cargo build --release --bins -q
BENCH=target/release/ferrocd-bench
FERROCD=target/release/ferrocd
WORK=$(mktemp -d -p "$PWD/target" bench.XXXXXX)
RESULTS="$WORK/results.jsonl"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() { # system -> sets PIDS, EPS (all client endpoints), LEADER, FOLLOWER
  local sys=$1 i ic="" cps=() pps=()
  for i in $(seq 1 "$MEMBERS"); do cps+=("$(free_port)"); pps+=("$(free_port)"); ic="$ic,n$i=http://127.0.0.1:${pps[$((i-1))]}"; done
  ic=${ic#,}
  EPS=""
  PIDS=()
  for i in $(seq 1 "$MEMBERS"); do
    local cp=${cps[$((i-1))]} pp=${pps[$((i-1))]}
    local args=(--name "n$i" --data-dir "$WORK/$sys-data-$i"
      --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp"
      --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp"
      --initial-cluster "$ic" --log-level error)
    if [ "$sys" = etcd ]; then
      etcd "${args[@]}" >"$WORK/$sys-$i.log" 2>&1 &
    else
      "$FERROCD" "${args[@]}" >"$WORK/$sys-$i.log" 2>&1 &
    fi
    PIDS+=($!)
    EPS="$EPS,127.0.0.1:$cp"
  done
  EPS=${EPS#,}
  for _ in $(seq 1 200); do
    if ETCDCTL_API=3 etcdctl --endpoints="$EPS" endpoint health >/dev/null 2>&1; then break; fi
    sleep 0.1
  done
  ETCDCTL_API=3 etcdctl --endpoints="$EPS" endpoint health >/dev/null 2>&1 || { echo "$sys did not start" >&2; cat "$WORK/$sys-1.log" >&2; exit 1; }
  LEADER=$(ETCDCTL_API=3 etcdctl --endpoints="$EPS" endpoint status | awk -F', ' '$5=="true" {print $1}')
  FOLLOWER=$(ETCDCTL_API=3 etcdctl --endpoints="$EPS" endpoint status | awk -F', ' '$5=="false" {print $1; exit}')
  [ -n "$FOLLOWER" ] || FOLLOWER=$LEADER
}

stop() {
  local sys=$1 round=$2 rss=0 p
  for p in "${PIDS[@]}"; do rss=$((rss + $(awk '/VmRSS/ {print $2*1024}' "/proc/$p/status"))); done
  echo "{\"system\":\"$sys\",\"round\":$round,\"workload\":\"rss_bytes\",\"value\":$rss}" >>"$RESULTS"
  for p in "${PIDS[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
  PIDS=()
  rm -rf "$WORK"/"$sys"-data-*
}

record() { # system round workload json
  python3 -c 'import json,sys; d=json.loads(sys.argv[4]); print(json.dumps({"system":sys.argv[1],"round":int(sys.argv[2]),"workload":sys.argv[3],"p50":d["percentiles"]["p50"],"p99":d["percentiles"]["p99"],"rps":d["requests_per_sec"],"errors":sum(d["errors"].values())}))' "$@" >>"$RESULTS"
}

for round in $(seq 1 "$ROUNDS"); do
  for sys in etcd ferrocd; do
    start "$sys"
    record "$sys" "$round" "put-seq-1client" "$("$BENCH" --endpoints "$LEADER" --json put --total "$TOTAL" --key-size 8 --val-size 256 --sequential-keys --key-space-size 100000)"
    record "$sys" "$round" "get-linearizable-leader" "$("$BENCH" --endpoints "$LEADER" --json range 00000000 --total "$TOTAL" --consistency l)"
    if [ "$MEMBERS" -gt 1 ]; then
      record "$sys" "$round" "get-linearizable-follower" "$("$BENCH" --endpoints "$FOLLOWER" --json range 00000000 --total "$TOTAL" --consistency l)"
    fi
    record "$sys" "$round" "get-serializable" "$("$BENCH" --endpoints "$FOLLOWER" --json range 00000000 --total "$TOTAL" --consistency s)"
    record "$sys" "$round" "put-64clients" "$("$BENCH" --endpoints "$EPS" --conns 8 --clients 64 --json put --total $((TOTAL * 5)) --key-size 8 --val-size 256 --key-space-size 100000)"
    stop "$sys" "$round"
  done
done
FSYNC=$("$BENCH" --json fsync --dir "$WORK" --count 500)

python3 - "$RESULTS" "$FSYNC" "$ROUNDS" "$MEMBERS" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1])]
fsync = json.loads(sys.argv[2])
def med(sys_, wl, field):
    v = [r[field] for r in rows if r["system"] == sys_ and r["workload"] == wl]
    return statistics.median(v) if v else float("nan")
print(f"\n{sys.argv[4]} member(s), {sys.argv[3]} alternating rounds, median of rounds; ratio = etcd / ferrocd (>1: ferrocd better)\n")
print(f"{'workload':28} {'metric':8} {'etcd':>12} {'ferrocd':>12} {'ratio':>7}")
for wl in ["put-seq-1client", "get-linearizable-leader", "get-linearizable-follower", "get-serializable", "put-64clients"]:
    if not any(r["workload"] == wl for r in rows):
        continue
    for field, unit, scale in [("p50", "ms", 1e3), ("p99", "ms", 1e3), ("rps", "req/s", 1)]:
        e, f = med("etcd", wl, field), med("ferrocd", wl, field)
        ratio = (f / e) if field == "rps" else (e / f)
        print(f"{wl:28} {field+' '+unit:8} {e*scale:12.3f} {f*scale:12.3f} {ratio:7.2f}")
e, f = med("etcd", "rss_bytes", "value"), med("ferrocd", "rss_bytes", "value")
print(f"{'rss after run (all members)':28} {'MiB':8} {e/2**20:12.1f} {f/2**20:12.1f} {e/f:7.2f}")
errs = sum(r.get("errors", 0) for r in rows)
print(f"\nfsync floor (2300 B write + fdatasync): p50 {fsync['percentiles']['p50']*1e3:.3f} ms, p99 {fsync['percentiles']['p99']*1e3:.3f} ms; request errors: {errs}")
PY
