"""A notebook user's mount, unchanged: ml_client.datastores.mount / ml_client.data.mount with the
credential azure-identity finds after `eval "$(keyless env)"` and `keyless login`.
    python mount.py <subscription> <resource group> <workspace> <datastores|data> <mount point>
Prints what it lists and reads under the mount, then `MOUNT OK`."""

import os
import sys
import threading
import time

from azure.ai.ml import MLClient
from azure.identity import DefaultAzureCredential

sub, rg, ws, kind, point = sys.argv[1:6]
ml_client = MLClient(DefaultAzureCredential(), sub, rg, ws)
os.makedirs(point, exist_ok=True)
if kind == "datastores":
    target = lambda: ml_client.datastores.mount("azureml://datastores/mydata/paths/", mount_point=point)
else:
    target = lambda: ml_client.data.mount("azureml:census:1", mount_point=point)
# The SDK's mount call waits while the mount lives; the reading happens beside it.
threading.Thread(target=target, daemon=True).start()
deadline = time.monotonic() + 60
while not os.listdir(point) and time.monotonic() < deadline:
    time.sleep(0.2)
print("LISTED", sorted(os.listdir(point)))
for root, _, files in os.walk(point):
    for name in files:
        path = os.path.join(root, name)
        with open(path, "rb") as f:
            print("READ", os.path.relpath(path, point), f.read().decode().splitlines()[0])
print("MOUNT OK")
sys.stdout.flush()
os._exit(0)
