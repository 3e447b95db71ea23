"""Identity-based access to blobs: azure-identity tokens, RBAC on data, the storage log."""

import json
import os

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.storage.blob import BlobServiceClient

READ = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"
WRITE = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write"


@pytest.fixture(scope="module")
def world(server):
    """Account `idacct` with container `data` holding census.csv, and three service principals:
    a Storage Blob Data Reader on the container, a Contributor on the account, and one with no role."""
    sub = server.admin["subscription"]
    server.cli("storage", "account", "create", "-n", "idacct", "-g", "default")
    key = server.cli("storage", "account", "keys", "list", "-n", "idacct", "-g", "default")[0]["value"]
    account_id = f"/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.Storage/storageAccounts/idacct"
    sps = {name: server.cli("ad", "sp", "create-for-rbac", "-n", f"storage-{name}")
           for name in ("reader", "writer", "nobody")}
    server.cli("role", "assignment", "create", "--assignee", sps["reader"]["objectId"],
               "--role", "Storage Blob Data Reader", "--scope", f"{account_id}/blobServices/default/containers/data")
    server.cli("role", "assignment", "create", "--assignee", sps["writer"]["objectId"],
               "--role", "Storage Blob Data Contributor", "--scope", account_id)
    return {"url": f"{server.info['storage']}/idacct", "key": key, "sps": sps}


def service_as(server, world, who):
    sp = world["sps"][who]
    credential = ClientSecretCredential(server.tenant, sp["appId"], sp["password"], authority=server.login,
                                        disable_instance_discovery=True)
    return BlobServiceClient(world["url"], credential=credential)


def test_roles_decide_what_each_identity_may_do(server, world, client_env):
    keyed = BlobServiceClient(world["url"], credential={"account_name": "idacct", "account_key": world["key"]})
    keyed.create_container("data").upload_blob("census.csv", b"age,income\n39,77516\n")
    keyed.create_container("private").upload_blob("secret.csv", b"x")

    reader = service_as(server, world, "reader").get_container_client("data")
    assert reader.download_blob("census.csv").readall() == b"age,income\n39,77516\n"
    assert [b.name for b in reader.list_blobs()] == ["census.csv"]
    with pytest.raises(HttpResponseError) as denied:
        reader.upload_blob("new.csv", b"1")
    assert denied.value.status_code == 403
    assert denied.value.error_code == "AuthorizationPermissionMismatch"
    explanation = denied.value.response.headers["x-keyless-explanation"]
    assert world["sps"]["reader"]["objectId"] in explanation
    assert WRITE in explanation and "containers/data" in explanation
    assert "Storage Blob Data Contributor" in explanation
    assert "<KeylessExplanation>" in denied.value.response.text()
    # The reader's role is on `data` only.
    with pytest.raises(HttpResponseError) as elsewhere:
        service_as(server, world, "reader").get_container_client("private").download_blob("secret.csv").readall()
    assert elsewhere.value.status_code == 403

    writer = service_as(server, world, "writer")
    writer.get_container_client("data").upload_blob("by-writer.csv", b"2")
    writer.create_container("made-by-writer")
    writer.get_container_client("data").delete_blob("by-writer.csv")

    nobody = service_as(server, world, "nobody")
    for attempt in (lambda: nobody.get_container_client("data").download_blob("census.csv").readall(),
                    lambda: list(nobody.get_container_client("data").list_blobs()),
                    lambda: nobody.get_container_client("data").upload_blob("n.csv", b"3"),
                    lambda: nobody.create_container("nope")):
        with pytest.raises(HttpResponseError) as refused:
            attempt()
        assert refused.value.status_code == 403


