"""Data protection through unmodified azure-storage-blob: blob soft delete and Undelete Blob,
blob versioning, container soft delete and restore; and who may undo what."""

import datetime

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, RetentionPolicy, generate_blob_sas


@pytest.fixture(scope="module")
def account(server):
    """Account `keepacct` with its key and an ARM token of the admin."""
    sub = server.admin["subscription"]
    server.cli("storage", "account", "create", "-n", "keepacct", "-g", "default")
    key = server.cli("storage", "account", "keys", "list", "-n", "keepacct", "-g", "default")[0]["value"]
    arm = (f"{server.management}/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.Storage"
           "/storageAccounts/keepacct/blobServices/default?api-version=2023-05-01")
    return {"url": f"{server.info['storage']}/keepacct", "key": key, "arm": arm,
            "token": server.cli("account", "get-access-token")["accessToken"]}


@pytest.fixture
def keyed(account, client_env):
    return BlobServiceClient(account["url"], credential={"account_name": "keepacct", "account_key": account["key"]})


def blob_services(server, account, method="GET", body=None, token=None):
    response = requests.request(method, account["arm"], json=body, verify=server.ca, timeout=30,
                                headers={"Authorization": f"Bearer {token or account['token']}"})
    return response.status_code, response.json()


def error_of(call):
    with pytest.raises(HttpResponseError) as e:
        call()
    return e.value.status_code, e.value.error_code


def test_soft_deleted_blobs_and_overwritten_states_come_back_with_undelete(server, account, keyed):
    keyed.set_service_properties(delete_retention_policy=RetentionPolicy(enabled=True, days=3))
    policy = keyed.get_service_properties()["delete_retention_policy"]
    assert (policy.enabled, policy.days) == (True, 3)
    # ARM shows the same setting.
    assert blob_services(server, account)[1]["properties"]["deleteRetentionPolicy"]["days"] == 3

    container = keyed.create_container("soft")
    blob = container.upload_blob("train.csv", b"v1")
    blob.upload_blob(b"v2", overwrite=True)
    # The overwrite left the first state as a deleted snapshot.
    listed = list(container.list_blobs(include=["snapshots", "deleted"]))
    assert [(b.name, bool(b.deleted), b.snapshot is not None) for b in listed] == [
        ("train.csv", True, True), ("train.csv", False, False)]
    assert listed[0].remaining_retention_days == 3 and listed[0].deleted_time is not None
    assert [b.name for b in container.list_blobs(include=["snapshots"])] == ["train.csv"]

    blob.delete_blob()
    assert error_of(lambda: blob.download_blob().readall()) == (404, "BlobNotFound")
    assert list(container.list_blobs()) == []
    deleted = list(container.list_blobs(include=["deleted"]))
    assert [(b.name, bool(b.deleted)) for b in deleted] == [("train.csv", True)]
    # A write does not undo a delete: only Undelete Blob does.
    blob.undelete_blob()
    assert blob.download_blob().readall() == b"v2"
    shots = [b for b in container.list_blobs(include=["snapshots"]) if b.snapshot]
    assert len(shots) == 1 and not shots[0].deleted
    assert container.get_blob_client("train.csv", snapshot=shots[0].snapshot).download_blob().readall() == b"v1"

    # With snapshots: deleting the blob keeps them deleted too, and undelete brings all back.
    blob.create_snapshot()
    blob.delete_blob(delete_snapshots="include")
    assert [bool(b.deleted) for b in container.list_blobs(include=["snapshots", "deleted"])] == [True, True, True]
    blob.undelete_blob()
    assert [bool(b.deleted) for b in container.list_blobs(include=["snapshots", "deleted"])] == [False, False, False]
    assert error_of(container.get_blob_client("never-there").undelete_blob) == (404, "BlobNotFound")

    # Undelete needs write: a SAS that may read and delete may not undo deletes.
    blob.delete_blob(delete_snapshots="include")
    expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    sas = generate_blob_sas("keepacct", "soft", "train.csv", account_key=account["key"], expiry=expiry,
                            permission=BlobSasPermissions(read=True, delete=True))
    reader = BlobServiceClient(account["url"], credential=sas).get_blob_client("soft", "train.csv")
    assert error_of(reader.undelete_blob)[0] == 403
    blob.undelete_blob()
    assert reader.download_blob().readall() == b"v2"
    keyed.set_service_properties(delete_retention_policy=RetentionPolicy(enabled=False))
    blob.delete_blob(delete_snapshots="include")
    assert list(container.list_blobs(include=["snapshots", "deleted"])) == []


