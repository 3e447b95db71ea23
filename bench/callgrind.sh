#!/usr/bin/env bash
# Instructions per 4 KiB Get Blob with a bearer token, counted by callgrind: a figure that
# does not move with the machine's state, for comparing two builds where the pinned CPU
# figures (bench/storage.sh) cannot resolve a few per cent.
#   bench/callgrind.sh [requests] [get|put]   (needs valgrind: apt-get install valgrind)
# put: durable 4 KiB Put Blobs under new names instead. One request at a time, so each
# PUT is a batch of its own (under load, batches hold several); the count is of user
# space, not of the kernel's syncs.
# KEYLESS_BIN=<binary>: that keyless, not a fresh release build. The server runs under
# callgrind on loopback; one client sends 50 requests to warm the caches, the counters are
# zeroed, then it sends <requests> more (default 2000) on one connection and the counts are
# dumped. CALLGRIND_OUT=<file> keeps the dump (callgrind_annotate --auto=no <file> names
# the costliest functions).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
op=${2:-get}
case $op in get | put) ;; *) echo "usage: $0 [requests] [get|put]" >&2; exit 2 ;; esac
for tool in valgrind callgrind_control curl python3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }
done
bin=${KEYLESS_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --locked -p keyless >/dev/null
  bin=$PWD/target/release/keyless
fi
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ports=(); for _ in 1 2 3 4 5; do ports+=("$(free_port)"); done
valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.%p" "$bin" serve --data-dir "$work/keyless" \
  --storage-port "${ports[0]}" --login-port "${ports[1]}" --management-port "${ports[2]}" \
  --vault-port "${ports[3]}" --identity-port "${ports[4]}" >"$work/keyless.log" 2>&1 &
pid=$!
for _ in $(seq 600); do curl -s -o /dev/null "http://127.0.0.1:${ports[4]}/healthz" && break; sleep 0.5; done
export KEYLESS_CONFIG_DIR=$work/cli
password=$(python3 -c "import json;print(json.load(open('$work/keyless/admin.json'))['password'])")
"$bin" login --data-dir "$work/keyless" -u admin@keyless.local -p "$password" >/dev/null
"$bin" storage account create -n bench -g default >/dev/null
sp=$("$bin" ad sp create-for-rbac -n bench-reader)
sp_field() { python3 -c "import json,sys;print(json.loads(sys.argv[1])[sys.argv[2]])" "$sp" "$1"; }
sub=$("$bin" account show | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
"$bin" role assignment create --assignee "$(sp_field objectId)" --role "Storage Blob Data Contributor" \
  --scope "/subscriptions/$sub/resourceGroups/default/providers/Microsoft.Storage/storageAccounts/bench" >/dev/null
token=$(KEYLESS_CONFIG_DIR=$work/cli-sp bash -c '"$0" login --data-dir "$1" --service-principal -u "$2" -p "$3" >/dev/null && "$0" account get-access-token --resource https://storage.azure.com' \
  "$bin" "$work/keyless" "$(sp_field appId)" "$(sp_field password)" | python3 -c 'import json,sys;print(json.load(sys.stdin)["accessToken"])')
python3 - "${ports[0]}" "$token" "$work/keyless/tls/ca.pem" "$n" "$pid" "$op" <<'PY'
import http.client, ssl, subprocess, sys
port, token, ca, n, pid, op = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]
conn = http.client.HTTPSConnection("127.0.0.1", port, context=ssl.create_default_context(cafile=ca), timeout=600)
headers = {"Authorization": "Bearer " + token, "x-ms-version": "2025-01-05"}
def send(method, path, expected, body=None, extra=None):
    conn.request(method, path, body=body, headers={**headers, **(extra or {})})
    reply = conn.getresponse()
    answer = reply.read()
    if reply.status != expected:
        sys.exit(f"{method} {path}: {reply.status} {answer[:300]!r}")
send("PUT", "/bench/bench?restype=container", 201)
send("PUT", "/bench/bench/small", 201, b"x" * 4096, {"x-ms-blob-type": "BlockBlob"})
def one(i):
    if op == "put":
        send("PUT", f"/bench/bench/put-{i}", 201, b"k" * 4096, {"x-ms-blob-type": "BlockBlob"})
    else:
        send("GET", "/bench/bench/small", 200)
for i in range(50):
    one(i)
subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
for i in range(50, 50 + n):
    one(i)
subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
PY
dump=$(ls "$work"/callgrind.*.1)
total=$(sed -n 's/^summary: //p' "$dump")
[ -n "${CALLGRIND_OUT:-}" ] && cp "$dump" "$CALLGRIND_OUT"
echo "$bin: $((total / n)) instructions per bearer ${op^^} ($total over $n)"
