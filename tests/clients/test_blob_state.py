"""Blob index tags, leases and append blobs through unmodified azure-storage-blob, and the
boundaries around them: SAS letters, RBAC data actions, lease ids, kill -9 during appends."""

import datetime
import threading
import time

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceModifiedError
from azure.identity import ClientSecretCredential
from azure.storage.blob import (BlobSasPermissions, BlobServiceClient, ContainerSasPermissions,
                                generate_blob_sas, generate_container_sas)

from conftest import Server


@pytest.fixture(scope="module")
def world(server):
    """Account `stateacct`, and a Storage Blob Data Contributor and an Owner on it."""
    sub = server.admin["subscription"]
    server.cli("storage", "account", "create", "-n", "stateacct", "-g", "default")
    key = server.cli("storage", "account", "keys", "list", "-n", "stateacct", "-g", "default")[0]["value"]
    account_id = f"/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.Storage/storageAccounts/stateacct"
    sps = {name: server.cli("ad", "sp", "create-for-rbac", "-n", f"state-{name}") for name in ("contributor", "owner")}
    server.cli("role", "assignment", "create", "--assignee", sps["contributor"]["objectId"],
               "--role", "Storage Blob Data Contributor", "--scope", account_id)
    server.cli("role", "assignment", "create", "--assignee", sps["owner"]["objectId"],
               "--role", "Storage Blob Data Owner", "--scope", account_id)
    return {"url": f"{server.info['storage']}/stateacct", "key": key, "sps": sps}


@pytest.fixture
def keyed(world, client_env):
    return BlobServiceClient(world["url"], credential={"account_name": "stateacct", "account_key": world["key"]})


def as_principal(server, world, who):
    sp = world["sps"][who]
    credential = ClientSecretCredential(server.tenant, sp["appId"], sp["password"], authority=server.login,
                                        disable_instance_discovery=True)
    return BlobServiceClient(world["url"], credential=credential)


def error_of(call):
    with pytest.raises(HttpResponseError) as e:
        call()
    return e.value.status_code, e.value.error_code


def test_tags_are_set_read_listed_found_and_conditioned_on(keyed):
    container = keyed.create_container("tagged")
    a = container.upload_blob("a.csv", b"a", tags={"project": "census", "stage": "raw"})
    b = container.upload_blob("b.csv", b"b", tags={"project": "census", "stage": "clean"})
    container.upload_blob("c.csv", b"c")
    assert a.get_blob_tags() == {"project": "census", "stage": "raw"}
    assert a.get_blob_properties().tag_count == 2
    # Setting tags leaves the blob's ETag and time alone.
    before = b.get_blob_properties()
    b.set_blob_tags({"project": "census", "stage": "gold", "owner": "ada"})
    after = b.get_blob_properties()
    assert (after.etag, after.last_modified) == (before.etag, before.last_modified)
    assert after.tag_count == 3
    listed = {x.name: x.tags for x in container.list_blobs(include=["tags"])}
    assert listed == {"a.csv": {"project": "census", "stage": "raw"},
                      "b.csv": {"project": "census", "stage": "gold", "owner": "ada"}, "c.csv": None}

    # Find, on the container and the account; the reply shows the tags the query names.
    found = list(container.find_blobs_by_tags("\"project\"='census' AND stage>'clean' AND stage<'h'"))
    assert [(f.name, f.tags) for f in found] == [("b.csv", {"project": "census", "stage": "gold"})]
    other = keyed.create_container("tagged-too")
    other.upload_blob("d.csv", b"d", tags={"project": "census"})
    everywhere = [(f.container_name, f.name) for f in keyed.find_blobs_by_tags("project='census'")]
    assert everywhere == [("tagged", "a.csv"), ("tagged", "b.csv"), ("tagged-too", "d.csv")]
    pages = list(keyed.find_blobs_by_tags("project='census'", results_per_page=1).by_page())
    assert len(pages) == 3
    only = [f.name for f in keyed.find_blobs_by_tags("@container='tagged-too' AND project='census'")]
    assert only == ["d.csv"]
    assert error_of(lambda: list(container.find_blobs_by_tags("project='x' or stage='y'"))) == \
        (400, "InvalidQueryParameterValue")

    # x-ms-if-tags guards reads and writes.
    assert a.download_blob(if_tags_match_condition="stage='raw'").readall() == b"a"
    with pytest.raises(ResourceModifiedError):
        a.download_blob(if_tags_match_condition="stage='clean'")
    with pytest.raises(ResourceModifiedError):
        a.upload_blob(b"overwritten", overwrite=True, if_tags_match_condition="stage<>'raw'")
    assert a.download_blob().readall() == b"a"
    assert error_of(lambda: a.get_blob_tags(if_tags_match_condition="@container='tagged'"))[1] == "InvalidHeaderValue"

    # Azure's rules on the tag set; a refused set changes nothing.
    for bad in ({f"k{i}": "v" for i in range(11)}, {"": "v"}, {"k": "a%b"}, {"k" * 129: "v"}):
        status, _ = error_of(lambda: a.set_blob_tags(bad))
        assert status == 400, bad
    assert a.get_blob_tags() == {"project": "census", "stage": "raw"}
    # An overwrite replaces the tags with its own (none here).
    a.upload_blob(b"a2", overwrite=True)
    assert a.get_blob_tags() == {}


