"""10,000 small PUTs (rate of the first and last thousand), listing them, and 1,000
random 64 KiB range reads, against one Blob endpoint. Bounded in count; 16 threads.

usage: storage_scale.py URL ACCOUNT KEY CA  ->  prints one line of figures
"""
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from azure.storage.blob import BlobServiceClient

url, account, key, ca = sys.argv[1:5]
svc = BlobServiceClient(url, credential={"account_name": account, "account_key": key}, connection_verify=ca)
container = svc.get_container_client("scale")
if not container.exists():
    container.create_container()
payload = os.urandom(4096)
stamps = [0.0] * 10_000


def put(i):
    container.upload_blob(f"obj-{i:05d}", payload, overwrite=True)
    stamps[i] = time.monotonic()


start = time.monotonic()
with ThreadPoolExecutor(16) as pool:
    list(pool.map(put, range(10_000)))
done = sorted(stamps)
first = 1000 / (done[999] - start)
last = 1000 / (done[-1] - done[-1001])

t = time.monotonic()
listed = sum(1 for _ in container.list_blobs(name_starts_with="obj-"))
assert listed == 10_000, listed
list_seconds = time.monotonic() - t

big = os.urandom(64 * 1024 * 1024)
container.upload_blob("big", big, overwrite=True, max_concurrency=4)
blob = container.get_blob_client("big")
rng = random.Random(7)
offsets = [rng.randrange(0, len(big) - 65536) for _ in range(1000)]


def read(off):
    data = blob.download_blob(offset=off, length=65536).readall()
    assert data == big[off:off + 65536]


t = time.monotonic()
with ThreadPoolExecutor(16) as pool:
    list(pool.map(read, offsets))
ranges = 1000 / (time.monotonic() - t)
print(f"{first:.0f} {last:.0f} {list_seconds:.2f} {ranges:.0f}")