def test_tokens_for_another_audience_are_refused(server, world, client_env):
    sp = world["sps"]["writer"]
    credential = ClientSecretCredential(server.tenant, sp["appId"], sp["password"], authority=server.login,
                                        disable_instance_discovery=True)
    management_token = credential.get_token("https://management.azure.com/.default").token
    reply = requests.get(f"{world['url']}/data/census.csv",
                         headers={"Authorization": f"Bearer {management_token}", "x-ms-version": "2026-10-06"},
                         verify=server.ca, timeout=30)
    assert reply.status_code == 401
    assert reply.headers["x-ms-error-code"] == "InvalidAuthenticationInfo"
    assert "Audience validation failed" in reply.text
    assert reply.headers["WWW-Authenticate"].startswith(f"Bearer authorization_uri={server.login}/")
    storage_token = credential.get_token("https://storage.azure.com/.default").token
    tampered = storage_token[:-4] + ("AAAA" if not storage_token.endswith("AAAA") else "BBBB")
    reply = requests.get(f"{world['url']}/data/census.csv", headers={"Authorization": f"Bearer {tampered}"},
                         verify=server.ca, timeout=30)
    assert reply.status_code == 401
    assert "signature" in reply.text


def test_a_blob_name_cannot_forge_or_break_storage_log_records(server, world, client_env):
    """A name is the caller's text: quotes, braces, backslashes and U+2028 in it stay inside its
    record's Path, a name with a newline or NUL is refused and its refusal logged the same way,
    and no record that a name spells appears."""
    keyed = BlobServiceClient(world["url"], credential={"account_name": "idacct", "account_key": world["key"]})
    container = keyed.get_container_client("forgery")
    container.create_container()
    forged = '{"OperationName":"DeleteBlob","Path":"forgery/victim","StatusCode":202,"AuthenticationType":"OAuth"}'
    names = [f'a"}},{forged}\\', f"b\n{forged}", f"c\u2028{forged}", f"d\u0000{forged}"]
    answered = {}
    for name in names:
        try:
            container.upload_blob(name, b"1")
            answered[name] = 201
        except HttpResponseError as refused:
            answered[name] = refused.status_code
    assert answered[names[0]] == 201, answered

    out = server.cli("storage", "logs", "--account", "idacct", "--path-prefix", "forgery/", check=False)
    assert out.returncode == 0, out.stderr
    # Read as a careless reader would: str.splitlines also ends a line at U+2028 and U+2029,
    # which the log escapes.
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert not [r for r in records if r["Path"] == "forgery/victim" or r["OperationName"] == "DeleteBlob"], records
    for name in names:
        mine = [r for r in records if r["Path"] == f"forgery/{name}"]
        assert mine and mine[-1]["StatusCode"] == answered[name], (name, records)
        assert mine[-1]["AuthenticationType"] == "AccountKey"


def test_the_storage_log_names_who_read_what(server, world, client_env):
    reader = service_as(server, world, "reader").get_container_client("data")
    reader.download_blob("census.csv").readall()
    with pytest.raises(HttpResponseError) as refused:
        reader.upload_blob("denied.csv", b"1")
    # The request id on the answer is the key to the log record (the id the server's
    # log lines for the request carry as well).
    request_id = refused.value.response.headers["x-ms-request-id"]

    out = server.cli("storage", "logs", "--account", "idacct", "--since", "1h", check=False)
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    oid = world["sps"]["reader"]["objectId"]
    mine = [r for r in records if r["RequesterObjectId"] == oid]
    reads = [r for r in mine if r["OperationName"] == "GetBlob" and r["Path"] == "data/census.csv"]
    assert reads and reads[-1]["StatusCode"] in (200, 206)
    assert reads[-1]["AuthenticationType"] == "OAuth"
    assert reads[-1]["RequesterPrincipalType"] == "ServicePrincipal"
    assert reads[-1]["RequesterAppId"] == world["sps"]["reader"]["appId"]
    assert reads[-1]["RequesterTenantId"] == server.tenant
    assert reads[-1]["ResponseBodySize"] == len(b"age,income\n39,77516\n")
    assert reads[-1]["CallerIpAddress"] == "127.0.0.1"
    keyed = [r for r in records if r["AuthenticationType"] == "AccountKey"]
    assert keyed and all(r["RequesterObjectId"] is None for r in keyed)

    denied = server.cli("storage", "logs", "--account", "idacct", "--status", "403", "--principal", oid,
                        "--path-prefix", "data/", check=False)
    rows = [json.loads(line) for line in denied.stdout.splitlines()]
    assert [r["Path"] for r in rows] == ["data/new.csv", "data/denied.csv"]
    assert rows[-1]["CorrelationId"] == request_id
    assert all(r["StatusText"] == "AuthorizationPermissionMismatch" and WRITE in r["Explanation"] for r in rows)

    # Reading the log is itself an authorized act: an identity without a role on the account gets nothing.
    sp = world["sps"]["nobody"]
    token = ClientSecretCredential(server.tenant, sp["appId"], sp["password"], authority=server.login,
                                   disable_instance_discovery=True).get_token("https://management.azure.com/.default")
    sub = server.admin["subscription"]
    reply = requests.get(f"{server.info['management']}/subscriptions/{sub}/resourceGroups/default/providers/"
                         "Microsoft.Storage/storageAccounts/idacct/logs?api-version=2023-05-01",
                         headers={"Authorization": f"Bearer {token.token}"}, verify=server.ca, timeout=30)
    assert reply.status_code == 403
    assert reply.json()["error"]["code"] == "AuthorizationFailed"


