"""Unmodified azure-storage-blob against keyless with an account key."""

import hashlib
import os

import pytest
from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError, ResourceExistsError,
                                   ResourceModifiedError, ResourceNotFoundError)
from azure.storage.blob import BlobServiceClient, ContentSettings


@pytest.fixture(scope="module")
def account(server):
    server.cli("storage", "account", "create", "-n", "blobtests", "-g", "default")
    keys = server.cli("storage", "account", "keys", "list", "-n", "blobtests", "-g", "default")
    key = keys[0]["value"]
    return {"name": "blobtests", "key": key, "url": f"{server.info['storage']}/blobtests"}


@pytest.fixture
def service(account, client_env):
    return BlobServiceClient(account["url"], credential={"account_name": account["name"], "account_key": account["key"]})


def test_containers_round_trip(service):
    container = service.create_container("round-trip", metadata={"team": "ml"})
    with pytest.raises(ResourceExistsError):
        service.create_container("round-trip")
    assert container.get_container_properties().metadata == {"team": "ml"}
    names = [c.name for c in service.list_containers(name_starts_with="round")]
    assert names == ["round-trip"]
    service.delete_container("round-trip")
    with pytest.raises(ResourceNotFoundError):
        service.get_container_client("round-trip").get_container_properties()
    assert not service.get_container_client("round-trip").exists()


def test_upload_small_and_chunked_and_download_whole_and_ranged(service):
    container = service.create_container("data")
    small = container.upload_blob("small.txt", b"hello keyless", content_settings=ContentSettings(content_type="text/plain"),
                                  metadata={"source": "test"})
    etag = small.get_blob_properties().etag
    assert etag.startswith('"0x')
    # A listing carries the same ETag without its quotes, as Azure lists it.
    assert [b.etag for b in container.list_blobs(name_starts_with="small")] == [etag.strip('"')]
    payload = os.urandom(3 * 1024 * 1024 + 12345)
    chunked = container.get_blob_client("dir/big.bin")
    # A small single-put limit forces Put Block + Put Block List.
    chunked_client = service.get_blob_client("data", "dir/big.bin")
    chunked_client._config.max_single_put_size = 1024 * 1024
    chunked_client._config.max_block_size = 1024 * 1024
    chunked_client.upload_blob(payload, max_concurrency=4)
    committed, uncommitted = chunked.get_block_list("all")
    assert len(committed) == 4 and not uncommitted

    assert container.download_blob("small.txt").readall() == b"hello keyless"
    props = container.get_blob_client("small.txt").get_blob_properties()
    assert props.size == 13
    assert props.content_settings.content_type == "text/plain"
    assert props.metadata == {"source": "test"}
    assert props.content_settings.content_md5 == hashlib.md5(b"hello keyless").digest()

    downloader = service.get_blob_client("data", "dir/big.bin")
    downloader._config.max_single_get_size = 1024 * 1024
    downloader._config.max_chunk_get_size = 512 * 1024
    assert downloader.download_blob(max_concurrency=4).readall() == payload
    assert downloader.download_blob(offset=1000, length=5000).readall() == payload[1000:6000]
    assert downloader.download_blob(offset=len(payload) - 10).readall() == payload[-10:]

    empty = container.upload_blob("empty", b"")
    assert empty.get_blob_properties().size == 0
    assert container.download_blob("empty").readall() == b""


def test_listing_flat_and_hierarchical_with_pages(service):
    container = service.create_container("listing")
    names = ["a.txt", "dir/one.txt", "dir/two.txt", "dir/sub/three.txt", "z.txt"]
    for n in names:
        container.upload_blob(n, n.encode(), metadata={"name": n.replace("/", "_").replace(".", "_")})
    assert [b.name for b in container.list_blobs()] == sorted(names)
    assert [b.name for b in container.list_blobs(name_starts_with="dir/")] == ["dir/one.txt", "dir/sub/three.txt", "dir/two.txt"]
    # The SDK yields a page's prefixes before its blobs.
    top = [b.name for b in container.walk_blobs(delimiter="/")]
    assert top == ["dir/", "a.txt", "z.txt"]
    below = [b.name for b in container.walk_blobs(name_starts_with="dir/", delimiter="/")]
    assert below == ["dir/sub/", "dir/one.txt", "dir/two.txt"]
    pages = container.list_blobs(results_per_page=2, include=["metadata"]).by_page()
    seen = []
    for page in pages:
        items = list(page)
        assert len(items) <= 2
        seen.extend(items)
    assert [b.name for b in seen] == sorted(names)
    assert seen[0].metadata == {"name": "a_txt"}
    assert seen[0].size == len("a.txt")
    # A blob without metadata lists as having none, not as unknown (adlfs relies on it).
    container.upload_blob("bare", b"")
    bare = [b for b in container.list_blobs(include=["metadata"]) if b.name == "bare"]
    assert bare[0].metadata == {}