def test_tags_need_their_own_sas_letter_and_data_action(server, world, keyed):
    container = keyed.create_container("tag-access")
    blob = container.upload_blob("x", b"x", tags={"k": "v"})
    key = world["key"]
    expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    rw = generate_blob_sas("stateacct", "tag-access", "x", account_key=key, expiry=expiry,
                           permission=BlobSasPermissions(read=True, write=True))
    by_rw = BlobServiceClient(world["url"], credential=rw).get_blob_client("tag-access", "x")
    assert error_of(by_rw.get_blob_tags) == (403, "AuthorizationPermissionMismatch")
    assert error_of(lambda: by_rw.set_blob_tags({"k": "stolen"})) == (403, "AuthorizationPermissionMismatch")
    # Writing the blob is allowed, but not tagging it on the way.
    assert error_of(lambda: by_rw.upload_blob(b"y", overwrite=True, tags={"k": "w"}))[0] == 403
    by_rw.upload_blob(b"y", overwrite=True)
    blob.set_blob_tags({"k": "v"})
    t = generate_blob_sas("stateacct", "tag-access", "x", account_key=key, expiry=expiry,
                          permission=BlobSasPermissions(tag=True))
    assert BlobServiceClient(world["url"], credential=t).get_blob_client("tag-access", "x").get_blob_tags() == {"k": "v"}
    # Find needs `f`: a container SAS with list only is refused.
    listing = generate_container_sas("stateacct", "tag-access", account_key=key, expiry=expiry,
                                     permission=ContainerSasPermissions(list=True, read=True))
    by_list = BlobServiceClient(world["url"], credential=listing).get_container_client("tag-access")
    assert error_of(lambda: list(by_list.find_blobs_by_tags("k='v'")))[0] == 403
    finder = generate_container_sas("stateacct", "tag-access", account_key=key, expiry=expiry,
                                    permission=ContainerSasPermissions(filter_by_tags=True))
    by_find = BlobServiceClient(world["url"], credential=finder).get_container_client("tag-access")
    assert [f.name for f in by_find.find_blobs_by_tags("k='v'")] == ["x"]

    # Storage Blob Data Contributor writes blobs but, as in Azure, holds no tag data action.
    contributor = as_principal(server, world, "contributor").get_container_client("tag-access")
    contributor.upload_blob("by-contributor", b"c")
    for call in (lambda: contributor.get_blob_client("x").get_blob_tags(),
                 lambda: contributor.get_blob_client("x").set_blob_tags({"k": "mine"}),
                 lambda: contributor.upload_blob("tagged-by-contributor", b"c", tags={"k": "v"}),
                 lambda: list(contributor.find_blobs_by_tags("k='v'"))):
        status, code = error_of(call)
        assert (status, code) == (403, "AuthorizationPermissionMismatch")
    assert not container.get_blob_client("tagged-by-contributor").exists()
    owner = as_principal(server, world, "owner").get_container_client("tag-access")
    owner.get_blob_client("x").set_blob_tags({"k": "owned"})
    assert [f.name for f in owner.find_blobs_by_tags("k='owned'")] == ["x"]


def test_a_leased_blob_obeys_its_lease_holder_only(keyed):
    container = keyed.create_container("leases")
    blob = container.upload_blob("model.pt", b"v1")
    lease = blob.acquire_lease(lease_duration=-1)
    props = blob.get_blob_properties()
    assert (props.lease.status, props.lease.state, props.lease.duration) == ("locked", "leased", "infinite")
    # Writes and deletes without the lease, or with another, are refused; reads are not.
    assert error_of(lambda: blob.upload_blob(b"v2", overwrite=True)) == (412, "LeaseIdMissing")
    assert error_of(lambda: blob.delete_blob()) == (412, "LeaseIdMissing")
    assert error_of(lambda: blob.set_blob_metadata({"a": "b"}, lease="0" * 32)) == \
        (412, "LeaseIdMismatchWithBlobOperation")
    assert error_of(lambda: blob.stage_block("QUFB", b"x")) == (412, "LeaseIdMissing")
    assert blob.download_blob().readall() == b"v1"
    assert error_of(lambda: blob.acquire_lease(lease_duration=15)) == (409, "LeaseAlreadyPresent")
    # The holder writes, and the lease outlives the overwrite.
    blob.upload_blob(b"v2", overwrite=True, lease=lease)
    assert blob.get_blob_properties().lease.state == "leased"
    new_id = "11111111-2222-3333-4444-555555555555"
    lease.change(new_id)
    assert lease.id == new_id
    assert error_of(lambda: blob.set_blob_metadata({"a": "b"}, lease="0" * 32))[1] == "LeaseIdMismatchWithBlobOperation"
    blob.set_blob_metadata({"a": "b"}, lease=new_id)
    # A break with a period leaves the lease breaking, then broken: then anyone may write.
    assert lease.break_lease(lease_break_period=2) in (1, 2)
    assert blob.get_blob_properties().lease.state == "breaking"
    assert error_of(lambda: blob.upload_blob(b"v3", overwrite=True)) == (412, "LeaseIdMissing")
    time.sleep(2.2)
    assert blob.get_blob_properties().lease.state == "broken"
    blob.upload_blob(b"v3", overwrite=True)
    lease.release()
    assert blob.get_blob_properties().lease.state == "available"
    assert error_of(lambda: blob.upload_blob(b"v4", overwrite=True, lease=new_id)) == \
        (412, "LeaseNotPresentWithBlobOperation")
    # A fixed lease expires on its own.
    short = blob.acquire_lease(lease_duration=15)
    assert blob.get_blob_properties().lease.duration == "fixed"
    assert error_of(lambda: blob.acquire_lease(lease_duration=10))[0] == 400
    short.release()

    # A leased container is deleted by its lease holder only.
    c_lease = container.acquire_lease(lease_duration=-1)
    assert container.get_container_properties().lease.state == "leased"
    assert error_of(container.delete_container) == (412, "LeaseIdMissing")
    assert error_of(lambda: container.delete_container(lease="0" * 32))[1] == \
        "LeaseIdMismatchWithContainerOperation"
    container.delete_container(lease=c_lease)
    assert not container.exists()