def test_the_cli_reads_and_writes_as_the_signed_in_identity(server, world, tmp_path):
    sp = world["sps"]["reader"]
    server.cli("login", "--service-principal", "-u", sp["appId"], "-p", sp["password"])
    try:
        out = tmp_path / "census.csv"
        server.cli("storage", "blob", "download", "-c", "data", "-n", "census.csv", "-f", str(out),
                   "--account-name", "idacct", "--auth-mode", "login")
        assert out.read_bytes().startswith(b"age,income")
        refused = server.cli("storage", "blob", "upload", "-c", "data", "-n", "x.csv", "-f", str(out),
                             "--account-name", "idacct", "--auth-mode", "login", check=False)
        assert refused.returncode != 0
        assert "AuthorizationPermissionMismatch" in refused.stderr and WRITE in refused.stderr
    finally:
        server.login_admin()


def test_a_user_delegation_sas_acts_as_the_user_while_the_user_may(server, world, client_env):
    import datetime

    from azure.storage.blob import BlobClient, generate_blob_sas

    sub = server.admin["subscription"]
    server.cli("ad", "user", "create", "--display-name", "Dele", "--user-principal-name", "dele@keyless.local",
               "--password", "Dele-Passw0rd!")
    dele = server.cli("ad", "user", "show", "--id", "dele@keyless.local")
    scope = (f"/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.Storage/storageAccounts/idacct"
             "/blobServices/default/containers/data")
    server.cli("role", "assignment", "create", "--assignee", dele["id"], "--role", "Storage Blob Data Reader",
               "--scope", scope)
    # Asking for a key is an account-level action.
    server.cli("role", "assignment", "create", "--assignee", dele["id"], "--role", "Storage Blob Delegator",
               "--scope", scope.split("/blobServices/")[0])
    from azure.identity import UsernamePasswordCredential
    credential = UsernamePasswordCredential("04b07795-8ddb-461a-bbee-02f9e1bf7b46", "dele@keyless.local",
                                            "Dele-Passw0rd!", tenant_id="adfs", authority=server.login,
                                            disable_instance_discovery=True)
    svc = BlobServiceClient(world["url"], credential=credential)
    now = datetime.datetime.now(datetime.timezone.utc)
    key = svc.get_user_delegation_key(now - datetime.timedelta(minutes=1), now + datetime.timedelta(hours=1))
    assert key.signed_oid == dele["id"] and key.signed_tid == server.tenant
    sas = generate_blob_sas("idacct", "data", "census.csv", user_delegation_key=key, permission="r",
                            expiry=now + datetime.timedelta(minutes=30))
    blob = BlobClient(world["url"], "data", "census.csv", credential=sas)
    assert blob.download_blob().readall().startswith(b"age,income")
    # The SAS works as the source of a copy into another account, while the user may read.
    server.cli("storage", "account", "create", "-n", "idcopy", "-g", "default")
    copy_key = server.cli("storage", "account", "keys", "list", "-n", "idcopy", "-g", "default")[0]["value"]
    elsewhere = BlobServiceClient(f"{server.info['storage']}/idcopy",
                                  credential={"account_name": "idcopy", "account_key": copy_key})
    elsewhere.create_container("stolen")
    sas_url = f"{world['url']}/data/census.csv?{sas}"
    elsewhere.get_blob_client("stolen", "first.csv").start_copy_from_url(sas_url)
    assert elsewhere.get_blob_client("stolen", "first.csv").download_blob().readall().startswith(b"age")

    # The SAS grants no more than it says, and no more than the user may.
    write_sas = generate_blob_sas("idacct", "data", "census.csv", user_delegation_key=key, permission="rw",
                                  expiry=now + datetime.timedelta(minutes=30))
    with pytest.raises(HttpResponseError) as beyond:
        BlobClient(world["url"], "data", "census.csv", credential=write_sas).upload_blob(b"x", overwrite=True)
    assert beyond.value.status_code == 403 and WRITE in beyond.value.response.headers["x-keyless-explanation"]

    # Acting for another identity (saoid) needs a hierarchical namespace.
    agent_sas = generate_blob_sas("idacct", "data", "census.csv", user_delegation_key=key, permission="r",
                                  expiry=now + datetime.timedelta(minutes=30),
                                  preauthorized_agent_object_id=dele["id"])
    with pytest.raises(HttpResponseError) as flat:
        BlobClient(world["url"], "data", "census.csv", credential=agent_sas).download_blob().readall()
    assert flat.value.status_code == 403 and flat.value.error_code == "AuthorizationFailure"
    assert "hierarchical namespace" in flat.value.response.headers["x-keyless-explanation"]

    # A key that expires takes its SAS with it, whatever the SAS's own expiry.
    import time
    brief = svc.get_user_delegation_key(now - datetime.timedelta(minutes=1),
                                        datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=3))
    brief_sas = generate_blob_sas("idacct", "data", "census.csv", user_delegation_key=brief, permission="r",
                                  expiry=now + datetime.timedelta(minutes=30))
    short_lived = BlobClient(world["url"], "data", "census.csv", credential=brief_sas)
    assert short_lived.download_blob().readall().startswith(b"age")
    time.sleep(4)
    with pytest.raises(HttpResponseError) as expired:
        short_lived.download_blob().readall()
    assert expired.value.status_code == 403 and "user delegation key has expired" in str(expired.value)

    records = [json.loads(line) for line in server.cli(
        "storage", "logs", "--account", "idacct", "--principal", dele["id"], check=False).stdout.splitlines()]
    assert any(r["AuthenticationType"] == "UserDelegationSAS" and r["OperationName"] == "GetBlob" for r in records)

    # When the user loses the role, the SAS stops working.
    server.cli("role", "assignment", "delete", "--assignee", dele["id"], "--role", "Storage Blob Data Reader",
               "--scope", scope)
    with pytest.raises(HttpResponseError) as revoked:
        blob.download_blob().readall()
    assert revoked.value.status_code == 403
    # Nor does it as the source of a copy: the copy checks the delegator's roles too.
    with pytest.raises(HttpResponseError) as revived:
        elsewhere.get_blob_client("stolen", "census.csv").start_copy_from_url(sas_url)
    assert revived.value.status_code == 403 and revived.value.error_code == "CannotVerifyCopySource"
    assert not elsewhere.get_blob_client("stolen", "census.csv").exists()

    # A tampered SAS does not verify.
    tampered = sas.replace("sp=r", "sp=rw")
    with pytest.raises(HttpResponseError) as forged:
        BlobClient(world["url"], "data", "census.csv", credential=tampered).download_blob()
    assert forged.value.status_code == 403


