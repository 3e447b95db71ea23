"""The real azure-cli (pinned in requirements-az.txt, in a venv of its own) against a
fresh keyless server, from the environment `keyless env` prints and nothing else: sign-ins
of every kind, groups, identities, roles with assignees by UPN, appId and object id,
Microsoft Graph (`az ad`), storage accounts and their data, vaults and secrets, and the
refusals with az's exit codes. Every az process runs under the loopback guard and exits 97
if it tried to leave the machine."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import keyless_bin

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def az_path():
    path = Path(os.environ.get("KEYLESS_TEST_AZ", ROOT / ".venv-az" / "bin" / "az"))
    if not path.exists():
        pytest.fail(f"azure-cli is not installed at {path}: run scripts/test, or create the venv with "
                    f"`python3 -m venv .venv-az && .venv-az/bin/pip install -r tests/clients/requirements-az.txt` "
                    f"or set KEYLESS_TEST_AZ")
    return path


def _seed_version_check(exe, config_dir):
    """az 2.91 probes azcliprod.blob.core.windows.net for the latest versions on the
    first run in a config dir (`handle_version_update`, with no setting to stop it),
    unless its version cache already names the installed version. Offline the probe
    fails quietly; here the loopback guard would fail the test, so the cache is
    written first, as az itself writes it."""
    import datetime

    cache = config_dir / "versionCheck.json"
    if cache.exists():
        return
    python = exe.parent / "python"
    version = subprocess.run([str(python), "-c", "import azure.cli.core as c; print(c.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    config_dir.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({
        "versions": {"core": {"local": version}, "azure-cli": {"local": version}},
        "update_time": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f"),
    }))


class Az:
    """Runs az in the environment `keyless env` prints, with the real az first on PATH."""

    def __init__(self, server, config_dir=None, **extra):
        exe = az_path()
        env = {**os.environ, **server.env()}
        env["PATH"] = f"{exe.parent}:{env['PATH']}"
        env["PYTHONPATH"] = f"{HERE / 'guard_site'}:{HERE}"
        env["LOOPBACK_GUARD_EXIT"] = "1"
        if config_dir:
            env["AZURE_CONFIG_DIR"] = str(config_dir)
        env.update(extra)
        self.env = env
        self.exe = str(exe)
        _seed_version_check(exe, Path(env["AZURE_CONFIG_DIR"]))

    def run(self, *args, check=True, timeout=180):
        proc = subprocess.run([self.exe, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode != 97, f"az {' '.join(args)} tried to leave the machine:\n{proc.stdout}{proc.stderr}"
        if not check:
            return proc
        assert proc.returncode == 0, f"az {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}"
        out = proc.stdout.strip()
        if not out:
            return None
        try:
            return json.loads(out)
        except json.JSONDecodeError:
            return out


@pytest.fixture(scope="module")
def world(server, tmp_path_factory):
    """An Owner service principal that is also a Global Administrator, signed in to az."""
    sub = server.admin["subscription"]
    sp = server.cli("ad", "sp", "create-for-rbac", "-n", "az-driver")
    server.cli("role", "assignment", "create", "--assignee", sp["appId"], "--role", "Owner",
               "--scope", f"/subscriptions/{sub}")
    server.cli("ad", "role", "assign", "--role", "Global Administrator", "--assignee", sp["appId"])
    az = Az(server, tmp_path_factory.mktemp("az-driver"))
    az.run("login", "--service-principal", "-u", sp["appId"], "-p", sp["password"], "--tenant", sp["tenant"])
    return {"az": az, "sub": sub, "sp": sp, "tmp": tmp_path_factory.mktemp("files")}


def test_keyless_env_gives_az_its_cloud_and_its_own_config_dir(server, world):
    """The environment alone points az at keyless: the cloud document's endpoints,
    the Graph endpoint, no instance discovery; az's profile lives apart from ~/.azure."""
    env = server.env()
    assert env["AZURE_CORE_INSTANCE_DISCOVERY"] == "false"
    assert str(server.config_dir) in env["AZURE_CONFIG_DIR"]
    cloud = world["az"].run("cloud", "show")
    assert cloud["name"] == "keyless" and cloud["isActive"]
    assert cloud["endpoints"]["resourceManager"].rstrip("/") == server.management
    assert cloud["endpoints"]["microsoftGraphResourceId"] == server.management + "/graph/"


