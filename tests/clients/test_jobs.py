"""Jobs that read data as the submitting user or as a compute's managed identity: the seed's
hello-census job, refusals with the storage's explanation, the identity endpoint inside a job
(unmodified azure-identity and azure-storage-blob in the job's code), pipelines, code snapshot
checksums, cancel, and the storage log naming each job."""

import base64
import importlib.metadata
import json
import os
import shutil
import sysconfig
import time
import uuid
from pathlib import Path

import pytest
import requests
from azure.storage.blob import BlobServiceClient

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "hello-census"
AT = ("-w", "jobs-ws", "-g", "default")
TERMINAL = {"Completed", "Failed", "Canceled"}


def claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def login_user(server, tmp_path_factory, upn, password):
    env = {"KEYLESS_CONFIG_DIR": str(tmp_path_factory.mktemp("cli"))}
    server.cli("login", "-u", upn, "-p", password, env=env)
    return env


@pytest.fixture(scope="module")
def world(server, tmp_path_factory):
    """The demo's world: census.csv in jobdata/data, workspace jobs-ws with the credential-less
    datastore `mydata`, a cluster with a system-assigned identity, a cluster with a user-assigned
    one, alice (data reader) and bob (no data role), both AzureML Data Scientists."""
    sub = server.admin["subscription"]
    tmp = tmp_path_factory.mktemp("jobs")
    server.cli("storage", "account", "create", "-n", "jobdata", "-g", "default")
    key = server.cli("storage", "account", "keys", "list", "-n", "jobdata", "-g", "default")[0]["value"]
    svc = BlobServiceClient(f"{server.info['storage']}/jobdata",
                            credential={"account_name": "jobdata", "account_key": key}, connection_verify=server.ca)
    svc.create_container("data")
    svc.get_container_client("data").upload_blob("census.csv", (EXAMPLE / "census.csv").read_bytes())
    (tmp / "ws.yml").write_text("name: jobs-ws\nidentity:\n  type: system_assigned\n")
    server.cli("ml", "workspace", "create", "-f", str(tmp / "ws.yml"), "-g", "default")
    uai = server.cli("identity", "create", "-g", "default", "-n", "job-uai")
    computes = {
        "cpu-cluster": "type: amlcompute\nmax_instances: 2\nidentity:\n  type: system_assigned\n",
        "uai-cluster": f"type: amlcompute\nmax_instances: 2\nidentity:\n  type: user_assigned\n"
                       f"  user_assigned_identities:\n    - resource_id: {uai['id']}\n",
        "one-slot": "type: amlcompute\nmax_instances: 1\nidentity:\n  type: system_assigned\n",
        # Each job takes all eight CPUs of the test cluster's one node: a second one waits in Slurm's queue.
        "slurm-cluster": "type: amlcompute\nmax_instances: 2\nidentity:\n  type: system_assigned\n"
                         "keyless:\n  backend: slurm\n  slurm:\n    partition: debug\n    cpus_per_task: 8\n",
    }
    shown = {}
    for name, body in computes.items():
        (tmp / f"{name}.yml").write_text(f"name: {name}\n{body}")
        server.cli("ml", "compute", "create", "-f", str(tmp / f"{name}.yml"), *AT)
        shown[name] = server.cli("ml", "compute", "show", "-n", name, *AT)
    (tmp / "ds.yml").write_text("name: mydata\ntype: azure_blob\naccount_name: jobdata\ncontainer_name: data\n")
    server.cli("ml", "datastore", "create", "-f", str(tmp / "ds.yml"), *AT)
    ws_id = f"/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.MachineLearningServices/workspaces/jobs-ws"
    account_id = f"/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.Storage/storageAccounts/jobdata"
    users = {}
    for who in ("alice", "bob"):
        upn, password = f"{who}@keyless.local", f"{who.title()}-Passw0rd!"
        users[who] = server.cli("ad", "user", "create", "--display-name", who.title(),
                                "--user-principal-name", upn, "--password", password)
        server.cli("role", "assignment", "create", "--assignee", upn, "--role", "AzureML Data Scientist",
                   "--scope", ws_id)
        users[who]["env"] = login_user(server, tmp_path_factory, upn, password)
    server.cli("role", "assignment", "create", "--assignee", "alice@keyless.local",
               "--role", "Storage Blob Data Reader", "--scope", account_id)
    return {"tmp": tmp, "sub": sub, "ws_id": ws_id, "account_id": account_id, "users": users, "uai": uai,
            "computes": shown, "key": key}


# Jobs run as users of their own with private /tmp: they run the system's Python and
# find the pinned client libraries on PYTHONPATH when the venv is where any user can read
# it, or in their code snapshot otherwise.
JOB_PYTHON = "/usr/bin/python3"
SITE = Path(sysconfig.get_paths()["purelib"])


def reachable_by_jobs(path):
    if any(path.is_relative_to(p) for p in ("/tmp", "/var/tmp", "/dev/shm", "/mnt")):
        return False
    return all(p.stat().st_mode & 0o001 for p in [path, *path.parents])


def bundle(dest, roots=("azure-identity", "azure-storage-blob")):
    """Copies the installed files of `roots` and everything they depend on into `dest`."""
    seen, pending = set(), list(roots)
    while pending:
        name = pending.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for req in dist.requires or []:
            if "extra ==" not in req:
                pending.append(req.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0]
                               .split("!")[0].split("~")[0].strip())
        for f in dist.files or []:
            if f.parts[0].endswith(".dist-info") or f.parts[0] in ("..", "bin") or "__pycache__" in f.parts:
                continue
            src = Path(dist.locate_file(f))
            if src.is_file():
                (dest / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / f)


def job_file(world, name, text, code=None, libraries=False):
    folder = world["tmp"] / name
    folder.mkdir(exist_ok=True)
    if code:
        (folder / "src").mkdir(exist_ok=True)
        for file, content in code.items():
            (folder / "src" / file).write_text(content)
        shutil.copy(Path(__file__).with_name("loopback_guard.py"), folder / "src" / "loopback_guard.py")
        if libraries and not reachable_by_jobs(SITE):
            bundle(folder / "src")
    if libraries and reachable_by_jobs(SITE):
        text += f"  PYTHONPATH: {SITE}\n"
    (folder / "job.yml").write_text(text)
    return str(folder / "job.yml")


def evidence(proc):
    """The JSON a job's code printed after `EVIDENCE `."""
    line = next(line for line in proc.stdout.splitlines() if line.startswith("EVIDENCE "))
    return json.loads(line.removeprefix("EVIDENCE "))


