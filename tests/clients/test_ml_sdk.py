"""Unmodified azure-ai-ml scripts against keyless, with nothing but the environment `keyless env`
prints: an identity-based datastore, a command job with local code and a datastore input read as
the submitting user, `jobs.stream`; the same from the seed's job YAML (`load_job`); a managed
identity job on a compute with a user-assigned identity; the refusal a user without the data role
sees; storage host names the SDK builds itself; and the SDK refusing to start when keyless is not
there. The scripts run in their own processes, whose start-up (sitecustomize) installs the
loopback guard: a script that tries to leave the machine exits with 97."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

HERE = Path(__file__).resolve().parent
SCRIPTS = HERE / "ml_sdk"
EXAMPLE = HERE.parents[1] / "examples" / "hello-census"
ACCOUNT = "sdkdata"
WS = "sdk-ws"
AT = ("-w", WS, "-g", "default")


@pytest.fixture(scope="module")
def world(server, tmp_path_factory):
    """census.csv in sdkdata/data; workspace sdk-ws with cpu-cluster (system-assigned identity) and
    uai-cluster (a user-assigned identity that may read the data); alice (AzureML Data Scientist,
    Storage Blob Data Reader) and bob (AzureML Data Scientist only), each signed in with `keyless
    login` in a profile of their own."""
    sub = server.admin["subscription"]
    tmp = tmp_path_factory.mktemp("sdk")
    server.cli("storage", "account", "create", "-n", ACCOUNT, "-g", "default")
    key = server.cli("storage", "account", "keys", "list", "-n", ACCOUNT, "-g", "default")[0]["value"]
    svc = BlobServiceClient(f"{server.info['storage']}/{ACCOUNT}",
                            credential={"account_name": ACCOUNT, "account_key": key}, connection_verify=server.ca)
    svc.create_container("data")
    svc.get_container_client("data").upload_blob("census.csv", (EXAMPLE / "census.csv").read_bytes())
    # Credential-less system datastores: the SDK reaches workspaceblobstore with the user's token.
    (tmp / "ws.yml").write_text(f"name: {WS}\nsystem_datastores_auth_mode: identity\n")
    server.cli("ml", "workspace", "create", "-f", str(tmp / "ws.yml"), "-g", "default")
    account_id = f"/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.Storage/storageAccounts/{ACCOUNT}"
    ws_id = f"/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.MachineLearningServices/workspaces/{WS}"
    uai = server.cli("identity", "create", "-g", "default", "-n", "sdk-uai")
    server.cli("role", "assignment", "create", "--assignee", uai["properties"]["principalId"],
               "--role", "Storage Blob Data Reader", "--scope", account_id)
    computes = {
        "cpu-cluster": "type: amlcompute\nmax_instances: 2\nidentity:\n  type: system_assigned\n",
        "uai-cluster": f"type: amlcompute\nmax_instances: 2\nidentity:\n  type: user_assigned\n"
                       f"  user_assigned_identities:\n    - resource_id: {uai['id']}\n",
    }
    for name, body in computes.items():
        (tmp / f"{name}.yml").write_text(f"name: {name}\n{body}")
        server.cli("ml", "compute", "create", "-f", str(tmp / f"{name}.yml"), *AT)
    # The datastore the scripts name; the first script re-creates it with the SDK.
    (tmp / "ds.yml").write_text(f"name: mydata\ntype: azure_blob\naccount_name: {ACCOUNT}\ncontainer_name: data\n")
    server.cli("ml", "datastore", "create", "-f", str(tmp / "ds.yml"), *AT)
    users = {}
    for who in ("alice", "bob"):
        upn, password = f"{who}.sdk@keyless.local", f"{who.title()}-Sdk-Passw0rd!"
        user = server.cli("ad", "user", "create", "--display-name", who.title(), "--user-principal-name", upn,
                          "--password", password)
        server.cli("role", "assignment", "create", "--assignee", upn, "--role", "AzureML Data Scientist",
                   "--scope", ws_id)
        profile = tmp_path_factory.mktemp(f"{who}-profile")
        server.cli("login", "-u", upn, "-p", password, env={"KEYLESS_CONFIG_DIR": str(profile)})
        users[who] = {**user, "profile": str(profile), "upn": upn}
    server.cli("role", "assignment", "create", "--assignee", users["alice"]["upn"],
               "--role", "Storage Blob Data Reader", "--scope", account_id)
    return {"sub": sub, "tmp": tmp, "uai": uai, "users": users, "ws_id": ws_id}


def script_env(server, user, **extra):
    """The environment of a user's shell after `eval "$(keyless env)"` and `keyless login`, and
    nothing else of keyless: no variable names the server's ports but those `keyless env` set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "KEYLESS_", "IDENTITY_", "MSI_"))}
    env.update(server.env())
    env["KEYLESS_CONFIG_DIR"] = user["profile"]
    env["PYTHONPATH"] = f"{HERE / 'guard_site'}:{HERE}"
    env["LOOPBACK_GUARD_EXIT"] = "1"
    env.update(extra)
    return env