def test_metadata_properties_conditions_and_delete(service):
    container = service.create_container("conditions")
    blob = container.get_blob_client("doc.json")
    first = blob.upload_blob(b"{}")
    with pytest.raises(ResourceExistsError):
        blob.upload_blob(b"{}")  # If-None-Match: * without overwrite
    second = blob.upload_blob(b'{"v": 2}', overwrite=True)
    assert second["etag"] != first["etag"]
    blob.set_blob_metadata({"stage": "raw"})
    assert blob.get_blob_properties().metadata == {"stage": "raw"}
    blob.set_http_headers(ContentSettings(content_type="application/json", cache_control="no-cache"))
    props = blob.get_blob_properties()
    assert props.content_settings.content_type == "application/json"
    assert props.content_settings.cache_control == "no-cache"
    # Setting the headers again without them clears them, Content-Type included, as Azure does.
    blob.set_http_headers(ContentSettings())
    cleared = blob.get_blob_properties().content_settings
    assert cleared.content_type is None and cleared.cache_control is None
    assert blob.download_blob().readall() == b'{"v": 2}'
    props = blob.get_blob_properties()
    from azure.core import MatchConditions
    with pytest.raises(ResourceModifiedError):
        blob.upload_blob(b"stale", overwrite=True, etag=first["etag"], match_condition=MatchConditions.IfNotModified)
    blob.upload_blob(b"fresh", overwrite=True, etag=props.etag, match_condition=MatchConditions.IfNotModified)
    assert blob.download_blob().readall() == b"fresh"
    blob.delete_blob()
    with pytest.raises(ResourceNotFoundError):
        blob.download_blob()
    with pytest.raises(ResourceNotFoundError):
        blob.delete_blob()


def sign(account, method, path, query, headers):
    """Headers and raw path of a request signed with SharedKey by this file's own implementation."""
    import base64
    import hmac
    import urllib.parse
    from email.utils import formatdate

    headers = {"x-ms-date": formatdate(usegmt=True), "x-ms-version": "2026-10-06", **headers}
    raw_path = f"/{account['name']}" + urllib.parse.quote(path)
    lower = {k.lower(): v for k, v in headers.items()}
    standard = ["content-encoding", "content-language", "content-length", "content-md5", "content-type", "date",
                "if-modified-since", "if-match", "if-none-match", "if-unmodified-since", "range"]
    text = method + "\n" + "\n".join(lower.get(h, "") for h in standard) + "\n"
    text += "".join(f"{k}:{v}\n" for k, v in sorted((k, v) for k, v in lower.items() if k.startswith("x-ms-")))
    text += f"/{account['name']}{raw_path}" + "".join(f"\n{k}:{v}" for k, v in sorted(query.items()))
    sig = base64.b64encode(hmac.new(base64.b64decode(account["key"]), text.encode(), "sha256").digest()).decode()
    headers["Authorization"] = f"SharedKey {account['name']}:{sig}"
    return headers, raw_path


def signed(account, method, path, query, body=b"", headers=None):
    """A raw request signed with SharedKey by this file's own implementation."""
    import requests

    headers = dict(headers or {})
    if isinstance(body, bytes) and body:
        headers["Content-Length"] = str(len(body))
    headers, raw_path = sign(account, method, path, query, headers)
    url = account["url"].rsplit("/", 1)[0] + raw_path
    return requests.request(method, url, params=query, data=body, headers=headers, verify=os.environ["REQUESTS_CA_BUNDLE"])


def test_a_large_put_blob_stores_the_md5_of_every_byte_and_refuses_a_wrong_one(service, account):
    # 20 MiB and 13 bytes in one Put Blob: many MD5 blocks, body chunks that end
    # mid-block, a tail shorter than a block, and a background sync at 16 MiB.
    container = service.create_container("md5-large")
    body = os.urandom(20 * 1024 * 1024 + 13)
    container.upload_blob("big.bin", body)
    props = container.get_blob_client("big.bin").get_blob_properties()
    assert props.content_settings.content_md5 == hashlib.md5(body).digest()
    # A client that checks the body against its own MD5 is refused when one byte
    # differs, and nothing is stored under the name.
    import base64
    claimed = base64.b64encode(hashlib.md5(body).digest()).decode()
    tampered = body[:-1] + bytes([body[-1] ^ 1])
    reply = signed(account, "PUT", "/md5-large/tampered.bin", {}, tampered,
                   headers={"x-ms-blob-type": "BlockBlob", "Content-MD5": claimed})
    assert reply.status_code == 400 and reply.headers["x-ms-error-code"] == "Md5Mismatch"
    assert not container.get_blob_client("tampered.bin").exists()


