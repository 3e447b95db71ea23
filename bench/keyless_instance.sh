# Sourced by the bench scripts that run keyless: starts one keyless on free loopback ports and
# signs its CLI in as the generated admin.
#   start_keyless [name [binary [launcher ...]]]
# name (default keyless) names its data dir $work/<name> and its log $out/<name>.log; binary
# defaults to a fresh debug build; a launcher (say `taskset -c 0`) runs the server. The CLI's
# config goes to $work/cli for the default name and $work/cli-<name> otherwise, exported as
# KEYLESS_CONFIG_DIR. Needs $root (the repository), $work, $out and the array pids (killed on
# exit by the caller's trap); sets bin, pid (the server's) and ports (storage, login,
# management, vault, identity, registry). Fails, showing the log, when the server does not answer.
start_keyless() {
  local name=${1:-keyless}
  if [ -n "${2:-}" ]; then
    bin=$2
  else
    cargo build --locked -p keyless >/dev/null
    bin=$root/target/debug/keyless
  fi
  local launcher=("${@:3}")
  local free_port='import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
  ports=()
  for _ in 1 2 3 4 5 6; do ports+=("$(python3 -c "$free_port")"); done
  "${launcher[@]}" "$bin" serve --data-dir "$work/$name" --storage-port "${ports[0]}" --login-port "${ports[1]}" \
    --management-port "${ports[2]}" --vault-port "${ports[3]}" --identity-port "${ports[4]}" \
    --registry-port "${ports[5]}" >"$out/$name.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  local up=
  for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:${ports[4]}/healthz" && { up=1; break; }; sleep 0.1; done
  [ -n "$up" ] || { echo "keyless did not answer; its log:" >&2; cat "$out/$name.log" >&2; return 1; }
  if [ "$name" = keyless ]; then KEYLESS_CONFIG_DIR=$work/cli; else KEYLESS_CONFIG_DIR=$work/cli-$name; fi
  export KEYLESS_CONFIG_DIR
  local password
  password=$(python3 -c "import json;print(json.load(open('$work/$name/admin.json'))['password'])")
  "$bin" login --data-dir "$work/$name" -u admin@keyless.local -p "$password" -o none
}