def host_processes(needle):
    """This machine's processes whose command line is `needle`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmdline.strip() == needle:
            found.append(cmdline)
    return found


def submit(server, path, name, env=None, stream=True, check=True):
    """Submits a job file; streaming, returns the CLI process (asserted successful when `check`)."""
    args = ["ml", "job", "create", "-f", path, "-n", name, *AT]
    if not stream:
        return server.cli(*args, env=env, check=check)
    proc = server.cli(*args, "--stream", env=env, check=False)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def wait(server, name, statuses=TERMINAL, limit=60):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        job = server.cli("ml", "job", "show", "-n", name, *AT)
        if job["status"] in statuses:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {name} did not reach {statuses}: {job.get('status')} {job.get('error')}")


def statuses(job):
    return [h["status"] for h in job["status_history"]]


def reads(server, job_id):
    """The storage log records of one job on the data account."""
    out = server.cli("storage", "logs", "--account", "jobdata", check=False).stdout
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [r for r in lines if (r.get("JobId") or "").lower() == job_id.lower()]


def test_hello_census_runs_as_the_submitting_user_with_the_data_role(server, world):
    alice = world["users"]["alice"]
    proc = server.cli("ml", "job", "create", "-f", str(EXAMPLE / "job.yml"), "-n", "hello-alice", *AT, "--stream",
                      env=alice["env"], check=False)
    assert proc.returncode == 0, proc.stderr
    assert "read 10 rows" in proc.stdout and "mean age: 41.9" in proc.stdout
    job = server.cli("ml", "job", "show", "-n", "hello-alice", *AT)
    assert statuses(job) == ["Queued", "Preparing", "Running", "Finalizing", "Completed"]
    assert job["identity"] == {"type": "user_identity"}
    assert "submitting user" in job["data_access"][0]["identity"]
    records = reads(server, job["id"])
    assert records and all(r["RequesterObjectId"] == alice["id"] for r in records)
    assert any(r["OperationName"] == "GetBlob" and r["Path"] == "data/census.csv" and r["StatusCode"] == 200
               for r in records)
    # Alice's token names the client acting for her (Azure ML's service), not her own object id.
    assert {r["RequesterAppId"] for r in records} == {"0736f41a-0425-4b46-bdb5-1563eff02385"}


def test_without_the_role_the_job_fails_in_preparing_and_never_runs_its_command(server, world):
    bob = world["users"]["bob"]
    marker = world["tmp"] / "bob-ran"
    text = (EXAMPLE / "job.yml").read_text().replace("command: python3", f"command: touch {marker} && python3")
    path = job_file(world, "bob", text)
    shutil.copytree(EXAMPLE / "src", Path(path).parent / "src", dirs_exist_ok=True)
    proc = submit(server, path, "hello-bob", env=bob["env"], check=False)
    assert proc.returncode != 0
    assert "Storage Blob Data Reader" in proc.stderr and "blobs/read" in proc.stderr, proc.stderr
    assert "bob@keyless.local" in proc.stdout  # the explanation is in the streamed job log
    job = server.cli("ml", "job", "show", "-n", "hello-bob", *AT)
    assert job["status"] == "Failed"
    assert job["error"]["code"] == "InputAccessDenied"
    # The explanation is whole and names the scope once; the log names the refused operation.
    message = job["error"]["message"]
    assert message.count("/containers/data`") == 1 and message.endswith("would grant it"), message
    refused = [r for r in reads(server, job["id"]) if r["StatusCode"] == 403]
    assert refused and all(r["OperationName"] == "GetBlobProperties" for r in refused), refused
    assert "Preparing" in statuses(job) and "Running" not in statuses(job)
    assert not marker.exists()
    refused = [r for r in reads(server, job["id"]) if r["StatusCode"] == 403]
    assert refused and refused[0]["RequesterObjectId"] == bob["id"]


def test_no_identity_reads_as_the_compute_system_assigned_identity(server, world):
    sai = world["computes"]["cpu-cluster"]["identity"]["principal_id"]
    text = "command: cat ${{inputs.census}}\ncompute: azureml:cpu-cluster\nenvironment: azureml:x@latest\n" \
           "inputs:\n  census:\n    type: uri_file\n    path: azureml://datastores/mydata/paths/census.csv\n"
    path = job_file(world, "noid", text)
    # The compute's identity holds no data role yet: refused, as that identity.
    assert submit(server, path, "noid-refused", check=False).returncode != 0
    refused = reads(server, wait(server, "noid-refused")["id"])
    assert refused and refused[0]["RequesterObjectId"] == sai and refused[0]["StatusCode"] == 403
    server.cli("role", "assignment", "create", "--assignee", sai, "--role", "Storage Blob Data Reader",
               "--scope", world["account_id"])
    submit(server, path, "noid-ok")
    job = server.cli("ml", "job", "show", "-n", "noid-ok", *AT)
    assert job["inputs"]["census"]["mode"] == "ro_mount"  # Azure's default, which keyless applied
    records = reads(server, job["id"])
    assert records and {r["RequesterObjectId"] for r in records} == {sai}
    assert records[0]["RequesterPrincipalType"] == "ManagedIdentity"


def test_managed_identity_with_a_client_id_reads_as_that_user_assigned_identity(server, world):
    uai = world["uai"]
    server.cli("role", "assignment", "create", "--assignee", uai["properties"]["principalId"], "--role",
               "Storage Blob Data Reader", "--scope", world["account_id"])
    text = "command: wc -l ${{inputs.census}}\ncompute: azureml:uai-cluster\nenvironment: azureml:x@latest\n" \
           "inputs:\n  census:\n    type: uri_file\n    path: azureml://datastores/mydata/paths/census.csv\n" \
           f"identity:\n  type: managed\n  client_id: {uai['properties']['clientId']}\n"
    submit(server, job_file(world, "uai", text), "uai-job")
    job = server.cli("ml", "job", "show", "-n", "uai-job", *AT)
    assert {r["RequesterObjectId"] for r in reads(server, job["id"])} == {uai["properties"]["principalId"]}
    # A client id of an identity not attached to the compute is refused at submission.
    other = text.replace(uai["properties"]["clientId"], "00000000-0000-0000-0000-000000000001")
    proc = submit(server, job_file(world, "uai-other", other), "uai-other", check=False)
    assert proc.returncode != 0 and "not a user-assigned identity attached" in proc.stderr


CODE_AS_MANAGED = """
import json, os, sys
import loopback_guard
from azure.identity import ManagedIdentityCredential
from azure.storage.blob import BlobServiceClient

cred = ManagedIdentityCredential(client_id=os.environ["DEFAULT_IDENTITY_CLIENT_ID"])
token = cred.get_token("https://storage.azure.com/.default").token
svc = BlobServiceClient(os.environ["KEYLESS_STORAGE_ENDPOINT"] + "/jobdata", credential=cred,
                        connection_verify=os.environ["REQUESTS_CA_BUNDLE"])
data = svc.get_blob_client("data", "census.csv").download_blob().readall()
print("blob rows:", len(data.decode().splitlines()) - 1)
# The agent that runs this code holds the job's secret: this code runs as the
# same user, and tries to take the secret from the agent's handle and memory.
agents = [p for p in os.listdir("/proc") if p.isdigit()
          and b"job-agent" in open(f"/proc/{p}/cmdline", "rb").read()]
stolen = {}
for pid in agents:
    for part in ("environ", "mem", "maps"):
        try:
            with open(f"/proc/{pid}/{part}", "rb") as f:
                f.read(64)
            stolen[part] = "read"
        except OSError as e:
            stolen[part] = type(e).__name__