def test_account_information_is_no_side_door(server, world, client_env):
    """Get Account Information reveals the account's kind to those who may read it and to no one
    else: not to an identity without a data role, not with an expired SAS, not with a SAS signed
    by another account's key, and not from an address the firewall refuses."""
    import datetime

    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas
    # A data role answers where it is held: the writer's on the account, the reader's on `data`.
    assert service_as(server, world, "writer").get_account_information()["account_kind"] == "StorageV2"
    reader = service_as(server, world, "reader")
    assert reader.get_container_client("data").get_account_information()["sku_name"] == "Standard_LRS"
    with pytest.raises(HttpResponseError) as above:
        reader.get_account_information()
    assert above.value.status_code == 403
    with pytest.raises(HttpResponseError) as nobody:
        service_as(server, world, "nobody").get_account_information()
    assert nobody.value.status_code == 403
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    everything = (ResourceTypes(service=True, container=True, object=True), AccountSasPermissions(read=True))
    expired = generate_account_sas("idacct", world["key"], *everything, expiry=past)
    with pytest.raises(HttpResponseError) as old:
        BlobServiceClient(world["url"], credential=expired).get_account_information()
    assert old.value.status_code == 403
    server.cli("storage", "account", "create", "-n", "idother", "-g", "default")
    other_key = server.cli("storage", "account", "keys", "list", "-n", "idother", "-g", "default")[0]["value"]
    foreign = generate_account_sas("idacct", other_key, *everything, expiry=soon)
    with pytest.raises(HttpResponseError) as forged:
        BlobServiceClient(world["url"], credential=foreign).get_account_information()
    assert forged.value.status_code == 403
    account = ("-n", "idacct", "-g", "default")
    server.cli("storage", "account", "update", *account, "--default-action", "Deny")
    try:
        signed = generate_account_sas("idacct", world["key"], *everything, expiry=soon)
        session = requests.Session()
        session.mount("https://", _From("127.0.0.2"))
        walled = session.get(f"{world['url']}?restype=account&comp=properties&{signed}",
                             verify=os.environ["REQUESTS_CA_BUNDLE"], timeout=30)
        assert walled.status_code == 403 and walled.headers["x-ms-error-code"] == "AuthorizationFailure"
        assert "x-ms-account-kind" not in walled.headers
    finally:
        server.cli("storage", "account", "update", *account, "--default-action", "Allow")


