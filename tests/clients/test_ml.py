"""ML workspaces, computes, datastores and data preview from the YAML files of `az ml`,
driven through the keyless CLI; the seed documents' examples are accepted verbatim once
their placeholders are filled, and the refused shapes are refused with the documented reason."""

import json
import sqlite3
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ml"
DISTINCT_KEY = "ZGlzdGluY3RpdmUta2V5LWZvci1rZXlsZXNzLXRlc3Rz"  # base64, stands out in a file dump
UAI = "/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"


def fill(server, tmp_path, name, **extra):
    """Copies a fixture with its placeholders filled; returns the new path."""
    values = {"<sub>": server.admin["subscription"], "<rg>": "default", "<uai1>": "ml-uai-one",
              "<uai2>": "ml-uai-two", "<account>": "mlcensus", "<lake>": "mllake", "<tid>": server.tenant,
              "<appid>": "22222222-2222-2222-2222-222222222222", "<secret>": "sp-secret-value",
              "<key>": DISTINCT_KEY, **extra}
    text = (FIXTURES / name).read_text()
    for k, v in values.items():
        text = text.replace(k, v)
    out = tmp_path / name
    out.write_text(text)
    return str(out)


def as_principal(server, tmp_path_factory, sp):
    """The CLI environment of a service principal, signed in."""
    env = {"KEYLESS_CONFIG_DIR": str(tmp_path_factory.mktemp("cli"))}
    server.cli("login", "--service-principal", "-u", sp["appId"], "-p", sp["password"], env=env)
    return env


def refused(server, *args, env=None):
    proc = server.cli(*args, env=env, check=False)
    assert proc.returncode != 0, f"keyless {' '.join(args)} was accepted: {proc.stdout}"
    return proc.stderr


@pytest.fixture(scope="module")
def ml(server, tmp_path_factory):
    """Two user-assigned identities, the workspace `census-ws` of the seed (system- and
    user-assigned identities), and principals with workspace roles."""
    sub = server.admin["subscription"]
    tmp = tmp_path_factory.mktemp("yaml")
    uais = {n: server.cli("identity", "create", "-g", "default", "-n", n) for n in ("ml-uai-one", "ml-uai-two")}
    ws = server.cli("ml", "workspace", "create", "-f", fill(server, tmp, "workspace-uais.yml", **{"<ws>": "census-ws"}),
                    "-g", "default")
    ws_id = f"/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.MachineLearningServices/workspaces/census-ws"
    sps = {}
    for who, role in [("scientist", "AzureML Data Scientist"), ("reader", "Reader"), ("operator", "Contributor")]:
        sps[who] = server.cli("ad", "sp", "create-for-rbac", "-n", f"ml-{who}")
        server.cli("role", "assignment", "create", "--assignee", sps[who]["objectId"], "--role", role, "--scope", ws_id)
    envs = {who: as_principal(server, tmp_path_factory, sp) for who, sp in sps.items()}
    return {"tmp": tmp, "ws": ws, "ws_id": ws_id, "uais": uais, "sps": sps, "envs": envs, "sub": sub}


AT = ("-w", "census-ws", "-g", "default")