def test_refusals_are_the_typed_errors(service, account, client_env):
    with pytest.raises(ResourceNotFoundError):
        service.get_container_client("no-such-container").upload_blob("x", b"x")
    wrong = BlobServiceClient(account["url"], credential={"account_name": account["name"],
                                                           "account_key": "d3Jvbmcta2V5LXdyb25nLWtleQ=="})
    with pytest.raises(ClientAuthenticationError):
        wrong.create_container("nope")
    container = service.create_container("bad-input")
    container.upload_blob("small", b"0123456789")
    with pytest.raises(HttpResponseError) as too_long:
        container.upload_blob("n" * 1025, b"x")
    assert too_long.value.error_code == "InvalidResourceName"
    # The SDK base64-encodes block ids itself, so a malformed one goes out raw.
    reply = signed(account, "PUT", "/bad-input/b", {"comp": "block", "blockid": "not base64!"}, b"x")
    assert reply.status_code == 400 and reply.headers["x-ms-error-code"] == "InvalidQueryParameterValue"
    # A range it cannot read is ignored, as Azure does (RFC 9110, 14.2): the whole blob.
    for bad in ("bytes=9-3", "bytes=0--1", "items=0-1"):
        reply = signed(account, "GET", "/bad-input/small", {}, headers={"x-ms-range": bad})
        assert reply.status_code == 200 and reply.content == b"0123456789", bad
        assert "content-range" not in {k.lower() for k in reply.headers}
    # If-None-Match: * cannot hold for a read.
    reply = signed(account, "GET", "/bad-input/small", {}, headers={"If-None-Match": "*"})
    assert reply.status_code == 400 and reply.headers["x-ms-error-code"] == "UnsatisfiableCondition"
    # On a delete (not a create) it is ignored.
    container.upload_blob("gone", b"x")
    reply = signed(account, "DELETE", "/bad-input/gone", {}, headers={"If-None-Match": "*"})
    assert reply.status_code == 202, reply.text
    reply = signed(account, "PUT", "/bad-input", {"restype": "container", "comp": "rename"})
    assert reply.status_code == 400 and reply.headers["x-ms-error-code"] == "UnsupportedOperation"
    assert b"comp=rename" in reply.content
    container.get_blob_client("b").stage_block("QUFB", b"abc")
    with pytest.raises(HttpResponseError) as uneven:
        container.get_blob_client("b").stage_block("a-longer-block-id", b"x")
    assert uneven.value.error_code == "InvalidBlobOrBlock"
    with pytest.raises(HttpResponseError) as bad_list:
        container.get_blob_client("b").commit_block_list(["QUFB", "QkJC"])
    assert bad_list.value.error_code == "InvalidBlockList"
    # An empty list (`<BlockList />`) commits an empty blob.
    reply = signed(account, "PUT", "/bad-input/empty", {"comp": "blocklist"},
                   b'<?xml version="1.0" encoding="utf-8"?><BlockList />')
    assert reply.status_code == 201, reply.text
    assert container.get_blob_client("empty").download_blob().readall() == b""
    reply = signed(account, "PUT", "/bad-input/empty", {"comp": "blocklist"}, b"<BlockList><Latest/></BlockList>")
    assert reply.status_code == 400 and reply.headers["x-ms-error-code"] == "InvalidBlockList"
    with pytest.raises(HttpResponseError) as bad_name:
        service.create_container("Bad_Name")
    assert bad_name.value.error_code == "InvalidResourceName"


def test_sdk_generated_sas_account_container_and_blob(service, account):
    import datetime

    from azure.storage.blob import (AccountSasPermissions, BlobClient, BlobSasPermissions, ContainerClient,
                                    ResourceTypes, generate_account_sas, generate_blob_sas, generate_container_sas)

    container = service.create_container("sas")
    container.upload_blob("report.csv", b"a,b\n1,2\n")
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)

    # Account SAS: read and list on containers and objects.
    sas = generate_account_sas(account["name"], account["key"], ResourceTypes(container=True, object=True),
                               AccountSasPermissions(read=True, list=True), expiry=soon)
    reader = ContainerClient(account["url"], "sas", credential=sas)
    assert [b.name for b in reader.list_blobs()] == ["report.csv"]
    assert reader.download_blob("report.csv").readall() == b"a,b\n1,2\n"
    with pytest.raises(HttpResponseError) as refused:
        reader.upload_blob("new.csv", b"x")
    assert refused.value.error_code == "AuthorizationPermissionMismatch"

    # Container SAS with write: may add blobs to this container only.
    writer_sas = generate_container_sas(account["name"], "sas", account_key=account["key"],
                                        permission="rcw", expiry=soon)
    writer = ContainerClient(account["url"], "sas", credential=writer_sas)
    writer.upload_blob("new.csv", b"x")
    other = ContainerClient(account["url"], "data", credential=writer_sas)
    with pytest.raises(ClientAuthenticationError):
        list(other.list_blobs())
    # A service SAS reaches the container's blobs, not the container's own properties.
    with pytest.raises(HttpResponseError) as props:
        writer.get_container_properties()
    assert props.value.status_code == 403
    with pytest.raises(HttpResponseError) as meta:
        writer.set_container_metadata({"k": "v"})
    assert meta.value.status_code == 403

    # Blob SAS with a content-type override.
    blob_sas = generate_blob_sas(account["name"], "sas", "report.csv", account_key=account["key"],
                                 permission=BlobSasPermissions(read=True), expiry=soon, content_type="text/csv")
    blob = BlobClient(account["url"], "sas", "report.csv", credential=blob_sas)
    props = blob.get_blob_properties()
    assert props.content_settings.content_type == "text/csv"
    with pytest.raises(ClientAuthenticationError):
        BlobClient(account["url"], "sas", "new.csv", credential=blob_sas).download_blob()

    # Get Account Information answers any valid SAS of the account, at any level.
    info = blob.get_account_information()
    assert (info["sku_name"], info["account_kind"], info["is_hns_enabled"]) == ("Standard_LRS", "StorageV2", False)
    assert writer.get_account_information()["account_kind"] == "StorageV2"
    assert service.get_account_information()["sku_name"] == "Standard_LRS"

    # A user delegation key goes to a bearer token only; Azure says so in AuthenticationErrorDetail.
    now = datetime.datetime.now(datetime.timezone.utc)
    for who in (service, BlobServiceClient(account["url"], credential=sas)):
        with pytest.raises(HttpResponseError) as no_key:
            who.get_user_delegation_key(now, soon)
        assert no_key.value.status_code == 403
        assert "<AuthenticationErrorDetail>Only authentication scheme Bearer is supported</AuthenticationErrorDetail>" \
            in no_key.value.response.text()

    # Expired, and tampered.
    expired = generate_blob_sas(account["name"], "sas", "report.csv", account_key=account["key"],
                                permission="r", expiry=past)
    with pytest.raises(ClientAuthenticationError) as old:
        BlobClient(account["url"], "sas", "report.csv", credential=expired).download_blob()
    assert "expired" in str(old.value)
    tampered = blob_sas.replace("sp=r", "sp=rwd")
    with pytest.raises(ClientAuthenticationError):
        BlobClient(account["url"], "sas", "report.csv", credential=tampered).delete_blob()
    assert container.get_blob_client("report.csv").exists()