print("EVIDENCE " + json.dumps({"token": token, "endpoint": os.environ["MSI_ENDPOINT"],
                               "secret": os.environ["MSI_SECRET"], "agents": len(agents),
                               "stolen": stolen,
                               "handle": os.path.exists("/mnt/azureml/job/.job-handle")}))
assert not loopback_guard.ATTEMPTS, loopback_guard.ATTEMPTS
"""

CODE_AS_USER = """
import json, os
import loopback_guard
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ManagedIdentityCredential

token = ManagedIdentityCredential().get_token("https://storage.azure.com/.default").token
try:
    ManagedIdentityCredential(client_id=os.environ["COMPUTE_CLIENT_ID"]).get_token("https://storage.azure.com/.default")
    compute = "issued"
except ClientAuthenticationError as e:
    compute = "refused: " + str(e)
print("EVIDENCE " + json.dumps({"token": token, "compute": compute,
                               "default": os.environ.get("DEFAULT_IDENTITY_CLIENT_ID")}))
assert not loopback_guard.ATTEMPTS, loopback_guard.ATTEMPTS
"""


def test_code_in_a_job_gets_the_compute_identity_and_its_tokens_end_with_the_job(server, world):
    text = f"command: {JOB_PYTHON} main.py\ncode: src\ncompute: azureml:cpu-cluster\n" \
           f"environment: azureml:x@latest\nenvironment_variables:\n  JOB_KIND: managed\n"
    path = job_file(world, "code-mi", text, {"main.py": CODE_AS_MANAGED}, libraries=True)
    proc = submit(server, path, "code-mi", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "blob rows: 10" in proc.stdout
    got = evidence(proc)
    job = server.cli("ml", "job", "show", "-n", "code-mi", *AT)
    sai = world["computes"]["cpu-cluster"]["identity"]["principal_id"]
    assert claims(got["token"])["oid"] == sai
    assert {r["RequesterObjectId"] for r in reads(server, job["id"])} == {sai}
    # After the job: the token and the endpoint's secret no longer work.
    r = requests.get(f"{server.info['storage']}/jobdata/data/census.csv", verify=server.ca,
                     headers={"Authorization": f"Bearer {got['token']}", "x-ms-version": "2025-01-05"})
    assert r.status_code == 401 and "has ended" in r.text
    # The endpoint was the agent's, on the node's loopback, and went with it.
    assert got["endpoint"].startswith("http://127.0.0.1:") and f":{server.ports['identity']}/" not in got["endpoint"]
    with pytest.raises(requests.ConnectionError):
        requests.get(got["endpoint"], params={"resource": "https://storage.azure.com", "api-version": "2017-09-01"},
                     headers={"secret": got["secret"]}, timeout=5)
    # The job's code could take the agent's secret neither from its handle nor from its memory.
    assert got["agents"] == 1 and not got["handle"]
    assert set(got["stolen"].values()) == {"PermissionError"}, got["stolen"]


def test_a_user_identity_job_gets_the_users_token_and_never_the_computes(server, world):
    alice = world["users"]["alice"]
    compute_client = world["computes"]["cpu-cluster"]["identity"].get("client_id") or \
        world["computes"]["cpu-cluster"]["default_identity"]["client_id"]
    text = f"command: {JOB_PYTHON} main.py\ncode: src\ncompute: azureml:cpu-cluster\n" \
           f"environment: azureml:x@latest\nidentity:\n  type: user_identity\nenvironment_variables:\n" \
           f"  COMPUTE_CLIENT_ID: {compute_client}\n"
    path = job_file(world, "code-user", text, {"main.py": CODE_AS_USER}, libraries=True)
    proc = submit(server, path, "code-user", env=alice["env"], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = evidence(proc)
    assert claims(got["token"])["oid"] == alice["id"]
    assert claims(got["token"])["upn"] == "alice@keyless.local"
    assert got["compute"].startswith("refused") and "user_identity" in got["compute"]
    assert got["default"] is None
    r = requests.get(f"{server.info['storage']}/jobdata/data/census.csv", verify=server.ca,
                     headers={"Authorization": f"Bearer {got['token']}", "x-ms-version": "2025-01-05"})
    assert r.status_code == 401 and "has ended" in r.text


def test_a_pipeline_reads_as_each_steps_identity_and_a_component_identity_has_no_effect(server, world):
    alice = world["users"]["alice"]
    sai = world["computes"]["cpu-cluster"]["identity"]["principal_id"]
    census = "    inputs:\n      census:\n        type: uri_file\n        path: azureml://datastores/mydata/paths/census.csv\n"
    text = (
        "type: pipeline\nsettings:\n  default_compute: azureml:cpu-cluster\nidentity:\n  type: user_identity\njobs:\n"
        "  as_root:\n    command: head -1 ${{inputs.census}} > ${{outputs.out}}/header.txt\n"
        "    environment: azureml:x@latest\n" + census + "    outputs:\n      out:\n"
        "  as_managed:\n    command: cat ${{inputs.prev}}/header.txt ${{inputs.census}}\n"
        "    environment: azureml:x@latest\n    identity:\n      type: managed\n" + census +
        "      prev: ${{parent.jobs.as_root.outputs.out}}\n"
        "  node:\n    type: pipeline\n    identity:\n      type: user_identity\n    component:\n      jobs:\n"
        "        leaf:\n          command: wc -l ${{inputs.census}}\n          environment: azureml:x@latest\n"
        "          inputs:\n            census:\n              type: uri_file\n"
        "              path: azureml://datastores/mydata/paths/census.csv\n"
    )
    proc = submit(server, job_file(world, "pipe", text), "pipe", env=alice["env"], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    parent = server.cli("ml", "job", "show", "-n", "pipe", *AT)
    assert parent["status"] == "Completed"
    steps = {s["step_name"]: s for s in
             server.cli("ml", "job", "list", *AT, "--parent-job-name", "pipe")}
    assert set(steps) == {"as_root", "as_managed", "node.leaf"}
    readers = {name: {r["RequesterObjectId"] for r in reads(server, s["id"])} for name, s in steps.items()}
    assert readers == {"as_root": {alice["id"]}, "as_managed": {sai}, "node.leaf": {sai}}
    assert "pipeline component" in steps["node.leaf"]["identity_reason"]
    assert "age,workclass" in proc.stdout  # the header the first step wrote reached the second


def test_cancel_stops_a_running_job_and_a_tampered_snapshot_fails_with_a_checksum_error(server, world):
    # The blocker also starts a daemon of its own session, as a job that wants to outlive
    # itself would; cancel must end both.
    needle = f"sleep 60.{uuid.uuid4().int % 10**6}"
    blocker = f"command: setsid {needle} & {needle}\ncompute: azureml:one-slot\nenvironment: azureml:x@latest\n"
    submit(server, job_file(world, "blocker", blocker), "blocker", stream=False)
    wait(server, "blocker", {"Running"})
    code = {"main.py": "print('original code ran')\n"}
    text = f"command: {JOB_PYTHON} main.py\ncode: src\ncompute: azureml:one-slot\nenvironment: azureml:x@latest\n"
    submit(server, job_file(world, "tamper", text, code), "tampered", stream=False)
    time.sleep(0.5)
    # One slot: the second job waits in the queue behind the first.
    assert server.cli("ml", "job", "show", "-n", "tampered", *AT)["status"] == "Queued"
    job = server.cli("ml", "job", "show", "-n", "tampered", *AT)
    code_version = server.cli("ml", "job", "show", "-n", "tampered", *AT)["code"]
    hex_ = code_version.split("/codes/code-")[1].split("/")[0]
    store = server.cli("ml", "datastore", "show", "-n", "workspaceblobstore", *AT)
    ws_key = server.cli("storage", "account", "keys", "list", "-n", store["account_name"], "-g", "default")[0]["value"]
    svc = BlobServiceClient(f"{server.info['storage']}/{store['account_name']}", connection_verify=server.ca,
                            credential={"account_name": store["account_name"], "account_key": ws_key})
    snapshot = [b.name for b in svc.get_container_client(store["container_name"]).list_blobs(name_starts_with="LocalUpload/")
                if b.name.endswith("/main.py") and hex_ in b.name]
    assert snapshot, "the snapshot was stored in the workspace's blob datastore"
    svc.get_blob_client(store["container_name"], snapshot[0]).upload_blob(b"print('tampered')\n", overwrite=True)
    deadline = time.monotonic() + 30
    while len(host_processes(needle)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(host_processes(needle)) == 2, "the blocker and its daemon are running"
    started = time.monotonic()
    server.cli("ml", "job", "cancel", "-n", "blocker", *AT)
    canceled = wait(server, "blocker")
    assert canceled["status"] == "Canceled" and time.monotonic() - started < 15
    assert not host_processes(needle), "a process of the canceled job is still running"
    failed = wait(server, "tampered")
    assert failed["status"] == "Failed", failed
    assert failed["error"]["code"] == "CodeChecksumMismatch"
    assert "Running" not in statuses(failed)
    log = server.cli("ml", "job", "download", "-n", "tampered", *AT, "--download-path", str(world["tmp"] / "dl"))
    text = (world["tmp"] / "dl" / "user_logs" / "std_log.txt").read_text()
    assert "changed after submission" in text and "tampered" not in text.split("CodeChecksumMismatch")[0][-10:]
    assert log["downloaded"]
    # Canceling a finished job is refused.
    assert server.cli("ml", "job", "cancel", "-n", "blocker", *AT, check=False).returncode != 0


def test_outputs_are_uploaded_and_downloaded_and_modes_keyless_lacks_are_refused_at_submission(server, world):
    alice = world["users"]["alice"]
    text = "command: cp ${{inputs.census}} ${{outputs.copy}}/census-copy.csv\ncompute: azureml:cpu-cluster\n" \
           "environment: azureml:x@latest\nidentity:\n  type: user_identity\n" \
           "inputs:\n  census:\n    type: uri_file\n    path: azureml://datastores/mydata/paths/census.csv\n" \
           "outputs:\n  copy:\n    type: uri_folder\n    mode: upload\n"
    submit(server, job_file(world, "outputs", text), "with-output", env=alice["env"])
    job = server.cli("ml", "job", "show", "-n", "with-output", *AT)
    assert job["outputs"]["copy"]["path"] == \
        "azureml://datastores/workspaceblobstore/paths/azureml/with-output/copy/"
    dest = world["tmp"] / "out-dl"
    # Outputs are read with the caller's own identity: without a data role on the
    # workspace's storage the download is refused with the reason.
    proc = server.cli("ml", "job", "download", "-n", "with-output", *AT, "--download-path", str(dest), check=False)
    assert proc.returncode != 0 and "cannot be listed with your identity" in proc.stderr
    account = server.cli("ml", "datastore", "show", "-n", "workspaceblobstore", *AT)["account_name"]
    server.cli("role", "assignment", "create", "--assignee", server.admin["username"], "--role",
               "Storage Blob Data Reader", "--scope",
               f"/subscriptions/{world['sub']}/resourceGroups/default/providers/Microsoft.Storage/storageAccounts/{account}")
    server.cli("ml", "job", "download", "-n", "with-output", *AT, "--download-path", str(dest))
    assert (dest / "named-outputs" / "copy" / "census-copy.csv").read_bytes() == (EXAMPLE / "census.csv").read_bytes()
    for mode, port, why in (("eval_mount", "inputs", "mltable"), ("direct", "outputs", "not provided by keyless")):
        bad = text.replace("    mode: upload\n", f"    mode: {mode}\n") if port == "outputs" else \
            text.replace("census.csv\n", f"census.csv\n    mode: {mode}\n", 1)
        proc = submit(server, job_file(world, f"bad-{mode}", bad), f"bad-{mode}", env=alice["env"], check=False)
        assert proc.returncode != 0 and why in proc.stderr, proc.stderr


def test_a_job_reaches_neither_the_servers_files_and_processes_nor_another_running_job(server, world):
    """What an attacker's job tried: read the data dir (admin password, master key) from its
    working directory and by path, read the server's environment, signal it, harvest a
    running job's identity secret from /proc, list other jobs' folders, and leave a daemon
    behind for later jobs. Each must fail, and the job runs as an unprivileged user."""
    alice, bob = world["users"]["alice"], world["users"]["bob"]
    tag = uuid.uuid4().int % 10**6
    victim = f"sleep 45.{tag}"
    text = f"command: {victim}\ncompute: azureml:cpu-cluster\nenvironment: azureml:x@latest\n" \
           "identity:\n  type: user_identity\n"
    submit(server, job_file(world, "victim", text), "victim", env=alice["env"], stream=False)
    deadline = time.monotonic() + 30
    while not host_processes(victim) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert host_processes(victim), "alice's job is running"
    data, pid = server.data_dir, server.proc.pid
    daemon = f"sleep 44.{tag}"
    attack = (
        'echo "uid=$(id -u)"; D=$(cd ../../../.. && pwd); cat "$D/admin.json" "$D/master.key"; '
        f"cat {data}/admin.json; od -tx1 {data}/master.key; ls {data} {data}/jobs; "
        f"tr '\\0' '\\n' < /proc/{pid}/environ; kill -0 {pid} && echo SIGNAL-DELIVERED; "
        "for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $f; done | grep IDENTITY_HEADER= "
        '| grep -v "=$IDENTITY_HEADER$" | sed s/^/HARVESTED:/; '
        f"setsid {daemon} > /dev/null 2>&1 < /dev/null & echo attack-done"
    )
    text = f"command: {attack}\ncompute: azureml:cpu-cluster\nenvironment: azureml:x@latest\n"
    proc = submit(server, job_file(world, "attack", text), "attack", env=bob["env"], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert "attack-done" in lines, proc.stdout
    uid = next(line for line in lines if line.startswith("uid="))
    assert uid != "uid=0" and int(uid.removeprefix("uid=")) >= 1_000_000, uid
    assert server.admin["password"] not in proc.stdout
    assert not any(line.startswith("0000000") for line in lines), "the master key was read"
    assert not any(line.startswith("RUST_LOG=") for line in lines), "the server's environment was read"
    assert "SIGNAL-DELIVERED" not in lines
    assert not any(line.startswith("HARVESTED:") for line in lines), "another job's secret was read"
    assert not any("victim-" in line for line in lines), "another job's folder was listed"
    assert not host_processes(daemon), "the attacker's daemon outlived its job"
    server.cli("ml", "job", "cancel", "-n", "victim", *AT, env=alice["env"])
    assert wait(server, "victim")["status"] == "Canceled"
    assert not host_processes(victim)


CODE_READS_WITH_ITS_TOKEN = """
import json, os, ssl, urllib.error, urllib.request
req = urllib.request.Request(os.environ["IDENTITY_ENDPOINT"] + "?resource=https://storage.azure.com&api-version=2019-08-01",
                             headers={"X-IDENTITY-HEADER": os.environ["IDENTITY_HEADER"]})