def test_a_lease_needs_write_and_appends_need_append(server, world, keyed):
    container = keyed.create_container("lease-access")
    container.upload_blob("x", b"x")
    expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    reader = generate_blob_sas("stateacct", "lease-access", "x", account_key=world["key"], expiry=expiry,
                               permission=BlobSasPermissions(read=True))
    by_reader = BlobServiceClient(world["url"], credential=reader).get_blob_client("lease-access", "x")
    assert error_of(lambda: by_reader.acquire_lease())[0] == 403
    assert container.get_blob_client("x").get_blob_properties().lease.state == "available"
    log = container.get_blob_client("log")
    log.create_append_blob()
    appender = generate_blob_sas("stateacct", "lease-access", "log", account_key=world["key"], expiry=expiry,
                                 permission=BlobSasPermissions(add=True))
    by_appender = BlobServiceClient(world["url"], credential=appender).get_blob_client("lease-access", "log")
    by_appender.append_block(b"line\n")
    # `a` appends, but does not overwrite.
    assert error_of(lambda: by_appender.upload_blob(b"gone", overwrite=True))[0] == 403
    assert error_of(lambda: BlobServiceClient(world["url"], credential=reader)
                    .get_blob_client("lease-access", "log").append_block(b"x"))[0] == 403
    assert log.download_blob().readall() == b"line\n"


def test_append_blobs_grow_at_their_end_and_seal(keyed):
    container = keyed.create_container("appends")
    log = container.get_blob_client("train.log")
    log.create_append_blob(tags={"kind": "log"})
    props = log.get_blob_properties()
    assert (props.blob_type, props.size, props.tag_count) == ("AppendBlob", 0, 1)
    offsets = [log.append_block(chunk)["blob_append_offset"] for chunk in (b"epoch 1\n", b"epoch 2\n", b"done\n")]
    assert offsets == ["0", "8", "16"]
    assert log.download_blob().readall() == b"epoch 1\nepoch 2\ndone\n"
    assert log.download_blob(offset=8, length=8).readall() == b"epoch 2\n"
    assert log.get_blob_properties().append_blob_committed_block_count == 3
    assert error_of(lambda: log.append_block(b"x", appendpos_condition=0)) == (412, "AppendPositionConditionNotMet")
    assert error_of(lambda: log.append_block(b"x", maxsize_condition=21)) == (412, "MaxBlobSizeConditionNotMet")
    log.append_block(b"x", appendpos_condition=21, maxsize_condition=22)
    # Blocks of a block blob do not go into an append blob, nor appends into a block blob.
    assert error_of(lambda: log.stage_block("QUFB", b"x")) == (409, "InvalidBlobType")
    block_blob = container.upload_blob("plain", b"p")
    assert error_of(lambda: block_blob.append_block(b"x")) == (409, "InvalidBlobType")
    log.seal_append_blob()
    assert log.get_blob_properties().is_append_blob_sealed is True
    assert error_of(lambda: log.append_block(b"late")) == (409, "BlobIsSealed")
    # Sealed means no more appends; metadata still changes, and an overwrite starts afresh.
    log.set_blob_metadata({"final": "yes"})
    log.create_append_blob()
    log.append_block(b"again")
    assert log.download_blob().readall() == b"again"