def test_the_seed_workspace_has_both_identities_and_its_associated_resources(server, ml):
    ws = ml["ws"]
    uai1 = UAI.format(sub=ml["sub"], name="ml-uai-one")
    assert ws["identity"]["type"] == "system_assigned,user_assigned"
    assert ws["identity"]["principal_id"]
    listed = {u["resource_id"].lower(): u for u in ws["identity"]["user_assigned_identities"]}
    assert listed[uai1.lower()]["client_id"] == ml["uais"]["ml-uai-one"]["properties"]["clientId"]
    assert ws["primary_user_assigned_identity"].lower() == uai1.lower()
    # Storage account and key vault were created with it, and the system datastores point there.
    account = ws["storage_account"].rsplit("/", 1)[1]
    assert server.cli("storage", "account", "show", "-n", account, "-g", "default")["name"] == account
    vault = ws["key_vault"].rsplit("/", 1)[1]
    assert server.cli("keyvault", "show", "-n", vault, "-g", "default")["name"] == vault
    stores = {d["name"]: d for d in server.cli("ml", "datastore", "list", *AT)}
    blob = stores["workspaceblobstore"]
    assert blob["is_default"] is True and blob["account_name"] == account
    assert blob["container_name"] == f"azureml-blobstore-{ws['workspace_id']}"
    assert stores["workspaceartifactstore"]["container_name"] == "azureml"
    # accesskey mode (the default): the key is held, sealed in the vault, never shown.
    assert blob["credentials"] == {"credentials_type": "AccountKey"}
    key = server.cli("storage", "account", "keys", "list", "-n", account, "-g", "default")[0]["value"]
    assert key not in str(stores)
    assert server.cli("ml", "datastore", "list-secrets", "-n", "workspaceblobstore", *AT)["key"] == key


def test_workspace_identity_transitions(server, ml):
    tmp = ml["tmp"]
    ws = server.cli("ml", "workspace", "create", "-f", fill(server, tmp, "workspace-sai.yml", **{"<ws>": "trans-ws"}),
                    "-g", "default")
    assert ws["identity"]["type"] == "system_assigned"
    sai = ws["identity"]["principal_id"]
    # identity mode: the system datastores hold no credential.
    store = server.cli("ml", "datastore", "show", "-n", "workspaceblobstore", "-w", "trans-ws", "-g", "default")
    assert store["credentials"] == {"credentials_type": "None"}
    # SAI -> SAI+UAI is allowed, and keeps the same system-assigned identity.
    added = server.cli("ml", "workspace", "update", "-f",
                       fill(server, tmp, "workspace-add-uai.yml", **{"<ws>": "trans-ws"}), "-g", "default")
    assert added["identity"]["type"] == "system_assigned,user_assigned"
    assert added["identity"]["principal_id"] == sai
    # SAI+UAI -> SAI is refused, with the rule.
    err = refused(server, "ml", "workspace", "update", "-f",
                  fill(server, tmp, "workspace-drop-uais.yml", **{"<ws>": "trans-ws"}), "-g", "default")
    assert "cannot change from SystemAssigned,UserAssigned to SystemAssigned" in err
    # An update lists every UAI to keep: replacing uai-one by uai-two drops uai-one.
    swapped = server.cli("ml", "workspace", "update", "-f",
                         fill(server, tmp, "workspace-add-uai.yml", **{"<ws>": "trans-ws", "<uai1>": "ml-uai-two"}),
                         "-g", "default")
    assert [u["resource_id"].rsplit("/", 1)[1] for u in swapped["identity"]["user_assigned_identities"]] == ["ml-uai-two"]
    # The system-assigned identity goes with the workspace.
    assert server.cli("ad", "sp", "show", "--id", sai, check=False).returncode == 0
    server.cli("ml", "workspace", "delete", "-n", "trans-ws", "-g", "default")
    assert server.cli("ad", "sp", "show", "--id", sai, check=False).returncode != 0


