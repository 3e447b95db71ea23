"""Pulling an image from a keyless registry against plain blob GETs of the same bytes, in one run:

  * a 200 MiB image of random bytes in four 50 MiB layers, pushed once with skopeo;
  * "layers": its four layers fetched by curl from the registry listener with an access token
    (one process, four URLs, one connection), to /dev/null, best of RUNS;
  * "blob": the same 200 MiB as one block blob GET from the storage listener with a bearer
    token, to /dev/null, best of RUNS;
  * "skopeo": a whole pull by skopeo into an OCI layout on disk (a client's view: the token
    exchange, every digest verified, the files written), best of RUNS.

Both curl figures go through TLS, token checks, RBAC and a log record per request. Loopback
only (skopeo runs in a network namespace where only the registry port is reachable); every loop
is bounded in count and time.

    .venv/bin/python bench/registry.py [runs]      (as root, after ./scripts/test made the venv)

KEYLESS_BIN picks the server binary (default target/release/keyless);
KEYLESS_BENCH_NO_BUILD=1 skips the `cargo build --release` at the start.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "clients"))
os.environ.setdefault("KEYLESS_BIN", str(ROOT / "target" / "release" / "keyless"))
import loopback_guard  # noqa: E402
from conftest import Server  # noqa: E402
from netns_guard import run_isolated  # noqa: E402
from oci_image import build_random_image  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
MIB = 1024 * 1024
SIZE = 200 * MIB
LAYER = 50 * MIB
NULL = "00000000-0000-0000-0000-000000000000"


def keyless_names():
    real = loopback_guard._real_getaddrinfo

    def resolve(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if isinstance(name, str) and name.endswith(".keyless.localhost"):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    loopback_guard._real_getaddrinfo = resolve


def timed(argv, **kwargs):
    started = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True, timeout=600, **kwargs)
    return time.monotonic() - started


def main():
    if not os.environ.get("KEYLESS_BENCH_NO_BUILD"):
        subprocess.run(["cargo", "build", "--release", "-p", "keyless"], cwd=ROOT, check=True)
    keyless_names()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        tmp = Path(tmp)
        (tmp / "server").mkdir()
        srv = Server(tmp / "server").start()
        try:
            srv.login_admin()
            bench(srv, tmp)
        finally:
            srv.stop()


def bench(srv, tmp):
    reg = srv.cli("acr", "create", "-n", "benchacr", "-g", "default")
    login_server = reg["properties"]["loginServer"]
    host, port = login_server.rsplit(":", 1)
    refresh = srv.cli("acr", "login", "-n", "benchacr", "--expose-token")["accessToken"]
    image = build_random_image(tmp / "img", SIZE, LAYER)
    certs = tmp / "certs"
    certs.mkdir()
    shutil.copy(srv.ca, certs / "ca.crt")

    def skopeo(*args):
        argv = [sys.executable, "-c", "import os, sys; os.execvp(sys.argv[1], sys.argv[1:])", "skopeo", *args]
        started = time.monotonic()
        done = run_isolated(argv, dict(os.environ), [int(port)], [f"127.0.0.1 {host}"], timeout=600)
        if done.returncode != 0:
            raise RuntimeError(done.stderr)
        return time.monotonic() - started

    skopeo("copy", "--dest-cert-dir", str(certs), "--dest-creds", f"{NULL}:{refresh}", f"oci:{tmp / 'img'}:1",
           f"docker://{login_server}/bench/big:1")
    token = requests.post(f"https://{login_server}/oauth2/token", verify=srv.ca, data={
        "grant_type": "refresh_token", "service": login_server, "scope": "repository:bench/big:pull",
        "refresh_token": refresh}).json()["access_token"]

    # The same bytes as one blob in storage.
    account = srv.cli("storage", "account", "create", "-n", "benchregsa", "-g", "default")
    me = srv.admin["username"]
    srv.cli("role", "assignment", "create", "--assignee", me, "--role", "Storage Blob Data Contributor",
            "--scope", account["id"])
    srv.cli("storage", "container", "create", "--account-name", "benchregsa", "-n", "images", "--auth-mode", "login")
    whole = tmp / "whole.bin"
    with open(whole, "wb") as out:
        for digest in image["layers"]:
            with open(tmp / "img" / "blobs" / "sha256" / digest.split(":")[1], "rb") as f:
                shutil.copyfileobj(f, out)
    srv.cli("storage", "blob", "upload", "--account-name", "benchregsa", "-c", "images", "-n", "whole.bin", "-f",
            str(whole), "--auth-mode", "login")
    storage_token = srv.cli("account", "get-access-token", "--resource", "https://storage.azure.com")["accessToken"]
    storage = srv.info["storage"]
    total = whole.stat().st_size

    resolve = f"{host}:{port}:127.0.0.1"
    layer_urls = [f"https://{login_server}/v2/bench/big/blobs/{d}" for d in image["layers"]]
    curl = ["curl", "-sSf", "--max-time", "600", "--cacert", srv.ca]
    layers_s = min(timed([*curl, "--resolve", resolve, "-H", f"Authorization: Bearer {token}",
                          *[x for u in layer_urls for x in (u, "-o", "/dev/null")]]) for _ in range(RUNS))
    blob_s = min(timed([*curl, "-H", f"Authorization: Bearer {storage_token}", "-H", "x-ms-version: 2021-08-06",
                        f"{storage}/benchregsa/images/whole.bin", "-o", "/dev/null"]) for _ in range(RUNS))
    pulls = []
    for i in range(RUNS):
        pulls.append(skopeo("copy", "--src-cert-dir", str(certs), "--src-creds", f"{NULL}:{refresh}",
                            f"docker://{login_server}/bench/big:1", f"oci:{tmp / f'pulled{i}'}:1"))
    mb = total / 1e6
    print(f"image: {total / MIB:.0f} MiB in {len(image['layers'])} layers of {LAYER // MIB} MiB (random bytes)")
    print(f"| read | s (best of {RUNS}) | MB/s |")
    print("|---|---|---|")
    print(f"| registry: the 4 layers by curl, access token | {layers_s:.3f} | {mb / layers_s:,.0f} |")
    print(f"| storage: the same bytes as one blob by curl, bearer | {blob_s:.3f} | {mb / blob_s:,.0f} |")
    print(f"| skopeo copy docker:// → oci: (exchange, digests, files) | {min(pulls):.3f} | {mb / min(pulls):,.0f} |")
    print(f"layers / blob: {blob_s / layers_s:.2f}")


if __name__ == "__main__":
    main()
