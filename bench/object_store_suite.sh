#!/usr/bin/env bash
# The Rust object_store crate's own Azure integration test (`azure::tests::azure_blob_test`,
# which its CI runs against Azurite) against keyless, unmodified, twice: in emulator mode
# (path-style URL and account key, as object_store talks to Azurite) and with an account
# endpoint (`azure_storage_endpoint`, as it talks to a real account).
#   bench/object_store_suite.sh OBJECT_STORE_CHECKOUT
# OBJECT_STORE_CHECKOUT is a clone of github.com/apache/arrow-rs-object-store. Its build
# goes to bench/.cache/object-store-target, with the stable toolchain (the checkout pins its own;
# RUSTUP_TOOLCHAIN chooses another). Prints one line per mode: passed or failed,
# with the failure's first lines in bench/.cache/object-store-suite/.
set -euo pipefail
cd "$(dirname "$0")/.."
checkout=$(realpath "${1:?give a clone of apache/arrow-rs-object-store}")
root=$PWD
out=${OUT:-$root/bench/.cache/object-store-suite}
mkdir -p "$out"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

. bench/keyless_instance.sh
start_keyless
"$bin" storage account create -n objectstore -g default -o none
key=$("$bin" storage account keys list -n objectstore -g default --query "[0].value" -o tsv)
"$bin" storage container create -n test-bucket --account-name objectstore -o none

run_mode() { # name, env...
  local name=$1; shift
  if (cd "$checkout" && env "$@" TEST_INTEGRATION=1 SSL_CERT_FILE="$work/keyless/tls/ca.pem" \
      AZURE_STORAGE_ACCOUNT_NAME=objectstore AZURE_STORAGE_ACCOUNT_KEY="$key" AZURE_CONTAINER_NAME=test-bucket \
      CARGO_TARGET_DIR="$root/bench/.cache/object-store-target" RUSTUP_TOOLCHAIN="${RUSTUP_TOOLCHAIN:-stable}" \
      timeout 3600 cargo test --features azure --lib azure::tests::azure_blob_test -- --exact --nocapture \
      >"$out/$name.log" 2>&1); then
    echo "$name: passed"
  else
    echo "$name: failed (see $out/$name.log)"; grep -m5 -E "panicked|assert" "$out/$name.log" || true
  fi
}
run_mode emulator AZURE_STORAGE_USE_EMULATOR=true AZURITE_BLOB_STORAGE_URL="https://127.0.0.1:${ports[0]}"
run_mode endpoint AZURE_STORAGE_ENDPOINT="https://127.0.0.1:${ports[0]}/objectstore"
