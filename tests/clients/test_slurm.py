"""Jobs on a Slurm compute: the agent runs as a Slurm batch job (in the job's sandbox on the
node), reads as the submitting user or the compute's identity, serves the job's identity on
the node's loopback, and Slurm's queue, job ids and cancellation are the truth.

Needs the test cluster of `scripts/slurm up` (the README's test command starts it and sets
KEYLESS_TEST_SLURM=1); without it these tests are skipped, with it they must pass."""

import json
import os
import subprocess
import time

import pytest
import requests

from test_jobs import (AT, CODE_AS_MANAGED, EXAMPLE, JOB_PYTHON, claims, evidence, job_file, reads, statuses,
                       submit, wait, world)  # noqa: F401 (world is a fixture)

if os.environ.get("KEYLESS_TEST_SLURM") != "1":
    pytest.skip("no test Slurm cluster (scripts/slurm up; KEYLESS_TEST_SLURM=1)", allow_module_level=True)


def scontrol(job_id):
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return dict(w.split("=", 1) for w in out.stdout.split() if "=" in w)


def slurm_id(server, name):
    job = server.cli("ml", "job", "show", "-n", name, *AT)
    return job["properties"]["slurmJobId"]


def on_slurm(text):
    return text.replace("compute: azureml:cpu-cluster", "compute: azureml:slurm-cluster")


