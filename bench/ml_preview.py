"""What acting through the storage listener costs: a data preview (management API →
a token issued to the reading identity → the storage router in-process → storage log)
against the same 4 KiB read sent straight to the storage listener with a bearer token,
in one run. Loopback only; each loop is bounded in count and time.

    .venv/bin/python bench/ml_preview.py [requests]     (after ./scripts/test made the venv)
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "clients"))
os.environ.setdefault("KEYLESS_BIN", str(ROOT / "target" / "release" / "keyless"))
from conftest import Server  # noqa: E402  (also installs the loopback guard)

N = int(sys.argv[1]) if len(sys.argv) > 1 else 300
LIMIT_S = 60


def rate(label, session, send):
    start, done = time.monotonic(), 0
    while done < N and time.monotonic() - start < LIMIT_S:
        r = send(session)
        assert r.status_code == 200, (label, r.status_code, r.text[:300])
        done += 1
    per_s = done / (time.monotonic() - start)
    print(f"  {label:<34} {per_s:8.0f} /s  ({done} requests)")
    return per_s


def main():
    subprocess.run(["cargo", "build", "--release", "--locked", "-q", "-p", "keyless"], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory() as tmp:
        srv = Server(Path(tmp)).start()
        try:
            srv.login_admin()
            sub = srv.admin["subscription"]
            srv.cli("storage", "account", "create", "-n", "benchml", "-g", "default")
            account_id = f"/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.Storage/storageAccounts/benchml"
            srv.cli("role", "assignment", "create", "--assignee", srv.admin["username"],
                    "--role", "Storage Blob Data Contributor", "--scope", account_id)
            ws = Path(tmp) / "ws.yml"
            ws.write_text("name: bench-ws\n")
            srv.cli("ml", "workspace", "create", "-f", str(ws), "-g", "default")
            ds = Path(tmp) / "ds.yml"
            ds.write_text("name: mydata\ntype: azure_blob\naccount_name: benchml\ncontainer_name: data\n")
            srv.cli("ml", "datastore", "create", "-f", str(ds), "-w", "bench-ws", "-g", "default")
            arm = srv.cli("account", "get-access-token")["accessToken"]
            storage = srv.cli("account", "get-access-token", "--resource", "https://storage.azure.com")["accessToken"]
            blob_url = f"{srv.info['storage']}/benchml/data/census.csv"
            common = {"Authorization": f"Bearer {storage}", "x-ms-version": "2025-01-05"}
            requests.put(f"{srv.info['storage']}/benchml/data?restype=container", headers=common,
                         verify=srv.ca).raise_for_status()
            line = b"39,State-gov,77516,Bachelors,13,Never-married\n"
            body = b"age,workclass,income,education,years,status\n" + line * (4096 // len(line))
            requests.put(blob_url, data=body, headers={**common, "x-ms-blob-type": "BlockBlob"},
                         verify=srv.ca).raise_for_status()
            preview_url = (f"{srv.management}/subscriptions/{sub}/resourceGroups/default/providers/"
                           "Microsoft.MachineLearningServices/workspaces/bench-ws/previewData?api-version=2024-10-01")
            preview = {"uri": "azureml://datastores/mydata/paths/census.csv", "rows": 10}

            session = requests.Session()
            print(f"== {N} requests each, one connection, sequential")
            direct = rate("storage GET, bearer (4 KiB)", session, lambda s: s.get(blob_url, headers=common, verify=srv.ca))
            through = rate("data preview (management → storage)", session,
                           lambda s: s.post(preview_url, json=preview, verify=srv.ca,
                                            headers={"Authorization": f"Bearer {arm}"}))
            print(f"  preview / direct read: {through / direct:.2f}")
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