token = json.load(urllib.request.urlopen(req))["access_token"]
ctx = ssl.create_default_context(cafile=os.environ["REQUESTS_CA_BUNDLE"])
blob = urllib.request.Request(os.environ["KEYLESS_STORAGE_ENDPOINT"] + "/jobdata/data/census.csv",
                              headers={"Authorization": "Bearer " + token, "x-ms-version": "2025-01-05"})
try:
    print("direct read:", urllib.request.urlopen(blob, context=ctx).status)
except urllib.error.HTTPError as e:
    print("direct read:", e.code, e.headers.get("x-ms-error-code"))
"""


def test_a_jobs_managed_identity_is_no_trusted_service_behind_a_firewall(server, world):
    """Behind `defaultAction: Deny` with the `AzureServices` bypass, a compute's managed identity
    used to pass from any address. It passes only with an address rule now, both for the job's
    inputs and for its code's own requests with the identity's token."""
    sai = world["computes"]["cpu-cluster"]["identity"]["principal_id"]
    server.cli("role", "assignment", "create", "--assignee", sai, "--role", "Storage Blob Data Reader",
               "--scope", world["account_id"], check=False)
    account = ("-n", "jobdata", "-g", "default")
    text = f"command: {JOB_PYTHON} main.py\ncode: src\ncompute: azureml:cpu-cluster\n" \
           "environment: azureml:x@latest\n" \
           "inputs:\n  census:\n    type: uri_file\n    path: azureml://datastores/mydata/paths/census.csv\n"
    server.cli("storage", "account", "update", *account, "--default-action", "Deny", "--bypass", "AzureServices")
    try:
        path = job_file(world, "fw-input", text, {"main.py": CODE_READS_WITH_ITS_TOKEN})
        proc = submit(server, path, "fw-refused", check=False)
        assert proc.returncode != 0
        job = wait(server, "fw-refused")
        assert job["error"]["code"] == "InputAccessDenied"
        assert "network rules" in job["error"]["message"]
        # Without inputs the job runs, and its code's own read with the identity's token is
        # refused by the firewall: a managed identity is not a trusted service.
        bare = text.split("inputs:")[0]
        proc = submit(server, job_file(world, "fw-direct", bare, {"main.py": CODE_READS_WITH_ITS_TOKEN}),
                      "fw-direct", check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "direct read: 403 AuthorizationFailure" in proc.stdout, proc.stdout
        # A resource instance rule for another compute admits nothing here; one for this
        # compute admits its identity from any address.
        cluster_id = world["computes"]["cpu-cluster"]["id"]
        other = cluster_id.rsplit("/", 1)[0] + "/uai-cluster"
        server.cli("storage", "account", "network-rule", "add", *account, "--resource-id", other,
                   "--tenant-id", server.tenant)
        assert "direct read: 403" in submit(server, job_file(world, "fw-direct", bare), "fw-other",
                                            check=False).stdout
        server.cli("storage", "account", "network-rule", "add", *account, "--resource-id", cluster_id,
                   "--tenant-id", server.tenant)
        proc = submit(server, job_file(world, "fw-direct", bare), "fw-instance", check=False)
        assert "direct read: 200" in proc.stdout, proc.stdout
        for rid in (other, cluster_id):
            server.cli("storage", "account", "network-rule", "remove", *account, "--resource-id", rid,
                       "--tenant-id", server.tenant)
        # The address the compute's requests come from is allowed: the inputs pass, and so
        # does the code's own request with the identity's token, from the same address.
        server.cli("storage", "account", "network-rule", "add", *account, "--ip-address", "127.0.0.1")
        proc = submit(server, path, "fw-allowed", check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "direct read: 200" in proc.stdout
    finally:
        server.cli("storage", "account", "update", *account, "--default-action", "Allow")
        server.cli("storage", "account", "network-rule", "remove", *account, "--ip-address", "127.0.0.1",
                   check=False)


def test_an_output_that_links_out_of_the_job_uploads_nothing(server, world):
    """The server uploads outputs after the job, as itself: a job that turns its output folder
    into a link to the data dir (relative, so it resolves on the host) must not get the
    server's files uploaded for it."""
    alice = world["users"]["alice"]
    text = "command: rm -rf ${{outputs.stolen}} && ln -s ../../../.. ${{outputs.stolen}} && ls -la ..\n" \
           "compute: azureml:cpu-cluster\nenvironment: azureml:x@latest\nidentity:\n  type: user_identity\n" \
           "outputs:\n  stolen:\n    type: uri_folder\n    mode: upload\n"
    proc = submit(server, job_file(world, "link-out", text), "link-out", env=alice["env"], check=False)
    assert proc.returncode != 0
    job = wait(server, "link-out")
    assert job["error"]["code"] == "OutputOutsideJob", job["error"]
    account = server.cli("ml", "datastore", "show", "-n", "workspaceblobstore", *AT)["account_name"]
    logs = server.cli("storage", "logs", "--account", account, check=False).stdout
    puts = [json.loads(line) for line in logs.splitlines() if line.strip()]
    assert not [r for r in puts if r["OperationName"] == "PutBlob" and "link-out" in r["Path"]], puts


