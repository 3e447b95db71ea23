#!/usr/bin/env bash
# How long a revocation made through one server takes to be enforced by another: three
# servers on one PostgreSQL database and one S3-compatible store (the several-servers
# test's setup), a role assignment created and deleted through A ROUNDS times (default
# 100, at most 1000), C polled every 5 ms; prints the median and the maximum delay.
#
#   bench/revocation.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-100}
work=$(mktemp -d /var/tmp/keyless-revocation.XXXXXX)
trap 'scripts/object-stores down "$work/stores" || true; scripts/postgres down "$work/pg" || true' EXIT
cargo build --locked -p keyless
eval "$(scripts/postgres up "$work/pg")"
eval "$(scripts/object-stores up "$work/stores" .venv/bin/python)"
cd tests/clients
KEYLESS_REVOCATION_ROUNDS="$rounds" KEYLESS_BIN="$PWD/../../target/debug/keyless" \
  ../../.venv/bin/python -m pytest -q -s -p no:cacheprovider test_several_servers.py -k role_assignment \
  | grep -E "revocation|passed|failed"
