#!/usr/bin/env bash
# Azurite's own blob API tests (repository Azure/Azurite, tests/blob, mocha with
# @azure/storage-blob) against keyless, and against Azurite itself in the same run.
# Azurite's live mode points the tests at any account through a connection string;
# keyless serves the account path-style over TLS with its generated CA. Azurite's
# own selection (--grep @loki) is used for both.
#   [FILES="tests/blob/apis/blob.test.ts …"] [ONLY=keyless] bench/azurite_suite.sh AZURITE_CHECKOUT [mocha --grep pattern]
# AZURITE_CHECKOUT is a clone of github.com/Azure/Azurite (`npm ci` is run in it when
# node_modules is missing). Prints per-file pass/fail/pending counts for each target
# and writes the failing tests' titles and first error lines to $OUT (default
# bench/.cache/azurite-suite/).
set -euo pipefail
cd "$(dirname "$0")/.."
azurite=$(realpath "${1:?give a clone of Azure/Azurite}")
grep_pattern=${2:-@loki}
root=$PWD
out=${OUT:-$root/bench/.cache/azurite-suite}
mkdir -p "$out"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

[ -d "$azurite/node_modules" ] || (cd "$azurite" && npm ci --no-audit --no-fund --ignore-scripts >/dev/null)
. bench/keyless_instance.sh
start_keyless
"$bin" storage account create -n devstoreaccount1 -g default --sku Standard_RAGRS --allow-blob-public-access true -o none
key=$("$bin" storage account keys list -n devstoreaccount1 -g default --query "[0].value" -o tsv)
conn="DefaultEndpointsProtocol=https;AccountName=devstoreaccount1;AccountKey=$key;BlobEndpoint=https://127.0.0.1:${ports[0]}/devstoreaccount1"

# A scratch copy of the checkout for the keyless run: live mode's stand-in server names a
# host of its own ("live.azure"), and some files build plain-HTTP base URLs from it; both
# are pointed at keyless's TLS listener. Azurite's own run uses the checkout unchanged.
live=$work/azurite-live
mkdir -p "$live"
(cd "$azurite" && tar --exclude=./node_modules --exclude=./.git -cf - .) | (cd "$live" && tar -xf -)
ln -s "$azurite/node_modules" "$live/node_modules"
sed -i "s|{ host: \"live.azure\", port: 443 }|{ host: \"127.0.0.1\", port: ${ports[0]} }|" "$live/tests/BlobTestServerFactory.ts"
grep -rl 'http://${server.config.host}' "$live/tests" | xargs sed -i 's|http://${server.config.host}|https://${server.config.host}|g'
"$bin" storage account create -n devstoreaccount2 -g default --sku Standard_RAGRS --allow-blob-public-access true -o none
# Files that sign with the emulator's well-known keys (imported, or their own) get keyless's.
key2=$("$bin" storage account keys list -n devstoreaccount1 -g default --query "[1].value" -o tsv)
other=$("$bin" storage account keys list -n devstoreaccount2 -g default --query "[0].value" -o tsv)
python3 - "$live" "$key" "$key2" "$other" <<'PY'
import pathlib, re, sys
live, key, key2, other = sys.argv[1:]
constants = pathlib.Path(live, "src/blob/utils/constants.ts")
text = constants.read_text()
text = re.sub(r'(EMULATOR_ACCOUNT_KEY_STR =\s*)"[^"]*"', lambda m: f'{m.group(1)}"{key}"', text)
constants.write_text(text)
sas = pathlib.Path(live, "tests/blob/sas.test.ts")
text = sas.read_text()
text = re.sub(r'(EMULATOR_ACCOUNT2_KEY_STR =\s*)"[^"]*"', lambda m: f'{m.group(1)}"{other}"', text)
text = re.sub(r'(EMULATOR_ACCOUNT_KEY2_STR =\s*)"[^"]*"', lambda m: f'{m.group(1)}"{key2}"', text)
sas.write_text(text)
PY

# FILES narrows the run to some test files (paths in the checkout); ONLY=keyless
# skips the run against Azurite.
read -ra files <<<"${FILES:-$(cd "$azurite" && echo tests/blob/*.test.ts tests/blob/apis/*.test.ts)}"
run_suite() { # name, checkout, extra env...
  local name=$1 dir=$2; shift 2
  (cd "$dir" && env "$@" TS_NODE_TRANSPILE_ONLY=1 TS_NODE_COMPILER_OPTIONS='{"rootDir":"."}' NODE_EXTRA_CA_CERTS="$work/keyless/tls/ca.pem" \
    NODE_TLS_REJECT_UNAUTHORIZED=0 AZURITE_TEST_INMEMORYPERSISTENCE=1 \
    timeout 3600 npx mocha --require ts-node/register --no-timeouts --grep "$grep_pattern" --exit \
    --reporter json --reporter-option "output=$out/$name.json" "${files[@]}" >/dev/null 2>&1 || true)
}
rm -f "$out/keyless.json"
run_suite keyless "$live" AZURITE_LIVE_TEST_CONNECTION_STRING="$conn"
rm -f "$out/azurite.json"
[ "${ONLY:-}" = keyless ] || run_suite azurite "$azurite"

python3 - "$out" "$azurite" <<'EOF'
import collections, json, os, sys
out, azurite = sys.argv[1], sys.argv[2]
counts = {}


def rel(path):
    path = path or "?"
    return path[path.index("tests/"):] if "tests/" in path else path


for name in ("keyless", "azurite"):
    path = os.path.join(out, f"{name}.json")
    if not os.path.exists(path):
        print(f"{name}: no report (mocha did not finish)"); continue
    report = json.load(open(path))
    per = collections.defaultdict(lambda: [0, 0, 0])
    for kind, slot in (("passes", 0), ("failures", 1), ("pending", 2)):
        for t in report.get(kind, []):
            per[rel(t.get("file"))][slot] += 1
    counts[name] = per
    with open(os.path.join(out, f"{name}-failures.txt"), "w") as f:
        for t in report.get("failures", []):
            first = (t.get("err", {}).get("message") or "").splitlines()[:1]
            f.write(f"{rel(t.get('file'))} :: {t['fullTitle']}\n    {first[0] if first else ''}\n")
files = sorted(set().union(*[set(c) for c in counts.values()]))
print(f"{'file':45} " + "  ".join(f"{n:>22}" for n in counts))
for f in files:
    print(f"{f:45} " + "  ".join("{:>8} pass {:>4} fail {:>2} pend".format(*counts[n].get(f, [0, 0, 0])) for n in counts))
for n, c in counts.items():
    p, fl, pe = (sum(v[i] for v in c.values()) for i in range(3))
    print(f"{n}: {p} passed, {fl} failed, {pe} pending of {p + fl + pe}")
EOF