def step_log(server, name):
    return server.cli("ml", "job", "stream", "-n", name, *AT, check=False).stdout


def stamps(log, word):
    return next(float(line.split()[1]) for line in log.splitlines() if line.startswith(word + " "))


PIPELINE_STEPS = (
    "jobs:\n"
    "  fails:\n    command: echo start $(date +%s.%N); sleep 1; exit 3\n    environment: azureml:x@latest\n"
    "  slow:\n    command: echo start $(date +%s.%N); sleep 4; echo end $(date +%s.%N)\n"
    "    environment: azureml:x@latest\n"
)


def test_independent_pipeline_steps_overlap_and_a_failure_stops_the_rest_unless_told_to_continue(server, world):
    head = "type: pipeline\nsettings:\n  default_compute: azureml:cpu-cluster\n{extra}"
    # Without continue_on_step_failure: the failure cancels the step still running.
    submit(server, job_file(world, "pipe-stop", head.format(extra="") + PIPELINE_STEPS), "pipe-stop", stream=False)
    parent = wait(server, "pipe-stop", limit=60)
    assert parent["status"] == "Failed"
    assert "fails ended Failed" in parent["error"]["message"]
    slow = wait(server, "pipe-stop-slow")
    assert slow["status"] == "Canceled", slow
    # With it: the independent step runs to its end after its sibling failed, and both ran at once.
    extra = "  continue_on_step_failure: true\n"
    submit(server, job_file(world, "pipe-go", head.format(extra=extra) + PIPELINE_STEPS), "pipe-go", stream=False)
    parent = wait(server, "pipe-go", limit=60)
    assert parent["status"] == "Failed"
    assert wait(server, "pipe-go-fails")["status"] == "Failed"
    assert wait(server, "pipe-go-slow")["status"] == "Completed"
    fails, slow = step_log(server, "pipe-go-fails"), step_log(server, "pipe-go-slow")
    assert stamps(fails, "start") < stamps(slow, "end") and stamps(slow, "start") < stamps(fails, "start") + 1, \
        (fails, slow)