def test_service_principal_sign_in_accounts_groups_identities(server, world):
    az, sub = world["az"], world["sub"]
    account = az.run("account", "show")
    assert account["id"] == sub and account["tenantId"] == server.tenant
    assert account["user"] == {"name": world["sp"]["appId"], "type": "servicePrincipal"}
    assert [a["id"] for a in az.run("account", "list")] == [sub]
    token = az.run("account", "get-access-token")
    assert token["subscription"] == sub and token["accessToken"].count(".") == 2

    az.run("group", "create", "-n", "az-rg", "-l", "local", "-o", "none")
    assert "az-rg" in az.run("group", "list", "--query", "[].name")
    assert az.run("group", "show", "-n", "az-rg", "--query", "location", "-o", "tsv") == "local"
    mi = az.run("identity", "create", "-g", "az-rg", "-n", "az-mi", "--query", "id", "-o", "tsv")
    assert mi == f"/subscriptions/{sub}/resourceGroups/az-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/az-mi"
    shown = az.run("identity", "show", "-g", "az-rg", "-n", "az-mi")
    assert shown["principalId"] and shown["clientId"]
    assert az.run("identity", "list", "-g", "az-rg", "--query", "[].name") == ["az-mi"]
    # The identity is a service principal in Graph, of type ManagedIdentity.
    found = az.run("ad", "sp", "show", "--id", shown["clientId"])
    assert found["servicePrincipalType"] == "ManagedIdentity" and found["id"] == shown["principalId"]
    az.run("identity", "delete", "-g", "az-rg", "-n", "az-mi")
    assert az.run("identity", "list", "-g", "az-rg") == []


def test_roles_with_assignees_by_upn_app_id_and_object_id(server, world):
    az, sub = world["az"], world["sub"]
    reader = az.run("role", "definition", "list", "--query", "[?roleName=='Reader'].name", "-o", "tsv")
    assert reader == "acdd72a7-3385-48ef-bd42-f606fba81ae7"
    user = az.run("ad", "user", "create", "--display-name", "Ada", "--user-principal-name", "ada@keyless.local",
                  "--password", "Ada-Passw0rd-1")
    app = az.run("ad", "sp", "create-for-rbac", "-n", "az-robot")
    robot = az.run("ad", "sp", "show", "--id", app["appId"])
    scope = f"/subscriptions/{sub}/resourceGroups/az-rg"
    for assignee, kind in [("ada@keyless.local", "User"), (app["appId"], "ServicePrincipal"),
                           (robot["id"], "ServicePrincipal")]:
        made = az.run("role", "assignment", "create", "--assignee", assignee, "--role", "Reader", "--scope", scope)
        assert made["principalType"] == kind and made["scope"] == scope
    listed = az.run("role", "assignment", "list", "--scope", scope)
    names = sorted({a["principalName"] for a in listed})
    assert names == sorted({"ada@keyless.local", app["appId"]})
    table = az.run("role", "assignment", "list", "--scope", scope, "-o", "table")
    assert "ada@keyless.local" in table and "Reader" in table
    az.run("role", "assignment", "delete", "--assignee", "ada@keyless.local", "--role", "Reader", "--scope", scope)
    left = az.run("role", "assignment", "list", "--scope", scope, "--query", "[].principalId")
    assert user["id"] not in left and robot["id"] in left