def test_shared_key_can_be_turned_off(server, client_env):
    server.cli("storage", "account", "create", "-n", "nokeys", "-g", "default")
    key = server.cli("storage", "account", "keys", "list", "-n", "nokeys", "-g", "default")[0]["value"]
    url = f"{server.info['storage']}/nokeys"
    svc = BlobServiceClient(url, credential={"account_name": "nokeys", "account_key": key})
    svc.create_container("before")
    server.cli("storage", "account", "update", "-n", "nokeys", "-g", "default", "--allow-shared-key-access", "false")
    with pytest.raises(HttpResponseError) as refused:
        svc.create_container("after")
    assert refused.value.error_code == "KeyBasedAuthenticationNotPermitted"
    renewed = server.cli("storage", "account", "keys", "renew", "-n", "nokeys", "-g", "default", "--key", "key1")
    assert renewed[0]["value"] != key


def test_the_cli_uploads_downloads_lists_and_deletes(server, tmp_path):
    server.cli("storage", "account", "create", "-n", "clidata", "-g", "default")
    server.cli("storage", "container", "create", "-n", "files", "--account-name", "clidata")
    src = tmp_path / "in.bin"
    payload = os.urandom(9 * 1024 * 1024 + 7)
    src.write_bytes(payload)
    up = server.cli("storage", "blob", "upload", "-c", "files", "-n", "nested/in.bin", "-f", str(src), "--account-name", "clidata")
    assert up["size"] == len(payload)
    listed = server.cli("storage", "blob", "list", "-c", "files", "--account-name", "clidata")
    assert listed == [{"name": "nested/in.bin", "size": len(payload)}]
    out = tmp_path / "out.bin"
    server.cli("storage", "blob", "download", "-c", "files", "-n", "nested/in.bin", "-f", str(out), "--account-name", "clidata")
    assert out.read_bytes() == payload
    again = server.cli("storage", "blob", "upload", "-c", "files", "-n", "nested/in.bin", "-f", str(src),
                       "--account-name", "clidata", check=False)
    assert again.returncode != 0 and "BlobAlreadyExists" in again.stderr
    server.cli("storage", "blob", "delete", "-c", "files", "-n", "nested/in.bin", "--account-name", "clidata")
    assert server.cli("storage", "blob", "list", "-c", "files", "--account-name", "clidata") == []
    conn = server.cli("storage", "account", "show-connection-string", "-n", "clidata", "-g", "default")
    assert "AccountName=clidata;" in conn["connectionString"]