def test_racing_appends_each_land_whole_where_they_were_told(keyed):
    import base64
    import hashlib
    import threading

    log = keyed.get_container_client("appends").get_blob_client("racing.log")
    log.create_append_blob()
    log.set_blob_metadata({"phase": "start"})
    landed, errors = {}, []

    def writer(w):
        try:
            for i in range(25):
                chunk = f"writer {w} block {i:02d}\n".encode() * (1 + (w * 7 + i) % 40)
                landed[int(log.append_block(chunk)["blob_append_offset"])] = chunk
                if i % 10 == 3:
                    # A block whose MD5 does not match is refused, and leaves nothing.
                    bad = base64.b64encode(hashlib.md5(b"other").digest()).decode()
                    try:
                        log.append_block(b"corrupt", headers={"Content-MD5": bad})
                        errors.append("a block with a wrong MD5 was appended")
                    except HttpResponseError as e:
                        if e.status_code != 400:
                            errors.append(f"wrong MD5 answered {e.status_code}")
                if w == 0 and i % 5 == 0:
                    log.set_blob_metadata({"phase": str(i)})
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(repr(e))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    whole = log.download_blob().readall()
    assert len(landed) == 150
    assert b"".join(landed[offset] for offset in sorted(landed)) == whole
    props = log.get_blob_properties()
    assert props.append_blob_committed_block_count == 150 and props.size == len(whole)
    assert props.metadata == {"phase": "20"}


def test_append_blob_writes_survive_kill_9_whole(tmp_path, client_env):
    srv = Server(tmp_path).start()
    try:
        srv.login_admin()
        srv.cli("storage", "account", "create", "-n", "killacct", "-g", "default")
        key = srv.cli("storage", "account", "keys", "list", "-n", "killacct", "-g", "default")[0]["value"]
        url = f"{srv.info['storage']}/killacct"
        # No retries: an append the SDK repeated after the restart would be a second append.
        service = BlobServiceClient(url, credential={"account_name": "killacct", "account_key": key},
                                    connection_verify=srv.ca, retry_total=0)
        log = service.create_container("logs").get_blob_client("a.log")
        log.create_append_blob()
        chunks = [f"record {i:04d}\n".encode() * 2000 for i in range(400)]
        acked = []

        def append_until_killed():
            for chunk in chunks:
                try:
                    log.append_block(chunk)
                except Exception:  # the server died under the append
                    return
                acked.append(chunk)

        writer = threading.Thread(target=append_until_killed)
        writer.start()
        deadline = time.monotonic() + 60
        while len(acked) < 20 and writer.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(acked) >= 20
        srv.stop(kill=True)
        writer.join(timeout=120)
        srv.start()
        service = BlobServiceClient(url, credential={"account_name": "killacct", "account_key": key},
                                    connection_verify=srv.ca)
        log = service.get_blob_client("logs", "a.log")
        # Every acknowledged append is there, whole, in order; the one in flight is
        # there whole or not at all.
        count = log.get_blob_properties().append_blob_committed_block_count
        assert count in (len(acked), len(acked) + 1), (count, len(acked))
        assert log.download_blob().readall() == b"".join(chunks[:count])
        log.append_block(b"after\n")
        assert log.download_blob().readall() == b"".join(chunks[:count]) + b"after\n"
    finally:
        srv.stop()


def test_access_tiers_label_block_blobs_and_archive_locks_their_bytes(world, keyed):
    from azure.storage.blob import StandardBlobTier

    container = keyed.create_container("tiers")
    blob = container.upload_blob("data.parquet", b"rows")
    props = blob.get_blob_properties()
    assert (props.blob_tier, props.blob_tier_inferred) == ("Hot", True)
    blob.set_standard_blob_tier(StandardBlobTier.COOL)
    props = blob.get_blob_properties()
    assert (props.blob_tier, props.blob_tier_inferred) == ("Cool", False)
    assert props.blob_tier_change_time is not None
    assert [b.blob_tier for b in container.list_blobs()] == ["Cool"]
    cold = container.upload_blob("cold.bin", b"c", standard_blob_tier=StandardBlobTier.COLD)
    assert cold.get_blob_properties().blob_tier == "Cold"

    blob.set_standard_blob_tier(StandardBlobTier.ARCHIVE)
    assert error_of(lambda: blob.download_blob().readall()) == (409, "BlobArchived")
    assert error_of(lambda: blob.set_blob_metadata({"a": "b"})) == (409, "BlobArchived")
    assert blob.get_blob_properties().blob_tier == "Archive"
    blob.set_standard_blob_tier(StandardBlobTier.HOT)
    assert blob.download_blob().readall() == b"rows"

    assert error_of(lambda: blob.set_standard_blob_tier("Lukewarm"))[0] == 400
    log = container.get_blob_client("log")
    log.create_append_blob()
    assert error_of(lambda: log.set_standard_blob_tier(StandardBlobTier.COOL)) == (400, "InvalidBlobType")
    expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    reader = generate_blob_sas("stateacct", "tiers", "data.parquet", account_key=world["key"], expiry=expiry,
                               permission=BlobSasPermissions(read=True))
    by_reader = BlobServiceClient(world["url"], credential=reader).get_blob_client("tiers", "data.parquet")
    assert error_of(lambda: by_reader.set_standard_blob_tier(StandardBlobTier.ARCHIVE))[0] == 403
    assert blob.get_blob_properties().blob_tier == "Hot"


