#!/usr/bin/env bash
# How much of a durable 4 KiB Put Blob's CPU is its bytes, and how much everything else: the
# committed tree built twice, as it is and with Put Blob binding an empty value where the row
# keeps a small blob's bytes, then the two run side by side by bench/ab.sh. The second build
# keeps the bytes nowhere (its blobs read back empty: it is a measurement, never a server to
# use), so its CPU per PUT is the least that any way of keeping them could reach while the
# blob's row stays in SQLite.
#   [CONNECTIONS=16] bench/put_bound.sh [rounds] [seconds]   (needs git, wrk, curl)
# Both builds come from a worktree of HEAD at target/put-bound/tree, built into
# target/put-bound (a cold build the first time); the load is bench/ab.sh's, bounded as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
rounds=${1:-8} seconds=${2:-3}
file=crates/keyless-store/src/meta/sqlite/direct.rs
bound_line='Content::Inline(bytes) => Some(bytes.as_ref()),'
grep -qF "$bound_line" "$file" || {
  echo "$file no longer binds a small blob's bytes as this script expects; update the script" >&2
  exit 1
}
out=$root/target/put-bound
tree=$out/tree
# A worktree left by a run that was killed is removed too, registered or not.
cleanup() {
  git worktree remove --force "$tree" 2>/dev/null || rm -rf "$tree"
  git worktree prune
}
trap cleanup EXIT
cleanup
mkdir -p "$out"
git worktree add --detach -q "$tree" HEAD
build() { (cd "$tree" && CARGO_TARGET_DIR=$out cargo build --release --locked -q -p keyless); }
build
cp "$out/release/keyless" "$out/as-is"
sed -i "s|$bound_line|Content::Inline(_) => Some(\&[][..]),|" "$tree/$file"
build
cp "$out/release/keyless" "$out/no-bytes"
echo "A: HEAD as it is; B: HEAD keeping no bytes for a small blob"
bench/ab.sh "$out/as-is" "$out/no-bytes" put "$rounds" "$seconds"