def test_versions_keep_every_overwrite_and_a_deleted_blob_is_restored_from_one(server, account, keyed):
    status, body = blob_services(server, account, "PUT", {"properties": {"isVersioningEnabled": True}})
    assert status == 200 and body["properties"]["isVersioningEnabled"] is True
    container = keyed.create_container("versions")
    blob = container.get_blob_client("model.pt")
    first = blob.upload_blob(b"epoch-1")["version_id"]
    second = blob.upload_blob(b"epoch-2", overwrite=True)["version_id"]
    assert first and second and first < second
    props = blob.get_blob_properties()
    assert (props.version_id, props.is_current_version) == (second, True)
    assert container.get_blob_client("model.pt", version_id=first).download_blob().readall() == b"epoch-1"
    listed = [(b.version_id, b.is_current_version) for b in container.list_blobs(include=["versions"])]
    assert listed == [(first, None), (second, True)]
    # Setting metadata makes a version too; the bytes stay.
    third = blob.set_blob_metadata({"epoch": "2"})["version_id"]
    assert third > second and blob.download_blob().readall() == b"epoch-2"
    assert container.get_blob_client("model.pt", version_id=second).get_blob_properties().metadata == {}
    container.get_blob_client("model.pt", version_id=second).delete_blob()
    assert [b.version_id for b in container.list_blobs(include=["versions"])] == [first, third]
    second = third

    # A mistaken delete leaves the last state as a previous version; copying it back restores it.
    blob.delete_blob()
    assert error_of(lambda: blob.download_blob().readall()) == (404, "BlobNotFound")
    assert list(container.list_blobs()) == []
    assert [b.version_id for b in container.list_blobs(include=["versions"])] == [first, second]
    old = container.get_blob_client("model.pt", version_id=second)
    blob.start_copy_from_url(f"{old.url}?versionid={second}")
    assert blob.download_blob().readall() == b"epoch-2"
    # A previous version takes tags of its own, and goes alone when deleted by its id.
    old.set_blob_tags({"state": "restored"})
    assert (old.get_blob_tags(), blob.get_blob_tags()) == ({"state": "restored"}, {})
    container.get_blob_client("model.pt", version_id=first).delete_blob()
    assert [b.version_id for b in container.list_blobs(include=["versions"])][:1] == [second]

    # Turning versioning off stops new versions; those kept stay.
    blob_services(server, account, "PUT", {"properties": {"isVersioningEnabled": False}})
    assert blob.upload_blob(b"unversioned", overwrite=True).get("version_id") is None
    assert len(list(container.list_blobs(include=["versions"]))) == 3


def test_the_protection_settings_are_checked_and_need_the_right_to_change_them(server, account):
    bad = blob_services(server, account, "PUT", {"properties": {"deleteRetentionPolicy": {"enabled": True, "days": 400}}})
    assert bad[0] == 400 and "1 to 365" in bad[1]["error"]["message"]
    assert blob_services(server, account, "PUT", {"properties": {"changeFeed": {"enabled": True}}})[0] == 400
    # A reader of the account may read the settings, not change them.
    sub = server.admin["subscription"]
    reader = server.cli("ad", "sp", "create-for-rbac", "-n", "keep-reader")
    server.cli("role", "assignment", "create", "--assignee", reader["appId"], "--role", "Reader", "--scope",
               f"/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.Storage/storageAccounts/keepacct")
    token = requests.post(f"{server.login}/{reader['tenant']}/oauth2/v2.0/token", verify=server.ca, timeout=30, data={
        "grant_type": "client_credentials", "client_id": reader["appId"], "client_secret": reader["password"],
        "scope": "https://management.azure.com/.default"}).json()["access_token"]
    assert blob_services(server, account, token=token)[0] == 200
    refused = blob_services(server, account, "PUT", {"properties": {"isVersioningEnabled": True}}, token=token)
    assert refused[0] == 403 and "blobServices/write" in refused[1]["error"]["message"]