def test_page_blobs_write_clear_list_and_resize_their_pages(world, keyed):
    container = keyed.create_container("pages")
    disk = container.get_blob_client("disk.vhd")
    disk.create_page_blob(4 * 512, sequence_number=3)
    props = disk.get_blob_properties()
    assert (props.blob_type, props.size, props.page_blob_sequence_number) == ("PageBlob", 2048, 3)
    assert disk.download_blob().readall() == b"\0" * 2048
    disk.upload_page(b"a" * 512, offset=0, length=512)
    disk.upload_page(b"b" * 1024, offset=1024, length=1024)
    ranges, cleared = disk.get_page_ranges()
    assert [(r["start"], r["end"]) for r in ranges] == [(0, 511), (1024, 2047)] and not cleared
    disk.upload_page(b"c" * 512, offset=512, length=512)
    assert [(r["start"], r["end"]) for r in disk.get_page_ranges()[0]] == [(0, 511), (512, 1023), (1024, 2047)]
    disk.clear_page(offset=1024, length=512)
    assert [(r["start"], r["end"]) for r in disk.get_page_ranges()[0]] == [(0, 511), (512, 1023), (1536, 2047)]
    assert disk.download_blob().readall() == b"a" * 512 + b"c" * 512 + b"\0" * 512 + b"b" * 512
    assert [(r["start"], r["end"]) for r in disk.get_page_ranges(offset=512, length=1024)[0]] == [(512, 1023)]

    # Sequence numbers: conditions on writes, and the three actions.
    assert error_of(lambda: disk.upload_page(b"x" * 512, offset=0, length=512, if_sequence_number_eq=4)) == \
        (412, "SequenceNumberConditionNotMet")
    disk.upload_page(b"x" * 512, offset=0, length=512, if_sequence_number_lte=3)
    disk.set_sequence_number("increment")
    assert disk.get_blob_properties().page_blob_sequence_number == 4
    disk.set_sequence_number("max", 2)
    assert disk.get_blob_properties().page_blob_sequence_number == 4
    disk.set_sequence_number("update", 9)
    assert disk.get_blob_properties().page_blob_sequence_number == 9

    # Bad ranges and sizes are refused; nothing changes.
    expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    writer = generate_blob_sas("stateacct", "pages", "disk.vhd", account_key=world["key"], expiry=expiry,
                               permission=BlobSasPermissions(write=True))
    # The SDK checks alignment itself; a client that does not is refused by the server.
    misaligned = requests.put(f"{world['url']}/pages/disk.vhd?comp=page&{writer}", data=b"y" * 511,
                              headers={"x-ms-range": "bytes=0-510", "x-ms-page-write": "update",
                                       "x-ms-version": "2025-01-05"})
    assert (misaligned.status_code, misaligned.headers["x-ms-error-code"]) == (400, "InvalidHeaderValue")
    assert error_of(lambda: disk.upload_page(b"y" * 512, offset=2048, length=512)) == (416, "InvalidPageRange")
    assert error_of(lambda: container.get_blob_client("odd").create_page_blob(1000))[0] == 400
    assert error_of(lambda: container.get_blob_client("huge").create_page_blob(2 * 1024 ** 3))[0] == 400
    assert disk.download_blob(offset=0, length=4).readall() == b"xxxx"

    # Resizing keeps the pages below the new end and zero-fills growth.
    disk.resize_blob(1024)
    assert disk.download_blob().readall() == b"x" * 512 + b"c" * 512
    disk.resize_blob(3072)
    assert disk.download_blob().readall() == b"x" * 512 + b"c" * 512 + b"\0" * 2048
    assert [(r["start"], r["end"]) for r in disk.get_page_ranges()[0]] == [(0, 511), (512, 1023)]

    # Page operations need a page blob; writes need `w`, page ranges `r`.
    block = container.upload_blob("block", b"b")
    assert error_of(lambda: block.upload_page(b"z" * 512, offset=0, length=512)) == (409, "InvalidBlobType")
    assert error_of(block.get_page_ranges) == (409, "InvalidBlobType")
    reader = generate_blob_sas("stateacct", "pages", "disk.vhd", account_key=world["key"], expiry=expiry,
                               permission=BlobSasPermissions(read=True))
    by_reader = BlobServiceClient(world["url"], credential=reader).get_blob_client("pages", "disk.vhd")
    assert [(r["start"], r["end"]) for r in by_reader.get_page_ranges()[0]] == [(0, 511), (512, 1023)]
    assert error_of(lambda: by_reader.upload_page(b"z" * 512, offset=0, length=512))[0] == 403
    assert error_of(lambda: by_reader.clear_page(offset=0, length=512))[0] == 403
    assert disk.download_blob(offset=0, length=512).readall() == b"x" * 512