def test_compute_identities_follow_the_documented_rules(server, ml, tmp_path_factory):
    tmp = ml["tmp"]
    cluster = server.cli("ml", "compute", "create", "-f", fill(server, tmp, "cluster-uai.yml"), *AT)
    assert cluster["identity"]["type"] == "user_assigned"
    # Default identity = the first UAI: its client id is what jobs see as DEFAULT_IDENTITY_CLIENT_ID.
    assert cluster["default_identity"]["client_id"] == ml["uais"]["ml-uai-one"]["properties"]["clientId"]
    sai = server.cli("ml", "compute", "create", "-f", fill(server, tmp, "cluster-sai.yml"), *AT)
    assert sai["identity"]["type"] == "system_assigned"
    assert sai["default_identity"]["principal_id"] == sai["identity"]["principal_id"]
    shown = server.cli("ad", "sp", "show", "--id", sai["identity"]["principal_id"])
    assert shown["displayName"] == "/census-ws/computes/sai-cluster"
    err = refused(server, "ml", "compute", "create", "-f", fill(server, tmp, "cluster-both.yml"), *AT)
    assert "one system-assigned identity or multiple user-assigned identities, not both" in err
    # Attaching a UAI needs Managed Identity Operator on it: a workspace Contributor lacks it.
    operator = ml["envs"]["operator"]
    second = fill(server, tmp, "cluster-uai.yml", **{"<uai1>": "ml-uai-two"})
    err = refused(server, "ml", "compute", "create", "-f", second, "-n", "op-cluster", *AT, env=operator)
    assert "userAssignedIdentities/assign/action" in err
    server.cli("role", "assignment", "create", "--assignee", ml["sps"]["operator"]["objectId"],
               "--role", "Managed Identity Operator", "--scope", UAI.format(sub=ml["sub"], name="ml-uai-two"))
    made = server.cli("ml", "compute", "create", "-f", second, "-n", "op-cluster", *AT, env=operator)
    assert made["default_identity"]["client_id"] == ml["uais"]["ml-uai-two"]["properties"]["clientId"]
    # A Data Scientist may not create computes; a Reader may list them.
    err = refused(server, "ml", "compute", "create", "-f", fill(server, tmp, "cluster-sai.yml"), "-n", "ds-cluster",
                  *AT, env=ml["envs"]["scientist"])
    assert "computes/write" in err
    names = {c["name"] for c in server.cli("ml", "compute", "list", *AT, env=ml["envs"]["reader"])}
    assert {"cpu-cluster", "sai-cluster", "op-cluster"} <= names
    # A compute's system-assigned identity goes with the compute.
    server.cli("ml", "compute", "delete", "-n", "sai-cluster", *AT)
    assert server.cli("ad", "sp", "show", "--id", sai["identity"]["principal_id"], check=False).returncode != 0


def test_compute_instance_idle_shutdown_needs_contributor(server, ml):
    ci = server.cli("ml", "compute", "create", "-f", fill(server, ml["tmp"], "instance-sai.yml"), *AT)
    assert ci["idle_shutdown"]["enabled"] is False
    assert "lacks Contributor" in ci["idle_shutdown"]["reason"]
    server.cli("role", "assignment", "create", "--assignee", ci["identity"]["principal_id"], "--role", "Contributor",
               "--scope", ml["ws_id"])
    shown = server.cli("ml", "compute", "show", "-n", "notebook-ci", *AT)
    assert shown["idle_shutdown"]["enabled"] is True


def test_stored_credentials_reach_only_those_allowed_to_list_secrets(server, ml):
    tmp = ml["tmp"]
    server.cli("storage", "account", "create", "-n", "mlcensus", "-g", "default")
    made = server.cli("ml", "datastore", "create", "-f", fill(server, tmp, "datastore-blob-key.yml"), *AT)
    assert made["credentials"] == {"credentials_type": "AccountKey"}
    sp = server.cli("ml", "datastore", "create", "-f", fill(server, tmp, "datastore-adls-sp.yml"), *AT)
    assert sp["credentials"]["client_id"] == "22222222-2222-2222-2222-222222222222"
    assert "sp-secret-value" not in str(sp)
    reader, scientist = ml["envs"]["reader"], ml["envs"]["scientist"]
    # The Reader sees the datastores, never a key, by any API.
    listed = server.cli("ml", "datastore", "list", *AT, env=reader)
    assert {"blob_key", "adls_sp"} <= {d["name"] for d in listed}
    assert DISTINCT_KEY not in str(listed)
    assert DISTINCT_KEY not in str(server.cli("ml", "datastore", "show", "-n", "blob_key", *AT, env=reader))
    err = refused(server, "ml", "datastore", "list-secrets", "-n", "blob_key", *AT, env=reader)
    assert "datastores/listsecrets/action" in err
    # The Data Scientist holds listsecrets/action.
    assert server.cli("ml", "datastore", "list-secrets", "-n", "blob_key", *AT, env=scientist)["key"] == DISTINCT_KEY
    assert server.cli("ml", "datastore", "list-secrets", "-n", "adls_sp", *AT)["clientSecret"] == "sp-secret-value"
    # The credential is sealed: it appears nowhere in the data dir in the clear.
    for path in server.data_dir.rglob("*"):
        if path.is_file():
            assert DISTINCT_KEY.encode() not in path.read_bytes(), path