def test_a_deleted_container_comes_back_whole_while_its_retention_lasts(server, account, keyed):
    status, _ = blob_services(server, account, "PUT", {"properties": {
        "containerDeleteRetentionPolicy": {"enabled": True, "days": 2}}})
    assert status == 200
    container = keyed.create_container("experiments")
    container.upload_blob("run-1/metrics.json", b'{"loss": 0.1}', metadata={"run": "1"})
    container.delete_container()
    assert "experiments" not in [c.name for c in keyed.list_containers()]
    assert error_of(lambda: container.get_blob_client("run-1/metrics.json").download_blob().readall())[0] == 404
    deleted = [c for c in keyed.list_containers(include_deleted=True) if c.name == "experiments"]
    assert len(deleted) == 1 and deleted[0].deleted and deleted[0].version

    # Meanwhile the name is free; restoring onto it is refused until it is free again.
    keyed.create_container("experiments")
    assert error_of(lambda: keyed.undelete_container("experiments", deleted[0].version)) == (
        409, "ContainerAlreadyExists")
    keyed.delete_container("experiments")
    restored = keyed.undelete_container("experiments", deleted[0].version)
    blob = restored.get_blob_client("run-1/metrics.json")
    assert blob.download_blob().readall() == b'{"loss": 0.1}'
    assert blob.get_blob_properties().metadata == {"run": "1"}
    # The empty container deleted meanwhile is still kept; the restored one is not.
    versions = [c.version for c in keyed.list_containers(include_deleted=True) if c.name == "experiments" and c.deleted]
    assert len(versions) == 1 and versions[0] != deleted[0].version
    assert error_of(lambda: keyed.undelete_container("experiments", deleted[0].version)) == (404, "ContainerNotFound")
    assert error_of(lambda: keyed.undelete_container("nothing", "01D60F8BB59A4652")) == (404, "ContainerNotFound")
    blob_services(server, account, "PUT", {"properties": {"containerDeleteRetentionPolicy": {"enabled": False}}})


def test_undoing_a_delete_needs_the_right_to_write(server, account, keyed):
    from azure.identity import ClientSecretCredential

    keyed.set_service_properties(delete_retention_policy=RetentionPolicy(enabled=True, days=1))
    container = keyed.create_container("guarded")
    container.upload_blob("labels.csv", b"cat,dog\n").delete_blob()
    sub = server.admin["subscription"]
    scope = (f"/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.Storage/storageAccounts/keepacct"
             "/blobServices/default/containers/guarded")
    sp = server.cli("ad", "sp", "create-for-rbac", "-n", "keep-data-reader")
    server.cli("role", "assignment", "create", "--assignee", sp["appId"], "--role", "Storage Blob Data Reader",
               "--scope", scope)
    credential = ClientSecretCredential(server.tenant, sp["appId"], sp["password"], authority=server.login,
                                        disable_instance_discovery=True)
    reader = BlobServiceClient(account["url"], credential=credential).get_blob_client("guarded", "labels.csv")
    with pytest.raises(HttpResponseError) as refused:
        reader.undelete_blob()
    assert refused.value.status_code == 403 and refused.value.error_code == "AuthorizationPermissionMismatch"
    assert "blobs/write" in str(refused.value)
    # The reader sees what is kept deleted, as listing needs only read.
    listing = BlobServiceClient(account["url"], credential=credential).get_container_client("guarded")
    assert [(b.name, bool(b.deleted)) for b in listing.list_blobs(include=["deleted"])] == [("labels.csv", True)]
    container.get_blob_client("labels.csv").undelete_blob()
    assert reader.download_blob().readall() == b"cat,dog\n"
    keyed.set_service_properties(delete_retention_policy=RetentionPolicy(enabled=False))


def test_restoring_a_container_needs_the_right_to_write_containers(server, account, keyed):
    from azure.identity import ClientSecretCredential
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    blob_services(server, account, "PUT", {"properties": {"containerDeleteRetentionPolicy": {"enabled": True, "days": 1}}})
    keyed.create_container("guarded-box").upload_blob("a.txt", b"a")
    keyed.delete_container("guarded-box")
    version = next(c.version for c in keyed.list_containers(include_deleted=True)
                   if c.name == "guarded-box" and c.deleted)
    sub = server.admin["subscription"]
    sp = server.cli("ad", "sp", "create-for-rbac", "-n", "keep-box-reader")
    server.cli("role", "assignment", "create", "--assignee", sp["appId"], "--role", "Storage Blob Data Reader",
               "--scope", f"/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.Storage/storageAccounts/keepacct")
    credential = ClientSecretCredential(server.tenant, sp["appId"], sp["password"], authority=server.login,
                                        disable_instance_discovery=True)
    reader = BlobServiceClient(account["url"], credential=credential)
    assert error_of(lambda: reader.undelete_container("guarded-box", version)) == (403, "AuthorizationPermissionMismatch")
    # A container SAS, even one that may create and write, reaches blobs, not the container itself.
    expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    sas = generate_container_sas("keepacct", "guarded-box", account_key=account["key"], expiry=expiry,
                                 permission=ContainerSasPermissions(read=True, write=True, create=True, delete=True))
    assert error_of(lambda: BlobServiceClient(account["url"], credential=sas)
                    .undelete_container("guarded-box", version))[0] == 403
    assert "guarded-box" not in [c.name for c in keyed.list_containers()]
    keyed.undelete_container("guarded-box", version)
    assert keyed.get_blob_client("guarded-box", "a.txt").download_blob().readall() == b"a"
    blob_services(server, account, "PUT", {"properties": {"containerDeleteRetentionPolicy": {"enabled": False}}})
