"""Several keyless servers on one PostgreSQL database and one object store behave as one.

Three servers run on three loopback addresses with the same ports, as three machines
behind one name would: the same public host (so the same token issuer), the same TLS
certificate and the same master key. A write through one is read through the others,
and a revocation through one is enforced by the others within a second."""

import os
import statistics
import time

import pytest
import requests
from azure.identity import ClientSecretCredential
from azure.storage.blob import BlobServiceClient

from conftest import Server, create_database

pytestmark = pytest.mark.skipif(
    not (os.environ.get("KEYLESS_TEST_POSTGRES_URL") and os.environ.get("KEYLESS_TEST_S3_URL")),
    reason="needs KEYLESS_TEST_POSTGRES_URL and KEYLESS_TEST_S3_URL (the test command starts both)")

READER = "Storage Blob Data Reader"


def _shared_stores():
    return [
        "--metadata", create_database(os.environ["KEYLESS_TEST_POSTGRES_URL"]),
        "--blob-store", f"{os.environ['KEYLESS_TEST_S3_URL'].rstrip('/')}/{os.urandom(8).hex()}",
    ]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Servers A, B and C on 127.0.0.1, .2 and .3, sharing everything but their data dirs."""
    shared = _shared_stores()
    a = Server(tmp_path_factory.mktemp("a"))
    a.database = shared[1]
    a.blob_store = shared[3]
    a.start(["--bind", "127.0.0.1", "--tls-name", "127.0.0.2", "--tls-name", "127.0.0.3"])
    tls = a.data_dir / "tls"
    started = [a]
    try:
        for n in (2, 3):
            other = Server(tmp_path_factory.mktemp("abc"[n - 1]))
            other.host = f"127.0.0.{n}"
            other.ports = dict(a.ports)
            other.database, other.blob_store = a.database, a.blob_store
            other.start(["--bind", f"127.0.0.{n}", "--public-host", "127.0.0.1",
                         "--tls-cert", str(tls / "server.pem"), "--tls-key", str(tls / "server.key"),
                         "--tls-ca", str(tls / "ca.pem"), "--master-key-file", str(a.data_dir / "master.key")])
            other.ca, other.admin = a.ca, a.admin
            started.append(other)
        yield started
    finally:
        for s in started:
            s.stop()


def storage_url(n, port, account):
    return f"https://127.0.0.{n}:{port}/{account}"


@pytest.fixture(scope="module")
def world(servers):
    a = servers[0]
    a.login_admin()
    sub = a.admin["subscription"]
    a.cli("storage", "account", "create", "-n", "shared", "-g", "default")
    account_id = f"/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.Storage/storageAccounts/shared"
    alice = a.cli("ad", "sp", "create-for-rbac", "-n", "alice")
    writer = a.cli("ad", "sp", "create-for-rbac", "-n", "writer")
    a.cli("role", "assignment", "create", "--assignee", writer["objectId"],
          "--role", "Storage Blob Data Contributor", "--scope", account_id)
    world = {"account_id": account_id, "alice": alice, "writer": writer, "port": a.ports["storage"]}
    through_a = BlobServiceClient(storage_url(1, world["port"], "shared"), credential=credential(a, writer),
                                  connection_verify=a.ca)
    through_a.create_container("data").upload_blob("census.csv", b"age,income\n39,77516\n")
    return world


def credential(server, sp):
    return ClientSecretCredential(server.tenant, sp["appId"], sp["password"], authority=server.login,
                                  disable_instance_discovery=True, connection_verify=server.ca)


def read_as(token, n, world, ca, name="census.csv"):
    return requests.get(f"{storage_url(n, world['port'], 'shared')}/data/{name}",
                        headers={"Authorization": f"Bearer {token}", "x-ms-version": "2023-11-03"},
                        verify=ca, timeout=10)


def test_a_blob_written_through_b_is_read_through_c_with_a_token_from_a(servers, world, client_env):
    a, b, c = servers
    token_from_a = credential(a, world["writer"])
    through_b = BlobServiceClient(storage_url(2, world["port"], "shared"), credential=token_from_a,
                                  connection_verify=a.ca)
    container = through_b.get_container_client("data")
    container.upload_blob("by-b.csv", b"age,income\n52,13000\n")
    big = os.urandom(300 * 1024)  # above what the metadata row keeps inline
    container.upload_blob("big.bin", big)
    through_c = BlobServiceClient(storage_url(3, world["port"], "shared"), credential=token_from_a,
                                  connection_verify=a.ca)
    assert through_c.get_blob_client("data", "by-b.csv").download_blob().readall() == b"age,income\n52,13000\n"
    assert through_c.get_blob_client("data", "big.bin").download_blob().readall() == big
    # The bytes are in the object store, on no server's disk.
    for s in servers:
        assert not [p for p in (s.data_dir / "blobs").rglob("*") if p.is_file()]


def test_a_role_assignment_deleted_through_a_is_refused_by_c_within_a_second(servers, world, client_env):
    a, _, c = servers
    alice = world["alice"]
    token = credential(a, alice).get_token("https://storage.azure.com/.default").token
    delays = []
    # bench/revocation.sh raises the count to measure the delay over 100 changes.
    for _ in range(max(1, min(int(os.environ.get("KEYLESS_REVOCATION_ROUNDS", "5")), 1000))):
        a.cli("role", "assignment", "create", "--assignee", alice["objectId"], "--role", READER,
              "--scope", world["account_id"])
        deadline = time.monotonic() + 5
        while read_as(token, 3, world, a.ca).status_code != 200:
            assert time.monotonic() < deadline, "C never honoured the new assignment"
            time.sleep(0.01)
        # Her read works through each server.
        for n in (1, 2, 3):
            while read_as(token, n, world, a.ca).status_code != 200:
                assert time.monotonic() < deadline, f"127.0.0.{n} never honoured the new assignment"
                time.sleep(0.01)
        a.cli("role", "assignment", "delete", "--assignee", alice["objectId"], "--role", READER,
              "--scope", world["account_id"])
        deleted = time.monotonic()
        while (status := read_as(token, 3, world, a.ca).status_code) == 200:
            assert time.monotonic() - deleted < 5, "C still honours a deleted role assignment after 5 s"
            time.sleep(0.005)
        delays.append(time.monotonic() - deleted)
        assert status == 403
    print(f"revocation through A enforced by C after: median {statistics.median(delays) * 1000:.0f} ms, "
          f"max {max(delays) * 1000:.0f} ms")
    assert max(delays) < 1.0


def test_a_principal_disabled_through_a_is_refused_by_b_within_a_second(servers, world, client_env):
    a, b, _ = servers
    writer = world["writer"]
    token = credential(a, writer).get_token("https://storage.azure.com/.default").token
    assert read_as(token, 2, world, a.ca).status_code == 200
    a.cli("ad", "sp", "update", "--id", writer["appId"], "--enabled", "false")
    disabled = time.monotonic()
    while (status := read_as(token, 2, world, a.ca).status_code) == 200:
        assert time.monotonic() - disabled < 5, "B still honours a disabled principal's token after 5 s"
        time.sleep(0.005)
    assert status == 401
    assert time.monotonic() - disabled < 1.0
    a.cli("ad", "sp", "update", "--id", writer["appId"], "--enabled", "true")


def test_a_regenerated_account_key_is_refused_by_c_within_a_second(servers, world, client_env):
    a, _, c = servers
    key = a.cli("storage", "account", "keys", "list", "-n", "shared", "-g", "default")[0]["value"]
    through_c = BlobServiceClient(storage_url(3, world["port"], "shared"),
                                  credential={"account_name": "shared", "account_key": key},
                                  connection_verify=a.ca, retry_total=0)
    assert through_c.get_container_client("data").get_container_properties()
    a.cli("storage", "account", "keys", "renew", "-n", "shared", "-g", "default", "--key", "key1")
    renewed = time.monotonic()
    while True:
        try:
            through_c.get_container_client("data").get_container_properties()
        except Exception as refused:  # noqa: BLE001 - the SDK's error for a 403
            assert "403" in str(refused) or "AuthenticationFailed" in str(refused), refused
            break
        assert time.monotonic() - renewed < 5, "C still accepts the old key after 5 s"
        time.sleep(0.005)
    assert time.monotonic() - renewed < 1.0


def test_a_client_assertion_presented_to_a_is_refused_by_b_and_c(servers, world, tmp_path):
    from test_identity import assertion_form, client_assertion, make_certificate
    a = servers[0]
    cert, both = make_certificate(tmp_path)
    app = a.cli("ad", "sp", "create-for-rbac", "-n", "replayed", "--cert", str(cert))
    audience = f"{a.login}/{a.tenant}/oauth2/v2.0/token"
    form = assertion_form(app["appId"], client_assertion(app["appId"], cert, both, audience))
    at = {n: f"https://127.0.0.{n}:{a.ports['login']}/{a.tenant}/oauth2/v2.0/token" for n in (1, 2, 3)}
    first = requests.post(at[1], data=form, verify=a.ca, timeout=30)
    assert first.status_code == 200, first.text
    # An attacker who captured it tries the other servers: each knows it was used.
    for n in (2, 3):
        replayed = requests.post(at[n], data=form, verify=a.ca, timeout=30)
        assert replayed.status_code in (400, 401) and "AADSTS700025" in replayed.text, replayed.text


def test_wrong_passwords_spread_over_the_servers_lock_the_name_on_all_of_them(servers, world):
    a = servers[0]
    a.cli("ad", "user", "create", "--display-name", "Gus", "--user-principal-name", "gus@keyless.local",
          "--password", "Gus-Passw0rd-1234")

    def sign_in(n, password):
        return requests.post(f"https://127.0.0.{n}:{a.ports['login']}/{a.tenant}/oauth2/v2.0/token",
                             verify=a.ca, timeout=60, data={
                                 "grant_type": "password", "client_id": "04b07795-8ddb-461a-bbee-02f9e1bf7b46",
                                 "username": "gus@keyless.local", "password": password,
                                 "scope": "https://storage.azure.com/.default"})

    assert sign_in(2, "Gus-Passw0rd-1234").status_code == 200
    # Ten guesses, spread so that no server sees more than four: together they lock.
    for n in (1, 2, 3, 1, 2, 3, 1, 2, 3, 1):
        guess = sign_in(n, "not-his-password")
        assert guess.status_code == 400 and "AADSTS50126" in guess.text, guess.text
    for n in (1, 2, 3):
        locked = sign_in(n, "Gus-Passw0rd-1234")
        assert locked.status_code == 400 and "AADSTS50053" in locked.text, (n, locked.text)


def test_every_server_is_ready(servers):
    for n, s in enumerate(servers, start=1):
        ready = requests.get(f"http://127.0.0.{n}:{s.ports['identity']}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text


def test_the_storage_log_holds_each_request_through_any_server_exactly_once(servers, world, client_env):
    import json

    a = servers[0]
    token = credential(a, world["writer"]).get_token("https://storage.azure.com/.default").token
    ids = []
    for n in (1, 2, 3, 2, 3, 1):
        reply = read_as(token, n, world, a.ca)
        assert reply.status_code == 200
        ids.append(reply.headers["x-ms-request-id"])
    # Asked through A, the log holds what B and C served too, each request once.
    out = a.cli("storage", "logs", "--account", "shared", check=False)
    assert out.returncode == 0, out.stderr
    logged = [json.loads(line)["CorrelationId"] for line in out.stdout.splitlines() if line.strip()]
    assert [logged.count(i) for i in ids] == [1] * len(ids)


def test_a_server_that_restarts_leaves_the_jobs_another_server_runs_alone(servers, world, tmp_path, client_env):
    a, b, _ = servers
    at = ("-w", "shared-ws", "-g", "default")
    (tmp_path / "ws.yml").write_text("name: shared-ws\nidentity:\n  type: system_assigned\n")
    a.cli("ml", "workspace", "create", "-f", str(tmp_path / "ws.yml"), "-g", "default")
    (tmp_path / "cluster.yml").write_text(
        "name: cluster\ntype: amlcompute\nmax_instances: 1\nidentity:\n  type: system_assigned\n")
    a.cli("ml", "compute", "create", "-f", str(tmp_path / "cluster.yml"), *at)
    (tmp_path / "job.yml").write_text(
        "command: sleep 4 && echo slept\ncompute: azureml:cluster\nenvironment: azureml:x@latest\n")
    a.cli("ml", "job", "create", "-f", str(tmp_path / "job.yml"), "-n", "long", *at)

    def status():
        return a.cli("ml", "job", "show", "-n", "long", *at)

    deadline = time.monotonic() + 30
    while status()["status"] != "Running":
        assert time.monotonic() < deadline, status()
        time.sleep(0.1)
    # B restarts while A runs the job: the job is not B's to fail or follow.
    b.stop()
    b.start(["--bind", "127.0.0.2", "--public-host", "127.0.0.1",
             "--tls-cert", str(a.data_dir / "tls" / "server.pem"), "--tls-key", str(a.data_dir / "tls" / "server.key"),
             "--tls-ca", str(a.data_dir / "tls" / "ca.pem"),
             "--master-key-file", str(a.data_dir / "master.key")])
    b.ca, b.admin = a.ca, a.admin
    deadline = time.monotonic() + 60
    while (job := status())["status"] not in ("Completed", "Failed", "Canceled"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    history = [h["status"] for h in job["status_history"]]
    assert job["status"] == "Completed" and "Failed" not in history, job


# --- a server lost mid-job ----------------------------------------------------


class OneName:
    """What stands for a load balancer in front of the servers: 127.0.0.4 on each port
    forwards every connection, TLS and all, to the first server that accepts it."""

    def __init__(self, ports, backends):
        import asyncio
        import threading
        self.loop = asyncio.new_event_loop()
        self.backends = backends
        started = threading.Event()

        async def pipe(reader, writer):
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        async def forward(port, reader, writer):
            for host in self.backends:
                try:
                    up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
                    break
                except (OSError, asyncio.TimeoutError):
                    continue
            else:
                writer.close()
                return
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

        async def serve():
            self.servers = [await asyncio.start_server(lambda r, w, p=p: forward(p, r, w), "127.0.0.4", p)
                            for p in ports]
            started.set()

        def run():
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(serve())
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(10), "the front did not start"

    def close(self):
        for s in self.servers:
            self.loop.call_soon_threadsafe(s.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def behind_one_name(tmp_path_factory):
    """Servers D, E and F on 127.0.0.5, .6 and .7 behind one name (127.0.0.4), sharing a
    store and a jobs folder, each naming the others as peers."""
    if os.environ.get("KEYLESS_TEST_SLURM") != "1":
        pytest.skip("needs the test Slurm cluster (scripts/slurm up; KEYLESS_TEST_SLURM=1)")
    shared = _shared_stores()
    jobs_dir = tmp_path_factory.mktemp("jobs")
    servers = [Server(tmp_path_factory.mktemp("def"[n])) for n in range(3)]
    ports = servers[0].ports
    hosts = [f"127.0.0.{n}" for n in (5, 6, 7)]
    front = OneName(list(ports.values()), hosts)
    peers = [arg for h in hosts for arg in ("--peer", f"https://{h}:{ports['management']}")]
    started = []
    try:
        first = servers[0]
        for s, host in zip(servers, hosts):
            s.host, s.ports = host, dict(ports)
            s.database, s.blob_store = shared[1], shared[3]
            common = ["--bind", host, "--public-host", "127.0.0.4", "--jobs-dir", str(jobs_dir), *peers]
            if s is first:
                s.start([*common, *[a for h in hosts for a in ("--tls-name", h)]])
            else:
                tls = first.data_dir / "tls"
                s.start([*common, "--tls-cert", str(tls / "server.pem"), "--tls-key", str(tls / "server.key"),
                         "--tls-ca", str(tls / "ca.pem"), "--master-key-file", str(first.data_dir / "master.key")])
                s.ca, s.admin = first.ca, first.admin
            started.append(s)
        yield servers
    finally:
        for s in started:
            s.stop()
        front.close()


LOST_AT = ("-w", "lost-ws", "-g", "default")


def lost_world(d, tmp_path):
    """A workspace and a Slurm compute, made once. The CLI reaches the servers through the
    one name: D's data dir only tells it that name and the CA, so it keeps working when D
    is gone."""
    d.login_admin()
    if d.cli("ml", "workspace", "show", "-n", "lost-ws", "-g", "default", check=False).returncode != 0:
        (tmp_path / "ws.yml").write_text("name: lost-ws\nidentity:\n  type: system_assigned\n")
        d.cli("ml", "workspace", "create", "-f", str(tmp_path / "ws.yml"), "-g", "default")
        (tmp_path / "cluster.yml").write_text(
            "name: slurm\ntype: amlcompute\nmax_instances: 1\nidentity:\n  type: system_assigned\n"
            "keyless:\n  backend: slurm\n  slurm:\n    partition: debug\n")
        d.cli("ml", "compute", "create", "-f", str(tmp_path / "cluster.yml"), *LOST_AT)
    return LOST_AT


def test_a_job_outlives_the_server_that_ran_it_killed_mid_run_and_its_log_is_whole(behind_one_name, tmp_path):
    d, e, f = behind_one_name
    at = lost_world(d, tmp_path)
    # Prints a line every 0.5 s for 20 s, then writes an output through the storage listener.
    (tmp_path / "job.yml").write_text(
        "command: >-\n  for i in $(seq 1 40); do echo tick $i; sleep 0.5; done;\n"
        "  echo finished > ${{outputs.out}}/result.txt\n"
        "compute: azureml:slurm\nenvironment: azureml:x@latest\n"
        "outputs:\n  out:\n    type: uri_folder\n")
    d.cli("ml", "job", "create", "-f", str(tmp_path / "job.yml"), "-n", "outlives", *at)

    def show(server):
        return server.cli("ml", "job", "show", "-n", "outlives", *at)

    deadline = time.monotonic() + 60
    while (job := show(d))["status"] != "Running":
        assert job["status"] not in ("Completed", "Failed", "Canceled"), job
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    time.sleep(2)
    d.stop(kill=True)
    killed = time.monotonic()
    # E or F finds D silent, takes the job over, and follows it on Slurm to its end.
    while (job := show(d))["status"] not in ("Completed", "Failed", "Canceled"):
        assert time.monotonic() - killed < 120, job
        time.sleep(0.5)
    log = d.cli("ml", "job", "stream", "-n", "outlives", *at, check=False).stdout
    print(f"the job ended {time.monotonic() - killed:.1f} s after its server was killed")
    assert job["status"] == "Completed", f"{job.get('error')}\n{log}"
    assert "Failed" not in [h["status"] for h in job["status_history"]], job
    ticks = [line for line in log.splitlines() if line.startswith("tick ")]
    assert ticks == [f"tick {i}" for i in range(1, 41)], log
    assert "another server takes it over" in log and "following Slurm job" in log, log
    # The output, written after D was lost, is in the store: read through F.
    store = d.cli("ml", "datastore", "show", "-n", "workspaceblobstore", *at)
    account, container = store["account_name"], store["container_name"]
    key = d.cli("storage", "account", "keys", "list", "-n", account, "-g", "default")[0]["value"]
    through_f = BlobServiceClient(f"https://127.0.0.7:{f.ports['storage']}/{account}", connection_verify=d.ca,
                                  credential={"account_name": account, "account_key": key})
    result = through_f.get_blob_client(container, "azureml/outlives/out/result.txt").download_blob().readall()
    assert result == b"finished\n"
    # One of E and F counts the job followed, and neither counts an unfinished job.
    import re
    texts = [requests.get(f"https://127.0.0.{n}:{s.ports['storage']}/metrics", verify=d.ca, timeout=10).text
             for n, s in ((6, e), (7, f))]
    followed = [sum(float(v) for v in re.findall(r'^keyless_jobs_total\{event="followed"\} (\S+)$', t, re.M))
                for t in texts]
    assert sorted(followed) == [0, 1], followed
    unfinished = [float(v) for t in texts for v in re.findall(r'^keyless_jobs\{status="[A-Za-z]+"\} (\S+)$', t, re.M)]
    assert unfinished and all(v == 0 for v in unfinished), texts


def test_a_job_canceled_while_its_server_is_lost_is_canceled_by_the_server_taking_it_over(
        behind_one_name, tmp_path):
    import subprocess
    d = behind_one_name[0]
    at = lost_world(d, tmp_path)
    # The name sends the submission to the first server alive: that one runs the job.
    runner = next(s for s in behind_one_name if s.proc.poll() is None)
    (tmp_path / "long.yml").write_text("command: sleep 300\ncompute: azureml:slurm\nenvironment: azureml:x@latest\n")
    d.cli("ml", "job", "create", "-f", str(tmp_path / "long.yml"), "-n", "canceled-lost", *at)
    deadline = time.monotonic() + 60
    while (job := d.cli("ml", "job", "show", "-n", "canceled-lost", *at))["status"] != "Running":
        assert job["status"] not in ("Completed", "Failed", "Canceled"), job
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    slurm_id = job["properties"]["slurmJobId"]
    runner.stop(kill=True)
    # Asked of a server that does not run the job, while nobody does yet.
    d.cli("ml", "job", "cancel", "-n", "canceled-lost", *at)
    killed = time.monotonic()
    while (job := d.cli("ml", "job", "show", "-n", "canceled-lost", *at))["status"] != "Canceled":
        assert job["status"] not in ("Completed", "Failed"), job
        assert time.monotonic() - killed < 120, job
        time.sleep(0.5)
    state = subprocess.run(["scontrol", "show", "job", slurm_id], capture_output=True, text=True, timeout=30)
    assert "JobState=CANCELLED" in state.stdout, state.stdout + state.stderr
