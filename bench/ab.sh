#!/usr/bin/env bash
# Two keyless builds, A and B, side by side on the same core, in alternating rounds: the CPU
# each spends per small request. The host's speed drifts by more than one change saves
# between two runs minutes apart; rounds seconds apart see the same host, so their median
# difference is the change's.
#   [CONNECTIONS=16] bench/ab.sh A-binary B-binary [get|put] [rounds] [seconds]   (needs wrk, curl)
# Both servers run pinned to core 0 and the load (wrk -t1 -c$CONNECTIONS, container SAS, 4 KiB) to core 1;
# CPU is utime+stime from /proc/<pid>/stat over the requests wrk saw answered; each round's line
# ends with the server's mean writes per commit (from /metrics). Every load is
# bounded: at most 20 rounds of at most 10 s each per build.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n 2,11p "$0" >&2; exit 2; }
connections=${CONNECTIONS:-16}
a=$1 b=$2 kind=${3:-put} rounds=${4:-6} seconds=${5:-3}
[ "$rounds" -le 20 ] && [ "$seconds" -le 10 ] || { echo "at most 20 rounds of 10 s" >&2; exit 2; }
case $kind in get) script=bench/blob_get.lua ;; put) script=bench/blob_put.lua ;; *) echo "get or put" >&2; exit 2 ;; esac
for tool in wrk curl taskset; do command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }; done
root=$PWD
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
venv=$root/.venv
[ -x "$venv/bin/python" ] || { python3 -m venv "$venv"; "$venv/bin/pip" install -q -r tests/clients/requirements.txt; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 200); do curl -sk -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }
ticks() { awk '{sub(/.*\) /, ""); print $12 + $13 + $14 + $15}' "/proc/$1/stat"; }
tick=$(getconf CLK_TCK)

declare -A pid url base sas
for side in A B; do
  bin=$a; [ "$side" = B ] && bin=$b
  dir=$work/$side
  ports=(); for _ in 1 2 3 4 5 6; do ports+=("$(free_port)"); done
  taskset -c 0 "$bin" serve --data-dir "$dir" --storage-port "${ports[0]}" --login-port "${ports[1]}" --management-port "${ports[2]}" \
    --vault-port "${ports[3]}" --identity-port "${ports[4]}" --registry-port "${ports[5]}" >"$work/$side.log" 2>&1 &
  pids+=($!)
  pid[$side]=$!
  wait_for "http://127.0.0.1:${ports[4]}/healthz" || { cat "$work/$side.log" >&2; exit 1; }
  password=$(python3 -c "import json;print(json.load(open('$dir/admin.json'))['password'])")
  KEYLESS_CONFIG_DIR=$work/cli-$side "$bin" login --data-dir "$dir" -u admin@keyless.local -p "$password" >/dev/null
  KEYLESS_CONFIG_DIR=$work/cli-$side "$bin" storage account create -n bench -g default >/dev/null
  key=$(KEYLESS_CONFIG_DIR=$work/cli-$side "$bin" storage account keys list -n bench -g default | python3 -c 'import json,sys;print(json.load(sys.stdin)[0]["value"])')
  url[$side]=https://127.0.0.1:${ports[0]}
  read -r base[$side] sas[$side] < <("$venv/bin/python" bench/storage.py "${url[$side]}/bench" bench "$key" "$dir/tls/ca.pem")
done

# The sum and count of a server's commit batch sizes so far, from its /metrics.
commit_batches() {
  curl -sf --cacert "$work/$1/tls/ca.pem" "${url[$1]}/metrics" |
    awk '/^keyless_store_commit_batch_writes_sum/ {s=$2} /^keyless_store_commit_batch_writes_count/ {c=$2} END {print s+0, c+0}'
}
results=$work/results
: >"$results"
for round in $(seq "$rounds"); do
  for side in A B; do
    export BENCH_BASE=${base[$side]} BENCH_SAS=${sas[$side]} BENCH_COUNT=1000 BENCH_TOKEN= BENCH_PREFIX=$side-$round
    before=$(ticks "${pid[$side]}")
    read -r sum0 count0 < <(commit_batches "$side")
    out=$(taskset -c 1 wrk -t1 -c"$connections" -d"${seconds}s" -s "$script" "${url[$side]}")
    after=$(ticks "${pid[$side]}")
    read -r sum1 count1 < <(commit_batches "$side")
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    python3 -c "print('$side', $round, $requests, f'{($after - $before) * 1e6 / $tick / max($requests, 1):.1f}', f'{($sum1 - $sum0) / max($count1 - $count0, 1):.1f}')" | tee -a "$results"
  done
done
python3 - "$results" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
cpu = {side: [float(r[3]) for r in rows if r[0] == side] for side in "AB"}
diffs = [b - a for a, b in zip(cpu["A"], cpu["B"])]
print(f"median CPU us per request: A {statistics.median(cpu['A']):.1f}, B {statistics.median(cpu['B']):.1f}; "
      f"median of B - A per round {statistics.median(diffs):+.1f} ({sum(d < 0 for d in diffs)} of {len(diffs)} rounds B lower)")
batch = {side: statistics.median(float(r[4]) for r in rows if r[0] == side) for side in "AB"}
print(f"median writes per commit: A {batch['A']:.1f}, B {batch['B']:.1f}")
PY
