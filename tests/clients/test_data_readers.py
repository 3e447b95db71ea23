"""A notebook's data readers, unmodified, after `keyless login` and `eval "$(keyless env)"`:
azureml-fsspec, pandas and mltable reading in-process, and the azure-ai-ml mounts (azureml-dataprep's
native reader behind FUSE), each run in a network namespace of its own where only keyless's ports
are reachable (the reader is native code: a Python guard cannot see its connections); and the
data-access sessions that give the in-process readers the person's tokens, attacked."""

import json
import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from azure.storage.blob import BlobServiceClient

from netns_guard import run_isolated

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA_PYTHON = ROOT / ".venv-data" / "bin" / "python"
CENSUS = (ROOT / "examples" / "hello-census" / "census.csv").read_bytes()
AT = ("-w", "read-ws", "-g", "default")



@pytest.fixture(scope="module")
def world(server, tmp_path_factory):
    # Not skipped when missing: the test command makes the venv and runs as root.
    assert DATA_PYTHON.exists(), "the data readers' venv is missing: ./scripts/test makes .venv-data"
    assert os.geteuid() == 0, "the data readers' tests need root (network and mount namespaces, FUSE)"
    sub = server.admin["subscription"]
    tmp = tmp_path_factory.mktemp("readers")
    server.cli("storage", "account", "create", "-n", "readdata", "-g", "default")
    key = server.cli("storage", "account", "keys", "list", "-n", "readdata", "-g", "default")[0]["value"]
    svc = BlobServiceClient(f"{server.info['storage']}/readdata",
                            credential={"account_name": "readdata", "account_key": key}, connection_verify=server.ca)
    svc.create_container("data")
    svc.get_container_client("data").upload_blob("census.csv", CENSUS)
    (tmp / "ws.yml").write_text("name: read-ws\n")
    server.cli("ml", "workspace", "create", "-f", str(tmp / "ws.yml"), "-g", "default")
    (tmp / "ds.yml").write_text("name: mydata\ntype: azure_blob\naccount_name: readdata\ncontainer_name: data\n")
    server.cli("ml", "datastore", "create", "-f", str(tmp / "ds.yml"), *AT)
    (tmp / "data.yml").write_text("name: census\nversion: '1'\ntype: uri_file\n"
                                  "path: azureml://datastores/mydata/paths/census.csv\n")
    server.cli("ml", "data", "create", "-f", str(tmp / "data.yml"), *AT)
    ws_id = f"/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.MachineLearningServices/workspaces/read-ws"
    upn, password = "alice.reader@keyless.local", "Alice-Reader-Passw0rd!"
    alice = server.cli("ad", "user", "create", "--display-name", "Alice", "--user-principal-name", upn,
                       "--password", password)
    server.cli("role", "assignment", "create", "--assignee", upn, "--role", "AzureML Data Scientist", "--scope", ws_id)
    server.cli("role", "assignment", "create", "--assignee", upn, "--role", "Storage Blob Data Reader", "--scope",
               f"/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.Storage/storageAccounts/readdata")
    profile = tmp_path_factory.mktemp("alice-profile")
    server.cli("login", "-u", upn, "-p", password, env={"KEYLESS_CONFIG_DIR": str(profile)})
    return {"sub": sub, "tmp": tmp, "alice": {**alice, "profile": str(profile)}}


def notebook(server, world, script, *args, extra=None):
    """Runs a data-reader script as alice's notebook would, in the namespace guard."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "KEYLESS_", "IDENTITY_", "MSI_"))}
    env.update(server.env())
    env["KEYLESS_CONFIG_DIR"] = world["alice"]["profile"]
    env["PYTHONPATH"] = f"{HERE / 'guard_site'}:{HERE}"
    env["LOOPBACK_GUARD_EXIT"] = "1"
    env.update(extra or {})
    ports = sorted({urlsplit(u).port for u in server.info.values() if isinstance(u, str) and u.startswith("http")})
    suffix = server.info["storage_suffix"].split(":")[0]
    hosts = [f"127.0.0.1 readdata.blob.{suffix} readdata.dfs.{suffix}"]
    proc = run_isolated([str(DATA_PYTHON), str(HERE / "data_readers" / script), *args], env, ports, hosts)
    assert proc.returncode != 97, f"the script tried to leave the machine:\n{proc.stdout}\n{proc.stderr}"
    return proc


def census_reads(server):
    out = server.cli("storage", "logs", "--account", "readdata", check=False).stdout
    records = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [r for r in records if r["Path"] == "data/census.csv" and r["OperationName"] == "GetBlob"]


@pytest.mark.parametrize("kind", ["datastores", "data"])
def test_a_notebook_mounts_a_datastore_and_a_data_asset_as_the_signed_in_user(server, world, kind):
    before = len(census_reads(server))
    point = world["tmp"] / f"mnt-{kind}"
    proc = notebook(server, world, "mount.py", world["sub"], "default", "read-ws", kind, str(point))
    out = proc.stdout
    assert "MOUNT OK" in out, out + proc.stderr
    header = CENSUS.decode().splitlines()[0]
    # The datastore shows its folder; the data asset (a uri_file) shows its one file, under the
    # name the reader gives it.
    read = [line for line in out.splitlines() if line.startswith("READ ")]
    if kind == "datastores":
        assert read == [f"READ census.csv {header}"], out
    else:
        assert len(read) == 1 and read[0].endswith(f" {header}"), out
    reads = census_reads(server)[before:]
    assert reads and {r["RequesterObjectId"] for r in reads} == {world["alice"]["id"]}, reads


def test_the_namespace_guard_lets_nothing_but_keyless_out(server, world):
    """What the guard promises, tried: a connection to a public address and to a loopback port
    keyless does not serve both fail inside it; keyless's own ports answer."""
    probe = ("import socket, sys\n"
             "for host, port in [('1.1.1.1', 443), ('127.0.0.1', 1), ('127.0.0.1', int(sys.argv[1]))]:\n"
             "    try:\n"
             "        socket.create_connection((host, port), timeout=3).close(); print(host, port, 'open')\n"
             "    except OSError as e:\n"
             "        print(host, port, 'refused', e.errno)\n")
    port = urlsplit(server.info["management"]).port
    proc = run_isolated([str(DATA_PYTHON), "-c", probe, str(port)], {"PATH": "/usr/bin:/bin"}, [port])
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("1.1.1.1 443 refused") and lines[1].startswith("127.0.0.1 1 refused"), proc.stdout
    assert lines[2] == f"127.0.0.1 {port} open", proc.stdout + proc.stderr