def run_script(server, user, name, *args, cwd=SCRIPTS, **extra):
    proc = subprocess.run([sys.executable, str(SCRIPTS / name), *args], cwd=cwd,
                          env=script_env(server, user, **extra), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 97, f"the script tried to leave the machine:\n{proc.stdout}\n{proc.stderr}"
    return proc


def submitted(proc):
    for line in proc.stdout.splitlines():
        if line.startswith("submitted "):
            return line.removeprefix("submitted ").strip()
    raise AssertionError(f"no job was submitted:\n{proc.stdout}\n{proc.stderr}")


def reads_of(server, job_name):
    """The storage log's reads of census.csv by one job."""
    out = server.cli("storage", "logs", "--account", ACCOUNT, check=False).stdout
    records = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [r for r in records if (r.get("JobId") or "").lower().endswith(f"/jobs/{job_name}")
            and r.get("OperationName") == "GetBlob"]


def test_a_command_job_reads_as_the_submitting_user_and_streams_its_output(server, world):
    alice = world["users"]["alice"]
    proc = run_script(server, alice, "submit_command.py", world["sub"], "default", WS, ACCOUNT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    # jobs.stream printed the job's own output, read from the log URL the run history handed out.
    assert "Streaming user_logs/std_log.txt" in out, out
    assert "census rows: 10" in out and "epoch 3/3" in out, out
    assert "as the submitting user's identity" in out, out
    assert "final status JobStatus.COMPLETED" in out, out
    name = submitted(proc)
    # The storage log names alice, not the workspace or the compute, and the job.
    records = reads_of(server, name)
    assert records, "the storage log has no read of the input by the job"
    assert {r["RequesterObjectId"] for r in records} == {alice["id"]}
    assert {r["RequesterUpn"] for r in records} == {alice["upn"]}
    # The SDK's request went through the job API: the job records who submitted it and how it read.
    job = server.cli("ml", "job", "show", "-n", name, *AT)
    assert job["identity"]["type"] == "user_identity"
    assert job["submitted_by"]["object_id"] == alice["id"]
    # The code went up through a pending upload; its record carries both hashes, checked by keyless.
    code = job["code"]
    assert "/codes/" in code
    # Submitting the same folder again finds the code by its hash: no second upload container.
    again = run_script(server, alice, "submit_command.py", world["sub"], "default", WS, ACCOUNT)
    assert again.returncode == 0, again.stdout + again.stderr
    second = server.cli("ml", "job", "show", "-n", submitted(again), *AT)
    assert second["code"] == code


def test_a_user_without_the_data_role_sees_the_permission_named(server, world):
    bob = world["users"]["bob"]
    proc = run_script(server, bob, "submit_command.py", world["sub"], "default", WS, ACCOUNT)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "InputAccessDenied" in out, out
    assert bob["upn"] in out and "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read" in out, out
    assert "census rows" not in out
    job = server.cli("ml", "job", "show", "-n", submitted(proc), *AT)
    assert job["status"] == "Failed"
    assert "Running" not in [h["status"] for h in job["status_history"]]


def test_a_managed_identity_job_reads_as_the_computes_user_assigned_identity(server, world):
    alice, uai = world["users"]["alice"], world["uai"]
    proc = run_script(server, alice, "submit_command.py", world["sub"], "default", WS, ACCOUNT,
                      "managed", "uai-cluster", uai["properties"]["clientId"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "census rows: 10" in proc.stdout, proc.stdout
    name = submitted(proc)
    job = server.cli("ml", "job", "show", "-n", name, *AT)
    assert job["identity"] == {"type": "managed", "client_id": uai["properties"]["clientId"]}
    records = reads_of(server, name)
    assert records and {r["RequesterObjectId"] for r in records} == {uai["properties"]["principalId"]}
    # An identity the compute does not have is refused at submission, before anything runs.
    other = run_script(server, alice, "submit_command.py", world["sub"], "default", WS, ACCOUNT,
                       "managed", "uai-cluster", "00000000-0000-0000-0000-000000000001")
    assert other.returncode != 0
    assert "00000000-0000-0000-0000-000000000001" in other.stderr, other.stderr


def test_the_seed_job_yaml_through_load_job(server, world, tmp_path):
    alice = world["users"]["alice"]
    # The seed's datastore, as the quick start creates it, but on this test's account.
    ds = tmp_path / "datastore.yml"
    ds.write_text((EXAMPLE / "datastore.yml").read_text().replace("censusdata", ACCOUNT))
    server.cli("ml", "datastore", "create", "-f", str(ds), *AT)
    shutil.copytree(EXAMPLE, tmp_path / "hello-census")
    proc = run_script(server, alice, "submit_yaml.py", world["sub"], "default", WS, "job.yml",
                      cwd=tmp_path / "hello-census")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "final status JobStatus.COMPLETED" in proc.stdout, proc.stdout
    name = submitted(proc)
    # hello.py finishes within a moment, often before jobs.stream first polls (the SDK then
    # prints only the summary); its output is in the log either way.
    log = server.cli("ml", "job", "stream", "-n", name, *AT, env={"KEYLESS_CONFIG_DIR": alice["profile"]},
                     check=False)
    assert "read 10 rows" in log.stdout, log.stdout + log.stderr
    assert {r["RequesterObjectId"] for r in reads_of(server, name)} == {alice["id"]}


LOCAL_INPUT = r'''
import sys
from azure.ai.ml import Input, MLClient, command
from azure.ai.ml.entities import UserIdentityConfiguration
from azure.identity import DefaultAzureCredential

ml_client = MLClient(DefaultAzureCredential(), *sys.argv[1:4])
job = command(code="./src", command="python3 summarize.py --data ${{inputs.census}} --epochs 0",
              inputs={"census": Input(type="uri_file", path=sys.argv[4])},
              environment="azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu@latest", compute="cpu-cluster",
              identity=UserIdentityConfiguration())
returned = ml_client.jobs.create_or_update(job)
print(f"submitted {returned.name}", flush=True)
print(f"input {returned.inputs['census'].path}", flush=True)
'''


def test_a_local_file_input_goes_up_to_the_workspace_store_under_its_storage_host_name(server, world, tmp_path):
    # The SDK uploads a local input itself, with the user's token, to
    # https://<account>.blob.core.keyless.localhost:<port>/…, a name it builds from the cloud document.
    alice = world["users"]["alice"]
    ws = server.cli("ml", "workspace", "show", "-n", WS, "-g", "default")
    store = ws["storage_account"].rsplit("/", 1)[-1]
    server.cli("role", "assignment", "create", "--assignee", alice["upn"], "--role", "Storage Blob Data Contributor",
               "--scope", ws["storage_account"])
    (tmp_path / "local.py").write_text(LOCAL_INPUT)
    shutil.copytree(SCRIPTS / "src", tmp_path / "src")
    (tmp_path / "census.csv").write_bytes((EXAMPLE / "census.csv").read_bytes())
    proc = subprocess.run([sys.executable, "local.py", world["sub"], "default", WS, "./census.csv"], cwd=tmp_path,
                          env=script_env(server, alice), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "azureml://datastores/workspaceblobstore/paths/LocalUpload/" in proc.stdout, proc.stdout
    out = server.cli("storage", "logs", "--account", store, check=False).stdout
    puts = [json.loads(line) for line in out.splitlines() if line.strip()]
    puts = [r for r in puts if r.get("OperationName") == "PutBlob" and r["Path"].endswith("census.csv")]
    assert puts and {r["RequesterObjectId"] for r in puts} == {alice["id"]}, puts
    assert {r["StatusCode"] for r in puts} == {201}, puts


def test_without_keyless_the_sdk_refuses_to_start_instead_of_using_the_public_cloud(server, world, tmp_path):
    alice = world["users"]["alice"]
    # A cloud document nobody serves: the SDK must not fall back to management.azure.com.
    dead = "https://127.0.0.1:9/metadata/endpoints?api-version=2019-05-01"
    proc = run_script(server, alice, "submit_command.py", world["sub"], "default", WS, ACCOUNT,
                      ARM_CLOUD_METADATA_URL=dead)
    assert proc.returncode != 0
    assert 'Unknown cloud environment "keyless"' in proc.stderr, proc.stderr
    # keyless env and keyless run refuse to hand out an environment for a server that does not answer.
    data = tmp_path / "data"
    data.mkdir()
    info = json.loads((Path(server.data_dir) / "endpoints.json").read_text())
    info["management"] = "https://127.0.0.1:9"
    info["cloud_metadata"] = dead
    (data / "endpoints.json").write_text(json.dumps(info))
    from conftest import keyless_bin
    env_out = subprocess.run([keyless_bin(), "env", "--data-dir", str(data)], capture_output=True, text=True)
    assert env_out.returncode != 0 and env_out.stdout == ""
    assert "does not answer" in env_out.stderr
    run_out = subprocess.run([keyless_bin(), "run", "--data-dir", str(data), "--", "true"], capture_output=True,
                             text=True)
    assert run_out.returncode != 0 and "does not answer" in run_out.stderr


HOST_STYLE = r'''
import os, sys
from azure.storage.blob import BlobServiceClient

account, key, port = sys.argv[1:4]
svc = BlobServiceClient(f"https://{account}.blob.core.keyless.localhost:{port}", credential=key)
container = svc.get_container_client("data")
container.upload_blob("host style/ü.txt", b"by name", overwrite=True)
assert container.download_blob("host style/ü.txt").readall() == b"by name"
assert "census.csv" in [b.name for b in container.list_blobs()]
bad = BlobServiceClient(f"https://{account}.blob.core.keyless.localhost:{port}", credential="QUJD" * 22)
try:
    bad.get_container_client("data").download_blob("census.csv").readall()
except Exception as e:
    assert "AuthenticationFailed" in str(e), e
else:
    raise AssertionError("a wrong key was accepted")
print("host style ok")
'''


def test_storage_host_names_of_the_keyless_cloud_reach_the_storage_listener(server, world, tmp_path):
    # `keyless hosts` prints the lines a machine needs; the subprocess resolves those names as
    # they would (sitecustomize), then signs with the account key over the host-style path.
    hosts = subprocess.run([server_bin(), "hosts"], env={**os.environ, **server.env()}, capture_output=True,
                           text=True, timeout=60)
    assert hosts.returncode == 0, hosts.stderr
    assert f"127.0.0.1 {ACCOUNT}.blob.core.keyless.localhost {ACCOUNT}.dfs.core.keyless.localhost" in hosts.stdout
    key = server.cli("storage", "account", "keys", "list", "-n", ACCOUNT, "-g", "default")[0]["value"]
    port = server.info["storage"].rsplit(":", 1)[-1]
    (tmp_path / "host_style.py").write_text(HOST_STYLE)
    proc = subprocess.run([sys.executable, "host_style.py", ACCOUNT, key, port], cwd=tmp_path,
                          env=script_env(server, world["users"]["alice"]), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "host style ok" in proc.stdout


def server_bin():
    from conftest import keyless_bin
    return keyless_bin()


def test_a_service_principal_runs_the_script_by_workload_identity(server, world):
    # `keyless env --workload-identity APPID` (run by an administrator) hands the script a
    # federated token file; DefaultAzureCredential picks WorkloadIdentityCredential, and the job,
    # with user_identity, reads the data as the service principal.
    sp = server.cli("ad", "sp", "create-for-rbac", "-n", "sdk-trainer")
    app = sp["appId"]
    shown = server.cli("ad", "sp", "show", "--id", app)
    server.cli("role", "assignment", "create", "--assignee", app, "--role", "AzureML Data Scientist",
               "--scope", world["ws_id"])
    server.cli("role", "assignment", "create", "--assignee", app, "--role", "Storage Blob Data Reader",
               "--scope", world["ws_id"].split("/providers/")[0] + f"/providers/Microsoft.Storage/storageAccounts/{ACCOUNT}")
    out = subprocess.run([server_bin(), "env", "--data-dir", str(server.data_dir), "--workload-identity", app],
                         env={**os.environ, **server.env()}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    env = {}
    for line in out.stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value.strip("'")
    assert env["AZURE_CLIENT_ID"] == app and Path(env["AZURE_FEDERATED_TOKEN_FILE"]).is_file()
    assert oct(Path(env["AZURE_FEDERATED_TOKEN_FILE"]).stat().st_mode & 0o777) == "0o600"
    nobody = {"profile": str(Path(server.data_dir) / "no-profile")}  # no `keyless login`: no az shim path
    proc = run_script(server, nobody, "submit_command.py", world["sub"], "default", WS, ACCOUNT,
                      AZURE_CLIENT_ID=app, AZURE_FEDERATED_TOKEN_FILE=env["AZURE_FEDERATED_TOKEN_FILE"],
                      AZURE_TENANT_ID=env["AZURE_TENANT_ID"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "census rows: 10" in proc.stdout, proc.stdout
    records = reads_of(server, submitted(proc))
    assert records and {r["RequesterObjectId"] for r in records} == {shown["id"]}
    # A second `keyless env` reuses the federated credential it added.
    again = subprocess.run([server_bin(), "env", "--data-dir", str(server.data_dir), "--workload-identity", app],
                           env={**os.environ, **server.env()}, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    creds = server.cli("ad", "app", "federated-credential", "list", "--id", app)
    assert len(creds) == 1


def test_ml_and_resource_manager_audiences_are_management_tokens_and_nothing_else_is(server, world):
    import base64
    import requests
    alice = world["users"]["alice"]
    profile = {"KEYLESS_CONFIG_DIR": alice["profile"]}
    url = f"{server.management}/subscriptions/{world['sub']}/resourceGroups/default/providers/" \
          f"Microsoft.MachineLearningServices/workspaces/{WS}?api-version=2024-10-01-preview"

    def token(scope):
        return server.cli("account", "get-access-token", "--scope", scope, env=profile)["accessToken"]

    def aud(jwt):
        payload = jwt.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["aud"]

    ml = token("https://ml.azure.keyless.localhost/.default")
    assert aud(ml) == "https://ml.azure.keyless.localhost"  # exactly: the SDK refuses a trailing slash
    arm = token(f"{server.management}/.default")  # the cloud document's resource manager
    for t in (ml, arm):
        r = requests.get(url, headers={"Authorization": f"Bearer {t}"}, verify=server.ca, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["properties"]["discoveryUrl"] == f"{server.management}/discovery"
    storage = token("https://storage.azure.com/.default")
    r = requests.get(url, headers={"Authorization": f"Bearer {storage}"}, verify=server.ca, timeout=30)
    assert r.status_code == 401 and r.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"
    # The discovery document and the cloud document are public, as Azure's are.
    assert requests.get(f"{server.management}/discovery", verify=server.ca, timeout=30).json()["api"] == server.management
    doc = requests.get(server.info["cloud_metadata"], verify=server.ca, timeout=30).json()
    assert doc[0]["resourceManager"] == f"{server.management}/"
    # A log URL works only as handed out: a changed signature or another job is refused.
    name = server.cli("ml", "job", "list", *AT)[0]["name"]
    details_url = f"{server.management}/history/v1.0/subscriptions/{world['sub']}/resourceGroups/default/providers/" \
                  f"Microsoft.MachineLearningServices/workspaces/{WS}/runs/{name}/details"
    details = requests.get(details_url, headers={"Authorization": f"Bearer {arm}"}, verify=server.ca, timeout=30).json()
    log_url = details["logFiles"]["user_logs/std_log.txt"]
    assert requests.get(log_url, verify=server.ca, timeout=30).status_code == 200
    tampered = log_url[:-3] + ("AAA" if not log_url.endswith("AAA") else "BBB")
    assert requests.get(tampered, verify=server.ca, timeout=30).status_code == 403
    assert requests.get(log_url.replace(f"/runs/{name}/", "/runs/other-job/"), verify=server.ca,
                        timeout=30).status_code == 403
    assert requests.get(details_url, verify=server.ca, timeout=30).status_code == 401


INLINE_ENVIRONMENT = r'''
import sys
from azure.ai.ml import Input, MLClient, command
from azure.ai.ml.entities import Environment, UserIdentityConfiguration
from azure.identity import DefaultAzureCredential

ml_client = MLClient(DefaultAzureCredential(), *sys.argv[1:4])
job = command(code="./src", command="python3 summarize.py --data ${{inputs.census}} --epochs 0",
              inputs={"census": Input(type="uri_file", path="azureml://datastores/mydata/paths/census.csv")},
              environment=Environment(image="mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"),
              compute="cpu-cluster", identity=UserIdentityConfiguration())
returned = ml_client.jobs.create_or_update(job)
print(f"submitted {returned.name}", flush=True)
print(f"environment {returned.environment}", flush=True)
'''


def test_an_inline_environment_is_registered_and_the_job_refers_to_it(server, world, tmp_path):
    alice = world["users"]["alice"]
    (tmp_path / "inline.py").write_text(INLINE_ENVIRONMENT)
    shutil.copytree(SCRIPTS / "src", tmp_path / "src")
    proc = subprocess.run([sys.executable, "inline.py", world["sub"], "default", WS], cwd=tmp_path,
                          env=script_env(server, alice), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "CliV2AnonymousEnvironment" in proc.stdout, proc.stdout
    job = server.cli("ml", "job", "show", "-n", submitted(proc), *AT)
    env_id = job["environment"]
    assert "/environments/CliV2AnonymousEnvironment/versions/" in env_id
    import requests
    token = server.cli("account", "get-access-token", env={"KEYLESS_CONFIG_DIR": alice["profile"]})["accessToken"]
    shown = requests.get(f"{server.management}{env_id}?api-version=2023-04-01-preview",
                         headers={"Authorization": f"Bearer {token}"}, verify=server.ca, timeout=30)
    assert shown.status_code == 200, shown.text
    assert shown.json()["properties"]["image"] == "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"


def timed_lines(args, env, cwd=None, limit=120):
    """Runs a command and notes when each line of its output arrives."""
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1)
    seen, deadline = [], time.monotonic() + limit
    for line in proc.stdout:
        seen.append((time.monotonic(), line.rstrip("\n")))
        if time.monotonic() > deadline:
            proc.kill()
            break
    proc.wait(timeout=30)
    return proc.returncode, seen


def arrival(seen, needle):
    return next(t for t, line in seen if needle in line and "echo" not in line)


def test_jobs_stream_and_the_cli_show_lines_as_the_job_prints_them(server, world, tmp_path):
    from conftest import keyless_bin
    alice = world["users"]["alice"]
    pause = 6
    code, seen = timed_lines([sys.executable, "-u", str(SCRIPTS / "stream_live.py"), world["sub"], "default", WS,
                              str(pause)], script_env(server, alice), cwd=SCRIPTS)
    text = "\n".join(line for _, line in seen)
    assert code == 0 and "streamed" in text, text
    # The first line reached the SDK while the job still slept: seconds before the second.
    assert arrival(seen, "second-line") - arrival(seen, "first-line") >= pause - 2, text
    # The same through the CLI, following a job from another shell.
    text = "command: echo first-line; sleep 6; echo second-line\ncompute: azureml:cpu-cluster\n" \
           "environment: azureml:x@latest\n"
    path = tmp_path / "stream-live.yml"
    path.write_text(text)
    server.cli("ml", "job", "create", "-f", str(path), "-n", "stream-cli", *AT,
               env={"KEYLESS_CONFIG_DIR": alice["profile"]})
    env = {**os.environ, **server.env(), "KEYLESS_CONFIG_DIR": alice["profile"]}
    code, seen = timed_lines([str(keyless_bin()), "ml", "job", "stream", "-n", "stream-cli", *AT], env)
    text = "\n".join(line for _, line in seen)
    assert code == 0, text
    assert arrival(seen, "second-line") - arrival(seen, "first-line") >= pause - 2, text


# What both print from the same answer; az ml's entity also carries the SDK's defaults for what
# keyless does not keep (ssh_public_access_enabled…), and enums as their Python names.
SHARED_KEYS = ("name", "id", "location", "resource_group", "type", "size", "min_instances", "max_instances",
               "idle_time_before_scale_down", "identity", "storage_account", "key_vault", "container_registry",
               "discovery_url", "primary_user_assigned_identity", "account_name", "container_name", "endpoint",
               "protocol", "description", "credentials", "tags")


def holds(ours, theirs):
    """Whether `ours` says all that `theirs` says (it may say more: keyless's own fields)."""
    if isinstance(theirs, dict):
        return isinstance(ours, dict) and all(k in ours and holds(ours[k], v) for k, v in theirs.items())
    if isinstance(theirs, list):
        return isinstance(ours, list) and len(ours) == len(theirs) and all(map(holds, ours, theirs))
    return ours == theirs


def test_the_cli_prints_ml_resources_as_the_sdk_reads_them(server, world):
    alice = world["users"]["alice"]
    proc = run_script(server, alice, "entities.py", world["sub"], "default", WS)
    assert proc.returncode == 0, proc.stderr
    sdk = json.loads(proc.stdout.splitlines()[-1])
    env = {"KEYLESS_CONFIG_DIR": alice["profile"]}
    cli = {
        "workspace": server.cli("ml", "workspace", "show", "-n", WS, "-g", "default", env=env),
        "computes": {c["name"]: c for c in server.cli("ml", "compute", "list", *AT, env=env)},
        "datastores": {d["name"]: d for d in server.cli("ml", "datastore", "list", *AT, env=env)},
    }
    pairs = [(sdk["workspace"], cli["workspace"])]
    for kind in ("computes", "datastores"):
        assert set(sdk[kind]) == set(cli[kind])
        pairs += [(sdk[kind][n], cli[kind][n]) for n in sdk[kind]]
    compared = 0
    for theirs, ours in pairs:
        for key in SHARED_KEYS:
            if key not in theirs or key == "credentials":
                continue
            assert holds(ours.get(key), theirs[key]), (ours["name"], key, ours.get(key), theirs[key])
            compared += 1
        # az ml shows no credential fields of a datastore; keyless adds only which kind it holds.
        if "credentials" in theirs:
            assert set(ours["credentials"]) <= {"credentials_type", "client_id", "tenant_id", "authority_url",
                                                "resource_url", "thumbprint"}
    assert compared >= 25
    assert cli["computes"]["uai-cluster"]["identity"]["user_assigned_identities"][0]["resource_id"] == world["uai"]["id"]
    # The document's queries read az ml's keys.
    principal = server.cli("ml", "compute", "show", "-n", "cpu-cluster", *AT, "--query", "identity.principal_id",
                           "-o", "tsv", env=env, check=False).stdout
    assert principal.strip() == sdk["computes"]["cpu-cluster"]["identity"]["principal_id"]