def test_refused_datastore_shapes_give_the_documented_reason(server, ml):
    tmp = ml["tmp"]
    err = refused(server, "ml", "datastore", "create", "-f", fill(server, tmp, "datastore-gen1.yml"), *AT)
    assert "retired on 29 February 2024" in err
    err = refused(server, "ml", "datastore", "create", "-f", fill(server, tmp, "datastore-file-credless.yml"), *AT)
    assert "cannot be identity-based" in err
    bad = tmp / "bad.yml"
    bad.write_text("name: typo\ntype: azure_blob\naccount_name: mlcensus\ncontainer_nme: data\n")
    err = refused(server, "ml", "datastore", "create", "-f", str(bad), *AT)
    assert str(bad) in err and "line 4" in err and "container_nme" in err
    hyphen = tmp / "hyphen.yml"
    hyphen.write_text("name: my-data\ntype: azure_blob\naccount_name: mlcensus\ncontainer_name: data\n")
    assert "no hyphens" in refused(server, "ml", "datastore", "create", "-f", str(hyphen), *AT)


@pytest.fixture(scope="module")
def census(server, ml):
    """census.csv in mlcensus/data, the identity-based `mydata` datastore of the seed, and a
    twin that previews with the workspace's identity."""
    if server.cli("storage", "account", "show", "-n", "mlcensus", "-g", "default", check=False).returncode != 0:
        server.cli("storage", "account", "create", "-n", "mlcensus", "-g", "default")
    key = server.cli("storage", "account", "keys", "list", "-n", "mlcensus", "-g", "default")[0]["value"]
    svc = BlobServiceClient(f"{server.info['storage']}/mlcensus",
                            credential={"account_name": "mlcensus", "account_key": key},
                            connection_verify=server.ca)
    container = svc.get_container_client("data")
    if not container.exists():
        container.create_container()
    container.upload_blob("census.csv", b"age,workclass,income\n39,State-gov,77516\n50,Self-emp,83311\n",
                          overwrite=True)
    container.upload_blob("folder/a.csv", b"x\n1\n", overwrite=True)
    tmp = ml["tmp"]
    server.cli("ml", "datastore", "create", "-f", fill(server, tmp, "datastore-census.yml"), *AT)
    server.cli("ml", "datastore", "create", "-f", fill(server, tmp, "datastore-census.yml"), *AT,
               "-n", "mydata_ws", "--set", "service_data_access_auth_identity=workspace_system_assigned_identity")
    account_id = f"/subscriptions/{ml['sub']}/resourceGroups/default/providers/Microsoft.Storage/storageAccounts/mlcensus"
    server.cli("role", "assignment", "create", "--assignee", ml["sps"]["scientist"]["objectId"],
               "--role", "Storage Blob Data Reader", "--scope", account_id)
    return {"account_id": account_id}


def test_data_assets_point_at_datastores(server, ml, census):
    made = server.cli("ml", "data", "create", "-f", fill(server, ml["tmp"], "data-census.yml"), *AT)
    assert made["path"] == "azureml://datastores/mydata/paths/census.csv"
    assert server.cli("ml", "data", "show", "-n", "census", "-v", "1", *AT)["type"] == "uri_file"
    # az ml's flags alone describe a version; a missing name is a missing flag.
    flagged = server.cli("ml", "data", "create", "--name", "census", "--version", "2", "--type", "uri_file",
                         "--path", "azureml://datastores/mydata/paths/census.csv", *AT)
    assert (flagged["name"], flagged["version"], flagged["type"]) == ("census", "2", "uri_file")
    assert "give --name" in refused(server, "ml", "data", "create", "--path", "azureml://datastores/mydata/paths/x",
                                    *AT)
    assert "is local" in refused(server, "ml", "data", "create", "-n", "loc", "--path", "./here.csv", *AT)
    bad = ml["tmp"] / "nowhere.yml"
    bad.write_text("name: nowhere\ntype: uri_file\npath: azureml://datastores/nosuch/paths/x.csv\n")
    assert "nosuch" in refused(server, "ml", "data", "create", "-f", str(bad), *AT)


