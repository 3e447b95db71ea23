#!/usr/bin/env bash
# The Blob data plane side by side, in one run, over TLS on loopback: keyless,
# Azurite (from npm; in memory and on disk) and nginx serving the same bytes (the
# ceiling). 4 KiB GET and PUT at 16 connections (wrk, p50/p99), and a 256 MiB upload
# and download (curl). Every load is bounded in time.
#   bench/storage.sh [--pinned] [--quick] [seconds]   (needs wrk, nginx, curl: apt-get install wrk nginx curl)
# --pinned: every server on core 0 (nginx with one worker), the load on core 1 (wrk -t1),
# and each server's CPU time per request (utime+stime of it and its children, from
# /proc/<pid>/stat, over the requests wrk saw answered), with its ratio to nginx's over TLS, its
# context switches per request and the KiB it wrote per request (files and sockets, /proc/<pid>/io).
# --quick: keyless and nginx only, without the scale figures (for trying a change).
# KEYLESS_BIN=<binary>: that keyless, not a fresh release build (to compare two builds).
# With --pinned, the floor (crates/keyless-server/examples/http_floor.rs: keyless's HTTP and TLS stack
# answering a fixed Get Blob answer, with no checks, lookup or log) is measured too, so that the
# distance to nginx splits into the stack's and keyless's own; FLOOR_BIN=<binary> runs a given build.
# Its PUT rows (16 and 64 connections) are the durable PUT's floor: the body hashed, then written
# and synced in groups, with no database.
# BENCH_PERF_DIR=<dir>: each wrk run's server is also profiled (perf record, DWARF call graphs, for the
# run's length) into <dir>/<target>-<GET|PUT>.data; the figures then include perf's cost.
set -euo pipefail
cd "$(dirname "$0")/.."
pinned=0
quick=0
if [ "${1:-}" = --pinned ]; then pinned=1; shift; fi
if [ "${1:-}" = --quick ]; then quick=1; shift; fi
seconds=${1:-10}
server=(); load=(); threads=2; workers=2
if [ "$pinned" = 1 ]; then
  command -v taskset >/dev/null || { echo "taskset is missing (util-linux)" >&2; exit 1; }
  server=(taskset -c 0); load=(taskset -c 1); threads=1; workers=1
