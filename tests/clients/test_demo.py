"""`keyless serve --demo`: the README's quick start, run as written — alice's hello-census
job reads the data as alice; bob's is refused with the permission it lacks; the storage log
names alice and the job."""

import json
import time
from pathlib import Path

import pytest

from conftest import Server

ROOT = Path(__file__).resolve().parents[2]
JOB = str(ROOT / "examples" / "hello-census" / "job.yml")
AT = ("-w", "census-ws", "-g", "default")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("demo")).start(extra=("--demo",))
    record = srv.data_dir / "demo.json"
    deadline = time.monotonic() + 90
    while not record.exists() and time.monotonic() < deadline:
        assert srv.proc.poll() is None, srv.server_log()[-3000:]
        time.sleep(0.2)
    assert record.exists(), "the demo was not seeded in 90 s"
    srv.login_admin()
    yield srv, json.loads(record.read_text())
    srv.stop()


def as_user(srv, tmp_path_factory, user):
    env = {"KEYLESS_CONFIG_DIR": str(tmp_path_factory.mktemp("cli"))}
    srv.cli("login", "-u", user["username"], "-p", user["password"], env=env)
    return env


def test_the_quick_start_runs_for_alice_and_refuses_bob(demo, tmp_path_factory):
    srv, users = demo
    assert (srv.data_dir / "demo.json").stat().st_mode & 0o077 == 0
    alice = as_user(srv, tmp_path_factory, users["alice"])
    ran = srv.cli("ml", "job", "create", "-f", JOB, "-n", "alice-census", *AT, "--stream", env=alice, check=False)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "read 10 rows" in ran.stdout
    bob = as_user(srv, tmp_path_factory, users["bob"])
    refused = srv.cli("ml", "job", "create", "-f", JOB, "-n", "bob-census", *AT, "--stream", env=bob, check=False)
    assert refused.returncode != 0
    assert "bob@keyless.local" in refused.stderr and "Storage Blob Data Reader" in refused.stderr
    out = srv.cli("storage", "logs", "--account", "censusdata", check=False).stdout
    records = [json.loads(line) for line in out.splitlines() if line.strip()]
    job_reads = [r for r in records if (r.get("JobId") or "").endswith("/jobs/alice-census")]
    assert job_reads and all(r["RequesterUpn"] == "alice@keyless.local" for r in job_reads)


def test_a_restart_keeps_the_seeded_world(demo):
    srv, users = demo
    srv.stop()
    srv.start(extra=("--demo",))
    srv.login_admin()
    assert json.loads((srv.data_dir / "demo.json").read_text()) == users
    assert srv.cli("ml", "compute", "show", "-n", "cpu-cluster", *AT)["identity"]["type"] == "system_assigned"