def test_a_step_output_bound_to_a_pipeline_output_lands_where_the_pipeline_says(server, world):
    alice = world["users"]["alice"]
    where = "azureml://datastores/workspaceblobstore/paths/pipe-results/"
    text = (
        "type: pipeline\nsettings:\n  default_compute: azureml:cpu-cluster\nidentity:\n  type: user_identity\n"
        f"outputs:\n  summary:\n    type: uri_folder\n    path: {where}\n"
        "jobs:\n  make:\n    command: echo hello > ${{outputs.o}}/hello.txt\n    environment: azureml:x@latest\n"
        "    outputs:\n      o: ${{parent.outputs.summary}}\n"
    )
    submit(server, job_file(world, "pipe-out", text), "pipe-out", env=alice["env"])
    parent = server.cli("ml", "job", "show", "-n", "pipe-out", *AT)
    assert parent["outputs"]["summary"]["path"] == where
    step = server.cli("ml", "job", "show", "-n", "pipe-out-make", *AT)
    assert step["outputs"]["o"]["path"] == where
    # The workspace's blob datastore holds a key: the agent wrote with a SAS keyless signed for that one blob,
    # and the storage log names the step.
    account = server.cli("ml", "datastore", "show", "-n", "workspaceblobstore", *AT)["account_name"]
    out = server.cli("storage", "logs", "--account", account, check=False).stdout
    writes = [json.loads(line) for line in out.splitlines() if "pipe-results/hello.txt" in line]
    assert any(w["OperationName"] == "PutBlob" and w["StatusCode"] == 201 and w["AuthenticationType"] == "SAS"
               and (w.get("JobId") or "").lower() == step["id"].lower() for w in writes), writes
    # A step bound to a pipeline output the pipeline does not declare is refused at submission.
    bad = text.replace("${{parent.outputs.summary}}", "${{parent.outputs.nowhere}}")
    proc = submit(server, job_file(world, "pipe-bad", bad), "pipe-bad", env=alice["env"], check=False)
    assert proc.returncode != 0 and "does not declare" in proc.stderr, proc.stderr


def mount_job(command, inputs="", outputs="", identity="  type: user_identity\n"):
    text = "command: |\n" + "".join(f"  {line}\n" for line in command.splitlines()) + \
           "compute: azureml:cpu-cluster\nenvironment: azureml:x@latest\n"
    if identity:
        text += "identity:\n" + identity
    if inputs:
        text += "inputs:\n" + inputs
    if outputs:
        text += "outputs:\n" + outputs
    return text


def test_mounts_list_and_read_by_ranges_and_write_through_fuse_as_the_submitting_user(server, world):
    """ro_mount and rw_mount (and the same YAML without modes, Azure's defaults): the job sees one
    FUSE file system, lists and reads its input through it, a large file by ranges and never whole,
    cannot write to the input, and what it writes, renames and deletes in the output reaches the
    datastore as it is closed; every mounted read is in the storage log with the job's id."""
    alice = world["users"]["alice"]
    data = BlobServiceClient(f"{server.info['storage']}/jobdata",
                             credential={"account_name": "jobdata", "account_key": world["key"]},
                             connection_verify=server.ca).get_container_client("data")
    big = os.urandom(1 << 20) * 64
    for name, body in (("mnt/a.txt", b"alpha\n"), ("mnt/sub/b.txt", b"beta\n"), ("mnt/big.bin", big)):
        data.upload_blob(name, body, overwrite=True)
    offset = 40 << 20
    command = (
        "set -e\n"
        "mount | grep -F fuse.keyless\n"
        "cd ${{inputs.d}}\n"
        "find . -type f | sort | tr '\\n' ' '; echo\n"
        "cat a.txt sub/b.txt\n"
        f"{JOB_PYTHON} -c \"import mmap; f = open('a.txt', 'rb'); "
        "print('MMAP', mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)[:5].decode())\"\n"
        f"dd if=big.bin bs=65536 skip={offset >> 16} count=1 2>/dev/null | sha256sum\n"
        "if (echo x > a.txt) 2>/dev/null; then echo WROTE\"\"-INPUT; fi\n"
        "echo written > ${{outputs.out}}/result.txt\n"
        "echo scratch > ${{outputs.out}}/scratch.txt\n"
        "rm ${{outputs.out}}/scratch.txt\n"
        "mkdir ${{outputs.out}}/deep\n"
        "cp a.txt ${{outputs.out}}/deep/a-copy.txt\n"
        "mv ${{outputs.out}}/result.txt ${{outputs.out}}/renamed.txt\n"
        "echo MOUNTS\"\"-DONE\n"
    )
    inputs = "  d:\n    type: uri_folder\n    path: azureml://datastores/mydata/paths/mnt/\n    mode: ro_mount\n"
    outputs = "  out:\n    type: uri_folder\n    mode: rw_mount\n"
    expected_sum = __import__("hashlib").sha256(big[offset:offset + 65536]).hexdigest()
    account = server.cli("ml", "datastore", "show", "-n", "workspaceblobstore", *AT)["account_name"]
    ws_key = server.cli("storage", "account", "keys", "list", "-n", account, "-g", "default")[0]["value"]
    ws_store = BlobServiceClient(f"{server.info['storage']}/{account}",
                                 credential={"account_name": account, "account_key": ws_key},
                                 connection_verify=server.ca).get_container_client(
        server.cli("ml", "datastore", "show", "-n", "workspaceblobstore", *AT)["container_name"])
    for name, text in (("mounted", mount_job(command, inputs, outputs)),
                       ("mounted-defaults", mount_job(command, inputs.replace("    mode: ro_mount\n", ""),
                                                      outputs.replace("    mode: rw_mount\n", "")))):
        assert ("mode:" in text) == (name == "mounted")
        proc = submit(server, job_file(world, name, text), name, env=alice["env"])
        out = proc.stdout
        assert "keyless-mounts on /mnt/azureml/job/mounts type fuse.keyless" in out, out
        assert "./a.txt ./big.bin ./sub/b.txt" in out and "alpha\nbeta\nMMAP alpha\n" in out, out
        assert expected_sum in out and "WROTE-INPUT" not in out and "MOUNTS-DONE" in out, out
        job = server.cli("ml", "job", "show", "-n", name, *AT)
        assert job["inputs"]["d"]["mode"] == "ro_mount" and job["outputs"]["out"]["mode"] == "rw_mount"
        assert {(a["port"], a["mode"]) for a in job["data_access"]} == {("d", "ro_mount"), ("out", "rw_mount")}
        records = reads(server, job["id"])
        ranged = [r for r in records if r["OperationName"] == "GetBlob" and r["Path"] == "data/mnt/big.bin"]
        # Read by ranges of at most 4 MiB, the one asked for and the next few: never the whole 64 MiB.
        assert ranged and all(r["ResponseBodySize"] <= 4 << 20 for r in ranged), ranged
        assert sum(r["ResponseBodySize"] for r in ranged) <= 32 << 20, ranged
        assert all(r["RequesterObjectId"] == alice["id"] for r in records)
        assert any(r["OperationName"] == "ListBlobs" for r in records)
        prefix = f"azureml/{name}/out/"
        assert sorted(b.name for b in ws_store.list_blobs(name_starts_with=prefix)) == \
            [f"{prefix}deep/a-copy.txt", f"{prefix}renamed.txt"]
        assert ws_store.download_blob(f"{prefix}renamed.txt").readall() == b"written\n"
        assert ws_store.download_blob(f"{prefix}deep/a-copy.txt").readall() == b"alpha\n"
    # No mounted read went unattributed: every read of the mounted folder names a job.
    out = server.cli("storage", "logs", "--account", "jobdata", check=False).stdout
    mounted = [json.loads(line) for line in out.splitlines() if '"data/mnt/' in line]
    gets = [r for r in mounted if r["OperationName"] == "GetBlob"]
    assert gets and all(r.get("JobId") for r in gets), gets