def test_page_writes_survive_kill_9_whole(tmp_path, client_env):
    srv = Server(tmp_path).start()
    try:
        srv.login_admin()
        srv.cli("storage", "account", "create", "-n", "pagekill", "-g", "default")
        key = srv.cli("storage", "account", "keys", "list", "-n", "pagekill", "-g", "default")[0]["value"]
        url = f"{srv.info['storage']}/pagekill"
        service = BlobServiceClient(url, credential={"account_name": "pagekill", "account_key": key},
                                    connection_verify=srv.ca, retry_total=0)
        disk = service.create_container("disks").get_blob_client("d.vhd")
        pages = 256
        disk.create_page_blob(pages * 4096)
        acked = []

        def write_until_killed():
            for i in range(pages):
                try:
                    disk.upload_page(bytes([i % 250 + 1]) * 4096, offset=i * 4096, length=4096)
                except Exception:  # the server died under the write
                    return
                acked.append(i)

        writer = threading.Thread(target=write_until_killed)
        writer.start()
        deadline = time.monotonic() + 60
        while len(acked) < 20 and writer.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(acked) >= 20
        srv.stop(kill=True)
        writer.join(timeout=120)
        srv.start()
        service = BlobServiceClient(url, credential={"account_name": "pagekill", "account_key": key},
                                    connection_verify=srv.ca)
        data = service.get_blob_client("disks", "d.vhd").download_blob().readall()
        written = [i for i in range(pages) if data[i * 4096:(i + 1) * 4096] == bytes([i % 250 + 1]) * 4096]
        blank = [i for i in range(pages) if data[i * 4096:(i + 1) * 4096] == b"\0" * 4096]
        # Every page is whole: written or blank. Every acknowledged write is there; at
        # most the one in flight besides.
        assert sorted(written + blank) == list(range(pages))
        assert written[:len(acked)] == acked and len(written) in (len(acked), len(acked) + 1)
    finally:
        srv.stop()


def test_snapshots_keep_a_blob_as_it_was(world, keyed):
    container = keyed.create_container("snapshots")
    blob = container.upload_blob("weights.bin", b"epoch-1", metadata={"epoch": "1"}, tags={"stage": "train"})
    first = blob.create_snapshot()
    assert first["snapshot"].endswith("Z") and len(first["snapshot"]) == 28
    blob.upload_blob(b"epoch-2", overwrite=True, metadata={"epoch": "2"})
    second = blob.create_snapshot(metadata={"note": "best"})
    blob.upload_blob(b"epoch-3", overwrite=True)

    old = container.get_blob_client("weights.bin", snapshot=first["snapshot"])
    assert old.download_blob().readall() == b"epoch-1"
    assert old.get_blob_properties().metadata == {"epoch": "1"}
    assert old.get_blob_tags() == {"stage": "train"}
    assert container.get_blob_client("weights.bin", snapshot=second).get_blob_properties().metadata == {"note": "best"}
    assert blob.download_blob().readall() == b"epoch-3"
    listed = [(b.name, b.snapshot) for b in container.list_blobs(include=["snapshots"])]
    assert listed == [("weights.bin", first["snapshot"]), ("weights.bin", second["snapshot"]), ("weights.bin", None)]
    assert [b.snapshot for b in container.list_blobs()] == [None]

    # A snapshot is read-only, but takes tags of its own.
    assert error_of(lambda: old.set_blob_metadata({"x": "y"}))[0] == 400
    assert error_of(lambda: old.upload_blob(b"rewrite", overwrite=True))[0] == 400
    old.set_blob_tags({"stage": "archived"})
    assert old.get_blob_tags() == {"stage": "archived"}
    assert blob.get_blob_tags() == {}
    # Copying from a snapshot restores it.
    restored = container.get_blob_client("restored.bin")
    restored.start_copy_from_url(old.url)
    assert restored.download_blob().readall() == b"epoch-1"

    # A blob with snapshots goes only with them; snapshots may go alone.
    assert error_of(blob.delete_blob) == (409, "SnapshotsPresent")
    old.delete_blob()
    assert error_of(lambda: old.download_blob().readall()) == (404, "BlobNotFound")
    blob.delete_blob(delete_snapshots="only")
    assert blob.download_blob().readall() == b"epoch-3"
    assert [b.snapshot for b in container.list_blobs(include=["snapshots"]) if b.name == "weights.bin"] == [None]
    blob.create_snapshot()
    blob.delete_blob(delete_snapshots="include")
    assert [b.name for b in container.list_blobs(include=["snapshots"])] == ["restored.bin"]
    assert error_of(lambda: container.get_blob_client("restored.bin", version_id="2026-01-01T00:00:00.0000000Z")
                    .download_blob().readall()) == (404, "BlobNotFound")

    # Snapshotting needs `c` or `w`: a read-only SAS may read a snapshot, not take one.
    snap = restored.create_snapshot()
    expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    reader = generate_blob_sas("stateacct", "snapshots", "restored.bin", account_key=world["key"], expiry=expiry,
                               permission=BlobSasPermissions(read=True))
    by_reader = BlobServiceClient(world["url"], credential=reader)
    assert error_of(by_reader.get_blob_client("snapshots", "restored.bin").create_snapshot)[0] == 403
    assert by_reader.get_blob_client("snapshots", "restored.bin", snapshot=snap).download_blob().readall() == b"epoch-1"
    assert error_of(by_reader.get_blob_client("snapshots", "restored.bin", snapshot=snap).delete_blob)[0] == 403