def session_env(server, profile):
    """`keyless env` as the signed-in person runs it (with the server's check and the data-access session)."""
    out = subprocess.run([str(ROOT / "target" / "debug" / "keyless") if not os.environ.get("KEYLESS_BIN")
                          else os.environ["KEYLESS_BIN"], "env", "--data-dir", str(server.data_dir)],
                         capture_output=True, text=True, env={**os.environ, "KEYLESS_CONFIG_DIR": profile})
    assert out.returncode == 0, out.stderr
    env = {}
    for line in out.stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value.strip("'")
    return env


def test_a_notebook_reads_in_process_with_fsspec_pandas_and_mltable_as_the_signed_in_user(server, world):
    """The on-behalf-of route azureml-dataprep offers a person: `keyless env` opens a data-access
    session for the signed-in user; fsspec, pandas and mltable read through it with no prompt, and
    the storage log names the user."""
    session = session_env(server, world["alice"]["profile"])
    assert session["AZUREML_OBO_ENABLED"] == "True" and session["OBO_ENDPOINT"].endswith("/keyless/data-access/token")
    before = len(census_reads(server))
    proc = notebook(server, world, "read.py", world["sub"], "default", "read-ws",
                    extra={k: session[k] for k in ("AZUREML_OBO_ENABLED", "OBO_ENDPOINT", "MSI_SECRET")})
    out = proc.stdout
    assert "READ OK" in out, out + proc.stderr[-3000:]
    rows = len(CENSUS.decode().strip().splitlines()) - 1
    assert "LS ['census.csv']" in out and f"OPEN {CENSUS.decode().splitlines()[0]}" in out, out
    assert f"PANDAS {rows}" in out and f"MLTABLE {rows}" in out, out
    reads = census_reads(server)[before:]
    assert reads and {r["RequesterObjectId"] for r in reads} == {world["alice"]["id"]}, reads


def test_a_data_access_session_yields_only_its_persons_tokens_and_ends_with_them(server, world):
    """Attacks on the session endpoint: no secret, a made-up one, and a session of a person who
    is then disabled all get no token; a session's token is
    its person's and nobody else's."""
    import requests
    session = session_env(server, world["alice"]["profile"])
    url = session["OBO_ENDPOINT"]
    get = lambda secret: requests.get(url, params={"resource": "https://storage.azure.com/"},
                                      headers={"secret": secret} if secret else {}, verify=server.ca)
    assert get(None).status_code == 401
    assert get("0" * 43).status_code == 401
    granted = get(session["MSI_SECRET"])
    assert granted.status_code == 200 and isinstance(granted.json()["expires_on"], int)
    claims = json.loads(__import__("base64").urlsafe_b64decode(granted.json()["access_token"].split(".")[1] + "=="))
    assert claims["oid"] == world["alice"]["id"] and claims["aud"].startswith("https://storage.azure.com")
    # Carol's session, then carol disabled: the secret yields nothing more.
    upn = "carol.reader@keyless.local"
    server.cli("ad", "user", "create", "--display-name", "Carol", "--user-principal-name", upn,
               "--password", "Carol-Reader-Passw0rd!")
    profile = str(world["tmp"] / "carol-profile")
    server.cli("login", "-u", upn, "-p", "Carol-Reader-Passw0rd!", env={"KEYLESS_CONFIG_DIR": profile})
    carol = session_env(server, profile)
    assert get(carol["MSI_SECRET"]).status_code == 200
    server.cli("ad", "user", "update", "--id", upn, "--account-enabled", "false")
    assert get(carol["MSI_SECRET"]).status_code == 401