def test_graph_users_groups_apps_and_service_principals(server, world):
    az = world["az"]
    assert "ada@keyless.local" in az.run("ad", "user", "list", "--query", "[].userPrincipalName")
    ada = az.run("ad", "user", "show", "--id", "ada@keyless.local")
    group = az.run("ad", "group", "create", "--display-name", "AzAnalysts", "--mail-nickname", "azanalysts")
    az.run("ad", "group", "member", "add", "-g", "AzAnalysts", "--member-id", ada["id"])
    assert az.run("ad", "group", "member", "check", "-g", "AzAnalysts", "--member-id", ada["id"]) == {"value": True}
    assert az.run("ad", "group", "member", "list", "-g", "AzAnalysts", "--query", "[].id") == [ada["id"]]
    assert az.run("ad", "group", "show", "-g", group["id"], "--query", "displayName", "-o", "tsv") == "AzAnalysts"
    az.run("ad", "group", "member", "remove", "-g", "AzAnalysts", "--member-id", ada["id"])
    assert az.run("ad", "group", "member", "list", "-g", "AzAnalysts") == []
    az.run("ad", "group", "delete", "-g", "AzAnalysts")
    assert "AzAnalysts" not in az.run("ad", "group", "list", "--query", "[].displayName")

    app = az.run("ad", "app", "create", "--display-name", "az-app")
    assert az.run("ad", "app", "show", "--id", app["appId"], "--query", "displayName", "-o", "tsv") == "az-app"
    sp = az.run("ad", "sp", "create", "--id", app["appId"])
    assert sp["appId"] == app["appId"]
    secret = az.run("ad", "app", "credential", "reset", "--id", app["appId"])
    assert secret["appId"] == app["appId"] and secret["password"]
    az.run("ad", "app", "delete", "--id", app["appId"])
    assert az.run("ad", "app", "list", "--display-name", "az-app") == []

    # create-for-rbac twice: the second run finds the application and resets its password.
    first = az.run("ad", "sp", "create-for-rbac", "-n", "az-twice")
    second = az.run("ad", "sp", "create-for-rbac", "-n", "az-twice")
    assert first["appId"] == second["appId"] and first["password"] != second["password"]
    az.run("ad", "user", "delete", "--id", "ada@keyless.local")
    gone = az.run("ad", "user", "show", "--id", "ada@keyless.local", check=False)
    assert gone.returncode != 0 and "does not exist" in gone.stderr


