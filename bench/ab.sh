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
ticks() { awk '{sub(/.*\) /, ""); print $12 + $13 + $14 + $15}' "/proc/$1/stat"; }
tick=$(getconf CLK_TCK)
out=$work
. bench/keyless_instance.sh

declare -A server_pid url base sas
for side in A B; do
  bin=$a; [ "$side" = B ] && bin=$b
  start_keyless "$side" "$bin" taskset -c 0
  server_pid[$side]=$pid
  "$bin" storage account create -n bench -g default -o none
  key=$("$bin" storage account keys list -n bench -g default --query "[0].value" -o tsv)
  url[$side]=https://127.0.0.1:${ports[0]}
  read -r base[$side] sas[$side] < <("$venv/bin/python" bench/storage.py "${url[$side]}/bench" bench "$key" "$work/$side/tls/ca.pem")
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
    before=$(ticks "${server_pid[$side]}")
    read -r sum0 count0 < <(commit_batches "$side")
    out=$(taskset -c 1 wrk -t1 -c"$connections" -d"${seconds}s" -s "$script" "${url[$side]}")
    after=$(ticks "${server_pid[$side]}")
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
