"""keyless with its blob bytes in an object store (`--blob-store`): an S3-compatible server
(moto) and Azure Blob as Azurite serves it, both on loopback, started by `scripts/object-stores`.
The SDKs see no difference; the bytes are objects of the store, gone when the blob goes, and a
write cut off by kill -9 leaves neither a blob nor an object."""

import datetime
import http.client
import os
import ssl
import uuid

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

from conftest import Server

STORES = {"s3": "KEYLESS_TEST_S3_URL", "azure": "KEYLESS_TEST_AZURE_BLOB_URL"}


def objects_in(kind, url):
    """The object names under the store URL, read with the store's own client."""
    bucket, _, prefix = url.split("://", 1)[1].partition("/")
    if kind == "s3":
        import boto3
        s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT"], region_name="us-east-1")
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
        return sorted(o["Key"].rsplit("/", 1)[1] for page in pages for o in page.get("Contents", []))
    key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
    service = BlobServiceClient(f"{os.environ['AZURITE_BLOB_STORAGE_URL']}/devstoreaccount1",
                                credential={"account_name": "devstoreaccount1", "account_key": key})
    return sorted(b.name.rsplit("/", 1)[1]
                  for b in service.get_container_client(bucket).list_blobs(name_starts_with=prefix + "/"))


@pytest.fixture(params=sorted(STORES))
def store(request):
    base = os.environ.get(STORES[request.param])
    if not base:
        pytest.skip(f"{STORES[request.param]} is not set (scripts/object-stores up starts the stores)")
    return request.param, f"{base.rstrip('/')}/{uuid.uuid4().hex}"


def start(tmp_path, url):
    srv = Server(tmp_path).start(["--blob-store", url])
    srv.login_admin()
    srv.cli("storage", "account", "create", "-n", "objacct", "-g", "default")
    key = srv.cli("storage", "account", "keys", "list", "-n", "objacct", "-g", "default")[0]["value"]
    return srv, key


def client(srv, key, **options):
    return BlobServiceClient(f"{srv.info['storage']}/objacct", connection_verify=srv.ca,
                             credential={"account_name": "objacct", "account_key": key}, **options)


def test_blob_bytes_live_in_the_object_store_and_go_with_the_blob(tmp_path, store):
    kind, url = store
    srv, key = start(tmp_path, url)
    try:
        # Blocks of 1 MiB: Put Block and Put Block List compose the blob's object.
        container = client(srv, key, max_single_put_size=1024 * 1024,
                           max_block_size=1024 * 1024).create_container("data")
        small = b"a,b\n1,2\n"                      # kept in the metadata row
        large = os.urandom(3 * 1024 * 1024 + 17)   # an object of its own
        container.upload_blob("small.csv", small)
        blob = container.upload_blob("large.bin", large, max_concurrency=4)
        assert blob.download_blob().readall() == large
        assert blob.download_blob(offset=1024 * 1024 - 3, length=10).readall() == large[1024 * 1024 - 3:][:10]
        assert container.get_blob_client("small.csv").download_blob().readall() == small
        held = objects_in(kind, url)
        assert len(held) == 1, held
        # A copy has bytes of its own; overwriting and deleting release them.
        copy = container.get_blob_client("copy.bin")
        copy.start_copy_from_url(blob.url)
        assert copy.download_blob().readall() == large
        assert len(objects_in(kind, url)) == 2
        blob.upload_blob(b"short now", overwrite=True)
        copy.delete_blob()
        assert objects_in(kind, url) == []
        with pytest.raises(ResourceNotFoundError):
            copy.download_blob().readall()

        # Data survives a restart: the metadata names objects the store still holds.
        container.upload_blob("kept.bin", large)
        srv.stop()
        srv.start(["--blob-store", url])
        assert client(srv, key).get_blob_client("data", "kept.bin").download_blob().readall() == large
        assert len(objects_in(kind, url)) == 1
    finally:
        srv.stop()


def test_a_write_cut_off_by_kill_9_leaves_no_blob_and_no_object(tmp_path, store):
    kind, url = store
    srv, key = start(tmp_path, url)
    try:
        container = client(srv, key).create_container("data")
        container.upload_blob("before.bin", os.urandom(200 * 1024))
        assert len(objects_in(kind, url)) == 1
        # One Put Blob of 1 GiB, sent by hand so that the test decides when the server dies:
        # after 64 MiB have gone out, a part or more of the store's upload is written.
        sas = generate_container_sas("objacct", "data", account_key=key, permission=ContainerSasPermissions(
            create=True, write=True), expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1))
        host, port = srv.info["storage"].removeprefix("https://").split(":")
        conn = http.client.HTTPSConnection(host, int(port), context=ssl.create_default_context(cafile=srv.ca),
                                           timeout=30)
        conn.putrequest("PUT", f"/objacct/data/cut.bin?{sas}")
        for name, value in [("x-ms-blob-type", "BlockBlob"), ("x-ms-version", "2025-01-05"),
                            ("Content-Length", str(1024**3))]:
            conn.putheader(name, value)
        conn.endheaders()
        chunk = os.urandom(1024 * 1024)
        for _ in range(64):
            conn.send(chunk)
        srv.stop(kill=True)
        conn.close()
        srv.start(["--blob-store", url])
        container = client(srv, key).get_container_client("data")
        assert [b.name for b in container.list_blobs()] == ["before.bin"]
        # The uncompleted upload is no object; only the blob's own is there.
        assert len(objects_in(kind, url)) == 1
    finally:
        srv.stop()