def test_storage_accounts_and_their_data_by_login_and_by_key(server, world):
    az, tmp = world["az"], world["tmp"]
    # Without a hierarchical namespace: on one, the container's creator owns its root
    # directory and its ACL would let it write, as in Azure.
    az.run("storage", "account", "create", "-n", "azclidata", "-g", "az-rg", "-l", "local", "--sku", "Standard_LRS",
           "-o", "none")
    shown = az.run("storage", "account", "show", "-n", "azclidata")
    assert shown["isHnsEnabled"] is False and shown["primaryEndpoints"]["blob"]
    assert az.run("storage", "account", "list", "-g", "az-rg", "--query", "[].name") == ["azclidata"]
    taken = az.run("storage", "account", "check-name", "-n", "azclidata")
    assert taken["nameAvailable"] is False
    az.run("storage", "account", "update", "-n", "azclidata", "--default-action", "Deny", "-o", "none")
    az.run("storage", "account", "network-rule", "add", "-n", "azclidata", "--ip-address", "127.0.0.1", "-o", "none")
    rules = az.run("storage", "account", "network-rule", "list", "-n", "azclidata")
    assert [r["ipAddressOrRange"] for r in rules["ipRules"]] == ["127.0.0.1"]
    keys = az.run("storage", "account", "keys", "list", "-n", "azclidata")
    assert [k["keyName"] for k in keys] == ["key1", "key2"]

    # Data by identity. Creating a container is the control-plane action Owner holds
    # (as in Azure); writing a blob is a data action, which Owner does not hold.
    src = tmp / "hello.txt"
    src.write_text("hello from az")
    assert az.run("storage", "container", "create", "-n", "inbox", "--account-name", "azclidata",
                  "--auth-mode", "login") == {"created": True}
    denied = az.run("storage", "blob", "upload", "-f", str(src), "-c", "inbox", "-n", "hello.txt",
                    "--account-name", "azclidata", "--auth-mode", "login", check=False)
    assert denied.returncode != 0 and "do not have the required permissions" in denied.stderr
    me = world["sp"]["appId"]
    az.run("role", "assignment", "create", "--assignee", me, "--role", "Storage Blob Data Contributor",
           "--scope", shown["id"], "-o", "none")
    az.run("storage", "blob", "upload", "-f", str(src), "-c", "inbox", "-n", "hello.txt", "--account-name", "azclidata",
           "--auth-mode", "login", "-o", "none")
    names = az.run("storage", "blob", "list", "-c", "inbox", "--account-name", "azclidata", "--auth-mode", "login",
                   "--query", "[].name")
    assert names == ["hello.txt"]
    dest = tmp / "back.txt"
    az.run("storage", "blob", "download", "-c", "inbox", "-n", "hello.txt", "-f", str(dest),
           "--account-name", "azclidata", "--auth-mode", "login", "-o", "none")
    assert dest.read_text() == "hello from az"
    # And with the account key.
    assert az.run("storage", "blob", "list", "-c", "inbox", "--account-name", "azclidata",
                  "--account-key", keys[0]["value"], "--query", "[].name") == ["hello.txt"]
    wrong = az.run("storage", "blob", "list", "-c", "inbox", "--account-name", "azclidata",
                   "--account-key", keys[1]["value"][:-4] + "AAA=", check=False)
    assert wrong.returncode != 0 and "Authentication failure" in wrong.stderr