def test_the_data_readers_routes_answer_datastores_and_data_versions_and_keep_keys_from_readers(server, ml, census):
    """The routes azureml-dataprep (behind azureml-fsspec, mltable and the SDK's mounts) asks the
    discovery's `api` for: a datastore in the azureml-core shape, its endpoint keyless's own storage
    suffix, and a data version with its URI in the long form. A stored key goes only to a caller who
    may list the datastore's secrets; a workspace Reader is refused with the reason and no key."""
    import requests
    api = server.cli("account", "get-access-token")["accessToken"]
    base = (f"{server.info['management']}/datastore/v1.0/subscriptions/{ml['sub']}/resourceGroups/default/"
            "providers/Microsoft.MachineLearningServices/workspaces/census-ws/datastores")

    def get(url, env=None):
        token = api if env is None else server.cli("account", "get-access-token", env=env)["accessToken"]
        return requests.get(url, headers={"Authorization": f"Bearer {token}"}, verify=server.ca)

    reader, scientist = ml["envs"]["reader"], ml["envs"]["scientist"]
    r = get(f"{base}/mydata", reader)
    assert r.status_code == 200, r.text
    body = r.json()
    section = body["azureStorageSection"]
    assert body["dataStoreType"] == "AzureBlob" and body["name"] == "mydata"
    assert (section["accountName"], section["containerName"], section["credentialType"]) == \
        ("mlcensus", "data", "None")
    port = server.info["storage"].rsplit(":", 1)[1]
    assert section["endpoint"] == f"core.keyless.localhost:{port}", section
    assert section["subscriptionId"] == ml["sub"] and section["resourceGroup"] == "default"
    assert get(f"{base}/mydata_ws").json()["azureStorageSection"]["serviceDataAccessAuthIdentity"] == \
        "WorkspaceSystemAssignedIdentity"
    # A datastore holding a key: the key reaches only those holding listsecrets/action.
    if server.cli("ml", "datastore", "show", "-n", "blob_key", *AT, check=False).returncode != 0:
        server.cli("ml", "datastore", "create", "-f", fill(server, ml["tmp"], "datastore-blob-key.yml"), *AT)
    refusal = get(f"{base}/blob_key", reader)
    assert refusal.status_code == 403 and DISTINCT_KEY not in refusal.text, refusal.text
    assert "datastores/listsecrets/action" in refusal.text, refusal.text
    keyed = get(f"{base}/blob_key", scientist).json()["azureStorageSection"]
    assert keyed["credentialType"] == "AccountKey" and keyed["accountKey"] == DISTINCT_KEY
    # Nobody outside the workspace's roles reaches even a credential-less datastore.
    outsider = server.cli("ad", "sp", "create-for-rbac", "-n", "ml-outsider")
    env = {"KEYLESS_CONFIG_DIR": str(ml["tmp"] / "outsider")}
    server.cli("login", "--service-principal", "-u", outsider["appId"], "-p", outsider["password"], env=env)
    assert get(f"{base}/mydata", env).status_code == 403
    assert get(f"{base}/nosuch").status_code == 404
    # A data version, its URI long.
    if server.cli("ml", "data", "show", "-n", "census", "-v", "1", *AT, check=False).returncode != 0:
        server.cli("ml", "data", "create", "-f", fill(server, ml["tmp"], "data-census.yml"), *AT)
    version = get(f"{server.info['management']}/data/v1.0/subscriptions/{ml['sub']}/resourceGroups/default/"
                  "providers/Microsoft.MachineLearningServices/workspaces/census-ws/dataversion/census/versions/1",
                  reader).json()["dataVersion"]
    assert version["dataUri"] == (f"azureml://subscriptions/{ml['sub']}/resourcegroups/default/workspaces/"
                                  "census-ws/datastores/mydata/paths/census.csv")
    assert (version["dataType"], version["versionId"], version["dataContainerName"]) == ("uri_file", "1", "census")


