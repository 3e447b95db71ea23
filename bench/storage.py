"""Prepares a storage benchmark target: container, 1,000 small blobs, a SAS.

usage: storage.py URL ACCOUNT KEY CA  ->  prints `BASE_PATH SAS`
"""
import datetime
import os
import sys
from concurrent.futures import ThreadPoolExecutor

from azure.storage.blob import AccountSasPermissions, BlobServiceClient, ResourceTypes, generate_account_sas

url, account, key, ca = sys.argv[1:5]
svc = BlobServiceClient(url, credential={"account_name": account, "account_key": key}, connection_verify=ca)
container = svc.get_container_client("bench")
if not container.exists():
    container.create_container()
payload = os.urandom(4096)
with ThreadPoolExecutor(16) as pool:
    list(pool.map(lambda i: container.upload_blob(f"small-{i}", payload, overwrite=True), range(1000)))
sas = generate_account_sas(account, key, ResourceTypes(service=True, container=True, object=True),
                           AccountSasPermissions(read=True, write=True, create=True, list=True, delete=True),
                           expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=2),
                           version="2025-01-05")
path = url.split("://", 1)[1].split("/", 1)[1]
print(f"/{path}/bench {sas}")