def test_vaults_and_secrets(server, world):
    az = world["az"]
    vault = az.run("keyvault", "create", "-n", "az-cli-kv", "-g", "az-rg", "-l", "local")
    assert vault["properties"]["enableRbacAuthorization"] is True
    assert az.run("keyvault", "show", "-n", "az-cli-kv", "-g", "az-rg", "--query", "name", "-o", "tsv") == "az-cli-kv"
    # Without the group, az finds the vault through ARM's generic resource list.
    assert az.run("keyvault", "show", "-n", "az-cli-kv", "--query", "id") == vault["id"]
    missing = az.run("keyvault", "show", "-n", "no-such-kv", check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr.lower()
    # A generic list keyless cannot answer whole is refused, not answered in part.
    partial = az.run("resource", "list", check=False)
    assert partial.returncode == 1 and "lists resources by type only" in partial.stderr
    # Owner of the vault is not a reader of its secrets.
    denied = az.run("keyvault", "secret", "set", "--vault-name", "az-cli-kv", "-n", "token", "--value", "s3cr3t",
                    check=False)
    assert denied.returncode != 0 and "Forbidden" in denied.stderr
    az.run("role", "assignment", "create", "--assignee", world["sp"]["appId"], "--role", "Key Vault Secrets Officer",
           "--scope", vault["id"], "-o", "none")
    made = az.run("keyvault", "secret", "set", "--vault-name", "az-cli-kv", "-n", "token", "--value", "s3cr3t")
    assert made["id"].startswith("https://az-cli-kv.vault.keyless.localhost:")
    assert az.run("keyvault", "secret", "show", "--vault-name", "az-cli-kv", "-n", "token",
                  "--query", "value", "-o", "tsv") == "s3cr3t"
    assert az.run("keyvault", "secret", "show", "--id", made["id"], "--query", "value", "-o", "tsv") == "s3cr3t"
    assert az.run("keyvault", "secret", "list", "--vault-name", "az-cli-kv", "--query", "[].name") == ["token"]
    az.run("keyvault", "secret", "delete", "--vault-name", "az-cli-kv", "-n", "token", "-o", "none")
    assert az.run("keyvault", "secret", "list", "--vault-name", "az-cli-kv") == []


def test_refusals_carry_azs_exit_codes(server, world, tmp_path):
    """A Reader cannot create a group (exit 1, AuthorizationFailed); a missing group is
    exit 3; a wrong secret cannot sign in."""
    sub = world["sub"]
    reader = server.cli("ad", "sp", "create-for-rbac", "-n", "az-reader")
    server.cli("role", "assignment", "create", "--assignee", reader["appId"], "--role", "Reader",
               "--scope", f"/subscriptions/{sub}")
    az = Az(server, tmp_path / "reader")
    bad = az.run("login", "--service-principal", "-u", reader["appId"], "-p", "not-the-secret",
                 "--tenant", reader["tenant"], check=False)
    assert bad.returncode == 1 and "AADSTS7000215" in bad.stderr
    az.run("login", "--service-principal", "-u", reader["appId"], "-p", reader["password"], "--tenant", reader["tenant"],
           "-o", "none")
    refused = az.run("group", "create", "-n", "not-mine", "-l", "local", check=False)
    assert refused.returncode == 1 and "AuthorizationFailed" in refused.stderr and refused.stdout == ""
    missing = az.run("group", "show", "-n", "no-such-group", check=False)
    assert missing.returncode == 3 and "ResourceGroupNotFound" in missing.stderr
    no_role = az.run("ad", "user", "create", "--display-name", "X", "--user-principal-name", "x@keyless.local",
                     "--password", "Some-Passw0rd-1", check=False)
    assert no_role.returncode == 1 and "Insufficient privileges" in no_role.stderr


def test_certificate_and_federated_sign_ins(server, world, tmp_path):
    """`az login --service-principal` with a certificate (PEM with key) and with a
    federated token keyless issued."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "az-cert")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "both.pem").write_bytes(key_pem + cert_pem)
    sp = server.cli("ad", "sp", "create-for-rbac", "-n", "az-cert", "--cert", str(tmp_path / "cert.pem"))
    server.cli("role", "assignment", "create", "--assignee", sp["appId"], "--role", "Reader",
               "--scope", f"/subscriptions/{world['sub']}")
    az = Az(server, tmp_path / "cert-profile")
    az.run("login", "--service-principal", "-u", sp["appId"], "--certificate", str(tmp_path / "both.pem"),
           "--tenant", sp["tenant"], "-o", "none")
    assert az.run("account", "show", "--query", "user.name", "-o", "tsv") == sp["appId"]

    fed = server.cli("ad", "sp", "create-for-rbac", "-n", "az-federated")
    server.cli("role", "assignment", "create", "--assignee", fed["appId"], "--role", "Reader",
               "--scope", f"/subscriptions/{world['sub']}")
    out = subprocess.run([os.environ.get("KEYLESS_BIN", str(ROOT / "target" / "debug" / "keyless")), "env",
                          "--data-dir", str(server.data_dir), "--workload-identity", fed["appId"]],
                         env={**os.environ, **server.env()}, capture_output=True, text=True, check=True).stdout
    token_file = re.search(r"AZURE_FEDERATED_TOKEN_FILE=(\S+)", out).group(1).strip("'")
    az = Az(server, tmp_path / "fed-profile")
    az.run("login", "--service-principal", "-u", fed["appId"], "--federated-token", Path(token_file).read_text(),
           "--tenant", fed["tenant"], "-o", "none")
    assert az.run("account", "show", "--query", "user.name", "-o", "tsv") == fed["appId"]
    # A fresh profile, so that no cached token answers for the forged assertion.
    az = Az(server, tmp_path / "forged-profile")
    forged = az.run("login", "--service-principal", "-u", fed["appId"], "--federated-token",
                    Path(token_file).read_text()[:-6] + "AAAAAA", "--tenant", fed["tenant"], check=False)
    assert forged.returncode == 1


def test_user_sign_in_by_browser_and_by_device_code(server, world, tmp_path):
    """`az login` opens keyless's sign-in page (a test browser plays the person);
    `az login --use-device-code` prints a code that the device page approves."""
    admin = server.admin
    log = tmp_path / "browser.log"
    az = Az(server, tmp_path / "browser-profile", BROWSER=f"{sys.executable} {HERE / 'fake_browser.py'} %s",
            KEYLESS_BROWSER_USER=admin["username"], KEYLESS_BROWSER_PASSWORD=admin["password"],
            KEYLESS_BROWSER_LOG=str(log))
    az.run("login", "-o", "none", timeout=120)
    assert az.run("account", "show", "--query", "user") == {"name": admin["username"], "type": "user"}
    assert az.run("ad", "signed-in-user", "show", "--query", "userPrincipalName", "-o", "tsv") == admin["username"]
    assert admin["password"] not in log.read_text()

    import requests
    device = Az(server, tmp_path / "device-profile")
    proc = subprocess.Popen([device.exe, "login", "--use-device-code", "-o", "none"], env=device.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        code = re.search(r"enter the code (\S+)", line).group(1)
        approved = requests.post(f"{server.login}/devicelogin", verify=server.ca, timeout=30, data={
            "user_code": code, "username": admin["username"], "password": admin["password"]})
        assert approved.status_code == 200, approved.text
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert device.run("account", "show", "--query", "user.name", "-o", "tsv") == admin["username"]


JOB_SCRIPT = """set -e
az() {{ {python} -m azure.cli "$@"; }}
mkdir -p "$HOME/.azure" && cp versionCheck.json "$HOME/.azure/"
az login --identity -o none
az account show --query "{{user: user, subscription: id}}" -o json
az storage blob download --account-name {account} -c data -n census.csv -f census.csv --auth-mode login -o none
echo "rows: $(wc -l < census.csv)"
if az storage blob upload --account-name {account} -c data -n written.csv -f census.csv --auth-mode login -o none \\
    2> refused.txt; then echo "wrote: yes"; else echo "wrote: no"; cat refused.txt; fi
"""


def test_az_login_identity_inside_a_job(server, world, tmp_path):
    """A job on a compute with a system-assigned identity runs `az login --identity` and reads
    its data with `--auth-mode login` as that identity: az finds the job's identity endpoint
    and keyless's cloud in the environment the job is given, and nothing leaves the machine
    (the job's az runs under the loopback guard too). It cannot write: its role reads."""
    az, sub = world["az"], world["sub"]
    account = "azjobdata"
    az.run("storage", "account", "create", "-n", account, "-g", "az-rg", "-l", "local", "-o", "none")
    key = az.run("storage", "account", "keys", "list", "-n", account, "--query", "[0].value", "-o", "tsv")
    az.run("storage", "container", "create", "-n", "data", "--account-name", account, "--account-key", key, "-o", "none")
    census = tmp_path / "census.csv"
    census.write_text("age,income\n39,77516\n50,83311\n")
    az.run("storage", "blob", "upload", "-f", str(census), "-c", "data", "-n", "census.csv", "--account-name", account,
           "--account-key", key, "-o", "none")
    server.cli("ml", "workspace", "create", "-n", "az-job-ws", "-g", "az-rg")
    at = ("-w", "az-job-ws", "-g", "az-rg")
    compute = server.cli("ml", "compute", "create", "--name", "az-mi", "--type", "amlcompute",
                         "--identity-type", "system_assigned", *at)
    principal = compute["identity"]["principal_id"]
    account_id = az.run("storage", "account", "show", "-n", account, "--query", "id", "-o", "tsv")
    az.run("role", "assignment", "create", "--assignee", principal, "--role", "Reader",
           "--scope", f"/subscriptions/{sub}/resourceGroups/az-rg", "-o", "none")
    az.run("role", "assignment", "create", "--assignee", principal, "--role", "Storage Blob Data Reader",
           "--scope", account_id, "-o", "none")

    src = tmp_path / "src"
    src.mkdir()
    # The job runs as a uid of its own: az's packages from its venv, under an interpreter
    # that uid may execute (the venv's own may sit in a home directory closed to others).
    venv = az_path().parent.parent
    packages = next((venv / "lib").glob("python3.*/site-packages"))
    python = Path(f"/usr/bin/{packages.parent.name}")
    if not python.exists():
        python = (venv / "bin" / "python").resolve()
    (src / "run.sh").write_text(JOB_SCRIPT.format(account=account, python=python))
    _seed_version_check(az_path(), src)
    job = tmp_path / "job.yml"
    job.write_text(
        "command: bash run.sh\ncode: src\ncompute: azureml:az-mi\nenvironment: azureml:x@latest\n"
        "identity:\n  type: managed\n"
        f"environment_variables:\n  PYTHONPATH: {HERE / 'guard_site'}:{HERE}:{packages}\n"
        "  LOOPBACK_GUARD_EXIT: '1'\n")
    ran = server.cli("ml", "job", "create", "-f", str(job), "-n", "az-in-job", *at, "--stream", check=False)
    log = ran.stdout + ran.stderr
    assert ran.returncode == 0, log
    assert "exit status 97" not in log, log
    block = re.search(r"^\{\n.*?^\}$", log, re.S | re.M)
    shown = json.loads(block.group(0)) if block else None
    assert shown == {"user": {"assignedIdentityInfo": "MSI", "name": "systemAssignedIdentity",
                              "type": "servicePrincipal"}, "subscription": sub}, log
    assert "rows: 3" in log and "wrote: no" in log, log
    assert "do not have the required permissions" in log, log
    # The storage log names the compute's identity and the job for the read.
    records = [json.loads(line) for line in
               server.cli("storage", "logs", "--account", account, "-g", "az-rg", check=False).stdout.splitlines() if line.strip()]
    reads = [r for r in records if r.get("OperationName") == "GetBlob" and r.get("RequesterObjectId") == principal]
    assert reads and all((r.get("JobId") or "").endswith("/jobs/az-in-job") for r in reads), [
        {k: r.get(k) for k in ("OperationName", "RequesterObjectId", "JobId", "StatusCode")} for r in records]


NETNS_SCRIPT = r"""set -euo pipefail
ip link set lo up
"$KEYLESS" serve --data-dir "$DATA" --login-port 443 > "$DATA.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 600); do
  [ -f "$DATA/admin.json" ] && curl -sf http://127.0.0.1:10013/healthz > /dev/null 2>&1 && break
  sleep 0.1
done
eval "$("$KEYLESS" env --no-check --data-dir "$DATA")"
export KEYLESS_CONFIG_DIR="$DATA-cli" AZURE_CONFIG_DIR="$AZ_DIR"
"$KEYLESS" login -u "$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['username'])" "$DATA/admin.json")" \
    -p "$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['password'])" "$DATA/admin.json")" \
    --tenant "$KEYLESS_TENANT_ID" -o none
"$KEYLESS" ad user create --display-name Carol --user-principal-name carol@keyless.local \
    --password 'Carol-Passw0rd!' -o none
sub=$("$KEYLESS" account show --query id -o tsv)
"$KEYLESS" role assignment create --assignee carol@keyless.local --role Reader --scope "/subscriptions/$sub" -o none
echo "login: $AZURE_AUTHORITY_HOST"
if "$AZ" login -u carol@keyless.local -p 'not-her-password' -o none 2> wrong.txt; then echo "wrong: accepted"; \
  else echo "wrong: refused"; cat wrong.txt; fi
"$AZ" login -u carol@keyless.local -p 'Carol-Passw0rd!' -o none
"$AZ" account show --query "{user: user, subscription: id}" -o json
echo "sub: $sub"
"""


def test_user_sign_in_with_a_password_on_port_443(tmp_path):
    """`az login -u -p`: MSAL asks the authority's host name for the user's realm on port 443
    whatever port the authority names, so this sign-in needs keyless's login listener on 443,
    as a deployment behind the standard port has it. The test gives it 443 in a network
    namespace of its own (loopback only); az still runs under the loopback guard."""
    exe = az_path()
    data = tmp_path / "data"
    env = {**os.environ, "KEYLESS": keyless_bin(), "DATA": str(data), "AZ": str(exe), "AZ_DIR": str(tmp_path / "az"),
           "PYTHONPATH": f"{HERE / 'guard_site'}:{HERE}", "LOOPBACK_GUARD_EXIT": "1"}
    _seed_version_check(exe, tmp_path / "az")
    proc = subprocess.run(["unshare", "--net", "--fork", "bash", "-c", NETNS_SCRIPT], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out + (data.parent / "data.log").read_text(errors="replace")[-3000:]
    assert "exit status 97" not in out and "non-loopback" not in out, out
    assert "login: https://127.0.0.1:443" in out or "login: https://127.0.0.1\n" in out, out
    assert "wrong: refused" in out and "AADSTS50126" in out, out
    sub = re.search(r"^sub: (\S+)$", out, re.M).group(1)
    block = re.search(r"^\{\n.*?^\}$", out, re.S | re.M)
    assert json.loads(block.group(0)) == {"user": {"name": "carol@keyless.local", "type": "user"},
                                          "subscription": sub}, out


def test_blob_service_properties_turn_data_protection_on_and_off(server, world):
    """`az storage account blob-service-properties show|update`, as the data-protection
    documentation writes them; the data plane sees the same retention."""
    az = world["az"]
    az.run("storage", "account", "create", "-n", "azprotect", "-g", "az-rg", "-l", "local", "-o", "none")
    shown = az.run("storage", "account", "blob-service-properties", "show", "-n", "azprotect", "-g", "az-rg")
    assert shown["isVersioningEnabled"] is False and shown["deleteRetentionPolicy"]["enabled"] is False
    updated = az.run("storage", "account", "blob-service-properties", "update", "-n", "azprotect", "-g", "az-rg",
                     "--enable-versioning", "true", "--enable-delete-retention", "true",
                     "--delete-retention-days", "14", "--enable-container-delete-retention", "true",
                     "--container-delete-retention-days", "7")
    assert updated["isVersioningEnabled"] is True
    assert updated["deleteRetentionPolicy"]["days"] == 14
    assert updated["containerDeleteRetentionPolicy"]["days"] == 7
    # The blob service's own properties say the same retention.
    key = az.run("storage", "account", "keys", "list", "-n", "azprotect", "--query", "[0].value", "-o", "tsv")
    from azure.storage.blob import BlobServiceClient
    service = BlobServiceClient(f"{server.info['storage']}/azprotect", connection_verify=server.ca,
                                credential={"account_name": "azprotect", "account_key": key})
    policy = service.get_service_properties()["delete_retention_policy"]
    assert (policy.enabled, policy.days) == (True, 14)
    refused = az.run("storage", "account", "blob-service-properties", "update", "-n", "azprotect", "-g", "az-rg",
                     "--delete-retention-days", "400", check=False)
    assert refused.returncode != 0
    az.run("storage", "account", "blob-service-properties", "update", "-n", "azprotect", "-g", "az-rg",
           "--enable-versioning", "false", "--enable-delete-retention", "false", "-o", "none")
    shown = az.run("storage", "account", "blob-service-properties", "show", "-n", "azprotect", "-g", "az-rg")
    assert shown["isVersioningEnabled"] is False and shown["deleteRetentionPolicy"]["enabled"] is False
    assert shown["containerDeleteRetentionPolicy"]["days"] == 7