def test_a_mount_refuses_what_the_identity_may_not_do_and_says_why(server, world):
    """bob reads a mounted folder while his role lasts; with the role removed the job fails in
    Preparing with the storage's explanation and its command never runs. alice, who may only read
    `mydata`, gets EACCES when a file she wrote to an rw_mount on it is closed, the job's log says
    why, and the job fails rather than lose the file silently."""
    bob, alice = world["users"]["bob"], world["users"]["alice"]
    inputs = "  d:\n    type: uri_folder\n    path: azureml://datastores/mydata/paths/mnt/\n"
    text = mount_job("echo COMMAND\"\"-RAN\ncat ${{inputs.d}}/a.txt", inputs)
    assigned = server.cli("role", "assignment", "create", "--assignee", "bob@keyless.local",
                          "--role", "Storage Blob Data Reader", "--scope", world["account_id"])
    proc = submit(server, job_file(world, "bob-mount", text), "bob-mount", env=bob["env"])
    assert "COMMAND-RAN\nalpha" in proc.stdout, proc.stdout
    server.cli("role", "assignment", "delete", "--ids", assigned["id"])
    proc = submit(server, job_file(world, "bob-mount", text), "bob-mount-refused", env=bob["env"], check=False)
    assert proc.returncode != 0
    job = server.cli("ml", "job", "show", "-n", "bob-mount-refused", *AT)
    assert job["status"] == "Failed" and job["error"]["code"] == "InputAccessDenied", job["error"]
    assert "bob@keyless.local" in job["error"]["message"] and "Storage Blob Data Reader" in job["error"]["message"]
    assert "Running" not in statuses(job) and "COMMAND-RAN" not in proc.stdout
    assert any(r["StatusCode"] == 403 and r["RequesterObjectId"] == bob["id"] for r in reads(server, job["id"]))

    code = ("import errno\n"
            "try:\n"
            "    with open('${{outputs.o}}/f.txt', 'w') as f:\n"
            "        f.write('x')\n"
            "    print('CLO' 'SED')\n"
            "except OSError as e:\n"
            "    print('REFUSED', errno.errorcode[e.errno])\n")
    outputs = "  o:\n    type: uri_folder\n    path: azureml://datastores/mydata/paths/out/\n"
    text = mount_job(f"{JOB_PYTHON} -c \"$(cat <<'EOF'\n{code}EOF\n)\"", outputs=outputs)
    proc = submit(server, job_file(world, "alice-ro", text), "alice-readonly", env=alice["env"], check=False)
    assert "REFUSED EACCES" in proc.stdout and "CLOSED" not in proc.stdout, proc.stdout
    assert "mount: writing f.txt was refused" in proc.stdout and "alice@keyless.local" in proc.stdout, proc.stdout
    job = server.cli("ml", "job", "show", "-n", "alice-readonly", *AT)
    assert job["status"] == "Failed" and job["error"]["code"] == "OutputUploadFailed", job["error"]


def fuse_mounts_on_the_node():
    """Every keyless FUSE mount any process on this machine sees, in any mount namespace."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            text = Path(f"/proc/{pid}/mountinfo").read_text()
        except OSError:
            continue
        found.update(line for line in text.splitlines() if "fuse.keyless" in line)
    return found


def test_a_canceled_job_leaves_no_mount_behind(server, world):
    """A job reading through its mount, with a file of its rw_mount open, is canceled: its
    mounts end with it, and no keyless FUSE mount is left in any namespace of the node."""
    alice = world["users"]["alice"]
    needle = f"sleep 60.{uuid.uuid4().int % 10**6}"
    command = f"exec 3>${{{{outputs.out}}}}/open.txt\ncat ${{{{inputs.d}}}}/a.txt\n{needle}"
    inputs = "  d:\n    type: uri_folder\n    path: azureml://datastores/mydata/paths/mnt/\n"
    outputs = "  out:\n    type: uri_folder\n"
    submit(server, job_file(world, "mount-cancel", mount_job(command, inputs, outputs)), "mount-cancel",
           env=alice["env"], stream=False)
    wait(server, "mount-cancel", {"Running"})
    deadline = time.monotonic() + 30
    while not host_processes(needle) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert host_processes(needle) and fuse_mounts_on_the_node(), "the job runs with its mounts"
    server.cli("ml", "job", "cancel", "-n", "mount-cancel", *AT)
    assert wait(server, "mount-cancel")["status"] == "Canceled"
    deadline = time.monotonic() + 10
    while (host_processes(needle) or fuse_mounts_on_the_node()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not host_processes(needle) and not fuse_mounts_on_the_node()


NULL_GUID = "00000000-0000-0000-0000-000000000000"


def push_image(server, tmp, login_server, repository, marker):
    """Builds a busybox image holding `marker` and pushes it with skopeo as the signed-in admin
    (Owner), from a network namespace where only the registry's port is reachable."""
    import sys

    from netns_guard import run_isolated
    from oci_image import build_image
    name = login_server.split(".")[0]
    layout = tmp / f"img-{repository.replace('/', '-')}"
    build_image(layout, marker=marker)
    certs = tmp / "certs"
    certs.mkdir(exist_ok=True)
    shutil.copy(server.ca, certs / "ca.crt")
    token = server.cli("acr", "login", "-n", name, "--expose-token")["accessToken"]
    host, port = login_server.rsplit(":", 1)
    argv = [sys.executable, "-c", "import os, sys; os.execvp(sys.argv[1], sys.argv[1:])", "skopeo", "copy",
            "--dest-cert-dir", str(certs), "--dest-creds", f"{NULL_GUID}:{token}", f"oci:{layout}:1",
            f"docker://{login_server}/{repository}:1"]
    pushed = run_isolated(argv, dict(os.environ), [int(port)], [f"127.0.0.1 {host}"], timeout=120)
    assert pushed.returncode == 0, pushed.stderr
    return f"{login_server}/{repository}:1"


