"""Reading through a job's ro_mount against plain bearer GETs of the same blob, in one run:

  * sequential: a 1 GiB blob read whole (1 MiB reads) by a job's code through its ro_mount,
    timed inside the job, against curl's bearer-token GET of the blob from the storage
    listener to /dev/null, the two in turns, best of [runs] each. Target: mount / plain >= 0.8.
  * random: 64 KiB reads at random offsets of the same blob (a fixed seed, at most
    RANDOM_READS reads or RANDOM_S seconds), through the mount of a fresh job (its cache
    cold) and as bearer range GETs on one kept-alive connection (python requests).

Both sides read as the same user (a credential-less datastore and a user_identity job), so
the mount's figure holds the identity's token, the storage log and the agent's cache, and
the plain one the same token checks and log. Loopback only; every loop is bounded in count
and time.

    .venv/bin/python bench/mount.py [runs]      (as root, after ./scripts/test made the venv)

KEYLESS_BIN picks the server binary (default target/release/keyless);
KEYLESS_BENCH_NO_BUILD=1 skips the `cargo build --release` at the start.
"""

import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "clients"))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("KEYLESS_BIN", str(ROOT / "target" / "release" / "keyless"))
from conftest import Server  # noqa: E402  (also installs the loopback guard)
from jobs import COMPUTE_YAML, STORAGE_VERSION, Jobs, curl  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
SIZE = 1024 ** 3
RANDOM_READS = 2000
RANDOM_S = 60
LIMIT_S = 600
TARGET = 0.8

# The job's code: its figures on one line, after MOUNT.
READER = r'''
import os, random, sys, time
path, mode, reads, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
size = os.path.getsize(path)
fd = os.open(path, os.O_RDONLY)
t0 = time.monotonic()
if mode == "seq":
    n, buf = 0, bytearray(1 << 20)
    while True:
        got = os.readv(fd, [buf])
        if not got:
            break
        n += got
    assert n == size, (n, size)
    print("MOUNT", n / 1e6 / (time.monotonic() - t0))
else:
    rnd, done = random.Random(7), 0
    while done < reads and time.monotonic() - t0 < limit:
        assert len(os.pread(fd, 65536, rnd.randrange(0, size - 65536))) == 65536
        done += 1
    print("MOUNT", done / (time.monotonic() - t0))
'''


def main():
    if os.environ.get("KEYLESS_BENCH_NO_BUILD") != "1":
        subprocess.run(["cargo", "build", "--release", "--locked", "-q", "-p", "keyless"], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        srv = Server(Path(tmp)).start()
        try:
            return bench(srv, Path(tmp))
        finally:
            srv.stop()


def bench(srv, tmp):
    srv.login_admin()
    sub = srv.admin["subscription"]
    srv.cli("storage", "account", "create", "-n", "benchmount", "-g", "default")
    account_id = f"/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.Storage/storageAccounts/benchmount"
    srv.cli("role", "assignment", "create", "--assignee", srv.admin["username"],
            "--role", "Storage Blob Data Contributor", "--scope", account_id)
    (tmp / "ws.yml").write_text("name: bench-ws\n")
    srv.cli("ml", "workspace", "create", "-f", str(tmp / "ws.yml"), "-g", "default")
    (tmp / "compute.yml").write_text(COMPUTE_YAML)
    srv.cli("ml", "compute", "create", "-f", str(tmp / "compute.yml"), "-w", "bench-ws", "-g", "default")
    (tmp / "ds.yml").write_text("name: mydata\ntype: azure_blob\naccount_name: benchmount\ncontainer_name: data\n")
    srv.cli("ml", "datastore", "create", "-f", str(tmp / "ds.yml"), "-w", "bench-ws", "-g", "default")
    arm = srv.cli("account", "get-access-token")["accessToken"]
    storage = srv.cli("account", "get-access-token", "--resource", "https://storage.azure.com")["accessToken"]
    common = {"Authorization": f"Bearer {storage}", "x-ms-version": STORAGE_VERSION}
    url = f"{srv.info['storage']}/benchmount/data/big.bin"
    requests.put(f"{srv.info['storage']}/benchmount/data?restype=container", headers=common,
                 verify=srv.ca).raise_for_status()
    with tempfile.NamedTemporaryFile(dir="/var/tmp") as f:
        block = os.urandom(8 << 20)
        for _ in range(SIZE // len(block)):
            f.write(block)
        f.flush()
        curl(["-T", f.name, "-H", "x-ms-blob-type: BlockBlob", url], common, srv.ca)

    jobs = Jobs(srv, arm)

    def mounted(mode):
        name = f"{mode}-{uuid.uuid4().hex[:8]}"
        props = {"jobType": "Command", "computeId": "azureml:cpu",
                 "identity": {"identityType": "UserIdentity"},
                 "command": f"/usr/bin/python3 -c {shlex.quote(READER)} ${{{{inputs.d}}}} {mode} "
                            f"{RANDOM_READS} {RANDOM_S}",
                 "inputs": {"d": {"jobInputType": "uri_file", "mode": "ReadOnlyMount",
                                  "uri": "azureml://datastores/mydata/paths/big.bin"}}}
        # Polled every 0.2 s (a sampler given), not every 5 ms: the job has the CPU.
        _, _, last = jobs.run(name, props, limit=LIMIT_S, sample=lambda: None)
        line = next(x for x in last["text"].splitlines() if x.startswith("MOUNT "))
        return float(line.split()[1])

    def plain_get():
        t0 = time.monotonic()
        curl(["-o", "/dev/null", url], common, srv.ca)
        return SIZE / 1e6 / (time.monotonic() - t0)

    # Taken in turns, so that both sides see the machine in the same state.
    print(f"== sequential read of {SIZE >> 20} MiB, best of {RUNS}, the two sides in turns")
    plain, seq = [], []
    for _ in range(RUNS):
        plain.append(plain_get())
        seq.append(mounted("seq"))
    print(f"  plain GET (bearer, curl)   {max(plain):8.1f} MB/s   runs: {', '.join(f'{x:.1f}' for x in plain)}")
    print(f"  through ro_mount (job)     {max(seq):8.1f} MB/s   runs: {', '.join(f'{x:.1f}' for x in seq)}")
    ratio = max(seq) / max(plain)
    print(f"  mount / plain: {ratio:.2f}  (target ≥ {TARGET}: {'met' if ratio >= TARGET else 'MISSED'})")

    print(f"== random 64 KiB reads (at most {RANDOM_READS} or {RANDOM_S} s)")
    session = requests.Session()
    rnd, done, t0 = random.Random(7), 0, time.monotonic()
    while done < RANDOM_READS and time.monotonic() - t0 < RANDOM_S:
        at = rnd.randrange(0, SIZE - 65536)
        r = session.get(url, headers={**common, "x-ms-range": f"bytes={at}-{at + 65535}"}, verify=srv.ca)
        assert r.status_code == 206 and len(r.content) == 65536, r.status_code
        done += 1
    plain_rand = done / (time.monotonic() - t0)
    print(f"  plain range GETs (bearer, one connection)  {plain_rand:8.1f} reads/s")
    rand = mounted("rand")
    print(f"  through ro_mount (job, cold cache)         {rand:8.1f} reads/s   ({rand / plain_rand:.2f}×)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