def test_stored_access_policies_shape_and_revoke_the_sas_that_name_them(server, world, keyed):
    from azure.storage.blob import AccessPolicy

    container = keyed.create_container("policies")
    container.upload_blob("data.csv", b"a,b\n")
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    container.set_container_access_policy({"readers": AccessPolicy(permission=ContainerSasPermissions(read=True),
                                                                   expiry=soon)})
    got = container.get_container_access_policy()
    assert [p.id for p in got["signed_identifiers"]] == ["readers"]
    assert got["signed_identifiers"][0].access_policy.permission == "r"
    assert got["public_access"] is None

    sas = generate_blob_sas("stateacct", "policies", "data.csv", account_key=world["key"], policy_id="readers")
    by_policy = BlobServiceClient(world["url"], credential=sas).get_blob_client("policies", "data.csv")
    assert by_policy.download_blob().readall() == b"a,b\n"
    assert error_of(lambda: by_policy.upload_blob(b"x", overwrite=True))[0] == 403
    # A field given by both the SAS and its policy is refused.
    both = generate_blob_sas("stateacct", "policies", "data.csv", account_key=world["key"], policy_id="readers",
                             permission=BlobSasPermissions(read=True, write=True))
    assert error_of(lambda: BlobServiceClient(world["url"], credential=both)
                    .get_blob_client("policies", "data.csv").download_blob().readall())[0] == 403
    # Removing the policy revokes every SAS that names it, at once.
    container.set_container_access_policy({})
    assert error_of(lambda: by_policy.download_blob().readall()) == (403, "AuthenticationFailed")
    # At most five policies; a public level needs an account that allows one.
    # (The SDK counts the policies itself; a client that does not is refused by the server.)
    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas
    account_sas = generate_account_sas("stateacct", world["key"], ResourceTypes(container=True),
                                       AccountSasPermissions(write=True), soon)
    six = "".join(f"<SignedIdentifier><Id>p{i}</Id><AccessPolicy><Permission>r</Permission></AccessPolicy>"
                  "</SignedIdentifier>" for i in range(6))
    reply = requests.put(f"{world['url']}/policies?restype=container&comp=acl&{account_sas}",
                         data=f"<SignedIdentifiers>{six}</SignedIdentifiers>",
                         headers={"x-ms-version": "2025-01-05"})
    assert (reply.status_code, reply.headers["x-ms-error-code"]) == (400, "InvalidXmlDocument")
    assert error_of(lambda: container.set_container_access_policy({}, public_access="blob")) == \
        (409, "PublicAccessNotPermitted")
    # Setting a container's ACL is an action Storage Blob Data Contributor does not hold.
    contributor = as_principal(server, world, "contributor").get_container_client("policies")
    assert error_of(lambda: contributor.set_container_access_policy({}))[0] == 403


def test_public_containers_let_anonymous_readers_read_and_nothing_more(server, client_env):
    server.cli("storage", "account", "create", "-n", "publicacct", "-g", "default",
               "--allow-blob-public-access", "true")
    key = server.cli("storage", "account", "keys", "list", "-n", "publicacct", "-g", "default")[0]["value"]
    url = f"{server.info['storage']}/publicacct"
    keyed = BlobServiceClient(url, credential={"account_name": "publicacct", "account_key": key})
    blobs_only = keyed.create_container("open-blobs", public_access="blob")
    blobs_only.upload_blob("a.txt", b"hello")
    listed = keyed.create_container("open-all", public_access="container")
    listed.upload_blob("b.txt", b"world")
    private = keyed.create_container("closed")
    private.upload_blob("c.txt", b"secret")
    assert blobs_only.get_container_access_policy()["public_access"] == "blob"

    anonymous = BlobServiceClient(url)
    assert anonymous.get_blob_client("open-blobs", "a.txt").download_blob().readall() == b"hello"
    assert error_of(lambda: list(anonymous.get_container_client("open-blobs").list_blobs()))[0] == 401
    assert [b.name for b in anonymous.get_container_client("open-all").list_blobs()] == ["b.txt"]
    # Private and missing look the same to an anonymous reader.
    assert error_of(lambda: anonymous.get_blob_client("closed", "c.txt").download_blob().readall())[0] == 401
    assert error_of(lambda: anonymous.get_blob_client("nothing", "c.txt").download_blob().readall())[0] == 401
    # Public means read: no writes, deletes, tags or metadata changes.
    for call in (lambda: anonymous.get_blob_client("open-all", "new.txt").upload_blob(b"x"),
                 lambda: anonymous.get_blob_client("open-all", "b.txt").delete_blob(),
                 lambda: anonymous.get_blob_client("open-all", "b.txt").set_blob_metadata({"a": "b"}),
                 lambda: anonymous.get_blob_client("open-all", "b.txt").get_blob_tags(),
                 lambda: anonymous.get_container_client("open-all").get_container_access_policy()):
        assert error_of(call)[0] == 401
    assert [b.name for b in listed.list_blobs()] == ["b.txt"]
    # Turning public access off on the account closes every public container at once.
    server.cli("storage", "account", "update", "-n", "publicacct", "-g", "default",
               "--allow-blob-public-access", "false")
    assert error_of(lambda: anonymous.get_blob_client("open-blobs", "a.txt").download_blob().readall())[0] == 401


