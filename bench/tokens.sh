#!/usr/bin/env bash
# Token issuance over HTTPS (client_credentials) against the raw RS256 sign and verify
# rates of aws-lc-rs on this machine, in one run. Loopback only; bounded in time.
#   bench/tokens.sh [seconds]       (needs wrk: apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }

cargo build --release --locked -p keyless >/dev/null
bin=target/release/keyless

echo "== in-process (criterion, one core)"
cargo bench --locked -p keyless-auth --bench tokens -- --warm-up-time 1 --measurement-time 5 >/dev/null 2>&1
python3 - <<'PY' | tee /tmp/keyless-bench-inproc.txt
import json, pathlib
root = pathlib.Path("target/criterion")
for name in ["raw_rs256/sign", "raw_rs256/verify", "token/issue", "token/verify_uncached", "token/verify_cached"]:
    mean_ns = json.loads((root / name / "new" / "estimates.json").read_text())["mean"]["point_estimate"]
    print(f"  {name:<24} {1e9 / mean_ns:12.0f} /s")
PY

work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
ports=$(python3 -c 'import socket
s=[socket.socket() for _ in range(5)]
[x.bind(("127.0.0.1",0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))')
read -r p_storage p_login p_mgmt p_vault p_identity <<<"$ports"
"$bin" serve --data-dir "$work/data" --storage-port "$p_storage" --login-port "$p_login" \
  --management-port "$p_mgmt" --vault-port "$p_vault" --identity-port "$p_identity" >"$work/log" 2>&1 &
server=$!
for _ in $(seq 100); do [ -f "$work/data/endpoints.json" ] && curl -sf "http://127.0.0.1:$p_identity/healthz" >/dev/null && break; sleep 0.1; done
export KEYLESS_CONFIG_DIR="$work/cli"
password=$(python3 -c "import json;print(json.load(open('$work/data/admin.json'))['password'])")
tenant=$(python3 -c "import json;print(json.load(open('$work/data/admin.json'))['tenant'])")
"$bin" login --data-dir "$work/data" -u admin@keyless.local -p "$password" >/dev/null
sp=$("$bin" ad sp create-for-rbac -n bench)
export BENCH_APP_ID=$(python3 -c "import json,sys;print(json.loads(sys.argv[1])['appId'])" "$sp")
export BENCH_SECRET=$(python3 -c "import json,sys;print(json.loads(sys.argv[1])['password'])" "$sp")

echo "== over HTTPS: POST /{tenant}/oauth2/v2.0/token, client_credentials, ${seconds}s"
wrk -t2 -c8 -d"${seconds}s" -s bench/token.lua "https://127.0.0.1:$p_login/$tenant/oauth2/v2.0/token" | tee "$work/wrk.txt"
issued=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")
raw_sign=$(awk '/raw_rs256\/sign/ {print $2}' /tmp/keyless-bench-inproc.txt)
echo
echo "== summary"
raw_verify=$(awk '/raw_rs256\/verify/ {print $2}' /tmp/keyless-bench-inproc.txt)
issue=$(awk '/token\/issue/ {print $2}' /tmp/keyless-bench-inproc.txt)
uncached=$(awk '/token\/verify_uncached/ {print $2}' /tmp/keyless-bench-inproc.txt)
cached=$(awk '/token\/verify_cached/ {print $2}' /tmp/keyless-bench-inproc.txt)
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
printf "  token signing vs raw sign      %sx   (one core, in process)\n" "$(ratio "$issue" "$raw_sign")"
printf "  uncached verify vs raw verify  %sx   (one core, in process)\n" "$(ratio "$uncached" "$raw_verify")"
printf "  cached verify                  %10.0f /s (one core)\n" "$cached"
printf "  raw RS256 sign, one core      %10.0f /s\n" "$raw_sign"
printf "  tokens issued over HTTPS       %10.0f /s   (%sx the one-core raw signing rate, %d cores)\n" "$issued" \
  "$(ratio "$issued" "$raw_sign")" "$(nproc)"
echo "  (the HTTPS figure shares the machine's cores with wrk, TLS and SQLite)"