def test_preview_reads_as_the_caller_or_the_workspace_identity(server, ml, census):
    scientist, reader = ml["envs"]["scientist"], ml["envs"]["reader"]
    uri = "azureml://datastores/mydata/paths/census.csv"
    # Credential-less, workspace identity off: the caller reads, with the caller's own rights.
    shown = server.cli("ml", "datastore", "preview", uri, *AT, env=scientist)
    assert shown["identity"]["type"] == "Caller"
    assert shown["identity"]["objectId"] == ml["sps"]["scientist"]["objectId"]
    assert shown["rows"][:2] == [["age", "workclass", "income"], ["39", "State-gov", "77516"]]
    folder = server.cli("ml", "datastore", "preview", "azureml://datastores/mydata/paths/folder/", *AT, env=scientist)
    assert folder["kind"] == "folder" and folder["entries"] == ["folder/a.csv"]
    assert server.cli("ml", "datastore", "preview", "azureml:census:1", *AT, env=scientist)["kind"] == "file"
    # A workspace Reader without a storage role is refused, and told which permission is missing.
    err = refused(server, "ml", "datastore", "preview", uri, *AT, env=reader)
    assert "Caller" in err and "blobs/read" in err
    # The datastore that asks for the workspace identity: refused until that identity holds a role.
    ws_uri = "azureml://datastores/mydata_ws/paths/census.csv"
    err = refused(server, "ml", "datastore", "preview", ws_uri, *AT, env=reader)
    assert "WorkspaceSystemAssignedIdentity" in err
    sai = ml["ws"]["identity"]["principal_id"]
    server.cli("role", "assignment", "create", "--assignee", sai, "--role", "Storage Blob Data Reader",
               "--scope", census["account_id"])
    shown = server.cli("ml", "datastore", "preview", ws_uri, *AT, env=reader)
    assert shown["identity"] == {"type": "WorkspaceSystemAssignedIdentity", "objectId": sai,
                                 "reason": shown["identity"]["reason"]}
    # The storage log names who read.
    logs = server.cli("storage", "logs", "--account", "mlcensus", check=False).stdout
    assert sai in logs and ml["sps"]["scientist"]["objectId"] in logs


def test_preview_honours_network_rules_and_the_trusted_service_bypass(server, ml, census):
    account = ("-n", "mlcensus", "-g", "default")
    scientist = ml["envs"]["scientist"]
    sai = ml["ws"]["identity"]["principal_id"]
    server.cli("role", "assignment", "create", "--assignee", sai, "--role", "Storage Blob Data Reader",
               "--scope", census["account_id"], check=False)  # also made by the test before, when run together
    server.cli("storage", "account", "update", *account, "--default-action", "Deny", "--bypass", "AzureServices")
    try:
        # The caller's preview comes from inside keyless, not from the caller's address: refused.
        err = refused(server, "ml", "datastore", "preview", "azureml://datastores/mydata/paths/census.csv", *AT,
                      env=scientist)
        assert "network rules" in err
        # The workspace identity passes as a trusted service.
        shown = server.cli("ml", "datastore", "preview", "azureml://datastores/mydata_ws/paths/census.csv", *AT,
                           env=scientist)
        assert shown["identity"]["type"] == "WorkspaceSystemAssignedIdentity"
        server.cli("storage", "account", "update", *account, "--bypass", "None")
        err = refused(server, "ml", "datastore", "preview", "azureml://datastores/mydata_ws/paths/census.csv", *AT,
                      env=scientist)
        assert "network rules" in err
    finally:
        server.cli("storage", "account", "update", *account, "--default-action", "Allow", "--bypass", "AzureServices")