def test_hello_census_on_slurm_runs_as_alice_and_is_refused_as_bob(server, world):
    alice, bob = world["users"]["alice"], world["users"]["bob"]
    text = on_slurm((EXAMPLE / "job.yml").read_text())
    assert "slurm-cluster" in text
    path = job_file(world, "slurm-alice", text)
    subprocess.run(["cp", "-r", str(EXAMPLE / "src"), os.path.dirname(path)], check=True)
    proc = submit(server, path, "slurm-alice", env=alice["env"], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "read 10 rows" in proc.stdout and "mean age: 41.9" in proc.stdout
    job = server.cli("ml", "job", "show", "-n", "slurm-alice", *AT)
    assert statuses(job) == ["Queued", "Preparing", "Running", "Finalizing", "Completed"]
    sid = job["properties"]["slurmJobId"]
    assert sid.isdigit()
    fields = scontrol(sid)
    assert fields["JobState"] == "COMPLETED" and fields["JobName"] == "keyless-slurm-alice"
    assert f"submitted to Slurm as job {sid}" in proc.stdout
    records = reads(server, job["id"])
    assert records and all(r["RequesterObjectId"] == alice["id"] for r in records)
    assert any(r["OperationName"] == "GetBlob" and r["Path"] == "data/census.csv" for r in records)
    # Bob lacks the data role: refused with the storage's explanation, his command never runs.
    marker = world["tmp"] / "slurm-bob-ran"
    text = text.replace("command: python3", f"command: touch {marker} && python3")
    path = job_file(world, "slurm-bob", text)
    subprocess.run(["cp", "-r", str(EXAMPLE / "src"), os.path.dirname(path)], check=True)
    proc = submit(server, path, "slurm-bob", env=bob["env"], check=False)
    assert proc.returncode != 0
    assert "Storage Blob Data Reader" in proc.stderr and "blobs/read" in proc.stderr, proc.stderr
    job = server.cli("ml", "job", "show", "-n", "slurm-bob", *AT)
    assert job["error"]["code"] == "InputAccessDenied"
    assert "Running" not in statuses(job) and not marker.exists()
    assert scontrol(job["properties"]["slurmJobId"])["JobState"] in ("COMPLETED", "FAILED")


def test_code_on_a_slurm_node_gets_its_token_from_the_node_local_endpoint(server, world):
    text = f"command: {JOB_PYTHON} main.py\ncode: src\ncompute: azureml:slurm-cluster\n" \
           f"environment: azureml:x@latest\nenvironment_variables:\n  JOB_KIND: managed\n"
    sai = world["computes"]["slurm-cluster"]["identity"]["principal_id"]
    server.cli("role", "assignment", "create", "--assignee", sai, "--role", "Storage Blob Data Reader",
               "--scope", world["account_id"])
    path = job_file(world, "slurm-mi", text, {"main.py": CODE_AS_MANAGED}, libraries=True)
    proc = submit(server, path, "slurm-mi", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = evidence(proc)
    assert claims(got["token"])["oid"] == sai
    assert got["endpoint"].startswith("http://127.0.0.1:")
    assert got["agents"] == 1 and not got["handle"]
    assert set(got["stolen"].values()) == {"PermissionError"}, got["stolen"]
    # The token died with the job.
    r = requests.get(f"{server.info['storage']}/jobdata/data/census.csv", verify=server.ca,
                     headers={"Authorization": f"Bearer {got['token']}", "x-ms-version": "2025-01-05"})
    assert r.status_code == 401 and "has ended" in r.text
    # The batch script Slurm keeps names no secret: the handle is a file only the job's user reads.
    sid = slurm_id(server, "slurm-mi")
    script = subprocess.run(["scontrol", "write", "batch_script", sid, "-"], capture_output=True, text=True,
                            timeout=30).stdout
    assert "job-agent" in script and "KEYLESS_JOB_HANDLE" not in script and "secret" not in script.lower()


def test_a_job_on_a_slurm_node_reads_neither_the_data_dir_nor_the_agents_files(server, world):
    target = server.data_dir / "admin.json"
    text = f"command: cat {target} || echo REFUSED; cat /mnt/azureml/job/.job-handle || echo NO-HANDLE; id -u\n" \
           "compute: azureml:slurm-cluster\nenvironment: azureml:x@latest\n"
    proc = submit(server, job_file(world, "slurm-peek", text), "slurm-peek", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert server.admin["password"] not in proc.stdout
    assert "REFUSED" in proc.stdout and "NO-HANDLE" in proc.stdout
    uid = next(int(line) for line in proc.stdout.splitlines() if line.strip().isdigit())
    assert uid >= 2_000_000_000, "the job runs as a uid of its own, not as root"


def test_cancel_reaches_slurm_for_a_pending_and_a_running_job(server, world):
    sleeper = "command: sleep 120\ncompute: azureml:slurm-cluster\nenvironment: azureml:x@latest\n"
    submit(server, job_file(world, "slurm-first", sleeper), "slurm-first", stream=False)
    wait(server, "slurm-first", {"Running"})
    submit(server, job_file(world, "slurm-second", sleeper), "slurm-second", stream=False)
    # The first job holds every CPU of the node: Slurm keeps the second pending, and so does keyless.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = server.cli("ml", "job", "show", "-n", "slurm-second", *AT)
        sid = (job.get("properties") or {}).get("slurmJobId")
        if sid and scontrol(sid)["JobState"] == "PENDING":
            break
        time.sleep(0.2)
    assert sid and scontrol(sid)["JobState"] == "PENDING"
    assert job["status"] == "Queued"
    server.cli("ml", "job", "cancel", "-n", "slurm-second", *AT)
    assert wait(server, "slurm-second")["status"] == "Canceled"
    assert scontrol(sid)["JobState"] == "CANCELLED"
    first = slurm_id(server, "slurm-first")
    assert scontrol(first)["JobState"] == "RUNNING"
    server.cli("ml", "job", "cancel", "-n", "slurm-first", *AT)
    assert wait(server, "slurm-first")["status"] == "Canceled"
    assert scontrol(first)["JobState"] == "CANCELLED"
    # Slurm's step daemon ends the job's processes just after it marks the job
    # cancelled (SIGTERM, then SIGKILL after KillWait): none is left a few seconds on.
    def sleepers():
        return [a for a in subprocess.run(["ps", "-eo", "args"], capture_output=True,
                                          text=True).stdout.splitlines() if a.strip() == "sleep 120"]
    deadline = time.monotonic() + 40
    while sleepers() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert sleepers() == []


def test_a_stolen_job_handle_reaches_one_blob_while_the_job_lives_and_nothing_after(server, world):
    """An attacker who reads a job's handle file (here: root, while the job waits in Slurm's queue)
    holds the job's secret. It reaches the job's own data, one blob at a time, never the datastore's
    key, and nothing once the job has ended."""
    (world["tmp"] / "keyed.yml").write_text(
        f"name: keyed\ntype: azure_blob\naccount_name: jobdata\ncontainer_name: data\n"
        f"credentials:\n  account_key: {world['key']}\n")
    server.cli("ml", "datastore", "create", "-f", str(world["tmp"] / "keyed.yml"), *AT)
    sleeper = "command: sleep 120\ncompute: azureml:slurm-cluster\nenvironment: azureml:x@latest\n"
    submit(server, job_file(world, "slurm-hold", sleeper), "slurm-hold", stream=False)
    wait(server, "slurm-hold", {"Running"})
    victim = "command: cat ${{inputs.census}}\ncompute: azureml:slurm-cluster\nenvironment: azureml:x@latest\n" \
             "inputs:\n  census:\n    type: uri_file\n    path: azureml://datastores/keyed/paths/census.csv\n" \
             "outputs:\n  out:\n    type: uri_folder\n    path: azureml://datastores/keyed/paths/stolen-out/\n"
    submit(server, job_file(world, "slurm-victim", victim), "slurm-victim", stream=False)
    handles, deadline = [], time.monotonic() + 30
    while not handles and time.monotonic() < deadline:
        handles = list((server.data_dir / "jobs").glob("slurm-victim-*/wd/.job-handle"))
        time.sleep(0.1)
    assert handles, "the pending job's handle is in its folder"
    assert handles[0].stat().st_mode & 0o077 == 0, "only the job's user may read the handle"
    handle = json.loads(handles[0].read_text())
    base = f"{handle['endpoints'][0]}/keyless/jobs/{handle['key']}"
    secret = {"x-keyless-job-secret": handle["secret"]}
    assert requests.get(f"{base}/spec", headers={"x-keyless-job-secret": "guess"}, verify=server.ca).status_code == 403
    access = requests.post(f"{base}/inputs/census", headers=secret, json={}, verify=server.ca)
    assert access.status_code == 200, access.text
    url = access.json()["files"][0]["url"]
    assert world["key"] not in access.text and "sig=" in url and "sr=b" in url
    blob = requests.get(url, headers={"x-ms-version": "2025-01-05"}, verify=server.ca)
    assert blob.status_code == 200 and blob.content == (EXAMPLE / "census.csv").read_bytes()
    # The SAS is for that blob alone, to read.
    other = url.replace("/census.csv?", "/other.csv?")
    assert requests.get(other, headers={"x-ms-version": "2025-01-05"}, verify=server.ca).status_code == 403
    put = requests.put(url, data=b"x", headers={"x-ms-version": "2025-01-05", "x-ms-blob-type": "BlockBlob"},
                       verify=server.ca)
    assert put.status_code == 403
    # An output's SAS writes its one blob, and reads nothing.
    files = {"files": [{"path": "result.txt", "size": 2}]}
    out = requests.post(f"{base}/outputs/out", headers=secret, json=files, verify=server.ca)
    assert out.status_code == 200, out.text
    put_url = out.json()["files"][0]["url"]
    assert "/stolen-out/result.txt?" in put_url and "sp=cw" in put_url
    blob_headers = {"x-ms-version": "2025-01-05", "x-ms-blob-type": "BlockBlob"}
    assert requests.put(put_url, data=b"ok", headers=blob_headers, verify=server.ca).status_code == 201
    assert requests.get(put_url, headers={"x-ms-version": "2025-01-05"}, verify=server.ca).status_code == 403
    elsewhere = put_url.replace("/stolen-out/result.txt?", "/census.csv?")
    assert requests.put(elsewhere, data=b"x", headers=blob_headers, verify=server.ca).status_code == 403
    # A port the job does not have, or a path that climbs out of the output, is refused.
    assert requests.post(f"{base}/inputs/secrets", headers=secret, json={}, verify=server.ca).status_code == 403
    climb = {"files": [{"path": "../census.csv", "size": 1}]}
    assert requests.post(f"{base}/outputs/out", headers=secret, json=climb, verify=server.ca).status_code == 403
    server.cli("ml", "job", "cancel", "-n", "slurm-victim", *AT)
    assert wait(server, "slurm-victim")["status"] == "Canceled"
    ended = requests.get(url, headers={"x-ms-version": "2025-01-05"}, verify=server.ca)
    assert ended.status_code == 403 and "has ended" in ended.text
    late = requests.put(put_url, data=b"late", headers=blob_headers, verify=server.ca)
    assert late.status_code == 403 and "has ended" in late.text
    assert requests.get(f"{base}/spec", headers=secret, verify=server.ca).status_code == 403
    assert requests.post(f"{base}/inputs/census", headers=secret, json={}, verify=server.ca).status_code == 403
    server.cli("ml", "job", "cancel", "-n", "slurm-hold", *AT)
    assert wait(server, "slurm-hold")["status"] == "Canceled"


def test_a_slurm_job_outlives_a_server_restart_and_its_log_is_whole(server, world):
    alice = world["users"]["alice"]
    # Reads its input, prints a line every 0.3 s for about 6 s, then writes an output.
    text = "command: >-\n  for i in $(seq 1 20); do echo tick $i; sleep 0.3; done;\n" \
           "  cp ${{inputs.census}} ${{outputs.copy}}/census-copy.csv\n" \
           "compute: azureml:slurm-cluster\nenvironment: azureml:x@latest\n" \
           "identity:\n  type: user_identity\n" \
           "inputs:\n  census:\n    type: uri_file\n    path: azureml://datastores/mydata/paths/census.csv\n" \
           "outputs:\n  copy:\n    type: uri_folder\n    path: azureml://datastores/mydata/paths/restart-out/\n"
    server.cli("role", "assignment", "create", "--assignee", "alice@keyless.local",
               "--role", "Storage Blob Data Contributor", "--scope", world["account_id"])
    submit(server, job_file(world, "slurm-restart", text), "slurm-restart", env=alice["env"], stream=False)
    wait(server, "slurm-restart", {"Running"})
    sid = slurm_id(server, "slurm-restart")
    time.sleep(0.5)
    server.stop(kill=True)
    time.sleep(2)  # the agent keeps printing, and retries what it cannot send
    assert scontrol(sid)["JobState"] == "RUNNING"
    server.start()
    job = wait(server, "slurm-restart", limit=90)
    log = server.cli("ml", "job", "stream", "-n", "slurm-restart", *AT, check=False).stdout
    assert job["status"] == "Completed", f"{job.get('error')}\n{log}"
    assert scontrol(sid)["JobState"] == "COMPLETED"
    ticks = [line for line in log.splitlines() if line.startswith("tick ")]
    assert ticks == [f"tick {i}" for i in range(1, 21)], log
    assert "following Slurm job" in log
    key = world["key"]
    from azure.storage.blob import BlobServiceClient
    svc = BlobServiceClient(f"{server.info['storage']}/jobdata", connection_verify=server.ca,
                            credential={"account_name": "jobdata", "account_key": key})
    copied = svc.get_blob_client("data", "restart-out/census-copy.csv").download_blob().readall()
    assert copied == (EXAMPLE / "census.csv").read_bytes()


def test_a_slurm_job_runs_in_an_image_its_compute_pulls(server, world):
    """The image flow on the Slurm backend: the agent, a Slurm batch job in its sandbox on the
    node, pulls as the Slurm compute's identity (AcrPull on the workspace's registry from its
    creation) and runs the command in the image with runc."""
    from test_jobs import image_environment, image_job, push_image
    world["data_dir"] = server.data_dir
    ws = server.cli("ml", "workspace", "show", "-n", "jobs-ws", "-g", "default")
    registry = server.cli("acr", "show", "-n", ws["container_registry"].rsplit("/", 1)[1])
    image = push_image(server, world["tmp"], registry["properties"]["loginServer"], "train/slurm", "slurm-image-bytes")
    environment = image_environment(server, world, "slurm-image-env", image)
    proc = submit(server, image_job(world, "slurm-in-image", environment, compute="slurm-cluster"), "slurm-in-image")
    lines = proc.stdout.splitlines()
    assert "slurm-image-bytes" in lines and "NO-DATA-DIR" in lines and "WROTE-CWD" in lines, proc.stdout
    assert int(next(line for line in lines if line.startswith("UID ")).split()[1]) != 0, proc.stdout
    job = server.cli("ml", "job", "show", "-n", "slurm-in-image", *AT)
    assert job["status"] == "Completed" and job["properties"]["slurmJobId"].isdigit()
    admin = server.cli("account", "get-access-token")["accessToken"]
    logs = requests.get(f"{server.management}{registry['id']}/logs", params={"api-version": "2023-07-01"},
                        headers={"Authorization": f"Bearer {admin}"}, verify=server.ca).json()["value"]
    sai = world["computes"]["slurm-cluster"]["identity"]["principal_id"]
    assert any(e["RequesterObjectId"] == sai and e["OperationName"] == "PullBlob" and e["JobId"] == job["id"]
               for e in logs), logs[-5:]
