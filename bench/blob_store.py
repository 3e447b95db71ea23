"""Blob PUT and GET through keyless with its metadata in SQLite or PostgreSQL and its bytes in
local files or an object store, in one run: the same client, sizes and counts against one
server per combination, on loopback.

    eval "$(scripts/object-stores up /tmp/stores .venv/bin/python)"
    eval "$(scripts/postgres up /tmp/pg)"
    .venv/bin/python bench/blob_store.py [--count 50] [--release]

Each figure is the median and the total rate over --count requests (bounded) of one size,
one request at a time, after a warm-up; then small PUTs from --threads clients at once, where
SQLite's group commit and PostgreSQL's concurrent transactions show (PUTs per second). The object-store runs use $KEYLESS_TEST_S3_URL (moto)
and, when set, $KEYLESS_TEST_AZURE_BLOB_URL (Azurite); the PostgreSQL runs a new database on
$KEYLESS_TEST_POSTGRES_URL.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from azure.storage.blob import BlobServiceClient

ROOT = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(binary, work, extra):
    ports = [free_port() for _ in range(5)]
    names = ["storage", "login", "management", "vault", "identity"]
    args = [binary, "serve", "--data-dir", str(work / "data")]
    for name, port in zip(names, ports):
        args += [f"--{name}-port", str(port)]
    proc = subprocess.Popen(args + extra, stdout=open(work / "serve.log", "wb"), stderr=subprocess.STDOUT)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{ports[4]}/healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    env = {**os.environ, "KEYLESS_CONFIG_DIR": str(work / "cli"), "KEYLESS_DATA_DIR": str(work / "data")}
    admin = json.loads((work / "data" / "admin.json").read_text())

    def cli(*a):
        out = subprocess.run([binary, *a], env=env, check=True, capture_output=True, text=True).stdout
        return json.loads(out) if out.strip() else None

    cli("login", "-u", admin["username"], "-p", admin["password"])
    cli("storage", "account", "create", "-n", "bench", "-g", "default")
    key = cli("storage", "account", "keys", "list", "-n", "bench", "-g", "default")[0]["value"]
    info = json.loads((work / "data" / "endpoints.json").read_text())
    client = BlobServiceClient(f"{info['storage']}/bench", connection_verify=info["ca_file"],
                               credential={"account_name": "bench", "account_key": key},
                               max_single_put_size=64 * 1024 * 1024)
    return proc, client


def measure(client, size, count):
    container = client.get_container_client(f"c{uuid.uuid4().hex[:8]}")
    container.create_container()
    body = os.urandom(size)
    blob = container.get_blob_client("warm")
    blob.upload_blob(body)
    blob.download_blob().readall()
    results = {}
    for op in ("put", "get"):
        times = []
        start = time.perf_counter()
        for i in range(count):
            t = time.perf_counter()
            if op == "put":
                container.get_blob_client(f"b{i}").upload_blob(body, overwrite=True)
            else:
                assert len(container.get_blob_client(f"b{i}").download_blob().readall()) == size
            times.append(time.perf_counter() - t)
        total = time.perf_counter() - start
        results[op] = (statistics.median(times) * 1000, size * count / total / 1e6)
    return results


def measure_concurrent(client, threads, count):
    """4 KiB PUTs of distinct blobs from `threads` clients at once: PUTs per second."""
    from concurrent.futures import ThreadPoolExecutor
    container = client.get_container_client(f"c{uuid.uuid4().hex[:8]}")
    container.create_container()
    body = os.urandom(4096)

    def put(i):
        container.get_blob_client(f"p{i}").upload_blob(body, overwrite=True)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, range(threads)))  # warm the connections
        start = time.perf_counter()
        list(pool.map(put, range(count)))
        return count / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--release", action="store_true")
    parser.add_argument("--threads", type=int, default=16)
    a = parser.parse_args()
    count = max(1, min(a.count, 500))
    threads = max(1, min(a.threads, 64))
    profile = "release" if a.release else "debug"
    subprocess.run(["cargo", "build", "--locked", "-p", "keyless"] + (["--release"] if a.release else []),
                   cwd=ROOT, check=True)
    binary = str(ROOT / "target" / profile / "keyless")
    bytes_in = [("files", lambda: [])]
    for var, name in [("KEYLESS_TEST_S3_URL", "S3"), ("KEYLESS_TEST_AZURE_BLOB_URL", "Azurite")]:
        if os.environ.get(var):
            bytes_in.append((name, lambda var=var: ["--blob-store",
                                                    f"{os.environ[var].rstrip('/')}/bench-{uuid.uuid4().hex[:8]}"]))
    metadata_in = [("SQLite", lambda: [])]
    if os.environ.get("KEYLESS_TEST_POSTGRES_URL"):
        sys.path.insert(0, str(ROOT / "tests" / "clients"))
        from conftest import create_database
        metadata_in.append(("PostgreSQL", lambda: ["--metadata",
                                                   create_database(os.environ["KEYLESS_TEST_POSTGRES_URL"])]))
    if len(bytes_in) == 1 and len(metadata_in) == 1:
        sys.exit("neither an object store nor PostgreSQL in the environment: "
                 "eval \"$(scripts/object-stores up DIR PYTHON)\" and \"$(scripts/postgres up DIR)\" first")
    backends = [(f"{meta} + {where}", (m, b)) for meta, m in metadata_in for where, b in bytes_in]
    print(f"{'metadata + bytes':<22}{'size':>8}{'PUT ms':>10}{'PUT MB/s':>10}{'GET ms':>10}{'GET MB/s':>10}")
    for name, (metadata, blob_store) in backends:
        extra = metadata() + blob_store()
        with tempfile.TemporaryDirectory() as work:
            proc, client = serve(binary, Path(work), extra)
            try:
                for size in (4 * 1024, 1024 * 1024, 16 * 1024 * 1024):
                    r = measure(client, size, count if size <= 1024 * 1024 else max(1, count // 5))
                    print(f"{name:<22}{size // 1024:>7}K{r['put'][0]:>10.1f}{r['put'][1]:>10.1f}"
                          f"{r['get'][0]:>10.1f}{r['get'][1]:>10.1f}")
                rate = measure_concurrent(client, threads, count * 4)
                print(f"{name:<22}{'4K':>8}  {rate:.0f} PUTs/s from {threads} clients at once")
            finally:
                proc.terminate()
                proc.wait(30)


if __name__ == "__main__":
    main()