def _From(source):
    """A requests adapter that connects from a chosen loopback address."""
    from requests.adapters import HTTPAdapter

    class From(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            kwargs["source_address"] = (source, 0)
            return super().init_poolmanager(*args, **kwargs)

    return From()


def test_network_rules_refuse_an_address_and_admit_listed_ranges(server, world, client_env):
    import requests
    from azure.core.pipeline.transport import RequestsTransport
    from requests.adapters import HTTPAdapter

    class From(HTTPAdapter):
        """Connects from a chosen loopback address."""

        def __init__(self, source):
            self.source = source
            super().__init__()

        def init_poolmanager(self, *args, **kwargs):
            kwargs["source_address"] = (self.source, 0)
            return super().init_poolmanager(*args, **kwargs)

    def census_from(address, headers=None):
        session = requests.Session()
        session.mount("https://", From(address))
        svc = BlobServiceClient(world["url"], credential={"account_name": "idacct", "account_key": world["key"]},
                                transport=RequestsTransport(session=session, session_owner=False))
        return svc.get_container_client("data").download_blob("census.csv", headers=headers or {}).readall()

    account = ("-n", "idacct", "-g", "default")
    assert census_from("127.0.0.2").startswith(b"age")
    server.cli("storage", "account", "update", *account, "--default-action", "Deny")
    try:
        with pytest.raises(HttpResponseError) as refused:
            census_from("127.0.0.2")
        assert refused.value.status_code == 403
        assert refused.value.error_code == "AuthorizationFailure"
        assert "network rules refuse client address 127.0.0.2" in refused.value.response.headers["x-keyless-explanation"]
        # A copy whose source is behind the firewall is refused as a read would be, whether
        # the source URL carries a SAS or the caller signs with the destination's key.
        import datetime

        from azure.storage.blob import generate_blob_sas
        server.cli("storage", "account", "create", "-n", "idfwcopy", "-g", "default")
        fw_key = server.cli("storage", "account", "keys", "list", "-n", "idfwcopy", "-g", "default")[0]["value"]
        dest = BlobServiceClient(f"{server.info['storage']}/idfwcopy",
                                 credential={"account_name": "idfwcopy", "account_key": fw_key})
        dest.create_container("out")
        source_sas = generate_blob_sas("idacct", "data", "census.csv", account_key=world["key"], permission="r",
                                       expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1))
        with pytest.raises(HttpResponseError) as walled:
            dest.get_blob_client("out", "census.csv").start_copy_from_url(
                f"{world['url']}/data/census.csv?{source_sas}")
        assert walled.value.status_code == 403 and walled.value.error_code == "AuthorizationFailure"
        assert not dest.get_blob_client("out", "census.csv").exists()

        server.cli("storage", "account", "network-rule", "add", *account, "--ip-address", "127.0.0.2")
        assert census_from("127.0.0.2").startswith(b"age")
        with pytest.raises(HttpResponseError):
            census_from("127.0.0.3")
        # The address is the connection's: headers claiming a listed address for it change nothing.
        with pytest.raises(HttpResponseError) as forged:
            census_from("127.0.0.3", {"X-Forwarded-For": "127.0.0.2", "Forwarded": "for=127.0.0.2",
                                      "X-Real-IP": "127.0.0.2"})
        assert forged.value.status_code == 403
        assert "client address 127.0.0.3" in forged.value.response.headers["x-keyless-explanation"]
        server.cli("storage", "account", "network-rule", "add", *account, "--vnet-name", "training",
                   "--address-prefix", "127.0.1.0/24")
        assert census_from("127.0.1.7").startswith(b"age")
        rules = server.cli("storage", "account", "network-rule", "list", *account)
        assert [r["value"] for r in rules["ipRules"]] == ["127.0.0.2"]
        bad = server.cli("storage", "account", "network-rule", "add", *account, "--ip-address", "not-an-ip",
                         check=False)
        assert bad.returncode != 0 and "InvalidNetworkAcls" in bad.stderr

        denied = server.cli("storage", "logs", "--account", "idacct", "--status", "403", check=False).stdout
        assert any(json.loads(line)["StatusText"] == "AuthorizationFailure" for line in denied.splitlines())
    finally:
        server.cli("storage", "account", "update", *account, "--default-action", "Allow")


