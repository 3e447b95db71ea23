"""Fixtures for the real-client tests.

Each test module gets a keyless server started from the built binary on
ephemeral loopback ports in a temporary data dir, and the environment a client
needs. A guard fails any test whose process tries to reach a non-loopback
address: the Azure SDKs try the public cloud on their own (instance discovery,
the IMDS address), and such a test would otherwise pass or fail by accident.
"""

import json
import os
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI_CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"

# --- the loopback guard ------------------------------------------------------

from loopback_guard import ATTEMPTS as _ATTEMPTS  # noqa: E402  (installs the guard on import)


@pytest.fixture(autouse=True)
def loopback_only():
    """Fails the test if anything in it tried to leave the machine."""
    start = len(_ATTEMPTS)
    yield
    leaked = _ATTEMPTS[start:]
    assert not leaked, f"the test tried to reach non-loopback addresses: {leaked}"


# --- the server --------------------------------------------------------------


def keyless_bin():
    path = Path(os.environ.get("KEYLESS_BIN", ROOT / "target" / "debug" / "keyless"))
    if not path.exists():
        raise RuntimeError(f"{path} does not exist: build it with `cargo build -p keyless` or set KEYLESS_BIN")
    return str(path)


def free_ports(n):
    sockets = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def psql(url, statement):
    """Runs one SQL statement on the PostgreSQL database at `url`."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))
    subprocess.run([str(found[-1]) if found else "psql", url, "-v", "ON_ERROR_STOP=1", "-qc", statement],
                   check=True, capture_output=True, timeout=60)


def create_database(server_url):
    """A new, empty database on the PostgreSQL server at `server_url`; its URL."""
    from urllib.parse import urlsplit, urlunsplit
    name = f"keyless_{os.urandom(8).hex()}"
    psql(server_url, f"CREATE DATABASE {name}")
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


class Server:
    """A keyless server process and what clients need to reach it."""

    def __init__(self, root: Path, local_blobs=False):
        self.root = root
        # A test of the local-files backend itself keeps it in every mode.
        self.local_blobs = local_blobs
        self.data_dir = root / "data"
        self.config_dir = root / "cli"
        self.log_path = root / "serve.log"
        self.host = "127.0.0.1"
        self.ports = dict(zip(["storage", "login", "management", "vault", "identity", "registry"], free_ports(6)))
        self.proc = None
        self.logs = []

    def start(self, extra=()):
        args = [keyless_bin(), "serve", "--data-dir", str(self.data_dir)]
        for name, port in self.ports.items():
            args += [f"--{name}-port", str(port)]
        args += self.shared_stores(extra)
        args += list(extra)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                     env={**os.environ, "RUST_LOG": "debug"})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"keyless serve exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            try:
                urllib.request.urlopen(f"http://{self.host}:{self.ports['identity']}/healthz", timeout=1).read()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("keyless serve did not become ready within 60 s")
        info = json.loads((self.data_dir / "endpoints.json").read_text())
        self.info = info
        self.ca = info["ca_file"]
        self.login = info["login"]
        self.management = info["management"]
        self.tenant = info["tenant"]
        # A server that joined a store another server bootstrapped has no admin file.
        admin_file = self.data_dir / "admin.json"
        self.admin = json.loads(admin_file.read_text()) if admin_file.exists() else None
        return self

    def shared_stores(self, extra):
        """The test command's other mode: with KEYLESS_TEST_METADATA_URL (a PostgreSQL
        server's URL) every server gets a database of its own there, and with
        KEYLESS_TEST_BLOB_STORE (an object store URL) a prefix of its own; a restarted
        server gets its own back."""
        args = []
        if not hasattr(self, "database"):
            self.database = None
            if url := os.environ.get("KEYLESS_TEST_METADATA_URL"):
                self.database = create_database(url)
            self.blob_store = None
            if (store := os.environ.get("KEYLESS_TEST_BLOB_STORE")) and not self.local_blobs:
                self.blob_store = f"{store.rstrip('/')}/{os.urandom(8).hex()}"
        if self.database and "--metadata" not in extra:
            args += ["--metadata", self.database]
        if self.blob_store and "--blob-store" not in extra:
            args += ["--blob-store", self.blob_store]
        return args

    def stop(self, kill=False):
        if self.proc and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            self.proc.wait(timeout=30)

    def env(self, **extra):
        """The environment `keyless env` prints, plus the CLI's profile dir."""
        out = subprocess.run([keyless_bin(), "env", "--no-check", "--data-dir", str(self.data_dir)], check=True,
                             capture_output=True, text=True,
                             env={**os.environ, "KEYLESS_CONFIG_DIR": str(self.config_dir)}).stdout
        env = {}
        for line in out.splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            if key == "PATH":
                value = value.replace('"$PATH"', os.environ["PATH"])
            env[key] = value.strip("'")
        env["KEYLESS_CONFIG_DIR"] = str(self.config_dir)
        env["KEYLESS_DATA_DIR"] = str(self.data_dir)
        env.update(extra)
        return env

    def cli(self, *args, env=None, check=True):
        """Runs the keyless CLI; returns its parsed JSON output (or the process when check=False)."""
        full_env = {**os.environ, **self.env(), **(env or {})}
        proc = subprocess.run([keyless_bin(), *args], env=full_env, capture_output=True, text=True, timeout=120)
        if not check:
            return proc
        if proc.returncode != 0:
            raise AssertionError(f"keyless {' '.join(args)} failed: {proc.stderr}")
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    def login_admin(self):
        return self.cli("login", "-u", self.admin["username"], "-p", self.admin["password"])

    def ssl_context(self):
        return ssl.create_default_context(cafile=self.ca)

    def server_log(self):
        return self.log_path.read_text(errors="replace")


def refused_on_one_connection(server, host, port, method, path, body, headers, times=20):
    """Sends `times` requests with `body` over one connection (`path()` names each) and returns
    their answers as (status, headers, text); fails if the server closed the connection."""
    import http.client

    conn = http.client.HTTPSConnection(host, port, context=server.ssl_context(), timeout=30)
    answers = []
    try:
        conn.connect()
        first = conn.sock
        for attempt in range(times):
            conn.request(method, path(), body=body, headers=headers)
            reply = conn.getresponse()
            answers.append((reply.status, reply.headers, reply.read().decode(errors="replace")))
            assert not reply.will_close and conn.sock is first, f"request {attempt}: the connection was closed"
    finally:
        conn.close()
    return answers


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("keyless")).start()
    srv.login_admin()
    yield srv
    srv.stop()


@pytest.fixture
def client_env(server, monkeypatch):
    """Exports the server's client environment into this process."""
    env = server.env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_USERNAME",
                "AZURE_PASSWORD", "AZURE_CLIENT_CERTIFICATE_PATH", "IDENTITY_ENDPOINT", "MSI_ENDPOINT"):
        monkeypatch.delenv(key, raising=False)
    return env
