#!/usr/bin/env bash
# Resident memory of `keyless serve` while it takes and serves a 2 GiB blob over
# HTTPS (curl with a SAS), sampled every half second. Loopback only.
#   bench/memory.sh [GiB]
set -euo pipefail
cd "$(dirname "$0")/.."
gib=${1:-2}
cargo build --release --locked -p keyless >/dev/null
bin=$PWD/target/release/keyless
venv=$PWD/.venv
[ -x "$venv/bin/python" ] || { python3 -m venv "$venv"; "$venv/bin/pip" install -q -r tests/clients/requirements.txt; }
work=$(mktemp -d)
trap 'kill "$server" "$monitor" 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ports=(); for _ in 1 2 3 4 5; do ports+=("$(free_port)"); done
"$bin" serve --data-dir "$work/d" --storage-port "${ports[0]}" --login-port "${ports[1]}" --management-port "${ports[2]}" \
  --vault-port "${ports[3]}" --identity-port "${ports[4]}" >"$work/log" 2>&1 &
server=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:${ports[4]}/healthz" >/dev/null && break; sleep 0.1; done
export KEYLESS_CONFIG_DIR=$work/cli
password=$(python3 -c "import json;print(json.load(open('$work/d/admin.json'))['password'])")
"$bin" login --data-dir "$work/d" -u admin@keyless.local -p "$password" >/dev/null
"$bin" storage account create -n mem -g default >/dev/null
key=$("$bin" storage account keys list -n mem -g default | python3 -c 'import json,sys;print(json.load(sys.stdin)[0]["value"])')
read -r base sas < <("$venv/bin/python" bench/storage.py "https://127.0.0.1:${ports[0]}/mem" mem "$key" "$work/d/tls/ca.pem")
url="https://127.0.0.1:${ports[0]}$base/big?$sas"
head -c $((gib * 1024 * 1024 * 1024)) /dev/zero >"$work/big.bin"
echo "RSS before: $(awk '/VmRSS/ {print $2}' /proc/$server/status) KiB"
(while sleep 0.5; do awk '/VmRSS/ {print $2}' /proc/$server/status; done >"$work/rss") &
monitor=$!
curl -s -o /dev/null -w "upload:   %{http_code}, %{speed_upload} B/s\n" --cacert "$work/d/tls/ca.pem" -X PUT \
  -H "x-ms-blob-type: BlockBlob" -T "$work/big.bin" "$url"
curl -s -o /dev/null -w "download: %{http_code}, %{speed_download} B/s\n" --cacert "$work/d/tls/ca.pem" "$url"
kill "$monitor"
echo "RSS during the transfers: min $(sort -n "$work/rss" | head -1) KiB, max $(sort -n "$work/rss" | tail -1) KiB ($(wc -l <"$work/rss") samples)"