def test_access_explain_names_the_reading_identity_in_each_context(server, ml, census):
    scientist = ml["sps"]["scientist"]
    answer = server.cli("access", "explain", "--as", scientist["appId"], "--read",
                        "azureml://datastores/mydata/paths/census.csv", *AT)
    assert answer["location"] == {"account": "mlcensus", "container": "data", "path": "census.csv"}
    by_context = {c["context"]: c for c in answer["contexts"]}
    user = by_context["job on cpu-cluster, identity: user_identity"]
    assert user["principal"] == scientist["objectId"] and user["allowed"] is True
    mi = by_context["job on cpu-cluster, identity: managed"]
    uai = ml["uais"]["ml-uai-one"]["properties"]
    assert uai["clientId"] in mi["reader"] and mi["principal"] == uai["principalId"]
    assert mi["allowed"] is False and "blobs/read" in mi["explanation"]
    assert by_context["job on cpu-cluster, identity: none"]["principal"] == uai["principalId"]
    assert by_context["job on serverless, identity: none"]["principal"] == scientist["objectId"]
    assert by_context["data preview"]["principal"] == scientist["objectId"]
    keyed = server.cli("access", "explain", "--as", scientist["appId"], "--read",
                       "azureml://datastores/blob_key/paths/census.csv", *AT)
    assert all("stored AccountKey credential" in c["reader"] for c in keyed["contexts"] if c["context"] != "data preview")


def test_a_workspace_with_only_user_assigned_identities(server, ml):
    tmp = ml["tmp"]
    uai2 = UAI.format(sub=ml["sub"], name="ml-uai-two")
    text = f"name: uai-ws\nidentity:\n  type: user_assigned\n  user_assigned_identities:\n    '{uai2}': {{}}\n"
    (tmp / "uai-ws.yml").write_text(text)
    # On resources keyless creates for it, the primary identity gets the roles it needs.
    ws = server.cli("ml", "workspace", "create", "-f", str(tmp / "uai-ws.yml"), "-g", "default")
    assert ws["identity"]["type"] == "user_assigned" and "principal_id" not in ws["identity"]
    assert ws["primary_user_assigned_identity"] == uai2
    names = {d["name"] for d in server.cli("ml", "datastore", "list", "-w", "uai-ws", "-g", "default")}
    assert names == {"workspaceblobstore", "workspaceartifactstore"}
    # On a storage account the user brings, the user grants them; without, creation is
    # refused with the reason and leaves nothing behind.
    server.cli("storage", "account", "create", "-n", "mlbrought", "-g", "default")
    account_id = f"/subscriptions/{ml['sub']}/resourceGroups/default/providers/Microsoft.Storage/storageAccounts/mlbrought"
    (tmp / "brought.yml").write_text(text.replace("uai-ws", "brought-ws") + f"storage_account: {account_id}\n")
    err = refused(server, "ml", "workspace", "create", "-f", str(tmp / "brought.yml"), "-g", "default")
    assert "cannot create container" in err and "Storage Blob Data Contributor" in err
    assert server.cli("ml", "workspace", "show", "-n", "brought-ws", "-g", "default", check=False).returncode != 0


def test_compute_operator_manages_computes_and_nothing_else(server, ml, tmp_path_factory):
    op = server.cli("ad", "sp", "create-for-rbac", "-n", "ml-compute-operator")
    server.cli("role", "assignment", "create", "--assignee", op["objectId"], "--role", "AzureML Compute Operator",
               "--scope", ml["ws_id"])
    env = as_principal(server, tmp_path_factory, op)
    made = server.cli("ml", "compute", "create", "-f", fill(server, ml["tmp"], "cluster-sai.yml"), "-n", "op-sai",
                      *AT, env=env)
    assert made["identity"]["type"] == "system_assigned"
    err = refused(server, "ml", "datastore", "list", *AT, env=env)
    assert "datastores/read" in err
    server.cli("ml", "compute", "delete", "-n", "op-sai", *AT, env=env)