def test_kill_9_during_a_large_upload_keeps_the_three_promises(tmp_path, monkeypatch):
    import threading
    import time

    from conftest import Server

    # The promises of the local-files backend (the object-store one keeps them in its own tests).
    server = Server(tmp_path, local_blobs=True).start()
    try:
        server.login_admin()
        server.cli("storage", "account", "create", "-n", "crashy", "-g", "default")
        key = server.cli("storage", "account", "keys", "list", "-n", "crashy", "-g", "default")[0]["value"]
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.ca)
        svc = BlobServiceClient(f"{server.info['storage']}/crashy", credential={"account_name": "crashy", "account_key": key})
        container = svc.create_container("crash")
        committed = {f"kept-{i}": os.urandom(100_000 + i) for i in range(5)}
        for name, data in committed.items():
            container.upload_blob(name, data)
        # An overwrite in flight must leave the old version whole.
        container.upload_blob("overwritten", b"old version")

        account = {"name": "crashy", "key": key, "url": f"{server.info['storage']}/crashy"}
        started = {"partial": threading.Event(), "overwritten": threading.Event()}
        errors = []

        class Body:
            """400 MiB, read in pieces; says when 20 MiB have gone out."""

            size = 400 * 1024 * 1024

            def __init__(self, sent):
                self.sent_event = sent
                self.sent = 0
                self.chunk = os.urandom(64 * 1024)

            def __len__(self):
                return self.size

            def read(self, n=-1):
                if self.sent >= self.size:
                    return b""
                if self.sent >= 20 * 1024 * 1024:
                    self.sent_event.set()
                self.sent += len(self.chunk)
                return self.chunk

        def upload(name):
            try:
                reply = signed(account, "PUT", f"/crash/{name}", {}, Body(started[name]),
                               headers={"x-ms-blob-type": "BlockBlob", "Content-Length": str(Body.size)})
                errors.append(reply.status_code)
            except Exception as e:
                errors.append(e)

        threads = [threading.Thread(target=upload, args=(n,), daemon=True) for n in ("partial", "overwritten")]
        for t in threads:
            t.start()
        for event in started.values():
            assert event.wait(60), errors
        time.sleep(0.2)
        server.stop(kill=True)
        for t in threads:
            t.join(30)
        staged = list((server.data_dir / "blobs" / "tmp").iterdir())
        assert len(staged) == 2, "both uploads were cut off mid-body"

        server.start()
        svc = BlobServiceClient(f"{server.info['storage']}/crashy", credential={"account_name": "crashy", "account_key": key})
        container = svc.get_container_client("crash")
        for name, data in committed.items():
            assert container.download_blob(name).readall() == data
        assert container.download_blob("overwritten").readall() == b"old version"
        names = sorted(b.name for b in container.list_blobs())
        assert "partial" not in names
        assert names == sorted([*committed, "overwritten"])
        # No orphan bytes: one file per committed blob of more than 64 KiB (the
        # small "overwritten" keeps its bytes in its metadata row), nothing staged.
        blobs_dir = server.data_dir / "blobs"
        files = [p for p in blobs_dir.rglob("*") if p.is_file()]
        assert not [p for p in files if p.parent.name == "tmp"]
        assert len(files) == len(committed), files
    finally:
        server.stop()


def test_copy_blob_within_the_account_and_from_another_with_a_sas(server, service, account):
    import datetime

    from azure.storage.blob import generate_blob_sas

    container = service.create_container("copies")
    container.upload_blob("original.csv", b"id,v\n1,2\n", metadata={"origin": "lab"})
    source = container.get_blob_client("original.csv")
    copy = container.get_blob_client("copy.csv")
    result = copy.start_copy_from_url(source.url)
    assert result["copy_status"] == "success"
    assert copy.download_blob().readall() == b"id,v\n1,2\n"
    assert copy.get_blob_properties().metadata == {"origin": "lab"}

    server.cli("storage", "account", "create", "-n", "copysrc", "-g", "default")
    other_key = server.cli("storage", "account", "keys", "list", "-n", "copysrc", "-g", "default")[0]["value"]
    other = BlobServiceClient(f"{server.info['storage']}/copysrc", credential={"account_name": "copysrc", "account_key": other_key})
    other.create_container("shared").upload_blob("data.bin", b"\x00\x01\x02")
    foreign = other.get_blob_client("shared", "data.bin")
    with pytest.raises(HttpResponseError) as refused:
        container.get_blob_client("foreign.bin").start_copy_from_url(foreign.url)
    assert refused.value.error_code == "CannotVerifyCopySource"
    # A source that is not an absolute URL is a malformed header.
    with pytest.raises(HttpResponseError) as relative:
        container.get_blob_client("relative.bin").start_copy_from_url("/devstoreaccount1/container78/blob125")
    assert relative.value.status_code == 400 and relative.value.error_code == "InvalidHeaderValue"
    sas = generate_blob_sas("copysrc", "shared", "data.bin", account_key=other_key, permission="r",
                            expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=10))
    container.get_blob_client("foreign.bin").start_copy_from_url(f"{foreign.url}?{sas}")
    assert container.download_blob("foreign.bin").readall() == b"\x00\x01\x02"