fi
tick=$(getconf CLK_TCK)
# What a process and its children have used so far: CPU ticks in user space and in the kernel
# (each with its waited-for children's), context switches (voluntary and not, over all threads)
# and bytes written (to files and sockets alike, /proc/<pid>/io's wchar):
# "user system switches written".
counters() {
  local user=0 system=0 switches=0 written=0 p u s
  for p in "$1" $(pgrep -P "$1" || true); do
    [ -r "/proc/$p/stat" ] || continue
    read -r u s < <(awk '{sub(/.*\) /, ""); print $12 + $14, $13 + $15}' "/proc/$p/stat")
    user=$((user + u)); system=$((system + s))
    switches=$((switches + $(cat /proc/"$p"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {n += $2} END {print n + 0}')))
    written=$((written + $(awk '/^wchar/ {print $2}' /proc/"$p"/io 2>/dev/null || echo 0)))
  done
  echo "$user $system $switches $written"
}
# CPU ticks (user + system) of a process and its children.
cpu_ticks() {
  local user system
  read -r user system _ < <(counters "$1")
  echo $((user + system))
}
for tool in wrk nginx curl node npm; do command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }; done
root=$PWD
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

bin=${KEYLESS_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --locked -p keyless >/dev/null
  bin=$root/target/release/keyless
fi
floor_bin=${FLOOR_BIN:-}
if [ "$pinned" = 1 ] && [ -z "$floor_bin" ]; then
  cargo build --release --locked -p keyless-server --example http_floor >/dev/null
  floor_bin=$root/target/release/examples/http_floor
fi
venv=$root/.venv
[ -x "$venv/bin/python" ] || { python3 -m venv "$venv"; "$venv/bin/pip" install -q -r tests/clients/requirements.txt; }
if [ ! -x bench/.cache/node_modules/.bin/azurite-blob ]; then
  mkdir -p bench/.cache && npm install --silent --no-audit --no-fund --prefix bench/.cache azurite@3 >/dev/null
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 200); do curl -sk -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }

# keyless
ports=(); for _ in 1 2 3 4 5; do ports+=("$(free_port)"); done
"${server[@]}" "$bin" serve --data-dir "$work/keyless" --storage-port "${ports[0]}" --login-port "${ports[1]}" --management-port "${ports[2]}" \
  --vault-port "${ports[3]}" --identity-port "${ports[4]}" >"$work/keyless.log" 2>&1 &
pids+=($!)
keyless_pid=$!
wait_for "http://127.0.0.1:${ports[4]}/healthz"
export KEYLESS_CONFIG_DIR=$work/cli
ca=$work/keyless/tls/ca.pem
admin_password=$(python3 -c "import json;print(json.load(open('$work/keyless/admin.json'))['password'])")
"$bin" login --data-dir "$work/keyless" -u admin@keyless.local -p "$admin_password" >/dev/null
"$bin" storage account create -n bench -g default >/dev/null
key=$("$bin" storage account keys list -n bench -g default | python3 -c 'import json,sys;print(json.load(sys.stdin)[0]["value"])')
targets=("keyless|https://127.0.0.1:${ports[0]}/bench|bench|$key||$keyless_pid")
# The same account as an identity: a service principal with Storage Blob Data
# Contributor, sending bearer tokens (verification + RBAC + storage log per request).
sp=$("$bin" ad sp create-for-rbac -n bench-writer)
sp_field() { python3 -c "import json,sys;print(json.loads(sys.argv[1])[sys.argv[2]])" "$sp" "$1"; }
sub=$("$bin" account show | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
"$bin" role assignment create --assignee "$(sp_field objectId)" --role "Storage Blob Data Contributor" \
  --scope "/subscriptions/$sub/resourceGroups/default/providers/Microsoft.Storage/storageAccounts/bench" >/dev/null
token=$(KEYLESS_CONFIG_DIR=$work/cli-sp bash -c '"$0" login --data-dir "$1" --service-principal -u "$2" -p "$3" >/dev/null && "$0" account get-access-token --resource https://storage.azure.com' \
  "$bin" "$work/keyless" "$(sp_field appId)" "$(sp_field password)" | python3 -c 'import json,sys;print(json.load(sys.stdin)["accessToken"])')
targets+=("keyless-bearer|https://127.0.0.1:${ports[0]}/bench|bench|$key|$token|$keyless_pid")
bearer_token=$token

# Azurite, TLS, with keyless's certificate; telemetry off (no traffic leaves the machine).
azkey="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
modes=(memory disk); [ "$quick" = 1 ] && modes=()
for mode in "${modes[@]}"; do
  port=$(free_port)
  extra=(--inMemoryPersistence); [ "$mode" = disk ] && extra=(--location "$work/azurite-disk")
  "${server[@]}" bench/.cache/node_modules/.bin/azurite-blob --blobHost 127.0.0.1 --blobPort "$port" --cert "$work/keyless/tls/server.pem" \
    --key "$work/keyless/tls/server.key" --disableTelemetry --skipApiVersionCheck --loose --silent "${extra[@]}" >"$work/azurite-$mode.log" 2>&1 &
  pids+=($!)
  wait_for "https://127.0.0.1:$port/devstoreaccount1?comp=list"
  targets+=("azurite-$mode|https://127.0.0.1:$port/devstoreaccount1|devstoreaccount1|$azkey||$!")
done

# nginx over TLS serving the same 4 KiB and 256 MiB files.
mkdir -p "$work/www/bench"
head -c 4096 /dev/urandom >"$work/www/small"
for i in $(seq 0 999); do ln -s "$work/www/small" "$work/www/bench/small-$i"; done
head -c $((256 * 1024 * 1024)) /dev/urandom >"$work/big.bin"
ln -s "$work/big.bin" "$work/www/bench/big"
# On this machine, writing through a page cache that already holds a few GB of other files'
# pages (what 100,000 small PUTs leave) costs the writer several times the kernel time, dd's
# included: 256 MiB in 64 KiB writes took 0.11 s of kernel time with the cache empty and 0.74 s
# after 3 GB of 16 KiB writes elsewhere. So every measurement starts from the same state: what
# the runs before it wrote is written back, and (as root) dropped from the page cache.
quiet_disk() {
  sync
  if [ -w /proc/sys/vm/drop_caches ]; then echo 1 >/proc/sys/vm/drop_caches; fi
}
# The disk's synced sequential write rate for the same random bytes, on the data dir's file
# system -> seconds; measured here and again just before the uploads.
disk_seconds() {
  quiet_disk
  { /usr/bin/time -f %e dd if="$work/big.bin" of="$work/keyless/dd-probe" bs=4M conv=fsync status=none; } 2>&1 | tail -1
  rm -f "$work/keyless/dd-probe"
}
dd_seconds=$(disk_seconds)
# What one durable commit's sync costs on this disk, whoever asks for it: 4 KiB written in place
# and fdatasync'd, 2,000 times, on the servers' core -> "CPU µs, wall µs" per sync.
sync_cost=$("${server[@]}" python3 - "$work/keyless/sync-probe" <<'PY'
import os, resource, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
page = os.urandom(4096)
os.pwrite(fd, bytes(4096 * 64), 0)
os.fsync(fd)
usage = lambda: resource.getrusage(resource.RUSAGE_SELF)
before, start = usage(), time.monotonic()
for i in range(2000):
    os.pwrite(fd, page, (i % 64) * 4096)
    os.fdatasync(fd)
after, end = usage(), time.monotonic()
user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
print(f"{(user + system) / 2000 * 1e6:.0f} µs of CPU ({system / 2000 * 1e6:.0f} in the kernel), {(end - start) / 2000 * 1e6:.0f} µs of wall time")
PY
)
rm -f "$work/keyless/sync-probe"
# The same bytes in 4 MiB blocks, for a 4-way parallel block upload as the SDKs send it.
mkdir -p "$work/blocks" && split -b 4M -d -a 3 "$work/big.bin" "$work/blocks/b"
nginx_port=$(free_port)
nginx_plain=$(free_port)
cat >"$work/nginx.conf" <<NGINX
user root;
worker_processes $workers;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  server {
    listen 127.0.0.1:$nginx_port ssl;
    listen 127.0.0.1:$nginx_plain;
    ssl_certificate $work/keyless/tls/server.pem;
    ssl_certificate_key $work/keyless/tls/server.key;
    root $work/www;
  }
}
NGINX
"${server[@]}" nginx -c "$work/nginx.conf" -g 'daemon off;' &
pids+=($!)
nginx_pid=$!
wait_for "https://127.0.0.1:$nginx_port/bench/small-0"

declare -A bases sases
results=$work/results.txt
: >"$results"
measure() { # name get_rps get_p50 get_p99 put_rps put_p50 put_p99 up_MBps down_MBps par_up_MBps
  printf '%-16s %9s %8s %8s %9s %8s %8s %9s %9s %9s\n' "$@" | tee -a "$results"
}
# 256 MiB as 64 Put Block calls, four at a time, then Put Block List -> seconds
parallel_upload() { # container-url sas [curl header args]
  local target=$1 sas=$2; shift 2
  local urls=() list=$work/blocklist.xml f id start end
  printf '<?xml version="1.0" encoding="utf-8"?><BlockList>' >"$list"
  for f in "$work"/blocks/b*; do
    id=$(printf 'block-%s' "${f##*/b}" | base64 | sed 's/+/%2B/g; s#/#%2F#g; s/=/%3D/g')
    urls+=(-T "$f" "$target/par?comp=block&blockid=$id&$sas")
    printf '<Latest>%s</Latest>' "$(printf 'block-%s' "${f##*/b}" | base64)" >>"$list"
  done
  printf '</BlockList>' >>"$list"
  start=$(date +%s.%N)
  "${load[@]}" curl -sf --http1.1 --no-progress-meter --parallel --parallel-max 4 --cacert "$ca" "$@" -H "x-ms-version: 2025-01-05" "${urls[@]}" >/dev/null
  "${load[@]}" curl -sf --http1.1 --cacert "$ca" "$@" -H "x-ms-version: 2025-01-05" -X PUT --data-binary "@$list" "$target/par?comp=blocklist&$sas" >/dev/null
  end=$(date +%s.%N)
  python3 -c "print($end - $start)"
}
cpu=$work/cpu.txt
: >"$cpu"
# Waits (at most 30 s) until a server has been idle for half a second: what an earlier run
# left it to do (removing overwritten files, checkpointing its log) is not charged to the next.
# The disk is quieted first (quiet_disk).
settle() {
  local before after
  quiet_disk
  for _ in $(seq 60); do
    before=$(cpu_ticks "$1"); sleep 0.5; after=$(cpu_ticks "$1")
    [ $((after - before)) -le 1 ] && return 0
  done
  echo "server $1 still busy after 30 s; measuring anyway" >&2
}
wrk_run() { # script url server-pid label [connections] -> "rps p50 p99"; with --pinned, CPU µs per request to $cpu
  local connections=${5:-16} user_before system_before user_after system_after switches_before switches_after written_before written_after out profiler=
  settle "$3"
  if [ -n "${BENCH_PERF_DIR:-}" ]; then
    mkdir -p "$BENCH_PERF_DIR"
    perf record -q -F 999 --call-graph dwarf,16384 -p "$3" -o "$BENCH_PERF_DIR/${4//\//-}.data" -- sleep "$seconds" >/dev/null 2>&1 &
    profiler=$!
  fi
  read -r user_before system_before switches_before written_before < <(counters "$3")
  out=$("${load[@]}" wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency -s "$1" "$2")
  read -r user_after system_after switches_after written_after < <(counters "$3")
  if [ -n "$profiler" ]; then wait "$profiler" || true; fi
  echo "$out" >&2
  local rps p50 p99 requests
  rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
  p50=$(awk '/^ +50%/ {print $2}' <<<"$out")
  p99=$(awk '/^ +99%/ {print $2}' <<<"$out")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  python3 -c "n = max($requests, 1) * $tick / 1e6; r = max($requests, 1); print(f'$4 {$rps} {($user_after - $user_before) / n:.1f} {($system_after - $system_before) / n:.1f} {($switches_after - $switches_before) / r:.2f} {($written_after - $written_before) / r / 1024:.1f}')" >>"$cpu"
  echo "$rps $p50 $p99"
}
mbps() { python3 -c "print(f'{256/$1:.0f}')"; }

printf '%-16s %9s %8s %8s %9s %8s %8s %9s %9s %9s\n' target "GET/s" p50 p99 "PUT/s" p50 p99 "up MB/s" "down MB/s" "4-way up" | tee "$results"
# Each kind of load runs for every target before the next kind, so that no target's small
# requests meet a disk still busy with another's 256 MiB, and each large transfer follows the
# same kind of transfer of the target before it.
declare -A small up down par batch
# The sum and count of keyless's commit batch sizes so far, from its /metrics.
commit_batches() {
  curl -sf --cacert "$ca" "$1/metrics" | awk '/^keyless_store_commit_batch_writes_sum/ {s=$2} /^keyless_store_commit_batch_writes_count/ {c=$2} END {print s+0, c+0}'
}
for t in "${targets[@]}"; do
  IFS='|' read -r name url account k token pid <<<"$t"
  read -r base sas < <("$venv/bin/python" bench/storage.py "$url" "$account" "$k" "$ca")
  bases[$name]=$base; sases[$name]=$sas
  export BENCH_BASE=$base BENCH_SAS=$sas BENCH_COUNT=1000 BENCH_TOKEN=$token BENCH_PREFIX=$name
  read -r grps gp50 gp99 < <(wrk_run bench/blob_get.lua "${url%/*}" "$pid" "$name/GET")
  [[ $name == keyless* ]] && read -r sum0 count0 < <(commit_batches "${url%/*}")
  read -r prps pp50 pp99 < <(wrk_run bench/blob_put.lua "${url%/*}" "$pid" "$name/PUT")
  if [[ $name == keyless* ]]; then
    read -r sum1 count1 < <(commit_batches "${url%/*}")
    batch[$name]=$(python3 -c "print(f'{($sum1 - $sum0) / max($count1 - $count0, 1):.1f}')")
  fi
  # The same PUTs from 64 connections: larger commit batches share each commit's sync.
  if [ "$pinned" = 1 ] && [ "$name" = keyless ]; then
    read -r sum0 count0 < <(commit_batches "${url%/*}")
    BENCH_PREFIX=$name-c64 wrk_run bench/blob_put.lua "${url%/*}" "$pid" "$name/PUT-c64" 64 >/dev/null
    read -r sum1 count1 < <(commit_batches "${url%/*}")
    batch[$name-c64]=$(python3 -c "print(f'{($sum1 - $sum0) / max($count1 - $count0, 1):.1f}')")
  fi
  small[$name]="$grps $gp50 $gp99 $prps $pp50 $pp99"
done
for name in "${!batch[@]}"; do
  echo "$name PUT: ${batch[$name]} writes per commit (keyless_store_commit_batch_writes over the run)"
done
# target -> its origin, and curl's bearer header arguments when it has a token
target_args() {
  IFS='|' read -r name url _ _ token _ <<<"$1"
  origin=${url%/*}; base=${bases[$name]}; sas=${sases[$name]}
  bearer=()
  if [ -n "$token" ]; then bearer=(-H "Authorization: Bearer $token"); fi
}
dd_before_uploads=$(disk_seconds)
# Each 256 MiB write starts on a quiet disk, as dd's did.
for t in "${targets[@]}"; do
  target_args "$t"
  quiet_disk
  up[$name]=$( { /usr/bin/time -f %e "${load[@]}" curl -s --http1.1 -o /dev/null --cacert "$ca" "${bearer[@]}" -X PUT -H "x-ms-blob-type: BlockBlob" \
        -H "x-ms-version: 2025-01-05" -T "$work/big.bin" "$origin$base/big?$sas"; } 2>&1 | tail -1)
done
for t in "${targets[@]}"; do
  target_args "$t"
  # Every download reads from the page cache (the disk was quieted since the upload): one
  # untimed read first, as nginx's file is read before its timed download.
  curl -s --http1.1 -o /dev/null --cacert "$ca" "${bearer[@]}" -H "x-ms-version: 2025-01-05" "$origin$base/big?$sas"
  down[$name]=$( { /usr/bin/time -f %e "${load[@]}" curl -s --http1.1 -o /dev/null --cacert "$ca" "${bearer[@]}" -H "x-ms-version: 2025-01-05" "$origin$base/big?$sas"; } 2>&1 | tail -1)
done
for t in "${targets[@]}"; do
  target_args "$t"
  quiet_disk
  par[$name]=$(parallel_upload "$origin$base" "$sas" "${bearer[@]}")
done
for t in "${targets[@]}"; do
  IFS='|' read -r name _ <<<"$t"
  read -r grps gp50 gp99 prps pp50 pp99 <<<"${small[$name]}"
  measure "$name" "$grps" "$gp50" "$gp99" "$prps" "$pp50" "$pp99" "$(mbps "${up[$name]}")" "$(mbps "${down[$name]}")" "$(mbps "${par[$name]}")"
done
# nginx gets requests of the same size as keyless's: the same SAS query, and (-bearer) the same token,
# which it decrypts and parses as keyless must.
export BENCH_BASE=/bench BENCH_SAS=${sases[keyless]} BENCH_COUNT=1000 BENCH_TOKEN=
read -r grps gp50 gp99 < <(wrk_run bench/blob_get.lua "https://127.0.0.1:$nginx_port" "$nginx_pid" nginx-tls/GET)
read -r _ _ _ < <(wrk_run bench/blob_get.lua "http://127.0.0.1:$nginx_plain" "$nginx_pid" nginx-http/GET)
[ "$pinned" = 1 ] && read -r _ _ _ < <(BENCH_TOKEN=$bearer_token wrk_run bench/blob_get.lua "https://127.0.0.1:$nginx_port" "$nginx_pid" nginx-tls-bearer/GET)
cat "$work/big.bin" >/dev/null
nginx_down=$( { /usr/bin/time -f %e "${load[@]}" curl -s --http1.1 -o /dev/null --cacert "$ca" "https://127.0.0.1:$nginx_port/bench/big"; } 2>&1 | tail -1)
if [ -n "${floor_bin:-}" ]; then
  floor_port=$(free_port)
  "${server[@]}" "$floor_bin" "$work/keyless/tls/server.pem" "$work/keyless/tls/server.key" "$floor_port" "$work/floor.ring" &
  pids+=($!)
  floor_pid=$!
  wait_for "https://127.0.0.1:$floor_port/"
  read -r _ _ _ < <(wrk_run bench/blob_get.lua "https://127.0.0.1:$floor_port" "$floor_pid" floor/GET)
  read -r _ _ _ < <(BENCH_TOKEN=$bearer_token wrk_run bench/blob_get.lua "https://127.0.0.1:$floor_port" "$floor_pid" floor-bearer/GET)
  # The durable PUT's floor: the body hashed, written and synced in groups, with no database.
  for c in 16 64; do
    label=floor/PUT; [ "$c" = 64 ] && label=floor/PUT-c64
    read -r sum0 count0 < <(commit_batches "https://127.0.0.1:$floor_port")
    BENCH_PREFIX=floor-$c wrk_run bench/blob_put.lua "https://127.0.0.1:$floor_port" "$floor_pid" "$label" "$c" >/dev/null
    read -r sum1 count1 < <(commit_batches "https://127.0.0.1:$floor_port")
    echo "$label: $(python3 -c "print(f'{($sum1 - $sum0) / max($count1 - $count0, 1):.1f}')") writes per sync"
  done
fi
measure nginx "$grps" "$gp50" "$gp99" - - - - "$(mbps "$nginx_down")" -
echo "disk, dd conv=fsync of the same 256 MiB: $(mbps "$dd_seconds") MB/s at the start, $(mbps "$dd_before_uploads") MB/s just before the uploads"
echo "disk, one 4 KiB write and fdatasync: $sync_cost"

if [ "$pinned" = 1 ]; then
  echo
  echo "== server CPU per request, the server pinned to core 0 and wrk to core 1"
  python3 - "$cpu" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]).read().splitlines():
    label, rps, user, system, switches, written = line.split()
    rows[label] = (float(rps), float(user), float(system), float(switches), float(written))
# Each row against nginx over TLS answering requests of the same size: a bearer
# request against nginx's run with the same token.
def ceiling(label):
    kind = "nginx-tls-bearer/GET" if "bearer" in label else "nginx-tls/GET"
    return sum(rows.get(kind, (0, 0, 0))[1:3])
print(f"{'target':<22}{'req/s':>10}{'CPU us/req':>12}{'user':>7}{'kernel':>8}{'x nginx TLS':>13}{'switches':>10}{'KiB out':>9}")
for label, (rps, user, system, switches, written) in rows.items():
    ratio = f"{(user + system) / ceiling(label):.2f}" if ceiling(label) else "-"
    print(f"{label:<22}{rps:>10.0f}{user + system:>12.0f}{user:>7.0f}{system:>8.0f}{ratio:>13}{switches:>10.2f}{written:>9.1f}")
PY
fi
[ "$quick" = 1 ] && exit 0
echo
echo "== 10,000 PUTs (first and last thousand), listing them, 1,000 random 64 KiB range reads (Python SDK, 16 threads);"
echo "   the same 10,000 listed over raw HTTP in two pages of 5,000 (curl; best of 3, with the server's CPU time)"
printf '%-16s %12s %12s %10s %12s %10s %10s\n' target "first 1k/s" "last 1k/s" "list 10k" "ranges/s" "raw list" "list CPU" | tee "$work/scale.txt"
# Two pages of 5,000 over raw HTTP -> "seconds cpu-seconds" (fails unless 10,000 names came back)
raw_list() { # container-url sas server-pid
  local before after first second marker names
  before=$(cpu_ticks "$3")
  first=$("${load[@]}" curl -sf --http1.1 --cacert "$ca" -H "x-ms-version: 2025-01-05" -w '%{time_total}' -o "$work/page1.xml" \
    "$1?restype=container&comp=list&maxresults=5000&prefix=obj-&$2")
  marker=$(grep -o '<NextMarker>[^<]*' "$work/page1.xml" | cut -c13-)
  second=$("${load[@]}" curl -sf --http1.1 --cacert "$ca" -H "x-ms-version: 2025-01-05" -w '%{time_total}' -o "$work/page2.xml" \
    "$1?restype=container&comp=list&maxresults=5000&prefix=obj-&marker=$marker&$2")
  after=$(cpu_ticks "$3")
  names=$(cat "$work/page1.xml" "$work/page2.xml" | grep -o '<Name>obj-' | wc -l)
  [ "$names" = 10000 ] || { echo "raw listing gave $names names" >&2; return 1; }
  python3 -c "print(f'{$first + $second:.3f} {($after - $before) / $tick:.2f}')"
}
for t in "${targets[@]}"; do
  IFS='|' read -r name url account k token pid <<<"$t"
  [ -n "$token" ] && continue
  read -r first last listing ranges < <("$venv/bin/python" bench/storage_scale.py "$url" "$account" "$k" "$ca")
  best=; best_cpu=
  for _ in 1 2 3; do
    read -r took took_cpu < <(raw_list "${url%/*}${bases[$name]%/bench}/scale" "${sases[$name]}" "$pid")
    if [ -z "$best" ] || python3 -c "import sys; sys.exit(not $took < $best)"; then best=$took; best_cpu=$took_cpu; fi
  done
  printf '%-16s %12s %12s %9ss %12s %9ss %9ss\n' "$name" "$first" "$last" "$listing" "$ranges" "$best" "$best_cpu" | tee -a "$work/scale.txt"
done
# Flat as the object count grows: keyless's rate for the first and the last thousand of
# 100,000 PUTs into one container (wrk, bounded by count and by time).
IFS='|' read -r name url _ _ _ pid <<<"${targets[0]}"
grow=${bases[$name]%/bench}/grow
curl -sf --http1.1 --cacert "$ca" -X PUT -H "x-ms-version: 2025-01-05" "${url%/*}$grow?restype=container&${sases[$name]}" -o /dev/null
grow_run() { # prefix count -> PUTs/s (curl, 16 at a time over reused connections; bounded by count and time)
  local config=$work/grow-$1.cfg start end
  awk -v n="$2" -v file="$work/www/small" -v url="${url%/*}$grow/$1" -v sas="${sases[$name]}" \
    'BEGIN { for (i = 1; i <= n; i++) printf "upload-file = \"%s\"\nurl = \"%s-%d?%s\"\n", file, url, i, sas }' >"$config"
  start=$(date +%s.%N)
  "${load[@]}" timeout 600 curl -sf --http1.1 --no-progress-meter --parallel --parallel-max 16 --cacert "$ca" -H "x-ms-blob-type: BlockBlob" \
    -H "x-ms-version: 2025-01-05" -K "$config" >/dev/null
  end=$(date +%s.%N)
  python3 -c "print(f'{$2 / ($end - $start):.0f}')"
}
first=$(grow_run first 1000); grow_run middle 98000 >/dev/null; last=$(grow_run last 1000)
echo "keyless, 100,000 PUTs into one container: first 1k $first/s, last 1k $last/s"
echo
python3 - "$results" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]).read().splitlines()[1:]:
    f = line.split()
    rows[f[0]] = f
k = rows.get("keyless")
def ratio(a, b):
    try:
        return f"{float(a) / float(b):.1f}x"
    except (ValueError, ZeroDivisionError):
        return "-"
for other in ("azurite-memory", "azurite-disk"):
    o = rows.get(other)
    if k and o:
        print(f"keyless / {other}: GET {ratio(k[1], o[1])}, PUT {ratio(k[4], o[4])}, upload {ratio(k[7], o[7])}, download {ratio(k[8], o[8])}")
b = rows.get("keyless-bearer")
if k and b:
    print(f"keyless bearer / keyless SAS: GET {ratio(b[1], k[1])}, PUT {ratio(b[4], k[4])} (identity costs the difference)")
n = rows.get("nginx")
if k and n:
    print(f"keyless / nginx: GET {ratio(k[1], n[1])}, download {ratio(k[8], n[8])}")
PY
