# Sourced by the bench scripts that run a peer's test suite against keyless: builds the
# binary and starts one keyless on free loopback ports with its data dir under $work,
# its log in $out/keyless.log, and the CLI signed in as the generated admin.
# Needs $root (the repository), $work, $out and the array pids (killed on exit by the
# caller's trap); sets bin and ports (storage, login, management, vault, identity).
start_keyless() {
  cargo build --locked -p keyless >/dev/null
  bin=$root/target/debug/keyless
  local free_port='import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
  ports=()
  for _ in 1 2 3 4 5; do ports+=("$(python3 -c "$free_port")"); done
  "$bin" serve --data-dir "$work/keyless" --storage-port "${ports[0]}" --login-port "${ports[1]}" \
    --management-port "${ports[2]}" --vault-port "${ports[3]}" --identity-port "${ports[4]}" \
    >"$out/keyless.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:${ports[4]}/healthz" && break; sleep 0.1; done
  export KEYLESS_CONFIG_DIR=$work/cli
  local password
  password=$(python3 -c "import json;print(json.load(open('$work/keyless/admin.json'))['password'])")
  "$bin" login --data-dir "$work/keyless" -u admin@keyless.local -p "$password" -o none
}