def test_compute_identity_pulls_from_the_workspace_registry(server, ml):
    registry = server.cli("acr", "create", "-n", "mlacr01", "-g", "default")["id"]
    ml_tmp = ml["tmp"]
    (ml_tmp / "acr-ws.yml").write_text(f"name: acr-ws\ncontainer_registry: {registry}\n")
    server.cli("ml", "workspace", "create", "-f", str(ml_tmp / "acr-ws.yml"), "-g", "default")
    made = server.cli("ml", "compute", "create", "-f", fill(server, ml_tmp, "cluster-sai.yml"),
                      "-w", "acr-ws", "-g", "default")
    pid = made["identity"]["principal_id"]
    held = server.cli("role", "assignment", "list", "--assignee", pid, "--all")
    assert [(a["roleDefinitionName"], a["scope"]) for a in held] == [("AcrPull", registry)]


def test_a_workspace_is_made_whole_or_not_at_all(tmp_path):
    """A refused creation leaves nothing behind; one cut short (the server stopped midway:
    here, its record marked as being made, as the server leaves it) is undone at the next
    start, with the storage account, key vault and identity made for it."""
    from conftest import Server, psql

    srv = Server(tmp_path).start()
    try:
        srv.login_admin()
        before = {a["name"] for a in srv.cli("storage", "account", "list")}
        # The CLI checks the mode itself; the ARM API is asked directly.
        import requests
        token = srv.cli("account", "get-access-token")["accessToken"]
        url = (f"{srv.management}/subscriptions/{srv.admin['subscription']}/resourceGroups/default/providers/"
               "Microsoft.MachineLearningServices/workspaces/badmode?api-version=2024-10-01")
        refused = requests.put(url, json={"location": "local", "identity": {"type": "SystemAssigned"},
                                          "properties": {"systemDatastoresAuthMode": "sideways"}},
                               headers={"Authorization": f"Bearer {token}"}, verify=srv.ca, timeout=30)
        assert refused.status_code == 400 and "systemDatastoresAuthMode" in refused.text, refused.text
        assert {a["name"] for a in srv.cli("storage", "account", "list")} == before
        assert srv.cli("ml", "workspace", "show", "-n", "badmode", "-g", "default", check=False).returncode != 0

        (tmp_path / "half.yml").write_text("name: half\nidentity:\n  type: system_assigned\n")
        ws = srv.cli("ml", "workspace", "create", "-f", str(tmp_path / "half.yml"), "-g", "default")
        account = ws["storage_account"].rsplit("/", 1)[1]
        vault = ws["key_vault"].rsplit("/", 1)[1]
        principal = ws["identity"]["principal_id"]
        assert srv.cli("ad", "sp", "show", "--id", principal)["id"] == principal
        srv.stop()
        server_id = (srv.data_dir / "server-id").read_text().strip()
        making = json.dumps({"server": server_id, "since": 0,
                             "made": {"storageAccount": account, "keyVault": vault}})
        kind = "Microsoft.MachineLearningServices/workspaces"
        if srv.database:
            psql(srv.database, f"UPDATE resources SET body = (body::jsonb || jsonb_build_object('making', "
                               f"'{making}'::jsonb))::text WHERE type = '{kind}' AND name = 'half'")
        else:
            with sqlite3.connect(srv.data_dir / "meta.sqlite") as db:
                changed = db.execute("UPDATE resources SET body = json_set(body, '$.making', json(?)) "
                                     "WHERE type = ? AND name = 'half'", (making, kind)).rowcount
            assert changed == 1
        srv.start()
        assert srv.cli("ml", "workspace", "show", "-n", "half", "-g", "default", check=False).returncode != 0
        assert srv.cli("storage", "account", "show", "-n", account, "-g", "default", check=False).returncode != 0
        assert srv.cli("keyvault", "show", "-n", vault, "-g", "default", check=False).returncode != 0
        assert srv.cli("ad", "sp", "show", "--id", principal, check=False).returncode != 0
        assert {a["name"] for a in srv.cli("storage", "account", "list")} == before
    finally:
        srv.stop()