def test_checksum_headers_are_refused_with_azures_codes(service, account):
    import base64
    service.create_container("md5")
    body = b"checked"
    good = base64.b64encode(hashlib.md5(body).digest()).decode()
    reply = signed(account, "PUT", "/md5/short", {}, body,
                   headers={"x-ms-blob-type": "BlockBlob", "Content-MD5": base64.b64encode(b"123").decode()})
    assert reply.status_code == 400 and reply.headers["x-ms-error-code"] == "InvalidMd5"
    reply = signed(account, "PUT", "/md5/both", {}, body,
                   headers={"x-ms-blob-type": "BlockBlob", "Content-MD5": good,
                            "x-ms-content-crc64": base64.b64encode(b"\0" * 8).decode()})
    assert reply.status_code == 400 and reply.headers["x-ms-error-code"] == "BothCrc64AndMd5HeaderPresent"
    reply = signed(account, "PUT", "/md5/wrong", {}, body,
                   headers={"x-ms-blob-type": "BlockBlob", "Content-MD5": base64.b64encode(b"x" * 16).decode()})
    assert reply.status_code == 400 and reply.headers["x-ms-error-code"] == "Md5Mismatch"
    reply = signed(account, "PUT", "/md5/ok", {}, body, headers={"x-ms-blob-type": "BlockBlob", "Content-MD5": good})
    assert reply.status_code == 201, reply.text
    # On Put Blob, x-ms-blob-content-md5 is the one the body is checked against.
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    reply = signed(account, "PUT", "/md5/blob-md5", {}, body,
                   headers={"x-ms-blob-type": "BlockBlob", "Content-MD5": wrong, "x-ms-blob-content-md5": good})
    assert reply.status_code == 201, reply.text
    reply = signed(account, "PUT", "/md5/blob-md5", {}, body,
                   headers={"x-ms-blob-type": "BlockBlob", "Content-MD5": good, "x-ms-blob-content-md5": wrong})
    assert reply.status_code == 400 and reply.headers["x-ms-error-code"] == "Md5Mismatch"
    assert not service.get_container_client("md5").get_blob_client("short").exists()
    # Put Block answers with the block's MD5 only when the request sent one (as
    # Azure does since 2019-02-02), else with the CRC-64 of what it stored.
    from azure.storage.extensions import checksums
    block = {"comp": "block", "blockid": base64.b64encode(b"block-1").decode()}
    reply = signed(account, "PUT", "/md5/blocks", block, body)
    assert reply.status_code == 201 and "content-md5" not in reply.headers, reply.headers
    assert reply.headers["x-ms-content-crc64"] == base64.b64encode(
        checksums.crc64.compute(body, 0).to_bytes(8, "little")).decode()
    reply = signed(account, "PUT", "/md5/blocks", block, body, headers={"Content-MD5": good})
    assert reply.status_code == 201 and reply.headers["content-md5"] == good
    reply = signed(account, "PUT", "/md5/blocks", block, body, headers={"Content-MD5": wrong})
    assert reply.status_code == 400 and reply.headers["x-ms-error-code"] == "Md5Mismatch"


def test_crc64_is_checked_on_upload_and_framed_on_download(service):
    import base64

    from azure.storage.extensions import checksums

    container = service.create_container("crc64")
    blob = container.get_blob_client("single.bin")
    blob.upload_blob(b"checked by crc64", validate_content="crc64")
    # Download with validate_content="crc64" asks for a structured body, which the SDK
    # unframes and checks segment by segment.
    assert blob.download_blob(validate_content="crc64").readall() == b"checked by crc64"

    payload = os.urandom(600 * 1024)
    chunked = service.get_blob_client("crc64", "chunked.bin")
    chunked._config.max_single_put_size = 256 * 1024
    chunked._config.max_block_size = 256 * 1024
    chunked.upload_blob(payload, validate_content="crc64", max_concurrency=2)
    assert len(chunked.get_block_list("committed")[0]) == 3
    assert chunked.download_blob(validate_content="crc64").readall() == payload
    assert chunked.download_blob(offset=1000, length=70000, validate_content="crc64").readall() == payload[1000:71000]

    # A stream goes out as a structured message: framed in segments, each with its CRC-64.
    import io
    framed = service.get_blob_client("crc64", "framed.bin")
    parts = [os.urandom(5000), os.urandom(70000)]
    for i, part in enumerate(parts):
        framed.stage_block(f"block-{i}", io.BytesIO(part), length=len(part), validate_content="crc64")
    framed.commit_block_list([f"block-{i}" for i in range(2)], validate_content="crc64")
    assert framed.download_blob().readall() == b"".join(parts)

    other = base64.b64encode(checksums.crc64.compute(b"other bytes", 0).to_bytes(8, "little")).decode()
    with pytest.raises(HttpResponseError) as mismatch:
        blob.upload_blob(b"tampered", overwrite=True, headers={"x-ms-content-crc64": other})
    assert mismatch.value.error_code == "Crc64Mismatch"
    with pytest.raises(HttpResponseError) as block_mismatch:
        chunked.stage_block("QUFB", b"tampered", headers={"x-ms-content-crc64": other})
    assert block_mismatch.value.error_code == "Crc64Mismatch"
    with pytest.raises(HttpResponseError) as both:
        blob.upload_blob(b"x", overwrite=True, validate_content="md5", headers={"x-ms-content-crc64": other})
    assert both.value.error_code == "BothCrc64AndMd5HeaderPresent"
    # Nothing was lost: the refused writes left the blobs as they were.
    assert blob.download_blob().readall() == b"checked by crc64"
    assert chunked.get_block_list("uncommitted")[1] == []


