#!/usr/bin/env bash
# adlfs's own test suite (repository fsspec/adlfs, adlfs/tests, which its CI runs against
# Azurite in Docker) against keyless: on a flat account, and with --hns on an account with a
# hierarchical namespace.
#   bench/adlfs_suite.sh ADLFS_CHECKOUT [--hns]
# ADLFS_CHECKOUT is a clone of github.com/fsspec/adlfs; its package and test dependencies go to
# a venv under bench/.cache/adlfs-venv, whose copy of the tests is pointed at keyless's TLS
# listener and its account key instead of the emulator's; the Docker fixture that starts
# Azurite is left out. Prints pytest's summary; the failures' reasons go to
# bench/.cache/adlfs-suite/.
set -euo pipefail
cd "$(dirname "$0")/.."
checkout=$(realpath "${1:?give a clone of fsspec/adlfs}")
hns=${2:-}
root=$PWD
out=${OUT:-$root/bench/.cache/adlfs-suite}
mkdir -p "$out"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

venv=$root/bench/.cache/adlfs-venv
# The test requirements adlfs's CI installs, and adlfs itself. Its pytest-asyncio (0.21)
# needs a pytest older than 8.
if ! [ -x "$venv/bin/python" ] ||
  ! "$venv/bin/python" -c 'import adlfs, pytest, pytest_asyncio; assert pytest.version_tuple < (8,)' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$checkout/requirements/base.txt" "pytest<8" "$checkout"
fi
. bench/keyless_instance.sh
start_keyless
if [ "$hns" = --hns ]; then
  "$bin" storage account create -n devstoreaccount1 -g default --hns -o none
else
  "$bin" storage account create -n devstoreaccount1 -g default -o none
fi
key=$("$bin" storage account keys list -n devstoreaccount1 -g default --query "[0].value" -o tsv)

# The tests import their constants as `adlfs.tests.constants`: the venv's copy of the tests is
# refreshed from the checkout and pointed at this run's keyless.
tests=$("$venv/bin/python" -c 'import adlfs, os; print(os.path.join(os.path.dirname(adlfs.__file__), "tests"))')
rm -rf "$tests" && cp -r "$checkout/adlfs/tests" "$tests"
python3 - "$tests" "${ports[0]}" "$key" <<'PY'
import pathlib, re, sys
tests, port, key = sys.argv[1:]
constants = pathlib.Path(tests, "constants.py")
text = constants.read_text()
text = text.replace('HOST = "127.0.0.1:10000"', f'HOST = "127.0.0.1:{port}"')
text = text.replace('URL = f"http://{HOST}"', 'URL = f"https://{HOST}"')
text = text.replace("DefaultEndpointsProtocol=http;", "DefaultEndpointsProtocol=https;")
text = re.sub(r'KEY = "[^"]*"', f'KEY = "{key}"', text)
constants.write_text(text)
conftest = pathlib.Path(tests, "conftest.py")
text = conftest.read_text()
text = text.replace("import docker\n", "")
text = text.replace("DefaultEndpointsProtocol=http;", "DefaultEndpointsProtocol=https;")
# keyless is already running: the fixture that starts Azurite in Docker does nothing.
text = re.sub(r"def spawn_azurite\(\):.*?(?=\n\n\n|\Z)", "def spawn_azurite():\n    yield None", text, flags=re.S)
conftest.write_text(text)
PY
(cd "$out" && SSL_CERT_FILE="$work/keyless/tls/ca.pem" REQUESTS_CA_BUNDLE="$work/keyless/tls/ca.pem" \
  timeout 3600 "$venv/bin/python" -m pytest -q -p no:cacheprovider --import-mode=importlib \
  -o asyncio_mode=auto -o xfail_strict=true \
  --host "127.0.0.1:${ports[0]}" "$tests" -rfs >"$out/pytest${hns:+-hns}.log" 2>&1 || true)
tail -1 "$out/pytest${hns:+-hns}.log"