def test_a_disabled_user_loses_storage_and_vault_at_once_with_tokens_it_already_holds(server, world, client_env):
    """Management refused a disabled principal's tokens; storage and vault honoured them until
    they expired. Now every listener refuses them from the moment the account is disabled, and
    honours them again when it is enabled."""
    from azure.identity import UsernamePasswordCredential

    sub = server.admin["subscription"]
    upn, password = "leaver@keyless.local", "Leaver-Passw0rd!"
    leaver = server.cli("ad", "user", "create", "--display-name", "Leaver", "--user-principal-name", upn,
                        "--password", password)
    account_id = f"/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.Storage/storageAccounts/idacct"
    server.cli("role", "assignment", "create", "--assignee", leaver["id"], "--role", "Storage Blob Data Reader",
               "--scope", account_id)
    server.cli("keyvault", "create", "-n", "kvleaver", "-g", "default")
    server.cli("role", "assignment", "create", "--assignee", leaver["id"], "--role", "Key Vault Reader", "--scope",
               f"/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.KeyVault/vaults/kvleaver")
    credential = UsernamePasswordCredential("04b07795-8ddb-461a-bbee-02f9e1bf7b46", upn, password,
                                            tenant_id="adfs", authority=server.login, disable_instance_discovery=True)
    storage_token = credential.get_token("https://storage.azure.com/.default").token
    vault_token = credential.get_token("https://vault.azure.net/.default").token

    def read_blob():
        return requests.get(f"{world['url']}/data/census.csv",
                            headers={"Authorization": f"Bearer {storage_token}", "x-ms-version": "2025-01-05"})

    def list_secrets():
        return requests.get(f"{server.info['vault']}/kvleaver/secrets", params={"api-version": "7.4"},
                            headers={"Authorization": f"Bearer {vault_token}"})

    assert read_blob().status_code == 200
    assert list_secrets().status_code == 200
    server.cli("ad", "user", "update", "--id", upn, "--account-enabled", "false")
    refused = read_blob()
    assert refused.status_code in (401, 403) and "disabled" in refused.text, refused.text
    refused = list_secrets()
    assert refused.status_code == 401 and "disabled" in refused.text, refused.text
    server.cli("ad", "user", "update", "--id", upn, "--account-enabled", "true")
    assert read_blob().status_code == 200
    assert list_secrets().status_code == 200