def test_an_oversized_block_or_blob_is_refused_before_its_body_is_sent(service, account):
    """Only the headers go out: the declared length alone must get the refusal."""
    import http.client
    import ssl
    import urllib.parse

    service.create_container("oversized")
    origin = urllib.parse.urlsplit(account["url"])
    for query, length in [({"comp": "block", "blockid": "QUFB"}, 4000 * 1024 * 1024 + 1),
                          ({}, 5000 * 1024 * 1024 + 1)]:
        headers = {"Content-Length": str(length), "x-ms-blob-type": "BlockBlob"}
        headers, raw_path = sign(account, "PUT", "/oversized/huge.bin", query, headers)
        conn = http.client.HTTPSConnection(origin.hostname, origin.port, timeout=30,
                                           context=ssl.create_default_context(cafile=os.environ["REQUESTS_CA_BUNDLE"]))
        conn.putrequest("PUT", raw_path + ("?" + urllib.parse.urlencode(query) if query else ""), skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        reply = conn.getresponse()
        assert reply.status == 413
        assert reply.getheader("x-ms-error-code") == "RequestBodyTooLarge"
        assert b"at most" in reply.read()
        conn.close()
    assert list(service.get_container_client("oversized").list_blobs()) == []


def test_a_sas_without_write_creates_but_never_overwrites_and_names_each_field_once(service, account):
    """An account SAS `rdlacup` and a container SAS `rc` may create blobs but not overwrite one,
    by Put Blob, Put Block List or Copy Blob; a SAS that names `sig` twice is refused."""
    import datetime

    import requests
    from azure.storage.blob import (AccountSasPermissions, ContainerClient, ResourceTypes, generate_account_sas,
                                    generate_blob_sas, generate_container_sas)

    container = service.create_container("createonly")
    container.upload_blob("existing.csv", b"original")
    container.upload_blob("source.csv", b"copied over")
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    source_sas = generate_blob_sas(account["name"], "createonly", "source.csv", account_key=account["key"],
                                   permission="r", expiry=soon)
    source_url = f"{account['url']}/createonly/source.csv?{source_sas}"
    account_sas = generate_account_sas(account["name"], account["key"], ResourceTypes(container=True, object=True),
                                       AccountSasPermissions.from_string("rdlacup"), expiry=soon)
    container_sas = generate_container_sas(account["name"], "createonly", account_key=account["key"],
                                           permission="rc", expiry=soon)
    for n, sas in enumerate((account_sas, container_sas)):
        client = ContainerClient(account["url"], "createonly", credential=sas)
        target = client.get_blob_client("existing.csv")
        attacks = {
            "put blob": lambda: target.upload_blob(b"overwritten", overwrite=True),
            "put block list": lambda: (target.stage_block("b1", b"overwritten"), target.commit_block_list(["b1"])),
            "copy blob": lambda: target.start_copy_from_url(source_url),
        }
        for name, attack in attacks.items():
            with pytest.raises(HttpResponseError) as refused:
                attack()
            assert refused.value.status_code == 403, name
            assert refused.value.error_code == "AuthorizationPermissionMismatch", name
        # Creating is what `c` is for.
        client.upload_blob(f"new-{n}.csv", b"fresh")
        client.get_blob_client(f"copy-{n}.csv").start_copy_from_url(source_url)
        assert container.download_blob(f"copy-{n}.csv").readall() == b"copied over"
    assert container.download_blob("existing.csv").readall() == b"original"
    # Within one account a source URL's SAS decides, even when the request is signed with the
    # account key: a SAS without `r` does not make its blob a copy source.
    write_only = generate_blob_sas(account["name"], "createonly", "source.csv", account_key=account["key"],
                                   permission="w", expiry=soon)
    with pytest.raises(HttpResponseError) as no_read:
        container.get_blob_client("from-write-only.csv").start_copy_from_url(
            f"{account['url']}/createonly/source.csv?{write_only}")
    assert no_read.value.error_code == "CannotVerifyCopySource"

    url = f"{account['url']}/createonly/existing.csv"
    headers = {"x-ms-version": "2025-01-05"}
    reader = generate_blob_sas(account["name"], "createonly", "existing.csv", account_key=account["key"],
                               permission="r", expiry=soon)
    assert requests.get(f"{url}?{reader}", headers=headers).status_code == 200
    twice = requests.get(f"{url}?{reader}&sig=AAAA", headers=headers)
    assert twice.status_code == 403 and "more than once" in twice.text
    twice = requests.get(f"{url}?sig=AAAA&{reader}", headers=headers)
    assert twice.status_code == 403 and "more than once" in twice.text


def test_what_keyless_does_not_implement_is_refused_before_anything_is_written(service):
    """A Put Blob with a customer-provided key used to be stored in plain text for anyone to
    read. It is refused now, and nothing is stored."""
    from azure.storage.blob import CustomerProvidedEncryptionKey

    container = service.create_container("unsupported")
    key = os.urandom(32)
    import base64
    cpk = CustomerProvidedEncryptionKey(base64.b64encode(key).decode(),
                                        base64.b64encode(hashlib.sha256(key).digest()).decode())
    with pytest.raises(HttpResponseError) as refused:
        container.upload_blob("mine.bin", b"private", cpk=cpk)
    assert refused.value.status_code == 400 and refused.value.error_code == "UnsupportedHeader"
    assert "customer-provided keys" in str(refused.value)
    assert not container.get_blob_client("mine.bin").exists()


def test_one_sharedkey_signature_names_one_blob_whatever_its_encoding(service, account, client_env):
    """A signature over `/c/q%41` (the blob `qA`, its `A` percent-encoded) used to be accepted for
    `/c/q%2541` (the blob `q%41`), because the decoded request path was tried too."""
    import base64
    import hmac
    import http.client
    import ssl
    from email.utils import formatdate

    container = service.create_container("encodings")
    container.upload_blob("qA", b"the blob qA")
    container.upload_blob("q%41", b"the blob q%41")
    base = account["url"].rsplit("/", 1)[0]

    def get(signed_path, sent_path):
        headers = {"x-ms-date": formatdate(usegmt=True), "x-ms-version": "2025-01-05"}
        text = "GET\n" + "\n" * 11 + "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
        text += f"/{account['name']}/{account['name']}{signed_path}"
        sig = base64.b64encode(hmac.new(base64.b64decode(account["key"]), text.encode(), "sha256").digest())
        headers["Authorization"] = f"SharedKey {account['name']}:{sig.decode()}"
        # http.client sends the path byte for byte (requests would turn `%41` into `A`).
        host, port = base.removeprefix("https://").rsplit(":", 1)
        conn = http.client.HTTPSConnection(host, int(port), context=ssl.create_default_context(
            cafile=os.environ["REQUESTS_CA_BUNDLE"]))
        conn.request("GET", f"/{account['name']}{sent_path}", headers=headers)
        reply = conn.getresponse()
        reply.content, reply.status_code = reply.read(), reply.status
        conn.close()
        return reply

    assert get("/encodings/q%41", "/encodings/q%41").content == b"the blob qA"
    assert get("/encodings/q%2541", "/encodings/q%2541").content == b"the blob q%41"
    crossed = get("/encodings/q%41", "/encodings/q%2541")
    assert crossed.status_code == 403 and crossed.getheader("x-ms-error-code") == "AuthenticationFailed"
    # A client that signs the decoded path of an unambiguous name still works.
    assert get("/encodings/qA", "/encodings/q%41").content == b"the blob qA"


def test_blobs_that_share_bytes_on_disk_stay_apart(server, service, account):
    """A block list links its staged blocks, and a copy of a blob held in one file
    links that file: blobs can share bytes on disk. A writer who may touch only
    its own container overwrites, appends to and deletes its blobs, and the copies
    another container holds never change; the bytes are on disk once."""
    import base64
    import datetime

    from azure.storage.blob import BlobBlock, ContainerSasPermissions, generate_container_sas

    theirs = service.create_container("kept-copies")
    service.create_container("writable")
    sas = generate_container_sas(account["name"], "writable", account_key=account["key"],
                                 permission=ContainerSasPermissions(read=True, write=True, create=True, delete=True, add=True),
                                 expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=10))
    writer = BlobServiceClient(account["url"], credential=sas).get_container_client("writable")

    blocks = [os.urandom(300_000) for _ in range(3)]
    staged = writer.get_blob_client("listed.bin")
    ids = [base64.b64encode(f"block-{i}".encode()).decode() for i in range(3)]
    # On an object store (the test command's shared-store mode) compositions are
    # uploads of their own: the disk checks are the local files' alone.
    on_disk = server.blob_store is None
    blob_root = server.data_dir / "blobs"

    def compositions():
        if not on_disk:
            return set()
        return {d for shard in blob_root.iterdir() if shard.name != "tmp" for d in shard.iterdir() if d.is_dir()}

    for block_id, data in zip(ids, blocks):
        staged.stage_block(block_id, data)
    before = compositions()
    staged.commit_block_list([BlobBlock(block_id=i) for i in ids])
    whole = b"".join(blocks)
    assert staged.download_blob().readall() == whole
    assert staged.download_blob(offset=299_990, length=20).readall() == whole[299_990:300_010]

    # On disk, the committed blob is the staged blocks' own files, linked, not a copy.
    made = compositions() - before
    if on_disk:
        assert len(made) == 1
        (linked,) = made
        pieces = sorted(linked.iterdir())
        assert [p.stat().st_size for p in pieces] == [300_000] * 3
        assert all(p.stat().st_nlink == 1 for p in pieces), "the staged names are released"

    big = os.urandom(200_000)
    writer.upload_blob("single.bin", big)
    appended = writer.get_blob_client("log.txt")
    appended.create_append_blob()
    appended.append_block(b"first line\n" * 10_000)
    for name in ("listed.bin", "single.bin", "log.txt"):
        theirs.get_blob_client(name).start_copy_from_url(f"{writer.get_blob_client(name).url}")
    first = b"first line\n" * 10_000

    # The writer goes at its own blobs every way it may.
    staged.upload_blob(b"overwritten", overwrite=True)
    writer.get_blob_client("single.bin").stage_block(ids[0], b"staged over")
    writer.get_blob_client("single.bin").commit_block_list([BlobBlock(block_id=ids[0])])
    appended.append_block(b"second line\n")
    writer.delete_blob("listed.bin")
    # …and cannot reach the copies.
    with pytest.raises(HttpResponseError) as refused:
        BlobServiceClient(account["url"], credential=sas).get_blob_client("kept-copies", "log.txt").append_block(b"x")
    assert refused.value.status_code == 403

    assert theirs.download_blob("listed.bin").readall() == whole
    assert theirs.download_blob("single.bin").readall() == big
    assert theirs.download_blob("log.txt").readall() == first
    assert appended.download_blob().readall() == first + b"second line\n"
    theirs.delete_blob("listed.bin")
    theirs.delete_blob("single.bin")
    service.delete_container("writable")
    if on_disk:
        assert not linked.exists(), "the overwritten composition is gone from the disk"