def image_environment(server, world, name, image):
    path = world["tmp"] / f"{name}.yml"
    path.write_text(f"name: {name}\nimage: {image}\n")
    made = server.cli("ml", "environment", "create", "--file", str(path), *AT)
    assert made["image"] == image
    return f"azureml:{name}:{made['version']}"


def image_job(world, name, environment, compute="cpu-cluster"):
    command = ("cat /marker.txt; echo UID $(id -u); echo written > ./from-the-image && echo WROTE-CWD; "
               "grep CapEff /proc/self/status; "
               "ls /mnt/azureml/images >/dev/null 2>&1 && echo SAW-IMAGE-CACHE || echo NO-IMAGE-CACHE; "
               f"ls {world['data_dir']} >/dev/null 2>&1 && echo SAW-DATA-DIR || echo NO-DATA-DIR")
    return job_file(world, name, f"command: {command}\ncompute: azureml:{compute}\nenvironment: {environment}\n")


def test_a_job_runs_in_an_image_the_compute_pulls_from_the_workspace_registry(server, world):
    """The document's flow: the workspace's own registry with its admin user turned off, a compute
    with a system-assigned identity (granted AcrPull on it when made), an environment from an image
    there, and a job that prints what only the image holds, as an unprivileged user, without sight
    of the server's data dir. The registry log names the compute's identity and the job."""
    world["data_dir"] = server.data_dir
    ws = server.cli("ml", "workspace", "show", "-n", "jobs-ws", "-g", "default")
    registry = server.cli("acr", "show", "-n", ws["container_registry"].rsplit("/", 1)[1])
    server.cli("acr", "update", "-n", registry["name"], "--admin-enabled", "false")
    login_server = registry["properties"]["loginServer"]
    image = push_image(server, world["tmp"], login_server, "train/busybox", "only-the-image-has-this")
    environment = image_environment(server, world, "busybox-env", image)
    proc = submit(server, image_job(world, "in-image", environment), "in-image")
    assert "only-the-image-has-this" in proc.stdout, proc.stdout
    lines = proc.stdout.splitlines()
    uid = next(line for line in lines if line.startswith("UID ")).split()[1]
    assert int(uid) != 0, "the command runs as the job's unprivileged user, not the container's root"
    assert "CapEff:\t0000000000000000" in lines, "with no capability"
    assert "WROTE-CWD" in lines, "the job's folder is the job user's"
    assert "NO-DATA-DIR" in lines and "SAW-DATA-DIR" not in lines
    assert "NO-IMAGE-CACHE" in lines, "the node's image cache is its agents', not the job's"
    job = server.cli("ml", "job", "show", "-n", "in-image", *AT)
    assert job["status"] == "Completed"

    def registry_log():
        admin = server.cli("account", "get-access-token")["accessToken"]
        return requests.get(f"{server.management}{registry['id']}/logs", params={"api-version": "2023-07-01"},
                            headers={"Authorization": f"Bearer {admin}"}, verify=server.ca).json()["value"]
    sai = world["computes"]["cpu-cluster"]["identity"]["principal_id"]
    logs = registry_log()
    pulls = [e for e in logs if e["RequesterObjectId"] == sai and e["JobId"] == job["id"]]
    assert {e["OperationName"] for e in pulls} >= {"PullManifest", "PullBlob"}, pulls
    # The same image again: unpacked on the node already, so only its manifest is asked for (the
    # compute's right to pull it checked, and logged, again). The image's files are its root's:
    # the job's user cannot change them, in the node's copy or otherwise.
    again = submit(server, job_file(world, "in-image-again", "command: cat /marker.txt; "
                                    "(echo changed > /marker.txt) 2>/dev/null && echo CHANGED || echo READ-ONLY\n"
                                    f"compute: azureml:cpu-cluster\nenvironment: {environment}\n"),
                   "in-image-again")
    lines = again.stdout.splitlines()
    assert "only-the-image-has-this" in lines and "READ-ONLY" in lines and "CHANGED" not in lines, again.stdout
    second = server.cli("ml", "job", "show", "-n", "in-image-again", *AT)
    second_pulls = [e["OperationName"] for e in registry_log() if e["JobId"] == second["id"]]
    assert second_pulls == ["PullManifest"], second_pulls


def test_an_image_in_a_private_registry_needs_acrpull_for_the_compute_identity(server, world):
    """A registry the workspace does not know: the job fails in Preparing, naming the identity,
    the registry and the role, and its command never runs; after `role assignment create --role
    acrpull` for the compute's identity the same job completes."""
    world["data_dir"] = server.data_dir
    private = server.cli("acr", "create", "-n", "privateacr01", "-g", "default")
    image = push_image(server, world["tmp"], private["properties"]["loginServer"], "team/private", "private-bytes")
    # An unpacking an agent died in, two hours ago, is swept by the next image unpacked on the
    # node; one under way (a minute old) is left to its agent.
    cache = Path(server.data_dir) / "jobs" / "images"
    cache.mkdir(parents=True, exist_ok=True)
    stale, fresh = cache / ".unpacking-0123456789abcdef", cache / ".unpacking-fedcba9876543210"
    for partial, age in ((stale, 7200), (fresh, 60)):
        partial.mkdir(exist_ok=True)
        os.chown(partial, 2_100_000_000, 2_100_000_000)
        os.utime(partial, (time.time() - age, time.time() - age))
    environment = image_environment(server, world, "private-env", image)
    refused = submit(server, image_job(world, "private-refused", environment), "private-refused", check=False)
    job = server.cli("ml", "job", "show", "-n", "private-refused", *AT)
    assert job["status"] == "Failed"
    assert "Running" not in statuses(job)
    sai = world["computes"]["cpu-cluster"]["identity"]["principal_id"]
    message = json.dumps(job.get("error", {}))
    assert "ImagePullDenied" in message and sai in message and "acrpull" in message.lower(), message
    assert "private-bytes" not in refused.stdout
    server.cli("role", "assignment", "create", "--assignee", sai, "--role", "acrpull", "--scope", private["id"])
    proc = submit(server, image_job(world, "private-granted", environment), "private-granted")
    assert "private-bytes" in proc.stdout
    assert server.cli("ml", "job", "show", "-n", "private-granted", *AT)["status"] == "Completed"
    assert not stale.exists() and fresh.exists()
