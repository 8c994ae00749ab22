#!/usr/bin/env bash
# Side-by-side watch comparison of ferrocd and etcd (Debian's etcd-server), single member, same
# machine, same client (ferrocd-bench watch-latency), alternating systems over several rounds.
# The fan-out specialist: 10,000 watchers and the server's RSS per idle watcher. The general
# comparison (scripts/bench-vs-etcd.sh) has a smaller watch-latency row of its own.
#
#   scripts/bench-watch-vs-etcd.sh             # 3 rounds, 10,000 watchers on 100 streams, 100 puts at 10/s
#   ROUNDS=5 WATCHERS=20000 RATE=20 scripts/bench-watch-vs-etcd.sh
#
# Prints, per system (median over rounds), the delivery latency from a put's acknowledgement to
# each watcher's event (p50/p99), the same from the put being sent, the put latency itself under
# that fan-out, and the server's RSS per 10,000 idle watchers, with the ratio etcd/ferrocd
# (> 1 means ferrocd is better).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
WATCHERS=${WATCHERS:-10000}
STREAMS=${STREAMS:-100}
CONNS=${CONNS:-10}
PUTS=${PUTS:-100}
RATE=${RATE:-10}

if ! command -v etcd >/dev/null 2>&1; then
  echo "installing etcd-server (Debian) ..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
fi
TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release --bins -q
BENCH=$TARGET_DIR/release/ferrocd-bench
FERROCD=$TARGET_DIR/release/ferrocd
WORK=$(mktemp -d -p "$TARGET_DIR" bench-watch.XXXXXX)
RESULTS="$WORK/results.jsonl"
PID=""
cleanup() { [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() { # system -> sets PID, EP
  local sys=$1 cp pp
  cp=$(free_port); pp=$(free_port)
  EP="127.0.0.1:$cp"
  local args=(--name b --data-dir "$WORK/$sys-data"
    --listen-client-urls "http://$EP" --advertise-client-urls "http://$EP"
    --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp"
    --initial-cluster "b=http://127.0.0.1:$pp")
  if [ "$sys" = etcd ]; then
    etcd "${args[@]}" --log-level error >"$WORK/$sys.log" 2>&1 &
  else
    "$FERROCD" "${args[@]}" --log-level error >"$WORK/$sys.log" 2>&1 &
  fi
  PID=$!
  for _ in $(seq 1 100); do
    if ETCDCTL_API=3 etcdctl --endpoints="$EP" endpoint health >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "$sys did not start:" >&2; cat "$WORK/$sys.log" >&2; exit 1
}

stop() {
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
  rm -rf "$WORK/$1-data"
}

for round in $(seq 1 "$ROUNDS"); do
  for sys in etcd ferrocd; do
    start "$sys"
    out=$("$BENCH" --endpoints "$EP" --conns "$CONNS" --json watch-latency \
      --watchers "$WATCHERS" --streams "$STREAMS" --puts "$PUTS" --rate "$RATE" --server-pid "$PID")
    python3 -c 'import json,sys; d=json.loads(sys.argv[3]); d["system"]=sys.argv[1]; d["round"]=int(sys.argv[2]); print(json.dumps(d))' \
      "$sys" "$round" "$out" >>"$RESULTS"
    stop "$sys"
  done
done

python3 - "$RESULTS" "$ROUNDS" "$WATCHERS" "$STREAMS" "$PUTS" "$RATE" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1])]
rounds, watchers, streams, puts, rate = sys.argv[2:7]
def med(system, get):
    v = [get(r) for r in rows if r["system"] == system]
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else float("nan")
print(f"\nsingle member, {watchers} watchers on one key range over {streams} streams, {puts} puts at {rate}/s;")
print(f"{rounds} alternating rounds, median of rounds; ratio = etcd / ferrocd (>1: ferrocd better)\n")
print(f"{'metric':38} {'etcd':>10} {'ferrocd':>10} {'ratio':>7}")
for name, get, unit in [
    ("put ack -> event p50", lambda r: r["latency_ms"]["p50"], "ms"),
    ("put ack -> event p99", lambda r: r["latency_ms"]["p99"], "ms"),
    ("put sent -> event p50", lambda r: r["send_to_event_ms"]["p50"], "ms"),
    ("put sent -> event p99", lambda r: r["send_to_event_ms"]["p99"], "ms"),
    ("put latency p50 (during fan-out)", lambda r: r["put_latency_ms"]["p50"], "ms"),
    ("put latency p99 (during fan-out)", lambda r: r["put_latency_ms"]["p99"], "ms"),
    ("RSS per 10,000 idle watchers", lambda r: (r["rss_per_10k_idle_watchers_bytes"] or 0) / 2**20, "MiB"),
]:
    e, f = med("etcd", get), med("ferrocd", get)
    ratio = e / f if f else float("nan")
    print(f"{name + ' (' + unit + ')':38} {e:10.3f} {f:10.3f} {ratio:7.2f}")
lost = sum(r["events_expected"] - r["events_received"] for r in rows)
early = {s: med(s, lambda r: r["events_before_ack"] / max(r["events_expected"], 1)) for s in ("etcd", "ferrocd")}
print(f"\nevents lost: {lost}; share of events that arrived before their put's ack (counted as 0 ms): "
      f"etcd {early['etcd']:.0%}, ferrocd {early['ferrocd']:.0%}")
PY