def test_cors_rules_answer_preflights_and_mark_the_responses_they_admit(server, world, keyed):
    from azure.storage.blob import CorsRule

    container = keyed.create_container("browser")
    container.upload_blob("page.json", b"{}")
    rule = CorsRule(["https://app.example"], ["GET", "PUT"], allowed_headers=["x-ms-meta-*", "content-type"],
                    exposed_headers=["x-ms-request-id"], max_age_in_seconds=60)
    keyed.set_service_properties(cors=[rule])
    props = keyed.get_service_properties()
    assert [(r.allowed_origins, r.allowed_methods, r.max_age_in_seconds) for r in props["cors"]] == \
        [("https://app.example", "GET,PUT", 60)]
    assert props["delete_retention_policy"].enabled is False, "what was not sent is kept"

    url = f"{world['url']}/browser/page.json"
    ok = requests.options(url, headers={"Origin": "https://app.example", "Access-Control-Request-Method": "PUT",
                                        "Access-Control-Request-Headers": "x-ms-meta-team,content-type"})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://app.example"
    assert ok.headers["access-control-max-age"] == "60"
    assert ok.content == b""
    for origin, method, asked in (("https://evil.example", "GET", ""), ("https://app.example", "DELETE", ""),
                                  ("https://app.example", "GET", "authorization")):
        refused = requests.options(url, headers={"Origin": origin, "Access-Control-Request-Method": method,
                                                 "Access-Control-Request-Headers": asked})
        assert (refused.status_code, refused.headers["x-ms-error-code"]) == (403, "CorsPreflightFailure"), origin

    # A preflight is not a way in: the blob itself still needs credentials.
    assert requests.get(url, headers={"Origin": "https://app.example"}).status_code == 401
    blob = container.get_blob_client("page.json")
    sas = generate_blob_sas("stateacct", "browser", "page.json", account_key=world["key"],
                            expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1),
                            permission=BlobSasPermissions(read=True))
    admitted = requests.get(f"{blob.url}?{sas}", headers={"Origin": "https://app.example"})
    assert admitted.status_code == 200 and admitted.headers["access-control-allow-origin"] == "https://app.example"
    assert admitted.headers["access-control-expose-headers"] == "x-ms-request-id"
    other = requests.get(f"{blob.url}?{sas}", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers and other.headers["vary"] == "Origin"

    # Changing service properties is the account's business: not a container SAS's, not a data role's.
    container_sas = generate_container_sas("stateacct", "browser", account_key=world["key"],
                                           expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1),
                                           permission=ContainerSasPermissions(read=True, write=True))
    by_sas = BlobServiceClient(world["url"], credential=container_sas)
    assert error_of(lambda: by_sas.set_service_properties(cors=[]))[0] == 403
    contributor = as_principal(server, world, "contributor")
    assert error_of(lambda: contributor.set_service_properties(cors=[]))[0] == 403
    keyed.set_service_properties(cors=[])
    assert "access-control-allow-origin" not in requests.get(f"{blob.url}?{sas}",
                                                             headers={"Origin": "https://app.example"}).headers


def test_each_part_of_a_batch_is_authorized_on_its_own(server, world, keyed):
    from azure.storage.blob import StandardBlobTier

    container = keyed.create_container("batches")
    for name in ("a", "b", "c", "d"):
        container.upload_blob(name, name.encode())
    # With the key: deletes and tier changes in one batch.
    replies = list(container.delete_blobs("a", "b"))
    assert [r.status_code for r in replies] == [202, 202]
    tiers = list(container.set_standard_blob_tier_blobs(StandardBlobTier.COOL, "c", "d"))
    assert [r.status_code for r in tiers] == [200, 200]
    assert container.get_blob_client("c").get_blob_properties().blob_tier == "Cool"
    assert sorted(b.name for b in container.list_blobs()) == ["c", "d"]

    # A container SAS that may read but not delete: every part is refused, nothing goes.
    expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    reader = generate_container_sas("stateacct", "batches", account_key=world["key"], expiry=expiry,
                                    permission=ContainerSasPermissions(read=True, list=True))
    by_reader = BlobServiceClient(world["url"], credential=reader).get_container_client("batches")
    with pytest.raises(Exception):
        list(by_reader.delete_blobs("c", "d"))
    assert sorted(b.name for b in container.list_blobs()) == ["c", "d"]
    deleter = generate_container_sas("stateacct", "batches", account_key=world["key"], expiry=expiry,
                                     permission=ContainerSasPermissions(delete=True))
    by_deleter = BlobServiceClient(world["url"], credential=deleter).get_container_client("batches")
    assert [r.status_code for r in by_deleter.delete_blobs("c")] == [202]

    # A token: the identity's roles decide each part.
    container.upload_blob("e", b"e")
    owner = as_principal(server, world, "owner").get_container_client("batches")
    assert [r.status_code for r in owner.delete_blobs("d", "e")] == [202, 202]
    assert list(container.list_blobs()) == []
